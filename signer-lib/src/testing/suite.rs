//! The cases of the shared Token behaviour suite. Each takes a fixture,
//! asks it for fresh tokens, and panics on any deviation from how a YubiKey
//! 5 PIV applet behaves.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::emulator::touch::TouchButton;
use crate::error::{Error, Result};
use crate::model::{
    Algorithm, HashAlgorithm, KeyInfo, KeyOrigin, PinPolicy, PublicKey, SignInput, SignatureScheme,
    SlotId, TouchPolicy, key_id_of,
};
use crate::secret::{ManagementKey, ManagementKeyAlgorithm, Pin, Puk};
use crate::session::{PinSource, SigningSession};
use crate::testing::fixture::{TokenFixture, TouchSetup};
use crate::testing::verify::{assert_scheme_signature, assert_signature};
use crate::token::{ImportKey, RetryCounters, SignRequest, Token, TokenEvent};

/// Short touch timeout for the cases that expect no touch.
const SHORT_TIMEOUT: Duration = Duration::from_millis(300);
/// Generous timeout for cases where a touch does come (slow CI machines).
const LONG_TIMEOUT: Duration = Duration::from_secs(10);

// ----- Helpers ---------------------------------------------------------------

/// Unwrap a result with a message naming the step.
#[track_caller]
fn ok<T>(result: Result<T>, step: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{step}: unexpected error: {e} ({e:?})"),
    }
}

/// Assert that an expression fails with an error matching a pattern.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?, $step:expr) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            Err(e) => panic!("{}: expected {}, got error: {e} ({e:?})", $step, stringify!($pattern)),
            Ok(_) => panic!("{}: expected {}, got success", $step, stringify!($pattern)),
        }
    };
}

fn pin(text: &str) -> Pin {
    ok(Pin::parse_pin(text), "parse PIN")
}

fn puk(text: &str) -> Puk {
    ok(Pin::parse_puk(text), "parse PUK")
}

fn default_pin() -> Pin {
    pin("123456")
}

fn default_puk() -> Puk {
    puk("12345678")
}

fn fresh<F: TokenFixture>(f: &mut F) -> F::Token {
    ok(f.fresh(TouchSetup::approve()), "fresh token")
}

fn admin<F: TokenFixture>(f: &mut F, token: &mut F::Token) {
    let key = f.factory_management_key();
    ok(
        token.authenticate(&key),
        "authenticate with the factory management key",
    );
}

fn generate<F: TokenFixture>(
    f: &mut F,
    token: &mut F::Token,
    slot: SlotId,
    algorithm: Algorithm,
    pin_policy: PinPolicy,
    touch_policy: TouchPolicy,
) -> KeyInfo {
    admin(f, token);
    ok(
        token.generate_key(slot, algorithm, pin_policy, touch_policy),
        "generate a key",
    )
}

fn sign_with<T: Token>(
    token: &mut T,
    slot: SlotId,
    hash: HashAlgorithm,
    message: &[u8],
    pin: Option<&Pin>,
) -> Result<Vec<u8>> {
    let digest = hash.digest(message);
    token.sign(
        &SignRequest::ecdsa(slot, hash, &digest).with_pin(pin),
        &mut |_| {},
    )
}

/// Sign, recording every event with the time it arrived.
fn sign_recording<T: Token>(
    token: &mut T,
    slot: SlotId,
    message: &[u8],
    pin: Option<&Pin>,
    on_event: &mut dyn FnMut(TokenEvent),
) -> (Result<Vec<u8>>, Vec<TokenEvent>) {
    let digest = HashAlgorithm::Sha256.digest(message);
    let mut events = Vec::new();
    let result = token.sign(
        &SignRequest::ecdsa(slot, HashAlgorithm::Sha256, &digest).with_pin(pin),
        &mut |e| {
            events.push(e);
            on_event(e);
        },
    );
    (result, events)
}

fn counters<T: Token>(token: &mut T) -> RetryCounters {
    ok(token.retry_counters(), "read retry counters")
}

/// The PIN retry counter, `None` on firmware that cannot report it (no GET
/// METADATA before 5.3: the case then relies on the tries left that
/// [`Error::WrongPin`] reports).
fn pin_retries<T: Token>(token: &mut T) -> Option<u8> {
    match token.retry_counters() {
        Ok(c) => Some(c.pin),
        Err(Error::NotSupported { .. }) => None,
        Err(e) => panic!("read retry counters: {e}"),
    }
}

fn other_management_key(algorithm: ManagementKeyAlgorithm) -> ManagementKey {
    let bytes: Vec<u8> = (0..algorithm.key_len() as u8).map(|b| b ^ 0xa5).collect();
    ok(ManagementKey::new(algorithm, &bytes), "management key")
}

/// Press `button` once the token waits for a touch (from another thread).
fn press_when_waiting(button: &TouchButton) -> std::thread::JoinHandle<bool> {
    let button = button.clone();
    std::thread::spawn(move || button.wait_until_waiting(LONG_TIMEOUT) && button.press())
}

fn skip_without_touch_control<F: TokenFixture>(f: &F, case: &str) -> bool {
    if f.capabilities().touch_control {
        false
    } else {
        eprintln!("{case}: SKIPPED: this backend's fixture cannot control touches");
        true
    }
}

// ----- Cases -------------------------------------------------------------------

/// A fresh token: emulated or hardware info, full counters, no keys, the
/// default PIN works, an f9 certificate exists (through attestation later).
pub fn factory_state<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let info = ok(token.info(), "info");
    assert!(info.serial > 0, "serial must be set");
    assert!(info.firmware.major >= 4, "firmware {}", info.firmware);
    assert_eq!(
        counters(&mut token),
        RetryCounters { pin: 3, puk: 3 },
        "factory retry counters"
    );
    assert!(
        ok(token.list_keys(), "list keys").is_empty(),
        "a fresh token has no keys"
    );
    ok(token.verify_pin(&default_pin()), "default PIN");
    admin(f, &mut token);
}

fn sign_every_hash<F: TokenFixture>(f: &mut F, algorithm: Algorithm) {
    let mut token = fresh(f);
    let key = generate(
        f,
        &mut token,
        SlotId::Signature,
        algorithm,
        PinPolicy::Never,
        TouchPolicy::Never,
    );
    assert_eq!(key.algorithm(), algorithm);
    for hash in [
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha512,
    ] {
        for message in [&b""[..], b"hello", &[0xffu8; 1000][..]] {
            let sig = ok(
                sign_with(&mut token, SlotId::Signature, hash, message, None),
                "sign",
            );
            assert_signature(&key.public_key, hash, message, &sig);
        }
    }
    // Two signatures of one message both verify (randomized or deterministic).
    let a = ok(
        sign_with(
            &mut token,
            SlotId::Signature,
            HashAlgorithm::Sha256,
            b"m",
            None,
        ),
        "sign",
    );
    assert_signature(&key.public_key, HashAlgorithm::Sha256, b"m", &a);
}

/// P-256 signatures over SHA-256/384/512 digests verify independently.
pub fn sign_p256_every_hash<F: TokenFixture>(f: &mut F) {
    sign_every_hash(f, Algorithm::EccP256);
}

/// P-384 signatures over SHA-256/384/512 digests verify independently.
pub fn sign_p384_every_hash<F: TokenFixture>(f: &mut F) {
    sign_every_hash(f, Algorithm::EccP384);
}

/// `generate_key`, `key`, `public_key` and `list_keys` agree; the key id is
/// the SHA-256 of the SPKI; policies are reported resolved; origin generated.
pub fn generated_key_is_reported_consistently<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let k9a = generate(
        f,
        &mut token,
        SlotId::Authentication,
        Algorithm::EccP256,
        PinPolicy::Once,
        TouchPolicy::Never,
    );
    let k9c = generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::EccP384,
        PinPolicy::Default,
        TouchPolicy::Default,
    );
    let k82 = generate(
        f,
        &mut token,
        SlotId::Retired(0x82),
        Algorithm::EccP256,
        PinPolicy::Never,
        TouchPolicy::Cached,
    );
    assert_ne!(k9a.key_id, k9c.key_id);
    for k in [&k9a, &k9c, &k82] {
        assert_eq!(k.key_id, key_id_of(&k.public_key.spki_der));
        assert_eq!(k.key_id.len(), 64);
        assert_eq!(&ok(token.key(k.slot), "key"), k);
        assert_eq!(ok(token.public_key(k.slot), "public key"), k.public_key);
        assert_eq!(k.origin, Some(KeyOrigin::Generated));
    }
    // Defaults resolve to the slot's: 9c is PIN `always`, touch `never`.
    assert_eq!(k9c.pin_policy, PinPolicy::Always);
    assert_eq!(k9c.touch_policy, TouchPolicy::Never);
    assert_eq!(k82.touch_policy, TouchPolicy::Cached);
    let listed = ok(token.list_keys(), "list keys");
    assert_eq!(listed, vec![k9a.clone(), k9c.clone(), k82.clone()]);
    // Generating again replaces the key.
    let again = generate(
        f,
        &mut token,
        SlotId::Authentication,
        Algorithm::EccP256,
        PinPolicy::Once,
        TouchPolicy::Never,
    );
    assert_ne!(again.key_id, k9a.key_id, "a new key must be generated");
}

