//! The hardware backend (`HardwareToken`) over the in-process loopback
//! transport, talking APDUs to the emulated YubiKey's front end: the APDUs
//! each signature costs in steady state, and what happens after a card
//! reset, another applet selected, a removed card and a wrong PIN. The same
//! situations through a real pcscd are in `tests/tests/hardware_faults.rs`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use signer_lib::piv::{MANAGEMENT_AID, ins};
use signer_lib::piv_client::HardwareToken;
use signer_lib::session::{PinSource, SigningSession};
use signer_lib::testing::verify::assert_signature;
use signer_lib::testing::{LoopbackFixture, TokenFixture, TouchSetup};
use signer_lib::transport::loopback::SharedCard;
use signer_lib::{
    Algorithm, Error, HashAlgorithm, KeyInfo, Pin, PinPolicy, SlotId, Token, TokenEvent,
    TouchPolicy,
};

const SELECT: u8 = ins::SELECT;
const VERIFY: u8 = ins::VERIFY;
const SIGN: u8 = ins::GENERAL_AUTHENTICATE;

fn pin(text: &str) -> Pin {
    Pin::parse_pin(text).unwrap()
}

/// A fresh card with a P-256 key in 9c under the given policies, and a
/// signing session over the hardware token with PIN 123456.
fn setup(
    pin_policy: PinPolicy,
    touch_policy: TouchPolicy,
    pin_source: PinSource,
) -> (
    LoopbackFixture,
    SharedCard,
    SigningSession<HardwareToken>,
    KeyInfo,
) {
    let mut f = LoopbackFixture::new();
    let mut token = f.fresh(TouchSetup::approve()).unwrap();
    token.authenticate(&f.factory_management_key()).unwrap();
    let key = token
        .generate_key(
            SlotId::Signature,
            Algorithm::EccP256,
            pin_policy,
            touch_policy,
        )
        .unwrap();
    let card = f.card(&token);
    (f, card, SigningSession::new(token, pin_source), key)
}

fn sign(
    session: &mut SigningSession<HardwareToken>,
    key: &KeyInfo,
    message: &[u8],
) -> (Result<Vec<u8>, Error>, Vec<TokenEvent>) {
    let digest = HashAlgorithm::Sha256.digest(message);
    let mut events = Vec::new();
    let result = session.sign(key.slot, HashAlgorithm::Sha256, &digest, &mut |e| {
        events.push(e)
    });
    if let Ok(sig) = &result {
        assert_signature(&key.public_key, HashAlgorithm::Sha256, message, sig);
    }
    (result, events)
}

/// The instructions of one steady-state signature.
fn steady_state(pin_policy: PinPolicy, touch_policy: TouchPolicy) -> (Vec<u8>, usize) {
    let (_f, card, mut session, key) =
        setup(pin_policy, touch_policy, PinSource::Fixed(pin("123456")));
    for warm_up in 0..2 {
        sign(&mut session, &key, format!("warm-up {warm_up}").as_bytes())
            .0
            .unwrap();
    }
    let mut per_signature = None;
    for round in 0..3 {
        card.clear_log();
        let (result, events) = sign(&mut session, &key, format!("round {round}").as_bytes());
        result.unwrap();
        let log = card.instructions();
        if let Some(previous) = &per_signature {
            assert_eq!(
                &log, previous,
                "every steady-state signature costs the same"
            );
        }
        per_signature = Some(log);
        if touch_policy == TouchPolicy::Always {
            assert_eq!(events.len(), 1, "one TouchRequired per signature");
        } else {
            assert!(events.is_empty());
        }
    }
    let log = per_signature.unwrap();
    let n = log.len();
    (log, n)
}

#[test]
fn apdus_per_signature_in_steady_state() {
    let cases = [
        (PinPolicy::Never, TouchPolicy::Never, vec![SIGN]),
        (PinPolicy::Once, TouchPolicy::Never, vec![SIGN]),
        (
            PinPolicy::Always,
            TouchPolicy::Never,
            vec![SELECT, VERIFY, SIGN],
        ),
        (PinPolicy::Never, TouchPolicy::Always, vec![SIGN]),
        (PinPolicy::Once, TouchPolicy::Always, vec![SIGN]),
        (
            PinPolicy::Always,
            TouchPolicy::Always,
            vec![SELECT, VERIFY, SIGN],
        ),
    ];
    for (pin_policy, touch_policy, expected) in cases {
        let (log, count) = steady_state(pin_policy, touch_policy);
        eprintln!("PIN {pin_policy}, touch {touch_policy}: {count} APDUs {log:02X?}");
        assert_eq!(log, expected, "PIN {pin_policy}, touch {touch_policy}");
    }
}

#[test]
fn after_a_card_reset_one_typed_error_then_one_reverify() {
    let (_f, card, mut session, key) = setup(
        PinPolicy::Once,
        TouchPolicy::Never,
        PinSource::Fixed(pin("123456")),
    );
    sign(&mut session, &key, b"before").0.unwrap();
    // Another program resets the card (SCARD_RESET_CARD).
    card.reset();
    card.clear_log();
    let (result, _) = sign(&mut session, &key, b"in flight");
    assert!(matches!(result, Err(Error::CardReset)), "{result:?}");
    assert!(
        card.instructions().is_empty(),
        "nothing sent to a reset card"
    );
    assert!(!session.token().is_connected());
    let (result, _) = sign(&mut session, &key, b"after");
    result.unwrap();
    assert_eq!(
        card.instructions(),
        vec![
            SELECT,
            ins::GET_SERIAL,
            ins::GET_VERSION,  // reconnect: the same token?
            ins::GET_METADATA, // the slot's key, once per connection
            SIGN,              // 6982: verification lost with the reset
            SELECT,
            VERIFY, // once, with the PIN the card accepted last
            SIGN,
        ]
    );
    assert_eq!(session.token().retry_counters().unwrap().pin, 3);
}

