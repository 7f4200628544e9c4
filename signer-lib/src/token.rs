//! The `Token` trait: what every backend (emulated, YubiKey over PC/SC) offers.
//!
//! # Why the trait is synchronous
//!
//! A token is a single physical device that does one thing at a time; PC/SC
//! (`SCardTransmit`) is a blocking API; a signature may block for up to 15
//! seconds waiting for a touch. An `async` trait would only wrap those blocking
//! calls in `spawn_blocking`, hide the fact that the card is serialized, and
//! make the trait object-unsafe without boxing every future. Instead, methods
//! take `&mut self` so the type system enforces exclusive access, tokens are
//! `Send` so they can be moved into the one worker thread that owns the card
//! (the daemon runs one such worker per token and talks to it over channels),
//! and callers that need to show "touch your YubiKey" before blocking get a
//! [`TokenEvent`] callback from [`Token::sign`].
//!
//! # Sessions and the PIN
//!
//! A token value is a session: PIN verification (policy `once`) lasts until
//! the session ends, the card is reset, or another applet is selected.
//! [`Token::verify_pin`] never retries; a rejected PIN returns
//! [`crate::Error::WrongPin`] with the retries left, and it is the caller's job
//! (see `crate::session`) to stop using that PIN.

use std::time::Duration;

use crate::error::Result;
use crate::model::{
    Algorithm, HashAlgorithm, KeyInfo, PinPolicy, PublicKey, SignInput, SignatureScheme, SlotId,
    TokenInfo, TouchPolicy,
};
use crate::secret::{ManagementKey, Pin, Puk};

/// Something that happened while a token operation is in progress, reported
/// before the token blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenEvent {
    /// The token is waiting for a physical touch (for at most `timeout`).
    TouchRequired {
        /// The slot whose key needs the touch.
        slot: SlotId,
        /// How long the token will wait.
        timeout: Duration,
    },
}

/// A signature request: which key, which scheme, over what.
///
/// - ECDSA (P-256/P-384), RSA PKCS#1 v1.5 and RSA-PSS sign a **digest** the
///   caller made ([`SignInput::Digest`]); its length must match its hash.
///   For RSA the host pads (EMSA-PKCS1-v1_5 / EMSA-PSS, salt = hash length,
///   MGF1 with the same hash) and the card performs the raw RSA operation.
/// - Ed25519 signs the **message** itself ([`SignInput::Message`], at most
///   [`crate::model::ED25519_MAX_MESSAGE`] bytes); there is no pre-hash.
/// - X25519 keys cannot sign ([`crate::Error::KeyCannotSign`]).
///
/// Every backend checks the request ([`SignatureScheme::check`]) before any
/// card traffic, so a malformed request never costs an APDU or a PIN try.
#[derive(Clone, Copy, Debug)]
pub struct SignRequest<'a> {
    /// The key's slot.
    pub slot: SlotId,
    /// The signature scheme; must fit the key ([`SignatureScheme::fits`]).
    pub scheme: SignatureScheme,
    /// What is signed: a digest, or the message for Ed25519.
    pub input: SignInput<'a>,
    /// When set, the token VERIFYs this PIN immediately before the signature,
    /// with nothing in between (in one PC/SC transaction on hardware). This is
    /// how PIN policy `always` is satisfied.
    pub pin: Option<&'a Pin>,
}

impl<'a> SignRequest<'a> {
    /// An ECDSA signature over a digest made with `hash` (no PIN).
    pub fn ecdsa(slot: SlotId, hash: HashAlgorithm, digest: &'a [u8]) -> SignRequest<'a> {
        SignRequest::digest(slot, SignatureScheme::Ecdsa, hash, digest)
    }

    /// A signature with `scheme` over a digest made with `hash` (no PIN).
    pub fn digest(
        slot: SlotId,
        scheme: SignatureScheme,
        hash: HashAlgorithm,
        digest: &'a [u8],
    ) -> SignRequest<'a> {
        SignRequest {
            slot,
            scheme,
            input: SignInput::Digest { hash, digest },
            pin: None,
        }
    }

