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

    /// Whether the backends in this crate can generate, import, list and
    /// attest keys of this type: every key type of the YubiKey PIV applet
    /// (whether a given token offers it depends on its firmware: the card
    /// refuses, and the refusal is [`Error::UnsupportedAlgorithm`]). Keys
    /// that can sign ([`Algorithm::can_sign`]) sign with the schemes of
    /// [`SignatureScheme`].
    pub fn is_implemented(self) -> bool {
        true
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

/// How a token key signs: the signature scheme of a [`crate::SignRequest`].
///
/// | scheme         | key types               | input                         | signature returned                 |
/// |----------------|-------------------------|-------------------------------|------------------------------------|
/// | `Ecdsa`        | P-256, P-384            | [`SignInput::Digest`]         | DER `ECDSA-Sig-Value`              |
/// | `RsaPkcs1v15`  | RSA 1024/2048/3072/4096 | [`SignInput::Digest`]         | modulus-length bytes (RFC 8017 I2OSP) |
/// | `RsaPss`       | RSA 1024/2048/3072/4096 | [`SignInput::Digest`]         | modulus-length bytes               |
/// | `Ed25519`      | Ed25519                 | [`SignInput::Message`]        | 64 bytes `R ‖ S` (RFC 8032)        |
///
/// RSA padding is done by the host, as on the device: the card only performs
/// the raw RSA operation over the modulus-length block (EMSA-PKCS1-v1_5 with
/// the hash's DigestInfo, or EMSA-PSS with MGF1 over the same hash and a salt
/// as long as the hash, see [`crate::piv::sign_input`]). Ed25519 is
/// PureEdDSA: the card signs the message itself; there is no pre-hash rule
/// (Ed25519ph is not offered by the YubiKey), so the message must fit one
/// command ([`ED25519_MAX_MESSAGE`]). X25519 keys cannot sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    /// ECDSA over a digest (P-256, P-384).
    Ecdsa,
    /// RSASSA-PKCS1-v1_5 over a SHA-256/384/512 digest.
    RsaPkcs1v15,
    /// RSASSA-PSS over a SHA-256/384/512 digest: MGF1 with the same hash,
    /// salt length = hash length (what TUF's `rsassa-pss-sha256` means).
    RsaPss,
    /// Ed25519 (PureEdDSA) over the message itself.
    Ed25519,
}

/// The longest message an Ed25519 key signs: the message travels in one
/// GENERAL AUTHENTICATE (YubiKey 5.7 takes command APDUs up to 3062 bytes;
/// this leaves room for the header and the 7C/82/81 template). Longer
/// messages are refused with [`Error::TooLarge`] before any card traffic.
pub const ED25519_MAX_MESSAGE: usize = 3000;

impl SignatureScheme {
    /// Every scheme.
    pub const ALL: [SignatureScheme; 4] = [
        SignatureScheme::Ecdsa,
        SignatureScheme::RsaPkcs1v15,
        SignatureScheme::RsaPss,
        SignatureScheme::Ed25519,
    ];

    /// The scheme a key of `algorithm` signs with when the caller does not
    /// name one: ECDSA for P-256/P-384, Ed25519 for Ed25519. `None` for RSA
    /// (the caller must choose PKCS#1 v1.5 or PSS) and X25519 (cannot sign).
    pub fn implied_by(algorithm: Algorithm) -> Option<SignatureScheme> {
        match algorithm {
            Algorithm::EccP256 | Algorithm::EccP384 => Some(SignatureScheme::Ecdsa),
            Algorithm::Ed25519 => Some(SignatureScheme::Ed25519),
            _ => None,
        }
    }

    /// Whether a key of `algorithm` can sign with this scheme.
    pub fn fits(self, algorithm: Algorithm) -> bool {
        match self {
            SignatureScheme::Ecdsa => algorithm.ecdsa_field_len().is_some(),
            SignatureScheme::RsaPkcs1v15 | SignatureScheme::RsaPss => algorithm.is_rsa(),
            SignatureScheme::Ed25519 => algorithm == Algorithm::Ed25519,
        }
    }

