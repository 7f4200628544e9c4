//! Management-key authentication (key reference 9B) with GENERAL
//! AUTHENTICATE, both sides of the wire. No I/O happens here.
//!
//! The card management key is a symmetric key (3DES with three keys, or
//! AES-128/192/256). Authentication is challenge/response over single cipher
//! blocks (ECB on exactly one block), wrapped in the dynamic authentication
//! template `7C` (SP 800-73-4 part 2, 3.2.4, and YubiKey's behaviour):
//!
//! **Mutual authentication** (what yubico-piv-tool and ykman do):
//!
//! | step | host sends (`00 87 <alg> 9B`) | card answers             |
//! |------|-------------------------------|--------------------------|
//! | 1    | `7C 02 80 00`                 | `7C {80 E(K, W)}`        |
//! | 2    | `7C {80 W, 81 C}`             | `7C {82 E(K, C)}`, 9000  |
//!
//! `W` is the card's random witness (the host proves the key by decrypting
//! it), `C` the host's random challenge (the card proves the key by
//! encrypting it). Both are one cipher block: 8 bytes for 3DES, 16 for AES.
//!
//! **External authentication** (host proves the key, card does not):
//!
//! | step | host sends          | card answers      |
//! |------|---------------------|-------------------|
//! | 1    | `7C 02 81 00`       | `7C {81 C}`       |
//! | 2    | `7C {82 E(K, C)}`   | 9000              |
//!
//! "Internal authentication" (`7C {81 C, 82 00}`: the card encrypts a
//! challenge of the host's choosing) is deliberately **not** supported by the
//! card side: it would turn the card into an encryption oracle for its own
//! management key, which answers the external authentication's challenge.
//!
//! Host side: [`HostAuthentication`]. Card side: [`CardAuthenticator`] (a
//! small state machine an APDU front end drives, one call per GENERAL
//! AUTHENTICATE on 9B), or the pieces it is built from ([`AuthRequest`],
//! [`card_answer`], [`encrypt_block`], [`decrypt_block`]) for a front end that
//! keeps the pending challenge itself.
//!
//! Every buffer holding a witness, challenge or cipher block is zeroized on
//! drop, and secret comparisons are constant-time (`subtle`).

use cipher::{Block, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use rand_core::TryCryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::piv::apdu::{CommandApdu, StatusWord};
use crate::piv::{ins, key_ref, tag, tlv};
use crate::secret::{ManagementKey, ManagementKeyAlgorithm};

// ----- The block cipher ------------------------------------------------------

/// Encrypt exactly one block with the management key (ECB, no padding).
///
/// Fails with [`Error::Crypto`] when `block` is not one block long for the
/// key's algorithm (8 bytes for 3DES, 16 for AES).
pub fn encrypt_block(key: &ManagementKey, block: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    crypt(key, block, Direction::Encrypt)
}

/// Decrypt exactly one block with the management key (ECB, no padding).
///
/// Fails with [`Error::Crypto`] when `block` is not one block long.
pub fn decrypt_block(key: &ManagementKey, block: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    crypt(key, block, Direction::Decrypt)
}

#[derive(Clone, Copy)]
enum Direction {
    Encrypt,
    Decrypt,
}

fn crypt(key: &ManagementKey, block: &[u8], direction: Direction) -> Result<Zeroizing<Vec<u8>>> {
    let k = key.as_bytes();
    match key.algorithm() {
        ManagementKeyAlgorithm::Tdes => one_block::<des::TdesEde3>(k, block, direction),
        ManagementKeyAlgorithm::Aes128 => one_block::<aes::Aes128>(k, block, direction),
        ManagementKeyAlgorithm::Aes192 => one_block::<aes::Aes192>(k, block, direction),
        ManagementKeyAlgorithm::Aes256 => one_block::<aes::Aes256>(k, block, direction),
    }
}

fn one_block<C>(key: &[u8], input: &[u8], direction: Direction) -> Result<Zeroizing<Vec<u8>>>
where
    C: KeyInit + BlockCipherEncrypt + BlockCipherDecrypt,
{
    // The ciphers are built with their `zeroize` feature: the key schedule
    // is wiped when `cipher` drops.
    let cipher = C::new_from_slice(key).map_err(|_| Error::InvalidManagementKey {
        reason: "key length does not fit the algorithm".into(),
    })?;
    let mut block = Block::<C>::try_from(input).map_err(|_| Error::Crypto {
        reason: format!(
            "a management key block is {} bytes, got {}",
            Block::<C>::default().len(),
            input.len()
        ),
    })?;
    match direction {
        Direction::Encrypt => cipher.encrypt_block(&mut block),
        Direction::Decrypt => cipher.decrypt_block(&mut block),
    }
    let out = Zeroizing::new(block.to_vec());
    block.zeroize();
    Ok(out)
}

/// One random block for `algorithm` from `rng`.
fn random_block<R>(algorithm: ManagementKeyAlgorithm, rng: &mut R) -> Result<Zeroizing<Vec<u8>>>
where
    R: TryCryptoRng + ?Sized,
{
    let mut block = Zeroizing::new(vec![0u8; algorithm.block_len()]);
    rng.try_fill_bytes(&mut block).map_err(|e| Error::Crypto {
        reason: format!("the random number generator failed: {e}"),
    })?;
    Ok(block)
}

/// Constant-time equality of two byte strings (lengths are not secret).
fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `7C { tag value }`, the one-item dynamic authentication template.
///
/// The card's answers: `card_answer(tag::WITNESS, encrypted_witness)`,
/// `card_answer(tag::CHALLENGE, challenge)`,
/// `card_answer(tag::RESPONSE, encrypted_challenge)`.
pub fn card_answer(item_tag: u32, value: &[u8]) -> Zeroizing<Vec<u8>> {
    template(&[(item_tag, value)])
}

/// `7C { items }`. Items are at most one cipher block, so lengths always fit.
fn template(items: &[(u32, &[u8])]) -> Zeroizing<Vec<u8>> {
    let mut inner = Zeroizing::new(Vec::with_capacity(40));
    for (t, v) in items {
        // A block is at most 16 bytes: one-byte lengths, never an error.
        inner.push(*t as u8);
        inner.push(v.len() as u8);
        inner.extend_from_slice(v);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(inner.len() + 2));
    out.push(tag::DYN_AUTH as u8);
    out.push(inner.len() as u8);
    out.extend_from_slice(&inner);
    out
}

/// The items of a `7C` template: witness (80), challenge (81), response (82).
/// `None` when absent, `Some(&[])` when present and empty.
#[derive(Default)]
struct Items<'a> {
    witness: Option<&'a [u8]>,
    challenge: Option<&'a [u8]>,
    response: Option<&'a [u8]>,
}

