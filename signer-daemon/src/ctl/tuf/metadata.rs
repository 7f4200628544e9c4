//! TUF metadata files: the envelope `{"signed": ..., "signatures": [...]}`
//! read without losing anything, the fields this module checks, and the
//! file written back with one signature added or replaced.
//!
//! The top-level members are kept as the raw text they had, in their
//! order; `signed` in particular is written back byte for byte, and so is
//! every other signature. Only the `signatures` array is rewritten; the
//! layout is serde_json's pretty one (two spaces), which `init` and
//! `rotate` write, so a file they made keeps one layout once signed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::canonical::Json;
use super::error::TufError;
use super::key::TufKey;

/// The top-level roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `root`
    Root,
    /// `targets`
    Targets,
    /// `snapshot`
    Snapshot,
    /// `timestamp`
    Timestamp,
}

impl Role {
    /// Every top-level role, in the specification's order.
    pub const ALL: [Role; 4] = [Role::Root, Role::Targets, Role::Snapshot, Role::Timestamp];

    /// The role's name (`_type`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Targets => "targets",
            Role::Snapshot => "snapshot",
            Role::Timestamp => "timestamp",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of `signatures`.
#[derive(Clone, Debug)]
pub struct Signature {
    /// `keyid`
    pub keyid: String,
    /// `sig`: hex of the DER ECDSA signature.
    pub sig: String,
    /// The entry as it was in the file (None for a new one).
    raw: Option<Box<RawValue>>,
}

/// The keys and threshold of a role in a root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleKeys {
    /// `keyids`, in order.
    pub keyids: Vec<String>,
    /// `threshold`
    pub threshold: u64,
}

/// What a root says about keys.
#[derive(Clone, Debug)]
pub struct RootKeys {
    /// `keys`: key id to key.
    pub keys: BTreeMap<String, TufKey>,
    /// `roles`: role name to its keys.
    pub roles: BTreeMap<String, RoleKeys>,
}

impl RootKeys {
    /// The keys of a role, if the root has it.
    pub fn role(&self, role: &str) -> Option<&RoleKeys> {
        self.roles.get(role)
    }

    /// The key id under which `role` lists `key` (the same public key and
    /// scheme), if it does.
    pub fn find(&self, role: &str, key: &TufKey) -> Option<String> {
        self.roles
            .get(role)?
            .keyids
            .iter()
            .find(|id| self.keys.get(*id).is_some_and(|k| k.same_key(key)))
            .cloned()
    }

    /// Whether `key` is listed for `role` under `keyid`, with the same
    /// public key; Err says why not.
    pub fn lists(&self, role: &str, keyid: &str, key: &TufKey) -> Result<(), String> {
        let Some(r) = self.roles.get(role) else {
            return Err(format!("roles has no {role:?}"));
        };
        match self.keys.get(keyid) {
            None => return Err(format!("keys has no entry {keyid}")),
            Some(k) if !k.same_key(key) => {
                return Err(format!(
                    "keys.{keyid} holds a different public key than the token's"
                ));
            }
            Some(_) => {}
        }
        if !r.keyids.iter().any(|k| k == keyid) {
            return Err(format!("roles.{role}.keyids does not name it"));
        }
        Ok(())
    }
}

/// A parsed metadata file.
#[derive(Debug)]
pub struct Metadata {
    entries: Vec<(String, Box<RawValue>)>,
    /// `signed`, as canonical JSON sees it.
    pub signed: Json,
    /// The canonical bytes of `signed`: what is hashed and signed.
    pub canonical: Vec<u8>,
    /// `signed._type`
    pub role: Role,
    /// `signed.version`
    pub version: u64,
    /// `signed.expires` as written.
    pub expires: String,
    /// `signed.expires` as a time.
    pub expires_at: SystemTime,
    /// `signatures`, in order.
    pub signatures: Vec<Signature>,
    /// For root metadata: its keys and roles.
    pub root: Option<RootKeys>,
}

fn not_metadata(reason: impl Into<String>) -> TufError {
    TufError::NotMetadata {
        reason: reason.into(),
    }
}