/// Wrong PINs decrement the counter; the third blocks it; then even the
/// right PIN is refused; a right PIN before that restores the counter.
pub fn wrong_pin_decrements_and_third_blocks<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    assert_err!(
        token.verify_pin(&pin("654321")),
        Error::WrongPin { retries_left: 2 },
        "first wrong PIN"
    );
    assert_eq!(counters(&mut token).pin, 2);
    ok(token.verify_pin(&default_pin()), "right PIN");
    assert_eq!(
        counters(&mut token).pin,
        3,
        "a right PIN restores the counter"
    );
    assert_err!(
        token.verify_pin(&pin("000000")),
        Error::WrongPin { retries_left: 2 },
        "wrong PIN 1"
    );
    assert_err!(
        token.verify_pin(&pin("000001")),
        Error::WrongPin { retries_left: 1 },
        "wrong PIN 2"
    );
    assert_err!(
        token.verify_pin(&pin("000002")),
        Error::WrongPin { retries_left: 0 },
        "wrong PIN 3"
    );
    assert_eq!(counters(&mut token), RetryCounters { pin: 0, puk: 3 });
    assert_err!(
        token.verify_pin(&default_pin()),
        Error::PinBlocked,
        "right PIN on a blocked card"
    );
    assert_err!(
        token.change_pin(&default_pin(), &pin("11112222")),
        Error::PinBlocked,
        "change PIN on a blocked card"
    );
    assert_eq!(counters(&mut token).pin, 0, "a blocked PIN stays at 0");
}

/// The PUK sets a new PIN (also when blocked); a wrong PUK costs a PUK try.
pub fn puk_unblocks_pin_and_wrong_puk_decrements<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    for _ in 0..3 {
        let _ = token.verify_pin(&pin("999999"));
    }
    assert_err!(
        token.verify_pin(&default_pin()),
        Error::PinBlocked,
        "blocked"
    );
    assert_err!(
        token.unblock_pin(&puk("87654321"), &pin("24682468")),
        Error::WrongPuk { retries_left: 2 },
        "wrong PUK"
    );
    assert_eq!(counters(&mut token), RetryCounters { pin: 0, puk: 2 });
    ok(
        token.unblock_pin(&default_puk(), &pin("24682468")),
        "unblock with the PUK",
    );
    assert_eq!(
        counters(&mut token),
        RetryCounters { pin: 3, puk: 3 },
        "unblock restores both counters"
    );
    assert_err!(
        token.verify_pin(&default_pin()),
        Error::WrongPin { retries_left: 2 },
        "the old PIN is gone"
    );
    ok(token.verify_pin(&pin("24682468")), "the new PIN");
}

/// Reset is refused unless PIN and PUK are both blocked; then it restores
/// the factory state and destroys the keys, keeping the attestation key.
pub fn reset_only_when_pin_and_puk_are_blocked<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let before = generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::EccP256,
        PinPolicy::Never,
        TouchPolicy::Never,
    );
    assert_err!(
        token.reset(),
        Error::ResetNotAllowed,
        "reset on a healthy card"
    );
    for _ in 0..3 {
        let _ = token.verify_pin(&pin("999999"));
    }
    assert_err!(
        token.reset(),
        Error::ResetNotAllowed,
        "reset with only the PIN blocked"
    );
    for attempt in 0..3u8 {
        assert_err!(
            token.unblock_pin(&puk("00000000"), &pin("11111111")),
            Error::WrongPuk { retries_left } if retries_left == 2 - attempt,
            "wrong PUK"
        );
    }
    assert_err!(
        token.unblock_pin(&default_puk(), &pin("11111111")),
        Error::PukBlocked,
        "blocked PUK"
    );
    assert_eq!(counters(&mut token), RetryCounters { pin: 0, puk: 0 });
    ok(token.reset(), "reset with PIN and PUK blocked");
    assert_eq!(counters(&mut token), RetryCounters { pin: 3, puk: 3 });
    assert!(
        ok(token.list_keys(), "list keys").is_empty(),
        "reset destroys the keys"
    );
    assert_err!(
        token.key(SlotId::Signature),
        Error::KeyNotFound { .. },
        "old key after reset"
    );
    ok(token.verify_pin(&default_pin()), "default PIN after reset");
    // Factory management key again, and the attestation key survived.
    let after = generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::EccP256,
        PinPolicy::Never,
        TouchPolicy::Never,
    );
    assert_ne!(before.key_id, after.key_id);
    ok(
        token.attest(SlotId::Signature),
        "attest after reset (f9 kept)",
    );
}

/// PIN and PUK can be changed; a wrong current value costs a try.
pub fn change_pin_and_puk<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    assert_err!(
        token.change_pin(&pin("000000"), &pin("13572468")),
        Error::WrongPin { retries_left: 2 },
        "change PIN with a wrong PIN"
    );
    ok(
        token.change_pin(&default_pin(), &pin("13572468")),
        "change PIN",
    );
    assert_eq!(counters(&mut token).pin, 3);
    assert_err!(
        token.verify_pin(&default_pin()),
        Error::WrongPin { .. },
        "old PIN"
    );
    ok(token.verify_pin(&pin("13572468")), "new PIN");
    assert_err!(
        token.change_puk(&puk("00000000"), &puk("87654321")),
        Error::WrongPuk { retries_left: 2 },
        "change PUK with a wrong PUK"
    );
    ok(
        token.change_puk(&default_puk(), &puk("87654321")),
        "change PUK",
    );
    assert_err!(
        token.unblock_pin(&default_puk(), &pin("123123")),
        Error::WrongPuk { .. },
        "old PUK"
    );
    ok(
        token.unblock_pin(&puk("87654321"), &pin("123123")),
        "new PUK",
    );
    ok(token.verify_pin(&pin("123123")), "PIN set with the PUK");
}

/// PIN policy `always`: every signature needs its own PIN.
pub fn pin_policy_always_needs_a_pin_for_every_signature<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let key = generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::EccP256,
        PinPolicy::Always,
        TouchPolicy::Never,
    );
    assert_eq!(key.pin_policy, PinPolicy::Always);
    let p = default_pin();
    assert_err!(
        sign_with(
            &mut token,
            SlotId::Signature,
            HashAlgorithm::Sha256,
            b"a",
            None
        ),
        Error::PinRequired {
            slot: SlotId::Signature
        },
        "sign without PIN"
    );
    for message in [&b"one"[..], b"two", b"three"] {
        let sig = ok(
            sign_with(
                &mut token,
                SlotId::Signature,
                HashAlgorithm::Sha256,
                message,
                Some(&p),
            ),
            "sign with PIN",
        );
        assert_signature(&key.public_key, HashAlgorithm::Sha256, message, &sig);
        assert_err!(
            sign_with(
                &mut token,
                SlotId::Signature,
                HashAlgorithm::Sha256,
                message,
                None
            ),
            Error::PinRequired { .. },
            "a second signature without a fresh PIN"
        );
    }
    // An earlier verification (policy `once` style) does not satisfy `always`.
    ok(token.verify_pin(&p), "verify");
    ok(token.info(), "another command");
    assert_err!(
        sign_with(
            &mut token,
            SlotId::Signature,
            HashAlgorithm::Sha256,
            b"x",
            None
        ),
        Error::PinRequired { .. },
        "sign after verify + another command"
    );
    // A wrong PIN in the request costs a try and signs nothing.
    assert_err!(
        sign_with(
            &mut token,
            SlotId::Signature,
            HashAlgorithm::Sha256,
            b"x",
            Some(&pin("000000"))
        ),
        Error::WrongPin { retries_left: 2 },
        "sign with a wrong PIN"
    );
    if let Some(pin) = pin_retries(&mut token) {
        assert_eq!(pin, 2);
    }
}

type Command<T> = fn(&mut T);

/// PIN policy `always`: any command between VERIFY and the signature voids
/// the verification.
pub fn pin_policy_always_is_voided_by_a_command_in_between<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    generate(
        f,
        &mut token,
        SlotId::Authentication,
        Algorithm::EccP384,
        PinPolicy::Always,
        TouchPolicy::Never,
    );
    let p = default_pin();
    let in_between: [(&str, Command<F::Token>); 4] = [
        ("retry counters", |t| {
            let _ = t.retry_counters();
        }),
        ("key lookup", |t| {
            let _ = t.key(SlotId::Authentication);
        }),
        ("list keys", |t| {
            let _ = t.list_keys();
        }),
        ("info", |t| {
            let _ = t.info();
        }),
    ];
    for (what, command) in in_between {
        ok(token.verify_pin(&p), "verify");
        command(&mut token);
        assert_err!(
            sign_with(
                &mut token,
                SlotId::Authentication,
                HashAlgorithm::Sha384,
                b"m",
                None
            ),
            Error::PinRequired { .. },
            format!("sign after VERIFY then {what}")
        );
    }
}

