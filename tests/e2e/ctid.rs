//! The `ctid` connector end to end with the simulated CTID service: QR code and app link,
//! progress while waiting, approval with face verification, rejection, expiry, a result
//! signed with a key the service never published, and the service being down.

use crate::harness::*;
use crate::sims;

pub const CTID_API_KEY: &str = "ctid-api-key-for-tests";

/// The connector's TOML for a simulated service at `url`.
pub fn connector_toml(url: &str, key_file: &str) -> String {
    format!(
        r#"
[[connectors]]
id = "ctid"
type = "ctid"
name = {{ en = "CTID (network identity)", zh = "网络身份认证 CTID" }}

[connectors.settings]
service = {{ url = "{url}", timeout_ms = 3000, api_key = {{ file = "{key_file}" }} }}
client_id = "broker-e2e"
issuer = "{url}"
jwks_url = "{url}/jwks"
poll_seconds = 1
"#
    )
}

/// Polls (bounded) until the page satisfies `done`; returns the last answer.
async fn poll_until(
    w: &Waiting<'_>,
    done: impl Fn(u16, &Option<String>, &str) -> bool,
) -> (u16, Option<String>, String) {
    let mut last = (0, None, String::new());
    for _ in 0..100 {
        last = w.poll().await;
        if done(last.0, &last.1, &last.2) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the notification never arrived; last answer: {last:?}")
}

pub struct Setup {
    pub ctid: sims::Sim,
    _key: tempfile::TempDir,
    pub broker: Broker,
}

impl Setup {
    pub fn start(extra: &str) -> Setup {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let server = simulators::ctid::serve(
            &format!("127.0.0.1:{port}"),
            &url,
            Some(CTID_API_KEY.into()),
        )
        .expect("CTID simulator binds");
        let handle = server.handle();
        tokio::spawn(server);
        let (key, key_path) = sims::secret_file(CTID_API_KEY);
        let broker = Broker::start(Options {
            extra: format!("{}{extra}", connector_toml(&url, &key_path)),
            ..Options::default()
        });
        Setup {
            ctid: sims::Sim::from_handle(url, handle),
            _key: key,
            broker,
        }
    }
}

/// A CTID login waiting in the citizen's browser.
struct Waiting<'a> {
    browser: Browser,
    broker: &'a Broker,
    tx: String,
    csrf: String,
    verifier: String,
    app_link: String,
}

