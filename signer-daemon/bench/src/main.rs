//! `signer-bench`: one client program that drives every signer a user would
//! pick for a local P-256 key with the same digests, the same concurrency
//! levels and the same client-side work, in one run, and prints one table.
//!
//! Rows: the RustCrypto primitive and the emulated token in-process (P-256,
//! P-384); signer-daemon over its Unix socket (release binary, emulated
//! token, audit log durable on disk, the default), with the audit log on
//! tmpfs for comparison, and with two tokens; OpenSSH's ssh-agent;
//! notary-signer (gRPC, mutual TLS); SoftHSM2 through PKCS#11. Plus the
//! floor of a durable audit line (one `fdatasync`), the daemon's cold start
//! and its RSS idle and after the load.
//!
//! Client-side work: none inside the timed window for any row; every
//! signature of every row is verified afterwards (RustCrypto), and a
//! signature that does not verify fails the benchmark.
//!
//! Every peer is set up by the benchmark itself; one that cannot be set up
//! fails the run, naming the Debian package to install
//! (`tests/scripts/bench.sh` installs them).

mod daemon;
mod load;
mod local;
mod notary;
mod pkcs11;
mod procstat;
mod ssh_agent;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use signer_client::signer_proto::v1 as pb;
use signer_lib::Algorithm;

use crate::load::{Failure, Result, Run, Verifier, digest, fail, run_tasks, run_threads};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "signer-bench",
    about = "signer-daemon against its peers, side by side in one run"
)]
struct Args {
    /// Requests per row and concurrency level in each repetition.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Repetitions (rows are interleaved in each repetition).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Concurrency levels (clients).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    levels: Vec<usize>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Where tokens, sockets and the durable audit log live (a disk
    /// filesystem; its fdatasync is measured).
    #[arg(long, default_value = "/var/tmp")]
    workdir: PathBuf,
    /// A tmpfs directory for the comparison row with the audit log in memory.
    #[arg(long, default_value = "/dev/shm")]
    tmpfs: PathBuf,
    /// The signer-daemon binary [default: next to this one].
    #[arg(long)]
    daemon_bin: Option<PathBuf>,
    /// A second signer-daemon binary (e.g. the build before an optimization)
    /// measured as its own row, durable audit, side by side with the first.
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// Our PKCS#11 module [default: libsigner_pkcs11.so next to this binary].
    #[arg(long)]
    pkcs11_module: Option<PathBuf>,
    /// Also measure the daemon serving the emulated card through a private
    /// pcscd + vpcd (`serve --token yubikey`); needs the environment of
    /// `tests/scripts/pcsc-sandbox.sh start` (bench.sh --pcsc sets it up; root).
    #[arg(long)]
    pcsc: bool,
    /// Take `ssh-agent`, `ssh-add`, `ssh-keygen` (and `ssh`, for the
    /// version) from this directory instead of `PATH`: a current OpenSSH
    /// built from source beside Debian's.
    #[arg(long)]
    openssh_dir: Option<PathBuf>,
    /// Only these rows (ids as in the JSON output), for development.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    PrimitiveP256,
    PrimitiveP384,
    OpenSslP256,
    EmulatedP256,
    EmulatedP384,
    Daemon,
    DaemonBaseline,
    DaemonTmpfs,
    DaemonTwoTokens,
    DaemonCardBound,
    DaemonCardBoundTwo,
    DaemonPcsc,
    SshAgent,
    SshAgentSystem,
    Notary,
    SoftHsm,
    OurPkcs11,
}

impl Target {
    const ALL: [Target; 17] = [
        Target::PrimitiveP256,
        Target::PrimitiveP384,
        Target::OpenSslP256,
        Target::EmulatedP256,
        Target::EmulatedP384,
        Target::Daemon,
        Target::DaemonBaseline,
        Target::DaemonTmpfs,
        Target::DaemonTwoTokens,
        Target::DaemonCardBound,
        Target::DaemonCardBoundTwo,
        Target::DaemonPcsc,
        Target::SshAgent,
        Target::SshAgentSystem,
        Target::Notary,
        Target::SoftHsm,
        Target::OurPkcs11,
    ];

    fn id(self) -> &'static str {
        match self {
            Target::PrimitiveP256 => "primitive-p256",
            Target::PrimitiveP384 => "primitive-p384",
            Target::OpenSslP256 => "openssl-p256",
            Target::EmulatedP256 => "emulated-inprocess-p256",
            Target::EmulatedP384 => "emulated-inprocess-p384",
            Target::Daemon => "daemon",
            Target::DaemonBaseline => "daemon-baseline",
            Target::DaemonTmpfs => "daemon-audit-tmpfs",
            Target::DaemonTwoTokens => "daemon-two-tokens",
            Target::DaemonCardBound => "daemon-card-bound",
            Target::DaemonCardBoundTwo => "daemon-card-bound-two-tokens",
            Target::DaemonPcsc => "daemon-pcsc",
            Target::SshAgent => "ssh-agent",
            Target::SshAgentSystem => "ssh-agent-path",
            Target::Notary => "notary-signer",
            Target::SoftHsm => "softhsm2-pkcs11",
            Target::OurPkcs11 => "signer-pkcs11",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Target::PrimitiveP256 => "RustCrypto p256 sign_prehash (1 thread)",
            Target::PrimitiveP384 => "RustCrypto p384 sign_prehash (1 thread)",
            Target::OpenSslP256 => "OpenSSL (system libcrypto) P-256 ECDSA_do_sign (1 thread)",
            Target::EmulatedP256 => "emulated token in-process, P-256",
            Target::EmulatedP384 => "emulated token in-process, P-384",
            Target::Daemon => "signer-daemon, audit durable on disk (default)",
            Target::DaemonBaseline => "signer-daemon --baseline-bin, audit durable on disk",
            Target::DaemonTmpfs => "signer-daemon, audit on tmpfs (NOT durable)",
            Target::DaemonTwoTokens => "signer-daemon, two emulated tokens, durable",
            Target::DaemonCardBound => {
                "signer-daemon, one token that takes 2 ms per signature (touch-always key, emulated touch after 2 ms), durable"
            }
            Target::DaemonCardBoundTwo => {
                "signer-daemon, two tokens that take 2 ms per signature each, durable"
            }
            Target::DaemonPcsc => {
                "signer-daemon --token yubikey: emulated card via pcscd+vpcd, durable"
            }
            Target::SshAgent => "OpenSSH ssh-agent (agent protocol)",
            Target::SshAgentSystem => {
                "OpenSSH ssh-agent from PATH (the system's; with --openssh-dir)"
            }
            Target::Notary => "notary-signer (gRPC, mutual TLS)",
            Target::SoftHsm => "SoftHSM2, PKCS#11 C_Sign CKM_ECDSA",
            Target::OurPkcs11 => "same PKCS#11 client through libsigner_pkcs11 -> daemon, durable",
        }
    }

    /// In-process rows run at one client only.
    fn single(self) -> bool {
        matches!(
            self,
            Target::PrimitiveP256
                | Target::PrimitiveP384
                | Target::OpenSslP256
                | Target::EmulatedP256
                | Target::EmulatedP384
        )
    }
}

