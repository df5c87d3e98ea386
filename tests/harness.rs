//! The test harness itself: servers and programs started by the tests do
//! not read the developer's `EVENTD_…` variables.

mod common;

use common::{spawn_app, Backend};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_servers_ignore_the_callers_eventd_variables() {
    // Set in this test binary only (no other test runs in it).
    std::env::set_var("EVENTD_ALLOW_PRIVATE_TARGETS", "true");
    std::env::set_var("EVENTD_MAX_EVENTS_PER_REQUEST", "1");
    let app = spawn_app(Backend::Sqlite).await;
    let (_, key) = app.create_account("acme").await;
    let r = app
        .put(
            "/v1/triggers/OPEN",
            &key,
            &json!({"destination": "http", "http": {"url": "http://127.0.0.1:9/x"}}),
        )
        .await;
    assert_eq!(
        r.status(),
        422,
        "EVENTD_ALLOW_PRIVATE_TARGETS leaked into the test server"
    );
    app.ingest(&key, &common::opens(2)).await;

    // Programs the tests start (the eventd binary, interop clients) neither.
    let out = common::clean_command("env").output().unwrap();
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!env.contains("EVENTD_"), "{env}");
    assert!(env.contains("PATH="), "the rest of the environment is kept");
}
