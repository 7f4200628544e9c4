//! Reliability suite, group `fault`: the real daemon (`signer-daemon serve
//! --token yubikey:SERIAL`) on emulated YubiKeys behind a private pcscd and
//! vpcd, driven by `signer-client`, while the card is pulled, pcscd
//! restarts, another program resets or holds the card, the PIN is wrong,
//! nobody touches, callers give up, and two tokens swap readers.
//!
//! Each case prints `RELIABILITY<TAB>fault<TAB>case<TAB>PASS|FAIL<TAB>figures`
//! (see `tests/scripts/reliability.sh`); the test asserts as well. Every
//! signature is checked with RustCrypto against the public key made on that
//! card (not the one the daemon lists), and APDUs are counted on the card.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use signer_client::{Client, ErrorKind, KeySpec, SignEvent};
use signer_e2e::daemon_on_card::{
    KeyPlan, PluggedCard, ServeProcess, count_ins, exclusive_hold, reset_card_from_another_client,
};
use signer_e2e::pcsc_sandbox::Sandbox;
use signer_e2e::sandboxed_test;
use signer_lib::emulator::TouchButton;
use signer_lib::piv::ins;
use signer_lib::testing::TouchSetup;
use signer_lib::{KeyInfo, PinPolicy, SlotId, TouchPolicy};
use signer_proto::v1 as pb;
use tonic::Code;

const PIN: &str = "123456";
const SERIAL_A: u32 = 31_415_926;
const SERIAL_B: u32 = 27_182_818;
/// The instruction byte of GENERAL AUTHENTICATE (the signature).
const SIGN_INS: u8 = 0x87;
/// The device's touch timeout (the emulated card's default, a YubiKey's).
const TOUCH_TIMEOUT: Duration = Duration::from_secs(15);

// ----- The RELIABILITY line ---------------------------------------------------

/// One case's summary line; printed as FAIL if the test panics first.
struct Case {
    name: &'static str,
    done: bool,
}

impl Case {
    fn new(name: &'static str) -> Case {
        Case { name, done: false }
    }

    /// Every line of the daemon's audit log must parse (no torn line).
    fn pass(mut self, daemon: &ServeProcess, figures: String) {
        let lines = audit_records(daemon).len();
        self.done = true;
        println!(
            "RELIABILITY\tfault\t{}\tPASS\t{figures} audit_lines={lines} torn=0",
            self.name
        );
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        if !self.done {
            println!(
                "RELIABILITY\tfault\t{}\tFAIL\tsee the assertion above",
                self.name
            );
        }
    }
}

// ----- Fixtures ----------------------------------------------------------------

