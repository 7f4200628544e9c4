//! Chain building and checking for a slot attestation.
//!
//! The chain is: slot attestation certificate ← f9 device certificate ←
//! (for firmware 5.7.4+: "Yubico PIV Attestation A 1/B 1" ← "Yubico
//! Attestation Intermediate A 1/B 1") ← a trusted root. Each link is checked
//! by name (issuer = subject of the next) and by signature (RSA PKCS#1 v1.5
//! with SHA-256/384/512, ECDSA P-256/P-384 with SHA-256/384/512, or Ed25519
//! for an owner's own CA or f9 key), every
//! certificate must be within its validity period (Yubico's certificates
//! carry notAfter 2052 or 9999-12-31, both fine), and Yubico's extensions
//! must decode. The trust anchors' own self-signatures are not checked: they
//! are trusted by configuration, not by signature.

use std::time::SystemTime;

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use sha2::Digest;
use signature::Verifier;
use spki::DecodePublicKey;
use x509_cert::Certificate;

use super::anchors::TrustAnchors;
use super::extensions::{self, AttestationInfo};
use crate::model::{Algorithm, PublicKey, SlotId, key_id_of};
use crate::token::Attestation;

const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const CURVE_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const CURVE_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// Ed25519 (RFC 8410): both the key and the signature algorithm.
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Longest chain accepted (slot, f9, two intermediates, root).
const MAX_CHAIN: usize = 5;

/// The result of checking an attestation.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// True only when the chain reaches a trusted root, every signature and
    /// validity period checks out, the extensions decode, and (when asked)
    /// the attested key and slot are the expected ones: `problems` is empty.
    pub trusted: bool,
    /// Everything that prevents trust, in words.
    pub problems: Vec<String>,
    /// The chain as built, DER, slot certificate first, root last (partial
    /// when it could not be completed).
    pub chain: Vec<Vec<u8>>,
    /// Where the root comes from ("Yubico", "emulated token", ...).
    pub root_source: Option<String>,
    /// Decoded Yubico extensions.
    pub info: AttestationInfo,
    /// The attested public key (SPKI DER).
    pub attested_public_key: Vec<u8>,
    /// Its key id (hex SHA-256 of the SPKI DER).
    pub attested_key_id: String,
    /// The slot named in the subject ("YubiKey PIV Attestation 9c").
    pub slot: Option<SlotId>,
}

/// What the caller expects the attestation to be about.
#[derive(Clone, Debug, Default)]
pub struct Expected<'a> {
    /// The public key (SPKI DER) the slot holds.
    pub public_key: Option<&'a [u8]>,
    /// The slot that was attested.
    pub slot: Option<SlotId>,
    /// The token's serial.
    pub serial: Option<u32>,
}

fn subject_cn(cert: &Certificate) -> String {
    cert.tbs_certificate().subject().to_string()
}

fn hash_for(alg: ObjectIdentifier, data: &[u8]) -> Option<Vec<u8>> {
    if alg == RSA_SHA256 || alg == ECDSA_SHA256 {
        Some(sha2::Sha256::digest(data).to_vec())
    } else if alg == RSA_SHA384 || alg == ECDSA_SHA384 {
        Some(sha2::Sha384::digest(data).to_vec())
    } else if alg == RSA_SHA512 || alg == ECDSA_SHA512 {
        Some(sha2::Sha512::digest(data).to_vec())
    } else {
        None
    }
}

