//! Reliability suite, group `hostile`: every request the daemon rejects for
//! its content sends **zero APDUs** to the card.
//!
//! The daemon serves a [`HardwareToken`] (the real PIV client, so hardware
//! rules apply: every signature is verified before release) over the
//! in-process loopback transport to the emulated YubiKey's APDU front end.
//! The loopback reader logs every APDU the card receives; each case asserts
//! that log did not grow. Covered, for `Sign` and `SignWithEvents` (and
//! `GetPublicKey`/`Attest` where they take the same field): digest lengths
//! that do not match the hash, unspecified and unknown hash and format
//! values, reserved, invalid and empty slots, f9 for a signature, key ids of
//! the wrong length or alphabet, unknown key ids and serials, missing key or
//! input, an oversized request, and a caller the policy denies. A valid
//! request afterwards does reach the card and its signature verifies
//! (RustCrypto), so the counter is shown to move when it should.
//!
//! (`emulated_no_apdu.rs` checks a few of these against the emulated token's
//! own command counter; this file supersedes it with the full list.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use sha2::Digest;
use signer_daemon::attestation::AttestationTrust;
use signer_daemon::audit::AuditLog;
use signer_daemon::policy::Policy;
use signer_daemon::server::{Daemon, DaemonOptions};
use signer_daemon::worker::{TokenWorker, WorkerOptions};
use signer_lib::emulator::{EmulatedSmartCard, EmulatedToken, InitOptions};
use signer_lib::piv_client::{HardwareToken, LoopbackConnector};
use signer_lib::session::PinSource;
use signer_lib::transport::loopback::SharedCard;
use signer_lib::{
    Algorithm, Attestation, ImportKey, KeyInfo, ManagementKey, Pin, PinPolicy, Puk, RetryCounters,
    SignRequest, SlotId, Token, TokenEvent, TokenInfo, TouchPolicy,
};
use signer_proto::v1 as pb;
use tonic::Code;

const SERIAL: u32 = 20_000_012;

fn slot_ref(slot: &str, token_serial: Option<u32>) -> Option<pb::KeyRef> {
    Some(pb::KeyRef {
        key: Some(pb::key_ref::Key::Slot(pb::SlotRef {
            token_serial,
            slot: slot.into(),
        })),
    })
}

fn id_ref(id: &str) -> Option<pb::KeyRef> {
    Some(pb::KeyRef {
        key: Some(pb::key_ref::Key::KeyId(id.into())),
    })
}

fn sign_req(key: Option<pb::KeyRef>, digest: Vec<u8>, hash: i32, format: i32) -> pb::SignRequest {
    pb::SignRequest {
        key,
        input: Some(pb::sign_request::Input::Digest(digest)),
        hash,
        format,
        padding: pb::RsaPadding::Unspecified as i32,
    }
}

const SHA256: i32 = pb::HashAlgorithm::Sha256 as i32;
const SHA384: i32 = pb::HashAlgorithm::Sha384 as i32;
const SHA512: i32 = pb::HashAlgorithm::Sha512 as i32;
const DER: i32 = pb::SignatureFormat::Der as i32;

/// One hostile request and the code it must get.
enum Case {
    Sign(pb::SignRequest),
    PublicKey(pb::GetPublicKeyRequest),
    Attest(pb::AttestRequest),
}