struct Peers {
    daemon: Option<daemon::Daemon>,
    daemon_baseline: Option<daemon::Daemon>,
    daemon_tmpfs: Option<daemon::Daemon>,
    daemon_two: Option<daemon::Daemon>,
    daemon_card: Option<daemon::Daemon>,
    daemon_card_two: Option<daemon::Daemon>,
    daemon_pcsc: Option<daemon::Daemon>,
    bridge: Option<daemon::Bridge>,
    agent: Option<Arc<ssh_agent::Agent>>,
    /// The system's ssh-agent (`PATH`), beside the one of `--openssh-dir`.
    agent_path: Option<Arc<ssh_agent::Agent>>,
    notary: Option<Arc<notary::NotarySigner>>,
    softhsm: Option<Arc<pkcs11::Module>>,
    ours: Option<Arc<pkcs11::Module>>,
    daemon_pkcs11: Option<daemon::Daemon>,
}

/// The emulated touch of the card-bound rows' touch-always keys: each
/// signature waits this long, as a card's would.
const CARD_TOUCH: &str = "approve-after:2";

/// Set by the parent to the private SoftHSM2 token directory it made.
const SOFTHSM_DIR_ENV: &str = "SIGNER_BENCH_SOFTHSM_DIR";

fn main() {
    let args = Args::parse();
    // SoftHSM2 reads SOFTHSM2_CONF when it is loaded. Rather than change
    // this process's environment while threads run, the benchmark runs as a
    // child whose environment points at a private token directory.
    if std::env::var_os(SOFTHSM_DIR_ENV).is_none() {
        std::process::exit(match pkcs11::run_with_private_softhsm(SOFTHSM_DIR_ENV) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("signer-bench: {e}");
                1
            }
        });
    }
    match real_main(&args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("signer-bench: {e}");
            std::process::exit(1);
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn real_main(args: &Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail("tokio runtime", e))?;
    let wanted: Vec<Target> = Target::ALL
        .into_iter()
        .filter(|t| args.only.is_empty() || args.only.iter().any(|o| o == t.id()))
        .filter(|t| *t != Target::DaemonBaseline || args.baseline_bin.is_some())
        .filter(|t| *t != Target::DaemonPcsc || args.pcsc)
        .filter(|t| *t != Target::SshAgentSystem || args.openssh_dir.is_some())
        .collect();
    let bin = match &args.daemon_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .map_err(|e| fail("current_exe", e))?
            .with_file_name("signer-daemon"),
    };
    let dir = tempfile::Builder::new()
        .prefix("signer-bench.")
        .tempdir_in(&args.workdir)
        .map_err(|e| fail(format!("temp dir in {}", args.workdir.display()), e))?;
    let tmpfs_dir = tempfile::Builder::new()
        .prefix("signer-bench.")
        .tempdir_in(&args.tmpfs)
        .map_err(|e| fail(format!("temp dir in {}", args.tmpfs.display()), e))?;
    let load_before = loadavg();

    // Set-up of everything, before any measurement.
    let has = |t: Target| wanted.contains(&t);
    let mut peers = Peers {
        daemon: None,
        daemon_baseline: None,
        daemon_tmpfs: None,
        daemon_two: None,
        daemon_card: None,
        daemon_card_two: None,
        daemon_pcsc: None,
        bridge: None,
        agent: None,
        agent_path: None,
        notary: None,
        softhsm: None,
        ours: None,
        daemon_pkcs11: None,
    };
    let mut cold_starts = Vec::new();
    let mut idle_rss = Vec::new();
    let token_a = daemon::make_token(&bin, dir.path(), "token-a", 20000001)?;
    let token_b = daemon::make_token(&bin, dir.path(), "token-b", 20000002)?;
    let token_c = daemon::make_token(&bin, dir.path(), "token-c", 20000003)?;
    let token_d = daemon::make_token(&bin, dir.path(), "token-d", 20000004)?;
    rt.block_on(async {
        if has(Target::Daemon) {
            let d = daemon::Daemon::start(
                &bin,
                dir.path(),
                "durable",
                &[daemon::emulated(&token_a)],
                &dir.path().join("audit.jsonl"),
                &[], &[],)
            .await?;
            cold_starts.push(d.cold_start);
            tokio::time::sleep(Duration::from_millis(300)).await;
            idle_rss.push(d.rss_kib()?);
            peers.daemon = Some(d);
        }
        if let (true, Some(baseline)) = (has(Target::DaemonBaseline), &args.baseline_bin) {
            // Made by the baseline binary itself: an older build may not read
            // a newer build's state file.
            let token = daemon::make_token(baseline, dir.path(), "token-e", 20000005)?;
            peers.daemon_baseline = Some(
                daemon::Daemon::start(
                    baseline,
                    dir.path(),
                    "baseline",
                    &[daemon::emulated(&token)],
                    &dir.path().join("audit-baseline.jsonl"),
                    &[], &[],)
                .await?,
            );
        }
        if has(Target::DaemonTmpfs) {
            peers.daemon_tmpfs = Some(
                daemon::Daemon::start(
                    &bin,
                    dir.path(),
                    "tmpfs",
                    &[daemon::emulated(&token_b)],
                    &tmpfs_dir.path().join("audit.jsonl"),
                    &[], &[],)
                .await?,
            );
        }
        if has(Target::DaemonTwoTokens) {
            peers.daemon_two = Some(
                daemon::Daemon::start(
                    &bin,
                    dir.path(),
                    "two",
                    &[daemon::emulated(&token_c), daemon::emulated(&token_d)],
                    &dir.path().join("audit-two.jsonl"),
                    &[], &[],)
                .await?,
            );
        }
        // The card-bound rows: tokens whose touch-always key waits 2 ms for
        // the emulated touch (no CPU), so the tokens, not the machine's
        // cores, limit throughput: what two tokens give over one shows
        // whether the workers serialize.
        let card_touch = [("SIGNER_EMULATED_TOUCH", CARD_TOUCH)];
        if has(Target::DaemonCardBound) {
            let t = daemon::make_token_with_touch(&bin, dir.path(), "token-g", 20000008, "always")?;
            peers.daemon_card = Some(
                daemon::Daemon::start(
                    &bin,
                    dir.path(),
                    "card",
                    &[daemon::emulated(&t)],
                    &dir.path().join("audit-card.jsonl"),
                    &[],
                    &card_touch,
                )
                .await?,
            );
        }
        if has(Target::DaemonCardBoundTwo) {
            let g = daemon::make_token_with_touch(&bin, dir.path(), "token-h", 20000009, "always")?;
            let h = daemon::make_token_with_touch(&bin, dir.path(), "token-i", 20000010, "always")?;
            peers.daemon_card_two = Some(
                daemon::Daemon::start(
                    &bin,
                    dir.path(),
                    "card-two",
                    &[daemon::emulated(&g), daemon::emulated(&h)],
                    &dir.path().join("audit-card-two.jsonl"),
                    &[],
                    &card_touch,
                )
                .await?,
            );
        }
        if has(Target::DaemonPcsc) {
            for var in ["PCSCLITE_CSOCK_NAME", "SIGNER_VPCD"] {
                if std::env::var_os(var).is_none() {
                    return Err(Failure(format!(
                        "--pcsc needs a private pcscd ({var} is not set): run tests/scripts/bench.sh --pcsc as root"
                    )));
                }
            }
            let state = daemon::make_token(&bin, dir.path(), "token-pcsc", 20000007)?;
            peers.bridge = Some(daemon::Bridge::start(
                &bin,
                &state,
                &dir.path().join("emulate-card.log"),
            )?);
            peers.daemon_pcsc = Some(
                daemon::Daemon::start(
                    &bin,
                    dir.path(),
                    "pcsc",
                    &["yubikey".to_string()],
                    &dir.path().join("audit-pcsc.jsonl"),
                    &[], &[],)
                .await?,
            );
        }
        if has(Target::Notary) {
            peers.notary = Some(Arc::new(notary::NotarySigner::start(dir.path()).await?));
        }
        Ok::<_, Failure>(())
    })?;
    if has(Target::SshAgent) {
        peers.agent = Some(Arc::new(ssh_agent::Agent::start(
            dir.path(),
            args.openssh_dir.as_deref(),
        )?));
    }
    if has(Target::SshAgentSystem) {
        let sub = dir.path().join("ssh-agent-path");
        std::fs::create_dir(&sub).map_err(|e| fail("creating the second agent's directory", e))?;
        peers.agent_path = Some(Arc::new(ssh_agent::Agent::start(&sub, None)?));
    }
    if has(Target::SoftHsm) {
        pkcs11::softhsm_init_token()?;
        peers.softhsm = Some(Arc::new(pkcs11::Module::softhsm()?));
    }

    if has(Target::OurPkcs11) {
        // The module reads SIGNER_SOCKET (set by the parent process) at
        // C_Initialize: serve a daemon on exactly that socket.
        let private = std::env::var_os(SOFTHSM_DIR_ENV)
            .map(PathBuf::from)
            .ok_or_else(|| Failure(format!("{SOFTHSM_DIR_ENV} is not set")))?;
        let token = daemon::make_token(&bin, dir.path(), "token-f", 20000006)?;
        let d = rt.block_on(daemon::Daemon::start(
            &bin,
            &private,
            pkcs11::PKCS11_DAEMON,
            &[daemon::emulated(&token)],
            &dir.path().join("audit-pkcs11.jsonl"),
            &[],
            &[],
        ))?;
        let module = match &args.pkcs11_module {
            Some(m) => m.clone(),
            None => bin.with_file_name("libsigner_pkcs11.so"),
        };
        peers.ours = Some(Arc::new(pkcs11::Module::existing(&module).map_err(|e| {
            Failure(format!(
                "{e} (build it: cargo build --release -p signer-pkcs11; or --pkcs11-module PATH)"
            ))
        })?));
        peers.daemon_pkcs11 = Some(d);
    }

    // Measurements: in every repetition, every row at every level.
    let mut results: BTreeMap<(Target, usize), Vec<Run>> = BTreeMap::new();
    // The fdatasync floor is sampled in every repetition, so that it sees
    // the same disk load as the durable rows.
    let mut fsync = Vec::new();
    // Where each daemon row's time went (per thread group), over every repetition.
    let mut profiles: BTreeMap<(Target, usize), procstat::Profile> = BTreeMap::new();
    for rep in 0..args.reps {
        fsync.extend(local::fdatasync(dir.path(), 100)?);
        for &t in &wanted {
            let levels: Vec<usize> = if t.single() {
                vec![1]
            } else {
                args.levels.clone()
            };
            for &conc in &levels {
                let (run, verify) = measure(
                    &rt,
                    &peers,
                    dir.path(),
                    t,
                    conc,
                    args.requests,
                    &mut profiles,
                )?;
                run.verify_all(t.id(), verify)?;
                if !args.json {
                    eprintln!(
                        "rep {}/{} {:<28} conc {:>3}: {:>9.0}/s p50 {:>7.0} µs p99 {:>7.0} µs",
                        rep + 1,
                        args.reps,
                        t.id(),
                        conc,
                        run.throughput(),
                        run.percentile_us(50.0),
                        run.percentile_us(99.0)
                    );
                }
                results.entry((t, conc)).or_default().push(Run {
                    signatures: Vec::new(),
                    ..run
                });
            }
        }
    }
    let rss_after = match &peers.daemon {
        Some(d) => Some(d.rss_kib()?),
        None => None,
    };
    let load_after = loadavg();
    let mut audit_lines = None;
    if let Some(d) = &peers.daemon {
        audit_lines = Some(
            std::fs::read_to_string(&d.audit_log)
                .map_err(|e| fail("reading the audit log", e))?
                .lines()
                .count(),
        );
    }
    // APDUs the card answered over the whole PC/SC row (start-up, idle
    // polls and every signature), per signature.
    peers.daemon_pcsc.take();
    let pcsc_apdus = match peers.bridge.take() {
        Some(b) => {
            let apdus = b.stop()?;
            let sigs: usize = results
                .iter()
                .filter(|((t, _), _)| *t == Target::DaemonPcsc)
                .map(|(_, runs)| runs.iter().map(|r| r.latencies.len()).sum::<usize>())
                .sum();
            Some((apdus, sigs))
        }
        None => None,
    };
    drop(peers);

    let mut report = Report::new(
        args,
        &results,
        &fsync,
        &cold_starts,
        &idle_rss,
        rss_after,
        audit_lines,
        pcsc_apdus,
        (load_before, load_after),
        profiles,
    );
    report.peers = peer_versions(args);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.json()).map_err(|e| fail("json", e))?
        );
    } else {
        report.print();
    }
    Ok(())
}

