//! The emulated token's state file.
//!
//! > **Warning.** This file holds the token's private keys, PIN, PUK and
//! > management key. It is protected by file permissions only (mode 0600).
//! > An emulated token is for tests and CI; never put a production key in it.
//!
//! # Format
//!
//! ```text
//! signer-emulated-piv-token 1 sha256:<64 hex digits of SHA-256(body)>\n
//! <body: the card state as JSON>
//! ```
//!
//! The header names the format and its version, and carries a checksum of
//! the body so that a truncated or damaged file is detected before anything
//! is parsed. A file of an unknown (newer) version is refused with
//! [`Error::UnsupportedStateVersion`]; a damaged one with
//! [`Error::CorruptState`]. Neither is ever modified by a failed open.
//!
//! # Versions and migration
//!
//! - **1**: slot keys are P-256/P-384 only (`private_key`: the big-endian
//!   scalar).
//! - **2** (written by this build): every YubiKey 5.7 key type. The JSON
//!   schema is version 1's; `private_key` holds the P-256/P-384 scalar, the
//!   Ed25519 seed, the X25519 secret (32 bytes each), or the PKCS#1
//!   `RSAPrivateKey` DER for RSA keys.
//!
//! A version 1 file is read as it is (a version 1 file holding another key
//! type is refused as corrupt: no version 1 writer made one), keeps working,
//! and is written back as version 2 at the first change of state (after
//! which builds that only read version 1 refuse it with
//! [`Error::UnsupportedStateVersion`]).
//!
//! # Writes and locking
//!
//! Every write goes to a temporary file in the same directory (created
//! exclusively, mode 0600), is flushed with `fsync`, renamed over the state
//! file, and the directory is `fsync`ed, so the file is always either the old
//! or the new state. A process that uses a token holds an exclusive `flock`
//! on the sidecar `FILE.lock` (a lock on the state file itself would be lost
//! at the first rename); a second user gets [`Error::StateLocked`] after
//! waiting [`LOCK_PATIENCE`] for a lock released at once (one a forked
//! child held until its exec).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::emulator::card::CardState;
use crate::emulator::soft_key::random_bytes;
use crate::error::{Error, Result};
use crate::model::Algorithm;

/// The format name in the header line.
pub const FORMAT_NAME: &str = "signer-emulated-piv-token";
/// The format version this build writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this build reads (and migrates on the next
/// write).
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// The key types a version 1 file may hold.
const VERSION_1_ALGORITHMS: [Algorithm; 2] = [Algorithm::EccP256, Algorithm::EccP384];

/// An open, locked state file.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// Held for the lifetime of this value; the lock goes with the descriptor.
    _lock: File,
}

/// The sidecar lock file of a state file: `FILE.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn lock(path: &Path) -> Result<File> {
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    // A lock held for an instant is waited for: a child that another
    // thread of the previous user forked inherits the lock's descriptor
    // until its exec closes it (close-on-exec), so a token dropped and
    // reopened around a fork may look locked for a few milliseconds.
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(Error::StateLocked {
                    path: path.to_path_buf(),
                });
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io(&lock_path, e.into())),
        }
    }
}

/// How long opening waits for a lock held by someone else before
/// [`Error::StateLocked`]: long enough for a forked child's exec to release
/// an inherited lock descriptor, short enough not to hide a real second user.
pub const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(300);

impl StateFile {
    /// Create a new state file holding `state`. Refuses to overwrite an
    /// existing file ([`Error::StateExists`]).
    pub fn create(path: &Path, state: &CardState) -> Result<StateFile> {
        if path.as_os_str().is_empty() {
            return Err(Error::io(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "empty path"),
            ));
        }
        let lock = lock(path)?;
        if path.symlink_metadata().is_ok() {
            return Err(Error::StateExists {
                path: path.to_path_buf(),
            });
        }
        let file = StateFile {
            path: path.to_path_buf(),
            _lock: lock,
        };
        file.save(state)?;
        Ok(file)
    }

    /// Lock and read an existing state file.
    pub fn open(path: &Path) -> Result<(StateFile, CardState)> {
        match path.symlink_metadata() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::TokenNotFound {
                    reason: format!(
                        "no emulated token state at {} (create one with `signer-daemon emulated init --state {}`)",
                        path.display(),
                        path.display()
                    ),
                });
            }
            Err(e) => return Err(Error::io(path, e)),
        }
        let lock = lock(path)?;
        remove_stale_temporaries(path);
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
        let state = decode(path, &bytes)?;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", meta.permissions().mode() & 0o777),
                    "emulated token state file is readable by other users; it holds private keys"
                );
            }
        }
        Ok((
            StateFile {
                path: path.to_path_buf(),
                _lock: lock,
            },
            state,
        ))
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Atomically replace the file's contents with `state`.
    pub fn save(&self, state: &CardState) -> Result<()> {
        let bytes = encode(state)?;
        write_atomically(&self.path, &bytes)
    }
}

