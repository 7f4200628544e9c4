//! Tests of the APDU front end: the exchange scripts in `testdata/` (see
//! its README for the format), then what a script cannot check (signatures
//! verified with RustCrypto, mutual authentication with a fresh host
//! challenge, long responses reassembled) and a seeded random-sequence run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256, Sha384};

use super::*;
use crate::emulator::card::{Card, FactorySettings};
use crate::emulator::touch::{ApproveTouch, DenyTouch, TouchSource, TouchTiming};
use crate::model::FirmwareVersion;
use crate::piv::mgmt_crypto::HostAuthentication;
use crate::piv::tlv;
use crate::secret::{ManagementKey, ManagementKeyAlgorithm};

/// RSA, Ed25519, X25519 and ECDH.
mod key_types;

const SERIAL: u32 = 12_345_678;

fn card_with(alg: ManagementKeyAlgorithm, firmware: FirmwareVersion) -> Card {
    let state = Card::manufacture(&FactorySettings {
        serial: SERIAL,
        firmware,
        management_key_algorithm: alg,
    })
    .unwrap();
    Card::new(state, Arc::new(ApproveTouch), TouchTiming::default())
}

fn card(alg: ManagementKeyAlgorithm) -> Card {
    card_with(alg, FirmwareVersion::new(5, 7, 4))
}

/// A card and its front end, with helpers to talk to them.
struct Bench {
    card: Card,
    front: ApduFrontEnd,
}

impl Bench {
    fn new(alg: ManagementKeyAlgorithm) -> Bench {
        Bench {
            card: card(alg),
            front: ApduFrontEnd::new(),
        }
    }

    fn raw(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.front.process(&mut self.card, bytes).to_vec()
    }

    /// Send and split into (data, sw).
    fn send(&mut self, bytes: &[u8]) -> (Vec<u8>, u16) {
        let r = self.raw(bytes);
        assert!(r.len() >= 2, "response shorter than a status word");
        let (data, sw) = r.split_at(r.len() - 2);
        (data.to_vec(), u16::from_be_bytes([sw[0], sw[1]]))
    }

    fn hex(&mut self, text: &str) -> (Vec<u8>, u16) {
        self.send(&hex::decode(text.replace(' ', "")).unwrap())
    }

    /// Send, follow 61xx with GET RESPONSE, return the whole data and the
    /// final status word.
    fn send_all(&mut self, bytes: &[u8]) -> (Vec<u8>, u16) {
        let (mut data, mut sw) = self.send(bytes);
        let mut rounds = 0;
        while sw >> 8 == 0x61 {
            let le = (sw & 0xff) as u8;
            let (more, next) = self.send(&[0x00, 0xc0, 0x00, 0x00, le]);
            data.extend_from_slice(&more);
            sw = next;
            rounds += 1;
            assert!(rounds < 100, "endless response chain");
        }
        (data, sw)
    }

    fn select_piv(&mut self) {
        let (_, sw) = self.hex("00a4040005a000000308");
        assert_eq!(sw, 0x9000);
    }

    fn authenticate(&mut self, key: &ManagementKey) {
        let cmd1 = HostAuthentication::witness_request(key.algorithm());
        let (a1, sw) = self.send(&cmd1.to_bytes().unwrap());
        assert_eq!(sw, 0x9000, "witness request");
        let (auth, cmd2) =
            HostAuthentication::answer_witness(key, &a1, &mut getrandom::SysRng).unwrap();
        let (a2, sw) = self.send(&cmd2.to_bytes().unwrap());
        assert_eq!(sw, 0x9000, "mutual response");
        auth.verify_card(key, &a2).unwrap();
    }

    fn authenticate_default(&mut self) {
        let alg = self.card.state().management_key_algorithm();
        self.authenticate(&ManagementKey::default_for(alg).unwrap());
    }

    fn verify_pin(&mut self) {
        let (_, sw) = self.hex("0020008008313233343536ffff");
        assert_eq!(sw, 0x9000);
    }
}

// ----- The data-file scripts ------------------------------------------------------

/// Expand `BB*N` and drop spaces: the hex of a `>` line.
fn expand_hex(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        match word.split_once('*') {
            Some((byte, n)) => {
                let b = u8::from_str_radix(byte, 16).unwrap();
                out.extend(std::iter::repeat_n(b, n.parse::<usize>().unwrap()));
            }
            None => out.extend(hex::decode(word).unwrap()),
        }
    }
    out
}

/// One element of a response pattern.
#[derive(Debug)]
enum Pat {
    Bytes(Vec<u8>),
    Any(usize),
    Rest,
}

fn parse_pattern(text: &str) -> Vec<Pat> {
    text.split_whitespace()
        .map(|w| {
            if w == "*" {
                Pat::Rest
            } else if let Some(n) = w.strip_prefix('#') {
                Pat::Any(n.parse().unwrap())
            } else {
                Pat::Bytes(expand_hex(w))
            }
        })
        .collect()
}

