//! The card side of `piv::mgmt_crypto` against Yubico's own host
//! implementations, through a real pcscd and the vpcd bridge:
//! yubico-piv-tool 2.2.0 authenticates with the 3DES management key
//! (GENERAL AUTHENTICATE on 9B, mutual authentication) and changes it (SET
//! MANAGEMENT KEY); ykman's `yubikit.piv.PivSession` (Debian's ykman 4.0.9,
//! run by /usr/bin/python3) does the same with 3DES and AES-128/192/256.
//!
//! The card here is a minimal test card (SELECT, GET VERSION, GET SERIAL,
//! GENERAL AUTHENTICATE 9B, SET MANAGEMENT KEY), not the emulated token: the
//! point is the challenge/response, byte for byte as the real tool does it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use signer_e2e::pcsc_client::{establish, wait_for_card};
use signer_e2e::pcsc_sandbox::Sandbox;
use signer_e2e::sandboxed_test;
use signer_lib::piv::apdu::{CommandApdu, ResponseApdu, StatusWord};
use signer_lib::piv::mgmt_crypto::{CardAuthenticator, CardStep};
use signer_lib::piv::{PIV_AID, ins, key_ref, tlv};
use signer_lib::transport::vpcd::{self, BridgeConfig, VirtualCard, YUBIKEY_5_ATR};
use signer_lib::{ManagementKey, ManagementKeyAlgorithm};
use zeroize::Zeroizing;

const WAIT: Duration = Duration::from_secs(15);

/// What the card saw, for the test to check.
#[derive(Debug, Default)]
struct Log {
    instructions: Vec<u8>,
    auth_failures: u32,
    authenticated: u32,
}

struct MgmtCard {
    key: Arc<Mutex<ManagementKey>>,
    auth: CardAuthenticator,
    authenticated: bool,
    log: Arc<Mutex<Log>>,
}

impl MgmtCard {
    fn process(&mut self, apdu: &CommandApdu) -> ResponseApdu {
        self.log.lock().expect("lock").instructions.push(apdu.ins);
        if apdu.ins != ins::GENERAL_AUTHENTICATE {
            self.auth.cancel();
        }
        match apdu.ins {
            ins::SELECT if apdu.data.starts_with(&PIV_AID) => {
                self.authenticated = false;
                // Application property template with the PIV AID.
                let mut aid = Vec::new();
                tlv::write(&mut aid, 0x4f, &[0x00, 0x00, 0x10, 0x00, 0x01, 0x00]).expect("tlv");
                let mut apt = Vec::new();
                tlv::write(&mut apt, 0x61, &aid).expect("tlv");
                ResponseApdu::new(apt, StatusWord::Success)
            }
            ins::SELECT => ResponseApdu::status(StatusWord::NotFound),
            ins::GET_VERSION => ResponseApdu::new(vec![5, 4, 3], StatusWord::Success),
            ins::GET_SERIAL => ResponseApdu::new(vec![0x01, 0x23, 0x45, 0x67], StatusWord::Success),
            ins::GENERAL_AUTHENTICATE if apdu.p2 == key_ref::MANAGEMENT => {
                let key = self.key.lock().expect("lock").clone();
                match self
                    .auth
                    .step(&key, apdu.p1, &apdu.data, &mut getrandom::SysRng)
                {
                    Ok(CardStep::Continue(data)) => {
                        self.authenticated = false;
                        ResponseApdu::new(data.to_vec(), StatusWord::Success)
                    }
                    Ok(CardStep::Authenticated(data)) => {
                        self.authenticated = true;
                        self.log.lock().expect("lock").authenticated += 1;
                        ResponseApdu::new(data.to_vec(), StatusWord::Success)
                    }
                    Err(e) => {
                        self.authenticated = false;
                        self.log.lock().expect("lock").auth_failures += 1;
                        ResponseApdu::status(e.status_word())
                    }
                }
            }
            ins::SET_MANAGEMENT_KEY => {
                if !self.authenticated {
                    return ResponseApdu::status(StatusWord::SecurityStatusNotSatisfied);
                }
                // Data: algorithm, then TLV 9B with the key.
                let Some((&alg, rest)) = apdu.data.split_first() else {
                    return ResponseApdu::status(StatusWord::IncorrectData);
                };
                let Ok(Some(new)) = tlv::find(rest, u32::from(key_ref::MANAGEMENT)) else {
                    return ResponseApdu::status(StatusWord::IncorrectData);
                };
                let Ok(alg) = ManagementKeyAlgorithm::from_id(alg) else {
                    return ResponseApdu::status(StatusWord::IncorrectData);
                };
                match ManagementKey::new(alg, new) {
                    Ok(k) => {
                        *self.key.lock().expect("lock") = k;
                        ResponseApdu::status(StatusWord::Success)
                    }
                    Err(_) => ResponseApdu::status(StatusWord::IncorrectData),
                }
            }
            _ => ResponseApdu::status(StatusWord::InsNotSupported),
        }
    }
}

