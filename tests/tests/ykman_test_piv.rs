//! Yubico's own PIV device test suite, `tests/device/test_piv.py` of the
//! yubikey-manager 5.9.2 source distribution (PyPI), run against the
//! emulated card, unchanged and whole (no `-k` filter, no deselection):
//!
//! ```text
//! pytest tests/device/test_piv.py --device SERIAL --reader "Yubico YubiKey OTP+FIDO+CCID 00 00"
//! ```
//!
//! `tests/scripts/install-deps.sh` puts the sdist (sha256 pinned) into
//! `/usr/local/lib/signer-e2e-ykman-tests/src/` and the pinned packages of
//! `tests/clients/python/requirements-ykman-test-piv.txt` (ykman, pytest,
//! makefun, ...) into that venv (`SIGNER_YKMAN_TESTS_VENV` overrides it).
//! The card is made by `signer-daemon emulated init` and served by the real
//! `signer-daemon emulate-card --atr nfc` to a private pcscd (the sandbox
//! harness) under the one reader "Yubico YubiKey OTP+FIDO+CCID 00 00".
//!
//! **How the suite's "destructive run" confirmation is satisfied.** The
//! device tests reset the PIV application of the YubiKey they run on. In
//! 5.9.2 they ask nothing on stdin; the confirmation is the device's serial
//! number (`tests/device/conftest.py`): without `--device SERIAL` every test
//! skips ("No serial specified for device tests"), with a serial that is not
//! the one of the single YubiKey found (or of the one reader `--reader`
//! matches) the run stops (`pytest.exit`, exit status 2). This test passes
//! the serial it gave the emulated card, and `--reader` with the full reader
//! name, so the suite can only ever touch that card; pytest's stdin is
//! `/dev/null` (CI has none).
//!
//! **Firmware generations.** The same suite runs against the card
//! initialised as 5.7.4 (all of it), 5.4.3 (5.3 to 5.6: with its factory
//! 3DES management key, and once with an AES-192 one that PIV RESET must
//! turn back into 3DES), 5.2.7 (5.0 to 5.2) and 4.3.7 (a YubiKey 4: USB
//! ATR and no `--reader`, see [`Run::atr`]). The suite gates tests by the
//! version the card reports, as on real YubiKeys of that firmware; each
//! generation's run expects exactly its gates' skips ([`BEFORE_5_7_SKIPS`],
//! [`BEFORE_5_3_SKIPS`]) and that everything else passes. (The gates skip,
//! they do not send the refused commands, so after the suite
//! `tests/clients/python/piv_firmware_refusals.py` sends them as raw APDUs
//! through yubikit: below the version that brought a feature the card must
//! refuse it and keep nothing, from it accept it, 5.7.4 included.)
//!
//! **What is asserted.** pytest ran to its end (exit status 0 or 1, a junit
//! XML report with all [`SUITE_TESTS`] tests), and every test passed except
//! the ones in [`JUSTIFIED_SKIPS`]: tests for hardware the emulated card
//! does not claim to be (a YubiKey 4 FIPS, a YubiKey with PIN complexity
//! enforced, a YubiKey Bio), each of which must be skipped with the reason
//! the suite gives, and its justification is printed. Any other skip, any
//! failure or error fails this test. The summary (counts, every failure
//! grouped by its status word, every skip with its reason and
//! justification) is printed in every case; the report and pytest's output
//! stay in `target/tmp/ykman-test-piv/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulated_card_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use emulated_card_support::EmulatedCard;
use signer_e2e::pcsc_sandbox::{Sandbox, SandboxConfig, run_sandboxed};

