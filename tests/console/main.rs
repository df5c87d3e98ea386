//! The web console at /admin in a real browser (headless Chromium over
//! WebDriver), against the real server on both backends: sign in, switch a
//! trigger to HTTP push, see deliveries, suspension, resume, retry, release
//! a batch, charts; the email and FTP editors against real SMTP and FTP
//! servers; the operator's pages; axe-core on every page; phone width;
//! visible keyboard focus. Screenshots go to target/console-screenshots/.

mod browser;
#[path = "../common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use browser::Browser;
use common::mail_ftp::{self, Relay, Servers, PASSWORD, USER};
use common::{opens, spawn_app_with, Backend, TestApp, ADMIN};
use serde_json::json;

both!(
    console_walkthrough,
    email_and_ftp_editors,
    operator_pages_and_phone_width
);

/// A receiver answering every request with the status in `status`.
async fn receiver(status: Arc<AtomicU16>) -> String {
    let server = HttpServer::new(move || {
        let status = status.clone();
        App::new().default_service(web::to(move || {
            let code = status.load(Ordering::SeqCst);
            async move {
                HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).body(format!("answer {code}"))
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    format!("http://127.0.0.1:{port}/hook")
}

async fn app(b: Backend) -> TestApp {
    spawn_app_with(
        b,
        &[
            "--allow-private-targets",
            "--push-retry-schedule",
            "30ms*2",
            "--push-suspend-after",
            "3",
            "--push-poll-interval",
            "20ms",
            "--stats-flush-interval",
            "200ms",
        ],
    )
    .await
}

fn label(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

async fn sign_in(br: &Browser, app: &TestApp, key: &str) {
    br.goto(&app.url("/admin")).await;
    br.fill("#key", key).await;
    br.click("form.signin button[type=submit]").await;
}

/// Clicks "Show" on a filter form until `script` is truthy.
async fn refresh_until(br: &Browser, what: &str, script: &str) {
    br.until(
        what,
        &format!(
            "if ({script}) return true;
             const b = [...document.querySelectorAll('form.filters button[type=submit]')][0];
             if (b) b.click();
             return false;"
        ),
    )
    .await;
}

async fn console_walkthrough(b: Backend) {
    let Some(br) = Browser::start(label(b)).await else {
        return;
    };
    let app = app(b).await;
    let (_, key) = app.create_account("acme").await;
    let status = Arc::new(AtomicU16::new(200));
    let hook = receiver(status.clone()).await;

    // Sign in: a wrong key is refused with a clear message.
    br.goto(&app.url("/admin")).await;
    br.find("#key").await;
    br.screenshot("signin").await;
    br.check_accessibility("sign in").await;
    sign_in(&br, &app, "evk_not_a_key").await;
    br.until(
        "wrong key message",
        "return !document.getElementById('signin-error').hidden",
    )
    .await;
    assert!(br.text("#signin-error").await.contains("not valid"));
    br.fill("#key", &key).await;
    br.click("form.signin button[type=submit]").await;
    br.until(
        "15 triggers",
        "return document.querySelectorAll('#triggers-table tbody tr').length === 15",
    )
    .await;
    let stored = br
        .js("return [sessionStorage.getItem('eventd.key'), document.cookie, location.href]")
        .await;
    assert_eq!(stored[0], json!(key));
    assert_eq!(stored[1], json!(""));
    assert!(!stored[2].as_str().unwrap().contains(&key));
    br.screenshot("triggers").await;
    br.check_accessibility("triggers").await;

    // Switch OPEN to HTTP push: the API's messages appear next to the field.
    br.click("a[href='#/triggers/OPEN']").await;
    br.click("#dest-http").await;
    br.fill("#f-http-url", "ftp://example.com/x").await;
    br.click("#save").await;
    br.until(
        "url error",
        "return !document.getElementById('f-http-url-error').hidden",
    )
    .await;
    assert!(br.text("#f-http-url-error").await.contains("http.url"));
    br.fill("#f-http-url", &hook).await;
    br.fill("#f-http-batch_size", "5000").await;
    br.click("#save").await;
    br.until(
        "batch size error",
        "return !document.getElementById('f-http-batch_size-error').hidden",
    )
    .await;
    assert!(br.text("#f-http-batch_size-error").await.contains("batch_size"));
    assert!(
        br.text("#f-http-url-error").await.is_empty(),
        "the old url error is cleared"
    );
    br.fill("#f-http-batch_size", "1").await;
    br.click("#save").await;
    let secret = br.text("#editor-result output.secret-value").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    br.until(
        "http destination shown",
        "return document.getElementById('current-destination').textContent.startsWith('http')",
    )
    .await;
    // The form shows the settings as saved, defaults included.
    let timeout = br
        .js("return document.getElementById('f-http-timeout_seconds').value")
        .await;
    assert_eq!(timeout, json!("15"));
    br.screenshot("trigger-editor").await;
    br.check_accessibility("trigger editor").await;

    // Send a test event: the receiver's answer is shown.
    br.click_text("Send test event").await;
    br.until("test result", "return document.getElementById('test-result')")
        .await;
    assert!(br.text("#test-result").await.contains("answer 200"));

    // Ingest; the deliveries appear in the log.
    app.ingest(&key, &opens(3)).await;
    br.goto(&app.url("/admin/#/deliveries")).await;
    refresh_until(
        &br,
        "3 delivered",
        "document.querySelectorAll('#log li.status-delivered').length === 3",
    )
    .await;
    br.screenshot("deliveries").await;
    br.check_accessibility("delivery log").await;

    // Fail into suspension (3 failures; the delivery is dead after 3 tries).
    status.store(500, Ordering::SeqCst);
    app.ingest(&key, &json!({"trigger": "OPEN", "recipient": "fails@x.test"}))
        .await;
    br.goto(&app.url("/admin/#/triggers/OPEN")).await;
    br.until(
        "suspended",
        "const s = document.getElementById('push-state');
         if (s && s.textContent.startsWith('suspended')) return true;
         window.dispatchEvent(new HashChangeEvent('hashchange'));
         return false;",
    )
    .await;
    assert!(br.text("#push-state").await.contains("HTTP 500"));
    br.screenshot("trigger-suspended").await;
    status.store(200, Ordering::SeqCst);
    br.click_text("Resume").await;
    br.until(
        "active again",
        "const s = document.getElementById('push-state'); return s && s.textContent === 'active'",
    )
    .await;

    // Retry the dead delivery from the log.
    br.goto(&app.url("/admin/#/deliveries")).await;
    br.find("select[name=status]")
        .await
        .select_by_value("dead")
        .await
        .unwrap();
    refresh_until(
        &br,
        "1 dead",
        "document.querySelectorAll('#log li.status-dead').length === 1",
    )
    .await;
    br.click("button[aria-label^='Retry delivery']").await;
    br.find("select[name=status]")
        .await
        .select_by_value("delivered")
        .await
        .unwrap();
    refresh_until(
        &br,
        "4 delivered",
        "document.querySelectorAll('#log li.status-delivered').length === 4",
    )
    .await;
    let attempts = br
        .js("return document.querySelector('#log li.status-delivered .attempts') !== null")
        .await;
    assert_eq!(attempts, json!(true), "each delivery lists its attempts");

    // Queue: an open batch is listed and released.
    app.ingest(
        &key,
        &json!([{"trigger": "CLICK", "recipient": "a@x.test"}, {"trigger": "CLICK", "recipient": "b@x.test"}]),
    )
    .await;
    let batch = app.fetch(&key, &json!({"consumer": "crm", "size": 10})).await;
    assert_eq!(batch["events"].as_array().unwrap().len(), 2);
    br.goto(&app.url("/admin/#/queue")).await;
    br.until("open batch", "return document.querySelector('#batches-table tbody tr')")
        .await;
    assert!(br.text("#batches-table").await.contains("crm"));
    assert_eq!(br.text("#q-in-flight").await, "2");
    br.screenshot("queue").await;
    br.check_accessibility("queue").await;
    br.click("button[aria-label^='Release batch']").await;
    br.until("released", "return document.getElementById('no-batches')")
        .await;
    assert_eq!(br.text("#q-pending").await, "2");
    assert_eq!(app.queue(&key).await["in_flight"], 0);
    let batch = app.fetch(&key, &json!({"consumer": "crm", "size": 10})).await;
    let read = format!("/v1/batches/{}/read", batch["batch_id"].as_str().unwrap());
    assert_eq!(app.post_empty(&read, &key).await.status(), 200);

    // Charts: 3 + 1 OPEN and 2 CLICK ingested, 2 pulled, 4 delivered, 3 failed.
    br.goto(&app.url("/admin/#/activity")).await;
    refresh_until(
        &br,
        "charts show the counts",
        "(() => { const t = (s) => { const e = document.querySelector('li[data-series=' + s + ']'); return e && e.dataset.total; };
           return t('ingested') === '6' && t('pulled') === '2' && t('delivered') === '4' && t('failed') === '3'; })()",
    )
    .await;
    let bars = br
        .js("return document.querySelectorAll('#chart-ingested rect.bar').length")
        .await;
    assert!(bars.as_i64().unwrap() >= 1, "the ingested chart draws bars");
    br.screenshot("activity").await;
    br.check_accessibility("activity").await;

    // Sign out clears the key.
    br.click("#sign-out").await;
    br.find("#key").await;
    assert_eq!(br.js("return sessionStorage.getItem('eventd.key')").await, json!(null));
    br.close().await;
}

async fn operator_pages_and_phone_width(b: Backend) {
    let Some(br) = Browser::start(&format!("{}-operator", label(b))).await else {
        return;
    };
    let app = app(b).await;
    app.create_account("acme").await;

    // The console's own answers carry the strict policy.
    for path in ["/admin/", "/admin/app.js", "/admin/nothing-here"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(r.headers()["x-frame-options"], "DENY", "{path}");
    }

    sign_in(&br, &app, ADMIN).await;
    br.until("accounts", "return document.querySelector('#accounts-table tbody tr')")
        .await;
    br.fill("input[name=name]", "globex").await;
    br.click_text("Create account").await;
    let first = br.text("#account-result output.secret-value").await;
    assert!(first.starts_with("evk_"), "{first}");
    br.until(
        "2 accounts",
        "return document.querySelectorAll('#accounts-table tbody tr').length === 2",
    )
    .await;
    br.screenshot("accounts").await;
    br.check_accessibility("accounts").await;

    // The picker leads to an account's keys: create one (shown once), revoke it.
    br.find("#account-picker option[value='2']").await;
    br.find("#account-picker").await.select_by_value("2").await.unwrap();
    br.until("keys page", "return document.querySelector('#keys-table')")
        .await;
    br.click("#create-key").await;
    let created = br.text("#key-result output.secret-value").await;
    let r = app.get("/v1/triggers", &created).await;
    assert_eq!(r.status(), 200, "the new key works");
    br.until(
        "2 keys",
        "return document.querySelectorAll('#keys-table tbody tr').length === 2",
    )
    .await;
    br.screenshot("keys").await;
    br.check_accessibility("keys").await;
    // Revoking takes a second, confirming click.
    let row = format!(
        "//table[@id='keys-table']//tr[.//code[starts-with(., '{}')]]",
        &created[..10]
    );
    let button = br
        .client
        .find(fantoccini::Locator::XPath(&format!("{row}//button")))
        .await
        .unwrap();
    button.click().await.unwrap();
    assert_eq!(
        app.get("/v1/triggers", &created).await.status(),
        200,
        "one click does not revoke"
    );
    button.click().await.unwrap();
    br.until(
        "revoked",
        &format!(
            "return document.evaluate(\"{row}\", document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null)
               .singleNodeValue.textContent.includes('revoked')"
        ),
    )
    .await;
    let r = app.get("/v1/triggers", &created).await;
    assert_eq!(r.status(), 401, "the revoked key is refused");

    // Phone width, as the account: nothing scrolls sideways; keyboard focus shows.
    br.click("#sign-out").await;
    sign_in(&br, &app, &first).await;
    br.until(
        "triggers",
        "return document.querySelectorAll('#triggers-table tbody tr').length === 15",
    )
    .await;
    br.client.set_window_size(390, 844).await.unwrap();
    for (page, hash, ready) in [
        ("triggers", "#/triggers", "#triggers-table"),
        ("trigger", "#/triggers/OPEN", "#save"),
        ("deliveries", "#/deliveries", "#log .pager"),
        ("queue", "#/queue", "#queue-body dl"),
        ("activity", "#/activity", "#chart-ingested"),
    ] {
        br.goto(&app.url(&format!("/admin/{hash}"))).await;
        br.find(ready).await;
        br.assert_no_horizontal_scroll(page).await;
        br.screenshot(&format!("phone-{page}")).await;
        br.check_accessibility(&format!("{page} at phone width")).await;
    }
    br.client
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E004}")
        .await
        .unwrap();
    let focus = br
        .js("const e = document.activeElement; const s = getComputedStyle(e);
             return [e.tagName, s.outlineStyle, s.outlineWidth]")
        .await;
    assert_ne!(focus[1], json!("none"), "keyboard focus is visible: {focus}");
    br.close().await;
}

/// The email and FTP forms: the API's messages next to the field they
/// name, saving, the test mail and test file reaching real servers, a
/// saved FTP password kept when the field is left empty.
async fn email_and_ftp_editors(b: Backend) {
    if !mail_ftp::available() {
        return;
    }
    let Some(br) = Browser::start(&format!("{}-mail-ftp", label(b))).await else {
        return;
    };
    let s = Servers::start();
    let app = mail_ftp::app_for(b, &s, Relay::Plain, 3, &[]).await;
    let (account, key) = app.create_account("acme").await;
    sign_in(&br, &app, &key).await;
    br.until(
        "15 triggers",
        "return document.querySelectorAll('#triggers-table tbody tr').length === 15",
    )
    .await;
    br.click("a[href='#/triggers/OPEN']").await;

    // Email: a bad address and a bad period are shown at their fields.
    br.click("#dest-email").await;
    br.fill("#f-email-to", "ops@example.com, not-an-address").await;
    br.click("#save").await;
    br.until("to error", "return !document.getElementById('f-email-to-error').hidden")
        .await;
    assert!(br.text("#f-email-to-error").await.contains("not-an-address"));
    br.fill("#f-email-to", "ops@example.com, b@example.com").await;
    br.fill("#f-email-digest_seconds", "100000").await;
    br.click("#save").await;
    br.until(
        "period error",
        "return !document.getElementById('f-email-digest_seconds-error').hidden",
    )
    .await;
    assert!(br
        .text("#f-email-digest_seconds-error")
        .await
        .contains("email.digest_seconds"));
    assert!(
        br.text("#f-email-to-error").await.is_empty(),
        "the old error is cleared"
    );
    br.fill("#f-email-digest_seconds", "0").await;
    br.fill("#f-email-subject_prefix", "[acme]").await;
    br.click("#save").await;
    br.until(
        "email destination shown",
        "return document.getElementById('current-destination').textContent.startsWith('email')",
    )
    .await;
    assert_eq!(
        br.text("#current-destination").await,
        "email → ops@example.com, b@example.com"
    );
    assert_eq!(br.text("#push-h").await, "Email delivery");
    // No http signing secret for a mail.
    assert_eq!(
        br.js("return [...document.querySelectorAll('button')].some(b => b.textContent === 'Rotate signing secret')")
            .await,
        json!(false)
    );
    br.click_text("Send test mail").await;
    br.until("test result", "return document.getElementById('test-result')")
        .await;
    let shown = br.text("#test-result").await;
    assert!(shown.contains("The SMTP relay accepted the test mail."), "{shown}");
    assert!(shown.contains("250"), "{shown}");
    let mails = s.wait_mails(1, 60).await;
    assert_eq!(mails[0]["rcpt_tos"], json!(["ops@example.com", "b@example.com"]));
    assert_eq!(mails[0]["subject"], "[acme] OPEN test@example.com");
    br.screenshot("email-editor").await;
    br.check_accessibility("email editor").await;

    // FTP: a host that does not resolve is shown at the host field.
    br.click("#dest-ftp").await;
    br.fill("#f-ftp-host", "no-such-host.invalid").await;
    br.fill("#f-ftp-port", &s.ftp.to_string()).await;
    br.fill("#f-ftp-username", USER).await;
    br.fill("#f-ftp-password", PASSWORD).await;
    br.fill("#f-ftp-every_seconds", "3600").await;
    br.find("#f-ftp-tls").await.select_by_value("none").await.unwrap();
    br.click("#save").await;
    br.until(
        "host error",
        "return !document.getElementById('f-ftp-host-error').hidden",
    )
    .await;
    assert!(br.text("#f-ftp-host-error").await.contains("no-such-host.invalid"));
    br.fill("#f-ftp-host", "127.0.0.1").await;
    br.fill("#f-ftp-password", PASSWORD).await;
    br.click("#save").await;
    br.until(
        "ftp destination shown",
        "return document.getElementById('current-destination').textContent.startsWith('ftp')",
    )
    .await;
    assert_eq!(br.text("#current-destination").await, "ftp → 127.0.0.1/");
    assert_eq!(br.text("#push-h").await, "FTP uploads");
    // The password is never shown back; the field says one is saved.
    let field = br
        .js("const p = document.getElementById('f-ftp-password'); return [p.value, p.placeholder]")
        .await;
    assert_eq!(field, json!(["", "saved: leave empty to keep it"]));
    // Saved again with the field empty: the password is kept.
    br.fill("#f-ftp-every_seconds", "7200").await;
    // Marks the panel the save will replace, so as not to click its
    // button just before it goes.
    br.js("document.getElementById('toast').textContent = ''; document.getElementById('push-h').dataset.old = 'yes'")
        .await;
    br.click("#save").await;
    br.until(
        "saved again",
        "return document.getElementById('toast').textContent.includes('destination saved')
           && !document.getElementById('push-h').dataset.old",
    )
    .await;
    let t = app
        .get("/v1/triggers/OPEN", &key)
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(t["ftp"]["every_seconds"], 7200, "{t}");
    br.click_text("Upload test file").await;
    br.until("test result", "return document.getElementById('test-result')")
        .await;
    let shown = br.text("#test-result").await;
    assert!(shown.contains("The FTP server stored the test file."), "{shown}");
    let files = s.files("/");
    let prefix = format!("eventd_test_{account}_OPEN_");
    assert!(
        files
            .iter()
            .any(|(name, body)| name.starts_with(&prefix) && body.contains("test@example.com")),
        "{files:?}"
    );
    br.screenshot("ftp-editor").await;
    br.check_accessibility("ftp editor").await;

    // The list shows the FTP destination with its state.
    br.click("a[href='#/triggers']").await;
    br.until(
        "ftp in the list",
        "const t = document.getElementById('triggers-table'); return t && t.textContent.includes('ftp → 127.0.0.1/')",
    )
    .await;
    let row = br
        .js("return [...document.querySelectorAll('#triggers-table tbody tr')]
               .find(r => r.textContent.startsWith('OPEN')).textContent")
        .await;
    assert!(row.as_str().unwrap().contains("active"), "{row}");
    br.close().await;
}
