//! A small [`VirtualCard`] for testing the vpcd bridge and the sandbox
//! without the emulated token: it answers SELECT with 9000, echoes other
//! commands' data, returns long data on request, and counts what happens to
//! it (shared counters, readable after the card moved to a bridge thread).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use signer_lib::piv::apdu::{CommandApdu, ResponseApdu, StatusWord};
use signer_lib::transport::vpcd::{VirtualCard, YUBIKEY_5_ATR};
use zeroize::Zeroizing;

/// INS of the "give me N bytes" command: P1P2 is N (big-endian); the card
/// answers N bytes `i % 251` then 9000. For extended-length response tests.
pub const INS_READ_PATTERN: u8 = 0xb0;
/// INS of the echo command: the card answers its tag byte, the command
/// data, then 9000.
pub const INS_ECHO: u8 = 0xee;
/// INS of the slow command: the card takes P1 × 100 ms, then answers 9000
/// (a signature waiting for a touch; for killing the bridge mid-command).
pub const INS_SLOW: u8 = 0x5a;

/// What happened to a [`TestCard`] (shared with the test).
#[derive(Debug, Default)]
pub struct TestCardCounters {
    /// Power-on requests.
    pub power_on: AtomicU64,
    /// Power-off requests (including lost connections).
    pub power_off: AtomicU64,
    /// Reset requests.
    pub reset: AtomicU64,
    /// Command APDUs processed.
    pub commands: AtomicU64,
}

impl TestCardCounters {
    /// Read a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

/// The test card. Its ATR is a YubiKey 5's unless set otherwise.
#[derive(Debug, Clone)]
pub struct TestCard {
    atr: Vec<u8>,
    counters: Arc<TestCardCounters>,
    /// Bytes that make a response distinguishable per card (several cards).
    tag: u8,
}

impl TestCard {
    /// A card whose echo answers carry `tag` first (tell cards apart).
    pub fn new(tag: u8) -> TestCard {
        TestCard {
            atr: YUBIKEY_5_ATR.to_vec(),
            counters: Arc::new(TestCardCounters::default()),
            tag,
        }
    }

    /// The shared counters.
    pub fn counters(&self) -> Arc<TestCardCounters> {
        self.counters.clone()
    }

    fn process(&self, command: &[u8]) -> ResponseApdu {
        let Ok(apdu) = CommandApdu::parse(command) else {
            return ResponseApdu::status(StatusWord::WrongLength);
        };
        match apdu.ins {
            0xa4 => ResponseApdu::status(StatusWord::Success),
            INS_ECHO => {
                let mut data = vec![self.tag];
                data.extend_from_slice(&apdu.data);
                ResponseApdu::new(data, StatusWord::Success)
            }
            INS_READ_PATTERN => {
                let n = usize::from(u16::from_be_bytes([apdu.p1, apdu.p2]));
                let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                ResponseApdu::new(data, StatusWord::Success)
            }
            INS_SLOW => {
                std::thread::sleep(std::time::Duration::from_millis(100 * u64::from(apdu.p1)));
                ResponseApdu::status(StatusWord::Success)
            }
            _ => ResponseApdu::status(StatusWord::InsNotSupported),
        }
    }
}

impl VirtualCard for TestCard {
    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }
    fn power_on(&mut self) {
        self.counters.power_on.fetch_add(1, Ordering::SeqCst);
    }
    fn power_off(&mut self) {
        self.counters.power_off.fetch_add(1, Ordering::SeqCst);
    }
    fn reset(&mut self) {
        self.counters.reset.fetch_add(1, Ordering::SeqCst);
    }
    fn transmit(&mut self, command: &[u8]) -> Zeroizing<Vec<u8>> {
        self.counters.commands.fetch_add(1, Ordering::SeqCst);
        self.process(command).to_bytes()
    }
}
