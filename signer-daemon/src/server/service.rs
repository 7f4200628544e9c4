//! The `signer.v1.Signer` RPCs.
//!
//! Every RPC follows the same order, so that a rejected request never reaches
//! the card and a caller without permission learns nothing about the keys:
//! peer credentials (UNAUTHENTICATED) → operation allowed at all
//! (PERMISSION_DENIED) → request well-formed (INVALID_ARGUMENT) → key exists
//! (NOT_FOUND, UNAVAILABLE) → operation allowed on that key
//! (PERMISSION_DENIED) → digest fits the key (INVALID_ARGUMENT) → queued for
//! the token (RESOURCE_EXHAUSTED) → answer within the deadline
//! (DEADLINE_EXCEEDED) → audit record durable → answer released.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use signer_lib::model::ecdsa_card_input;
use signer_lib::{Error, KeyInfo, SignatureScheme, SlotId, TokenEvent};
use signer_proto::v1 as pb;
use signer_proto::v1::signer_server::Signer;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Daemon;
use super::call::Call;
use super::convert::{
    Format, check_and_encode_signature, check_signature, encode_emulated_signature,
    format_from_proto, format_to_proto, hash_from_proto, hash_to_proto, key_to_proto,
    token_to_proto,
};
use super::sign_rules::{self, padding_from_proto, padding_to_proto};
use crate::policy::{KeyTarget, Operation};
use crate::spin::Polled;
use crate::status::{from_error, from_work_error};
use crate::worker::{Output, Work, WorkError};

/// The service implementation.
#[derive(Debug, Clone)]
pub struct SignerService {
    daemon: Arc<Daemon>,
}

impl SignerService {
    /// Serve `daemon`.
    pub fn new(daemon: Arc<Daemon>) -> SignerService {
        SignerService { daemon }
    }
}

/// A key a request resolved to.
struct Resolved {
    token: usize,
    serial: u32,
    key: KeyInfo,
    /// The token is signer-lib's emulated token, whose signatures are made
    /// in this process ([`crate::worker::TokenWorker::signs_in_process`],
    /// [`encode_emulated_signature`]).
    emulated: bool,
}

impl Resolved {
    fn target(&self) -> KeyTarget<'_> {
        KeyTarget {
            token_serial: self.serial,
            slot: self.key.slot,
            key_id: &self.key.key_id,
        }
    }
}

impl Daemon {
    /// Find the key a request names, from the token snapshots (no card access).
    fn resolve(&self, key: Option<&pb::KeyRef>) -> Result<Resolved, Status> {
        let which = key.and_then(|k| k.key.as_ref()).ok_or_else(|| {
            Status::invalid_argument("key is required: set key.key_id or key.slot")
        })?;
        match which {
            pb::key_ref::Key::KeyId(id) => {
                let id = id.trim().to_ascii_lowercase();
                if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Status::invalid_argument(format!(
                        "key_id {id:?} is not a key id: expected 64 hex digits (SHA-256 of the public key's SPKI DER)"
                    )));
                }
                let mut unavailable = Vec::new();
                for (i, t) in self.tokens().iter().enumerate() {
                    let snap = t.snapshot();
                    if !snap.available {
                        unavailable.push(format!("{} ({})", t.label(), snap.status));
                    }
                    if let Some(k) = snap.keys.iter().find(|k| k.key_id == id) {
                        if !snap.available {
                            return Err(Status::unavailable(format!(
                                "the token holding key {id} is unavailable: {}",
                                snap.status
                            )));
                        }
                        return Ok(Resolved {
                            token: i,
                            serial: snap.info.as_ref().map(|i| i.serial).unwrap_or_default(),
                            key: k.clone(),
                            emulated: t.signs_in_process(),
                        });
                    }
                }
                if !unavailable.is_empty() && unavailable.len() == self.tokens().len() {
                    return Err(Status::unavailable(format!(
                        "no token is available to look for key {id}: {}",
                        unavailable.join("; ")
                    )));
                }
                let mut msg = format!("no key with id {id} on the daemon's tokens");
                if !unavailable.is_empty() {
                    msg.push_str(&format!(
                        " (unavailable, not searched: {})",
                        unavailable.join("; ")
                    ));
                }
                Err(Status::not_found(msg))
            }
            pb::key_ref::Key::Slot(slot_ref) => {
                let slot: SlotId = slot_ref.slot.parse().map_err(|e: Error| from_error(&e))?;
                if slot == SlotId::Attestation {
                    return Err(Status::invalid_argument(
                        "slot f9 holds the device's attestation key, which signs only attestations: use 9a, 9c, 9d, 9e or 82-95",
                    ));
                }
                let token = match slot_ref.token_serial {
                    Some(serial) => self
                        .tokens()
                        .iter()
                        .position(|t| t.serial() == Some(serial))
                        .ok_or_else(|| {
                            Status::not_found(format!(
                                "no token with serial {serial} (ListTokens shows the tokens this daemon serves)"
                            ))
                        })?,
                    None if self.tokens().len() == 1 => 0,
                    None => {
                        return Err(Status::invalid_argument(format!(
                            "this daemon serves {} tokens: set key.slot.token_serial, or name the key by key_id",
                            self.tokens().len()
                        )));
                    }
                };
                let worker = &self.tokens()[token];
                let snap = worker.snapshot();
                if !snap.available {
                    return Err(Status::unavailable(format!(
                        "token {} is unavailable: {}",
                        worker.label(),
                        snap.status
                    )));
                }
                let serial = snap.info.as_ref().map(|i| i.serial).unwrap_or_default();
                let key = snap
                    .keys
                    .iter()
                    .find(|k| k.slot == slot)
                    .cloned()
                    .ok_or_else(|| {
                        Status::not_found(format!("no key in slot {slot} of token {serial}"))
                    })?;
                Ok(Resolved {
                    token,
                    serial,
                    key,
                    emulated: worker.signs_in_process(),
                })
            }
        }
    }
}

