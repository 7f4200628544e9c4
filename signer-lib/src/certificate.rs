//! Small pieces shared by everything here that builds X.509 certificates
//! with `x509-cert`'s builder: the emulator's attestation certificates and
//! keygen's self-signed slot certificates.

use std::str::FromStr;

use der::Encode;
use der::asn1::{ObjectIdentifier, OctetString};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;

use crate::error::{Error, Result};

const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");

/// A certificate error from any x509/der failure.
pub(crate) fn cert_error(e: impl std::fmt::Display) -> Error {
    Error::Certificate {
        reason: e.to_string(),
    }
}

/// `CN=<cn>`, with RFC 4514 special characters escaped.
pub(crate) fn common_name(cn: &str) -> Result<Name> {
    let escaped: String = cn
        .chars()
        .flat_map(|c| {
            let escape = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=');
            escape.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect();
    Name::from_str(&format!("CN={escaped}")).map_err(cert_error)
}

/// A random positive 16-byte certificate serial number.
pub(crate) fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::Crypto {
        reason: format!("no randomness for a certificate serial: {e}"),
    })?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::new(&bytes).map_err(cert_error)
}

/// A builder profile with fixed issuer and subject names and, when set, a
/// critical basicConstraints extension (CA or not).
pub(crate) struct FixedNames {
    /// Issuer name.
    pub issuer: Name,
    /// Subject name.
    pub subject: Name,
    /// `Some(ca)`: add basicConstraints; `None`: no extension.
    pub basic_constraints: Option<bool>,
}

impl BuilderProfile for FixedNames {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let Some(ca) = self.basic_constraints else {
            return Ok(Vec::new());
        };
        let value = BasicConstraints {
            ca,
            path_len_constraint: None,
        }
        .to_der()?;
        Ok(vec![Extension {
            extn_id: OID_BASIC_CONSTRAINTS,
            critical: true,
            extn_value: OctetString::new(value)?,
        }])
    }
}
