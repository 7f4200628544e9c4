//! MOVE KEY and DELETE KEY (instruction F6, firmware 5.7+), as the card
//! does them.
//!
//! What moves is the private key with its PIN and touch policies (as they
//! were resolved for the source slot: a key generated in 9a with the
//! default PIN policy keeps `once` in 9c) and its origin (a generated key
//! stays attestable; ATTEST then names the new slot). What does not move:
//! the slot's certificate object, which is a separate data object (PUT
//! DATA), exactly as on the device: move or delete it with PUT DATA.
//!
//! Refusals, in the device's order: the firmware (before 5.7: 6D00, see
//! [`super::firmware`]), the management key (6982), the attestation slot f9
//! as source, destination or for deletion (6A86; Yubico documents the
//! source rule, and the emulator also keeps f9 out of the other two: its
//! factory key cannot be restored), an empty source (6A88), an occupied
//! destination (6A86; ykman reads that status as "DEST slot is not empty"),
//! which also covers moving a key onto itself.

use super::firmware::{self, Feature};
use super::{Card, Cmd};
use crate::error::{Error, Result};
use crate::model::SlotId;

impl Card {
    /// **Command** MOVE KEY (F6 with P1 = `to`, P2 = `from`). Needs the
    /// management key and firmware 5.7+. See the module documentation.
    pub fn move_key(&mut self, from: SlotId, to: SlotId) -> Result<()> {
        self.enter(Cmd::Other);
        firmware::require(self.state.firmware, Feature::MoveDelete)?;
        self.require_management_key()?;
        if from == SlotId::Attestation {
            return Err(Error::SlotNotAllowed {
                slot: from,
                operation: "move its key (the attestation key stays in f9)",
            });
        }
        if to == SlotId::Attestation {
            return Err(Error::SlotNotAllowed {
                slot: to,
                operation: "receive a moved key (it holds the attestation key)",
            });
        }
        if !self.state.keys.contains_key(&from) {
            return Err(Error::KeyNotFound { slot: from });
        }
        if self.state.keys.contains_key(&to) {
            return Err(Error::SlotNotAllowed {
                slot: to,
                operation: "receive a moved key: it holds a key already (delete that one first)",
            });
        }
        let key = self
            .state
            .keys
            .remove(&from)
            .ok_or(Error::KeyNotFound { slot: from })?;
        self.state.keys.insert(to, key);
        self.touched_state();
        Ok(())
    }

    /// **Command** DELETE KEY (F6 with P1 = FF, P2 = `slot`). Needs the
    /// management key and firmware 5.7+. The private key is gone (its
    /// memory zeroized); the slot's certificate object stays.
    pub fn delete_key(&mut self, slot: SlotId) -> Result<()> {
        self.enter(Cmd::Other);
        firmware::require(self.state.firmware, Feature::MoveDelete)?;
        self.require_management_key()?;
        if slot == SlotId::Attestation {
            return Err(Error::SlotNotAllowed {
                slot,
                operation: "delete its key (the factory attestation key cannot be restored)",
            });
        }
        // SoftKey zeroizes its secret when dropped.
        drop(
            self.state
                .keys
                .remove(&slot)
                .ok_or(Error::KeyNotFound { slot })?,
        );
        self.touched_state();
        Ok(())
    }
}
