//! The shared Token behaviour suite, unchanged, against the hardware backend
//! (`HardwareToken`, our PIV client over the `pcsc` crate) talking to the
//! emulated YubiKey through a real (private) pcscd and the vpcd bridge.
//! Every case runs in order over a fresh card; every signature is checked by
//! the suite's independent verifiers.

use signer_e2e::hardware::VpcdFixture;
use signer_e2e::sandboxed_test;

sandboxed_test!(
    fn shared_token_suite_over_pcscd_and_vpcd(sandbox) {
        let reader = sandbox.reader(0).clone();
        signer_lib::testing::run_all(|| VpcdFixture::new(&reader));
    }
);

/// The cases that apply to every generation (signing with every key type
/// the firmware has, PIN policies, never retrying a PIN, touch prompts,
/// attestation, listing and import), against a card that behaves as
/// `firmware`: no GET METADATA before 5.3, so `HardwareToken` learns each
/// key's algorithm and PIN/touch policies from its attestation certificate.
fn generation(
    reader: &signer_e2e::pcsc_sandbox::VirtualReader,
    firmware: signer_lib::FirmwareVersion,
) {
    let options = signer_lib::emulator::InitOptions {
        serial: None,
        firmware,
        management_key_algorithm: None,
        ..Default::default()
    };
    signer_lib::testing::run_generation(|| VpcdFixture::with_options(reader, options.clone()));
}

sandboxed_test!(
    fn generation_suite_as_yubikey_4_3_7(sandbox) {
        generation(sandbox.reader(0), signer_lib::FirmwareVersion::new(4, 3, 7));
    }
);

sandboxed_test!(
    fn generation_suite_as_yubikey_5_2_7(sandbox) {
        generation(sandbox.reader(0), signer_lib::FirmwareVersion::new(5, 2, 7));
    }
);

sandboxed_test!(
    fn generation_suite_as_yubikey_5_7_4(sandbox) {
        generation(sandbox.reader(0), signer_lib::FirmwareVersion::new(5, 7, 4));
    }
);
