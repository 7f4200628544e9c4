//! A private pcscd with vpcd virtual readers, for tests and scripts, that
//! never touches the machine's own pcscd.
//!
//! # How it isolates
//!
//! pcscd 1.9.9 always binds `/run/pcscd/pcscd.comm`. The sandbox runs it as
//! root inside a private mount namespace (`unshare --mount`) where a bind
//! mount puts the sandbox's own directory over `/run/pcscd`, and the USB
//! driver bundles (`/usr/lib/pcsc/drivers/*.bundle`) are hidden so that it
//! never grabs a real reader or YubiKey. Its reader configuration directory
//! (`pcscd --foreground --config DIR`) holds only vpcd entries. Clients reach
//! it through `PCSCLITE_CSOCK_NAME=<sandbox>/run/pcscd.comm`. When pcscd
//! exits, its namespace and mounts disappear with it; the directory is
//! removed on drop.
//!
//! # Readers
//!
//! By default every virtual reader is named as a YubiKey 5's reader is under
//! pcscd, [`YUBIKEY_READER_NAME`] ("Yubico YubiKey OTP+FIDO+CCID"), because
//! Yubico's tools pick readers by that name: yubico-piv-tool's default reader
//! is "Yubico", libykcs11 only lists readers whose name starts with "Yubico",
//! and ykman counts every reader whose name contains "yubico yubikey" as one
//! YubiKey ([`SandboxConfig::reader_name`] chooses another name).
//!
//! pcscd names a `reader.conf` entry's readers `FRIENDLYNAME 00 SS` (SS =
//! the driver's slot). Debian's vpcd driver has two slots per entry (a
//! compile-time constant of vsmartcard, `--enable-vpcdslots`, default 2),
//! so one entry gives "NAME 00 00" and an always empty "NAME 00 01", which
//! ykman counts as a second YubiKey ("Multiple YubiKeys detected"). The
//! sandbox therefore uses, by default, vpcd built from the same Debian
//! source with one slot ([`VpcdDriver::OneSlot`], built by
//! `tests/scripts/vpcd-one-slot.sh`, which `install-deps.sh` runs): each
//! entry is one reader, one card, like one plugged-in YubiKey. Entry 0 is
//! named NAME, the following ones "NAME 1", "NAME 2", ... (pcscd numbers
//! identical names only for readers of one driver library, and each entry
//! loads its own copy of the driver, see below), on any free TCP ports (on
//! all interfaces: anyone who can reach the port can insert a card, so use
//! the sandbox on trusted machines only):
//!
//! | reader | name (default, one-slot vpcd)            | vpcd port |
//! |--------|------------------------------------------|-----------|
//! | 0      | `Yubico YubiKey OTP+FIDO+CCID 00 00`     | P0        |
//! | 1      | `Yubico YubiKey OTP+FIDO+CCID 1 00 00`   | P1        |
//! | 2      | `Yubico YubiKey OTP+FIDO+CCID 2 00 00`   | P2        |
//!
//! With [`VpcdDriver::Debian`] (two slots per entry, ports P and P + 1)
//! the readers are `NAME 00 00`, `NAME 00 01`, `NAME 1 00 00`, `NAME 1 00 01`,
//! ... and the reader count is rounded up to even.
//!
//! (yubico-piv-tool and ykman `--reader` pick readers by name substring: use
//! the full name.) pcsc-lite allows 16 readers, so at most 16 virtual readers.
//!
//! # pcsc-lite reads `PCSCLITE_CSOCK_NAME` once per process
//!
//! The client library (`winscard_msg.c`, `getSocketName`) reads the variable
//! under `pthread_once` at the first PC/SC call, and Rust 2024 cannot set
//! environment variables safely in a running, multi-threaded test process.
//! So a process's pcsc clients talk to one pcscd for the process's lifetime,
//! chosen before it starts. The harness therefore offers:
//!
//! - [`run_sandboxed`]: the test re-runs **itself** (just this one test) in a
//!   child process whose environment points at a fresh sandbox; the body
//!   runs there with in-process pcsc clients (the `pcsc` crate, our hardware
//!   backend). Each test gets its own pcscd and ports, so tests run in
//!   parallel and a test that restarts pcscd disturbs no other.
//! - [`Sandbox::start_for_subprocesses`]: a sandbox for clients that run as
//!   subprocesses (`yubico-piv-tool`, `ykman`, `pkcs11-tool`), given
//!   [`Sandbox::client_env`] (see [`Sandbox::command`]). In-process pcsc
//!   calls of that process do **not** reach it.
//! - [`Sandbox::start_detached`] and the `pcsc-sandbox` binary
//!   (`tests/scripts/pcsc-sandbox.sh start|stop|restart|status`): a sandbox
//!   that outlives the command, for scripts and people; `start` prints the
//!   `export` lines for a shell.
//!
//! # Requirements
//!
//! Root (for `unshare --mount` and `mount`), the Debian packages `pcscd`,
//! `vsmartcard-vpcd`, `util-linux` (`unshare`, `setpriv`) and `mount`, and
//! the one-slot vpcd driver (`tests/scripts/vpcd-one-slot.sh`). Without
//! them, starting fails with [`SandboxError::NotRoot`],
//! [`SandboxError::Missing`] or [`SandboxError::MissingOneSlotDriver`]
//! naming what is missing; tests turn that into a failure, never a skip.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::net::TcpListener;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The environment variable pcsc-lite clients read to find pcscd.
pub const CSOCK_ENV: &str = "PCSCLITE_CSOCK_NAME";
/// The sandbox directory, exported by `pcsc-sandbox start` and set for the
/// child process of [`run_sandboxed`].
pub const SANDBOX_DIR_ENV: &str = "SIGNER_PCSC_SANDBOX";
/// Set for the child process of [`run_sandboxed`]: the test it must run.
pub const SANDBOX_TEST_ENV: &str = "SIGNER_PCSC_SANDBOX_TEST";
/// Override the path of the one-slot vpcd driver ([`VpcdDriver::OneSlot`];
/// default [`ONE_SLOT_VPCD_DRIVER`]).
pub const VPCD_DRIVER_ENV: &str = "SIGNER_VPCD_DRIVER";
/// Set to `1` to run pcscd with `--debug` (its log is in the sandbox
/// directory, `pcscd.log`). APDUs are never logged (they may hold PINs).
pub const PCSCD_DEBUG_ENV: &str = "SIGNER_PCSCD_DEBUG";

