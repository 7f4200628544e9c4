//! Attestation material of the emulated card: its own emulated CA
//! hierarchy, the f9 device key and certificate, and slot attestation
//! certificates carrying Yubico's extensions.
//!
//! The hierarchy follows the firmware generation
//! ([`Feature::AttestationPki2024`], from 5.7.4 as Yubico documents it):
//!
//! - before 5.7.4 (YubiKey 4.3, 5.0 to 5.7.3): slot certificate ← f9
//!   "Emulated Yubico PIV Attestation" ← "Emulated PIV Root CA Serial N",
//!   shaped like Yubico's "PIV Root CA Serial 263751";
//! - 5.7.4 and later: slot certificate ← f9 ← "Emulated PIV Attestation A 1"
//!   ← "Emulated Attestation Intermediate A 1" ← "Emulated Attestation Root
//!   1", shaped like Yubico's 2024 PKI.
//!
//! Every name says "Emulated" and carries the token's serial: an emulated
//! token never claims Yubico's CA. The root's private key (and the
//! intermediates' keys) are discarded after manufacture, as Yubico's never
//! sit on a device. A real 5.7.4 device does not hold its intermediates
//! either (Yubico publishes them); the emulated root carries its two
//! intermediates in a private, non-critical extension
//! ([`crate::attestation::anchors::OID_EMULATED_INTERMEDIATES`]) so that
//! whoever trusts the emulated root gets the path to it, and the verifier
//! still checks every signature along that path.

use std::time::Duration;

use crate::emulator::card::firmware::{self, Feature};
use crate::emulator::card::state::{CardState, SlotKey};
use crate::emulator::soft_key::SoftKey;
use crate::error::{Error, Result};
use crate::model::{Algorithm, FirmwareVersion, KeyOrigin, PinPolicy, SlotId, TouchPolicy};
use crate::piv::object;

/// Algorithm of the emulated CA keys (discarded after init, as Yubico's
/// CA keys never sit on a device).
const ROOT_ALGORITHM: Algorithm = Algorithm::EccP384;
/// Algorithm of the f9 device attestation key.
const DEVICE_ALGORITHM: Algorithm = Algorithm::EccP256;
/// Subject of the f9 device certificate (Yubico's: "Yubico PIV Attestation").
const DEVICE_SUBJECT: &str = "Emulated Yubico PIV Attestation";

/// What a slot attestation says about the device and the key.
#[derive(Clone, Copy, Debug)]
struct AttestationInfo {
    serial: u32,
    firmware: FirmwareVersion,
    pin_policy: PinPolicy,
    touch_policy: TouchPolicy,
    /// Form factor byte (0x01: USB-A keychain).
    form_factor: u8,
}

/// Give a factory-fresh card its attestation root and f9 key + certificate,
/// in the hierarchy of its firmware generation.
pub(crate) fn install_attestation(state: &mut CardState) -> Result<()> {
    let device_key = SoftKey::generate(DEVICE_ALGORITHM)?;
    let device_public = device_key.public_key()?;
    let (device_cert, root_cert) =
        if firmware::supports(state.firmware, Feature::AttestationPki2024) {
            hierarchy_2024(state.serial, &device_public)?
        } else {
            hierarchy_piv_root_ca(state.serial, &device_public)?
        };
    let f9 = SlotKey::new(
        device_key,
        PinPolicy::Never,
        TouchPolicy::Never,
        KeyOrigin::Imported,
    )?;
    state.keys.insert(SlotId::Attestation, f9);
    let contents = super::certificate_object_contents(&device_cert)?;
    state.objects.0.insert(
        object::ATTESTATION,
        super::state::SecretBytes::new(&contents),
    );
    state.attestation_root = Some(root_cert);
    Ok(())
}

/// Before 5.7.4: f9 ← root. Returns (f9 certificate, root certificate).
fn hierarchy_piv_root_ca(
    serial: u32,
    device: &crate::model::PublicKey,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let root_key = SoftKey::generate(ROOT_ALGORITHM)?;
    let root_name = format!("Emulated PIV Root CA Serial {serial} (NOT FOR PRODUCTION)");
    let validity = issue::validity()?;
    let root_cert = issue::root_ca_certificate(&root_key, &root_name, validity, &[])?;
    let device_cert =
        issue::ca_certificate(&root_key, &root_name, validity, device, DEVICE_SUBJECT)?;
    Ok((device_cert, root_cert))
}

