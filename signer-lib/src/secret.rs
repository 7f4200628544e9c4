//! Secrets an operator hands to a token: PIN, PUK, management key.
//!
//! All of them are zeroized on drop, print as `***` in `Debug`, have no
//! `Display`, and are validated before anything reaches the card, so a value
//! that can never be right never costs a retry.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::piv::{PIN_PAD, mgmt_alg};

/// A PIV PIN or PUK: 6 to 8 bytes, sent padded to 8 bytes with 0xFF.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin {
    bytes: Vec<u8>,
}

/// A PUK has the same shape as a PIN.
pub type Puk = Pin;

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(***)")
    }
}

impl Pin {
    /// The factory default PIN of a YubiKey (and of the emulator).
    pub const DEFAULT_PIN: &'static [u8] = b"123456";
    /// The factory default PUK.
    pub const DEFAULT_PUK: &'static [u8] = b"12345678";

    /// Validate and wrap a PIN. `what` is "PIN" or "PUK" for error messages.
    /// Trailing newlines (from a PIN file or `echo`) are stripped.
    pub fn new(bytes: &[u8], what: &'static str) -> Result<Pin> {
        let mut end = bytes.len();
        while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        let trimmed = &bytes[..end];
        if !(6..=8).contains(&trimmed.len()) {
            return Err(Error::InvalidPin {
                what,
                reason: format!("must be 6 to 8 bytes long, got {}", trimmed.len()),
            });
        }
        if trimmed.contains(&PIN_PAD) {
            return Err(Error::InvalidPin {
                what,
                reason: "must not contain the byte 0xFF".into(),
            });
        }
        Ok(Pin {
            bytes: trimmed.to_vec(),
        })
    }

    /// A PIN from text.
    pub fn parse_pin(text: &str) -> Result<Pin> {
        Pin::new(text.as_bytes(), "PIN")
    }

    /// A PUK from text.
    pub fn parse_puk(text: &str) -> Result<Puk> {
        Pin::new(text.as_bytes(), "PUK")
    }

    /// The raw bytes (without padding).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The 8-byte 0xFF-padded form sent in VERIFY and CHANGE REFERENCE DATA.
    pub fn padded(&self) -> Zeroizing<[u8; 8]> {
        let mut out = Zeroizing::new([PIN_PAD; 8]);
        out[..self.bytes.len()].copy_from_slice(&self.bytes);
        out
    }

    /// Parse the padded 8-byte form (the emulator's side of VERIFY). Returns
    /// `None` when the block is not a valid padded PIN.
    pub fn from_padded(block: &[u8], what: &'static str) -> Option<Pin> {
        if block.len() != 8 {
            return None;
        }
        let len = block.iter().position(|&b| b == PIN_PAD).unwrap_or(8);
        if block[len..].iter().any(|&b| b != PIN_PAD) {
            return None;
        }
        Pin::new(&block[..len], what).ok()
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Pin) -> bool {
        self.padded().ct_eq(&*other.padded()).into()
    }
}

/// Management key algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagementKeyAlgorithm {
    /// Three-key triple DES (24 bytes): the default before firmware 5.7.
    Tdes,
    /// AES-128 (16 bytes).
    Aes128,
    /// AES-192 (24 bytes): the default from firmware 5.7.
    Aes192,
    /// AES-256 (32 bytes).
    Aes256,
}

impl ManagementKeyAlgorithm {
    /// The algorithm id byte (P1 of GENERAL AUTHENTICATE on key 9B).
    pub fn id(self) -> u8 {
        match self {
            ManagementKeyAlgorithm::Tdes => mgmt_alg::TDES,
            ManagementKeyAlgorithm::Aes128 => mgmt_alg::AES128,
            ManagementKeyAlgorithm::Aes192 => mgmt_alg::AES192,
            ManagementKeyAlgorithm::Aes256 => mgmt_alg::AES256,
        }
    }

    /// Parse the id byte.
    pub fn from_id(id: u8) -> Result<ManagementKeyAlgorithm> {
        Ok(match id {
            mgmt_alg::TDES => ManagementKeyAlgorithm::Tdes,
            mgmt_alg::AES128 => ManagementKeyAlgorithm::Aes128,
            mgmt_alg::AES192 => ManagementKeyAlgorithm::Aes192,
            mgmt_alg::AES256 => ManagementKeyAlgorithm::Aes256,
            _ => {
                return Err(Error::InvalidManagementKey {
                    reason: format!("unknown management key algorithm 0x{id:02x}"),
                });
            }
        })
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            ManagementKeyAlgorithm::Aes128 => 16,
            ManagementKeyAlgorithm::Tdes | ManagementKeyAlgorithm::Aes192 => 24,
            ManagementKeyAlgorithm::Aes256 => 32,
        }
    }

    /// Cipher block length in bytes (the challenge length).
    pub fn block_len(self) -> usize {
        match self {
            ManagementKeyAlgorithm::Tdes => 8,
            _ => 16,
        }
    }

    /// Textual name.
    pub fn name(self) -> &'static str {
        match self {
            ManagementKeyAlgorithm::Tdes => "tdes",
            ManagementKeyAlgorithm::Aes128 => "aes128",
            ManagementKeyAlgorithm::Aes192 => "aes192",
            ManagementKeyAlgorithm::Aes256 => "aes256",
        }
    }
}

