//! The gRPC client matrix: real clients, each in its DEFAULT configuration
//! (no authority override, no channel options), against the daemon binary
//! on an emulated token:
//!
//! | client | where from | target |
//! | --- | --- | --- |
//! | grpcio, newest release | the Python package index (venv of install-deps.sh) | `unix:/abs/path`, `unix:///abs/path`, and through systemd socket activation |
//! | grpcio 1.51 | Debian's python3-grpcio | `unix:/abs/path` |
//! | @grpc/grpc-js + @grpc/proto-loader | the npm registry | `unix:/abs/path` |
//! | signer-client (tonic) | this workspace | the socket path |
//!
//! Each one reads the service list through server reflection, asks the
//! health service, lists the keys, signs with `SignWithEvents` (the touch
//! event first; the signature verified by the client's own verifier,
//! pyca/cryptography or node:crypto, and here with RustCrypto), and gets
//! `INVALID_ARGUMENT` for a digest of the wrong length.
//!
//! grpcio since 1.57 sends the percent-encoded socket path as `:authority`,
//! which unpatched h2 resets (`StatusCode.INTERNAL`, "RST_STREAM ... error
//! code 1") before the request reaches the daemon: the newest-grpcio tests
//! fail against a daemon built without signer-daemon/vendor/h2's patch.
//! A raw HTTP/2 client then sends absurd `:authority` values (very long,
//! non-ASCII, control bytes, not UTF-8): each is served or refused cleanly
//! and the daemon keeps serving.
//!
//! Nothing here skips: a missing client fails the test, naming what to
//! install (tests/scripts/install-deps.sh installs them all).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use daemon_support::{Daemon, DaemonSetup, verify};
use serde_json::Value;
use sha2::Digest;

/// Debian's grpcio has no reflection client; install-deps.sh puts
/// grpcio-reflection 1.51.1 here.
const DEBIAN_PYDEPS: &str = "/usr/local/lib/signer-e2e-python";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The venv with the newest grpcio (and cryptography, h2) from the Python
/// package index.
fn venv_python() -> PathBuf {
    let venv = std::env::var_os("SIGNER_E2E_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/lib/signer-e2e-venv"));
    let python = venv.join("bin").join("python");
    assert!(
        python.exists(),
        "{} is missing: the venv with the newest grpcio, grpcio-reflection, cryptography and h2 \
         from the Python package index (tests/clients/python/requirements.txt); run \
         tests/scripts/install-deps.sh",
        python.display()
    );
    python
}

fn node_modules() -> PathBuf {
    let dir = std::env::var_os("SIGNER_E2E_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/lib/signer-e2e-node"))
        .join("node_modules");
    for m in ["@grpc/grpc-js", "@grpc/proto-loader"] {
        assert!(
            dir.join(m).join("package.json").exists(),
            "the Node module {m} is missing from {}: run tests/scripts/install-deps.sh \
             (npm install of tests/clients/node/package.json)",
            dir.display()
        );
    }
    dir
}

