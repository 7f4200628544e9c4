//! The private-pcscd harness itself: exactly its readers (up to pcsc-lite's
//! 16), restarts, teardown that leaves no process, mount or directory and
//! never touches the machine's /run/pcscd, the `pcsc-sandbox` script and
//! binary, loud failures (missing packages, no root, a failing or misnamed
//! sandboxed test).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use signer_e2e::pcsc_client::{establish, reader_names};
use signer_e2e::pcsc_sandbox::{
    CSOCK_ENV, SANDBOX_DIR_ENV, SANDBOX_TEST_ENV, Sandbox, SandboxConfig, SandboxError,
    run_sandboxed,
};
use signer_e2e::sandboxed_test;

const WAIT: Duration = Duration::from_secs(15);

sandboxed_test!(readers: 16,
    fn sixteen_readers_are_listed_by_name_and_come_back_after_a_restart(sandbox) {
        assert_eq!(sandbox.readers().len(), 16);
        let mut expected: Vec<String> = sandbox.readers().iter().map(|r| r.name.clone()).collect();
        expected.sort();
        expected.dedup();
        assert_eq!(expected.len(), 16, "reader names are unique");
        assert!(expected.contains(&"Yubico YubiKey OTP+FIDO+CCID 00 00".to_string()));
        assert!(expected.contains(&"Yubico YubiKey OTP+FIDO+CCID 15 00 00".to_string()));
        let ports: std::collections::BTreeSet<u16> = sandbox.readers().iter().map(|r| r.port).collect();
        assert_eq!(ports.len(), 16, "ports are unique");

        let ctx = establish(WAIT).unwrap();
        let mut names = reader_names(&ctx).unwrap();
        names.sort();
        assert_eq!(names, expected);
        drop(ctx);

        let before = sandbox.pcscd_pid();
        sandbox.restart_pcscd().unwrap();
        assert_ne!(sandbox.pcscd_pid(), before);
        let ctx = establish(WAIT).unwrap();
        let mut names = reader_names(&ctx).unwrap();
        names.sort();
        assert_eq!(names, expected);
    }
);

fn run_real_dir_listing() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/run/pcscd")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn teardown_leaves_no_process_mount_or_directory_and_the_real_run_pcscd_is_untouched() {
    let real_before = run_real_dir_listing();
    let mut sandbox = Sandbox::start_for_subprocesses(SandboxConfig::with_readers(2))
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = sandbox.pcscd_pid().expect("pcscd pid");
    let dir = sandbox.dir().to_path_buf();
    assert!(sandbox.is_pcscd_running());

    // A subprocess client reaches it.
    let out = sandbox
        .command("opensc-tool")
        .arg("--list-readers")
        .output()
        .expect("opensc-tool (package opensc) is needed");
    let list = String::from_utf8_lossy(&out.stdout);
    for r in sandbox.readers() {
        assert!(list.contains(&r.name), "{} missing:\n{list}", r.name);
    }

    // The bind mount exists in pcscd's namespace only.
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert!(
        theirs
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some("/run/pcscd")),
        "pcscd sees its private /run/pcscd"
    );
    let ours = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !ours.contains(&dir.display().to_string()),
        "no sandbox mount in our namespace"
    );
    assert_eq!(
        run_real_dir_listing(),
        real_before,
        "the real /run/pcscd is untouched"
    );

    drop(sandbox);
    // Gone and reaped (or the pid already reused by something else).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(&dir.display().to_string()),
        "pcscd {pid} is gone"
    );
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| !s.contains("(pcscd) Z")),
        "pcscd {pid} was reaped"
    );
    assert!(!dir.exists(), "{} removed", dir.display());
    assert_eq!(run_real_dir_listing(), real_before);
    let ours = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!ours.contains(&dir.display().to_string()));
}

#[test]
fn impossible_reader_counts_are_refused_before_starting_anything() {
    for n in [0, 17] {
        match Sandbox::start_for_subprocesses(SandboxConfig::with_readers(n)) {
            Err(SandboxError::Config(m)) => assert!(m.contains("1 to 16"), "{m}"),
            other => panic!("{n} readers: expected a configuration error, got {other:?}"),
        }
    }
}

fn exports(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

fn get<'a>(vars: &'a [(String, String)], key: &str) -> &'a str {
    vars.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{key} not exported: {vars:?}"))
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn list_readers_with(vars: &[(String, String)]) -> String {
    ok(
        Command::new("opensc-tool")
            .arg("--list-readers")
            .env(CSOCK_ENV, get(vars, CSOCK_ENV))
            .output()
            .expect("opensc-tool"),
        "opensc-tool --list-readers",
    )
}

