//! Malformed requests against the daemon binary get the documented codes,
//! and the daemon keeps serving: wrong digest length, unknown enum value,
//! unknown key, empty or invalid slot, an oversized message, garbage bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_support;

use std::io::{Read, Write};
use std::time::Duration;

use daemon_support::{Daemon, DaemonSetup, by_id, by_slot, sign_req, verify};
use sha2::Digest;
use signer_proto::v1 as pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_documented_codes_and_the_daemon_keeps_serving() {
    let mut d = Daemon::start(DaemonSetup {
        config: "max_request_bytes = 65536\n".into(),
        ..DaemonSetup::default()
    });
    let key = d.keys[0].clone();
    let mut c = d.client().await;
    let good = sha2::Sha256::digest(b"good").to_vec();

    let mut unknown_hash = sign_req(by_slot("9c"), good.clone());
    unknown_hash.hash = 17;
    let cases = vec![
        (
            sign_req(by_slot("9c"), vec![0; 20]),
            Code::InvalidArgument,
            "expected 32 bytes, got 20",
        ),
        (unknown_hash, Code::InvalidArgument, "unknown hash value 17"),
        (
            sign_req(by_slot("0x77"), good.clone()),
            Code::InvalidArgument,
            "invalid slot",
        ),
        (
            sign_req(by_slot("9e"), good.clone()),
            Code::NotFound,
            "no key in slot 9e",
        ),
        (
            sign_req(by_id(&"0".repeat(64)), good.clone()),
            Code::NotFound,
            "no key with id",
        ),
    ];
    for (req, code, needle) in cases {
        let e = c.sign(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{}", e.message());
        assert!(
            e.message().contains(needle),
            "{:?} lacks {needle:?}",
            e.message()
        );
    }

    // Oversized: OUT_OF_RANGE (tonic's limit check), before the body is buffered.
    let big = pb::SignRequest {
        key: by_slot("9c"),
        input: Some(pb::sign_request::Input::Message(vec![7u8; 70_000])),
        hash: pb::HashAlgorithm::Sha256 as i32,
        format: pb::SignatureFormat::Der as i32,
        padding: pb::RsaPadding::Unspecified as i32,
    };
    let e = c.sign(big).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{}", e.message());
    // Just under the limit is fine: the daemon hashes the message.
    let fits = pb::SignRequest {
        key: by_slot("9c"),
        input: Some(pb::sign_request::Input::Message(vec![7u8; 60_000])),
        hash: pb::HashAlgorithm::Sha256 as i32,
        format: pb::SignatureFormat::Der as i32,
        padding: pb::RsaPadding::Unspecified as i32,
    };
    let r = c.sign(fits).await.unwrap().into_inner();
    assert_eq!(r.digest, sha2::Sha256::digest(vec![7u8; 60_000]).to_vec());
    assert!(verify(&key, &r.digest, &r.signature));

    // Garbage on raw connections: an HTTP/1 request, random bytes, a
    // truncated HTTP/2 preface. Each connection is dropped, nothing else.
    let socket = d.socket.clone();
    tokio::task::spawn_blocking(move || {
        for junk in [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\xff\xff\xff".to_vec(),
        ] {
            let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = s.write_all(&junk);
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
        }
    })
    .await
    .unwrap();

    // Still serving, on the old connection and on a new one.
    let r = c
        .sign(sign_req(by_slot("9c"), good.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(verify(&key, &good, &r.signature));
    let mut fresh = d.client().await;
    let r = fresh
        .sign(sign_req(by_id(&key.key_id), good.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(verify(&key, &good, &r.signature));

    assert!(d.terminate().success());
    let lines = d.audit_lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["code"] == "INVALID_ARGUMENT")
            .count(),
        3
    );
    assert_eq!(lines.iter().filter(|l| l["code"] == "NOT_FOUND").count(), 2);
}
