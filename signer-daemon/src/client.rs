//! `signerctl`: the command-line client of signer-daemon.
//!
//! ```text
//! signerctl [--socket PATH] [--timeout SECS] list [--json]
//! signerctl pubkey --key KEYID|SLOT [--token SERIAL]
//! signerctl sign --key KEYID|SLOT [--digest sha256:HEX | --in FILE | (stdin)]
//!                [--hash sha256|sha384|sha512] [--format der|raw|base64] [-o FILE]
//! signerctl attest --key KEYID|SLOT [--out chain.pem] [--json]
//! signerctl health
//! ```
//!
//! The socket is `--socket`, else `SIGNER_SOCKET`, else the user daemon's
//! (`$XDG_RUNTIME_DIR/signer/signer.sock`) if it exists, else the system
//! daemon's (`/run/signer/signer.sock`).
//!
//! Signing uses the streaming `SignWithEvents` RPC: when the key needs a
//! touch, the daemon says so before the token starts waiting, and signerctl
//! prints "Touch your YubiKey now" on standard error.
//!
//! Exit codes ([`exit`]): 0 success, 1 internal error, 2 usage error
//! (including requests the daemon calls invalid), 3 daemon unreachable,
//! 4 denied, 5 token error (PIN, touch, card absent or busy), 6 key or token
//! not found, 7 attestation not trusted or service not serving.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use clap::{Args, Parser, Subcommand, ValueEnum};
use sha2::Digest;
use signer_proto::v1 as pb;
use signer_proto::v1::signer_client::SignerClient;
use tonic::Code;
use tonic::transport::Channel;

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

/// The exit code for a gRPC status.
pub fn exit_code_for(code: Code) -> i32 {
    match code {
        Code::Ok => exit::OK,
        Code::InvalidArgument | Code::OutOfRange | Code::Unimplemented => exit::USAGE,
        Code::PermissionDenied | Code::Unauthenticated => exit::DENIED,
        Code::NotFound => exit::NOT_FOUND,
        Code::FailedPrecondition
        | Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::ResourceExhausted
        | Code::Cancelled => exit::TOKEN,
        Code::AlreadyExists | Code::Internal | Code::DataLoss | Code::Unknown => exit::INTERNAL,
    }
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
}

/// `bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Signatures per client.
    #[arg(long, default_value_t = 100)]
    pub requests: usize,
}

/// `list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this token.
    #[arg(long, value_name = "SERIAL")]
    pub token: Option<u32>,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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

/// Signature output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// ASN.1 DER (what openssl verifies).
    Der,
    /// r || s, fixed size.
    Raw,
    /// Base64 of the DER signature, one line.
    Base64,
}

/// Hash for --in/stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HashArg {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// `sign`
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// A prehashed digest, `sha256:HEX` (or sha384:, sha512:).
    #[arg(long, value_name = "HASH:HEX", conflicts_with = "input")]
    pub digest: Option<String>,
    /// The file to sign (hashed here, streaming); standard input when neither
    /// --digest nor --in is given.
    #[arg(long = "in", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Hash for --in / standard input.
    #[arg(long, value_enum, default_value = "sha256", conflicts_with = "digest")]
    pub hash: HashArg,
    /// Signature format.
    #[arg(long, value_enum, default_value = "der")]
    pub format: OutputFormat,
    /// Write the signature here instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `attest`
