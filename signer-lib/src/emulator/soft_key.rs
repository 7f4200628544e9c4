//! The emulator's software private keys: every key type of the YubiKey 5.7
//! PIV applet (ECDSA P-256/P-384, RSA 1024/2048/3072/4096, Ed25519, X25519)
//! for the slot keys, and the f9 attestation key.
//!
//! All arithmetic is RustCrypto's (`p256`/`p384`, `rsa`, `ed25519-dalek`,
//! `x25519-dalek`); every private key type zeroizes itself on drop. Private
//! material leaves this type only through [`SoftKey::private_bytes`]
//! (zeroizing), which the state file uses to persist it.

use p256::pkcs8::EncodePublicKey;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use zeroize::{Zeroize, Zeroizing};

use super::p256_key::P256Key;
use crate::error::{Error, Result};
use crate::model::{Algorithm, PublicKey};
use crate::piv::tlv;

/// The public exponent of every RSA key a YubiKey generates or imports.
pub(crate) const RSA_EXPONENT: u32 = 65537;

/// Tags inside the public key template (7F49) and GET METADATA's tag 04.
const TAG_RSA_MODULUS: u32 = 0x81;
const TAG_RSA_EXPONENT: u32 = 0x82;
const TAG_POINT: u32 = 0x86;

/// A software private key of one of the PIV key types.
#[derive(Clone)]
pub(crate) enum SoftKey {
    P256(P256Key),
    P384(p384::ecdsa::SigningKey),
    /// RSA with e = 65537; the modulus has exactly the algorithm's bit length.
    Rsa(Algorithm, Box<rsa::RsaPrivateKey>),
    Ed25519(ed25519_dalek::SigningKey),
    X25519(x25519_dalek::StaticSecret),
}

impl std::fmt::Debug for SoftKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SoftKey({}, ***)", self.algorithm())
    }
}

/// The five CRT components of an RSA private key, as IMPORT ASYMMETRIC KEY
/// sends them (tags 01..05, big-endian): p, q, d mod (p-1), d mod (q-1),
/// q^-1 mod p. Zeroized on drop.
#[derive(Zeroize)]
#[zeroize(drop)]
pub struct RsaComponents {
    /// The first prime.
    pub p: Vec<u8>,
    /// The second prime.
    pub q: Vec<u8>,
    /// d mod (p - 1).
    pub dp: Vec<u8>,
    /// d mod (q - 1).
    pub dq: Vec<u8>,
    /// q^-1 mod p.
    pub qinv: Vec<u8>,
}

impl std::fmt::Debug for RsaComponents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaComponents(***)")
    }
}

/// Fill `buf` from the operating system's CSPRNG.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Crypto {
        reason: format!("the system random number generator failed: {e}"),
    })
}

/// The operating system's CSPRNG as a `rand_core` RNG (panics only if the
/// OS generator fails, which `getrandom` treats as unrecoverable).
fn os_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

fn unsupported(algorithm: Algorithm) -> Error {
    Error::UnsupportedAlgorithm {
        algorithm: algorithm.to_string(),
    }
}

fn crypto(reason: impl Into<String>) -> Error {
    Error::Crypto {
        reason: reason.into(),
    }
}

/// Strip leading zero bytes (minimal big-endian integer; at least one byte).
fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    &bytes[first..]
}

/// `value` as exactly `len` big-endian bytes (left-padded; `None` if longer).
fn fixed_len(value: &[u8], len: usize) -> Option<Zeroizing<Vec<u8>>> {
    let value = trim_leading_zeros(value);
    if value.len() > len {
        return None;
    }
    let mut out = Zeroizing::new(vec![0u8; len]);
    out[len - value.len()..].copy_from_slice(value);
    Some(out)
}

/// The big-endian bytes of a secret integer; the intermediate buffer is
/// zeroized.
fn secret_be_bytes(value: &rsa::BoxedUint, trimmed: bool) -> Zeroizing<Vec<u8>> {
    let mut boxed = if trimmed {
        value.to_be_bytes_trimmed_vartime()
    } else {
        value.to_be_bytes()
    };
    let out = Zeroizing::new(boxed.to_vec());
    boxed.zeroize();
    out
}

fn boxed_uint(bytes: &[u8]) -> rsa::BoxedUint {
    rsa::BoxedUint::from_be_slice_vartime(bytes)
}

