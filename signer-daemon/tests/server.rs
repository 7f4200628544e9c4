//! The gRPC service driven in-process over a temporary Unix socket, on an
//! in-memory token double. Each test asserts behaviour a caller sees: codes,
//! messages, signatures that verify, audit lines, and (through the double's
//! counters) that rejected requests never reach the card.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Card, Setup, TestDaemon, verify_p256};
use sha2::Digest;
use signer_daemon::policy::{Policy, RuleConfig};
use signer_lib::session::PinSource;
use signer_lib::{Error, Pin, PinPolicy, SlotId, TouchPolicy};
use signer_proto::v1 as pb;
use tonic::Code;

fn by_slot(slot: &str) -> Option<pb::KeyRef> {
    Some(pb::KeyRef {
        key: Some(pb::key_ref::Key::Slot(pb::SlotRef {
            token_serial: None,
            slot: slot.into(),
        })),
    })
}

fn by_id(id: &str) -> Option<pb::KeyRef> {
    Some(pb::KeyRef {
        key: Some(pb::key_ref::Key::KeyId(id.into())),
    })
}

fn sign_req(key: Option<pb::KeyRef>, digest: Vec<u8>) -> pb::SignRequest {
    pb::SignRequest {
        key,
        input: Some(pb::sign_request::Input::Digest(digest)),
        hash: pb::HashAlgorithm::Sha256 as i32,
        format: pb::SignatureFormat::Der as i32,
        padding: pb::RsaPadding::Unspecified as i32,
    }
}

