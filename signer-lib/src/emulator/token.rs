//! [`EmulatedToken`]: the [`Token`] trait over the emulated card, its state
//! file and a touch source.

use std::path::Path;
use std::sync::Arc;

use crate::emulator::card::{
    Card, DEFAULT_FIRMWARE, FactorySettings, KeyMetadata, default_management_key_algorithm,
    pin_complexity,
};
use crate::emulator::soft_key::random_bytes;
use crate::emulator::state_file::StateFile;
use crate::emulator::touch::{ApproveTouch, TouchSource, TouchTiming};
use crate::error::{Error, Result};
use crate::model::{
    Algorithm, FirmwareVersion, KeyInfo, PinPolicy, PublicKey, SlotId, TokenInfo, TokenKind,
    TouchPolicy,
};
use crate::secret::{ManagementKey, ManagementKeyAlgorithm, Pin, Puk};
use crate::token::{Attestation, ImportKey, RetryCounters, SignRequest, Token, TokenEvent};

/// The model name an emulated token reports.
pub const EMULATED_MODEL: &str = "YubiKey 5 (emulated, NOT FOR PRODUCTION KEYS)";

/// How to make a new emulated token.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Serial number; random 8 digits when `None`.
    pub serial: Option<u32>,
    /// Firmware version (default 5.7.4).
    pub firmware: FirmwareVersion,
    /// Management key algorithm; the firmware's default when `None`
    /// (AES-192 from 5.7, 3DES before).
    pub management_key_algorithm: Option<ManagementKeyAlgorithm>,
    /// Enforce PIN complexity (a YubiKey made with it on; firmware 5.7+
    /// only, see [`crate::emulator::card::pin_complexity`]). Default off.
    pub pin_complexity: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            serial: None,
            firmware: DEFAULT_FIRMWARE,
            management_key_algorithm: None,
            pin_complexity: false,
        }
    }
}

/// How to run an emulated token: where touches come from and how long they
/// are waited for and cached.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// The touch source (default: approve every touch).
    pub touch: Arc<dyn TouchSource>,
    /// Touch timeout and cache duration (default 15 s each, like the device).
    pub timing: TouchTiming,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            touch: Arc::new(ApproveTouch),
            timing: TouchTiming::default(),
        }
    }
}

impl OpenOptions {
    /// Default timing with the given touch source.
    pub fn with_touch(touch: Arc<dyn TouchSource>) -> OpenOptions {
        OpenOptions {
            touch,
            timing: TouchTiming::default(),
        }
    }
}

/// A software-emulated YubiKey PIV token whose state lives in a file.
///
/// **For tests and CI only: its private keys are in the state file.**
///
/// The value is one card session: PIN verification (policy `once`) lasts
/// until it is dropped. It holds the state file's lock for its lifetime, and
/// persists every state change before returning the result of the operation
/// (a wrong-PIN decrement is on disk before [`Error::WrongPin`] is returned).
#[derive(Debug)]
pub struct EmulatedToken {
    card: Card,
    file: StateFile,
}

fn random_serial() -> Result<u32> {
    let mut b = [0u8; 4];
    random_bytes(&mut b)?;
    Ok(10_000_000 + u32::from_be_bytes(b) % 90_000_000)
}

impl EmulatedToken {
    /// Create a new token at `path` (refuses to overwrite an existing file)
    /// and open it with default [`OpenOptions`].
    pub fn init(path: impl AsRef<Path>, options: &InitOptions) -> Result<EmulatedToken> {
        Self::init_with(path, options, OpenOptions::default())
    }

    /// Create a new token at `path` and open it with `open`.
    pub fn init_with(
        path: impl AsRef<Path>,
        options: &InitOptions,
        open: OpenOptions,
    ) -> Result<EmulatedToken> {
        let serial = match options.serial {
            Some(s) => s,
            None => random_serial()?,
        };
        let settings = FactorySettings {
            serial,
            firmware: options.firmware,
            management_key_algorithm: options
                .management_key_algorithm
                .unwrap_or_else(|| default_management_key_algorithm(options.firmware)),
        };
        if options.pin_complexity && !pin_complexity::supported(options.firmware) {
            return Err(Error::NotSupported {
                what: format!(
                    "PIN complexity on firmware {} (it arrived with {})",
                    options.firmware,
                    pin_complexity::SINCE
                ),
            });
        }
        let mut state = Card::manufacture(&settings)?;
        state.pin_complexity = options.pin_complexity;
        let file = StateFile::create(path.as_ref(), &state)?;
        Ok(EmulatedToken {
            card: Card::new(state, open.touch, open.timing),
            file,
        })
    }

