//! What GENERAL AUTHENTICATE signs (tag 81), for every signature scheme, as
//! the host computes it: the PIV client sends it to the card and the
//! emulated token hands it to the emulated card, so both backends sign the
//! same bytes.
//!
//! - ECDSA: the digest as a field-length integer
//!   ([`crate::model::ecdsa_card_input`]).
//! - RSA: the card performs the raw RSA private-key operation over a
//!   modulus-length block, so the host pads: EMSA-PKCS1-v1_5 (RFC 8017
//!   §9.2, the hash's DigestInfo prefix taken from the `rsa` crate) or
//!   EMSA-PSS (RFC 8017 §9.1.1, MGF1 with the same hash, a random salt as
//!   long as the hash, `emBits = modBits − 1`). The `rsa` crate keeps its
//!   encoders private, so the two encoders are here (tested against
//!   OpenSSL-made vectors in `testdata/rsa_padding/` and the `rsa` crate's
//!   own signer and verifier).
//! - Ed25519: the message itself.

use sha2::Digest;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::{
    Algorithm, HashAlgorithm, SignInput, SignatureScheme, SlotId, ecdsa_card_input,
};

/// Check the request ([`SignatureScheme::check`]) and return the exact bytes
/// the card signs for it (tag 81 of GENERAL AUTHENTICATE). PSS draws a fresh
/// salt from the operating system.
pub fn card_input(
    slot: SlotId,
    algorithm: Algorithm,
    scheme: SignatureScheme,
    input: &SignInput<'_>,
) -> Result<Zeroizing<Vec<u8>>> {
    scheme.check(slot, algorithm, input)?;
    match (scheme, input) {
        (SignatureScheme::Ecdsa, SignInput::Digest { hash, digest }) => {
            Ok(Zeroizing::new(ecdsa_card_input(algorithm, *hash, digest)?))
        }
        (SignatureScheme::RsaPkcs1v15, SignInput::Digest { hash, digest }) => {
            emsa_pkcs1v15_encode(*hash, digest, modulus_len(algorithm)?)
        }
        (SignatureScheme::RsaPss, SignInput::Digest { hash, digest }) => {
            let mut salt = Zeroizing::new(vec![0u8; hash.digest_len()]);
            getrandom::fill(&mut salt).map_err(|e| Error::Crypto {
                reason: format!("no randomness for the PSS salt: {e}"),
            })?;
            emsa_pss_encode(*hash, digest, &salt, modulus_len(algorithm)? * 8 - 1)
        }
        (SignatureScheme::Ed25519, SignInput::Message(message)) => {
            Ok(Zeroizing::new(message.to_vec()))
        }
        // `check` refused every other combination.
        _ => Err(Error::SchemeMismatch { scheme, algorithm }),
    }
}

fn modulus_len(algorithm: Algorithm) -> Result<usize> {
    algorithm
        .rsa_bits()
        .map(|b| b / 8)
        .ok_or(Error::UnsupportedAlgorithm {
            algorithm: algorithm.to_string(),
        })
}

/// The DER DigestInfo prefix of `hash` (RFC 8017 §9.2 note 1), from the
/// `rsa` crate.
fn digest_info_prefix(hash: HashAlgorithm) -> Box<[u8]> {
    match hash {
        HashAlgorithm::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>().prefix,
        HashAlgorithm::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>().prefix,
        HashAlgorithm::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>().prefix,
    }
}

/// EMSA-PKCS1-v1_5 (RFC 8017 §9.2): `00 01 FF…FF 00 DigestInfo(hash, digest)`,
/// `k` bytes (the modulus length).
pub fn emsa_pkcs1v15_encode(
    hash: HashAlgorithm,
    digest: &[u8],
    k: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    if digest.len() != hash.digest_len() {
        return Err(Error::BadDigestLength {
            hash,
            expected: hash.digest_len(),
            actual: digest.len(),
        });
    }
    let prefix = digest_info_prefix(hash);
    let t_len = prefix.len() + digest.len();
    // At least eight 0xFF bytes of padding.
    if k < t_len + 11 {
        return Err(Error::Crypto {
            reason: format!("a {k}-byte modulus cannot hold a PKCS#1 v1.5 {hash} DigestInfo"),
        });
    }
    let mut em = Zeroizing::new(vec![0xffu8; k]);
    em[0] = 0x00;
    em[1] = 0x01;
    em[k - t_len - 1] = 0x00;
    em[k - t_len..k - digest.len()].copy_from_slice(&prefix);
    em[k - digest.len()..].copy_from_slice(digest);
    Ok(em)
}

fn hash_concat(hash: HashAlgorithm, parts: &[&[u8]]) -> Vec<u8> {
    fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    match hash {
        HashAlgorithm::Sha256 => run::<sha2::Sha256>(parts),
        HashAlgorithm::Sha384 => run::<sha2::Sha384>(parts),
        HashAlgorithm::Sha512 => run::<sha2::Sha512>(parts),
    }
}