fn measure(
    rt: &tokio::runtime::Runtime,
    peers: &Peers,
    dir: &std::path::Path,
    t: Target,
    conc: usize,
    total: usize,
    profiles: &mut BTreeMap<(Target, usize), procstat::Profile>,
) -> Result<(Run, Verifier)> {
    let missing = || Failure(format!("{} was not set up", t.id()));
    Ok(match t {
        Target::PrimitiveP256 => local::primitive_p256(total)?,
        Target::PrimitiveP384 => local::primitive_p384(total)?,
        Target::OpenSslP256 => local::openssl_p256(total)?,
        Target::EmulatedP256 => local::emulated(dir, Algorithm::EccP256, total)?,
        Target::EmulatedP384 => local::emulated(dir, Algorithm::EccP384, total)?,
        Target::Daemon
        | Target::DaemonBaseline
        | Target::DaemonTmpfs
        | Target::DaemonTwoTokens
        | Target::DaemonCardBound
        | Target::DaemonCardBoundTwo
        | Target::DaemonPcsc => {
            let d = match t {
                Target::DaemonCardBound => &peers.daemon_card,
                Target::DaemonCardBoundTwo => &peers.daemon_card_two,
                Target::Daemon => &peers.daemon,
                Target::DaemonBaseline => &peers.daemon_baseline,
                Target::DaemonPcsc => &peers.daemon_pcsc,
                Target::DaemonTmpfs => &peers.daemon_tmpfs,
                _ => &peers.daemon_two,
            }
            .as_ref()
            .ok_or_else(missing)?;
            let keys: Arc<Vec<pb::Key>> = Arc::new(d.keys.clone());
            let sign_keys = keys.clone();
            let pid = d.pid().to_string();
            let (daemon_before, client_before, busy_before) = (
                procstat::Snapshot::of(&pid),
                procstat::Snapshot::of("self"),
                procstat::machine_busy(),
            );
            let run = rt.block_on(run_tasks(
                conc,
                total,
                |_| d.connect(),
                move |mut c: signer_client::Client, i| {
                    let key = daemon::key_ref(&sign_keys[i % sign_keys.len()]);
                    async move {
                        let r = c
                            .sign_unary(
                                key,
                                pb::HashAlgorithm::Sha256,
                                digest(i).to_vec(),
                                pb::SignatureFormat::Der,
                            )
                            .await
                            .map(|r| r.signature)
                            .map_err(|e| fail("daemon Sign", e));
                        (c, r)
                    }
                },
            ))?;
            let (daemon_after, client_after, busy_after) = (
                procstat::Snapshot::of(&pid),
                procstat::Snapshot::of("self"),
                procstat::machine_busy(),
            );
            profiles.entry((t, conc)).or_default().add(
                run.latencies.len(),
                run.elapsed,
                procstat::usage(&daemon_before, &daemon_after),
                procstat::total(&client_before, &client_after),
                busy_after.saturating_sub(busy_before),
            );
            let verify = move |i: usize, der: &[u8]| {
                signer_client::verify(
                    &keys[i % keys.len()],
                    pb::HashAlgorithm::Sha256,
                    &digest(i),
                    der,
                )
                .map(|_| ())
                .map_err(|e| e.to_string())
            };
            (run, Box::new(verify))
        }
        Target::SshAgent | Target::SshAgentSystem => {
            let a = if t == Target::SshAgent {
                peers.agent.clone()
            } else {
                peers.agent_path.clone()
            }
            .ok_or_else(missing)?;
            let run = run_threads(conc, total, |_| a.connect(), |c, i| a.sign(c, &digest(i)))?;
            (
                run,
                Box::new(move |i, sig: &[u8]| a.verify(&digest(i), sig)),
            )
        }
        Target::Notary => {
            let n = peers.notary.clone().ok_or_else(missing)?;
            let signer = n.clone();
            let run = rt.block_on(run_tasks(
                conc,
                total,
                |_| n.connect(),
                move |c, i| {
                    let signer = signer.clone();
                    async move {
                        let r = signer.sign(c.clone(), &digest(i)).await;
                        (c, r)
                    }
                },
            ))?;
            (
                run,
                Box::new(move |i, sig: &[u8]| n.verify(&digest(i), sig)),
            )
        }
        Target::SoftHsm | Target::OurPkcs11 => {
            let m = if t == Target::SoftHsm {
                peers.softhsm.clone()
            } else {
                peers.ours.clone()
            }
            .ok_or_else(missing)?;
            let run = run_threads(conc, total, |_| m.session(), |s, i| m.sign(s, &digest(i)))?;
            (
                run,
                Box::new(move |i, sig: &[u8]| m.verify(&digest(i), sig)),
            )
        }
    })
}

