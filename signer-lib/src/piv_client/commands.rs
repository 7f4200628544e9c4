//! PIV commands over an [`ApduLink`]: APDU framing (command chaining, `61xx`
//! / GET RESPONSE) and one function per instruction, each mapping the
//! card's status words to typed errors.
//!
//! Nothing here opens a transaction or decides policy; the caller
//! ([`super::HardwareToken`]) runs these inside one transaction.

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::{
    Algorithm, FirmwareVersion, KeyOrigin, PinPolicy, PublicKey, SlotId, TouchPolicy,
};
use crate::piv::apdu::{CLA_CHAINING, CommandApdu, ResponseApdu, StatusWord};
use crate::piv::mgmt_crypto::HostAuthentication;
use crate::piv::{PIV_AID, ins, key_ref, metadata_tag, object, tag, tlv};
use crate::secret::{ManagementKey, ManagementKeyAlgorithm, Pin, Puk};
use crate::token::ImportKey;
use crate::transport::ApduLink;

/// Largest data field of one short command APDU; longer data is chained.
const SHORT_DATA: usize = 255;

/// A runaway card answering `61xx` forever is cut off after this much data.
const MAX_RESPONSE: usize = 64 * 1024;

/// PIN verification state as `VERIFY` without data reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinState {
    /// Verified in this session.
    Verified,
    /// Not verified; tries left.
    NotVerified {
        /// Tries left.
        retries_left: u8,
    },
    /// Blocked.
    Blocked,
}

/// What GET METADATA says about a key slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMetadata {
    /// The key's algorithm.
    pub algorithm: Algorithm,
    /// PIN policy (as stored).
    pub pin_policy: PinPolicy,
    /// Touch policy (as stored).
    pub touch_policy: TouchPolicy,
    /// Generated or imported; `None` when the device cannot tell (firmware
    /// before 5.3, a key that cannot be attested).
    pub origin: Option<KeyOrigin>,
    /// The public key.
    pub public_key: PublicKey,
}

/// What GET METADATA says about the management key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagementKeyMetadata {
    /// 3DES or AES.
    pub algorithm: ManagementKeyAlgorithm,
    /// Whether it is still the factory default key.
    pub is_default: bool,
    /// Whether using it needs a touch.
    pub touch_policy: TouchPolicy,
}

/// PIV commands over one link (inside one transaction).
pub struct PivChannel<'a> {
    link: &'a mut dyn ApduLink,
}

fn unexpected(command: &'static str, sw: StatusWord) -> Error {
    Error::UnexpectedStatus { command, sw }
}

fn protocol(reason: impl Into<String>) -> Error {
    Error::Protocol {
        reason: reason.into(),
    }
}

/// Whether a status word says the instruction reached an applet that is not
/// PIV (another program selected OpenPGP, FIDO, OTP... since our last
/// transaction).
pub fn is_wrong_applet(sw: StatusWord) -> bool {
    matches!(
        sw,
        StatusWord::InsNotSupported | StatusWord::ClaNotSupported
    )
}