fn cases(key: &KeyInfo) -> Vec<(String, Case, Code)> {
    let d32 = sha2::Sha256::digest(b"hostile").to_vec();
    let s9c = || slot_ref("9c", None);
    let mut out: Vec<(String, Case, Code)> = Vec::new();
    let mut sign = |name: &str, r: pb::SignRequest, code: Code| {
        out.push((format!("sign_{name}"), Case::Sign(r), code));
    };
    // Digest length does not match the hash.
    for (hash, hname, len) in [
        (SHA256, "sha256", 0usize),
        (SHA256, "sha256", 1),
        (SHA256, "sha256", 31),
        (SHA256, "sha256", 33),
        (SHA256, "sha256", 48),
        (SHA256, "sha256", 64),
        (SHA256, "sha256", 4096),
        (SHA384, "sha384", 32),
        (SHA384, "sha384", 47),
        (SHA384, "sha384", 49),
        (SHA512, "sha512", 32),
        (SHA512, "sha512", 48),
        (SHA512, "sha512", 63),
    ] {
        sign(
            &format!("digest_len_{hname}_{len}"),
            sign_req(s9c(), vec![0xa5; len], hash, DER),
            Code::InvalidArgument,
        );
    }
    // Unspecified or unknown enum values: never defaulted.
    for hash in [0, 4, 17, 99, -1, i32::MAX, i32::MIN] {
        sign(
            &format!("hash_enum_{hash}"),
            sign_req(s9c(), d32.clone(), hash, DER),
            Code::InvalidArgument,
        );
    }
    for format in [0, 3, 42, -5, i32::MAX] {
        sign(
            &format!("format_enum_{format}"),
            sign_req(s9c(), d32.clone(), SHA256, format),
            Code::InvalidArgument,
        );
    }
    // Reserved, invalid and malformed slots; f9 for a signature.
    for slot in [
        "f9",
        "attestation",
        "9b",
        "80",
        "81",
        "00",
        "ff",
        "96",
        "0x77",
        "zz",
        "",
        " ",
        "9c9c",
        "9",
        "retired0",
        "retired21",
        "9c\0",
        "\u{1f511}",
    ] {
        sign(
            &format!("slot_{}", hex::encode(slot)),
            sign_req(slot_ref(slot, None), d32.clone(), SHA256, DER),
            Code::InvalidArgument,
        );
    }
    // Valid slots with no key: answered from the key cache.
    for slot in ["9a", "9d", "9e", "82", "95"] {
        sign(
            &format!("empty_slot_{slot}"),
            sign_req(slot_ref(slot, None), d32.clone(), SHA256, DER),
            Code::NotFound,
        );
    }
    sign(
        "unknown_token_serial",
        sign_req(slot_ref("9c", Some(SERIAL + 1)), d32.clone(), SHA256, DER),
        Code::NotFound,
    );
    // Key ids of the wrong length or alphabet; an unknown one.
    let good_id = key.key_id.clone();
    for (name, id) in [
        ("empty", String::new()),
        ("len63", good_id[..63].to_string()),
        ("len65", format!("{good_id}0")),
        ("len128", good_id.repeat(2)),
        ("len32", good_id[..32].to_string()),
        ("nonhex", format!("{}g", &good_id[..63])),
        ("prefixed", format!("0x{}", &good_id[..62])),
        ("sha256_prefix", format!("sha256:{}", &good_id[..57])),
        ("unicode", format!("{}é", &good_id[..62])),
    ] {
        sign(
            &format!("key_id_{name}"),
            sign_req(id_ref(&id), d32.clone(), SHA256, DER),
            Code::InvalidArgument,
        );
    }
    sign(
        "key_id_unknown",
        sign_req(id_ref(&"0".repeat(64)), d32.clone(), SHA256, DER),
        Code::NotFound,
    );
    // Missing fields.
    sign(
        "no_key",
        sign_req(None, d32.clone(), SHA256, DER),
        Code::InvalidArgument,
    );
    sign(
        "empty_key_ref",
        sign_req(Some(pb::KeyRef { key: None }), d32.clone(), SHA256, DER),
        Code::InvalidArgument,
    );
    sign(
        "no_input",
        pb::SignRequest {
            key: s9c(),
            input: None,
            hash: SHA256,
            format: DER,
            padding: pb::RsaPadding::Unspecified as i32,
        },
        Code::InvalidArgument,
    );
    // Larger than max_request_bytes (64 KiB here).
    sign(
        "oversized_message",
        pb::SignRequest {
            key: s9c(),
            input: Some(pb::sign_request::Input::Message(vec![0; 200 * 1024])),
            hash: SHA256,
            format: DER,
            padding: pb::RsaPadding::Unspecified as i32,
        },
        Code::OutOfRange,
    );
    // The same fields on the other RPCs that take a key.
    for (name, r, code) in [
        ("f9", slot_ref("f9", None), Code::InvalidArgument),
        ("9b", slot_ref("9b", None), Code::InvalidArgument),
        ("empty_slot", slot_ref("", None), Code::InvalidArgument),
        (
            "key_id_len63",
            id_ref(&good_id[..63]),
            Code::InvalidArgument,
        ),
        ("key_id_unknown", id_ref(&"f".repeat(64)), Code::NotFound),
        ("no_key", None, Code::InvalidArgument),
    ] {
        out.push((
            format!("get_public_key_{name}"),
            Case::PublicKey(pb::GetPublicKeyRequest { key: r.clone() }),
            code,
        ));
        out.push((
            format!("attest_{name}"),
            Case::Attest(pb::AttestRequest { key: r }),
            code,
        ));
    }
    out
}

