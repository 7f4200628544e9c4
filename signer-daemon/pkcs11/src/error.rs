//! Every failure of the module, and the `CKR_*` code each one returns
//! (README, "PKCS#11", the `CKR_*` table).

use cryptoki_sys::*;
use signer_client::ErrorKind;

/// A failure of a PKCS#11 call. [`P11Error::rv`] is what the caller gets.
#[derive(Debug, thiserror::Error)]
pub enum P11Error {
    /// `C_Initialize` was not called (or was called in the parent of this
    /// forked process only).
    #[error("C_Initialize has not been called in this process")]
    NotInitialized,
    /// `C_Initialize` was called twice in the same process.
    #[error("C_Initialize was already called")]
    AlreadyInitialized,
    /// A null pointer, or a reserved field that is not null.
    #[error("bad arguments: {0}")]
    ArgumentsBad(&'static str),
    /// The caller supplied mutex functions without `CKF_OS_LOCKING_OK`:
    /// the module locks with the operating system's primitives only.
    #[error("the module cannot use the application's mutex functions; pass CKF_OS_LOCKING_OK")]
    CantLock,
    /// The caller forbids the module to create threads; it needs one for
    /// the daemon connection.
    #[error(
        "the module needs a thread for the daemon connection (CKF_LIBRARY_CANT_CREATE_OS_THREADS)"
    )]
    NeedToCreateThreads,
    /// No slot with that id.
    #[error("no slot {0}")]
    SlotIdInvalid(CK_SLOT_ID),
    /// The daemon does not serve that token now (removed, unreachable).
    #[error("the token of slot {0} is not present (the daemon does not reach it)")]
    TokenNotPresent(CK_SLOT_ID),
    /// No open session with that handle.
    #[error("no session {0}")]
    SessionHandleInvalid(CK_SESSION_HANDLE),
    /// Only serial sessions exist (`CKF_SERIAL_SESSION` not set).
    #[error("CKF_SERIAL_SESSION must be set")]
    ParallelNotSupported,
    /// No object with that handle in this session's slot.
    #[error("no object {0}")]
    ObjectHandleInvalid(CK_OBJECT_HANDLE),
    /// The key handle does not name a private key of this slot.
    #[error("object {0} is not a signing key of this token")]
    KeyHandleInvalid(CK_OBJECT_HANDLE),
    /// A mechanism the module does not implement.
    #[error(
        "mechanism {0:#x} is not supported (CKM_ECDSA, CKM_ECDSA_SHA256/384/512, CKM_EDDSA, CKM_RSA_PKCS, CKM_SHA256/384/512_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_SHA256/384/512_RSA_PKCS_PSS are; see C_GetMechanismList)"
    )]
    MechanismInvalid(CK_MECHANISM_TYPE),
    /// A parameter the mechanism does not take, or PSS parameters other
    /// than the daemon's (MGF1 of the mechanism's hash, a salt as long as
    /// the digest).
    #[error(
        "mechanism {0:#x}: wrong parameter (only the PSS mechanisms take one, CK_RSA_PKCS_PSS_PARAMS with MGF1 of the same hash and sLen = the digest length)"
    )]
    MechanismParamInvalid(CK_MECHANISM_TYPE),
    /// Another operation of the same kind is active in the session.
    #[error("an operation is already active in this session")]
    OperationActive,
    /// No such operation was initialized.
    #[error("no operation was initialized in this session")]
    OperationNotInitialized,
    /// `CKM_ECDSA` input that is not a SHA-256, SHA-384 or SHA-512 digest.
    #[error(
        "CKM_ECDSA signs a 32-, 48- or 64-byte digest (SHA-256/384/512); got {0} bytes (refused before the daemon was asked)"
    )]
    DataLenRange(usize),
    /// A `CKM_RSA_PKCS` input that is not a SHA-256/384/512 `DigestInfo`.
    #[error(
        "CKM_RSA_PKCS signs a DER DigestInfo of a SHA-256, SHA-384 or SHA-512 digest (the daemon pads); got {0} bytes that are not one (use CKM_SHA256_RSA_PKCS to have the module hash)"
    )]
    NotDigestInfo(usize),
    /// A `CKM_EDDSA` message longer than the token signs in one command.
    #[error(
        "CKM_EDDSA signs at most {max} bytes (the message goes to the token in one command); got {0} (refused before the daemon was asked)",
        max = crate::mechanism::EDDSA_MAX_MESSAGE
    )]
    MessageTooLong(usize),
    /// The mechanism does not fit the key (`CKM_EDDSA` with an ECDSA key, or
    /// the other way round).
    #[error("mechanism {mechanism:#x} does not sign with a {curve} key")]
    KeyTypeInconsistent {
        /// The mechanism.
        mechanism: CK_MECHANISM_TYPE,
        /// The key's curve.
        curve: &'static str,
    },
    /// The output buffer is too small (the needed length was returned).
    #[error("the buffer is too small: {needed} bytes needed")]
    BufferTooSmall {
        /// The length needed.
        needed: usize,
    },
    /// `C_Login` as the security officer: administration is not done
    /// through the daemon.
    #[error(
        "only CKU_USER (and CKU_CONTEXT_SPECIFIC) log in; token administration is not done through signer-daemon"
    )]
    UserTypeInvalid,
    /// `C_Login` twice.
    #[error("already logged in")]
    UserAlreadyLoggedIn,
    /// `C_Logout` without `C_Login`.
    #[error("not logged in")]
    UserNotLoggedIn,
    /// An attribute the object does not have (its length is set to
    /// `CK_UNAVAILABLE_INFORMATION`; the others are still returned).
    #[error("the object lacks an attribute asked for")]
    AttributeTypeInvalid,
    /// The private key's value was asked for: it never leaves the token.
    #[error("the private key's value is sensitive")]
    AttributeSensitive,
    /// The module does not implement this function (key generation,
    /// object creation, encryption, ...).
    #[error("not supported by signer-daemon's PKCS#11 module")]
    FunctionNotSupported,
    /// A template asks to create or change objects; the token is read-only
    /// through the daemon.
    #[error("objects cannot be created or changed through signer-daemon")]
    ReadOnly,
    /// The daemon answered with an error, or could not be reached.
    #[error("{0}")]
    Daemon(#[from] signer_client::Error),
    /// The client thread could not be started.
    #[error("cannot start the daemon client thread: {0}")]
    Thread(std::io::Error),
    /// A panic was caught at the C boundary.
    #[error("internal error (panic caught at the C boundary): {0}")]
    Panic(String),
}

