//! `state-churner`: changes an emulated token's state file as fast as it can,
//! for the kill loop of `tests/tests/reliability_durability.rs` (which kills
//! it with SIGKILL at random points and checks the file it leaves).
//!
//! ```text
//! state-churner STATE_FILE PIN STEP
//! ```
//!
//! Opens the token, then for STEP, STEP+1, ... forever: an even step changes
//! the PIN from `PIN` to [`pin_after`]`(step)`, an odd step generates a new
//! P-256 key (PIN and touch policy never) in slot [`keygen_slot`]`(step)`.
//! Before each step it prints `BEGIN step pin NEW_PIN` or `BEGIN step keygen
//! SLOT`, after it `DONE step pin keys`
//! (keys: `slot=key_id,...` in slot order), flushed, so that the killer knows
//! the last state on disk for sure and the one that may be on its way.
//! Exits 2 with a message on any error (the test reports it).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use signer_lib::emulator::{ApproveTouch, EmulatedToken};
use signer_lib::{Algorithm, ManagementKey, Pin, PinPolicy, SlotId, Token, TouchPolicy};

/// The PIN set by the PIN change of `step` (8 digits, distinct per step).
fn pin_after(step: u64) -> String {
    format!("{:08}", 10_000_000 + step % 90_000_000)
}

/// The slot whose key the key generation of `step` replaces.
fn keygen_slot(step: u64) -> SlotId {
    const SLOTS: [SlotId; 4] = [
        SlotId::Authentication,
        SlotId::Signature,
        SlotId::KeyManagement,
        SlotId::CardAuthentication,
    ];
    SLOTS[((step / 2) % 4) as usize]
}

fn keys_line(token: &mut EmulatedToken) -> signer_lib::Result<String> {
    let mut keys: Vec<String> = token
        .list_keys()?
        .into_iter()
        .map(|k| format!("{}={}", k.slot, k.key_id))
        .collect();
    keys.sort();
    Ok(keys.join(","))
}

fn run(args: &[String]) -> Result<(), String> {
    let [path, pin, step] = args else {
        return Err("usage: state-churner STATE_FILE PIN STEP".into());
    };
    let mut step: u64 = step.parse().map_err(|e| format!("STEP {step:?}: {e}"))?;
    let mut pin = pin.clone();
    let mut token = EmulatedToken::open(path, Arc::new(ApproveTouch))
        .map_err(|e| format!("open {path}: {e}"))?;
    let alg = token.management_key_algorithm();
    let mgmt = ManagementKey::default_for(alg).map_err(|e| e.to_string())?;
    token.authenticate(&mgmt).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let say = |out: &mut std::io::StdoutLock<'_>, line: String| {
        // The killer reads these as they come: flush every line.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    say(&mut out, "READY".into());
    loop {
        if step % 2 == 0 {
            let new = pin_after(step);
            say(&mut out, format!("BEGIN {step} pin {new}"));
            let current = Pin::parse_pin(&pin).map_err(|e| e.to_string())?;
            let next = Pin::parse_pin(&new).map_err(|e| e.to_string())?;
            token
                .change_pin(&current, &next)
                .map_err(|e| format!("step {step}: change PIN: {e}"))?;
            pin = new;
        } else {
            say(
                &mut out,
                format!("BEGIN {step} keygen {}", keygen_slot(step)),
            );
            token
                .generate_key(
                    keygen_slot(step),
                    Algorithm::EccP256,
                    PinPolicy::Never,
                    TouchPolicy::Never,
                )
                .map_err(|e| format!("step {step}: generate key: {e}"))?;
        }
        let keys = keys_line(&mut token).map_err(|e| e.to_string())?;
        say(&mut out, format!("DONE {step} {pin} {keys}"));
        step += 1;
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("state-churner: {e}");
            ExitCode::from(2)
        }
    }
}
