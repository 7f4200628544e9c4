//! The emulated PIV applet at the level an APDU front end uses it: command
//! sequencing (PIN policy `always`), management-key challenge-response
//! checked with an independent cipher, data objects, metadata, retries,
//! touch ordering.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use cipher::{Block, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use signer_lib::emulator::card::{
    Card, FactorySettings, KeyMetadata, PinStatus, certificate_from_object,
};
use signer_lib::emulator::{ApproveTouch, DenyTouch, TouchButton, TouchSource, TouchTiming};
use signer_lib::piv::object;
use signer_lib::testing::verify::verify_prehash;
use signer_lib::{
    Algorithm, Error, FirmwareVersion, KeyOrigin, ManagementKey, ManagementKeyAlgorithm, Pin,
    PinPolicy, SlotId, TokenEvent, TouchPolicy,
};

fn card_with(alg: ManagementKeyAlgorithm, touch: Arc<dyn TouchSource>) -> Card {
    let state = Card::manufacture(&FactorySettings {
        serial: 5_550_123,
        firmware: FirmwareVersion::new(5, 7, 4),
        management_key_algorithm: alg,
    })
    .unwrap();
    Card::new(state, touch, TouchTiming::default())
}

fn card() -> Card {
    card_with(ManagementKeyAlgorithm::Aes192, Arc::new(ApproveTouch))
}

fn pin() -> Pin {
    Pin::parse_pin("123456").unwrap()
}

fn admin(card: &mut Card) {
    let key = ManagementKey::default_for(card.management_key_metadata().algorithm).unwrap();
    card.authenticate_management_key(&key).unwrap();
}

fn generate(card: &mut Card, slot: SlotId, pin: PinPolicy, touch: TouchPolicy) -> KeyMetadata {
    admin(card);
    card.generate_key(slot, Algorithm::EccP256, pin, touch)
        .unwrap()
}

fn sign_ok(card: &mut Card, slot: SlotId, meta: &KeyMetadata) {
    let input = [0x33u8; 32];
    let sig = card.sign(slot, &input, &mut |_| {}).unwrap();
    verify_prehash(&meta.public_key, &input, &sig).unwrap();
}

#[test]
fn policy_always_accepts_only_a_verify_immediately_before() {
    let mut card = card();
    let meta = generate(
        &mut card,
        SlotId::Signature,
        PinPolicy::Always,
        TouchPolicy::Never,
    );
    // VERIFY then sign: allowed, once.
    card.verify_pin(&pin()).unwrap();
    sign_ok(&mut card, SlotId::Signature, &meta);
    assert!(matches!(
        card.sign(SlotId::Signature, &[0u8; 32], &mut |_| {}),
        Err(Error::PinRequired { .. })
    ));
    // Every kind of command in between voids it.
    type Command = fn(&mut Card);
    let commands: Vec<(&str, Command)> = vec![
        ("note_command (e.g. SELECT)", |c| c.note_command()),
        ("GET SERIAL", |c| {
            c.serial();
        }),
        ("GET VERSION", |c| {
            c.firmware();
        }),
        ("VERIFY retry query", |c| {
            c.pin_status();
        }),
        ("GET METADATA", |c| {
            let _ = c.key_metadata(SlotId::Signature);
        }),
        ("GET DATA", |c| {
            let _ = c.get_object(object::CHUID);
        }),
        ("failed sign elsewhere", |c| {
            let _ = c.sign(SlotId::Authentication, &[0u8; 32], &mut |_| {});
        }),
    ];
    for (what, command) in commands {
        card.verify_pin(&pin()).unwrap();
        command(&mut card);
        assert!(
            matches!(
                card.sign(SlotId::Signature, &[0u8; 32], &mut |_| {}),
                Err(Error::PinRequired { .. })
            ),
            "VERIFY, {what}, sign must fail"
        );
    }
    // A failed VERIFY right before does not count either.
    card.verify_pin(&pin()).unwrap();
    assert!(card.verify_pin(&Pin::parse_pin("000000").unwrap()).is_err());
    assert!(matches!(
        card.sign(SlotId::Signature, &[0u8; 32], &mut |_| {}),
        Err(Error::PinRequired { .. })
    ));
    // A card reset loses it too.
    card.verify_pin(&pin()).unwrap();
    card.reset_session();
    assert!(matches!(
        card.sign(SlotId::Signature, &[0u8; 32], &mut |_| {}),
        Err(Error::PinRequired { .. })
    ));
}

