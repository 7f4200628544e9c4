//! `signer-daemon serve`: configuration, logging, signals, and the token
//! workers around [`crate::server::run`].
//!
//! Settings come from the command line, then the TOML file given with
//! `--config`, then defaults. The PIN comes from `--pin-file`, the config's
//! `pin_file`, `SIGNER_PIN`, or the systemd credential `pin`
//! (`$CREDENTIALS_DIRECTORY/pin`), in that order; the daemon never prompts.
//!
//! Signals: SIGTERM and SIGINT stop the daemon gracefully (exit status 0);
//! SIGHUP reopens the audit log, reloads the policy from the config file (a
//! policy that does not load is reported and the old one kept), and has the
//! token workers re-read the keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;
use signer_lib::Error;
use signer_lib::emulator::{OpenOptions, TouchMode};
use signer_lib::selector::{OpenConfig, TokenSelector};
use signer_lib::session::{PIN_ENV, PinSource};

use crate::attestation::AttestationTrust;
use crate::audit::AuditLog;
use crate::policy::{Policy, RuleConfig};
use crate::server::{Daemon, DaemonOptions};
use crate::socket::{BoundSocket, default_daemon_socket};
use crate::worker::{TokenOpener, TokenWorker, WorkerOptions};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for journald/log shippers).
    Json,
}

/// `signer-daemon serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Token to serve: `emulated:FILE`, `yubikey` or `yubikey:SERIAL`
    /// (repeat for several tokens).
    #[arg(long = "token", value_name = "SELECTOR")]
    pub tokens: Vec<String>,
    /// Socket path [default: $XDG_RUNTIME_DIR/signer/signer.sock, or
    /// /run/signer/signer.sock without a user session]. Ignored under
    /// systemd socket activation.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// TOML configuration (policy rules, audit log, limits).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// File holding the PIN (re-read when needed; never logged).
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
    /// Audit log path [default: /var/log/signer/audit.jsonl, or
    /// $XDG_STATE_HOME/signer/audit.jsonl in a user session].
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax); `SIGNER_LOG` also works.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Socket path.
    pub socket: Option<PathBuf>,
    /// Token selectors.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// PIN file.
    pub pin_file: Option<PathBuf>,
    /// Audit log path.
    pub audit_log: Option<PathBuf>,
    /// Requests that may wait per token (default 256).
    pub queue_capacity: Option<usize>,
    /// Largest request accepted, bytes (default 1 MiB).
    pub max_request_bytes: Option<usize>,
    /// Wait limit for requests without a deadline, seconds (default 120).
    pub request_timeout_secs: Option<u64>,
    /// Grace period for requests in flight at shutdown, seconds (default 30).
    pub shutdown_grace_secs: Option<u64>,
    /// Poll an idle token every this many seconds to notice card changes
    /// (default 5; 0 disables).
    pub card_poll_secs: Option<u64>,
    /// Threads of the async runtime that serve gRPC (default
    /// [`DEFAULT_ASYNC_THREADS`]); the token workers and the audit writer
    /// have their own threads either way.
    pub async_threads: Option<usize>,
    /// Trust emulated tokens' attestation root (tests and CI only; default false).
    #[serde(default)]
    pub trust_emulated_root: bool,
    /// Extra trusted attestation roots (PEM files).
    #[serde(default)]
    pub attestation_roots: Vec<PathBuf>,
    /// Policy rules (`[[rule]]` tables).
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
}

/// The async runtime's worker threads unless the configuration says
/// otherwise: one. The gRPC side of a request costs about 100 µs of CPU
/// (HTTP/2, protobuf, policy, the audit record), so one thread serves about
/// 10,000 requests/s, more than a token signs; the card work and the audit
/// `fdatasync` run on their own threads and never block it. A second
/// worker bought no throughput and cost CPU: every request woken from
/// outside the runtime (the token's answer, the audit line on disk) also
/// woke the idle worker to look for work, which found none. Measured with
/// `tests/scripts/bench.sh` (its "where the time went" table), 2 cores,
/// one worker against two in the same run: tokio-side context switches per
/// request 8.2 -> 4.9 (1 client), 3.1 -> 1.6 (8), 1.9 -> 1.0 (64); the
/// daemon's CPU per request 615 -> 547 µs, 356 -> 302 µs, 269 -> 235 µs.
pub const DEFAULT_ASYNC_THREADS: usize = 1;

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad or missing configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The socket could not be set up.
    #[error(transparent)]
    Socket(#[from] crate::socket::SocketError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The policy is invalid.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// A token cannot be served.
    #[error("token {selector}: {source}")]
    Token {
        /// The selector.
        selector: String,
        /// Why.
        #[source]
        source: Error,
    },
    /// Runtime failure.
    #[error("{0}")]
    Runtime(String),
}

/// Read and parse a configuration file.
pub fn load_config(path: &Path) -> Result<ConfigFile, ServeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ServeError::Config(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ServeError::Config(format!("{}: {e}", path.display())))
}