/// One row at one level over the repetitions.
struct Cell {
    median: f64,
    min: f64,
    max: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Cell {
    fn of(runs: &[Run]) -> Cell {
        let mut by: Vec<&Run> = runs.iter().collect();
        by.sort_by(|a, b| a.throughput().total_cmp(&b.throughput()));
        let mid = by[by.len() / 2];
        Cell {
            median: mid.throughput(),
            min: by[0].throughput(),
            max: by[by.len() - 1].throughput(),
            p50_us: mid.percentile_us(50.0),
            p99_us: mid.percentile_us(99.0),
        }
    }
}

struct Report {
    cells: BTreeMap<(Target, usize), Cell>,
    levels: Vec<usize>,
    requests: usize,
    reps: usize,
    fsync_p50_us: f64,
    fsync_p99_us: f64,
    cold_start_ms: Option<f64>,
    idle_rss_kib: Option<u64>,
    rss_after_kib: Option<u64>,
    audit_lines: Option<usize>,
    pcsc_apdus: Option<(u64, usize)>,
    load: (String, String),
    profiles: BTreeMap<(Target, usize), procstat::Profile>,
    /// (peer, version) of the peers this run measured against.
    peers: Vec<(String, String)>,
}

/// The first line a command prints (stdout, else stderr), trimmed; `None`
/// when it cannot run or prints nothing.
fn first_line(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    let line = String::from_utf8_lossy(&text)
        .lines()
        .next()?
        .trim()
        .to_string();
    (!line.is_empty()).then_some(line)
}

/// The versions of the peers (and of pcscd) this run measured against, so
/// that a table says which releases it compares with.
fn peer_versions(args: &Args) -> Vec<(String, String)> {
    let debian = |package: &str| {
        first_line("dpkg-query", &["-W", "-f", "${Version}", package]).map_or_else(
            || "unknown".to_string(),
            |v| format!("Debian package {package} {v}"),
        )
    };
    let mut out = vec![
        (
            "ssh-agent".to_string(),
            ssh_agent::version(args.openssh_dir.as_deref()),
        ),
        // notary-signer prints an empty version: the package's is the one.
        ("notary-signer".to_string(), debian("notary")),
        (
            "SoftHSM2".to_string(),
            first_line("softhsm2-util", &["--version"]).unwrap_or_else(|| "unknown".into()),
        ),
    ];
    if args.openssh_dir.is_some() {
        out.push(("ssh-agent from PATH".to_string(), ssh_agent::version(None)));
    }
    if args.pcsc {
        out.push(("pcscd".to_string(), debian("pcscd")));
    }
    out
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return 0.0;
    }
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize].as_secs_f64() * 1e6
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn new(
        args: &Args,
        results: &BTreeMap<(Target, usize), Vec<Run>>,
        fsync: &[Duration],
        cold: &[Duration],
        idle: &[u64],
        rss_after: Option<u64>,
        audit_lines: Option<usize>,
        pcsc_apdus: Option<(u64, usize)>,
        load: (String, String),
        profiles: BTreeMap<(Target, usize), procstat::Profile>,
    ) -> Report {
        Report {
            cells: results.iter().map(|(k, v)| (*k, Cell::of(v))).collect(),
            levels: args.levels.clone(),
            requests: args.requests,
            reps: args.reps,
            fsync_p50_us: pct(fsync, 50.0),
            fsync_p99_us: pct(fsync, 99.0),
            cold_start_ms: cold.first().map(|d| d.as_secs_f64() * 1e3),
            idle_rss_kib: idle.first().copied(),
            rss_after_kib: rss_after,
            audit_lines,
            pcsc_apdus,
            load,
            profiles,
            peers: Vec::new(),
        }
    }

    /// RustCrypto's and OpenSSL's P-256 signatures/s, same run.
    fn primitive_vs_openssl(&self) -> Option<(f64, f64)> {
        let rc = self.cells.get(&(Target::PrimitiveP256, 1))?;
        let os = self.cells.get(&(Target::OpenSslP256, 1))?;
        Some((rc.median, os.median))
    }

    fn ratio(&self, t: Target, conc: usize) -> Option<f64> {
        let base = self.cells.get(&(Target::SshAgent, conc))?;
        let c = self.cells.get(&(t, conc))?;
        Some(c.median / base.median)
    }

    /// The share of a core the token workers of `t` at `conc` clients were
    /// busy (from the profile).
    fn token_busy(&self, t: Target, conc: usize) -> Option<f64> {
        let p = self.profiles.get(&(t, conc))?;
        let cpu: Duration = p
            .daemon
            .iter()
            .filter(|(g, _)| g.starts_with("token worker"))
            .map(|(_, u)| u.cpu)
            .sum();
        Some(p.share(cpu))
    }

    /// The targets: (name, measured, pass), then lines of
    /// information that explain them (pass `None`).
    fn targets(&self) -> Vec<(String, String, Option<bool>)> {
        let mut out = Vec::new();
        let mut info: Vec<(String, String)> = Vec::new();
        let get = |t, c| self.cells.get(&(t, c));
        if let (Some(d), Some(s)) = (get(Target::Daemon, 8), get(Target::SshAgent, 8)) {
            let r = d.median / s.median;
            out.push((
                "conc 8, durable: daemon >= 2x ssh-agent".into(),
                format!("{r:.2}x ({:.0}/s vs {:.0}/s)", d.median, s.median),
                r >= 2.0,
            ));
        }
        if let (Some(d), Some(s)) = (get(Target::Daemon, 1), get(Target::SshAgent, 1)) {
            let bound = s.p50_us + self.fsync_p50_us;
            out.push((
                "conc 1, durable: daemon p50 <= ssh-agent p50 + one fdatasync".into(),
                format!(
                    "{:.0} µs vs {:.0} + {:.0} = {bound:.0} µs",
                    d.p50_us, s.p50_us, self.fsync_p50_us
                ),
                d.p50_us <= bound,
            ));
        }
        let mut all = true;
        let mut text = Vec::new();
        for &c in &self.levels {
            if let (Some(d), Some(n)) = (get(Target::Daemon, c), get(Target::Notary, c)) {
                all &= d.median >= n.median;
                text.push(format!("{c}: {:.2}x", d.median / n.median));
            }
        }
        if !text.is_empty() {
            out.push((
                "daemon >= notary-signer at every level".into(),
                text.join(", "),
                all,
            ));
        }
        // notary-signer writes nothing durable per request: the same daemon
        // with its audit line on tmpfs, and what the durable line costs.
        let tmpfs: Vec<String> = self
            .levels
            .iter()
            .filter_map(|&c| {
                let (d, n) = (get(Target::DaemonTmpfs, c)?, get(Target::Notary, c)?);
                Some(format!("{c}: {:.2}x", d.median / n.median))
            })
            .collect();
        if !tmpfs.is_empty() {
            info.push((
                "daemon with its audit log on tmpfs (NOT durable) vs notary-signer".into(),
                tmpfs.join(", "),
            ));
        }
        if let (Some(d), Some(t), Some(n)) = (
            get(Target::Daemon, 1),
            get(Target::DaemonTmpfs, 1),
            get(Target::Notary, 1),
        ) {
            info.push((
                "conc 1: what the durable line costs, against notary-signer".into(),
                format!(
                    "daemon p50 {:.0} µs durable, {:.0} µs on tmpfs ({:.0} µs more; one fdatasync {:.0} µs); notary-signer p50 {:.0} µs (the daemon on tmpfs + one fdatasync = {:.0} µs)",
                    d.p50_us,
                    t.p50_us,
                    d.p50_us - t.p50_us,
                    self.fsync_p50_us,
                    n.p50_us,
                    t.p50_us + self.fsync_p50_us
                ),
            ));
        }
        for &c in &self.levels {
            if c < 2 {
                continue;
            }
            if let (Some(two), Some(one)) =
                (get(Target::DaemonTwoTokens, c), get(Target::Daemon, c))
            {
                let r = two.median / one.median;
                let busy = self.token_busy(Target::Daemon, c).map_or(String::new(), |b| {
                    format!("; with one token its worker was busy {b:.2} of a core: not the bottleneck")
                });
                out.push((
                    format!("conc {c}: two tokens >= 1.7x one token"),
                    format!("{r:.2}x ({:.0}/s vs {:.0}/s{busy})", two.median, one.median),
                    r >= 1.7,
                ));
            }
        }
        for &c in &self.levels {
            if c < 2 {
                continue;
            }
            if let (Some(two), Some(one)) = (
                get(Target::DaemonCardBoundTwo, c),
                get(Target::DaemonCardBound, c),
            ) {
                let r = two.median / one.median;
                let busy = self
                    .token_busy(Target::DaemonCardBound, c)
                    .map_or(String::new(), |b| {
                        format!("; one token's worker busy {b:.2}")
                    });
                out.push((
                    format!("conc {c}: two tokens >= 1.7x one token, tokens at 2 ms/signature"),
                    format!("{r:.2}x ({:.0}/s vs {:.0}/s{busy})", two.median, one.median),
                    r >= 1.7,
                ));
            }
        }
        if let Some(d) = get(Target::Daemon, 64) {
            out.push((
                "conc 64: daemon p99 <= 3x p50".into(),
                format!("{:.0} µs vs 3 x {:.0} µs", d.p99_us, d.p50_us),
                d.p99_us <= 3.0 * d.p50_us,
            ));
        }
        if let Some((apdus, sigs)) = self.pcsc_apdus {
            let per = apdus as f64 / sigs.max(1) as f64;
            out.push((
                "PC/SC: one APDU per signature, PIN never (the count includes the daemon's start-up and idle polls)".into(),
                format!("{apdus} APDUs / {sigs} signatures = {per:.3}"),
                per <= 1.05,
            ));
        }
        if let Some(c) = self.cold_start_ms {
            out.push(("cold start < 20 ms".into(), format!("{c:.1} ms"), c < 20.0));
        }
        if let Some(r) = self.idle_rss_kib {
            out.push((
                "idle RSS < 16 MiB".into(),
                format!("{:.1} MiB", r as f64 / 1024.0),
                r < 16 * 1024,
            ));
        }
        out.into_iter()
            .map(|(n, m, ok)| (n, m, Some(ok)))
            .chain(info.into_iter().map(|(n, m)| (n, m, None)))
            .collect()
    }

    fn print(&self) {
        println!(
            "signer-bench: {} requests per row and level, {} repetitions (median; min..max), {} cores, load avg before {} / after {}",
            self.requests,
            self.reps,
            std::thread::available_parallelism().map_or(1, |p| p.get()),
            self.load.0,
            self.load.1
        );
        println!(
            "client-side work: none in the timed window; every signature of every row verified afterwards (RustCrypto)"
        );
        println!(
            "emulated token's P-256 signatures (this build of signer-lib; bench.sh builds the daemon alike): {}",
            signer_lib::emulator::P256_SIGNING_BACKEND
        );
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|(p, v)| format!("{p}: {v}"))
            .collect();
        println!("peers: {}", peers.join("; "));
        println!();
        println!("| path | clients | sig/s (median) | min..max | p50 µs | p99 µs | × ssh-agent |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for ((t, c), cell) in &self.cells {
            println!(
                "| {} | {} | {:.0} | {:.0}..{:.0} | {:.0} | {:.0} | {} |",
                t.label(),
                c,
                cell.median,
                cell.min,
                cell.max,
                cell.p50_us,
                cell.p99_us,
                self.ratio(*t, *c)
                    .map_or("–".to_string(), |r| format!("{r:.2}"))
            );
        }
        println!();
        println!(
            "fdatasync of one audit line on the audit log's filesystem: p50 {:.0} µs, p99 {:.0} µs",
            self.fsync_p50_us, self.fsync_p99_us
        );
        if let Some((rc, os)) = self.primitive_vs_openssl() {
            println!(
                "ECDSA P-256 primitive, one thread: RustCrypto p256 {rc:.0}/s ({:.0} µs) vs OpenSSL {os:.0}/s ({:.0} µs): OpenSSL {:.2}x faster",
                1e6 / rc,
                1e6 / os,
                os / rc
            );
        }
        if let Some(c) = self.cold_start_ms {
            println!("daemon cold start (spawn to first answered ListKeys): {c:.1} ms");
        }
        if let (Some(i), Some(a)) = (self.idle_rss_kib, self.rss_after_kib) {
            println!(
                "daemon RSS: idle {:.1} MiB, after the load {:.1} MiB",
                i as f64 / 1024.0,
                a as f64 / 1024.0
            );
        }
        if let Some(n) = self.audit_lines {
            println!("audit lines written by the durable daemon: {n}");
        }
        self.print_profiles();
        println!();
        println!("| target | measured | met |");
        println!("|---|---|---|");
        for (name, measured, ok) in self.targets() {
            println!(
                "| {name} | {measured} | {} |",
                match ok {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "(information)",
                }
            );
        }
    }

    /// Where each daemon row's time went: CPU per request by thread group,
    /// run-queue wait, context switches; the client's CPU; the machine's
    /// busy cores.
    fn print_profiles(&self) {
        if self.profiles.is_empty() {
            return;
        }
        println!();
        println!(
            "Where the time went (all repetitions; per request; from /proc/PID/task/*/schedstat and status): CPU µs, run-queue wait µs (runnable, no free core), context switches; busy = that group's CPU / wall time (1.00 = one core)"
        );
        println!();
        println!(
            "| path | clients | thread group | CPU µs/req | run-queue wait µs/req | switches/req | busy |"
        );
        println!("|---|---:|---|---:|---:|---:|---:|");
        for ((t, c), p) in &self.profiles {
            let mut total = procstat::Usage::default();
            for (g, u) in &p.daemon {
                total.cpu += u.cpu;
                total.wait += u.wait;
                total.switches += u.switches;
                println!(
                    "| {} | {c} | {g} | {:.0} | {:.0} | {:.2} | {:.2} |",
                    t.id(),
                    p.per_request_us(u.cpu),
                    p.per_request_us(u.wait),
                    p.per_request(u.switches),
                    p.share(u.cpu)
                );
            }
            println!(
                "| {} | {c} | **daemon total** | {:.0} | {:.0} | {:.2} | {:.2} |",
                t.id(),
                p.per_request_us(total.cpu),
                p.per_request_us(total.wait),
                p.per_request(total.switches),
                p.share(total.cpu)
            );
            println!(
                "| {} | {c} | benchmark client (signer-client) | {:.0} | {:.0} | {:.2} | {:.2} |",
                t.id(),
                p.per_request_us(p.client.cpu),
                p.per_request_us(p.client.wait),
                p.per_request(p.client.switches),
                p.share(p.client.cpu)
            );
            println!(
                "| {} | {c} | whole machine (/proc/stat) | {:.0} | | | {:.2} |",
                t.id(),
                p.per_request_us(p.machine_busy),
                p.share(p.machine_busy)
            );
        }
    }

    fn json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .cells
            .iter()
            .map(|((t, c), cell)| {
                serde_json::json!({
                    "id": t.id(),
                    "label": t.label(),
                    "clients": c,
                    "throughput_median": cell.median,
                    "throughput_min": cell.min,
                    "throughput_max": cell.max,
                    "p50_us": cell.p50_us,
                    "p99_us": cell.p99_us,
                    "ratio_vs_ssh_agent": self.ratio(*t, *c),
                })
            })
            .collect();
        let profiles: Vec<serde_json::Value> = self
            .profiles
            .iter()
            .map(|((t, c), p)| {
                let groups: serde_json::Map<String, serde_json::Value> = p
                    .daemon
                    .iter()
                    .map(|(g, u)| {
                        (
                            g.clone(),
                            serde_json::json!({
                                "cpu_us_per_request": p.per_request_us(u.cpu),
                                "runqueue_wait_us_per_request": p.per_request_us(u.wait),
                                "context_switches_per_request": p.per_request(u.switches),
                                "busy_cores": p.share(u.cpu),
                            }),
                        )
                    })
                    .collect();
                serde_json::json!({
                    "id": t.id(),
                    "clients": c,
                    "requests": p.requests,
                    "daemon_threads": groups,
                    "client_cpu_us_per_request": p.per_request_us(p.client.cpu),
                    "machine_busy_cores": p.share(p.machine_busy),
                })
            })
            .collect();
        let targets: Vec<serde_json::Value> = self
            .targets()
            .into_iter()
            .map(|(n, m, ok)| serde_json::json!({"target": n, "measured": m, "met": ok}))
            .collect();
        serde_json::json!({
            "requests": self.requests,
            "repetitions": self.reps,
            "verification": "none in the timed window; every signature verified afterwards",
            "emulated_p256_signing": signer_lib::emulator::P256_SIGNING_BACKEND,
            "peer_versions": self.peers.iter().cloned().collect::<BTreeMap<String, String>>(),
            "load_average": {"before": self.load.0, "after": self.load.1},
            "rows": rows,
            "fdatasync_us": {"p50": self.fsync_p50_us, "p99": self.fsync_p99_us},
            "daemon_cold_start_ms": self.cold_start_ms,
            "daemon_idle_rss_kib": self.idle_rss_kib,
            "daemon_rss_after_load_kib": self.rss_after_kib,
            "audit_lines": self.audit_lines,
            "pcsc_apdus": self.pcsc_apdus.map(|(a, s)| serde_json::json!({"apdus": a, "signatures": s})),
            "targets": targets,
            "profiles": profiles,
            "p256_rustcrypto_vs_openssl": self.primitive_vs_openssl().map(|(rc, os)| serde_json::json!({"rustcrypto_per_s": rc, "openssl_per_s": os, "openssl_speedup": os / rc})),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(median: f64, p50_us: f64) -> Cell {
        Cell {
            median,
            min: median,
            max: median,
            p50_us,
            p99_us: p50_us * 2.0,
        }
    }

    /// The line of `targets` whose name starts with `name`.
    fn line<'a>(
        targets: &'a [(String, String, Option<bool>)],
        name: &str,
    ) -> &'a (String, String, Option<bool>) {
        targets
            .iter()
            .find(|(n, _, _)| n.starts_with(name))
            .unwrap_or_else(|| panic!("no line {name:?} in {targets:?}"))
    }

    fn report(cells: &[(Target, usize, f64, f64)]) -> Report {
        Report {
            cells: cells
                .iter()
                .map(|&(t, c, m, p)| ((t, c), cell(m, p)))
                .collect(),
            levels: vec![1, 8],
            requests: 10,
            reps: 1,
            fsync_p50_us: 70.0,
            fsync_p99_us: 400.0,
            cold_start_ms: None,
            idle_rss_kib: None,
            rss_after_kib: None,
            audit_lines: None,
            pcsc_apdus: None,
            load: (String::new(), String::new()),
            profiles: BTreeMap::new(),
            peers: Vec::new(),
        }
    }

    /// The notary-signer target is judged on the durable daemon only; the
    /// tmpfs comparison and the cost of the durable line are information,
    /// never a pass.
    #[test]
    fn notary_target_is_the_durable_row_and_the_explanations_are_information() {
        let r = report(&[
            (Target::Daemon, 1, 3000.0, 330.0),
            (Target::Daemon, 8, 9000.0, 800.0),
            (Target::DaemonTmpfs, 1, 6000.0, 160.0),
            (Target::DaemonTmpfs, 8, 14000.0, 530.0),
            (Target::Notary, 1, 4500.0, 210.0),
            (Target::Notary, 8, 8000.0, 900.0),
        ]);
        let t = r.targets();
        let notary = line(&t, "daemon >= notary-signer at every level");
        assert_eq!(notary.1, "1: 0.67x, 8: 1.12x");
        assert_eq!(notary.2, Some(false));
        let tmpfs = line(&t, "daemon with its audit log on tmpfs");
        assert_eq!(tmpfs.1, "1: 1.33x, 8: 1.75x");
        assert_eq!(tmpfs.2, None);
        let cost = line(&t, "conc 1: what the durable line costs");
        assert!(
            cost.1.contains("170 µs more; one fdatasync 70 µs"),
            "{}",
            cost.1
        );
        assert!(cost.1.contains("= 230 µs"), "{}", cost.1);
        assert_eq!(cost.2, None);
        // Information comes after every target.
        let first_info = t.iter().position(|x| x.2.is_none()).unwrap();
        assert!(t[first_info..].iter().all(|x| x.2.is_none()));
    }

    /// With the durable daemon ahead at every level the target is met.
    #[test]
    fn notary_target_met_when_ahead_everywhere() {
        let r = report(&[
            (Target::Daemon, 1, 5000.0, 190.0),
            (Target::Daemon, 8, 9000.0, 800.0),
            (Target::Notary, 1, 4500.0, 210.0),
            (Target::Notary, 8, 8000.0, 900.0),
        ]);
        let t = r.targets();
        let notary = line(&t, "daemon >= notary-signer at every level");
        assert_eq!(notary.2, Some(true));
        assert!(
            !t.iter()
                .any(|(n, _, _)| n.starts_with("daemon with its audit log on tmpfs"))
        );
    }

    #[test]
    fn first_line_reads_stdout_then_stderr() {
        assert_eq!(
            first_line("sh", &["-c", "echo one; echo two"]).as_deref(),
            Some("one")
        );
        assert_eq!(
            first_line("sh", &["-c", "echo err >&2"]).as_deref(),
            Some("err")
        );
        assert_eq!(first_line("sh", &["-c", "true"]), None);
        assert_eq!(first_line("/nonexistent/program", &[]), None);
    }
}
