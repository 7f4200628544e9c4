//! Reliability suite, group `hostile`, against the `signer-daemon serve`
//! binary on an emulated token:
//!
//! - **Socket abuse**: garbage bytes, garbage after a valid preface,
//!   half-open connections, 2,000 idle connections, HTTP/2 clients that
//!   never read, huge header blocks (HEADERS + CONTINUATION), many streams
//!   per connection (and rapid resets). While each is going on, a
//!   well-behaved client (a new connection per probe: ListKeys, then a
//!   signature it verifies with RustCrypto) must be served within
//!   [`PROBE_BOUND`], and the daemon's resident memory must stay within
//!   [`RSS_GROWTH_BOUND_MB`] of where it started; open files go back to
//!   where they were once the abusers leave. RSS and latency are printed.
//! - **Authorization**: a caller of another uid (setpriv, uid/gid 65534,
//!   given the socket's group) is denied every `signer.v1.Signer` RPC, each
//!   denial audited with its uid.
//! - **Policy errors**: a configuration file with an error stops start-up
//!   with a message naming the line (syntax errors, unknown fields, wrong
//!   types, and rule errors: unknown operation, user, key pattern).
//! - **Permissions**: socket 0660 in a 0750 directory, audit log 0640, as
//!   README says.
//!
//! The process raises its RLIMIT_NOFILE soft limit to the hard limit (the
//! daemon inherits it); with a hard limit under 4,500 the socket test fails
//! saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon_support::{Daemon, DaemonSetup, by_slot, sign_req, verify};
use sha2::Digest;
use signer_proto::v1 as pb;

/// A well-behaved client's request (connect, ListKeys, Sign, verify) must
/// complete within this while the daemon is abused (debug build, two cores
/// shared with the abusers).
const PROBE_BOUND: Duration = Duration::from_secs(2);
/// The daemon's RSS may grow at most this much over the whole test.
const RSS_GROWTH_BOUND_MB: f64 = 256.0;
/// Idle connections held at once.
const IDLE_CONNECTIONS: usize = 2_000;
/// HTTP/2 connections that send calls and never read, and calls each.
const NEVER_READ_CONNECTIONS: usize = 40;
const NEVER_READ_CALLS: u32 = 500;
/// The daemon must allow at most this many concurrent streams per
/// connection: what it holds for a client that never reads grows with it
/// (about 9 KB per unread ListKeys answer, measured).
const MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// RSS growth allowed per never-reading connection.
const NEVER_READ_MB_PER_CONNECTION: f64 = 2.0;

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn raise_nofile(need: u64) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let hard = lim.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= need,
        "RLIMIT_NOFILE hard limit {hard} < {need}: this test holds {IDLE_CONNECTIONS} idle \
         connections (each one file in the test and one in the daemon); raise it (ulimit -Hn)"
    );
    let want = hard.min(1 << 20);
    if lim.current.unwrap_or(u64::MAX) < want {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: lim.maximum,
            },
        )
        .unwrap();
    }
    want
}

/// xorshift64*: reproducible garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 56) as u8).collect()
    }
}

// ---- A few HTTP/2 frames, by hand (RFC 9113, RFC 7541) ------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([ty, flags]);
    f.extend((stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn hpack_int(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// Literal header field without indexing, new name.
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    hpack_int(out, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, value.len());
    out.extend_from_slice(value);
}

fn grpc_headers(path: &str) -> Vec<u8> {
    let mut h = Vec::new();
    for (n, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        hpack_literal(&mut h, n, v.as_bytes());
    }
    h
}

/// One unary gRPC request with an empty message on `stream`.
fn grpc_call(path: &str, stream: u32) -> Vec<u8> {
    let mut out = frame(HEADERS, END_HEADERS, stream, &grpc_headers(path));
    out.extend(frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 0]));
    out
}