impl<'a> Waiting<'a> {
    async fn begin(broker: &'a Broker, lang: &str) -> Waiting<'a> {
        let browser = Browser::new(broker);
        let (verifier, challenge) = pkce();
        let mut params = auth_params(
            "rp-basic",
            "http://localhost:9/cb",
            "openid profile citizen_id",
            &challenge,
        );
        params.push(("ui_locales", lang));
        params.push(("acr_values", "http://eidas.europa.eu/LoA/high"));
        let first = browser.login_page(browser.authorize(&params).await).await;
        assert!(
            !first.contains("use-test-citizens"),
            "only high-assurance sources for acr_values=high: {first}"
        );
        // Where CTID is the only high source, the login goes straight to it.
        let page = if first.contains("id=\"qr\"") {
            first
        } else {
            browser.choose(&first, "ctid").await
        };
        assert!(
            page.contains("id=\"qr\"") && page.contains("data:image/svg+xml;base64,"),
            "QR code: {page}"
        );
        assert!(
            page.contains("src=\"/assets/wait.js\""),
            "auto-polling script"
        );
        let app_link = attr(&page, "app-link", "href").expect("app link");
        let qr = attr(&page, "qr", "data-content").expect("QR content");
        assert!(qr.contains("/app/"), "{qr}");
        Waiting {
            tx: tx_path(&page).expect("tx"),
            csrf: hidden(&page, "csrf").expect("csrf"),
            browser,
            broker,
            verifier,
            app_link: app_link.replace("&amp;", "&"),
        }
    }

    /// One poll: the next page (html) or the platform callback (location).
    async fn poll(&self) -> (u16, Option<String>, String) {
        let resp = self
            .browser
            .post(
                &self.broker.url(&format!("{}/step", self.tx)),
                &[("csrf", &self.csrf)],
            )
            .await;
        let (status, location, body) = self.browser.follow(resp).await;
        match &location {
            Some(l) if status == 303 && l.contains("/login/") => (
                200,
                None,
                self.browser.get(l).await.text().await.expect("page"),
            ),
            _ => (status, location, body),
        }
    }

    fn auth_id(&self) -> String {
        self.app_link
            .split("/app/")
            .nth(1)
            .and_then(|s| s.split('?').next())
            .expect("auth id in the app link")
            .to_string()
    }
}

/// The status the CTID service gives a request (`pending`, `cancelled`, ...).
async fn service_status(s: &Setup, auth_id: &str) -> String {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/auth/{auth_id}", s.ctid.url))
        .bearer_auth(CTID_API_KEY)
        .send()
        .await
        .expect("CTID status")
        .json()
        .await
        .expect("json");
    v["status"].as_str().unwrap_or_default().to_string()
}

/// The value of attribute `name` on the element with `id`.
pub fn attr(html: &str, id: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let tag_start = html[..start].rfind('<')?;
    let tag_end = start + html[start..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let marker = format!("{name}=\"");
    let v = tag.find(&marker)? + marker.len();
    let end = tag[v..].find('"')?;
    Some(tag[v..v + end].to_string())
}

/// Posts `action` (`approve`, `reject`) on the simulated app's page behind `link`.
pub async fn app_action(link: &str, action: &str, form: &[(&str, &str)]) {
    let base = link.split('?').next().expect("link");
    let status = reqwest::Client::new()
        .post(format!("{base}/{action}"))
        .form(form)
        .send()
        .await
        .expect("simulated app")
        .status();
    assert!(status.is_success(), "app {action}: {status}");
}

#[tokio::test]
async fn a_citizen_approves_in_the_app_with_face_verification() {
    let s = Setup::start("");
    let w = Waiting::begin(&s.broker, "en").await;
    let (_, _, page) = w.poll().await;
    let text = sims::element_text(&page, "instruction").expect("instruction");
    assert!(text.contains("scan this QR code"), "{text}");
    // The phone opens the link (as scanning the QR code would): progress is shown.
    let app = reqwest::get(&w.app_link)
        .await
        .expect("app page")
        .text()
        .await
        .expect("html");
    assert!(app.contains("id=approve"), "{app}");
    let (_, _, page) = w.poll().await;
    let text = sims::element_text(&page, "instruction").expect("instruction");
    assert!(text.contains("was scanned"), "progress: {text}");
    app_action(&w.app_link, "approve", &[("citizen", "wei")]).await;
    let (status, location, body) = w.poll().await;
    assert_eq!(status, 303, "{body}");
    let location = location.expect("callback");
    let code = url::Url::parse(&location)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code: {location}"));
    let (status, tokens, _) = token_basic(
        &s.broker,
        "rp-basic",
        RP_SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:9/cb"),
            ("code_verifier", &w.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let claims = verify_with_jwks(
        &s.broker,
        tokens["id_token"].as_str().expect("id"),
        "rp-basic",
    )
    .await;
    assert_eq!(claims["acr"], "http://eidas.europa.eu/LoA/high");
    assert_eq!(claims["name"], "王伟");
    assert_eq!(claims["citizen_id"], "110101199003074517");
    assert!(
        claims["amr"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "face")),
        "{claims}"
    );
    let script = reqwest::get(s.broker.url("/assets/wait.js"))
        .await
        .expect("script");
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .contains("javascript"));
}

#[tokio::test]
async fn rejection_expiry_forgery_and_outage_each_have_their_message() {
    let s = Setup::start("");
    // Rejected in the app.
    let w = Waiting::begin(&s.broker, "en").await;
    app_action(&w.app_link, "reject", &[]).await;
    let (status, _, body) = w.poll().await;
    assert_eq!(status, 403, "the citizen refused: a 4xx");
    assert!(body.contains("refused in the CTID app"), "{body}");

    // Cancelled on the waiting page: the platform gets access_denied.
    let w = Waiting::begin(&s.broker, "en").await;
    let resp = w
        .browser
        .post(
            &s.broker.url(&format!("{}/cancel", w.tx)),
            &[("csrf", &w.csrf)],
        )
        .await;
    let (status, location, _) = w.browser.follow(resp).await;
    assert_eq!(status, 303);
    assert!(
        location.is_some_and(|l| l.contains("error=access_denied")),
        "cancel returns to the platform"
    );
    // ... and the request leaves the citizen's app.
    assert_eq!(service_status(&s, &w.auth_id()).await, "cancelled");
    let app = reqwest::get(&w.app_link)
        .await
        .expect("app page")
        .text()
        .await
        .expect("text");
    assert!(app.contains("id=cancelled"), "{app}");

    // Back to the choice (the browser's back button) and CTID again: the first request is
    // withdrawn, a new one waits.
    let w = Waiting::begin(&s.broker, "en").await;
    let resp = w
        .browser
        .post(
            &s.broker.url(&format!("{}/start", w.tx)),
            &[("csrf", w.csrf.as_str()), ("connector", "ctid")],
        )
        .await;
    let (_, location, body) = w.browser.follow(resp).await;
    let page = match location {
        Some(l) if l.contains("/login/") => w.browser.get(&l).await.text().await.expect("page"),
        _ => body,
    };
    let new_link = attr(&page, "app-link", "href").expect("a new app link");
    assert_ne!(new_link.replace("&amp;", "&"), w.app_link);
    assert_eq!(service_status(&s, &w.auth_id()).await, "cancelled");

    // Expired before approval (the service ends the request; no waiting here).
    let w = Waiting::begin(&s.broker, "zh").await;
    sims::control(
        &s.ctid,
        "/control/expire",
        serde_json::json!({"auth_id": w.auth_id()}),
    )
    .await;
    let (status, _, body) = w.poll().await;
    assert_eq!(status, 403, "the citizen was too slow: a 4xx");
    assert!(body.contains("二维码在确认登录前已过期"), "{body}");

    // Approved, but the result is signed with a key the service never published.
    let w = Waiting::begin(&s.broker, "en").await;
    app_action(&w.app_link, "approve", &[("citizen", "an"), ("forge", "1")]).await;
    let (status, location, body) = w.poll().await;
    assert_eq!(
        status, 502,
        "a forged result must not sign in: {location:?}"
    );
    assert!(body.contains("could not be verified"), "{body}");
    assert!(
        s.broker.wait_for_log("result rejected", 1),
        "operators see why"
    );

    // The service down (nothing listens at its address): try later or another way.
    let (key, key_path) = sims::secret_file(CTID_API_KEY);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let broker = Broker::start(Options {
        top: "[admin]\ntoken = { env = \"TEST_ADMIN_TOKEN\" }\n".into(),
        extra: connector_toml(&dead, &key_path),
        ..Options::default()
    });
    assert_eq!(connector_health(&broker, "ctid").await.0, "up");
    let browser = Browser::new(&broker);
    let choice = browser.choice_page().await;
    assert!(!choice.contains("id=\"trouble-ctid\""), "{choice}");
    let csrf = hidden(&choice, "csrf").expect("csrf");
    let tx = tx_path(&choice).expect("tx");
    let resp = browser
        .post(
            &broker.url(&format!("{tx}/start")),
            &[("csrf", &csrf), ("connector", "ctid")],
        )
        .await;
    let (status, _, body) = browser.follow(resp).await;
    assert_eq!(status, 502);
    assert!(
        body.contains("not available right now") && body.contains("another way"),
        "{body}"
    );
    // The next citizens are told before they choose it; operators see why.
    let choice = Browser::new(&broker).choice_page().await;
    assert!(choice.contains("id=\"trouble-ctid\""), "{choice}");
    let (status, reason) = connector_health(&broker, "ctid").await;
    assert_eq!(status, "degraded");
    assert!(reason.starts_with(&format!("{dead}: ")), "{reason}");
    drop(key);
}

#[tokio::test]
async fn with_notifications_the_service_pushes_signed_outcomes() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let server = simulators::ctid::serve(
        &format!("127.0.0.1:{port}"),
        &url,
        Some(CTID_API_KEY.into()),
    )
    .expect("CTID simulator binds");
    let _ctid = sims::Sim::from_handle(url.clone(), server.handle());
    tokio::spawn(server);
    let (key, key_path) = sims::secret_file(CTID_API_KEY);
    let broker_port = free_port();
    let extra = format!(
        "{}delivery = \"notify\"\nnotify_url = \"http://127.0.0.1:{broker_port}/notify/ctid\"\n",
        connector_toml(&url, &key_path)
    );
    let broker = Broker::start(Options {
        extra,
        port: Some(broker_port),
        ..Options::default()
    });

    // Approved: "scanned" and then the result arrive by notification.
    let w = Waiting::begin(&broker, "en").await;
    let (_, _, page) = w.poll().await;
    assert!(page.contains("scan this QR code"), "{page}");
    reqwest::get(&w.app_link).await.expect("app page");
    poll_until(&w, |_, _, page| page.contains("was scanned")).await;
    app_action(&w.app_link, "approve", &[("citizen", "lan")]).await;
    let (_, location, _) = poll_until(&w, |status, _, _| status == 303).await;
    assert!(location.is_some_and(|l| l.contains("code=")), "signed in");

    // Anything not signed by the service is refused.
    let resp = reqwest::Client::new()
        .post(broker.url("/notify/ctid"))
        .json(&serde_json::json!({"notification": "eyJhbGciOiJub25lIn0.eyJhdXRoX2lkIjoieCJ9."}))
        .send()
        .await
        .expect("notify");
    assert_eq!(resp.status().as_u16(), 400);
    let w = Waiting::begin(&broker, "en").await;
    app_action(&w.app_link, "approve", &[("citizen", "an"), ("forge", "1")]).await;
    assert!(
        broker.wait_for_log("notification refused", 2),
        "the forged push is refused"
    );
    let (status, _, page) = w.poll().await;
    assert_eq!(status, 200, "still waiting: {page}");
    assert!(page.contains("id=\"qr\""), "{page}");

    // Rejected in the app.
    let w = Waiting::begin(&broker, "en").await;
    app_action(&w.app_link, "reject", &[]).await;
    let (_, _, body) = poll_until(&w, |status, _, _| status == 403).await;
    assert!(body.contains("refused in the CTID app"), "{body}");
    drop(key);
}