impl P11Error {
    /// The `CKR_*` code.
    pub fn rv(&self) -> CK_RV {
        match self {
            P11Error::NotInitialized => CKR_CRYPTOKI_NOT_INITIALIZED,
            P11Error::AlreadyInitialized => CKR_CRYPTOKI_ALREADY_INITIALIZED,
            P11Error::ArgumentsBad(_) => CKR_ARGUMENTS_BAD,
            P11Error::CantLock => CKR_CANT_LOCK,
            P11Error::NeedToCreateThreads => CKR_NEED_TO_CREATE_THREADS,
            P11Error::SlotIdInvalid(_) => CKR_SLOT_ID_INVALID,
            P11Error::TokenNotPresent(_) => CKR_TOKEN_NOT_PRESENT,
            P11Error::SessionHandleInvalid(_) => CKR_SESSION_HANDLE_INVALID,
            P11Error::ParallelNotSupported => CKR_SESSION_PARALLEL_NOT_SUPPORTED,
            P11Error::ObjectHandleInvalid(_) => CKR_OBJECT_HANDLE_INVALID,
            P11Error::KeyHandleInvalid(_) => CKR_KEY_HANDLE_INVALID,
            P11Error::MechanismInvalid(_) => CKR_MECHANISM_INVALID,
            P11Error::MechanismParamInvalid(_) => CKR_MECHANISM_PARAM_INVALID,
            P11Error::OperationActive => CKR_OPERATION_ACTIVE,
            P11Error::OperationNotInitialized => CKR_OPERATION_NOT_INITIALIZED,
            P11Error::DataLenRange(_) => CKR_DATA_LEN_RANGE,
            P11Error::MessageTooLong(_) => CKR_DATA_LEN_RANGE,
            P11Error::NotDigestInfo(_) => CKR_DATA_INVALID,
            P11Error::KeyTypeInconsistent { .. } => CKR_KEY_TYPE_INCONSISTENT,
            P11Error::BufferTooSmall { .. } => CKR_BUFFER_TOO_SMALL,
            P11Error::UserTypeInvalid => CKR_USER_TYPE_INVALID,
            P11Error::UserAlreadyLoggedIn => CKR_USER_ALREADY_LOGGED_IN,
            P11Error::UserNotLoggedIn => CKR_USER_NOT_LOGGED_IN,
            P11Error::AttributeTypeInvalid => CKR_ATTRIBUTE_TYPE_INVALID,
            P11Error::AttributeSensitive => CKR_ATTRIBUTE_SENSITIVE,
            P11Error::FunctionNotSupported => CKR_FUNCTION_NOT_SUPPORTED,
            P11Error::ReadOnly => CKR_TOKEN_WRITE_PROTECTED,
            P11Error::Daemon(e) => daemon_rv(e.kind()),
            P11Error::Thread(_) => CKR_GENERAL_ERROR,
            P11Error::Panic(_) => CKR_GENERAL_ERROR,
        }
    }

