//! Firmware generations of the emulated YubiKey (E2): what each refuses,
//! with the device's status word, and what it allows; MOVE KEY / DELETE KEY
//! (5.7), through the APDU front end and persisted through the state file;
//! the attestation hierarchy of each generation, checked by the library's
//! verifier and by `openssl verify`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::SystemTime;

use signer_lib::attestation::anchors::embedded_intermediates;
use signer_lib::attestation::verify::Expected;
use signer_lib::attestation::{TrustAnchors, verify_attestation};
use signer_lib::emulator::{ApproveTouch, EmulatedSmartCard, EmulatedToken, InitOptions};
use signer_lib::piv::mgmt_crypto::HostAuthentication;
use signer_lib::transport::vpcd::VirtualCard;
use signer_lib::{
    Algorithm, Error, FirmwareVersion, ManagementKey, ManagementKeyAlgorithm, PinPolicy, SlotId,
    Token, TouchPolicy,
};

const V437: FirmwareVersion = FirmwareVersion::new(4, 3, 7);
const V527: FirmwareVersion = FirmwareVersion::new(5, 2, 7);
const V530: FirmwareVersion = FirmwareVersion::new(5, 3, 0);
const V540: FirmwareVersion = FirmwareVersion::new(5, 4, 0);
const V543: FirmwareVersion = FirmwareVersion::new(5, 4, 3);
const V566: FirmwareVersion = FirmwareVersion::new(5, 6, 6);
const V573: FirmwareVersion = FirmwareVersion::new(5, 7, 3);
const V574: FirmwareVersion = FirmwareVersion::new(5, 7, 4);

fn init(dir: &Path, name: &str, firmware: FirmwareVersion) -> EmulatedToken {
    EmulatedToken::init(
        dir.join(name),
        &InitOptions {
            serial: Some(12_345_678),
            firmware,
            management_key_algorithm: None,
            ..Default::default()
        },
    )
    .unwrap()
}

fn default_key(firmware: FirmwareVersion) -> ManagementKey {
    let alg = if firmware >= FirmwareVersion::new(5, 7, 0) {
        ManagementKeyAlgorithm::Aes192
    } else {
        ManagementKeyAlgorithm::Tdes
    };
    ManagementKey::default_for(alg).unwrap()
}

