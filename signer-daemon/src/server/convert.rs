//! Between the library's model and the `signer.v1` messages. Request enums
//! are checked strictly: an unspecified or unknown value is INVALID_ARGUMENT,
//! never a default.

use signer_lib::{Algorithm, HashAlgorithm, KeyInfo, KeyOrigin, PinPolicy, TokenKind, TouchPolicy};
use signer_proto::v1 as pb;
use tonic::Status;

use crate::worker::Snapshot;

/// The hash named by a request.
pub fn hash_from_proto(value: i32) -> Result<HashAlgorithm, Status> {
    match pb::HashAlgorithm::try_from(value) {
        Ok(pb::HashAlgorithm::Sha256) => Ok(HashAlgorithm::Sha256),
        Ok(pb::HashAlgorithm::Sha384) => Ok(HashAlgorithm::Sha384),
        Ok(pb::HashAlgorithm::Sha512) => Ok(HashAlgorithm::Sha512),
        Ok(pb::HashAlgorithm::Unspecified) => Err(Status::invalid_argument(
            "hash is required: HASH_ALGORITHM_SHA256, HASH_ALGORITHM_SHA384 or HASH_ALGORITHM_SHA512",
        )),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown hash value {value}: use HASH_ALGORITHM_SHA256 (1), _SHA384 (2) or _SHA512 (3)"
        ))),
    }
}

/// The proto spelling of a hash.
pub fn hash_to_proto(h: HashAlgorithm) -> pb::HashAlgorithm {
    match h {
        HashAlgorithm::Sha256 => pb::HashAlgorithm::Sha256,
        HashAlgorithm::Sha384 => pb::HashAlgorithm::Sha384,
        HashAlgorithm::Sha512 => pb::HashAlgorithm::Sha512,
    }
}

/// Signature encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ASN.1 DER.
    Der,
    /// r || s.
    Raw,
}

/// The format named by a request.
pub fn format_from_proto(value: i32) -> Result<Format, Status> {
    match pb::SignatureFormat::try_from(value) {
        Ok(pb::SignatureFormat::Der) => Ok(Format::Der),
        Ok(pb::SignatureFormat::Raw) => Ok(Format::Raw),
        Ok(pb::SignatureFormat::Unspecified) => Err(Status::invalid_argument(
            "format is required: SIGNATURE_FORMAT_DER or SIGNATURE_FORMAT_RAW",
        )),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown signature format value {value}: use SIGNATURE_FORMAT_DER (1) or SIGNATURE_FORMAT_RAW (2)"
        ))),
    }
}

/// The proto spelling of a format.
pub fn format_to_proto(f: Format) -> pb::SignatureFormat {
    match f {
        Format::Der => pb::SignatureFormat::Der,
        Format::Raw => pb::SignatureFormat::Raw,
    }
}

fn algorithm_to_proto(a: Algorithm) -> pb::Algorithm {
    match a {
        Algorithm::EccP256 => pb::Algorithm::EccP256,
        Algorithm::EccP384 => pb::Algorithm::EccP384,
        Algorithm::Rsa2048 => pb::Algorithm::Rsa2048,
        Algorithm::Ed25519 => pb::Algorithm::Ed25519,
        Algorithm::Rsa1024 => pb::Algorithm::Rsa1024,
        Algorithm::Rsa3072 => pb::Algorithm::Rsa3072,
        Algorithm::Rsa4096 => pb::Algorithm::Rsa4096,
        Algorithm::X25519 => pb::Algorithm::X25519,
    }
}

/// PIN policy (unresolved `Default` means the token cannot tell).
pub fn pin_policy_to_proto(p: PinPolicy) -> pb::PinPolicy {
    match p {
        PinPolicy::Default => pb::PinPolicy::Unspecified,
        PinPolicy::Never => pb::PinPolicy::Never,
        PinPolicy::Once => pb::PinPolicy::Once,
        PinPolicy::Always => pb::PinPolicy::Always,
    }
}

