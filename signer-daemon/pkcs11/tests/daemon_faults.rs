//! Card faults the emulated token cannot produce on demand, through the
//! daemon's own in-process test double (`signer-daemon/tests/common`: an
//! in-memory token with fault injection and a touch gate): the card
//! removed, no touch in time, the token's queue full. Each maps to its
//! documented `CKR_*` code; the daemon's message is logged; the module goes
//! on working after the fault.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../tests/common/mod.rs"]
#[allow(unused_imports, missing_docs)]
mod daemon_common;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use common::{child, run_child_at};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use daemon_common::{Card, Setup, TestDaemon};
use sha2::Digest;
use signer_lib::{PinPolicy, SlotId, TouchPolicy};

fn init() -> (Pkcs11, Session, ObjectHandle) {
    let path = std::env::var_os("SIGNER_PKCS11_TEST_MODULE").unwrap();
    let p = Pkcs11::new(path).unwrap();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = p.get_slots_with_token().unwrap()[0];
    let s = p.open_ro_session(slot).unwrap();
    let key = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(vec![2]),
        ])
        .unwrap()[0];
    (p, s, key)
}

fn rv(e: CkError) -> RvError {
    match e {
        CkError::Pkcs11(rv, _) => rv,
        other => panic!("not a PKCS#11 error: {other}"),
    }
}

fn digest(tag: &str) -> Vec<u8> {
    sha2::Sha256::digest(tag).to_vec()
}

/// A test card whose touch waits `touch_timeout` with the gate closed.
fn card(serial: u32, touch: TouchPolicy, touch_timeout: Duration) -> Arc<Card> {
    let card = Arc::new(Card {
        serial,
        keys: Mutex::new(Default::default()),
        pin: b"123456".to_vec(),
        pin_retries: Mutex::new(3),
        card_ops: AtomicUsize::new(0),
        signatures: AtomicUsize::new(0),
        gate: Default::default(),
        touch_timeout,
        fail_next: Mutex::new(None),
        absent: Mutex::new(false),
        opens: AtomicUsize::new(0),
        wrong_key: Default::default(),
    });
    card.add_key(SlotId::Signature, PinPolicy::Never, touch);
    card
}

async fn run(d: &TestDaemon, name: &'static str) -> std::process::Output {
    let socket = d.socket.clone();
    let dir = d.dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || run_child_at(&socket, &dir, name, &[], &[]))
        .await
        .unwrap()
}

fn check(out: &std::process::Output, d: &TestDaemon) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child failed: {}\n{stderr}\naudit: {:#?}",
        String::from_utf8_lossy(&out.stdout),
        d.audit_lines()
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_card_is_ckr_device_removed_then_signing_works_again() {
    const NAME: &str = "a_removed_card_is_ckr_device_removed_then_signing_works_again";
    if child(NAME) {
        let (_p, s, key) = init();
        let e = s.sign(&Mechanism::Ecdsa, key, &digest("a")).unwrap_err();
        assert_eq!(rv(e), RvError::DeviceRemoved);
        // The card is back: the next signature works.
        s.sign(&Mechanism::Ecdsa, key, &digest("b")).unwrap();
        return;
    }
    let card = card(33_000_001, TouchPolicy::Never, Duration::from_secs(15));
    let mut d = TestDaemon::start(Setup::one_card(card.clone())).await;
    // After the worker opened the card: the next card operation (the
    // signature) finds it removed.
    *card.fail_next.lock().unwrap() = Some(|| signer_lib::Error::CardRemoved {
        detail: "unplugged by the test".into(),
    });
    let out = run(&d, NAME).await;
    let stderr = check(&out, &d);
    assert!(stderr.contains("UNAVAILABLE"), "{stderr}");
    assert!(stderr.contains("unplugged by the test"), "{stderr}");
    assert!(stderr.contains("CKR_DEVICE_REMOVED"), "{stderr}");
    d.stop().await;
    let outcomes: Vec<_> = d
        .audit_lines()
        .into_iter()
        .filter(|l| l["operation"] == "sign")
        .map(|l| l["code"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(outcomes, ["UNAVAILABLE", "OK"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_touch_in_time_is_ckr_function_canceled_after_the_prompt() {
    const NAME: &str = "no_touch_in_time_is_ckr_function_canceled_after_the_prompt";
    if child(NAME) {
        let (_p, s, key) = init();
        let e = s.sign(&Mechanism::Ecdsa, key, &digest("t")).unwrap_err();
        assert_eq!(rv(e), RvError::FunctionCanceled);
        return;
    }
    let card = card(33_000_002, TouchPolicy::Always, Duration::from_millis(300));
    card.gate.close();
    let mut d = TestDaemon::start(Setup::one_card(card.clone())).await;
    let out = run(&d, NAME).await;
    let stderr = check(&out, &d);
    let prompt = stderr.find("Touch your YubiKey now").expect("prompt");
    let error = stderr.find("DEADLINE_EXCEEDED").expect("daemon's message");
    assert!(prompt < error, "the prompt comes before the wait: {stderr}");
    assert!(stderr.contains("CKR_FUNCTION_CANCELED"), "{stderr}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_ckr_function_failed_and_the_module_keeps_working() {
    const NAME: &str = "a_full_queue_is_ckr_function_failed_and_the_module_keeps_working";
    if child(NAME) {
        let (p, _s, _key) = init();
        // One signature waits for a touch, one waits in the queue (capacity
        // 1), the third is refused at once.
        let spawn = |tag: &'static str| {
            let p = p.clone();
            std::thread::spawn(move || {
                let slot = p.get_slots_with_token().unwrap()[0];
                let s = p.open_ro_session(slot).unwrap();
                let key = s
                    .find_objects(&[
                        Attribute::Class(ObjectClass::PRIVATE_KEY),
                        Attribute::Id(vec![2]),
                    ])
                    .unwrap()[0];
                s.sign(&Mechanism::Ecdsa, key, &digest(tag)).map_err(rv)
            })
        };
        let a = spawn("a");
        std::thread::sleep(Duration::from_millis(400));
        let b = spawn("b");
        std::thread::sleep(Duration::from_millis(400));
        let c = spawn("c").join().unwrap();
        assert_eq!(c, Err(RvError::FunctionFailed));
        assert_eq!(a.join().unwrap(), Err(RvError::FunctionCanceled));
        assert_eq!(b.join().unwrap(), Err(RvError::FunctionCanceled));
        return;
    }
    let card = card(33_000_003, TouchPolicy::Always, Duration::from_millis(2500));
    card.gate.close();
    let mut setup = Setup::one_card(card.clone());
    setup.queue_capacity = 1;
    let mut d = TestDaemon::start(setup).await;
    let out = run(&d, NAME).await;
    let stderr = check(&out, &d);
    assert!(stderr.contains("RESOURCE_EXHAUSTED"), "{stderr}");
    assert!(stderr.contains("CKR_FUNCTION_FAILED"), "{stderr}");
    d.stop().await;
}
