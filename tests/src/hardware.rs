//! The hardware backend ([`HardwareToken`]) against the emulated YubiKey
//! served through a real pcscd and vpcd: an emulated card behind a vpcd
//! bridge ([`EmulatedCardInReader`]), an APDU-counting card wrapper
//! ([`CountingCard`]), and the [`TokenFixture`] that runs the shared Token
//! suite over PC/SC ([`VpcdFixture`]). Use inside a sandboxed test
//! ([`crate::sandboxed_test!`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use signer_lib::emulator::{EmulatedSmartCard, EmulatedToken, InitOptions, OpenOptions};
use signer_lib::piv_client::{HardwareToken, PcscConnector, TouchAssumptions};
use signer_lib::testing::{Capabilities, TokenFixture, TouchSetup};
use signer_lib::transport::vpcd::{self, BridgeConfig, BridgeHandle, SendCard, VirtualCard};
use signer_lib::{ManagementKey, Result};
use zeroize::Zeroizing;

use crate::pcsc_client::{establish, wait_for_card};
use crate::pcsc_sandbox::VirtualReader;

/// How long tests wait for a card to appear or go.
pub const CARD_WAIT: Duration = Duration::from_secs(20);

/// The instruction bytes a card received, shared with the test.
pub type ApduLog = Arc<Mutex<Vec<u8>>>;

/// A [`VirtualCard`] that records the instruction byte of every APDU.
pub struct CountingCard {
    inner: SendCard,
    log: ApduLog,
}

impl CountingCard {
    /// Wrap `inner`; returns the card and its log.
    pub fn new(inner: SendCard) -> (CountingCard, ApduLog) {
        let log = ApduLog::default();
        (
            CountingCard {
                inner,
                log: log.clone(),
            },
            log,
        )
    }
}

impl VirtualCard for CountingCard {
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn power_on(&mut self) {
        self.inner.power_on()
    }
    fn power_off(&mut self) {
        self.inner.power_off()
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    fn transmit(&mut self, command: &[u8]) -> Zeroizing<Vec<u8>> {
        if let Ok(mut log) = self.log.lock() {
            log.push(command.get(1).copied().unwrap_or(0));
        }
        self.inner.transmit(command)
    }
}

/// Take (and clear) what a log recorded.
pub fn take_log(log: &ApduLog) -> Vec<u8> {
    log.lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default()
}

/// An emulated YubiKey in a virtual reader of the sandbox's pcscd.
pub struct EmulatedCardInReader {
    /// The reader.
    pub reader: VirtualReader,
    /// The bridge (None while the card is out).
    pub bridge: Option<BridgeHandle>,
    /// The card, while out of the reader.
    parked: Option<SendCard>,
    /// Instruction bytes of every APDU the card received.
    pub log: ApduLog,
    /// The emulated attestation root (DER).
    pub root: Vec<u8>,
    /// The state file.
    pub state: PathBuf,
    /// The token's serial.
    pub serial: u32,
}

impl EmulatedCardInReader {
    /// Make a factory-fresh emulated token in `dir` and insert it into `reader`.
    pub fn insert_new(
        reader: &VirtualReader,
        dir: &std::path::Path,
        touch: &TouchSetup,
        options: &InitOptions,
    ) -> Result<EmulatedCardInReader> {
        let state = dir.join(format!("card-{}.state", reader.port));
        let _ = std::fs::remove_file(&state);
        let mut token = EmulatedToken::init_with(
            &state,
            options,
            OpenOptions {
                touch: touch.source.clone(),
                timing: touch.timing,
            },
        )?;
        let root = token.attestation_root_der()?;
        let serial = signer_lib::Token::info(&mut token)?.serial;
        let (card, log) = CountingCard::new(Box::new(EmulatedSmartCard::new(token)));
        let mut me = EmulatedCardInReader {
            reader: reader.clone(),
            bridge: None,
            parked: Some(Box::new(card)),
            log,
            root,
            state,
            serial,
        };
        me.insert()?;
        Ok(me)
    }

