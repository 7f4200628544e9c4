//! `signer-client`: the one Rust client of `signer-daemon`.
//!
//! Every Rust caller of the daemon goes through this crate: `signerctl`
//! (and its TUF commands and benchmark) and the PKCS#11 module. It owns:
//!
//! - finding and connecting to the socket ([`default_socket`], [`Client::connect`]);
//! - naming a key on the command line or in a URI ([`KeySpec`]);
//! - signing with the `SignWithEvents` stream, so the caller hears
//!   [`SignEvent::TouchRequired`] *before* the token waits for a touch
//!   ([`Client::sign`]), checking that the answer is for the digest that was
//!   asked and, given the key, that the signature verifies ([`verify`]);
//! - every scheme the daemon signs with: ECDSA over a digest
//!   ([`Client::sign`]), RSA PKCS#1 v1.5 / PSS over a digest and Ed25519
//!   over the message ([`Signing`], [`Client::sign_with`], [`verify_signature`]);
//! - the status mapping: every failure is an [`Error`] whose [`ErrorKind`]
//!   says what a person or a program should do about it (signerctl maps it
//!   to exit codes, the PKCS#11 module to `CKR_*`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), signer_client::Error> {
//! use signer_client::{Client, KeySpec, SignEvent};
//! use signer_proto::v1::HashAlgorithm;
//! let mut client = Client::connect(signer_client::default_socket()).await?;
//! let key = KeySpec::parse("9c", None).key_ref();
//! let digest = [0u8; 32];
//! let signed = client
//!     .sign(key, HashAlgorithm::Sha256, digest.to_vec(), |e| match e {
//!         SignEvent::TouchRequired { .. } => eprintln!("Touch your YubiKey now"),
//!     })
//!     .await?;
//! # let _ = signed; Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use signer_proto::v1 as pb;
use signer_proto::v1::signer_client::SignerClient;
use tonic::Code;
use tonic::transport::Channel;

pub use signer_proto;

pub mod blocking;

/// The system daemon's socket.
pub const SYSTEM_SOCKET: &str = "/run/signer/signer.sock";

/// The environment variable that names the daemon's socket for every client.
pub const SOCKET_ENV: &str = "SIGNER_SOCKET";

/// The socket a client uses when it is not told: `SIGNER_SOCKET` if set,
/// else the user daemon's (`$XDG_RUNTIME_DIR/signer/signer.sock`) if it
/// exists, else the system daemon's ([`SYSTEM_SOCKET`]).
pub fn default_socket() -> PathBuf {
    if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    default_socket_ignoring_env()
}

/// [`default_socket`] without looking at `SIGNER_SOCKET` (for callers whose
/// argument parser already read it).
pub fn default_socket_ignoring_env() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        let user = PathBuf::from(dir).join("signer").join("signer.sock");
        if std::fs::symlink_metadata(&user).is_ok() {
            return user;
        }
    }
    PathBuf::from(SYSTEM_SOCKET)
}

/// What a caller should do about an [`Error`]: the status mapping shared by
/// signerctl's exit codes and the PKCS#11 module's `CKR_*` codes (README,
/// "gRPC errors").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The daemon could not be reached (not running, wrong socket, no
    /// permission on the socket).
    Unreachable,
    /// The request was invalid (`INVALID_ARGUMENT`, `OUT_OF_RANGE`) or not
    /// supported (`UNIMPLEMENTED`): fix the request.
    Invalid,
    /// The policy refused this caller (`PERMISSION_DENIED`, `UNAUTHENTICATED`).
    Denied,
    /// No such key or token (`NOT_FOUND`).
    NotFound,
    /// A PIN problem on the daemon's side (`FAILED_PRECONDITION`): wrong,
    /// blocked, not configured, rejected earlier; or a key that cannot do
    /// what was asked (not attestable).
    Pin,
    /// No touch in time, or the caller's deadline passed (`DEADLINE_EXCEEDED`).
    Timeout,
    /// The token refused the touch or changed under the request (`ABORTED`).
    Aborted,
    /// The card is absent, reset, busy with another program, pcscd is down,
    /// the audit log cannot be written or the daemon is stopping
    /// (`UNAVAILABLE`): retry later.
    Unavailable,
    /// The token's queue is full (`RESOURCE_EXHAUSTED`): retry later.
    Busy,
    /// The call was cancelled (`CANCELLED`).
    Cancelled,
    /// The daemon or the card failed (`INTERNAL`, `DATA_LOSS`, `UNKNOWN`), or
    /// the daemon's answer was inconsistent (a signature for another digest,
    /// one that does not verify): report it with the daemon's log.
    Internal,
}

