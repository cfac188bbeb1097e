//! The `legacy-accounts` connector end to end: old portal accounts checked through the
//! simulated old system's API, or against imported Argon2 and bcrypt hashes; the end of
//! the transition period; failed-login throttling per account and per address.

use crate::harness::*;
use crate::sims::{self, Sim};

/// Argon2id and bcrypt hashes of "matkhau-cu", as an old system would export them.
const ARGON: &str = "$argon2id$v=19$m=19456,t=2,p=1$bGVnYWN5LWRlbW8tc2FsdA$WkLm/PyvvHu3d9TDC4T6ekmYHmu2aD/E8UULmF4MVYU";
const BCRYPT: &str = "$2b$06$/SqWkuZ3Tu0mipo7Tn0BSeSCyroed/caATWRe1fjPSP4CxAvJix2a";
const PASSWORD: &str = simulators::people::LEGACY_PASSWORD;

/// The connector's TOML: `backend` is `api = {…}` or accounts; `extra` more settings.
pub fn connector_toml(key_path: &str, until: &str, backend: &str, extra: &str) -> String {
    format!(
        r#"
[[connectors]]
id = "old-portal"
type = "legacy-accounts"
name = {{ en = "Old portal account", vi = "Tài khoản Cổng cũ" }}

[connectors.settings]
hash_key = {{ file = "{key_path}" }}
available_until = "{until}"
alternatives = {{ en = "VNeID or a bank card", vi = "VNeID hoặc thẻ ngân hàng" }}
{backend}
{extra}
"#
    )
}

struct Setup {
    _portal: Option<Sim>,
    _key: tempfile::TempDir,
    broker: Broker,
}

fn start_api(until: &str, extra: &str, top: &str) -> Setup {
    let port = free_port();
    let server = simulators::legacy::serve(&format!("127.0.0.1:{port}"), None).expect("binds");
    let handle = server.handle();
    tokio::spawn(server);
    let portal = sims::Sim::from_handle(format!("http://127.0.0.1:{port}"), handle);
    let (key, key_path) = sims::secret_file("hash-key-for-legacy-tests-0123456789abcdef");
    let backend = format!("api = {{ url = \"{}\", timeout_ms = 3000 }}", portal.url);
    let broker = Broker::start(Options {
        extra: connector_toml(&key_path, until, &backend, extra),
        top: top.into(),
        ..Options::default()
    });
    Setup {
        _portal: Some(portal),
        _key: key,
        broker,
    }
}

async fn sign_in(
    broker: &Broker,
    user: &str,
    password: &str,
    address: Option<&str>,
) -> (u16, Option<String>, String) {
    let browser = Browser::new(broker);
    let (_, challenge) = pkce();
    let params = auth_params(
        "rp-basic",
        "http://localhost:9/cb",
        "openid profile citizen_id",
        &challenge,
    );
    let choice = browser.login_page(browser.authorize(&params).await).await;
    let form = browser.choose(&choice, "old-portal").await;
    let csrf = hidden(&form, "csrf").unwrap_or_else(|| panic!("no form: {form}"));
    let tx = tx_path(&form).expect("tx");
    let mut req = browser.http.post(broker.url(&format!("{tx}/step"))).form(&[
        ("csrf", csrf.as_str()),
        ("username", user),
        ("password", password),
    ]);
    if let Some(a) = address {
        req = req.header("x-forwarded-for", a);
    }
    let resp = req.send().await.expect("POST");
    let (status, location, body) = browser.follow(resp).await;
    let body = match (&location, status) {
        (Some(l), 303) if l.contains("/login/") => browser.get(l).await.text().await.expect("page"),
        _ => body,
    };
    (status, location, body)
}

