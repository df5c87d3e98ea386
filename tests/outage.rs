//! The database unreachable (issue 11, item 7: during a PostgreSQL restart
//! under ingest, 818 requests got 500). A test server reaches PostgreSQL
//! through a TCP proxy of the test: stopping the proxy cuts every
//! connection and refuses new ones, as a restart or a network cut does.
//! Meanwhile every face answers 503 with `Retry-After` (JSON
//! `database_unavailable`, SOAP and PAINT a Server fault), `/readyz` 503,
//! never a 500; once the proxy is back the server recovers by itself and
//! nothing acknowledged is lost.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{drop_pg_later, fresh_database, opens, spawn_app_on, until, Backend};
use serde_json::{json, Value};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

both!(an_unreachable_database_is_503_on_every_face_and_recovers);

/// Forwards connections to PostgreSQL while up; when down, cuts the open
/// ones and closes new ones at once.
struct Proxy {
    port: u16,
    up: Arc<watch::Sender<bool>>,
}

impl Proxy {
    async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(watch::channel(true).0);
        let (target, flag) = (target.to_string(), up.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let mut rx = flag.subscribe();
                if !*rx.borrow() {
                    continue; // dropped: closed at once
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { port, up }
    }

    fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// A request to make again and again.
type Request<'a> = Box<dyn Fn() -> reqwest::RequestBuilder + 'a>;

struct Seen {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

async fn seen(r: reqwest::RequestBuilder) -> Seen {
    let r = r.timeout(Duration::from_secs(60)).send().await.unwrap();
    Seen {
        status: r.status().as_u16(),
        retry_after: r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()),
        body: r.text().await.unwrap(),
    }
}

async fn an_unreachable_database_is_503_on_every_face_and_recovers(b: Backend) {
    if b == Backend::Sqlite {
        return; // an embedded file cannot become unreachable
    }
    let (db, _) = fresh_database(b);
    let _drop = drop_pg_later(b, &db);
    let target = common::pg_base().rsplit('@').next().unwrap().to_string();
    let proxy = Proxy::start(&target).await;
    let proxied = db.replacen(&target, &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(proxied, db);
    let app = spawn_app_on(b, &proxied, &[]).await;
    let (_, key) = app.create_account("acme").await;
    app.ingest(&key, &opens(3)).await;
    assert_eq!(seen(common::paint::soap_fetch_request(&app, &key)).await.status, 200);

    proxy.set(false);
    let checks: Vec<(&str, Request<'_>)> = vec![
        (
            "ingest",
            Box::new(|| app.client.post(app.url("/v1/events")).bearer_auth(&key).json(&opens(1))),
        ),
        (
            "fetch",
            Box::new(|| {
                app.client
                    .post(app.url("/v1/batches"))
                    .bearer_auth(&key)
                    .json(&json!({}))
            }),
        ),
        (
            "queue",
            Box::new(|| app.client.get(app.url("/v1/queue")).bearer_auth(&key)),
        ),
        ("soap fetch", Box::new(|| common::paint::soap_fetch_request(&app, &key))),
        ("paint login", Box::new(|| common::paint::login_request(&app, &key))),
        ("readyz", Box::new(|| app.client.get(app.url("/readyz")))),
    ];
    // Twice round: the first requests meet the pool's dead connections, the
    // next ones find none.
    for round in 0..2 {
        for (what, request) in &checks {
            let s = seen(request()).await;
            assert_eq!(s.status, 503, "{what} (round {round}): {}", s.body);
            assert!(s.retry_after.is_some(), "{what}: Retry-After");
            match *what {
                "soap fetch" | "paint login" => {
                    assert!(
                        s.body.contains("Server") && s.body.contains("unavailable"),
                        "{what}: {}",
                        s.body
                    )
                }
                "readyz" => assert!(s.body.contains("not_ready"), "{}", s.body),
                _ => assert!(s.body.contains("\"database_unavailable\""), "{what}: {}", s.body),
            }
        }
    }

    proxy.set(true);
    until("ingest accepted again", Duration::from_secs(60), || async {
        let s = seen((checks[0].1)()).await;
        assert!(
            s.status == 202 || s.status == 503,
            "while recovering: {} {}",
            s.status,
            s.body
        );
        (s.status == 202).then_some(())
    })
    .await;
    for (what, request) in &checks[1..] {
        let s = seen(request()).await;
        assert_eq!(s.status, 200, "{what} after recovery: {}", s.body);
    }
    // Nothing acknowledged was lost: the 3 events before the outage and
    // the one accepted after it are queued or leased.
    let q: Value = app.queue(&key).await;
    assert_eq!(
        q["pending"].as_i64().unwrap() + q["in_flight"].as_i64().unwrap(),
        4,
        "{q}"
    );
}
