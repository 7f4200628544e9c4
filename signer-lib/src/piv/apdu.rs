//! ISO 7816-4 APDUs and status words, shared by the PIV client (which builds
//! commands and parses responses) and the emulator (which parses commands and
//! builds responses).
//!
//! Buffers may carry PINs, PUKs and management keys, so command and response
//! data live in [`Zeroizing`] buffers that are wiped on drop.

use std::fmt;

use zeroize::Zeroizing;

/// A status word (SW1 SW2), typed for the values the PIV applet uses.
///
/// `StatusWord::from(u16)` is canonical: [`StatusWord::Other`] never holds a
/// value that has a named variant, so `u16 -> StatusWord -> u16` round-trips
/// for all 65536 values.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum StatusWord {
    /// 9000: success.
    Success,
    /// 61xx: success, `xx` more bytes available with GET RESPONSE (0 = 256 or more).
    MoreData(u8),
    /// 63Cx: verification failed, `x` tries left.
    VerifyFailed(u8),
    /// 6581: memory failure.
    MemoryFailure,
    /// 6700: wrong length (Lc/Le).
    WrongLength,
    /// 6882: secure messaging not supported / last command of a chain expected.
    LastCommandOfChainExpected,
    /// 6883: last command of a chain expected (ISO).
    ChainingNotSupported,
    /// 6982: security status not satisfied (PIN or management key needed).
    SecurityStatusNotSatisfied,
    /// 6983: authentication method blocked (PIN or PUK blocked).
    AuthenticationBlocked,
    /// 6984: reference data not usable.
    ReferenceDataNotUsable,
    /// 6985: conditions of use not satisfied.
    ConditionsNotSatisfied,
    /// 6986: command not allowed.
    CommandNotAllowed,
    /// 6A80: incorrect data in the command.
    IncorrectData,
    /// 6A81: function not supported.
    FunctionNotSupported,
    /// 6A82: file or application not found (also: data object absent).
    NotFound,
    /// 6A84: not enough memory.
    NotEnoughMemory,
    /// 6A86: incorrect P1/P2.
    IncorrectP1P2,
    /// 6A88: referenced data (key) not found.
    ReferenceNotFound,
    /// 6B00: wrong parameters P1/P2.
    WrongP1P2,
    /// 6Cxx: wrong Le, `xx` is the exact length.
    WrongLe(u8),
    /// 6D00: instruction not supported.
    InsNotSupported,
    /// 6E00: class not supported.
    ClaNotSupported,
    /// 6F00: no precise diagnosis.
    NoPreciseDiagnosis,
    /// Anything else.
    Other(u16),
}

impl StatusWord {
    /// The two bytes.
    pub fn to_bytes(self) -> [u8; 2] {
        u16::from(self).to_be_bytes()
    }

    /// From SW1 and SW2.
    pub fn from_bytes(sw1: u8, sw2: u8) -> StatusWord {
        StatusWord::from(u16::from_be_bytes([sw1, sw2]))
    }

    /// 9000 or 61xx.
    pub fn is_success(self) -> bool {
        matches!(self, StatusWord::Success | StatusWord::MoreData(_))
    }
}

impl From<u16> for StatusWord {
    fn from(v: u16) -> StatusWord {
        let [sw1, sw2] = v.to_be_bytes();
        match (sw1, sw2) {
            (0x90, 0x00) => StatusWord::Success,
            (0x61, n) => StatusWord::MoreData(n),
            (0x63, n) if n & 0xf0 == 0xc0 => StatusWord::VerifyFailed(n & 0x0f),
            (0x65, 0x81) => StatusWord::MemoryFailure,
            (0x67, 0x00) => StatusWord::WrongLength,
            (0x68, 0x82) => StatusWord::LastCommandOfChainExpected,
            (0x68, 0x83) => StatusWord::ChainingNotSupported,
            (0x69, 0x82) => StatusWord::SecurityStatusNotSatisfied,
            (0x69, 0x83) => StatusWord::AuthenticationBlocked,
            (0x69, 0x84) => StatusWord::ReferenceDataNotUsable,
            (0x69, 0x85) => StatusWord::ConditionsNotSatisfied,
            (0x69, 0x86) => StatusWord::CommandNotAllowed,
            (0x6a, 0x80) => StatusWord::IncorrectData,
            (0x6a, 0x81) => StatusWord::FunctionNotSupported,
            (0x6a, 0x82) => StatusWord::NotFound,
            (0x6a, 0x84) => StatusWord::NotEnoughMemory,
            (0x6a, 0x86) => StatusWord::IncorrectP1P2,
            (0x6a, 0x88) => StatusWord::ReferenceNotFound,
            (0x6b, 0x00) => StatusWord::WrongP1P2,
            (0x6c, n) => StatusWord::WrongLe(n),
            (0x6d, 0x00) => StatusWord::InsNotSupported,
            (0x6e, 0x00) => StatusWord::ClaNotSupported,
            (0x6f, 0x00) => StatusWord::NoPreciseDiagnosis,
            _ => StatusWord::Other(v),
        }
    }
}