/// `expires` in TUF's form `YYYY-MM-DDTHH:MM:SSZ` (what python-tuf parses).
pub fn parse_expires(s: &str) -> Result<SystemTime, TufError> {
    let bad = || {
        not_metadata(format!(
            "signed.expires {s:?} is not a date like 2030-01-01T00:00:00Z"
        ))
    };
    if s.len() != 20 || !s.ends_with('Z') || s.as_bytes().get(10) != Some(&b'T') {
        return Err(bad());
    }
    humantime::parse_rfc3339(s).map_err(|_| bad())
}

/// A time in TUF's `expires` form.
pub fn format_expires(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Metadata {
    /// Parse a metadata file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Metadata, TufError> {
        let text = std::str::from_utf8(bytes).map_err(|e| TufError::MalformedJson {
            detail: format!("not UTF-8: {e}"),
        })?;
        serde_json::from_str::<de::IgnoredAny>(text).map_err(|e| TufError::MalformedJson {
            detail: e.to_string(),
        })?;
        if !text.trim_start().starts_with('{') {
            return Err(not_metadata("the file is not a JSON object"));
        }
        let Top(entries) = serde_json::from_str(text).map_err(|e| not_metadata(e.to_string()))?;
        let member = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let signed_raw = member("signed").ok_or_else(|| not_metadata("there is no \"signed\""))?;
        let signatures_raw =
            member("signatures").ok_or_else(|| not_metadata("there is no \"signatures\""))?;
        let signed = Json::parse(signed_raw.get()).map_err(|e| TufError::NotCanonical {
            detail: e.to_string(),
        })?;
        if !matches!(signed, Json::Object(_)) {
            return Err(not_metadata("\"signed\" is not an object"));
        }
        let role = match signed.get("_type") {
            Some(Json::Str(t)) => {
                Role::parse(t).ok_or_else(|| TufError::UnknownType { found: t.clone() })?
            }
            Some(_) => return Err(not_metadata("signed._type is not a string")),
            None => return Err(not_metadata("signed._type is missing")),
        };
        let version = match signed.get("version") {
            Some(Json::Int(v)) if *v >= 1 => {
                u64::try_from(*v).map_err(|_| not_metadata("signed.version is too large"))?
            }
            _ => {
                return Err(not_metadata(
                    "signed.version is missing or not an integer >= 1",
                ));
            }
        };
        if !matches!(signed.get("spec_version"), Some(Json::Str(_))) {
            return Err(not_metadata(
                "signed.spec_version is missing or not a string",
            ));
        }
        let expires = match signed.get("expires") {
            Some(Json::Str(s)) => s.clone(),
            _ => return Err(not_metadata("signed.expires is missing or not a string")),
        };
        let expires_at = parse_expires(&expires)?;
        let signatures = parse_signatures(signatures_raw)?;
        let root = if role == Role::Root {
            Some(parse_root_keys(&signed)?)
        } else {
            None
        };
        Ok(Metadata {
            canonical: signed.canonical(),
            entries,
            signed,
            role,
            version,
            expires,
            expires_at,
            signatures,
            root,
        })
    }

    /// The text of `signed` as it is in the file.
    pub fn signed_text(&self) -> &str {
        self.entries
            .iter()
            .find(|(k, _)| k == "signed")
            .map_or("{}", |(_, v)| v.get())
    }

    /// The signature by `keyid`, if any.
    pub fn signature(&self, keyid: &str) -> Option<&Signature> {
        self.signatures.iter().find(|s| s.keyid == keyid)
    }

    /// The file with `keyid`'s signature added (at the end) or replaced (in
    /// place); everything else as it was.
    pub fn with_signature(&self, keyid: &str, sig_hex: &str) -> Vec<u8> {
        let new = Signature {
            keyid: keyid.to_string(),
            sig: sig_hex.to_string(),
            raw: None,
        };
        let mut sigs: Vec<Signature> = self.signatures.clone();
        match sigs.iter_mut().find(|s| s.keyid == keyid) {
            Some(s) => *s = new,
            None => sigs.push(new),
        }
        self.render(&sigs)
    }

    /// The file with the signatures of `others` (copies of the same
    /// metadata) added: each key id once, this file's own first.
    pub fn merged(&self, others: &[(String, Metadata)]) -> Result<Vec<u8>, TufError> {
        let mut sigs = self.signatures.clone();
        for (path, other) in others {
            if other.canonical != self.canonical {
                return Err(TufError::MergeMismatch { path: path.clone() });
            }
            for s in &other.signatures {
                if !sigs.iter().any(|have| have.keyid == s.keyid) {
                    sigs.push(s.clone());
                }
            }
        }
        Ok(self.render(&sigs))
    }

    fn render(&self, sigs: &[Signature]) -> Vec<u8> {
        let mut out = String::from("{\n");
        for (i, (name, raw)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push_str(",\n");
            }
            out.push_str("  ");
            out.push_str(&json_string(name));
            out.push_str(": ");
            if name == "signatures" {
                out.push_str(&render_signatures(sigs));
            } else {
                out.push_str(raw.get());
            }
        }
        out.push_str("\n}\n");
        out.into_bytes()
    }
}

