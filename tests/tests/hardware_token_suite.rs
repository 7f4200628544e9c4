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
