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

use signer_proto::v1::signer_server::SignerServer;
use tokio::net::UnixListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
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
        self.tokens.iter().all(|t| {
            t.join(end.saturating_duration_since(std::time::Instant::now()))
        })
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
) -> Result<(), tonic::transport::Error> {
    let limit = daemon.options.max_request_bytes;
    let grace = daemon.options.shutdown_grace;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", ServingStatus::Serving)
        .await;
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

    let incoming = UnixListenerStream::new(listener).map(|r| r.map(PeerStream::new));

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = {
        let health = health.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; finishing requests in flight");
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            health
                .set_service_status(signer_proto::SERVICE_NAME, ServingStatus::NotServing)
                .await;
            let _ = stopping_tx.send(());
        }
    };

    let server = tonic::transport::Server::builder()
        .http2_max_header_list_size(16 * 1024)
        .add_service(signer)
        .add_service(health_service.max_decoding_message_size(limit))
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, signal);

    let deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };

    let result = tokio::select! {
        r = server => r,
        () = deadline => {
            tracing::warn!(?grace, "requests still in flight after the shutdown grace period; stopping anyway");
            Ok(())
        }
    };
    watcher.abort();
    result
}
