//! Request validation in the daemon: see harness/request_validation.rs
//! (also run seeded by signer-daemon/tests/reliability_seeded_requests.rs).
#![no_main]

#[path = "../harness/request_validation.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let env = harness::env().lock().unwrap_or_else(|p| p.into_inner());
    let mut tally = harness::Tally::default();
    harness::run(&env, data, &mut tally);
});
