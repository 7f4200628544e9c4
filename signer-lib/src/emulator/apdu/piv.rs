//! The PIV applet's instructions (SP 800-73-4 part 2 and YubiKey's
//! extensions): parse the command, call exactly one [`Card`] command,
//! encode its answer. No security rule lives here.

use zeroize::Zeroizing;

use super::status::{refuse, refuse_with, verify_failed};
use crate::emulator::card::firmware; // E2
use crate::emulator::card::{
    Card, KeyMetadata, PinMetadata, PinStatus, REFERENCE_BLOCK_LEN, RsaComponents,
};
use crate::error::Error;
use crate::model::{Algorithm, FirmwareVersion, PinPolicy, SlotId, TouchPolicy};
use crate::piv::apdu::{CommandApdu, ResponseApdu, StatusWord};
use crate::piv::mgmt_crypto::{AuthRequest, card_answer};
use crate::piv::{PIV_AID, PIV_AID_FULL, ins, key_ref, metadata_tag, object, tag, tlv};
use crate::secret::{ManagementKey, ManagementKeyAlgorithm};
use crate::token::TokenEvent;

/// GET METADATA exists from firmware 5.3.
const METADATA_FIRMWARE: FirmwareVersion = FirmwareVersion::new(5, 3, 0);

/// The algorithm byte GET METADATA reports for the PIN and the PUK.
const PIN_PUK_ALGORITHM: u8 = 0xff;

/// Application property template (tag 61), as a YubiKey 5 answers SELECT:
/// the PIX with version (4F) and the coexistent tag allocation authority
/// with the RID + PIX prefix (79 { 4F }).
pub(super) fn select_response(_card: &mut Card) -> ResponseApdu {
    let pix = PIV_AID_FULL.get(PIV_AID.len()..).unwrap_or_default();
    let mut inner = Vec::with_capacity(24);
    let mut authority = Vec::with_capacity(8);
    let built = tlv::write(&mut inner, 0x4f, pix)
        .and_then(|()| tlv::write(&mut authority, 0x4f, &PIV_AID))
        .and_then(|()| tlv::write(&mut inner, 0x79, &authority));
    let mut apt = Vec::with_capacity(inner.len() + 2);
    match built.and_then(|()| tlv::write(&mut apt, 0x61, &inner)) {
        Ok(()) => ResponseApdu::new(apt, StatusWord::Success),
        Err(_) => ResponseApdu::status(StatusWord::NoPreciseDiagnosis),
    }
}

/// Execute one PIV command.
pub(super) fn execute(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    // E2: what this firmware lacks is refused first, with its status word
    // (the capability table is emulator/card/firmware.rs).
    if let Some(status) = firmware::refusal(card.state().firmware(), apdu) {
        card.note_command();
        return sw(status);
    }
    match apdu.ins {
        firmware::INS_MOVE_KEY => super::move_key::execute(card, apdu), // E2
        ins::VERIFY => verify(card, apdu),
        ins::CHANGE_REFERENCE_DATA => change_reference_data(card, apdu),
        ins::RESET_RETRY_COUNTER => reset_retry_counter(card, apdu),
        ins::GENERAL_AUTHENTICATE => general_authenticate(card, apdu),
        ins::GENERATE_ASYMMETRIC => generate(card, apdu),
        ins::GET_DATA => get_data(card, apdu),
        ins::PUT_DATA => put_data(card, apdu),
        ins::GET_METADATA => get_metadata(card, apdu),
        ins::GET_SERIAL => ok(card.serial().to_be_bytes().to_vec()),
        ins::GET_VERSION => ok(card.firmware().to_bytes().to_vec()),
        ins::ATTEST => attest(card, apdu),
        ins::SET_PIN_RETRIES => set_pin_retries(card, apdu),
        ins::RESET => reset(card, apdu),
        ins::IMPORT_KEY => import_key(card, apdu),
        ins::SET_MANAGEMENT_KEY => set_management_key(card, apdu),
        _ => sw(StatusWord::InsNotSupported),
    }
}

fn sw(status: StatusWord) -> ResponseApdu {
    ResponseApdu::status(status)
}

