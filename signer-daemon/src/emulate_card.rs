//! `signer-daemon emulate-card`: serve an emulated token to pcscd through
//! vsmartcard's vpcd reader driver, so that any PC/SC client (yubico-piv-tool,
//! ykman, OpenSC, our own hardware backend) sees it as a YubiKey in a reader.
//!
//! The reader's name is not ours to choose: pcscd takes it from the
//! `FRIENDLYNAME` of the vpcd entry in `reader.conf` and appends " 00 00".
//! Name it as a YubiKey 5's reader is named, "Yubico YubiKey OTP+FIDO+CCID",
//! so that Yubico's tools take the card as a plugged-in YubiKey
//! (yubico-piv-tool's default reader is "Yubico", libykcs11 lists only
//! readers whose name starts with "Yubico", ykman counts readers named
//! "Yubico YubiKey"), and give the entry one slot (vpcd built with
//! `tests/scripts/vpcd-one-slot.sh`): Debian's vpcd adds an empty second
//! reader that ykman counts as a second YubiKey. `tests/scripts/pcsc-sandbox.sh
//! start [--name NAME]` and `emulate-card --print-reader-conf [--reader-name
//! NAME]` (the entry for the system pcscd, see the README) do both.
//!
//! The command connects to vpcd (it listens; we connect), serves the card
//! until SIGTERM or SIGINT, and reconnects with backoff whenever vpcd goes
//! away (pcscd restarted). On the first signal it finishes the APDU in
//! progress and exits 0; a second signal exits at once (status 130).
//!
//! FOR TESTS AND CI ONLY: the emulated token keeps its keys in a file.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use clap::{Args, ValueEnum};
use signer_lib::emulator::{CardAtr, EmulatedSmartCard, TouchMode};
use signer_lib::transport::vpcd::{self, BridgeConfig, BridgeControl, BridgeStats, SendCard};
use signer_lib::{Error, Result};

/// `signer-daemon emulate-card`
#[derive(Debug, Args)]
pub struct EmulateCardArgs {
    /// The emulated token's state file (create it with `signer-daemon
    /// emulated init`). The bridge holds it for as long as it runs. The card
    /// answers as the firmware the file was created with (`emulated init
    /// --firmware 4.3.7`, `5.2.7`, ..., default 5.7.4) and refuses what that
    /// firmware refuses (README "Firmware generations").
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "print_reader_conf"
    )]
    pub state: Option<PathBuf>,

    /// vpcd's address: the port of the reader.conf entry's `CHANNELID`
    /// (35963 in the README's entry for the system pcscd, "Yubico YubiKey
    /// OTP+FIDO+CCID 00 00"; also Debian's own "Virtual PCD 00 00");
    /// `tests/scripts/pcsc-sandbox.sh start` exports a private pcscd's as
    /// `SIGNER_VPCD`.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "SIGNER_VPCD",
        default_value = "127.0.0.1:35963"
    )]
    pub vpcd: String,

    /// What happens when a key with a touch policy asks for a touch:
    /// `approve` grants it at once (CI), `deny` refuses it.
    #[arg(
        long,
        value_enum,
        env = "SIGNER_EMULATED_TOUCH",
        default_value_t = TouchArg::Approve
    )]
    pub touch: TouchArg,

    /// Longest wait between attempts to reach vpcd, in milliseconds (the
    /// wait starts at 50 ms and doubles while vpcd stays unreachable).
    #[arg(long, value_name = "MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub max_backoff_ms: u64,

    /// The ATR the card answers: `usb` (a YubiKey 5 over USB) or `nfc` (a
    /// YubiKey 5 NFC through an NFC reader). In a reader named "Yubico
    /// YubiKey ..." use `usb`, as a YubiKey does; in a reader with another
    /// name (e.g. Debian's "Virtual PCD") ykman 5 takes only a card with
    /// the NFC ATR. ykman 4, yubico-piv-tool, ykcs11 and OpenSC accept either.
    #[arg(long, value_enum, env = "SIGNER_EMULATED_ATR", default_value_t = AtrArg::Usb)]
    pub atr: AtrArg,

    /// Print the pcscd `reader.conf` entry of a reader that vpcd serves on
    /// `--vpcd`'s port, named `--reader-name`, and exit: the contents of
    /// `/etc/reader.conf.d/vpcd` for the system pcscd (see the README).
    #[arg(long)]
    pub print_reader_conf: bool,

    /// The reader's name in that entry (pcscd appends " 00 00"). Yubico's
    /// tools take a card as a plugged-in YubiKey only in a reader whose name
    /// starts with "Yubico YubiKey".
    #[arg(long, value_name = "NAME", default_value = YUBIKEY_READER_NAME)]
    pub reader_name: String,

    /// The vpcd driver in that entry: vpcd built with one slot per entry by
    /// `tests/scripts/vpcd-one-slot.sh` (Debian's has two, and ykman counts
    /// the empty second reader as a second YubiKey).
    #[arg(long, value_name = "PATH", default_value = ONE_SLOT_VPCD_DRIVER)]
    pub vpcd_driver: PathBuf,
}

