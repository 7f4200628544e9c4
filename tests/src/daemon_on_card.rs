//! The real daemon (`signer-daemon serve --token yubikey:SERIAL`) on
//! emulated YubiKeys plugged into the sandbox's pcscd, for end-to-end fault
//! tests (`tests/tests/reliability_faults.rs`):
//!
//! - [`PluggedCard`]: an emulated token with keys made in-process, behind an
//!   APDU-counting card ([`CountingCard`]) and a vpcd bridge that can be
//!   pulled, crashed, put back, or moved to another reader;
//! - [`ServeProcess`]: the daemon binary as a child process with the
//!   sandbox's environment, a PIN file, an audit log and a config file;
//! - [`reset_card_from_another_client`]: another PC/SC client (as another
//!   process would be) that uses the card and releases it with a reset;
//! - [`exclusive_hold`]: the `pcsc-exclusive-hold` helper binary holding a
//!   card with `SCARD_SHARE_EXCLUSIVE`, as gpg's scdaemon does.
//!
//! Use inside a sandboxed test ([`crate::sandboxed_test!`]).

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use signer_lib::emulator::{EmulatedSmartCard, EmulatedToken, InitOptions, OpenOptions};
use signer_lib::testing::TouchSetup;
use signer_lib::transport::vpcd::{self, BridgeConfig, BridgeControl, BridgeHandle, SendCard};
use signer_lib::{
    Algorithm, KeyInfo, ManagementKey, PinPolicy, Result, SlotId, Token, TouchPolicy,
};

use crate::hardware::{ApduLog, CARD_WAIT, CountingCard};
use crate::pcsc_client::{establish, transmit, wait_for_card};
use crate::pcsc_sandbox::{Sandbox, VirtualReader};

/// A key to make on a [`PluggedCard`].
#[derive(Clone, Copy, Debug)]
pub struct KeyPlan {
    /// The slot.
    pub slot: SlotId,
    /// The PIN policy.
    pub pin: PinPolicy,
    /// The touch policy.
    pub touch: TouchPolicy,
}

/// An emulated YubiKey (keys made in-process, never through PC/SC) that a
/// test plugs into a reader of the sandbox's pcscd.
pub struct PluggedCard {
    /// The reader it is in (or was last in).
    pub reader: Option<VirtualReader>,
    bridge: Option<BridgeHandle>,
    parked: Option<SendCard>,
    /// Instruction bytes of every APDU the card received.
    pub log: ApduLog,
    /// The state file.
    pub state: PathBuf,
    /// The token's serial.
    pub serial: u32,
    /// The keys made, in the order planned.
    pub keys: Vec<KeyInfo>,
}

impl PluggedCard {
    /// A factory-fresh emulated token with serial `serial` in `dir`, with
    /// `keys` generated (P-256), not plugged in yet.
    pub fn new(
        dir: &Path,
        serial: u32,
        keys: &[KeyPlan],
        touch: &TouchSetup,
    ) -> Result<PluggedCard> {
        let state = dir.join(format!("card-{serial}.state"));
        let mut token = EmulatedToken::init_with(
            &state,
            &InitOptions {
                serial: Some(serial),
                ..InitOptions::default()
            },
            OpenOptions {
                touch: touch.source.clone(),
                timing: touch.timing,
            },
        )?;
        let alg = token.management_key_algorithm();
        token.authenticate(&ManagementKey::default_for(alg)?)?;
        let mut made = Vec::new();
        for k in keys {
            made.push(token.generate_key(k.slot, Algorithm::EccP256, k.pin, k.touch)?);
        }
        let (card, log) = CountingCard::new(Box::new(EmulatedSmartCard::new(token)));
        Ok(PluggedCard {
            reader: None,
            bridge: None,
            parked: Some(Box::new(card)),
            log,
            state,
            serial,
            keys: made,
        })
    }

