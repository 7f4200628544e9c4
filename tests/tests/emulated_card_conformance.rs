//! Conformance of the emulated YubiKey with real clients: the
//! `signer-daemon emulate-card` binary serves an emulated token (made with
//! `signer-daemon emulated init`) to a private pcscd through vpcd, and
//! Yubico's and OpenSC's own tools drive it as they drive a YubiKey:
//!
//! - yubico-piv-tool 2.2.0 (Debian): status, version, generate with PIN and
//!   touch policies, verify-pin, attest, import/read-certificate,
//!   test-signature, change-pin, unblock-pin, set-mgm-key (3DES: the
//!   only algorithm 2.2.0 knows, so its token is made with a 3DES key).
//! - ykman 4.0.9 (Debian, `/usr/bin/ykman`): `info`, `piv info`,
//!   `piv keys generate`, `piv keys attest`, `piv keys export`,
//!   `piv certificates export` against an AES-192 token.
//! - ykman from PyPI (5.x, in the venv `tests/scripts/install-deps.sh`
//!   makes at [`YKMAN_VENV`]): the same, with the card answering the NFC
//!   ATR (`emulate-card --atr nfc`): ykman 5 takes a card with the USB ATR
//!   on a reader not named "Yubico YubiKey" for a USB device and then
//!   refuses it for lack of a USB product id.
//! - PKCS#11: OpenSC's `opensc-pkcs11.so` signs through `pkcs11-tool`.
//!   (Yubico's libykcs11 2.2.0 lists no slot for a reader named "Virtual
//!   PCD 00 00": it only takes readers whose name says Yubico.)
//!
//! Every signature is verified by `openssl` with the public key the tool
//! printed at generation, every attestation certificate with `openssl
//! verify` against the emulated root (`signer-daemon emulated root`) and the
//! f9 intermediate. A tool that exits non-zero or prints an error fails the
//! test.
//!
//! The sandbox always has two readers; tools are pointed at reader 0 by its
//! full name ("Virtual PCD 00 00"): ykman refuses a name that matches two.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use signer_e2e::pcsc_client::{establish, wait_for_card};
use signer_e2e::pcsc_sandbox::Sandbox;
use signer_e2e::sandboxed_test;

const WAIT: Duration = Duration::from_secs(20);
const TDES_DEFAULT: &str = "010203040506070801020304050607080102030405060708";
const TDES_NEW: &str = "a1a2a3a4a5a6a7a8b1b2b3b4b5b6b7b8c1c2c3c4c5c6c7c8";
const AES192_DEFAULT: &str = TDES_DEFAULT;

/// Where `tests/scripts/install-deps.sh` installs ykman from PyPI
/// (override with `SIGNER_YKMAN_VENV`).
pub const YKMAN_VENV: &str = "/usr/local/lib/signer-e2e-ykman";

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
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `cmd`; fail the test when it exits non-zero or prints an error.
fn ok(mut cmd: Command, what: &str) -> String {
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

/// Run `cmd` and expect it to fail.
fn fails(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "{what} should have failed:\n{t}");
    t
}

/// An emulated token served by `signer-daemon emulate-card`.
struct EmulatedCard {
    dir: tempfile::TempDir,
    state: PathBuf,
    root: PathBuf,
    child: Option<Child>,
}

