//! The daemon: `signer-daemon serve`.

use clap::Args;

/// `signer-daemon serve`
#[derive(Debug, Args)]
pub struct ServeArgs {}

/// Run the daemon.
pub fn serve(_args: ServeArgs) -> crate::admin::anyhow_like::Result {
    Err("not implemented".into())
}