impl Call {
    fn note_key(&mut self, r: &Resolved) {
        self.record.token_serial = Some(r.serial);
        self.record.slot = Some(r.key.slot.to_string());
        self.record.key_id = Some(r.key.key_id.clone());
    }

    /// Queue `work` on the token and wait for the answer until the deadline.
    async fn run_on_token(&self, token: usize, work: Work) -> Result<Output, Status> {
        let worker = &self.daemon.tokens()[token];
        let mut rx = worker
            .submit(work, Some(self.deadline))
            .map_err(|e| from_work_error(&e))?;
        // A lone request polls briefly for an in-process token's answer
        // (crate::spin); the atomic count first, so that under load the
        // snapshot lock is not taken for nothing.
        if self.is_lone() && worker.signs_in_process() {
            match crate::spin::poll_for(&mut rx, crate::spin::TOKEN_POLL).await {
                Polled::Answer(Ok(out)) => return Ok(out),
                Polled::Answer(Err(e)) => return Err(from_work_error(&e)),
                Polled::Closed => return Err(from_work_error(&WorkError::ShuttingDown)),
                Polled::NotYet => {}
            }
        }
        match tokio::time::timeout_at(self.deadline.into(), rx).await {
            Ok(Ok(Ok(out))) => Ok(out),
            Ok(Ok(Err(e))) => Err(from_work_error(&e)),
            Ok(Err(_)) => Err(from_work_error(&WorkError::ShuttingDown)),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer from the token within the deadline ({:?}); a request that had not reached the card was dropped, one that had is discarded",
                self.deadline.saturating_duration_since(self.started)
            ))),
        }
    }
}

