//! Fuzz harness: the configuration and policy file parser
//! (`signer_daemon::serve::ConfigFile` through `toml`, then
//! `signer_daemon::policy::Policy::from_config`). Shared by the cargo-fuzz
//! target `policy_file` and the seeded-random test
//! `signer-daemon/tests/reliability_seeded_requests.rs`.
//!
//! Checked: no panic; a policy that loads decides the same way when loaded
//! twice; the daemon's own uid is always allowed; a caller no rule names
//! (uid and gid 4000000000) is denied by default.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use signer_daemon::policy::{Caller, KeyTarget, Operation, Policy};
use signer_daemon::serve::ConfigFile;
use signer_lib::SlotId;

const DAEMON_UID: u32 = 990;
const KEY_ID: &str = "3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c";

/// Returns whether the text loaded as a policy.
pub fn run(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let Ok(config) = toml::from_str::<ConfigFile>(&text) else {
        return false;
    };
    let (Ok(a), Ok(b)) = (
        Policy::from_config(DAEMON_UID, &config.rules),
        Policy::from_config(DAEMON_UID, &config.rules),
    ) else {
        return false;
    };
    assert_eq!(a.rule_count(), config.rules.len());
    let no_groups = || Vec::new();
    let some_groups = || vec![0, 100, 1001];
    for (uid, gid, groups) in [
        (0u32, 0u32, &some_groups as &dyn Fn() -> Vec<u32>),
        (1001, 1001, &some_groups),
        (65534, 65534, &no_groups),
        (DAEMON_UID, 5, &no_groups),
        (4_000_000_000, 4_000_000_000, &no_groups),
    ] {
        let caller = Caller { uid, gid, groups };
        for op in [Operation::List, Operation::Sign, Operation::Attest] {
            let da = a.check_operation(&caller, op);
            let db = b.check_operation(&caller, op);
            assert_eq!((da.allowed, &da.rule), (db.allowed, &db.rule));
            for slot in [
                SlotId::Signature,
                SlotId::Authentication,
                SlotId::Retired(0x82),
            ] {
                for serial in [0u32, 12_345_678] {
                    let key = KeyTarget {
                        token_serial: serial,
                        slot,
                        key_id: KEY_ID,
                    };
                    let ka = a.check_key(&caller, op, &key);
                    let kb = b.check_key(&caller, op, &key);
                    assert_eq!((ka.allowed, &ka.rule), (kb.allowed, &kb.rule));
                    if uid == DAEMON_UID {
                        assert!(ka.allowed, "the daemon's own uid was denied");
                    }
                }
            }
        }
    }
    true
}
