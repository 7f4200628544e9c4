//! The PC/SC transport: a card in a reader of the local pcscd, through the
//! `pcsc` crate.
//!
//! Rules this module keeps (each has a test in `tests/tests/hardware_*.rs`):
//!
//! - **Never reset the card by accident.** The `pcsc` crate's `Card` resets
//!   the card when dropped (`SCARD_RESET_CARD`), which would throw away a
//!   PIN verification (policy `once`) and the other clients' sessions. A
//!   [`PcscTransport`] always disconnects with `SCARD_LEAVE_CARD`, also when
//!   dropped; if even that fails, the handle is leaked rather than dropped
//!   (pcscd frees it when our context goes).
//! - **Shared mode, one transaction per operation.** Other programs may use
//!   the card between our operations; none can come between the APDUs of one
//!   operation (a VERIFY and the signature it allows).
//! - **A card held exclusively** (gpg's scdaemon does that by default) gives
//!   `SCARD_E_SHARING_VIOLATION`: retried for a bounded time, then
//!   [`Error::CardInUse`] naming scdaemon and the fix.
//! - **Typed failures**: `SCARD_W_RESET_CARD` → [`Error::CardReset`]; card or
//!   reader gone → [`Error::CardRemoved`]; pcscd gone or restarted (stale
//!   handles) → [`Error::Unavailable`]. The caller drops the transport and
//!   connects again on the next request (a new PC/SC context each time).
//!
//! Known limit: pcsc-lite's `SCardBeginTransaction` has no timeout. While
//! another *shared* client holds a transaction, ours waits for it (measured:
//! it returns as soon as the other ends its transaction); a client that never
//! ends its transaction blocks this one. Only the exclusive-connection case
//! (scdaemon's default) is bounded by [`DEFAULT_SHARING_WAIT`].

use std::ffi::CString;
use std::time::{Duration, Instant};

use pcsc::{Context, Disposition, Protocols, Scope, ShareMode};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::transport::{ApduLink, CardTransport};

/// How long to keep retrying while another program holds the card
/// exclusively, by default.
pub const DEFAULT_SHARING_WAIT: Duration = Duration::from_secs(5);

/// Pause between two attempts while the card is held exclusively.
const SHARING_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The largest response APDU PC/SC can return (extended length).
const RECEIVE_BUFFER: usize = pcsc::MAX_BUFFER_SIZE_EXTENDED;

/// The error for a card another program holds exclusively.
pub fn card_in_use(reader: &str) -> Error {
    Error::CardInUse {
        holder: format!(
            "another PC/SC client holds the card in reader {reader:?} exclusively; most often \
             gpg's scdaemon"
        ),
        fix: "run `gpgconf --kill scdaemon`, or stop scdaemon from taking the card for good with \
              `disable-ccid` and `pcsc-shared` in ~/.gnupg/scdaemon.conf"
            .into(),
    }
}

/// Translate a PC/SC error into the library's typed error.
pub fn map_error(error: pcsc::Error, reader: &str) -> Error {
    use pcsc::Error as E;
    match error {
        E::ResetCard => Error::CardReset,
        E::RemovedCard | E::NoSmartcard | E::UnknownReader | E::ReaderUnavailable => {
            Error::CardRemoved {
                detail: format!("reader {reader:?}: {error}"),
            }
        }
        E::SharingViolation => card_in_use(reader),
        E::NoService | E::ServiceStopped => Error::Unavailable {
            reason: format!(
                "pcscd is not running or was restarted ({error}); is pcscd.socket enabled?"
            ),
        },
        E::InvalidHandle | E::NoReadersAvailable | E::CommError | E::Shutdown => {
            Error::Unavailable {
                reason: format!("reader {reader:?}: {error}"),
            }
        }
        other => Error::Unavailable {
            reason: format!("reader {reader:?}: PC/SC error: {other}"),
        },
    }
}

/// A PC/SC context (connection to pcscd).
fn establish() -> Result<Context> {
    Context::establish(Scope::User).map_err(|e| map_error(e, "(none)"))
}

/// The names of every reader pcscd knows (empty when there is none).
pub fn list_readers() -> Result<Vec<String>> {
    let ctx = establish()?;
    let names = match ctx.list_readers_owned() {
        Ok(names) => names,
        Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
        Err(e) => return Err(map_error(e, "(listing readers)")),
    };
    Ok(names
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect())
}

/// A shared-mode connection to the card in one reader.
pub struct PcscTransport {
    reader: String,
    card: Option<pcsc::Card>,
    // Declared after `card` so the card is disconnected first.
    _context: Context,
    sharing_wait: Duration,
}

impl std::fmt::Debug for PcscTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscTransport")
            .field("reader", &self.reader)
            .field("connected", &self.card.is_some())
            .finish()
    }
}

