//! `eventd pull`: a ready-made client of the JSON pull API. It fetches
//! batches, writes each one durably ([`sink`]) and only then marks it read,
//! so a crash in between makes the server hand the same batch out again
//! (same consumer, same lease ⇒ same batch id): events may be written twice,
//! never lost. Talks HTTP only; of the server it knows the domain types.

mod sink;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::domain::Trigger;
pub use sink::{Format, Sink};

/// Settings of `eventd pull`.
#[derive(Debug, Clone, Args)]
pub struct PullSettings {
    /// Base URL of the eventd server (e.g. https://events.example.com).
    #[arg(long, env = "EVENTD_SERVER")]
    pub server: String,
    /// The account's API key (prefer the environment variable: a command
    /// line is visible to other users of the machine).
    #[arg(long, env = "EVENTD_KEY", hide_env_values = true)]
    pub key: String,
    /// Consumer name: a rerun under the same name gets the batch a crashed
    /// run left unacknowledged; different names read in parallel.
    #[arg(long, env = "EVENTD_CONSUMER", default_value = "default")]
    pub consumer: String,
    /// Only these triggers (comma list or repeated; default all).
    #[arg(long, value_delimiter = ',')]
    pub triggers: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// `-` for stdout, a directory (existing, or a path ending in `/`) for
    /// one file per batch named after it, or a file batches are appended to.
    #[arg(long, default_value = "-")]
    pub out: String,
    /// Keep waiting for new events (long polls) instead of stopping when the
    /// queue is empty; SIGINT/SIGTERM stop after the batch in hand.
    #[arg(long)]
    pub follow: bool,
    /// Events per batch.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub size: u32,
    /// Lease of each batch: the time allowed to write it before the server
    /// hands it to someone else.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=43_200))]
    pub lease_seconds: u32,
}

/// Long poll of `--follow` (the server's maximum).
const WAIT_SECONDS: u64 = 20;
/// Attempts of one request on network errors, 429 and 5xx before giving up
/// (`--follow` never gives up).
const ATTEMPTS: u32 = 5;
/// Test hook: abort right after the first batch is written, before it is
/// marked read, as a crash would.
const CRASH_AFTER_WRITE: &str = "EVENTD_PULL_TEST_CRASH_AFTER_WRITE";

