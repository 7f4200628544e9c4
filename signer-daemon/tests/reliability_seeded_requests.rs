//! Reliability suite, group `hostile`: the daemon's fuzz harnesses
//! (`signer-daemon/fuzz/harness/`, cargo-fuzz targets `request_validation`
//! and `policy_file`) on seeded random inputs, so their checks run in the
//! normal test suite without a nightly toolchain. `SIGNER_FUZZ_ITERATIONS`
//! scales the runs. A crash input cargo-fuzz finds goes into `REGRESSIONS`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../fuzz/harness/policy_file.rs"]
mod policy_file;
#[path = "../fuzz/harness/request_validation.rs"]
mod request_validation;

use prost::Message;
use signer_proto::v1 as pb;

/// Inputs that once crashed a harness: (harness, input).
const REGRESSIONS: &[(&str, &[u8])] = &[];

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
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn iterations(default: usize) -> usize {
    std::env::var("SIGNER_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        match rng.below(4) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let n = rng.below(input.len() + 1);
                input.truncate(n);
            }
            2 => {
                let i = rng.below(input.len() + 1);
                input.insert(i, rng.byte());
            }
            _ if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.byte();
            }
            _ => {}
        }
    }
}

/// A protobuf request near the valid ones.
fn proto_request(rng: &mut Rng, env: &request_validation::Env) -> Vec<u8> {
    let key = match rng.below(4) {
        0 => pb::KeyRef {
            key: Some(pb::key_ref::Key::KeyId(rng.pick(&env.keys).key_id.clone())),
        },
        1 => pb::KeyRef {
            key: Some(pb::key_ref::Key::Slot(pb::SlotRef {
                token_serial: None,
                slot: rng.pick(&["9c", "9a", "f9", "9b", "82", "zz"]).to_string(),
            })),
        },
        2 => pb::KeyRef {
            key: Some(pb::key_ref::Key::KeyId("ab".repeat(rng.below(40)))),
        },
        _ => pb::KeyRef { key: None },
    };
    let len = *rng.pick(&[0usize, 20, 31, 32, 33, 48, 64, 65]);
    let digest: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
    let sign = pb::SignRequest {
        key: Some(key.clone()),
        input: Some(if rng.below(4) == 0 {
            pb::sign_request::Input::Message(digest)
        } else {
            pb::sign_request::Input::Digest(digest)
        }),
        hash: rng.below(5) as i32,
        format: rng.below(4) as i32,
        padding: pb::RsaPadding::Unspecified as i32,
    };
    let selector = rng.below(6) as u8 | if rng.below(8) == 0 { 0x70 } else { 0 };
    let mut out = vec![selector];
    match selector % 6 {
        0 | 1 => sign.encode(&mut out).unwrap(),
        2 => pb::GetPublicKeyRequest { key: Some(key) }
            .encode(&mut out)
            .unwrap(),
        3 => pb::AttestRequest { key: Some(key) }
            .encode(&mut out)
            .unwrap(),
        4 => pb::ListKeysRequest {
            token_serial: (rng.below(2) == 0).then_some(request_validation::SERIAL),
        }
        .encode(&mut out)
        .unwrap(),
        _ => pb::ListTokensRequest {}.encode(&mut out).unwrap(),
    }
    if rng.below(3) == 0 {
        let mut tail = out.split_off(1);
        mutate(rng, &mut tail);
        out.extend(tail);
    }
    out
}