fn matches(pattern: &[Pat], mut bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < pattern.len() {
        match &pattern[i] {
            Pat::Bytes(b) => {
                if !bytes.starts_with(b) {
                    return false;
                }
                bytes = &bytes[b.len()..];
            }
            Pat::Any(n) => {
                if bytes.len() < *n {
                    return false;
                }
                bytes = &bytes[*n..];
            }
            Pat::Rest => {
                // The rest of the pattern is fixed-length: match it at the end.
                let tail: usize = pattern[i + 1..]
                    .iter()
                    .map(|p| match p {
                        Pat::Bytes(b) => b.len(),
                        Pat::Any(n) => *n,
                        Pat::Rest => panic!("two '*' in one pattern"),
                    })
                    .sum();
                if bytes.len() < tail {
                    return false;
                }
                bytes = &bytes[bytes.len() - tail..];
            }
        }
        i += 1;
    }
    bytes.is_empty()
}

/// Run one script; panics with the file and line of the first mismatch.
fn run_script(name: &str, text: &str) -> usize {
    let mut bench: Option<Bench> = None;
    let mut last: Option<(usize, Vec<u8>)> = None;
    let mut exchanges = 0;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let line = line.trim();
        let at = format!("{name}:{n}");
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(directive) = line.strip_prefix('!') {
            let words: Vec<&str> = directive.split_whitespace().collect();
            match words.as_slice() {
                ["card", alg, rest @ ..] => {
                    let alg = match *alg {
                        "tdes" => ManagementKeyAlgorithm::Tdes,
                        "aes192" => ManagementKeyAlgorithm::Aes192,
                        other => panic!("{at}: unknown algorithm {other}"),
                    };
                    let fw = match rest {
                        [] => FirmwareVersion::new(5, 7, 4),
                        [v] => {
                            let p: Vec<u8> = v.split('.').map(|x| x.parse().unwrap()).collect();
                            FirmwareVersion::new(p[0], p[1], p[2])
                        }
                        _ => panic!("{at}: bad card line"),
                    };
                    bench = Some(Bench {
                        card: card_with(alg, fw),
                        front: ApduFrontEnd::new(),
                    });
                }
                ["deny-touch"] => {
                    let b = bench.as_mut().expect("no card");
                    let deny: Arc<dyn TouchSource> = Arc::new(DenyTouch);
                    b.card.set_touch_source(deny);
                }
                ["authenticate"] => bench.as_mut().expect("no card").authenticate_default(),
                ["reset"] => {
                    let b = bench.as_mut().expect("no card");
                    b.front.reset(&mut b.card);
                }
                _ => panic!("{at}: unknown directive {directive}"),
            }
            continue;
        }
        if let Some(cmd) = line.strip_prefix('>') {
            assert!(
                last.is_none(),
                "{at}: a command without an expected response before it"
            );
            let b = bench
                .as_mut()
                .unwrap_or_else(|| panic!("{at}: no '! card' line"));
            last = Some((n, b.raw(&expand_hex(cmd))));
            continue;
        }
        if let Some(pattern) = line.strip_prefix('<') {
            let (cmd_line, response) = last
                .take()
                .unwrap_or_else(|| panic!("{at}: a response without a command"));
            assert!(
                matches(&parse_pattern(pattern), &response),
                "{name}:{cmd_line}: response {} does not match `{}`",
                hex::encode(&response),
                pattern.trim()
            );
            exchanges += 1;
            continue;
        }
        panic!("{at}: cannot read line `{line}`");
    }
    assert!(
        last.is_none(),
        "{name}: the last command has no expected response"
    );
    exchanges
}

#[test]
fn scripts_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/emulator/apdu/testdata");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "apdu"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "the scripts are missing from {dir:?}");
    let mut total = 0;
    for path in names {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let n = run_script(&name, &text);
        assert!(n > 0, "{name} has no exchange");
        total += n;
    }
    assert!(total > 100, "only {total} exchanges");
}

#[test]
fn the_script_runner_can_fail() {
    let pattern = parse_pattern("7c * 90 00");
    assert!(matches(&pattern, &[0x7c, 1, 2, 0x90, 0x00]));
    assert!(matches(&pattern, &[0x7c, 0x90, 0x00]));
    assert!(!matches(&pattern, &[0x7d, 1, 0x90, 0x00]));
    assert!(!matches(&parse_pattern("#2 90 00"), &[1, 0x90, 0x00]));
    assert!(!matches(&parse_pattern("90 00"), &[0x90, 0x00, 0x00]));
    let bad = std::panic::catch_unwind(|| run_script("x", "! card aes192\n> 00 fd 00 00\n< 6d 01"));
    assert!(bad.is_err());
}

// ----- What a script cannot check ---------------------------------------------------

