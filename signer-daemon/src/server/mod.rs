//! The gRPC server: the `signer.v1.Signer` service, `grpc.health.v1.Health`
//! and server reflection, on a Unix socket.
//!
//! [`run`] is the entry point: it serves a listener until a shutdown future
//! completes, then stops accepting, lets requests in flight finish (bounded
//! by [`DaemonOptions::shutdown_grace`]) and returns. Tests drive it
//! in-process over a temporary socket; `signer-daemon serve` wraps it with
//! configuration, signals and logging (a socket it bound or one systemd
//! passed: both are Unix listeners and served alike).
//!
//! # The `:authority` of a request
//!
//! On a Unix socket the HTTP/2 `:authority` names nothing: the socket path
//! already identifies the server. Clients disagree on what to send: Go,
//! Node's grpc-js and tonic send `localhost`; gRPC's C core (Python, C++,
//! Ruby, PHP) since 1.57, grpc-java and grpc-swift send the socket path,
//! percent-encoded or not, which is not a valid URI authority and which
//! unpatched h2 resets with `PROTOCOL_ERROR` before the request reaches
//! any service (grpc/grpc#34305 and #38142, hyperium/h2#442 and #487,
//! hyperium/hyper#3750; upstream has not relaxed the check).
//!
//! The workspace therefore builds h2 with one patch
//! (`signer-daemon/vendor/h2-unix-authority.patch`, applied by
//! `signer-daemon/vendor/h2.sh`): such a request is passed on without an
//! authority and the ignored value travels as [`h2::ext::MalformedAuthority`].
//! Each listener then applies its [`AuthorityPolicy`]: a Unix socket
//! ignores the authority, whatever it is ([`AuthorityPolicy::Ignore`]: the
//! request URI is reduced to its path, so nothing downstream can decide on
//! it), a TCP listener refuses a malformed one with `INVALID_ARGUMENT`
//! ([`AuthorityPolicy::Strict`]), so there the authority keeps its meaning.
//! Every other HTTP/2 check stays as h2 has it.
//!
//! To drop the patch once h2 accepts such requests by itself: remove the
//! `[patch.crates-io]` entry and the `exclude` in the root `Cargo.toml`,
//! `signer-daemon/vendor/`, and the `MalformedAuthority` handling here
//! (keep the reduction of the URI on Unix sockets);
//! `tests/tests/grpc_clients.rs` shows whether every client still gets
//! through. Against an h2 without the patch the daemon still builds only
//! if this module stops naming `h2::ext::MalformedAuthority`, which makes
//! an accidental drop visible.

mod call;
pub mod convert;
mod service;
pub mod sign_rules;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as AutoBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use signer_proto::v1::signer_server::SignerServer;
use tokio::net::{TcpListener, UnixListener};
use tonic::codegen::http;
use tonic::transport::server::Connected;
use tonic_health::ServingStatus;
use tower::Service;

use crate::attestation::AttestationTrust;
use crate::audit::AuditLog;
use crate::peer::{PeerConnectInfo, PeerStream};
use crate::policy::Policy;
use crate::worker::TokenWorker;

pub use service::SignerService;

/// HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
pub const MAX_CONCURRENT_STREAMS: u32 = 128;

/// Limits and timings.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Largest request message accepted; larger ones get OUT_OF_RANGE
    /// before their body is buffered.
    pub max_request_bytes: usize,
    /// How long a request may wait for the token when the client sent no
    /// deadline (`grpc-timeout`).
    pub request_timeout: Duration,
    /// After a shutdown signal, how long requests in flight may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            max_request_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Everything the service needs: the token workers, the policy, the audit
/// log, attestation trust, and limits.
#[derive(Debug)]
pub struct Daemon {
    tokens: Vec<TokenWorker>,
    policy: RwLock<Arc<Policy>>,
    audit: AuditLog,
    trust: AttestationTrust,
    options: DaemonOptions,
    next_request: AtomicU64,
    /// Requests in progress (a [`call::Call`] each, from its start until
    /// it is dropped after its audit line): one means a lone request, which
    /// polls for its answers briefly (`crate::spin`).
    in_flight: AtomicUsize,
}

