//! Builds the application: storage, migrations, first-run account, HTTP
//! server. Tests call [`Application::build`] with port 0.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio::sync::watch;

use crate::activity::Activity;
use crate::auth::failures::FailureLimiter;
use crate::auth::{Authenticator, MIN_ADMIN_TOKEN_LEN};
use crate::body::Bodies;
use crate::config::ServeSettings;
use crate::domain::public_id::IdCipher;
use crate::maintenance::{self, Retention};
use crate::metrics::Metrics;
use crate::pull::{Pull, Sweep};
use crate::push::{PushWorker, WorkerConfig};
use crate::soapxml::http::EnvelopeReader;
use crate::state::AppState;
use crate::store::Store;
use crate::transport::TransportSettings;
use crate::watermark::Watermarks;
use crate::webhook::Webhooks;

pub struct Application {
    port: u16,
    server: Server,
    shutdown: watch::Sender<bool>,
    worker: Option<PushWorker>,
    activity: Activity,
    /// The `--metrics-listen` server, if any.
    metrics_server: Option<ServerHandle>,
}

impl Application {
    pub async fn build(settings: ServeSettings) -> anyhow::Result<Application> {
        check_admin_token(&settings)?;
        let store = Store::connect(&settings.db.database_url, settings.db.db_pool_size)
            .with_context(|| format!("opening the database {}", redact(&settings.db.database_url)))?;
        let applied = store.migrate().context("migrating the database")?;
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        bootstrap_default_account(&store, &settings)?;
        let ids = id_cipher(&store)?;
        let listener = TcpListener::bind(&settings.listen).with_context(|| format!("binding {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::new());
        let mut worker_config = WorkerConfig::from_settings(&settings.push).context("push settings")?;
        worker_config.outcomes = Some(metrics.deliveries.clone());
        let activity = Activity::new(store.clone());
        worker_config.activity = Some(activity.clone());
        worker_config.events = Some(metrics.delivery_events.clone());
        let webhooks = webhooks_of(&settings.push)?;
        let transports = transports_of(&settings.push, &webhooks)?;
        let worker = if settings.no_worker {
            None
        } else {
            Some(PushWorker::spawn(store.clone(), transports.clone(), worker_config)?)
        };
        let settings = Arc::new(settings);
        let history = std::time::Duration::from_secs(u64::from(settings.history_days) * 86_400);
        tokio::spawn(maintenance::run(
            store.clone(),
            metrics.clone(),
            Retention {
                history,
                queue_max_age: settings.queue_max_age,
                interval: settings.maintenance_interval,
            },
            shutdown_rx.clone(),
        ));
        tokio::spawn(
            activity
                .clone()
                .run(settings.stats.stats_flush_interval, shutdown_rx.clone()),
        );
        let limits = &settings.limits;
        let failures = FailureLimiter::new(
            limits.auth_failure_burst,
            limits.auth_failure_interval,
            limits.auth_failure_clients as usize,
        );
        let bodies = Bodies::new(limits.body_timeout, limits.max_large_bodies as usize);
        let parsers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let envelopes = EnvelopeReader::new(limits.max_soap_body_bytes, bodies.clone(), parsers);
        let state = web::Data::new(AppState {
            auth: Authenticator::new(store.clone(), settings.admin_token.clone(), failures),
            pull: Pull::new(
                store.clone(),
                shutdown_rx,
                metrics.clone(),
                activity.clone(),
                settings.max_waiters,
                Watermarks::new(
                    store.clone(),
                    &settings.db.database_url,
                    settings.storage.min_free_disk,
                    settings.storage.max_db_size,
                    metrics.storage_full.clone(),
                ),
                Sweep {
                    delay: settings.sweep_delay,
                    history,
                },
            ),
            store,
            metrics,
            settings: settings.clone(),
            webhooks,
            bodies,
            envelopes,
            transports,
            ids,
        });
        let metrics_server = match &settings.metrics_listen {
            Some(addr) => Some(metrics_server(addr, state.clone())?),
            None => None,
        };
        let mut server = HttpServer::new(move || {
            let latency = state.metrics.http_requests.clone();
            App::new()
                .app_data(state.clone())
                .wrap(actix_web::middleware::Compress::default())
                .wrap_fn(move |req, srv| {
                    let started = std::time::Instant::now();
                    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_string());
                    let method = req.method().to_string();
                    let latency = latency.clone();
                    let fut = actix_web::dev::Service::call(srv, req);
                    async move {
                        let res = fut.await?;
                        let class = format!("{}xx", res.status().as_u16() / 100);
                        latency
                            .with_label_values(&[method.as_str(), route.as_str(), class.as_str()])
                            .observe(started.elapsed().as_secs_f64());
                        Ok(res)
                    }
                })
                .wrap(tracing_actix_web::TracingLogger::default())
                .configure(crate::api::routes)
                .configure(crate::soap::routes)
                .configure(crate::paint::routes)
                .configure(crate::console::routes)
                .default_service(web::to(crate::api::not_found))
        })
        .client_request_timeout(settings.limits.header_timeout)
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(30);
        if settings.http_workers > 0 {
            server = server.workers(settings.http_workers);
        }
        let server = server.run();
        tracing::info!(
            port,
            "eventd listening on {}",
            settings
                .listen
                .rsplit_once(':')
                .map(|(h, _)| format!("{h}:{port}"))
                .unwrap_or_default()
        );
        Ok(Application {
            port,
            server,
            shutdown,
            worker,
            activity,
            metrics_server,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM (handled by actix), then drains.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let shutdown = self.shutdown;
        let server = self.server;
        let worker = self.worker;
        let activity = self.activity;
        let metrics_server = self.metrics_server;
        let stopper = tokio::spawn(async move {
            wait_for_signal().await;
            // Long polls answer at once, then in-flight requests drain.
            let _ = shutdown.send(true);
            handle.stop(true).await;
            if let Some(m) = metrics_server {
                m.stop(true).await;
            }
        });
        let r = server.await;
        stopper.abort();
        if let Some(w) = worker {
            w.stop().await;
        }
        flush_activity(activity).await;
        r
    }
}

/// `/metrics` alone, without credentials, on `--metrics-listen` (an address
/// only the monitoring reaches); it runs until the application stops.
fn metrics_server(addr: &str, state: web::Data<AppState>) -> anyhow::Result<ServerHandle> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding --metrics-listen {addr}"))?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(crate::api::metrics::render))
            .default_service(web::to(crate::api::not_found))
    })
    .listen(listener)?
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

/// The outgoing HTTP client of push, from the settings.
pub fn webhooks_of(push: &crate::config::PushSettings) -> anyhow::Result<Webhooks> {
    Webhooks::new(
        push.allow_private_targets,
        push.push_source_ip,
        push.push_destination_concurrency as usize,
    )
    .context("building the push HTTP client")
}

/// What the delivery transports (http, SMTP, FTP) are built from; checks
/// the SMTP relay and TLS settings now, so a mistake stops the start.
pub fn transports_of(push: &crate::config::PushSettings, webhooks: &Webhooks) -> anyhow::Result<TransportSettings> {
    let m = &push.mail_ftp;
    let smtp = match (&m.smtp_url, &m.smtp_from) {
        (Some(url), Some(from)) => Some((url.clone(), from.clone())),
        (None, None) => None,
        (Some(_), None) => anyhow::bail!("--smtp-url needs --smtp-from (the From address of mails)"),
        (None, Some(_)) => anyhow::bail!("--smtp-from needs --smtp-url (the SMTP relay)"),
    };
    let t = TransportSettings {
        webhooks: webhooks.clone(),
        smtp,
        extra_roots: m.extra_roots()?,
        allow_private: push.allow_private_targets,
    };
    t.build().context("email and FTP settings")?;
    Ok(t)
}

/// `eventd worker`: the push worker alone, until SIGINT/SIGTERM.
pub async fn run_worker(settings: crate::config::WorkerSettings) -> anyhow::Result<()> {
    let store = Store::connect(&settings.db.database_url, settings.db.db_pool_size)
        .with_context(|| format!("opening the database {}", redact(&settings.db.database_url)))?;
    store.migrate().context("migrating the database")?;
    let mut config = WorkerConfig::from_settings(&settings.push).context("push settings")?;
    let activity = Activity::new(store.clone());
    config.activity = Some(activity.clone());
    let (stop_flushing, flush_rx) = watch::channel(false);
    tokio::spawn(activity.clone().run(settings.stats.stats_flush_interval, flush_rx));
    let transports = transports_of(&settings.push, &webhooks_of(&settings.push)?)?;
    let worker = PushWorker::spawn(store, transports, config)?;
    wait_for_signal().await;
    worker.stop().await;
    let _ = stop_flushing.send(true);
    flush_activity(activity).await;
    Ok(())
}

/// The last activity counts of a stopping process.
async fn flush_activity(activity: Activity) {
    match tokio::task::spawn_blocking(move || activity.flush()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "activity counters of the last seconds were not written"),
        Err(e) => tracing::warn!(error = %e, "activity flush panicked"),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Refuses an operator token shorter than [`MIN_ADMIN_TOKEN_LEN`] (it can be
/// guessed) unless `--allow-short-admin-token`, which still warns.
fn check_admin_token(settings: &ServeSettings) -> anyhow::Result<()> {
    let Some(token) = settings.admin_token.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    if token.chars().count() >= MIN_ADMIN_TOKEN_LEN {
        return Ok(());
    }
    if settings.limits.allow_short_admin_token {
        tracing::warn!(
            "the operator token is shorter than {MIN_ADMIN_TOKEN_LEN} characters: anyone who guesses it manages every account"
        );
        return Ok(());
    }
    anyhow::bail!(
        "the operator token (EVENTD_ADMIN_TOKEN) has fewer than {MIN_ADMIN_TOKEN_LEN} characters; \
         use a long random one (e.g. `openssl rand -hex 24`), or pass --allow-short-admin-token (tests only)"
    )
}

/// The key of the opaque delivery ids, made by the first node that starts.
fn id_cipher(store: &Store) -> anyhow::Result<IdCipher> {
    let key = store
        .server_secret("delivery_ids", || hex::encode(rand::random::<[u8; 16]>()))
        .context("reading the key of delivery ids")?;
    IdCipher::from_hex(&key).context("the stored key of delivery ids (server_secrets) is not 32 hex digits")
}

/// On first start with an empty database and no operator token, create an
/// account `default` and print its key once, so a newcomer can try at once.
fn bootstrap_default_account(store: &Store, settings: &ServeSettings) -> anyhow::Result<()> {
    if settings.admin_token.as_deref().is_some_and(|t| !t.is_empty()) || store.account_count()? > 0 {
        return Ok(());
    }
    let (account, key) = store.create_account("default")?;
    println!(
        "Created account '{}' (id {}). Its API key, shown only this once:\n\n    {}\n",
        account.name, account.id, key.secret
    );
    Ok(())
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
