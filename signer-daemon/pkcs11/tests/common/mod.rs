//! The daemon the PKCS#11 tests talk to: an emulated token made with the
//! `signer-daemon emulated init` and `keygen` commands (so every slot also
//! holds keygen's self-signed certificate), served by the real
//! `signer-daemon serve` on a temporary socket; and how to run a test body
//! in a process of its own (the module, like any PKCS#11 module, is
//! process-wide state, and `SIGNER_SOCKET` is read at `C_Initialize`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/` of this test binary.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/NAME-HASH -> target/debug
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// A binary of the workspace.
pub fn bin(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p signer-daemon` first (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// The module under test, `libsigner_pkcs11.so`, built with this test.
pub fn module_path() -> PathBuf {
    let path = target_dir().join("libsigner_pkcs11.so");
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p signer-pkcs11` first (cargo test does not build cdylibs; tests/scripts/run-tests.sh does)",
        path.display()
    );
    path
}

/// A key to generate with `signer-daemon keygen`.
#[derive(Clone, Copy)]
pub struct Gen {
    pub slot: &'static str,
    pub alg: &'static str,
    pub pin: &'static str,
    pub touch: &'static str,
}

pub const P256_9C: Gen = Gen {
    slot: "9c",
    alg: "p256",
    pin: "once",
    touch: "always",
};

pub const ED25519_9D: Gen = Gen {
    slot: "9d",
    alg: "ed25519",
    pin: "once",
    touch: "never",
};

pub const RSA2048_82: Gen = Gen {
    slot: "82",
    alg: "rsa2048",
    pin: "once",
    touch: "never",
};

pub const P384_9A: Gen = Gen {
    slot: "9a",
    alg: "p384",
    pin: "once",
    touch: "never",
};

