//! Checks an attestation against roots and the attested key.

use crate::model::{KeyInfo, TokenInfo};
use crate::token::Attestation;

/// Check `attestation` of `key` on the token described by `info`.
pub fn check(attestation: &Attestation, roots: &[Vec<u8>], key: &KeyInfo, info: &TokenInfo) {
    let _ = (attestation, roots, key, info);
    panic!("attestation checks pending the attestation module");
}