#[derive(Debug, Args)]
pub struct AttestArgs {
    /// The key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// Write the chain (attestation certificate, device certificate, then
    /// the rest of the verified chain) as PEM.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
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
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::USAGE,
            message: message.into(),
        }
    }
    fn internal(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::INTERNAL,
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Failure {
        let code = exit_code_for(s.code());
        let name = crate::status::code_name(s.code());
        Failure {
            code,
            message: format!("{name}: {}", s.message()),
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

fn socket_path(cli: &Cli) -> PathBuf {
    cli.socket
        .clone()
        .unwrap_or_else(crate::socket::default_client_socket)
}

async fn connect(path: &Path) -> Result<Channel, Failure> {
    signer_proto::unix::connect(path).await.map_err(|e| {
        let detail = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string());
        Failure {
            code: exit::UNREACHABLE,
            message: format!(
                "cannot reach signer-daemon at {}: {detail} (is it running? --socket or SIGNER_SOCKET choose the socket)",
                path.display()
            ),
        }
    })
}

fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.set_timeout(timeout);
    r
}

/// Run a parsed command; Ok carries the exit code.
pub async fn run(cli: Cli) -> Result<i32, Failure> {
    let path = socket_path(&cli);
    let timeout = Duration::from_secs(cli.timeout.max(1));
    // Validate arguments before connecting.
    let prepared = match &cli.command {
        Command::Sign(a) => Some(prepare_sign(a)?),
        _ => None,
    };
    let channel = connect(&path).await?;
    match cli.command {
        Command::List(a) => list(channel, a, timeout).await,
        Command::Pubkey(a) => pubkey(channel, a, timeout).await,
        Command::Sign(a) => match prepared {
            Some(p) => sign(channel, a, p, timeout).await,
            None => Err(Failure::internal("sign arguments were not prepared")),
        },
        Command::Attest(a) => attest(channel, a, timeout).await,
        Command::Health(a) => health(channel, a, timeout).await,
        Command::Bench(a) => bench(&path, channel, a, timeout).await,
    }
}

/// The key reference for `--key` / `--token`.
pub fn key_ref(args: &KeyArgs) -> pb::KeyRef {
    let k = args.key.trim();
    let is_id = k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit());
    pb::KeyRef {
        key: Some(if is_id {
            pb::key_ref::Key::KeyId(k.to_ascii_lowercase())
        } else {
            pb::key_ref::Key::Slot(pb::SlotRef {
                token_serial: args.token,
                slot: k.to_string(),
            })
        }),
    }
}

fn name<E: TryFrom<i32>>(v: i32, f: impl Fn(E) -> &'static str) -> &'static str {
    E::try_from(v).map(f).unwrap_or("?")
}

fn alg_name(v: i32) -> &'static str {
    name(v, |a: pb::Algorithm| match a {
        pb::Algorithm::EccP256 => "p256",
        pb::Algorithm::EccP384 => "p384",
        pb::Algorithm::Rsa2048 => "rsa2048",
        pb::Algorithm::Ed25519 => "ed25519",
        pb::Algorithm::Unspecified => "?",
    })
}

fn pin_name(v: i32) -> &'static str {
    name(v, |p: pb::PinPolicy| match p {
        pb::PinPolicy::Never => "never",
        pb::PinPolicy::Once => "once",
        pb::PinPolicy::Always => "always",
        pb::PinPolicy::Unspecified => "unknown",
    })
}

fn touch_name(v: i32) -> &'static str {
    name(v, |p: pb::TouchPolicy| match p {
        pb::TouchPolicy::Never => "never",
        pb::TouchPolicy::Always => "always",
        pb::TouchPolicy::Cached => "cached",
        pb::TouchPolicy::Unspecified => "unknown",
    })
}

fn origin_name(v: i32) -> &'static str {
    name(v, |o: pb::KeyOrigin| match o {
        pb::KeyOrigin::Generated => "generated",
        pb::KeyOrigin::Imported => "imported",
        pb::KeyOrigin::Unspecified => "unknown",
    })
}

