//! Attestation verification: real YubiKey attestations against Yubico's
//! shipped roots, emulator chains with and without opting in to the
//! emulated root, and tampered chains that must not be trusted, each with a
//! specific problem.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, SystemTime};

use signer_lib::attestation::anchors::pem_certificates;
use signer_lib::attestation::verify::Expected;
use signer_lib::attestation::{FormFactor, TrustAnchors, verify_attestation};
use signer_lib::emulator::{EmulatedToken, InitOptions};
use signer_lib::{
    Algorithm, Attestation, FirmwareVersion, ManagementKey, ManagementKeyAlgorithm, PinPolicy,
    SlotId, Token, TouchPolicy,
};

const F9: &str = include_str!("../testdata/attestation/yubikey-5-fips-f9.pem");
const SLOT_9A: &str = include_str!("../testdata/attestation/yubikey-5-fips-9a-p256.pem");
const SLOT_9C: &str = include_str!("../testdata/attestation/yubikey-5-fips-9c-rsa2048.pem");

fn der(pem: &str) -> Vec<u8> {
    pem_certificates(pem).unwrap().remove(0)
}

fn real(slot_pem: &str) -> Attestation {
    Attestation {
        slot_certificate: der(slot_pem),
        device_certificate: der(F9),
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn real_yubikey_attestations_chain_to_yubicos_root() {
    let anchors = TrustAnchors::yubico().unwrap();
    for (pem, slot, pin) in [
        (SLOT_9A, SlotId::Authentication, PinPolicy::Once),
        (SLOT_9C, SlotId::Signature, PinPolicy::Always),
    ] {
        let v = verify_attestation(
            &real(pem),
            &anchors,
            now(),
            &Expected {
                slot: Some(slot),
                serial: Some(28557046),
                ..Default::default()
            },
        );
        assert!(v.trusted, "{slot}: {:?}", v.problems);
        assert_eq!(v.chain.len(), 3, "slot, f9, root");
        assert_eq!(v.root_source.as_deref(), Some("Yubico"));
        assert_eq!(v.slot, Some(slot));
        assert_eq!(v.info.serial, Some(28557046));
        assert_eq!(v.info.firmware, Some(FirmwareVersion::new(5, 4, 3)));
        assert_eq!(v.info.pin_policy, Some(pin));
        assert_eq!(v.info.touch_policy, Some(TouchPolicy::Never));
        assert_eq!(v.info.form_factor, Some(FormFactor::UsbAKeychain));
        assert!(v.info.fips, "form factor 0x81 flags FIPS");
    }
}

#[test]
fn real_attestation_is_not_trusted_without_yubicos_root_or_after_tampering() {
    let none = verify_attestation(
        &real(SLOT_9A),
        &TrustAnchors::empty(),
        now(),
        &Expected::default(),
    );
    assert!(!none.trusted);
    assert!(
        none.problems
            .iter()
            .any(|p| p.contains("no trusted root") && p.contains("Yubico PIV Root CA")),
        "{:?}",
        none.problems
    );
    let anchors = TrustAnchors::yubico().unwrap();
    // A flipped bit in the slot certificate's signature.
    let mut att = real(SLOT_9A);
    let n = att.slot_certificate.len();
    att.slot_certificate[n - 5] ^= 0x01;
    let v = verify_attestation(&att, &anchors, now(), &Expected::default());
    assert!(!v.trusted);
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("not signed by the device")),
        "{:?}",
        v.problems
    );
    // A flipped bit in the f9 certificate's signature: the root no longer verifies it.
    let mut att = real(SLOT_9A);
    let n = att.device_certificate.len();
    att.device_certificate[n - 5] ^= 0x01;
    let v = verify_attestation(&att, &anchors, now(), &Expected::default());
    assert!(!v.trusted);
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("signature does not verify with that key")),
        "{:?}",
        v.problems
    );
    // Swapped: the 9c attestation presented as the 9a key's.
    let v = verify_attestation(
        &real(SLOT_9C),
        &anchors,
        now(),
        &Expected {
            public_key: Some(&der_spki(SLOT_9A)),
            slot: Some(SlotId::Authentication),
            serial: None,
        },
    );
    assert!(!v.trusted);
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("not the key in the slot")),
        "{:?}",
        v.problems
    );
    assert!(
        v.problems.iter().any(|p| p.contains("slot 9c, not 9a")),
        "{:?}",
        v.problems
    );
    // Expired: Yubico's pre-5.7.4 certificates end in April 2052.
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(2_700_000_000);
    let v = verify_attestation(&real(SLOT_9A), &anchors, later, &Expected::default());
    assert!(!v.trusted);
    assert!(
        v.problems.iter().any(|p| p.contains("expired")),
        "{:?}",
        v.problems
    );
    // Garbage never panics.
    for garbage in [vec![], vec![0x30], vec![0xff; 64]] {
        let v = verify_attestation(
            &Attestation {
                slot_certificate: garbage.clone(),
                device_certificate: der(F9),
            },
            &anchors,
            now(),
            &Expected::default(),
        );
        assert!(!v.trusted && !v.problems.is_empty());
        let v = verify_attestation(
            &Attestation {
                slot_certificate: der(SLOT_9A),
                device_certificate: garbage,
            },
            &anchors,
            now(),
            &Expected::default(),
        );
        assert!(!v.trusted && !v.problems.is_empty());
    }
}

