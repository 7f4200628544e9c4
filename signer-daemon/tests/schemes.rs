//! RSA (PKCS#1 v1.5, PSS) and Ed25519 through the real daemon serving an
//! emulated token: `signerctl sign` and the gRPC `Sign`/`SignWithEvents`
//! calls, every signature checked by openssl and by signer-client's
//! RustCrypto verification; every refusal of the `SignRequest` table
//! (proto/signer/v1/signer.proto) with its gRPC code and message; and the
//! ECDSA requests of a client that does not know the `padding` field,
//! unchanged on the wire.
//!
//! Needs `openssl` (tests/scripts/install-deps.sh); without it the tests
//! fail naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message as _;
use sha2::Digest;
use signer_client::{Client, Payload, Signing, verify_signature};
use signer_proto::v1 as pb;
use tonic::Code;

const DAEMON: &str = env!("CARGO_BIN_EXE_signer-daemon");
const SIGNERCTL: &str = env!("CARGO_BIN_EXE_signerctl");
const SERIAL: u32 = 44_444_444;

/// The slots of the test token.
const RSA2048: &str = "9a";
const ED25519: &str = "9c";
const X25519: &str = "9d";
const P256: &str = "9e";
const RSA1024: &str = "82";

struct Out {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

fn output(cmd: &mut Command) -> Out {
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: o.stdout,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// openssl, or a failure naming it.
fn openssl() -> Command {
    let probe = Command::new("openssl").arg("version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "openssl is missing: install it (tests/scripts/install-deps.sh installs the Debian package openssl)"
    );
    Command::new("openssl")
}

/// The daemon serving one emulated token with an RSA-2048, an Ed25519, an
/// X25519, a P-256 and an RSA-1024 key (PIN policy once, touch never).
struct Fixture {
    dir: tempfile::TempDir,
    socket: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Fixture {
    fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("token.state");
        let out = output(
            Command::new(DAEMON)
                .args(["emulated", "init", "--state"])
                .arg(&state)
                .args(["--serial", &SERIAL.to_string()]),
        );
        assert_eq!(out.code, 0, "emulated init: {}", out.stderr);
        for (slot, alg) in [
            (RSA2048, "rsa2048"),
            (ED25519, "ed25519"),
            (X25519, "x25519"),
            (P256, "p256"),
            (RSA1024, "rsa1024"),
        ] {
            let out = output(
                Command::new(DAEMON)
                    .args(["keygen", "--token"])
                    .arg(format!("emulated:{}", state.display()))
                    .args(["--slot", slot, "--alg", alg, "--pin-policy", "once"])
                    .args(["--touch-policy", "never"])
                    .env("SIGNER_PIN", "123456")
                    .env("SIGNER_EMULATED_TOUCH", "approve")
                    .env_remove("SIGNER_MGMT_KEY"),
            );
            assert_eq!(out.code, 0, "keygen {slot} {alg}: {}", out.stderr);
        }
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "123456\n").unwrap();
        let config = dir.path().join("signer.toml");
        std::fs::write(&config, "").unwrap();
        let socket = dir.path().join("signer.sock");
        let log = dir.path().join("daemon.log");
        let child = Command::new(DAEMON)
            .arg("serve")
            .arg("--token")
            .arg(format!("emulated:{}", state.display()))
            .arg("--socket")
            .arg(&socket)
            .arg("--config")
            .arg(&config)
            .arg("--pin-file")
            .arg(&pin)
            .arg("--audit-log")
            .arg(dir.path().join("audit.jsonl"))
            .env_remove("SIGNER_PIN")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env("SIGNER_EMULATED_TOUCH", "approve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut f = Fixture {
            dir,
            socket,
            log,
            child,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&f.socket).is_err() {
            if let Some(s) = f.child.try_wait().unwrap() {
                panic!(
                    "the daemon exited ({s}): {}",
                    std::fs::read_to_string(&f.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < until,
                "the daemon did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ctl(&self, args: &[&str]) -> Out {
        output(
            Command::new(SIGNERCTL)
                .arg("--socket")
                .arg(&self.socket)
                .env_remove("SIGNER_SOCKET")
                .current_dir(self.dir.path())
                .args(args),
        )
    }

    async fn client(&self) -> Client {
        Client::connect(&self.socket).await.unwrap()
    }

    /// The slot's public key as PEM in a file.
    fn pem(&self, slot: &str) -> PathBuf {
        let out = self.ctl(&["pubkey", "--key", slot]);
        assert_eq!(out.code, 0, "pubkey {slot}: {}", out.stderr);
        let path = self.path(&format!("{slot}.pem"));
        std::fs::write(&path, &out.stdout).unwrap();
        path
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn slot(s: &str) -> pb::KeyRef {
    signer_client::KeySpec::parse(s, None).key_ref()
}

/// openssl's verdict on an RSA signature of `data` (`pss`: PSS with a salt
/// as long as the digest, else PKCS#1 v1.5).
fn openssl_rsa(pem: &Path, hash: &str, pss: bool, data: &Path, sig: &Path) -> bool {
    let mut c = openssl();
    c.arg("dgst")
        .arg(format!("-{hash}"))
        .arg("-verify")
        .arg(pem);
    if pss {
        c.args([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
        ]);
    }
    c.arg("-signature").arg(sig).arg(data);
    let out = output(&mut c);
    out.code == 0 && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

fn openssl_ed25519(pem: &Path, data: &Path, sig: &Path) -> bool {
    let out = output(
        openssl()
            .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
            .arg(pem)
            .arg("-rawin")
            .arg("-in")
            .arg(data)
            .arg("-sigfile")
            .arg(sig),
    );
    out.code == 0
        && String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully")
}

#[test]
fn signerctl_rsa_and_ed25519_signatures_verify_with_openssl_and_a_changed_byte_fails() {
    let f = Fixture::start();
    let data = f.path("data.bin");
    std::fs::write(&data, b"{\"signed\":{\"_type\":\"root\",\"version\":1}}").unwrap();
    let changed = f.path("changed.bin");
    std::fs::write(&changed, b"{\"signed\":{\"_type\":\"root\",\"version\":2}}").unwrap();
    let rsa = f.pem(RSA2048);
    for (padding, pss) in [("pss", true), ("pkcs1v15", false)] {
        for hash in ["sha256", "sha384", "sha512"] {
            let sig = f.path(&format!("rsa-{padding}-{hash}.sig"));
            let out = f.ctl(&[
                "sign",
                "--key",
                RSA2048,
                "--padding",
                padding,
                "--hash",
                hash,
                "--in",
                data.to_str().unwrap(),
                "-o",
                sig.to_str().unwrap(),
            ]);
            assert_eq!(out.code, 0, "sign {padding} {hash}: {}", out.stderr);
            assert_eq!(
                std::fs::read(&sig).unwrap().len(),
                256,
                "RSA-2048 signatures are 256 bytes"
            );
            assert!(
                openssl_rsa(&rsa, hash, pss, &data, &sig),
                "openssl: {padding} {hash}"
            );
            assert!(
                !openssl_rsa(&rsa, hash, pss, &changed, &sig),
                "a changed byte verified"
            );
            // The other padding does not verify it: the daemon did pad as asked.
            assert!(
                !openssl_rsa(&rsa, hash, !pss, &data, &sig),
                "{padding} verified as the other padding"
            );
        }
    }
    let ed = f.pem(ED25519);
    let sig = f.path("ed25519.sig");
    let out = f.ctl(&[
        "sign",
        "--key",
        ED25519,
        "--in",
        data.to_str().unwrap(),
        "-o",
        sig.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "sign ed25519: {}", out.stderr);
    assert_eq!(std::fs::read(&sig).unwrap().len(), 64);
    assert!(
        openssl_ed25519(&ed, &data, &sig),
        "openssl refused the Ed25519 signature"
    );
    assert!(
        !openssl_ed25519(&ed, &changed, &sig),
        "a changed byte verified"
    );
    // Base64 of the same 64 bytes (Ed25519 is deterministic).
    let out = f.ctl(&[
        "sign",
        "--key",
        ED25519,
        "--in",
        data.to_str().unwrap(),
        "--format",
        "base64",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8_lossy(&out.stdout).trim())
            .unwrap(),
        std::fs::read(&sig).unwrap()
    );
}

#[test]
fn signerctl_refuses_what_a_key_cannot_do_with_exit_2_and_says_what_to_give() {
    let f = Fixture::start();
    let data = f.path("data.bin");
    std::fs::write(&data, b"data").unwrap();
    let d = data.to_str().unwrap();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(b"data")));
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["sign", "--key", RSA2048, "--in", d, "-o", "x"],
            2,
            "give --padding pkcs1v15 or --padding pss",
        ),
        (
            &["sign", "--key", RSA2048, "--digest", &digest, "-o", "x"],
            2,
            "give --padding",
        ),
        (
            &[
                "sign",
                "--key",
                RSA2048,
                "--padding",
                "pss",
                "--format",
                "der",
                "--in",
                d,
                "-o",
                "x",
            ],
            2,
            "--format der is for ECDSA keys",
        ),
        (
            &["sign", "--key", ED25519, "--digest", &digest, "-o", "x"],
            2,
            "signs the message itself",
        ),
        (
            &[
                "sign", "--key", ED25519, "--hash", "sha256", "--in", d, "-o", "x",
            ],
            2,
            "SHA-512",
        ),
        (
            &[
                "sign", "--key", ED25519, "--format", "der", "--in", d, "-o", "x",
            ],
            2,
            "--format der is for ECDSA keys",
        ),
        (
            &[
                "sign",
                "--key",
                P256,
                "--padding",
                "pss",
                "--in",
                d,
                "-o",
                "x",
            ],
            2,
            "for RSA keys only",
        ),
        (
            &["sign", "--key", X25519, "--in", d, "-o", "x"],
            5,
            "cannot sign",
        ),
    ];
    for (args, code, needle) in cases {
        let out = f.ctl(args);
        assert_eq!(out.code, *code, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        assert!(!f.path("x").exists(), "{args:?} wrote a signature");
    }
    let big = f.path("big.bin");
    std::fs::write(&big, vec![7u8; signer_lib::model::ED25519_MAX_MESSAGE + 1]).unwrap();
    let out = f.ctl(&[
        "sign",
        "--key",
        ED25519,
        "--in",
        big.to_str().unwrap(),
        "-o",
        "x",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("longer than 3000 bytes"),
        "{}",
        out.stderr
    );
}

fn req(
    key: &str,
    input: pb::sign_request::Input,
    hash: pb::HashAlgorithm,
    format: pb::SignatureFormat,
    padding: i32,
) -> pb::SignRequest {
    pb::SignRequest {
        key: Some(slot(key)),
        input: Some(input),
        hash: hash as i32,
        format: format as i32,
        padding,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_the_sign_table_has_its_code_and_message() {
    use pb::HashAlgorithm::{Sha256, Sha512};
    use pb::SignatureFormat::{Der, Raw};
    use pb::sign_request::Input::{Digest as D, Message as M};
    let f = Fixture::start();
    let mut c = f.client().await;
    let d256 = sha2::Sha256::digest(b"m").to_vec();
    let d512 = sha2::Sha512::digest(b"m").to_vec();
    let pss = pb::RsaPadding::Pss as i32;
    let pkcs1 = pb::RsaPadding::Pkcs1v15 as i32;
    let cases: Vec<(&str, pb::SignRequest, Code, &str)> = vec![
        (
            "rsa without padding",
            req(RSA2048, D(d256.clone()), Sha256, Raw, 0),
            Code::InvalidArgument,
            "padding is required for RSA keys",
        ),
        (
            "rsa with DER",
            req(RSA2048, D(d256.clone()), Sha256, Der, pss),
            Code::InvalidArgument,
            "SIGNATURE_FORMAT_RAW",
        ),
        (
            "rsa digest of another length",
            req(RSA2048, D(d256[..31].to_vec()), Sha256, Raw, pkcs1),
            Code::InvalidArgument,
            "expected 32 bytes, got 31",
        ),
        (
            "unknown padding",
            req(RSA2048, D(d256.clone()), Sha256, Raw, 7),
            Code::InvalidArgument,
            "unknown RSA padding value 7",
        ),
        (
            "padding on P-256",
            req(P256, D(d256.clone()), Sha256, Der, pss),
            Code::InvalidArgument,
            "RSA_PADDING_PSS is for RSA keys only",
        ),
        (
            "padding on Ed25519",
            req(ED25519, M(b"m".to_vec()), Sha512, Raw, pkcs1),
            Code::InvalidArgument,
            "for RSA keys only",
        ),
        (
            "Ed25519 digest",
            req(ED25519, D(d512.clone()), Sha512, Raw, 0),
            Code::InvalidArgument,
            "signs the message itself",
        ),
        (
            "Ed25519 hash SHA-256",
            req(ED25519, M(b"m".to_vec()), Sha256, Raw, 0),
            Code::InvalidArgument,
            "HASH_ALGORITHM_SHA512",
        ),
        (
            "Ed25519 DER",
            req(ED25519, M(b"m".to_vec()), Sha512, Der, 0),
            Code::InvalidArgument,
            "R || S",
        ),
        (
            "Ed25519 message too long",
            req(
                ED25519,
                M(vec![0; signer_lib::model::ED25519_MAX_MESSAGE + 1]),
                Sha512,
                Raw,
                0,
            ),
            Code::InvalidArgument,
            "3000",
        ),
        (
            "PSS SHA-512 on RSA-1024",
            req(RSA1024, D(d512.clone()), Sha512, Raw, pss),
            Code::InvalidArgument,
            "does not fit",
        ),
        (
            "X25519",
            req(X25519, D(d256.clone()), Sha256, Raw, 0),
            Code::FailedPrecondition,
            "cannot sign",
        ),
    ];
    for (name, r, code, needle) in cases {
        // Both RPCs, the same answer.
        let e = c.raw().sign(r.clone()).await.expect_err(name);
        assert_eq!(e.code(), code, "{name}: {}", e.message());
        assert!(e.message().contains(needle), "{name}: {}", e.message());
        let mut stream = match c.raw().sign_with_events(r).await {
            Ok(s) => s.into_inner(),
            Err(e) => panic!("{name}: stream refused at once: {e}"),
        };
        let e = loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{name}: the stream ended without an error"),
                Err(e) => break e,
            }
        };
        assert_eq!(e.code(), code, "{name} (events): {}", e.message());
    }
    // Each refusal is audited with its code; none produced a signature.
    let audit = std::fs::read_to_string(f.path("audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let signs: Vec<_> = records
        .iter()
        .filter(|r| r["operation"] == "sign")
        .collect();
    assert_eq!(signs.len(), 24, "{audit}");
    assert!(signs.iter().all(|r| r["outcome"] == "error"), "{audit}");
    assert_eq!(
        signs
            .iter()
            .filter(|r| r["code"] == "FAILED_PRECONDITION")
            .count(),
        2
    );
    // The token still signs (nothing above upset it).
    let ok = c
        .raw()
        .sign(req(RSA1024, D(d512), Sha512, Raw, pkcs1))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().signature.len(), 128);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_signatures_of_every_scheme_verify_with_rustcrypto_and_carry_their_padding() {
    use pb::HashAlgorithm::{Sha256, Sha384, Sha512};
    let f = Fixture::start();
    let mut c = f.client().await;
    let keys = c.list_keys(None).await.unwrap();
    let key = |s: &str| keys.iter().find(|k| k.slot == s).unwrap().clone();
    let algs: Vec<_> = keys
        .iter()
        .map(|k| (k.slot.as_str(), k.algorithm))
        .collect();
    for (s, a) in [
        (RSA2048, pb::Algorithm::Rsa2048),
        (ED25519, pb::Algorithm::Ed25519),
        (X25519, pb::Algorithm::X25519),
        (P256, pb::Algorithm::EccP256),
        (RSA1024, pb::Algorithm::Rsa1024),
    ] {
        assert!(
            algs.contains(&(s, a as i32)),
            "{s} not listed as {a:?}: {algs:?}"
        );
    }
    let message = b"a message to sign".to_vec();
    let mut cases = Vec::new();
    for padding in [pb::RsaPadding::Pkcs1v15, pb::RsaPadding::Pss] {
        for hash in [Sha256, Sha384, Sha512] {
            let digest = lib_hash(hash).digest(&message);
            cases.push((
                RSA2048,
                Signing::rsa(hash, Payload::Digest(digest), padding),
            ));
            cases.push((
                RSA2048,
                Signing::rsa(hash, Payload::Message(message.clone()), padding),
            ));
        }
    }
    cases.push((ED25519, Signing::ed25519(message.clone())));
    cases.push((
        P256,
        Signing::ecdsa(
            Sha256,
            Payload::Message(message.clone()),
            pb::SignatureFormat::Raw,
        ),
    ));
    cases.push((
        P256,
        Signing::ecdsa(
            Sha256,
            Payload::Message(message.clone()),
            pb::SignatureFormat::Der,
        ),
    ));
    for (s, signing) in &cases {
        let r = c
            .sign_with(slot(s), signing, |_| {})
            .await
            .unwrap_or_else(|e| panic!("{s} {signing:?}: {e}"));
        assert_eq!(r.padding, signing.padding as i32);
        assert_eq!(r.format, signing.format as i32);
        assert_eq!(r.key_id, key(s).key_id);
        verify_signature(&key(s), signing, &r.signature)
            .unwrap_or_else(|e| panic!("{s} {signing:?}: {e}"));
        // A changed byte of the message does not verify.
        let mut other = signing.clone();
        other.payload = match &signing.payload {
            Payload::Digest(d) => {
                let mut d = d.clone();
                d[0] ^= 1;
                Payload::Digest(d)
            }
            Payload::Message(m) => {
                let mut m = m.clone();
                m[0] ^= 1;
                Payload::Message(m)
            }
        };
        assert!(
            verify_signature(&key(s), &other, &r.signature).is_err(),
            "{s} {signing:?}"
        );
    }
    // Ed25519's response digest is the SHA-512 of the message, as documented.
    let r = c
        .raw()
        .sign(req(
            ED25519,
            pb::sign_request::Input::Message(message.clone()),
            Sha512,
            pb::SignatureFormat::Raw,
            0,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.digest, sha2::Sha512::digest(&message).to_vec());
    assert_eq!(r.hash, Sha512 as i32);
    assert_eq!(r.signature.len(), 64);
    // The audit log names each signature's scheme, and Ed25519's digest
    // as the response has it.
    let audit = std::fs::read_to_string(f.path("audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |scheme: &str| {
        records
            .iter()
            .filter(|r| r["operation"] == "sign" && r["outcome"] == "ok" && r["scheme"] == scheme)
            .count()
    };
    assert_eq!(count("rsa-pkcs1v15"), 6, "{audit}");
    assert_eq!(count("rsa-pss"), 6, "{audit}");
    assert_eq!(count("ed25519"), 2, "{audit}");
    assert_eq!(count("ecdsa"), 2, "{audit}");
    let ed = hex::encode(sha2::Sha512::digest(&message));
    assert!(
        records.iter().any(|r| r["scheme"] == "ed25519"
            && r["hash"] == "sha512"
            && r["digest"] == ed.as_str()),
        "{audit}"
    );
}

fn lib_hash(h: pb::HashAlgorithm) -> signer_lib::HashAlgorithm {
    match h {
        pb::HashAlgorithm::Sha384 => signer_lib::HashAlgorithm::Sha384,
        pb::HashAlgorithm::Sha512 => signer_lib::HashAlgorithm::Sha512,
        _ => signer_lib::HashAlgorithm::Sha256,
    }
}

/// The field numbers present in an encoded message, in order.
fn tags(mut buf: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (tag, wire_type) = prost::encoding::decode_key(&mut buf).unwrap();
        prost::encoding::skip_field(wire_type, tag, &mut buf, Default::default()).unwrap();
        out.push(tag);
    }
    out.sort_unstable();
    out
}

/// A client built before `padding` existed sends ECDSA requests without
/// field 6 and reads responses without field 8: the bytes on the wire are
/// the same as before, and so is the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecdsa_requests_of_a_client_without_the_padding_field_are_unchanged_on_the_wire() {
    let f = Fixture::start();
    let mut c = f.client().await;
    let digest = sha2::Sha256::digest(b"old client").to_vec();
    let r = req(
        P256,
        pb::sign_request::Input::Digest(digest.clone()),
        pb::HashAlgorithm::Sha256,
        pb::SignatureFormat::Der,
        0,
    );
    // Field 6 is absent: the bytes an old client encodes (fields 1, 2, 4, 5).
    assert_eq!(tags(&r.encode_to_vec()), vec![1, 2, 4, 5]);
    let answer = c.raw().sign(r).await.unwrap().into_inner();
    assert_eq!(answer.padding, 0);
    // No field 8 in the response: an old client decodes all of it.
    assert_eq!(tags(&answer.encode_to_vec()), vec![1, 2, 3, 4, 5, 6, 7]);
    let keys = c.list_keys(None).await.unwrap();
    let k = keys.iter().find(|k| k.slot == P256).unwrap();
    signer_client::verify(k, pb::HashAlgorithm::Sha256, &digest, &answer.signature).unwrap();
}
