//! What the daemon trusts when it verifies an attestation, and the verdict
//! it returns with Attest.
//!
//! By default only Yubico's attestation roots are trusted. An emulated
//! token's own root is trusted only when the configuration says so
//! (`trust_emulated_root = true`), since anyone can make an emulated token;
//! extra roots (PEM files) can be added with `attestation_roots`.

use std::path::PathBuf;

use signer_lib::{Attestation, KeyInfo};
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
        let mut found = 0;
        let mut rest = text.as_str();
        while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
            let end_marker = "-----END CERTIFICATE-----";
            let end = rest[start..].find(end_marker).ok_or_else(|| {
                format!(
                    "attestation root {}: unterminated PEM block",
                    path.display()
                )
            })? + start
                + end_marker.len();
            let (label, der) = pem_rfc7468::decode_vec(&rest.as_bytes()[start..end])
                .map_err(|e| format!("attestation root {}: {e}", path.display()))?;
            if label == "CERTIFICATE" {
                roots.push(der);
                found += 1;
            }
            rest = &rest[end..];
        }
        if found == 0 {
            return Err(format!(
                "attestation root {}: no PEM CERTIFICATE in it",
                path.display()
            ));
        }
    }
    Ok(roots)
}

impl AttestationTrust {
    /// Verify `attestation` of `key` and describe the result.
    pub fn verdict(&self, _attestation: &Attestation, key: &KeyInfo) -> pb::Verdict {
        pb::Verdict {
            trusted: false,
            problems: vec!["attestation verification is not available in this build".to_string()],
            slot: key.slot.to_string(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_load_from_pem_and_bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let block =
            pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, &der).unwrap();
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
    }
}
