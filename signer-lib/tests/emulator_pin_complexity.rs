//! E7: an emulated YubiKey 5.7 made with PIN complexity on: the device info
//! says so (Management READ CONFIG tag 0x16), and CHANGE PIN, CHANGE PUK and
//! RESET RETRY COUNTER refuse a weak new value with 6985 after checking the
//! current one (no try spent, nothing changed). A card made without it
//! (the default) accepts the same values; older firmware cannot be made
//! with it; state files without the field load as before.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use signer_lib::emulator::{EmulatedSmartCard, EmulatedToken, InitOptions};
use signer_lib::transport::vpcd::VirtualCard;
use signer_lib::{Error, FirmwareVersion};

const SELECT_PIV: &[u8] = &[0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08];
const SELECT_MANAGEMENT: &[u8] = &[
    0x00, 0xa4, 0x04, 0x00, 0x08, 0xa0, 0x00, 0x00, 0x05, 0x27, 0x47, 0x11, 0x17,
];
const READ_CONFIG: &[u8] = &[0x00, 0x1d, 0x00, 0x00, 0x00];

fn padded(value: &str) -> Vec<u8> {
    let mut b = value.as_bytes().to_vec();
    b.resize(8, 0xff);
    b
}

fn two_blocks(ins: u8, p2: u8, first: &str, second: &str) -> Vec<u8> {
    let mut apdu = vec![0x00, ins, 0x00, p2, 0x10];
    apdu.extend(padded(first));
    apdu.extend(padded(second));
    apdu
}

fn change_pin(current: &str, new: &str) -> Vec<u8> {
    two_blocks(0x24, 0x80, current, new)
}

fn change_puk(current: &str, new: &str) -> Vec<u8> {
    two_blocks(0x24, 0x81, current, new)
}

fn unblock(puk: &str, new_pin: &str) -> Vec<u8> {
    two_blocks(0x2c, 0x80, puk, new_pin)
}

fn verify(pin: &str) -> Vec<u8> {
    let mut apdu = vec![0x00, 0x20, 0x00, 0x80, 0x08];
    apdu.extend(padded(pin));
    apdu
}

/// GET METADATA of the PIN (80) or PUK (81): tag 06 holds (max, remaining).
fn retries(card: &mut EmulatedSmartCard, reference: u8) -> (u8, u8) {
    let r = card.transmit(&[0x00, 0xf7, 0x00, reference, 0x00]).to_vec();
    assert_eq!(sw(&r), 0x9000, "metadata {reference:02x}: {r:02x?}");
    let i = r
        .windows(2)
        .position(|w| w == [0x06, 0x02])
        .expect("retries tag");
    (r[i + 2], r[i + 3])
}

fn sw(response: &[u8]) -> u16 {
    let n = response.len();
    u16::from_be_bytes([response[n - 2], response[n - 1]])
}

fn make(dir: &Path, name: &str, firmware: FirmwareVersion, pin_complexity: bool) -> EmulatedToken {
    EmulatedToken::init(
        dir.join(name),
        &InitOptions {
            serial: Some(12_345_678),
            firmware,
            pin_complexity,
            ..Default::default()
        },
    )
    .unwrap()
}

fn card(token: EmulatedToken) -> EmulatedSmartCard {
    let mut card = EmulatedSmartCard::new(token);
    card.power_on();
    assert_eq!(sw(&card.transmit(SELECT_PIV)), 0x9000);
    card
}

fn send(card: &mut EmulatedSmartCard, apdu: &[u8]) -> u16 {
    sw(&card.transmit(apdu))
}

const V574: FirmwareVersion = FirmwareVersion::new(5, 7, 4);

/// The device information TLVs (after the length byte) contain tag `tag`
/// with `value`, or (None) not at all.
fn device_info_tag(card: &mut EmulatedSmartCard, tag: u8) -> Option<Vec<u8>> {
    assert_eq!(send(card, SELECT_MANAGEMENT), 0x9000);
    let r = card.transmit(READ_CONFIG).to_vec();
    assert_eq!(sw(&r), 0x9000);
    let body = &r[1..r.len() - 2];
    assert_eq!(usize::from(r[0]), body.len());
    let mut i = 0;
    while i + 2 <= body.len() {
        let (t, l) = (body[i], usize::from(body[i + 1]));
        if t == tag {
            return Some(body[i + 2..i + 2 + l].to_vec());
        }
        i += 2 + l;
    }
    None
}

#[test]
fn device_info_reports_pin_complexity_only_when_made_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut on = card(make(dir.path(), "on", V574, true));
    assert_eq!(device_info_tag(&mut on, 0x16), Some(vec![1]));
    let mut off = card(make(dir.path(), "off", V574, false));
    assert_eq!(device_info_tag(&mut off, 0x16), None);
    // The rest of the device info is there in both (serial, tag 02).
    assert!(device_info_tag(&mut on, 0x02).is_some());
}