/// Debian's vpcd driver (two slots per `reader.conf` entry).
pub const DEBIAN_VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
/// vpcd built with one slot per entry by `tests/scripts/vpcd-one-slot.sh`.
pub const ONE_SLOT_VPCD_DRIVER: &str = "/usr/local/lib/signer-e2e-vpcd/libifdvpcd.so";
/// pcsc-lite's limit on readers.
pub const MAX_READERS: usize = 16;
/// The name pcscd gives a YubiKey 5's CCID interface (USB, with OTP, FIDO
/// and CCID enabled, the factory setting), before the " 00 00" it appends.
pub const YUBIKEY_READER_NAME: &str = "Yubico YubiKey OTP+FIDO+CCID";
/// The name Debian's vsmartcard-vpcd gives its readers in the system pcscd.
pub const VIRTUAL_PCD_READER_NAME: &str = "Virtual PCD";
/// The longest reader name the sandbox accepts: pcsc-lite truncates names
/// at 121 bytes, and the sandbox appends " 15" to later entries' names.
pub const MAX_READER_NAME_LEN: usize = 100;

/// pcscd's directory of USB driver bundles (Debian's `usbdropdir`).
const USB_DRIVERS_DIR: &str = "/usr/lib/pcsc/drivers";
/// The socket directory pcscd insists on.
const PCSCD_RUN_DIR: &str = "/run/pcscd";
const STATE_FILE: &str = "sandbox.conf";
const PID_FILE: &str = "pcscd.spawned.pid";
const LOG_FILE: &str = "pcscd.log";

/// Why a sandbox cannot start or stop.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Not running as root.
    #[error(
        "the private pcscd needs root (it uses `unshare --mount` and a bind mount over /run/pcscd); \
         run the tests as root (CI does), e.g. `sudo -E tests/scripts/run-tests.sh`"
    )]
    NotRoot,
    /// A program or file the sandbox needs is missing.
    #[error(
        "the private pcscd needs {what}, which is missing: install the Debian package `{package}` \
         (tests/scripts/install-deps.sh installs everything)"
    )]
    Missing {
        /// What is missing (a program or a file).
        what: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The one-slot vpcd driver has not been built.
    #[error(
        "the private pcscd needs the one-slot vpcd driver {path}, which is missing: build it with \
         `tests/scripts/vpcd-one-slot.sh` (from the source of the Debian package vsmartcard-vpcd; \
         tests/scripts/install-deps.sh runs it), or use Debian's two-slot driver \
         (`pcsc-sandbox start --two-slot-vpcd`)"
    )]
    MissingOneSlotDriver {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An invalid configuration (e.g. too many readers).
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// A file system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the sandbox was doing.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// pcscd did not come up (or its readers did not).
    #[error("the private pcscd failed: {reason}\n--- {log} (last lines) ---\n{log_tail}")]
    Pcscd {
        /// What went wrong.
        reason: String,
        /// The log file.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },
    /// The process's `PCSCLITE_CSOCK_NAME` does not point at this sandbox.
    #[error(
        "in-process PC/SC clients of this process cannot reach the sandbox: {0} \
         (pcsc-lite reads PCSCLITE_CSOCK_NAME once per process; use run_sandboxed)"
    )]
    Environment(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let context = context.into();
    move |source| SandboxError::Io { context, source }
}

/// Which vpcd driver serves the sandbox's `reader.conf` entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VpcdDriver {
    /// vpcd built from Debian's source with one slot per entry
    /// (`tests/scripts/vpcd-one-slot.sh`): one reader per entry, so each
    /// card is one reader, as one plugged-in YubiKey is.
    #[default]
    OneSlot,
    /// Debian's `vsmartcard-vpcd` driver: two readers per entry, the second
    /// (`... 00 01`) on the next port.
    Debian,
}

impl VpcdDriver {
    /// Readers per `reader.conf` entry.
    pub fn slots(self) -> usize {
        match self {
            VpcdDriver::OneSlot => 1,
            VpcdDriver::Debian => 2,
        }
    }

    /// The driver library (the one-slot path can be overridden with
    /// `SIGNER_VPCD_DRIVER`).
    pub fn path(self) -> PathBuf {
        match self {
            VpcdDriver::OneSlot => std::env::var_os(VPCD_DRIVER_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(ONE_SLOT_VPCD_DRIVER)),
            VpcdDriver::Debian => PathBuf::from(DEBIAN_VPCD_DRIVER),
        }
    }

    fn tag(self) -> &'static str {
        match self {
            VpcdDriver::OneSlot => "one-slot",
            VpcdDriver::Debian => "debian",
        }
    }

    fn from_tag(tag: &str) -> Option<VpcdDriver> {
        [VpcdDriver::OneSlot, VpcdDriver::Debian]
            .into_iter()
            .find(|d| d.tag() == tag)
    }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Virtual readers wanted (1 to 16; default 1); with
    /// [`VpcdDriver::Debian`] rounded up to even, since each entry brings two.
    pub readers: usize,
    /// The readers' name before pcscd's " 00 00" (default
    /// [`YUBIKEY_READER_NAME`]); entries after the first get " 1", " 2", ...
    pub reader_name: String,
    /// The vpcd driver (default [`VpcdDriver::OneSlot`]).
    pub vpcd: VpcdDriver,
    /// Run pcscd with `--debug` (default: from `SIGNER_PCSCD_DEBUG=1`).
    pub pcscd_debug: bool,
    /// [`run_sandboxed`] fails the test when its child process runs longer.
    pub timeout: Duration,
}

