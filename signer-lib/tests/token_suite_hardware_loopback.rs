//! The shared Token behaviour suite, unchanged, against [`HardwareToken`]
//! (the PIV client) talking APDUs to the emulated YubiKey's front end over
//! the in-process loopback transport. The same suite runs through a real
//! pcscd and vpcd in `tests/tests/hardware_token_suite.rs`.
//!
//! [`HardwareToken`]: signer_lib::piv_client::HardwareToken

signer_lib::token_behaviour_suite!(signer_lib::testing::LoopbackFixture::new());
