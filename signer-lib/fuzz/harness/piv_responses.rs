//! Fuzz harness: the PIV client (`HardwareToken`) against a card whose
//! responses are tampered with as the input says. Shared by the cargo-fuzz
//! target `piv_responses` (signer-lib/fuzz) and the seeded-random test in
//! `signer-lib/tests/reliability_malicious_card.rs`, which includes this file
//! with `#[path]`.
//!
//! The card is the emulated YubiKey's APDU front end (an honest card) behind
//! [`TamperCard`], which rewrites each response as the input's next control
//! byte says (truncate, flip a byte, replace, empty, oversize, another status
//! word, endless `61xx`, another tag) before the client sees it. Every TLV
//! and BER parser the client applies to card responses is reached this way
//! (SELECT, GET SERIAL, GET VERSION, GET METADATA for slots, PIN and
//! management key, GET DATA of certificates, ADMIN DATA and PRINTED,
//! GENERAL AUTHENTICATE, ATTEST, VERIFY status), for P-256, P-384, RSA-2048
//! (81/82 public key templates, PSS signatures) and Ed25519 keys.
//!
//! Checked for every input: nothing panics, every call ends (no endless
//! loop), and a signature `TokenSigner` releases verifies against the key
//! it announced, and against the card's real key whenever it announced
//! that one.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex, OnceLock};

use zeroize::Zeroizing;

use signer_lib::emulator::{EmulatedSmartCard, EmulatedToken, InitOptions};
use signer_lib::piv_client::{HardwareToken, LoopbackConnector};
use signer_lib::signer::TokenSigner;
use signer_lib::transport::loopback::SharedCard;
use signer_lib::transport::vpcd::VirtualCard;
use signer_lib::{
    Algorithm, HashAlgorithm, KeyInfo, ManagementKey, Pin, PinPolicy, PublicKey, SlotId, Token,
    TouchPolicy,
};

/// How one response is rewritten.
pub type Tamper = Box<dyn FnMut(&[u8], Zeroizing<Vec<u8>>) -> Vec<u8> + Send>;

/// An honest card whose responses pass through a tamper function.
pub struct TamperCard {
    pub inner: EmulatedSmartCard,
    pub tamper: Arc<Mutex<Option<Tamper>>>,
}

impl VirtualCard for TamperCard {
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn power_on(&mut self) {
        self.inner.power_on()
    }
    fn power_off(&mut self) {
        self.inner.power_off()
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    fn transmit(&mut self, command: &[u8]) -> Zeroizing<Vec<u8>> {
        let honest = self.inner.transmit(command);
        let mut guard = self.tamper.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(f) => Zeroizing::new(f(command, honest)),
            None => honest,
        }
    }
}

/// The card every run uses: P-256 in 9c (PIN never, touch never), P-384 in
/// 9a (PIN always), RSA-2048 in 9d and Ed25519 in 82 (PIN never), made once
/// per process.
pub struct Rig {
    pub card: SharedCard,
    pub tamper: Arc<Mutex<Option<Tamper>>>,
    pub p256: KeyInfo,
    pub p384: KeyInfo,
    pub rsa: KeyInfo,
    pub ed25519: KeyInfo,
    pub serial: u32,
    _dir: std::path::PathBuf,
}

pub const SERIAL: u32 = 31_000_001;

pub fn pin() -> Pin {
    Pin::parse_pin("123456").unwrap()
}