/// PIN policy `once`: one VERIFY serves every signature of the session; a
/// new session needs it again.
pub fn pin_policy_once_lasts_for_the_session<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let key = generate(
        f,
        &mut token,
        SlotId::KeyManagement,
        Algorithm::EccP256,
        PinPolicy::Once,
        TouchPolicy::Never,
    );
    assert_err!(
        sign_with(
            &mut token,
            SlotId::KeyManagement,
            HashAlgorithm::Sha256,
            b"m",
            None
        ),
        Error::PinRequired {
            slot: SlotId::KeyManagement
        },
        "sign before VERIFY"
    );
    ok(token.verify_pin(&default_pin()), "verify");
    for i in 0..5u8 {
        let message = [i; 10];
        let sig = ok(
            sign_with(
                &mut token,
                SlotId::KeyManagement,
                HashAlgorithm::Sha256,
                &message,
                None,
            ),
            "sign",
        );
        assert_signature(&key.public_key, HashAlgorithm::Sha256, &message, &sig);
        ok(
            token.list_keys(),
            "other commands keep a `once` verification",
        );
    }
    let mut token = ok(f.reopen(token), "reopen");
    assert_err!(
        sign_with(
            &mut token,
            SlotId::KeyManagement,
            HashAlgorithm::Sha256,
            b"m",
            None
        ),
        Error::PinRequired { .. },
        "a new session needs the PIN again"
    );
    // A wrong PIN clears the verification.
    ok(token.verify_pin(&default_pin()), "verify");
    assert_err!(
        token.verify_pin(&pin("000000")),
        Error::WrongPin { .. },
        "wrong PIN"
    );
    assert_err!(
        sign_with(
            &mut token,
            SlotId::KeyManagement,
            HashAlgorithm::Sha256,
            b"m",
            None
        ),
        Error::PinRequired { .. },
        "sign after a failed VERIFY"
    );
}

/// PIN policy `never`: no PIN at all.
pub fn pin_policy_never_signs_without_pin<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let key = generate(
        f,
        &mut token,
        SlotId::CardAuthentication,
        Algorithm::EccP256,
        PinPolicy::Default,
        TouchPolicy::Never,
    );
    assert_eq!(key.pin_policy, PinPolicy::Never, "9e defaults to never");
    let sig = ok(
        sign_with(
            &mut token,
            SlotId::CardAuthentication,
            HashAlgorithm::Sha256,
            b"m",
            None,
        ),
        "sign",
    );
    assert_signature(&key.public_key, HashAlgorithm::Sha256, b"m", &sig);
    let mut token = ok(f.reopen(token), "reopen");
    ok(
        sign_with(
            &mut token,
            SlotId::CardAuthentication,
            HashAlgorithm::Sha256,
            b"m",
            None,
        ),
        "sign in a new session",
    );
}

/// [`SigningSession`] verifies exactly when the policy needs it, and a PIN
/// the card rejected is never sent again.
pub fn signing_session_verifies_by_policy_and_never_retries<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let always = generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::EccP256,
        PinPolicy::Always,
        TouchPolicy::Never,
    );
    let once = generate(
        f,
        &mut token,
        SlotId::Authentication,
        Algorithm::EccP384,
        PinPolicy::Once,
        TouchPolicy::Never,
    );
    let token = ok(f.reopen(token), "reopen");
    let mut session = SigningSession::new(token, PinSource::Fixed(default_pin()));
    for i in 0..3u8 {
        let message = [i; 3];
        for (key, hash) in [
            (&always, HashAlgorithm::Sha256),
            (&once, HashAlgorithm::Sha384),
        ] {
            let digest = hash.digest(&message);
            let sig = ok(
                session.sign(key.slot, hash, &digest, &mut |_| {}),
                "session sign",
            );
            assert_signature(&key.public_key, hash, &message, &sig);
        }
    }
    let token = session.into_token();
    let mut session = SigningSession::new(token, PinSource::Fixed(pin("000000")));
    let digest = HashAlgorithm::Sha256.digest(b"m");
    assert_err!(
        session.sign(
            SlotId::Signature,
            HashAlgorithm::Sha256,
            &digest,
            &mut |_| {}
        ),
        Error::WrongPin { retries_left: 2 },
        "session with a wrong PIN"
    );
    for _ in 0..3 {
        assert_err!(
            session.sign(
                SlotId::Signature,
                HashAlgorithm::Sha256,
                &digest,
                &mut |_| {}
            ),
            Error::PinRejectedEarlier {
                retries_left: 2,
                ..
            },
            "the rejected PIN is not sent again"
        );
    }
    if let Some(pin) = pin_retries(session.token()) {
        assert_eq!(pin, 2, "only one try was spent");
    }
}

/// Touch `always` with a touch that comes after the event: the event
/// arrives first, the signature verifies; the next one needs a new touch.
pub fn touch_approved_after_the_event<F: TokenFixture>(f: &mut F) {
    if skip_without_touch_control(f, "touch_approved_after_the_event") {
        return;
    }
    let button = TouchButton::new();
    let mut token = ok(
        f.fresh(TouchSetup::button(
            &button,
            LONG_TIMEOUT,
            Duration::from_secs(15),
        )),
        "fresh token",
    );
    let key = generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::EccP256,
        PinPolicy::Never,
        TouchPolicy::Always,
    );
    assert_eq!(key.touch_policy, TouchPolicy::Always);
    for round in 0..2 {
        let presser: Arc<Mutex<Option<std::thread::JoinHandle<bool>>>> = Arc::default();
        let p = presser.clone();
        let b = button.clone();
        let (result, events) =
            sign_recording(&mut token, SlotId::Signature, b"t", None, &mut |e| {
                let TokenEvent::TouchRequired { slot, timeout } = e;
                assert_eq!(slot, SlotId::Signature);
                assert!(timeout > Duration::ZERO);
                // Only now does anybody touch the token.
                if let Ok(mut guard) = p.lock() {
                    *guard = Some(press_when_waiting(&b));
                }
            });
        let sig = ok(result, "sign with a touch");
        assert_signature(&key.public_key, HashAlgorithm::Sha256, b"t", &sig);
        assert_eq!(
            events.len(),
            1,
            "round {round}: exactly one TouchRequired event"
        );
        let handle = presser.lock().ok().and_then(|mut g| g.take());
        let pressed = handle.map(|h| h.join().unwrap_or(false)).unwrap_or(false);
        assert!(pressed, "round {round}: the press counted");
    }
}

/// Touch refused: the event fires, then the signature fails.
pub fn touch_denied<F: TokenFixture>(f: &mut F) {
    if skip_without_touch_control(f, "touch_denied") {
        return;
    }
    let mut setup = TouchSetup::deny();
    setup.timing.timeout = SHORT_TIMEOUT;
    let mut token = ok(f.fresh(setup), "fresh token");
    generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::EccP256,
        PinPolicy::Never,
        TouchPolicy::Always,
    );
    let distinct = f.capabilities().touch_denied_is_distinct;
    let (result, events) = sign_recording(&mut token, SlotId::Signature, b"m", None, &mut |_| {});
    match result {
        Err(Error::TouchDenied { slot }) => assert_eq!(slot, SlotId::Signature),
        Err(Error::TouchTimeout { .. }) if !distinct => {}
        Err(e) => panic!("expected TouchDenied, got {e} ({e:?})"),
        Ok(_) => panic!("a denied touch produced a signature"),
    }
    assert!(
        matches!(events.as_slice(), [TokenEvent::TouchRequired { .. }]),
        "TouchRequired must be reported before the token blocks: {events:?}"
    );
    // Keys without touch policy are unaffected.
    generate(
        f,
        &mut token,
        SlotId::Authentication,
        Algorithm::EccP256,
        PinPolicy::Never,
        TouchPolicy::Never,
    );
    ok(
        sign_with(
            &mut token,
            SlotId::Authentication,
            HashAlgorithm::Sha256,
            b"m",
            None,
        ),
        "sign without touch policy",
    );
}