impl VirtualCard for MgmtCard {
    fn atr(&self) -> Vec<u8> {
        YUBIKEY_5_ATR.to_vec()
    }
    fn power_on(&mut self) {
        self.authenticated = false;
        self.auth.cancel();
    }
    fn power_off(&mut self) {
        self.power_on();
    }
    fn reset(&mut self) {
        self.power_on();
    }
    fn transmit(&mut self, command: &[u8]) -> Zeroizing<Vec<u8>> {
        match CommandApdu::parse(command) {
            Ok(apdu) => self.process(&apdu).to_bytes(),
            Err(_) => ResponseApdu::status(StatusWord::WrongLength).to_bytes(),
        }
    }
}

fn piv_tool(sandbox: &Sandbox, args: &[&str]) -> (bool, String) {
    let out = sandbox
        .command("yubico-piv-tool")
        .arg("--reader")
        .arg(&sandbox.reader(0).name)
        .args(args)
        .output()
        .expect("yubico-piv-tool (package yubico-piv-tool) is needed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// yubikit: authenticate with KEY, then set NEW (same algorithm).
const YUBIKIT_SCRIPT: &str = r#"
import sys
from ykman.pcsc import list_readers, ScardYubiKeyDevice
from yubikit.core.smartcard import SmartCardConnection
from yubikit.piv import PivSession, MANAGEMENT_KEY_TYPE
name, alg, key, new = sys.argv[1:5]
reader = next(r for r in list_readers() if r.name == name)
with ScardYubiKeyDevice(reader).open_connection(SmartCardConnection) as conn:
    session = PivSession(conn)
    session.authenticate(MANAGEMENT_KEY_TYPE[alg], bytes.fromhex(key))
    session.set_management_key(MANAGEMENT_KEY_TYPE[alg], bytes.fromhex(new))
print("YUBIKIT-OK")
"#;

fn yubikit(sandbox: &Sandbox, alg: &str, key: &str, new: &str) -> (bool, String) {
    let out = sandbox
        .command("/usr/bin/python3")
        .args(["-c", YUBIKIT_SCRIPT, &sandbox.reader(0).name, alg, key, new])
        .output()
        .expect("/usr/bin/python3 with ykman (package yubikey-manager) is needed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.contains("YUBIKIT-OK"), text)
}

const DEFAULT_HEX: &str = "010203040506070801020304050607080102030405060708";
const NEW_HEX: &str = "a1a2a3a4a5a6a7a8b1b2b3b4b5b6b7b8c1c2c3c4c5c6c7c8";

sandboxed_test!(
    fn yubico_piv_tool_authenticates_with_the_3des_management_key_and_changes_it(sandbox) {
        let key = Arc::new(Mutex::new(
            ManagementKey::default_for(ManagementKeyAlgorithm::Tdes).unwrap(),
        ));
        let log = Arc::new(Mutex::new(Log::default()));
        let card = MgmtCard {
            key: key.clone(),
            auth: CardAuthenticator::new(),
            authenticated: false,
            log: log.clone(),
        };
        let handle = vpcd::spawn(
            Box::new(card),
            BridgeConfig::new(sandbox.reader(0).vpcd_address()),
        )
        .unwrap();
        let ctx = establish(WAIT).unwrap();
        wait_for_card(&ctx, &sandbox.reader(0).name, true, WAIT).unwrap();

        // Default key: authenticate and set a new key.
        let (ok, out) = piv_tool(
            sandbox,
            &["-v", &format!("--key={DEFAULT_HEX}"), "-a", "set-mgm-key", "--new-key", NEW_HEX],
        );
        assert!(ok, "yubico-piv-tool set-mgm-key failed:\n{out}\n{log:?}");
        assert_eq!(
            key.lock().expect("lock").as_bytes(),
            &hex_bytes(NEW_HEX)[..],
            "the card got the new key"
        );
        {
            let l = log.lock().expect("lock");
            assert_eq!(l.authenticated, 1, "{l:?}");
            assert_eq!(l.auth_failures, 0, "{l:?}");
            assert!(l.instructions.contains(&ins::SET_MANAGEMENT_KEY));
        }

        // The old key no longer authenticates: the card refuses (6982), the
        // tool reports an authentication failure, the key stays.
        let (ok, out) = piv_tool(
            sandbox,
            &[&format!("--key={DEFAULT_HEX}"), "-a", "set-mgm-key", "--new-key", DEFAULT_HEX],
        );
        assert!(!ok, "a wrong management key must fail:\n{out}");
        assert_eq!(log.lock().expect("lock").auth_failures, 1);
        assert_eq!(key.lock().expect("lock").as_bytes(), &hex_bytes(NEW_HEX)[..]);

        // The new key does, and puts the default back.
        let (ok, out) = piv_tool(
            sandbox,
            &[&format!("--key={NEW_HEX}"), "-a", "set-mgm-key", "--new-key", DEFAULT_HEX],
        );
        assert!(ok, "{out}");
        assert!(key.lock().expect("lock").is_default());
        assert_eq!(log.lock().expect("lock").authenticated, 2);
        handle.stop().unwrap();
    }
);

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

sandboxed_test!(
    fn ykman_authenticates_with_tdes_and_aes_management_keys_and_changes_them(sandbox) {
        let key = Arc::new(Mutex::new(
            ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap(),
        ));
        let log = Arc::new(Mutex::new(Log::default()));
        let card = MgmtCard {
            key: key.clone(),
            auth: CardAuthenticator::new(),
            authenticated: false,
            log: log.clone(),
        };
        let handle = vpcd::spawn(
            Box::new(card),
            BridgeConfig::new(sandbox.reader(0).vpcd_address()),
        )
        .unwrap();
        let ctx = establish(WAIT).unwrap();
        wait_for_card(&ctx, &sandbox.reader(0).name, true, WAIT).unwrap();

        for (alg, name) in [
            (ManagementKeyAlgorithm::Tdes, "TDES"),
            (ManagementKeyAlgorithm::Aes128, "AES128"),
            (ManagementKeyAlgorithm::Aes192, "AES192"),
            (ManagementKeyAlgorithm::Aes256, "AES256"),
        ] {
            let old: String = (0..alg.key_len()).map(|i| format!("{:02x}", i * 7 + 1)).collect();
            let new: String = (0..alg.key_len()).map(|i| format!("{:02x}", 0xff - i)).collect();
            *key.lock().expect("lock") = ManagementKey::from_hex(alg, &old).unwrap();
            let before = log.lock().expect("lock").authenticated;

            let (ok, out) = yubikit(sandbox, name, &old, &new);
            assert!(ok, "{name}: yubikit failed:\n{out}");
            assert_eq!(key.lock().expect("lock").as_bytes(), &hex_bytes(&new)[..], "{name}");
            assert_eq!(log.lock().expect("lock").authenticated, before + 1, "{name}");

            // The old key is refused by the card; yubikit reports the error.
            let failures = log.lock().expect("lock").auth_failures;
            let (ok, out) = yubikit(sandbox, name, &old, &old);
            assert!(!ok, "{name}: a wrong key must fail:\n{out}");
            assert_eq!(log.lock().expect("lock").auth_failures, failures + 1, "{name}");
            assert_eq!(key.lock().expect("lock").as_bytes(), &hex_bytes(&new)[..], "{name}");
        }

        // Naming the wrong algorithm (3DES against an AES key) is refused too.
        let failures = log.lock().expect("lock").auth_failures;
        let (ok, _) = yubikit(sandbox, "TDES", DEFAULT_HEX, DEFAULT_HEX);
        assert!(!ok);
        assert_eq!(log.lock().expect("lock").auth_failures, failures + 1);
        handle.stop().unwrap();
    }
);
