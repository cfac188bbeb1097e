//! What operators rely on: live reload that keeps the last good configuration.

use std::process::Command;

use crate::harness::*;

#[tokio::test]
async fn reload_applies_a_good_configuration_and_keeps_the_last_good_one() {
    let broker = Broker::start(Options::default());
    let path = broker.config_path().to_path_buf();
    let original = std::fs::read_to_string(&path).expect("config");

    // A new platform, announced with SIGHUP.
    let added = format!(
        "{original}\n[[clients]]\nid = \"rp-new\"\nname = \"New platform\"\nredirect_uris = [\"http://localhost:9/new-cb\"]\nsecret = {{ env = \"TEST_RP_SECRET\" }}\n"
    );
    std::fs::write(&path, &added).expect("write");
    broker.hangup();
    assert!(
        broker.wait_for_log("configuration reloaded", 1),
        "{}",
        broker.log_text()
    );
    let t = tokens_for(
        &broker,
        &Browser::new(&broker),
        "rp-new",
        "http://localhost:9/new-cb",
        "openid",
    )
    .await;
    assert!(
        t["id_token"].is_string(),
        "the new client works without a restart"
    );

    // A broken edit (detected by the file watcher) is rejected with file, key and reason.
    let broken = added.replace(
        "redirect_uris = [\"http://localhost:9/new-cb\"]",
        "redirect_uris = [\"ftp://x\"]",
    );
    std::fs::write(&path, broken).expect("write");
    assert!(
        broker.wait_for_log("configuration rejected; the last good", 1),
        "{}",
        broker.log_text()
    );
    assert!(
        broker.log_text().contains("redirect_uris[0]"),
        "the problem names the key"
    );
    let t = tokens_for(
        &broker,
        &Browser::new(&broker),
        "rp-new",
        "http://localhost:9/new-cb",
        "openid",
    )
    .await;
    assert!(
        t["id_token"].is_string(),
        "the last good configuration still serves"
    );
}