#[test]
fn a_signature_is_one_command() {
    let mut card = card();
    let meta = generate(
        &mut card,
        SlotId::Authentication,
        PinPolicy::Once,
        TouchPolicy::Never,
    );
    card.verify_pin(&pin()).unwrap();
    let before = card.command_count();
    sign_ok(&mut card, SlotId::Authentication, &meta);
    assert_eq!(card.command_count(), before + 1);
}

#[test]
fn sign_checks_input_length_before_the_pin() {
    let mut card = card();
    generate(
        &mut card,
        SlotId::Signature,
        PinPolicy::Always,
        TouchPolicy::Never,
    );
    for len in [0usize, 20, 31, 33, 48, 64] {
        assert!(
            matches!(
                card.sign(SlotId::Signature, &vec![1u8; len], &mut |_| {}),
                Err(Error::BadCommandData { .. })
            ),
            "input of {len} bytes"
        );
    }
}

#[test]
fn pin_status_reports_without_spending_tries() {
    let mut card = card();
    assert_eq!(
        card.pin_status(),
        PinStatus::NotVerified { retries_left: 3 }
    );
    card.verify_pin(&pin()).unwrap();
    assert_eq!(card.pin_status(), PinStatus::Verified);
    card.unverify_pin();
    assert_eq!(
        card.pin_status(),
        PinStatus::NotVerified { retries_left: 3 }
    );
    let wrong = Pin::parse_pin("111111").unwrap();
    for left in [2u8, 1, 0] {
        assert!(matches!(
            card.verify_pin(&wrong),
            Err(Error::WrongPin { retries_left }) if retries_left == left
        ));
    }
    assert_eq!(card.pin_status(), PinStatus::Blocked);
    assert!(matches!(card.verify_pin(&pin()), Err(Error::PinBlocked)));
    let meta = card.pin_metadata();
    assert_eq!((meta.total_retries, meta.remaining_retries), (3, 0));
    assert!(card.is_dirty(), "counter changes must be persisted");
}

/// An independent single-block cipher (the `aes`/`des` crates directly).
fn independent_crypt(
    alg: ManagementKeyAlgorithm,
    key: &[u8],
    data: &[u8],
    encrypt: bool,
) -> Vec<u8> {
    fn run<C: KeyInit + BlockCipherEncrypt + BlockCipherDecrypt>(
        key: &[u8],
        data: &[u8],
        encrypt: bool,
    ) -> Vec<u8> {
        let c = C::new_from_slice(key).unwrap();
        let mut b = Block::<C>::try_from(data).unwrap();
        if encrypt {
            c.encrypt_block(&mut b);
        } else {
            c.decrypt_block(&mut b);
        }
        b.to_vec()
    }
    match alg {
        ManagementKeyAlgorithm::Tdes => run::<des::TdesEde3>(key, data, encrypt),
        ManagementKeyAlgorithm::Aes128 => run::<aes::Aes128>(key, data, encrypt),
        ManagementKeyAlgorithm::Aes192 => run::<aes::Aes192>(key, data, encrypt),
        ManagementKeyAlgorithm::Aes256 => run::<aes::Aes256>(key, data, encrypt),
    }
}

