//! Group commit for ingest: concurrent requests share one transaction.
//!
//! Each request hands its validated events to a channel and waits. Writer
//! threads take whatever is waiting (up to [`MAX_GROUP_EVENTS`], on
//! PostgreSQL [`MAX_PG_GROUP_EVENTS`]), store it
//! with [`Store::ingest_group`] in one transaction (on PostgreSQL, one
//! statement committed on its own), and answer every request
//! of the group after that commit: so a 2xx still means "committed", but
//! sixty-four single-event requests cost one commit (one WAL flush) instead
//! of sixty-four. While one group commits, the next one fills.
//!
//! All-or-nothing stays per request: validation happens before a request
//! joins a group, and if a group's transaction fails, each of its requests
//! is retried alone, so one request's failure never fails its neighbours.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::events::{IngestJob, IngestOutcome};
use super::{Backend, Store, StoreError, StoreResult};
use crate::domain::NewEvent;

/// At most this many events go into one transaction (requests are never
/// split, so one request of 10,000 may make a group of its own).
pub const MAX_GROUP_EVENTS: usize = 10_000;
/// The same on PostgreSQL, where a group is one statement whose arrays
/// (every payload) are built, bound and buffered whole on a pooled
/// connection: full bench runs peaked at 159-195 MB of RSS with 2,000 (two
/// runs) against 173-228 MB with 10,000 (three), at ingest and push rates
/// within the runs' noise.
pub const MAX_PG_GROUP_EVENTS: usize = 2_000;

/// Requests waiting for a writer beyond this many wait to enter the queue.
const QUEUE_DEPTH: usize = 4096;

/// A second writer starts a group while the first commits only when at
/// least this many events wait. Small groups are better stored one after
/// the other: two writers taking turns split what waits into twice as many
/// groups (each with its own statements and commit), which then queue on
/// the account's depth counters anyway. PostgreSQL, 64 clients of one
/// event: 20-21k ev/s with two writers taking turns, 28-30k with one; but
/// batches of 1,000 from 4 clients: 150k with two, 105k with one
/// (docs/PERFORMANCE.md, ninth session). With this rule: 26.5-28k and
/// 145-152k; 64-256 measured, 256 kept batches of 100 (4 clients) to one
/// writer (69-77k against 90-93k).
const OVERLAP_MIN_EVENTS: usize = 100;

struct Pending {
    job: IngestJob,
    reply: oneshot::Sender<StoreResult<IngestOutcome>>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Pending>,
    /// Events in `waiting`.
    waiting_events: usize,
    /// Writers storing a group now.
    busy: usize,
    /// Writers waiting for work.
    idle: usize,
    /// Every handle is gone: the writers finish what waits and stop.
    closed: bool,
}

impl State {
    /// Whether an idle writer may take a group now.
    fn may_start(&self) -> bool {
        !self.waiting.is_empty() && (self.busy == 0 || self.waiting_events >= OVERLAP_MIN_EVENTS)
    }
}