/// `open`, again while the state file is [`Error::StateLocked`] (up to 2 s):
/// a child that another test thread forks (openssl) inherits the lock
/// file's descriptor until it execs, so a token just dropped can look held
/// for that instant.
fn retry_locked<T>(mut open: impl FnMut() -> signer_lib::Result<T>) -> T {
    for _ in 0..200 {
        match open() {
            Err(Error::StateLocked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => return other.unwrap(),
        }
    }
    open().unwrap()
}

/// The emulated card as vpcd sees it: APDU bytes in and out, every state
/// change persisted before the answer.
struct Dev {
    card: EmulatedSmartCard,
    firmware: FirmwareVersion,
}

impl Dev {
    fn open(path: &Path, firmware: FirmwareVersion) -> Dev {
        let mut card = retry_locked(|| EmulatedSmartCard::open(path, Arc::new(ApproveTouch)));
        card.power_on();
        let mut dev = Dev { card, firmware };
        assert_eq!(dev.hex("00a4040005a000000308").1, 0x9000, "SELECT PIV");
        dev
    }

    fn send(&mut self, bytes: &[u8]) -> (Vec<u8>, u16) {
        let r = self.card.transmit(bytes).to_vec();
        let (data, sw) = r.split_at(r.len() - 2);
        (data.to_vec(), u16::from_be_bytes([sw[0], sw[1]]))
    }

    /// Send, follow 61xx with GET RESPONSE.
    fn send_all(&mut self, bytes: &[u8]) -> (Vec<u8>, u16) {
        let (mut data, mut sw) = self.send(bytes);
        while sw >> 8 == 0x61 {
            let (more, next) = self.send(&[0x00, 0xc0, 0x00, 0x00, (sw & 0xff) as u8]);
            data.extend_from_slice(&more);
            sw = next;
        }
        (data, sw)
    }

    fn hex(&mut self, text: &str) -> (Vec<u8>, u16) {
        self.send_all(&hex::decode(text.replace(' ', "")).unwrap())
    }

    fn sw(&mut self, text: &str) -> u16 {
        self.hex(text).1
    }

    fn authenticate(&mut self) {
        let key = default_key(self.firmware);
        let cmd1 = HostAuthentication::witness_request(key.algorithm());
        let (a1, sw) = self.send(&cmd1.to_bytes().unwrap());
        assert_eq!(sw, 0x9000, "witness request");
        let (auth, cmd2) =
            HostAuthentication::answer_witness(&key, &a1, &mut getrandom::SysRng).unwrap();
        let (a2, sw) = self.send(&cmd2.to_bytes().unwrap());
        assert_eq!(sw, 0x9000, "mutual response");
        auth.verify_card(&key, &a2).unwrap();
    }
}

/// A fresh card of `firmware` with the management key authenticated.
fn fresh(dir: &Path, firmware: FirmwareVersion) -> Dev {
    let name = format!("{firmware}.state");
    drop(init(dir, &name, firmware));
    let mut dev = Dev::open(&dir.join(name), firmware);
    dev.authenticate();
    dev
}

const AES192_KEY: &str = "0a9b18 0102030405060708 0102030405060708 0102030405060708";
const GEN_P256_9A: &str = "0047009a05ac03800111";
const GEN_ED25519_9A: &str = "0047009a05ac038001e0";
const GEN_RSA3072_9A: &str = "0047009a05ac03800105";
const GEN_X25519_9D: &str = "0047009d05ac038001e1";
/// IMPORT Ed25519 into 9a: tag 07, the 32-byte seed.
const IMPORT_ED25519_9A: &str =
    "00fee09a22 0720 0101010101010101010101010101010101010101010101010101010101010101";

#[test]
fn each_generation_refuses_what_its_firmware_lacks() {
    let dir = tempfile::tempdir().unwrap();
    // (firmware, GET SERIAL, GET METADATA, SET AES-192 mgmt key, VERIFY FF,
    //  5.7 key types GENERATE / IMPORT, MOVE KEY)
    type Row = (FirmwareVersion, u16, u16, u16, u16, u16, u16, u16);
    let rows: [Row; 7] = [
        (V437, 0x6d00, 0x6d00, 0x6a80, 0x6a86, 0x6a80, 0x6a86, 0x6d00),
        (V527, 0x9000, 0x6d00, 0x6a80, 0x6a86, 0x6a80, 0x6a86, 0x6d00),
        (V530, 0x9000, 0x9000, 0x6a80, 0x6a86, 0x6a80, 0x6a86, 0x6d00),
        (V540, 0x9000, 0x9000, 0x9000, 0x6a86, 0x6a80, 0x6a86, 0x6d00),
        (V543, 0x9000, 0x9000, 0x9000, 0x9000, 0x6a80, 0x6a86, 0x6d00),
        (V566, 0x9000, 0x9000, 0x9000, 0x9000, 0x6a80, 0x6a86, 0x6d00),
        // 5.7: MOVE of an empty slot is 6A88 (the instruction exists).
        (V574, 0x9000, 0x9000, 0x9000, 0x9000, 0x9000, 0x9000, 0x6a88),
    ];
    for (fw, serial, metadata, aes, unverify, gen57, import57, mv) in rows {
        let mut d = fresh(dir.path(), fw);
        assert_eq!(d.sw("00f80000"), serial, "{fw}: GET SERIAL");
        assert_eq!(d.sw("00f7008000"), metadata, "{fw}: GET METADATA (PIN)");
        assert_eq!(d.sw("00f6829a"), mv, "{fw}: MOVE KEY 9a -> 82");
        assert_eq!(d.sw("00f6ff9a"), mv, "{fw}: DELETE KEY 9a");
        assert_eq!(
            d.sw(&format!("00ffffff1b{AES192_KEY}")),
            aes,
            "{fw}: SET MANAGEMENT KEY AES-192"
        );
        if aes == 0x9000 {
            // Still authenticated: put this firmware's default key back.
            let tdes = "039b18 0102030405060708 0102030405060708 0102030405060708";
            let back = if fw >= FirmwareVersion::new(5, 7, 0) {
                AES192_KEY
            } else {
                tdes
            };
            assert_eq!(d.sw(&format!("00ffffff1b{back}")), 0x9000, "{fw}: key back");
        }
        assert_eq!(
            d.sw("0020ff80"),
            unverify,
            "{fw}: VERIFY FF (forget the PIN)"
        );
        for (what, cmd) in [
            ("GENERATE Ed25519", GEN_ED25519_9A),
            ("GENERATE RSA-3072", GEN_RSA3072_9A),
            ("GENERATE X25519", GEN_X25519_9D),
        ] {
            assert_eq!(d.sw(cmd), gen57, "{fw}: {what}");
        }
        assert_eq!(d.sw(IMPORT_ED25519_9A), import57, "{fw}: IMPORT Ed25519");
        // What every modelled firmware has: P-256 keys and attestation.
        assert_eq!(d.sw(GEN_P256_9A), 0x9000, "{fw}: GENERATE P-256");
        let (cert, sw) = d.hex("00f99a0000");
        assert_eq!(sw, 0x9000, "{fw}: ATTEST 9a");
        assert_eq!(cert[0], 0x30, "{fw}: ATTEST answers a DER certificate");
        assert_eq!(d.sw("00fd0000"), 0x9000, "{fw}: GET VERSION");
        assert_eq!(d.hex("00fd0000").0, fw.to_bytes().to_vec());
    }
}

#[test]
fn the_token_api_refuses_what_the_firmware_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = init(dir.path(), "t.state", V566);
    t.authenticate(&default_key(V566)).unwrap();
    for alg in [
        Algorithm::Ed25519,
        Algorithm::X25519,
        Algorithm::Rsa3072,
        Algorithm::Rsa4096,
    ] {
        let e = t
            .generate_key(
                SlotId::Signature,
                alg,
                PinPolicy::Default,
                TouchPolicy::Default,
            )
            .unwrap_err();
        assert!(
            matches!(&e, Error::UnsupportedAlgorithm { algorithm } if algorithm.contains("5.7.0") && algorithm.contains("5.6.6")),
            "{alg}: {e}"
        );
    }
    let e = t
        .with_card(|c| c.move_key(SlotId::Authentication, SlotId::Signature))
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&e, Error::NotSupported { what } if what.contains("MOVE KEY")),
        "{e}"
    );
    // Nothing was stored by the refusals.
    assert!(t.list_keys().unwrap().is_empty());
}