/// The name pcscd gives a YubiKey 5's reader (USB, OTP+FIDO+CCID enabled),
/// before the " 00 00" it appends.
pub const YUBIKEY_READER_NAME: &str = "Yubico YubiKey OTP+FIDO+CCID";
/// Where `tests/scripts/vpcd-one-slot.sh` installs the one-slot vpcd driver.
pub const ONE_SLOT_VPCD_DRIVER: &str = "/usr/local/lib/signer-e2e-vpcd/libifdvpcd.so";

/// The `reader.conf` entry for `--print-reader-conf`. Refuses a name
/// pcscd's configuration parser cannot take (a `"`, a control character,
/// empty, or over 100 bytes: pcsc-lite truncates at 121 with the suffix)
/// and an address without a port.
pub fn reader_conf(args: &EmulateCardArgs) -> std::result::Result<String, crate::admin::CliError> {
    use crate::admin::CliError;
    let name = &args.reader_name;
    if name.is_empty()
        || name.len() > 100
        || name.trim() != name
        || name.chars().any(|c| c.is_control() || c == '"')
    {
        return Err(CliError::Usage(format!(
            "--reader-name {name:?}: 1 to 100 printable characters, no '\"', no leading or \
             trailing space"
        )));
    }
    let port: u16 = args
        .vpcd
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| {
            CliError::Usage(format!("--vpcd {:?} has no port (HOST:PORT)", args.vpcd))
        })?;
    let driver = args.vpcd_driver.display();
    Ok(format!(
        "# Emulated YubiKey (signer-daemon emulate-card; FOR TESTS AND CI ONLY): one reader,\n\
         # \"{name} 00 00\", whose vpcd listens on port {port} on all interfaces.\n\
         # The driver is vpcd with one slot per entry (tests/scripts/vpcd-one-slot.sh).\n\
         FRIENDLYNAME \"{name}\"\n\
         DEVICENAME   /dev/null:{port}\n\
         LIBPATH      {driver}\n\
         CHANNELID    {port}\n"
    ))
}

/// `--atr`
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AtrArg {
    /// A YubiKey 5 over USB CCID.
    Usb,
    /// A YubiKey 5 NFC through an NFC reader.
    Nfc,
}

/// `--touch`
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TouchArg {
    /// Grant every touch at once.
    Approve,
    /// Refuse every touch.
    Deny,
}

// ============================================================================
// INTEGRATION POINT: the one place where the emulated token becomes a card.
// ============================================================================
/// Open the emulated token stored in `state` as a [`vpcd::VirtualCard`] for
/// the bridge, with `touch` as its touch source: the emulator's APDU front
/// end ([`EmulatedSmartCard`]) over the token. The card
/// - answers [`vpcd::YUBIKEY_5_ATR`] from `atr()`;
/// - clears volatile state (PIN verified, management key authenticated,
///   selected applet, pending chains) on `power_on`, `power_off` and `reset`;
/// - persists every state change (PIN counters, keys, objects) atomically
///   before `transmit` returns, so that killing the bridge at any point
///   leaves a consistent state file;
/// - holds the state file's lock for its lifetime (a second bridge on the
///   same file fails with [`Error::StateLocked`]).
pub fn open_emulated_card(state: &Path, touch: TouchArg) -> Result<SendCard> {
    let mode = match touch {
        TouchArg::Approve => TouchMode::Approve,
        TouchArg::Deny => TouchMode::Deny,
    };
    let card = EmulatedSmartCard::open(state, mode.source())?;
    Ok(Box::new(card))
}
// ============================================================================

/// A card answering another ATR (`--atr nfc`).
struct AtrOverride(SendCard, CardAtr);

impl vpcd::VirtualCard for AtrOverride {
    fn atr(&self) -> Vec<u8> {
        self.1.bytes().to_vec()
    }
    fn power_on(&mut self) {
        self.0.power_on();
    }
    fn power_off(&mut self) {
        self.0.power_off();
    }
    fn reset(&mut self) {
        self.0.reset();
    }
    fn transmit(&mut self, command: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
        self.0.transmit(command)
    }
}

