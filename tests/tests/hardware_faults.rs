//! Faults on the hardware path, through a real (private) pcscd and the vpcd
//! bridge serving the emulated YubiKey: each ends in a typed error for the
//! request in flight and a successful retry, never a hang and never a
//! wrong-PIN retry. Also: releasing the card never resets it.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::ffi::CString;
use std::time::{Duration, Instant};

use signer_e2e::hardware::{CARD_WAIT, EmulatedCardInReader, open_hardware, take_log};
use signer_e2e::pcsc_client::{establish, transmit};
use signer_e2e::pcsc_sandbox::VirtualReader;
use signer_e2e::sandboxed_test;
use signer_lib::emulator::{InitOptions, TouchButton};
use signer_lib::piv::ins;
use signer_lib::piv_client::{HardwareToken, TouchAssumptions};
use signer_lib::session::{PinSource, SigningSession};
use signer_lib::testing::TouchSetup;
use signer_lib::testing::verify::assert_signature;
use signer_lib::transport::is_connection_lost;
use signer_lib::{
    Algorithm, Error, HashAlgorithm, KeyInfo, ManagementKey, ManagementKeyAlgorithm, Pin,
    PinPolicy, SlotId, Token, TouchPolicy,
};

fn pin(text: &str) -> Pin {
    Pin::parse_pin(text).unwrap()
}

struct Setup {
    card: EmulatedCardInReader,
    session: SigningSession<HardwareToken>,
    key: KeyInfo,
    _dir: tempfile::TempDir,
}

fn setup(
    reader: &VirtualReader,
    touch: TouchSetup,
    pin_policy: PinPolicy,
    touch_policy: TouchPolicy,
    pin_source: PinSource,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let assumptions = TouchAssumptions {
        timeout: touch.timing.timeout,
        cache: touch.timing.cache,
    };
    let card =
        EmulatedCardInReader::insert_new(reader, dir.path(), &touch, &InitOptions::default())
            .unwrap();
    let mut token = open_hardware(assumptions).unwrap();
    token
        .authenticate(&ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap())
        .unwrap();
    let key = token
        .generate_key(
            SlotId::Signature,
            Algorithm::EccP256,
            pin_policy,
            touch_policy,
        )
        .unwrap();
    Setup {
        card,
        session: SigningSession::new(token, pin_source),
        key,
        _dir: dir,
    }
}

fn sign(s: &mut Setup, message: &[u8]) -> Result<Vec<u8>, Error> {
    sign_with_events(s, message, &mut |_| {})
}

fn sign_with_events(
    s: &mut Setup,
    message: &[u8],
    events: &mut dyn FnMut(signer_lib::TokenEvent),
) -> Result<Vec<u8>, Error> {
    let digest = HashAlgorithm::Sha256.digest(message);
    let result = s
        .session
        .sign(s.key.slot, HashAlgorithm::Sha256, &digest, events);
    if let Ok(sig) = &result {
        assert_signature(&s.key.public_key, HashAlgorithm::Sha256, message, sig);
    }
    result
}

fn count(log: &[u8], instruction: u8) -> usize {
    log.iter().filter(|&&i| i == instruction).count()
}

/// Another PC/SC client (a different context, as another process would be)
/// uses the card and releases it the way the `pcsc` crate's `Card` drop and
/// the `yubikey` crate do: with a reset.
fn other_client_uses_and_resets(reader: &str) {
    let ctx = establish(CARD_WAIT).unwrap();
    let name = CString::new(reader).unwrap();
    let card = ctx
        .connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
        .unwrap();
    let select = [0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08];
    let answer = transmit(&card, &select).unwrap();
    assert_eq!(&answer[answer.len() - 2..], &[0x90, 0x00]);
    card.disconnect(pcsc::Disposition::ResetCard)
        .map_err(|(_, e)| e)
        .unwrap();
}