impl Default for SandboxConfig {
    fn default() -> SandboxConfig {
        SandboxConfig {
            readers: 1,
            reader_name: YUBIKEY_READER_NAME.to_string(),
            vpcd: VpcdDriver::OneSlot,
            pcscd_debug: std::env::var(PCSCD_DEBUG_ENV).is_ok_and(|v| v == "1"),
            timeout: Duration::from_secs(600),
        }
    }
}

impl SandboxConfig {
    /// Check the reader count (1 to 16) and the reader name (1 to 100
    /// printable characters, no `"`, no leading or trailing space).
    pub fn validate(&self) -> Result<(), SandboxError> {
        if self.readers == 0 || self.readers > MAX_READERS {
            return Err(SandboxError::Config(format!(
                "{} readers asked, pcsc-lite allows 1 to {MAX_READERS}",
                self.readers
            )));
        }
        let name = &self.reader_name;
        if name.is_empty()
            || name.len() > MAX_READER_NAME_LEN
            || name.trim() != name
            || name.chars().any(|c| c.is_control() || c == '"')
        {
            return Err(SandboxError::Config(format!(
                "reader name {name:?}: it must be 1 to {MAX_READER_NAME_LEN} bytes of printable \
                 characters without '\"' or leading or trailing spaces"
            )));
        }
        Ok(())
    }

    /// The default configuration with `n` readers.
    pub fn with_readers(n: usize) -> SandboxConfig {
        SandboxConfig {
            readers: n,
            ..SandboxConfig::default()
        }
    }
}

/// One virtual reader slot: its PC/SC name and the vpcd port a card
/// connects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualReader {
    /// The reader's name as PC/SC clients see it, e.g. `Virtual PCD 00 00`.
    pub name: String,
    /// The TCP port its vpcd driver listens on.
    pub port: u16,
}

impl VirtualReader {
    /// `127.0.0.1:PORT`, for [`signer_lib::transport::vpcd::BridgeConfig`]
    /// or `signer-daemon emulate-card --vpcd`.
    pub fn vpcd_address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// How the sandbox's pcscd is tied to its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Killed when the `Sandbox` drops or its process dies.
    Owned,
    /// Outlives the command that started it (scripts).
    Detached,
}

/// A private pcscd with vpcd readers. Dropping it stops pcscd and removes
/// its directory (unless it was started detached and not reopened).
pub struct Sandbox {
    dir: PathBuf,
    /// Remove `dir` on drop.
    owns_dir: bool,
    readers: Vec<VirtualReader>,
    driver: PathBuf,
    config: SandboxConfig,
    mode: Mode,
    pcscd: Option<Child>,
    spawner: Option<Spawner>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("dir", &self.dir)
            .field("readers", &self.readers)
            .field("pcscd_pid", &self.pcscd_pid())
            .finish()
    }
}

/// Check root and the programs and files the sandbox needs, with the vpcd
/// driver `vpcd`. Returns the driver's path.
pub fn check_prerequisites(vpcd: VpcdDriver) -> Result<PathBuf, SandboxError> {
    if !rustix::process::geteuid().is_root() {
        return Err(SandboxError::NotRoot);
    }
    for (program, package) in [
        ("pcscd", "pcscd"),
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
        ("mount", "mount"),
    ] {
        find_program(program).ok_or_else(|| SandboxError::Missing {
            what: format!("the program `{program}`"),
            package,
        })?;
    }
    // Both drivers need the package (the one-slot one is built from its
    // source, and it is the package that makes pcscd able to use vpcd).
    if !Path::new(DEBIAN_VPCD_DRIVER).is_file() {
        return Err(SandboxError::Missing {
            what: format!("the vpcd reader driver {DEBIAN_VPCD_DRIVER}"),
            package: "vsmartcard-vpcd",
        });
    }
    let driver = vpcd.path();
    if !driver.is_file() {
        return Err(match vpcd {
            VpcdDriver::OneSlot => SandboxError::MissingOneSlotDriver { path: driver },
            VpcdDriver::Debian => SandboxError::Missing {
                what: format!("the vpcd reader driver {}", driver.display()),
                package: "vsmartcard-vpcd",
            },
        });
    }
    Ok(driver)
}