fn card_with_keys() -> std::sync::Arc<Card> {
    let card = Card::new(4242);
    card.add_key(SlotId::Signature, PinPolicy::Never, TouchPolicy::Never);
    card.add_key(SlotId::Authentication, PinPolicy::Once, TouchPolicy::Never);
    card
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_and_signs_and_every_signature_verifies() {
    let card = card_with_keys();
    let mut d = TestDaemon::start(Setup::one_card(card.clone())).await;
    let mut c = d.client().await;

    let tokens = c
        .list_tokens(pb::ListTokensRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tokens.tokens.len(), 1);
    assert_eq!(tokens.tokens[0].serial, 4242);
    assert!(tokens.tokens[0].available);

    let keys = c
        .list_keys(pb::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 2);
    let k9c = keys.iter().find(|k| k.slot == "9c").unwrap().clone();
    assert_eq!(k9c.algorithm, pb::Algorithm::EccP256 as i32);
    assert_eq!(
        k9c.key_id,
        hex::encode(sha2::Sha256::digest(&k9c.public_key_der))
    );
    assert!(k9c.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(k9c.pin_policy, pb::PinPolicy::Never as i32);

    // By slot, DER.
    let digest = sha2::Sha256::digest(b"root.json v1").to_vec();
    let r = c
        .sign(sign_req(by_slot("9c"), digest.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.key_id, k9c.key_id);
    assert_eq!(r.digest, digest);
    assert!(verify_p256(&k9c.public_key_der, &digest, &r.signature));
    // A signature over another digest must not verify (the verifier can fail).
    assert!(!verify_p256(&k9c.public_key_der, &[0u8; 32], &r.signature));

    // By key id, raw r||s.
    let mut req = sign_req(by_id(&k9c.key_id), digest.clone());
    req.format = pb::SignatureFormat::Raw as i32;
    let r = c.sign(req).await.unwrap().into_inner();
    assert_eq!(r.signature.len(), 64);
    let sig = p256::ecdsa::Signature::from_slice(&r.signature).unwrap();
    assert!(verify_p256(
        &k9c.public_key_der,
        &digest,
        sig.to_der().as_bytes()
    ));

    // A message the daemon hashes.
    let req = pb::SignRequest {
        key: by_slot("signature"),
        input: Some(pb::sign_request::Input::Message(b"hello".to_vec())),
        hash: pb::HashAlgorithm::Sha256 as i32,
        format: pb::SignatureFormat::Der as i32,
        padding: pb::RsaPadding::Unspecified as i32,
    };
    let r = c.sign(req).await.unwrap().into_inner();
    assert_eq!(r.digest, sha2::Sha256::digest(b"hello").to_vec());
    assert!(verify_p256(&k9c.public_key_der, &r.digest, &r.signature));

    // PIN policy once: the daemon verifies the PIN from its source once.
    let k9a = keys.iter().find(|k| k.slot == "9a").unwrap();
    for _ in 0..3 {
        let r = c
            .sign(sign_req(by_slot("9a"), digest.clone()))
            .await
            .unwrap()
            .into_inner();
        assert!(verify_p256(&k9a.public_key_der, &digest, &r.signature));
    }

    let pk = c
        .get_public_key(pb::GetPublicKeyRequest { key: by_slot("9c") })
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    assert_eq!(pk.public_key_der, k9c.public_key_der);

    // One audit line per request, with who, what and the digest; no PIN.
    d.stop().await;
    let lines = d.audit_lines();
    assert_eq!(lines.len(), 9, "{lines:#?}");
    let signs: Vec<_> = lines.iter().filter(|l| l["rpc"] == "Sign").collect();
    assert_eq!(signs.len(), 6);
    let first = signs[0];
    assert_eq!(first["outcome"], "ok");
    assert_eq!(first["code"], "OK");
    assert_eq!(first["uid"], rustix::process::geteuid().as_raw());
    assert_eq!(first["pid"], std::process::id());
    assert!(first["exe"].as_str().unwrap().contains("server"));
    assert_eq!(first["key_id"], k9c.key_id.as_str());
    assert_eq!(first["slot"], "9c");
    assert_eq!(first["token_serial"], 4242);
    assert_eq!(first["digest"], hex::encode(&digest));
    assert_eq!(first["hash"], "sha256");
    assert_eq!(first["rule"], "builtin:daemon-uid");
    assert!(first["latency_ms"].as_f64().unwrap() >= 0.0);
    let text = std::fs::read_to_string(&d.audit).unwrap();
    assert!(!text.contains("123456"), "the PIN must never be audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_get_documented_codes_and_never_reach_the_card() {
    let card = card_with_keys();
    let mut d = TestDaemon::start(Setup::one_card(card.clone())).await;
    let mut c = d.client().await;
    let good = sha2::Sha256::digest(b"x").to_vec();
    let ops_before = card.card_ops.load(Ordering::SeqCst);

    let cases: Vec<(pb::SignRequest, Code, &str)> = vec![
        (
            sign_req(by_slot("9c"), vec![1; 31]),
            Code::InvalidArgument,
            "expected 32 bytes, got 31",
        ),
        (
            {
                let mut r = sign_req(by_slot("9c"), vec![1; 48]);
                r.hash = pb::HashAlgorithm::Sha256 as i32;
                r
            },
            Code::InvalidArgument,
            "expected 32 bytes, got 48",
        ),
        (
            {
                let mut r = sign_req(by_slot("9c"), good.clone());
                r.hash = 42;
                r
            },
            Code::InvalidArgument,
            "unknown hash value 42",
        ),
        (
            {
                let mut r = sign_req(by_slot("9c"), good.clone());
                r.hash = 0;
                r
            },
            Code::InvalidArgument,
            "hash is required",
        ),
        (
            {
                let mut r = sign_req(by_slot("9c"), good.clone());
                r.format = 7;
                r
            },
            Code::InvalidArgument,
            "unknown signature format value 7",
        ),
        (
            sign_req(by_slot("9b"), good.clone()),
            Code::InvalidArgument,
            "invalid slot 9b",
        ),
        (
            sign_req(by_slot("f9"), good.clone()),
            Code::InvalidArgument,
            "attestation",
        ),
        (
            sign_req(None, good.clone()),
            Code::InvalidArgument,
            "key is required",
        ),
        (
            sign_req(by_slot("9d"), good.clone()),
            Code::NotFound,
            "no key in slot 9d",
        ),
        (
            sign_req(by_id(&"ab".repeat(32)), good.clone()),
            Code::NotFound,
            "no key with id",
        ),
        (
            sign_req(by_id("abc"), good.clone()),
            Code::InvalidArgument,
            "64 hex digits",
        ),
        (
            pb::SignRequest {
                input: None,
                ..sign_req(by_slot("9c"), vec![])
            },
            Code::InvalidArgument,
            "input is required",
        ),
    ];
    for (req, code, needle) in cases {
        let e = c.sign(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{}", e.message());
        assert!(
            e.message().contains(needle),
            "{:?} lacks {needle:?}",
            e.message()
        );
    }
    assert_eq!(
        card.card_ops.load(Ordering::SeqCst),
        ops_before,
        "a rejected request reached the card"
    );

    // Oversized: refused by the transport's limit with OUT_OF_RANGE.
    let huge = pb::SignRequest {
        key: by_slot("9c"),
        input: Some(pb::sign_request::Input::Message(vec![0u8; 2 * 1024 * 1024])),
        hash: pb::HashAlgorithm::Sha256 as i32,
        format: pb::SignatureFormat::Der as i32,
        padding: pb::RsaPadding::Unspecified as i32,
    };
    let e = c.sign(huge).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{}", e.message());
    assert!(e.message().contains("limit"), "{}", e.message());
    assert_eq!(card.card_ops.load(Ordering::SeqCst), ops_before);

    // Garbage bytes on a raw connection: the daemon drops that connection...
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\xfe garbage \x16\x03\x01")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf)).await;
        let mut raw = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
        raw.write_all(&[0xde; 4096]).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf)).await;
    }
    // ...and keeps serving, on the old connection and new ones.
    let r = c
        .sign(sign_req(by_slot("9c"), good.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.signature.is_empty());
    let mut fresh = d.client().await;
    fresh
        .sign(sign_req(by_slot("9c"), good.clone()))
        .await
        .unwrap();

    d.stop().await;
    let lines = d.audit_lines();
    let errors = lines.iter().filter(|l| l["outcome"] == "error").count();
    assert_eq!(errors, 12, "every rejected request is audited");
    let bad_len = lines
        .iter()
        .find(|l| l["code"] == "INVALID_ARGUMENT")
        .unwrap();
    assert!(
        bad_len["message"]
            .as_str()
            .unwrap()
            .contains("bad digest length")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn touch_is_announced_before_the_token_blocks_and_listing_does_not_wait() {
    let card = Card::new(7);
    let key = card.add_key(SlotId::Signature, PinPolicy::Never, TouchPolicy::Always);
    card.gate.close();
    let mut d = TestDaemon::start(Setup::one_card(card.clone())).await;
    let mut c = d.client().await;
    let digest = sha2::Sha256::digest(b"touch me").to_vec();
    let mut stream = c
        .sign_with_events(sign_req(by_slot("9c"), digest.clone()))
        .await
        .unwrap()
        .into_inner();
    // The first event arrives while the token is blocked waiting for the touch.
    let first = stream.message().await.unwrap().unwrap();
    match first.event {
        Some(pb::sign_event::Event::TouchRequired(t)) => {
            assert_eq!(t.slot, "9c");
            assert_eq!(t.token_serial, 7);
            assert_eq!(t.timeout_ms, 15_000);
        }
        other => panic!("expected TouchRequired, got {other:?}"),
    }
    assert_eq!(card.gate.waiting(), 1, "the token is blocked on the touch");

    // Listing is served from the cache while the card is busy.
    let mut other = d.client().await;
    let keys = other
        .list_keys(pb::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1);
    assert_eq!(
        card.gate.waiting(),
        1,
        "still blocked: listing did not wait for it"
    );

    card.gate.open();
    let last = stream.message().await.unwrap().unwrap();
    let Some(pb::sign_event::Event::Signature(r)) = last.event else {
        panic!("expected the signature");
    };
    assert!(verify_p256(&key.public_key.spki_der, &digest, &r.signature));
    assert!(stream.message().await.unwrap().is_none(), "the stream ends");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_queue_is_resource_exhausted_and_expired_requests_skip_the_card() {
    let card = Card::new(9);
    card.add_key(SlotId::Signature, PinPolicy::Never, TouchPolicy::Always);
    card.gate.close();
    let mut setup = Setup::one_card(card.clone());
    setup.queue_capacity = 2;
    // The audit log on tmpfs: this test times the daemon's DEADLINE_EXCEEDED
    // (sent 200 ms before a 2 s client deadline, after its audit line is
    // durable) against the client's own timer, and on the CI disk one
    // fdatasync sometimes stalls for longer than that (165 and 580 ms seen
    // while the other tests of this file ran; the test failed 1 run in 20
    // before and after the audit writer's group-commit change). What is
    // tested here is the queue; durability is the reliability suites'.
    let shm = tempfile::tempdir_in("/dev/shm")
        .expect("this test needs a tmpfs at /dev/shm for its audit log");
    setup.audit = Some(shm.path().join("audit.jsonl"));
    let mut d = TestDaemon::start(setup).await;
    let digest = sha2::Sha256::digest(b"q").to_vec();

    // One request holds the card (waiting for a touch)...
    let mut c0 = d.client().await;
    let req = sign_req(by_slot("9c"), digest.clone());
    let holder = tokio::spawn(async move { c0.sign(req).await });
    while card.gate.waiting() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...two wait in the queue, one with a short deadline...
    let ch = d.channel().await;
    let mut short = signer_proto::v1::signer_client::SignerClient::new(ch.clone());
    let mut req = tonic::Request::new(sign_req(by_slot("9c"), digest.clone()));
    req.set_timeout(Duration::from_secs(2));
    let short_call = tokio::spawn(async move { short.sign(req).await });
    let mut waiter = signer_proto::v1::signer_client::SignerClient::new(ch.clone());
    let req = sign_req(by_slot("9c"), digest.clone());
    let waiter_call = tokio::spawn(async move { waiter.sign(req).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...and the next is refused at once.
    let mut c3 = signer_proto::v1::signer_client::SignerClient::new(ch.clone());
    let started = Instant::now();
    let e = c3
        .sign(sign_req(by_slot("9c"), digest.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(e.message().contains("busy"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused without waiting"
    );

    // The short-deadline request times out while queued.
    let e = short_call.await.unwrap().unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{}", e.message());

    card.gate.open();
    holder.await.unwrap().unwrap();
    waiter_call.await.unwrap().unwrap();
    // Exactly two signatures were made: the expired request never reached the card.
    assert_eq!(card.signatures.load(Ordering::SeqCst), 2);
    d.stop().await;
    let lines = d.audit_lines();
    assert!(
        lines
            .iter()
            .any(|l| l["code"] == "RESOURCE_EXHAUSTED" && l["outcome"] == "error")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["code"] == "DEADLINE_EXCEEDED" && l["outcome"] == "error"),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_pin_is_reported_with_retries_and_never_retried() {
    let card = Card::new(11);
    card.add_key(SlotId::Signature, PinPolicy::Always, TouchPolicy::Never);
    let mut setup = Setup::one_card(card.clone());
    setup.pin = PinSource::Fixed(Pin::parse_pin("654321").unwrap());
    let mut d = TestDaemon::start(setup).await;
    let mut c = d.client().await;
    let digest = sha2::Sha256::digest(b"p").to_vec();
    let e = c
        .sign(sign_req(by_slot("9c"), digest.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("2 tries left"), "{}", e.message());
    let e = c
        .sign(sign_req(by_slot("9c"), digest.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("will not be tried again"),
        "{}",
        e.message()
    );
    assert_eq!(
        *card.pin_retries.lock().unwrap(),
        2,
        "the wrong PIN was retried"
    );
    d.stop().await;
    let text = std::fs::read_to_string(&d.audit).unwrap();
    assert!(!text.contains("654321"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_card_is_unavailable_then_the_daemon_reconnects() {
    let card = card_with_keys();
    let mut d = TestDaemon::start(Setup::one_card(card.clone())).await;
    let mut c = d.client().await;
    let digest = sha2::Sha256::digest(b"r").to_vec();
    *card.fail_next.lock().unwrap() = Some(|| Error::CardRemoved {
        detail: "SCARD_W_REMOVED_CARD".into(),
    });
    *card.absent.lock().unwrap() = true;
    let e = c
        .sign(sign_req(by_slot("9c"), digest.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("reinsert"), "{}", e.message());
    let e = c
        .sign(sign_req(by_slot("9c"), digest.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    let tokens = c
        .list_tokens(pb::ListTokensRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!tokens.tokens[0].available);

    *card.absent.lock().unwrap() = false;
    let opens_before = card.opens.load(Ordering::SeqCst);
    // The worker reconnects by itself (every second while unreachable).
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let t = c
            .list_tokens(pb::ListTokensRequest {})
            .await
            .unwrap()
            .into_inner();
        if t.tokens[0].available {
            break;
        }
        assert!(Instant::now() < until, "the daemon did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c
        .sign(sign_req(by_id(&card_key_id(&card)), digest.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.signature.is_empty());
    assert!(card.opens.load(Ordering::SeqCst) > opens_before);
    d.stop().await;
}

fn card_key_id(card: &Card) -> String {
    use p256::pkcs8::EncodePublicKey;
    let keys = card.keys.lock().unwrap();
    let (sk, _, _) = keys.get(&SlotId::Signature).unwrap();
    hex::encode(sha2::Sha256::digest(
        sk.verifying_key().to_public_key_der().unwrap().as_bytes(),
    ))
}

fn rules(text: &str) -> Vec<RuleConfig> {
    #[derive(serde::Deserialize)]
    struct F {
        rule: Vec<RuleConfig>,
    }
    toml::from_str::<F>(text).unwrap().rule
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policy_denials_name_the_rule_and_are_audited() {
    let me = rustix::process::geteuid().as_raw();
    let card = card_with_keys();
    let mut setup = Setup::one_card(card.clone());
    // Pretend the daemon runs as another uid, so this process is a caller
    // like any other.
    setup.policy = Some(
        Policy::from_config(
            me + 1,
            &rules(&format!(
                r#"
[[rule]]
name = "readers"
users = [{me}]
operations = ["list"]
keys = ["*"]

[[rule]]
name = "no-auth-key"
users = [{me}]
operations = ["sign"]
keys = ["9a"]
effect = "deny"

[[rule]]
name = "root-signers"
users = [{me}]
operations = ["sign"]
keys = ["4242:9c"]
"#
            )),
        )
        .unwrap(),
    );
    let mut d = TestDaemon::start(setup).await;
    let mut c = d.client().await;
    let digest = sha2::Sha256::digest(b"policy").to_vec();
    let ops = card.card_ops.load(Ordering::SeqCst);

    c.sign(sign_req(by_slot("9c"), digest.clone()))
        .await
        .unwrap();
    let e = c
        .sign(sign_req(by_slot("9a"), digest.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("\"no-auth-key\""), "{}", e.message());
    let e = c
        .attest(pb::AttestRequest { key: by_slot("9c") })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("default deny"), "{}", e.message());
    // A denied attest does not even reveal whether the key exists.
    let e = c
        .attest(pb::AttestRequest { key: by_slot("9d") })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        card.card_ops.load(Ordering::SeqCst),
        ops + 1,
        "only the allowed signature reached the card"
    );

    d.stop().await;
    let lines = d.audit_lines();
    let denied: Vec<_> = lines.iter().filter(|l| l["outcome"] == "denied").collect();
    assert_eq!(denied.len(), 3, "{lines:#?}");
    assert_eq!(denied[0]["rule"], "no-auth-key");
    assert_eq!(denied[0]["code"], "PERMISSION_DENIED");
    assert_eq!(denied[0]["slot"], "9a");
    assert_eq!(denied[1]["rule"], "default-deny");
    assert_eq!(lines[0]["rule"], "root-signers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_keys_shows_only_keys_the_caller_may_list() {
    let me = rustix::process::geteuid().as_raw();
    let card = card_with_keys();
    let mut setup = Setup::one_card(card.clone());
    setup.policy = Some(
        Policy::from_config(
            me + 1,
            &rules(&format!(
                "[[rule]]\nname=\"r\"\nusers=[{me}]\noperations=[\"list\"]\nkeys=[\"9c\"]\n"
            )),
        )
        .unwrap(),
    );
    let mut d = TestDaemon::start(setup).await;
    let mut c = d.client().await;
    let keys = c
        .list_keys(pb::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(
        keys.iter().map(|k| k.slot.as_str()).collect::<Vec<_>>(),
        ["9c"]
    );
    let e = c
        .get_public_key(pb::GetPublicKeyRequest { key: by_slot("9a") })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_without_peer_credentials_is_unauthenticated() {
    use signer_proto::v1::signer_server::Signer;
    let card = card_with_keys();
    let mut d = TestDaemon::start(Setup::one_card(card)).await;
    // Called directly, not through the socket: no connection, no credentials.
    let svc = signer_daemon::server::SignerService::new(d.daemon.clone());
    let e = svc
        .list_tokens(tonic::Request::new(pb::ListTokensRequest {}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    d.stop().await;
    let lines = d.audit_lines();
    assert_eq!(lines.last().unwrap()["code"], "UNAUTHENTICATED");
    assert!(lines.last().unwrap().get("uid").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_lets_the_signature_in_flight_finish_and_refuses_new_work() {
    let card = Card::new(5);
    let key = card.add_key(SlotId::Signature, PinPolicy::Never, TouchPolicy::Always);
    card.gate.close();
    let mut d = TestDaemon::start(Setup::one_card(card.clone())).await;
    let mut c = d.client().await;
    let digest = sha2::Sha256::digest(b"in flight").to_vec();
    let req = sign_req(by_slot("9c"), digest.clone());
    let in_flight = tokio::spawn(async move { c.sign(req).await });
    while card.gate.waiting() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.begin_stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are no longer accepted.
    let refused = tokio::time::timeout(Duration::from_secs(3), async {
        let ch = signer_proto::unix::connect(&d.socket).await?;
        let mut c = signer_proto::v1::signer_client::SignerClient::new(ch);
        c.list_tokens(pb::ListTokensRequest {})
            .await
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
    .await;
    assert!(
        !matches!(refused, Ok(Ok(()))),
        "a new call was served during shutdown"
    );
    card.gate.open();
    let r = in_flight.await.unwrap().unwrap().into_inner();
    assert!(verify_p256(&key.public_key.spki_der, &digest, &r.signature));
    d.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let card = card_with_keys();
    let mut d = TestDaemon::start(Setup::one_card(card.clone())).await;
    let mut h = HealthClient::new(d.channel().await);
    for service in ["", "signer.v1.Signer"] {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signature_that_does_not_verify_is_never_released() {
    let card = card_with_keys();
    card.wrong_key.store(true, Ordering::SeqCst);
    let mut d = TestDaemon::start(Setup::one_card(card.clone())).await;
    let mut c = d.client().await;
    let e = c
        .sign(sign_req(by_slot("9c"), sha2::Sha256::digest(b"f").to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert!(e.message().contains("does not verify"), "{}", e.message());
    assert_eq!(
        card.signatures.load(Ordering::SeqCst),
        1,
        "the card did sign"
    );
    d.stop().await;
    let lines = d.audit_lines();
    assert_eq!(lines[0]["outcome"], "error");
    assert_eq!(lines[0]["code"], "INTERNAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_that_cannot_be_audited_is_withheld() {
    let card = card_with_keys();
    let mut setup = Setup::one_card(card.clone());
    // Every write to /dev/full fails with ENOSPC.
    setup.audit = Some("/dev/full".into());
    let mut d = TestDaemon::start(setup).await;
    let mut c = d.client().await;
    let e = c
        .sign(sign_req(by_slot("9c"), sha2::Sha256::digest(b"a").to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("audit log"), "{}", e.message());
    assert!(e.message().contains("does not release"), "{}", e.message());
    assert_eq!(card.signatures.load(Ordering::SeqCst), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_created_elsewhere_appear_after_a_refresh() {
    let card = Card::new(12);
    card.add_key(SlotId::Signature, PinPolicy::Never, TouchPolicy::Never);
    let mut d = TestDaemon::start(Setup::one_card(card.clone())).await;
    let mut c = d.client().await;
    let count = |keys: Vec<pb::Key>| keys.len();
    let n = count(
        c.list_keys(pb::ListKeysRequest::default())
            .await
            .unwrap()
            .into_inner()
            .keys,
    );
    assert_eq!(n, 1);
    // Another tool generates a key while the daemon runs; the cache does not know yet.
    card.add_key(SlotId::KeyManagement, PinPolicy::Never, TouchPolicy::Never);
    let e = c
        .sign(sign_req(by_slot("9d"), sha2::Sha256::digest(b"k").to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    d.daemon.refresh_tokens(); // what SIGHUP does
    let until = Instant::now() + Duration::from_secs(5);
    while count(
        c.list_keys(pb::ListKeysRequest::default())
            .await
            .unwrap()
            .into_inner()
            .keys,
    ) != 2
    {
        assert!(Instant::now() < until, "the refresh did not happen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.sign(sign_req(by_slot("9d"), sha2::Sha256::digest(b"k").to_vec()))
        .await
        .unwrap();
    d.stop().await;
}
