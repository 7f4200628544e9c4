//! signer-daemon: the gRPC signing service, its client `signerctl`, and the
//! token administration commands.
//!
//! - [`admin`]: `emulated init`, `keygen`, `pubkey`, offline `sign` (token provisioning and use without the daemon).
//! - [`serve`]: the daemon (`signer-daemon serve`): configuration, signals, logging.
//! - [`server`]: the gRPC service and [`server::run`], the entry point tests drive in-process.
//! - [`policy`]: who may list, sign and attest with which keys.
//! - [`audit`]: the JSON-lines audit log.
//! - [`worker`]: one thread per token, its bounded queue and key cache.
//! - [`socket`]: the Unix socket (paths, permissions, stale sockets, systemd activation).
//! - [`peer`]: peer credentials of each connection.
//! - [`status`]: library errors to gRPC status codes.
//! - [`attestation`]: attestation trust and verdicts.
//! - [`ctl`]: `signerctl`, the command line over the shared client crate `signer-client`.
//! - [`emulate_card`]: serve an emulated token to pcscd through vpcd.
//! - `spin`: a lone request polls for its answer briefly instead of letting the core idle.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod attestation;
pub mod audit;
pub mod ctl;
pub mod emulate_card;
pub mod peer;
pub mod policy;
pub mod serve;
pub mod server;
pub mod socket;
mod spin;
pub mod status;
pub mod worker;
