//! Who is calling: the operator (token from the environment) or an account
//! (API key). Shared by every face (JSON, SOAP, PAINT), each of which maps
//! [`AuthError`] to its own error format. Failed attempts are counted per
//! client address ([`failures`]).

pub mod failures;
pub mod key_cache;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use subtle::ConstantTimeEq;

use failures::FailureLimiter;
use key_cache::KeyCache;

use crate::domain::keys;
use crate::store::accounts::Account;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub enum Principal {
    Operator,
    Account(Account),
}

/// Credentials as sent in an `Authorization` header. Their `Debug` form
/// leaves the secret out, so no `{:?}` can put it in a log.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Bearer(String),
    /// HTTP Basic: the password is the key; the user name is not checked
    /// (legacy clients put the account name or anything there).
    Basic {
        user: String,
        password: String,
    },
}

impl Credentials {
    pub fn secret(&self) -> &str {
        match self {
            Credentials::Bearer(s) => s,
            Credentials::Basic { password, .. } => password,
        }
    }

    /// Parses an `Authorization` header value.
    pub fn from_header(value: &str) -> Option<Credentials> {
        let (scheme, rest) = value.trim().split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return (!rest.is_empty()).then(|| Credentials::Bearer(rest.to_string()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let raw = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (user, password) = text.split_once(':')?;
            return Some(Credentials::Basic {
                user: user.to_string(),
                password: password.to_string(),
            });
        }
        None
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credentials::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("credentials required: send Authorization: Bearer <key> or HTTP Basic with the key as password")]
    Missing,
    #[error("invalid or revoked credentials")]
    Invalid,
    /// This client address failed too often: retry after this long.
    #[error("too many failed authentications from this address; retry in {} s", retry_after_secs(*.0))]
    Limited(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whole seconds to wait, at least 1 (for `Retry-After`).
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Shortest operator token accepted unless explicitly allowed.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    admin_token: Option<String>,
    failures: Arc<FailureLimiter>,
    /// Keys verified before, for ingest ([`Authenticator::cached_key`]).
    keys: Arc<KeyCache>,
}

impl Authenticator {
    pub fn new(store: Store, admin_token: Option<String>, failures: FailureLimiter) -> Self {
        Authenticator {
            store,
            admin_token: admin_token.filter(|t| !t.is_empty()),
            failures: Arc::new(failures),
            keys: Arc::default(),
        }
    }

    /// Resolves credentials (blocking: it may query the database). A client
    /// address that failed too often is refused without looking.
    pub fn authenticate(&self, creds: Option<&Credentials>, client: Option<IpAddr>) -> Result<Principal, AuthError> {
        let creds = creds.ok_or(AuthError::Missing)?;
        self.check_client(client)?;
        let secret = creds.secret();
        if let Some(token) = &self.admin_token {
            if bool::from(token.as_bytes().ct_eq(secret.as_bytes())) {
                return Ok(Principal::Operator);
            }
        }
        self.resolve_key(secret, client)
    }

    /// Resolves an API key alone (never the operator token).
    pub fn authenticate_key(&self, secret: &str, client: Option<IpAddr>) -> Result<Principal, AuthError> {
        self.check_client(client)?;
        self.resolve_key(secret, client)
    }

    fn resolve_key(&self, secret: &str, client: Option<IpAddr>) -> Result<Principal, AuthError> {
        let found = if secret.is_empty() {
            None
        } else {
            self.store.account_for_key(secret)?
        };
        match found {
            Some(account) => Ok(Principal::Account(account)),
            None => {
                self.failed(client);
                Err(AuthError::Invalid)
            }
        }
    }

    /// For ingest: an account key found in the cache of keys verified
    /// before, with its hash, without a database query (see `key_cache.rs`:
    /// the ingest transaction checks the key is still live). `None` when it
    /// is not cached: then [`Authenticator::authenticate`] and
    /// [`Authenticator::remember`].
    pub fn cached_key(
        &self,
        creds: Option<&Credentials>,
        client: Option<IpAddr>,
    ) -> Option<Result<(Account, String), AuthError>> {
        let hash = keys::hash(creds?.secret());
        let account = self.keys.get(&hash)?;
        Some(self.check_client(client).map(|()| (account, hash)))
    }

    /// Caches a key just found live for `account`; returns its hash.
    pub fn remember(&self, secret: &str, account: &Account) -> String {
        let hash = keys::hash(secret);
        self.keys.insert(hash.clone(), account.clone());
        hash
    }

    /// A cached key the database no longer knows as live (revoked): it is
    /// forgotten, and counted as a failed authentication of the client.
    pub fn forget(&self, key_hash: &str, client: Option<IpAddr>) {
        self.keys.remove(key_hash);
        self.failed(client);
    }

    /// `Limited` when the client address has no attempt left.
    pub fn check_client(&self, client: Option<IpAddr>) -> Result<(), AuthError> {
        match client.map(|ip| self.failures.check(ip)) {
            Some(Err(wait)) => Err(AuthError::Limited(wait)),
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication (also for credentials a face checks
    /// itself, such as a PAINT context id).
    pub fn failed(&self, client: Option<IpAddr>) {
        if let Some(ip) = client {
            self.failures.failed(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        assert_eq!(
            Credentials::from_header("Bearer evk_abc"),
            Some(Credentials::Bearer("evk_abc".into()))
        );
        // "acme:evk_x:y" — the password may itself contain a colon.
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("acme:evk_x:y")
        );
        assert_eq!(Credentials::from_header(&v).unwrap().secret(), "evk_x:y");
        assert_eq!(Credentials::from_header("Basic !!!"), None);
        assert_eq!(Credentials::from_header("Digest x"), None);
        assert_eq!(Credentials::from_header("Bearer"), None);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let basic = Credentials::Basic {
            user: "acme".into(),
            password: "evk_secret".into(),
        };
        for c in [Credentials::Bearer("evk_secret".into()), basic] {
            assert!(!format!("{c:?}").contains("evk_secret"), "{c:?}");
        }
    }
}