/// Find a program on PATH or in the system directories root's PATH has.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Sandbox {
    /// Start a sandbox in a fresh temporary directory, for PC/SC clients
    /// that run as **subprocesses** with [`Sandbox::client_env`]. In-process
    /// pcsc calls do not reach it (see the module documentation).
    pub fn start_for_subprocesses(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        config.validate()?;
        let driver = check_prerequisites(config.vpcd)?;
        let dir = make_sandbox_dir()?;
        Sandbox::start_in(dir, true, driver, config, Mode::Owned)
    }

    /// Start the sandbox this process's environment names (the child side
    /// of [`run_sandboxed`]): `SIGNER_PCSC_SANDBOX` is its directory and
    /// `PCSCLITE_CSOCK_NAME` its socket, so in-process pcsc clients reach it.
    pub fn start_for_this_process(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let driver = check_prerequisites(config.vpcd)?;
        let dir = std::env::var_os(SANDBOX_DIR_ENV)
            .map(PathBuf::from)
            .ok_or_else(|| SandboxError::Environment(format!("{SANDBOX_DIR_ENV} is not set")))?;
        let socket = socket_path(&dir);
        match std::env::var_os(CSOCK_ENV) {
            Some(v) if Path::new(&v) == socket => {}
            other => {
                return Err(SandboxError::Environment(format!(
                    "{CSOCK_ENV} is {other:?}, the sandbox socket is {}",
                    socket.display()
                )));
            }
        }
        Sandbox::start_in(dir, true, driver, config, Mode::Owned)
    }

    /// Start a sandbox that keeps running after this process exits (for
    /// scripts). Stop it with [`Sandbox::open`] + drop, or
    /// `pcsc-sandbox stop`.
    pub fn start_detached(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        config.validate()?;
        let driver = check_prerequisites(config.vpcd)?;
        let dir = make_sandbox_dir()?;
        let mut sandbox = Sandbox::start_in(dir, true, driver, config, Mode::Detached)?;
        // The caller decides between `detach` (leave it running) and drop.
        sandbox.owns_dir = true;
        Ok(sandbox)
    }

    /// Take over a sandbox started detached, from its directory. Dropping
    /// the result stops its pcscd and removes the directory.
    pub fn open(dir: &Path) -> Result<Sandbox, SandboxError> {
        let text = fs::read_to_string(dir.join(STATE_FILE))
            .map_err(io_err(format!("{} is not a pcsc sandbox", dir.display())))?;
        let state = parse_state(&text).ok_or_else(|| {
            SandboxError::Config(format!("{} is corrupt", dir.join(STATE_FILE).display()))
        })?;
        let driver = check_prerequisites(state.config.vpcd)?;
        Ok(Sandbox {
            dir: dir.to_path_buf(),
            owns_dir: true,
            config: state.config,
            readers: state.readers,
            driver,
            mode: Mode::Detached,
            pcscd: None,
            spawner: None,
        })
    }

    /// Leave a detached sandbox running: forget it without stopping pcscd.
    pub fn detach(mut self) {
        self.pcscd = None;
        self.owns_dir = false;
        self.mode = Mode::Detached;
    }

    fn start_in(
        dir: PathBuf,
        owns_dir: bool,
        driver: PathBuf,
        config: SandboxConfig,
        mode: Mode,
    ) -> Result<Sandbox, SandboxError> {
        // From here on, dropping `sandbox` (on any error) cleans up.
        let mut sandbox = Sandbox {
            dir,
            owns_dir,
            readers: Vec::new(),
            driver,
            config,
            mode,
            pcscd: None,
            spawner: None,
        };
        sandbox.config.validate()?;
        if sandbox.socket_path().as_os_str().len() > 107 {
            return Err(SandboxError::Config(format!(
                "the socket path {} is too long for a Unix socket; set TMPDIR to a shorter directory",
                sandbox.socket_path().display()
            )));
        }
        ensure_pcscd_run_dir()?;
        for sub in ["run", "reader.conf.d", "drivers"] {
            let path = sandbox.dir.join(sub);
            fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&path)
                .map_err(io_err(format!("creating {}", path.display())))?;
        }
        // Clients (maybe not root) must reach the socket's directory.
        fs::set_permissions(sandbox.dir.join("run"), fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod run directory"))?;
        fs::set_permissions(&sandbox.dir, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod sandbox directory"))?;
        if mode == Mode::Owned {
            sandbox.spawner = Some(Spawner::new()?);
        }
        // Free ports can be taken between our check and pcscd's bind: retry
        // with fresh ports a few times.
        let mut last = None;
        for _ in 0..3 {
            sandbox.readers = allocate_readers(&sandbox.config)?;
            sandbox.write_config()?;
            match sandbox.start_pcscd() {
                Ok(()) => return Ok(sandbox),
                Err(e @ SandboxError::Pcscd { .. }) if sandbox.ports_were_taken() => {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| SandboxError::Config("could not allocate ports".into())))
    }

    /// The sandbox directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The socket clients connect to (`PCSCLITE_CSOCK_NAME`).
    pub fn socket_path(&self) -> PathBuf {
        socket_path(&self.dir)
    }

    /// pcscd's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// The last `lines` lines of pcscd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    /// The virtual readers, in order.
    pub fn readers(&self) -> &[VirtualReader] {
        &self.readers
    }

    /// The configuration it was started with (reader count as allocated).
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// `reader.conf` entries (one per reader, or one per two readers with
    /// Debian's vpcd).
    fn entries(&self) -> usize {
        self.readers.len() / self.config.vpcd.slots()
    }

    /// Reader `i`. Panics when out of range (a bug in the test).
    pub fn reader(&self, i: usize) -> &VirtualReader {
        &self.readers[i]
    }

    /// The environment a PC/SC client process needs to use this sandbox.
    pub fn client_env(&self) -> Vec<(String, String)> {
        vec![
            (
                CSOCK_ENV.to_string(),
                self.socket_path().display().to_string(),
            ),
            (SANDBOX_DIR_ENV.to_string(), self.dir.display().to_string()),
        ]
    }

    /// A command for `program` with [`Sandbox::client_env`] set.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.envs(self.client_env());
        c
    }

    /// Shell `export` lines for the sandbox (what `pcsc-sandbox start`
    /// prints): `PCSCLITE_CSOCK_NAME`, `SIGNER_PCSC_SANDBOX`, `SIGNER_VPCD`
    /// (reader 0's vpcd address, which `signer-daemon emulate-card` reads),
    /// `SIGNER_PCSC_READER` (reader 0's name), and per reader
    /// `SIGNER_VPCD_<i>` and `SIGNER_PCSC_READER_<i>`.
    pub fn shell_exports(&self) -> String {
        let mut out = String::new();
        for (k, v) in self.client_env() {
            out.push_str(&format!("export {k}={}\n", shell_quote(&v)));
        }
        if let Some(r) = self.readers.first() {
            out.push_str(&format!("export SIGNER_VPCD={}\n", r.vpcd_address()));
            out.push_str(&format!(
                "export SIGNER_PCSC_READER={}\n",
                shell_quote(&r.name)
            ));
        }
        for (i, r) in self.readers.iter().enumerate() {
            out.push_str(&format!("export SIGNER_VPCD_{i}={}\n", r.vpcd_address()));
            out.push_str(&format!(
                "export SIGNER_PCSC_READER_{i}={}\n",
                shell_quote(&r.name)
            ));
        }
        out
    }

    /// pcscd's process id, when this handle started it.
    pub fn pcscd_pid(&self) -> Option<u32> {
        self.pcscd.as_ref().map(Child::id)
    }

    /// Whether this sandbox's pcscd is running (also one started detached).
    pub fn is_pcscd_running(&mut self) -> bool {
        if let Some(child) = self.pcscd.as_mut() {
            return matches!(child.try_wait(), Ok(None));
        }
        self.recorded_pcscd_pid().is_some()
    }

    /// Stop pcscd (SIGTERM, then SIGKILL after 5 s): every reader and card
    /// disappears, clients get errors, bridges start reconnecting.
    pub fn stop_pcscd(&mut self) -> Result<(), SandboxError> {
        if let Some(mut child) = self.pcscd.take() {
            terminate(&mut child)?;
        } else if let Some(pid) = self.recorded_pcscd_pid() {
            terminate_pid(pid, &self.dir)?;
        }
        let _ = fs::remove_file(self.dir.join(PID_FILE));
        Ok(())
    }

    /// Start pcscd again (after [`Sandbox::stop_pcscd`]) on the same socket
    /// and ports, and wait until its readers listen.
    pub fn start_pcscd(&mut self) -> Result<(), SandboxError> {
        if self.is_pcscd_running() {
            return Ok(());
        }
        // A pcscd killed hard leaves its socket and pid file behind.
        for stale in ["pcscd.comm", "pcscd.pid"] {
            let _ = fs::remove_file(self.dir.join("run").join(stale));
        }
        let child = self.spawn_pcscd()?;
        let pid = child.id();
        self.pcscd = Some(child);
        fs::write(self.dir.join(PID_FILE), format!("{pid}\n"))
            .map_err(io_err("writing pid file"))?;
        self.wait_ready(Duration::from_secs(15))
    }

    /// Stop and start pcscd (fault tests: "pcscd restarted").
    pub fn restart_pcscd(&mut self) -> Result<(), SandboxError> {
        self.stop_pcscd()?;
        self.start_pcscd()
    }

    fn spawn_pcscd(&self) -> Result<Child, SandboxError> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io_err(format!("opening {}", self.log_path().display())))?;
        let log2 = log.try_clone().map_err(io_err("log file"))?;
        let drivers_dir = Path::new(USB_DRIVERS_DIR);
        // In the new mount namespace: our directory over /run/pcscd; empty
        // read-only tmpfs over every USB driver bundle; one private copy of
        // the vpcd driver per reader.conf entry, on a tmpfs (exec allowed
        // even where /tmp is noexec), then pcscd.
        //
        // Why copies: vpcd keeps its connections in a global array indexed
        // by slot number only, so two entries loaded from the same library
        // share (and overwrite) each other's slots. pcscd loads a library
        // once per path (and the loader once per inode), so a copy per entry
        // gets its own globals.
        let script = r#"set -e
