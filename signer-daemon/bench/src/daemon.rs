//! signer-daemon as users run it: the release binary, `serve` on a Unix
//! socket with one or more emulated tokens (P-256 key in 9c, PIN policy
//! never, touch never) and the audit log where the caller says (durable by
//! default). Clients are `signer-client` connections, one per client,
//! calling the unary `Sign`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use signer_client::Client;
use signer_client::signer_proto::v1 as pb;

use crate::load::{Failure, Result, fail};

/// A running daemon.
pub struct Daemon {
    child: Child,
    /// Its socket.
    pub socket: PathBuf,
    /// The keys it serves (one per token), as it lists them.
    pub keys: Vec<pb::Key>,
    /// Spawn to the first answered request.
    pub cold_start: Duration,
    /// Its audit log.
    pub audit_log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM, so that the daemon drains and the audit log is complete.
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(bin: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run {}", bin.display()), e))?;
    if !out.status.success() {
        return Err(Failure(format!(
            "signer-daemon {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// Make an emulated token with a P-256 key in 9c (PIN never, touch never).
pub fn make_token(bin: &Path, dir: &Path, name: &str, serial: u32) -> Result<PathBuf> {
    let state = dir.join(format!("{name}.state"));
    let s = state.to_string_lossy().to_string();
    run(
        bin,
        &[
            "emulated",
            "init",
            "--state",
            &s,
            "--serial",
            &serial.to_string(),
        ],
    )?;
    let selector = format!("emulated:{s}");
    run(
        bin,
        &[
            "keygen",
            "--token",
            &selector,
            "--slot",
            "9c",
            "--alg",
            "p256",
            "--pin-policy",
            "never",
            "--touch-policy",
            "never",
        ],
    )?;
    Ok(state)
}

impl Daemon {
    /// Start `signer-daemon serve` for `tokens`, auditing to `audit_log`, and
    /// wait for its first answer (ListKeys).
    pub async fn start(
        bin: &Path,
        dir: &Path,
        name: &str,
        tokens: &[PathBuf],
        audit_log: &Path,
        extra: &[&str],
    ) -> Result<Daemon> {
        let socket = dir.join(format!("{name}.sock"));
        let log = std::fs::File::create(dir.join(format!("{name}.log")))
            .map_err(|e| fail("daemon log", e))?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve");
        for t in tokens {
            cmd.arg("--token").arg(format!("emulated:{}", t.display()));
        }
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--audit-log")
            .arg(audit_log)
            .args(["--log-level", "warn"])
            .args(extra)
            .env_remove("SIGNER_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| fail(format!("cannot start {}", bin.display()), e))?;
        let mut daemon = Daemon {
            child,
            socket: socket.clone(),
            keys: Vec::new(),
            cold_start: Duration::ZERO,
            audit_log: audit_log.to_path_buf(),
        };
        let end = spawned + Duration::from_secs(20);
        let keys = loop {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(Failure(format!(
                    "signer-daemon serve exited ({status}); see {}",
                    dir.join(format!("{name}.log")).display()
                )));
            }
            let attempt = async {
                let mut c = Client::connect(&socket).await?;
                c.list_keys(None).await
            };
            match attempt.await {
                Ok(keys) if keys.len() == tokens.len() => break keys,
                Ok(_) | Err(_) if Instant::now() < end => {
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                Ok(keys) => {
                    return Err(Failure(format!(
                        "the daemon lists {} keys, expected {}",
                        keys.len(),
                        tokens.len()
                    )));
                }
                Err(e) => return Err(fail("the daemon did not answer within 20 s", e)),
            }
        };
        daemon.cold_start = spawned.elapsed();
        daemon.keys = keys;
        Ok(daemon)
    }

    /// The daemon's resident set size, KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.child.id())
    }

    /// One client connection.
    pub async fn connect(&self) -> Result<Client> {
        Client::connect(&self.socket)
            .await
            .map(|c| c.with_timeout(Duration::from_secs(30)))
            .map_err(|e| fail("connecting to the daemon", e))
    }
}

/// A key reference by id.
pub fn key_ref(key: &pb::Key) -> pb::KeyRef {
    pb::KeyRef {
        key: Some(pb::key_ref::Key::KeyId(key.key_id.clone())),
    }
}

/// `VmRSS` of a process, KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| fail("reading /proc/PID/status", e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Failure("no VmRSS in /proc/PID/status".into()))
}
