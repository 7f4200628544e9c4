//! Caller authorization: which users and groups may list, sign with, or
//! attest which keys.
//!
//! The policy is a list of rules in the daemon's TOML configuration, checked
//! in order; the first rule that matches the caller, the operation and the key
//! decides. Nothing matches: denied ("default deny"). The one exception is the
//! daemon's own uid, which may do everything (it can read the token's PIN and
//! state anyway).
//!
//! ```toml
//! [[rule]]
//! name = "tuf-root-signers"      # named in PERMISSION_DENIED messages and the audit log
//! users = ["alice", 1001]        # user names or uids; "*" for every user
//! groups = ["signer"]            # group names or gids (primary or supplementary)
//! operations = ["list", "sign"]  # "list", "sign", "attest", or "*"
//! keys = ["9c", "12345678:9a", "3f0c...e1"]  # slot, SERIAL:slot, key id, or "*"
//! effect = "allow"               # or "deny"; default "allow"
//! ```
//!
//! Names are resolved through the system's user database when the policy is
//! loaded; a name that does not exist is a configuration error, not a rule
//! that silently matches nobody.

use std::fmt;

use serde::Deserialize;
use signer_lib::SlotId;

/// What a caller wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// ListTokens, ListKeys, GetPublicKey.
    List,
    /// Sign, SignWithEvents.
    Sign,
    /// Attest.
    Attest,
}

impl Operation {
    /// The name used in the policy and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Operation::List => "list",
            Operation::Sign => "sign",
            Operation::Attest => "attest",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A configuration error in the policy.
#[derive(Debug, thiserror::Error)]
#[error("{}policy rule {rule}: {reason}", location_prefix(.location.as_deref()))]
pub struct PolicyError {
    /// The rule's name (or its position).
    pub rule: String,
    /// What is wrong.
    pub reason: String,
    /// The rule's position in the file (0 for the first `[[rule]]`).
    pub index: usize,
    /// The offending value as written, when one is to blame.
    pub value: Option<String>,
    /// Where in the file ("FILE, line N"), once [`PolicyError::locate`] found it.
    pub location: Option<String>,
}

fn location_prefix(location: Option<&str>) -> String {
    location.map(|l| format!("{l}: ")).unwrap_or_default()
}

impl PolicyError {
    /// Name the line of the configuration `text` (read from `file`) the
    /// error is on: the line of the offending value inside the rule, else
    /// the rule's `[[rule]]` header.
    pub fn locate(mut self, file: &str, text: &str) -> PolicyError {
        if let Some(line) = rule_error_line(text, self.index, self.value.as_deref()) {
            self.location = Some(format!("{file}, line {line}"));
        }
        self
    }
}

/// The 1-based line of rule `index`'s header in `text`, or of the first
/// line of that rule holding `value` as a quoted string or a bare token.
pub fn rule_error_line(text: &str, index: usize, value: Option<&str>) -> Option<usize> {
    let is_header = |l: &str| {
        let t: String = l.trim().chars().filter(|c| !c.is_whitespace()).collect();
        t.starts_with("[[rule]]")
    };
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_header(l))
        .nth(index)
        .map(|(i, _)| i)?;
    if let Some(v) = value {
        let quoted = format!("{v:?}");
        for (i, l) in lines.iter().enumerate().skip(header + 1) {
            if l.trim_start().starts_with('[') && !l.contains('=') {
                break;
            }
            if l.contains(&quoted) || l.split(|c: char| !c.is_alphanumeric()).any(|w| w == v) {
                return Some(i + 1);
            }
        }
    }
    Some(header + 1)
}

/// A rule as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name shown in denials and the audit log.
    pub name: Option<String>,
    /// User names, uids, or "*".
    #[serde(default)]
    pub users: Vec<Principal>,
    /// Group names or gids.
    #[serde(default)]
    pub groups: Vec<Principal>,
    /// "list", "sign", "attest", "*".
    pub operations: Vec<String>,
    /// Slots, SERIAL:slot, key ids, "*".
    pub keys: Vec<String>,
    /// "allow" (default) or "deny".
    #[serde(default)]
    pub effect: Effect,
}

/// A user or group, by name or id.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Principal {
    /// A numeric id.
    Id(u32),
    /// A name (or "*").
    Name(String),
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The rule grants.
    #[default]
    Allow,
    /// The rule refuses.
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPattern {
    Any,
    KeyId(String),
    Slot { serial: Option<u32>, slot: SlotId },
}

