//! RustCrypto `signature` adapters over any [`Token`], so Rust callers sign
//! with a token key through the traits they already use
//! (`signature::Signer`, `signature::Keypair`), and [`self_signed_certificate`]
//! for keygen. ECDSA ([`P256Signer`], [`P384Signer`]), RSA
//! ([`RsaPkcs1v15Sha256Signer`]) and Ed25519 ([`Ed25519Signer`]) keys have
//! typed signers; [`TokenSigner::sign_with`] serves every scheme.
//!
//! ```no_run
//! # fn demo(token: impl signer_lib::Token) -> Result<(), Box<dyn std::error::Error>> {
//! use signature::{Keypair, Signer, Verifier};
//! let signer = signer_lib::signer::TokenSigner::new(token, signer_lib::SlotId::Signature)?
//!     .p256()?;
//! let signature: p256::ecdsa::Signature = signer.try_sign(b"root.json")?;
//! signer.verifying_key().verify(b"root.json", &signature)?;
//! # Ok(()) }
//! ```
//!
//! Every signature the token returns is verified against the slot's public
//! key before it is handed out: a faulty card or a key swapped behind our
//! back yields an error, never a bad signature. A PIN given with
//! [`TokenSigner::with_pin`] is sent with each signature (PIN policy
//! `always`); once the token rejects it, it is dropped and never sent again
//! ([`Error::PinRejectedEarlier`]).

use std::sync::Mutex;
use std::time::Duration;

use der::Encode;
use spki::{
    AlgorithmIdentifier, AssociatedAlgorithmIdentifier, DecodePublicKey,
    SignatureAlgorithmIdentifier,
};
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::time::Validity;

use crate::certificate::{FixedNames, cert_error, common_name, random_serial};
use crate::error::{Error, Result};
use crate::model::{Algorithm, HashAlgorithm, PublicKey, SignInput, SignatureScheme, SlotId};
use crate::secret::Pin;
use crate::token::{SignRequest, Token, TokenEvent};

struct Inner<T> {
    token: T,
    pin: Option<Pin>,
    rejected: Option<u8>,
}

/// One slot of a token as a signer (any curve). Use [`TokenSigner::p256`] or
/// [`TokenSigner::p384`] for the typed RustCrypto traits.
pub struct TokenSigner<T: Token> {
    inner: Mutex<Inner<T>>,
    slot: SlotId,
    public: PublicKey,
    events: Option<fn(TokenEvent)>,
}

impl<T: Token> TokenSigner<T> {
    /// The key in `slot` of `token`. [`Error::KeyNotFound`] when empty.
    pub fn new(mut token: T, slot: SlotId) -> Result<Self> {
        let public = token.public_key(slot)?;
        Ok(TokenSigner {
            inner: Mutex::new(Inner {
                token,
                pin: None,
                rejected: None,
            }),
            slot,
            public,
            events: None,
        })
    }

    /// Send this PIN immediately before each signature (PIN policy
    /// `always`). Dropped, never resent, once the token rejects it.
    pub fn with_pin(self, pin: Pin) -> Self {
        if let Ok(mut inner) = self.inner.lock() {
            inner.pin = Some(pin);
        }
        self
    }

    /// Call `events` before the token blocks (e.g. print "touch your
    /// YubiKey").
    pub fn with_events(mut self, events: fn(TokenEvent)) -> Self {
        self.events = Some(events);
        self
    }

    /// The slot's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The slot.
    pub fn slot(&self) -> SlotId {
        self.slot
    }

    /// Give the token back.
    pub fn into_inner(self) -> T {
        match self.inner.into_inner() {
            Ok(inner) => inner.token,
            Err(poisoned) => poisoned.into_inner().token,
        }
    }

    /// ECDSA over a prehashed digest; returns the DER signature, verified.
    pub fn sign_digest(&self, hash: HashAlgorithm, digest: &[u8]) -> Result<Vec<u8>> {
        self.sign_with(SignatureScheme::Ecdsa, SignInput::Digest { hash, digest })
    }