#[tokio::test]
async fn a_reload_warns_of_a_changed_listen_only_when_the_file_changed_it() {
    let broker = Broker::start(Options::default());
    let path = broker.config_path().to_path_buf();
    let original = std::fs::read_to_string(&path).expect("config");
    let warnings = || broker.log_text().matches("`listen` changed").count();

    // The file's `listen` moves: that takes effect at the next restart, and says so.
    let port = original
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .map(|rest| rest.trim_end_matches('"'))
        .expect("the test configuration has a listen line");
    let moved = original.replace(
        &format!("listen = \"127.0.0.1:{port}"),
        "listen = \"127.0.0.1:9",
    );
    std::fs::write(&path, &moved).expect("write");
    broker.hangup();
    assert!(
        broker.wait_for_log("configuration reloaded", 1),
        "{}",
        broker.log_text()
    );
    assert_eq!(warnings(), 1, "{}", broker.log_text());

    // Another edit (a new platform) leaves the file's `listen` as it was: no warning,
    // although this process still listens where it started. The file watcher may reload
    // an edit as well as SIGHUP, so the edit is known applied once the platform is served.
    let second = format!(
        "{moved}\n[[clients]]\nid = \"rp-second\"\nname = \"Second\"\nredirect_uris = [\"http://localhost:9/second-cb\"]\nsecret = {{ env = \"TEST_RP_SECRET\" }}\n"
    );
    std::fs::write(&path, second).expect("write");
    broker.hangup();
    let browser = Browser::new(&broker);
    let (_, challenge) = pkce();
    let params = auth_params(
        "rp-second",
        "http://localhost:9/second-cb",
        "openid",
        &challenge,
    );
    let mut served = false;
    for _ in 0..300 {
        // An unknown client gets an error page; a known one the redirect to its login.
        if browser.authorize(&params).await.status().is_redirection() {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(served, "the second edit was applied: {}", broker.log_text());
    assert_eq!(warnings(), 1, "{}", broker.log_text());
    let resp = reqwest::get(broker.url("/.well-known/openid-configuration"))
        .await
        .expect("discovery");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "it still listens where it started"
    );
}

#[tokio::test]
async fn admin_api_is_off_by_default() {
    let broker = Broker::start(Options::default());
    let resp = reqwest::Client::new()
        .get(broker.url("/admin/connectors"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin");
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn maintenance_through_the_admin_api_reaches_citizens_and_the_audit_log() {
    let broker = Broker::start(Options {
        top: "audit_log = \"audit.log\"\n[admin]\ntoken = { env = \"TEST_ADMIN_TOKEN\" }\n".into(),
        ..Options::default()
    });
    let http = reqwest::Client::new();
    let resp = http
        .get(broker.url("/admin/connectors"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("admin");
    assert_eq!(resp.status().as_u16(), 401);

    let list: serde_json::Value = http
        .get(broker.url("/admin/connectors"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(list[0]["id"], "test-citizens");
    assert_eq!(list[0]["status"], "enabled");
    assert_eq!(list[0]["health"]["status"], "up");
    let clients = http
        .get(broker.url("/admin/clients"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin")
        .text()
        .await
        .expect("text");
    assert!(
        clients.contains("rp-basic") && !clients.contains(RP_SECRET),
        "no secrets: {clients}"
    );

    let resp = http
        .put(broker.url("/admin/connectors/test-citizens/maintenance"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"message": {"en": "Bank being upgraded", "vi": "Ngân hàng đang nâng cấp"}}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status().as_u16(), 204);

    let browser = Browser::new(&broker);
    let (_, challenge) = pkce();
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("ui_locales", "vi"));
    let html = browser.login_page(browser.authorize(&params).await).await;
    assert!(html.contains("Ngân hàng đang nâng cấp"), "{html}");
    assert!(
        !html.contains("id=\"use-test-citizens\""),
        "not usable while in maintenance"
    );

    let resp = http
        .delete(broker.url("/admin/connectors/test-citizens/maintenance"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 204);
    let html = browser.login_page(browser.authorize(&params).await).await;
    assert!(html.contains("id=\"use-test-citizens\""));

    let audit_path = broker.config_path().with_file_name("audit.log");
    let audit = std::fs::read_to_string(&audit_path).expect("audit log written");
    assert!(
        audit.contains("admin.maintenance_on") && audit.contains("admin.maintenance_off"),
        "{audit}"
    );
    assert!(
        audit.contains("admin.denied"),
        "failed admin calls are audited"
    );
    for line in audit.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("JSON lines");
    }
}

#[tokio::test]
async fn metrics_and_request_ids() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    tokens_for(
        &broker,
        &browser,
        "rp-basic",
        "http://localhost:9/cb",
        "openid",
    )
    .await;
    let resp = reqwest::Client::new()
        .get(broker.url("/metrics"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .expect("metrics");
    assert_eq!(
        resp.headers()
            .get("x-request-id")
            .and_then(|h| h.to_str().ok()),
        Some("trace-42")
    );
    let text = resp.text().await.expect("text");
    for needle in [
        "broker_logins_total{connector=\"test-citizens\",outcome=\"success\"} 1",
        "broker_logins_started_total{client=\"rp-basic\"} 1",
        "broker_tokens_issued_total{grant=\"authorization_code\"} 1",
        "broker_store_seconds",
        "broker_connector_seconds",
        "broker_http_requests_total",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    assert!(
        broker.wait_for_log("trace-42", 1),
        "the request id is on the log lines"
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_and_its_background_jobs() {
    let broker = Broker::start(Options::default());
    // Serving requests: the server has installed its signal handlers (before that, SIGTERM
    // would end the process at once).
    let health = reqwest::get(broker.url("/healthz")).await.expect("healthz");
    assert_eq!(health.status(), 200);
    let status = Command::new("kill")
        .args(["-TERM", &broker.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // The sweep of the embedded store, the reload watcher, the back-channel deliveries and
    // the follower of configuration versions all return: `stop` logs only once every job has.
    assert!(
        broker.wait_for_log("background jobs stopped", 1),
        "{}",
        broker.log_text()
    );
    assert!(broker.log_text().contains("jobs=4") || broker.log_text().contains("\"jobs\":4"));
}
