//! `sign`: hash locally (streaming), sign through the daemon with the touch
//! prompt, write the signature.
//!
//! The key's type decides what is sent (README "signerctl"):
//! - P-256/P-384 (ECDSA): the digest, made here with `--hash` (default
//!   SHA-256); the signature as DER (default), raw r‖s or base64 of the DER.
//! - RSA: `--padding pkcs1v15|pss` is required; the digest as for ECDSA;
//!   the signature is the modulus-length integer (`raw`, the default, or
//!   `base64`).
//! - Ed25519: the message itself (`--in` or standard input, at most
//!   [`ED25519_MAX_MESSAGE`] bytes; `--digest` is refused, the key signs
//!   the message); the 64-byte signature (`raw` or `base64`).
//!
//! Without `--digest` or `--padding`, signerctl asks the daemon for the key
//! (operation "list" on it) to learn its type; a caller that may sign but
//! not list the key is served as before, with a digest (ECDSA).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use base64::Engine;
use clap::{Args, ValueEnum};
use sha2::Digest;
use signer_client::{Client, ErrorKind, Payload, SignEvent, Signing};
use signer_lib::model::ED25519_MAX_MESSAGE;
use signer_proto::v1 as pb;

use super::output::{stdout, write_file_atomically};
use super::{Failure, KeyArgs, exit};

/// Signature output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// ASN.1 DER (what openssl verifies). ECDSA keys only.
    Der,
    /// The raw signature: r || s for ECDSA, the modulus-length integer for
    /// RSA, 64 bytes for Ed25519.
    Raw,
    /// Base64 of the signature (DER for ECDSA), one line.
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

/// RSA padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PaddingArg {
    /// RSASSA-PKCS1-v1_5.
    Pkcs1v15,
    /// RSASSA-PSS (MGF1 with the same hash, salt as long as the digest).
    Pss,
}

/// `sign`
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The key.
    #[command(flatten)]
    pub key: KeyArgs,
    /// A prehashed digest, `sha256:HEX` (or sha384:, sha512:). Not for
    /// Ed25519 keys, which sign the message itself.
    #[arg(long, value_name = "HASH:HEX", conflicts_with = "input")]
    pub digest: Option<String>,
    /// The file to sign (hashed here, streaming; an Ed25519 key signs its
    /// bytes); standard input when neither --digest nor --in is given.
    #[arg(long = "in", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Hash for --in / standard input (default sha256; Ed25519 takes sha512
    /// only, its own hash).
    #[arg(long, value_enum, conflicts_with = "digest")]
    pub hash: Option<HashArg>,
    /// RSA padding (required for RSA keys, refused for others).
    #[arg(long, value_enum)]
    pub padding: Option<PaddingArg>,
    /// Signature format (default: der for ECDSA, raw for RSA and Ed25519).
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Write the signature here instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// What `sign` sends: a digest made before connecting, or an input still
/// to be read once the key's type is known.
#[derive(Debug)]
pub enum PreparedSign {
    /// `--digest`, or an input hashed for an RSA key (`--padding`).
    Digest {
        /// The hash.
        hash: pb::HashAlgorithm,
        /// The digest.
        digest: Vec<u8>,
    },
    /// `--in FILE` or standard input, not read yet.
    Input(Source),
}

/// Where the data comes from.
pub struct Source {
    name: String,
    reader: Box<dyn Read>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Source({})", self.name)
    }
}

fn hash_of(name: &str) -> Option<(pb::HashAlgorithm, usize)> {
    match name.to_ascii_lowercase().as_str() {
        "sha256" | "sha-256" => Some((pb::HashAlgorithm::Sha256, 32)),
        "sha384" | "sha-384" => Some((pb::HashAlgorithm::Sha384, 48)),
        "sha512" | "sha-512" => Some((pb::HashAlgorithm::Sha512, 64)),
        _ => None,
    }
}

