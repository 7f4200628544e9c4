//! The deployment files, checked by the tools that will read them: systemd
//! units with `systemd-analyze verify`, udev rules with `udevadm test`, the
//! polkit rule executed by a JavaScript engine against polkit's API. Each
//! check also runs on a deliberately broken copy, to prove it can fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing: run tests/scripts/install-deps.sh (the deployment tests never skip)"
    );
}

/// Copy a unit directory, pointing ExecStart at the freshly built binary
/// (verify checks that the command exists).
fn staged_units(kind: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("signer-daemon/systemd").join(kind)).unwrap() {
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let text = text.replace(
            "/usr/bin/signer-daemon",
            env!("CARGO_BIN_EXE_signer-daemon"),
        );
        std::fs::write(dir.path().join(entry.file_name()), text).unwrap();
    }
    dir
}

/// `systemd-analyze verify`: Ok(()) only if it exits 0 and prints nothing
/// (it reports unknown keys and bad values as warnings with status 0).
fn verify_units(dir: &Path, user: bool) -> Result<(), String> {
    let runtime = tempfile::tempdir().unwrap();
    let mut c = Command::new("systemd-analyze");
    if user {
        c.arg("--user").env("XDG_RUNTIME_DIR", runtime.path());
    }
    c.args(["verify", "--man=no"])
        .arg(dir.join("signer-daemon.socket"))
        .arg(dir.join("signer-daemon.service"));
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() && stderr.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("status {:?}: {stderr}", out.status))
    }
}

fn directives(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn systemd_units_verify_and_carry_the_hardening() {
    need("systemd-analyze");
    let system = staged_units("system");
    verify_units(system.path(), false).unwrap();
    let user = staged_units("user");
    verify_units(user.path(), true).unwrap();

    let service = directives(&system.path().join("signer-daemon.service"));
    for required in [
        "User=signer-daemon",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX",
        "CapabilityBoundingSet=",
    ] {
        assert!(service.iter().any(|l| l == required), "missing {required}");
    }
    let socket = directives(&system.path().join("signer-daemon.socket"));
    for required in [
        "ListenStream=/run/signer/signer.sock",
        "SocketMode=0660",
        "SocketGroup=signer",
    ] {
        assert!(socket.iter().any(|l| l == required), "missing {required}");
    }
    let user_socket = directives(&user.path().join("signer-daemon.socket"));
    assert!(user_socket.contains(&"ListenStream=%t/signer/signer.sock".to_string()));
    // The tmpfiles entry makes the directory 0750 for the daemon and the group.
    let tmpfiles = directives(&repo().join("signer-daemon/systemd/tmpfiles.d/signer.conf"));
    assert_eq!(tmpfiles, ["d /run/signer 0750 signer-daemon signer -"]);

    // The check can fail: a misspelt hardening key is reported.
    let broken = staged_units("system");
    let p = broken.path().join("signer-daemon.service");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace("ProtectSystem=strict", "ProtectSystm=strict"),
    )
    .unwrap();
    let e = verify_units(broken.path(), false).unwrap_err();
    assert!(e.contains("ProtectSystm"), "{e}");
}

