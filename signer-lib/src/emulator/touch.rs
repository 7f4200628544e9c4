//! Where the emulated token's "touch" comes from.
//!
//! A YubiKey with a touch-policy key blinks and waits up to 15 seconds for a
//! person to touch its contact. The emulator asks a [`TouchSource`] instead:
//!
//! - [`ApproveTouch`]: every touch request is granted at once (the CI default,
//!   so pipelines can sign keys created with `--touch-policy always`);
//! - [`DenyTouch`]: every touch request is refused ([`crate::Error::TouchDenied`]);
//! - [`TouchButton`]: a button a test (or a person) presses from another thread;
//!   the token waits for it up to the timeout, like the device.
//!
//! As on the device, a touch counts only while the token is waiting for one
//! ("blinking"): the token calls [`TouchSource::arm`] before it reports
//! [`crate::TokenEvent::TouchRequired`], and a press before that is ignored.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::SlotId;

/// How long the device waits for a touch.
pub const DEVICE_TOUCH_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a touch stays valid for keys with touch policy `cached`.
pub const DEVICE_TOUCH_CACHE: Duration = Duration::from_secs(15);

/// What happened while the token waited for a touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TouchOutcome {
    /// Somebody touched the token.
    Touched,
    /// The touch source refused.
    Denied,
    /// Nobody touched the token within the timeout.
    TimedOut,
}

/// A source of physical touches for the emulated token.
pub trait TouchSource: Send + Sync + fmt::Debug {
    /// The token starts waiting (blinking) for a touch for `slot`'s key;
    /// from now on a touch counts. Called before the token reports
    /// [`crate::TokenEvent::TouchRequired`].
    fn arm(&self, slot: SlotId) {
        let _ = slot;
    }

    /// Block until the token is touched, the source refuses, or `timeout`
    /// passes.
    fn wait(&self, slot: SlotId, timeout: Duration) -> TouchOutcome;
}

/// Grants every touch at once (CI default).
#[derive(Clone, Copy, Debug, Default)]
pub struct ApproveTouch;

impl TouchSource for ApproveTouch {
    fn wait(&self, _slot: SlotId, _timeout: Duration) -> TouchOutcome {
        TouchOutcome::Touched
    }
}

/// Grants every touch after a fixed time, without using the CPU: a person
/// who always touches after that long, or, for a benchmark, a token whose
/// signatures take that long (how throughput scales with tokens when the
/// tokens, not the machine, are the limit). A touch that would come after
/// the token's timeout does not come.
#[derive(Clone, Copy, Debug, Default)]
pub struct DelayedTouch(pub Duration);

impl TouchSource for DelayedTouch {
    fn wait(&self, _slot: SlotId, timeout: Duration) -> TouchOutcome {
        if self.0 > timeout {
            std::thread::sleep(timeout);
            return TouchOutcome::TimedOut;
        }
        std::thread::sleep(self.0);
        TouchOutcome::Touched
    }
}

/// Refuses every touch.
#[derive(Clone, Copy, Debug, Default)]
pub struct DenyTouch;

impl TouchSource for DenyTouch {
    fn wait(&self, _slot: SlotId, _timeout: Duration) -> TouchOutcome {
        TouchOutcome::Denied
    }
}

#[derive(Debug, Default)]
struct ButtonState {
    /// The token is waiting for a touch.
    armed: bool,
    /// A press arrived while armed.
    pressed: bool,
    /// The slot the token is waiting for.
    slot: Option<SlotId>,
    /// How many times the token has started waiting (for tests).
    waits: u64,
}

#[derive(Debug, Default)]
struct ButtonInner {
    state: Mutex<ButtonState>,
    changed: Condvar,
}

/// A touch button pressed explicitly, e.g. by a test thread or an operator
/// prompt. Clones share one button: hand one clone to the token as its
/// [`TouchSource`] and keep another to [`press`](TouchButton::press) it.
#[derive(Clone, Debug, Default)]
pub struct TouchButton {
    inner: Arc<ButtonInner>,
}

impl TouchButton {
    /// A new, unpressed button.
    pub fn new() -> TouchButton {
        TouchButton::default()
    }

    fn lock(&self) -> MutexGuard<'_, ButtonState> {
        // A panic in another holder cannot leave the state inconsistent (it
        // is a few flags), so a poisoned lock is simply taken over.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Touch the token. Counts only while the token is waiting for a touch,
    /// like the device; returns whether the press counted.
    pub fn press(&self) -> bool {
        let mut state = self.lock();
        if !state.armed {
            return false;
        }
        state.pressed = true;
        self.inner.changed.notify_all();
        true
    }

    /// Whether the token is waiting for a touch right now ("blinking"), and
    /// for which slot.
    pub fn waiting_for(&self) -> Option<SlotId> {
        let state = self.lock();
        if state.armed { state.slot } else { None }
    }

