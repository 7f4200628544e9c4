//! `pcsc-sandbox`: a private pcscd with vpcd readers for scripts and people
//! (run it through `tests/scripts/pcsc-sandbox.sh`).
//!
//! ```text
//! eval "$(tests/scripts/pcsc-sandbox.sh start)"               # one "Yubico YubiKey OTP+FIDO+CCID 00 00"
//! eval "$(tests/scripts/pcsc-sandbox.sh start --readers 2)"   # prints export lines
//! tests/scripts/pcsc-sandbox.sh status                        # readers, ports, pcscd
//! tests/scripts/pcsc-sandbox.sh restart                       # restart its pcscd
//! tests/scripts/pcsc-sandbox.sh stop                          # stop pcscd, remove it
//! ```
//!
//! `start` options: `--readers N` (1 to 16, default 1), `--name NAME` (the
//! readers' name before pcscd's " 00 00", default "Yubico YubiKey
//! OTP+FIDO+CCID", so Yubico's tools take the card as a plugged-in YubiKey),
//! `--two-slot-vpcd` (Debian's vpcd driver, two readers per entry, instead
//! of the one-slot build of `tests/scripts/vpcd-one-slot.sh`).
//!
//! `stop`, `restart` and `status` take the sandbox directory as argument or
//! from `$SIGNER_PCSC_SANDBOX` (exported by `start`). Needs root.

use std::path::PathBuf;
use std::process::ExitCode;

use signer_e2e::pcsc_sandbox::{SANDBOX_DIR_ENV, Sandbox, SandboxConfig, SandboxError, VpcdDriver};

const USAGE: &str = "usage: pcsc-sandbox start [--readers N] [--name NAME] [--two-slot-vpcd]
       pcsc-sandbox stop|restart|status [DIR]   (DIR defaults to $SIGNER_PCSC_SANDBOX)

start prints shell export lines: eval \"$(pcsc-sandbox start)\"";

enum Failure {
    Usage(String),
    Sandbox(SandboxError),
}

impl From<SandboxError> for Failure {
    fn from(e: SandboxError) -> Failure {
        Failure::Sandbox(e)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("pcsc-sandbox: {m}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Sandbox(e)) => {
            eprintln!("pcsc-sandbox: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Failure::Usage("no command".into()));
    };
    match command.as_str() {
        "start" => start(rest),
        "stop" => {
            let sandbox = Sandbox::open(&sandbox_dir(rest)?)?;
            let dir = sandbox.dir().to_path_buf();
            let mut vars = vec![
                "PCSCLITE_CSOCK_NAME".to_string(),
                SANDBOX_DIR_ENV.to_string(),
                "SIGNER_VPCD".to_string(),
                "SIGNER_PCSC_READER".to_string(),
            ];
            for i in 0..sandbox.readers().len() {
                vars.push(format!("SIGNER_VPCD_{i}"));
                vars.push(format!("SIGNER_PCSC_READER_{i}"));
            }
            drop(sandbox);
            eprintln!("pcsc-sandbox: stopped and removed {}", dir.display());
            println!("unset {}", vars.join(" "));
            Ok(())
        }
        "restart" => {
            let mut sandbox = Sandbox::open(&sandbox_dir(rest)?)?;
            sandbox.restart_pcscd()?;
            eprintln!(
                "pcsc-sandbox: pcscd restarted (pid {})",
                sandbox.pcscd_pid().unwrap_or(0)
            );
            sandbox.detach();
            Ok(())
        }
        "status" => {
            let mut sandbox = Sandbox::open(&sandbox_dir(rest)?)?;
            let running = sandbox.is_pcscd_running();
            println!("directory: {}", sandbox.dir().display());
            println!("socket:    {}", sandbox.socket_path().display());
            println!(
                "pcscd:     {}",
                if running { "running" } else { "not running" }
            );
            for (i, r) in sandbox.readers().iter().enumerate() {
                println!("reader {i}:  {:<37} vpcd {}", r.name, r.vpcd_address());
            }
            sandbox.detach();
            Ok(())
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
}

fn start(rest: &[String]) -> Result<(), Failure> {
    let mut config = SandboxConfig::default();
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--readers" => {
                let n = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| Failure::Usage("--readers needs a number".into()))?;
                config.readers = n;
            }
            "--name" => {
                config.reader_name = it
                    .next()
                    .ok_or_else(|| Failure::Usage("--name needs a reader name".into()))?
                    .clone();
            }
            "--two-slot-vpcd" => config.vpcd = VpcdDriver::Debian,
            other => return Err(Failure::Usage(format!("unknown option {other:?}"))),
        }
    }
    let sandbox = Sandbox::start_detached(config)?;
    print!("{}", sandbox.shell_exports());
    eprintln!(
        "pcsc-sandbox: private pcscd (pid {}) in {}",
        sandbox.pcscd_pid().unwrap_or(0),
        sandbox.dir().display()
    );
    for r in sandbox.readers() {
        eprintln!(
            "pcsc-sandbox:   reader {:?} <- vpcd {}",
            r.name,
            r.vpcd_address()
        );
    }
    sandbox.detach();
    Ok(())
}

fn sandbox_dir(rest: &[String]) -> Result<PathBuf, Failure> {
    match rest {
        [dir] => Ok(PathBuf::from(dir)),
        [] => std::env::var_os(SANDBOX_DIR_ENV)
            .map(PathBuf::from)
            .ok_or_else(|| {
                Failure::Usage(format!("no DIR given and ${SANDBOX_DIR_ENV} is not set"))
            }),
        _ => Err(Failure::Usage("too many arguments".into())),
    }
}
