//! The card's persistent state: what a YubiKey keeps in its EEPROM.
//!
//! Serialized to JSON by [`crate::emulator::state_file`]. Every secret (PIN,
//! PUK, management key, private scalars, data objects, which may hold a
//! PIN-protected management key) is held in zeroizing memory and written as
//! hex through zeroizing buffers.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::emulator::soft_key::SoftKey;
use crate::error::Result;
use crate::model::{
    Algorithm, FirmwareVersion, KeyOrigin, PinPolicy, PublicKey, SlotId, TouchPolicy,
};
use crate::piv::{MAX_OBJECT_SIZE, object};
use crate::secret::{ManagementKey, ManagementKeyAlgorithm, Pin};

/// Secret bytes: zeroized on drop, `***` in `Debug`, hex in the state file.
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub(crate) fn new(bytes: &[u8]) -> SecretBytes {
        SecretBytes(bytes.to_vec())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let text = Zeroizing::new(hex::encode(&self.0));
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct HexVisitor;
        impl Visitor<'_> for HexVisitor {
            type Value = SecretBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a hex string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<SecretBytes, E> {
                // The error message must not echo the value.
                hex::decode(v)
                    .map(SecretBytes)
                    .map_err(|_| E::custom("a secret field is not valid hex"))
            }
        }
        deserializer.deserialize_str(HexVisitor)
    }
}

/// A retry counter (PIN or PUK).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryCounter {
    /// Attempts left.
    pub remaining: u8,
    /// Attempts after a successful verification (set by SET PIN RETRIES).
    pub max: u8,
}

impl RetryCounter {
    /// A full counter.
    pub fn full(max: u8) -> RetryCounter {
        RetryCounter {
            remaining: max,
            max,
        }
    }

    /// Whether it reached zero.
    pub fn is_blocked(self) -> bool {
        self.remaining == 0
    }
}

/// The management key as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StoredManagementKey {
    pub(crate) algorithm: ManagementKeyAlgorithm,
    pub(crate) key: SecretBytes,
    /// Touch required to authenticate with it (SET MANAGEMENT KEY P2 = FE).
    pub(crate) touch_required: bool,
}

impl StoredManagementKey {
    pub(crate) fn factory(algorithm: ManagementKeyAlgorithm) -> StoredManagementKey {
        StoredManagementKey {
            algorithm,
            key: SecretBytes::new(&ManagementKey::DEFAULT_BYTES),
            touch_required: false,
        }
    }

    pub(crate) fn to_key(&self) -> Result<ManagementKey> {
        ManagementKey::new(self.algorithm, self.key.as_bytes())
    }
}

/// A key in a slot.
#[derive(Clone, Debug)]
pub(crate) struct SlotKey {
    pub(crate) key: SoftKey,
    /// Resolved (never `Default`).
    pub(crate) pin_policy: PinPolicy,
    /// Resolved (never `Default`).
    pub(crate) touch_policy: TouchPolicy,
    pub(crate) origin: KeyOrigin,
    /// Cached public key (derived from `key`).
    pub(crate) public_key: PublicKey,
}