fn ok(data: Vec<u8>) -> ResponseApdu {
    ResponseApdu::new(data, StatusWord::Success)
}

/// 9000 with data that may be secret (kept in zeroizing memory).
fn ok_secret(data: Zeroizing<Vec<u8>>) -> ResponseApdu {
    ResponseApdu {
        data,
        sw: StatusWord::Success,
    }
}

fn bad_data(reason: &str) -> ResponseApdu {
    tracing::debug!(reason, "malformed command data");
    sw(StatusWord::IncorrectData)
}

/// The one TLV `data` consists of, if its tag is `expected`.
fn single_tlv(data: &[u8], expected: u32) -> Option<&[u8]> {
    match tlv::read(data) {
        Ok((t, rest)) if t.tag == expected && rest.is_empty() => Some(t.value),
        _ => None,
    }
}

/// The items of a template: each allowed tag at most once, no other tag.
fn template_items<'a>(value: &'a [u8], allowed: &[u32]) -> Option<Vec<crate::piv::tlv::Tlv<'a>>> {
    let items = tlv::parse_all(value).ok()?;
    for (i, item) in items.iter().enumerate() {
        if !allowed.contains(&item.tag) || items[..i].iter().any(|o| o.tag == item.tag) {
            return None;
        }
    }
    Some(items)
}

fn find<'a>(items: &[crate::piv::tlv::Tlv<'a>], wanted: u32) -> Option<&'a [u8]> {
    items.iter().find(|t| t.tag == wanted).map(|t| t.value)
}

fn encode(tag: u32, value: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    tlv::encode(tag, value).ok()
}

fn slot_from_p(byte: u8) -> Option<SlotId> {
    SlotId::from_key_reference(byte).ok()
}

// ----- PIN and PUK --------------------------------------------------------------

/// VERIFY (20): P2 = 80 (the PIN). P1 = 00 with 8 bytes verifies, with no
/// data asks the status (9000 verified, 63Cx tries left, 6983 blocked);
/// P1 = FF without data forgets the verification.
fn verify(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if apdu.p1 != 0x00 && apdu.p1 != 0xff {
        return sw(StatusWord::IncorrectP1P2);
    }
    if apdu.p2 != key_ref::PIN {
        return sw(StatusWord::ReferenceNotFound);
    }
    if apdu.p1 == 0xff {
        if !apdu.data.is_empty() {
            return bad_data("VERIFY with P1 = FF takes no data");
        }
        card.unverify_pin();
        return sw(StatusWord::Success);
    }
    if apdu.data.is_empty() {
        return sw(match card.pin_status() {
            PinStatus::Verified => StatusWord::Success,
            PinStatus::NotVerified { retries_left } => verify_failed(retries_left),
            PinStatus::Blocked => StatusWord::AuthenticationBlocked,
        });
    }
    match card.verify_pin_block(&apdu.data) {
        Ok(()) => sw(StatusWord::Success),
        Err(e) => refuse(apdu.ins, &e),
    }
}

/// Split 16 bytes of "old || new" reference data.
fn two_blocks(data: &[u8]) -> Option<(&[u8], &[u8])> {
    (data.len() == 2 * REFERENCE_BLOCK_LEN).then(|| data.split_at(REFERENCE_BLOCK_LEN))
}

/// CHANGE REFERENCE DATA (24): P2 = 80 (PIN) or 81 (PUK); data is the
/// current then the new value, 8 bytes each.
fn change_reference_data(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if apdu.p1 != 0x00 {
        return sw(StatusWord::IncorrectP1P2);
    }
    if apdu.p2 != key_ref::PIN && apdu.p2 != key_ref::PUK {
        return sw(StatusWord::ReferenceNotFound);
    }
    let Some((current, new)) = two_blocks(&apdu.data) else {
        return bad_data("CHANGE REFERENCE DATA takes 16 bytes");
    };
    let result = if apdu.p2 == key_ref::PIN {
        card.change_pin_block(current, new)
    } else {
        card.change_puk_block(current, new)
    };
    match result {
        Ok(()) => sw(StatusWord::Success),
        Err(e) => refuse(apdu.ins, &e),
    }
}

