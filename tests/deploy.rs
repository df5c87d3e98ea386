//! The files of `deploy/` speak of metrics eventd exports.

mod common;

use common::{spawn_app, Backend};

/// The `eventd_…` metric names a text mentions, histogram suffixes removed.
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("eventd_") {
        let start = i + at;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if boundary {
            let name = &text[start..end];
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            if !names.iter().any(|n| n == base) {
                names.push(base.to_string());
            }
        }
        i = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_named_in_deploy_exist() {
    let app = spawn_app(Backend::Sqlite).await;
    let exported = app.metrics().await;
    let registered = include_str!("../src/metrics.rs");
    for file in [
        "deploy/prometheus/eventd-rules.yml",
        "deploy/grafana/eventd-dashboard.json",
    ] {
        let text = std::fs::read_to_string(file).unwrap();
        let names = metric_names(&text);
        assert!(names.len() >= 5, "{file}: {names:?}");
        for name in names {
            assert!(
                registered.contains(&format!("\"{name}\"")),
                "{file} names {name}, which src/metrics.rs does not register"
            );
            // Gauges are in every scrape; counters and the histogram once
            // something happened.
            if !name.ends_with("_total") && name != "eventd_http_request_duration_seconds" {
                assert!(
                    exported.contains(&format!("\n{name}")),
                    "{name} missing from /metrics:\n{exported}"
                );
            }
        }
    }
    assert!(exported.contains("\neventd_db_pool_max_connections 4\n"), "{exported}");
    assert!(exported.contains("\neventd_push_destinations_suspended 0\n"));
    assert!(exported.contains("\neventd_push_deliveries_dead 0\n"));
}

#[test]
fn metric_names_are_found_whole() {
    assert_eq!(
        metric_names("rate(eventd_a_total[5m]) / eventd_h_count{x=\"y\"} + my_eventd_no + eventd_h_bucket"),
        ["eventd_a_total", "eventd_h"]
    );
}