#[test]
fn request_validation_on_seeded_random_requests() {
    let env = request_validation::Env::new();
    let mut tally = request_validation::Tally::default();
    for (name, input) in REGRESSIONS
        .iter()
        .filter(|(n, _)| *n == "request_validation")
    {
        println!("regression {name}");
        request_validation::run(&env, input, &mut tally);
    }
    let n = iterations(3_000);
    let seed = 0x00e9_5eed;
    let mut rng = Rng(seed);
    let apdus_before = env.card.instructions().len();
    for i in 0..n {
        let input = if i % 2 == 0 {
            let mut v = vec![0x80 | rng.byte()];
            v.extend((0..rng.below(120)).map(|_| rng.byte()));
            v
        } else {
            proto_request(&mut rng, &env)
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            request_validation::run(&env, &input, &mut tally)
        }));
        if r.is_err() {
            println!(
                "RELIABILITY\thostile\tfuzz_seeded_request_validation\tFAIL\titeration={i} input={}",
                hex::encode(&input)
            );
            panic!("request_validation failed on {}", hex::encode(&input));
        }
    }
    let apdus = env.card.instructions().len() - apdus_before;
    println!(
        "RELIABILITY\thostile\tfuzz_seeded_request_validation\tPASS\truns={n} refused_zero_apdu={} signed_verified={} other={} apdus={apdus} seed={seed:#x}",
        tally.refused, tally.signed, tally.other
    );
    assert!(
        tally.signed > 0,
        "no request was valid: the oracle was never exercised"
    );
    assert!(tally.refused > 0);
}

/// A random policy file near the documented syntax.
fn policy_text(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.below(3) == 0 {
        s.push_str(rng.pick::<&str>(&[
            "queue_capacity = 16\n",
            "max_request_bytes = 65536\n",
            "trust_emulated_root = true\n",
            "card_poll_secs = 0\n",
            "tokens = [\"yubikey\"]\n",
        ]));
    }
    for r in 0..rng.below(4) {
        s.push_str("[[rule]]\n");
        if rng.below(2) == 0 {
            s.push_str(&format!("name = \"rule-{r}\"\n"));
        }
        let principals = [
            "\"*\"",
            "0",
            "1001",
            "65534",
            "\"root\"",
            "\"nobody\"",
            "\"no-such-user-x\"",
            "4294967295",
            "-1",
            "\"\"",
        ];
        let list = |rng: &mut Rng| {
            (0..rng.below(3))
                .map(|_| rng.pick(&principals).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if rng.below(4) != 0 {
            s.push_str(&format!("users = [{}]\n", list(rng)));
        }
        if rng.below(3) == 0 {
            s.push_str(&format!("groups = [{}]\n", list(rng)));
        }
        let ops = [
            "\"list\"",
            "\"sign\"",
            "\"attest\"",
            "\"*\"",
            "\"delete\"",
            "\" sign \"",
        ];
        s.push_str(&format!(
            "operations = [{}]\n",
            (0..rng.below(3))
                .map(|_| *rng.pick(&ops))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let keys = [
            "\"*\"",
            "\"9c\"",
            "\"12345678:9a\"",
            "\"f9\"",
            "\"9b\"",
            "\"3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c\"",
            "\"3f0c\"",
            "\"x:9c\"",
            "\"12345678:\"",
        ];
        s.push_str(&format!(
            "keys = [{}]\n",
            (0..rng.below(3))
                .map(|_| *rng.pick(&keys))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if rng.below(3) == 0 {
            s.push_str(rng.pick::<&str>(&[
                "effect = \"allow\"\n",
                "effect = \"deny\"\n",
                "effect = \"maybe\"\n",
            ]));
        }
    }
    s
}

#[test]
fn policy_file_parser_on_seeded_random_files() {
    for (name, input) in REGRESSIONS.iter().filter(|(n, _)| *n == "policy_file") {
        println!("regression {name}");
        policy_file::run(input);
    }
    let n = iterations(3_000);
    let seed = 0x0090_11c7;
    let mut rng = Rng(seed);
    let mut loaded = 0usize;
    for i in 0..n {
        let mut input = policy_text(&mut rng).into_bytes();
        if i % 3 == 0 {
            mutate(&mut rng, &mut input);
        }
        match std::panic::catch_unwind(|| policy_file::run(&input)) {
            Ok(ok) => loaded += usize::from(ok),
            Err(_) => {
                println!(
                    "RELIABILITY\thostile\tfuzz_seeded_policy_file\tFAIL\titeration={i} input={:?}",
                    String::from_utf8_lossy(&input)
                );
                panic!(
                    "policy_file failed on {:?}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }
    println!(
        "RELIABILITY\thostile\tfuzz_seeded_policy_file\tPASS\truns={n} loaded={loaded} seed={seed:#x}"
    );
    assert!(
        loaded > 0,
        "no generated policy loaded: the checks never ran"
    );
}