#[test]
fn change_pin_refuses_repeated_and_blocklisted_pins_with_6985() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = card(make(dir.path(), "t", V574, true));
    // Spend one try first, so that a refused change visibly restores the
    // counter only as any right PIN does, and spends nothing.
    assert_eq!(send(&mut c, &verify("000000")), 0x63c2);
    for weak in [
        "111111", "22222222", "333333", "4444444", "abc123", "password", "123123", "12345678",
    ] {
        assert_eq!(send(&mut c, &change_pin("123456", weak)), 0x6985, "{weak}");
        assert_eq!(retries(&mut c, 0x80), (3, 3), "{weak}");
        // Nothing changed: the old PIN still verifies, the weak one not.
        assert_eq!(send(&mut c, &verify("123456")), 0x9000);
    }
    assert_eq!(send(&mut c, &verify("111111")), 0x63c2);
    // A wrong current PIN is still a wrong PIN first (costs a try).
    assert_eq!(send(&mut c, &change_pin("654321", "111111")), 0x63c1);
    // A good value is accepted.
    assert_eq!(send(&mut c, &change_pin("123456", "123458")), 0x9000);
    assert_eq!(send(&mut c, &verify("123458")), 0x9000);
}

#[test]
fn change_puk_and_unblock_refuse_weak_values_with_6985() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = card(make(dir.path(), "t", V574, true));
    assert_eq!(send(&mut c, &change_puk("12345678", "88888888")), 0x6985);
    assert_eq!(send(&mut c, &change_puk("12345678", "password")), 0x6985);
    assert_eq!(retries(&mut c, 0x81), (3, 3));
    assert_eq!(send(&mut c, &change_puk("12345678", "12345670")), 0x9000);
    // RESET RETRY COUNTER: the PUK is right, the new PIN weak.
    assert_eq!(send(&mut c, &unblock("12345670", "999999")), 0x6985);
    assert_eq!(send(&mut c, &unblock("12345670", "abc123")), 0x6985);
    assert_eq!(retries(&mut c, 0x81), (3, 3));
    assert_eq!(send(&mut c, &verify("123456")), 0x9000);
    assert_eq!(send(&mut c, &unblock("12345670", "12341235")), 0x9000);
    assert_eq!(send(&mut c, &verify("12341235")), 0x9000);
}

#[test]
fn the_card_model_gives_a_typed_error_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let mut token = make(dir.path(), "t", V574, true);
    let err = token
        .with_card(|card| card.change_pin_block(&padded("123456"), &padded("111111")))
        .unwrap()
        .unwrap_err();
    match &err {
        Error::PinComplexity { what, rule } => {
            assert_eq!(*what, "PIN");
            assert!(rule.contains("repeated"), "{rule}");
        }
        other => panic!("expected PinComplexity, got {other:?}"),
    }
    assert!(!err.to_string().contains("111111"), "{err}");
}

#[test]
fn a_card_made_without_pin_complexity_accepts_the_same_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = card(make(dir.path(), "t", V574, false));
    assert_eq!(send(&mut c, &change_pin("123456", "111111")), 0x9000);
    assert_eq!(send(&mut c, &verify("111111")), 0x9000);
    assert_eq!(send(&mut c, &change_puk("12345678", "password")), 0x9000);
    assert_eq!(send(&mut c, &unblock("password", "123123")), 0x9000);
    assert_eq!(send(&mut c, &verify("123123")), 0x9000);
}

#[test]
fn firmware_before_5_7_cannot_be_made_with_pin_complexity() {
    let dir = tempfile::tempdir().unwrap();
    for fw in [
        FirmwareVersion::new(5, 6, 9),
        FirmwareVersion::new(5, 4, 3),
        FirmwareVersion::new(4, 3, 7),
    ] {
        let path = dir.path().join(format!("fw-{fw}"));
        let err = EmulatedToken::init(
            &path,
            &InitOptions {
                firmware: fw,
                pin_complexity: true,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::NotSupported { what } if what.contains("PIN complexity")),
            "{fw}: {err:?}"
        );
        assert!(!path.exists(), "{fw}: a refused init left a file");
    }
    // 5.7.0 is the first that can.
    make(dir.path(), "570", FirmwareVersion::new(5, 7, 0), true);
}

#[test]
fn the_option_survives_reopen_and_reset_and_files_without_it_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    drop(make(dir.path(), "on", V574, true));
    drop(make(dir.path(), "off", V574, false));
    let on_text = std::fs::read_to_string(dir.path().join("on")).unwrap();
    let off_text = std::fs::read_to_string(dir.path().join("off")).unwrap();
    assert!(on_text.contains("\"pin_complexity\":true"));
    // Off is not written: such a file is what builds before the option wrote.
    assert!(!off_text.contains("pin_complexity"));

    let mut c = card(
        EmulatedSmartCard::open(
            dir.path().join("on"),
            std::sync::Arc::new(signer_lib::emulator::ApproveTouch),
        )
        .unwrap()
        .into_token(),
    );
    assert_eq!(send(&mut c, &change_pin("123456", "111111")), 0x6985);
    // Block PIN and PUK, RESET: still enforced (a factory option).
    for _ in 0..3 {
        send(&mut c, &verify("000000"));
        send(&mut c, &change_puk("00000000", "00000001"));
    }
    assert_eq!(send(&mut c, &[0x00, 0xfb, 0x00, 0x00]), 0x9000);
    assert_eq!(send(&mut c, &change_pin("123456", "111111")), 0x6985);
    assert_eq!(device_info_tag(&mut c, 0x16), Some(vec![1]));

    let mut off = card(
        EmulatedSmartCard::open(
            dir.path().join("off"),
            std::sync::Arc::new(signer_lib::emulator::ApproveTouch),
        )
        .unwrap()
        .into_token(),
    );
    assert_eq!(send(&mut off, &change_pin("123456", "111111")), 0x9000);
}
