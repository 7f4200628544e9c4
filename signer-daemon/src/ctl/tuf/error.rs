//! Why a TUF command refused its input. Every refusal happens before
//! anything is written: the input file is left as it was.

/// A refusal of `signerctl tuf`; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TufError {
    /// The file is not JSON (or not UTF-8).
    #[error("not valid JSON ({detail}): fix the file (is it the metadata file?)")]
    MalformedJson {
        /// serde_json's message, with line and column.
        detail: String,
    },
    /// The file is JSON but not TUF metadata (`{"signed": {...},
    /// "signatures": [...]}` with the fields the specification requires).
    #[error(
        "not TUF metadata: {reason} (TUF metadata is {{\"signed\": {{\"_type\": ..., \"version\": ..., \"expires\": ...}}, \"signatures\": [...]}})"
    )]
    NotMetadata {
        /// What is missing or wrong, with its path in the file.
        reason: String,
    },
    /// `signed` holds something canonical JSON cannot express (a float,
    /// a duplicate key), so no signature over it can be checked by TUF.
    #[error("\"signed\" has no canonical JSON form: {detail}")]
    NotCanonical {
        /// The parser's message, with line and column.
        detail: String,
    },
    /// `_type` is not one of the four top-level roles.
    #[error(
        "unknown _type {found:?}: signerctl tuf handles \"root\", \"targets\", \"snapshot\" and \"timestamp\" metadata"
    )]
    UnknownType {
        /// The `_type` in the file.
        found: String,
    },
    /// The signing key is not one the metadata (or the trusted root) lists
    /// for the role, so its signature would not count.
    #[error(
        "key {keyid} is not listed for the {role} role: {reason}; add it to the root first (signerctl tuf key prints its entry), give the previous root with --root when rotating, or pass --force to sign anyway"
    )]
    KeyNotListed {
        /// The TUF key id of the signing key.
        keyid: String,
        /// The role of the metadata.
        role: String,
        /// Where it was looked for.
        reason: String,
    },
    /// `expires` is in the past: a client would refuse the metadata.
    #[error(
        "signed.expires is {expires}, in the past: set a later expiry in the file (or with signerctl tuf rotate --expires-in), or pass --force to sign anyway"
    )]
    Expired {
        /// The `expires` in the file.
        expires: String,
    },
    /// Two signatures with the same key id (python-tuf refuses such a file).
    #[error("two signatures by key {keyid}: remove one of them")]
    DuplicateSignature {
        /// The key id.
        keyid: String,
    },
    /// A public key that cannot be used (format, curve or scheme).
    #[error("unusable key: {reason}")]
    BadKey {
        /// What is wrong.
        reason: String,
    },
    /// Metadata of a role other than root needs the root to be checked.
    #[error("{role} metadata is checked against a root: give it with --root ROOT.json")]
    NeedsRoot {
        /// The role.
        role: String,
    },
    /// The file given as the trusted root is not root metadata.
    #[error("--root {path}: it is {role} metadata, not root metadata")]
    NotRoot {
        /// The file.
        path: String,
        /// Its role.
        role: String,
    },
    /// Files to merge sign different contents.
    #[error(
        "{path} signs different contents (its \"signed\" differs from the first file's): only copies of the same metadata can be merged"
    )]
    MergeMismatch {
        /// The file that differs.
        path: String,
    },
    /// A root rotation that would produce an invalid root.
    #[error("cannot rotate: {reason}")]
    BadRotation {
        /// What is wrong.
        reason: String,
    },
    /// The signature the daemon returned does not verify over the
    /// canonical bytes (the daemon or the card is faulty); nothing written.
    #[error(
        "the token's signature does not verify over the metadata ({reason}); nothing was written: report it with the daemon's log"
    )]
    SignatureCheck {
        /// Why.
        reason: String,
    },
}
