//! TUF public keys (securesystemslib's `SSlibKey` form) of token keys, their
//! key ids, and signature verification with RustCrypto.
//!
//! | token key   | `keytype` | `scheme`              | `keyval.public`           | signature (`sig`, hex)           |
//! |-------------|-----------|-----------------------|---------------------------|----------------------------------|
//! | P-256       | `ecdsa`   | `ecdsa-sha2-nistp256` | SPKI PEM                  | DER ECDSA over SHA-256           |
//! | P-384       | `ecdsa`   | `ecdsa-sha2-nistp384` | SPKI PEM                  | DER ECDSA over SHA-384           |
//! | Ed25519     | `ed25519` | `ed25519`             | 64 hex digits (32 bytes)  | 64 bytes, over the bytes themselves |
//! | RSA (any)   | `rsa`     | `rsassa-pss-sha256`   | SPKI PEM                  | RSA-PSS, SHA-256, MGF1-SHA-256, salt 32 |
//!
//! `verify` also accepts the other RSA schemes securesystemslib defines
//! with SHA-2 (`rsassa-pss-sha384`/`-sha512`, `rsa-pkcs1v15-sha256`/`-sha384`/`-sha512`),
//! so that roots made by other tools can be checked and signed; PSS
//! signatures must use a salt as long as the digest (what securesystemslib,
//! go-tuf and this tool write).

use std::collections::BTreeMap;

use sha2::Digest;
use signer_lib::{HashAlgorithm, SignInput, SignatureScheme};

use super::canonical::Json;
use super::error::TufError;

/// `keytype` of ECDSA keys.
pub const KEYTYPE_ECDSA: &str = "ecdsa";
/// `keytype` (and `scheme`) of Ed25519 keys.
pub const KEYTYPE_ED25519: &str = "ed25519";
/// `keytype` of RSA keys.
pub const KEYTYPE_RSA: &str = "rsa";
/// The scheme of P-256 keys: ECDSA over SHA-256.
pub const SCHEME_P256: &str = "ecdsa-sha2-nistp256";
/// The scheme of P-384 keys: ECDSA over SHA-384.
pub const SCHEME_P384: &str = "ecdsa-sha2-nistp384";
/// The scheme of Ed25519 keys (PureEdDSA over the canonical bytes).
pub const SCHEME_ED25519: &str = "ed25519";
/// The scheme of token RSA keys: RSASSA-PSS with SHA-256.
pub const SCHEME_RSA_PSS_SHA256: &str = "rsassa-pss-sha256";

/// The schemes this module signs and verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `ecdsa-sha2-nistp256`
    P256,
    /// `ecdsa-sha2-nistp384`
    P384,
    /// `ed25519`: the token signs the canonical bytes themselves.
    Ed25519,
    /// `rsassa-pss-sha256|384|512`: PSS, MGF1 with the same hash, salt = digest length.
    RsaPss(HashAlgorithm),
    /// `rsa-pkcs1v15-sha256|384|512`.
    RsaPkcs1v15(HashAlgorithm),
}

