//! Fuzz harness: request validation in the daemon. Shared by the cargo-fuzz
//! target `request_validation` (signer-daemon/fuzz) and the seeded-random
//! test `signer-daemon/tests/reliability_seeded_requests.rs`.
//!
//! The real `SignerService` (what `server::run` serves) is called
//! in-process with the caller's peer credentials attached, in front of a
//! `HardwareToken` on the loopback transport to the emulated YubiKey (P-256
//! in 9c, P-384 in 9a), whose reader counts APDUs. The input is either a
//! protobuf-encoded request (decoded with prost, as tonic would) or, with
//! the selector's high bit set, the fields of a `SignRequest` taken from
//! the bytes directly (so that short inputs reach every check).
//!
//! Checked for every input: no panic; a request refused with
//! INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, PERMISSION_DENIED or
//! UNAUTHENTICATED sent **zero APDUs**; a signature released verifies
//! (RustCrypto) over the digest the response names, which is the digest the
//! request gave (or the hash of its message).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use prost::Message;
use signer_daemon::attestation::AttestationTrust;
use signer_daemon::audit::AuditLog;
use signer_daemon::peer::{PeerConnectInfo, PeerInfo};
use signer_daemon::policy::Policy;
use signer_daemon::server::{Daemon, DaemonOptions, SignerService};
use signer_daemon::worker::{TokenWorker, WorkerOptions};
use signer_lib::emulator::{EmulatedSmartCard, EmulatedToken, InitOptions};
use signer_lib::piv_client::{HardwareToken, LoopbackConnector};
use signer_lib::session::PinSource;
use signer_lib::transport::loopback::SharedCard;
use signer_lib::{
    Algorithm, HashAlgorithm, KeyInfo, ManagementKey, Pin, PinPolicy, SlotId, Token, TouchPolicy,
};
use signer_proto::v1 as pb;
use signer_proto::v1::signer_server::Signer;
use tonic::Code;

pub const SERIAL: u32 = 32_000_001;

pub struct Env {
    pub rt: tokio::runtime::Runtime,
    pub service: SignerService,
    pub daemon: Arc<Daemon>,
    pub card: SharedCard,
    pub keys: Vec<KeyInfo>,
    pub euid: u32,
    dir: std::path::PathBuf,
}

