//! APDU tests of the YubiKey 5.7 key types beyond P-256/P-384: RSA
//! 1024..4096, Ed25519, X25519, and ECDH on P-256/P-384/X25519. Every
//! signature, decryption and shared secret is checked independently with
//! RustCrypto; every refusal's status word is checked.

use der::{Decode, Encode};
use rsa::traits::PublicKeyParts;
use signature::Verifier;

use super::*;

const RSA1024: u8 = 0x06;
const RSA2048: u8 = 0x07;
const RSA3072: u8 = 0x05;
const RSA4096: u8 = 0x16;
const P256: u8 = 0x11;
const P384: u8 = 0x14;
const ED25519: u8 = 0xe0;
const X25519: u8 = 0xe1;

fn t(tag: u32, value: &[u8]) -> Vec<u8> {
    tlv::encode(tag, value).unwrap().to_vec()
}

/// An extended-length APDU (Lc 3 bytes, Le 00 00).
fn ext(ins: u8, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
    let mut cmd = vec![0x00, ins, p1, p2, 0x00];
    cmd.extend_from_slice(&(data.len() as u16).to_be_bytes());
    cmd.extend_from_slice(data);
    cmd.extend_from_slice(&[0x00, 0x00]);
    cmd
}

impl Bench {
    /// Send `data` as short APDUs with command chaining (255-byte parts, as
    /// yubikit and yubico-piv-tool do), following 61xx at the end.
    fn chained(&mut self, ins: u8, p1: u8, p2: u8, data: &[u8]) -> (Vec<u8>, u16) {
        let parts: Vec<&[u8]> = data.chunks(255).collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let mut cmd = vec![
                if last { 0x00 } else { 0x10 },
                ins,
                p1,
                p2,
                part.len() as u8,
            ];
            cmd.extend_from_slice(part);
            if last {
                cmd.push(0x00);
                return self.send_all(&cmd);
            }
            let (_, sw) = self.send(&cmd);
            assert_eq!(sw, 0x9000, "chain part {i}");
        }
        unreachable!("no data")
    }

    /// GENERATE; returns the items of the 7F49 template (or the status word).
    fn generate_key(
        &mut self,
        slot: u8,
        alg: u8,
        policies: &[u8],
    ) -> Result<Vec<(u32, Vec<u8>)>, u16> {
        let mut inner = t(0x80, &[alg]);
        inner.extend_from_slice(policies);
        let (data, sw) = self.send_all(&ext(0x47, 0x00, slot, &t(0xac, &inner)));
        if sw != 0x9000 {
            return Err(sw);
        }
        let (template, rest) = tlv::read(&data).unwrap();
        assert_eq!(template.tag, 0x7f49);
        assert!(rest.is_empty());
        Ok(tlv::parse_all(template.value)
            .unwrap()
            .into_iter()
            .map(|i| (i.tag, i.value.to_vec()))
            .collect())
    }

    /// GENERAL AUTHENTICATE `7C { 82 00, TAG input }` (extended length);
    /// returns the 82 value or the status word.
    fn authenticate_with(
        &mut self,
        alg: u8,
        slot: u8,
        tag: u32,
        input: &[u8],
    ) -> Result<Vec<u8>, u16> {
        let mut inner = t(0x82, &[]);
        inner.extend_from_slice(&t(tag, input));
        let (data, sw) = self.send_all(&ext(0x87, alg, slot, &t(0x7c, &inner)));
        if sw == 0x9000 {
            Ok(signature_of(&data))
        } else {
            Err(sw)
        }
    }

    fn metadata(&mut self, slot: u8) -> Vec<(u32, Vec<u8>)> {
        let (data, sw) = self.send_all(&[0x00, 0xf7, 0x00, slot, 0x00]);
        assert_eq!(sw, 0x9000);
        tlv::parse_all(&data)
            .unwrap()
            .into_iter()
            .map(|i| (i.tag, i.value.to_vec()))
            .collect()
    }

    fn attest_spki(&mut self, slot: u8) -> Vec<u8> {
        let (der, sw) = self.send_all(&[0x00, 0xf9, slot, 0x00, 0x00]);
        assert_eq!(sw, 0x9000, "attest {slot:02x}");
        let cert = x509_cert::Certificate::from_der(&der).unwrap();
        cert.tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap()
    }
}