#[test]
fn management_key_mutual_authentication() {
    for alg in [ManagementKeyAlgorithm::Aes192, ManagementKeyAlgorithm::Tdes] {
        let mut card = card_with(alg, Arc::new(ApproveTouch));
        let key = ManagementKey::DEFAULT_BYTES;
        assert_eq!(card.management_key_metadata().algorithm, alg);
        assert!(card.management_key_metadata().is_default);

        // Wrong algorithm.
        let other = if alg == ManagementKeyAlgorithm::Tdes {
            ManagementKeyAlgorithm::Aes192
        } else {
            ManagementKeyAlgorithm::Tdes
        };
        assert!(matches!(
            card.management_witness(other),
            Err(Error::WrongManagementKey)
        ));

        // The right key: decrypt the witness, send a challenge, check the answer.
        let witness = card.management_witness(alg).unwrap();
        assert_eq!(witness.len(), alg.block_len());
        let plain = independent_crypt(alg, &key, &witness, false);
        let challenge: Vec<u8> = (0..alg.block_len() as u8).collect();
        let response = card
            .management_mutual_response(alg, &plain, &challenge)
            .unwrap();
        assert_eq!(response, independent_crypt(alg, &key, &challenge, true));
        assert!(card.is_management_key_authenticated());
        card.generate_key(
            SlotId::Signature,
            Algorithm::EccP256,
            PinPolicy::Never,
            TouchPolicy::Never,
        )
        .unwrap();

        // A wrong witness fails and drops the authentication.
        let witness = card.management_witness(alg).unwrap();
        let mut plain = independent_crypt(alg, &key, &witness, false);
        plain[0] ^= 1;
        assert!(matches!(
            card.management_mutual_response(alg, &plain, &challenge),
            Err(Error::WrongManagementKey)
        ));
        assert!(!card.is_management_key_authenticated());

        // Step 2 must directly follow step 1.
        let witness = card.management_witness(alg).unwrap();
        card.note_command();
        let plain = independent_crypt(alg, &key, &witness, false);
        assert!(matches!(
            card.management_mutual_response(alg, &plain, &challenge),
            Err(Error::BadCommandData { .. })
        ));
        // And a witness is good for one answer only.
        let witness = card.management_witness(alg).unwrap();
        let plain = independent_crypt(alg, &key, &witness, false);
        card.management_mutual_response(alg, &plain, &challenge)
            .unwrap();
        assert!(matches!(
            card.management_mutual_response(alg, &plain, &challenge),
            Err(Error::BadCommandData { .. })
        ));
    }
}

#[test]
fn management_key_one_way_challenge() {
    let alg = ManagementKeyAlgorithm::Aes192;
    let mut card = card();
    let challenge = card.management_challenge(alg).unwrap();
    let response = independent_crypt(alg, &ManagementKey::DEFAULT_BYTES, &challenge, true);
    card.management_challenge_response(alg, &response).unwrap();
    assert!(card.is_management_key_authenticated());
    let challenge = card.management_challenge(alg).unwrap();
    assert!(matches!(
        card.management_challenge_response(alg, &challenge),
        Err(Error::WrongManagementKey)
    ));
    assert!(!card.is_management_key_authenticated());
}

#[test]
fn management_key_with_touch_needs_the_touch() {
    let mut card = card_with(ManagementKeyAlgorithm::Aes192, Arc::new(ApproveTouch));
    admin(&mut card);
    let new = ManagementKey::new(ManagementKeyAlgorithm::Aes128, &[9u8; 16]).unwrap();
    card.set_management_key(&new, true).unwrap();
    let meta = card.management_key_metadata();
    assert_eq!(meta.algorithm, ManagementKeyAlgorithm::Aes128);
    assert!(!meta.is_default);
    assert_eq!(meta.touch_policy, TouchPolicy::Always);
    card.authenticate_management_key(&new).unwrap();
    card.set_touch_source(Arc::new(DenyTouch));
    assert!(card.authenticate_management_key(&new).is_err());
    assert!(!card.is_management_key_authenticated());
}

