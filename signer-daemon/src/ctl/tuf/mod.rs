//! `signerctl tuf`: a publisher's TUF root ceremony with keys on tokens,
//! signed through the daemon (so its policy and audit log apply).
//!
//! ```text
//! signerctl tuf key    --key KEYID|SLOT [--token SERIAL] [-o KEY.json]
//! signerctl tuf init   --root-key KEY.json... [--threshold N] [--targets-key KEY.json]...
//!                      [--snapshot-key KEY.json]... [--timestamp-key KEY.json]...
//!                      [--expires-in DAYS | --expires DATE] [-o ROOT.json]
//! signerctl tuf sign   --key KEYID|SLOT [--token SERIAL] FILE [-o OUT|-] [--root ROOT.json] [--force]
//! signerctl tuf verify FILE [--root ROOT.json] [--json]
//! signerctl tuf rotate ROOT.json [--role ROLE] [--add-key KEY.json]... [--remove-key KEYID]...
//!                      [--threshold N] [--expires-in DAYS | --expires DATE] [-o NEXT.json]
//! signerctl tuf merge  FILE FILE... -o OUT
//! ```
//!
//! The TUF logic is plain data without I/O, in its own files:
//! [`canonical`] (OLPC canonical JSON as securesystemslib writes it),
//! [`key`] (TUF keys of token keys, key ids, RustCrypto verification),
//! [`metadata`] (the file read and written back losing nothing), [`sign`],
//! [`verify`] and [`rotate`]. This file is the command line: it reads and
//! writes files and asks the daemon through [`signer_client`].
//!
//! Exit codes: those of signerctl; a refused input is 2 (the file is left
//! as it was), and `verify` exits 7 when a threshold is not met.

pub mod canonical;
pub mod error;
pub mod key;
pub mod metadata;
pub mod rotate;
pub mod sign;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use signer_client::Client;
use signer_proto::v1 as pb;

use super::{Failure, KeyArgs, exit};
use error::TufError;
use key::{Scheme, TufKey};
use metadata::Metadata;

/// `tuf`: TUF metadata signed with token keys.
#[derive(Debug, Args)]
pub struct TufCommand {
    /// What to do.
    #[command(subcommand)]
    pub command: TufSub,
}

/// The `tuf` subcommands.
#[derive(Debug, Subcommand)]
pub enum TufSub {
    /// Print a token key as a TUF key (`{"keyid", "key"}`), to paste into a
    /// root or give to `init` and `rotate`.
    Key(KeyCmd),
    /// Write an unsigned version-1 root with the given keys.
    Init(InitCmd),
    /// Sign TUF metadata (root, targets, snapshot, timestamp) with a token
    /// key through the daemon: this key's signature is added or replaced.
    Sign(SignCmd),
    /// Check every signature against the root and each role's threshold
    /// (exit 0 only if every threshold is met).
    Verify(VerifyCmd),
    /// Write the next version of a root with another key set, unsigned:
    /// then sign it with a threshold of the previous root's keys (`sign
    /// --root PREVIOUS`) and of its own.
    Rotate(RotateCmd),
    /// Merge the signatures of copies of the same metadata (signed on
    /// different machines or tokens).
    Merge(MergeCmd),
}