/// Whether `issuer`'s key signed `cert`. An error says why not.
fn check_signature(cert: &Certificate, issuer: &Certificate) -> Result<(), String> {
    let alg = cert.signature_algorithm().oid;
    if cert.tbs_certificate().signature().oid != alg {
        return Err("inner and outer signature algorithms differ".into());
    }
    let tbs = cert
        .tbs_certificate()
        .to_der()
        .map_err(|e| format!("cannot encode the signed part: {e}"))?;
    let signature = cert
        .signature()
        .as_bytes()
        .ok_or("signature has unused bits")?;
    let spki = issuer.tbs_certificate().subject_public_key_info();
    let spki_der = spki
        .to_der()
        .map_err(|e| format!("cannot encode the issuer's key: {e}"))?;
    let key_alg = spki.algorithm.oid;
    let bad = |e: &dyn std::fmt::Display| format!("signature does not verify: {e}");
    if key_alg == ED25519 {
        // An owner's own attestation CA or f9 key may be Ed25519 (5.7+).
        if alg != ED25519 {
            return Err(format!(
                "algorithm {alg} does not match the issuer's Ed25519 key"
            ));
        }
        let key = ed25519_dalek::VerifyingKey::from_public_key_der(&spki_der)
            .map_err(|e| format!("issuer's Ed25519 key: {e}"))?;
        let sig = ed25519_dalek::Signature::from_slice(signature).map_err(|e| bad(&e))?;
        key.verify_strict(&tbs, &sig).map_err(|e| bad(&e))
    } else if key_alg == RSA_ENCRYPTION {
        let key = rsa::RsaPublicKey::from_public_key_der(&spki_der)
            .map_err(|e| format!("issuer's RSA key: {e}"))?;
        let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(|e| bad(&e))?;
        if alg == RSA_SHA256 {
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key)
                .verify(&tbs, &sig)
                .map_err(|e| bad(&e))
        } else if alg == RSA_SHA384 {
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(key)
                .verify(&tbs, &sig)
                .map_err(|e| bad(&e))
        } else if alg == RSA_SHA512 {
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(key)
                .verify(&tbs, &sig)
                .map_err(|e| bad(&e))
        } else {
            Err(format!(
                "algorithm {alg} does not match the issuer's RSA key"
            ))
        }
    } else {
        if ![ECDSA_SHA256, ECDSA_SHA384, ECDSA_SHA512].contains(&alg) {
            return Err(format!(
                "algorithm {alg} does not match the issuer's EC key"
            ));
        }
        let digest = hash_for(alg, &tbs).ok_or("unsupported hash")?;
        let curve: Option<ObjectIdentifier> = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as().ok());
        let algorithm = match curve {
            Some(c) if c == CURVE_P256 => Algorithm::EccP256,
            Some(c) if c == CURVE_P384 => Algorithm::EccP384,
            other => {
                return Err(format!(
                    "issuer key type {key_alg} (curve {other:?}) is not supported"
                ));
            }
        };
        PublicKey {
            algorithm,
            spki_der,
        }
        .verify_prehash(&digest, signature)
        .map(drop)
        .map_err(|e| bad(&e))
    }
}

fn issued_by(cert: &Certificate, issuer: &Certificate) -> bool {
    cert.tbs_certificate().issuer() == issuer.tbs_certificate().subject()
        && check_signature(cert, issuer).is_ok()
}

fn check_validity(what: &str, cert: &Certificate, now: SystemTime, problems: &mut Vec<String>) {
    let validity = cert.tbs_certificate().validity();
    if now < validity.not_before.to_system_time() {
        problems.push(format!(
            "{what} is not valid before {}",
            validity.not_before
        ));
    }
    if now > validity.not_after.to_system_time() {
        problems.push(format!("{what} expired on {}", validity.not_after));
    }
}

/// The slot in a subject "CN=YubiKey PIV Attestation 9c".
fn slot_of(cert: &Certificate) -> Option<SlotId> {
    let subject = subject_cn(cert);
    let name = subject.rsplit(' ').next()?;
    name.parse().ok()
}

