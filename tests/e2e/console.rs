//! The operators' console over HTTP, on two broker instances sharing Redis and PostgreSQL:
//! who may open it (an operator at `high`, never a password alone), what each role may do,
//! and configuration versions — checked before they go live, compare-and-set, live on the
//! other instance within seconds, rolled back in one action.

use std::time::{Duration, Instant};

use crate::harness::*;
use crate::sims;
use crate::upstream_oidc;

/// `[console]`: An (079201001234 at VNeID) administers, Lan (001195006789) only views.
pub const CONSOLE: &str = r#"
[console]
min_assurance = "high"

[[console.operators]]
name = "An Admin"
citizen_id = "079201001234"
role = "admin"

[[console.operators]]
name = "Lan Viewer"
citizen_id = "001195006789"
role = "viewer"
"#;

/// A connector the tests add through the console.
const EXTRA: &str = r#"
[[connectors]]
id = "extra-citizens"
type = "test-citizens"
name = { en = "Extra citizens" }

[connectors.settings]
assurance = "substantial"

[[connectors.settings.citizens]]
username = "neu"
password = "pw-neu"
claims = { name = "Người Mới" }
"#;

/// An upstream provider without its issuer: refused with the key.
const BROKEN: &str = r#"
[[connectors]]
id = "broken-idp"
type = "oidc"
name = { en = "Broken" }

[connectors.settings]
client_id = "x"
"#;

/// Undoes the HTML escaping of askama in a page's text.
pub fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The text between `start` and `end` in `html`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = html.find(start)? + start.len();
    let to = html[from..].find(end)?;
    Some(&html[from..from + to])
}

/// Signs `browser` in to the console through VNeID as `username`; returns the overview.
pub async fn console_sign_in(browser: &Browser, base: &str, username: &str) -> String {
    let mut next = format!("{base}/console/signin?ui_locales=en");
    for _ in 0..8 {
        let (status, location, body) = browser.follow(browser.get(&next).await).await;
        if status == 200 {
            return body;
        }
        assert_eq!(status, 303, "{next}: {body}");
        let location = location.expect("location");
        let location = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        next = if location.contains("/authorize?") && !location.contains("broker-console") {
            // At the simulated VNeID: its page, then back to the broker.
            upstream_oidc::at_simulator(&location, username, "login").await
        } else {
            location
        };
        // A choice page between several strong sources: take VNeID.
        if next.contains("/login/") {
            let (status, location, body) = browser.follow(browser.get(&next).await).await;
            if status == 303 {
                next = location.expect("location");
                continue;
            }
            let tx = tx_path(&body).expect("tx");
            let csrf = hidden(&body, "csrf").expect("csrf");
            let resp = browser
                .post(
                    &format!("{base}{tx}/start"),
                    &[("csrf", &csrf), ("connector", "vneid")],
                )
                .await;
            let (_, location, _) = browser.follow(resp).await;
            next = location.expect("to VNeID");
        }
    }
    panic!("the console sign-in did not end at the console");
}

/// The console's CSRF token and the document and version of the configuration page.
async fn config_page(browser: &Browser, base: &str) -> (String, String, u64) {
    let html = browser
        .get(&format!("{base}/console/config"))
        .await
        .text()
        .await
        .expect("page");
    let csrf = hidden(&html, "csrf").expect("csrf");
    let version = hidden(&html, "version")
        .and_then(|v| v.parse().ok())
        .expect("version");
    let document =
        unescape(between(&html, "spellcheck=\"false\">", "</textarea>").expect("textarea"));
    (csrf, document, version)
}

/// The choice page as `broker` itself serves it (its redirects name the shared issuer,
/// which is the other instance).
async fn choice_html(broker: &Broker) -> String {
    let browser = Browser::new(broker);
    choice_on(&browser, broker).await.1
}

/// A new login's (transaction path, choice page) at `broker`.
async fn choice_on(browser: &Browser, broker: &Broker) -> (String, String) {
    let (_, challenge) = pkce();
    let resp = browser
        .authorize(&auth_params(
            "rp-basic",
            "http://localhost:9/cb",
            "openid",
            &challenge,
        ))
        .await;
    let (status, location, body) = browser.follow(resp).await;
    assert_eq!(status, 303, "{body}");
    let location = location.expect("location");
    let path = &location[location.find("/login/").expect("a login page")..];
    let html = browser
        .get(&broker.url(path))
        .await
        .text()
        .await
        .expect("page");
    (path.to_string(), html)
}