    /// Plug the card into `reader` and wait until pcscd sees it.
    pub fn insert_into(&mut self, reader: &VirtualReader) -> Result<()> {
        if self.bridge.is_some() {
            self.remove()?;
        }
        let Some(card) = self.parked.take() else {
            return Err(unavailable(
                "the card is neither parked nor plugged in".into(),
            ));
        };
        self.reader = Some(reader.clone());
        self.bridge = Some(vpcd::spawn(card, BridgeConfig::new(reader.vpcd_address()))?);
        self.wait(true)
    }

    /// Plug the card back into the reader it was last in.
    pub fn reinsert(&mut self) -> Result<()> {
        let reader = self
            .reader
            .clone()
            .ok_or_else(|| unavailable("the card was never plugged in".into()))?;
        self.insert_into(&reader)
    }

    /// The running bridge's control (to crash it from another thread).
    pub fn control(&self) -> Option<BridgeControl> {
        self.bridge.as_ref().map(|b| b.control().clone())
    }

    /// Pull the card out gracefully (the APDU in progress is answered) and
    /// wait until pcscd sees it gone.
    pub fn remove(&mut self) -> Result<()> {
        if let Some(bridge) = self.bridge.take() {
            let (card, _) = bridge.stop()?;
            self.parked = Some(card);
        }
        self.wait(false)
    }

    /// Collect the card after its bridge was crashed ([`BridgeControl::abort`])
    /// or crash it now, and wait until pcscd sees it gone.
    pub fn crashed(&mut self) -> Result<()> {
        if let Some(bridge) = self.bridge.take() {
            let (card, _) = bridge.abort()?;
            self.parked = Some(card);
        }
        self.wait(false)
    }

    /// Wait until pcscd sees the card present (or absent) in its reader.
    pub fn wait(&self, present: bool) -> Result<()> {
        let Some(reader) = &self.reader else {
            return Ok(());
        };
        let ctx = establish(CARD_WAIT).map_err(unavailable)?;
        wait_for_card(&ctx, &reader.name, present, CARD_WAIT).map_err(unavailable)?;
        Ok(())
    }

    /// Take (and clear) the instruction bytes the card received.
    pub fn take_log(&self) -> Vec<u8> {
        crate::hardware::take_log(&self.log)
    }

    /// The PIN retry counter, read from the state file (no APDU).
    pub fn pin_retries_on_disk(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.state).ok()?;
        let body = text.split_once('\n')?.1;
        let remaining = body.find("\"pin_retries\"")?;
        let rest = &body[remaining..];
        let at = rest.find("\"remaining\"")?;
        let digits: String = rest[at + "\"remaining\"".len()..]
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }
}

fn unavailable(reason: String) -> signer_lib::Error {
    signer_lib::Error::Unavailable { reason }
}

/// How many of `log`'s instructions are `ins`.
pub fn count_ins(log: &[u8], ins: u8) -> usize {
    log.iter().filter(|&&i| i == ins).count()
}

/// Another PC/SC client (its own context, as another process's would be)
/// selects the PIV applet and releases the card with `SCARD_RESET_CARD`, as
/// the `pcsc` crate's `Card` drop, the `yubikey` crate and yubico-piv-tool do.
pub fn reset_card_from_another_client(reader: &str) -> std::result::Result<(), String> {
    let ctx = establish(CARD_WAIT)?;
    let name = CString::new(reader).map_err(|e| e.to_string())?;
    let card = ctx
        .connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
        .map_err(|e| format!("SCardConnect: {e}"))?;
    let select = [0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08];
    let answer = transmit(&card, &select).map_err(|e| format!("SCardTransmit: {e}"))?;
    if !answer.ends_with(&[0x90, 0x00]) {
        return Err(format!("SELECT PIV answered {answer:02X?}"));
    }
    card.disconnect(pcsc::Disposition::ResetCard)
        .map_err(|(_, e)| format!("SCardDisconnect(RESET): {e}"))
}