fn get(items: &[(u32, Vec<u8>)], tag: u32) -> Vec<u8> {
    items
        .iter()
        .find(|(t, _)| *t == tag)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no tag {tag:02x}"))
}

fn ready() -> Bench {
    let mut b = Bench::new(ManagementKeyAlgorithm::Aes192);
    b.select_piv();
    b.authenticate_default();
    b
}

/// EMSA-PKCS1-v1_5 encoding of a SHA-256 digest for a `k`-byte modulus
/// (what the host sends; the card only does the raw operation).
fn pkcs1_sha256_block(digest: &[u8], k: usize) -> Vec<u8> {
    let prefix: &[u8] = &[
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let mut block = vec![0x00, 0x01];
    block.resize(k - prefix.len() - digest.len() - 1, 0xff);
    block.push(0x00);
    block.extend_from_slice(prefix);
    block.extend_from_slice(digest);
    block
}

fn rsa_public(items: &[(u32, Vec<u8>)]) -> rsa::RsaPublicKey {
    rsa::RsaPublicKey::new(
        rsa::BoxedUint::from_be_slice_vartime(&get(items, 0x81)),
        rsa::BoxedUint::from_be_slice_vartime(&get(items, 0x82)),
    )
    .unwrap()
}

/// Sign (PKCS#1 v1.5 block), decrypt (PKCS#1 v1.5 ciphertext) and the
/// refusals, for a generated RSA key of `k` bytes in `slot`.
fn exercise_rsa(b: &mut Bench, alg: u8, slot: u8, public: &rsa::RsaPublicKey) {
    let k = public.size();
    let digest = Sha256::digest(b"an RSA signature over a host-padded block");
    let block = pkcs1_sha256_block(&digest, k);
    let sig = b.authenticate_with(alg, slot, 0x81, &block).unwrap();
    assert_eq!(sig.len(), k);
    public
        .verify(rsa::pkcs1v15::Pkcs1v15Sign::new::<Sha256>(), &digest, &sig)
        .unwrap();
    // The same with short APDUs and command chaining (as yubico-piv-tool).
    let mut inner = t(0x82, &[]);
    inner.extend_from_slice(&t(0x81, &block));
    let (answer, sw) = b.chained(0x87, alg, slot, &t(0x7c, &inner));
    assert_eq!(sw, 0x9000);
    public
        .verify(
            rsa::pkcs1v15::Pkcs1v15Sign::new::<Sha256>(),
            &digest,
            &signature_of(&answer),
        )
        .unwrap();

    // Decryption: the card returns the padded plaintext block.
    let message = b"thirty-two bytes of a secret key";
    let ciphertext = public
        .encrypt(
            &mut rand_core::UnwrapErr(getrandom::SysRng),
            rsa::Pkcs1v15Encrypt,
            message,
        )
        .unwrap();
    let padded = b.authenticate_with(alg, slot, 0x81, &ciphertext).unwrap();
    assert_eq!(padded.len(), k);
    assert_eq!(&padded[..2], &[0x00, 0x02]);
    assert!(padded.ends_with(message));
    assert_eq!(padded[k - message.len() - 1], 0x00);

    // Refusals: a block one byte short or long, a block >= n, ECDH, the
    // wrong algorithm in P1.
    assert_eq!(
        b.authenticate_with(alg, slot, 0x81, &block[1..]),
        Err(0x6a80)
    );
    let mut long = block.clone();
    long.push(0);
    assert_eq!(b.authenticate_with(alg, slot, 0x81, &long), Err(0x6a80));
    assert_eq!(
        b.authenticate_with(alg, slot, 0x81, &vec![0xff; k]),
        Err(0x6a80)
    );
    assert_eq!(
        b.authenticate_with(alg, slot, 0x85, &[0x04; 65]),
        Err(0x6a80)
    );
    assert_eq!(b.authenticate_with(P256, slot, 0x81, &block), Err(0x6a80));
}

#[test]
fn rsa_keys_generate_sign_decrypt_and_report_metadata() {
    let mut b = ready();
    for (alg, bits) in [(RSA1024, 1024usize), (RSA2048, 2048)] {
        let items = b.generate_key(0x9a, alg, &[]).unwrap();
        assert_eq!(get(&items, 0x81).len(), bits / 8);
        assert_eq!(get(&items, 0x82), vec![0x01, 0x00, 0x01]);
        let public = rsa_public(&items);
        assert_eq!(public.n().as_ref().bits() as usize, bits);
        b.verify_pin();
        exercise_rsa(&mut b, alg, 0x9a, &public);
        // GET METADATA: algorithm, policies (9A defaults: once, never),
        // generated, and 04 { 81 n 82 e } as in GENERATE.
        let meta = b.metadata(0x9a);
        assert_eq!(get(&meta, 0x01), vec![alg]);
        assert_eq!(get(&meta, 0x02), vec![0x02, 0x01]);
        assert_eq!(get(&meta, 0x03), vec![0x01]);
        let inner: Vec<(u32, Vec<u8>)> = tlv::parse_all(&get(&meta, 0x04))
            .unwrap()
            .into_iter()
            .map(|i| (i.tag, i.value.to_vec()))
            .collect();
        assert_eq!(inner, items);
        // Attestation certifies this very key.
        use rsa::pkcs8::EncodePublicKey;
        assert_eq!(
            b.attest_spki(0x9a),
            public.to_public_key_der().unwrap().as_bytes()
        );
    }
}

#[test]
fn rsa_3072_and_4096_generate_and_sign_with_extended_length_and_chaining() {
    let mut b = ready();
    for (alg, slot, bits) in [(RSA3072, 0x9c, 3072usize), (RSA4096, 0x9d, 4096)] {
        let started = std::time::Instant::now();
        let items = b.generate_key(slot, alg, &[0xaa, 0x01, 0x01]).unwrap();
        eprintln!("RSA-{bits} generation took {:?}", started.elapsed());
        let public = rsa_public(&items);
        assert_eq!(public.n().as_ref().bits() as usize, bits);
        // PIN policy never: no VERIFY needed.
        exercise_rsa(&mut b, alg, slot, &public);
    }
}

/// p, q, dP, dQ, qInv of an rsa-crate key, as IMPORT's tags 01..05 padded
/// to half the modulus length (as yubikit does).
fn rsa_import_data(key: &rsa::RsaPrivateKey, policies: &[u8]) -> Vec<u8> {
    use rsa::traits::PrivateKeyParts;
    let half = key.size() / 2;
    let pad = |v: &rsa::BoxedUint| {
        let bytes = v.to_be_bytes_trimmed_vartime();
        let mut out = vec![0u8; half - bytes.len()];
        out.extend_from_slice(&bytes);
        out
    };
    let mut data = Vec::new();
    data.extend(t(0x01, &pad(&key.primes()[0])));
    data.extend(t(0x02, &pad(&key.primes()[1])));
    data.extend(t(0x03, &pad(key.dp().unwrap())));
    data.extend(t(0x04, &pad(key.dq().unwrap())));
    data.extend(t(0x05, &pad(&key.crt_coefficient().unwrap())));
    data.extend_from_slice(policies);
    data
}

#[test]
fn rsa_import_checks_the_parts_and_signs() {
    let mut b = ready();
    let key = rsa::RsaPrivateKey::new(&mut rand_core::UnwrapErr(getrandom::SysRng), 2048).unwrap();
    let public = key.to_public_key();
    // Chained short APDUs (the 5 parts are ~650 bytes); PIN policy never.
    let data = rsa_import_data(&key, &[0xaa, 0x01, 0x01, 0xab, 0x01, 0x01]);
    let (_, sw) = b.chained(0xfe, RSA2048, 0x9e, &data);
    assert_eq!(sw, 0x9000);
    let meta = b.metadata(0x9e);
    assert_eq!(get(&meta, 0x03), vec![0x02], "imported");
    exercise_rsa(&mut b, RSA2048, 0x9e, &public);
    // Imported keys are not attested.
    assert_eq!(b.send_all(&[0x00, 0xf9, 0x9e, 0x00, 0x00]).1, 0x6a80);

    // Refusals (nothing stored: 9A stays empty).
    let refused = |b: &mut Bench, alg: u8, data: &[u8]| {
        let (_, sw) = b.send_all(&ext(0xfe, alg, 0x9a, data));
        assert_eq!(sw, 0x6a80);
        assert_eq!(b.send_all(&[0x00, 0xf7, 0x00, 0x9a, 0x00]).1, 0x6a88);
    };
    // dP that does not belong to p.
    let mut wrong = data.clone();
    wrong[2 * (3 + 128) + 3 + 100] ^= 0x01;
    refused(&mut b, RSA2048, &wrong);
    // The parts of a 2048-bit key declared as RSA-1024 or RSA-3072.
    refused(&mut b, RSA1024, &data);
    refused(&mut b, RSA3072, &data);
    // A part missing (no qInv), an EC tag, a repeated tag.
    let no_qinv: Vec<u8> = {
        let mut v = Vec::new();
        for item in tlv::parse_all(&data)
            .unwrap()
            .iter()
            .filter(|i| i.tag != 0x05)
        {
            v.extend(t(item.tag, item.value));
        }
        v
    };
    refused(&mut b, RSA2048, &no_qinv);
    let mut with_ec = data.clone();
    with_ec.extend(t(0x06, &[1; 32]));
    refused(&mut b, RSA2048, &with_ec);
    let mut repeated = data.clone();
    repeated.extend(t(0x01, &[1; 128]));
    refused(&mut b, RSA2048, &repeated);
}

#[test]
fn ed25519_generates_signs_the_message_imports_and_refuses() {
    let mut b = ready();
    let items = b.generate_key(0x9c, ED25519, &[0xaa, 0x01, 0x02]).unwrap();
    let point = get(&items, 0x86);
    assert_eq!(items.len(), 1);
    assert_eq!(point.len(), 32);
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&point.clone().try_into().unwrap()).unwrap();
    // PIN policy once: 6982 before VERIFY.
    assert_eq!(
        b.authenticate_with(ED25519, 0x9c, 0x81, b"hello"),
        Err(0x6982)
    );
    b.verify_pin();
    for message in [b"x".to_vec(), vec![0xa5; 3000]] {
        let sig = b.authenticate_with(ED25519, 0x9c, 0x81, &message).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
        vk.verify(&message, &sig).unwrap();
    }
    // A long message with short APDUs and chaining.
    let message = vec![0x5a; 3000];
    let mut inner = t(0x82, &[]);
    inner.extend_from_slice(&t(0x81, &message));
    let (answer, sw) = b.chained(0x87, ED25519, 0x9c, &t(0x7c, &inner));
    assert_eq!(sw, 0x9000);
    let sig = ed25519_dalek::Signature::from_slice(&signature_of(&answer)).unwrap();
    vk.verify(&message, &sig).unwrap();
    // Metadata: 04 { 86 32 bytes }; attestation certifies the key.
    let meta = b.metadata(0x9c);
    assert_eq!(get(&meta, 0x01), vec![ED25519]);
    assert_eq!(get(&meta, 0x04), t(0x86, &point));
    use ed25519_dalek::pkcs8::EncodePublicKey;
    assert_eq!(
        b.attest_spki(0x9c),
        vk.to_public_key_der().unwrap().as_bytes()
    );
    // Refusals: ECDH with an Ed25519 key, the wrong P1, an empty message.
    assert_eq!(
        b.authenticate_with(ED25519, 0x9c, 0x85, &[9; 32]),
        Err(0x6a80)
    );
    assert_eq!(
        b.authenticate_with(X25519, 0x9c, 0x81, b"hello"),
        Err(0x6a80)
    );
    assert_eq!(b.authenticate_with(ED25519, 0x9c, 0x81, b""), Err(0x6a80));

    // Import: 07 seed; the public key is the seed's.
    let seed = [0x17u8; 32];
    let expected = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let (_, sw) = b.send_all(&ext(0xfe, ED25519, 0x9e, &t(0x07, &seed)));
    assert_eq!(sw, 0x9000);
    assert_eq!(get(&b.metadata(0x9e), 0x04), t(0x86, expected.as_bytes()));
    // 9E's default PIN policy is never.
    let sig = b
        .authenticate_with(ED25519, 0x9e, 0x81, b"card auth")
        .unwrap();
    expected
        .verify(
            b"card auth",
            &ed25519_dalek::Signature::from_slice(&sig).unwrap(),
        )
        .unwrap();
    // Wrong tag (06, 08), wrong length.
    for bad in [
        t(0x06, &seed),
        t(0x08, &seed),
        t(0x07, &seed[..31]),
        t(0x07, &[1; 33]),
    ] {
        assert_eq!(b.send_all(&ext(0xfe, ED25519, 0x9a, &bad)).1, 0x6a80);
    }
}

