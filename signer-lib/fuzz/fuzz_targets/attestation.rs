//! Attestation certificate parsing and verification: see harness/attestation.rs
//! (also run seeded by signer-lib/tests/reliability_seeded_parsers.rs).
#![no_main]

#[path = "../harness/attestation.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