async fn list(channel: Channel, a: ListArgs, timeout: Duration) -> Result<i32, Failure> {
    let mut c = SignerClient::new(channel);
    let tokens = c
        .list_tokens(with_timeout(pb::ListTokensRequest {}, timeout))
        .await?
        .into_inner()
        .tokens;
    let keys = c
        .list_keys(with_timeout(
            pb::ListKeysRequest {
                token_serial: a.token,
            },
            timeout,
        ))
        .await?
        .into_inner()
        .keys;
    let mut out = std::io::stdout().lock();
    let w = |r: std::io::Result<()>| r.map_err(|e| Failure::internal(format!("stdout: {e}")));
    if a.json {
        let json = serde_json::json!({
            "tokens": tokens.iter().map(|t| serde_json::json!({
                "serial": t.serial, "firmware": t.firmware, "model": t.model,
                "kind": name(t.kind, |k: pb::TokenKind| match k {
                    pb::TokenKind::Hardware => "hardware",
                    pb::TokenKind::Emulated => "emulated",
                    pb::TokenKind::Unspecified => "unknown",
                }),
                "reader": t.reader, "available": t.available, "status": t.status,
            })).collect::<Vec<_>>(),
            "keys": keys.iter().map(|k| serde_json::json!({
                "token_serial": k.token_serial, "slot": k.slot, "algorithm": alg_name(k.algorithm),
                "key_id": k.key_id, "pin_policy": pin_name(k.pin_policy),
                "touch_policy": touch_name(k.touch_policy), "origin": origin_name(k.origin),
                "public_key_pem": k.public_key_pem, "has_certificate": !k.certificate_der.is_empty(),
            })).collect::<Vec<_>>(),
        });
        w(writeln!(out, "{json:#}"))?;
        return Ok(exit::OK);
    }
    for t in &tokens {
        let kind = if t.kind == pb::TokenKind::Emulated as i32 {
            " [EMULATED: tests and CI only]"
        } else {
            ""
        };
        w(writeln!(
            out,
            "token {} {} firmware {}{}{}",
            t.serial,
            t.model,
            t.firmware,
            kind,
            if t.available {
                String::new()
            } else {
                format!(" UNAVAILABLE: {}", t.status)
            }
        ))?;
    }
    w(writeln!(
        out,
        "{:<10} {:<4} {:<5} {:<7} {:<7} {:<9} KEY ID",
        "TOKEN", "SLOT", "ALG", "PIN", "TOUCH", "ORIGIN"
    ))?;
    for k in &keys {
        w(writeln!(
            out,
            "{:<10} {:<4} {:<5} {:<7} {:<7} {:<9} {}",
            k.token_serial,
            k.slot,
            alg_name(k.algorithm),
            pin_name(k.pin_policy),
            touch_name(k.touch_policy),
            origin_name(k.origin),
            k.key_id
        ))?;
    }
    Ok(exit::OK)
}

