//! Making roots, without I/O: a first root ([`init`]) and the next version
//! of a root with another key set ([`rotate`]). Both are written unsigned;
//! `signerctl tuf sign` adds the signatures (for a rotation, a threshold of
//! the previous root's root keys and of the new root's own).

use std::collections::BTreeSet;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::canonical::Json;
use super::error::TufError;
use super::key::TufKey;
use super::metadata::{Metadata, Role, format_expires};

/// The TUF specification version written in new roots.
pub const SPEC_VERSION: &str = "1.0.31";

/// A key as `signerctl tuf key` prints it: `{"keyid": ..., "key": {...}}`
/// (or a bare key object, whose key id is then computed). The key id must
/// be the one securesystemslib computes.
pub fn parse_key_file(bytes: &[u8], path: &str) -> Result<(String, TufKey), TufError> {
    let text = std::str::from_utf8(bytes).map_err(|e| TufError::MalformedJson {
        detail: format!("{path}: not UTF-8: {e}"),
    })?;
    let j = Json::parse(text).map_err(|e| TufError::MalformedJson {
        detail: format!("{path}: {e}"),
    })?;
    let (given, key_json) = match (j.get("keyid"), j.get("key")) {
        (Some(Json::Str(id)), Some(k)) => (Some(id.clone()), k),
        _ => (None, &j),
    };
    let key = TufKey::from_json(key_json, path)?;
    let keyid = key.keyid();
    if let Some(given) = given
        && given != keyid
    {
        return Err(TufError::BadKey {
            reason: format!(
                "{path}: keyid {given} is not the key's id (securesystemslib computes {keyid}); print the key again with signerctl tuf key"
            ),
        });
    }
    key.scheme().ok_or_else(|| TufError::BadKey {
        reason: format!("{path}: scheme {:?} is not supported here", key.scheme),
    })?;
    key.spki_der()?;
    Ok((keyid, key))
}

/// The keys of a first root.
#[derive(Clone, Debug, Default)]
pub struct InitSpec {
    /// The root role's keys.
    pub root: Vec<(String, TufKey)>,
    /// The root role's threshold.
    pub threshold: u64,
    /// The keys of targets, snapshot and timestamp (each: the root keys if
    /// empty).
    pub targets: Vec<(String, TufKey)>,
    /// See `targets`.
    pub snapshot: Vec<(String, TufKey)>,
    /// See `targets`.
    pub timestamp: Vec<(String, TufKey)>,
    /// `expires`
    pub expires: Option<SystemTime>,
    /// `consistent_snapshot`
    pub consistent_snapshot: bool,
}

/// An unsigned version-1 root.
pub fn init(spec: &InitSpec) -> Result<Vec<u8>, TufError> {
    let bad = |reason: String| TufError::BadRotation { reason };
    if spec.root.is_empty() {
        return Err(bad(
            "a root needs at least one root key (--root-key FILE)".into()
        ));
    }
    check_threshold(spec.threshold, spec.root.len())?;
    let expires = spec
        .expires
        .ok_or_else(|| bad("no expiry given (--expires-in DAYS or --expires DATE)".into()))?;
    let mut keys = Map::new();
    let mut roles = Map::new();
    for (role, ks, threshold) in [
        (Role::Root, &spec.root, spec.threshold),
        (Role::Targets, &spec.targets, 1),
        (Role::Snapshot, &spec.snapshot, 1),
        (Role::Timestamp, &spec.timestamp, 1),
    ] {
        let ks = if ks.is_empty() { &spec.root } else { ks };
        let mut ids = Vec::new();
        for (id, k) in ks {
            if ids.contains(id) {
                return Err(bad(format!("key {id} given twice for the {role} role")));
            }
            keys.insert(id.clone(), k.to_value());
            ids.push(id.clone());
        }
        roles.insert(
            role.name().into(),
            json!({"keyids": ids, "threshold": threshold}),
        );
    }
    render(json!({
        "_type": "root",
        "spec_version": SPEC_VERSION,
        "version": 1,
        "expires": format_expires(expires),
        "consistent_snapshot": spec.consistent_snapshot,
        "keys": keys,
        "roles": roles,
    }))
}

