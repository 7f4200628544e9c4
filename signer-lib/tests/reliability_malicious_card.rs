//! Reliability suite, group `hostile`: a malicious card.
//!
//! The PIV client (`HardwareToken`, and `TokenSigner` over it) talks to the
//! emulated YubiKey on the loopback transport through a card that rewrites
//! its answers: truncated, oversized, wrongly tagged or inconsistent
//! responses. Each case must end in a typed error (the variant is checked),
//! never a panic or a hang, and no signature that does not verify is ever
//! released; a PIN the card "rejected" is never sent again.
//!
//! The second test runs the fuzz harness `signer-lib/fuzz/harness/piv_responses.rs`
//! (the cargo-fuzz target `piv_responses`) on seeded random scripts, so the
//! same checks run in the normal test suite without a nightly toolchain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../fuzz/harness/piv_responses.rs"]
mod harness;

use std::sync::{Arc, Mutex};

use harness::{Rig, Tamper, pin, verifies};
use signature::hazmat::PrehashSigner;
use signer_lib::piv::{ins, tag, tlv};
use signer_lib::signer::TokenSigner;
use signer_lib::{Error, HashAlgorithm, SlotId, Token};
use zeroize::Zeroizing;

/// Rewrite responses to commands with instruction `which` only.
fn on(which: u8, mut f: impl FnMut(Vec<u8>) -> Vec<u8> + Send + 'static) -> Option<Tamper> {
    Some(Box::new(move |cmd: &[u8], honest: Zeroizing<Vec<u8>>| {
        if cmd.get(1) == Some(&which) {
            f(honest.to_vec())
        } else {
            honest.to_vec()
        }
    }))
}

/// Rewrite responses to `which` and to every GET RESPONSE (a chain that
/// never ends).
fn on_chain(which: u8, mut f: impl FnMut(Vec<u8>) -> Vec<u8> + Send + 'static) -> Option<Tamper> {
    Some(Box::new(move |cmd: &[u8], honest: Zeroizing<Vec<u8>>| {
        if cmd.get(1) == Some(&which) || cmd.get(1) == Some(&ins::GET_RESPONSE) {
            f(honest.to_vec())
        } else {
            honest.to_vec()
        }
    }))
}

/// Rewrite the response to GET METADATA of key reference `p2` only.
fn on_metadata(p2: u8, f: impl Fn(Vec<u8>) -> Vec<u8> + Send + 'static) -> Option<Tamper> {
    Some(Box::new(move |cmd: &[u8], honest: Zeroizing<Vec<u8>>| {
        if cmd.get(1) == Some(&ins::GET_METADATA) && cmd.get(3) == Some(&p2) {
            f(honest.to_vec())
        } else {
            honest.to_vec()
        }
    }))
}

fn split_sw(mut r: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let sw = r.split_off(r.len().saturating_sub(2));
    (r, sw)
}

/// Rebuild top-level TLVs of a response, changing values by tag.
fn retag(r: Vec<u8>, f: impl Fn(u32, &[u8]) -> Option<(u32, Vec<u8>)>) -> Vec<u8> {
    let (data, sw) = split_sw(r);
    let mut out = Vec::new();
    for t in tlv::parse_all(&data).unwrap() {
        let (tag, value) = f(t.tag, t.value).unwrap_or((t.tag, t.value.to_vec()));
        tlv::write(&mut out, tag, &value).unwrap();
    }
    out.extend(sw);
    out
}

fn ok(data: Vec<u8>) -> Vec<u8> {
    let mut d = data;
    d.extend([0x90, 0x00]);
    d
}

/// A GENERAL AUTHENTICATE response carrying `sig`.
fn ga_response(sig: &[u8]) -> Vec<u8> {
    let mut inner = Vec::new();
    tlv::write(&mut inner, tag::RESPONSE, sig).unwrap();
    let mut out = Vec::new();
    tlv::write(&mut out, tag::DYN_AUTH, &inner).unwrap();
    ok(out)
}

fn kind(e: &Error) -> String {
    let s = format!("{e:?}");
    s.split([' ', '{', '(']).next().unwrap_or("").to_string()
}

