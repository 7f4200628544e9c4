//! The objects of a token: for every key the daemon lists, a private key, a
//! public key and (when the slot has one) a certificate, numbered as
//! Yubico's ykcs11 numbers PIV slots, and their attributes encoded as
//! PKCS#11 wants them. No I/O.

use cryptoki_sys::*;
use der::{Decode, Encode};
use signer_proto::v1 as pb;

/// `CKA_ID` of a PIV slot, as ykcs11 numbers them: 1 = 9a, 2 = 9c, 3 = 9d,
/// 4 = 9e, 5..=24 = retired 82..=95. Other slots have no object.
pub fn ckaid_of_slot(slot: &str) -> Option<u8> {
    let s = slot.trim().trim_start_matches("0x").to_ascii_lowercase();
    let v = u8::from_str_radix(&s, 16).ok()?;
    match v {
        0x9a => Some(1),
        0x9c => Some(2),
        0x9d => Some(3),
        0x9e => Some(4),
        0x82..=0x95 => Some(v - 0x82 + 5),
        _ => None,
    }
}

/// The PIV slot of a `CKA_ID` (inverse of [`ckaid_of_slot`]).
pub fn slot_of_ckaid(id: u8) -> Option<u8> {
    match id {
        1 => Some(0x9a),
        2 => Some(0x9c),
        3 => Some(0x9d),
        4 => Some(0x9e),
        5..=24 => Some(0x82 + id - 5),
        _ => None,
    }
}

/// ykcs11's name for a PIV slot (labels are "Private key for <name>").
fn slot_name(id: u8) -> String {
    match id {
        1 => "PIV Authentication".into(),
        2 => "Digital Signature".into(),
        3 => "Key Management".into(),
        4 => "Card Authentication".into(),
        n => format!("Retired Key {}", n - 4),
    }
}

/// The curves the module signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (secp256r1), ECDSA.
    P256,
    /// NIST P-384 (secp384r1), ECDSA.
    P384,
    /// Ed25519 (`CKK_EC_EDWARDS`), `CKM_EDDSA` over the message.
    Ed25519,
    /// RSA (`CKK_RSA`) with a modulus of this many bytes, PKCS#1 v1.5.
    Rsa(usize),
}

impl Curve {
    /// The field length in bytes (r and s each; Ed25519: R and S, so the
    /// signature is twice this for every curve).
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 | Curve::Ed25519 => 32,
            Curve::P384 => 48,
            Curve::Rsa(k) => k / 2,
        }
    }

    /// The signature length: r‖s, R‖S, or the RSA modulus length.
    pub fn signature_len(self) -> usize {
        match self {
            Curve::Rsa(k) => k,
            c => 2 * c.field_len(),
        }
    }

    /// `CKA_KEY_TYPE`.
    pub fn key_type(self) -> CK_KEY_TYPE {
        match self {
            Curve::P256 | Curve::P384 => CKK_EC,
            Curve::Ed25519 => CKK_EC_EDWARDS,
            Curve::Rsa(_) => CKK_RSA,
        }
    }

    /// The length of the public point as `CKA_EC_POINT` carries it:
    /// uncompressed `04 || x || y`, or Ed25519's 32 bytes.
    pub fn point_len(self) -> usize {
        match self {
            Curve::Ed25519 => 32,
            Curve::Rsa(k) => k,
            c => 1 + 2 * c.field_len(),
        }
    }

    /// The key size in bits (`CK_MECHANISM_INFO`, `CKA_MODULUS_BITS`).
    pub fn bits(self) -> usize {
        match self {
            Curve::Rsa(k) => k * 8,
            c => c.field_len() * 8,
        }
    }

    /// `CKA_EC_PARAMS`: the DER of the named curve's OID.
    pub fn ec_params(self) -> &'static [u8] {
        match self {
            // 1.2.840.10045.3.1.7
            Curve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            // 1.3.132.0.34
            Curve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
            // 1.3.101.112 (id-Ed25519; PKCS#11 3.1 names the curve by its OID)
            Curve::Ed25519 => &[0x06, 0x03, 0x2b, 0x65, 0x70],
            Curve::Rsa(_) => &[],
        }
    }
}

/// The class of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `CKO_PRIVATE_KEY`: signs through the daemon; its value never leaves
    /// the token.
    PrivateKey = 1,
    /// `CKO_PUBLIC_KEY`.
    PublicKey = 2,
    /// `CKO_CERTIFICATE` (X.509), when the slot has a certificate.
    Certificate = 3,
}