/// The shared body of Sign and SignWithEvents. What each key type accepts
/// is [`sign_rules`](super::sign_rules)'s table, checked once the key is known.
async fn sign(
    call: &mut Call,
    request: pb::SignRequest,
    events: Option<(mpsc::UnboundedSender<TokenEvent>, &AtomicU32)>,
) -> Result<pb::SignResponse, Status> {
    call.authorize_operation()?;
    let hash = hash_from_proto(request.hash)?;
    let format: Format = format_from_proto(request.format)?;
    let padding = padding_from_proto(request.padding)?;
    let (digest, message) = match request.input {
        Some(pb::sign_request::Input::Digest(d)) => (d, None),
        Some(pb::sign_request::Input::Message(m)) => (hash.digest(&m), Some(m)),
        None => {
            return Err(Status::invalid_argument(
                "input is required: set digest (prehashed) or message",
            ));
        }
    };
    call.record.hash = Some(hash.name());
    call.record.digest = Some(hex::encode(&digest));
    let resolved = call.daemon.resolve(request.key.as_ref())?;
    call.note_key(&resolved);
    call.authorize_key(&resolved.target())?;
    let events = events.map(|(tx, serial)| {
        serial.store(resolved.serial, Ordering::Relaxed);
        tx
    });
    let plan = sign_rules::plan(
        &resolved.key,
        sign_rules::Asked {
            hash,
            format,
            padding,
            message,
            digest,
        },
    )?;
    call.record.scheme = Some(plan.scheme.name());
    // ECDSA: the field-length integer the card signs (and the check verifies).
    let card_input = if plan.scheme == SignatureScheme::Ecdsa {
        ecdsa_card_input(resolved.key.algorithm(), hash, &plan.data).map_err(|e| from_error(&e))?
    } else {
        Vec::new()
    };

    let out = call
        .run_on_token(
            resolved.token,
            Work::Sign {
                slot: resolved.key.slot,
                key_id: resolved.key.key_id.clone(),
                scheme: plan.scheme,
                hash,
                data: plan.data.clone(),
                events,
            },
        )
        .await?;
    let Output::Signature(der) = out else {
        return Err(Status::internal(
            "the token worker answered a sign job with something else",
        ));
    };
    // Every signature from a hardware token is verified before release;
    // RSA and Ed25519 signatures from any token (see check_and_encode_signature).
    let signature = if plan.scheme != SignatureScheme::Ecdsa {
        check_signature(&resolved.key, plan.scheme, &plan.input(), der)?
    } else if resolved.emulated {
        encode_emulated_signature(&resolved.key, &der, format)?
    } else {
        check_and_encode_signature(&resolved.key, &card_input, &der, format)?
    };
    Ok(pb::SignResponse {
        signature,
        format: format_to_proto(format) as i32,
        key_id: resolved.key.key_id.clone(),
        token_serial: resolved.serial,
        slot: resolved.key.slot.to_string(),
        hash: hash_to_proto(hash) as i32,
        digest: plan.digest,
        padding: padding_to_proto(plan.padding) as i32,
    })
}

async fn attest(call: &mut Call, request: pb::AttestRequest) -> Result<pb::AttestResponse, Status> {
    call.authorize_operation()?;
    let resolved = call.daemon.resolve(request.key.as_ref())?;
    call.note_key(&resolved);
    call.authorize_key(&resolved.target())?;
    let out = call
        .run_on_token(
            resolved.token,
            Work::Attest {
                slot: resolved.key.slot,
                key_id: resolved.key.key_id.clone(),
            },
        )
        .await?;
    let Output::Attestation(att) = out else {
        return Err(Status::internal(
            "the token worker answered an attest job with something else",
        ));
    };
    let verdict = call
        .daemon
        .trust
        .verdict(&att, &resolved.key, resolved.serial);
    Ok(pb::AttestResponse {
        key: Some(key_to_proto(resolved.serial, &resolved.key)),
        attestation_certificate_der: att.slot_certificate.clone(),
        device_certificate_der: att.device_certificate.clone(),
        verdict: Some(verdict),
    })
}

