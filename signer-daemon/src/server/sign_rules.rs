//! What each key type signs: the rules of `SignRequest` (the table in
//! `proto/signer/v1/signer.proto`), checked without I/O once the request's
//! key is known, so that a request a key cannot honour never reaches the
//! token.
//!
//! | key       | input             | hash             | format   | padding         |
//! |-----------|-------------------|------------------|----------|-----------------|
//! | P-256/384 | digest or message | SHA-256/384/512  | DER, RAW | unspecified     |
//! | RSA       | digest or message | SHA-256/384/512  | RAW      | PKCS1V15 or PSS |
//! | Ed25519   | message only      | SHA-512          | RAW      | unspecified     |
//! | X25519    | cannot sign (FAILED_PRECONDITION)                                |
//!
//! ECDSA requests are checked exactly as before these rules existed (same
//! order, same codes, same messages), so that a client that knows nothing
//! of RSA or Ed25519 sees the daemon it was written against.

use signer_lib::{HashAlgorithm, KeyInfo, SignInput, SignatureScheme};
use signer_proto::v1 as pb;
use tonic::Status;

use super::convert::Format;
use crate::status::from_error;

/// The RSA padding a request names (`RsaPadding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// RSASSA-PKCS1-v1_5.
    Pkcs1v15,
    /// RSASSA-PSS, MGF1 with the same hash, salt length = hash length.
    Pss,
}

/// The padding field of a request: `None` when unspecified (required for
/// every key but RSA); an unknown value is INVALID_ARGUMENT whatever the key.
pub fn padding_from_proto(value: i32) -> Result<Option<Padding>, Status> {
    match pb::RsaPadding::try_from(value) {
        Ok(pb::RsaPadding::Unspecified) => Ok(None),
        Ok(pb::RsaPadding::Pkcs1v15) => Ok(Some(Padding::Pkcs1v15)),
        Ok(pb::RsaPadding::Pss) => Ok(Some(Padding::Pss)),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown RSA padding value {value}: use RSA_PADDING_PKCS1V15 (1) or RSA_PADDING_PSS (2) for RSA keys, and leave it unspecified (0) for other keys"
        ))),
    }
}

/// The proto spelling of a padding (`Unspecified` for none).
pub fn padding_to_proto(p: Option<Padding>) -> pb::RsaPadding {
    match p {
        None => pb::RsaPadding::Unspecified,
        Some(Padding::Pkcs1v15) => pb::RsaPadding::Pkcs1v15,
        Some(Padding::Pss) => pb::RsaPadding::Pss,
    }
}

fn padding_name(p: Padding) -> &'static str {
    match p {
        Padding::Pkcs1v15 => "RSA_PADDING_PKCS1V15",
        Padding::Pss => "RSA_PADDING_PSS",
    }
}

/// What the request asked for, before its key is known.
#[derive(Debug)]
pub struct Asked {
    /// `hash`.
    pub hash: HashAlgorithm,
    /// `format`.
    pub format: Format,
    /// `padding`.
    pub padding: Option<Padding>,
    /// The message, when the input was `message` (`None` for `digest`).
    pub message: Option<Vec<u8>>,
    /// The request's digest, or `hash` of its message.
    pub digest: Vec<u8>,
}

/// A request checked against its key: what the token is asked.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// The signature scheme.
    pub scheme: SignatureScheme,
    /// The hash (for Ed25519: SHA-512, the hash inside the signature).
    pub hash: HashAlgorithm,
    /// The signature encoding.
    pub format: Format,
    /// The RSA padding (`None` for other keys).
    pub padding: Option<Padding>,
    /// What the token signs: the digest, or the message for Ed25519.
    pub data: Vec<u8>,
    /// The digest reported in the response and the audit record: the
    /// signed digest, or for Ed25519 the SHA-512 of the signed message.
    pub digest: Vec<u8>,
}

impl Plan {
    /// The token's input.
    pub fn input(&self) -> SignInput<'_> {
        if self.scheme.signs_message() {
            SignInput::Message(&self.data)
        } else {
            SignInput::Digest {
                hash: self.hash,
                digest: &self.data,
            }
        }
    }
}

fn describe(key: &KeyInfo) -> String {
    format!(
        "key {} in slot {} ({})",
        key.key_id,
        key.slot,
        key.algorithm()
    )
}

