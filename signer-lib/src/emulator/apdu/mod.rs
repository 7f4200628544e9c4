//! The emulated YubiKey's ISO 7816-4 APDU front end: command APDU bytes in,
//! response APDU bytes out, over a [`Card`]. No I/O happens here.
//!
//! [`ApduFrontEnd::process`] is the whole card as a PC/SC client sees it:
//!
//! - **Transport layer** (this module): short and extended length (all seven
//!   ISO 7816-4 cases), command chaining (CLA bit `0x10`, up to
//!   [`MAX_CHAIN_DATA`] bytes), response chaining (`61xx` then GET RESPONSE,
//!   chunks of at most 256 bytes for short commands or Ne for extended
//!   ones), applet selection by AID. A malformed APDU gets `6700`, an
//!   unknown class `6E00`, an unknown instruction `6D00`; nothing panics.
//! - **PIV applet** (`piv`): SP 800-73-4 plus the YubiKey extensions that
//!   yubico-piv-tool, ykman, ykcs11 and OpenSC use. Every instruction maps
//!   onto exactly one **command** of [`Card`], which enforces every security
//!   rule (PIN and management key, PIN policy `always`, touch); the front end
//!   only parses and encodes.
//! - **YubiKey Management and OTP applets** (`yubikey_apps`): just enough
//!   for ykman to identify the device over an external reader (version,
//!   serial, form factor, capabilities).
//!
//! Selecting another applet ends the PIV session (PIN verification and
//! management-key authentication are lost), as on the device; re-selecting
//! the PIV applet while it is selected keeps it. [`ApduFrontEnd::reset`] is
//! power-off or a card reset.
//!
//! Every processed APDU counts as one card command (see
//! [`Card::note_command`]), except a GET RESPONSE that continues a response
//! and the non-final parts of a command chain: a chained command is one
//! command, as on the device.
//!
//! Command and response data may hold PINs, PUKs and management keys: every
//! buffer is zeroized, and nothing here logs data bytes.
//!
//! [`EmulatedSmartCard`] puts the front end, an [`EmulatedToken`] and its
//! state file together as a [`VirtualCard`] for the vpcd bridge.
//!
//! [`EmulatedToken`]: crate::emulator::EmulatedToken
//! [`VirtualCard`]: crate::transport::vpcd::VirtualCard

mod move_key; // E2: MOVE KEY / DELETE KEY (F6)
mod piv;
mod smart_card;
mod status;
mod yubikey_apps;

#[cfg(test)]
mod tests;

use zeroize::Zeroizing;

use crate::emulator::card::Card;
use crate::piv::apdu::{CLA_CHAINING, CommandApdu, ResponseApdu, StatusWord};
use crate::piv::{MANAGEMENT_AID, OTP_AID, PIV_AID, PIV_AID_FULL, ins};

pub use smart_card::{CardAtr, EmulatedSmartCard, YUBIKEY_5_NFC_ATR};

/// The most command data a chain may accumulate. Enough for the largest
/// data object (3052 bytes) with its PUT DATA framing and some room to be
/// refused with a precise "too large" (6A84) by the card; a longer chain is
/// answered 6A84 at once.
pub const MAX_CHAIN_DATA: usize = 4352;

/// The most response data one response APDU carries for an extended-length
/// command (the vpcd frame's 16-bit length, minus the status word).
pub const MAX_EXTENDED_RESPONSE: usize = 65533;

/// 6883: last command of the chain expected (ISO 7816-4). A chain continued
/// with another instruction.
const SW_LAST_COMMAND_EXPECTED: u16 = 0x6883;

/// The applets of the emulated YubiKey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applet {
    /// PIV (AID A0 00 00 03 08).
    Piv,
    /// YubiKey Management (AID A0 00 00 05 27 47 11 17): device info.
    Management,
    /// YubiKey OTP (AID A0 00 00 05 27 20 01): version and serial only.
    Otp,
}

/// The OTP applet's AID with its version byte, as yubico-piv-tool selects it.
const OTP_AID_FULL: [u8; 8] = [0xa0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01, 0x01];

impl Applet {
    /// The applet a SELECT by DF name addresses. PIV accepts the truncated
    /// AID (at least the 5-byte RID + PIX prefix `A0 00 00 03 08`) up to the
    /// full AID with version; Management needs its exact AID, OTP its
    /// 7-byte AID or that with its version byte.
    pub fn from_aid(aid: &[u8]) -> Option<Applet> {
        if aid.len() >= PIV_AID.len() && PIV_AID_FULL.starts_with(aid) {
            Some(Applet::Piv)
        } else if aid == MANAGEMENT_AID {
            Some(Applet::Management)
        } else if aid.len() >= OTP_AID.len() && OTP_AID_FULL.starts_with(aid) {
            // E2: yubico-piv-tool selects A0 00 00 05 27 20 01 01 to read
            // a YubiKey 4's serial; ykman the 7-byte prefix.
            Some(Applet::Otp)
        } else {
            None
        }
    }
}

