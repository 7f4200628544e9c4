//! From the card's typed errors to the status words a YubiKey answers.

use crate::error::Error;
use crate::piv::apdu::{ResponseApdu, StatusWord};

/// `63Cx` with at most 15 tries shown (the nibble's limit; counters set
/// higher with SET PIN RETRIES show 15).
pub(super) fn verify_failed(retries_left: u8) -> StatusWord {
    StatusWord::VerifyFailed(retries_left.min(15))
}

/// The status word for a card error, as the device answers it in general.
/// Handlers override the few cases that depend on the instruction (e.g. an
/// empty slot is 6A80 for a signature, 6A88 for metadata).
pub(super) fn status_of(error: &Error) -> StatusWord {
    match error {
        Error::WrongPin { retries_left } | Error::WrongPuk { retries_left } => {
            verify_failed(*retries_left)
        }
        Error::PinBlocked | Error::PukBlocked => StatusWord::AuthenticationBlocked,
        Error::PinRequired { .. }
        | Error::ManagementKeyRequired
        | Error::WrongManagementKey
        | Error::TouchDenied { .. }
        | Error::TouchTimeout { .. } => StatusWord::SecurityStatusNotSatisfied,
        Error::KeyNotFound { .. } => StatusWord::ReferenceNotFound,
        Error::CertificateNotFound { .. }
        | Error::DataObjectNotFound { .. }
        | Error::InvalidDataObject { .. } => StatusWord::NotFound,
        Error::BadCommandData { .. }
        | Error::UnsupportedAlgorithm { .. }
        | Error::InvalidPolicy { .. }
        | Error::InvalidPin { .. }
        | Error::InvalidManagementKey { .. }
        | Error::InvalidSlot { .. }
        | Error::SlotNotAllowed { .. }
        | Error::NotAttestable { .. } => StatusWord::IncorrectData,
        Error::TooLarge { .. } => StatusWord::NotEnoughMemory,
        Error::ResetNotAllowed | Error::PinComplexity { .. } => StatusWord::ConditionsNotSatisfied,
        _ => StatusWord::NoPreciseDiagnosis,
    }
}

/// The response for a refused command; logs the reason (never a secret:
/// the library's error messages carry none).
pub(super) fn refuse(ins: u8, error: &Error) -> ResponseApdu {
    let sw = status_of(error);
    tracing::debug!(
        ins = format_args!("{ins:02X}"),
        sw = %sw,
        reason = %error,
        "command refused"
    );
    ResponseApdu::status(sw)
}

/// Like [`refuse`], with the instruction's own status word.
pub(super) fn refuse_with(ins: u8, sw: StatusWord, error: &Error) -> ResponseApdu {
    tracing::debug!(
        ins = format_args!("{ins:02X}"),
        sw = %sw,
        reason = %error,
        "command refused"
    );
    ResponseApdu::status(sw)
}
