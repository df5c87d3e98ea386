//! Verified API keys for ingest: the SHA-256 of a key already found live in
//! the database, with its account, so that a single-event ingest request
//! costs no database query (and no hop to a blocking thread) to know its
//! account. Revocation is not weakened: an ingest authenticated from here
//! carries the key's hash, and the group commit's transaction checks that
//! the key is still live (one query per group, see `store/events.rs`), so a
//! key revoked on any node or by the CLI stops ingesting from the commit of
//! its revocation, as before. Bounded: when full, it starts again empty.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::accounts::Account;

/// Keys remembered at most (a few hundred bytes each).
pub const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct KeyCache {
    map: Mutex<HashMap<String, Account>>,
}

impl KeyCache {
    pub fn get(&self, key_hash: &str) -> Option<Account> {
        self.lock().get(key_hash).cloned()
    }

    pub fn insert(&self, key_hash: String, account: Account) {
        let mut map = self.lock();
        if map.len() >= CAPACITY && !map.contains_key(&key_hash) {
            map.clear();
        }
        map.insert(key_hash, account);
    }

    /// Forgets a key the database no longer knows as live.
    pub fn remove(&self, key_hash: &str) {
        self.lock().remove(key_hash);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Account>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: i64) -> Account {
        Account {
            id,
            name: format!("a{id}"),
            created_at: 0,
        }
    }

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let c = KeyCache::default();
        c.insert("h1".into(), account(1));
        assert_eq!(c.get("h1").map(|a| a.id), Some(1));
        c.remove("h1");
        assert!(c.get("h1").is_none());
        for i in 0..CAPACITY as i64 {
            c.insert(format!("k{i}"), account(i));
        }
        assert_eq!(c.lock().len(), CAPACITY);
        c.insert("one more".into(), account(-1));
        assert_eq!(c.lock().len(), 1);
        assert_eq!(c.get("one more").map(|a| a.id), Some(-1));
    }
}