impl KeyPattern {
    fn parse(s: &str) -> Result<KeyPattern, String> {
        let t = s.trim();
        if t == "*" {
            return Ok(KeyPattern::Any);
        }
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(KeyPattern::KeyId(t.to_ascii_lowercase()));
        }
        let (serial, slot) = match t.split_once(':') {
            Some((serial, slot)) => (
                Some(
                    serial
                        .parse::<u32>()
                        .map_err(|_| format!("{s:?}: {serial:?} is not a token serial"))?,
                ),
                slot,
            ),
            None => (None, t),
        };
        let slot = slot.parse::<SlotId>().map_err(|_| {
            format!(
                "{s:?} is neither \"*\", a 64-hex-digit key id, a slot (\"9c\") nor SERIAL:SLOT"
            )
        })?;
        Ok(KeyPattern::Slot { serial, slot })
    }

    fn matches(&self, key: &KeyTarget<'_>) -> bool {
        match self {
            KeyPattern::Any => true,
            KeyPattern::KeyId(id) => id == key.key_id,
            KeyPattern::Slot { serial, slot } => {
                *slot == key.slot && serial.is_none_or(|s| s == key.token_serial)
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    any_user: bool,
    uids: Vec<u32>,
    gids: Vec<u32>,
    operations: Vec<Operation>,
    keys: Vec<KeyPattern>,
    effect: Effect,
}

impl Rule {
    fn matches_caller(&self, caller: &Caller<'_>) -> bool {
        self.any_user
            || self.uids.contains(&caller.uid)
            || (!self.gids.is_empty() && (caller.groups)().iter().any(|g| self.gids.contains(g)))
    }
}

/// The key a request is about.
#[derive(Debug, Clone, Copy)]
pub struct KeyTarget<'a> {
    /// The token's serial.
    pub token_serial: u32,
    /// The slot.
    pub slot: SlotId,
    /// The key id.
    pub key_id: &'a str,
}

/// The caller, as the policy sees it.
pub struct Caller<'a> {
    /// Effective uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// All the caller's groups (resolved lazily: most rules name users).
    pub groups: &'a dyn Fn() -> Vec<u32>,
}

/// The outcome of a policy check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The rule that decided: a rule name, `builtin:daemon-uid`, or `default-deny`.
    pub rule: String,
    /// A sentence for PERMISSION_DENIED and the audit log.
    pub reason: String,
}

/// The loaded policy.
#[derive(Debug, Clone)]
pub struct Policy {
    daemon_uid: u32,
    rules: Vec<Rule>,
}

/// Name of the built-in rule letting the daemon's own uid do everything.
pub const DAEMON_UID_RULE: &str = "builtin:daemon-uid";
/// Name recorded when no rule matched.
pub const DEFAULT_DENY: &str = "default-deny";

impl Policy {
    /// A policy with no rules: only the daemon's own uid may call.
    pub fn only_daemon_uid(daemon_uid: u32) -> Policy {
        Policy {
            daemon_uid,
            rules: Vec::new(),
        }
    }

