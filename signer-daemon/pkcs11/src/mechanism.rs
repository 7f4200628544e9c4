//! Signing mechanisms and the state of one signing operation: hashing for
//! the `CKM_ECDSA_SHA*` mechanisms (single- and multi-part), digest checks
//! for `CKM_ECDSA`, and the length query. No I/O: the daemon call is a
//! closure the caller passes.
//!
//! The length query: a `C_Sign`/`C_SignFinal` with a null buffer, or with
//! a buffer that is too small, gets the length and leaves the operation
//! active. For ECDSA the length (r‖s, twice the field length) is known from
//! the key, so such a call never asks the daemon. Should a signature ever be
//! made and not fit (a mechanism whose length is not known in advance), it
//! is kept and handed out by the next call of the same operation, so a
//! logical signature always costs exactly one daemon signature.

use cryptoki_sys::*;
use sha2::Digest;
use signer_proto::v1::HashAlgorithm;

use crate::error::P11Error;
use crate::objects::Curve;

/// The mechanisms the module implements, in `C_GetMechanismList` order.
pub const SUPPORTED: [CK_MECHANISM_TYPE; 13] = [
    CKM_ECDSA,
    CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384,
    CKM_ECDSA_SHA512,
    CKM_EDDSA,
    CKM_RSA_PKCS,
    CKM_SHA256_RSA_PKCS,
    CKM_SHA384_RSA_PKCS,
    CKM_SHA512_RSA_PKCS,
    CKM_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_SHA384_RSA_PKCS_PSS,
    CKM_SHA512_RSA_PKCS_PSS,
];

/// A mechanism's parameter as `C_SignInit` passed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// None (`ulParameterLen` 0).
    None,
    /// A `CK_RSA_PKCS_PSS_PARAMS` (read for the PSS mechanisms only).
    Pss {
        /// `hashAlg`.
        hash: CK_MECHANISM_TYPE,
        /// `mgf`.
        mgf: CK_RSA_PKCS_MGF_TYPE,
        /// `sLen`.
        salt: CK_ULONG,
    },
    /// Some other parameter of this many bytes.
    Other(usize),
}

/// The PSS parameters the daemon signs with for `hash`: MGF1 with the same
/// hash, a salt as long as the digest.
pub fn pss_param(hash: HashAlgorithm) -> Param {
    let (ckm, mgf, len) = match hash {
        HashAlgorithm::Sha384 => (CKM_SHA384, CKG_MGF1_SHA384, 48),
        HashAlgorithm::Sha512 => (CKM_SHA512, CKG_MGF1_SHA512, 64),
        _ => (CKM_SHA256, CKG_MGF1_SHA256, 32),
    };
    Param::Pss {
        hash: ckm,
        mgf,
        salt: len,
    }
}

/// `CK_MECHANISM_INFO` flags of the RSA mechanisms.
pub const RSA_FLAGS: CK_FLAGS = CKF_SIGN;

/// The DER `DigestInfo` prefixes `CKM_RSA_PKCS` accepts (RFC 8017 9.2 note 1):
/// the input must be one of these followed by the digest.
const DIGEST_INFO: [(HashAlgorithm, &[u8]); 3] = [
    (
        HashAlgorithm::Sha256,
        &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
    ),
    (
        HashAlgorithm::Sha384,
        &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
    ),
    (
        HashAlgorithm::Sha512,
        &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    ),
];

/// The (hash, digest) of a `CKM_RSA_PKCS` input: a SHA-256/384/512
/// `DigestInfo`. The daemon pads (EMSA-PKCS1-v1_5) from the hash and the
/// digest, so other inputs (raw data, other hashes) are refused.
fn digest_info(data: &[u8]) -> Result<(HashAlgorithm, Vec<u8>), P11Error> {
    DIGEST_INFO
        .iter()
        .find(|(h, prefix)| {
            data.len() == prefix.len() + crate::mechanism::digest_len(*h)
                && data.starts_with(prefix)
        })
        .map(|(h, prefix)| (*h, data[prefix.len()..].to_vec()))
        .ok_or(P11Error::NotDigestInfo(data.len()))
}

fn digest_len(h: HashAlgorithm) -> usize {
    match h {
        HashAlgorithm::Sha384 => 48,
        HashAlgorithm::Sha512 => 64,
        _ => 32,
    }
}

/// `CK_MECHANISM_INFO` flags of the ECDSA mechanisms.
pub const FLAGS: CK_FLAGS = CKF_SIGN | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;