#[test]
fn certificates_and_put_data_share_one_storage() {
    let mut card = card();
    let cert = vec![0x30, 0x03, 0x02, 0x01, 0x07];
    assert!(matches!(
        card.put_certificate(SlotId::Signature, &cert),
        Err(Error::ManagementKeyRequired)
    ));
    admin(&mut card);
    card.put_certificate(SlotId::Signature, &cert).unwrap();
    let raw = card.get_object(0x5f_c1_0a).unwrap();
    assert_eq!(
        raw,
        [&[0x70, 0x05][..], &cert, &[0x71, 0x01, 0x00, 0xfe, 0x00]].concat(),
        "stored as 70 cert 71 00 FE 00"
    );
    assert_eq!(certificate_from_object(&raw).unwrap(), cert);
    // PUT DATA of an object in the device's encoding is read back typed.
    let other = [
        &[0x70, 0x03][..],
        &[0x30, 0x01, 0x00],
        &[0x71, 0x01, 0x00, 0xfe, 0x00],
    ]
    .concat();
    card.put_object(0x5f_c1_05, &other).unwrap();
    assert_eq!(
        card.certificate(SlotId::Authentication).unwrap(),
        vec![0x30, 0x01, 0x00]
    );
    // Empty contents delete.
    card.put_object(0x5f_c1_05, &[]).unwrap();
    assert!(matches!(
        card.certificate(SlotId::Authentication),
        Err(Error::CertificateNotFound { .. })
    ));
    assert!(matches!(
        card.get_object(0x5f_c1_05),
        Err(Error::DataObjectNotFound { object: 0x5f_c1_05 })
    ));
    // Unknown ids and oversized objects.
    assert!(matches!(
        card.put_object(0x12_34_56, &[1]),
        Err(Error::InvalidDataObject { .. })
    ));
    assert!(matches!(
        card.get_object(0x5f_c2_00),
        Err(Error::InvalidDataObject { .. })
    ));
    assert!(matches!(
        card.put_object(object::CHUID, &vec![0u8; 3053]),
        Err(Error::TooLarge { .. })
    ));
    card.put_object(object::CHUID, &vec![0u8; 3052]).unwrap();
    // The discovery object is built in.
    let discovery = card.get_object(object::DISCOVERY).unwrap();
    assert_eq!(&discovery[..2], &[0x7e, 0x12]);
    // PRINTED needs the PIN.
    card.put_object(object::PRINTED, &[0x88, 0x01, 0x00])
        .unwrap();
    assert!(matches!(
        card.get_object(object::PRINTED),
        Err(Error::PinRequired { .. })
    ));
    card.verify_pin(&pin()).unwrap();
    assert_eq!(
        card.get_object(object::PRINTED).unwrap(),
        vec![0x88, 0x01, 0x00]
    );
}

#[test]
fn set_pin_retries_needs_both_and_resets_pin_and_puk() {
    let mut card = card();
    assert!(matches!(
        card.set_pin_retries(5, 4),
        Err(Error::ManagementKeyRequired)
    ));
    admin(&mut card);
    assert!(matches!(
        card.set_pin_retries(5, 4),
        Err(Error::PinRequired { .. })
    ));
    card.verify_pin(&pin()).unwrap();
    card.change_pin(&pin(), &Pin::parse_pin("7777777").unwrap())
        .unwrap();
    assert!(!card.pin_metadata().is_default);
    card.verify_pin(&Pin::parse_pin("7777777").unwrap())
        .unwrap();
    assert!(matches!(
        card.set_pin_retries(0, 4),
        Err(Error::BadCommandData { .. })
    ));
    card.set_pin_retries(5, 4).unwrap();
    let p = card.pin_metadata();
    assert!(p.is_default, "the PIN is back to the default");
    assert_eq!((p.total_retries, p.remaining_retries), (5, 5));
    let k = card.puk_metadata();
    assert_eq!((k.total_retries, k.remaining_retries), (4, 4));
    card.verify_pin(&pin()).unwrap();
}

