//! `HardwareToken` over the loopback transport: every signature scheme costs
//! ONE APDU in steady state (RSA blocks and long Ed25519 messages go in one
//! extended-length GENERAL AUTHENTICATE whose response carries the whole
//! signature: no command chaining, no GET RESPONSE); a YubiKey without GET
//! METADATA (4.3.7) is asked ATTEST instead, once per connection; X25519 and
//! malformed requests cost no APDU at all.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use signer_lib::emulator::InitOptions;
use signer_lib::piv::ins;
use signer_lib::piv_client::HardwareToken;
use signer_lib::testing::verify::assert_scheme_signature;
use signer_lib::testing::{LoopbackFixture, TokenFixture, TouchSetup};
use signer_lib::{
    Algorithm, Error, FirmwareVersion, HashAlgorithm, ImportKey, KeyInfo, PinPolicy, SignInput,
    SignRequest, SignatureScheme, SlotId, Token, TouchPolicy,
};

fn rsa_4096() -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("../testdata/rsa/rsa-4096.pem")).unwrap()
}

fn token(firmware: FirmwareVersion) -> (LoopbackFixture, HardwareToken) {
    let mut f = LoopbackFixture::with_options(InitOptions {
        serial: None,
        firmware,
        management_key_algorithm: None,
        ..Default::default()
    });
    let mut token = f.fresh(TouchSetup::approve()).unwrap();
    token.authenticate(&f.factory_management_key()).unwrap();
    (f, token)
}

fn sign(token: &mut HardwareToken, key: &KeyInfo, scheme: SignatureScheme, input: SignInput<'_>) {
    let sig = token
        .sign(
            &SignRequest {
                slot: key.slot,
                scheme,
                input,
                pin: None,
            },
            &mut |_| {},
        )
        .unwrap();
    assert_scheme_signature(&key.public_key, scheme, &input, &sig);
}

#[test]
fn one_apdu_per_signature_for_every_scheme() {
    let (f, mut token) = token(FirmwareVersion::new(5, 7, 4));
    let card = f.card(&token);
    let generate = |t: &mut HardwareToken, slot, alg| {
        t.generate_key(slot, alg, PinPolicy::Never, TouchPolicy::Never)
            .unwrap()
    };
    let p256 = generate(&mut token, SlotId::Authentication, Algorithm::EccP256);
    let rsa2048 = generate(&mut token, SlotId::Signature, Algorithm::Rsa2048);
    let ed = generate(&mut token, SlotId::KeyManagement, Algorithm::Ed25519);
    let rsa4096 = token
        .import_key(
            SlotId::Retired(0x82),
            &ImportKey::rsa(&rsa_4096()).unwrap(),
            PinPolicy::Never,
            TouchPolicy::Never,
        )
        .unwrap();
    let d256 = HashAlgorithm::Sha256.digest(b"m");
    let d512 = HashAlgorithm::Sha512.digest(b"m");
    let long = vec![0x42u8; signer_lib::model::ED25519_MAX_MESSAGE];
    let cases: Vec<(&KeyInfo, SignatureScheme, SignInput<'_>)> = vec![
        (
            &p256,
            SignatureScheme::Ecdsa,
            SignInput::Digest {
                hash: HashAlgorithm::Sha256,
                digest: &d256,
            },
        ),
        (
            &rsa2048,
            SignatureScheme::RsaPkcs1v15,
            SignInput::Digest {
                hash: HashAlgorithm::Sha256,
                digest: &d256,
            },
        ),
        (
            &rsa2048,
            SignatureScheme::RsaPss,
            SignInput::Digest {
                hash: HashAlgorithm::Sha512,
                digest: &d512,
            },
        ),
        (
            &rsa4096,
            SignatureScheme::RsaPss,
            SignInput::Digest {
                hash: HashAlgorithm::Sha256,
                digest: &d256,
            },
        ),
        (&ed, SignatureScheme::Ed25519, SignInput::Message(b"short")),
        (&ed, SignatureScheme::Ed25519, SignInput::Message(&long)),
    ];
    for (key, scheme, input) in cases {
        // Warm up: the key's metadata is read once per connection.
        sign(&mut token, key, scheme, input);
        card.clear_log();
        sign(&mut token, key, scheme, input);
        let log = card.instructions();
        eprintln!(
            "{} {scheme} ({} input bytes): APDUs {log:02X?}",
            key.algorithm(),
            input.bytes().len()
        );
        assert_eq!(
            log,
            vec![ins::GENERAL_AUTHENTICATE],
            "{} {scheme}: one APDU",
            key.algorithm()
        );
    }

    // Refusals cost nothing.
    let x = generate(&mut token, SlotId::Retired(0x83), Algorithm::X25519);
    token.key(x.slot).unwrap();
    card.clear_log();
    let refused = [
        token.sign(&SignRequest::ed25519(x.slot, b"m"), &mut |_| {}),
        token.sign(
            &SignRequest::digest(
                rsa2048.slot,
                SignatureScheme::Ecdsa,
                HashAlgorithm::Sha256,
                &d256,
            ),
            &mut |_| {},
        ),
        token.sign(
            &SignRequest::digest(
                rsa2048.slot,
                SignatureScheme::RsaPss,
                HashAlgorithm::Sha384,
                &d256,
            ),
            &mut |_| {},
        ),
        token.sign(&SignRequest::ed25519(ed.slot, &[0u8; 3001]), &mut |_| {}),
    ];
    assert!(matches!(refused[0], Err(Error::KeyCannotSign { .. })));
    assert!(matches!(refused[1], Err(Error::SchemeMismatch { .. })));
    assert!(matches!(refused[2], Err(Error::BadDigestLength { .. })));
    assert!(matches!(refused[3], Err(Error::TooLarge { .. })));
    assert_eq!(
        card.instructions(),
        Vec::<u8>::new(),
        "no APDU for a refusal"
    );
}