    /// Sign `input` with `scheme` (see [`crate::SignRequest`]); the
    /// signature is verified with the slot's public key
    /// ([`PublicKey::verify`]) before it is returned.
    pub fn sign_with(&self, scheme: SignatureScheme, input: SignInput<'_>) -> Result<Vec<u8>> {
        // A request the key cannot serve never reaches the token.
        scheme.check(self.slot, self.public.algorithm, &input)?;
        let mut inner = self.inner.lock().map_err(|_| Error::Protocol {
            reason: "a previous signature panicked while holding the token".into(),
        })?;
        if let Some(retries_left) = inner.rejected {
            return Err(Error::PinRejectedEarlier {
                source_description: "the PIN given to TokenSigner::with_pin".into(),
                retries_left,
            });
        }
        let Inner { token, pin, .. } = &mut *inner;
        let events = self.events;
        let result = token.sign(
            &SignRequest {
                slot: self.slot,
                scheme,
                input,
                pin: pin.as_ref(),
            },
            &mut |e| {
                if let Some(f) = events {
                    f(e)
                }
            },
        );
        match result {
            Ok(signature) => {
                verify(&self.public, scheme, &input, &signature)?;
                Ok(signature)
            }
            Err(Error::WrongPin { retries_left }) => {
                inner.pin = None;
                inner.rejected = Some(retries_left);
                Err(Error::WrongPin { retries_left })
            }
            Err(e) => Err(e),
        }
    }

    /// As a P-256 signer; [`Error::UnsupportedAlgorithm`] for another key.
    pub fn p256(self) -> Result<P256Signer<T>> {
        match self.public.algorithm {
            Algorithm::EccP256 => {
                let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&self.public.spki_der)
                    .map_err(|e| crypto(format!("P-256 public key: {e}")))?;
                Ok(P256Signer { inner: self, vk })
            }
            other => Err(Error::UnsupportedAlgorithm {
                algorithm: other.name().into(),
            }),
        }
    }

    /// As a P-384 signer; [`Error::UnsupportedAlgorithm`] for another key.
    pub fn p384(self) -> Result<P384Signer<T>> {
        match self.public.algorithm {
            Algorithm::EccP384 => {
                let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&self.public.spki_der)
                    .map_err(|e| crypto(format!("P-384 public key: {e}")))?;
                Ok(P384Signer { inner: self, vk })
            }
            other => Err(Error::UnsupportedAlgorithm {
                algorithm: other.name().into(),
            }),
        }
    }
}

fn crypto(reason: String) -> Error {
    Error::Crypto { reason }
}

/// Check a signature from the token with the slot's public key.
fn verify(
    public: &PublicKey,
    scheme: SignatureScheme,
    input: &SignInput<'_>,
    signature: &[u8],
) -> Result<()> {
    public
        .verify(scheme, input, signature)
        .map_err(|e| match e {
            Error::Crypto { reason } => crypto(format!(
                "the token returned a signature that does not verify with the slot's key: {reason}"
            )),
            other => other,
        })
}

fn to_sig_error(e: Error) -> signature::Error {
    signature::Error::from_source(e)
}

macro_rules! curve_signer {
    ($name:ident, $curve:ident, $hash:ident, $digest:ty, $doc:literal) => {
        #[doc = $doc]
        pub struct $name<T: Token> {
            inner: TokenSigner<T>,
            vk: $curve::ecdsa::VerifyingKey,
        }

        impl<T: Token> $name<T> {
            /// The untyped signer.
            pub fn into_inner(self) -> TokenSigner<T> {
                self.inner
            }

            fn der(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
                use sha2::Digest;
                let digest = <$digest>::digest(msg);
                self.inner
                    .sign_digest(HashAlgorithm::$hash, &digest)
                    .map_err(to_sig_error)
            }
        }

        impl<T: Token> signature::Keypair for $name<T> {
            type VerifyingKey = $curve::ecdsa::VerifyingKey;
            fn verifying_key(&self) -> Self::VerifyingKey {
                self.vk
            }
        }

        impl<T: Token> signature::Signer<$curve::ecdsa::DerSignature> for $name<T> {
            fn try_sign(
                &self,
                msg: &[u8],
            ) -> std::result::Result<$curve::ecdsa::DerSignature, signature::Error> {
                $curve::ecdsa::DerSignature::try_from(self.der(msg)?.as_slice())
            }
        }

        impl<T: Token> signature::Signer<$curve::ecdsa::Signature> for $name<T> {
            fn try_sign(
                &self,
                msg: &[u8],
            ) -> std::result::Result<$curve::ecdsa::Signature, signature::Error> {
                $curve::ecdsa::Signature::from_der(&self.der(msg)?)
            }
        }

        impl<T: Token> SignatureAlgorithmIdentifier for $name<T> {
            type Params = der::AnyRef<'static>;
            const SIGNATURE_ALGORITHM_IDENTIFIER: AlgorithmIdentifier<Self::Params> =
                $curve::ecdsa::Signature::ALGORITHM_IDENTIFIER;
        }
    };
}

