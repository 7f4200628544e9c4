//! An in-memory `Token` test double (software P-256 keys, PIN counter, touch
//! gate, fault injection) and an in-process daemon over a temporary socket.
//! The real emulated token is exercised by the end-to-end tests in `tests/`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey;
use sha2::Digest;
use signature::hazmat::PrehashSigner;
use signer_daemon::attestation::AttestationTrust;
use signer_daemon::audit::AuditLog;
use signer_daemon::policy::Policy;
use signer_daemon::server::{Daemon, DaemonOptions};
use signer_daemon::worker::{TokenOpener, TokenWorker, WorkerOptions};
use signer_lib::model::ecdsa_card_input;
use signer_lib::session::PinSource;
use signer_lib::{
    Algorithm, Attestation, Error, FirmwareVersion, ImportKey, KeyInfo, KeyOrigin, ManagementKey,
    Pin, PinPolicy, PublicKey, Puk, RetryCounters, SignRequest, SlotId, Token, TokenEvent,
    TokenInfo, TokenKind, TouchPolicy,
};
use signer_proto::v1::signer_client::SignerClient;
use tonic::transport::Channel;

/// A gate the test opens to "touch" the token.
#[derive(Default)]
pub struct TouchGate {
    open: Mutex<bool>,
    cv: Condvar,
    waiting: AtomicUsize,
}

impl TouchGate {
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
    pub fn close(&self) {
        *self.open.lock().unwrap() = false;
    }
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
    fn wait(&self, timeout: Duration) -> bool {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let g = self.open.lock().unwrap();
        let (g, _) = self
            .cv
            .wait_timeout_while(g, timeout, |open| !*open)
            .unwrap();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        *g
    }
}

/// State shared between the test and every connection the daemon opens.
pub struct Card {
    pub serial: u32,
    pub keys: Mutex<BTreeMap<SlotId, (SigningKey, PinPolicy, TouchPolicy)>>,
    pub pin: Vec<u8>,
    pub pin_retries: Mutex<u8>,
    /// Card operations that reached the "card" (sign, verify, attest).
    pub card_ops: AtomicUsize,
    pub signatures: AtomicUsize,
    pub gate: TouchGate,
    pub touch_timeout: Duration,
    /// Fail the next card operation with this error.
    pub fail_next: Mutex<Option<fn() -> Error>>,
    /// Opening fails while set.
    pub absent: Mutex<bool>,
    pub opens: AtomicUsize,
    /// Return signatures made with another key (a faulty card).
    pub wrong_key: std::sync::atomic::AtomicBool,
}

impl Card {
    pub fn new(serial: u32) -> Arc<Card> {
        let card = Arc::new(Card {
            serial,
            keys: Mutex::new(BTreeMap::new()),
            pin: b"123456".to_vec(),
            pin_retries: Mutex::new(3),
            card_ops: AtomicUsize::new(0),
            signatures: AtomicUsize::new(0),
            gate: TouchGate::default(),
            touch_timeout: Duration::from_secs(15),
            fail_next: Mutex::new(None),
            absent: Mutex::new(false),
            opens: AtomicUsize::new(0),
            wrong_key: std::sync::atomic::AtomicBool::new(false),
        });
        card.gate.open();
        card
    }

    pub fn add_key(&self, slot: SlotId, pin: PinPolicy, touch: TouchPolicy) -> KeyInfo {
        let seed = sha2::Sha256::digest(format!("{}-{slot}", self.serial));
        let sk = SigningKey::from_slice(&seed).unwrap();
        self.keys.lock().unwrap().insert(slot, (sk, pin, touch));
        self.key_info(slot).unwrap()
    }

    fn key_info(&self, slot: SlotId) -> signer_lib::Result<KeyInfo> {
        let keys = self.keys.lock().unwrap();
        let (sk, pin, touch) = keys.get(&slot).ok_or(Error::KeyNotFound { slot })?;
        let spki = sk.verifying_key().to_public_key_der().unwrap();
        Ok(KeyInfo::new(
            slot,
            PublicKey {
                algorithm: Algorithm::EccP256,
                spki_der: spki.as_bytes().to_vec(),
            },
            None,
            *pin,
            *touch,
            Some(KeyOrigin::Generated),
        ))
    }