impl Daemon {
    /// Assemble a daemon.
    pub fn new(
        tokens: Vec<TokenWorker>,
        policy: Policy,
        audit: AuditLog,
        trust: AttestationTrust,
        options: DaemonOptions,
    ) -> Arc<Daemon> {
        Arc::new(Daemon {
            tokens,
            policy: RwLock::new(Arc::new(policy)),
            audit,
            trust,
            options,
            next_request: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replace the policy (SIGHUP).
    pub fn set_policy(&self, policy: Policy) {
        match self.policy.write() {
            Ok(mut p) => *p = Arc::new(policy),
            Err(p) => *p.into_inner() = Arc::new(policy),
        }
    }

    /// Reopen the audit log (SIGHUP, after rotation).
    pub fn reopen_audit_log(&self) {
        self.audit.reopen();
    }

    /// Have every worker re-read its token's keys (SIGHUP).
    pub fn refresh_tokens(&self) {
        for t in &self.tokens {
            if !t.request_refresh() {
                tracing::warn!(token = %t.label(), "key refresh not queued (busy or stopping)");
            }
        }
    }

    /// The token workers.
    pub fn tokens(&self) -> &[TokenWorker] {
        &self.tokens
    }

    /// The options.
    pub fn options(&self) -> &DaemonOptions {
        &self.options
    }

    /// Stop the workers: queued jobs finish, then the threads exit. Waits at
    /// most `timeout` in total; returns false if a worker was still busy.
    pub fn stop_workers(&self, timeout: Duration) -> bool {
        for t in &self.tokens {
            t.close();
        }
        let end = std::time::Instant::now() + timeout;
        self.tokens
            .iter()
            .all(|t| t.join(end.saturating_duration_since(std::time::Instant::now())))
    }
}

/// What a listener makes of a request's HTTP/2 `:authority` (see the
/// module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorityPolicy {
    /// A Unix socket: any `:authority`, or none, is accepted, and the
    /// request URI is reduced to its path before routing, so the authority
    /// cannot take part in any decision.
    Ignore,
    /// A TCP listener: the authority keeps its HTTP meaning, and a request
    /// whose `:authority` is not a valid URI authority is answered with
    /// `INVALID_ARGUMENT` without reaching any service (unpatched h2 resets
    /// it with `PROTOCOL_ERROR`).
    Strict,
}

/// A listener the daemon serves.
#[derive(Debug)]
pub enum Listener {
    /// The daemon's Unix socket (bound by the daemon or passed by systemd).
    /// Callers are identified by their peer credentials;
    /// [`AuthorityPolicy::Ignore`].
    Unix(UnixListener),
    /// A TCP listener: no peer credentials (every `signer.v1` call is
    /// refused with `UNAUTHENTICATED`; health and reflection answer);
    /// [`AuthorityPolicy::Strict`]. `signer-daemon serve` never opens one:
    /// it exists so that the authority rule is defined, and tested, for one.
    Tcp(TcpListener),
}

impl Listener {
    /// The authority policy of this kind of listener.
    pub fn authority_policy(&self) -> AuthorityPolicy {
        match self {
            Listener::Unix(_) => AuthorityPolicy::Ignore,
            Listener::Tcp(_) => AuthorityPolicy::Strict,
        }
    }
}

impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Listener {
        Listener::Unix(l)
    }
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Listener {
        Listener::Tcp(l)
    }
}

/// The service of one connection: puts the caller's credentials into every
/// request and applies the listener's [`AuthorityPolicy`].
#[derive(Clone, Debug)]
pub struct ConnectionService<S> {
    inner: S,
    peer: PeerConnectInfo,
    authority: AuthorityPolicy,
}

impl<S> ConnectionService<S> {
    /// Wrap `inner` for a connection with these credentials and policy.
    pub fn new(inner: S, peer: PeerConnectInfo, authority: AuthorityPolicy) -> Self {
        ConnectionService {
            inner,
            peer,
            authority,
        }
    }
}

/// Answers a request refused by [`AuthorityPolicy::Strict`].
#[derive(Clone, Copy, Debug)]
pub struct RefuseAuthority;

impl<B> Service<http::Request<B>> for RefuseAuthority {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: http::Request<B>) -> Self::Future {
        std::future::ready(Ok(tonic::Status::invalid_argument(
            "the request's :authority is not a valid URI authority ([userinfo@]host[:port]); \
             over TCP send the server's host name (only the daemon's Unix socket ignores it)",
        )
        .into_http()))
    }
}

