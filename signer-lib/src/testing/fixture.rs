//! What a backend provides to run the shared suite.

use std::sync::Arc;
use std::time::Duration;

use crate::emulator::touch::{ApproveTouch, DenyTouch, TouchButton, TouchSource, TouchTiming};
use crate::error::Result;
use crate::secret::ManagementKey;
use crate::token::Token;

/// Where the touches of a fresh token come from, and how long it waits for
/// them and caches them.
#[derive(Clone, Debug)]
pub struct TouchSetup {
    /// The touch source.
    pub source: Arc<dyn TouchSource>,
    /// Timeout and cache duration.
    pub timing: TouchTiming,
}

impl TouchSetup {
    /// Approve every touch at once (the CI default), device timing.
    pub fn approve() -> TouchSetup {
        TouchSetup {
            source: Arc::new(ApproveTouch),
            timing: TouchTiming::default(),
        }
    }

    /// Refuse every touch.
    pub fn deny() -> TouchSetup {
        TouchSetup {
            source: Arc::new(DenyTouch),
            timing: TouchTiming::default(),
        }
    }

    /// Touches come from `button`; wait at most `timeout`, cache for `cache`.
    pub fn button(button: &TouchButton, timeout: Duration, cache: Duration) -> TouchSetup {
        TouchSetup {
            source: Arc::new(button.clone()),
            timing: TouchTiming { timeout, cache },
        }
    }
}

/// What a backend can do under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The fixture honours [`TouchSetup`] (source and timing). When false,
    /// the touch cases are skipped with a message.
    pub touch_control: bool,
    /// A refused touch surfaces as [`crate::Error::TouchDenied`]; when false
    /// the suite also accepts [`crate::Error::TouchTimeout`] (a real card
    /// cannot tell a refusal from no touch).
    pub touch_denied_is_distinct: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            touch_control: true,
            touch_denied_is_distinct: true,
        }
    }
}

/// A source of fresh tokens for the shared suite.
pub trait TokenFixture {
    /// The backend's token type.
    type Token: Token;

    /// A token in factory state: PIN `123456` and PUK `12345678` with three
    /// tries each, the factory management key, no keys in any slot, the
    /// attestation key and certificate in f9, and touches from `touch`.
    fn fresh(&mut self, touch: TouchSetup) -> Result<Self::Token>;

    /// End `token`'s session (as unplugging and replugging would) and open
    /// the same token again. PIN verification must be lost; everything on
    /// the token must be kept.
    fn reopen(&mut self, token: Self::Token) -> Result<Self::Token>;

    /// The DER root certificates the token's attestations chain to.
    fn attestation_roots(&mut self, token: &mut Self::Token) -> Result<Vec<Vec<u8>>>;

    /// The factory management key of a fresh token.
    fn factory_management_key(&self) -> ManagementKey;

    /// What the backend can do under test.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}