#[test]
fn key_metadata_matches_the_public_key() {
    let mut card = card();
    let meta = generate(
        &mut card,
        SlotId::Retired(0x88),
        PinPolicy::Default,
        TouchPolicy::Default,
    );
    assert_eq!(
        meta.pin_policy,
        PinPolicy::Once,
        "retired slots default to once"
    );
    assert_eq!(meta.touch_policy, TouchPolicy::Never);
    assert_eq!(meta.origin, KeyOrigin::Generated);
    assert_eq!(meta.ec_point.len(), 65);
    assert_eq!(meta.ec_point[0], 0x04);
    assert!(meta.public_key.spki_der.ends_with(&meta.ec_point));
    assert_eq!(card.key_metadata(SlotId::Retired(0x88)).unwrap(), meta);
    // f9 holds the attestation key.
    assert!(card.key_metadata(SlotId::Attestation).is_ok());
}

#[test]
fn touch_is_reported_before_the_card_blocks() {
    // The button is pressed *inside* the event callback: this only works if
    // the card is already waiting (armed) when it reports, and has not yet
    // started to block.
    let button = TouchButton::new();
    let mut card = card_with(ManagementKeyAlgorithm::Aes192, Arc::new(button.clone()));
    card.set_touch_timing(TouchTiming {
        timeout: Duration::from_secs(5),
        cache: Duration::from_secs(15),
    });
    let meta = generate(
        &mut card,
        SlotId::Signature,
        PinPolicy::Never,
        TouchPolicy::Always,
    );
    let input = [7u8; 32];
    let mut pressed = false;
    let sig = card
        .sign(SlotId::Signature, &input, &mut |e| {
            let TokenEvent::TouchRequired { slot, timeout } = e;
            assert_eq!(slot, SlotId::Signature);
            assert_eq!(timeout, Duration::from_secs(5));
            pressed = button.press();
        })
        .unwrap();
    assert!(pressed, "the card was waiting when it reported");
    verify_prehash(&meta.public_key, &input, &sig).unwrap();
}

#[test]
fn reset_restores_the_factory_algorithm_and_keeps_f9() {
    let mut card = card_with(ManagementKeyAlgorithm::Tdes, Arc::new(ApproveTouch));
    generate(
        &mut card,
        SlotId::Signature,
        PinPolicy::Never,
        TouchPolicy::Never,
    );
    admin(&mut card);
    card.set_management_key(
        &ManagementKey::new(ManagementKeyAlgorithm::Aes256, &[3u8; 32]).unwrap(),
        false,
    )
    .unwrap();
    card.put_object(object::CHUID, &[0x30, 0x00]).unwrap();
    let f9_before = card.key_metadata(SlotId::Attestation).unwrap();
    let f9_cert = card.certificate(SlotId::Attestation).unwrap();
    let wrong = Pin::parse_pin("000000").unwrap();
    for _ in 0..3 {
        let _ = card.verify_pin(&wrong);
        let _ = card.unblock_pin(&wrong, &wrong);
    }
    card.reset().unwrap();
    let mk = card.management_key_metadata();
    assert_eq!(mk.algorithm, ManagementKeyAlgorithm::Tdes);
    assert!(mk.is_default);
    assert!(matches!(
        card.key_metadata(SlotId::Signature),
        Err(Error::KeyNotFound { .. })
    ));
    assert!(matches!(
        card.get_object(object::CHUID),
        Err(Error::DataObjectNotFound { .. })
    ));
    assert_eq!(card.key_metadata(SlotId::Attestation).unwrap(), f9_before);
    assert_eq!(card.certificate(SlotId::Attestation).unwrap(), f9_cert);
    assert!(!card.is_management_key_authenticated());
}

#[test]
fn generate_into_f9_is_refused_but_import_replaces_it() {
    let mut card = card();
    admin(&mut card);
    assert!(matches!(
        card.generate_key(
            SlotId::Attestation,
            Algorithm::EccP256,
            PinPolicy::Never,
            TouchPolicy::Never
        ),
        Err(Error::SlotNotAllowed { .. })
    ));
    let meta = card
        .import_key(
            SlotId::Attestation,
            Algorithm::EccP256,
            &[0x21u8; 32],
            PinPolicy::Never,
            TouchPolicy::Never,
        )
        .unwrap();
    assert_eq!(meta.origin, KeyOrigin::Imported);
    assert!(matches!(
        card.import_key(
            SlotId::Signature,
            Algorithm::EccP384,
            &[0x21u8; 32],
            PinPolicy::Never,
            TouchPolicy::Never
        ),
        Err(Error::BadCommandData { .. })
    ));
}

