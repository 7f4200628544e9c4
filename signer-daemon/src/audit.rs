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
//! A failed or short write leaves the log as it was: before each batch the
//! writer notes the file's length, and when the write or the `fdatasync`
//! fails (disk full, I/O error) it truncates the file back to that length,
//! so no torn partial line remains for the next record to be glued to. If
//! even the truncation fails, the next batch that can be written starts with
//! a newline, which terminates the fragment: every complete record still
//! parses as one JSON line.
//!
//! Group commit waits for records that are on their way: every request in
//! progress holds an [`Expected`] ticket from [`AuditLog::expect`] until its
//! record is queued. When the writer has taken every waiting record and
//! tickets are still out (other requests are at the token and will be
//! audited next), it waits a little for them before the `fdatasync`: at
//! most the recent `fdatasync` time (waiting as long as one `fdatasync`
//! costs is worth it when it saves one; measured against half and twice
//! that), never more than [`MAX_COALESCE`], and not at all while no other
//! request is in progress (one caller alone never waits). Without it,
//! concurrent callers whose signatures finish one after another each paid a
//! whole `fdatasync`; with it, one `fdatasync` covers them (both measured in
//! README "Performance").
//! Nothing is released earlier: a record's answer still waits for the
//! `fdatasync` of its batch.
//!
//! Rotation: the file is opened with `O_APPEND`; on SIGHUP the daemon reopens
//! the path (after logrotate moved the old file away), so no line is lost
//! and none goes to the rotated file after the signal. Before each batch the
//! writer also checks that the path still names the open file: a log removed
//! (or moved away without a SIGHUP) is recreated at the path, and a batch
//! written while the file was being removed is written again to the new one,
//! so no record goes to a file nobody can read.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

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
    /// The digest that was (or would have been) signed, hex (Ed25519: the
    /// SHA-512 of the signed message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The signature scheme (`ecdsa`, `rsa-pkcs1v15`, `rsa-pss`,
    /// `ed25519`), once the request was checked against its key (E4, issue 14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<&'static str>,
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
    expected: Arc<AtomicUsize>,
}

/// A request in progress whose audit record will come (see the module
/// documentation: group commit). Dropped when the record is queued, or
/// when the request ends without one.
#[derive(Debug)]
pub struct Expected(Arc<AtomicUsize>);

impl Drop for Expected {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The longest the writer waits for records on their way before an
/// `fdatasync` (it waits at most the recent `fdatasync` time).
pub const MAX_COALESCE: Duration = Duration::from_millis(1);

/// The audit file as the writer uses it: a trait so that tests can inject
/// short and failed writes (a full disk) without a full disk.
pub(crate) trait LogFile: Write + Send {
    /// The file's current length.
    fn len(&self) -> std::io::Result<u64>;
    /// The byte at `offset`.
    fn byte_at(&self, offset: u64) -> std::io::Result<u8>;
    /// `fdatasync(2)`.
    fn sync_data(&self) -> std::io::Result<()>;
    /// Cut the file to `len` bytes.
    fn truncate(&self, len: u64) -> std::io::Result<()>;
    /// The file was removed (no name left): lines written to it are lost.
    fn is_unlinked(&self) -> bool {
        false
    }
    /// `path` no longer names this file (removed, or moved away and maybe
    /// replaced, without a SIGHUP).
    fn is_detached_from(&self, _path: &Path) -> bool {
        false
    }
}

impl LogFile for File {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn byte_at(&self, offset: u64) -> std::io::Result<u8> {
        let mut b = [0u8; 1];
        self.read_exact_at(&mut b, offset)?;
        Ok(b[0])
    }
    fn sync_data(&self) -> std::io::Result<()> {
        File::sync_data(self)
    }
    fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
    fn is_unlinked(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.metadata().is_ok_and(|m| m.nlink() == 0)
    }
    fn is_detached_from(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.metadata(), std::fs::symlink_metadata(path)) {
            (Ok(open), Ok(named)) => open.dev() != named.dev() || open.ino() != named.ino(),
            (Ok(_), Err(_)) => true,
            (Err(_), _) => false,
        }
    }
}

/// The audit file the daemon writes: the open file and its identity
/// (device and inode), read once when it is opened, so that checking
/// whether the path still names it costs one `lstat(2)` of the path per
/// batch instead of an `fstat(2)` as well.
struct AuditFile {
    file: File,
    dev: u64,
    ino: u64,
}

