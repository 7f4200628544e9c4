//! [`HardwareToken`]: the [`Token`] trait for a YubiKey's PIV applet over a
//! [`CardTransport`] (PC/SC for real devices, loopback in tests).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::{
    Algorithm, FirmwareVersion, KeyInfo, PinPolicy, PublicKey, SlotId, TokenInfo, TokenKind,
    TouchPolicy,
};
use crate::piv::apdu::{ResponseApdu, StatusWord};
use crate::piv::{key_ref, tag, tlv};
use crate::piv_client::commands::{
    ManagementKeyMetadata, PinState, PivChannel, SlotMetadata, is_wrong_applet,
};
use crate::secret::{ManagementKey, ManagementKeyAlgorithm, Pin, Puk};
use crate::token::{Attestation, ImportKey, RetryCounters, SignRequest, Token, TokenEvent};
use crate::transport::{CardTransport, is_connection_lost};

/// The first firmware with GET METADATA.
const FIRST_WITH_METADATA: FirmwareVersion = FirmwareVersion::new(5, 3, 0);

/// The model name a hardware token reports.
pub const HARDWARE_MODEL: &str = "YubiKey (PIV over PC/SC)";

/// A connection to a PIV token, with what was learnt while opening it.
pub struct Connection {
    /// The transport, PIV applet selected.
    pub transport: Box<dyn CardTransport>,
    /// The token's serial (GET SERIAL).
    pub serial: u32,
    /// The PIV applet's firmware version (GET VERSION).
    pub firmware: FirmwareVersion,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("reader", &self.transport.reader())
            .field("serial", &self.serial)
            .field("firmware", &self.firmware)
            .finish()
    }
}

/// Opens (and re-opens, after a reset, removal or pcscd restart) the
/// connection to one token.
pub trait Connector: Send {
    /// Connect to the token with `serial`, or the only token when `None`.
    /// The PIV applet is selected and the serial checked.
    fn connect(&mut self, serial: Option<u32>) -> Result<Connection>;
}

/// Timing the host assumes for the device's touch (not configurable on a
/// YubiKey: 15 s to touch, a `cached` touch lasts 15 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TouchAssumptions {
    /// How long the device waits for a touch (reported in the event).
    pub timeout: Duration,
    /// How long a `cached` touch lasts on the device.
    pub cache: Duration,
}

impl Default for TouchAssumptions {
    fn default() -> Self {
        TouchAssumptions {
            timeout: Duration::from_secs(15),
            cache: Duration::from_secs(15),
        }
    }
}

/// A YubiKey's PIV applet, reached through a [`CardTransport`].
///
/// See the module documentation of [`crate::piv_client`] for the rules it
/// keeps (transactions, no reset on release, no PIN ever retried, reconnect
/// after faults) and the APDUs each signature costs.
pub struct HardwareToken {
    connector: Box<dyn Connector>,
    transport: Option<Box<dyn CardTransport>>,
    serial: u32,
    firmware: FirmwareVersion,
    reader: String,
    /// GET METADATA per slot, valid for the current connection.
    keys: HashMap<SlotId, SlotMetadata>,
    /// When we last sent a signature that needed (and got) a touch, per slot.
    touched: HashMap<SlotId, Instant>,
    touch: TouchAssumptions,
    /// The PIN is known to be verified on the card (we verified it, or the
    /// card said so) since this connection was made.
    pin_verified: bool,
}

impl std::fmt::Debug for HardwareToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HardwareToken")
            .field("serial", &self.serial)
            .field("firmware", &self.firmware)
            .field("reader", &self.reader)
            .field("connected", &self.transport.is_some())
            .finish()
    }
}

/// Why a signature's GENERAL AUTHENTICATE failed with 6982.
enum Denied {
    Pin,
    Touch,
}

impl HardwareToken {
    /// Open the token with `serial` (or the only one) through `connector`.
    pub fn open(mut connector: Box<dyn Connector>, serial: Option<u32>) -> Result<HardwareToken> {
        let connection = connector.connect(serial)?;
        Ok(HardwareToken {
            reader: connection.transport.reader().to_string(),
            serial: connection.serial,
            firmware: connection.firmware,
            transport: Some(connection.transport),
            connector,
            keys: HashMap::new(),
            touched: HashMap::new(),
            pin_verified: false,
            touch: TouchAssumptions::default(),
        })
    }

