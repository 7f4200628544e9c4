//! `hardware-bench [SIGNATURES]`: signatures per second, side by side in one
//! run, for
//!
//! 1. the emulated token called in-process (`EmulatedToken`, no APDUs),
//! 2. the hardware backend (`HardwareToken`, our PIV client) over the
//!    in-process loopback transport to the emulated card's APDU front end,
//! 3. the hardware backend through a real (private) pcscd and the vpcd
//!    bridge to the same emulated card, as a YubiKey would be reached.
//!
//! P-256, PIN policy never, touch never, SHA-256 digests; every signature is
//! verified afterwards (outside the timed loop). Needs root (the private
//! pcscd runs in its own mount namespace). Run through
//! `tests/scripts/bench-hardware.sh` (release build).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::time::{Duration, Instant};

use signer_e2e::hardware::{EmulatedCardInReader, open_hardware, take_log};
use signer_e2e::pcsc_sandbox::{Sandbox, SandboxConfig, VirtualReader};
use signer_lib::emulator::{EmulatedToken, InitOptions};
use signer_lib::piv_client::TouchAssumptions;
use signer_lib::testing::verify::assert_signature;
use signer_lib::testing::{LoopbackFixture, TokenFixture, TouchSetup};
use signer_lib::{
    Algorithm, HashAlgorithm, KeyInfo, ManagementKey, ManagementKeyAlgorithm, PinPolicy, SlotId,
    Token, TouchPolicy,
};

const INSIDE: &str = "--inside-sandbox";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(INSIDE) {
        let n: usize = args[2].parse().unwrap();
        let reader = VirtualReader {
            name: args[3].clone(),
            port: args[4].parse().unwrap(),
        };
        inside(n, &reader);
        return;
    }
    let n: usize = match args.get(1) {
        Some(a) => a.parse().unwrap_or_else(|_| {
            eprintln!("usage: hardware-bench [SIGNATURES]");
            std::process::exit(2)
        }),
        None => 500,
    };
    // pcsc-lite reads PCSCLITE_CSOCK_NAME once per process: run the
    // measurement in a child whose environment points at the sandbox.
    let sandbox = Sandbox::start_for_subprocesses(SandboxConfig::with_readers(2))
        .unwrap_or_else(|e| panic!("cannot start the private pcscd: {e}"));
    let reader = sandbox.reader(0).clone();
    let status = sandbox
        .command(std::env::current_exe().unwrap())
        .args([
            INSIDE,
            &n.to_string(),
            &reader.name,
            &reader.port.to_string(),
        ])
        .status()
        .unwrap();
    drop(sandbox);
    std::process::exit(status.code().unwrap_or(1));
}

fn digests(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let m = format!("message {i}").into_bytes();
            (HashAlgorithm::Sha256.digest(&m), m)
        })
        .collect()
}

fn timed<T: Token>(token: &mut T, key: &KeyInfo, n: usize) -> (f64, Duration) {
    let work = digests(n);
    // Warm up (metadata cache, connection).
    token
        .sign_digest(key.slot, HashAlgorithm::Sha256, &work[0].0)
        .unwrap();
    let started = Instant::now();
    let sigs: Vec<Vec<u8>> = work
        .iter()
        .map(|(d, _)| {
            token
                .sign_digest(key.slot, HashAlgorithm::Sha256, d)
                .unwrap()
        })
        .collect();
    let elapsed = started.elapsed();
    for ((_, m), sig) in work.iter().zip(&sigs) {
        assert_signature(&key.public_key, HashAlgorithm::Sha256, m, sig);
    }
    (n as f64 / elapsed.as_secs_f64(), elapsed)
}

fn keygen<T: Token>(token: &mut T) -> KeyInfo {
    token
        .authenticate(&ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap())
        .unwrap();
    token
        .generate_key(
            SlotId::Signature,
            Algorithm::EccP256,
            PinPolicy::Never,
            TouchPolicy::Never,
        )
        .unwrap()
}

fn inside(n: usize, reader: &VirtualReader) {
    let dir = tempfile::tempdir().unwrap();
    println!(
        "{n} P-256 signatures each (PIN never, touch never), {} cores, every signature verified",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );

    let mut emulated =
        EmulatedToken::init(dir.path().join("direct.state"), &InitOptions::default()).unwrap();
    let key = keygen(&mut emulated);
    let (direct, t1) = timed(&mut emulated, &key, n);
    drop(emulated);

    let mut fixture = LoopbackFixture::new();
    let mut looped = fixture.fresh(TouchSetup::approve()).unwrap();
    let key = keygen(&mut looped);
    let card = fixture.card(&looped);
    card.clear_log();
    let (loopback, t2) = timed(&mut looped, &key, n);
    let loop_apdus = card.instructions().len() as f64 / (n + 1) as f64;
    drop(looped);

    let inserted = EmulatedCardInReader::insert_new(
        reader,
        dir.path(),
        &TouchSetup::approve(),
        &InitOptions::default(),
    )
    .unwrap();
    let mut hardware = open_hardware(TouchAssumptions::default()).unwrap();
    let key = keygen(&mut hardware);
    take_log(&inserted.log);
    let (pcsc, t3) = timed(&mut hardware, &key, n);
    let pcsc_apdus = take_log(&inserted.log).len() as f64 / (n + 1) as f64;
    drop(hardware);

    println!(
        "emulated token, in-process:            {direct:>9.1} sig/s  ({:.2?} total)",
        t1
    );
    println!(
        "HardwareToken, loopback APDUs:         {loopback:>9.1} sig/s  ({:.2?} total, {loop_apdus:.2} APDUs/sig)",
        t2
    );
    println!(
        "HardwareToken, pcscd + vpcd (PC/SC):   {pcsc:>9.1} sig/s  ({:.2?} total, {pcsc_apdus:.2} APDUs/sig)",
        t3
    );
    println!(
        "ratios: in-process / loopback = {:.2}x, in-process / pcscd = {:.2}x, loopback / pcscd = {:.2}x",
        direct / loopback,
        direct / pcsc,
        loopback / pcsc
    );
}
