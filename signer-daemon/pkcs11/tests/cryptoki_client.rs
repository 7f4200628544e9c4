//! The module driven by a Rust PKCS#11 application (the `cryptoki` crate)
//! against the real daemon on an emulated token. Each test's PKCS#11 part
//! runs in a process of its own (`common::child`), the daemon side and the
//! audit log are checked by the test process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    ED25519_9D, Fixture, P256_9C, P384_9A, RSA2048_82, assert_child_ok, child, child_dir,
    verify_raw,
};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::Digest;

fn init() -> Pkcs11 {
    let path = std::env::var_os("SIGNER_PKCS11_TEST_MODULE").unwrap();
    let p = Pkcs11::new(path).unwrap();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    p
}

fn only_slot(p: &Pkcs11) -> Slot {
    let slots = p.get_slots_with_token().unwrap();
    assert_eq!(slots.len(), 1, "one token, one slot");
    slots[0]
}

/// The private key with `CKA_ID` `id`, found by class, id and key type.
fn private_key(s: &Session, id: u8) -> ObjectHandle {
    let found = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(vec![id]),
            Attribute::KeyType(KeyType::EC),
        ])
        .unwrap();
    assert_eq!(found.len(), 1, "one private key with id {id}");
    found[0]
}

fn pem(slot: &str) -> String {
    std::fs::read_to_string(child_dir().join(format!("{slot}.pem"))).unwrap()
}

fn write_pems(f: &Fixture) {
    for (slot, pem) in &f.keys {
        std::fs::write(f.dir.path().join(format!("{slot}.pem")), pem).unwrap();
    }
}

fn rv(e: CkError) -> RvError {
    match e {
        CkError::Pkcs11(rv, _) => rv,
        other => panic!("not a PKCS#11 error: {other}"),
    }
}

#[test]
fn objects_match_the_daemons_keys_and_certificates() {
    const NAME: &str = "objects_match_the_daemons_keys_and_certificates";
    if child(NAME) {
        let p = init();
        let slot = only_slot(&p);
        let info = p.get_token_info(slot).unwrap();
        assert_eq!(info.label(), "YubiKey PIV #31000001");
        assert_eq!(info.serial_number(), "31000001");
        let s = p.open_ro_session(slot).unwrap();
        for (id, slot_name, curve_oid, point_len) in [
            (
                2u8,
                "9c",
                vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
                65,
            ),
            (
                1u8,
                "9a",
                vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
                97,
            ),
        ] {
            let spki_point = {
                use der::DecodePem;
                let der = spki::SubjectPublicKeyInfoOwned::from_pem(pem(slot_name)).unwrap();
                der.subject_public_key.raw_bytes().to_vec()
            };
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                let found = s
                    .find_objects(&[Attribute::Class(class), Attribute::Id(vec![id])])
                    .unwrap();
                assert_eq!(found.len(), 1);
                let attrs = s
                    .get_attributes(
                        found[0],
                        &[
                            AttributeType::EcParams,
                            AttributeType::EcPoint,
                            AttributeType::Sensitive,
                            AttributeType::Extractable,
                            AttributeType::Sign,
                        ],
                    )
                    .unwrap();
                let private = class == ObjectClass::PRIVATE_KEY;
                for a in attrs {
                    match a {
                        Attribute::EcParams(v) => assert_eq!(v, curve_oid),
                        Attribute::EcPoint(v) => {
                            // DER OCTET STRING of the SPKI's point.
                            assert_eq!(v[0], 0x04);
                            assert_eq!(&v[v.len() - point_len..], spki_point.as_slice());
                        }
                        Attribute::Sensitive(b) => assert_eq!(b, private),
                        Attribute::Extractable(b) => assert!(!b),
                        Attribute::Sign(b) => assert_eq!(b, private),
                        other => panic!("{other:?}"),
                    }
                }
            }
            // The certificate keygen stored, by label, with the same id.
            let label = if id == 2 {
                "X.509 Certificate for Digital Signature"
            } else {
                "X.509 Certificate for PIV Authentication"
            };
            let certs = s
                .find_objects(&[
                    Attribute::Class(ObjectClass::CERTIFICATE),
                    Attribute::Label(label.into()),
                ])
                .unwrap();
            assert_eq!(certs.len(), 1);
            let v = s
                .get_attributes(certs[0], &[AttributeType::Value, AttributeType::Id])
                .unwrap();
            let (Attribute::Value(der), Attribute::Id(cid)) = (&v[0], &v[1]) else {
                panic!("{v:?}")
            };
            assert_eq!(cid, &vec![id]);
            use der::Decode;
            let cert = x509_cert::Certificate::from_der(der).unwrap();
            assert_eq!(
                cert.tbs_certificate()
                    .subject_public_key_info()
                    .subject_public_key
                    .raw_bytes(),
                spki_point.as_slice()
            );
            // Subject, issuer and serial as DER, as PKCS#11 defines them.
            use der::Encode;
            let tbs = cert.tbs_certificate();
            let v = s
                .get_attributes(
                    certs[0],
                    &[
                        AttributeType::Subject,
                        AttributeType::Issuer,
                        AttributeType::SerialNumber,
                        AttributeType::CertificateType,
                    ],
                )
                .unwrap();
            assert_eq!(v[0], Attribute::Subject(tbs.subject().to_der().unwrap()));
            assert_eq!(v[1], Attribute::Issuer(tbs.issuer().to_der().unwrap()));
            assert_eq!(
                v[2],
                Attribute::SerialNumber(tbs.serial_number().to_der().unwrap())
            );
            assert_eq!(
                v[3],
                Attribute::CertificateType(cryptoki::object::CertificateType::X_509)
            );
        }
        // The private value is never given out.
        let k = private_key(&s, 2);
        let e = s.get_attributes(k, &[AttributeType::Value]);
        assert!(
            matches!(&e, Ok(v) if v.is_empty()) || e.is_err(),
            "CKA_VALUE of a private key: {e:?}"
        );
        // No key in 9d: nothing with id 3.
        assert!(
            s.find_objects(&[Attribute::Id(vec![3])])
                .unwrap()
                .is_empty()
        );
        return;
    }
    let f = Fixture::start(31_000_001, &[P256_9C, P384_9A], "");
    write_pems(&f);
    let out = f.run_child(NAME, &[], &[]);
    assert_child_ok(&f, &out);
}