/// Nobody touches: TouchTimeout after about the timeout.
pub fn touch_timeout<F: TokenFixture>(f: &mut F) {
    if skip_without_touch_control(f, "touch_timeout") {
        return;
    }
    let button = TouchButton::new();
    let mut token = ok(
        f.fresh(TouchSetup::button(&button, SHORT_TIMEOUT, SHORT_TIMEOUT)),
        "fresh token",
    );
    generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::EccP384,
        PinPolicy::Never,
        TouchPolicy::Always,
    );
    // A press before the token waits does not count.
    assert!(!button.press(), "a press while not waiting must not count");
    let started = Instant::now();
    let (result, events) = sign_recording(&mut token, SlotId::Signature, b"m", None, &mut |_| {});
    let elapsed = started.elapsed();
    assert_err!(result, Error::TouchTimeout { .. }, "sign without a touch");
    assert!(
        elapsed >= SHORT_TIMEOUT,
        "gave up after {elapsed:?}, before the {SHORT_TIMEOUT:?} timeout"
    );
    assert!(
        matches!(events.as_slice(), [TokenEvent::TouchRequired { .. }]),
        "TouchRequired must be reported before the token blocks: {events:?}"
    );
}

/// Touch `cached`: one touch serves signatures for the cache window, with no
/// event; after it a touch is needed again.
pub fn touch_cached_within_the_window_then_expires<F: TokenFixture>(f: &mut F) {
    if skip_without_touch_control(f, "touch_cached_within_the_window_then_expires") {
        return;
    }
    let cache = Duration::from_millis(1500);
    let button = TouchButton::new();
    let mut token = ok(
        f.fresh(TouchSetup::button(&button, LONG_TIMEOUT, cache)),
        "fresh token",
    );
    let key = generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::EccP256,
        PinPolicy::Never,
        TouchPolicy::Cached,
    );
    let presser = press_when_waiting(&button);
    let (result, events) = sign_recording(&mut token, SlotId::Signature, b"1", None, &mut |_| {});
    let touched_at = Instant::now();
    ok(result, "first signature with a touch");
    assert!(presser.join().unwrap_or(false), "the press counted");
    assert_eq!(events.len(), 1);
    let waits = button.times_waited();
    let (result, events) = sign_recording(&mut token, SlotId::Signature, b"2", None, &mut |_| {});
    let sig = ok(result, "second signature within the cache window");
    assert!(
        touched_at.elapsed() < cache,
        "test machine too slow to check the cache window"
    );
    assert_signature(&key.public_key, HashAlgorithm::Sha256, b"2", &sig);
    assert!(
        events.is_empty(),
        "no touch needed within the window: {events:?}"
    );
    assert_eq!(button.times_waited(), waits, "the token did not wait");
    std::thread::sleep(cache + Duration::from_millis(200));
    let presser = press_when_waiting(&button);
    let (result, events) = sign_recording(&mut token, SlotId::Signature, b"3", None, &mut |_| {});
    ok(result, "signature after the window, with a new touch");
    assert!(presser.join().unwrap_or(false), "a new touch was needed");
    assert_eq!(
        events.len(),
        1,
        "a touch is required again after the window"
    );
}

/// Attestation: slot certificate → f9 certificate → the fixture's root
/// verifies, and the extensions say the token's serial, firmware and the
/// key's policies. Both curves.
pub fn attestation_chain_verifies_and_decodes<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let roots = ok(f.attestation_roots(&mut token), "attestation roots");
    assert!(!roots.is_empty(), "the fixture must name a root");
    let info = ok(token.info(), "info");
    for (slot, algorithm, pin_policy, touch_policy) in [
        (
            SlotId::Signature,
            Algorithm::EccP256,
            PinPolicy::Always,
            TouchPolicy::Always,
        ),
        (
            SlotId::Authentication,
            Algorithm::EccP384,
            PinPolicy::Once,
            TouchPolicy::Cached,
        ),
        (
            SlotId::Retired(0x95),
            Algorithm::EccP256,
            PinPolicy::Never,
            TouchPolicy::Never,
        ),
    ] {
        let key = generate(f, &mut token, slot, algorithm, pin_policy, touch_policy);
        let attestation = ok(token.attest(slot), "attest");
        super::attestation_check::check(&attestation, &roots, &key, &info);
    }
}

/// An imported key signs (verifiably, with the known private key's public
/// half) but cannot be attested.
pub fn imported_key_signs_but_cannot_be_attested<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let secret = p256::ecdsa::SigningKey::from_slice(&[0x42u8; 32])
        .unwrap_or_else(|e| panic!("test key: {e}"));
    let expected_spki = {
        use p256::pkcs8::EncodePublicKey;
        secret
            .verifying_key()
            .to_public_key_der()
            .unwrap_or_else(|e| panic!("spki: {e}"))
            .as_bytes()
            .to_vec()
    };
    admin(f, &mut token);
    let key = ok(
        token.import_key(
            SlotId::Retired(0x83),
            &ImportKey::ec(Algorithm::EccP256, &secret.to_bytes()),
            PinPolicy::Never,
            TouchPolicy::Never,
        ),
        "import",
    );
    assert_eq!(key.public_key.spki_der, expected_spki);
    assert_eq!(key.origin, Some(KeyOrigin::Imported));
    let sig = ok(
        sign_with(
            &mut token,
            SlotId::Retired(0x83),
            HashAlgorithm::Sha256,
            b"imp",
            None,
        ),
        "sign with the imported key",
    );
    assert_signature(&key.public_key, HashAlgorithm::Sha256, b"imp", &sig);
    assert_err!(
        token.attest(SlotId::Retired(0x83)),
        Error::NotAttestable {
            slot: SlotId::Retired(0x83)
        },
        "attest an imported key"
    );
    // An invalid scalar is refused.
    admin(f, &mut token);
    assert!(
        token
            .import_key(
                SlotId::Retired(0x84),
                &ImportKey::ec(Algorithm::EccP256, &[0u8; 32]),
                PinPolicy::Never,
                TouchPolicy::Never,
            )
            .is_err(),
        "a zero scalar must be refused"
    );
}

/// Digests whose length does not match their hash are refused before any
/// PIN reaches the card.
pub fn bad_digest_lengths_are_rejected_before_the_pin<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::EccP256,
        PinPolicy::Always,
        TouchPolicy::Never,
    );
    let wrong = pin("000000");
    for (hash, len) in [
        (HashAlgorithm::Sha256, 0usize),
        (HashAlgorithm::Sha256, 31),
        (HashAlgorithm::Sha256, 33),
        (HashAlgorithm::Sha256, 64),
        (HashAlgorithm::Sha384, 32),
        (HashAlgorithm::Sha512, 48),
    ] {
        let digest = vec![0x11u8; len];
        let result = token.sign(
            &SignRequest::ecdsa(SlotId::Signature, hash, &digest).with_pin(Some(&wrong)),
            &mut |_| {},
        );
        assert_err!(
            result,
            Error::BadDigestLength { expected, actual, .. }
                if expected == hash.digest_len() && actual == len,
            format!("{hash} digest of {len} bytes")
        );
    }
    assert_eq!(
        counters(&mut token).pin,
        3,
        "no PIN try may be spent on a malformed request"
    );
}

/// Empty slots: KeyNotFound everywhere.
pub fn empty_slots_are_reported<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    for slot in [
        SlotId::Authentication,
        SlotId::Signature,
        SlotId::Retired(0x90),
    ] {
        assert_err!(token.key(slot), Error::KeyNotFound { .. }, "key");
        assert_err!(
            token.public_key(slot),
            Error::KeyNotFound { .. },
            "public key"
        );
        assert_err!(
            sign_with(&mut token, slot, HashAlgorithm::Sha256, b"m", None),
            Error::KeyNotFound { .. },
            "sign"
        );
        assert_err!(token.attest(slot), Error::KeyNotFound { .. }, "attest");
    }
}

/// Slots that do not exist or cannot be used.
pub fn invalid_slots_are_rejected<F: TokenFixture>(f: &mut F) {
    for text in ["9b", "f8", "80", "81", "96", "slot9c", ""] {
        assert!(
            matches!(text.parse::<SlotId>(), Err(Error::InvalidSlot { .. })),
            "{text:?} must not parse as a slot"
        );
    }
    let mut token = fresh(f);
    admin(f, &mut token);
    assert_err!(
        token.generate_key(
            SlotId::Attestation,
            Algorithm::EccP256,
            PinPolicy::Never,
            TouchPolicy::Never
        ),
        Error::SlotNotAllowed { .. } | Error::InvalidSlot { .. },
        "generate into f9"
    );
    assert_err!(
        sign_with(
            &mut token,
            SlotId::Attestation,
            HashAlgorithm::Sha256,
            b"m",
            None
        ),
        Error::SlotNotAllowed { .. } | Error::InvalidSlot { .. },
        "sign with the attestation key"
    );
    assert_err!(
        token.attest(SlotId::Attestation),
        Error::SlotNotAllowed { .. } | Error::InvalidSlot { .. },
        "attest f9"
    );
}

