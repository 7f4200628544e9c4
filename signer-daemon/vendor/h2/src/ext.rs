//! Extensions specific to the HTTP/2 protocol.

use crate::hpack::BytesStr;

use bytes::Bytes;
use std::fmt;

/// Represents the `:protocol` pseudo-header used by
/// the [Extended CONNECT Protocol].
///
/// [Extended CONNECT Protocol]: https://datatracker.ietf.org/doc/html/rfc8441#section-4
#[derive(Clone, Eq, PartialEq)]
pub struct Protocol {
    value: BytesStr,
}

impl Protocol {
    /// Converts a static string to a protocol name.
    pub const fn from_static(value: &'static str) -> Self {
        Self {
            value: BytesStr::from_static(value),
        }
    }

    /// Returns a str representation of the header.
    pub fn as_str(&self) -> &str {
        self.value.as_str()
    }

    pub(crate) fn try_from(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        Ok(Self {
            value: BytesStr::try_from(bytes)?,
        })
    }
}

impl<'a> From<&'a str> for Protocol {
    fn from(value: &'a str) -> Self {
        Self {
            value: BytesStr::from(value),
        }
    }
}

impl AsRef<[u8]> for Protocol {
    fn as_ref(&self) -> &[u8] {
        self.value.as_ref()
    }
}

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.value.fmt(f)
    }
}

// PATCH(signer-daemon, h2-unix-authority.patch): see that file's header.
/// The raw `:authority` of a request whose value is not a valid URI
/// authority (for example the percent-encoded socket path gRPC's C core,
/// grpc-java and grpc-swift send over a Unix domain socket).
///
/// Unpatched h2 resets such a stream with `PROTOCOL_ERROR`. This patched
/// build instead passes the request on *without* an authority (as if the
/// client had sent none; the `:scheme` is then dropped too, as for any
/// request without an authority) and puts the value it ignored into the
/// request's extensions as this type, so the server decides per listener:
/// ignore it where the authority means nothing (a Unix socket), refuse the
/// request where it does (TCP). CONNECT requests, whose authority is their
/// target, are still reset.
#[derive(Clone, Eq, PartialEq)]
pub struct MalformedAuthority {
    value: Bytes,
}

impl MalformedAuthority {
    pub(crate) fn new(value: Bytes) -> Self {
        Self { value }
    }

    /// The bytes the client sent as `:authority`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.value
    }
}

impl fmt::Debug for MalformedAuthority {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_tuple("MalformedAuthority")
            .field(&self.value)
            .finish()
    }
}