async fn claims_of(broker: &Broker, user: &str) -> serde_json::Value {
    let browser = Browser::new(broker);
    let (verifier, challenge) = pkce();
    let params = auth_params(
        "rp-basic",
        "http://localhost:9/cb",
        "openid profile citizen_id",
        &challenge,
    );
    let choice = browser.login_page(browser.authorize(&params).await).await;
    let form = browser.choose(&choice, "old-portal").await;
    let notice = sims::element_text(&form, "notice").expect("notice with the end date");
    assert!(
        notice.contains("31 December 2099") && notice.contains("VNeID"),
        "{notice}"
    );
    let resp = browser.submit_password(&form, user, PASSWORD).await;
    let (status, location, body) = browser.follow(resp).await;
    assert_eq!(status, 303, "{body}");
    let location = location.expect("location");
    let code = url::Url::parse(&location)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code: {location}"));
    let (status, body, _) = token_basic(
        broker,
        "rp-basic",
        RP_SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:9/cb"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    verify_with_jwks(
        broker,
        body["id_token"].as_str().expect("id token"),
        "rp-basic",
    )
    .await
}

#[tokio::test]
async fn an_old_account_signs_in_through_the_old_systems_api() {
    let s = start_api("2099-12-31", "", "");
    let claims = claims_of(&s.broker, "nguyenvanan").await;
    assert_eq!(claims["name"], "Nguyễn Văn An");
    assert_eq!(claims["acr"], "http://eidas.europa.eu/LoA/low");
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    // The number the old account recorded is not proven: it is never released as the
    // citizen's ID number.
    assert!(claims.get("citizen_id").is_none(), "{claims}");

    let (status, _, body) = sign_in(&s.broker, "nguyenvanan", "wrong", None).await;
    assert_eq!(status, 303);
    assert!(sims::element_text(&body, "problem").is_some_and(|p| p.contains("not correct")));
    let (status, _, body) = sign_in(
        &s.broker,
        simulators::legacy::CLOSED_ACCOUNT,
        PASSWORD,
        None,
    )
    .await;
    assert_eq!(status, 403, "a closed account: a 4xx");
    assert!(
        body.contains("is closed") && body.contains("VNeID or a bank card"),
        "{body}"
    );
    let logs = s.broker.settled_log_text().await;
    assert!(
        !logs.contains(PASSWORD) && !logs.contains("nguyenvanan"),
        "{logs}"
    );
}

#[tokio::test]
async fn an_unreachable_old_system_is_unavailable_and_reported() {
    let (key, key_path) = sims::secret_file("hash-key-for-legacy-tests-0123456789abcdef");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let broker = Broker::start(Options {
        top: "[admin]\ntoken = { env = \"TEST_ADMIN_TOKEN\" }\n".into(),
        extra: connector_toml(
            &key_path,
            "2099-12-31",
            &format!("api = {{ url = \"{dead}\", timeout_ms = 3000 }}"),
            "",
        ),
        ..Options::default()
    });
    assert_eq!(connector_health(&broker, "old-portal").await.0, "up");
    let (status, _, body) = sign_in(&broker, "nguyenvanan", PASSWORD, None).await;
    assert_eq!(status, 502);
    assert!(
        body.contains("not available right now") && body.contains("another way"),
        "{body}"
    );
    // The next citizens are told before they choose it; operators see why.
    let choice = Browser::new(&broker).choice_page().await;
    assert!(choice.contains("id=\"trouble-old-portal\""), "{choice}");
    let (status, reason) = connector_health(&broker, "old-portal").await;
    assert_eq!(status, "degraded");
    assert!(reason.starts_with(&format!("{dead}: ")), "{reason}");
    drop(key);
}