impl ErrorKind {
    /// The kind of a gRPC status code.
    pub fn of_code(code: Code) -> ErrorKind {
        match code {
            Code::InvalidArgument | Code::OutOfRange | Code::Unimplemented => ErrorKind::Invalid,
            Code::PermissionDenied | Code::Unauthenticated => ErrorKind::Denied,
            Code::NotFound => ErrorKind::NotFound,
            Code::FailedPrecondition => ErrorKind::Pin,
            Code::DeadlineExceeded => ErrorKind::Timeout,
            Code::Aborted => ErrorKind::Aborted,
            Code::Unavailable => ErrorKind::Unavailable,
            Code::ResourceExhausted => ErrorKind::Busy,
            Code::Cancelled => ErrorKind::Cancelled,
            Code::Ok | Code::AlreadyExists | Code::Internal | Code::DataLoss | Code::Unknown => {
                ErrorKind::Internal
            }
        }
    }
}

/// The canonical name of a gRPC status code (`INVALID_ARGUMENT`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A failure talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing answers on the socket (the daemon is not running, the path
    /// is wrong, or this user may not open it).
    #[error(
        "cannot reach signer-daemon at {}: {detail} (is it running? --socket or SIGNER_SOCKET choose the socket)",
        path.display()
    )]
    Unreachable {
        /// The socket tried.
        path: PathBuf,
        /// Why, from the operating system.
        detail: String,
    },
    /// The daemon answered with a status other than OK; `message` is the
    /// daemon's, which says what to do.
    #[error("{}: {message}", code_name(*code))]
    Status {
        /// The gRPC status code.
        code: Code,
        /// The daemon's message.
        message: String,
    },
    /// The daemon's answer is not what was asked (a signature for another
    /// digest or key, one that does not verify, a stream without a result).
    /// The answer is discarded.
    #[error("the daemon's answer was discarded: {reason}")]
    BadAnswer {
        /// What was wrong.
        reason: String,
    },
}

impl Error {
    /// What to do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unreachable { .. } => ErrorKind::Unreachable,
            Error::Status { code, .. } => ErrorKind::of_code(*code),
            Error::BadAnswer { .. } => ErrorKind::Internal,
        }
    }

    /// The gRPC status code, when the daemon answered with one.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn bad(reason: impl Into<String>) -> Error {
        Error::BadAnswer {
            reason: reason.into(),
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Error {
        // A transport failure after connecting (the daemon went away)
        // reaches us as UNAVAILABLE/UNKNOWN with tonic's message; keep it.
        Error::Status {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

/// A key as a person names it: a key id (64 hex digits) or a slot (`9c`,
/// `0x9c`, `signature`, `retired1`, ...) with an optional token serial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySpec {
    /// A key id, lowercase hex SHA-256 of the SPKI DER.
    KeyId(String),
    /// A slot, on the token with that serial (or the only token).
    Slot {
        /// The token's serial.
        token_serial: Option<u32>,
        /// The slot as written.
        slot: String,
    },
}

impl KeySpec {
    /// `KEYID|SLOT` with an optional `--token SERIAL`. The daemon validates
    /// the slot; a 64-hex-digit string is a key id.
    pub fn parse(key: &str, token_serial: Option<u32>) -> KeySpec {
        let k = key.trim();
        if k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()) {
            KeySpec::KeyId(k.to_ascii_lowercase())
        } else {
            KeySpec::Slot {
                token_serial,
                slot: k.to_string(),
            }
        }
    }

    /// The request's key reference.
    pub fn key_ref(&self) -> pb::KeyRef {
        pb::KeyRef {
            key: Some(match self {
                KeySpec::KeyId(id) => pb::key_ref::Key::KeyId(id.clone()),
                KeySpec::Slot { token_serial, slot } => pb::key_ref::Key::Slot(pb::SlotRef {
                    token_serial: *token_serial,
                    slot: slot.clone(),
                }),
            }),
        }
    }
}

/// What the daemon tells a signer while it works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignEvent {
    /// The token is about to wait for a physical touch.
    TouchRequired {
        /// The token.
        token_serial: u32,
        /// The slot.
        slot: String,
        /// How long the token waits.
        timeout: Duration,
    },
}