/// Run a client script; its stdout is one JSON object.
fn run_json(cmd: &mut Command, what: &str) -> Value {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// What every client of the matrix must have seen.
fn check_client(v: &Value, d: &Daemon, digest: &[u8], verifier: &str, reflection: &str) {
    assert!(
        v.get("failed_step").is_none(),
        "the client failed at step {}: {v}\ndaemon log:\n{}",
        v["failed_step"],
        d.log_text()
    );
    let services: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for s in ["signer.v1.Signer", "grpc.health.v1.Health", reflection] {
        assert!(services.contains(&s), "reflection listed {services:?}");
    }
    assert_eq!(v["health"], "SERVING", "{v}");
    let key = &d.keys[0];
    assert_eq!(v["key_id"], key.key_id.as_str(), "{v}");
    assert_eq!(
        hex::decode(v["public_key_der"].as_str().unwrap()).unwrap(),
        key.public_key.spki_der
    );
    // The key needs a touch: the event comes before the signature.
    assert_eq!(
        v["events"],
        serde_json::json!(["touch_required", "signature"]),
        "{v}"
    );
    assert_eq!(v["signed_digest"], hex::encode(digest), "{v}");
    let signature = hex::decode(v["signature"].as_str().unwrap()).unwrap();
    assert!(
        verify(key, digest, &signature),
        "RustCrypto rejects the signature"
    );
    assert_eq!(v[verifier], true, "{verifier} rejects the signature: {v}");
    assert_eq!(v["bad_digest"], "INVALID_ARGUMENT", "{v}");
    assert!(
        v["bad_digest_message"]
            .as_str()
            .unwrap()
            .contains("expected 32 bytes, got 31"),
        "{v}"
    );
    if v.get("bad_hash").is_some() {
        assert_eq!(v["bad_hash"], "INVALID_ARGUMENT", "{v}");
        assert!(
            v["bad_hash_message"]
                .as_str()
                .unwrap()
                .contains("unknown hash value 99"),
            "{v}"
        );
    }
}

fn grpcio_client(python: &Path, target: &str, digest: &[u8]) -> Command {
    let mut c = Command::new(python);
    c.arg(repo().join("tests/clients/python/grpc_matrix.py"))
        .arg(target)
        .arg(hex::encode(digest))
        .env_remove("PYTHONPATH")
        .env_remove("GRPC_DEFAULT_AUTHORITY");
    c
}

/// The newest grpcio sends the socket path as `:authority`; a test that
/// ran an older one would prove nothing.
fn assert_sends_path_authority(v: &Value) {
    let version = v["grpcio"].as_str().unwrap();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    assert!(
        (major, minor) >= (1, 57),
        "the venv has grpcio {version}; the matrix needs >= 1.57 (reinstall: tests/scripts/install-deps.sh)"
    );
}

fn newest_grpcio(target_of: impl Fn(&Path) -> String, setup: DaemonSetup) {
    let python = venv_python();
    let mut d = Daemon::start(setup);
    let digest = sha2::Sha256::digest(b"from the newest grpcio").to_vec();
    let target = target_of(&d.socket);
    let v = run_json(
        &mut grpcio_client(&python, &target, &digest),
        "the newest grpcio",
    );
    eprintln!("grpcio {} with target {target}", v["grpcio"]);
    assert_sends_path_authority(&v);
    check_client(
        &v,
        &d,
        &digest,
        "verified_by_cryptography",
        "grpc.reflection.v1alpha.ServerReflection",
    );
    assert!(d.terminate().success(), "{}", d.log_text());
}

#[test]
fn newest_grpcio_unix_colon_abs_path() {
    newest_grpcio(|s| format!("unix:{}", s.display()), DaemonSetup::default());
}

#[test]
fn newest_grpcio_unix_triple_slash_abs_path() {
    newest_grpcio(
        |s| {
            assert!(s.is_absolute());
            format!("unix://{}", s.display())
        },
        DaemonSetup::default(),
    );
}

/// systemd socket activation: the listener is passed in (LISTEN_FDS) and
/// gets the same treatment as a socket the daemon bound.
#[test]
fn newest_grpcio_through_socket_activation() {
    let tool = Command::new("sh")
        .args(["-c", "command -v systemd-socket-activate"])
        .output()
        .unwrap();
    assert!(
        tool.status.success(),
        "systemd-socket-activate is missing (package systemd; tests/scripts/install-deps.sh)"
    );
    let python = venv_python();
    let mut d = Daemon::start(DaemonSetup {
        wrapper: Some(vec![
            "systemd-socket-activate".into(),
            "--listen={socket}".into(),
        ]),
        ..DaemonSetup::default()
    });
    let digest = sha2::Sha256::digest(b"activated, newest grpcio").to_vec();
    let target = format!("unix:{}", d.socket.display());
    let v = run_json(
        &mut grpcio_client(&python, &target, &digest),
        "the newest grpcio",
    );
    assert_sends_path_authority(&v);
    check_client(
        &v,
        &d,
        &digest,
        "verified_by_cryptography",
        "grpc.reflection.v1alpha.ServerReflection",
    );
    assert!(
        d.log_text().contains("socket activation"),
        "{}",
        d.log_text()
    );
    assert!(d.terminate().success(), "{}", d.log_text());
}

#[test]
fn debian_grpcio_1_51() {
    assert!(
        Path::new("/usr/lib/python3/dist-packages/grpc/__init__.py").exists(),
        "Debian's python3-grpcio is missing: tests/scripts/install-deps.sh"
    );
    assert!(
        Path::new(DEBIAN_PYDEPS).join("grpc_reflection").exists(),
        "grpcio-reflection 1.51.1 for Debian's grpcio is missing from {DEBIAN_PYDEPS}: \
         tests/scripts/install-deps.sh"
    );
    let mut d = Daemon::start(DaemonSetup::default());
    let digest = sha2::Sha256::digest(b"from Debian's grpcio").to_vec();
    let target = format!("unix:{}", d.socket.display());
    let mut c = grpcio_client(Path::new("/usr/bin/python3"), &target, &digest);
    c.env("PYTHONPATH", DEBIAN_PYDEPS);
    let v = run_json(&mut c, "Debian's grpcio");
    assert!(
        v["grpcio"].as_str().unwrap().starts_with("1.51."),
        "expected Debian's grpcio 1.51: {v}"
    );
    check_client(
        &v,
        &d,
        &digest,
        "verified_by_cryptography",
        "grpc.reflection.v1alpha.ServerReflection",
    );
    assert!(d.terminate().success(), "{}", d.log_text());
}

#[test]
fn node_grpc_js() {
    let modules = node_modules();
    let mut d = Daemon::start(DaemonSetup::default());
    let message = "from Node's grpc-js";
    let digest = sha2::Sha256::digest(message.as_bytes()).to_vec();
    let v = run_json(
        Command::new("node")
            .arg(repo().join("tests/clients/node/grpc_matrix.js"))
            .arg(format!("unix:{}", d.socket.display()))
            .arg(message)
            .arg(repo().join("proto"))
            .env("NODE_PATH", &modules),
        "node (apt-get install nodejs) with @grpc/grpc-js",
    );
    eprintln!("@grpc/grpc-js {}", v["grpc_js"]);
    assert_eq!(v["digest"], hex::encode(&digest), "{v}");
    check_client(
        &v,
        &d,
        &digest,
        "verified_by_node_crypto",
        "grpc.reflection.v1.ServerReflection",
    );
    assert!(d.terminate().success(), "{}", d.log_text());
}

/// Every service the daemon lists through reflection v1, asked with tonic.
async fn reflection_services(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            let mut names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("reflection answered {other:?}"),
    }
}

