//! Token administration commands: `emulated init`, `keygen`, `pubkey`, `sign`.

use clap::{Args, Subcommand};

/// `signer-daemon emulated ...`
#[derive(Debug, Subcommand)]
pub enum EmulatedCommand {
    /// Create a new emulated token state file.
    Init(InitArgs),
}

/// `signer-daemon emulated init`
#[derive(Debug, Args)]
pub struct InitArgs {}

/// `signer-daemon keygen`
#[derive(Debug, Args)]
pub struct KeygenArgs {}

/// Run `signer-daemon emulated ...`.
pub fn emulated(_cmd: EmulatedCommand) -> anyhow_like::Result {
    Err("not implemented".into())
}

/// Run `signer-daemon keygen`.
pub fn keygen(_args: KeygenArgs) -> anyhow_like::Result {
    Err("not implemented".into())
}

/// Placeholder result type until the real error type lands.
pub mod anyhow_like {
    /// Result.
    pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;
}