/// Remove the temporary files of [`write_atomically`] that a writer killed
/// before its rename left next to `path` (copies of the state, private keys
/// included). Called with the lock held: every writer holds it, so any such
/// file is stale. Failures only warn: the state file itself is untouched.
fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let stale = entry.path();
            match std::fs::remove_file(&stale) {
                Ok(()) => {
                    tracing::info!(path = %stale.display(), "removed a temporary state file left by an interrupted write")
                }
                Err(e) => {
                    tracing::warn!(path = %stale.display(), error = %e, "cannot remove a stale temporary state file")
                }
            }
        }
    }
}

/// Serialize a state into the file format (header + JSON body).
pub fn encode(state: &CardState) -> Result<Zeroizing<Vec<u8>>> {
    let failed = |e: serde_json::Error| Error::Protocol {
        reason: format!("cannot serialize emulator state: {}", e.classify_name()),
    };
    // Measure first, then serialize into one exact allocation, so no
    // reallocation leaves an unzeroized copy of the secrets behind.
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, state).map_err(failed)?;
    let mut body = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *body, state).map_err(failed)?;
    let header = format!(
        "{FORMAT_NAME} {FORMAT_VERSION} sha256:{}\n",
        hex::encode(Sha256::digest(body.as_slice()))
    );
    let mut out = Zeroizing::new(Vec::with_capacity(header.len() + body.len()));
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Parse the file format. Errors never contain secret values.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<CardState> {
    let corrupt = |reason: String| Error::CorruptState {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(corrupt("the file is empty".into()));
    }
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .filter(|&n| n <= 256)
        .ok_or_else(|| corrupt("no header line (truncated, or not a state file)".into()))?;
    let header = std::str::from_utf8(&bytes[..newline])
        .map_err(|_| corrupt("the header line is not text".into()))?;
    let body = &bytes[newline + 1..];
    let mut fields = header.split(' ');
    if fields.next() != Some(FORMAT_NAME) {
        return Err(corrupt(format!(
            "not an emulated token state file (the header does not start with {FORMAT_NAME:?})"
        )));
    }
    let version: u32 = fields
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt("the header has no format version".into()))?;
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(Error::UnsupportedStateVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let checksum = fields
        .next()
        .and_then(|c| c.strip_prefix("sha256:"))
        .ok_or_else(|| corrupt("the header has no sha256 checksum".into()))?;
    if fields.next().is_some() {
        return Err(corrupt("unexpected fields in the header".into()));
    }
    let actual = hex::encode(Sha256::digest(body));
    if !checksum.eq_ignore_ascii_case(&actual) {
        return Err(corrupt(
            "the checksum does not match the contents (truncated or modified)".into(),
        ));
    }
    let state: CardState = serde_json::from_slice(body).map_err(|e| {
        // serde_json messages can quote values; report position and kind only.
        corrupt(format!(
            "invalid contents ({} error at line {} column {})",
            e.classify_name(),
            e.line(),
            e.column()
        ))
    })?;
    state
        .validate()
        .map_err(|reason| corrupt(format!("inconsistent contents: {reason}")))?;
    if version == 1 {
        if let Some((slot, algorithm)) = state
            .key_algorithms()
            .find(|(_, a)| !VERSION_1_ALGORITHMS.contains(a))
        {
            return Err(corrupt(format!(
                "a version 1 file cannot hold the {algorithm} key in slot {slot} (version 1 has P-256 and P-384 keys only)"
            )));
        }
        tracing::info!(
            path = %path.display(),
            "emulated token state file of format version 1: it keeps working and is written as version {FORMAT_VERSION} at the next change"
        );
    }
    Ok(state)
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

struct ByteCounter(usize);

impl Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Write `bytes` to `path` atomically: temp file in the same directory
/// (exclusive, 0600), fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| {
            Error::io(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let mut suffix = [0u8; 6];
    random_bytes(&mut suffix)?;
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        hex::encode(suffix)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(&dir, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