/// Touch policy (unresolved `Default` means the token cannot tell).
pub fn touch_policy_to_proto(p: TouchPolicy) -> pb::TouchPolicy {
    match p {
        TouchPolicy::Default => pb::TouchPolicy::Unspecified,
        TouchPolicy::Never => pb::TouchPolicy::Never,
        TouchPolicy::Always => pb::TouchPolicy::Always,
        TouchPolicy::Cached => pb::TouchPolicy::Cached,
    }
}

/// A key as the contract describes it.
pub fn key_to_proto(token_serial: u32, k: &KeyInfo) -> pb::Key {
    pb::Key {
        token_serial,
        slot: k.slot.to_string(),
        algorithm: algorithm_to_proto(k.algorithm()) as i32,
        key_id: k.key_id.clone(),
        public_key_der: k.public_key.spki_der.clone(),
        public_key_pem: k.public_key.to_pem().unwrap_or_default(),
        pin_policy: pin_policy_to_proto(k.pin_policy) as i32,
        touch_policy: touch_policy_to_proto(k.touch_policy) as i32,
        origin: match k.origin {
            Some(KeyOrigin::Generated) => pb::KeyOrigin::Generated,
            Some(KeyOrigin::Imported) => pb::KeyOrigin::Imported,
            None => pb::KeyOrigin::Unspecified,
        } as i32,
        certificate_der: k.certificate.clone().unwrap_or_default(),
    }
}

/// A token as the contract describes it.
pub fn token_to_proto(label: &str, s: &Snapshot) -> pb::Token {
    match &s.info {
        Some(info) => pb::Token {
            serial: info.serial,
            firmware: info.firmware.to_string(),
            model: info.model.clone(),
            kind: match info.kind {
                TokenKind::Hardware => pb::TokenKind::Hardware,
                TokenKind::Emulated => pb::TokenKind::Emulated,
            } as i32,
            reader: info.reader.clone().unwrap_or_default(),
            available: s.available,
            status: s.status.clone(),
        },
        None => pb::Token {
            model: format!("not reached yet ({label})"),
            available: false,
            status: s.status.clone(),
            ..Default::default()
        },
    }
}

/// Check a signature the token returned against the key and digest, and
/// encode it as asked. A token that returns a signature that does not verify
/// (a fault, or the wrong key) gets INTERNAL, and the signature is not released.
pub fn check_and_encode_signature(
    key: &KeyInfo,
    card_input: &[u8],
    der: &[u8],
    format: Format,
) -> Result<Vec<u8>, Status> {
    let raw = match key.public_key.verify_prehash(card_input, der) {
        Ok(raw) => raw,
        Err(signer_lib::Error::UnsupportedAlgorithm { algorithm }) => {
            return Err(Status::invalid_argument(format!(
                "unsupported algorithm {algorithm} for an ECDSA signature: ECDSA is for p256 and p384 keys"
            )));
        }
        Err(e) => {
            let what = match e {
                signer_lib::Error::Crypto { reason } => reason,
                other => other.to_string(),
            };
            tracing::error!(key_id = %key.key_id, slot = %key.slot, "{what}");
            return Err(Status::internal(format!(
                "the token returned an invalid signature ({what}); it was not released"
            )));
        }
    };
    Ok(match format {
        Format::Der => der.to_vec(),
        Format::Raw => raw,
    })
}

/// Check an RSA or Ed25519 signature the token returned (RAW: the
/// modulus-length integer, or Ed25519's 64 bytes) with signer-lib's
/// independent verifier ([`signer_lib::PublicKey::verify`]: the `rsa`
/// crate's PKCS#1 v1.5 / PSS verifiers, `ed25519-dalek`'s strict check)
/// and release it as it is. Unlike ECDSA on the emulated token (see
/// [`encode_emulated_signature`]) this holds for every token: RSA
/// verification costs a small fraction of the signature, and these paths
/// pad on the host, where a fault would otherwise go unnoticed. A
/// signature that does not verify is INTERNAL and is not released.
pub fn check_signature(
    key: &KeyInfo,
    scheme: signer_lib::SignatureScheme,
    input: &signer_lib::SignInput<'_>,
    signature: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    match key.public_key.verify(scheme, input, &signature) {
        Ok(()) => Ok(signature),
        Err(e) => {
            let what = match e {
                signer_lib::Error::Crypto { reason } => reason,
                other => other.to_string(),
            };
            tracing::error!(key_id = %key.key_id, slot = %key.slot, %scheme, "{what}");
            Err(Status::internal(format!(
                "the token returned an invalid {scheme} signature ({what}); it was not released"
            )))
        }
    }
}

