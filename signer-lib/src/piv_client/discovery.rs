//! Finding PIV tokens: every reader, connect shared, SELECT PIV, GET SERIAL,
//! GET VERSION; pick by serial or take the only one.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::piv::apdu::StatusWord;

/// Tokens found by a scan, and the first "in use by another program" error.
type Scan = (Vec<(u32, Connection)>, Option<Error>);
use crate::model::FirmwareVersion;
use crate::piv_client::commands::PivChannel;
use crate::piv_client::token::{Connection, Connector};
use crate::transport::CardTransport;
use crate::transport::loopback::SharedCard;
use crate::transport::pcsc::{DEFAULT_SHARING_WAIT, PcscTransport, list_readers};

/// A PIV token found in a reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundToken {
    /// The reader's name.
    pub reader: String,
    /// GET SERIAL.
    pub serial: u32,
    /// GET VERSION.
    pub firmware: FirmwareVersion,
}

/// SELECT PIV, GET SERIAL and GET VERSION in one transaction.
pub fn probe(transport: &mut dyn CardTransport) -> Result<(u32, FirmwareVersion)> {
    let mut out = None;
    transport.transaction(&mut |link| {
        let mut ch = PivChannel::new(link);
        ch.select_piv()?;
        let serial = match ch.serial() {
            // YubiKey 4 and 5.0.0–5.0.2: no GET SERIAL in the PIV applet.
            Err(Error::UnexpectedStatus {
                sw: StatusWord::InsNotSupported,
                ..
            }) => ch.serial_from_otp()?,
            other => other?,
        };
        let firmware = ch.version()?;
        out = Some((serial, firmware));
        Ok(())
    })?;
    out.ok_or_else(|| Error::Protocol {
        reason: "probe produced no answer".into(),
    })
}

/// Pick one of the tokens found.
fn choose<T>(mut found: Vec<(u32, T)>, serial: Option<u32>, busy: Option<Error>) -> Result<T> {
    match serial {
        Some(wanted) => {
            if let Some(i) = found.iter().position(|(s, _)| *s == wanted) {
                return Ok(found.swap_remove(i).1);
            }
            if let Some(e) = busy {
                return Err(e);
            }
            let serials: Vec<u32> = found.iter().map(|(s, _)| *s).collect();
            Err(Error::TokenNotFound {
                reason: format!("no YubiKey with serial {wanted} (found serials {serials:?})"),
            })
        }
        None => {
            // A token held by another program might be a second one: do not
            // guess which the operator meant.
            if let Some(e) = busy {
                return Err(e);
            }
            match found.len() {
                0 => Err(Error::TokenNotFound {
                    reason: "no YubiKey with a PIV applet in any reader".into(),
                }),
                1 => Ok(found.swap_remove(0).1),
                _ => Err(Error::AmbiguousToken {
                    serials: found.iter().map(|(s, _)| *s).collect(),
                }),
            }
        }
    }
}

/// Connects to tokens in the readers of the local pcscd.
#[derive(Clone, Debug)]
pub struct PcscConnector {
    /// How long to wait while another program holds a card exclusively.
    pub sharing_wait: Duration,
}

impl Default for PcscConnector {
    fn default() -> Self {
        PcscConnector {
            sharing_wait: DEFAULT_SHARING_WAIT,
        }
    }
}

impl PcscConnector {
    /// Probe every reader; returns the connected tokens and the first
    /// "in use by another program" error, if any.
    fn scan(&self) -> Result<Scan> {
        let readers = list_readers()?;
        let mut found = Vec::new();
        let mut busy = None;
        for reader in readers {
            let mut transport = match PcscTransport::connect(&reader, self.sharing_wait) {
                Ok(t) => t,
                Err(e @ Error::CardInUse { .. }) => {
                    tracing::warn!(%reader, error = %e, "card held by another program");
                    busy.get_or_insert(e);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(%reader, error = %e, "no usable card");
                    continue;
                }
            };
            match probe(&mut transport) {
                Ok((serial, firmware)) => found.push((
                    serial,
                    Connection {
                        transport: Box::new(transport),
                        serial,
                        firmware,
                    },
                )),
                Err(e @ Error::CardInUse { .. }) => {
                    busy.get_or_insert(e);
                }
                Err(e) => tracing::debug!(%reader, error = %e, "not a PIV token"),
            }
        }
        Ok((found, busy))
    }

    /// Every PIV token in every reader (connections are released without
    /// resetting the cards).
    pub fn list(&self) -> Result<Vec<FoundToken>> {
        let (found, _) = self.scan()?;
        Ok(found
            .into_iter()
            .map(|(_, c)| FoundToken {
                reader: c.transport.reader().to_string(),
                serial: c.serial,
                firmware: c.firmware,
            })
            .collect())
    }
}

impl Connector for PcscConnector {
    fn connect(&mut self, serial: Option<u32>) -> Result<Connection> {
        let (found, busy) = self.scan()?;
        choose(found, serial, busy)
    }
}

/// Connects to an in-process [`SharedCard`] (tests).
#[derive(Clone, Debug)]
pub struct LoopbackConnector {
    /// The card.
    pub card: SharedCard,
}

impl Connector for LoopbackConnector {
    fn connect(&mut self, serial: Option<u32>) -> Result<Connection> {
        let mut transport = self.card.connect()?;
        let (found_serial, firmware) = probe(&mut transport)?;
        let connection = Connection {
            transport: Box::new(transport),
            serial: found_serial,
            firmware,
        };
        choose(vec![(found_serial, connection)], serial, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choosing_by_serial_or_the_only_one() {
        assert_eq!(choose(vec![(1, 'a')], None, None).unwrap(), 'a');
        assert_eq!(
            choose(vec![(1, 'a'), (2, 'b')], Some(2), None).unwrap(),
            'b'
        );
        match choose(vec![(1, 'a'), (2, 'b')], None, None) {
            Err(Error::AmbiguousToken { serials }) => assert_eq!(serials, vec![1, 2]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            choose::<char>(vec![], None, None),
            Err(Error::TokenNotFound { .. })
        ));
        match choose(vec![(1, 'a')], Some(3), None) {
            Err(Error::TokenNotFound { reason }) => assert!(reason.contains("[1]"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let busy = crate::transport::pcsc::card_in_use("r");
        assert!(matches!(
            choose(vec![(1, 'a')], None, Some(busy)),
            Err(Error::CardInUse { .. })
        ));
        let busy = crate::transport::pcsc::card_in_use("r");
        assert_eq!(choose(vec![(1, 'a')], Some(1), Some(busy)).unwrap(), 'a');
    }
}
