//! Which database failures are not bugs: the database unreachable (a
//! restart, a network cut: every face answers 503 with `Retry-After`) and
//! out of space (507 `storage_full`, like the storage watermarks).
//!
//! After a connection failure the pooled connections are suspect: for a
//! while each is checked (`SELECT 1`) before it is handed out, so dead
//! ones are dropped and replaced once the database is back, and getting a
//! connection waits briefly instead of the pool's full timeout. Outside
//! such a window a checkout costs nothing extra.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error};

use crate::domain::time::now_ms;

/// `Retry-After` (seconds) of every face while the database is unreachable.
pub const UNAVAILABLE_RETRY_AFTER: u64 = 2;
/// `Retry-After` (seconds) of a refused ingest while storage is full.
pub const STORAGE_FULL_RETRY_AFTER: u64 = 60;

/// How long connections stay suspect after the last connection failure.
const SUSPECT_MS: i64 = 10_000;
/// Longest wait for a connection while they are suspect.
pub const SUSPECT_CHECKOUT: Duration = Duration::from_secs(2);

/// Until when (ms) connections are suspect. One per process: a process has
/// one database, and a test process running several only checks more.
static SUSPECT_UNTIL: AtomicI64 = AtomicI64::new(0);

/// A connection failed or could not be made.
pub fn note_unreachable() {
    SUSPECT_UNTIL.fetch_max(now_ms() + SUSPECT_MS, Ordering::Relaxed);
}

/// Whether a connection failed in the last [`SUSPECT_MS`].
pub fn suspect() -> bool {
    now_ms() < SUSPECT_UNTIL.load(Ordering::Relaxed)
}

/// The server ended or lost the connection, or is not accepting any
/// (PostgreSQL shutting down, starting, in recovery).
pub fn is_connection_lost(e: &Error) -> bool {
    match e {
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _) => true,
        Error::DatabaseError(_, info) => {
            let m = info.message();
            [
                "terminating connection due to administrator command",
                "the database system is shutting down",
                "the database system is starting up",
                "the database system is in recovery mode",
                "server closed the connection unexpectedly",
                "no connection to the server",
            ]
            .iter()
            .any(|p| m.contains(p))
        }
        _ => false,
    }
}

/// The database is out of space: PostgreSQL's disk_full (SQLSTATE 53100,
/// "could not extend file …: No space left on device", hint "Check free
/// disk space."), SQLite's SQLITE_FULL ("database or disk is full").
///
/// By text, because diesel 2.3 exposes neither: it reads PostgreSQL's
/// SQLSTATE only to pick one of a few `DatabaseErrorKind`s (53100 is
/// `Unknown`) and SQLite's extended code likewise. SQLite's text is fixed
/// (`sqlite3_errstr(SQLITE_FULL)`). PostgreSQL's follows the server's
/// `lc_messages`: on a server with translated messages a full disk is not
/// recognised (500 `internal_error`); `--max-db-size` refuses ingest before
/// it fills. Both texts were seen on real full filesystems
/// (`tests/disk_full.rs`).
pub fn is_out_of_space(e: &Error) -> bool {
    match e {
        Error::DatabaseError(_, info) => {
            let m = info.message();
            m.contains("No space left on device")
                || m.contains("database or disk is full")
                || info.hint().is_some_and(|h| h.contains("Check free disk space"))
        }
        _ => false,
    }
}

/// Another transaction's locks made this one fail, and it was rolled back:
/// running it again is all it takes. PostgreSQL's deadlock_detected (40P01,
/// "deadlock detected") and serialization_failure (40001). Two ingest
/// writers that insert the same new `external_id`s can deadlock on the
/// unique index; PostgreSQL then cancels one of them after its
/// `deadlock_timeout` (1 s by default).
///
/// A deadlock by text, like [`is_out_of_space`]: diesel maps 40P01 to
/// `Unknown`.
pub fn is_retryable(e: &Error) -> bool {
    match e {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::DatabaseErrorInformation;

    struct Info(&'static str, Option<&'static str>);

    impl DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            self.1
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn db(kind: DatabaseErrorKind, m: &'static str, hint: Option<&'static str>) -> Error {
        Error::DatabaseError(kind, Box::new(Info(m, hint)))
    }

    #[test]
    fn out_of_space_on_both_backends() {
        use DatabaseErrorKind::Unknown;
        let pg = db(
            Unknown,
            "could not extend file \"base/16384/16400\": No space left on device",
            Some("Check free disk space."),
        );
        assert!(is_out_of_space(&pg));
        assert!(is_out_of_space(&db(
            Unknown,
            "could not write",
            Some("Check free disk space.")
        )));
        assert!(is_out_of_space(&db(Unknown, "database or disk is full", None)));
        assert!(!is_out_of_space(&db(Unknown, "relation \"x\" does not exist", None)));
        assert!(!is_out_of_space(&Error::NotFound));
    }

    #[test]
    fn deadlocks_and_serialization_failures_are_retried() {
        use DatabaseErrorKind::{SerializationFailure, UniqueViolation, Unknown};
        assert!(is_retryable(&db(Unknown, "deadlock detected", None)));
        assert!(is_retryable(&db(
            SerializationFailure,
            "could not serialize access due to concurrent update",
            None
        )));
        assert!(!is_retryable(&db(UniqueViolation, "duplicate key value", None)));
        assert!(!is_retryable(&db(Unknown, "syntax error", None)));
        assert!(!is_retryable(&Error::NotFound));
    }

    #[test]
    fn lost_connections() {
        use DatabaseErrorKind::{ClosedConnection, Unknown};
        assert!(is_connection_lost(&db(ClosedConnection, "x", None)));
        assert!(is_connection_lost(&db(
            Unknown,
            "terminating connection due to administrator command",
            None
        )));
        assert!(is_connection_lost(&db(
            Unknown,
            "FATAL:  the database system is shutting down",
            None
        )));
        assert!(!is_connection_lost(&db(Unknown, "syntax error", None)));
        assert!(!is_connection_lost(&Error::NotFound));
    }
}
