//! What a store operation can fail with, and how the faces tell the cases
//! apart (unavailable, out of space, retryable, a unique key taken).

use diesel::r2d2;

use super::failure;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(diesel::result::Error),
    /// The connection was lost or refused (see [`failure`]).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A storage watermark is reached: ingest is refused before the disk
    /// is full (fetch and mark-read go on).
    #[error("storage full: {0}")]
    StorageFull(String),
    /// The database itself ran out of space: this statement failed, and
    /// every write (a claim, a mark-read too) may fail until space is added.
    #[error("database out of space: {0}")]
    OutOfSpace(String),
    #[error("database unavailable: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        if failure::is_connection_lost(&e) {
            failure::note_unreachable();
            StoreError::Unavailable(e.to_string())
        } else if failure::is_out_of_space(&e) {
            tracing::warn!(error = %e, "the database is out of space");
            StoreError::OutOfSpace(e.to_string())
        } else {
            StoreError::Db(e)
        }
    }
}

impl StoreError {
    /// The database cannot be reached now (503 with `Retry-After`).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Pool(_) | StoreError::Connect(_) | StoreError::Unavailable(_)
        )
    }

    /// Refused for lack of space: a watermark, or the database's own error
    /// (507 `storage_full`).
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::StorageFull(_) | StoreError::OutOfSpace(_))
    }

    /// Rolled back because of another transaction (a deadlock): may be run
    /// again as it is.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Db(e) if failure::is_retryable(e))
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            StoreError::Db(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
