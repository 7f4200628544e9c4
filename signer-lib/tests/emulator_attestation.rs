//! Emulated attestations checked by a real client: `openssl verify` accepts
//! slot certificate → f9 device certificate → emulated root, and rejects a
//! chain to another token's root.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::Command;

use signer_lib::emulator::{EmulatedToken, InitOptions};
use signer_lib::{
    Algorithm, ManagementKey, ManagementKeyAlgorithm, PinPolicy, SlotId, Token, TouchPolicy,
};

fn pem(der: &[u8]) -> String {
    pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, der).unwrap()
}

fn openssl_verify(root: &Path, untrusted: &Path, leaf: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(root)
        .arg("-untrusted")
        .arg(untrusted)
        .arg(leaf)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "openssl is needed for this test (tests/scripts/install-deps.sh installs it): {e}"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && text.trim_end().ends_with(": OK"),
        text,
    )
}

fn token(dir: &Path, name: &str) -> EmulatedToken {
    let mut t = EmulatedToken::init(dir.join(name), &InitOptions::default()).unwrap();
    t.authenticate(&ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap())
        .unwrap();
    t
}

#[test]
fn openssl_verifies_the_attestation_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = token(dir.path(), "a.state");
    let b = token(dir.path(), "b.state");
    let root_a = dir.path().join("root-a.pem");
    let root_b = dir.path().join("root-b.pem");
    std::fs::write(&root_a, a.attestation_root_pem().unwrap()).unwrap();
    std::fs::write(&root_b, b.attestation_root_pem().unwrap()).unwrap();
    for (slot, alg) in [
        (SlotId::Signature, Algorithm::EccP256),
        (SlotId::Retired(0x82), Algorithm::EccP384),
    ] {
        a.generate_key(slot, alg, PinPolicy::Once, TouchPolicy::Always)
            .unwrap();
        let att = a.attest(slot).unwrap();
        let device = dir.path().join("device.pem");
        let leaf = dir.path().join("leaf.pem");
        std::fs::write(&device, pem(&att.device_certificate)).unwrap();
        std::fs::write(&leaf, pem(&att.slot_certificate)).unwrap();
        let (ok, text) = openssl_verify(&root_a, &device, &leaf);
        assert!(ok, "openssl rejects the {alg} attestation: {text}");
        let (ok, text) = openssl_verify(&root_b, &device, &leaf);
        assert!(
            !ok,
            "openssl accepted a chain to another token's root: {text}"
        );
    }
    // The f9 certificate survives reopening and is the same one.
    let first = a.attest(SlotId::Signature).unwrap().device_certificate;
    let path = a.path().to_path_buf();
    drop(a);
    let mut a =
        EmulatedToken::open(&path, signer_lib::emulator::TouchMode::Approve.source()).unwrap();
    assert_eq!(
        a.attest(SlotId::Signature).unwrap().device_certificate,
        first
    );
}
