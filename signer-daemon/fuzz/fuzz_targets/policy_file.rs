//! The configuration and policy file parser: see harness/policy_file.rs
//! (also run seeded by signer-daemon/tests/reliability_seeded_requests.rs).
#![no_main]

#[path = "../harness/policy_file.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