/// Verify `attestation` against `anchors` at time `now`, checking it is
/// about what `expected` says. Never panics; every failure is a problem.
pub fn verify_attestation(
    attestation: &Attestation,
    anchors: &TrustAnchors,
    now: SystemTime,
    expected: &Expected<'_>,
) -> Verdict {
    let mut verdict = Verdict::default();
    let slot = match Certificate::from_der(&attestation.slot_certificate) {
        Ok(c) => c,
        Err(e) => {
            verdict
                .problems
                .push(format!("the attestation certificate is not DER X.509: {e}"));
            return verdict;
        }
    };
    let device = match Certificate::from_der(&attestation.device_certificate) {
        Ok(c) => c,
        Err(e) => {
            verdict
                .problems
                .push(format!("the device (f9) certificate is not DER X.509: {e}"));
            return verdict;
        }
    };
    let mut problems = Vec::new();
    match slot.tbs_certificate().subject_public_key_info().to_der() {
        Ok(spki) => {
            verdict.attested_key_id = key_id_of(&spki);
            verdict.attested_public_key = spki;
        }
        Err(e) => problems.push(format!("cannot encode the attested key: {e}")),
    }
    let (info, ext_problems) = extensions::decode(&slot);
    verdict.info = info;
    problems.extend(ext_problems);
    verdict.slot = slot_of(&slot);
    if verdict.slot.is_none() {
        problems.push(format!(
            "the attestation subject \"{}\" names no PIV slot",
            subject_cn(&slot)
        ));
    }

    // Slot certificate ← device certificate.
    verdict.chain.push(attestation.slot_certificate.clone());
    verdict.chain.push(attestation.device_certificate.clone());
    if slot.tbs_certificate().issuer() != device.tbs_certificate().subject() {
        problems.push(format!(
            "the attestation certificate's issuer \"{}\" is not the device certificate \"{}\"",
            slot.tbs_certificate().issuer(),
            subject_cn(&device)
        ));
    } else if let Err(e) = check_signature(&slot, &device) {
        problems.push(format!(
            "the attestation certificate is not signed by the device (f9) key: {e}"
        ));
    }
    check_validity("the attestation certificate", &slot, now, &mut problems);
    check_validity("the device (f9) certificate", &device, now, &mut problems);

    // Device certificate ← intermediates ← root.
    let mut current = device;
    let mut reached_root = false;
    while verdict.chain.len() < MAX_CHAIN {
        if let Some(root) = anchors.roots.iter().find(|r| issued_by(&current, &r.cert)) {
            verdict.chain.push(root.der.clone());
            verdict.root_source = Some(root.source.clone());
            check_validity("the root certificate", &root.cert, now, &mut problems);
            reached_root = true;
            break;
        }
        match anchors
            .intermediates
            .iter()
            .find(|i| issued_by(&current, &i.cert))
        {
            Some(next) => {
                verdict.chain.push(next.der.clone());
                check_validity(
                    &format!("the intermediate \"{}\"", subject_cn(&next.cert)),
                    &next.cert,
                    now,
                    &mut problems,
                );
                current = next.cert.clone();
            }
            None => break,
        }
    }
    if !reached_root {
        let named = anchors
            .roots
            .iter()
            .chain(anchors.intermediates.iter())
            .any(|a| a.cert.tbs_certificate().subject() == current.tbs_certificate().issuer());
        problems.push(if named {
            format!(
                "\"{}\" names the trusted issuer \"{}\" but its signature does not verify with that key",
                subject_cn(&current),
                current.tbs_certificate().issuer()
            )
        } else {
            format!(
                "no trusted root: \"{}\" is issued by \"{}\", which is not a trust anchor \
                 (an emulated token's root is trusted only when you opt in)",
                subject_cn(&current),
                current.tbs_certificate().issuer()
            )
        });
    }

    if let Some(key) = expected.public_key {
        if key != verdict.attested_public_key.as_slice() {
            problems.push("the attested public key is not the key in the slot".into());
        }
    }
    if let (Some(want), Some(got)) = (expected.slot, verdict.slot) {
        if want != got {
            problems.push(format!("the attestation is for slot {got}, not {want}"));
        }
    }
    if let (Some(want), Some(got)) = (expected.serial, verdict.info.serial) {
        if want != got {
            problems.push(format!(
                "the attestation is from serial {got}, not the token's {want}"
            ));
        }
    }
    verdict.trusted = problems.is_empty();
    verdict.problems = problems;
    verdict
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use der::Encode;
    use x509_cert::builder::{Builder, CertificateBuilder};

    use super::*;
    use crate::certificate::{FixedNames, common_name, random_serial};
    use crate::emulator::card::{Card, FactorySettings};
    use crate::emulator::{ApproveTouch, TouchTiming};
    use crate::model::{FirmwareVersion, PinPolicy, TouchPolicy};
    use crate::secret::{ManagementKey, ManagementKeyAlgorithm};

    /// A CA certificate for `subject_key`, signed by `issuer` (Ed25519).
    fn ed25519_ca(
        issuer: &ed25519_dalek::SigningKey,
        issuer_cn: &str,
        subject_key: &ed25519_dalek::VerifyingKey,
        subject_cn: &str,
    ) -> Vec<u8> {
        let now = SystemTime::now();
        let validity = x509_cert::time::Validity::new(
            x509_cert::time::Time::try_from(now - std::time::Duration::from_secs(60)).unwrap(),
            x509_cert::time::Time::try_from(now + std::time::Duration::from_secs(3600)).unwrap(),
        );
        CertificateBuilder::new(
            FixedNames {
                issuer: common_name(issuer_cn).unwrap(),
                subject: common_name(subject_cn).unwrap(),
                basic_constraints: Some(true),
            },
            random_serial().unwrap(),
            validity,
            spki::SubjectPublicKeyInfoOwned::from_key(subject_key).unwrap(),
        )
        .unwrap()
        .build::<_, ed25519_dalek::Signature>(issuer)
        .unwrap()
        .to_der()
        .unwrap()
    }

    /// An owner replaced f9 with an Ed25519 key and a certificate from
    /// their own Ed25519 CA: the chain verifies, and a changed signature
    /// byte anywhere does not.
    #[test]
    fn an_ed25519_attestation_ca_verifies() {
        let state = Card::manufacture(&FactorySettings {
            serial: 7,
            firmware: FirmwareVersion::new(5, 7, 4),
            management_key_algorithm: ManagementKeyAlgorithm::Aes192,
        })
        .unwrap();
        let mut card = Card::new(state, Arc::new(ApproveTouch), TouchTiming::default());
        card.authenticate_management_key(
            &ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap(),
        )
        .unwrap();
        let root_key = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
        let f9_seed = [2u8; 32];
        let f9_key = ed25519_dalek::SigningKey::from_bytes(&f9_seed);
        let root = ed25519_ca(&root_key, "Owner CA", &root_key.verifying_key(), "Owner CA");
        let f9 = ed25519_ca(&root_key, "Owner CA", &f9_key.verifying_key(), "Owner f9");
        card.import_key(
            SlotId::Attestation,
            Algorithm::Ed25519,
            &f9_seed,
            PinPolicy::Never,
            TouchPolicy::Never,
        )
        .unwrap();
        card.put_certificate(SlotId::Attestation, &f9).unwrap();
        card.generate_key(
            SlotId::Signature,
            Algorithm::EccP256,
            PinPolicy::Once,
            TouchPolicy::Never,
        )
        .unwrap();
        let attestation = Attestation {
            slot_certificate: card.attest(SlotId::Signature).unwrap(),
            device_certificate: card.certificate(SlotId::Attestation).unwrap(),
        };
        let mut anchors = TrustAnchors::empty();
        anchors.add_root_der("owner", root.clone()).unwrap();
        let v = verify_attestation(
            &attestation,
            &anchors,
            SystemTime::now(),
            &Expected::default(),
        );
        assert!(v.trusted, "{:?}", v.problems);
        assert_eq!(v.chain.len(), 3);
        assert_eq!(v.chain[2], root);
        // A changed last byte (inside the signature) of either certificate.
        for which in 0..2 {
            let mut bad = attestation.clone();
            let der = if which == 0 {
                &mut bad.slot_certificate
            } else {
                &mut bad.device_certificate
            };
            let last = der.len() - 1;
            der[last] ^= 1;
            let v = verify_attestation(&bad, &anchors, SystemTime::now(), &Expected::default());
            assert!(
                !v.trusted,
                "certificate {which} with a changed signature is trusted"
            );
        }
    }
}
