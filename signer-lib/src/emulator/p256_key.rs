//! The emulator's P-256 private key, and which library computes its ECDSA
//! signatures.
//!
//! Everything about the key is RustCrypto's `p256` (generation, the public
//! key, the state file's scalar, ECDH, attestation certificates). Only the
//! ECDSA signature over a prehash, the operation a signing daemon repeats
//! thousands of times a second, may be computed elsewhere:
//!
//! - default: RustCrypto `p256` (`sign_prehash`, RFC 6979 nonces);
//! - with the crate feature **`emulator-openssl`**: the system's OpenSSL
//!   libcrypto (`ECDSA_do_sign` through the `openssl` crate), whose P-256 is
//!   the constant-time `ecp_nistz256` assembly. Measured side by side
//!   (`tests/scripts/bench.sh`, rows "RustCrypto p256" and "OpenSSL"), it
//!   signs about 4× faster than `p256` 0.14 on x86-64; for P-384 OpenSSL 3.0
//!   has no such code and is about 3.7× *slower* than RustCrypto
//!   (`openssl speed ecdsap384`), so P-384 stays on RustCrypto. OpenSSL's
//!   nonce is `BN_generate_dsa_nonce`: a hash of the private key, the digest
//!   and fresh randomness, so a weak RNG does not reveal the key.
//!
//! Both produce ordinary ECDSA signatures that any verifier accepts; the
//! difference a caller can see is that OpenSSL's are not deterministic. The
//! emulator is a test token (not for production keys); the feature exists so
//! that the daemon's own overhead, not a slow software signature, is what a
//! benchmark of the emulated token measures. `signer-daemon` enables it by
//! default.
//!
//! The private scalar handed to OpenSSL is copied into an `EC_KEY` (which
//! clears it with `BN_clear_free` when freed); the temporary `BIGNUM` is
//! cleared before it is dropped.

use crate::error::{Error, Result};

/// A P-256 private key (see the module documentation).
#[derive(Clone)]
pub(crate) struct P256Key {
    key: p256::ecdsa::SigningKey,
    /// Made at the first signature, not when the key is loaded: OpenSSL's
    /// initialisation (reading `openssl.cnf`) would otherwise add
    /// milliseconds to the daemon's cold start for a daemon that may never
    /// sign with it.
    #[cfg(feature = "emulator-openssl")]
    openssl: std::sync::OnceLock<openssl::ec::EcKey<openssl::pkey::Private>>,
}

impl std::ops::Deref for P256Key {
    type Target = p256::ecdsa::SigningKey;
    fn deref(&self) -> &p256::ecdsa::SigningKey {
        &self.key
    }
}

impl P256Key {
    /// From the 32-byte big-endian scalar; `None` when it is not a valid
    /// private key (zero or not below the group order).
    pub(crate) fn from_slice(scalar: &[u8]) -> Option<P256Key> {
        if scalar.len() != 32 {
            return None;
        }
        let key = p256::ecdsa::SigningKey::from_slice(scalar).ok()?;
        Some(P256Key {
            key,
            #[cfg(feature = "emulator-openssl")]
            openssl: std::sync::OnceLock::new(),
        })
    }

    /// ECDSA over the prehash (the card passes the field-length integer; a
    /// longer one is truncated to its leftmost 256 bits and a shorter one
    /// taken as a smaller integer, by both libraries alike): the DER
    /// signature.
    pub(crate) fn sign_prehash_der(&self, prehash: &[u8]) -> Result<Vec<u8>> {
        #[cfg(feature = "emulator-openssl")]
        {
            let key = match self.openssl.get() {
                Some(key) => key,
                None => {
                    let made = openssl_backend::key(&self.key)
                        .map_err(|e| failed(&format!("OpenSSL cannot load the key: {e}")))?;
                    self.openssl.get_or_init(|| made)
                }
            };
            openssl_backend::sign(key, prehash)
        }
        #[cfg(not(feature = "emulator-openssl"))]
        {
            self.sign_prehash_rustcrypto(prehash)
        }
    }

    /// The RustCrypto signature (the default backend; with
    /// `emulator-openssl`, kept for the test that compares the two).
    #[cfg_attr(all(feature = "emulator-openssl", not(test)), allow(dead_code))]
    pub(crate) fn sign_prehash_rustcrypto(&self, prehash: &[u8]) -> Result<Vec<u8>> {
        use signature::hazmat::PrehashSigner;
        let sig: p256::ecdsa::DerSignature = self
            .key
            .sign_prehash(prehash)
            .map_err(|e| failed(&e.to_string()))?;
        Ok(sig.as_bytes().to_vec())
    }
}

