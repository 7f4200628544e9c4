//! Yubico's PKCS#11 module (`libykcs11` 2.2.0, Debian package `ykcs11`)
//! drives the emulated card as it drives a plugged-in YubiKey: the card is
//! served by `signer-daemon emulate-card` to a private pcscd whose one
//! reader is named as a YubiKey 5's ("Yubico YubiKey OTP+FIDO+CCID 00 00";
//! libykcs11 lists only readers whose name starts with "Yubico").
//!
//! - `pkcs11-tool --module libykcs11.so` lists exactly one slot with the
//!   token `YubiKey PIV #<serial>`, generates a P-256 key in PIV slot 9c
//!   (PKCS#11 id 2) as the security officer (`--login-type so`: the SO PIN
//!   is the management key in hex, 3DES, the only kind libykcs11 2.2.0
//!   knows), refuses to generate with a wrong management key, and signs with
//!   `ECDSA-SHA256`; `openssl dgst -verify` checks the signature with the
//!   public key libykcs11 read from the card, which is also the key ykman
//!   exports from slot 9c.
//! - RSA-2048 (issue 14): keygen in 9d (id 3) as SO, `SHA256-RSA-PKCS`
//!   and `SHA256-RSA-PKCS-PSS` signatures openssl verifies (and refuses
//!   over other data), `RSA-PKCS` decryption of what openssl encrypted to
//!   the card's key, a wrong PIN signs nothing. (libykcs11 2.2.0 has no
//!   Ed25519.)
//! - securesystemslib's `HSMSigner` (newest from PyPI, through
//!   python-pkcs11, `PYKCS11LIB` = libykcs11) signs a TUF root with URI
//!   `hsm:2` (9c, P-256) and `hsm:3` (9d, P-384); python-tuf verifies it
//!   (`Metadata.from_file`, `verify_delegate`) and rejects it with one byte
//!   changed; a wrong PIN gives no signature; openssl verifies the signature
//!   over the canonical bytes (`tests/clients/python/hsm_signer_ykcs11.py`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulated_card_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use emulated_card_support::{EmulatedCard, TDES_DEFAULT, fails, ok, openssl_verify};
use signer_e2e::pcsc_sandbox::{
    Sandbox, SandboxConfig, VIRTUAL_PCD_READER_NAME, YUBIKEY_READER_NAME, run_sandboxed,
};
use signer_e2e::sandboxed_test;

/// Debian's libykcs11 (package `ykcs11`).
const YKCS11: &str = "/usr/lib/x86_64-linux-gnu/libykcs11.so";
/// The venv of `tests/scripts/install-deps.sh` (override: `SIGNER_E2E_VENV`).
const VENV: &str = "/usr/local/lib/signer-e2e-venv";
const PIN: &str = "123456";
const SERIAL: u32 = 12_345_678;

fn module() -> &'static str {
    assert!(
        Path::new(YKCS11).exists(),
        "{YKCS11} is missing: install the Debian package ykcs11 (tests/scripts/install-deps.sh)"
    );
    YKCS11
}

/// `pkcs11-tool --module libykcs11.so ARGS` in the sandbox.
fn p11(sandbox: &Sandbox, args: &[&str]) -> Command {
    let mut c = sandbox.command("pkcs11-tool");
    c.args(["--module", module()]).args(args);
    c
}

/// Generate an EC key in PKCS#11 id `id` as the SO (management key).
fn generate_as_so(sandbox: &Sandbox, id: &str, curve: &str) -> String {
    ok(
        p11(
            sandbox,
            &[
                "--login",
                "--login-type",
                "so",
                "--so-pin",
                TDES_DEFAULT,
                "--keypairgen",
                "--key-type",
                curve,
                "--id",
                id,
            ],
        ),
        "pkcs11-tool --keypairgen as SO",
    )
}

/// The public key of id `id` as libykcs11 reads it, as PEM in `dir`.
fn public_key(sandbox: &Sandbox, dir: &Path, id: &str) -> PathBuf {
    let der = dir.join(format!("{id}.pub.der"));
    let pem = dir.join(format!("{id}.pub.pem"));
    let mut c = p11(
        sandbox,
        &["--read-object", "--type", "pubkey", "--id", id, "-o"],
    );
    c.arg(&der);
    ok(c, "pkcs11-tool --read-object --type pubkey");
    let mut c = Command::new("openssl");
    c.args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(&der);
    c.arg("-out").arg(&pem);
    ok(c, "openssl pkey (the public key from libykcs11)");
    pem
}

