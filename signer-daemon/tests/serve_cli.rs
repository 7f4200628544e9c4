//! `signer-daemon serve` refuses to start, with a message naming the problem,
//! when its configuration or socket path is unsafe or wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn serve(args: &[&str], dir: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_signer-daemon"))
        .arg("serve")
        .args(args)
        .arg("--audit-log")
        .arg(dir.join("audit.jsonl"))
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("SIGNER_PIN")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refuses_to_start_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let (code, err) = serve(&["--socket", sock.to_str().unwrap()], dir.path());
    assert_ne!(code, Some(0));
    assert!(err.contains("no token to serve"), "{err}");
    assert!(!sock.exists());
}

#[test]
fn refuses_a_symlinked_or_foreign_socket_path() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere.sock");
    drop(std::os::unix::net::UnixListener::bind(&target).unwrap());
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let token = format!("emulated:{}", dir.path().join("t.state").display());
    let (code, err) = serve(
        &["--token", &token, "--socket", link.to_str().unwrap()],
        dir.path(),
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("is a symlink"), "{err}");

    let file = dir.path().join("file.sock");
    std::fs::write(&file, "keep me").unwrap();
    let (code, err) = serve(
        &["--token", &token, "--socket", file.to_str().unwrap()],
        dir.path(),
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    if rustix::process::geteuid().is_root() {
        let foreign = dir.path().join("foreign.sock");
        drop(std::os::unix::net::UnixListener::bind(&foreign).unwrap());
        std::os::unix::fs::chown(&foreign, Some(65534), None).unwrap();
        let (code, err) = serve(
            &["--token", &token, "--socket", foreign.to_str().unwrap()],
            dir.path(),
        );
        assert_ne!(code, Some(0));
        assert!(err.contains("belongs to uid 65534"), "{err}");
    }
}

#[test]
fn refuses_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    for (config, needle) in [
        ("sockett = \"/x\"\n", "unknown field"),
        ("async_threads = 0\n", "at least one thread"),
        (
            "[[rule]]\nusers = [\"no-such-user-xyz\"]\noperations = [\"sign\"]\nkeys = [\"*\"]\n",
            "no user named",
        ),
        (
            "[[rule]]\nusers = [1000]\noperations = [\"sign\"]\nkeys = [\"9z\"]\n",
            "neither",
        ),
    ] {
        let cfg = dir.path().join("signer.toml");
        std::fs::write(&cfg, config).unwrap();
        let (code, err) = serve(
            &[
                "--token",
                "emulated:/nonexistent",
                "--config",
                cfg.to_str().unwrap(),
                "--socket",
                sock.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert_ne!(code, Some(0));
        assert!(err.contains(needle), "{config}: {err}");
        assert!(!sock.exists(), "no socket is left behind");
    }
}