impl Env {
    pub fn new() -> Env {
        // The audit log fsyncs every batch: keep it on tmpfs when there is one.
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "signer-request-validation-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut token = EmulatedToken::init(
            dir.join("card.state"),
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
        let keys = vec![
            token
                .generate_key(
                    SlotId::Signature,
                    Algorithm::EccP256,
                    PinPolicy::Never,
                    TouchPolicy::Never,
                )
                .unwrap(),
            token
                .generate_key(
                    SlotId::Authentication,
                    Algorithm::EccP384,
                    PinPolicy::Once,
                    TouchPolicy::Never,
                )
                .unwrap(),
        ];
        let card = SharedCard::new("Loopback 00 00", Box::new(EmulatedSmartCard::new(token)));
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
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let daemon = rt.block_on(async {
            Daemon::new(
                vec![worker],
                Policy::only_daemon_uid(euid),
                AuditLog::open(dir.join("audit.jsonl")).unwrap(),
                AttestationTrust::default(),
                DaemonOptions::default(),
            )
        });
        let service = SignerService::new(daemon.clone());
        // The worker lists the keys on its first connection; wait for it.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while daemon.tokens()[0].snapshot().keys.len() < keys.len() {
            assert!(std::time::Instant::now() < until, "keys never listed");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Env {
            rt,
            service,
            daemon,
            card,
            keys,
            euid,
            dir,
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The process-wide environment (fuzz targets run one input at a time).
pub fn env() -> &'static std::sync::Mutex<Env> {
    static ENV: OnceLock<std::sync::Mutex<Env>> = OnceLock::new();
    ENV.get_or_init(|| std::sync::Mutex::new(Env::new()))
}

fn request<T>(message: T, uid: u32) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    let gid = rustix::process::getegid().as_raw();
    r.extensions_mut()
        .insert(PeerConnectInfo(Some(Arc::new(PeerInfo::new(
            uid,
            gid,
            Some(std::process::id() as i32),
        )))));
    r
}

/// A request built from raw bytes, field by field.
fn structured(data: &[u8]) -> pb::SignRequest {
    let mut it = data.iter().copied();
    let mut byte = || it.next().unwrap_or(0);
    let int = |b: [u8; 2]| -> i32 {
        // Mostly small values around the valid ones, sometimes extremes.
        match b[0] % 8 {
            0 => i32::from(b[1] as i8),
            1 => i32::MAX - i32::from(b[1]),
            2 => i32::MIN + i32::from(b[1]),
            _ => i32::from(b[1] % 5),
        }
    };
    let hash = int([byte(), byte()]);
    let format = int([byte(), byte()]);
    let key_kind = byte();
    let key_len = usize::from(byte() % 80);
    let key_bytes: Vec<u8> = (0..key_len).map(|_| byte()).collect();
    let key_text = String::from_utf8_lossy(&key_bytes).into_owned();
    let serial = byte();
    let input_kind = byte();
    let input_len = usize::from(byte()) % 130;
    let input: Vec<u8> = (0..input_len).map(|_| byte()).collect();
    // Read last, so that the corpus written before the field existed keeps
    // its meaning.
    let padding = int([byte(), byte()]);
    let key = match key_kind % 6 {
        0 => None,
        1 => Some(pb::KeyRef { key: None }),
        2 => Some(pb::KeyRef {
            key: Some(pb::key_ref::Key::KeyId(key_text)),
        }),
        3 => Some(pb::KeyRef {
            // A valid slot name more often than not.
            key: Some(pb::key_ref::Key::Slot(pb::SlotRef {
                token_serial: (serial % 3 == 0).then_some(SERIAL + u32::from(serial % 2)),
                slot: ["9c", "9a", "9d", "f9", "9b", "82", "0x9c", "signature"]
                    [usize::from(key_len as u8 % 8)]
                .into(),
            })),
        }),
        4 => Some(pb::KeyRef {
            key: Some(pb::key_ref::Key::Slot(pb::SlotRef {
                token_serial: None,
                slot: key_text,
            })),
        }),
        _ => Some(pb::KeyRef {
            key: Some(pb::key_ref::Key::KeyId(hex_of(&key_bytes, 32))),
        }),
    };
    pb::SignRequest {
        key,
        input: match input_kind % 3 {
            0 => None,
            1 => Some(pb::sign_request::Input::Digest(input)),
            _ => Some(pb::sign_request::Input::Message(input)),
        },
        hash,
        format,
        padding,
    }
}

fn hex_of(bytes: &[u8], n: usize) -> String {
    let mut s: String = bytes.iter().take(n).map(|b| format!("{b:02x}")).collect();
    while s.len() < 2 * n {
        s.push('0');
    }
    s
}

/// Codes that promise the card was not touched.
fn refused_before_the_card(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated
    )
}

fn verifies(key: &KeyInfo, digest: &[u8], der: &[u8], raw: bool) -> bool {
    use signature::hazmat::PrehashVerifier;
    match key.algorithm() {
        Algorithm::EccP256 => {
            use p256::pkcs8::DecodePublicKey;
            let vk =
                p256::ecdsa::VerifyingKey::from_public_key_der(&key.public_key.spki_der).unwrap();
            let sig = if raw {
                p256::ecdsa::Signature::from_slice(der)
            } else {
                p256::ecdsa::Signature::from_der(der)
            };
            sig.is_ok_and(|s| {
                vk.verify_prehash(&digest[..digest.len().min(32)], &s)
                    .is_ok()
                    || vk.verify_prehash(digest, &s).is_ok()
            })
        }
        Algorithm::EccP384 => {
            use p384::pkcs8::DecodePublicKey;
            let vk =
                p384::ecdsa::VerifyingKey::from_public_key_der(&key.public_key.spki_der).unwrap();
            let sig = if raw {
                p384::ecdsa::Signature::from_slice(der)
            } else {
                p384::ecdsa::Signature::from_der(der)
            };
            sig.is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok())
        }
        _ => false,
    }
}

