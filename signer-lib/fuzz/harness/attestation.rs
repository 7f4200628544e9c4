//! Fuzz harness: attestation certificate parsing and verification
//! (`signer_lib::attestation::verify_attestation`). Shared by the cargo-fuzz
//! target `attestation` and the seeded-random test
//! `signer-lib/tests/reliability_seeded_parsers.rs`.
//!
//! Input: a big-endian u16 length, the slot certificate, then the device
//! (f9) certificate. Checked: no panic; a verdict is trusted only with no
//! problems, a root source and a chain starting with the slot certificate;
//! and the only inputs ever trusted are the genuine pairs (a real YubiKey
//! 5 FIPS attestation under Yubico's roots): a changed byte anywhere is
//! never trusted.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::SystemTime;

use signer_lib::Attestation;
use signer_lib::attestation::anchors::pem_certificates;
use signer_lib::attestation::verify::Expected;
use signer_lib::attestation::{TrustAnchors, verify_attestation};

pub const F9: &str = include_str!("../../testdata/attestation/yubikey-5-fips-f9.pem");
pub const SLOT_9A: &str = include_str!("../../testdata/attestation/yubikey-5-fips-9a-p256.pem");
pub const SLOT_9C: &str = include_str!("../../testdata/attestation/yubikey-5-fips-9c-rsa2048.pem");

fn der(pem: &str) -> Vec<u8> {
    pem_certificates(pem).unwrap().remove(0)
}

/// The genuine (slot, device) pairs.
pub fn genuine() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![(der(SLOT_9A), der(F9)), (der(SLOT_9C), der(F9))]
}

/// Encode a pair as a fuzz input.
pub fn encode(slot: &[u8], device: &[u8]) -> Vec<u8> {
    let mut out = (slot.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(slot);
    out.extend_from_slice(device);
    out
}

fn anchors() -> &'static TrustAnchors {
    static A: std::sync::OnceLock<TrustAnchors> = std::sync::OnceLock::new();
    A.get_or_init(|| TrustAnchors::yubico().unwrap())
}

fn genuine_cached() -> &'static [(Vec<u8>, Vec<u8>)] {
    static G: std::sync::OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = std::sync::OnceLock::new();
    G.get_or_init(genuine)
}

pub fn run(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let n = usize::from(u16::from_be_bytes([data[0], data[1]])).min(data.len() - 2);
    let slot = data[2..2 + n].to_vec();
    let device = data[2 + n..].to_vec();
    let att = Attestation {
        slot_certificate: slot.clone(),
        device_certificate: device.clone(),
    };
    let at = SystemTime::now();
    for expected in [
        Expected::default(),
        Expected {
            public_key: None,
            slot: None,
            serial: Some(28557046),
        },
    ] {
        let v = verify_attestation(&att, anchors(), at, &expected);
        if v.trusted {
            assert!(v.problems.is_empty());
            assert!(v.root_source.is_some());
            assert_eq!(v.chain.first(), Some(&slot));
            assert!(
                genuine_cached()
                    .iter()
                    .any(|(s, d)| *s == slot && *d == device),
                "a changed attestation was trusted"
            );
        } else {
            assert!(!v.problems.is_empty(), "untrusted without a problem named");
        }
    }
}