impl SlotKey {
    pub(crate) fn new(
        key: SoftKey,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
        origin: KeyOrigin,
    ) -> Result<SlotKey> {
        let public_key = key.public_key()?;
        Ok(SlotKey {
            key,
            pin_policy,
            touch_policy,
            origin,
            public_key,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotKeyRecord {
    algorithm: Algorithm,
    private_key: SecretBytes,
    pin_policy: PinPolicy,
    touch_policy: TouchPolicy,
    origin: KeyOrigin,
}

impl Serialize for SlotKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let private = self
            .key
            .private_bytes()
            .map_err(serde::ser::Error::custom)?;
        SlotKeyRecord {
            algorithm: self.key.algorithm(),
            private_key: SecretBytes::new(&private),
            pin_policy: self.pin_policy,
            touch_policy: self.touch_policy,
            origin: self.origin,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SlotKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let record = SlotKeyRecord::deserialize(deserializer)?;
        let key = SoftKey::from_private_bytes(record.algorithm, record.private_key.as_bytes())
            .map_err(|_| de::Error::custom(format!("invalid {} private key", record.algorithm)))?;
        SlotKey::new(key, record.pin_policy, record.touch_policy, record.origin)
            .map_err(de::Error::custom)
    }
}

/// Data objects by object id, serialized as a map from 6-hex-digit ids.
#[derive(Clone, Debug, Default)]
pub(crate) struct Objects(pub(crate) BTreeMap<u32, SecretBytes>);

impl Serialize for Objects {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (id, contents) in &self.0 {
            map.serialize_entry(&format!("{id:06x}"), contents)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Objects {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ObjectsVisitor;
        impl<'de> Visitor<'de> for ObjectsVisitor {
            type Value = Objects;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of hex object ids to hex contents")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut access: A,
            ) -> std::result::Result<Objects, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((id, contents)) = access.next_entry::<String, SecretBytes>()? {
                    let id = u32::from_str_radix(&id, 16)
                        .map_err(|_| de::Error::custom(format!("bad object id {id:?}")))?;
                    out.insert(id, contents);
                }
                Ok(Objects(out))
            }
        }
        deserializer.deserialize_map(ObjectsVisitor)
    }
}

/// Everything the emulated card remembers across power cycles.
///
/// Fields are private: every change goes through [`crate::emulator::card::Card`],
/// which enforces the device's rules.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardState {
    pub(crate) serial: u32,
    pub(crate) firmware: FirmwareVersion,
    pub(crate) management_key: StoredManagementKey,
    /// The management key algorithm a reset restores (chosen at init).
    pub(crate) factory_management_key_algorithm: ManagementKeyAlgorithm,
    pub(crate) pin: SecretBytes,
    pub(crate) puk: SecretBytes,
    pub(crate) pin_retries: RetryCounter,
    pub(crate) puk_retries: RetryCounter,
    /// Keys by slot, the f9 attestation key included.
    pub(crate) keys: BTreeMap<SlotId, SlotKey>,
    /// PIV data objects: the contents of tag 53 by object id (certificates
    /// as `70 cert 71 info FE lrc`, the f9 certificate at 5FFF01 included).
    pub(crate) objects: Objects,
    /// DER certificate of the emulated attestation root that signed the f9
    /// certificate. Its private key is not kept (as Yubico keeps its own).
    pub(crate) attestation_root: Option<Vec<u8>>,
    /// PIN complexity enforced (firmware 5.7+, chosen at init; see
    /// [`crate::emulator::card::pin_complexity`]). Absent in files written
    /// without it, and not written when off, so those files are unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) pin_complexity: bool,
}

/// What a fresh token looks like.
#[derive(Clone, Debug)]
pub struct FactorySettings {
    /// Serial number.
    pub serial: u32,
    /// Firmware version.
    pub firmware: FirmwareVersion,
    /// Management key algorithm (AES-192 from firmware 5.7, 3DES before).
    pub management_key_algorithm: ManagementKeyAlgorithm,
}

/// The default firmware of a new emulated token.
pub const DEFAULT_FIRMWARE: FirmwareVersion = FirmwareVersion::new(5, 7, 4);
/// Default PIN and PUK retries.
pub const DEFAULT_RETRIES: u8 = 3;

/// The factory management key algorithm of a firmware version: AES-192 from
/// 5.7, 3DES before.
pub fn default_management_key_algorithm(firmware: FirmwareVersion) -> ManagementKeyAlgorithm {
    if firmware >= FirmwareVersion::new(5, 7, 0) {
        ManagementKeyAlgorithm::Aes192
    } else {
        ManagementKeyAlgorithm::Tdes
    }
}

impl CardState {
    /// A card in factory state, without attestation material (use
    /// [`crate::emulator::card::Card::manufacture`] for a complete card).
    pub fn factory(settings: &FactorySettings) -> CardState {
        CardState {
            serial: settings.serial,
            firmware: settings.firmware,
            management_key: StoredManagementKey::factory(settings.management_key_algorithm),
            factory_management_key_algorithm: settings.management_key_algorithm,
            pin: SecretBytes::new(Pin::DEFAULT_PIN),
            puk: SecretBytes::new(Pin::DEFAULT_PUK),
            pin_retries: RetryCounter::full(DEFAULT_RETRIES),
            puk_retries: RetryCounter::full(DEFAULT_RETRIES),
            keys: BTreeMap::new(),
            objects: Objects::default(),
            attestation_root: None,
            pin_complexity: false,
        }
    }

    /// Whether PIN complexity is enforced (set at init, kept by RESET).
    pub fn pin_complexity(&self) -> bool {
        self.pin_complexity
    }

    /// Serial number.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Firmware version.
    pub fn firmware(&self) -> FirmwareVersion {
        self.firmware
    }

    /// The emulated attestation root certificate (DER), if the token has one.
    pub fn attestation_root(&self) -> Option<&[u8]> {
        self.attestation_root.as_deref()
    }

    /// The management key algorithm.
    pub fn management_key_algorithm(&self) -> ManagementKeyAlgorithm {
        self.management_key.algorithm
    }

    /// The slot and key type of every stored key (f9 included).
    pub fn key_algorithms(&self) -> impl Iterator<Item = (SlotId, Algorithm)> + '_ {
        self.keys.iter().map(|(slot, k)| (*slot, k.key.algorithm()))
    }

    /// Check the invariants the card relies on; `Err` names the first
    /// violation (never a secret value). Used on every state file load.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (what, secret) in [("PIN", &self.pin), ("PUK", &self.puk)] {
            if Pin::new(secret.as_bytes(), "PIN").is_err() {
                return Err(format!("the stored {what} is not 6 to 8 valid bytes"));
            }
        }
        for (what, c) in [("PIN", self.pin_retries), ("PUK", self.puk_retries)] {
            if c.max == 0 || c.remaining > c.max {
                return Err(format!(
                    "{what} retry counter {}/{} is impossible",
                    c.remaining, c.max
                ));
            }
        }
        if self.management_key.to_key().is_err() {
            return Err(format!(
                "the management key does not fit its algorithm {}",
                self.management_key.algorithm
            ));
        }
        for (slot, key) in &self.keys {
            if key.pin_policy == PinPolicy::Default || key.touch_policy == TouchPolicy::Default {
                return Err(format!("key in slot {slot} has an unresolved policy"));
            }
        }
        for (id, contents) in &self.objects.0 {
            if !is_writable_object(*id) {
                return Err(format!("unknown data object {id:06x}"));
            }
            if contents.as_bytes().len() > MAX_OBJECT_SIZE {
                return Err(format!("data object {id:06x} is over the size limit"));
            }
        }
        Ok(())
    }
}

/// Whether PUT DATA may write `id`: the PIV objects 5FC101..5FC123 and
/// YubiKey's 5FFF00..5FFF15 (admin data, attestation certificate, ...).
pub fn is_writable_object(id: u32) -> bool {
    (0x5f_c1_01..=0x5f_c1_23).contains(&id) || (object::ADMIN_DATA..=0x5f_ff_15).contains(&id)
}
