//! One worker thread per token: the only code that talks to the card.
//!
//! A token does one thing at a time and a signature can block for 15 seconds
//! waiting for a touch, so each token is owned by a dedicated OS thread that
//! takes jobs from a bounded queue, one after the other. Async request
//! handlers never block on the card: they validate the request, enqueue a job
//! (or get RESOURCE_EXHAUSTED at once when the queue is full), and wait for
//! the answer until the caller's deadline. A job whose caller has gone, or
//! whose deadline passed while it was queued, is dropped without sending a
//! single APDU.
//!
//! Listing never waits behind a touch: the worker keeps a [`Snapshot`] of the
//! token and its keys that request handlers read directly. It is refreshed
//! when the worker (re)connects to the token, after errors that suggest the
//! card changed, and by polling the token while idle.
//!
//! The worker reconnects on its own: after the card went away (removed,
//! pcscd restarted, reset by another program) the next job or poll opens the
//! token again through the [`TokenOpener`]. The PIN state survives
//! reconnection: a PIN the card rejected stays refused (see
//! `signer_lib::session`).

use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use signer_lib::session::{PinSource, SigningSession};
use signer_lib::{
    Algorithm, Attestation, Error, HashAlgorithm, ImportKey, KeyInfo, ManagementKey, Pin,
    PinPolicy, Puk, RetryCounters, SignInput, SignRequest, SignatureScheme, SlotId, Token,
    TokenEvent, TokenInfo, TouchPolicy,
};
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

/// Opens (or re-opens) the token a worker serves.
pub type TokenOpener = Box<dyn FnMut() -> signer_lib::Result<Box<dyn Token>> + Send>;

/// What the handlers know about a token without asking it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Serial, firmware, model (`None` until the token was reached once).
    pub info: Option<TokenInfo>,
    /// The keys, as of the last refresh.
    pub keys: Arc<Vec<KeyInfo>>,
    /// Whether the token answered at the last refresh or job.
    pub available: bool,
    /// "ok", or why the token is unavailable.
    pub status: String,
}

/// Work for the card.
#[derive(Debug)]
pub enum Work {
    /// Sign a digest with the key in `slot`, which must still be `key_id`.
    Sign {
        /// The slot.
        slot: SlotId,
        /// The key id the request resolved to.
        key_id: String,
        /// The signature scheme (E4: RSA/Ed25519, issue 14).
        scheme: SignatureScheme,
        /// The digest's hash (Ed25519: SHA-512, not applied here).
        hash: HashAlgorithm,
        /// The digest, or the message for a scheme that signs the message
        /// itself ([`SignatureScheme::signs_message`]: Ed25519).
        data: Vec<u8>,
        /// Where to send touch events, before the token blocks.
        events: Option<tokio_mpsc::UnboundedSender<TokenEvent>>,
    },
    /// Attest the key in `slot`, which must still be `key_id`.
    Attest {
        /// The slot.
        slot: SlotId,
        /// The key id.
        key_id: String,
    },
    /// Re-read the token and its keys into the snapshot (SIGHUP; after keys
    /// were created or deleted with another tool).
    Refresh,
}

/// What the card produced.
#[derive(Debug)]
pub enum Output {
    /// A DER ECDSA signature.
    Signature(Vec<u8>),
    /// An attestation.
    Attestation(Attestation),
    /// The snapshot was refreshed.
    Refreshed,
}

/// Why a job produced no output.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// The token said no.
    #[error(transparent)]
    Token(#[from] Error),
    /// The queue for this token is full.
    #[error(
        "the token is busy: {capacity} requests are already waiting for it; retry later (a key that needs a touch blocks the queue until it is touched)"
    )]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The daemon is shutting down.
    #[error("the daemon is shutting down; retry against the next instance")]
    ShuttingDown,
    /// The request's deadline passed while it waited in the queue.
    #[error(
        "the request's deadline passed after {waited:?} waiting for the token; nothing was sent to the card"
    )]
    DeadlineExpired {
        /// Time spent queued.
        waited: Duration,
    },
    /// The slot now holds another key than the one the request named
    /// (the card was changed since the key list was read).
    #[error(
        "slot {slot} now holds key {found}, not {expected}: the token changed; list the keys again"
    )]
    KeyChanged {
        /// The slot.
        slot: SlotId,
        /// What the request resolved to.
        expected: String,
        /// What the slot holds now.
        found: String,
    },
}

