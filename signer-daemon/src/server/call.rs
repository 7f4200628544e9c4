//! One request's life: who called, its deadline, and its audit record, which
//! is written exactly once: when the answer is ready (and before it is
//! released), or, if the request is abandoned (the caller hung up or its
//! deadline passed), when it is dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tonic::{Code, Status};

use super::Daemon;
use crate::audit::{AuditRecord, Expected, now_rfc3339};
use crate::peer::{PeerConnectInfo, PeerInfo};
use crate::policy::{Caller, Decision, KeyTarget, Operation};
use crate::status::code_name;

pub(crate) struct Call {
    pub daemon: Arc<Daemon>,
    pub peer: Option<Arc<PeerInfo>>,
    pub op: Operation,
    pub record: AuditRecord,
    pub started: Instant,
    pub deadline: Instant,
    finished: bool,
    /// This call's record is on its way (the audit writer's group commit
    /// waits for it); dropped as the record is queued.
    expected: Option<Expected>,
}

impl Call {
    pub fn begin<T>(
        daemon: &Arc<Daemon>,
        rpc: &'static str,
        op: Operation,
        request: &tonic::Request<T>,
    ) -> Call {
        let started = Instant::now();
        let peer = request
            .extensions()
            .get::<PeerConnectInfo>()
            .and_then(|c| c.0.clone());
        // The caller's deadline, less a margin so that the daemon's
        // DEADLINE_EXCEEDED (with its reason, and audited) reaches the
        // caller before the caller's own timer gives up.
        let timeout = match grpc_timeout(request.metadata()) {
            Some(t) => t.saturating_sub(
                (t / 10).clamp(Duration::from_millis(20), Duration::from_millis(250)),
            ),
            None => daemon.options.request_timeout,
        };
        let record = AuditRecord {
            time: now_rfc3339(),
            request_id: daemon.next_request.fetch_add(1, Ordering::Relaxed),
            rpc,
            operation: op.name(),
            uid: peer.as_ref().map(|p| p.uid),
            gid: peer.as_ref().map(|p| p.gid),
            pid: peer.as_ref().and_then(|p| p.pid),
            exe: peer.as_ref().and_then(|p| p.exe.clone()),
            outcome: "pending",
            code: "UNKNOWN",
            ..Default::default()
        };
        daemon.in_flight.fetch_add(1, Ordering::AcqRel);
        Call {
            daemon: daemon.clone(),
            peer,
            op,
            record,
            started,
            deadline: started + timeout,
            finished: false,
            expected: Some(daemon.audit.expect()),
        }
    }

    /// This is the only request in progress: it may poll for its answers
    /// briefly instead of parking (`crate::spin`).
    pub fn is_lone(&self) -> bool {
        self.daemon.in_flight.load(Ordering::Acquire) <= 1
    }

    fn caller_or_refuse(&self) -> Result<Arc<PeerInfo>, Status> {
        self.peer.clone().ok_or_else(|| {
            Status::unauthenticated(
                "the connection carries no peer credentials (SO_PEERCRED); connect over the daemon's Unix socket",
            )
        })
    }

    /// May the caller perform this call's operation at all?
    pub fn authorize_operation(&mut self) -> Result<(), Status> {
        let peer = self.caller_or_refuse()?;
        let groups = || peer.groups().to_vec();
        let caller = Caller {
            uid: peer.uid,
            gid: peer.gid,
            groups: &groups,
        };
        let decision = self.daemon.policy().check_operation(&caller, self.op);
        self.apply(decision)
    }

    /// May the caller perform this call's operation on `key`?
    pub fn authorize_key(&mut self, key: &KeyTarget<'_>) -> Result<(), Status> {
        let peer = self.caller_or_refuse()?;
        let decision = self.decide_key(&peer, key);
        self.apply(decision)
    }

    /// The decision for `key`, without recording it (ListKeys filtering).
    pub fn decide_key(&self, peer: &PeerInfo, key: &KeyTarget<'_>) -> Decision {
        let groups = || peer.groups().to_vec();
        let caller = Caller {
            uid: peer.uid,
            gid: peer.gid,
            groups: &groups,
        };
        self.daemon.policy().check_key(&caller, self.op, key)
    }

