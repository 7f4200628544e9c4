//! `signerctl`: the command-line client of signer-daemon.
//!
//! ```text
//! signerctl [--socket PATH] [--timeout SECS] list [--json]
//! signerctl pubkey --key KEYID|SLOT [--token SERIAL]
//! signerctl sign --key KEYID|SLOT [--digest sha256:HEX | --in FILE | (stdin)]
//!                [--hash sha256|sha384|sha512] [--format der|raw|base64] [-o FILE]
//! signerctl attest --key KEYID|SLOT [--out chain.pem] [--json]
//! signerctl health
//! signerctl bench --key KEYID|SLOT [--clients N] [--requests N]
//! signerctl tuf key|init|sign|verify|rotate|merge ...   (TUF metadata, see [`tuf`])
//! ```
//!
//! Every call goes through the shared client crate [`signer_client`]
//! (connection, key names, the touch event stream, the status mapping); this
//! module is only the command line: one file per command.
//!
//! The socket is `--socket`, else `SIGNER_SOCKET`, else the user daemon's
//! (`$XDG_RUNTIME_DIR/signer/signer.sock`) if it exists, else the system
//! daemon's (`/run/signer/signer.sock`).
//!
//! Exit codes ([`exit`]): 0 success, 1 internal error, 2 usage error
//! (including requests the daemon calls invalid), 3 daemon unreachable,
//! 4 denied, 5 token error (PIN, touch, card absent or busy), 6 key or token
//! not found, 7 attestation not trusted or service not serving.

mod attest;
mod bench;
mod list;
mod output;
mod sign;
pub mod tuf;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use signer_client::{Client, ErrorKind, KeySpec};
use tonic::Code;

pub use attest::AttestArgs;
pub use bench::BenchArgs;
pub use list::ListArgs;
pub use output::write_file_atomically;
pub use sign::{HashArg, OutputFormat, SignArgs};

/// Exit codes.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// An internal error (daemon INTERNAL/DATA_LOSS/UNKNOWN, local I/O).
    pub const INTERNAL: i32 = 1;
    /// Usage: bad arguments, or a request the daemon rejected as invalid
    /// (INVALID_ARGUMENT, OUT_OF_RANGE, UNIMPLEMENTED).
    pub const USAGE: i32 = 2;
    /// The daemon could not be reached.
    pub const UNREACHABLE: i32 = 3;
    /// The daemon's policy refused (PERMISSION_DENIED, UNAUTHENTICATED).
    pub const DENIED: i32 = 4;
    /// The token refused or could not: PIN, touch, card absent or busy
    /// (FAILED_PRECONDITION, UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED,
    /// RESOURCE_EXHAUSTED, CANCELLED).
    pub const TOKEN: i32 = 5;
    /// No such key or token (NOT_FOUND).
    pub const NOT_FOUND: i32 = 6;
    /// The attestation is not trusted, or the health check is not SERVING.
    pub const NOT_TRUSTED: i32 = 7;
}

/// The exit code for a kind of failure (the shared status mapping of
/// [`signer_client::ErrorKind`]).
pub fn exit_code_for_kind(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Unreachable => exit::UNREACHABLE,
        ErrorKind::Invalid => exit::USAGE,
        ErrorKind::Denied => exit::DENIED,
        ErrorKind::NotFound => exit::NOT_FOUND,
        ErrorKind::Pin
        | ErrorKind::Timeout
        | ErrorKind::Aborted
        | ErrorKind::Unavailable
        | ErrorKind::Busy
        | ErrorKind::Cancelled => exit::TOKEN,
        ErrorKind::Internal => exit::INTERNAL,
    }
}

/// The exit code for a gRPC status.
pub fn exit_code_for(code: Code) -> i32 {
    if code == Code::Ok {
        return exit::OK;
    }
    exit_code_for_kind(ErrorKind::of_code(code))
}

/// signerctl: ask signer-daemon for keys, signatures and attestations.
#[derive(Debug, Parser)]
#[command(name = "signerctl", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The daemon's socket [env: SIGNER_SOCKET; default: the user daemon's
    /// socket if present, else /run/signer/signer.sock].
    #[arg(long, global = true, env = "SIGNER_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Give up after this many seconds (a touch can take 15).
    #[arg(long, global = true, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const AFTER_HELP: &str = "Exit codes: 0 ok, 1 internal error, 2 usage error, 3 daemon unreachable, \
4 denied, 5 token error (PIN, touch, card absent or busy), 6 not found, \
7 attestation not trusted / not serving.";

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the tokens and keys the daemon serves (that you may list).
    List(ListArgs),
    /// Print a key's public key (PEM) on standard output.
    Pubkey(KeyArgs),
    /// Sign a digest, a file or standard input.
    Sign(SignArgs),
    /// Attest a key and print the daemon's verdict.
    Attest(AttestArgs),
    /// Ask the daemon's health service whether it is serving.
    Health(HealthArgs),
    /// Measure signatures per second through the daemon: concurrent
    /// clients, each signing distinct digests; every signature is checked
    /// against the key and its own request.
    Bench(BenchArgs),
    /// TUF metadata signed with token keys: the root ceremony (key, init,
    /// sign, verify, rotate, merge).
    Tuf(tuf::TufCommand),
}

