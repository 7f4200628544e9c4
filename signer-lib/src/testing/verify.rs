//! Independent signature verification: the `p256`/`p384` crates for ECDSA,
//! the `rsa` crate's typed verifiers and `ed25519-dalek` (through other entry
//! points than the signing path's [`PublicKey::verify`]), and the `openssl`
//! command, which shares no code with this crate.

use p256::pkcs8::DecodePublicKey;
use signature::Verifier;
use signature::hazmat::PrehashVerifier;

use crate::model::{Algorithm, HashAlgorithm, PublicKey, SignInput, SignatureScheme};

/// Why a signature did not verify.
#[derive(Debug)]
pub struct VerifyFailure(pub String);

impl std::fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Verify a DER ECDSA signature over a prehashed digest.
pub fn verify_prehash(
    public_key: &PublicKey,
    digest: &[u8],
    der_signature: &[u8],
) -> Result<(), VerifyFailure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| VerifyFailure(format!("{what}: {e}"));
    match public_key.algorithm {
        Algorithm::EccP256 => {
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&public_key.spki_der)
                .map_err(|e| fail("P-256 public key", &e))?;
            let sig = p256::ecdsa::DerSignature::try_from(der_signature)
                .map_err(|e| fail("DER signature", &e))?;
            vk.verify_prehash(digest, &sig)
                .map_err(|e| fail("P-256 verification", &e))
        }
        Algorithm::EccP384 => {
            let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&public_key.spki_der)
                .map_err(|e| fail("P-384 public key", &e))?;
            let sig = p384::ecdsa::DerSignature::try_from(der_signature)
                .map_err(|e| fail("DER signature", &e))?;
            vk.verify_prehash(digest, &sig)
                .map_err(|e| fail("P-384 verification", &e))
        }
        other => Err(VerifyFailure(format!("no verifier for {other}"))),
    }
}

/// Verify a DER ECDSA signature over a whole message with the curve's own
/// hash (SHA-256 for P-256, SHA-384 for P-384), hashing it here.
pub fn verify_message(
    public_key: &PublicKey,
    message: &[u8],
    der_signature: &[u8],
) -> Result<(), VerifyFailure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| VerifyFailure(format!("{what}: {e}"));
    match public_key.algorithm {
        Algorithm::EccP256 => {
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&public_key.spki_der)
                .map_err(|e| fail("P-256 public key", &e))?;
            let sig = p256::ecdsa::DerSignature::try_from(der_signature)
                .map_err(|e| fail("DER signature", &e))?;
            vk.verify(message, &sig)
                .map_err(|e| fail("P-256 verification", &e))
        }
        Algorithm::EccP384 => {
            let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&public_key.spki_der)
                .map_err(|e| fail("P-384 public key", &e))?;
            let sig = p384::ecdsa::DerSignature::try_from(der_signature)
                .map_err(|e| fail("DER signature", &e))?;
            vk.verify(message, &sig)
                .map_err(|e| fail("P-384 verification", &e))
        }
        other => Err(VerifyFailure(format!("no verifier for {other}"))),
    }
}

/// Assert that `der_signature` is a valid signature of `message` hashed with
/// `hash`, by `public_key`; also check the message-level verifier when the
/// hash is the curve's own.
pub fn assert_signature(
    public_key: &PublicKey,
    hash: HashAlgorithm,
    message: &[u8],
    der_signature: &[u8],
) {
    let digest = hash.digest(message);
    if let Err(e) = verify_prehash(public_key, &digest, der_signature) {
        panic!(
            "{} signature over a {hash} digest does not verify: {e}",
            public_key.algorithm
        );
    }
    if hash == HashAlgorithm::preferred_for(public_key.algorithm) {
        if let Err(e) = verify_message(public_key, message, der_signature) {
            panic!(
                "{} signature does not verify over the message: {e}",
                public_key.algorithm
            );
        }
    }
    // A signature must not verify for another message.
    let mut other = message.to_vec();
    other.push(0);
    assert!(
        verify_prehash(public_key, &hash.digest(&other), der_signature).is_err(),
        "the verifier accepted a signature for a different message"
    );
}

