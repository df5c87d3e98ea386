//! Opaque public ids. Deliveries are numbered by one sequence for every
//! account; showing those numbers would tell an account how much push
//! traffic the others have. The API shows `dlv_` and 32 hex digits
//! instead: the AES-128 encryption of (account id, row id) under a key of
//! the installation (kept in the database, so every node agrees). Without
//! the key an id says nothing (a block cipher is a pseudorandom
//! permutation); with it, an id decodes to its row only for the account
//! it was made for, so a foreign or altered id is simply unknown.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;

/// The prefix of delivery ids.
pub const DELIVERY: &str = "dlv_";

#[derive(Clone)]
pub struct IdCipher {
    aes: Aes128,
}

impl std::fmt::Debug for IdCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdCipher(<key>)")
    }
}

impl IdCipher {
    pub fn new(key: [u8; 16]) -> Self {
        IdCipher {
            aes: Aes128::new(&GenericArray::from(key)),
        }
    }

    /// A key from its hex form (32 hex digits), as stored.
    pub fn from_hex(hex_key: &str) -> Option<Self> {
        let bytes: [u8; 16] = hex::decode(hex_key).ok()?.try_into().ok()?;
        Some(Self::new(bytes))
    }

    /// `prefix` and the encrypted (account, id), in lowercase hex.
    pub fn encode(&self, prefix: &str, account_id: i64, id: i64) -> String {
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&account_id.to_be_bytes());
        block[8..].copy_from_slice(&id.to_be_bytes());
        let mut b = GenericArray::from(block);
        self.aes.encrypt_block(&mut b);
        format!("{prefix}{}", hex::encode(b))
    }

    /// The row id of a public id made for `account_id`; `None` for anything
    /// else (another prefix, not 32 hex digits, another account's id).
    pub fn decode(&self, prefix: &str, account_id: i64, public: &str) -> Option<i64> {
        let raw = public.strip_prefix(prefix)?;
        if raw.len() != 32 || !raw.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
            return None;
        }
        let bytes: [u8; 16] = hex::decode(raw).ok()?.try_into().ok()?;
        let mut b = GenericArray::from(bytes);
        self.aes.decrypt_block(&mut b);
        let owner = i64::from_be_bytes(b[..8].try_into().ok()?);
        let id = i64::from_be_bytes(b[8..].try_into().ok()?);
        (owner == account_id).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> IdCipher {
        IdCipher::from_hex("000102030405060708090a0b0c0d0e0f").unwrap()
    }

    #[test]
    fn round_trips_for_its_account_only() {
        let c = cipher();
        let id = c.encode(DELIVERY, 7, 12345);
        assert!(id.starts_with("dlv_") && id.len() == 36, "{id}");
        assert_eq!(c.decode(DELIVERY, 7, &id), Some(12345));
        assert_eq!(c.decode(DELIVERY, 8, &id), None, "another account's id is unknown");
        assert_eq!(c.decode("cur_", 7, &id), None);
        assert_eq!(c.decode(DELIVERY, 7, &id.to_uppercase().replace("DLV_", "dlv_")), None);
        assert_eq!(c.decode(DELIVERY, 7, "12345"), None);
        assert_eq!(c.decode(DELIVERY, 7, "dlv_zz"), None);
        // One digit changed decodes to another account: unknown.
        let mut altered = id.clone().into_bytes();
        altered[10] = if altered[10] == b'0' { b'1' } else { b'0' };
        assert_eq!(c.decode(DELIVERY, 7, std::str::from_utf8(&altered).unwrap()), None);
    }

    #[test]
    fn neighbouring_rows_do_not_look_alike() {
        let c = cipher();
        let (a, b) = (c.encode(DELIVERY, 1, 100), c.encode(DELIVERY, 1, 101));
        let same = a.bytes().zip(b.bytes()).skip(4).filter(|(x, y)| x == y).count();
        assert!(same < 12, "{a} {b}");
        // AES-128 of the FIPS-197 key on (1, 100) is fixed: ids survive restarts.
        assert_eq!(c.encode(DELIVERY, 1, 100), cipher().encode(DELIVERY, 1, 100));
        assert_ne!(
            IdCipher::new([9; 16]).encode(DELIVERY, 1, 100),
            c.encode(DELIVERY, 1, 100),
            "another installation's key gives other ids"
        );
    }
}