/// MGF1 (RFC 8017 §B.2.1) with `hash`: XOR `len(out)` mask bytes into `out`.
fn mgf1_xor(hash: HashAlgorithm, seed: &[u8], out: &mut [u8]) {
    let h_len = hash.digest_len();
    for (counter, chunk) in out.chunks_mut(h_len).enumerate() {
        // Counter fits 32 bits: the mask is shorter than 4096 bits.
        let c = (counter as u32).to_be_bytes();
        let block = hash_concat(hash, &[seed, &c]);
        for (o, m) in chunk.iter_mut().zip(block) {
            *o ^= m;
        }
    }
}

/// EMSA-PSS-ENCODE (RFC 8017 §9.1.1) of a digest with `salt`, MGF1 with the
/// same hash, for an `em_bits`-bit encoded message (`modBits − 1`). The
/// result is `ceil(em_bits / 8)` bytes: the modulus length for the key
/// sizes a YubiKey has.
pub fn emsa_pss_encode(
    hash: HashAlgorithm,
    digest: &[u8],
    salt: &[u8],
    em_bits: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let h_len = hash.digest_len();
    if digest.len() != h_len {
        return Err(Error::BadDigestLength {
            hash,
            expected: h_len,
            actual: digest.len(),
        });
    }
    let em_len = em_bits.div_ceil(8);
    if em_len < h_len + salt.len() + 2 {
        return Err(Error::Crypto {
            reason: format!(
                "a {em_bits}-bit PSS encoding cannot hold a {hash} digest and a {}-byte salt",
                salt.len()
            ),
        });
    }
    // H = Hash(00×8 ‖ mHash ‖ salt)
    let h = hash_concat(hash, &[&[0u8; 8], digest, salt]);
    // DB = PS ‖ 01 ‖ salt, masked with MGF1(H).
    let db_len = em_len - h_len - 1;
    let mut em = Zeroizing::new(vec![0u8; em_len]);
    em[db_len - salt.len() - 1] = 0x01;
    em[db_len - salt.len()..db_len].copy_from_slice(salt);
    mgf1_xor(hash, &h, &mut em[..db_len]);
    // Clear the leftmost 8·emLen − emBits bits.
    let unused = 8 * em_len - em_bits;
    em[0] &= 0xffu8 >> unused;
    em[db_len..em_len - 1].copy_from_slice(&h);
    em[em_len - 1] = 0xbc;
    Ok(em)
}

/// The salt of an EMSA-PSS encoded message with a `salt_len`-byte salt
/// (the inverse of [`emsa_pss_encode`]'s masking, for test vectors made by
/// another implementation). `None` when `em` is not such an encoding.
pub fn pss_salt(
    hash: HashAlgorithm,
    em: &[u8],
    em_bits: usize,
    salt_len: usize,
) -> Option<Vec<u8>> {
    let h_len = hash.digest_len();
    let em_len = em_bits.div_ceil(8);
    if em.len() != em_len || em_len < h_len + salt_len + 2 || em.last() != Some(&0xbc) {
        return None;
    }
    let db_len = em_len - h_len - 1;
    let mut db = em[..db_len].to_vec();
    mgf1_xor(hash, &em[db_len..em_len - 1], &mut db);
    db[0] &= 0xffu8 >> (8 * em_len - em_bits);
    let ps_len = db_len - salt_len - 1;
    if db[..ps_len].iter().any(|&b| b != 0) || db[ps_len] != 0x01 {
        return None;
    }
    Some(db[ps_len + 1..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs1v15_layout() {
        let d = [7u8; 32];
        let em = emsa_pkcs1v15_encode(HashAlgorithm::Sha256, &d, 128).unwrap();
        assert_eq!(&em[..2], &[0, 1]);
        assert_eq!(em.len(), 128);
        let t = 19 + 32;
        assert!(em[2..128 - t - 1].iter().all(|&b| b == 0xff));
        assert_eq!(em[128 - t - 1], 0);
        assert_eq!(&em[128 - 32..], &d);
        assert!(matches!(
            emsa_pkcs1v15_encode(HashAlgorithm::Sha256, &d[..31], 128),
            Err(Error::BadDigestLength { .. })
        ));
        assert!(emsa_pkcs1v15_encode(HashAlgorithm::Sha512, &[0; 64], 64 + 19 + 10).is_err());
    }

    #[test]
    fn pss_round_trips_its_salt() {
        for (hash, bits) in [
            (HashAlgorithm::Sha256, 1024),
            (HashAlgorithm::Sha384, 2048),
            (HashAlgorithm::Sha512, 4096),
        ] {
            let d = hash.digest(b"m");
            let salt: Vec<u8> = (0..hash.digest_len() as u8).collect();
            let em = emsa_pss_encode(hash, &d, &salt, bits - 1).unwrap();
            assert_eq!(em.len(), bits / 8);
            assert_eq!(em[0] & 0x80, 0, "top bit cleared");
            assert_eq!(
                pss_salt(hash, &em, bits - 1, salt.len()).as_deref(),
                Some(&salt[..])
            );
            let mut bad = em.to_vec();
            bad[5] ^= 1;
            assert_ne!(
                pss_salt(hash, &bad, bits - 1, salt.len()).as_deref(),
                Some(&salt[..])
            );
        }
        // PSS with SHA-512 does not fit RSA-1024 (130 > 128 bytes).
        assert!(emsa_pss_encode(HashAlgorithm::Sha512, &[0; 64], &[0; 64], 1023).is_err());
    }
}