#[test]
fn yubikey_4_keys_are_learnt_from_their_attestation() {
    let (f, mut token) = token(FirmwareVersion::new(4, 3, 7));
    let card = f.card(&token);
    let key = token
        .generate_key(
            SlotId::Signature,
            Algorithm::Rsa2048,
            PinPolicy::Always,
            TouchPolicy::Cached,
        )
        .unwrap();
    assert_eq!(key.algorithm(), Algorithm::Rsa2048);
    assert_eq!(key.pin_policy, PinPolicy::Always, "from the attestation");
    assert_eq!(
        key.touch_policy,
        TouchPolicy::Cached,
        "from the attestation"
    );
    token.disconnect();
    card.clear_log();
    let listed = token.key(SlotId::Signature).unwrap();
    assert_eq!(listed.public_key, key.public_key);
    assert_eq!(listed.pin_policy, PinPolicy::Always);
    assert_eq!(listed.touch_policy, TouchPolicy::Cached);
    let log = card.instructions();
    assert!(log.contains(&ins::ATTEST), "ATTEST asked: {log:02X?}");
    assert!(
        !log.contains(&ins::GET_METADATA),
        "no GET METADATA on 4.3.7: {log:02X?}"
    );
    // PIN policy always, learnt from the attestation: the token refuses to
    // sign without a PIN before sending anything.
    card.clear_log();
    let d = HashAlgorithm::Sha256.digest(b"m");
    assert!(matches!(
        token.sign(
            &SignRequest::digest(
                SlotId::Signature,
                SignatureScheme::RsaPkcs1v15,
                HashAlgorithm::Sha256,
                &d
            ),
            &mut |_| {}
        ),
        Err(Error::PinRequired { .. })
    ));
    assert_eq!(card.instructions(), Vec::<u8>::new());
    // With the PIN: touch announced (cached policy, none yet), signature verifies.
    let pin = signer_lib::Pin::parse_pin("123456").unwrap();
    let mut events = Vec::new();
    let input = SignInput::Digest {
        hash: HashAlgorithm::Sha256,
        digest: &d,
    };
    let sig = token
        .sign(
            &SignRequest {
                slot: SlotId::Signature,
                scheme: SignatureScheme::RsaPkcs1v15,
                input,
                pin: Some(&pin),
            },
            &mut |e| events.push(e),
        )
        .unwrap();
    assert_eq!(events.len(), 1, "one touch prompt: {events:?}");
    assert_scheme_signature(&key.public_key, SignatureScheme::RsaPkcs1v15, &input, &sig);
    assert!(matches!(
        token.retry_counters(),
        Err(Error::NotSupported { .. })
    ));
    assert!(token.serial() > 0, "serial through the OTP applet");
}

/// Before 5.3 an imported key cannot be attested and has no metadata: right
/// after the import it is described from the imported material; after a
/// reconnect only through a certificate in its slot (then with the slot's
/// default PIN policy and an unknown origin), and it signs again.
#[test]
fn imported_keys_before_5_3_are_known_through_their_certificate() {
    let (f, mut token) = token(FirmwareVersion::new(5, 2, 7));
    let secret = [0x42u8; 32];
    let key = token
        .import_key(
            SlotId::Authentication,
            &ImportKey::ec(Algorithm::EccP256, &secret),
            PinPolicy::Never,
            TouchPolicy::Never,
        )
        .unwrap();
    assert_eq!(
        key.public_key,
        ImportKey::ec(Algorithm::EccP256, &secret)
            .public_key()
            .unwrap()
    );
    assert_eq!(key.origin, Some(signer_lib::KeyOrigin::Imported));
    let d = HashAlgorithm::Sha256.digest(b"m");
    let input = SignInput::Digest {
        hash: HashAlgorithm::Sha256,
        digest: &d,
    };
    sign(&mut token, &key, SignatureScheme::Ecdsa, input);
    let signer = signer_lib::signer::TokenSigner::new(token, SlotId::Authentication).unwrap();
    let (cert, mut token) = signer_lib::signer::self_signed_certificate(
        signer,
        "imported",
        std::time::Duration::from_secs(3600),
    )
    .unwrap();

    token.disconnect();
    assert!(
        matches!(
            token.key(SlotId::Authentication),
            Err(Error::KeyNotFound { .. })
        ),
        "without metadata, attestation or certificate the key cannot be described"
    );
    token.authenticate(&f.factory_management_key()).unwrap();
    token
        .put_certificate(SlotId::Authentication, &cert)
        .unwrap();
    token.disconnect();
    let known = token.key(SlotId::Authentication).unwrap();
    assert_eq!(known.public_key, key.public_key, "from the certificate");
    assert_eq!(known.origin, None);
    assert_eq!(known.pin_policy, PinPolicy::Once, "9a's default");
    token
        .verify_pin(&signer_lib::Pin::parse_pin("123456").unwrap())
        .unwrap();
    sign(&mut token, &known, SignatureScheme::Ecdsa, input);
}
