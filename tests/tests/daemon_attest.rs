//! Attest through the daemon binary: the attestation certificate certifies
//! the slot's key, and the chain (attestation ← device f9 ← emulated root)
//! verifies with openssl, independently of the daemon's own verdict.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_support;

use std::process::Command;

use daemon_support::{Daemon, DaemonSetup, by_slot};
use signer_lib::emulator::{ApproveTouch, EmulatedToken};
use signer_proto::v1 as pb;

/// DER certificate to PEM, by openssl.
fn pem(der: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.der");
    std::fs::write(&p, der).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_chain_verifies_with_openssl_and_certifies_the_slot_key() {
    let mut d = Daemon::start(DaemonSetup::default());
    let key = d.keys[0].clone();
    let mut c = d.client().await;
    let r = c
        .attest(pb::AttestRequest { key: by_slot("9c") })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.key.as_ref().unwrap().key_id, key.key_id);
    let verdict = r.verdict.clone().unwrap();
    assert_eq!(verdict.slot, "9c");
    // Emulated roots are not trusted unless the configuration says so.
    assert!(!verdict.trusted);
    assert!(d.terminate().success());

    // The emulated token's root, read from the state file after the daemon let go of it.
    let root = EmulatedToken::open(&d.state, std::sync::Arc::new(ApproveTouch))
        .unwrap()
        .attestation_root_pem()
        .unwrap();
    let dir = d.dir.path();
    std::fs::write(dir.join("root.pem"), root).unwrap();
    std::fs::write(dir.join("device.pem"), pem(&r.device_certificate_der)).unwrap();
    std::fs::write(
        dir.join("attestation.pem"),
        pem(&r.attestation_certificate_der),
    )
    .unwrap();
    let verify = |ca: &str| {
        Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                ca,
                "-untrusted",
                "device.pem",
                "attestation.pem",
            ])
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let out = verify("root.pem");
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: the device certificate is not a root.
    assert!(!verify("device.pem").status.success());

    // The attested public key is the slot's key.
    let out = Command::new("openssl")
        .args(["x509", "-in", "attestation.pem", "-noout", "-pubkey"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        key.public_key.to_pem().unwrap()
    );
}