impl std::str::FromStr for ManagementKeyAlgorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "tdes" | "3des" | "des3" => ManagementKeyAlgorithm::Tdes,
            "aes128" => ManagementKeyAlgorithm::Aes128,
            "aes192" => ManagementKeyAlgorithm::Aes192,
            "aes256" => ManagementKeyAlgorithm::Aes256,
            _ => {
                return Err(Error::InvalidManagementKey {
                    reason: format!("unknown management key algorithm {s:?}"),
                });
            }
        })
    }
}

impl fmt::Display for ManagementKeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A card management key (key reference 9B).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ManagementKey {
    #[zeroize(skip)]
    algorithm: ManagementKeyAlgorithm,
    key: Vec<u8>,
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManagementKey({}, ***)", self.algorithm)
    }
}

impl ManagementKey {
    /// The factory default key bytes: 0102030405060708 three times (used as
    /// 3DES before firmware 5.7 and as AES-192 from 5.7).
    pub const DEFAULT_BYTES: [u8; 24] = [
        1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
    ];

    /// Wrap key bytes, checking the length against the algorithm.
    pub fn new(algorithm: ManagementKeyAlgorithm, key: &[u8]) -> Result<ManagementKey> {
        if key.len() != algorithm.key_len() {
            return Err(Error::InvalidManagementKey {
                reason: format!(
                    "{} keys are {} bytes ({} hex digits), got {} bytes",
                    algorithm,
                    algorithm.key_len(),
                    algorithm.key_len() * 2,
                    key.len()
                ),
            });
        }
        Ok(ManagementKey {
            algorithm,
            key: key.to_vec(),
        })
    }

    /// Parse hex (whitespace and a trailing newline tolerated).
    pub fn from_hex(algorithm: ManagementKeyAlgorithm, text: &str) -> Result<ManagementKey> {
        let cleaned: Zeroizing<String> =
            Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
        let bytes = Zeroizing::new(hex::decode(cleaned.as_str()).map_err(|_| {
            Error::InvalidManagementKey {
                reason: "not a hexadecimal string".into(),
            }
        })?);
        ManagementKey::new(algorithm, &bytes)
    }

    /// The factory default key for the given algorithm (3DES or AES-192).
    pub fn default_for(algorithm: ManagementKeyAlgorithm) -> Result<ManagementKey> {
        ManagementKey::new(algorithm, &Self::DEFAULT_BYTES)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> ManagementKeyAlgorithm {
        self.algorithm
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.key
    }

    /// Whether this is the publicly known factory default key.
    pub fn is_default(&self) -> bool {
        self.key.ct_eq(&Self::DEFAULT_BYTES).into()
    }

    /// Constant-time equality of algorithm and key.
    pub fn ct_eq(&self, other: &ManagementKey) -> bool {
        self.algorithm == other.algorithm && bool::from(self.key.ct_eq(&other.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_validated_and_padded() {
        let p = Pin::parse_pin("123456\n").unwrap();
        assert_eq!(&*p.padded(), b"123456\xff\xff");
        assert!(Pin::parse_pin("12345").is_err());
        assert!(Pin::parse_pin("123456789").is_err());
        assert_eq!(
            Pin::from_padded(b"123456\xff\xff", "PIN")
                .unwrap()
                .as_bytes(),
            b"123456"
        );
        assert!(Pin::from_padded(b"123\xff456\xff", "PIN").is_none());
        assert!(Pin::from_padded(b"12\xff\xff\xff\xff\xff\xff", "PIN").is_none());
        assert!(
            Pin::parse_pin("123456")
                .unwrap()
                .ct_eq(&Pin::parse_pin("123456").unwrap())
        );
        assert!(
            !Pin::parse_pin("123456")
                .unwrap()
                .ct_eq(&Pin::parse_pin("1234567").unwrap())
        );
        assert_eq!(format!("{p:?}"), "Pin(***)");
    }

    #[test]
    fn management_keys_check_length() {
        let k = ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap();
        assert!(k.is_default());
        assert!(ManagementKey::from_hex(ManagementKeyAlgorithm::Aes128, "0102").is_err());
        assert!(ManagementKey::from_hex(ManagementKeyAlgorithm::Aes128, "zz").is_err());
        let h = "00112233445566778899aabbccddeeff";
        let k = ManagementKey::from_hex(ManagementKeyAlgorithm::Aes128, h).unwrap();
        assert!(!k.is_default());
        assert!(!format!("{k:?}").contains("00112233"));
        for a in ["tdes", "aes128", "aes192", "aes256"] {
            let alg: ManagementKeyAlgorithm = a.parse().unwrap();
            assert_eq!(ManagementKeyAlgorithm::from_id(alg.id()).unwrap(), alg);
        }
    }
}
