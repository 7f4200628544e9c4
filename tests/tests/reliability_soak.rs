//! Reliability suite, load part (issue 12): signatures through the daemon
//! binary on the emulated token from 64 concurrent clients (one connection
//! each, through `signer-client`), with nothing lost:
//!
//! - zero errors;
//! - zero lost or mismatched responses: each client checks that every answer
//!   is for its own digest and verifies it (RustCrypto, against the key the
//!   library made, not the daemon's listing);
//! - audit lines = signatures: exactly one `ok` Sign line per digest sent;
//! - memory: the daemon's RSS at start (after the warm-up), middle and end.
//!
//! `load_soak_ci` (10,240 signatures) runs in CI. `load_soak_100k` (100,032
//! signatures; `SIGNER_SOAK_SIGNATURES` overrides the count) is ignored by
//! default: `tests/scripts/reliability.sh --long` runs it.
//!
//! Each prints `RELIABILITY<TAB>load<TAB>case<TAB>PASS|FAIL<TAB>figures`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use daemon_support::{Daemon, DaemonSetup, verify};
use sha2::Digest;
use signer_client::Client;
use signer_proto::v1 as pb;

const CLIENTS: usize = 64;

/// The daemon's resident set, MiB (`VmRSS` of /proc/PID/status).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib / 1024.0
}

#[derive(Default)]
struct ClientResult {
    digests: Vec<Vec<u8>>,
    errors: Vec<String>,
    mismatched: usize,
}

async fn soak(case: &'static str, per_client: usize) {
    let mut d = Daemon::start(DaemonSetup::default());
    let pid = d.pid();
    let key = Arc::new(d.keys[0].clone());
    let total = CLIENTS * per_client;
    let done = Arc::new(AtomicUsize::new(0));
    // Warm-up: every connection open and one signature each, so "start" is
    // the daemon serving 64 clients, not the daemon idle.
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(
            Client::connect(&d.socket)
                .await
                .unwrap()
                .with_timeout(Duration::from_secs(60)),
        );
    }
    let key_ref = pb::KeyRef {
        key: Some(pb::key_ref::Key::KeyId(key.key_id.clone())),
    };
    for c in &mut clients {
        let digest = sha2::Sha256::digest(b"warm-up").to_vec();
        c.sign_unary(
            key_ref.clone(),
            pb::HashAlgorithm::Sha256,
            digest,
            pb::SignatureFormat::Der,
        )
        .await
        .unwrap();
    }
    let rss_start = rss_mib(pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, mut c) in clients.into_iter().enumerate() {
        let (key, key_ref, done) = (key.clone(), key_ref.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut r = ClientResult::default();
            for i in 0..per_client {
                let digest =
                    sha2::Sha256::digest(format!("{case} client {n} request {i}")).to_vec();
                match c
                    .sign_unary(
                        key_ref.clone(),
                        pb::HashAlgorithm::Sha256,
                        digest.clone(),
                        pb::SignatureFormat::Der,
                    )
                    .await
                {
                    Ok(resp) => {
                        // signer-client already refused an answer for another
                        // digest; check the key and the signature ourselves.
                        if resp.digest != digest
                            || resp.key_id != key.key_id
                            || !verify(&key, &digest, &resp.signature)
                        {
                            r.mismatched += 1;
                        }
                        r.digests.push(digest);
                    }
                    Err(e) => r.errors.push(format!("client {n} request {i}: {e}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            r
        }));
    }
    // The middle: half the signatures made.
    let mut rss_middle = None;
    while rss_middle.is_none() {
        if done.load(Ordering::Relaxed) >= total / 2 {
            rss_middle = Some(rss_mib(pid));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    let rss_end = rss_mib(pid);
    let rss_middle = rss_middle.unwrap();
    assert!(d.terminate().success(), "the daemon did not stop cleanly");

    let mut failures = Vec::new();
    let errors: Vec<&String> = results.iter().flat_map(|r| &r.errors).collect();
    let mismatched: usize = results.iter().map(|r| r.mismatched).sum();
    let received: Vec<&Vec<u8>> = results.iter().flat_map(|r| &r.digests).collect();
    if !errors.is_empty() {
        failures.push(format!("{} error(s), first: {}", errors.len(), errors[0]));
    }
    if mismatched > 0 {
        failures.push(format!(
            "{mismatched} mismatched or unverifiable response(s)"
        ));
    }
    let lost = total - received.len();
    if lost > 0 {
        failures.push(format!("{lost} request(s) without a signature"));
    }
    // The audit log: one ok Sign line per digest, for these digests only
    // (the 64 warm-up signatures are the same digest, counted apart).
    let warm = hex::encode(sha2::Sha256::digest(b"warm-up"));
    let lines = d.audit_lines();
    let mut audited = HashSet::new();
    let (mut ok_lines, mut duplicated, mut warm_lines) = (0, 0, 0);
    for l in lines
        .iter()
        .filter(|l| l["rpc"] == "Sign" && l["outcome"] == "ok")
    {
        let digest = l["digest"].as_str().unwrap_or_default().to_string();
        if digest == warm {
            warm_lines += 1;
            continue;
        }
        ok_lines += 1;
        if !audited.insert(digest) {
            duplicated += 1;
        }
    }
    let unaudited = received
        .iter()
        .filter(|d| !audited.contains(&hex::encode(d)))
        .count();
    if ok_lines != received.len() || unaudited > 0 || duplicated > 0 || warm_lines != CLIENTS {
        failures.push(format!(
            "audit: {ok_lines} ok lines for {} signatures, {unaudited} unaudited, {duplicated} duplicated, \
             {warm_lines} warm-up lines for {CLIENTS}",
            received.len()
        ));
    }
    // Flat memory: the second half may not grow the daemon by more than
    // 16 MiB (allocator arenas settle in the first half).
    if rss_end > rss_middle + 16.0 {
        failures.push(format!(
            "RSS grew from {rss_middle:.1} MiB (middle) to {rss_end:.1} MiB (end)"
        ));
    }
    println!(
        "RELIABILITY\tload\t{case}\t{}\tsignatures={} clients={CLIENTS} errors={} mismatched={mismatched} \
         lost={} audit_ok_lines={ok_lines} duplicated={duplicated} rss_start_mib={rss_start:.1} \
         rss_middle_mib={rss_middle:.1} rss_end_mib={rss_end:.1} seconds={:.1} sig_per_s={:.0}",
        if failures.is_empty() { "PASS" } else { "FAIL" },
        received.len(),
        errors.len(),
        lost + unaudited,
        elapsed.as_secs_f64(),
        received.len() as f64 / elapsed.as_secs_f64()
    );
    assert!(failures.is_empty(), "{case}: {}", failures.join("; "));
}

/// CI-sized: 64 clients x 160 signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_soak_ci() {
    soak("soak_ci_10k", 160).await;
}

/// The soak: at least 100,000 signatures (64 x 1,563 = 100,032), or
/// `SIGNER_SOAK_SIGNATURES`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long (minutes): tests/scripts/reliability.sh --long runs it"]
async fn load_soak_100k() {
    let total: usize = std::env::var("SIGNER_SOAK_SIGNATURES")
        .ok()
        .map(|v| v.parse().expect("SIGNER_SOAK_SIGNATURES: a number"))
        .unwrap_or(100_000);
    soak("soak_100k", total.div_ceil(CLIENTS)).await;
}