    /// Open an existing token with the given touch source and the device's
    /// timing (15 s timeout, 15 s cache).
    pub fn open(path: impl AsRef<Path>, touch: Arc<dyn TouchSource>) -> Result<EmulatedToken> {
        Self::open_with(path, OpenOptions::with_touch(touch))
    }

    /// Open an existing token.
    pub fn open_with(path: impl AsRef<Path>, open: OpenOptions) -> Result<EmulatedToken> {
        let (file, state) = StateFile::open(path.as_ref())?;
        Ok(EmulatedToken {
            card: Card::new(state, open.touch, open.timing),
            file,
        })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The emulated attestation root certificate (DER): the trust anchor
    /// for this token's attestations (opt-in; never a production anchor).
    pub fn attestation_root_der(&self) -> Result<Vec<u8>> {
        self.card
            .attestation_root()
            .map(<[u8]>::to_vec)
            .ok_or(Error::CertificateNotFound {
                slot: SlotId::Attestation,
            })
    }

    /// The emulated attestation root as PEM; for firmware 5.7.4+ followed
    /// by the two intermediates it carries (E2: the bundle `openssl verify
    /// -CAfile` needs; [`crate::attestation::TrustAnchors::add_root_pem`]
    /// takes them as intermediates, not roots).
    pub fn attestation_root_pem(&self) -> Result<String> {
        let der = self.attestation_root_der()?;
        let mut certs = vec![der];
        certs.extend(crate::attestation::anchors::embedded_intermediates(
            &certs[0],
        )?);
        let mut out = String::new();
        for der in &certs {
            out.push_str(
                &pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, der)
                    .map_err(|e| Error::Certificate {
                        reason: format!("cannot PEM-encode the root: {e}"),
                    })?,
            );
        }
        Ok(out)
    }

    /// The management key algorithm (no card command).
    pub fn management_key_algorithm(&self) -> ManagementKeyAlgorithm {
        self.card.state().management_key_algorithm()
    }

    /// Replace the touch source (e.g. to press a [`crate::emulator::TouchButton`]).
    pub fn set_touch(&mut self, touch: Arc<dyn TouchSource>, timing: TouchTiming) {
        self.card.set_touch_source(touch);
        self.card.set_touch_timing(timing);
    }

    /// Run `f` on the card (e.g. the APDU front end), then persist any state
    /// change before returning `f`'s result. If persisting fails, that error
    /// is returned instead (the caller must not report the command's outcome).
    pub fn with_card<T>(&mut self, f: impl FnOnce(&mut Card) -> T) -> Result<T> {
        let out = f(&mut self.card);
        self.persist()?;
        Ok(out)
    }

    /// End the session as a card reset would (PIN and management key
    /// authentication lost), without closing the token.
    pub fn reset_session(&mut self) {
        self.card.reset_session();
    }

    /// How many card commands this session has processed.
    pub fn command_count(&self) -> u64 {
        self.card.command_count()
    }

    fn persist(&mut self) -> Result<()> {
        if self.card.is_dirty() {
            self.file.save(self.card.state())?;
            self.card.mark_clean();
        }
        Ok(())
    }

    /// Run one card operation and persist before returning its result.
    fn run<T>(&mut self, f: impl FnOnce(&mut Card) -> Result<T>) -> Result<T> {
        self.with_card(f)?
    }