#[test]
fn new_key_types_refuse_what_they_cannot_do_at_the_card_level() {
    use signer_lib::emulator::card::RsaComponents;
    let mut card = card();
    admin(&mut card);
    for (slot, alg) in [
        (SlotId::Authentication, Algorithm::Ed25519),
        (SlotId::Signature, Algorithm::X25519),
        (SlotId::KeyManagement, Algorithm::Rsa1024),
    ] {
        card.generate_key(slot, alg, PinPolicy::Never, TouchPolicy::Never)
            .unwrap();
    }
    let refused = |r: signer_lib::Result<_>| match r {
        Err(Error::UnsupportedAlgorithm { .. }) => {}
        other => panic!("expected UnsupportedAlgorithm, got {other:?}"),
    };
    let bad_data = |r: signer_lib::Result<_>| match r {
        Err(Error::BadCommandData { .. }) => {}
        other => panic!("expected BadCommandData, got {other:?}"),
    };
    // X25519 cannot sign or decrypt; Ed25519 cannot agree keys or decrypt.
    refused(card.sign(SlotId::Signature, b"m", &mut |_| {}).map(|_| ()));
    refused(
        card.decrypt(SlotId::Signature, &[1; 128], &mut |_| {})
            .map(|_| ()),
    );
    refused(
        card.key_agreement(SlotId::Authentication, &[9; 32], &mut |_| {})
            .map(|_| ()),
    );
    refused(
        card.decrypt(SlotId::Authentication, &[1; 128], &mut |_| {})
            .map(|_| ()),
    );
    // RSA cannot agree keys; wrong lengths are bad data.
    refused(
        card.key_agreement(SlotId::KeyManagement, &[4; 65], &mut |_| {})
            .map(|_| ()),
    );
    bad_data(
        card.decrypt(SlotId::KeyManagement, &[1; 127], &mut |_| {})
            .map(|_| ()),
    );
    bad_data(
        card.sign(SlotId::KeyManagement, &[1; 129], &mut |_| {})
            .map(|_| ()),
    );
    bad_data(
        card.sign(SlotId::Authentication, b"", &mut |_| {})
            .map(|_| ()),
    );
    bad_data(
        card.key_agreement(SlotId::Signature, &[9; 33], &mut |_| {})
            .map(|_| ()),
    );
    // An empty slot, f9.
    assert!(matches!(
        card.decrypt(SlotId::CardAuthentication, &[1; 128], &mut |_| {}),
        Err(Error::KeyNotFound { .. })
    ));
    assert!(matches!(
        card.key_agreement(SlotId::Attestation, &[9; 32], &mut |_| {}),
        Err(Error::SlotNotAllowed { .. })
    ));
    // RSA keys do not come in through import_key; bogus parts are refused
    // and nothing is stored.
    bad_data(
        card.import_key(
            SlotId::CardAuthentication,
            Algorithm::Rsa2048,
            &[1; 32],
            PinPolicy::Never,
            TouchPolicy::Never,
        )
        .map(|_| ()),
    );
    let parts = RsaComponents {
        p: vec![0xfb; 64],
        q: vec![0xfd; 64],
        dp: vec![1; 64],
        dq: vec![1; 64],
        qinv: vec![1; 64],
    };
    assert!(!format!("{parts:?}").contains("fb"));
    bad_data(
        card.import_rsa_key(
            SlotId::CardAuthentication,
            Algorithm::Rsa1024,
            &parts,
            PinPolicy::Never,
            TouchPolicy::Never,
        )
        .map(|_| ()),
    );
    assert!(matches!(
        card.key_metadata(SlotId::CardAuthentication),
        Err(Error::KeyNotFound { .. })
    ));
}