/// Run the bridge.
pub fn emulate_card(args: EmulateCardArgs) -> crate::admin::anyhow_like::Result {
    if args.print_reader_conf {
        print!("{}", reader_conf(&args)?);
        return Ok(());
    }
    init_logging();
    let config = bridge_config(&args);
    // Fail on a bad address before touching the state file.
    config.validate()?;
    let Some(state) = args.state.as_deref() else {
        return Err(crate::admin::CliError::Usage(
            "--state FILE is required".into(),
        ));
    };
    let card = open_emulated_card(state, args.touch)?;
    let card: SendCard = match args.atr {
        AtrArg::Usb => card,
        AtrArg::Nfc => Box::new(AtrOverride(card, CardAtr::Nfc)),
    };
    tracing::info!(
        state = %state.display(),
        vpcd = %args.vpcd,
        "serving the emulated token through vpcd (FOR TESTS AND CI ONLY); stop with SIGTERM or Ctrl-C"
    );
    let stats = run_bridge(card, &config)?;
    tracing::info!(
        attachments = stats.attachments,
        apdus = stats.apdus,
        "bridge stopped"
    );
    Ok(())
}

/// The bridge configuration for the command's arguments.
pub fn bridge_config(args: &EmulateCardArgs) -> BridgeConfig {
    BridgeConfig {
        backoff_max: Duration::from_millis(args.max_backoff_ms),
        ..BridgeConfig::new(args.vpcd.clone())
    }
}

/// Serve `card` until SIGTERM or SIGINT: the first signal stops the bridge
/// after the APDU in progress, a second one exits the process at once.
pub fn run_bridge(card: SendCard, config: &BridgeConfig) -> Result<BridgeStats> {
    let control = BridgeControl::new();
    stop_on_signals(control.clone())?;
    let mut card = card;
    vpcd::serve(&mut card, config, &control)
}

/// Watch SIGTERM and SIGINT on a thread of their own: the first one stops
/// the bridge through `control`, a second one exits with status 130. The
/// handlers are installed before this returns.
fn stop_on_signals(control: BridgeControl) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};

    let unavailable = |e: std::io::Error| Error::Unavailable {
        reason: format!("cannot install the SIGTERM/SIGINT handlers: {e}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(unavailable)?;
    let (mut term, mut int) = runtime
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })
        .map_err(unavailable)?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::info!("{name}: finishing the APDU in progress, then stopping");
                control.stop();
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::warn!("second signal ({name}): exiting now");
                std::process::exit(130);
            })
        })
        .map_err(unavailable)?;
    Ok(())
}

