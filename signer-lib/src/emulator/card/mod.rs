//! The emulated YubiKey PIV applet as pure logic: no file I/O, no APDU bytes.
//!
//! [`Card`] holds the persistent [`CardState`] (what a YubiKey keeps in its
//! EEPROM) and the volatile session state (what it forgets on power-off):
//! PIN verified, "the previous command was a successful VERIFY" (for PIN
//! policy `always`), management key authenticated, a pending management-key
//! challenge, and the time of the last touch (for touch policy `cached`).
//!
//! Every public method whose doc says **command** is one command to the card,
//! exactly as one APDU is to a YubiKey: it is counted, and it voids a
//! preceding VERIFY for keys with PIN policy `always` (only a signature that
//! immediately follows the VERIFY may use it). An APDU front end maps each
//! PIV/YubiKey instruction onto one such method and never re-implements a
//! security rule; instructions that have no typed operation here (SELECT of
//! the PIV applet, GET RESPONSE of a long answer is *not* one: it continues
//! the previous command) call [`Card::note_command`].
//!
//! Methods that change [`CardState`] set a dirty flag; whoever owns the
//! storage must persist the state (see [`Card::is_dirty`]) *before* it hands
//! the result to the caller, so that a wrong-PIN decrement survives a crash as
//! it would in a card's EEPROM. [`crate::emulator::EmulatedToken`] does so.

mod attest;
// E2 (firmware generations, MOVE/DELETE KEY): see firmware.rs, move_key.rs.
pub mod firmware;
mod move_key;
pub mod pin_complexity; // E7
pub mod state;

use std::sync::Arc;
use std::time::Instant;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

pub use crate::emulator::soft_key::RsaComponents;
use crate::emulator::soft_key::{SoftKey, random_bytes};
use crate::emulator::touch::{TouchOutcome, TouchSource, TouchTiming};
use crate::error::{Error, Result};
use crate::model::{
    Algorithm, FirmwareVersion, KeyOrigin, PinPolicy, PublicKey, SlotId, TouchPolicy,
};
use crate::piv::mgmt_crypto;
use crate::piv::{MAX_OBJECT_SIZE, object, tag, tlv};
use crate::secret::{ManagementKey, ManagementKeyAlgorithm, Pin, Puk};
use crate::token::TokenEvent;

pub use state::{
    CardState, DEFAULT_FIRMWARE, DEFAULT_RETRIES, FactorySettings, RetryCounter,
    default_management_key_algorithm, is_writable_object,
};

/// The discovery object (7E) a YubiKey returns: the PIV AID and PIN usage
/// policy 4000 (application PIN only).
pub const DISCOVERY_OBJECT: [u8; 20] = [
    0x7e, 0x12, 0x4f, 0x0b, 0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00, 0x5f,
    0x2f, 0x02, 0x40, 0x00,
];

/// The result of a VERIFY without data (the retry query).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinStatus {
    /// The PIN is verified in this session (9000).
    Verified,
    /// Not verified; this many tries left (63Cx).
    NotVerified {
        /// Tries left.
        retries_left: u8,
    },
    /// The PIN is blocked (6983).
    Blocked,
}

/// GET METADATA for the PIN (80) or the PUK (81).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinMetadata {
    /// Still the factory default value.
    pub is_default: bool,
    /// Retries after a successful verification.
    pub total_retries: u8,
    /// Retries left.
    pub remaining_retries: u8,
}

/// GET METADATA for the management key (9B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagementKeyMetadata {
    /// Algorithm.
    pub algorithm: ManagementKeyAlgorithm,
    /// Still the factory default value.
    pub is_default: bool,
    /// Touch policy (`Always` when SET MANAGEMENT KEY asked for touch).
    pub touch_policy: TouchPolicy,
}

/// GET METADATA for a key slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMetadata {
    /// Algorithm.
    pub algorithm: Algorithm,
    /// PIN policy (resolved).
    pub pin_policy: PinPolicy,
    /// Touch policy (resolved).
    pub touch_policy: TouchPolicy,
    /// Generated on the card or imported.
    pub origin: KeyOrigin,
    /// The public key as a SubjectPublicKeyInfo.
    pub public_key: PublicKey,
    /// The value of tag 86 for EC and 25519 keys (the uncompressed SEC1
    /// point for P-256/P-384, the 32 raw bytes for Ed25519/X25519); empty
    /// for RSA.
    pub ec_point: Vec<u8>,
    /// The public key's TLVs as the device encodes them inside the 7F49
    /// template and GET METADATA's tag 04: `81 modulus 82 exponent` for
    /// RSA, `86 point` otherwise.
    pub public_key_tlvs: Vec<u8>,
}

/// A management-key authentication in progress (zeroized).
#[derive(Zeroize)]
enum PendingAuth {
    /// The card sent `encrypted` witness; expects its plaintext back.
    Witness { plaintext: Vec<u8> },
    /// The card sent a plain challenge; expects it encrypted.
    Challenge { plaintext: Vec<u8> },
}

impl Drop for PendingAuth {
    fn drop(&mut self) {
        self.zeroize();
    }
}

/// Volatile state, lost on power-off, reset, or selection of another applet.
#[derive(Default)]
struct Session {
    pin_verified: bool,
    /// The last command was a successful VERIFY (set by VERIFY, cleared by
    /// every other command on entry).
    verify_was_last: bool,
    /// Snapshot taken at the start of the current command: the command
    /// immediately before it was a successful VERIFY.
    verify_immediately_before: bool,
    mgmt_authenticated: bool,
    pending_auth: Option<PendingAuth>,
    /// When the last touch happened (touch policy `cached`).
    last_touch: Option<Instant>,
}

/// What kind of command is entering (only management-key authentication
/// cares: its second step must follow its first).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Other,
    Verify,
    MgmtAuthStep2,
}

