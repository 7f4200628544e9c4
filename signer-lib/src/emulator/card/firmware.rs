//! Firmware generations: what the emulated card can do depends on the
//! firmware it was manufactured with, as on a YubiKey.
//!
//! The rules are data ([`CAPABILITIES`]): each [`Feature`] appears from one
//! firmware version on, with the status word older firmware answers and
//! where Yubico's own code says so. The card model calls [`require`] (a
//! typed [`Error::NotSupported`]; [`require_algorithm`] gives
//! [`Error::UnsupportedAlgorithm`] for a key type, as the PIV client reports
//! a device's refusal); the APDU front end calls [`refusal`] before it
//! parses a command, and answers the status word it returns. Yubico's
//! sources give the version lines; the status words of a known instruction
//! with an algorithm or parameter the firmware lacks are inferred (6A80 in
//! the data, 6A86 in P1/P2, as for any unknown value), an unknown
//! instruction's 6D00 is ISO 7816-4's.
//!
//! Sources (Yubico's host code, which mirrors what each firmware accepts):
//! yubikey-manager `yubikit/piv.py` (`require_version` calls and
//! `_do_check_key_support`) and its device tests `tests/device/test_piv.py`
//! (`condition.min_version` skips), yubico-piv-tool `lib/ykpiv.c` and
//! `lib/util.c` (`is_version_compatible`), and its `doc/Attestation.adoc`
//! for the attestation hierarchy.
//!
//! Which versions are modelled ([`check_modelled`]): 4.3.5 to 4.3.x (YubiKey
//! 4 after the ROCA fix; 4.2.0 to 4.3.4 generated weak RSA keys, which is
//! not something to emulate, and 4.4 is the YubiKey 4 FIPS), and 5.0.0 to
//! 5.7.x (YubiKey 5). Anything else is refused at init with a message that
//! says what is modelled.

use crate::error::{Error, Result};
use crate::model::{Algorithm, FirmwareVersion};
use crate::piv::apdu::{CommandApdu, StatusWord};
use crate::piv::{ins, key_ref, tag, tlv};
use crate::secret::ManagementKeyAlgorithm;

/// MOVE KEY / DELETE KEY (firmware 5.7+): P1 the destination slot (FF:
/// delete), P2 the source slot.
pub const INS_MOVE_KEY: u8 = 0xf6;

/// A capability that some modelled firmware lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// GET SERIAL (F8) in the PIV applet (YubiKey 4 reads the serial
    /// through the OTP applet).
    PivSerial,
    /// GET METADATA (F7) for PIN, PUK, management key and key slots.
    Metadata,
    /// AES-128/192/256 management keys (SET MANAGEMENT KEY, and
    /// authentication with one).
    AesManagementKey,
    /// VERIFY with P1 = FF (forget the PIN verification).
    Unverify,
    /// RSA-3072 and RSA-4096 keys.
    LargeRsaKeys,
    /// Ed25519 keys.
    Ed25519Keys,
    /// X25519 keys.
    X25519Keys,
    /// MOVE KEY and DELETE KEY (F6).
    MoveDelete,
    /// The factory management key is AES-192 (3DES before).
    AesDefaultManagementKey,
    /// The f9 certificate is issued under the 2024 PKI (PIV Attestation
    /// A/B 1 ← Attestation Intermediate A/B 1 ← Attestation Root 1) instead
    /// of directly by the PIV Root CA.
    AttestationPki2024,
}

/// One row of the capability table.
#[derive(Clone, Copy, Debug)]
pub struct Capability {
    /// The feature.
    pub feature: Feature,
    /// The first firmware that has it.
    pub since: FirmwareVersion,
    /// What older firmware answers to a command that needs it (for
    /// features that are not commands: `None`).
    pub refusal: Option<StatusWord>,
    /// In words, for error messages.
    pub what: &'static str,
    /// Where Yubico's code draws the line.
    pub source: &'static str,
}

const fn v(major: u8, minor: u8, patch: u8) -> FirmwareVersion {
    FirmwareVersion::new(major, minor, patch)
}

