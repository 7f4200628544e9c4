//! Harness for the daemon's end-to-end tests: an emulated token made with the
//! library, the real `signer-daemon serve` binary on a temporary socket, and
//! clients (the Rust gRPC client, `signerctl`, openssl, Python).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use signer_lib::emulator::{EmulatedToken, InitOptions};
use signer_lib::{
    Algorithm, KeyInfo, ManagementKey, ManagementKeyAlgorithm, PinPolicy, SlotId, Token,
    TouchPolicy,
};
use signer_proto::v1 as pb;
use signer_proto::v1::signer_client::SignerClient;
use tonic::transport::Channel;

/// A binary of the workspace, built by `cargo test --workspace`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/daemon_x-HASH -> target/debug/NAME
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p signer-daemon` (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// A key to create on the emulated token.
pub struct KeySpec {
    pub slot: SlotId,
    pub algorithm: Algorithm,
    pub pin: PinPolicy,
    pub touch: TouchPolicy,
}

impl KeySpec {
    pub fn p256(slot: SlotId) -> KeySpec {
        KeySpec {
            slot,
            algorithm: Algorithm::EccP256,
            pin: PinPolicy::Once,
            touch: TouchPolicy::Always,
        }
    }
}

/// An emulated token state file with keys, made through the library.
pub fn make_token(dir: &Path, serial: u32, keys: &[KeySpec]) -> (PathBuf, Vec<KeyInfo>) {
    let state = dir.join("token.state");
    let mut token = EmulatedToken::init(
        &state,
        &InitOptions {
            serial: Some(serial),
            ..InitOptions::default()
        },
    )
    .unwrap();
    let alg = token.management_key_algorithm();
    let _ = ManagementKeyAlgorithm::Aes192;
    token
        .authenticate(&ManagementKey::default_for(alg).unwrap())
        .unwrap();
    let infos = keys
        .iter()
        .map(|k| {
            token
                .generate_key(k.slot, k.algorithm, k.pin, k.touch)
                .unwrap()
        })
        .collect();
    (state, infos)
}

/// Options for [`Daemon::start`].
pub struct DaemonSetup {
    pub serial: u32,
    pub keys: Vec<KeySpec>,
    /// Extra TOML appended to the config file (rules, limits).
    pub config: String,
    /// Wrap the daemon's command line (e.g. systemd-socket-activate).
    pub wrapper: Option<Vec<String>>,
    /// The emulated touch source: "approve" or "deny".
    pub touch: &'static str,
}

impl Default for DaemonSetup {
    fn default() -> Self {
        DaemonSetup {
            serial: 10_000_001,
            keys: vec![KeySpec::p256(SlotId::Signature)],
            config: String::new(),
            wrapper: None,
            touch: "approve",
        }
    }
}

/// The daemon binary serving an emulated token.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub audit: PathBuf,
    pub log: PathBuf,
    pub state: PathBuf,
    pub keys: Vec<KeyInfo>,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(setup: DaemonSetup) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let (state, keys) = make_token(dir.path(), setup.serial, &setup.keys);
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "123456\n").unwrap();
        let config = dir.path().join("signer.toml");
        std::fs::write(&config, &setup.config).unwrap();
        let socket = dir.path().join("run").join("signer.sock");
        let audit = dir.path().join("audit.jsonl");
        let log = dir.path().join("daemon.log");
        let daemon = bin("signer-daemon");
        let mut args: Vec<String> = vec![
            daemon.to_string_lossy().into_owned(),
            "serve".into(),
            "--token".into(),
            format!("emulated:{}", state.display()),
            "--config".into(),
            config.to_string_lossy().into_owned(),
            "--pin-file".into(),
            pin.to_string_lossy().into_owned(),
            "--audit-log".into(),
            audit.to_string_lossy().into_owned(),
            "--log-format".into(),
            "json".into(),
        ];
        match &setup.wrapper {
            Some(w) => {
                std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
                let mut full: Vec<String> = w
                    .iter()
                    .map(|a| a.replace("{socket}", &socket.to_string_lossy()))
                    .collect();
                full.append(&mut args);
                args = full;
            }
            None => {
                args.push("--socket".into());
                args.push(socket.to_string_lossy().into_owned());
            }
        }
        let child = Command::new(&args[0])
            .args(&args[1..])
            .env_remove("SIGNER_PIN")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env("SIGNER_EMULATED_TOUCH", setup.touch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            dir,
            socket,
            audit,
            log,
            state,
            keys,
            child: Some(child),
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon exited ({status}): {}", self.log_text());
            }
            assert!(
                Instant::now() < until,
                "the daemon did not listen within 20 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// SIGTERM, then wait (at most 60 s) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        self.wait(Duration::from_secs(60))
    }

    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s;
            }
            assert!(Instant::now() < until, "the daemon did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub async fn client(&self) -> SignerClient<Channel> {
        SignerClient::new(signer_proto::unix::connect(&self.socket).await.unwrap())
    }

    pub fn signerctl(&self) -> Command {
        let mut c = Command::new(bin("signerctl"));
        c.arg("--socket")
            .arg(&self.socket)
            .env_remove("SIGNER_SOCKET");
        c
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn by_slot(slot: &str) -> Option<pb::KeyRef> {
    Some(pb::KeyRef {
        key: Some(pb::key_ref::Key::Slot(pb::SlotRef {
            token_serial: None,
            slot: slot.into(),
        })),
    })
}

pub fn by_id(id: &str) -> Option<pb::KeyRef> {
    Some(pb::KeyRef {
        key: Some(pb::key_ref::Key::KeyId(id.into())),
    })
}

pub fn sign_req(key: Option<pb::KeyRef>, digest: Vec<u8>) -> pb::SignRequest {
    pb::SignRequest {
        key,
        input: Some(pb::sign_request::Input::Digest(digest)),
        hash: pb::HashAlgorithm::Sha256 as i32,
        format: pb::SignatureFormat::Der as i32,
        padding: pb::RsaPadding::Unspecified as i32,
    }
}

/// Verify a DER ECDSA signature over a prehashed digest with the RustCrypto
/// crates (independent of the daemon's own check).
pub fn verify(key: &KeyInfo, digest: &[u8], der: &[u8]) -> bool {
    use signature::hazmat::PrehashVerifier;
    match key.algorithm() {
        Algorithm::EccP256 => {
            use p256::pkcs8::DecodePublicKey;
            let vk =
                p256::ecdsa::VerifyingKey::from_public_key_der(&key.public_key.spki_der).unwrap();
            p256::ecdsa::Signature::from_der(der)
                .is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok())
        }
        Algorithm::EccP384 => {
            use p384::pkcs8::DecodePublicKey;
            let vk =
                p384::ecdsa::VerifyingKey::from_public_key_der(&key.public_key.spki_der).unwrap();
            p384::ecdsa::Signature::from_der(der)
                .is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok())
        }
        other => panic!("no verifier for {other}"),
    }
}

/// `openssl dgst -<hash> -verify pub.pem -signature sig data`.
pub fn openssl_verify(dir: &Path, key: &KeyInfo, hash: &str, sig: &Path, data: &Path) -> bool {
    let pem = dir.join(format!("{}.pub.pem", key.key_id));
    std::fs::write(&pem, key.public_key.to_pem().unwrap()).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", &format!("-{hash}"), "-verify"])
        .arg(&pem)
        .arg("-signature")
        .arg(sig)
        .arg(data)
        .output()
        .expect("openssl is needed (tests/scripts/install-deps.sh)");
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "Verified OK"
}