/// Log to stderr, `info` unless `RUST_LOG` says otherwise. APDU summaries
/// (INS, lengths, status words; never data) are at `debug`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Another subscriber already installed (e.g. by a test) is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::process::Command;
    use std::time::Instant;

    use clap::Parser;
    use signer_lib::transport::vpcd::{
        Control, FrameReader, Request, ServeEnd, VirtualCard, YUBIKEY_5_ATR, encode_request,
    };
    use zeroize::Zeroizing;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulateCardArgs,
    }

    #[test]
    fn arguments_parse_with_defaults_and_validation() {
        let cli = Cli::try_parse_from(["x", "--state", "/tmp/t.json"]).unwrap();
        assert_eq!(cli.args.state, Some(PathBuf::from("/tmp/t.json")));
        // (SIGNER_VPCD may be set by a developer; only check the shape.)
        assert!(cli.args.vpcd.contains(':'));
        let cli = Cli::try_parse_from([
            "x",
            "--state",
            "s",
            "--vpcd",
            "10.0.0.1:40000",
            "--touch",
            "deny",
            "--max-backoff-ms",
            "500",
        ])
        .unwrap();
        assert_eq!(cli.args.vpcd, "10.0.0.1:40000");
        assert_eq!(cli.args.touch, TouchArg::Deny);
        let config = bridge_config(&cli.args);
        assert_eq!(config.backoff_max, Duration::from_millis(500));
        assert_eq!(config.address, "10.0.0.1:40000");

        assert!(Cli::try_parse_from(["x"]).is_err(), "--state is required");
        assert!(Cli::try_parse_from(["x", "--state", "s", "--touch", "maybe"]).is_err());
        assert!(Cli::try_parse_from(["x", "--state", "s", "--max-backoff-ms", "1"]).is_err());
    }

    #[test]
    fn the_reader_conf_entry_names_a_yubikey_reader_on_the_vpcd_port() {
        let cli =
            Cli::try_parse_from(["x", "--print-reader-conf", "--vpcd", "127.0.0.1:35963"]).unwrap();
        assert_eq!(cli.args.state, None, "no state file needed");
        let conf = reader_conf(&cli.args).unwrap();
        let entries: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            entries,
            [
                "FRIENDLYNAME \"Yubico YubiKey OTP+FIDO+CCID\"",
                "DEVICENAME   /dev/null:35963",
                "LIBPATH      /usr/local/lib/signer-e2e-vpcd/libifdvpcd.so",
                "CHANNELID    35963",
            ]
        );
        let cli = Cli::try_parse_from([
            "x",
            "--print-reader-conf",
            "--vpcd",
            "0.0.0.0:40000",
            "--reader-name",
            "My Reader",
            "--vpcd-driver",
            "/opt/vpcd.so",
        ])
        .unwrap();
        let conf = reader_conf(&cli.args).unwrap();
        assert!(conf.contains("FRIENDLYNAME \"My Reader\"\n"), "{conf}");
        assert!(conf.contains("CHANNELID    40000\n"), "{conf}");
        assert!(conf.contains("LIBPATH      /opt/vpcd.so\n"), "{conf}");
        for (flag, value) in [
            ("--reader-name", "bad\"name"),
            ("--reader-name", ""),
            ("--reader-name", " lead"),
            ("--vpcd", "127.0.0.1"),
            ("--vpcd", "127.0.0.1:0"),
        ] {
            let cli = Cli::try_parse_from(["x", "--print-reader-conf", flag, value]).unwrap();
            let err = reader_conf(&cli.args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{flag} {value:?}: {err}");
        }
    }

    #[test]
    fn a_bad_address_fails_before_anything_else() {
        let cli =
            Cli::try_parse_from(["x", "--state", "/nonexistent", "--vpcd", "nowhere"]).unwrap();
        let err = emulate_card(cli.args).unwrap_err().to_string();
        assert!(err.contains("invalid vpcd address"), "{err}");
    }

    #[test]
    fn a_missing_state_file_is_named() {
        let cli =
            Cli::try_parse_from(["x", "--state", "/nonexistent", "--vpcd", "127.0.0.1:1"]).unwrap();
        let err = emulate_card(cli.args).unwrap_err().to_string();
        assert!(
            err.contains("no emulated token state at /nonexistent"),
            "{err}"
        );
    }

    #[test]
    fn a_yubikey_4_token_answers_as_firmware_4_3() {
        use signer_lib::FirmwareVersion;
        use signer_lib::emulator::{EmulatedToken, InitOptions};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("yk4.state");
        drop(
            EmulatedToken::init(
                &path,
                &InitOptions {
                    serial: Some(12_345_678),
                    firmware: FirmwareVersion::new(4, 3, 7),
                    ..InitOptions::default()
                },
            )
            .unwrap(),
        );
        let mut card = open_emulated_card(&path, TouchArg::Approve).unwrap();
        let select_piv = [0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08];
        assert_eq!(
            card.transmit(&select_piv)[..].last_chunk(),
            Some(&[0x90, 0x00])
        );
        // GET VERSION 4.3.7; no GET SERIAL or GET METADATA in a YubiKey 4's PIV.
        assert_eq!(
            card.transmit(&[0x00, 0xfd, 0x00, 0x00])[..],
            [0x04, 0x03, 0x07, 0x90, 0x00]
        );
        assert_eq!(card.transmit(&[0x00, 0xf8, 0x00, 0x00])[..], [0x6d, 0x00]);
        assert_eq!(
            card.transmit(&[0x00, 0xf7, 0x00, 0x80, 0x00])[..],
            [0x6d, 0x00]
        );
        // The serial comes from the OTP applet, as yubico-piv-tool reads it.
        let select_otp = [
            0x00, 0xa4, 0x04, 0x00, 0x07, 0xa0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01,
        ];
        assert_eq!(
            card.transmit(&select_otp)[..].last_chunk(),
            Some(&[0x90, 0x00])
        );
        assert_eq!(
            card.transmit(&[0x00, 0x01, 0x10, 0x00])[..],
            [0x00, 0xbc, 0x61, 0x4e, 0x90, 0x00]
        );
        // yubico-piv-tool selects it with the version byte (A0..2001 01).
        let select_otp_full = [
            0x00, 0xa4, 0x04, 0x00, 0x08, 0xa0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01, 0x01,
        ];
        assert_eq!(
            card.transmit(&select_otp_full)[..].last_chunk(),
            Some(&[0x90, 0x00])
        );
        assert_eq!(
            card.transmit(&[0x00, 0x01, 0x10, 0x00])[..],
            [0x00, 0xbc, 0x61, 0x4e, 0x90, 0x00]
        );
    }

    #[test]
    fn the_card_answers_like_a_yubikey_and_holds_the_lock() {
        use signer_lib::emulator::{EmulatedToken, InitOptions};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.state");
        drop(
            EmulatedToken::init(
                &path,
                &InitOptions {
                    serial: Some(12_345_678),
                    ..InitOptions::default()
                },
            )
            .unwrap(),
        );
        let mut card = open_emulated_card(&path, TouchArg::Approve).unwrap();
        assert_eq!(card.atr(), YUBIKEY_5_ATR.to_vec());
        let select = [0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08];
        assert_eq!(card.transmit(&select)[..].last_chunk(), Some(&[0x90, 0x00]));
        assert_eq!(
            card.transmit(&[0x00, 0xf8, 0x00, 0x00])[..],
            [0x00, 0xbc, 0x61, 0x4e, 0x90, 0x00]
        );
        let err = open_emulated_card(&path, TouchArg::Deny).err().unwrap();
        assert!(matches!(err, Error::StateLocked { .. }), "{err}");
    }

    struct Echo;
    impl VirtualCard for Echo {
        fn atr(&self) -> Vec<u8> {
            YUBIKEY_5_ATR.to_vec()
        }
        fn power_on(&mut self) {}
        fn power_off(&mut self) {}
        fn reset(&mut self) {}
        fn transmit(&mut self, command: &[u8]) -> Zeroizing<Vec<u8>> {
            // Slow enough that the signal arrives while the APDU is in progress.
            thread::sleep(Duration::from_millis(300));
            let mut r = command.to_vec();
            r.extend_from_slice(&[0x90, 0x00]);
            Zeroizing::new(r)
        }
    }

    const CHILD_ENV: &str = "SIGNER_TEST_EMULATE_CARD_SIGNAL_CHILD";

    /// The child half of `sigterm_finishes_the_apdu_then_exits_cleanly`: runs
    /// only in the subprocess that test starts (signal handlers are
    /// process-wide, so they are not installed in the shared test process).
    #[test]
    #[ignore = "run by sigterm_finishes_the_apdu_then_exits_cleanly in a subprocess"]
    fn signal_child() {
        let Ok(address) = std::env::var(CHILD_ENV) else {
            // Not a test by itself (e.g. `--include-ignored`): nothing to do.
            eprintln!("signal_child is a helper of sigterm_finishes_the_apdu_then_exits_cleanly");
            return;
        };
        let stats = run_bridge(Box::new(Echo), &BridgeConfig::new(address)).unwrap();
        assert_eq!(stats.end, ServeEnd::Stopped);
        assert_eq!(stats.apdus, 1);
        println!("CHILD-STOPPED-CLEANLY");
    }

    #[test]
    fn sigterm_finishes_the_apdu_then_exits_cleanly() {
        let vpcd = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = vpcd.local_addr().unwrap().to_string();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "emulate_card::tests::signal_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &address)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (mut conn, _) = vpcd.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = FrameReader::new();
        let mut recv = |conn: &mut std::net::TcpStream| -> Option<Vec<u8>> {
            let mut buf = [0u8; 1024];
            loop {
                if let Some(f) = reader.next_frame() {
                    return Some(f.to_vec());
                }
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => reader.push(&buf[..n]),
                }
            }
        };
        conn.write_all(&encode_request(Request::Control(Control::GetAtr)).unwrap())
            .unwrap();
        assert_eq!(recv(&mut conn).unwrap(), YUBIKEY_5_ATR.to_vec());

        // SIGTERM while an APDU is being processed: its answer still comes.
        conn.write_all(&encode_request(Request::Apdu(&[0x00, 0xfd, 0x00, 0x00])).unwrap())
            .unwrap();
        thread::sleep(Duration::from_millis(100));
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        assert_eq!(
            recv(&mut conn).unwrap(),
            vec![0x00, 0xfd, 0x00, 0x00, 0x90, 0x00]
        );
        assert!(
            recv(&mut conn).is_none(),
            "the bridge closes after the answer"
        );

        let started = Instant::now();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success()
                && stdout.contains("CHILD-STOPPED-CLEANLY")
                && stdout.contains("1 passed"),
            "child failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