sandboxed_test!(
    fn releasing_the_card_never_resets_it(sandbox) {
        let reader = sandbox.reader(0).clone();
        let mut s = setup(
            &reader,
            TouchSetup::approve(),
            PinPolicy::Once,
            TouchPolicy::Never,
            PinSource::Fixed(pin("123456")),
        );
        s.session.verify_pin().unwrap();
        sign(&mut s, b"verified").unwrap();
        // Drop the token (and its connection) and open a new one: the PIN
        // verification survived, so no VERIFY is needed.
        let Setup { card, session, key, _dir } = s;
        drop(session);
        take_log(&card.log);
        let token = open_hardware(TouchAssumptions::default()).unwrap();
        let mut s = Setup {
            card,
            session: SigningSession::new(token, PinSource::None),
            key,
            _dir,
        };
        sign(&mut s, b"after reopening, no PIN source")
            .expect("the card was not reset when the first token was dropped");
        assert_eq!(count(&take_log(&s.card.log), ins::VERIFY), 0);

        // The control: a client that lets the pcsc crate's Card drop does
        // reset the card, and the verification is gone.
        {
            let ctx = establish(CARD_WAIT).unwrap();
            let name = CString::new(reader.name.as_str()).unwrap();
            let card = ctx
                .connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
                .unwrap();
            drop(card);
        }
        let first = sign(&mut s, b"after an implicit drop elsewhere");
        assert!(
            matches!(first, Err(Error::CardReset)),
            "the dropped pcsc Card reset the card: {first:?}"
        );
        let second = sign(&mut s, b"again");
        assert!(
            matches!(second, Err(Error::PinRequired { .. })),
            "verification lost with the reset, and there is no PIN source: {second:?}"
        );
    }
);

sandboxed_test!(
    fn another_process_resets_the_card_typed_error_then_one_reverify(sandbox) {
        let reader = sandbox.reader(0).clone();
        let mut s = setup(
            &reader,
            TouchSetup::approve(),
            PinPolicy::Once,
            TouchPolicy::Never,
            PinSource::Fixed(pin("123456")),
        );
        sign(&mut s, b"first").unwrap();
        for round in 0..2 {
            other_client_uses_and_resets(&reader.name);
            take_log(&s.card.log);
            let started = Instant::now();
            let result = sign(&mut s, b"in flight");
            assert!(
                matches!(result, Err(Error::CardReset)),
                "round {round}: {result:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(10));
            sign(&mut s, b"retry").unwrap();
            let log = take_log(&s.card.log);
            assert_eq!(count(&log, ins::VERIFY), 1, "round {round}: one re-verify: {log:02X?}");
            assert_eq!(s.session.token().retry_counters().unwrap().pin, 3);
        }
    }
);

sandboxed_test!(
    fn the_bridge_crashes_mid_sign_then_comes_back(sandbox) {
        let reader = sandbox.reader(0).clone();
        let button = TouchButton::new();
        let mut s = setup(
            &reader,
            TouchSetup::button(&button, Duration::from_secs(2), Duration::from_secs(2)),
            PinPolicy::Never,
            TouchPolicy::Always,
            PinSource::None,
        );
        let control = s.card.bridge.as_ref().unwrap().control().clone();
        let started = Instant::now();
        let mut crasher = None;
        let result = sign_with_events(&mut s, b"in flight", &mut |_| {
            let control = control.clone();
            // The card is waiting for a touch when the bridge dies.
            crasher = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                control.abort();
            }));
        });
        crasher.unwrap().join().unwrap();
        match &result {
            Err(e) if is_connection_lost(e) => {}
            other => panic!("expected a lost-connection error, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no hang");
        s.card.crash().unwrap();
        s.card.wait(false).unwrap();
        let result = sign(&mut s, b"while out");
        assert!(
            matches!(result, Err(Error::TokenNotFound { .. } | Error::CardRemoved { .. })),
            "{result:?}"
        );
        s.card.insert().unwrap();
        let b = button.clone();
        let presser =
            std::thread::spawn(move || b.wait_until_waiting(Duration::from_secs(10)) && b.press());
        sign(&mut s, b"after the bridge came back").unwrap();
        assert!(presser.join().unwrap());
    }
);

sandboxed_test!(
    fn pcscd_restarts_typed_error_then_reconnect(sandbox) {
        let reader = sandbox.reader(0).clone();
        let mut s = setup(
            &reader,
            TouchSetup::approve(),
            PinPolicy::Once,
            TouchPolicy::Never,
            PinSource::Fixed(pin("123456")),
        );
        sign(&mut s, b"before").unwrap();
        sandbox.restart_pcscd().unwrap();
        let result = sign(&mut s, b"in flight");
        match &result {
            Err(e) if is_connection_lost(e) => {}
            other => panic!("expected a lost-connection error, got {other:?}"),
        }
        // The bridge reconnects to the new pcscd's vpcd by itself.
        s.card.wait(true).unwrap();
        take_log(&s.card.log);
        sign(&mut s, b"after the restart").unwrap();
        // pcscd powered the card up afresh: one re-verify, no more.
        assert_eq!(count(&take_log(&s.card.log), ins::VERIFY), 1);
    }
);

