//! Signing sessions: PIN sources, the rule that a rejected PIN is never
//! retried, and PIN-policy-driven verification around [`Token::sign`].
//!
//! A card counts wrong PINs; three in a row block it, and a blocked PUK on top
//! of that means a reset that destroys the root key. So:
//!
//! - A PIN is verified only when the key's PIN policy requires it and the
//!   session has lost verification (first use, card reset, another applet
//!   selected): policy `once` tries the signature first and verifies only when
//!   the card answers "security status not satisfied"; policy `always` hands
//!   the PIN to the token so VERIFY and the signature go together.
//! - A PIN the card rejected is remembered (in zeroizing memory) and refused
//!   locally from then on: a PIN file is re-read on each use and accepted again
//!   only once its contents change; an environment PIN is dead until the
//!   process restarts; a prompt asks the operator again.
//! - The PIN the card accepted last is cached so verification lost to a card
//!   reset can be restored once, without asking again; a PIN file whose
//!   contents changed since wins over the cached PIN (see
//!   [`PinKeeper::next_pin`]).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::{HashAlgorithm, KeyInfo, PinPolicy, SignInput, SignatureScheme, SlotId};
use crate::secret::Pin;
use crate::token::{SignRequest, Token, TokenEvent};

/// The environment variable read by [`PinSource::Env`].
pub const PIN_ENV: &str = "SIGNER_PIN";

/// Where the PIN comes from.
#[derive(Debug, Clone)]
pub enum PinSource {
    /// No PIN available: operations that need one fail with [`Error::PinRequired`].
    None,
    /// A file holding the PIN (e.g. a systemd credential); re-read on each use.
    File(PathBuf),
    /// An environment variable (normally [`PIN_ENV`]), read on each use.
    Env(String),
    /// Ask on the controlling terminal, echo off.
    Prompt,
    /// A PIN given directly (tests, or a caller that already has one).
    Fixed(Pin),
}

impl PinSource {
    /// The documented order: `--pin-file`, then `SIGNER_PIN`, then a prompt when
    /// stdin is a terminal, else none.
    pub fn from_cli(pin_file: Option<PathBuf>) -> PinSource {
        if let Some(path) = pin_file {
            return PinSource::File(path);
        }
        if std::env::var_os(PIN_ENV).is_some() {
            return PinSource::Env(PIN_ENV.to_string());
        }
        if rustix::termios::isatty(std::io::stdin()) {
            return PinSource::Prompt;
        }
        PinSource::None
    }

    fn describe(&self) -> String {
        match self {
            PinSource::None => "no PIN source".into(),
            PinSource::File(p) => format!("PIN file {}", p.display()),
            PinSource::Env(v) => format!("environment variable {v}"),
            PinSource::Prompt => "terminal prompt".into(),
            PinSource::Fixed(_) => "PIN given by the caller".into(),
        }
    }

    fn read(&self, slot: Option<SlotId>) -> Result<Pin> {
        match self {
            PinSource::None => Err(Error::PinRequired {
                slot: slot.unwrap_or(SlotId::Signature),
            }),
            PinSource::File(path) => {
                let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
                Pin::new(&bytes, "PIN")
            }
            PinSource::Env(var) => {
                let value = Zeroizing::new(std::env::var(var).map_err(|_| Error::InvalidPin {
                    what: "PIN",
                    reason: format!("environment variable {var} is not set or not UTF-8"),
                })?);
                Pin::parse_pin(&value)
            }
            PinSource::Prompt => prompt_pin(slot),
            PinSource::Fixed(pin) => Ok(pin.clone()),
        }
    }
}

/// Read a PIN from `/dev/tty` with echo off.
fn prompt_pin(slot: Option<SlotId>) -> Result<Pin> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| Error::io("/dev/tty", e))?;
    let saved = tcgetattr(&tty).map_err(|e| Error::io("/dev/tty", e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&tty, OptionalActions::Now, &quiet).map_err(|e| Error::io("/dev/tty", e.into()))?;
    let mut out = &tty;
    let what = slot
        .map(|s| format!(" for the key in slot {s}"))
        .unwrap_or_default();
    let _ = write!(out, "YubiKey PIN{what}: ");
    let _ = out.flush();
    let mut line = Zeroizing::new(String::new());
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, OptionalActions::Now, &saved);
    let _ = writeln!(out);
    read.map_err(|e| Error::io("/dev/tty", e))?;
    Pin::parse_pin(line.trim_end_matches(['\n', '\r']))
}

/// Tracks which PIN the card accepted last and which it rejected.
#[derive(Debug)]
pub struct PinKeeper {
    source: PinSource,
    accepted: Option<Pin>,
    rejected: Option<Pin>,
    retries_after_rejection: u8,
}