/// Whether the token's firmware has `algorithm` (Yubico: Ed25519, X25519,
/// RSA-3072 and RSA-4096 from 5.7; RSA-1024/2048, P-256 and P-384 on every
/// YubiKey 4 and 5).
fn firmware_has<T: Token>(token: &mut T, algorithm: Algorithm) -> bool {
    let firmware = ok(token.info(), "info").firmware;
    match algorithm {
        Algorithm::Ed25519 | Algorithm::X25519 | Algorithm::Rsa3072 | Algorithm::Rsa4096 => {
            firmware >= crate::FirmwareVersion::new(5, 7, 0)
        }
        _ => true,
    }
}

/// Check that the token's firmware refuses to generate `algorithm` with a
/// typed error and creates nothing; returns false (the caller stops) when
/// it does, true when the firmware has the algorithm.
fn algorithm_available_or_refused<F: TokenFixture>(
    f: &mut F,
    token: &mut F::Token,
    algorithm: Algorithm,
) -> bool {
    if firmware_has(token, algorithm) {
        return true;
    }
    admin(f, token);
    assert_err!(
        token.generate_key(
            SlotId::Retired(0x95),
            algorithm,
            PinPolicy::Never,
            TouchPolicy::Never
        ),
        Error::UnsupportedAlgorithm { .. } | Error::NotSupported { .. },
        format!("generate {algorithm} on firmware before 5.7")
    );
    assert_err!(
        token.key(SlotId::Retired(0x95)),
        Error::KeyNotFound { .. },
        "nothing was created"
    );
    eprintln!("{algorithm}: refused by this firmware, as on the device (checked)");
    false
}

/// Names and ids that are no PIV key type are refused; on firmware before
/// 5.7, the key types it lacks (Ed25519, X25519, RSA-3072/4096) are refused
/// with a typed error for generation and import, and nothing is created.
pub fn unsupported_algorithms_are_rejected<F: TokenFixture>(f: &mut F) {
    assert!(matches!(
        "ed448".parse::<Algorithm>(),
        Err(Error::UnsupportedAlgorithm { .. })
    ));
    assert!(matches!(
        Algorithm::from_id(0x99),
        Err(Error::UnsupportedAlgorithm { .. })
    ));
    assert!(matches!(
        "rsa-oaep".parse::<SignatureScheme>(),
        Err(Error::UnsupportedScheme { .. })
    ));
    let mut token = fresh(f);
    for algorithm in [
        Algorithm::Ed25519,
        Algorithm::X25519,
        Algorithm::Rsa3072,
        Algorithm::Rsa4096,
    ] {
        if algorithm_available_or_refused(f, &mut token, algorithm) {
            continue;
        }
        if algorithm == Algorithm::Ed25519 {
            admin(f, &mut token);
            assert_err!(
                token.import_key(
                    SlotId::Signature,
                    &ImportKey::ed25519(&[1u8; 32]),
                    PinPolicy::Never,
                    TouchPolicy::Never,
                ),
                Error::UnsupportedAlgorithm { .. } | Error::NotSupported { .. },
                "import ed25519 on firmware before 5.7"
            );
        }
    }
    assert!(
        ok(token.list_keys(), "list").is_empty(),
        "nothing was created"
    );
}

/// Admin operations need the management key; a wrong key (or a wrong
/// algorithm) does not authenticate and leaves the session unauthenticated.
pub fn management_key_required_and_wrong<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    assert_err!(
        token.generate_key(
            SlotId::Signature,
            Algorithm::EccP256,
            PinPolicy::Never,
            TouchPolicy::Never
        ),
        Error::ManagementKeyRequired,
        "generate without the management key"
    );
    assert_err!(
        token.put_certificate(SlotId::Signature, &fake_certificate()),
        Error::ManagementKeyRequired,
        "put certificate without the management key"
    );
    assert_err!(
        token.set_management_key(&other_management_key(ManagementKeyAlgorithm::Aes192), false),
        Error::ManagementKeyRequired,
        "set management key without the management key"
    );
    let factory = f.factory_management_key();
    let wrong = other_management_key(factory.algorithm());
    assert_err!(
        token.authenticate(&wrong),
        Error::WrongManagementKey,
        "wrong management key"
    );
    let other_algorithm = if factory.algorithm() == ManagementKeyAlgorithm::Tdes {
        ManagementKeyAlgorithm::Aes192
    } else {
        ManagementKeyAlgorithm::Tdes
    };
    let wrong_alg = ok(
        ManagementKey::new(other_algorithm, &ManagementKey::DEFAULT_BYTES),
        "key",
    );
    assert_err!(
        token.authenticate(&wrong_alg),
        Error::WrongManagementKey,
        "factory key bytes with the wrong algorithm"
    );
    assert_err!(
        token.generate_key(
            SlotId::Signature,
            Algorithm::EccP256,
            PinPolicy::Never,
            TouchPolicy::Never
        ),
        Error::ManagementKeyRequired,
        "a failed authentication authenticates nothing"
    );
    // Authenticated, then a failed attempt drops the authentication.
    ok(token.authenticate(&factory), "factory key");
    assert_err!(
        token.authenticate(&wrong),
        Error::WrongManagementKey,
        "wrong"
    );
    assert_err!(
        token.generate_key(
            SlotId::Signature,
            Algorithm::EccP256,
            PinPolicy::Never,
            TouchPolicy::Never
        ),
        Error::ManagementKeyRequired,
        "a failed authentication drops an earlier one"
    );
    // The management key authentication does not survive a new session.
    ok(token.authenticate(&factory), "factory key");
    let mut token = ok(f.reopen(token), "reopen");
    assert_err!(
        token.generate_key(
            SlotId::Signature,
            Algorithm::EccP256,
            PinPolicy::Never,
            TouchPolicy::Never
        ),
        Error::ManagementKeyRequired,
        "new session"
    );
}

/// A new management key (also of another algorithm) replaces the old one
/// and persists.
pub fn set_management_key_takes_effect<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let mut current = f.factory_management_key();
    for algorithm in [ManagementKeyAlgorithm::Aes256, ManagementKeyAlgorithm::Tdes] {
        let new = other_management_key(algorithm);
        ok(
            token.authenticate(&current),
            "authenticate with the current key",
        );
        ok(token.set_management_key(&new, false), "set management key");
        let mut reopened = ok(f.reopen(token), "reopen");
        assert_err!(
            reopened.authenticate(&current),
            Error::WrongManagementKey,
            "the previous key no longer works"
        );
        ok(
            reopened.authenticate(&new),
            "the new key works after reopen",
        );
        ok(
            reopened.generate_key(
                SlotId::Authentication,
                Algorithm::EccP256,
                PinPolicy::Never,
                TouchPolicy::Never,
            ),
            "admin operation with the new key",
        );
        token = reopened;
        current = new;
    }
}

/// A DER structure to store as a certificate (the token stores certificate
/// objects opaquely).
fn fake_certificate() -> Vec<u8> {
    let mut v = vec![0x30, 0x82, 0x01, 0x00];
    v.extend((0..256u32).map(|i| (i % 251) as u8));
    v
}

/// A certificate stored in a slot is reported with the key.
pub fn certificate_round_trips<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::EccP256,
        PinPolicy::Never,
        TouchPolicy::Never,
    );
    assert_eq!(ok(token.key(SlotId::Signature), "key").certificate, None);
    // Use the token's own device certificate: a real certificate.
    let cert = ok(token.attest(SlotId::Signature), "attest").device_certificate;
    admin(f, &mut token);
    ok(
        token.put_certificate(SlotId::Signature, &cert),
        "put certificate",
    );
    assert_eq!(
        ok(token.key(SlotId::Signature), "key")
            .certificate
            .as_deref(),
        Some(cert.as_slice())
    );
    let mut token = ok(f.reopen(token), "reopen");
    assert_eq!(
        ok(token.key(SlotId::Signature), "key")
            .certificate
            .as_deref(),
        Some(cert.as_slice()),
        "the certificate persists"
    );
    admin(f, &mut token);
    let too_big = vec![0x30u8; 4000];
    assert_err!(
        token.put_certificate(SlotId::Signature, &too_big),
        Error::TooLarge { .. },
        "oversized certificate"
    );
}

