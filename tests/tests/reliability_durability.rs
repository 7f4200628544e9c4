//! Reliability suite, durability part (issue 12): what survives a crash and
//! what the audit log guarantees when it cannot be written.
//!
//! - `crash`: the daemon killed with SIGKILL in the middle of a burst from 16
//!   clients, then restarted (three times): every signature a client
//!   received verifies (RustCrypto, against the key the library made) and
//!   has exactly one `ok` audit line; no torn line.
//! - `crash`: the emulated token's state file, its writer (`state-churner`,
//!   changing the PIN and generating keys without pause) killed with SIGKILL
//!   at random points 200 times: each time the file opens and holds either
//!   the state before the interrupted operation or the one after it, every
//!   key in it still signs verifiably, and no temporary copy of the state a
//!   kill left behind survives the next open.
//! - `audit`: the audit log on a small tmpfs that fills up, a file made
//!   unwritable (immutable, then SIGHUP), a file removed under the daemon,
//!   SIGHUP rotation under load: signatures are withheld (UNAVAILABLE) while
//!   the log cannot be written, the daemon recovers by itself, no line is
//!   torn, every received signature has exactly one record.
//!
//! Each case prints `RELIABILITY<TAB>group<TAB>case<TAB>PASS|FAIL<TAB>figures`
//! (tests/scripts/reliability.sh collects them). The tmpfs cases need root:
//! each re-runs itself in a child under `unshare --mount` (a private mount
//! namespace), like the pcscd sandbox; without root they fail saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use daemon_support::{KeySpec, bin, make_token, verify};
use signer_client::Client;
use signer_lib::emulator::{ApproveTouch, EmulatedToken, InitOptions};
use signer_lib::{HashAlgorithm, KeyInfo, Pin, SlotId, Token};
use signer_proto::v1 as pb;

// ----- the RELIABILITY line -----

/// Print the case's line, then fail the test if anything went wrong.
fn report(group: &str, case: &str, figures: &str, failures: &[String]) {
    let verdict = if failures.is_empty() { "PASS" } else { "FAIL" };
    println!("RELIABILITY\t{group}\t{case}\t{verdict}\t{figures}");
    assert!(
        failures.is_empty(),
        "{group}/{case}: {}",
        failures.join("; ")
    );
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

// ----- a daemon that can be killed and restarted on the same files -----

/// The daemon under test: this workspace's, or the one named by
/// `SIGNER_RELIABILITY_DAEMON` (to show that these cases catch a defect, run
/// them against a build without its fix).
fn daemon_binary() -> PathBuf {
    std::env::var_os("SIGNER_RELIABILITY_DAEMON")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin("signer-daemon"))
}

/// The daemon binary on an emulated token whose files outlive it: the same
/// state file, audit log and socket path across restarts.
struct Served {
    dir: PathBuf,
    state: PathBuf,
    audit: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    key: KeyInfo,
    child: Option<Child>,
    starts: usize,
}