/// The digest length of a hash, in bytes.
pub fn digest_len(hash: pb::HashAlgorithm) -> Option<usize> {
    match hash {
        pb::HashAlgorithm::Sha256 => Some(32),
        pb::HashAlgorithm::Sha384 => Some(48),
        pb::HashAlgorithm::Sha512 => Some(64),
        pb::HashAlgorithm::Unspecified => None,
    }
}

/// Check a DER signature the daemon returned against the key (as the daemon
/// listed it) and the digest the caller asked to sign, with RustCrypto;
/// returns the signature as r‖s. The daemon verifies before it releases a
/// signature; this is the caller's own, independent check.
pub fn verify(
    key: &pb::Key,
    hash: pb::HashAlgorithm,
    digest: &[u8],
    der: &[u8],
) -> Result<Vec<u8>, Error> {
    use signer_lib::{Algorithm, HashAlgorithm, PublicKey};
    let algorithm = match pb::Algorithm::try_from(key.algorithm) {
        Ok(pb::Algorithm::EccP256) => Algorithm::EccP256,
        Ok(pb::Algorithm::EccP384) => Algorithm::EccP384,
        _ => {
            return Err(Error::bad(format!(
                "cannot verify a signature of key {} (algorithm {})",
                key.key_id, key.algorithm
            )));
        }
    };
    let h = match hash {
        pb::HashAlgorithm::Sha256 => HashAlgorithm::Sha256,
        pb::HashAlgorithm::Sha384 => HashAlgorithm::Sha384,
        pb::HashAlgorithm::Sha512 => HashAlgorithm::Sha512,
        pb::HashAlgorithm::Unspecified => return Err(Error::bad("no hash algorithm")),
    };
    let input = signer_lib::model::ecdsa_card_input(algorithm, h, digest)
        .map_err(|e| Error::bad(e.to_string()))?;
    PublicKey {
        algorithm,
        spki_der: key.public_key_der.clone(),
    }
    .verify_prehash(&input, der)
    .map_err(|e| Error::bad(format!("signature by key {}: {e}", key.key_id)))
}

/// What a signature is made over: a digest the caller computed, or the
/// message (the daemon hashes it for ECDSA and RSA; an Ed25519 key signs it
/// as it is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A digest made with the request's hash.
    Digest(Vec<u8>),
    /// The message.
    Message(Vec<u8>),
}

/// A signature request without its key: the `SignRequest` fields the
/// daemon's table (README "gRPC API", `signer.proto`) sets per key type.
/// Build it with [`Signing::ecdsa`], [`Signing::rsa`] or [`Signing::ed25519`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signing {
    /// The hash of the digest (or to apply to the message); SHA-512 for Ed25519.
    pub hash: pb::HashAlgorithm,
    /// What is signed.
    pub payload: Payload,
    /// The signature encoding (RAW for RSA and Ed25519).
    pub format: pb::SignatureFormat,
    /// The RSA padding; `Unspecified` for other keys.
    pub padding: pb::RsaPadding,
}

impl Signing {
    /// ECDSA over `payload` (hashed with `hash` if it is the message),
    /// encoded as `format` (DER or RAW r‖s).
    pub fn ecdsa(
        hash: pb::HashAlgorithm,
        payload: Payload,
        format: pb::SignatureFormat,
    ) -> Signing {
        Signing {
            hash,
            payload,
            format,
            padding: pb::RsaPadding::Unspecified,
        }
    }

    /// RSA with `padding` (PKCS#1 v1.5 or PSS with MGF1 of `hash` and a
    /// salt as long as the digest) over `payload`: the modulus-length signature.
    pub fn rsa(hash: pb::HashAlgorithm, payload: Payload, padding: pb::RsaPadding) -> Signing {
        Signing {
            hash,
            payload,
            format: pb::SignatureFormat::Raw,
            padding,
        }
    }