#[test]
fn x25519_agrees_keys_imports_and_refuses_to_sign() {
    let mut b = ready();
    let items = b.generate_key(0x9d, X25519, &[]).unwrap();
    let point: [u8; 32] = get(&items, 0x86).try_into().unwrap();
    let peer = x25519_dalek::StaticSecret::from([0x33u8; 32]);
    let peer_public = x25519_dalek::PublicKey::from(&peer);
    // 9D's default PIN policy is once.
    assert_eq!(
        b.authenticate_with(X25519, 0x9d, 0x85, peer_public.as_bytes()),
        Err(0x6982)
    );
    b.verify_pin();
    let shared = b
        .authenticate_with(X25519, 0x9d, 0x85, peer_public.as_bytes())
        .unwrap();
    let expected = peer.diffie_hellman(&x25519_dalek::PublicKey::from(point));
    assert_eq!(shared, expected.as_bytes());
    let meta = b.metadata(0x9d);
    assert_eq!(get(&meta, 0x01), vec![X25519]);
    assert_eq!(get(&meta, 0x04), t(0x86, &point));
    // The attestation's SPKI is RFC 8410 id-X25519 over the same key.
    let spki = b.attest_spki(0x9d);
    assert!(spki.ends_with(&point));
    // Refusals: X25519 asked to sign; a low-order point; wrong lengths.
    assert_eq!(
        b.authenticate_with(X25519, 0x9d, 0x81, b"sign me"),
        Err(0x6a80)
    );
    assert_eq!(
        b.authenticate_with(X25519, 0x9d, 0x85, &[0; 32]),
        Err(0x6a80)
    );
    assert_eq!(
        b.authenticate_with(X25519, 0x9d, 0x85, &[9; 31]),
        Err(0x6a80)
    );
    assert_eq!(
        b.authenticate_with(X25519, 0x9d, 0x85, &[9; 65]),
        Err(0x6a80)
    );
    // Import: 08 secret.
    let secret = [0x44u8; 32];
    let (_, sw) = b.send_all(&ext(0xfe, X25519, 0x9e, &t(0x08, &secret)));
    assert_eq!(sw, 0x9000);
    let imported_public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
    assert_eq!(
        get(&b.metadata(0x9e), 0x04),
        t(0x86, imported_public.as_bytes())
    );
    let shared = b
        .authenticate_with(X25519, 0x9e, 0x85, peer_public.as_bytes())
        .unwrap();
    assert_eq!(shared, peer.diffie_hellman(&imported_public).as_bytes());
    assert_eq!(
        b.send_all(&ext(0xfe, X25519, 0x9a, &t(0x07, &secret))).1,
        0x6a80
    );
}