impl SoftKey {
    /// A fresh random key. RSA generation takes seconds (RSA-4096: tens of
    /// seconds unoptimised), as on the device.
    pub(crate) fn generate(algorithm: Algorithm) -> Result<SoftKey> {
        match algorithm {
            Algorithm::EccP256 | Algorithm::EccP384 => Self::generate_ec(algorithm),
            Algorithm::Rsa1024 | Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096 => {
                let bits = algorithm.rsa_bits().ok_or_else(|| unsupported(algorithm))?;
                let key = rsa::RsaPrivateKey::new_with_exp(
                    &mut os_rng(),
                    bits,
                    rsa::BoxedUint::from(u64::from(RSA_EXPONENT)),
                )
                .map_err(|e| crypto(format!("RSA-{bits} key generation failed: {e}")))?;
                Self::rsa(algorithm, key)
            }
            Algorithm::Ed25519 => {
                let mut seed = Zeroizing::new([0u8; 32]);
                random_bytes(&mut seed[..])?;
                Ok(SoftKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                    &seed,
                )))
            }
            Algorithm::X25519 => {
                let mut secret = Zeroizing::new([0u8; 32]);
                random_bytes(&mut secret[..])?;
                Ok(SoftKey::X25519(x25519_dalek::StaticSecret::from(*secret)))
            }
        }
    }

    fn generate_ec(algorithm: Algorithm) -> Result<SoftKey> {
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
        Err(crypto("could not draw a valid private scalar"))
    }

    /// Wrap an RSA key after checking it is what a YubiKey holds: the
    /// algorithm's modulus length and e = 65537.
    fn rsa(algorithm: Algorithm, key: rsa::RsaPrivateKey) -> Result<SoftKey> {
        let bits = algorithm.rsa_bits().ok_or_else(|| unsupported(algorithm))?;
        if key.n().as_ref().bits() as usize != bits {
            return Err(crypto(format!(
                "the modulus has {} bits, not {bits}",
                key.n().as_ref().bits()
            )));
        }
        if *key.e() != rsa::BoxedUint::from(u64::from(RSA_EXPONENT)) {
            return Err(crypto("the public exponent is not 65537"));
        }
        Ok(SoftKey::Rsa(algorithm, Box::new(key)))
    }

    /// A key from its raw private value: the big-endian scalar (field
    /// length) for P-256/P-384, the 32-byte seed for Ed25519, the 32-byte
    /// secret for X25519. RSA keys come from [`SoftKey::from_rsa_components`]
    /// or [`SoftKey::from_private_bytes`].
    pub(crate) fn from_scalar(algorithm: Algorithm, scalar: &[u8]) -> Result<SoftKey> {
        let invalid = || crypto(format!("invalid {algorithm} private key"));
        match algorithm {
            // P256Key checks the length (32 bytes) itself.
            Algorithm::EccP256 => P256Key::from_slice(scalar)
                .map(SoftKey::P256)
                .ok_or_else(invalid),
            Algorithm::EccP384 => {
                if scalar.len() != 48 {
                    return Err(invalid());
                }
                p384::ecdsa::SigningKey::from_slice(scalar)
                    .map(SoftKey::P384)
                    .map_err(|_| invalid())
            }
            Algorithm::Ed25519 => {
                let seed: Zeroizing<[u8; 32]> =
                    Zeroizing::new(scalar.try_into().map_err(|_| invalid())?);
                Ok(SoftKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                    &seed,
                )))
            }
            Algorithm::X25519 => {
                let secret: Zeroizing<[u8; 32]> =
                    Zeroizing::new(scalar.try_into().map_err(|_| invalid())?);
                Ok(SoftKey::X25519(x25519_dalek::StaticSecret::from(*secret)))
            }
            other => Err(unsupported(other)),
        }
    }

    /// An RSA key from the CRT components IMPORT sends. The modulus must have
    /// the algorithm's length; dP, dQ and qInv must be those of p and q with
    /// e = 65537 (a key whose parts do not belong together is refused).
    pub(crate) fn from_rsa_components(
        algorithm: Algorithm,
        parts: &RsaComponents,
    ) -> Result<SoftKey> {
        let bits = algorithm.rsa_bits().ok_or_else(|| unsupported(algorithm))?;
        let half = bits / 16;
        for (name, value) in [
            ("p", &parts.p),
            ("q", &parts.q),
            ("dP", &parts.dp),
            ("dQ", &parts.dq),
            ("qInv", &parts.qinv),
        ] {
            if value.is_empty() || trim_leading_zeros(value).len() > half {
                return Err(crypto(format!(
                    "RSA-{bits} component {name} must be 1 to {half} bytes"
                )));
            }
        }
        let key = rsa::RsaPrivateKey::from_p_q(
            boxed_uint(&parts.p),
            boxed_uint(&parts.q),
            rsa::BoxedUint::from(u64::from(RSA_EXPONENT)),
        )
        .map_err(|e| crypto(format!("p and q do not form an RSA key: {e}")))?;
        let matches = |given: &[u8], computed: Option<&rsa::BoxedUint>| {
            computed.is_some_and(|c| {
                let c = secret_be_bytes(c, true);
                use subtle::ConstantTimeEq;
                let given = trim_leading_zeros(given);
                let c = trim_leading_zeros(&c);
                given.len() == c.len() && bool::from(given.ct_eq(c))
            })
        };
        let mut qinv = key.crt_coefficient();
        let consistent = matches(&parts.dp, key.dp())
            && matches(&parts.dq, key.dq())
            && matches(&parts.qinv, qinv.as_ref());
        qinv.zeroize();
        if !consistent {
            return Err(crypto(
                "dP, dQ or qInv do not belong to p and q (with e = 65537)",
            ));
        }
        Self::rsa(algorithm, key)
    }

    /// A key from [`SoftKey::private_bytes`] (the state file's encoding).
    pub(crate) fn from_private_bytes(algorithm: Algorithm, bytes: &[u8]) -> Result<SoftKey> {
        if algorithm.is_rsa() {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            let key = rsa::RsaPrivateKey::from_pkcs1_der(bytes)
                .map_err(|_| crypto(format!("invalid {algorithm} private key")))?;
            Self::rsa(algorithm, key)
        } else {
            Self::from_scalar(algorithm, bytes)
        }
    }

    /// The key type.
    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            SoftKey::P256(_) => Algorithm::EccP256,
            SoftKey::P384(_) => Algorithm::EccP384,
            SoftKey::Rsa(algorithm, _) => *algorithm,
            SoftKey::Ed25519(_) => Algorithm::Ed25519,
            SoftKey::X25519(_) => Algorithm::X25519,
        }
    }

    /// The private key for the state file only: the big-endian scalar for
    /// P-256/P-384, the seed for Ed25519, the secret for X25519, PKCS#1
    /// `RSAPrivateKey` DER for RSA.
    pub(crate) fn private_bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        Ok(match self {
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
            SoftKey::Rsa(_, k) => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                let doc = k
                    .to_pkcs1_der()
                    .map_err(|e| crypto(format!("cannot encode the RSA key: {e}")))?;
                Zeroizing::new(doc.as_bytes().to_vec())
            }
            SoftKey::Ed25519(k) => {
                let bytes = Zeroizing::new(k.to_bytes());
                Zeroizing::new(bytes.to_vec())
            }
            SoftKey::X25519(k) => Zeroizing::new(k.as_bytes().to_vec()),
        })
    }

    /// The public key as a SubjectPublicKeyInfo.
    pub(crate) fn public_key(&self) -> Result<PublicKey> {
        let failed = |e: &dyn std::fmt::Display| crypto(format!("cannot encode public key: {e}"));
        let der = match self {
            SoftKey::P256(k) => k
                .verifying_key()
                .to_public_key_der()
                .map_err(|e| failed(&e))?,
            SoftKey::P384(k) => k
                .verifying_key()
                .to_public_key_der()
                .map_err(|e| failed(&e))?,
            SoftKey::Rsa(_, k) => k
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| failed(&e))?,
            SoftKey::Ed25519(k) => k
                .verifying_key()
                .to_public_key_der()
                .map_err(|e| failed(&e))?,
            SoftKey::X25519(k) => {
                use der::Encode;
                let public = x25519_dalek::PublicKey::from(k);
                let spki = spki::SubjectPublicKeyInfoOwned {
                    algorithm: spki::AlgorithmIdentifierOwned {
                        oid: const_oid::db::rfc8410::ID_X_25519,
                        parameters: None,
                    },
                    subject_public_key: der::asn1::BitString::from_bytes(public.as_bytes())
                        .map_err(|e| failed(&e))?,
                };
                let bytes = spki.to_der().map_err(|e| failed(&e))?;
                return Ok(PublicKey {
                    algorithm: Algorithm::X25519,
                    spki_der: bytes,
                });
            }
        };
        Ok(PublicKey {
            algorithm: self.algorithm(),
            spki_der: der.as_bytes().to_vec(),
        })
    }

    /// The public key's TLVs as the device encodes them inside the 7F49
    /// template (GENERATE) and GET METADATA's tag 04: `81 modulus 82
    /// exponent` for RSA, `86 point` otherwise (the uncompressed SEC1 point
    /// for P-256/P-384, the 32 raw bytes for Ed25519 and X25519).
    pub(crate) fn public_key_tlvs(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let too_large = |_| crypto("public key too large for a TLV");
        match self {
            SoftKey::Rsa(_, k) => {
                let n = k.n().as_ref().to_be_bytes_trimmed_vartime();
                let e = k.e().to_be_bytes_trimmed_vartime();
                tlv::write(&mut out, TAG_RSA_MODULUS, &n).map_err(too_large)?;
                tlv::write(&mut out, TAG_RSA_EXPONENT, &e).map_err(too_large)?;
            }
            _ => tlv::write(&mut out, TAG_POINT, &self.public_point()).map_err(too_large)?,
        }
        Ok(out)
    }

    /// The value of tag 86 (EC and 25519 keys; empty for RSA).
    fn public_point(&self) -> Vec<u8> {
        match self {
            SoftKey::P256(k) => k.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
            SoftKey::P384(k) => k.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
            SoftKey::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
            SoftKey::X25519(k) => x25519_dalek::PublicKey::from(k).to_bytes().to_vec(),
            SoftKey::Rsa(..) => Vec::new(),
        }
    }

    /// The RSA modulus length in bytes (`None` for other keys).
    pub(crate) fn rsa_len(&self) -> Option<usize> {
        match self {
            SoftKey::Rsa(algorithm, _) => algorithm.rsa_bits().map(|b| b / 8),
            _ => None,
        }
    }

    /// What GENERAL AUTHENTICATE with tag 81 does with `input`:
    /// - P-256/P-384: ECDSA over the field-length prehash; the DER signature;
    /// - RSA: the raw private-key operation over a key-length block (signing
    ///   and decryption alike: the host pads and unpads, as with the device);
    ///   a block of another length or not below the modulus is refused;
    /// - Ed25519: the signature of the message itself (64 bytes).
    ///
    /// X25519 cannot sign: [`Error::UnsupportedAlgorithm`].
    pub(crate) fn private_operation(&self, input: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        use signature::hazmat::PrehashSigner;
        let failed = |e: signature::Error| crypto(format!("ECDSA signing failed: {e}"));
        match self {
            SoftKey::P256(k) => Ok(Zeroizing::new(k.sign_prehash_der(input)?)),
            SoftKey::P384(k) => {
                let sig: p384::ecdsa::DerSignature = k.sign_prehash(input).map_err(failed)?;
                Ok(Zeroizing::new(sig.as_bytes().to_vec()))
            }
            SoftKey::Rsa(algorithm, k) => {
                let len = algorithm.rsa_bits().map(|b| b / 8).unwrap_or_default();
                if input.len() != len {
                    return Err(Error::BadCommandData {
                        reason: format!(
                            "{algorithm} takes a {len}-byte block, got {} bytes",
                            input.len()
                        ),
                    });
                }
                let n = k.n().as_ref();
                let c = rsa::BoxedUint::from_be_slice(input, n.bits_precision()).map_err(|_| {
                    Error::BadCommandData {
                        reason: format!("{algorithm} block does not fit the modulus"),
                    }
                })?;
                if c >= *n {
                    return Err(Error::BadCommandData {
                        reason: format!("{algorithm} block is not below the modulus"),
                    });
                }
                let mut m = rsa::hazmat::rsa_decrypt_and_check(k.as_ref(), Some(&mut os_rng()), &c)
                    .map_err(|e| crypto(format!("RSA private operation failed: {e}")))?;
                // A decrypted block is secret: no unzeroized copy stays.
                let bytes = secret_be_bytes(&m, false);
                m.zeroize();
                fixed_len(&bytes, len).ok_or_else(|| crypto("RSA result longer than the key"))
            }
            SoftKey::Ed25519(k) => {
                use signature::Signer;
                let sig: ed25519_dalek::Signature = k.sign(input);
                Ok(Zeroizing::new(sig.to_bytes().to_vec()))
            }
            SoftKey::X25519(_) => Err(Error::UnsupportedAlgorithm {
                algorithm: "X25519 cannot sign (it only agrees keys)".into(),
            }),
        }
    }

    /// Key agreement (GENERAL AUTHENTICATE with tag 85): the shared secret
    /// with the peer's public key, encoded as on the device: the
    /// uncompressed SEC1 point for P-256/P-384 (the x-coordinate comes
    /// back, field length), the 32 raw bytes for X25519 (refused when the
    /// result is all zeros: a low-order peer point). Other keys cannot agree
    /// keys ([`Error::UnsupportedAlgorithm`]); a malformed peer point is
    /// [`Error::BadCommandData`].
    pub(crate) fn key_agreement(&self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let bad_point = |what: &str| Error::BadCommandData {
            reason: format!("the peer's public key is not a valid {what}"),
        };
        match self {
            SoftKey::P256(k) => {
                if peer.len() != 65 {
                    return Err(bad_point("uncompressed P-256 point"));
                }
                let peer = p256::PublicKey::from_sec1_bytes(peer)
                    .map_err(|_| bad_point("uncompressed P-256 point"))?;
                let secret = k.as_nonzero_scalar();
                let shared = p256::ecdh::diffie_hellman(secret, peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            SoftKey::P384(k) => {
                if peer.len() != 97 {
                    return Err(bad_point("uncompressed P-384 point"));
                }
                let peer = p384::PublicKey::from_sec1_bytes(peer)
                    .map_err(|_| bad_point("uncompressed P-384 point"))?;
                let secret = k.as_nonzero_scalar();
                let shared = p384::ecdh::diffie_hellman(secret, peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            SoftKey::X25519(k) => {
                let peer: [u8; 32] = peer.try_into().map_err(|_| bad_point("X25519 key"))?;
                let shared = k.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
                if !shared.was_contributory() {
                    return Err(bad_point("X25519 key (low order point)"));
                }
                Ok(Zeroizing::new(shared.as_bytes().to_vec()))
            }
            other => Err(Error::UnsupportedAlgorithm {
                algorithm: format!("{} cannot agree keys (ECDH)", other.algorithm()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::DecodePublicKey;
    use signature::hazmat::PrehashVerifier;

    #[test]
    fn generated_ec_keys_sign_and_round_trip() {
        for alg in [Algorithm::EccP256, Algorithm::EccP384] {
            let key = SoftKey::generate(alg).unwrap();
            let again = SoftKey::from_private_bytes(alg, &key.private_bytes().unwrap()).unwrap();
            assert_eq!(key.public_key().unwrap(), again.public_key().unwrap());
            let len = alg.ecdsa_field_len().unwrap();
            let input = vec![0x5a; len];
            let sig = key.private_operation(&input).unwrap();
            let spki = key.public_key().unwrap().spki_der;
            let tlvs = key.public_key_tlvs().unwrap();
            assert_eq!(tlvs[0], 0x86);
            match alg {
                Algorithm::EccP256 => {
                    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
                    let sig = p256::ecdsa::DerSignature::try_from(sig.as_slice()).unwrap();
                    vk.verify_prehash(&input, &sig).unwrap();
                    assert_eq!(tlvs.len(), 2 + 65);
                }
                _ => {
                    let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
                    let sig = p384::ecdsa::DerSignature::try_from(sig.as_slice()).unwrap();
                    vk.verify_prehash(&input, &sig).unwrap();
                    assert_eq!(tlvs.len(), 2 + 97);
                }
            }
        }
        assert!(SoftKey::from_scalar(Algorithm::EccP256, &[0u8; 32]).is_err());
        assert!(SoftKey::from_scalar(Algorithm::EccP256, &[1u8; 31]).is_err());
        assert!(SoftKey::from_scalar(Algorithm::Rsa2048, &[1u8; 32]).is_err());
        let k = SoftKey::generate(Algorithm::EccP256).unwrap();
        assert!(!format!("{k:?}").contains(&hex::encode(k.private_bytes().unwrap().as_slice())));
    }

    #[test]
    fn ed25519_signs_the_message_and_round_trips() {
        let key = SoftKey::generate(Algorithm::Ed25519).unwrap();
        let again =
            SoftKey::from_private_bytes(Algorithm::Ed25519, &key.private_bytes().unwrap()).unwrap();
        assert_eq!(key.public_key().unwrap(), again.public_key().unwrap());
        let message = b"a message that is not a digest, of any length".repeat(40);
        let sig = key.private_operation(&message).unwrap();
        assert_eq!(sig.len(), 64);
        let vk =
            ed25519_dalek::VerifyingKey::from_public_key_der(&key.public_key().unwrap().spki_der)
                .unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
        use signature::Verifier;
        vk.verify(&message, &sig).unwrap();
        assert!(vk.verify(b"another message", &sig).is_err());
        let tlvs = key.public_key_tlvs().unwrap();
        assert_eq!(&tlvs[..2], &[0x86, 32]);
        assert_eq!(&tlvs[2..], vk.as_bytes());
        assert!(matches!(
            key.key_agreement(&[9u8; 32]),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
        assert!(SoftKey::from_scalar(Algorithm::Ed25519, &[1u8; 31]).is_err());
    }

    #[test]
    fn x25519_agrees_keys_and_refuses_to_sign() {
        let key = SoftKey::generate(Algorithm::X25519).unwrap();
        let again =
            SoftKey::from_private_bytes(Algorithm::X25519, &key.private_bytes().unwrap()).unwrap();
        assert_eq!(key.public_key().unwrap(), again.public_key().unwrap());
        let tlvs = key.public_key_tlvs().unwrap();
        let card_public: [u8; 32] = tlvs[2..].try_into().unwrap();
        let peer = x25519_dalek::StaticSecret::from([7u8; 32]);
        let peer_public = x25519_dalek::PublicKey::from(&peer);
        let shared = key.key_agreement(peer_public.as_bytes()).unwrap();
        let expected = peer.diffie_hellman(&x25519_dalek::PublicKey::from(card_public));
        assert_eq!(shared.as_slice(), expected.as_bytes());
        // The SPKI is RFC 8410's id-X25519 with the same 32 bytes.
        let spki = key.public_key().unwrap().spki_der;
        assert!(spki.ends_with(&card_public));
        assert_eq!(
            &spki[..12],
            &[
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00
            ]
        );
        assert!(matches!(
            key.private_operation(b"sign me"),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
        // Low-order point (all zeros) and wrong lengths.
        assert!(matches!(
            key.key_agreement(&[0u8; 32]),
            Err(Error::BadCommandData { .. })
        ));
        assert!(matches!(
            key.key_agreement(&[9u8; 31]),
            Err(Error::BadCommandData { .. })
        ));
    }

    #[test]
    fn ecdh_matches_rustcrypto_on_both_curves() {
        use elliptic_curve::sec1::ToSec1Point;
        let key = SoftKey::generate(Algorithm::EccP256).unwrap();
        let peer = p256::SecretKey::from_slice(&[0x42; 32]).unwrap();
        let peer_point = peer.public_key().to_sec1_point(false);
        let shared = key.key_agreement(peer_point.as_bytes()).unwrap();
        let card_pub =
            p256::PublicKey::from_public_key_der(&key.public_key().unwrap().spki_der).unwrap();
        let expected = p256::ecdh::diffie_hellman(peer.to_nonzero_scalar(), card_pub.as_affine());
        assert_eq!(shared.as_slice(), expected.raw_secret_bytes().as_slice());
        assert!(matches!(
            key.key_agreement(&peer_point.as_bytes()[..33]),
            Err(Error::BadCommandData { .. })
        ));
        let mut off_curve = peer_point.as_bytes().to_vec();
        off_curve[64] ^= 1;
        assert!(matches!(
            key.key_agreement(&off_curve),
            Err(Error::BadCommandData { .. })
        ));

        let key = SoftKey::generate(Algorithm::EccP384).unwrap();
        let peer = p384::SecretKey::from_slice(&[0x42; 48]).unwrap();
        let shared = key
            .key_agreement(peer.public_key().to_sec1_point(false).as_bytes())
            .unwrap();
        let card_pub =
            p384::PublicKey::from_public_key_der(&key.public_key().unwrap().spki_der).unwrap();
        let expected = p384::ecdh::diffie_hellman(peer.to_nonzero_scalar(), card_pub.as_affine());
        assert_eq!(shared.as_slice(), expected.raw_secret_bytes().as_slice());
    }

    #[test]
    fn rsa_raw_operation_checks_with_the_public_key_and_imports() {
        use rsa::traits::PublicKeyParts;
        let key = SoftKey::generate(Algorithm::Rsa1024).unwrap();
        let SoftKey::Rsa(_, inner) = &key else {
            panic!("not RSA")
        };
        let public = inner.to_public_key();
        // A PKCS#1 v1.5 signature block computed on the host: the raw
        // operation's result verifies with the rsa crate's verifier.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(b"hello");
        let padded = {
            let mut block = vec![0x00, 0x01];
            let prefix: &[u8] = &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ];
            block.resize(128 - prefix.len() - 32 - 1, 0xff);
            block.push(0x00);
            block.extend_from_slice(prefix);
            block.extend_from_slice(&digest);
            block
        };
        assert_eq!(padded.len(), 128);
        let sig = key.private_operation(&padded).unwrap();
        assert_eq!(sig.len(), 128);
        public
            .verify(
                rsa::pkcs1v15::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &digest,
                &sig,
            )
            .unwrap();
        // Raw check: sig^e mod n == block.
        let back = rsa::hazmat::rsa_encrypt(
            &public,
            &rsa::BoxedUint::from_be_slice(&sig, public.n().as_ref().bits_precision()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            fixed_len(&back.to_be_bytes(), 128).unwrap().as_slice(),
            &padded[..]
        );
        // Refusals: wrong length, block >= n.
        assert!(matches!(
            key.private_operation(&padded[1..]),
            Err(Error::BadCommandData { .. })
        ));
        assert!(matches!(
            key.private_operation(&[0xff; 128]),
            Err(Error::BadCommandData { .. })
        ));
        assert!(matches!(
            key.key_agreement(&[4u8; 65]),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
        // Public template: 81 modulus (128 bytes, 2-byte length) 82 010001.
        let tlvs = key.public_key_tlvs().unwrap();
        assert_eq!(&tlvs[..3], &[0x81, 0x81, 0x80]);
        assert_eq!(&tlvs[3..131], &public.n().as_ref().to_be_bytes()[..]);
        assert_eq!(&tlvs[131..], &[0x82, 0x03, 0x01, 0x00, 0x01]);
        // State-file round trip.
        let again =
            SoftKey::from_private_bytes(Algorithm::Rsa1024, &key.private_bytes().unwrap()).unwrap();
        assert_eq!(key.public_key().unwrap(), again.public_key().unwrap());
        assert!(
            SoftKey::from_private_bytes(Algorithm::Rsa2048, &key.private_bytes().unwrap()).is_err()
        );

        // Import from CRT parts (as IMPORT sends them), and refusals.
        let bytes = |v: &rsa::BoxedUint| v.to_be_bytes_trimmed_vartime().to_vec();
        let parts = || RsaComponents {
            p: bytes(&inner.primes()[0]),
            q: bytes(&inner.primes()[1]),
            dp: bytes(inner.dp().unwrap()),
            dq: bytes(inner.dq().unwrap()),
            qinv: bytes(&inner.crt_coefficient().unwrap()),
        };
        let imported = SoftKey::from_rsa_components(Algorithm::Rsa1024, &parts()).unwrap();
        assert_eq!(imported.public_key().unwrap(), key.public_key().unwrap());
        assert!(SoftKey::from_rsa_components(Algorithm::Rsa2048, &parts()).is_err());
        let mut wrong = parts();
        wrong.dp[10] ^= 1;
        assert!(SoftKey::from_rsa_components(Algorithm::Rsa1024, &wrong).is_err());
        let mut wrong = parts();
        wrong.qinv[5] ^= 1;
        assert!(SoftKey::from_rsa_components(Algorithm::Rsa1024, &wrong).is_err());
        let mut wrong = parts();
        wrong.q = wrong.p.clone();
        assert!(SoftKey::from_rsa_components(Algorithm::Rsa1024, &wrong).is_err());
        let mut wrong = parts();
        wrong.p.push(1);
        assert!(SoftKey::from_rsa_components(Algorithm::Rsa1024, &wrong).is_err());
    }
}
