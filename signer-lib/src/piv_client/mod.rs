//! The PIV client: the [`Token`](crate::Token) trait for real YubiKeys over
//! PC/SC ([`HardwareToken`]), speaking PIV APDUs ([`commands`]) built from
//! the shared protocol module [`crate::piv`].
//!
//! # Why our own client, not the `yubikey` crate
//!
//! `yubikey` 0.9.0-rc.0 was read before deciding. On the signing path it
//! breaks rules this product keeps:
//!
//! - `YubiKey` holds a `pcsc::Card` and has no `Drop` of its own, so dropping
//!   it drops the card with `SCARD_RESET_CARD`: every release resets the
//!   device and loses a PIN verification (policy `once`) — ours and other
//!   programs'.
//! - `YubiKey::reconnect` reconnects with `Disposition::ResetCard` and then
//!   re-VERIFYs the PIN it cached in process memory (`self.pin`, set by every
//!   successful `verify_pin`), behind the caller's back and with no way to
//!   stop it: the caller cannot apply "re-verify once with the PIN the card
//!   accepted last, never a rejected one" itself, and the PIN lives in the
//!   crate's memory for the whole session.
//! - `begin_transaction` has no reconnect support ("TODO"), so a
//!   `SCARD_W_RESET_CARD` surfaces as a generic error.
//!
//! The PIV commands themselves are a dozen small APDUs, all defined in
//! [`crate::piv`] and shared with the emulator's front end, so the backend
//! uses **no `yubikey` crate call**; provisioning (GENERATE, IMPORT, PUT
//! DATA, SET MANAGEMENT KEY, management-key mutual authentication with
//! [`crate::piv::mgmt_crypto`]) goes through the same client. The crate
//! stays a dependency because the workspace pins the RustCrypto generation
//! by it.
//!
//! # Rules
//!
//! - **One PC/SC transaction per operation** ([`crate::transport::CardTransport`]).
//!   For PIN policy `always`, SELECT, VERIFY and GENERAL AUTHENTICATE go in
//!   the same transaction, VERIFY immediately before the signature.
//! - **A secret only goes to the PIV applet**: every command carrying a PIN,
//!   PUK or management key is preceded by SELECT PIV in its transaction.
//!   Commands without secrets skip it and re-SELECT only when the card
//!   answers as another applet would (6D00/6E00: another program selected
//!   OpenPGP, FIDO or OTP without resetting the card).
//! - **Never retry a PIN**: VERIFY failures come back as
//!   [`Error::WrongPin`](crate::Error::WrongPin) /
//!   [`Error::PinBlocked`](crate::Error::PinBlocked); re-verification after a
//!   reset is [`crate::session::SigningSession`]'s job (once, with the PIN the
//!   card accepted last).
//! - **Release without reset** ([`crate::transport::pcsc`]), and after
//!   `SCARD_W_RESET_CARD`, a removed card or a restarted pcscd the request in
//!   flight gets [`Error::CardReset`](crate::Error::CardReset),
//!   [`Error::CardRemoved`](crate::Error::CardRemoved) or
//!   [`Error::Unavailable`](crate::Error::Unavailable), and the next request
//!   reconnects (new PC/SC context, SELECT, serial checked: never another
//!   token).
//! - **Touch**: before a GENERAL AUTHENTICATE that may wait for a touch
//!   (policy `always`, or `cached` with no touch certainly still cached) the
//!   caller gets [`TokenEvent::TouchRequired`](crate::TokenEvent). A YubiKey
//!   answers 6982 both for "PIN not verified" and "no touch in time"; the
//!   client tells them apart from what it knows (PIN given in this
//!   transaction, PIN policy `never`) or, for policy `once`, by asking the PIN
//!   state (VERIFY without data, which spends no try).
//!
//! # APDUs per signature (steady state)
//!
//! Measured by `hardware_apdu_count` tests (loopback) and `hardware_faults`
//! (through pcscd):
//!
//! | PIN policy | touch     | APDUs | which                                  |
//! |------------|-----------|-------|----------------------------------------|
//! | `never`    | `never`   | 1     | GENERAL AUTHENTICATE                   |
//! | `once`     | `never`   | 1     | GENERAL AUTHENTICATE                   |
//! | `always`   | `never`   | 3     | SELECT, VERIFY, GENERAL AUTHENTICATE   |
//! | `never`    | `always`  | 1     | GENERAL AUTHENTICATE                   |
//! | `once`     | `always`  | 1     | GENERAL AUTHENTICATE                   |
//! | `always`   | `always`  | 3     | SELECT, VERIFY, GENERAL AUTHENTICATE   |
//!
//! The same for every signature scheme: an RSA block (up to 512 bytes for
//! RSA-4096) or a long Ed25519 message goes in ONE extended-length GENERAL
//! AUTHENTICATE with an extended Le (YubiKey 4 and 5 take command APDUs up
//! to 3062 bytes), so neither command chaining nor GET RESPONSE is needed
//! (`signer-lib/tests/hardware_apdu_schemes.rs`). The host computes what the
//! card signs ([`crate::piv::sign_input`]): RSA padded on the host, Ed25519
//! the message itself.
//!
//! Key metadata (algorithm, policies) is read once per connection (GET
//! METADATA) and cached; the touch event is local. YubiKey 4 and 5 before
//! 5.3 have no GET METADATA: the client ATTESTs the slot instead and reads
//! the certificate's public key and Yubico's policy extension, as
//! yubico-piv-tool and ykman do (imported keys, which cannot be attested,
//! are described by their slot's certificate, or right after the import by
//! the imported material); without GET SERIAL (before 5.0.3) the serial
//! comes from the OTP applet at connect. For `always`, VERIFY is
//! required by the card for every signature, and SELECT makes sure the PIN
//! reaches the PIV applet even if another program selected another applet
//! since our last transaction. Signatures fit one response APDU (no GET
//! RESPONSE; an extended Le for RSA). Outside the steady state: the first signature after a
//! (re)connection adds GET METADATA for the slot; with policy `once` after a
//! reset it costs GENERAL AUTHENTICATE (6982), SELECT + VERIFY (with the PIN
//! the card accepted last), GENERAL AUTHENTICATE. For a touch key with
//! policy `once`, the first signature of a connection asks the PIN state
//! (VERIFY without data) before announcing the touch, so the operator is
//! never asked to touch a card that is about to refuse for the PIN.

pub mod commands;
pub mod discovery;
pub mod token;

pub use discovery::{FoundToken, LoopbackConnector, PcscConnector};
pub use token::{Connection, Connector, HardwareToken, TouchAssumptions, management_key_algorithm};

use crate::error::Result;

/// Open the YubiKey with `serial` (or the only one) through the local pcscd.
pub fn open_yubikey(serial: Option<u32>) -> Result<HardwareToken> {
    HardwareToken::open(Box::new(PcscConnector::default()), serial)
}

/// Every PIV token in the readers of the local pcscd.
pub fn list_yubikeys() -> Result<Vec<FoundToken>> {
    PcscConnector::default().list()
}