#[test]
fn ecdh_on_p256_and_p384_matches_rustcrypto() {
    use elliptic_curve::sec1::ToSec1Point;
    let mut b = ready();
    let card256 = b.generate_key(0x9a, P256, &[0xaa, 0x01, 0x01]).unwrap();
    let card384 = b.generate_key(0x9c, P384, &[0xaa, 0x01, 0x01]).unwrap();
    let peer256 = p256::SecretKey::from_slice(&[0x21; 32]).unwrap();
    let peer384 = p384::SecretKey::from_slice(&[0x21; 48]).unwrap();

    let point = peer256.public_key().to_sec1_point(false);
    let shared = b
        .authenticate_with(P256, 0x9a, 0x85, point.as_bytes())
        .unwrap();
    let card_pub = p256::PublicKey::from_sec1_bytes(&get(&card256, 0x86)).unwrap();
    let expected = p256::ecdh::diffie_hellman(peer256.to_nonzero_scalar(), card_pub.as_affine());
    assert_eq!(shared, expected.raw_secret_bytes().as_slice());

    let point = peer384.public_key().to_sec1_point(false);
    let shared = b
        .authenticate_with(P384, 0x9c, 0x85, point.as_bytes())
        .unwrap();
    let card_pub = p384::PublicKey::from_sec1_bytes(&get(&card384, 0x86)).unwrap();
    let expected = p384::ecdh::diffie_hellman(peer384.to_nonzero_scalar(), card_pub.as_affine());
    assert_eq!(shared, expected.raw_secret_bytes().as_slice());

    // Refusals: a point of the other curve, a compressed point, a point off
    // the curve, an empty slot (6A80), the wrong algorithm in P1.
    let p256_point = peer256.public_key().to_sec1_point(false);
    assert_eq!(
        b.authenticate_with(P384, 0x9c, 0x85, p256_point.as_bytes()),
        Err(0x6a80)
    );
    let compressed = peer256.public_key().to_sec1_point(true);
    assert_eq!(
        b.authenticate_with(P256, 0x9a, 0x85, compressed.as_bytes()),
        Err(0x6a80)
    );
    let mut off = p256_point.as_bytes().to_vec();
    off[64] ^= 0x01;
    assert_eq!(b.authenticate_with(P256, 0x9a, 0x85, &off), Err(0x6a80));
    assert_eq!(
        b.authenticate_with(P256, 0x9e, 0x85, p256_point.as_bytes()),
        Err(0x6a80)
    );
    assert_eq!(
        b.authenticate_with(P384, 0x9a, 0x85, p256_point.as_bytes()),
        Err(0x6a80)
    );
}