/// A command chain being received (zeroized: it may hold a PIN or a key).
struct Chain {
    ins: u8,
    p1: u8,
    p2: u8,
    data: Zeroizing<Vec<u8>>,
}

/// Response data waiting for GET RESPONSE (zeroized).
struct PendingResponse {
    data: Zeroizing<Vec<u8>>,
    /// Offset of the next byte to send.
    offset: usize,
}

/// The APDU front end's volatile state: the selected applet, a command
/// chain being received, response data waiting for GET RESPONSE. The card's
/// own state lives in the [`Card`] passed to [`ApduFrontEnd::process`].
#[derive(Default)]
pub struct ApduFrontEnd {
    selected: Option<Applet>,
    chain: Option<Chain>,
    pending: Option<PendingResponse>,
}

impl std::fmt::Debug for ApduFrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApduFrontEnd")
            .field("selected", &self.selected)
            .field("chain_bytes", &self.chain.as_ref().map(|c| c.data.len()))
            .field(
                "pending_bytes",
                &self
                    .pending
                    .as_ref()
                    .map(|p| p.data.len().saturating_sub(p.offset)),
            )
            .finish()
    }
}

/// How much response data one response APDU may carry for a command.
#[derive(Clone, Copy, Debug)]
struct ResponseLimit(usize);

impl ResponseLimit {
    /// Short commands: Ne, or 256 when absent (hosts send case-3 commands and
    /// still expect data, as YubiKeys answer them). Extended commands: Ne,
    /// or everything when absent (ykman sends extended commands without Le).
    fn for_command(apdu: &CommandApdu, extended: bool) -> ResponseLimit {
        let limit = match (extended, apdu.le) {
            (false, Some(le)) => le.min(256),
            (false, None) => 256,
            (true, Some(le)) => le.min(MAX_EXTENDED_RESPONSE),
            (true, None) => MAX_EXTENDED_RESPONSE,
        };
        ResponseLimit(limit.max(1))
    }
}

/// Whether the command bytes use extended length fields (ISO 7816-4 5.1:
/// after the header, a zero byte followed by at least two more bytes).
fn is_extended(command: &[u8]) -> bool {
    command.len() >= 7 && command[4] == 0
}

impl ApduFrontEnd {
    /// A front end right after power-on: no applet selected.
    pub fn new() -> ApduFrontEnd {
        ApduFrontEnd::default()
    }

    /// The selected applet, if any.
    pub fn selected(&self) -> Option<Applet> {
        self.selected
    }

    /// Power-off, power-on or warm reset: no applet selected, no chain, no
    /// pending response, and the card's session ends (PIN and management
    /// key authentication lost).
    pub fn reset(&mut self, card: &mut Card) {
        self.forget();
        card.reset_session();
    }

    /// Forget the front end's own volatile state (not the card's session).
    pub fn forget(&mut self) {
        self.selected = None;
        self.chain = None;
        self.pending = None;
    }

    /// Process one command APDU and return the response APDU (data, then
    /// SW1 SW2; 2 to 65535 bytes). Never panics, whatever the bytes.
    pub fn process(&mut self, card: &mut Card, command: &[u8]) -> Zeroizing<Vec<u8>> {
        let before = card.command_count();
        let (response, counts) = self.dispatch(card, command);
        // Every APDU is one card command unless it continued a chain or a
        // response; one that no typed operation handled still counts (it
        // voids a preceding VERIFY for PIN policy `always`).
        if counts && card.command_count() == before {
            card.note_command();
        }
        response
    }

    /// Returns the response and whether the APDU counts as a command.
    fn dispatch(&mut self, card: &mut Card, command: &[u8]) -> (Zeroizing<Vec<u8>>, bool) {
        let apdu = match CommandApdu::parse(command) {
            Ok(apdu) => apdu,
            Err(e) => {
                tracing::debug!(len = command.len(), error = %e, "malformed command APDU");
                self.chain = None;
                self.pending = None;
                return (status(StatusWord::WrongLength), true);
            }
        };
        if apdu.cla & !CLA_CHAINING != 0 {
            // Secure messaging, logical channels, proprietary classes.
            self.chain = None;
            self.pending = None;
            return (status(StatusWord::ClaNotSupported), true);
        }
        let limit = ResponseLimit::for_command(&apdu, is_extended(command));

        if apdu.ins == ins::GET_RESPONSE && !apdu.is_chained() {
            self.chain = None;
            if apdu.p1 != 0 || apdu.p2 != 0 {
                self.pending = None;
                return (status(StatusWord::IncorrectP1P2), true);
            }
            return match self.pending.take() {
                Some(pending) => (self.send_pending(pending, limit), false),
                // Nothing to continue: a command of its own, refused.
                None => (status(StatusWord::ConditionsNotSatisfied), true),
            };
        }
        // Any other command discards an unread response (ISO 7816-4 5.3.4).
        self.pending = None;

        if apdu.is_chained() {
            return self.receive_chain_part(apdu);
        }
        let apdu = match self.chain.take() {
            Some(chain) if (chain.ins, chain.p1, chain.p2) == (apdu.ins, apdu.p1, apdu.p2) => {
                let mut data = chain.data;
                if data.len() + apdu.data.len() > MAX_CHAIN_DATA {
                    return (status(StatusWord::NotEnoughMemory), true);
                }
                data.extend_from_slice(&apdu.data);
                CommandApdu {
                    data,
                    cla: apdu.cla,
                    ins: apdu.ins,
                    p1: apdu.p1,
                    p2: apdu.p2,
                    le: apdu.le,
                }
            }
            // No chain, or another command aborts the chain.
            _ => apdu,
        };
        let response = self.execute(card, &apdu);
        (self.send(response, limit), true)
    }

