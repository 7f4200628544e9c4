//! Checking metadata signatures against a root, without I/O, as a TUF
//! client does: for each role that must approve the file, its keys, which
//! of them signed validly, and whether the threshold is met.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use super::error::TufError;
use super::metadata::{Metadata, Role, RootKeys};

/// What one key (or one signature) contributed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum KeyStatus {
    /// A key of the role signed, and the signature verifies.
    Valid,
    /// A key of the role signed, and the signature does not verify (or the
    /// key cannot be used); the reason.
    Invalid(String),
    /// A key of the role did not sign.
    NotSigned,
    /// A signature by a key id this role does not have (or that `keys`
    /// does not hold): it does not count.
    Unknown(String),
}

/// One key's line in the report.
#[derive(Clone, Debug, Serialize)]
pub struct KeyReport {
    /// The key id.
    pub keyid: String,
    /// What it contributed.
    #[serde(flatten)]
    pub status: KeyStatus,
}

/// One threshold check.
#[derive(Clone, Debug, Serialize)]
pub struct ThresholdCheck {
    /// Whose keys: "root v2" (the file itself) or "root v1" (the previous
    /// root) or "root v3" (the root for a targets file).
    pub by: String,
    /// The role whose keys and threshold apply.
    pub role: String,
    /// Its threshold.
    pub threshold: u64,
    /// Valid signatures by keys of the role.
    pub valid: u64,
    /// Whether `valid >= threshold`.
    pub met: bool,
    /// Per key of the role, then the signatures that do not count.
    pub keys: Vec<KeyReport>,
}

/// The whole verdict on one file.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The file's role.
    pub role: String,
    /// Its version.
    pub version: u64,
    /// Its expiry.
    pub expires: String,
    /// Whether it expired (reported; a client refuses expired final
    /// metadata, but an intermediate root may be expired).
    pub expired: bool,
    /// The threshold checks, all of which must be met.
    pub checks: Vec<ThresholdCheck>,
    /// Other reasons the file is not acceptable (a root version that does
    /// not follow the previous root's).
    pub problems: Vec<String>,
    /// Every check met and no problem.
    pub ok: bool,
}

/// Verify `md` against its root: itself for root metadata (plus the
/// previous root, `trusted`, when given: the rotation rule), else `trusted`.
pub fn verify(
    md: &Metadata,
    trusted: Option<&Metadata>,
    now: SystemTime,
) -> Result<Report, TufError> {
    let mut checks = Vec::new();
    let mut problems = Vec::new();
    if let Some(t) = trusted
        && t.role != Role::Root
    {
        return Err(TufError::NotRoot {
            path: "(trusted root)".into(),
            role: t.role.to_string(),
        });
    }
    let role = md.role.name();
    match (
        md.role,
        &md.root,
        trusted.and_then(|t| t.root.as_ref().map(|r| (t, r))),
    ) {
        (Role::Root, Some(own), prev) => {
            if let Some((t, prev_keys)) = prev {
                if md.version != t.version + 1 {
                    problems.push(format!(
                        "root version {} does not follow the previous root's version {} (a client expects {})",
                        md.version,
                        t.version,
                        t.version + 1
                    ));
                }
                checks.push(check(
                    md,
                    prev_keys,
                    role,
                    format!("root v{} (previous)", t.version),
                )?);
            }
            checks.push(check(
                md,
                own,
                role,
                format!("root v{} (itself)", md.version),
            )?);
        }
        (_, _, Some((t, r))) => {
            checks.push(check(md, r, role, format!("root v{}", t.version))?);
        }
        _ => return Err(TufError::NeedsRoot { role: role.into() }),
    }
    let ok = problems.is_empty() && checks.iter().all(|c| c.met);
    Ok(Report {
        role: role.into(),
        version: md.version,
        expires: md.expires.clone(),
        expired: md.expires_at <= now,
        checks,
        problems,
        ok,
    })
}

fn check(
    md: &Metadata,
    root: &RootKeys,
    role: &str,
    by: String,
) -> Result<ThresholdCheck, TufError> {
    let Some(r) = root.role(role) else {
        return Err(TufError::NotMetadata {
            reason: format!("the root ({by}) has no {role:?} role"),
        });
    };
    let mut keys = Vec::new();
    let mut valid = 0u64;
    for keyid in &r.keyids {
        let status = match (root.keys.get(keyid), md.signature(keyid)) {
            (_, None) => KeyStatus::NotSigned,
            (None, Some(_)) => KeyStatus::Unknown(format!(
                "roles.{role} names it but keys has no entry for it"
            )),
            (Some(key), Some(sig)) => match key.verify(&md.canonical, &sig.sig) {
                Ok(()) => {
                    valid += 1;
                    KeyStatus::Valid
                }
                Err(e) => KeyStatus::Invalid(e),
            },
        };
        keys.push(KeyReport {
            keyid: keyid.clone(),
            status,
        });
    }
    for s in &md.signatures {
        if !r.keyids.contains(&s.keyid) {
            keys.push(KeyReport {
                keyid: s.keyid.clone(),
                status: KeyStatus::Unknown(format!(
                    "not a {role} key of {by}: does not count here"
                )),
            });
        }
    }
    Ok(ThresholdCheck {
        by,
        role: role.into(),
        threshold: r.threshold,
        valid,
        met: valid >= r.threshold,
        keys,
    })
}

