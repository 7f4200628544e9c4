//! How a card's APDUs travel between a host and a card.
//!
//! - [`vpcd`]: serve a software card ([`vpcd::VirtualCard`]) to a real pcscd
//!   through vsmartcard's vpcd reader driver, so that every PC/SC client
//!   (yubico-piv-tool, ykman, OpenSC, our own PIV client) sees it as a card in
//!   a reader. A pure codec for vpcd's socket protocol plus a blocking
//!   serving loop that reconnects and stops cleanly.
//!
//! The PIV client's side of PC/SC (the `pcsc` crate) lives with the PIV
//! client, not here.

pub mod vpcd;
