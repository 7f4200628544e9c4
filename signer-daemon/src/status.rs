//! Every failure becomes exactly one gRPC status code with a message a person
//! can act on. README.md ("gRPC errors") documents this table; the tests
//! below pin it.

use signer_lib::Error;
use tonic::{Code, Status};

use crate::worker::WorkError;

/// The gRPC code for a library error.
pub fn code_of(e: &Error) -> Code {
    match e {
        // The request itself is wrong: nothing was sent to the card.
        Error::BadDigestLength { .. }
        | Error::InvalidSlot { .. }
        | Error::SlotNotAllowed { .. }
        | Error::UnsupportedAlgorithm { .. }
        | Error::UnsupportedHash { .. }
        | Error::InvalidPolicy { .. }
        | Error::InvalidSelector { .. }
        | Error::TooLarge { .. }
        // A scheme or input the key cannot sign with (RSA-PSS on a P-256
        // key, a digest for Ed25519, PSS-SHA-512 on RSA-1024, ...).
        | Error::UnsupportedScheme { .. }
        | Error::SchemeMismatch { .. }
        | Error::MessageExpected { .. }
        | Error::DigestExpected { .. }
        | Error::HashTooLongForKey { .. } => Code::InvalidArgument,

        // Nothing there.
        Error::KeyNotFound { .. }
        | Error::CertificateNotFound { .. }
        | Error::TokenNotFound { .. } => Code::NotFound,

        // The token is in a state that needs a person: PIN, PUK, management
        // key, a key that cannot be attested, a misconfigured PIN source.
        Error::WrongPin { .. }
        | Error::PinBlocked
        | Error::WrongPuk { .. }
        | Error::PinRejectedEarlier { .. }
        | Error::PukBlocked
        | Error::InvalidPin { .. }
        | Error::PinComplexity { .. }
        | Error::PinRequired { .. }
        | Error::NotAttestable { .. }
        // An X25519 key: the key exists but cannot do what was asked.
        | Error::KeyCannotSign { .. }
        | Error::ManagementKeyRequired
        | Error::WrongManagementKey
        | Error::InvalidManagementKey { .. }
        | Error::ResetNotAllowed
        | Error::AmbiguousToken { .. }
        | Error::UnsupportedStateVersion { .. }
        | Error::Io { .. } => Code::FailedPrecondition,

        // Nobody touched the token in time.
        Error::TouchTimeout { .. } => Code::DeadlineExceeded,
        // The (emulated) touch source refused.
        Error::TouchDenied { .. } => Code::Aborted,

        // The token cannot be reached right now; retrying later may work.
        Error::CardRemoved { .. }
        | Error::CardReset
        | Error::CardInUse { .. }
        | Error::Unavailable { .. }
        | Error::StateLocked { .. } => Code::Unavailable,

        Error::CorruptState { .. } => Code::DataLoss,
        Error::StateExists { .. } => Code::AlreadyExists,
        Error::NotSupported { .. } => Code::Unimplemented,

        // The card (or the daemon) did something unexpected.
        Error::UnexpectedStatus { .. }
        | Error::Protocol { .. }
        | Error::Certificate { .. }
        | Error::Crypto { .. } => Code::Internal,

        // Variants added to the library later: INTERNAL until mapped here.
        _ => Code::Internal,
    }
}

/// The status for a library error. Unexpected card status words are logged
/// (with the status word) here, once.
pub fn from_error(e: &Error) -> Status {
    let code = code_of(e);
    match e {
        Error::UnexpectedStatus { command, sw } => {
            tracing::error!(
                command = *command,
                sw = %format!("{:04X}", u16::from(*sw)),
                "the card answered with an unexpected status word"
            );
        }
        _ if code == Code::Internal => tracing::error!(error = %e, "internal error"),
        _ => {}
    }
    Status::new(code, e.to_string())
}

/// The status for a worker failure.
pub fn from_work_error(e: &WorkError) -> Status {
    match e {
        WorkError::Token(e) => from_error(e),
        WorkError::QueueFull { .. } => Status::resource_exhausted(e.to_string()),
        WorkError::ShuttingDown => Status::unavailable(e.to_string()),
        WorkError::DeadlineExpired { .. } => Status::deadline_exceeded(e.to_string()),
        WorkError::KeyChanged { .. } => Status::aborted(e.to_string()),
    }
}