    /// Whether the failure is worth a line on stderr: the caller's own
    /// protocol steps (a length query, a too-small buffer) are not.
    pub fn worth_logging(&self) -> bool {
        !matches!(
            self,
            P11Error::BufferTooSmall { .. }
                | P11Error::UserAlreadyLoggedIn
                | P11Error::AttributeTypeInvalid
                | P11Error::AttributeSensitive
                | P11Error::FunctionNotSupported
                | P11Error::AlreadyInitialized
        )
    }
}

/// The `CKR_*` code of a daemon failure (README's table).
pub fn daemon_rv(kind: ErrorKind) -> CK_RV {
    match kind {
        // The daemon is not running, the socket is wrong, or this user may
        // not open it.
        ErrorKind::Unreachable => CKR_DEVICE_ERROR,
        // The daemon's policy refused this caller this key.
        ErrorKind::Denied => CKR_FUNCTION_REJECTED,
        // The token refused the touch, or the slot changed under the request.
        ErrorKind::Aborted => CKR_FUNCTION_REJECTED,
        // The key is gone since it was listed.
        ErrorKind::NotFound => CKR_KEY_HANDLE_INVALID,
        // The daemon's PIN is wrong, blocked or not configured.
        ErrorKind::Pin => CKR_PIN_INCORRECT,
        // No touch in time, or the deadline passed; or cancelled.
        ErrorKind::Timeout | ErrorKind::Cancelled => CKR_FUNCTION_CANCELED,
        // The card is absent, reset, busy with another program, pcscd is
        // down, or the daemon is stopping.
        ErrorKind::Unavailable => CKR_DEVICE_REMOVED,
        // The token's queue is full, the daemon refused the request as
        // invalid (a module bug), or the daemon or card failed.
        ErrorKind::Busy | ErrorKind::Invalid | ErrorKind::Internal => CKR_FUNCTION_FAILED,
    }
}