/// A key the daemon listed, with what PKCS#11 needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// `CKA_ID` (ykcs11 numbering).
    pub ckaid: u8,
    /// The key id the daemon signs with.
    pub key_id: String,
    /// The curve.
    pub curve: Curve,
    /// The token.
    pub token_serial: u32,
    /// The PIV slot, "9c".
    pub slot: String,
    /// The uncompressed point, `04 || x || y` (Ed25519: its 32 bytes;
    /// RSA: the modulus, big-endian).
    pub point: Vec<u8>,
    /// RSA: the public exponent, big-endian (empty for other keys).
    pub exponent: Vec<u8>,
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// Generated on the token (`CKA_LOCAL`, `CKA_ALWAYS_SENSITIVE`).
    pub generated: bool,
    /// The slot's certificate, parsed: (DER, subject, issuer, serial).
    pub certificate: Option<CertFields>,
}

/// The certificate attributes, each as DER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFields {
    /// `CKA_VALUE`: the certificate.
    pub der: Vec<u8>,
    /// `CKA_SUBJECT`.
    pub subject: Vec<u8>,
    /// `CKA_ISSUER`.
    pub issuer: Vec<u8>,
    /// `CKA_SERIAL_NUMBER` (DER INTEGER).
    pub serial: Vec<u8>,
}

/// Why a listed key has no objects.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// A slot ykcs11 gives no `CKA_ID` (f9, the attestation key).
    #[error("slot {0} has no PKCS#11 id")]
    Slot(String),
    /// X25519 (or a value this version does not know): listed by the
    /// daemon, but it cannot sign (this module offers `CKM_ECDSA*`,
    /// `CKM_EDDSA`, `CKM_*RSA_PKCS`), so such a key has no objects: `C_FindObjects` does
    /// not return it, and no handle names it (`CKR_OBJECT_HANDLE_INVALID`,
    /// `CKR_KEY_HANDLE_INVALID`). Sign with it through signerctl or the
    /// gRPC API.
    #[error(
        "algorithm {} is not supported by this PKCS#11 module (it signs with P-256/P-384, Ed25519 and RSA keys)",
        algorithm_name(*.0)
    )]
    Algorithm(i32),
    /// The public key is not a well-formed SubjectPublicKeyInfo.
    #[error("malformed public key: {0}")]
    PublicKey(String),
}

fn algorithm_name(v: i32) -> String {
    match pb::Algorithm::try_from(v) {
        Ok(a) => a.as_str_name().to_string(),
        Err(_) => format!("value {v}"),
    }
}

/// PKCS#1 `RSAPublicKey`, the SubjectPublicKeyInfo's key of an RSA key.
#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: der::asn1::UintRef<'a>,
    public_exponent: der::asn1::UintRef<'a>,
}