fn pem_body(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().filter(|l| !l.starts_with("-----")).collect()
}

sandboxed_test!(
    fn pkcs11_tool_with_libykcs11_generates_in_9c_as_so_and_signs(sandbox) {
        let card = EmulatedCard::start(sandbox, SERIAL, "tdes", "usb");

        // One slot, the reader of the one "YubiKey", with its token.
        let out = ok(p11(sandbox, &["--list-slots"]), "pkcs11-tool --list-slots");
        let slots: Vec<&str> = out.lines().filter(|l| l.starts_with("Slot ")).collect();
        assert_eq!(
            slots,
            [format!("Slot 0 (0x0): {YUBIKEY_READER_NAME} 00 00")],
            "{out}"
        );
        assert!(out.contains(&format!("YubiKey PIV #{SERIAL}")), "{out}");

        // A wrong management key generates nothing.
        let wrong = "a1a2a3a4a5a6a7a8b1b2b3b4b5b6b7b8c1c2c3c4c5c6c7c8";
        let out = fails(
            p11(sandbox, &["--login", "--login-type", "so", "--so-pin", wrong, "--keypairgen",
                           "--key-type", "EC:prime256v1", "--id", "03"]),
            "keygen with a wrong management key",
        );
        assert!(out.contains("CKR_PIN_INCORRECT"), "{out}");
        fails(
            p11(sandbox, &["--read-object", "--type", "pubkey", "--id", "03", "-o", "/dev/null"]),
            "slot 9d stays empty",
        );

        // P-256 in 9c (id 2) as SO.
        let out = generate_as_so(sandbox, "02", "EC:prime256v1");
        assert!(out.contains("EC_PARAMS:  06082a8648ce3d030107"), "P-256: {out}");
        let public = public_key(sandbox, card.dir.path(), "02");

        // libykcs11 stored a certificate for the new key in 9c; it reads
        // it back, and it holds the generated key.
        let cert_der = card.path("9c.cert.der");
        let mut c = p11(sandbox, &["--read-object", "--type", "cert", "--id", "02", "-o"]);
        c.arg(&cert_der);
        ok(c, "pkcs11-tool --read-object --type cert");
        let mut c = Command::new("openssl");
        c.args(["x509", "-inform", "DER", "-pubkey", "-noout", "-in"]).arg(&cert_der);
        let cert_key = ok(c, "openssl x509 -pubkey (the certificate from libykcs11)");
        let cert_key: String = cert_key.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(cert_key, pem_body(&public), "the 9c certificate holds the generated key");

        // The key is in PIV slot 9c: ykman exports the same key from there.
        let exported = card.path("9c.ykman.pem");
        let mut c = sandbox.command("/usr/bin/ykman");
        c.args(["piv", "keys", "export", "9c"]).arg(&exported);
        ok(c, "ykman piv keys export 9c");
        assert_eq!(pem_body(&exported), pem_body(&public), "libykcs11's id 2 is slot 9c");

        // ECDSA-SHA256 with the PIN; openssl verifies.
        let data = card.path("data.txt");
        std::fs::write(&data, b"signed through Yubico's libykcs11\n").unwrap();
        let sig = card.path("data.sig");
        let mut c = p11(sandbox, &["--login", "--pin", PIN, "--sign", "--id", "02", "--mechanism",
                                   "ECDSA-SHA256", "--signature-format", "openssl", "-i"]);
        c.arg(&data).arg("-o").arg(&sig);
        ok(c, "pkcs11-tool --sign --mechanism ECDSA-SHA256");
        openssl_verify(&public, "-sha256", &data, &sig);
        // The same signature over other data does not verify.
        let other = card.path("other.txt");
        std::fs::write(&other, b"signed through Yubico's libykcs11!\n").unwrap();
        let mut v = Command::new("openssl");
        v.args(["dgst", "-sha256", "-verify"]).arg(&public);
        v.arg("-signature").arg(&sig).arg(&other);
        fails(v, "openssl verify over other data");
        card.stop();
    }
);

