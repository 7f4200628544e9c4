//! signer-daemon: the gRPC signing service, its client `signerctl`, and the
//! token administration commands.
//!
//! - [`admin`]: `emulated init`, `keygen`, `pubkey`, offline `sign` (token provisioning and use without the daemon).
//! - [`serve`]: the daemon (`signer-daemon serve`).
//! - [`emulate_card`]: serve an emulated token to pcscd through vpcd.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod emulate_card;
pub mod serve;