/// How the next root differs from the previous one.
#[derive(Clone, Debug, Default)]
pub struct Rotation {
    /// The role whose keys change (root unless said).
    pub role: Option<String>,
    /// Keys to add to the role.
    pub add: Vec<(String, TufKey)>,
    /// Key ids to remove from the role.
    pub remove: Vec<String>,
    /// The role's new threshold (else the old one).
    pub threshold: Option<u64>,
    /// The new `expires` (else the old one, which must still be ahead).
    pub expires: Option<SystemTime>,
}

/// The next version of root `prev`, unsigned: version + 1, the role's key
/// set changed, keys no role uses any more dropped from `keys`, every
/// other member of `signed` kept.
pub fn rotate(prev: &Metadata, r: &Rotation, now: SystemTime) -> Result<Vec<u8>, TufError> {
    let bad = |reason: String| TufError::BadRotation { reason };
    if prev.role != Role::Root {
        return Err(bad(format!(
            "the file is {} metadata, not a root",
            prev.role
        )));
    }
    // `signed` holds no float and no duplicate (checked when parsing), so
    // serde_json's tree holds all of it.
    let mut signed: Value = serde_json::from_str(prev.signed_text())
        .map_err(|e| bad(format!("cannot read signed: {e}")))?;
    let role = r.role.clone().unwrap_or_else(|| "root".into());
    let Some(obj) = signed.as_object_mut() else {
        return Err(bad("signed is not an object".into()));
    };
    obj.insert("version".into(), json!(prev.version + 1));
    match r.expires {
        Some(t) if t <= now => {
            return Err(bad(format!(
                "--expires {} is in the past",
                format_expires(t)
            )));
        }
        Some(t) => {
            obj.insert("expires".into(), json!(format_expires(t)));
        }
        None if prev.expires_at <= now => {
            return Err(bad(format!(
                "the previous root expired at {}: give a new expiry with --expires-in DAYS",
                prev.expires
            )));
        }
        None => {}
    }
    let roles = obj
        .get_mut("roles")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| bad("signed.roles is not an object".into()))?;
    let entry = roles
        .get_mut(&role)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| bad(format!("the root has no {role:?} role")))?;
    let mut ids: Vec<String> = entry
        .get("keyids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for id in &r.remove {
        let before = ids.len();
        ids.retain(|k| k != id);
        if ids.len() == before {
            return Err(bad(format!("key {id} is not a key of the {role} role")));
        }
    }
    for (id, _) in &r.add {
        if ids.contains(id) {
            return Err(bad(format!("key {id} is already a key of the {role} role")));
        }
        ids.push(id.clone());
    }
    let threshold = match r.threshold {
        Some(t) => t,
        None => entry.get("threshold").and_then(Value::as_u64).unwrap_or(1),
    };
    check_threshold(threshold, ids.len())?;
    entry.insert("keyids".into(), json!(ids));
    entry.insert("threshold".into(), json!(threshold));
    let used: BTreeSet<String> = roles
        .values()
        .filter_map(|v| v.get("keyids").and_then(Value::as_array))
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let keys = obj
        .get_mut("keys")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| bad("signed.keys is not an object".into()))?;
    for (id, k) in &r.add {
        keys.insert(id.clone(), k.to_value());
    }
    keys.retain(|id, _| used.contains(id));
    render(signed)
}

fn check_threshold(threshold: u64, keys: usize) -> Result<(), TufError> {
    if threshold == 0 || threshold > keys as u64 {
        return Err(TufError::BadRotation {
            reason: format!(
                "threshold {threshold} with {keys} key(s): it must be between 1 and the number of keys"
            ),
        });
    }
    Ok(())
}