/// 5.7.4 and later: f9 ← PIV Attestation A 1 ← Attestation Intermediate A 1
/// ← Attestation Root 1, the root carrying the two intermediates.
fn hierarchy_2024(serial: u32, device: &crate::model::PublicKey) -> Result<(Vec<u8>, Vec<u8>)> {
    let root_key = SoftKey::generate(ROOT_ALGORITHM)?;
    let intermediate_key = SoftKey::generate(ROOT_ALGORITHM)?;
    let piv_key = SoftKey::generate(ROOT_ALGORITHM)?;
    let root_name = format!("Emulated Attestation Root 1 (token {serial}, NOT FOR PRODUCTION)");
    let intermediate_name =
        format!("Emulated Attestation Intermediate A 1 (token {serial}, NOT FOR PRODUCTION)");
    let piv_name = format!("Emulated PIV Attestation A 1 (token {serial}, NOT FOR PRODUCTION)");
    let validity = issue::validity()?;
    let intermediate_cert = issue::ca_certificate(
        &root_key,
        &root_name,
        validity,
        &intermediate_key.public_key()?,
        &intermediate_name,
    )?;
    let piv_cert = issue::ca_certificate(
        &intermediate_key,
        &intermediate_name,
        validity,
        &piv_key.public_key()?,
        &piv_name,
    )?;
    let device_cert = issue::ca_certificate(&piv_key, &piv_name, validity, device, DEVICE_SUBJECT)?;
    let root_cert = issue::root_ca_certificate(
        &root_key,
        &root_name,
        validity,
        &[piv_cert, intermediate_cert],
    )?;
    Ok((device_cert, root_cert))
}

/// Issue the attestation certificate for the (generated) key in `slot`.
pub(crate) fn issue(state: &CardState, slot: SlotId) -> Result<Vec<u8>> {
    let key = state.keys.get(&slot).ok_or(Error::KeyNotFound { slot })?;
    let device_key = state
        .keys
        .get(&SlotId::Attestation)
        .ok_or(Error::KeyNotFound {
            slot: SlotId::Attestation,
        })?;
    let device_cert = state
        .objects
        .0
        .get(&object::ATTESTATION)
        .ok_or(Error::CertificateNotFound {
            slot: SlotId::Attestation,
        })
        .and_then(|c| super::certificate_from_object(c.as_bytes()))?;
    issue::slot_attestation_certificate(
        &device_key.key,
        &device_cert,
        slot,
        &key.public_key,
        &AttestationInfo {
            serial: state.serial,
            firmware: state.firmware,
            pin_policy: key.pin_policy,
            touch_policy: key.touch_policy,
            form_factor: 0x01,
        },
    )
}

/// Ten years, like the validity Yubico gives its device certificates (and
/// enough for any CI run).
const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

mod issue {

    use der::asn1::{OctetString, Uint};
    use der::{Decode, Encode};
    use spki::SubjectPublicKeyInfoOwned;
    use x509_cert::builder::{Builder, CertificateBuilder};
    use x509_cert::ext::Extension;
    use x509_cert::name::Name;
    use x509_cert::time::Validity;

    use super::{AttestationInfo, VALIDITY};
    use crate::certificate::{FixedNames, cert_error, common_name, random_serial};
    use crate::emulator::soft_key::SoftKey;
    use crate::error::{Error, Result};
    use crate::model::{PublicKey, SlotId};

    use crate::attestation::anchors::OID_EMULATED_INTERMEDIATES;
    use crate::attestation::extensions::{OID_FIRMWARE, OID_FORM_FACTOR, OID_POLICY, OID_SERIAL};

    /// From a day ago (tolerates clock skew between machines) for VALIDITY.
    pub(super) fn validity() -> Result<Validity> {
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(24 * 3600);
        let not_before = x509_cert::time::Time::try_from(now - day).map_err(cert_error)?;
        let not_after = x509_cert::time::Time::try_from(now + VALIDITY).map_err(cert_error)?;
        Ok(Validity::new(not_before, not_after))
    }

    fn spki(key: &PublicKey) -> Result<SubjectPublicKeyInfoOwned> {
        SubjectPublicKeyInfoOwned::from_der(&key.spki_der).map_err(cert_error)
    }

    fn subject_of(cert_der: &[u8]) -> Result<(Name, Validity)> {
        let cert = x509_cert::Certificate::from_der(cert_der).map_err(cert_error)?;
        Ok((
            cert.tbs_certificate().subject().clone(),
            *cert.tbs_certificate().validity(),
        ))
    }

    /// Sign with the issuer's key: ECDSA with the curve's hash for P-256 and
    /// P-384, RSA PKCS#1 v1.5 with SHA-256 (as Yubico documents for an RSA
    /// attestation key), Ed25519 (an f9 key imported by its owner).
    fn sign(builder: CertificateBuilder<FixedNames>, issuer: &SoftKey) -> Result<Vec<u8>> {
        let cert = match issuer {
            SoftKey::P256(k) => builder.build::<_, p256::ecdsa::DerSignature>(&**k),
            SoftKey::P384(k) => builder.build::<_, p384::ecdsa::DerSignature>(k),
            SoftKey::Rsa(_, k) => {
                let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new((**k).clone());
                builder.build::<_, rsa::pkcs1v15::Signature>(&signer)
            }
            SoftKey::Ed25519(k) => builder.build::<_, ed25519_dalek::Signature>(k),
            SoftKey::X25519(_) => {
                return Err(Error::NotSupported {
                    what: "issuing attestation certificates with an X25519 f9 key (it cannot sign)"
                        .into(),
                });
            }
        }
        .map_err(cert_error)?;
        cert.to_der().map_err(cert_error)
    }