#[test]
fn eight_threads_sign_concurrently_every_signature_verified() {
    const NAME: &str = "eight_threads_sign_concurrently_every_signature_verified";
    const PER_THREAD: usize = 5;
    if child(NAME) {
        let p = init();
        let slot = only_slot(&p);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    // Each thread its own session; even threads sign with the
                    // P-256 key (9c), odd ones with the P-384 key (9a).
                    let s = p.open_ro_session(slot).unwrap();
                    s.login(UserType::User, Some(&AuthPin::new("ignored".into())))
                        .or_else(|e| match rv(e) {
                            RvError::UserAlreadyLoggedIn => Ok(()),
                            other => Err(other),
                        })
                        .unwrap();
                    let (id, slot_name, mech) = if t % 2 == 0 {
                        (2, "9c", Mechanism::EcdsaSha256)
                    } else {
                        (1, "9a", Mechanism::EcdsaSha384)
                    };
                    let key = private_key(&s, id);
                    let pem = pem(slot_name);
                    for i in 0..PER_THREAD {
                        let msg = format!("thread {t} message {i}");
                        let sig = s.sign(&mech, key, msg.as_bytes()).unwrap();
                        let digest = if id == 2 {
                            sha2::Sha256::digest(&msg).to_vec()
                        } else {
                            sha2::Sha384::digest(&msg).to_vec()
                        };
                        assert!(verify_raw(&pem, &digest, &sig), "{msg}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        return;
    }
    let f = Fixture::start(31_000_002, &[P256_9C, P384_9A], "");
    write_pems(&f);
    let out = f.run_child(NAME, &[], &[("SIGNER_PKCS11_TOUCH_PROMPT", "0")]);
    assert_child_ok(&f, &out);
    let lines = f.sign_lines();
    assert_eq!(lines.len(), 8 * PER_THREAD, "{lines:#?}");
    assert!(lines.iter().all(|l| l["outcome"] == "ok"));
    let digests: std::collections::HashSet<_> =
        lines.iter().map(|l| l["digest"].to_string()).collect();
    assert_eq!(
        digests.len(),
        8 * PER_THREAD,
        "every signature its own digest"
    );
    // The prompt was turned off.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Touch your YubiKey"));
}

#[test]
fn a_length_query_costs_exactly_one_daemon_signature() {
    const NAME: &str = "a_length_query_costs_exactly_one_daemon_signature";
    if child(NAME) {
        let p = init();
        let s = p.open_ro_session(only_slot(&p)).unwrap();
        let key = private_key(&s, 2);
        let pem = pem("9c");
        // cryptoki's sign and sign_final ask the length first (null buffer),
        // then sign: 3 single-part CKM_ECDSA signatures...
        for i in 0..3u8 {
            let digest = sha2::Sha256::digest([i]).to_vec();
            let sig = s.sign(&Mechanism::Ecdsa, key, &digest).unwrap();
            assert_eq!(sig.len(), 64);
            assert!(verify_raw(&pem, &digest, &sig));
        }
        // ...one multi-part CKM_ECDSA_SHA256...
        s.sign_init(&Mechanism::EcdsaSha256, key).unwrap();
        s.sign_update(b"multi ").unwrap();
        s.sign_update(b"part").unwrap();
        let sig = s.sign_final().unwrap();
        assert!(verify_raw(&pem, &sha2::Sha256::digest(b"multi part"), &sig));
        // ...CKM_ECDSA_SHA512 on P-256 (the digest is truncated, as ECDSA says)...
        let sig = s.sign(&Mechanism::EcdsaSha512, key, b"five").unwrap();
        assert!(verify_raw(&pem, &sha2::Sha512::digest(b"five"), &sig));
        // ...and a digest of no SHA-2 length, refused before the daemon.
        let e = s.sign(&Mechanism::Ecdsa, key, &[1u8; 20]).unwrap_err();
        assert_eq!(rv(e), RvError::DataLenRange);
        let e = s.sign(&Mechanism::Ecdsa, key, &[1u8; 33]).unwrap_err();
        assert_eq!(rv(e), RvError::DataLenRange);
        // A mechanism the module does not have.
        let e = s.sign(&Mechanism::Sha256, key, b"x").unwrap_err();
        assert_eq!(rv(e), RvError::MechanismInvalid);
        return;
    }
    let f = Fixture::start(31_000_003, &[P256_9C], "");
    write_pems(&f);
    let out = f.run_child(NAME, &[], &[]);
    assert_child_ok(&f, &out);
    let lines = f.sign_lines();
    assert_eq!(
        lines.len(),
        5,
        "one audit line per logical signature: {lines:#?}"
    );
    assert!(lines.iter().all(|l| l["outcome"] == "ok"));
    // One touch prompt per signature (the key has touch policy always).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("Touch your YubiKey now").count(),
        5,
        "{stderr}"
    );
    assert!(stderr.contains("CKR_DATA_LEN_RANGE"), "{stderr}");
}

#[test]
fn works_inside_a_host_tokio_runtime() {
    const NAME: &str = "works_inside_a_host_tokio_runtime";
    if child(NAME) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Straight from async tasks on the host's runtime threads (what
            // a careless host does): must neither panic nor deadlock.
            let p = init();
            let mut tasks = Vec::new();
            for i in 0..4u8 {
                let p = p.clone();
                tasks.push(tokio::spawn(async move {
                    let s = p.open_ro_session(only_slot(&p)).unwrap();
                    let key = private_key(&s, 2);
                    let digest = sha2::Sha256::digest([i]).to_vec();
                    let sig = s.sign(&Mechanism::Ecdsa, key, &digest).unwrap();
                    assert!(verify_raw(&pem("9c"), &digest, &sig));
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        return;
    }
    let f = Fixture::start(31_000_004, &[P256_9C], "");
    write_pems(&f);
    let out = f.run_child(NAME, &[], &[]);
    assert_child_ok(&f, &out);
    assert_eq!(f.sign_lines().len(), 4);
}

#[test]
#[allow(unsafe_code)]
fn a_forked_child_initializes_again_and_signs() {
    const NAME: &str = "a_forked_child_initializes_again_and_signs";
    if child(NAME) {
        let p = init();
        let slot = only_slot(&p);
        let sign = |tag: &[u8]| {
            let s = p.open_ro_session(slot).unwrap();
            let key = private_key(&s, 2);
            let digest = sha2::Sha256::digest(tag).to_vec();
            let sig = s.sign(&Mechanism::Ecdsa, key, &digest).unwrap();
            verify_raw(&pem("9c"), &digest, &sig)
        };
        assert!(sign(b"parent before fork"));
        // SAFETY: the forked child only uses the module (which is built for
        // this: its client thread is not in the child, so it refuses until
        // C_Initialize and then starts a new one) and exits; the test
        // harness runs this body with one test thread.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // The parent's initialization does not hold here.
                    let e = p.get_slots_with_token().unwrap_err();
                    assert_eq!(rv(e), RvError::CryptokiNotInitialized);
                    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
                        .unwrap();
                    assert!(sign(b"forked child"));
                }))
                .is_ok();
                std::process::exit(if ok { 0 } else { 1 });
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        // The parent's connection is untouched by the child.
        assert!(sign(b"parent after fork"));
        return;
    }
    let f = Fixture::start(31_000_005, &[P256_9C], "");
    write_pems(&f);
    let out = f.run_child(NAME, &[], &[]);
    assert_child_ok(&f, &out);
    let lines = f.sign_lines();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines.iter().all(|l| l["outcome"] == "ok"));
    let pids: std::collections::HashSet<_> = lines.iter().map(|l| l["pid"].to_string()).collect();
    assert_eq!(pids.len(), 2, "parent and forked child: {lines:#?}");
}

