//! An independent check of a PIV attestation, written against Yubico's
//! published format (developers.yubico.com/PIV/Introduction/PIV_attestation)
//! with `x509-cert` and RustCrypto's verifiers, sharing no code with the
//! issuing side:
//!
//! - the slot certificate holds exactly the attested public key, is issued by
//!   the f9 device certificate's subject and signed by the f9 key;
//! - the device certificate is issued and signed by one of the roots (or by
//!   a chain of intermediates up to one, as from firmware 5.7.4), which is
//!   self-signed; ECDSA and RSA PKCS#1 v1.5 issuers (YubiKey 4's RSA f9);
//! - every certificate is valid now;
//! - Yubico's extensions: `1.3.6.1.4.1.41482.3.3` firmware (3 raw bytes),
//!   `.3.7` serial (DER INTEGER), `.3.8` PIN and touch policy (2 raw bytes),
//!   `.3.9` form factor (1 raw byte).

use std::time::SystemTime;

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::Certificate;

use crate::model::{HashAlgorithm, KeyInfo, PublicKey, SignInput, SignatureScheme, TokenInfo};
use crate::token::Attestation;

const OID_FIRMWARE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.3");
const OID_SERIAL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.7");
const OID_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.8");
const OID_FORM_FACTOR: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.9");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

fn parse(what: &str, der: &[u8]) -> Certificate {
    Certificate::from_der(der).unwrap_or_else(|e| panic!("{what} is not a DER certificate: {e}"))
}

fn spki_der(cert: &Certificate) -> Vec<u8> {
    cert.tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .unwrap_or_else(|e| panic!("cannot encode SPKI: {e}"))
}

fn spki_public_key(cert: &Certificate) -> PublicKey {
    PublicKey::from_spki_der(&spki_der(cert))
        .unwrap_or_else(|e| panic!("issuer key is not a PIV key type: {e}"))
}

/// Whether `issuer` signed `cert` (and is named as its issuer).
fn signed_by(what: &str, cert: &Certificate, issuer: &Certificate) -> Result<(), String> {
    let tbs = cert
        .tbs_certificate()
        .to_der()
        .map_err(|e| format!("{what}: cannot encode TBS: {e}"))?;
    let alg = cert.signature_algorithm().oid;
    if cert.tbs_certificate().signature().oid != alg {
        return Err(format!(
            "{what}: inner and outer signature algorithms differ"
        ));
    }
    let (scheme, hash) = if alg == ECDSA_SHA256 {
        (SignatureScheme::Ecdsa, HashAlgorithm::Sha256)
    } else if alg == ECDSA_SHA384 {
        (SignatureScheme::Ecdsa, HashAlgorithm::Sha384)
    } else if alg == ECDSA_SHA512 {
        (SignatureScheme::Ecdsa, HashAlgorithm::Sha512)
    } else if alg == RSA_SHA256 {
        (SignatureScheme::RsaPkcs1v15, HashAlgorithm::Sha256)
    } else if alg == RSA_SHA384 {
        (SignatureScheme::RsaPkcs1v15, HashAlgorithm::Sha384)
    } else if alg == RSA_SHA512 {
        (SignatureScheme::RsaPkcs1v15, HashAlgorithm::Sha512)
    } else {
        return Err(format!("{what}: unexpected signature algorithm {alg}"));
    };
    let digest = hash.digest(&tbs);
    let signature = cert
        .signature()
        .as_bytes()
        .ok_or_else(|| format!("{what}: signature has unused bits"))?;
    super::verify::verify_scheme(
        &spki_public_key(issuer),
        scheme,
        &SignInput::Digest {
            hash,
            digest: &digest,
        },
        signature,
    )
    .map_err(|e| format!("{what}: signature does not verify: {e}"))?;
    if cert.tbs_certificate().issuer() != issuer.tbs_certificate().subject() {
        return Err(format!("{what}: issuer name is not the signer's subject"));
    }
    Ok(())
}

fn check_signed_by(what: &str, cert: &Certificate, issuer: &Certificate) {
    if let Err(e) = signed_by(what, cert, issuer) {
        panic!("{e}");
    }
}

fn check_valid_now(what: &str, cert: &Certificate) {
    let now = SystemTime::now();
    let validity = cert.tbs_certificate().validity();
    assert!(
        validity.not_before.to_system_time() <= now,
        "{what}: not valid yet"
    );
    assert!(
        now <= validity.not_after.to_system_time(),
        "{what}: expired"
    );
}

fn extension(cert: &Certificate, oid: ObjectIdentifier) -> &[u8] {
    cert.tbs_certificate()
        .extensions()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == oid))
        .map(|e| e.extn_value.as_bytes())
        .unwrap_or_else(|| panic!("attestation has no extension {oid}"))
}

