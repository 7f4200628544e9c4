//! The RustCrypto adapters: signatures made through `signature::Signer` on
//! an emulated token verify with the p256/p384 verifying keys (a separate
//! verifier), a wrong PIN is surfaced once and never sent again, and the
//! wrong curve is refused.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use signature::{Keypair, Signer, Verifier};
use signer_lib::emulator::{EmulatedToken, InitOptions};
use signer_lib::signer::TokenSigner;
use signer_lib::{
    Algorithm, Error, ManagementKey, ManagementKeyAlgorithm, Pin, PinPolicy, SlotId, Token,
    TouchPolicy,
};

fn token(dir: &std::path::Path) -> EmulatedToken {
    let mut t = EmulatedToken::init(dir.join("t.state"), &InitOptions::default()).unwrap();
    t.authenticate(&ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap())
        .unwrap();
    t.generate_key(
        SlotId::Signature,
        Algorithm::EccP256,
        PinPolicy::Always,
        TouchPolicy::Never,
    )
    .unwrap();
    t.generate_key(
        SlotId::KeyManagement,
        Algorithm::EccP384,
        PinPolicy::Never,
        TouchPolicy::Always,
    )
    .unwrap();
    t
}

#[test]
fn signatures_through_the_traits_verify_independently() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = token(dir.path());
    let expected = t.public_key(SlotId::Signature).unwrap();
    let s = TokenSigner::new(t, SlotId::Signature)
        .unwrap()
        .with_pin(Pin::parse_pin("123456").unwrap())
        .p256()
        .unwrap();
    let vk = s.verifying_key();
    use spki::EncodePublicKey;
    assert_eq!(
        vk.to_public_key_der().unwrap().as_bytes(),
        expected.spki_der.as_slice()
    );
    let sig: p256::ecdsa::Signature = s.try_sign(b"root.json v1").unwrap();
    vk.verify(b"root.json v1", &sig).unwrap();
    assert!(
        vk.verify(b"root.json v2", &sig).is_err(),
        "the check can fail"
    );
    let der: p256::ecdsa::DerSignature = s.try_sign(b"targets.json").unwrap();
    vk.verify(b"targets.json", &der).unwrap();

    let t = s.into_inner().into_inner();
    let s = TokenSigner::new(t, SlotId::KeyManagement)
        .unwrap()
        .p384()
        .unwrap();
    let sig: p384::ecdsa::Signature = s.try_sign(b"snapshot.json").unwrap();
    s.verifying_key().verify(b"snapshot.json", &sig).unwrap();
    // The wrong curve is refused, not mis-signed.
    let t = s.into_inner().into_inner();
    assert!(matches!(
        TokenSigner::new(t, SlotId::KeyManagement).unwrap().p256(),
        Err(Error::UnsupportedAlgorithm { .. })
    ));
}

#[test]
fn a_rejected_pin_is_never_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(dir.path());
    let s = TokenSigner::new(t, SlotId::Signature)
        .unwrap()
        .with_pin(Pin::parse_pin("654321").unwrap());
    let digest = [7u8; 32];
    assert!(matches!(
        s.sign_digest(signer_lib::HashAlgorithm::Sha256, &digest),
        Err(Error::WrongPin { retries_left: 2 })
    ));
    for _ in 0..3 {
        assert!(matches!(
            s.sign_digest(signer_lib::HashAlgorithm::Sha256, &digest),
            Err(Error::PinRejectedEarlier {
                retries_left: 2,
                ..
            })
        ));
    }
    let mut t = s.into_inner();
    assert_eq!(t.retry_counters().unwrap().pin, 2, "exactly one try spent");
}
