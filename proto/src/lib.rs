//! The `signer.v1` gRPC contract of `signer-daemon`, generated once from
//! `proto/signer/v1/signer.proto` and shared by the daemon, `signerctl`, and
//! any Rust trust tool that wants to ask the daemon for signatures.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use signer_proto::v1::{ListKeysRequest, signer_client::SignerClient};
//! let channel = signer_proto::unix::connect("/run/signer/signer.sock").await?;
//! let keys = SignerClient::new(channel)
//!     .list_keys(ListKeysRequest::default())
//!     .await?
//!     .into_inner();
//! # let _ = keys; Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// `signer.v1`: messages, the `Signer` client and server.
#[allow(missing_docs, clippy::all, clippy::unwrap_used)]
pub mod v1 {
    tonic::include_proto!("signer.v1");
}

/// The encoded `FileDescriptorSet` of `signer.v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("signer_v1_descriptor");

/// The fully qualified service name, `signer.v1.Signer` (health checks use it).
pub const SERVICE_NAME: &str = "signer.v1.Signer";

/// Connecting to the daemon's Unix socket.
pub mod unix {
    use std::path::{Path, PathBuf};

    use hyper_util::rt::TokioIo;
    use tonic::transport::{Channel, Endpoint};

    /// Open a channel to the daemon listening on the Unix socket `path`.
    /// Fails when nothing listens there (the error names the path).
    pub async fn connect(path: impl AsRef<Path>) -> Result<Channel, tonic::transport::Error> {
        let path: PathBuf = path.as_ref().to_path_buf();
        // The URI is required by the API but unused: the connector below
        // ignores it and dials the socket.
        Endpoint::from_static("http://signer-daemon.invalid")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(&path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
    }
}
