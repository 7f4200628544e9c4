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
//!   makes at [`YKMAN_VENV`]): the same, with the USB ATR (on a reader named
//!   "Yubico YubiKey ..." ykman 5 derives the USB product id from the name).
//! - PKCS#11: OpenSC's `opensc-pkcs11.so` signs through `pkcs11-tool`
//!   (Yubico's libykcs11: `ykcs11_conformance.rs`).
//!
//! RSA-2048 and Ed25519, where the tool knows them (issue 14):
//! yubico-piv-tool 2.2.0 generates RSA-2048 in 9a and 9d, imports an
//! openssl key into 9e, attests, `test-signature` (PKCS#1 v1.5) and
//! `test-decipher`; ykman 4 (RSA-2048) and ykman 5 (RSA-2048, Ed25519;
//! X25519 generate and attest) generate, import, attest, export and sign a
//! CSR and a self-signed certificate (openssl verifies both and refuses them
//! with the signature changed); OpenSC signs RSA-2048 with PKCS#1 v1.5 and
//! PSS; OpenSC 0.23 cannot sign with Ed25519 (pinned). (yubico-piv-tool
//! 2.2.0, ykman 4.0.9, libykcs11 2.2.0 have no Ed25519.) On a card made as
//! a YubiKey 4 (`--firmware 4.3.7`), yubico-piv-tool generates, attests
//! and signs with RSA-2048 and P-256, and ykman 4 makes an RSA-2048 CSR.
//! ykman 5 moves an Ed25519 key from 9a to 82 and deletes it (firmware
//! 5.7), and refuses to move on 5.4.3.
//!
//! Every signature is verified by `openssl` with the public key the tool
//! printed at generation, every attestation certificate with `openssl
//! verify` against the emulated root (`signer-daemon emulated root`) and the
//! f9 intermediate. A tool that exits non-zero or prints an error fails the
//! test.
//!
//! The sandbox has one reader named as a plugged-in YubiKey 5's ("Yubico
//! YubiKey OTP+FIDO+CCID 00 00", served by the one-slot vpcd driver), and the
//! tools are given no reader or device: they find the card as they find one
//! YubiKey. Two cards are two YubiKeys, chosen by serial
//! (`two_emulated_cards_are_two_yubikeys_chosen_by_serial`); Debian's
//! two-slot vpcd makes ykman see two YubiKeys for one card
//! (`debians_two_slot_vpcd_makes_ykman_count_two_yubikeys`), which is why
//! the sandbox does not use it by default.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulated_card_support;

use std::path::Path;
use std::process::Command;

use emulated_card_support::{
    AES192_DEFAULT, EmulatedCard, TDES_DEFAULT, fails, ok, openssl_verify, piv_tool, spki_of,
    verify_csr, verify_self_signed,
};
use signer_e2e::pcsc_sandbox::{
    Sandbox, SandboxConfig, VpcdDriver, YUBIKEY_READER_NAME, run_sandboxed,
};
use signer_e2e::sandboxed_test;

const TDES_NEW: &str = "a1a2a3a4a5a6a7a8b1b2b3b4b5b6b7b8c1c2c3c4c5c6c7c8";

/// Where `tests/scripts/install-deps.sh` installs ykman from PyPI
/// (override with `SIGNER_YKMAN_VENV`).
pub const YKMAN_VENV: &str = "/usr/local/lib/signer-e2e-ykman";

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