    /// An Ed25519 signature over `message` itself (no PIN).
    pub fn ed25519(slot: SlotId, message: &'a [u8]) -> SignRequest<'a> {
        SignRequest {
            slot,
            scheme: SignatureScheme::Ed25519,
            input: SignInput::Message(message),
            pin: None,
        }
    }

    /// The same request with `pin` verified immediately before the signature.
    pub fn with_pin(mut self, pin: Option<&'a Pin>) -> SignRequest<'a> {
        self.pin = pin;
        self
    }
}

/// An attestation: the certificate the token issues for a slot's key, and the
/// device certificate (slot f9) that signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// DER certificate for the attested key, signed by the f9 key.
    pub slot_certificate: Vec<u8>,
    /// DER device certificate (the f9 certificate).
    pub device_certificate: Vec<u8>,
}

/// Private key material to import (admin operation; imported keys cannot be
/// attested). Zeroized on drop. Build it with [`ImportKey::ec`],
/// [`ImportKey::ed25519`], [`ImportKey::x25519`] or [`ImportKey::rsa`].
#[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct ImportKey {
    /// The key type.
    #[zeroize(skip)]
    pub algorithm: Algorithm,
    /// P-256/P-384: the private scalar, big-endian, field-length bytes.
    /// Ed25519: the 32-byte seed (RFC 8032 private key). X25519: the 32-byte
    /// secret (RFC 7748). Empty for RSA (see `rsa`).
    pub scalar: Vec<u8>,
    /// RSA: the CRT components as IMPORT ASYMMETRIC KEY sends them.
    pub rsa: Option<RsaCrtComponents>,
}

/// The CRT components of an RSA private key, big-endian: p, q, d mod (p−1),
/// d mod (q−1), q⁻¹ mod p (IMPORT tags 01..05; the public exponent is
/// 65537 on a YubiKey). Zeroized on drop.
#[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct RsaCrtComponents {
    /// Prime p.
    pub p: Vec<u8>,
    /// Prime q.
    pub q: Vec<u8>,
    /// d mod (p − 1).
    pub dp: Vec<u8>,
    /// d mod (q − 1).
    pub dq: Vec<u8>,
    /// q⁻¹ mod p.
    pub qinv: Vec<u8>,
}

impl ImportKey {
    /// A P-256 or P-384 private scalar.
    pub fn ec(algorithm: Algorithm, scalar: &[u8]) -> ImportKey {
        ImportKey {
            algorithm,
            scalar: scalar.to_vec(),
            rsa: None,
        }
    }

    /// An Ed25519 private key (its 32-byte seed).
    pub fn ed25519(seed: &[u8]) -> ImportKey {
        ImportKey {
            algorithm: Algorithm::Ed25519,
            scalar: seed.to_vec(),
            rsa: None,
        }
    }

    /// An X25519 private key (its 32 bytes).
    pub fn x25519(secret: &[u8]) -> ImportKey {
        ImportKey {
            algorithm: Algorithm::X25519,
            scalar: secret.to_vec(),
            rsa: None,
        }
    }

    /// An RSA private key (1024/2048/3072/4096 bits, public exponent 65537
    /// as a YubiKey requires; [`crate::Error::UnsupportedAlgorithm`] otherwise).
    pub fn rsa(key: &rsa::RsaPrivateKey) -> Result<ImportKey> {
        use rsa::traits::{PrivateKeyParts, PublicKeyParts};
        let unsupported = |what: String| crate::Error::UnsupportedAlgorithm { algorithm: what };
        let algorithm = match key.n().bits_vartime() {
            1024 => Algorithm::Rsa1024,
            2048 => Algorithm::Rsa2048,
            3072 => Algorithm::Rsa3072,
            4096 => Algorithm::Rsa4096,
            bits => return Err(unsupported(format!("RSA with a {bits}-bit modulus"))),
        };
        if key.e() != &rsa::BoxedUint::from(65537u32) {
            return Err(unsupported(
                "RSA with a public exponent other than 65537".into(),
            ));
        }
        let primes = key.primes();
        let (Some(p), Some(q), Some(dp), Some(dq), Some(qinv)) = (
            primes.first(),
            primes.get(1),
            key.dp(),
            key.dq(),
            key.crt_coefficient(),
        ) else {
            return Err(unsupported("RSA without two primes and CRT values".into()));
        };
        if primes.len() != 2 {
            return Err(unsupported("multi-prime RSA".into()));
        }
        // Private values: no unzeroized copy stays behind.
        let be = |v: &rsa::BoxedUint| {
            let bytes = zeroize::Zeroizing::new(v.to_be_bytes_trimmed_vartime());
            bytes.to_vec()
        };
        Ok(ImportKey {
            algorithm,
            scalar: Vec::new(),
            rsa: Some(RsaCrtComponents {
                p: be(p),
                q: be(q),
                dp: be(dp),
                dq: be(dq),
                qinv: {
                    let mut qinv = qinv;
                    let out = be(&qinv);
                    zeroize::Zeroize::zeroize(&mut qinv);
                    out
                },
            }),
        })
    }
}

