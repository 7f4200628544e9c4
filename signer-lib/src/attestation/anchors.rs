//! Trust anchors for attestation: which roots end a chain, and which
//! intermediates may sit between a device certificate and a root.

use der::Decode;
use der::asn1::ObjectIdentifier;
use x509_cert::Certificate;

use crate::error::{Error, Result};

/// Yubico's "PIV Root CA Serial 263751": issues the f9 device certificate of
/// YubiKeys before firmware 5.7.4.
pub const YUBICO_PIV_ROOT_CA_PEM: &str = include_str!("../../trust/yubico-piv-root-ca-263751.pem");
/// Yubico's "Attestation Root 1" (2024 PKI), for firmware 5.7.4 and later.
pub const YUBICO_ATTESTATION_ROOT_1_PEM: &str =
    include_str!("../../trust/yubico-attestation-root-1.pem");
/// "Yubico PIV Attestation A 1/B 1" and "Yubico Attestation Intermediate
/// A 1/B 1": the intermediates between a 5.7.4+ f9 certificate and Root 1.
pub const YUBICO_PIV_INTERMEDIATES_PEM: &str =
    include_str!("../../trust/yubico-piv-intermediates-5.7.4.pem");

/// The private, non-critical extension in which an emulated token's
/// "Attestation Root 1" (firmware 5.7.4+) carries its two intermediates, a
/// DER `SEQUENCE OF Certificate`. Under the IANA enterprise number reserved
/// for examples (RFC 5612), since an emulator must not use Yubico's arc.
/// When such a root is trusted the intermediates join the path-building
/// pool (they are not trusted by themselves: each signature up to the root
/// is still checked).
pub const OID_EMULATED_INTERMEDIATES: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.32473.1.1");

/// The intermediates a root carries in [`OID_EMULATED_INTERMEDIATES`]
/// (DER, in the order carried); empty when it carries none. A malformed
/// extension is an error.
pub fn embedded_intermediates(root: &[u8]) -> Result<Vec<Vec<u8>>> {
    let bad = |e: &dyn std::fmt::Display| Error::Certificate {
        reason: format!("the emulated root's intermediates extension: {e}"),
    };
    let cert = Certificate::from_der(root).map_err(|e| bad(&e))?;
    embedded_in(&cert).map_err(|e| bad(&e))
}

fn embedded_in(cert: &Certificate) -> std::result::Result<Vec<Vec<u8>>, der::Error> {
    use der::Encode;
    let Some(ext) = cert.tbs_certificate().extensions().and_then(|exts| {
        exts.iter()
            .find(|e| e.extn_id == OID_EMULATED_INTERMEDIATES)
    }) else {
        return Ok(Vec::new());
    };
    Vec::<Certificate>::from_der(ext.extn_value.as_bytes())?
        .iter()
        .map(Encode::to_der)
        .collect()
}

/// A trusted certificate with its name for verdicts.
#[derive(Clone, Debug)]
pub struct Anchor {
    /// Where it comes from ("Yubico", "emulated token", a file path).
    pub source: String,
    /// DER.
    pub der: Vec<u8>,
    /// Parsed.
    pub(crate) cert: Certificate,
}

/// The roots an attestation chain may end in, and the intermediates that
/// may be used to reach them (intermediates are not trusted by themselves).
#[derive(Clone, Debug, Default)]
pub struct TrustAnchors {
    pub(crate) roots: Vec<Anchor>,
    pub(crate) intermediates: Vec<Anchor>,
}

/// Every `CERTIFICATE` block of a PEM text, as DER.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let end_marker = "-----END CERTIFICATE-----";
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end = rest[start..]
            .find(end_marker)
            .ok_or_else(|| Error::Certificate {
                reason: "unterminated PEM CERTIFICATE block".into(),
            })?
            + start
            + end_marker.len();
        let (_, der) = pem_rfc7468::decode_vec(&rest.as_bytes()[start..end]).map_err(|e| {
            Error::Certificate {
                reason: format!("bad PEM block: {e}"),
            }
        })?;
        out.push(der);
        rest = &rest[end..];
    }
    if out.is_empty() {
        return Err(Error::Certificate {
            reason: "no PEM CERTIFICATE block".into(),
        });
    }
    Ok(out)
}

fn anchor(source: &str, der: Vec<u8>) -> Result<Anchor> {
    let cert = Certificate::from_der(&der).map_err(|e| Error::Certificate {
        reason: format!("{source}: not a DER certificate: {e}"),
    })?;
    Ok(Anchor {
        source: source.to_string(),
        der,
        cert,
    })
}

impl TrustAnchors {
    /// No anchors: nothing is trusted.
    pub fn empty() -> Self {
        TrustAnchors::default()
    }

    /// Yubico's attestation roots and 5.7.4+ intermediates, as shipped in
    /// `signer-lib/trust/` (see its README for fingerprints).
    pub fn yubico() -> Result<Self> {
        let mut anchors = TrustAnchors::empty();
        anchors.add_root_pem("Yubico", YUBICO_PIV_ROOT_CA_PEM)?;
        anchors.add_root_pem("Yubico", YUBICO_ATTESTATION_ROOT_1_PEM)?;
        for der in pem_certificates(YUBICO_PIV_INTERMEDIATES_PEM)? {
            anchors.add_intermediate_der("Yubico", der)?;
        }
        Ok(anchors)
    }

