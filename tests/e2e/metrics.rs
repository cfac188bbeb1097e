//! `/metrics` scraped as Prometheus does: every metric described (`# HELP`), latencies as
//! histograms with buckets, the build and the configuration (version, reload outcome), a
//! bearer token when configured; and a log line when the broker stops.

use std::process::Command;

use crate::harness::*;

const METRICS_TOKEN: &str = "metrics-token-for-tests-0123456789";

async fn scrape(broker: &Broker, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(broker.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("metrics");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("text"))
}

/// The value of the sample `series` (name with labels, as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_are_described_histograms_behind_a_token_and_follow_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, METRICS_TOKEN).expect("token file");
    let mut broker = Broker::start(Options {
        top: format!(
            "[metrics]\ntoken = {{ file = \"{}\" }}\n",
            token_file.display()
        ),
        ..Options::default()
    });
    // Some traffic: a full login and token request.
    tokens_for(
        &broker,
        &Browser::new(&broker),
        "rp-basic",
        "http://localhost:9/cb",
        "openid",
    )
    .await;

    let (status, _) = scrape(&broker, None).await;
    assert_eq!(status, 401, "no token, no metrics");
    let (status, _) = scrape(&broker, Some("wrong-token-0123456789")).await;
    assert_eq!(status, 401, "a wrong token is refused");
    let (status, text) = scrape(&broker, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{text}");

    // Every metric has its HELP and TYPE.
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(typed.len() >= 10, "{text}");
    for name in &typed {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "`{name}` has no HELP in:\n{text}"
        );
    }
    // Latencies are histograms (buckets add up across instances), never summaries.
    for name in [
        "broker_http_request_seconds",
        "broker_store_seconds",
        "broker_connector_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} histogram")),
            "{name}:\n{text}"
        );
        assert!(
            text.contains(&format!("{name}_bucket{{")),
            "{name} buckets:\n{text}"
        );
    }
    assert!(!text.contains("quantile="), "no summaries:\n{text}");
    assert_eq!(
        sample(
            &text,
            &format!(
                "broker_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "broker_config_generation"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "broker_config_last_reload_ok"),
        Some(1.0),
        "{text}"
    );
    let running = text
        .lines()
        .find(|l| l.starts_with("broker_config_info{") && l.ends_with(" 1"))
        .expect("the running configuration's digest")
        .to_string();

    // An applied reload, then a rejected one.
    let path = broker.config_path().to_path_buf();
    let original = std::fs::read_to_string(&path).expect("config");
    let added = format!("{original}\n[[clients]]\nid = \"rp-new\"\nname = \"New\"\nredirect_uris = [\"http://localhost:9/new\"]\nsecret = {{ env = \"TEST_RP_SECRET\" }}\n");
    std::fs::write(&path, &added).expect("write");
    broker.hangup();
    assert!(
        broker.wait_for_log("configuration reloaded", 1),
        "{}",
        broker.log_text()
    );
    let (_, text) = scrape(&broker, Some(METRICS_TOKEN)).await;
    assert_eq!(
        sample(&text, "broker_config_generation"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "broker_config_reloads_total{outcome=\"applied\"}"),
        Some(1.0),
        "{text}"
    );
    let old_series = running.trim_end_matches(" 1");
    assert_eq!(
        sample(&text, old_series),
        Some(0.0),
        "the old digest is 0:\n{text}"
    );

    std::fs::write(&path, added.replace("http://localhost:9/new", "ftp://x")).expect("write");
    broker.hangup();
    assert!(
        broker.wait_for_log("configuration rejected; the last good", 1),
        "{}",
        broker.log_text()
    );
    let (_, text) = scrape(&broker, Some(METRICS_TOKEN)).await;
    assert_eq!(
        sample(&text, "broker_config_reloads_total{outcome=\"rejected\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "broker_config_last_reload_ok"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "broker_config_generation"),
        Some(2.0),
        "{text}"
    );

    // A stop is logged.
    let status = Command::new("kill")
        .args(["-TERM", &broker.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(
        broker.wait_for_log("broker stopped", 1),
        "{}",
        broker.log_text()
    );
    broker.kill();
}