    fn apply(&mut self, decision: Decision) -> Result<(), Status> {
        self.record.rule = Some(decision.rule.clone());
        if decision.allowed {
            Ok(())
        } else {
            tracing::warn!(
                uid = self.record.uid,
                pid = self.record.pid,
                operation = self.op.name(),
                rule = %decision.rule,
                "denied: {}",
                decision.reason
            );
            Err(Status::permission_denied(decision.reason))
        }
    }

    /// Write the audit record for `result` and wait until it is durable. A
    /// successful answer is withheld (UNAVAILABLE) if the audit log cannot
    /// be written.
    pub async fn finish<T>(mut self, result: Result<T, Status>) -> Result<T, Status> {
        self.finished = true;
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        };
        self.record.outcome = match code {
            Code::Ok => "ok",
            Code::PermissionDenied | Code::Unauthenticated => "denied",
            _ => "error",
        };
        self.record.code = code_name(code);
        if let Err(s) = &result {
            self.record.message = Some(s.message().to_string());
        }
        self.record.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let record = std::mem::take(&mut self.record);
        self.expected.take();
        let lone = self.is_lone();
        match self.daemon.audit.write(record, lone).await {
            Ok(()) => result,
            Err(e) => {
                tracing::error!(error = %e, "audit log write failed; answer withheld");
                Err(Status::unavailable(format!(
                    "{e}; the daemon does not release results it cannot audit"
                )))
            }
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.daemon.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.finished {
            return;
        }
        let expired = Instant::now() >= self.deadline;
        self.record.outcome = "cancelled";
        self.record.code = code_name(if expired {
            Code::DeadlineExceeded
        } else {
            Code::Cancelled
        });
        self.record.message = Some(if expired {
            "the caller's deadline passed before the answer was ready".into()
        } else {
            "the caller went away before the answer was ready".into()
        });
        self.record.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.expected.take();
        self.daemon
            .audit
            .write_detached(std::mem::take(&mut self.record));
    }
}

/// Parse the `grpc-timeout` header (the client's deadline): up to 8 digits
/// and a unit (H, M, S, m, u, n). A malformed header counts as absent.
pub(crate) fn grpc_timeout(meta: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = meta.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_lone` (which decides whether a request polls for its answers,
    /// `crate::spin`) is true exactly while one call is in progress; a call
    /// counts from its start until it is dropped, finished or abandoned.
    #[tokio::test]
    async fn a_call_is_lone_only_while_no_other_is_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::new(
            Vec::new(),
            crate::policy::Policy::only_daemon_uid(0),
            crate::audit::AuditLog::open(dir.path().join("audit.jsonl")).unwrap(),
            crate::attestation::AttestationTrust::default(),
            super::super::DaemonOptions::default(),
        );
        let request = tonic::Request::new(());
        let first = Call::begin(&daemon, "Sign", Operation::Sign, &request);
        assert!(first.is_lone());
        let second = Call::begin(&daemon, "ListKeys", Operation::List, &request);
        assert!(!first.is_lone() && !second.is_lone());
        // Abandoned (dropped unfinished): no longer in progress.
        drop(second);
        assert!(first.is_lone());
        let third = Call::begin(&daemon, "Sign", Operation::Sign, &request);
        assert!(!third.is_lone());
        // Finished: its audit line is written (a lone wait polls first) and
        // it stops counting.
        first.finish(Ok(())).await.unwrap();
        assert!(third.is_lone());
        third.finish(Ok(())).await.unwrap();
        assert_eq!(daemon.in_flight.load(Ordering::Acquire), 0);
        let log = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 3, "{log}");
    }

    #[test]
    fn parses_grpc_timeout() {
        let mut m = tonic::metadata::MetadataMap::new();
        assert_eq!(grpc_timeout(&m), None);
        for (text, d) in [
            ("5S", Duration::from_secs(5)),
            ("250m", Duration::from_millis(250)),
            ("2M", Duration::from_secs(120)),
            ("1H", Duration::from_secs(3600)),
            ("99999999u", Duration::from_micros(99_999_999)),
        ] {
            m.insert("grpc-timeout", text.parse().unwrap());
            assert_eq!(grpc_timeout(&m), Some(d), "{text}");
        }
        for bad in ["S", "5x", "123456789S", "-1S"] {
            m.insert("grpc-timeout", bad.parse().unwrap());
            assert_eq!(grpc_timeout(&m), None, "{bad}");
        }
    }
}