/// Keys, policies, certificates, PIN changes, counters and the management
/// key survive closing and reopening the token.
pub fn state_round_trips_across_reopen<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let a = generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::EccP256,
        PinPolicy::Once,
        TouchPolicy::Cached,
    );
    let b = generate(
        f,
        &mut token,
        SlotId::Retired(0x8a),
        Algorithm::EccP384,
        PinPolicy::Never,
        TouchPolicy::Never,
    );
    admin(f, &mut token);
    ok(
        token.put_certificate(SlotId::Retired(0x8a), &fake_certificate()),
        "certificate",
    );
    ok(
        token.change_pin(&default_pin(), &pin("86427531")),
        "change PIN",
    );
    assert_err!(
        token.verify_pin(&pin("000000")),
        Error::WrongPin { retries_left: 2 },
        "wrong PIN before reopen"
    );
    let info_before = ok(token.info(), "info");
    let keys_before = ok(token.list_keys(), "list");
    let mut token = ok(f.reopen(token), "reopen");
    assert_eq!(ok(token.info(), "info"), info_before);
    assert_eq!(ok(token.list_keys(), "list"), keys_before);
    assert_eq!(
        counters(&mut token),
        RetryCounters { pin: 2, puk: 3 },
        "the wrong-PIN decrement persisted"
    );
    ok(
        token.verify_pin(&pin("86427531")),
        "the changed PIN persisted",
    );
    for key in [&a, &b] {
        let hash = HashAlgorithm::preferred_for(key.algorithm());
        let sig = ok(
            sign_with(&mut token, key.slot, hash, b"after reopen", None),
            "sign after reopen",
        );
        assert_signature(&key.public_key, hash, b"after reopen", &sig);
    }
}

// ----- RSA, Ed25519, X25519 -----------------------------------------------------

/// Test keys (never used elsewhere) for the import cases, made by OpenSSL.
fn rsa_test_key(bits: usize) -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    let pem = match bits {
        1024 => include_str!("../../testdata/rsa/rsa-1024.pem"),
        2048 => include_str!("../../testdata/rsa/rsa-2048.pem"),
        3072 => include_str!("../../testdata/rsa/rsa-3072.pem"),
        _ => include_str!("../../testdata/rsa/rsa-4096.pem"),
    };
    rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap_or_else(|e| panic!("RSA-{bits} test key: {e}"))
}

fn ed25519_test_key() -> ed25519_dalek::SigningKey {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    ed25519_dalek::SigningKey::from_pkcs8_pem(include_str!("../../testdata/rsa/ed25519.pem"))
        .unwrap_or_else(|e| panic!("Ed25519 test key: {e}"))
}

fn sign_scheme<T: Token>(
    token: &mut T,
    slot: SlotId,
    scheme: SignatureScheme,
    input: SignInput<'_>,
    pin: Option<&Pin>,
) -> Result<Vec<u8>> {
    token.sign(
        &SignRequest {
            slot,
            scheme,
            input,
            pin,
        },
        &mut |_| {},
    )
}

/// Sign a digest of `message` with every hash and both RSA paddings, and
/// check each signature with RustCrypto and openssl (PSS with SHA-512 does
/// not fit RSA-1024 and is refused with a typed error).
fn rsa_signs_every_scheme<T: Token>(token: &mut T, key: &KeyInfo, hashes: &[HashAlgorithm]) {
    let bits = key.algorithm().rsa_bits().unwrap_or(0);
    for &hash in hashes {
        let digest = hash.digest(format!("rsa {bits} {hash}").as_bytes());
        let input = SignInput::Digest {
            hash,
            digest: &digest,
        };
        for scheme in [SignatureScheme::RsaPkcs1v15, SignatureScheme::RsaPss] {
            let step = format!("{} {scheme} {hash}", key.algorithm());
            if bits == 1024 && scheme == SignatureScheme::RsaPss && hash == HashAlgorithm::Sha512 {
                assert_err!(
                    sign_scheme(token, key.slot, scheme, input, None),
                    Error::HashTooLongForKey { .. },
                    step
                );
                continue;
            }
            let sig = ok(sign_scheme(token, key.slot, scheme, input, None), &step);
            assert_eq!(sig.len(), bits / 8, "{step}: modulus-length signature");
            assert_scheme_signature(&key.public_key, scheme, &input, &sig);
            ok(key.public_key.verify(scheme, &input, &sig), &step);
        }
    }
}

/// A generated RSA-2048 key signs with PKCS#1 v1.5 and PSS over SHA-256,
/// SHA-384 and SHA-512 digests (the host pads, the card does raw RSA);
/// every signature verifies with RustCrypto and openssl; the key is
/// reported as RSA-2048 with its policies, and its attestation verifies.
pub fn sign_rsa2048_every_scheme_and_hash<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let key = generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::Rsa2048,
        PinPolicy::Never,
        TouchPolicy::Never,
    );
    assert_eq!(key.algorithm(), Algorithm::Rsa2048);
    assert_eq!(key.public_key.algorithm.rsa_bits(), Some(2048));
    assert_eq!(
        ok(PublicKey::from_spki_der(&key.public_key.spki_der), "SPKI"),
        key.public_key
    );
    assert_eq!(key.origin, Some(KeyOrigin::Generated));
    let listed = ok(token.key(SlotId::Signature), "key");
    assert_eq!(listed.public_key, key.public_key);
    assert_eq!(listed.pin_policy, PinPolicy::Never);
    rsa_signs_every_scheme(
        &mut token,
        &key,
        &[
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
        ],
    );
    let roots = ok(f.attestation_roots(&mut token), "attestation roots");
    let info = ok(token.info(), "info");
    let attestation = ok(token.attest(SlotId::Signature), "attest RSA-2048");
    super::attestation_check::check(&attestation, &roots, &key, &info);
}

/// RSA-1024, 3072 and 4096 keys (imported, so the case does not spend
/// minutes generating primes) sign with both paddings; the imported public
/// key is exactly the test key's.
pub fn sign_imported_rsa_every_size<F: TokenFixture>(f: &mut F) {
    use spki::EncodePublicKey;
    let mut token = fresh(f);
    for (bits, slot) in [
        (1024, SlotId::Retired(0x82)),
        (3072, SlotId::Retired(0x83)),
        (4096, SlotId::Retired(0x84)),
    ] {
        let algorithm = match bits {
            1024 => Algorithm::Rsa1024,
            3072 => Algorithm::Rsa3072,
            _ => Algorithm::Rsa4096,
        };
        if !algorithm_available_or_refused(f, &mut token, algorithm) {
            continue;
        }
        let secret = rsa_test_key(bits);
        let expected = ok(
            PublicKey::from_spki_der(
                secret
                    .to_public_key()
                    .to_public_key_der()
                    .unwrap_or_else(|e| panic!("SPKI: {e}"))
                    .as_bytes(),
            ),
            "expected public key",
        );
        admin(f, &mut token);
        let key = ok(
            token.import_key(
                slot,
                &ok(ImportKey::rsa(&secret), "import key"),
                PinPolicy::Never,
                TouchPolicy::Never,
            ),
            &format!("import RSA-{bits}"),
        );
        assert_eq!(key.public_key, expected, "RSA-{bits} public key");
        assert_eq!(key.origin, Some(KeyOrigin::Imported));
        let hashes: &[HashAlgorithm] = if bits == 1024 {
            &[HashAlgorithm::Sha256, HashAlgorithm::Sha512]
        } else {
            &[HashAlgorithm::Sha256]
        };
        rsa_signs_every_scheme(&mut token, &key, hashes);
    }
}

/// Ed25519 signs the message itself (PureEdDSA): short and maximum-length
/// messages verify with ed25519-dalek and openssl; a longer or an empty
/// message and a digest instead of the message are refused before any card
/// traffic. An imported Ed25519 key has the test key's
/// public key and signs deterministically, as RFC 8032 requires.
pub fn sign_ed25519_message<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    if !algorithm_available_or_refused(f, &mut token, Algorithm::Ed25519) {
        return;
    }
    let key = generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::Ed25519,
        PinPolicy::Never,
        TouchPolicy::Never,
    );
    assert_eq!(key.algorithm(), Algorithm::Ed25519);
    let long = vec![0x5au8; crate::model::ED25519_MAX_MESSAGE];
    for message in [&b"root.json"[..], &b"x"[..], &long[..]] {
        let input = SignInput::Message(message);
        let sig = ok(
            sign_scheme(&mut token, key.slot, SignatureScheme::Ed25519, input, None),
            "sign Ed25519",
        );
        assert_eq!(sig.len(), 64);
        assert_scheme_signature(&key.public_key, SignatureScheme::Ed25519, &input, &sig);
    }
    assert_err!(
        sign_scheme(
            &mut token,
            key.slot,
            SignatureScheme::Ed25519,
            SignInput::Message(b""),
            None
        ),
        Error::BadCommandData { .. },
        "an empty Ed25519 message"
    );
    let too_long = vec![0u8; crate::model::ED25519_MAX_MESSAGE + 1];
    assert_err!(
        sign_scheme(
            &mut token,
            key.slot,
            SignatureScheme::Ed25519,
            SignInput::Message(&too_long),
            None
        ),
        Error::TooLarge { .. },
        "Ed25519 message over the limit"
    );
    let digest = HashAlgorithm::Sha512.digest(b"root.json");
    assert_err!(
        sign_scheme(
            &mut token,
            key.slot,
            SignatureScheme::Ed25519,
            SignInput::Digest {
                hash: HashAlgorithm::Sha512,
                digest: &digest
            },
            None
        ),
        Error::MessageExpected { .. },
        "Ed25519 given a digest"
    );
    let roots = ok(f.attestation_roots(&mut token), "attestation roots");
    let info = ok(token.info(), "info");
    let attestation = ok(token.attest(SlotId::Signature), "attest Ed25519");
    super::attestation_check::check(&attestation, &roots, &key, &info);

    let secret = ed25519_test_key();
    admin(f, &mut token);
    let imported = ok(
        token.import_key(
            SlotId::Retired(0x90),
            &ImportKey::ed25519(secret.as_bytes()),
            PinPolicy::Never,
            TouchPolicy::Never,
        ),
        "import Ed25519",
    );
    assert_eq!(
        ok(imported.public_key.curve25519_bytes(), "raw key"),
        secret.verifying_key().to_bytes()
    );
    let message = b"targets.json";
    let sig = ok(
        sign_scheme(
            &mut token,
            imported.slot,
            SignatureScheme::Ed25519,
            SignInput::Message(message),
            None,
        ),
        "sign with the imported Ed25519 key",
    );
    use ed25519_dalek::Signer;
    assert_eq!(
        sig,
        secret.sign(message).to_bytes().to_vec(),
        "RFC 8032 is deterministic"
    );
}