/// `CK_MECHANISM_INFO` flags of `CKM_EDDSA`.
pub const EDDSA_FLAGS: CK_FLAGS = CKF_SIGN | CKF_EC_NAMEDCURVE;

/// The longest message `CKM_EDDSA` signs: the daemon's (one command to the
/// token, `signer_lib::model::ED25519_MAX_MESSAGE`; a test keeps them equal).
pub const EDDSA_MAX_MESSAGE: usize = 3000;

/// A supported mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// `CKM_ECDSA`: the caller hashed; the input is the digest.
    Ecdsa,
    /// `CKM_ECDSA_SHA256`: the module hashes with SHA-256.
    EcdsaSha256,
    /// `CKM_ECDSA_SHA384`.
    EcdsaSha384,
    /// `CKM_ECDSA_SHA512`.
    EcdsaSha512,
    /// `CKM_EDDSA` (Ed25519, PureEdDSA): the input is the message, which
    /// the token signs itself; no parameter (Ed25519ph and contexts are
    /// not offered).
    Eddsa,
    /// `CKM_RSA_PKCS`: the input is a SHA-256/384/512 `DigestInfo`.
    RsaPkcs,
    /// `CKM_SHA256_RSA_PKCS`: the module hashes with SHA-256.
    RsaPkcsSha256,
    /// `CKM_SHA384_RSA_PKCS`.
    RsaPkcsSha384,
    /// `CKM_SHA512_RSA_PKCS`.
    RsaPkcsSha512,
    /// `CKM_RSA_PKCS_PSS`: the input is a digest of the parameter's hash.
    RsaPss(HashAlgorithm),
    /// `CKM_SHA256_RSA_PKCS_PSS` (and 384, 512): the module hashes.
    RsaPssHashed(HashAlgorithm),
}

impl Mechanism {
    /// The mechanism of a `CKM_*` type with its parameter. The PSS
    /// mechanisms need a `CK_RSA_PKCS_PSS_PARAMS` naming what the daemon
    /// does: MGF1 with the mechanism's hash and a salt as long as the
    /// digest (`CKR_MECHANISM_PARAM_INVALID` otherwise); the others take
    /// none.
    pub fn from_param(ckm: CK_MECHANISM_TYPE, param: &Param) -> Result<Mechanism, P11Error> {
        use HashAlgorithm::*;
        let hashed = match ckm {
            CKM_SHA256_RSA_PKCS_PSS => Some(Sha256),
            CKM_SHA384_RSA_PKCS_PSS => Some(Sha384),
            CKM_SHA512_RSA_PKCS_PSS => Some(Sha512),
            _ => None,
        };
        if let Some(h) = hashed {
            return if *param == pss_param(h) {
                Ok(Mechanism::RsaPssHashed(h))
            } else {
                Err(P11Error::MechanismParamInvalid(ckm))
            };
        }
        if ckm == CKM_RSA_PKCS_PSS {
            return [Sha256, Sha384, Sha512]
                .into_iter()
                .find(|h| *param == pss_param(*h))
                .map(Mechanism::RsaPss)
                .ok_or(P11Error::MechanismParamInvalid(ckm));
        }
        let len = match param {
            Param::None => 0,
            Param::Pss { .. } => std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>(),
            Param::Other(n) => *n,
        };
        Mechanism::from_ckm(ckm, len)
    }

    /// The RSA padding the daemon is asked for.
    pub fn padding(self) -> signer_proto::v1::RsaPadding {
        use signer_proto::v1::RsaPadding;
        match self {
            Mechanism::RsaPkcs
            | Mechanism::RsaPkcsSha256
            | Mechanism::RsaPkcsSha384
            | Mechanism::RsaPkcsSha512 => RsaPadding::Pkcs1v15,
            Mechanism::RsaPss(_) | Mechanism::RsaPssHashed(_) => RsaPadding::Pss,
            _ => RsaPadding::Unspecified,
        }
    }