/// What one input did (for the seeded test's figures).
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub refused: usize,
    pub signed: usize,
    pub other: usize,
}

pub fn run(env: &Env, data: &[u8], tally: &mut Tally) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // One caller in eight is not the daemon's uid (default deny).
    let uid = if selector & 0x70 == 0x70 {
        env.euid + 1
    } else {
        env.euid
    };
    let before = env.card.instructions().len();
    let svc = &env.service;
    let outcome: Result<Option<(pb::SignRequest, pb::SignResponse)>, tonic::Status> =
        env.rt.block_on(async {
            if selector & 0x80 != 0 {
                let r = structured(rest);
                let got = svc.sign(request(r.clone(), uid)).await?;
                return Ok(Some((r, got.into_inner())));
            }
            match selector % 6 {
                0 | 1 => {
                    let Ok(r) = pb::SignRequest::decode(rest) else {
                        return Ok(None);
                    };
                    if selector % 6 == 0 {
                        let got = svc.sign(request(r.clone(), uid)).await?;
                        Ok(Some((r, got.into_inner())))
                    } else {
                        use tokio_stream::StreamExt;
                        let mut s = svc
                            .sign_with_events(request(r.clone(), uid))
                            .await?
                            .into_inner();
                        let mut last = None;
                        while let Some(ev) = s.next().await {
                            if let Some(pb::sign_event::Event::Signature(resp)) = ev?.event {
                                last = Some((r.clone(), resp));
                            }
                        }
                        Ok(last)
                    }
                }
                2 => {
                    let Ok(r) = pb::GetPublicKeyRequest::decode(rest) else {
                        return Ok(None);
                    };
                    svc.get_public_key(request(r, uid)).await.map(|_| None)
                }
                3 => {
                    let Ok(r) = pb::AttestRequest::decode(rest) else {
                        return Ok(None);
                    };
                    svc.attest(request(r, uid)).await.map(|_| None)
                }
                4 => {
                    let Ok(r) = pb::ListKeysRequest::decode(rest) else {
                        return Ok(None);
                    };
                    svc.list_keys(request(r, uid)).await.map(|_| None)
                }
                _ => {
                    let Ok(r) = pb::ListTokensRequest::decode(rest) else {
                        return Ok(None);
                    };
                    svc.list_tokens(request(r, uid)).await.map(|_| None)
                }
            }
        });
    let sent = env.card.instructions().len() - before;
    match outcome {
        Err(status) if refused_before_the_card(status.code()) => {
            assert_eq!(
                sent,
                0,
                "{:?} ({}) after {sent} APDUs",
                status.code(),
                status.message()
            );
            tally.refused += 1;
        }
        Err(_) => tally.other += 1,
        Ok(Some((req, resp))) => {
            let key = env
                .keys
                .iter()
                .find(|k| k.key_id == resp.key_id)
                .expect("a signature by a key the token does not have");
            let hash = match pb::HashAlgorithm::try_from(req.hash) {
                Ok(pb::HashAlgorithm::Sha256) => HashAlgorithm::Sha256,
                Ok(pb::HashAlgorithm::Sha384) => HashAlgorithm::Sha384,
                Ok(pb::HashAlgorithm::Sha512) => HashAlgorithm::Sha512,
                other => panic!("signed with hash {other:?}"),
            };
            let expected_digest = match req.input {
                Some(pb::sign_request::Input::Digest(d)) => d,
                Some(pb::sign_request::Input::Message(m)) => hash.digest(&m),
                None => panic!("signed without an input"),
            };
            assert_eq!(
                resp.digest, expected_digest,
                "the response names another digest"
            );
            let raw = resp.format == pb::SignatureFormat::Raw as i32;
            assert!(
                verifies(key, &expected_digest, &resp.signature, raw),
                "the daemon released a signature that does not verify"
            );
            tally.signed += 1;
        }
        Ok(None) => tally.other += 1,
    }
}