impl PcscTransport {
    /// Connect (shared mode, T=0 or T=1) to the card in `reader`, with a new
    /// PC/SC context. While another program holds the card exclusively,
    /// retry for up to `sharing_wait`, then fail with [`Error::CardInUse`].
    pub fn connect(reader: &str, sharing_wait: Duration) -> Result<PcscTransport> {
        let context = establish()?;
        let name = CString::new(reader).map_err(|_| Error::Unavailable {
            reason: format!("reader name {reader:?} contains a NUL byte"),
        })?;
        let deadline = Instant::now() + sharing_wait;
        let card = loop {
            match context.connect(&name, ShareMode::Shared, Protocols::ANY) {
                Ok(card) => break card,
                Err(pcsc::Error::SharingViolation) if Instant::now() < deadline => {
                    std::thread::sleep(SHARING_RETRY_PAUSE);
                }
                Err(e) => return Err(map_error(e, reader)),
            }
        };
        tracing::debug!(reader, "connected (shared)");
        Ok(PcscTransport {
            reader: reader.to_string(),
            card: Some(card),
            _context: context,
            sharing_wait,
        })
    }

    /// Disconnect, leaving the card as it is (no reset).
    pub fn close(mut self) -> Result<()> {
        self.disconnect()
    }

    fn disconnect(&mut self) -> Result<()> {
        let Some(card) = self.card.take() else {
            return Ok(());
        };
        match card.disconnect(Disposition::LeaveCard) {
            Ok(()) => Ok(()),
            Err((card, e)) => {
                // Dropping `card` would reset the card: leak the handle
                // instead (pcscd releases it with our context).
                std::mem::forget(card);
                tracing::warn!(reader = %self.reader, error = %e, "disconnect failed; handle left to pcscd");
                Err(map_error(e, &self.reader))
            }
        }
    }
}

impl Drop for PcscTransport {
    fn drop(&mut self) {
        let _ = self.disconnect();
    }
}

struct PcscLink<'t, 'c> {
    transaction: &'t pcsc::Transaction<'c>,
    reader: &'t str,
    buffer: Zeroizing<Vec<u8>>,
}

impl ApduLink for PcscLink<'_, '_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        match self.transaction.transmit(command, &mut self.buffer) {
            // A reader that lost the card in the middle of a command may
            // answer "success" with no bytes (vpcd does): the card is gone.
            Ok(response) if response.len() < 2 => Err(Error::CardRemoved {
                detail: format!(
                    "reader {:?} returned a {}-byte response: the card went away mid-command",
                    self.reader,
                    response.len()
                ),
            }),
            Ok(response) => Ok(Zeroizing::new(response.to_vec())),
            Err(e) => Err(map_error(e, self.reader)),
        }
    }
}

impl CardTransport for PcscTransport {
    fn reader(&self) -> &str {
        &self.reader
    }

    fn transaction(&mut self, body: &mut dyn FnMut(&mut dyn ApduLink) -> Result<()>) -> Result<()> {
        let reader = self.reader.clone();
        let Some(card) = self.card.as_mut() else {
            return Err(Error::Unavailable {
                reason: format!("reader {reader:?}: not connected"),
            });
        };
        let deadline = Instant::now() + self.sharing_wait;
        let mut card = card;
        let transaction = loop {
            match card.transaction2() {
                Ok(t) => break t,
                Err((c, pcsc::Error::SharingViolation)) if Instant::now() < deadline => {
                    card = c;
                    std::thread::sleep(SHARING_RETRY_PAUSE);
                }
                Err((_, e)) => return Err(map_error(e, &reader)),
            }
        };
        let result = {
            let mut link = PcscLink {
                transaction: &transaction,
                reader: &reader,
                buffer: Zeroizing::new(vec![0u8; RECEIVE_BUFFER]),
            };
            body(&mut link)
        };
        match transaction.end(Disposition::LeaveCard) {
            Ok(()) => result,
            Err((transaction, e)) => {
                // Its drop ends it again with LeaveCard; nothing resets.
                drop(transaction);
                result.and(Err(map_error(e, &reader)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcsc_errors_map_to_typed_errors() {
        assert!(matches!(
            map_error(pcsc::Error::ResetCard, "r"),
            Error::CardReset
        ));
        assert!(matches!(
            map_error(pcsc::Error::RemovedCard, "r"),
            Error::CardRemoved { .. }
        ));
        assert!(matches!(
            map_error(pcsc::Error::NoService, "r"),
            Error::Unavailable { .. }
        ));
        assert!(matches!(
            map_error(pcsc::Error::InvalidHandle, "r"),
            Error::Unavailable { .. }
        ));
        match map_error(pcsc::Error::SharingViolation, "r") {
            Error::CardInUse { holder, fix } => {
                assert!(holder.contains("scdaemon"), "{holder}");
                assert!(fix.contains("gpgconf --kill scdaemon"), "{fix}");
                assert!(fix.contains("disable-ccid"), "{fix}");
            }
            other => panic!("{other:?}"),
        }
    }
}
