//! Signatures per second for every scheme, side by side in one run: the
//! emulated token in process and `HardwareToken` (the PIV client) over the
//! in-process loopback transport to the emulated card, each signature
//! verified with `PublicKey::verify` as the daemon does before release.
//!
//! ```sh
//! cargo run --release -p signer-lib --example sign_schemes_bench -- [SIGNATURES]
//! ```

#![allow(clippy::unwrap_used)] // a benchmark: a panic is the report

use std::time::Instant;

use signer_lib::testing::{EmulatedFixture, LoopbackFixture, TokenFixture, TouchSetup};
use signer_lib::{
    Algorithm, HashAlgorithm, PinPolicy, SignInput, SignRequest, SignatureScheme, SlotId, Token,
    TouchPolicy,
};

fn run<T: Token>(label: &str, mut token: T, key_mgmt: &signer_lib::ManagementKey, n: usize) {
    token.authenticate(key_mgmt).unwrap();
    let cases = [
        (
            SlotId::Authentication,
            Algorithm::EccP256,
            SignatureScheme::Ecdsa,
        ),
        (
            SlotId::Signature,
            Algorithm::Rsa2048,
            SignatureScheme::RsaPkcs1v15,
        ),
        (
            SlotId::Signature,
            Algorithm::Rsa2048,
            SignatureScheme::RsaPss,
        ),
        (
            SlotId::KeyManagement,
            Algorithm::Ed25519,
            SignatureScheme::Ed25519,
        ),
    ];
    let mut made = std::collections::HashSet::new();
    for (slot, algorithm, scheme) in cases {
        if made.insert(slot) {
            token
                .generate_key(slot, algorithm, PinPolicy::Never, TouchPolicy::Never)
                .unwrap();
        }
        let key = token.key(slot).unwrap();
        let digest = HashAlgorithm::Sha256.digest(b"root.json");
        let message = vec![0x5au8; 1024];
        let input = if scheme.signs_message() {
            SignInput::Message(&message)
        } else {
            SignInput::Digest {
                hash: HashAlgorithm::Sha256,
                digest: &digest,
            }
        };
        let request = SignRequest {
            slot,
            scheme,
            input,
            pin: None,
        };
        token.sign(&request, &mut |_| {}).unwrap();
        let started = Instant::now();
        for _ in 0..n {
            let sig = token.sign(&request, &mut |_| {}).unwrap();
            key.public_key.verify(scheme, &input, &sig).unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{label:<28} {:<8} {:<13} {:>8.1} signatures/s ({n} in {secs:.2} s, verified)",
            algorithm.name(),
            scheme.name(),
            n as f64 / secs
        );
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(200);
    let mut emulated = EmulatedFixture::new();
    let key = emulated.factory_management_key();
    run(
        "emulated token (in process)",
        emulated.fresh(TouchSetup::approve()).unwrap(),
        &key,
        n,
    );
    let mut loopback = LoopbackFixture::new();
    let key = loopback.factory_management_key();
    run(
        "HardwareToken over loopback",
        loopback.fresh(TouchSetup::approve()).unwrap(),
        &key,
        n,
    );
}