    /// Build from the configuration's rules, resolving user and group names.
    pub fn from_config(daemon_uid: u32, rules: &[RuleConfig]) -> Result<Policy, PolicyError> {
        let mut out = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let name = r.name.clone().unwrap_or_else(|| format!("#{}", i + 1));
            let err_at = |reason: String, value: Option<&str>| PolicyError {
                rule: format!("{name:?}"),
                reason,
                index: i,
                value: value.map(str::to_string),
                location: None,
            };
            let err = |reason: String| err_at(reason, None);
            if r.users.is_empty() && r.groups.is_empty() {
                return Err(err(
                    "names neither users nor groups (use users = [\"*\"] for everybody)".into(),
                ));
            }
            let mut any_user = false;
            let mut uids = Vec::new();
            for u in &r.users {
                match u {
                    Principal::Id(id) => uids.push(*id),
                    Principal::Name(n) if n == "*" => any_user = true,
                    Principal::Name(n) => {
                        uids.push(lookup_user(n).map_err(|e| err_at(e, Some(n.as_str())))?)
                    }
                }
            }
            let mut gids = Vec::new();
            for g in &r.groups {
                match g {
                    Principal::Id(id) => gids.push(*id),
                    Principal::Name(n) => {
                        gids.push(lookup_group(n).map_err(|e| err_at(e, Some(n.as_str())))?)
                    }
                }
            }
            if r.operations.is_empty() {
                return Err(err("names no operations".into()));
            }
            let mut operations = Vec::new();
            for op in &r.operations {
                match op.trim() {
                    "*" => operations.extend([Operation::List, Operation::Sign, Operation::Attest]),
                    "list" => operations.push(Operation::List),
                    "sign" => operations.push(Operation::Sign),
                    "attest" => operations.push(Operation::Attest),
                    other => {
                        return Err(err_at(
                            format!("unknown operation {other:?} (use list, sign, attest or *)"),
                            Some(other),
                        ));
                    }
                }
            }
            if r.keys.is_empty() {
                return Err(err(
                    "names no keys (use keys = [\"*\"] for every key)".into()
                ));
            }
            let keys = r
                .keys
                .iter()
                .map(|k| KeyPattern::parse(k).map_err(|e| err_at(e, Some(k.as_str()))))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Rule {
                name,
                any_user,
                uids,
                gids,
                operations,
                keys,
                effect: r.effect,
            });
        }
        Ok(Policy {
            daemon_uid,
            rules: out,
        })
    }

    /// The number of configured rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// May `caller` perform `op` on some key at all? Checked before the request
    /// is looked at further, so a caller with no business here learns nothing
    /// about which keys exist.
    pub fn check_operation(&self, caller: &Caller<'_>, op: Operation) -> Decision {
        if caller.uid == self.daemon_uid {
            return self.own_uid();
        }
        for rule in &self.rules {
            if rule.effect == Effect::Allow
                && rule.operations.contains(&op)
                && rule.matches_caller(caller)
            {
                return Decision {
                    allowed: true,
                    rule: rule.name.clone(),
                    reason: format!("rule {:?} allows {op} on some keys", rule.name),
                };
            }
        }
        Decision {
            allowed: false,
            rule: DEFAULT_DENY.into(),
            reason: format!(
                "uid {} (gid {}) may not {op}: no policy rule allows it (default deny)",
                caller.uid, caller.gid
            ),
        }
    }

    /// May `caller` perform `op` on `key`? The first matching rule decides.
    pub fn check_key(&self, caller: &Caller<'_>, op: Operation, key: &KeyTarget<'_>) -> Decision {
        if caller.uid == self.daemon_uid {
            return self.own_uid();
        }
        let what = format!(
            "{op} with key {} (token {} slot {})",
            key.key_id, key.token_serial, key.slot
        );
        for rule in &self.rules {
            if rule.operations.contains(&op)
                && rule.keys.iter().any(|p| p.matches(key))
                && rule.matches_caller(caller)
            {
                return match rule.effect {
                    Effect::Allow => Decision {
                        allowed: true,
                        rule: rule.name.clone(),
                        reason: format!("rule {:?} allows uid {} to {what}", rule.name, caller.uid),
                    },
                    Effect::Deny => Decision {
                        allowed: false,
                        rule: rule.name.clone(),
                        reason: format!(
                            "policy rule {:?} denies uid {} (gid {}) to {what}",
                            rule.name, caller.uid, caller.gid
                        ),
                    },
                };
            }
        }
        Decision {
            allowed: false,
            rule: DEFAULT_DENY.into(),
            reason: format!(
                "uid {} (gid {}) may not {what}: no policy rule allows it (default deny)",
                caller.uid, caller.gid
            ),
        }
    }

    fn own_uid(&self) -> Decision {
        Decision {
            allowed: true,
            rule: DAEMON_UID_RULE.into(),
            reason: "the caller runs as the daemon's own uid".into(),
        }
    }
}

fn lookup_user(name: &str) -> Result<u32, String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(format!("no user named {name:?} on this system")),
        Err(e) => Err(format!("cannot look up user {name:?}: {e}")),
    }
}

