//! The daemon's Unix socket: where it lives, how it is created safely, and
//! systemd socket activation.
//!
//! - Default path: `$XDG_RUNTIME_DIR/signer/signer.sock` when the daemon runs
//!   in a user session, `/run/signer/signer.sock` otherwise (the system
//!   service, whose unit creates `/run/signer` with `RuntimeDirectory=`).
//! - The directory is created with mode 0750 when missing; an existing one
//!   must not be a symlink, must belong to the daemon's user or root, and must
//!   not be writable by others (unless sticky, like /tmp).
//! - The socket file gets mode 0660: bound under a temporary name, chmod-ed,
//!   then renamed into place, so it is never reachable with a wider mode.
//! - An existing path is replaced only when it is a socket, belongs to the
//!   daemon's user, and nothing answers on it (a stale socket from a crash).
//!   A symlink, a file of another user or another kind, or a live daemon make
//!   the start fail with a message that says which.
//! - Socket activation: when systemd passes a listening socket
//!   (`LISTEN_FDS=1`, `LISTEN_PID` = our pid), the daemon uses it as is and
//!   leaves the path and its permissions to the `.socket` unit.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The system service's socket.
pub const SYSTEM_SOCKET: &str = "/run/signer/signer.sock";

/// Where a socket could not be set up, and why.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The path is a symlink.
    #[error("{path} is a symlink; refusing to use it (give the real path)")]
    Symlink {
        /// The path.
        path: PathBuf,
    },
    /// Owned by another user.
    #[error("{path} belongs to uid {owner}, not to this daemon's uid {ours}; refusing to use it")]
    ForeignOwner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our euid.
        ours: u32,
    },
    /// Something other than a socket (or a directory, for the parent).
    #[error("{path} exists and is not a {expected}; refusing to replace it")]
    WrongKind {
        /// The path.
        path: PathBuf,
        /// "socket" or "directory".
        expected: &'static str,
    },
    /// The directory can be written by other users.
    #[error(
        "socket directory {path} is writable by other users (mode {mode:o}); use a private directory"
    )]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A daemon already listens there.
    #[error("a daemon is already listening on {path}; stop it first or use another --socket")]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// No socket path could be determined.
    #[error("no socket path: {0}")]
    NoPath(String),
    /// Socket activation was requested but the passed descriptor is unusable.
    #[error("socket activation: {0}")]
    Activation(String),
    /// A system call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SocketError + 'a {
    move |source| SocketError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The daemon's default socket: `$XDG_RUNTIME_DIR/signer/signer.sock` in a
/// user session, [`SYSTEM_SOCKET`] otherwise.
pub fn default_daemon_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("signer").join("signer.sock"),
        _ => PathBuf::from(SYSTEM_SOCKET),
    }
}

/// The socket a client uses when not told: `SIGNER_SOCKET` is handled by the
/// caller; this returns the user daemon's socket if it exists, else the
/// system daemon's.
pub fn default_client_socket() -> PathBuf {
    signer_client::default_socket_ignoring_env()
}

/// A listening socket and, when the daemon created it, its path (removed on
/// drop if it still is the same socket).
#[derive(Debug)]
pub struct BoundSocket {
    /// The listener (blocking mode; the server switches it).
    pub listener: UnixListener,
    /// Where it is, when we bound it ourselves.
    pub path: Option<PathBuf>,
    inode: Option<(u64, u64)>,
}

impl BoundSocket {
    /// Take the socket systemd passed (`LISTEN_FDS`), if any. Strict about
    /// `LISTEN_PID`: descriptors meant for another process are ignored.
    pub fn from_systemd() -> Result<Option<BoundSocket>, SocketError> {
        let Some(fds) = std::env::var_os("LISTEN_FDS") else {
            return Ok(None);
        };
        let ours = std::process::id().to_string();
        match std::env::var("LISTEN_PID") {
            Ok(pid) if pid == ours => {}
            _ => {
                tracing::warn!("LISTEN_FDS is set but LISTEN_PID is not this process; ignoring it");
                return Ok(None);
            }
        }
        if fds.to_str() != Some("1") {
            return Err(SocketError::Activation(format!(
                "expected exactly one socket (LISTEN_FDS=1), got LISTEN_FDS={}",
                fds.to_string_lossy()
            )));
        }
        let mut fds = listenfd::ListenFd::from_env();
        let listener = fds
            .take_unix_listener(0)
            .map_err(|e| SocketError::Activation(format!("fd 3: {e}")))?
            .ok_or_else(|| SocketError::Activation("fd 3 was not passed".into()))?;
        Ok(Some(BoundSocket {
            listener,
            path: None,
            inode: None,
        }))
    }