impl PinKeeper {
    /// A keeper over `source`.
    pub fn new(source: PinSource) -> PinKeeper {
        PinKeeper {
            source,
            accepted: None,
            rejected: None,
            retries_after_rejection: 0,
        }
    }

    /// The PIN to use next: the one the card accepted last, or a fresh one
    /// from the source. Refuses (without touching the card) a PIN the card
    /// has already rejected.
    ///
    /// A PIN file is read again even when a PIN was accepted: when its
    /// contents changed (the operator changed the card's PIN with another
    /// tool and updated the file), the new PIN is used instead of presenting
    /// the stale one, which would cost a try. A file that cannot be read or
    /// parsed at that moment keeps the accepted PIN in use.
    pub fn next_pin(&mut self, slot: Option<SlotId>) -> Result<Pin> {
        if let Some(pin) = &self.accepted {
            let fresh = match &self.source {
                PinSource::File(_) => self.source.read(slot).ok(),
                _ => None,
            };
            match fresh {
                Some(fresh) if !fresh.ct_eq(pin) => self.accepted = None,
                _ => return Ok(pin.clone()),
            }
        }
        let pin = self.source.read(slot)?;
        if let Some(bad) = &self.rejected {
            if bad.ct_eq(&pin) {
                return Err(Error::PinRejectedEarlier {
                    source_description: self.source.describe(),
                    retries_left: self.retries_after_rejection,
                });
            }
        }
        Ok(pin)
    }

    /// Record the outcome of a VERIFY with `pin`.
    pub fn record(&mut self, pin: &Pin, outcome: &Result<()>) {
        match outcome {
            Ok(()) => {
                self.accepted = Some(pin.clone());
                self.rejected = None;
            }
            Err(Error::WrongPin { retries_left }) => {
                self.accepted = None;
                self.rejected = Some(pin.clone());
                self.retries_after_rejection = *retries_left;
            }
            Err(Error::PinBlocked) => {
                self.accepted = None;
                self.rejected = Some(pin.clone());
                self.retries_after_rejection = 0;
            }
            Err(_) => {}
        }
    }

    /// Forget the accepted PIN (e.g. after the operator changed it).
    pub fn forget(&mut self) {
        self.accepted = None;
    }
}

/// A token plus the PIN logic around it; what the CLI and the daemon's
/// per-token worker use to sign.
pub struct SigningSession<T: Token> {
    token: T,
    pins: PinKeeper,
    keys: HashMap<SlotId, KeyInfo>,
}

impl<T: Token> SigningSession<T> {
    /// Wrap a token.
    pub fn new(token: T, pin_source: PinSource) -> SigningSession<T> {
        SigningSession {
            token,
            pins: PinKeeper::new(pin_source),
            keys: HashMap::new(),
        }
    }

    /// The token, for operations that do not need PIN handling.
    pub fn token(&mut self) -> &mut T {
        &mut self.token
    }

    /// Give the token back.
    pub fn into_token(self) -> T {
        self.token
    }

    /// Forget cached key descriptions (after keygen, or a card change).
    pub fn invalidate_keys(&mut self) {
        self.keys.clear();
    }

    /// The key in `slot` (cached after the first lookup).
    pub fn key(&mut self, slot: SlotId) -> Result<KeyInfo> {
        if let Some(k) = self.keys.get(&slot) {
            return Ok(k.clone());
        }
        let k = self.token.key(slot)?;
        self.keys.insert(slot, k.clone());
        Ok(k)
    }

    /// Verify the PIN from the source now (e.g. at daemon start-up, so a bad
    /// PIN file is reported before the first request).
    pub fn verify_pin(&mut self) -> Result<()> {
        let pin = self.pins.next_pin(None)?;
        let outcome = self.token.verify_pin(&pin);
        self.pins.record(&pin, &outcome);
        outcome
    }