#[test]
fn init_refuses_firmware_the_emulator_does_not_model() {
    let dir = tempfile::tempdir().unwrap();
    for fw in [
        FirmwareVersion::new(3, 5, 0),
        FirmwareVersion::new(4, 3, 4),
        FirmwareVersion::new(4, 4, 5),
        FirmwareVersion::new(5, 8, 0),
    ] {
        let path = dir.path().join(format!("{fw}.state"));
        let e = EmulatedToken::init(
            &path,
            &InitOptions {
                firmware: fw,
                ..InitOptions::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::NotSupported { what } if what.contains(&fw.to_string())),
            "{fw}: {e}"
        );
        assert!(!path.exists(), "{fw}: a refused init leaves no state file");
    }
    // An AES management key on firmware before 5.4 is refused too.
    let e = EmulatedToken::init(
        dir.path().join("aes.state"),
        &InitOptions {
            firmware: V530,
            management_key_algorithm: Some(ManagementKeyAlgorithm::Aes128),
            ..InitOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::NotSupported { what } if what.contains("5.4.0")),
        "{e}"
    );
}

// ----- MOVE KEY and DELETE KEY -------------------------------------------------------

#[test]
fn move_and_delete_as_firmware_5_7_does_them() {
    let dir = tempfile::tempdir().unwrap();
    drop(init(dir.path(), "t.state", V574));
    let path = dir.path().join("t.state");
    let mut d = Dev::open(&path, V574);
    // The management key first.
    assert_eq!(d.sw("00f69c9a"), 0x6982, "MOVE without the management key");
    assert_eq!(
        d.sw("00f6ff9a"),
        0x6982,
        "DELETE without the management key"
    );
    d.authenticate();
    assert_eq!(d.sw("00f69c9a"), 0x6a88, "MOVE from an empty slot");
    assert_eq!(d.sw("00f6ff9a"), 0x6a88, "DELETE of an empty slot");
    assert_eq!(d.sw(GEN_P256_9A), 0x9000);
    let (meta_9a, sw) = d.hex("00f7009a00");
    assert_eq!(sw, 0x9000);
    // f9 is never a source, a destination or deleted; bad slot bytes.
    assert_eq!(d.sw("00f6f99a"), 0x6a86, "MOVE into f9");
    assert_eq!(d.sw("00f69af9"), 0x6a86, "MOVE out of f9");
    assert_eq!(d.sw("00f6fff9"), 0x6a86, "DELETE f9");
    assert_eq!(d.sw("00f6009a"), 0x6a86, "MOVE to slot 00");
    assert_eq!(d.sw("00f69c00"), 0x6a86, "MOVE from slot 00");
    assert_eq!(d.sw("00f69a9a"), 0x6a86, "MOVE onto itself");
    assert_eq!(d.sw("00f69c9a0100"), 0x6a80, "MOVE with data");
    // The move: metadata identical (policies as resolved for 9a).
    assert_eq!(d.sw("00f69c9a"), 0x9000, "MOVE 9a -> 9c");
    let (meta_9c, sw) = d.hex("00f7009c00");
    assert_eq!(sw, 0x9000);
    assert_eq!(
        meta_9c, meta_9a,
        "the key moved with its policies and origin"
    );
    assert_eq!(d.sw("00f7009a00"), 0x6a88, "9a is empty after the move");
    // An occupied destination is refused and both keys stay.
    assert_eq!(d.sw(GEN_P256_9A), 0x9000);
    let (meta_new, _) = d.hex("00f7009a00");
    assert_eq!(d.sw("00f69c9a"), 0x6a86, "MOVE into an occupied slot");
    assert_eq!(d.hex("00f7009c00").0, meta_9c);
    assert_eq!(d.hex("00f7009a00").0, meta_new);
    // The moved key is still attestable, as the key in 9c.
    assert_eq!(d.hex("00f99c0000").1, 0x9000);
    // DELETE.
    assert_eq!(d.sw("00f6ff9c"), 0x9000, "DELETE 9c");
    assert_eq!(d.sw("00f7009c00"), 0x6a88, "9c is empty after DELETE");
    assert_eq!(d.sw("00f6ff9c"), 0x6a88, "DELETE again");
    assert_eq!(d.sw("00f99c0000") >> 8, 0x6a, "ATTEST of the deleted slot");
}