fn wire_hash(h: HashArg) -> pb::HashAlgorithm {
    match h {
        HashArg::Sha256 => pb::HashAlgorithm::Sha256,
        HashArg::Sha384 => pb::HashAlgorithm::Sha384,
        HashArg::Sha512 => pb::HashAlgorithm::Sha512,
    }
}

/// Check the arguments and open the input, before connecting; an input for
/// an RSA key (`--padding`) is hashed here.
pub fn prepare(a: &SignArgs) -> Result<PreparedSign, Failure> {
    if a.output.is_none()
        && a.format != Some(OutputFormat::Base64)
        && std::io::stdout().is_terminal()
    {
        return Err(Failure::usage(
            "refusing to write a binary signature to a terminal: use -o FILE or --format base64",
        ));
    }
    if a.padding.is_some() && a.format == Some(OutputFormat::Der) {
        return Err(Failure::usage(
            "--format der is for ECDSA keys: an RSA signature is one integer (--format raw or base64)",
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
        return Ok(PreparedSign::Digest { hash, digest });
    }
    let source = match &a.input {
        Some(p) => Source {
            name: p.display().to_string(),
            reader: Box::new(
                std::fs::File::open(p)
                    .map_err(|e| Failure::usage(format!("cannot read {}: {e}", p.display())))?,
            ),
        },
        None => {
            if std::io::stdin().is_terminal() {
                return Err(Failure::usage(
                    "nothing to sign: give --digest HASH:HEX, --in FILE, or pipe the data to standard input",
                ));
            }
            Source {
                name: "standard input".into(),
                reader: Box::new(std::io::stdin()),
            }
        }
    };
    if a.padding.is_some() {
        let hash = wire_hash(a.hash.unwrap_or(HashArg::Sha256));
        let digest = hash_stream(hash, source)?;
        return Ok(PreparedSign::Digest { hash, digest });
    }
    Ok(PreparedSign::Input(source))
}

fn hash_stream(hash: pb::HashAlgorithm, mut source: Source) -> Result<Vec<u8>, Failure> {
    let mut hasher: Box<dyn sha2::digest::DynDigest> = match hash {
        pb::HashAlgorithm::Sha384 => Box::new(sha2::Sha384::new()),
        pb::HashAlgorithm::Sha512 => Box::new(sha2::Sha512::new()),
        _ => Box::new(sha2::Sha256::new()),
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match source.reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Failure::usage(format!("cannot read {}: {e}", source.name)));
            }
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_vec())
}

/// The message for an Ed25519 key: at most [`ED25519_MAX_MESSAGE`] bytes.
fn read_message(source: Source) -> Result<Vec<u8>, Failure> {
    let name = source.name;
    let mut message = Vec::new();
    source
        .reader
        .take(ED25519_MAX_MESSAGE as u64 + 1)
        .read_to_end(&mut message)
        .map_err(|e| Failure::usage(format!("cannot read {name}: {e}")))?;
    if message.len() > ED25519_MAX_MESSAGE {
        return Err(Failure::usage(format!(
            "{name} is longer than {ED25519_MAX_MESSAGE} bytes: an Ed25519 key signs the message itself, in one command to the token (Ed25519 has no pre-hash on a YubiKey); sign a smaller file"
        )));
    }
    Ok(message)
}

/// The touch prompt every interactive command prints (on stderr, before the
/// token waits).
pub fn print_touch_prompt(event: SignEvent) {
    match event {
        SignEvent::TouchRequired {
            token_serial,
            slot,
            timeout,
        } => eprintln!(
            "Touch your YubiKey now (token {token_serial}, slot {slot}; it waits {} s)",
            timeout.as_millis().div_ceil(1000)
        ),
    }
}

/// What kind of key signs, as far as signerctl needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ecdsa,
    Rsa,
    Ed25519,
}

