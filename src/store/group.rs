//! Group commit for ingest: concurrent requests share one transaction.
//!
//! Each request hands its validated events to a channel and waits. Writer
//! threads take whatever is waiting (up to [`MAX_GROUP_EVENTS`]), store it
//! with [`Store::ingest_group`] in one transaction, and answer every request
//! of the group after that commit: so a 2xx still means "committed", but
//! sixty-four single-event requests cost one commit (one WAL flush) instead
//! of sixty-four. While one group commits, the next one fills.
//!
//! All-or-nothing stays per request: validation happens before a request
//! joins a group, and if a group's transaction fails, each of its requests
//! is retried alone, so one request's failure never fails its neighbours.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::events::{IngestJob, IngestOutcome};
use super::{Backend, Store, StoreError, StoreResult};
use crate::domain::NewEvent;

/// At most this many events go into one transaction (requests are never
/// split, so one request of 10,000 may make a group of its own).
pub const MAX_GROUP_EVENTS: usize = 10_000;

/// Requests waiting for a writer beyond this many wait to enter the queue.
const QUEUE_DEPTH: usize = 4096;

struct Pending {
    job: IngestJob,
    reply: oneshot::Sender<StoreResult<IngestOutcome>>,
}

/// The handle requests use; the writer threads stop when every handle is
/// dropped.
#[derive(Clone)]
pub struct GroupCommit {
    tx: SyncSender<Pending>,
}

impl GroupCommit {
    /// Starts the writers: one on SQLite (it has one writer anyway), two on
    /// PostgreSQL (one commits while the other gathers the next group).
    pub fn start(store: Store) -> GroupCommit {
        let (tx, rx) = mpsc::sync_channel::<Pending>(QUEUE_DEPTH);
        let rx = Arc::new(Mutex::new(rx));
        let writers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 2,
        };
        for n in 0..writers {
            let (store, rx) = (store.clone(), rx.clone());
            std::thread::Builder::new()
                .name(format!("ingest-writer-{n}"))
                .spawn(move || writer(&store, &rx))
                .expect("spawning an ingest writer thread");
        }
        GroupCommit { tx }
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
        match self.tx.try_send(pending) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => return Err(stopped()),
            // A full queue blocks the sender: wait off the async workers.
            Err(TrySendError::Full(pending)) => {
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(pending))
                    .await
                    .map_err(|e| StoreError::Connect(format!("worker thread failed: {e}")))?
                    .map_err(|_| stopped())?;
            }
        }
        answer.await.map_err(|_| stopped())?
    }
}

/// Takes the next group: blocks for the first request, then takes what is
/// already waiting. `None` when every handle is gone.
fn next_group(rx: &Mutex<Receiver<Pending>>) -> Option<Vec<Pending>> {
    let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
    let first = rx.recv().ok()?;
    let mut events = first.job.events.len();
    let mut group = vec![first];
    while events < MAX_GROUP_EVENTS {
        match rx.try_recv() {
            Ok(p) => {
                events += p.job.events.len();
                group.push(p);
            }
            Err(_) => break,
        }
    }
    Some(group)
}

fn writer(store: &Store, rx: &Mutex<Receiver<Pending>>) {
    while let Some(group) = next_group(rx) {
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
