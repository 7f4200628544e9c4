//! `signerctl`: the client of signer-daemon (see `signer_daemon::ctl`).

fn main() {
    std::process::exit(signer_daemon::ctl::main());
}