    /// The mechanism of a `CKM_*` type with its parameter length (none
    /// but the PSS mechanisms, which need [`Mechanism::from_param`]).
    pub fn from_ckm(ckm: CK_MECHANISM_TYPE, parameter_len: usize) -> Result<Mechanism, P11Error> {
        let m = match ckm {
            CKM_ECDSA => Mechanism::Ecdsa,
            CKM_ECDSA_SHA256 => Mechanism::EcdsaSha256,
            CKM_ECDSA_SHA384 => Mechanism::EcdsaSha384,
            CKM_ECDSA_SHA512 => Mechanism::EcdsaSha512,
            CKM_EDDSA => Mechanism::Eddsa,
            CKM_RSA_PKCS => Mechanism::RsaPkcs,
            CKM_SHA256_RSA_PKCS => Mechanism::RsaPkcsSha256,
            CKM_SHA384_RSA_PKCS => Mechanism::RsaPkcsSha384,
            CKM_SHA512_RSA_PKCS => Mechanism::RsaPkcsSha512,
            other => return Err(P11Error::MechanismInvalid(other)),
        };
        if parameter_len != 0 {
            return Err(P11Error::MechanismParamInvalid(ckm));
        }
        Ok(m)
    }

    /// Whether the mechanism signs with keys on `curve` (`CKM_EDDSA` with
    /// Ed25519 keys, the ECDSA mechanisms with P-256/P-384 keys).
    pub fn fits(self, curve: Curve) -> bool {
        match self {
            Mechanism::Eddsa => curve == Curve::Ed25519,
            Mechanism::RsaPkcs
            | Mechanism::RsaPkcsSha256
            | Mechanism::RsaPkcsSha384
            | Mechanism::RsaPkcsSha512
            | Mechanism::RsaPss(_)
            | Mechanism::RsaPssHashed(_) => matches!(curve, Curve::Rsa(_)),
            _ => matches!(curve, Curve::P256 | Curve::P384),
        }
    }
}

/// A `CKM_RSA_PKCS_PSS` input: a digest of the parameter's hash.
fn pss_digest(h: HashAlgorithm, data: &[u8]) -> Result<(HashAlgorithm, Vec<u8>), P11Error> {
    if data.len() != digest_len(h) {
        return Err(P11Error::DataLenRange(data.len()));
    }
    Ok((h, data.to_vec()))
}

fn lib_digest(h: HashAlgorithm, data: &[u8]) -> Vec<u8> {
    match h {
        HashAlgorithm::Sha384 => sha2::Sha384::digest(data).to_vec(),
        HashAlgorithm::Sha512 => sha2::Sha512::digest(data).to_vec(),
        _ => sha2::Sha256::digest(data).to_vec(),
    }
}

/// The hash a digest length stands for, for `CKM_ECDSA`.
pub fn hash_of_digest_len(len: usize) -> Result<HashAlgorithm, P11Error> {
    match len {
        32 => Ok(HashAlgorithm::Sha256),
        48 => Ok(HashAlgorithm::Sha384),
        64 => Ok(HashAlgorithm::Sha512),
        n => Err(P11Error::DataLenRange(n)),
    }
}

enum Input {
    /// `CKM_ECDSA`: the digest, gathered (at most 64 bytes).
    Digest(Vec<u8>),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    /// `CKM_EDDSA`: the message, gathered (at most [`EDDSA_MAX_MESSAGE`]).
    Message(Vec<u8>),
}

/// What a finishing call (`C_Sign`, `C_SignFinal`) produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A length query was answered; the operation stays active.
    Length(usize),
    /// The buffer was too small; the length is this, the operation stays
    /// active.
    TooSmall(usize),
    /// The signature (r‖s); the operation is over.
    Signature(Vec<u8>),
}

/// One signing operation of a session (`C_SignInit` to the end).
pub struct SignOperation {
    /// The key's curve.
    pub curve: Curve,
    mechanism: Mechanism,
    input: Input,
    multipart: bool,
    /// A signature made but not yet delivered.
    made: Option<Vec<u8>>,
    /// Whether the signature length is known before signing (always, for
    /// ECDSA; tests turn it off to exercise the kept signature).
    len_known: bool,
}

