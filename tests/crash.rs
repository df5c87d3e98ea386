//! Crash safety (docs/RELIABILITY.md): concurrent ingest, fetch/mark-read
//! and push against the `eventd` binary, SIGKILLed at random moments and
//! restarted on the same database, cycle after cycle. Afterwards every
//! event acknowledged with 202 has been delivered (fetched, or answered 2xx
//! by the push receiver), no event was ever in two open batches at once (or
//! fetched again after its batch was marked read), no delivery was marked
//! delivered without a 2xx at the receiver, and none was sent twice at once.
//!
//! `cargo test --test crash` runs a few cycles per backend. The long run:
//! `EVENTD_CRASH_CYCLES=200 cargo test --release --test crash -- --nocapture`
//! (`EVENTD_CRASH_SEED` replays a run's random choices of kill moments and
//! batch sizes; the interleaving of the processes is not replayable).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Ledger, Node, Workload};
use common::{fresh_database, Backend};
use rand::{Rng, SeedableRng};

both!(acknowledged_events_survive_sigkill_at_random_moments);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn acknowledged_events_survive_sigkill_at_random_moments(b: Backend) {
    let cycles = env_u64("EVENTD_CRASH_CYCLES", 4);
    let seed = env_u64("EVENTD_CRASH_SEED", rand::random::<u32>() as u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (db, tmp) = fresh_database(b);
    let _pg = common::drop_pg_later(b, &db);
    let logs = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let ledger = Ledger::start().await;
    // Some answers are slow (kills land while requests are in flight), some fail.
    ledger.set_delay(0, 150);
    ledger
        .state
        .fail_per_mille
        .store(100, std::sync::atomic::Ordering::Relaxed);
    // A lost lease comes back within seconds, so the drain stays short.
    let flags = [
        "--push-retry-schedule",
        "50ms*1000",
        "--push-poll-interval",
        "20ms",
        "--push-lease",
        "2s",
    ];
    let node = Node::start(&db, logs.path(), &flags);
    node.up(&client).await;
    let work = Workload::setup(&node.base, &ledger, 3).await;
    let tasks = work.run(2, 3, seed);
    let started = Instant::now();
    let mut node = Some(node);
    for cycle in 0..cycles {
        let n = node.take().unwrap_or_else(|| Node::start(&db, logs.path(), &flags));
        n.up(&client).await;
        work.set_targets(vec![n.base.clone()]);
        let mut n = n;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..1500))).await;
        n.kill();
        work.set_targets(vec![]);
        if cycles > 20 && cycle % 20 == 19 {
            eprintln!("{b:?}: {} cycles, {:?}", cycle + 1, started.elapsed());
        }
    }
    let last = Node::start(&db, logs.path(), &flags);
    last.up(&client).await;
    work.set_targets(vec![last.base.clone()]);
    let summary = work.drain_and_check(&ledger, tasks).await;
    eprintln!(
        "{b:?}, seed {seed}: {cycles} SIGKILLs in {:?}; {summary}",
        started.elapsed()
    );
    drop(tmp);
}