#[test]
fn move_and_delete_persist_through_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.state");
    let mut t = init(dir.path(), "t.state", V574);
    t.authenticate(&default_key(V574)).unwrap();
    t.generate_key(
        SlotId::Authentication,
        Algorithm::EccP256,
        PinPolicy::Never,
        TouchPolicy::Never,
    )
    .unwrap();
    let cert = t.attest(SlotId::Authentication).unwrap().slot_certificate;
    t.put_certificate(SlotId::Authentication, &cert).unwrap();
    let before = t.key(SlotId::Authentication).unwrap();
    drop(t);

    // MOVE through the APDU front end, as ykman sends it; then power off.
    let mut d = Dev::open(&path, V574);
    d.authenticate();
    assert_eq!(d.sw("00f6859a"), 0x9000, "MOVE 9a -> 85");
    drop(d);

    let mut t = retry_locked(|| EmulatedToken::open(&path, Arc::new(ApproveTouch)));
    let moved = t.key(SlotId::Retired(0x85)).unwrap();
    assert_eq!(moved.public_key, before.public_key, "the same key in 85");
    assert_eq!(moved.pin_policy, PinPolicy::Never);
    assert!(
        moved.certificate.is_none(),
        "the certificate object does not move with the key"
    );
    assert!(matches!(
        t.key(SlotId::Authentication),
        Err(Error::KeyNotFound { .. })
    ));
    // The moved key signs, and the signature verifies with the public key.
    let digest = [0x5a; 32];
    let sig = t
        .sign_digest(
            SlotId::Retired(0x85),
            signer_lib::HashAlgorithm::Sha256,
            &digest,
        )
        .unwrap();
    moved
        .public_key
        .verify_prehash(&digest, &sig)
        .expect("the moved key's signature verifies");
    // DELETE through the card model; the token persists it.
    t.authenticate(&default_key(V574)).unwrap();
    t.with_card(|c| c.delete_key(SlotId::Retired(0x85)))
        .unwrap()
        .unwrap();
    drop(t);
    let mut t = retry_locked(|| EmulatedToken::open(&path, Arc::new(ApproveTouch)));
    assert!(matches!(
        t.key(SlotId::Retired(0x85)),
        Err(Error::KeyNotFound { .. })
    ));
    assert!(t.list_keys().unwrap().is_empty(), "no key left");
}

