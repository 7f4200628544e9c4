//! Small PC/SC client helpers (the `pcsc` crate) for tests that run inside a
//! sandbox ([`crate::pcsc_sandbox::run_sandboxed`]): list readers, wait for a
//! card to appear or go, connect, transmit.
//!
//! They return `Result<_, String>` with messages meant for test failures.
//! A pcscd restart invalidates every context: establish a new one.

use std::ffi::CString;
use std::time::{Duration, Instant};

use pcsc::{Context, Protocols, ReaderState, Scope, ShareMode, State};

/// Establish a context, retrying for up to `timeout` while pcscd is not
/// (yet) reachable.
pub fn establish(timeout: Duration) -> Result<Context, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match Context::establish(Scope::User) {
            Ok(ctx) => return Ok(ctx),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("SCardEstablishContext: {e}")),
        }
    }
}

/// The names of all readers pcscd knows (empty when there is none).
pub fn reader_names(ctx: &Context) -> Result<Vec<String>, String> {
    match ctx.list_readers_owned() {
        Ok(names) => Ok(names
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(format!("SCardListReaders: {e}")),
    }
}

/// Wait until `reader` has a card (`present = true`, returns its ATR) or
/// has none (`present = false`, returns an empty ATR).
pub fn wait_for_card(
    ctx: &Context,
    reader: &str,
    present: bool,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let name = CString::new(reader).map_err(|e| format!("reader name: {e}"))?;
    let mut states = [ReaderState::new(name, State::UNAWARE)];
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "reader {reader:?}: no card {} after {timeout:?} (state {:?})",
                if present { "inserted" } else { "removal" },
                states[0].event_state()
            ));
        }
        match ctx.get_status_change(deadline - now, &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(e) => return Err(format!("SCardGetStatusChange({reader:?}): {e}")),
        }
        let s = states[0].event_state();
        if s.contains(State::UNKNOWN) {
            return Err(format!("pcscd does not know a reader {reader:?}"));
        }
        if present && s.contains(State::PRESENT) && !s.contains(State::MUTE) {
            return Ok(states[0].atr().to_vec());
        }
        if !present && s.contains(State::EMPTY) {
            return Ok(Vec::new());
        }
        states[0].sync_current_state();
    }
}

/// Connect to the card in `reader` (shared, T=1).
pub fn connect(ctx: &Context, reader: &str) -> Result<pcsc::Card, String> {
    let name = CString::new(reader).map_err(|e| format!("reader name: {e}"))?;
    ctx.connect(&name, ShareMode::Shared, Protocols::T1)
        .map_err(|e| format!("SCardConnect({reader:?}): {e}"))
}

/// Send one APDU, return the whole response (data and status word).
pub fn transmit(card: &pcsc::Card, apdu: &[u8]) -> Result<Vec<u8>, pcsc::Error> {
    let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
    card.transmit(apdu, &mut buf).map(<[u8]>::to_vec)
}