fn der_spki(pem: &str) -> Vec<u8> {
    use der::{Decode, Encode};
    let cert = x509_cert::Certificate::from_der(&der(pem)).unwrap();
    cert.tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .unwrap()
}

fn emulated(dir: &std::path::Path, name: &str, serial: u32) -> EmulatedToken {
    let opts = InitOptions {
        serial: Some(serial),
        ..InitOptions::default()
    };
    let mut t = EmulatedToken::init(dir.join(name), &opts).unwrap();
    t.authenticate(&ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap())
        .unwrap();
    t
}

#[test]
fn emulated_attestations_are_trusted_only_with_their_root() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = emulated(dir.path(), "a.state", 10_000_001);
    let b = emulated(dir.path(), "b.state", 10_000_002);
    for (slot, alg, pin, touch) in [
        (
            SlotId::Signature,
            Algorithm::EccP256,
            PinPolicy::Once,
            TouchPolicy::Always,
        ),
        (
            SlotId::Retired(0x82),
            Algorithm::EccP384,
            PinPolicy::Never,
            TouchPolicy::Cached,
        ),
    ] {
        let public = a.generate_key(slot, alg, pin, touch).unwrap();
        let att = a.attest(slot).unwrap();
        let expected = Expected {
            public_key: Some(&public.public_key.spki_der),
            slot: Some(slot),
            serial: Some(10_000_001),
        };

        let yubico = TrustAnchors::yubico().unwrap();
        let v = verify_attestation(&att, &yubico, now(), &expected);
        assert!(
            !v.trusted,
            "an emulated attestation must not chain to Yubico"
        );
        assert!(
            v.problems.iter().any(|p| p.contains("opt in")),
            "{:?}",
            v.problems
        );

        let mut opted = TrustAnchors::yubico().unwrap();
        opted
            .add_root_pem("emulated token", &a.attestation_root_pem().unwrap())
            .unwrap();
        let v = verify_attestation(&att, &opted, now(), &expected);
        assert!(v.trusted, "{:?}", v.problems);
        assert_eq!(v.root_source.as_deref(), Some("emulated token"));
        assert_eq!(v.info.serial, Some(10_000_001));
        assert_eq!(v.info.firmware, Some(a.info().unwrap().firmware));
        assert_eq!(v.info.pin_policy, Some(pin));
        assert_eq!(v.info.touch_policy, Some(touch));
        assert_eq!(v.attested_public_key, public.public_key.spki_der);

        let mut other = TrustAnchors::empty();
        other
            .add_root_pem("emulated token", &b.attestation_root_pem().unwrap())
            .unwrap();
        let v = verify_attestation(&att, &other, now(), &expected);
        assert!(
            !v.trusted,
            "another token's root must not verify this chain"
        );
    }
}