    /// Put the card (back) into the reader and wait until pcscd sees it.
    pub fn insert(&mut self) -> Result<()> {
        let Some(card) = self.parked.take() else {
            return Ok(());
        };
        let bridge = vpcd::spawn(card, BridgeConfig::new(self.reader.vpcd_address()))?;
        self.bridge = Some(bridge);
        self.wait(true)
    }

    /// Pull the card out (the bridge stops; the card powers off) and wait
    /// until pcscd sees it gone.
    pub fn remove(&mut self) -> Result<()> {
        if let Some(bridge) = self.bridge.take() {
            let (card, _) = bridge.stop()?;
            self.parked = Some(card);
        }
        self.wait(false)
    }

    /// Simulate a crash of the bridge (cut mid-APDU); the card is out.
    pub fn crash(&mut self) -> Result<()> {
        if let Some(bridge) = self.bridge.take() {
            let (card, _) = bridge.abort()?;
            self.parked = Some(card);
        }
        Ok(())
    }

    /// Wait until pcscd sees the card present (or absent).
    pub fn wait(&self, present: bool) -> Result<()> {
        let ctx = establish(CARD_WAIT).map_err(unavailable)?;
        wait_for_card(&ctx, &self.reader.name, present, CARD_WAIT).map_err(unavailable)?;
        Ok(())
    }
}

fn unavailable(reason: String) -> signer_lib::Error {
    signer_lib::Error::Unavailable { reason }
}

/// Open the only token through the sandbox's pcscd.
pub fn open_hardware(touch: TouchAssumptions) -> Result<HardwareToken> {
    let mut token = HardwareToken::open(Box::new(PcscConnector::default()), None)?;
    token.set_touch_assumptions(touch);
    Ok(token)
}

/// The shared Token suite's fixture for [`HardwareToken`] through pcscd and
/// vpcd: each fresh token is a new emulated card in reader 0.
pub struct VpcdFixture {
    reader: VirtualReader,
    dir: tempfile::TempDir,
    card: Option<EmulatedCardInReader>,
    touch: TouchAssumptions,
    options: InitOptions,
}

impl VpcdFixture {
    /// A fixture using `reader` (cards with the default options: 5.7.4).
    pub fn new(reader: &VirtualReader) -> VpcdFixture {
        VpcdFixture::with_options(reader, InitOptions::default())
    }

    /// Cards made with `options` (e.g. another firmware generation).
    pub fn with_options(reader: &VirtualReader, options: InitOptions) -> VpcdFixture {
        VpcdFixture {
            reader: reader.clone(),
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
            card: None,
            touch: TouchAssumptions::default(),
            options,
        }
    }
}

impl Drop for VpcdFixture {
    fn drop(&mut self) {
        // The next fixture must not mistake this card for its own.
        if let Some(mut card) = self.card.take() {
            let _ = card.remove();
        }
    }
}

impl TokenFixture for VpcdFixture {
    type Token = HardwareToken;

    fn fresh(&mut self, touch: TouchSetup) -> Result<HardwareToken> {
        if let Some(mut old) = self.card.take() {
            old.remove()?;
        }
        self.touch = TouchAssumptions {
            timeout: touch.timing.timeout,
            cache: touch.timing.cache,
        };
        self.card = Some(EmulatedCardInReader::insert_new(
            &self.reader,
            self.dir.path(),
            &touch,
            &self.options,
        )?);
        open_hardware(self.touch)
    }

    fn reopen(&mut self, token: HardwareToken) -> Result<HardwareToken> {
        drop(token);
        if let Some(card) = self.card.as_mut() {
            card.remove()?;
            card.insert()?;
        }
        open_hardware(self.touch)
    }

    fn attestation_roots(&mut self, _token: &mut HardwareToken) -> Result<Vec<Vec<u8>>> {
        Ok(self.card.iter().map(|c| c.root.clone()).collect())
    }

    fn factory_management_key(&self) -> ManagementKey {
        let algorithm = self.options.management_key_algorithm.unwrap_or_else(|| {
            signer_lib::emulator::card::default_management_key_algorithm(self.options.firmware)
        });
        ManagementKey::default_for(algorithm)
            .unwrap_or_else(|e| panic!("default management key: {e}"))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            touch_control: true,
            touch_denied_is_distinct: false,
        }
    }
}
