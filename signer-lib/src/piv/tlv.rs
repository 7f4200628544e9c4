//! BER-TLV as PIV uses it (SP 800-73-4 part 2, ISO 7816-4 annex D): tags of
//! one or more bytes, definite lengths of up to three bytes.

use zeroize::Zeroizing;

/// Why a TLV stream is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    /// The stream ended inside a tag, a length or a value.
    #[error("TLV truncated")]
    Truncated,
    /// Indefinite length (0x80) or a length of more than three bytes.
    #[error("unsupported TLV length encoding 0x{0:02x}")]
    BadLength(u8),
    /// A tag of more than three bytes.
    #[error("TLV tag too long")]
    TagTooLong,
    /// A value longer than a three-byte length can express.
    #[error("TLV value too long ({0} bytes)")]
    ValueTooLong(usize),
}

/// One TLV: the tag (up to three bytes, big-endian in a `u32`) and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag, e.g. `0x7c`, `0x7f49`.
    pub tag: u32,
    /// The value bytes.
    pub value: &'a [u8],
}

/// Read one TLV from the front of `input`; returns it and the rest.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), TlvError> {
    let (&first, mut rest) = input.split_first().ok_or(TlvError::Truncated)?;
    let mut tag = u32::from(first);
    if first & 0x1f == 0x1f {
        // Subsequent tag bytes while bit 8 is set.
        let mut n = 0;
        loop {
            let (&b, r) = rest.split_first().ok_or(TlvError::Truncated)?;
            rest = r;
            tag = (tag << 8) | u32::from(b);
            n += 1;
            if n > 2 {
                return Err(TlvError::TagTooLong);
            }
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let (len, rest) = read_length(rest)?;
    if rest.len() < len {
        return Err(TlvError::Truncated);
    }
    let (value, rest) = rest.split_at(len);
    Ok((Tlv { tag, value }, rest))
}

/// Read a BER length; returns it and the rest.
pub fn read_length(input: &[u8]) -> Result<(usize, &[u8]), TlvError> {
    let (&first, rest) = input.split_first().ok_or(TlvError::Truncated)?;
    match first {
        0x00..=0x7f => Ok((usize::from(first), rest)),
        0x81..=0x83 => {
            let n = usize::from(first & 0x7f);
            if rest.len() < n {
                return Err(TlvError::Truncated);
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            Ok((len, &rest[n..]))
        }
        other => Err(TlvError::BadLength(other)),
    }
}

/// Parse a whole buffer into its top-level TLVs.
pub fn parse_all(mut input: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tlv, rest) = read(input)?;
        out.push(tlv);
        input = rest;
    }
    Ok(out)
}

/// Find the first top-level TLV with `tag`.
pub fn find(input: &[u8], tag: u32) -> Result<Option<&[u8]>, TlvError> {
    Ok(parse_all(input)?
        .into_iter()
        .find(|t| t.tag == tag)
        .map(|t| t.value))
}

/// Append a BER length.
pub fn write_length(out: &mut Vec<u8>, len: usize) -> Result<(), TlvError> {
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=0xffff => {
            out.push(0x82);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        0x1_0000..=0xff_ffff => {
            out.push(0x83);
            out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        }
        _ => return Err(TlvError::ValueTooLong(len)),
    }
    Ok(())
}

/// Append a TLV. Tags above 0xff are written big-endian without leading zeros.
pub fn write(out: &mut Vec<u8>, tag: u32, value: &[u8]) -> Result<(), TlvError> {
    let tag_bytes = tag.to_be_bytes();
    let skip = tag_bytes.iter().take(3).take_while(|&&b| b == 0).count();
    out.extend_from_slice(&tag_bytes[skip..]);
    write_length(out, value.len())?;
    out.extend_from_slice(value);
    Ok(())
}

/// Build a TLV into a fresh zeroizing buffer (for values that may be secret).
pub fn encode(tag: u32, value: &[u8]) -> Result<Zeroizing<Vec<u8>>, TlvError> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() + 6));
    write(&mut out, tag, value)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_lengths_and_multibyte_tags() {
        for (tag, len) in [
            (0x53u32, 0usize),
            (0x7c, 0x7f),
            (0x70, 0x80),
            (0x7f49, 0xff),
            (0x53, 0x100),
            (0x53, 0x1_0000),
        ] {
            let value = vec![0xa5u8; len];
            let enc = encode(tag, &value).unwrap();
            let (tlv, rest) = read(&enc).unwrap();
            assert_eq!(tlv.tag, tag);
            assert_eq!(tlv.value, &value[..]);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(read(&[]), Err(TlvError::Truncated));
        assert_eq!(read(&[0x53, 0x05, 1, 2]), Err(TlvError::Truncated));
        assert_eq!(read(&[0x53, 0x80]), Err(TlvError::BadLength(0x80)));
        assert_eq!(
            read(&[0x53, 0x84, 0, 0, 0, 1]),
            Err(TlvError::BadLength(0x84))
        );
        assert_eq!(read(&[0x53, 0x82, 0x01]), Err(TlvError::Truncated));
        assert_eq!(read(&[0x7f]), Err(TlvError::Truncated));
        assert_eq!(
            read(&[0x5f, 0xff, 0xff, 0x01, 0x00]),
            Err(TlvError::TagTooLong)
        );
    }

    #[test]
    fn parses_a_sequence() {
        let data = [0x01, 0x01, 0x11, 0x02, 0x02, 0x02, 0x03, 0x7f, 0x49, 0x00];
        let all = parse_all(&data).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].tag, 0x7f49);
        assert_eq!(find(&data, 0x02).unwrap(), Some(&[2u8, 3][..]));
    }
}
