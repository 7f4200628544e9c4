//! `sign`: hash locally (streaming), sign through the daemon with the touch
//! prompt, write the signature.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use base64::Engine;
use clap::{Args, ValueEnum};
use sha2::Digest;
use signer_client::{Client, SignEvent};
use signer_proto::v1 as pb;

use super::output::{stdout, write_file_atomically};
use super::{Failure, KeyArgs, exit};

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

/// Check the arguments and hash the input, before connecting.
pub fn prepare(a: &SignArgs) -> Result<PreparedSign, Failure> {
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

/// `sign`
pub async fn run(mut client: Client, a: SignArgs, p: PreparedSign) -> Result<i32, Failure> {
    let wire_format = match a.format {
        OutputFormat::Raw => pb::SignatureFormat::Raw,
        OutputFormat::Der | OutputFormat::Base64 => pb::SignatureFormat::Der,
    };
    let r = client
        .sign_as(
            a.key.spec().key_ref(),
            p.hash,
            p.digest,
            wire_format,
            print_touch_prompt,
        )
        .await?;
    let bytes = match a.format {
        OutputFormat::Der | OutputFormat::Raw => r.signature,
        OutputFormat::Base64 => {
            let mut s = base64::engine::general_purpose::STANDARD.encode(&r.signature);
            s.push('\n');
            s.into_bytes()
        }
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
            hash: HashArg::Sha256,
            format: OutputFormat::Base64,
            output: None,
        };
        let ok = prepare(&args(&format!("sha256:{}", "00".repeat(32)))).unwrap();
        assert_eq!(ok.digest.len(), 32);
        for bad in ["sha256:00", "md5:00", "nohash", "sha256:zz"] {
            assert_eq!(prepare(&args(bad)).unwrap_err().code, exit::USAGE, "{bad}");
        }
    }
}
