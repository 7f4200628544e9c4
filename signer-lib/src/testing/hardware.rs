//! The fixture for [`HardwareToken`] over the in-process loopback transport:
//! the PIV client talks APDUs to the emulated YubiKey's front end
//! ([`EmulatedSmartCard`]) with no pcscd in between. The same client talks
//! to the same card through pcscd/vpcd in the `signer-e2e` tests.

use std::collections::HashMap;

use crate::emulator::card::default_management_key_algorithm;
use crate::emulator::{EmulatedSmartCard, EmulatedToken, InitOptions, OpenOptions};
use crate::error::Result;
use crate::piv_client::{HardwareToken, LoopbackConnector, TouchAssumptions};
use crate::secret::ManagementKey;
use crate::testing::EmulatedFixture;
use crate::testing::fixture::{Capabilities, TokenFixture, TouchSetup};
use crate::transport::loopback::SharedCard;

/// Hands out [`HardwareToken`]s, each over a fresh emulated card in its own
/// loopback "reader".
#[derive(Debug)]
pub struct LoopbackFixture {
    files: EmulatedFixture,
    options: InitOptions,
    cards: HashMap<u32, (SharedCard, Vec<u8>, TouchAssumptions)>,
}

impl LoopbackFixture {
    /// A fixture with a temporary directory for the cards' state files
    /// (cards with the default options: firmware 5.7.4).
    pub fn new() -> LoopbackFixture {
        LoopbackFixture::with_options(InitOptions::default())
    }

    /// Cards made with `options` (e.g. firmware 4.3.7 or 5.2.7: no GET
    /// METADATA, so the PIV client learns keys from their attestation).
    pub fn with_options(options: InitOptions) -> LoopbackFixture {
        LoopbackFixture {
            files: EmulatedFixture::new(),
            options,
            cards: HashMap::new(),
        }
    }

    /// The card behind `token` (to reset it, pull it, count its APDUs).
    pub fn card(&self, token: &HardwareToken) -> SharedCard {
        match self.cards.get(&token.serial()) {
            Some((card, _, _)) => card.clone(),
            None => panic!("token {} was not made by this fixture", token.serial()),
        }
    }

    /// A new emulated card (factory state) in its loopback reader.
    pub fn fresh_card(&mut self, touch: &TouchSetup) -> Result<(SharedCard, Vec<u8>)> {
        let path = self.files.new_path();
        let token = EmulatedToken::init_with(
            &path,
            &self.options,
            OpenOptions {
                touch: touch.source.clone(),
                timing: touch.timing,
            },
        )?;
        let root = token.attestation_root_der()?;
        let card = SharedCard::new("Loopback 00 00", Box::new(EmulatedSmartCard::new(token)));
        Ok((card, root))
    }

    fn open(card: &SharedCard, touch: TouchAssumptions) -> Result<HardwareToken> {
        let mut token =
            HardwareToken::open(Box::new(LoopbackConnector { card: card.clone() }), None)?;
        token.set_touch_assumptions(touch);
        Ok(token)
    }
}

impl Default for LoopbackFixture {
    fn default() -> Self {
        LoopbackFixture::new()
    }
}

impl TokenFixture for LoopbackFixture {
    type Token = HardwareToken;

    fn fresh(&mut self, touch: TouchSetup) -> Result<HardwareToken> {
        let assumptions = TouchAssumptions {
            timeout: touch.timing.timeout,
            cache: touch.timing.cache,
        };
        let (card, root) = self.fresh_card(&touch)?;
        let token = LoopbackFixture::open(&card, assumptions)?;
        self.cards.insert(token.serial(), (card, root, assumptions));
        Ok(token)
    }

    fn reopen(&mut self, token: HardwareToken) -> Result<HardwareToken> {
        let serial = token.serial();
        drop(token);
        let Some((card, _, touch)) = self.cards.get(&serial) else {
            panic!("token {serial} was not made by this fixture");
        };
        // Unplug and plug in again: the session ends.
        card.set_present(false);
        card.set_present(true);
        LoopbackFixture::open(card, *touch)
    }

    fn attestation_roots(&mut self, token: &mut HardwareToken) -> Result<Vec<Vec<u8>>> {
        match self.cards.get(&token.serial()) {
            Some((_, root, _)) => Ok(vec![root.clone()]),
            None => panic!("token {} was not made by this fixture", token.serial()),
        }
    }

    fn factory_management_key(&self) -> ManagementKey {
        let algorithm = self
            .options
            .management_key_algorithm
            .unwrap_or_else(|| default_management_key_algorithm(self.options.firmware));
        ManagementKey::default_for(algorithm)
            .unwrap_or_else(|e| panic!("default management key: {e}"))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            touch_control: true,
            // A YubiKey answers 6982 for "no touch"; a refusal looks the same.
            touch_denied_is_distinct: false,
        }
    }
}