/// The configuration's policy; an error names the file and line.
fn policy_from(path: Option<&Path>, euid: u32, config: &ConfigFile) -> Result<Policy, ServeError> {
    Policy::from_config(euid, &config.rules).map_err(|e| {
        match path.and_then(|p| std::fs::read_to_string(p).ok().map(|t| (p, t))) {
            Some((p, text)) => e.locate(&p.display().to_string(), &text),
            None => e,
        }
        .into()
    })
}

/// The default audit log for this environment.
pub fn default_audit_log() -> PathBuf {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| !d.is_empty()) {
        let state = std::env::var_os("XDG_STATE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")));
        if let Some(state) = state {
            return state.join("signer").join("audit.jsonl");
        }
    }
    PathBuf::from("/var/log/signer/audit.jsonl")
}

/// Where the daemon's PIN comes from (never a prompt).
pub fn daemon_pin_source(pin_file: Option<PathBuf>) -> PinSource {
    if let Some(p) = pin_file {
        return PinSource::File(p);
    }
    if std::env::var_os(PIN_ENV).is_some() {
        return PinSource::Env(PIN_ENV.to_string());
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let p = PathBuf::from(dir).join("pin");
        if p.exists() {
            return PinSource::File(p);
        }
    }
    PinSource::None
}

/// How to open the token a selector names. An emulated token takes its
/// touch source from `SIGNER_EMULATED_TOUCH` (`approve`, the default, or `deny`).
pub fn token_opener(selector: &str) -> Result<(TokenSelector, TokenOpener), Error> {
    let parsed: TokenSelector = selector.parse()?;
    let config = open_config()?;
    let sel = parsed.clone();
    if let TokenSelector::YubiKey { serial: None } = parsed {
        // `yubikey` means "the only one" at start-up; once opened, the
        // daemon sticks to that token's serial, so a reconnection never
        // lands on another YubiKey plugged in meanwhile.
        let mut pinned: Option<u32> = None;
        return Ok((
            parsed,
            Box::new(move || {
                let token = signer_lib::piv_client::open_yubikey(pinned)?;
                pinned = Some(token.serial());
                Ok(Box::new(token) as Box<dyn signer_lib::Token>)
            }),
        ));
    }
    Ok((parsed, Box::new(move || sel.open(&config))))
}

fn open_config() -> Result<OpenConfig, Error> {
    Ok(OpenConfig {
        emulated: OpenOptions::with_touch(TouchMode::from_env()?.source()),
    })
}

/// Failures at start-up that mean "try again later" rather than "misconfigured".
fn is_transient(e: &Error) -> bool {
    matches!(
        e,
        Error::Unavailable { .. }
            | Error::TokenNotFound { .. }
            | Error::CardRemoved { .. }
            | Error::CardReset
            | Error::CardInUse { .. }
    )
}

