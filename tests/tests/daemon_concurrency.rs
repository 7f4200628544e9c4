//! 64 concurrent clients × 200 signatures each through the daemon binary:
//! every response verifies (RustCrypto, independently of the daemon's own
//! check) over the digest its own request sent, with the key it named.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_support;

use daemon_support::{Daemon, DaemonSetup, by_id, sign_req, verify};
use sha2::Digest;

const CLIENTS: usize = 64;
const PER_CLIENT: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_two_hundred_signatures_each_all_verify_and_match() {
    let mut d = Daemon::start(DaemonSetup::default());
    let key = std::sync::Arc::new(d.keys[0].clone());
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        // One connection per client, like separate processes.
        let mut c = d.client().await;
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut verified = 0usize;
            for i in 0..PER_CLIENT {
                let digest = sha2::Sha256::digest(format!("client {client} request {i}")).to_vec();
                let r = c
                    .sign(sign_req(by_id(&key.key_id), digest.clone()))
                    .await
                    .unwrap_or_else(|e| panic!("client {client} request {i}: {e}"))
                    .into_inner();
                assert_eq!(r.digest, digest, "a response for another request");
                assert_eq!(r.key_id, key.key_id);
                assert!(
                    verify(&key, &digest, &r.signature),
                    "client {client} request {i}: signature does not verify over its own digest"
                );
                verified += 1;
            }
            verified
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, CLIENTS * PER_CLIENT);
    assert!(d.terminate().success());
    let ok_signs = d
        .audit_lines()
        .iter()
        .filter(|l| l["rpc"] == "Sign" && l["outcome"] == "ok")
        .count();
    assert_eq!(
        ok_signs,
        CLIENTS * PER_CLIENT,
        "one audit line per signature"
    );
}
