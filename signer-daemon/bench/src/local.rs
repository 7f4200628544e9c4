//! Rows without a server: the ECDSA primitive the tree uses (RustCrypto
//! p256/p384) and OpenSSL's P-256 next to it, the emulated token called in-process, and one `fdatasync` on
//! the audit log's filesystem (the floor of a durable audit line).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use p256::ecdsa::signature::hazmat::PrehashSigner;
use sha2::Digest;
use signer_lib::emulator::{EmulatedToken, InitOptions};
use signer_lib::{
    Algorithm, HashAlgorithm, KeyInfo, ManagementKey, ManagementKeyAlgorithm, PinPolicy, SlotId,
    Token, TouchPolicy,
};

use crate::load::{Failure, Result, Run, Verifier, digest, fail, run_threads};

/// The SHA-384 digest of request `i`'s message (P-384 rows).
pub fn digest384(i: usize) -> Vec<u8> {
    sha2::Sha384::digest(format!("signer-bench request {i}").as_bytes()).to_vec()
}

fn random_scalar<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| fail("getrandom", e))?;
    Ok(b)
}

/// RustCrypto's P-256 `sign_prehash`, one thread.
pub fn primitive_p256(total: usize) -> Result<(Run, Verifier)> {
    let key = p256::ecdsa::SigningKey::from_slice(&random_scalar::<32>()?)
        .map_err(|e| fail("P-256 key", e))?;
    let vk = *key.verifying_key();
    let run = run_threads(
        1,
        total,
        |_| Ok(key.clone()),
        |k, i| {
            let sig: p256::ecdsa::Signature = k
                .sign_prehash(&digest(i))
                .map_err(|e| fail("P-256 sign", e))?;
            Ok(sig.to_bytes().to_vec())
        },
    )?;
    let verify = move |i: usize, rs: &[u8]| {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let s = p256::ecdsa::Signature::from_slice(rs).map_err(|e| e.to_string())?;
        vk.verify_prehash(&digest(i), &s).map_err(|e| e.to_string())
    };
    Ok((run, Box::new(verify)))
}

/// OpenSSL's P-256 ECDSA (`ECDSA_do_sign` through the `openssl` crate, the
/// system libcrypto with its assembly P-256), one thread: what the RustCrypto
/// primitive is measured against in the same run. Verified with RustCrypto.
pub fn openssl_p256(total: usize) -> Result<(Run, Verifier)> {
    use openssl::bn::BigNumContext;
    use openssl::ec::{EcGroup, EcKey, PointConversionForm};
    use openssl::nid::Nid;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(|e| fail("P-256", e))?;
    let key = EcKey::generate(&group).map_err(|e| fail("OpenSSL P-256 key", e))?;
    let mut ctx = BigNumContext::new().map_err(|e| fail("BN_CTX", e))?;
    let sec1 = key
        .public_key()
        .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx)
        .map_err(|e| fail("OpenSSL public key", e))?;
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
        .map_err(|e| fail("OpenSSL public key", e))?;
    let run = run_threads(
        1,
        total,
        |_| Ok(key.clone()),
        |k, i| {
            let sig = openssl::ecdsa::EcdsaSig::sign(&digest(i), k)
                .map_err(|e| fail("OpenSSL P-256 sign", e))?;
            let mut rs = sig.r().to_vec_padded(32).map_err(|e| fail("r", e))?;
            rs.extend(sig.s().to_vec_padded(32).map_err(|e| fail("s", e))?);
            Ok(rs)
        },
    )?;
    let verify = move |i: usize, rs: &[u8]| {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let s = p256::ecdsa::Signature::from_slice(rs).map_err(|e| e.to_string())?;
        vk.verify_prehash(&digest(i), &s).map_err(|e| e.to_string())
    };
    Ok((run, Box::new(verify)))
}

/// RustCrypto's P-384 `sign_prehash`, one thread.
pub fn primitive_p384(total: usize) -> Result<(Run, Verifier)> {
    let key = p384::ecdsa::SigningKey::from_slice(&random_scalar::<48>()?)
        .map_err(|e| fail("P-384 key", e))?;
    let vk = *key.verifying_key();
    let run = run_threads(
        1,
        total,
        |_| Ok(key.clone()),
        |k, i| {
            let sig: p384::ecdsa::Signature = k
                .sign_prehash(&digest384(i))
                .map_err(|e| fail("P-384 sign", e))?;
            Ok(sig.to_bytes().to_vec())
        },
    )?;
    let verify = move |i: usize, rs: &[u8]| {
        use p384::ecdsa::signature::hazmat::PrehashVerifier;
        let s = p384::ecdsa::Signature::from_slice(rs).map_err(|e| e.to_string())?;
        vk.verify_prehash(&digest384(i), &s)
            .map_err(|e| e.to_string())
    };
    Ok((run, Box::new(verify)))
}

/// The emulated token in-process: `Token::sign_digest` on a fresh token
/// with a key of `algorithm` in 9c (PIN never, touch never), one thread.
pub fn emulated(dir: &Path, algorithm: Algorithm, total: usize) -> Result<(Run, Verifier)> {
    let path = dir.join(format!("inprocess-{algorithm:?}.state"));
    let _ = std::fs::remove_file(&path);
    let mut token = EmulatedToken::init(&path, &InitOptions::default())
        .map_err(|e| fail("emulated init", e))?;
    let mgmt = ManagementKey::default_for(ManagementKeyAlgorithm::Aes192)
        .map_err(|e| fail("management key", e))?;
    token
        .authenticate(&mgmt)
        .map_err(|e| fail("authenticate", e))?;
    let key: KeyInfo = token
        .generate_key(
            SlotId::Signature,
            algorithm,
            PinPolicy::Never,
            TouchPolicy::Never,
        )
        .map_err(|e| fail("generate_key", e))?;
    let (hash, dig): (HashAlgorithm, fn(usize) -> Vec<u8>) = match algorithm {
        Algorithm::EccP384 => (HashAlgorithm::Sha384, digest384),
        _ => (HashAlgorithm::Sha256, |i| digest(i).to_vec()),
    };
    let token = std::sync::Mutex::new(Some(token));
    let run = run_threads(
        1,
        total,
        |_| {
            token
                .lock()
                .ok()
                .and_then(|mut t| t.take())
                .ok_or_else(|| Failure("the token was taken twice".into()))
        },
        |t, i| {
            t.sign_digest(SlotId::Signature, hash, &dig(i))
                .map_err(|e| fail("emulated sign", e))
        },
    )?;
    let public = key.public_key.clone();
    let verify = move |i: usize, der: &[u8]| {
        public
            .verify_prehash(&dig(i), der)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    Ok((run, Box::new(verify)))
}

/// `write(2)` of one audit-sized line plus `fdatasync(2)`, `n` times, on a
/// file in `dir`: the latencies.
pub fn fdatasync(dir: &Path, n: usize) -> Result<Vec<Duration>> {
    let path = dir.join("fdatasync-probe.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| fail(format!("opening {}", path.display()), e))?;
    let line = [b'x'; 400];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&line).map_err(|e| fail("write", e))?;
        f.sync_data().map_err(|e| fail("fdatasync", e))?;
        out.push(t.elapsed());
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(out)
}