// ----- Attestation per generation ----------------------------------------------------

fn pem(der: &[u8]) -> String {
    pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, der).unwrap()
}

fn cn(der: &[u8]) -> String {
    use der::Decode;
    x509_cert::Certificate::from_der(der)
        .unwrap()
        .tbs_certificate()
        .subject()
        .to_string()
}

fn openssl_verify(ca: &Path, untrusted: &Path, leaf: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg("-untrusted")
        .arg(untrusted)
        .arg(leaf)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl is needed (tests/scripts/install-deps.sh installs it): {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && text.trim_end().ends_with(": OK"),
        text,
    )
}

#[test]
fn attestation_chain_per_generation() {
    let dir = tempfile::tempdir().unwrap();
    let other = init(dir.path(), "other.state", V574);
    let other_root = other.attestation_root_der().unwrap();
    // (firmware, chain length, root name, issuer of the f9 certificate)
    let cases = [
        (
            V437,
            3,
            "Emulated PIV Root CA Serial",
            "Emulated PIV Root CA Serial",
        ),
        (
            V527,
            3,
            "Emulated PIV Root CA Serial",
            "Emulated PIV Root CA Serial",
        ),
        (
            V566,
            3,
            "Emulated PIV Root CA Serial",
            "Emulated PIV Root CA Serial",
        ),
        (
            V573,
            3,
            "Emulated PIV Root CA Serial",
            "Emulated PIV Root CA Serial",
        ),
        (
            V574,
            5,
            "Emulated Attestation Root 1",
            "Emulated PIV Attestation A 1",
        ),
    ];
    for (fw, len, root_cn, f9_issuer) in cases {
        let mut t = init(dir.path(), &format!("{fw}.state"), fw);
        t.authenticate(&default_key(fw)).unwrap();
        t.generate_key(
            SlotId::Signature,
            Algorithm::EccP256,
            PinPolicy::Always,
            TouchPolicy::Cached,
        )
        .unwrap();
        let key = t.key(SlotId::Signature).unwrap();
        let att = t.attest(SlotId::Signature).unwrap();
        let root = t.attestation_root_der().unwrap();
        assert!(cn(&root).contains(root_cn), "{fw}: root {}", cn(&root));
        assert!(
            !cn(&root).contains("Yubico"),
            "{fw}: the root never claims Yubico"
        );
        {
            use der::Decode;
            let f9 = x509_cert::Certificate::from_der(&att.device_certificate).unwrap();
            let issuer = f9.tbs_certificate().issuer().to_string();
            assert!(issuer.contains(f9_issuer), "{fw}: f9 issued by {issuer}");
        }

        // The library's verifier, trusting the emulated root (DER).
        let mut anchors = TrustAnchors::empty();
        anchors
            .add_root_der("emulated token", root.clone())
            .unwrap();
        let expected = Expected {
            public_key: Some(&key.public_key.spki_der),
            slot: Some(SlotId::Signature),
            serial: Some(12_345_678),
        };
        let v = verify_attestation(&att, &anchors, SystemTime::now(), &expected);
        assert!(v.trusted, "{fw}: {:?}", v.problems);
        assert_eq!(v.chain.len(), len, "{fw}: chain length");
        assert_eq!(v.chain.last().unwrap(), &root, "{fw}: ends at the root");
        assert_eq!(v.info.firmware, Some(fw), "{fw}: firmware extension");
        assert_eq!(v.info.serial, Some(12_345_678));
        // The same through the PEM bundle the token publishes.
        let mut anchors = TrustAnchors::empty();
        anchors
            .add_root_pem("emulated token", &t.attestation_root_pem().unwrap())
            .unwrap();
        let v = verify_attestation(&att, &anchors, SystemTime::now(), &expected);
        assert!(v.trusted, "{fw} (PEM bundle): {:?}", v.problems);
        assert_eq!(
            v.chain.len(),
            len,
            "{fw} (PEM bundle): the intermediates are not roots"
        );
        // Not trusted: another token's root, or Yubico's roots only.
        let mut anchors = TrustAnchors::empty();
        anchors.add_root_der("other", other_root.clone()).unwrap();
        let v = verify_attestation(&att, &anchors, SystemTime::now(), &expected);
        assert!(!v.trusted, "{fw}: trusted under another token's root");
        let v = verify_attestation(
            &att,
            &TrustAnchors::yubico().unwrap(),
            SystemTime::now(),
            &expected,
        );
        assert!(
            !v.trusted,
            "{fw}: an emulated attestation is trusted by Yubico's roots"
        );

        // openssl: root as CA, f9 (and for 5.7.4 the intermediates) untrusted.
        let intermediates = embedded_intermediates(&root).unwrap();
        assert_eq!(intermediates.len(), len - 3, "{fw}: intermediates carried");
        let w = |name: &str, text: String| {
            let p = dir.path().join(format!("{fw}-{name}.pem"));
            std::fs::write(&p, text).unwrap();
            p
        };
        let ca = w("root", pem(&root));
        let bundle = w("bundle", t.attestation_root_pem().unwrap());
        let other_ca = w("other", other.attestation_root_pem().unwrap());
        let leaf = w("leaf", pem(&att.slot_certificate));
        let f9_only = w("f9", pem(&att.device_certificate));
        let mut chain = pem(&att.device_certificate);
        for i in &intermediates {
            chain.push_str(&pem(i));
        }
        let untrusted = w("untrusted", chain);
        let (ok, text) = openssl_verify(&ca, &untrusted, &leaf);
        assert!(ok, "{fw}: openssl rejects the chain: {text}");
        let (ok, text) = openssl_verify(&bundle, &f9_only, &leaf);
        assert!(
            ok,
            "{fw}: openssl rejects the chain with the bundle: {text}"
        );
        let (ok, text) = openssl_verify(&other_ca, &untrusted, &leaf);
        assert!(!ok, "{fw}: openssl accepts another token's root: {text}");
        if len == 5 {
            // The intermediates are needed: the root alone does not reach f9.
            let (ok, text) = openssl_verify(&ca, &f9_only, &leaf);
            assert!(
                !ok,
                "{fw}: openssl verified without the intermediates: {text}"
            );
        }
    }
}