    pub fn opener(self: &Arc<Card>) -> TokenOpener {
        let card = self.clone();
        Box::new(move || {
            if *card.absent.lock().unwrap() {
                return Err(Error::Unavailable {
                    reason: "no reader (test card absent)".into(),
                });
            }
            card.opens.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(MemToken {
                card: card.clone(),
                verified: false,
            }) as Box<dyn Token>)
        })
    }

    fn injected(&self) -> signer_lib::Result<()> {
        match self.fail_next.lock().unwrap().take() {
            Some(f) => Err(f()),
            None => Ok(()),
        }
    }
}

/// One connection to the card (PIN verification is per connection).
pub struct MemToken {
    card: Arc<Card>,
    verified: bool,
}

impl MemToken {
    fn verify(&mut self, pin: &Pin) -> signer_lib::Result<()> {
        self.card.card_ops.fetch_add(1, Ordering::SeqCst);
        let mut retries = self.card.pin_retries.lock().unwrap();
        if *retries == 0 {
            return Err(Error::PinBlocked);
        }
        if pin.as_bytes() == self.card.pin.as_slice() {
            *retries = 3;
            self.verified = true;
            Ok(())
        } else {
            *retries -= 1;
            self.verified = false;
            if *retries == 0 {
                Err(Error::PinBlocked)
            } else {
                Err(Error::WrongPin {
                    retries_left: *retries,
                })
            }
        }
    }
}

fn unsupported<T>() -> signer_lib::Result<T> {
    Err(Error::NotSupported {
        what: "test double".into(),
    })
}

impl Token for MemToken {
    fn info(&mut self) -> signer_lib::Result<TokenInfo> {
        self.card.injected()?;
        Ok(TokenInfo {
            serial: self.card.serial,
            firmware: FirmwareVersion::new(5, 7, 1),
            model: "in-memory test token".into(),
            kind: TokenKind::Emulated,
            reader: None,
        })
    }
    fn list_keys(&mut self) -> signer_lib::Result<Vec<KeyInfo>> {
        let slots: Vec<SlotId> = self.card.keys.lock().unwrap().keys().copied().collect();
        slots.into_iter().map(|s| self.card.key_info(s)).collect()
    }
    fn key(&mut self, slot: SlotId) -> signer_lib::Result<KeyInfo> {
        self.card.key_info(slot)
    }
    fn sign(
        &mut self,
        request: &SignRequest<'_>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> signer_lib::Result<Vec<u8>> {
        self.card.injected()?;
        let (sk, pin_policy, touch) = {
            let keys = self.card.keys.lock().unwrap();
            let (sk, p, t) = keys
                .get(&request.slot)
                .ok_or(Error::KeyNotFound { slot: request.slot })?;
            (sk.clone(), *p, *t)
        };
        let signer_lib::SignInput::Digest { hash, digest } = request.input else {
            return Err(Error::DigestExpected {
                scheme: request.scheme,
            });
        };
        let input = ecdsa_card_input(Algorithm::EccP256, hash, digest)?;
        if let Some(pin) = request.pin {
            self.verify(pin)?;
        }
        self.card.card_ops.fetch_add(1, Ordering::SeqCst);
        match pin_policy {
            PinPolicy::Always if request.pin.is_none() => {
                return Err(Error::PinRequired { slot: request.slot });
            }
            PinPolicy::Once if !self.verified => {
                return Err(Error::PinRequired { slot: request.slot });
            }
            _ => {}
        }
        if touch == TouchPolicy::Always {
            events(TokenEvent::TouchRequired {
                slot: request.slot,
                timeout: self.card.touch_timeout,
            });
            if !self.card.gate.wait(self.card.touch_timeout) {
                return Err(Error::TouchTimeout {
                    waited: self.card.touch_timeout,
                });
            }
        }
        let sk = if self.card.wrong_key.load(Ordering::SeqCst) {
            SigningKey::from_slice(&[7u8; 32]).unwrap()
        } else {
            sk
        };
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&input).unwrap();
        self.card.signatures.fetch_add(1, Ordering::SeqCst);
        Ok(sig.to_der().as_bytes().to_vec())
    }
    fn attest(&mut self, slot: SlotId) -> signer_lib::Result<Attestation> {
        self.card.card_ops.fetch_add(1, Ordering::SeqCst);
        self.card.key_info(slot)?;
        Ok(Attestation {
            slot_certificate: vec![0x30, 0x00],
            device_certificate: vec![0x30, 0x00],
        })
    }
    fn verify_pin(&mut self, pin: &Pin) -> signer_lib::Result<()> {
        self.verify(pin)
    }
    fn retry_counters(&mut self) -> signer_lib::Result<RetryCounters> {
        Ok(RetryCounters {
            pin: *self.card.pin_retries.lock().unwrap(),
            puk: 3,
        })
    }
    fn change_pin(&mut self, _: &Pin, _: &Pin) -> signer_lib::Result<()> {
        unsupported()
    }
    fn change_puk(&mut self, _: &Puk, _: &Puk) -> signer_lib::Result<()> {
        unsupported()
    }
    fn unblock_pin(&mut self, _: &Puk, _: &Pin) -> signer_lib::Result<()> {
        unsupported()
    }
    fn authenticate(&mut self, _: &ManagementKey) -> signer_lib::Result<()> {
        unsupported()
    }
    fn generate_key(
        &mut self,
        _: SlotId,
        _: Algorithm,
        _: PinPolicy,
        _: TouchPolicy,
    ) -> signer_lib::Result<KeyInfo> {
        unsupported()
    }
    fn import_key(
        &mut self,
        _: SlotId,
        _: &ImportKey,
        _: PinPolicy,
        _: TouchPolicy,
    ) -> signer_lib::Result<KeyInfo> {
        unsupported()
    }
    fn put_certificate(&mut self, _: SlotId, _: &[u8]) -> signer_lib::Result<()> {
        unsupported()
    }
    fn set_management_key(&mut self, _: &ManagementKey, _: bool) -> signer_lib::Result<()> {
        unsupported()
    }
    fn reset(&mut self) -> signer_lib::Result<()> {
        unsupported()
    }
}

