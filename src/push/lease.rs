//! The worker's leases on the deliveries it holds. A claim leases rows for
//! `--push-lease` (60 s by default, short so that a crashed worker's
//! deliveries are retried soon); a heartbeat renews every row still held
//! every third of that, for as long as it is held (claimed ahead, in
//! flight, or its result not yet written). A request never outlives its
//! lease: when renewals fail (the database unreachable) or another worker
//! took a row whose lease ran out, the request still waiting is not sent,
//! and one in flight is abandoned a quarter of a lease before the end, so
//! two workers never send one delivery at the same time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::time::now_ms;
use crate::store::Store;

pub struct Leases {
    lease_ms: i64,
    /// (account, delivery id) → when its lease ends, as last written.
    held: Mutex<HashMap<(i64, i64), i64>>,
}

impl Leases {
    pub fn new(lease: Duration) -> Leases {
        Leases {
            lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 4).max(100),
            held: Mutex::default(),
        }
    }

    /// The `lease_until` of a claim made now, and the time it was taken.
    pub fn for_claim(&self) -> i64 {
        now_ms() + self.lease_ms
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i64, i64), i64>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records rows a claim leased until `until`.
    pub fn hold(&self, account_id: i64, ids: impl IntoIterator<Item = i64>, until: i64) {
        let mut held = self.lock();
        for id in ids {
            held.insert((account_id, id), until);
        }
    }

    /// Forgets rows whose result is written (or given back).
    pub fn forget(&self, account_id: i64, ids: impl IntoIterator<Item = i64>) {
        let mut held = self.lock();
        for id in ids {
            held.remove(&(account_id, id));
        }
    }

    /// When the lease of these rows ends, as far as this worker knows (the
    /// earliest of them; 0 for rows it no longer holds).
    fn end(&self, account_id: i64, ids: &[i64]) -> i64 {
        let held = self.lock();
        ids.iter()
            .map(|id| held.get(&(account_id, *id)).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    fn margin(&self) -> i64 {
        self.lease_ms / 4
    }

    /// Runs `send` unless the rows' lease is too close to its end, and
    /// abandons it when the lease comes within a quarter of its end without
    /// being renewed. `None`: not sent, or abandoned.
    pub async fn guard<T>(&self, account_id: i64, ids: &[i64], send: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(send);
        loop {
            let left = self.end(account_id, ids) - self.margin() - now_ms();
            if left <= 0 {
                return None;
            }
            tokio::select! {
                out = &mut send => return Some(out),
                _ = tokio::time::sleep(Duration::from_millis(left as u64)) => {}
            }
        }
    }

    /// Renews every held row every third of a lease, until `stop`.
    pub async fn heartbeat(&self, store: Store, worker: String, mut stop: watch::Receiver<bool>) {
        let every = Duration::from_millis((self.lease_ms / 3).max(30) as u64);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() || stop.has_changed().is_err() {
                return;
            }
            let mut by_account: HashMap<i64, Vec<i64>> = HashMap::new();
            for (account, id) in self.lock().keys() {
                by_account.entry(*account).or_default().push(*id);
            }
            if by_account.is_empty() {
                continue;
            }
            let until = self.for_claim();
            let (s, w) = (store.clone(), worker.clone());
            let renewed = tokio::task::spawn_blocking(move || s.renew_leases(&w, &by_account, until)).await;
            match renewed {
                Ok(Ok(rows)) => {
                    let mut held = self.lock();
                    for key in rows {
                        if let Some(end) = held.get_mut(&key) {
                            *end = (*end).max(until);
                        }
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "push worker cannot renew its leases"),
                Err(e) => tracing::warn!(error = %e, "lease renewal panicked"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_send_is_abandoned_when_its_lease_is_not_renewed() {
        let leases = Leases::new(Duration::from_millis(400));
        leases.hold(1, [7, 8], now_ms() + 400);
        // Finishes inside the lease.
        assert_eq!(leases.guard(1, &[7, 8], async { 5 }).await, Some(5));
        // Never finishes: abandoned a quarter of the lease before its end.
        let started = std::time::Instant::now();
        let out = leases.guard(1, &[7], std::future::pending::<()>()).await;
        assert_eq!(out, None);
        assert!(started.elapsed() < Duration::from_millis(400));
        // Rows not held (any more) are never sent.
        leases.forget(1, [8]);
        assert_eq!(leases.guard(1, &[7, 8], async { 5 }).await, None);
    }

    #[test]
    fn a_claim_is_leased_for_the_lease_from_now() {
        // README: --push-lease, 60 s by default.
        let leases = Leases::new(Duration::from_secs(60));
        let before = now_ms();
        let until = leases.for_claim();
        assert!(
            (before + 60_000..=now_ms() + 60_000).contains(&until),
            "{until} vs {before}"
        );
    }

    #[tokio::test]
    async fn nothing_is_sent_within_a_quarter_of_a_lease_of_its_end() {
        let leases = Leases::new(Duration::from_millis(400));
        // 60 ms left of a 400 ms lease: inside the last quarter (100 ms).
        leases.hold(1, [7], now_ms() + 60);
        assert_eq!(leases.guard(1, &[7], async { 5 }).await, None);
        // A send that never finishes is abandoned 100 ms before the end.
        leases.hold(1, [7], now_ms() + 400);
        let started = std::time::Instant::now();
        assert_eq!(leases.guard(1, &[7], std::future::pending::<()>()).await, None);
        assert!(
            started.elapsed() < Duration::from_millis(360),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn the_heartbeat_stops_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(dir.path().join("t.db").to_str().unwrap(), 2).unwrap();
        store.migrate().unwrap();
        let leases = std::sync::Arc::new(Leases::new(Duration::from_millis(300)));
        leases.hold(1, [7], leases.for_claim());
        let (tx, rx) = watch::channel(false);
        let l = leases.clone();
        let beat = tokio::spawn(async move { l.heartbeat(store, "w1".into(), rx).await });
        tx.send(true).unwrap();
        // Until it returns or a deadline far beyond a beat (100 ms).
        tokio::time::timeout(Duration::from_secs(5), beat)
            .await
            .expect("heartbeat still running")
            .unwrap();
    }

    #[tokio::test]
    async fn a_row_whose_result_is_written_is_not_sent_again() {
        let leases = Leases::new(Duration::from_secs(60));
        leases.hold(1, [7, 8], leases.for_claim());
        assert_eq!(leases.guard(1, &[7, 8], async { 5 }).await, Some(5));
        leases.forget(1, [8]);
        assert_eq!(leases.guard(1, &[7], async { 5 }).await, Some(5));
        assert_eq!(leases.guard(1, &[8], async { 5 }).await, None);
        assert_eq!(
            leases.guard(2, &[7], async { 5 }).await,
            None,
            "another account's row 7"
        );
    }
}
