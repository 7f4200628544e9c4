//! Who is calling: the peer credentials of each Unix-socket connection.
//!
//! The kernel records the connecting process's uid, gid and pid when it calls
//! `connect(2)` (SO_PEERCRED); they cannot be forged by the client. They are
//! read once per connection, when the daemon accepts it, and travel with every
//! request of that connection as a [`PeerInfo`] request extension.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::Connected;

/// The credentials of the process at the other end of a connection.
#[derive(Debug)]
pub struct PeerInfo {
    /// Effective uid at connect time.
    pub uid: u32,
    /// Effective primary gid at connect time.
    pub gid: u32,
    /// Process id at connect time (`None` when the kernel did not say).
    pub pid: Option<i32>,
    /// `/proc/PID/exe` at accept time, when readable (audit only: a path is
    /// not an identity, so the policy never uses it).
    pub exe: Option<String>,
    groups: OnceLock<Vec<u32>>,
}

impl PeerInfo {
    /// Credentials as read from the socket.
    pub fn new(uid: u32, gid: u32, pid: Option<i32>) -> PeerInfo {
        let exe = pid.and_then(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        });
        PeerInfo {
            uid,
            gid,
            pid,
            exe,
            groups: OnceLock::new(),
        }
    }

    /// Every group the caller is in: its primary gid plus the supplementary
    /// groups the user database (NSS) lists for its user. Resolved once per
    /// connection, on first use.
    pub fn groups(&self) -> &[u32] {
        self.groups
            .get_or_init(|| resolve_groups(self.uid, self.gid))
            .as_slice()
    }
}

fn resolve_groups(uid: u32, gid: u32) -> Vec<u32> {
    use nix::unistd::{Gid, Uid, User, getgrouplist};
    let mut groups = vec![gid];
    if let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) {
        if let Ok(name) = std::ffi::CString::new(user.name) {
            if let Ok(list) = getgrouplist(&name, Gid::from_raw(gid)) {
                groups.extend(list.into_iter().map(|g| g.as_raw()));
            }
        }
    }
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// A Unix stream that carries its peer's credentials (what tonic puts into
/// every request's extensions as `Option<Arc<PeerInfo>>`).
#[derive(Debug)]
pub struct PeerStream {
    inner: UnixStream,
    peer: Option<Arc<PeerInfo>>,
}

impl PeerStream {
    /// Read the peer credentials of an accepted connection.
    pub fn new(inner: UnixStream) -> PeerStream {
        let peer = inner
            .peer_cred()
            .ok()
            .map(|c| Arc::new(PeerInfo::new(c.uid(), c.gid(), c.pid())));
        PeerStream { inner, peer }
    }
}

/// The connect info tonic attaches to requests (`None`: no credentials).
#[derive(Clone, Debug)]
pub struct PeerConnectInfo(pub Option<Arc<PeerInfo>>);

impl Connected for PeerStream {
    type ConnectInfo = PeerConnectInfo;
    fn connect_info(&self) -> PeerConnectInfo {
        PeerConnectInfo(self.peer.clone())
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn credentials_of_a_socketpair_are_our_own() {
        let (a, _b) = UnixStream::pair().unwrap();
        let s = PeerStream::new(a);
        let info = s.connect_info().0.unwrap();
        assert_eq!(info.uid, rustix::process::geteuid().as_raw());
        assert_eq!(info.gid, rustix::process::getegid().as_raw());
        assert_eq!(info.pid, Some(std::process::id() as i32));
        let exe = std::env::current_exe().unwrap();
        assert_eq!(info.exe.as_deref(), Some(exe.to_str().unwrap()));
        assert!(info.groups().contains(&info.gid));
    }
}