/// The emulated PIV applet. See the module documentation.
pub struct Card {
    state: CardState,
    session: Session,
    touch: Arc<dyn TouchSource>,
    timing: TouchTiming,
    dirty: bool,
    commands: u64,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card")
            .field("serial", &self.state.serial)
            .field("firmware", &self.state.firmware)
            .field("commands", &self.commands)
            .finish_non_exhaustive()
    }
}

fn certificate_object_contents(der: &[u8]) -> Result<Vec<u8>> {
    let too_large = || Error::TooLarge {
        what: "certificate",
        size: der.len(),
        limit: MAX_OBJECT_SIZE,
    };
    let mut out = Vec::with_capacity(der.len() + 12);
    tlv::write(&mut out, tag::CERTIFICATE, der).map_err(|_| too_large())?;
    tlv::write(&mut out, tag::CERT_INFO, &[0x00]).map_err(|_| too_large())?;
    tlv::write(&mut out, tag::ERROR_DETECTION, &[]).map_err(|_| too_large())?;
    if out.len() > MAX_OBJECT_SIZE {
        return Err(too_large());
    }
    Ok(out)
}

/// Extract the DER certificate from a certificate object's contents
/// (`70 cert 71 info FE lrc`). Shared with the PIV client side.
pub fn certificate_from_object(contents: &[u8]) -> Result<Vec<u8>> {
    let bad = |reason: &str| Error::Certificate {
        reason: format!("certificate object: {reason}"),
    };
    let items = tlv::parse_all(contents).map_err(|e| bad(&e.to_string()))?;
    let cert = items
        .iter()
        .find(|t| t.tag == tag::CERTIFICATE)
        .ok_or_else(|| bad("no certificate (tag 70)"))?;
    if let Some(info) = items.iter().find(|t| t.tag == tag::CERT_INFO) {
        if info.value.first().is_some_and(|b| b & 0x01 != 0) {
            return Err(bad(
                "the certificate is gzip-compressed, which is not supported",
            ));
        }
    }
    Ok(cert.value.to_vec())
}

impl Card {
    /// A card over `state`, with a touch source and timing.
    pub fn new(state: CardState, touch: Arc<dyn TouchSource>, timing: TouchTiming) -> Card {
        Card {
            state,
            session: Session::default(),
            touch,
            timing,
            dirty: false,
            commands: 0,
        }
    }

    /// Make a factory-fresh card: default PIN, PUK and management key, its
    /// own emulated attestation root, and an f9 attestation key with a device
    /// certificate signed by that root.
    pub fn manufacture(settings: &FactorySettings) -> Result<CardState> {
        firmware::check_factory(settings.firmware, settings.management_key_algorithm)?; // E2
        let mut state = CardState::factory(settings);
        attest::install_attestation(&mut state)?;
        Ok(state)
    }

    // ----- Plumbing (not card commands) -----------------------------------

    /// The persistent state (to save it).
    pub fn state(&self) -> &CardState {
        &self.state
    }

    /// Whether the persistent state changed since [`Card::mark_clean`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The state was persisted.
    pub fn mark_clean(&mut self) {
        self.dirty = false;
    }

    /// Replace the touch source.
    pub fn set_touch_source(&mut self, touch: Arc<dyn TouchSource>) {
        self.touch = touch;
    }

    /// Replace the touch timing.
    pub fn set_touch_timing(&mut self, timing: TouchTiming) {
        self.timing = timing;
    }

    /// The touch timing in force.
    pub fn touch_timing(&self) -> TouchTiming {
        self.timing
    }

    /// How many commands the card has processed since it was created.
    pub fn command_count(&self) -> u64 {
        self.commands
    }

    /// The algorithm of the key in `slot`, if there is one. Not a card
    /// command (it counts nothing and voids no VERIFY): an APDU front end
    /// checks a signature's algorithm byte with it without spending the one
    /// command a PIN-policy-`always` signature may follow a VERIFY with.
    pub fn slot_algorithm(&self, slot: SlotId) -> Option<Algorithm> {
        self.state.keys.get(&slot).map(|k| k.key.algorithm())
    }

    /// Whether the management key is authenticated in this session.
    pub fn is_management_key_authenticated(&self) -> bool {
        self.session.mgmt_authenticated
    }

    /// The emulated attestation root certificate (DER). Not a card command:
    /// a real YubiKey does not hold its root either; this is the emulator's
    /// record of the root it was manufactured under.
    pub fn attestation_root(&self) -> Option<&[u8]> {
        self.state.attestation_root()
    }

    /// Power-off, card reset, or selection of another applet: the session
    /// ends (PIN and management key authentication are lost; a cached touch
    /// survives, as the device keeps it on a timer).
    pub fn reset_session(&mut self) {
        let last_touch = self.session.last_touch;
        self.session = Session {
            last_touch,
            ..Session::default()
        };
    }

    /// A command with no typed operation (e.g. SELECT of the PIV applet,
    /// GET VERSION): counts, and voids a preceding VERIFY.
    pub fn note_command(&mut self) {
        self.enter(Cmd::Other);
    }

    fn enter(&mut self, cmd: Cmd) {
        self.commands = self.commands.saturating_add(1);
        self.session.verify_immediately_before = std::mem::take(&mut self.session.verify_was_last);
        if cmd != Cmd::MgmtAuthStep2 {
            self.session.pending_auth = None;
        }
    }

    fn touched_state(&mut self) {
        self.dirty = true;
    }

    fn require_management_key(&self) -> Result<()> {
        if self.session.mgmt_authenticated {
            Ok(())
        } else {
            Err(Error::ManagementKeyRequired)
        }
    }

    // ----- Identity ------------------------------------------------------------

    /// **Command** GET SERIAL (F8).
    pub fn serial(&mut self) -> u32 {
        self.enter(Cmd::Other);
        self.state.serial
    }

    /// **Command** GET VERSION (FD).
    pub fn firmware(&mut self) -> FirmwareVersion {
        self.enter(Cmd::Other);
        self.state.firmware
    }

    // ----- PIN and PUK -------------------------------------------------------