/// Decoded Yubico extensions of a slot attestation certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedExtensions {
    /// Firmware (major, minor, patch).
    pub firmware: [u8; 3],
    /// Device serial.
    pub serial: u32,
    /// PIN policy byte.
    pub pin_policy: u8,
    /// Touch policy byte.
    pub touch_policy: u8,
    /// Form factor byte.
    pub form_factor: u8,
}

/// Decode the Yubico extensions of a slot attestation certificate (DER).
pub fn decode_extensions(slot_certificate: &[u8]) -> DecodedExtensions {
    let cert = parse("slot certificate", slot_certificate);
    let firmware: [u8; 3] = extension(&cert, OID_FIRMWARE)
        .try_into()
        .unwrap_or_else(|_| panic!("firmware extension is not 3 bytes"));
    let serial_der = extension(&cert, OID_SERIAL);
    let serial = der::asn1::Int::from_der(serial_der)
        .unwrap_or_else(|e| panic!("serial extension is not a DER INTEGER: {e}"));
    let serial_bytes = serial.as_bytes();
    assert!(
        serial_bytes.first().is_none_or(|b| b & 0x80 == 0),
        "serial is negative"
    );
    let serial = serial_bytes
        .iter()
        .skip_while(|&&b| b == 0)
        .try_fold(0u32, |acc, &b| {
            acc.checked_mul(256).map(|a| a + u32::from(b))
        })
        .unwrap_or_else(|| panic!("serial does not fit 32 bits"));
    let policy = extension(&cert, OID_POLICY);
    assert_eq!(policy.len(), 2, "policy extension is not 2 bytes");
    let form_factor = extension(&cert, OID_FORM_FACTOR);
    assert_eq!(form_factor.len(), 1, "form factor extension is not 1 byte");
    DecodedExtensions {
        firmware,
        serial,
        pin_policy: policy[0],
        touch_policy: policy[1],
        form_factor: form_factor[0],
    }
}

/// Check `attestation` of `key` on the token described by `info` against
/// `roots` (DER). Panics with the first problem.
pub fn check(attestation: &Attestation, roots: &[Vec<u8>], key: &KeyInfo, info: &TokenInfo) {
    let slot = parse("slot certificate", &attestation.slot_certificate);
    let device = parse("device (f9) certificate", &attestation.device_certificate);
    assert_eq!(
        spki_der(&slot),
        key.public_key.spki_der,
        "the slot certificate must hold the attested public key"
    );
    check_signed_by("slot certificate", &slot, &device);
    // Up from the device certificate: intermediates (firmware 5.7.4+
    // hierarchies; the emulated roots carry theirs, see
    // `crate::attestation::anchors::embedded_intermediates`), then a
    // self-signed root among `roots`.
    let roots: Vec<Certificate> = roots.iter().map(|r| parse("root", r)).collect();
    let mut intermediates = Vec::new();
    for r in roots.iter() {
        let der = r.to_der().unwrap_or_else(|e| panic!("root: {e}"));
        for i in crate::attestation::anchors::embedded_intermediates(&der)
            .unwrap_or_else(|e| panic!("root's intermediates: {e}"))
        {
            intermediates.push(parse("intermediate", &i));
        }
    }
    let mut chain = vec![device.clone()];
    let root = loop {
        let last = chain.last().unwrap_or_else(|| panic!("empty chain"));
        let issuer = last.tbs_certificate().issuer();
        if let Some(root) = roots
            .iter()
            .find(|r| r.tbs_certificate().subject() == issuer)
        {
            check_signed_by("certificate below the root", last, root);
            break root.clone();
        }
        let Some(next) = intermediates
            .iter()
            .find(|i| i.tbs_certificate().subject() == issuer)
        else {
            panic!("no root or intermediate matches the issuer of the device certificate's chain");
        };
        assert!(chain.len() < 4, "attestation chain too long");
        check_signed_by("certificate below an intermediate", last, next);
        chain.push(next.clone());
    };
    check_signed_by("root certificate (self-signed)", &root, &root);
    for (what, cert) in [("slot", &slot), ("root", &root)] {
        check_valid_now(what, cert);
    }
    for cert in &chain {
        check_valid_now("device or intermediate", cert);
    }
    let ext = decode_extensions(&attestation.slot_certificate);
    assert_eq!(ext.firmware, info.firmware.to_bytes(), "firmware extension");
    assert_eq!(ext.serial, info.serial, "serial extension");
    assert_eq!(
        ext.pin_policy,
        key.pin_policy.to_byte(),
        "PIN policy extension"
    );
    assert_eq!(
        ext.touch_policy,
        key.touch_policy.to_byte(),
        "touch policy extension"
    );
    // A tampered slot certificate must not verify (the check can fail).
    let mut tampered = attestation.slot_certificate.clone();
    if let Some(last) = tampered.last_mut() {
        *last ^= 0x01;
    }
    if let Ok(t) = Certificate::from_der(&tampered) {
        assert!(
            signed_by("tampered", &t, &device).is_err(),
            "a tampered attestation verified"
        );
    }
}
