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
    // Emulated roots are not trusted unless the configuration says so, and
    // the verdict says why.
    assert!(!verdict.trusted);
    assert!(
        verdict
            .problems
            .iter()
            .any(|p| p.contains("not a trust anchor")),
        "{:?}",
        verdict.problems
    );
    // signerctl: exit 7 (not trusted), the reason printed.
    let out = d
        .signerctl()
        .args(["attest", "--key", "9c"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("NO"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_in_emulated_root_gives_a_trusted_verdict_with_the_tokens_facts() {
    let mut d = Daemon::start(DaemonSetup {
        config: "trust_emulated_root = true\n".into(),
        ..DaemonSetup::default()
    });
    let key = d.keys[0].clone();
    let mut c = d.client().await;
    let r = c
        .attest(pb::AttestRequest { key: by_slot("9c") })
        .await
        .unwrap()
        .into_inner();
    let verdict = r.verdict.clone().unwrap();
    assert!(verdict.trusted, "{:?}", verdict.problems);
    // E2: firmware 5.7.4's hierarchy: attestation, f9, emulated PIV
    // Attestation A 1, emulated Attestation Intermediate A 1, emulated root.
    assert_eq!(
        verdict.chain_der.len(),
        5,
        "attestation, f9, 2 intermediates, root"
    );
    assert_eq!(verdict.chain_der[0], r.attestation_certificate_der);
    assert_eq!(verdict.chain_der[1], r.device_certificate_der);
    assert_eq!(verdict.attested_key_id, key.key_id);
    assert_eq!(verdict.slot, "9c");
    let info = verdict.info.unwrap();
    assert_eq!(info.serial, Some(10_000_001));
    assert_eq!(info.firmware, "5.7.4");
    assert_eq!(info.pin_policy, pb::PinPolicy::Once as i32);
    assert_eq!(info.touch_policy, pb::TouchPolicy::Always as i32);
    assert!(!info.form_factor.is_empty());

    // signerctl prints the verdict, exits 0, and writes the chain.
    let chain = d.dir.path().join("chain.pem");
    let out = d
        .signerctl()
        .args(["attest", "--key", "9c", "--out"])
        .arg(&chain)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("trusted:       yes"), "{text}");
    assert!(text.contains("10000001"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&chain)
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        5 // E2: the 5.7.4 chain (see above)
    );
    assert!(d.terminate().success());
}