/// Parse exactly one `7C` template (nothing after it) into its items.
/// Unknown or repeated items are refused.
fn parse_template(data: &[u8]) -> std::result::Result<Items<'_>, &'static str> {
    let (outer, rest) = tlv::read(data).map_err(|_| "malformed TLV")?;
    if outer.tag != tag::DYN_AUTH {
        return Err("not a dynamic authentication template (7C)");
    }
    if !rest.is_empty() {
        return Err("data after the 7C template");
    }
    let mut items = Items::default();
    for item in tlv::parse_all(outer.value).map_err(|_| "malformed TLV inside 7C")? {
        let slot = match item.tag {
            tag::WITNESS => &mut items.witness,
            tag::CHALLENGE => &mut items.challenge,
            tag::RESPONSE => &mut items.response,
            _ => return Err("unexpected item in the 7C template"),
        };
        if slot.replace(item.value).is_some() {
            return Err("repeated item in the 7C template");
        }
    }
    Ok(items)
}

// ----- Host side -------------------------------------------------------------

/// The GENERAL AUTHENTICATE command on key 9B for `algorithm` (P1) with the
/// given template. Le is 256 (short encoding `00`): the card answers with data.
fn general_authenticate(algorithm: ManagementKeyAlgorithm, data: &[u8]) -> CommandApdu {
    CommandApdu::new(
        0x00,
        ins::GENERAL_AUTHENTICATE,
        algorithm.id(),
        key_ref::MANAGEMENT,
    )
    .with_data(data.to_vec())
    .with_le(256)
}

/// The host side of management-key authentication, as yubico-piv-tool and
/// ykman perform it (mutual authentication), plus the one-way variant.
///
/// ```text
/// let cmd1 = HostAuthentication::witness_request(key.algorithm());
/// // send cmd1, get answer1 (check its status word with `check_status`)
/// let (auth, cmd2) = HostAuthentication::answer_witness(&key, &answer1, &mut rng)?;
/// // send cmd2, get answer2 (check its status word)
/// auth.verify_card(&key, &answer2)?;   // the card proved it holds the key too
/// ```
///
/// The host's challenge is kept (zeroized on drop) between the two steps.
pub struct HostAuthentication {
    algorithm: ManagementKeyAlgorithm,
    challenge: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for HostAuthentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostAuthentication({}, ***)", self.algorithm)
    }
}

impl HostAuthentication {
    /// Step 1 of mutual authentication: ask the card for a witness
    /// (`00 87 <alg> 9B 04 7C 02 80 00 00`).
    pub fn witness_request(algorithm: ManagementKeyAlgorithm) -> CommandApdu {
        general_authenticate(algorithm, &template(&[(tag::WITNESS, &[])]))
    }

    /// Step 2 of mutual authentication: decrypt the card's witness (from the
    /// data of its answer to step 1) and build the command that returns it
    /// with a fresh random challenge of ours.
    ///
    /// Fails with [`Error::Protocol`] when the answer is not a `7C {80 ..}`
    /// template holding exactly one block, and with [`Error::Crypto`] when the
    /// RNG fails.
    pub fn answer_witness<R>(
        key: &ManagementKey,
        card_answer: &[u8],
        rng: &mut R,
    ) -> Result<(HostAuthentication, CommandApdu)>
    where
        R: TryCryptoRng + ?Sized,
    {
        let algorithm = key.algorithm();
        let items = parse_template(card_answer).map_err(protocol)?;
        let encrypted = match items {
            Items {
                witness: Some(w),
                challenge: None,
                response: None,
            } if w.len() == algorithm.block_len() => w,
            _ => {
                return Err(protocol(
                    "expected one witness block (7C {80 ..}) in answer to the witness request",
                ));
            }
        };
        let witness = decrypt_block(key, encrypted)?;
        let challenge = random_block(algorithm, rng)?;
        let data = template(&[(tag::WITNESS, &witness), (tag::CHALLENGE, &challenge)]);
        let command = general_authenticate(algorithm, &data);
        Ok((
            HostAuthentication {
                algorithm,
                challenge,
            },
            command,
        ))
    }