#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    /// A writer may have work: a request came, a writer finished, or closed.
    work: Condvar,
    /// The queue has room again.
    room: Condvar,
    /// Most events per group (a larger request is a group of its own).
    max_events: usize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a request, waiting while the queue is full. Err(p) when the
    /// writers stopped.
    fn put(&self, p: Pending, wait: bool) -> Result<(), Option<Pending>> {
        let mut st = self.lock();
        while st.waiting.len() >= QUEUE_DEPTH && !st.closed {
            if !wait {
                return Err(Some(p));
            }
            st = self.room.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.closed {
            return Err(None);
        }
        st.waiting_events += p.job.events.len();
        st.waiting.push_back(p);
        // Wake a writer only when it may start: a wake-up per request that
        // finds the other writer busy cost a fifth of the single-event rate.
        let wake = st.idle > 0 && st.may_start();
        drop(st);
        if wake {
            self.work.notify_one();
        }
        Ok(())
    }

    /// Takes the next group: whole requests in arrival order, up to
    /// `max_events`, once no other writer is busy or enough events
    /// wait ([`OVERLAP_MIN_EVENTS`]). `None` once closed and drained.
    fn take(&self) -> Option<Vec<Pending>> {
        let mut st = self.lock();
        loop {
            if st.may_start() || (st.closed && !st.waiting.is_empty()) {
                break;
            }
            if st.closed {
                return None;
            }
            st.idle += 1;
            st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
            st.idle -= 1;
        }
        let mut events = 0;
        let mut group = Vec::new();
        while let Some(p) = st.waiting.front() {
            let n = p.job.events.len();
            if !group.is_empty() && events + n > self.max_events {
                break;
            }
            events += n;
            group.extend(st.waiting.pop_front());
        }
        st.waiting_events -= events;
        st.busy += 1;
        drop(st);
        self.room.notify_all();
        Some(group)
    }

    /// A writer's group is stored. (It takes the next group itself, so
    /// the other writer is not woken for it.)
    fn done(&self) {
        self.lock().busy -= 1;
    }

    fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
        self.room.notify_all();
    }
}

/// Closes the queue when the last handle goes.
struct Handles(Arc<Queue>);

impl Drop for Handles {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The handle requests use; the writer threads stop when every handle is
/// dropped.
#[derive(Clone)]
pub struct GroupCommit {
    queue: Arc<Handles>,
}

impl GroupCommit {
    /// Starts the writers: one on SQLite (it has one writer anyway), two on
    /// PostgreSQL (the second for large groups, see [`OVERLAP_MIN_EVENTS`]).
    pub fn start(store: Store) -> GroupCommit {
        let (writers, max_events) = match store.backend() {
            Backend::Sqlite => (1, MAX_GROUP_EVENTS),
            Backend::Postgres => (2, MAX_PG_GROUP_EVENTS),
        };
        let queue = Arc::new(Queue {
            max_events,
            ..Queue::default()
        });
        for n in 0..writers {
            let (store, queue) = (store.clone(), queue.clone());
            std::thread::Builder::new()
                .name(format!("ingest-writer-{n}"))
                .spawn(move || writer(&store, &queue))
                .expect("spawning an ingest writer thread");
        }
        GroupCommit {
            queue: Arc::new(Handles(queue)),
        }
    }

    /// Stores one request's events; answers after the commit that holds them.
    /// `key_hash` (the caller's API key) is checked live in that
    /// transaction.
    pub async fn ingest(
        &self,
        account_id: i64,
        events: Vec<NewEvent>,
        key_hash: Option<String>,
    ) -> StoreResult<IngestOutcome> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            job: IngestJob {
                account_id,
                events,
                key_hash,
            },
            reply,
        };
        let stopped = || StoreError::Connect("the ingest writer stopped".into());
        match self.queue.0.put(pending, false) {
            Ok(()) => {}
            Err(None) => return Err(stopped()),
            // A full queue blocks the sender: wait off the async workers.
            Err(Some(pending)) => {
                let queue = self.queue.0.clone();
                tokio::task::spawn_blocking(move || queue.put(pending, true))
                    .await
                    .map_err(|e| StoreError::Connect(format!("worker thread failed: {e}")))?
                    .map_err(|_| stopped())?;
            }
        }
        answer.await.map_err(|_| stopped())?
    }
}

fn writer(store: &Store, queue: &Queue) {
    while let Some(group) = queue.take() {
        // A panic (a bug) fails the group's requests, whose replies are
        // dropped ("the ingest writer stopped"), and not the writer: on
        // SQLite it is the only one, and every later request would wait.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(store, group))).is_err() {
            tracing::error!("storing an ingest group panicked; its requests failed");
        }
        queue.done();
    }
}

