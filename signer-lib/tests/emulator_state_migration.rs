//! State files of the previous format version keep working: the checked-in
//! `tests/data/emulator-state-v1.state` was written by the code before the
//! version 2 format (RSA, Ed25519, X25519 keys). It loads, signs with its
//! keys (verified with RustCrypto), is written back as version 2 at the
//! first change, and reloads with every key intact.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256, Sha384};
use signature::Verifier;
use signature::hazmat::PrehashVerifier;
use signer_lib::emulator::state_file::{self, FORMAT_NAME, FORMAT_VERSION};
use signer_lib::emulator::{ApproveTouch, EmulatedToken};
use signer_lib::{
    Algorithm, Error, HashAlgorithm, ManagementKey, ManagementKeyAlgorithm, Pin, PinPolicy,
    SignRequest, SlotId, Token, TouchPolicy,
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/emulator-state-v1.state"
);

/// A private copy of the fixture (the checked-in file is never opened).
fn copy_fixture(dir: &Path) -> PathBuf {
    let path = dir.join("v1.state");
    std::fs::copy(FIXTURE, &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn header(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
    String::from_utf8(bytes[..nl].to_vec()).unwrap()
}

fn pin() -> Pin {
    Pin::new(b"123456", "PIN").unwrap()
}

/// Sign with the three ECDSA keys of the fixture and verify each signature
/// against the public key the token reports.
fn sign_with_fixture_keys(token: &mut EmulatedToken) {
    let pin = pin();
    for (slot, algorithm) in [
        (SlotId::Authentication, Algorithm::EccP256),
        (SlotId::Signature, Algorithm::EccP384),
        (SlotId::CardAuthentication, Algorithm::EccP256),
    ] {
        let key = token.key(slot).unwrap();
        assert_eq!(key.algorithm(), algorithm, "slot {slot}");
        let spki = key.public_key.spki_der.clone();
        match algorithm {
            Algorithm::EccP256 => {
                let digest = Sha256::digest(b"signed by a migrated key");
                let request =
                    SignRequest::ecdsa(slot, HashAlgorithm::Sha256, &digest).with_pin(Some(&pin));
                let sig = token.sign(&request, &mut |_| {}).unwrap();
                let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
                let sig = p256::ecdsa::DerSignature::try_from(sig.as_slice()).unwrap();
                vk.verify_prehash(&digest, &sig).unwrap();
            }
            _ => {
                let digest = Sha384::digest(b"signed by a migrated key");
                // 9C has PIN policy always: the request carries the PIN.
                let request =
                    SignRequest::ecdsa(slot, HashAlgorithm::Sha384, &digest).with_pin(Some(&pin));
                let sig = token.sign(&request, &mut |_| {}).unwrap();
                let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
                let sig = p384::ecdsa::DerSignature::try_from(sig.as_slice()).unwrap();
                vk.verify_prehash(&digest, &sig).unwrap();
            }
        }
    }
}

#[test]
fn a_version_1_file_loads_signs_and_is_rewritten_as_version_2() {
    let original = std::fs::read(FIXTURE).unwrap();
    assert!(
        header(Path::new(FIXTURE)).starts_with(&format!("{FORMAT_NAME} 1 sha256:")),
        "the fixture is a version 1 file"
    );
    assert_eq!(FORMAT_VERSION, 2);
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path());

    let mut token = EmulatedToken::open(&path, Arc::new(ApproveTouch)).unwrap();
    assert_eq!(token.info().unwrap().serial, 14_000_001);
    let before: Vec<_> = token
        .list_keys()
        .unwrap()
        .into_iter()
        .map(|k| (k.slot, k.public_key))
        .collect();
    assert_eq!(before.len(), 3);
    sign_with_fixture_keys(&mut token);
    // Signing with PIN policy once/always changes no persistent state, so
    // the file is still the version 1 original.
    assert_eq!(std::fs::read(&path).unwrap(), original);

    // A change of state: a new Ed25519 key. The file becomes version 2.
    token
        .authenticate(&ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap())
        .unwrap();
    let ed = token
        .generate_key(
            SlotId::KeyManagement,
            Algorithm::Ed25519,
            PinPolicy::Never,
            TouchPolicy::Never,
        )
        .unwrap();
    assert!(header(&path).starts_with(&format!("{FORMAT_NAME} 2 sha256:")));
    drop(token);

    // Reloaded: the old keys are the same keys and still sign; the new one
    // signs Ed25519 (the message itself).
    let mut token = EmulatedToken::open(&path, Arc::new(ApproveTouch)).unwrap();
    for (slot, public) in &before {
        assert_eq!(&token.key(*slot).unwrap().public_key, public);
    }
    sign_with_fixture_keys(&mut token);
    let message = b"a message, not a digest";
    let sig = token
        .sign(
            &SignRequest::ed25519(SlotId::KeyManagement, message),
            &mut |_| {},
        )
        .unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_public_key_der(&ed.public_key.spki_der).unwrap();
    vk.verify(
        message,
        &ed25519_dalek::Signature::from_slice(&sig).unwrap(),
    )
    .unwrap();
    // The checked-in fixture was never touched.
    assert_eq!(std::fs::read(FIXTURE).unwrap(), original);
}

#[test]
fn version_2_keeps_every_key_type_and_a_version_1_header_cannot_smuggle_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path());
    let mut token = EmulatedToken::open(&path, Arc::new(ApproveTouch)).unwrap();
    token
        .authenticate(&ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap())
        .unwrap();
    let mut generated = Vec::new();
    for (slot, algorithm) in [
        (SlotId::KeyManagement, Algorithm::Rsa1024),
        (SlotId::Retired(0x82), Algorithm::Rsa2048),
        (SlotId::Retired(0x83), Algorithm::Ed25519),
        (SlotId::Retired(0x84), Algorithm::X25519),
    ] {
        let info = token
            .generate_key(slot, algorithm, PinPolicy::Never, TouchPolicy::Never)
            .unwrap();
        generated.push((slot, info.public_key));
    }
    drop(token);
    let token_bytes = std::fs::read(&path).unwrap();
    let mut token = EmulatedToken::open(&path, Arc::new(ApproveTouch)).unwrap();
    for (slot, public) in &generated {
        assert_eq!(&token.key(*slot).unwrap().public_key, public, "slot {slot}");
    }
    drop(token);

    // The same body under a version 1 header (checksum fixed): refused as
    // corrupt, and the file is left as it was.
    let nl = token_bytes.iter().position(|&b| b == b'\n').unwrap();
    let body = &token_bytes[nl + 1..];
    let mut forged = format!(
        "{FORMAT_NAME} 1 sha256:{}\n",
        hex::encode(Sha256::digest(body))
    )
    .into_bytes();
    forged.extend_from_slice(body);
    std::fs::write(&path, &forged).unwrap();
    match EmulatedToken::open(&path, Arc::new(ApproveTouch)) {
        Err(Error::CorruptState { reason, .. }) => {
            assert!(reason.contains("version 1"), "{reason}");
        }
        other => panic!("expected CorruptState, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), forged);
    // decode() agrees without a file.
    assert!(state_file::decode(&path, &forged).is_err());
    assert!(state_file::decode(&path, &token_bytes).is_ok());
}