impl ImportKey {
    /// The public half of the key (computed on the host, e.g. to describe an
    /// imported key on firmware without GET METADATA). An invalid key is
    /// [`crate::Error::BadCommandData`].
    pub fn public_key(&self) -> Result<PublicKey> {
        use spki::EncodePublicKey;
        let bad = |e: &dyn std::fmt::Display| crate::Error::BadCommandData {
            reason: format!("not a valid {} private key: {e}", self.algorithm),
        };
        let spki = |der: spki::Document| PublicKey {
            algorithm: self.algorithm,
            spki_der: der.as_bytes().to_vec(),
        };
        match self.algorithm {
            Algorithm::EccP256 => {
                let sk = p256::SecretKey::from_slice(&self.scalar).map_err(|e| bad(&e))?;
                Ok(spki(
                    sk.public_key().to_public_key_der().map_err(|e| bad(&e))?,
                ))
            }
            Algorithm::EccP384 => {
                let sk = p384::SecretKey::from_slice(&self.scalar).map_err(|e| bad(&e))?;
                Ok(spki(
                    sk.public_key().to_public_key_der().map_err(|e| bad(&e))?,
                ))
            }
            Algorithm::Ed25519 => {
                let seed: [u8; 32] = self
                    .scalar
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad(&"the seed is not 32 bytes"))?;
                let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
                PublicKey::from_ed25519_bytes(sk.verifying_key().as_bytes())
            }
            Algorithm::X25519 => {
                let secret: [u8; 32] = self
                    .scalar
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad(&"the secret is not 32 bytes"))?;
                let sk = x25519_dalek::StaticSecret::from(secret);
                PublicKey::from_x25519_bytes(x25519_dalek::PublicKey::from(&sk).as_bytes())
            }
            _ => {
                let parts = self.rsa.as_ref().ok_or_else(|| bad(&"no CRT components"))?;
                let uint = |v: &[u8]| rsa::BoxedUint::from_be_slice_vartime(v);
                let key = rsa::RsaPrivateKey::from_p_q(
                    uint(&parts.p),
                    uint(&parts.q),
                    rsa::BoxedUint::from(65537u32),
                )
                .map_err(|e| bad(&e))?;
                let der = key
                    .to_public_key()
                    .to_public_key_der()
                    .map_err(|e| bad(&e))?;
                let public = PublicKey::from_spki_der(der.as_bytes())?;
                if public.algorithm != self.algorithm {
                    return Err(bad(&format!("the modulus is {}", public.algorithm)));
                }
                Ok(public)
            }
        }
    }
}

impl std::fmt::Debug for ImportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImportKey({}, ***)", self.algorithm)
    }
}

/// Retry counters of the PIN and PUK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryCounters {
    /// PIN attempts left.
    pub pin: u8,
    /// PUK attempts left.
    pub puk: u8,
}

/// A PIV token.
pub trait Token: Send {
    /// Serial, firmware, model, kind.
    fn info(&mut self) -> Result<TokenInfo>;

    /// Every key slot that holds a key.
    fn list_keys(&mut self) -> Result<Vec<KeyInfo>>;

    /// One slot's key (public key, certificate, policies).
    /// [`crate::Error::KeyNotFound`] when the slot is empty.
    fn key(&mut self, slot: SlotId) -> Result<KeyInfo>;

    /// One slot's public key.
    fn public_key(&mut self, slot: SlotId) -> Result<PublicKey> {
        Ok(self.key(slot)?.public_key)
    }