async fn pubkey(channel: Channel, a: KeyArgs, timeout: Duration) -> Result<i32, Failure> {
    let mut c = SignerClient::new(channel);
    let key = c
        .get_public_key(with_timeout(
            pb::GetPublicKeyRequest {
                key: Some(key_ref(&a)),
            },
            timeout,
        ))
        .await?
        .into_inner()
        .key
        .ok_or_else(|| Failure::internal("the daemon answered without a key"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(key.public_key_pem.as_bytes())
        .map_err(|e| Failure::internal(format!("stdout: {e}")))?;
    Ok(exit::OK)
}

/// What `sign` sends.
#[derive(Debug)]
pub struct PreparedSign {
    hash: pb::HashAlgorithm,
    digest: Vec<u8>,
}

fn hash_of(name: &str) -> Option<(pb::HashAlgorithm, usize)> {
    match name.to_ascii_lowercase().as_str() {
        "sha256" | "sha-256" => Some((pb::HashAlgorithm::Sha256, 32)),
        "sha384" | "sha-384" => Some((pb::HashAlgorithm::Sha384, 48)),
        "sha512" | "sha-512" => Some((pb::HashAlgorithm::Sha512, 64)),
        _ => None,
    }
}

fn prepare_sign(a: &SignArgs) -> Result<PreparedSign, Failure> {
    if a.output.is_none() && a.format != OutputFormat::Base64 && std::io::stdout().is_terminal() {
        return Err(Failure::usage(
            "refusing to write a binary signature to a terminal: use -o FILE or --format base64",
        ));
    }
    if let Some(d) = &a.digest {
        let (h, hexpart) = d.split_once(':').ok_or_else(|| {
            Failure::usage(format!(
                "--digest {d:?}: expected HASH:HEX, e.g. sha256:9f86d0..."
            ))
        })?;
        let (hash, len) = hash_of(h).ok_or_else(|| {
            Failure::usage(format!(
                "--digest: unknown hash {h:?} (sha256, sha384, sha512)"
            ))
        })?;
        let digest = hex::decode(hexpart.trim())
            .map_err(|e| Failure::usage(format!("--digest: not hex: {e}")))?;
        if digest.len() != len {
            return Err(Failure::usage(format!(
                "--digest: a {h} digest is {len} bytes ({} hex digits), got {} bytes",
                len * 2,
                digest.len()
            )));
        }
        return Ok(PreparedSign { hash, digest });
    }
    let (hash, mut hasher): (pb::HashAlgorithm, Box<dyn sha2::digest::DynDigest>) = match a.hash {
        HashArg::Sha256 => (pb::HashAlgorithm::Sha256, Box::new(sha2::Sha256::new())),
        HashArg::Sha384 => (pb::HashAlgorithm::Sha384, Box::new(sha2::Sha384::new())),
        HashArg::Sha512 => (pb::HashAlgorithm::Sha512, Box::new(sha2::Sha512::new())),
    };
    let mut reader: Box<dyn Read> = match &a.input {
        Some(p) => Box::new(
            std::fs::File::open(p)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", p.display())))?,
        ),
        None => {
            if std::io::stdin().is_terminal() {
                return Err(Failure::usage(
                    "nothing to sign: give --digest HASH:HEX, --in FILE, or pipe the data to standard input",
                ));
            }
            Box::new(std::io::stdin())
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Failure::usage(format!("cannot read the input: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(PreparedSign {
        hash,
        digest: hasher.finalize().to_vec(),
    })
}

async fn sign(
    channel: Channel,
    a: SignArgs,
    p: PreparedSign,
    timeout: Duration,
) -> Result<i32, Failure> {
    let mut c = SignerClient::new(channel);
    let wire_format = match a.format {
        OutputFormat::Raw => pb::SignatureFormat::Raw,
        OutputFormat::Der | OutputFormat::Base64 => pb::SignatureFormat::Der,
    };
    let request = pb::SignRequest {
        key: Some(key_ref(&a.key)),
        input: Some(pb::sign_request::Input::Digest(p.digest.clone())),
        hash: p.hash as i32,
        format: wire_format as i32,
    };
    let mut stream = c
        .sign_with_events(with_timeout(request, timeout))
        .await?
        .into_inner();
    let mut response = None;
    while let Some(event) = stream.message().await? {
        match event.event {
            Some(pb::sign_event::Event::TouchRequired(t)) => {
                eprintln!(
                    "Touch your YubiKey now (token {}, slot {}; it waits {} s)",
                    t.token_serial,
                    t.slot,
                    t.timeout_ms.div_ceil(1000)
                );
            }
            Some(pb::sign_event::Event::Signature(r)) => response = Some(r),
            None => {}
        }
    }
    let r = response
        .ok_or_else(|| Failure::internal("the daemon ended the stream without a signature"))?;
    if r.digest != p.digest || r.hash != p.hash as i32 {
        return Err(Failure::internal(
            "the daemon returned a signature for another digest; discarded",
        ));
    }
    let bytes = match a.format {
        OutputFormat::Der | OutputFormat::Raw => r.signature,
        OutputFormat::Base64 => {
            let mut s = base64::engine::general_purpose::STANDARD.encode(&r.signature);
            s.push('\n');
            s.into_bytes()
        }
    };
    match &a.output {
        Some(path) => write_file(path, &bytes)?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .map_err(|e| Failure::internal(format!("stdout: {e}")))?;
        }
    }
    Ok(exit::OK)
}

/// Write `bytes` to `path` atomically (temporary file, then rename).
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| Failure::usage(format!("{}: not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failure::internal(format!(
            "cannot write {}: {e}",
            path.display()
        )));
    }
    Ok(())
}

fn pem(label: &str, der: &[u8]) -> Result<String, Failure> {
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der)
        .map_err(|e| Failure::internal(format!("PEM: {e}")))
}