curve_signer!(
    P256Signer,
    p256,
    Sha256,
    sha2::Sha256,
    "A P-256 token key as a RustCrypto signer (ECDSA with SHA-256)."
);
curve_signer!(
    P384Signer,
    p384,
    Sha384,
    sha2::Sha384,
    "A P-384 token key as a RustCrypto signer (ECDSA with SHA-384)."
);

/// An RSA token key as a RustCrypto signer: RSASSA-PKCS1-v1_5 with SHA-256
/// (what X.509 `sha256WithRSAEncryption` means). For PSS or other hashes,
/// use [`TokenSigner::sign_with`].
pub struct RsaPkcs1v15Sha256Signer<T: Token> {
    inner: TokenSigner<T>,
    vk: rsa::pkcs1v15::VerifyingKey<sha2::Sha256>,
}

impl<T: Token> RsaPkcs1v15Sha256Signer<T> {
    /// The untyped signer.
    pub fn into_inner(self) -> TokenSigner<T> {
        self.inner
    }
}

impl<T: Token> signature::Keypair for RsaPkcs1v15Sha256Signer<T> {
    type VerifyingKey = rsa::pkcs1v15::VerifyingKey<sha2::Sha256>;
    fn verifying_key(&self) -> Self::VerifyingKey {
        self.vk.clone()
    }
}

impl<T: Token> signature::Signer<rsa::pkcs1v15::Signature> for RsaPkcs1v15Sha256Signer<T> {
    fn try_sign(
        &self,
        msg: &[u8],
    ) -> std::result::Result<rsa::pkcs1v15::Signature, signature::Error> {
        let digest = HashAlgorithm::Sha256.digest(msg);
        let sig = self
            .inner
            .sign_with(
                SignatureScheme::RsaPkcs1v15,
                SignInput::Digest {
                    hash: HashAlgorithm::Sha256,
                    digest: &digest,
                },
            )
            .map_err(to_sig_error)?;
        rsa::pkcs1v15::Signature::try_from(sig.as_slice())
    }
}

impl<T: Token> SignatureAlgorithmIdentifier for RsaPkcs1v15Sha256Signer<T> {
    type Params = der::AnyRef<'static>;
    const SIGNATURE_ALGORITHM_IDENTIFIER: AlgorithmIdentifier<Self::Params> = AlgorithmIdentifier {
        oid: const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
        parameters: Some(der::AnyRef::NULL),
    };
}

/// An Ed25519 token key as a RustCrypto signer (PureEdDSA: the token signs
/// the message itself, at most [`crate::model::ED25519_MAX_MESSAGE`] bytes).
pub struct Ed25519Signer<T: Token> {
    inner: TokenSigner<T>,
    vk: ed25519_dalek::VerifyingKey,
}

impl<T: Token> Ed25519Signer<T> {
    /// The untyped signer.
    pub fn into_inner(self) -> TokenSigner<T> {
        self.inner
    }
}

impl<T: Token> signature::Keypair for Ed25519Signer<T> {
    type VerifyingKey = ed25519_dalek::VerifyingKey;
    fn verifying_key(&self) -> Self::VerifyingKey {
        self.vk
    }
}

impl<T: Token> signature::Signer<ed25519_dalek::Signature> for Ed25519Signer<T> {
    fn try_sign(
        &self,
        msg: &[u8],
    ) -> std::result::Result<ed25519_dalek::Signature, signature::Error> {
        let sig = self
            .inner
            .sign_with(SignatureScheme::Ed25519, SignInput::Message(msg))
            .map_err(to_sig_error)?;
        ed25519_dalek::Signature::from_slice(&sig)
    }
}