    /// Sign `request` (see [`SignRequest`] for what each scheme signs) and
    /// return the signature as the token made it: DER for ECDSA,
    /// modulus-length bytes for RSA, 64 bytes for Ed25519. Backends do not
    /// verify it; [`crate::session::SigningSession`] and
    /// [`crate::signer::TokenSigner`] do before releasing it.
    /// `events` is called before the token blocks (e.g. for a touch).
    fn sign(
        &mut self,
        request: &SignRequest<'_>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<Vec<u8>>;

    /// ECDSA over a prehashed digest without a PIN or event callback.
    fn sign_digest(&mut self, slot: SlotId, hash: HashAlgorithm, digest: &[u8]) -> Result<Vec<u8>> {
        self.sign(&SignRequest::ecdsa(slot, hash, digest), &mut |_| {})
    }

    /// RSA decryption, raw: the private-key operation over a modulus-length
    /// `ciphertext`, returning the modulus-length block; the caller removes
    /// the padding (PKCS#1 v1.5 or OAEP, e.g. with the `rsa` crate), as with
    /// the device. The key's PIN and touch policies apply (`pin` is verified
    /// immediately before, as for [`Token::sign`]). Not RSA:
    /// [`crate::Error::NotSupported`]; a wrong length:
    /// [`crate::Error::BadCommandData`]. Backends that do not offer it keep
    /// this default ([`crate::Error::NotSupported`]).
    fn decrypt_raw(
        &mut self,
        slot: SlotId,
        ciphertext: &[u8],
        pin: Option<&Pin>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let _ = (slot, ciphertext, pin, events);
        Err(crate::Error::NotSupported {
            what: "RSA decryption on this backend".into(),
        })
    }

    /// ECDH with the key in `slot` (P-256, P-384, X25519) and a peer's
    /// public key (the uncompressed SEC1 point, or X25519's 32 bytes):
    /// the shared secret (the x-coordinate for P-256/P-384, 32 bytes for
    /// X25519). PIN and touch policies apply as for [`Token::sign`]. Another
    /// key type: [`crate::Error::NotSupported`]; a malformed peer key:
    /// [`crate::Error::BadCommandData`].
    fn key_agreement(
        &mut self,
        slot: SlotId,
        peer_public: &[u8],
        pin: Option<&Pin>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let _ = (slot, peer_public, pin, events);
        Err(crate::Error::NotSupported {
            what: "key agreement on this backend".into(),
        })
    }

    /// Attest a key generated on the token.
    fn attest(&mut self, slot: SlotId) -> Result<Attestation>;

    /// Verify the PIN. On rejection returns [`crate::Error::WrongPin`] with the
    /// tries left, or [`crate::Error::PinBlocked`]. Never retried internally.
    fn verify_pin(&mut self, pin: &Pin) -> Result<()>;

    /// PIN and PUK retry counters (does not spend a try).
    fn retry_counters(&mut self) -> Result<RetryCounters>;

    /// Change the PIN (needs the current PIN).
    fn change_pin(&mut self, current: &Pin, new: &Pin) -> Result<()>;

    /// Change the PUK (needs the current PUK).
    fn change_puk(&mut self, current: &Puk, new: &Puk) -> Result<()>;

    /// Set a new PIN using the PUK (works when the PIN is blocked).
    fn unblock_pin(&mut self, puk: &Puk, new_pin: &Pin) -> Result<()>;

    /// Authenticate with the management key; admin operations below need it.
    fn authenticate(&mut self, key: &ManagementKey) -> Result<()>;

    /// Generate a key in `slot` (admin). Returns the new key.
    fn generate_key(
        &mut self,
        slot: SlotId,
        algorithm: Algorithm,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<KeyInfo>;

    /// Import a private key into `slot` (admin). Imported keys cannot be attested.
    fn import_key(
        &mut self,
        slot: SlotId,
        key: &ImportKey,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<KeyInfo>;

    /// Store a DER certificate in `slot`'s certificate object (admin).
    fn put_certificate(&mut self, slot: SlotId, certificate_der: &[u8]) -> Result<()>;

    /// Replace the management key (admin).
    fn set_management_key(&mut self, new: &ManagementKey, require_touch: bool) -> Result<()>;

    /// Reset the PIV applet to factory state. Refused unless both the PIN and
    /// the PUK are blocked, as on the device.
    fn reset(&mut self) -> Result<()>;
}

impl<T: Token + ?Sized> Token for Box<T> {
    fn info(&mut self) -> Result<TokenInfo> {
        (**self).info()
    }
    fn list_keys(&mut self) -> Result<Vec<KeyInfo>> {
        (**self).list_keys()
    }
    fn key(&mut self, slot: SlotId) -> Result<KeyInfo> {
        (**self).key(slot)
    }
    fn sign(
        &mut self,
        request: &SignRequest<'_>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<Vec<u8>> {
        (**self).sign(request, events)
    }
    fn decrypt_raw(
        &mut self,
        slot: SlotId,
        ciphertext: &[u8],
        pin: Option<&Pin>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        (**self).decrypt_raw(slot, ciphertext, pin, events)
    }
    fn key_agreement(
        &mut self,
        slot: SlotId,
        peer_public: &[u8],
        pin: Option<&Pin>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        (**self).key_agreement(slot, peer_public, pin, events)
    }
    fn attest(&mut self, slot: SlotId) -> Result<Attestation> {
        (**self).attest(slot)
    }
    fn verify_pin(&mut self, pin: &Pin) -> Result<()> {
        (**self).verify_pin(pin)
    }
    fn retry_counters(&mut self) -> Result<RetryCounters> {
        (**self).retry_counters()
    }
    fn change_pin(&mut self, current: &Pin, new: &Pin) -> Result<()> {
        (**self).change_pin(current, new)
    }
    fn change_puk(&mut self, current: &Puk, new: &Puk) -> Result<()> {
        (**self).change_puk(current, new)
    }
    fn unblock_pin(&mut self, puk: &Puk, new_pin: &Pin) -> Result<()> {
        (**self).unblock_pin(puk, new_pin)
    }
    fn authenticate(&mut self, key: &ManagementKey) -> Result<()> {
        (**self).authenticate(key)
    }
    fn generate_key(
        &mut self,
        slot: SlotId,
        algorithm: Algorithm,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<KeyInfo> {
        (**self).generate_key(slot, algorithm, pin_policy, touch_policy)
    }
    fn import_key(
        &mut self,
        slot: SlotId,
        key: &ImportKey,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<KeyInfo> {
        (**self).import_key(slot, key, pin_policy, touch_policy)
    }
    fn put_certificate(&mut self, slot: SlotId, certificate_der: &[u8]) -> Result<()> {
        (**self).put_certificate(slot, certificate_der)
    }
    fn set_management_key(&mut self, new: &ManagementKey, require_touch: bool) -> Result<()> {
        (**self).set_management_key(new, require_touch)
    }
    fn reset(&mut self) -> Result<()> {
        (**self).reset()
    }
}

/// Check a raw RSA decryption request against the key (before any card
/// traffic): an RSA key, a modulus-length ciphertext.
pub(crate) fn check_decrypt(slot: SlotId, algorithm: Algorithm, ciphertext: &[u8]) -> Result<()> {
    let Some(bits) = algorithm.rsa_bits() else {
        return Err(crate::Error::NotSupported {
            what: format!("decryption with the {algorithm} key in slot {slot} (RSA keys only)"),
        });
    };
    if ciphertext.len() != bits / 8 {
        return Err(crate::Error::BadCommandData {
            reason: format!(
                "an {algorithm} ciphertext is {} bytes, got {}",
                bits / 8,
                ciphertext.len()
            ),
        });
    }
    Ok(())
}

/// Check an ECDH request against the key (before any card traffic): a
/// P-256/P-384/X25519 key and a peer key of the right length.
pub(crate) fn check_key_agreement(
    slot: SlotId,
    algorithm: Algorithm,
    peer_public: &[u8],
) -> Result<()> {
    let expected = match algorithm {
        Algorithm::EccP256 => 65,
        Algorithm::EccP384 => 97,
        Algorithm::X25519 => 32,
        _ => {
            return Err(crate::Error::NotSupported {
                what: format!(
                    "key agreement with the {algorithm} key in slot {slot} (P-256, P-384 and X25519 only)"
                ),
            });
        }
    };
    if peer_public.len() != expected {
        return Err(crate::Error::BadCommandData {
            reason: format!(
                "a {algorithm} peer public key is {expected} bytes, got {}",
                peer_public.len()
            ),
        });
    }
    Ok(())
}