    /// **Command** VERIFY (20) with the PIN. A wrong PIN decrements the
    /// counter ([`Error::WrongPin`], `retries_left` 0 on the attempt that
    /// blocks it) and clears verification; a blocked PIN is
    /// [`Error::PinBlocked`] without a decrement. Success restores the
    /// counter and lets the *next* command use a key with PIN policy `always`.
    pub fn verify_pin(&mut self, pin: &Pin) -> Result<()> {
        self.verify_pin_block(&pin.padded()[..])
    }

    /// **Command** VERIFY (20) with the reference data exactly as a host
    /// sent it: [`REFERENCE_BLOCK_LEN`] bytes, the PIN padded with 0xFF.
    /// Like the device, the card compares blocks: any 8-byte block that is
    /// not the PIN's padded form is a wrong PIN and costs a try (ykman blocks
    /// the PIN before a reset by verifying an empty PIN, all 0xFF). A block
    /// of another length is [`Error::BadCommandData`] and costs nothing.
    /// Otherwise as [`Card::verify_pin`].
    pub fn verify_pin_block(&mut self, block: &[u8]) -> Result<()> {
        self.enter(Cmd::Verify);
        check_block_len(block, "PIN")?;
        if self.state.pin_retries.is_blocked() {
            self.session.pin_verified = false;
            return Err(Error::PinBlocked);
        }
        if reference_matches(&self.state.pin, block) {
            if self.state.pin_retries.remaining != self.state.pin_retries.max {
                self.state.pin_retries.remaining = self.state.pin_retries.max;
                self.touched_state();
            }
            self.session.pin_verified = true;
            self.session.verify_was_last = true;
            Ok(())
        } else {
            self.state.pin_retries.remaining -= 1;
            self.touched_state();
            self.session.pin_verified = false;
            Err(Error::WrongPin {
                retries_left: self.state.pin_retries.remaining,
            })
        }
    }

    /// **Command** VERIFY (20) without data: the verification status and
    /// retries left. Spends no try.
    pub fn pin_status(&mut self) -> PinStatus {
        self.enter(Cmd::Other);
        if self.state.pin_retries.is_blocked() {
            PinStatus::Blocked
        } else if self.session.pin_verified {
            PinStatus::Verified
        } else {
            PinStatus::NotVerified {
                retries_left: self.state.pin_retries.remaining,
            }
        }
    }

    /// **Command** VERIFY (20) with P1 = FF: forget the PIN verification.
    pub fn unverify_pin(&mut self) {
        self.enter(Cmd::Other);
        self.session.pin_verified = false;
    }

    /// **Command** CHANGE REFERENCE DATA (24) for the PIN. A wrong current
    /// PIN costs a try, as in VERIFY.
    pub fn change_pin(&mut self, current: &Pin, new: &Pin) -> Result<()> {
        self.change_pin_block(&current.padded()[..], &new.padded()[..])
    }

    /// **Command** CHANGE REFERENCE DATA (24) for the PIN with the blocks
    /// as sent (current then new, [`REFERENCE_BLOCK_LEN`] bytes each). The
    /// current PIN is checked first, as on the device (a wrong one costs a
    /// try even when the new one is malformed); then a new PIN that is not 6
    /// to 8 bytes padded with 0xFF is [`Error::InvalidPin`].
    pub fn change_pin_block(&mut self, current: &[u8], new: &[u8]) -> Result<()> {
        self.enter(Cmd::Other);
        self.change_reference(Reference::Pin, current, new)
    }

    /// **Command** CHANGE REFERENCE DATA (24) for the PUK.
    pub fn change_puk(&mut self, current: &Puk, new: &Puk) -> Result<()> {
        self.change_puk_block(&current.padded()[..], &new.padded()[..])
    }

    /// **Command** CHANGE REFERENCE DATA (24) for the PUK with the blocks
    /// as sent; see [`Card::change_pin_block`].
    pub fn change_puk_block(&mut self, current: &[u8], new: &[u8]) -> Result<()> {
        self.enter(Cmd::Other);
        self.change_reference(Reference::Puk, current, new)
    }

    fn change_reference(&mut self, which: Reference, current: &[u8], new: &[u8]) -> Result<()> {
        check_block_len(current, which.name())?;
        check_block_len(new, which.name())?;
        let counter = match which {
            Reference::Pin => self.state.pin_retries,
            Reference::Puk => self.state.puk_retries,
        };
        if counter.is_blocked() {
            return Err(which.blocked());
        }
        let stored = match which {
            Reference::Pin => &self.state.pin,
            Reference::Puk => &self.state.puk,
        };
        if !reference_matches(stored, current) {
            let counter = self.counter_mut(which);
            counter.remaining -= 1;
            let retries_left = counter.remaining;
            if which == Reference::Pin {
                self.session.pin_verified = false;
            }
            self.touched_state();
            return Err(which.wrong(retries_left));
        }
        let counter = self.counter_mut(which);
        let restore = counter.remaining != counter.max;
        counter.remaining = counter.max;
        if restore {
            self.touched_state();
        }
        let new = strict_reference(new, which.name())?;
        self.check_pin_complexity(new.as_bytes(), which.name())?; // E7
        let value = state::SecretBytes::new(new.as_bytes());
        match which {
            Reference::Pin => self.state.pin = value,
            Reference::Puk => self.state.puk = value,
        }
        self.touched_state();
        Ok(())
    }

    /// E7: with PIN complexity on, a new PIN or PUK must satisfy
    /// [`pin_complexity::RULES`] ([`Error::PinComplexity`] otherwise).
    fn check_pin_complexity(&self, new: &[u8], what: &'static str) -> Result<()> {
        if !self.state.pin_complexity {
            return Ok(());
        }
        match pin_complexity::violation(new) {
            Some((_, rule)) => Err(Error::PinComplexity { what, rule }),
            None => Ok(()),
        }
    }

    fn counter_mut(&mut self, which: Reference) -> &mut RetryCounter {
        match which {
            Reference::Pin => &mut self.state.pin_retries,
            Reference::Puk => &mut self.state.puk_retries,
        }
    }