/// GENERATE in `slot`; returns the uncompressed EC point.
fn generate(b: &mut Bench, slot: u8, alg: u8, extra: &[u8]) -> (Vec<u8>, u16) {
    let mut inner = vec![0x80, 0x01, alg];
    inner.extend_from_slice(extra);
    let mut cmd = vec![0x00, 0x47, 0x00, slot, (inner.len() + 2) as u8, 0xac];
    cmd.push(inner.len() as u8);
    cmd.extend_from_slice(&inner);
    let (data, sw) = b.send_all(&cmd);
    if sw != 0x9000 {
        return (data, sw);
    }
    // 7F49 L { 86 L point }
    assert_eq!(&data[..2], &[0x7f, 0x49]);
    let (t, rest) = tlv::read(&data).unwrap();
    assert!(rest.is_empty());
    let (point, rest) = tlv::read(t.value).unwrap();
    assert!(rest.is_empty());
    assert_eq!(point.tag, 0x86);
    (point.value.to_vec(), sw)
}

/// GENERAL AUTHENTICATE sign: `7C { 82 00, 81 input }`.
fn sign_command(alg: u8, slot: u8, input: &[u8], cla: u8) -> Vec<u8> {
    let mut inner = vec![0x82, 0x00, 0x81, input.len() as u8];
    inner.extend_from_slice(input);
    let mut data = vec![0x7c, inner.len() as u8];
    data.extend_from_slice(&inner);
    let mut cmd = vec![cla, 0x87, alg, slot, data.len() as u8];
    cmd.extend_from_slice(&data);
    cmd.push(0x00);
    cmd
}

fn signature_of(answer: &[u8]) -> Vec<u8> {
    let (t, rest) = tlv::read(answer).unwrap();
    assert_eq!(t.tag, 0x7c);
    assert!(rest.is_empty());
    let (r, rest) = tlv::read(t.value).unwrap();
    assert_eq!(r.tag, 0x82);
    assert!(rest.is_empty());
    r.value.to_vec()
}

#[test]
fn generate_with_policies_then_sign_p256_and_p384_verified() {
    for mgmt in [ManagementKeyAlgorithm::Aes192, ManagementKeyAlgorithm::Tdes] {
        let mut b = Bench::new(mgmt);
        b.select_piv();
        // Without the management key: 6982.
        assert_eq!(generate(&mut b, 0x9a, 0x11, &[]).1, 0x6982);
        b.authenticate_default();
        // P-256 in 9A with PIN policy never (AA 01) and touch never (AB 01).
        let (point, _) = generate(&mut b, 0x9a, 0x11, &[0xaa, 0x01, 0x01, 0xab, 0x01, 0x01]);
        assert_eq!(point.len(), 65);
        // P-384 in 9C with PIN policy once, touch cached.
        let (point384, _) = generate(&mut b, 0x9c, 0x14, &[0xaa, 0x01, 0x02, 0xab, 0x01, 0x03]);
        assert_eq!(point384.len(), 97);
        // Metadata tells the policies back.
        let (meta, sw) = b.hex("00f7009a");
        assert_eq!(sw, 0x9000);
        assert_eq!(
            &meta[..10],
            &[0x01, 0x01, 0x11, 0x02, 0x02, 0x01, 0x01, 0x03, 0x01, 0x01]
        );
        let (meta, _) = b.hex("00f7009c");
        assert_eq!(&meta[..7], &[0x01, 0x01, 0x14, 0x02, 0x02, 0x02, 0x03]);

        // A new session: 9A signs without PIN (policy never).
        b.front.reset(&mut b.card);
        b.select_piv();
        let digest = Sha256::digest(b"hello piv");
        let (answer, sw) = b.send(&sign_command(0x11, 0x9a, &digest, 0x00));
        assert_eq!(sw, 0x9000);
        let sig = p256::ecdsa::Signature::from_der(&signature_of(&answer)).unwrap();
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
        vk.verify_prehash(&digest, &sig).unwrap();
        // The wrong algorithm in P1: 6A80.
        assert_eq!(b.send(&sign_command(0x14, 0x9a, &digest, 0x00)).1, 0x6a80);

        // 9C needs the PIN first (6982), then signs the 48-byte digest.
        let digest = Sha384::digest(b"hello p384");
        assert_eq!(b.send(&sign_command(0x14, 0x9c, &digest, 0x00)).1, 0x6982);
        b.verify_pin();
        let (answer, sw) = b.send(&sign_command(0x14, 0x9c, &digest, 0x00));
        assert_eq!(sw, 0x9000);
        let sig = p384::ecdsa::Signature::from_der(&signature_of(&answer)).unwrap();
        let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point384).unwrap();
        vk.verify_prehash(&digest, &sig).unwrap();

        // An empty slot: 6A80.
        assert_eq!(b.send(&sign_command(0x11, 0x9e, &[1; 32], 0x00)).1, 0x6a80);
    }
}

