//! `signerctl tuf` on the YubiKey path: two emulated YubiKeys in two
//! readers of a private pcscd, the daemon serving `--token yubikey:SERIAL`
//! for each, one root signed by both to threshold 2, checked by python-tuf.
//! (The same commands as with two real YubiKeys; `signer-daemon/tests/tuf.rs`
//! covers the ceremony in depth on emulated tokens.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use signer_e2e::hardware::EmulatedCardInReader;
use signer_e2e::sandboxed_test;
use signer_lib::emulator::InitOptions;
use signer_lib::testing::TouchSetup;

const SERIAL_A: u32 = 13_572_468;
const SERIAL_B: u32 = 24_681_357;

/// A binary of the workspace, built by `cargo test --workspace`.
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p signer-daemon` (cargo test --workspace builds it)",
        path.display()
    );
    path
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The e2e venv's python with python-tuf; panics naming what is missing.
fn python() -> PathBuf {
    let venv = std::env::var_os("SIGNER_E2E_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/lib/signer-e2e-venv"));
    let py = venv.join("bin").join("python");
    assert!(
        py.exists(),
        "{} is missing: run tests/scripts/install-deps.sh (tuf and securesystemslib from PyPI)",
        py.display()
    );
    py
}

fn verify_root(root: &Path) -> Output {
    Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python/tuf_check.py"))
        .arg("verify-root")
        .arg(root)
        .output()
        .unwrap()
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

sandboxed_test!(readers: 2,
    fn two_yubikeys_chosen_by_serial_sign_one_root_to_threshold_two(sandbox) {
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "123456\n").unwrap();
        let mut cards = Vec::new();
        for (i, serial) in [SERIAL_A, SERIAL_B].into_iter().enumerate() {
            cards.push(
                EmulatedCardInReader::insert_new(
                    sandbox.reader(i),
                    dir.path(),
                    &TouchSetup::approve(),
                    &InitOptions {
                        serial: Some(serial),
                        ..InitOptions::default()
                    },
                )
                .unwrap(),
            );
        }
        for (serial, alg) in [(SERIAL_A, "p256"), (SERIAL_B, "p384")] {
            let out = sandbox
                .command(bin("signer-daemon"))
                .args(["keygen", "--token", &format!("yubikey:{serial}")])
                .args(["--slot", "9c", "--alg", alg, "--pin-policy", "once", "--touch-policy", "always"])
                .arg("--pin-file")
                .arg(&pin)
                .env_remove("SIGNER_MGMT_KEY")
                .env_remove("SIGNER_PIN")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "keygen on {serial}: {}", text(&out));
        }

        let socket = dir.path().join("run").join("signer.sock");
        let log = dir.path().join("daemon.log");
        let config = dir.path().join("signer.toml");
        std::fs::write(&config, "").unwrap();
        let child = sandbox
            .command(bin("signer-daemon"))
            .args(["serve", "--token", &format!("yubikey:{SERIAL_A}")])
            .args(["--token", &format!("yubikey:{SERIAL_B}")])
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut serving = Serving(child);
        let until = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Some(status) = serving.0.try_wait().unwrap() {
                panic!("the daemon exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            assert!(Instant::now() < until, "the daemon did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let signerctl = |args: &[&str]| {
            Command::new(bin("signerctl"))
                .arg("--socket")
                .arg(&socket)
                .env_remove("SIGNER_SOCKET")
                .current_dir(dir.path())
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        let ok = |args: &[&str]| {
            let out = signerctl(args);
            assert!(
                out.status.success(),
                "signerctl {args:?}: {}\ndaemon log:\n{}",
                text(&out),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            out
        };

        let (a, b) = (SERIAL_A.to_string(), SERIAL_B.to_string());
        ok(&["tuf", "key", "--key", "9c", "--token", &a, "-o", "a.json"]);
        ok(&["tuf", "key", "--key", "9c", "--token", &b, "-o", "b.json"]);
        let b_key: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("b.json")).unwrap()).unwrap();
        assert_eq!(b_key["key"]["scheme"], "ecdsa-sha2-nistp384");
        ok(&["tuf", "init", "--root-key", "a.json", "--root-key", "b.json", "--threshold", "2", "-o", "root.json"]);
        let root = dir.path().join("root.json");

        let out = ok(&["tuf", "sign", "--key", "9c", "--token", &a, "root.json"]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("Touch your YubiKey now"), "{}", text(&out));
        let out = signerctl(&["tuf", "verify", "root.json"]);
        assert_eq!(out.status.code(), Some(7), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 of 2 required valid signatures: THRESHOLD NOT MET"), "{}", text(&out));
        let check = verify_root(&root);
        assert_eq!(check.status.code(), Some(1), "python-tuf: {}", text(&check));

        ok(&["tuf", "sign", "--key", "9c", "--token", &b, "root.json"]);
        ok(&["tuf", "verify", "root.json"]);
        let check = verify_root(&root);
        assert!(check.status.success(), "python-tuf: {}", text(&check));
        assert!(String::from_utf8_lossy(&check.stdout).contains("2 of threshold 2"), "{}", text(&check));
        drop(serving);
        drop(cards);
    }
);

const SERIAL_C: u32 = 35_791_246;

/// The daemon serving `yubikey:SERIAL` for `serials` in `sandbox`; returns
/// it with its socket and log.
fn serve(
    sandbox: &signer_e2e::pcsc_sandbox::Sandbox,
    dir: &Path,
    pin: &Path,
    serials: &[u32],
) -> (Serving, PathBuf, PathBuf) {
    let socket = dir.join("run").join("signer.sock");
    let log = dir.join("daemon.log");
    let config = dir.join("signer.toml");
    std::fs::write(&config, "").unwrap();
    let mut cmd = sandbox.command(bin("signer-daemon"));
    cmd.arg("serve");
    for s in serials {
        cmd.args(["--token", &format!("yubikey:{s}")]);
    }
    let child = cmd
        .arg("--socket")
        .arg(&socket)
        .arg("--config")
        .arg(&config)
        .arg("--pin-file")
        .arg(pin)
        .arg("--audit-log")
        .arg(dir.join("audit.jsonl"))
        .env_remove("SIGNER_PIN")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut serving = Serving(child);
    let until = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if let Some(status) = serving.0.try_wait().unwrap() {
            panic!(
                "the daemon exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < until, "the daemon did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (serving, socket, log)
}

sandboxed_test!(readers: 1,
    /// The YubiKey path (PC/SC, the PIV client, the daemon's release check
    /// for hardware tokens) with an Ed25519 and an RSA-2048 key generated
    /// through `keygen --token yubikey:SERIAL`: signerctl signatures that
    /// openssl verifies, and a root signed by both to threshold 2 that
    /// python-tuf accepts (and refuses with one signature).
    fn ed25519_and_rsa_keys_on_a_yubikey_sign_through_the_daemon_and_python_tuf_verifies(sandbox) {
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "123456\n").unwrap();
        let card = EmulatedCardInReader::insert_new(
            sandbox.reader(0),
            dir.path(),
            &TouchSetup::approve(),
            &InitOptions {
                serial: Some(SERIAL_C),
                ..InitOptions::default()
            },
        )
        .unwrap();
        for (slot, alg) in [("9c", "ed25519"), ("9d", "rsa2048")] {
            let out = sandbox
                .command(bin("signer-daemon"))
                .args(["keygen", "--token", &format!("yubikey:{SERIAL_C}")])
                .args(["--slot", slot, "--alg", alg, "--pin-policy", "once", "--touch-policy", "always"])
                .arg("--pin-file")
                .arg(&pin)
                .env_remove("SIGNER_MGMT_KEY")
                .env_remove("SIGNER_PIN")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "keygen {alg}: {}", text(&out));
        }
        let (serving, socket, log) = serve(sandbox, dir.path(), &pin, &[SERIAL_C]);
        let ok = |args: &[&str]| {
            let out = Command::new(bin("signerctl"))
                .arg("--socket")
                .arg(&socket)
                .env_remove("SIGNER_SOCKET")
                .current_dir(dir.path())
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "signerctl {args:?}: {}\ndaemon log:\n{}",
                text(&out),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            out
        };
        let listed = String::from_utf8_lossy(&ok(&["list"]).stdout).into_owned();
        assert!(listed.contains("9c   ed25519") && listed.contains("9d   rsa2048"), "{listed}");

        // Plain signatures, checked by openssl.
        std::fs::write(dir.path().join("data"), b"signed on the YubiKey path").unwrap();
        ok(&["pubkey", "--key", "9c"]);
        std::fs::write(dir.path().join("ed.pem"), ok(&["pubkey", "--key", "9c"]).stdout).unwrap();
        std::fs::write(dir.path().join("rsa.pem"), ok(&["pubkey", "--key", "9d"]).stdout).unwrap();
        let out = ok(&["sign", "--key", "9c", "--in", "data", "-o", "ed.sig"]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("Touch your YubiKey now"), "{}", text(&out));
        ok(&["sign", "--key", "9d", "--padding", "pss", "--in", "data", "-o", "pss.sig"]);
        ok(&["sign", "--key", "9d", "--padding", "pkcs1v15", "--hash", "sha384", "--in", "data", "-o", "pkcs1.sig"]);
        let openssl = |args: &[&str]| {
            Command::new("openssl")
                .current_dir(dir.path())
                .args(args)
                .output()
                .expect("openssl is missing (tests/scripts/install-deps.sh installs it)")
        };
        for args in [
            &["pkeyutl", "-verify", "-pubin", "-inkey", "ed.pem", "-rawin", "-in", "data", "-sigfile", "ed.sig"][..],
            &["dgst", "-sha256", "-verify", "rsa.pem", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest", "-signature", "pss.sig", "data"][..],
            &["dgst", "-sha384", "-verify", "rsa.pem", "-signature", "pkcs1.sig", "data"][..],
        ] {
            let out = openssl(args);
            assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
        }

        // A root with both keys, threshold 2.
        let c = SERIAL_C.to_string();
        ok(&["tuf", "key", "--key", "9c", "--token", &c, "-o", "ed.json"]);
        ok(&["tuf", "key", "--key", "9d", "--token", &c, "-o", "rsa.json"]);
        ok(&["tuf", "init", "--root-key", "ed.json", "--root-key", "rsa.json", "--threshold", "2", "-o", "root.json"]);
        let root = dir.path().join("root.json");
        ok(&["tuf", "sign", "--key", "9c", "--token", &c, "root.json"]);
        let check = verify_root(&root);
        assert_eq!(check.status.code(), Some(1), "python-tuf: {}", text(&check));
        ok(&["tuf", "sign", "--key", "9d", "--token", &c, "root.json"]);
        ok(&["tuf", "verify", "root.json"]);
        let check = verify_root(&root);
        assert!(check.status.success(), "python-tuf: {}", text(&check));
        assert!(String::from_utf8_lossy(&check.stdout).contains("2 of threshold 2"), "{}", text(&check));
        drop(serving);
        drop(card);
    }
);
