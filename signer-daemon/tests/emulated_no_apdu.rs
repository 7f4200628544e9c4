//! With the real emulated token behind the in-process daemon: requests the
//! daemon rejects (bad digest length, unknown enum, invalid or empty slot,
//! unknown key, denied caller) send not a single command to the card; a
//! valid one does, and its signature verifies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use sha2::Digest;
use signer_daemon::attestation::AttestationTrust;
use signer_daemon::audit::AuditLog;
use signer_daemon::policy::Policy;
use signer_daemon::server::{Daemon, DaemonOptions};
use signer_daemon::worker::{TokenWorker, WorkerOptions};
use signer_lib::emulator::{EmulatedToken, InitOptions};
use signer_lib::session::PinSource;
use signer_lib::{
    Algorithm, Attestation, ImportKey, KeyInfo, ManagementKey, Pin, PinPolicy, Puk, RetryCounters,
    SignRequest, SlotId, Token, TokenEvent, TokenInfo, TouchPolicy,
};
use signer_proto::v1 as pb;
use tonic::Code;

/// The emulated token, shared so the test can read its command counter.
#[derive(Clone)]
struct Shared(Arc<Mutex<EmulatedToken>>);

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

fn req(slot: &str, digest: Vec<u8>, hash: i32) -> pb::SignRequest {
    pb::SignRequest {
        key: Some(pb::KeyRef {
            key: Some(pb::key_ref::Key::Slot(pb::SlotRef {
                token_serial: None,
                slot: slot.into(),
            })),
        }),
        input: Some(pb::sign_request::Input::Digest(digest)),
        hash,
        format: pb::SignatureFormat::Der as i32,
        padding: pb::RsaPadding::Unspecified as i32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_requests_send_no_command_to_the_emulated_card() {
    let dir = tempfile::tempdir().unwrap();
    let mut token = EmulatedToken::init(
        dir.path().join("t.state"),
        &InitOptions {
            serial: Some(20_000_002),
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
    let shared = Shared(Arc::new(Mutex::new(token)));
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
    let commands = || shared.0.lock().unwrap().command_count();
    let good = sha2::Sha256::digest(b"x").to_vec();
    let sha256 = pb::HashAlgorithm::Sha256 as i32;
    let before = commands();
    for (r, code) in [
        (req("9c", vec![1; 33], sha256), Code::InvalidArgument),
        (req("9c", good.clone(), 12), Code::InvalidArgument),
        (req("9b", good.clone(), sha256), Code::InvalidArgument),
        (req("9d", good.clone(), sha256), Code::NotFound),
    ] {
        assert_eq!(c.sign(r).await.unwrap_err().code(), code);
    }
    // Listing is served from the cache.
    c.list_keys(pb::ListKeysRequest::default()).await.unwrap();
    assert_eq!(commands(), before, "a rejected request reached the card");

    // A denied caller: same, nothing reaches the card.
    daemon.set_policy(Policy::only_daemon_uid(euid + 1));
    let e = c.sign(req("9c", good.clone(), sha256)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(commands(), before);

    daemon.set_policy(Policy::only_daemon_uid(euid));
    let r = c
        .sign(req("9c", good.clone(), sha256))
        .await
        .unwrap()
        .into_inner();
    assert!(commands() > before, "the valid request reached the card");
    assert!(common::verify_p256(
        &key.public_key.spki_der,
        &good,
        &r.signature
    ));

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
