//! The emulated token's state file: format, atomic writes, permissions,
//! locking, and refusing (without touching) corrupt, truncated or foreign
//! files.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use signer_lib::emulator::state_file::{self, FORMAT_NAME, FORMAT_VERSION};
use signer_lib::emulator::{ApproveTouch, EmulatedToken, InitOptions};
use signer_lib::{Algorithm, Error, ManagementKey, Pin, PinPolicy, SlotId, Token, TouchPolicy};

fn init(dir: &Path) -> (PathBuf, EmulatedToken) {
    let path = dir.join("token.state");
    let token = EmulatedToken::init(
        &path,
        &InitOptions {
            serial: Some(20_240_601),
            ..InitOptions::default()
        },
    )
    .unwrap();
    (path, token)
}

fn open(path: &Path) -> signer_lib::Result<EmulatedToken> {
    EmulatedToken::open(path, Arc::new(ApproveTouch))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Replace the body and fix the checksum, so only the body's validity is tested.
fn with_body(header_version: u32, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{FORMAT_NAME} {header_version} sha256:{}\n",
        hex::encode(Sha256::digest(body))
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn body_of(bytes: &[u8]) -> &[u8] {
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
    &bytes[nl + 1..]
}

#[test]
fn init_writes_a_private_versioned_file_and_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut token) = init(dir.path());
    assert_eq!(mode(&path), 0o600, "state file mode");
    assert_eq!(mode(&state_file::lock_path(&path)), 0o600, "lock file mode");
    let bytes = std::fs::read(&path).unwrap();
    let header = std::str::from_utf8(&bytes[..bytes.iter().position(|&b| b == b'\n').unwrap()])
        .unwrap()
        .to_string();
    assert!(
        header.starts_with(&format!("{FORMAT_NAME} {FORMAT_VERSION} sha256:")),
        "{header}"
    );
    assert_eq!(
        header.rsplit(':').next().unwrap(),
        hex::encode(Sha256::digest(body_of(&bytes)))
    );
    // Many writes later: still 0600, still only the file and its lock.
    token
        .authenticate(
            &ManagementKey::default_for(signer_lib::ManagementKeyAlgorithm::Aes192).unwrap(),
        )
        .unwrap();
    for slot in [
        SlotId::Authentication,
        SlotId::Signature,
        SlotId::Retired(0x82),
    ] {
        token
            .generate_key(
                slot,
                Algorithm::EccP256,
                PinPolicy::Never,
                TouchPolicy::Never,
            )
            .unwrap();
    }
    assert_eq!(mode(&path), 0o600);
    assert_eq!(entries(dir.path()), vec!["token.state", "token.state.lock"]);
}

#[test]
fn init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (path, token) = init(dir.path());
    drop(token);
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        EmulatedToken::init(&path, &InitOptions::default()),
        Err(Error::StateExists { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // Any existing file, not just a state file.
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, b"keep me").unwrap();
    assert!(matches!(
        EmulatedToken::init(&other, &InitOptions::default()),
        Err(Error::StateExists { .. })
    ));
    assert_eq!(std::fs::read(&other).unwrap(), b"keep me");
}

#[test]
fn a_missing_file_is_token_not_found_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let err = open(&dir.path().join("nope.state")).unwrap_err();
    assert!(matches!(err, Error::TokenNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("emulated init"), "{err}");
    assert!(entries(dir.path()).is_empty(), "no lock file left behind");
}

#[test]
fn corrupt_and_truncated_files_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (path, token) = init(dir.path());
    drop(token);
    let good = std::fs::read(&path).unwrap();
    let header_len = good.iter().position(|&b| b == b'\n').unwrap() + 1;

    let mut flipped = good.clone();
    let i = header_len + (good.len() - header_len) / 2;
    flipped[i] ^= 0x01;
    let mut bad_header = good.clone();
    bad_header[0] = b'X';
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("one bit flipped in the body".into(), flipped),
        ("foreign header".into(), bad_header),
        (
            "random text".into(),
            b"hello world\nthis is not a token\n".to_vec(),
        ),
        (
            "binary garbage".into(),
            (0..=255u8).cycle().take(5000).collect(),
        ),
        (
            "valid checksum, invalid JSON".into(),
            with_body(FORMAT_VERSION, b"{\"serial\": 1,"),
        ),
        (
            "valid checksum, unknown field".into(),
            with_body(FORMAT_VERSION, b"{\"surprise\": true}"),
        ),
        (
            "valid checksum, missing checksum field".into(),
            format!("{FORMAT_NAME} {FORMAT_VERSION}\n{{}}").into_bytes(),
        ),
    ];
    for cut in [
        1,
        header_len / 2,
        header_len - 1,
        header_len,
        header_len + 10,
        good.len() - 1,
    ] {
        cases.push((format!("truncated to {cut} bytes"), good[..cut].to_vec()));
    }
    // Valid JSON that breaks an invariant: more retries left than allowed.
    let body = String::from_utf8(body_of(&good).to_vec()).unwrap();
    let impossible = body.replacen("\"remaining\":3", "\"remaining\":9", 1);
    assert_ne!(impossible, body, "the counter field was found");
    cases.push((
        "impossible retry counter".into(),
        with_body(FORMAT_VERSION, impossible.as_bytes()),
    ));

    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let err = open(&path).unwrap_err();
        assert!(
            matches!(err, Error::CorruptState { .. }),
            "{what}: expected CorruptState, got {err:?}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{what}: file modified"
        );
        assert_eq!(
            entries(dir.path()),
            vec!["token.state", "token.state.lock"],
            "{what}"
        );
    }
    // The good file still opens.
    std::fs::write(&path, &good).unwrap();
    open(&path).unwrap();
}

