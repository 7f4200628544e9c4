//! The emulated YubiKey's APDU front end under any sequence of any bytes.
//!
//! Input: one options byte, then records `LEN_HI LEN_LO BYTES`: each record
//! is one command APDU (at most 5000 bytes), and the length `FFFF` (no
//! bytes) is a power cycle. Options: bit 0 management key 3DES (else
//! AES-192), bit 1 PIV selected first, bit 2 management key authenticated
//! first, bit 3 PIN verified first, so that short inputs reach the deep
//! states (key generation, PUT DATA, SET PIN RETRIES, RESET, ...); bits 4-5
//! the firmware generation (5.7.4, 5.4.3, 5.2.7, 4.3.7: the capability
//! table's refusals; before 5.4 the management key is 3DES whatever bit 0).
//!
//! Checked: nothing panics; every response is 2 to 65535 bytes; after the
//! sequence the card's state serializes, reads back, and validates, as the
//! state file must.

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use signer_lib::emulator::card::{CardState, FactorySettings};
use signer_lib::emulator::{ApduFrontEnd, ApproveTouch, Card, TouchTiming};
use signer_lib::model::FirmwareVersion;
use signer_lib::{ManagementKey, ManagementKeyAlgorithm, Pin};

const SELECT_PIV: [u8; 10] = [0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08];
const MAX_COMMAND: usize = 5000;
const POWER_CYCLE: usize = 0xffff;

/// The firmware generations options bits 4-5 choose.
const FIRMWARE: [FirmwareVersion; 4] = [
    FirmwareVersion::new(5, 7, 4),
    FirmwareVersion::new(5, 4, 3),
    FirmwareVersion::new(5, 2, 7),
    FirmwareVersion::new(4, 3, 7),
];

/// Manufacturing makes an attestation key and certificate: do it once per
/// algorithm and firmware, and clone the state for each run.
fn factory(alg: ManagementKeyAlgorithm, firmware: usize) -> CardState {
    static CARDS: [[OnceLock<CardState>; 2]; 4] = [const { [const { OnceLock::new() }; 2] }; 4];
    let cell = &CARDS[firmware][usize::from(alg != ManagementKeyAlgorithm::Tdes)];
    cell.get_or_init(|| {
        Card::manufacture(&FactorySettings {
            serial: 12_345_678,
            firmware: FIRMWARE[firmware],
            management_key_algorithm: alg,
        })
        .expect("manufacture")
    })
    .clone()
}

/// A GENERATE (47) whose data names RSA-3072 (05) or RSA-4096 (16) as
/// `80 01 alg` anywhere (chained or not).
fn is_slow_rsa_generate(command: &[u8]) -> bool {
    command.get(1) == Some(&0x47)
        && command
            .windows(3)
            .any(|w| w[0] == 0x80 && w[1] == 0x01 && (w[2] == 0x05 || w[2] == 0x16))
}

fn check_response(response: &[u8]) {
    assert!(
        (2..=65535).contains(&response.len()),
        "response of {} bytes",
        response.len()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&options, mut rest)) = data.split_first() else {
        return;
    };
    let firmware = usize::from((options >> 4) & 3);
    let alg = if options & 1 != 0 || FIRMWARE[firmware] < FirmwareVersion::new(5, 4, 0) {
        ManagementKeyAlgorithm::Tdes
    } else {
        ManagementKeyAlgorithm::Aes192
    };
    // Touches are granted at once and never cached for long, so that keys
    // with a touch policy sign without waiting.
    let timing = TouchTiming {
        timeout: std::time::Duration::from_millis(1),
        cache: std::time::Duration::from_millis(1),
    };
    let mut card = Card::new(factory(alg, firmware), Arc::new(ApproveTouch), timing);
    let mut front = ApduFrontEnd::new();
    if options & 2 != 0 {
        check_response(&front.process(&mut card, &SELECT_PIV));
    }
    if options & 4 != 0 {
        let key = ManagementKey::default_for(alg).expect("default key");
        card.authenticate_management_key(&key).expect("default key");
    }
    if options & 8 != 0 {
        let pin = Pin::new(Pin::DEFAULT_PIN, "PIN").expect("default PIN");
        card.verify_pin(&pin).expect("default PIN");
    }
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        if len == POWER_CYCLE {
            front.reset(&mut card);
            continue;
        }
        let len = len.min(MAX_COMMAND).min(rest.len());
        let (command, tail) = rest.split_at(len);
        rest = tail;
        if is_slow_rsa_generate(command) {
            // RSA-3072/4096 generation takes seconds per input: skip it so
            // the fuzzer's throughput goes to parsing and state.
            continue;
        }
        check_response(&front.process(&mut card, command));
    }
    // The state file stays loadable.
    let json = serde_json::to_vec(card.state()).expect("the state serializes");
    let back: CardState = serde_json::from_slice(&json).expect("the state reads back");
    back.validate().expect("the state is valid");
});
