//! API keys: random, recognisable (`evk_` prefix, so a leaked key can be
//! found by secret scanners), stored only as a SHA-256 hash. Keys carry
//! 238 bits of randomness, so a fast hash is enough (no password stretching).

use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "evk_";
const SECRET_LEN: usize = 40;

/// A new secret key and what is stored of it.
pub struct GeneratedKey {
    pub secret: String,
    pub hash: String,
    /// First characters, shown in listings so users can tell keys apart.
    pub display_prefix: String,
}

pub fn generate() -> GeneratedKey {
    let body: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();
    let secret = format!("{KEY_PREFIX}{body}");
    GeneratedKey {
        hash: hash(&secret),
        display_prefix: secret[..KEY_PREFIX.len() + 6].to_string(),
        secret,
    }
}

pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A short random identifier with a readable type prefix (`key_…`).
pub fn random_id(prefix: &str) -> String {
    let body: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect();
    format!("{prefix}_{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_unique_and_hashed() {
        let a = generate();
        let b = generate();
        assert!(a.secret.starts_with("evk_"));
        assert_eq!(a.secret.len(), 44);
        assert_ne!(a.secret, b.secret);
        assert_eq!(hash(&a.secret), a.hash);
        assert!(!a.hash.contains(&a.secret));
        assert!(a.secret.starts_with(&a.display_prefix));
        assert_eq!(a.display_prefix.len(), 10, "evk_ and six characters");
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn random_ids_carry_their_prefix_and_16_random_characters() {
        let a = random_id("key");
        assert!(a.starts_with("key_") && a.len() == 20, "{a}");
        assert!(a[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, random_id("key"));
    }
}