    /// **Command** RESET RETRY COUNTER (2C): set a new PIN with the PUK
    /// (works whether or not the PIN is blocked). A wrong PUK costs a PUK try.
    pub fn unblock_pin(&mut self, puk: &Puk, new_pin: &Pin) -> Result<()> {
        self.unblock_pin_block(&puk.padded()[..], &new_pin.padded()[..])
    }

    /// **Command** RESET RETRY COUNTER (2C) with the blocks as sent (PUK
    /// then new PIN, [`REFERENCE_BLOCK_LEN`] bytes each). The PUK is checked
    /// first: any block that is not the PUK's padded form costs a PUK try
    /// (ykman blocks the PUK before a reset this way); then a malformed new
    /// PIN is [`Error::InvalidPin`].
    pub fn unblock_pin_block(&mut self, puk: &[u8], new_pin: &[u8]) -> Result<()> {
        self.enter(Cmd::Other);
        check_block_len(puk, "PUK")?;
        check_block_len(new_pin, "PIN")?;
        if self.state.puk_retries.is_blocked() {
            return Err(Error::PukBlocked);
        }
        if !reference_matches(&self.state.puk, puk) {
            self.state.puk_retries.remaining -= 1;
            self.touched_state();
            return Err(Error::WrongPuk {
                retries_left: self.state.puk_retries.remaining,
            });
        }
        if self.state.puk_retries.remaining != self.state.puk_retries.max {
            self.state.puk_retries.remaining = self.state.puk_retries.max;
            self.touched_state();
        }
        let new_pin = strict_reference(new_pin, "PIN")?;
        self.check_pin_complexity(new_pin.as_bytes(), "PIN")?; // E7
        self.state.pin = state::SecretBytes::new(new_pin.as_bytes());
        self.state.pin_retries.remaining = self.state.pin_retries.max;
        self.session.pin_verified = false;
        self.touched_state();
        Ok(())
    }

    /// **Command** SET PIN RETRIES (FA). Needs the management key and a
    /// verified PIN; resets PIN and PUK to their factory values, as the
    /// device does. Each count must be 1..=255.
    pub fn set_pin_retries(&mut self, pin_tries: u8, puk_tries: u8) -> Result<()> {
        self.enter(Cmd::Other);
        self.require_management_key()?;
        if !self.session.pin_verified {
            return Err(Error::PinRequired {
                slot: SlotId::Authentication,
            });
        }
        if pin_tries == 0 || puk_tries == 0 {
            return Err(Error::BadCommandData {
                reason: "retry counts must be 1 to 255".into(),
            });
        }
        self.state.pin = state::SecretBytes::new(Pin::DEFAULT_PIN);
        self.state.puk = state::SecretBytes::new(Pin::DEFAULT_PUK);
        self.state.pin_retries = RetryCounter::full(pin_tries);
        self.state.puk_retries = RetryCounter::full(puk_tries);
        self.touched_state();
        Ok(())
    }

    /// **Command** GET METADATA (F7) for the PIN.
    pub fn pin_metadata(&mut self) -> PinMetadata {
        self.enter(Cmd::Other);
        PinMetadata {
            is_default: secret_eq(self.state.pin.as_bytes(), Pin::DEFAULT_PIN),
            total_retries: self.state.pin_retries.max,
            remaining_retries: self.state.pin_retries.remaining,
        }
    }

    /// **Command** GET METADATA (F7) for the PUK.
    pub fn puk_metadata(&mut self) -> PinMetadata {
        self.enter(Cmd::Other);
        PinMetadata {
            is_default: secret_eq(self.state.puk.as_bytes(), Pin::DEFAULT_PUK),
            total_retries: self.state.puk_retries.max,
            remaining_retries: self.state.puk_retries.remaining,
        }
    }

    // ----- Management key ------------------------------------------------------

    /// **Command** GET METADATA (F7) for the management key.
    pub fn management_key_metadata(&mut self) -> ManagementKeyMetadata {
        self.enter(Cmd::Other);
        ManagementKeyMetadata {
            algorithm: self.state.management_key.algorithm,
            is_default: secret_eq(
                self.state.management_key.key.as_bytes(),
                &ManagementKey::DEFAULT_BYTES,
            ),
            touch_policy: if self.state.management_key.touch_required {
                TouchPolicy::Always
            } else {
                TouchPolicy::Never
            },
        }
    }

    fn stored_management_key(&self) -> Result<ManagementKey> {
        self.state.management_key.to_key()
    }

    fn management_touch(&mut self) -> Result<()> {
        if self.state.management_key.touch_required {
            self.wait_for_touch(SlotId::Authentication, &mut |_| {}, false)
                .map_err(|e| match e {
                    Error::TouchDenied { .. } => Error::WrongManagementKey,
                    other => other,
                })?;
        }
        Ok(())
    }

    /// Authenticate with a management key the caller holds (the typed form
    /// of the challenge-response below; one **command**). A key of the wrong
    /// algorithm is [`Error::WrongManagementKey`], like the device.
    pub fn authenticate_management_key(&mut self, key: &ManagementKey) -> Result<()> {
        self.enter(Cmd::Other);
        self.session.mgmt_authenticated = false;
        let stored = self.stored_management_key()?;
        if !stored.ct_eq(key) {
            return Err(Error::WrongManagementKey);
        }
        self.management_touch()?;
        self.session.mgmt_authenticated = true;
        Ok(())
    }

    fn check_management_algorithm(&self, algorithm: ManagementKeyAlgorithm) -> Result<()> {
        if algorithm == self.state.management_key.algorithm {
            Ok(())
        } else {
            Err(Error::WrongManagementKey)
        }
    }

    fn random_block(&self) -> Result<Vec<u8>> {
        let mut block = vec![0u8; self.state.management_key.algorithm.block_len()];
        random_bytes(&mut block)?;
        Ok(block)
    }