impl Served {
    /// A token (P-256 in 9c, PIN once, touch always, touches approved) in
    /// `dir`, the audit log at `audit`.
    fn new(dir: &Path, audit: PathBuf) -> Served {
        let (state, keys) = make_token(dir, 12_000_012, &[KeySpec::p256(SlotId::Signature)]);
        std::fs::write(dir.join("pin"), "123456\n").unwrap();
        std::fs::write(dir.join("signer.toml"), "").unwrap();
        Served {
            dir: dir.to_path_buf(),
            state,
            audit,
            socket: dir.join("run").join("signer.sock"),
            log: dir.join("daemon.log"),
            key: keys.into_iter().next().unwrap(),
            child: None,
            starts: 0,
        }
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(daemon_binary())
            .arg("serve")
            .arg("--token")
            .arg(format!("emulated:{}", self.state.display()))
            .arg("--config")
            .arg(self.dir.join("signer.toml"))
            .arg("--pin-file")
            .arg(self.dir.join("pin"))
            .arg("--audit-log")
            .arg(&self.audit)
            .arg("--socket")
            .arg(&self.socket)
            .args(["--log-format", "json"])
            .env_remove("SIGNER_PIN")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env("SIGNER_EMULATED_TOUCH", "approve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Listening: a stale socket from a killed daemon does not answer, so
        // a connection succeeds only once this one has replaced it.
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon exited ({status}): {}", self.log_text());
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            assert!(
                Instant::now() < until,
                "the daemon did not listen within 30 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    fn kill9(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
    }

    fn terminate(&mut self) {
        self.signal(rustix::process::Signal::TERM);
        let mut c = self.child.take().unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        while c.try_wait().unwrap().is_none() {
            assert!(Instant::now() < until, "the daemon did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn client(&self) -> Client {
        Client::connect(&self.socket)
            .await
            .unwrap()
            .with_timeout(Duration::from_secs(20))
    }

    fn key_ref(&self) -> pb::KeyRef {
        pb::KeyRef {
            key: Some(pb::key_ref::Key::KeyId(self.key.key_id.clone())),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One signature a client received: checked against the key the library
/// made (not the daemon's listing) before it counts.
async fn sign_one(
    client: &mut Client,
    key_ref: pb::KeyRef,
    key: &KeyInfo,
) -> Result<Vec<u8>, signer_client::Error> {
    let digest = random_bytes::<32>().to_vec();
    let r = client
        .sign_unary(
            key_ref,
            pb::HashAlgorithm::Sha256,
            digest.clone(),
            pb::SignatureFormat::Der,
        )
        .await?;
    assert!(
        verify(key, &digest, &r.signature),
        "a released signature does not verify over its digest"
    );
    Ok(digest)
}

// ----- reading the audit log -----

/// What a set of audit files holds.
#[derive(Default, Debug)]
struct AuditScan {
    lines: usize,
    /// Lines that are not one JSON object (a torn or glued record).
    torn: Vec<String>,
    /// `ok` Sign lines per digest (hex).
    ok_signs: HashMap<String, usize>,
    /// Records written twice (the same line, time to the microsecond and
    /// request id included, more than once).
    duplicate_records: usize,
}

impl AuditScan {
    fn of(files: &[PathBuf]) -> AuditScan {
        let mut scan = AuditScan::default();
        let mut seen = HashSet::new();
        for file in files {
            let bytes = std::fs::read(file).unwrap_or_default();
            if !bytes.is_empty() && bytes.last() != Some(&b'\n') {
                scan.torn
                    .push(format!("{} does not end in a newline", file.display()));
            }
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                scan.lines += 1;
                let v: serde_json::Value = match serde_json::from_slice(line) {
                    Ok(v @ serde_json::Value::Object(_)) => v,
                    _ => {
                        scan.torn.push(String::from_utf8_lossy(line).into_owned());
                        continue;
                    }
                };
                if !seen.insert(line.to_vec()) {
                    scan.duplicate_records += 1;
                }
                if v["rpc"] == "Sign" && v["outcome"] == "ok" {
                    let d = v["digest"].as_str().unwrap_or_default().to_string();
                    *scan.ok_signs.entry(d).or_default() += 1;
                }
            }
        }
        scan
    }

    fn ok_lines(&self) -> usize {
        self.ok_signs.values().sum()
    }

    /// Received signatures without exactly one `ok` line, and withheld ones
    /// that have one.
    fn check(&self, received: &[Vec<u8>], withheld: &[Vec<u8>]) -> Vec<String> {
        let mut f = Vec::new();
        if !self.torn.is_empty() {
            f.push(format!(
                "{} torn or unparsable line(s), e.g. {:?}",
                self.torn.len(),
                self.torn[0]
            ));
        }
        let lost = received
            .iter()
            .filter(|d| !self.ok_signs.contains_key(&hex::encode(d)))
            .count();
        if lost > 0 {
            f.push(format!("{lost} received signature(s) without an ok line"));
        }
        let dup = self.ok_signs.values().filter(|&&n| n > 1).count();
        if dup > 0 {
            f.push(format!("{dup} digest(s) with more than one ok line"));
        }
        if self.duplicate_records > 0 {
            f.push(format!(
                "{} record(s) written twice",
                self.duplicate_records
            ));
        }
        let released = withheld
            .iter()
            .filter(|d| self.ok_signs.contains_key(&hex::encode(d)))
            .count();
        if released > 0 {
            f.push(format!("{released} withheld signature(s) have an ok line"));
        }
        f
    }
}

fn lost_count(scan: &AuditScan, received: &[Vec<u8>]) -> usize {
    received
        .iter()
        .filter(|d| !scan.ok_signs.contains_key(&hex::encode(d)))
        .count()
}

// ----- crash: SIGKILL during a burst -----

const BURST_CLIENTS: usize = 16;

/// 16 clients sign until `stop` or their first error; returns the digests
/// each received, and how many calls failed.
async fn burst(
    served: &Served,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<(Vec<Vec<u8>>, usize)>> {
    let mut tasks = Vec::new();
    for _ in 0..BURST_CLIENTS {
        let mut c = served.client().await;
        let (key_ref, key) = (served.key_ref(), served.key.clone());
        let (stop, ok) = (stop.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut errors = 0;
            while !stop.load(Ordering::Relaxed) {
                match sign_one(&mut c, key_ref.clone(), &key).await {
                    Ok(d) => {
                        got.push(d);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (got, errors)
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_sigkill_during_a_burst_from_16_clients_then_restart() {
    const ROUNDS: usize = 3;
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit.jsonl");
    let mut served = Served::new(tmp.path(), audit.clone());
    let mut received: Vec<Vec<u8>> = Vec::new();
    let mut failed_calls = 0;
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        served.start();
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let tasks = burst(&served, stop.clone(), ok.clone()).await;
        // Kill once the burst is in full swing, at a point that varies.
        let target = 100 + usize::from(random_bytes::<1>()[0]);
        let until = Instant::now() + Duration::from_secs(60);
        while ok.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < until, "round {round}: the burst stalled");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        served.kill9();
        let mut round_errors = 0;
        for t in tasks {
            let (got, errors) = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a client hung after the daemon was killed")
                .unwrap();
            received.extend(got);
            round_errors += errors;
        }
        stop.store(true, Ordering::Relaxed);
        if round_errors == 0 {
            failures.push(format!(
                "round {round}: no client had a call in flight at the kill"
            ));
        }
        failed_calls += round_errors;
        // What the crash left, before a restart could heal anything.
        let scan = AuditScan::of(std::slice::from_ref(&audit));
        failures.extend(
            scan.check(&received, &[])
                .into_iter()
                .map(|f| format!("after kill {round}: {f}")),
        );
    }
    // Restarted once more: it serves, appends whole lines after the crash's.
    served.start();
    let mut c = served.client().await;
    for _ in 0..BURST_CLIENTS {
        match sign_one(&mut c, served.key_ref(), &served.key).await {
            Ok(d) => received.push(d),
            Err(e) => failures.push(format!("after the last restart: {e}")),
        }
    }
    served.terminate();
    // The token's state survived the kills too.
    if let Err(e) = EmulatedToken::open(&served.state, Arc::new(ApproveTouch)) {
        failures.push(format!("state file after the kills: {e}"));
    }
    let scan = AuditScan::of(std::slice::from_ref(&audit));
    failures.extend(scan.check(&received, &[]));
    let not_received = scan.ok_lines().saturating_sub(received.len());
    report(
        "crash",
        "sigkill_during_16_client_burst",
        &format!(
            "kills={ROUNDS} clients={BURST_CLIENTS} received={} verified={} failed_calls={failed_calls} \
             audit_lines={} ok_lines_not_delivered={not_received} torn={} lost={}",
            received.len(),
            received.len(),
            scan.lines,
            scan.torn.len(),
            lost_count(&scan, &received)
        ),
        &failures,
    );
}

// ----- crash: the emulated token's state file, killed 200 times -----

/// What the churner said before it was killed.
#[derive(Default)]
struct ChurnerSaid {
    ready: bool,
    /// The last completed step: (step, pin, keys).
    done: Option<(u64, String, String)>,
    /// The step begun after it (or after the start), if any: (step, what, arg).
    begun: Option<(u64, String, String)>,
}

fn parse_churner(lines: &[String]) -> ChurnerSaid {
    let mut said = ChurnerSaid::default();
    for line in lines {
        let w: Vec<&str> = line.split(' ').collect();
        match w.as_slice() {
            ["READY"] => said.ready = true,
            ["BEGIN", step, what, arg] => {
                said.begun = Some((step.parse().unwrap(), what.to_string(), arg.to_string()))
            }
            ["DONE", step, pin, keys @ ..] => {
                said.done = Some((step.parse().unwrap(), pin.to_string(), keys.join("")));
                said.begun = None;
            }
            _ => panic!("state-churner said {line:?}"),
        }
    }
    said
}

/// The state writer's temporary files (`.token.state.tmp-PID-RANDOM`) in `dir`.
fn temp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".token.state.tmp-")
        })
        .count()
}

/// `slot=key_id,...` sorted, as the churner prints it.
fn keys_of(keys: &[KeyInfo]) -> String {
    let mut v: Vec<String> = keys
        .iter()
        .map(|k| format!("{}={}", k.slot, k.key_id))
        .collect();
    v.sort();
    v.join(",")
}

fn slot_map(keys: &str) -> BTreeMap<String, String> {
    keys.split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn crash_state_file_killed_200_times_during_keygen_and_pin_changes() {
    const KILLS: usize = 200;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("token.state");
    drop(
        EmulatedToken::init(
            &path,
            &InitOptions {
                serial: Some(12_000_013),
                ..InitOptions::default()
            },
        )
        .unwrap(),
    );
    let churner = env!("CARGO_BIN_EXE_state-churner");
    // The state known to be on disk: PIN, keys, next step.
    let (mut pin, mut keys, mut step) = ("123456".to_string(), String::new(), 0u64);
    let (mut old_states, mut new_states) = (0, 0);
    let (mut during_pin, mut during_keygen, mut between) = (0, 0, 0);
    let mut signatures = 0;
    let mut left_by_kills = 0;
    let mut failures: Vec<String> = Vec::new();
    for kill in 0..KILLS {
        let mut child = Command::new(churner)
            .arg(&path)
            .arg(&pin)
            .arg(step.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("kill {kill}: state-churner did not start: {err}");
            }
        }
        // A random point within the next few operations (each is a key
        // generation or PIN change and an fsync'd atomic file replacement).
        let delay = u32::from_le_bytes(random_bytes::<4>()) % 30_000;
        std::thread::sleep(Duration::from_micros(u64::from(delay)));
        if child.try_wait().unwrap().is_some() {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("kill {kill}: state-churner stopped by itself: {err}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        let said = parse_churner(&lines);
        assert!(said.ready, "kill {kill}: {lines:?}");
        if let Some((s, p, k)) = &said.done {
            // Completed and reported: certainly on disk.
            (pin, keys, step) = (p.clone(), k.clone(), s + 1);
        }
        match said.begun.as_ref().map(|b| b.1.as_str()) {
            Some("pin") => during_pin += 1,
            Some("keygen") => during_keygen += 1,
            _ => between += 1,
        }

        // A kill between the temporary file's creation and its rename leaves
        // the temporary (a copy of the state, private keys included) behind;
        // the next open, which holds the lock, must remove it.
        left_by_kills += temp_files(tmp.path());
        // The file: present, parses, and is the old or the new state.
        let mut token = match EmulatedToken::open(&path, Arc::new(ApproveTouch)) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("kill {kill}: the state file does not open: {e}"));
                break;
            }
        };
        let kept = temp_files(tmp.path());
        if kept > 0 {
            failures.push(format!(
                "kill {kill}: {kept} temporary copy(ies) of the state survive the next open"
            ));
        }
        let listed = token.list_keys().unwrap();
        let now_keys = keys_of(&listed);
        let is_new = match &said.begun {
            Some((s, what, arg)) if what == "pin" => {
                assert_eq!(*s, step);
                if now_keys != keys {
                    failures.push(format!(
                        "kill {kill} (PIN change): keys changed: {keys} -> {now_keys}"
                    ));
                }
                // Old PIN or new PIN; a wrong guess costs one retry, which the
                // right one restores.
                let old_ok = token.verify_pin(&Pin::parse_pin(&pin).unwrap()).is_ok();
                let new_ok = !old_ok && token.verify_pin(&Pin::parse_pin(arg).unwrap()).is_ok();
                if !old_ok && !new_ok {
                    failures.push(format!(
                        "kill {kill} (PIN change): neither the old nor the new PIN verifies"
                    ));
                }
                if new_ok {
                    pin = arg.clone();
                }
                new_ok
            }
            Some((s, what, slot)) if what == "keygen" => {
                assert_eq!(*s, step);
                let (before, after) = (slot_map(&keys), slot_map(&now_keys));
                let others_same = before
                    .iter()
                    .filter(|(k, _)| *k != slot)
                    .all(|(k, v)| after.get(k) == Some(v))
                    && after.keys().all(|k| k == slot || before.contains_key(k));
                let changed = after.get(slot) != before.get(slot);
                if !others_same || (changed && !after.contains_key(slot)) {
                    failures.push(format!(
                        "kill {kill} (keygen in {slot}): neither old nor new: {keys} -> {now_keys}"
                    ));
                }
                if token.verify_pin(&Pin::parse_pin(&pin).unwrap()).is_err() {
                    failures.push(format!("kill {kill} (keygen): the PIN no longer verifies"));
                }
                changed
            }
            _ => {
                if now_keys != keys {
                    failures.push(format!("kill {kill}: keys changed with no operation begun"));
                }
                if token.verify_pin(&Pin::parse_pin(&pin).unwrap()).is_err() {
                    failures.push(format!("kill {kill}: the PIN no longer verifies"));
                }
                false
            }
        };
        if is_new {
            new_states += 1;
            step += 1;
        } else {
            old_states += 1;
        }
        keys = now_keys;
        let counters = token.retry_counters().unwrap();
        if counters.pin != 3 {
            failures.push(format!(
                "kill {kill}: PIN retries {} (3 expected)",
                counters.pin
            ));
        }
        // Every key in the file still signs, and verifiably.
        for k in &listed {
            let digest = random_bytes::<32>();
            match token.sign_digest(k.slot, HashAlgorithm::Sha256, &digest) {
                Ok(sig) if verify(k, &digest, &sig) => signatures += 1,
                Ok(_) => failures.push(format!("kill {kill}: key {} signs wrongly", k.slot)),
                Err(e) => failures.push(format!("kill {kill}: key {} cannot sign: {e}", k.slot)),
            }
        }
        drop(token);
        if !failures.is_empty() {
            break;
        }
    }
    report(
        "crash",
        "state_file_200_kills",
        &format!(
            "kills={KILLS} during_pin_change={during_pin} during_keygen={during_keygen} between={between} \
             old_state={old_states} new_state={new_states} steps_done={step} keys_signed={signatures} \
             temp_files_left_by_kills={left_by_kills} bad_states={}",
            failures.len()
        ),
        &failures,
    );
    assert!(
        during_pin > 0 && during_keygen > 0,
        "the kills never hit a PIN change or a key generation"
    );
}

// ----- audit: the log on a tmpfs of a private mount namespace -----

const MOUNT_NS_ENV: &str = "SIGNER_RELIABILITY_MOUNT_NS";

/// Run `body` with a small tmpfs (`size`) mounted on a fresh directory, in a
/// private mount namespace: the test re-runs itself alone in a child of the
/// test binary under `unshare --mount --propagation private`, where it may
/// mount without touching the host. The child's RELIABILITY lines are
/// passed on; its whole output is shown when it fails.
fn with_private_tmpfs(test_name: &str, size: &str, body: impl FnOnce(&Path)) {
    if std::env::var(MOUNT_NS_ENV).is_ok_and(|t| t == test_name) {
        let mnt = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755")])
            .arg("signer-audit-test")
            .arg(mnt.path())
            .status()
            .expect("mount (util-linux) is needed");
        assert!(
            status.success(),
            "mount -t tmpfs failed in the private namespace"
        );
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg("-l").arg(self.0).status();
            }
        }
        let _unmount = Unmount(mnt.path());
        body(mnt.path());
        return;
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "{test_name} needs root (CI runs as root): it mounts a small tmpfs in a private \
         mount namespace (unshare --mount) to fill the audit log's filesystem"
    );
    for (tool, package) in [
        ("unshare", "util-linux"),
        ("mount", "mount"),
        ("chattr", "e2fsprogs"),
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        assert!(
            found,
            "{test_name} needs `{tool}` (Debian package {package})"
        );
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(MOUNT_NS_ENV, test_name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start unshare");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let until = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    for line in stdout.lines().filter(|l| l.contains("RELIABILITY\t")) {
        let at = line.find("RELIABILITY\t").unwrap_or(0);
        println!("{}", &line[at..]);
    }
    let ok = status.is_some_and(|s| s.success()) && stdout.contains("test result: ok. 1 passed");
    if !ok {
        // Its RELIABILITY lines were passed on above: not twice.
        let rest: Vec<&str> = stdout
            .lines()
            .map(|l| l.find("RELIABILITY\t").map_or(l, |at| &l[..at]))
            .collect();
        let _ = std::io::stdout().write_all(
            format!(
                "--- child stdout ---\n{}\n--- child stderr ---\n{stderr}\n",
                rest.join("\n")
            )
            .as_bytes(),
        );
        panic!(
            "{test_name} failed in its private mount namespace ({}); its output is above",
            status.map_or("timed out after 300 s".to_string(), |s| s.to_string())
        );
    }
}

/// Sign `n` digests one after another; (received, withheld) digests. A
/// withheld one must be UNAVAILABLE naming the audit log.
async fn sign_n(
    served: &Served,
    n: usize,
    failures: &mut Vec<String>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut c = served.client().await;
    let (mut received, mut withheld) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let digest = random_bytes::<32>().to_vec();
        match c
            .sign_unary(
                served.key_ref(),
                pb::HashAlgorithm::Sha256,
                digest.clone(),
                pb::SignatureFormat::Der,
            )
            .await
        {
            Ok(r) => {
                if !verify(&served.key, &digest, &r.signature) {
                    failures.push("a released signature does not verify".into());
                }
                received.push(digest);
            }
            Err(e) => {
                if e.code() != Some(tonic::Code::Unavailable)
                    || !e.to_string().contains("audit log")
                {
                    failures.push(format!(
                        "a failed signature is not UNAVAILABLE naming the audit log: {e}"
                    ));
                }
                withheld.push(digest);
            }
        }
    }
    (received, withheld)
}

fn expect_all(
    what: &str,
    got: &(Vec<Vec<u8>>, Vec<Vec<u8>>),
    ok: bool,
    failures: &mut Vec<String>,
) {
    let (received, withheld) = got;
    if ok && !withheld.is_empty() {
        failures.push(format!(
            "{what}: {} of {} withheld",
            withheld.len(),
            received.len() + withheld.len()
        ));
    }
    if !ok && !received.is_empty() {
        failures.push(format!("{what}: {} signature(s) released", received.len()));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn audit_disk_full_withholds_then_recovers_without_a_torn_line() {
    with_private_tmpfs(
        "audit_disk_full_withholds_then_recovers_without_a_torn_line",
        "128k",
        |mnt| {
            runtime().block_on(async {
                let tmp = tempfile::tempdir().unwrap();
                let audit = mnt.join("audit.jsonl");
                let mut served = Served::new(tmp.path(), audit.clone());
                served.start();
                let mut failures = Vec::new();
                let (mut received, mut withheld) = sign_n(&served, 5, &mut failures).await;
                // Fill the filesystem: the log's last page has room for a few
                // records more, then a write is cut short (ENOSPC).
                let filler = mnt.join("filler");
                let mut f = std::fs::File::create(&filler).unwrap();
                while f.write_all(&[0u8; 4096]).is_ok() {}
                let _ = f.write_all(&[0u8; 1]);
                drop(f);
                let mut in_slack = 0;
                let mut first_failure = None;
                for i in 0..100 {
                    let (r, w) = sign_n(&served, 1, &mut failures).await;
                    in_slack += r.len();
                    received.extend(r);
                    if !w.is_empty() {
                        withheld.extend(w);
                        first_failure = Some(i);
                        break;
                    }
                }
                if first_failure.is_none() {
                    failures.push("100 signatures on a full disk were all released".into());
                }
                let size_at_failure = std::fs::metadata(&audit).unwrap().len();
                // Room left in the log's last allocated page when the write
                // failed: more than 0 means that write was cut short (it
                // filled the room, then ENOSPC) and was cut back off.
                let slack = {
                    use std::os::unix::fs::MetadataExt;
                    let m = std::fs::metadata(&audit).unwrap();
                    (m.blocks() * 512).saturating_sub(m.len())
                };
                // Still full: sequential and concurrent requests are withheld.
                let more = sign_n(&served, 10, &mut failures).await;
                expect_all("full disk, sequential", &more, false, &mut failures);
                withheld.extend(more.1.iter().cloned());
                received.extend(more.0.iter().cloned());
                let mut tasks = Vec::new();
                for _ in 0..8 {
                    let c = served.client().await;
                    let (key_ref, key) = (served.key_ref(), served.key.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut c = c;
                        let d = random_bytes::<32>().to_vec();
                        let r = c
                            .sign_unary(key_ref, pb::HashAlgorithm::Sha256, d.clone(), pb::SignatureFormat::Der)
                            .await;
                        (d, r.map(|r| verify(&key, &r.digest, &r.signature)))
                    }));
                }
                for t in tasks {
                    let (d, r) = t.await.unwrap();
                    match r {
                        Ok(_) => {
                            failures.push("a concurrent signature on a full disk was released".into());
                            received.push(d);
                        }
                        Err(_) => withheld.push(d),
                    }
                }
                let size_full = std::fs::metadata(&audit).unwrap().len();
                if size_full != size_at_failure {
                    failures.push(format!(
                        "the log changed while full: {size_at_failure} -> {size_full} bytes"
                    ));
                }
                let scan = AuditScan::of(std::slice::from_ref(&audit));
                failures.extend(scan.check(&received, &withheld).into_iter().map(|f| format!("while full: {f}")));
                // Space again: served without a restart.
                std::fs::remove_file(&filler).unwrap();
                let after = sign_n(&served, 20, &mut failures).await;
                expect_all("after freeing space", &after, true, &mut failures);
                received.extend(after.0);
                if !served.is_running() {
                    failures.push("the daemon stopped".into());
                }
                served.terminate();
                let scan = AuditScan::of(std::slice::from_ref(&audit));
                failures.extend(scan.check(&received, &withheld));
                if scan.ok_lines() != received.len() {
                    failures.push(format!("{} ok lines for {} signatures", scan.ok_lines(), received.len()));
                }
                report(
                    "audit",
                    "disk_full_tmpfs",
                    &format!(
                        "tmpfs=128k released_in_slack={in_slack} short_write_room={slack}B withheld={} recovered={} ok_lines={} \
                         torn={} lost={} duplicated={} restarts=0",
                        withheld.len(),
                        20,
                        scan.ok_lines(),
                        scan.torn.len(),
                        lost_count(&scan, &received),
                        scan.ok_signs.values().filter(|&&n| n > 1).count()
                    ),
                    &failures,
                );
            });
        },
    );
}

fn chattr(flag: &str, path: &Path) {
    let s = Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .expect("chattr (e2fsprogs)");
    assert!(s.success(), "chattr {flag} {}", path.display());
}

/// Wait until the daemon's log mentions `what` (at most 10 s).
fn wait_log(served: &Served, what: &str, times: usize) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if served.log_text().matches(what).count() >= times {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn audit_unwritable_file_withholds_then_recovers() {
    with_private_tmpfs(
        "audit_unwritable_file_withholds_then_recovers",
        "1m",
        |mnt| {
            runtime().block_on(async {
                let tmp = tempfile::tempdir().unwrap();
                let audit = mnt.join("audit.jsonl");
                let mut served = Served::new(tmp.path(), audit.clone());
                served.start();
                let mut failures = Vec::new();
                let first = sign_n(&served, 5, &mut failures).await;
                expect_all("before", &first, true, &mut failures);
                let mut received = first.0;
                // Immutable: not even root may open it for writing. SIGHUP makes
                // the daemon reopen it (as after logrotate), which fails.
                chattr("+i", &audit);
                served.signal(rustix::process::Signal::HUP);
                if !wait_log(&served, "audit log reopen failed", 1) {
                    failures.push("SIGHUP: no reopen failure logged".into());
                }
                let during = sign_n(&served, 10, &mut failures).await;
                expect_all("unwritable", &during, false, &mut failures);
                let withheld = during.1;
                chattr("-i", &audit);
                let after = sign_n(&served, 10, &mut failures).await;
                expect_all("writable again", &after, true, &mut failures);
                received.extend(after.0);
                served.terminate();
                let scan = AuditScan::of(std::slice::from_ref(&audit));
                failures.extend(scan.check(&received, &withheld));
                if scan.ok_lines() != received.len() {
                    failures.push(format!(
                        "{} ok lines for {} signatures",
                        scan.ok_lines(),
                        received.len()
                    ));
                }
                report(
                    "audit",
                    "unwritable_file_sighup",
                    &format!(
                        "withheld={} recovered={} ok_lines={} torn={} lost={} restarts=0",
                        withheld.len(),
                        10,
                        scan.ok_lines(),
                        scan.torn.len(),
                        lost_count(&scan, &received)
                    ),
                    &failures,
                );
            });
        },
    );
}

#[test]
fn audit_file_removed_under_the_daemon_loses_no_record() {
    with_private_tmpfs(
        "audit_file_removed_under_the_daemon_loses_no_record",
        "1m",
        |mnt| {
            runtime().block_on(async {
            let tmp = tempfile::tempdir().unwrap();
            let audit = mnt.join("audit.jsonl");
            let mut served = Served::new(tmp.path(), audit.clone());
            served.start();
            let mut failures = Vec::new();
            let before = sign_n(&served, 5, &mut failures).await;
            expect_all("before", &before, true, &mut failures);
            let kept_before = std::fs::read(&audit).unwrap();
            let scan_before = AuditScan::of(std::slice::from_ref(&audit));
            failures.extend(scan_before.check(&before.0, &[]));
            // Removed: the daemon must notice (a record written to the
            // unlinked file would be lost) and recreate the file.
            std::fs::remove_file(&audit).unwrap();
            let removed = sign_n(&served, 5, &mut failures).await;
            expect_all("file removed", &removed, true, &mut failures);
            // Removed and the path taken by a directory: nothing can be
            // written there, so signatures are withheld ...
            // (The file recreated after the removal is kept aside.)
            let second = mnt.join("audit.jsonl.second");
            std::fs::rename(&audit, &second).unwrap();
            std::fs::create_dir(&audit).unwrap();
            let blocked = sign_n(&served, 5, &mut failures).await;
            expect_all("path is a directory", &blocked, false, &mut failures);
            // ... until it can be created again.
            std::fs::remove_dir(&audit).unwrap();
            let after = sign_n(&served, 5, &mut failures).await;
            expect_all("path free again", &after, true, &mut failures);
            served.terminate();
            // The first file's records were the operator's to keep (saved
            // above); the records since the removal must all be in the files
            // the daemon recreated at the path.
            let scan = AuditScan::of(&[second.clone(), audit.clone()]);
            let since: Vec<Vec<u8>> = removed.0.iter().chain(&after.0).cloned().collect();
            failures.extend(scan.check(&since, &blocked.1));
            if scan.ok_lines() != since.len() {
                failures.push(format!(
                    "{} ok lines in the new file for {} signatures since the removal",
                    scan.ok_lines(),
                    since.len()
                ));
            }
            report(
                "audit",
                "file_removed_under_daemon",
                &format!(
                    "before_removal={} (kept {} bytes) after_removal={} withheld_while_path_is_dir={} \
                     recovered={} ok_lines={} torn={} lost={} restarts=0",
                    before.0.len(),
                    kept_before.len(),
                    removed.0.len(),
                    blocked.1.len(),
                    after.0.len(),
                    scan.ok_lines(),
                    scan.torn.len(),
                    lost_count(&scan, &since)
                ),
                &failures,
            );
        });
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_sighup_rotation_under_load_loses_and_duplicates_nothing() {
    const ROTATIONS: usize = 10;
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let audit = logs.join("audit.jsonl");
    let mut served = Served::new(tmp.path(), audit.clone());
    served.start();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let tasks = burst(&served, stop.clone(), ok.clone()).await;
    let mut rotated = Vec::new();
    for i in 1..=ROTATIONS {
        tokio::time::sleep(Duration::from_millis(150)).await;
        // logrotate's move-then-signal (no copytruncate).
        let to = logs.join(format!("audit.jsonl.{i}"));
        std::fs::rename(&audit, &to).unwrap();
        served.signal(rustix::process::Signal::HUP);
        rotated.push(to);
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::Relaxed);
    let mut received = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (got, e) = t.await.unwrap();
        received.extend(got);
        errors += e;
    }
    served.terminate();
    let mut failures = Vec::new();
    if errors > 0 {
        failures.push(format!("{errors} client call(s) failed during rotation"));
    }
    let mut files = rotated.clone();
    files.push(audit.clone());
    let per_file: Vec<usize> = files
        .iter()
        .map(|f| AuditScan::of(std::slice::from_ref(f)).ok_lines())
        .collect();
    let scan = AuditScan::of(&files);
    failures.extend(scan.check(&received, &[]));
    if scan.ok_lines() != received.len() {
        failures.push(format!(
            "{} ok lines for {} signatures",
            scan.ok_lines(),
            received.len()
        ));
    }
    if per_file.iter().filter(|&&n| n > 0).count() < ROTATIONS {
        failures.push(format!(
            "records did not follow the rotations: {per_file:?}"
        ));
    }
    report(
        "audit",
        "sighup_rotation_under_load",
        &format!(
            "clients={BURST_CLIENTS} rotations={ROTATIONS} signatures={} ok_lines={} files={} \
             torn={} lost={} duplicated={} errors={errors}",
            received.len(),
            scan.ok_lines(),
            files.len(),
            scan.torn.len(),
            lost_count(&scan, &received),
            scan.ok_signs.values().filter(|&&n| n > 1).count()
        ),
        &failures,
    );
}
