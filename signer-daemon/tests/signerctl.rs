//! The `signerctl` binary against an in-process daemon: output formats that
//! openssl verifies, the touch prompt before the token blocks, and the
//! documented exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Card, Setup, TestDaemon};
use signer_daemon::ctl::exit;
use signer_daemon::policy::Policy;
use signer_lib::session::PinSource;
use signer_lib::{Pin, PinPolicy, SlotId, TouchPolicy};

fn signerctl(socket: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_signerctl"));
    c.arg("--socket").arg(socket).env_remove("SIGNER_SOCKET");
    c
}

/// Run a blocking command off the async runtime (the daemon runs on it).
async fn output(mut c: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || c.stdin(Stdio::null()).output().unwrap())
        .await
        .unwrap()
}

fn openssl_verify(pubkey_pem: &Path, sig: &Path, data: &Path, digest: &str) -> bool {
    let out = Command::new("openssl")
        .args(["dgst", &format!("-{digest}"), "-verify"])
        .arg(pubkey_pem)
        .arg("-signature")
        .arg(sig)
        .arg(data)
        .output()
        .expect("openssl is needed (tests/scripts/install-deps.sh installs it)");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_every_format_and_verify_with_openssl() {
    let card = Card::new(31);
    card.add_key(SlotId::Signature, PinPolicy::Never, TouchPolicy::Never);
    let mut d = TestDaemon::start(Setup::one_card(card)).await;
    let dir = d.dir.path().to_path_buf();
    let data = dir.join("root.json");
    std::fs::write(&data, b"{\"signed\":{\"_type\":\"root\"}}").unwrap();

    let mut c = signerctl(&d.socket);
    c.args(["pubkey", "--key", "9c"]);
    let out = output(c).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = dir.join("pub.pem");
    std::fs::write(&pem, &out.stdout).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-----BEGIN PUBLIC KEY-----"));

    // DER to a file, from --in.
    let sig = dir.join("sig.der");
    let mut c = signerctl(&d.socket);
    c.args(["sign", "--key", "9c", "--in"])
        .arg(&data)
        .arg("-o")
        .arg(&sig);
    let out = output(c).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(openssl_verify(&pem, &sig, &data, "sha256"));
    // The verifier can fail: another file does not verify.
    let other = dir.join("other");
    std::fs::write(&other, b"tampered").unwrap();
    assert!(!openssl_verify(&pem, &sig, &other, "sha256"));

    // From standard input, base64 on stdout.
    let data_bytes = std::fs::read(&data).unwrap();
    let socket = d.socket.clone();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = signerctl(&socket)
            .args(["sign", "--key", "signature", "--format", "base64"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&data_bytes).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8(out.stdout).unwrap().trim())
        .unwrap();
    let sig2 = dir.join("sig2.der");
    std::fs::write(&sig2, der).unwrap();
    assert!(openssl_verify(&pem, &sig2, &data, "sha256"));

    // A prehashed sha384 digest, raw r||s: convert to DER and verify with p256.
    let digest = {
        use sha2::Digest;
        sha2::Sha384::digest(std::fs::read(&data).unwrap())
    };
    let raw = dir.join("sig.raw");
    let mut c = signerctl(&d.socket);
    c.args(["sign", "--key", "9c", "--format", "raw", "--digest"])
        .arg(format!("sha384:{}", hex::encode(digest)))
        .arg("-o")
        .arg(&raw);
    let out = output(c).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = std::fs::read(&raw).unwrap();
    assert_eq!(raw.len(), 64);
    let s = p256::ecdsa::Signature::from_slice(&raw).unwrap();
    let sig3 = dir.join("sig3.der");
    std::fs::write(&sig3, s.to_der().as_bytes()).unwrap();
    assert!(openssl_verify(&pem, &sig3, &data, "sha384"));

    // list shows the key.
    let mut c = signerctl(&d.socket);
    c.arg("list");
    let out = output(c).await;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("token 31"), "{text}");
    assert!(text.contains("9c"), "{text}");

    let mut c = signerctl(&d.socket);
    c.arg("health");
    let out = output(c).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "SERVING");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prints_touch_your_yubikey_before_the_token_blocks() {
    let card = Card::new(32);
    card.add_key(SlotId::Signature, PinPolicy::Never, TouchPolicy::Always);
    card.gate.close();
    let mut d = TestDaemon::start(Setup::one_card(card.clone())).await;
    let sig = d.dir.path().join("sig.der");
    let mut child = signerctl(&d.socket)
        .args(["sign", "--key", "9c", "--digest"])
        .arg(format!("sha256:{}", "11".repeat(32)))
        .arg("-o")
        .arg(&sig)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stderr).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert!(line.starts_with("Touch your YubiKey now"), "{line:?}");
    // The prompt came while the token was waiting, and nothing is signed yet.
    assert_eq!(card.gate.waiting(), 1);
    assert!(!sig.exists());
    card.gate.open();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read(&sig).unwrap().len() > 60);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exit_codes_tell_usage_denied_token_and_not_found_apart() {
    let card = Card::new(33);
    card.add_key(SlotId::Signature, PinPolicy::Always, TouchPolicy::Never);
    let mut setup = Setup::one_card(card.clone());
    setup.pin = PinSource::Fixed(Pin::parse_pin("999999").unwrap());
    let mut d = TestDaemon::start(setup).await;
    let digest = format!("sha256:{}", "22".repeat(32));
    let run = |args: Vec<String>| {
        let mut c = signerctl(&d.socket);
        c.args(args);
        c
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    // Usage: clap, a malformed digest (before connecting), an invalid slot (from the daemon).
    let out = output(run(s(&["sign", "--bogus"]))).await;
    assert_eq!(out.status.code(), Some(exit::USAGE));
    let out = output(run(s(&[
        "sign",
        "--key",
        "9c",
        "--digest",
        "sha256:abcd",
        "--format",
        "base64",
    ])))
    .await;
    assert_eq!(out.status.code(), Some(exit::USAGE));
    assert!(String::from_utf8_lossy(&out.stderr).contains("32 bytes"));
    let out = output(run(s(&[
        "sign", "--key", "9b", "--digest", &digest, "--format", "base64",
    ])))
    .await;
    assert_eq!(
        out.status.code(),
        Some(exit::USAGE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("INVALID_ARGUMENT"));
    // Not found.
    let out = output(run(s(&[
        "sign", "--key", "9d", "--digest", &digest, "--format", "base64",
    ])))
    .await;
    assert_eq!(out.status.code(), Some(exit::NOT_FOUND));
    // Token error: the daemon's PIN is wrong.
    let out = output(run(s(&[
        "sign", "--key", "9c", "--digest", &digest, "--format", "base64",
    ])))
    .await;
    assert_eq!(out.status.code(), Some(exit::TOKEN));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tries left"));
    // Unreachable.
    let mut c = Command::new(env!("CARGO_BIN_EXE_signerctl"));
    c.arg("--socket")
        .arg(d.dir.path().join("nothing.sock"))
        .arg("list");
    let out = output(c).await;
    assert_eq!(out.status.code(), Some(exit::UNREACHABLE));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach signer-daemon"));
    d.stop().await;

    // Denied: a daemon whose policy lets nobody but another uid in.
    let card = Card::new(34);
    card.add_key(SlotId::Signature, PinPolicy::Never, TouchPolicy::Never);
    let mut setup = Setup::one_card(card);
    setup.policy = Some(Policy::only_daemon_uid(
        rustix::process::geteuid().as_raw() + 1,
    ));
    let mut d = TestDaemon::start(setup).await;
    let mut c = signerctl(&d.socket);
    c.args([
        "sign", "--key", "9c", "--format", "base64", "--digest", &digest,
    ]);
    let out = output(c).await;
    assert_eq!(out.status.code(), Some(exit::DENIED));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PERMISSION_DENIED"));
    // SIGNER_SOCKET is honoured.
    let mut c = Command::new(env!("CARGO_BIN_EXE_signerctl"));
    c.env("SIGNER_SOCKET", &d.socket).arg("list");
    let out = output(c).await;
    assert_eq!(out.status.code(), Some(exit::DENIED));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_prints_numbers_and_checks_every_signature() {
    let card = Card::new(35);
    card.add_key(SlotId::Signature, PinPolicy::Never, TouchPolicy::Never);
    let mut d = TestDaemon::start(Setup::one_card(card.clone())).await;
    let mut c = signerctl(&d.socket);
    c.args(["bench", "--key", "9c", "--clients", "4", "--requests", "25"]);
    let out = output(c).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("= 100 signatures, failures 0"), "{text}");
    assert!(text.contains("signatures/s"), "{text}");
    assert_eq!(
        card.signatures.load(std::sync::atomic::Ordering::SeqCst),
        100
    );
    d.stop().await;
}
