//! Rows and conditions of the pull queue that the queue operations
//! (`queue.rs`), the status counters (`queue_status.rs`) and retention
//! (`retention.rs`) share: a batch row, a queue row's seq and trigger, the
//! pieces leased by open (and unswept) batches, the "seq is one of" condition.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::leases::{self, Mask, Piece};
use super::schema::batches;
use super::DbConn;
use crate::domain::Trigger;
use crate::on_conn;

/// A batch's state while its consumer holds it.
pub(super) const OPEN: &str = "open";
/// A batch marked read whose rows the sweeper has not deleted yet
/// (`Store::sweep_read_batches`, in `store/sweep.rs`): its events are out
/// of the queue's counts and stay leased to it, whatever its lease said,
/// until they are gone.
pub(super) const ACKED: &str = "acked";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = batches)]
pub(super) struct BatchRow {
    pub(super) id: String,
    pub(super) consumer: String,
    pub(super) state: String,
    pub(super) expires_at: i64,
    pub(super) event_count: i64,
    seqs: String,
    /// Member count per trigger (JSON), recorded at fetch; None for a batch
    /// made before the counts were.
    pub(super) trigger_counts: Option<String>,
}

impl BatchRow {
    pub(super) fn members(&self) -> Vec<i64> {
        decode_members(&self.seqs)
    }
}

/// A batch's member seqs as stored (`batches.seqs`): the runs of
/// consecutive seqs, `[[lo,hi],…]`. A batch is usually one run, so a few
/// bytes where the list of 10,000 seqs took ~70 KB to write (PostgreSQL
/// compressed it out of line: 2.6 ms of a fetch) and to read back.
pub(super) fn encode_members(seqs: &[i64]) -> String {
    let runs: Vec<[i64; 2]> = leases::runs(seqs).iter().map(|Piece(lo, hi, _)| [*lo, *hi]).collect();
    serde_json::to_string(&runs).expect("numbers serialize")
}

/// The member seqs, in order, of a stored list: runs (see
/// [`encode_members`]), or the plain list of seqs batches made before
/// were stored with.
pub(super) fn decode_members(stored: &str) -> Vec<i64> {
    if let Ok(runs) = serde_json::from_str::<Vec<[i64; 2]>>(stored) {
        return runs.into_iter().flat_map(|[lo, hi]| lo..=hi).collect();
    }
    serde_json::from_str(stored).unwrap_or_default()
}

/// A queue row's seq and trigger (what coverage checks need).
#[derive(QueryableByName)]
pub(super) struct SeqTrigger {
    #[diesel(sql_type = BigInt)]
    pub(super) seq: i64,
    #[diesel(sql_type = Text)]
    pub(super) trigger: String,
}

impl SeqTrigger {
    pub(super) fn mask(&self) -> Mask {
        self.trigger.parse::<Trigger>().map(leases::bit).unwrap_or(leases::ALL)
    }
}

/// The pieces leased by the account's open, unexpired batches and by its
/// batches marked read but not swept yet (but the one named `except`).
/// Reads one short row per such batch; a batch made before pieces were
/// recorded gives the runs of its member list.
pub(super) fn open_pieces(
    conn: &mut DbConn,
    account_id: i64,
    now: i64,
    except: Option<&str>,
) -> QueryResult<Vec<Piece>> {
    let rows: Vec<(String, String, i64, Option<String>)> = on_conn!(conn, |c| batches::table
        .filter(batches::account_id.eq(account_id))
        .filter(batches::state.eq_any([OPEN, ACKED]))
        .select((batches::id, batches::state, batches::expires_at, batches::pieces))
        .load(c))?;
    let mut pieces = Vec::new();
    // Member lists (up to ~70 KB each) are read only for the batches
    // without pieces.
    let mut listed = Vec::new();
    for (id, state, expires_at, p) in rows {
        match p {
            _ if Some(id.as_str()) == except => {}
            _ if state == OPEN && expires_at <= now => {}
            Some(p) => pieces.extend(serde_json::from_str::<Vec<Piece>>(&p).unwrap_or_default()),
            None => listed.push(id),
        }
    }
    if !listed.is_empty() {
        let lists: Vec<String> = on_conn!(conn, |c| batches::table
            .filter(batches::id.eq_any(&listed))
            .select(batches::seqs)
            .load(c))?;
        for seqs in lists {
            pieces.extend(leases::runs(
                &serde_json::from_str::<Vec<i64>>(&seqs).unwrap_or_default(),
            ));
        }
    }
    Ok(pieces)
}

/// SQL condition "seq is one of these". The range bound keeps the index
/// scan to the members' span: with `= ANY` alone PostgreSQL 15 walked far
/// more of a 6M-row index (a 10,000-row mark-read took 1.0-1.4 s; 6 ms with
/// the bound).
pub(super) fn seq_in(conn: &DbConn, seqs: &[i64]) -> String {
    let list = seqs.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let (lo, hi) = (
        seqs.iter().min().copied().unwrap_or(0),
        seqs.iter().max().copied().unwrap_or(-1),
    );
    match conn {
        DbConn::Pg(_) => format!("seq BETWEEN {lo} AND {hi} AND seq = ANY('{{{list}}}'::bigint[])"),
        DbConn::Sqlite(_) => format!("seq BETWEEN {lo} AND {hi} AND seq IN ({list})"),
    }
}

/// Above this many runs of consecutive seqs, a member list is matched with
/// one "seq is one of" condition instead of a range per run.
const MAX_RUNS: usize = 8;

/// Conditions that together match the rows of these seqs: one range per
/// run of consecutive seqs (exact: no other row can have a seq between two
/// consecutive integers), or a single [`seq_in`] when the list is
/// fragmented. A batch's members are usually one run, and a range read
/// costs far less than 10,000 separate lookups: a 10,000-row mark-read on
/// SQLite took 208 M instructions with `IN (…)` (an index seek per value,
/// plus parsing the list), see docs/PERFORMANCE.md.
pub(super) fn member_conds(conn: &DbConn, seqs: &[i64]) -> Vec<String> {
    let runs = leases::runs(seqs);
    if runs.len() > MAX_RUNS {
        return vec![seq_in(conn, seqs)];
    }
    runs.iter()
        .map(|Piece(lo, hi, _)| format!("seq BETWEEN {lo} AND {hi}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_stored_as_runs_and_read_back_in_either_form() {
        let seqs = [3, 4, 5, 9, 11, 12];
        assert_eq!(encode_members(&seqs), "[[3,5],[9,9],[11,12]]");
        assert_eq!(decode_members(&encode_members(&seqs)), seqs);
        assert_eq!(decode_members(&encode_members(&[])), Vec::<i64>::new());
        // As batches made by earlier versions stored them.
        assert_eq!(decode_members("[3,4,5,9]"), [3, 4, 5, 9]);
        assert_eq!(decode_members("[]"), Vec::<i64>::new());
    }
}
