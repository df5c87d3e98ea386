//! Hostile and slow clients, tried as an attacker would from one machine:
//! XML built to make the parser work, bodies and headers that trickle in,
//! bodies too large to buffer, many idle connections, oversized headers.
//! Each is refused with a clear status, and other clients keep being
//! served meanwhile (`/healthz` answers within a deadline).
//!
//! These exercise the HTTP layer, not storage, so they run on SQLite only.

mod common;

use std::time::Duration;

use common::{opens, spawn_app_with, Backend, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";

async fn app(extra: &[&str]) -> TestApp {
    spawn_app_with(Backend::Sqlite, extra).await
}

/// `/healthz` answers 200 within `within`.
async fn healthy_within(app: &TestApp, within: Duration) {
    let r = timeout(within, app.client.get(app.url("/healthz")).send())
        .await
        .unwrap_or_else(|_| panic!("/healthz did not answer within {within:?}"))
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Sends `head` (request line and headers, without the blank line) on a
/// new connection, then the blank line.
async fn open(app: &TestApp, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(format!("{head}\r\n\r\n").as_bytes()).await.unwrap();
    s
}

/// What the server sends on `s` until it closes the connection or `within`
/// passes (then `None`: the connection is still held).
async fn answer(s: &mut TcpStream, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status of the first response in `text`.
fn status(text: &str) -> u16 {
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn attributes_envelope(n: usize, attr: impl Fn(usize) -> String) -> String {
    let attrs: String = (0..n).map(attr).collect();
    format!(
        r#"<s:Envelope xmlns:s="{S11}"><s:Body><p:handleRequest xmlns:p="urn:localhost-paint"{attrs}/></s:Body></s:Envelope>"#
    )
}

/// 100,000 attributes (or namespace declarations) on one element took
/// 28 s (54 s) to parse, on the threads that answer everyone: two such
/// requests made `/healthz` time out. Now the reader stops at the
/// attribute limit, off those threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_built_to_be_slow_is_refused_and_others_are_served() {
    let app = app(&["--max-soap-body-bytes", "4000000"]).await;
    let attrs = attributes_envelope(100_000, |i| format!(" a{i}=\"v\""));
    let decls = attributes_envelope(100_000, |i| format!(" xmlns:n{i}=\"urn:{i}\""));
    let mut posts = Vec::new();
    for (path, body) in [
        ("/soap/paint", attrs.clone()),
        ("/soap/eventNotification", decls.clone()),
        ("/soap/paint", decls),
        ("/soap/eventNotification", attrs),
    ] {
        let (client, url) = (app.client.clone(), app.url(path));
        posts.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("Content-Type", "text/xml")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    healthy_within(&app, Duration::from_secs(5)).await;
    for p in posts {
        let (code, text) = timeout(Duration::from_secs(60), p).await.expect("answered").unwrap();
        // Client faults: 400 from PAINT, 500 from SOAP 1.1 (WS-I).
        assert!(
            (code == 400 || code == 500) && text.contains("more than 64 attributes"),
            "{code} {text}"
        );
    }
    healthy_within(&app, Duration::from_secs(5)).await;
}

/// 20 connections trickling a body into `POST /soap/paint` were all still
/// open after 200 s; now each gets 408 and is closed after --body-timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_cut_off() {
    let app = app(&["--body-timeout", "1s"]).await;
    let (_, key) = app.create_account("acme").await;
    let mut conns = Vec::new();
    for i in 0..20 {
        let head = if i % 2 == 0 {
            "POST /soap/paint HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 100000".to_string()
        } else {
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100000"
            )
        };
        let s = open(&app, &head).await;
        let (mut rd, mut wr) = s.into_split();
        let trickle = tokio::spawn(async move {
            while wr.write_all(b" ").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        conns.push((
            tokio::spawn(async move {
                let mut out = Vec::new();
                let _ = timeout(Duration::from_secs(20), rd.read_to_end(&mut out)).await;
                String::from_utf8_lossy(&out).into_owned()
            }),
            trickle,
        ));
    }
    healthy_within(&app, Duration::from_secs(5)).await;
    for (reader, trickle) in conns {
        let text = reader.await.unwrap();
        assert_eq!(status(&text), 408, "{text}");
        trickle.abort();
    }
    assert_eq!(app.queue(&key).await["pending"], 0);
}

/// Headers that never end are cut off after --header-timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let app = app(&["--header-timeout", "1s"]).await;
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        let _ = wr.write_all(b"X-Slow: ").await;
        while wr.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    healthy_within(&app, Duration::from_secs(5)).await;
    let mut out = Vec::new();
    timeout(Duration::from_secs(10), rd.read_to_end(&mut out))
        .await
        .expect("the connection is closed")
        .ok();
    let text = String::from_utf8_lossy(&out);
    assert!(text.is_empty() || status(&text) == 408, "{text}");
    trickle.abort();
}

/// Oversized headers are refused (431) without hurting anyone else; many
/// idle connections do not keep others from being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_many_connections() {
    let app = app(&["--header-timeout", "2s"]).await;
    // Over actix's limits: 128 KiB of request head, or 96 header lines.
    let lines: String = (0..100).map(|i| format!("\r\nX-H{i}: v")).collect();
    for head in [format!("X-Big: {}", "a".repeat(200_000)), format!("X-First: v{lines}")] {
        let mut s = open(&app, &format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{head}")).await;
        let text = answer(&mut s, Duration::from_secs(10))
            .await
            .expect("answered and closed");
        assert!(
            text.is_empty() || status(&text) == 431,
            "{}",
            &text[..text.len().min(200)]
        );
    }

    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(TcpStream::connect(("127.0.0.1", app.port)).await.unwrap());
    }
    healthy_within(&app, Duration::from_secs(5)).await;
    // Idle connections are closed once the header timeout passes.
    for s in idle.iter_mut().take(20) {
        assert!(
            answer(s, Duration::from_secs(10)).await.is_some(),
            "an idle connection held"
        );
    }
    healthy_within(&app, Duration::from_secs(5)).await;
}

/// A client without valid credentials is answered from the headers,
/// before it sends the body it announced: a PAINT body over
/// --max-soap-body-bytes (413), a JSON body without credentials (401), a
/// SOAP body with a wrong Basic header (401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_bodies_are_refused_unread() {
    let app = app(&[]).await;
    let cases = [
        (
            "POST /soap/paint",
            "Content-Type: text/xml\r\nContent-Length: 33554432",
            413,
        ),
        (
            "POST /v1/events",
            "Content-Type: application/json\r\nContent-Length: 33554432",
            401,
        ),
        (
            "POST /soap/eventNotification",
            "Content-Type: text/xml\r\nAuthorization: Basic YWNtZTpldmtfd3Jvbmc=\r\nContent-Length: 200000",
            401,
        ),
    ];
    for (line, headers, expected) in cases {
        let mut s = open(&app, &format!("{line} HTTP/1.1\r\nHost: x\r\n{headers}")).await;
        let text = answer(&mut s, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{line}: no answer before the body was sent"));
        assert_eq!(status(&text), expected, "{line}: {text}");
    }
}

/// Bodies over 1 MiB are read --max-large-bodies at a time: of two
/// clients that each send most of a large body and stall, one holds the
/// permit (then 408), the other waits, then gets 503 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_are_read_a_few_at_a_time() {
    let app = app(&["--max-large-bodies", "1", "--body-timeout", "3s"]).await;
    let (_, key) = app.create_account("acme").await;
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 2000000"
    );
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = open(&app, &head).await;
        stalled.push(tokio::spawn(async move {
            let _ = s.write_all(&vec![b' '; 1_500_000]).await;
            answer(&mut s, Duration::from_secs(20)).await.unwrap_or_default()
        }));
    }
    let mut statuses = Vec::new();
    for t in stalled {
        let text = t.await.unwrap();
        if status(&text) == 503 {
            assert!(text.to_ascii_lowercase().contains("retry-after"), "{text}");
        }
        statuses.push(status(&text));
    }
    statuses.sort();
    assert_eq!(statuses, [408, 503]);
    // With the permit free again, a large body goes through.
    let r = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&key)
        .header("Content-Type", "application/json")
        .body(format!("{}{}", " ".repeat(1_200_000), opens(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}
