//! The gRPC server: the `signer.v1.Signer` service, `grpc.health.v1.Health`
//! and server reflection, on a Unix socket.
//!
//! [`run`] is the entry point: it serves a listener until a shutdown future
//! completes, then stops accepting, lets requests in flight finish (bounded
//! by [`DaemonOptions::shutdown_grace`]) and returns. Tests drive it
//! in-process over a temporary socket; `signer-daemon serve` wraps it with
//! configuration, signals and logging.

mod call;
pub mod convert;
mod service;

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as AutoBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use signer_proto::v1::signer_server::SignerServer;
use tokio::net::UnixListener;
use tonic::codegen::http;
use tonic::transport::server::Connected;
use tonic_health::ServingStatus;

use crate::attestation::AttestationTrust;
use crate::audit::AuditLog;
use crate::peer::PeerStream;
use crate::policy::Policy;
use crate::worker::TokenWorker;

pub use service::SignerService;

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

/// Serve `daemon` on `listener` until `shutdown` completes; then stop
/// accepting connections, answer requests already received (new calls on
/// open connections are refused with UNAVAILABLE), and return once they are
/// done or [`DaemonOptions::shutdown_grace`] has passed.
pub async fn run(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
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
        .max_concurrent_streams(1024)
        .keep_alive_interval(None);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let peer = PeerStream::new(stream);
                let info = peer.connect_info();
                if let Some(p) = &info.0 {
                    tracing::debug!(uid = p.uid, gid = p.gid, pid = p.pid, "connection");
                }
                let service = tower::ServiceExt::map_request(
                    routes.clone(),
                    move |mut req: http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(info.clone());
                        req
                    },
                );
                let conn = builder
                    .serve_connection(TokioIo::new(peer), TowerToHyperService::new(service))
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        // Garbage, a client that hung up, a protocol error:
                        // only this connection is affected.
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                });
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