    fn key_info(&mut self, slot: SlotId, meta: KeyMetadata) -> Result<KeyInfo> {
        let certificate = match self.card.certificate(slot) {
            Ok(der) => Some(der),
            Err(Error::CertificateNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(KeyInfo::new(
            slot,
            meta.public_key,
            certificate,
            meta.pin_policy,
            meta.touch_policy,
            Some(meta.origin),
        ))
    }
}

impl Token for EmulatedToken {
    fn info(&mut self) -> Result<TokenInfo> {
        let serial = self.card.serial();
        let firmware = self.card.firmware();
        Ok(TokenInfo {
            serial,
            firmware,
            model: EMULATED_MODEL.to_string(),
            kind: TokenKind::Emulated,
            reader: None,
        })
    }

    fn list_keys(&mut self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for slot in SlotId::key_slots() {
            match self.card.key_metadata(slot) {
                Ok(meta) => out.push(self.key_info(slot, meta)?),
                Err(Error::KeyNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn key(&mut self, slot: SlotId) -> Result<KeyInfo> {
        let meta = self.card.key_metadata(slot)?;
        self.key_info(slot, meta)
    }

    fn public_key(&mut self, slot: SlotId) -> Result<PublicKey> {
        Ok(self.card.key_metadata(slot)?.public_key)
    }

    fn sign(
        &mut self,
        request: &SignRequest<'_>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<Vec<u8>> {
        if request.slot == SlotId::Attestation {
            return Err(Error::SlotNotAllowed {
                slot: request.slot,
                operation: "sign",
            });
        }
        // Like a PIV client: look the key up (GET METADATA), check the
        // request and compute what the card signs (the same bytes the PIV
        // client sends: RSA padded on the host, Ed25519 the message), then
        // VERIFY (when given a PIN) and sign with nothing in between.
        let algorithm = self.card.key_metadata(request.slot)?.algorithm;
        let input = crate::piv::sign_input::card_input(
            request.slot,
            algorithm,
            request.scheme,
            &request.input,
        )?;
        if let Some(pin) = request.pin {
            self.run(|card| card.verify_pin(pin))?;
        }
        let slot = request.slot;
        self.run(|card| card.sign(slot, &input, events))
    }

    fn decrypt_raw(
        &mut self,
        slot: SlotId,
        ciphertext: &[u8],
        pin: Option<&Pin>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let algorithm = self.card.key_metadata(slot)?.algorithm;
        crate::token::check_decrypt(slot, algorithm, ciphertext)?;
        if let Some(pin) = pin {
            self.run(|card| card.verify_pin(pin))?;
        }
        self.run(|card| card.decrypt(slot, ciphertext, events))
    }

    fn key_agreement(
        &mut self,
        slot: SlotId,
        peer_public: &[u8],
        pin: Option<&Pin>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let algorithm = self.card.key_metadata(slot)?.algorithm;
        crate::token::check_key_agreement(slot, algorithm, peer_public)?;
        if let Some(pin) = pin {
            self.run(|card| card.verify_pin(pin))?;
        }
        self.run(|card| card.key_agreement(slot, peer_public, events))
    }

    fn attest(&mut self, slot: SlotId) -> Result<Attestation> {
        let slot_certificate = self.card.attest(slot)?;
        let device_certificate = self.card.certificate(SlotId::Attestation)?;
        Ok(Attestation {
            slot_certificate,
            device_certificate,
        })
    }

    fn verify_pin(&mut self, pin: &Pin) -> Result<()> {
        self.run(|card| card.verify_pin(pin))
    }

    fn retry_counters(&mut self) -> Result<RetryCounters> {
        let pin = self.card.pin_metadata().remaining_retries;
        let puk = self.card.puk_metadata().remaining_retries;
        Ok(RetryCounters { pin, puk })
    }

    fn change_pin(&mut self, current: &Pin, new: &Pin) -> Result<()> {
        self.run(|card| card.change_pin(current, new))
    }

    fn change_puk(&mut self, current: &Puk, new: &Puk) -> Result<()> {
        self.run(|card| card.change_puk(current, new))
    }

    fn unblock_pin(&mut self, puk: &Puk, new_pin: &Pin) -> Result<()> {
        self.run(|card| card.unblock_pin(puk, new_pin))
    }

    fn authenticate(&mut self, key: &ManagementKey) -> Result<()> {
        self.run(|card| card.authenticate_management_key(key))
    }

    fn generate_key(
        &mut self,
        slot: SlotId,
        algorithm: Algorithm,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<KeyInfo> {
        let meta = self.run(|card| card.generate_key(slot, algorithm, pin_policy, touch_policy))?;
        self.key_info(slot, meta)
    }

    fn import_key(
        &mut self,
        slot: SlotId,
        key: &ImportKey,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<KeyInfo> {
        if slot == SlotId::Attestation {
            // Possible on the device (it replaces the attestation key), but
            // not through the generic Token API: it would break attestation.
            return Err(Error::SlotNotAllowed {
                slot,
                operation: "import a key (use the card API to replace the attestation key)",
            });
        }
        let meta = match &key.rsa {
            Some(parts) if key.algorithm.is_rsa() => {
                let parts = crate::emulator::card::RsaComponents {
                    p: parts.p.clone(),
                    q: parts.q.clone(),
                    dp: parts.dp.clone(),
                    dq: parts.dq.clone(),
                    qinv: parts.qinv.clone(),
                };
                self.run(|card| {
                    card.import_rsa_key(slot, key.algorithm, &parts, pin_policy, touch_policy)
                })?
            }
            _ => self.run(|card| {
                card.import_key(slot, key.algorithm, &key.scalar, pin_policy, touch_policy)
            })?,
        };
        self.key_info(slot, meta)
    }

    fn put_certificate(&mut self, slot: SlotId, certificate_der: &[u8]) -> Result<()> {
        self.run(|card| card.put_certificate(slot, certificate_der))
    }

    fn set_management_key(&mut self, new: &ManagementKey, require_touch: bool) -> Result<()> {
        self.run(|card| card.set_management_key(new, require_touch))
    }

    fn reset(&mut self) -> Result<()> {
        self.run(|card| card.reset())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_can_move_to_a_worker_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<EmulatedToken>();
        assert_send::<Box<dyn Token>>();
    }
}