impl AuditFile {
    fn open(path: &Path) -> Result<AuditFile, AuditError> {
        use std::os::unix::fs::MetadataExt;
        let file = open_append(path)?;
        let meta = file.metadata().map_err(|e| AuditError {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(AuditFile {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl Write for AuditFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl LogFile for AuditFile {
    fn len(&self) -> std::io::Result<u64> {
        LogFile::len(&self.file)
    }
    fn byte_at(&self, offset: u64) -> std::io::Result<u8> {
        self.file.byte_at(offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
    fn truncate(&self, len: u64) -> std::io::Result<()> {
        LogFile::truncate(&self.file, len)
    }
    fn is_unlinked(&self) -> bool {
        self.file.is_unlinked()
    }
    fn is_detached_from(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match std::fs::symlink_metadata(path) {
            Ok(named) => named.dev() != self.dev || named.ino() != self.ino,
            Err(_) => true,
        }
    }
}

/// Opens (and reopens, after rotation or a failure) the audit file.
pub(crate) type Opener = Box<dyn FnMut(&Path) -> Result<Box<dyn LogFile>, AuditError> + Send>;

fn real_opener() -> Opener {
    Box::new(|path: &Path| AuditFile::open(path).map(|f| Box::new(f) as Box<dyn LogFile>))
}

/// The most lines written in one batch (one write, one fdatasync).
const MAX_BATCH: usize = 512;

impl AuditLog {
    /// Open (create, mode 0640) `path` for appending and start the writer.
    /// Fails now, at start-up, if the file cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(path, real_opener())
    }

    /// [`AuditLog::open`] with the file opened by `opener` (fault injection).
    pub(crate) fn open_with(
        path: impl AsRef<Path>,
        mut opener: Opener,
    ) -> Result<AuditLog, AuditError> {
        let path = path.as_ref().to_path_buf();
        let file = opener(&path)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread_path = path.clone();
        let expected = Arc::new(AtomicUsize::new(0));
        let coming = expected.clone();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer(thread_path, file, opener, rx, &coming))
            .map_err(|e| AuditError {
                path: path.clone(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(AuditLog {
            path,
            tx: Some(tx),
            thread: Some(thread),
            expected,
        })
    }

    /// A ticket for a request whose record will be written: hold it until
    /// the record is queued ([`AuditLog::write`] / [`AuditLog::write_detached`]
    /// after dropping it), so that the writer waits for it when it batches.
    pub fn expect(&self) -> Expected {
        self.expected.fetch_add(1, Ordering::AcqRel);
        Expected(self.expected.clone())
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `record` and wait until it is on disk. `lone`: no other
    /// request is in progress, so the wait polls briefly before it parks
    /// (`crate::spin`).
    pub async fn write(&self, record: AuditRecord, lone: bool) -> Result<(), AuditError> {
        let (done_tx, mut done_rx) = oneshot::channel();
        self.send(Msg::Record(Box::new(record), Some(done_tx)))?;
        if lone {
            match crate::spin::poll_for(&mut done_rx, crate::spin::AUDIT_POLL).await {
                crate::spin::Polled::Answer(done) => return done,
                crate::spin::Polled::Closed => return Err(self.stopped()),
                crate::spin::Polled::NotYet => {}
            }
        }
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
    // Read access too: the writer checks that the file ends in a newline.
    OpenOptions::new()
        .read(true)
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

/// How long to wait for records on their way: the recent `fdatasync`
/// time (an average that follows the last 8 or so), at most
/// [`MAX_COALESCE`].
#[derive(Debug, Default)]
struct Coalesce {
    sync_ewma: Option<Duration>,
}

impl Coalesce {
    fn window(&self) -> Duration {
        self.sync_ewma
            .map_or(Duration::ZERO, |d| d.min(MAX_COALESCE))
    }

    fn observe(&mut self, took: Duration) {
        self.sync_ewma = Some(match self.sync_ewma {
            None => took,
            Some(avg) => (avg * 7 + took) / 8,
        });
    }
}

/// Take what is queued (up to [`MAX_BATCH`]); then, while requests whose
/// records are on their way are in progress, wait for them, until the
/// window closes.
fn gather(rx: &mpsc::Receiver<Msg>, batch: &mut Vec<Msg>, coming: &AtomicUsize, window: Duration) {
    let drain = |batch: &mut Vec<Msg>| {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
    };
    drain(batch);
    if window.is_zero() {
        return;
    }
    let until = Instant::now() + window;
    while batch.len() < MAX_BATCH && coming.load(Ordering::Acquire) > 0 {
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            break;
        };
        match rx.recv_timeout(left) {
            Ok(m) => {
                batch.push(m);
                drain(batch);
            }
            Err(_) => break,
        }
    }
}

fn writer(
    path: PathBuf,
    file: Box<dyn LogFile>,
    mut opener: Opener,
    rx: mpsc::Receiver<Msg>,
    coming: &AtomicUsize,
) {
    let mut coalesce = Coalesce::default();
    let mut file = Some(file);
    // Where the last durable batch ended (the file's length after it), while
    // the same file stays open: see `append_durably`.
    let mut end: Option<u64> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        gather(&rx, &mut batch, coming, coalesce.window());
        buf.clear();
        let mut waiters = Vec::new();
        for msg in batch {
            match msg {
                Msg::Reopen => {
                    // Write what came before the signal to the old file first.
                    let result = flush(&path, &mut file, &mut end, &mut opener, &buf);
                    for w in waiters.drain(..) {
                        let _ = oneshot::Sender::send(w, result.clone());
                    }
                    buf.clear();
                    end = None;
                    file = match opener(&path) {
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
                    // Serialized straight into the batch: no buffer per line.
                    let start = buf.len();
                    match serde_json::to_writer(&mut buf, &record) {
                        Ok(()) => buf.push(b'\n'),
                        Err(e) => {
                            buf.truncate(start);
                            tracing::error!(error = %e, "cannot serialize an audit record");
                        }
                    }
                    if let Some(w) = waiter {
                        waiters.push(w);
                    }
                }
            }
        }
        let started = Instant::now();
        let result = flush(&path, &mut file, &mut end, &mut opener, &buf);
        if !buf.is_empty() && result.is_ok() {
            coalesce.observe(started.elapsed());
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "audit log write failed");
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

fn flush(
    path: &Path,
    file: &mut Option<Box<dyn LogFile>>,
    end: &mut Option<u64>,
    opener: &mut Opener,
    buf: &[u8],
) -> Result<(), AuditError> {
    if buf.is_empty() {
        return Ok(());
    }
    if file.as_ref().is_some_and(|f| f.is_detached_from(path)) {
        // Removed (or moved away without a SIGHUP) under the daemon: lines
        // written to the old file would be lost, so write at the path again.
        tracing::warn!(path = %path.display(), "the audit log was removed or replaced; reopening it");
        *file = None;
    }
    if file.is_none() {
        *end = None;
    }
    for attempt in 0..2 {
        if file.is_none() {
            // A previous failure (or reopen failure): try again before giving up.
            *end = None;
            *file = opener(path).ok();
        }
        let Some(f) = file.as_mut() else {
            return Err(AuditError {
                path: path.to_path_buf(),
                reason: "the file is not open (reopen failed)".into(),
            });
        };
        let written = append_durably(f.as_mut(), buf, end);
        let unlinked = written.is_ok() && attempt == 0 && f.is_unlinked();
        if let Err(e) = written {
            *file = None;
            return Err(AuditError {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
        if unlinked {
            // Removed while this batch was written: it went nowhere; write it
            // again, to a new file at the path.
            tracing::warn!(path = %path.display(), "the audit log was removed during a write; writing the batch again");
            *file = None;
            continue;
        }
        return Ok(());
    }
    Err(AuditError {
        path: path.to_path_buf(),
        reason: "the file was removed during the write, twice".into(),
    })
}

/// Append `buf` (whole lines) and make it durable; on failure leave the
/// file as it was before the attempt.
///
/// `end` is where the previous batch written through this open file ended
/// (`None` after a failure, a reopen, or before the first batch). When the
/// file still has exactly that length, its last byte is that batch's final
/// newline and is not read back; any other length (a crash fragment, a
/// failure, another writer, a truncation) is checked by reading the last
/// byte, as before.
fn append_durably(f: &mut dyn LogFile, buf: &[u8], end: &mut Option<u64>) -> std::io::Result<()> {
    let known = end.take();
    let before = f.len()?;
    // A fragment that an earlier failure could not cut off (or a crash left):
    // terminate it, so that this batch's first record starts its own line.
    let healed;
    let data = if before > 0 && known != Some(before) && f.byte_at(before - 1)? != b'\n' {
        tracing::warn!("the audit log ends in a partial line; terminating it");
        healed = [b"\n", buf].concat();
        &healed[..]
    } else {
        buf
    };
    let result = f.write_all(data).and_then(|()| f.sync_data());
    if result.is_ok() && data.last() == Some(&b'\n') {
        *end = Some(before + data.len() as u64);
    }
    if result.is_err() {
        // Disk full mid-write, or the sync failed: the answers of this batch
        // are withheld, so its lines must not stay (whole or torn).
        if let Err(e) = f.truncate(before).and_then(|()| f.sync_data()) {
            tracing::error!(
                error = %e,
                "cannot cut a failed audit write back off the log; the next record that can be written terminates the fragment first"
            );
        }
    }
    result
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

    fn msg(i: u64) -> Msg {
        Msg::Record(Box::new(rec(i)), None)
    }

    #[test]
    fn the_window_is_the_recent_fdatasync_and_at_most_max_coalesce() {
        let mut c = Coalesce::default();
        assert_eq!(c.window(), Duration::ZERO, "nothing measured yet: no wait");
        c.observe(Duration::from_micros(400));
        assert_eq!(c.window(), Duration::from_micros(400));
        for _ in 0..64 {
            c.observe(Duration::from_millis(30));
        }
        assert_eq!(c.window(), MAX_COALESCE);
        for _ in 0..256 {
            c.observe(Duration::from_micros(100));
        }
        assert!(c.window() <= Duration::from_micros(120), "{:?}", c.window());
    }

    /// With another request in progress, the writer waits for its record
    /// and writes both in one batch.
    #[test]
    fn a_record_on_its_way_joins_the_batch() {
        let (tx, rx) = mpsc::channel();
        let coming = Arc::new(AtomicUsize::new(1));
        tx.send(msg(1)).unwrap();
        let late = tx.clone();
        let ticket = Expected(coming.clone());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(ticket);
            late.send(msg(2)).unwrap();
        });
        let started = Instant::now();
        let mut batch = Vec::new();
        gather(&rx, &mut batch, &coming, Duration::from_secs(20));
        t.join().unwrap();
        assert_eq!(batch.len(), 2);
        // Nothing more on its way: the writer did not wait out the window.
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    /// Alone (no other request in progress), a record is written at once:
    /// the writer does not wait out the window.
    #[test]
    fn a_lone_record_does_not_wait() {
        let (tx, rx) = mpsc::channel();
        let coming = AtomicUsize::new(0);
        tx.send(msg(1)).unwrap();
        let t = Instant::now();
        let mut batch = Vec::new();
        gather(&rx, &mut batch, &coming, Duration::from_secs(20));
        assert_eq!(batch.len(), 1);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    /// A request in progress that does not finish (a touch being waited
    /// for) holds the batch for the window only.
    #[test]
    fn a_record_that_does_not_come_holds_the_batch_for_the_window_only() {
        let (tx, rx) = mpsc::channel();
        let coming = AtomicUsize::new(1);
        tx.send(msg(1)).unwrap();
        let t = Instant::now();
        let mut batch = Vec::new();
        gather(&rx, &mut batch, &coming, Duration::from_millis(30));
        let waited = t.elapsed();
        assert_eq!(batch.len(), 1);
        assert!(
            waited >= Duration::from_millis(30) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
        drop(tx);
    }

    /// Tickets count the requests in progress and are returned on drop.
    #[test]
    fn tickets_count_requests_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path().join("a.jsonl")).unwrap();
        let a = log.expect();
        let b = log.expect();
        assert_eq!(log.expected.load(Ordering::Acquire), 2);
        drop(a);
        assert_eq!(log.expected.load(Ordering::Acquire), 1);
        drop(b);
        assert_eq!(log.expected.load(Ordering::Acquire), 0);
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
            tasks.push(tokio::spawn(async move { log.write(rec(i), false).await }));
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
        log.write(rec(1000), false).await.unwrap();
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

    /// Faults shared between a test and the files its opener makes.
    #[derive(Default)]
    struct Faults {
        /// Bytes the "disk" still takes; `None`: unlimited.
        space: std::sync::Mutex<Option<usize>>,
        fail_sync: std::sync::atomic::AtomicBool,
        fail_truncate: std::sync::atomic::AtomicBool,
    }

    /// A real file whose writes stop short with ENOSPC once `space` is used
    /// up, as on a full filesystem, and whose sync or truncate can fail.
    struct FaultyFile {
        inner: File,
        faults: std::sync::Arc<Faults>,
    }

    impl Write for FaultyFile {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut space = self.faults.space.lock().unwrap();
            let n = match *space {
                None => buf.len(),
                Some(0) => return Err(std::io::Error::from_raw_os_error(28)), // ENOSPC
                Some(left) => left.min(buf.len()),
            };
            let written = self.inner.write(&buf[..n])?;
            if let Some(left) = space.as_mut() {
                *left -= written;
            }
            Ok(written)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl LogFile for FaultyFile {
        fn len(&self) -> std::io::Result<u64> {
            LogFile::len(&self.inner)
        }
        fn byte_at(&self, offset: u64) -> std::io::Result<u8> {
            self.inner.byte_at(offset)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            if self.faults.fail_sync.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(5)); // EIO
            }
            File::sync_data(&self.inner)
        }
        fn truncate(&self, len: u64) -> std::io::Result<()> {
            if self.faults.fail_truncate.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(30)); // EROFS
            }
            self.inner.set_len(len)
        }
    }

    use std::sync::atomic::Ordering;

    fn faulty_log(path: &Path) -> (AuditLog, std::sync::Arc<Faults>) {
        let faults = std::sync::Arc::new(Faults::default());
        let shared = faults.clone();
        let opener: Opener = Box::new(move |p: &Path| {
            Ok(Box::new(FaultyFile {
                inner: open_append(p)?,
                faults: shared.clone(),
            }) as Box<dyn LogFile>)
        });
        (AuditLog::open_with(path, opener).unwrap(), faults)
    }

    fn ids(text: &str) -> Vec<u64> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|e| panic!("line {l:?} is not a JSON record: {e}"))["request_id"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_write_on_a_full_disk_leaves_no_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (log, faults) = faulty_log(&path);
        // A lone request's wait (polling first) gets the same outcomes.
        log.write(rec(1), true).await.unwrap();
        let before = std::fs::read(&path).unwrap();

        // The disk fills up 30 bytes into the next line: the write stops
        // short, the record's answer is withheld, and the fragment is cut off.
        *faults.space.lock().unwrap() = Some(30);
        let err = log.write(rec(2), true).await.unwrap_err();
        assert!(err.reason.contains("No space left"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "the log changed");

        // Space again: the log resumes, every line parses.
        *faults.space.lock().unwrap() = None;
        log.write(rec(3), false).await.unwrap();
        assert_eq!(ids(&std::fs::read_to_string(&path).unwrap()), vec![1, 3]);

        // A write that fully succeeded but whose fdatasync failed is cut off
        // too: its answer was withheld, so its line must not claim otherwise.
        let before = std::fs::read(&path).unwrap();
        faults.fail_sync.store(true, Ordering::SeqCst);
        log.write(rec(4), false).await.unwrap_err();
        faults.fail_sync.store(false, Ordering::SeqCst);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        log.write(rec(5), false).await.unwrap();
        assert_eq!(ids(&std::fs::read_to_string(&path).unwrap()), vec![1, 3, 5]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fragment_that_cannot_be_cut_off_is_terminated_before_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (log, faults) = faulty_log(&path);
        log.write(rec(1), false).await.unwrap();
        *faults.space.lock().unwrap() = Some(30);
        faults.fail_truncate.store(true, Ordering::SeqCst);
        log.write(rec(2), false).await.unwrap_err();
        let torn = std::fs::read_to_string(&path).unwrap();
        assert!(
            !torn.ends_with('\n'),
            "the fault was not injected: {torn:?}"
        );

        *faults.space.lock().unwrap() = None;
        faults.fail_truncate.store(false, Ordering::SeqCst);
        log.write(rec(3), false).await.unwrap();
        log.write(rec(4), false).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        // The fragment is a line of its own; every complete record parses.
        assert!(serde_json::from_str::<serde_json::Value>(lines[1]).is_err());
        let complete: Vec<u64> = [lines[0], lines[2], lines[3]]
            .iter()
            .map(|l| ids(l)[0])
            .collect();
        assert_eq!(complete, vec![1, 3, 4]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fragment_someone_else_appended_is_terminated_before_the_next_record() {
        // The writer remembers where its last batch ended and skips reading
        // the last byte back while the file still has that length: a file
        // that grew behind its back must still be checked.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.write(rec(1), false).await.unwrap();
        log.write(rec(2), false).await.unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"torn")
            .unwrap();
        log.write(rec(3), false).await.unwrap();
        log.write(rec(4), false).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[2], "{\"torn");
        let complete: Vec<u64> = [lines[0], lines[1], lines[3], lines[4]]
            .iter()
            .map(|l| ids(l)[0])
            .collect();
        assert_eq!(complete, vec![1, 2, 3, 4]);
        assert!(text.ends_with('\n'));
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
