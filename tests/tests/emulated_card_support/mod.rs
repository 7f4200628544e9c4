//! Shared by the conformance tests of the emulated card with real tools
//! (`emulated_card_conformance.rs`, `ykcs11_conformance.rs`,
//! `ykman_test_piv.rs`): an emulated
//! token made with `signer-daemon emulated init` and served by the real
//! `signer-daemon emulate-card` binary to a sandbox reader, and helpers that
//! run a tool and fail the test when it exits non-zero or prints an error.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use signer_e2e::pcsc_client::{establish, wait_for_card};
use signer_e2e::pcsc_sandbox::Sandbox;

pub const WAIT: Duration = Duration::from_secs(20);
/// The factory management key (3DES before firmware 5.7, AES-192 from 5.7).
pub const TDES_DEFAULT: &str = "010203040506070801020304050607080102030405060708";
pub const AES192_DEFAULT: &str = TDES_DEFAULT;

/// A binary of the workspace, built by `cargo test --workspace`.
pub fn bin(name: &str) -> PathBuf {
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

/// The `signer-daemon` that makes and serves the emulated card: the
/// workspace's, or another build named by `SIGNER_E2E_CARD_DAEMON` (to show
/// that a test catches the defect it is about, e.g. an older emulator).
pub fn card_daemon() -> PathBuf {
    match std::env::var_os("SIGNER_E2E_CARD_DAEMON") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.exists(),
                "SIGNER_E2E_CARD_DAEMON={} does not exist",
                path.display()
            );
            path
        }
        None => bin("signer-daemon"),
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `cmd`; fail the test when it exits non-zero or prints an error.
pub fn ok(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let t = text(&out);
    assert!(out.status.success(), "{what} failed ({}):\n{t}", out.status);
    let lower = t.to_lowercase();
    for word in ["error", "failed", "traceback"] {
        assert!(!lower.contains(word), "{what} printed {word:?}:\n{t}");
    }
    t
}

/// Run `cmd` and expect it to fail; its output.
pub fn fails(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let t = text(&out);
    assert!(!out.status.success(), "{what} should have failed:\n{t}");
    t
}

/// An emulated token served by `signer-daemon emulate-card`.
pub struct EmulatedCard {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    /// The token's attestation root (PEM), from `signer-daemon emulated root`.
    pub root: PathBuf,
    child: Option<Child>,
}

impl EmulatedCard {
    /// `emulated init` (serial, management key algorithm), `emulated root`,
    /// then `emulate-card` on reader 0 until the card is in pcscd.
    pub fn start(sandbox: &Sandbox, serial: u32, mgmt: &str, atr: &str) -> EmulatedCard {
        EmulatedCard::start_on(sandbox, 0, serial, mgmt, atr)
    }

    /// The same on sandbox reader `reader`.
    pub fn start_on(
        sandbox: &Sandbox,
        reader: usize,
        serial: u32,
        mgmt: &str,
        atr: &str,
    ) -> EmulatedCard {
        EmulatedCard::start_with(sandbox, reader, serial, &["--mgmt-key-alg", mgmt], atr)
    }