/// The daemon binary, built by `cargo test --workspace` (or `cargo build -p
/// signer-daemon`).
fn daemon_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join("signer-daemon");
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p signer-daemon` (cargo test --workspace builds it)",
        path.display()
    );
    path
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const SIGN_KEY: KeyPlan = KeyPlan {
    slot: SlotId::Signature,
    pin: PinPolicy::Once,
    touch: TouchPolicy::Always,
};
const AUTH_KEY: KeyPlan = KeyPlan {
    slot: SlotId::Authentication,
    pin: PinPolicy::Once,
    touch: TouchPolicy::Never,
};

fn start_daemon(
    sandbox: &Sandbox,
    dir: &Path,
    serials: &[u32],
    pin: &str,
    config: &str,
) -> ServeProcess {
    ServeProcess::start(sandbox, &daemon_bin(), dir, serials, pin, config)
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn connect(d: &ServeProcess) -> Client {
    Client::connect(&d.socket).await.unwrap()
}

fn key_ref(serial: u32, slot: SlotId) -> pb::KeyRef {
    KeySpec::Slot {
        token_serial: Some(serial),
        slot: slot.to_string(),
    }
    .key_ref()
}

fn digest_of(message: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(message).to_vec()
}

/// RustCrypto's verdict on a DER signature over a SHA-256 digest by the key
/// as made on the card.
fn verifies(key: &KeyInfo, digest: &[u8], der: &[u8]) -> bool {
    use p256::pkcs8::DecodePublicKey;
    use signature::hazmat::PrehashVerifier;
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&key.public_key.spki_der).unwrap();
    p256::ecdsa::Signature::from_der(der).is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok())
}

/// Sign `message` with the key in `slot` of token `serial` (SignWithEvents);
/// a signature is checked against `key` before it is returned.
async fn sign(
    client: &mut Client,
    serial: u32,
    key: &KeyInfo,
    message: &[u8],
    on_event: impl FnMut(SignEvent),
) -> Result<pb::SignResponse, signer_client::Error> {
    let digest = digest_of(message);
    let r = client
        .sign(
            key_ref(serial, key.slot),
            pb::HashAlgorithm::Sha256,
            digest.clone(),
            on_event,
        )
        .await?;
    assert_eq!(r.key_id, key.key_id, "signed by the key asked for");
    assert!(
        verifies(key, &digest, &r.signature),
        "the signature for {message:?} does not verify with the card's key"
    );
    Ok(r)
}

fn code(r: &Result<pb::SignResponse, signer_client::Error>) -> Option<Code> {
    match r {
        Ok(_) => Some(Code::Ok),
        Err(e) => e.code(),
    }
}

/// Retry `attempt` until it succeeds or `limit` passes; returns how long it took.
async fn until_ok<F, Fut>(limit: Duration, mut attempt: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<pb::SignResponse, signer_client::Error>>,
{
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(_) => return started.elapsed(),
            Err(e) if started.elapsed() < limit => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no recovery within {limit:?}: {e}"),
        }
    }
}

/// The audit log's records (each line must parse).
fn audit_records(d: &ServeProcess) -> Vec<serde_json::Value> {
    d.audit_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn audit line {l:?}: {e}")))
        .collect()
}

/// Wait (up to 10 s) for the audit record of the signature over `digest`
/// (detached records of abandoned calls are written asynchronously).
fn audit_of(d: &ServeProcess, digest: &[u8]) -> serde_json::Value {
    let hex = hex::encode(digest);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<_> = audit_records(d)
            .into_iter()
            .filter(|r| r["digest"].as_str() == Some(hex.as_str()))
            .collect();
        if found.len() == 1 {
            return found.into_iter().next().unwrap();
        }
        assert!(
            found.len() < 2,
            "two audit records for one request: {found:?}"
        );
        assert!(
            Instant::now() < until,
            "no audit record for digest {hex}:\n{}",
            d.audit_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn outcome(r: &serde_json::Value) -> (String, String) {
    (
        r["outcome"].as_str().unwrap_or("?").to_string(),
        r["code"].as_str().unwrap_or("?").to_string(),
    )
}

async fn token_status(client: &mut Client, serial: u32) -> pb::Token {
    client
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.serial == serial)
        .unwrap_or_else(|| panic!("ListTokens does not list {serial}"))
}

/// Wait until the touch button is waiting (the card is blocked on a touch).
fn card_waits_for_touch(button: &TouchButton) {
    assert!(
        button.wait_until_waiting(Duration::from_secs(10)),
        "the card never started waiting for a touch"
    );
}

/// A key made on the card in `slot`.
fn key(card: &PluggedCard, slot: SlotId) -> KeyInfo {
    card.keys.iter().find(|k| k.slot == slot).unwrap().clone()
}

// ----- 1. Card removed mid-signature ----------------------------------------------

sandboxed_test!(
    fn card_removed_mid_signature_fails_unavailable_then_recovers(sandbox) {
        let case = Case::new("card_removed_mid_signature");
        let dir = tempfile::tempdir().unwrap();
        let button = TouchButton::new();
        let touch = TouchSetup::button(&button, TOUCH_TIMEOUT, Duration::ZERO);
        let mut card = PluggedCard::new(dir.path(), SERIAL_A, &[SIGN_KEY, AUTH_KEY], &touch).unwrap();
        card.insert_into(sandbox.reader(0)).unwrap();
        let mut daemon = start_daemon(sandbox, dir.path(), &[SERIAL_A], PIN, "card_poll_secs = 1\n");
        let pid = daemon.pid();
        let (sign_key, auth_key) = (key(&card, SlotId::Signature), key(&card, SlotId::Authentication));
        let rt = runtime();
        let mut client = rt.block_on(connect(&daemon));
        rt.block_on(sign(&mut client, SERIAL_A, &auth_key, b"before", |_| {})).unwrap();

        // A signature waits for a touch; the bridge dies (vpcd connection cut
        // mid-command, as when the card is yanked).
        let control = card.control().unwrap();
        let mut c2 = client.clone();
        let k2 = sign_key.clone();
        let in_flight = rt.spawn(async move {
            let started = Instant::now();
            let r = sign(&mut c2, SERIAL_A, &k2, b"in flight", |_| {}).await;
            (r, started.elapsed())
        });
        card_waits_for_touch(&button);
        let cut_at = Instant::now();
        control.abort();
        let (result, _) = rt.block_on(in_flight).unwrap();
        let failed_after = cut_at.elapsed();
        assert_eq!(code(&result), Some(Code::Unavailable), "in flight: {result:?}\n{}", daemon.log_text());
        assert!(failed_after < Duration::from_secs(10), "no hang: {failed_after:?}");
        // The card itself finishes its wait (a late touch); its answer is lost.
        button.press();
        card.crashed().unwrap();
        let rec = audit_of(&daemon, &digest_of(b"in flight"));
        assert_eq!(outcome(&rec), ("error".into(), "UNAVAILABLE".into()), "{rec}");

        // While it is out: UNAVAILABLE, and ListTokens says so.
        let out = rt.block_on(sign(&mut client, SERIAL_A, &auth_key, b"while out", |_| {}));
        assert_eq!(code(&out), Some(Code::Unavailable), "while out: {out:?}");
        let t = rt.block_on(token_status(&mut client, SERIAL_A));
        assert!(!t.available, "ListTokens while out: {t:?}");

        // Back in: served again by the same daemon process.
        card.reinsert().unwrap();
        let recovered = rt.block_on(until_ok(Duration::from_secs(20), || {
            let mut c = client.clone();
            let k = auth_key.clone();
            async move { sign(&mut c, SERIAL_A, &k, b"after", |_| {}).await }
        }));
        let b = button.clone();
        let presser = std::thread::spawn(move || b.wait_until_waiting(Duration::from_secs(10)) && b.press());
        rt.block_on(sign(&mut client, SERIAL_A, &sign_key, b"touch after", |_| {})).unwrap();
        assert!(presser.join().unwrap());
        assert!(daemon.is_running() && daemon.pid() == pid, "the daemon was not restarted");
        assert!(rt.block_on(token_status(&mut client, SERIAL_A)).available);
        case.pass(&daemon, format!(
            "in_flight=UNAVAILABLE failed_after_ms={} while_out=UNAVAILABLE recovered_ms={} restarts=0",
            failed_after.as_millis(),
            recovered.as_millis()
        ));
    }
);

// ----- 2. pcscd restarted -------------------------------------------------------------

sandboxed_test!(
    fn pcscd_restarted_under_the_daemon_fails_unavailable_then_recovers(sandbox) {
        let case = Case::new("pcscd_restarted");
        let dir = tempfile::tempdir().unwrap();
        let button = TouchButton::new();
        let touch = TouchSetup::button(&button, TOUCH_TIMEOUT, Duration::ZERO);
        let mut card = PluggedCard::new(dir.path(), SERIAL_A, &[SIGN_KEY, AUTH_KEY], &touch).unwrap();
        card.insert_into(sandbox.reader(0)).unwrap();
        let mut daemon = start_daemon(sandbox, dir.path(), &[SERIAL_A], PIN, "card_poll_secs = 1\n");
        let pid = daemon.pid();
        let (sign_key, auth_key) = (key(&card, SlotId::Signature), key(&card, SlotId::Authentication));
        let rt = runtime();
        let mut client = rt.block_on(connect(&daemon));
        rt.block_on(sign(&mut client, SERIAL_A, &auth_key, b"before", |_| {})).unwrap();

        let mut c2 = client.clone();
        let k2 = sign_key.clone();
        let in_flight = rt.spawn(async move { sign(&mut c2, SERIAL_A, &k2, b"in flight", |_| {}).await });
        card_waits_for_touch(&button);
        let restart_at = Instant::now();
        // pcscd goes away under the waiting card; let the card finish its
        // wait so the bridge can reconnect to the new pcscd.
        let b = button.clone();
        let late_touch = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            b.press()
        });
        sandbox.restart_pcscd().unwrap();
        let result = rt.block_on(in_flight).unwrap();
        let failed_after = restart_at.elapsed();
        late_touch.join().unwrap();
        assert_eq!(code(&result), Some(Code::Unavailable), "in flight: {result:?}\n{}", daemon.log_text());
        assert!(failed_after < Duration::from_secs(15), "no hang: {failed_after:?}");
        let rec = audit_of(&daemon, &digest_of(b"in flight"));
        assert_eq!(outcome(&rec), ("error".into(), "UNAVAILABLE".into()), "{rec}");

        card.wait(true).unwrap();
        card.take_log();
        let recovered = rt.block_on(until_ok(Duration::from_secs(20), || {
            let mut c = client.clone();
            let k = auth_key.clone();
            async move { sign(&mut c, SERIAL_A, &k, b"after the restart", |_| {}).await }
        }));
        let log = card.take_log();
        assert_eq!(count_ins(&log, ins::VERIFY), 1, "the new power-up needs one re-verify: {log:02X?}");
        assert_eq!(card.pin_retries_on_disk(), Some(3));
        let b = button.clone();
        let presser = std::thread::spawn(move || b.wait_until_waiting(Duration::from_secs(10)) && b.press());
        rt.block_on(sign(&mut client, SERIAL_A, &sign_key, b"touch after", |_| {})).unwrap();
        assert!(presser.join().unwrap());
        assert!(daemon.is_running() && daemon.pid() == pid, "the daemon was not restarted");
        case.pass(&daemon, format!(
            "in_flight=UNAVAILABLE failed_after_ms={} recovered_ms={} reverify=1 restarts=0",
            failed_after.as_millis(),
            recovered.as_millis()
        ));
    }
);

// ----- 3. Another process resets the card between two signatures -------------------------

sandboxed_test!(
    fn card_reset_by_another_process_one_reverify_and_a_rejected_pin_never_again(sandbox) {
        let case = Case::new("card_reset_between_signatures");
        let dir = tempfile::tempdir().unwrap();
        let mut card =
            PluggedCard::new(dir.path(), SERIAL_A, &[AUTH_KEY], &TouchSetup::approve()).unwrap();
        card.insert_into(sandbox.reader(0)).unwrap();
        let reader = sandbox.reader(0).name.clone();
        // No polling: the daemon meets the reset at the next signature. The
        // PIN file starts wrong: that PIN is presented once, and after any
        // number of resets never again.
        let daemon = start_daemon(sandbox, dir.path(), &[SERIAL_A], "654321", "card_poll_secs = 0\n");
        let auth_key = key(&card, SlotId::Authentication);
        let rt = runtime();
        let mut client = rt.block_on(connect(&daemon));
        card.take_log();
        let r = rt.block_on(sign(&mut client, SERIAL_A, &auth_key, b"wrong pin", |_| {}));
        assert_eq!(code(&r), Some(Code::FailedPrecondition), "{r:?}");
        assert_eq!(count_ins(&card.take_log(), ins::VERIFY), 1);
        assert_eq!(card.pin_retries_on_disk(), Some(2));
        let mut verifies_after = 0;
        for round in 0..3 {
            reset_card_from_another_client(&reader).unwrap();
            let r = rt.block_on(sign(&mut client, SERIAL_A, &auth_key, format!("rejected {round}").as_bytes(), |_| {}));
            assert_eq!(code(&r), Some(Code::FailedPrecondition), "round {round}: {r:?}");
            let log = card.take_log();
            verifies_after += count_ins(&log, ins::VERIFY);
            // At most the PIN-less attempt the card refuses.
            assert!(count_ins(&log, SIGN_INS) <= 2, "{log:02X?}");
        }
        assert_eq!(verifies_after, 0, "a rejected PIN was presented again after a reset");
        assert_eq!(card.pin_retries_on_disk(), Some(2), "the counter dropped once only");

        // The right PIN in the file; then resets between our signatures.
        std::fs::write(&daemon.pin_file, format!("{PIN}\n")).unwrap();
        rt.block_on(sign(&mut client, SERIAL_A, &auth_key, b"fixed", |_| {})).unwrap();
        assert_eq!(card.pin_retries_on_disk(), Some(3));
        for round in 0..3 {
            reset_card_from_another_client(&reader).unwrap();
            card.take_log();
            let r = rt.block_on(sign(&mut client, SERIAL_A, &auth_key, format!("after reset {round}").as_bytes(), |_| {}));
            assert!(r.is_ok(), "round {round}: the signature after another program's reset: {r:?}\n{}", daemon.log_text());
            let log = card.take_log();
            assert_eq!(count_ins(&log, ins::VERIFY), 1, "round {round}: one re-verify: {log:02X?}");
            // The PIN-less attempt the card refuses (verification lost with
            // the reset), then the signature after the VERIFY.
            assert!(count_ins(&log, SIGN_INS) <= 2, "round {round}: {log:02X?}");
            assert_eq!(card.pin_retries_on_disk(), Some(3));
        }
        case.pass(&daemon, "wrong_pin_verifies=1 re_presented_after_3_resets=0 retries_left=2->3 resets=3 reverify_per_reset=1 failed_after_reset=0".into());
    }
);

// ----- 4. Wrong PIN configured ------------------------------------------------------------

sandboxed_test!(
    fn wrong_pin_one_verify_then_fail_fast_until_the_file_changes(sandbox) {
        let case = Case::new("wrong_pin_configured");
        let dir = tempfile::tempdir().unwrap();
        let mut card =
            PluggedCard::new(dir.path(), SERIAL_A, &[AUTH_KEY], &TouchSetup::approve()).unwrap();
        card.insert_into(sandbox.reader(0)).unwrap();
        let daemon = start_daemon(sandbox, dir.path(), &[SERIAL_A], "999999", "card_poll_secs = 1\n");
        let auth_key = key(&card, SlotId::Authentication);
        let rt = runtime();
        let mut client = rt.block_on(connect(&daemon));
        card.take_log();

        let first = rt.block_on(sign(&mut client, SERIAL_A, &auth_key, b"first", |_| {}));
        match &first {
            Err(e) => {
                assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
                assert_eq!(e.kind(), ErrorKind::Pin);
                assert!(e.to_string().contains("2 tries left"), "{e}");
            }
            Ok(_) => panic!("a wrong PIN signed"),
        }
        assert_eq!(count_ins(&card.take_log(), ins::VERIFY), 1, "exactly one VERIFY");
        assert_eq!(card.pin_retries_on_disk(), Some(2), "the counter dropped by one");

        let mut slowest = Duration::ZERO;
        for i in 0..10 {
            let started = Instant::now();
            let r = rt.block_on(sign(&mut client, SERIAL_A, &auth_key, format!("later {i}").as_bytes(), |_| {}));
            slowest = slowest.max(started.elapsed());
            match &r {
                Err(e) => {
                    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
                    assert!(e.to_string().contains("PIN"), "{e}");
                }
                Ok(_) => panic!("signed with a rejected PIN"),
            }
        }
        // The poller runs meanwhile; still no VERIFY and no signature.
        std::thread::sleep(Duration::from_millis(1500));
        let log = card.take_log();
        assert_eq!(count_ins(&log, ins::VERIFY), 0, "the rejected PIN was presented again: {log:02X?}");
        // The session tries the signature without a PIN first (another
        // program may have verified it); the card refuses, nothing is spent.
        assert!(count_ins(&log, SIGN_INS) <= 10, "{log:02X?}");
        let unverified_attempts = count_ins(&log, SIGN_INS);
        assert!(slowest < Duration::from_secs(1), "fail fast: slowest {slowest:?}");
        assert_eq!(card.pin_retries_on_disk(), Some(2), "the daemon never blocks the card");

        std::fs::write(&daemon.pin_file, format!("{PIN}\n")).unwrap();
        rt.block_on(sign(&mut client, SERIAL_A, &auth_key, b"fixed", |_| {})).unwrap();
        let log = card.take_log();
        assert_eq!(count_ins(&log, ins::VERIFY), 1, "the new PIN, once: {log:02X?}");
        assert_eq!(card.pin_retries_on_disk(), Some(3));
        case.pass(&daemon, format!(
            "verifies=1 retries_left=3->2 later_requests=10 later_verifies=0 unverified_sign_attempts={unverified_attempts} slowest_later_ms={} after_fix=ok retries_left=3",
            slowest.as_millis()
        ));
    }
);

// ----- 5. Touch never comes -------------------------------------------------------------

sandboxed_test!(
    fn touch_never_comes_deadline_exceeded_and_queued_requests_keep_their_deadlines(sandbox) {
        let case = Case::new("touch_never_comes");
        let dir = tempfile::tempdir().unwrap();
        let button = TouchButton::new();
        let touch = TouchSetup::button(&button, TOUCH_TIMEOUT, Duration::ZERO);
        let mut card = PluggedCard::new(dir.path(), SERIAL_A, &[SIGN_KEY, AUTH_KEY], &touch).unwrap();
        card.insert_into(sandbox.reader(0)).unwrap();
        let daemon = start_daemon(sandbox, dir.path(), &[SERIAL_A], PIN, "");
        let (sign_key, auth_key) = (key(&card, SlotId::Signature), key(&card, SlotId::Authentication));
        let rt = runtime();
        let client = rt.block_on(connect(&daemon));
        // Verify the PIN first, so the only wait is the touch.
        rt.block_on(sign(&mut client.clone(), SERIAL_A, &auth_key, b"warm up", |_| {})).unwrap();
        card.take_log();

        let timed = |c: Client, key: KeyInfo, message: &'static [u8]| {
            async move {
                let mut c = c;
                let started = Instant::now();
                let r = sign(&mut c, SERIAL_A, &key, message, |_| {}).await;
                (r, started.elapsed())
            }
        };
        let a = rt.spawn(timed(client.clone().with_timeout(Duration::from_secs(60)), sign_key.clone(), b"A: nobody touches"));
        card_waits_for_touch(&button);
        let b = rt.spawn(timed(client.clone().with_timeout(Duration::from_secs(3)), auth_key.clone(), b"B: 3 s deadline"));
        let c = rt.spawn(timed(client.clone().with_timeout(Duration::from_secs(40)), auth_key.clone(), b"C: 40 s deadline"));
        let (ra, ta) = rt.block_on(a).unwrap();
        let (rb, tb) = rt.block_on(b).unwrap();
        let (rc, tc) = rt.block_on(c).unwrap();
        assert_eq!(code(&ra), Some(Code::DeadlineExceeded), "A: {ra:?}");
        assert!(ta <= TOUCH_TIMEOUT + Duration::from_secs(2), "A within the device timeout: {ta:?}");
        assert!(ta >= TOUCH_TIMEOUT - Duration::from_secs(1), "A waited for the touch: {ta:?}");
        assert_eq!(code(&rb), Some(Code::DeadlineExceeded), "B: {rb:?}");
        assert!(tb < Duration::from_secs(4), "B kept its own 3 s deadline: {tb:?}");
        assert!(rc.is_ok(), "C (40 s) is served after A: {rc:?}");
        assert!(tc + Duration::from_secs(1) >= ta - Duration::from_secs(1), "C waited behind A: {tc:?} vs {ta:?}");
        let log = card.take_log();
        assert_eq!(count_ins(&log, SIGN_INS), 2, "A and C reached the card, B did not: {log:02X?}");
        for (message, want) in [
            (&b"A: nobody touches"[..], ("error", "DEADLINE_EXCEEDED")),
            (b"B: 3 s deadline", ("error", "DEADLINE_EXCEEDED")),
            (b"C: 40 s deadline", ("ok", "OK")),
        ] {
            let rec = audit_of(&daemon, &digest_of(message));
            let (o, c) = outcome(&rec);
            assert!(
                (o.as_str(), c.as_str()) == want || (want.1 == "DEADLINE_EXCEEDED" && c == "DEADLINE_EXCEEDED"),
                "{}: audited {o}/{c}",
                String::from_utf8_lossy(message)
            );
        }
        case.pass(&daemon, format!(
            "touch_wait_ms={} queued_3s_ms={} queued_40s=ok_after_ms={} apdus_for_expired=0",
            ta.as_millis(),
            tb.as_millis(),
            tc.as_millis()
        ));
    }
);

// ----- 6. The caller gives up while waiting for a touch or in the queue ------------------

sandboxed_test!(
    fn caller_cancels_or_deadline_passes_audited_lock_released_next_works(sandbox) {
        let case = Case::new("client_cancels_or_deadline_passes");
        let dir = tempfile::tempdir().unwrap();
        let button = TouchButton::new();
        let touch = TouchSetup::button(&button, TOUCH_TIMEOUT, Duration::ZERO);
        let mut card = PluggedCard::new(dir.path(), SERIAL_A, &[SIGN_KEY, AUTH_KEY], &touch).unwrap();
        card.insert_into(sandbox.reader(0)).unwrap();
        let daemon = start_daemon(sandbox, dir.path(), &[SERIAL_A], PIN, "");
        let (sign_key, auth_key) = (key(&card, SlotId::Signature), key(&card, SlotId::Authentication));
        let rt = runtime();
        let client = rt.block_on(connect(&daemon));
        rt.block_on(sign(&mut client.clone(), SERIAL_A, &auth_key, b"warm up", |_| {})).unwrap();
        card.take_log();

        // A waits for a touch, B and D wait in the queue behind it.
        let (touch_tx, touch_rx) = std::sync::mpsc::channel();
        let mut ca = client.clone();
        let ka = sign_key.clone();
        let a = rt.spawn(async move {
            sign(&mut ca, SERIAL_A, &ka, b"A: cancelled during the touch", move |e| {
                let _ = touch_tx.send(e);
            })
            .await
        });
        touch_rx.recv_timeout(Duration::from_secs(10)).expect("A heard TouchRequired");
        card_waits_for_touch(&button);
        let mut cb = client.clone();
        let kb = auth_key.clone();
        let b = rt.spawn(async move { sign(&mut cb, SERIAL_A, &kb, b"B: cancelled in the queue", |_| {}).await });
        let mut cd = client.clone().with_timeout(Duration::from_secs(1));
        let kd = auth_key.clone();
        let d = rt.spawn(async move {
            let started = Instant::now();
            let r = sign(&mut cd, SERIAL_A, &kd, b"D: deadline passes in the queue", |_| {}).await;
            (r, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        a.abort();
        b.abort();
        assert!(rt.block_on(a).unwrap_err().is_cancelled());
        assert!(rt.block_on(b).unwrap_err().is_cancelled());
        let (rd, td) = rt.block_on(d).unwrap();
        assert_eq!(code(&rd), Some(Code::DeadlineExceeded), "D: {rd:?}");
        assert!(td < Duration::from_secs(2), "D: its own deadline: {td:?}");

        let audited = [
            (&b"A: cancelled during the touch"[..], "CANCELLED"),
            (b"B: cancelled in the queue", "CANCELLED"),
        ];
        for (message, want) in audited {
            let rec = audit_of(&daemon, &digest_of(message));
            let (o, c) = outcome(&rec);
            assert_eq!((o.as_str(), c.as_str()), ("cancelled", want), "{}", String::from_utf8_lossy(message));
        }
        let rec = audit_of(&daemon, &digest_of(b"D: deadline passes in the queue"));
        assert_eq!(rec["code"].as_str(), Some("DEADLINE_EXCEEDED"), "D audited: {rec}");

        // Nobody touches: once the card gives up on A's touch, the lock is
        // free and the next request works (no daemon restart, no human).
        let started = Instant::now();
        let mut ce = client.clone().with_timeout(Duration::from_secs(40));
        rt.block_on(sign(&mut ce, SERIAL_A, &auth_key, b"E: next", |_| {})).unwrap();
        let next_after = started.elapsed();
        assert!(next_after < TOUCH_TIMEOUT + Duration::from_secs(2), "{next_after:?}");
        let log = card.take_log();
        assert_eq!(count_ins(&log, SIGN_INS), 2, "only A and E reached the card: {log:02X?}");
        let rec = audit_of(&daemon, &digest_of(b"E: next"));
        assert_eq!(outcome(&rec), ("ok".into(), "OK".into()));

        // F's deadline (3 s) passes while its key waits for a touch: the
        // caller gets DEADLINE_EXCEEDED before its own timer, audited; the
        // touch that comes later makes a signature nobody receives, and G
        // is served right after it.
        let mut cf = client.clone().with_timeout(Duration::from_secs(3));
        let kf = sign_key.clone();
        let f = rt.spawn(async move {
            let started = Instant::now();
            let r = sign(&mut cf, SERIAL_A, &kf, b"F: deadline during the touch", |_| {}).await;
            (r, started.elapsed())
        });
        card_waits_for_touch(&button);
        let (rf, tf) = rt.block_on(f).unwrap();
        assert_eq!(code(&rf), Some(Code::DeadlineExceeded), "F: {rf:?}");
        // The daemon answers 250 ms before the caller's own timer; on a
        // loaded machine the caller's timer may come first (also DEADLINE_EXCEEDED).
        assert!(tf < Duration::from_millis(3500), "F: at its deadline: {tf:?} {rf:?}");
        let rec = audit_of(&daemon, &digest_of(b"F: deadline during the touch"));
        assert_eq!(rec["code"].as_str(), Some("DEADLINE_EXCEEDED"), "F audited: {rec}");
        assert_ne!(rec["outcome"].as_str(), Some("ok"), "{rec}");
        assert!(button.press(), "the late touch");
        let started = Instant::now();
        rt.block_on(sign(&mut client.clone(), SERIAL_A, &auth_key, b"G: after the late touch", |_| {}))
            .unwrap();
        let g_after = started.elapsed();
        assert!(g_after < Duration::from_secs(5), "G: {g_after:?}");
        let ok_lines = audit_records(&daemon)
            .iter()
            .filter(|r| r["outcome"].as_str() == Some("ok") && r["rpc"].as_str() == Some("SignWithEvents"))
            .count();
        assert_eq!(ok_lines, 3, "warm up, E and G: only signatures a caller received are audited ok");
        case.pass(&daemon, format!(
            "touch_cancel=CANCELLED queue_cancel=CANCELLED queue_deadline=DEADLINE_EXCEEDED touch_deadline=DEADLINE_EXCEEDED touch_deadline_ms={} audited=4 apdus_for_abandoned_in_queue=0 next_ok_after_ms={} after_late_touch_ms={}",
            tf.as_millis(),
            next_after.as_millis(),
            g_after.as_millis()
        ));
    }
);

// ----- 7. Another program holds the card exclusively -------------------------------------

sandboxed_test!(
    fn card_held_exclusively_unavailable_after_a_bounded_wait_listed_busy_then_resumes(sandbox) {
        let case = Case::new("card_held_exclusively");
        let dir = tempfile::tempdir().unwrap();
        let mut card =
            PluggedCard::new(dir.path(), SERIAL_A, &[AUTH_KEY], &TouchSetup::approve()).unwrap();
        card.insert_into(sandbox.reader(0)).unwrap();
        let reader = sandbox.reader(0).name.clone();
        let mut daemon = start_daemon(sandbox, dir.path(), &[SERIAL_A], PIN, "card_poll_secs = 1\n");
        let auth_key = key(&card, SlotId::Authentication);
        let rt = runtime();
        let mut client = rt.block_on(connect(&daemon));
        rt.block_on(sign(&mut client, SERIAL_A, &auth_key, b"before", |_| {})).unwrap();

        // The card comes back (pcscd restarted) and another program takes it
        // exclusively before the daemon reconnects: the daemon is frozen
        // meanwhile so that the order is certain.
        daemon.signal(rustix::process::Signal::STOP).unwrap();
        sandbox.restart_pcscd().unwrap();
        card.wait(true).unwrap();
        let holder = exclusive_hold(sandbox, Path::new(env!("CARGO_BIN_EXE_pcsc-exclusive-hold")), &reader, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}"));
        daemon.signal(rustix::process::Signal::CONT).unwrap();

        // Every request fails UNAVAILABLE, each after a bounded wait.
        let mut slowest = Duration::ZERO;
        let mut messages = Vec::new();
        for i in 0..3 {
            let started = Instant::now();
            let r = rt.block_on(sign(&mut client, SERIAL_A, &auth_key, format!("while held {i}").as_bytes(), |_| {}));
            slowest = slowest.max(started.elapsed());
            assert_eq!(code(&r), Some(Code::Unavailable), "while held: {r:?}");
            messages.push(r.unwrap_err().to_string());
            let rec = audit_of(&daemon, &digest_of(format!("while held {i}").as_bytes()));
            assert_eq!(outcome(&rec), ("error".into(), "UNAVAILABLE".into()), "{rec}");
        }
        assert!(slowest < Duration::from_secs(15), "bounded wait: {slowest:?}");
        // The first may meet the connection pcscd's restart left stale; once
        // a reconnection attempt failed, the answer names the holder (checked
        // below; how many of these three did is reported).
        let named = messages.iter().filter(|m| m.contains("exclusively")).count();
        // After the first reconnection attempt the daemon knows why.
        let until = Instant::now() + Duration::from_secs(20);
        let t = loop {
            let t = rt.block_on(token_status(&mut client, SERIAL_A));
            if !t.available && t.status.contains("exclusively") {
                break t;
            }
            assert!(Instant::now() < until, "ListTokens never showed it busy: {t:?}");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(t.status.contains("scdaemon"), "{t:?}");
        let r = rt.block_on(sign(&mut client, SERIAL_A, &auth_key, b"named", |_| {}));
        let e = r.unwrap_err();
        assert!(e.to_string().contains("exclusively") && e.to_string().contains("gpgconf --kill scdaemon"), "{e}");

        holder.release().unwrap();
        let resumed = rt.block_on(until_ok(Duration::from_secs(20), || {
            let mut c = client.clone();
            let k = auth_key.clone();
            async move { sign(&mut c, SERIAL_A, &k, b"after release", |_| {}).await }
        }));
        assert!(rt.block_on(token_status(&mut client, SERIAL_A)).available);
        assert!(daemon.is_running());
        case.pass(&daemon, format!(
            "while_held=UNAVAILABLE named_holder={named}/3 slowest_ms={} listed_busy=yes resumed_ms={}",
            slowest.as_millis(),
            resumed.as_millis()
        ));
    }
);

// ----- 8. Two YubiKeys, chosen by serial --------------------------------------------------

/// Sign with each token's key by serial, and check on the cards that the
/// signature was made by the card with that serial.
fn sign_each_by_serial(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    daemon: &ServeProcess,
    cards: &mut [PluggedCard],
    round: &str,
) {
    for c in cards.iter() {
        c.take_log();
    }
    for i in 0..cards.len() {
        let k = key(&cards[i], SlotId::Authentication);
        let serial = cards[i].serial;
        let message = format!("{round}: for {serial}");
        let r = rt
            .block_on(sign(client, serial, &k, message.as_bytes(), |_| {}))
            .unwrap_or_else(|e| panic!("{round}: token {serial}: {e}"));
        assert_eq!(r.token_serial, serial, "{round}");
        let rec = audit_of(daemon, &digest_of(message.as_bytes()));
        assert_eq!(
            rec["token_serial"].as_u64(),
            Some(u64::from(serial)),
            "{round}: audited {rec}"
        );
        assert_eq!(outcome(&rec), ("ok".into(), "OK".into()), "{round}: {rec}");
        for (j, c) in cards.iter().enumerate() {
            let n = count_ins(&c.take_log(), SIGN_INS);
            // The token's own card got the signature (a first one may be
            // the PIN-less attempt the card refuses); the other card none.
            assert!(
                if i == j { (1..=2).contains(&n) } else { n == 0 },
                "{round}: the request for {serial} reached card {} {n} times",
                c.serial
            );
        }
    }
}

sandboxed_test!(readers: 2,
    fn two_yubikeys_served_by_serial_across_a_reader_swap_and_a_pulled_card(sandbox) {
        let case = Case::new("two_yubikeys_by_serial");
        let dir = tempfile::tempdir().unwrap();
        let mut cards = vec![
            PluggedCard::new(dir.path(), SERIAL_A, &[AUTH_KEY], &TouchSetup::approve()).unwrap(),
            PluggedCard::new(dir.path(), SERIAL_B, &[AUTH_KEY], &TouchSetup::approve()).unwrap(),
        ];
        let (r0, r1) = (sandbox.reader(0).clone(), sandbox.reader(1).clone());
        cards[0].insert_into(&r0).unwrap();
        cards[1].insert_into(&r1).unwrap();
        // Listed B first: the order of --token is not the order of readers.
        let mut daemon = start_daemon(sandbox, dir.path(), &[SERIAL_B, SERIAL_A], PIN, "card_poll_secs = 1\n");
        let rt = runtime();
        let mut client = rt.block_on(connect(&daemon));
        sign_each_by_serial(&rt, &mut client, &daemon, &mut cards, "initial");
        assert_eq!(rt.block_on(token_status(&mut client, SERIAL_A)).reader, r0.name);
        assert_eq!(rt.block_on(token_status(&mut client, SERIAL_B)).reader, r1.name);

        // Swap the readers across a pcscd restart: A in reader 1, B in 0.
        cards[0].remove().unwrap();
        cards[1].remove().unwrap();
        sandbox.restart_pcscd().unwrap();
        cards[0].insert_into(&r1).unwrap();
        cards[1].insert_into(&r0).unwrap();
        let started = Instant::now();
        for c in cards.iter() {
            let k = key(c, SlotId::Authentication);
            let serial = c.serial;
            rt.block_on(until_ok(Duration::from_secs(30), || {
                let mut cl = client.clone();
                let k = k.clone();
                async move { sign(&mut cl, serial, &k, b"after the swap", |_| {}).await }
            }));
        }
        let swap_recovered = started.elapsed();
        sign_each_by_serial(&rt, &mut client, &daemon, &mut cards, "swapped");
        assert_eq!(rt.block_on(token_status(&mut client, SERIAL_A)).reader, r1.name);
        assert_eq!(rt.block_on(token_status(&mut client, SERIAL_B)).reader, r0.name);

        // Pull B: A keeps serving, B is UNAVAILABLE.
        cards[1].remove().unwrap();
        let ka = key(&cards[0], SlotId::Authentication);
        let kb = key(&cards[1], SlotId::Authentication);
        let mut a_ok = 0;
        let mut slowest_a = Duration::ZERO;
        for i in 0..10 {
            cards[0].take_log();
            let t = Instant::now();
            rt.block_on(sign(&mut client, SERIAL_A, &ka, format!("B out {i}").as_bytes(), |_| {}))
                .unwrap_or_else(|e| panic!("A while B is out: {e}\n{}", daemon.log_text()));
            slowest_a = slowest_a.max(t.elapsed());
            // B's worker probes every reader for its card meanwhile; A's own
            // session is undisturbed: one signature, no re-verification.
            let log = cards[0].take_log();
            assert_eq!(count_ins(&log, SIGN_INS), 1, "{log:02X?}");
            assert_eq!(count_ins(&log, ins::VERIFY), 0, "{log:02X?}");
            a_ok += 1;
            let rb = rt.block_on(sign(&mut client, SERIAL_B, &kb, b"to B while out", |_| {}));
            assert_eq!(code(&rb), Some(Code::Unavailable), "B while out: {rb:?}");
        }
        assert!(rt.block_on(token_status(&mut client, SERIAL_A)).available);
        assert!(!rt.block_on(token_status(&mut client, SERIAL_B)).available);
        // B back (in another reader than before): served again, by serial.
        cards[1].insert_into(&r0).unwrap();
        rt.block_on(until_ok(Duration::from_secs(20), || {
            let mut cl = client.clone();
            let k = kb.clone();
            async move { sign(&mut cl, SERIAL_B, &k, b"B back", |_| {}).await }
        }));
        sign_each_by_serial(&rt, &mut client, &daemon, &mut cards, "B back");
        assert!(daemon.is_running());
        case.pass(&daemon, format!(
            "tokens=2 misrouted=0 swap_recovered_ms={} a_ok_while_b_out={a_ok}/10 a_reverifies=0 slowest_a_ms={} b_while_out=UNAVAILABLE",
            swap_recovered.as_millis(),
            slowest_a.as_millis()
        ));
    }
);

sandboxed_test!(
    fn daemon_started_while_the_card_is_held_exclusively_says_unavailable_then_serves(sandbox) {
        let case = Case::new("card_held_exclusively_at_start");
        let dir = tempfile::tempdir().unwrap();
        let mut card =
            PluggedCard::new(dir.path(), SERIAL_A, &[AUTH_KEY], &TouchSetup::approve()).unwrap();
        card.insert_into(sandbox.reader(0)).unwrap();
        let reader = sandbox.reader(0).name.clone();
        // scdaemon already holds the card when the daemon starts (a
        // gpg-agent started at login): the daemon starts anyway and says why.
        let holder = exclusive_hold(
            sandbox,
            Path::new(env!("CARGO_BIN_EXE_pcsc-exclusive-hold")),
            &reader,
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut daemon = start_daemon(sandbox, dir.path(), &[SERIAL_A], PIN, "card_poll_secs = 1\n");
        let auth_key = key(&card, SlotId::Authentication);
        let rt = runtime();
        let mut client = rt.block_on(connect(&daemon));

        let mut slowest = Duration::ZERO;
        for i in 0..3 {
            let started = Instant::now();
            let r = rt.block_on(sign(&mut client, SERIAL_A, &auth_key, format!("held at start {i}").as_bytes(), |_| {}));
            slowest = slowest.max(started.elapsed());
            // The token it was told to serve is busy, not unknown.
            assert_eq!(code(&r), Some(Code::Unavailable), "by serial while held: {r:?}");
            let e = r.unwrap_err().to_string();
            assert!(e.contains("exclusively"), "{e}");
        }
        assert!(slowest < Duration::from_secs(15), "bounded wait: {slowest:?}");
        let tokens = rt.block_on(client.list_tokens()).unwrap();
        assert_eq!(tokens.len(), 1, "{tokens:?}");
        let t = &tokens[0];
        assert!(!t.available && t.status.contains("exclusively"), "listed busy: {t:?}");
        assert_eq!(t.serial, SERIAL_A, "listed with the serial it was configured with: {t:?}");

        holder.release().unwrap();
        let resumed = rt.block_on(until_ok(Duration::from_secs(20), || {
            let mut c = client.clone();
            let k = auth_key.clone();
            async move { sign(&mut c, SERIAL_A, &k, b"after release", |_| {}).await }
        }));
        assert!(rt.block_on(token_status(&mut client, SERIAL_A)).available);
        assert!(daemon.is_running());
        case.pass(&daemon, format!(
            "while_held=UNAVAILABLE slowest_ms={} listed_busy=yes listed_serial=yes resumed_ms={}",
            slowest.as_millis(),
            resumed.as_millis()
        ));
    }
);