type SignEventStream = Pin<Box<dyn Stream<Item = Result<pb::SignEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Signer for SignerService {
    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let mut call = Call::begin(&self.daemon, "ListTokens", Operation::List, &request);
        let result = call.authorize_operation().map(|()| pb::ListTokensResponse {
            tokens: self
                .daemon
                .tokens()
                .iter()
                .map(|t| {
                    let mut token = token_to_proto(t.label(), &t.snapshot());
                    // Not reached yet: the serial it was configured with.
                    if token.serial == 0 {
                        token.serial = t.serial().unwrap_or_default();
                    }
                    token
                })
                .collect(),
        });
        call.finish(result).await.map(Response::new)
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let mut call = Call::begin(&self.daemon, "ListKeys", Operation::List, &request);
        let wanted = request.get_ref().token_serial;
        let result = (|| {
            call.authorize_operation()?;
            let peer = call
                .peer
                .clone()
                .ok_or_else(|| Status::unauthenticated("no peer credentials"))?;
            let mut keys = Vec::new();
            let mut matched = false;
            let mut unavailable = Vec::new();
            for t in self.daemon.tokens() {
                let snap = t.snapshot();
                let serial = t.serial();
                if wanted.is_some() && serial != wanted {
                    continue;
                }
                matched = true;
                if !snap.available {
                    unavailable.push(format!("{}: {}", t.label(), snap.status));
                    continue;
                }
                let serial = serial.unwrap_or_default();
                for k in snap.keys.iter() {
                    let target = KeyTarget {
                        token_serial: serial,
                        slot: k.slot,
                        key_id: &k.key_id,
                    };
                    if call.decide_key(&peer, &target).allowed {
                        keys.push(key_to_proto(serial, k));
                    }
                }
            }
            if let Some(s) = wanted.filter(|_| !matched) {
                return Err(Status::not_found(format!("no token with serial {s}")));
            }
            if keys.is_empty() && !unavailable.is_empty() {
                return Err(Status::unavailable(format!(
                    "token unavailable: {}",
                    unavailable.join("; ")
                )));
            }
            Ok(pb::ListKeysResponse { keys })
        })();
        call.finish(result).await.map(Response::new)
    }

    async fn get_public_key(
        &self,
        request: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::GetPublicKeyResponse>, Status> {
        let mut call = Call::begin(&self.daemon, "GetPublicKey", Operation::List, &request);
        let result = (|| {
            call.authorize_operation()?;
            let resolved = self.daemon.resolve(request.get_ref().key.as_ref())?;
            call.note_key(&resolved);
            call.authorize_key(&resolved.target())?;
            Ok(pb::GetPublicKeyResponse {
                key: Some(key_to_proto(resolved.serial, &resolved.key)),
            })
        })();
        call.finish(result).await.map(Response::new)
    }

    async fn sign(
        &self,
        request: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let mut call = Call::begin(&self.daemon, "Sign", Operation::Sign, &request);
        let result = sign(&mut call, request.into_inner(), None).await;
        call.finish(result).await.map(Response::new)
    }

    type SignWithEventsStream = SignEventStream;

    async fn sign_with_events(
        &self,
        request: Request<pb::SignRequest>,
    ) -> Result<Response<Self::SignWithEventsStream>, Status> {
        let mut call = Call::begin(&self.daemon, "SignWithEvents", Operation::Sign, &request);
        let req = request.into_inner();
        let (out_tx, out_rx) = mpsc::channel::<Result<pb::SignEvent, Status>>(8);
        tokio::spawn(async move {
            let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<TokenEvent>();
            let serial = AtomicU32::new(0);
            let touch = |ev: TokenEvent| {
                let TokenEvent::TouchRequired { slot, timeout } = ev;
                pb::SignEvent {
                    event: Some(pb::sign_event::Event::TouchRequired(pb::TouchRequired {
                        token_serial: serial.load(Ordering::Relaxed),
                        slot: slot.to_string(),
                        timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
                    })),
                }
            };
            let result = {
                let work = sign(&mut call, req, Some((ev_tx, &serial)));
                tokio::pin!(work);
                loop {
                    tokio::select! {
                        biased;
                        Some(ev) = ev_rx.recv() => {
                            // Sent before the token blocks for the touch.
                            if out_tx.send(Ok(touch(ev))).await.is_err() {
                                break None;
                            }
                        }
                        r = &mut work => break Some(r),
                        // The client hung up: abandon the request (a job that
                        // has not reached the card is skipped).
                        () = out_tx.closed() => break None,
                    }
                }
            };
            let Some(result) = result else {
                return; // `call` is dropped here: audited as cancelled.
            };
            while let Ok(ev) = ev_rx.try_recv() {
                let _ = out_tx.send(Ok(touch(ev))).await;
            }
            let result = call.finish(result).await;
            let item = result.map(|r| pb::SignEvent {
                event: Some(pb::sign_event::Event::Signature(r)),
            });
            let _ = out_tx.send(item).await;
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(out_rx)) as SignEventStream
        ))
    }

    async fn attest(
        &self,
        request: Request<pb::AttestRequest>,
    ) -> Result<Response<pb::AttestResponse>, Status> {
        let mut call = Call::begin(&self.daemon, "Attest", Operation::Attest, &request);
        let result = attest(&mut call, request.into_inner()).await;
        call.finish(result).await.map(Response::new)
    }
}