/// Which key.
#[derive(Debug, Args, Clone)]
pub struct KeyArgs {
    /// A key id (64 hex digits) or a slot (9a, 9c, 9d, 9e, 82-95, signature, ...).
    #[arg(long, value_name = "KEYID|SLOT")]
    pub key: String,
    /// The token's serial, when the daemon serves several and --key is a slot.
    #[arg(long, value_name = "SERIAL")]
    pub token: Option<u32>,
}

impl KeyArgs {
    /// The key as the client crate names it.
    pub fn spec(&self) -> KeySpec {
        KeySpec::parse(&self.key, self.token)
    }
}

/// `health`
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Service to check ("" for the daemon as a whole).
    #[arg(long, default_value = signer_proto::SERVICE_NAME)]
    pub service: String,
}

/// A failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: i32,
    /// Message for standard error.
    pub message: String,
}

impl Failure {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::USAGE,
            message: message.into(),
        }
    }
    /// An internal or local I/O error (exit 1).
    pub fn internal(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::INTERNAL,
            message: message.into(),
        }
    }
}

impl From<signer_client::Error> for Failure {
    fn from(e: signer_client::Error) -> Failure {
        Failure {
            code: exit_code_for_kind(e.kind()),
            message: e.to_string(),
        }
    }
}

/// Parse arguments, run, and return the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("signerctl: cannot start: {e}");
            return exit::INTERNAL;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("signerctl: {}", f.message);
            f.code
        }
    }
}

/// The socket a command talks to.
pub fn socket_path(cli: &Cli) -> PathBuf {
    cli.socket
        .clone()
        .unwrap_or_else(signer_client::default_socket_ignoring_env)
}

/// Connect with the command's timeout.
pub async fn connect(path: &std::path::Path, timeout: Duration) -> Result<Client, Failure> {
    Ok(Client::connect(path).await?.with_timeout(timeout))
}

/// Run a parsed command; Ok carries the exit code.
pub async fn run(cli: Cli) -> Result<i32, Failure> {
    let path = socket_path(&cli);
    let timeout = Duration::from_secs(cli.timeout.max(1));
    match cli.command {
        Command::List(a) => list::run(connect(&path, timeout).await?, a).await,
        Command::Pubkey(a) => list::pubkey(connect(&path, timeout).await?, a).await,
        Command::Sign(a) => {
            // Arguments (and the local hashing) before connecting.
            let prepared = sign::prepare(&a)?;
            sign::run(connect(&path, timeout).await?, a, prepared).await
        }
        Command::Attest(a) => attest::run(connect(&path, timeout).await?, a).await,
        Command::Health(a) => health(connect(&path, timeout).await?, a).await,
        Command::Bench(a) => bench::run(&path, timeout, a).await,
        Command::Tuf(a) => tuf::run(&path, timeout, a).await,
    }
}

async fn health(mut client: Client, a: HealthArgs) -> Result<i32, Failure> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let status = client.health(&a.service).await?;
    println!("{}", status.as_str_name());
    Ok(if status == ServingStatus::Serving {
        exit::OK
    } else {
        exit::NOT_TRUSTED
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_distinguish_usage_denied_and_token_errors() {
        assert_eq!(exit_code_for(Code::Ok), exit::OK);
        assert_eq!(exit_code_for(Code::InvalidArgument), exit::USAGE);
        assert_eq!(exit_code_for(Code::OutOfRange), exit::USAGE);
        assert_eq!(exit_code_for(Code::PermissionDenied), exit::DENIED);
        assert_eq!(exit_code_for(Code::Unauthenticated), exit::DENIED);
        assert_eq!(exit_code_for(Code::FailedPrecondition), exit::TOKEN);
        assert_eq!(exit_code_for(Code::Unavailable), exit::TOKEN);
        assert_eq!(exit_code_for(Code::DeadlineExceeded), exit::TOKEN);
        assert_eq!(exit_code_for(Code::NotFound), exit::NOT_FOUND);
        assert_eq!(exit_code_for(Code::Internal), exit::INTERNAL);
        assert_eq!(
            exit_code_for_kind(ErrorKind::Unreachable),
            exit::UNREACHABLE
        );
        let codes = [
            exit::OK,
            exit::INTERNAL,
            exit::USAGE,
            exit::UNREACHABLE,
            exit::DENIED,
            exit::TOKEN,
            exit::NOT_FOUND,
            exit::NOT_TRUSTED,
        ];
        let mut sorted = codes.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
    }
}
