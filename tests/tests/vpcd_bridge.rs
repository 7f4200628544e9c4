//! The vpcd bridge against a real pcscd (private sandbox): cards appear with
//! the YubiKey ATR, answer short and extended APDUs, disappear when the
//! bridge stops or is killed mid-command, come back when it restarts, survive
//! a pcscd restart, and several cards live on several readers at once. Real
//! tools (OpenSC's opensc-tool, pcsc-tools' pcsc_scan) see them too.
//!
//! Each test runs in its own child process with its own pcscd (see
//! `signer_e2e::pcsc_sandbox`). Without root or the packages they fail,
//! naming what is missing.

use std::time::{Duration, Instant};

use signer_e2e::pcsc_client::{connect, establish, reader_names, transmit, wait_for_card};
use signer_e2e::pcsc_sandbox::Sandbox;
use signer_e2e::sandboxed_test;
use signer_e2e::test_card::{INS_ECHO, INS_READ_PATTERN, INS_SLOW, TestCard, TestCardCounters};
use signer_lib::transport::vpcd::{self, BridgeConfig, BridgeHandle, ServeEnd, YUBIKEY_5_ATR};

const WAIT: Duration = Duration::from_secs(15);
const SW_OK: [u8; 2] = [0x90, 0x00];

fn bridge(sandbox: &Sandbox, reader: usize, card: vpcd::SendCard) -> BridgeHandle {
    let config = BridgeConfig {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..BridgeConfig::new(sandbox.reader(reader).vpcd_address())
    };
    let handle = vpcd::spawn(card, config).expect("start the bridge");
    assert!(
        handle.control().wait_attached(1, WAIT),
        "vpcd never talked to the bridge on {}\n{}",
        handle.address(),
        sandbox.log_tail(20)
    );
    handle
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

sandboxed_test!(readers: 2,
    fn card_appears_with_the_yubikey_atr_and_answers_apdus(sandbox) {
        let ctx = establish(WAIT).unwrap();
        let mut names = reader_names(&ctx).unwrap();
        names.sort();
        let mut expected: Vec<String> = sandbox.readers().iter().map(|r| r.name.clone()).collect();
        expected.sort();
        assert_eq!(names, expected, "exactly the sandbox's readers");
        let r0 = sandbox.reader(0).name.clone();
        let r1 = sandbox.reader(1).name.clone();
        wait_for_card(&ctx, &r0, false, WAIT).unwrap();

        let card = TestCard::new(0x11);
        let counters = card.counters();
        let handle = bridge(sandbox, 0, Box::new(card));
        let atr = wait_for_card(&ctx, &r0, true, WAIT).unwrap();
        assert_eq!(atr, YUBIKEY_5_ATR.to_vec());
        wait_for_card(&ctx, &r1, false, WAIT).expect("the other reader stays empty");

        let c = connect(&ctx, &r0).unwrap();
        assert!(TestCardCounters::get(&counters.power_on) >= 1, "pcscd powered the card");
        let (_, _, atr) = {
            let s = c.status2_owned().unwrap();
            (s.status(), s.protocol2(), s.atr().to_vec())
        };
        assert_eq!(atr, YUBIKEY_5_ATR.to_vec());

        // SELECT PIV.
        let select = [0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08];
        assert_eq!(transmit(&c, &select).unwrap(), SW_OK.to_vec());
        // Short echo.
        let r = transmit(&c, &[0x00, INS_ECHO, 0x00, 0x00, 0x03, 0xca, 0xfe, 0x01, 0x00]).unwrap();
        assert_eq!(r, vec![0x11, 0xca, 0xfe, 0x01, 0x90, 0x00]);
        // Extended command: 1000 data bytes, Le 65536.
        let data = pattern(1000);
        let mut ext = vec![0x00, INS_ECHO, 0x00, 0x00, 0x00, 0x03, 0xe8];
        ext.extend_from_slice(&data);
        ext.extend_from_slice(&[0x00, 0x00]);
        let r = transmit(&c, &ext).unwrap();
        assert_eq!(r.len(), 1 + 1000 + 2);
        assert_eq!(&r[1..1001], &data[..]);
        assert_eq!(&r[1001..], &SW_OK);
        // Extended responses: 4000 bytes, and the largest a vpcd frame carries.
        for n in [4000usize, 65533] {
            let [hi, lo] = (n as u16).to_be_bytes();
            let r = transmit(&c, &[0x00, INS_READ_PATTERN, hi, lo, 0x00, 0x00, 0x00]).unwrap();
            assert_eq!(r.len(), n + 2, "{n}-byte response");
            assert_eq!(&r[..n], &pattern(n)[..]);
            assert_eq!(&r[n..], &SW_OK);
        }
        // Unknown instruction.
        assert_eq!(transmit(&c, &[0x00, 0x42, 0x00, 0x00]).unwrap(), vec![0x6d, 0x00]);
        assert_eq!(TestCardCounters::get(&counters.commands), 6);
        assert_eq!(handle.control().apdus(), 6);

        // The bridge stops: the card is removed, the open handle fails.
        let (card, stats) = handle.stop().unwrap();
        assert_eq!(stats.end, ServeEnd::Stopped);
        wait_for_card(&ctx, &r0, false, WAIT).unwrap();
        assert!(transmit(&c, &select).is_err(), "a removed card cannot answer");
        assert!(TestCardCounters::get(&counters.power_off) >= 1);
        drop(c);

        // The same card served again: present again, works again.
        let handle = bridge(sandbox, 0, card);
        assert_eq!(wait_for_card(&ctx, &r0, true, WAIT).unwrap(), YUBIKEY_5_ATR.to_vec());
        let c = connect(&ctx, &r0).unwrap();
        assert_eq!(transmit(&c, &select).unwrap(), SW_OK.to_vec());
        drop(c);
        handle.stop().unwrap();
    }
);

sandboxed_test!(
    fn a_dropped_connection_and_a_bridge_killed_mid_command_end_in_errors_then_recover(sandbox) {
        let ctx = establish(WAIT).unwrap();
        let r0 = sandbox.reader(0).name.clone();
        let card = TestCard::new(0x22);
        let counters = card.counters();
        let handle = bridge(sandbox, 0, Box::new(card));
        wait_for_card(&ctx, &r0, true, WAIT).unwrap();
        let echo = [0x00, INS_ECHO, 0x00, 0x00, 0x01, 0x55];
        let c = connect(&ctx, &r0).unwrap();
        assert_eq!(transmit(&c, &echo).unwrap(), vec![0x22, 0x55, 0x90, 0x00]);

        // Pull the card out (cut the connection): it comes back by itself.
        handle.control().drop_connection();
        assert!(handle.control().wait_attached(2, WAIT), "the bridge reconnects");
        wait_for_card(&ctx, &r0, true, WAIT).unwrap();
        assert!(transmit(&c, &echo).is_err(), "the old handle saw the card go");
        drop(c);
        let c = connect(&ctx, &r0).unwrap();
        assert_eq!(transmit(&c, &echo).unwrap(), vec![0x22, 0x55, 0x90, 0x00]);

        // Kill the bridge while the card works on a command (1 s).
        let slow = std::thread::spawn(move || {
            let started = Instant::now();
            let r = transmit(&c, &[0x00, INS_SLOW, 10, 0x00]);
            (r, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        let (card, stats) = handle.abort().unwrap();
        assert_eq!(stats.end, ServeEnd::Aborted);
        let (result, took) = slow.join().unwrap();
        // vpcd reports a connection lost mid-command as a *successful*
        // transmit with an empty response (its IFDHTransmitToICC returns
        // IFD_SUCCESS with 0 bytes): clients must treat a response without a
        // status word as a failed exchange. Either way, no answer arrives.
        assert!(
            !matches!(&result, Ok(r) if r.len() >= 2),
            "the command in flight must not get an answer, got {result:?}"
        );
        assert!(took < WAIT, "no hang: {took:?}");
        wait_for_card(&ctx, &r0, false, WAIT).unwrap();
        let before = TestCardCounters::get(&counters.commands);

        // Restart the bridge with the same card: the next request works.
        let handle = bridge(sandbox, 0, card);
        wait_for_card(&ctx, &r0, true, WAIT).unwrap();
        let c = connect(&ctx, &r0).unwrap();
        assert_eq!(transmit(&c, &echo).unwrap(), vec![0x22, 0x55, 0x90, 0x00]);
        assert_eq!(TestCardCounters::get(&counters.commands), before + 1);
        drop(c);
        handle.stop().unwrap();
    }
);

sandboxed_test!(
    fn the_card_survives_a_pcscd_restart(sandbox) {
        let r0 = sandbox.reader(0).name.clone();
        let handle = bridge(sandbox, 0, Box::new(TestCard::new(0x33)));
        let echo = [0x00, INS_ECHO, 0x00, 0x00, 0x01, 0x77];
        let ctx = establish(WAIT).unwrap();
        wait_for_card(&ctx, &r0, true, WAIT).unwrap();
        let c = connect(&ctx, &r0).unwrap();
        assert_eq!(transmit(&c, &echo).unwrap(), vec![0x33, 0x77, 0x90, 0x00]);
        let old_pid = sandbox.pcscd_pid();

        sandbox.restart_pcscd().unwrap();
        assert_ne!(sandbox.pcscd_pid(), old_pid);
        assert!(transmit(&c, &echo).is_err(), "handles of the old pcscd are dead");
        drop(c);
        drop(ctx);
        assert!(
            handle.control().wait_attached(2, WAIT),
            "the bridge reconnects to the new pcscd\n{}",
            sandbox.log_tail(20)
        );
        let ctx = establish(WAIT).unwrap();
        assert_eq!(wait_for_card(&ctx, &r0, true, WAIT).unwrap(), YUBIKEY_5_ATR.to_vec());
        let c = connect(&ctx, &r0).unwrap();
        assert_eq!(transmit(&c, &echo).unwrap(), vec![0x33, 0x77, 0x90, 0x00]);
        drop(c);
        drop(ctx);

        // pcscd down for a while: the bridge waits, then finds it again.
        sandbox.stop_pcscd().unwrap();
        assert!(handle.control().wait_detached(WAIT));
        std::thread::sleep(Duration::from_millis(700));
        assert!(!handle.control().is_attached());
        assert!(establish(Duration::ZERO).is_err(), "pcscd is down");
        sandbox.start_pcscd().unwrap();
        assert!(handle.control().wait_attached(3, WAIT));
        let ctx = establish(WAIT).unwrap();
        wait_for_card(&ctx, &r0, true, WAIT).unwrap();
        let c = connect(&ctx, &r0).unwrap();
        assert_eq!(transmit(&c, &echo).unwrap(), vec![0x33, 0x77, 0x90, 0x00]);
        drop(c);
        let (_, stats) = handle.stop().unwrap();
        assert_eq!(stats.attachments, 3);
    }
);

sandboxed_test!(readers: 4,
    fn several_cards_on_several_readers(sandbox) {
        assert_eq!(sandbox.readers().len(), 4);
        let handles: Vec<BridgeHandle> = (0..4)
            .map(|i| bridge(sandbox, i, Box::new(TestCard::new(0x40 + i as u8))))
            .collect();
        let ctx = establish(WAIT).unwrap();
        for (i, r) in sandbox.readers().iter().enumerate() {
            wait_for_card(&ctx, &r.name, true, WAIT).unwrap();
            let c = connect(&ctx, &r.name).unwrap();
            let resp = transmit(&c, &[0x00, INS_ECHO, 0x00, 0x00, 0x01, i as u8]).unwrap();
            assert_eq!(resp, vec![0x40 + i as u8, i as u8, 0x90, 0x00], "reader {}", r.name);
        }
        // Stop the card on reader 2 only.
        let mut handles = handles;
        handles.remove(2).stop().unwrap();
        let r2 = sandbox.reader(2).name.clone();
        wait_for_card(&ctx, &r2, false, WAIT).unwrap();
        for i in [0usize, 1, 3] {
            let name = &sandbox.reader(i).name;
            wait_for_card(&ctx, name, true, WAIT).unwrap();
            let c = connect(&ctx, name).unwrap();
            assert_eq!(transmit(&c, &[0x00, INS_ECHO, 0x00, 0x00]).unwrap()[0], 0x40 + i as u8);
        }
        for h in handles {
            h.stop().unwrap();
        }
    }
);

fn run_tool(sandbox: &Sandbox, program: &str, args: &[&str]) -> String {
    let out = sandbox
        .command(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed (run tests/scripts/install-deps.sh): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

sandboxed_test!(readers: 2,
    fn opensc_and_pcsc_tools_see_the_card(sandbox) {
        let handle = bridge(sandbox, 0, Box::new(TestCard::new(0x55)));
        let ctx = establish(WAIT).unwrap();
        wait_for_card(&ctx, &sandbox.reader(0).name, true, WAIT).unwrap();

        // opensc-tool lists both readers, the first with a card.
        let list = run_tool(sandbox, "opensc-tool", &["--list-readers"]);
        let line_of = |name: &str| {
            list.lines()
                .find(|l| l.trim_end().ends_with(name))
                .unwrap_or_else(|| panic!("{name} not listed:\n{list}"))
                .to_string()
        };
        assert!(line_of(&sandbox.reader(0).name).contains("Yes"), "{list}");
        assert!(line_of(&sandbox.reader(1).name).contains("No"), "{list}");

        // The ATR, and an APDU sent by OpenSC.
        let atr = run_tool(sandbox, "opensc-tool", &["--reader", "0", "--atr"]);
        let hex: String = YUBIKEY_5_ATR.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        assert!(atr.to_lowercase().contains(&hex), "{atr}");
        let sent = run_tool(
            sandbox,
            "opensc-tool",
            &["--reader", "0", "--send-apdu", "00:EE:00:00:02:CA:FE"],
        );
        assert!(sent.contains("SW1=0x90, SW2=0x00"), "{sent}");
        assert!(sent.contains("55 CA FE"), "{sent}");

        // pcsc_scan's reader list.
        let scan = run_tool(sandbox, "pcsc_scan", &["-r"]);
        for r in sandbox.readers() {
            assert!(scan.contains(&r.name), "{} missing:\n{scan}", r.name);
        }
        handle.stop().unwrap();
    }
);