async fn attest(channel: Channel, a: AttestArgs, timeout: Duration) -> Result<i32, Failure> {
    let mut c = SignerClient::new(channel);
    let r = c
        .attest(with_timeout(
            pb::AttestRequest {
                key: Some(key_ref(&a.key)),
            },
            timeout,
        ))
        .await?
        .into_inner();
    let verdict = r.verdict.clone().unwrap_or_default();
    let info = verdict.info.clone().unwrap_or_default();
    let key = r.key.clone().unwrap_or_default();
    if let Some(path) = &a.out {
        let mut chain = vec![
            r.attestation_certificate_der.clone(),
            r.device_certificate_der.clone(),
        ];
        for c in &verdict.chain_der {
            if !chain.contains(c) {
                chain.push(c.clone());
            }
        }
        let mut text = String::new();
        for der in chain.iter().filter(|d| !d.is_empty()) {
            text.push_str(&pem("CERTIFICATE", der)?);
        }
        write_file(path, text.as_bytes())?;
    }
    let mut out = std::io::stdout().lock();
    let w = |r: std::io::Result<()>| r.map_err(|e| Failure::internal(format!("stdout: {e}")));
    if a.json {
        let json = serde_json::json!({
            "key_id": key.key_id, "token_serial": key.token_serial, "slot": key.slot,
            "trusted": verdict.trusted, "problems": verdict.problems,
            "attested_key_id": verdict.attested_key_id, "attested_slot": verdict.slot,
            "serial": info.serial, "firmware": info.firmware,
            "pin_policy": pin_name(info.pin_policy), "touch_policy": touch_name(info.touch_policy),
            "form_factor": info.form_factor, "fips": info.fips, "cspn": info.cspn,
        });
        w(writeln!(out, "{json:#}"))?;
    } else {
        w(writeln!(
            out,
            "key:           {} (token {}, slot {})",
            key.key_id, key.token_serial, key.slot
        ))?;
        w(writeln!(
            out,
            "trusted:       {}",
            if verdict.trusted { "yes" } else { "NO" }
        ))?;
        w(writeln!(
            out,
            "serial:        {}",
            info.serial.map_or("-".to_string(), |s| s.to_string())
        ))?;
        w(writeln!(out, "firmware:      {}", or_dash(&info.firmware)))?;
        w(writeln!(
            out,
            "pin policy:    {}",
            pin_name(info.pin_policy)
        ))?;
        w(writeln!(
            out,
            "touch policy:  {}",
            touch_name(info.touch_policy)
        ))?;
        w(writeln!(
            out,
            "form factor:   {}",
            or_dash(&info.form_factor)
        ))?;
        w(writeln!(
            out,
            "attested key:  {}",
            or_dash(&verdict.attested_key_id)
        ))?;
        for p in &verdict.problems {
            w(writeln!(out, "problem:       {p}"))?;
        }
    }
    Ok(if verdict.trusted {
        exit::OK
    } else {
        exit::NOT_TRUSTED
    })
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

async fn health(channel: Channel, a: HealthArgs, timeout: Duration) -> Result<i32, Failure> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let mut c = HealthClient::new(channel);
    let r = c
        .check(with_timeout(
            HealthCheckRequest {
                service: a.service.clone(),
            },
            timeout,
        ))
        .await?
        .into_inner();
    let status = ServingStatus::try_from(r.status).unwrap_or(ServingStatus::Unknown);
    println!("{}", status.as_str_name());
    Ok(if status == ServingStatus::Serving {
        exit::OK
    } else {
        exit::NOT_TRUSTED
    })
}