impl Scheme {
    /// The scheme's name in TUF metadata.
    pub fn name(self) -> &'static str {
        use HashAlgorithm::*;
        match self {
            Scheme::P256 => SCHEME_P256,
            Scheme::P384 => SCHEME_P384,
            Scheme::Ed25519 => SCHEME_ED25519,
            Scheme::RsaPss(Sha256) => SCHEME_RSA_PSS_SHA256,
            Scheme::RsaPss(Sha384) => "rsassa-pss-sha384",
            Scheme::RsaPss(Sha512) => "rsassa-pss-sha512",
            Scheme::RsaPkcs1v15(Sha256) => "rsa-pkcs1v15-sha256",
            Scheme::RsaPkcs1v15(Sha384) => "rsa-pkcs1v15-sha384",
            Scheme::RsaPkcs1v15(Sha512) => "rsa-pkcs1v15-sha512",
        }
    }

    /// The `keytype` keys of this scheme have.
    pub fn keytype(self) -> &'static str {
        match self {
            Scheme::P256 | Scheme::P384 => KEYTYPE_ECDSA,
            Scheme::Ed25519 => KEYTYPE_ED25519,
            Scheme::RsaPss(_) | Scheme::RsaPkcs1v15(_) => KEYTYPE_RSA,
        }
    }

    /// The scheme of a token key of `algorithm` (`None`: cannot sign TUF metadata).
    pub fn for_algorithm(algorithm: signer_lib::Algorithm) -> Option<Scheme> {
        use signer_lib::Algorithm;
        match algorithm {
            Algorithm::EccP256 => Some(Scheme::P256),
            Algorithm::EccP384 => Some(Scheme::P384),
            Algorithm::Ed25519 => Some(Scheme::Ed25519),
            a if a.is_rsa() => Some(Scheme::RsaPss(HashAlgorithm::Sha256)),
            _ => None,
        }
    }

    /// The hash applied to the canonical bytes (Ed25519: SHA-512, inside
    /// the signature; the daemon is asked for it by name).
    pub fn hash(self) -> HashAlgorithm {
        match self {
            Scheme::P256 => HashAlgorithm::Sha256,
            Scheme::P384 => HashAlgorithm::Sha384,
            Scheme::Ed25519 => HashAlgorithm::Sha512,
            Scheme::RsaPss(h) | Scheme::RsaPkcs1v15(h) => h,
        }
    }

    /// signer-lib's signature scheme.
    pub fn signature_scheme(self) -> SignatureScheme {
        match self {
            Scheme::P256 | Scheme::P384 => SignatureScheme::Ecdsa,
            Scheme::Ed25519 => SignatureScheme::Ed25519,
            Scheme::RsaPss(_) => SignatureScheme::RsaPss,
            Scheme::RsaPkcs1v15(_) => SignatureScheme::RsaPkcs1v15,
        }
    }

    /// What the token signs for `data` (the canonical bytes of `signed`):
    /// the scheme's digest of it, or `data` itself for Ed25519.
    pub fn token_input(self, data: &[u8]) -> Vec<u8> {
        match self {
            Scheme::Ed25519 => data.to_vec(),
            other => other.hash().digest(data),
        }
    }

    /// The hash of the scheme over `data` (Ed25519: SHA-512, which only
    /// identifies the data).
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        self.hash().digest(data)
    }

    fn of(keytype: &str, scheme: &str) -> Option<Scheme> {
        use HashAlgorithm::*;
        // securesystemslib still accepts the scheme name as keytype (deprecated).
        Some(match (keytype, scheme) {
            (KEYTYPE_ECDSA | SCHEME_P256, SCHEME_P256) => Scheme::P256,
            (KEYTYPE_ECDSA | SCHEME_P384, SCHEME_P384) => Scheme::P384,
            (KEYTYPE_ED25519, SCHEME_ED25519) => Scheme::Ed25519,
            (KEYTYPE_RSA, SCHEME_RSA_PSS_SHA256) => Scheme::RsaPss(Sha256),
            (KEYTYPE_RSA, "rsassa-pss-sha384") => Scheme::RsaPss(Sha384),
            (KEYTYPE_RSA, "rsassa-pss-sha512") => Scheme::RsaPss(Sha512),
            (KEYTYPE_RSA, "rsa-pkcs1v15-sha256") => Scheme::RsaPkcs1v15(Sha256),
            (KEYTYPE_RSA, "rsa-pkcs1v15-sha384") => Scheme::RsaPkcs1v15(Sha384),
            (KEYTYPE_RSA, "rsa-pkcs1v15-sha512") => Scheme::RsaPkcs1v15(Sha512),
            _ => return None,
        })
    }
}

/// A TUF public key: `{"keytype", "scheme", "keyval": {"public"}}` (other
/// members of a key found in metadata are kept there, not here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TufKey {
    /// `keytype`
    pub keytype: String,
    /// `scheme`
    pub scheme: String,
    /// `keyval.public`: for ECDSA and RSA the SubjectPublicKeyInfo PEM,
    /// with LF line ends and a final newline, as pyca/cryptography writes
    /// it; for Ed25519 the 32 key bytes in lowercase hex.
    pub public: String,
}

