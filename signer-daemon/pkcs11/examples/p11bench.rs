//! Signatures per second through any PKCS#11 module (ours, SoftHSM2, ...):
//! N threads, each with its own session, each signing distinct SHA-256
//! digests with `CKM_ECDSA` and the private key with the given `CKA_ID`.
//! Every signature is verified (with RustCrypto, against the key's
//! `CKA_EC_POINT`) after the timed part.
//!
//! ```sh
//! SIGNER_SOCKET=/run/signer/signer.sock SIGNER_PKCS11_TOUCH_PROMPT=0 \
//!   cargo run --release -p signer-pkcs11 --example p11bench -- \
//!   target/release/libsigner_pkcs11.so [--id 02] [--threads 8] [--signatures 100] [--pin PIN] [--token LABEL]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use der::Decode;
use sha2::Digest;
use signature::hazmat::PrehashVerifier;

struct Args {
    module: String,
    id: Vec<u8>,
    threads: usize,
    signatures: usize,
    pin: Option<String>,
    token: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        module: String::new(),
        id: vec![2],
        threads: 8,
        signatures: 100,
        pin: None,
        token: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{x} needs a value"));
        match x.as_str() {
            "--id" => a.id = hex::decode(val()).expect("--id HEX"),
            "--threads" => a.threads = val().parse().expect("--threads N"),
            "--signatures" => a.signatures = val().parse().expect("--signatures N"),
            "--pin" => a.pin = Some(val()),
            "--token" => a.token = Some(val()),
            m if a.module.is_empty() && !m.starts_with("--") => a.module = m.to_string(),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        !a.module.is_empty(),
        "usage: p11bench MODULE.so [--id HEX] [--threads N] [--signatures N per thread] [--pin PIN] [--token LABEL]"
    );
    a
}

fn verify(point: &[u8], digest: &[u8], sig: &[u8]) -> bool {
    if point.len() == 65 {
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).unwrap();
        p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok())
    } else {
        let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).unwrap();
        p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok())
    }
}

fn main() {
    let a = args();
    let p = Pkcs11::new(&a.module).expect("load the module");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    let slot = p
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| {
            a.token
                .as_ref()
                .is_none_or(|l| p.get_token_info(*s).is_ok_and(|i| i.label() == l))
        })
        .expect("no token (or none with that --token label)");
    let pin = a.pin.clone();
    let id = a.id.clone();
    let login = move |s: &cryptoki::session::Session| {
        if let Some(pin) = &pin {
            let r = s.login(UserType::User, Some(&AuthPin::new(pin.clone().into())));
            if let Err(e) = r {
                assert!(e.to_string().contains("AlreadyLoggedIn"), "C_Login: {e}");
            }
        }
    };
    // The public point, from the public key object.
    let s = p.open_ro_session(slot).unwrap();
    login(&s);
    let pubkey = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(id.clone()),
        ])
        .unwrap();
    let attrs = s
        .get_attributes(pubkey[0], &[AttributeType::EcPoint])
        .unwrap();
    let Some(Attribute::EcPoint(point)) = attrs.into_iter().next() else {
        panic!("no CKA_EC_POINT")
    };
    let point = der::asn1::OctetString::from_der(&point)
        .map(|o| o.as_bytes().to_vec())
        .unwrap_or(point);

    let start = Instant::now();
    let threads: Vec<_> = (0..a.threads)
        .map(|t| {
            let p = p.clone();
            let id = id.clone();
            let login = login.clone();
            let n = a.signatures;
            std::thread::spawn(move || {
                let s = p.open_ro_session(slot).unwrap();
                login(&s);
                let key = s
                    .find_objects(&[
                        Attribute::Class(ObjectClass::PRIVATE_KEY),
                        Attribute::Id(id),
                    ])
                    .unwrap()[0];
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    let digest = sha2::Sha256::digest(format!("{t}/{i}")).to_vec();
                    let t0 = Instant::now();
                    let sig = s.sign(&Mechanism::Ecdsa, key, &digest).expect("C_Sign");
                    out.push((t0.elapsed(), digest, sig));
                }
                out
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let elapsed = start.elapsed();
    let bad = results
        .iter()
        .filter(|(_, d, s)| !verify(&point, d, s))
        .count();
    assert_eq!(bad, 0, "{bad} signatures do not verify");
    let mut lat: Vec<Duration> = results.iter().map(|r| r.0).collect();
    lat.sort();
    let pct = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e3;
    println!(
        "{} signatures ({} threads) in {:.3} s: {:.1} signatures/s; latency p50 {:.2} ms, p99 {:.2} ms; all verified",
        results.len(),
        a.threads,
        elapsed.as_secs_f64(),
        results.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
}
