//! Independent signature verification with the `p256`/`p384` crates (no
//! code shared with the signing path beyond the SubjectPublicKeyInfo DER).

use p256::pkcs8::DecodePublicKey;
use signature::Verifier;
use signature::hazmat::PrehashVerifier;

use crate::model::{Algorithm, HashAlgorithm, PublicKey};

/// Why a signature did not verify.
#[derive(Debug)]
pub struct VerifyFailure(pub String);

impl std::fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Verify a DER ECDSA signature over a prehashed digest.
pub fn verify_prehash(
    public_key: &PublicKey,
    digest: &[u8],
    der_signature: &[u8],
) -> Result<(), VerifyFailure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| VerifyFailure(format!("{what}: {e}"));
    match public_key.algorithm {
        Algorithm::EccP256 => {
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&public_key.spki_der)
                .map_err(|e| fail("P-256 public key", &e))?;
            let sig = p256::ecdsa::DerSignature::try_from(der_signature)
                .map_err(|e| fail("DER signature", &e))?;
            vk.verify_prehash(digest, &sig)
                .map_err(|e| fail("P-256 verification", &e))
        }
        Algorithm::EccP384 => {
            let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&public_key.spki_der)
                .map_err(|e| fail("P-384 public key", &e))?;
            let sig = p384::ecdsa::DerSignature::try_from(der_signature)
                .map_err(|e| fail("DER signature", &e))?;
            vk.verify_prehash(digest, &sig)
                .map_err(|e| fail("P-384 verification", &e))
        }
        other => Err(VerifyFailure(format!("no verifier for {other}"))),
    }
}

/// Verify a DER ECDSA signature over a whole message with the curve's own
/// hash (SHA-256 for P-256, SHA-384 for P-384), hashing it here.
pub fn verify_message(
    public_key: &PublicKey,
    message: &[u8],
    der_signature: &[u8],
) -> Result<(), VerifyFailure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| VerifyFailure(format!("{what}: {e}"));
    match public_key.algorithm {
        Algorithm::EccP256 => {
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&public_key.spki_der)
                .map_err(|e| fail("P-256 public key", &e))?;
            let sig = p256::ecdsa::DerSignature::try_from(der_signature)
                .map_err(|e| fail("DER signature", &e))?;
            vk.verify(message, &sig)
                .map_err(|e| fail("P-256 verification", &e))
        }
        Algorithm::EccP384 => {
            let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&public_key.spki_der)
                .map_err(|e| fail("P-384 public key", &e))?;
            let sig = p384::ecdsa::DerSignature::try_from(der_signature)
                .map_err(|e| fail("DER signature", &e))?;
            vk.verify(message, &sig)
                .map_err(|e| fail("P-384 verification", &e))
        }
        other => Err(VerifyFailure(format!("no verifier for {other}"))),
    }
}

/// Assert that `der_signature` is a valid signature of `message` hashed with
/// `hash`, by `public_key`; also check the message-level verifier when the
/// hash is the curve's own.
pub fn assert_signature(
    public_key: &PublicKey,
    hash: HashAlgorithm,
    message: &[u8],
    der_signature: &[u8],
) {
    let digest = hash.digest(message);
    if let Err(e) = verify_prehash(public_key, &digest, der_signature) {
        panic!(
            "{} signature over a {hash} digest does not verify: {e}",
            public_key.algorithm
        );
    }
    if hash == HashAlgorithm::preferred_for(public_key.algorithm) {
        if let Err(e) = verify_message(public_key, message, der_signature) {
            panic!(
                "{} signature does not verify over the message: {e}",
                public_key.algorithm
            );
        }
    }
    // A signature must not verify for another message.
    let mut other = message.to_vec();
    other.push(0);
    assert!(
        verify_prehash(public_key, &hash.digest(&other), der_signature).is_err(),
        "the verifier accepted a signature for a different message"
    );
}