impl TufKey {
    /// The TUF key of a token key given by its SPKI DER.
    pub fn from_spki(scheme: Scheme, spki_der: &[u8]) -> Result<TufKey, TufError> {
        let public = if scheme == Scheme::Ed25519 {
            let key =
                signer_lib::PublicKey::from_spki_der(spki_der).map_err(|e| TufError::BadKey {
                    reason: format!("not an Ed25519 public key: {e}"),
                })?;
            let raw = key.curve25519_bytes().map_err(|e| TufError::BadKey {
                reason: format!("not an Ed25519 public key: {e}"),
            })?;
            hex::encode(raw)
        } else {
            pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, spki_der)
                .map_err(|e| TufError::BadKey {
                    reason: format!("cannot write the public key as PEM: {e}"),
                })?
        };
        let key = TufKey {
            keytype: scheme.keytype().into(),
            scheme: scheme.name().into(),
            public,
        };
        // Refuse a key the scheme does not accept (a wrong answer of the daemon).
        key.public_key()?;
        Ok(key)
    }

    /// A key object of metadata (`keys.<keyid>`); `at` names it in errors.
    pub fn from_json(j: &Json, at: &str) -> Result<TufKey, TufError> {
        let field = |name: &str| -> Result<String, TufError> {
            match j.get(name) {
                Some(Json::Str(s)) => Ok(s.clone()),
                _ => Err(TufError::NotMetadata {
                    reason: format!("{at}.{name} is missing or not a string"),
                }),
            }
        };
        let keytype = field("keytype")?;
        let scheme = field("scheme")?;
        let public = match j.get("keyval").and_then(|k| k.get("public")) {
            Some(Json::Str(s)) => s.clone(),
            _ => {
                return Err(TufError::NotMetadata {
                    reason: format!("{at}.keyval.public is missing or not a string"),
                });
            }
        };
        Ok(TufKey {
            keytype,
            scheme,
            public,
        })
    }

    /// The key object as canonical JSON sees it (for the key id).
    pub fn to_json(&self) -> Json {
        let mut keyval = BTreeMap::new();
        keyval.insert("public".to_string(), Json::Str(self.public.clone()));
        let mut m = BTreeMap::new();
        m.insert("keytype".to_string(), Json::Str(self.keytype.clone()));
        m.insert("scheme".to_string(), Json::Str(self.scheme.clone()));
        m.insert("keyval".to_string(), Json::Object(keyval));
        Json::Object(m)
    }

    /// The key object as serde_json writes it.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::json!({
            "keytype": self.keytype,
            "scheme": self.scheme,
            "keyval": {"public": self.public},
        })
    }

    /// The key id as securesystemslib computes it
    /// (`compute_default_keyid`): lowercase hex SHA-256 of the canonical
    /// JSON of `{"keytype", "scheme", "keyval"}`.
    pub fn keyid(&self) -> String {
        hex::encode(sha2::Sha256::digest(self.to_json().canonical()))
    }

    /// The scheme, if this module supports it.
    pub fn scheme(&self) -> Option<Scheme> {
        Scheme::of(&self.keytype, &self.scheme)
    }

    /// The SubjectPublicKeyInfo DER of the key (for Ed25519, built from the
    /// hex key bytes), checked to be a key of its scheme.
    pub fn spki_der(&self) -> Result<Vec<u8>, TufError> {
        Ok(self.public_key()?.1.spki_der)
    }

    fn pem_der(&self) -> Result<Vec<u8>, TufError> {
        let (label, der) =
            pem_rfc7468::decode_vec(self.public.as_bytes()).map_err(|e| TufError::BadKey {
                reason: format!("keyval.public is not a PEM public key: {e}"),
            })?;
        if label != "PUBLIC KEY" {
            return Err(TufError::BadKey {
                reason: format!("keyval.public is a PEM {label:?}, not a PUBLIC KEY"),
            });
        }
        Ok(der)
    }

    /// Whether two keys are the same public key (same SPKI and scheme),
    /// whatever the PEM layout.
    pub fn same_key(&self, other: &TufKey) -> bool {
        self.scheme() == other.scheme()
            && self.scheme().is_some()
            && matches!((self.spki_der(), other.spki_der()), (Ok(a), Ok(b)) if a == b)
    }

    /// The key as signer-lib's [`PublicKey`](signer_lib::PublicKey), decoded
    /// in full and checked to be a key of its scheme, with the scheme.
    fn public_key(&self) -> Result<(Scheme, signer_lib::PublicKey), TufError> {
        let scheme = self.scheme().ok_or_else(|| TufError::BadKey {
            reason: format!(
                "keytype {:?} with scheme {:?} is not supported here (only {SCHEME_P256}, {SCHEME_P384}, {SCHEME_ED25519}, rsassa-pss-sha256/384/512 and rsa-pkcs1v15-sha256/384/512)",
                self.keytype, self.scheme
            ),
        })?;
        let bad = |e: signer_lib::Error| TufError::BadKey {
            reason: format!("keyval.public is not a {} key: {e}", scheme.name()),
        };
        let public = if scheme == Scheme::Ed25519 {
            let raw = hex::decode(self.public.trim()).map_err(|e| TufError::BadKey {
                reason: format!("keyval.public of an ed25519 key is not hex: {e}"),
            })?;
            signer_lib::PublicKey::from_ed25519_bytes(&raw).map_err(bad)?
        } else {
            signer_lib::PublicKey::from_spki_der(&self.pem_der()?).map_err(bad)?
        };
        let fits = match scheme {
            Scheme::P256 => public.algorithm == signer_lib::Algorithm::EccP256,
            Scheme::P384 => public.algorithm == signer_lib::Algorithm::EccP384,
            Scheme::Ed25519 => public.algorithm == signer_lib::Algorithm::Ed25519,
            Scheme::RsaPss(_) | Scheme::RsaPkcs1v15(_) => public.algorithm.is_rsa(),
        };
        if !fits {
            return Err(TufError::BadKey {
                reason: format!(
                    "keyval.public is a {} key, not a {} key",
                    public.algorithm,
                    scheme.name()
                ),
            });
        }
        Ok((scheme, public))
    }

    /// Verify a TUF signature (`sig`: hex) over `payload` (the canonical
    /// bytes of `signed`) with signer-lib's one check per scheme
    /// ([`PublicKey::verify`](signer_lib::PublicKey::verify)): ECDSA (DER)
    /// and RSA over the scheme's hash of the payload, Ed25519 over the
    /// payload itself.
    pub fn verify(&self, payload: &[u8], sig_hex: &str) -> Result<(), String> {
        let (scheme, public) = self.public_key().map_err(|e| e.to_string())?;
        let sig = hex::decode(sig_hex).map_err(|e| format!("sig is not hex: {e}"))?;
        let digest;
        let input = if scheme == Scheme::Ed25519 {
            SignInput::Message(payload)
        } else {
            digest = scheme.digest(payload);
            SignInput::Digest {
                hash: scheme.hash(),
                digest: &digest,
            }
        };
        public
            .verify(scheme.signature_scheme(), &input, &sig)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePublicKey;
    use signature::Signer;

    fn p256_key(seed: u8) -> (p256::ecdsa::SigningKey, TufKey) {
        let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).expect("key");
        let der = sk.verifying_key().to_public_key_der().expect("spki");
        let k = TufKey::from_spki(Scheme::P256, der.as_bytes()).expect("tuf key");
        (sk, k)
    }

    #[test]
    fn pem_is_what_cryptography_writes_and_keyid_is_sha256_of_canonical_key() {
        let (_, k) = p256_key(1);
        assert!(k.public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(k.public.ends_with("\n-----END PUBLIC KEY-----\n"));
        assert!(k.public.lines().all(|l| l.len() <= 64));
        let canonical = format!(
            r#"{{"keytype":"ecdsa","keyval":{{"public":"{}"}},"scheme":"ecdsa-sha2-nistp256"}}"#,
            k.public
        );
        assert_eq!(
            k.keyid(),
            hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
        );
    }

    #[test]
    fn verifies_its_own_signatures_and_nothing_else() {
        let (sk, k) = p256_key(2);
        let sig: p256::ecdsa::Signature = sk.sign(b"payload");
        let hex_sig = hex::encode(sig.to_der().as_bytes());
        assert!(k.verify(b"payload", &hex_sig).is_ok());
        assert!(k.verify(b"payloae", &hex_sig).is_err());
        assert!(k.verify(b"payload", "zz").is_err());
        let (_, other) = p256_key(3);
        assert!(other.verify(b"payload", &hex_sig).is_err());
        assert!(k.same_key(&k.clone()));
        assert!(!k.same_key(&other));
    }

    #[test]
    fn unsupported_schemes_are_refused_with_their_name() {
        let (_, mut k) = p256_key(4);
        k.keytype = "sm2".into();
        k.scheme = "sm2-sm3".into();
        let e = k.verify(b"x", "00").unwrap_err();
        assert!(e.contains("sm2-sm3"), "{e}");
        // A P-256 key under the ed25519 scheme is not an ed25519 key.
        let (_, mut k) = p256_key(4);
        k.keytype = "ed25519".into();
        k.scheme = "ed25519".into();
        assert!(k.verify(b"x", "00").unwrap_err().contains("not hex"));
        // A P-256 PEM labelled rsa is refused, not verified as something else.
        let (_, mut k) = p256_key(5);
        k.keytype = "rsa".into();
        k.scheme = "rsassa-pss-sha256".into();
        let e = k.verify(b"x", "00").unwrap_err();
        assert!(e.contains("not a rsassa-pss-sha256 key"), "{e}");
    }

    /// Ed25519 keys: hex keyval, securesystemslib's key id, signatures over
    /// the payload itself.
    #[test]
    fn ed25519_keys_are_hex_and_sign_the_payload_itself() {
        use ed25519_dalek::Signer as _;
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let spki = sk.verifying_key().to_public_key_der().expect("spki");
        let k = TufKey::from_spki(Scheme::Ed25519, spki.as_bytes()).expect("tuf key");
        assert_eq!(k.keytype, "ed25519");
        assert_eq!(k.scheme, "ed25519");
        assert_eq!(k.public, hex::encode(sk.verifying_key().to_bytes()));
        let canonical = format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
            k.public
        );
        assert_eq!(
            k.keyid(),
            hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
        );
        assert_eq!(k.spki_der().expect("der"), spki.as_bytes());
        let sig = hex::encode(sk.sign(b"payload").to_bytes());
        assert!(k.verify(b"payload", &sig).is_ok());
        assert!(k.verify(b"payloae", &sig).is_err());
        assert_eq!(Scheme::Ed25519.token_input(b"payload"), b"payload");
        // The token key of another scheme is refused.
        assert!(TufKey::from_spki(Scheme::P256, spki.as_bytes()).is_err());
    }

    /// RSA keys: PEM keyval, scheme rsassa-pss-sha256, PSS signatures over
    /// SHA-256 of the payload (salt 32); PKCS#1 v1.5 keys verify too.
    #[test]
    fn rsa_keys_are_pem_with_pss_sha256() {
        use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey as _};
        let sk = rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("testdata/rsa2048-test-only.pem"))
            .expect("test key");
        let spki = sk.to_public_key().to_public_key_der().expect("spki");
        let k = TufKey::from_spki(Scheme::RsaPss(HashAlgorithm::Sha256), spki.as_bytes())
            .expect("tuf key");
        assert_eq!(
            (k.keytype.as_str(), k.scheme.as_str()),
            ("rsa", "rsassa-pss-sha256")
        );
        assert!(k.public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let digest = sha2::Sha256::digest(b"payload");
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let pss = sk
            .sign_with_rng(
                &mut rng,
                rsa::Pss::<sha2::Sha256>::new_with_salt(32),
                &digest,
            )
            .expect("sign");
        assert!(k.verify(b"payload", &hex::encode(&pss)).is_ok());
        assert!(k.verify(b"payloae", &hex::encode(&pss)).is_err());
        let pkcs1 = sk
            .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
            .expect("sign");
        assert!(k.verify(b"payload", &hex::encode(&pkcs1)).is_err());
        let mut k15 = k.clone();
        k15.scheme = "rsa-pkcs1v15-sha256".into();
        assert!(k15.verify(b"payload", &hex::encode(&pkcs1)).is_ok());
        assert_ne!(k15.keyid(), k.keyid());
        assert!(!k15.same_key(&k));
    }
}