fn render(signed: Value) -> Result<Vec<u8>, TufError> {
    let mut out =
        serde_json::to_vec_pretty(&json!({"signatures": [], "signed": signed})).map_err(|e| {
            TufError::BadRotation {
                reason: format!("cannot write JSON: {e}"),
            }
        })?;
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::tuf::sign::tests::key;
    use std::time::Duration;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn year() -> Option<SystemTime> {
        Some(now() + Duration::from_secs(365 * 86400))
    }

    #[test]
    fn init_then_rotate_a_to_ab_to_b() {
        let (_, a) = key(1);
        let (_, b) = key(2);
        let a = (a.keyid(), a);
        let b = (b.keyid(), b);
        let v1 = Metadata::parse(
            &init(&InitSpec {
                root: vec![a.clone()],
                threshold: 1,
                expires: year(),
                consistent_snapshot: true,
                ..InitSpec::default()
            })
            .expect("init"),
        )
        .expect("v1 parses");
        assert_eq!(v1.version, 1);
        assert!(v1.signatures.is_empty());
        let roots = v1.root.as_ref().expect("root");
        assert_eq!(roots.roles["timestamp"].keyids, vec![a.0.clone()]);

        let v2 = Metadata::parse(
            &rotate(
                &v1,
                &Rotation {
                    add: vec![b.clone()],
                    threshold: Some(2),
                    ..Rotation::default()
                },
                now(),
            )
            .expect("rotate"),
        )
        .expect("v2 parses");
        assert_eq!(v2.version, 2);
        let r2 = v2.root.as_ref().expect("root");
        assert_eq!(r2.roles["root"].keyids, vec![a.0.clone(), b.0.clone()]);
        assert_eq!(r2.roles["root"].threshold, 2);
        assert_eq!(v2.expires, v1.expires);

        let v3 = Metadata::parse(
            &rotate(
                &v2,
                &Rotation {
                    remove: vec![a.0.clone()],
                    threshold: Some(1),
                    expires: year(),
                    ..Rotation::default()
                },
                now(),
            )
            .expect("rotate"),
        )
        .expect("v3 parses");
        let r3 = v3.root.as_ref().expect("root");
        assert_eq!(r3.roles["root"].keyids, vec![b.0.clone()]);
        // A still signs targets, snapshot and timestamp: its key stays.
        assert!(r3.keys.contains_key(&a.0));

        // Refusals.
        let e = rotate(
            &v2,
            &Rotation {
                remove: vec![a.0.clone()],
                ..Rotation::default()
            },
            now(),
        )
        .expect_err("threshold 2 of 1");
        assert!(e.to_string().contains("threshold 2 with 1 key"), "{e}");
        let e = rotate(
            &v1,
            &Rotation {
                add: vec![a.clone()],
                ..Rotation::default()
            },
            now(),
        )
        .expect_err("twice");
        assert!(e.to_string().contains("already a key"), "{e}");
        let late = now() + Duration::from_secs(10 * 365 * 86400);
        let e = rotate(&v1, &Rotation::default(), late).expect_err("expired");
        assert!(e.to_string().contains("--expires-in"), "{e}");
    }

    #[test]
    fn key_files_must_carry_the_securesystemslib_key_id() {
        let (_, a) = key(1);
        let good =
            serde_json::to_vec(&json!({"keyid": a.keyid(), "key": a.to_value()})).expect("json");
        assert_eq!(parse_key_file(&good, "a.json").expect("good").0, a.keyid());
        let bare = serde_json::to_vec(&a.to_value()).expect("json");
        assert_eq!(parse_key_file(&bare, "a.json").expect("bare").0, a.keyid());
        let wrong = serde_json::to_vec(&json!({"keyid": "00", "key": a.to_value()})).expect("json");
        let e = parse_key_file(&wrong, "a.json").expect_err("wrong id");
        assert!(e.to_string().contains("securesystemslib computes"), "{e}");
    }
}