impl<S, B> Service<http::Request<B>> for ConnectionService<S>
where
    S: Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        >,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tower::util::future::EitherResponseFuture<
        S::Future,
        <RefuseAuthority as Service<http::Request<B>>>::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let malformed = req
            .extensions_mut()
            .remove::<h2::ext::MalformedAuthority>()
            .is_some();
        type Route<'a, S> = tower::util::Either<&'a mut S, RefuseAuthority>;
        match self.authority {
            AuthorityPolicy::Strict if malformed => {
                tracing::debug!("request refused: malformed :authority on a TCP listener");
                Route::<S>::Right(RefuseAuthority).call(req)
            }
            AuthorityPolicy::Strict => {
                req.extensions_mut().insert(self.peer.clone());
                Route::Left(&mut self.inner).call(req)
            }
            AuthorityPolicy::Ignore => {
                if req.uri().authority().is_some() {
                    if let Some(path) = req.uri().path_and_query().cloned() {
                        *req.uri_mut() = http::Uri::from(path);
                    }
                }
                req.extensions_mut().insert(self.peer.clone());
                Route::Left(&mut self.inner).call(req)
            }
        }
    }
}

/// Serve `daemon` on `listener` until `shutdown` completes; then stop
/// accepting connections, answer requests already received (new calls on
/// open connections are refused with UNAVAILABLE), and return once they are
/// done or [`DaemonOptions::shutdown_grace`] has passed.
///
/// A [`UnixListener`] converts into a [`Listener`]; see [`AuthorityPolicy`]
/// for what each kind of listener makes of a request's `:authority`.
pub async fn run(
    listener: impl Into<Listener>,
    daemon: Arc<Daemon>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let listener = listener.into();
    let authority = listener.authority_policy();
    let limit = daemon.options.max_request_bytes;
    let grace = daemon.options.shutdown_grace;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(signer_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(signer_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha();
    let (reflection_v1, reflection_v1alpha) = match (reflection_v1, reflection_v1alpha) {
        (Ok(a), Ok(b)) => (Some(a), Some(b)),
        (a, b) => {
            // The descriptors are compiled in; this cannot fail unless the
            // build is broken. Serve without reflection rather than not at all.
            tracing::error!(
                v1 = ?a.err().map(|e| e.to_string()),
                v1alpha = ?b.err().map(|e| e.to_string()),
                "server reflection unavailable"
            );
            (None, None)
        }
    };

    // The Signer service's health follows the tokens: SERVING while at least
    // one token answers.
    let watcher = {
        let daemon = daemon.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let any = daemon.tokens.iter().any(|t| t.snapshot().available);
                let status = if any {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                if last != Some(status) {
                    health
                        .set_service_status(signer_proto::SERVICE_NAME, status)
                        .await;
                    last = Some(status);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let signer = SignerServer::new(SignerService::new(daemon.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(16 * 1024 * 1024);
    let mut routes = tonic::service::Routes::new(signer)
        .add_service(health_service.max_decoding_message_size(limit));
    if let (Some(v1), Some(v1alpha)) = (reflection_v1, reflection_v1alpha) {
        routes = routes
            .add_service(v1.max_decoding_message_size(limit))
            .add_service(v1alpha.max_decoding_message_size(limit));
    }
    let routes = routes.prepare();

    // HTTP/2 only (gRPC), with small header limits. The daemon serves
    // connections itself rather than through tonic's `Server` so that the
    // caller's deadline (`grpc-timeout`) is enforced by the handlers, which
    // answer DEADLINE_EXCEEDED and audit it, instead of a transport timer
    // that would drop the request and answer CANCELLED.
    let mut builder = AutoBuilder::new(TokioExecutor::new()).http2_only();
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(16 * 1024)
        // What the daemon holds for a client that sends calls and never
        // reads the answers grows with the streams it allows at once (about
        // 9 KB per unread answer): 128 keeps one such connection near 1 MB
        // (tests/tests/reliability_hostile.rs, socket_http2_never_reads),
        // far above what a token that signs one request at a time can use.
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(None);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener) => {
                let stream = match accepted {
                    Ok(stream) => stream,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                macro_rules! serve {
                    ($io:expr, $info:expr) => {{
                        let service = ConnectionService::new(routes.clone(), $info, authority);
                        let conn = builder
                            .serve_connection(TokioIo::new($io), TowerToHyperService::new(service))
                            .into_owned();
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                // Garbage, a client that hung up, a protocol
                                // error: only this connection is affected.
                                tracing::debug!(error = %e, "connection closed with an error");
                            }
                        });
                    }};
                }
                match stream {
                    Accepted::Unix(stream) => {
                        let peer = PeerStream::new(stream);
                        let info = peer.connect_info();
                        if let Some(p) = &info.0 {
                            tracing::debug!(uid = p.uid, gid = p.gid, pid = p.pid, "connection");
                        }
                        serve!(peer, info)
                    }
                    Accepted::Tcp(stream) => {
                        tracing::debug!(peer = ?stream.peer_addr().ok(), "TCP connection");
                        serve!(stream, PeerConnectInfo(None))
                    }
                }
            }
        }
    }

    tracing::info!("shutting down: no new connections; finishing requests in flight");
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health
        .set_service_status(signer_proto::SERVICE_NAME, ServingStatus::NotServing)
        .await;
    let result = match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => Ok(()),
        Err(_) => {
            tracing::warn!(
                ?grace,
                "requests still in flight after the shutdown grace period; stopping anyway"
            );
            Ok(())
        }
    };
    watcher.abort();
    result
}

enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what reaches the routes: the URI and whether the caller's
    /// credentials were attached.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<(http::Uri, bool)>>>);

    impl Service<http::Request<()>> for Capture {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(
            &mut self,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<()>) -> Self::Future {
            let peer = req.extensions().get::<PeerConnectInfo>().is_some();
            self.0.lock().unwrap().push((req.uri().clone(), peer));
            std::future::ready(Ok(http::Response::new(tonic::body::Body::empty())))
        }
    }

    async fn through(policy: AuthorityPolicy, uri: &str) -> (http::Uri, bool) {
        let capture = Capture::default();
        let mut service = ConnectionService::new(capture.clone(), PeerConnectInfo(None), policy);
        let req = http::Request::builder().uri(uri).body(()).unwrap();
        let response = service.call(req).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        capture.0.lock().unwrap().pop().unwrap()
    }

    #[tokio::test]
    async fn on_a_unix_socket_the_authority_is_gone_before_routing() {
        let (uri, peer) = through(
            AuthorityPolicy::Ignore,
            "http://localhost:50051/signer.v1.Signer/ListKeys?x=1",
        )
        .await;
        assert_eq!(uri, "/signer.v1.Signer/ListKeys?x=1");
        assert!(uri.authority().is_none() && uri.scheme().is_none());
        assert!(peer);
        let (uri, _) = through(AuthorityPolicy::Ignore, "/grpc.health.v1.Health/Check").await;
        assert_eq!(uri, "/grpc.health.v1.Health/Check");
    }

    #[tokio::test]
    async fn on_tcp_a_valid_authority_is_kept() {
        let (uri, peer) = through(
            AuthorityPolicy::Strict,
            "http://signer.example:50051/signer.v1.Signer/ListKeys",
        )
        .await;
        assert_eq!(
            uri.authority().map(|a| a.as_str()),
            Some("signer.example:50051")
        );
        assert!(peer);
    }

    /// An HPACK integer with an `n`-bit prefix (RFC 7541, 5.1).
    fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
        let max = (1usize << n) - 1;
        if v < max {
            out.push(first | v as u8);
            return;
        }
        out.push(first | max as u8);
        v -= max;
        while v >= 128 {
            out.push((v % 128) as u8 | 0x80);
            v /= 128;
        }
        out.push(v as u8);
    }

    /// One HEADERS frame (END_HEADERS | END_STREAM) on `stream`, every field
    /// a literal without indexing and without Huffman coding, so that any
    /// bytes can be sent as a value.
    fn headers_frame(stream: u32, fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut block = Vec::new();
        for (name, value) in fields {
            block.push(0);
            hpack_int(&mut block, 0, 7, name.len());
            block.extend_from_slice(name);
            hpack_int(&mut block, 0, 7, value.len());
            block.extend_from_slice(value);
        }
        let mut frame = Vec::new();
        frame.extend_from_slice(&(block.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(&[0x1, 0x5]);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(&block);
        frame
    }

    fn get(authority: &[u8]) -> Vec<(&'static [u8], Vec<u8>)> {
        vec![
            (b":method", b"POST".to_vec()),
            (b":scheme", b"http".to_vec()),
            (b":authority", authority.to_vec()),
            (b":path", b"/grpc.health.v1.Health/Check".to_vec()),
        ]
    }

    /// Feed raw frames to h2's server (the patched one this workspace
    /// builds) and return the requests it hands over, plus what it wrote.
    async fn h2_server_sees(
        frames: Vec<Vec<u8>>,
        requests: usize,
    ) -> (Vec<http::Request<h2::RecvStream>>, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        for f in frames {
            client.write_all(&f).await.unwrap();
        }
        let mut conn = h2::server::handshake(server).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < requests {
            let (req, _respond) = tokio::time::timeout(Duration::from_secs(5), conn.accept())
                .await
                .expect("h2 handed over fewer requests than expected")
                .unwrap()
                .unwrap();
            seen.push(req);
        }
        // Let the connection flush what it has to say (resets, settings).
        let _ = tokio::time::timeout(Duration::from_millis(100), conn.accept()).await;
        drop(conn);
        let mut written = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(200), client.read_to_end(&mut written))
            .await;
        (seen, written)
    }

    /// RST_STREAM frames in `bytes`: (stream, error code).
    fn resets(mut bytes: &[u8]) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        while bytes.len() >= 9 {
            let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            let kind = bytes[3];
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
            let payload = &bytes[9..(9 + len).min(bytes.len())];
            if kind == 0x3 && payload.len() == 4 {
                out.push((
                    stream,
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                ));
            }
            bytes = &bytes[(9 + len).min(bytes.len())..];
        }
        out
    }

    fn frame(stream: u32, fields: &[(&'static [u8], Vec<u8>)]) -> Vec<u8> {
        let f: Vec<(&[u8], &[u8])> = fields.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        headers_frame(stream, &f)
    }

    #[tokio::test]
    async fn patched_h2_hands_over_a_malformed_authority_as_an_extension() {
        let cases: [&[u8]; 4] = [
            b"%2Ftmp%2Fsigner.sock",
            b"/run/signer/signer.sock",
            "/run/ключ.sock".as_bytes(),
            b"",
        ];
        let frames = cases
            .iter()
            .enumerate()
            .map(|(i, a)| frame(1 + 2 * i as u32, &get(a)))
            .chain([frame(9, &get(b"localhost:50051"))])
            .collect();
        let (seen, written) = h2_server_sees(frames, 5).await;
        assert!(resets(&written).is_empty(), "{:?}", resets(&written));
        for (req, raw) in seen.iter().zip(cases) {
            assert_eq!(req.uri(), "/grpc.health.v1.Health/Check");
            assert!(req.uri().authority().is_none());
            let m = req
                .extensions()
                .get::<h2::ext::MalformedAuthority>()
                .expect("no MalformedAuthority extension");
            assert_eq!(m.as_bytes(), raw);
        }
        // A valid authority is parsed as before, and no extension.
        let valid = &seen[4];
        assert_eq!(
            valid.uri().authority().map(|a| a.as_str()),
            Some("localhost:50051")
        );
        assert!(
            valid
                .extensions()
                .get::<h2::ext::MalformedAuthority>()
                .is_none()
        );
    }

    #[tokio::test]
    async fn patched_h2_still_resets_connect_with_a_malformed_authority() {
        let connect: Vec<(&'static [u8], Vec<u8>)> = vec![
            (b":method", b"CONNECT".to_vec()),
            (b":authority", b"%2Ftmp%2Fsigner.sock".to_vec()),
        ];
        let frames = vec![frame(1, &connect), frame(3, &get(b"localhost"))];
        let (seen, written) = h2_server_sees(frames, 1).await;
        // Stream 1 was reset with PROTOCOL_ERROR (0x1); stream 3 got through.
        assert_eq!(resets(&written), vec![(1, 0x1)]);
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].uri().authority().map(|a| a.as_str()),
            Some("localhost")
        );
    }

    #[tokio::test]
    async fn a_refused_authority_gets_invalid_argument_with_a_reason() {
        use tower::ServiceExt;
        let response = RefuseAuthority
            .oneshot(http::Request::new(()))
            .await
            .unwrap();
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("not a valid URI authority"));
    }
}