/// The `pcsc-exclusive-hold` helper holding a card exclusively; it lets go
/// when dropped (or on [`ExclusiveHold::release`]).
pub struct ExclusiveHold {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl ExclusiveHold {
    /// Let go of the card and wait for the helper to exit; returns what it
    /// printed after taking the card.
    pub fn release(mut self) -> std::result::Result<(), String> {
        self.stdin = None; // EOF: the helper disconnects and exits.
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("pcsc-exclusive-hold exited with {status}"))
        }
    }
}

impl Drop for ExclusiveHold {
    fn drop(&mut self) {
        self.stdin = None;
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the helper binary `exe` (`env!("CARGO_BIN_EXE_pcsc-exclusive-hold")`)
/// on `reader` of `sandbox`, and wait until it holds the card exclusively.
pub fn exclusive_hold(
    sandbox: &Sandbox,
    exe: &Path,
    reader: &str,
    within: Duration,
) -> std::result::Result<ExclusiveHold, String> {
    let mut child = sandbox
        .command(exe)
        .arg(reader)
        .arg(within.as_millis().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    let hold = ExclusiveHold { child, stdin };
    match read {
        Ok(_) if line.trim() == "HELD" => Ok(hold),
        other => Err(format!(
            "pcsc-exclusive-hold did not take {reader:?} exclusively: {other:?} {line:?}"
        )),
    }
}

/// `signer-daemon serve` as a child process reaching the sandbox's pcscd.
pub struct ServeProcess {
    child: Option<Child>,
    /// The socket.
    pub socket: PathBuf,
    /// The PIN file (rewrite it to change the PIN the daemon uses).
    pub pin_file: PathBuf,
    /// The audit log.
    pub audit: PathBuf,
    /// The daemon's stderr.
    pub log: PathBuf,
}

impl ServeProcess {
    /// Start `daemon` (the `signer-daemon` binary) in `dir` serving
    /// `--token yubikey:SERIAL` for each of `serials`, with the PIN `pin`
    /// and `config` as its TOML configuration, and wait until it listens.
    pub fn start(
        sandbox: &Sandbox,
        daemon: &Path,
        dir: &Path,
        serials: &[u32],
        pin: &str,
        config: &str,
    ) -> std::result::Result<ServeProcess, String> {
        let socket = dir.join("run").join("signer.sock");
        let pin_file = dir.join("pin");
        let audit = dir.join("audit.jsonl");
        let log = dir.join("daemon.log");
        let config_file = dir.join("signer.toml");
        std::fs::write(&pin_file, format!("{pin}\n")).map_err(|e| e.to_string())?;
        std::fs::write(&config_file, config).map_err(|e| e.to_string())?;
        let mut cmd: Command = sandbox.command(daemon);
        cmd.arg("serve");
        for s in serials {
            cmd.arg("--token").arg(format!("yubikey:{s}"));
        }
        let stderr = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = cmd
            .arg("--socket")
            .arg(&socket)
            .arg("--config")
            .arg(&config_file)
            .arg("--pin-file")
            .arg(&pin_file)
            .arg("--audit-log")
            .arg(&audit)
            .args(["--log-level", "info,signer_lib=debug"])
            .env_remove("SIGNER_PIN")
            .env_remove("SIGNER_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", daemon.display()))?;
        let mut me = ServeProcess {
            child: Some(child),
            socket,
            pin_file,
            audit,
            log,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&me.socket).is_err() {
            if !me.is_running() {
                return Err(format!("the daemon exited: {}", me.log_text()));
            }
            if Instant::now() > until {
                return Err(format!("the daemon did not listen: {}", me.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(me)
    }

    /// Whether the daemon process is still running (it was not restarted:
    /// it is the same child).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Send `signal` to the daemon.
    pub fn signal(&self, signal: rustix::process::Signal) -> std::result::Result<(), String> {
        let pid = self
            .pid()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            .ok_or("no daemon process")?;
        rustix::process::kill_process(pid, signal).map_err(|e| e.to_string())
    }

    /// The daemon's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The audit log's lines so far.
    pub fn audit_text(&self) -> String {
        std::fs::read_to_string(&self.audit).unwrap_or_default()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // It may be stopped (SIGSTOP) by a test that failed.
            if let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