sandboxed_test!(
    fn a_card_held_exclusively_is_card_in_use_after_a_bounded_wait(sandbox) {
        let reader = sandbox.reader(0).clone();
        let mut s = setup(
            &reader,
            TouchSetup::approve(),
            PinPolicy::Never,
            TouchPolicy::Never,
            PinSource::None,
        );
        sign(&mut s, b"before").unwrap();
        // We let go; then another client (like gpg's scdaemon) takes the
        // card exclusively.
        s.session.token().disconnect();
        let ctx = establish(CARD_WAIT).unwrap();
        let name = CString::new(reader.name.as_str()).unwrap();
        let holder = ctx
            .connect(&name, pcsc::ShareMode::Exclusive, pcsc::Protocols::ANY)
            .unwrap();
        let started = Instant::now();
        let result = sign(&mut s, b"while held");
        let waited = started.elapsed();
        match &result {
            Err(Error::CardInUse { holder, fix }) => {
                assert!(holder.contains("scdaemon"), "{holder}");
                assert!(fix.contains("gpgconf --kill scdaemon"), "{fix}");
            }
            other => panic!("expected CardInUse, got {other:?}"),
        }
        assert!(
            waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
            "bounded wait, got {waited:?}"
        );
        holder
            .disconnect(pcsc::Disposition::LeaveCard)
            .map_err(|(_, e)| e)
            .unwrap();
        sign(&mut s, b"after release").unwrap();
    }
);

sandboxed_test!(
    fn a_wrong_pin_is_surfaced_with_retries_and_not_retried(sandbox) {
        let reader = sandbox.reader(0).clone();
        let dir = tempfile::tempdir().unwrap();
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, "999999\n").unwrap();
        let mut s = setup(
            &reader,
            TouchSetup::approve(),
            PinPolicy::Once,
            TouchPolicy::Never,
            PinSource::File(pin_file.clone()),
        );
        take_log(&s.card.log);
        let result = sign(&mut s, b"m");
        assert!(
            matches!(result, Err(Error::WrongPin { retries_left: 2 })),
            "{result:?}"
        );
        let result = sign(&mut s, b"m");
        assert!(
            matches!(result, Err(Error::PinRejectedEarlier { retries_left: 2, .. })),
            "{result:?}"
        );
        assert_eq!(count(&take_log(&s.card.log), ins::VERIFY), 1, "one VERIFY in all");
        assert_eq!(
            s.session.token().retry_counters().unwrap().pin,
            2,
            "the card's counter dropped exactly once"
        );
        std::fs::write(&pin_file, "123456\n").unwrap();
        sign(&mut s, b"fixed").unwrap();
        assert_eq!(s.session.token().retry_counters().unwrap().pin, 3);
    }
);

sandboxed_test!(
    fn another_process_yubico_piv_tool_uses_the_card_in_between(sandbox) {
        let reader = sandbox.reader(0).clone();
        let mut s = setup(
            &reader,
            TouchSetup::approve(),
            PinPolicy::Once,
            TouchPolicy::Never,
            PinSource::Fixed(pin("123456")),
        );
        sign(&mut s, b"first").unwrap();
        for round in 0..2 {
            let out = sandbox
                .command("yubico-piv-tool")
                .arg("--reader")
                .arg(&reader.name)
                .args(["-a", "status"])
                .output()
                .expect("yubico-piv-tool (package yubico-piv-tool) is needed");
            assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            take_log(&s.card.log);
            // yubico-piv-tool 2.2.0 resets the card when it exits
            // (SCARD_RESET_CARD): our request in flight sees the reset.
            let first = sign(&mut s, b"after the other process");
            assert!(matches!(first, Err(Error::CardReset)), "round {round}: {first:?}");
            assert!(take_log(&s.card.log).is_empty(), "nothing sent to a reset card");
            sign(&mut s, b"retry").unwrap();
            let log = take_log(&s.card.log);
            assert_eq!(count(&log, ins::VERIFY), 1, "one re-verify: {log:02X?}");
            assert_eq!(s.session.token().retry_counters().unwrap().pin, 3);
        }
    }
);