/// Send every hostile case (and one denied caller); returns what misbehaved.
async fn run_cases(
    c: &mut signer_proto::v1::signer_client::SignerClient<tonic::transport::Channel>,
    daemon: &Daemon,
    key: &KeyInfo,
    apdus: &dyn Fn() -> usize,
    prefix: &str,
) -> Vec<String> {
    let euid = rustix::process::geteuid().as_raw();
    let before = apdus();
    let mut failures = Vec::new();
    let all = cases(key);
    for (name, case, want) in all {
        let (result, streamed) = match case {
            Case::Sign(r) => {
                let unary = c.sign(r.clone()).await.map(drop);
                let streamed = match c.sign_with_events(r).await {
                    Err(e) => Err(e),
                    Ok(s) => {
                        let mut s = s.into_inner();
                        let mut last = Ok(());
                        loop {
                            match s.message().await {
                                Ok(Some(_)) => {}
                                Ok(None) => break,
                                Err(e) => {
                                    last = Err(e);
                                    break;
                                }
                            }
                        }
                        last
                    }
                };
                (unary, Some(streamed))
            }
            Case::PublicKey(r) => (c.get_public_key(r).await.map(drop), None),
            Case::Attest(r) => (c.attest(r).await.map(drop), None),
        };
        let got = result.as_ref().err().map(|e| e.code());
        let got_streamed = streamed
            .as_ref()
            .map(|s| s.as_ref().err().map(|e| e.code()));
        let moved = apdus() - before;
        let ok =
            got == Some(want) && got_streamed.unwrap_or(Some(want)) == Some(want) && moved == 0;
        println!(
            "RELIABILITY\thostile\t{prefix}_{name}\t{}\tcode={:?} streamed={:?} want={want:?} apdus={moved}",
            if ok { "PASS" } else { "FAIL" },
            got,
            got_streamed.flatten(),
        );
        if !ok {
            failures.push(format!(
                "{name}: got {got:?} / streamed {got_streamed:?} (want {want:?}), {moved} APDUs; {:?}",
                result.err().map(|e| e.message().to_string())
            ));
        }
    }

    // A caller the policy denies: nothing reaches the card either.
    daemon.set_policy(Policy::only_daemon_uid(euid + 1));
    let d32 = sha2::Sha256::digest(b"denied").to_vec();
    let denied = c
        .sign(sign_req(slot_ref("9c", None), d32.clone(), SHA256, DER))
        .await
        .unwrap_err();
    let moved = apdus() - before;
    let ok = denied.code() == Code::PermissionDenied && moved == 0;
    println!(
        "RELIABILITY\thostile\t{prefix}_denied_caller\t{}\tcode={:?} apdus={moved}",
        if ok { "PASS" } else { "FAIL" },
        denied.code()
    );
    if !ok {
        failures.push(format!("denied caller: {denied:?}, {moved} APDUs"));
    }
    daemon.set_policy(Policy::only_daemon_uid(euid));
    failures
}

