//! systemd socket activation: `systemd-socket-activate` (systemd's own tool)
//! binds the socket and execs the daemon with LISTEN_FDS=1 and LISTEN_PID set,
//! as systemd does for `signer-daemon.socket`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_support;

use std::process::Command;

use daemon_support::{Daemon, DaemonSetup, by_slot, sign_req, verify};
use sha2::Digest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_a_socket_passed_by_systemd() {
    let tool = Command::new("sh")
        .args(["-c", "command -v systemd-socket-activate"])
        .output()
        .unwrap();
    assert!(
        tool.status.success(),
        "systemd-socket-activate is missing (package systemd; tests/scripts/install-deps.sh)"
    );
    let mut d = Daemon::start(DaemonSetup {
        wrapper: Some(vec![
            "systemd-socket-activate".into(),
            "--listen={socket}".into(),
        ]),
        ..DaemonSetup::default()
    });
    // systemd-socket-activate only starts the daemon on the first connection.
    let mut c = d.client().await;
    let digest = sha2::Sha256::digest(b"activated").to_vec();
    let r = c
        .sign(sign_req(by_slot("9c"), digest.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(verify(&d.keys[0], &digest, &r.signature));
    assert!(
        d.log_text().contains("socket activation"),
        "{}",
        d.log_text()
    );
    // The tool execs the daemon (same pid): SIGTERM reaches it, exit 0.
    assert!(d.terminate().success(), "{}", d.log_text());
    // The socket belongs to systemd, not to the daemon: it is left alone.
    assert!(d.socket.exists());
}