impl From<StatusWord> for u16 {
    fn from(sw: StatusWord) -> u16 {
        match sw {
            StatusWord::Success => 0x9000,
            StatusWord::MoreData(n) => 0x6100 | u16::from(n),
            StatusWord::VerifyFailed(n) => 0x63c0 | u16::from(n & 0x0f),
            StatusWord::MemoryFailure => 0x6581,
            StatusWord::WrongLength => 0x6700,
            StatusWord::LastCommandOfChainExpected => 0x6882,
            StatusWord::ChainingNotSupported => 0x6883,
            StatusWord::SecurityStatusNotSatisfied => 0x6982,
            StatusWord::AuthenticationBlocked => 0x6983,
            StatusWord::ReferenceDataNotUsable => 0x6984,
            StatusWord::ConditionsNotSatisfied => 0x6985,
            StatusWord::CommandNotAllowed => 0x6986,
            StatusWord::IncorrectData => 0x6a80,
            StatusWord::FunctionNotSupported => 0x6a81,
            StatusWord::NotFound => 0x6a82,
            StatusWord::NotEnoughMemory => 0x6a84,
            StatusWord::IncorrectP1P2 => 0x6a86,
            StatusWord::ReferenceNotFound => 0x6a88,
            StatusWord::WrongP1P2 => 0x6b00,
            StatusWord::WrongLe(n) => 0x6c00 | u16::from(n),
            StatusWord::InsNotSupported => 0x6d00,
            StatusWord::ClaNotSupported => 0x6e00,
            StatusWord::NoPreciseDiagnosis => 0x6f00,
            StatusWord::Other(v) => v,
        }
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X}", u16::from(*self))
    }
}

/// Why a byte string is not a well-formed command or response APDU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApduError {
    /// Fewer than four header bytes (commands) or two status bytes (responses).
    #[error("APDU too short ({0} bytes)")]
    TooShort(usize),
    /// Lc/Le encoding does not match the byte count (ISO 7816-4 5.1).
    #[error("APDU length fields do not match its size")]
    BadLength,
    /// Data longer than extended length allows.
    #[error("APDU data too long ({0} bytes)")]
    TooLong(usize),
}

/// CLA bit for command chaining (ISO 7816-4 5.1.1).
pub const CLA_CHAINING: u8 = 0x10;

/// A command APDU. The data field is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct CommandApdu {
    /// Class byte.
    pub cla: u8,
    /// Instruction.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// Command data (may hold secrets).
    pub data: Zeroizing<Vec<u8>>,
    /// Ne, the maximum response length expected; `None` when absent.
    /// `Some(256)` / `Some(65536)` are encoded as 00 / 0000.
    pub le: Option<usize>,
}

impl fmt::Debug for CommandApdu {
    /// Never prints the data field: it may hold a PIN or a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CommandApdu {{ cla: {:02X}, ins: {:02X}, p1: {:02X}, p2: {:02X}, lc: {}, le: {:?} }}",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len(),
            self.le
        )
    }
}

