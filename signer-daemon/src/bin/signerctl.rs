//! `signerctl`: the client of signer-daemon.

fn main() {
    eprintln!("signerctl: not implemented yet");
    std::process::exit(2);
}
