//! The shared Token behaviour suite, unchanged, against [`HardwareToken`]
//! (the PIV client) talking APDUs to the emulated YubiKey's front end over
//! the in-process loopback transport. The same suite runs through a real
//! pcscd and vpcd in `tests/tests/hardware_token_suite.rs`.
//!
//! [`HardwareToken`]: signer_lib::piv_client::HardwareToken

//!
//! Once per firmware generation the client must handle: 5.7.4 (GET
//! METADATA, every key type), 5.2.7 and 4.3.7 (no GET METADATA: the client
//! learns each key's algorithm, public key and PIN/touch policies from its
//! attestation certificate, as yubico-piv-tool and ykman do; 4.3.7 also
//! has no GET SERIAL and a 3DES management key). The older generations run
//! the cases that apply to them (`token_generation_suite!`: no retry
//! counters to read, no AES management keys).

mod firmware_5_7_4 {
    signer_lib::token_behaviour_suite!(signer_lib::testing::LoopbackFixture::new());
}

mod firmware_5_2_7 {
    signer_lib::token_generation_suite!(signer_lib::testing::LoopbackFixture::with_options(
        signer_lib::emulator::InitOptions {
            serial: None,
            firmware: signer_lib::FirmwareVersion::new(5, 2, 7),
            management_key_algorithm: None,
            ..Default::default()
        }
    ));
}

mod firmware_4_3_7 {
    signer_lib::token_generation_suite!(signer_lib::testing::LoopbackFixture::with_options(
        signer_lib::emulator::InitOptions {
            serial: None,
            firmware: signer_lib::FirmwareVersion::new(4, 3, 7),
            management_key_algorithm: None,
            ..Default::default()
        }
    ));
}
