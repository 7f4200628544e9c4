//! Attestation material of the emulated card: the emulated root, the f9
//! device key and certificate, and slot attestation certificates.
//!
//! Pending: built on `crate::attestation::issue` once it lands in main.

use crate::emulator::card::state::CardState;
use crate::error::{Error, Result};
use crate::model::SlotId;

/// Give a factory-fresh card its attestation root and f9 key + certificate.
pub(crate) fn install_attestation(_state: &mut CardState) -> Result<()> {
    Ok(())
}

/// Issue the attestation certificate for the (generated) key in `slot`.
pub(crate) fn issue(_state: &CardState, _slot: SlotId) -> Result<Vec<u8>> {
    Err(Error::NotSupported {
        what: "attestation (pending)".into(),
    })
}
