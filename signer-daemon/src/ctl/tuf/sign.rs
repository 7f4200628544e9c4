//! Signing metadata, without I/O: [`plan`] checks the file and the key and
//! says what to hash; [`apply`] checks the token's signature and writes it in.

use std::time::SystemTime;

use super::error::TufError;
use super::key::{Scheme, TufKey};
use super::metadata::{Metadata, Role};

/// What the caller allows.
#[derive(Clone, Copy, Debug)]
pub struct SignOptions<'a> {
    /// The time `expires` is compared with.
    pub now: SystemTime,
    /// Sign even with a key the metadata does not list, or an expired file.
    pub force: bool,
    /// The trusted root: for root metadata, the previous root (its root
    /// keys may sign the new root, as rotation requires); for other roles,
    /// the root that lists the role's keys.
    pub trusted_root: Option<&'a Metadata>,
}

/// A checked signing request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The TUF key id the signature is filed under.
    pub keyid: String,
    /// The key's scheme.
    pub scheme: Scheme,
    /// What the token signs: the scheme's digest of the canonical bytes of
    /// `signed`, or for Ed25519 the canonical bytes themselves
    /// ([`Scheme::token_input`]).
    pub payload: Vec<u8>,
    /// What a person should know (a forced signature, an unchecked key).
    pub notes: Vec<String>,
}

/// Check that `key` may sign `md` and compute the digest to sign.
pub fn plan(md: &Metadata, key: &TufKey, opts: &SignOptions<'_>) -> Result<Plan, TufError> {
    let scheme = key.scheme().ok_or_else(|| TufError::BadKey {
        reason: format!("the token key's scheme {:?} is not supported", key.scheme),
    })?;
    let mut keyid = key.keyid();
    let mut notes = Vec::new();
    if let Some(trusted) = opts.trusted_root
        && trusted.role != Role::Root
    {
        return Err(TufError::NotRoot {
            path: "(trusted root)".into(),
            role: trusted.role.to_string(),
        });
    }
    let role = md.role.name();
    // A root made by another tool may list the same public key under
    // another key id (older go-tuf and python-tuf hashed more fields): the
    // signature must be filed under the id the root uses.
    let own = if md.role == Role::Root {
        md.root.as_ref()
    } else {
        None
    };
    let trusted_keys = opts.trusted_root.and_then(|t| t.root.as_ref());
    if let Some(found) = own
        .into_iter()
        .chain(trusted_keys)
        .find_map(|r| r.find(role, key))
        && found != keyid
    {
        notes.push(format!(
            "the root lists this key under key id {found} (securesystemslib computes {keyid}): the signature is filed under {found}"
        ));
        keyid = found;
    }
    let listed: Result<(), String> = match (md.role, &md.root, opts.trusted_root) {
        (Role::Root, Some(own), trusted) => own.lists(role, &keyid, key).or_else(|own_reason| {
            match trusted.and_then(|t| t.root.as_ref()) {
                Some(prev) => prev.lists(role, &keyid, key).map_err(|prev_reason| {
                    format!(
                        "in this root: {own_reason}; in the previous root (--root): {prev_reason}"
                    )
                }),
                None => Err(own_reason),
            }
        }),
        (_, _, Some(t)) => match &t.root {
            Some(r) => r
                .lists(role, &keyid, key)
                .map_err(|e| format!("in the root (--root): {e}")),
            None => Err("the --root file has no keys".into()),
        },
        (_, _, None) => {
            notes.push(format!(
                "{role} metadata: the key was not checked against a root (give --root ROOT.json to check it)"
            ));
            Ok(())
        }
    };
    if let Err(reason) = listed {
        if !opts.force {
            return Err(TufError::KeyNotListed {
                keyid,
                role: role.into(),
                reason,
            });
        }
        notes.push(format!(
            "--force: signing with key {keyid}, not listed for the {role} role ({reason}); its signature will not count"
        ));
    }
    if md.expires_at <= opts.now {
        if !opts.force {
            return Err(TufError::Expired {
                expires: md.expires.clone(),
            });
        }
        notes.push(format!(
            "--force: signing metadata that expired at {}",
            md.expires
        ));
    }
    Ok(Plan {
        payload: scheme.token_input(&md.canonical),
        keyid,
        scheme,
        notes,
    })
}