/// RESET RETRY COUNTER (2C): P2 = 80; data is the PUK then the new PIN.
fn reset_retry_counter(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if apdu.p1 != 0x00 {
        return sw(StatusWord::IncorrectP1P2);
    }
    if apdu.p2 != key_ref::PIN {
        return sw(StatusWord::ReferenceNotFound);
    }
    let Some((puk, new_pin)) = two_blocks(&apdu.data) else {
        return bad_data("RESET RETRY COUNTER takes 16 bytes");
    };
    match card.unblock_pin_block(puk, new_pin) {
        Ok(()) => sw(StatusWord::Success),
        Err(e) => refuse(apdu.ins, &e),
    }
}

/// SET PIN RETRIES (FA): P1 PIN tries, P2 PUK tries, no data.
fn set_pin_retries(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if !apdu.data.is_empty() {
        return bad_data("SET PIN RETRIES takes no data");
    }
    match card.set_pin_retries(apdu.p1, apdu.p2) {
        Ok(()) => sw(StatusWord::Success),
        Err(e @ Error::BadCommandData { .. }) => {
            refuse_with(apdu.ins, StatusWord::IncorrectP1P2, &e)
        }
        Err(e) => refuse(apdu.ins, &e),
    }
}

/// RESET (FB): only when PIN and PUK are both blocked (6985 otherwise).
fn reset(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if apdu.p1 != 0 || apdu.p2 != 0 {
        return sw(StatusWord::IncorrectP1P2);
    }
    match card.reset() {
        Ok(()) => sw(StatusWord::Success),
        Err(e) => refuse(apdu.ins, &e),
    }
}

// ----- Management key -------------------------------------------------------------

/// GENERAL AUTHENTICATE (87) on 9B: P1 is the management key's algorithm.
fn management_authenticate(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    let algorithm = card.state().management_key_algorithm();
    if apdu.p1 != algorithm.id() {
        // A 3DES-only tool talking to an AES key, or nonsense.
        return sw(StatusWord::IncorrectP1P2);
    }
    let request = match AuthRequest::parse(&apdu.data) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "management key authentication refused");
            return sw(e.status_word());
        }
    };
    let answer = match request {
        AuthRequest::WitnessRequest => card
            .management_witness(algorithm)
            .map(|w| card_answer(tag::WITNESS, &w)),
        AuthRequest::MutualResponse { witness, challenge } => {
            let block = algorithm.block_len();
            if witness.len() != block || challenge.len() != block {
                return bad_data("witness and challenge must be one cipher block each");
            }
            card.management_mutual_response(algorithm, witness, challenge)
                .map(|r| card_answer(tag::RESPONSE, &r))
        }
        AuthRequest::ChallengeRequest => card
            .management_challenge(algorithm)
            .map(|c| card_answer(tag::CHALLENGE, &c)),
        AuthRequest::ChallengeResponse { response } => card
            .management_challenge_response(algorithm, response)
            .map(|()| Zeroizing::new(Vec::new())),
    };
    match answer {
        Ok(data) => ok_secret(data),
        Err(e) => refuse(apdu.ins, &e),
    }
}

/// SET MANAGEMENT KEY (FF): P1 = FF, P2 = FF (no touch) or FE (touch
/// required); data is the algorithm byte, then `9B L key`.
fn set_management_key(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if apdu.p1 != 0xff || !(apdu.p2 == 0xff || apdu.p2 == 0xfe) {
        return sw(StatusWord::IncorrectP1P2);
    }
    let Some((&algorithm, rest)) = apdu.data.split_first() else {
        return bad_data("SET MANAGEMENT KEY without data");
    };
    let Some(key) = single_tlv(rest, u32::from(key_ref::MANAGEMENT)) else {
        return bad_data("SET MANAGEMENT KEY needs one 9B TLV after the algorithm");
    };
    let key = match ManagementKeyAlgorithm::from_id(algorithm)
        .and_then(|alg| ManagementKey::new(alg, key))
    {
        Ok(key) => key,
        Err(e) => return refuse_with(apdu.ins, StatusWord::IncorrectData, &e),
    };
    match card.set_management_key(&key, apdu.p2 == 0xfe) {
        Ok(()) => sw(StatusWord::Success),
        Err(e) => refuse(apdu.ins, &e),
    }
}