/// ykman's commands against the emulated card, for one ykman (`ykman[0]`,
/// with global options `ykman[1..]`). Without options (`--reader`), the
/// card must also be the one YubiKey `ykman list` shows.
fn ykman_conformance(sandbox: &Sandbox, ykman: &[&str], card: &EmulatedCard, label: &str) {
    let run = |args: &[&str]| {
        let mut c = sandbox.command(ykman[0]);
        c.args(&ykman[1..]).args(args);
        c
    };
    if ykman.len() == 1 {
        let out = ok(run(&["list"]), &format!("{label} list"));
        assert_eq!(
            out.lines().count(),
            1,
            "{label}: one YubiKey listed:\n{out}"
        );
        assert!(
            out.contains("Serial: 12345678"),
            "{label}: serial in\n{out}"
        );
    }
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
    fn pypi_ykman_5_identifies_generates_and_attests(sandbox) {
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
        let card = EmulatedCard::start(sandbox, 12_345_678, "aes192", "usb");
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

/// ykman 5 from PyPI, or `None` when `install-deps.sh` recorded that it
/// could not be installed (then the caller prints NOT CHECKED).
fn pypi_ykman() -> Option<String> {
    let venv = std::env::var("SIGNER_YKMAN_VENV").unwrap_or_else(|_| YKMAN_VENV.into());
    let ykman = format!("{venv}/bin/ykman");
    if !Path::new(&ykman).exists() {
        if let Ok(why) = std::fs::read_to_string(format!("{venv}.unavailable")) {
            eprintln!(
                "NOT CHECKED: ykman 5 from PyPI is unavailable here: {}",
                why.trim()
            );
            return None;
        }
        panic!("{ykman} is missing: run tests/scripts/install-deps.sh");
    }
    Some(ykman)
}

sandboxed_test!(readers: 2,
    fn two_emulated_cards_are_two_yubikeys_chosen_by_serial(sandbox) {
        assert_eq!(sandbox.reader(0).name, format!("{YUBIKEY_READER_NAME} 00 00"));
        assert_eq!(sandbox.reader(1).name, format!("{YUBIKEY_READER_NAME} 1 00 00"));
        let first = EmulatedCard::start_on(sandbox, 0, 11_111_111, "aes192", "usb");
        let second = EmulatedCard::start_on(sandbox, 1, 22_222_222, "aes192", "usb");
        let mut ykmans = vec!["/usr/bin/ykman".to_string()];
        ykmans.extend(pypi_ykman());
        for ykman in &ykmans {
            // As with two real YubiKeys: ykman lists both and will not guess.
            let mut c = sandbox.command(ykman);
            c.arg("list");
            let out = ok(c, "ykman list");
            assert!(out.contains("Serial: 11111111") && out.contains("Serial: 22222222"), "{out}");
            let mut c = sandbox.command(ykman);
            c.args(["piv", "info"]);
            let out = fails(c, "ykman piv info with two YubiKeys");
            assert!(out.contains("Multiple YubiKeys detected"), "{ykman}: {out}");
            for serial in ["11111111", "22222222"] {
                let mut c = sandbox.command(ykman);
                c.args(["--device", serial, "info"]);
                let out = ok(c, "ykman --device SERIAL info");
                assert!(out.contains(&format!("Serial number: {serial}")), "{ykman}: {out}");
            }
        }
        // yubico-piv-tool: the first "Yubico" reader by default, another by name.
        let out = ok(piv_tool(sandbox, &["-a", "status"]), "yubico-piv-tool -a status");
        assert!(out.contains("Serial Number:\t11111111"), "{out}");
        let out = ok(
            piv_tool(sandbox, &["-r", &sandbox.reader(1).name, "-a", "status"]),
            "yubico-piv-tool -r <reader 1> -a status",
        );
        assert!(out.contains("Serial Number:\t22222222"), "{out}");
        second.stop();
        first.stop();
    }
);

/// With Debian's vpcd (two slots per reader.conf entry) and the YubiKey
/// name, one card comes with an empty "... 00 01" reader that ykman counts
/// as a second YubiKey: why the sandbox builds vpcd with one slot. (If a
/// later ykman stops counting empty readers, this test says so.)
#[test]
fn debians_two_slot_vpcd_makes_ykman_count_two_yubikeys() {
    let config = SandboxConfig {
        readers: 2,
        vpcd: VpcdDriver::Debian,
        ..SandboxConfig::default()
    };
    run_sandboxed(
        module_path!(),
        "debians_two_slot_vpcd_makes_ykman_count_two_yubikeys",
        config,
        |sandbox| {
            assert_eq!(
                sandbox.reader(1).name,
                format!("{YUBIKEY_READER_NAME} 00 01")
            );
            let card = EmulatedCard::start(sandbox, 12_345_678, "aes192", "usb");
            let mut c = sandbox.command("/usr/bin/ykman");
            c.args(["piv", "info"]);
            let out = fails(c, "ykman 4 piv info next to an empty second slot");
            assert!(out.contains("Multiple YubiKeys detected"), "{out}");
            // The workarounds: name the device or the reader.
            let mut c = sandbox.command("/usr/bin/ykman");
            c.args(["--device", "12345678", "piv", "info"]);
            let out = ok(c, "ykman --device SERIAL piv info");
            assert!(out.contains("PIV version: 5.7.4"), "{out}");
            let mut c = sandbox.command("/usr/bin/ykman");
            c.args(["--reader", &sandbox.reader(0).name, "piv", "info"]);
            let out = ok(c, "ykman --reader NAME piv info");
            assert!(out.contains("PIV version: 5.7.4"), "{out}");
            card.stop();
        },
    );
}

// The entry `emulate-card --print-reader-conf` prints for the system pcscd
// is, line for line, the one this sandbox's pcscd loaded for the reader the
// other tests use (the driver path aside: the sandbox loads a private copy
// of the same one-slot driver).
sandboxed_test!(
    fn the_printed_reader_conf_entry_is_the_one_the_sandbox_pcscd_serves(sandbox) {
        let reader = sandbox.reader(0).clone();
        let mut c = Command::new(emulated_card_support::bin("signer-daemon"));
        c.args(["emulate-card", "--print-reader-conf", "--vpcd", &reader.vpcd_address()]);
        let printed = ok(c, "signer-daemon emulate-card --print-reader-conf");
        let loaded = std::fs::read_to_string(sandbox.dir().join("reader.conf.d/vpcd-0")).unwrap();
        let field = |text: &str, key: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in\n{text}"))
                .trim()
                .to_string()
        };
        for key in ["FRIENDLYNAME", "DEVICENAME", "CHANNELID"] {
            assert_eq!(field(&printed, key), field(&loaded, key), "{key}");
        }
        assert_eq!(field(&printed, "FRIENDLYNAME"), format!("\"{YUBIKEY_READER_NAME}\""));
        assert_eq!(
            Path::new(&field(&printed, "LIBPATH")),
            VpcdDriver::OneSlot.path(),
            "the printed entry names the one-slot driver the sandbox uses"
        );
        assert_eq!(reader.name, format!("{YUBIKEY_READER_NAME} 00 00"));
    }
);

/// An external (NFC) reader, as before the YubiKey name: in a reader not
/// named "Yubico YubiKey" ykman 5 needs `--reader` and the NFC ATR
/// (`emulate-card --atr nfc`); with it, the same commands work.
#[test]
fn pypi_ykman_5_through_a_reader_not_named_yubikey_with_the_nfc_atr() {
    let config = SandboxConfig {
        reader_name: signer_e2e::pcsc_sandbox::VIRTUAL_PCD_READER_NAME.into(),
        ..SandboxConfig::default()
    };
    run_sandboxed(
        module_path!(),
        "pypi_ykman_5_through_a_reader_not_named_yubikey_with_the_nfc_atr",
        config,
        |sandbox| {
            let Some(ykman) = pypi_ykman() else {
                return;
            };
            let card = EmulatedCard::start(sandbox, 12_345_678, "aes192", "nfc");
            let reader = sandbox.reader(0).name.clone();
            assert_eq!(reader, "Virtual PCD 00 00");
            let mut c = sandbox.command(&ykman);
            c.args(["piv", "info"]);
            let out = fails(c, "ykman 5 without --reader on an external reader");
            assert!(out.contains("No YubiKey detected"), "{out}");
            ykman_conformance(
                sandbox,
                &[&ykman, "--reader", &reader],
                &card,
                "ykman-5-nfc",
            );
            card.stop();
        },
    );
}

// ---------------------------------------------------------------------------
// RSA-2048 and Ed25519 (issue 14): the key types each tool knows.
// yubico-piv-tool 2.2.0, ykman 4.0.9, libykcs11 2.2.0 and OpenSC 0.23 know
// RSA but not Ed25519; ykman 5 knows both (and X25519).
// ---------------------------------------------------------------------------

/// A software key made by openssl (`genpkey`), and its public key PEM.
fn openssl_key(
    card: &EmulatedCard,
    name: &str,
    alg: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = card.path(&format!("{name}.key.pem"));
    let public = card.path(&format!("{name}.pub.pem"));
    let mut c = Command::new("openssl");
    c.arg("genpkey");
    match alg {
        "RSA2048" => c.args(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        "ED25519" => c.args(["-algorithm", "ED25519"]),
        other => panic!("openssl_key: {other}"),
    };
    c.arg("-out").arg(&key);
    ok(c, "openssl genpkey");
    let mut c = Command::new("openssl");
    c.args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public);
    ok(c, "openssl pkey -pubout");
    (key, public)
}

sandboxed_test!(
    fn yubico_piv_tool_rsa2048_generates_imports_attests_signs_and_deciphers(sandbox) {
        let card = EmulatedCard::start(sandbox, 12_345_678, "tdes", "usb");
        let key = format!("--key={TDES_DEFAULT}");
        let f9 = card.path("f9.pem");
        ok(
            piv_tool(sandbox, &["-a", "read-certificate", "-s", "f9", "-o", f9.to_str().unwrap()]),
            "yubico-piv-tool -a read-certificate -s f9",
        );
        // Generate RSA-2048 in 9a (signing) and 9d (key management); the
        // attestation chain verifies and holds the generated key; the
        // attestation certificate becomes the slot's certificate.
        for (slot, policy) in [("9a", "once"), ("9d", "always")] {
            let public = card.path(&format!("rsa.{slot}.pub.pem"));
            ok(
                piv_tool(sandbox, &[&key, "-a", "generate", "-s", slot, "-A", "RSA2048",
                                    &format!("--pin-policy={policy}"), "--touch-policy=never",
                                    "-o", public.to_str().unwrap()]),
                "yubico-piv-tool -a generate -A RSA2048",
            );
            let att = card.path(&format!("rsa.{slot}.attest.pem"));
            ok(
                piv_tool(sandbox, &["-a", "attest", "-s", slot, "-o", att.to_str().unwrap()]),
                "yubico-piv-tool -a attest (RSA-2048)",
            );
            verify_chain(&card, &f9, &att);
            assert_eq!(
                pem_key(&cert_public_key(&att)),
                pem_key(&std::fs::read_to_string(&public).unwrap()),
                "{slot}: the attested key is the generated RSA key"
            );
            ok(
                piv_tool(sandbox, &[&key, "-a", "import-certificate", "-s", slot, "-i",
                                    att.to_str().unwrap()]),
                "yubico-piv-tool -a import-certificate (RSA-2048)",
            );
        }
        // test-signature: PKCS#1 v1.5 over SHA-256, checked by the tool
        // (OpenSSL) against the certificate's key.
        let att9a = card.path("rsa.9a.attest.pem");
        let out = ok(
            piv_tool(sandbox, &["-a", "verify-pin", "-P", "123456", "-a", "test-signature", "-s",
                                "9a", "-i", att9a.to_str().unwrap()]),
            "yubico-piv-tool -a test-signature (RSA-2048)",
        );
        assert!(out.contains("Successful RSA verification"), "{out}");
        // test-decipher: the tool encrypts to the certificate's key, the
        // card decrypts (PIN policy always: the PIN right before).
        let att9d = card.path("rsa.9d.attest.pem");
        let out = ok(
            piv_tool(sandbox, &["-a", "verify-pin", "-P", "123456", "-a", "test-decipher", "-s",
                                "9d", "-i", att9d.to_str().unwrap()]),
            "yubico-piv-tool -a test-decipher (RSA-2048)",
        );
        assert!(out.contains("Successfully performed RSA decryption"), "{out}");

        // import-key: an openssl RSA-2048 key into 9e (PIN never); its
        // self-signed certificate (made by openssl) verifies the card's
        // signature; a certificate of another key does not.
        let (sw_key, _sw_pub) = openssl_key(&card, "rsa.9e", "RSA2048");
        ok(
            piv_tool(sandbox, &[&key, "-a", "import-key", "-s", "9e", "-i",
                                sw_key.to_str().unwrap(), "--pin-policy=never"]),
            "yubico-piv-tool -a import-key (RSA-2048)",
        );
        let sw_cert = card.path("rsa.9e.cert.pem");
        let mut c = Command::new("openssl");
        c.args(["req", "-new", "-x509", "-subj", "/CN=imported", "-key"]).arg(&sw_key);
        c.arg("-out").arg(&sw_cert);
        ok(c, "openssl req -x509");
        ok(
            piv_tool(sandbox, &[&key, "-a", "import-certificate", "-s", "9e", "-i",
                                sw_cert.to_str().unwrap()]),
            "yubico-piv-tool -a import-certificate 9e",
        );
        let out = ok(
            piv_tool(sandbox, &["-a", "test-signature", "-s", "9e", "-i",
                                sw_cert.to_str().unwrap()]),
            "yubico-piv-tool -a test-signature 9e (imported RSA-2048)",
        );
        assert!(out.contains("Successful RSA verification"), "{out}");
        let out = fails(
            piv_tool(sandbox, &["-a", "verify-pin", "-P", "123456", "-a", "test-signature", "-s",
                                "9a", "-i", sw_cert.to_str().unwrap()]),
            "test-signature of 9a against 9e's certificate",
        );
        assert!(out.contains("Failed RSA verification"), "{out}");
        card.stop();
    }
);

/// For each (algorithm, slot): ykman generates the key on the card (PIN
/// once, no touch), attests it (the chain verifies, the key is the
/// generated one), exports it, makes a CSR and a self-signed certificate
/// with it (openssl verifies both signatures and refuses them changed);
/// then imports an openssl key of the same type into 9e and makes a CSR
/// with it. X25519 (no signatures) is generated and attested only.
fn ykman_key_types(
    sandbox: &Sandbox,
    ykman: &str,
    card: &EmulatedCard,
    label: &str,
    algs: &[(&str, &str)],
) {
    let run = |args: &[&str]| {
        let mut c = sandbox.command(ykman);
        c.args(args);
        c
    };
    let f9 = card.path(&format!("{label}.f9.pem"));
    ok(
        run(&["piv", "certificates", "export", "f9", f9.to_str().unwrap()]),
        &format!("{label} piv certificates export f9"),
    );
    for (alg, slot) in algs {
        let what = format!("{label} {alg} in {slot}");
        let public = card.path(&format!("{label}.{alg}.{slot}.pub.pem"));
        ok(
            run(&[
                "piv",
                "keys",
                "generate",
                "--management-key",
                AES192_DEFAULT,
                "-a",
                alg,
                "--pin-policy",
                "ONCE",
                "--touch-policy",
                "NEVER",
                slot,
                public.to_str().unwrap(),
            ]),
            &format!("{what}: piv keys generate"),
        );
        let att = card.path(&format!("{label}.{alg}.{slot}.attest.pem"));
        ok(
            run(&["piv", "keys", "attest", slot, att.to_str().unwrap()]),
            &format!("{what}: piv keys attest"),
        );
        verify_chain(card, &f9, &att);
        assert_eq!(
            spki_of("cert", &att),
            spki_of("key", &public),
            "{what}: the attested key is the generated key"
        );
        let exported = card.path(&format!("{label}.{alg}.{slot}.export.pem"));
        ok(
            run(&["piv", "keys", "export", slot, exported.to_str().unwrap()]),
            &format!("{what}: piv keys export"),
        );
        assert_eq!(
            spki_of("key", &exported),
            spki_of("key", &public),
            "{what}: export"
        );
        if *alg == "X25519" {
            continue; // a key-agreement key: no CSR, no certificate signature
        }
        let csr = card.path(&format!("{label}.{alg}.{slot}.csr.pem"));
        ok(
            run(&[
                "piv",
                "certificates",
                "request",
                "--pin",
                "123456",
                "--subject",
                &format!("CN={label} {alg}"),
                slot,
                public.to_str().unwrap(),
                csr.to_str().unwrap(),
            ]),
            &format!("{what}: piv certificates request"),
        );
        verify_csr(&csr, &public);
        ok(
            run(&[
                "piv",
                "certificates",
                "generate",
                "--management-key",
                AES192_DEFAULT,
                "--pin",
                "123456",
                "--subject",
                &format!("CN={label} {alg}"),
                slot,
                public.to_str().unwrap(),
            ]),
            &format!("{what}: piv certificates generate"),
        );
        let cert = card.path(&format!("{label}.{alg}.{slot}.cert.pem"));
        ok(
            run(&[
                "piv",
                "certificates",
                "export",
                slot,
                cert.to_str().unwrap(),
            ]),
            &format!("{what}: piv certificates export"),
        );
        verify_self_signed(&cert, &public);

        // An imported key of the same type (into 9e) signs a CSR too.
        let (sw_key, sw_pub) = openssl_key(card, &format!("{label}.{alg}.9e"), alg);
        ok(
            run(&[
                "piv",
                "keys",
                "import",
                "--management-key",
                AES192_DEFAULT,
                "--pin-policy",
                "NEVER",
                "9e",
                sw_key.to_str().unwrap(),
            ]),
            &format!("{label} {alg}: piv keys import 9e"),
        );
        let exported = card.path(&format!("{label}.{alg}.9e.export.pem"));
        ok(
            run(&["piv", "keys", "export", "9e", exported.to_str().unwrap()]),
            &format!("{label} {alg}: piv keys export 9e"),
        );
        assert_eq!(
            spki_of("key", &exported),
            spki_of("key", &sw_pub),
            "{label} {alg}: import"
        );
        let csr = card.path(&format!("{label}.{alg}.9e.csr.pem"));
        ok(
            run(&[
                "piv",
                "certificates",
                "request",
                "--pin",
                "123456",
                "--subject",
                "CN=imported",
                "9e",
                sw_pub.to_str().unwrap(),
                csr.to_str().unwrap(),
            ]),
            &format!("{label} {alg}: piv certificates request 9e"),
        );
        verify_csr(&csr, &sw_pub);
    }
}

sandboxed_test!(
    fn debian_ykman_4_rsa2048_generates_imports_attests_and_signs(sandbox) {
        let card = EmulatedCard::start(sandbox, 12_345_678, "aes192", "usb");
        ykman_key_types(sandbox, "/usr/bin/ykman", &card, "ykman-4", &[("RSA2048", "9a")]);
        card.stop();
    }
);

sandboxed_test!(
    fn pypi_ykman_5_rsa2048_ed25519_x25519_generate_import_attest_and_sign(sandbox) {
        let Some(ykman) = pypi_ykman() else {
            return;
        };
        let card = EmulatedCard::start(sandbox, 12_345_678, "aes192", "usb");
        ykman_key_types(
            sandbox,
            &ykman,
            &card,
            "ykman-5",
            &[("RSA2048", "9a"), ("ED25519", "9c"), ("X25519", "9d")],
        );
        card.stop();
    }
);

/// `pkcs11-tool --sign` through OpenSC's module with the key in 9a (its
/// certificate there, made by yubico-piv-tool's attest), then `openssl
/// dgst -verify` with the key generation printed.
fn opensc_sign(
    sandbox: &Sandbox,
    card: &EmulatedCard,
    mechanism: &str,
    data: &Path,
) -> std::path::PathBuf {
    let module = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
    assert!(
        Path::new(module).exists(),
        "{module} is missing (package opensc-pkcs11)"
    );
    let sig = card.path(&format!("data.{mechanism}.sig"));
    let mut c = sandbox.command("pkcs11-tool");
    c.args([
        "--module",
        module,
        "--login",
        "--pin",
        "123456",
        "--sign",
        "--id",
        "01",
        "--mechanism",
        mechanism,
        "-i",
    ]);
    c.arg(data).arg("-o").arg(&sig);
    ok(
        c,
        &format!("pkcs11-tool --sign --mechanism {mechanism} (OpenSC)"),
    );
    sig
}

sandboxed_test!(
    fn opensc_pkcs11_signs_with_rsa2048_pkcs1_and_pss(sandbox) {
        let card = EmulatedCard::start(sandbox, 12_345_678, "tdes", "usb");
        let key = format!("--key={TDES_DEFAULT}");
        let public = card.path("9a.pub.pem");
        ok(
            piv_tool(sandbox, &[&key, "-a", "generate", "-s", "9a", "-A", "RSA2048",
                                "--pin-policy=once", "--touch-policy=never", "-o",
                                public.to_str().unwrap()]),
            "yubico-piv-tool -a generate -A RSA2048",
        );
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
        let data = card.path("data.txt");
        std::fs::write(&data, b"RSA through OpenSC and the emulated card\n").unwrap();
        let other = card.path("other.txt");
        std::fs::write(&other, b"something else\n").unwrap();
        // PKCS#1 v1.5 with SHA-256.
        let sig = opensc_sign(sandbox, &card, "SHA256-RSA-PKCS", &data);
        openssl_verify(&public, "-sha256", &data, &sig);
        let mut v = Command::new("openssl");
        v.args(["dgst", "-sha256", "-verify"]).arg(&public);
        v.arg("-signature").arg(&sig).arg(&other);
        fails(v, "openssl verify (PKCS#1) over other data");
        // PSS with SHA-256, MGF1-SHA-256, 32-byte salt (the host pads, the
        // card computes raw RSA, as on a YubiKey).
        let sig = opensc_sign(sandbox, &card, "SHA256-RSA-PKCS-PSS", &data);
        let pss = |file: &Path| {
            let mut v = Command::new("openssl");
            v.args(["dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt",
                    "rsa_pss_saltlen:32", "-verify"]).arg(&public);
            v.arg("-signature").arg(&sig).arg(file);
            v
        };
        let out = ok(pss(&data), "openssl dgst -verify (PSS)");
        assert!(out.contains("Verified OK"), "{out}");
        fails(pss(&other), "openssl verify (PSS) over other data");
        card.stop();
    }
);

// OpenSC 0.23's PIV driver lists an Ed25519 key's certificate and public
// key but no private key, and its module offers no EDDSA mechanism
// (`pkcs11-tool -M`): it cannot sign with Ed25519 (a limit of that OpenSC,
// not of the card). Pinned, so that a newer OpenSC that can shows up here
// (then sign with it and verify with openssl).
sandboxed_test!(
    fn opensc_0_23_lists_an_ed25519_key_but_cannot_sign_with_it(sandbox) {
        let Some(ykman) = pypi_ykman() else {
            return;
        };
        let card = EmulatedCard::start(sandbox, 12_345_678, "aes192", "usb");
        let public = card.path("ed.pub.pem");
        let mut c = sandbox.command(&ykman);
        c.args(["piv", "keys", "generate", "--management-key", AES192_DEFAULT, "-a", "ED25519",
                "--pin-policy", "ONCE", "9a"]).arg(&public);
        ok(c, "ykman 5 piv keys generate -a ED25519");
        let mut c = sandbox.command(&ykman);
        c.args(["piv", "certificates", "generate", "--management-key", AES192_DEFAULT, "--pin",
                "123456", "--subject", "CN=ed25519", "9a"]).arg(&public);
        ok(c, "ykman 5 piv certificates generate (Ed25519)");
        let module = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
        let mut c = sandbox.command("pkcs11-tool");
        c.args(["--module", module, "--list-objects"]);
        let out = ok(c, "pkcs11-tool --list-objects (OpenSC)");
        assert!(out.contains("EC_EDWARDS") && out.contains("06032b6570"), "{out}");
        assert!(!out.contains("Private Key Object"), "OpenSC now shows the private key:\n{out}");
        let data = card.path("data.txt");
        std::fs::write(&data, b"Ed25519\n").unwrap();
        let mut c = sandbox.command("pkcs11-tool");
        c.args(["--module", module, "--login", "--pin", "123456", "--sign", "--id", "01",
                "--mechanism", "EDDSA", "-i"]);
        c.arg(&data).arg("-o").arg(card.path("data.sig"));
        let out = fails(c, "pkcs11-tool --sign --mechanism EDDSA (OpenSC 0.23)");
        assert!(out.contains("Private key not found"), "{out}");
        card.stop();
    }
);

// A YubiKey 4 (firmware 4.3.7, 3DES management key), as Docker Content
// Trust's hardware signing used it: yubico-piv-tool 2.2.0 and ykman 4
// generate RSA-2048 and P-256 keys, attest them (the pre-5.7 chain: slot
// <- f9 <- the emulated root) and sign.
sandboxed_test!(
    fn yubico_piv_tool_and_ykman_4_drive_an_emulated_yubikey_4(sandbox) {
        let card = EmulatedCard::start_with(sandbox, 0, 12_345_678, &["--firmware", "4.3.7"], "usb");
        let key = format!("--key={TDES_DEFAULT}");
        let out = ok(piv_tool(sandbox, &["-a", "version"]), "yubico-piv-tool -a version");
        assert!(out.contains("4.3.7"), "{out}");
        let f9 = card.path("f9.pem");
        ok(
            piv_tool(sandbox, &["-a", "read-certificate", "-s", "f9", "-o", f9.to_str().unwrap()]),
            "yubico-piv-tool -a read-certificate -s f9",
        );
        for (slot, alg, verified) in [
            ("9a", "RSA2048", "Successful RSA verification"),
            ("9c", "ECCP256", "Successful ECDSA verification"),
        ] {
            let public = card.path(&format!("{slot}.pub.pem"));
            ok(
                piv_tool(sandbox, &[&key, "-a", "generate", "-s", slot, "-A", alg,
                                    "--pin-policy=once", "--touch-policy=never", "-o",
                                    public.to_str().unwrap()]),
                &format!("yubico-piv-tool -a generate -A {alg} on 4.3.7"),
            );
            let att = card.path(&format!("{slot}.attest.pem"));
            ok(
                piv_tool(sandbox, &["-a", "attest", "-s", slot, "-o", att.to_str().unwrap()]),
                "yubico-piv-tool -a attest on 4.3.7",
            );
            verify_chain(&card, &f9, &att);
            assert_eq!(spki_of("cert", &att), spki_of("key", &public), "{slot}: attested key");
            ok(
                piv_tool(sandbox, &[&key, "-a", "import-certificate", "-s", slot, "-i",
                                    att.to_str().unwrap()]),
                "yubico-piv-tool -a import-certificate on 4.3.7",
            );
            let out = ok(
                piv_tool(sandbox, &["-a", "verify-pin", "-P", "123456", "-a", "test-signature",
                                    "-s", slot, "-i", att.to_str().unwrap()]),
                "yubico-piv-tool -a test-signature on 4.3.7",
            );
            assert!(out.contains(verified), "{out}");
        }
        // ykman 4: RSA-2048 in 9d, a CSR openssl verifies.
        let public = card.path("9d.pub.pem");
        let mut c = sandbox.command("/usr/bin/ykman");
        c.args(["piv", "keys", "generate", "--management-key", TDES_DEFAULT, "-a", "RSA2048",
                "--pin-policy", "ONCE", "--touch-policy", "NEVER", "9d"]).arg(&public);
        ok(c, "ykman 4 piv keys generate -a RSA2048 on 4.3.7");
        let csr = card.path("9d.csr.pem");
        let mut c = sandbox.command("/usr/bin/ykman");
        c.args(["piv", "certificates", "request", "--pin", "123456", "--subject", "CN=yk4", "9d"]);
        c.arg(&public).arg(&csr);
        ok(c, "ykman 4 piv certificates request on 4.3.7");
        verify_csr(&csr, &public);
        card.stop();
    }
);

// ykman 5's MOVE KEY and DELETE KEY (firmware 5.7): an Ed25519 key moves
// from 9a to the retired slot 82 (its public key and its signatures go with
// it: a CSR from 82 verifies with the key generated in 9a, 9a is empty),
// then is deleted (82 empty: export and CSR fail). On firmware 5.4.3 ykman
// refuses to move at all.
sandboxed_test!(
    fn pypi_ykman_5_moves_and_deletes_an_ed25519_key(sandbox) {
        let Some(ykman) = pypi_ykman() else {
            return;
        };
        let card = EmulatedCard::start(sandbox, 12_345_678, "aes192", "usb");
        let run = |args: &[&str]| {
            let mut c = sandbox.command(&ykman);
            c.args(args);
            c
        };
        let public = card.path("ed.9a.pub.pem");
        ok(
            run(&["piv", "keys", "generate", "--management-key", AES192_DEFAULT, "-a", "ED25519",
                  "--pin-policy", "ONCE", "9a", public.to_str().unwrap()]),
            "ykman 5 piv keys generate -a ED25519 9a",
        );
        ok(
            run(&["piv", "keys", "move", "--management-key", AES192_DEFAULT, "9a", "82"]),
            "ykman 5 piv keys move 9a 82",
        );
        let moved = card.path("ed.82.pub.pem");
        ok(
            run(&["piv", "keys", "export", "82", moved.to_str().unwrap()]),
            "ykman 5 piv keys export 82",
        );
        assert_eq!(spki_of("key", &moved), spki_of("key", &public), "the key moved to 82");
        fails(
            run(&["piv", "keys", "export", "9a", card.path("ed.9a.after.pem").to_str().unwrap()]),
            "export from 9a after the move",
        );
        let csr = card.path("ed.82.csr.pem");
        ok(
            run(&["piv", "certificates", "request", "--pin", "123456", "--subject", "CN=moved",
                  "82", public.to_str().unwrap(), csr.to_str().unwrap()]),
            "ykman 5 piv certificates request 82",
        );
        verify_csr(&csr, &public);
        ok(
            run(&["piv", "keys", "delete", "--management-key", AES192_DEFAULT, "82"]),
            "ykman 5 piv keys delete 82",
        );
        fails(
            run(&["piv", "keys", "export", "82", card.path("ed.82.after.pem").to_str().unwrap()]),
            "export from 82 after the delete",
        );
        fails(
            run(&["piv", "certificates", "request", "--pin", "123456", "--subject", "CN=gone",
                  "82", public.to_str().unwrap(), card.path("gone.csr").to_str().unwrap()]),
            "a CSR from the deleted key",
        );
        card.stop();

        let card = EmulatedCard::start_with(
            sandbox, 0, 12_345_678, &["--firmware", "5.4.3", "--mgmt-key-alg", "aes192"], "usb",
        );
        ok(
            run(&["piv", "keys", "generate", "--management-key", AES192_DEFAULT, "-a", "ECCP256",
                  "9a", card.path("p256.pem").to_str().unwrap()]),
            "ykman 5 piv keys generate on 5.4.3",
        );
        let out = fails(
            run(&["piv", "keys", "move", "--management-key", AES192_DEFAULT, "9a", "82"]),
            "ykman 5 piv keys move on 5.4.3",
        );
        assert!(out.contains("5.7"), "ykman names the firmware it needs: {out}");
        card.stop();
    }
);