impl Report {
    /// The report for a person.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} v{} expires {}{}",
            self.role,
            self.version,
            self.expires,
            if self.expired { " (EXPIRED)" } else { "" }
        );
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{} role by the keys of {}: {} of {} required valid signatures: {}",
                c.role,
                c.by,
                c.valid,
                c.threshold,
                if c.met {
                    "threshold met"
                } else {
                    "THRESHOLD NOT MET"
                }
            );
            for k in &c.keys {
                let what = match &k.status {
                    KeyStatus::Valid => "valid".to_string(),
                    KeyStatus::Invalid(why) => format!("INVALID: {why}"),
                    KeyStatus::NotSigned => "not signed".to_string(),
                    KeyStatus::Unknown(why) => format!("unknown key: {why}"),
                };
                let _ = writeln!(out, "  {}  {what}", k.keyid);
            }
        }
        for p in &self.problems {
            let _ = writeln!(out, "problem: {p}");
        }
        let _ = writeln!(
            out,
            "{}",
            if self.ok {
                "OK: every threshold is met"
            } else {
                "NOT OK: see above"
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::tuf::metadata::tests::root_text;
    use crate::ctl::tuf::sign::tests::{key, token_sign};
    use crate::ctl::tuf::sign::{SignOptions, apply, plan};
    use std::time::Duration;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn sign_with(md: &Metadata, seed: u8, trusted: Option<&Metadata>) -> Metadata {
        let (sk, k) = key(seed);
        let o = SignOptions {
            now: now(),
            force: true,
            trusted_root: trusted,
        };
        let p = plan(md, &k, &o).expect("plan");
        Metadata::parse(&apply(md, &k, &p, &token_sign(&sk, &p)).expect("apply")).expect("parse")
    }

    #[test]
    fn threshold_two_needs_both_keys_and_reports_each() {
        let (_, a) = key(1);
        let (_, b) = key(2);
        let text = root_text(
            &[(a.keyid(), a.clone()), (b.keyid(), b.clone())],
            2,
            "2030-01-01T00:00:00Z",
        );
        let md = Metadata::parse(text.as_bytes()).expect("root");
        let one = sign_with(&md, 1, None);
        let r = verify(&one, None, now()).expect("report");
        assert!(!r.ok);
        assert_eq!(r.checks[0].valid, 1);
        assert_eq!(r.checks[0].keys[0].status, KeyStatus::Valid);
        assert_eq!(r.checks[0].keys[1].status, KeyStatus::NotSigned);
        assert!(
            r.text()
                .contains("1 of 2 required valid signatures: THRESHOLD NOT MET"),
            "{}",
            r.text()
        );
        let both = sign_with(&one, 2, None);
        let r = verify(&both, None, now()).expect("report");
        assert!(r.ok, "{}", r.text());
        // A stranger's signature is reported as unknown and does not count.
        let stranger = sign_with(&one, 9, None);
        let r = verify(&stranger, None, now()).expect("report");
        assert!(!r.ok);
        assert!(matches!(r.checks[0].keys[2].status, KeyStatus::Unknown(_)));
    }

    #[test]
    fn a_tampered_signature_is_invalid() {
        let (_, a) = key(1);
        let md = Metadata::parse(
            root_text(&[(a.keyid(), a.clone())], 1, "2030-01-01T00:00:00Z").as_bytes(),
        )
        .expect("root");
        let signed = sign_with(&md, 1, None);
        let sig = signed.signature(&a.keyid()).expect("sig").sig.clone();
        let mut bad = sig.into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
        let tampered = Metadata::parse(
            &signed.with_signature(&a.keyid(), std::str::from_utf8(&bad).expect("hex")),
        )
        .expect("parse");
        let r = verify(&tampered, None, now()).expect("report");
        assert!(!r.ok);
        assert!(
            matches!(r.checks[0].keys[0].status, KeyStatus::Invalid(_)),
            "{}",
            r.text()
        );
    }

    #[test]
    fn rotation_needs_the_previous_roots_threshold_and_the_next_version() {
        let (_, a) = key(1);
        let (_, b) = key(2);
        let v1 = Metadata::parse(
            root_text(&[(a.keyid(), a.clone())], 1, "2030-01-01T00:00:00Z").as_bytes(),
        )
        .expect("v1");
        let v2_text = root_text(&[(b.keyid(), b.clone())], 1, "2030-01-01T00:00:00Z")
            .replace("\"version\": 1", "\"version\": 2");
        let v2 = Metadata::parse(v2_text.as_bytes()).expect("v2");
        let by_b = sign_with(&v2, 2, None);
        let r = verify(&by_b, Some(&v1), now()).expect("report");
        assert!(!r.ok, "{}", r.text());
        assert!(!r.checks[0].met && r.checks[1].met);
        let by_both = sign_with(&by_b, 1, Some(&v1));
        let r = verify(&by_both, Some(&v1), now()).expect("report");
        assert!(r.ok, "{}", r.text());
        // Version 3 after version 1 is refused even with every signature.
        let r = verify(&by_both, Some(&by_both), now()).expect("report");
        assert!(!r.ok);
        assert!(
            r.problems[0].contains("does not follow"),
            "{:?}",
            r.problems
        );
    }
}