impl<'a> PivChannel<'a> {
    /// Commands over `link`.
    pub fn new(link: &'a mut dyn ApduLink) -> PivChannel<'a> {
        PivChannel { link }
    }

    fn exchange(&mut self, command: &CommandApdu) -> Result<ResponseApdu> {
        let bytes = command.to_bytes().map_err(|e| protocol(e.to_string()))?;
        let raw = self.link.transmit(&bytes)?;
        ResponseApdu::parse(&raw).map_err(|e| protocol(format!("response APDU: {e}")))
    }

    /// Send one command: chained in 255-byte parts when its data is longer,
    /// and with every `61xx` continuation collected by GET RESPONSE. The
    /// status word of the final part is returned (with all the data).
    pub fn transmit(&mut self, command: &CommandApdu) -> Result<ResponseApdu> {
        let response = if command.data.len() > SHORT_DATA {
            let parts: Vec<&[u8]> = command.data.chunks(SHORT_DATA).collect();
            let last = parts.len() - 1;
            let mut response = None;
            for (i, part) in parts.into_iter().enumerate() {
                let mut apdu = CommandApdu::new(command.cla, command.ins, command.p1, command.p2)
                    .with_data(part.to_vec());
                if i < last {
                    apdu.cla |= CLA_CHAINING;
                } else if let Some(le) = command.le {
                    apdu.le = Some(le.min(256));
                }
                let r = self.exchange(&apdu)?;
                if i < last && r.sw != StatusWord::Success {
                    return Ok(r);
                }
                response = Some(r);
            }
            response.ok_or_else(|| protocol("empty command chain"))?
        } else {
            self.exchange(command)?
        };
        self.collect_more_data(response)
    }

    /// Collect the `61xx` continuations of `response` with GET RESPONSE
    /// (bounded by 64 KiB).
    fn collect_more_data(&mut self, mut response: ResponseApdu) -> Result<ResponseApdu> {
        let mut data = Zeroizing::new(std::mem::take(&mut *response.data));
        while let StatusWord::MoreData(n) = response.sw {
            let le = if n == 0 { 256 } else { usize::from(n) };
            let get = CommandApdu::new(0, ins::GET_RESPONSE, 0, 0).with_le(le);
            response = self.exchange(&get)?;
            data.extend_from_slice(&response.data);
            if data.len() > MAX_RESPONSE {
                return Err(protocol("the card's response exceeds 64 KiB"));
            }
        }
        Ok(ResponseApdu {
            data,
            sw: response.sw,
        })
    }

    // ----- Application and device -------------------------------------------

    /// SELECT the PIV applet. Fails with [`Error::NotSupported`] when the
    /// card has none.
    pub fn select_piv(&mut self) -> Result<()> {
        let r = self.transmit(
            &CommandApdu::new(0, ins::SELECT, 0x04, 0x00)
                .with_data(PIV_AID.to_vec())
                .with_le(256),
        )?;
        match r.sw {
            StatusWord::Success => Ok(()),
            StatusWord::NotFound => Err(Error::NotSupported {
                what: "this card has no PIV applet".into(),
            }),
            sw => Err(unexpected("SELECT PIV", sw)),
        }
    }

    /// GET SERIAL (F8, YubiKey 5).
    pub fn serial(&mut self) -> Result<u32> {
        let r = self.transmit(&CommandApdu::new(0, ins::GET_SERIAL, 0, 0).with_le(256))?;
        match r.sw {
            StatusWord::Success => {
                let b: [u8; 4] = r.data.as_slice().try_into().map_err(|_| {
                    protocol(format!("GET SERIAL answered {} bytes, not 4", r.data.len()))
                })?;
                Ok(u32::from_be_bytes(b))
            }
            sw => Err(unexpected("GET SERIAL", sw)),
        }
    }

    /// The serial of a YubiKey without GET SERIAL (YubiKey 4, 5.0.0–5.0.2),
    /// as yubico-piv-tool reads it: SELECT the OTP applet, its "read serial"
    /// command (`00 01 10 00`), then SELECT PIV again (before any secret
    /// is sent; PIN verification does not survive it, so only at connect).
    pub fn serial_from_otp(&mut self) -> Result<u32> {
        let selected = self.transmit(
            &CommandApdu::new(0, ins::SELECT, 0x04, 0x00)
                .with_data(crate::piv::OTP_AID.to_vec())
                .with_le(256),
        )?;
        let serial = match selected.sw {
            StatusWord::Success => {
                let r = self.transmit(&CommandApdu::new(0, 0x01, 0x10, 0x00).with_le(256))?;
                match (r.sw, r.data.as_slice()) {
                    (StatusWord::Success, &[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
                    (StatusWord::Success, other) => Err(protocol(format!(
                        "the OTP applet answered a {}-byte serial, not 4",
                        other.len()
                    ))),
                    (sw, _) => Err(unexpected("OTP read serial", sw)),
                }
            }
            sw => Err(unexpected("SELECT OTP (for the serial)", sw)),
        };
        self.select_piv()?;
        serial
    }

    /// GET VERSION (FD).
    pub fn version(&mut self) -> Result<FirmwareVersion> {
        let r = self.transmit(&CommandApdu::new(0, ins::GET_VERSION, 0, 0).with_le(256))?;
        match (r.sw, r.data.as_slice()) {
            (StatusWord::Success, &[a, b, c]) => Ok(FirmwareVersion::new(a, b, c)),
            (StatusWord::Success, d) => Err(protocol(format!(
                "GET VERSION answered {} bytes, not 3",
                d.len()
            ))),
            (sw, _) => Err(unexpected("GET VERSION", sw)),
        }
    }

    fn metadata(&mut self, reference: u8, command: &'static str) -> Result<ResponseApdu> {
        let r =
            self.transmit(&CommandApdu::new(0, ins::GET_METADATA, 0, reference).with_le(256))?;
        match r.sw {
            StatusWord::Success => Ok(r),
            StatusWord::InsNotSupported => Err(Error::NotSupported {
                what: "GET METADATA (YubiKey firmware 5.3 or later is needed)".into(),
            }),
            sw => Err(unexpected(command, sw)),
        }
    }

    /// GET METADATA of a key slot; [`Error::KeyNotFound`] when empty.
    pub fn slot_metadata(&mut self, slot: SlotId) -> Result<SlotMetadata> {
        let r = match self.metadata(slot.key_reference(), "GET METADATA (key slot)") {
            Err(Error::UnexpectedStatus {
                sw: StatusWord::ReferenceNotFound,
                ..
            }) => return Err(Error::KeyNotFound { slot }),
            other => other?,
        };
        parse_slot_metadata(&r.data)
    }

    /// GET METADATA of the management key (9B).
    pub fn management_key_metadata(&mut self) -> Result<ManagementKeyMetadata> {
        let r = self.metadata(key_ref::MANAGEMENT, "GET METADATA (management key)")?;
        let items = tlv::parse_all(&r.data).map_err(|e| protocol(format!("metadata: {e}")))?;
        let find = |t: u32| items.iter().find(|i| i.tag == t).map(|i| i.value);
        let algorithm = match find(metadata_tag::ALGORITHM) {
            Some(&[a]) => ManagementKeyAlgorithm::from_id(a)?,
            _ => return Err(protocol("management key metadata without an algorithm")),
        };
        let touch_policy = match find(metadata_tag::POLICY) {
            Some(&[_, t]) => TouchPolicy::from_byte(t)?,
            _ => TouchPolicy::Never,
        };
        let is_default = matches!(find(metadata_tag::IS_DEFAULT), Some(&[1]));
        Ok(ManagementKeyMetadata {
            algorithm,
            is_default,
            touch_policy,
        })
    }

    /// Retries left for the PIN (`reference` 80) or PUK (81), from GET
    /// METADATA (spends no try).
    pub fn retries(&mut self, reference: u8) -> Result<u8> {
        let r = self.metadata(reference, "GET METADATA (PIN/PUK)")?;
        match tlv::find(&r.data, metadata_tag::RETRIES) {
            Ok(Some(&[_, left])) => Ok(left),
            _ => Err(protocol("PIN/PUK metadata without retry counters")),
        }
    }

    // ----- PIN and PUK --------------------------------------------------------

    /// VERIFY the PIN. Never retried: [`Error::WrongPin`] with the tries left,
    /// or [`Error::PinBlocked`].
    pub fn verify_pin(&mut self, pin: &Pin) -> Result<()> {
        let r = self.transmit(
            &CommandApdu::new(0, ins::VERIFY, 0, key_ref::PIN).with_data(pin.padded().to_vec()),
        )?;
        pin_status(r.sw, "VERIFY", false)
    }

    /// VERIFY without data: is the PIN verified, and how many tries are left
    /// (spends no try).
    pub fn pin_state(&mut self) -> Result<PinState> {
        let r = self.transmit(&CommandApdu::new(0, ins::VERIFY, 0, key_ref::PIN))?;
        match r.sw {
            StatusWord::Success => Ok(PinState::Verified),
            StatusWord::VerifyFailed(n) => Ok(PinState::NotVerified { retries_left: n }),
            StatusWord::AuthenticationBlocked => Ok(PinState::Blocked),
            sw => Err(unexpected("VERIFY (status)", sw)),
        }
    }

    /// CHANGE REFERENCE DATA for the PIN (80) or PUK (81).
    pub fn change_reference(&mut self, reference: u8, current: &Pin, new: &Pin) -> Result<()> {
        let mut data = Zeroizing::new(Vec::with_capacity(16));
        data.extend_from_slice(&*current.padded());
        data.extend_from_slice(&*new.padded());
        let r = self.transmit(
            &CommandApdu::new(0, ins::CHANGE_REFERENCE_DATA, 0, reference).with_data(data.to_vec()),
        )?;
        pin_status(r.sw, "CHANGE REFERENCE DATA", reference == key_ref::PUK)
    }

    /// RESET RETRY COUNTER: a new PIN with the PUK.
    pub fn unblock_pin(&mut self, puk: &Puk, new_pin: &Pin) -> Result<()> {
        let mut data = Zeroizing::new(Vec::with_capacity(16));
        data.extend_from_slice(&*puk.padded());
        data.extend_from_slice(&*new_pin.padded());
        let r = self.transmit(
            &CommandApdu::new(0, ins::RESET_RETRY_COUNTER, 0, key_ref::PIN)
                .with_data(data.to_vec()),
        )?;
        pin_status(r.sw, "RESET RETRY COUNTER", true)
    }

    // ----- Management key -------------------------------------------------------

    /// Mutual authentication with the management key (two GENERAL
    /// AUTHENTICATE on 9B); the card must prove the key too.
    pub fn authenticate(&mut self, key: &ManagementKey) -> Result<()> {
        let first = self.transmit(&HostAuthentication::witness_request(key.algorithm()))?;
        HostAuthentication::check_status(first.sw)?;
        let (auth, second) =
            HostAuthentication::answer_witness(key, &first.data, &mut getrandom::SysRng)?;
        let answer = self.transmit(&second)?;
        HostAuthentication::check_status(answer.sw)?;
        auth.verify_card(key, &answer.data)
    }

    /// SET MANAGEMENT KEY (needs the current one authenticated).
    pub fn set_management_key(&mut self, new: &ManagementKey, require_touch: bool) -> Result<()> {
        let mut data = Zeroizing::new(vec![new.algorithm().id()]);
        tlv::write(&mut data, u32::from(key_ref::MANAGEMENT), new.as_bytes())
            .map_err(|e| protocol(e.to_string()))?;
        let p2 = if require_touch { 0xfe } else { 0xff };
        let r = self.transmit(
            &CommandApdu::new(0, ins::SET_MANAGEMENT_KEY, 0xff, p2).with_data(data.to_vec()),
        )?;
        match r.sw {
            // Firmware before 5.4 has no AES management keys.
            StatusWord::IncorrectData | StatusWord::IncorrectP1P2 => Err(Error::NotSupported {
                what: format!(
                    "a {} management key (YubiKey firmware 5.4 or later is needed for AES)",
                    new.algorithm()
                ),
            }),
            sw => admin_status(sw, "SET MANAGEMENT KEY"),
        }
    }

    // ----- Keys ---------------------------------------------------------------------

    /// GENERAL AUTHENTICATE with a slot key: sign `input` (the bytes of
    /// [`crate::piv::sign_input::card_input`]).
    /// Returns the raw response (the caller interprets 6982: PIN or touch).
    pub fn sign_raw(
        &mut self,
        slot: SlotId,
        algorithm: Algorithm,
        input: &[u8],
    ) -> Result<ResponseApdu> {
        self.key_operation(slot, algorithm, tag::CHALLENGE, input)
    }

    /// GENERAL AUTHENTICATE with a slot key: `7C { 82 00, data_tag input }`
    /// (tag 81: sign or RSA decrypt; tag 85: ECDH with a peer public key).
    /// Returns the raw response (the caller interprets 6982: PIN or touch).
    pub fn key_operation(
        &mut self,
        slot: SlotId,
        algorithm: Algorithm,
        data_tag: u32,
        input: &[u8],
    ) -> Result<ResponseApdu> {
        let mut inner = Zeroizing::new(Vec::with_capacity(input.len() + 6));
        tlv::write(&mut inner, tag::RESPONSE, &[]).map_err(|e| protocol(e.to_string()))?;
        tlv::write(&mut inner, data_tag, input).map_err(|e| protocol(e.to_string()))?;
        let mut data = Vec::with_capacity(inner.len() + 4);
        tlv::write(&mut data, tag::DYN_AUTH, &inner).map_err(|e| protocol(e.to_string()))?;
        let command = CommandApdu::new(
            0,
            ins::GENERAL_AUTHENTICATE,
            algorithm.id(),
            slot.key_reference(),
        )
        .with_data(data);
        if command.data.len() > SHORT_DATA || algorithm.is_rsa() {
            // RSA blocks and long Ed25519 messages: one extended-length
            // APDU (YubiKey 4 and 5 take up to 3062 bytes) with an extended
            // Le, so the whole signature comes back in one response.
            self.transmit_extended(&command.with_le(65536))
        } else {
            self.transmit(&command.with_le(256))
        }
    }

    /// Send one command as a single extended-length APDU (no chaining),
    /// collecting `61xx` continuations if the card still sends any.
    pub fn transmit_extended(&mut self, command: &CommandApdu) -> Result<ResponseApdu> {
        let response = self.exchange(command)?;
        self.collect_more_data(response)
    }

    /// GENERATE ASYMMETRIC KEY PAIR; returns the public key.
    pub fn generate(
        &mut self,
        slot: SlotId,
        algorithm: Algorithm,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<PublicKey> {
        let mut inner = Vec::with_capacity(9);
        let w = |out: &mut Vec<u8>, t: u32, v: &[u8]| {
            tlv::write(out, t, v).map_err(|e| protocol(e.to_string()))
        };
        w(&mut inner, tag::ALGORITHM, &[algorithm.id()])?;
        if pin_policy != PinPolicy::Default {
            w(&mut inner, tag::PIN_POLICY, &[pin_policy.to_byte()])?;
        }
        if touch_policy != TouchPolicy::Default {
            w(&mut inner, tag::TOUCH_POLICY, &[touch_policy.to_byte()])?;
        }
        let mut data = Vec::with_capacity(inner.len() + 2);
        w(&mut data, tag::CONTROL_REFERENCE, &inner)?;
        let r = self.transmit(
            &CommandApdu::new(0, ins::GENERATE_ASYMMETRIC, 0, slot.key_reference())
                .with_data(data)
                .with_le(256),
        )?;
        match r.sw {
            StatusWord::Success => {}
            StatusWord::IncorrectData
            | StatusWord::IncorrectP1P2
            | StatusWord::FunctionNotSupported => {
                return Err(Error::UnsupportedAlgorithm {
                    algorithm: algorithm.to_string(),
                });
            }
            sw => admin_status(sw, "GENERATE ASYMMETRIC KEY PAIR")?,
        }
        let template = tlv::find(&r.data, tag::PUBLIC_KEY_TEMPLATE)
            .map_err(|e| protocol(format!("GENERATE response: {e}")))?
            .ok_or_else(|| protocol("GENERATE response without a public key template (7F49)"))?;
        public_key_from_template(algorithm, template)
    }

    /// IMPORT ASYMMETRIC KEY: RSA as its CRT components (tags 01..05), EC
    /// as the scalar (06), Ed25519 as the seed (07), X25519 as the secret
    /// (08). Longer than one short APDU (RSA) goes chained.
    pub fn import(
        &mut self,
        slot: SlotId,
        key: &ImportKey,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<()> {
        const EC_PRIVATE: u32 = 0x06;
        const ED25519_PRIVATE: u32 = 0x07;
        const X25519_PRIVATE: u32 = 0x08;
        let algorithm = key.algorithm;
        let mut data = Zeroizing::new(Vec::with_capacity(key.scalar.len() + 1300));
        let w = |out: &mut Vec<u8>, t: u32, v: &[u8]| {
            tlv::write(out, t, v).map_err(|e| protocol(e.to_string()))
        };
        let bad = |reason: &str| Error::BadCommandData {
            reason: format!("{algorithm} import: {reason}"),
        };
        if let Some(bits) = algorithm.rsa_bits() {
            let parts = key.rsa.as_ref().ok_or_else(|| bad("no CRT components"))?;
            // Each component is half the modulus, left-padded as the device expects.
            let half = bits / 16;
            for (t, v) in [
                (0x01, &parts.p),
                (0x02, &parts.q),
                (0x03, &parts.dp),
                (0x04, &parts.dq),
                (0x05, &parts.qinv),
            ] {
                let v = trim_zeros(v);
                if v.is_empty() || v.len() > half {
                    return Err(bad("a CRT component does not fit the key size"));
                }
                let mut padded = Zeroizing::new(vec![0u8; half]);
                padded[half - v.len()..].copy_from_slice(v);
                w(&mut data, t, &padded)?;
            }
        } else {
            let t = match algorithm {
                Algorithm::Ed25519 => ED25519_PRIVATE,
                Algorithm::X25519 => X25519_PRIVATE,
                _ => EC_PRIVATE,
            };
            w(&mut data, t, &key.scalar)?;
        }
        if pin_policy != PinPolicy::Default {
            w(&mut data, tag::PIN_POLICY, &[pin_policy.to_byte()])?;
        }
        if touch_policy != TouchPolicy::Default {
            w(&mut data, tag::TOUCH_POLICY, &[touch_policy.to_byte()])?;
        }
        let r = self.transmit(
            &CommandApdu::new(0, ins::IMPORT_KEY, algorithm.id(), slot.key_reference())
                .with_data(data.to_vec()),
        )?;
        match r.sw {
            StatusWord::IncorrectP1P2 | StatusWord::FunctionNotSupported => {
                Err(Error::UnsupportedAlgorithm {
                    algorithm: algorithm.to_string(),
                })
            }
            StatusWord::IncorrectData => Err(bad("the card refused the key material")),
            sw => admin_status(sw, "IMPORT ASYMMETRIC KEY"),
        }
    }

    /// ATTEST (F9): the slot's attestation certificate (DER).
    pub fn attest(&mut self, slot: SlotId) -> Result<Vec<u8>> {
        let r =
            self.transmit(&CommandApdu::new(0, ins::ATTEST, slot.key_reference(), 0).with_le(256))?;
        match r.sw {
            StatusWord::Success => Ok(r.data.to_vec()),
            StatusWord::ReferenceNotFound => Err(Error::KeyNotFound { slot }),
            StatusWord::IncorrectData => Err(Error::NotAttestable { slot }),
            sw => Err(unexpected("ATTEST", sw)),
        }
    }

    // ----- Data objects ---------------------------------------------------------------

    /// GET DATA: an object's contents (inside its `53`); [`Error::DataObjectNotFound`].
    pub fn get_object(&mut self, id: u32) -> Result<Zeroizing<Vec<u8>>> {
        let r = self.transmit(
            &CommandApdu::new(0, ins::GET_DATA, 0x3f, 0xff)
                .with_data(object_id_tlv(id)?)
                .with_le(256),
        )?;
        match r.sw {
            StatusWord::Success => {}
            StatusWord::NotFound => return Err(Error::DataObjectNotFound { object: id }),
            StatusWord::SecurityStatusNotSatisfied => {
                return Err(Error::PinRequired {
                    slot: SlotId::Signature,
                });
            }
            sw => return Err(unexpected("GET DATA", sw)),
        }
        let (t, _) = tlv::read(&r.data).map_err(|e| protocol(format!("GET DATA: {e}")))?;
        if t.tag != tag::OBJECT_DATA {
            return Err(protocol(format!(
                "GET DATA answered tag {:x}, not 53",
                t.tag
            )));
        }
        Ok(Zeroizing::new(t.value.to_vec()))
    }

    /// PUT DATA (needs the management key).
    pub fn put_object(&mut self, id: u32, contents: &[u8]) -> Result<()> {
        let mut data = Zeroizing::new(object_id_tlv(id)?);
        tlv::write(&mut data, tag::OBJECT_DATA, contents).map_err(|e| protocol(e.to_string()))?;
        let r = self
            .transmit(&CommandApdu::new(0, ins::PUT_DATA, 0x3f, 0xff).with_data(data.to_vec()))?;
        match r.sw {
            StatusWord::NotEnoughMemory => Err(Error::TooLarge {
                what: "data object",
                size: contents.len(),
                limit: crate::piv::MAX_OBJECT_SIZE,
            }),
            sw => admin_status(sw, "PUT DATA"),
        }
    }

    /// The DER certificate in a slot; [`Error::CertificateNotFound`].
    pub fn certificate(&mut self, slot: SlotId) -> Result<Vec<u8>> {
        match self.get_object(slot.certificate_object()) {
            Ok(contents) => crate::emulator::card::certificate_from_object(&contents),
            Err(Error::DataObjectNotFound { .. }) => Err(Error::CertificateNotFound { slot }),
            Err(e) => Err(e),
        }
    }

    /// Store a DER certificate in a slot (`70 cert 71 00 FE`).
    pub fn put_certificate(&mut self, slot: SlotId, der: &[u8]) -> Result<()> {
        let too_large = || Error::TooLarge {
            what: "certificate",
            size: der.len(),
            limit: crate::piv::MAX_OBJECT_SIZE,
        };
        let mut contents = Vec::with_capacity(der.len() + 12);
        tlv::write(&mut contents, tag::CERTIFICATE, der).map_err(|_| too_large())?;
        tlv::write(&mut contents, tag::CERT_INFO, &[0]).map_err(|_| too_large())?;
        tlv::write(&mut contents, tag::ERROR_DETECTION, &[]).map_err(|_| too_large())?;
        if contents.len() > crate::piv::MAX_OBJECT_SIZE {
            return Err(too_large());
        }
        self.put_object(slot.certificate_object(), &contents)
    }

    /// Whether ADMIN DATA (5FFF00, `80 { 81 flags, 82 salt }`, as ykman
    /// writes it) says the management key is stored PIN-protected in PRINTED
    /// (flag 0x02). A PIN-derived key (ykman's deprecated salt scheme) is
    /// refused with [`Error::NotSupported`]. Readable without the PIN.
    pub fn management_key_is_pin_protected(&mut self) -> Result<bool> {
        let admin = match self.get_object(object::ADMIN_DATA) {
            Ok(a) => a,
            Err(Error::DataObjectNotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let inner = tlv::find(&admin, 0x80)
            .map_err(|e| protocol(format!("ADMIN DATA: {e}")))?
            .ok_or_else(|| protocol("ADMIN DATA without its 80 template"))?;
        if tlv::find(inner, 0x82).ok().flatten().is_some() {
            return Err(Error::NotSupported {
                what: "a PIN-derived management key (ykman's deprecated salt scheme); store it \
                       PIN-protected instead (`ykman piv access change-management-key --protect`)"
                    .into(),
            });
        }
        let flags = tlv::find(inner, 0x81).map_err(|e| protocol(format!("ADMIN DATA: {e}")))?;
        Ok(matches!(flags, Some(&[f]) if f & 0x02 != 0))
    }

    /// The management key bytes from PRINTED (5FC109, `88 { 89 key }`),
    /// readable only after VERIFY.
    pub fn pin_protected_management_key(&mut self) -> Result<Zeroizing<Vec<u8>>> {
        let printed = match self.get_object(object::PRINTED) {
            Err(Error::DataObjectNotFound { .. }) => {
                return Err(protocol(
                    "ADMIN DATA says the management key is PIN-protected, but PRINTED is empty",
                ));
            }
            other => other?,
        };
        let inner = tlv::find(&printed, 0x88)
            .map_err(|e| protocol(format!("PRINTED: {e}")))?
            .ok_or_else(|| protocol("PRINTED object without its 88 template"))?;
        let key = tlv::find(inner, 0x89)
            .map_err(|e| protocol(format!("PRINTED: {e}")))?
            .ok_or_else(|| {
                protocol(
                    "ADMIN DATA says the management key is PIN-protected, but PRINTED holds none",
                )
            })?;
        Ok(Zeroizing::new(key.to_vec()))
    }

    /// RESET the PIV applet (only when PIN and PUK are blocked).
    pub fn reset(&mut self) -> Result<()> {
        let r = self.transmit(&CommandApdu::new(0, ins::RESET, 0, 0))?;
        match r.sw {
            StatusWord::Success => Ok(()),
            StatusWord::ConditionsNotSatisfied => Err(Error::ResetNotAllowed),
            sw => Err(unexpected("RESET", sw)),
        }
    }
}

fn object_id_tlv(id: u32) -> Result<Vec<u8>> {
    let bytes = id.to_be_bytes();
    let value: &[u8] = if id <= 0xff {
        &bytes[3..]
    } else if id <= 0xffff {
        &bytes[2..]
    } else {
        &bytes[1..]
    };
    let mut out = Vec::with_capacity(5);
    tlv::write(&mut out, tag::OBJECT_ID, value).map_err(|e| protocol(e.to_string()))?;
    Ok(out)
}

/// Status of VERIFY / CHANGE REFERENCE DATA / RESET RETRY COUNTER.
fn pin_status(sw: StatusWord, command: &'static str, puk: bool) -> Result<()> {
    match (sw, puk) {
        (StatusWord::Success, _) => Ok(()),
        (StatusWord::VerifyFailed(n), false) => Err(Error::WrongPin { retries_left: n }),
        (StatusWord::VerifyFailed(n), true) => Err(Error::WrongPuk { retries_left: n }),
        (StatusWord::AuthenticationBlocked, false) => Err(Error::PinBlocked),
        (StatusWord::AuthenticationBlocked, true) => Err(Error::PukBlocked),
        (StatusWord::IncorrectData | StatusWord::WrongLength, which) => Err(Error::InvalidPin {
            what: if which { "PUK" } else { "PIN" },
            reason: "the card refused its format".into(),
        }),
        (sw, _) => Err(unexpected(command, sw)),
    }
}

/// Status of an administrative command.
fn admin_status(sw: StatusWord, command: &'static str) -> Result<()> {
    match sw {
        StatusWord::Success => Ok(()),
        StatusWord::SecurityStatusNotSatisfied => Err(Error::ManagementKeyRequired),
        StatusWord::NotEnoughMemory => Err(Error::TooLarge {
            what: "data",
            size: 0,
            limit: crate::piv::MAX_OBJECT_SIZE,
        }),
        sw => Err(unexpected(command, sw)),
    }
}

/// A public key from an uncompressed EC point.
pub fn public_key_from_point(algorithm: Algorithm, point: &[u8]) -> Result<PublicKey> {
    use spki::EncodePublicKey;
    let bad = |e: &dyn std::fmt::Display| {
        protocol(format!("invalid {algorithm} public key from the card: {e}"))
    };
    let der = match algorithm {
        Algorithm::EccP256 => p256::PublicKey::from_sec1_bytes(point)
            .map_err(|e| bad(&e))?
            .to_public_key_der()
            .map_err(|e| bad(&e))?,
        Algorithm::EccP384 => p384::PublicKey::from_sec1_bytes(point)
            .map_err(|e| bad(&e))?
            .to_public_key_der()
            .map_err(|e| bad(&e))?,
        Algorithm::Ed25519 => {
            return PublicKey::from_ed25519_bytes(point).map_err(|e| bad(&e));
        }
        Algorithm::X25519 => {
            return PublicKey::from_x25519_bytes(point).map_err(|e| bad(&e));
        }
        other => {
            return Err(Error::UnsupportedAlgorithm {
                algorithm: other.to_string(),
            });
        }
    };
    Ok(PublicKey {
        algorithm,
        spki_der: der.as_bytes().to_vec(),
    })
}

/// A public key from the contents of a public key template (7F49 of
/// GENERATE, tag 04 of GET METADATA): `81 modulus 82 exponent` for RSA (the
/// modulus must have the algorithm's size), `86 point` otherwise (SEC1
/// uncompressed for P-256/P-384, 32 raw bytes for Ed25519/X25519).
pub fn public_key_from_template(algorithm: Algorithm, template: &[u8]) -> Result<PublicKey> {
    let items =
        tlv::parse_all(template).map_err(|e| protocol(format!("public key template: {e}")))?;
    let find = |t: u32| items.iter().find(|i| i.tag == t).map(|i| i.value);
    if algorithm.is_rsa() {
        let (Some(n), Some(e)) = (find(tag::RSA_MODULUS), find(tag::RSA_EXPONENT)) else {
            return Err(protocol(
                "RSA public key template without a modulus (81) and exponent (82)",
            ));
        };
        let key = PublicKey::from_rsa_components(n, e)
            .map_err(|e| protocol(format!("invalid {algorithm} public key from the card: {e}")))?;
        if key.algorithm != algorithm {
            return Err(protocol(format!(
                "the card reported an {algorithm} key with an {} modulus",
                key.algorithm
            )));
        }
        return Ok(key);
    }
    let point =
        find(tag::EC_POINT).ok_or_else(|| protocol("public key template without a point (86)"))?;
    public_key_from_point(algorithm, point)
}

fn trim_zeros(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    &v[start..]
}

fn parse_slot_metadata(data: &[u8]) -> Result<SlotMetadata> {
    let items = tlv::parse_all(data).map_err(|e| protocol(format!("metadata: {e}")))?;
    let find = |t: u32| items.iter().find(|i| i.tag == t).map(|i| i.value);
    let algorithm = match find(metadata_tag::ALGORITHM) {
        Some(&[a]) => Algorithm::from_id(a)?,
        _ => return Err(protocol("key metadata without an algorithm")),
    };
    let (pin_policy, touch_policy) = match find(metadata_tag::POLICY) {
        Some(&[p, t]) => (PinPolicy::from_byte(p)?, TouchPolicy::from_byte(t)?),
        _ => return Err(protocol("key metadata without policies")),
    };
    let origin = match find(metadata_tag::ORIGIN) {
        Some(&[o]) => KeyOrigin::from_byte(o)?,
        _ => return Err(protocol("key metadata without an origin")),
    };
    let public = find(metadata_tag::PUBLIC_KEY)
        .ok_or_else(|| protocol("key metadata without a public key"))?;
    let public_key = public_key_from_template(algorithm, public)?;
    Ok(SlotMetadata {
        algorithm,
        pin_policy,
        touch_policy,
        origin: Some(origin),
        public_key,
    })
}