    /// Whether the scheme signs the message itself (Ed25519) rather than a
    /// digest the caller made.
    pub fn signs_message(self) -> bool {
        self == SignatureScheme::Ed25519
    }

    /// Check that a key of `algorithm` (in `slot`) can sign `input` with
    /// this scheme: the key can sign at all ([`Error::KeyCannotSign`]), the
    /// scheme fits the key ([`Error::SchemeMismatch`]), the input is a digest
    /// or a message as the scheme needs ([`Error::DigestExpected`],
    /// [`Error::MessageExpected`]), a digest's length matches its hash
    /// ([`Error::BadDigestLength`]), a message fits ([`Error::TooLarge`]) and
    /// is not empty ([`Error::BadCommandData`]), and
    /// for RSA the padded digest fits the modulus ([`Error::HashTooLongForKey`]).
    /// Every backend runs it before any card traffic.
    pub fn check(self, slot: SlotId, algorithm: Algorithm, input: &SignInput<'_>) -> Result<()> {
        if !algorithm.can_sign() {
            return Err(Error::KeyCannotSign { slot, algorithm });
        }
        if !self.fits(algorithm) {
            return Err(Error::SchemeMismatch {
                scheme: self,
                algorithm,
            });
        }
        match (self.signs_message(), input) {
            (true, SignInput::Digest { .. }) => Err(Error::MessageExpected { scheme: self }),
            (false, SignInput::Message(_)) => Err(Error::DigestExpected { scheme: self }),
            (true, SignInput::Message(m)) => {
                if m.is_empty() {
                    // The card refuses it (6A80); say why before sending it.
                    Err(Error::BadCommandData {
                        reason: "an empty message: Ed25519 on a YubiKey signs 1 to 3000 bytes"
                            .into(),
                    })
                } else if m.len() > ED25519_MAX_MESSAGE {
                    Err(Error::TooLarge {
                        what: "Ed25519 message",
                        size: m.len(),
                        limit: ED25519_MAX_MESSAGE,
                    })
                } else {
                    Ok(())
                }
            }
            (false, SignInput::Digest { hash, digest }) => {
                if digest.len() != hash.digest_len() {
                    return Err(Error::BadDigestLength {
                        hash: *hash,
                        expected: hash.digest_len(),
                        actual: digest.len(),
                    });
                }
                if let Some(bits) = algorithm.rsa_bits() {
                    let k = bits / 8;
                    let needed = match self {
                        // DigestInfo (19-byte prefix for SHA-2) + 11.
                        SignatureScheme::RsaPkcs1v15 => hash.digest_len() + 19 + 11,
                        // emLen >= hLen + sLen + 2, sLen = hLen.
                        _ => 2 * hash.digest_len() + 2,
                    };
                    if needed > k {
                        return Err(Error::HashTooLongForKey {
                            scheme: self,
                            hash: *hash,
                            algorithm,
                        });
                    }
                }
                Ok(())
            }
        }
    }