/// Polls `broker`'s choice page until `pred` holds; returns how long it took.
async fn until_choice(broker: &Broker, pred: impl Fn(&str) -> bool) -> Duration {
    let started = Instant::now();
    for _ in 0..300 {
        if pred(&choice_html(broker).await) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the other instance never showed the change");
}

#[tokio::test]
async fn the_console_opens_at_high_for_operators_and_every_change_is_checked_live_and_undone() {
    let broker_port = free_port();
    let vneid_port = free_port();
    let vneid_url = format!("http://127.0.0.1:{vneid_port}");
    let _vneid = sims::spawn(
        simulators::vneid::serve(
            &format!("127.0.0.1:{vneid_port}"),
            &vneid_url,
            vec![simulators::vneid::Client {
                id: "broker-e2e".into(),
                secret: RP_SECRET.into(),
                redirect_uris: vec![format!("http://127.0.0.1:{broker_port}/callback/vneid")],
            }],
        )
        .expect("VNeID simulator binds"),
        vneid_port,
    );
    let broker = Broker::start(Options {
        port: Some(broker_port),
        redis_prefix: Some(format!("console-{}", records::new_id())),
        top: CONSOLE.to_string(),
        extra: upstream_oidc::VNEID_CONNECTOR.replace("ISSUER", &vneid_url),
        ..Options::default()
    });
    let twin = broker.twin();
    let base = broker.base.clone();

    // A password alone (test citizens: substantial) never opens the console.
    let weak = Browser::new(&broker);
    let (_, challenge) = pkce();
    weak.login(
        &auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge),
        "an",
        "demo",
    )
    .await;
    let resp = weak.get(&format!("{base}/console")).await;
    assert_eq!(resp.status().as_u16(), 403);
    let body = resp.text().await.expect("page");
    assert!(body.contains("not strong enough"), "{body}");
    assert!(body.contains("/console/signin"), "a way on: {body}");
    // Without any session: to the sign-in.
    let (status, location, _) = Browser::new(&broker)
        .follow(Browser::new(&broker).get(&format!("{base}/console")).await)
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/console/signin?ui_locales=en"))
    );

    // The same citizen steps up with VNeID (level 2 = high) and is the admin.
    let overview = console_sign_in(&weak, &base, "an").await;
    assert!(overview.contains("An Admin · admin"), "{overview}");
    let admin = weak;

    // Version 1 is the file's connectors and clients.
    let (csrf, document, version) = config_page(&admin, &base).await;
    assert_eq!(version, 1);
    assert!(document.contains("id = \"rp-basic\""), "{document}");
    assert!(document.contains("id = \"vneid\""), "{document}");

    // A broken connector: every problem by key, nothing published.
    let broken = format!("{document}\n{BROKEN}");
    for path in ["/console/config/check", "/console/config/apply"] {
        let resp = admin
            .post(
                &format!("{base}{path}"),
                &[("csrf", &csrf), ("version", "1"), ("document", &broken)],
            )
            .await;
        assert_eq!(resp.status().as_u16(), 422, "{path}");
        let body = unescape(&resp.text().await.expect("page"));
        assert!(
            body.contains("connectors[\"broken-idp\"].settings"),
            "{path}: {body}"
        );
        assert!(body.contains("nothing was applied"), "{body}");
    }
    assert_eq!(config_page(&admin, &base).await.2, 1, "nothing published");

    // A wrong CSRF token changes nothing.
    let resp = admin
        .post(
            &format!("{base}/console/config/apply"),
            &[
                ("csrf", "forged"),
                ("version", "1"),
                ("document", &document),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);

    // A good change: checked (the difference shown), applied, live on the other instance.
    let added = format!("{document}\n{EXTRA}");
    let resp = admin
        .post(
            &format!("{base}/console/config/check"),
            &[("csrf", &csrf), ("version", "1"), ("document", &added)],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let body = unescape(&resp.text().await.expect("page"));
    assert!(body.contains("+ id = \"extra-citizens\""), "{body}");
    assert!(!twin_has_extra(&twin).await, "a check publishes nothing");
    let applied = Instant::now();
    let resp = admin
        .post(
            &format!("{base}/console/config/apply"),
            &[
                ("csrf", &csrf),
                ("version", "1"),
                ("document", &added),
                ("note", "extra citizens"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.text().await.expect("page");
    assert!(body.contains("Version 2 is published"), "{body}");
    assert!(
        choice_html(&broker).await.contains("Extra citizens"),
        "in force where it was applied"
    );
    until_choice(&twin, |html| html.contains("Extra citizens")).await;
    println!(
        "configuration version 2: first seen on the other instance {} ms after apply",
        applied.elapsed().as_millis()
    );
    // A citizen signs in through the new connector on the other instance, no restart.
    let citizen = Browser::new(&twin);
    let (_, choice) = choice_on(&citizen, &twin).await;
    let resp = citizen
        .post(
            &twin.url(&format!("{}/start", tx_path(&choice).expect("tx"))),
            &[
                ("csrf", &hidden(&choice, "csrf").expect("csrf")),
                ("connector", "extra-citizens"),
            ],
        )
        .await;
    let (status, _, body) = citizen.follow(resp).await;
    assert_eq!(status, 303, "{body}");
    let form = citizen
        .get(&twin.url(&tx_path(&choice).expect("tx")))
        .await
        .text()
        .await
        .expect("form");
    let (status, location, body) = citizen
        .follow(citizen.submit_password(&form, "neu", "pw-neu").await)
        .await;
    assert_eq!(status, 303, "{body}");
    assert!(location.expect("location").contains("code="));

    // Someone who opened version 1 cannot overwrite version 2.
    let resp = admin
        .post(
            &format!("{base}/console/config/apply"),
            &[("csrf", &csrf), ("version", "1"), ("document", &document)],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 409);
    assert!(resp
        .text()
        .await
        .expect("page")
        .contains("published version 2"));

    // The viewer sees, and can change nothing (the forms are not there, the posts refused).
    let viewer = Browser::new(&broker);
    let overview = console_sign_in(&viewer, &base, "lan").await;
    assert!(overview.contains("Lan Viewer · viewer"), "{overview}");
    let html = viewer
        .get(&format!("{base}/console/config"))
        .await
        .text()
        .await
        .expect("page");
    assert!(!html.contains("<textarea"), "no editor for a viewer");
    assert!(!html.contains("pw-neu"), "passwords are masked for viewers");
    // The lookup form is a viewer's: its token is the console's.
    let reviews = viewer
        .get(&format!("{base}/console/reviews"))
        .await
        .text()
        .await
        .expect("page");
    let viewer_csrf = hidden(&reviews, "csrf").expect("csrf of the lookup form");
    for (path, form) in [
        (
            "/console/config/apply",
            vec![("version", "2"), ("document", document.as_str())],
        ),
        ("/console/history/1/rollback", vec![]),
        (
            "/console/maintenance",
            vec![("key", "vneid"), ("action", "on"), ("message_en", "Down")],
        ),
    ] {
        let mut form = form;
        form.push(("csrf", viewer_csrf.as_str()));
        let resp = viewer.post(&format!("{base}{path}"), &form).await;
        assert_eq!(resp.status().as_u16(), 403, "{path}");
    }

    // A new platform registered from the console: its secret shown once, kept as a digest,
    // and good at the other instance's token endpoint at once.
    let resp = admin
        .post(
            &format!("{base}/console/clients/register"),
            &[
                ("csrf", &csrf),
                ("client_id", "new-platform"),
                ("name", "New platform"),
                ("redirect_uri", "https://platform.example.gov/cb"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let page = resp.text().await.expect("page");
    let secret = between(&page, "<code id=\"client-secret\">", "</code>")
        .expect("the secret, once")
        .to_string();
    let (_, now, version) = config_page(&admin, &base).await;
    assert_eq!(version, 3);
    assert!(now.contains("id = \"new-platform\""), "{now}");
    assert!(!now.contains(&secret), "only the secret's digest is kept");
    let mut registered = false;
    for _ in 0..300 {
        let resp = Browser::new(&twin)
            .authorize(&auth_params(
                "new-platform",
                "https://platform.example.gov/cb",
                "openid",
                "x".repeat(43).as_str(),
            ))
            .await;
        if resp.status().as_u16() == 303 {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(registered, "the other instance knows the new platform");
    let platform = Browser::new(&broker);
    let (verifier, challenge) = pkce();
    let callback = platform
        .login(
            &auth_params(
                "new-platform",
                "https://platform.example.gov/cb",
                "openid",
                &challenge,
            ),
            "lan",
            "demo",
        )
        .await;
    let code = callback.param("code").expect("code");
    let (status, tokens, _) = token_basic(
        &twin,
        "new-platform",
        &secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://platform.example.gov/cb"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["id_token"].is_string());

    // Roll back to version 1 in one action: version 4, and the connector is gone there too.
    let resp = admin
        .post(
            &format!("{base}/console/history/1/rollback"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.text().await.expect("page");
    assert!(body.contains("Version 4 brings back version 1"), "{body}");
    until_choice(&twin, |html| !html.contains("Extra citizens")).await;
    let (_, now, version) = config_page(&admin, &base).await;
    assert_eq!((version, now), (4, document.clone()));

    // Maintenance from the console: the other instance's citizens see the message.
    let resp = admin
        .post(
            &format!("{base}/console/maintenance"),
            &[
                ("csrf", &csrf),
                ("key", "test-citizens"),
                ("action", "on"),
                ("message_en", "Upgrading the test citizens"),
                ("message_vi", "Đang nâng cấp"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    until_choice(&twin, |html| html.contains("Upgrading the test citizens")).await;

    // Every action is in the audit view, with the operator's name.
    let audit = admin
        .get(&format!("{base}/console/audit?event=config."))
        .await
        .text()
        .await
        .expect("page");
    assert!(audit.contains("config.published"), "{audit}");
    assert!(audit.contains("config.seeded"), "{audit}");
    assert!(audit.contains("An Admin"), "{audit}");
    assert!(!audit.contains("admin.maintenance_on"), "filtered by event");
    let audit = admin
        .get(&format!("{base}/console/audit?actor=An+Admin"))
        .await
        .text()
        .await
        .expect("page");
    assert!(audit.contains("admin.maintenance_on"), "{audit}");

    // The overview charts this instance's sign-ins per source and minute.
    let overview = admin
        .get(&format!("{base}/console"))
        .await
        .text()
        .await
        .expect("page");
    let row = between(&overview, "<td>test-citizens</td>", "</tr>").expect("test citizens' row");
    assert!(row.contains("<svg class=\"chart\""), "{row}");
    assert!(
        row.contains("2 signed in, 0 failed, 0 unavailable (0 % errors)"),
        "an's and lan's password logins here: {row}"
    );

    // Both instances report the version they run.
    let overview = admin
        .get(&format!("{base}/console"))
        .await
        .text()
        .await
        .expect("page");
    let rows = between(&overview, "<table id=\"instances\">", "</table>").expect("instances");
    assert!(
        rows.matches("<tr>").count() >= 3,
        "a header and two instances: {rows}"
    );
    drop(twin);
}

async fn twin_has_extra(twin: &Broker) -> bool {
    choice_html(twin).await.contains("Extra citizens")
}

#[tokio::test]
async fn the_admin_api_publishes_checks_and_rolls_back_versions_as_the_console_does() {
    let broker = Broker::start(Options {
        top: format!("[admin]\ntoken = {{ env = \"TEST_ADMIN_TOKEN\" }}\n{CONSOLE}"),
        ..Options::default()
    });
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(broker.url(path)).bearer_auth(ADMIN_TOKEN).send();
    let post = |path: &str, body: serde_json::Value| {
        http.post(broker.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };

    // The description of the API, and nothing without the token.
    let spec: serde_json::Value = get("/admin/openapi.json")
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(spec["openapi"], "3.0.3");
    for path in [
        "/admin/config",
        "/admin/config/rollback",
        "/admin/instances",
        "/admin/audit",
        "/admin/reviews/{id}",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} is described");
    }
    let anonymous = http
        .get(broker.url("/admin/config"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status().as_u16(), 401);

    let live: serde_json::Value = get("/admin/config")
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(live["version"], 1);
    assert_eq!(live["author"], "bootstrap");
    let document = live["document"].as_str().expect("document").to_string();

    // Problems by key; nothing published.
    let broken = format!("{document}{BROKEN}");
    let resp = post(
        "/admin/config/check",
        serde_json::json!({ "document": broken }),
    )
    .await
    .expect("POST");
    assert_eq!(resp.status().as_u16(), 422);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_configuration");
    assert!(
        body["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("connectors[\"broken-idp\"]"))),
        "{body}"
    );
    let resp = post(
        "/admin/config",
        serde_json::json!({ "expected": 1, "document": broken, "operator": "robot" }),
    )
    .await
    .expect("POST");
    assert_eq!(resp.status().as_u16(), 422);

    // An upstream provider whose discovery cannot be read (nothing listens there) is
    // refused at its issuer, at Check and at publication.
    let dead = format!(
        "{document}\n[[connectors]]\nid = \"dead-idp\"\ntype = \"oidc\"\nname = {{ en = \"Dead\" }}\n\n[connectors.settings]\nissuer = \"http://127.0.0.1:{}\"\nclient_id = \"x\"\nclient_secret = {{ env = \"TEST_RP_SECRET\" }}\ntimeout_ms = 2000\n",
        free_port()
    );
    for (path, body) in [
        (
            "/admin/config/check",
            serde_json::json!({ "document": dead }),
        ),
        (
            "/admin/config",
            serde_json::json!({ "expected": 1, "document": dead, "operator": "robot" }),
        ),
    ] {
        let resp = post(path, body).await.expect("POST");
        assert_eq!(resp.status().as_u16(), 422, "{path}");
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(
            body["problems"][0]["key"], "connectors[\"dead-idp\"].settings.issuer",
            "{body}"
        );
        assert!(
            body["problems"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("discovery")),
            "{body}"
        );
    }

    // A good change: its difference, then published; a second publisher at 1 gets 409.
    let added = format!("{document}{EXTRA}");
    let body: serde_json::Value = post(
        "/admin/config/check",
        serde_json::json!({ "document": added, "expected": 1 }),
    )
    .await
    .expect("POST")
    .json()
    .await
    .expect("json");
    assert!(
        body["diff"]
            .as_array()
            .expect("diff")
            .iter()
            .any(|l| l == "+ id = \"extra-citizens\""),
        "{body}"
    );
    let publications = futures_util::future::join_all((0..4).map(|i| {
        post(
            "/admin/config",
            serde_json::json!({ "expected": 1, "document": added, "operator": format!("robot {i}") }),
        )
    }))
    .await;
    let statuses: Vec<u16> = publications
        .iter()
        .map(|r| r.as_ref().expect("POST").status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "one of four concurrent publishers: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        3,
        "{statuses:?}"
    );
    assert!(Browser::new(&broker)
        .choice_page()
        .await
        .contains("Extra citizens"));

    // Roll back: version 3 holds version 1's document.
    let body: serde_json::Value = post(
        "/admin/config/rollback",
        serde_json::json!({ "to": 1, "operator": "robot" }),
    )
    .await
    .expect("POST")
    .json()
    .await
    .expect("json");
    assert_eq!(body["version"], 3);
    let three: serde_json::Value = get("/admin/config/versions/3")
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(three["document"].as_str(), Some(document.as_str()));
    assert_eq!(three["note"], "rollback to version 1");
    assert!(!Browser::new(&broker)
        .choice_page()
        .await
        .contains("Extra citizens"));
    let history: serde_json::Value = get("/admin/config/history")
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(
        history
            .as_array()
            .expect("list")
            .iter()
            .map(|v| v["version"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>(),
        vec![3, 2, 1]
    );

    // This instance reports version 3; the audit names the automation.
    let instances: serde_json::Value = get("/admin/instances")
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(instances["head"], 3);
    let mut reported = false;
    for _ in 0..100 {
        let now: serde_json::Value = get("/admin/instances")
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        if now["instances"]
            .as_array()
            .is_some_and(|l| l.iter().any(|i| i["version"] == 3))
        {
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reported, "the instance reports the version it runs");
    let audit: serde_json::Value = get("/admin/audit?event=config.published")
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let authors: Vec<&str> = audit
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["actor"].as_str())
        .collect();
    assert_eq!(authors.len(), 2, "{audit}");
    assert!(
        authors.iter().all(|a| a.ends_with("(admin API)")),
        "{authors:?}"
    );

    // /readyz says which version this instance runs and that it does not lag.
    let ready: serde_json::Value = http
        .get(broker.url("/readyz"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ready["config"],
        serde_json::json!({"version": 3, "newest": 3, "lagging": false})
    );

    // `broker config export` prints the configuration in force as a file again (the
    // embedded records are the running broker's until it stops).
    let config = broker.config_path().to_path_buf();
    let mut broker = broker;
    broker.kill();
    let out = crate::records::broker_command(&config, &["config", "export", "--document"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        document,
        "version 3 is version 1's document"
    );
    let out = crate::records::broker_command(&config, &["config", "export"]);
    let whole = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        whole.contains("issuer = ") && whole.contains("id = \"rp-basic\""),
        "{whole}"
    );
    let exported = config.with_file_name("exported.toml");
    std::fs::write(&exported, &whole).expect("write");
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_broker"))
        .arg("check-config")
        .arg(&exported)
        .env("TEST_PAIRWISE", PAIRWISE)
        .env("TEST_RP_SECRET", RP_SECRET)
        .env("TEST_POST_SECRET", POST_SECRET)
        .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("run the broker binary");
    assert!(
        checked.status.success(),
        "the export is a valid configuration: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[tokio::test]
async fn a_version_an_instance_cannot_open_is_refused_there_kept_elsewhere_and_reported() {
    // Two instances with files of their own in one set of records: a logo only the first
    // has makes the new version fail to open on the second.
    let db = records::testing::TestDb::create().await;
    let top = format!("[admin]\ntoken = {{ env = \"TEST_ADMIN_TOKEN\" }}\n{CONSOLE}");
    let first = Broker::start(Options {
        records_url: Some(db.url()),
        top: top.clone(),
        ..Options::default()
    });
    let second = Broker::start(Options {
        records_url: Some(db.url()),
        top,
        ..Options::default()
    });
    let logo = first.config_path().with_file_name("only-here.svg");
    std::fs::write(
        &logo,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"/>",
    )
    .expect("logo");
    let http = reqwest::Client::new();
    let live: serde_json::Value = http
        .get(first.url("/admin/config"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let document = format!(
        "{}{}",
        live["document"].as_str().expect("document"),
        EXTRA.replace(
            "name = { en = \"Extra citizens\" }",
            "name = { en = \"Extra citizens\" }\nlogo = { en = \"only-here.svg\" }"
        )
    );
    let resp = http
        .post(first.url("/admin/config"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "expected": live["version"], "document": document, "operator": "robot" }))
        .send()
        .await
        .expect("POST");
    let status = resp.status().as_u16();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap_or_default());
    assert!(Browser::new(&first)
        .choice_page()
        .await
        .contains("Extra citizens"));

    // The second refuses it, keeps version 1, says so in /readyz and in its report.
    let mut report = serde_json::Value::Null;
    for _ in 0..200 {
        let ready: serde_json::Value = http
            .get(second.url("/readyz"))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        let instances: serde_json::Value = http
            .get(first.url("/admin/instances"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        let refused = instances["instances"].as_array().and_then(|l| {
            l.iter()
                .find(|i| {
                    i["problem"]
                        .as_str()
                        .is_some_and(|p| p.contains("refused version 2"))
                })
                .cloned()
        });
        if let (Some(r), true) = (refused, ready["config"]["lagging"] == true) {
            assert_eq!(ready["config"]["version"], 1);
            report = r;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        report["problem"]
            .as_str()
            .is_some_and(|p| p.contains("only-here.svg")),
        "the reason: {report}"
    );
    assert_eq!(report["version"], 1);
    assert!(
        !Browser::new(&second)
            .choice_page()
            .await
            .contains("Extra citizens"),
        "the last good version runs there"
    );
    drop(db);
}