/// Check `asked` against `key` (see the module table) and say what the
/// token signs. Every refusal names the rule and what to send instead.
pub fn plan(key: &KeyInfo, asked: Asked) -> Result<Plan, Status> {
    let algorithm = key.algorithm();
    if !algorithm.can_sign() {
        return Err(Status::failed_precondition(format!(
            "{}: {algorithm} keys agree keys (ECDH) and cannot sign; use a signing key (p256, p384, RSA or ed25519)",
            describe(key)
        )));
    }
    let scheme = match (SignatureScheme::implied_by(algorithm), asked.padding) {
        (Some(_), Some(p)) => {
            return Err(Status::invalid_argument(format!(
                "padding {} is for RSA keys only; {}: leave padding unspecified (RSA_PADDING_UNSPECIFIED)",
                padding_name(p),
                describe(key)
            )));
        }
        (Some(s), None) => s,
        (None, Some(Padding::Pkcs1v15)) if algorithm.is_rsa() => SignatureScheme::RsaPkcs1v15,
        (None, Some(Padding::Pss)) if algorithm.is_rsa() => SignatureScheme::RsaPss,
        (None, None) if algorithm.is_rsa() => {
            return Err(Status::invalid_argument(format!(
                "padding is required for RSA keys; {}: set padding to RSA_PADDING_PKCS1V15 (1) or RSA_PADDING_PSS (2)",
                describe(key)
            )));
        }
        (None, _) => {
            return Err(Status::invalid_argument(format!(
                "{} is of a type this daemon cannot sign with",
                describe(key)
            )));
        }
    };
    if scheme != SignatureScheme::Ecdsa && asked.format != Format::Raw {
        let encoding = if scheme == SignatureScheme::Ed25519 {
            "the 64 bytes R || S of RFC 8032"
        } else {
            "the signature integer as many bytes as the modulus (RFC 8017)"
        };
        return Err(Status::invalid_argument(format!(
            "{}, whose signatures have one encoding, {encoding}: set format to SIGNATURE_FORMAT_RAW (DER is for ECDSA)",
            describe(key)
        )));
    }
    let (data, digest) = if scheme == SignatureScheme::Ed25519 {
        let Some(message) = asked.message else {
            return Err(Status::invalid_argument(format!(
                "{}, which signs the message itself (RFC 8032 PureEdDSA; the YubiKey offers no prehashed Ed25519ph): send the message in `message`, not a digest",
                describe(key)
            )));
        };
        if asked.hash != HashAlgorithm::Sha512 {
            return Err(Status::invalid_argument(format!(
                "{}: Ed25519 hashes the message with SHA-512 inside the signature, so hash must be HASH_ALGORITHM_SHA512 (got {})",
                describe(key),
                asked.hash
            )));
        }
        (message, asked.digest)
    } else {
        (asked.digest.clone(), asked.digest)
    };
    let plan = Plan {
        scheme,
        hash: asked.hash,
        format: asked.format,
        padding: asked.padding,
        data,
        digest,
    };
    // Digest length, RSA modulus room, Ed25519 message size: signer-lib's
    // own check, the one every backend runs before card traffic.
    scheme
        .check(key.slot, algorithm, &plan.input())
        .map_err(|e| from_error(&e))?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use signer_lib::{Algorithm, PinPolicy, PublicKey, SlotId, TouchPolicy};
    use tonic::Code;

    fn key(algorithm: Algorithm) -> KeyInfo {
        KeyInfo::new(
            SlotId::Signature,
            PublicKey {
                algorithm,
                spki_der: vec![0x30, 0x00],
            },
            None,
            PinPolicy::Never,
            TouchPolicy::Never,
            None,
        )
    }

    fn asked(
        hash: HashAlgorithm,
        format: Format,
        padding: Option<Padding>,
        message: bool,
    ) -> Asked {
        let m = b"the message".to_vec();
        Asked {
            hash,
            format,
            padding,
            digest: hash.digest(&m),
            message: message.then_some(m),
        }
    }

    fn refused(k: Algorithm, a: Asked) -> Status {
        plan(&key(k), a).expect_err("accepted")
    }

    #[test]
    fn ecdsa_keys_keep_their_rules_and_refuse_a_padding() {
        use HashAlgorithm::*;
        for (k, h) in [(Algorithm::EccP256, Sha256), (Algorithm::EccP384, Sha384)] {
            for f in [Format::Der, Format::Raw] {
                for m in [false, true] {
                    let p = plan(&key(k), asked(h, f, None, m)).expect("plan");
                    assert_eq!(p.scheme, SignatureScheme::Ecdsa);
                    assert_eq!(p.data, p.digest);
                    assert_eq!(p.digest, h.digest(b"the message"));
                }
            }
            for pad in [Padding::Pkcs1v15, Padding::Pss] {
                let e = refused(k, asked(h, Format::Der, Some(pad), false));
                assert_eq!(e.code(), Code::InvalidArgument);
                assert!(e.message().contains("for RSA keys only"), "{}", e.message());
                assert!(e.message().contains(padding_name(pad)), "{}", e.message());
            }
        }
        // A digest of the wrong length: signer-lib's message, as before.
        let mut a = asked(HashAlgorithm::Sha256, Format::Der, None, false);
        a.digest.pop();
        let e = refused(Algorithm::EccP256, a);
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().contains("expected 32 bytes, got 31"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn rsa_keys_need_a_padding_and_the_raw_format() {
        use HashAlgorithm::*;
        for k in [
            Algorithm::Rsa1024,
            Algorithm::Rsa2048,
            Algorithm::Rsa3072,
            Algorithm::Rsa4096,
        ] {
            let e = refused(k, asked(Sha256, Format::Raw, None, false));
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(
                e.message().contains("padding is required"),
                "{}",
                e.message()
            );
            let e = refused(k, asked(Sha256, Format::Der, Some(Padding::Pss), false));
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(
                e.message().contains("SIGNATURE_FORMAT_RAW"),
                "{}",
                e.message()
            );
            for (pad, scheme) in [
                (Padding::Pkcs1v15, SignatureScheme::RsaPkcs1v15),
                (Padding::Pss, SignatureScheme::RsaPss),
            ] {
                for h in [Sha256, Sha384] {
                    for m in [false, true] {
                        let p = plan(&key(k), asked(h, Format::Raw, Some(pad), m)).expect("plan");
                        assert_eq!(p.scheme, scheme);
                        assert_eq!(p.padding, Some(pad));
                        assert_eq!(p.data, h.digest(b"the message"));
                    }
                }
            }
        }
        // PSS with SHA-512 needs 130 bytes: more than RSA-1024's 128.
        let e = refused(
            Algorithm::Rsa1024,
            asked(Sha512, Format::Raw, Some(Padding::Pss), false),
        );
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("does not fit"), "{}", e.message());
        assert!(
            plan(
                &key(Algorithm::Rsa2048),
                asked(Sha512, Format::Raw, Some(Padding::Pss), false)
            )
            .is_ok()
        );
    }

    #[test]
    fn ed25519_signs_the_message_with_sha512_named_and_nothing_else() {
        use HashAlgorithm::*;
        let p = plan(
            &key(Algorithm::Ed25519),
            asked(Sha512, Format::Raw, None, true),
        )
        .expect("plan");
        assert_eq!(p.scheme, SignatureScheme::Ed25519);
        assert_eq!(p.data, b"the message");
        assert_eq!(p.digest, Sha512.digest(b"the message"));
        assert_eq!(p.input(), SignInput::Message(b"the message"));

        let e = refused(Algorithm::Ed25519, asked(Sha512, Format::Raw, None, false));
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().contains("signs the message itself"),
            "{}",
            e.message()
        );
        for h in [Sha256, Sha384] {
            let e = refused(Algorithm::Ed25519, asked(h, Format::Raw, None, true));
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(
                e.message().contains("HASH_ALGORITHM_SHA512"),
                "{}",
                e.message()
            );
        }
        let e = refused(Algorithm::Ed25519, asked(Sha512, Format::Der, None, true));
        assert!(e.message().contains("R || S"), "{}", e.message());
        let e = refused(
            Algorithm::Ed25519,
            asked(Sha512, Format::Raw, Some(Padding::Pss), true),
        );
        assert!(e.message().contains("for RSA keys only"), "{}", e.message());
        // Longer than one GENERAL AUTHENTICATE carries.
        let big = vec![0u8; signer_lib::model::ED25519_MAX_MESSAGE + 1];
        let e = plan(
            &key(Algorithm::Ed25519),
            Asked {
                hash: Sha512,
                format: Format::Raw,
                padding: None,
                digest: Sha512.digest(&big),
                message: Some(big),
            },
        )
        .expect_err("too large");
        assert_eq!(e.code(), Code::InvalidArgument);
    }

    #[test]
    fn x25519_cannot_sign_and_unknown_paddings_are_refused() {
        let e = refused(
            Algorithm::X25519,
            asked(HashAlgorithm::Sha256, Format::Raw, None, false),
        );
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.message().contains("cannot sign"), "{}", e.message());
        assert_eq!(padding_from_proto(0).unwrap(), None);
        assert_eq!(padding_from_proto(2).unwrap(), Some(Padding::Pss));
        for bad in [3, -1, i32::MAX] {
            let e = padding_from_proto(bad).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.message().contains(&format!("value {bad}")));
        }
        assert_eq!(
            padding_to_proto(Some(Padding::Pkcs1v15)),
            pb::RsaPadding::Pkcs1v15
        );
    }
}
