//! The daemon binary on an emulated token: signatures through `signerctl` and
//! the gRPC client, verified by openssl and the RustCrypto crates; the touch
//! prompt; the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_support;

use daemon_support::{Daemon, DaemonSetup, KeySpec, by_slot, openssl_verify, sign_req, verify};
use sha2::Digest;
use signer_lib::{Algorithm, PinPolicy, SlotId, TouchPolicy};
use signer_proto::v1 as pb;

#[test]
fn signerctl_signs_files_openssl_verifies_p256_and_p384() {
    let mut d = Daemon::start(DaemonSetup {
        keys: vec![
            KeySpec::p256(SlotId::Signature),
            KeySpec {
                slot: SlotId::Authentication,
                algorithm: Algorithm::EccP384,
                pin: PinPolicy::Always,
                touch: TouchPolicy::Never,
            },
        ],
        ..DaemonSetup::default()
    });
    let dir = d.dir.path().to_path_buf();
    let data = dir.join("root.json");
    std::fs::write(&data, br#"{"signed":{"_type":"root","version":1}}"#).unwrap();

    // P-256, PIN once, touch always: signerctl prints the touch prompt.
    let sig = dir.join("root.json.sig");
    let out = d
        .signerctl()
        .args(["sign", "--key", "9c", "--in"])
        .arg(&data)
        .arg("-o")
        .arg(&sig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Touch your YubiKey now"));
    assert!(openssl_verify(&dir, &d.keys[0], "sha256", &sig, &data));
    let tampered = dir.join("tampered.json");
    std::fs::write(&tampered, b"{}").unwrap();
    assert!(!openssl_verify(&dir, &d.keys[0], "sha256", &sig, &tampered));

    // P-384, PIN always, by key id, sha384.
    let sig384 = dir.join("root.json.sig384");
    let out = d
        .signerctl()
        .args([
            "sign",
            "--hash",
            "sha384",
            "--key",
            &d.keys[1].key_id,
            "--in",
        ])
        .arg(&data)
        .arg("-o")
        .arg(&sig384)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Touch"));
    assert!(openssl_verify(&dir, &d.keys[1], "sha384", &sig384, &data));

    // pubkey prints the same key the library generated.
    let out = d
        .signerctl()
        .args(["pubkey", "--key", "9a"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        d.keys[1].public_key.to_pem().unwrap()
    );

    assert!(d.terminate().success());
    let lines = d.audit_lines();
    let signs: Vec<_> = lines
        .iter()
        .filter(|l| l["rpc"] == "SignWithEvents")
        .collect();
    assert_eq!(signs.len(), 2);
    assert_eq!(signs[0]["outcome"], "ok");
    assert_eq!(signs[0]["key_id"], d.keys[0].key_id.as_str());
    assert_eq!(
        signs[0]["digest"],
        hex::encode(sha2::Sha256::digest(std::fs::read(&data).unwrap()))
    );
    assert!(signs[0]["exe"].as_str().unwrap().ends_with("signerctl"));
    let text = std::fs::read_to_string(&d.audit).unwrap();
    assert!(
        !text.contains("123456"),
        "the PIN must not reach the audit log"
    );
    assert!(
        !d.log_text().contains("123456"),
        "the PIN must not reach the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_client_gets_der_and_raw_signatures_and_touch_events() {
    let mut d = Daemon::start(DaemonSetup::default());
    let key = d.keys[0].clone();
    let mut c = d.client().await;
    let digest = sha2::Sha256::digest(b"targets.json").to_vec();

    let r = c
        .sign(sign_req(by_slot("9c"), digest.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(verify(&key, &digest, &r.signature));
    assert!(!verify(&key, &sha2::Sha256::digest(b"other"), &r.signature));

    let mut req = sign_req(by_slot("9c"), digest.clone());
    req.format = pb::SignatureFormat::Raw as i32;
    let r = c.sign(req).await.unwrap().into_inner();
    assert_eq!(r.signature.len(), 64);
    let s = p256::ecdsa::Signature::from_slice(&r.signature).unwrap();
    assert!(verify(&key, &digest, s.to_der().as_bytes()));

    let mut stream = c
        .sign_with_events(sign_req(by_slot("9c"), digest.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        events.push(e.event.unwrap());
    }
    assert!(
        matches!(&events[0], pb::sign_event::Event::TouchRequired(t) if t.slot == "9c" && t.token_serial == 10_000_001),
        "{events:?}"
    );
    let Some(pb::sign_event::Event::Signature(r)) = events.last() else {
        panic!("{events:?}");
    };
    assert!(verify(&key, &digest, &r.signature));

    let tokens = c
        .list_tokens(pb::ListTokensRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tokens.tokens[0].kind, pb::TokenKind::Emulated as i32);
    assert_eq!(tokens.tokens[0].firmware, "5.7.4");
    assert!(d.terminate().success());
}

#[test]
fn a_refused_touch_is_aborted_and_signerctl_says_token_error() {
    let mut d = Daemon::start(DaemonSetup {
        touch: "deny",
        ..DaemonSetup::default()
    });
    let out = d
        .signerctl()
        .args(["sign", "--key", "9c", "--format", "base64", "--digest"])
        .arg(format!("sha256:{}", "33".repeat(32)))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Touch your YubiKey now"), "{stderr}");
    assert!(stderr.contains("ABORTED"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(d.terminate().success());
    let lines = d.audit_lines();
    let sign = lines.iter().find(|l| l["rpc"] == "SignWithEvents").unwrap();
    assert_eq!(sign["code"], "ABORTED");
    assert_eq!(sign["outcome"], "error");
}
