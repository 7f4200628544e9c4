//! The binaries on the hardware path, end to end through a real (private)
//! pcscd and the emulated YubiKey behind vpcd: `signer-daemon keygen --token
//! yubikey` (management key sources, including a key ykman stored
//! PIN-protected), `signer-daemon serve --token yubikey`, and one signature
//! through `signerctl` verified with openssl.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use signer_e2e::hardware::EmulatedCardInReader;
use signer_e2e::pcsc_sandbox::Sandbox;
use signer_e2e::sandboxed_test;
use signer_lib::emulator::InitOptions;
use signer_lib::testing::TouchSetup;

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

fn keygen(sandbox: &Sandbox, dir: &Path, slot: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = sandbox.command(bin("signer-daemon"));
    cmd.args([
        "keygen",
        "--token",
        "yubikey",
        "--slot",
        slot,
        "--alg",
        "p256",
        "--pin-policy",
        "once",
        "--touch-policy",
        "always",
        "--pin-file",
    ])
    .arg(dir.join("pin"))
    .env_remove("SIGNER_MGMT_KEY")
    .env_remove("SIGNER_PIN")
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

sandboxed_test!(
    fn keygen_then_serve_then_sign_through_signerctl_verified_by_openssl(sandbox) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pin"), "123456\n").unwrap();
        let card = EmulatedCardInReader::insert_new(
            sandbox.reader(0),
            dir.path(),
            &TouchSetup::approve(),
            &InitOptions::default(),
        )
        .unwrap();

        // Provisioning with the factory management key: it works, loudly.
        let out = keygen(sandbox, dir.path(), "9c", &[]);
        assert!(out.status.success(), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("FACTORY DEFAULT"), "{}", text(&out));
        let pem = String::from_utf8(out.stdout.clone()).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
        let pub_pem = dir.path().join("9c.pub.pem");
        std::fs::write(&pub_pem, &pem).unwrap();
        assert!(stderr.contains("Touch your YubiKey now to self-sign"), "{}", text(&out));
        assert!(stderr.contains("wrote a self-signed certificate"), "{}", text(&out));
        // A real client sees the key through its certificate: yubico-piv-tool
        // reads it, and it holds the generated public key.
        let read = sandbox
            .command("yubico-piv-tool")
            .arg("--reader")
            .arg(&sandbox.reader(0).name)
            .args(["-a", "read-certificate", "-s", "9c"])
            .output()
            .expect("yubico-piv-tool (package yubico-piv-tool) is needed");
        assert!(read.status.success(), "{}", text(&read));
        let cert = dir.path().join("9c.cert.pem");
        std::fs::write(&cert, &read.stdout).unwrap();
        let cert_key = Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(&cert)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&cert_key.stdout), pem, "{}", text(&cert_key));

        // A wrong management key from the environment is refused.
        let out = keygen(
            sandbox,
            dir.path(),
            "9d",
            &[("SIGNER_MGMT_KEY", &"ab".repeat(24))],
        );
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("wrong management key"),
            "{}",
            text(&out)
        );

        // The daemon on the YubiKey.
        let socket = dir.path().join("run").join("signer.sock");
        let config = dir.path().join("signer.toml");
        // The emulated card's attestation root, configured as an extra root
        // (a real YubiKey's would chain to Yubico's built-in anchors).
        let root = dir.path().join("card-root.pem");
        std::fs::write(
            &root,
            pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, &card.root)
                .unwrap(),
        )
        .unwrap();
        std::fs::write(
            &config,
            format!("attestation_roots = [{:?}]\n", root.display().to_string()),
        )
        .unwrap();
        let log = dir.path().join("daemon.log");
        let child = sandbox
            .command(bin("signer-daemon"))
            .args(["serve", "--token", "yubikey", "--socket"])
            .arg(&socket)
            .arg("--config")
            .arg(&config)
            .arg("--pin-file")
            .arg(dir.path().join("pin"))
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
                panic!(
                    "the daemon exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < until, "the daemon did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }

        let data = dir.path().join("data.txt");
        std::fs::write(&data, b"root metadata, signed on a YubiKey over PC/SC").unwrap();
        let sig = dir.path().join("data.sig");
        let out = Command::new(bin("signerctl"))
            .arg("--socket")
            .arg(&socket)
            .args(["sign", "--key", "9c", "--in"])
            .arg(&data)
            .arg("-o")
            .arg(&sig)
            .env_remove("SIGNER_SOCKET")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\ndaemon log:\n{}",
            text(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Touch your YubiKey"),
            "{}",
            text(&out)
        );
        let verify = Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&pub_pem)
            .arg("-signature")
            .arg(&sig)
            .arg(&data)
            .output()
            .expect("openssl is needed (tests/scripts/install-deps.sh)");
        assert!(
            verify.status.success()
                && String::from_utf8_lossy(&verify.stdout).trim() == "Verified OK",
            "{}",
            text(&verify)
        );
        // Attestation over PC/SC: trusted through the configured root, with
        // the card's serial and the key's policies decoded.
        let out = Command::new(bin("signerctl"))
            .arg("--socket")
            .arg(&socket)
            .args(["attest", "--key", "9c"])
            .env_remove("SIGNER_SOCKET")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let verdict = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{}", text(&out));
        assert!(verdict.contains("trusted:       yes"), "{verdict}");
        assert!(verdict.contains(&card.serial.to_string()), "{verdict}");
        assert!(verdict.contains("always"), "touch policy: {verdict}");
        drop(serving);
    }
);