/// The daemon, its token and the public keys keygen printed.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub audit: PathBuf,
    pub log: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
    /// (slot, public key PEM) per generated key.
    pub keys: Vec<(&'static str, String)>,
    /// `SIGNER_EMULATED_TOUCH` of the daemon.
    pub touch: &'static str,
    child: Option<Child>,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Fixture {
    /// A token with `serial` and `keys`, served with `config` (TOML rules).
    pub fn start(serial: u32, keys: &[Gen], config: &str) -> Fixture {
        Fixture::start_with(serial, keys, config, "123456", "approve")
    }

    /// [`Fixture::start`] with the PIN the daemon is given (keygen always
    /// gets the right one) and the emulated touch source.
    pub fn start_with(
        serial: u32,
        keys: &[Gen],
        config: &str,
        serve_pin: &str,
        touch: &'static str,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("token.state");
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "123456\n").unwrap();
        run(Command::new(bin("signer-daemon"))
            .args([
                "emulated",
                "init",
                "--serial",
                &serial.to_string(),
                "--state",
            ])
            .arg(&state));
        let mut pems = Vec::new();
        for k in keys {
            let out = run(Command::new(bin("signer-daemon"))
                .args(["keygen", "--slot", k.slot, "--alg", k.alg])
                .args(["--pin-policy", k.pin, "--touch-policy", k.touch])
                .arg("--token")
                .arg(format!("emulated:{}", state.display()))
                .arg("--pin-file")
                .arg(&pin)
                .env("SIGNER_EMULATED_TOUCH", "approve")
                .env_remove("SIGNER_MGMT_KEY"));
            pems.push((k.slot, String::from_utf8(out.stdout).unwrap()));
        }
        std::fs::write(&pin, format!("{serve_pin}\n")).unwrap();
        let config_path = dir.path().join("signer.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut f = Fixture {
            socket: dir.path().join("run").join("signer.sock"),
            audit: dir.path().join("audit.jsonl"),
            log: dir.path().join("daemon.log"),
            state,
            config: config_path,
            keys: pems,
            dir,
            touch,
            child: None,
        };
        f.serve();
        f
    }

    /// Start `signer-daemon serve` (again) and wait until it listens.
    pub fn serve(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(bin("signer-daemon"))
            .arg("serve")
            .arg("--token")
            .arg(format!("emulated:{}", self.state.display()))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--config")
            .arg(&self.config)
            .arg("--pin-file")
            .arg(self.dir.path().join("pin"))
            .arg("--audit-log")
            .arg(&self.audit)
            .args(["--log-format", "json"])
            .env_remove("SIGNER_PIN")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env("SIGNER_EMULATED_TOUCH", self.touch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        self.child = Some(child);
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

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < until, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The audit lines of signatures.
    pub fn sign_lines(&self) -> Vec<serde_json::Value> {
        self.audit_lines()
            .into_iter()
            .filter(|l| l["operation"] == "sign")
            .collect()
    }

    /// The PEM keygen printed for `slot`.
    pub fn pem(&self, slot: &str) -> &str {
        &self.keys.iter().find(|(s, _)| *s == slot).unwrap().1
    }

    /// A command with the module's environment: the daemon's socket.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("SIGNER_SOCKET", &self.socket)
            .env_remove("SIGNER_PKCS11_TOUCH_PROMPT")
            .env_remove("SIGNER_PKCS11_LOG")
            .stdin(Stdio::null());
        c
    }

    /// Run the test `name` of this test binary in a process of its own
    /// (see [`child`]), with the socket, the module and this fixture's
    /// directory in its environment; `wrap` prefixes the command (setpriv).
    pub fn run_child(&self, name: &str, wrap: &[String], env: &[(&str, &str)]) -> Output {
        run_child_at(&self.socket, self.dir.path(), name, wrap, env)
    }
}

/// [`Fixture::run_child`] for any daemon socket and directory.
pub fn run_child_at(
    socket: &Path,
    dir: &Path,
    name: &str,
    wrap: &[String],
    env: &[(&str, &str)],
) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut c = if wrap.is_empty() {
        Command::new(&exe)
    } else {
        let mut c = Command::new(&wrap[0]);
        c.args(&wrap[1..]).arg(&exe);
        c
    };
    c.env("SIGNER_SOCKET", socket)
        .env_remove("SIGNER_PKCS11_TOUCH_PROMPT")
        .env_remove("SIGNER_PKCS11_LOG")
        .stdin(Stdio::null())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SIGNER_PKCS11_TEST_CHILD", name)
        .env("SIGNER_PKCS11_TEST_MODULE", module_path())
        .env("SIGNER_PKCS11_TEST_DIR", dir);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 passed") || !out.status.success(),
        "the child ran no test: {stdout}"
    );
    out
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// True when this process is the child [`Fixture::run_child`] started for
/// the test `name`: the test then runs its PKCS#11 body.
pub fn child(name: &str) -> bool {
    std::env::var("SIGNER_PKCS11_TEST_CHILD").as_deref() == Ok(name)
}

/// In a child: the fixture's directory.
pub fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("SIGNER_PKCS11_TEST_DIR").unwrap())
}

/// Assert a child succeeded, showing its output and the daemon's log.
pub fn assert_child_ok(f: &Fixture, out: &Output) {
    assert!(
        out.status.success(),
        "child failed ({}):\nstdout: {}\nstderr: {}\ndaemon: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        f.log_text()
    );
}

/// Verify an r‖s signature over a digest with RustCrypto, given the key's
/// SubjectPublicKeyInfo PEM.
pub fn verify_raw(pem: &str, digest: &[u8], raw: &[u8]) -> bool {
    use signature::hazmat::PrehashVerifier;
    if let Ok(vk) =
        <p256::ecdsa::VerifyingKey as p256::pkcs8::DecodePublicKey>::from_public_key_pem(pem)
    {
        return p256::ecdsa::Signature::from_slice(raw)
            .is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok());
    }
    let vk = <p384::ecdsa::VerifyingKey as p384::pkcs8::DecodePublicKey>::from_public_key_pem(pem)
        .unwrap();
    p384::ecdsa::Signature::from_slice(raw).is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok())
}
