//! `list` and `pubkey`.

use std::fmt::Write as _;

use clap::Args;
use signer_client::Client;
use signer_proto::v1 as pb;

use super::output::stdout;
use super::{Failure, KeyArgs, exit};

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

fn name<E: TryFrom<i32>>(v: i32, f: impl Fn(E) -> &'static str) -> &'static str {
    E::try_from(v).map(f).unwrap_or("?")
}

/// The short name of an algorithm value.
pub fn alg_name(v: i32) -> &'static str {
    name(v, |a: pb::Algorithm| match a {
        pb::Algorithm::EccP256 => "p256",
        pb::Algorithm::EccP384 => "p384",
        pb::Algorithm::Rsa2048 => "rsa2048",
        pb::Algorithm::Ed25519 => "ed25519",
        pb::Algorithm::Rsa1024 => "rsa1024",
        pb::Algorithm::Rsa3072 => "rsa3072",
        pb::Algorithm::Rsa4096 => "rsa4096",
        pb::Algorithm::X25519 => "x25519",
        pb::Algorithm::Unspecified => "?",
    })
}

/// The name of a PIN policy value.
pub fn pin_name(v: i32) -> &'static str {
    name(v, |p: pb::PinPolicy| match p {
        pb::PinPolicy::Never => "never",
        pb::PinPolicy::Once => "once",
        pb::PinPolicy::Always => "always",
        pb::PinPolicy::Unspecified => "unknown",
    })
}

/// The name of a touch policy value.
pub fn touch_name(v: i32) -> &'static str {
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

/// `list`
pub async fn run(mut client: Client, a: ListArgs) -> Result<i32, Failure> {
    let tokens = client.list_tokens().await?;
    let keys = client.list_keys(a.token).await?;
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
        stdout(format!("{json:#}\n").as_bytes())?;
        return Ok(exit::OK);
    }
    let mut text = String::new();
    for t in &tokens {
        let kind = if t.kind == pb::TokenKind::Emulated as i32 {
            " [EMULATED: tests and CI only]"
        } else {
            ""
        };
        let _ = writeln!(
            text,
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
        );
    }
    let _ = writeln!(
        text,
        "{:<10} {:<4} {:<7} {:<7} {:<7} {:<9} KEY ID",
        "TOKEN", "SLOT", "ALG", "PIN", "TOUCH", "ORIGIN"
    );
    for k in &keys {
        let _ = writeln!(
            text,
            "{:<10} {:<4} {:<7} {:<7} {:<7} {:<9} {}",
            k.token_serial,
            k.slot,
            alg_name(k.algorithm),
            pin_name(k.pin_policy),
            touch_name(k.touch_policy),
            origin_name(k.origin),
            k.key_id
        );
    }
    stdout(text.as_bytes())?;
    Ok(exit::OK)
}

/// `pubkey`
pub async fn pubkey(mut client: Client, a: KeyArgs) -> Result<i32, Failure> {
    let key = client.public_key(a.spec().key_ref()).await?;
    stdout(key.public_key_pem.as_bytes())?;
    Ok(exit::OK)
}