    /// A non-final part of a command chain: keep its data, answer 9000.
    fn receive_chain_part(&mut self, apdu: CommandApdu) -> (Zeroizing<Vec<u8>>, bool) {
        if apdu.ins == ins::GET_RESPONSE || apdu.ins == ins::SELECT {
            self.chain = None;
            return (status(StatusWord::FunctionNotSupported), true);
        }
        match &mut self.chain {
            Some(chain) if (chain.ins, chain.p1, chain.p2) == (apdu.ins, apdu.p1, apdu.p2) => {
                if chain.data.len() + apdu.data.len() > MAX_CHAIN_DATA {
                    self.chain = None;
                    return (status(StatusWord::NotEnoughMemory), true);
                }
                chain.data.extend_from_slice(&apdu.data);
                (status(StatusWord::Success), false)
            }
            Some(_) => {
                self.chain = None;
                (status(StatusWord::from(SW_LAST_COMMAND_EXPECTED)), true)
            }
            None => {
                if apdu.data.len() > MAX_CHAIN_DATA {
                    return (status(StatusWord::NotEnoughMemory), true);
                }
                self.chain = Some(Chain {
                    ins: apdu.ins,
                    p1: apdu.p1,
                    p2: apdu.p2,
                    data: apdu.data,
                });
                (status(StatusWord::Success), false)
            }
        }
    }

    /// Execute one complete command (chains already joined).
    fn execute(&mut self, card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
        if apdu.ins == ins::SELECT {
            return self.select(card, apdu);
        }
        match self.selected {
            Some(Applet::Piv) => piv::execute(card, apdu),
            Some(Applet::Management) => yubikey_apps::management(card, apdu),
            Some(Applet::Otp) => yubikey_apps::otp(card, apdu),
            // Nothing selected (after power-on): no instruction but SELECT.
            None => ResponseApdu::status(StatusWord::InsNotSupported),
        }
    }

    /// SELECT (A4) by DF name (P1 = 04). An unknown AID leaves the current
    /// selection as it is (6A82).
    fn select(&mut self, card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
        if apdu.p1 != 0x04 {
            return ResponseApdu::status(StatusWord::IncorrectP1P2);
        }
        // P2: 00 first or only occurrence, return FCI; 0C no response data.
        if apdu.p2 & !0x0c != 0 {
            return ResponseApdu::status(StatusWord::IncorrectP1P2);
        }
        let Some(applet) = Applet::from_aid(&apdu.data) else {
            return ResponseApdu::status(StatusWord::NotFound);
        };
        if self.selected != Some(applet) {
            // Another applet: the PIV session ends, as on the device.
            card.reset_session();
            self.selected = Some(applet);
        }
        let response = match applet {
            Applet::Piv => piv::select_response(card),
            Applet::Management => yubikey_apps::management_select_response(card),
            Applet::Otp => yubikey_apps::otp_select_response(card),
        };
        if apdu.p2 & 0x0c == 0x0c {
            ResponseApdu::status(response.sw)
        } else {
            response
        }
    }

    /// Encode a response, keeping what does not fit for GET RESPONSE.
    fn send(&mut self, response: ResponseApdu, limit: ResponseLimit) -> Zeroizing<Vec<u8>> {
        if response.sw == StatusWord::Success && response.data.len() > limit.0 {
            self.send_pending(
                PendingResponse {
                    data: response.data,
                    offset: 0,
                },
                limit,
            )
        } else {
            response.to_bytes()
        }
    }

    /// The next chunk of a pending response: `61xx` while more remains
    /// (`xx` = the bytes left, 00 for 256 or more), 9000 with the last one.
    fn send_pending(
        &mut self,
        mut pending: PendingResponse,
        limit: ResponseLimit,
    ) -> Zeroizing<Vec<u8>> {
        let rest = pending.data.get(pending.offset..).unwrap_or_default();
        let take = rest.len().min(limit.0);
        let mut out = Zeroizing::new(Vec::with_capacity(take + 2));
        out.extend_from_slice(rest.get(..take).unwrap_or_default());
        let left = rest.len() - take;
        if left == 0 {
            out.extend_from_slice(&StatusWord::Success.to_bytes());
        } else {
            let announce = if left >= 256 { 0 } else { left as u8 };
            out.extend_from_slice(&StatusWord::MoreData(announce).to_bytes());
            pending.offset += take;
            self.pending = Some(pending);
        }
        out
    }
}

fn status(sw: StatusWord) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(sw.to_bytes().to_vec())
}
