//! The host-side RSA padding (`signer_lib::piv::sign_input`) against
//! signatures made by OpenSSL (`testdata/rsa/padding-vectors.txt`) and
//! against the `rsa` crate's own signer and verifier; the same signatures
//! through [`PublicKey::verify`], the check every signature passes before
//! release.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use signature::hazmat::PrehashSigner;

use signer_lib::model::{PublicKey, SignInput, SignatureScheme};
use signer_lib::piv::sign_input::{card_input, emsa_pkcs1v15_encode, emsa_pss_encode, pss_salt};
use signer_lib::testing::verify::{assert_scheme_signature, verify_with_openssl};
use signer_lib::{Algorithm, Error, HashAlgorithm, SlotId};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/rsa");

fn private_key(bits: usize) -> rsa::RsaPrivateKey {
    let path = format!("{DATA}/rsa-{bits}.pem");
    let pem = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn public_key(key: &rsa::RsaPrivateKey) -> PublicKey {
    let der = key.to_public_key().to_public_key_der().unwrap();
    PublicKey::from_spki_der(der.as_bytes()).unwrap()
}

fn raw_public(key: &rsa::RsaPrivateKey, signature: &[u8]) -> Vec<u8> {
    let k = key.size();
    let s = rsa::BoxedUint::from_be_slice_vartime(signature);
    let m = rsa::hazmat::rsa_encrypt(&key.to_public_key(), &s).unwrap();
    let bytes = m.to_be_bytes_trimmed_vartime();
    let mut out = vec![0u8; k - bytes.len()];
    out.extend_from_slice(&bytes);
    out
}

fn raw_private(key: &rsa::RsaPrivateKey, em: &[u8]) -> Vec<u8> {
    let c = rsa::BoxedUint::from_be_slice(em, key.n().bits_precision()).unwrap();
    let s = rsa::hazmat::rsa_decrypt_and_check(key, None::<&mut getrandom::SysRng>, &c).unwrap();
    let bytes = s.to_be_bytes_trimmed_vartime();
    let mut out = vec![0u8; key.size() - bytes.len()];
    out.extend_from_slice(&bytes);
    out
}

struct Vector {
    scheme: SignatureScheme,
    hash: HashAlgorithm,
    bits: usize,
    message: String,
    digest: Vec<u8>,
    signature: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    let path = format!("{DATA}/padding-vectors.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let out: Vec<Vector> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 6, "{l}");
            Vector {
                scheme: match f[0] {
                    "pkcs1v15" => SignatureScheme::RsaPkcs1v15,
                    "pss" => SignatureScheme::RsaPss,
                    other => panic!("scheme {other}"),
                },
                hash: f[1].parse().unwrap(),
                bits: f[2].parse().unwrap(),
                message: f[3].to_string(),
                digest: hex::decode(f[4]).unwrap(),
                signature: hex::decode(f[5]).unwrap(),
            }
        })
        .collect();
    assert_eq!(out.len(), 11, "every vector of the file is read");
    out
}

/// OpenSSL's signatures decode (raw public operation) to exactly the block
/// our encoders build: PKCS#1 v1.5 byte for byte; PSS byte for byte with
/// the salt OpenSSL chose (recovered from the block). They verify with
/// `PublicKey::verify`, and a changed digest does not.
#[test]
fn encoders_reproduce_openssl_signatures() {
    for v in vectors() {
        let key = private_key(v.bits);
        let public = public_key(&key);
        let name = format!("{} {} {}", v.scheme, v.hash, v.bits);
        assert_eq!(v.hash.digest(v.message.as_bytes()), v.digest, "{name}");
        let em = raw_public(&key, &v.signature);
        let ours = match v.scheme {
            SignatureScheme::RsaPkcs1v15 => {
                emsa_pkcs1v15_encode(v.hash, &v.digest, v.bits / 8).unwrap()
            }
            _ => {
                let salt = pss_salt(v.hash, &em, v.bits - 1, v.hash.digest_len())
                    .unwrap_or_else(|| panic!("{name}: not a PSS block"));
                emsa_pss_encode(v.hash, &v.digest, &salt, v.bits - 1).unwrap()
            }
        };
        assert_eq!(
            hex::encode(&*ours),
            hex::encode(&em),
            "{name}: encoded block"
        );
        let input = SignInput::Digest {
            hash: v.hash,
            digest: &v.digest,
        };
        public
            .verify(v.scheme, &input, &v.signature)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut other = v.digest.clone();
        other[0] ^= 0x80;
        let other = SignInput::Digest {
            hash: v.hash,
            digest: &other,
        };
        assert!(
            public.verify(v.scheme, &other, &v.signature).is_err(),
            "{name}"
        );
        // The other scheme does not accept it either.
        let swapped = match v.scheme {
            SignatureScheme::RsaPss => SignatureScheme::RsaPkcs1v15,
            _ => SignatureScheme::RsaPss,
        };
        assert!(
            public.verify(swapped, &input, &v.signature).is_err(),
            "{name}"
        );
    }
}