fn init_logging(format: LogFormat, filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_env("SIGNER_LOG").ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Run the daemon until SIGTERM/SIGINT.
pub fn serve(args: ServeArgs) -> Result<(), ServeError> {
    init_logging(args.log_format, args.log_level.as_deref());
    let config = match &args.config {
        Some(p) => load_config(p)?,
        None => ConfigFile::default(),
    };
    let euid = rustix::process::geteuid().as_raw();
    let policy = policy_from(args.config.as_deref(), euid, &config)?;
    let async_threads = match config.async_threads {
        None => DEFAULT_ASYNC_THREADS,
        Some(0) => {
            return Err(ServeError::Config(
                "async_threads = 0: the daemon needs at least one thread to serve requests".into(),
            ));
        }
        Some(n) => n,
    };

    let selectors: Vec<String> = if args.tokens.is_empty() {
        config.tokens.clone()
    } else {
        args.tokens.clone()
    };
    if selectors.is_empty() {
        return Err(ServeError::Config(
            "no token to serve: give --token emulated:FILE, --token yubikey or --token yubikey:SERIAL (or tokens = [...] in the config)".into(),
        ));
    }

    let audit_path = args
        .audit_log
        .clone()
        .or(config.audit_log.clone())
        .unwrap_or_else(default_audit_log);
    if let Some(dir) = audit_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|e| {
                    ServeError::Config(format!(
                        "cannot create audit log directory {}: {e}",
                        dir.display()
                    ))
                })?;
        }
    }
    let audit = AuditLog::open(&audit_path)?;

    // The socket: passed by systemd, or created here.
    let bound = match BoundSocket::from_systemd()? {
        Some(b) => {
            tracing::info!("using the socket passed by systemd (socket activation)");
            b
        }
        None => {
            let path = args
                .socket
                .clone()
                .or(config.socket.clone())
                .unwrap_or_else(default_daemon_socket);
            BoundSocket::bind(&path)?
        }
    };

    let pin_source = daemon_pin_source(args.pin_file.clone().or(config.pin_file.clone()));
    if let PinSource::File(path) = &pin_source {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => tracing::warn!(
                path = %path.display(),
                mode = %format!("{:o}", m.permissions().mode() & 0o777),
                "the PIN file is accessible to other users; chmod 600 it"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "the PIN file cannot be read yet")
            }
        }
    }
    let worker_options = WorkerOptions {
        queue_capacity: config.queue_capacity.unwrap_or(256),
        poll_interval: match config.card_poll_secs.unwrap_or(5) {
            0 => None,
            s => Some(Duration::from_secs(s)),
        },
        pin_source,
    };
    let mut workers = Vec::new();
    let mut emulated_roots = Vec::new();
    for selector in &selectors {
        let token_error = |source| ServeError::Token {
            selector: selector.clone(),
            source,
        };
        let (parsed, opener) = token_opener(selector).map_err(token_error)?;
        if parsed.is_emulated() {
            tracing::warn!(
                token = %selector,
                "serving an EMULATED token: its private keys are in a file; tests and CI only, never production keys"
            );
            if config.trust_emulated_root {
                // Read the root before the worker takes the state file's lock.
                let root = parsed
                    .open_emulated(&open_config().map_err(token_error)?)
                    .and_then(|t| t.attestation_root_der())
                    .map_err(token_error)?;
                emulated_roots.push(root);
            }
        }
        let (worker, first) = TokenWorker::spawn(selector.clone(), opener, worker_options.clone())
            .map_err(|e| ServeError::Runtime(format!("cannot start the token worker: {e}")))?;
        match first {
            Ok(()) => {}
            Err(e) if is_transient(&e) => {
                tracing::warn!(token = %selector, error = %e, "token not reachable yet; will keep trying");
            }
            Err(source) => {
                return Err(ServeError::Token {
                    selector: selector.clone(),
                    source,
                });
            }
        }
        workers.push(worker);
    }

    let options = DaemonOptions {
        max_request_bytes: config.max_request_bytes.unwrap_or(1024 * 1024),
        request_timeout: Duration::from_secs(config.request_timeout_secs.unwrap_or(120)),
        shutdown_grace: Duration::from_secs(config.shutdown_grace_secs.unwrap_or(30)),
    };
    let trust = AttestationTrust {
        trust_emulated_root: config.trust_emulated_root,
        emulated_roots,
        extra_roots: crate::attestation::load_pem_roots(&config.attestation_roots)
            .map_err(ServeError::Config)?,
    };
    let grace = options.shutdown_grace;
    let daemon = Daemon::new(workers, policy, audit, trust, options);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(async_threads)
        .enable_all()
        .thread_name("signer-daemon")
        .build()
        .map_err(|e| ServeError::Runtime(format!("cannot start the async runtime: {e}")))?;

    let config_path = args.config.clone();
    let result = runtime.block_on(async {
        bound
            .listener
            .set_nonblocking(true)
            .map_err(|e| ServeError::Runtime(format!("socket: {e}")))?;
        let listener = tokio::net::UnixListener::from_std(
            bound
                .listener
                .try_clone()
                .map_err(|e| ServeError::Runtime(format!("socket: {e}")))?,
        )
        .map_err(|e| ServeError::Runtime(format!("socket: {e}")))?;
        let shutdown = signals(daemon.clone(), config_path, euid)?;
        tracing::info!(
            socket = ?bound.path,
            audit_log = %audit_path.display(),
            tokens = selectors.len(),
            rules = daemon.policy().rule_count(),
            "signer-daemon serving"
        );
        crate::server::run(listener, daemon.clone(), shutdown)
            .await
            .map_err(|e| ServeError::Runtime(format!("server: {e}")))
    });
    let started_stop = std::time::Instant::now();
    if !daemon.stop_workers(grace) {
        tracing::warn!(
            waited = ?started_stop.elapsed(),
            "a token worker was still busy at exit (waiting for a touch?)"
        );
    }
    drop(bound);
    runtime.shutdown_timeout(Duration::from_secs(1));
    match Arc::try_unwrap(daemon) {
        Ok(d) => drop(d), // flushes the audit log
        Err(_) => tracing::debug!("daemon still referenced at exit"),
    }
    tracing::info!("signer-daemon stopped");
    result
}

/// Install the signal handlers; the returned future completes on SIGTERM or SIGINT.
fn signals(
    daemon: Arc<Daemon>,
    config_path: Option<PathBuf>,
    euid: u32,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let sig = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| ServeError::Runtime(format!("cannot handle {name}: {e}")))
    };
    let mut term = sig(SignalKind::terminate(), "SIGTERM")?;
    let mut int = sig(SignalKind::interrupt(), "SIGINT")?;
    let mut hup = sig(SignalKind::hangup(), "SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!(
                "SIGHUP: reopening the audit log, reloading the policy, re-reading the keys"
            );
            daemon.reopen_audit_log();
            daemon.refresh_tokens();
            if let Some(path) = &config_path {
                match load_config(path).and_then(|c| policy_from(Some(path), euid, &c)) {
                    Ok(p) => {
                        tracing::info!(rules = p.rule_count(), "policy reloaded");
                        daemon.set_policy(p);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "policy not reloaded; keeping the old one")
                    }
                }
            }
        }
    });
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