struct Outcome {
    name: &'static str,
    ok: bool,
    figures: String,
}

fn report(out: &mut Vec<Outcome>, name: &'static str, ok: bool, figures: String) {
    println!(
        "RELIABILITY\thostile\tmalicious_card_{name}\t{}\t{figures}",
        if ok { "PASS" } else { "FAIL" }
    );
    out.push(Outcome { name, ok, figures });
}

/// Run `f` on a freshly opened client; a panic is reported as such.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

#[test]
fn malicious_card_answers_give_typed_errors_and_no_bad_signature() {
    let rig = Rig::new();
    let mut results = Vec::new();
    let apdus = |rig: &Rig| rig.card.instructions().len();

    // ---- Opening: SELECT, GET SERIAL, GET VERSION ---------------------------
    let open_cases: Vec<(&'static str, Option<Tamper>, &[&str])> = vec![
        (
            "select_empty",
            on(ins::SELECT, |_| Vec::new()),
            &["Protocol"],
        ),
        (
            "select_one_byte",
            on(ins::SELECT, |_| vec![0x90]),
            &["Protocol"],
        ),
        (
            "select_no_piv_applet",
            on(ins::SELECT, |_| vec![0x6a, 0x82]),
            &["NotSupported"],
        ),
        (
            "select_endless_61xx",
            on_chain(ins::SELECT, |_| {
                let mut r = vec![0xee; 256];
                r.extend([0x61, 0x00]);
                r
            }),
            &["Protocol"],
        ),
        (
            "serial_three_bytes",
            on(ins::GET_SERIAL, |_| ok(vec![1, 2, 3])),
            &["Protocol"],
        ),
        (
            "serial_oversized_70k",
            on(ins::GET_SERIAL, |_| ok(vec![7; 70_000])),
            &["Protocol"],
        ),
        (
            "serial_unexpected_sw",
            on(ins::GET_SERIAL, |_| vec![0x6f, 0x00]),
            &["UnexpectedStatus"],
        ),
        (
            "version_two_bytes",
            on(ins::GET_VERSION, |_| ok(vec![5, 7])),
            &["Protocol"],
        ),
    ];
    for (name, tamper, want) in open_cases {
        rig.set_tamper(tamper);
        let before = apdus(&rig);
        let got = guarded(|| rig.open().map(drop));
        rig.set_tamper(None);
        let sent = apdus(&rig) - before;
        let (pass, got_kind) = match &got {
            Ok(Err(e)) => (want.contains(&kind(e).as_str()), kind(e)),
            Ok(Ok(())) => (false, "Ok".into()),
            Err(p) => (false, format!("PANIC {p}")),
        };
        // Bounded: an endless 61xx stops at 64 KiB (257 APDUs).
        let pass = pass && sent <= 300;
        report(
            &mut results,
            name,
            pass,
            format!("error={got_kind} apdus={sent}"),
        );
    }

    // ---- Key metadata (GET METADATA) ------------------------------------------
    let p256_ref = SlotId::Signature.key_reference();
    let meta_cases: Vec<(&'static str, Option<Tamper>)> = vec![
        (
            "metadata_truncated_tlv",
            on_metadata(p256_ref, |r| {
                let (d, sw) = split_sw(r);
                let mut t = d[..d.len() / 2].to_vec();
                t.extend(sw);
                t
            }),
        ),
        (
            "metadata_indefinite_length",
            on_metadata(p256_ref, |_| ok(vec![0x01, 0x80, 0x11])),
        ),
        (
            "metadata_length_past_end",
            on_metadata(p256_ref, |_| ok(vec![0x04, 0x83, 0xff, 0xff, 0xff, 0x86])),
        ),
        (
            "metadata_unknown_algorithm",
            on_metadata(p256_ref, |r| {
                retag(r, |t, _| (t == 0x01).then(|| (0x01, vec![0x99])))
            }),
        ),
        (
            "metadata_algorithm_p384_point_p256",
            on_metadata(p256_ref, |r| {
                retag(r, |t, _| (t == 0x01).then(|| (0x01, vec![0x14])))
            }),
        ),
        (
            "metadata_policy_one_byte",
            on_metadata(p256_ref, |r| {
                retag(r, |t, _| (t == 0x02).then(|| (0x02, vec![0x01])))
            }),
        ),
        (
            "metadata_invalid_policy_value",
            on_metadata(p256_ref, |r| {
                retag(r, |t, _| (t == 0x02).then(|| (0x02, vec![0x09, 0x09])))
            }),
        ),
        (
            "metadata_point_not_on_curve",
            on_metadata(p256_ref, |r| {
                retag(r, |t, v| {
                    (t == 0x04).then(|| {
                        let mut v = v.to_vec();
                        let last = v.len() - 1;
                        v[last] ^= 0x01;
                        (0x04, v)
                    })
                })
            }),
        ),
        (
            "metadata_point_wrong_tag",
            on_metadata(p256_ref, |r| {
                retag(r, |t, v| {
                    (t == 0x04).then(|| {
                        let mut v = v.to_vec();
                        v[0] = 0x87;
                        (0x04, v)
                    })
                })
            }),
        ),
        (
            "metadata_without_public_key",
            on_metadata(p256_ref, |r| {
                let (d, sw) = split_sw(r);
                let mut out = Vec::new();
                for t in tlv::parse_all(&d).unwrap() {
                    if t.tag != 0x04 {
                        tlv::write(&mut out, t.tag, t.value).unwrap();
                    }
                }
                out.extend(sw);
                out
            }),
        ),
        (
            "metadata_empty_success",
            on_metadata(p256_ref, |_| vec![0x90, 0x00]),
        ),
    ];
    for (name, tamper) in meta_cases {
        rig.set_tamper(tamper);
        let got = guarded(|| {
            let mut t = rig.open()?;
            t.public_key(SlotId::Signature)
        });
        rig.set_tamper(None);
        let (pass, got_kind) = match &got {
            Ok(Err(e)) => (
                matches!(
                    e,
                    Error::Protocol { .. }
                        | Error::UnsupportedAlgorithm { .. }
                        | Error::InvalidPolicy { .. }
                ),
                kind(e),
            ),
            Ok(Ok(k)) => (false, format!("Ok({:?})", k.algorithm)),
            Err(p) => (false, format!("PANIC {p}")),
        };
        report(&mut results, name, pass, format!("error={got_kind}"));
    }

    // PIN/PUK and management key metadata.
    for (name, tamper) in [
        (
            "pin_metadata_without_retries",
            on_metadata(0x80, |r| {
                retag(r, |t, _| (t == 0x06).then(|| (0x07, vec![3, 3])))
            }),
        ),
        (
            "mgmt_metadata_unknown_algorithm",
            on_metadata(0x9b, |r| {
                retag(r, |t, _| (t == 0x01).then(|| (0x01, vec![0x77])))
            }),
        ),
    ] {
        rig.set_tamper(tamper);
        let got = guarded(|| {
            let mut t = rig.open()?;
            if name.starts_with("pin") {
                t.retry_counters().map(drop)
            } else {
                t.management_key_metadata().map(drop)
            }
        });
        rig.set_tamper(None);
        let (pass, got_kind) = match &got {
            Ok(Err(e)) => (
                matches!(
                    e,
                    Error::Protocol { .. }
                        | Error::InvalidManagementKey { .. }
                        | Error::UnsupportedAlgorithm { .. }
                ),
                kind(e),
            ),
            Ok(Ok(())) => (false, "Ok".into()),
            Err(p) => (false, format!("PANIC {p}")),
        };
        report(&mut results, name, pass, format!("error={got_kind}"));
    }

    // ---- Certificates (GET DATA) ------------------------------------------------
    for (name, tamper) in [
        (
            "get_data_wrong_outer_tag",
            on(ins::GET_DATA, |r| {
                let mut r = r;
                if r.len() > 2 {
                    r[0] = 0x54;
                }
                r
            }),
        ),
        (
            "get_data_truncated",
            on(ins::GET_DATA, |r| {
                let (d, sw) = split_sw(r);
                let mut t = d[..d.len().min(5)].to_vec();
                t.extend(sw);
                t
            }),
        ),
        (
            "get_data_garbage_certificate",
            on(ins::GET_DATA, |r| {
                let (d, sw) = split_sw(r);
                if d.is_empty() {
                    let mut d = d;
                    d.extend(sw);
                    return d;
                }
                let mut inner = Vec::new();
                tlv::write(
                    &mut inner,
                    tag::CERTIFICATE,
                    &[0x30, 0x82, 0xff, 0xff, 0x01],
                )
                .unwrap();
                tlv::write(&mut inner, tag::CERT_INFO, &[0]).unwrap();
                let mut out = Vec::new();
                tlv::write(&mut out, tag::OBJECT_DATA, &inner).unwrap();
                out.extend(sw);
                out
            }),
        ),
    ] {
        rig.set_tamper(tamper);
        let got = guarded(|| {
            let mut t = rig.open()?;
            t.list_keys()
        });
        rig.set_tamper(None);
        // Either a typed error, or the key listed without its unreadable
        // certificate.
        let (pass, got_kind) = match &got {
            Ok(Err(e)) => (
                matches!(e, Error::Protocol { .. } | Error::Certificate { .. }),
                kind(e),
            ),
            Ok(Ok(keys)) => (
                keys.iter().all(|k| k.certificate.is_none()),
                format!("Ok({} keys, no certificate)", keys.len()),
            ),
            Err(p) => (false, format!("PANIC {p}")),
        };
        report(&mut results, name, pass, format!("outcome={got_kind}"));
    }

    // ---- Signatures (GENERAL AUTHENTICATE) -----------------------------------------
    // An honest answer for another digest, to replay.
    let other_digest = HashAlgorithm::Sha256.digest(b"another message");
    let replay = {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let c = captured.clone();
        rig.set_tamper(on(ins::GENERAL_AUTHENTICATE, move |r| {
            *c.lock().unwrap() = r.clone();
            r
        }));
        let signer = TokenSigner::new(rig.open().unwrap(), SlotId::Signature).unwrap();
        signer
            .sign_digest(HashAlgorithm::Sha256, &other_digest)
            .unwrap();
        rig.set_tamper(None);
        captured.lock().unwrap().clone()
    };
    let foreign = {
        let sk = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
        let digest = HashAlgorithm::Sha256.digest(b"malicious card");
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
        ga_response(sig.to_der().as_bytes())
    };
    let sign_cases: Vec<(&'static str, Option<Tamper>, &[&str])> = vec![
        (
            "sign_outer_tag_7d",
            on(ins::GENERAL_AUTHENTICATE, |mut r| {
                r[0] = 0x7d;
                r
            }),
            &["Protocol"],
        ),
        (
            "sign_inner_tag_83",
            on(ins::GENERAL_AUTHENTICATE, |r| {
                retag(r, |t, v| {
                    (t == tag::DYN_AUTH).then(|| {
                        let inner = tlv::parse_all(v).unwrap();
                        let mut out = Vec::new();
                        for i in inner {
                            tlv::write(&mut out, if i.tag == 0x82 { 0x83 } else { i.tag }, i.value)
                                .unwrap();
                        }
                        (t, out)
                    })
                })
            }),
            &["Protocol"],
        ),
        (
            "sign_truncated",
            on(ins::GENERAL_AUTHENTICATE, |r| {
                let (d, sw) = split_sw(r);
                let mut t = d[..d.len() - 10].to_vec();
                t.extend(sw);
                t
            }),
            &["Protocol"],
        ),
        (
            "sign_success_without_data",
            on(ins::GENERAL_AUTHENTICATE, |_| vec![0x90, 0x00]),
            &["Protocol"],
        ),
        (
            "sign_endless_61xx",
            on_chain(ins::GENERAL_AUTHENTICATE, |_| {
                let mut r = vec![0x7c; 256];
                r.extend([0x61, 0x00]);
                r
            }),
            &["Protocol"],
        ),
        (
            "sign_oversized_signature",
            on(ins::GENERAL_AUTHENTICATE, |_| {
                ga_response(&vec![0x30; 60_000])
            }),
            &["Crypto"],
        ),
        (
            "sign_flipped_signature_byte",
            on(ins::GENERAL_AUTHENTICATE, |mut r| {
                let i = r.len() - 6;
                r[i] ^= 0x01;
                r
            }),
            &["Crypto"],
        ),
        (
            "sign_empty_signature",
            on(ins::GENERAL_AUTHENTICATE, |_| ga_response(&[])),
            &["Crypto"],
        ),
        (
            "sign_valid_signature_of_another_key",
            on(ins::GENERAL_AUTHENTICATE, move |_| foreign.clone()),
            &["Crypto"],
        ),
        (
            "sign_replayed_signature_of_another_digest",
            on(ins::GENERAL_AUTHENTICATE, move |_| replay.clone()),
            &["Crypto"],
        ),
        (
            "sign_unexpected_sw",
            on(ins::GENERAL_AUTHENTICATE, |_| vec![0x6f, 0x00]),
            &["UnexpectedStatus"],
        ),
    ];
    let digest = HashAlgorithm::Sha256.digest(b"the real message");
    for (name, tamper, want) in sign_cases {
        let signer = TokenSigner::new(rig.open().unwrap(), SlotId::Signature).unwrap();
        rig.set_tamper(tamper);
        let before = apdus(&rig);
        let got = guarded(|| signer.sign_digest(HashAlgorithm::Sha256, &digest));
        rig.set_tamper(None);
        let sent = apdus(&rig) - before;
        let (pass, got_kind) = match &got {
            Ok(Err(e)) => (want.contains(&kind(e).as_str()), kind(e)),
            Ok(Ok(sig)) => (
                false,
                format!(
                    "RELEASED (verifies: {})",
                    verifies(&rig.p256.public_key, &digest, sig)
                ),
            ),
            Err(p) => (false, format!("PANIC {p}")),
        };
        report(
            &mut results,
            name,
            pass && sent <= 300,
            format!("error={got_kind} released=0 apdus={sent}"),
        );
    }

    // ---- PIN: an inconsistent card never makes the client retry a PIN ----------
    for (name, tamper, want) in [
        (
            // PIN policy always: VERIFY succeeded, then the card says "PIN
            // not verified" to the signature.
            "sign_6982_after_verify",
            on(ins::GENERAL_AUTHENTICATE, |_| vec![0x69, 0x82]),
            "PinRequired",
        ),
        (
            // The card says the (correct) PIN is wrong, no tries left.
            "verify_claims_wrong_pin",
            on(ins::VERIFY, |_| vec![0x63, 0xc0]),
            "WrongPin",
        ),
    ] {
        let signer = TokenSigner::new(rig.open().unwrap(), SlotId::Authentication)
            .unwrap()
            .with_pin(pin());
        rig.set_tamper(tamper);
        let digest = HashAlgorithm::Sha384.digest(b"pin case");
        let before = rig.card.instructions().len();
        let first = guarded(|| signer.sign_digest(HashAlgorithm::Sha384, &digest));
        let second = guarded(|| signer.sign_digest(HashAlgorithm::Sha384, &digest));
        rig.set_tamper(None);
        let log = rig.card.instructions();
        let verifies_sent = log[before..].iter().filter(|&&i| i == ins::VERIFY).count();
        let k1 = match &first {
            Ok(Err(e)) => kind(e),
            Ok(Ok(_)) => "RELEASED".into(),
            Err(p) => format!("PANIC {p}"),
        };
        let k2 = match &second {
            Ok(Err(e)) => kind(e),
            Ok(Ok(_)) => "RELEASED".into(),
            Err(p) => format!("PANIC {p}"),
        };
        // A rejected PIN is never sent again (the second attempt is refused
        // locally); a PIN the card accepted may be sent once per signature
        // (policy always).
        let pass = k1 == want
            && if want == "WrongPin" {
                k2 == "PinRejectedEarlier" && verifies_sent == 1
            } else {
                k2 == want && verifies_sent == 2
            };
        report(
            &mut results,
            name,
            pass,
            format!("first={k1} second={k2} verify_apdus={verifies_sent}"),
        );
    }

    // ---- Attestation (ATTEST) ----------------------------------------------------------
    for (name, tamper) in [
        (
            "attest_garbage_certificate",
            on(ins::ATTEST, |_| ok(vec![0x30, 0x03, 1, 2])),
        ),
        (
            "attest_flipped_certificate_byte",
            on(ins::ATTEST, |mut r| {
                let i = r.len() / 2;
                r[i] ^= 0x10;
                r
            }),
        ),
        (
            "attest_empty_success",
            on(ins::ATTEST, |_| vec![0x90, 0x00]),
        ),
    ] {
        rig.set_tamper(tamper);
        let got = guarded(|| {
            let mut t = rig.open()?;
            t.attest(SlotId::Signature)
        });
        rig.set_tamper(None);
        let (pass, got_kind) = match &got {
            Ok(Ok(att)) => {
                let mut anchors = signer_lib::attestation::TrustAnchors::empty();
                anchors
                    .add_root_der("card", att.device_certificate.clone())
                    .unwrap_or_default();
                let v = signer_lib::attestation::verify_attestation(
                    att,
                    &anchors,
                    std::time::SystemTime::now(),
                    &signer_lib::attestation::verify::Expected {
                        public_key: Some(&rig.p256.public_key.spki_der),
                        slot: Some(SlotId::Signature),
                        serial: Some(rig.serial),
                    },
                );
                (
                    !v.trusted && !v.problems.is_empty(),
                    format!(
                        "untrusted: {}",
                        v.problems.first().cloned().unwrap_or_default()
                    ),
                )
            }
            Ok(Err(e)) => (true, kind(e)),
            Err(p) => (false, format!("PANIC {p}")),
        };
        report(
            &mut results,
            name,
            pass,
            format!(
                "outcome={:?}",
                got_kind.chars().take(80).collect::<String>()
            ),
        );
    }

    // The honest card still works after all of it.
    let signer = TokenSigner::new(rig.open().unwrap(), SlotId::Signature).unwrap();
    let sig = signer.sign_digest(HashAlgorithm::Sha256, &digest).unwrap();
    assert!(verifies(&rig.p256.public_key, &digest, &sig));

    let failed: Vec<String> = results
        .iter()
        .filter(|o| !o.ok)
        .map(|o| format!("{}: {}", o.name, o.figures))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} malicious-card cases failed:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}