const NOBODY: u32 = 65534;

#[test]
fn a_caller_the_policy_denies_gets_ckr_function_rejected_and_is_audited() {
    const NAME: &str = "a_caller_the_policy_denies_gets_ckr_function_rejected_and_is_audited";
    if child(NAME) {
        let p = init();
        let s = p.open_ro_session(only_slot(&p)).unwrap();
        s.login(UserType::User, None).unwrap();
        let key = private_key(&s, 2);
        let digest = sha2::Sha256::digest(b"denied").to_vec();
        let e = s.sign(&Mechanism::Ecdsa, key, &digest).unwrap_err();
        assert_eq!(rv(e), RvError::FunctionRejected);
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs the PKCS#11 caller as uid {NOBODY} with setpriv and needs root"
    );
    let f = Fixture::start(
        31_000_006,
        &[P256_9C],
        &format!(
            "[[rule]]\nname = \"nobody-lists\"\nusers = [{NOBODY}]\noperations = [\"list\"]\nkeys = [\"*\"]\n"
        ),
    );
    // Let uid 65534 reach the socket (as membership in the socket's group
    // does in production) and read the public keys; the policy decides.
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    write_pems(&f);
    let pem_file = f.dir.path().join("9c.pem");
    std::fs::set_permissions(&pem_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run_dir = f.socket.parent().unwrap();
    std::os::unix::fs::chown(run_dir, None, Some(NOBODY)).unwrap();
    std::os::unix::fs::chown(&f.socket, None, Some(NOBODY)).unwrap();
    let wrap = vec![
        "setpriv".to_string(),
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".to_string(),
    ];
    let out = f.run_child(NAME, &wrap, &[]);
    assert_child_ok(&f, &out);
    // The module logged the daemon's reason with the code it returned.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PERMISSION_DENIED"), "{stderr}");
    assert!(stderr.contains("default deny"), "{stderr}");
    assert!(stderr.contains("CKR_FUNCTION_REJECTED"), "{stderr}");
    let denied: Vec<_> = f
        .audit_lines()
        .into_iter()
        .filter(|l| l["uid"] == NOBODY && l["operation"] == "sign")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:#?}");
    assert_eq!(denied[0]["outcome"], "denied");
    assert_eq!(denied[0]["code"], "PERMISSION_DENIED");
}

fn wait_for(path: &std::path::Path) {
    let until = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < until, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn daemon_stopped_is_ckr_device_error_then_the_module_recovers() {
    const NAME: &str = "daemon_stopped_is_ckr_device_error_then_the_module_recovers";
    if child(NAME) {
        let dir = child_dir();
        let p = init();
        let slot = only_slot(&p);
        let s = p.open_ro_session(slot).unwrap();
        let key = private_key(&s, 2);
        let digest = sha2::Sha256::digest(b"before").to_vec();
        assert!(verify_raw(
            &pem("9c"),
            &digest,
            &s.sign(&Mechanism::Ecdsa, key, &digest).unwrap()
        ));
        std::fs::write(dir.join("signed-once"), "").unwrap();
        wait_for(&dir.join("stopped"));
        let e = s.sign(&Mechanism::Ecdsa, key, &digest).unwrap_err();
        assert_eq!(rv(e), RvError::DeviceError);
        // The slot stays, without a token, and listing does not fail.
        assert!(p.get_slots_with_token().unwrap().is_empty());
        assert_eq!(p.get_all_slots().unwrap(), vec![slot]);
        std::fs::write(dir.join("failed"), "").unwrap();
        wait_for(&dir.join("restarted"));
        // Same session, same key handle: the module reconnects by itself.
        assert_eq!(p.get_slots_with_token().unwrap(), vec![slot]);
        let digest = sha2::Sha256::digest(b"after").to_vec();
        let sig = s.sign(&Mechanism::Ecdsa, key, &digest).unwrap();
        assert!(verify_raw(&pem("9c"), &digest, &sig));
        // The daemon restarts between two calls (no failure in between):
        // the next call works.
        std::fs::write(dir.join("signed-again"), "").unwrap();
        wait_for(&dir.join("restarted-again"));
        let digest = sha2::Sha256::digest(b"after a restart").to_vec();
        let sig = s.sign(&Mechanism::Ecdsa, key, &digest).unwrap();
        assert!(verify_raw(&pem("9c"), &digest, &sig));
        return;
    }
    let mut f = Fixture::start(31_000_007, &[P256_9C], "");
    write_pems(&f);
    let dir = f.dir.path().to_path_buf();
    let exe = std::env::current_exe().unwrap();
    let child = f
        .command(&exe)
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env("SIGNER_PKCS11_TEST_CHILD", NAME)
        .env("SIGNER_PKCS11_TEST_MODULE", common::module_path())
        .env("SIGNER_PKCS11_TEST_DIR", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&dir.join("signed-once"));
    f.stop();
    std::fs::write(dir.join("stopped"), "").unwrap();
    wait_for(&dir.join("failed"));
    f.serve();
    std::fs::write(dir.join("restarted"), "").unwrap();
    wait_for(&dir.join("signed-again"));
    f.stop();
    f.serve();
    std::fs::write(dir.join("restarted-again"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_child_ok(&f, &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach signer-daemon"), "{stderr}");
    assert!(stderr.contains("CKR_DEVICE_ERROR"), "{stderr}");
    let ok: Vec<_> = f
        .sign_lines()
        .into_iter()
        .filter(|l| l["outcome"] == "ok")
        .collect();
    assert_eq!(ok.len(), 3, "before the stop and after each restart");
}

#[test]
fn daemon_side_pin_and_touch_failures_map_to_documented_codes() {
    const NAME: &str = "daemon_side_pin_and_touch_failures_map_to_documented_codes";
    if child(NAME) {
        let want = match std::env::var("WANT").unwrap().as_str() {
            "pin" => RvError::PinIncorrect,
            "touch" => RvError::FunctionRejected,
            other => panic!("{other}"),
        };
        let p = init();
        let s = p.open_ro_session(only_slot(&p)).unwrap();
        // Whatever PIN the caller gives is not the daemon's.
        s.login(UserType::User, Some(&AuthPin::new("123456".into())))
            .unwrap();
        let key = private_key(&s, 2);
        let digest = sha2::Sha256::digest(b"fails").to_vec();
        let e = s.sign(&Mechanism::Ecdsa, key, &digest).unwrap_err();
        assert_eq!(rv(e), want);
        return;
    }
    // The daemon's PIN file holds a wrong PIN: FAILED_PRECONDITION.
    let f = Fixture::start_with(31_000_008, &[P256_9C], "", "654321", "approve");
    let out = f.run_child(NAME, &[], &[("WANT", "pin")]);
    assert_child_ok(&f, &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FAILED_PRECONDITION"), "{stderr}");
    assert!(stderr.contains("CKR_PIN_INCORRECT"), "{stderr}");
    let lines = f.sign_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["outcome"], "error");
    assert_eq!(lines[0]["code"], "FAILED_PRECONDITION");
    // The touch is refused (the emulated touch source denies): ABORTED.
    let f = Fixture::start_with(31_000_009, &[P256_9C], "", "123456", "deny");
    let out = f.run_child(NAME, &[], &[("WANT", "touch")]);
    assert_child_ok(&f, &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Touch your YubiKey now"), "{stderr}");
    assert!(stderr.contains("ABORTED"), "{stderr}");
    assert!(stderr.contains("CKR_FUNCTION_REJECTED"), "{stderr}");
    let lines = f.sign_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["code"], "ABORTED");
}

/// An Ed25519 key through cryptoki: a `CKK_EC_EDWARDS` key whose
/// `CKA_EC_POINT` is the daemon's key, `CKM_EDDSA` signatures (single- and
/// multi-part) that ed25519-dalek verifies over the message, and the ECDSA
/// mechanisms refused for it.
#[test]
fn ed25519_signs_with_ckm_eddsa_and_ed25519_dalek_verifies() {
    const NAME: &str = "ed25519_signs_with_ckm_eddsa_and_ed25519_dalek_verifies";
    if child(NAME) {
        use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
        use ed25519_dalek::pkcs8::DecodePublicKey;
        let p = init();
        let s = p.open_ro_session(only_slot(&p)).unwrap();
        let found = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::EC_EDWARDS),
            ])
            .unwrap();
        assert_eq!(found.len(), 1, "one Ed25519 private key");
        let key = found[0];
        let vk = ed25519_dalek::VerifyingKey::from_public_key_pem(&pem("9d")).unwrap();
        let public = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(vec![3]),
            ])
            .unwrap();
        let attrs = s
            .get_attributes(public[0], &[AttributeType::EcPoint])
            .unwrap();
        let Attribute::EcPoint(point) = &attrs[0] else {
            panic!("no CKA_EC_POINT: {attrs:?}")
        };
        assert_eq!(&point[2..], vk.as_bytes(), "the daemon's key");
        let eddsa = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        let sig = s.sign(&eddsa, key, b"a TUF root").unwrap();
        assert_eq!(sig.len(), 64);
        let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
        vk.verify_strict(b"a TUF root", &sig).unwrap();
        assert!(vk.verify_strict(b"a TUF rooT", &sig).is_err());
        s.sign_init(&eddsa, key).unwrap();
        s.sign_update(b"multi ").unwrap();
        s.sign_update(b"part").unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&s.sign_final().unwrap()).unwrap();
        vk.verify_strict(b"multi part", &sig).unwrap();
        let e = s.sign(&Mechanism::Ecdsa, key, &[0u8; 32]).unwrap_err();
        assert_eq!(rv(e), RvError::KeyTypeInconsistent);
        return;
    }
    let f = Fixture::start(31_000_009, &[P256_9C, ED25519_9D], "");
    write_pems(&f);
    let out = f.run_child(NAME, &[], &[]);
    assert_child_ok(&f, &out);
    let lines = f.sign_lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| l["outcome"] == "ok" && l["scheme"] == "ed25519" && l["slot"] == "9d"),
        "{lines:#?}"
    );
}