    /// ECDSA over a prehashed digest with the key in `slot`: see
    /// [`SigningSession::sign_with`].
    pub fn sign(
        &mut self,
        slot: SlotId,
        hash: HashAlgorithm,
        digest: &[u8],
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<Vec<u8>> {
        self.sign_with(
            slot,
            SignatureScheme::Ecdsa,
            SignInput::Digest { hash, digest },
            events,
        )
    }

    /// Sign `input` with `scheme` using the key in `slot` (see
    /// [`crate::SignRequest`] for what each scheme signs and returns),
    /// verifying the PIN only when the key's policy requires it, and never
    /// retrying a rejected PIN. The request is checked against the key
    /// ([`SignatureScheme::check`]) before any PIN or card traffic. The
    /// signature is returned as the token made it, not verified here:
    /// callers release it only after [`crate::PublicKey::verify`] (the
    /// daemon does; [`crate::signer::TokenSigner`] does).
    pub fn sign_with(
        &mut self,
        slot: SlotId,
        scheme: SignatureScheme,
        input: SignInput<'_>,
        events: &mut dyn FnMut(TokenEvent),
    ) -> Result<Vec<u8>> {
        let key = self.key(slot)?;
        // Reject a malformed request before any PIN or card traffic.
        scheme.check(slot, key.algorithm(), &input)?;
        let request = SignRequest {
            slot,
            scheme,
            input,
            pin: None,
        };
        match key.pin_policy.resolve(slot) {
            PinPolicy::Never => self.token.sign(&request, events),
            PinPolicy::Always => {
                let pin = self.pins.next_pin(Some(slot))?;
                let result = self.token.sign(&request.with_pin(Some(&pin)), events);
                match &result {
                    Err(e @ (Error::WrongPin { .. } | Error::PinBlocked)) => {
                        let outcome = Err(clone_pin_error(e));
                        self.pins.record(&pin, &outcome);
                    }
                    // A signature, or a touch that came after VERIFY, proves
                    // the card accepted the PIN.
                    Ok(_) | Err(Error::TouchTimeout { .. } | Error::TouchDenied { .. }) => {
                        self.pins.record(&pin, &Ok(()))
                    }
                    Err(_) => {}
                }
                result
            }
            PinPolicy::Once | PinPolicy::Default => match self.token.sign(&request, events) {
                Err(Error::PinRequired { .. }) => {
                    // Verification lost (first use, card reset, another
                    // applet selected): verify once, then sign once more.
                    let pin = self.pins.next_pin(Some(slot))?;
                    let outcome = self.token.verify_pin(&pin);
                    self.pins.record(&pin, &outcome);
                    outcome?;
                    self.token.sign(&request, events)
                }
                other => other,
            },
        }
    }
}

fn clone_pin_error(e: &Error) -> Error {
    match e {
        Error::WrongPin { retries_left } => Error::WrongPin {
            retries_left: *retries_left,
        },
        _ => Error::PinBlocked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_pin_is_refused_locally_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "654321\n").unwrap();
        let mut keeper = PinKeeper::new(PinSource::File(path.clone()));
        let pin = keeper.next_pin(None).unwrap();
        keeper.record(&pin, &Err(Error::WrongPin { retries_left: 2 }));
        assert!(matches!(
            keeper.next_pin(None),
            Err(Error::PinRejectedEarlier {
                retries_left: 2,
                ..
            })
        ));
        std::fs::write(&path, "123456").unwrap();
        let pin = keeper.next_pin(None).unwrap();
        assert_eq!(pin.as_bytes(), b"123456");
        keeper.record(&pin, &Ok(()));
        // The accepted PIN is reused even if the file goes away.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(keeper.next_pin(None).unwrap().as_bytes(), b"123456");
    }

    #[test]
    fn a_changed_pin_file_replaces_the_accepted_pin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "123456\n").unwrap();
        let mut keeper = PinKeeper::new(PinSource::File(path.clone()));
        let pin = keeper.next_pin(None).unwrap();
        keeper.record(&pin, &Ok(()));
        // Unchanged file: the accepted PIN.
        assert_eq!(keeper.next_pin(None).unwrap().as_bytes(), b"123456");
        // The operator changed the card's PIN and the file: the new one is
        // presented, never the stale accepted one.
        std::fs::write(&path, "246810").unwrap();
        assert_eq!(keeper.next_pin(None).unwrap().as_bytes(), b"246810");
        // An unreadable or malformed file keeps the accepted PIN in use.
        let pin = keeper.next_pin(None).unwrap();
        keeper.record(&pin, &Ok(()));
        std::fs::write(&path, "x").unwrap();
        assert_eq!(keeper.next_pin(None).unwrap().as_bytes(), b"246810");
        // A changed file whose PIN the card rejected before stays refused.
        std::fs::write(&path, "111111").unwrap();
        let bad = keeper.next_pin(None).unwrap();
        keeper.record(&bad, &Err(Error::WrongPin { retries_left: 2 }));
        assert!(matches!(
            keeper.next_pin(None),
            Err(Error::PinRejectedEarlier { .. })
        ));
    }

    #[test]
    fn no_source_means_pin_required() {
        let mut keeper = PinKeeper::new(PinSource::None);
        assert!(matches!(
            keeper.next_pin(Some(SlotId::Signature)),
            Err(Error::PinRequired { .. })
        ));
    }
}