impl SignOperation {
    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Start signing with `mechanism` and a key on `curve`.
    pub fn new(mechanism: Mechanism, curve: Curve) -> SignOperation {
        let input = match mechanism {
            Mechanism::Ecdsa => Input::Digest(Vec::new()),
            Mechanism::EcdsaSha256 => Input::Sha256(sha2::Sha256::new()),
            Mechanism::EcdsaSha384 => Input::Sha384(sha2::Sha384::new()),
            Mechanism::EcdsaSha512 => Input::Sha512(sha2::Sha512::new()),
            Mechanism::Eddsa | Mechanism::RsaPkcs => Input::Message(Vec::new()),
            Mechanism::RsaPkcsSha256 => Input::Sha256(sha2::Sha256::new()),
            Mechanism::RsaPkcsSha384 => Input::Sha384(sha2::Sha384::new()),
            Mechanism::RsaPkcsSha512 | Mechanism::RsaPssHashed(HashAlgorithm::Sha512) => {
                Input::Sha512(sha2::Sha512::new())
            }
            Mechanism::RsaPssHashed(HashAlgorithm::Sha384) => Input::Sha384(sha2::Sha384::new()),
            Mechanism::RsaPssHashed(_) => Input::Sha256(sha2::Sha256::new()),
            Mechanism::RsaPss(_) => Input::Digest(Vec::new()),
        };
        SignOperation {
            curve,
            mechanism,
            input,
            multipart: false,
            made: None,
            len_known: true,
        }
    }

    /// The signature length, known from the key for ECDSA.
    pub fn signature_len(&self) -> Option<usize> {
        self.len_known.then(|| self.curve.signature_len())
    }

    /// `C_SignUpdate`.
    pub fn update(&mut self, data: &[u8]) -> Result<(), P11Error> {
        if self.made.is_some() {
            return Err(P11Error::OperationActive);
        }
        self.multipart = true;
        match &mut self.input {
            Input::Digest(d) => {
                if d.len() + data.len() > 64 {
                    return Err(P11Error::DataLenRange(d.len() + data.len()));
                }
                d.extend_from_slice(data);
            }
            Input::Sha256(h) => h.update(data),
            Input::Sha384(h) => h.update(data),
            Input::Sha512(h) => h.update(data),
            Input::Message(m) => {
                if m.len() + data.len() > EDDSA_MAX_MESSAGE {
                    return Err(P11Error::MessageTooLong(m.len() + data.len()));
                }
                m.extend_from_slice(data);
            }
        }
        Ok(())
    }

    /// The (hash, digest) to sign for single-part `data`.
    fn digest_of(&self, data: &[u8]) -> Result<(HashAlgorithm, Vec<u8>), P11Error> {
        Ok(match self.mechanism {
            Mechanism::Ecdsa => (hash_of_digest_len(data.len())?, data.to_vec()),
            Mechanism::EcdsaSha256 => (HashAlgorithm::Sha256, sha2::Sha256::digest(data).to_vec()),
            Mechanism::EcdsaSha384 => (HashAlgorithm::Sha384, sha2::Sha384::digest(data).to_vec()),
            Mechanism::EcdsaSha512 => (HashAlgorithm::Sha512, sha2::Sha512::digest(data).to_vec()),
            // The message itself, named with Ed25519's own hash (the daemon's rule).
            Mechanism::Eddsa if data.len() > EDDSA_MAX_MESSAGE => {
                return Err(P11Error::MessageTooLong(data.len()));
            }
            Mechanism::Eddsa => (HashAlgorithm::Sha512, data.to_vec()),
            Mechanism::RsaPkcs => digest_info(data)?,
            Mechanism::RsaPkcsSha256 => {
                (HashAlgorithm::Sha256, sha2::Sha256::digest(data).to_vec())
            }
            Mechanism::RsaPkcsSha384 => {
                (HashAlgorithm::Sha384, sha2::Sha384::digest(data).to_vec())
            }
            Mechanism::RsaPkcsSha512 => {
                (HashAlgorithm::Sha512, sha2::Sha512::digest(data).to_vec())
            }
            Mechanism::RsaPss(h) => pss_digest(h, data)?,
            Mechanism::RsaPssHashed(h) => (h, lib_digest(h, data)),
        })
    }

    /// The (hash, digest) to sign for the data gathered by `update`; the
    /// hash state is kept (a clone is finalized) so a length query that
    /// comes first costs nothing.
    fn digest_of_parts(&self) -> Result<(HashAlgorithm, Vec<u8>), P11Error> {
        Ok(match &self.input {
            Input::Digest(d) => match self.mechanism {
                Mechanism::RsaPss(h) => pss_digest(h, d)?,
                _ => (hash_of_digest_len(d.len())?, d.clone()),
            },
            Input::Sha256(h) => (HashAlgorithm::Sha256, h.clone().finalize().to_vec()),
            Input::Sha384(h) => (HashAlgorithm::Sha384, h.clone().finalize().to_vec()),
            Input::Sha512(h) => (HashAlgorithm::Sha512, h.clone().finalize().to_vec()),
            Input::Message(m) if self.mechanism == Mechanism::RsaPkcs => digest_info(m)?,
            Input::Message(m) => (HashAlgorithm::Sha512, m.clone()),
        })
    }