fn pcscd_pid_of(dir: &str) -> u32 {
    std::fs::read_to_string(Path::new(dir).join("pcscd.spawned.pid"))
        .expect("the sandbox records its pcscd pid")
        .trim()
        .parse()
        .expect("a pid")
}

/// No process `pid` serving the sandbox in `dir` any more: gone, a zombie
/// nobody reaps (empty command line; its parent, the binary, has exited),
/// or the pid was reused by an unrelated process.
fn process_gone(pid: u32, dir: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map_or(true, |c| !String::from_utf8_lossy(&c).contains(dir))
}

#[test]
fn the_binary_starts_restarts_and_stops_a_detached_sandbox() {
    let bin = env!("CARGO_BIN_EXE_pcsc-sandbox");
    let out = ok(
        Command::new(bin)
            .args(["start", "--readers", "3"])
            .output()
            .unwrap(),
        "pcsc-sandbox start",
    );
    let vars = exports(&out);
    let dir = get(&vars, SANDBOX_DIR_ENV).to_string();
    assert_eq!(
        get(&vars, CSOCK_ENV),
        format!("{dir}/run/pcscd.comm"),
        "{out}"
    );
    assert_eq!(get(&vars, "SIGNER_VPCD"), get(&vars, "SIGNER_VPCD_0"));
    assert_eq!(
        get(&vars, "SIGNER_PCSC_READER"),
        get(&vars, "SIGNER_PCSC_READER_0")
    );
    assert_eq!(
        get(&vars, "SIGNER_PCSC_READER_2"),
        "Yubico YubiKey OTP+FIDO+CCID 2 00 00"
    );
    assert!(
        !out.contains("SIGNER_PCSC_READER_3"),
        "one reader per entry: {out}"
    );
    let first_pid = pcscd_pid_of(&dir);
    let list = list_readers_with(&vars);
    for i in 0..3 {
        assert!(
            list.contains(get(&vars, &format!("SIGNER_PCSC_READER_{i}"))),
            "{list}"
        );
    }

    // The binary finds the sandbox through $SIGNER_PCSC_SANDBOX.
    let status = ok(
        Command::new(bin)
            .arg("status")
            .env(SANDBOX_DIR_ENV, &dir)
            .output()
            .unwrap(),
        "status",
    );
    assert!(status.contains("pcscd:     running"), "{status}");
    assert!(status.contains(get(&vars, "SIGNER_VPCD_2")), "{status}");

    ok(
        Command::new(bin).args(["restart", &dir]).output().unwrap(),
        "restart",
    );
    let second_pid = pcscd_pid_of(&dir);
    assert_ne!(first_pid, second_pid);
    assert!(process_gone(first_pid, &dir));
    let list = list_readers_with(&vars);
    assert!(
        list.contains("Yubico YubiKey OTP+FIDO+CCID 00 00"),
        "{list}"
    );

    let stop = ok(
        Command::new(bin).args(["stop", &dir]).output().unwrap(),
        "stop",
    );
    assert!(stop.contains("unset PCSCLITE_CSOCK_NAME"), "{stop}");
    assert!(process_gone(second_pid, &dir));
    assert!(!Path::new(&dir).exists());

    // Stopping again names the problem.
    let again = Command::new(bin).args(["stop", &dir]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not a pcsc sandbox"));
    let usage = Command::new(bin).arg("frobnicate").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn the_script_prints_exports_and_cleans_up() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pcsc-sandbox.sh");
    let out = ok(
        Command::new(&script).arg("start").output().unwrap(),
        "pcsc-sandbox.sh start",
    );
    let vars = exports(&out);
    let dir = get(&vars, SANDBOX_DIR_ENV).to_string();
    let list = list_readers_with(&vars);
    // By default exactly one reader, named as a plugged-in YubiKey 5's.
    assert_eq!(
        get(&vars, "SIGNER_PCSC_READER"),
        "Yubico YubiKey OTP+FIDO+CCID 00 00"
    );
    assert_eq!(
        reader_lines(&list),
        ["Yubico YubiKey OTP+FIDO+CCID 00 00"],
        "{list}"
    );
    let pid = pcscd_pid_of(&dir);
    ok(
        Command::new(&script)
            .arg("stop")
            .env(SANDBOX_DIR_ENV, &dir)
            .output()
            .unwrap(),
        "pcsc-sandbox.sh stop",
    );
    assert!(process_gone(pid, &dir));
    assert!(!Path::new(&dir).exists());
}

/// The reader names `opensc-tool --list-readers` printed.
fn reader_lines(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _nr: usize = f.next()?.parse().ok()?;
            let _card = f.next()?;
            Some(f.collect::<Vec<_>>().join(" "))
        })
        .collect()
}