/// Where `install-deps.sh` makes the venv (override: `SIGNER_YKMAN_TESTS_VENV`).
const SUITE_VENV: &str = "/usr/local/lib/signer-e2e-ykman-tests";
/// The unpacked source distribution, under the venv's `src/`.
const SDIST: &str = "yubikey_manager-5.9.2";
/// The tests `test_piv.py` of 5.9.2 collects (parametrized cases counted):
/// fewer in the report means pytest stopped early or something hid tests.
const SUITE_TESTS: usize = 101;
/// The emulated card's serial: the suite's confirmation to run.
const SERIAL: u32 = 12_345_678;
/// pytest's own limit; the sandbox's child process gets a little more.
const PYTEST_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// A test the emulated card cannot pass because it needs hardware the
/// emulator does not claim to be.
struct JustifiedSkip {
    /// `Class::test` (every parametrized case of it) or one exact case.
    test: &'static str,
    /// How many cases of it the suite has (all must be skipped).
    cases: usize,
    /// The suite's skip reason (its `pytest.skip` message), verbatim.
    reason: &'static str,
    /// Why skipping it is right, printed with the summary.
    why: &'static str,
    /// E7: only in runs whose card has PIN complexity on (`Some(true)`) or
    /// off (`Some(false)`); `None`: every run.
    pin_complexity: Option<bool>,
}

/// The skips allowed, each with its justification. The emulated card is a
/// YubiKey 5 (firmware 5.7.4, not FIPS, no fingerprint sensor, PIN
/// complexity only in the run made with it), and its device info says so; these tests are for other
/// hardware, and on a real YubiKey 5 they skip for the same reason.
const JUSTIFIED_SKIPS: &[JustifiedSkip] = &[
    JustifiedSkip {
        test: "TestOperations::test_pin_policy_never_blocked_on_fips",
        cases: 1,
        reason: "Requires YK4 FIPS = True",
        why: "only a YubiKey 4 FIPS refuses PIN policy NEVER; the emulated card is a \
              YubiKey 5, not FIPS (its device info has no FIPS flag), and the suite's \
              companion test_sign_with_pin_policy_never_does_not_require_pin runs and passes",
        pin_complexity: None,
    },
    JustifiedSkip {
        test: "TestPinComplexity::",
        cases: 10,
        reason: "Requires YubiKey with PIN complexity enabled",
        why: "PIN complexity is enforced only by YubiKeys made with it switched on (the \
              YubiKey 5 FIPS series and the 'enhanced PIN' models: device info tag \
              PIN_COMPLEXITY, set at the factory, never by a command); this run's card is made \
              without it (the default of `emulated init`, a standard YubiKey 5), which \
              accepts these PINs; the run with `emulated init --pin-complexity` passes them",
        pin_complexity: Some(false),
    },
    JustifiedSkip {
        test: "TestPinComplexity::test_invalid_pins_prerelease",
        cases: 3,
        reason: "Condition not satisfied",
        why: "the blocklist of pre-release (non-FINAL) firmware; the emulated card is \
              release firmware (its device info has no version qualifier, which yubikit \
              reads as FINAL), so the suite runs test_invalid_pins_standard instead, which \
              passes",
        pin_complexity: Some(true),
    },
    JustifiedSkip {
        test: "TestBioMpe::test_verify_uv_without_fingerprints",
        cases: 1,
        reason: "Requires YubiKey Bio with PIV",
        why: "needs a fingerprint sensor (YubiKey Bio Multi-protocol Edition); the emulated \
              card claims none",
        pin_complexity: None,
    },
];

/// One run of the suite: the emulated card's generation and how pytest
/// reaches it.
struct Run {
    /// The `#[test]` function's name (the sandbox re-runs it by name).
    test_name: &'static str,
    /// Where its report goes: `target/tmp/ykman-test-piv/LABEL/`.
    label: &'static str,
    /// `emulated init` options after `--serial`.
    init_args: &'static [&'static str],
    /// `emulate-card --atr`: `nfc` with `--reader` (the suite's conftest
    /// reads a reader's device info without a USB product id only over
    /// NFC), `usb` without it (the conftest then finds the one YubiKey by
    /// itself, its product id from the reader name).
    atr: &'static str,
    /// Pass `--reader "FULL READER NAME"`.
    reader: bool,
    /// Skips the firmware explains: (the suite's reason verbatim, how many
    /// tests). The suite gates these by the firmware version the card
    /// reports, as it does on a real YubiKey of that firmware.
    firmware_skips: &'static [(&'static str, usize)],
    /// E7: the card is made with `--pin-complexity` (in `init_args`).
    pin_complexity: bool,
}