// ----- Keys -----------------------------------------------------------------------

/// GENERAL AUTHENTICATE (87): management key (P2 = 9B) or a signature with
/// a slot key (P1 the key's algorithm, data `7C { 82 00, 81 input }`).
fn general_authenticate(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if apdu.p2 == key_ref::MANAGEMENT {
        return management_authenticate(card, apdu);
    }
    let Some(slot) = slot_from_p(apdu.p2) else {
        return sw(StatusWord::IncorrectP1P2);
    };
    let Some(template) = single_tlv(&apdu.data, tag::DYN_AUTH) else {
        return bad_data("GENERAL AUTHENTICATE needs one 7C template");
    };
    let Some(items) = template_items(
        template,
        &[tag::CHALLENGE, tag::RESPONSE, tag::EXPONENTIATION],
    ) else {
        return bad_data("unexpected or repeated items in the 7C template");
    };
    if find(&items, tag::RESPONSE) != Some(&[]) {
        return bad_data("GENERAL AUTHENTICATE asks for the response with an empty 82");
    }
    let key_algorithm = card.slot_algorithm(slot);
    if key_algorithm.is_some_and(|a| a.id() != apdu.p1) {
        return bad_data("the algorithm in P1 is not the key's");
    }
    let mut report = |event: TokenEvent| {
        // (Written to keep compiling when TokenEvent grows variants.)
        #[allow(irrefutable_let_patterns)]
        if let TokenEvent::TouchRequired { slot, timeout } = event {
            tracing::info!(%slot, ?timeout, "waiting for a touch");
        }
    };
    if let Some(peer) = find(&items, tag::EXPONENTIATION) {
        // ECDH: 7C { 82 00, 85 peer public key } (P-256, P-384, X25519).
        if find(&items, tag::CHALLENGE).is_some() {
            return bad_data("GENERAL AUTHENTICATE with both a challenge (81) and a point (85)");
        }
        return match card.key_agreement(slot, peer, &mut report) {
            Ok(secret) => authenticate_response(&secret),
            Err(e @ Error::KeyNotFound { .. }) => {
                refuse_with(apdu.ins, StatusWord::IncorrectData, &e)
            }
            Err(e) => refuse(apdu.ins, &e),
        };
    }
    let Some(input) = find(&items, tag::CHALLENGE).filter(|c| !c.is_empty()) else {
        return bad_data("GENERAL AUTHENTICATE without a challenge (81)");
    };
    let mut padded = Zeroizing::new(Vec::new());
    if let Some(algorithm) = key_algorithm {
        // A digest shorter than the curve's field is an integer like any
        // other (ECDSA's bits2int): the device signs it, and yubico-piv-tool
        // (test-signature, SHA-256 on P-384) and ykman send one. The card
        // takes exactly a field's length: left-pad with zeros.
        if let Some(field) = algorithm.ecdsa_field_len() {
            if input.len() < field {
                padded.resize(field - input.len(), 0);
                padded.extend_from_slice(input);
            }
        }
    }
    let input = if padded.is_empty() {
        input
    } else {
        &padded[..]
    };
    // ECDSA, Ed25519 and RSA (signature or decryption: the same raw
    // operation; the host pads and unpads) are all one card command.
    match card.sign(slot, input, &mut report) {
        Ok(signature) => authenticate_response(&Zeroizing::new(signature)),
        // The device answers 6A80 for a signature with an empty slot.
        Err(e @ Error::KeyNotFound { .. }) => refuse_with(apdu.ins, StatusWord::IncorrectData, &e),
        Err(e) => refuse(apdu.ins, &e),
    }
}

/// GENERAL AUTHENTICATE's answer: `7C { 82 result }` (zeroizing: it may be
/// a decrypted block or a shared secret).
fn authenticate_response(result: &[u8]) -> ResponseApdu {
    match encode(tag::RESPONSE, result).and_then(|inner| encode(tag::DYN_AUTH, &inner)) {
        Some(data) => ok_secret(data),
        None => sw(StatusWord::NoPreciseDiagnosis),
    }
}