fn lookup_group(name: &str) -> Result<u32, String> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("no group named {name:?} on this system")),
        Err(e) => Err(format!("cannot look up group {name:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const KEY_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn rules(toml_text: &str) -> Vec<RuleConfig> {
        #[derive(Deserialize)]
        struct F {
            rule: Vec<RuleConfig>,
        }
        toml::from_str::<F>(toml_text).unwrap().rule
    }

    fn caller(uid: u32, gid: u32, groups: &dyn Fn() -> Vec<u32>) -> Caller<'_> {
        Caller { uid, gid, groups }
    }

    fn key(slot: SlotId, id: &str) -> KeyTarget<'_> {
        KeyTarget {
            token_serial: 42,
            slot,
            key_id: id,
        }
    }

    #[test]
    fn default_deny_except_own_uid() {
        let p = Policy::only_daemon_uid(7);
        let none = || vec![];
        let d = p.check_operation(&caller(1000, 1000, &none), Operation::List);
        assert!(!d.allowed);
        assert_eq!(d.rule, DEFAULT_DENY);
        assert!(d.reason.contains("uid 1000"), "{}", d.reason);
        let d = p.check_key(
            &caller(7, 7, &none),
            Operation::Sign,
            &key(SlotId::Signature, KEY_A),
        );
        assert!(d.allowed);
        assert_eq!(d.rule, DAEMON_UID_RULE);
    }

    #[test]
    fn first_matching_rule_decides_by_user_group_op_and_key() {
        let p = Policy::from_config(
            0,
            &rules(
                r#"
[[rule]]
name = "no-9a-for-ci"
groups = [2000]
operations = ["sign"]
keys = ["9a"]
effect = "deny"

[[rule]]
name = "ci"
groups = [2000]
operations = ["list", "sign"]
keys = ["*"]

[[rule]]
name = "alice-root"
users = [1001]
operations = ["sign", "attest"]
keys = ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "42:9d"]
"#,
            ),
        )
        .unwrap();
        let in_ci = || vec![100, 2000];
        let not_in_ci = || vec![100];
        let ci = caller(1500, 100, &in_ci);
        assert!(p.check_operation(&ci, Operation::Sign).allowed);
        assert!(!p.check_operation(&ci, Operation::Attest).allowed);
        let d = p.check_key(&ci, Operation::Sign, &key(SlotId::Authentication, KEY_B));
        assert!(!d.allowed);
        assert_eq!(d.rule, "no-9a-for-ci");
        assert!(d.reason.contains("\"no-9a-for-ci\""), "{}", d.reason);
        assert!(
            p.check_key(&ci, Operation::Sign, &key(SlotId::Signature, KEY_B))
                .allowed
        );

        let alice = caller(1001, 1001, &not_in_ci);
        assert!(!p.check_operation(&alice, Operation::List).allowed);
        assert!(
            p.check_key(&alice, Operation::Sign, &key(SlotId::Signature, KEY_A))
                .allowed
        );
        assert!(
            p.check_key(
                &alice,
                Operation::Attest,
                &key(SlotId::KeyManagement, KEY_B)
            )
            .allowed
        );
        let d = p.check_key(&alice, Operation::Sign, &key(SlotId::Signature, KEY_B));
        assert!(!d.allowed);
        assert_eq!(d.rule, DEFAULT_DENY);
        // Serial-qualified slot patterns do not match another token.
        let other = KeyTarget {
            token_serial: 43,
            slot: SlotId::KeyManagement,
            key_id: KEY_B,
        };
        assert!(!p.check_key(&alice, Operation::Sign, &other).allowed);
    }

    #[test]
    fn configuration_mistakes_are_errors() {
        for (bad, needle) in [
            (
                "[[rule]]\noperations=[\"sign\"]\nkeys=[\"*\"]\n",
                "neither users nor groups",
            ),
            (
                "[[rule]]\nusers=[1]\noperations=[\"delete\"]\nkeys=[\"*\"]\n",
                "unknown operation",
            ),
            (
                "[[rule]]\nusers=[1]\noperations=[\"sign\"]\nkeys=[\"9b\"]\n",
                "neither",
            ),
            (
                "[[rule]]\nusers=[1]\noperations=[\"sign\"]\nkeys=[]\n",
                "names no keys",
            ),
            (
                "[[rule]]\nusers=[\"no-such-user-xyz\"]\noperations=[\"sign\"]\nkeys=[\"*\"]\n",
                "no user named",
            ),
            (
                "[[rule]]\ngroups=[\"no-such-group-xyz\"]\noperations=[\"sign\"]\nkeys=[\"*\"]\n",
                "no group named",
            ),
        ] {
            let e = Policy::from_config(0, &rules(bad)).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
        // Unknown fields are refused (a typo must not widen or narrow a rule silently).
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct F {
            rule: Vec<RuleConfig>,
        }
        assert!(
            toml::from_str::<F>("[[rule]]\nuser=[1]\noperations=[\"sign\"]\nkeys=[\"*\"]\n")
                .is_err()
        );
    }

    #[test]
    fn names_resolve_through_the_user_database() {
        let p = Policy::from_config(
            0,
            &rules("[[rule]]\nusers=[\"nobody\"]\noperations=[\"list\"]\nkeys=[\"*\"]\n"),
        )
        .unwrap();
        let none = || vec![];
        assert!(
            p.check_operation(&caller(65534, 65534, &none), Operation::List)
                .allowed
        );
    }
}
