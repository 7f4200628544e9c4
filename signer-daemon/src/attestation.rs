//! What the daemon trusts when it verifies an attestation, and the verdict
//! it returns with Attest.
//!
//! By default only Yubico's attestation roots are trusted. An emulated
//! token's own root is trusted only when the configuration says so
//! (`trust_emulated_root = true`), since anyone can make an emulated token;
//! extra roots (PEM files) can be added with `attestation_roots`.

use std::path::PathBuf;

use std::time::SystemTime;

use signer_lib::attestation::anchors::pem_certificates;
use signer_lib::attestation::verify::{Expected, Verdict};
use signer_lib::attestation::{TrustAnchors, verify_attestation};
use signer_lib::{Attestation, KeyInfo};

use crate::server::convert::{pin_policy_to_proto, touch_policy_to_proto};
use signer_proto::v1 as pb;

/// Attestation trust configuration.
#[derive(Debug, Clone, Default)]
pub struct AttestationTrust {
    /// Also trust the root of emulated tokens (tests and CI only).
    pub trust_emulated_root: bool,
    /// The served emulated tokens' roots (DER), read at start-up when
    /// `trust_emulated_root` is set.
    pub emulated_roots: Vec<Vec<u8>>,
    /// Additional trusted roots (DER), loaded from the configured PEM files
    /// with [`load_pem_roots`].
    pub extra_roots: Vec<Vec<u8>>,
}

/// Read every `CERTIFICATE` block of each PEM file. Fails, naming the file,
/// when one cannot be read, holds no certificate, or a block does not decode:
/// a trust anchor that silently went missing would turn every verdict
/// untrusted without saying why.
pub fn load_pem_roots(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    let mut roots = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("attestation root {}: {e}", path.display()))?;
        let fail = |e: signer_lib::Error| format!("attestation root {}: {e}", path.display());
        for der in pem_certificates(&text).map_err(fail)? {
            // Parse it now: a bad root fails the start, not every Attest.
            TrustAnchors::empty()
                .add_root_der("check", der.clone())
                .map_err(fail)?;
            roots.push(der);
        }
    }
    Ok(roots)
}

impl AttestationTrust {
    /// The anchors a verdict is checked against: Yubico's roots and
    /// intermediates, the configured PEM roots, and the emulated tokens'
    /// roots only when `trust_emulated_root` is set.
    pub fn anchors(&self) -> Result<TrustAnchors, signer_lib::Error> {
        let mut anchors = TrustAnchors::yubico()?;
        for der in &self.extra_roots {
            anchors.add_root_der("configured root", der.clone())?;
        }
        if self.trust_emulated_root {
            for der in &self.emulated_roots {
                anchors.add_root_der("emulated token (trust_emulated_root = true)", der.clone())?;
            }
        }
        Ok(anchors)
    }

    /// Verify `attestation` of `key` on the token `serial` and describe the
    /// result.
    pub fn verdict(&self, attestation: &Attestation, key: &KeyInfo, serial: u32) -> pb::Verdict {
        let anchors = match self.anchors() {
            Ok(a) => a,
            Err(e) => {
                return pb::Verdict {
                    trusted: false,
                    problems: vec![format!("the trust anchors cannot be loaded: {e}")],
                    slot: key.slot.to_string(),
                    ..Default::default()
                };
            }
        };
        let v = verify_attestation(
            attestation,
            &anchors,
            SystemTime::now(),
            &Expected {
                public_key: Some(&key.public_key.spki_der),
                slot: Some(key.slot),
                serial: Some(serial),
            },
        );
        verdict_to_proto(&v)
    }
}

/// The protobuf form of a library verdict.
pub fn verdict_to_proto(v: &Verdict) -> pb::Verdict {
    pb::Verdict {
        trusted: v.trusted,
        problems: v.problems.clone(),
        chain_der: v.chain.clone(),
        info: Some(pb::AttestedInfo {
            serial: v.info.serial,
            firmware: v
                .info
                .firmware
                .map(|f| format!("{}.{}.{}", f.major, f.minor, f.patch))
                .unwrap_or_default(),
            pin_policy: v
                .info
                .pin_policy
                .map_or(pb::PinPolicy::Unspecified, pin_policy_to_proto)
                as i32,
            touch_policy: v
                .info
                .touch_policy
                .map_or(pb::TouchPolicy::Unspecified, touch_policy_to_proto)
                as i32,
            form_factor: v.info.form_factor.map(|f| f.name()).unwrap_or_default(),
            fips: v.info.fips,
            cspn: v.info.cspn,
        }),
        attested_public_key_der: v.attested_public_key.clone(),
        attested_key_id: v.attested_key_id.clone(),
        slot: v.slot.map(|s| s.to_string()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_load_from_pem_and_bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let block = signer_lib::attestation::anchors::YUBICO_PIV_ROOT_CA_PEM.trim();
        let der = pem_certificates(block).unwrap().remove(0);
        let two = dir.path().join("two.pem");
        std::fs::write(&two, format!("# roots\n{block}\n{block}")).unwrap();
        assert_eq!(
            load_pem_roots(std::slice::from_ref(&two)).unwrap(),
            vec![der.clone(), der]
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing").unwrap();
        assert!(
            load_pem_roots(&[empty])
                .unwrap_err()
                .contains("no PEM CERTIFICATE")
        );
        assert!(load_pem_roots(&[dir.path().join("missing.pem")]).is_err());
        // A PEM block that is not an X.509 certificate fails at load time.
        let junk = dir.path().join("junk.pem");
        let not_a_cert = pem_rfc7468::encode_string(
            "CERTIFICATE",
            pem_rfc7468::LineEnding::LF,
            &[0x30, 0x03, 0x02, 0x01, 0x05],
        )
        .unwrap();
        std::fs::write(&junk, not_a_cert).unwrap();
        assert!(
            load_pem_roots(&[junk])
                .unwrap_err()
                .contains("not a DER certificate")
        );
    }
}