#[test]
fn pin_policy_always_needs_a_verify_right_before_each_signature() {
    let mut b = Bench::new(ManagementKeyAlgorithm::Aes192);
    b.select_piv();
    b.authenticate_default();
    let (point, _) = generate(&mut b, 0x9c, 0x11, &[0xaa, 0x01, 0x03]);
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    let digest = Sha256::digest(b"always");
    b.verify_pin();
    let (answer, sw) = b.send(&sign_command(0x11, 0x9c, &digest, 0x00));
    assert_eq!(sw, 0x9000);
    vk.verify_prehash(
        &digest,
        &p256::ecdsa::Signature::from_der(&signature_of(&answer)).unwrap(),
    )
    .unwrap();
    // The verification was spent by the signature.
    assert_eq!(b.send(&sign_command(0x11, 0x9c, &digest, 0x00)).1, 0x6982);
    // Another command between VERIFY and the signature voids it too.
    b.verify_pin();
    assert_eq!(b.hex("00fd0000").1, 0x9000);
    assert_eq!(b.send(&sign_command(0x11, 0x9c, &digest, 0x00)).1, 0x6982);
}

#[test]
fn touch_denied_is_6982_and_touch_approved_signs() {
    let mut b = Bench::new(ManagementKeyAlgorithm::Aes192);
    b.select_piv();
    b.authenticate_default();
    let (point, _) = generate(&mut b, 0x9a, 0x11, &[0xaa, 0x01, 0x01, 0xab, 0x01, 0x02]);
    let digest = Sha256::digest(b"touch");
    let (answer, sw) = b.send(&sign_command(0x11, 0x9a, &digest, 0x00));
    assert_eq!(sw, 0x9000);
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    vk.verify_prehash(
        &digest,
        &p256::ecdsa::Signature::from_der(&signature_of(&answer)).unwrap(),
    )
    .unwrap();
    let deny: Arc<dyn TouchSource> = Arc::new(DenyTouch);
    b.card.set_touch_source(deny);
    assert_eq!(b.send(&sign_command(0x11, 0x9a, &digest, 0x00)).1, 0x6982);
}

#[test]
fn command_chaining_joins_parts_and_is_one_command() {
    let mut b = Bench::new(ManagementKeyAlgorithm::Aes192);
    b.select_piv();
    b.authenticate_default();
    let (point, _) = generate(&mut b, 0x9a, 0x11, &[0xaa, 0x01, 0x01]);
    let digest = Sha256::digest(b"chained");
    let whole = sign_command(0x11, 0x9a, &digest, 0x00);
    // Split the data (after the 5-byte header, before Le) in three parts.
    let data = &whole[5..whole.len() - 1];
    let parts = [&data[..10], &data[10..20], &data[20..]];
    for (i, part) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        let mut cmd = vec![if last { 0x00 } else { 0x10 }, 0x87, 0x11, 0x9a];
        cmd.push(part.len() as u8);
        cmd.extend_from_slice(part);
        if last {
            cmd.push(0);
        }
        let (answer, sw) = b.send(&cmd);
        if last {
            assert_eq!(sw, 0x9000);
            let sig = p256::ecdsa::Signature::from_der(&signature_of(&answer)).unwrap();
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .unwrap()
                .verify_prehash(&digest, &sig)
                .unwrap();
        } else {
            assert_eq!((answer.len(), sw), (0, 0x9000));
        }
    }
    // A chain continued with another instruction: 6883, and the chain is gone.
    assert_eq!(
        b.send(&[0x10, 0x87, 0x11, 0x9a, 0x02, 0x7c, 0x00]).1,
        0x9000
    );
    assert_eq!(b.send(&[0x10, 0xdb, 0x3f, 0xff, 0x01, 0x5c]).1, 0x6883);
    // A chain longer than MAX_CHAIN_DATA: 6A84.
    let chunk = vec![0u8; 255];
    let mut sw = 0x9000;
    for _ in 0..(MAX_CHAIN_DATA / 255 + 2) {
        let mut cmd = vec![0x10, 0xdb, 0x3f, 0xff, 0xff];
        cmd.extend_from_slice(&chunk);
        sw = b.send(&cmd).1;
        if sw != 0x9000 {
            break;
        }
    }
    assert_eq!(sw, 0x6a84);
    // GET RESPONSE and SELECT cannot be chained.
    assert_eq!(b.hex("10c0000000").1, 0x6a81);
    assert_eq!(b.hex("10a4040005a000000308").1, 0x6a81);
}