/// The public key template of GENERATE: `7F49 { 81 modulus 82 exponent }`
/// for RSA, `7F49 { 86 point }` otherwise.
fn public_key_template(meta: &KeyMetadata) -> Option<Vec<u8>> {
    Some(encode(tag::PUBLIC_KEY_TEMPLATE, &meta.public_key_tlvs)?.to_vec())
}

/// The optional policy items AA and AB, one byte each.
fn policies(items: &[crate::piv::tlv::Tlv<'_>]) -> Result<(PinPolicy, TouchPolicy), &'static str> {
    let one_byte = |t: u32| match find(items, t) {
        None => Ok(0),
        Some([b]) => Ok(*b),
        Some(_) => Err("a policy is one byte"),
    };
    let pin = PinPolicy::from_byte(one_byte(tag::PIN_POLICY)?).map_err(|_| "unknown PIN policy")?;
    let touch =
        TouchPolicy::from_byte(one_byte(tag::TOUCH_POLICY)?).map_err(|_| "unknown touch policy")?;
    Ok((pin, touch))
}

/// GENERATE ASYMMETRIC KEY PAIR (47): P2 the slot; data
/// `AC { 80 alg, [AA pin policy], [AB touch policy] }`.
fn generate(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if apdu.p1 != 0x00 {
        return sw(StatusWord::IncorrectP1P2);
    }
    let Some(slot) = slot_from_p(apdu.p2) else {
        return sw(StatusWord::IncorrectP1P2);
    };
    let Some(template) = single_tlv(&apdu.data, tag::CONTROL_REFERENCE) else {
        return bad_data("GENERATE needs one AC template");
    };
    let Some(items) = template_items(
        template,
        &[tag::ALGORITHM, tag::PIN_POLICY, tag::TOUCH_POLICY],
    ) else {
        return bad_data("unexpected or repeated items in the AC template");
    };
    let Some(&[algorithm]) = find(&items, tag::ALGORITHM) else {
        return bad_data("GENERATE needs a one-byte algorithm (80)");
    };
    let algorithm = match Algorithm::from_id(algorithm) {
        Ok(a) => a,
        Err(e) => return refuse(apdu.ins, &e),
    };
    let (pin_policy, touch_policy) = match policies(&items) {
        Ok(p) => p,
        Err(reason) => return bad_data(reason),
    };
    match card.generate_key(slot, algorithm, pin_policy, touch_policy) {
        Ok(meta) => match public_key_template(&meta) {
            Some(data) => ok(data),
            None => sw(StatusWord::NoPreciseDiagnosis),
        },
        Err(e @ Error::SlotNotAllowed { .. }) => {
            refuse_with(apdu.ins, StatusWord::IncorrectP1P2, &e)
        }
        Err(e) => refuse(apdu.ins, &e),
    }
}

/// IMPORT ASYMMETRIC KEY (FE): P1 the algorithm, P2 the slot; data the
/// private key then `[AA pin policy] [AB touch policy]`:
/// - P-256/P-384: `06 scalar` (at most the field length; hosts may drop
///   leading zeros);
/// - RSA: `01 p 02 q 03 dP 04 dQ 05 qInv`, each at most half the modulus
///   length (e is 65537); parts that do not belong together are refused;
/// - Ed25519: `07 seed` (32 bytes); X25519: `08 secret` (32 bytes).
fn import_key(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    let Some(slot) = slot_from_p(apdu.p2) else {
        return sw(StatusWord::IncorrectP1P2);
    };
    let algorithm = match Algorithm::from_id(apdu.p1) {
        Ok(a) => a,
        Err(e) => return refuse_with(apdu.ins, StatusWord::IncorrectP1P2, &e),
    };
    const EC_PRIVATE: u32 = 0x06;
    const ED25519_PRIVATE: u32 = 0x07;
    const X25519_PRIVATE: u32 = 0x08;
    const RSA_PARTS: [u32; 5] = [0x01, 0x02, 0x03, 0x04, 0x05];
    let key_tags: &[u32] = match algorithm {
        Algorithm::EccP256 | Algorithm::EccP384 => &[EC_PRIVATE],
        Algorithm::Ed25519 => &[ED25519_PRIVATE],
        Algorithm::X25519 => &[X25519_PRIVATE],
        Algorithm::Rsa1024 | Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096 => {
            &RSA_PARTS
        }
    };
    let mut allowed = key_tags.to_vec();
    allowed.extend([tag::PIN_POLICY, tag::TOUCH_POLICY]);
    let Some(items) = template_items(&apdu.data, &allowed) else {
        return bad_data("IMPORT: unexpected, repeated or malformed items for this key type");
    };
    let (pin_policy, touch_policy) = match policies(&items) {
        Ok(p) => p,
        Err(reason) => return bad_data(reason),
    };
    let result = if algorithm.is_rsa() {
        let part = |t: u32| find(&items, t).map(<[u8]>::to_vec);
        let (Some(p), Some(q), Some(dp), Some(dq), Some(qinv)) =
            (part(0x01), part(0x02), part(0x03), part(0x04), part(0x05))
        else {
            return bad_data("an RSA import needs p, q, dP, dQ and qInv (tags 01 to 05)");
        };
        let parts = RsaComponents { p, q, dp, dq, qinv };
        card.import_rsa_key(slot, algorithm, &parts, pin_policy, touch_policy)
    } else {
        let Some(private) = find(&items, key_tags[0]).filter(|s| !s.is_empty()) else {
            return bad_data("the private key is missing");
        };
        match algorithm.ecdsa_field_len() {
            Some(field) => {
                if private.len() > field {
                    return bad_data("the private scalar (06) is too long");
                }
                // Hosts may drop leading zero bytes; the card takes
                // field-length scalars.
                let mut padded = Zeroizing::new(vec![0u8; field]);
                padded[field - private.len()..].copy_from_slice(private);
                card.import_key(slot, algorithm, &padded, pin_policy, touch_policy)
            }
            None => card.import_key(slot, algorithm, private, pin_policy, touch_policy),
        }
    };
    match result {
        Ok(_) => sw(StatusWord::Success),
        Err(e) => refuse(apdu.ins, &e),
    }
}

/// ATTEST (F9): P1 the slot; answers the DER certificate.
fn attest(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if apdu.p2 != 0x00 {
        return sw(StatusWord::IncorrectP1P2);
    }
    let Some(slot) = slot_from_p(apdu.p1) else {
        return sw(StatusWord::IncorrectP1P2);
    };
    match card.attest(slot) {
        Ok(der) => ok(der),
        Err(e @ Error::SlotNotAllowed { .. }) => {
            refuse_with(apdu.ins, StatusWord::IncorrectP1P2, &e)
        }
        Err(e) => refuse(apdu.ins, &e),
    }
}

// ----- Metadata ---------------------------------------------------------------------

fn pin_metadata_tlvs(meta: PinMetadata) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(12);
    tlv::write(&mut out, metadata_tag::ALGORITHM, &[PIN_PUK_ALGORITHM]).ok()?;
    tlv::write(
        &mut out,
        metadata_tag::IS_DEFAULT,
        &[u8::from(meta.is_default)],
    )
    .ok()?;
    tlv::write(
        &mut out,
        metadata_tag::RETRIES,
        &[meta.total_retries, meta.remaining_retries],
    )
    .ok()?;
    Some(out)
}

/// GET METADATA (F7, firmware 5.3+): P2 = 80 (PIN), 81 (PUK), 9B
/// (management key) or a key slot (6A88 when empty).
fn get_metadata(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if card.state().firmware() < METADATA_FIRMWARE {
        return sw(StatusWord::InsNotSupported);
    }
    if apdu.p1 != 0x00 {
        return sw(StatusWord::IncorrectP1P2);
    }
    let data = match apdu.p2 {
        key_ref::PIN => pin_metadata_tlvs(card.pin_metadata()),
        key_ref::PUK => pin_metadata_tlvs(card.puk_metadata()),
        key_ref::MANAGEMENT => {
            let meta = card.management_key_metadata();
            let mut out = Vec::with_capacity(12);
            let policy = [PinPolicy::Default.to_byte(), meta.touch_policy.to_byte()];
            (|| {
                tlv::write(&mut out, metadata_tag::ALGORITHM, &[meta.algorithm.id()])?;
                tlv::write(&mut out, metadata_tag::POLICY, &policy)?;
                tlv::write(
                    &mut out,
                    metadata_tag::IS_DEFAULT,
                    &[u8::from(meta.is_default)],
                )
            })()
            .ok()
            .map(|()| out)
        }
        other => {
            let Some(slot) = slot_from_p(other) else {
                return sw(StatusWord::ReferenceNotFound);
            };
            match card.key_metadata(slot) {
                Ok(meta) => slot_metadata_tlvs(&meta),
                Err(e) => return refuse(apdu.ins, &e),
            }
        }
    };
    match data {
        Some(data) => ok(data),
        None => sw(StatusWord::NoPreciseDiagnosis),
    }
}

fn slot_metadata_tlvs(meta: &KeyMetadata) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(meta.public_key_tlvs.len() + 20);
    tlv::write(&mut out, metadata_tag::ALGORITHM, &[meta.algorithm.id()]).ok()?;
    tlv::write(
        &mut out,
        metadata_tag::POLICY,
        &[meta.pin_policy.to_byte(), meta.touch_policy.to_byte()],
    )
    .ok()?;
    tlv::write(&mut out, metadata_tag::ORIGIN, &[meta.origin.to_byte()]).ok()?;
    // Tag 04: the public key as in GENERATE's 7F49, without the template.
    tlv::write(&mut out, metadata_tag::PUBLIC_KEY, &meta.public_key_tlvs).ok()?;
    Some(out)
}

