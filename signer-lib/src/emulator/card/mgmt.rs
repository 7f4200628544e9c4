//! The management key's block cipher (single-block ECB, as the PIV
//! challenge-response uses it): 3DES or AES-128/192/256.

use cipher::{Block, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::secret::{ManagementKey, ManagementKeyAlgorithm};

/// Encrypt (or decrypt) exactly one block with the management key.
pub(crate) fn crypt_block(key: &ManagementKey, data: &[u8], encrypt: bool) -> Result<Vec<u8>> {
    match key.algorithm() {
        ManagementKeyAlgorithm::Tdes => one_block::<des::TdesEde3>(key.as_bytes(), data, encrypt),
        ManagementKeyAlgorithm::Aes128 => one_block::<aes::Aes128>(key.as_bytes(), data, encrypt),
        ManagementKeyAlgorithm::Aes192 => one_block::<aes::Aes192>(key.as_bytes(), data, encrypt),
        ManagementKeyAlgorithm::Aes256 => one_block::<aes::Aes256>(key.as_bytes(), data, encrypt),
    }
}

fn one_block<C>(key: &[u8], data: &[u8], encrypt: bool) -> Result<Vec<u8>>
where
    C: KeyInit + BlockCipherEncrypt + BlockCipherDecrypt,
{
    let cipher = C::new_from_slice(key).map_err(|_| Error::InvalidManagementKey {
        reason: "key length does not fit the algorithm".into(),
    })?;
    let mut block: Block<C> = Block::<C>::try_from(data).map_err(|_| Error::BadCommandData {
        reason: format!(
            "management key challenge must be one {}-byte block, got {} bytes",
            Block::<C>::default().len(),
            data.len()
        ),
    })?;
    if encrypt {
        cipher.encrypt_block(&mut block);
    } else {
        cipher.decrypt_block(&mut block);
    }
    let out = block.to_vec();
    block.zeroize();
    Ok(out)
}

/// Encrypt one block (helper that keeps the result in zeroizing memory).
pub(crate) fn encrypt(key: &ManagementKey, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    crypt_block(key, data, true).map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_for_every_algorithm() {
        for alg in [
            ManagementKeyAlgorithm::Tdes,
            ManagementKeyAlgorithm::Aes128,
            ManagementKeyAlgorithm::Aes192,
            ManagementKeyAlgorithm::Aes256,
        ] {
            let key = ManagementKey::new(alg, &vec![7u8; alg.key_len()]).unwrap();
            let plain = vec![0x42u8; alg.block_len()];
            let enc = crypt_block(&key, &plain, true).unwrap();
            assert_ne!(enc, plain);
            assert_eq!(crypt_block(&key, &enc, false).unwrap(), plain);
            assert!(matches!(
                crypt_block(&key, &[1, 2, 3], true),
                Err(Error::BadCommandData { .. })
            ));
        }
    }

    #[test]
    fn aes128_known_answer() {
        // FIPS-197 appendix C.1.
        let key = ManagementKey::from_hex(
            ManagementKeyAlgorithm::Aes128,
            "000102030405060708090a0b0c0d0e0f",
        )
        .unwrap();
        let plain = hex::decode("00112233445566778899aabbccddeeff").unwrap();
        assert_eq!(
            hex::encode(crypt_block(&key, &plain, true).unwrap()),
            "69c4e0d86a7b0430d8cdb78070b4c55a"
        );
    }
}
