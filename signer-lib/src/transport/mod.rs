//! How a card's APDUs travel between a host and a card.
//!
//! - [`vpcd`]: serve a software card ([`vpcd::VirtualCard`]) to a real pcscd
//!   through vsmartcard's vpcd reader driver, so that every PC/SC client
//!   (yubico-piv-tool, ykman, OpenSC, our own PIV client) sees it as a card in
//!   a reader. A pure codec for vpcd's socket protocol plus a blocking
//!   serving loop that reconnects and stops cleanly.
//!
//! - [`CardTransport`]: how the PIV client (`crate::piv_client`) reaches a
//!   card, one exclusive transaction per operation: [`pcsc::PcscTransport`]
//!   (a real pcscd, the `pcsc` crate) and [`loopback::LoopbackTransport`]
//!   (an in-process [`vpcd::VirtualCard`], for fast tests).

pub mod loopback;
pub mod pcsc;
pub mod vpcd;

use zeroize::Zeroizing;

use crate::error::Result;

/// One APDU exchange inside a transaction.
pub trait ApduLink {
    /// Send one command APDU (bytes as on the wire) and return the response
    /// APDU (data then SW1 SW2). Transport failures come back as the typed
    /// card errors ([`crate::Error::CardReset`], [`crate::Error::CardRemoved`],
    /// [`crate::Error::Unavailable`]).
    fn transmit(&mut self, command: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
}

/// A connection to one card in one reader.
///
/// Dropping a transport releases the card **without resetting it** (PC/SC
/// `SCARD_LEAVE_CARD`), so a PIN verification survives for the next client.
pub trait CardTransport: Send {
    /// The reader's name.
    fn reader(&self) -> &str;

    /// Run `body` inside one exclusive transaction: no other PC/SC client's
    /// APDU can come between two of `body`'s. The transaction ends (leaving
    /// the card as it is) when `body` returns.
    fn transaction(&mut self, body: &mut dyn FnMut(&mut dyn ApduLink) -> Result<()>) -> Result<()>;
}

/// Whether an error means the connection to the card is gone (reset,
/// removed, pcscd or reader unavailable): the connection must be dropped
/// and opened again for the next request.
pub fn is_connection_lost(error: &crate::Error) -> bool {
    matches!(
        error,
        crate::Error::CardReset
            | crate::Error::CardRemoved { .. }
            | crate::Error::Unavailable { .. }
    )
}
