//! Wake-ups across nodes (PostgreSQL): after an ingest commits events to
//! the pull queue, its writer sends `NOTIFY eventd_queue` with the accounts
//! concerned; each `serve` process keeps one connection LISTENing on that
//! channel and wakes the long polls of those accounts at once.
//!
//! The notification is sent right after the ingest's commit, in a small
//! transaction of its own (`synchronous_commit = off`), not inside the
//! ingest transaction: PostgreSQL serialises the commits of every
//! transaction that notifies (a database-wide lock from the queueing of the
//! notification until the end of the commit, WAL flush included), which
//! would make concurrent ingest commits wait for each other. A node that
//! dies between the two loses the wake-up only: the long polls' periodic
//! re-check finds the events.
//!
//! The listening connection is libpq's own (diesel's connection does not
//! expose its socket, and the thread must sleep on it, not spin).

use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;

use super::{Backend, DbConn, Store, StoreResult, RELAXED_BEGIN};

/// The channel of queue wake-ups; its payload is a comma list of account ids.
pub const CHANNEL: &str = "eventd_queue";
/// A notification's payload must stay under 8,000 bytes.
const MAX_PAYLOAD: usize = 7_000;
/// How long the listener sleeps on its socket before checking that it is
/// still wanted.
const TICK: Duration = Duration::from_secs(1);
/// How often an idle listening connection is checked with a round trip
/// (a dead peer otherwise goes unnoticed until TCP keepalive, hours).
const PING_EVERY: Duration = Duration::from_secs(30);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// What the listener reports to its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake<'a> {
    /// These accounts have new events.
    Accounts(&'a [i64]),
    /// The listener (re)connected: wake everyone, since notifications sent
    /// while it was not listening are lost.
    All,
    /// Nothing happened (sent every second, so the owner can say it is gone).
    Idle,
}

impl Store {
    /// Tells every node's listener that these accounts have new events in
    /// their pull queue. PostgreSQL only (nothing to do on SQLite).
    pub fn notify_queue(&self, accounts: &[i64]) -> StoreResult<()> {
        if self.backend != Backend::Postgres || accounts.is_empty() {
            return Ok(());
        }
        let mut payloads = vec![String::new()];
        for id in accounts {
            let last = payloads.last_mut().expect("one payload at least");
            if last.len() > MAX_PAYLOAD {
                payloads.push(String::new());
            }
            let last = payloads.last_mut().expect("one payload at least");
            if !last.is_empty() {
                last.push(',');
            }
            last.push_str(&id.to_string());
        }
        // One round trip: the payloads are digits and commas, safe as
        // literals in a simple-query batch (a transaction of three
        // statements would cost three).
        let mut sql = format!("{RELAXED_BEGIN};");
        for p in &payloads {
            sql.push_str(&format!(" SELECT pg_notify('{CHANNEL}', '{p}');"));
        }
        sql.push_str(" COMMIT");
        let mut conn = self.writer()?;
        if let DbConn::Pg(c) = &mut *conn {
            if let Err(e) = c.batch_execute(&sql) {
                // A failed statement leaves the batch's transaction open
                // (aborted): the connection goes back to the pool outside it.
                let _ = c.batch_execute("ROLLBACK");
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// On PostgreSQL, starts a thread that LISTENs for queue wake-ups and
    /// reports them to `wake` (see [`Wake`]) until `wake` returns false.
    /// `None` on SQLite (one process, whose ingest wakes its long polls).
    pub fn listen_queue(
        &self,
        wake: impl FnMut(Wake<'_>) -> bool + Send + 'static,
    ) -> Option<std::thread::JoinHandle<()>> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let conninfo = self.conninfo.clone();
        std::thread::Builder::new()
            .name("eventd-listen".into())
            .spawn(move || listen_loop(&conninfo, wake))
            .map_err(|e| tracing::warn!(error = %e, "cannot start the queue listener"))
            .ok()
    }
}

fn listen_loop(conninfo: &str, mut wake: impl FnMut(Wake<'_>) -> bool) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let conn = match Listener::connect(conninfo) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "queue listener cannot connect; long polls re-check the database meanwhile");
                let until = Instant::now() + backoff;
                backoff = (backoff * 2).min(RECONNECT_MAX);
                while Instant::now() < until {
                    std::thread::sleep(TICK.min(until - Instant::now()));
                    if !wake(Wake::Idle) {
                        return;
                    }
                }
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if !wake(Wake::All) {
            return;
        }
        let mut last_ping = Instant::now();
        loop {
            let got = conn.wait(TICK).and_then(|n| {
                if n.is_empty() && last_ping.elapsed() >= PING_EVERY {
                    last_ping = Instant::now();
                    conn.ping()?;
                }
                Ok(n)
            });
            let accounts: Vec<i64> = match got {
                Ok(payloads) => payloads
                    .iter()
                    .flat_map(|p| p.split(','))
                    .filter_map(|id| id.parse().ok())
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "queue listener lost its connection; reconnecting");
                    break;
                }
            };
            let keep = if accounts.is_empty() {
                wake(Wake::Idle)
            } else {
                wake(Wake::Accounts(&accounts))
            };
            if !keep {
                return;
            }
        }
    }
}

/// libpq prints notices (e.g. the server ending the connection) on stderr
/// unless told otherwise; errors reach the log through [`Listener::error`].
extern "C" fn ignore_notice(_: *mut std::ffi::c_void, _: *const std::ffi::c_char) {}

/// A libpq connection LISTENing on [`CHANNEL`], closed when dropped.
struct Listener(*mut pq_sys::PGconn);

impl Drop for Listener {
    fn drop(&mut self) {
        // SAFETY: the pointer came from PQconnectdb and is finished once.
        unsafe { pq_sys::PQfinish(self.0) }
    }
}

impl Listener {
    fn connect(conninfo: &str) -> Result<Listener, String> {
        let info = CString::new(conninfo).map_err(|_| "the database URL holds a NUL byte".to_string())?;
        // SAFETY: `info` is a valid C string; a null result is checked.
        let raw = unsafe { pq_sys::PQconnectdb(info.as_ptr()) };
        if raw.is_null() {
            return Err("out of memory".into());
        }
        let conn = Listener(raw);
        // SAFETY: `raw` is a live connection owned by `conn`; the processor
        // is a function that ignores its arguments.
        unsafe {
            pq_sys::PQsetNoticeProcessor(raw, Some(ignore_notice), std::ptr::null_mut());
            if pq_sys::PQstatus(raw) != pq_sys::ConnStatusType::CONNECTION_OK {
                return Err(conn.error());
            }
        }
        conn.exec(&format!("LISTEN {CHANNEL}"))?;
        Ok(conn)
    }