#[test]
fn another_applet_selected_is_detected_and_the_pin_reverified_once() {
    let (_f, card, mut session, key) = setup(
        PinPolicy::Once,
        TouchPolicy::Never,
        PinSource::Fixed(pin("123456")),
    );
    sign(&mut session, &key, b"before").0.unwrap();
    // Another program selects the YubiKey Management applet, no reset.
    let mut select = vec![0x00, SELECT, 0x04, 0x00, MANAGEMENT_AID.len() as u8];
    select.extend_from_slice(&MANAGEMENT_AID);
    let answer = card.transmit_raw(&select);
    assert_eq!(&answer[answer.len() - 2..], &[0x90, 0x00]);
    card.clear_log();
    sign(&mut session, &key, b"after").0.unwrap();
    assert_eq!(
        card.instructions(),
        vec![SIGN, SELECT, SIGN, SELECT, VERIFY, SIGN],
        "GA answered by the other applet (6D00), SELECT PIV, GA (6982), SELECT + VERIFY, GA"
    );
}

#[test]
fn a_wrong_pin_is_reported_with_retries_and_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "654321\n").unwrap();
    let (_f, card, mut session, key) = setup(
        PinPolicy::Once,
        TouchPolicy::Never,
        PinSource::File(pin_file.clone()),
    );
    card.clear_log();
    let (result, _) = sign(&mut session, &key, b"m");
    assert!(
        matches!(result, Err(Error::WrongPin { retries_left: 2 })),
        "{result:?}"
    );
    let verifies = card.instructions().iter().filter(|&&i| i == VERIFY).count();
    assert_eq!(verifies, 1, "exactly one VERIFY");
    card.clear_log();
    let (result, _) = sign(&mut session, &key, b"m");
    assert!(
        matches!(
            result,
            Err(Error::PinRejectedEarlier {
                retries_left: 2,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        !card.instructions().contains(&VERIFY),
        "the rejected PIN is not sent again"
    );
    assert_eq!(session.token().retry_counters().unwrap().pin, 2);
    // The operator fixes the file: one VERIFY, and signing works.
    std::fs::write(&pin_file, "123456\n").unwrap();
    sign(&mut session, &key, b"m").0.unwrap();
    assert_eq!(session.token().retry_counters().unwrap().pin, 3);
}

#[test]
fn a_removed_card_is_a_typed_error_and_the_next_request_reconnects() {
    let (_f, card, mut session, key) = setup(PinPolicy::Never, TouchPolicy::Never, PinSource::None);
    sign(&mut session, &key, b"before").0.unwrap();
    card.set_present(false);
    let (result, _) = sign(&mut session, &key, b"gone");
    assert!(
        matches!(result, Err(Error::CardRemoved { .. })),
        "{result:?}"
    );
    let (result, _) = sign(&mut session, &key, b"still gone");
    assert!(
        matches!(result, Err(Error::CardRemoved { .. })),
        "{result:?}"
    );
    card.set_present(true);
    sign(&mut session, &key, b"back").0.unwrap();
}

#[test]
fn pin_policy_always_sends_select_verify_sign_in_one_transaction() {
    let (_f, card, mut session, key) = setup(
        PinPolicy::Always,
        TouchPolicy::Never,
        PinSource::Fixed(pin("123456")),
    );
    card.clear_log();
    sign(&mut session, &key, b"m").0.unwrap();
    let log = card.instructions();
    let verify = log.iter().position(|&i| i == VERIFY).unwrap();
    assert_eq!(
        log.get(verify + 1),
        Some(&SIGN),
        "nothing between VERIFY and GA: {log:02X?}"
    );
}

#[test]
fn touch_is_asked_for_only_when_the_card_will_wait_for_it() {
    // PIN `once`, touch `always`, PIN not verified yet: the card would
    // refuse at once (PIN first), so no "touch your YubiKey" before that.
    let (_f, card, mut session, key) = setup(
        PinPolicy::Once,
        TouchPolicy::Always,
        PinSource::Fixed(pin("123456")),
    );
    card.clear_log();
    let (result, events) = sign(&mut session, &key, b"first");
    result.unwrap();
    assert_eq!(
        events.len(),
        1,
        "one touch request, after the PIN: {events:?}"
    );
    assert_eq!(
        card.instructions(),
        vec![
            ins::GET_METADATA, // the session looks the key up once:
            ins::GET_DATA,     // metadata and certificate
            VERIFY,            // status only: not verified, so no GA and no touch request
            SELECT,
            VERIFY, // the PIN
            SIGN,   // the touch
        ]
    );
    // From now on the verification is known: one APDU per signature.
    card.clear_log();
    let (result, events) = sign(&mut session, &key, b"second");
    result.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(card.instructions(), vec![SIGN]);
}
