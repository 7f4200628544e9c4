//! Yubico's attestation extensions (developers.yubico.com, "PIV attestation"):
//!
//! | OID | value (the extension's OCTET STRING content) |
//! | --- | --- |
//! | `1.3.6.1.4.1.41482.3.3` | firmware version, 3 raw bytes (major, minor, patch) |
//! | `1.3.6.1.4.1.41482.3.7` | serial number, a DER INTEGER |
//! | `1.3.6.1.4.1.41482.3.8` | PIN policy then touch policy, 2 raw bytes |
//! | `1.3.6.1.4.1.41482.3.9` | form factor, 1 raw byte (0x80 flags FIPS, 0x40 CSPN) |
//! | `1.3.6.1.4.1.41482.3.10` | present on FIPS-approved devices |
//! | `1.3.6.1.4.1.41482.3.11` | present on CSPN-certified devices |

use der::Decode;
use der::asn1::{ObjectIdentifier, UintRef};
use x509_cert::Certificate;

use crate::model::{FirmwareVersion, PinPolicy, TouchPolicy};

/// Firmware version extension.
pub const OID_FIRMWARE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.3");
/// Serial number extension.
pub const OID_SERIAL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.7");
/// PIN and touch policy extension.
pub const OID_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.8");
/// Form factor extension.
pub const OID_FORM_FACTOR: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.9");
/// FIPS-approved device marker.
pub const OID_FIPS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.10");
/// CSPN-certified device marker.
pub const OID_CSPN: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.11");

/// The device's form factor, as the attestation names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormFactor {
    /// Not reported (0x00).
    Unspecified,
    /// USB-A keychain (0x01).
    UsbAKeychain,
    /// USB-A nano (0x02).
    UsbANano,
    /// USB-C keychain (0x03).
    UsbCKeychain,
    /// USB-C nano (0x04).
    UsbCNano,
    /// USB-C and Lightning (0x05).
    UsbCLightning,
    /// USB-A Bio series keychain (0x06).
    UsbABioKeychain,
    /// USB-C Bio series keychain (0x07).
    UsbCBioKeychain,
    /// A value this version does not know.
    Unknown(u8),
}

impl FormFactor {
    /// From the extension byte (the FIPS/CSPN flag bits masked off).
    pub fn from_byte(byte: u8) -> FormFactor {
        match byte & 0x3F {
            0x00 => FormFactor::Unspecified,
            0x01 => FormFactor::UsbAKeychain,
            0x02 => FormFactor::UsbANano,
            0x03 => FormFactor::UsbCKeychain,
            0x04 => FormFactor::UsbCNano,
            0x05 => FormFactor::UsbCLightning,
            0x06 => FormFactor::UsbABioKeychain,
            0x07 => FormFactor::UsbCBioKeychain,
            other => FormFactor::Unknown(other),
        }
    }

    /// The byte without flags.
    pub fn to_byte(self) -> u8 {
        match self {
            FormFactor::Unspecified => 0x00,
            FormFactor::UsbAKeychain => 0x01,
            FormFactor::UsbANano => 0x02,
            FormFactor::UsbCKeychain => 0x03,
            FormFactor::UsbCNano => 0x04,
            FormFactor::UsbCLightning => 0x05,
            FormFactor::UsbABioKeychain => 0x06,
            FormFactor::UsbCBioKeychain => 0x07,
            FormFactor::Unknown(b) => b,
        }
    }

    /// As people name it.
    pub fn name(self) -> String {
        match self {
            FormFactor::Unspecified => "unspecified".into(),
            FormFactor::UsbAKeychain => "USB-A keychain".into(),
            FormFactor::UsbANano => "USB-A nano".into(),
            FormFactor::UsbCKeychain => "USB-C keychain".into(),
            FormFactor::UsbCNano => "USB-C nano".into(),
            FormFactor::UsbCLightning => "USB-C Lightning".into(),
            FormFactor::UsbABioKeychain => "USB-A Bio keychain".into(),
            FormFactor::UsbCBioKeychain => "USB-C Bio keychain".into(),
            FormFactor::Unknown(b) => format!("unknown (0x{b:02x})"),
        }
    }
}