#[test]
fn policies_apply_to_every_new_key_type() {
    let mut b = ready();
    // PIN policy always (AA 03) and touch always (AB 02) on Ed25519, X25519
    // and RSA-1024.
    let pol = [0xaa, 0x01, 0x03, 0xab, 0x01, 0x02];
    b.generate_key(0x9a, ED25519, &pol).unwrap();
    b.generate_key(0x9c, X25519, &pol).unwrap();
    b.generate_key(0x9d, RSA1024, &pol).unwrap();
    let peer = [9u8; 32];
    let block = {
        let mut v = vec![0u8; 128];
        v[127] = 2;
        v
    };
    let uses: [(u8, u8, u32, &[u8]); 3] = [
        (ED25519, 0x9a, 0x81, b"m"),
        (X25519, 0x9c, 0x85, &peer),
        (RSA1024, 0x9d, 0x81, &block),
    ];
    for (alg, slot, tag, input) in uses {
        assert_eq!(get(&b.metadata(slot), 0x02), vec![0x03, 0x02]);
        // Without a VERIFY right before: 6982.
        assert_eq!(b.authenticate_with(alg, slot, tag, input), Err(0x6982));
        b.verify_pin();
        assert!(
            b.authenticate_with(alg, slot, tag, input).is_ok(),
            "{alg:02x}"
        );
        // A VERIFY, then another command, then the use: 6982.
        b.verify_pin();
        b.metadata(slot);
        assert_eq!(b.authenticate_with(alg, slot, tag, input), Err(0x6982));
        // Touch denied: 6982.
        let deny: Arc<dyn TouchSource> = Arc::new(DenyTouch);
        b.card.set_touch_source(deny);
        b.verify_pin();
        assert_eq!(b.authenticate_with(alg, slot, tag, input), Err(0x6982));
        let approve: Arc<dyn TouchSource> = Arc::new(ApproveTouch);
        b.card.set_touch_source(approve);
    }
}