    /// **Command** GENERAL AUTHENTICATE (87) with key 9B, step 1 of mutual
    /// authentication (request `7C 02 80 00`): returns the *encrypted*
    /// witness (tag 80 of the answer). An algorithm other than the card's is
    /// [`Error::WrongManagementKey`] (a front end should answer 6A86; check
    /// [`Card::management_key_metadata`] first).
    pub fn management_witness(&mut self, algorithm: ManagementKeyAlgorithm) -> Result<Vec<u8>> {
        self.enter(Cmd::Other);
        self.session.mgmt_authenticated = false;
        self.check_management_algorithm(algorithm)?;
        let plaintext = self.random_block()?;
        let encrypted = mgmt_crypto::encrypt_block(&self.stored_management_key()?, &plaintext)?;
        self.session.pending_auth = Some(PendingAuth::Witness { plaintext });
        Ok(encrypted.to_vec())
    }

    /// **Command** GENERAL AUTHENTICATE (87) with key 9B, step 2 of mutual
    /// authentication (`7C 80 witness 81 challenge`): checks the decrypted
    /// witness and returns the client's challenge encrypted (tag 82). Must
    /// directly follow [`Card::management_witness`].
    pub fn management_mutual_response(
        &mut self,
        algorithm: ManagementKeyAlgorithm,
        decrypted_witness: &[u8],
        challenge: &[u8],
    ) -> Result<Vec<u8>> {
        self.enter(Cmd::MgmtAuthStep2);
        self.check_management_algorithm(algorithm)?;
        let pending = self.session.pending_auth.take();
        let expected = match &pending {
            Some(PendingAuth::Witness { plaintext }) => Zeroizing::new(plaintext.clone()),
            _ => {
                return Err(Error::BadCommandData {
                    reason: "no management key witness outstanding".into(),
                });
            }
        };
        if !secret_eq(decrypted_witness, &expected) {
            return Err(Error::WrongManagementKey);
        }
        let key = self.stored_management_key()?;
        if challenge.len() != key.algorithm().block_len() {
            return Err(Error::BadCommandData {
                reason: format!(
                    "the management key challenge must be one {}-byte block, got {} bytes",
                    key.algorithm().block_len(),
                    challenge.len()
                ),
            });
        }
        let response = mgmt_crypto::encrypt_block(&key, challenge)?;
        self.management_touch()?;
        self.session.mgmt_authenticated = true;
        Ok(response.to_vec())
    }

    /// **Command** GENERAL AUTHENTICATE (87) with key 9B, step 1 of
    /// one-way challenge-response (`7C 02 81 00`): returns a plain challenge
    /// (tag 81).
    pub fn management_challenge(&mut self, algorithm: ManagementKeyAlgorithm) -> Result<Vec<u8>> {
        self.enter(Cmd::Other);
        self.session.mgmt_authenticated = false;
        self.check_management_algorithm(algorithm)?;
        let plaintext = self.random_block()?;
        self.session.pending_auth = Some(PendingAuth::Challenge {
            plaintext: plaintext.clone(),
        });
        Ok(plaintext)
    }

    /// **Command** GENERAL AUTHENTICATE (87) with key 9B, step 2 of one-way
    /// challenge-response (`7C 82 response`): the challenge encrypted with
    /// the management key. Must directly follow [`Card::management_challenge`].
    pub fn management_challenge_response(
        &mut self,
        algorithm: ManagementKeyAlgorithm,
        response: &[u8],
    ) -> Result<()> {
        self.enter(Cmd::MgmtAuthStep2);
        self.check_management_algorithm(algorithm)?;
        let pending = self.session.pending_auth.take();
        let challenge = match &pending {
            Some(PendingAuth::Challenge { plaintext }) => Zeroizing::new(plaintext.clone()),
            _ => {
                return Err(Error::BadCommandData {
                    reason: "no management key challenge outstanding".into(),
                });
            }
        };
        let expected = mgmt_crypto::encrypt_block(&self.stored_management_key()?, &challenge)?;
        if !secret_eq(response, &expected) {
            return Err(Error::WrongManagementKey);
        }
        self.management_touch()?;
        self.session.mgmt_authenticated = true;
        Ok(())
    }

    /// **Command** SET MANAGEMENT KEY (FF). Needs the management key. The
    /// algorithm may change (e.g. 3DES to AES-192), as on firmware 5.4+.
    pub fn set_management_key(&mut self, key: &ManagementKey, require_touch: bool) -> Result<()> {
        self.enter(Cmd::Other);
        self.require_management_key()?;
        firmware::require_management_key_algorithm(self.state.firmware, key.algorithm())?; // E2
        self.state.management_key = state::StoredManagementKey {
            algorithm: key.algorithm(),
            key: state::SecretBytes::new(key.as_bytes()),
            touch_required: require_touch,
        };
        self.touched_state();
        Ok(())
    }

    // ----- Keys ----------------------------------------------------------------

    fn check_key_slot(slot: SlotId, operation: &'static str) -> Result<()> {
        if slot == SlotId::Attestation {
            return Err(Error::SlotNotAllowed { slot, operation });
        }
        Ok(())
    }