#[tokio::test]
async fn imported_argon2_and_bcrypt_hashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("accounts.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n",
            serde_json::json!({"username": "tranthilan", "password_hash": BCRYPT, "citizen_id": "012345678", "claims": {"name": "Trần Thị Lan"}})
        ),
    )
    .expect("accounts file");
    let (key, key_path) = sims::secret_file("hash-key-for-legacy-tests-0123456789abcdef");
    let backend = format!(
        "accounts_file = \"{}\"\naccounts = [{{ username = \"NguyenVanAn\", password_hash = \"{ARGON}\", claims = {{ name = \"Nguyễn Văn An\" }} }}]",
        file.display()
    );
    let broker = Broker::start(Options {
        extra: connector_toml(&key_path, "2099-12-31", &backend, ""),
        ..Options::default()
    });
    assert_eq!(
        claims_of(&broker, "nguyenvanan").await["name"],
        "Nguyễn Văn An"
    );
    assert_eq!(
        claims_of(&broker, "tranthilan").await["name"],
        "Trần Thị Lan"
    );
    let (_, _, body) = sign_in(&broker, "tranthilan", "matkhau-moi", None).await;
    assert!(body.contains("not correct"), "{body}");
    let (_, _, body) = sign_in(&broker, "nobody", PASSWORD, None).await;
    assert!(body.contains("not correct"), "{body}");
    drop(key);
}

#[tokio::test]
async fn after_the_end_date_the_citizen_is_told_which_way_to_use() {
    let s = start_api("2020-01-01", "", "");
    let browser = Browser::new(&s.broker);
    let (_, challenge) = pkce();
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("ui_locales", "vi"));
    let choice = browser.login_page(browser.authorize(&params).await).await;
    let csrf = hidden(&choice, "csrf").expect("csrf");
    let tx = tx_path(&choice).expect("tx");
    let resp = browser
        .post(
            &s.broker.url(&format!("{tx}/start")),
            &[("csrf", &csrf), ("connector", "old-portal")],
        )
        .await;
    let (status, _, body) = browser.follow(resp).await;
    assert_eq!(status, 403, "the transition ended: a 4xx");
    let message = sims::element_text(&body, "message").expect("message");
    let hint = sims::element_text(&body, "hint").expect("hint");
    assert!(message.contains("1/1/2020"), "{message}");
    assert!(hint.contains("VNeID hoặc thẻ ngân hàng"), "{hint}");
    assert!(
        body.contains("id=\"action\""),
        "a way back to the other sources"
    );
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_and_per_address() {
    let s = start_api(
        "2099-12-31",
        "failed_logins = { per_id = 3, per_phone = 0, per_address = 5 }",
        "trust_forwarded_for = true",
    );
    let b = &s.broker;
    // One account from three addresses: the fourth failure locks the account.
    for i in 0..3 {
        let (_, _, body) =
            sign_in(b, "nguyenvanan", "guess", Some(&format!("198.51.100.{i}"))).await;
        assert!(body.contains("not correct"), "{body}");
    }
    let (status, _, body) = sign_in(b, "nguyenvanan", "guess", Some("198.51.100.9")).await;
    assert_eq!(status, 429, "paused for the citizen's safety");
    assert!(
        body.contains("Too many failed sign-ins") && body.contains("minutes"),
        "{body}"
    );
    // Locked: the right password from a new address does not get in either.
    let (_, _, body) = sign_in(b, "nguyenvanan", PASSWORD, Some("198.51.100.10")).await;
    assert!(body.contains("Too many failed sign-ins"), "{body}");
    // Other accounts are not affected.
    let (status, location, _) = sign_in(b, "tranthilan", PASSWORD, Some("198.51.100.11")).await;
    assert_eq!(status, 303);
    assert!(location.is_some_and(|l| l.contains("code=")));

    // One address trying many accounts: locked after 5 failures.
    for user in ["a1", "a2", "a3", "a4", "a5"] {
        let (_, _, body) = sign_in(b, user, "guess", Some("192.0.2.99")).await;
        assert!(body.contains("not correct"), "{body}");
    }
    let (_, _, body) = sign_in(b, "a6", "guess", Some("192.0.2.99")).await;
    assert!(
        body.contains("Too many failed sign-ins"),
        "sixth failure: {body}"
    );
    let (_, _, body) = sign_in(b, "levanbinh", PASSWORD, Some("192.0.2.99")).await;
    assert!(body.contains("Too many failed sign-ins"), "{body}");
}