/// What firmware 5.0 to 5.2 lacks, as the suite skips it: GET METADATA
/// (5.3), RSA 3072/4096, Ed25519, X25519, MOVE/DELETE KEY (5.7).
const BEFORE_5_3_SKIPS: &[(&str, usize)] = &[
    ("Version < (5, 3, 0)", 26),
    ("RSA3072 requires YubiKey 5.7 or later", 4),
    ("RSA4096 requires YubiKey 5.7 or later", 4),
    ("ED25519 requires YubiKey 5.7 or later", 3),
    ("X25519 requires YubiKey 5.7 or later", 2),
    ("Version < (5, 7, 0)", 2),
];

/// What firmware 5.3 to 5.6 lacks: the 5.7 key types and MOVE/DELETE KEY.
const BEFORE_5_7_SKIPS: &[(&str, usize)] = &[
    ("RSA3072 requires YubiKey 5.7 or later", 5),
    ("RSA4096 requires YubiKey 5.7 or later", 5),
    ("ED25519 requires YubiKey 5.7 or later", 4),
    ("X25519 requires YubiKey 5.7 or later", 3),
    ("Version < (5, 7, 0)", 2),
];

/// One test case of the junit report.
#[derive(Debug, Clone)]
struct Case {
    id: String,
    outcome: String,
    message: String,
    detail: String,
}