#[test]
fn the_binary_takes_a_reader_name_and_debians_two_slot_vpcd() {
    let bin = env!("CARGO_BIN_EXE_pcsc-sandbox");
    let out = ok(
        Command::new(bin)
            .args([
                "start",
                "--name",
                "Virtual PCD",
                "--two-slot-vpcd",
                "--readers",
                "3",
            ])
            .output()
            .unwrap(),
        "pcsc-sandbox start --two-slot-vpcd",
    );
    let vars = exports(&out);
    let dir = get(&vars, SANDBOX_DIR_ENV).to_string();
    let list = list_readers_with(&vars);
    // Debian's vpcd: two readers per entry, rounded up to even.
    let mut names = reader_lines(&list);
    names.sort();
    assert_eq!(
        names,
        [
            "Virtual PCD 00 00",
            "Virtual PCD 00 01",
            "Virtual PCD 1 00 00",
            "Virtual PCD 1 00 01"
        ],
        "{list}"
    );
    let port = |i: usize| -> u16 {
        let a = get(&vars, &format!("SIGNER_VPCD_{i}"));
        a.rsplit_once(':').unwrap().1.parse().unwrap()
    };
    assert_eq!(
        port(1),
        port(0) + 1,
        "the second slot listens on the next port"
    );
    // Restart (re-read from the state file) keeps driver and names.
    ok(
        Command::new(bin).args(["restart", &dir]).output().unwrap(),
        "restart",
    );
    let mut again = reader_lines(&list_readers_with(&vars));
    again.sort();
    assert_eq!(again, names);
    ok(
        Command::new(bin).args(["stop", &dir]).output().unwrap(),
        "stop",
    );
    assert!(!Path::new(&dir).exists());

    let bad = Command::new(bin)
        .args(["start", "--name", "bad\"name"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("reader name"));
    let usage = Command::new(bin)
        .args(["start", "--name"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn missing_prerequisites_fail_with_a_message_naming_them() {
    // A copy of the binary anyone may run (the build tree may be private).
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("pcsc-sandbox");
    std::fs::copy(env!("CARGO_BIN_EXE_pcsc-sandbox"), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = Command::new(&bin)
        .arg("start")
        .env("SIGNER_VPCD_DRIVER", "/nonexistent/libifdvpcd.so")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("vpcd-one-slot.sh")
            && err.contains("vsmartcard-vpcd")
            && err.contains("/nonexistent/libifdvpcd.so"),
        "{err}"
    );

    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .arg("start")
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs root"), "{err}");
}

/// Not a test by itself: the child that
/// `a_failing_sandboxed_body_fails_its_test_loudly` runs. It fails only when
/// run as that child.
#[test]
fn helper_fails_when_run_as_a_sandbox_child() {
    if std::env::var(SANDBOX_TEST_ENV)
        .is_ok_and(|t| t == "helper_fails_when_run_as_a_sandbox_child")
    {
        run_sandboxed(
            module_path!(),
            "helper_fails_when_run_as_a_sandbox_child",
            SandboxConfig::default(),
            |_| panic!("deliberate failure inside the sandbox"),
        );
    }
}

fn panic_message(r: std::thread::Result<()>) -> String {
    let e = r.expect_err("expected the sandboxed test to fail");
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_failing_sandboxed_body_fails_its_test_loudly() {
    let r = std::panic::catch_unwind(|| {
        run_sandboxed(
            module_path!(),
            "helper_fails_when_run_as_a_sandbox_child",
            SandboxConfig::default(),
            |_| {},
        )
    });
    let m = panic_message(r);
    assert!(m.contains("failed in the pcscd sandbox"), "{m}");
}

#[test]
fn a_misnamed_sandboxed_test_fails_instead_of_passing_silently() {
    let r = std::panic::catch_unwind(|| {
        run_sandboxed(
            module_path!(),
            "no_such_test",
            SandboxConfig::default(),
            |_| {},
        )
    });
    let m = panic_message(r);
    assert!(m.contains("did not run exactly this test"), "{m}");
}