/// Stores one group and answers its requests.
fn commit(store: &Store, group: Vec<Pending>) {
    let (jobs, replies): (Vec<IngestJob>, Vec<_>) = group.into_iter().map(|p| (p.job, p.reply)).unzip();
    match store.ingest_group(&jobs) {
        Ok(outcomes) => {
            let mut woken: Vec<i64> = jobs
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| o.queued > 0)
                .map(|(j, _)| j.account_id)
                .collect();
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
            notify(store, &mut woken);
        }
        // No connection, or no space: retrying each alone would only
        // fail again.
        Err(e) if e.is_unavailable() || e.is_storage_full() => {
            let message = e.to_string();
            for reply in replies {
                let m = message.clone();
                let _ = reply.send(Err(match e {
                    StoreError::StorageFull(_) => StoreError::StorageFull(m),
                    StoreError::OutOfSpace(_) => StoreError::OutOfSpace(m),
                    _ => StoreError::Unavailable(m),
                }));
            }
        }
        // The whole group rolled back: each request alone, so a failure
        // is reported only to the request that causes it.
        Err(e) if jobs.len() > 1 => {
            tracing::warn!(error = %e, requests = jobs.len(), "ingest group failed; retrying its requests one by one");
            let mut woken = Vec::new();
            for (job, reply) in jobs.into_iter().zip(replies) {
                let r = store
                    .ingest_group(std::slice::from_ref(&job))
                    .map(|mut o| o.pop().unwrap_or_default());
                if r.as_ref().is_ok_and(|o| o.queued > 0) {
                    woken.push(job.account_id);
                }
                let _ = reply.send(r);
            }
            notify(store, &mut woken);
        }
        Err(e) => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// Wakes the long polls of these accounts on every node (PostgreSQL's
/// NOTIFY, after the commit: see `listen.rs`). A failure costs only the
/// wake-up: long polls re-check the database periodically.
fn notify(store: &Store, accounts: &mut Vec<i64>) {
    accounts.sort_unstable();
    accounts.dedup();
    if let Err(e) = store.notify_queue(accounts) {
        tracing::debug!(error = %e, "queue wake-up not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Pending {
        Pending {
            job: IngestJob {
                account_id: 1,
                events: Vec::new(),
                key_hash: None,
            },
            reply: oneshot::channel().0,
        }
    }

    fn request_of(n: usize) -> Pending {
        let mut p = request();
        p.job.events = (0..n)
            .map(|i| NewEvent {
                id: i.to_string(),
                trigger: crate::domain::Trigger::Open,
                received_at_ms: 0,
                external_id: None,
                payload: "{}".into(),
            })
            .collect();
        p
    }

    #[test]
    fn a_group_holds_whole_requests_up_to_its_cap() {
        let queue = Queue {
            max_events: 2_000,
            ..Queue::default()
        };
        for n in [1_500, 400, 200, 2_500] {
            queue.put(request_of(n), false).map_err(|_| "full").unwrap();
        }
        let sizes = |g: Vec<Pending>| g.iter().map(|p| p.job.events.len()).collect::<Vec<_>>();
        assert_eq!(
            sizes(queue.take().unwrap()),
            vec![1_500, 400],
            "the next request would pass the cap"
        );
        queue.done();
        assert_eq!(sizes(queue.take().unwrap()), vec![200], "never split a request");
        queue.done();
        assert_eq!(sizes(queue.take().unwrap()), vec![2_500], "a larger request alone");
    }

    #[test]
    fn a_second_writer_starts_only_on_enough_waiting_events() {
        let mut st = State::default();
        assert!(!st.may_start(), "nothing waits");
        st.waiting.push_back(request());
        st.waiting_events = 1;
        assert!(st.may_start(), "nobody busy");
        st.busy = 1;
        assert!(!st.may_start(), "a small group waits for the busy writer");
        st.waiting_events = OVERLAP_MIN_EVENTS;
        assert!(st.may_start(), "a large one starts beside it");
    }
}