#[test]
fn reset_restores_the_factory_management_key_of_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    // (firmware, key type at init, key type GET METADATA 9B reports after RESET)
    for (fw, at_init, after) in [
        (V543, ManagementKeyAlgorithm::Aes192, 0x03),
        (V543, ManagementKeyAlgorithm::Tdes, 0x03),
        (V574, ManagementKeyAlgorithm::Aes192, 0x0a),
    ] {
        let path = dir.path().join(format!("{fw}-{at_init}.state"));
        drop(
            EmulatedToken::init(
                &path,
                &InitOptions {
                    serial: Some(1),
                    firmware: fw,
                    management_key_algorithm: Some(at_init),
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let mut d = Dev::open(&path, fw);
        let (meta, sw) = d.hex("00f7009b00");
        assert_eq!(sw, 0x9000);
        assert_eq!(&meta[..3], &[0x01, 0x01, at_init.id()], "{fw}: before");
        for _ in 0..3 {
            d.hex("0020008008 3030303030303030");
            d.hex("002c008010 3030303030303030 3131313131313131");
        }
        assert_eq!(d.sw("00fb0000"), 0x9000, "{fw}: RESET");
        let (meta, sw) = d.hex("00f7009b00");
        assert_eq!(sw, 0x9000);
        assert_eq!(
            &meta[..3],
            &[0x01, 0x01, after],
            "{fw} ({at_init} at init): after RESET"
        );
        // ... and it is the default key of that type.
        let alg = ManagementKeyAlgorithm::from_id(after).unwrap();
        let key = ManagementKey::default_for(alg).unwrap();
        let cmd1 = HostAuthentication::witness_request(alg);
        let (a1, sw) = d.send(&cmd1.to_bytes().unwrap());
        assert_eq!(sw, 0x9000);
        let (_, cmd2) =
            HostAuthentication::answer_witness(&key, &a1, &mut getrandom::SysRng).unwrap();
        assert_eq!(
            d.send(&cmd2.to_bytes().unwrap()).1,
            0x9000,
            "{fw}: default key after RESET"
        );
    }
}

/// The signed part and the signature of a DER certificate.
fn tbs_and_signature(der: &[u8]) -> (Vec<u8>, Vec<u8>, String) {
    use der::{Decode, Encode};
    let cert = x509_cert::Certificate::from_der(der).unwrap();
    (
        cert.tbs_certificate().to_der().unwrap(),
        cert.signature().raw_bytes().to_vec(),
        cert.signature_algorithm().oid.to_string(),
    )
}

#[test]
fn an_owner_imported_rsa_or_ed25519_f9_key_signs_attestations() {
    use rsa::traits::PrivateKeyParts;
    use signature::Verifier;
    let dir = tempfile::tempdir().unwrap();
    let mut d = fresh(dir.path(), V574);
    assert_eq!(d.sw(GEN_P256_9A), 0x9000);

    // RSA-1024 into f9 (IMPORT, algorithm 06, tags 01..05), extended APDU.
    let key = rsa::RsaPrivateKey::new(&mut rand_core::UnwrapErr(getrandom::SysRng), 1024).unwrap();
    let primes = key.primes();
    let part = |t: u8, v: &rsa::BoxedUint| {
        let bytes = v.to_be_bytes_trimmed_vartime();
        let mut out = vec![t, 0x81, bytes.len() as u8];
        out.extend_from_slice(&bytes);
        out
    };
    let mut data = Vec::new();
    data.extend(part(0x01, &primes[0]));
    data.extend(part(0x02, &primes[1]));
    data.extend(part(0x03, key.dp().unwrap()));
    data.extend(part(0x04, key.dq().unwrap()));
    data.extend(part(0x05, &key.qinv().unwrap().retrieve()));
    let mut apdu = vec![0x00, 0xfe, 0x06, 0xf9, 0x00];
    apdu.extend((data.len() as u16).to_be_bytes());
    apdu.extend(&data);
    assert_eq!(d.send_all(&apdu).1, 0x9000, "IMPORT RSA-1024 into f9");
    let (cert, sw) = d.hex("00f99a0000");
    assert_eq!(sw, 0x9000, "ATTEST with an RSA f9 key");
    let (tbs, sig, oid) = tbs_and_signature(&cert);
    assert_eq!(oid, "1.2.840.113549.1.1.11", "sha256WithRSAEncryption");
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.to_public_key())
        .verify(&tbs, &rsa::pkcs1v15::Signature::try_from(&sig[..]).unwrap())
        .expect("the attestation verifies with the imported f9 key");

    // Ed25519 into f9 (algorithm E0, tag 07 seed).
    let seed = [0x42u8; 32];
    let (_, sw) = d.hex(&format!("00fee0f922 0720 {}", hex::encode(seed)));
    assert_eq!(sw, 0x9000, "IMPORT Ed25519 into f9");
    let (cert, sw) = d.hex("00f99a0000");
    assert_eq!(sw, 0x9000, "ATTEST with an Ed25519 f9 key");
    let (tbs, sig, oid) = tbs_and_signature(&cert);
    assert_eq!(oid, "1.3.101.112", "Ed25519");
    ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .verify_strict(&tbs, &ed25519_dalek::Signature::from_slice(&sig).unwrap())
        .expect("the attestation verifies with the imported f9 key");
}
