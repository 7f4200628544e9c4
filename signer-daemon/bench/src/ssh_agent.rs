//! OpenSSH's `ssh-agent` holding a P-256 key (`ssh-keygen -t ecdsa -b 256`),
//! spoken to over its socket with the agent protocol
//! (draft-miller-ssh-agent: `SSH2_AGENTC_SIGN_REQUEST` = 13, answered by
//! `SSH2_AGENT_SIGN_RESPONSE` = 14). The agent hashes the data with SHA-256
//! (ecdsa-sha2-nistp256), so each request sends the row's 32-byte digest as
//! the data and the signature is checked against SHA-256 of it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use p256::ecdsa::{Signature, VerifyingKey, signature::hazmat::PrehashVerifier};
use sha2::Digest;

use crate::load::{Failure, Result, fail};

const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;

/// A running agent with one key loaded.
pub struct Agent {
    child: Child,
    /// The agent's socket.
    pub socket: PathBuf,
    /// The public key blob (SSH wire format) the requests name.
    pub blob: Vec<u8>,
    /// The key, for verification.
    pub key: VerifyingKey,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| {
        fail(
            format!("cannot run {what} (apt-get install openssh-client)"),
            e,
        )
    })?;
    if !out.status.success() {
        return Err(Failure(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

fn read_string<'a>(b: &mut &'a [u8]) -> Result<&'a [u8]> {
    if b.len() < 4 {
        return Err(Failure("agent message: truncated string length".into()));
    }
    let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if b.len() < 4 + n {
        return Err(Failure("agent message: truncated string".into()));
    }
    let s = &b[4..4 + n];
    *b = &b[4 + n..];
    Ok(s)
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// An OpenSSH program: from `openssh_dir` when given (a current OpenSSH
/// built from source, say), else from `PATH` (Debian's openssh-client).
fn tool(openssh_dir: Option<&Path>, name: &str) -> PathBuf {
    openssh_dir.map_or_else(|| PathBuf::from(name), |d| d.join(name))
}

/// The OpenSSH version the agent comes from, as `ssh -V` prints it
/// (`OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL ...`: the part before the
/// comma), from `openssh_dir` or `PATH`.
pub fn version(openssh_dir: Option<&Path>) -> String {
    let ssh = tool(openssh_dir, "ssh");
    match crate::first_line(ssh.as_os_str(), &["-V"]) {
        Some(line) => line
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        None => format!("unknown (no output from {} -V)", ssh.display()),
    }
}

impl Agent {
    /// Start `ssh-agent -D` on a socket in `dir`, generate a P-256 key and
    /// add it; the OpenSSH programs come from `openssh_dir`, else `PATH`.
    pub fn start(dir: &Path, openssh_dir: Option<&Path>) -> Result<Agent> {
        let socket = dir.join("ssh-agent.sock");
        let keyfile = dir.join("id_ecdsa");
        run(
            Command::new(tool(openssh_dir, "ssh-keygen"))
                .args([
                    "-q", "-t", "ecdsa", "-b", "256", "-N", "", "-C", "bench", "-f",
                ])
                .arg(&keyfile),
            "ssh-keygen",
        )?;
        let public = std::fs::read_to_string(keyfile.with_extension("pub"))
            .map_err(|e| fail("reading the ssh public key", e))?;
        let b64 = public
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| Failure("malformed ssh public key file".into()))?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| fail("ssh public key base64", e))?;
        let mut b = blob.as_slice();
        let kind = read_string(&mut b)?;
        let _curve = read_string(&mut b)?;
        let q = read_string(&mut b)?;
        if kind != b"ecdsa-sha2-nistp256" {
            return Err(Failure("ssh-keygen did not make a P-256 key".into()));
        }
        let key = VerifyingKey::from_sec1_bytes(q).map_err(|e| fail("ssh key point", e))?;
        let child = Command::new(tool(openssh_dir, "ssh-agent"))
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail("cannot start ssh-agent (apt-get install openssh-client)", e))?;
        let agent = Agent {
            child,
            socket: socket.clone(),
            blob,
            key,
        };
        let end = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            if Instant::now() > end {
                return Err(Failure("ssh-agent did not open its socket in 10 s".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        run(
            Command::new(tool(openssh_dir, "ssh-add"))
                .env("SSH_AUTH_SOCK", &socket)
                .arg(&keyfile),
            "ssh-add",
        )?;
        Ok(agent)
    }

    /// One client connection.
    pub fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket).map_err(|e| fail("connecting to ssh-agent", e))
    }

    /// Sign `data` over `conn`; returns r‖s (64 bytes).
    pub fn sign(&self, conn: &mut UnixStream, data: &[u8]) -> Result<Vec<u8>> {
        let mut body = vec![SIGN_REQUEST];
        put_string(&mut body, &self.blob);
        put_string(&mut body, data);
        body.extend_from_slice(&0u32.to_be_bytes());
        let mut msg = (body.len() as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        conn.write_all(&msg)
            .map_err(|e| fail("ssh-agent write", e))?;
        let mut len = [0u8; 4];
        conn.read_exact(&mut len)
            .map_err(|e| fail("ssh-agent read", e))?;
        let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
        conn.read_exact(&mut answer)
            .map_err(|e| fail("ssh-agent read", e))?;
        if answer.first() != Some(&SIGN_RESPONSE) {
            return Err(Failure(format!(
                "ssh-agent refused to sign (answer type {:?})",
                answer.first()
            )));
        }
        let mut b = &answer[1..];
        let mut sig = read_string(&mut b)?;
        let _alg = read_string(&mut sig)?;
        let mut rs = read_string(&mut sig)?;
        let r = read_string(&mut rs)?;
        let s = read_string(&mut rs)?;
        let mut out = vec![0u8; 64];
        put_scalar(&mut out[..32], r)?;
        put_scalar(&mut out[32..], s)?;
        Ok(out)
    }

    /// Check r‖s against SHA-256 of `data`.
    pub fn verify(&self, data: &[u8], rs: &[u8]) -> std::result::Result<(), String> {
        let sig = Signature::from_slice(rs).map_err(|e| e.to_string())?;
        let h = sha2::Sha256::digest(data);
        self.key.verify_prehash(&h, &sig).map_err(|e| e.to_string())
    }
}

/// An SSH mpint (big-endian, maybe a leading zero) into a 32-byte field.
fn put_scalar(out: &mut [u8], mpint: &[u8]) -> Result<()> {
    let v = match mpint.iter().position(|&b| b != 0) {
        Some(p) => &mpint[p..],
        None => &[][..],
    };
    if v.len() > out.len() {
        return Err(Failure("ssh-agent signature scalar too long".into()));
    }
    let off = out.len() - v.len();
    out[..off].fill(0);
    out[off..].copy_from_slice(v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpints_become_fixed_width_scalars() {
        let mut out = [0xffu8; 4];
        put_scalar(&mut out, &[0x00, 0x80, 0x01]).unwrap();
        assert_eq!(out, [0, 0, 0x80, 0x01]);
        put_scalar(&mut out, &[]).unwrap();
        assert_eq!(out, [0; 4]);
        assert!(put_scalar(&mut out, &[1, 2, 3, 4, 5]).is_err());
        let mut msg = Vec::new();
        put_string(&mut msg, b"abc");
        let mut b = msg.as_slice();
        assert_eq!(read_string(&mut b).unwrap(), b"abc");
        assert!(b.is_empty());
        assert!(read_string(&mut &[0, 0, 0, 9, 1][..]).is_err());
    }

    /// The version comes from `ssh -V` of the directory given (stderr, up
    /// to the comma); a directory without `ssh` says so instead of
    /// guessing.
    #[test]
    fn the_version_is_what_ssh_v_of_that_directory_prints() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join("ssh");
        std::fs::write(
            &ssh,
            "#!/bin/sh\necho 'OpenSSH_10.3p1, OpenSSL 3.0.19 27 Jan 2026' >&2\n",
        )
        .unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(version(Some(dir.path())), "OpenSSH_10.3p1");
        let empty = tempfile::tempdir().unwrap();
        let v = version(Some(empty.path()));
        assert!(v.starts_with("unknown ("), "{v}");
        assert_eq!(tool(None, "ssh-agent"), PathBuf::from("ssh-agent"));
        assert_eq!(
            tool(Some(dir.path()), "ssh-add"),
            dir.path().join("ssh-add")
        );
    }
}