struct Job {
    work: Work,
    deadline: Option<Instant>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Output, WorkError>>,
}

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Jobs that may wait for the token (beyond the one in progress).
    pub queue_capacity: usize,
    /// Poll the idle token this often to notice a changed or removed card;
    /// `None` disables polling (the snapshot is then refreshed after errors only).
    pub poll_interval: Option<Duration>,
    /// Where the PIN comes from (never a prompt in the daemon).
    pub pin_source: PinSource,
}

/// Handle to one token's worker.
pub struct TokenWorker {
    label: String,
    tx: Mutex<Option<SyncSender<Job>>>,
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    capacity: usize,
}

impl std::fmt::Debug for TokenWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenWorker")
            .field("label", &self.label)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl TokenWorker {
    /// Start a worker for the token `opener` opens. Returns once the first
    /// attempt to reach the token is done, with its outcome: the worker runs
    /// (and keeps retrying) either way.
    pub fn spawn(
        label: impl Into<String>,
        opener: TokenOpener,
        options: WorkerOptions,
    ) -> std::io::Result<(TokenWorker, signer_lib::Result<()>)> {
        let label = label.into();
        let capacity = options.queue_capacity.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(capacity);
        let snapshot = Arc::new(RwLock::new(Arc::new(Snapshot {
            status: "not yet reached".into(),
            ..Default::default()
        })));
        let (first_tx, first_rx) = mpsc::channel();
        let shared = snapshot.clone();
        let thread_label = label.clone();
        let thread = std::thread::Builder::new()
            .name(format!("token {label}"))
            .spawn(move || {
                let mut w = Worker {
                    label: thread_label,
                    session: SigningSession::new(
                        ReopeningToken {
                            opener,
                            inner: None,
                            generation: 0,
                        },
                        options.pin_source,
                    ),
                    seen_generation: 0,
                    snapshot: shared,
                };
                let first = w.refresh();
                let _ = first_tx.send(first);
                w.run(rx, options.poll_interval);
            })?;
        let first = first_rx.recv().unwrap_or_else(|_| {
            Err(Error::Unavailable {
                reason: "the token worker died while opening the token".into(),
            })
        });
        Ok((
            TokenWorker {
                label,
                tx: Mutex::new(Some(tx)),
                snapshot,
                thread: Mutex::new(Some(thread)),
                capacity,
            },
            first,
        ))
    }

    /// The token selector this worker serves (for logs).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The serial of the token this worker serves: the one it answered with,
    /// or, before it was ever reached (absent, or held by another program
    /// when the daemon started), the one its selector names
    /// (`yubikey:SERIAL`), so that requests for it say why it is
    /// unavailable instead of "no such token".
    pub fn serial(&self) -> Option<u32> {
        match self.snapshot().info.as_ref() {
            Some(info) => Some(info.serial),
            None => match self.label.parse::<signer_lib::TokenSelector>() {
                Ok(signer_lib::TokenSelector::YubiKey { serial }) => serial,
                _ => None,
            },
        }
    }

    /// Whether this worker serves signer-lib's `EmulatedToken`, whose
    /// signatures are computed in this process (see
    /// `server::convert::encode_emulated_signature`): it was opened from an
    /// `emulated:FILE` selector (the only way `serve` opens one) and reports
    /// itself as emulated. Any other token, including one that merely
    /// reports `TokenKind::Emulated` (a test double, another backend), has
    /// its signatures verified before release like a card's.
    pub fn signs_in_process(&self) -> bool {
        self.label.starts_with("emulated:")
            && self
                .snapshot()
                .info
                .as_ref()
                .is_some_and(|i| i.kind == signer_lib::TokenKind::Emulated)
    }

    /// The current snapshot (never blocks on the card).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Queue `work`; the receiver yields the result. Fails at once when the
    /// queue is full or the worker is stopping.
    pub fn submit(
        &self,
        work: Work,
        deadline: Option<Instant>,
    ) -> Result<oneshot::Receiver<Result<Output, WorkError>>, WorkError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            work,
            deadline,
            enqueued: Instant::now(),
            reply,
        };
        let guard = self.tx.lock().map_err(|_| WorkError::ShuttingDown)?;
        let Some(tx) = guard.as_ref() else {
            return Err(WorkError::ShuttingDown);
        };
        match tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(WorkError::QueueFull {
                capacity: self.capacity,
            }),
            Err(TrySendError::Disconnected(_)) => Err(WorkError::ShuttingDown),
        }
    }

    /// Ask the worker to re-read the token's keys when it is next free.
    /// Returns false if the queue is full or the worker is stopping.
    pub fn request_refresh(&self) -> bool {
        self.submit(Work::Refresh, None).is_ok()
    }

    /// Stop taking jobs; the worker finishes the queued ones, then exits.
    pub fn close(&self) {
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
    }

    /// Close and wait (at most `timeout`) for the thread to finish.
    /// Returns false if it was still busy (e.g. waiting for a touch).
    pub fn join(&self, timeout: Duration) -> bool {
        self.close();
        let handle = self.thread.lock().ok().and_then(|mut g| g.take());
        let Some(handle) = handle else { return true };
        let end = Instant::now() + timeout;
        while !handle.is_finished() {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = handle.join();
        true
    }
}

