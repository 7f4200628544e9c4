//! A caller running as another user (spawned with `setpriv` as uid/gid 65534):
//! first kept out by the socket's permissions, then, once the socket's group
//! lets it connect, judged by the policy: allowed to list by its rule, denied
//! signing (default deny), audited with its own uid; then allowed to sign
//! after SIGHUP reloads a policy with a rule for it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use daemon_support::{Daemon, DaemonSetup, bin};

const NOBODY: u32 = 65534;

fn as_nobody(d: &Daemon, args: &[&str]) -> Output {
    Command::new("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(bin("signerctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .env_remove("SIGNER_SOCKET")
        .output()
        .expect("setpriv (util-linux) is needed")
}

#[test]
fn another_uid_is_kept_out_then_denied_by_policy_and_audited() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test spawns a client as another user and needs root"
    );
    let mut d = Daemon::start(DaemonSetup {
        config: format!(
            "[[rule]]\nname = \"nobody-lists\"\nusers = [{NOBODY}]\noperations = [\"list\"]\nkeys = [\"*\"]\n"
        ),
        ..DaemonSetup::default()
    });
    // The temporary directory is private (0700); let others traverse it so
    // that only the socket's own directory and mode decide.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));

    // 1. The socket is 0660 in a 0750 directory owned by the daemon's user:
    //    another user cannot even connect.
    let out = as_nobody(&d, &["list"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));

    // 2. Give the caller the socket's group (what membership in `signer`
    //    does in production): it connects, and the policy decides.
    let run_dir = d.socket.parent().unwrap().to_path_buf();
    std::os::unix::fs::chown(&run_dir, None, Some(NOBODY)).unwrap();
    std::os::unix::fs::chown(&d.socket, None, Some(NOBODY)).unwrap();

    let out = as_nobody(&d, &["list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&d.keys[0].key_id));

    let out = as_nobody(
        &d,
        &[
            "sign", "--key", "9c", "--format", "base64", "--digest", &digest,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PERMISSION_DENIED"), "{stderr}");
    assert!(stderr.contains(&format!("uid {NOBODY}")), "{stderr}");
    assert!(stderr.contains("default deny"), "{stderr}");

    // SIGHUP reloads the policy: a rule letting uid 65534 sign with 9c.
    std::fs::write(
        d.dir.path().join("signer.toml"),
        format!(
            "[[rule]]\nname = \"nobody-lists\"\nusers = [{NOBODY}]\noperations = [\"list\"]\nkeys = [\"*\"]\n\n[[rule]]\nname = \"nobody-signs-9c\"\nusers = [{NOBODY}]\noperations = [\"sign\"]\nkeys = [\"9c\"]\n"
        ),
    )
    .unwrap();
    d.signal(rustix::process::Signal::HUP);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = as_nobody(
            &d,
            &[
                "sign", "--key", "9c", "--format", "base64", "--digest", &digest,
            ],
        );
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "policy not reloaded: {}",
            d.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // The daemon's own uid (root here) may still sign.
    let out = d
        .signerctl()
        .args([
            "sign", "--key", "9c", "--format", "base64", "--digest", &digest,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(d.terminate().success());
    let lines = d.audit_lines();
    let denied: Vec<_> = lines
        .iter()
        .filter(|l| l["uid"] == NOBODY && l["outcome"] == "denied")
        .collect();
    assert!(!denied.is_empty(), "{lines:#?}");
    assert_eq!(denied[0]["operation"], "sign");
    assert_eq!(denied[0]["code"], "PERMISSION_DENIED");
    assert_eq!(denied[0]["rule"], "default-deny");
    assert_eq!(denied[0]["gid"], NOBODY);
    assert!(denied[0]["pid"].as_u64().unwrap() > 0);
    // `signerctl list` is ListTokens + ListKeys; each `signerctl sign`
    // without --padding also asks GetPublicKey (operation "list") for the
    // key's type, so those are counted apart.
    let listed = lines
        .iter()
        .filter(|l| {
            l["uid"] == NOBODY
                && l["outcome"] == "ok"
                && l["operation"] == "list"
                && (l["rpc"] == "ListTokens" || l["rpc"] == "ListKeys")
        })
        .collect::<Vec<_>>();
    assert_eq!(listed.len(), 2, "ListTokens and ListKeys by uid {NOBODY}");
    let lookups = lines
        .iter()
        .filter(|l| l["uid"] == NOBODY && l["rpc"] == "GetPublicKey")
        .collect::<Vec<_>>();
    assert!(
        !lookups.is_empty(),
        "signerctl sign looks the key up: {lines:#?}"
    );
    assert!(
        lookups
            .iter()
            .all(|l| l["outcome"] == "ok" && l["operation"] == "list"),
        "{lookups:#?}"
    );
    assert!(
        listed
            .iter()
            .chain(lookups.iter())
            .all(|l| l["rule"] == "nobody-lists")
    );
    let signed: Vec<_> = lines
        .iter()
        .filter(|l| l["uid"] == NOBODY && l["outcome"] == "ok" && l["operation"] == "sign")
        .collect();
    assert_eq!(signed.len(), 1);
    assert_eq!(signed[0]["rule"], "nobody-signs-9c");
}