sandboxed_test!(
    fn pkcs11_tool_with_libykcs11_generates_rsa2048_signs_pkcs1_and_pss_and_decrypts(sandbox) {
        let card = EmulatedCard::start(sandbox, SERIAL, "tdes", "usb");
        // RSA-2048 in 9d (id 3) as SO; the key libykcs11 reads is the key
        // ykman exports from 9d.
        let out = generate_as_so(sandbox, "03", "rsa:2048");
        assert!(out.contains("RSA 2048 bits"), "RSA-2048: {out}");
        let public = public_key(sandbox, card.dir.path(), "03");
        let exported = card.path("9d.ykman.pem");
        let mut c = sandbox.command("/usr/bin/ykman");
        c.args(["piv", "keys", "export", "9d"]).arg(&exported);
        ok(c, "ykman piv keys export 9d");
        assert_eq!(pem_body(&exported), pem_body(&public), "libykcs11's id 3 is slot 9d");

        let data = card.path("data.txt");
        std::fs::write(&data, b"RSA through Yubico's libykcs11\n").unwrap();
        let other = card.path("other.txt");
        std::fs::write(&other, b"RSA through Yubico's libykcs11!\n").unwrap();
        let sign = |mechanism: &str| {
            let sig = card.path(&format!("data.{mechanism}.sig"));
            let mut c = p11(sandbox, &["--login", "--pin", PIN, "--sign", "--id", "03",
                                       "--mechanism", mechanism, "-i"]);
            c.arg(&data).arg("-o").arg(&sig);
            ok(c, &format!("pkcs11-tool --sign --mechanism {mechanism} (libykcs11)"));
            sig
        };
        // PKCS#1 v1.5 with SHA-256; openssl verifies, not over other data.
        let sig = sign("SHA256-RSA-PKCS");
        openssl_verify(&public, "-sha256", &data, &sig);
        let mut v = Command::new("openssl");
        v.args(["dgst", "-sha256", "-verify"]).arg(&public);
        v.arg("-signature").arg(&sig).arg(&other);
        fails(v, "openssl verify (PKCS#1) over other data");
        // PSS with SHA-256 (MGF1-SHA-256, 32-byte salt).
        let sig = sign("SHA256-RSA-PKCS-PSS");
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
        // Decryption: openssl encrypts to the card's key (PKCS#1 v1.5), the
        // card decrypts through libykcs11.
        let secret = card.path("secret.txt");
        std::fs::write(&secret, b"the session key\n").unwrap();
        let enc = card.path("secret.enc");
        let mut c = Command::new("openssl");
        c.args(["pkeyutl", "-encrypt", "-pubin", "-inkey"]).arg(&public);
        c.arg("-in").arg(&secret).arg("-out").arg(&enc);
        ok(c, "openssl pkeyutl -encrypt");
        let dec = card.path("secret.dec");
        let mut c = p11(sandbox, &["--login", "--pin", PIN, "--decrypt", "--id", "03",
                                   "--mechanism", "RSA-PKCS", "-i"]);
        c.arg(&enc).arg("-o").arg(&dec);
        ok(c, "pkcs11-tool --decrypt --mechanism RSA-PKCS (libykcs11)");
        assert_eq!(std::fs::read(&dec).unwrap(), b"the session key\n");
        // A wrong PIN: no signature.
        let mut c = p11(sandbox, &["--login", "--pin", "654321", "--sign", "--id", "03",
                                   "--mechanism", "SHA256-RSA-PKCS", "-i"]);
        c.arg(&data).arg("-o").arg(card.path("wrong-pin.sig"));
        let out = fails(c, "pkcs11-tool --sign with a wrong PIN");
        assert!(out.contains("CKR_PIN_INCORRECT"), "{out}");
        card.stop();
    }
);

/// The venv's python, with securesystemslib, tuf and python-pkcs11.
fn venv_python() -> PathBuf {
    let venv = std::env::var("SIGNER_E2E_VENV").unwrap_or_else(|_| VENV.into());
    let python = PathBuf::from(&venv).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/scripts/install-deps.sh (it installs securesystemslib, tuf \
         and python-pkcs11 from PyPI into {venv})",
        python.display()
    );
    python
}