#[derive(Deserialize)]
struct Batch {
    batch_id: Option<String>,
    remaining: i64,
    events: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// An error answer of the server.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {status} {detail}")]
struct ServerError {
    url: String,
    status: u16,
    detail: String,
}

/// What went wrong with one request: worth another try, or not.
enum Failure {
    Transient(anyhow::Error),
    Fatal(anyhow::Error),
}

pub async fn run(settings: PullSettings) -> anyhow::Result<()> {
    let triggers = if settings.triggers.is_empty() {
        Vec::new()
    } else {
        Trigger::parse_list(&settings.triggers.join(",")).map_err(|e| {
            anyhow!(
                "unknown trigger(s) {}; valid: {}",
                e.names.join(", "),
                Trigger::valid_names()
            )
        })?
    };
    let mut sink = Sink::open(&settings.out)?;
    let client = Client::new(&settings)?;
    let mut stop = stop_signal();
    let wait = if settings.follow { WAIT_SECONDS } else { 0 };
    let body = json!({
        "size": settings.size,
        "consumer": settings.consumer,
        "lease_seconds": settings.lease_seconds,
        "wait_seconds": wait,
        "triggers": (!triggers.is_empty()).then(|| triggers.iter().map(|t| t.as_str()).collect::<Vec<_>>()),
    });
    let mut progress = Progress::default();
    loop {
        if *stop.borrow() {
            break;
        }
        let started = Instant::now();
        let batch = tokio::select! {
            b = client.call::<Batch>("/v1/batches", Some(&body), settings.follow) => b?,
            _ = stop.changed() => break,
        };
        let Some(id) = batch.batch_id else {
            if !settings.follow {
                break;
            }
            // A server at its long-poll limit answers at once: no busy loop.
            if let Some(rest) = Duration::from_secs(1).checked_sub(started.elapsed()) {
                tokio::select! {
                    _ = tokio::time::sleep(rest) => {}
                    _ = stop.changed() => break,
                }
            }
            continue;
        };
        sink.write_batch(&id, &batch.events, settings.format)?;
        if std::env::var_os(CRASH_AFTER_WRITE).is_some() {
            std::process::abort();
        }
        client.mark_read(&id, settings.follow).await?;
        progress.batch(&id, batch.events.len(), batch.remaining, started.elapsed());
    }
    progress.done();
    Ok(())
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    /// Marks a written batch read. A conflict (the lease ran out and its
    /// events went to another batch) loses nothing: they come again.
    async fn mark_read(&self, id: &str, persist: bool) -> anyhow::Result<()> {
        let path = format!("/v1/batches/{id}/read");
        match self.call::<serde_json::Value>(&path, None, persist).await {
            Err(e) if e.downcast_ref::<ServerError>().is_some_and(|s| s.status == 409) => {
                eprintln!("warning: batch {id} was written after its lease ran out; its events will come again ({e})");
                Ok(())
            }
            other => other.map(drop),
        }
    }
}

impl Client {
    fn new(s: &PullSettings) -> anyhow::Result<Client> {
        let base = s.server.trim_end_matches('/').to_string();
        let url = url::Url::parse(&base).with_context(|| format!("--server {base:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("--server must be an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(WAIT_SECONDS + 60))
            .user_agent(concat!("eventd-pull/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            http,
            base,
            key: s.key.clone(),
        })
    }

    /// POSTs `body` and decodes the answer, retrying network errors, 429 and
    /// 5xx with a growing pause (forever when `persist`).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
        persist: bool,
    ) -> anyhow::Result<T> {
        let mut pause = Duration::from_secs(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.once(path, body).await {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(e)) if persist || attempt < ATTEMPTS => {
                    eprintln!("{e}; retrying in {} s", pause.as_secs());
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
                Err(Failure::Transient(e)) => return Err(e),
            }
        }
    }

    async fn once<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.post(&url).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req
            .send()
            .await
            .map_err(|e| Failure::Transient(anyhow!("POST {url}: {e}")))?;
        let status = r.status();
        let text = r
            .text()
            .await
            .map_err(|e| Failure::Transient(anyhow!("POST {url}: reading the answer: {e}")))?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|e| Failure::Fatal(anyhow!("POST {url}: unexpected answer ({e}): {}", clip(&text))));
        }
        let detail = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => format!("{}: {}", b.error.code, b.error.message),
            Err(_) => clip(&text).to_string(),
        };
        let e = ServerError {
            url: format!("POST {url}"),
            status: status.as_u16(),
            detail,
        };
        if status.is_server_error() || status.as_u16() == 429 {
            Err(Failure::Transient(e.into()))
        } else {
            Err(Failure::Fatal(e.into()))
        }
    }
}

fn clip(text: &str) -> &str {
    let end = text.char_indices().nth(200).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// Becomes true on SIGINT or SIGTERM.
fn stop_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        let _ = tx.send(true);
    });
    rx
}

/// Progress on stderr: one line per batch, and a summary.
#[derive(Default)]
struct Progress {
    events: u64,
    batches: u64,
    busy: Duration,
}

impl Progress {
    fn batch(&mut self, id: &str, count: usize, remaining: i64, took: Duration) {
        self.events += count as u64;
        self.batches += 1;
        self.busy += took;
        eprintln!(
            "batch {id}: {count} events written and marked read; total {} events, {:.0} events/s, remaining {remaining}",
            self.events,
            self.rate()
        );
    }

    fn rate(&self) -> f64 {
        self.events as f64 / self.busy.as_secs_f64().max(1e-6)
    }

    fn done(&self) {
        eprintln!(
            "done: {} events in {} batches ({:.0} events/s)",
            self.events,
            self.batches,
            self.rate()
        );
    }
}