    /// Ed25519 over the message itself: the 64-byte signature R‖S.
    pub fn ed25519(message: Vec<u8>) -> Signing {
        Signing {
            hash: pb::HashAlgorithm::Sha512,
            payload: Payload::Message(message),
            format: pb::SignatureFormat::Raw,
            padding: pb::RsaPadding::Unspecified,
        }
    }

    /// The digest the daemon reports having signed: the payload's digest,
    /// or the hash of the message (for Ed25519 its SHA-512, which
    /// identifies the message). `None` for an unspecified hash.
    pub fn expected_digest(&self) -> Option<Vec<u8>> {
        match &self.payload {
            Payload::Digest(d) => Some(d.clone()),
            Payload::Message(m) => Some(lib_hash(self.hash)?.digest(m)),
        }
    }

    fn request(&self, key: pb::KeyRef) -> pb::SignRequest {
        pb::SignRequest {
            key: Some(key),
            input: Some(match &self.payload {
                Payload::Digest(d) => pb::sign_request::Input::Digest(d.clone()),
                Payload::Message(m) => pb::sign_request::Input::Message(m.clone()),
            }),
            hash: self.hash as i32,
            format: self.format as i32,
            padding: self.padding as i32,
        }
    }
}

fn lib_hash(hash: pb::HashAlgorithm) -> Option<signer_lib::HashAlgorithm> {
    use signer_lib::HashAlgorithm;
    match hash {
        pb::HashAlgorithm::Sha256 => Some(HashAlgorithm::Sha256),
        pb::HashAlgorithm::Sha384 => Some(HashAlgorithm::Sha384),
        pb::HashAlgorithm::Sha512 => Some(HashAlgorithm::Sha512),
        pb::HashAlgorithm::Unspecified => None,
    }
}

/// The library's algorithm of a listed key (`None` for an unknown value).
pub fn algorithm_of(key: &pb::Key) -> Option<signer_lib::Algorithm> {
    use signer_lib::Algorithm;
    Some(match pb::Algorithm::try_from(key.algorithm).ok()? {
        pb::Algorithm::EccP256 => Algorithm::EccP256,
        pb::Algorithm::EccP384 => Algorithm::EccP384,
        pb::Algorithm::Rsa1024 => Algorithm::Rsa1024,
        pb::Algorithm::Rsa2048 => Algorithm::Rsa2048,
        pb::Algorithm::Rsa3072 => Algorithm::Rsa3072,
        pb::Algorithm::Rsa4096 => Algorithm::Rsa4096,
        pb::Algorithm::Ed25519 => Algorithm::Ed25519,
        pb::Algorithm::X25519 => Algorithm::X25519,
        pb::Algorithm::Unspecified => return None,
    })
}

/// Check a signature the daemon returned for `signing` against the key (as
/// the daemon listed it), independently of the daemon, with RustCrypto
/// (signer-lib's [`PublicKey::verify`](signer_lib::PublicKey::verify):
/// p256/p384, the `rsa` crate's PKCS#1 v1.5 and PSS verifiers,
/// `ed25519-dalek`'s strict verification). The key's algorithm comes from
/// its SPKI, and must agree with the one listed. ECDSA signatures may be
/// DER or RAW.
pub fn verify_signature(key: &pb::Key, signing: &Signing, signature: &[u8]) -> Result<(), Error> {
    use signer_lib::{PublicKey, SignInput, SignatureScheme};
    let public = PublicKey::from_spki_der(&key.public_key_der)
        .map_err(|e| Error::bad(format!("key {}: {e}", key.key_id)))?;
    if algorithm_of(key) != Some(public.algorithm) {
        return Err(Error::bad(format!(
            "key {} is listed as algorithm {} but its public key is {}",
            key.key_id, key.algorithm, public.algorithm
        )));
    }
    let scheme = match (
        SignatureScheme::implied_by(public.algorithm),
        signing.padding,
    ) {
        (Some(s), pb::RsaPadding::Unspecified) => s,
        (None, pb::RsaPadding::Pkcs1v15) => SignatureScheme::RsaPkcs1v15,
        (None, pb::RsaPadding::Pss) => SignatureScheme::RsaPss,
        _ => {
            return Err(Error::bad(format!(
                "padding {:?} does not fit the {} key {}",
                signing.padding, public.algorithm, key.key_id
            )));
        }
    };
    let hash = lib_hash(signing.hash).ok_or_else(|| Error::bad("no hash algorithm"))?;
    let digest;
    let input = match (&signing.payload, scheme.signs_message()) {
        (Payload::Message(m), true) => SignInput::Message(m),
        (Payload::Digest(d), false) => SignInput::Digest { hash, digest: d },
        (Payload::Message(m), false) => {
            digest = hash.digest(m);
            SignInput::Digest {
                hash,
                digest: &digest,
            }
        }
        (Payload::Digest(_), true) => {
            return Err(Error::bad(format!(
                "{scheme} signs the message, not a digest"
            )));
        }
    };
    let checked = if scheme == SignatureScheme::Ecdsa && signing.format == pb::SignatureFormat::Raw
    {
        // r‖s: re-encode as DER for the ECDSA check.
        raw_ecdsa_to_der(public.algorithm, signature).and_then(|der| {
            public
                .verify(scheme, &input, &der)
                .map_err(|e| e.to_string())
        })
    } else {
        public
            .verify(scheme, &input, signature)
            .map_err(|e| e.to_string())
    };
    checked.map_err(|e| Error::bad(format!("{scheme} signature by key {}: {e}", key.key_id)))
}

