//! The audit log: one JSON line per request.
//!
//! Each line records when, who (peer uid, gid, pid and executable), what
//! (operation, token, slot, key id, hash and digest in hex), the policy rule
//! that decided, the outcome (gRPC code and message) and the latency. It never
//! contains a PIN, a private key, or a message body: only the digest that was
//! signed.
//!
//! Durability: lines are written by one thread that takes every record
//! waiting in its queue, appends them with a single `write(2)` and then calls
//! `fdatasync(2)` once for the batch (group commit). A request's answer is
//! released only after its line is on disk, so a signature never reaches a
//! caller without its audit record; when the log cannot be written, the
//! signature is withheld and the caller gets UNAVAILABLE.
//!
//! Rotation: the file is opened with `O_APPEND`; on SIGHUP the daemon reopens
//! the path (after logrotate moved the old file away), so no line is lost
//! and none goes to the rotated file after the signal.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::oneshot;

/// One audit record (one JSON line).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditRecord {
    /// RFC 3339 UTC time the request arrived, microseconds.
    pub time: String,
    /// Daemon-wide request number (increasing).
    pub request_id: u64,
    /// The RPC, e.g. "Sign".
    pub rpc: &'static str,
    /// The policy operation: "list", "sign", "attest".
    pub operation: &'static str,
    /// Caller's uid (absent: no peer credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Caller's gid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Caller's pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Caller's executable, when the daemon could read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Token serial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_serial: Option<u32>,
    /// Slot ("9c").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// Key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Hash of the signed digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<&'static str>,
    /// The digest that was (or would have been) signed, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The policy rule that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// "ok", "denied", "error", or "cancelled" (the caller went away or its
    /// deadline passed before the answer).
    pub outcome: &'static str,
    /// gRPC code name ("OK", "PERMISSION_DENIED", ...).
    pub code: &'static str,
    /// The status message for failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Milliseconds from arrival to answer.
    pub latency_ms: f64,
}

/// Timestamp for [`AuditRecord::time`].
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// The audit log could not be written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("audit log {path} cannot be written: {reason}")]
pub struct AuditError {
    /// The log's path.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

enum Msg {
    Record(
        Box<AuditRecord>,
        Option<oneshot::Sender<Result<(), AuditError>>>,
    ),
    Reopen,
}

/// Handle to the audit writer thread. Dropping every handle flushes and stops it.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

/// The most lines written in one batch (one write, one fdatasync).
const MAX_BATCH: usize = 512;

impl AuditLog {
    /// Open (create, mode 0640) `path` for appending and start the writer.
    /// Fails now, at start-up, if the file cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        let path = path.as_ref().to_path_buf();
        let file = open_append(&path)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread_path = path.clone();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer(thread_path, file, rx))
            .map_err(|e| AuditError {
                path: path.clone(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(AuditLog {
            path,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `record` and wait until it is on disk.
    pub async fn write(&self, record: AuditRecord) -> Result<(), AuditError> {
        let (done_tx, done_rx) = oneshot::channel();
        self.send(Msg::Record(Box::new(record), Some(done_tx)))?;
        done_rx.await.map_err(|_| self.stopped())?
    }

    /// Append `record` without waiting (used when the request is already gone).
    pub fn write_detached(&self, record: AuditRecord) {
        if self.send(Msg::Record(Box::new(record), None)).is_err() {
            tracing::error!(path = %self.path.display(), "audit writer stopped; record lost");
        }
    }

    /// Reopen the path (log rotation; SIGHUP).
    pub fn reopen(&self) {
        let _ = self.send(Msg::Reopen);
    }

    fn send(&self, msg: Msg) -> Result<(), AuditError> {
        match &self.tx {
            Some(tx) => tx.send(msg).map_err(|_| self.stopped()),
            None => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> AuditError {
        AuditError {
            path: self.path.clone(),
            reason: "the audit writer has stopped".into(),
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Closing the channel lets the writer drain what is queued, then exit.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(
            rustix::fs::OFlags::NOFOLLOW.bits() as i32 | rustix::fs::OFlags::CLOEXEC.bits() as i32,
        )
        .open(path)
        .map_err(|e| AuditError {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

fn writer(path: PathBuf, file: File, rx: mpsc::Receiver<Msg>) {
    let mut file = Some(file);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        buf.clear();
        let mut waiters = Vec::new();
        for msg in batch {
            match msg {
                Msg::Reopen => {
                    // Write what came before the signal to the old file first.
                    let result = flush(&path, &mut file, &buf);
                    for w in waiters.drain(..) {
                        let _ = oneshot::Sender::send(w, result.clone());
                    }
                    buf.clear();
                    file = match open_append(&path) {
                        Ok(f) => {
                            tracing::info!(path = %path.display(), "audit log reopened");
                            Some(f)
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "audit log reopen failed");
                            None
                        }
                    };
                }
                Msg::Record(record, waiter) => {
                    match serde_json::to_vec(&record) {
                        Ok(line) => {
                            buf.extend_from_slice(&line);
                            buf.push(b'\n');
                        }
                        Err(e) => tracing::error!(error = %e, "cannot serialize an audit record"),
                    }
                    if let Some(w) = waiter {
                        waiters.push(w);
                    }
                }
            }
        }
        let result = flush(&path, &mut file, &buf);
        if let Err(e) = &result {
            tracing::error!(error = %e, "audit log write failed");
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

fn flush(path: &Path, file: &mut Option<File>, buf: &[u8]) -> Result<(), AuditError> {
    if buf.is_empty() {
        return Ok(());
    }
    if file.is_none() {
        // A previous failure (or reopen failure): try again before giving up.
        *file = open_append(path).ok();
    }
    let Some(f) = file.as_mut() else {
        return Err(AuditError {
            path: path.to_path_buf(),
            reason: "the file is not open (reopen failed)".into(),
        });
    };
    let result = f.write_all(buf).and_then(|()| f.sync_data());
    result.map_err(|e| {
        *file = None;
        AuditError {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> AuditRecord {
        AuditRecord {
            time: now_rfc3339(),
            request_id: i,
            rpc: "Sign",
            operation: "sign",
            uid: Some(1000),
            outcome: "ok",
            code: "OK",
            digest: Some("00ff".into()),
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lines_are_durable_in_order_and_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = std::sync::Arc::new(AuditLog::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o640
        );
        let mut tasks = Vec::new();
        for i in 0..200 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move { log.write(rec(i)).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // Everything acknowledged is already in the file.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 200);
        let mut ids: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..200).collect::<Vec<_>>());

        // logrotate: move away, SIGHUP (reopen), keep writing.
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.write(rec(1000)).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            200
        );
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(new.lines().count(), 1);
        assert!(new.contains("\"request_id\":1000"));
        let v: serde_json::Value = serde_json::from_str(new.trim()).unwrap();
        assert_eq!(v["outcome"], "ok");
        assert!(v.get("slot").is_none(), "absent fields are left out: {new}");
    }

    #[test]
    fn refuses_a_symlinked_log() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(AuditLog::open(&link).is_err());
    }
}
