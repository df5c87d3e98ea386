//! Delivery storage (SPEC §6: http push, email, FTP), by concern:
//! - [`destinations`]: per-trigger destinations (settings, signing secret,
//!   health: active/suspended, failure streak, Retry-After pause);
//! - [`claims`]: which destinations have due deliveries, and leasing them
//!   to a worker;
//! - [`results`]: writing back what each request did (attempt log, delivery
//!   state, destination health);
//! - [`log`]: the deliveries (one row per event to push, created in the
//!   ingest transaction) and their attempt log as the API shows them,
//!   replay and pruning;
//! - [`parcels`]: email digest and FTP periods closed into one delivery
//!   (mail or file) each.
//!
//! Claiming: a worker marks due rows with `lease_until`/`claimed_by` in one
//! short transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent
//! workers on any node take disjoint rows; SQLite: the single-writer
//! `BEGIN IMMEDIATE` transaction). A row whose lease ran out (its worker
//! died) is claimable again. Results are written back in batches, and only
//! for rows still claimed by the worker that reports them.

/// Runs `$body` on the connection `$c` with `$f` bound to the filter "the
/// rows `$ids` (a slice of delivery ids) of the account `$account` still
/// claimed by `$worker`". On PostgreSQL every part is a typed expression
/// (`id = ANY($n)`), so the statement is prepared once per connection and
/// reused, and the ids' range bounds the rows any plan reads: with stale
/// statistics (a table that grew since its last ANALYZE) PostgreSQL read
/// every delivery of the account through a bitmap of `account_id` alone and
/// filtered the ids out of them, 65 ms for 560 rows of 100,000 (auto_explain,
/// docs/PERFORMANCE.md, eighth session). On SQLite the account term is
/// [`of_account`]'s `+account_id`, and `id` is the rowid.
macro_rules! claimed_rows {
    ($conn:expr, $account:expr, $ids:expr, $worker:expr, |$c:ident, $f:ident| $body:expr) => {
        match $conn {
            $crate::store::DbConn::Pg($c) => {
                let ids: &[i64] = $ids;
                let lo = ids.iter().copied().min().unwrap_or(0);
                let hi = ids.iter().copied().max().unwrap_or(0);
                let $f = $crate::store::schema::deliveries::account_id
                    .eq($account)
                    .and($crate::store::schema::deliveries::id.ge(lo))
                    .and($crate::store::schema::deliveries::id.le(hi))
                    .and($crate::store::schema::deliveries::id.eq_any(ids))
                    .and($crate::store::schema::deliveries::claimed_by.eq($worker));
                $body
            }
            $crate::store::DbConn::Sqlite($c) => {
                let $f =
                    diesel::dsl::sql::<diesel::sql_types::Bool>(&$crate::store::push::sqlite_account_term($account))
                        .and($crate::store::schema::deliveries::id.eq_any($ids))
                        .and($crate::store::schema::deliveries::claimed_by.eq($worker));
                $body
            }
        }
    };
}

pub mod claims;
pub mod destinations;
pub mod log;
pub mod parcels;
pub mod results;

pub use claims::{Claim, ClaimedRow};
pub use destinations::{DestinationKey, HttpPut, PushStatus, ACTIVE, SUSPENDED};
pub(crate) use log::NewDelivery;
pub use log::{AttemptRow, AttemptsByDelivery, DeliveryFilter, DeliveryRow, DEAD, DELIVERED, PENDING, STATUSES};
pub use parcels::{MemberRow, BATCHED, OPEN};
pub use results::{AttemptOutcome, OutcomeKind};

use diesel::dsl::sql;
use diesel::expression::SqlLiteral;
use diesel::sql_types::Bool;

use crate::store::DbConn;

/// "The row is the account's": the condition that goes with `id IN (…)`
/// when deliveries are named by id. On SQLite (where `id` is the rowid)
/// the term is written `+account_id` so it cannot use an index: with more
/// than a few ids and no statistics, SQLite otherwise walked every
/// delivery of the account through `deliveries_event (account_id, …)`
/// instead of looking the ids up (EXPLAIN QUERY PLAN; callgrind: 200-255 k
/// instructions per delivery in the claim and in the result writing, and
/// growing with the account's deliveries).
pub(crate) fn of_account(conn: &DbConn, account_id: i64) -> SqlLiteral<Bool> {
    sql(&account_term(conn, account_id))
}

/// [`of_account`] as SQL text.
pub(crate) fn account_term(conn: &DbConn, account_id: i64) -> String {
    match conn {
        DbConn::Sqlite(_) => sqlite_account_term(account_id),
        DbConn::Pg(_) => format!("account_id = {account_id}"),
    }
}

/// SQLite's form of [`account_term`]: `+account_id`, which no index serves.
pub(crate) fn sqlite_account_term(account_id: i64) -> String {
    format!("+account_id = {account_id}")
}