/// Our PKCS#1 v1.5 block through the raw private operation is byte for byte
/// the `rsa` crate's own PKCS#1 v1.5 signature; our PSS blocks (fresh salt)
/// verify with the `rsa` crate's PSS verifier and with openssl, for every
/// key size a YubiKey has.
#[test]
fn padded_blocks_signed_raw_match_the_rsa_crate() {
    for bits in [1024, 2048, 3072, 4096] {
        let key = private_key(bits);
        let public = public_key(&key);
        assert_eq!(public.algorithm.rsa_bits(), Some(bits));
        for hash in [
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
        ] {
            let digest = hash.digest(format!("message {bits} {hash}").as_bytes());
            let input = SignInput::Digest {
                hash,
                digest: &digest,
            };
            let block = card_input(
                SlotId::Signature,
                public.algorithm,
                SignatureScheme::RsaPkcs1v15,
                &input,
            )
            .unwrap();
            let ours = raw_private(&key, &block);
            let theirs: rsa::pkcs1v15::Signature = match hash {
                HashAlgorithm::Sha256 => {
                    rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone())
                        .sign_prehash(&digest)
                        .unwrap()
                }
                HashAlgorithm::Sha384 => {
                    rsa::pkcs1v15::SigningKey::<sha2::Sha384>::new(key.clone())
                        .sign_prehash(&digest)
                        .unwrap()
                }
                HashAlgorithm::Sha512 => {
                    rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(key.clone())
                        .sign_prehash(&digest)
                        .unwrap()
                }
            };
            assert_eq!(
                hex::encode(&ours),
                hex::encode(Box::<[u8]>::from(theirs)),
                "PKCS#1 v1.5 {bits} {hash}"
            );
            assert_scheme_signature(&public, SignatureScheme::RsaPkcs1v15, &input, &ours);

            if bits == 1024 && hash == HashAlgorithm::Sha512 {
                assert!(matches!(
                    card_input(
                        SlotId::Signature,
                        public.algorithm,
                        SignatureScheme::RsaPss,
                        &input
                    ),
                    Err(Error::HashTooLongForKey { .. })
                ));
                continue;
            }
            let a = card_input(
                SlotId::Signature,
                public.algorithm,
                SignatureScheme::RsaPss,
                &input,
            )
            .unwrap();
            let b = card_input(
                SlotId::Signature,
                public.algorithm,
                SignatureScheme::RsaPss,
                &input,
            )
            .unwrap();
            assert_ne!(*a, *b, "PSS draws a fresh salt each time");
            let sig = raw_private(&key, &a);
            assert_scheme_signature(&public, SignatureScheme::RsaPss, &input, &sig);
            public
                .verify(SignatureScheme::RsaPss, &input, &sig)
                .unwrap();
        }
    }
}