/// `tuf key`
#[derive(Debug, Args)]
pub struct KeyCmd {
    /// The key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// Write the key here (default: standard output).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `tuf sign`
#[derive(Debug, Args)]
pub struct SignCmd {
    /// The key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// The metadata file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Write the signed metadata here (`-` for standard output); default:
    /// FILE itself, replaced atomically.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// The trusted root: for a root, the previous version (its root keys
    /// may sign the next one); for other roles, the root listing its keys.
    #[arg(long, value_name = "ROOT.json")]
    pub root: Option<PathBuf>,
    /// Sign even with a key the metadata does not list, or when it expired.
    #[arg(long)]
    pub force: bool,
}

/// `tuf verify`
#[derive(Debug, Args)]
pub struct VerifyCmd {
    /// The metadata file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The trusted root: required for targets, snapshot and timestamp; for
    /// a root, the previous version (then both its threshold and the new
    /// root's own must be met, and the version must follow).
    #[arg(long, value_name = "ROOT.json")]
    pub root: Option<PathBuf>,
    /// The report as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// Expiry arguments.
#[derive(Debug, Args, Clone)]
pub struct ExpiryArgs {
    /// Expire this many days from now.
    #[arg(long, value_name = "DAYS", conflicts_with = "expires")]
    pub expires_in: Option<u64>,
    /// Expire at this time (2030-01-01T00:00:00Z).
    #[arg(long, value_name = "DATE")]
    pub expires: Option<String>,
}

impl ExpiryArgs {
    fn time(&self, now: SystemTime) -> Result<Option<SystemTime>, Failure> {
        if let Some(days) = self.expires_in {
            return Ok(Some(now + Duration::from_secs(days.saturating_mul(86_400))));
        }
        match &self.expires {
            Some(s) => metadata::parse_expires(s).map(Some).map_err(|_| {
                Failure::usage(format!(
                    "--expires {s:?}: give a date like 2030-01-01T00:00:00Z"
                ))
            }),
            None => Ok(None),
        }
    }
}

/// `tuf init`
#[derive(Debug, Args)]
pub struct InitCmd {
    /// A root key (`signerctl tuf key` output); repeat for several.
    #[arg(long = "root-key", value_name = "KEY.json", required = true)]
    pub root_keys: Vec<PathBuf>,
    /// How many root keys must sign a root.
    #[arg(long, default_value_t = 1)]
    pub threshold: u64,
    /// A targets key (default: the root keys).
    #[arg(long = "targets-key", value_name = "KEY.json")]
    pub targets_keys: Vec<PathBuf>,
    /// A snapshot key (default: the root keys).
    #[arg(long = "snapshot-key", value_name = "KEY.json")]
    pub snapshot_keys: Vec<PathBuf>,
    /// A timestamp key (default: the root keys).
    #[arg(long = "timestamp-key", value_name = "KEY.json")]
    pub timestamp_keys: Vec<PathBuf>,
    /// Expiry (default: 365 days).
    #[command(flatten)]
    pub expiry: ExpiryArgs,
    /// Write `consistent_snapshot: false` (default true).
    #[arg(long)]
    pub no_consistent_snapshot: bool,
    /// Write the root here (default: standard output); an existing file is
    /// not replaced.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `tuf rotate`
#[derive(Debug, Args)]
pub struct RotateCmd {
    /// The current root (version N).
    #[arg(value_name = "ROOT.json")]
    pub previous: PathBuf,
    /// The role whose keys change.
    #[arg(long, default_value = "root")]
    pub role: String,
    /// Add this key (`signerctl tuf key` output) to the role.
    #[arg(long = "add-key", value_name = "KEY.json")]
    pub add: Vec<PathBuf>,
    /// Remove this key id from the role.
    #[arg(long = "remove-key", value_name = "KEYID")]
    pub remove: Vec<String>,
    /// The role's threshold in the new root (default: unchanged).
    #[arg(long)]
    pub threshold: Option<u64>,
    /// The new root's expiry (default: unchanged).
    #[command(flatten)]
    pub expiry: ExpiryArgs,
    /// Write the new root here (default: standard output); an existing
    /// file is not replaced.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `tuf merge`
#[derive(Debug, Args)]
pub struct MergeCmd {
    /// Copies of the same metadata; the first one's layout is kept.
    #[arg(value_name = "FILE", num_args = 2.., required = true)]
    pub files: Vec<PathBuf>,
    /// Write the merged file here (`-` for standard output).
    #[arg(short = 'o', long = "output", value_name = "OUT", required = true)]
    pub output: PathBuf,
}

/// Run a `tuf` command; `socket` and `timeout` for those that ask the daemon.
pub async fn run(socket: &Path, timeout: Duration, cmd: TufCommand) -> Result<i32, Failure> {
    match cmd.command {
        TufSub::Key(a) => {
            let mut client = super::connect(socket, timeout).await?;
            let (_, tuf_key) = token_key(&mut client, &a.key).await?;
            let out = key_file(&tuf_key)?;
            write_output(a.output.as_deref(), &out, false)?;
            Ok(exit::OK)
        }
        TufSub::Sign(a) => sign_file(socket, timeout, a).await,
        TufSub::Verify(a) => verify_file(a),
        TufSub::Init(a) => init_root(a),
        TufSub::Rotate(a) => rotate_root(a),
        TufSub::Merge(a) => merge_files(a),
    }
}

/// A refusal about `path`, which was left as it was.
fn refused(path: &Path, e: TufError) -> Failure {
    Failure::usage(format!(
        "{}: {e} ({} was not changed)",
        path.display(),
        path.display()
    ))
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))
}

fn read_metadata(path: &Path) -> Result<Metadata, Failure> {
    Metadata::parse(&read(path)?).map_err(|e| refused(path, e))
}

fn read_root(path: &Path) -> Result<Metadata, Failure> {
    let md = read_metadata(path)?;
    if md.role != metadata::Role::Root {
        return Err(Failure::usage(
            TufError::NotRoot {
                path: path.display().to_string(),
                role: md.role.to_string(),
            }
            .to_string(),
        ));
    }
    Ok(md)
}

fn read_key_file(path: &Path) -> Result<(String, TufKey), Failure> {
    rotate::parse_key_file(&read(path)?, &path.display().to_string())
        .map_err(|e| Failure::usage(e.to_string()))
}

/// Write `bytes` to `path` atomically, or to standard output for `-` or
/// no path; `new_file` refuses to replace an existing file.
fn write_output(path: Option<&Path>, bytes: &[u8], new_file: bool) -> Result<(), Failure> {
    match path {
        None => super::output::stdout(bytes),
        Some(p) if p == Path::new("-") => super::output::stdout(bytes),
        Some(p) if new_file => super::output::write_new_file_atomically(p, bytes),
        Some(p) => super::write_file_atomically(p, bytes),
    }
}

/// The daemon's key and its TUF form.
async fn token_key(client: &mut Client, key: &KeyArgs) -> Result<(pb::Key, TufKey), Failure> {
    let k = client.public_key(key.spec().key_ref()).await?;
    let scheme = signer_client::algorithm_of(&k)
        .and_then(Scheme::for_algorithm)
        .ok_or_else(|| {
            Failure::usage(format!(
                "key {} (algorithm {}) cannot sign TUF metadata: signerctl tuf signs with P-256, P-384 (ecdsa), Ed25519 (ed25519) and RSA (rsassa-pss-sha256) keys",
                k.key_id,
                signer_client::algorithm_of(&k)
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| k.algorithm.to_string())
            ))
        })?;
    let tuf_key = TufKey::from_spki(scheme, &k.public_key_der)
        .map_err(|e| Failure::internal(format!("the daemon's key {}: {e}", k.key_id)))?;
    Ok((k, tuf_key))
}

fn key_file(k: &TufKey) -> Result<Vec<u8>, Failure> {
    #[derive(serde::Serialize)]
    struct KeyFile<'a> {
        keyid: String,
        key: &'a serde_json::Value,
    }
    let value = k.to_value();
    let mut out = serde_json::to_vec_pretty(&KeyFile {
        keyid: k.keyid(),
        key: &value,
    })
    .map_err(|e| Failure::internal(format!("JSON: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

async fn sign_file(socket: &Path, timeout: Duration, a: SignCmd) -> Result<i32, Failure> {
    // Everything about the files before connecting.
    let md = read_metadata(&a.file)?;
    let trusted = a.root.as_deref().map(read_root).transpose()?;
    let file = a.file.display().to_string();
    let untouched = |f: Failure| Failure {
        message: format!("{} ({file} was not changed)", f.message),
        ..f
    };
    let mut client = super::connect(socket, timeout).await.map_err(untouched)?;
    let (daemon_key, tuf_key) = token_key(&mut client, &a.key).await.map_err(untouched)?;
    let now = SystemTime::now();
    let opts = sign::SignOptions {
        now,
        force: a.force,
        trusted_root: trusted.as_ref(),
    };
    let plan = sign::plan(&md, &tuf_key, &opts).map_err(|e| refused(&a.file, e))?;
    for n in &plan.notes {
        eprintln!("signerctl: note: {n}");
    }
    let signing = signing_of(&plan);
    // The signature is checked once, by `sign::apply`, against the TUF key
    // (the daemon's key) over the canonical bytes that are written.
    let key_ref = signer_client::KeySpec::KeyId(daemon_key.key_id.clone()).key_ref();
    let response = client
        .sign_with(key_ref, &signing, super::sign::print_touch_prompt)
        .await
        .map_err(|e| untouched(e.into()))?;
    let out = sign::apply(&md, &tuf_key, &plan, &response.signature).map_err(|e| {
        Failure::internal(format!(
            "{}: {e} ({} was not changed)",
            a.file.display(),
            a.file.display()
        ))
    })?;
    let target = a.output.clone().unwrap_or_else(|| a.file.clone());
    write_output(Some(&target), &out, false)?;
    eprintln!(
        "signed {} v{} with key {} (token {}, slot {}){}",
        md.role,
        md.version,
        plan.keyid,
        daemon_key.token_serial,
        daemon_key.slot,
        if target == Path::new("-") {
            String::new()
        } else {
            format!(": wrote {}", target.display())
        }
    );
    // Where the thresholds stand now (informational: `verify` decides).
    if let Ok(signed) = Metadata::parse(&out) {
        if let Ok(r) = verify::verify(&signed, trusted.as_ref(), now) {
            for c in &r.checks {
                eprintln!(
                    "  {} role by the keys of {}: {} of {} required valid signatures{}",
                    c.role,
                    c.by,
                    c.valid,
                    c.threshold,
                    if c.met { " (threshold met)" } else { "" }
                );
            }
        }
    }
    Ok(exit::OK)
}

/// The daemon request for a plan: ECDSA over the digest (DER, as TUF's
/// ecdsa signatures are), RSA-PSS or PKCS#1 v1.5 over the digest, Ed25519
/// over the canonical bytes themselves.
fn signing_of(plan: &sign::Plan) -> signer_client::Signing {
    use signer_client::{Payload, Signing};
    let hash = match plan.scheme.hash() {
        signer_lib::HashAlgorithm::Sha256 => pb::HashAlgorithm::Sha256,
        signer_lib::HashAlgorithm::Sha384 => pb::HashAlgorithm::Sha384,
        signer_lib::HashAlgorithm::Sha512 => pb::HashAlgorithm::Sha512,
    };
    let digest = Payload::Digest(plan.payload.clone());
    match plan.scheme {
        Scheme::P256 | Scheme::P384 => Signing::ecdsa(hash, digest, pb::SignatureFormat::Der),
        Scheme::Ed25519 => Signing::ed25519(plan.payload.clone()),
        Scheme::RsaPss(_) => Signing::rsa(hash, digest, pb::RsaPadding::Pss),
        Scheme::RsaPkcs1v15(_) => Signing::rsa(hash, digest, pb::RsaPadding::Pkcs1v15),
    }
}

fn verify_file(a: VerifyCmd) -> Result<i32, Failure> {
    let md = read_metadata(&a.file)?;
    let trusted = a.root.as_deref().map(read_root).transpose()?;
    let report = verify::verify(&md, trusted.as_ref(), SystemTime::now())
        .map_err(|e| Failure::usage(format!("{}: {e}", a.file.display())))?;
    if a.json {
        let mut out = serde_json::to_vec_pretty(&report)
            .map_err(|e| Failure::internal(format!("JSON: {e}")))?;
        out.push(b'\n');
        super::output::stdout(&out)?;
    } else {
        super::output::stdout(report.text().as_bytes())?;
    }
    Ok(if report.ok {
        exit::OK
    } else {
        exit::NOT_TRUSTED
    })
}

fn init_root(a: InitCmd) -> Result<i32, Failure> {
    let keys = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| read_key_file(p))
            .collect::<Result<Vec<_>, _>>()
    };
    let now = SystemTime::now();
    let expires = a
        .expiry
        .time(now)?
        .unwrap_or(now + Duration::from_secs(365 * 86_400));
    let spec = rotate::InitSpec {
        root: keys(&a.root_keys)?,
        threshold: a.threshold,
        targets: keys(&a.targets_keys)?,
        snapshot: keys(&a.snapshot_keys)?,
        timestamp: keys(&a.timestamp_keys)?,
        expires: Some(expires),
        consistent_snapshot: !a.no_consistent_snapshot,
    };
    let out = rotate::init(&spec).map_err(|e| Failure::usage(e.to_string()))?;
    write_output(a.output.as_deref(), &out, true)?;
    Ok(exit::OK)
}

fn rotate_root(a: RotateCmd) -> Result<i32, Failure> {
    let prev = read_root(&a.previous)?;
    let now = SystemTime::now();
    let r = rotate::Rotation {
        role: Some(a.role.clone()),
        add: a
            .add
            .iter()
            .map(|p| read_key_file(p))
            .collect::<Result<Vec<_>, _>>()?,
        remove: a.remove.clone(),
        threshold: a.threshold,
        expires: a.expiry.time(now)?,
    };
    let out = rotate::rotate(&prev, &r, now).map_err(|e| Failure::usage(e.to_string()))?;
    write_output(a.output.as_deref(), &out, true)?;
    eprintln!(
        "wrote root v{} (unsigned): sign it with a threshold of the keys of v{} (signerctl tuf sign --root {} ...) and of its own",
        prev.version + 1,
        prev.version,
        a.previous.display()
    );
    Ok(exit::OK)
}

fn merge_files(a: MergeCmd) -> Result<i32, Failure> {
    let mut files = a.files.iter();
    let Some(first_path) = files.next() else {
        return Err(Failure::usage("merge needs at least two files"));
    };
    let first = read_metadata(first_path)?;
    let others = files
        .map(|p| Ok((p.display().to_string(), read_metadata(p)?)))
        .collect::<Result<Vec<_>, Failure>>()?;
    let out = first
        .merged(&others)
        .map_err(|e| Failure::usage(e.to_string()))?;
    write_output(Some(&a.output), &out, false)?;
    Ok(exit::OK)
}
