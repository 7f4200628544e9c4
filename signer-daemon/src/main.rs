//! `signer-daemon` command line.

use clap::{Parser, Subcommand};
use signer_daemon::{admin, emulate_card, serve};

/// YubiKey PIV signing daemon and token administration.
#[derive(Debug, Parser)]
#[command(name = "signer-daemon", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage emulated tokens (FOR TESTS AND CI ONLY: keys live in a file).
    #[command(subcommand)]
    Emulated(admin::EmulatedCommand),
    /// Generate a key in a slot (needs the management key).
    Keygen(admin::KeygenArgs),
    /// Print a slot's public key (PEM) or key id.
    Pubkey(admin::PubkeyArgs),
    /// Sign a file (or standard input) offline, without the daemon; DER output.
    Sign(admin::SignArgs),
    /// Run the gRPC signing daemon on a Unix socket.
    Serve(serve::ServeArgs),
    /// Serve an emulated token to pcscd through the vpcd reader driver.
    EmulateCard(emulate_card::EmulateCardArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Emulated(c) => admin::emulated(c),
        Command::Keygen(a) => admin::keygen(a),
        Command::Pubkey(a) => admin::pubkey(a),
        Command::Sign(a) => admin::sign(a),
        Command::Serve(a) => serve::serve(a).map_err(|e| admin::CliError::Other(e.to_string())),
        Command::EmulateCard(a) => emulate_card::emulate_card(a),
    };
    // Exit codes: 0 success, 1 the operation failed, 2 usage error (clap
    // exits with 2 on its own parse errors).
    if let Err(e) = result {
        eprintln!("signer-daemon: {e}");
        std::process::exit(e.exit_code());
    }
}