/// Which library computes the emulator's P-256 ECDSA signatures in this
/// build (see the module documentation).
pub const BACKEND: &str = if cfg!(feature = "emulator-openssl") {
    "OpenSSL libcrypto"
} else {
    "RustCrypto p256"
};

fn failed(reason: &str) -> Error {
    Error::Crypto {
        reason: format!("ECDSA signing failed: {reason}"),
    }
}

#[cfg(feature = "emulator-openssl")]
mod openssl_backend {
    use openssl::bn::{BigNum, BigNumContext};
    use openssl::ec::{EcGroup, EcKey, EcPoint};
    use openssl::ecdsa::EcdsaSig;
    use openssl::error::ErrorStack;
    use openssl::nid::Nid;
    use openssl::pkey::Private;

    use zeroize::Zeroize;

    use super::failed;
    use crate::error::Result;

    /// The same key as an OpenSSL `EC_KEY` on the named curve (so that
    /// OpenSSL picks its nistz256 code), checked by `EC_KEY_check_key`.
    pub(super) fn key(key: &p256::ecdsa::SigningKey) -> Result<EcKey<Private>, ErrorStack> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let mut ctx = BigNumContext::new()?;
        let point = key.verifying_key().to_sec1_point(false);
        let point = EcPoint::from_bytes(&group, point.as_bytes(), &mut ctx)?;
        let mut scalar = key.to_bytes();
        let d = BigNum::from_slice(&scalar);
        scalar.zeroize();
        let mut d = d?;
        let made = EcKey::from_private_components(&group, &d, &point);
        d.clear();
        let made = made?;
        made.check_key()?;
        Ok(made)
    }

    pub(super) fn sign(key: &EcKey<Private>, prehash: &[u8]) -> Result<Vec<u8>> {
        EcdsaSig::sign(prehash, key)
            .and_then(|sig| sig.to_der())
            .map_err(|e| failed(&format!("OpenSSL: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;

    /// Whichever backend is built, its signatures verify with RustCrypto
    /// (an independent verifier when the backend is OpenSSL), over many
    /// digests, and a signature does not verify for another digest.
    #[test]
    fn signatures_verify_with_rustcrypto() {
        let key = P256Key::from_slice(&[0x5au8; 32]).unwrap();
        let vk = key.verifying_key();
        for i in 0u8..64 {
            let digest = [i; 32];
            let der = key.sign_prehash_der(&digest).unwrap();
            let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
            vk.verify_prehash(&digest, &sig).unwrap();
            assert!(vk.verify_prehash(&[i ^ 1; 32], &sig).is_err());
            let rc = key.sign_prehash_rustcrypto(&digest).unwrap();
            let rc = p256::ecdsa::Signature::from_der(&rc).unwrap();
            vk.verify_prehash(&digest, &rc).unwrap();
        }
    }

    /// Prehashes shorter and longer than the field verify as RustCrypto
    /// reads them (a longer one truncated to its leftmost 256 bits).
    #[test]
    fn prehash_lengths_as_rustcrypto_reads_them() {
        let key = P256Key::from_slice(&[0x21u8; 32]).unwrap();
        let vk = key.verifying_key();
        for len in [1usize, 15, 16, 20, 32, 48, 64] {
            let digest: Vec<u8> = (0..len).map(|i| i as u8 ^ 0xa5).collect();
            let der = key.sign_prehash_der(&digest).unwrap();
            let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
            vk.verify_prehash(&digest, &sig)
                .unwrap_or_else(|e| panic!("{len}-byte prehash: {e}"));
        }
    }

    #[test]
    fn invalid_scalars_are_refused() {
        assert!(P256Key::from_slice(&[0u8; 32]).is_none());
        assert!(P256Key::from_slice(&[0xffu8; 32]).is_none());
        assert!(P256Key::from_slice(&[1u8; 31]).is_none());
    }

    /// The build says which backend signs (so a benchmark or test log
    /// shows it).
    #[test]
    fn backend_name_matches_the_build() {
        assert_eq!(
            BACKEND,
            if cfg!(feature = "emulator-openssl") {
                "OpenSSL libcrypto"
            } else {
                "RustCrypto p256"
            }
        );
    }
}