/// The capability table. Everything not listed is in every modelled
/// firmware (P-256/P-384, RSA-1024/2048, PIN and touch policies, cached
/// touch, attestation, ECDH on P-256/P-384).
pub const CAPABILITIES: &[Capability] = &[
    Capability {
        feature: Feature::PivSerial,
        since: v(5, 0, 3),
        refusal: Some(StatusWord::InsNotSupported),
        what: "GET SERIAL in the PIV applet",
        source: "yubikit/piv.py get_serial: require_version(5, 0, 3); ykpiv.c reads a YubiKey 4's serial from the OTP applet",
    },
    Capability {
        feature: Feature::Metadata,
        since: v(5, 3, 0),
        refusal: Some(StatusWord::InsNotSupported),
        what: "GET METADATA",
        source: "yubikit/piv.py get_*_metadata: require_version(5, 3, 0); test_piv.py TestMetadata min_version(5, 3)",
    },
    Capability {
        feature: Feature::AesManagementKey,
        since: v(5, 4, 0),
        refusal: Some(StatusWord::IncorrectData),
        what: "an AES management key",
        source: "yubikit/piv.py set_management_key: require_version(5, 4, 0) for non-3DES keys",
    },
    Capability {
        feature: Feature::Unverify,
        since: v(5, 4, 3),
        refusal: Some(StatusWord::IncorrectP1P2),
        what: "VERIFY with P1 = FF (forget the PIN)",
        source: "ykpiv.c ykpiv_auth_deauthenticate: VERIFY FF 80 only from 5.4.3, a re-SELECT before",
    },
    Capability {
        feature: Feature::LargeRsaKeys,
        since: v(5, 7, 0),
        refusal: None,
        what: "RSA-3072 and RSA-4096 keys",
        source: "yubikit/piv.py _do_check_key_support; ykpiv.c ykpiv_import_private_key",
    },
    Capability {
        feature: Feature::Ed25519Keys,
        since: v(5, 7, 0),
        refusal: None,
        what: "Ed25519 keys",
        source: "yubikit/piv.py _do_check_key_support; util.c ykpiv_util_generate_key",
    },
    Capability {
        feature: Feature::X25519Keys,
        since: v(5, 7, 0),
        refusal: None,
        what: "X25519 keys",
        source: "yubikit/piv.py _do_check_key_support; util.c ykpiv_util_generate_key",
    },
    Capability {
        feature: Feature::MoveDelete,
        since: v(5, 7, 0),
        refusal: Some(StatusWord::InsNotSupported),
        what: "MOVE KEY and DELETE KEY",
        source: "yubikit/piv.py move_key/delete_key: require_version(5, 7, 0); ykpiv.c ykpiv_move_key; test_piv.py TestMoveAndDelete min_version(5, 7)",
    },
    Capability {
        feature: Feature::AesDefaultManagementKey,
        since: v(5, 7, 0),
        refusal: None,
        what: "an AES-192 factory management key",
        source: "test_piv.py test_management_key_metadata: TDES before 5.7.0, AES192 from it",
    },
    Capability {
        feature: Feature::AttestationPki2024,
        since: v(5, 7, 4),
        refusal: None,
        what: "the 2024 attestation PKI",
        source: "yubico-piv-tool doc/Attestation.adoc: 5.7.4 and later chain to Yubico Attestation Root 1 through intermediates; 5.7.3 and earlier to the PIV Root CA",
    },
];

/// The table row of `feature`.
pub fn capability(feature: Feature) -> &'static Capability {
    // Every Feature has exactly one row (tested).
    CAPABILITIES
        .iter()
        .find(|c| c.feature == feature)
        .unwrap_or(&CAPABILITIES[0])
}

/// Whether `firmware` has `feature`.
pub fn supports(firmware: FirmwareVersion, feature: Feature) -> bool {
    firmware >= capability(feature).since
}