    /// Step 3 of mutual authentication: check the card's answer to step 2
    /// (`7C {82 E(K, C)}`). Succeeds only when the card encrypted our
    /// challenge with the same key.
    ///
    /// Fails with [`Error::Protocol`] for a malformed answer and with
    /// [`Error::CardAuthenticationFailed`] when the card's proof is wrong.
    pub fn verify_card(self, key: &ManagementKey, card_answer: &[u8]) -> Result<()> {
        if key.algorithm() != self.algorithm {
            return Err(Error::InvalidManagementKey {
                reason: "verify_card was given a key of another algorithm than answer_witness"
                    .into(),
            });
        }
        let items = parse_template(card_answer).map_err(protocol)?;
        let response = match items {
            Items {
                witness: None,
                challenge: None,
                response: Some(r),
            } => r,
            _ => {
                return Err(protocol(
                    "expected the card's response (7C {82 ..}) to our challenge",
                ));
            }
        };
        let expected = encrypt_block(key, &self.challenge)?;
        if secret_eq(response, &expected) {
            Ok(())
        } else {
            Err(Error::CardAuthenticationFailed)
        }
    }

    /// Step 1 of one-way (external) authentication: ask the card for a plain
    /// challenge (`7C 02 81 00`).
    pub fn challenge_request(algorithm: ManagementKeyAlgorithm) -> CommandApdu {
        general_authenticate(algorithm, &template(&[(tag::CHALLENGE, &[])]))
    }

    /// Step 2 of one-way authentication: encrypt the card's challenge (from
    /// its answer `7C {81 C}`) and build the command that returns it. The
    /// card answers 9000 with no data when the key is right. This proves our
    /// key to the card but not the card's to us; prefer mutual authentication.
    pub fn answer_challenge(key: &ManagementKey, card_answer: &[u8]) -> Result<CommandApdu> {
        let algorithm = key.algorithm();
        let items = parse_template(card_answer).map_err(protocol)?;
        let challenge = match items {
            Items {
                witness: None,
                challenge: Some(c),
                response: None,
            } if c.len() == algorithm.block_len() => c,
            _ => {
                return Err(protocol(
                    "expected one challenge block (7C {81 ..}) in answer to the challenge request",
                ));
            }
        };
        let response = encrypt_block(key, challenge)?;
        Ok(general_authenticate(
            algorithm,
            &template(&[(tag::RESPONSE, &response)]),
        ))
    }

    /// Map the card's status word for a GENERAL AUTHENTICATE on 9B to a
    /// result: success for 9000; [`Error::WrongManagementKey`] for the status
    /// words a YubiKey uses to refuse a key or its algorithm (6982, 6A80,
    /// 6A86, 6984); [`Error::UnexpectedStatus`] otherwise.
    pub fn check_status(sw: StatusWord) -> Result<()> {
        match sw {
            StatusWord::Success => Ok(()),
            StatusWord::SecurityStatusNotSatisfied
            | StatusWord::IncorrectData
            | StatusWord::IncorrectP1P2
            | StatusWord::ReferenceDataNotUsable => Err(Error::WrongManagementKey),
            sw => Err(Error::UnexpectedStatus {
                command: "GENERAL AUTHENTICATE (management key)",
                sw,
            }),
        }
    }
}

fn protocol(reason: &str) -> Error {
    Error::Protocol {
        reason: format!("management key authentication: {reason}"),
    }
}

// ----- Card side -------------------------------------------------------------

/// A GENERAL AUTHENTICATE request on key 9B, as the card sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    /// `7C {80 00}`: step 1 of mutual authentication.
    WitnessRequest,
    /// `7C {80 W, 81 C}`: step 2 of mutual authentication.
    MutualResponse {
        /// The witness as the host decrypted it.
        witness: &'a [u8],
        /// The host's challenge, to be encrypted by the card.
        challenge: &'a [u8],
    },
    /// `7C {81 00}`: step 1 of one-way authentication.
    ChallengeRequest,
    /// `7C {82 R}`: step 2 of one-way authentication.
    ChallengeResponse {
        /// The card's challenge as the host encrypted it.
        response: &'a [u8],
    },
}

impl std::fmt::Debug for AuthRequest<'_> {
    /// Never prints witnesses, challenges or responses.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthRequest::WitnessRequest => "WitnessRequest",
            AuthRequest::MutualResponse { .. } => "MutualResponse",
            AuthRequest::ChallengeRequest => "ChallengeRequest",
            AuthRequest::ChallengeResponse { .. } => "ChallengeResponse",
        })
    }
}

