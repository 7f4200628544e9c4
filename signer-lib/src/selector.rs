//! Which token to open: the `--token` argument of the CLIs and the daemon's
//! configuration.
//!
//! - `emulated:FILE`: the emulated token whose state is in `FILE`
//!   (tests and CI only);
//! - `yubikey`: the only YubiKey connected;
//! - `yubikey:SERIAL`: the YubiKey with that serial number.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::emulator::{EmulatedToken, OpenOptions};
use crate::error::{Error, Result};
use crate::token::Token;

/// A parsed token selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSelector {
    /// `emulated:FILE`.
    Emulated(PathBuf),
    /// `yubikey` (`serial: None`) or `yubikey:SERIAL`.
    YubiKey {
        /// The serial to select, or `None` for "the only one".
        serial: Option<u32>,
    },
}

/// How to open the token a selector names.
#[derive(Clone, Debug, Default)]
pub struct OpenConfig {
    /// For `emulated:FILE`: touch source and timing.
    pub emulated: OpenOptions,
}

impl TokenSelector {
    /// Open the token.
    pub fn open(&self, config: &OpenConfig) -> Result<Box<dyn Token>> {
        match self {
            TokenSelector::Emulated(_) => Ok(Box::new(self.open_emulated(config)?)),
            TokenSelector::YubiKey { serial } => {
                Ok(Box::new(crate::piv_client::open_yubikey(*serial)?))
            }
        }
    }

    /// Open an `emulated:FILE` token as its concrete type (for emulator-only
    /// operations such as printing its attestation root). Fails for other
    /// selectors.
    pub fn open_emulated(&self, config: &OpenConfig) -> Result<EmulatedToken> {
        match self {
            TokenSelector::Emulated(path) => {
                EmulatedToken::open_with(path, config.emulated.clone())
            }
            other => Err(Error::InvalidSelector {
                selector: format!("{other} (an emulated:FILE token is needed here)"),
            }),
        }
    }

    /// Whether this names an emulated token.
    pub fn is_emulated(&self) -> bool {
        matches!(self, TokenSelector::Emulated(_))
    }
}

impl FromStr for TokenSelector {
    type Err = Error;

    fn from_str(s: &str) -> Result<TokenSelector> {
        let invalid = || Error::InvalidSelector {
            selector: s.to_string(),
        };
        if let Some(path) = s.strip_prefix("emulated:") {
            if path.is_empty() {
                return Err(invalid());
            }
            return Ok(TokenSelector::Emulated(PathBuf::from(path)));
        }
        match s.split_once(':') {
            None if s.eq_ignore_ascii_case("yubikey") => {
                Ok(TokenSelector::YubiKey { serial: None })
            }
            Some((kind, serial)) if kind.eq_ignore_ascii_case("yubikey") => {
                if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                let serial = serial.parse::<u32>().map_err(|_| invalid())?;
                Ok(TokenSelector::YubiKey {
                    serial: Some(serial),
                })
            }
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::Emulated(path) => write!(f, "emulated:{}", path.display()),
            TokenSelector::YubiKey { serial: None } => f.write_str("yubikey"),
            TokenSelector::YubiKey { serial: Some(s) } => write!(f, "yubikey:{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, sel) in [
            (
                "emulated:/tmp/t.json",
                TokenSelector::Emulated("/tmp/t.json".into()),
            ),
            (
                "emulated:rel/path:with:colons",
                TokenSelector::Emulated("rel/path:with:colons".into()),
            ),
            ("yubikey", TokenSelector::YubiKey { serial: None }),
            (
                "yubikey:12345678",
                TokenSelector::YubiKey {
                    serial: Some(12345678),
                },
            ),
        ] {
            let parsed: TokenSelector = text.parse().unwrap();
            assert_eq!(parsed, sel);
            assert_eq!(parsed.to_string(), text);
        }
        for bad in [
            "",
            "emulated:",
            "yubikey:",
            "yubikey:abc",
            "yubikey:-1",
            "yubikey:99999999999",
            "pkcs11:foo",
            "file.json",
        ] {
            assert!(
                matches!(
                    bad.parse::<TokenSelector>(),
                    Err(Error::InvalidSelector { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
