//! `signerctl tuf` end to end: the real daemon serving two emulated tokens,
//! root metadata signed through it with a touch, and python-tuf and
//! securesystemslib (from the e2e venv) as the independent verifiers.
//!
//! Needs the venv of `tests/scripts/install-deps.sh` (tuf, securesystemslib,
//! cryptography from the Python package index); without it every test here
//! fails naming what is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

const DAEMON: &str = env!("CARGO_BIN_EXE_signer-daemon");
const SIGNERCTL: &str = env!("CARGO_BIN_EXE_signerctl");
const TOKEN_A: u32 = 11_111_111;
const TOKEN_B: u32 = 22_222_222;
const TOKEN_C: u32 = 33_333_333;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python, with tuf and securesystemslib importable; panics
/// naming what is missing (these tests never skip).
fn python() -> PathBuf {
    let venv = std::env::var_os("SIGNER_E2E_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/lib/signer-e2e-venv"));
    let py = venv.join("bin").join("python");
    assert!(
        py.exists(),
        "{} is missing: run tests/scripts/install-deps.sh (it installs tuf and securesystemslib from PyPI into the venv; SIGNER_E2E_VENV overrides its path)",
        py.display()
    );
    let out = Command::new(&py)
        .args(["-c", "import tuf, securesystemslib, cryptography"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python-tuf or securesystemslib cannot be imported from {}: {} (run tests/scripts/install-deps.sh)",
        py.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    py
}

struct Out {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Out {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

fn output(cmd: &mut Command) -> Out {
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: o.stdout,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `tuf_check.py ARGS`: python-tuf's verdict (exit 0 = accepted).
fn tuf_check(args: &[&Path]) -> Out {
    let mut c = Command::new(python());
    c.arg(repo().join("tests/clients/python/tuf_check.py"));
    c.args(args);
    output(&mut c)
}

fn tuf_check_cmd(cmd: &str, files: &[&Path]) -> Out {
    let mut c = Command::new(python());
    c.arg(repo().join("tests/clients/python/tuf_check.py"))
        .arg(cmd);
    c.args(files);
    output(&mut c)
}

/// The daemon serving two emulated tokens: A (serial 11111111) with a
/// P-256 key in 9c and a P-384 key in 9d, B (22222222) with a P-256 key
/// in 9c; all with PIN policy once and touch policy always (the emulated
/// touch source approves).
struct Ceremony {
    dir: tempfile::TempDir,
    socket: PathBuf,
    log: PathBuf,
    child: Child,
}

fn keygen(state: &Path, slot: &str, alg: &str) {
    let out = output(
        Command::new(DAEMON)
            .args(["keygen", "--token"])
            .arg(format!("emulated:{}", state.display()))
            .args([
                "--slot",
                slot,
                "--alg",
                alg,
                "--pin-policy",
                "once",
                "--touch-policy",
                "always",
            ])
            .env("SIGNER_PIN", "123456")
            .env("SIGNER_EMULATED_TOUCH", "approve")
            .env_remove("SIGNER_MGMT_KEY"),
    );
    assert_eq!(out.code, 0, "keygen {slot} {alg}: {}", out.stderr);
}

impl Ceremony {
    fn start() -> Ceremony {
        Ceremony::start_with_touch("approve")
    }

    /// With the emulated touch source `approve` or `deny`.
    fn start_with_touch(touch: &str) -> Ceremony {
        Ceremony::start_with(
            &[
                (TOKEN_A, &[("9c", "p256"), ("9d", "p384")][..]),
                (TOKEN_B, &[("9c", "p256")][..]),
            ],
            touch,
        )
    }

    /// A and B as [`Ceremony::start`] has them, and token C (33333333)
    /// with an Ed25519 key in 9c, an RSA-2048 key in 9d, an RSA-3072 key
    /// in 9a and an X25519 key in 9e.
    fn start_with_ed25519_and_rsa() -> Ceremony {
        Ceremony::start_with(
            &[
                (TOKEN_A, &[("9c", "p256"), ("9d", "p384")][..]),
                (TOKEN_B, &[("9c", "p256")][..]),
                (
                    TOKEN_C,
                    &[
                        ("9c", "ed25519"),
                        ("9d", "rsa2048"),
                        ("9a", "rsa3072"),
                        ("9e", "x25519"),
                    ][..],
                ),
            ],
            "approve",
        )
    }

    /// These tokens (serial, [(slot, algorithm)]), with the touch source `touch`.
    fn start_with(spec: &[(u32, &[(&str, &str)])], touch: &str) -> Ceremony {
        let dir = tempfile::tempdir().unwrap();
        let mut tokens = Vec::new();
        for &(serial, keys) in spec {
            let state = dir.path().join(format!("{serial}.state"));
            let out = output(
                Command::new(DAEMON)
                    .args(["emulated", "init", "--state"])
                    .arg(&state)
                    .args(["--serial", &serial.to_string()]),
            );
            assert_eq!(out.code, 0, "emulated init: {}", out.stderr);
            for (slot, alg) in keys {
                keygen(&state, slot, alg);
            }
            tokens.push(state);
        }
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "123456\n").unwrap();
        let config = dir.path().join("signer.toml");
        std::fs::write(&config, "").unwrap();
        let socket = dir.path().join("run").join("signer.sock");
        let log = dir.path().join("daemon.log");
        let mut cmd = Command::new(DAEMON);
        cmd.arg("serve");
        for t in &tokens {
            cmd.arg("--token").arg(format!("emulated:{}", t.display()));
        }
        let child = cmd
            .arg("--socket")
            .arg(&socket)
            .arg("--config")
            .arg(&config)
            .arg("--pin-file")
            .arg(&pin)
            .arg("--audit-log")
            .arg(dir.path().join("audit.jsonl"))
            .env_remove("SIGNER_PIN")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env("SIGNER_EMULATED_TOUCH", touch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut c = Ceremony {
            dir,
            socket,
            log,
            child,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&c.socket).is_err() {
            if let Some(s) = c.child.try_wait().unwrap() {
                panic!(
                    "the daemon exited ({s}): {}",
                    std::fs::read_to_string(&c.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < until,
                "the daemon did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ctl(&self, args: &[&str]) -> Out {
        output(
            Command::new(SIGNERCTL)
                .arg("--socket")
                .arg(&self.socket)
                .env_remove("SIGNER_SOCKET")
                .current_dir(self.dir.path())
                .args(args),
        )
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Out {
        let out = self.ctl(args);
        assert_eq!(
            out.code,
            0,
            "signerctl {args:?}: {}{}",
            out.stderr,
            out.text()
        );
        out
    }

    /// `tuf key` of a token's slot into NAME; returns (path, keyid).
    fn key(&self, token: u32, slot: &str, name: &str) -> (PathBuf, String) {
        self.ok(&[
            "tuf",
            "key",
            "--key",
            slot,
            "--token",
            &token.to_string(),
            "-o",
            name,
        ]);
        let path = self.path(name);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        (path, v["keyid"].as_str().unwrap().to_string())
    }

    /// `tuf sign` with a token's slot, in place, with extra arguments.
    fn sign(&self, token: u32, slot: &str, file: &str, extra: &[&str]) -> Out {
        let t = token.to_string();
        let mut args = vec!["tuf", "sign", "--key", slot, "--token", &t, file];
        args.extend_from_slice(extra);
        self.ok(&args)
    }
}

impl Drop for Ceremony {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn canonical_vectors_agree_byte_for_byte_with_securesystemslib() {
    use signer_daemon::ctl::tuf::canonical::canonical_json;
    let file = repo().join("signer-daemon/src/ctl/tuf/testdata/canonical_vectors.json");
    let mut c = Command::new(python());
    c.arg(repo().join("tests/clients/python/tuf_canonical.py"))
        .arg(&file);
    let out = output(&mut c);
    assert_eq!(out.code, 0, "tuf_canonical.py: {}", out.stderr);
    let python: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vectors: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let theirs = python["vectors"].as_array().unwrap();
    assert_eq!(theirs.len(), vectors.len());
    let mut compared = 0;
    for (v, p) in vectors.iter().zip(theirs) {
        let name = v["name"].as_str().unwrap();
        assert_eq!(p["name"], v["name"]);
        let input = v["input"].as_str().unwrap();
        let ours = canonical_json(input);
        if let Some(expected) = v["canonical"].as_str() {
            let sslib = hex::decode(p["canonical_hex"].as_str().unwrap_or_else(|| {
                panic!("{name}: securesystemslib refused it: {}", p["refused"])
            }))
            .unwrap();
            assert_eq!(
                sslib,
                expected.as_bytes(),
                "{name}: securesystemslib vs the file"
            );
            assert_eq!(
                ours.unwrap(),
                sslib,
                "{name}: signerctl vs securesystemslib"
            );
            compared += 1;
        } else {
            // Inputs signerctl refuses: the file says whether
            // securesystemslib refuses them too or is more lenient (then
            // refusing is the safe side: no signature python-tuf would
            // compute differently).
            assert!(ours.is_err(), "{name}: signerctl accepted it");
            match v["securesystemslib"].as_str().unwrap() {
                "refuses" => assert!(
                    p.get("refused").is_some(),
                    "{name}: securesystemslib accepted it: {p}"
                ),
                "accepts" => assert!(
                    p.get("canonical_hex").is_some(),
                    "{name}: securesystemslib refused it: {p}"
                ),
                other => panic!("{name}: securesystemslib: {other}"),
            }
        }
    }
    assert!(compared >= 20, "only {compared} vectors compared");
    eprintln!(
        "{compared} vectors agree with securesystemslib {}",
        python["securesystemslib"]
    );
}

#[test]
fn tuf_key_is_the_key_and_key_id_securesystemslib_computes_p256_and_p384() {
    let c = Ceremony::start();
    for (slot, scheme) in [("9c", "ecdsa-sha2-nistp256"), ("9d", "ecdsa-sha2-nistp384")] {
        let (path, keyid) = c.key(TOKEN_A, slot, &format!("{slot}.json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["key"]["keytype"], "ecdsa");
        assert_eq!(v["key"]["scheme"], scheme);
        assert_eq!(keyid.len(), 64);
        let check = tuf_check_cmd("key", &[&path]);
        assert_eq!(check.code, 0, "{}{}", check.text(), check.stderr);
        assert!(check.text().contains(&keyid), "{}", check.text());
    }
    // Stdout by default, the same key.
    let out = c.ok(&["tuf", "key", "--key", "9c", "--token", &TOKEN_A.to_string()]);
    assert_eq!(out.stdout, std::fs::read(c.path("9c.json")).unwrap());
    // An RSA/Ed25519 key would be refused, an empty slot is NOT_FOUND.
    let out = c.ctl(&["tuf", "key", "--key", "9e", "--token", &TOKEN_A.to_string()]);
    assert_eq!(out.code, 6, "{}", out.stderr);
}

/// One byte of `signed` changed (the last digit of the expiry year).
fn tamper(file: &Path, copy: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let at = text.find("\"expires\": \"20").unwrap() + "\"expires\": \"20".len() + 1;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'9' {
        b'8'
    } else {
        bytes[at] + 1
    };
    std::fs::write(copy, bytes).unwrap();
}

#[test]
fn a_root_signed_on_the_token_verifies_with_python_tuf_and_one_changed_byte_fails_p256_and_p384() {
    let c = Ceremony::start();
    for (slot, name) in [("9c", "p256"), ("9d", "p384")] {
        let (key, keyid) = c.key(TOKEN_A, slot, &format!("{name}.key.json"));
        let root = format!("{name}.root.json");
        c.ok(&[
            "tuf",
            "init",
            "--root-key",
            key.to_str().unwrap(),
            "-o",
            &root,
        ]);
        assert_eq!(
            tuf_check_cmd("verify-root", &[&c.path(&root)]).code,
            1,
            "unsigned is rejected"
        );
        let out = c.sign(TOKEN_A, slot, &root, &[]);
        // The touch prompt, before the card waited.
        assert!(
            out.stderr.contains("Touch your YubiKey now"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr
                .contains("1 of 1 required valid signatures (threshold met)"),
            "{}",
            out.stderr
        );
        let check = tuf_check_cmd("verify-root", &[&c.path(&root)]);
        assert_eq!(
            check.code,
            0,
            "python-tuf: {}{}",
            check.text(),
            check.stderr
        );
        assert!(
            check.text().contains("1 of threshold 1"),
            "{}",
            check.text()
        );
        let md: serde_json::Value =
            serde_json::from_slice(&std::fs::read(c.path(&root)).unwrap()).unwrap();
        assert_eq!(md["signatures"][0]["keyid"], keyid.as_str());
        // Through the daemon: its audit log has the signature of the
        // canonical bytes' digest, with the scheme's hash.
        let md = signer_daemon::ctl::tuf::metadata::Metadata::parse(
            &std::fs::read(c.path(&root)).unwrap(),
        )
        .unwrap();
        let (hash, digest) = match name {
            "p256" => ("sha256", hex::encode(sha2::Sha256::digest(&md.canonical))),
            _ => ("sha384", hex::encode(sha2::Sha384::digest(&md.canonical))),
        };
        let audit = std::fs::read_to_string(c.path("audit.jsonl")).unwrap();
        assert!(
            audit
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .any(|e| {
                    e["operation"] == "sign"
                        && e["outcome"] == "ok"
                        && e["token_serial"] == TOKEN_A
                        && e["slot"] == slot
                        && e["hash"] == hash
                        && e["digest"] == digest.as_str()
                }),
            "no audited {hash} signature of {digest}: {audit}"
        );
        let ours = c.ctl(&["tuf", "verify", &root]);
        assert_eq!(ours.code, 0, "{}", ours.text());
        assert!(
            ours.text().contains(&format!("{keyid}  valid")),
            "{}",
            ours.text()
        );

        let bad = c.path(&format!("{name}.tampered.json"));
        tamper(&c.path(&root), &bad);
        let check = tuf_check_cmd("verify-root", &[&bad]);
        assert_eq!(
            check.code,
            1,
            "python-tuf accepted a changed byte: {}",
            check.text()
        );
        assert!(
            check.text().contains("signed by 0/1 keys"),
            "{}",
            check.text()
        );
        let ours = c.ctl(&["tuf", "verify", bad.to_str().unwrap()]);
        assert_eq!(ours.code, 7, "{}", ours.text());
        assert!(ours.text().contains("INVALID"), "{}", ours.text());
    }
}

#[test]
fn threshold_two_needs_both_tokens_and_one_signature_fails_verify_with_a_report() {
    let c = Ceremony::start();
    let (ka, ida) = c.key(TOKEN_A, "9c", "a.json");
    let (kb, idb) = c.key(TOKEN_B, "9c", "b.json");
    c.ok(&[
        "tuf",
        "init",
        "--root-key",
        ka.to_str().unwrap(),
        "--root-key",
        kb.to_str().unwrap(),
        "--threshold",
        "2",
        "-o",
        "root.json",
    ]);
    std::fs::copy(c.path("root.json"), c.path("copy-b.json")).unwrap();
    let out = c.sign(TOKEN_A, "9c", "root.json", &[]);
    assert!(
        out.stderr.contains("1 of 2 required valid signatures"),
        "{}",
        out.stderr
    );

    let report = c.ctl(&["tuf", "verify", "root.json"]);
    assert_eq!(report.code, 7, "{}", report.text());
    let text = report.text();
    assert!(
        text.contains("1 of 2 required valid signatures: THRESHOLD NOT MET"),
        "{text}"
    );
    assert!(text.contains(&format!("{ida}  valid")), "{text}");
    assert!(text.contains(&format!("{idb}  not signed")), "{text}");
    let check = tuf_check_cmd("verify-root", &[&c.path("root.json")]);
    assert_eq!(check.code, 1, "python-tuf: {}", check.text());
    assert!(
        check.text().contains("signed by 1/2 keys"),
        "{}",
        check.text()
    );

    // The second token signs the same file: threshold 2 met.
    c.sign(TOKEN_B, "9c", "root.json", &[]);
    let report = c.ctl(&["tuf", "verify", "root.json", "--json"]);
    assert_eq!(report.code, 0, "{}", report.text());
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(json["checks"][0]["valid"], 2);
    assert_eq!(json["ok"], true);
    let check = tuf_check_cmd("verify-root", &[&c.path("root.json")]);
    assert_eq!(
        check.code,
        0,
        "python-tuf: {}{}",
        check.text(),
        check.stderr
    );

    // Or each token signs its own copy and the copies are merged.
    c.sign(TOKEN_B, "9c", "copy-b.json", &[]);
    std::fs::copy(c.path("copy-b.json"), c.path("only-b.json")).unwrap();
    c.ok(&[
        "tuf",
        "merge",
        "copy-b.json",
        "root.json",
        "-o",
        "merged.json",
    ]);
    let check = tuf_check_cmd("verify-root", &[&c.path("merged.json")]);
    assert_eq!(
        check.code,
        0,
        "python-tuf: {}{}",
        check.text(),
        check.stderr
    );
    assert_eq!(c.ctl(&["tuf", "verify", "only-b.json"]).code, 7);
}

#[test]
fn root_rotation_a_to_ab_to_b_is_accepted_by_python_tuf_trusted_metadata_set() {
    let c = Ceremony::start();
    let (ka, ida) = c.key(TOKEN_A, "9c", "a.json");
    let (kb, _) = c.key(TOKEN_B, "9c", "b.json");
    // v1: key A alone.
    c.ok(&[
        "tuf",
        "init",
        "--root-key",
        ka.to_str().unwrap(),
        "-o",
        "1.root.json",
    ]);
    c.sign(TOKEN_A, "9c", "1.root.json", &[]);
    // v2: keys A and B, threshold 2; signed by v1's A and v2's A and B.
    c.ok(&[
        "tuf",
        "rotate",
        "1.root.json",
        "--add-key",
        kb.to_str().unwrap(),
        "--threshold",
        "2",
        "-o",
        "2.root.json",
    ]);
    c.sign(TOKEN_A, "9c", "2.root.json", &["--root", "1.root.json"]);
    c.sign(TOKEN_B, "9c", "2.root.json", &["--root", "1.root.json"]);
    assert_eq!(
        c.ctl(&["tuf", "verify", "2.root.json", "--root", "1.root.json"])
            .code,
        0
    );
    // v3: key B alone; needs v2's threshold (A and B) and its own (B).
    c.ok(&[
        "tuf",
        "rotate",
        "2.root.json",
        "--remove-key",
        &ida,
        "--threshold",
        "1",
        "--expires-in",
        "200",
        "-o",
        "3.root.json",
    ]);
    std::fs::copy(c.path("3.root.json"), c.path("3.only-b.root.json")).unwrap();
    // A is not a root key of v3: refused without --root, accepted with the previous root.
    let out = c.ctl(&[
        "tuf",
        "sign",
        "--key",
        "9c",
        "--token",
        &TOKEN_A.to_string(),
        "3.root.json",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("is not listed for the root role"),
        "{}",
        out.stderr
    );
    c.sign(TOKEN_A, "9c", "3.root.json", &["--root", "2.root.json"]);
    c.sign(TOKEN_B, "9c", "3.root.json", &["--root", "2.root.json"]);
    let ours = c.ctl(&["tuf", "verify", "3.root.json", "--root", "2.root.json"]);
    assert_eq!(ours.code, 0, "{}", ours.text());

    let (r1, r2, r3) = (
        c.path("1.root.json"),
        c.path("2.root.json"),
        c.path("3.root.json"),
    );
    let check = tuf_check(&[Path::new("update-roots"), &r1, &r2, &r3]);
    assert_eq!(
        check.code,
        0,
        "python-tuf: {}{}",
        check.text(),
        check.stderr
    );
    assert!(
        check.text().contains("OK: updated to root v3"),
        "{}",
        check.text()
    );

    // v3 signed by B alone, while v2 required A as well: rejected.
    c.sign(
        TOKEN_B,
        "9c",
        "3.only-b.root.json",
        &["--root", "2.root.json"],
    );
    let bad = c.path("3.only-b.root.json");
    let check = tuf_check(&[Path::new("update-roots"), &r1, &r2, &bad]);
    assert_eq!(check.code, 1, "python-tuf accepted it: {}", check.text());
    assert!(check.text().contains("REJECTED"), "{}", check.text());
    assert!(
        check.text().contains("root was signed by 1/2 keys"),
        "{}",
        check.text()
    );
    let ours = c.ctl(&[
        "tuf",
        "verify",
        "3.only-b.root.json",
        "--root",
        "2.root.json",
    ]);
    assert_eq!(ours.code, 7, "{}", ours.text());
    assert!(
        ours.text()
            .contains("root role by the keys of root v2 (previous): 1 of 2"),
        "{}",
        ours.text()
    );
    // Alone (its own threshold) it looks fine: only the rotation rule catches it.
    assert_eq!(c.ctl(&["tuf", "verify", "3.only-b.root.json"]).code, 0);
    // And skipping a version is refused by both.
    let check = tuf_check(&[Path::new("update-roots"), &r1, &r3]);
    assert_eq!(check.code, 1, "{}", check.text());
    assert_eq!(
        c.ctl(&["tuf", "verify", "3.root.json", "--root", "1.root.json"])
            .code,
        7
    );
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn every_refusal_says_what_to_do_and_leaves_the_file_byte_for_byte_unchanged() {
    let c = Ceremony::start();
    let (ka, _) = c.key(TOKEN_A, "9c", "a.json");
    c.ok(&[
        "tuf",
        "init",
        "--root-key",
        ka.to_str().unwrap(),
        "-o",
        "root.json",
    ]);
    c.ok(&[
        "tuf",
        "init",
        "--root-key",
        ka.to_str().unwrap(),
        "--expires",
        "2020-01-01T00:00:00Z",
        "-o",
        "expired.json",
    ]);
    let root = std::fs::read_to_string(c.path("root.json")).unwrap();
    std::fs::write(
        c.path("mirrors.json"),
        root.replace("\"_type\": \"root\"", "\"_type\": \"mirrors\""),
    )
    .unwrap();
    std::fs::write(c.path("malformed.json"), &root[..root.len() / 2]).unwrap();
    std::fs::write(
        c.path("not-tuf.json"),
        "{\"name\": \"a package.json\", \"version\": \"1.0.0\"}\n",
    )
    .unwrap();
    std::fs::write(
        c.path("float.json"),
        root.replace("\"version\": 1", "\"version\": 1.0"),
    )
    .unwrap();

    let b = TOKEN_B.to_string();
    let a = TOKEN_A.to_string();
    let cases: &[(&str, &str, &str)] = &[
        ("mirrors.json", &a, "unknown _type \"mirrors\""),
        (
            "root.json",
            &b,
            "is not listed for the root role: keys has no entry",
        ),
        (
            "expired.json",
            &a,
            "signed.expires is 2020-01-01T00:00:00Z, in the past",
        ),
        ("malformed.json", &a, "not valid JSON (EOF while parsing"),
        (
            "not-tuf.json",
            &a,
            "not TUF metadata: there is no \"signed\"",
        ),
        ("float.json", &a, "has no canonical JSON form"),
    ];
    for (file, token, message) in cases {
        let before = std::fs::read(c.path(file)).unwrap();
        let listing = files_in(c.dir.path());
        let out = c.ctl(&["tuf", "sign", "--key", "9c", "--token", token, file]);
        assert_eq!(out.code, 2, "{file}: {}", out.stderr);
        assert!(
            out.stderr.contains(message),
            "{file}: {} (wanted {message:?})",
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!("{file} was not changed")),
            "{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("Touch your YubiKey"),
            "{file}: asked for a touch: {}",
            out.stderr
        );
        assert_eq!(
            std::fs::read(c.path(file)).unwrap(),
            before,
            "{file} changed"
        );
        assert_eq!(
            files_in(c.dir.path()),
            listing,
            "{file}: a file was left behind"
        );
    }
    // The two that --force overrides.
    for (file, token) in [("root.json", &b), ("expired.json", &a)] {
        let before = std::fs::read(c.path(file)).unwrap();
        let out = c.sign(token.parse().unwrap(), "9c", file, &["--force"]);
        assert!(out.stderr.contains("--force"), "{}", out.stderr);
        assert_ne!(std::fs::read(c.path(file)).unwrap(), before);
    }
    // The forced signature by B does not count: python-tuf still rejects.
    assert_eq!(
        tuf_check_cmd("verify-root", &[&c.path("root.json")]).code,
        1
    );
}

#[test]
fn dash_o_dash_writes_to_stdout_and_leaves_the_file_alone() {
    let c = Ceremony::start();
    let (ka, _) = c.key(TOKEN_A, "9d", "a384.json");
    c.ok(&[
        "tuf",
        "init",
        "--root-key",
        ka.to_str().unwrap(),
        "-o",
        "root.json",
    ]);
    let before = std::fs::read(c.path("root.json")).unwrap();
    let out = c.ok(&[
        "tuf",
        "sign",
        "--key",
        "9d",
        "--token",
        &TOKEN_A.to_string(),
        "root.json",
        "-o",
        "-",
    ]);
    assert_eq!(std::fs::read(c.path("root.json")).unwrap(), before);
    std::fs::write(c.path("signed.json"), &out.stdout).unwrap();
    let check = tuf_check_cmd("verify-root", &[&c.path("signed.json")]);
    assert_eq!(
        check.code,
        0,
        "python-tuf: {}{}",
        check.text(),
        check.stderr
    );
    // The signed file keeps `signed` byte for byte.
    let signed_of = |bytes: &[u8]| {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        text[text.find("\"signed\"").unwrap()..].to_string()
    };
    assert_eq!(signed_of(&out.stdout), signed_of(&before));
}

#[test]
fn targets_metadata_signed_with_a_root_listed_key_verifies_with_python_tuf() {
    let c = Ceremony::start();
    let (ka, _) = c.key(TOKEN_A, "9c", "a.json");
    let (kb, _) = c.key(TOKEN_B, "9c", "b.json");
    c.ok(&[
        "tuf",
        "init",
        "--root-key",
        ka.to_str().unwrap(),
        "--targets-key",
        kb.to_str().unwrap(),
        "-o",
        "root.json",
    ]);
    c.sign(TOKEN_A, "9c", "root.json", &[]);
    std::fs::write(
        c.path("targets.json"),
        "{\"signed\": {\"_type\": \"targets\", \"spec_version\": \"1.0.31\", \"version\": 1,\n \
         \"expires\": \"2099-01-01T00:00:00Z\", \"targets\": {\"file\": {\"length\": 1, \"hashes\": \
         {\"sha256\": \"00\"}}, \"file 2\": {\"length\": 2, \"hashes\": {\"sha256\": \"01\"}}}},\n \
         \"signatures\": []}\n",
    )
    .unwrap();
    // Without --root the key cannot be checked: signed, with a note.
    std::fs::copy(c.path("targets.json"), c.path("unchecked.json")).unwrap();
    let out = c.sign(TOKEN_B, "9c", "unchecked.json", &[]);
    assert!(
        out.stderr.contains("not checked against a root"),
        "{}",
        out.stderr
    );
    // With --root: A is not a targets key and is refused; B is.
    let out = c.ctl(&[
        "tuf",
        "sign",
        "--key",
        "9c",
        "--token",
        &TOKEN_A.to_string(),
        "targets.json",
        "--root",
        "root.json",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("not listed for the targets role: in the root (--root): roles.targets.keyids does not name it"), "{}", out.stderr);
    c.sign(TOKEN_B, "9c", "targets.json", &["--root", "root.json"]);
    let ours = c.ctl(&["tuf", "verify", "targets.json", "--root", "root.json"]);
    assert_eq!(ours.code, 0, "{}", ours.text());
    let ours = c.ctl(&["tuf", "verify", "targets.json"]);
    assert_eq!(ours.code, 2, "{}", ours.stderr);
    assert!(
        ours.stderr.contains("give it with --root ROOT.json"),
        "{}",
        ours.stderr
    );
    // python-tuf hashes the same canonical bytes (keys "file" < "file 2").
    let check = tuf_check_cmd(
        "verify-delegate",
        &[
            &c.path("root.json"),
            Path::new("targets"),
            &c.path("targets.json"),
        ],
    );
    assert_eq!(
        check.code,
        0,
        "python-tuf: {}{}",
        check.text(),
        check.stderr
    );
}

/// A seeded generator of JSON trees made of what canonical JSON is hard
/// about: keys that are prefixes of each other or hold quotes, backslashes,
/// controls, combining marks, private use and astral characters; integers
/// at the edges; nesting.
struct Trees(u64);

impl Trees {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "a",
            "b",
            "A",
            " ",
            "!",
            "\"",
            "#",
            "\\",
            "/",
            "\u{0}",
            "\u{1f}",
            "\n",
            "\t",
            "\u{7f}",
            "e\u{301}",
            "\u{e9}",
            "\u{212b}",
            "\u{e000}",
            "\u{ffff}",
            "\u{1f511}",
            "\u{10000}",
            "~",
            "0",
            "file",
        ];
        let n = self.next() % 4;
        (0..n).map(|_| self.pick(PIECES)).collect()
    }

    fn value(&mut self, depth: u32) -> serde_json::Value {
        use serde_json::Value;
        let kind = if depth >= 4 {
            self.next() % 4
        } else {
            self.next() % 7
        };
        match kind {
            0 => Value::Null,
            1 => Value::Bool(self.next() % 2 == 0),
            2 => {
                let edges = [0i64, -1, 1, i64::MIN, i64::MAX, 9_007_199_254_740_993, -42];
                match self.next() % 3 {
                    0 => Value::from(u64::MAX - self.next() % 3),
                    _ => Value::from(edges[(self.next() % edges.len() as u64) as usize]),
                }
            }
            3 => Value::String(self.string()),
            4 | 5 => {
                let n = self.next() % 5;
                let mut m = serde_json::Map::new();
                for _ in 0..n {
                    m.insert(self.string(), self.value(depth + 1));
                }
                Value::Object(m)
            }
            _ => Value::Array(
                (0..self.next() % 4)
                    .map(|_| self.value(depth + 1))
                    .collect(),
            ),
        }
    }
}

#[test]
fn random_trees_encode_as_securesystemslib_encodes_them() {
    use signer_daemon::ctl::tuf::canonical::canonical_json;
    let dir = tempfile::tempdir().unwrap();
    let mut trees = Trees(0x5eed_1234_abcd_0001);
    let vectors: Vec<serde_json::Value> = (0..2000)
        .map(|i| {
            let v = trees.value(0);
            serde_json::json!({"name": format!("random {i}"), "input": serde_json::to_string(&v).unwrap()})
        })
        .collect();
    let file = dir.path().join("random.json");
    std::fs::write(&file, serde_json::to_vec(&vectors).unwrap()).unwrap();
    let mut c = Command::new(python());
    c.arg(repo().join("tests/clients/python/tuf_canonical.py"))
        .arg(&file);
    let out = output(&mut c);
    assert_eq!(out.code, 0, "tuf_canonical.py: {}", out.stderr);
    let python: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs = python["vectors"].as_array().unwrap();
    assert_eq!(theirs.len(), vectors.len());
    for (v, p) in vectors.iter().zip(theirs) {
        let input = v["input"].as_str().unwrap();
        let sslib = hex::decode(
            p["canonical_hex"]
                .as_str()
                .unwrap_or_else(|| panic!("{input}: {p}")),
        )
        .unwrap();
        assert_eq!(canonical_json(input).unwrap(), sslib, "{input}");
    }
}

#[test]
fn a_refused_touch_fails_with_exit_5_and_leaves_the_file_unchanged() {
    let c = Ceremony::start_with_touch("deny");
    let (ka, _) = c.key(TOKEN_A, "9c", "a.json");
    c.ok(&[
        "tuf",
        "init",
        "--root-key",
        ka.to_str().unwrap(),
        "-o",
        "root.json",
    ]);
    let before = std::fs::read(c.path("root.json")).unwrap();
    let listing = files_in(c.dir.path());
    let out = c.ctl(&[
        "tuf",
        "sign",
        "--key",
        "9c",
        "--token",
        &TOKEN_A.to_string(),
        "root.json",
    ]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("Touch your YubiKey now"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "ABORTED: touch was denied for the key in slot 9c (root.json was not changed)"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(c.path("root.json")).unwrap(), before);
    assert_eq!(files_in(c.dir.path()), listing);
}

#[test]
fn tuf_key_of_ed25519_and_rsa_keys_is_the_key_and_key_id_securesystemslib_computes() {
    let c = Ceremony::start_with_ed25519_and_rsa();
    for (slot, keytype, scheme) in [
        ("9c", "ed25519", "ed25519"),
        ("9d", "rsa", "rsassa-pss-sha256"),
        ("9a", "rsa", "rsassa-pss-sha256"),
    ] {
        let (path, keyid) = c.key(TOKEN_C, slot, &format!("c{slot}.json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["key"]["keytype"], keytype, "{v}");
        assert_eq!(v["key"]["scheme"], scheme, "{v}");
        let public = v["key"]["keyval"]["public"].as_str().unwrap();
        if keytype == "ed25519" {
            assert_eq!(public.len(), 64, "{public}");
            assert!(
                public
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        } else {
            assert!(
                public.starts_with("-----BEGIN PUBLIC KEY-----\n"),
                "{public}"
            );
        }
        // securesystemslib derives the same key (SSlibKey.from_crypto) and key id.
        let check = tuf_check_cmd("key", &[&path]);
        assert_eq!(check.code, 0, "{}{}", check.text(), check.stderr);
        assert!(check.text().contains(&keyid), "{}", check.text());
    }
    // An X25519 key cannot sign metadata: refused, naming the types that can.
    let out = c.ctl(&["tuf", "key", "--key", "9e", "--token", &TOKEN_C.to_string()]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot sign TUF metadata"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Ed25519 (ed25519)"), "{}", out.stderr);
}

#[test]
fn roots_signed_by_ed25519_and_rsa_keys_verify_with_python_tuf_and_one_changed_byte_fails() {
    let c = Ceremony::start_with_ed25519_and_rsa();
    for (slot, name, sig_len) in [
        ("9c", "ed25519", 64),
        ("9d", "rsa2048", 256),
        ("9a", "rsa3072", 384),
    ] {
        let (key, keyid) = c.key(TOKEN_C, slot, &format!("{name}.key.json"));
        let root = format!("{name}.root.json");
        c.ok(&[
            "tuf",
            "init",
            "--root-key",
            key.to_str().unwrap(),
            "-o",
            &root,
        ]);
        assert_eq!(
            tuf_check_cmd("verify-root", &[&c.path(&root)]).code,
            1,
            "unsigned is rejected"
        );
        let out = c.sign(TOKEN_C, slot, &root, &[]);
        assert!(
            out.stderr
                .contains("1 of 1 required valid signatures (threshold met)"),
            "{}",
            out.stderr
        );
        let check = tuf_check_cmd("verify-root", &[&c.path(&root)]);
        assert_eq!(
            check.code,
            0,
            "python-tuf ({name}): {}{}",
            check.text(),
            check.stderr
        );
        assert!(
            check.text().contains("1 of threshold 1"),
            "{}",
            check.text()
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(c.path(&root)).unwrap()).unwrap();
        assert_eq!(json["signatures"][0]["keyid"], keyid.as_str());
        let sig = json["signatures"][0]["sig"].as_str().unwrap();
        assert_eq!(sig.len(), 2 * sig_len, "{name}: {sig}");
        // The daemon's audit log: Ed25519 signed the canonical bytes
        // themselves (recorded as their SHA-512), RSA-PSS their SHA-256.
        let md = signer_daemon::ctl::tuf::metadata::Metadata::parse(
            &std::fs::read(c.path(&root)).unwrap(),
        )
        .unwrap();
        let (hash, digest, scheme) = if name == "ed25519" {
            (
                "sha512",
                hex::encode(sha2::Sha512::digest(&md.canonical)),
                "ed25519",
            )
        } else {
            (
                "sha256",
                hex::encode(sha2::Sha256::digest(&md.canonical)),
                "rsa-pss",
            )
        };
        let audit = std::fs::read_to_string(c.path("audit.jsonl")).unwrap();
        assert!(
            audit
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .any(|e| e["operation"] == "sign"
                    && e["outcome"] == "ok"
                    && e["token_serial"] == TOKEN_C
                    && e["slot"] == slot
                    && e["hash"] == hash
                    && e["scheme"] == scheme
                    && e["digest"] == digest.as_str()),
            "no audited {hash} signature of {digest}: {audit}"
        );
        let ours = c.ctl(&["tuf", "verify", &root]);
        assert_eq!(ours.code, 0, "{}", ours.text());
        assert!(
            ours.text().contains(&format!("{keyid}  valid")),
            "{}",
            ours.text()
        );

        let bad = c.path(&format!("{name}.tampered.json"));
        tamper(&c.path(&root), &bad);
        let check = tuf_check_cmd("verify-root", &[&bad]);
        assert_eq!(
            check.code,
            1,
            "python-tuf accepted a changed byte ({name}): {}",
            check.text()
        );
        assert!(
            check.text().contains("signed by 0/1 keys"),
            "{}",
            check.text()
        );
        let ours = c.ctl(&["tuf", "verify", bad.to_str().unwrap()]);
        assert_eq!(ours.code, 7, "{}", ours.text());
        assert!(ours.text().contains("INVALID"), "{}", ours.text());
    }
}

#[test]
fn a_mixed_root_of_ecdsa_ed25519_and_rsa_keys_with_threshold_two_verifies_with_python_tuf() {
    let c = Ceremony::start_with_ed25519_and_rsa();
    let (kp, idp) = c.key(TOKEN_A, "9c", "p256.json");
    let (ke, ide) = c.key(TOKEN_C, "9c", "ed25519.json");
    let (kr, idr) = c.key(TOKEN_C, "9d", "rsa.json");
    c.ok(&[
        "tuf",
        "init",
        "--root-key",
        kp.to_str().unwrap(),
        "--root-key",
        ke.to_str().unwrap(),
        "--root-key",
        kr.to_str().unwrap(),
        "--threshold",
        "2",
        "-o",
        "root.json",
    ]);
    // One signature (Ed25519): below the threshold for both verifiers.
    c.sign(TOKEN_C, "9c", "root.json", &[]);
    let check = tuf_check_cmd("verify-root", &[&c.path("root.json")]);
    assert_eq!(check.code, 1, "python-tuf: {}", check.text());
    assert!(
        check.text().contains("signed by 1/2 keys"),
        "{}",
        check.text()
    );
    let report = c.ctl(&["tuf", "verify", "root.json"]);
    assert_eq!(report.code, 7, "{}", report.text());
    assert!(
        report.text().contains(&format!("{ide}  valid")),
        "{}",
        report.text()
    );
    assert!(
        report.text().contains(&format!("{idr}  not signed")),
        "{}",
        report.text()
    );

    // The RSA key adds the second: threshold met, for python-tuf too.
    c.sign(TOKEN_C, "9d", "root.json", &[]);
    let check = tuf_check_cmd("verify-root", &[&c.path("root.json")]);
    assert_eq!(
        check.code,
        0,
        "python-tuf: {}{}",
        check.text(),
        check.stderr
    );
    assert!(
        check.text().contains("2 of threshold 2"),
        "{}",
        check.text()
    );
    // And the P-256 key a third, on another token.
    c.sign(TOKEN_A, "9c", "root.json", &[]);
    let check = tuf_check_cmd("verify-root", &[&c.path("root.json")]);
    assert_eq!(
        check.code,
        0,
        "python-tuf: {}{}",
        check.text(),
        check.stderr
    );
    assert!(
        check.text().contains("3 of threshold 2"),
        "{}",
        check.text()
    );
    let report = c.ctl(&["tuf", "verify", "root.json", "--json"]);
    assert_eq!(report.code, 0, "{}", report.text());
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(json["checks"][0]["valid"], 3, "{json}");
    let text = c.ctl(&["tuf", "verify", "root.json"]).text();
    for id in [&idp, &ide, &idr] {
        assert!(text.contains(&format!("{id}  valid")), "{text}");
    }
    // One changed byte: no key's signature holds.
    let bad = c.path("tampered.json");
    tamper(&c.path("root.json"), &bad);
    let check = tuf_check_cmd("verify-root", &[&bad]);
    assert_eq!(
        check.code,
        1,
        "python-tuf accepted a changed byte: {}",
        check.text()
    );
    assert!(
        check.text().contains("signed by 0/2 keys"),
        "{}",
        check.text()
    );
}

/// The other direction: a root python-tuf wrote and securesystemslib
/// signed with software RSA-2048 (rsassa-pss-sha256) and Ed25519 keys,
/// threshold 2, is verified by `signerctl tuf verify`; one changed byte
/// breaks both signatures.
#[test]
fn tuf_verify_accepts_roots_securesystemslib_signed_with_rsa_and_ed25519_keys() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("py-root.json");
    let out = tuf_check_cmd("sign-root", &[&root]);
    assert_eq!(out.code, 0, "{}{}", out.text(), out.stderr);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&root).unwrap()).unwrap();
    let schemes: Vec<&str> = json["signed"]["keys"]
        .as_object()
        .unwrap()
        .values()
        .map(|k| k["scheme"].as_str().unwrap())
        .collect();
    assert!(
        schemes.contains(&"rsassa-pss-sha256") && schemes.contains(&"ed25519"),
        "{schemes:?}"
    );
    let verify = |file: &Path| {
        output(
            Command::new(SIGNERCTL)
                .args(["tuf", "verify"])
                .arg(file)
                .env_remove("SIGNER_SOCKET"),
        )
    };
    let ours = verify(&root);
    assert_eq!(ours.code, 0, "{}{}", ours.text(), ours.stderr);
    assert!(
        ours.text()
            .contains("2 of 2 required valid signatures: threshold met"),
        "{}",
        ours.text()
    );
    let bad = dir.path().join("tampered.json");
    tamper(&root, &bad);
    let ours = verify(&bad);
    assert_eq!(ours.code, 7, "{}", ours.text());
    assert_eq!(ours.text().matches("INVALID").count(), 2, "{}", ours.text());
}