/// A self-signed certificate-like blob of `len` bytes (the card stores any
/// object contents; only the framing matters here).
fn cert_object_put(len: usize) -> (Vec<u8>, Vec<u8>) {
    let cert: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    let mut contents = Vec::new();
    tlv::write(&mut contents, 0x70, &cert).unwrap();
    tlv::write(&mut contents, 0x71, &[0]).unwrap();
    tlv::write(&mut contents, 0xfe, &[]).unwrap();
    let mut data = Vec::new();
    tlv::write(&mut data, 0x5c, &[0x5f, 0xc1, 0x05]).unwrap();
    tlv::write(&mut data, 0x53, &contents).unwrap();
    (data, contents)
}

#[test]
fn long_objects_go_in_with_chaining_or_extended_length_and_out_with_61xx() {
    let mut b = Bench::new(ManagementKeyAlgorithm::Aes192);
    b.select_piv();
    b.authenticate_default();
    let (data, contents) = cert_object_put(1800);
    // PUT DATA by command chaining, 255 bytes a part (as yubico-piv-tool).
    let parts: Vec<&[u8]> = data.chunks(255).collect();
    for (i, part) in parts.iter().enumerate() {
        let cla = if i + 1 < parts.len() { 0x10 } else { 0x00 };
        let mut cmd = vec![cla, 0xdb, 0x3f, 0xff, part.len() as u8];
        cmd.extend_from_slice(part);
        assert_eq!(b.send(&cmd).1, 0x9000, "part {i}");
    }
    // GET DATA, short: 256 bytes and 61 00 while 256 or more remain.
    let get = hex::decode("00cb3fff055c035fc10500").unwrap();
    let (first, sw) = b.send(&get);
    assert_eq!((first.len(), sw), (256, 0x6100));
    let (whole, sw) = b.send_all(&get);
    assert_eq!(sw, 0x9000);
    let (t, rest) = tlv::read(&whole).unwrap();
    assert_eq!((t.tag, t.value, rest.len()), (0x53, &contents[..], 0));
    // The last 61xx announces the exact remainder.
    let total = whole.len();
    let (_, mut sw) = b.send(&get);
    let mut got = 256;
    while sw >> 8 == 0x61 {
        let left = total - got;
        assert_eq!(sw & 0xff, if left >= 256 { 0 } else { left as u16 });
        let (more, next) = b.hex("00c0000000");
        got += more.len();
        sw = next;
    }
    assert_eq!(got, total);
    // Any other command drops the pending rest.
    let (_, sw) = b.send(&get);
    assert_eq!(sw, 0x6100);
    assert_eq!(b.hex("00fd0000").1, 0x9000);
    assert_eq!(b.hex("00c0000000").1, 0x6985);

    // Extended length: the same in one command each way (no Le: everything).
    let (data2, contents2) = cert_object_put(2900);
    let mut cmd = vec![0x00, 0xdb, 0x3f, 0xff, 0x00];
    cmd.extend_from_slice(&(data2.len() as u16).to_be_bytes());
    cmd.extend_from_slice(&data2);
    assert_eq!(b.send(&cmd).1, 0x9000);
    let ext_get = hex::decode("00cb3fff0000055c035fc105").unwrap();
    let (whole, sw) = b.send(&ext_get);
    assert_eq!(sw, 0x9000);
    let (t, _) = tlv::read(&whole).unwrap();
    assert_eq!(t.value, &contents2[..]);
    // Extended with Le 0000 (65536): everything; with Le 0100: 256 then 61xx.
    let mut with_le = ext_get.clone();
    with_le.extend_from_slice(&[0x00, 0x00]);
    assert_eq!(b.send(&with_le).0, whole);
    let mut small = ext_get.clone();
    small.extend_from_slice(&[0x01, 0x00]);
    let (part, sw) = b.send(&small);
    assert_eq!((part.len(), sw >> 8), (256, 0x61));
    // Objects bigger than the device's 3052 bytes: 6A84.
    let (too_big, _) = cert_object_put(3100);
    let mut cmd = vec![0x00, 0xdb, 0x3f, 0xff, 0x00];
    cmd.extend_from_slice(&(too_big.len() as u16).to_be_bytes());
    cmd.extend_from_slice(&too_big);
    assert_eq!(b.send(&cmd).1, 0x6a84);
}

#[test]
fn attestation_certificates_come_out_with_get_response() {
    let mut b = Bench::new(ManagementKeyAlgorithm::Aes192);
    b.select_piv();
    // The f9 certificate (object 5FFF01) is readable without the PIN.
    let (f9, sw) = b.send_all(&hex::decode("00cb3fff055c035fff0100").unwrap());
    assert_eq!(sw, 0x9000);
    let (t, _) = tlv::read(&f9).unwrap();
    let f9_der = crate::emulator::card::certificate_from_object(t.value).unwrap();
    b.authenticate_default();
    generate(&mut b, 0x9a, 0x11, &[0xaa, 0x01, 0x02, 0xab, 0x01, 0x01]);
    let (attestation, sw) = b.send_all(&hex::decode("00f99a0000").unwrap());
    assert_eq!(sw, 0x9000);
    assert!(attestation.len() > 256, "short enough to skip 61xx");
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(&attestation).unwrap();
    let issuer = x509_cert::Certificate::from_der(&f9_der).unwrap();
    assert_eq!(
        cert.tbs_certificate().issuer(),
        issuer.tbs_certificate().subject()
    );
}

