//! `signer-daemon emulate-card`: serve an emulated token to pcscd through vpcd.

use clap::Args;

/// `signer-daemon emulate-card`
#[derive(Debug, Args)]
pub struct EmulateCardArgs {}

/// Run the bridge.
pub fn emulate_card(_args: EmulateCardArgs) -> crate::admin::anyhow_like::Result {
    Err("not implemented".into())
}