impl<T: Token> SignatureAlgorithmIdentifier for Ed25519Signer<T> {
    type Params = der::AnyRef<'static>;
    const SIGNATURE_ALGORITHM_IDENTIFIER: AlgorithmIdentifier<Self::Params> = AlgorithmIdentifier {
        oid: const_oid::db::rfc8410::ID_ED_25519,
        parameters: None,
    };
}

impl<T: Token> TokenSigner<T> {
    /// As an RSA PKCS#1 v1.5 / SHA-256 signer; [`Error::UnsupportedAlgorithm`]
    /// for a key that is not RSA.
    pub fn rsa_pkcs1v15_sha256(self) -> Result<RsaPkcs1v15Sha256Signer<T>> {
        let key = self.public.rsa_key()?;
        Ok(RsaPkcs1v15Sha256Signer {
            inner: self,
            vk: rsa::pkcs1v15::VerifyingKey::new(key),
        })
    }

    /// As an Ed25519 signer; [`Error::UnsupportedAlgorithm`] for another key.
    pub fn ed25519(self) -> Result<Ed25519Signer<T>> {
        let vk = self.public.ed25519_key()?;
        Ok(Ed25519Signer { inner: self, vk })
    }
}

/// A self-signed X.509 certificate (DER) for the signer's key, subject
/// `CN=<subject_cn>`, valid from a day ago for `validity`. Signed on the
/// token: the key's PIN and touch policies apply (a touch-required key asks
/// for a touch). Stored in the slot, it lets other tools (ykman, PKCS#11)
/// see the key.
pub fn self_signed_certificate<T: Token>(
    signer: TokenSigner<T>,
    subject_cn: &str,
    validity: Duration,
) -> Result<(Vec<u8>, T)> {
    let name = common_name(subject_cn)?;
    let now = std::time::SystemTime::now();
    let day = Duration::from_secs(24 * 3600);
    let validity = Validity::new(
        x509_cert::time::Time::try_from(now - day).map_err(cert_error)?,
        x509_cert::time::Time::try_from(now + validity).map_err(cert_error)?,
    );
    let serial = random_serial()?;
    let spki = spki::SubjectPublicKeyInfoOwned::try_from(signer.public.spki_der.as_slice())
        .map_err(cert_error)?;
    let profile = FixedNames {
        issuer: name.clone(),
        subject: name,
        // CA:FALSE, as ykman's self-signed slot certificates.
        basic_constraints: Some(false),
    };
    let builder = CertificateBuilder::new(profile, serial, validity, spki).map_err(cert_error)?;
    match signer.public.algorithm {
        Algorithm::EccP256 => {
            let s = signer.p256()?;
            let cert = builder
                .build::<_, p256::ecdsa::DerSignature>(&s)
                .map_err(cert_error)?;
            Ok((
                cert.to_der().map_err(cert_error)?,
                s.into_inner().into_inner(),
            ))
        }
        Algorithm::EccP384 => {
            let s = signer.p384()?;
            let cert = builder
                .build::<_, p384::ecdsa::DerSignature>(&s)
                .map_err(cert_error)?;
            Ok((
                cert.to_der().map_err(cert_error)?,
                s.into_inner().into_inner(),
            ))
        }
        Algorithm::Ed25519 => {
            let s = signer.ed25519()?;
            let cert = builder
                .build::<_, ed25519_dalek::Signature>(&s)
                .map_err(cert_error)?;
            Ok((
                cert.to_der().map_err(cert_error)?,
                s.into_inner().into_inner(),
            ))
        }
        a if a.is_rsa() => {
            let s = signer.rsa_pkcs1v15_sha256()?;
            let cert = builder
                .build::<_, rsa::pkcs1v15::Signature>(&s)
                .map_err(cert_error)?;
            Ok((
                cert.to_der().map_err(cert_error)?,
                s.into_inner().into_inner(),
            ))
        }
        // X25519 cannot sign (not even its own certificate).
        other => Err(Error::KeyCannotSign {
            slot: signer.slot,
            algorithm: other,
        }),
    }
}