fn h2_start() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// SETTINGS_MAX_CONCURRENT_STREAMS from the daemon's first SETTINGS frame.
fn server_max_concurrent_streams(d: &Daemon) -> Option<u32> {
    let mut s = connect(d);
    s.write_all(&h2_start()).ok()?;
    let mut head = [0u8; 9];
    s.read_exact(&mut head).ok()?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    if head[3] != SETTINGS {
        return None;
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    payload.chunks(6).find_map(|c| {
        (c.len() == 6 && u16::from_be_bytes([c[0], c[1]]) == 0x3)
            .then(|| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
    })
}

fn connect(d: &Daemon) -> UnixStream {
    let s = UnixStream::connect(&d.socket).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Read until the daemon closes the connection (or the read timeout).
/// Returns whether it closed.
fn read_to_close(s: &mut UnixStream) -> bool {
    let mut buf = [0u8; 16 * 1024];
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if Instant::now() > until {
            return false;
        }
    }
}

/// Latencies of well-behaved requests, each on a new connection.
struct Probe {
    times: Vec<Duration>,
}

impl Probe {
    fn max(&self) -> Duration {
        self.times.iter().max().copied().unwrap_or_default()
    }
    fn p50(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t.get(t.len() / 2).copied().unwrap_or_default()
    }
    fn figures(&self) -> String {
        format!(
            "probes={} p50_ms={:.1} max_ms={:.1}",
            self.times.len(),
            self.p50().as_secs_f64() * 1e3,
            self.max().as_secs_f64() * 1e3
        )
    }
}

async fn probe(d: &Daemon, n: usize) -> Probe {
    let key = d.keys[0].clone();
    let mut times = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        let digest = sha2::Sha256::digest(format!("probe {i}")).to_vec();
        let work = async {
            let mut c = d.client().await;
            let keys = c
                .list_keys(pb::ListKeysRequest::default())
                .await
                .unwrap()
                .into_inner()
                .keys;
            assert_eq!(keys.len(), 1);
            c.sign(sign_req(by_slot("9c"), digest.clone()))
                .await
                .unwrap()
                .into_inner()
        };
        let r = tokio::time::timeout(PROBE_BOUND * 5, work)
            .await
            .expect("a well-behaved client was not served");
        assert!(verify(&key, &digest, &r.signature), "probe signature");
        times.push(started.elapsed());
    }
    Probe { times }
}

struct Report {
    rows: Vec<(String, bool, String)>,
}

impl Report {
    fn case(&mut self, name: &str, ok: bool, figures: String) {
        println!(
            "RELIABILITY\thostile\t{name}\t{}\t{figures}",
            if ok { "PASS" } else { "FAIL" }
        );
        self.rows.push((name.into(), ok, figures));
    }
    fn finish(self) {
        let failed: Vec<_> = self
            .rows
            .iter()
            .filter(|r| !r.1)
            .map(|r| format!("{}: {}", r.0, r.2))
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {} cases failed:\n{}",
            failed.len(),
            self.rows.len(),
            failed.join("\n")
        );
    }
}