impl Drop for TokenWorker {
    fn drop(&mut self) {
        self.close();
    }
}

/// How often an unreachable token is tried again.
const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// Errors after which the connection to the token is dropped and reopened.
fn means_token_gone(e: &Error) -> bool {
    matches!(
        e,
        Error::CardRemoved { .. } | Error::CardReset | Error::Unavailable { .. }
    )
}

/// Errors after which the key snapshot may be out of date.
fn means_keys_changed(e: &Error) -> bool {
    means_token_gone(e)
        || matches!(
            e,
            Error::KeyNotFound { .. } | Error::NotAttestable { .. } | Error::TokenNotFound { .. }
        )
}

struct Worker {
    label: String,
    session: SigningSession<ReopeningToken>,
    seen_generation: u64,
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
}

impl Worker {
    fn run(&mut self, rx: mpsc::Receiver<Job>, poll: Option<Duration>) {
        loop {
            // While the token is unreachable, try to reconnect every second
            // whether or not polling is configured, so that requests (which
            // are refused with UNAVAILABLE meanwhile) work again soon after
            // the card is back.
            let wait = if self.current().available {
                poll
            } else {
                Some(poll.map_or(RECONNECT_INTERVAL, |p| p.min(RECONNECT_INTERVAL)))
            };
            let job = match wait {
                Some(interval) => match rx.recv_timeout(interval) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => {
                        self.poll();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            self.handle(job);
        }
        tracing::debug!(token = %self.label, "token worker stopped");
    }

    fn handle(&mut self, job: Job) {
        let waited = job.enqueued.elapsed();
        if job.reply.is_closed() && !matches!(job.work, Work::Refresh) {
            tracing::debug!(token = %self.label, ?waited, "caller gone before its turn; skipped");
            return;
        }
        if job.deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = job.reply.send(Err(WorkError::DeadlineExpired { waited }));
            return;
        }
        let refresh = matches!(job.work, Work::Refresh);
        let result = self.perform(job.work);
        if let Err(WorkError::Token(e)) = &result {
            if means_token_gone(e) {
                self.mark_unavailable(e);
            }
            if means_keys_changed(e) {
                let _ = self.refresh();
            }
        }
        if job.reply.send(result).is_err() && !refresh {
            tracing::warn!(
                token = %self.label,
                "the caller left while the token was working; its result was discarded"
            );
        }
    }

    fn perform(&mut self, work: Work) -> Result<Output, WorkError> {
        self.ensure_open()?;
        match work {
            Work::Sign {
                slot,
                key_id,
                scheme,
                hash,
                data,
                events,
            } => {
                let mut forward = |ev: TokenEvent| {
                    if let Some(tx) = &events {
                        let _ = tx.send(ev);
                    }
                };
                // E4 (issue 14): the scheme decides what `data` is.
                let input = if scheme.signs_message() {
                    SignInput::Message(&data)
                } else {
                    SignInput::Digest {
                        hash,
                        digest: &data,
                    }
                };
                let signature = self.retry_after_reset(|w| {
                    w.check_key(slot, &key_id)?;
                    Ok(w.session.sign_with(slot, scheme, input, &mut forward)?)
                })?;
                Ok(Output::Signature(signature))
            }
            Work::Attest { slot, key_id } => {
                let attestation = self.retry_after_reset(|w| {
                    w.check_key(slot, &key_id)?;
                    Ok(w.session.token().attest(slot)?)
                })?;
                Ok(Output::Attestation(attestation))
            }
            Work::Refresh => {
                self.refresh()?;
                Ok(Output::Refreshed)
            }
        }
    }

    /// Run `op`; if another program reset the card since our last
    /// operation (PC/SC reports `SCARD_W_RESET_CARD` when our transaction
    /// begins, before any APDU of `op` reaches the card), reconnect and run
    /// it once more. The PIN is verified again if the key needs it; a PIN
    /// the card rejected stays refused (the session outlives connections).
    fn retry_after_reset<R>(
        &mut self,
        mut op: impl FnMut(&mut Worker) -> Result<R, WorkError>,
    ) -> Result<R, WorkError> {
        match op(self) {
            Err(WorkError::Token(Error::CardReset)) => {
                tracing::info!(
                    token = %self.label,
                    "the card was reset by another program; reconnecting for this request"
                );
                if let Err(e) = self.ensure_open() {
                    // Gone for good this time (pulled, pcscd down): answer
                    // as for the reset, UNAVAILABLE, not with the reconnection's
                    // error (a missing card is "no token" to the connector).
                    tracing::warn!(token = %self.label, error = %e, "no reconnection after the reset");
                    return Err(WorkError::Token(Error::CardReset));
                }
                op(self)
            }
            other => other,
        }
    }

    fn check_key(&mut self, slot: SlotId, expected: &str) -> Result<(), WorkError> {
        let key = self.session.key(slot)?;
        if key.key_id != expected {
            let _ = self.refresh();
            return Err(WorkError::KeyChanged {
                slot,
                expected: expected.to_string(),
                found: key.key_id,
            });
        }
        Ok(())
    }

    /// Connect if needed; after a reconnection, forget what we knew about keys.
    fn ensure_open(&mut self) -> signer_lib::Result<()> {
        let token = self.session.token();
        if let Err(e) = token.ensure_open() {
            self.mark_unavailable(&e);
            return Err(e);
        }
        if token.generation != self.seen_generation {
            self.refresh()?;
        }
        Ok(())
    }

    /// Re-read the token's description and keys into the snapshot.
    fn refresh(&mut self) -> signer_lib::Result<()> {
        let result = (|| {
            self.session.token().ensure_open()?;
            self.seen_generation = self.session.token().generation;
            self.session.invalidate_keys();
            let info = self.session.token().info()?;
            let keys = self.session.token().list_keys()?;
            Ok((info, keys))
        })();
        match result {
            Ok((info, keys)) => {
                tracing::info!(
                    token = %self.label,
                    serial = info.serial,
                    keys = keys.len(),
                    "token ready"
                );
                self.publish(Snapshot {
                    info: Some(info),
                    keys: Arc::new(keys),
                    available: true,
                    status: "ok".into(),
                });
                Ok(())
            }
            Err(e) => {
                if means_token_gone(&e) {
                    self.session.token().disconnect();
                }
                self.mark_unavailable(&e);
                Err(e)
            }
        }
    }

    fn poll(&mut self) {
        let was_available = self.current().available;
        let token = self.session.token();
        if !token.is_open() || !was_available {
            let _ = self.refresh();
            return;
        }
        let serial_before = self.current().info.as_ref().map(|i| i.serial);
        match self.session.token().info() {
            Ok(info) if Some(info.serial) == serial_before => {}
            Ok(_) => {
                tracing::info!(token = %self.label, "a different token answered; refreshing");
                let _ = self.refresh();
            }
            Err(e) => {
                tracing::warn!(token = %self.label, error = %e, "token stopped answering");
                if means_token_gone(&e) {
                    self.session.token().disconnect();
                }
                self.mark_unavailable(&e);
            }
        }
    }

    fn current(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn mark_unavailable(&self, e: &Error) {
        let mut s = (*self.current()).clone();
        s.available = false;
        s.status = e.to_string();
        self.publish(s);
    }

    fn publish(&self, s: Snapshot) {
        match self.snapshot.write() {
            Ok(mut g) => *g = Arc::new(s),
            Err(p) => *p.into_inner() = Arc::new(s),
        }
    }
}

/// A token connection that can be dropped and reopened, so the
/// [`SigningSession`] around it (and its memory of rejected PINs) outlives
/// card removals. Reconnection happens only in [`ReopeningToken::ensure_open`],
/// at points the worker chooses, never in the middle of an operation.
struct ReopeningToken {
    opener: TokenOpener,
    inner: Option<Box<dyn Token>>,
    generation: u64,
}

impl ReopeningToken {
    fn ensure_open(&mut self) -> signer_lib::Result<()> {
        if self.inner.is_none() {
            self.inner = Some((self.opener)()?);
            self.generation += 1;
        }
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.inner.is_some()
    }

    fn disconnect(&mut self) {
        self.inner = None;
    }

    fn with<R>(
        &mut self,
        f: impl FnOnce(&mut dyn Token) -> signer_lib::Result<R>,
    ) -> signer_lib::Result<R> {
        let Some(t) = self.inner.as_mut() else {
            return Err(Error::Unavailable {
                reason: "not connected to the token".into(),
            });
        };
        let result = f(t.as_mut());
        if let Err(e) = &result {
            if means_token_gone(e) {
                self.inner = None;
            }
        }
        result
    }
}

impl Token for ReopeningToken {
    fn info(&mut self) -> signer_lib::Result<TokenInfo> {
        self.with(|t| t.info())
    }
    fn list_keys(&mut self) -> signer_lib::Result<Vec<KeyInfo>> {
        self.with(|t| t.list_keys())
    }
    fn key(&mut self, slot: SlotId) -> signer_lib::Result<KeyInfo> {
        self.with(|t| t.key(slot))
    }
    fn sign(
        &mut self,
        request: &SignRequest<'_>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> signer_lib::Result<Vec<u8>> {
        self.with(|t| t.sign(request, events))
    }
    fn attest(&mut self, slot: SlotId) -> signer_lib::Result<Attestation> {
        self.with(|t| t.attest(slot))
    }
    fn verify_pin(&mut self, pin: &Pin) -> signer_lib::Result<()> {
        self.with(|t| t.verify_pin(pin))
    }
    fn retry_counters(&mut self) -> signer_lib::Result<RetryCounters> {
        self.with(|t| t.retry_counters())
    }
    fn change_pin(&mut self, current: &Pin, new: &Pin) -> signer_lib::Result<()> {
        self.with(|t| t.change_pin(current, new))
    }
    fn change_puk(&mut self, current: &Puk, new: &Puk) -> signer_lib::Result<()> {
        self.with(|t| t.change_puk(current, new))
    }
    fn unblock_pin(&mut self, puk: &Puk, new_pin: &Pin) -> signer_lib::Result<()> {
        self.with(|t| t.unblock_pin(puk, new_pin))
    }
    fn authenticate(&mut self, key: &ManagementKey) -> signer_lib::Result<()> {
        self.with(|t| t.authenticate(key))
    }
    fn generate_key(
        &mut self,
        slot: SlotId,
        algorithm: Algorithm,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> signer_lib::Result<KeyInfo> {
        self.with(|t| t.generate_key(slot, algorithm, pin_policy, touch_policy))
    }
    fn import_key(
        &mut self,
        slot: SlotId,
        key: &ImportKey,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> signer_lib::Result<KeyInfo> {
        self.with(|t| t.import_key(slot, key, pin_policy, touch_policy))
    }
    fn put_certificate(&mut self, slot: SlotId, certificate_der: &[u8]) -> signer_lib::Result<()> {
        self.with(|t| t.put_certificate(slot, certificate_der))
    }
    fn set_management_key(
        &mut self,
        new: &ManagementKey,
        require_touch: bool,
    ) -> signer_lib::Result<()> {
        self.with(|t| t.set_management_key(new, require_touch))
    }
    fn reset(&mut self) -> signer_lib::Result<()> {
        self.with(|t| t.reset())
    }
}
