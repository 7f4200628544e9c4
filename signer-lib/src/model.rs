//! The library's core model: slots, algorithms, policies, and what a token
//! reports about itself and its keys.
//!
//! Every type here has exactly one wire value on the device (the byte the
//! PIV applet uses) and one textual spelling (what CLIs, config files and the
//! gRPC contract use). Conversions in both directions are total and checked:
//! an unknown byte or spelling is an error, never a silent default.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A PIV key slot (the key reference byte of SP 800-73-4, plus YubiKey's f9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SlotId {
    /// 9a: PIV Authentication.
    Authentication,
    /// 9c: Digital Signature (the slot for a trust system's root key).
    Signature,
    /// 9d: Key Management.
    KeyManagement,
    /// 9e: Card Authentication (PIN never required by default).
    CardAuthentication,
    /// 82..=95: the twenty "retired key management" slots. The value is the
    /// key reference byte itself (0x82..=0x95).
    Retired(u8),
    /// f9: YubiKey attestation key; its certificate is the device certificate.
    Attestation,
}

impl SlotId {
    /// Every slot that can hold a user key, in the order tools list them.
    pub fn key_slots() -> impl Iterator<Item = SlotId> {
        [
            SlotId::Authentication,
            SlotId::Signature,
            SlotId::KeyManagement,
            SlotId::CardAuthentication,
        ]
        .into_iter()
        .chain((0x82..=0x95).map(SlotId::Retired))
    }

    /// The key reference byte used in APDUs (e.g. 0x9c).
    pub fn key_reference(self) -> u8 {
        match self {
            SlotId::Authentication => 0x9a,
            SlotId::Signature => 0x9c,
            SlotId::KeyManagement => 0x9d,
            SlotId::CardAuthentication => 0x9e,
            SlotId::Retired(r) => r,
            SlotId::Attestation => 0xf9,
        }
    }

    /// Parse a key reference byte. Fails for anything that is not a key slot.
    pub fn from_key_reference(byte: u8) -> Result<SlotId> {
        Ok(match byte {
            0x9a => SlotId::Authentication,
            0x9c => SlotId::Signature,
            0x9d => SlotId::KeyManagement,
            0x9e => SlotId::CardAuthentication,
            0x82..=0x95 => SlotId::Retired(byte),
            0xf9 => SlotId::Attestation,
            _ => {
                return Err(Error::InvalidSlot {
                    slot: format!("{byte:02x}"),
                });
            }
        })
    }

    /// The PIV data object that holds this slot's certificate
    /// (e.g. 5FC10A for 9c, 5FFF01 for f9).
    pub fn certificate_object(self) -> u32 {
        match self {
            SlotId::Authentication => 0x5f_c1_05,
            SlotId::Signature => 0x5f_c1_0a,
            SlotId::KeyManagement => 0x5f_c1_0b,
            SlotId::CardAuthentication => 0x5f_c1_01,
            // Retired slots 82..95 map to 5FC10D..5FC120.
            SlotId::Retired(r) => 0x5f_c1_0d + u32::from(r - 0x82),
            SlotId::Attestation => 0x5f_ff_01,
        }
    }

    /// The inverse of [`SlotId::certificate_object`].
    pub fn from_certificate_object(object: u32) -> Option<SlotId> {
        SlotId::key_slots()
            .chain(std::iter::once(SlotId::Attestation))
            .find(|s| s.certificate_object() == object)
    }

    /// The PIN policy the device applies when a key is created with
    /// [`PinPolicy::Default`] (SP 800-73-4 access rules as YubiKey implements them).
    pub fn default_pin_policy(self) -> PinPolicy {
        match self {
            SlotId::Signature => PinPolicy::Always,
            SlotId::CardAuthentication | SlotId::Attestation => PinPolicy::Never,
            _ => PinPolicy::Once,
        }
    }

    /// The touch policy the device applies when a key is created with
    /// [`TouchPolicy::Default`].
    pub fn default_touch_policy(self) -> TouchPolicy {
        TouchPolicy::Never
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}", self.key_reference())
    }
}

impl FromStr for SlotId {
    type Err = Error;

