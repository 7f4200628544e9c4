//! `pcsc-exclusive-hold READER [WAIT_MS]`: hold the card in READER with
//! `SCARD_SHARE_EXCLUSIVE`, as gpg's scdaemon does by default, until
//! standard input closes (fault tests: "another program holds the card").
//!
//! It retries the exclusive connection for up to WAIT_MS (default 10000)
//! while the card is absent or shared by others, prints `HELD` on stdout
//! once it holds the card, then waits for EOF on stdin and disconnects with
//! `SCARD_LEAVE_CARD` (no reset). Exit 0 after a clean release, 1 when it
//! could not take the card (the reason on stderr), 2 on a usage error.

use std::ffi::CString;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pcsc::{Context, Disposition, Protocols, Scope, ShareMode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (reader, wait) = match args.as_slice() {
        [r] => (r.clone(), Duration::from_secs(10)),
        [r, ms] => match ms.parse::<u64>() {
            Ok(ms) => (r.clone(), Duration::from_millis(ms)),
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    let Ok(name) = CString::new(reader.as_str()) else {
        return usage();
    };
    let deadline = Instant::now() + wait;
    let (ctx, card) = loop {
        let attempt = Context::establish(Scope::User).and_then(|ctx| {
            ctx.connect(&name, ShareMode::Exclusive, Protocols::ANY)
                .map(|card| (ctx, card))
        });
        match attempt {
            Ok(held) => break held,
            Err(e) if Instant::now() >= deadline => {
                eprintln!("pcsc-exclusive-hold: cannot take {reader:?} exclusively: {e}");
                return ExitCode::from(1);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut out = std::io::stdout();
    if writeln!(out, "HELD").and_then(|()| out.flush()).is_err() {
        return ExitCode::from(1);
    }
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let released = card.disconnect(Disposition::LeaveCard);
    drop(ctx);
    match released {
        Ok(()) => ExitCode::SUCCESS,
        Err((card, e)) => {
            eprintln!("pcsc-exclusive-hold: SCardDisconnect: {e}");
            // Dropping it would reset the card; pcscd frees it with the context.
            std::mem::forget(card);
            ExitCode::from(1)
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: pcsc-exclusive-hold READER [WAIT_MS]");
    ExitCode::from(2)
}