/// An RSA-2048 key through cryptoki: a `CKK_RSA` key with the daemon's
/// modulus, PKCS#1 v1.5 signatures (`CKM_SHA256_RSA_PKCS`, multi-part
/// `CKM_SHA512_RSA_PKCS`, `CKM_RSA_PKCS` over a DigestInfo) and PSS
/// signatures (`CKM_SHA256_RSA_PKCS_PSS`, `CKM_RSA_PKCS_PSS`) that the `rsa`
/// crate verifies; raw data for `CKM_RSA_PKCS` and PSS parameters other
/// than the daemon's refused.
#[test]
fn rsa_signs_with_pkcs1_and_pss_and_the_rsa_crate_verifies() {
    const NAME: &str = "rsa_signs_with_pkcs1_and_pss_and_the_rsa_crate_verifies";
    if child(NAME) {
        use rsa::pkcs8::DecodePublicKey;
        use rsa::traits::PublicKeyParts;
        let p = init();
        let s = p.open_ro_session(only_slot(&p)).unwrap();
        let found = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::RSA),
            ])
            .unwrap();
        assert_eq!(found.len(), 1, "one RSA private key");
        let key = found[0];
        let pk = rsa::RsaPublicKey::from_public_key_pem(&pem("82")).unwrap();
        let attrs = s.get_attributes(key, &[AttributeType::Modulus]).unwrap();
        let Attribute::Modulus(n) = &attrs[0] else {
            panic!("no CKA_MODULUS: {attrs:?}")
        };
        assert_eq!(n, &pk.n().to_be_bytes_trimmed_vartime().to_vec());
        let verify = |hash: &str, digest: &[u8], sig: &[u8]| {
            let scheme = match hash {
                "sha512" => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
                _ => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            };
            pk.verify(scheme, digest, sig).is_ok()
        };
        let sig = s
            .sign(&Mechanism::Sha256RsaPkcs, key, b"a TUF root")
            .unwrap();
        assert_eq!(sig.len(), 256);
        assert!(verify("sha256", &sha2::Sha256::digest(b"a TUF root"), &sig));
        assert!(!verify(
            "sha256",
            &sha2::Sha256::digest(b"a TUF rooT"),
            &sig
        ));
        s.sign_init(&Mechanism::Sha512RsaPkcs, key).unwrap();
        s.sign_update(b"multi ").unwrap();
        s.sign_update(b"part").unwrap();
        let sig = s.sign_final().unwrap();
        assert!(verify("sha512", &sha2::Sha512::digest(b"multi part"), &sig));
        let digest = sha2::Sha256::digest(b"prehashed");
        let mut info = vec![
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ];
        info.extend_from_slice(&digest);
        let sig = s.sign(&Mechanism::RsaPkcs, key, &info).unwrap();
        assert!(verify("sha256", &digest, &sig));
        let e = s.sign(&Mechanism::RsaPkcs, key, &digest).unwrap_err();
        assert_eq!(rv(e), RvError::DataInvalid);
        // PSS with the parameters the daemon uses (MGF1 of the hash, salt =
        // digest length); other parameters are refused.
        use cryptoki::mechanism::MechanismType;
        use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
        let pss256 = PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32.into(),
        };
        let pss_ok = |digest: &[u8], sig: &[u8]| {
            pk.verify(rsa::Pss::<sha2::Sha256>::new_with_salt(32), digest, sig)
                .is_ok()
        };
        let sig = s
            .sign(&Mechanism::Sha256RsaPkcsPss(pss256), key, b"a TUF root")
            .unwrap();
        assert!(pss_ok(&sha2::Sha256::digest(b"a TUF root"), &sig));
        let sig = s
            .sign(&Mechanism::RsaPkcsPss(pss256), key, &digest)
            .unwrap();
        assert!(pss_ok(&digest, &sig));
        let salt0 = PkcsPssParams {
            s_len: 0.into(),
            ..pss256
        };
        let e = s
            .sign(&Mechanism::Sha256RsaPkcsPss(salt0), key, b"x")
            .unwrap_err();
        assert_eq!(rv(e), RvError::MechanismParamInvalid);
        let e = s.sign(&Mechanism::Ecdsa, key, &digest).unwrap_err();
        assert_eq!(rv(e), RvError::KeyTypeInconsistent);
        return;
    }
    let f = Fixture::start(31_000_010, &[P256_9C, RSA2048_82], "");
    write_pems(&f);
    let out = f.run_child(NAME, &[], &[]);
    assert_child_ok(&f, &out);
    let lines = f.sign_lines();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    let schemes: Vec<&str> = lines
        .iter()
        .map(|l| l["scheme"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        schemes,
        [
            "rsa-pkcs1v15",
            "rsa-pkcs1v15",
            "rsa-pkcs1v15",
            "rsa-pss",
            "rsa-pss"
        ],
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["outcome"] == "ok" && l["slot"] == "82"),
        "{lines:#?}"
    );
}