fn json_string(s: &str) -> String {
    // A String always serializes.
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn render_signatures(sigs: &[Signature]) -> String {
    if sigs.is_empty() {
        return "[]".into();
    }
    let mut out = String::from("[\n");
    for (i, s) in sigs.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        out.push_str("    ");
        match &s.raw {
            Some(raw) => out.push_str(raw.get()),
            None => {
                out.push_str("{\n      \"keyid\": ");
                out.push_str(&json_string(&s.keyid));
                out.push_str(",\n      \"sig\": ");
                out.push_str(&json_string(&s.sig));
                out.push_str("\n    }");
            }
        }
    }
    out.push_str("\n  ]");
    out
}

fn parse_signatures(raw: &RawValue) -> Result<Vec<Signature>, TufError> {
    let items: Vec<Box<RawValue>> = serde_json::from_str(raw.get())
        .map_err(|_| not_metadata("\"signatures\" is not an array"))?;
    let mut out: Vec<Signature> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let j =
            Json::parse(item.get()).map_err(|e| not_metadata(format!("signatures[{i}]: {e}")))?;
        let field = |name: &str| match j.get(name) {
            Some(Json::Str(s)) => Ok(s.clone()),
            _ => Err(not_metadata(format!(
                "signatures[{i}].{name} is missing or not a string"
            ))),
        };
        let keyid = field("keyid")?;
        let sig = field("sig")?;
        if out.iter().any(|s| s.keyid == keyid) {
            return Err(TufError::DuplicateSignature { keyid });
        }
        out.push(Signature {
            keyid,
            sig,
            raw: Some(item),
        });
    }
    Ok(out)
}