    /// A self-signed CA certificate; `intermediates` (DER) are carried in
    /// the emulator's private extension when not empty.
    pub(super) fn root_ca_certificate(
        key: &SoftKey,
        subject_cn: &str,
        validity: Validity,
        intermediates: &[Vec<u8>],
    ) -> Result<Vec<u8>> {
        let subject = common_name(subject_cn)?;
        let mut builder = CertificateBuilder::new(
            FixedNames {
                issuer: subject.clone(),
                subject,
                basic_constraints: Some(true),
            },
            random_serial()?,
            validity,
            spki(&key.public_key()?)?,
        )
        .map_err(cert_error)?;
        if !intermediates.is_empty() {
            let certs = intermediates
                .iter()
                .map(|der| x509_cert::Certificate::from_der(der))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(cert_error)?;
            let value = certs.to_der().map_err(cert_error)?;
            builder
                .add_extension(Extension {
                    extn_id: OID_EMULATED_INTERMEDIATES,
                    critical: false,
                    extn_value: OctetString::new(value).map_err(cert_error)?,
                })
                .map_err(cert_error)?;
        }
        sign(builder, key)
    }

    /// A CA certificate for `subject` (the f9 device certificate, or an
    /// intermediate), signed by `issuer` named `issuer_cn`.
    pub(super) fn ca_certificate(
        issuer: &SoftKey,
        issuer_cn: &str,
        validity: Validity,
        subject: &PublicKey,
        subject_cn: &str,
    ) -> Result<Vec<u8>> {
        let builder = CertificateBuilder::new(
            FixedNames {
                issuer: common_name(issuer_cn)?,
                subject: common_name(subject_cn)?,
                basic_constraints: Some(true),
            },
            random_serial()?,
            validity,
            spki(subject)?,
        )
        .map_err(cert_error)?;
        sign(builder, issuer)
    }

    /// A slot attestation certificate, signed by the f9 key, with Yubico's
    /// extensions; validity copied from the device certificate, as Yubico does.
    pub(super) fn slot_attestation_certificate(
        device_key: &SoftKey,
        device_cert_der: &[u8],
        slot: SlotId,
        attested: &PublicKey,
        info: &AttestationInfo,
    ) -> Result<Vec<u8>> {
        let (issuer_name, validity) = subject_of(device_cert_der)?;
        let mut builder = CertificateBuilder::new(
            FixedNames {
                issuer: issuer_name,
                subject: common_name(&format!("YubiKey PIV Attestation {slot}"))?,
                basic_constraints: None,
            },
            random_serial()?,
            validity,
            spki(attested)?,
        )
        .map_err(cert_error)?;
        // A positive DER INTEGER in its minimal encoding.
        let serial = Uint::new(&info.serial.to_be_bytes())
            .and_then(|i| i.to_der())
            .map_err(cert_error)?;
        for (oid, value) in [
            (OID_FIRMWARE, info.firmware.to_bytes().to_vec()),
            (OID_SERIAL, serial),
            (
                OID_POLICY,
                vec![info.pin_policy.to_byte(), info.touch_policy.to_byte()],
            ),
            (OID_FORM_FACTOR, vec![info.form_factor]),
        ] {
            builder
                .add_extension(Extension {
                    extn_id: oid,
                    critical: false,
                    extn_value: OctetString::new(value).map_err(cert_error)?,
                })
                .map_err(cert_error)?;
        }
        sign(builder, device_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::card::state::{DEFAULT_FIRMWARE, FactorySettings};
    use crate::secret::ManagementKeyAlgorithm;

    #[test]
    fn serial_extension_is_a_minimal_der_integer() {
        for serial in [
            1u32,
            0x7f,
            0x80,
            0xff,
            7_654_321,
            10_000_000,
            99_999_999,
            u32::MAX,
        ] {
            let mut state = CardState::factory(&FactorySettings {
                serial,
                firmware: DEFAULT_FIRMWARE,
                management_key_algorithm: ManagementKeyAlgorithm::Aes192,
            });
            install_attestation(&mut state).unwrap();
            let key = SoftKey::generate(Algorithm::EccP256).unwrap();
            let slot_key = SlotKey::new(
                key,
                PinPolicy::Once,
                TouchPolicy::Never,
                KeyOrigin::Generated,
            )
            .unwrap();
            state.keys.insert(SlotId::Signature, slot_key);
            let der = issue(&state, SlotId::Signature).unwrap();
            let ext = decode_serial(&der);
            assert_eq!(ext, serial, "serial {serial}");
        }
    }

    /// Decode the serial extension with `der`'s strict INTEGER decoder.
    fn decode_serial(cert_der: &[u8]) -> u32 {
        use der::Decode;
        let cert = x509_cert::Certificate::from_der(cert_der).unwrap();
        let value = cert
            .tbs_certificate()
            .extensions()
            .unwrap()
            .iter()
            .find(|e| e.extn_id.to_string() == "1.3.6.1.4.1.41482.3.7")
            .unwrap()
            .extn_value
            .as_bytes()
            .to_vec();
        let int = der::asn1::Uint::from_der(&value).unwrap();
        int.as_bytes()
            .iter()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
    }
}
