//! The emulator's software ECDSA keys (slot keys and the f9 attestation key).
//!
//! The private scalar lives in the `p256`/`p384` signing key, which zeroizes
//! it on drop; it leaves this type only through [`SoftKey::scalar_bytes`]
//! (zeroizing), which the state file uses to persist it.

use p256::pkcs8::EncodePublicKey;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::{Algorithm, PublicKey};

/// A software ECDSA private key on one of the implemented curves.
#[derive(Clone)]
pub(crate) enum SoftKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

impl std::fmt::Debug for SoftKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SoftKey({}, ***)", self.algorithm())
    }
}

/// Fill `buf` from the operating system's CSPRNG.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Crypto {
        reason: format!("the system random number generator failed: {e}"),
    })
}

fn unsupported(algorithm: Algorithm) -> Error {
    Error::UnsupportedAlgorithm {
        algorithm: algorithm.to_string(),
    }
}

impl SoftKey {
    /// A fresh random key.
    pub(crate) fn generate(algorithm: Algorithm) -> Result<SoftKey> {
        let len = algorithm
            .ecdsa_field_len()
            .ok_or_else(|| unsupported(algorithm))?;
        // Rejection sampling: a random field-length string is a valid scalar
        // except with negligible probability (zero or >= the group order).
        for _ in 0..64 {
            let mut scalar = Zeroizing::new(vec![0u8; len]);
            random_bytes(&mut scalar)?;
            if let Ok(key) = SoftKey::from_scalar(algorithm, &scalar) {
                return Ok(key);
            }
        }
        Err(Error::Crypto {
            reason: "could not draw a valid private scalar".into(),
        })
    }

    /// A key from its big-endian private scalar (field length).
    pub(crate) fn from_scalar(algorithm: Algorithm, scalar: &[u8]) -> Result<SoftKey> {
        let invalid = || Error::Crypto {
            reason: format!("invalid {algorithm} private key"),
        };
        match algorithm {
            Algorithm::EccP256 => {
                if scalar.len() != 32 {
                    return Err(invalid());
                }
                p256::ecdsa::SigningKey::from_slice(scalar)
                    .map(SoftKey::P256)
                    .map_err(|_| invalid())
            }
            Algorithm::EccP384 => {
                if scalar.len() != 48 {
                    return Err(invalid());
                }
                p384::ecdsa::SigningKey::from_slice(scalar)
                    .map(SoftKey::P384)
                    .map_err(|_| invalid())
            }
            other => Err(unsupported(other)),
        }
    }

    /// The curve.
    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            SoftKey::P256(_) => Algorithm::EccP256,
            SoftKey::P384(_) => Algorithm::EccP384,
        }
    }

    /// The private scalar, big-endian (for the state file only).
    pub(crate) fn scalar_bytes(&self) -> Zeroizing<Vec<u8>> {
        use zeroize::Zeroize;
        match self {
            SoftKey::P256(k) => {
                let mut bytes = k.to_bytes();
                let out = Zeroizing::new(bytes.to_vec());
                bytes.zeroize();
                out
            }
            SoftKey::P384(k) => {
                let mut bytes = k.to_bytes();
                let out = Zeroizing::new(bytes.to_vec());
                bytes.zeroize();
                out
            }
        }
    }

    /// The public key as a SubjectPublicKeyInfo.
    pub(crate) fn public_key(&self) -> Result<PublicKey> {
        let der = match self {
            SoftKey::P256(k) => k.verifying_key().to_public_key_der(),
            SoftKey::P384(k) => k.verifying_key().to_public_key_der(),
        }
        .map_err(|e| Error::Crypto {
            reason: format!("cannot encode public key: {e}"),
        })?;
        Ok(PublicKey {
            algorithm: self.algorithm(),
            spki_der: der.as_bytes().to_vec(),
        })
    }

    /// The uncompressed SEC1 point (the value of tag 86 in GENERATE and
    /// GET METADATA responses).
    pub(crate) fn ec_point(&self) -> Vec<u8> {
        match self {
            SoftKey::P256(k) => k.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
            SoftKey::P384(k) => k.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
        }
    }

    /// ECDSA over a field-length prehash (what the card's GENERAL
    /// AUTHENTICATE receives); returns the DER signature.
    pub(crate) fn sign_prehash(&self, input: &[u8]) -> Result<Vec<u8>> {
        use signature::hazmat::PrehashSigner;
        let failed = |e: signature::Error| Error::Crypto {
            reason: format!("ECDSA signing failed: {e}"),
        };
        match self {
            SoftKey::P256(k) => {
                let sig: p256::ecdsa::DerSignature = k.sign_prehash(input).map_err(failed)?;
                Ok(sig.as_bytes().to_vec())
            }
            SoftKey::P384(k) => {
                let sig: p384::ecdsa::DerSignature = k.sign_prehash(input).map_err(failed)?;
                Ok(sig.as_bytes().to_vec())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::DecodePublicKey;
    use signature::hazmat::PrehashVerifier;

    #[test]
    fn generated_keys_sign_and_round_trip() {
        for alg in [Algorithm::EccP256, Algorithm::EccP384] {
            let key = SoftKey::generate(alg).unwrap();
            let again = SoftKey::from_scalar(alg, &key.scalar_bytes()).unwrap();
            assert_eq!(key.public_key().unwrap(), again.public_key().unwrap());
            let len = alg.ecdsa_field_len().unwrap();
            let input = vec![0x5a; len];
            let sig = key.sign_prehash(&input).unwrap();
            let spki = key.public_key().unwrap().spki_der;
            match alg {
                Algorithm::EccP256 => {
                    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
                    let sig = p256::ecdsa::DerSignature::try_from(sig.as_slice()).unwrap();
                    vk.verify_prehash(&input, &sig).unwrap();
                    assert_eq!(key.ec_point().len(), 65);
                }
                _ => {
                    let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
                    let sig = p384::ecdsa::DerSignature::try_from(sig.as_slice()).unwrap();
                    vk.verify_prehash(&input, &sig).unwrap();
                    assert_eq!(key.ec_point().len(), 97);
                }
            }
        }
        assert!(SoftKey::from_scalar(Algorithm::EccP256, &[0u8; 32]).is_err());
        assert!(SoftKey::from_scalar(Algorithm::EccP256, &[1u8; 31]).is_err());
        assert!(matches!(
            SoftKey::generate(Algorithm::Ed25519),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
        let k = SoftKey::generate(Algorithm::EccP256).unwrap();
        assert!(!format!("{k:?}").contains(&hex::encode(k.scalar_bytes().as_slice())));
    }
}
