//! Verifying YubiKey PIV attestations.
//!
//! A YubiKey proves that a key was generated on the device with two
//! certificates: the *slot attestation certificate* (subject "YubiKey PIV
//! Attestation 9c", holding the attested public key and Yubico's extensions:
//! serial, firmware, PIN/touch policy, form factor), signed by the device's
//! own attestation key whose certificate sits in slot f9 (the *device
//! certificate*), which Yubico's CA issued at manufacture.
//!
//! - [`extensions`]: Yubico's X.509 extensions, decoded into
//!   [`AttestationInfo`] (and encoded, for the emulator).
//! - [`anchors`]: [`TrustAnchors`]: Yubico's roots and 5.7.4+ intermediates
//!   shipped with this crate (`signer-lib/trust/`), plus roots a caller adds
//!   (an emulated token's root, only when the caller opts in).
//! - [`verify`]: [`verify_attestation`] builds and checks the chain and
//!   returns a [`Verdict`]; it never panics on malformed certificates, every
//!   failure becomes a problem in words.
//!
//! The verifier shares no code with the emulator's issuing side beyond the
//! extension encoding; the test suite also checks emulator attestations with
//! `openssl verify`.

pub mod anchors;
pub mod extensions;
pub mod verify;

pub use anchors::TrustAnchors;
pub use extensions::{AttestationInfo, FormFactor};
pub use verify::{Verdict, verify_attestation};