    /// Accepts the hex key reference (`9c`, `0x9c`, `82`) or the PIV names
    /// (`authentication`, `signature`, `key-management`, `card-authentication`,
    /// `attestation`, `retired1`..`retired20`).
    fn from_str(s: &str) -> Result<SlotId> {
        let t = s.trim().to_ascii_lowercase();
        let named = match t.as_str() {
            "authentication" | "piv-authentication" => Some(SlotId::Authentication),
            "signature" | "digital-signature" => Some(SlotId::Signature),
            "key-management" | "keymanagement" => Some(SlotId::KeyManagement),
            "card-authentication" | "cardauth" => Some(SlotId::CardAuthentication),
            "attestation" => Some(SlotId::Attestation),
            _ => None,
        };
        if let Some(slot) = named {
            return Ok(slot);
        }
        if let Some(n) = t.strip_prefix("retired") {
            return match n.parse::<u8>() {
                Ok(i @ 1..=20) => Ok(SlotId::Retired(0x81 + i)),
                _ => Err(Error::InvalidSlot {
                    slot: s.to_string(),
                }),
            };
        }
        let hex = t.strip_prefix("0x").unwrap_or(&t);
        if hex.len() != 2 {
            return Err(Error::InvalidSlot {
                slot: s.to_string(),
            });
        }
        let byte = u8::from_str_radix(hex, 16).map_err(|_| Error::InvalidSlot {
            slot: s.to_string(),
        })?;
        SlotId::from_key_reference(byte).map_err(|_| Error::InvalidSlot {
            slot: s.to_string(),
        })
    }
}

impl TryFrom<String> for SlotId {
    type Error = Error;
    fn try_from(s: String) -> Result<SlotId> {
        s.parse()
    }
}

impl From<SlotId> for String {
    fn from(s: SlotId) -> String {
        s.to_string()
    }
}

/// Key algorithm, with the algorithm identifier byte the YubiKey uses.
///
/// Which of these a backend can generate, sign with and attest is a property
/// of the backend and the firmware ([`Algorithm::is_implemented`] says what
/// this crate operates on); the model names every key type of the YubiKey PIV
/// applet (YubiKey 4 to 5.7) so that a listing of any card can name its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// NIST P-256 ECDSA / ECDH (0x11).
    EccP256,
    /// NIST P-384 ECDSA / ECDH (0x14).
    EccP384,
    /// RSA-2048 (0x07).
    Rsa2048,
    /// Ed25519 (0xE0, firmware 5.7+).
    Ed25519,
    /// RSA-1024 (0x06).
    Rsa1024,
    /// RSA-3072 (0x05, firmware 5.7+).
    Rsa3072,
    /// RSA-4096 (0x16, firmware 5.7+).
    Rsa4096,
    /// X25519 key agreement (0xE1, firmware 5.7+); cannot sign.
    X25519,
}

impl Algorithm {
    /// Every algorithm of the model, in a stable order.
    pub const ALL: [Algorithm; 8] = [
        Algorithm::EccP256,
        Algorithm::EccP384,
        Algorithm::Rsa1024,
        Algorithm::Rsa2048,
        Algorithm::Rsa3072,
        Algorithm::Rsa4096,
        Algorithm::Ed25519,
        Algorithm::X25519,
    ];

    /// The algorithm identifier byte of the PIV applet.
    pub fn id(self) -> u8 {
        match self {
            Algorithm::Rsa3072 => 0x05,
            Algorithm::Rsa1024 => 0x06,
            Algorithm::Rsa2048 => 0x07,
            Algorithm::EccP256 => 0x11,
            Algorithm::EccP384 => 0x14,
            Algorithm::Rsa4096 => 0x16,
            Algorithm::Ed25519 => 0xe0,
            Algorithm::X25519 => 0xe1,
        }
    }

    /// Parse the algorithm identifier byte.
    pub fn from_id(id: u8) -> Result<Algorithm> {
        Ok(match id {
            0x05 => Algorithm::Rsa3072,
            0x06 => Algorithm::Rsa1024,
            0x07 => Algorithm::Rsa2048,
            0x11 => Algorithm::EccP256,
            0x14 => Algorithm::EccP384,
            0x16 => Algorithm::Rsa4096,
            0xe0 => Algorithm::Ed25519,
            0xe1 => Algorithm::X25519,
            _ => {
                return Err(Error::UnsupportedAlgorithm {
                    algorithm: format!("0x{id:02x}"),
                });
            }
        })
    }

    /// Whether the backends in this crate can generate, sign and attest with it.
    pub fn is_implemented(self) -> bool {
        matches!(self, Algorithm::EccP256 | Algorithm::EccP384)
    }

    /// Length in bytes of a field element (the digest input the card expects
    /// for ECDSA), `None` for non-ECDSA algorithms.
    pub fn ecdsa_field_len(self) -> Option<usize> {
        match self {
            Algorithm::EccP256 => Some(32),
            Algorithm::EccP384 => Some(48),
            _ => None,
        }
    }

