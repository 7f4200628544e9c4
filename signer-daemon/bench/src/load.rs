//! Driving a signer at a concurrency level, and what one run measured.
//!
//! Every row is driven the same way: `clients` independent clients (one
//! connection, session or key handle each) split `total` requests between
//! them, client `c` taking request indices `c, c + clients, ...`; request
//! `i` signs [`digest`]`(i)`. Each request's latency is taken around the
//! call. The run's time is from the moment every client is ready (a barrier)
//! to the end of the last request. No client verifies inside the timed
//! window: every signature is kept and verified afterwards, for every row,
//! by [`Run::verify_all`].

use std::future::Future;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use sha2::Digest;

/// The SHA-256 digest request `i` signs (the same for every row).
pub fn digest(i: usize) -> [u8; 32] {
    sha2::Sha256::digest(format!("signer-bench request {i}").as_bytes()).into()
}

/// A failure of the benchmark itself (set-up, a peer, a wrong signature).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

/// Make a [`Failure`] from anything printable, with context.
pub fn fail(context: impl std::fmt::Display, e: impl std::fmt::Display) -> Failure {
    Failure(format!("{context}: {e}"))
}

/// The result type of the benchmark.
pub type Result<T> = std::result::Result<T, Failure>;

/// Checks one signature: `(request index, signature)`.
pub type Verifier = Box<dyn Fn(usize, &[u8]) -> std::result::Result<(), String>>;

/// One client's `(request index, latency, signature)`s.
type Samples = Vec<(usize, Duration, Vec<u8>)>;

/// What one run at one concurrency level measured.
#[derive(Debug, Clone)]
pub struct Run {
    /// Wall time from start barrier to the last answer.
    pub elapsed: Duration,
    /// Every request's latency.
    pub latencies: Vec<Duration>,
    /// `(request index, signature as the signer returned it)`.
    pub signatures: Vec<(usize, Vec<u8>)>,
}

impl Run {
    /// Signatures per second.
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency percentile (0..=100), microseconds.
    pub fn percentile_us(&self, p: f64) -> f64 {
        let mut l: Vec<Duration> = self.latencies.clone();
        l.sort_unstable();
        if l.is_empty() {
            return 0.0;
        }
        let idx = ((p / 100.0) * (l.len() - 1) as f64).round() as usize;
        l[idx.min(l.len() - 1)].as_secs_f64() * 1e6
    }

    /// Check every signature with `verify(digest index, signature)`; fails
    /// naming the first that does not verify.
    pub fn verify_all(
        &self,
        row: &str,
        verify: impl Fn(usize, &[u8]) -> std::result::Result<(), String>,
    ) -> Result<()> {
        for (i, sig) in &self.signatures {
            verify(*i, sig)
                .map_err(|e| Failure(format!("{row}: signature {i} does not verify: {e}")))?;
        }
        Ok(())
    }
}

fn indices(client: usize, clients: usize, total: usize) -> impl Iterator<Item = usize> {
    (client..total).step_by(clients)
}

/// Drive a blocking signer from `clients` OS threads. `open(c)` makes client
/// `c` (before the clock starts); `sign(client, i)` signs digest `i`.
pub fn run_threads<C>(
    clients: usize,
    total: usize,
    open: impl Fn(usize) -> Result<C> + Sync,
    sign: impl Fn(&mut C, usize) -> Result<Vec<u8>> + Sync,
) -> Result<Run> {
    let barrier = Barrier::new(clients + 1);
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let barrier = &barrier;
                let open = &open;
                let sign = &sign;
                scope.spawn(move || -> Result<Samples> {
                    let client = open(c);
                    barrier.wait();
                    let mut client = client?;
                    let mut out = Vec::new();
                    for i in indices(c, clients, total) {
                        let t = Instant::now();
                        let sig = sign(&mut client, i)?;
                        out.push((i, t.elapsed(), sig));
                    }
                    Ok(out)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut all = Vec::new();
        for h in handles {
            match h.join() {
                Ok(r) => all.push(r),
                Err(_) => all.push(Err(Failure("a client thread panicked".into()))),
            }
        }
        (start.elapsed(), all)
    });
    collect(results.0, results.1)
}

/// Drive an async signer from `clients` tasks. `clients` handles are made
/// by `open` before the clock starts; `sign(handle, i)` signs digest `i`.
pub async fn run_tasks<C, O, OF, S, SF>(
    clients: usize,
    total: usize,
    open: O,
    sign: S,
) -> Result<Run>
where
    C: Send + 'static,
    O: Fn(usize) -> OF,
    OF: Future<Output = Result<C>>,
    S: Fn(C, usize) -> SF + Send + Sync + 'static,
    SF: Future<Output = (C, Result<Vec<u8>>)> + Send + 'static,
{
    let mut handles = Vec::with_capacity(clients);
    for c in 0..clients {
        handles.push(open(c).await?);
    }
    let sign = Arc::new(sign);
    let start_gate = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = Vec::with_capacity(clients);
    for (c, mut handle) in handles.into_iter().enumerate() {
        let sign = sign.clone();
        let gate = start_gate.clone();
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let mut out = Vec::new();
            for i in indices(c, clients, total) {
                let t = Instant::now();
                let (h, r) = sign(handle, i).await;
                handle = h;
                out.push((i, t.elapsed(), r?));
            }
            Ok::<_, Failure>(out)
        }));
    }
    start_gate.wait().await;
    let start = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.push(
            t.await
                .unwrap_or_else(|e| Err(fail("a client task failed", e))),
        );
    }
    collect(start.elapsed(), all)
}

fn collect(elapsed: Duration, all: Vec<Result<Samples>>) -> Result<Run> {
    let mut run = Run {
        elapsed,
        latencies: Vec::new(),
        signatures: Vec::new(),
    };
    for r in all {
        for (i, l, s) in r? {
            run.latencies.push(l);
            run.signatures.push((i, s));
        }
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_split_the_requests_exactly_once() {
        for clients in [1, 3, 8, 64] {
            let mut all: Vec<usize> = (0..clients)
                .flat_map(|c| indices(c, clients, 1000))
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..1000).collect::<Vec<_>>(), "{clients} clients");
        }
    }

    #[test]
    fn threads_and_tasks_run_every_request_and_verification_catches_a_bad_signature() {
        let run = run_threads(4, 100, |_| Ok(()), |_, i| Ok(digest(i).to_vec())).unwrap();
        assert_eq!(run.latencies.len(), 100);
        run.verify_all("t", |i, s| {
            (s == digest(i).as_slice())
                .then_some(())
                .ok_or_else(|| "mismatch".to_string())
        })
        .unwrap();
        let e = run
            .verify_all("t", |i, _| if i == 42 { Err("bad".into()) } else { Ok(()) })
            .unwrap_err();
        assert!(e.0.contains("signature 42"), "{e}");

        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let run = rt
            .block_on(run_tasks(
                8,
                100,
                |_| async { Ok(()) },
                |c, i| async move { (c, Ok(vec![i as u8])) },
            ))
            .unwrap();
        let mut seen: Vec<usize> = run.signatures.iter().map(|(i, _)| *i).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn percentiles() {
        let run = Run {
            elapsed: Duration::from_secs(1),
            latencies: (1..=100).map(Duration::from_micros).collect(),
            signatures: Vec::new(),
        };
        assert_eq!(run.throughput(), 100.0);
        assert!((run.percentile_us(50.0) - 51.0).abs() < 1.01);
        assert_eq!(run.percentile_us(99.0), 99.0);
        assert_eq!(run.percentile_us(100.0), 100.0);
    }
}
