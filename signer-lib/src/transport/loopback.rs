//! An in-process transport: the PIV client talks straight to a
//! [`VirtualCard`] (normally the emulated YubiKey's APDU front end), with no
//! pcscd in between. Fast, deterministic tests of the PIV client and the
//! hardware token; the same bytes go over PC/SC in the end-to-end tests.
//!
//! [`SharedCard`] is the card "in its reader": several transports (several
//! simulated processes) can connect to it, one transaction at a time, and a
//! test can reset it, remove it or count its APDUs.

use std::sync::{Arc, Mutex, MutexGuard};

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::transport::vpcd::VirtualCard;
use crate::transport::{ApduLink, CardTransport};

struct Slot {
    card: Box<dyn VirtualCard + Send>,
    present: bool,
    /// Bumped by every reset; a connection made before it sees one
    /// `CardReset` (like `SCARD_W_RESET_CARD`).
    generation: u64,
    /// The instruction byte of every APDU the card received.
    log: Vec<u8>,
}

/// A virtual card in a virtual reader, shared by any number of
/// [`LoopbackTransport`]s.
#[derive(Clone)]
pub struct SharedCard {
    name: String,
    slot: Arc<Mutex<Slot>>,
}

impl std::fmt::Debug for SharedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCard")
            .field("name", &self.name)
            .finish()
    }
}

impl SharedCard {
    /// Insert `card` (powered on) into a reader called `name`.
    pub fn new(name: impl Into<String>, mut card: Box<dyn VirtualCard + Send>) -> SharedCard {
        card.power_on();
        SharedCard {
            name: name.into(),
            slot: Arc::new(Mutex::new(Slot {
                card,
                present: true,
                generation: 0,
                log: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // A panicking test thread must not wedge the others.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connect, as a PC/SC client would (shared mode).
    pub fn connect(&self) -> Result<LoopbackTransport> {
        let slot = self.lock();
        if !slot.present {
            return Err(Error::CardRemoved {
                detail: format!("reader {:?}: no card", self.name),
            });
        }
        Ok(LoopbackTransport {
            card: self.clone(),
            generation: slot.generation,
        })
    }

    /// Reset the card, as another program's `SCARD_RESET_CARD` would: its
    /// session ends and every existing connection sees one [`Error::CardReset`].
    pub fn reset(&self) {
        let mut slot = self.lock();
        slot.card.reset();
        slot.generation += 1;
    }

    /// Pull the card out (`present = false`) or push it back in (powered on).
    pub fn set_present(&self, present: bool) {
        let mut slot = self.lock();
        if slot.present && !present {
            slot.card.power_off();
        } else if !slot.present && present {
            slot.card.power_on();
        }
        slot.present = present;
        slot.generation += 1;
    }

    /// Send APDUs as another program would (no transaction of ours).
    pub fn transmit_raw(&self, command: &[u8]) -> Zeroizing<Vec<u8>> {
        let mut slot = self.lock();
        slot.log.push(command.get(1).copied().unwrap_or(0));
        slot.card.transmit(command)
    }

    /// The instruction bytes of every APDU received so far.
    pub fn instructions(&self) -> Vec<u8> {
        self.lock().log.clone()
    }

    /// Forget the APDU log.
    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    /// Run `f` on the card itself (e.g. to read the emulator's counters).
    pub fn with_card<T>(&self, f: impl FnOnce(&mut dyn VirtualCard) -> T) -> T {
        let mut slot = self.lock();
        f(slot.card.as_mut())
    }

    /// The reader's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// One connection to a [`SharedCard`].
#[derive(Debug)]
pub struct LoopbackTransport {
    card: SharedCard,
    generation: u64,
}

struct LoopbackLink<'a> {
    slot: MutexGuard<'a, Slot>,
}

impl ApduLink for LoopbackLink<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.slot.log.push(command.get(1).copied().unwrap_or(0));
        Ok(self.slot.card.transmit(command))
    }
}

impl CardTransport for LoopbackTransport {
    fn reader(&self) -> &str {
        &self.card.name
    }

    fn transaction(&mut self, body: &mut dyn FnMut(&mut dyn ApduLink) -> Result<()>) -> Result<()> {
        let slot = self.card.lock();
        if !slot.present {
            return Err(Error::CardRemoved {
                detail: format!("reader {:?}: no card", self.card.name),
            });
        }
        if slot.generation != self.generation {
            self.generation = slot.generation;
            return Err(Error::CardReset);
        }
        let mut link = LoopbackLink { slot };
        body(&mut link)
    }
}