#[test]
fn management_key_authentication_aes192_and_3des() {
    for alg in [ManagementKeyAlgorithm::Aes192, ManagementKeyAlgorithm::Tdes] {
        let mut b = Bench::new(alg);
        b.select_piv();
        // Mutual authentication with the host checking the card's proof.
        b.authenticate_default();
        assert!(b.card.is_management_key_authenticated());

        // A wrong key: the card refuses step 2 with 6982.
        b.front.reset(&mut b.card);
        b.select_piv();
        let wrong = ManagementKey::new(alg, &vec![0x42; alg.key_len()]).unwrap();
        let (a1, _) = b.send(&HostAuthentication::witness_request(alg).to_bytes().unwrap());
        let (_, cmd2) =
            HostAuthentication::answer_witness(&wrong, &a1, &mut getrandom::SysRng).unwrap();
        assert_eq!(b.send(&cmd2.to_bytes().unwrap()).1, 0x6982);
        assert!(!b.card.is_management_key_authenticated());
        // Another algorithm in P1 than the key's: 6A86.
        let other = if alg == ManagementKeyAlgorithm::Tdes {
            ManagementKeyAlgorithm::Aes192
        } else {
            ManagementKeyAlgorithm::Tdes
        };
        let cmd = HostAuthentication::witness_request(other);
        assert_eq!(b.send(&cmd.to_bytes().unwrap()).1, 0x6a86);

        // One-way (challenge) authentication.
        let key = ManagementKey::default_for(alg).unwrap();
        let (c, sw) = b.send(
            &HostAuthentication::challenge_request(alg)
                .to_bytes()
                .unwrap(),
        );
        assert_eq!(sw, 0x9000);
        let cmd = HostAuthentication::answer_challenge(&key, &c).unwrap();
        let (data, sw) = b.send(&cmd.to_bytes().unwrap());
        assert_eq!((data.len(), sw), (0, 0x9000));
        assert!(b.card.is_management_key_authenticated());

        // SET MANAGEMENT KEY (FF) to a new AES-256 key, then it is the key.
        let new = ManagementKey::new(ManagementKeyAlgorithm::Aes256, &[0x11; 32]).unwrap();
        let mut cmd = vec![0x00, 0xff, 0xff, 0xff, 3 + 32, 0x0c, 0x9b, 32];
        cmd.extend_from_slice(new.as_bytes());
        assert_eq!(b.send(&cmd).1, 0x9000);
        b.front.reset(&mut b.card);
        b.select_piv();
        b.authenticate(&new);
        let (meta, sw) = b.hex("00f7009b");
        assert_eq!(sw, 0x9000);
        assert_eq!(&meta[..3], &[0x01, 0x01, 0x0c]);
    }
}

#[test]
fn yubikey_extensions_answer_as_the_device() {
    let mut b = Bench::new(ManagementKeyAlgorithm::Aes192);
    b.select_piv();
    assert_eq!(b.hex("00fd0000"), (vec![5, 7, 4], 0x9000));
    assert_eq!(b.hex("00f80000"), (SERIAL.to_be_bytes().to_vec(), 0x9000));
    // F7 on the PIN: algorithm FF, default, 3 of 3 tries.
    assert_eq!(
        b.hex("00f70080"),
        (
            hex::decode("0101ff0501010602030 3".replace(' ', "")).unwrap(),
            0x9000
        )
    );
    // FA needs the management key and the PIN.
    assert_eq!(b.hex("00fa0505").1, 0x6982);
    b.authenticate_default();
    b.verify_pin();
    assert_eq!(b.hex("00fa0507").1, 0x9000);
    assert_eq!(b.hex("00f70080").0[6..], [0x06, 0x02, 0x05, 0x05]);
    assert_eq!(b.hex("00f70081").0[6..], [0x06, 0x02, 0x07, 0x07]);
    // FE imports a P-256 key (06 = private scalar) with policies.
    let sk = p256::SecretKey::from_slice(&[0x21; 32]).unwrap();
    let mut cmd = vec![0x00, 0xfe, 0x11, 0x9d, 34 + 6, 0x06, 0x20];
    cmd.extend_from_slice(&sk.to_bytes());
    cmd.extend_from_slice(&[0xaa, 0x01, 0x01, 0xab, 0x01, 0x01]);
    assert_eq!(b.send(&cmd).1, 0x9000);
    let (meta, _) = b.hex("00f7009d");
    // Origin imported (03 01 02), public key 04 { 86 point }.
    let items = tlv::parse_all(&meta).unwrap();
    assert_eq!(items[2].value, &[0x02]);
    let point = sk.public_key().to_sec1_bytes();
    let (p, _) = tlv::read(items[3].value).unwrap();
    assert_eq!(p.value, &point[..]);
    // An imported key cannot be attested (6A80).
    assert_eq!(b.hex("00f99d0000").1, 0x6a80);
    // FB resets only when PIN and PUK are blocked.
    assert_eq!(b.hex("00fb0000").1, 0x6985);
    for _ in 0..5 {
        b.hex("002000800831313131313131ff");
    }
    for _ in 0..7 {
        b.hex("002c0080103131313131313131313131313131313131");
    }
    assert_eq!(b.hex("00200080").1, 0x6983);
    assert_eq!(b.hex("00fb0000").1, 0x9000);
    // Factory state again: default PIN with 3 tries, no key in 9D.
    assert_eq!(b.hex("00200080").1, 0x63c3);
    assert_eq!(b.hex("00f7009d").1, 0x6a88);
    // GET METADATA does not exist before firmware 5.3.
    let mut old = Bench {
        card: card_with(ManagementKeyAlgorithm::Tdes, FirmwareVersion::new(5, 2, 7)),
        front: ApduFrontEnd::new(),
    };
    old.select_piv();
    assert_eq!(old.hex("00f70080").1, 0x6d00);
    assert_eq!(old.hex("00fd0000").0, vec![5, 2, 7]);
}