/// X25519 keys are generated, imported and listed like any other, and
/// refused for signing with [`Error::KeyCannotSign`] whatever the scheme.
pub fn x25519_is_listed_and_refused_for_signing<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    if !algorithm_available_or_refused(f, &mut token, Algorithm::X25519) {
        return;
    }
    let key = generate(
        f,
        &mut token,
        SlotId::KeyManagement,
        Algorithm::X25519,
        PinPolicy::Never,
        TouchPolicy::Never,
    );
    assert_eq!(key.algorithm(), Algorithm::X25519);
    ok(key.public_key.curve25519_bytes(), "X25519 public key bytes");
    admin(f, &mut token);
    let imported = ok(
        token.import_key(
            SlotId::Retired(0x91),
            &ImportKey::x25519(&[0x24u8; 32]),
            PinPolicy::Never,
            TouchPolicy::Never,
        ),
        "import X25519",
    );
    assert_eq!(imported.algorithm(), Algorithm::X25519);
    let listed = ok(token.list_keys(), "list");
    for slot in [SlotId::KeyManagement, SlotId::Retired(0x91)] {
        assert!(
            listed
                .iter()
                .any(|k| k.slot == slot && k.algorithm() == Algorithm::X25519),
            "X25519 key in {slot} listed"
        );
    }
    let digest = HashAlgorithm::Sha256.digest(b"m");
    for scheme in SignatureScheme::ALL {
        let input = if scheme.signs_message() {
            SignInput::Message(b"m")
        } else {
            SignInput::Digest {
                hash: HashAlgorithm::Sha256,
                digest: &digest,
            }
        };
        assert_err!(
            sign_scheme(&mut token, SlotId::KeyManagement, scheme, input, None),
            Error::KeyCannotSign {
                algorithm: Algorithm::X25519,
                ..
            },
            format!("X25519 with {scheme}")
        );
    }
}

/// Every misuse of the sign API is refused with its own typed error before
/// the PIN or the card is involved: a wrong PIN sent along is never
/// presented (the retry counter does not move).
pub fn sign_scheme_misuse_is_refused_before_the_pin<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    let p256 = generate(
        f,
        &mut token,
        SlotId::Authentication,
        Algorithm::EccP256,
        PinPolicy::Always,
        TouchPolicy::Never,
    );
    let rsa = generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::Rsa2048,
        PinPolicy::Always,
        TouchPolicy::Never,
    );
    let wrong = pin("999999");
    let before = ok(token.retry_counters(), "retries");
    let d32 = [0x11u8; 32];
    let d48 = [0x22u8; 48];
    let sha256 = |digest| SignInput::Digest {
        hash: HashAlgorithm::Sha256,
        digest,
    };
    let cases: Vec<(SlotId, SignatureScheme, SignInput<'_>, &str)> = vec![
        (
            p256.slot,
            SignatureScheme::RsaPss,
            sha256(&d32),
            "PSS on P-256",
        ),
        (
            p256.slot,
            SignatureScheme::RsaPkcs1v15,
            sha256(&d32),
            "PKCS#1 on P-256",
        ),
        (
            p256.slot,
            SignatureScheme::Ed25519,
            SignInput::Message(b"m"),
            "Ed25519 on P-256",
        ),
        (
            rsa.slot,
            SignatureScheme::Ecdsa,
            sha256(&d32),
            "ECDSA on RSA",
        ),
        (
            rsa.slot,
            SignatureScheme::RsaPss,
            SignInput::Message(b"m"),
            "RSA given a message",
        ),
        (
            p256.slot,
            SignatureScheme::Ecdsa,
            SignInput::Message(b"m"),
            "ECDSA given a message",
        ),
        (
            rsa.slot,
            SignatureScheme::RsaPss,
            sha256(&d48),
            "48 bytes for SHA-256",
        ),
    ];
    for (slot, scheme, input, step) in cases {
        match sign_scheme(&mut token, slot, scheme, input, Some(&wrong)) {
            Err(Error::SchemeMismatch { .. }) if step.contains(" on ") => {}
            Err(Error::DigestExpected { .. }) if step.contains("given a message") => {}
            Err(Error::BadDigestLength {
                expected: 32,
                actual: 48,
                ..
            }) if step.starts_with("48") => {}
            other => panic!("{step}: expected its typed refusal, got {other:?}"),
        }
    }
    // The same through the signing session.
    let mut session = SigningSession::new(token, PinSource::Fixed(wrong.clone()));
    assert_err!(
        session.sign_with(rsa.slot, SignatureScheme::Ecdsa, sha256(&d32), &mut |_| {}),
        Error::SchemeMismatch { .. },
        "session: ECDSA on RSA"
    );
    let mut token = session.into_token();
    assert_eq!(
        ok(token.retry_counters(), "retries"),
        before,
        "no PIN was presented"
    );
}

/// The signing layers serve every scheme: [`SigningSession::sign_with`]
/// verifies the PIN by policy for an RSA-PSS signature, and
/// [`crate::signer::TokenSigner::sign_with`] returns only signatures that
/// verify, for RSA and Ed25519 keys.
pub fn signing_layers_serve_rsa_and_ed25519<F: TokenFixture>(f: &mut F) {
    let mut token = fresh(f);
    if !algorithm_available_or_refused(f, &mut token, Algorithm::Ed25519) {
        return;
    }
    let rsa = generate(
        f,
        &mut token,
        SlotId::Signature,
        Algorithm::Rsa2048,
        PinPolicy::Always,
        TouchPolicy::Never,
    );
    let ed = generate(
        f,
        &mut token,
        SlotId::Authentication,
        Algorithm::Ed25519,
        PinPolicy::Once,
        TouchPolicy::Never,
    );
    let mut session = SigningSession::new(token, PinSource::Fixed(default_pin()));
    let digest = HashAlgorithm::Sha384.digest(b"session");
    let input = SignInput::Digest {
        hash: HashAlgorithm::Sha384,
        digest: &digest,
    };
    let sig = ok(
        session.sign_with(rsa.slot, SignatureScheme::RsaPss, input, &mut |_| {}),
        "session RSA-PSS (PIN policy always)",
    );
    assert_scheme_signature(&rsa.public_key, SignatureScheme::RsaPss, &input, &sig);
    let input = SignInput::Message(b"session message");
    let sig = ok(
        session.sign_with(ed.slot, SignatureScheme::Ed25519, input, &mut |_| {}),
        "session Ed25519 (PIN policy once)",
    );
    assert_scheme_signature(&ed.public_key, SignatureScheme::Ed25519, &input, &sig);
    let token = session.into_token();

    let signer = ok(
        crate::signer::TokenSigner::new(token, SlotId::Authentication),
        "TokenSigner",
    )
    .with_pin(default_pin());
    let sig = ok(
        signer.sign_with(SignatureScheme::Ed25519, SignInput::Message(b"signer")),
        "TokenSigner Ed25519",
    );
    assert_scheme_signature(
        &ed.public_key,
        SignatureScheme::Ed25519,
        &SignInput::Message(b"signer"),
        &sig,
    );
    assert_err!(
        signer.sign_with(
            SignatureScheme::RsaPss,
            SignInput::Digest {
                hash: HashAlgorithm::Sha256,
                digest: &[0; 32]
            }
        ),
        Error::SchemeMismatch { .. },
        "TokenSigner: PSS on Ed25519"
    );
}