    /// libpq's last error message.
    fn error(&self) -> String {
        // SAFETY: PQerrorMessage returns a string owned by the live connection.
        let msg = unsafe { CStr::from_ptr(pq_sys::PQerrorMessage(self.0)) };
        msg.to_string_lossy().trim().to_string()
    }

    /// Runs one command (no result rows expected).
    fn exec(&self, sql: &str) -> Result<(), String> {
        let sql = CString::new(sql).map_err(|_| "NUL in SQL".to_string())?;
        // SAFETY: a live connection and a valid C string; the result is cleared.
        let ok = unsafe {
            let res = pq_sys::PQexec(self.0, sql.as_ptr());
            let status = pq_sys::PQresultStatus(res);
            pq_sys::PQclear(res);
            matches!(
                status,
                pq_sys::ExecStatusType::PGRES_COMMAND_OK | pq_sys::ExecStatusType::PGRES_TUPLES_OK
            )
        };
        if ok {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn ping(&self) -> Result<(), String> {
        self.exec("SELECT 1")
    }

    /// Sleeps on the socket until data arrives or `timeout` passes, then
    /// returns the payloads of the notifications received (maybe none).
    fn wait(&self, timeout: Duration) -> Result<Vec<String>, String> {
        // SAFETY: every call is on the live connection owned by `self`;
        // each notification is freed once, after its payload is copied.
        unsafe {
            let sock = pq_sys::PQsocket(self.0);
            if sock < 0 {
                return Err("no socket".into());
            }
            let end = pq_sys::PQgetCurrentTimeUSec() + timeout.as_micros() as i64;
            if pq_sys::PQsocketPoll(sock, 1, 0, end) < 0 {
                return Err(std::io::Error::last_os_error().to_string());
            }
            // Read even after a time-out: TLS may hold data the socket does not show.
            if pq_sys::PQconsumeInput(self.0) == 0 {
                return Err(self.error());
            }
            let mut payloads = Vec::new();
            loop {
                let n = pq_sys::PQnotifies(self.0);
                if n.is_null() {
                    break;
                }
                if !(*n).extra.is_null() {
                    payloads.push(CStr::from_ptr((*n).extra).to_string_lossy().into_owned());
                }
                pq_sys::PQfreemem(n.cast());
            }
            if pq_sys::PQstatus(self.0) != pq_sys::ConnStatusType::CONNECTION_OK {
                return Err(self.error());
            }
            Ok(payloads)
        }
    }
}