    /// Change the touch timing the host assumes (tests against an emulated
    /// card with short timings; a YubiKey's is fixed at 15 s).
    pub fn set_touch_assumptions(&mut self, touch: TouchAssumptions) {
        self.touch = touch;
    }

    /// The serial number.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The reader the token was last reached through.
    pub fn reader(&self) -> &str {
        &self.reader
    }

    /// Whether a connection is open (false after a fault until the next
    /// request reconnects).
    pub fn is_connected(&self) -> bool {
        self.transport.is_some()
    }

    /// Release the card now, leaving it as it is (no reset).
    pub fn disconnect(&mut self) {
        self.transport = None;
        self.keys.clear();
        self.pin_verified = false;
    }

    fn reconnect(&mut self) -> Result<()> {
        self.transport = None;
        self.keys.clear();
        self.touched.clear();
        self.pin_verified = false;
        let connection = self.connector.connect(Some(self.serial))?;
        if connection.serial != self.serial {
            return Err(Error::TokenNotFound {
                reason: format!(
                    "expected the token with serial {}, found {}",
                    self.serial, connection.serial
                ),
            });
        }
        tracing::info!(
            serial = self.serial,
            reader = connection.transport.reader(),
            "reconnected to the token"
        );
        self.reader = connection.transport.reader().to_string();
        self.firmware = connection.firmware;
        self.transport = Some(connection.transport);
        Ok(())
    }