/// The matrix's steps with the workspace's own client.
async fn rust_client_round(d: &Daemon, what: &[u8]) {
    use signer_client::signer_proto::v1 as pb;
    use signer_client::{Client, KeySpec, SignEvent};
    let mut client = Client::connect(&d.socket).await.unwrap();
    let services = reflection_services(client.channel()).await;
    for s in [
        "signer.v1.Signer",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(services.iter().any(|x| x == s), "{services:?}");
    }
    assert_eq!(
        client.health("signer.v1.Signer").await.unwrap(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let keys = client.list_keys(None).await.unwrap();
    let key = keys.iter().find(|k| k.slot == "9c").unwrap();
    assert_eq!(key.key_id, d.keys[0].key_id);
    let digest = sha2::Sha256::digest(what).to_vec();
    let mut events = Vec::new();
    let signed = client
        .sign(
            KeySpec::parse(&key.key_id, None).key_ref(),
            pb::HashAlgorithm::Sha256,
            digest.clone(),
            |e| events.push(e),
        )
        .await
        .unwrap();
    assert!(
        matches!(events.as_slice(), [SignEvent::TouchRequired { slot, .. }] if slot == "9c"),
        "{events:?}"
    );
    assert_eq!(signed.digest, digest);
    assert!(verify(&d.keys[0], &digest, &signed.signature));
    let err = client
        .sign_unary(
            KeySpec::parse("9c", None).key_ref(),
            pb::HashAlgorithm::Sha256,
            digest[..31].to_vec(),
            pb::SignatureFormat::Der,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    assert!(
        err.to_string().contains("expected 32 bytes, got 31"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_signer_client() {
    let mut d = Daemon::start(DaemonSetup::default());
    rust_client_round(&d, b"from signer-client").await;
    assert!(d.terminate().success(), "{}", d.log_text());
}

/// A raw HTTP/2 client (Python's h2, outbound validation off: the Rust h2
/// client takes the authority from an `http::Uri`, which cannot hold these
/// values) sends one health check per absurd `:authority`, each on a new
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_authorities_are_served_or_refused_cleanly() {
    let python = venv_python();
    let mut d = Daemon::start(DaemonSetup::default());
    let target = format!("unix:{}", d.socket.display());
    let script = repo().join("tests/clients/python/raw_h2_authority.py");
    let v = tokio::task::spawn_blocking(move || {
        run_json(
            Command::new(&python).arg(script).arg(target),
            "the raw HTTP/2 client (Python h2)",
        )
    })
    .await
    .unwrap();
    eprintln!("{v:#}");
    let serving = "0801"; // HealthCheckResponse { status: SERVING }
    // Whatever the authority (or none), the Unix socket serves the request,
    // and the connection serves the next one.
    for case in [
        "absent",
        "empty",
        "localhost",
        "percent_encoded_path",
        "raw_path",
        "long_valid_8k",
        "long_malformed_8k",
        "non_ascii_utf8",
        "control_bytes",
    ] {
        let o = &v[case];
        assert_eq!(o["served"], true, "{case}: {o}");
        assert_eq!(o["message"], serving, "{case}: {o}");
        assert_eq!(o["second"]["served"], true, "{case}: {o}");
    }
    // Over the 16 KiB header list limit: h2 answers 431 on that stream and
    // the connection goes on.
    let o = &v["over_limit_20k"];
    assert_eq!(o["http_status"], 431, "{o}");
    assert_eq!(o["second"]["served"], true, "{o}");
    // Far over it: h2 closes the connection with ENHANCE_YOUR_CALM (0xb).
    assert_eq!(v["too_long_64k"]["goaway"], 0xb, "{}", v["too_long_64k"]);
    // Not UTF-8: an HPACK decoding error, so the connection is closed with
    // PROTOCOL_ERROR (0x1) (h2's check, kept).
    assert_eq!(v["invalid_utf8"]["goaway"], 0x1, "{}", v["invalid_utf8"]);

    // The daemon still serves everybody else.
    rust_client_round(&d, b"after the absurd authorities").await;
    assert!(d.terminate().success(), "{}", d.log_text());
}

/// signer-daemon/vendor/h2 is exactly the h2 crate from the registry plus
/// signer-daemon/vendor/h2-unix-authority.patch (nothing else slipped in).
#[test]
fn vendored_h2_is_the_registry_crate_plus_the_patch() {
    let out = Command::new("bash")
        .arg(repo().join("signer-daemon/vendor/h2.sh"))
        .arg("check")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