    /// Trust a root (DER). `source` names it in verdicts. The
    /// intermediates an emulated 5.7.4+ root carries
    /// ([`OID_EMULATED_INTERMEDIATES`]) are added as intermediates.
    pub fn add_root_der(&mut self, source: &str, der: Vec<u8>) -> Result<()> {
        let root = anchor(source, der)?;
        let carried = embedded_in(&root.cert).map_err(|e| Error::Certificate {
            reason: format!("{source}: the emulated root's intermediates extension: {e}"),
        })?;
        for der in carried {
            self.add_intermediate_der(source, der)?;
        }
        self.roots.push(root);
        Ok(())
    }

    /// Trust every certificate of a PEM text as a root, except those that
    /// a root of the same text carries as its intermediates (an emulated
    /// 5.7.4+ token's root bundle): those become intermediates.
    pub fn add_root_pem(&mut self, source: &str, pem: &str) -> Result<()> {
        let certs = pem_certificates(pem)?;
        let mut carried = Vec::new();
        for der in &certs {
            carried.extend(embedded_intermediates(der)?);
        }
        for der in certs {
            if carried.contains(&der) {
                self.add_intermediate_der(source, der)?;
            } else {
                self.add_root_der(source, der)?;
            }
        }
        Ok(())
    }

    /// Allow an intermediate (DER) on the way to a root.
    pub fn add_intermediate_der(&mut self, source: &str, der: Vec<u8>) -> Result<()> {
        self.intermediates.push(anchor(source, der)?);
        Ok(())
    }

    /// The trusted roots (DER).
    pub fn roots(&self) -> impl Iterator<Item = &[u8]> {
        self.roots.iter().map(|a| a.der.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yubico_anchors_load() {
        let a = TrustAnchors::yubico().unwrap();
        assert_eq!(a.roots.len(), 2);
        assert_eq!(a.intermediates.len(), 4);
        assert!(pem_certificates("nothing").is_err());
        assert!(pem_certificates("-----BEGIN CERTIFICATE-----\nAAAA").is_err());
    }

    /// A self-signed P-256 certificate, with `carried` (raw extension value)
    /// in the emulator's intermediates extension when given.
    fn self_signed(carried: Option<Vec<u8>>) -> Vec<u8> {
        use der::Encode;
        use der::asn1::OctetString;
        use x509_cert::builder::{Builder, CertificateBuilder};
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let spki = spki::SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).unwrap();
        let name = crate::certificate::common_name("test root").unwrap();
        let now = std::time::SystemTime::now();
        let validity = x509_cert::time::Validity::new(
            x509_cert::time::Time::try_from(now).unwrap(),
            x509_cert::time::Time::try_from(now + std::time::Duration::from_secs(3600)).unwrap(),
        );
        let mut builder = CertificateBuilder::new(
            crate::certificate::FixedNames {
                issuer: name.clone(),
                subject: name,
                basic_constraints: Some(true),
            },
            crate::certificate::random_serial().unwrap(),
            validity,
            spki,
        )
        .unwrap();
        if let Some(value) = carried {
            builder
                .add_extension(x509_cert::ext::Extension {
                    extn_id: OID_EMULATED_INTERMEDIATES,
                    critical: false,
                    extn_value: OctetString::new(value).unwrap(),
                })
                .unwrap();
        }
        builder
            .build::<_, p256::ecdsa::DerSignature>(&key)
            .unwrap()
            .to_der()
            .unwrap()
    }

    #[test]
    fn carried_intermediates_become_intermediates_never_roots() {
        use der::Encode;
        let plain = self_signed(None);
        assert!(embedded_intermediates(&plain).unwrap().is_empty());
        let inner = Certificate::from_der(&plain).unwrap();
        let carried = vec![inner.clone(), inner].to_der().unwrap();
        let root = self_signed(Some(carried));
        assert_eq!(
            embedded_intermediates(&root).unwrap(),
            vec![plain.clone(); 2]
        );
        let mut a = TrustAnchors::empty();
        a.add_root_der("test", root.clone()).unwrap();
        assert_eq!(a.roots.len(), 1, "only the root is a root");
        assert_eq!(a.intermediates.len(), 2);
        // A PEM bundle of the root and what it carries: one root.
        let pem = |der: &[u8]| {
            pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, der).unwrap()
        };
        let mut a = TrustAnchors::empty();
        a.add_root_pem("test", &(pem(&root) + &pem(&plain)))
            .unwrap();
        assert_eq!(
            a.roots.len(),
            1,
            "a carried certificate in the bundle is no root"
        );
        // The same certificate not carried by a root of the text is a root.
        let mut a = TrustAnchors::empty();
        a.add_root_pem("test", &pem(&plain)).unwrap();
        assert_eq!(a.roots.len(), 1);
        assert!(a.intermediates.is_empty());
    }

    #[test]
    fn a_malformed_intermediates_extension_is_refused_with_a_reason() {
        for garbage in [
            vec![],
            vec![0x04, 0x01, 0x00],
            vec![0x30, 0x03, 0x02, 0x01, 0x01],
        ] {
            let root = self_signed(Some(garbage));
            let e = TrustAnchors::empty()
                .add_root_der("emulated token", root.clone())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("emulated token") && e.contains("intermediates extension"),
                "{e}"
            );
            assert!(embedded_intermediates(&root).is_err());
        }
    }
}