impl EmulatedCard {
    /// `emulated init` (serial, management key algorithm), `emulated root`,
    /// then `emulate-card` on reader 0 until the card is in pcscd.
    fn start(sandbox: &Sandbox, serial: u32, mgmt: &str, atr: &str) -> EmulatedCard {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("token.state");
        let mut init = Command::new(bin("signer-daemon"));
        init.args(["emulated", "init", "--state"]).arg(&state);
        init.args(["--serial", &serial.to_string(), "--mgmt-key-alg", mgmt]);
        ok(init, "signer-daemon emulated init");
        let mut root = Command::new(bin("signer-daemon"));
        root.args(["emulated", "root", "--state"]).arg(&state);
        let pem = ok(root, "signer-daemon emulated root");
        assert!(pem.contains("-----BEGIN CERTIFICATE-----"), "{pem}");
        let root = dir.path().join("root.pem");
        std::fs::write(&root, pem).unwrap();

        let child = sandbox
            .command(bin("signer-daemon"))
            .args(["emulate-card", "--state"])
            .arg(&state)
            .args(["--vpcd", &sandbox.reader(0).vpcd_address(), "--atr", atr])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("emulate-card.log")).unwrap())
            .spawn()
            .unwrap();
        let ctx = establish(WAIT).unwrap();
        if let Err(e) = wait_for_card(&ctx, &sandbox.reader(0).name, true, WAIT) {
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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// SIGTERM: the bridge stops cleanly (exit 0) and the state file is
    /// whole (it opens again).
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = child.wait().unwrap();
        let log = std::fs::read_to_string(self.path("emulate-card.log")).unwrap_or_default();
        assert!(status.success(), "emulate-card exited {status}:\n{log}");
        let mut root = Command::new(bin("signer-daemon"));
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

fn piv_tool(sandbox: &Sandbox, args: &[&str]) -> Command {
    let mut c = sandbox.command("yubico-piv-tool");
    c.args(["-r", &sandbox.reader(0).name]).args(args);
    c
}

/// `openssl verify` of `cert` against the emulated root with the f9
/// certificate as the intermediate.
fn verify_chain(card: &EmulatedCard, f9: &Path, cert: &Path) {
    let mut v = Command::new("openssl");
    v.arg("verify").arg("-CAfile").arg(&card.root);
    v.arg("-untrusted").arg(f9).arg(cert);
    let out = ok(v, "openssl verify of the attestation chain");
    assert!(out.contains(": OK"), "{out}");
}

/// The SubjectPublicKeyInfo (PEM) of a certificate.
fn cert_public_key(cert: &Path) -> String {
    let mut c = Command::new("openssl");
    c.args(["x509", "-pubkey", "-noout", "-in"]).arg(cert);
    ok(c, "openssl x509 -pubkey")
}

/// The public key PEM in a tool's output or file, normalised.
fn pem_key(text: &str) -> String {
    let start = text
        .find("-----BEGIN PUBLIC KEY-----")
        .expect("a public key");
    let end = text
        .find("-----END PUBLIC KEY-----")
        .expect("a public key end");
    text[start..end].split_whitespace().collect()
}

/// `openssl dgst -verify` of a DER ECDSA signature over `data`.
fn openssl_verify(public_pem: &Path, digest: &str, data: &Path, signature: &Path) {
    let mut c = Command::new("openssl");
    c.args(["dgst", digest, "-verify"]).arg(public_pem);
    c.arg("-signature").arg(signature).arg(data);
    let out = ok(c, "openssl dgst -verify");
    assert!(out.contains("Verified OK"), "{out}");
}

sandboxed_test!(
    fn yubico_piv_tool_drives_the_emulated_card(sandbox) {
        let card = EmulatedCard::start(sandbox, 12_345_678, "tdes", "usb");
        let key = format!("--key={TDES_DEFAULT}");

        let out = ok(piv_tool(sandbox, &["-a", "version"]), "yubico-piv-tool -a version");
        assert!(out.contains("5.7.4"), "{out}");
        let out = ok(piv_tool(sandbox, &["-a", "status"]), "yubico-piv-tool -a status");
        assert!(out.contains("Serial Number:\t12345678"), "{out}");
        assert!(out.contains("PIN tries left:\t3"), "{out}");

        // Generate P-256 in 9A (PIN once, touch cached) and P-384 in 9C.
        let pub9a = card.path("9a.pub.pem");
        ok(
            piv_tool(
                sandbox,
                &[&key, "-a", "generate", "-s", "9a", "-A", "ECCP256", "--pin-policy=once",
                  "--touch-policy=cached", "-o", pub9a.to_str().unwrap()],
            ),
            "yubico-piv-tool -a generate 9a",
        );
        let pub9c = card.path("9c.pub.pem");
        ok(
            piv_tool(
                sandbox,
                &[&key, "-a", "generate", "-s", "9c", "-A", "ECCP384", "--pin-policy=always",
                  "--touch-policy=never", "-o", pub9c.to_str().unwrap()],
            ),
            "yubico-piv-tool -a generate 9c",
        );

        // Attestation: the chain verifies and the key is the generated one.
        let f9 = card.path("f9.pem");
        ok(
            piv_tool(sandbox, &["-a", "read-certificate", "-s", "f9", "-o", f9.to_str().unwrap()]),
            "yubico-piv-tool -a read-certificate -s f9",
        );
        for (slot, public) in [("9a", &pub9a), ("9c", &pub9c)] {
            let att = card.path(&format!("{slot}.attest.pem"));
            ok(
                piv_tool(sandbox, &["-a", "attest", "-s", slot, "-o", att.to_str().unwrap()]),
                "yubico-piv-tool -a attest",
            );
            verify_chain(&card, &f9, &att);
            assert_eq!(
                pem_key(&cert_public_key(&att)),
                pem_key(&std::fs::read_to_string(public).unwrap()),
                "{slot}: the attested key is the generated key"
            );
        }

        // The attestation certificate as 9A's certificate (yubico-piv-tool
        // 2.2.0's selfsign-certificate is broken with OpenSSL 3, on real
        // YubiKeys too: Yubico/yubico-piv-tool#388).
        let att9a = card.path("9a.attest.pem");
        ok(
            piv_tool(sandbox, &[&key, "-a", "import-certificate", "-s", "9a", "-i",
                                att9a.to_str().unwrap()]),
            "yubico-piv-tool -a import-certificate",
        );
        let read = card.path("9a.read.pem");
        ok(
            piv_tool(sandbox, &["-a", "read-certificate", "-s", "9a", "-o", read.to_str().unwrap()]),
            "yubico-piv-tool -a read-certificate",
        );
        assert_eq!(std::fs::read(&read).unwrap(), std::fs::read(&att9a).unwrap());
        let out = ok(
            piv_tool(sandbox, &["-a", "verify-pin", "-P", "123456", "-a", "test-signature", "-s",
                                "9a", "-i", att9a.to_str().unwrap()]),
            "yubico-piv-tool -a test-signature",
        );
        assert!(out.contains("Successful ECDSA verification"), "{out}");

        // 9C (P-384, PIN always): test-signature after verify-pin; without
        // the PIN the card refuses. (yubico-piv-tool 2.2.0 has no action
        // that writes a signature to a file; pkcs11-tool below does, and
        // openssl verifies it.)
        let att9c = card.path("9c.attest.pem");
        ok(
            piv_tool(sandbox, &[&key, "-a", "import-certificate", "-s", "9c", "-i",
                                att9c.to_str().unwrap()]),
            "yubico-piv-tool -a import-certificate 9c",
        );
        let out = ok(
            piv_tool(sandbox, &["-a", "verify-pin", "-P", "123456", "-a", "test-signature", "-s",
                                "9c", "-i", att9c.to_str().unwrap()]),
            "yubico-piv-tool -a test-signature 9c",
        );
        assert!(out.contains("Successful ECDSA verification"), "{out}");
        fails(
            piv_tool(sandbox, &["-a", "test-signature", "-s", "9c", "-i",
                                att9c.to_str().unwrap()]),
            "a PIN-always signature without the PIN",
        );

        // PIN: change, a wrong one counts, unblock with the PUK.
        ok(
            piv_tool(sandbox, &["-a", "change-pin", "-P", "123456", "-N", "654321"]),
            "yubico-piv-tool -a change-pin",
        );
        ok(piv_tool(sandbox, &["-a", "verify-pin", "-P", "654321"]), "verify the new PIN");
        // Three wrong PINs block it: the right one is refused after.
        for left in ["2 tries left", "1 tries left", "blocked"] {
            let out = fails(
                piv_tool(sandbox, &["-a", "verify-pin", "-P", "000000"]),
                "a wrong PIN",
            );
            assert!(out.contains(left), "expected {left:?}:\n{out}");
        }
        fails(
            piv_tool(sandbox, &["-a", "verify-pin", "-P", "654321"]),
            "the right PIN once blocked",
        );
        let out = ok(piv_tool(sandbox, &["-a", "status"]), "status when blocked");
        assert!(out.contains("PIN tries left:\t0"), "{out}");
        ok(
            piv_tool(sandbox, &["-a", "unblock-pin", "-P", "12345678", "-N", "111111"]),
            "yubico-piv-tool -a unblock-pin",
        );
        let out = ok(piv_tool(sandbox, &["-a", "status"]), "status after unblock");
        assert!(out.contains("PIN tries left:\t3"), "{out}");
        ok(piv_tool(sandbox, &["-a", "verify-pin", "-P", "111111"]), "verify the unblocked PIN");

        // Management key: set a new one; the old one is refused after.
        ok(
            piv_tool(sandbox, &[&key, "-a", "set-mgm-key", "-n", TDES_NEW]),
            "yubico-piv-tool -a set-mgm-key",
        );
        fails(
            piv_tool(sandbox, &[&key, "-a", "generate", "-s", "9e", "-A", "ECCP256"]),
            "generate with the old management key",
        );
        ok(
            piv_tool(sandbox, &[&format!("--key={TDES_NEW}"), "-a", "generate", "-s", "9e", "-A",
                                "ECCP256", "--pin-policy=never", "--touch-policy=never"]),
            "generate with the new management key",
        );
        card.stop();
    }
);

/// ykman's commands against the emulated card, for one ykman.
fn ykman_conformance(sandbox: &Sandbox, ykman: &[&str], card: &EmulatedCard, label: &str) {
    let reader = sandbox.reader(0).name.clone();
    let run = |args: &[&str]| {
        let mut c = sandbox.command(ykman[0]);
        c.args(&ykman[1..]).args(["--reader", &reader]).args(args);
        c
    };
    let out = ok(run(&["info"]), &format!("{label} info"));
    assert!(out.contains("12345678"), "{label}: serial in\n{out}");
    assert!(out.contains("5.7.4"), "{label}: firmware in\n{out}");
    let out = ok(run(&["piv", "info"]), &format!("{label} piv info"));
    assert!(
        out.contains("PIV version:") && out.contains("5.7.4"),
        "{out}"
    );
    assert!(out.contains("3/3"), "{label}: PIN tries in\n{out}");
    assert!(
        out.contains("AES192"),
        "{label}: management key algorithm in\n{out}"
    );

    let public = card.path(&format!("{label}.9c.pub.pem"));
    ok(
        run(&[
            "piv",
            "keys",
            "generate",
            "--management-key",
            AES192_DEFAULT,
            "-a",
            "ECCP256",
            "--pin-policy",
            "ONCE",
            "--touch-policy",
            "CACHED",
            "9c",
            public.to_str().unwrap(),
        ]),
        &format!("{label} piv keys generate"),
    );
    let f9 = card.path(&format!("{label}.f9.pem"));
    ok(
        run(&["piv", "certificates", "export", "f9", f9.to_str().unwrap()]),
        &format!("{label} piv certificates export f9"),
    );
    let att = card.path(&format!("{label}.9c.attest.pem"));
    ok(
        run(&["piv", "keys", "attest", "9c", att.to_str().unwrap()]),
        &format!("{label} piv keys attest"),
    );
    verify_chain(card, &f9, &att);
    assert_eq!(
        pem_key(&cert_public_key(&att)),
        pem_key(&std::fs::read_to_string(&public).unwrap()),
        "{label}: the attested key is the generated key"
    );
    let exported = card.path(&format!("{label}.9c.export.pem"));
    ok(
        run(&["piv", "keys", "export", "9c", exported.to_str().unwrap()]),
        &format!("{label} piv keys export"),
    );
    assert_eq!(
        pem_key(&std::fs::read_to_string(&exported).unwrap()),
        pem_key(&std::fs::read_to_string(&public).unwrap()),
        "{label}: the exported key is the generated key"
    );
}

sandboxed_test!(
    fn debian_ykman_4_identifies_generates_and_attests(sandbox) {
        let card = EmulatedCard::start(sandbox, 12_345_678, "aes192", "usb");
        let out = ok({ let mut c = Command::new("/usr/bin/ykman"); c.arg("--version"); c }, "ykman --version");
        assert!(out.contains("4.0.9"), "Debian's ykman is 4.0.9: {out}");
        ykman_conformance(sandbox, &["/usr/bin/ykman"], &card, "ykman-4");
        card.stop();
    }
);

sandboxed_test!(
    fn pypi_ykman_5_identifies_generates_and_attests_with_the_nfc_atr(sandbox) {
        let venv = std::env::var("SIGNER_YKMAN_VENV").unwrap_or_else(|_| YKMAN_VENV.into());
        let ykman = format!("{venv}/bin/ykman");
        let unavailable = format!("{venv}.unavailable");
        if !Path::new(&ykman).exists() {
            if let Ok(why) = std::fs::read_to_string(&unavailable) {
                // install-deps.sh tried and recorded why (the issue: "the newer
                // one from PyPI if it installs"). Say it loudly; Debian's
                // ykman 4.0.9 test still runs.
                eprintln!("NOT CHECKED: ykman 5 from PyPI is unavailable here: {}", why.trim());
                return;
            }
        }
        assert!(
            Path::new(&ykman).exists(),
            "{ykman} is missing: run tests/scripts/install-deps.sh (it installs yubikey-manager \
             from PyPI into {venv})"
        );
        let out = ok({ let mut c = Command::new(&ykman); c.arg("--version"); c }, "ykman --version");
        assert!(out.contains("version: 5."), "ykman 5 from PyPI: {out}");
        let card = EmulatedCard::start(sandbox, 12_345_678, "aes192", "nfc");
        ykman_conformance(sandbox, &[&ykman], &card, "ykman-5");
        card.stop();
    }
);

sandboxed_test!(
    fn opensc_pkcs11_signs_with_a_key_on_the_emulated_card(sandbox) {
        let card = EmulatedCard::start(sandbox, 12_345_678, "tdes", "usb");
        let key = format!("--key={TDES_DEFAULT}");
        let public = card.path("9a.pub.pem");
        ok(
            piv_tool(sandbox, &[&key, "-a", "generate", "-s", "9a", "-A", "ECCP256",
                                "--pin-policy=once", "--touch-policy=never", "-o",
                                public.to_str().unwrap()]),
            "yubico-piv-tool -a generate",
        );
        // OpenSC finds keys through their certificates: put the attestation
        // certificate (it holds the slot's public key) into 9A.
        let att = card.path("9a.attest.pem");
        ok(
            piv_tool(sandbox, &["-a", "attest", "-s", "9a", "-o", att.to_str().unwrap()]),
            "yubico-piv-tool -a attest",
        );
        ok(
            piv_tool(sandbox, &[&key, "-a", "import-certificate", "-s", "9a", "-i",
                                att.to_str().unwrap()]),
            "yubico-piv-tool -a import-certificate",
        );
        let module = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
        assert!(Path::new(module).exists(), "{module} is missing (package opensc-pkcs11)");
        let data = card.path("data.txt");
        std::fs::write(&data, b"PKCS#11 through the emulated card\n").unwrap();
        let sig = card.path("data.sig");
        let mut c = sandbox.command("pkcs11-tool");
        c.args(["--module", module, "--login", "--pin", "123456", "--sign", "--id", "01",
                "--mechanism", "ECDSA-SHA256", "--signature-format", "openssl", "-i"]);
        c.arg(&data).arg("-o").arg(&sig);
        ok(c, "pkcs11-tool --sign");
        openssl_verify(&public, "-sha256", &data, &sig);
        // A signature over other data does not verify: the check can fail.
        let other = card.path("other.txt");
        std::fs::write(&other, b"something else\n").unwrap();
        let mut v = Command::new("openssl");
        v.args(["dgst", "-sha256", "-verify"]).arg(&public);
        v.arg("-signature").arg(&sig).arg(&other);
        fails(v, "openssl verify over other data");
        card.stop();
    }
);