fn raw_ecdsa_to_der(algorithm: signer_lib::Algorithm, raw: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |e: signature::Error| format!("not a raw r||s signature: {e}");
    match algorithm {
        signer_lib::Algorithm::EccP256 => p256::ecdsa::Signature::from_slice(raw)
            .map(|s| s.to_der().as_bytes().to_vec())
            .map_err(bad),
        signer_lib::Algorithm::EccP384 => p384::ecdsa::Signature::from_slice(raw)
            .map(|s| s.to_der().as_bytes().to_vec())
            .map_err(bad),
        other => Err(format!("{other} is not an ECDSA key")),
    }
}

/// A connection to the daemon. Cheap to clone (clones share the HTTP/2
/// connection, which multiplexes concurrent calls).
#[derive(Clone, Debug)]
pub struct Client {
    inner: SignerClient<Channel>,
    channel: Channel,
    path: PathBuf,
    timeout: Duration,
}

/// The deadline used when the caller sets none: long enough for a touch.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Client {
    /// Connect to the daemon on the Unix socket `path`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, Error> {
        let path = path.as_ref().to_path_buf();
        let channel = signer_proto::unix::connect(&path).await.map_err(|e| {
            let detail = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| e.to_string());
            Error::Unreachable {
                path: path.clone(),
                detail,
            }
        })?;
        Ok(Client {
            inner: SignerClient::new(channel.clone()),
            channel,
            path,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The deadline sent with every call (`grpc-timeout`).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The socket this client is connected to.
    pub fn socket(&self) -> &Path {
        &self.path
    }

    /// The underlying channel, for the health service or raw calls.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The generated client, for calls this crate does not wrap.
    pub fn raw(&mut self) -> &mut SignerClient<Channel> {
        &mut self.inner
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.set_timeout(self.timeout);
        r
    }

    /// The tokens the daemon serves.
    pub async fn list_tokens(&mut self) -> Result<Vec<pb::Token>, Error> {
        let r = self.request(pb::ListTokensRequest {});
        Ok(self.inner.list_tokens(r).await?.into_inner().tokens)
    }

    /// The keys (of one token, or all) this caller may list.
    pub async fn list_keys(&mut self, token_serial: Option<u32>) -> Result<Vec<pb::Key>, Error> {
        let r = self.request(pb::ListKeysRequest { token_serial });
        Ok(self.inner.list_keys(r).await?.into_inner().keys)
    }

    /// One key.
    pub async fn public_key(&mut self, key: pb::KeyRef) -> Result<pb::Key, Error> {
        let r = self.request(pb::GetPublicKeyRequest { key: Some(key) });
        self.inner
            .get_public_key(r)
            .await?
            .into_inner()
            .key
            .ok_or_else(|| Error::bad("GetPublicKey answered without a key"))
    }

    /// Sign a digest with the `SignWithEvents` stream, DER signature.
    /// `on_event` hears a touch request before the token waits for it.
    /// The answer is checked to be for this digest and hash (else
    /// [`Error::BadAnswer`]); use [`verify`]
    /// to check the signature against the key.
    pub async fn sign(
        &mut self,
        key: pb::KeyRef,
        hash: pb::HashAlgorithm,
        digest: Vec<u8>,
        on_event: impl FnMut(SignEvent),
    ) -> Result<pb::SignResponse, Error> {
        self.sign_as(key, hash, digest, pb::SignatureFormat::Der, on_event)
            .await
    }

    /// [`Client::sign`] with the signature format chosen (`Raw` is r‖s).
    pub async fn sign_as(
        &mut self,
        key: pb::KeyRef,
        hash: pb::HashAlgorithm,
        digest: Vec<u8>,
        format: pb::SignatureFormat,
        on_event: impl FnMut(SignEvent),
    ) -> Result<pb::SignResponse, Error> {
        let signing = Signing::ecdsa(hash, Payload::Digest(digest), format);
        self.sign_with(key, &signing, on_event).await
    }

    /// Sign with the unary `Sign` call (no touch events): for programs that
    /// have nobody to tell. Checked like [`Client::sign`].
    pub async fn sign_unary(
        &mut self,
        key: pb::KeyRef,
        hash: pb::HashAlgorithm,
        digest: Vec<u8>,
        format: pb::SignatureFormat,
    ) -> Result<pb::SignResponse, Error> {
        let request = self.request(pb::SignRequest {
            key: Some(key),
            input: Some(pb::sign_request::Input::Digest(digest.clone())),
            hash: hash as i32,
            format: format as i32,
            padding: pb::RsaPadding::Unspecified as i32,
        });
        let r = self.inner.sign(request).await?.into_inner();
        check_answer(&r, hash, &digest)?;
        Ok(r)
    }

    /// Sign with any scheme ([`Signing`]: ECDSA, RSA PKCS#1 v1.5 / PSS,
    /// Ed25519) through the `SignWithEvents` stream; `on_event` hears a
    /// touch request before the token waits. The answer is checked to be
    /// for this payload, hash and padding (else [`Error::BadAnswer`]); use
    /// [`verify_signature`] to check the signature against the key.
    pub async fn sign_with(
        &mut self,
        key: pb::KeyRef,
        signing: &Signing,
        mut on_event: impl FnMut(SignEvent),
    ) -> Result<pb::SignResponse, Error> {
        let expected = signing
            .expected_digest()
            .ok_or_else(|| Error::bad("no hash algorithm: set Signing::hash"))?;
        let request = self.request(signing.request(key));
        let mut stream = self.inner.sign_with_events(request).await?.into_inner();
        let mut response = None;
        while let Some(event) = stream.message().await? {
            match event.event {
                Some(pb::sign_event::Event::TouchRequired(t)) => {
                    on_event(SignEvent::TouchRequired {
                        token_serial: t.token_serial,
                        slot: t.slot,
                        timeout: Duration::from_millis(u64::from(t.timeout_ms)),
                    })
                }
                Some(pb::sign_event::Event::Signature(r)) => response = Some(r),
                None => {}
            }
        }
        let r = response.ok_or_else(|| Error::bad("the stream ended without a signature"))?;
        check_answer(&r, signing.hash, &expected)?;
        if r.padding != signing.padding as i32 {
            return Err(Error::bad(
                "the daemon returned a signature with another RSA padding",
            ));
        }
        Ok(r)
    }

    /// [`Client::sign_with`] through the unary `Sign` call (no touch
    /// events), checked the same way.
    pub async fn sign_unary_with(
        &mut self,
        key: pb::KeyRef,
        signing: &Signing,
    ) -> Result<pb::SignResponse, Error> {
        let expected = signing
            .expected_digest()
            .ok_or_else(|| Error::bad("no hash algorithm: set Signing::hash"))?;
        let request = self.request(signing.request(key));
        let r = self.inner.sign(request).await?.into_inner();
        check_answer(&r, signing.hash, &expected)?;
        if r.padding != signing.padding as i32 {
            return Err(Error::bad(
                "the daemon returned a signature with another RSA padding",
            ));
        }
        Ok(r)
    }

    /// Attest a key: certificates and the daemon's verdict.
    pub async fn attest(&mut self, key: pb::KeyRef) -> Result<pb::AttestResponse, Error> {
        let r = self.request(pb::AttestRequest { key: Some(key) });
        Ok(self.inner.attest(r).await?.into_inner())
    }

    /// The health service's answer for `service` ("" for the daemon).
    pub async fn health(
        &mut self,
        service: &str,
    ) -> Result<tonic_health::pb::health_check_response::ServingStatus, Error> {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        let mut c = HealthClient::new(self.channel.clone());
        let r = c
            .check(self.request(HealthCheckRequest {
                service: service.to_string(),
            }))
            .await?
            .into_inner();
        Ok(ServingStatus::try_from(r.status).unwrap_or(ServingStatus::Unknown))
    }
}

fn check_answer(r: &pb::SignResponse, hash: pb::HashAlgorithm, digest: &[u8]) -> Result<(), Error> {
    if r.digest != digest || r.hash != hash as i32 {
        return Err(Error::bad(
            "the daemon returned a signature for another digest",
        ));
    }
    if r.signature.is_empty() {
        return Err(Error::bad("the daemon returned an empty signature"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_spec_is_a_key_id_or_a_slot() {
        let id = "AB".repeat(32);
        assert_eq!(
            KeySpec::parse(&id, Some(3)),
            KeySpec::KeyId(id.to_ascii_lowercase())
        );
        assert_eq!(
            KeySpec::parse("9c", Some(7)).key_ref().key,
            Some(pb::key_ref::Key::Slot(pb::SlotRef {
                token_serial: Some(7),
                slot: "9c".into()
            }))
        );
        // 63 hex digits is not a key id: the daemon will reject it as a slot.
        assert!(matches!(
            KeySpec::parse(&"a".repeat(63), None),
            KeySpec::Slot { .. }
        ));
    }

    #[test]
    fn every_code_has_a_kind_and_the_kinds_that_matter_differ() {
        assert_eq!(
            ErrorKind::of_code(Code::InvalidArgument),
            ErrorKind::Invalid
        );
        assert_eq!(ErrorKind::of_code(Code::OutOfRange), ErrorKind::Invalid);
        assert_eq!(
            ErrorKind::of_code(Code::PermissionDenied),
            ErrorKind::Denied
        );
        assert_eq!(ErrorKind::of_code(Code::NotFound), ErrorKind::NotFound);
        assert_eq!(ErrorKind::of_code(Code::FailedPrecondition), ErrorKind::Pin);
        assert_eq!(
            ErrorKind::of_code(Code::DeadlineExceeded),
            ErrorKind::Timeout
        );
        assert_eq!(
            ErrorKind::of_code(Code::Unavailable),
            ErrorKind::Unavailable
        );
        assert_eq!(ErrorKind::of_code(Code::ResourceExhausted), ErrorKind::Busy);
        assert_eq!(ErrorKind::of_code(Code::DataLoss), ErrorKind::Internal);
    }

    fn listed(algorithm: pb::Algorithm, spki: &[u8]) -> pb::Key {
        pb::Key {
            algorithm: algorithm as i32,
            key_id: "k".into(),
            public_key_der: spki.to_vec(),
            ..Default::default()
        }
    }

    fn flipped(p: &Payload) -> Payload {
        let flip = |v: &Vec<u8>| {
            let mut v = v.clone();
            v[0] ^= 1;
            v
        };
        match p {
            Payload::Digest(d) => Payload::Digest(flip(d)),
            Payload::Message(m) => Payload::Message(flip(m)),
        }
    }

    #[test]
    fn ed25519_signatures_verify_over_the_message_and_nothing_else() {
        use ed25519_dalek::Signer as _;
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
        let spki = sk.verifying_key().to_public_key_der().expect("spki");
        let key = listed(pb::Algorithm::Ed25519, spki.as_bytes());
        let signing = Signing::ed25519(b"message".to_vec());
        assert_eq!(signing.format, pb::SignatureFormat::Raw);
        assert_eq!(
            signing.expected_digest(),
            Some(signer_lib::HashAlgorithm::Sha512.digest(b"message"))
        );
        let sig = sk.sign(b"message").to_bytes();
        verify_signature(&key, &signing, &sig).expect("verifies");
        let other = Signing {
            payload: flipped(&signing.payload),
            ..signing.clone()
        };
        assert!(verify_signature(&key, &other, &sig).is_err());
        // Ed25519 signs messages: a digest is refused, not verified as something else.
        let digest = Signing {
            payload: Payload::Digest(vec![0; 64]),
            ..signing.clone()
        };
        assert!(
            verify_signature(&key, &digest, &sig)
                .unwrap_err()
                .to_string()
                .contains("not a digest")
        );
        // A key listed as another algorithm than its SPKI says is refused.
        let wrong = listed(pb::Algorithm::EccP256, spki.as_bytes());
        assert!(
            verify_signature(&wrong, &signing, &sig)
                .unwrap_err()
                .to_string()
                .contains("listed as algorithm")
        );
    }

    #[test]
    fn rsa_signatures_verify_with_their_padding_only() {
        use rsa::pkcs8::EncodePublicKey as _;
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let sk = rsa::RsaPrivateKey::new(&mut rng, 1024).expect("key");
        let spki = sk.to_public_key().to_public_key_der().expect("spki");
        let key = listed(pb::Algorithm::Rsa1024, spki.as_bytes());
        let digest = <sha2::Sha256 as sha2::Digest>::digest(b"message").to_vec();
        let pss = sk
            .sign_with_rng(
                &mut rng,
                rsa::Pss::<sha2::Sha256>::new_with_salt(32),
                &digest,
            )
            .expect("pss");
        let pkcs1 = sk
            .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
            .expect("pkcs1");
        for payload in [
            Payload::Digest(digest.clone()),
            Payload::Message(b"message".to_vec()),
        ] {
            let s_pss = Signing::rsa(
                pb::HashAlgorithm::Sha256,
                payload.clone(),
                pb::RsaPadding::Pss,
            );
            let s_15 = Signing::rsa(
                pb::HashAlgorithm::Sha256,
                payload.clone(),
                pb::RsaPadding::Pkcs1v15,
            );
            verify_signature(&key, &s_pss, &pss).expect("pss");
            verify_signature(&key, &s_15, &pkcs1).expect("pkcs1");
            assert!(verify_signature(&key, &s_pss, &pkcs1).is_err());
            assert!(verify_signature(&key, &s_15, &pss).is_err());
            let other = Signing {
                payload: flipped(&payload),
                ..s_pss.clone()
            };
            assert!(verify_signature(&key, &other, &pss).is_err());
        }
        // No padding for an RSA key: refused.
        let none = Signing::ecdsa(
            pb::HashAlgorithm::Sha256,
            Payload::Digest(digest),
            pb::SignatureFormat::Raw,
        );
        assert!(
            verify_signature(&key, &none, &pss)
                .unwrap_err()
                .to_string()
                .contains("does not fit")
        );
    }

    #[test]
    fn ecdsa_signatures_verify_as_der_and_raw() {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        use p256::pkcs8::EncodePublicKey as _;
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("key");
        let spki = sk.verifying_key().to_public_key_der().expect("spki");
        let key = listed(pb::Algorithm::EccP256, spki.as_bytes());
        let digest = <sha2::Sha256 as sha2::Digest>::digest(b"message").to_vec();
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).expect("sign");
        let der = Signing::ecdsa(
            pb::HashAlgorithm::Sha256,
            Payload::Message(b"message".to_vec()),
            pb::SignatureFormat::Der,
        );
        verify_signature(&key, &der, sig.to_der().as_bytes()).expect("der");
        let raw = Signing {
            format: pb::SignatureFormat::Raw,
            ..der.clone()
        };
        verify_signature(&key, &raw, &sig.to_bytes()).expect("raw");
        assert!(verify_signature(&key, &raw, sig.to_der().as_bytes()).is_err());
        let padded = Signing {
            padding: pb::RsaPadding::Pss,
            ..der
        };
        assert!(verify_signature(&key, &padded, sig.to_der().as_bytes()).is_err());
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable_naming_the_path() {
        let dir = std::env::temp_dir().join(format!("signer-client-test-{}", std::process::id()));
        let path = dir.join("none.sock");
        let e = Client::connect(&path).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        assert!(e.to_string().contains("none.sock"), "{e}");
    }
}
