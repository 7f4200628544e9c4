//! The shared Token behaviour suite (feature `testing`).
//!
//! Written once against the [`Token`](crate::Token) trait and run against
//! every backend: the emulated token directly (this crate's tests), and the
//! hardware backend talking to the emulated card through pcscd/vpcd. A
//! backend plugs in with a [`TokenFixture`] that hands out fresh tokens in
//! factory state and, where it can, lets the suite decide what a "touch"
//! does. Then one line generates one `#[test]` per case:
//!
//! ```ignore
//! signer_lib::token_behaviour_suite!(signer_lib::testing::EmulatedFixture::new());
//! ```
//!
//! The expression is evaluated once per test, so every case gets its own
//! fixture; a fixture that shares a single device must serialize itself
//! (e.g. hold a global mutex for its lifetime).
//!
//! Every signature is checked with independent verifiers (the `p256`/`p384`
//! crates' `VerifyingKey` for ECDSA; RustCrypto's `rsa` and `ed25519-dalek`
//! verifiers and the `openssl` command for RSA and Ed25519), see [`verify`].
//! Cases panic on failure.

#![allow(clippy::missing_panics_doc)]

pub mod attestation_check;
pub mod emulated;
pub mod fixture;
pub mod hardware;
pub mod suite;
pub mod verify;

pub use emulated::EmulatedFixture;
pub use fixture::{Capabilities, TokenFixture, TouchSetup};
pub use hardware::LoopbackFixture;

/// The suite's cases, each a function in [`suite`]. Calls
/// `$crate::$callback!{ [args] case, case, ... }`.
#[doc(hidden)]
#[macro_export]
macro_rules! __token_suite_cases {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! {
            [$($args)*]
            factory_state,
            sign_p256_every_hash,
            sign_p384_every_hash,
            generated_key_is_reported_consistently,
            wrong_pin_decrements_and_third_blocks,
            puk_unblocks_pin_and_wrong_puk_decrements,
            reset_only_when_pin_and_puk_are_blocked,
            change_pin_and_puk,
            pin_policy_always_needs_a_pin_for_every_signature,
            pin_policy_always_is_voided_by_a_command_in_between,
            pin_policy_once_lasts_for_the_session,
            pin_policy_never_signs_without_pin,
            signing_session_verifies_by_policy_and_never_retries,
            touch_approved_after_the_event,
            touch_denied,
            touch_timeout,
            touch_cached_within_the_window_then_expires,
            attestation_chain_verifies_and_decodes,
            imported_key_signs_but_cannot_be_attested,
            bad_digest_lengths_are_rejected_before_the_pin,
            empty_slots_are_reported,
            invalid_slots_are_rejected,
            unsupported_algorithms_are_rejected,
            management_key_required_and_wrong,
            set_management_key_takes_effect,
            certificate_round_trips,
            state_round_trips_across_reopen,
            sign_rsa2048_every_scheme_and_hash,
            sign_imported_rsa_every_size,
            sign_ed25519_message,
            x25519_is_listed_and_refused_for_signing,
            sign_scheme_misuse_is_refused_before_the_pin,
            signing_layers_serve_rsa_and_ed25519,
            self_signed_certificates_for_rsa_and_ed25519,
            rsa_decrypt_and_key_agreement,
        }
    };
}

/// The cases that apply to every YubiKey generation the client supports,
/// 4.3 and 5.0–5.2 included (no GET METADATA: no retry counters to read;
/// no AES management keys before 5.4): signing with every key type the
/// firmware has, PIN policies and "never retry a PIN", touch, attestation,
/// key listing, import. Calls `$crate::$callback!{ [args] case, ... }`.
#[doc(hidden)]
#[macro_export]
macro_rules! __token_generation_cases {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! {
            [$($args)*]
            sign_p256_every_hash,
            sign_p384_every_hash,
            generated_key_is_reported_consistently,
            pin_policy_always_needs_a_pin_for_every_signature,
            pin_policy_once_lasts_for_the_session,
            pin_policy_never_signs_without_pin,
            signing_session_verifies_by_policy_and_never_retries,
            touch_approved_after_the_event,
            touch_denied,
            touch_timeout,
            touch_cached_within_the_window_then_expires,
            attestation_chain_verifies_and_decodes,
            imported_key_signs_but_cannot_be_attested,
            empty_slots_are_reported,
            invalid_slots_are_rejected,
            unsupported_algorithms_are_rejected,
            certificate_round_trips,
            sign_rsa2048_every_scheme_and_hash,
            sign_imported_rsa_every_size,
            sign_ed25519_message,
            x25519_is_listed_and_refused_for_signing,
            self_signed_certificates_for_rsa_and_ed25519,
            rsa_decrypt_and_key_agreement,
        }
    };
}

/// One `#[test]` per case of [`__token_generation_cases`]: the suite for
/// firmware before 5.3 (YubiKey 4, 5.0–5.2).
#[macro_export]
macro_rules! token_generation_suite {
    ($fixture:expr) => {
        $crate::__token_generation_cases!(__token_suite_tests, $fixture);
    };
}

/// Generate one `#[test]` per case of the shared Token behaviour suite,
/// each over a fresh fixture built by the given expression (any
/// [`TokenFixture`]).
#[macro_export]
macro_rules! token_behaviour_suite {
    ($fixture:expr) => {
        $crate::__token_suite_cases!(__token_suite_tests, $fixture);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __token_suite_tests {
    ([$fixture:expr] $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let mut fixture = $fixture;
                $crate::testing::suite::$case(&mut fixture);
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __token_suite_list {
    ([] $($case:ident),* $(,)?) => {
        /// The names of every case, in order.
        pub const CASE_NAMES: &[&str] = &[$(stringify!($case)),*];

        /// Run every case in order, each over a fresh fixture from `make`
        /// (for harnesses that cannot use [`token_behaviour_suite!`]).
        pub fn run_all<F: $crate::testing::TokenFixture>(mut make: impl FnMut() -> F) {
            $(
                eprintln!("token suite: {}", stringify!($case));
                $crate::testing::suite::$case(&mut make());
            )*
        }
    };
}

__token_suite_cases!(__token_suite_list,);

#[doc(hidden)]
#[macro_export]
macro_rules! __token_generation_list {
    ([] $($case:ident),* $(,)?) => {
        /// The names of the cases of [`token_generation_suite!`], in order.
        pub const GENERATION_CASE_NAMES: &[&str] = &[$(stringify!($case)),*];

        /// Run the cases of [`token_generation_suite!`] in order, each over a
        /// fresh fixture from `make`.
        pub fn run_generation<F: $crate::testing::TokenFixture>(mut make: impl FnMut() -> F) {
            $(
                eprintln!("token generation suite: {}", stringify!($case));
                $crate::testing::suite::$case(&mut make());
            )*
        }
    };
}

__token_generation_cases!(__token_generation_list,);