    /// **Command** GENERATE ASYMMETRIC KEY PAIR (47) with the YubiKey policy
    /// tags AA and AB. Needs the management key. Not into f9. `Default`
    /// policies are resolved for the slot and stored resolved.
    pub fn generate_key(
        &mut self,
        slot: SlotId,
        algorithm: Algorithm,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<KeyMetadata> {
        self.enter(Cmd::Other);
        self.require_management_key()?;
        Self::check_key_slot(slot, "generate a key")?;
        firmware::require_algorithm(self.state.firmware, algorithm)?; // E2
        let key = SoftKey::generate(algorithm)?;
        self.install_key(slot, key, pin_policy, touch_policy, KeyOrigin::Generated)
    }

    /// **Command** IMPORT ASYMMETRIC KEY (FE). Needs the management key.
    /// Importing into f9 replaces the attestation key, as on the device.
    /// Imported keys cannot be attested.
    pub fn import_key(
        &mut self,
        slot: SlotId,
        algorithm: Algorithm,
        scalar: &[u8],
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<KeyMetadata> {
        self.enter(Cmd::Other);
        self.require_management_key()?;
        firmware::require_algorithm(self.state.firmware, algorithm)?; // E2
        if algorithm.is_rsa() {
            return Err(Error::BadCommandData {
                reason: format!("{algorithm} keys are imported as p, q, dP, dQ, qInv"),
            });
        }
        let key = SoftKey::from_scalar(algorithm, scalar).map_err(|_| Error::BadCommandData {
            reason: format!("not a valid {algorithm} private key"),
        })?;
        self.install_key(slot, key, pin_policy, touch_policy, KeyOrigin::Imported)
    }

    /// **Command** IMPORT ASYMMETRIC KEY (FE) of an RSA key from its CRT
    /// components (p, q, dP, dQ, qInv; e is 65537, as on the device). Needs
    /// the management key. The modulus must have the algorithm's length and
    /// dP, dQ, qInv must belong to p and q ([`Error::BadCommandData`]
    /// otherwise, nothing stored).
    pub fn import_rsa_key(
        &mut self,
        slot: SlotId,
        algorithm: Algorithm,
        parts: &RsaComponents,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<KeyMetadata> {
        self.enter(Cmd::Other);
        self.require_management_key()?;
        firmware::require_algorithm(self.state.firmware, algorithm)?; // E2
        let key =
            SoftKey::from_rsa_components(algorithm, parts).map_err(|e| Error::BadCommandData {
                reason: format!("not a valid {algorithm} private key: {e}"),
            })?;
        self.install_key(slot, key, pin_policy, touch_policy, KeyOrigin::Imported)
    }

    fn install_key(
        &mut self,
        slot: SlotId,
        key: SoftKey,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
        origin: KeyOrigin,
    ) -> Result<KeyMetadata> {
        let slot_key = state::SlotKey::new(
            key,
            pin_policy.resolve(slot),
            touch_policy.resolve(slot),
            origin,
        )?;
        let metadata = key_metadata(&slot_key)?;
        self.state.keys.insert(slot, slot_key);
        self.touched_state();
        Ok(metadata)
    }

    /// **Command** GET METADATA (F7) for a key slot.
    /// [`Error::KeyNotFound`] when the slot is empty.
    pub fn key_metadata(&mut self, slot: SlotId) -> Result<KeyMetadata> {
        self.enter(Cmd::Other);
        self.state
            .keys
            .get(&slot)
            .ok_or(Error::KeyNotFound { slot })
            .and_then(key_metadata)
    }

    /// **Command** GENERAL AUTHENTICATE (87) with tag 81: the private-key
    /// operation of the key in `slot` over `input`, as the device does it:
    /// - P-256/P-384: ECDSA over the field-length integer (see
    ///   [`crate::model::ecdsa_card_input`]); the DER signature;
    /// - RSA 1024..4096: the raw private-key operation over a key-length
    ///   block (signatures and decryption alike: the host pads and unpads);
    ///   a block of another length, or not below the modulus, is refused;
    /// - Ed25519: the signature of the message itself (not a digest);
    /// - X25519: refused ([`Error::UnsupportedAlgorithm`]: it only agrees keys).
    ///
    /// A wrong-length input is [`Error::BadCommandData`]. Checks, in the
    /// device's order: slot, key, input, PIN policy, touch policy. When a
    /// touch is needed and not cached, `events` gets
    /// [`TokenEvent::TouchRequired`] before the card blocks on its touch
    /// source.
    pub fn sign(
        &mut self,
        slot: SlotId,
        input: &[u8],
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<Vec<u8>> {
        self.enter(Cmd::Other);
        Self::check_key_slot(slot, "sign")?;
        let algorithm = self.slot_key(slot)?.key.algorithm();
        match algorithm {
            Algorithm::X25519 => {
                return Err(Error::UnsupportedAlgorithm {
                    algorithm: "X25519 (it agrees keys and cannot sign)".into(),
                });
            }
            Algorithm::Ed25519 => {
                if input.is_empty() {
                    return Err(Error::BadCommandData {
                        reason: "Ed25519 signs a message of at least one byte".into(),
                    });
                }
            }
            _ => {
                let len = algorithm
                    .ecdsa_field_len()
                    .or_else(|| algorithm.rsa_bits().map(|b| b / 8))
                    .ok_or_else(|| Error::UnsupportedAlgorithm {
                        algorithm: algorithm.to_string(),
                    })?;
                if input.len() != len {
                    return Err(Error::BadCommandData {
                        reason: format!(
                            "{algorithm} takes a {len}-byte input, got {} bytes",
                            input.len()
                        ),
                    });
                }
            }
        }
        self.authorize_key_use(slot, events)?;
        let out = self.slot_key(slot)?.key.private_operation(input)?;
        Ok(out.to_vec())
    }

    /// **Command** GENERAL AUTHENTICATE (87) with tag 81 on an RSA key, for
    /// decryption: the raw private-key operation over the key-length
    /// ciphertext; the host removes the padding. Same checks as
    /// [`Card::sign`]; the result is zeroizing (it is plaintext).
    pub fn decrypt(
        &mut self,
        slot: SlotId,
        ciphertext: &[u8],
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.enter(Cmd::Other);
        Self::check_key_slot(slot, "decrypt")?;
        let key = self.slot_key(slot)?;
        let Some(len) = key.key.rsa_len() else {
            return Err(Error::UnsupportedAlgorithm {
                algorithm: format!("{} (only RSA keys decrypt)", key.key.algorithm()),
            });
        };
        if ciphertext.len() != len {
            return Err(Error::BadCommandData {
                reason: format!(
                    "{} decrypts a {len}-byte block, got {} bytes",
                    key.key.algorithm(),
                    ciphertext.len()
                ),
            });
        }
        self.authorize_key_use(slot, events)?;
        self.slot_key(slot)?.key.private_operation(ciphertext)
    }

    /// **Command** GENERAL AUTHENTICATE (87) with tag 85: ECDH with the key
    /// in `slot` (P-256, P-384 or X25519) and the peer's public key (the
    /// uncompressed SEC1 point, or X25519's 32 bytes); returns the shared
    /// secret (the x-coordinate for P-256/P-384). Same PIN and touch checks
    /// as [`Card::sign`]. Keys that cannot agree keys (RSA, Ed25519) are
    /// [`Error::UnsupportedAlgorithm`]; a malformed or off-curve peer key is
    /// [`Error::BadCommandData`].
    pub fn key_agreement(
        &mut self,
        slot: SlotId,
        peer_public: &[u8],
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.enter(Cmd::Other);
        Self::check_key_slot(slot, "agree a key")?;
        let algorithm = self.slot_key(slot)?.key.algorithm();
        let expected = match algorithm {
            Algorithm::EccP256 => 65,
            Algorithm::EccP384 => 97,
            Algorithm::X25519 => 32,
            other => {
                return Err(Error::UnsupportedAlgorithm {
                    algorithm: format!("{other} (it cannot agree keys)"),
                });
            }
        };
        if peer_public.len() != expected {
            return Err(Error::BadCommandData {
                reason: format!(
                    "{algorithm} key agreement takes a {expected}-byte public key, got {} bytes",
                    peer_public.len()
                ),
            });
        }
        self.authorize_key_use(slot, events)?;
        self.slot_key(slot)?.key.key_agreement(peer_public)
    }

    fn slot_key(&self, slot: SlotId) -> Result<&state::SlotKey> {
        self.state
            .keys
            .get(&slot)
            .ok_or(Error::KeyNotFound { slot })
    }

    /// The PIN and touch policies of the key in `slot`, enforced for one
    /// use of the key.
    fn authorize_key_use(
        &mut self,
        slot: SlotId,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<()> {
        let (pin_policy, touch_policy) = {
            let key = self.slot_key(slot)?;
            (key.pin_policy, key.touch_policy)
        };
        let pin_ok = match pin_policy {
            PinPolicy::Never => true,
            PinPolicy::Once | PinPolicy::Default => self.session.pin_verified,
            PinPolicy::Always => {
                self.session.pin_verified && self.session.verify_immediately_before
            }
        };
        if !pin_ok {
            return Err(Error::PinRequired { slot });
        }
        match touch_policy {
            TouchPolicy::Always => self.wait_for_touch(slot, events, true)?,
            TouchPolicy::Cached => {
                let fresh = self
                    .session
                    .last_touch
                    .is_some_and(|t| t.elapsed() < self.timing.cache);
                if !fresh {
                    self.wait_for_touch(slot, events, true)?;
                }
            }
            TouchPolicy::Never | TouchPolicy::Default => {}
        }
        Ok(())
    }

    fn wait_for_touch(
        &mut self,
        slot: SlotId,
        events: &mut dyn FnMut(TokenEvent),
        report: bool,
    ) -> Result<()> {
        let timeout = self.timing.timeout;
        self.touch.arm(slot);
        if report {
            events(TokenEvent::TouchRequired { slot, timeout });
        }
        let started = Instant::now();
        match self.touch.wait(slot, timeout) {
            TouchOutcome::Touched => {
                self.session.last_touch = Some(Instant::now());
                Ok(())
            }
            TouchOutcome::Denied => Err(Error::TouchDenied { slot }),
            TouchOutcome::TimedOut => Err(Error::TouchTimeout {
                waited: started.elapsed(),
            }),
        }
    }

    /// **Command** ATTEST (F9): an X.509 certificate for the key in `slot`,
    /// signed by the f9 attestation key, with Yubico's extensions. Only keys
    /// generated on the card ([`Error::NotAttestable`] otherwise); not f9
    /// itself.
    pub fn attest(&mut self, slot: SlotId) -> Result<Vec<u8>> {
        self.enter(Cmd::Other);
        Self::check_key_slot(slot, "attest")?;
        let key = self
            .state
            .keys
            .get(&slot)
            .ok_or(Error::KeyNotFound { slot })?;
        if key.origin != KeyOrigin::Generated {
            return Err(Error::NotAttestable { slot });
        }
        attest::issue(&self.state, slot)
    }

    // ----- Data objects ------------------------------------------------------

    /// **Command** GET DATA (CB): the contents of tag 53 of `object`. The
    /// discovery object (7E) is built in; PRINTED (5FC109) needs a verified
    /// PIN, as on the device. [`Error::DataObjectNotFound`] when absent.
    pub fn get_object(&mut self, object_id: u32) -> Result<Vec<u8>> {
        self.enter(Cmd::Other);
        if object_id == object::DISCOVERY {
            return Ok(DISCOVERY_OBJECT.to_vec());
        }
        if !is_writable_object(object_id) {
            return Err(Error::InvalidDataObject { object: object_id });
        }
        if object_id == object::PRINTED && !self.session.pin_verified {
            return Err(Error::PinRequired {
                slot: SlotId::Authentication,
            });
        }
        self.state
            .objects
            .0
            .get(&object_id)
            .map(|c| c.as_bytes().to_vec())
            .ok_or(Error::DataObjectNotFound { object: object_id })
    }

    /// **Command** PUT DATA (DB): store `contents` (the value of tag 53) as
    /// `object`; empty contents delete it. Needs the management key.
    pub fn put_object(&mut self, object_id: u32, contents: &[u8]) -> Result<()> {
        self.enter(Cmd::Other);
        self.require_management_key()?;
        self.store_object(object_id, contents)
    }

    fn store_object(&mut self, object_id: u32, contents: &[u8]) -> Result<()> {
        if !is_writable_object(object_id) {
            return Err(Error::InvalidDataObject { object: object_id });
        }
        if contents.len() > MAX_OBJECT_SIZE {
            return Err(Error::TooLarge {
                what: "data object",
                size: contents.len(),
                limit: MAX_OBJECT_SIZE,
            });
        }
        if contents.is_empty() {
            self.state.objects.0.remove(&object_id);
        } else {
            self.state
                .objects
                .0
                .insert(object_id, state::SecretBytes::new(contents));
        }
        self.touched_state();
        Ok(())
    }

    /// **Command** PUT DATA (DB) of `slot`'s certificate object, encoded as
    /// the device stores it (`70 cert 71 00 FE 00`). Needs the management key.
    pub fn put_certificate(&mut self, slot: SlotId, der: &[u8]) -> Result<()> {
        self.enter(Cmd::Other);
        self.require_management_key()?;
        let contents = certificate_object_contents(der)?;
        self.store_object(slot.certificate_object(), &contents)
    }

    /// **Command** GET DATA (CB) of `slot`'s certificate object, decoded.
    /// [`Error::CertificateNotFound`] when there is none.
    pub fn certificate(&mut self, slot: SlotId) -> Result<Vec<u8>> {
        self.enter(Cmd::Other);
        let contents = self
            .state
            .objects
            .0
            .get(&slot.certificate_object())
            .ok_or(Error::CertificateNotFound { slot })?;
        certificate_from_object(contents.as_bytes())
    }

    // ----- Reset ---------------------------------------------------------------

    /// **Command** RESET (FB): factory-reset the PIV applet. Refused
    /// ([`Error::ResetNotAllowed`]) unless both PIN and PUK are blocked.
    /// Keeps the f9 attestation key and certificate, like the device;
    /// restores the factory management key: 3DES before firmware 5.7 (as
    /// the device, whatever the key type was), the algorithm chosen at init
    /// from 5.7 (see [`firmware::factory_management_key_algorithm`]).
    pub fn reset(&mut self) -> Result<()> {
        self.enter(Cmd::Other);
        if !(self.state.pin_retries.is_blocked() && self.state.puk_retries.is_blocked()) {
            return Err(Error::ResetNotAllowed);
        }
        let factory = state::StoredManagementKey::factory(
            firmware::factory_management_key_algorithm(
                self.state.firmware,
                self.state.factory_management_key_algorithm,
            ), // E2
        );
        self.state.management_key = factory;
        self.state.pin = state::SecretBytes::new(Pin::DEFAULT_PIN);
        self.state.puk = state::SecretBytes::new(Pin::DEFAULT_PUK);
        self.state.pin_retries = RetryCounter::full(DEFAULT_RETRIES);
        self.state.puk_retries = RetryCounter::full(DEFAULT_RETRIES);
        self.state
            .keys
            .retain(|slot, _| *slot == SlotId::Attestation);
        self.state
            .objects
            .0
            .retain(|id, _| *id == object::ATTESTATION);
        self.reset_session();
        self.touched_state();
        Ok(())
    }
}

fn key_metadata(key: &state::SlotKey) -> Result<KeyMetadata> {
    let public_key_tlvs = key.key.public_key_tlvs()?;
    let ec_point = match tlv::read(&public_key_tlvs) {
        Ok((t, _)) if t.tag == tag::EC_POINT => t.value.to_vec(),
        _ => Vec::new(),
    };
    Ok(KeyMetadata {
        algorithm: key.key.algorithm(),
        pin_policy: key.pin_policy,
        touch_policy: key.touch_policy,
        origin: key.origin,
        public_key: key.public_key.clone(),
        ec_point,
        public_key_tlvs,
    })
}

/// The length of PIN and PUK reference data in VERIFY, CHANGE REFERENCE
/// DATA and RESET RETRY COUNTER: the value padded with 0xFF to 8 bytes.
pub const REFERENCE_BLOCK_LEN: usize = 8;

/// Which retry-counted secret a command addresses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reference {
    Pin,
    Puk,
}

impl Reference {
    fn name(self) -> &'static str {
        match self {
            Reference::Pin => "PIN",
            Reference::Puk => "PUK",
        }
    }

    fn blocked(self) -> Error {
        match self {
            Reference::Pin => Error::PinBlocked,
            Reference::Puk => Error::PukBlocked,
        }
    }

    fn wrong(self, retries_left: u8) -> Error {
        match self {
            Reference::Pin => Error::WrongPin { retries_left },
            Reference::Puk => Error::WrongPuk { retries_left },
        }
    }
}

fn check_block_len(block: &[u8], what: &str) -> Result<()> {
    if block.len() == REFERENCE_BLOCK_LEN {
        Ok(())
    } else {
        Err(Error::BadCommandData {
            reason: format!(
                "{what} reference data must be {REFERENCE_BLOCK_LEN} bytes (padded with 0xFF), got {}",
                block.len()
            ),
        })
    }
}

/// Whether `block` is the padded form of the stored secret (constant time).
fn reference_matches(stored: &state::SecretBytes, block: &[u8]) -> bool {
    let mut padded = Zeroizing::new([crate::piv::PIN_PAD; REFERENCE_BLOCK_LEN]);
    let raw = stored.as_bytes();
    if raw.len() > REFERENCE_BLOCK_LEN {
        return false;
    }
    padded[..raw.len()].copy_from_slice(raw);
    secret_eq(block, &padded[..])
}

/// A new PIN or PUK from its padded block: 6 to 8 bytes, no 0xFF inside,
/// padded with 0xFF, every byte significant (unlike [`Pin::new`], which
/// trims a trailing newline from files, the card stores exactly what it got).
fn strict_reference(block: &[u8], what: &'static str) -> Result<Pin> {
    let invalid = || Error::InvalidPin {
        what,
        reason: "must be 6 to 8 bytes padded with 0xFF to 8 bytes".into(),
    };
    let pin = Pin::from_padded(block, what).ok_or_else(invalid)?;
    if secret_eq(&pin.padded()[..], block) {
        Ok(pin)
    } else {
        Err(invalid())
    }
}

/// Constant-time comparison of secrets of possibly different lengths.
fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