/// yubikit (ykman 4.0.9's Python library): authenticate with the factory
/// key, verify the PIN, and store a new random AES-192 management key
/// PIN-protected, exactly as `ykman piv access change-management-key
/// --generate --protect` does. Prints the new key.
const YKMAN_PROTECT: &str = r#"
import os, sys
from ykman.pcsc import list_readers, ScardYubiKeyDevice
from ykman.piv import pivman_set_mgm_key
from yubikit.core.smartcard import SmartCardConnection
from yubikit.piv import PivSession, MANAGEMENT_KEY_TYPE
name = sys.argv[1]
reader = next(r for r in list_readers() if r.name == name)
with ScardYubiKeyDevice(reader).open_connection(SmartCardConnection) as conn:
    session = PivSession(conn)
    session.authenticate(MANAGEMENT_KEY_TYPE.AES192, bytes.fromhex("010203040506070801020304050607080102030405060708"))
    session.verify_pin("123456")
    new = os.urandom(24)
    pivman_set_mgm_key(session, new, MANAGEMENT_KEY_TYPE.AES192, False, True)
print("YKMAN-OK", new.hex())
"#;

sandboxed_test!(
    fn keygen_uses_a_management_key_ykman_stored_pin_protected(sandbox) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pin"), "123456\n").unwrap();
        let _card = EmulatedCardInReader::insert_new(
            sandbox.reader(0),
            dir.path(),
            &TouchSetup::approve(),
            &InitOptions::default(),
        )
        .unwrap();
        let out = sandbox
            .command("/usr/bin/python3")
            .args(["-c", YKMAN_PROTECT, &sandbox.reader(0).name])
            .output()
            .expect("/usr/bin/python3 with ykman (package yubikey-manager) is needed");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("YKMAN-OK"),
            "{}",
            text(&out)
        );

        let out = keygen(sandbox, dir.path(), "9a", &[]);
        assert!(out.status.success(), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("PIN-protected"), "{}", text(&out));
        assert!(!stderr.contains("FACTORY DEFAULT"), "{}", text(&out));

        // The factory key no longer works: the key used really was ykman's.
        let out = keygen(
            sandbox,
            dir.path(),
            "9d",
            &[(
                "SIGNER_MGMT_KEY",
                "010203040506070801020304050607080102030405060708",
            )],
        );
        assert!(!out.status.success(), "{}", text(&out));

        // A wrong PIN for the protected key: refused, one try spent, not retried.
        std::fs::write(dir.path().join("pin"), "999999\n").unwrap();
        let out = keygen(sandbox, dir.path(), "9e", &[]);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("2 tries left"),
            "{}",
            text(&out)
        );
    }
);
