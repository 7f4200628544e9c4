//! # signer-lib
//!
//! Signing with keys held in a YubiKey's PIV applet, for trust systems (TUF,
//! Notary, container signing) whose root key must never leave hardware.
//!
//! - [`model`]: slots, algorithms, policies, key and token descriptions.
//! - [`Token`]: the one trait every backend implements.
//! - [`piv`]: the PIV card protocol as bytes (APDUs, TLV, constants), shared by
//!   the PIV client and the emulator. No I/O.
//! - [`piv_client`]: the PIV client and [`piv_client::HardwareToken`], real
//!   YubiKeys over PC/SC.
//! - [`session`]: PIN sources and PIN-policy-driven signing that never retries a rejected PIN.
//! - [`secret`]: PIN, PUK and management key types (zeroized, never printed).
//! - [`emulator`]: the software-emulated YubiKey PIV token (tests and CI only).
//! - [`selector`]: `emulated:FILE`, `yubikey`, `yubikey:SERIAL`: which token to open.
//! - `testing` (feature `testing`): the shared Token behaviour suite.
//! - [`transport`]: how APDUs travel; [`transport::vpcd`] serves a software
//!   card to pcscd through vsmartcard's vpcd reader driver.
//!
//! The software-emulated token (module `emulator`) keeps its private keys in
//! a file. It exists for tests and CI and must never hold a production key.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attestation;
mod certificate;
pub mod emulator;
pub mod error;
pub mod model;
pub mod piv;
pub mod piv_client;
pub mod secret;
pub mod selector;
pub mod session;
pub mod signer;
#[cfg(feature = "testing")]
pub mod testing;
pub mod token;
pub mod transport;

pub use error::{Error, Result};
pub use model::{
    Algorithm, FirmwareVersion, HashAlgorithm, KeyInfo, KeyOrigin, PinPolicy, PublicKey, SignInput,
    SignatureScheme, SlotId, TokenInfo, TokenKind, TouchPolicy,
};
pub use secret::{ManagementKey, ManagementKeyAlgorithm, Pin, Puk};
pub use selector::TokenSelector;
pub use token::{
    Attestation, ImportKey, RetryCounters, RsaCrtComponents, SignRequest, Token, TokenEvent,
};
