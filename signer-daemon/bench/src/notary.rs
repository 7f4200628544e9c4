//! Notary's `notary-signer` (Debian package `notary`): the signing service
//! Docker Content Trust runs. gRPC over TCP with mutual TLS; its key storage
//! is configured as `memory`, so it holds the P-256 key it creates with
//! `KeyManagement.CreateKey`. Every request is `Signer.Sign`, whose content
//! is the row's 32-byte digest (notary-signer hashes it with SHA-256 and
//! returns r‖s).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use p256::ecdsa::{Signature, VerifyingKey, signature::hazmat::PrehashVerifier};
use p256::pkcs8::DecodePublicKey;
use sha2::Digest;
use tonic::transport::{Channel, Endpoint};

use crate::load::{Failure, Result, fail};

/// The generated client of notary-signer's services (our own .proto).
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("proto");
}

/// The TLS server name in notary-signer's certificate.
const SERVER_NAME: &str = "notary-signer";

/// A running notary-signer with one key.
pub struct NotarySigner {
    child: Child,
    addr: SocketAddr,
    tls: SslConnector,
    /// The key's id.
    pub key_id: String,
    /// The key, for verification.
    pub key: VerifyingKey,
}

impl Drop for NotarySigner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail("cannot run openssl (apt-get install openssl)", e))?;
    if !out.status.success() {
        return Err(Failure(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// A CA, a server certificate for `notary-signer` and a client certificate
/// (all P-256), in `dir`.
fn make_certs(dir: &Path) -> Result<()> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=bench CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(dir, &ca)?;
    for (name, ext) in [
        (
            "server",
            "subjectAltName=DNS:notary-signer\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let mut req = vec!["req", "-subj"];
        let subj = format!("/CN=bench {name}");
        req.push(&subj);
        req.extend(ec);
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(dir, &req)?;
        let extfile = format!("{name}.ext");
        std::fs::write(dir.join(&extfile), ext).map_err(|e| fail("writing ext file", e))?;
        let crt = format!("{name}.crt");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                &extfile,
                "-out",
                &crt,
            ],
        )?;
    }
    Ok(())
}

/// The mutual-TLS client configuration, with the system's OpenSSL (the
/// benchmark adds no second TLS or crypto library to the tree: RustCrypto
/// stays the only one, `cargo tree -d`).
fn tls_connector(dir: &Path) -> Result<SslConnector> {
    let path = |name: &str| dir.join(name);
    let mut b =
        SslConnector::builder(SslMethod::tls_client()).map_err(|e| fail("TLS config", e))?;
    b.set_ca_file(path("ca.crt"))
        .map_err(|e| fail("ca.crt", e))?;
    b.set_certificate_chain_file(path("client.crt"))
        .map_err(|e| fail("client.crt", e))?;
    b.set_private_key_file(path("client.key"), SslFiletype::PEM)
        .map_err(|e| fail("client.key", e))?;
    b.check_private_key()
        .map_err(|e| fail("client.key does not match client.crt", e))?;
    b.set_verify(SslVerifyMode::PEER);
    b.set_alpn_protos(b"\x02h2")
        .map_err(|e| fail("TLS ALPN", e))?;
    Ok(b.build())
}

impl NotarySigner {
    /// Start notary-signer (memory key storage, mutual TLS) on a free
    /// loopback port and create one ECDSA P-256 key.
    pub async fn start(dir: &Path) -> Result<NotarySigner> {
        let dir: PathBuf = dir.join("notary");
        std::fs::create_dir_all(&dir).map_err(|e| fail("notary dir", e))?;
        make_certs(&dir)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| fail("finding a free port", e))?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let config = serde_json::json!({
            "server": {
                "grpc_addr": addr.to_string(),
                "tls_cert_file": dir.join("server.crt"),
                "tls_key_file": dir.join("server.key"),
                "client_ca_file": dir.join("ca.crt"),
            },
            "logging": { "level": "error" },
            "storage": { "backend": "memory" },
        });
        let config_path = dir.join("signer-config.json");
        std::fs::write(&config_path, config.to_string()).map_err(|e| fail("notary config", e))?;
        let log = std::fs::File::create(dir.join("notary-signer.log"))
            .map_err(|e| fail("notary log", e))?;
        let child = Command::new("notary-signer")
            .arg("-config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| fail("cannot start notary-signer (apt-get install notary)", e))?;
        let mut signer = NotarySigner {
            child,
            addr,
            tls: tls_connector(&dir)?,
            key_id: String::new(),
            key: *p256::ecdsa::SigningKey::from_slice(&[7u8; 32])
                .map_err(|e| fail("placeholder key", e))?
                .verifying_key(),
        };
        let end = Instant::now() + Duration::from_secs(20);
        let channel = loop {
            if let Ok(Some(status)) = signer.child.try_wait() {
                return Err(Failure(format!(
                    "notary-signer exited ({status}); see {}",
                    dir.join("notary-signer.log").display()
                )));
            }
            match signer.connect().await {
                Ok(c) => break c,
                Err(e) if Instant::now() > end => {
                    return Err(fail("notary-signer did not answer within 20 s", e));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let created = pb::key_management_client::KeyManagementClient::new(channel)
            .create_key(pb::CreateKeyRequest {
                algorithm: "ecdsa".into(),
                gun: "bench/notary".into(),
                role: "timestamp".into(),
            })
            .await
            .map_err(|e| fail("notary-signer CreateKey", e))?
            .into_inner();
        signer.key_id = created
            .key_info
            .and_then(|k| k.key_id)
            .map(|k| k.id)
            .ok_or_else(|| Failure("CreateKey answered without a key id".into()))?;
        signer.key = VerifyingKey::from_public_key_der(&created.public_key)
            .map_err(|e| fail("notary-signer's public key", e))?;
        Ok(signer)
    }

    /// One client connection (its own TCP + TLS + HTTP/2).
    pub async fn connect(&self) -> Result<Channel> {
        let tls = self.tls.clone();
        let addr = self.addr;
        Endpoint::from_static("http://notary-signer")
            .connect_with_connector(tower::service_fn(move |_| {
                let tls = tls.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    let ssl = tls
                        .configure()
                        .and_then(|c| c.into_ssl(SERVER_NAME))
                        .map_err(std::io::Error::other)?;
                    let mut stream =
                        tokio_openssl::SslStream::new(ssl, tcp).map_err(std::io::Error::other)?;
                    std::pin::Pin::new(&mut stream)
                        .connect()
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| fail("connecting to notary-signer", e))
    }

    /// `Signer.Sign` of `data`; returns r‖s.
    pub async fn sign(&self, channel: Channel, data: &[u8]) -> Result<Vec<u8>> {
        let r = pb::signer_client::SignerClient::new(channel)
            .sign(pb::SignatureRequest {
                key_id: Some(pb::KeyId {
                    id: self.key_id.clone(),
                }),
                content: data.to_vec(),
            })
            .await
            .map_err(|e| fail("notary-signer Sign", e))?;
        Ok(r.into_inner().content)
    }

    /// Check r‖s against SHA-256 of `data`.
    pub fn verify(&self, data: &[u8], rs: &[u8]) -> std::result::Result<(), String> {
        let sig = Signature::from_slice(rs).map_err(|e| e.to_string())?;
        self.key
            .verify_prehash(&sha2::Sha256::digest(data), &sig)
            .map_err(|e| e.to_string())
    }
}
