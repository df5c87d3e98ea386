//! Command-line and environment configuration. Every flag also reads an
//! environment variable (`EVENTD_…`, or `DATABASE_URL`).

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "eventd",
    version,
    about = "Event notification server: per-account event queues, pulled over JSON or SOAP, or pushed"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (JSON, SOAP) and, unless --no-worker, the push worker.
    Serve(ServeSettings),
    /// Run the HTTP push delivery worker only (any number, on any node).
    Worker(WorkerSettings),
    /// Apply database migrations and exit.
    Migrate(DbSettings),
    /// Manage accounts.
    Accounts {
        #[command(flatten)]
        db: DbSettings,
        #[command(subcommand)]
        action: AccountsAction,
    },
    /// Manage an account's API keys.
    Keys {
        #[command(flatten)]
        db: DbSettings,
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsAction {
    /// Create an account and print its first API key (shown once).
    Create { name: String },
    /// List accounts.
    List,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key for an account (by name or id) and print it (shown once).
    Create { account: String },
    /// List an account's keys (never the secrets).
    List { account: String },
    /// Revoke a key at once.
    Revoke { account: String, key_id: String },
}

#[derive(Debug, Clone, Args)]
pub struct DbSettings {
    /// SQLite file path, or a postgres:// URL.
    #[arg(long, env = "DATABASE_URL", default_value = "eventd.db")]
    pub database_url: String,
    /// Maximum database connections of this process.
    #[arg(long, env = "EVENTD_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "serve")]
pub struct ServeSettings {
    #[command(flatten)]
    pub db: DbSettings,
    /// Address to listen on; port 0 picks a free port (the log says which).
    #[arg(long, env = "EVENTD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Operator token: manages accounts and may ingest for any account.
    /// Without it, an empty database gets an account `default` at start.
    #[arg(long, env = "EVENTD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "EVENTD_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most events accepted in one ingest request (SPEC: 10,000).
    #[arg(long, env = "EVENTD_MAX_EVENTS_PER_REQUEST", default_value_t = 10_000)]
    pub max_events_per_request: usize,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "EVENTD_HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,
    /// Base URL clients use to reach this server (for WSDL addresses);
    /// default: taken from each request's Host header.
    #[arg(long, env = "EVENTD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// PAINT compatibility: a login context expires after this many seconds
    /// without a call.
    #[arg(long, env = "EVENTD_PAINT_CONTEXT_IDLE_SECONDS", default_value_t = 1200,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub paint_context_idle_seconds: u64,
    /// Log format.
    #[arg(long, env = "EVENTD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Days of event history kept (for push backfill and replay).
    #[arg(long, env = "EVENTD_HISTORY_DAYS", default_value_t = 7)]
    pub history_days: u32,
    /// Delete unread pull events older than this (e.g. 30d, 12h); default: never.
    #[arg(long, env = "EVENTD_QUEUE_MAX_AGE", value_parser = humantime::parse_duration)]
    pub queue_max_age: Option<std::time::Duration>,
    /// How often retention and batch bookkeeping run (e.g. 60s).
    #[arg(long, env = "EVENTD_MAINTENANCE_INTERVAL", value_parser = humantime::parse_duration, default_value = "60s")]
    pub maintenance_interval: std::time::Duration,
    /// Most fetches allowed to long-poll at once; beyond, they answer at once.
    #[arg(long, env = "EVENTD_MAX_WAITERS", default_value_t = 10_000)]
    pub max_waiters: usize,
    /// Do not run the push delivery worker in this process.
    #[arg(long, env = "EVENTD_NO_WORKER")]
    pub no_worker: bool,
    #[command(flatten)]
    pub push: PushSettings,
}

/// HTTP push: safety and the delivery worker.
#[derive(Debug, Clone, Args)]
pub struct PushSettings {
    /// Allow push URLs that resolve to loopback, private, link-local or
    /// multicast addresses (refused by default).
    #[arg(long, env = "EVENTD_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,
    /// Delays between tries of a delivery, as DURATION*COUNT steps
    /// (units ms, s, m, h); when used up the delivery is dead.
    #[arg(long, env = "EVENTD_PUSH_RETRY_SCHEDULE", default_value = "30s*10,30m*10")]
    pub push_retry_schedule: String,
    /// Suspend a destination after this many consecutive failed requests.
    #[arg(long, env = "EVENTD_PUSH_SUSPEND_AFTER", default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..))]
    pub push_suspend_after: i64,
    /// How often the worker looks for due deliveries when idle (e.g. 500ms, 1s).
    #[arg(long, env = "EVENTD_PUSH_POLL_INTERVAL", default_value = "250ms")]
    pub push_poll_interval: String,
    /// On shutdown, how long requests in flight may take to finish before
    /// their deliveries are given back (e.g. 30s).
    #[arg(long, env = "EVENTD_PUSH_STOP_GRACE", default_value = "30s")]
    pub push_stop_grace: String,
    /// Requests in flight per worker process, over all destinations.
    #[arg(long, env = "EVENTD_PUSH_CONCURRENCY", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub push_concurrency: u32,
    /// Requests in flight per destination (trigger of an account) per worker process.
    #[arg(long, env = "EVENTD_PUSH_DESTINATION_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub push_destination_concurrency: u32,
    /// Source address of outgoing push connections (so receivers can allow-list it).
    #[arg(long, env = "EVENTD_PUSH_SOURCE_IP")]
    pub push_source_ip: Option<std::net::IpAddr>,
    /// How long delivered and dead deliveries and their attempt log are
    /// kept (e.g. 168h); pending ones are never pruned.
    #[arg(long, env = "EVENTD_PUSH_LOG_RETENTION", default_value = "168h")]
    pub push_log_retention: String,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "worker")]
pub struct WorkerSettings {
    #[command(flatten)]
    pub db: DbSettings,
    /// Log format.
    #[arg(long, env = "EVENTD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub push: PushSettings,
}

impl ServeSettings {
    /// Settings as if given on the command line (tests and tools).
    pub fn from_args<I: IntoIterator<Item = S>, S: Into<std::ffi::OsString> + Clone>(args: I) -> Self {
        let mut all: Vec<std::ffi::OsString> = vec!["serve".into()];
        all.extend(args.into_iter().map(Into::into));
        ServeSettings::parse_from(all)
    }
}
