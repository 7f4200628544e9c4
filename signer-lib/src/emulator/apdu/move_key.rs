//! MOVE KEY / DELETE KEY (F6, firmware 5.7+): P1 the destination slot or
//! FF to delete, P2 the source slot, no data. The rules are the card's
//! ([`Card::move_key`], [`Card::delete_key`]); this maps bytes and errors.

use super::status::{refuse, refuse_with};
use crate::emulator::card::Card;
use crate::error::Error;
use crate::model::SlotId;
use crate::piv::apdu::{CommandApdu, ResponseApdu, StatusWord};

/// P1 of DELETE KEY.
const DELETE: u8 = 0xff;

/// Execute one MOVE KEY or DELETE KEY.
pub(super) fn execute(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    // (A refusal here still counts as a command: the front end counts every
    // APDU no card method handled.)
    let Ok(from) = SlotId::from_key_reference(apdu.p2) else {
        return ResponseApdu::status(StatusWord::IncorrectP1P2);
    };
    let to = if apdu.p1 == DELETE {
        None
    } else {
        match SlotId::from_key_reference(apdu.p1) {
            Ok(slot) => Some(slot),
            Err(_) => return ResponseApdu::status(StatusWord::IncorrectP1P2),
        }
    };
    if !apdu.data.is_empty() {
        tracing::debug!("MOVE KEY takes no data");
        return ResponseApdu::status(StatusWord::IncorrectData);
    }
    let result = match to {
        Some(to) => card.move_key(from, to),
        None => card.delete_key(from),
    };
    match result {
        Ok(()) => ResponseApdu::status(StatusWord::Success),
        // f9, or an occupied destination: "incorrect parameters".
        Err(e @ Error::SlotNotAllowed { .. }) => {
            refuse_with(apdu.ins, StatusWord::IncorrectP1P2, &e)
        }
        Err(e @ Error::NotSupported { .. }) => {
            refuse_with(apdu.ins, StatusWord::InsNotSupported, &e)
        }
        // Empty source: 6A88; no management key: 6982.
        Err(e) => refuse(apdu.ins, &e),
    }
}