/// Encode a signature the emulated token made, as asked, WITHOUT checking
/// it against the key. Only for signer-lib's `EmulatedToken`
/// ([`crate::worker::TokenWorker::signs_in_process`]):
///
/// Why the emulated token's signatures are not verified again here: the
/// release check exists because a card is a separate device whose answer may
/// be faulty or made with another key than the one listed. The emulated
/// token is neither: it signs in this process from the private scalar whose
/// public half *is* the listed key (the emulator derives the SPKI from the
/// scalar when it loads the state, and the worker checks the slot's key id
/// against the request's before signing). The arithmetic is RustCrypto's
/// `sign_prehash`, or, with signer-lib's `emulator-openssl` feature (this
/// crate's default), OpenSSL's `ECDSA_do_sign` for P-256
/// (`signer_lib::emulator::P256_SIGNING_BACKEND`). A RustCrypto verification
/// here would cost about ten times that OpenSSL signature (it costs about
/// three RustCrypto signatures, ≈300–450 µs on the benchmark machine,
/// against ≈30 µs; README "Performance") and would guard only against a wrong
/// answer from one of two widely used ECDSA implementations; that is
/// checked instead where it costs no caller anything: signer-lib's
/// `emulator::p256_key` tests verify the backend's signatures with
/// RustCrypto, the daemon and end-to-end suites verify what clients receive,
/// and the benchmark verifies every signature of every run. The DER is
/// still parsed, so a malformed answer is INTERNAL and never released.
/// Hardware tokens keep the full check ([`check_and_encode_signature`]).
pub fn encode_emulated_signature(
    key: &KeyInfo,
    der: &[u8],
    format: Format,
) -> Result<Vec<u8>, Status> {
    let malformed = |e: String| {
        tracing::error!(key_id = %key.key_id, slot = %key.slot, "{e}");
        Status::internal(format!(
            "the emulated token returned a malformed signature ({e}); it was not released"
        ))
    };
    let raw = match key.algorithm() {
        Algorithm::EccP256 => p256::ecdsa::Signature::from_der(der)
            .map(|s| s.to_bytes().to_vec())
            .map_err(|e| malformed(format!("not a DER P-256 ECDSA signature: {e}")))?,
        Algorithm::EccP384 => p384::ecdsa::Signature::from_der(der)
            .map(|s| s.to_bytes().to_vec())
            .map_err(|e| malformed(format!("not a DER P-384 ECDSA signature: {e}")))?,
        other => {
            return Err(Status::invalid_argument(format!(
                "unsupported algorithm {other} for an ECDSA signature: ECDSA is for p256 and p384 keys"
            )));
        }
    };
    Ok(match format {
        Format::Der => der.to_vec(),
        Format::Raw => raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn p256_key() -> (p256::ecdsa::SigningKey, KeyInfo) {
        use p256::pkcs8::EncodePublicKey;
        let sk = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
        let spki = sk.verifying_key().to_public_key_der().unwrap();
        let key = KeyInfo::new(
            signer_lib::SlotId::Signature,
            signer_lib::PublicKey {
                algorithm: Algorithm::EccP256,
                spki_der: spki.as_bytes().to_vec(),
            },
            None,
            PinPolicy::Never,
            TouchPolicy::Never,
            None,
        );
        (sk, key)
    }

    #[test]
    fn emulated_signatures_are_encoded_as_asked_and_malformed_ones_withheld() {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let (sk, key) = p256_key();
        let digest = [7u8; 32];
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
        let der = sig.to_der().as_bytes().to_vec();
        assert_eq!(
            encode_emulated_signature(&key, &der, Format::Der).unwrap(),
            der
        );
        let raw = encode_emulated_signature(&key, &der, Format::Raw).unwrap();
        assert_eq!(raw, sig.to_bytes().to_vec());
        // The same as the full check gives for a good signature.
        assert_eq!(
            raw,
            check_and_encode_signature(&key, &digest, &der, Format::Raw).unwrap()
        );
        for bad in [&der[..der.len() - 1], &[0x30, 0x00][..], &[][..]] {
            let e = encode_emulated_signature(&key, bad, Format::Der).unwrap_err();
            assert_eq!(e.code(), Code::Internal, "{bad:?}");
            assert!(e.message().contains("not released"), "{}", e.message());
        }
    }

    /// RSA and Ed25519 signatures are released only if they verify: one by
    /// another key, or over other data, is INTERNAL and withheld.
    #[test]
    fn rsa_and_ed25519_signatures_that_do_not_verify_are_withheld() {
        use ed25519_dalek::Signer as _;
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        use signer_lib::{SignInput, SignatureScheme};
        let sk = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
        let spki = sk.verifying_key().to_public_key_der().unwrap();
        let key = KeyInfo::new(
            signer_lib::SlotId::Signature,
            signer_lib::PublicKey {
                algorithm: Algorithm::Ed25519,
                spki_der: spki.as_bytes().to_vec(),
            },
            None,
            PinPolicy::Never,
            TouchPolicy::Never,
            None,
        );
        let input = SignInput::Message(b"message");
        let good = sk.sign(b"message").to_bytes().to_vec();
        assert_eq!(
            check_signature(&key, SignatureScheme::Ed25519, &input, good.clone()).unwrap(),
            good
        );
        let other = ed25519_dalek::SigningKey::from_bytes(&[2u8; 32])
            .sign(b"message")
            .to_bytes()
            .to_vec();
        let over_other = sk.sign(b"massage").to_bytes().to_vec();
        for bad in [other, over_other, good[..63].to_vec(), vec![]] {
            let e = check_signature(&key, SignatureScheme::Ed25519, &input, bad).unwrap_err();
            assert_eq!(e.code(), Code::Internal);
            assert!(e.message().contains("not released"), "{}", e.message());
        }

        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let rsa_sk = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let spki = rsa_sk.to_public_key().to_public_key_der().unwrap();
        let key = KeyInfo::new(
            signer_lib::SlotId::Signature,
            signer_lib::PublicKey {
                algorithm: Algorithm::Rsa1024,
                spki_der: spki.as_bytes().to_vec(),
            },
            None,
            PinPolicy::Never,
            TouchPolicy::Never,
            None,
        );
        let digest = HashAlgorithm::Sha256.digest(b"message");
        let input = SignInput::Digest {
            hash: HashAlgorithm::Sha256,
            digest: &digest,
        };
        let pkcs1 = rsa_sk
            .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
            .unwrap();
        assert!(check_signature(&key, SignatureScheme::RsaPkcs1v15, &input, pkcs1.clone()).is_ok());
        // The right key but the other padding: withheld.
        let e = check_signature(&key, SignatureScheme::RsaPss, &input, pkcs1).unwrap_err();
        assert_eq!(e.code(), Code::Internal);
        assert!(e.message().contains("rsa-pss"), "{}", e.message());
    }

    #[test]
    fn unspecified_and_unknown_enums_are_rejected() {
        assert_eq!(
            hash_from_proto(0).unwrap_err().code(),
            Code::InvalidArgument
        );
        let e = hash_from_proto(99).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("unknown hash value 99"));
        assert_eq!(hash_from_proto(2).unwrap(), HashAlgorithm::Sha384);
        assert_eq!(
            format_from_proto(0).unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            format_from_proto(-1).unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(format_from_proto(2).unwrap(), Format::Raw);
    }
}