    /// Run `f` in one transaction, reconnecting first if the last request
    /// lost the connection. A lost connection is dropped (without reset) and
    /// its typed error returned; the next request reconnects.
    fn run<T>(&mut self, mut f: impl FnMut(&mut PivChannel<'_>) -> Result<T>) -> Result<T> {
        if self.transport.is_none() {
            self.reconnect()?;
        }
        let Some(transport) = self.transport.as_mut() else {
            return Err(Error::Unavailable {
                reason: "not connected".into(),
            });
        };
        let mut out = None;
        let result = transport.transaction(&mut |link| {
            let mut channel = PivChannel::new(link);
            out = Some(f(&mut channel)?);
            Ok(())
        });
        match result {
            Ok(()) => out.ok_or_else(|| Error::Protocol {
                reason: "transaction produced no result".into(),
            }),
            Err(e) => {
                if is_connection_lost(&e) {
                    tracing::warn!(serial = self.serial, error = %e, "connection to the token lost; the next request reconnects");
                    self.transport = None;
                    self.keys.clear();
                    self.touched.clear();
                    self.pin_verified = false;
                }
                Err(e)
            }
        }
    }

    /// What the token says about the key in `slot`, cached for the
    /// connection: GET METADATA (firmware 5.3+), else (YubiKey 4, 5.0–5.2)
    /// what its attestation certificate says ([`Self::metadata_from_attestation`]).
    fn metadata(&mut self, slot: SlotId) -> Result<SlotMetadata> {
        if let Some(m) = self.keys.get(&slot) {
            return Ok(m.clone());
        }
        let meta = if self.firmware < FIRST_WITH_METADATA {
            self.metadata_from_attestation(slot)?
        } else {
            match self.run(|ch| reselecting(ch, |ch| ch.slot_metadata(slot))) {
                Err(Error::NotSupported { .. }) => self.metadata_from_attestation(slot)?,
                other => other?,
            }
        };
        self.keys.insert(slot, meta.clone());
        Ok(meta)
    }

    /// A key's algorithm, policies and public key without GET METADATA, as
    /// yubico-piv-tool and ykman learn them on YubiKey 4 and 5 before 5.3:
    /// ATTEST the slot and read the certificate's public key and Yubico's
    /// policy extension (1.3.6.1.4.1.41482.3.8: PIN policy, touch policy);
    /// the key was generated on the device (only those can be attested).
    /// A key that cannot be attested (imported) is described by the slot's
    /// certificate instead: its public key, the slot's default PIN policy,
    /// touch policy `never`, origin unknown (the device cannot tell more).
    /// An empty slot, or an imported key without a certificate, is
    /// [`Error::KeyNotFound`].
    fn metadata_from_attestation(&mut self, slot: SlotId) -> Result<SlotMetadata> {
        let attested = self.run(|ch| reselecting(ch, |ch| ch.attest(slot)));
        let (certificate, attested) = match attested {
            Ok(der) => (der, true),
            Err(Error::NotAttestable { .. }) => {
                match self.run(|ch| reselecting(ch, |ch| ch.certificate(slot))) {
                    Ok(der) => (der, false),
                    Err(Error::CertificateNotFound { .. }) => {
                        tracing::info!(
                            %slot,
                            "a key that cannot be attested and no certificate: without GET                              METADATA (firmware before 5.3) its algorithm cannot be learnt"
                        );
                        return Err(Error::KeyNotFound { slot });
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let cert =
            <x509_cert::Certificate as der::Decode>::from_der(&certificate).map_err(|e| {
                Error::Protocol {
                    reason: format!("slot {slot}: unreadable attestation/slot certificate: {e}"),
                }
            })?;
        let spki =
            der::Encode::to_der(cert.tbs_certificate().subject_public_key_info()).map_err(|e| {
                Error::Protocol {
                    reason: format!("slot {slot}: certificate public key: {e}"),
                }
            })?;
        let public_key = PublicKey::from_spki_der(&spki)?;
        if !attested {
            return Ok(SlotMetadata {
                algorithm: public_key.algorithm,
                pin_policy: PinPolicy::Default,
                touch_policy: TouchPolicy::Default,
                origin: None,
                public_key,
            });
        }
        let (info, problems) = crate::attestation::extensions::decode(&cert);
        let (Some(pin_policy), Some(touch_policy)) = (info.pin_policy, info.touch_policy) else {
            return Err(Error::Protocol {
                reason: format!(
                    "slot {slot}: the attestation certificate has no usable policy extension ({})",
                    problems.join("; ")
                ),
            });
        };
        Ok(SlotMetadata {
            algorithm: public_key.algorithm,
            pin_policy,
            touch_policy,
            origin: Some(crate::model::KeyOrigin::Generated),
            public_key,
        })
    }

    /// The management key's algorithm and whether it is the factory default
    /// (GET METADATA on 9B).
    pub fn management_key_metadata(&mut self) -> Result<ManagementKeyMetadata> {
        self.run(|ch| reselecting(ch, |ch| ch.management_key_metadata()))
    }

    /// Whether the management key is stored PIN-protected the way ykman
    /// stores it (ADMIN DATA flag; readable without the PIN).
    pub fn management_key_is_pin_protected(&mut self) -> Result<bool> {
        self.run(|ch| reselecting(ch, |ch| ch.management_key_is_pin_protected()))
    }

    /// The management key stored PIN-protected the way ykman stores it
    /// (PRINTED object): SELECT, VERIFY `pin`, GET DATA in one transaction.
    /// The algorithm comes from GET METADATA. `Ok(None)` when the card has
    /// no PIN-protected key. A wrong PIN is [`Error::WrongPin`], not retried.
    pub fn pin_protected_management_key(&mut self, pin: &Pin) -> Result<Option<ManagementKey>> {
        if !self.management_key_is_pin_protected()? {
            return Ok(None);
        }
        let algorithm = management_key_algorithm(self)?;
        let bytes = self.run(|ch| {
            ch.select_piv()?;
            ch.verify_pin(pin)?;
            ch.pin_protected_management_key()
        })?;
        ManagementKey::new(algorithm, &bytes).map(Some)
    }

    fn key_info(&mut self, slot: SlotId, meta: SlotMetadata) -> Result<KeyInfo> {
        let certificate = match self.run(|ch| reselecting(ch, |ch| ch.certificate(slot))) {
            Ok(der) => Some(der),
            Err(Error::CertificateNotFound { .. }) => None,
            Err(Error::Certificate { reason }) => {
                tracing::warn!(%slot, %reason, "unreadable certificate object; reported as none");
                None
            }
            Err(e) => return Err(e),
        };
        Ok(KeyInfo::new(
            slot,
            meta.public_key,
            certificate,
            meta.pin_policy.resolve(slot),
            meta.touch_policy.resolve(slot),
            meta.origin,
        ))
    }

    fn fresh_metadata(&mut self, slot: SlotId) -> Result<SlotMetadata> {
        if self.firmware < FIRST_WITH_METADATA {
            // An imported key is known on such firmware only from what was
            // imported on this connection (see `import_key`).
            if let Some(m) = self.keys.get(&slot) {
                if m.origin == Some(crate::model::KeyOrigin::Imported) {
                    return Ok(m.clone());
                }
            }
        }
        self.keys.remove(&slot);
        self.metadata(slot)
    }

    /// One private-key operation with the key in `slot`: GENERAL
    /// AUTHENTICATE with `input` under `data_tag` (81: sign, RSA decrypt;
    /// 85: ECDH), applying the key's PIN and touch policies (VERIFY right
    /// before it when `pin` is given, the touch event before the card
    /// waits, 6982 told apart as PIN or touch). Returns the response's 82.
    #[allow(clippy::too_many_arguments)]
    fn use_key(
        &mut self,
        slot: SlotId,
        meta: SlotMetadata,
        pin: Option<&Pin>,
        events: &mut dyn FnMut(TokenEvent),
        data_tag: u32,
        input: &[u8],
        what: &'static str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let pin_policy = meta.pin_policy.resolve(slot);
        if pin_policy == PinPolicy::Always && pin.is_none() {
            // The card needs VERIFY immediately before each signature; a
            // verification from an earlier request must not be relied on
            // (whether it still holds depends on what other programs sent).
            return Err(Error::PinRequired { slot });
        }
        let touch_policy = meta.touch_policy.resolve(slot);
        let needs_touch = match touch_policy {
            TouchPolicy::Always => true,
            TouchPolicy::Cached => !self.touch_cached(slot),
            _ => false,
        };
        let touch_timeout = self.touch.timeout;
        let algorithm = meta.algorithm;
        let mut sent_at = None;
        // Before asking for a touch the card will not wait for (it checks
        // the PIN first), make sure the PIN is verified: one VERIFY-status
        // APDU, only while that is unknown on this connection.
        let check_pin_first =
            needs_touch && pin.is_none() && pin_policy != PinPolicy::Never && !self.pin_verified;
        let mut pin_seen_verified = false;
        let outcome = self.run(|ch| {
            if check_pin_first {
                match ch.pin_state() {
                    Ok(PinState::Verified) => pin_seen_verified = true,
                    Ok(_) => return Ok(Err(Error::PinRequired { slot })),
                    Err(Error::UnexpectedStatus { sw, .. }) if is_wrong_applet(sw) => {
                        ch.select_piv()?;
                        match ch.pin_state()? {
                            PinState::Verified => pin_seen_verified = true,
                            _ => return Ok(Err(Error::PinRequired { slot })),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(pin) = pin {
                // The PIN goes only to the PIV applet: SELECT first, then
                // VERIFY and GENERAL AUTHENTICATE with nothing in between.
                ch.select_piv()?;
                ch.verify_pin(pin)?;
            }
            if needs_touch {
                events(TokenEvent::TouchRequired {
                    slot,
                    timeout: touch_timeout,
                });
            }
            let started = Instant::now();
            sent_at = Some(started);
            let mut response = ch.key_operation(slot, algorithm, data_tag, input)?;
            if pin.is_none() && is_wrong_applet(response.sw) {
                // Another program selected another applet (no reset):
                // select PIV again; the input is no secret.
                tracing::info!("another applet was selected; selecting PIV again");
                ch.select_piv()?;
                response = ch.key_operation(slot, algorithm, data_tag, input)?;
            }
            match response.sw {
                StatusWord::Success => Ok(Ok(zeroize::Zeroizing::new(signature_from(&response)?))),
                StatusWord::SecurityStatusNotSatisfied => {
                    // PIN not verified, or no touch in time: tell them apart.
                    let denied = if !needs_touch && touch_policy != TouchPolicy::Cached {
                        Denied::Pin
                    } else if pin.is_some() || pin_policy == PinPolicy::Never {
                        Denied::Touch
                    } else {
                        match ch.pin_state()? {
                            PinState::Verified => Denied::Touch,
                            _ => Denied::Pin,
                        }
                    };
                    Ok(Err(match denied {
                        Denied::Pin => Error::PinRequired { slot },
                        Denied::Touch => Error::TouchTimeout {
                            waited: started.elapsed(),
                        },
                    }))
                }
                StatusWord::ReferenceNotFound => Ok(Err(Error::KeyNotFound { slot })),
                StatusWord::IncorrectData => Ok(Err(Error::Protocol {
                    reason: format!(
                        "the card refused the {what} input for slot {slot} (6A80): the key \
                         may have been replaced by another program; retry"
                    ),
                })),
                sw => Ok(Err(Error::UnexpectedStatus {
                    command: "GENERAL AUTHENTICATE (key operation)",
                    sw,
                })),
            }
        });
        if pin_seen_verified {
            self.pin_verified = true;
        }
        if matches!(outcome, Ok(Err(Error::PinRequired { .. }))) {
            self.pin_verified = false;
        }
        match outcome {
            Ok(Ok(signature)) => {
                if touch_policy == TouchPolicy::Cached && needs_touch {
                    if let Some(t) = sent_at {
                        self.touched.insert(slot, t);
                    }
                }
                Ok(signature)
            }
            Ok(Err(e)) => {
                if matches!(e, Error::Protocol { .. } | Error::KeyNotFound { .. }) {
                    self.keys.remove(&slot);
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether a `cached` touch made from this connection certainly still
    /// holds (measured from when the signature that got it was sent, which
    /// is before the touch).
    fn touch_cached(&self, slot: SlotId) -> bool {
        self.touched
            .get(&slot)
            .is_some_and(|sent| sent.elapsed() + Duration::from_millis(100) < self.touch.cache)
    }
}

/// Run `f`; if the answer says another applet is selected (another program
/// selected OpenPGP, FIDO... without resetting the card), SELECT PIV and run
/// it once more. Only for commands that carry no secret.
fn reselecting<T>(
    ch: &mut PivChannel<'_>,
    mut f: impl FnMut(&mut PivChannel<'_>) -> Result<T>,
) -> Result<T> {
    match f(ch) {
        Err(Error::UnexpectedStatus { sw, .. }) if is_wrong_applet(sw) => {
            tracing::info!("another applet was selected; selecting PIV again");
            ch.select_piv()?;
            f(ch)
        }
        Err(Error::NotSupported { what }) if what.starts_with("GET METADATA") => {
            // 6D00 to GET METADATA: another applet, or a firmware without it.
            ch.select_piv()?;
            f(ch)
        }
        other => other,
    }
}

fn signature_from(response: &ResponseApdu) -> Result<Vec<u8>> {
    let inner = tlv::find(&response.data, tag::DYN_AUTH)
        .map_err(|e| Error::Protocol {
            reason: format!("GENERAL AUTHENTICATE response: {e}"),
        })?
        .ok_or_else(|| Error::Protocol {
            reason: "GENERAL AUTHENTICATE response without its 7C template".into(),
        })?;
    let sig = tlv::find(inner, tag::RESPONSE)
        .map_err(|e| Error::Protocol {
            reason: format!("GENERAL AUTHENTICATE response: {e}"),
        })?
        .ok_or_else(|| Error::Protocol {
            reason: "GENERAL AUTHENTICATE response without a signature (82)".into(),
        })?;
    Ok(sig.to_vec())
}

/// The signature in a GENERAL AUTHENTICATE response; an RSA signature is
/// returned modulus-length (left-padded if the card dropped leading zeros).
fn signature_of(algorithm: Algorithm, sig: &[u8]) -> Result<Vec<u8>> {
    match algorithm.rsa_bits().map(|b| b / 8) {
        Some(k) if sig.len() < k => {
            let mut out = vec![0u8; k - sig.len()];
            out.extend_from_slice(sig);
            Ok(out)
        }
        Some(k) if sig.len() > k => Err(Error::Protocol {
            reason: format!(
                "the card returned a {}-byte {algorithm} signature (at most {k})",
                sig.len()
            ),
        }),
        _ => Ok(sig.to_vec()),
    }
}

fn check_admin_slot(slot: SlotId, operation: &'static str) -> Result<()> {
    if slot == SlotId::Attestation {
        return Err(Error::SlotNotAllowed { slot, operation });
    }
    Ok(())
}

fn check_algorithm(algorithm: Algorithm) -> Result<()> {
    if algorithm.is_implemented() {
        Ok(())
    } else {
        Err(Error::UnsupportedAlgorithm {
            algorithm: algorithm.to_string(),
        })
    }
}

impl Token for HardwareToken {
    fn info(&mut self) -> Result<TokenInfo> {
        if self.transport.is_none() {
            self.reconnect()?;
        }
        Ok(TokenInfo {
            serial: self.serial,
            firmware: self.firmware,
            model: HARDWARE_MODEL.to_string(),
            kind: TokenKind::Hardware,
            reader: Some(self.reader.clone()),
        })
    }

    fn list_keys(&mut self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for slot in SlotId::key_slots() {
            match self.fresh_metadata(slot) {
                Ok(meta) => out.push(self.key_info(slot, meta)?),
                Err(Error::KeyNotFound { .. }) => {}
                Err(Error::UnsupportedAlgorithm { algorithm }) => {
                    tracing::info!(%slot, %algorithm, "skipping a key of an algorithm this signer does not use");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn key(&mut self, slot: SlotId) -> Result<KeyInfo> {
        check_admin_slot(slot, "hold a signing key")?;
        let meta = self.fresh_metadata(slot)?;
        self.key_info(slot, meta)
    }

    fn public_key(&mut self, slot: SlotId) -> Result<PublicKey> {
        check_admin_slot(slot, "hold a signing key")?;
        Ok(self.fresh_metadata(slot)?.public_key)
    }

    fn sign(
        &mut self,
        request: &SignRequest<'_>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<Vec<u8>> {
        let slot = request.slot;
        check_admin_slot(slot, "sign")?;
        let meta = self.metadata(slot)?;
        // A malformed request never costs an APDU.
        let input = crate::piv::sign_input::card_input(
            slot,
            meta.algorithm,
            request.scheme,
            &request.input,
        )?;
        let algorithm = meta.algorithm;
        let signature = self.use_key(
            slot,
            meta,
            request.pin,
            events,
            tag::CHALLENGE,
            &input,
            "signature",
        )?;
        signature_of(algorithm, &signature)
    }

    fn decrypt_raw(
        &mut self,
        slot: SlotId,
        ciphertext: &[u8],
        pin: Option<&Pin>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        check_admin_slot(slot, "decrypt")?;
        let meta = self.metadata(slot)?;
        crate::token::check_decrypt(slot, meta.algorithm, ciphertext)?;
        let k = ciphertext.len();
        let out = self.use_key(
            slot,
            meta,
            pin,
            events,
            tag::CHALLENGE,
            ciphertext,
            "decryption",
        )?;
        if out.len() > k {
            return Err(Error::Protocol {
                reason: format!(
                    "the card returned a {}-byte RSA block (at most {k})",
                    out.len()
                ),
            });
        }
        let mut block = zeroize::Zeroizing::new(vec![0u8; k - out.len()]);
        block.extend_from_slice(&out);
        Ok(block)
    }

    fn key_agreement(
        &mut self,
        slot: SlotId,
        peer_public: &[u8],
        pin: Option<&Pin>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        check_admin_slot(slot, "agree a key")?;
        let meta = self.metadata(slot)?;
        crate::token::check_key_agreement(slot, meta.algorithm, peer_public)?;
        self.use_key(
            slot,
            meta,
            pin,
            events,
            tag::EXPONENTIATION,
            peer_public,
            "key agreement",
        )
    }

    fn attest(&mut self, slot: SlotId) -> Result<Attestation> {
        check_admin_slot(slot, "be attested")?;
        let meta = self.fresh_metadata(slot)?;
        if meta.origin == Some(crate::model::KeyOrigin::Imported) {
            return Err(Error::NotAttestable { slot });
        }
        self.run(|ch| {
            reselecting(ch, |ch| {
                let slot_certificate = ch.attest(slot)?;
                let device_certificate = ch.certificate(SlotId::Attestation)?;
                Ok(Attestation {
                    slot_certificate,
                    device_certificate,
                })
            })
        })
    }

    fn verify_pin(&mut self, pin: &Pin) -> Result<()> {
        let result = self.run(|ch| {
            ch.select_piv()?;
            ch.verify_pin(pin)
        });
        self.pin_verified = result.is_ok();
        result
    }

    fn retry_counters(&mut self) -> Result<RetryCounters> {
        if self.firmware < FIRST_WITH_METADATA {
            // VERIFY without data gives the PIN's (only while unverified);
            // the PUK's cannot be read without spending a try.
            return Err(Error::NotSupported {
                what: format!(
                    "reading the PIN and PUK retry counters needs GET METADATA (YubiKey \
                     firmware 5.3 or later; this token has {})",
                    self.firmware
                ),
            });
        }
        self.run(|ch| {
            reselecting(ch, |ch| {
                Ok(RetryCounters {
                    pin: ch.retries(key_ref::PIN)?,
                    puk: ch.retries(key_ref::PUK)?,
                })
            })
        })
    }

    fn change_pin(&mut self, current: &Pin, new: &Pin) -> Result<()> {
        self.run(|ch| {
            ch.select_piv()?;
            ch.change_reference(key_ref::PIN, current, new)
        })
    }

    fn change_puk(&mut self, current: &Puk, new: &Puk) -> Result<()> {
        self.run(|ch| {
            ch.select_piv()?;
            ch.change_reference(key_ref::PUK, current, new)
        })
    }

    fn unblock_pin(&mut self, puk: &Puk, new_pin: &Pin) -> Result<()> {
        self.run(|ch| {
            ch.select_piv()?;
            ch.unblock_pin(puk, new_pin)
        })
    }

    fn authenticate(&mut self, key: &ManagementKey) -> Result<()> {
        // SELECT first: re-selecting PIV keeps the session, and a secret is
        // never exchanged with another applet.
        self.run(|ch| {
            ch.select_piv()?;
            ch.authenticate(key)
        })
    }

    fn generate_key(
        &mut self,
        slot: SlotId,
        algorithm: Algorithm,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<KeyInfo> {
        check_admin_slot(slot, "hold a generated key")?;
        check_algorithm(algorithm)?;
        self.keys.remove(&slot);
        self.touched.remove(&slot);
        self.run(|ch| {
            reselecting(ch, |ch| {
                ch.generate(slot, algorithm, pin_policy, touch_policy)
            })
        })?;
        self.key(slot)
    }

    fn import_key(
        &mut self,
        slot: SlotId,
        key: &ImportKey,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<KeyInfo> {
        check_admin_slot(slot, "hold an imported key")?;
        check_algorithm(key.algorithm)?;
        self.keys.remove(&slot);
        self.touched.remove(&slot);
        self.run(|ch| {
            ch.select_piv()?;
            ch.import(slot, key, pin_policy, touch_policy)
        })?;
        if self.firmware < FIRST_WITH_METADATA {
            // Without GET METADATA an imported key cannot be described by
            // the card (it cannot be attested); describe it from what was
            // imported, for this connection. After a reconnect it is known
            // only through a certificate stored in its slot.
            let public_key = key.public_key()?;
            self.keys.insert(
                slot,
                SlotMetadata {
                    algorithm: key.algorithm,
                    pin_policy: pin_policy.resolve(slot),
                    touch_policy: touch_policy.resolve(slot),
                    origin: Some(crate::model::KeyOrigin::Imported),
                    public_key,
                },
            );
            let meta = self.metadata(slot)?;
            return self.key_info(slot, meta);
        }
        self.key(slot)
    }

    fn put_certificate(&mut self, slot: SlotId, certificate_der: &[u8]) -> Result<()> {
        self.run(|ch| reselecting(ch, |ch| ch.put_certificate(slot, certificate_der)))
    }

    fn set_management_key(&mut self, new: &ManagementKey, require_touch: bool) -> Result<()> {
        self.run(|ch| {
            ch.select_piv()?;
            ch.set_management_key(new, require_touch)
        })
    }

    fn reset(&mut self) -> Result<()> {
        self.keys.clear();
        self.touched.clear();
        self.pin_verified = false;
        self.run(|ch| reselecting(ch, |ch| ch.reset()))
    }
}

/// The management key algorithm to assume for key bytes given without one:
/// what GET METADATA says, else by firmware (AES-192 from 5.7, 3DES before).
pub fn management_key_algorithm(token: &mut HardwareToken) -> Result<ManagementKeyAlgorithm> {
    match token.management_key_metadata() {
        Ok(m) => Ok(m.algorithm),
        Err(Error::NotSupported { .. }) => Ok(if token.firmware >= FirmwareVersion::new(5, 7, 0) {
            ManagementKeyAlgorithm::Aes192
        } else {
            ManagementKeyAlgorithm::Tdes
        }),
        Err(e) => Err(e),
    }
}