/// [`Error::NotSupported`] naming the feature, the firmware that has it and
/// this one, unless `firmware` has `feature`.
pub fn require(firmware: FirmwareVersion, feature: Feature) -> Result<()> {
    let row = capability(feature);
    if firmware >= row.since {
        Ok(())
    } else {
        Err(Error::NotSupported {
            what: format!(
                "{} needs YubiKey firmware {} or later; this emulated token has firmware {firmware}",
                row.what, row.since
            ),
        })
    }
}

/// The feature a key algorithm needs, if any.
pub fn algorithm_feature(algorithm: Algorithm) -> Option<Feature> {
    match algorithm {
        Algorithm::Rsa3072 | Algorithm::Rsa4096 => Some(Feature::LargeRsaKeys),
        Algorithm::Ed25519 => Some(Feature::Ed25519Keys),
        Algorithm::X25519 => Some(Feature::X25519Keys),
        Algorithm::EccP256 | Algorithm::EccP384 | Algorithm::Rsa1024 | Algorithm::Rsa2048 => None,
    }
}

/// [`require`] for a key algorithm, as [`Error::UnsupportedAlgorithm`]
/// (what the PIV client reports for the device's 6A80, so that both
/// backends refuse a key type alike), naming the firmware it needs.
pub fn require_algorithm(firmware: FirmwareVersion, algorithm: Algorithm) -> Result<()> {
    match algorithm_feature(algorithm) {
        Some(feature) if !supports(firmware, feature) => Err(Error::UnsupportedAlgorithm {
            algorithm: format!(
                "{algorithm} (needs YubiKey firmware {} or later; this emulated token has \
                 firmware {firmware})",
                capability(feature).since
            ),
        }),
        _ => Ok(()),
    }
}

/// [`require`] for a management key algorithm.
pub fn require_management_key_algorithm(
    firmware: FirmwareVersion,
    algorithm: ManagementKeyAlgorithm,
) -> Result<()> {
    if algorithm == ManagementKeyAlgorithm::Tdes {
        Ok(())
    } else {
        require(firmware, Feature::AesManagementKey)
    }
}

/// The management key type a PIV RESET restores. Before 5.7 the factory
/// key is 3DES whatever the key became (an emulated 5.4-5.6 token made with
/// an AES key models one whose owner changed it: a reset brings 3DES back,
/// as ykman's `test_management_key_metadata` expects); from 5.7 the type
/// chosen at init (AES-192 unless asked otherwise).
pub fn factory_management_key_algorithm(
    firmware: FirmwareVersion,
    chosen_at_init: ManagementKeyAlgorithm,
) -> ManagementKeyAlgorithm {
    if supports(firmware, Feature::AesDefaultManagementKey) {
        chosen_at_init
    } else {
        ManagementKeyAlgorithm::Tdes
    }
}

/// Whether the emulator models `firmware`; `Err` says what it models.
pub fn check_modelled(firmware: FirmwareVersion) -> Result<()> {
    let modelled = match (firmware.major, firmware.minor) {
        (4, 3) => firmware.patch >= 5,
        (5, 0..=7) => true,
        _ => false,
    };
    if modelled {
        Ok(())
    } else {
        Err(Error::NotSupported {
            what: format!(
                "the emulator does not model YubiKey firmware {firmware}: it models 4.3.5 to 4.3.x \
                 (YubiKey 4; earlier 4.x generated ROCA-weak RSA keys, 4.4 is the FIPS series) \
                 and 5.0.0 to 5.7.x (YubiKey 5)"
            ),
        })
    }
}

/// The factory settings a manufacture may use: a modelled firmware, and a
/// management key algorithm that firmware has.
pub fn check_factory(
    firmware: FirmwareVersion,
    management_key_algorithm: ManagementKeyAlgorithm,
) -> Result<()> {
    check_modelled(firmware)?;
    require_management_key_algorithm(firmware, management_key_algorithm)
}

/// The status word `firmware` answers to `apdu` (a PIV applet command)
/// because it lacks a feature the command needs, or `None` when the
/// firmware has everything the command asks for (the command may still be
/// refused for other reasons further on). Looks only at the instruction,
/// the parameters and the algorithm byte of the data.
pub fn refusal(firmware: FirmwareVersion, apdu: &CommandApdu) -> Option<StatusWord> {
    let (feature, status) = needed(apdu)?;
    if supports(firmware, feature) {
        None
    } else {
        tracing::debug!(
            ins = format_args!("{:02X}", apdu.ins),
            %firmware,
            feature = capability(feature).what,
            "refused: not in this firmware"
        );
        Some(status)
    }
}