impl<'a> AuthRequest<'a> {
    /// Parse the command data of a GENERAL AUTHENTICATE on 9B. Lengths are
    /// checked against the algorithm by [`CardAuthenticator::step`], not here.
    pub fn parse(data: &'a [u8]) -> std::result::Result<AuthRequest<'a>, CardAuthError> {
        let items = parse_template(data).map_err(CardAuthError::Malformed)?;
        match items {
            Items {
                witness: Some([]),
                challenge: None,
                response: None,
            } => Ok(AuthRequest::WitnessRequest),
            Items {
                witness: Some(witness),
                challenge: Some(challenge),
                response: None,
            } if !witness.is_empty() && !challenge.is_empty() => {
                Ok(AuthRequest::MutualResponse { witness, challenge })
            }
            Items {
                witness: None,
                challenge: Some([]),
                response: None,
            } => Ok(AuthRequest::ChallengeRequest),
            Items {
                witness: None,
                challenge: None,
                response: Some(response),
            } if !response.is_empty() => Ok(AuthRequest::ChallengeResponse { response }),
            Items {
                witness: None,
                challenge: Some(_),
                response: Some([]),
            } => Err(CardAuthError::Malformed(
                "internal authentication with the management key is not supported",
            )),
            _ => Err(CardAuthError::Malformed(
                "unsupported combination of items in the 7C template",
            )),
        }
    }
}

/// Why the card refuses a GENERAL AUTHENTICATE on 9B. Each maps to the
/// status word a front end answers ([`CardAuthError::status_word`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CardAuthError {
    /// P1 names another algorithm than the card's management key has (or an
    /// unknown one). Likely cause: a 3DES-only tool talking to an AES key.
    /// Answer 6A86 (incorrect P1/P2).
    #[error("the management key is not of algorithm 0x{requested:02x}")]
    WrongAlgorithm {
        /// P1 as sent.
        requested: u8,
    },
    /// The command data is not a template this card accepts, or a block has
    /// the wrong length. Answer 6A80 (incorrect data).
    #[error("malformed management key authentication: {0}")]
    Malformed(&'static str),
    /// A step-2 request without the matching step 1 directly before it
    /// (nothing pending, the other variant pending, or another algorithm).
    /// Answer 6A80 (incorrect data).
    #[error("management key authentication step out of sequence")]
    OutOfSequence,
    /// The host's proof is wrong: it does not hold the management key.
    /// Answer 6982 (security status not satisfied).
    #[error("wrong management key")]
    WrongKey,
    /// The card's random number generator failed. Answer 6F00.
    #[error("random number generator failure")]
    Rng,
}

impl CardAuthError {
    /// The status word a card answers with.
    pub fn status_word(&self) -> StatusWord {
        match self {
            CardAuthError::WrongAlgorithm { .. } => StatusWord::IncorrectP1P2,
            CardAuthError::Malformed(_) | CardAuthError::OutOfSequence => StatusWord::IncorrectData,
            CardAuthError::WrongKey => StatusWord::SecurityStatusNotSatisfied,
            CardAuthError::Rng => StatusWord::NoPreciseDiagnosis,
        }
    }
}

/// What the card does after a successful step.
#[derive(PartialEq, Eq)]
pub enum CardStep {
    /// Answer this data with 9000; nothing is proven yet (step 1).
    Continue(Zeroizing<Vec<u8>>),
    /// The host proved it holds the management key: mark the session as
    /// management-key authenticated (after the touch check, if the key
    /// requires touch) and answer this data (empty for one-way
    /// authentication) with 9000.
    Authenticated(Zeroizing<Vec<u8>>),
}

impl std::fmt::Debug for CardStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CardStep::Continue(d) => write!(f, "Continue({} bytes)", d.len()),
            CardStep::Authenticated(d) => write!(f, "Authenticated({} bytes)", d.len()),
        }
    }
}

/// What step 1 left for step 2 (zeroized on drop).
enum Pending {
    /// The plain witness sent encrypted in step 1 of mutual authentication.
    Witness {
        algorithm: ManagementKeyAlgorithm,
        witness: Zeroizing<Vec<u8>>,
    },
    /// The plain challenge sent in step 1 of one-way authentication.
    Challenge {
        algorithm: ManagementKeyAlgorithm,
        challenge: Zeroizing<Vec<u8>>,
    },
}

/// The card side of management-key authentication: one call to
/// [`CardAuthenticator::step`] per GENERAL AUTHENTICATE on key 9B.
///
/// It holds the pending witness or challenge between the two steps. A step 2
/// must directly follow its step 1: the APDU front end calls
/// [`CardAuthenticator::cancel`] on every other command, on reset, power
/// off and applet selection. Every step consumes what is pending, so a
/// failed or replayed step 2 needs a fresh step 1 (a fresh random witness).
#[derive(Default)]
pub struct CardAuthenticator {
    pending: Option<Pending>,
}

impl std::fmt::Debug for CardAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.pending {
            None => "idle",
            Some(Pending::Witness { .. }) => "witness pending",
            Some(Pending::Challenge { .. }) => "challenge pending",
        };
        write!(f, "CardAuthenticator({state})")
    }
}

impl CardAuthenticator {
    /// Nothing pending.
    pub fn new() -> CardAuthenticator {
        CardAuthenticator::default()
    }

    /// Whether a step 1 is waiting for its step 2.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Forget any pending witness or challenge (another command came in).
    pub fn cancel(&mut self) {
        self.pending = None;
    }