    /// `C_Sign(data)`: `capacity` is `None` for a length query (null
    /// buffer), else the buffer's length. `sign` asks the daemon for r‖s.
    pub fn sign(
        &mut self,
        data: &[u8],
        capacity: Option<usize>,
        sign: impl FnOnce(HashAlgorithm, Vec<u8>) -> Result<Vec<u8>, P11Error>,
    ) -> Result<Step, P11Error> {
        if self.multipart {
            // C_Sign cannot finish a multi-part operation.
            return Err(P11Error::OperationActive);
        }
        // Refuse a bad digest even on a length query: the caller learns at
        // once, and the daemon is never asked.
        let digest = self.digest_of(data)?;
        self.finish(capacity, digest, sign)
    }

    /// `C_SignFinal`.
    pub fn sign_final(
        &mut self,
        capacity: Option<usize>,
        sign: impl FnOnce(HashAlgorithm, Vec<u8>) -> Result<Vec<u8>, P11Error>,
    ) -> Result<Step, P11Error> {
        let digest = self.digest_of_parts()?;
        self.finish(capacity, digest, sign)
    }

    fn finish(
        &mut self,
        capacity: Option<usize>,
        (hash, digest): (HashAlgorithm, Vec<u8>),
        sign: impl FnOnce(HashAlgorithm, Vec<u8>) -> Result<Vec<u8>, P11Error>,
    ) -> Result<Step, P11Error> {
        if self.made.is_none() {
            if let Some(len) = self.signature_len() {
                match capacity {
                    None => return Ok(Step::Length(len)),
                    Some(c) if c < len => return Ok(Step::TooSmall(len)),
                    Some(_) => {}
                }
            }
            let signature = sign(hash, digest)?;
            let want = self.curve.signature_len();
            if signature.len() != want {
                return Err(P11Error::Daemon(signer_client::Error::BadAnswer {
                    reason: format!(
                        "a {}-byte signature for a {:?} key (r||s is {want} bytes)",
                        signature.len(),
                        self.curve
                    ),
                }));
            }
            self.made = Some(signature);
        }
        let len = self.made.as_ref().map_or(0, Vec::len);
        match capacity {
            None => Ok(Step::Length(len)),
            Some(c) if c < len => Ok(Step::TooSmall(len)),
            Some(_) => Ok(Step::Signature(self.made.take().unwrap_or_default())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn fake(
        calls: &Cell<usize>,
        len: usize,
    ) -> impl FnOnce(HashAlgorithm, Vec<u8>) -> Result<Vec<u8>, P11Error> + '_ {
        move |_, digest| {
            calls.set(calls.get() + 1);
            let mut s = digest;
            s.resize(len, 0xaa);
            Ok(s)
        }
    }

    #[test]
    fn a_length_query_never_asks_the_daemon() {
        let calls = Cell::new(0);
        let mut op = SignOperation::new(Mechanism::EcdsaSha256, Curve::P256);
        assert_eq!(
            op.sign(b"m", None, fake(&calls, 64)).unwrap(),
            Step::Length(64)
        );
        assert_eq!(
            op.sign(b"m", Some(10), fake(&calls, 64)).unwrap(),
            Step::TooSmall(64)
        );
        assert_eq!(calls.get(), 0);
        let Step::Signature(s) = op.sign(b"m", Some(64), fake(&calls, 64)).unwrap() else {
            panic!()
        };
        assert_eq!(&s[..32], sha2::Sha256::digest(b"m").as_slice());
        assert_eq!(calls.get(), 1);
        let mut op = SignOperation::new(Mechanism::Ecdsa, Curve::P384);
        assert_eq!(
            op.sign(&[1; 48], None, fake(&calls, 96)).unwrap(),
            Step::Length(96)
        );
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn a_signature_that_did_not_fit_is_delivered_by_the_next_call() {
        let calls = Cell::new(0);
        let mut op = SignOperation::new(Mechanism::EcdsaSha256, Curve::P256);
        op.len_known = false;
        assert_eq!(
            op.sign(b"m", None, fake(&calls, 64)).unwrap(),
            Step::Length(64)
        );
        assert_eq!(
            op.sign(b"m", Some(3), fake(&calls, 64)).unwrap(),
            Step::TooSmall(64)
        );
        assert!(matches!(
            op.sign(b"m", Some(64), fake(&calls, 64)).unwrap(),
            Step::Signature(_)
        ));
        assert_eq!(
            calls.get(),
            1,
            "one logical signature, one daemon signature"
        );
    }

    #[test]
    fn ckm_ecdsa_takes_only_sha2_digest_lengths() {
        let calls = Cell::new(0);
        for bad in [0usize, 20, 28, 33, 65] {
            let mut op = SignOperation::new(Mechanism::Ecdsa, Curve::P256);
            let e = op
                .sign(&vec![1; bad], Some(64), fake(&calls, 64))
                .unwrap_err();
            assert_eq!(e.rv(), CKR_DATA_LEN_RANGE, "{bad}");
            // Also on a length query.
            let e = op.sign(&vec![1; bad], None, fake(&calls, 64)).unwrap_err();
            assert_eq!(e.rv(), CKR_DATA_LEN_RANGE);
        }
        assert_eq!(calls.get(), 0);
        for (len, hash) in [
            (32, HashAlgorithm::Sha256),
            (48, HashAlgorithm::Sha384),
            (64, HashAlgorithm::Sha512),
        ] {
            let mut op = SignOperation::new(Mechanism::Ecdsa, Curve::P256);
            let r = op.sign(&vec![1; len], Some(64), |h, d| {
                assert_eq!((h, d.len()), (hash, len));
                Ok(vec![0; 64])
            });
            assert!(matches!(r, Ok(Step::Signature(_))));
        }
    }

    #[test]
    fn multi_part_hashes_like_single_part() {
        let calls = Cell::new(0);
        let mut op = SignOperation::new(Mechanism::EcdsaSha384, Curve::P384);
        op.update(b"hello ").unwrap();
        op.update(b"world").unwrap();
        assert_eq!(
            op.sign_final(None, fake(&calls, 96)).unwrap(),
            Step::Length(96)
        );
        let Step::Signature(s) = op.sign_final(Some(200), fake(&calls, 96)).unwrap() else {
            panic!()
        };
        assert_eq!(&s[..48], sha2::Sha384::digest(b"hello world").as_slice());
        assert_eq!(calls.get(), 1);
        // C_Sign cannot finish a multi-part operation.
        let mut op = SignOperation::new(Mechanism::EcdsaSha512, Curve::P256);
        op.update(b"x").unwrap();
        assert_eq!(
            op.sign(b"x", Some(64), fake(&calls, 64)).unwrap_err().rv(),
            CKR_OPERATION_ACTIVE
        );
        // CKM_ECDSA gathers at most one SHA-512 digest.
        let mut op = SignOperation::new(Mechanism::Ecdsa, Curve::P256);
        op.update(&[0; 40]).unwrap();
        assert_eq!(op.update(&[0; 40]).unwrap_err().rv(), CKR_DATA_LEN_RANGE);
    }

    #[test]
    fn a_wrong_length_answer_is_refused() {
        let mut op = SignOperation::new(Mechanism::EcdsaSha256, Curve::P384);
        let e = op.sign(b"m", Some(96), |_, _| Ok(vec![0; 64])).unwrap_err();
        assert_eq!(e.rv(), CKR_FUNCTION_FAILED);
    }

    #[test]
    fn mechanisms_take_no_parameter() {
        assert_eq!(
            Mechanism::from_ckm(CKM_ECDSA_SHA256, 0).unwrap(),
            Mechanism::EcdsaSha256
        );
        assert_eq!(
            Mechanism::from_ckm(CKM_ECDSA, 8).unwrap_err().rv(),
            CKR_MECHANISM_PARAM_INVALID
        );
        assert_eq!(
            Mechanism::from_ckm(CKM_RSA_PKCS, 0).unwrap(),
            Mechanism::RsaPkcs
        );
        // PSS (it would need CK_RSA_PKCS_PSS_PARAMS) and SHA-1 are not offered.
        assert_eq!(
            Mechanism::from_ckm(CKM_SHA256_RSA_PKCS_PSS, 0)
                .unwrap_err()
                .rv(),
            CKR_MECHANISM_INVALID
        );
        assert_eq!(
            Mechanism::from_ckm(CKM_ECDSA_SHA1, 0).unwrap_err().rv(),
            CKR_MECHANISM_INVALID
        );
    }
}