/// A fresh emulated card with a P-256 key in 9c, in a loopback reader.
fn card() -> (tempfile::TempDir, SharedCard, KeyInfo) {
    let dir = tempfile::tempdir().unwrap();
    let mut token = EmulatedToken::init(
        dir.path().join("t.state"),
        &InitOptions {
            serial: Some(SERIAL),
            ..InitOptions::default()
        },
    )
    .unwrap();
    let alg = token.management_key_algorithm();
    token
        .authenticate(&ManagementKey::default_for(alg).unwrap())
        .unwrap();
    let key = token
        .generate_key(
            SlotId::Signature,
            Algorithm::EccP256,
            PinPolicy::Once,
            TouchPolicy::Never,
        )
        .unwrap();
    let card = SharedCard::new("Loopback 00 00", Box::new(EmulatedSmartCard::new(token)));
    (dir, card, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_rejected_for_their_content_send_zero_apdus() {
    let (dir, card, key) = card();
    let for_worker = card.clone();
    let (worker, first) = TokenWorker::spawn(
        "yubikey (loopback)",
        Box::new(move || {
            let t = HardwareToken::open(
                Box::new(LoopbackConnector {
                    card: for_worker.clone(),
                }),
                Some(SERIAL),
            )?;
            Ok(Box::new(t) as Box<dyn Token>)
        }),
        WorkerOptions {
            queue_capacity: 16,
            poll_interval: None,
            pin_source: PinSource::Fixed(Pin::parse_pin("123456").unwrap()),
        },
    )
    .unwrap();
    first.unwrap();
    let euid = rustix::process::geteuid().as_raw();
    let daemon = Daemon::new(
        vec![worker],
        Policy::only_daemon_uid(euid),
        AuditLog::open(dir.path().join("audit.jsonl")).unwrap(),
        AttestationTrust::default(),
        DaemonOptions {
            max_request_bytes: 64 * 1024,
            ..DaemonOptions::default()
        },
    );
    let socket = dir.path().join("run/s.sock");
    let bound = signer_daemon::socket::BoundSocket::bind(&socket).unwrap();
    bound.listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::UnixListener::from_std(bound.listener.try_clone().unwrap()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(signer_daemon::server::run(
        listener,
        daemon.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut c = signer_proto::v1::signer_client::SignerClient::new(
        signer_proto::unix::connect(&socket).await.unwrap(),
    );
    let apdus = || card.instructions().len();

    // Wait until the worker has listed the key (its first connection's
    // APDUs), then start counting.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while c
        .list_keys(pb::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < until,
            "the key was never listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before = apdus();

    let all_cases = cases(&key).len();
    let failures = run_cases(&mut c, &daemon, &key, &apdus, "no_apdu").await;
    let total = all_cases + 1;
    let d32 = sha2::Sha256::digest(b"valid").to_vec();

    assert!(
        failures.is_empty(),
        "{} of {total} hostile requests misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(apdus(), before, "a rejected request reached the card");

    // The counter does move for a valid request, and its signature verifies.
    let r = c
        .sign(sign_req(slot_ref("9c", None), d32.clone(), SHA256, DER))
        .await
        .unwrap()
        .into_inner();
    assert!(apdus() > before, "the valid request reached the card");
    assert!(common::verify_p256(
        &key.public_key.spki_der,
        &d32,
        &r.signature
    ));
    println!(
        "RELIABILITY\thostile\tno_apdu_valid_request_reaches_card\tPASS\tapdus={}",
        apdus() - before
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// The emulated token, shared so the test can read its command counter.
#[derive(Clone)]
struct Shared(std::sync::Arc<std::sync::Mutex<EmulatedToken>>);

impl Token for Shared {
    fn info(&mut self) -> signer_lib::Result<TokenInfo> {
        self.0.lock().unwrap().info()
    }
    fn list_keys(&mut self) -> signer_lib::Result<Vec<KeyInfo>> {
        self.0.lock().unwrap().list_keys()
    }
    fn key(&mut self, slot: SlotId) -> signer_lib::Result<KeyInfo> {
        self.0.lock().unwrap().key(slot)
    }
    fn sign(
        &mut self,
        r: &SignRequest<'_>,
        e: &mut dyn FnMut(TokenEvent),
    ) -> signer_lib::Result<Vec<u8>> {
        self.0.lock().unwrap().sign(r, e)
    }
    fn attest(&mut self, slot: SlotId) -> signer_lib::Result<Attestation> {
        self.0.lock().unwrap().attest(slot)
    }
    fn verify_pin(&mut self, pin: &Pin) -> signer_lib::Result<()> {
        self.0.lock().unwrap().verify_pin(pin)
    }
    fn retry_counters(&mut self) -> signer_lib::Result<RetryCounters> {
        self.0.lock().unwrap().retry_counters()
    }
    fn change_pin(&mut self, a: &Pin, b: &Pin) -> signer_lib::Result<()> {
        self.0.lock().unwrap().change_pin(a, b)
    }
    fn change_puk(&mut self, a: &Puk, b: &Puk) -> signer_lib::Result<()> {
        self.0.lock().unwrap().change_puk(a, b)
    }
    fn unblock_pin(&mut self, a: &Puk, b: &Pin) -> signer_lib::Result<()> {
        self.0.lock().unwrap().unblock_pin(a, b)
    }
    fn authenticate(&mut self, k: &ManagementKey) -> signer_lib::Result<()> {
        self.0.lock().unwrap().authenticate(k)
    }
    fn generate_key(
        &mut self,
        s: SlotId,
        a: Algorithm,
        p: PinPolicy,
        t: TouchPolicy,
    ) -> signer_lib::Result<KeyInfo> {
        self.0.lock().unwrap().generate_key(s, a, p, t)
    }
    fn import_key(
        &mut self,
        s: SlotId,
        k: &ImportKey,
        p: PinPolicy,
        t: TouchPolicy,
    ) -> signer_lib::Result<KeyInfo> {
        self.0.lock().unwrap().import_key(s, k, p, t)
    }
    fn put_certificate(&mut self, s: SlotId, c: &[u8]) -> signer_lib::Result<()> {
        self.0.lock().unwrap().put_certificate(s, c)
    }
    fn set_management_key(&mut self, k: &ManagementKey, t: bool) -> signer_lib::Result<()> {
        self.0.lock().unwrap().set_management_key(k, t)
    }
    fn reset(&mut self) -> signer_lib::Result<()> {
        self.0.lock().unwrap().reset()
    }
}

/// The same cases against the emulated token served in process (the
/// daemon's `emulated:` backend), counted by the emulated card's own
/// command counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_requests_send_no_command_to_the_emulated_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut token = EmulatedToken::init(
        dir.path().join("t.state"),
        &InitOptions {
            serial: Some(SERIAL),
            ..InitOptions::default()
        },
    )
    .unwrap();
    let alg = token.management_key_algorithm();
    token
        .authenticate(&ManagementKey::default_for(alg).unwrap())
        .unwrap();
    let key = token
        .generate_key(
            SlotId::Signature,
            Algorithm::EccP256,
            PinPolicy::Once,
            TouchPolicy::Never,
        )
        .unwrap();
    let shared = Shared(std::sync::Arc::new(std::sync::Mutex::new(token)));
    let for_worker = shared.clone();
    let (worker, first) = TokenWorker::spawn(
        "emulated (shared)",
        Box::new(move || Ok(Box::new(for_worker.clone()) as Box<dyn Token>)),
        WorkerOptions {
            queue_capacity: 16,
            poll_interval: None,
            pin_source: PinSource::Fixed(Pin::parse_pin("123456").unwrap()),
        },
    )
    .unwrap();
    first.unwrap();
    let euid = rustix::process::geteuid().as_raw();
    let daemon = Daemon::new(
        vec![worker],
        Policy::only_daemon_uid(euid),
        AuditLog::open(dir.path().join("audit.jsonl")).unwrap(),
        AttestationTrust::default(),
        DaemonOptions {
            max_request_bytes: 64 * 1024,
            ..DaemonOptions::default()
        },
    );
    let socket = dir.path().join("run/s.sock");
    let bound = signer_daemon::socket::BoundSocket::bind(&socket).unwrap();
    bound.listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::UnixListener::from_std(bound.listener.try_clone().unwrap()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(signer_daemon::server::run(
        listener,
        daemon.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut c = signer_proto::v1::signer_client::SignerClient::new(
        signer_proto::unix::connect(&socket).await.unwrap(),
    );
    c.list_keys(pb::ListKeysRequest::default()).await.unwrap();
    let commands = || shared.0.lock().unwrap().command_count() as usize;
    let before = commands();
    let failures = run_cases(&mut c, &daemon, &key, &commands, "no_command_emulated").await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(commands(), before);
    let d32 = sha2::Sha256::digest(b"valid").to_vec();
    let r = c
        .sign(sign_req(slot_ref("9c", None), d32.clone(), SHA256, DER))
        .await
        .unwrap()
        .into_inner();
    assert!(commands() > before, "the valid request reached the token");
    assert!(common::verify_p256(
        &key.public_key.spki_der,
        &d32,
        &r.signature
    ));
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[path = "../../signer-lib/fuzz/harness/piv_responses.rs"]
mod malicious;

/// The daemon in front of a malicious card: a signature that does not
/// verify is INTERNAL and never released, whatever the card answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malicious_cards_bad_signature_is_never_released_by_the_daemon() {
    let rig = std::sync::Arc::new(malicious::Rig::new());
    let for_worker = rig.card.clone();
    let (worker, first) = TokenWorker::spawn(
        "yubikey (malicious loopback)",
        Box::new(move || {
            let t = HardwareToken::open(
                Box::new(LoopbackConnector {
                    card: for_worker.clone(),
                }),
                Some(malicious::SERIAL),
            )?;
            Ok(Box::new(t) as Box<dyn Token>)
        }),
        WorkerOptions {
            queue_capacity: 16,
            poll_interval: None,
            pin_source: PinSource::Fixed(Pin::parse_pin("123456").unwrap()),
        },
    )
    .unwrap();
    first.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let euid = rustix::process::geteuid().as_raw();
    let daemon = Daemon::new(
        vec![worker],
        Policy::only_daemon_uid(euid),
        AuditLog::open(dir.path().join("audit.jsonl")).unwrap(),
        AttestationTrust::default(),
        DaemonOptions::default(),
    );
    let socket = dir.path().join("run/s.sock");
    let bound = signer_daemon::socket::BoundSocket::bind(&socket).unwrap();
    bound.listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::UnixListener::from_std(bound.listener.try_clone().unwrap()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(signer_daemon::server::run(
        listener,
        daemon.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut c = signer_proto::v1::signer_client::SignerClient::new(
        signer_proto::unix::connect(&socket).await.unwrap(),
    );
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while c
        .list_keys(pb::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys
        .len()
        < 2
    {
        assert!(std::time::Instant::now() < until, "keys never listed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let ga = signer_lib::piv::ins::GENERAL_AUTHENTICATE;
    let digest = sha2::Sha256::digest(b"malicious card behind the daemon").to_vec();
    let foreign = {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let sk = p256::ecdsa::SigningKey::from_slice(&[0x24; 32]).unwrap();
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
        let der = sig.to_der().as_bytes().to_vec();
        let mut inner = Vec::new();
        signer_lib::piv::tlv::write(&mut inner, 0x82, &der).unwrap();
        let mut out = Vec::new();
        signer_lib::piv::tlv::write(&mut out, 0x7c, &inner).unwrap();
        out.extend([0x90, 0x00]);
        out
    };
    let cases: Vec<(&str, malicious::Tamper)> = vec![
        (
            "flipped_signature_byte",
            Box::new(move |cmd: &[u8], honest: zeroize::Zeroizing<Vec<u8>>| {
                let mut r = honest.to_vec();
                if cmd.get(1) == Some(&ga) && r.len() > 8 {
                    let i = r.len() - 6;
                    r[i] ^= 0x01;
                }
                r
            }),
        ),
        (
            "valid_signature_of_another_key",
            Box::new(move |cmd: &[u8], honest: zeroize::Zeroizing<Vec<u8>>| {
                if cmd.get(1) == Some(&ga) {
                    foreign.clone()
                } else {
                    honest.to_vec()
                }
            }),
        ),
        (
            "garbage_in_the_signature_tag",
            Box::new(move |cmd: &[u8], honest: zeroize::Zeroizing<Vec<u8>>| {
                if cmd.get(1) == Some(&ga) {
                    vec![0x7c, 0x04, 0x82, 0x02, 0x30, 0x00, 0x90, 0x00]
                } else {
                    honest.to_vec()
                }
            }),
        ),
    ];
    let mut failures = Vec::new();
    for (name, tamper) in cases {
        rig.set_tamper(Some(tamper));
        let r = c
            .sign(sign_req(slot_ref("9c", None), digest.clone(), SHA256, DER))
            .await;
        rig.set_tamper(None);
        let ok = matches!(&r, Err(e) if e.code() == Code::Internal && e.message().contains("not released"));
        println!(
            "RELIABILITY\thostile\tdaemon_malicious_card_{name}\t{}\tcode={:?} released={}",
            if ok { "PASS" } else { "FAIL" },
            r.as_ref().err().map(|e| e.code()),
            r.is_ok()
        );
        if !ok {
            failures.push(format!("{name}: {r:?}"));
        }
    }
    // The honest card again: a signature, verified independently.
    let r = c
        .sign(sign_req(slot_ref("9c", None), digest.clone(), SHA256, DER))
        .await
        .unwrap()
        .into_inner();
    assert!(malicious::verifies(
        &rig.p256.public_key,
        &digest,
        &r.signature
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
