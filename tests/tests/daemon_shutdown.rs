//! SIGTERM during a burst of signatures: the daemon stops accepting, lets the
//! requests in flight finish, loses no completed signature (every signature
//! the audit log records as made reached its caller, and verifies), and
//! exits 0. SIGHUP, meanwhile, reopens the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use daemon_support::{Daemon, DaemonSetup, by_slot, sign_req, verify};
use sha2::Digest;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_loses_no_completed_signature_and_exits_0() {
    let mut d = Daemon::start(DaemonSetup::default());
    let key = Arc::new(d.keys[0].clone());
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..16 {
        let mut c = d.client().await;
        let key = key.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let mut received = Vec::new();
            let mut refused = Vec::new();
            for i in 0.. {
                let digest = sha2::Sha256::digest(format!("{client}/{i}")).to_vec();
                started.fetch_add(1, Ordering::SeqCst);
                match c.sign(sign_req(by_slot("9c"), digest.clone())).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        assert_eq!(r.digest, digest);
                        assert!(verify(&key, &digest, &r.signature), "{client}/{i}");
                        received.push(hex::encode(&digest));
                    }
                    Err(e) => {
                        refused.push((e.code(), e.message().to_string()));
                        break;
                    }
                }
            }
            (received, refused)
        }));
    }
    // Let the burst get going, rotate the audit log mid-burst, then stop.
    while started.load(Ordering::SeqCst) < 500 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rotated = d.dir.path().join("audit.jsonl.1");
    std::fs::rename(&d.audit, &rotated).unwrap();
    d.signal(rustix::process::Signal::HUP);
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.signal(rustix::process::Signal::TERM);

    let mut received = Vec::new();
    for t in tasks {
        let (r, refused) = t.await.unwrap();
        received.extend(r);
        // After SIGTERM, new calls are refused as unavailable (connection
        // closing), never answered with a wrong or partial signature.
        for (code, message) in refused {
            // tonic reports a connection the daemon closed while a request
            // was being sent as INTERNAL "h2 protocol error" (client-side
            // transport, not a status the daemon sent); seen about 1 run in
            // 8 under load. Any other INTERNAL would be a daemon answer.
            let transport = code == Code::Internal && message.starts_with("h2 protocol error");
            assert!(
                transport || matches!(code, Code::Unavailable | Code::Cancelled | Code::Unknown),
                "unexpected {code:?}: {message}"
            );
        }
    }
    let status = d.wait(Duration::from_secs(60));
    assert!(status.success(), "exit status {status}: {}", d.log_text());
    assert!(received.len() >= 500, "only {} signatures", received.len());

    // Every signature the daemon recorded as made was received by its caller.
    let mut audited: Vec<String> = [rotated.as_path(), d.audit.as_path()]
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .map(|l| serde_json::from_str::<serde_json::Value>(&l).unwrap())
        .filter(|l| l["rpc"] == "Sign" && l["outcome"] == "ok")
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    audited.sort();
    received.sort();
    assert_eq!(
        audited, received,
        "audit log and received signatures differ"
    );
    // Both files got lines: SIGHUP reopened the log mid-burst.
    assert!(std::fs::read_to_string(&d.audit).unwrap().lines().count() > 0);
    assert!(d.log_text().contains("SIGTERM received"));
    assert!(!d.socket.exists(), "the daemon removes its socket on exit");
}
