//! Waiting for an answer that is microseconds away without letting the
//! core go idle.
//!
//! A lone request's path crosses threads four times (async runtime → token
//! worker → runtime → audit writer → runtime), and while the signature or
//! the audit `fdatasync` is under way every thread of the daemon (and the
//! waiting client) sleeps, so the cores go idle. Waking an idle core costs
//! far more than the hand-over itself: on the 2-core virtual machine of the
//! benchmark a futex round trip between two threads took 6 µs on one core
//! and 58–69 µs across cores after 300 µs of idleness (README
//! "Performance"), and the durable line added 169–254 µs to a lone
//! request's p50 where one `fdatasync` takes 70–97 µs.
//!
//! So when a request is the only one in progress, the runtime polls its
//! answer (yielding to every other task between polls) for a short,
//! bounded time before it parks as usual: the core stays awake and the
//! answer is picked up as it lands. It never spins under load (another
//! request in progress means the runtime has work and stays awake anyway),
//! never longer than the budget (a slow card or a stalled disk is then
//! waited for by parking, as before), and it changes nothing about what is
//! waited for: the answer is still released only after its audit line is
//! durable.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// What [`poll_for`] saw.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Polled<T> {
    /// The answer.
    Answer(T),
    /// The sender was dropped without an answer.
    Closed,
    /// The budget ran out first: await the receiver as usual.
    NotYet,
}

/// Poll `rx` until it has an answer, yielding between polls, for at most
/// `budget`.
pub(crate) async fn poll_for<T>(rx: &mut oneshot::Receiver<T>, budget: Duration) -> Polled<T> {
    let start = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(v) => return Polled::Answer(v),
            Err(oneshot::error::TryRecvError::Closed) => return Polled::Closed,
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        if start.elapsed() >= budget {
            return Polled::NotYet;
        }
        tokio::task::yield_now().await;
    }
}

/// How long a lone request polls for its token's signature (an in-process
/// emulated token signs P-256 in about 40 µs; a card is never polled for).
pub(crate) const TOKEN_POLL: Duration = Duration::from_micros(300);

/// How long a lone request polls for its audit line to be durable (one
/// `fdatasync` is 60–300 µs on the disks measured; a longer one is waited
/// for by parking).
pub(crate) const AUDIT_POLL: Duration = Duration::from_micros(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_that_comes_in_time_is_taken() {
        let (tx, mut rx) = oneshot::channel();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            tx.send(7u32).unwrap();
        });
        let got = poll_for(&mut rx, Duration::from_secs(10)).await;
        t.join().unwrap();
        assert_eq!(got, Polled::Answer(7));
    }

    #[tokio::test]
    async fn the_budget_bounds_the_polling_and_the_answer_is_still_there() {
        let (tx, mut rx) = oneshot::channel::<u32>();
        let start = Instant::now();
        assert_eq!(
            poll_for(&mut rx, Duration::from_millis(20)).await,
            Polled::NotYet
        );
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(20), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        tx.send(3).unwrap();
        assert_eq!(rx.await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_dropped_sender_is_reported() {
        let (tx, mut rx) = oneshot::channel::<u32>();
        drop(tx);
        assert_eq!(
            poll_for(&mut rx, Duration::from_secs(10)).await,
            Polled::Closed
        );
    }

    /// Other tasks run while one polls (it yields; a single-threaded
    /// runtime is not blocked).
    #[tokio::test(flavor = "current_thread")]
    async fn polling_yields_to_other_tasks() {
        let (tx, mut rx) = oneshot::channel::<u32>();
        let other = tokio::spawn(async move {
            tx.send(9).unwrap();
        });
        let got = poll_for(&mut rx, Duration::from_secs(10)).await;
        other.await.unwrap();
        assert_eq!(got, Polled::Answer(9));
    }
}
