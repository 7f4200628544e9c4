//! `attest`: the daemon's verdict, and the chain as PEM.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use signer_client::Client;

use super::list::{pin_name, touch_name};
use super::output::{pem, stdout, write_file_atomically};
use super::{Failure, KeyArgs, exit};

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

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// `attest`
pub async fn run(mut client: Client, a: AttestArgs) -> Result<i32, Failure> {
    let r = client.attest(a.key.spec().key_ref()).await?;
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
        write_file_atomically(path, text.as_bytes())?;
    }
    let mut text = String::new();
    if a.json {
        let json = serde_json::json!({
            "key_id": key.key_id, "token_serial": key.token_serial, "slot": key.slot,
            "trusted": verdict.trusted, "problems": verdict.problems,
            "attested_key_id": verdict.attested_key_id, "attested_slot": verdict.slot,
            "serial": info.serial, "firmware": info.firmware,
            "pin_policy": pin_name(info.pin_policy), "touch_policy": touch_name(info.touch_policy),
            "form_factor": info.form_factor, "fips": info.fips, "cspn": info.cspn,
        });
        let _ = writeln!(text, "{json:#}");
    } else {
        let _ = writeln!(
            text,
            "key:           {} (token {}, slot {})",
            key.key_id, key.token_serial, key.slot
        );
        let _ = writeln!(
            text,
            "trusted:       {}",
            if verdict.trusted { "yes" } else { "NO" }
        );
        let _ = writeln!(
            text,
            "serial:        {}",
            info.serial.map_or("-".to_string(), |s| s.to_string())
        );
        let _ = writeln!(text, "firmware:      {}", or_dash(&info.firmware));
        let _ = writeln!(text, "pin policy:    {}", pin_name(info.pin_policy));
        let _ = writeln!(text, "touch policy:  {}", touch_name(info.touch_policy));
        let _ = writeln!(text, "form factor:   {}", or_dash(&info.form_factor));
        let _ = writeln!(text, "attested key:  {}", or_dash(&verdict.attested_key_id));
        for p in &verdict.problems {
            let _ = writeln!(text, "problem:       {p}");
        }
    }
    stdout(text.as_bytes())?;
    Ok(if verdict.trusted {
        exit::OK
    } else {
        exit::NOT_TRUSTED
    })
}
