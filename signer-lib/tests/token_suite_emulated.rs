//! The shared Token behaviour suite against the emulated token, directly:
//! once with the firmware 5.7.4 defaults (AES-192 management key), once as
//! a firmware 5.4.3 token with a 3DES management key.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod firmware_5_7_aes192 {
    signer_lib::token_behaviour_suite!(signer_lib::testing::EmulatedFixture::new());
}

mod firmware_5_4_tdes {
    signer_lib::token_behaviour_suite!(signer_lib::testing::EmulatedFixture::with_options(
        signer_lib::emulator::InitOptions {
            serial: Some(7_654_321),
            firmware: signer_lib::FirmwareVersion::new(5, 4, 3),
            management_key_algorithm: None,
            ..Default::default()
        }
    ));
}

#[test]
fn every_case_is_listed_once() {
    let names = signer_lib::testing::CASE_NAMES;
    let mut sorted = names.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len());
    assert!(names.len() >= 25);
}