#[test]
fn corrupt_state_errors_do_not_echo_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (path, token) = init(dir.path());
    drop(token);
    let good = std::fs::read(&path).unwrap();
    let body = String::from_utf8(body_of(&good).to_vec()).unwrap();
    // The PIN 123456 is stored as hex; make it non-hex but keep a secret-looking value.
    let tampered = body.replacen("\"313233343536\"", "\"SECRET-313233343536\"", 1);
    assert_ne!(tampered, body);
    std::fs::write(&path, with_body(FORMAT_VERSION, tampered.as_bytes())).unwrap();
    let err = open(&path).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, Error::CorruptState { .. }), "{text}");
    assert!(
        !text.contains("SECRET"),
        "error echoes file contents: {text}"
    );
    assert!(
        !text.contains("313233343536"),
        "error echoes the PIN: {text}"
    );
}

#[test]
fn other_versions_are_unsupported_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (path, token) = init(dir.path());
    drop(token);
    let good = std::fs::read(&path).unwrap();
    let future = with_body(FORMAT_VERSION + 1, body_of(&good));
    std::fs::write(&path, &future).unwrap();
    match open(&path) {
        Err(Error::UnsupportedStateVersion {
            found, supported, ..
        }) => {
            assert_eq!(found, FORMAT_VERSION + 1);
            assert_eq!(supported, FORMAT_VERSION);
        }
        other => panic!("expected UnsupportedStateVersion, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), future);
}

#[test]
fn a_token_in_use_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (path, token) = init(dir.path());
    assert!(matches!(open(&path), Err(Error::StateLocked { .. })));
    assert!(matches!(
        EmulatedToken::init(&path, &InitOptions::default()),
        Err(Error::StateLocked { .. })
    ));
    drop(token);
    let again = open(&path).unwrap();
    assert!(matches!(open(&path), Err(Error::StateLocked { .. })));
    drop(again);
    open(&path).unwrap();
}

#[test]
fn a_lock_released_within_the_patience_is_waited_for() {
    // What a forked child does: it holds the lock descriptor for an instant
    // (until its exec). Here another handle holds it for 50 ms.
    let dir = tempfile::tempdir().unwrap();
    let (path, token) = init(dir.path());
    assert!(state_file::LOCK_PATIENCE > std::time::Duration::from_millis(100));
    let holder = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(token);
    });
    let started = std::time::Instant::now();
    let reopened = open(&path).unwrap();
    assert!(started.elapsed() < state_file::LOCK_PATIENCE);
    holder.join().unwrap();
    // A lock held for longer is still StateLocked, after the patience.
    let started = std::time::Instant::now();
    assert!(matches!(open(&path), Err(Error::StateLocked { .. })));
    assert!(started.elapsed() >= state_file::LOCK_PATIENCE);
    drop(reopened);
}

#[test]
fn a_wrong_pin_is_on_disk_before_the_error_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut token) = init(dir.path());
    let err = token
        .verify_pin(&Pin::parse_pin("999999").unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::WrongPin { retries_left: 2 }));
    // Read the file while the token is still open: the decrement is there.
    let state = state_file::decode(&path, &std::fs::read(&path).unwrap()).unwrap();
    let json = String::from_utf8(body_of(&state_file::encode(&state).unwrap()).to_vec()).unwrap();
    assert!(
        json.contains("\"pin_retries\":{\"remaining\":2,\"max\":3}"),
        "{}",
        json.split("\"pin_retries\"")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take(40)
            .collect::<String>()
    );
    // And a crash now (drop without anything else) keeps it.
    drop(token);
    let mut token = open(&path).unwrap();
    assert_eq!(token.retry_counters().unwrap().pin, 2);
}

#[test]
fn debug_output_holds_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, mut token) = init(dir.path());
    let state = token
        .with_card(|card| format!("{:?}", card.state()))
        .unwrap();
    assert!(state.contains("***"), "{state}");
    let text = format!("{token:?} {state}");
    for secret in ["123456", "313233343536", "010203040506"] {
        assert!(!text.contains(secret), "Debug shows {secret}: {text}");
    }
}
