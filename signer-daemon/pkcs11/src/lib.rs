//! `libsigner_pkcs11.so`: a PKCS#11 module that is a client of
//! `signer-daemon`.
//!
//! Any PKCS#11 consumer (pkcs11-tool, OpenSSL's pkcs11 engine, OpenSSH,
//! securesystemslib's `HSMSigner`, cosign) loads it; every signature is made
//! by the daemon over its Unix socket (`SIGNER_SOCKET`, else the user
//! daemon's, else `/run/signer/signer.sock`), so the daemon's per-key
//! policy, audit log, touch prompt and card serialization apply, and no key
//! material and no card PIN is ever in the caller's process.
//!
//! - One slot per token the daemon serves (`ListTokens`); a token is present
//!   while the daemon reaches it.
//! - Per key: a private key, a public key and the slot's certificate, with
//!   `CKA_ID` numbered as Yubico's ykcs11 numbers PIV slots (1 = 9a, 2 = 9c,
//!   3 = 9d, 4 = 9e, 5..24 = 82..95) and ykcs11's labels, so `hsm:2` and
//!   `pkcs11:id=%02` work as with ykcs11 ([`objects`]).
//! - `CKM_ECDSA`, `CKM_ECDSA_SHA256/384/512`, single- and multi-part, r‖s
//!   signatures; a length query never costs a daemon signature
//!   ([`mechanism`]).
//! - `C_Login` accepts any PIN (or none: the token has a protected
//!   authentication path) and neither forwards nor keeps it
//!   ([`module::Module::login`]).
//! - Touch: "Touch your YubiKey now" on stderr before the token waits
//!   (`SIGNER_PKCS11_TOUCH_PROMPT=0` turns it off).
//! - Errors: documented `CKR_*` codes ([`error`]), the daemon's message on
//!   stderr (`SIGNER_PKCS11_LOG=0` turns that off).
//!
//! The daemon connection is [`signer_client::blocking::BlockingClient`]: a
//! thread of the module's own with its own tokio runtime, so the module works
//! in hosts that run their own runtime, shares one HTTP/2 connection among
//! all sessions and threads, and starts afresh in a forked child that calls
//! `C_Initialize` again.
//!
//! # Binding crate
//!
//! The C types and constants come from `cryptoki-sys` 0.5 (Parsec project,
//! maintained, Apache-2.0): bindings generated from the OASIS PKCS#11 3.2
//! headers (so `CK_FUNCTION_LIST`, `CK_INTERFACE`, EC attributes and
//! `CKM_ECDSA_SHA*` are all there, P-384 needing nothing special), with
//! per-target layout assertions, and the same generation as the `cryptoki`
//! crate the tests drive the module with. It is plain declarations (its
//! dynamic loader is unused here). The alternatives considered: the
//! `pkcs11` crate is a consumer-side wrapper (it loads modules, it does not
//! help write one), and `native-pkcs11` is a whole module framework with its
//! own object model and key backends, where ours is the daemon's.
//!
//! # Unsafe code
//!
//! Only [`ffi`] (the C ABI) contains `unsafe`; every block there has a
//! `SAFETY:` comment. Everything else is safe and tested without FFI.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
#[allow(unsafe_code)]
pub mod ffi;
pub mod mechanism;
pub mod module;
pub mod objects;
