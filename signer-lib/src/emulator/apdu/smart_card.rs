//! [`EmulatedSmartCard`]: the emulated token as a smart card for the vpcd
//! bridge: its state file, the APDU front end, the YubiKey 5 ATR.

use std::path::Path;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::ApduFrontEnd;
use crate::emulator::token::{EmulatedToken, OpenOptions};
use crate::emulator::touch::TouchSource;
use crate::error::Result;
use crate::piv::apdu::StatusWord;
use crate::transport::vpcd::{VirtualCard, YUBIKEY_5_ATR};

/// An emulated YubiKey 5 as a [`VirtualCard`]: APDUs go through the
/// [`ApduFrontEnd`] to the token's card, and every state change (a wrong-PIN
/// decrement, a new key, a data object) is written to the state file before
/// the response leaves. It holds the state file's lock for its lifetime, so
/// a second process opening the same token gets [`crate::Error::StateLocked`].
///
/// **For tests and CI only: the token's private keys are in its state file.**
#[derive(Debug)]
pub struct EmulatedSmartCard {
    token: EmulatedToken,
    front: ApduFrontEnd,
    atr: Vec<u8>,
}

/// The ATR of a YubiKey 5 NFC seen through an NFC reader ("Yubikey 5 NFC
/// (via NFC)" in pcsc-tools' `smartcard_list.txt`). ykman 5 decides the
/// transport from the ATR (USB when `T0 & F0 == F0`) and, for USB, needs the
/// USB product id that only a reader named "Yubico YubiKey ..." reveals: on
/// a reader like "Virtual PCD 00 00" it connects only when the card answers
/// this ATR. ykman 4, yubico-piv-tool, ykcs11 and OpenSC accept either.
pub const YUBIKEY_5_NFC_ATR: [u8; 18] = [
    0x3b, 0x8d, 0x80, 0x01, 0x80, 0x73, 0xc0, 0x21, 0xc0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4b, 0x65,
    0x79, 0xf9,
];

/// Which ATR the emulated card answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CardAtr {
    /// A YubiKey 5 over USB CCID ([`YUBIKEY_5_ATR`]).
    #[default]
    Usb,
    /// A YubiKey 5 NFC through an NFC reader ([`YUBIKEY_5_NFC_ATR`]); what
    /// ykman 5 needs on an external reader.
    Nfc,
}

impl CardAtr {
    /// The ATR bytes.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            CardAtr::Usb => &YUBIKEY_5_ATR,
            CardAtr::Nfc => &YUBIKEY_5_NFC_ATR,
        }
    }
}

impl EmulatedSmartCard {
    /// Serve `token` as a smart card (its session starts fresh).
    pub fn new(mut token: EmulatedToken) -> EmulatedSmartCard {
        token.reset_session();
        EmulatedSmartCard {
            token,
            front: ApduFrontEnd::new(),
            atr: YUBIKEY_5_ATR.to_vec(),
        }
    }

    /// Answer `atr` instead of the USB ATR (see [`CardAtr`]).
    pub fn with_atr(mut self, atr: CardAtr) -> EmulatedSmartCard {
        self.atr = atr.bytes().to_vec();
        self
    }

    /// Open the token stored at `path` with `touch` as its touch source and
    /// the device's touch timing.
    pub fn open(path: impl AsRef<Path>, touch: Arc<dyn TouchSource>) -> Result<EmulatedSmartCard> {
        Self::open_with(path, OpenOptions::with_touch(touch))
    }

    /// Open the token stored at `path`.
    pub fn open_with(path: impl AsRef<Path>, options: OpenOptions) -> Result<EmulatedSmartCard> {
        EmulatedToken::open_with(path, options).map(EmulatedSmartCard::new)
    }

    /// The token (e.g. its attestation root, or how many commands it ran).
    pub fn token(&self) -> &EmulatedToken {
        &self.token
    }

    /// Give the token back (releases nothing: the token keeps the lock).
    pub fn into_token(self) -> EmulatedToken {
        self.token
    }

    fn end_session(&mut self) {
        self.front.forget();
        self.token.reset_session();
    }
}

impl VirtualCard for EmulatedSmartCard {
    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }

    fn power_on(&mut self) {
        self.end_session();
    }

    fn power_off(&mut self) {
        self.end_session();
    }

    fn reset(&mut self) {
        self.end_session();
    }

    fn transmit(&mut self, command: &[u8]) -> Zeroizing<Vec<u8>> {
        let front = &mut self.front;
        match self.token.with_card(|card| front.process(card, command)) {
            Ok(response) => response,
            Err(e) => {
                // The command ran but its effect is not on disk: do not
                // report its outcome. The change stays in memory and is
                // written with the next change that persists.
                tracing::error!(
                    error = %e,
                    "cannot save the emulated token's state; answering 6581 (memory failure)"
                );
                self.front.forget();
                Zeroizing::new(StatusWord::MemoryFailure.to_bytes().to_vec())
            }
        }
    }
}