impl CommandApdu {
    /// A command with no data and no Le.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> CommandApdu {
        CommandApdu {
            cla,
            ins,
            p1,
            p2,
            data: Zeroizing::new(Vec::new()),
            le: None,
        }
    }

    /// Set the data field.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> CommandApdu {
        self.data = Zeroizing::new(data.into());
        self
    }

    /// Set Le.
    pub fn with_le(mut self, le: usize) -> CommandApdu {
        self.le = Some(le);
        self
    }

    /// Whether CLA has the chaining bit ("more commands of this chain follow").
    pub fn is_chained(&self) -> bool {
        self.cla & CLA_CHAINING != 0
    }

    /// Serialize, choosing short encoding when data ≤ 255 bytes and Ne ≤ 256,
    /// extended otherwise.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, ApduError> {
        let lc = self.data.len();
        if lc > 65535 {
            return Err(ApduError::TooLong(lc));
        }
        let extended = lc > 255 || self.le.is_some_and(|le| le > 256);
        let mut out = Zeroizing::new(Vec::with_capacity(lc + 9));
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if extended {
            if lc > 0 {
                out.push(0);
                out.extend_from_slice(&(lc as u16).to_be_bytes());
                out.extend_from_slice(&self.data);
            }
            if let Some(le) = self.le {
                if le > 65536 {
                    return Err(ApduError::BadLength);
                }
                if lc == 0 {
                    out.push(0);
                }
                out.extend_from_slice(&((le % 65536) as u16).to_be_bytes());
            }
        } else {
            if lc > 0 {
                out.push(lc as u8);
                out.extend_from_slice(&self.data);
            }
            if let Some(le) = self.le {
                out.push((le % 256) as u8);
            }
        }
        Ok(out)
    }

    /// Parse any of the seven ISO 7816-4 cases (1, 2S, 3S, 4S, 2E, 3E, 4E).
    pub fn parse(bytes: &[u8]) -> Result<CommandApdu, ApduError> {
        if bytes.len() < 4 {
            return Err(ApduError::TooShort(bytes.len()));
        }
        let mut apdu = CommandApdu::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        let body = &bytes[4..];
        match body.len() {
            0 => {}
            1 => {
                apdu.le = Some(if body[0] == 0 {
                    256
                } else {
                    usize::from(body[0])
                })
            }
            _ if body[0] != 0 => {
                // Short Lc.
                let lc = usize::from(body[0]);
                let rest = &body[1..];
                if rest.len() == lc {
                    apdu.data = Zeroizing::new(rest.to_vec());
                } else if rest.len() == lc + 1 {
                    apdu.data = Zeroizing::new(rest[..lc].to_vec());
                    let le = rest[lc];
                    apdu.le = Some(if le == 0 { 256 } else { usize::from(le) });
                } else {
                    return Err(ApduError::BadLength);
                }
            }
            3 => {
                // Case 2E: 00 Le1 Le2.
                let le = usize::from(u16::from_be_bytes([body[1], body[2]]));
                apdu.le = Some(if le == 0 { 65536 } else { le });
            }
            n if n > 3 => {
                let lc = usize::from(u16::from_be_bytes([body[1], body[2]]));
                let rest = &body[3..];
                if lc == 0 {
                    return Err(ApduError::BadLength);
                }
                if rest.len() == lc {
                    apdu.data = Zeroizing::new(rest.to_vec());
                } else if rest.len() == lc + 2 {
                    apdu.data = Zeroizing::new(rest[..lc].to_vec());
                    let le = usize::from(u16::from_be_bytes([rest[lc], rest[lc + 1]]));
                    apdu.le = Some(if le == 0 { 65536 } else { le });
                } else {
                    return Err(ApduError::BadLength);
                }
            }
            _ => return Err(ApduError::BadLength),
        }
        Ok(apdu)
    }
}

/// A response APDU. The data field is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct ResponseApdu {
    /// Response data (may hold secrets, e.g. a PIN-protected management key).
    pub data: Zeroizing<Vec<u8>>,
    /// Status word.
    pub sw: StatusWord,
}

impl fmt::Debug for ResponseApdu {
    /// Never prints the data field.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ResponseApdu {{ len: {}, sw: {} }}",
            self.data.len(),
            self.sw
        )
    }
}

impl ResponseApdu {
    /// A response with data.
    pub fn new(data: impl Into<Vec<u8>>, sw: StatusWord) -> ResponseApdu {
        ResponseApdu {
            data: Zeroizing::new(data.into()),
            sw,
        }
    }