    /// The modulus size in bits for RSA, `None` otherwise.
    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            Algorithm::Rsa1024 => Some(1024),
            Algorithm::Rsa2048 => Some(2048),
            Algorithm::Rsa3072 => Some(3072),
            Algorithm::Rsa4096 => Some(4096),
            _ => None,
        }
    }

    /// Whether this is an RSA key type.
    pub fn is_rsa(self) -> bool {
        self.rsa_bits().is_some()
    }

    /// Whether keys of this type can sign (X25519 only agrees keys).
    pub fn can_sign(self) -> bool {
        self != Algorithm::X25519
    }

    /// The textual name used by the CLIs and the config (`p256`, `p384`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::EccP256 => "p256",
            Algorithm::EccP384 => "p384",
            Algorithm::Rsa1024 => "rsa1024",
            Algorithm::Rsa2048 => "rsa2048",
            Algorithm::Rsa3072 => "rsa3072",
            Algorithm::Rsa4096 => "rsa4096",
            Algorithm::Ed25519 => "ed25519",
            Algorithm::X25519 => "x25519",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Algorithm> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "eccp256" | "ecc-p256" | "secp256r1" | "prime256v1" => {
                Algorithm::EccP256
            }
            "p384" | "p-384" | "eccp384" | "ecc-p384" | "secp384r1" => Algorithm::EccP384,
            "rsa1024" | "rsa-1024" => Algorithm::Rsa1024,
            "rsa2048" | "rsa-2048" => Algorithm::Rsa2048,
            "rsa3072" | "rsa-3072" => Algorithm::Rsa3072,
            "rsa4096" | "rsa-4096" => Algorithm::Rsa4096,
            "ed25519" => Algorithm::Ed25519,
            "x25519" => Algorithm::X25519,
            _ => {
                return Err(Error::UnsupportedAlgorithm {
                    algorithm: s.to_string(),
                });
            }
        })
    }
}

/// How often the PIN must be verified to use a key (YubiKey tag 0xAA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinPolicy {
    /// The slot's default (see [`SlotId::default_pin_policy`]).
    Default,
    /// Never.
    Never,
    /// Once per session (until the card is reset or another applet is selected).
    Once,
    /// Immediately before every private-key operation.
    Always,
}

impl PinPolicy {
    /// The byte used in GENERATE/IMPORT (tag 0xAA), metadata and attestation.
    pub fn to_byte(self) -> u8 {
        match self {
            PinPolicy::Default => 0,
            PinPolicy::Never => 1,
            PinPolicy::Once => 2,
            PinPolicy::Always => 3,
        }
    }

    /// Parse the policy byte.
    pub fn from_byte(b: u8) -> Result<PinPolicy> {
        Ok(match b {
            0 => PinPolicy::Default,
            1 => PinPolicy::Never,
            2 => PinPolicy::Once,
            3 => PinPolicy::Always,
            _ => {
                return Err(Error::InvalidPolicy {
                    policy: format!("pin policy 0x{b:02x}"),
                });
            }
        })
    }

    /// Resolve [`PinPolicy::Default`] to what the device applies in `slot`.
    pub fn resolve(self, slot: SlotId) -> PinPolicy {
        match self {
            PinPolicy::Default => slot.default_pin_policy(),
            p => p,
        }
    }

    /// Textual name.
    pub fn name(self) -> &'static str {
        match self {
            PinPolicy::Default => "default",
            PinPolicy::Never => "never",
            PinPolicy::Once => "once",
            PinPolicy::Always => "always",
        }
    }
}

impl fmt::Display for PinPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PinPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<PinPolicy> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "default" => PinPolicy::Default,
            "never" => PinPolicy::Never,
            "once" => PinPolicy::Once,
            "always" => PinPolicy::Always,
            _ => {
                return Err(Error::InvalidPolicy {
                    policy: format!("pin policy {s:?}"),
                });
            }
        })
    }
}

/// Whether a physical touch is needed to use a key (YubiKey tag 0xAB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TouchPolicy {
    /// The slot's default (never, on every slot).
    Default,
    /// Never.
    Never,
    /// For every private-key operation.
    Always,
    /// A touch is valid for 15 seconds.
    Cached,
}

