//! Builds the application: storage, migrations, first-run account, HTTP
//! server. Tests call [`Application::build`] with port 0.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::config::ServeSettings;
use crate::maintenance::{self, Retention};
use crate::metrics::Metrics;
use crate::pull::Pull;
use crate::push::{PushWorker, WorkerConfig};
use crate::store::Store;
use crate::webhook::Webhooks;

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub auth: Authenticator,
    pub pull: Pull,
    pub settings: Arc<ServeSettings>,
    /// The outgoing HTTP client of push (for `POST /v1/triggers/{T}/test`).
    pub webhooks: Webhooks,
}

pub struct Application {
    port: u16,
    server: Server,
    shutdown: watch::Sender<bool>,
    worker: Option<PushWorker>,
}

impl Application {
    pub async fn build(settings: ServeSettings) -> anyhow::Result<Application> {
        let store = Store::connect(&settings.db.database_url, settings.db.db_pool_size)
            .with_context(|| format!("opening the database {}", redact(&settings.db.database_url)))?;
        let applied = store.migrate().context("migrating the database")?;
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        bootstrap_default_account(&store, &settings)?;
        let listener = TcpListener::bind(&settings.listen).with_context(|| format!("binding {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::new());
        let mut worker_config = WorkerConfig::from_settings(&settings.push).context("push settings")?;
        worker_config.outcomes = Some(metrics.deliveries.clone());
        let webhooks = webhooks_of(&settings.push)?;
        let worker = if settings.no_worker {
            None
        } else {
            Some(PushWorker::spawn(store.clone(), webhooks.clone(), worker_config)?)
        };
        let settings = Arc::new(settings);
        tokio::spawn(maintenance::run(
            store.clone(),
            metrics.clone(),
            Retention {
                history: std::time::Duration::from_secs(u64::from(settings.history_days) * 86_400),
                queue_max_age: settings.queue_max_age,
                interval: settings.maintenance_interval,
            },
            shutdown_rx.clone(),
        ));
        let state = web::Data::new(AppState {
            auth: Authenticator::new(store.clone(), settings.admin_token.clone()),
            pull: Pull::new(store.clone(), shutdown_rx, metrics.clone(), settings.max_waiters),
            store,
            metrics,
            settings: settings.clone(),
            webhooks,
        });
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
                .default_service(web::to(crate::api::not_found))
        })
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
        let stopper = tokio::spawn(async move {
            wait_for_signal().await;
            // Long polls answer at once, then in-flight requests drain.
            let _ = shutdown.send(true);
            handle.stop(true).await;
        });
        let r = server.await;
        stopper.abort();
        if let Some(w) = worker {
            w.stop().await;
        }
        r
    }
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

/// `eventd worker`: the push worker alone, until SIGINT/SIGTERM.
pub async fn run_worker(settings: crate::config::WorkerSettings) -> anyhow::Result<()> {
    let store = Store::connect(&settings.db.database_url, settings.db.db_pool_size)
        .with_context(|| format!("opening the database {}", redact(&settings.db.database_url)))?;
    store.migrate().context("migrating the database")?;
    let config = WorkerConfig::from_settings(&settings.push).context("push settings")?;
    let worker = PushWorker::spawn(store, webhooks_of(&settings.push)?, config)?;
    wait_for_signal().await;
    worker.stop().await;
    Ok(())
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
