//! OLPC canonical JSON, byte for byte as securesystemslib's
//! `encode_canonical` writes it (what python-tuf hashes and signs).
//!
//! The form: no whitespace; object keys sorted by Unicode code point
//! (Python's `sorted` on `str`, which is byte order of their UTF-8);
//! strings written as their raw UTF-8 with only `\` and `"` escaped (control
//! characters and non-ASCII are written as they are, not normalized);
//! integers in decimal; `true`, `false`, `null`; no floating-point numbers.
//!
//! # Why not the `olpc-cjson` crate
//!
//! `olpc-cjson` 0.1.4 (the maintained crate, used by `tough`) was tried
//! first and disagrees with securesystemslib, so signatures it computes
//! would be rejected by python-tuf, on three inputs pinned in
//! `testdata/canonical_vectors.json`:
//!
//! - it sorts keys by their *escaped, quoted* bytes, so `{"a":1,"a b":2}`
//!   becomes `{"a b":2,"a":1}` (the closing quote 0x22 sorts after a
//!   space) and a key with `"` sorts by the backslash of its escape
//!   (`"a\""` after `"a#"`); securesystemslib sorts the raw strings;
//! - it NFC-normalizes strings (`"e\u0301"` becomes `"é"`), which
//!   securesystemslib does not.
//!
//! Target paths such as `"file"` and `"file 2"` hit the first case, so
//! this module carries its own encoder over [`Json`], a tree that holds
//! exactly what canonical JSON can express. The vectors are compared with
//! securesystemslib's encoder by `signer-daemon/tests/tuf.rs`.
//!
//! Parsing into [`Json`] refuses what the canonical form cannot carry or
//! would make ambiguous: floating-point numbers (including `-0`, `1e2` and
//! integers beyond 64 bits, which serde_json reads as floats), and
//! duplicate object keys (parsers disagree on which one wins).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value that canonical JSON can express.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// An integer (the 64-bit signed and unsigned ranges).
    Int(i128),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object; keys in code point order.
    Object(BTreeMap<String, Json>),
}

/// Why a JSON text has no canonical form.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// Not JSON, or JSON with a float, a too-large integer or a duplicate
    /// key (serde_json's message says which, with line and column).
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

impl Json {
    /// Parse a JSON text, refusing floats and duplicate keys.
    pub fn parse(text: &str) -> Result<Json, CanonicalError> {
        Ok(serde_json::from_str(text)?)
    }

    /// The canonical encoding.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.get(key),
            _ => None,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(true) => out.extend_from_slice(b"true"),
            Json::Bool(false) => out.extend_from_slice(b"false"),
            Json::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
            Json::Str(s) => write_string(s, out),
            Json::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Json::Object(members) => {
                out.push(b'{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(k, out);
                    out.push(b':');
                    v.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// The canonical encoding of a JSON text.
pub fn canonical_json(text: &str) -> Result<Vec<u8>, CanonicalError> {
    Ok(Json::parse(text)?.canonical())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without floating-point numbers")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Int(i128::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Int(i128::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Err(E::custom(format!(
            "the number {v} is not an integer of at most 64 bits: canonical JSON (TUF) has no \
             floating-point numbers (nor -0, exponents or larger integers)"
        )))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key {key:?} in an object (JSON parsers disagree on which one counts)"
                )));
            }
            let value = map.next_value()?;
            members.insert(key, value);
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One vector of `testdata/canonical_vectors.json`.
    #[derive(serde::Deserialize)]
    struct Vector {
        name: String,
        input: String,
        canonical: Option<String>,
        refused: Option<String>,
    }

    fn vectors() -> Vec<Vector> {
        serde_json::from_str(include_str!("testdata/canonical_vectors.json"))
            .expect("the vectors file is JSON")
    }

    #[test]
    fn vectors_encode_byte_for_byte() {
        let vs = vectors();
        assert!(vs.len() >= 20, "the vectors file lost vectors");
        for v in vs {
            match (&v.canonical, &v.refused) {
                (Some(expected), None) => {
                    let got = canonical_json(&v.input)
                        .unwrap_or_else(|e| panic!("{}: refused: {e}", v.name));
                    assert_eq!(
                        String::from_utf8(got).expect("UTF-8"),
                        *expected,
                        "vector {}",
                        v.name
                    );
                }
                (None, Some(why)) => {
                    let e = canonical_json(&v.input)
                        .err()
                        .unwrap_or_else(|| panic!("{}: accepted", v.name));
                    assert!(
                        e.to_string().contains(why.as_str()),
                        "{}: {e} does not say {why:?}",
                        v.name
                    );
                }
                _ => panic!("{}: a vector has either canonical or refused", v.name),
            }
        }
    }

    #[test]
    fn keys_sort_by_code_point_not_by_escaped_bytes() {
        let j = Json::parse(r#"{"a b":2,"a":1,"a\"":3,"a#":4}"#).expect("parses");
        assert_eq!(j.canonical(), br#"{"a":1,"a b":2,"a\"":3,"a#":4}"#);
    }

    #[test]
    fn strings_are_not_normalized_or_escaped_beyond_quote_and_backslash() {
        let j = Json::parse("[\"e\\u0301\",\"\\u0007\\n/\"]").expect("parses");
        assert_eq!(j.canonical(), "[\"e\u{301}\",\"\u{7}\n/\"]".as_bytes());
    }
}