    /// A bare status word.
    pub fn status(sw: StatusWord) -> ResponseApdu {
        ResponseApdu {
            data: Zeroizing::new(Vec::new()),
            sw,
        }
    }

    /// Serialize: data then SW1 SW2.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.data.len() + 2));
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_bytes());
        out
    }

    /// Parse: the last two bytes are the status word.
    pub fn parse(bytes: &[u8]) -> Result<ResponseApdu, ApduError> {
        if bytes.len() < 2 {
            return Err(ApduError::TooShort(bytes.len()));
        }
        let (data, sw) = bytes.split_at(bytes.len() - 2);
        Ok(ResponseApdu {
            data: Zeroizing::new(data.to_vec()),
            sw: StatusWord::from_bytes(sw[0], sw[1]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_round_trip_for_every_value() {
        for v in 0..=u16::MAX {
            let sw = StatusWord::from(v);
            assert_eq!(u16::from(sw), v, "{v:04x}");
            if let StatusWord::Other(o) = sw {
                assert_eq!(o, v);
            }
        }
        assert_eq!(StatusWord::from(0x63c2), StatusWord::VerifyFailed(2));
        assert_eq!(
            StatusWord::from(0x6982),
            StatusWord::SecurityStatusNotSatisfied
        );
        assert_eq!(StatusWord::from(0x6110), StatusWord::MoreData(0x10));
        assert_eq!(StatusWord::SecurityStatusNotSatisfied.to_string(), "6982");
    }

    #[test]
    fn command_cases_round_trip() {
        let cases = [
            CommandApdu::new(0, 0xa4, 4, 0),
            CommandApdu::new(0, 0xfd, 0, 0).with_le(256),
            CommandApdu::new(0, 0xfd, 0, 0).with_le(3),
            CommandApdu::new(0, 0x20, 0, 0x80).with_data(b"123456\xff\xff".to_vec()),
            CommandApdu::new(0, 0xcb, 0x3f, 0xff)
                .with_data(vec![0x5c, 1, 0x7e])
                .with_le(256),
            CommandApdu::new(0, 0xdb, 0x3f, 0xff).with_data(vec![7u8; 1000]),
            CommandApdu::new(0, 0xdb, 0x3f, 0xff)
                .with_data(vec![7u8; 1000])
                .with_le(65536),
            CommandApdu::new(0, 0xc0, 0, 0).with_le(4000),
            CommandApdu::new(0, 0xc0, 0, 0).with_le(65536),
        ];
        for c in cases {
            let bytes = c.to_bytes().unwrap();
            assert_eq!(
                CommandApdu::parse(&bytes).unwrap(),
                c,
                "{c:?} -> {bytes:02x?}"
            );
        }
    }

    #[test]
    fn malformed_commands_are_rejected() {
        assert_eq!(CommandApdu::parse(&[0, 1, 2]), Err(ApduError::TooShort(3)));
        // Lc says 5, only 2 bytes follow.
        assert_eq!(
            CommandApdu::parse(&[0, 0x20, 0, 0x80, 5, 1, 2]),
            Err(ApduError::BadLength)
        );
        // Extended Lc of zero.
        assert_eq!(
            CommandApdu::parse(&[0, 0x20, 0, 0x80, 0, 0, 0, 1]),
            Err(ApduError::BadLength)
        );
        // Two bytes after the header: neither short Le nor extended.
        assert_eq!(
            CommandApdu::parse(&[0, 0x20, 0, 0x80, 0, 1]),
            Err(ApduError::BadLength)
        );
    }

    #[test]
    fn debug_never_shows_data() {
        let c = CommandApdu::new(0, 0x20, 0, 0x80).with_data(b"123456\xff\xff".to_vec());
        assert!(!format!("{c:?}").contains("49"));
        let r = ResponseApdu::new(vec![0xde, 0xad], StatusWord::Success);
        assert!(!format!("{r:?}").to_lowercase().contains("dead"));
        assert_eq!(ResponseApdu::parse(&r.to_bytes()).unwrap(), r);
    }
}