/// Malformed inputs are refused by the encoders' front door with typed
/// errors, and openssl really is the verifier it claims to be (it rejects a
/// corrupted signature).
#[test]
fn refusals_are_typed() {
    let alg = Algorithm::Rsa2048;
    let d = [1u8; 32];
    let slot = SlotId::Signature;
    let digest = |hash, digest| SignInput::Digest { hash, digest };
    assert!(matches!(
        card_input(
            slot,
            alg,
            SignatureScheme::RsaPss,
            &digest(HashAlgorithm::Sha384, &d)
        ),
        Err(Error::BadDigestLength {
            expected: 48,
            actual: 32,
            ..
        })
    ));
    assert!(matches!(
        card_input(
            slot,
            alg,
            SignatureScheme::RsaPkcs1v15,
            &SignInput::Message(b"m")
        ),
        Err(Error::DigestExpected { .. })
    ));
    assert!(matches!(
        card_input(
            slot,
            alg,
            SignatureScheme::Ecdsa,
            &digest(HashAlgorithm::Sha256, &d)
        ),
        Err(Error::SchemeMismatch { .. })
    ));
    assert!(matches!(
        card_input(
            slot,
            Algorithm::EccP256,
            SignatureScheme::RsaPss,
            &digest(HashAlgorithm::Sha256, &d)
        ),
        Err(Error::SchemeMismatch { .. })
    ));
    assert!(matches!(
        card_input(
            slot,
            Algorithm::Ed25519,
            SignatureScheme::Ed25519,
            &digest(HashAlgorithm::Sha512, &[0; 64])
        ),
        Err(Error::MessageExpected { .. })
    ));
    assert!(matches!(
        card_input(
            slot,
            Algorithm::X25519,
            SignatureScheme::Ed25519,
            &SignInput::Message(b"m")
        ),
        Err(Error::KeyCannotSign { .. })
    ));
    assert!(matches!(
        card_input(
            slot,
            Algorithm::Ed25519,
            SignatureScheme::Ed25519,
            &SignInput::Message(&[0; 3001])
        ),
        Err(Error::TooLarge {
            size: 3001,
            limit: 3000,
            ..
        })
    ));
    assert_eq!(
        *card_input(
            slot,
            Algorithm::Ed25519,
            SignatureScheme::Ed25519,
            &SignInput::Message(&[7; 3000])
        )
        .unwrap(),
        vec![7u8; 3000],
        "Ed25519: the card signs the message itself"
    );

    let v = &vectors()[0];
    let public = public_key(&private_key(v.bits));
    let input = digest(v.hash, &v.digest);
    verify_with_openssl(&public, v.scheme, &input, &v.signature).unwrap();
    let mut bad = v.signature.clone();
    bad[10] ^= 1;
    assert!(verify_with_openssl(&public, v.scheme, &input, &bad).is_err());
    assert!(public.verify(v.scheme, &input, &bad).is_err());
    assert!(matches!(
        public.verify(v.scheme, &input, &v.signature[1..]),
        Err(Error::Crypto { .. })
    ));
}

/// SubjectPublicKeyInfo round trips: algorithm detection, key ids, raw
/// Ed25519/X25519 bytes, RSA from the PIV template's components.
#[test]
fn public_keys_from_spki() {
    for bits in [1024, 2048, 3072, 4096] {
        let key = private_key(bits);
        let public = public_key(&key);
        let from_parts = PublicKey::from_rsa_components(&key.n_bytes(), &key.e_bytes()).unwrap();
        assert_eq!(from_parts, public);
        assert_eq!(
            public.key_id(),
            signer_lib::model::key_id_of(&public.spki_der)
        );
    }
    let pem = std::fs::read_to_string(format!("{DATA}/ed25519.pem")).unwrap();
    let sk =
        <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_pem(&pem)
            .unwrap();
    let raw = sk.verifying_key().to_bytes();
    let public = PublicKey::from_ed25519_bytes(&raw).unwrap();
    assert_eq!(public.algorithm, Algorithm::Ed25519);
    assert_eq!(PublicKey::from_spki_der(&public.spki_der).unwrap(), public);
    assert_eq!(public.curve25519_bytes().unwrap(), raw);
    // The SPKI openssl writes for the key is the one we build.
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(format!("{DATA}/ed25519.pem"))
        .output()
        .expect("openssl must be installed (tests/scripts/install-deps.sh)");
    assert!(out.status.success());
    assert_eq!(out.stdout, public.spki_der);
    use ed25519_dalek::Signer;
    let message = b"root.json canonical bytes";
    let sig = sk.sign(message).to_bytes();
    assert_scheme_signature(
        &public,
        SignatureScheme::Ed25519,
        &SignInput::Message(message),
        &sig,
    );

    let x = PublicKey::from_x25519_bytes(&[9u8; 32]).unwrap();
    assert_eq!(x.algorithm, Algorithm::X25519);
    assert_eq!(PublicKey::from_spki_der(&x.spki_der).unwrap(), x);
    assert_eq!(x.curve25519_bytes().unwrap(), [9u8; 32]);
    assert!(matches!(
        x.verify(
            SignatureScheme::Ed25519,
            &SignInput::Message(b"m"),
            &[0; 64]
        ),
        Err(Error::KeyCannotSign { .. })
    ));
    assert!(PublicKey::from_spki_der(b"\x30\x03\x02\x01\x00").is_err());
    assert!(PublicKey::from_x25519_bytes(&[1u8; 31]).is_err());
}