/// What `apdu` needs, and the status word firmware without it answers.
fn needed(apdu: &CommandApdu) -> Option<(Feature, StatusWord)> {
    let row_status = |feature: Feature| {
        (
            feature,
            capability(feature)
                .refusal
                .unwrap_or(StatusWord::InsNotSupported),
        )
    };
    match apdu.ins {
        ins::GET_SERIAL => Some(row_status(Feature::PivSerial)),
        ins::GET_METADATA => Some(row_status(Feature::Metadata)),
        INS_MOVE_KEY => Some(row_status(Feature::MoveDelete)),
        ins::VERIFY if apdu.p1 == 0xff => Some(row_status(Feature::Unverify)),
        // GENERATE: the algorithm is in the data, `AC { 80 alg ... }`; an
        // algorithm the firmware does not know is bad data (6A80).
        ins::GENERATE_ASYMMETRIC => {
            let (control, _) = tlv::read(&apdu.data).ok()?;
            if control.tag != tag::CONTROL_REFERENCE {
                return None;
            }
            let algorithm = tlv::parse_all(control.value)
                .ok()?
                .into_iter()
                .find(|t| t.tag == tag::ALGORITHM)
                .and_then(|t| match t.value {
                    [id] => Algorithm::from_id(*id).ok(),
                    _ => None,
                })?;
            algorithm_feature(algorithm).map(|f| (f, StatusWord::IncorrectData))
        }
        // IMPORT: the algorithm is P1 (6A86 for one the firmware lacks).
        ins::IMPORT_KEY => {
            let algorithm = Algorithm::from_id(apdu.p1).ok()?;
            algorithm_feature(algorithm).map(|f| (f, StatusWord::IncorrectP1P2))
        }
        // SET MANAGEMENT KEY: the algorithm is the first data byte.
        ins::SET_MANAGEMENT_KEY => {
            let algorithm = ManagementKeyAlgorithm::from_id(*apdu.data.first()?).ok()?;
            (algorithm != ManagementKeyAlgorithm::Tdes)
                .then_some((Feature::AesManagementKey, StatusWord::IncorrectData))
        }
        // Authentication with the management key: the algorithm is P1.
        ins::GENERAL_AUTHENTICATE if apdu.p2 == key_ref::MANAGEMENT => {
            let algorithm = ManagementKeyAlgorithm::from_id(apdu.p1).ok()?;
            (algorithm != ManagementKeyAlgorithm::Tdes)
                .then_some((Feature::AesManagementKey, StatusWord::IncorrectP1P2))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Feature; 10] = [
        Feature::PivSerial,
        Feature::Metadata,
        Feature::AesManagementKey,
        Feature::Unverify,
        Feature::LargeRsaKeys,
        Feature::Ed25519Keys,
        Feature::X25519Keys,
        Feature::MoveDelete,
        Feature::AesDefaultManagementKey,
        Feature::AttestationPki2024,
    ];

    #[test]
    fn every_feature_has_exactly_one_row() {
        for f in ALL {
            assert_eq!(
                CAPABILITIES.iter().filter(|c| c.feature == f).count(),
                1,
                "{f:?}"
            );
        }
        assert_eq!(CAPABILITIES.len(), ALL.len());
    }

    #[test]
    fn generations() {
        let yk4 = v(4, 3, 7);
        let yk52 = v(5, 2, 7);
        let yk53 = v(5, 3, 0);
        let yk54 = v(5, 4, 3);
        let yk56 = v(5, 6, 0);
        let yk57 = v(5, 7, 0);
        let yk574 = v(5, 7, 4);
        for f in ALL {
            assert!(!supports(yk4, f), "4.3.7 lacks {f:?}");
            assert!(supports(yk574, f), "5.7.4 has {f:?}");
        }
        assert!(supports(yk52, Feature::PivSerial) && !supports(yk52, Feature::Metadata));
        assert!(supports(yk53, Feature::Metadata) && !supports(yk53, Feature::AesManagementKey));
        assert!(supports(yk54, Feature::AesManagementKey) && supports(yk54, Feature::Unverify));
        assert!(!supports(yk56, Feature::Ed25519Keys) && !supports(yk56, Feature::MoveDelete));
        assert!(supports(yk57, Feature::MoveDelete) && supports(yk57, Feature::X25519Keys));
        assert!(!supports(yk57, Feature::AttestationPki2024));
        let e = require(yk56, Feature::Ed25519Keys).unwrap_err().to_string();
        assert!(e.contains("5.7.0") && e.contains("5.6.0"), "{e}");
    }

    #[test]
    fn modelled_versions() {
        for ok in [
            v(4, 3, 5),
            v(4, 3, 7),
            v(5, 0, 0),
            v(5, 2, 7),
            v(5, 7, 4),
            v(5, 7, 9),
        ] {
            check_modelled(ok).unwrap();
        }
        for bad in [
            v(3, 4, 0),
            v(4, 2, 6),
            v(4, 3, 4),
            v(4, 4, 5),
            v(5, 8, 0),
            v(6, 0, 0),
        ] {
            let e = check_modelled(bad).unwrap_err().to_string();
            assert!(e.contains(&bad.to_string()) && e.contains("4.3.5"), "{e}");
        }
        assert!(check_factory(v(5, 3, 0), ManagementKeyAlgorithm::Aes192).is_err());
        check_factory(v(5, 4, 0), ManagementKeyAlgorithm::Aes128).unwrap();
        check_factory(v(4, 3, 7), ManagementKeyAlgorithm::Tdes).unwrap();
    }

    fn apdu(ins: u8, p1: u8, p2: u8, data: &[u8]) -> CommandApdu {
        CommandApdu {
            cla: 0,
            ins,
            p1,
            p2,
            data: zeroize::Zeroizing::new(data.to_vec()),
            le: None,
        }
    }

    #[test]
    fn refusals_by_command() {
        let yk4 = v(4, 3, 7);
        let yk57 = v(5, 7, 4);
        let gen_ed = apdu(0x47, 0, 0x9a, &[0xac, 0x03, 0x80, 0x01, 0xe0]);
        let gen_p256 = apdu(0x47, 0, 0x9a, &[0xac, 0x03, 0x80, 0x01, 0x11]);
        let cases: [(CommandApdu, Option<StatusWord>); 9] = [
            (apdu(0xf7, 0, 0x9a, &[]), Some(StatusWord::InsNotSupported)),
            (
                apdu(0xf6, 0x9c, 0x9a, &[]),
                Some(StatusWord::InsNotSupported),
            ),
            (apdu(0xf8, 0, 0, &[]), Some(StatusWord::InsNotSupported)),
            (apdu(0x20, 0xff, 0x80, &[]), Some(StatusWord::IncorrectP1P2)),
            (gen_ed, Some(StatusWord::IncorrectData)),
            (gen_p256, None),
            (apdu(0xfe, 0xe0, 0x9a, &[]), Some(StatusWord::IncorrectP1P2)),
            (
                apdu(0xff, 0xff, 0xff, &[0x0a, 0x9b, 0x18]),
                Some(StatusWord::IncorrectData),
            ),
            (apdu(0x87, 0x0a, 0x9b, &[]), Some(StatusWord::IncorrectP1P2)),
        ];
        for (cmd, want) in cases {
            assert_eq!(refusal(yk4, &cmd), want, "{:02x} on 4.3.7", cmd.ins);
            assert_eq!(refusal(yk57, &cmd), None, "{:02x} on 5.7.4", cmd.ins);
        }
        assert_eq!(refusal(yk4, &apdu(0x87, 0x03, 0x9b, &[])), None);
        assert_eq!(refusal(yk4, &apdu(0x20, 0x00, 0x80, &[])), None);
    }
}