    /// Textual name (`ecdsa`, `rsa-pkcs1v15`, `rsa-pss`, `ed25519`).
    pub fn name(self) -> &'static str {
        match self {
            SignatureScheme::Ecdsa => "ecdsa",
            SignatureScheme::RsaPkcs1v15 => "rsa-pkcs1v15",
            SignatureScheme::RsaPss => "rsa-pss",
            SignatureScheme::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SignatureScheme {
    type Err = Error;
    fn from_str(s: &str) -> Result<SignatureScheme> {
        Ok(
            match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
                "ecdsa" => SignatureScheme::Ecdsa,
                "rsa-pkcs1v15" | "pkcs1v15" | "pkcs1" | "rsa-pkcs1" | "rsassa-pkcs1-v1-5" => {
                    SignatureScheme::RsaPkcs1v15
                }
                "rsa-pss" | "pss" | "rsassa-pss" => SignatureScheme::RsaPss,
                "ed25519" | "eddsa" => SignatureScheme::Ed25519,
                _ => {
                    return Err(Error::UnsupportedScheme {
                        scheme: s.to_string(),
                    });
                }
            },
        )
    }
}

/// What a [`crate::SignRequest`] signs: a digest the caller computed, or
/// the message itself. ECDSA and RSA sign a digest; Ed25519 signs the
/// message (see [`SignatureScheme`]). A token never hashes for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInput<'a> {
    /// A digest of the message made with `hash`; its length must be the
    /// hash's output length.
    Digest {
        /// The hash that produced `digest`.
        hash: HashAlgorithm,
        /// The digest.
        digest: &'a [u8],
    },
    /// The message itself (Ed25519), at most [`ED25519_MAX_MESSAGE`] bytes.
    Message(&'a [u8]),
}

impl SignInput<'_> {
    /// The hash, for a digest.
    pub fn hash(&self) -> Option<HashAlgorithm> {
        match self {
            SignInput::Digest { hash, .. } => Some(*hash),
            SignInput::Message(_) => None,
        }
    }

