//! The admin commands as a user runs them: `emulated init|root`, `keygen`,
//! `pubkey`, `sign`, checked with openssl and exit codes.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_signer-daemon");

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

fn run(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("SIGNER_PIN")
        .env_remove("SIGNER_MGMT_KEY")
        .env_remove("SIGNER_EMULATED_TOUCH")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run signer-daemon");
    if let Some(data) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(data).expect("write stdin");
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait");
    Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

#[track_caller]
fn ok(args: &[&str], env: &[(&str, &str)]) -> Run {
    let r = run(args, env, None);
    assert_eq!(r.code, 0, "{args:?} failed: {}", r.stderr);
    r
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "openssl is needed for this test (tests/scripts/install-deps.sh installs it): {e}"
            )
        })
}

/// `openssl dgst -verify`: true only if openssl prints exactly "Verified OK".
fn openssl_verifies(hash: &str, pubkey: &Path, sig: &Path, message: &Path) -> bool {
    let out = openssl(&[
        "dgst",
        &format!("-{hash}"),
        "-verify",
        pubkey.to_str().unwrap(),
        "-signature",
        sig.to_str().unwrap(),
        message.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim_end() == "Verified OK" && out.status.success()
}

struct Fixture {
    dir: tempfile::TempDir,
    state: PathBuf,
    token: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("token.state");
    let token = format!("emulated:{}", state.display());
    Fixture { dir, state, token }
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn init(&self, extra: &[&str]) -> Run {
        let mut args = vec!["emulated", "init", "--state", self.state.to_str().unwrap()];
        args.extend_from_slice(extra);
        ok(&args, &[])
    }

    fn keygen(&self, slot: &str, alg: &str, pin: &str, touch: &str) -> PathBuf {
        let r = ok(
            &[
                "keygen",
                "--token",
                &self.token,
                "--slot",
                slot,
                "--alg",
                alg,
                "--pin-policy",
                pin,
                "--touch-policy",
                touch,
            ],
            &[("SIGNER_PIN", "123456")],
        );
        assert!(
            r.stderr.contains("wrote a self-signed certificate"),
            "{}",
            r.stderr
        );
        let pem = self.path(&format!("{slot}.pem"));
        std::fs::write(&pem, &r.stdout).unwrap();
        assert!(
            String::from_utf8_lossy(&r.stdout).starts_with("-----BEGIN PUBLIC KEY-----"),
            "keygen prints the public key PEM"
        );
        assert!(r.stderr.contains("key id: "), "{}", r.stderr);
        pem
    }
}

#[test]
fn init_keygen_sign_and_openssl_verifies() {
    let f = fixture();
    let init = f.init(&["--serial", "3141592"]);
    let out = String::from_utf8_lossy(&init.stdout);
    assert!(out.contains("serial: 3141592"), "{out}");
    assert!(out.contains("firmware: 5.7.4"), "{out}");
    assert!(out.contains("management key: aes192"), "{out}");
    assert!(init.stderr.contains("tests and CI only"), "{}", init.stderr);

    let message = f.path("message.txt");
    std::fs::write(&message, b"a TUF root, say\n").unwrap();
    for (slot, alg, hash) in [("9c", "p256", "sha256"), ("9a", "p384", "sha384")] {
        let pem = f.keygen(slot, alg, "once", "never");
        let sig = f.path(&format!("{slot}.sig"));
        let r = run(
            &[
                "sign",
                "--token",
                &f.token,
                "--slot",
                slot,
                "--hash",
                hash,
                "--in",
                message.to_str().unwrap(),
                "-o",
                sig.to_str().unwrap(),
            ],
            &[("SIGNER_PIN", "123456")],
            None,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            openssl_verifies(hash, &pem, &sig, &message),
            "openssl rejects the {alg} signature"
        );
        // The check can fail: another message does not verify.
        let other = f.path("other.txt");
        std::fs::write(&other, b"something else\n").unwrap();
        assert!(!openssl_verifies(hash, &pem, &sig, &other));
    }
}

#[test]
fn sign_reads_stdin_writes_stdout_and_defaults_the_hash() {
    let f = fixture();
    f.init(&[]);
    let pem = f.keygen("9d", "p384", "never", "never");
    let r = run(
        &["sign", "--token", &f.token, "--slot", "9d"],
        &[],
        Some(b"from stdin"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout[0], 0x30, "DER signature on stdout");
    let sig = f.path("sig");
    let message = f.path("m");
    std::fs::write(&sig, &r.stdout).unwrap();
    std::fs::write(&message, b"from stdin").unwrap();
    assert!(
        openssl_verifies("sha384", &pem, &sig, &message),
        "p384 defaults to sha384"
    );
}

#[test]
fn pubkey_and_key_id() {
    let f = fixture();
    f.init(&[]);
    let pem = f.keygen("9e", "p256", "default", "default");
    let r = ok(&["pubkey", "--token", &f.token, "--slot", "9e"], &[]);
    assert_eq!(r.stdout, std::fs::read(&pem).unwrap());
    assert!(r.stderr.contains("PIN policy never"), "{}", r.stderr);
    let id = ok(
        &["pubkey", "--token", &f.token, "--slot", "9e", "--key-id"],
        &[],
    );
    let id = String::from_utf8(id.stdout).unwrap();
    // Independently: SHA-256 of the DER openssl extracts from the PEM.
    let der = openssl(&[
        "pkey",
        "-pubin",
        "-in",
        pem.to_str().unwrap(),
        "-outform",
        "DER",
    ]);
    assert!(der.status.success());
    assert_eq!(id.trim(), hex::encode(sha2::Sha256::digest(&der.stdout)));
}

#[test]
fn touch_prompt_and_denied_touch() {
    let f = fixture();
    f.init(&[]);
    f.keygen("9c", "p256", "never", "always");
    let r = run(
        &["sign", "--token", &f.token, "--slot", "9c"],
        &[],
        Some(b"m"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("Touch your YubiKey now"), "{}", r.stderr);
    let r = run(
        &["sign", "--token", &f.token, "--slot", "9c"],
        &[("SIGNER_EMULATED_TOUCH", "deny")],
        Some(b"m"),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("Touch your YubiKey now"), "{}", r.stderr);
    assert!(r.stderr.contains("touch was denied"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "no signature on a denied touch");
}

#[test]
fn pin_errors_exit_1_and_spend_one_try_each() {
    let f = fixture();
    f.init(&[]);
    f.keygen("9c", "p256", "always", "never");
    // No PIN source at all (stdin is not a terminal).
    let r = run(
        &["sign", "--token", &f.token, "--slot", "9c"],
        &[],
        Some(b"m"),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("needs the PIN"), "{}", r.stderr);
    for left in [2, 1] {
        let r = run(
            &["sign", "--token", &f.token, "--slot", "9c"],
            &[("SIGNER_PIN", "999999")],
            Some(b"m"),
        );
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("wrong PIN: {left} tries left")),
            "{}",
            r.stderr
        );
        assert!(r.stdout.is_empty());
    }
    // A PIN file with the right PIN works (and the counter was not blocked).
    let pin = f.path("pin");
    std::fs::write(&pin, "123456\n").unwrap();
    let r = run(
        &[
            "sign",
            "--token",
            &f.token,
            "--slot",
            "9c",
            "--pin-file",
            pin.to_str().unwrap(),
        ],
        &[],
        Some(b"m"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // An invalid PIN never reaches the token.
    let r = run(
        &["sign", "--token", &f.token, "--slot", "9c"],
        &[("SIGNER_PIN", "12")],
        Some(b"m"),
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("invalid PIN"), "{}", r.stderr);
}

#[test]
fn management_key_sources() {
    let f = fixture();
    f.init(&["--mgmt-key-alg", "tdes"]);
    let base = [
        "keygen",
        "--token",
        &f.token,
        "--slot",
        "9a",
        "--alg",
        "p256",
        "--pin-policy",
        "never",
    ];
    // Default key: works, with a loud warning.
    let r = ok(&base, &[]);
    assert!(r.stderr.contains("FACTORY DEFAULT"), "{}", r.stderr);
    // Wrong key from the environment.
    let wrong = "00112233445566778899aabbccddeeff0011223344556677";
    let r = run(&base, &[("SIGNER_MGMT_KEY", wrong)], None);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("wrong management key"), "{}", r.stderr);
    assert!(!r.stderr.contains(wrong), "the key must not be echoed");
    // Malformed key.
    let r = run(&base, &[("SIGNER_MGMT_KEY", "xyz")], None);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("invalid management key"), "{}", r.stderr);
    // The right key from a file (the default, so still a warning).
    let file = f.path("mgmt");
    std::fs::write(&file, "010203040506070801020304050607080102030405060708\n").unwrap();
    let mut args = base.to_vec();
    args.extend(["--mgmt-key-file", file.to_str().unwrap()]);
    let r = ok(&args, &[]);
    assert!(r.stderr.contains("factory default"), "{}", r.stderr);
    // Forcing the wrong algorithm fails.
    args.extend(["--mgmt-key-alg", "aes192"]);
    let r = run(&args, &[], None);
    assert_eq!(r.code, 1, "{}", r.stderr);
}

#[test]
fn usage_errors_exit_2() {
    let f = fixture();
    for args in [
        vec!["keygen", "--slot", "9c"],
        vec!["keygen", "--token", "foo", "--slot", "9c"],
        vec!["keygen", "--token", "emulated:", "--slot", "9c"],
        vec!["keygen", "--token", &f.token, "--slot", "9b"],
        vec![
            "keygen", "--token", &f.token, "--slot", "9c", "--alg", "p521",
        ],
        // Ed25519 is a key type now (keygen_and_sign_with_rsa_and_ed25519_keys_...);
        // a curve no YubiKey has is still a usage error.
        vec![
            "keygen", "--token", &f.token, "--slot", "9c", "--alg", "ed448",
        ],
        vec!["keygen", "--token", &f.token, "--slot", "f9"],
        vec![
            "keygen",
            "--token",
            &f.token,
            "--slot",
            "9c",
            "--touch-policy",
            "sometimes",
        ],
        vec!["sign", "--token", &f.token, "--slot", "9c", "--hash", "md5"],
        vec!["emulated", "init"],
        vec![
            "emulated",
            "init",
            "--state",
            "x",
            "--mgmt-key-alg",
            "rot13",
        ],
        vec!["emulated", "init", "--state", "x", "--firmware", "5.7"],
        vec!["frobnicate"],
    ] {
        let r = run(&args, &[], None);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    assert!(!f.state.exists(), "no usage error creates a token");
}

#[test]
fn token_errors_exit_1() {
    let f = fixture();
    // No such token.
    let r = run(&["pubkey", "--token", &f.token, "--slot", "9c"], &[], None);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("emulated init"), "{}", r.stderr);
    // No such YubiKey (no pcscd here, or no token with that serial).
    let r = run(
        &["pubkey", "--token", "yubikey:123", "--slot", "9c"],
        &[],
        None,
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("pcscd") || r.stderr.contains("no token found"),
        "{}",
        r.stderr
    );
    f.init(&[]);
    // init refuses to overwrite.
    let r = run(
        &["emulated", "init", "--state", f.state.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    // Empty slot.
    let r = run(&["pubkey", "--token", &f.token, "--slot", "9c"], &[], None);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no key in slot 9c"), "{}", r.stderr);
    // Unreadable input.
    f.keygen("9c", "p256", "never", "never");
    let r = run(
        &[
            "sign",
            "--token",
            &f.token,
            "--slot",
            "9c",
            "--in",
            "/nonexistent/file",
        ],
        &[],
        None,
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("/nonexistent/file"), "{}", r.stderr);
}

#[test]
fn a_token_in_use_by_another_process_is_refused() {
    let f = fixture();
    f.init(&[]);
    f.keygen("9c", "p256", "never", "never");
    let held = signer_lib::emulator::EmulatedToken::open(
        &f.state,
        signer_lib::emulator::TouchMode::Approve.source(),
    )
    .unwrap();
    let r = run(&["pubkey", "--token", &f.token, "--slot", "9c"], &[], None);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("in use by another process"),
        "{}",
        r.stderr
    );
    drop(held);
    // Released: usable again. Another test thread forking a child at the
    // moment `held` was open shares the lock's open file description until
    // that child execs (close-on-exec), so allow that short window.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = run(&["pubkey", "--token", &f.token, "--slot", "9c"], &[], None);
        if r.code == 0 {
            break;
        }
        assert!(
            r.stderr.contains("in use by another process") && std::time::Instant::now() < deadline,
            "{}",
            r.stderr
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_corrupt_state_file_is_reported_and_left_alone() {
    let f = fixture();
    f.init(&[]);
    let mut bytes = std::fs::read(&f.state).unwrap();
    let n = bytes.len();
    bytes.truncate(n - 7);
    std::fs::write(&f.state, &bytes).unwrap();
    let r = run(&["pubkey", "--token", &f.token, "--slot", "9c"], &[], None);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert_eq!(std::fs::read(&f.state).unwrap(), bytes);
}

/// keygen stores a self-signed certificate for the new key in the slot:
/// openssl verifies its self-signature and finds the slot's public key in it;
/// without a PIN for a PIN-protected key, keygen refuses before generating.
#[test]
fn keygen_writes_a_self_signed_certificate_openssl_accepts() {
    let f = fixture();
    f.init(&[]);
    for (slot, alg, pin) in [("9c", "p256", "always"), ("9a", "p384", "once")] {
        let pem = f.keygen(slot, alg, pin, "always");
        let mut token = signer_lib::emulator::EmulatedToken::open(
            &f.state,
            std::sync::Arc::new(signer_lib::emulator::ApproveTouch),
        )
        .unwrap();
        let key = signer_lib::Token::key(&mut token, slot.parse().unwrap()).unwrap();
        drop(token);
        let der = key.certificate.expect("keygen stores a certificate");
        let cert = f.path(&format!("{slot}-cert.pem"));
        std::fs::write(
            &cert,
            pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, &der).unwrap(),
        )
        .unwrap();
        let out = Command::new("openssl")
            .args(["verify", "-check_ss_sig", "-CAfile"])
            .arg(&cert)
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(&cert)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&pem).unwrap()
        );
    }
    // No PIN source and a PIN-protected key: refused, the slot stays empty.
    let r = run(
        &[
            "keygen",
            "--token",
            &f.token,
            "--slot",
            "9d",
            "--alg",
            "p256",
            "--pin-policy",
            "once",
        ],
        &[],
        None,
    );
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("--pin-file"), "{}", r.stderr);
    let mut token = signer_lib::emulator::EmulatedToken::open(
        &f.state,
        std::sync::Arc::new(signer_lib::emulator::ApproveTouch),
    )
    .unwrap();
    assert!(signer_lib::Token::key(&mut token, signer_lib::SlotId::KeyManagement).is_err());
}

/// `keygen` and offline `sign` with RSA and Ed25519 keys: openssl verifies
/// (PSS and PKCS#1 v1.5; Ed25519 over the message itself), an X25519 key
/// is generated without a certificate and cannot sign, and every request
/// a key cannot take is a usage error that writes nothing.
#[test]
fn keygen_and_sign_with_rsa_and_ed25519_keys_verify_with_openssl() {
    let f = fixture();
    f.init(&[]);
    let rsa = f.keygen("9a", "rsa2048", "once", "never");
    let ed = f.keygen("9c", "ed25519", "once", "never");
    let x = ok(
        &[
            "keygen", "--token", &f.token, "--slot", "9d", "--alg", "x25519",
        ],
        &[("SIGNER_PIN", "123456")],
    );
    assert!(
        x.stderr.contains("no certificate written to slot 9d"),
        "{}",
        x.stderr
    );
    let message = f.path("message.txt");
    std::fs::write(&message, b"a TUF root, say\n").unwrap();
    let other = f.path("other.txt");
    std::fs::write(&other, b"something else\n").unwrap();
    let m = message.to_str().unwrap();
    let pin = [("SIGNER_PIN", "123456")];

    for (padding, hash) in [("pss", "sha256"), ("pkcs1v15", "sha384")] {
        let sig = f.path(&format!("{padding}.sig"));
        let s = sig.to_str().unwrap();
        ok(
            &[
                "sign",
                "--token",
                &f.token,
                "--slot",
                "9a",
                "--padding",
                padding,
                "--hash",
                hash,
                "--in",
                m,
                "-o",
                s,
            ],
            &pin,
        );
        assert_eq!(std::fs::read(&sig).unwrap().len(), 256);
        let verify = |data: &Path| {
            let mut args = vec!["dgst".to_string(), format!("-{hash}")];
            args.extend(["-verify", rsa.to_str().unwrap()].map(String::from));
            if padding == "pss" {
                args.extend(
                    [
                        "-sigopt",
                        "rsa_padding_mode:pss",
                        "-sigopt",
                        "rsa_pss_saltlen:digest",
                    ]
                    .map(String::from),
                );
            }
            args.extend(["-signature", s, data.to_str().unwrap()].map(String::from));
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = openssl(&a);
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim_end() == "Verified OK"
        };
        assert!(
            verify(&message),
            "openssl rejects the RSA {padding} signature"
        );
        assert!(!verify(&other), "another message verified");
    }
    let sig = f.path("ed.sig");
    ok(
        &[
            "sign",
            "--token",
            &f.token,
            "--slot",
            "9c",
            "--in",
            m,
            "-o",
            sig.to_str().unwrap(),
        ],
        &pin,
    );
    assert_eq!(std::fs::read(&sig).unwrap().len(), 64);
    let ed_verify = |data: &Path| {
        let out = openssl(&[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            ed.to_str().unwrap(),
            "-rawin",
            "-in",
            data.to_str().unwrap(),
            "-sigfile",
            sig.to_str().unwrap(),
        ]);
        out.status.success()
    };
    assert!(ed_verify(&message), "openssl rejects the Ed25519 signature");
    assert!(!ed_verify(&other), "another message verified");

    let refused = f.path("refused.sig");
    let r = refused.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--slot", "9a"],
            "give --padding pkcs1v15 or --padding pss",
        ),
        (vec!["--slot", "9c", "--padding", "pss"], "is for RSA keys"),
        (vec!["--slot", "9c", "--hash", "sha256"], "SHA-512"),
        (
            vec!["--slot", "9a", "--padding", "ecdsa"],
            "use pkcs1v15 or pss",
        ),
    ] {
        let mut all = vec!["sign", "--token", &f.token, "--in", m, "-o", r];
        all.extend(args.iter());
        let out = run(&all, &pin, None);
        assert_eq!(out.code, 2, "{all:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{all:?}: {}", out.stderr);
        assert!(!refused.exists(), "{all:?} wrote a signature");
    }
    let out = run(
        &[
            "sign", "--token", &f.token, "--slot", "9d", "--in", m, "-o", r,
        ],
        &pin,
        None,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("cannot sign"), "{}", out.stderr);
    assert!(!refused.exists());
}
