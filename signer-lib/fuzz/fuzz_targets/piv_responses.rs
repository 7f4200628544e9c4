//! The PIV client against a card whose answers the input rewrites: see
//! harness/piv_responses.rs (also run seeded by
//! signer-lib/tests/reliability_malicious_card.rs).
#![no_main]

#[path = "../harness/piv_responses.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let rig = harness::rig().lock().unwrap_or_else(|p| p.into_inner());
    harness::run(&rig, data);
});