#[test]
fn discovery_chuid_and_ccc_round_trip() {
    let mut b = Bench::new(ManagementKeyAlgorithm::Aes192);
    b.select_piv();
    // Not written yet: 6A82 (ykman writes them on first use).
    assert_eq!(b.hex("00cb3fff055c035fc10200").1, 0x6a82);
    b.authenticate_default();
    for id in ["5fc102", "5fc107"] {
        let put = format!("00db3fff0b5c03{id}5304aabbccdd");
        assert_eq!(b.hex(&put).1, 0x9000, "{id}");
        assert_eq!(
            b.hex(&format!("00cb3fff055c03{id}00")),
            (hex::decode("5304aabbccdd").unwrap(), 0x9000)
        );
    }
    // The discovery object is fixed: PUT DATA refuses it.
    assert_ne!(b.hex("00db3fff065c017e53017e").1, 0x9000);
}

/// A deterministic generator (SplitMix64) for the random-sequence test.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Valid commands the random sequence mixes in (so that it gets past
/// SELECT and authentication and reaches deep states).
const VALID: &[&str] = &[
    "00a4040005a000000308",
    "00a4040008a000000527471117",
    "00a4040007a0000005272001",
    "00fd0000",
    "00f80000",
    "00200080",
    "0020008008313233343536ffff",
    "0020008008393939393939ffff",
    "00f70080",
    "00f7009a",
    "00cb3fff055c035fff0100",
    "00cb3fff055c035fc10500",
    "00c0000000",
    "0047009a05ac03800111",
    "0047009c0bac09800114aa0101ab0102",
    "00f99a0000",
    "00db3fff0a5c035fc1025303010203",
    "002c0080103132333435363738313233343536ffff",
    "00fb0000",
    "00fa0303",
    "1087119a027c00",
    "001d0000",
    // Ed25519 and X25519 (generate, sign, ECDH, import), ECDH on P-256, an
    // RSA-1024 import whose parts are no key (RSA generation is too slow
    // for a random run).
    "0047009d05ac038001e0",
    "0047009e05ac038001e1",
    "0087e09d0a7c088200810461626364",
    "0087e19e267c24820085200909090909090909090909090909090909090909090909090909090909090909",
    "00fee19e220820abababababababababababababababababababababababababababababababab",
    "0087119a477c45820085410400000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "00fe069a11010201ff020201fd030101040101050101",
    "00f7009d",
];

/// Mutate a valid command: flip, insert, drop or truncate bytes.
fn mutate(rng: &mut SplitMix, mut cmd: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(3) {
        match rng.below(5) {
            0 if !cmd.is_empty() => {
                let i = rng.below(cmd.len());
                cmd[i] = rng.byte();
            }
            1 => {
                let i = rng.below(cmd.len() + 1);
                cmd.insert(i, rng.byte());
            }
            2 if !cmd.is_empty() => {
                let i = rng.below(cmd.len());
                cmd.remove(i);
            }
            3 => cmd.truncate(rng.below(cmd.len() + 1)),
            _ => {
                let n = rng.below(8);
                cmd.extend((0..n).map(|_| rng.byte()));
            }
        }
    }
    cmd
}

