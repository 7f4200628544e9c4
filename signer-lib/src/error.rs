//! The library's one error type.
//!
//! Every variant says what went wrong in words an operator can act on, and its
//! doc comment names the likely cause. The daemon maps each variant to exactly
//! one gRPC status code (see `signer-daemon`'s `status` module and README).
//! Messages never contain a PIN, a PUK, a management key or private key bytes.

use std::path::PathBuf;
use std::time::Duration;

use crate::model::{HashAlgorithm, SlotId};
use crate::piv::apdu::StatusWord;

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- PIN / PUK -------------------------------------------------------
    /// The token refused the new PIN or PUK under its PIN complexity
    /// policy (a YubiKey 5.7+ made with PIN complexity on answers `6985`).
    /// The current PIN or PUK was right and nothing changed. Choose a value
    /// that is not one character repeated and not a commonly used one.
    #[error("the new {what} is refused by the token's PIN complexity policy: {rule}")]
    PinComplexity {
        /// "PIN" or "PUK".
        what: &'static str,
        /// The rule it breaks, in words.
        rule: &'static str,
    },

    /// The card rejected the PIN. Likely cause: a typo or a stale PIN file.
    /// The PIN is not retried automatically; the next wrong attempt costs
    /// another try.
    #[error("wrong PIN: {retries_left} tries left before the PIN is blocked")]
    WrongPin {
        /// Attempts left before the PIN blocks.
        retries_left: u8,
    },

    /// The PIN retry counter is at zero. Likely cause: repeated wrong PINs.
    /// Unblock it with the PUK (`unblock-pin`).
    #[error(
        "PIN is blocked: unblock it with the PUK, or reset the PIV applet if the PUK is blocked too"
    )]
    PinBlocked,

    /// The card rejected the PUK. Likely cause: a typo.
    #[error("wrong PUK: {retries_left} tries left before the PUK is blocked")]
    WrongPuk {
        /// Attempts left before the PUK blocks.
        retries_left: u8,
    },

    /// The PIN from this source was rejected by the card earlier in this
    /// process and has not changed since; it is refused locally so that a
    /// wrong PIN is never retried automatically (three in a row block the card).
    #[error(
        "the PIN from the {source_description} was rejected by the card ({retries_left} tries left); it will not be tried again: fix it and retry"
    )]
    PinRejectedEarlier {
        /// Where the PIN came from.
        source_description: String,
        /// Tries left after the rejection.
        retries_left: u8,
    },

    /// The PUK retry counter is at zero; the only way out is a PIV reset,
    /// which destroys every key.
    #[error("PUK is blocked: only a PIV reset (which destroys all keys) can recover the token")]
    PukBlocked,

    /// A PIN or PUK that can never be valid (PINs are 6–8 bytes, PUKs 6–8
    /// bytes). Nothing was sent to the card, no retry was spent.
    #[error("invalid {what}: {reason}")]
    InvalidPin {
        /// "PIN" or "PUK".
        what: &'static str,
        /// Why it cannot be valid.
        reason: String,
    },

    /// Security status not satisfied: the key's PIN policy requires a PIN
    /// verification that has not happened (or was voided by another command).
    /// Likely cause: no PIN configured for the signer, or PIN policy `always`.
    #[error(
        "the key in slot {slot} needs the PIN to be verified first (security status not satisfied)"
    )]
    PinRequired {
        /// The slot whose key was used.
        slot: SlotId,
    },

    // ----- Touch -----------------------------------------------------------
    /// Nobody touched the token within the device's timeout (15 s on a YubiKey).
    #[error("no touch within {waited:?}: touch the YubiKey when it blinks, then retry")]
    TouchTimeout {
        /// How long the token waited.
        waited: Duration,
    },

    /// The touch source refused (emulated tokens configured to deny touches).
    #[error("touch was denied for the key in slot {slot}")]
    TouchDenied {
        /// The slot whose key was used.
        slot: SlotId,
    },

    // ----- Keys, slots, algorithms ----------------------------------------
    /// The slot holds no key. Likely cause: wrong slot, or the key was never generated.
    #[error("no key in slot {slot}")]
    KeyNotFound {
        /// The empty slot.
        slot: SlotId,
    },

    /// The slot holds no certificate (attestation slot f9 included).
    #[error("no certificate in slot {slot}")]
    CertificateNotFound {
        /// The slot.
        slot: SlotId,
    },

    /// Not a PIV key slot, or a slot that cannot be used for this operation
    /// (e.g. generating a key into f9).
    #[error("invalid slot {slot}: use 9a, 9c, 9d, 9e or a retired slot 82-95")]
    InvalidSlot {
        /// The slot as given.
        slot: String,
    },

    /// The slot exists but cannot be used for this operation.
    #[error("slot {slot} cannot be used to {operation}")]
    SlotNotAllowed {
        /// The slot.
        slot: SlotId,
        /// What was attempted.
        operation: &'static str,
    },

    /// Algorithm unknown or not implemented by this backend (or by this
    /// token's firmware).
    #[error(
        "unsupported algorithm {algorithm}: use p256, p384, rsa1024, rsa2048, rsa3072, rsa4096, ed25519 or x25519 (what a token offers depends on its firmware)"
    )]
    UnsupportedAlgorithm {
        /// The algorithm as named or as its id byte.
        algorithm: String,
    },

    /// A signature scheme name not recognised.
    #[error("unsupported signature scheme {scheme}: use ecdsa, rsa-pkcs1v15, rsa-pss or ed25519")]
    UnsupportedScheme {
        /// The scheme as named.
        scheme: String,
    },

    /// The key cannot sign at all: an X25519 key only agrees keys (ECDH).
    /// Likely cause: the wrong slot, or a key generated for encryption.
    #[error("the key in slot {slot} is {algorithm}, a key-agreement key: it cannot sign")]
    KeyCannotSign {
        /// The slot.
        slot: SlotId,
        /// The key's algorithm.
        algorithm: crate::model::Algorithm,
    },

    /// The signature scheme does not fit the key (e.g. RSA-PSS asked of a
    /// P-256 key, ECDSA of an RSA key). Likely cause: the wrong slot or a
    /// client configured for another key type.
    #[error(
        "a {algorithm} key cannot sign with {scheme}: use ecdsa for p256/p384, rsa-pkcs1v15 or rsa-pss for RSA, ed25519 for ed25519"
    )]
    SchemeMismatch {
        /// The scheme asked for.
        scheme: crate::model::SignatureScheme,
        /// The key's algorithm.
        algorithm: crate::model::Algorithm,
    },

    /// The scheme signs the message itself (Ed25519) but a digest was
    /// given. The card cannot sign a digest for it: pass the message.
    #[error("{scheme} signs the message itself, not a digest: pass the message")]
    MessageExpected {
        /// The scheme.
        scheme: crate::model::SignatureScheme,
    },

    /// The scheme signs a digest (ECDSA, RSA) but a message was given: hash
    /// it (SHA-256/384/512) and pass the digest with its hash.
    #[error("{scheme} signs a digest: hash the message and pass the digest with its hash")]
    DigestExpected {
        /// The scheme.
        scheme: crate::model::SignatureScheme,
    },

    /// The padded digest does not fit the RSA modulus (e.g. PSS with
    /// SHA-512 on RSA-1024 needs 130 bytes, the modulus has 128). Use a
    /// shorter hash or a larger key.
    #[error("{scheme} with {hash} does not fit a {algorithm} key: use a shorter hash")]
    HashTooLongForKey {
        /// The scheme.
        scheme: crate::model::SignatureScheme,
        /// The hash.
        hash: HashAlgorithm,
        /// The key's algorithm.
        algorithm: crate::model::Algorithm,
    },

    /// Hash name not recognised.
    #[error("unsupported hash {hash}: use sha256, sha384 or sha512")]
    UnsupportedHash {
        /// The hash as named.
        hash: String,
    },

    /// A PIN or touch policy name or byte that does not exist.
    #[error("invalid {policy}")]
    InvalidPolicy {
        /// What was given.
        policy: String,
    },

    /// The digest's length does not match its declared hash. Likely cause:
    /// the caller hashed with another algorithm, or sent hex/base64 text.
    #[error("bad digest length for {hash}: expected {expected} bytes, got {actual}")]
    BadDigestLength {
        /// Declared hash.
        hash: HashAlgorithm,
        /// Its output length.
        expected: usize,
        /// The length received.
        actual: usize,
    },

    /// Only keys generated on the token can be attested (as on a YubiKey).
    #[error(
        "the key in slot {slot} was imported, not generated on the token, so it cannot be attested"
    )]
    NotAttestable {
        /// The slot.
        slot: SlotId,
    },

    // ----- Management key ----------------------------------------------------
    /// An administrative operation was attempted without authenticating with
    /// the management key first.
    #[error("this operation needs the management key: authenticate first")]
    ManagementKeyRequired,

    /// The management key did not authenticate. Likely cause: wrong key, or
    /// the wrong algorithm (3DES vs AES) for this card.
    #[error("wrong management key (or wrong management key algorithm for this card)")]
    WrongManagementKey,

    /// Mutual authentication with the management key failed on the card's
    /// side: the card accepted our proof but its own answer to our challenge
    /// is wrong. Likely cause: a faulty or counterfeit token, or something
    /// between us and the card rewriting responses. Do not trust this token.
    #[error(
        "the token's answer to the management key challenge is wrong: it may not be the genuine token (faulty, counterfeit, or a tampered connection)"
    )]
    CardAuthenticationFailed,

    /// The management key's length does not fit its algorithm.
    #[error("invalid management key: {reason}")]
    InvalidManagementKey {
        /// Why.
        reason: String,
    },

    /// `reset` refused: a YubiKey resets its PIV applet only when both the PIN
    /// and the PUK are blocked.
    #[error("reset refused: both the PIN and the PUK must be blocked first")]
    ResetNotAllowed,

    // ----- Card and reader -----------------------------------------------------
    /// The card went away (unplugged, reader gone) during or before the request.
    #[error("the token was removed ({detail}): reinsert it and retry")]
    CardRemoved {
        /// What PC/SC said.
        detail: String,
    },

    /// The card was reset by another program; the request in flight was lost
    /// and the PIN verification state with it. The next request reconnects.
    #[error("the token was reset by another program; retry the request")]
    CardReset,

    /// Another program holds the card exclusively.
    #[error("the token is in use by another program ({holder}): {fix}")]
    CardInUse {
        /// The likely holder.
        holder: String,
        /// What to do.
        fix: String,
    },

    /// PC/SC or the token is unreachable: pcscd is down, no reader, or the
    /// emulator bridge is gone.
    #[error("token unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },

    /// The vpcd address for the emulated card bridge cannot be used. Likely
    /// cause: a typo, or a missing port (vpcd's default is 35963).
    #[error("invalid vpcd address {address:?}: {reason} (use HOST:PORT, e.g. 127.0.0.1:35963)")]
    VpcdAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A virtual card's Answer To Reset is not 2 to 33 bytes (ISO 7816-3),
    /// so pcscd would refuse it. Likely cause: a bug in the card emulation.
    #[error("invalid ATR from the virtual card: {reason}")]
    InvalidAtr {
        /// What is wrong with it.
        reason: String,
    },

    /// No token matches the selector.
    #[error("no token found: {reason}")]
    TokenNotFound {
        /// What was looked for.
        reason: String,
    },

    /// Several tokens match and the selector did not say which.
    #[error("several tokens found (serials {serials:?}): select one with yubikey:SERIAL")]
    AmbiguousToken {
        /// The serials found.
        serials: Vec<u32>,
    },

    /// A token selector string that cannot be parsed.
    #[error("invalid token selector {selector:?}: use emulated:FILE, yubikey or yubikey:SERIAL")]
    InvalidSelector {
        /// As given.
        selector: String,
    },

    /// The card answered with a status word this operation does not expect.
    #[error("unexpected card status {sw} ({sw:?}) for {command}")]
    UnexpectedStatus {
        /// The command that got it.
        command: &'static str,
        /// The status word.
        sw: StatusWord,
    },

    /// A malformed response or data object: the card (or emulator) sent
    /// something that does not follow the PIV or YubiKey encodings.
    #[error("protocol error: {reason}")]
    Protocol {
        /// What was malformed.
        reason: String,
    },

    /// A certificate that cannot be parsed or built.
    #[error("certificate error: {reason}")]
    Certificate {
        /// Why.
        reason: String,
    },

    /// The input is larger than the token can store (e.g. a certificate over
    /// the object size limit).
    #[error("{what} is too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// A cryptographic primitive failed (bad key material, RNG failure).
    #[error("cryptographic failure: {reason}")]
    Crypto {
        /// What failed.
        reason: String,
    },

    // ----- Emulator state ------------------------------------------------------
    /// The emulator's state file is truncated, corrupt, or fails its checksum.
    /// The file is left untouched; restore it from a backup or re-init.
    #[error("emulated token state {path} is corrupt: {reason} (file left untouched)")]
    CorruptState {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The state file was written by a newer (or unknown) format version.
    #[error(
        "emulated token state {path} has format version {found}; this build reads version {supported}"
    )]
    UnsupportedStateVersion {
        /// The state file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },

    /// Another process has the emulated token open (the state file is locked).
    #[error("emulated token state {path} is in use by another process")]
    StateLocked {
        /// The state file.
        path: PathBuf,
    },

    /// A state file already exists where `init` was asked to create one.
    #[error("{path} already exists; refusing to overwrite an emulated token")]
    StateExists {
        /// The path.
        path: PathBuf,
    },

    // ----- Card commands and data objects ---------------------------------
    /// A command's data is malformed for the operation (wrong length, bad
    /// encoding, impossible value). Likely cause: a client bug or a
    /// hand-built APDU. Maps to status word 6A80.
    #[error("malformed command data: {reason}")]
    BadCommandData {
        /// What is wrong with it.
        reason: String,
    },

    /// The PIV data object is not stored on the token. Likely cause: it was
    /// never written (e.g. no CHUID on a fresh card). Maps to 6A82.
    #[error("data object {object:06x} not found")]
    DataObjectNotFound {
        /// The object id (e.g. 0x5fc102).
        object: u32,
    },

    /// Not a PIV data object id this token can store (or read). Likely cause:
    /// a typo in the object id, or a tool written for another card.
    #[error("invalid data object id {object:06x}")]
    InvalidDataObject {
        /// The object id as given.
        object: u32,
    },

    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The operation is not available on this backend.
    #[error("not supported by this token: {what}")]
    NotSupported {
        /// What.
        what: String,
    },
}

impl Error {
    /// Shorthand for an I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
