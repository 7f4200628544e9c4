//! Writing results: files atomically, PEM.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Failure;

/// Where a write to `path` lands: the file a symlink points to (so that
/// replacing a symlinked file keeps the link), else `path` itself.
fn target_of(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

/// A temporary file next to `target` holding `bytes`, flushed to disk, with
/// `mode` (the replaced file's permissions) when given.
fn write_temporary(
    target: &Path,
    bytes: &[u8],
    mode: Option<std::fs::Permissions>,
) -> Result<PathBuf, Failure> {
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = target
        .file_name()
        .ok_or_else(|| Failure::usage(format!("{}: not a file name", target.display())))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            if let Some(mode) = mode {
                f.set_permissions(mode)?;
            }
            f.write_all(bytes)?;
            f.sync_all()
        });
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                let _ = std::fs::remove_file(&tmp);
            }
            Err(Failure::internal(format!(
                "cannot write {}: {e}",
                tmp.display()
            )))
        }
    }
}

/// Write `bytes` to `path` atomically: a temporary file in the same
/// directory, flushed to disk, then renamed over `path`. A file being
/// replaced keeps its permissions, and a symlink keeps pointing at the
/// (replaced) file. On failure the temporary file is removed and `path` is
/// untouched.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let target = target_of(path);
    let mode = std::fs::metadata(&target).ok().map(|m| m.permissions());
    let tmp = write_temporary(&target, bytes, mode)?;
    if let Err(e) = std::fs::rename(&tmp, &target) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failure::internal(format!(
            "cannot write {}: {e}",
            path.display()
        )));
    }
    Ok(())
}

/// Write a new file atomically, refusing (with `path` untouched) when
/// something already exists there, also when it appears while we write:
/// the finished temporary file is published with a hard link, which fails
/// rather than replaces.
pub fn write_new_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let exists = || {
        Failure::usage(format!(
            "{} exists: choose another name or remove it first",
            path.display()
        ))
    };
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(exists());
    }
    let tmp = write_temporary(path, bytes, None)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
        Err(e) => Err(Failure::internal(format!(
            "cannot write {}: {e}",
            path.display()
        ))),
    }
}

/// PEM text of one DER object.
pub fn pem(label: &str, der: &[u8]) -> Result<String, Failure> {
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der)
        .map_err(|e| Failure::internal(format!("PEM: {e}")))
}

/// Write to standard output, mapping errors.
pub fn stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::internal(format!("stdout: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn replacing_keeps_permissions_and_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("root.json");
        std::fs::write(&real, b"old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_file_atomically(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no stray file"
        );
    }

    #[test]
    fn a_new_file_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v2.json");
        write_new_file_atomically(&p, b"first").unwrap();
        let e = write_new_file_atomically(&p, b"second").unwrap_err();
        assert_eq!(e.code, super::super::exit::USAGE);
        assert!(e.message.contains("exists"), "{}", e.message);
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no stray file"
        );
    }
}