/// The name of a `CKR_*` code, for log lines.
pub fn rv_name(rv: CK_RV) -> &'static str {
    match rv {
        CKR_OK => "CKR_OK",
        CKR_GENERAL_ERROR => "CKR_GENERAL_ERROR",
        CKR_FUNCTION_FAILED => "CKR_FUNCTION_FAILED",
        CKR_ARGUMENTS_BAD => "CKR_ARGUMENTS_BAD",
        CKR_CANT_LOCK => "CKR_CANT_LOCK",
        CKR_NEED_TO_CREATE_THREADS => "CKR_NEED_TO_CREATE_THREADS",
        CKR_DEVICE_ERROR => "CKR_DEVICE_ERROR",
        CKR_DEVICE_REMOVED => "CKR_DEVICE_REMOVED",
        CKR_FUNCTION_CANCELED => "CKR_FUNCTION_CANCELED",
        CKR_FUNCTION_REJECTED => "CKR_FUNCTION_REJECTED",
        CKR_KEY_HANDLE_INVALID => "CKR_KEY_HANDLE_INVALID",
        CKR_PIN_INCORRECT => "CKR_PIN_INCORRECT",
        CKR_SLOT_ID_INVALID => "CKR_SLOT_ID_INVALID",
        CKR_TOKEN_NOT_PRESENT => "CKR_TOKEN_NOT_PRESENT",
        CKR_SESSION_HANDLE_INVALID => "CKR_SESSION_HANDLE_INVALID",
        CKR_SESSION_PARALLEL_NOT_SUPPORTED => "CKR_SESSION_PARALLEL_NOT_SUPPORTED",
        CKR_OBJECT_HANDLE_INVALID => "CKR_OBJECT_HANDLE_INVALID",
        CKR_MECHANISM_INVALID => "CKR_MECHANISM_INVALID",
        CKR_MECHANISM_PARAM_INVALID => "CKR_MECHANISM_PARAM_INVALID",
        CKR_OPERATION_ACTIVE => "CKR_OPERATION_ACTIVE",
        CKR_OPERATION_NOT_INITIALIZED => "CKR_OPERATION_NOT_INITIALIZED",
        CKR_DATA_LEN_RANGE => "CKR_DATA_LEN_RANGE",
        CKR_BUFFER_TOO_SMALL => "CKR_BUFFER_TOO_SMALL",
        CKR_USER_TYPE_INVALID => "CKR_USER_TYPE_INVALID",
        CKR_USER_ALREADY_LOGGED_IN => "CKR_USER_ALREADY_LOGGED_IN",
        CKR_USER_NOT_LOGGED_IN => "CKR_USER_NOT_LOGGED_IN",
        CKR_FUNCTION_NOT_SUPPORTED => "CKR_FUNCTION_NOT_SUPPORTED",
        CKR_TOKEN_WRITE_PROTECTED => "CKR_TOKEN_WRITE_PROTECTED",
        CKR_CRYPTOKI_NOT_INITIALIZED => "CKR_CRYPTOKI_NOT_INITIALIZED",
        CKR_CRYPTOKI_ALREADY_INITIALIZED => "CKR_CRYPTOKI_ALREADY_INITIALIZED",
        CKR_ATTRIBUTE_TYPE_INVALID => "CKR_ATTRIBUTE_TYPE_INVALID",
        CKR_ATTRIBUTE_SENSITIVE => "CKR_ATTRIBUTE_SENSITIVE",
        _ => "CKR_(other)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_failures_map_to_distinct_documented_codes() {
        assert_eq!(daemon_rv(ErrorKind::Unreachable), CKR_DEVICE_ERROR);
        assert_eq!(daemon_rv(ErrorKind::Denied), CKR_FUNCTION_REJECTED);
        assert_eq!(daemon_rv(ErrorKind::Unavailable), CKR_DEVICE_REMOVED);
        assert_eq!(daemon_rv(ErrorKind::Timeout), CKR_FUNCTION_CANCELED);
        assert_eq!(daemon_rv(ErrorKind::Pin), CKR_PIN_INCORRECT);
        assert_eq!(daemon_rv(ErrorKind::NotFound), CKR_KEY_HANDLE_INVALID);
        assert_eq!(daemon_rv(ErrorKind::Internal), CKR_FUNCTION_FAILED);
        let e = P11Error::Daemon(signer_client::Error::Status {
            code: tonic::Code::PermissionDenied,
            message: "rule x".into(),
        });
        assert_eq!(e.rv(), CKR_FUNCTION_REJECTED);
        assert!(e.to_string().contains("rule x"));
    }
}