/// The key's kind: from `--padding` (RSA), else from the daemon; a caller
/// that may not list the key is taken for ECDSA (the daemon refuses what
/// does not fit, saying why).
async fn kind_of(client: &mut Client, a: &SignArgs) -> Result<Kind, Failure> {
    if a.padding.is_some() {
        return Ok(Kind::Rsa);
    }
    let key = match client.public_key(a.key.spec().key_ref()).await {
        Ok(k) => k,
        Err(e) if e.kind() == ErrorKind::Denied => return Ok(Kind::Ecdsa),
        Err(e) => return Err(e.into()),
    };
    match signer_client::algorithm_of(&key) {
        Some(signer_lib::Algorithm::Ed25519) => Ok(Kind::Ed25519),
        Some(alg) if alg.is_rsa() => Err(Failure::usage(format!(
            "key {} is an {alg} key: give --padding pkcs1v15 or --padding pss",
            key.key_id
        ))),
        _ => Ok(Kind::Ecdsa),
    }
}

/// `sign`
pub async fn run(mut client: Client, a: SignArgs, p: PreparedSign) -> Result<i32, Failure> {
    let kind = kind_of(&mut client, &a).await?;
    if kind != Kind::Ecdsa && a.format == Some(OutputFormat::Der) {
        return Err(Failure::usage(
            "--format der is for ECDSA keys: RSA and Ed25519 signatures have one encoding (--format raw or base64)",
        ));
    }
    let wire_format = match (kind, a.format) {
        (Kind::Ecdsa, Some(OutputFormat::Raw)) => pb::SignatureFormat::Raw,
        (Kind::Ecdsa, _) => pb::SignatureFormat::Der,
        _ => pb::SignatureFormat::Raw,
    };
    let signing = match (kind, p) {
        (Kind::Ed25519, PreparedSign::Digest { .. }) => {
            return Err(Failure::usage(
                "an Ed25519 key signs the message itself, not a digest: give --in FILE or standard input instead of --digest",
            ));
        }
        (Kind::Ed25519, PreparedSign::Input(source)) => {
            if a.hash.is_some_and(|h| h != HashArg::Sha512) {
                return Err(Failure::usage(
                    "an Ed25519 key hashes with SHA-512 inside the signature: leave --hash out (or give sha512)",
                ));
            }
            Signing::ed25519(read_message(source)?)
        }
        (_, PreparedSign::Input(source)) => {
            let hash = wire_hash(a.hash.unwrap_or(HashArg::Sha256));
            let digest = Payload::Digest(hash_stream(hash, source)?);
            Signing::ecdsa(hash, digest, wire_format)
        }
        (Kind::Rsa, PreparedSign::Digest { hash, digest }) => {
            let padding = match a.padding {
                Some(PaddingArg::Pss) => pb::RsaPadding::Pss,
                _ => pb::RsaPadding::Pkcs1v15,
            };
            Signing::rsa(hash, Payload::Digest(digest), padding)
        }
        (_, PreparedSign::Digest { hash, digest }) => {
            Signing::ecdsa(hash, Payload::Digest(digest), wire_format)
        }
    };
    let r = client
        .sign_with(a.key.spec().key_ref(), &signing, print_touch_prompt)
        .await?;
    let bytes = match a.format {
        Some(OutputFormat::Base64) => {
            let mut s = base64::engine::general_purpose::STANDARD.encode(&r.signature);
            s.push('\n');
            s.into_bytes()
        }
        _ => r.signature,
    };
    match &a.output {
        Some(path) => write_file_atomically(path, &bytes)?,
        None => stdout(&bytes)?,
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_before_connecting() {
        let args = |d: &str| SignArgs {
            key: KeyArgs {
                key: "9c".into(),
                token: None,
            },
            digest: Some(d.into()),
            input: None,
            hash: None,
            padding: None,
            format: Some(OutputFormat::Base64),
            output: None,
        };
        let ok = prepare(&args(&format!("sha256:{}", "00".repeat(32)))).unwrap();
        assert!(matches!(ok, PreparedSign::Digest { digest, .. } if digest.len() == 32));
        for bad in ["sha256:00", "md5:00", "nohash", "sha256:zz"] {
            assert_eq!(prepare(&args(bad)).unwrap_err().code, exit::USAGE, "{bad}");
        }
    }
}