/// What a slot attestation certificate says about the key and the device.
/// A field is `None` when its extension is absent or malformed; the
/// `problems` of [`decode`] say which.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttestationInfo {
    /// Device serial number.
    pub serial: Option<u32>,
    /// Firmware version.
    pub firmware: Option<FirmwareVersion>,
    /// The key's PIN policy.
    pub pin_policy: Option<PinPolicy>,
    /// The key's touch policy.
    pub touch_policy: Option<TouchPolicy>,
    /// The device's form factor.
    pub form_factor: Option<FormFactor>,
    /// FIPS-approved device (form-factor flag 0x80 or the .3.10 extension).
    pub fips: bool,
    /// CSPN-certified device (form-factor flag 0x40 or the .3.11 extension).
    pub cspn: bool,
}

fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    cert.tbs_certificate()
        .extensions()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == oid))
        .map(|e| e.extn_value.as_bytes())
}

/// Decode a DER INTEGER serial (non-negative, at most 32 bits).
pub fn decode_serial(value: &[u8]) -> Option<u32> {
    let int = UintRef::from_der(value).ok()?;
    let bytes = int.as_bytes();
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// Decode Yubico's extensions of a slot attestation certificate. Returns the
/// information and the problems found (a missing or malformed extension).
pub fn decode(cert: &Certificate) -> (AttestationInfo, Vec<String>) {
    let mut info = AttestationInfo::default();
    let mut problems = Vec::new();
    match extension(cert, OID_FIRMWARE) {
        Some(&[major, minor, patch]) => {
            info.firmware = Some(FirmwareVersion::new(major, minor, patch))
        }
        Some(_) => problems.push("firmware extension is not 3 bytes".into()),
        None => problems.push("no firmware extension (1.3.6.1.4.1.41482.3.3)".into()),
    }
    match extension(cert, OID_SERIAL) {
        Some(value) => match decode_serial(value) {
            Some(serial) => info.serial = Some(serial),
            None => problems.push("serial extension is not a 32-bit DER INTEGER".into()),
        },
        None => problems.push("no serial extension (1.3.6.1.4.1.41482.3.7)".into()),
    }
    match extension(cert, OID_POLICY) {
        Some(&[pin, touch]) => {
            match PinPolicy::from_byte(pin) {
                Ok(p) => info.pin_policy = Some(p),
                Err(_) => problems.push(format!("unknown PIN policy 0x{pin:02x}")),
            }
            match TouchPolicy::from_byte(touch) {
                Ok(t) => info.touch_policy = Some(t),
                Err(_) => problems.push(format!("unknown touch policy 0x{touch:02x}")),
            }
        }
        Some(_) => problems.push("policy extension is not 2 bytes".into()),
        None => problems.push("no policy extension (1.3.6.1.4.1.41482.3.8)".into()),
    }
    // Older firmware does not write the form factor: not a problem.
    match extension(cert, OID_FORM_FACTOR) {
        Some(&[byte]) => {
            info.form_factor = Some(FormFactor::from_byte(byte));
            info.fips |= byte & 0x80 != 0;
            info.cspn |= byte & 0x40 != 0;
        }
        Some(_) => problems.push("form factor extension is not 1 byte".into()),
        None => {}
    }
    info.fips |= extension(cert, OID_FIPS).is_some();
    info.cspn |= extension(cert, OID_CSPN).is_some();
    (info, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_integers() {
        assert_eq!(
            decode_serial(&[0x02, 0x04, 0x01, 0xb3, 0xbe, 0xf6]),
            Some(28557046)
        );
        assert_eq!(
            decode_serial(&[0x02, 0x05, 0x00, 0xff, 0xff, 0xff, 0xff]),
            Some(u32::MAX)
        );
        assert_eq!(decode_serial(&[0x02, 0x01, 0x80]), None, "negative");
        assert_eq!(
            decode_serial(&[0x02, 0x02, 0x00, 0x01]),
            None,
            "not minimal"
        );
        assert_eq!(
            decode_serial(&[0x02, 0x05, 0x01, 0, 0, 0, 0]),
            None,
            "too big"
        );
        assert_eq!(decode_serial(&[0x04, 0x01, 0x01]), None, "not an INTEGER");
    }

    #[test]
    fn form_factor_bytes() {
        for b in 0..=7u8 {
            assert_eq!(FormFactor::from_byte(b).to_byte(), b);
        }
        assert_eq!(FormFactor::from_byte(0x81), FormFactor::UsbAKeychain);
        assert_eq!(FormFactor::from_byte(0x3f), FormFactor::Unknown(0x3f));
    }
}
