//! TUF public keys (securesystemslib's `SSlibKey` form) of token keys, their
//! key ids, and signature verification with RustCrypto.

use std::collections::BTreeMap;

use sha2::Digest;

use super::canonical::Json;
use super::error::TufError;

/// `keytype` of ECDSA keys.
pub const KEYTYPE_ECDSA: &str = "ecdsa";
/// The scheme of P-256 keys: ECDSA over SHA-256.
pub const SCHEME_P256: &str = "ecdsa-sha2-nistp256";
/// The scheme of P-384 keys: ECDSA over SHA-384.
pub const SCHEME_P384: &str = "ecdsa-sha2-nistp384";

/// The curves (and so schemes) this module signs and verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `ecdsa-sha2-nistp256`
    P256,
    /// `ecdsa-sha2-nistp384`
    P384,
}

impl Scheme {
    /// The scheme's name in TUF metadata.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::P256 => SCHEME_P256,
            Scheme::P384 => SCHEME_P384,
        }
    }

    /// The hash of the scheme over `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Scheme::P256 => sha2::Sha256::digest(data).to_vec(),
            Scheme::P384 => sha2::Sha384::digest(data).to_vec(),
        }
    }

    fn of(keytype: &str, scheme: &str) -> Option<Scheme> {
        // securesystemslib still accepts the scheme name as keytype (deprecated).
        match (keytype, scheme) {
            (KEYTYPE_ECDSA | SCHEME_P256, SCHEME_P256) => Some(Scheme::P256),
            (KEYTYPE_ECDSA | SCHEME_P384, SCHEME_P384) => Some(Scheme::P384),
            _ => None,
        }
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
    /// `keyval.public`: for ECDSA the SubjectPublicKeyInfo PEM, with LF line
    /// ends and a final newline, as pyca/cryptography writes it.
    pub public: String,
}

impl TufKey {
    /// The TUF key of a token key given by its SPKI DER.
    pub fn from_spki(scheme: Scheme, spki_der: &[u8]) -> Result<TufKey, TufError> {
        let public =
            pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, spki_der)
                .map_err(|e| TufError::BadKey {
                    reason: format!("cannot write the public key as PEM: {e}"),
                })?;
        let key = TufKey {
            keytype: KEYTYPE_ECDSA.into(),
            scheme: scheme.name().into(),
            public,
        };
        // Refuse a key the curve does not accept (a wrong answer of the daemon).
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

    /// The SubjectPublicKeyInfo DER of an ECDSA key.
    pub fn spki_der(&self) -> Result<Vec<u8>, TufError> {
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

    /// The key as signer-lib's [`PublicKey`](signer_lib::PublicKey), checked to
    /// be a point of its scheme's curve, with the scheme.
    fn public_key(&self) -> Result<(Scheme, signer_lib::PublicKey), TufError> {
        use p256::pkcs8::DecodePublicKey;
        let scheme = self.scheme().ok_or_else(|| TufError::BadKey {
            reason: format!(
                "keytype {:?} with scheme {:?} is not supported here (only ECDSA {SCHEME_P256} and {SCHEME_P384})",
                self.keytype, self.scheme
            ),
        })?;
        let der = self.spki_der()?;
        let bad = |e: p256::pkcs8::spki::Error| TufError::BadKey {
            reason: format!("keyval.public is not a {} key: {e}", scheme.name()),
        };
        let algorithm = match scheme {
            Scheme::P256 => {
                p256::ecdsa::VerifyingKey::from_public_key_der(&der).map_err(bad)?;
                signer_lib::Algorithm::EccP256
            }
            Scheme::P384 => {
                p384::ecdsa::VerifyingKey::from_public_key_der(&der).map_err(bad)?;
                signer_lib::Algorithm::EccP384
            }
        };
        Ok((
            scheme,
            signer_lib::PublicKey {
                algorithm,
                spki_der: der,
            },
        ))
    }

    /// Verify a TUF signature (`sig`: hex of the DER ECDSA signature) over
    /// `payload` (the canonical bytes of `signed`): the scheme's hash of the
    /// payload, checked by signer-lib's one ECDSA check
    /// ([`PublicKey::verify_prehash`](signer_lib::PublicKey::verify_prehash)).
    pub fn verify(&self, payload: &[u8], sig_hex: &str) -> Result<(), String> {
        let (scheme, public) = self.public_key().map_err(|e| e.to_string())?;
        let der = hex::decode(sig_hex).map_err(|e| format!("sig is not hex: {e}"))?;
        public
            .verify_prehash(&scheme.digest(payload), &der)
            .map(drop)
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
        k.keytype = "ed25519".into();
        k.scheme = "ed25519".into();
        let e = k.verify(b"x", "00").unwrap_err();
        assert!(e.contains("ed25519"), "{e}");
    }
}