impl KeyEntry {
    /// The objects of a key as the daemon lists it. A malformed certificate
    /// is left out (the keys stay usable).
    pub fn from_key(key: &pb::Key) -> Result<KeyEntry, SkipReason> {
        let ckaid = ckaid_of_slot(&key.slot).ok_or_else(|| SkipReason::Slot(key.slot.clone()))?;
        let curve = match pb::Algorithm::try_from(key.algorithm) {
            Ok(pb::Algorithm::EccP256) => Curve::P256,
            Ok(pb::Algorithm::EccP384) => Curve::P384,
            Ok(pb::Algorithm::Ed25519) => Curve::Ed25519,
            Ok(pb::Algorithm::Rsa1024) => Curve::Rsa(128),
            Ok(pb::Algorithm::Rsa2048) => Curve::Rsa(256),
            Ok(pb::Algorithm::Rsa3072) => Curve::Rsa(384),
            Ok(pb::Algorithm::Rsa4096) => Curve::Rsa(512),
            _ => return Err(SkipReason::Algorithm(key.algorithm)),
        };
        let spki = spki::SubjectPublicKeyInfoRef::from_der(&key.public_key_der)
            .map_err(|e| SkipReason::PublicKey(e.to_string()))?;
        let mut point = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| SkipReason::PublicKey("unaligned BIT STRING".into()))?
            .to_vec();
        let mut exponent = Vec::new();
        if let Curve::Rsa(_) = curve {
            let rsa = RsaPublicKey::from_der(&point)
                .map_err(|e| SkipReason::PublicKey(format!("not an RSAPublicKey: {e}")))?;
            exponent = rsa.public_exponent.as_bytes().to_vec();
            point = rsa.modulus.as_bytes().to_vec();
        }
        let uncompressed =
            matches!(curve, Curve::Ed25519 | Curve::Rsa(_)) || point.first() == Some(&0x04);
        if point.len() != curve.point_len() || !uncompressed {
            return Err(SkipReason::PublicKey(format!(
                "not a {curve:?} public key ({} bytes)",
                point.len()
            )));
        }
        let certificate = if key.certificate_der.is_empty() {
            None
        } else {
            cert_fields(&key.certificate_der)
        };
        Ok(KeyEntry {
            ckaid,
            key_id: key.key_id.clone(),
            curve,
            token_serial: key.token_serial,
            slot: key.slot.clone(),
            point,
            exponent,
            spki: key.public_key_der.clone(),
            generated: key.origin == pb::KeyOrigin::Generated as i32,
            certificate,
        })
    }

    /// The kinds of object this key has.
    pub fn kinds(&self) -> Vec<Kind> {
        let mut k = vec![Kind::PrivateKey, Kind::PublicKey];
        if self.certificate.is_some() {
            k.push(Kind::Certificate);
        }
        k
    }

    /// `CKA_LABEL`, as ykcs11 names the objects.
    pub fn label(&self, kind: Kind) -> String {
        let name = slot_name(self.ckaid);
        match kind {
            Kind::PrivateKey => format!("Private key for {name}"),
            Kind::PublicKey => format!("Public key for {name}"),
            Kind::Certificate => format!("X.509 Certificate for {name}"),
        }
    }

    /// `CKA_EC_POINT`: the point as a DER OCTET STRING.
    pub fn ec_point(&self) -> Vec<u8> {
        der::asn1::OctetStringRef::new(&self.point)
            .and_then(|o| o.to_der())
            .unwrap_or_default()
    }

    /// The value of attribute `attr` of this key's object of `kind`.
    pub fn attribute(&self, kind: Kind, attr: CK_ATTRIBUTE_TYPE) -> Attr {
        use Attr::{Invalid, Sensitive};
        let common = match attr {
            CKA_CLASS => Some(ulong(match kind {
                Kind::PrivateKey => CKO_PRIVATE_KEY,
                Kind::PublicKey => CKO_PUBLIC_KEY,
                Kind::Certificate => CKO_CERTIFICATE,
            })),
            CKA_TOKEN => Some(bool(true)),
            // Visible without C_Login: the daemon, not a login state,
            // decides who may use a key.
            CKA_PRIVATE => Some(bool(false)),
            CKA_MODIFIABLE | CKA_COPYABLE | CKA_DESTROYABLE => Some(bool(false)),
            CKA_LABEL => Some(self.label(kind).into_bytes()),
            CKA_ID => Some(vec![self.ckaid]),
            _ => None,
        };
        if let Some(v) = common {
            return Attr::Value(v);
        }
        match kind {
            Kind::PrivateKey | Kind::PublicKey => {
                let private = kind == Kind::PrivateKey;
                let rsa = matches!(self.curve, Curve::Rsa(_));
                Attr::Value(match attr {
                    CKA_KEY_TYPE => ulong(self.curve.key_type()),
                    CKA_MODULUS if rsa => self.point.clone(),
                    CKA_PUBLIC_EXPONENT if rsa => self.exponent.clone(),
                    CKA_MODULUS_BITS if rsa => ulong(self.curve.bits() as CK_ULONG),
                    CKA_EC_PARAMS | CKA_EC_POINT if rsa => return Invalid,
                    CKA_VALUE if rsa && !private => return Invalid,
                    CKA_MODULUS | CKA_PUBLIC_EXPONENT | CKA_MODULUS_BITS => return Invalid,
                    CKA_EC_PARAMS => self.curve.ec_params().to_vec(),
                    CKA_EC_POINT => self.ec_point(),
                    CKA_PUBLIC_KEY_INFO => self.spki.clone(),
                    CKA_SIGN => bool(private),
                    CKA_VERIFY => bool(!private),
                    CKA_SENSITIVE => bool(private),
                    CKA_ALWAYS_SENSITIVE => bool(private && self.generated),
                    CKA_EXTRACTABLE => bool(false),
                    CKA_NEVER_EXTRACTABLE => bool(private && self.generated),
                    CKA_LOCAL => bool(self.generated),
                    CKA_ALWAYS_AUTHENTICATE => bool(false),
                    CKA_DERIVE
                    | CKA_DECRYPT
                    | CKA_ENCRYPT
                    | CKA_WRAP
                    | CKA_UNWRAP
                    | CKA_SIGN_RECOVER
                    | CKA_VERIFY_RECOVER
                    | CKA_TRUSTED
                    | CKA_WRAP_WITH_TRUSTED => bool(false),
                    CKA_START_DATE | CKA_END_DATE | CKA_SUBJECT => Vec::new(),
                    CKA_KEY_GEN_MECHANISM => ulong(CK_UNAVAILABLE_INFORMATION),
                    CKA_ALLOWED_MECHANISMS if private => crate::mechanism::SUPPORTED
                        .iter()
                        .filter(|m| {
                            crate::mechanism::Mechanism::from_ckm(**m, 0)
                                .is_ok_and(|m| m.fits(self.curve))
                        })
                        .flat_map(|m| m.to_ne_bytes())
                        .collect(),
                    CKA_VALUE if private => return Sensitive,
                    CKA_VALUE => self.ec_point(),
                    _ => return Invalid,
                })
            }
            Kind::Certificate => {
                let Some(c) = &self.certificate else {
                    return Invalid;
                };
                Attr::Value(match attr {
                    CKA_CERTIFICATE_TYPE => ulong(CKC_X_509),
                    CKA_CERTIFICATE_CATEGORY => ulong(CK_CERTIFICATE_CATEGORY_UNSPECIFIED),
                    CKA_TRUSTED => bool(false),
                    CKA_VALUE => c.der.clone(),
                    CKA_SUBJECT => c.subject.clone(),
                    CKA_ISSUER => c.issuer.clone(),
                    CKA_SERIAL_NUMBER => c.serial.clone(),
                    CKA_START_DATE | CKA_END_DATE => Vec::new(),
                    CKA_CHECK_VALUE => Vec::new(),
                    _ => return Invalid,
                })
            }
        }
    }
}