/// xorshift64*: a reproducible stream without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

#[test]
fn seeded_random_card_responses_never_panic_or_release_bad_signatures() {
    let iterations: usize = std::env::var("SIGNER_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = 0x5eed_0fc0_ffee;
    let rig = Rig::new();
    let mut rng = Rng(seed);
    let started = std::time::Instant::now();
    let apdus_before = rig.card.instructions().len();
    for i in 0..iterations {
        // Mostly honest answers with a tampering now and then, so that runs
        // get deep into each operation before the card lies.
        let len = 1 + (rng.next() % 48) as usize;
        let mut input = Vec::with_capacity(len);
        input.push(rng.byte());
        for _ in 1..len {
            let b = rng.byte();
            input.push(if rng.next() % 4 == 0 {
                b | 0xa0
            } else {
                b & 0x7f
            });
        }
        if let Err(p) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness::run(&rig, &input)))
        {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            println!(
                "RELIABILITY\thostile\tmalicious_card_seeded_random\tFAIL\titeration={i} input={}",
                hex::encode(&input)
            );
            panic!(
                "iteration {i} (seed {seed:#x}), input {}: {msg}",
                hex::encode(&input)
            );
        }
    }
    let apdus = rig.card.instructions().len() - apdus_before;
    println!(
        "RELIABILITY\thostile\tmalicious_card_seeded_random\tPASS\truns={iterations} apdus={apdus} seed={seed:#x} secs={:.1}",
        started.elapsed().as_secs_f64()
    );
}
