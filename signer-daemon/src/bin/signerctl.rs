//! `signerctl`: the client of signer-daemon (see `signer_daemon::client`).

fn main() {
    std::process::exit(signer_daemon::client::main());
}
