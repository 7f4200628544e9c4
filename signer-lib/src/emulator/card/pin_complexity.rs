//! PIN complexity (YubiKey firmware 5.7+, an option set when the device is
//! made): with it on, CHANGE REFERENCE DATA (PIN, PUK) and RESET RETRY
//! COUNTER refuse a new value that breaks the policy, with `6985`
//! (conditions of use not satisfied), after the current PIN or PUK was
//! checked (a right one costs no try; the stored value is unchanged). The
//! device information (Management READ CONFIG) reports the option as tag
//! `0x16` = 1.
//!
//! The rules are data ([`RULES`], [`BLOCKLIST`]); they apply to the PIN
//! and the PUK alike. Sources:
//! - Yubico .NET SDK users manual, "PIN complexity policy": from firmware
//!   5.7, optional; refuses simple values "such as 11111111, password, or
//!   12345678" for the PIV PIN and PUK (and the FIDO2 PIN); reported for
//!   ChangePin, ChangePuk and ResetPin (unblock). Its
//!   `users-manual/application-piv/apdu/change-ref.md` gives `69 85` for a
//!   new PIN/PUK that "violated the key's PIN complexity" policy, and
//!   `PivSession` maps `ConditionsNotSatisfied` on those commands to
//!   `ExceptionMessages.PinComplexityViolation`.
//! - yubikey-manager 5.9.2 `tests/device/test_piv.py` `TestPinComplexity`:
//!   a single repeated character (111111, 22222222, 333333, 4444444) and,
//!   on release firmware, abc123, password and 123123 are refused.
//!
//! Yubico's technical manual (5.7 firmware specifics, "PIN Complexity")
//! holds the complete blocklist; it was not reachable when this was
//! written, so [`BLOCKLIST`] holds only the values the two sources above
//! name. A value on the device's full list but not here is accepted by the
//! emulator (a gap, not a guess).

use crate::model::FirmwareVersion;

/// The first firmware that has PIN complexity.
pub const SINCE: FirmwareVersion = FirmwareVersion::new(5, 7, 0);

/// Minimum length in characters (Unicode code points when the value is
/// UTF-8, as firmware 5.7 counts them; bytes otherwise). PIV already
/// requires 6 bytes; the rule is here so that the policy is complete.
pub const MIN_LENGTH: usize = 6;

/// Values refused whatever else they are (compared exactly, byte for byte).
pub const BLOCKLIST: &[&str] = &["12345678", "password", "abc123", "123123"];

/// A rule of the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// At least [`MIN_LENGTH`] characters.
    MinLength,
    /// Not one character repeated (111111, aaaaaaaa).
    NotOneRepeatedCharacter,
    /// Not a value of [`BLOCKLIST`].
    NotBlocklisted,
}

/// Every rule, in the order they are checked, with the words an error
/// message uses.
pub const RULES: &[(Rule, &str)] = &[
    (Rule::MinLength, "it must be at least 6 characters long"),
    (
        Rule::NotOneRepeatedCharacter,
        "it must not be one character repeated",
    ),
    (
        Rule::NotBlocklisted,
        "it is on the list of commonly used values",
    ),
];

/// Whether firmware `firmware` can be made with PIN complexity.
pub fn supported(firmware: FirmwareVersion) -> bool {
    firmware >= SINCE
}

/// The first rule `value` (unpadded) breaks, with its words; `None` when
/// the value is acceptable.
pub fn violation(value: &[u8]) -> Option<(Rule, &'static str)> {
    RULES
        .iter()
        .copied()
        .find(|(rule, _)| !satisfies(*rule, value))
}

fn satisfies(rule: Rule, value: &[u8]) -> bool {
    match rule {
        Rule::MinLength => char_count(value) >= MIN_LENGTH,
        Rule::NotOneRepeatedCharacter => !one_repeated_character(value),
        Rule::NotBlocklisted => !BLOCKLIST.iter().any(|b| b.as_bytes() == value),
    }
}

fn char_count(value: &[u8]) -> usize {
    match std::str::from_utf8(value) {
        Ok(s) => s.chars().count(),
        Err(_) => value.len(),
    }
}

fn one_repeated_character(value: &[u8]) -> bool {
    match std::str::from_utf8(value) {
        Ok(s) => {
            let mut chars = s.chars();
            match chars.next() {
                Some(first) => chars.all(|c| c == first),
                None => false,
            }
        }
        Err(_) => value.windows(2).all(|w| w[0] == w[1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_of(value: &str) -> Option<Rule> {
        violation(value.as_bytes()).map(|(rule, _)| rule)
    }

    #[test]
    fn repeated_characters_are_refused() {
        for pin in [
            "111111",
            "22222222",
            "333333",
            "4444444",
            "aaaaaa",
            "ääääää",
        ] {
            assert_eq!(rule_of(pin), Some(Rule::NotOneRepeatedCharacter), "{pin}");
        }
    }

    #[test]
    fn blocklisted_values_are_refused() {
        for pin in BLOCKLIST {
            assert_eq!(rule_of(pin), Some(Rule::NotBlocklisted), "{pin}");
        }
        // Exact match only.
        assert_eq!(rule_of("PASSWORD"), None);
        assert_eq!(rule_of("abc1234"), None);
    }

    #[test]
    fn short_values_are_refused() {
        assert_eq!(rule_of("12345"), Some(Rule::MinLength));
        // Code points, not bytes: five two-byte characters are five.
        assert_eq!(rule_of("äöüéè"), Some(Rule::MinLength));
        assert_eq!(rule_of(""), Some(Rule::MinLength));
    }

    #[test]
    fn ordinary_values_pass() {
        // The PIN and PUK yubikey-manager's suite sets with complexity on,
        // and nearly repeated ones.
        for pin in [
            "123458",
            "12345670",
            "12341235",
            "111112",
            "211111",
            "äöüéèà",
        ] {
            assert_eq!(rule_of(pin), None, "{pin}");
        }
    }

    #[test]
    fn non_utf8_values_are_judged_by_bytes() {
        assert_eq!(
            violation(&[0x80; 6]).map(|v| v.0),
            Some(Rule::NotOneRepeatedCharacter)
        );
        assert_eq!(violation(&[0x80, 0x81, 0x80, 0x80, 0x80, 0x80]), None);
        assert_eq!(violation(&[0x80; 5]).map(|v| v.0), Some(Rule::MinLength));
    }

    #[test]
    fn firmware_line_is_5_7() {
        assert!(!supported(FirmwareVersion::new(5, 6, 9)));
        assert!(!supported(FirmwareVersion::new(4, 3, 7)));
        assert!(supported(FirmwareVersion::new(5, 7, 0)));
        assert!(supported(FirmwareVersion::new(5, 7, 4)));
    }
}
