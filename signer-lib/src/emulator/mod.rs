//! A software-emulated YubiKey 5 PIV token.
//!
//! > **Warning: for tests and CI only.** An emulated token keeps its private
//! > keys, PIN, PUK and management key in its state file, protected only by
//! > file permissions. Anyone who can read the file can sign with its keys.
//! > Never generate or import a production key (a TUF root key above all)
//! > into an emulated token; use a hardware YubiKey.
//!
//! It behaves like a YubiKey 5 with firmware 5.7 (configurable): default PIN
//! `123456` and PUK `12345678` with three tries each, default management key
//! `010203…08` ×3 as AES-192 (3DES for firmware before 5.7 or on request),
//! PIN policies `never`/`once`/`always` (the VERIFY must immediately precede
//! the signature), touch policies `never`/`always`/`cached` through a
//! pluggable [`TouchSource`], reset only when PIN and PUK are both blocked,
//! and attestation: at init it creates its own attestation root and an f9
//! device certificate, and attests keys generated on it with Yubico's
//! certificate extensions.
//!
//! - [`card`]: the PIV applet as pure logic (no I/O), for the [`Token`]
//!   implementation here and for an APDU front end.
//! - [`touch`]: touch sources (approve, deny, a button pressed from another
//!   thread) and timing.
//! - [`state_file`]: the versioned, checksummed, atomically written and
//!   locked state file.
//! - [`EmulatedToken`]: [`Token`] over the three.
//! - [`apdu`]: the ISO 7816-4 APDU front end (PIV, YubiKey Management and
//!   OTP applets) and [`EmulatedSmartCard`], the token as a smart card for
//!   the vpcd bridge.
//!
//! [`Token`]: crate::Token

pub mod apdu;
pub mod card;
pub(crate) mod p256_key;
pub(crate) mod soft_key;
pub mod state_file;
pub mod token;
pub mod touch;

pub use apdu::{ApduFrontEnd, CardAtr, EmulatedSmartCard};
pub use card::Card;
/// Which library computes the emulator's P-256 ECDSA signatures in this build
/// (RustCrypto by default; OpenSSL with the `emulator-openssl` feature).
pub use p256_key::BACKEND as P256_SIGNING_BACKEND;
pub use token::{EMULATED_MODEL, EmulatedToken, InitOptions, OpenOptions};
pub use touch::{
    ApproveTouch, DelayedTouch, DenyTouch, TouchButton, TouchMode, TouchOutcome, TouchSource,
    TouchTiming,
};
