//! Reliability suite, group `hostile`: the fuzz harnesses of
//! `signer-lib/fuzz/harness/` (cargo-fuzz targets `tlv` and `attestation`)
//! run on seeded random inputs, so their checks are part of the normal test
//! suite without a nightly toolchain. `SIGNER_FUZZ_ITERATIONS` scales the
//! runs. A crash input found by cargo-fuzz is added to `REGRESSIONS` below.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../fuzz/harness/attestation.rs"]
mod attestation;
#[path = "../fuzz/harness/tlv.rs"]
mod tlv_harness;

use signer_lib::piv::tlv;

/// xorshift64*: a reproducible stream without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

fn iterations(default: usize) -> usize {
    std::env::var("SIGNER_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Inputs that once crashed a harness (none found so far).
const REGRESSIONS: &[(&str, &[u8])] = &[];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        match rng.below(5) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.byte();
            }
            2 => {
                let n = rng.below(input.len() + 1);
                input.truncate(n);
            }
            3 => {
                let i = rng.below(input.len() + 1);
                input.insert(i, rng.byte());
            }
            _ => {
                let i = rng.below(input.len() + 1);
                let n = rng.below(4);
                input.splice(i..i, std::iter::repeat_n(0xff, n));
            }
        }
    }
}

/// A random TLV tree (as card responses nest them).
fn tree(rng: &mut Rng, depth: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let tag = match rng.below(4) {
            0 => u32::from(rng.byte()) & !0x1f | 0x01,
            1 => 0x7c,
            2 => 0x7f49,
            _ => 0x5f_c1_05,
        };
        let value = if depth > 0 && rng.below(2) == 0 {
            tree(rng, depth - 1)
        } else {
            let n = [0, 1, 2, 65, 127, 128, 255, 256, 300][rng.below(9)];
            (0..n).map(|_| rng.byte()).collect()
        };
        tlv::write(&mut out, tag, &value).unwrap();
    }
    out
}

#[test]
fn tlv_parser_on_seeded_random_input() {
    for (name, input) in REGRESSIONS.iter().filter(|(n, _)| n.starts_with("tlv")) {
        println!("regression {name}");
        tlv_harness::run(input);
    }
    let n = iterations(50_000);
    let seed = 0x71f_5eed;
    let mut rng = Rng(seed);
    for i in 0..n {
        let mut input = if i % 2 == 0 {
            (0..rng.below(64)).map(|_| rng.byte()).collect()
        } else {
            tree(&mut rng, 3)
        };
        if i % 4 == 1 {
            mutate(&mut rng, &mut input);
        }
        let r = std::panic::catch_unwind(|| tlv_harness::run(&input));
        if r.is_err() {
            println!(
                "RELIABILITY\thostile\tfuzz_seeded_tlv\tFAIL\titeration={i} input={}",
                hex::encode(&input)
            );
            panic!("tlv harness failed on {}", hex::encode(&input));
        }
    }
    println!("RELIABILITY\thostile\tfuzz_seeded_tlv\tPASS\truns={n} seed={seed:#x}");
}

#[test]
fn attestation_verification_on_seeded_mutations() {
    let pairs = attestation::genuine();
    // The genuine pairs are trusted: the oracle can tell.
    for (slot, device) in &pairs {
        let v = signer_lib::attestation::verify_attestation(
            &signer_lib::Attestation {
                slot_certificate: slot.clone(),
                device_certificate: device.clone(),
            },
            &signer_lib::attestation::TrustAnchors::yubico().unwrap(),
            std::time::SystemTime::now(),
            &Default::default(),
        );
        assert!(v.trusted, "{:?}", v.problems);
        attestation::run(&attestation::encode(slot, device));
    }
    let n = iterations(1_500);
    let seed = 0x00a7_7e57;
    let mut rng = Rng(seed);
    for i in 0..n {
        let (slot, device) = &pairs[i % pairs.len()];
        let (mut slot, mut device) = (slot.clone(), device.clone());
        match rng.below(3) {
            0 => mutate(&mut rng, &mut slot),
            1 => mutate(&mut rng, &mut device),
            _ => {
                // Swap in random bytes for one of them.
                let junk: Vec<u8> = (0..rng.below(600)).map(|_| rng.byte()).collect();
                if rng.below(2) == 0 {
                    slot = junk
                } else {
                    device = junk
                }
            }
        }
        let input = attestation::encode(&slot, &device);
        if std::panic::catch_unwind(|| attestation::run(&input)).is_err() {
            println!(
                "RELIABILITY\thostile\tfuzz_seeded_attestation\tFAIL\titeration={i} input={}",
                hex::encode(&input)
            );
            panic!("attestation harness failed on {}", hex::encode(&input));
        }
    }
    println!(
        "RELIABILITY\thostile\tfuzz_seeded_attestation\tPASS\truns={n} seed={seed:#x} trusted_only_genuine=1"
    );
}