fn parse_root_keys(signed: &Json) -> Result<RootKeys, TufError> {
    let Some(Json::Object(keys)) = signed.get("keys") else {
        return Err(not_metadata(
            "signed.keys is missing or not an object (root metadata)",
        ));
    };
    let Some(Json::Object(roles)) = signed.get("roles") else {
        return Err(not_metadata(
            "signed.roles is missing or not an object (root metadata)",
        ));
    };
    let keys = keys
        .iter()
        .map(|(id, k)| {
            Ok((
                id.clone(),
                TufKey::from_json(k, &format!("signed.keys.{id}"))?,
            ))
        })
        .collect::<Result<BTreeMap<_, _>, TufError>>()?;
    let mut out = BTreeMap::new();
    for (name, r) in roles {
        let at = format!("signed.roles.{name}");
        let keyids = match r.get("keyids") {
            Some(Json::Array(ids)) => ids
                .iter()
                .map(|id| match id {
                    Json::Str(s) => Ok(s.clone()),
                    _ => Err(not_metadata(format!("{at}.keyids has a non-string"))),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(not_metadata(format!(
                    "{at}.keyids is missing or not an array"
                )));
            }
        };
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = keyids.iter().find(|k| !seen.insert(k.as_str())) {
            return Err(not_metadata(format!("{at}.keyids names {dup} twice")));
        }
        let threshold = match r.get("threshold") {
            Some(Json::Int(t)) if *t >= 1 => u64::try_from(*t)
                .map_err(|_| not_metadata(format!("{at}.threshold is too large")))?,
            _ => {
                return Err(not_metadata(format!(
                    "{at}.threshold is missing or not an integer >= 1"
                )));
            }
        };
        out.insert(name.clone(), RoleKeys { keyids, threshold });
    }
    if !out.contains_key("root") {
        return Err(not_metadata("signed.roles has no \"root\""));
    }
    Ok(RootKeys { keys, roles: out })
}

/// The top-level object: members as raw text, in order, no duplicates.
struct Top(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Top, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
                let mut entries: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    if entries.iter().any(|(have, _)| *have == k) {
                        return Err(de::Error::custom(format!("the member {k:?} appears twice")));
                    }
                    entries.push((k, v));
                }
                Ok(Top(entries))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A root with the given (keyid, key) pairs for every role.
    pub(crate) fn root_text(keys: &[(String, TufKey)], threshold: u64, expires: &str) -> String {
        let mut k = serde_json::Map::new();
        for (id, key) in keys {
            k.insert(id.clone(), key.to_value());
        }
        let ids: Vec<&String> = keys.iter().map(|(id, _)| id).collect();
        let role = serde_json::json!({"keyids": ids, "threshold": threshold});
        let one = serde_json::json!({"keyids": ids, "threshold": 1});
        serde_json::to_string_pretty(&serde_json::json!({
            "signatures": [],
            "signed": {
                "_type": "root",
                "spec_version": "1.0.31",
                "version": 1,
                "expires": expires,
                "consistent_snapshot": true,
                "keys": k,
                "roles": {"root": role, "targets": one, "snapshot": one, "timestamp": one},
            }
        }))
        .expect("json")
    }

    #[test]
    fn signing_rewrites_only_the_signatures_and_keeps_signed_byte_for_byte() {
        let text = "{\"signed\" :  {\"_type\":\"targets\", \"spec_version\":\"1.0.31\",\n\
                    \"version\":3,\"expires\":\"2099-01-01T00:00:00Z\",\"targets\":{},\"x-extra\":[1,  2]},\n\
                    \"signatures\":[{\"keyid\":\"aa\",\"sig\":\"00\", \"extra\":true}],\"zz\":{\"a\" : 1}}";
        let md = Metadata::parse(text.as_bytes()).expect("parses");
        assert_eq!(md.role, Role::Targets);
        assert_eq!(md.version, 3);
        let out = String::from_utf8(md.with_signature("bb", "0102")).expect("utf8");
        assert!(out.contains(
            "{\"_type\":\"targets\", \"spec_version\":\"1.0.31\",\n\"version\":3,\"expires\":\"2099-01-01T00:00:00Z\",\"targets\":{},\"x-extra\":[1,  2]}"
        ), "{out}");
        assert!(
            out.contains("{\"keyid\":\"aa\",\"sig\":\"00\", \"extra\":true}"),
            "{out}"
        );
        assert!(out.contains("\"zz\": {\"a\" : 1}"), "{out}");
        assert!(out.starts_with("{\n  \"signed\": {"), "{out}");
        let again = Metadata::parse(out.as_bytes()).expect("reparses");
        assert_eq!(again.canonical, md.canonical);
        assert_eq!(again.signatures.len(), 2);
        assert_eq!(again.signature("bb").map(|s| s.sig.as_str()), Some("0102"));
        // Replacing keeps the position and the other entry.
        let replaced = Metadata::parse(&again.with_signature("aa", "ff")).expect("reparses");
        let ids: Vec<_> = replaced
            .signatures
            .iter()
            .map(|s| (s.keyid.as_str(), s.sig.as_str()))
            .collect();
        assert_eq!(ids, vec![("aa", "ff"), ("bb", "0102")]);
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("{\"signed\":", "not valid JSON"),
            ("\u{feff}{}", "not valid JSON"),
            ("[1]", "not a JSON object"),
            ("{\"signatures\":[]}", "no \"signed\""),
            ("{\"signed\":{}}", "no \"signatures\""),
            (
                "{\"signed\":{},\"signatures\":[],\"signed\":{}}",
                "appears twice",
            ),
            ("{\"signed\":[],\"signatures\":[]}", "not an object"),
            (
                "{\"signed\":{\"a\":1.5},\"signatures\":[]}",
                "no canonical JSON form",
            ),
            (
                "{\"signed\":{\"a\":1,\"a\":1},\"signatures\":[]}",
                "duplicate key",
            ),
            (
                "{\"signed\":{\"version\":1},\"signatures\":[]}",
                "_type is missing",
            ),
            (
                "{\"signed\":{\"_type\":\"mirrors\"},\"signatures\":[]}",
                "unknown _type \"mirrors\"",
            ),
            (
                "{\"signed\":{\"_type\":\"timestamp\",\"spec_version\":\"1\",\"version\":0},\"signatures\":[]}",
                "version is missing or not an integer >= 1",
            ),
            (
                "{\"signed\":{\"_type\":\"timestamp\",\"spec_version\":\"1\",\"version\":1,\"expires\":\"2030-01-01\"},\"signatures\":[]}",
                "not a date",
            ),
            (
                "{\"signed\":{\"_type\":\"timestamp\",\"spec_version\":\"1\",\"version\":1,\"expires\":\"2030-01-01T00:00:00Z\"},\"signatures\":{}}",
                "not an array",
            ),
            (
                "{\"signed\":{\"_type\":\"timestamp\",\"spec_version\":\"1\",\"version\":1,\"expires\":\"2030-01-01T00:00:00Z\"},\"signatures\":[{\"keyid\":\"a\",\"sig\":\"\"},{\"keyid\":\"a\",\"sig\":\"\"}]}",
                "two signatures by key a",
            ),
            (
                "{\"signed\":{\"_type\":\"root\",\"spec_version\":\"1\",\"version\":1,\"expires\":\"2030-01-01T00:00:00Z\"},\"signatures\":[]}",
                "signed.keys is missing",
            ),
        ];
        for (text, want) in cases {
            let e = Metadata::parse(text.as_bytes()).expect_err(text);
            assert!(
                e.to_string().contains(want),
                "{text}: {e} (wanted {want:?})"
            );
        }
    }

    #[test]
    fn mutated_files_never_panic_and_what_parses_round_trips() {
        let (_, k) = crate::ctl::tuf::sign::tests::key(1);
        let base = root_text(&[(k.keyid(), k.clone())], 1, "2030-01-01T00:00:00Z").into_bytes();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        const BYTES: &[u8] = b"{}[]\",:\\0129.-eE \ntfnul\xc3\xa9\xff";
        let mut parsed = 0;
        for _ in 0..5000 {
            let mut m = base.clone();
            for _ in 0..=next() % 3 {
                let at = (next() % m.len() as u64) as usize;
                match next() % 3 {
                    0 => m[at] = BYTES[(next() % BYTES.len() as u64) as usize],
                    1 => {
                        m.remove(at);
                    }
                    _ => m.truncate(at),
                }
                if m.is_empty() {
                    break;
                }
            }
            if let Ok(md) = Metadata::parse(&m) {
                parsed += 1;
                let out = md.with_signature("ab", "01");
                let again = Metadata::parse(&out).expect("a written file parses");
                assert_eq!(again.canonical, md.canonical);
                assert_eq!(again.signed_text(), md.signed_text());
            }
        }
        assert!(
            parsed > 50,
            "too few mutants parsed ({parsed}) to check anything"
        );
    }

    #[test]
    fn merge_unions_signatures_of_copies_and_refuses_other_contents() {
        let t = |v: u32, sigs: &str| {
            format!(
                "{{\"signed\":{{\"_type\":\"snapshot\",\"spec_version\":\"1\",\"version\":{v},\"expires\":\"2030-01-01T00:00:00Z\"}},\"signatures\":[{sigs}]}}"
            )
        };
        let a = Metadata::parse(t(1, "{\"keyid\":\"a\",\"sig\":\"01\"}").as_bytes()).expect("a");
        let b = Metadata::parse(
            t(
                1,
                "{\"keyid\":\"b\",\"sig\":\"02\"},{\"keyid\":\"a\",\"sig\":\"03\"}",
            )
            .as_bytes(),
        )
        .expect("b");
        let c = Metadata::parse(t(2, "").as_bytes()).expect("c");
        let m = Metadata::parse(&a.merged(&[("b".into(), b)]).expect("merges")).expect("parses");
        let ids: Vec<_> = m
            .signatures
            .iter()
            .map(|s| (s.keyid.as_str(), s.sig.as_str()))
            .collect();
        assert_eq!(ids, vec![("a", "01"), ("b", "02")]);
        let e = a.merged(&[("c.json".into(), c)]).expect_err("differs");
        assert!(
            e.to_string().contains("c.json signs different contents"),
            "{e}"
        );
    }
}