/// The canonical name of a status code (the audit log's `code` field):
/// the client crate's, so the daemon and its clients spell them alike.
pub use signer_client::code_name;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use signer_lib::piv::apdu::StatusWord;
    use signer_lib::{HashAlgorithm, SlotId};

    use super::*;

    #[test]
    fn the_documented_table() {
        let cases: Vec<(Error, Code, &str)> = vec![
            (
                Error::BadDigestLength {
                    hash: HashAlgorithm::Sha256,
                    expected: 32,
                    actual: 31,
                },
                Code::InvalidArgument,
                "expected 32 bytes, got 31",
            ),
            (
                Error::InvalidSlot { slot: "9b".into() },
                Code::InvalidArgument,
                "9b",
            ),
            (
                Error::UnsupportedHash { hash: "md5".into() },
                Code::InvalidArgument,
                "md5",
            ),
            (
                Error::KeyNotFound {
                    slot: SlotId::Signature,
                },
                Code::NotFound,
                "no key in slot 9c",
            ),
            (
                Error::WrongPin { retries_left: 2 },
                Code::FailedPrecondition,
                "2 tries left",
            ),
            (Error::PinBlocked, Code::FailedPrecondition, "PUK"),
            (
                Error::PinRejectedEarlier {
                    source_description: "PIN file /x".into(),
                    retries_left: 1,
                },
                Code::FailedPrecondition,
                "1 tries left",
            ),
            (
                Error::PinRequired {
                    slot: SlotId::Signature,
                },
                Code::FailedPrecondition,
                "PIN",
            ),
            (
                Error::TouchTimeout {
                    waited: Duration::from_secs(15),
                },
                Code::DeadlineExceeded,
                "touch",
            ),
            (
                Error::CardRemoved {
                    detail: "gone".into(),
                },
                Code::Unavailable,
                "reinsert",
            ),
            (Error::CardReset, Code::Unavailable, "retry"),
            (
                Error::CardInUse {
                    holder: "gpg-agent".into(),
                    fix: "stop scdaemon".into(),
                },
                Code::Unavailable,
                "gpg-agent",
            ),
            (
                Error::Unavailable {
                    reason: "pcscd is not running".into(),
                },
                Code::Unavailable,
                "pcscd",
            ),
            (
                Error::UnexpectedStatus {
                    command: "GENERAL AUTHENTICATE",
                    sw: StatusWord::from(0x6f00),
                },
                Code::Internal,
                "GENERAL AUTHENTICATE",
            ),
            (
                Error::KeyCannotSign {
                    slot: SlotId::KeyManagement,
                    algorithm: signer_lib::Algorithm::X25519,
                },
                Code::FailedPrecondition,
                "cannot sign",
            ),
            (
                Error::MessageExpected {
                    scheme: signer_lib::SignatureScheme::Ed25519,
                },
                Code::InvalidArgument,
                "pass the message",
            ),
            (
                Error::HashTooLongForKey {
                    scheme: signer_lib::SignatureScheme::RsaPss,
                    hash: HashAlgorithm::Sha512,
                    algorithm: signer_lib::Algorithm::Rsa1024,
                },
                Code::InvalidArgument,
                "shorter hash",
            ),
            (
                Error::SchemeMismatch {
                    scheme: signer_lib::SignatureScheme::RsaPss,
                    algorithm: signer_lib::Algorithm::EccP256,
                },
                Code::InvalidArgument,
                "cannot sign with rsa-pss",
            ),
            (
                Error::CorruptState {
                    path: PathBuf::from("/x"),
                    reason: "bad".into(),
                },
                Code::DataLoss,
                "corrupt",
            ),
        ];
        for (e, code, needle) in cases {
            let s = from_error(&e);
            assert_eq!(s.code(), code, "{e}");
            assert!(s.message().contains(needle), "{}: {}", s.message(), needle);
        }
        assert_eq!(
            from_work_error(&WorkError::QueueFull { capacity: 3 }).code(),
            Code::ResourceExhausted
        );
        assert_eq!(
            from_work_error(&WorkError::DeadlineExpired {
                waited: Duration::from_secs(1)
            })
            .code(),
            Code::DeadlineExceeded
        );
        assert_eq!(
            from_work_error(&WorkError::ShuttingDown).code(),
            Code::Unavailable
        );
    }

    #[test]
    fn code_names_are_grpc_spelling() {
        assert_eq!(code_name(Code::PermissionDenied), "PERMISSION_DENIED");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}