fn suite_venv() -> PathBuf {
    std::env::var_os("SIGNER_YKMAN_TESTS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| SUITE_VENV.into())
}

/// The venv's python and the sdist's directory, or a panic naming what is
/// missing and how to get it.
fn suite_paths() -> (PathBuf, PathBuf) {
    let venv = suite_venv();
    let python = venv.join("bin/python");
    let src = venv.join("src").join(SDIST);
    let fix = "run tests/scripts/install-deps.sh (as root; it installs yubikey-manager 5.9.2's \
               device tests and tests/clients/python/requirements-ykman-test-piv.txt)";
    assert!(
        python.exists(),
        "{} is missing: no venv for Yubico's test_piv.py; {fix}",
        python.display()
    );
    let test_piv = src.join("tests/device/test_piv.py");
    assert!(
        test_piv.exists(),
        "{} is missing: the yubikey-manager 5.9.2 sdist is not unpacked; {fix}",
        test_piv.display()
    );
    let probe = Command::new(&python)
        .args([
            "-c",
            "import pytest, makefun, ykman, smartcard, cryptography",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        probe.status.success(),
        "{} lacks a module test_piv.py needs: {}; {fix}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    (python, src)
}

/// The status word in an `ApduError` message ("... SW=0x6a80 (INCORRECT_PARAMETERS)").
fn cause(case: &Case) -> String {
    let text = if case.message.is_empty() {
        case.detail.lines().last().unwrap_or("")
    } else {
        case.message.lines().next().unwrap_or("")
    };
    match text.find("SW=0x") {
        Some(i) => {
            let rest = &text[i..];
            let end = rest.find(')').map_or(rest.len(), |e| e + 1);
            rest[..end].to_string()
        }
        None => text.chars().take(160).collect(),
    }
}

/// Run the suite against the card in `sandbox`'s reader 0; the report's cases.
fn run_suite(sandbox: &Sandbox, run: &Run) -> (Vec<Case>, Option<i32>, PathBuf) {
    let label = run.label;
    let (python, src) = suite_paths();
    let out_dir = out_dir(label);
    std::fs::create_dir_all(&out_dir).unwrap();
    let junit = out_dir.join("junit.xml");
    let log = out_dir.join("pytest.log");
    let _ = std::fs::remove_file(&junit);
    let reader = sandbox.reader(0).name.clone();
    let mut pytest = sandbox.command(&python);
    pytest
        .args(["-m", "pytest", "tests/device/test_piv.py"])
        .args(["--device", &SERIAL.to_string()]);
    if run.reader {
        pytest.args(["--reader", &reader]);
    }
    pytest
        .arg(format!("--junitxml={}", junit.display()))
        // no cache directory in the installed sdist; a short summary of
        // failures, errors and skips at the end of the log
        .args(["-p", "no:cacheprovider", "-q", "-rfEs"])
        .current_dir(&src)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log).unwrap(),
        ));
    eprintln!("running (in {}): {pytest:?}", src.display());
    let started = Instant::now();
    let mut child = pytest
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start pytest: {e}"));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > PYTEST_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "pytest ran longer than {PYTEST_TIMEOUT:?}; its output so far: {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "pytest exited {status} after {:.1} s; report {}, output {}",
        started.elapsed().as_secs_f64(),
        junit.display(),
        log.display()
    );
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: String = {
        let lines: Vec<&str> = output.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    // 0: all passed, 1: some failed; anything else (2: interrupted, e.g.
    // the conftest's pytest.exit on a serial mismatch; 3: internal error;
    // 4: usage; 5: no tests) means the suite did not run to its end.
    let code = status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "pytest did not run the suite to its end ({status}):\n{tail}"
    );
    assert!(junit.exists(), "pytest wrote no junit report:\n{tail}");
    let summary = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python/junit_summary.py"))
        .arg(&junit)
        .output()
        .unwrap();
    assert!(
        summary.status.success(),
        "junit_summary.py: {}",
        String::from_utf8_lossy(&summary.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&summary.stdout).unwrap();
    let field = |t: &serde_json::Value, k: &str| t[k].as_str().unwrap_or_default().to_string();
    let cases = json["tests"]
        .as_array()
        .expect("a tests array")
        .iter()
        .map(|t| Case {
            id: field(t, "id"),
            outcome: field(t, "outcome"),
            message: field(t, "message"),
            detail: field(t, "detail"),
        })
        .collect();
    (cases, code, log)
}

/// Whether a justified skip is one for this run's card.
fn applies(skip: &JustifiedSkip, run: &Run) -> bool {
    skip.pin_complexity
        .is_none_or(|on| on == run.pin_complexity)
}

/// The summary (counts, failures grouped by cause, skips with their
/// reasons and justifications), and the list of problems (empty: the suite
/// passed).
fn judge(cases: &[Case], exit: Option<i32>, run: &Run) -> (String, Vec<String>) {
    let mut out = Vec::<String>::new();
    let count = |o: &str| cases.iter().filter(|c| c.outcome == o).count();
    let (passed, failed, errors, skipped) = (
        count("passed"),
        count("failed"),
        count("error"),
        count("skipped"),
    );
    out.push(format!(
        "Yubico's test_piv.py ({SDIST}) on the emulated card ({}): {passed} passed, {failed} failed, \
         {errors} errors, {skipped} skipped, of {} (pytest exit {exit:?})",
        run.init_args.join(" "),
        cases.len()
    ));
    let mut problems = Vec::new();
    if cases.len() != SUITE_TESTS {
        problems.push(format!(
            "the report has {} tests, the suite {SUITE_TESTS}",
            cases.len()
        ));
    }

    // Failures and errors, grouped by cause (status word or exception).
    let mut by_cause: BTreeMap<String, Vec<&Case>> = BTreeMap::new();
    for c in cases
        .iter()
        .filter(|c| c.outcome == "failed" || c.outcome == "error")
    {
        by_cause.entry(cause(c)).or_default().push(c);
    }
    for (why, list) in &by_cause {
        out.push(format!("FAILED ({}) {why}:", list.len()));
        for c in list {
            out.push(format!("  {} [{}]", c.id, c.outcome));
        }
        problems.push(format!("{} tests fail with {why}", list.len()));
    }

    // Skips: each must be a justified one, with the suite's own reason.
    let mut seen = vec![0usize; JUSTIFIED_SKIPS.len()];
    let mut seen_firmware = vec![0usize; run.firmware_skips.len()];
    for c in cases.iter().filter(|c| c.outcome == "skipped") {
        if let Some(i) = run
            .firmware_skips
            .iter()
            .position(|(reason, _)| c.message == *reason)
        {
            seen_firmware[i] += 1;
            out.push(format!(
                "SKIPPED {}: {:?} (justified: the emulated card is firmware {}, which lacks it)",
                c.id, c.message, run.label
            ));
            continue;
        }
        let justified = JUSTIFIED_SKIPS
            .iter()
            .position(|j| applies(j, run) && c.id.starts_with(j.test) && c.message == j.reason);
        match justified {
            Some(i) => {
                seen[i] += 1;
                out.push(format!(
                    "SKIPPED {}: {:?} (justified: {})",
                    c.id, c.message, JUSTIFIED_SKIPS[i].why
                ));
            }
            None => {
                out.push(format!("SKIPPED {}: {:?} (NOT JUSTIFIED)", c.id, c.message));
                problems.push(format!(
                    "{} skipped without justification: {:?}",
                    c.id, c.message
                ));
            }
        }
    }
    for (j, n) in JUSTIFIED_SKIPS.iter().zip(&seen) {
        if applies(j, run) && *n != j.cases {
            problems.push(format!(
                "{}: {n} of its {} cases skipped with {:?} (the justification no longer \
                 matches the suite)",
                j.test, j.cases, j.reason
            ));
        }
    }
    for ((reason, want), n) in run.firmware_skips.iter().zip(&seen_firmware) {
        if n != want {
            problems.push(format!(
                "{n} tests skipped with {reason:?}, expected {want} on firmware {}",
                run.label
            ));
        }
    }
    if (exit == Some(0)) != (failed + errors == 0) {
        problems.push(format!("pytest exit {exit:?} disagrees with the report"));
    }
    (out.join("\n"), problems)
}

/// After the suite: `tests/clients/python/piv_firmware_refusals.py` sends
/// what the suite's version gates skip (GET METADATA, an AES management
/// key, the 5.7 key types, MOVE/DELETE KEY) as raw APDUs through yubikit:
/// refused (and nothing kept) below the version that brought it, accepted
/// from it. Its output, and a problem if it failed.
fn firmware_refusals(sandbox: &Sandbox, run: &Run) -> (String, Option<String>) {
    let (python, _) = suite_paths();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python/piv_firmware_refusals.py");
    let mut c = sandbox.command(&python);
    c.arg(&script).stdin(Stdio::null());
    if run.reader {
        c.arg(&sandbox.reader(0).name);
    }
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = out.status.success() && text.contains("refusals: 8 ok");
    let problem = (!passed).then(|| format!("piv_firmware_refusals.py ({}):\n{text}", out.status));
    (text.trim_end().to_string(), problem)
}

fn out_dir(label: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("ykman-test-piv")
        .join(label)
}

/// Run the whole suite in a fresh sandbox against a card made with
/// `emulated init --serial SERIAL init_args...`; fail unless every test
/// passed or is a justified skip. The summary is printed whether or not
/// the test's output is captured.
fn suite_on_emulated_card(run: &Run) {
    let in_child = std::env::var_os(signer_e2e::pcsc_sandbox::SANDBOX_TEST_ENV).is_some();
    if !in_child {
        // Fail before starting a sandbox when the suite is not installed.
        suite_paths();
        let _ = std::fs::remove_file(out_dir(run.label).join("summary.txt"));
    }
    let config = SandboxConfig {
        timeout: PYTEST_TIMEOUT + Duration::from_secs(120),
        ..SandboxConfig::default()
    };
    let result = std::panic::catch_unwind(|| {
        run_sandboxed(module_path!(), run.test_name, config, |sandbox| {
            let card = EmulatedCard::start_with(sandbox, 0, SERIAL, run.init_args, run.atr);
            let (cases, exit, log) = run_suite(sandbox, run);
            let (mut summary, mut problems) = judge(&cases, exit, run);
            let (refusals, refusal_problem) = firmware_refusals(sandbox, run);
            summary.push('\n');
            summary.push_str(&refusals);
            problems.extend(refusal_problem);
            println!("{summary}");
            std::fs::write(out_dir(run.label).join("summary.txt"), &summary).unwrap();
            card.stop();
            assert!(
                problems.is_empty(),
                "Yubico's test_piv.py does not pass on the emulated card \
                 (pytest output: {}):\n- {}",
                log.display(),
                problems.join("\n- ")
            );
        });
    });
    if !in_child {
        // libtest captures print!; this goes to the terminal (CI log) as is.
        use std::io::Write as _;
        let summary = std::fs::read_to_string(out_dir(run.label).join("summary.txt"))
            .unwrap_or_else(|_| "(no summary: the suite did not run to its end)".into());
        let _ = writeln!(std::io::stderr(), "\n{}:\n{summary}\n", run.test_name);
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The emulated YubiKey 5 (firmware 5.7.4, the default of `emulated
/// init`), AES-192 management key as from the factory: every test runs and
/// passes but the hardware-only ones.
#[test]
fn yubicos_test_piv_passes_on_the_emulated_yubikey_5_7() {
    suite_on_emulated_card(&Run {
        test_name: "yubicos_test_piv_passes_on_the_emulated_yubikey_5_7",
        label: "5.7.4",
        init_args: &["--firmware", "5.7.4", "--mgmt-key-alg", "aes192"],
        atr: "nfc",
        reader: true,
        firmware_skips: &[],
        pin_complexity: false,
    });
}

/// Firmware 5.4.3 (the 5.3 to 5.6 generation: metadata, AES management
/// keys, no 5.7 key types), its factory 3DES management key.
#[test]
fn yubicos_test_piv_passes_on_the_emulated_yubikey_5_4() {
    suite_on_emulated_card(&Run {
        test_name: "yubicos_test_piv_passes_on_the_emulated_yubikey_5_4",
        label: "5.4.3",
        init_args: &["--firmware", "5.4.3", "--mgmt-key-alg", "tdes"],
        atr: "nfc",
        reader: true,
        firmware_skips: BEFORE_5_7_SKIPS,
        pin_complexity: false,
    });
}

/// Firmware 5.4.3 whose management key was changed to AES-192: PIV RESET
/// brings back the factory 3DES key, as on a real YubiKey before 5.7
/// (`TestMetadata::test_management_key_metadata` checks it).
#[test]
fn yubicos_test_piv_passes_on_the_emulated_yubikey_5_4_with_an_aes_key() {
    suite_on_emulated_card(&Run {
        test_name: "yubicos_test_piv_passes_on_the_emulated_yubikey_5_4_with_an_aes_key",
        label: "5.4.3-aes192",
        init_args: &["--firmware", "5.4.3", "--mgmt-key-alg", "aes192"],
        atr: "nfc",
        reader: true,
        firmware_skips: BEFORE_5_7_SKIPS,
        pin_complexity: false,
    });
}

/// Firmware 5.2.7 (5.0 to 5.2: no GET METADATA, 3DES management key only).
#[test]
fn yubicos_test_piv_passes_on_the_emulated_yubikey_5_2() {
    suite_on_emulated_card(&Run {
        test_name: "yubicos_test_piv_passes_on_the_emulated_yubikey_5_2",
        label: "5.2.7",
        init_args: &["--firmware", "5.2.7"],
        atr: "nfc",
        reader: true,
        firmware_skips: BEFORE_5_3_SKIPS,
        pin_complexity: false,
    });
}

/// A YubiKey 4 (firmware 4.3.7). It has no NFC, so it is served with the
/// USB ATR and pytest gets no `--reader` (with `--reader` the suite's
/// conftest reads device info without a USB product id, which only works
/// over NFC: "PID must be provided for non-NFC connections"); it finds the
/// one YubiKey itself, as with a plugged-in YubiKey 4.
#[test]
fn yubicos_test_piv_passes_on_the_emulated_yubikey_4() {
    suite_on_emulated_card(&Run {
        test_name: "yubicos_test_piv_passes_on_the_emulated_yubikey_4",
        label: "4.3.7",
        init_args: &["--firmware", "4.3.7"],
        atr: "usb",
        reader: false,
        firmware_skips: BEFORE_5_3_SKIPS,
        pin_complexity: false,
    });
}

/// E7: a YubiKey 5.7.4 made with PIN complexity on (`emulated init
/// --pin-complexity`): its device info says so, the suite's `keys` fixture
/// moves PIN, PUK and management key off the factory values first (as it
/// does for such a YubiKey), every test runs with those, and
/// `TestPinComplexity` runs and passes (a repeated character and, on release
/// firmware, abc123/password/123123 are refused with 6985).
#[test]
fn yubicos_test_piv_passes_on_the_emulated_yubikey_5_7_with_pin_complexity() {
    suite_on_emulated_card(&Run {
        test_name: "yubicos_test_piv_passes_on_the_emulated_yubikey_5_7_with_pin_complexity",
        label: "5.7.4-pin-complexity",
        init_args: &[
            "--firmware",
            "5.7.4",
            "--mgmt-key-alg",
            "aes192",
            "--pin-complexity",
        ],
        atr: "nfc",
        reader: true,
        firmware_skips: &[],
        pin_complexity: true,
    });
}