    /// The bytes: the digest or the message.
    pub fn bytes(&self) -> &[u8] {
        match self {
            SignInput::Digest { digest, .. } => digest,
            SignInput::Message(m) => m,
        }
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

/// Object identifiers of the SubjectPublicKeyInfo algorithms a PIV key has.
mod spki_oid {
    use const_oid::ObjectIdentifier;
    pub const RSA_ENCRYPTION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    pub const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    pub const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    pub const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
    pub const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
    pub const X25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
}

fn bad_key(algorithm: &str, e: impl fmt::Display) -> Error {
    Error::Crypto {
        reason: format!("unusable {algorithm} public key: {e}"),
    }
}

impl PublicKey {
    /// A public key from a DER SubjectPublicKeyInfo, its algorithm read from
    /// it: P-256/P-384 (id-ecPublicKey with the named curve), RSA with a
    /// 1024/2048/3072/4096-bit modulus, Ed25519, X25519. Anything else is
    /// [`Error::UnsupportedAlgorithm`]; a malformed key is [`Error::Crypto`].
    /// The key is decoded in full (point on the curve, RSA modulus odd).
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey> {
        use der::Decode;
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| bad_key("SubjectPublicKeyInfo", e))?;
        let oid = spki.algorithm.oid;
        let algorithm = if oid == spki_oid::EC_PUBLIC_KEY {
            let curve: const_oid::ObjectIdentifier = spki
                .algorithm
                .parameters
                .ok_or_else(|| bad_key("EC", "no named curve"))?
                .decode_as()
                .map_err(|e| bad_key("EC", e))?;
            match curve {
                c if c == spki_oid::SECP256R1 => Algorithm::EccP256,
                c if c == spki_oid::SECP384R1 => Algorithm::EccP384,
                c => {
                    return Err(Error::UnsupportedAlgorithm {
                        algorithm: format!("EC curve {c}"),
                    });
                }
            }
        } else if oid == spki_oid::RSA_ENCRYPTION {
            use rsa::traits::PublicKeyParts;
            use spki::DecodePublicKey;
            let key = rsa::RsaPublicKey::from_public_key_der(der).map_err(|e| bad_key("RSA", e))?;
            match key.n().bits_vartime() {
                1024 => Algorithm::Rsa1024,
                2048 => Algorithm::Rsa2048,
                3072 => Algorithm::Rsa3072,
                4096 => Algorithm::Rsa4096,
                bits => {
                    return Err(Error::UnsupportedAlgorithm {
                        algorithm: format!("RSA with a {bits}-bit modulus"),
                    });
                }
            }
        } else if oid == spki_oid::ED25519 {
            Algorithm::Ed25519
        } else if oid == spki_oid::X25519 {
            Algorithm::X25519
        } else {
            return Err(Error::UnsupportedAlgorithm {
                algorithm: format!("public key algorithm {oid}"),
            });
        };
        let key = PublicKey {
            algorithm,
            spki_der: der.to_vec(),
        };
        key.check_decodes()?;
        Ok(key)
    }

    /// Decode the key in full (an error says why it is unusable).
    fn check_decodes(&self) -> Result<()> {
        use spki::DecodePublicKey;
        match self.algorithm {
            Algorithm::EccP256 => p256::PublicKey::from_public_key_der(&self.spki_der)
                .map(drop)
                .map_err(|e| bad_key("P-256", e)),
            Algorithm::EccP384 => p384::PublicKey::from_public_key_der(&self.spki_der)
                .map(drop)
                .map_err(|e| bad_key("P-384", e)),
            a if a.is_rsa() => self.rsa_key().map(drop),
            Algorithm::Ed25519 => self.ed25519_key().map(drop),
            _ => self.x25519_bytes().map(drop),
        }
    }

    /// An RSA public key from its modulus and public exponent (big-endian,
    /// as the PIV public key template's tags 81 and 82 carry them). The
    /// modulus must be 1024, 2048, 3072 or 4096 bits.
    pub fn from_rsa_components(modulus: &[u8], exponent: &[u8]) -> Result<PublicKey> {
        use spki::EncodePublicKey;
        let n = rsa::BoxedUint::from_be_slice_vartime(modulus);
        let e = rsa::BoxedUint::from_be_slice_vartime(exponent);
        let key = rsa::RsaPublicKey::new(n, e).map_err(|e| bad_key("RSA", e))?;
        let der = key.to_public_key_der().map_err(|e| bad_key("RSA", e))?;
        let public = PublicKey::from_spki_der(der.as_bytes())?;
        Ok(public)
    }

    /// An Ed25519 public key from its 32 bytes (RFC 8032 encoding; PIV tag 86).
    pub fn from_ed25519_bytes(bytes: &[u8]) -> Result<PublicKey> {
        use spki::EncodePublicKey;
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad_key("Ed25519", format!("{} bytes, not 32", bytes.len())))?;
        let vk =
            ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|e| bad_key("Ed25519", e))?;
        let der = vk.to_public_key_der().map_err(|e| bad_key("Ed25519", e))?;
        Ok(PublicKey {
            algorithm: Algorithm::Ed25519,
            spki_der: der.as_bytes().to_vec(),
        })
    }

    /// An X25519 public key from its 32 bytes (RFC 7748 u-coordinate; PIV tag 86).
    pub fn from_x25519_bytes(bytes: &[u8]) -> Result<PublicKey> {
        use der::Encode;
        if bytes.len() != 32 {
            return Err(bad_key("X25519", format!("{} bytes, not 32", bytes.len())));
        }
        let spki = spki::SubjectPublicKeyInfoRef {
            algorithm: spki::AlgorithmIdentifierRef {
                oid: spki_oid::X25519,
                parameters: None,
            },
            subject_public_key: der::asn1::BitStringRef::from_bytes(bytes)
                .map_err(|e| bad_key("X25519", e))?,
        };
        Ok(PublicKey {
            algorithm: Algorithm::X25519,
            spki_der: spki.to_der().map_err(|e| bad_key("X25519", e))?,
        })
    }

    /// The RSA key (RSA algorithms only).
    pub fn rsa_key(&self) -> Result<rsa::RsaPublicKey> {
        use rsa::traits::PublicKeyParts;
        use spki::DecodePublicKey;
        let bits = self
            .algorithm
            .rsa_bits()
            .ok_or(Error::UnsupportedAlgorithm {
                algorithm: self.algorithm.to_string(),
            })?;
        let key = rsa::RsaPublicKey::from_public_key_der(&self.spki_der)
            .map_err(|e| bad_key("RSA", e))?;
        if key.n().bits_vartime() as usize != bits {
            return Err(bad_key(
                self.algorithm.name(),
                format!("the modulus has {} bits", key.n().bits_vartime()),
            ));
        }
        Ok(key)
    }

    /// The Ed25519 verifying key (Ed25519 only).
    pub fn ed25519_key(&self) -> Result<ed25519_dalek::VerifyingKey> {
        use spki::DecodePublicKey;
        if self.algorithm != Algorithm::Ed25519 {
            return Err(Error::UnsupportedAlgorithm {
                algorithm: self.algorithm.to_string(),
            });
        }
        ed25519_dalek::VerifyingKey::from_public_key_der(&self.spki_der)
            .map_err(|e| bad_key("Ed25519", e))
    }

    /// The raw 32 public key bytes of an Ed25519 or X25519 key (what TUF's
    /// `ed25519` keys and the PIV tag 86 carry).
    pub fn curve25519_bytes(&self) -> Result<[u8; 32]> {
        match self.algorithm {
            Algorithm::Ed25519 => Ok(self.ed25519_key()?.to_bytes()),
            Algorithm::X25519 => self.x25519_bytes(),
            other => Err(Error::UnsupportedAlgorithm {
                algorithm: other.to_string(),
            }),
        }
    }

    fn x25519_bytes(&self) -> Result<[u8; 32]> {
        use der::Decode;
        let spki = spki::SubjectPublicKeyInfoRef::from_der(&self.spki_der)
            .map_err(|e| bad_key("X25519", e))?;
        if spki.algorithm.oid != spki_oid::X25519 || spki.algorithm.parameters.is_some() {
            return Err(bad_key("X25519", "not an X25519 SubjectPublicKeyInfo"));
        }
        spki.subject_public_key
            .as_bytes()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| bad_key("X25519", "the key is not 32 bytes"))
    }

    /// Verify a signature made with `scheme` over `input` (a digest or the
    /// message, see [`SignatureScheme`]) with this key, independently of the
    /// token: ECDSA with p256/p384 (DER signature), RSA with the `rsa` crate's
    /// PKCS#1 v1.5 and PSS verifiers (salt length = hash length, MGF1 with
    /// the same hash), Ed25519 with `ed25519-dalek`'s strict verification.
    /// The scheme and input are checked first ([`SignatureScheme::check`]);
    /// a signature that does not verify is [`Error::Crypto`].
    pub fn verify(
        &self,
        scheme: SignatureScheme,
        input: &SignInput<'_>,
        signature: &[u8],
    ) -> Result<()> {
        scheme.check(SlotId::Signature, self.algorithm, input)?;
        let fails = || Error::Crypto {
            reason: "signature does not verify".into(),
        };
        match (scheme, input) {
            (SignatureScheme::Ecdsa, SignInput::Digest { hash, digest }) => {
                let card_input = ecdsa_card_input(self.algorithm, *hash, digest)?;
                self.verify_prehash(&card_input, signature).map(drop)
            }
            (
                SignatureScheme::RsaPkcs1v15 | SignatureScheme::RsaPss,
                SignInput::Digest { hash, digest },
            ) => {
                let key = self.rsa_key()?;
                let k = self.algorithm.rsa_bits().unwrap_or(0) / 8;
                if signature.len() != k {
                    return Err(Error::Crypto {
                        reason: format!(
                            "an {} signature is {k} bytes, got {}",
                            self.algorithm,
                            signature.len()
                        ),
                    });
                }
                let result = match (scheme, hash) {
                    (SignatureScheme::RsaPss, HashAlgorithm::Sha256) => key.verify(
                        rsa::Pss::<sha2::Sha256>::new_with_salt(32),
                        digest,
                        signature,
                    ),
                    (SignatureScheme::RsaPss, HashAlgorithm::Sha384) => key.verify(
                        rsa::Pss::<sha2::Sha384>::new_with_salt(48),
                        digest,
                        signature,
                    ),
                    (SignatureScheme::RsaPss, HashAlgorithm::Sha512) => key.verify(
                        rsa::Pss::<sha2::Sha512>::new_with_salt(64),
                        digest,
                        signature,
                    ),
                    (_, HashAlgorithm::Sha256) => {
                        key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), digest, signature)
                    }
                    (_, HashAlgorithm::Sha384) => {
                        key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha384>(), digest, signature)
                    }
                    (_, HashAlgorithm::Sha512) => {
                        key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha512>(), digest, signature)
                    }
                };
                result.map_err(|_| fails())
            }
            (SignatureScheme::Ed25519, SignInput::Message(message)) => {
                let key = self.ed25519_key()?;
                let sig =
                    ed25519_dalek::Signature::from_slice(signature).map_err(|_| Error::Crypto {
                        reason: format!(
                            "an Ed25519 signature is 64 bytes, got {}",
                            signature.len()
                        ),
                    })?;
                key.verify_strict(message, &sig).map_err(|_| fails())
            }
            // `check` refused every other combination.
            _ => Err(Error::SchemeMismatch {
                scheme,
                algorithm: self.algorithm,
            }),
        }
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
    fn schemes_round_trip_and_fit_their_keys() {
        for scheme in SignatureScheme::ALL {
            assert_eq!(scheme.name().parse::<SignatureScheme>().unwrap(), scheme);
            let json = serde_json::to_string(&scheme).unwrap();
            assert_eq!(json, format!("\"{}\"", scheme.name()));
        }
        assert!(matches!(
            "rsa-oaep".parse::<SignatureScheme>(),
            Err(Error::UnsupportedScheme { .. })
        ));
        let fitting: Vec<(Algorithm, Vec<SignatureScheme>)> = Algorithm::ALL
            .iter()
            .map(|&a| {
                (
                    a,
                    SignatureScheme::ALL
                        .into_iter()
                        .filter(|s| s.fits(a))
                        .collect(),
                )
            })
            .collect();
        for (a, schemes) in fitting {
            match a {
                Algorithm::EccP256 | Algorithm::EccP384 => {
                    assert_eq!(schemes, [SignatureScheme::Ecdsa])
                }
                Algorithm::Ed25519 => assert_eq!(schemes, [SignatureScheme::Ed25519]),
                Algorithm::X25519 => assert!(schemes.is_empty()),
                _ => assert_eq!(
                    schemes,
                    [SignatureScheme::RsaPkcs1v15, SignatureScheme::RsaPss]
                ),
            }
            assert_eq!(
                SignatureScheme::implied_by(a),
                match a {
                    Algorithm::EccP256 | Algorithm::EccP384 => Some(SignatureScheme::Ecdsa),
                    Algorithm::Ed25519 => Some(SignatureScheme::Ed25519),
                    _ => None,
                }
            );
        }
        // PKCS#1 v1.5 with SHA-512 fits RSA-1024 (83 + 11 <= 128); PSS does not.
        let d = [0u8; 64];
        let sha512 = SignInput::Digest {
            hash: HashAlgorithm::Sha512,
            digest: &d,
        };
        let slot = SlotId::Signature;
        assert!(
            SignatureScheme::RsaPkcs1v15
                .check(slot, Algorithm::Rsa1024, &sha512)
                .is_ok()
        );
        assert!(matches!(
            SignatureScheme::RsaPss.check(slot, Algorithm::Rsa1024, &sha512),
            Err(Error::HashTooLongForKey { .. })
        ));
        assert!(
            SignatureScheme::RsaPss
                .check(slot, Algorithm::Rsa2048, &sha512)
                .is_ok()
        );
    }

    #[test]
    fn key_id_is_sha256_of_spki_hex() {
        assert_eq!(
            key_id_of(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