    /// Handle one GENERAL AUTHENTICATE on key 9B: `p1` is the algorithm the
    /// host named, `data` the command data, `key` the card's management key.
    ///
    /// On error the front end answers [`CardAuthError::status_word`] and the
    /// session is **not** authenticated; nothing stays pending.
    pub fn step<R>(
        &mut self,
        key: &ManagementKey,
        p1: u8,
        data: &[u8],
        rng: &mut R,
    ) -> std::result::Result<CardStep, CardAuthError>
    where
        R: TryCryptoRng + ?Sized,
    {
        // Whatever happens below, this step consumes what was pending.
        let pending = self.pending.take();
        let algorithm = key.algorithm();
        if p1 != algorithm.id() {
            return Err(CardAuthError::WrongAlgorithm { requested: p1 });
        }
        let block_len = algorithm.block_len();
        match AuthRequest::parse(data)? {
            AuthRequest::WitnessRequest => {
                let witness = random_block(algorithm, rng).map_err(|_| CardAuthError::Rng)?;
                let encrypted = encrypt_block(key, &witness).map_err(|_| CardAuthError::Rng)?;
                self.pending = Some(Pending::Witness { algorithm, witness });
                Ok(CardStep::Continue(card_answer(tag::WITNESS, &encrypted)))
            }
            AuthRequest::MutualResponse { witness, challenge } => {
                let Some(Pending::Witness {
                    algorithm: pending_alg,
                    witness: expected,
                }) = pending
                else {
                    return Err(CardAuthError::OutOfSequence);
                };
                if pending_alg != algorithm {
                    return Err(CardAuthError::OutOfSequence);
                }
                if witness.len() != block_len || challenge.len() != block_len {
                    return Err(CardAuthError::Malformed(
                        "witness and challenge must be one cipher block each",
                    ));
                }
                if !secret_eq(witness, &expected) {
                    return Err(CardAuthError::WrongKey);
                }
                let response = encrypt_block(key, challenge)
                    .map_err(|_| CardAuthError::Malformed("challenge is not one block"))?;
                Ok(CardStep::Authenticated(card_answer(
                    tag::RESPONSE,
                    &response,
                )))
            }
            AuthRequest::ChallengeRequest => {
                let challenge = random_block(algorithm, rng).map_err(|_| CardAuthError::Rng)?;
                let answer = card_answer(tag::CHALLENGE, &challenge);
                self.pending = Some(Pending::Challenge {
                    algorithm,
                    challenge,
                });
                Ok(CardStep::Continue(answer))
            }
            AuthRequest::ChallengeResponse { response } => {
                let Some(Pending::Challenge {
                    algorithm: pending_alg,
                    challenge,
                }) = pending
                else {
                    return Err(CardAuthError::OutOfSequence);
                };
                if pending_alg != algorithm {
                    return Err(CardAuthError::OutOfSequence);
                }
                if response.len() != block_len {
                    return Err(CardAuthError::Malformed(
                        "response must be one cipher block",
                    ));
                }
                let expected = encrypt_block(key, &challenge)
                    .map_err(|_| CardAuthError::Malformed("challenge is not one block"))?;
                if secret_eq(response, &expected) {
                    Ok(CardStep::Authenticated(Zeroizing::new(Vec::new())))
                } else {
                    Err(CardAuthError::WrongKey)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::io::Write;
    use std::process::{Command, Stdio};

    use rand_core::{TryCryptoRng, TryRng};

    use super::*;

    const ALGORITHMS: [ManagementKeyAlgorithm; 4] = [
        ManagementKeyAlgorithm::Tdes,
        ManagementKeyAlgorithm::Aes128,
        ManagementKeyAlgorithm::Aes192,
        ManagementKeyAlgorithm::Aes256,
    ];

    /// A deterministic generator for tests (xorshift; NOT secure).
    struct TestRng(u64);

    impl TryRng for TestRng {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> std::result::Result<u32, Infallible> {
            Ok(self.try_next_u64()? as u32)
        }
        fn try_next_u64(&mut self) -> std::result::Result<u64, Infallible> {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            Ok(self.0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> std::result::Result<(), Infallible> {
            for chunk in dst.chunks_mut(8) {
                let v = self.try_next_u64()?.to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            Ok(())
        }
    }
    impl TryCryptoRng for TestRng {}

    /// A generator that always fails.
    struct BrokenRng;
    #[derive(Debug)]
    struct RngDown;
    impl std::fmt::Display for RngDown {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("entropy source unavailable")
        }
    }
    impl std::error::Error for RngDown {}
    impl TryRng for BrokenRng {
        type Error = RngDown;
        fn try_next_u32(&mut self) -> std::result::Result<u32, RngDown> {
            Err(RngDown)
        }
        fn try_next_u64(&mut self) -> std::result::Result<u64, RngDown> {
            Err(RngDown)
        }
        fn try_fill_bytes(&mut self, _: &mut [u8]) -> std::result::Result<(), RngDown> {
            Err(RngDown)
        }
    }
    impl TryCryptoRng for BrokenRng {}

    fn key(alg: ManagementKeyAlgorithm, fill: u8) -> ManagementKey {
        let bytes: Vec<u8> = (0..alg.key_len() as u8)
            .map(|i| i.wrapping_mul(31) ^ fill)
            .collect();
        ManagementKey::new(alg, &bytes).unwrap()
    }

    /// Run one GENERAL AUTHENTICATE through the card: the command's P1 and data.
    fn card(
        c: &mut CardAuthenticator,
        k: &ManagementKey,
        cmd: &CommandApdu,
        rng: &mut TestRng,
    ) -> std::result::Result<CardStep, CardAuthError> {
        assert_eq!(cmd.ins, ins::GENERAL_AUTHENTICATE);
        assert_eq!(cmd.p2, key_ref::MANAGEMENT);
        c.step(k, cmd.p1, &cmd.data, rng)
    }

    fn data_of(step: CardStep) -> Zeroizing<Vec<u8>> {
        match step {
            CardStep::Continue(d) | CardStep::Authenticated(d) => d,
        }
    }

    #[test]
    fn known_answer_vectors_from_the_data_file() {
        let text = include_str!("../../testdata/mgmt_crypto_kat.txt");
        let mut n = 0;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 4, "bad vector line {line:?}");
            let alg: ManagementKeyAlgorithm = f[0].parse().unwrap();
            let k = ManagementKey::from_hex(alg, f[1]).unwrap();
            let plain = hex::decode(f[2]).unwrap();
            let cipher = hex::decode(f[3]).unwrap();
            assert_eq!(&*encrypt_block(&k, &plain).unwrap(), &cipher, "{line}");
            assert_eq!(&*decrypt_block(&k, &cipher).unwrap(), &plain, "{line}");
            n += 1;
        }
        assert!(n >= 6, "only {n} vectors read");
    }

    /// `openssl enc` on one block (no padding, raw key): an independent implementation.
    fn openssl_block(
        alg: ManagementKeyAlgorithm,
        k: &[u8],
        input: &[u8],
        decrypt: bool,
    ) -> Vec<u8> {
        let cipher = match alg {
            ManagementKeyAlgorithm::Tdes => "-des-ede3",
            ManagementKeyAlgorithm::Aes128 => "-aes-128-ecb",
            ManagementKeyAlgorithm::Aes192 => "-aes-192-ecb",
            ManagementKeyAlgorithm::Aes256 => "-aes-256-ecb",
        };
        let mut args = vec!["enc", cipher, "-nopad", "-nosalt", "-K"];
        let hex_key = hex::encode(k);
        args.push(&hex_key);
        if decrypt {
            args.push("-d");
        }
        let mut child = Command::new("openssl")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl is needed for this test (Debian package openssl; run tests/scripts/install-deps.sh)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    #[test]
    fn agrees_with_openssl_on_random_keys_and_blocks() {
        let mut rng = TestRng(0x5eed_1234_5678_9abc);
        for alg in ALGORITHMS {
            for _ in 0..3 {
                let mut kb = vec![0u8; alg.key_len()];
                rng.try_fill_bytes(&mut kb).unwrap();
                let k = ManagementKey::new(alg, &kb).unwrap();
                let block = random_block(alg, &mut rng).unwrap();
                let ours = encrypt_block(&k, &block).unwrap();
                assert_eq!(&*ours, &openssl_block(alg, &kb, &block, false), "{alg}");
                assert_eq!(
                    &*decrypt_block(&k, &block).unwrap(),
                    &openssl_block(alg, &kb, &block, true),
                    "{alg}"
                );
            }
        }
    }

    #[test]
    fn blocks_of_the_wrong_length_are_refused() {
        for alg in ALGORITHMS {
            let k = key(alg, 1);
            for len in [0, 1, alg.block_len() - 1, alg.block_len() + 1, 32] {
                assert!(matches!(
                    encrypt_block(&k, &vec![0; len]),
                    Err(Error::Crypto { .. })
                ));
                assert!(matches!(
                    decrypt_block(&k, &vec![0; len]),
                    Err(Error::Crypto { .. })
                ));
            }
        }
    }

    #[test]
    fn host_and_card_authenticate_mutually_for_every_algorithm() {
        let mut rng = TestRng(42);
        for alg in ALGORITHMS {
            for k in [
                ManagementKey::new(alg, &vec![0x5a; alg.key_len()]).unwrap(),
                key(alg, 9),
            ] {
                let mut c = CardAuthenticator::new();
                let cmd1 = HostAuthentication::witness_request(alg);
                assert_eq!(
                    hex::encode(cmd1.to_bytes().unwrap()),
                    format!("0087{:02x}9b047c02800000", alg.id())
                );
                let step1 = card(&mut c, &k, &cmd1, &mut rng).unwrap();
                assert!(matches!(step1, CardStep::Continue(_)));
                assert!(c.is_pending());
                let (auth, cmd2) =
                    HostAuthentication::answer_witness(&k, &data_of(step1), &mut rng).unwrap();
                let step2 = card(&mut c, &k, &cmd2, &mut rng).unwrap();
                assert!(matches!(step2, CardStep::Authenticated(_)), "{alg}");
                assert!(!c.is_pending());
                auth.verify_card(&k, &data_of(step2)).unwrap();
            }
        }
    }

    #[test]
    fn the_default_key_authenticates_as_tdes_and_as_aes192() {
        let mut rng = TestRng(7);
        for alg in [ManagementKeyAlgorithm::Tdes, ManagementKeyAlgorithm::Aes192] {
            let k = ManagementKey::default_for(alg).unwrap();
            let mut c = CardAuthenticator::new();
            let s1 = card(
                &mut c,
                &k,
                &HostAuthentication::witness_request(alg),
                &mut rng,
            )
            .unwrap();
            let (auth, cmd2) =
                HostAuthentication::answer_witness(&k, &data_of(s1), &mut rng).unwrap();
            let s2 = card(&mut c, &k, &cmd2, &mut rng).unwrap();
            auth.verify_card(&k, &data_of(s2)).unwrap();
        }
    }

    #[test]
    fn a_wrong_host_key_is_refused_with_6982() {
        let mut rng = TestRng(99);
        for alg in ALGORITHMS {
            let card_key = key(alg, 1);
            let host_key = key(alg, 2);
            let mut c = CardAuthenticator::new();
            let s1 = card(
                &mut c,
                &card_key,
                &HostAuthentication::witness_request(alg),
                &mut rng,
            )
            .unwrap();
            let (_auth, cmd2) =
                HostAuthentication::answer_witness(&host_key, &data_of(s1), &mut rng).unwrap();
            let err = card(&mut c, &card_key, &cmd2, &mut rng).unwrap_err();
            assert_eq!(err, CardAuthError::WrongKey);
            assert_eq!(err.status_word(), StatusWord::SecurityStatusNotSatisfied);
            assert!(!c.is_pending(), "a failed attempt leaves nothing pending");
            // Retrying the same step 2 is out of sequence: a new witness is needed.
            assert_eq!(
                card(&mut c, &card_key, &cmd2, &mut rng).unwrap_err(),
                CardAuthError::OutOfSequence
            );
        }
    }

    #[test]
    fn a_card_that_answers_wrongly_is_detected_by_the_host() {
        let mut rng = TestRng(5);
        let alg = ManagementKeyAlgorithm::Aes192;
        let k = key(alg, 3);
        let mut c = CardAuthenticator::new();
        let s1 = card(
            &mut c,
            &k,
            &HostAuthentication::witness_request(alg),
            &mut rng,
        )
        .unwrap();
        let (auth, cmd2) = HostAuthentication::answer_witness(&k, &data_of(s1), &mut rng).unwrap();
        let mut answer = data_of(card(&mut c, &k, &cmd2, &mut rng).unwrap());
        let last = answer.len() - 1;
        answer[last] ^= 1;
        assert!(matches!(
            auth.verify_card(&k, &answer),
            Err(Error::CardAuthenticationFailed)
        ));
    }

    #[test]
    fn host_refuses_malformed_card_answers() {
        let mut rng = TestRng(11);
        let k = key(ManagementKeyAlgorithm::Tdes, 4);
        for bad in [
            &[][..],
            &[0x7c, 0x02, 0x80, 0x00],             // empty witness
            &[0x7c, 0x06, 0x80, 0x04, 1, 2, 3, 4], // short witness
            &[0x7c, 0x0a, 0x81, 0x08, 1, 2, 3, 4, 5, 6, 7, 8], // challenge, not witness
            &[0x7d, 0x0a, 0x80, 0x08, 1, 2, 3, 4, 5, 6, 7, 8], // not 7C
            &[0x7c, 0x0a, 0x80, 0x08, 1, 2, 3, 4, 5, 6, 7], // truncated
            &[0x7c, 0x0a, 0x80, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0], // trailing byte
        ] {
            assert!(
                matches!(
                    HostAuthentication::answer_witness(&k, bad, &mut rng),
                    Err(Error::Protocol { .. })
                ),
                "{bad:02x?}"
            );
        }
        // Step 3 with something that is not a response.
        let mut c = CardAuthenticator::new();
        let s1 = card(
            &mut c,
            &k,
            &HostAuthentication::witness_request(k.algorithm()),
            &mut rng,
        )
        .unwrap();
        let (auth, _) = HostAuthentication::answer_witness(&k, &data_of(s1), &mut rng).unwrap();
        assert!(matches!(
            auth.verify_card(&k, &[0x7c, 0x00]),
            Err(Error::Protocol { .. })
        ));
    }

    #[test]
    fn one_way_authentication_works_and_checks_the_key() {
        let mut rng = TestRng(17);
        for alg in ALGORITHMS {
            let k = key(alg, 5);
            let mut c = CardAuthenticator::new();
            let cmd1 = HostAuthentication::challenge_request(alg);
            let s1 = card(&mut c, &k, &cmd1, &mut rng).unwrap();
            let cmd2 = HostAuthentication::answer_challenge(&k, &data_of(s1)).unwrap();
            assert_eq!(
                card(&mut c, &k, &cmd2, &mut rng).unwrap(),
                CardStep::Authenticated(Zeroizing::new(Vec::new()))
            );

            let s1 = card(&mut c, &k, &cmd1, &mut rng).unwrap();
            let cmd2 = HostAuthentication::answer_challenge(&key(alg, 6), &data_of(s1)).unwrap();
            assert_eq!(
                card(&mut c, &k, &cmd2, &mut rng).unwrap_err(),
                CardAuthError::WrongKey
            );
        }
    }

    #[test]
    fn the_card_is_not_an_encryption_oracle() {
        // Attack: get the card's challenge C, then ask the card itself to
        // encrypt C ("internal authenticate"), then answer with E(K, C).
        let mut rng = TestRng(23);
        let alg = ManagementKeyAlgorithm::Aes192;
        let k = key(alg, 8);
        let mut c = CardAuthenticator::new();
        let s1 = data_of(
            card(
                &mut c,
                &k,
                &HostAuthentication::challenge_request(alg),
                &mut rng,
            )
            .unwrap(),
        );
        let challenge = &s1[4..];
        let mut internal = vec![
            0x7c,
            (challenge.len() + 4) as u8,
            0x81,
            challenge.len() as u8,
        ];
        internal.extend_from_slice(challenge);
        internal.extend_from_slice(&[0x82, 0x00]);
        let err = c.step(&k, alg.id(), &internal, &mut rng).unwrap_err();
        assert!(matches!(err, CardAuthError::Malformed(_)));
        assert_eq!(err.status_word(), StatusWord::IncorrectData);
        assert!(
            !c.is_pending(),
            "the refused request also cancelled the challenge"
        );

        // Mutual step 2 cannot serve as an oracle either without the witness.
        let mut forged = vec![0x7c, 0x24, 0x80, 0x10];
        forged.extend_from_slice(&[0u8; 16]);
        forged.extend_from_slice(&[0x81, 0x10]);
        forged.extend_from_slice(challenge);
        assert_eq!(
            c.step(&k, alg.id(), &forged, &mut rng).unwrap_err(),
            CardAuthError::OutOfSequence
        );
    }

    #[test]
    fn wrong_algorithm_is_refused_with_6a86() {
        let mut rng = TestRng(29);
        let k = key(ManagementKeyAlgorithm::Aes192, 1);
        let mut c = CardAuthenticator::new();
        let cmd = HostAuthentication::witness_request(ManagementKeyAlgorithm::Tdes);
        let err = card(&mut c, &k, &cmd, &mut rng).unwrap_err();
        assert_eq!(err, CardAuthError::WrongAlgorithm { requested: 0x03 });
        assert_eq!(err.status_word(), StatusWord::IncorrectP1P2);
        assert!(matches!(
            HostAuthentication::check_status(err.status_word()),
            Err(Error::WrongManagementKey)
        ));
        assert!(HostAuthentication::check_status(StatusWord::Success).is_ok());
        assert!(matches!(
            HostAuthentication::check_status(StatusWord::InsNotSupported),
            Err(Error::UnexpectedStatus { .. })
        ));
    }

    #[test]
    fn steps_out_of_sequence_and_cancel() {
        let mut rng = TestRng(31);
        let alg = ManagementKeyAlgorithm::Tdes;
        let k = key(alg, 2);
        let mut c = CardAuthenticator::new();

        // Step 2 with nothing pending.
        let s1 = {
            let mut other = CardAuthenticator::new();
            data_of(
                card(
                    &mut other,
                    &k,
                    &HostAuthentication::witness_request(alg),
                    &mut rng,
                )
                .unwrap(),
            )
        };
        let (_, cmd2) = HostAuthentication::answer_witness(&k, &s1, &mut rng).unwrap();
        assert_eq!(
            card(&mut c, &k, &cmd2, &mut rng).unwrap_err(),
            CardAuthError::OutOfSequence
        );

        // Step 1, then another command (cancel), then step 2.
        let s1 = data_of(
            card(
                &mut c,
                &k,
                &HostAuthentication::witness_request(alg),
                &mut rng,
            )
            .unwrap(),
        );
        let (_, cmd2) = HostAuthentication::answer_witness(&k, &s1, &mut rng).unwrap();
        c.cancel();
        assert_eq!(
            card(&mut c, &k, &cmd2, &mut rng).unwrap_err(),
            CardAuthError::OutOfSequence
        );

        // Mutual step 1 then one-way step 2.
        card(
            &mut c,
            &k,
            &HostAuthentication::witness_request(alg),
            &mut rng,
        )
        .unwrap();
        let resp = encrypt_block(&k, &[0u8; 8]).unwrap();
        let cmd = general_authenticate(alg, &template(&[(tag::RESPONSE, &resp)]));
        assert_eq!(
            card(&mut c, &k, &cmd, &mut rng).unwrap_err(),
            CardAuthError::OutOfSequence
        );

        // A successful mutual step 2 cannot be replayed.
        let s1 = data_of(
            card(
                &mut c,
                &k,
                &HostAuthentication::witness_request(alg),
                &mut rng,
            )
            .unwrap(),
        );
        let (_, cmd2) = HostAuthentication::answer_witness(&k, &s1, &mut rng).unwrap();
        assert!(matches!(
            card(&mut c, &k, &cmd2, &mut rng).unwrap(),
            CardStep::Authenticated(_)
        ));
        assert_eq!(
            card(&mut c, &k, &cmd2, &mut rng).unwrap_err(),
            CardAuthError::OutOfSequence
        );
    }

    #[test]
    fn malformed_card_requests_are_6a80() {
        let mut rng = TestRng(37);
        let alg = ManagementKeyAlgorithm::Tdes;
        let k = key(alg, 2);
        let cases: [&[u8]; 10] = [
            &[],
            &[0x7c],
            &[0x7c, 0x00],
            &[0x7c, 0x02, 0x80],
            &[0x7c, 0x02, 0x80, 0x00, 0x00],             // trailing
            &[0x7d, 0x02, 0x80, 0x00],                   // wrong outer tag
            &[0x7c, 0x02, 0x85, 0x00],                   // exponentiation item
            &[0x7c, 0x04, 0x80, 0x00, 0x80, 0x00],       // repeated
            &[0x7c, 0x04, 0x80, 0x00, 0x81, 0x00],       // both empty
            &[0x7c, 0x06, 0x80, 0x01, 0x00, 0x81, 0x01], // truncated inside
        ];
        for data in cases {
            let mut c = CardAuthenticator::new();
            let err = c.step(&k, alg.id(), data, &mut rng).unwrap_err();
            assert!(
                matches!(err, CardAuthError::Malformed(_)),
                "{data:02x?}: {err:?}"
            );
            assert_eq!(err.status_word(), StatusWord::IncorrectData);
        }
        // Blocks of the wrong length in step 2.
        let mut c = CardAuthenticator::new();
        card(
            &mut c,
            &k,
            &HostAuthentication::witness_request(alg),
            &mut rng,
        )
        .unwrap();
        let data = template(&[(tag::WITNESS, &[1u8; 16]), (tag::CHALLENGE, &[2u8; 16])]);
        assert!(matches!(
            c.step(&k, alg.id(), &data, &mut rng).unwrap_err(),
            CardAuthError::Malformed(_)
        ));
    }

    #[test]
    fn rng_failure_is_reported_not_panicked() {
        let k = key(ManagementKeyAlgorithm::Aes128, 1);
        let mut c = CardAuthenticator::new();
        let cmd = HostAuthentication::witness_request(k.algorithm());
        let err = c.step(&k, cmd.p1, &cmd.data, &mut BrokenRng).unwrap_err();
        assert_eq!(err, CardAuthError::Rng);
        assert_eq!(err.status_word(), StatusWord::NoPreciseDiagnosis);

        let mut rng = TestRng(3);
        let s1 = data_of(c.step(&k, cmd.p1, &cmd.data, &mut rng).unwrap());
        let err = HostAuthentication::answer_witness(&k, &s1, &mut BrokenRng).unwrap_err();
        assert!(matches!(err, Error::Crypto { .. }), "{err:?}");
        assert!(err.to_string().contains("entropy source unavailable"));
    }

    #[test]
    fn works_with_the_system_rng_and_never_prints_secrets() {
        let mut rng = getrandom::SysRng;
        let k = key(ManagementKeyAlgorithm::Aes256, 1);
        let mut c = CardAuthenticator::new();
        let cmd1 = HostAuthentication::witness_request(k.algorithm());
        let s1 = c.step(&k, cmd1.p1, &cmd1.data, &mut rng).unwrap();
        assert_eq!(format!("{s1:?}"), "Continue(20 bytes)");
        assert_eq!(format!("{c:?}"), "CardAuthenticator(witness pending)");
        let (auth, cmd2) = HostAuthentication::answer_witness(&k, &data_of(s1), &mut rng).unwrap();
        assert_eq!(format!("{auth:?}"), "HostAuthentication(aes256, ***)");
        let req = AuthRequest::parse(&cmd2.data).unwrap();
        assert_eq!(format!("{req:?}"), "MutualResponse");
        let s2 = c.step(&k, cmd2.p1, &cmd2.data, &mut rng).unwrap();
        auth.verify_card(&k, &data_of(s2)).unwrap();
    }
}
