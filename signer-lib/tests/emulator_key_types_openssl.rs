//! The emulated card's new key types checked by openssl, an implementation
//! independent of the RustCrypto crates the card uses: Ed25519 signatures
//! over the message, RSA raw operations (a PKCS#1 v1.5 signature block and
//! a decryption of what openssl encrypted), and ECDH on P-256, P-384 and
//! X25519 (openssl derives the same shared secret from the card's public
//! key and its own private key).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use signer_lib::emulator::{ApproveTouch, Card, EmulatedToken, InitOptions};
use signer_lib::{
    Algorithm, ManagementKey, ManagementKeyAlgorithm, PinPolicy, SlotId, Token, TouchPolicy,
};

fn openssl(args: &[&str], dir: &Path) -> (bool, Vec<u8>, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "openssl is needed for this test (tests/scripts/install-deps.sh installs it): {e}"
            )
        });
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn spki_pem(der: &[u8]) -> String {
    pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, der).unwrap()
}

fn token(dir: &Path) -> EmulatedToken {
    let mut t = EmulatedToken::init(dir.join("t.state"), &InitOptions::default()).unwrap();
    t.authenticate(&ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap())
        .unwrap();
    t
}

fn generate(t: &mut EmulatedToken, slot: SlotId, alg: Algorithm) -> Vec<u8> {
    t.generate_key(slot, alg, PinPolicy::Never, TouchPolicy::Never)
        .unwrap()
        .public_key
        .spki_der
}

fn card<T>(t: &mut EmulatedToken, f: impl FnOnce(&mut Card) -> T) -> T {
    t.with_card(f).unwrap()
}

#[test]
fn openssl_verifies_ed25519_and_rsa_signatures_of_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut t = token(d);
    let message = b"a TUF root, signed as it is (Ed25519 signs the message)".repeat(20);
    std::fs::write(d.join("msg"), &message).unwrap();

    let ed = generate(&mut t, SlotId::Signature, Algorithm::Ed25519);
    std::fs::write(d.join("ed.pem"), spki_pem(&ed)).unwrap();
    let sig = card(&mut t, |c| c.sign(SlotId::Signature, &message, &mut |_| {})).unwrap();
    std::fs::write(d.join("ed.sig"), &sig).unwrap();
    let verify = [
        "pkeyutl", "-verify", "-pubin", "-inkey", "ed.pem", "-rawin", "-in", "msg", "-sigfile",
        "ed.sig",
    ];
    let (ok, _, err) = openssl(&verify, d);
    assert!(ok, "openssl refused the Ed25519 signature: {err}");
    let mut bad = sig.clone();
    bad[10] ^= 1;
    std::fs::write(d.join("ed.sig"), &bad).unwrap();
    assert!(
        !openssl(&verify, d).0,
        "openssl accepted a changed signature"
    );

    // RSA-2048: the card's raw operation over a host-made PKCS#1 v1.5 block
    // is a signature openssl verifies with the public key.
    let rsa = generate(&mut t, SlotId::Authentication, Algorithm::Rsa2048);
    std::fs::write(d.join("rsa.pem"), spki_pem(&rsa)).unwrap();
    let digest = Sha256::digest(&message);
    let prefix: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let mut block = vec![0x00, 0x01];
    block.resize(256 - prefix.len() - digest.len() - 1, 0xff);
    block.push(0x00);
    block.extend_from_slice(&prefix);
    block.extend_from_slice(&digest);
    let sig = card(&mut t, |c| {
        c.sign(SlotId::Authentication, &block, &mut |_| {})
    })
    .unwrap();
    assert_eq!(sig.len(), 256);
    std::fs::write(d.join("rsa.sig"), &sig).unwrap();
    let verify = [
        "dgst",
        "-sha256",
        "-verify",
        "rsa.pem",
        "-signature",
        "rsa.sig",
        "msg",
    ];
    let (ok, _, err) = openssl(&verify, d);
    assert!(ok, "openssl refused the RSA signature: {err}");
    std::fs::write(d.join("msg"), b"another message").unwrap();
    assert!(
        !openssl(&verify, d).0,
        "openssl accepted it for another message"
    );
}

#[test]
fn the_card_decrypts_what_openssl_encrypted_to_its_rsa_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut t = token(d);
    let rsa = generate(&mut t, SlotId::KeyManagement, Algorithm::Rsa1024);
    std::fs::write(d.join("rsa.pem"), spki_pem(&rsa)).unwrap();
    let secret = b"a 24-byte symmetric key!";
    std::fs::write(d.join("pt"), secret).unwrap();
    let (ok, _, err) = openssl(
        &[
            "pkeyutl", "-encrypt", "-pubin", "-inkey", "rsa.pem", "-in", "pt", "-out", "ct",
        ],
        d,
    );
    assert!(ok, "{err}");
    let ciphertext = std::fs::read(d.join("ct")).unwrap();
    assert_eq!(ciphertext.len(), 128);
    let block = card(&mut t, |c| {
        c.decrypt(SlotId::KeyManagement, &ciphertext, &mut |_| {})
    })
    .unwrap();
    // EME-PKCS1-v1_5: 00 02 nonzero-padding 00 message.
    assert_eq!(&block[..2], &[0x00, 0x02]);
    let sep = block[2..].iter().position(|&b| b == 0).unwrap() + 2;
    assert!(sep >= 10, "at least 8 bytes of padding");
    assert_eq!(&block[sep + 1..], secret);
}

#[test]
fn openssl_derives_the_same_ecdh_secrets_as_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut t = token(d);
    for (slot, alg, genpkey) in [
        (
            SlotId::Authentication,
            Algorithm::EccP256,
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
        ),
        (
            SlotId::Signature,
            Algorithm::EccP384,
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
            ],
        ),
        (
            SlotId::KeyManagement,
            Algorithm::X25519,
            vec!["genpkey", "-algorithm", "X25519"],
        ),
    ] {
        let card_spki = generate(&mut t, slot, alg);
        std::fs::write(d.join("card.pem"), spki_pem(&card_spki)).unwrap();
        let mut args = genpkey.clone();
        args.extend(["-out", "peer.key"]);
        let (ok, _, err) = openssl(&args, d);
        assert!(ok, "{err}");
        // The peer's public key as the card takes it: the uncompressed
        // point (P-256/P-384) or the 32 raw bytes (X25519), from the SPKI.
        let (ok, peer_spki, err) = openssl(
            &["pkey", "-in", "peer.key", "-pubout", "-outform", "DER"],
            d,
        );
        assert!(ok, "{err}");
        let point_len = match alg {
            Algorithm::EccP256 => 65,
            Algorithm::EccP384 => 97,
            _ => 32,
        };
        let peer_point = &peer_spki[peer_spki.len() - point_len..];
        let shared = card(&mut t, |c| c.key_agreement(slot, peer_point, &mut |_| {})).unwrap();
        let (ok, expected, err) = openssl(
            &[
                "pkeyutl", "-derive", "-inkey", "peer.key", "-peerkey", "card.pem",
            ],
            d,
        );
        assert!(ok, "{err}");
        assert_eq!(shared.as_slice(), expected.as_slice(), "{alg}");
    }
    // A reopened token agrees the same keys (the state file keeps them).
    let path = d.join("t.state");
    drop(t);
    let mut t = EmulatedToken::open(&path, Arc::new(ApproveTouch)).unwrap();
    assert_eq!(t.list_keys().unwrap().len(), 3);
}
