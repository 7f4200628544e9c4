//! The BER-TLV parser the PIV client uses on card responses: see
//! harness/tlv.rs (also run seeded by signer-lib/tests/reliability_seeded_parsers.rs).
#![no_main]

#[path = "../harness/tlv.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
