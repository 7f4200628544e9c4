//! `bench`: signatures per second through the daemon, each verified: ECDSA
//! over a SHA-256 digest (DER), RSA with `--padding` (default PSS) over a
//! SHA-256 digest, Ed25519 over a short message.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use sha2::Digest;
use signer_proto::v1 as pb;

use super::{Failure, KeyArgs, connect, exit};

/// `bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Signatures per client.
    #[arg(long, default_value_t = 100)]
    pub requests: usize,
    /// RSA keys: the padding.
    #[arg(long, value_enum, default_value = "pss")]
    pub padding: super::sign::PaddingArg,
}

/// `bench`
pub async fn run(path: &Path, timeout: Duration, a: BenchArgs) -> Result<i32, Failure> {
    let mut client = connect(path, timeout).await?;
    let key = client.public_key(a.key.spec().key_ref()).await?;
    let algorithm = signer_client::algorithm_of(&key);
    let ecdsa = matches!(
        algorithm,
        Some(signer_lib::Algorithm::EccP256 | signer_lib::Algorithm::EccP384)
    );
    if !algorithm.is_some_and(|a| a.can_sign()) {
        return Err(Failure::usage(
            "bench needs a signing key (p256, p384, RSA or ed25519)",
        ));
    }
    let padding = match a.padding {
        super::sign::PaddingArg::Pss => pb::RsaPadding::Pss,
        super::sign::PaddingArg::Pkcs1v15 => pb::RsaPadding::Pkcs1v15,
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_no in 0..a.clients {
        let mut c = connect(path, timeout).await?;
        let key = key.clone();
        let requests = a.requests;
        tasks.push(tokio::spawn(async move {
            let key_ref = pb::KeyRef {
                key: Some(pb::key_ref::Key::KeyId(key.key_id.clone())),
            };
            let mut latencies = Vec::with_capacity(requests);
            let mut failures = 0usize;
            for i in 0..requests {
                let message = format!("bench {client_no} {i}");
                let digest = sha2::Sha256::digest(&message).to_vec();
                let t = Instant::now();
                let ok = if ecdsa {
                    // The path this benchmark always measured, unchanged.
                    let r = c
                        .sign_unary(
                            key_ref.clone(),
                            pb::HashAlgorithm::Sha256,
                            digest.clone(),
                            pb::SignatureFormat::Der,
                        )
                        .await;
                    latencies.push(t.elapsed());
                    r.is_ok_and(|r| {
                        signer_client::verify(
                            &key,
                            pb::HashAlgorithm::Sha256,
                            &digest,
                            &r.signature,
                        )
                        .is_ok()
                    })
                } else {
                    let signing = if algorithm == Some(signer_lib::Algorithm::Ed25519) {
                        signer_client::Signing::ed25519(message.into_bytes())
                    } else {
                        signer_client::Signing::rsa(
                            pb::HashAlgorithm::Sha256,
                            signer_client::Payload::Digest(digest),
                            padding,
                        )
                    };
                    let r = c.sign_unary_with(key_ref.clone(), &signing).await;
                    latencies.push(t.elapsed());
                    r.is_ok_and(|r| {
                        signer_client::verify_signature(&key, &signing, &r.signature).is_ok()
                    })
                };
                if !ok {
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for t in tasks {
        let (l, f) = t
            .await
            .map_err(|e| Failure::internal(format!("bench client: {e}")))?;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        latencies
            .get(i.min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let total = latencies.len();
    println!(
        "clients {} x requests {} = {total} signatures, failures {failures}, {:.2} s, {:.0} signatures/s, latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        a.clients,
        a.requests,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64().max(1e-9),
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    Ok(if failures == 0 {
        exit::OK
    } else {
        exit::INTERNAL
    })
}
