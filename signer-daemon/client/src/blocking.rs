//! A blocking [`Client`] for callers that are not async: the PKCS#11 module,
//! or any C-facing code.
//!
//! [`BlockingClient`] owns one dedicated thread that runs its own
//! single-threaded tokio runtime and the daemon connection. Callers send a
//! request over a channel and wait on a plain (non-tokio) channel for the
//! answer, so:
//!
//! - it works inside a host program that already runs its own tokio runtime
//!   (nothing here calls `block_on` on the caller's thread, and waiting on a
//!   `std::sync::mpsc` channel never panics inside a runtime);
//! - concurrent callers on many threads share one HTTP/2 connection, whose
//!   calls are multiplexed (each request is a task on the client thread);
//! - the connection is opened on the first request and reused; when the
//!   daemon goes away it is dropped and the next request connects again, so a
//!   restarted daemon is picked up without the caller doing anything;
//! - after `fork` the child's copy has no thread behind it: every call in the
//!   child fails at once with [`Error::Unreachable`] naming the reason
//!   (see [`BlockingClient::is_forked`]) instead of waiting forever; the child
//!   makes a new [`BlockingClient`].

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use signer_proto::v1 as pb;
use tokio::sync::mpsc;

use crate::{Client, Error, ErrorKind, SignEvent};

/// A request to the client thread, with where to send the answer.
enum Job {
    ListTokens(Reply<Vec<pb::Token>>),
    ListKeys(Option<u32>, Reply<Vec<pb::Key>>),
    PublicKey(pb::KeyRef, Reply<pb::Key>),
    Sign {
        key: pb::KeyRef,
        signing: crate::Signing,
        on_event: Box<dyn FnMut(SignEvent) + Send>,
        reply: Reply<pb::SignResponse>,
    },
}

type Reply<T> = std_mpsc::SyncSender<Result<T, Error>>;

/// A blocking handle on a daemon connection owned by a dedicated thread.
/// Cheap to share: `&BlockingClient` is `Sync`, calls from many threads run
/// concurrently.
#[derive(Debug)]
pub struct BlockingClient {
    jobs: mpsc::UnboundedSender<Job>,
    socket: PathBuf,
    pid: u32,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::ListTokens(_) => "ListTokens",
            Job::ListKeys(..) => "ListKeys",
            Job::PublicKey(..) => "PublicKey",
            Job::Sign { .. } => "Sign",
        })
    }
}

impl BlockingClient {
    /// Start the client thread for the daemon on `socket`. Does not connect:
    /// the first request does (so a module can be loaded while the daemon
    /// is down). `timeout` is the deadline sent with every call.
    pub fn spawn(socket: impl AsRef<Path>, timeout: Duration) -> std::io::Result<BlockingClient> {
        let socket = socket.as_ref().to_path_buf();
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let path = socket.clone();
        let thread = std::thread::Builder::new()
            .name("signer-client".into())
            .spawn(move || runtime.block_on(serve(path, timeout, rx)))?;
        Ok(BlockingClient {
            jobs: tx,
            socket,
            pid: std::process::id(),
            thread: Some(thread),
        })
    }

