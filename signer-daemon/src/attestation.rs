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
    /// Additional trusted roots, PEM files.
    pub extra_roots: Vec<PathBuf>,
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