fn cert_fields(der_bytes: &[u8]) -> Option<CertFields> {
    let cert = x509_cert::Certificate::from_der(der_bytes).ok()?;
    let tbs = cert.tbs_certificate();
    Some(CertFields {
        der: der_bytes.to_vec(),
        subject: tbs.subject().to_der().ok()?,
        issuer: tbs.issuer().to_der().ok()?,
        serial: tbs.serial_number().to_der().ok()?,
    })
}

/// An attribute's value, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attr {
    /// The encoded value.
    Value(Vec<u8>),
    /// The private key's value: never revealed (`CKR_ATTRIBUTE_SENSITIVE`).
    Sensitive,
    /// The object has no such attribute (`CKR_ATTRIBUTE_TYPE_INVALID`).
    Invalid,
}

/// A `CK_ULONG` as PKCS#11 stores it (native byte order).
pub fn ulong(v: CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

/// A `CK_BBOOL`.
pub fn bool(v: bool) -> Vec<u8> {
    vec![if v { CK_TRUE } else { CK_FALSE }]
}

/// An object handle: slot, `CKA_ID` and kind in one number, so a handle
/// stays valid across refreshes of the key list while the slot holds a key.
pub fn handle(slot: CK_SLOT_ID, ckaid: u8, kind: Kind) -> CK_OBJECT_HANDLE {
    ((slot + 1) << 16) | (CK_ULONG::from(ckaid) << 4) | kind as CK_ULONG
}

/// The parts of a handle made by [`handle`].
pub fn parse_handle(h: CK_OBJECT_HANDLE) -> Option<(CK_SLOT_ID, u8, Kind)> {
    let slot = (h >> 16).checked_sub(1)?;
    let ckaid = u8::try_from((h >> 4) & 0xfff).ok()?;
    let kind = match h & 0xf {
        1 => Kind::PrivateKey,
        2 => Kind::PublicKey,
        3 => Kind::Certificate,
        _ => return None,
    };
    Some((slot, ckaid, kind))
}

/// Whether an object matches a search template: every attribute of the
/// template is present with exactly that value.
pub fn matches(key: &KeyEntry, kind: Kind, template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> bool {
    template
        .iter()
        .all(|(t, v)| matches!(key.attribute(kind, *t), Attr::Value(ref x) if x == v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 key's SPKI (the public key of d = 1... from the RustCrypto
    /// generator), built with the p256 crate.
    fn p256_key(slot: &str, cert: Vec<u8>) -> pb::Key {
        use p256::pkcs8::EncodePublicKey;
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("key");
        let spki = sk
            .verifying_key()
            .to_public_key_der()
            .expect("spki")
            .as_bytes()
            .to_vec();
        pb::Key {
            token_serial: 5,
            slot: slot.into(),
            algorithm: pb::Algorithm::EccP256 as i32,
            key_id: "ab".repeat(32),
            public_key_der: spki,
            origin: pb::KeyOrigin::Generated as i32,
            certificate_der: cert,
            ..Default::default()
        }
    }

    #[test]
    fn ids_follow_ykcs11() {
        let pairs = [
            ("9a", 1),
            ("9c", 2),
            ("9d", 3),
            ("9e", 4),
            ("82", 5),
            ("95", 24),
        ];
        for (slot, id) in pairs {
            assert_eq!(ckaid_of_slot(slot), Some(id), "{slot}");
            assert_eq!(
                slot_of_ckaid(id).map(|s| format!("{s:02x}")),
                Some(slot.to_string())
            );
        }
        assert_eq!(ckaid_of_slot("f9"), None);
        assert_eq!(ckaid_of_slot("0x9C"), Some(2));
        assert_eq!(ckaid_of_slot("signature"), None); // the daemon lists hex
        assert_eq!(slot_of_ckaid(0), None);
        assert_eq!(slot_of_ckaid(25), None);
    }

    #[test]
    fn handles_round_trip_and_are_never_zero() {
        for slot in [0, 1, 7] {
            for id in [1u8, 2, 24] {
                for kind in [Kind::PrivateKey, Kind::PublicKey, Kind::Certificate] {
                    let h = handle(slot, id, kind);
                    assert_ne!(h, CK_INVALID_HANDLE);
                    assert_eq!(parse_handle(h), Some((slot, id, kind)));
                }
            }
        }
        assert_eq!(parse_handle(0), None);
        assert_eq!(parse_handle(0x10020), None);
    }

    #[test]
    fn key_attributes_are_encoded_as_pkcs11_wants() {
        let k = KeyEntry::from_key(&p256_key("9c", vec![])).expect("entry");
        assert_eq!(k.ckaid, 2);
        assert_eq!(k.kinds(), vec![Kind::PrivateKey, Kind::PublicKey]);
        let v = |kind, a| match k.attribute(kind, a) {
            Attr::Value(v) => v,
            other => panic!("{a:#x}: {other:?}"),
        };
        assert_eq!(v(Kind::PrivateKey, CKA_CLASS), ulong(CKO_PRIVATE_KEY));
        assert_eq!(v(Kind::PrivateKey, CKA_KEY_TYPE), ulong(CKK_EC));
        assert_eq!(v(Kind::PrivateKey, CKA_ID), vec![2]);
        assert_eq!(v(Kind::PrivateKey, CKA_SIGN), vec![CK_TRUE]);
        assert_eq!(v(Kind::PrivateKey, CKA_SENSITIVE), vec![CK_TRUE]);
        assert_eq!(v(Kind::PrivateKey, CKA_EXTRACTABLE), vec![CK_FALSE]);
        assert_eq!(v(Kind::PublicKey, CKA_EXTRACTABLE), vec![CK_FALSE]);
        assert_eq!(v(Kind::PublicKey, CKA_SIGN), vec![CK_FALSE]);
        assert_eq!(
            v(Kind::PrivateKey, CKA_LABEL),
            b"Private key for Digital Signature".to_vec()
        );
        let params = v(Kind::PublicKey, CKA_EC_PARAMS);
        let oid: der::asn1::ObjectIdentifier =
            der::asn1::ObjectIdentifier::from_der(&params).expect("oid");
        assert_eq!(oid.to_string(), "1.2.840.10045.3.1.7");
        // CKA_EC_POINT is a DER OCTET STRING holding 04||x||y, on both keys.
        for kind in [Kind::PrivateKey, Kind::PublicKey] {
            let point = v(kind, CKA_EC_POINT);
            let os = der::asn1::OctetString::from_der(&point).expect("octet string");
            assert_eq!(os.as_bytes().len(), 65);
            assert_eq!(os.as_bytes()[0], 4);
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(os.as_bytes()).expect("point");
            let want = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("k");
            assert_eq!(&vk, want.verifying_key());
        }
        assert_eq!(k.attribute(Kind::PrivateKey, CKA_VALUE), Attr::Sensitive);
        assert_eq!(k.attribute(Kind::PrivateKey, CKA_MODULUS), Attr::Invalid);
        assert_eq!(k.attribute(Kind::Certificate, CKA_VALUE), Attr::Invalid);
    }

    #[test]
    fn p384_params_and_retired_labels() {
        use p384::pkcs8::EncodePublicKey;
        let sk = p384::ecdsa::SigningKey::from_slice(&[9u8; 48]).expect("key");
        let mut key = p256_key("8b", vec![]);
        key.algorithm = pb::Algorithm::EccP384 as i32;
        key.public_key_der = sk
            .verifying_key()
            .to_public_key_der()
            .expect("spki")
            .as_bytes()
            .to_vec();
        let k = KeyEntry::from_key(&key).expect("entry");
        assert_eq!(k.ckaid, 0x8b - 0x82 + 5);
        assert_eq!(k.label(Kind::PublicKey), "Public key for Retired Key 10");
        let Attr::Value(p) = k.attribute(Kind::PublicKey, CKA_EC_PARAMS) else {
            panic!()
        };
        let oid: der::asn1::ObjectIdentifier =
            der::asn1::ObjectIdentifier::from_der(&p).expect("oid");
        assert_eq!(oid.to_string(), "1.3.132.0.34");
        assert_eq!(k.point.len(), 97);
        // A P-384 SPKI claimed to be P-256 is refused, not mis-encoded.
        key.algorithm = pb::Algorithm::EccP256 as i32;
        assert!(matches!(
            KeyEntry::from_key(&key),
            Err(SkipReason::PublicKey(_))
        ));
    }

    #[test]
    fn unsupported_keys_have_no_objects() {
        let mut k = p256_key("f9", vec![]);
        assert_eq!(KeyEntry::from_key(&k), Err(SkipReason::Slot("f9".into())));
        k.slot = "9a".into();
        for alg in [pb::Algorithm::X25519, pb::Algorithm::Unspecified] {
            k.algorithm = alg as i32;
            let e = KeyEntry::from_key(&k).expect_err("no objects");
            assert_eq!(e, SkipReason::Algorithm(alg as i32));
            assert!(e.to_string().contains(alg.as_str_name()), "{e}");
        }
        k.algorithm = 99;
        assert!(
            KeyEntry::from_key(&k)
                .expect_err("unknown")
                .to_string()
                .contains("value 99")
        );
        k.algorithm = pb::Algorithm::EccP256 as i32;
        k.public_key_der = vec![0x30, 0x01];
        assert!(matches!(
            KeyEntry::from_key(&k),
            Err(SkipReason::PublicKey(_))
        ));
    }

    #[test]
    fn templates_match_on_class_id_label_and_key_type() {
        let k = KeyEntry::from_key(&p256_key("9c", vec![])).expect("entry");
        let priv_class = (CKA_CLASS, ulong(CKO_PRIVATE_KEY));
        assert!(matches(
            &k,
            Kind::PrivateKey,
            std::slice::from_ref(&priv_class)
        ));
        assert!(!matches(
            &k,
            Kind::PublicKey,
            std::slice::from_ref(&priv_class)
        ));
        assert!(matches(&k, Kind::PrivateKey, &[]));
        assert!(matches(
            &k,
            Kind::PublicKey,
            &[(CKA_ID, vec![2]), (CKA_KEY_TYPE, ulong(CKK_EC))]
        ));
        assert!(!matches(&k, Kind::PublicKey, &[(CKA_ID, vec![1])]));
        assert!(matches(
            &k,
            Kind::PrivateKey,
            &[(CKA_LABEL, b"Private key for Digital Signature".to_vec())]
        ));
        // An attribute the object lacks never matches; nor does a
        // wrong-size boolean.
        assert!(!matches(&k, Kind::PrivateKey, &[(CKA_MODULUS, vec![])]));
        assert!(!matches(&k, Kind::PrivateKey, &[(CKA_SIGN, vec![1, 0])]));
    }
}