impl TouchPolicy {
    /// The byte used in GENERATE/IMPORT (tag 0xAB), metadata and attestation.
    pub fn to_byte(self) -> u8 {
        match self {
            TouchPolicy::Default => 0,
            TouchPolicy::Never => 1,
            TouchPolicy::Always => 2,
            TouchPolicy::Cached => 3,
        }
    }

    /// Parse the policy byte.
    pub fn from_byte(b: u8) -> Result<TouchPolicy> {
        Ok(match b {
            0 => TouchPolicy::Default,
            1 => TouchPolicy::Never,
            2 => TouchPolicy::Always,
            3 => TouchPolicy::Cached,
            _ => {
                return Err(Error::InvalidPolicy {
                    policy: format!("touch policy 0x{b:02x}"),
                });
            }
        })
    }

    /// Resolve [`TouchPolicy::Default`] to what the device applies in `slot`.
    pub fn resolve(self, slot: SlotId) -> TouchPolicy {
        match self {
            TouchPolicy::Default => slot.default_touch_policy(),
            p => p,
        }
    }

    /// Whether a signature with this (resolved) policy may wait for a touch.
    pub fn may_require_touch(self) -> bool {
        matches!(self, TouchPolicy::Always | TouchPolicy::Cached)
    }

    /// Textual name.
    pub fn name(self) -> &'static str {
        match self {
            TouchPolicy::Default => "default",
            TouchPolicy::Never => "never",
            TouchPolicy::Always => "always",
            TouchPolicy::Cached => "cached",
        }
    }
}

impl fmt::Display for TouchPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TouchPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<TouchPolicy> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "default" => TouchPolicy::Default,
            "never" => TouchPolicy::Never,
            "always" => TouchPolicy::Always,
            "cached" => TouchPolicy::Cached,
            _ => {
                return Err(Error::InvalidPolicy {
                    policy: format!("touch policy {s:?}"),
                });
            }
        })
    }
}

/// Where a key came from (GET METADATA tag 0x03).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOrigin {
    /// Generated on the token: the private key never existed anywhere else.
    Generated,
    /// Imported: a copy of the private key may exist elsewhere. Not attestable.
    Imported,
}

impl KeyOrigin {
    /// The metadata byte (1 generated, 2 imported).
    pub fn to_byte(self) -> u8 {
        match self {
            KeyOrigin::Generated => 1,
            KeyOrigin::Imported => 2,
        }
    }

    /// Parse the metadata byte.
    pub fn from_byte(b: u8) -> Result<KeyOrigin> {
        match b {
            1 => Ok(KeyOrigin::Generated),
            2 => Ok(KeyOrigin::Imported),
            _ => Err(Error::Protocol {
                reason: format!("unknown key origin 0x{b:02x}"),
            }),
        }
    }
}

/// Hash algorithm of a prehashed digest handed to [`crate::Token::sign`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgorithm {
    /// SHA-256 (32-byte digest).
    Sha256,
    /// SHA-384 (48-byte digest).
    Sha384,
    /// SHA-512 (64-byte digest).
    Sha512,
}

impl HashAlgorithm {
    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
        }
    }

    /// Hash a message.
    pub fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha256 => Sha256::digest(message).to_vec(),
            HashAlgorithm::Sha384 => sha2::Sha384::digest(message).to_vec(),
            HashAlgorithm::Sha512 => sha2::Sha512::digest(message).to_vec(),
        }
    }

    /// The hash a signer should use with `algorithm` when it hashes a message itself.
    pub fn preferred_for(algorithm: Algorithm) -> HashAlgorithm {
        match algorithm {
            Algorithm::EccP384 => HashAlgorithm::Sha384,
            _ => HashAlgorithm::Sha256,
        }
    }

    /// Textual name (`sha256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<HashAlgorithm> {
        Ok(
            match s.trim().to_ascii_lowercase().replace('-', "").as_str() {
                "sha256" => HashAlgorithm::Sha256,
                "sha384" => HashAlgorithm::Sha384,
                "sha512" => HashAlgorithm::Sha512,
                _ => {
                    return Err(Error::UnsupportedHash {
                        hash: s.to_string(),
                    });
                }
            },
        )
    }
}