    /// The same with any `emulated init` options after `--serial` (e.g.
    /// `--firmware 4.3.7`).
    pub fn start_with(
        sandbox: &Sandbox,
        reader: usize,
        serial: u32,
        init_args: &[&str],
        atr: &str,
    ) -> EmulatedCard {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("token.state");
        let mut init = Command::new(card_daemon());
        init.args(["emulated", "init", "--state"]).arg(&state);
        init.args(["--serial", &serial.to_string()]).args(init_args);
        ok(init, "signer-daemon emulated init");
        let mut root = Command::new(card_daemon());
        root.args(["emulated", "root", "--state"]).arg(&state);
        let pem = ok(root, "signer-daemon emulated root");
        assert!(pem.contains("-----BEGIN CERTIFICATE-----"), "{pem}");
        let root = dir.path().join("root.pem");
        std::fs::write(&root, pem).unwrap();

        let child = sandbox
            .command(card_daemon())
            .args(["emulate-card", "--state"])
            .arg(&state)
            .args([
                "--vpcd",
                &sandbox.reader(reader).vpcd_address(),
                "--atr",
                atr,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("emulate-card.log")).unwrap())
            .spawn()
            .unwrap();
        let ctx = establish(WAIT).unwrap();
        if let Err(e) = wait_for_card(&ctx, &sandbox.reader(reader).name, true, WAIT) {
            let log = std::fs::read_to_string(dir.path().join("emulate-card.log"));
            panic!("the emulated card never appeared: {e}\nemulate-card: {log:?}");
        }
        EmulatedCard {
            dir,
            state,
            root,
            child: Some(child),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// SIGTERM: the bridge stops cleanly (exit 0) and the state file is
    /// whole (it opens again).
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = child.wait().unwrap();
        let log = std::fs::read_to_string(self.path("emulate-card.log")).unwrap_or_default();
        assert!(status.success(), "emulate-card exited {status}:\n{log}");
        let mut root = Command::new(card_daemon());
        root.args(["emulated", "root", "--state"]).arg(&self.state);
        ok(root, "the state file opens after the bridge stopped");
    }
}

impl Drop for EmulatedCard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `yubico-piv-tool` with the sandbox's environment and its default reader
/// ("Yubico": the first reader whose name contains it), as with hardware.
pub fn piv_tool(sandbox: &Sandbox, args: &[&str]) -> Command {
    let mut c = sandbox.command("yubico-piv-tool");
    c.args(args);
    c
}

/// `openssl dgst -verify` of a DER ECDSA signature over `data`.
pub fn openssl_verify(public_pem: &Path, digest: &str, data: &Path, signature: &Path) {
    let mut c = Command::new("openssl");
    c.args(["dgst", digest, "-verify"]).arg(public_pem);
    c.arg("-signature").arg(signature).arg(data);
    let out = ok(c, "openssl dgst -verify");
    assert!(out.contains("Verified OK"), "{out}");
}

/// The SubjectPublicKeyInfo PEM of a public key, CSR or certificate file,
/// as one line without the armor (for comparisons).
pub fn spki_of(kind: &str, path: &Path) -> String {
    let mut c = Command::new("openssl");
    match kind {
        "key" => c.args(["pkey", "-pubin", "-in"]),
        "csr" => c.args(["req", "-pubkey", "-noout", "-in"]),
        "cert" => c.args(["x509", "-pubkey", "-noout", "-in"]),
        other => panic!("spki_of: unknown kind {other}"),
    };
    c.arg(path);
    let pem = ok(
        c,
        &format!("openssl: the public key of the {kind} {}", path.display()),
    );
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// A copy of PEM `path` as DER with the last byte (the end of the
/// signature) flipped.
fn tampered_der(kind: &str, path: &Path) -> PathBuf {
    let der = path.with_extension("tampered.der");
    let mut c = Command::new("openssl");
    c.args([kind, "-outform", "DER", "-in"])
        .arg(path)
        .arg("-out")
        .arg(&der);
    ok(c, &format!("openssl {kind} -outform DER"));
    let mut bytes = std::fs::read(&der).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    std::fs::write(&der, bytes).unwrap();
    der
}

/// A CSR a tool made with a key on the card: `openssl req -verify` accepts
/// its signature, refuses it with the signature's last byte changed, and
/// its key is `public_pem`'s.
pub fn verify_csr(csr: &Path, public_pem: &Path) {
    let mut c = Command::new("openssl");
    c.args(["req", "-verify", "-noout", "-in"]).arg(csr);
    let out = ok(c, "openssl req -verify");
    assert!(out.contains("verify OK"), "{out}");
    assert_eq!(
        spki_of("csr", csr),
        spki_of("key", public_pem),
        "the CSR holds the card's key"
    );
    // (OpenSSL 3.0's `req -verify` exits 0 on a bad signature: its words
    // decide.)
    let bad = tampered_der("req", csr);
    let mut c = Command::new("openssl");
    c.args(["req", "-verify", "-noout", "-inform", "DER", "-in"])
        .arg(&bad);
    let out = c.output().unwrap();
    let t = text(&out);
    assert!(
        t.contains("verify failure") && !t.contains("verify OK"),
        "openssl req -verify of the CSR with its signature changed must fail:\n{t}"
    );
}

/// A self-signed certificate a tool made with a key on the card: `openssl
/// verify -check_ss_sig` accepts its signature, refuses it with the
/// signature's last byte changed, and its key is `public_pem`'s.
pub fn verify_self_signed(cert: &Path, public_pem: &Path) {
    let mut c = Command::new("openssl");
    c.args(["verify", "-check_ss_sig", "-CAfile"])
        .arg(cert)
        .arg(cert);
    let out = ok(c, "openssl verify -check_ss_sig");
    assert!(out.contains(": OK"), "{out}");
    assert_eq!(
        spki_of("cert", cert),
        spki_of("key", public_pem),
        "the certificate holds the card's key"
    );
    let bad = tampered_der("x509", cert);
    let bad_pem = cert.with_extension("tampered.pem");
    let mut c = Command::new("openssl");
    c.args(["x509", "-inform", "DER", "-in"])
        .arg(&bad)
        .arg("-out")
        .arg(&bad_pem);
    ok(c, "openssl x509 (the changed certificate)");
    let mut c = Command::new("openssl");
    c.args(["verify", "-check_ss_sig", "-CAfile"])
        .arg(&bad_pem)
        .arg(&bad_pem);
    fails(
        c,
        "openssl verify of the certificate with its signature changed",
    );
}