// ----- Data objects -------------------------------------------------------------------

/// The object id in a `5C` tag list: 1 byte (7E, the discovery object) or
/// 3 bytes (5FC1xx, 5FFFxx); 2-byte ids (7F61) exist but are not stored.
fn object_id(value: &[u8]) -> Option<u32> {
    match value.len() {
        1..=3 => Some(value.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))),
        _ => None,
    }
}

/// GET DATA (CB): P1 P2 = 3F FF; data `5C id`. Answers `53 contents` (the
/// discovery object is its own `7E` template).
fn get_data(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if (apdu.p1, apdu.p2) != (0x3f, 0xff) {
        return sw(StatusWord::IncorrectP1P2);
    }
    let Some(id) = single_tlv(&apdu.data, tag::OBJECT_ID).and_then(object_id) else {
        return bad_data("GET DATA needs one 5C tag list with a 1- to 3-byte object id");
    };
    match card.get_object(id) {
        Ok(contents) if id == object::DISCOVERY => ok(contents),
        Ok(contents) => {
            let contents = Zeroizing::new(contents);
            match encode(tag::OBJECT_DATA, &contents) {
                Some(data) => ok_secret(data),
                None => sw(StatusWord::NoPreciseDiagnosis),
            }
        }
        Err(e) => refuse(apdu.ins, &e),
    }
}

/// PUT DATA (DB): P1 P2 = 3F FF; data `5C id 53 contents` (empty contents
/// delete the object).
fn put_data(card: &mut Card, apdu: &CommandApdu) -> ResponseApdu {
    if (apdu.p1, apdu.p2) != (0x3f, 0xff) {
        return sw(StatusWord::IncorrectP1P2);
    }
    let parsed = tlv::read(&apdu.data).ok().and_then(|(id_tlv, rest)| {
        let (contents, rest) = tlv::read(rest).ok()?;
        (id_tlv.tag == tag::OBJECT_ID && contents.tag == tag::OBJECT_DATA && rest.is_empty())
            .then_some((id_tlv.value, contents.value))
    });
    let Some((id, contents)) = parsed else {
        return bad_data("PUT DATA needs 5C id then 53 contents");
    };
    let Some(id) = object_id(id) else {
        return bad_data("PUT DATA object id of 1 to 3 bytes");
    };
    match card.put_object(id, contents) {
        Ok(()) => sw(StatusWord::Success),
        Err(e @ Error::InvalidDataObject { .. }) => {
            refuse_with(apdu.ins, StatusWord::IncorrectData, &e)
        }
        Err(e) => refuse(apdu.ins, &e),
    }
}