/// Wait until the daemon's open files are back near `baseline`.
fn files_settle(pid: u32, baseline: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let n = open_files(pid);
        if n <= baseline + 8 || Instant::now() > until {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_abuse_leaves_well_behaved_clients_served_in_bounded_memory() {
    let limit = raise_nofile(2 * IDLE_CONNECTIONS as u64 + 500);
    let mut d = Daemon::start(DaemonSetup::default());
    let pid = d.pid();
    let mut report = Report { rows: Vec::new() };
    let warm = probe(&d, 5).await;
    let rss_start = rss_mb(pid);
    let files_start = open_files(pid);
    let mut rss_peak = rss_start;
    let mut rng = Rng(0x0050_ce7a_b05e);
    println!(
        "RELIABILITY\thostile\tsocket_baseline\tPASS\trss_mb={rss_start:.1} open_files={files_start} nofile_limit={limit} {}",
        warm.figures()
    );

    // 1. Garbage bytes instead of HTTP/2.
    {
        let mut closed = 0;
        let mut conns = Vec::new();
        for _ in 0..100 {
            let mut s = connect(&d);
            let _ = s.write_all(&rng.bytes(64 * 1024));
            conns.push(s);
        }
        let p = probe(&d, 10).await;
        for s in &mut conns {
            closed += usize::from(read_to_close(s));
        }
        drop(conns);
        let rss = rss_mb(pid);
        rss_peak = rss_peak.max(rss);
        report.case(
            "socket_garbage_bytes",
            closed == 100 && p.max() < PROBE_BOUND,
            format!(
                "conns=100 bytes_each=65536 closed_by_daemon={closed} rss_mb={rss:.1} {}",
                p.figures()
            ),
        );
    }

    // 2. A valid preface, then garbage frames.
    {
        let mut closed = 0;
        for i in 0..50 {
            let mut s = connect(&d);
            let mut bytes = h2_start();
            // Frames of random types, flags and streams with random payloads.
            for _ in 0..20 {
                let ty = (rng.next() % 12) as u8;
                let n = (rng.next() % 300) as usize;
                let payload = rng.bytes(n);
                bytes.extend(frame(
                    ty,
                    (rng.next() >> 56) as u8,
                    (rng.next() % 9) as u32,
                    &payload,
                ));
            }
            if i % 2 == 0 {
                bytes.extend(rng.bytes(1000));
            }
            let _ = s.write_all(&bytes);
            closed += usize::from(read_to_close(&mut s));
        }
        let p = probe(&d, 5).await;
        let rss = rss_mb(pid);
        rss_peak = rss_peak.max(rss);
        report.case(
            "socket_garbage_frames_after_preface",
            closed == 50 && p.max() < PROBE_BOUND,
            format!(
                "conns=50 closed_by_daemon={closed} rss_mb={rss:.1} {}",
                p.figures()
            ),
        );
    }

    // 3. Half-open connections: half a preface and silence; a full
    //    preface then our side shut for writing; a call then shut.
    {
        let mut conns = Vec::new();
        for i in 0..300 {
            let mut s = connect(&d);
            match i % 3 {
                0 => {
                    let _ = s.write_all(&PREFACE[..10]);
                }
                1 => {
                    let _ = s.write_all(&h2_start());
                    let _ = s.shutdown(std::net::Shutdown::Write);
                }
                _ => {
                    let mut b = h2_start();
                    let h = frame(
                        HEADERS,
                        END_HEADERS,
                        1,
                        &grpc_headers("/signer.v1.Signer/ListKeys"),
                    );
                    b.extend(h);
                    let _ = s.write_all(&b);
                    let _ = s.shutdown(std::net::Shutdown::Write);
                }
            }
            conns.push(s);
        }
        let p = probe(&d, 10).await;
        let rss = rss_mb(pid);
        let files = open_files(pid);
        rss_peak = rss_peak.max(rss);
        drop(conns);
        let settled = files_settle(pid, files_start);
        report.case(
            "socket_half_open",
            p.max() < PROBE_BOUND && settled <= files_start + 8,
            format!(
                "conns=300 open_files_during={files} open_files_after={settled} rss_mb={rss:.1} {}",
                p.figures()
            ),
        );
    }

    // 4. 2,000 idle connections (connected, nothing sent).
    {
        let mut conns = Vec::with_capacity(IDLE_CONNECTIONS);
        for _ in 0..IDLE_CONNECTIONS {
            conns.push(connect(&d));
        }
        // Let the daemon accept them all.
        let until = Instant::now() + Duration::from_secs(20);
        while open_files(pid) + 8 < files_start + IDLE_CONNECTIONS && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let files = open_files(pid);
        let p = probe(&d, 20).await;
        let rss = rss_mb(pid);
        rss_peak = rss_peak.max(rss);
        drop(conns);
        let settled = files_settle(pid, files_start);
        report.case(
            "socket_2000_idle_connections",
            files + 8 >= files_start + IDLE_CONNECTIONS
                && p.max() < PROBE_BOUND
                && settled <= files_start + 8,
            format!(
                "conns={IDLE_CONNECTIONS} open_files_during={files} open_files_after={settled} rss_mb={rss:.1} rss_per_conn_kb={:.1} {}",
                (rss - rss_start).max(0.0) * 1024.0 / IDLE_CONNECTIONS as f64,
                p.figures()
            ),
        );
    }

    // 5. HTTP/2 clients that never read: each sends many calls and never
    //    reads an answer. What the daemon holds for one such connection is
    //    bounded by the streams it allows at once (its SETTINGS); the RSS
    //    growth per connection is measured against that.
    {
        let advertised = server_max_concurrent_streams(&d);
        let rss_before = rss_mb(pid);
        let mut conns = Vec::new();
        let mut sent = 0usize;
        for _ in 0..NEVER_READ_CONNECTIONS {
            let mut s = connect(&d);
            s.set_write_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut b = h2_start();
            for i in 0..NEVER_READ_CALLS {
                b.extend(grpc_call("/signer.v1.Signer/ListKeys", 1 + 2 * i));
            }
            if s.write_all(&b).is_ok() {
                sent += NEVER_READ_CALLS as usize;
            }
            conns.push(s);
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let p = probe(&d, 10).await;
        let rss = rss_mb(pid);
        rss_peak = rss_peak.max(rss);
        let per_conn_mb = (rss - rss_before).max(0.0) / NEVER_READ_CONNECTIONS as f64;
        drop(conns);
        let settled = files_settle(pid, files_start);
        report.case(
            "socket_http2_never_reads",
            p.max() < PROBE_BOUND
                && settled <= files_start + 8
                && advertised.is_some_and(|n| n <= MAX_STREAMS_PER_CONNECTION)
                && per_conn_mb < NEVER_READ_MB_PER_CONNECTION,
            format!(
                "conns={NEVER_READ_CONNECTIONS} calls_sent={sent} server_max_concurrent_streams={advertised:?} rss_growth_per_conn_mb={per_conn_mb:.2} bound_mb={NEVER_READ_MB_PER_CONNECTION} open_files_after={settled} rss_mb={rss:.1} {}",
                p.figures()
            ),
        );
    }

    // 6. Huge header blocks: HEADERS without END_HEADERS, then 16 KiB
    //    CONTINUATION frames (up to 8 MiB per connection) until the daemon
    //    closes; and one huge header value in a single block.
    {
        let mut closed = 0;
        let mut accepted_max = 0usize;
        for c in 0..10 {
            let mut s = connect(&d);
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut start = h2_start();
            let mut block = grpc_headers("/signer.v1.Signer/ListKeys");
            if c % 2 == 1 {
                // One oversized header in a block that ends.
                hpack_literal(&mut block, "x-huge", &vec![b'a'; 15_000]);
                start.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
                let _ = s.write_all(&start);
                // The daemon refuses the stream (or the connection); either
                // way the connection must not stay wedged: close ours.
                let mut buf = [0u8; 4096];
                // An answer (RST_STREAM, GOAWAY) or a close, not silence.
                closed += usize::from(s.read(&mut buf).is_ok());
                continue;
            }
            start.extend(frame(HEADERS, 0, 1, &block));
            let _ = s.write_all(&start);
            let mut written = 0usize;
            let chunk = frame(CONTINUATION, 0, 1, &{
                let mut b = Vec::new();
                for i in 0..300 {
                    hpack_literal(&mut b, &format!("x-h{i:03}"), &[b'v'; 40]);
                }
                b
            });
            while written < 8 * 1024 * 1024 {
                if s.write_all(&chunk).is_err() {
                    break;
                }
                written += chunk.len();
            }
            accepted_max = accepted_max.max(written);
            closed += usize::from(written < 8 * 1024 * 1024 || read_to_close(&mut s));
        }
        let p = probe(&d, 10).await;
        let rss = rss_mb(pid);
        rss_peak = rss_peak.max(rss);
        report.case(
            "socket_huge_header_blocks",
            closed == 10 && p.max() < PROBE_BOUND,
            format!(
                "conns=10 continuation_bytes_before_close_max={accepted_max} ended={closed} rss_mb={rss:.1} {}",
                p.figures()
            ),
        );
    }

    // 7. Many streams per connection: 5,000 calls opened and reset at once
    //    (rapid reset), and 3,000 calls on one connection read back.
    {
        let mut s = connect(&d);
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = h2_start();
        for i in 0..5_000u32 {
            let id = 1 + 2 * i;
            b.extend(frame(
                HEADERS,
                END_HEADERS,
                id,
                &grpc_headers("/signer.v1.Signer/ListTokens"),
            ));
            b.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        }
        let written = s.write_all(&b).is_ok();
        let reset_closed = read_to_close(&mut s);
        drop(s);

        let mut s = connect(&d);
        let mut b = h2_start();
        for i in 0..3_000u32 {
            b.extend(grpc_call("/signer.v1.Signer/ListTokens", 1 + 2 * i));
        }
        let reader = {
            let mut r = s.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut total = 0usize;
                let mut buf = [0u8; 64 * 1024];
                let until = Instant::now() + Duration::from_secs(60);
                while Instant::now() < until {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
                total
            })
        };
        let streams_written = s.write_all(&b).is_ok();
        let p = probe(&d, 10).await;
        let _ = s.shutdown(std::net::Shutdown::Both);
        let read_back = reader.join().unwrap();
        let rss = rss_mb(pid);
        rss_peak = rss_peak.max(rss);
        report.case(
            "socket_many_streams_per_connection",
            p.max() < PROBE_BOUND && read_back > 0,
            format!(
                "rapid_reset_streams=5000 written={written} daemon_closed={reset_closed} streams_one_conn=3000 written={streams_written} response_bytes={read_back} rss_mb={rss:.1} {}",
                p.figures()
            ),
        );
    }

    // After everything: still serving, memory bounded, files back, audit
    // log whole.
    let p = probe(&d, 20).await;
    let rss_end = rss_mb(pid);
    let settled = files_settle(pid, files_start);
    let growth = rss_peak - rss_start;
    report.case(
        "socket_abuse_memory_and_files",
        growth < RSS_GROWTH_BOUND_MB && settled <= files_start + 8 && p.max() < PROBE_BOUND,
        format!(
            "rss_start_mb={rss_start:.1} rss_peak_mb={rss_peak:.1} rss_end_mb={rss_end:.1} growth_bound_mb={RSS_GROWTH_BOUND_MB} open_files_start={files_start} open_files_end={settled} probe_bound_ms={} {}",
            PROBE_BOUND.as_millis(),
            p.figures()
        ),
    );
    assert!(d.terminate().success(), "{}", d.log_text());
    let lines = d.audit_lines();
    assert!(lines.iter().all(|l| l["outcome"].is_string()));
    report.finish();
}

// ---- Authorization ------------------------------------------------------------

const NOBODY: u32 = 65534;
const CHILD_ENV: &str = "SIGNER_HOSTILE_OTHER_UID_SOCKET";

/// Every `signer.v1.Signer` RPC once, with a well-formed request; prints
/// `CHILD<TAB>rpc<TAB>code<TAB>message` lines.
async fn call_every_rpc(socket: &Path) {
    let channel = signer_proto::unix::connect(socket).await.unwrap();
    let mut c = signer_proto::v1::signer_client::SignerClient::new(channel.clone());
    let digest = sha2::Sha256::digest(b"other uid").to_vec();
    let code = |r: Result<(), tonic::Status>| match r {
        Ok(()) => ("OK".to_string(), String::new()),
        Err(s) => (
            format!("{:?}", s.code()),
            s.message().replace(['\t', '\n'], " "),
        ),
    };
    let mut out = Vec::new();
    out.push((
        "ListTokens",
        code(c.list_tokens(pb::ListTokensRequest {}).await.map(drop)),
    ));
    out.push((
        "ListKeys",
        code(c.list_keys(pb::ListKeysRequest::default()).await.map(drop)),
    ));
    out.push((
        "GetPublicKey",
        code(
            c.get_public_key(pb::GetPublicKeyRequest { key: by_slot("9c") })
                .await
                .map(drop),
        ),
    ));
    out.push((
        "Sign",
        code(
            c.sign(sign_req(by_slot("9c"), digest.clone()))
                .await
                .map(drop),
        ),
    ));
    let streamed = match c.sign_with_events(sign_req(by_slot("9c"), digest)).await {
        Err(e) => Err(e),
        Ok(s) => {
            let mut s = s.into_inner();
            let mut r = Ok(());
            loop {
                match s.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                }
            }
            r
        }
    };
    out.push(("SignWithEvents", code(streamed)));
    out.push((
        "Attest",
        code(
            c.attest(pb::AttestRequest { key: by_slot("9c") })
                .await
                .map(drop),
        ),
    ));
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    out.push((
        "grpc.health.v1.Health/Check",
        code(
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .map(drop),
        ),
    ));
    for (rpc, (code, message)) in out {
        println!("CHILD\t{rpc}\t{code}\t{message}");
    }
}

/// Not a test of its own: the child process `another_uid_is_denied_every_rpc`
/// runs as uid 65534 (it returns at once without its environment variable).
#[test]
fn other_uid_child_process() {
    let Some(socket) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(call_every_rpc(Path::new(&socket)));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn another_uid_is_denied_every_rpc_and_permissions_are_as_documented() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs a client as uid {NOBODY} (setpriv) and needs root"
    );
    let mut d = Daemon::start(DaemonSetup::default());
    let mut report = Report { rows: Vec::new() };

    // Permissions, as README "Daemon" says: socket 0660 in a 0750
    // directory, audit log 0640 (the log exists once a line is written).
    let run_dir = d.socket.parent().unwrap().to_path_buf();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = d.client().await;
        c.list_keys(pb::ListKeysRequest::default()).await.unwrap();
    });
    let (sock, dir, audit) = (mode(&d.socket), mode(&run_dir), mode(&d.audit));
    let is_socket = {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(&d.socket)
            .unwrap()
            .file_type()
            .is_socket()
    };
    report.case(
        "permissions_socket_dir_audit_log",
        is_socket && sock == 0o660 && dir == 0o750 && audit == 0o640,
        format!("socket={sock:o} socket_dir={dir:o} audit_log={audit:o}"),
    );

    // Let uid 65534 reach the socket (the temporary directory is 0700;
    // the socket's group is what membership in `signer` gives).
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::chown(&run_dir, None, Some(NOBODY)).unwrap();
    std::os::unix::fs::chown(&d.socket, None, Some(NOBODY)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(&exe)
        .args([
            "--exact",
            "other_uid_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &d.socket)
        .output()
        .expect("setpriv (util-linux) is needed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child as uid {NOBODY} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Vec<&str>> = stdout
        .lines()
        .filter_map(|l| l.find("CHILD\t").map(|i| &l[i + 6..]))
        .map(|l| l.splitn(3, '\t').collect())
        .collect();
    assert_eq!(results.len(), 7, "{stdout}");
    for r in &results {
        let (rpc, code, message) = (r[0], r[1], r.get(2).copied().unwrap_or(""));
        if rpc.starts_with("grpc.health") {
            // Health is not policy-controlled (it names no key); recorded.
            report.case(
                "other_uid_health_check_not_policy_controlled",
                code == "OK",
                format!("rpc={rpc} code={code}"),
            );
            continue;
        }
        let ok = code == "PermissionDenied"
            && message.contains(&format!("uid {NOBODY}"))
            && message.contains("default deny");
        report.case(
            &format!("other_uid_denied_{rpc}"),
            ok,
            format!(
                "code={code} message={:?}",
                message.chars().take(90).collect::<String>()
            ),
        );
    }
    assert!(d.terminate().success());
    let lines = d.audit_lines();
    for rpc in [
        "ListTokens",
        "ListKeys",
        "GetPublicKey",
        "Sign",
        "SignWithEvents",
        "Attest",
    ] {
        let audited = lines.iter().any(|l| {
            l["uid"] == NOBODY
                && l["rpc"] == rpc
                && l["outcome"] == "denied"
                && l["code"] == "PERMISSION_DENIED"
        });
        report.case(
            &format!("other_uid_denial_audited_{rpc}"),
            audited,
            format!("uid={NOBODY}"),
        );
    }
    report.finish();
}

// ---- Policy file errors stop start-up, naming the line -----------------------------

#[test]
fn a_policy_file_with_an_error_prevents_start_up_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _) = daemon_support::make_token(
        dir.path(),
        10_000_077,
        &[daemon_support::KeySpec::p256(signer_lib::SlotId::Signature)],
    );
    let good_rule =
        "[[rule]]\nname = \"ok\"\nusers = [1001]\noperations = [\"list\"]\nkeys = [\"*\"]\n\n";
    // (case, file text, the line the message must name, a word it must say)
    let cases: Vec<(&str, String, usize, &str)> = vec![
        (
            "syntax_error",
            format!("{good_rule}[[rule]]\nusers = [1001\noperations = [\"sign\"]\n"),
            9,
            "",
        ),
        (
            "unknown_field",
            format!(
                "{good_rule}[[rule]]\nuser = [1001]\noperations = [\"sign\"]\nkeys = [\"*\"]\n"
            ),
            8,
            "user",
        ),
        (
            "wrong_type",
            format!("{good_rule}[[rule]]\nusers = [1001]\noperations = \"sign\"\nkeys = [\"*\"]\n"),
            9,
            "",
        ),
        (
            "unknown_operation",
            format!(
                "{good_rule}[[rule]]\nname = \"bad-op\"\nusers = [1001]\noperations = [\"sign\", \"delete\"]\nkeys = [\"*\"]\n"
            ),
            10,
            "delete",
        ),
        (
            "unknown_user",
            format!(
                "{good_rule}[[rule]]\nusers = [\"no-such-user-zq\"]\noperations = [\"sign\"]\nkeys = [\"*\"]\n"
            ),
            8,
            "no-such-user-zq",
        ),
        (
            "bad_key_pattern",
            format!(
                "{good_rule}[[rule]]\nusers = [1001]\noperations = [\"sign\"]\nkeys = [\"9z\"]\n"
            ),
            10,
            "9z",
        ),
        (
            "unknown_top_level_key",
            format!("queue_capacity = 8\nqueue_capacty = 9\n{good_rule}"),
            2,
            "queue_capacty",
        ),
    ];
    let mut report = Report { rows: Vec::new() };
    for (name, text, line, word) in cases {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, &text).unwrap();
        let socket = dir.path().join(format!("{name}.sock"));
        let started = Instant::now();
        let out = std::process::Command::new(daemon_support::bin("signer-daemon"))
            .arg("serve")
            .arg("--token")
            .arg(format!("emulated:{}", state.display()))
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .arg("--audit-log")
            .arg(dir.path().join("audit.jsonl"))
            .env_remove("SIGNER_PIN")
            .env_remove("LISTEN_FDS")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let names_line = stderr.contains(&format!("line {line}"));
        let ok = !out.status.success()
            && names_line
            && stderr.contains(word)
            && !socket.exists()
            && started.elapsed() < Duration::from_secs(20);
        report.case(
            &format!("policy_error_{name}"),
            ok,
            format!(
                "exit={:?} names_line_{line}={names_line} message={:?}",
                out.status.code(),
                stderr
                    .lines()
                    .last()
                    .unwrap_or("")
                    .chars()
                    .take(140)
                    .collect::<String>()
            ),
        );
    }
    report.finish();
}