    /// Block until the token waits for a touch, at most `timeout`; returns
    /// whether it does. For tests that press from another thread.
    pub fn wait_until_waiting(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while !state.armed {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .inner
                .changed
                .wait_timeout(state, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        true
    }

    /// How many times a token has started waiting on this button.
    pub fn times_waited(&self) -> u64 {
        self.lock().waits
    }
}

impl TouchSource for TouchButton {
    fn arm(&self, slot: SlotId) {
        let mut state = self.lock();
        state.armed = true;
        state.pressed = false;
        state.slot = Some(slot);
        state.waits += 1;
        self.inner.changed.notify_all();
    }

    fn wait(&self, slot: SlotId, timeout: Duration) -> TouchOutcome {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        if !state.armed {
            // A caller that did not arm first still gets device semantics.
            state.armed = true;
            state.pressed = false;
            state.slot = Some(slot);
            state.waits += 1;
            self.inner.changed.notify_all();
        }
        let outcome = loop {
            if state.pressed {
                break TouchOutcome::Touched;
            }
            let now = Instant::now();
            if now >= deadline {
                break TouchOutcome::TimedOut;
            }
            state = self
                .inner
                .changed
                .wait_timeout(state, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        };
        state.armed = false;
        state.pressed = false;
        state.slot = None;
        self.inner.changed.notify_all();
        outcome
    }
}

/// How long the token waits for a touch and how long a `cached` touch lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TouchTiming {
    /// How long the token waits for a touch (15 s on the device).
    pub timeout: Duration,
    /// How long a touch satisfies keys with touch policy `cached` (15 s on
    /// the device).
    pub cache: Duration,
}

impl Default for TouchTiming {
    fn default() -> Self {
        TouchTiming {
            timeout: DEVICE_TOUCH_TIMEOUT,
            cache: DEVICE_TOUCH_CACHE,
        }
    }
}

/// The touch sources that can be named on a command line or in an
/// environment variable (`approve`, `deny`, `approve-after:MS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TouchMode {
    /// [`ApproveTouch`].
    Approve,
    /// [`DenyTouch`].
    Deny,
    /// [`DelayedTouch`]: `approve-after:MS`, 1 to 60000 milliseconds.
    ApproveAfter(Duration),
}

impl TouchMode {
    /// The environment variable the CLIs read to pick the emulated token's
    /// touch source (default `approve`).
    pub const ENV: &'static str = "SIGNER_EMULATED_TOUCH";

    /// The source.
    pub fn source(self) -> Arc<dyn TouchSource> {
        match self {
            TouchMode::Approve => Arc::new(ApproveTouch),
            TouchMode::Deny => Arc::new(DenyTouch),
            TouchMode::ApproveAfter(d) => Arc::new(DelayedTouch(d)),
        }
    }

    /// From [`TouchMode::ENV`], `approve` when unset.
    pub fn from_env() -> Result<TouchMode> {
        match std::env::var(Self::ENV) {
            Ok(v) => v.parse(),
            Err(std::env::VarError::NotPresent) => Ok(TouchMode::Approve),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidPolicy {
                policy: format!("emulated touch mode in {} (not UTF-8)", Self::ENV),
            }),
        }
    }
}

impl FromStr for TouchMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<TouchMode> {
        let lower = s.trim().to_ascii_lowercase();
        let refuse = || Error::InvalidPolicy {
            policy: format!(
                "emulated touch mode {s:?} (use approve, deny or approve-after:MS with MS from 1 to 60000)"
            ),
        };
        match lower.as_str() {
            "approve" | "" => Ok(TouchMode::Approve),
            "deny" => Ok(TouchMode::Deny),
            other => {
                let ms = other
                    .strip_prefix("approve-after:")
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .filter(|ms| (1..=60_000).contains(ms))
                    .ok_or_else(refuse)?;
                Ok(TouchMode::ApproveAfter(Duration::from_millis(ms)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_modes_parse_and_refuse() {
        assert_eq!("approve".parse::<TouchMode>().unwrap(), TouchMode::Approve);
        assert_eq!(" Deny ".parse::<TouchMode>().unwrap(), TouchMode::Deny);
        assert_eq!(
            "approve-after:25".parse::<TouchMode>().unwrap(),
            TouchMode::ApproveAfter(Duration::from_millis(25))
        );
        for bad in [
            "approve-after:",
            "approve-after:0",
            "approve-after:60001",
            "approve-after:-5",
            "approve-after:1.5",
            "approve-after",
            "maybe",
        ] {
            let e = bad.parse::<TouchMode>().unwrap_err().to_string();
            assert!(e.contains("approve-after:MS"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_delayed_touch_comes_after_its_time_and_not_after_the_timeout() {
        let source = TouchMode::ApproveAfter(Duration::from_millis(30)).source();
        let t = std::time::Instant::now();
        assert_eq!(
            source.wait(SlotId::Signature, Duration::from_secs(5)),
            TouchOutcome::Touched
        );
        assert!(t.elapsed() >= Duration::from_millis(30));
        let slow = TouchMode::ApproveAfter(Duration::from_secs(20)).source();
        let t = std::time::Instant::now();
        assert_eq!(
            slow.wait(SlotId::Signature, Duration::from_millis(10)),
            TouchOutcome::TimedOut
        );
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(10) && waited < Duration::from_secs(20),
            "{waited:?}"
        );
    }

    #[test]
    fn a_press_counts_only_while_waiting() {
        let button = TouchButton::new();
        assert!(!button.press(), "nobody is waiting");
        assert_eq!(
            button.wait(SlotId::Signature, Duration::from_millis(20)),
            TouchOutcome::TimedOut,
            "an early press must not be remembered"
        );
        let presser = button.clone();
        let t = std::thread::spawn(move || {
            assert!(presser.wait_until_waiting(Duration::from_secs(5)));
            assert_eq!(presser.waiting_for(), Some(SlotId::Signature));
            assert!(presser.press());
        });
        button.arm(SlotId::Signature);
        assert_eq!(
            button.wait(SlotId::Signature, Duration::from_secs(5)),
            TouchOutcome::Touched
        );
        t.join().unwrap();
        assert_eq!(button.waiting_for(), None);
        assert_eq!(button.times_waited(), 2);
    }

    #[test]
    fn modes_parse() {
        assert_eq!("approve".parse::<TouchMode>().unwrap(), TouchMode::Approve);
        assert_eq!("DENY".parse::<TouchMode>().unwrap(), TouchMode::Deny);
        assert!("maybe".parse::<TouchMode>().is_err());
    }
}