/// Check a prehashed digest against its declared hash and the key's curve, and
/// return the exact input the card's GENERAL AUTHENTICATE expects: the digest
/// converted to a field-length integer as ECDSA prescribes (leftmost bits when
/// longer, left-padded with zeros when shorter).
///
/// Every backend calls this before it talks to the card, so a request with a
/// bad digest never costs an APDU.
pub fn ecdsa_card_input(
    algorithm: Algorithm,
    hash: HashAlgorithm,
    digest: &[u8],
) -> Result<Vec<u8>> {
    if digest.len() != hash.digest_len() {
        return Err(Error::BadDigestLength {
            hash,
            expected: hash.digest_len(),
            actual: digest.len(),
        });
    }
    let field = algorithm
        .ecdsa_field_len()
        .ok_or(Error::UnsupportedAlgorithm {
            algorithm: algorithm.to_string(),
        })?;
    let mut out = vec![0u8; field];
    if digest.len() >= field {
        out.copy_from_slice(&digest[..field]);
    } else {
        out[field - digest.len()..].copy_from_slice(digest);
    }
    Ok(out)
}

/// A key's public half as a DER SubjectPublicKeyInfo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    /// The key's algorithm.
    pub algorithm: Algorithm,
    /// DER-encoded SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

impl PublicKey {
    /// The key id: lowercase hex SHA-256 of the SubjectPublicKeyInfo DER.
    pub fn key_id(&self) -> String {
        key_id_of(&self.spki_der)
    }

    /// Verify a DER ECDSA signature over a prehashed `digest` (the card's
    /// input: see [`ecdsa_card_input`]) with this key. Returns the signature
    /// as fixed-size r‖s. [`Error::Crypto`] says which step failed: an
    /// unusable key, a signature that is not DER ECDSA, or one that does not
    /// verify.
    pub fn verify_prehash(&self, digest: &[u8], der: &[u8]) -> Result<Vec<u8>> {
        use signature::hazmat::PrehashVerifier;
        use spki::DecodePublicKey;
        let crypto = |reason: String| Error::Crypto { reason };
        match self.algorithm {
            Algorithm::EccP256 => {
                let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&self.spki_der)
                    .map_err(|e| crypto(format!("unusable P-256 public key: {e}")))?;
                let sig = p256::ecdsa::Signature::from_der(der)
                    .map_err(|e| crypto(format!("not a DER ECDSA signature: {e}")))?;
                vk.verify_prehash(digest, &sig)
                    .map_err(|_| crypto("signature does not verify".into()))?;
                Ok(sig.to_bytes().to_vec())
            }
            Algorithm::EccP384 => {
                let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&self.spki_der)
                    .map_err(|e| crypto(format!("unusable P-384 public key: {e}")))?;
                let sig = p384::ecdsa::Signature::from_der(der)
                    .map_err(|e| crypto(format!("not a DER ECDSA signature: {e}")))?;
                vk.verify_prehash(digest, &sig)
                    .map_err(|_| crypto("signature does not verify".into()))?;
                Ok(sig.to_bytes().to_vec())
            }
            other => Err(Error::UnsupportedAlgorithm {
                algorithm: other.name().into(),
            }),
        }
    }

    /// PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> Result<String> {
        pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &self.spki_der)
            .map_err(|e| Error::Protocol {
                reason: format!("cannot PEM-encode public key: {e}"),
            })
    }
}

/// Lowercase hex SHA-256 of a SubjectPublicKeyInfo DER: the key id used
/// throughout the library, the daemon's contract and the audit log.
pub fn key_id_of(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// What a token reports about a key in one of its slots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The slot.
    pub slot: SlotId,
    /// The public key.
    pub public_key: PublicKey,
    /// Lowercase hex SHA-256 of the SPKI DER (see [`key_id_of`]).
    pub key_id: String,
    /// The DER certificate stored in the slot's certificate object, if any.
    pub certificate: Option<Vec<u8>>,
    /// PIN policy as the device reports it (resolved, never `Default`, when the
    /// device has GET METADATA; `Default` when it cannot tell).
    pub pin_policy: PinPolicy,
    /// Touch policy as the device reports it (see `pin_policy`).
    pub touch_policy: TouchPolicy,
    /// Generated on the device or imported; `None` when the device cannot tell.
    pub origin: Option<KeyOrigin>,
}

impl KeyInfo {
    /// Build a KeyInfo, computing the key id.
    pub fn new(
        slot: SlotId,
        public_key: PublicKey,
        certificate: Option<Vec<u8>>,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
        origin: Option<KeyOrigin>,
    ) -> KeyInfo {
        let key_id = public_key.key_id();
        KeyInfo {
            slot,
            public_key,
            key_id,
            certificate,
            pin_policy,
            touch_policy,
            origin,
        }
    }

    /// The algorithm of the key.
    pub fn algorithm(&self) -> Algorithm {
        self.public_key.algorithm
    }
}