run="$1"; conf="$2"; bundles="$3"; driver="$4"; copies="$5"; entries="$6"; shift 6
mount --bind "$run" /run/pcscd
for b in "$bundles"/*.bundle; do
  if [ -d "$b" ]; then mount -t tmpfs -o ro,size=4k,mode=0755 none "$b"; fi
done
mount -t tmpfs -o size=8m,mode=0755 none "$copies"
i=0
while [ "$i" -lt "$entries" ]; do
  cp "$driver" "$copies/libifdvpcd-$i.so"
  i=$((i + 1))
done
exec pcscd --foreground --config "$conf" "$@"
"#;
        let mut cmd = Command::new("unshare");
        if self.mode == Mode::Owned {
            // pcscd dies with the thread that spawned it (the spawner
            // thread, which lives as long as this Sandbox).
            cmd = Command::new("setpriv");
            cmd.args(["--pdeathsig", "TERM", "--", "unshare"]);
        }
        cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(script)
            .arg("sh")
            .arg(self.dir.join("run"))
            .arg(self.dir.join("reader.conf.d"))
            .arg(drivers_dir)
            .arg(&self.driver)
            .arg(self.driver_copies_dir())
            .arg(self.entries().to_string());
        if self.config.pcscd_debug {
            cmd.arg("--debug");
        }
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("NOTIFY_SOCKET")
            // Its own process group: a terminal's Ctrl-C for the caller
            // does not reach a detached pcscd; owned ones die via pdeathsig.
            .process_group(0);
        let spawned = match &self.spawner {
            Some(s) => s.spawn(cmd),
            None => cmd.spawn(),
        };
        spawned.map_err(io_err("starting pcscd (unshare)"))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), SandboxError> {
        let deadline = Instant::now() + timeout;
        let ports: Vec<u16> = self.readers.iter().map(|r| r.port).collect();
        loop {
            if let Some(child) = self.pcscd.as_mut() {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        self.pcscd = None;
                        return Err(self.pcscd_error(format!("pcscd exited at start ({status})")));
                    }
                    Ok(None) => {}
                    Err(e) => return Err(io_err("waiting for pcscd")(e)),
                }
            }
            let listening = listening_tcp_ports();
            if self.socket_path().exists() && ports.iter().all(|p| listening.contains(p)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let missing: Vec<u16> = ports
                    .iter()
                    .copied()
                    .filter(|p| !listening.contains(p))
                    .collect();
                let reason = if self.socket_path().exists() {
                    format!("its vpcd readers do not listen on ports {missing:?} after {timeout:?}")
                } else {
                    format!(
                        "no socket at {} after {timeout:?}",
                        self.socket_path().display()
                    )
                };
                let err = self.pcscd_error(reason);
                let _ = self.stop_pcscd();
                return Err(err);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the log says a vpcd port could not be bound.
    fn ports_were_taken(&self) -> bool {
        tail(&self.log_path(), 50).contains("Could not initialize connection to virtual ICC")
    }

    fn pcscd_error(&self, reason: String) -> SandboxError {
        SandboxError::Pcscd {
            reason,
            log: self.log_path(),
            log_tail: self.log_tail(30),
        }
    }

    /// A pid recorded by whoever started pcscd for this directory, if that
    /// process is still this sandbox's pcscd.
    fn recorded_pcscd_pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.dir.join(PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_our_pcscd(pid, &self.dir).then_some(pid)
    }

    /// Where the per-entry driver copies live (a tmpfs inside pcscd's
    /// namespace; an empty directory outside it).
    fn driver_copies_dir(&self) -> PathBuf {
        self.dir.join("drivers")
    }

    fn write_config(&self) -> Result<(), SandboxError> {
        let conf_dir = self.dir.join("reader.conf.d");
        // Remove entries of an earlier attempt.
        if let Ok(entries) = fs::read_dir(&conf_dir) {
            for e in entries.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        let slots = self.config.vpcd.slots();
        let mut state = format!(
            "# driver <one-slot|debian>, name <reader name>, reader <port> <name>\n\
             driver {}\nname {}\n",
            self.config.vpcd.tag(),
            self.config.reader_name
        );
        for (entry, group) in self.readers.chunks(slots).enumerate() {
            let port = group[0].port;
            let ports: Vec<String> = group.iter().map(|r| r.port.to_string()).collect();
            let text = format!(
                "# vpcd entry {entry}: {} on port(s) {}\n\
                 FRIENDLYNAME \"{}\"\n\
                 DEVICENAME   /dev/null:{port}\n\
                 LIBPATH      {}\n\
                 CHANNELID    {port}\n",
                self.driver.display(),
                ports.join(", "),
                friendly_name(&self.config.reader_name, entry),
                self.driver_copies_dir()
                    .join(format!("libifdvpcd-{entry}.so"))
                    .display()
            );
            let file = conf_dir.join(format!("vpcd-{entry}"));
            fs::write(&file, text).map_err(io_err(format!("writing {}", file.display())))?;
        }
        for r in &self.readers {
            state.push_str(&format!("reader {} {}\n", r.port, r.name));
        }
        fs::write(self.dir.join(STATE_FILE), state).map_err(io_err("writing sandbox.conf"))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.mode == Mode::Detached && !self.owns_dir {
            return;
        }
        if let Err(e) = self.stop_pcscd() {
            eprintln!("pcsc sandbox: stopping pcscd failed: {e}");
        }
        // The spawner thread ends after pcscd is gone.
        self.spawner = None;
        if self.owns_dir {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                eprintln!("pcsc sandbox: removing {} failed: {e}", self.dir.display());
            }
        }
    }
}

fn socket_path(dir: &Path) -> PathBuf {
    dir.join("run").join("pcscd.comm")
}

/// The `FRIENDLYNAME` of `reader.conf` entry `entry`.
fn friendly_name(name: &str, entry: usize) -> String {
    if entry == 0 {
        name.to_string()
    } else {
        format!("{name} {entry}")
    }
}

/// The readers for `config`: one per entry on a free port (one-slot vpcd),
/// or two per entry on consecutive free ports (Debian's vpcd; the count
/// rounded up to even).
fn allocate_readers(config: &SandboxConfig) -> Result<Vec<VirtualReader>, SandboxError> {
    let slots = config.vpcd.slots();
    let entries = config.readers.div_ceil(slots);
    let mut held = Vec::new();
    let mut readers = Vec::new();
    let mut attempts = 0;
    while readers.len() < entries * slots {
        attempts += 1;
        if attempts > 200 {
            return Err(SandboxError::Config(
                "no two consecutive free TCP ports found".into(),
            ));
        }
        let first = TcpListener::bind("0.0.0.0:0").map_err(io_err("finding a free port"))?;
        let port = first
            .local_addr()
            .map_err(io_err("finding a free port"))?
            .port();
        let entry = readers.len() / slots;
        let name = friendly_name(&config.reader_name, entry);
        if slots == 2 {
            let Some(next) = port.checked_add(1) else {
                continue;
            };
            let Ok(second) = TcpListener::bind(("0.0.0.0", next)) else {
                continue;
            };
            held.push(second);
            readers.push(VirtualReader {
                name: format!("{name} 00 00"),
                port,
            });
            readers.push(VirtualReader {
                name: format!("{name} 00 01"),
                port: next,
            });
        } else {
            readers.push(VirtualReader {
                name: format!("{name} 00 00"),
                port,
            });
        }
        held.push(first);
    }
    // `held` closes here, just before pcscd binds the ports.
    Ok(readers)
}

/// A detached sandbox's configuration and readers, from its state file.
struct State {
    config: SandboxConfig,
    readers: Vec<VirtualReader>,
}

fn parse_state(text: &str) -> Option<State> {
    let mut readers = Vec::new();
    let mut config = SandboxConfig::default();
    let (mut driver, mut name) = (false, false);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = line.split_once(' ')?;
        match key {
            "driver" => {
                config.vpcd = VpcdDriver::from_tag(rest)?;
                driver = true;
            }
            "name" => {
                config.reader_name = rest.to_string();
                name = true;
            }
            "reader" => {
                let (port, name) = rest.split_once(' ')?;
                readers.push(VirtualReader {
                    name: name.to_string(),
                    port: port.parse().ok()?,
                });
            }
            _ => return None,
        }
    }
    config.readers = readers.len();
    (driver && name && !readers.is_empty() && readers.len() % config.vpcd.slots() == 0)
        .then_some(State { config, readers })
}

/// `/run/pcscd` must exist to be a mount point. Creating it (as pcscd
/// itself would, root-owned, 0755) is the only change outside the sandbox.
fn ensure_pcscd_run_dir() -> Result<(), SandboxError> {
    let p = Path::new(PCSCD_RUN_DIR);
    if !p.is_dir() {
        fs::DirBuilder::new()
            .mode(0o755)
            .recursive(true)
            .create(p)
            .map_err(io_err("creating /run/pcscd (the bind mount point)"))?;
    }
    Ok(())
}

fn make_sandbox_dir() -> Result<PathBuf, SandboxError> {
    let dir = tempfile::Builder::new()
        .prefix("signer-pcsc-")
        .tempdir()
        .map_err(io_err("creating the sandbox directory"))?;
    Ok(dir.keep())
}

/// The local TCP ports in LISTEN state (IPv4 and IPv6), from /proc.
fn listening_tcp_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ...; 0A = LISTEN
            if fields.len() > 3 && fields[3] == "0A" {
                if let Some(port) = fields[1]
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                {
                    ports.push(port);
                }
            }
        }
    }
    ports
}

/// Whether `pid` is a pcscd serving `dir` (guards against a recycled pid).
fn is_our_pcscd(pid: u32, dir: &Path) -> bool {
    let Ok(mut f) = fs::File::open(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut raw = Vec::new();
    if f.read_to_end(&mut raw).is_err() {
        return false;
    }
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let conf = dir.join("reader.conf.d").display().to_string();
    args.iter().any(|a| a.contains(&conf))
        && args
            .iter()
            .any(|a| a.ends_with("pcscd") || a.ends_with("unshare") || a.ends_with("setpriv"))
}

fn pid_of(pid: u32) -> Result<rustix::process::Pid, SandboxError> {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| SandboxError::Config(format!("invalid pid {pid}")))
}

/// SIGTERM, wait up to 5 s, then SIGKILL; reap the child.
fn terminate(child: &mut Child) -> Result<(), SandboxError> {
    if let Ok(Some(_)) = child.try_wait() {
        return Ok(());
    }
    let pid = pid_of(child.id())?;
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    if wait_child(child, Duration::from_secs(5))?.is_none() {
        let _ = child.kill();
        child.wait().map_err(io_err("waiting for pcscd"))?;
    }
    Ok(())
}

fn wait_child(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>, SandboxError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().map_err(io_err("waiting for pcscd"))? {
            return Ok(Some(s));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Terminate a pcscd this process did not start (detached sandboxes, or
/// one left behind by a crashed test). Waits until it is gone (a zombie
/// whose parent is not reaping counts as gone: its command line is empty).
fn terminate_pid(pid: u32, dir: &Path) -> Result<(), SandboxError> {
    let p = pid_of(pid)?;
    let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !is_our_pcscd(pid, dir) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    Ok(())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Spawns processes from one long-lived thread, so that `setpriv
/// --pdeathsig` (which fires when the *thread* that forked exits) ties
/// pcscd to the `Sandbox`, not to whichever test thread restarted it.
struct Spawner {
    tx: Option<mpsc::Sender<(Command, mpsc::Sender<io::Result<Child>>)>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Spawner {
    fn new() -> Result<Spawner, SandboxError> {
        let (tx, rx) = mpsc::channel::<(Command, mpsc::Sender<io::Result<Child>>)>();
        let thread = thread::Builder::new()
            .name("pcsc-sandbox-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map_err(io_err("starting the spawner thread"))?;
        Ok(Spawner {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn spawn(&self, cmd: Command) -> io::Result<Child> {
        let (reply_tx, reply_rx) = mpsc::channel();
        let gone = || io::Error::other("the sandbox spawner thread is gone");
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send((cmd, reply_tx))
            .map_err(|_| gone())?;
        reply_rx.recv().map_err(|_| gone())?
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ----- Running a test body in a child process with the sandbox's environment -----

/// Run `body` against a fresh private pcscd, with in-process PC/SC clients.
///
/// Call it from a `#[test]` function as
/// `run_sandboxed(module_path!(), "the_test_fn_name", config, |sandbox| ...)`.
/// The test re-runs itself, alone, in a child process of the test binary
/// whose `PCSCLITE_CSOCK_NAME` points at a new sandbox; there the sandbox
/// starts, `body` runs (the `pcsc` crate and our hardware backend reach the
/// sandbox), and the sandbox is torn down. The calling test fails when the
/// child fails, times out, or did not run exactly one test; the child's
/// output is shown with the failure. Missing root or packages fail the test
/// with a message naming what is missing.
pub fn run_sandboxed<F>(module_path: &str, test_name: &str, config: SandboxConfig, body: F)
where
    F: FnOnce(&mut Sandbox),
{
    // libtest names tests by their path without the crate name.
    let test_path = match module_path.split_once("::") {
        Some((_crate, rest)) => format!("{rest}::{test_name}"),
        None => test_name.to_string(),
    };
    if std::env::var(SANDBOX_TEST_ENV).is_ok_and(|t| t == test_path) {
        let mut sandbox = Sandbox::start_for_this_process(config)
            .unwrap_or_else(|e| panic!("cannot start the private pcscd: {e}"));
        body(&mut sandbox);
        return;
    }
    if let Err(e) = config
        .validate()
        .and_then(|()| check_prerequisites(config.vpcd).map(drop))
    {
        panic!("cannot run {test_path}: {e}");
    }
    let dir = make_sandbox_dir().unwrap_or_else(|e| panic!("{e}"));
    let result = run_child(&test_path, &dir, config.timeout);
    cleanup_leftovers(&dir);
    if let Err(message) = result {
        panic!("{message}");
    }
}

fn run_child(test_path: &str, dir: &Path, timeout: Duration) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .args([test_path, "--exact", "--nocapture", "--test-threads=1"])
        .env(SANDBOX_TEST_ENV, test_path)
        .env(SANDBOX_DIR_ENV, dir)
        .env(CSOCK_ENV, socket_path(dir))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the test's child process: {e}"))?;
    // Drain both pipes on threads so a chatty child cannot block.
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = child.stdout.take().map(|s| drain(Box::new(s)));
    let err = child.stderr.take().map(|s| drain(Box::new(s)));
    let status = match wait_child(&mut child, timeout) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("timed out after {timeout:?}"))
        }
        Err(e) => Err(e.to_string()),
    };
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    // Shown by libtest when the test fails (captured otherwise).
    println!("--- child stdout ---\n{stdout}\n--- child stderr ---\n{stderr}");
    let status = status.map_err(|e| format!("{test_path} in the pcscd sandbox: {e}"))?;
    if !status.success() {
        return Err(format!(
            "{test_path} failed in the pcscd sandbox ({status}); see its output above"
        ));
    }
    if !stdout.contains("test result: ok. 1 passed") {
        return Err(format!(
            "{test_path}: the child process did not run exactly this test \
             (is the name passed to run_sandboxed the test function's name?)"
        ));
    }
    Ok(())
}

/// After the child process: stop a pcscd it left behind (it crashed or was
/// killed before its Sandbox dropped) and remove the directory.
fn cleanup_leftovers(dir: &Path) {
    if let Ok(text) = fs::read_to_string(dir.join(PID_FILE)) {
        if let Ok(pid) = text.trim().parse::<u32>() {
            if is_our_pcscd(pid, dir) {
                let _ = terminate_pid(pid, dir);
            }
        }
    }
    let _ = fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips() {
        let text = "# comment\ndriver debian\nname Yubico YubiKey OTP+FIDO+CCID\n\
                    reader 40000 Yubico YubiKey OTP+FIDO+CCID 00 00\n\
                    reader 40001 Yubico YubiKey OTP+FIDO+CCID 00 01\n";
        let s = parse_state(text).unwrap();
        assert_eq!(s.readers.len(), 2);
        assert_eq!(s.readers[1].name, "Yubico YubiKey OTP+FIDO+CCID 00 01");
        assert_eq!(s.readers[1].port, 40001);
        assert_eq!(s.readers[0].vpcd_address(), "127.0.0.1:40000");
        assert_eq!(s.config.vpcd, VpcdDriver::Debian);
        assert_eq!(s.config.reader_name, YUBIKEY_READER_NAME);
        assert_eq!(s.config.readers, 2);
        assert!(parse_state("reader x y").is_none());
        assert!(parse_state("").is_none());
        // Older state files (no driver line) and odd counts for two slots.
        assert!(parse_state("reader 40000 Virtual PCD 00 00\n").is_none());
        assert!(parse_state("driver debian\nname N\nreader 40000 N 00 00\n").is_none());
        assert!(parse_state("driver one-slot\nname N\nreader 40000 N 00 00\n").is_some());
        assert!(parse_state("driver floppy\nname N\nreader 40000 N 00 00\n").is_none());
    }

    #[test]
    fn one_slot_readers_are_named_like_yubikeys_one_per_entry() {
        let r = allocate_readers(&SandboxConfig::with_readers(3)).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].name, "Yubico YubiKey OTP+FIDO+CCID 00 00");
        assert_eq!(r[1].name, "Yubico YubiKey OTP+FIDO+CCID 1 00 00");
        assert_eq!(r[2].name, "Yubico YubiKey OTP+FIDO+CCID 2 00 00");
        let ports: std::collections::BTreeSet<u16> = r.iter().map(|r| r.port).collect();
        assert_eq!(ports.len(), 3);
    }

    #[test]
    fn debian_vpcd_readers_come_in_pairs_on_consecutive_ports() {
        let config = SandboxConfig {
            readers: 3,
            reader_name: VIRTUAL_PCD_READER_NAME.into(),
            vpcd: VpcdDriver::Debian,
            ..SandboxConfig::default()
        };
        let r = allocate_readers(&config).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[1].port, r[0].port + 1);
        assert_eq!(r[3].port, r[2].port + 1);
        assert_eq!(r[0].name, "Virtual PCD 00 00");
        assert_eq!(r[1].name, "Virtual PCD 00 01");
        assert_eq!(r[2].name, "Virtual PCD 1 00 00");
        assert_eq!(r[3].name, "Virtual PCD 1 00 01");
    }

    #[test]
    fn reader_names_pcscd_cannot_take_are_refused() {
        let with = |name: &str| SandboxConfig {
            reader_name: name.into(),
            ..SandboxConfig::default()
        };
        assert!(with("Yubico YubiKey OTP+FIDO+CCID").validate().is_ok());
        assert!(with("My reader").validate().is_ok());
        for bad in [
            "",
            " lead",
            "trail ",
            "quo\"te",
            "new\nline",
            &"x".repeat(101),
        ] {
            match with(bad).validate() {
                Err(SandboxError::Config(m)) => assert!(m.contains("reader name"), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn proc_net_tcp_sees_a_listener() {
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening_tcp_ports().contains(&port));
    }
}
