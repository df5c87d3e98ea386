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

/// Parsed once at start: the size of `Serve` does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Fetch events from a server into stdout, a file or a directory, each
    /// batch written durably before it is marked read (a client of the JSON API).
    Pull(crate::pull_client::PullSettings),
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
    /// How long after a mark-read its events' rows are deleted (e.g. 100ms).
    /// The events leave the queue at once; the delete waits so that the
    /// consumer's next fetch goes first.
    #[arg(long, env = "EVENTD_SWEEP_DELAY", value_parser = humantime::parse_duration, default_value = "100ms")]
    pub sweep_delay: std::time::Duration,
    /// Most fetches allowed to long-poll at once; beyond, they answer at once.
    #[arg(long, env = "EVENTD_MAX_WAITERS", default_value_t = 10_000)]
    pub max_waiters: usize,
    /// Do not run the push delivery worker in this process.
    #[arg(long, env = "EVENTD_NO_WORKER")]
    pub no_worker: bool,
    /// Serve `/metrics` on this address only (e.g. 127.0.0.1:9464), without
    /// credentials; without it, `/metrics` on --listen needs the operator
    /// token (Bearer).
    #[arg(long, env = "EVENTD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    #[command(flatten)]
    pub push: PushSettings,
    #[command(flatten)]
    pub stats: StatsSettings,
    #[command(flatten)]
    pub limits: LimitSettings,
    #[command(flatten)]
    pub storage: StorageSettings,
}

/// Storage watermarks: ingest is refused (507 `storage_full`) before the
/// disk is full, while fetching and marking read go on.
#[derive(Debug, Clone, Args)]
pub struct StorageSettings {
    /// Refuse ingest while the filesystem holding the SQLite file has less
    /// free space than this: bytes (units k, M, G, T: powers of 1024) or a
    /// percentage of the filesystem ("5%"); 0 turns it off. SQLite only.
    #[arg(long, env = "EVENTD_MIN_FREE_DISK", default_value = "1%", value_parser = crate::watermark::Threshold::parse)]
    pub min_free_disk: crate::watermark::Threshold,
    /// Refuse ingest while the database is larger than this (bytes, units k,
    /// M, G, T): SQLite the file and its WAL, PostgreSQL pg_database_size.
    #[arg(long, env = "EVENTD_MAX_DB_SIZE", value_parser = crate::watermark::parse_bytes)]
    pub max_db_size: Option<u64>,
}

/// Activity counters (`GET /v1/stats`).
#[derive(Debug, Clone, Args)]
pub struct StatsSettings {
    /// How often in-memory activity counters are added to the database
    /// (e.g. 10s); they are also written when the process stops.
    #[arg(long, env = "EVENTD_STATS_FLUSH_INTERVAL", value_parser = humantime::parse_duration, default_value = "10s")]
    pub stats_flush_interval: std::time::Duration,
}

/// Bounds on what a client may make the server do before (and while) it
/// is authenticated: body sizes and times, slow headers, failed logins.
#[derive(Debug, Clone, Args)]
pub struct LimitSettings {
    /// Largest SOAP or PAINT request body accepted, in bytes (a request is
    /// a few KB; the JSON API uses --max-body-bytes).
    #[arg(long, env = "EVENTD_MAX_SOAP_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_soap_body_bytes: usize,
    /// Longest time to receive a request body (e.g. 30s); a slower client
    /// gets 408 and its connection is closed.
    #[arg(long, env = "EVENTD_BODY_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s")]
    pub body_timeout: std::time::Duration,
    /// Longest time to receive a request's headers (e.g. 5s).
    #[arg(long, env = "EVENTD_HEADER_TIMEOUT", value_parser = humantime::parse_duration, default_value = "5s")]
    pub header_timeout: std::time::Duration,
    /// Request bodies over 1 MiB read (and parsed) at once; more wait, then
    /// get 503.
    #[arg(long, env = "EVENTD_MAX_LARGE_BODIES", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_large_bodies: u32,
    /// Failed authentications a client address may make in a row before it
    /// gets 429 (any credentials, on every face).
    #[arg(long, env = "EVENTD_AUTH_FAILURE_BURST", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failure_burst: u32,
    /// A limited client address regains one attempt per this interval (e.g. 6s).
    #[arg(long, env = "EVENTD_AUTH_FAILURE_INTERVAL", value_parser = humantime::parse_duration, default_value = "6s")]
    pub auth_failure_interval: std::time::Duration,
    /// Client addresses whose failures are remembered at once (memory bound;
    /// the longest-idle is forgotten first).
    #[arg(long, env = "EVENTD_AUTH_FAILURE_CLIENTS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failure_clients: u32,
    /// Start even with an operator token shorter than 32 characters (tests only).
    #[arg(long, env = "EVENTD_ALLOW_SHORT_ADMIN_TOKEN")]
    pub allow_short_admin_token: bool,
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
    /// How long a worker holds the deliveries it claimed without renewing
    /// the lease (e.g. 60s). A live worker renews it every third of that
    /// while it sends; a crashed worker's deliveries are sent by another
    /// one after at most this long.
    #[arg(long, env = "EVENTD_PUSH_LEASE", default_value = "60s")]
    pub push_lease: String,
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
    #[command(flatten)]
    pub mail_ftp: MailFtpSettings,
}

/// Email and FTP destinations: the SMTP relay and TLS trust.
#[derive(Debug, Clone, Args)]
pub struct MailFtpSettings {
    /// SMTP relay of email destinations: smtp://[user:password@]host[:port]
    /// (add ?tls=starttls for STARTTLS) or smtps://… (TLS at once).
    /// Without it (and --smtp-from), email destinations cannot be configured.
    #[arg(long, env = "EVENTD_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The From address of mails, e.g. "eventd <noreply@example.com>".
    #[arg(long, env = "EVENTD_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// PEM file of CA certificates trusted, besides the usual public roots,
    /// for the SMTP relay and FTPS servers (a private CA).
    #[arg(long, env = "EVENTD_TLS_CA_FILE")]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Shortest email digest or FTP period a client may configure, in
    /// seconds (default 60; lower it for tests only).
    #[arg(long, env = "EVENTD_MIN_PERIOD_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=60))]
    pub min_period_seconds: u32,
}

impl MailFtpSettings {
    /// The extra trusted certificates (DER) of `--tls-ca-file`.
    pub fn extra_roots(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        use anyhow::Context;
        let Some(path) = &self.tls_ca_file else {
            return Ok(Vec::new());
        };
        let pem = std::fs::read(path).with_context(|| format!("reading --tls-ca-file {}", path.display()))?;
        let certs = pem_certificates(&pem);
        if certs.is_empty() {
            anyhow::bail!("--tls-ca-file {} holds no PEM certificate", path.display());
        }
        Ok(certs)
    }
}

/// The DER bodies of the certificates of a PEM text.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use suppaftp::tokio_rustls::rustls::pki_types::pem::PemObject;
    use suppaftp::tokio_rustls::rustls::pki_types::CertificateDer;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect()
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
    #[command(flatten)]
    pub stats: StatsSettings,
}

impl ServeSettings {
    /// Settings as if given on the command line (tests and tools).
    pub fn from_args<I: IntoIterator<Item = S>, S: Into<std::ffi::OsString> + Clone>(args: I) -> Self {
        let mut all: Vec<std::ffi::OsString> = vec!["serve".into()];
        all.extend(args.into_iter().map(Into::into));
        ServeSettings::parse_from(all)
    }
}
