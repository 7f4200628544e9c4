//! Where a daemon's time went during one run, per thread, from the kernel's
//! scheduler statistics (`/proc/PID/task/TID/schedstat`: nanoseconds on a
//! CPU, nanoseconds runnable but waiting for one; `status`: voluntary and
//! involuntary context switches), and the benchmark client's own CPU time
//! (`/proc/self/task/*/schedstat`).
//!
//! Threads are grouped by name: the token workers (`token ...`, one per
//! token, kept apart), the audit writer (`audit-writer`), and the rest (the
//! tokio workers and the main thread, which drives the accept loop: the
//! gRPC/HTTP/2 side). CPU time per request is less sensitive to other load
//! on the machine than wall-clock throughput (it still includes cache and
//! frequency effects); the run-queue wait shows whether a thread was held
//! back by a lack of free cores rather than by the work it was given.

use std::collections::BTreeMap;
use std::time::Duration;

/// One thread's counters.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    cpu_ns: u64,
    wait_ns: u64,
    switches: u64,
}

/// Counters of every thread of a process at one moment, by thread id.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    threads: BTreeMap<u32, (String, Counters)>,
}

fn read_thread(task: &std::path::Path) -> Option<(String, Counters)> {
    let name = std::fs::read_to_string(task.join("comm")).ok()?;
    let sched = std::fs::read_to_string(task.join("schedstat")).ok()?;
    let mut f = sched.split_whitespace().map(|v| v.parse::<u64>().ok());
    let cpu_ns = f.next()??;
    let wait_ns = f.next()??;
    let status = std::fs::read_to_string(task.join("status")).ok()?;
    let switches = status
        .lines()
        .filter(|l| l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Some((
        name.trim().to_string(),
        Counters {
            cpu_ns,
            wait_ns,
            switches,
        },
    ))
}

impl Snapshot {
    /// The threads of process `pid` ("self" for this process).
    pub fn of(pid: &str) -> Snapshot {
        let mut threads = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for e in dir.flatten() {
                let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                if let Some(t) = read_thread(&e.path()) {
                    threads.insert(tid, t);
                }
            }
        }
        Snapshot { threads }
    }
}

/// What one thread group used over a run, totals.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// CPU time.
    pub cpu: Duration,
    /// Time runnable but not running (waiting for a core).
    pub wait: Duration,
    /// Context switches.
    pub switches: u64,
}

impl Usage {
    fn add(&mut self, c: Counters) {
        self.cpu += Duration::from_nanos(c.cpu_ns);
        self.wait += Duration::from_nanos(c.wait_ns);
        self.switches += c.switches;
    }
}

/// The group a daemon thread belongs to.
fn group(name: &str, tid: u32, token_threads: &mut BTreeMap<u32, usize>) -> String {
    if name.starts_with("token") {
        let n = token_threads.len();
        let i = *token_threads.entry(tid).or_insert(n);
        format!("token worker {}", i + 1)
    } else if name == "audit-writer" {
        "audit writer".into()
    } else {
        "tokio + accept (gRPC/HTTP/2)".into()
    }
}

/// The difference between two snapshots of the same process, by group.
/// Threads that appeared in between count from zero.
pub fn usage(before: &Snapshot, after: &Snapshot) -> BTreeMap<String, Usage> {
    let mut out: BTreeMap<String, Usage> = BTreeMap::new();
    let mut token_threads = BTreeMap::new();
    for (tid, (name, a)) in &after.threads {
        let b = before.threads.get(tid).map(|(_, c)| *c).unwrap_or_default();
        let d = Counters {
            cpu_ns: a.cpu_ns.saturating_sub(b.cpu_ns),
            wait_ns: a.wait_ns.saturating_sub(b.wait_ns),
            switches: a.switches.saturating_sub(b.switches),
        };
        out.entry(group(name, *tid, &mut token_threads))
            .or_default()
            .add(d);
    }
    out
}

/// The total over every thread of a process.
pub fn total(before: &Snapshot, after: &Snapshot) -> Usage {
    let mut u = Usage::default();
    for g in usage(before, after).into_values() {
        u.cpu += g.cpu;
        u.wait += g.wait;
        u.switches += g.switches;
    }
    u
}

/// The machine's busy CPU time (all cores, jiffies turned into time) from
/// `/proc/stat`'s first line: everything but idle and iowait.
pub fn machine_busy() -> Duration {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return Duration::ZERO;
    };
    let Some(line) = text.lines().next() else {
        return Duration::ZERO;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| *x)
        .take(8)
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(busy * 10)
}

/// Accumulated over the repetitions of one row at one level.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Requests answered.
    pub requests: u64,
    /// Wall time of the runs.
    pub elapsed: Duration,
    /// The daemon's threads, by group.
    pub daemon: BTreeMap<String, Usage>,
    /// The benchmark process (the clients).
    pub client: Usage,
    /// The whole machine's busy time.
    pub machine_busy: Duration,
}

impl Profile {
    /// Add one run.
    pub fn add(
        &mut self,
        requests: usize,
        elapsed: Duration,
        daemon: BTreeMap<String, Usage>,
        client: Usage,
        machine_busy: Duration,
    ) {
        self.requests += requests as u64;
        self.elapsed += elapsed;
        for (g, u) in daemon {
            let e = self.daemon.entry(g).or_default();
            e.cpu += u.cpu;
            e.wait += u.wait;
            e.switches += u.switches;
        }
        self.client.cpu += client.cpu;
        self.client.wait += client.wait;
        self.client.switches += client.switches;
        self.machine_busy += machine_busy;
    }

    /// Microseconds per request.
    pub fn per_request_us(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }

    /// Per request.
    pub fn per_request(&self, n: u64) -> f64 {
        n as f64 / self.requests.max(1) as f64
    }

    /// Fraction of the wall time `d` covers (1.0 = one core all the time).
    pub fn share(&self, d: Duration) -> f64 {
        d.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_seen_and_its_cpu_time_grows() {
        let before = Snapshot::of("self");
        assert!(!before.threads.is_empty());
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = Snapshot::of("self");
        let t = total(&before, &after);
        assert!(t.cpu >= Duration::from_millis(10), "{t:?}");
    }

    #[test]
    fn threads_are_grouped_by_name() {
        let mut tokens = BTreeMap::new();
        assert_eq!(group("token emulated:", 7, &mut tokens), "token worker 1");
        assert_eq!(group("token emulated:", 9, &mut tokens), "token worker 2");
        assert_eq!(group("token emulated:", 7, &mut tokens), "token worker 1");
        assert_eq!(group("audit-writer", 3, &mut tokens), "audit writer");
        assert_eq!(
            group("signer-daemon", 1, &mut tokens),
            "tokio + accept (gRPC/HTTP/2)"
        );
    }
}
