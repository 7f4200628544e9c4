//! Harness for end-to-end tests: a private pcscd with vpcd virtual readers
//! that never disturbs the machine's own pcscd, PC/SC client helpers, and a
//! small test card for the vpcd bridge.
//!
//! - [`pcsc_sandbox`]: start/stop/restart a private pcscd (root, `unshare`),
//!   N virtual readers, and [`pcsc_sandbox::run_sandboxed`], which runs a test
//!   body in a child process whose pcsc-lite clients reach the sandbox.
//! - [`pcsc_client`]: list readers, wait for a card, connect, transmit.
//! - [`test_card`]: a `VirtualCard` that answers SELECT, echoes, and counts.
//!
//! The `pcsc-sandbox` binary (`tests/scripts/pcsc-sandbox.sh`) exposes the
//! sandbox to scripts and people.

#![forbid(unsafe_code)]

pub mod daemon_on_card;
pub mod hardware;
pub mod pcsc_client;
pub mod pcsc_sandbox;
pub mod test_card;

/// Define a `#[test]` that runs its body against a fresh private pcscd in a
/// child process (see [`pcsc_sandbox::run_sandboxed`]), with in-process
/// PC/SC clients reaching the sandbox:
///
/// ```ignore
/// sandboxed_test!(fn card_is_present(sandbox) {
///     let reader = sandbox.reader(0);
///     // ... start a bridge on reader.vpcd_address(), use the pcsc crate ...
/// });
/// sandboxed_test!(readers: 4, fn four_tokens(sandbox) { /* ... */ });
/// ```
#[macro_export]
macro_rules! sandboxed_test {
    ($(#[$attr:meta])* fn $name:ident($sandbox:ident) $body:block) => {
        $crate::sandboxed_test!(
            readers: $crate::pcsc_sandbox::SandboxConfig::default().readers,
            $(#[$attr])* fn $name($sandbox) $body
        );
    };
    (readers: $readers:expr, $(#[$attr:meta])* fn $name:ident($sandbox:ident) $body:block) => {
        $(#[$attr])*
        #[test]
        fn $name() {
            $crate::pcsc_sandbox::run_sandboxed(
                module_path!(),
                stringify!($name),
                $crate::pcsc_sandbox::SandboxConfig::with_readers($readers),
                |$sandbox: &mut $crate::pcsc_sandbox::Sandbox| $body,
            );
        }
    };
}