/// Check the token's signature over the canonical bytes (RustCrypto,
/// independent of the daemon; ECDSA DER, RSA and Ed25519 raw bytes) and
/// return the file with it filed under the key's id.
pub fn apply(
    md: &Metadata,
    key: &TufKey,
    plan: &Plan,
    signature: &[u8],
) -> Result<Vec<u8>, TufError> {
    let sig = hex::encode(signature);
    key.verify(&md.canonical, &sig)
        .map_err(|reason| TufError::SignatureCheck { reason })?;
    Ok(md.with_signature(&plan.keyid, &sig))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ctl::tuf::metadata::tests::root_text;
    use p256::pkcs8::EncodePublicKey;
    use signature::hazmat::PrehashSigner;
    use std::time::Duration;

    pub(crate) fn key(seed: u8) -> (p256::ecdsa::SigningKey, TufKey) {
        let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).expect("key");
        let der = sk.verifying_key().to_public_key_der().expect("spki");
        (
            sk,
            TufKey::from_spki(Scheme::P256, der.as_bytes()).expect("tuf key"),
        )
    }

    /// Sign as the token would: ECDSA over the plan's digest.
    pub(crate) fn token_sign(sk: &p256::ecdsa::SigningKey, plan: &Plan) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&plan.payload).expect("sign");
        sig.to_der().as_bytes().to_vec()
    }

    fn opts(force: bool) -> SignOptions<'static> {
        SignOptions {
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            force,
            trusted_root: None,
        }
    }

    #[test]
    fn a_listed_key_signs_and_the_signature_verifies_over_the_canonical_bytes() {
        let (sk, k) = key(1);
        let md = Metadata::parse(
            root_text(&[(k.keyid(), k.clone())], 1, "2030-01-01T00:00:00Z").as_bytes(),
        )
        .expect("root");
        let p = plan(&md, &k, &opts(false)).expect("plan");
        assert_eq!(p.payload, Scheme::P256.digest(&md.canonical));
        assert!(p.notes.is_empty());
        let out = apply(&md, &k, &p, &token_sign(&sk, &p)).expect("apply");
        let signed = Metadata::parse(&out).expect("parses");
        let s = signed.signature(&k.keyid()).expect("signature");
        assert!(k.verify(&signed.canonical, &s.sig).is_ok());
        // A signature by another key is refused before anything is written.
        let (other, _) = key(2);
        let e = apply(&md, &k, &p, &token_sign(&other, &p)).expect_err("wrong key");
        assert!(matches!(e, TufError::SignatureCheck { .. }), "{e}");
    }

    #[test]
    fn unlisted_key_and_expired_file_are_refused_unless_forced() {
        let (_, a) = key(1);
        let (_, b) = key(2);
        let md = Metadata::parse(
            root_text(&[(a.keyid(), a.clone())], 1, "2030-01-01T00:00:00Z").as_bytes(),
        )
        .expect("root");
        let e = plan(&md, &b, &opts(false)).expect_err("unlisted");
        assert!(
            e.to_string().contains("is not listed for the root role"),
            "{e}"
        );
        assert!(e.to_string().contains("--force"), "{e}");
        let p = plan(&md, &b, &opts(true)).expect("forced");
        assert!(p.notes[0].contains("--force"));

        let old = Metadata::parse(
            root_text(&[(a.keyid(), a.clone())], 1, "2020-01-01T00:00:00Z").as_bytes(),
        )
        .expect("root");
        let e = plan(&old, &a, &opts(false)).expect_err("expired");
        assert!(
            e.to_string().contains("2020-01-01T00:00:00Z, in the past"),
            "{e}"
        );
        assert!(plan(&old, &a, &opts(true)).is_ok());
    }

    #[test]
    fn a_key_listed_under_another_key_id_signs_under_that_id() {
        let (sk, a) = key(1);
        let mut legacy = a.clone();
        legacy.keytype = "ecdsa-sha2-nistp256".into(); // the deprecated form
        legacy.public = legacy.public.replace('\n', "\r\n"); // another PEM layout
        let text = root_text(&[("legacy-id".into(), legacy)], 1, "2030-01-01T00:00:00Z");
        let md = Metadata::parse(text.as_bytes()).expect("root");
        let p = plan(&md, &a, &opts(false)).expect("plan");
        assert_eq!(p.keyid, "legacy-id");
        assert!(
            p.notes[0].contains("filed under legacy-id"),
            "{:?}",
            p.notes
        );
        let out = apply(&md, &a, &p, &token_sign(&sk, &p)).expect("apply");
        let signed = Metadata::parse(&out).expect("parses");
        let r = crate::ctl::tuf::verify::verify(&signed, None, opts(false).now).expect("verify");
        assert!(r.ok, "{}", r.text());
    }

    #[test]
    fn a_key_of_the_previous_root_may_sign_the_next_one() {
        let (_, a) = key(1);
        let (_, b) = key(2);
        let v1 = Metadata::parse(
            root_text(&[(a.keyid(), a.clone())], 1, "2030-01-01T00:00:00Z").as_bytes(),
        )
        .expect("v1");
        let v2 = Metadata::parse(
            root_text(&[(b.keyid(), b.clone())], 1, "2030-01-01T00:00:00Z").as_bytes(),
        )
        .expect("v2");
        assert!(plan(&v2, &a, &opts(false)).is_err());
        let with_prev = SignOptions {
            trusted_root: Some(&v1),
            ..opts(false)
        };
        assert!(plan(&v2, &a, &with_prev).is_ok());
        let (_, c) = key(3);
        let e = plan(&v2, &c, &with_prev).expect_err("in neither");
        assert!(
            e.to_string().contains("in the previous root (--root)"),
            "{e}"
        );
    }
}