/// Options for [`TestDaemon::start`].
pub struct Setup {
    pub cards: Vec<Arc<Card>>,
    pub policy: Option<Policy>,
    pub queue_capacity: usize,
    pub pin: PinSource,
    pub options: DaemonOptions,
    pub poll: Option<Duration>,
    /// Audit log path (default: a file in the temporary directory).
    pub audit: Option<PathBuf>,
}

impl Setup {
    pub fn one_card(card: Arc<Card>) -> Setup {
        Setup {
            cards: vec![card],
            policy: None,
            queue_capacity: 256,
            pin: PinSource::Fixed(Pin::parse_pin("123456").unwrap()),
            options: DaemonOptions::default(),
            poll: None,
            audit: None,
        }
    }
}

/// A daemon served in-process on a temporary socket.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub audit: PathBuf,
    pub daemon: Arc<Daemon>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestDaemon {
    pub async fn start(setup: Setup) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run").join("signer.sock");
        let audit = setup
            .audit
            .clone()
            .unwrap_or_else(|| dir.path().join("audit.jsonl"));
        let mut workers = Vec::new();
        for card in &setup.cards {
            let (w, first) = TokenWorker::spawn(
                format!("test:{}", card.serial),
                card.opener(),
                WorkerOptions {
                    queue_capacity: setup.queue_capacity,
                    poll_interval: setup.poll,
                    pin_source: setup.pin.clone(),
                },
            )
            .unwrap();
            let _ = first;
            workers.push(w);
        }
        let euid = rustix::process::geteuid().as_raw();
        let daemon = Daemon::new(
            workers,
            setup
                .policy
                .unwrap_or_else(|| Policy::only_daemon_uid(euid)),
            AuditLog::open(&audit).unwrap(),
            AttestationTrust::default(),
            setup.options,
        );
        let bound = signer_daemon::socket::BoundSocket::bind(&socket).unwrap();
        bound.listener.set_nonblocking(true).unwrap();
        let listener =
            tokio::net::UnixListener::from_std(bound.listener.try_clone().unwrap()).unwrap();
        std::mem::forget(bound); // the temp dir cleans up
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(signer_daemon::server::run(
            listener,
            daemon.clone(),
            async {
                let _ = rx.await;
            },
        ));
        TestDaemon {
            dir,
            socket,
            audit,
            daemon,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn client(&self) -> SignerClient<Channel> {
        SignerClient::new(signer_proto::unix::connect(&self.socket).await.unwrap())
    }

    pub async fn channel(&self) -> Channel {
        signer_proto::unix::connect(&self.socket).await.unwrap()
    }

    /// Signal shutdown and wait for `run` to return.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }

    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn join(&mut self) {
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }

    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Verify a DER P-256 signature over a digest with the `p256` crate.
pub fn verify_p256(spki_der: &[u8], digest: &[u8], der_sig: &[u8]) -> bool {
    use p256::pkcs8::DecodePublicKey;
    use signature::hazmat::PrehashVerifier;
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(spki_der).unwrap();
    let Ok(sig) = p256::ecdsa::Signature::from_der(der_sig) else {
        return false;
    };
    vk.verify_prehash(digest, &sig).is_ok()
}