/// Run `udevadm test` with `rules` as the only local rules directory, in a
/// private mount namespace (nothing on the host changes). Returns the lines
/// that mention the file.
fn udevadm_lines(rules: &Path) -> Vec<String> {
    let device = [
        "/sys/class/tty/tty0",
        "/sys/class/net/lo",
        "/sys/class/mem/null",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("no device in /sys to run udevadm test against");
    let script = format!(
        "mount --bind {} /etc/udev/rules.d && exec udevadm test --action=add {device}",
        rules.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("70-signer-yubikey.rules"),
        "udevadm did not read the rules: {text}"
    );
    text.lines()
        .filter(|l| l.contains("70-signer-yubikey.rules") && !l.contains("Reading rules file"))
        // The group exists only where sysusers.d/signer.conf was installed.
        .filter(|l| !l.contains("Unknown group 'signer'"))
        .map(String::from)
        .collect()
}

#[test]
fn udev_rules_parse_and_cover_ccid_yubikeys() {
    need("udevadm");
    need("unshare");
    assert!(
        rustix::process::geteuid().is_root(),
        "the udev rules test needs root (a private mount namespace)"
    );
    let src = repo().join("udev/70-signer-yubikey.rules");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&src, dir.path().join("70-signer-yubikey.rules")).unwrap();
    let complaints = udevadm_lines(dir.path());
    assert!(complaints.is_empty(), "udevadm: {complaints:#?}");

    let rules = directives(&src);
    assert!(rules.iter().any(|l| l.contains("ATTR{idVendor}!=\"1050\"")));
    let products = rules
        .iter()
        .find(|l| l.starts_with("ATTR{idProduct}=="))
        .unwrap();
    for pid in [
        "0111", "0112", "0115", "0116", "0404", "0405", "0406", "0407",
    ] {
        assert!(products.contains(pid), "{pid} missing");
    }
    for no_ccid in [
        "0010", "0110", "0113", "0114", "0120", "0401", "0402", "0403", "0410",
    ] {
        assert!(
            !products.contains(no_ccid),
            "{no_ccid} has no CCID interface"
        );
    }
    assert!(products.contains("GROUP=\"signer\"") && products.contains("MODE=\"0660\""));

    // The check can fail.
    let broken = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&src).unwrap();
    std::fs::write(
        broken.path().join("70-signer-yubikey.rules"),
        text.replace("GROUP=\"signer\"", "GRUOP=\"signer\""),
    )
    .unwrap();
    let complaints = udevadm_lines(broken.path());
    assert!(
        complaints.iter().any(|l| l.contains("GRUOP")),
        "{complaints:#?}"
    );
}

const POLKIT_HARNESS: &str = r#"
const fs = require('fs');
const rules = [];
const polkit = {
  Result: { YES: 'yes', NO: 'no', AUTH_ADMIN: 'auth_admin', NOT_HANDLED: null },
  addRule: (f) => rules.push(f),
  addAdminRule: () => {},
  log: () => {},
};
new Function('polkit', fs.readFileSync(process.argv[2], 'utf8'))(polkit);
const decide = ([id, user, reader]) => {
  const action = { id, lookup: (k) => (k === 'reader' ? reader : undefined) };
  const subject = { user, isInGroup: () => false };
  for (const r of rules) {
    const v = r(action, subject);
    if (v !== null && v !== undefined) return v;
  }
  return 'unhandled';
};
console.log(JSON.stringify(JSON.parse(process.argv[3]).map(decide)));
"#;

fn polkit_decisions(rules: &Path, cases: &serde_json::Value) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let harness = dir.path().join("harness.js");
    std::fs::write(&harness, POLKIT_HARNESS).unwrap();
    let out = Command::new("node")
        .arg(&harness)
        .arg(rules)
        .arg(cases.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn polkit_rule_lets_only_the_daemon_user_reach_pcscd_and_yubikeys() {
    need("node");
    let rules = repo().join("udev/polkit/50-signer-daemon-pcscd.rules");
    let pcsc = "org.debian.pcsc-lite.access_pcsc";
    let card = "org.debian.pcsc-lite.access_card";
    let cases = serde_json::json!([
        [pcsc, "signer-daemon", null],
        [pcsc, "alice", null],
        [card, "signer-daemon", "Yubico YubiKey OTP+FIDO+CCID 00 00"],
        [card, "signer-daemon", "Yubico Yubikey 4 OTP+U2F+CCID 01 00"],
        [card, "signer-daemon", "Virtual PCD 00 00"],
        [card, "signer-daemon", null],
        [card, "alice", "Yubico YubiKey OTP+FIDO+CCID 00 00"],
        ["org.freedesktop.login1.reboot", "signer-daemon", null],
    ]);
    assert_eq!(
        polkit_decisions(&rules, &cases),
        [
            "yes",
            "unhandled",
            "yes",
            "yes",
            "no",
            "no",
            "unhandled",
            "unhandled"
        ]
    );
    // The check can fail: a rule for the wrong user changes the answers.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.rules");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&rules)
            .unwrap()
            .replace("\"signer-daemon\"", "\"signer\""),
    )
    .unwrap();
    assert_ne!(polkit_decisions(&broken, &cases)[0], "yes");
}
