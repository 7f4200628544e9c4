//! The `yubikey` crate (0.9.0-rc.0, RustCrypto's YubiKey PIV client) as an
//! independent client of the emulated YubiKey behind pcscd + vpcd, against
//! keys our hardware backend provisioned: it finds the card by serial, reads
//! its version and the key's metadata, verifies the PIN, signs (the
//! signature verifies with p256 against our public key), and attests (the
//! attestation verifies against the card's root). It also pins down what
//! the crate does on drop: the card is reset (why the backend does not hold
//! cards through it; see `signer-lib/src/piv_client/mod.rs`), while
//! `disconnect(LeaveCard)` keeps the PIN verification.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::SystemTime;

use signature::hazmat::PrehashVerifier;
use signer_e2e::hardware::{EmulatedCardInReader, open_hardware};
use signer_e2e::pcsc_sandbox::Sandbox;
use signer_e2e::sandboxed_test;
use signer_lib::attestation::verify::Expected;
use signer_lib::attestation::{TrustAnchors, verify_attestation};
use signer_lib::emulator::InitOptions;
use signer_lib::testing::TouchSetup;
use signer_lib::{
    Algorithm, Attestation, FirmwareVersion, ManagementKey, ManagementKeyAlgorithm, PinPolicy,
    SlotId, Token, TouchPolicy,
};
use spki::DecodePublicKey;

fn _uses(_: &Sandbox) {}

sandboxed_test!(
    fn the_yubikey_crate_agrees_with_our_backend_and_emulator(sandbox) {
        let dir = tempfile::tempdir().unwrap();
        let card = EmulatedCardInReader::insert_new(
            sandbox.reader(0),
            dir.path(),
            &TouchSetup::approve(),
            &InitOptions::default(),
        )
        .unwrap();
        // Provision with our backend.
        let mut ours = open_hardware(Default::default()).unwrap();
        ours.authenticate(&ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap())
            .unwrap();
        let key = ours
            .generate_key(SlotId::Signature, Algorithm::EccP256, PinPolicy::Once, TouchPolicy::Never)
            .unwrap();
        drop(ours);

        let mut yk = yubikey::YubiKey::open_by_serial(yubikey::Serial(card.serial))
            .expect("the yubikey crate finds the emulated card by serial");
        assert_eq!(yk.serial().0, card.serial);
        let v = yk.version();
        assert_eq!(
            FirmwareVersion::new(v.major, v.minor, v.patch),
            FirmwareVersion::new(5, 7, 4)
        );
        let meta = yubikey::piv::metadata(&mut yk, yubikey::piv::SlotId::Signature).unwrap();
        use der::Encode;
        assert_eq!(
            meta.public.expect("metadata carries the public key").to_der().unwrap(),
            key.public_key.spki_der,
            "the crate reads our key's public key"
        );
        assert_eq!(yk.get_pin_retries().unwrap(), 3);
        yk.verify_pin(b"123456").unwrap();
        let digest = [0x5au8; 32];
        let sig = yubikey::piv::sign_data(
            &mut yk,
            &digest,
            yubikey::piv::AlgorithmId::EccP256,
            yubikey::piv::SlotId::Signature,
        )
        .unwrap();
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&key.public_key.spki_der).unwrap();
        let sig = p256::ecdsa::DerSignature::try_from(sig.as_slice()).unwrap();
        vk.verify_prehash(&digest, &sig).unwrap();
        assert!(vk.verify_prehash(&[0x5b; 32], &sig).is_err(), "the check can fail");

        let slot_certificate =
            yubikey::piv::attest(&mut yk, yubikey::piv::SlotId::Signature).unwrap().to_vec();
        let device_certificate = yk
            .fetch_object(yubikey::ObjectId::from(0x5fff01u32))
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let device_certificate = strip_certificate_object(&device_certificate);
        let mut anchors = TrustAnchors::empty();
        anchors.add_root_der("emulated card", card.root.clone()).unwrap();
        let v = verify_attestation(
            &Attestation {
                slot_certificate,
                device_certificate,
            },
            &anchors,
            SystemTime::now(),
            &Expected {
                public_key: Some(&key.public_key.spki_der),
                slot: Some(SlotId::Signature),
                serial: Some(card.serial),
            },
        );
        assert!(v.trusted, "{:?}", v.problems);

        // disconnect(LeaveCard) keeps the PIN verified for the next client...
        yk.disconnect(pcsc::Disposition::LeaveCard).map_err(|(_, e)| e).unwrap();
        let mut yk = yubikey::YubiKey::open_by_serial(yubikey::Serial(card.serial)).unwrap();
        yubikey::piv::sign_data(
            &mut yk,
            &digest,
            yubikey::piv::AlgorithmId::EccP256,
            yubikey::piv::SlotId::Signature,
        )
        .expect("PIN still verified after LeaveCard");
        // ...while dropping a YubiKey resets the card: the verification is gone.
        drop(yk);
        let mut yk = yubikey::YubiKey::open_by_serial(yubikey::Serial(card.serial)).unwrap();
        assert!(
            yubikey::piv::sign_data(
                &mut yk,
                &digest,
                yubikey::piv::AlgorithmId::EccP256,
                yubikey::piv::SlotId::Signature,
            )
            .is_err(),
            "after the crate's drop the card was reset and wants the PIN again"
        );
        yk.disconnect(pcsc::Disposition::LeaveCard).map_err(|(_, e)| e).unwrap();
    }
);

/// The f9 object holds a certificate wrapped as PIV stores it:
/// 70 <cert> 71 <info> FE <lrc>; take the certificate.
fn strip_certificate_object(object: &[u8]) -> Vec<u8> {
    let (tag, rest) = object.split_first().expect("empty f9 object");
    assert_eq!(*tag, 0x70, "f9 object is not a PIV certificate object");
    let (len, header) = match rest[0] {
        n if n < 0x80 => (n as usize, 1),
        0x81 => (rest[1] as usize, 2),
        0x82 => (((rest[1] as usize) << 8) | rest[2] as usize, 3),
        other => panic!("bad length byte {other:#x}"),
    };
    rest[header..header + len].to_vec()
}