/// [`crate::signer::self_signed_certificate`] for RSA-2048 (PKCS#1 v1.5,
/// SHA-256) and Ed25519 keys: signed on the token, the certificate holds
/// the slot's key, its signature verifies with RustCrypto and openssl
/// parses it, and stored in the slot it is reported with the key. X25519
/// cannot sign its own certificate ([`Error::KeyCannotSign`]).
pub fn self_signed_certificates_for_rsa_and_ed25519<F: TokenFixture>(f: &mut F) {
    use der::{Decode, Encode};
    let mut token = fresh(f);
    let mut algorithms = vec![(SlotId::Signature, Algorithm::Rsa2048)];
    if firmware_has(&mut token, Algorithm::Ed25519) {
        algorithms.push((SlotId::Authentication, Algorithm::Ed25519));
    }
    for (slot, algorithm) in algorithms {
        let key = generate(
            f,
            &mut token,
            slot,
            algorithm,
            PinPolicy::Never,
            TouchPolicy::Never,
        );
        let signer = ok(crate::signer::TokenSigner::new(token, slot), "TokenSigner");
        let (der, back) = ok(
            crate::signer::self_signed_certificate(
                signer,
                "signer test",
                Duration::from_secs(3600),
            ),
            &format!("self-signed {algorithm} certificate"),
        );
        token = back;
        let cert = x509_cert::Certificate::from_der(&der)
            .unwrap_or_else(|e| panic!("{algorithm} certificate: {e}"));
        let spki = cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap_or_else(|e| panic!("SPKI: {e}"));
        assert_eq!(spki, key.public_key.spki_der, "{algorithm}: the slot's key");
        let tbs = cert
            .tbs_certificate()
            .to_der()
            .unwrap_or_else(|e| panic!("TBS: {e}"));
        let signature = cert
            .signature()
            .as_bytes()
            .unwrap_or_else(|| panic!("signature bits"));
        let (scheme, digest, oid) = if algorithm.is_rsa() {
            (
                SignatureScheme::RsaPkcs1v15,
                HashAlgorithm::Sha256.digest(&tbs),
                "1.2.840.113549.1.1.11",
            )
        } else {
            (SignatureScheme::Ed25519, tbs.clone(), "1.3.101.112")
        };
        assert_eq!(cert.signature_algorithm().oid.to_string(), oid);
        let input = if algorithm.is_rsa() {
            SignInput::Digest {
                hash: HashAlgorithm::Sha256,
                digest: &digest,
            }
        } else {
            SignInput::Message(&digest)
        };
        assert_scheme_signature(&key.public_key, scheme, &input, signature);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let path = dir.path().join("cert.der");
        std::fs::write(&path, &der).unwrap_or_else(|e| panic!("write: {e}"));
        let out = std::process::Command::new("openssl")
            .args(["x509", "-inform", "DER", "-noout", "-subject", "-in"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl (tests/scripts/install-deps.sh): {e}"));
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("signer test"),
            "openssl x509 reads the {algorithm} certificate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        admin(f, &mut token);
        ok(token.put_certificate(slot, &der), "put certificate");
        assert_eq!(
            ok(token.key(slot), "key").certificate.as_deref(),
            Some(&der[..])
        );
    }
    if firmware_has(&mut token, Algorithm::X25519) {
        generate(
            f,
            &mut token,
            SlotId::KeyManagement,
            Algorithm::X25519,
            PinPolicy::Never,
            TouchPolicy::Never,
        );
        let signer = ok(
            crate::signer::TokenSigner::new(token, SlotId::KeyManagement),
            "TokenSigner",
        );
        assert_err!(
            crate::signer::self_signed_certificate(signer, "x", Duration::from_secs(60)),
            Error::KeyCannotSign { .. },
            "X25519 self-signed certificate"
        );
    }
}

/// RSA decryption (raw: the host unpads) and ECDH (P-256, P-384, X25519)
/// through the Token trait: the plaintext of an `rsa`-crate PKCS#1 v1.5
/// ciphertext comes back, the shared secrets equal RustCrypto's own
/// (`p256`/`p384` ECDH, `x25519-dalek`); PIN policy `always` is met with
/// the request's PIN; wrong key types and lengths are refused before any
/// card traffic.
pub fn rsa_decrypt_and_key_agreement<F: TokenFixture>(f: &mut F) {
    use spki::DecodePublicKey;
    let mut token = fresh(f);
    let rsa = generate(
        f,
        &mut token,
        SlotId::KeyManagement,
        Algorithm::Rsa2048,
        PinPolicy::Always,
        TouchPolicy::Never,
    );
    let public = ok(rsa.public_key.rsa_key(), "RSA key");
    let secret = b"wrapped data key";
    let ciphertext = public
        .encrypt(
            &mut rand_core::UnwrapErr(getrandom::SysRng),
            rsa::Pkcs1v15Encrypt,
            secret,
        )
        .unwrap_or_else(|e| panic!("encrypt: {e}"));
    assert_err!(
        token.decrypt_raw(rsa.slot, &ciphertext, None, &mut |_| {}),
        Error::PinRequired { .. },
        "decrypt without the PIN (policy always)"
    );
    let block = ok(
        token.decrypt_raw(rsa.slot, &ciphertext, Some(&default_pin()), &mut |_| {}),
        "decrypt",
    );
    assert_eq!(block.len(), 256);
    assert_eq!(&block[..2], &[0x00, 0x02], "PKCS#1 v1.5 encryption block");
    assert!(block.ends_with(secret), "the plaintext comes back");
    assert_err!(
        token.decrypt_raw(
            rsa.slot,
            &ciphertext[1..],
            Some(&default_pin()),
            &mut |_| {}
        ),
        Error::BadCommandData { .. },
        "a short ciphertext"
    );

    for (slot, algorithm) in [
        (SlotId::Authentication, Algorithm::EccP256),
        (SlotId::Retired(0x85), Algorithm::EccP384),
    ] {
        let key = generate(
            f,
            &mut token,
            slot,
            algorithm,
            PinPolicy::Never,
            TouchPolicy::Never,
        );
        let (peer_point, expected) = if algorithm == Algorithm::EccP256 {
            let peer = p256::ecdsa::SigningKey::from_slice(&[0x31u8; 32])
                .unwrap_or_else(|e| panic!("peer key: {e}"));
            let card = p256::PublicKey::from_public_key_der(&key.public_key.spki_der)
                .unwrap_or_else(|e| panic!("card key: {e}"));
            let shared = p256::ecdh::diffie_hellman(peer.as_nonzero_scalar(), card.as_affine());
            (
                peer.verifying_key()
                    .to_sec1_point(false)
                    .as_bytes()
                    .to_vec(),
                shared.raw_secret_bytes().to_vec(),
            )
        } else {
            let peer = p384::ecdsa::SigningKey::from_slice(&[0x32u8; 48])
                .unwrap_or_else(|e| panic!("peer key: {e}"));
            let card = p384::PublicKey::from_public_key_der(&key.public_key.spki_der)
                .unwrap_or_else(|e| panic!("card key: {e}"));
            let shared = p384::ecdh::diffie_hellman(peer.as_nonzero_scalar(), card.as_affine());
            (
                peer.verifying_key()
                    .to_sec1_point(false)
                    .as_bytes()
                    .to_vec(),
                shared.raw_secret_bytes().to_vec(),
            )
        };
        let shared = ok(
            token.key_agreement(slot, &peer_point, None, &mut |_| {}),
            &format!("{algorithm} ECDH"),
        );
        assert_eq!(&shared[..], &expected[..], "{algorithm} shared secret");
        assert_err!(
            token.key_agreement(slot, &peer_point[1..], None, &mut |_| {}),
            Error::BadCommandData { .. },
            format!("{algorithm}: a malformed peer key")
        );
        assert_err!(
            token.decrypt_raw(slot, &[0u8; 256], None, &mut |_| {}),
            Error::NotSupported { .. },
            format!("decrypt with {algorithm}")
        );
    }
    assert_err!(
        token.key_agreement(rsa.slot, &[4u8; 65], Some(&default_pin()), &mut |_| {}),
        Error::NotSupported { .. },
        "ECDH with an RSA key"
    );
    if firmware_has(&mut token, Algorithm::X25519) {
        let key = generate(
            f,
            &mut token,
            SlotId::Retired(0x86),
            Algorithm::X25519,
            PinPolicy::Never,
            TouchPolicy::Never,
        );
        let peer = x25519_dalek::StaticSecret::from([0x33u8; 32]);
        let card = x25519_dalek::PublicKey::from(ok(key.public_key.curve25519_bytes(), "X25519"));
        let shared = ok(
            token.key_agreement(
                key.slot,
                x25519_dalek::PublicKey::from(&peer).as_bytes(),
                None,
                &mut |_| {},
            ),
            "X25519",
        );
        assert_eq!(
            &shared[..],
            peer.diffie_hellman(&card).as_bytes(),
            "X25519 shared secret"
        );
    }
}