// ---- Out of file descriptors -------------------------------------------------------

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_daemon_waits_without_spinning_then_serves_again() {
    let mut d = Daemon::start(DaemonSetup::default());
    let pid = d.pid();
    let mut report = Report { rows: Vec::new() };
    probe(&d, 3).await;
    let base = open_files(pid);
    // A low limit on the running daemon (prlimit, util-linux; root).
    let limit = base as u64 + 24;
    let st = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux) is needed");
    assert!(st.success());
    let mut held = Vec::new();
    for _ in 0..(limit + 16) {
        held.push(connect(&d));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let files = open_files(pid);
    let cpu0 = cpu_secs(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_secs(pid) - cpu0;
    let alive = std::fs::metadata(format!("/proc/{pid}")).is_ok();
    drop(held);
    let started = Instant::now();
    let p = probe(&d, 5).await;
    let recovered = started.elapsed();
    let log_says = d.log_text().contains("accept failed");
    report.case(
        "socket_out_of_file_descriptors",
        alive && files <= limit as usize + 2 && cpu < 0.5 && recovered < Duration::from_secs(10),
        format!(
            "nofile={limit} connections={} open_files_at_limit={files} cpu_s_in_2s={cpu:.2} accept_failed_logged={log_says} recovered_in_ms={} {}",
            limit + 16,
            recovered.as_millis(),
            p.figures()
        ),
    );
    assert!(d.terminate().success(), "{}", d.log_text());
    report.finish();
}
