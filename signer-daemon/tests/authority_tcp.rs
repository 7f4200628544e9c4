//! On a TCP listener the HTTP/2 `:authority` keeps its meaning: the daemon's
//! server, fed a TCP listener (`server::Listener::Tcp`, which `signer-daemon
//! serve` never opens), refuses a request whose `:authority` is not a valid
//! URI authority with INVALID_ARGUMENT, without reaching any service, and
//! serves the rest. The same values are served on the Unix socket
//! (tests/tests/grpc_clients.rs). The raw HTTP/2 client is Python's h2 from
//! the venv of tests/scripts/install-deps.sh (tests/clients/python/raw_h2_authority.py).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Card;
use signer_daemon::attestation::AttestationTrust;
use signer_daemon::audit::AuditLog;
use signer_daemon::policy::Policy;
use signer_daemon::server::{AuthorityPolicy, Daemon, DaemonOptions, Listener};
use signer_daemon::worker::{TokenWorker, WorkerOptions};
use signer_lib::session::PinSource;
use signer_lib::{PinPolicy, SlotId, TouchPolicy};
use signer_proto::v1 as pb;

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("SIGNER_E2E_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/lib/signer-e2e-venv"));
    let python = venv.join("bin").join("python");
    assert!(
        python.exists(),
        "{} is missing (the venv with Python's h2): run tests/scripts/install-deps.sh",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_refuses_a_malformed_authority_and_serves_the_rest() {
    let python = venv_python();
    let dir = tempfile::tempdir().unwrap();
    let card = Card::new(77);
    card.add_key(SlotId::Signature, PinPolicy::Never, TouchPolicy::Never);
    let (worker, _) = TokenWorker::spawn(
        "test:77",
        card.opener(),
        WorkerOptions {
            queue_capacity: 16,
            poll_interval: None,
            pin_source: PinSource::None,
        },
    )
    .unwrap();
    let euid = rustix::process::geteuid().as_raw();
    let daemon = Daemon::new(
        vec![worker],
        Policy::only_daemon_uid(euid),
        AuditLog::open(dir.path().join("audit.jsonl")).unwrap(),
        AttestationTrust::default(),
        DaemonOptions::default(),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = Listener::from(tcp);
    assert_eq!(listener.authority_policy(), AuthorityPolicy::Strict);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(signer_daemon::server::run(listener, daemon, async {
        let _ = stopped.await;
    }));

    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/python/raw_h2_authority.py");
    let target = format!("tcp:127.0.0.1:{port}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(target)
            .args([
                "absent",
                "localhost",
                "long_valid_8k",
                "percent_encoded_path",
                "raw_path",
                "non_ascii_utf8",
                "control_bytes",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{v:#}");
    // A valid authority, or none: served as before.
    for case in ["absent", "localhost", "long_valid_8k"] {
        assert_eq!(v[case]["served"], true, "{case}: {}", v[case]);
        assert_eq!(v[case]["message"], "0801", "{case}: {}", v[case]);
    }
    // Not a URI authority: refused with INVALID_ARGUMENT (3) and a message
    // that says why; the connection serves the next request.
    for case in [
        "percent_encoded_path",
        "raw_path",
        "non_ascii_utf8",
        "control_bytes",
    ] {
        let o = &v[case];
        assert_eq!(o["http_status"], 200, "{case}: {o}");
        assert_eq!(o["grpc_status"], "3", "{case}: {o}");
        assert!(
            o["grpc_message"]
                .as_str()
                .unwrap()
                .contains("not a valid URI authority"),
            "{case}: {o}"
        );
        assert_eq!(o["second"]["served"], true, "{case}: {o}");
    }

    // No peer credentials over TCP: the signer service refuses every call.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = pb::signer_client::SignerClient::new(channel)
        .list_keys(pb::ListKeysRequest { token_serial: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