/// Run `hsm_signer_ykcs11.py URI` and check its outcome; the JSON it printed.
fn hsm_signer(
    sandbox: &Sandbox,
    card: &EmulatedCard,
    uri: &str,
    digest: &str,
) -> serde_json::Value {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/python/hsm_signer_ykcs11.py");
    let out_dir = card.path(&format!("tuf-{}", uri.replace(':', "-")));
    std::fs::create_dir(&out_dir).unwrap();
    let pin_file = card.path("pin");
    std::fs::write(&pin_file, PIN).unwrap();
    let mut c = sandbox.command(venv_python());
    c.arg(&script).arg(uri).arg(&pin_file).arg(&out_dir);
    c.env("PYKCS11LIB", module());
    let out = ok(c, &format!("HSMSigner {uri} through libykcs11"));
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{out}"));
    let result: serde_json::Value = serde_json::from_str(line).unwrap();
    eprintln!("HSMSigner {uri}: Python packages {}", result["versions"]);
    assert_eq!(result["verified"], true, "{result}");
    assert_eq!(result["wrong_pin"], "PinIncorrect", "{result}");
    assert!(
        result["tampered_rejected"]
            .as_str()
            .unwrap()
            .contains("signed by 0/1 keys"),
        "{result}"
    );
    assert_eq!(
        result["imported_uri"],
        format!("{uri}?label=YubiKey+PIV+%23{SERIAL}"),
        "{result}"
    );
    // openssl checks the signature over the canonical bytes python-tuf
    // signed, with the slot's key as ykman exports it. (Not through
    // pkcs11-tool: OpenSC 0.23.0's `--read-object --type pubkey` fails with
    // "cannot create EVP_PKEY" for libykcs11's P-384 keys; ykman exports
    // the same key.)
    let slot = match uri {
        "hsm:2" => "9c",
        "hsm:3" => "9d",
        other => panic!("no PIV slot for {other}"),
    };
    let public = card.path(&format!("{slot}.ykman.pem"));
    let mut c = sandbox.command("/usr/bin/ykman");
    c.args(["piv", "keys", "export", slot]).arg(&public);
    ok(c, "ykman piv keys export");
    openssl_verify(
        &public,
        digest,
        &out_dir.join("root.signed"),
        &out_dir.join("root.sig"),
    );
    assert_eq!(
        result["public"]
            .as_str()
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
        pem_body(&public),
        "the root's key is the card's"
    );
    result
}

sandboxed_test!(
    fn securesystemslib_hsm_signer_signs_a_tuf_root_through_libykcs11(sandbox) {
        let card = EmulatedCard::start(sandbox, SERIAL, "tdes", "usb");
        generate_as_so(sandbox, "02", "EC:prime256v1");
        generate_as_so(sandbox, "03", "EC:secp384r1");
        let r = hsm_signer(sandbox, &card, "hsm:2", "-sha256");
        assert_eq!(r["scheme"], "ecdsa-sha2-nistp256", "{r}");
        let r = hsm_signer(sandbox, &card, "hsm:3", "-sha384");
        assert_eq!(r["scheme"], "ecdsa-sha2-nistp384", "{r}");
        card.stop();
    }
);

/// Why the sandbox names its reader as a YubiKey's: under another name
/// (Debian's "Virtual PCD") libykcs11 lists no slot at all for the card.
#[test]
fn libykcs11_ignores_the_card_in_a_reader_not_named_yubico() {
    let config = SandboxConfig {
        reader_name: VIRTUAL_PCD_READER_NAME.into(),
        ..SandboxConfig::default()
    };
    run_sandboxed(
        module_path!(),
        "libykcs11_ignores_the_card_in_a_reader_not_named_yubico",
        config,
        |sandbox| {
            assert_eq!(sandbox.reader(0).name, "Virtual PCD 00 00");
            let card = EmulatedCard::start(sandbox, SERIAL, "tdes", "usb");
            let out = fails(p11(sandbox, &["--list-slots"]), "pkcs11-tool --list-slots");
            assert!(out.contains("No slots."), "{out}");
            assert!(
                !out.lines().any(|l| l.starts_with("Slot ")),
                "no slot: {out}"
            );
            // OpenSC's own module does see the card there.
            let mut c = sandbox.command("pkcs11-tool");
            c.args([
                "--module",
                "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
                "--list-slots",
            ]);
            let out = ok(c, "pkcs11-tool (OpenSC) --list-slots");
            assert!(out.contains("Virtual PCD 00 00"), "{out}");
            card.stop();
        },
    );
}