    /// The daemon's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// True in a child process forked after this client was made: its
    /// thread does not exist there, so every call fails; make a new client.
    pub fn is_forked(&self) -> bool {
        self.pid != std::process::id()
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T, Error> {
        if self.is_forked() {
            return Err(Error::Unreachable {
                path: self.socket.clone(),
                detail: format!(
                    "this connection belongs to process {} and this is its forked child {}: \
                     initialize the client again in the child",
                    self.pid,
                    std::process::id()
                ),
            });
        }
        let stopped = || Error::Unreachable {
            path: self.socket.clone(),
            detail: "the client thread has stopped".into(),
        };
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.jobs.send(make(tx)).map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }

    /// [`Client::list_tokens`].
    pub fn list_tokens(&self) -> Result<Vec<pb::Token>, Error> {
        self.call(Job::ListTokens)
    }

    /// [`Client::list_keys`].
    pub fn list_keys(&self, token_serial: Option<u32>) -> Result<Vec<pb::Key>, Error> {
        self.call(|r| Job::ListKeys(token_serial, r))
    }

    /// [`Client::public_key`].
    pub fn public_key(&self, key: pb::KeyRef) -> Result<pb::Key, Error> {
        self.call(|r| Job::PublicKey(key, r))
    }

    /// [`Client::sign_as`] (the `SignWithEvents` stream): `on_event` runs on
    /// the client thread before the token waits for a touch; the call
    /// blocks until the signature (or the error) arrives.
    pub fn sign_as(
        &self,
        key: pb::KeyRef,
        hash: pb::HashAlgorithm,
        digest: Vec<u8>,
        format: pb::SignatureFormat,
        on_event: impl FnMut(SignEvent) + Send + 'static,
    ) -> Result<pb::SignResponse, Error> {
        let signing = crate::Signing::ecdsa(hash, crate::Payload::Digest(digest), format);
        self.sign_with(key, signing, on_event)
    }

    /// [`Client::sign_with`] (any scheme, the `SignWithEvents` stream),
    /// blocking like [`BlockingClient::sign_as`].
    pub fn sign_with(
        &self,
        key: pb::KeyRef,
        signing: crate::Signing,
        on_event: impl FnMut(SignEvent) + Send + 'static,
    ) -> Result<pb::SignResponse, Error> {
        self.call(|reply| Job::Sign {
            key,
            signing,
            on_event: Box::new(on_event),
            reply,
        })
    }

    /// Stop the client thread and wait for it (requests in flight finish).
    /// In a forked child this only forgets the parent's thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let thread = self.thread.take();
        // Closing the channel ends the thread's loop.
        let (dead, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.jobs, dead));
        if let Some(t) = thread {
            if self.is_forked() {
                // The thread exists only in the parent; joining would wait
                // forever.
                std::mem::forget(t);
            } else if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for BlockingClient {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The client thread: one connection, opened on demand, shared by every
/// request (a clone per request task), dropped when the daemon goes away.
async fn serve(path: PathBuf, timeout: Duration, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let connection: Arc<Mutex<Option<Client>>> = Arc::new(Mutex::new(None));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(job) = jobs.recv().await {
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
        let current = connection.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let client = match current {
            Some(c) => Ok(c),
            None => match Client::connect(&path).await {
                Ok(c) => {
                    let c = c.with_timeout(timeout);
                    *connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
                    Ok(c)
                }
                Err(e) => Err(e),
            },
        };
        let mut client = match client {
            Ok(c) => c,
            Err(e) => {
                fail(job, e);
                continue;
            }
        };
        let connection = connection.clone();
        let path = path.clone();
        tasks.spawn(async move {
            let lost = |e: Error| lost_connection(e, &path, &connection);
            match job {
                Job::ListTokens(r) => {
                    let _ = r.send(client.list_tokens().await.map_err(lost));
                }
                Job::ListKeys(serial, r) => {
                    let _ = r.send(client.list_keys(serial).await.map_err(lost));
                }
                Job::PublicKey(key, r) => {
                    let _ = r.send(client.public_key(key).await.map_err(lost));
                }
                Job::Sign {
                    key,
                    signing,
                    on_event,
                    reply,
                } => {
                    let result = client.sign_with(key, &signing, on_event).await;
                    let _ = reply.send(result.map_err(lost));
                }
            }
        });
    }
    // The handle was dropped: let requests in flight finish.
    while tasks.join_next().await.is_some() {}
}

fn fail(job: Job, e: Error) {
    match job {
        Job::ListTokens(r) => drop(r.send(Err(e))),
        Job::ListKeys(_, r) => drop(r.send(Err(e))),
        Job::PublicKey(_, r) => drop(r.send(Err(e))),
        Job::Sign { reply, .. } => drop(reply.send(Err(e))),
    }
}

/// An `UNAVAILABLE` answer may be the daemon's own ("the card is absent")
/// or the transport's (the daemon went away). In both cases the connection
/// is dropped so the next request dials again; when nothing answers on the
/// socket any more the error becomes [`Error::Unreachable`], which is what
/// it is.
fn lost_connection(e: Error, path: &Path, connection: &Mutex<Option<Client>>) -> Error {
    if e.kind() != ErrorKind::Unavailable && e.kind() != ErrorKind::Internal {
        return e;
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) if e.kind() == ErrorKind::Internal => e,
        Ok(_) => {
            *connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
            e
        }
        Err(io) => {
            *connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
            Error::Unreachable {
                path: path.to_path_buf(),
                detail: format!("{io} (the daemon went away: {e})"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_listening_is_unreachable_and_the_client_keeps_working() {
        let dir = std::env::temp_dir().join(format!("signer-blocking-{}", std::process::id()));
        let c = BlockingClient::spawn(dir.join("none.sock"), Duration::from_secs(5)).unwrap();
        for _ in 0..2 {
            let e = c.list_tokens().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
            assert!(e.to_string().contains("none.sock"), "{e}");
        }
        c.shutdown();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn usable_from_inside_a_tokio_runtime() {
        // Calling from a runtime thread must not panic ("cannot block_on
        // inside a runtime"): the wait is on a std channel.
        let c = BlockingClient::spawn("/nonexistent/signer.sock", Duration::from_secs(5)).unwrap();
        let e = c.list_keys(None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    }

    #[test]
    fn a_copy_in_another_process_refuses_at_once() {
        let mut c =
            BlockingClient::spawn("/nonexistent/signer.sock", Duration::from_secs(5)).unwrap();
        c.pid = c.pid.wrapping_add(1); // what a forked child sees
        assert!(c.is_forked());
        let e = c.list_tokens().unwrap_err();
        assert!(e.to_string().contains("forked child"), "{e}");
        c.pid = std::process::id();
    }
}
