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
    make_token_with_touch(bin, dir, name, serial, "never")
}

/// The same with the key's touch policy `touch` (`never`, `always`).
pub fn make_token_with_touch(
    bin: &Path,
    dir: &Path,
    name: &str,
    serial: u32,
    touch: &str,
) -> Result<PathBuf> {
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
            touch,
        ],
    )?;
    Ok(state)
}

impl Daemon {
    /// Start `signer-daemon serve` for the token `selectors`, auditing to `audit_log`, and
    /// wait for its first answer (ListKeys).
    pub async fn start(
        bin: &Path,
        dir: &Path,
        name: &str,
        selectors: &[String],
        audit_log: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        let socket = dir.join(format!("{name}.sock"));
        let log = std::fs::File::create(dir.join(format!("{name}.log")))
            .map_err(|e| fail("daemon log", e))?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve");
        for t in selectors {
            cmd.arg("--token").arg(t);
        }
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--audit-log")
            .arg(audit_log)
            .args(["--log-level", "warn"])
            .args(extra)
            .env_remove("SIGNER_SOCKET")
            .env_remove("SIGNER_EMULATED_TOUCH")
            .envs(env.iter().copied())
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
                Ok(keys) if keys.len() == selectors.len() => break keys,
                Ok(_) | Err(_) if Instant::now() < end => {
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                Ok(keys) => {
                    return Err(Failure(format!(
                        "the daemon lists {} keys, expected {}",
                        keys.len(),
                        selectors.len()
                    )));
                }
                Err(e) => return Err(fail("the daemon did not answer within 20 s", e)),
            }
        };
        daemon.cold_start = spawned.elapsed();
        daemon.keys = keys;
        Ok(daemon)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// The selector of an emulated token's state file.
pub fn emulated(state: &Path) -> String {
    format!("emulated:{}", state.display())
}

/// `signer-daemon emulate-card` serving an emulated token to the private
/// pcscd's vpcd reader (`SIGNER_VPCD` in the environment), its log in
/// `log`. Stopped with SIGTERM by [`Bridge::stop`], which returns the number
/// of APDUs it answered.
pub struct Bridge {
    child: Child,
    log: PathBuf,
}

impl Bridge {
    /// Start the bridge for `state`.
    pub fn start(bin: &Path, state: &Path, log: &Path) -> Result<Bridge> {
        let file = std::fs::File::create(log).map_err(|e| fail("bridge log", e))?;
        let child = Command::new(bin)
            .arg("emulate-card")
            .arg("--state")
            .arg(state)
            .env("SIGNER_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| fail("cannot start signer-daemon emulate-card", e))?;
        Ok(Bridge {
            child,
            log: log.to_path_buf(),
        })
    }

    /// Stop it; the APDUs it answered (from its "bridge stopped" log line).
    pub fn stop(mut self) -> Result<u64> {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let _ = self.child.wait();
        let log = std::fs::read_to_string(&self.log).map_err(|e| fail("bridge log", e))?;
        log.lines()
            .map(strip_ansi)
            .filter(|l| l.contains("bridge stopped"))
            .find_map(|l| {
                let rest = &l[l.find("apdus=")? + 6..];
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .ok_or_else(|| {
                Failure(format!(
                    "emulate-card did not report its APDU count; see {}",
                    self.log.display()
                ))
            })
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log line without its ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn ansi_colours_are_stripped() {
        assert_eq!(
            super::strip_ansi("\u{1b}[3mapdus\u{1b}[0m\u{1b}[2m=\u{1b}[0m1503"),
            "apdus=1503"
        );
    }
}