fn random_command(rng: &mut SplitMix) -> Vec<u8> {
    match rng.below(10) {
        // Pure noise of any length up to an extended APDU.
        0 => {
            let len = if rng.below(10) == 0 {
                rng.below(5000)
            } else {
                rng.below(40)
            };
            (0..len).map(|_| rng.byte()).collect()
        }
        // A header with a PIV-ish instruction and random parameters/data.
        1..=3 => {
            const INS: &[u8] = &[
                0x20, 0x24, 0x2c, 0x47, 0x87, 0xa4, 0xc0, 0xcb, 0xdb, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb,
                0xfd, 0xfe, 0xff, 0x1d, 0x01,
            ];
            let cla = [0x00, 0x10, 0x00, 0x00][rng.below(4)];
            let mut cmd = vec![cla, INS[rng.below(INS.len())], rng.byte(), rng.byte()];
            let n = rng.below(300);
            if n > 0 {
                if n > 255 {
                    cmd.extend_from_slice(&[0, (n >> 8) as u8, n as u8]);
                } else {
                    cmd.push(n as u8);
                }
                cmd.extend((0..n).map(|_| rng.byte()));
            }
            if rng.below(2) == 0 {
                cmd.push(rng.byte());
            }
            cmd
        }
        4..=5 => {
            let base = hex::decode(VALID[rng.below(VALID.len())].replace(' ', "")).unwrap();
            mutate(rng, base)
        }
        _ => hex::decode(VALID[rng.below(VALID.len())].replace(' ', "")).unwrap(),
    }
}

#[test]
fn random_sequences_never_panic_and_keep_the_state_file_loadable() {
    use crate::emulator::token::{EmulatedToken, InitOptions, OpenOptions};
    use crate::transport::vpcd::VirtualCard;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    let options = InitOptions {
        serial: Some(SERIAL),
        ..InitOptions::default()
    };
    let token = EmulatedToken::init(&path, &options).unwrap();
    let mut card = EmulatedSmartCard::new(token);
    let mut rng = SplitMix(0x5eed_0003);
    let key = ManagementKey::default_for(ManagementKeyAlgorithm::Aes192).unwrap();
    let mut status_words = std::collections::BTreeSet::new();
    const ROUNDS: usize = 20_000;
    for round in 0..ROUNDS {
        match rng.below(200) {
            0 => card.reset(),
            1 => {
                // A real mutual authentication now and then (needs PIV).
                card.transmit(&hex::decode("00a4040005a000000308").unwrap());
                let r = card.transmit(
                    &HostAuthentication::witness_request(key.algorithm())
                        .to_bytes()
                        .unwrap(),
                );
                if r.ends_with(&[0x90, 0x00]) {
                    if let Ok((_, cmd2)) = HostAuthentication::answer_witness(
                        &key,
                        &r[..r.len() - 2],
                        &mut getrandom::SysRng,
                    ) {
                        card.transmit(&cmd2.to_bytes().unwrap());
                    }
                }
            }
            _ => {
                let cmd = random_command(&mut rng);
                let r = card.transmit(&cmd);
                assert!(
                    (2..=65535).contains(&r.len()),
                    "round {round}: response of {} bytes to {}",
                    r.len(),
                    hex::encode(&cmd)
                );
                status_words.insert(u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]]));
            }
        }
        if round % 5000 == 4999 {
            // The state file on disk is loadable at any point (a second
            // reader copies it: the live card holds the lock).
            let copy = dir.path().join(format!("copy{round}.json"));
            std::fs::copy(&path, &copy).unwrap();
            drop(EmulatedToken::open_with(&copy, OpenOptions::default()).unwrap());
        }
    }
    // The sequence reached far: success, errors of the transport and the
    // PIV applet's refusals.
    for sw in [0x9000, 0x6700, 0x6d00, 0x6a80, 0x6982, 0x6a86] {
        assert!(
            status_words.contains(&sw),
            "never saw {sw:04X}: {status_words:04X?}"
        );
    }
    drop(card);
    let reopened = EmulatedToken::open_with(&path, OpenOptions::default()).unwrap();
    drop(reopened);
}

#[test]
fn a_digest_shorter_than_the_field_is_signed_as_ecdsa_prescribes() {
    // yubico-piv-tool's test-signature sends SHA-256 to a P-384 key.
    let mut b = Bench::new(ManagementKeyAlgorithm::Aes192);
    b.select_piv();
    b.authenticate_default();
    let (point, _) = generate(&mut b, 0x9a, 0x14, &[0xaa, 0x01, 0x01, 0xab, 0x01, 0x01]);
    let digest = Sha256::digest(b"short digest, long curve");
    let (answer, sw) = b.send(&sign_command(0x14, 0x9a, &digest, 0x00));
    assert_eq!(sw, 0x9000);
    let sig = p384::ecdsa::Signature::from_der(&signature_of(&answer)).unwrap();
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    // RustCrypto left-pads a short prehash the same way.
    vk.verify_prehash(&digest, &sig).unwrap();
    // Longer than the field: refused (hosts truncate).
    assert_eq!(b.send(&sign_command(0x14, 0x9a, &[7; 64], 0x00)).1, 0x6a80);
}