/// Hardware or emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A real YubiKey reached over PC/SC.
    Hardware,
    /// The software emulator: keys live in a state file. NOT FOR PRODUCTION KEYS.
    Emulated,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenKind::Hardware => "hardware",
            TokenKind::Emulated => "emulated",
        })
    }
}

/// A firmware version (major.minor.patch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FirmwareVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Patch.
    pub patch: u8,
}

impl FirmwareVersion {
    /// Construct.
    pub const fn new(major: u8, minor: u8, patch: u8) -> Self {
        FirmwareVersion {
            major,
            minor,
            patch,
        }
    }

    /// As the three bytes of GET VERSION and the attestation extension.
    pub fn to_bytes(self) -> [u8; 3] {
        [self.major, self.minor, self.patch]
    }
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What a token reports about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Device serial number.
    pub serial: u32,
    /// PIV applet firmware version.
    pub firmware: FirmwareVersion,
    /// Model name, e.g. "YubiKey 5 NFC" (emulated tokens say so).
    pub model: String,
    /// Hardware or emulated.
    pub kind: TokenKind,
    /// The PC/SC reader name (hardware, or the emulator served through vpcd);
    /// `None` for a directly opened emulator.
    pub reader: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_round_trips_through_text_and_bytes() {
        for slot in SlotId::key_slots().chain([SlotId::Attestation]) {
            assert_eq!(slot.to_string().parse::<SlotId>().unwrap(), slot);
            assert_eq!(
                SlotId::from_key_reference(slot.key_reference()).unwrap(),
                slot
            );
            assert_eq!(
                SlotId::from_certificate_object(slot.certificate_object()),
                Some(slot)
            );
        }
        assert_eq!(SlotId::key_slots().count(), 24);
        assert_eq!("retired1".parse::<SlotId>().unwrap(), SlotId::Retired(0x82));
        assert_eq!("0x95".parse::<SlotId>().unwrap(), SlotId::Retired(0x95));
        assert_eq!(SlotId::Retired(0x95).certificate_object(), 0x5f_c1_20);
        for bad in ["9b", "80", "96", "zz", "", "9cc", "retired21", "retired0"] {
            assert!(
                matches!(bad.parse::<SlotId>(), Err(Error::InvalidSlot { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn algorithm_and_policy_bytes_round_trip() {
        for a in [
            Algorithm::EccP256,
            Algorithm::EccP384,
            Algorithm::Rsa2048,
            Algorithm::Ed25519,
        ] {
            assert_eq!(Algorithm::from_id(a.id()).unwrap(), a);
            assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
        }
        assert_eq!(Algorithm::EccP256.id(), 0x11);
        assert_eq!(Algorithm::EccP384.id(), 0x14);
        assert_eq!(Algorithm::Ed25519.id(), 0xe0);
        for b in 0..4 {
            assert_eq!(PinPolicy::from_byte(b).unwrap().to_byte(), b);
            assert_eq!(TouchPolicy::from_byte(b).unwrap().to_byte(), b);
        }
        assert!(PinPolicy::from_byte(4).is_err());
        assert!(TouchPolicy::from_byte(9).is_err());
        assert!("sometimes".parse::<TouchPolicy>().is_err());
    }

    #[test]
    fn card_input_checks_length_and_converts_like_ecdsa() {
        let d32 = [0xabu8; 32];
        let d48: Vec<u8> = (0..48).collect();
        assert_eq!(
            ecdsa_card_input(Algorithm::EccP256, HashAlgorithm::Sha256, &d32).unwrap(),
            d32
        );
        // Longer digest: leftmost bytes.
        assert_eq!(
            ecdsa_card_input(Algorithm::EccP256, HashAlgorithm::Sha384, &d48).unwrap(),
            d48[..32]
        );
        // Shorter digest: left-padded.
        let p = ecdsa_card_input(Algorithm::EccP384, HashAlgorithm::Sha256, &d32).unwrap();
        assert_eq!(&p[..16], &[0u8; 16]);
        assert_eq!(&p[16..], &d32);
        assert!(matches!(
            ecdsa_card_input(Algorithm::EccP256, HashAlgorithm::Sha256, &d48),
            Err(Error::BadDigestLength {
                expected: 32,
                actual: 48,
                ..
            })
        ));
        assert!(matches!(
            ecdsa_card_input(Algorithm::Rsa2048, HashAlgorithm::Sha256, &d32),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn key_id_is_sha256_of_spki_hex() {
        assert_eq!(
            key_id_of(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