impl Rig {
    pub fn new() -> Rig {
        let dir = std::env::temp_dir().join(format!(
            "signer-piv-responses-{}-{:?}",
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
        let p256 = token
            .generate_key(
                SlotId::Signature,
                Algorithm::EccP256,
                PinPolicy::Never,
                TouchPolicy::Never,
            )
            .unwrap();
        let p384 = token
            .generate_key(
                SlotId::Authentication,
                Algorithm::EccP384,
                PinPolicy::Always,
                TouchPolicy::Never,
            )
            .unwrap();
        // RSA-2048 (the client pads; 81/82 public key templates, extended
        // APDUs) and Ed25519 (the message itself).
        let rsa = token
            .generate_key(
                SlotId::KeyManagement,
                Algorithm::Rsa2048,
                PinPolicy::Never,
                TouchPolicy::Never,
            )
            .unwrap();
        let ed25519 = token
            .generate_key(
                SlotId::Retired(0x82),
                Algorithm::Ed25519,
                PinPolicy::Never,
                TouchPolicy::Never,
            )
            .unwrap();
        let tamper: Arc<Mutex<Option<Tamper>>> = Arc::new(Mutex::new(None));
        let card = SharedCard::new(
            "Tampering reader 00 00",
            Box::new(TamperCard {
                inner: EmulatedSmartCard::new(token),
                tamper: tamper.clone(),
            }),
        );
        Rig {
            card,
            tamper,
            p256,
            p384,
            rsa,
            ed25519,
            serial: SERIAL,
            _dir: dir,
        }
    }

    /// Install `f` (or none) for the next operations.
    pub fn set_tamper(&self, f: Option<Tamper>) {
        *self.tamper.lock().unwrap_or_else(|p| p.into_inner()) = f;
    }

    /// Open the PIV client on the card (fresh session).
    pub fn open(&self) -> signer_lib::Result<HardwareToken> {
        self.card.reset();
        HardwareToken::open(
            Box::new(LoopbackConnector {
                card: self.card.clone(),
            }),
            None,
        )
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// A DER ECDSA signature over `digest` checked with RustCrypto directly.
pub fn verifies(key: &PublicKey, digest: &[u8], der: &[u8]) -> bool {
    use signature::hazmat::PrehashVerifier;
    match key.algorithm {
        Algorithm::EccP256 => {
            use p256::pkcs8::DecodePublicKey;
            let Ok(vk) = p256::ecdsa::VerifyingKey::from_public_key_der(&key.spki_der) else {
                return false;
            };
            p256::ecdsa::Signature::from_der(der)
                .is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok())
        }
        Algorithm::EccP384 => {
            use p384::pkcs8::DecodePublicKey;
            let Ok(vk) = p384::ecdsa::VerifyingKey::from_public_key_der(&key.spki_der) else {
                return false;
            };
            p384::ecdsa::Signature::from_der(der)
                .is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok())
        }
        _ => false,
    }
}

/// The input as a stream of control bytes.
struct Script {
    data: Vec<u8>,
    pos: usize,
    /// Responses rewritten so far (a runaway client would ask forever).
    responses: usize,
}

impl Script {
    fn next(&mut self) -> Option<u8> {
        let b = self.data.get(self.pos).copied();
        self.pos += 1;
        b
    }
    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
}

/// Upper bound on APDUs one run may cause; more is a client that loops.
pub const MAX_APDUS_PER_RUN: usize = 2_000;

/// Rewrite one response as the script says.
fn rewrite(script: &mut Script, honest: Zeroizing<Vec<u8>>) -> Vec<u8> {
    script.responses += 1;
    assert!(
        script.responses <= MAX_APDUS_PER_RUN,
        "the PIV client sent more than {MAX_APDUS_PER_RUN} APDUs in one operation"
    );
    let mut r = honest.to_vec();
    let Some(c) = script.next() else {
        return r;
    };
    match c {
        0x00..=0x9f => r,
        0xa0 => {
            let n = usize::from(script.byte());
            r.truncate(n % (r.len() + 1));
            r
        }
        0xa1 => {
            let pos = usize::from(script.byte());
            let x = script.byte() | 1;
            if !r.is_empty() {
                let i = pos % r.len();
                r[i] ^= x;
            }
            r
        }
        0xa2 => {
            let n = usize::from(script.byte());
            (0..n).map(|_| script.byte()).collect()
        }
        0xa3 => Vec::new(),
        0xa4 => {
            // Oversized: the data grows by up to 64 KiB of one byte value.
            let fill = script.byte();
            let n = usize::from(script.byte()) * 256;
            let sw = r.split_off(r.len().saturating_sub(2));
            r.extend(std::iter::repeat_n(fill, n));
            r.extend(sw);
            r
        }
        0xa5 => {
            let (a, b) = (script.byte(), script.byte());
            let keep = r.len().saturating_sub(2);
            r.truncate(keep);
            r.extend([a, b]);
            r
        }
        0xa6 => {
            // "More data" with junk, whatever was asked.
            let mut out = vec![script.byte(); 256];
            out.extend([0x61, 0x00]);
            out
        }
        0xa7 => {
            // Another tag: the first byte equal to `from` becomes `to`.
            let (from, to) = (script.byte(), script.byte());
            if let Some(i) = r.iter().position(|&b| b == from) {
                r[i] = to;
            }
            r
        }
        0xa8 => {
            // A length byte made larger (value runs past the end).
            let pos = usize::from(script.byte());
            let add = script.byte() | 1;
            if r.len() > 2 {
                let i = pos % (r.len() - 2);
                r[i] = r[i].wrapping_add(add);
            }
            r
        }
        0xa9 => {
            // Only a status word.
            vec![script.byte(), script.byte()]
        }
        _ => {
            // Insert a byte.
            let pos = usize::from(script.byte());
            let b = script.byte();
            let i = pos % (r.len() + 1);
            r.insert(i, b);
            r
        }
    }
}

/// One run: `data[0]` picks the operation, the rest is the tamper script.
pub fn run(rig: &Rig, data: &[u8]) {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let script = Arc::new(Mutex::new(Script {
        data: rest.to_vec(),
        pos: 0,
        responses: 0,
    }));
    let s = script.clone();
    rig.set_tamper(Some(Box::new(move |_cmd, honest| {
        let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
        rewrite(&mut s, honest)
    })));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| operate(rig, op)));
    rig.set_tamper(None);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn operate(rig: &Rig, op: u8) {
    let Ok(mut token) = rig.open() else {
        return;
    };
    match op % 10 {
        0 => {
            let _ = token.list_keys();
        }
        1 | 2 => {
            let (slot, hash, real) = if op % 10 == 1 {
                (SlotId::Signature, HashAlgorithm::Sha256, &rig.p256)
            } else {
                (SlotId::Authentication, HashAlgorithm::Sha384, &rig.p384)
            };
            let Ok(signer) = TokenSigner::new(token, slot) else {
                return;
            };
            let signer = if slot == SlotId::Authentication {
                signer.with_pin(pin())
            } else {
                signer
            };
            let digest = hash.digest(&[op; 7]);
            if let Ok(der) = signer.sign_digest(hash, &digest) {
                let announced = signer.public_key().clone();
                assert!(
                    verifies(&announced, &digest, &der),
                    "TokenSigner released a signature that does not verify with the key it announced"
                );
                if announced == real.public_key {
                    assert!(verifies(&real.public_key, &digest, &der));
                }
            }
        }
        3 => {
            if let Ok(att) = token.attest(SlotId::Signature) {
                let mut anchors = signer_lib::attestation::TrustAnchors::empty();
                let _ = anchors.add_root_der("fuzz", att.device_certificate.clone());
                let _ = signer_lib::attestation::verify_attestation(
                    &att,
                    &anchors,
                    std::time::SystemTime::now(),
                    &signer_lib::attestation::verify::Expected {
                        public_key: Some(&rig.p256.public_key.spki_der),
                        slot: Some(SlotId::Signature),
                        serial: Some(rig.serial),
                    },
                );
            }
        }
        4 => {
            let _ = token.retry_counters();
            let _ = token.public_key(SlotId::Signature);
        }
        5 => {
            let _ = token.management_key_metadata();
            let _ = token.pin_protected_management_key(&pin());
        }
        6 => {
            let _ = token.key(SlotId::Authentication);
            let _ = token.verify_pin(&pin());
        }
        8 | 9 => {
            // RSA-PSS / Ed25519 through TokenSigner: a released signature
            // verifies with the key announced, and with the real key
            // whenever that one was announced.
            let (real, scheme, digest) = if op % 10 == 8 {
                (
                    &rig.rsa,
                    signer_lib::SignatureScheme::RsaPss,
                    HashAlgorithm::Sha256.digest(&[op; 5]),
                )
            } else {
                (
                    &rig.ed25519,
                    signer_lib::SignatureScheme::Ed25519,
                    vec![op; 5],
                )
            };
            let input = if scheme.signs_message() {
                signer_lib::SignInput::Message(&digest)
            } else {
                signer_lib::SignInput::Digest {
                    hash: HashAlgorithm::Sha256,
                    digest: &digest,
                }
            };
            let Ok(signer) = TokenSigner::new(token, real.slot) else {
                return;
            };
            if let Ok(sig) = signer.sign_with(scheme, input) {
                let announced = signer.public_key().clone();
                assert!(
                    announced.verify(scheme, &input, &sig).is_ok(),
                    "TokenSigner released a {scheme} signature that does not verify with the key it announced"
                );
                if announced == real.public_key {
                    assert!(real.public_key.verify(scheme, &input, &sig).is_ok());
                }
            }
        }
        _ => {
            // Raw signatures from the client (no verification layer): only
            // "no panic, no hang" applies here.
            let digest = HashAlgorithm::Sha256.digest(b"raw");
            let _ = token.sign(
                &signer_lib::SignRequest::ecdsa(SlotId::Signature, HashAlgorithm::Sha256, &digest),
                &mut |_| {},
            );
            let _ = token.info();
        }
    }
}

/// The process-wide rig (fuzz targets run one input at a time).
pub fn rig() -> &'static Mutex<Rig> {
    static RIG: OnceLock<Mutex<Rig>> = OnceLock::new();
    RIG.get_or_init(|| Mutex::new(Rig::new()))
}
