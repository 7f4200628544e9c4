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
}

impl EmulatedSmartCard {
    /// Serve `token` as a smart card (its session starts fresh).
    pub fn new(mut token: EmulatedToken) -> EmulatedSmartCard {
        token.reset_session();
        EmulatedSmartCard {
            token,
            front: ApduFrontEnd::new(),
        }
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
        YUBIKEY_5_ATR.to_vec()
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