async fn bench(
    path: &Path,
    channel: Channel,
    a: BenchArgs,
    timeout: Duration,
) -> Result<i32, Failure> {
    use signer_lib::{
        Algorithm, HashAlgorithm, KeyInfo, PinPolicy, PublicKey, SlotId, TouchPolicy,
    };
    let mut c = SignerClient::new(channel);
    let key = c
        .get_public_key(with_timeout(
            pb::GetPublicKeyRequest {
                key: Some(key_ref(&a.key)),
            },
            timeout,
        ))
        .await?
        .into_inner()
        .key
        .ok_or_else(|| Failure::internal("the daemon answered without a key"))?;
    let algorithm = match pb::Algorithm::try_from(key.algorithm) {
        Ok(pb::Algorithm::EccP256) => Algorithm::EccP256,
        Ok(pb::Algorithm::EccP384) => Algorithm::EccP384,
        _ => return Err(Failure::usage("bench needs a p256 or p384 key")),
    };
    let slot: SlotId = key
        .slot
        .parse()
        .map_err(|e| Failure::internal(format!("daemon sent slot {:?}: {e}", key.slot)))?;
    let info = std::sync::Arc::new(KeyInfo::new(
        slot,
        PublicKey {
            algorithm,
            spki_der: key.public_key_der.clone(),
        },
        None,
        PinPolicy::Default,
        TouchPolicy::Default,
        None,
    ));
    let key_ref = pb::KeyRef {
        key: Some(pb::key_ref::Key::KeyId(key.key_id.clone())),
    };
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for client in 0..a.clients {
        let channel = connect(path).await?;
        let info = info.clone();
        let key_ref = key_ref.clone();
        let requests = a.requests;
        tasks.push(tokio::spawn(async move {
            let mut c = SignerClient::new(channel);
            let mut latencies = Vec::with_capacity(requests);
            let mut failures = 0usize;
            for i in 0..requests {
                let digest = sha2::Sha256::digest(format!("bench {client} {i}")).to_vec();
                let t = std::time::Instant::now();
                let r = c
                    .sign(with_timeout(
                        pb::SignRequest {
                            key: Some(key_ref.clone()),
                            input: Some(pb::sign_request::Input::Digest(digest.clone())),
                            hash: pb::HashAlgorithm::Sha256 as i32,
                            format: pb::SignatureFormat::Der as i32,
                        },
                        timeout,
                    ))
                    .await;
                latencies.push(t.elapsed());
                let ok = match r {
                    Ok(r) => {
                        let r = r.into_inner();
                        r.digest == digest
                            && signer_lib::model::ecdsa_card_input(
                                algorithm,
                                HashAlgorithm::Sha256,
                                &digest,
                            )
                            .ok()
                            .and_then(|input| {
                                crate::server::convert::check_and_encode_signature(
                                    &info,
                                    &input,
                                    &r.signature,
                                    crate::server::convert::Format::Der,
                                )
                                .ok()
                            })
                            .is_some()
                    }
                    Err(_) => false,
                };
                if !ok {
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for t in tasks {
        let (l, f) = t
            .await
            .map_err(|e| Failure::internal(format!("bench client: {e}")))?;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        latencies
            .get(i.min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let total = latencies.len();
    println!(
        "clients {} x requests {} = {total} signatures, failures {failures}, {:.2} s, {:.0} signatures/s, latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        a.clients,
        a.requests,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64().max(1e-9),
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    Ok(if failures == 0 {
        exit::OK
    } else {
        exit::INTERNAL
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_argument_is_a_key_id_or_a_slot() {
        let id = "AB".repeat(32);
        let r = key_ref(&KeyArgs {
            key: id.clone(),
            token: None,
        });
        assert_eq!(
            r.key,
            Some(pb::key_ref::Key::KeyId(id.to_ascii_lowercase()))
        );
        let r = key_ref(&KeyArgs {
            key: "9c".into(),
            token: Some(7),
        });
        assert_eq!(
            r.key,
            Some(pb::key_ref::Key::Slot(pb::SlotRef {
                token_serial: Some(7),
                slot: "9c".into()
            }))
        );
    }

    #[test]
    fn exit_codes_distinguish_usage_denied_and_token_errors() {
        assert_eq!(exit_code_for(Code::InvalidArgument), exit::USAGE);
        assert_eq!(exit_code_for(Code::OutOfRange), exit::USAGE);
        assert_eq!(exit_code_for(Code::PermissionDenied), exit::DENIED);
        assert_eq!(exit_code_for(Code::Unauthenticated), exit::DENIED);
        assert_eq!(exit_code_for(Code::FailedPrecondition), exit::TOKEN);
        assert_eq!(exit_code_for(Code::Unavailable), exit::TOKEN);
        assert_eq!(exit_code_for(Code::DeadlineExceeded), exit::TOKEN);
        assert_eq!(exit_code_for(Code::NotFound), exit::NOT_FOUND);
        assert_eq!(exit_code_for(Code::Internal), exit::INTERNAL);
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

    #[test]
    fn digests_are_checked_before_connecting() {
        let args = |d: &str| SignArgs {
            key: KeyArgs {
                key: "9c".into(),
                token: None,
            },
            digest: Some(d.into()),
            input: None,
            hash: HashArg::Sha256,
            format: OutputFormat::Base64,
            output: None,
        };
        let ok = prepare_sign(&args(&format!("sha256:{}", "00".repeat(32)))).unwrap();
        assert_eq!(ok.digest.len(), 32);
        for bad in ["sha256:00", "md5:00", "nohash", "sha256:zz"] {
            assert_eq!(
                prepare_sign(&args(bad)).unwrap_err().code,
                exit::USAGE,
                "{bad}"
            );
        }
    }
}