/// Verify a signature of any scheme with RustCrypto's typed verifiers,
/// through other entry points than [`PublicKey::verify`] (which the signing
/// layers use): the `rsa` crate's `pkcs1v15::VerifyingKey` / `pss::VerifyingKey`
/// (`PrehashVerifier`), `ed25519_dalek::VerifyingKey::verify` from the raw
/// key bytes, and [`verify_prehash`] for ECDSA.
pub fn verify_scheme(
    public_key: &PublicKey,
    scheme: SignatureScheme,
    input: &SignInput<'_>,
    signature: &[u8],
) -> Result<(), VerifyFailure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| VerifyFailure(format!("{what}: {e}"));
    match (scheme, input) {
        (SignatureScheme::Ecdsa, SignInput::Digest { hash, digest }) => {
            let card_input = crate::model::ecdsa_card_input(public_key.algorithm, *hash, digest)
                .map_err(|e| fail("ECDSA input", &e))?;
            verify_prehash(public_key, &card_input, signature)
        }
        (
            SignatureScheme::RsaPkcs1v15 | SignatureScheme::RsaPss,
            SignInput::Digest { hash, digest },
        ) => {
            let key = rsa::RsaPublicKey::from_public_key_der(&public_key.spki_der)
                .map_err(|e| fail("RSA public key", &e))?;
            macro_rules! check {
                ($module:ident, $d:ty) => {{
                    let vk = rsa::$module::VerifyingKey::<$d>::new(key);
                    let sig = rsa::$module::Signature::try_from(signature)
                        .map_err(|e| fail("RSA signature", &e))?;
                    vk.verify_prehash(digest, &sig)
                        .map_err(|e| fail(concat!("RSA ", stringify!($module)), &e))
                }};
            }
            match (scheme, hash) {
                (SignatureScheme::RsaPss, HashAlgorithm::Sha256) => check!(pss, sha2::Sha256),
                (SignatureScheme::RsaPss, HashAlgorithm::Sha384) => check!(pss, sha2::Sha384),
                (SignatureScheme::RsaPss, HashAlgorithm::Sha512) => check!(pss, sha2::Sha512),
                (_, HashAlgorithm::Sha256) => check!(pkcs1v15, sha2::Sha256),
                (_, HashAlgorithm::Sha384) => check!(pkcs1v15, sha2::Sha384),
                (_, HashAlgorithm::Sha512) => check!(pkcs1v15, sha2::Sha512),
            }
        }
        (SignatureScheme::Ed25519, SignInput::Message(message)) => {
            let raw = public_key
                .curve25519_bytes()
                .map_err(|e| fail("Ed25519 public key", &e))?;
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&raw)
                .map_err(|e| fail("Ed25519 public key", &e))?;
            let sig = ed25519_dalek::Signature::from_slice(signature)
                .map_err(|e| fail("Ed25519 signature", &e))?;
            vk.verify(message, &sig)
                .map_err(|e| fail("Ed25519 verification", &e))
        }
        (scheme, _) => Err(VerifyFailure(format!(
            "{scheme} does not sign this kind of input"
        ))),
    }
}

/// Verify a signature with the `openssl` command (`openssl pkeyutl
/// -verify`): a verifier that shares no code with this crate. Panics when
/// `openssl` cannot be run (tests never skip silently).
pub fn verify_with_openssl(
    public_key: &PublicKey,
    scheme: SignatureScheme,
    input: &SignInput<'_>,
    signature: &[u8],
) -> Result<(), VerifyFailure> {
    let dir = tempfile::tempdir().map_err(|e| VerifyFailure(format!("temp dir: {e}")))?;
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).map(|()| path)
    };
    let io = |e: std::io::Error| VerifyFailure(format!("writing openssl inputs: {e}"));
    let pem = public_key
        .to_pem()
        .map_err(|e| VerifyFailure(format!("PEM: {e}")))?;
    let key = write("key.pem", pem.as_bytes()).map_err(io)?;
    let sig = write("sig", signature).map_err(io)?;
    let data = write("data", input.bytes()).map_err(io)?;
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(&key)
        .arg("-sigfile")
        .arg(&sig)
        .arg("-in")
        .arg(&data);
    if let Some(hash) = input.hash() {
        cmd.args(["-pkeyopt", &format!("digest:{}", hash.name())]);
    }
    match scheme {
        SignatureScheme::RsaPkcs1v15 => {
            cmd.args(["-pkeyopt", "rsa_padding_mode:pkcs1"]);
        }
        SignatureScheme::RsaPss => {
            cmd.args([
                "-pkeyopt",
                "rsa_padding_mode:pss",
                "-pkeyopt",
                "rsa_pss_saltlen:digest",
            ]);
            if let Some(hash) = input.hash() {
                cmd.args(["-pkeyopt", &format!("rsa_mgf1_md:{}", hash.name())]);
            }
        }
        SignatureScheme::Ed25519 => {
            cmd.arg("-rawin");
        }
        SignatureScheme::Ecdsa => {}
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run `openssl` (install it: tests/scripts/install-deps.sh): {e}"),
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(VerifyFailure(format!(
            "openssl pkeyutl -verify: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Assert that `signature` is a valid `scheme` signature over `input` by
/// `public_key` for RustCrypto ([`verify_scheme`]) and OpenSSL
/// ([`verify_with_openssl`]), and that it does not verify for another input
/// (so the check can fail).
pub fn assert_scheme_signature(
    public_key: &PublicKey,
    scheme: SignatureScheme,
    input: &SignInput<'_>,
    signature: &[u8],
) {
    let what = format!("{} {scheme} signature", public_key.algorithm);
    if let Err(e) = verify_scheme(public_key, scheme, input, signature) {
        panic!("{what} does not verify with RustCrypto: {e}");
    }
    if let Err(e) = verify_with_openssl(public_key, scheme, input, signature) {
        panic!("{what} does not verify with openssl: {e}");
    }
    let mut other = input.bytes().to_vec();
    other[0] ^= 1;
    let other = match input {
        SignInput::Digest { hash, .. } => SignInput::Digest {
            hash: *hash,
            digest: &other,
        },
        SignInput::Message(_) => SignInput::Message(&other),
    };
    assert!(
        verify_scheme(public_key, scheme, &other, signature).is_err(),
        "{what}: RustCrypto accepted it for another input"
    );
    assert!(
        verify_with_openssl(public_key, scheme, &other, signature).is_err(),
        "{what}: openssl accepted it for another input"
    );
}