    /// Create the socket at `path` (see the module documentation for the checks).
    pub fn bind(path: &Path) -> Result<BoundSocket, SocketError> {
        let euid = rustix::process::geteuid().as_raw();
        let file_name = path
            .file_name()
            .ok_or_else(|| SocketError::NoPath(format!("{} has no file name", path.display())))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        prepare_directory(&dir, euid)?;
        check_existing(path, euid)?;

        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        match std::fs::symlink_metadata(&tmp) {
            Ok(_) => std::fs::remove_file(&tmp).map_err(io_err("cannot remove", &tmp))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot inspect", &tmp)(e)),
        }
        let listener = UnixListener::bind(&tmp).map_err(io_err("cannot bind", &tmp))?;
        let finish = || -> Result<(u64, u64), SocketError> {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
                .map_err(io_err("cannot chmod", &tmp))?;
            std::fs::rename(&tmp, path).map_err(io_err("cannot move the socket to", path))?;
            let meta = std::fs::symlink_metadata(path).map_err(io_err("cannot inspect", path))?;
            Ok((meta.dev(), meta.ino()))
        };
        match finish() {
            Ok(inode) => Ok(BoundSocket {
                listener,
                path: Some(path.to_path_buf()),
                inode: Some(inode),
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let (Some(path), Some((dev, ino))) = (&self.path, self.inode) {
            // Remove the socket only if it is still ours (not a successor's).
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if meta.dev() == dev && meta.ino() == ino {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

fn prepare_directory(dir: &Path, euid: u32) -> Result<(), SocketError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o750)
                .create(dir)
                .map_err(io_err("cannot create the socket directory", dir))?;
            // The umask may have taken bits away; set exactly 0750.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
                .map_err(io_err("cannot chmod", dir))?;
            Ok(())
        }
        Err(e) => Err(io_err("cannot inspect", dir)(e)),
        Ok(meta) => {
            if meta.file_type().is_symlink() {
                return Err(SocketError::Symlink {
                    path: dir.to_path_buf(),
                });
            }
            if !meta.is_dir() {
                return Err(SocketError::WrongKind {
                    path: dir.to_path_buf(),
                    expected: "directory",
                });
            }
            if meta.uid() != euid && meta.uid() != 0 {
                return Err(SocketError::ForeignOwner {
                    path: dir.to_path_buf(),
                    owner: meta.uid(),
                    ours: euid,
                });
            }
            let mode = meta.mode() & 0o7777;
            let sticky = mode & 0o1000 != 0;
            let others_write = mode & 0o002 != 0 || (mode & 0o020 != 0 && meta.uid() != euid);
            if others_write && !sticky {
                return Err(SocketError::UnsafeDirectory {
                    path: dir.to_path_buf(),
                    mode,
                });
            }
            Ok(())
        }
    }
}

fn check_existing(path: &Path, euid: u32) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("cannot inspect", path)(e)),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(SocketError::Symlink {
            path: path.to_path_buf(),
        });
    }
    if meta.uid() != euid {
        return Err(SocketError::ForeignOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            ours: euid,
        });
    }
    use std::os::unix::fs::FileTypeExt;
    if !meta.file_type().is_socket() {
        return Err(SocketError::WrongKind {
            path: path.to_path_buf(),
            expected: "socket",
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing a stale socket (nothing answers on it)");
            Ok(())
        }
        Err(e) => Err(io_err("cannot probe the existing socket", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn creates_0660_socket_in_0750_directory_and_removes_it() {
        let base = tempfile::tempdir().unwrap();
        let path = base.path().join("signer").join("signer.sock");
        let s = BoundSocket::bind(&path).unwrap();
        assert_eq!(mode(path.parent().unwrap()), 0o750);
        assert_eq!(mode(&path), 0o660);
        assert!(UnixStream::connect(&path).is_ok());
        drop(s);
        assert!(std::fs::symlink_metadata(&path).is_err());
    }

    #[test]
    fn stale_socket_is_replaced_live_one_is_not() {
        let base = tempfile::tempdir().unwrap();
        let path = base.path().join("s.sock");
        {
            let stale = UnixListener::bind(&path).unwrap();
            drop(stale); // the file stays, nothing listens
        }
        assert!(std::fs::symlink_metadata(&path).is_ok());
        let live = BoundSocket::bind(&path).unwrap();
        let second = BoundSocket::bind(&path).unwrap_err();
        assert!(matches!(second, SocketError::InUse { .. }), "{second}");
        // The failed attempt did not remove the live daemon's socket.
        assert!(UnixStream::connect(&path).is_ok());
        drop(live);
    }

    #[test]
    fn refuses_symlinks_files_and_foreign_owners() {
        let base = tempfile::tempdir().unwrap();
        let target = base.path().join("target.sock");
        let _l = UnixListener::bind(&target).unwrap();
        let link = base.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            BoundSocket::bind(&link),
            Err(SocketError::Symlink { .. })
        ));

        let file = base.path().join("file.sock");
        std::fs::write(&file, "not a socket").unwrap();
        assert!(matches!(
            BoundSocket::bind(&file),
            Err(SocketError::WrongKind { .. })
        ));
        assert_eq!(std::fs::read(&file).unwrap(), b"not a socket");

        let dir_link = base.path().join("dirlink");
        std::os::unix::fs::symlink(base.path(), &dir_link).unwrap();
        assert!(matches!(
            BoundSocket::bind(&dir_link.join("x.sock")),
            Err(SocketError::Symlink { .. })
        ));

        let open = base.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            BoundSocket::bind(&open.join("x.sock")),
            Err(SocketError::UnsafeDirectory { .. })
        ));

        if rustix::process::geteuid().is_root() {
            let foreign = base.path().join("foreign.sock");
            drop(UnixListener::bind(&foreign).unwrap());
            std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
            assert!(matches!(
                BoundSocket::bind(&foreign),
                Err(SocketError::ForeignOwner { owner: 65534, .. })
            ));
        }
    }
}
