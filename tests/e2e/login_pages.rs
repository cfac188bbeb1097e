//! The citizen's side: choice page, forms, CSRF and browser binding, languages, SSO and the
//! `prompt` values, consent, and what never reaches the logs.

use crate::harness::*;

#[tokio::test]
async fn sso_answers_prompt_none_and_prompt_login_forces_a_new_login() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let (_, challenge) = pkce();
    let first = browser
        .login(
            &auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge),
            "an",
            "demo",
        )
        .await;
    assert!(first.param("code").is_some());

    // Another platform, same browser: a code straight away, and with prompt=none too.
    for extra in [None, Some(("prompt", "none"))] {
        let mut params = auth_params("rp-other", "http://127.0.0.1:9/cb", "openid", &challenge);
        params.extend(extra);
        let (status, location, _) = browser.follow(browser.authorize(&params).await).await;
        assert_eq!(status, 303);
        let cb = Callback {
            url: url::Url::parse(&location.expect("location")).expect("url"),
        };
        assert!(
            cb.url.as_str().starts_with("http://127.0.0.1:9/cb"),
            "silent SSO: {}",
            cb.url
        );
        assert!(cb.param("code").is_some());
    }

    // prompt=login shows the login page again.
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("prompt", "login"));
    let html = browser.login_page(browser.authorize(&params).await).await;
    assert!(html.contains("use-test-citizens"), "{html}");

    // select_account asks whether to continue with the session.
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("prompt", "select_account"));
    let html = browser.login_page(browser.authorize(&params).await).await;
    assert!(html.contains("Nguyễn Văn An"), "shows who is signed in");
    let csrf = hidden(&html, "csrf").expect("csrf");
    let tx = tx_path(&html).expect("tx");
    let resp = browser
        .post(
            &broker.url(&format!("{tx}/account")),
            &[("csrf", &csrf), ("choice", "continue")],
        )
        .await;
    let (status, location, _) = browser.follow(resp).await;
    assert_eq!(status, 303);
    assert!(location
        .expect("location")
        .starts_with("http://localhost:9/cb?code="));
}

#[tokio::test]
async fn prompt_none_without_session_and_a_fresh_browser() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let (_, challenge) = pkce();
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("prompt", "none"));
    let (_, location, _) = browser.follow(browser.authorize(&params).await).await;
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    assert_eq!(cb.param("error").as_deref(), Some("login_required"));
}

#[tokio::test]
async fn consent_is_asked_once_and_denial_returns_access_denied() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let (_, challenge) = pkce();
    let params = auth_params(
        "rp-consent",
        "http://localhost:9/consent-cb",
        "openid phone",
        &challenge,
    );
    let choice = browser.login_page(browser.authorize(&params).await).await;
    let form = browser.choose(&choice, "test-citizens").await;
    let (status, location, _) = browser
        .follow(browser.submit_password(&form, "an", "demo").await)
        .await;
    assert_eq!(status, 303);
    let consent = browser
        .get(&location.expect("consent page"))
        .await
        .text()
        .await
        .expect("page");
    assert!(
        consent.contains("Consent platform") && consent.contains("phone number"),
        "{consent}"
    );
    let csrf = hidden(&consent, "csrf").expect("csrf");
    let tx = tx_path(&consent).expect("tx");
    let resp = browser
        .post(
            &broker.url(&format!("{tx}/consent")),
            &[("csrf", &csrf), ("decision", "deny")],
        )
        .await;
    let (_, location, _) = browser.follow(resp).await;
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    assert_eq!(cb.param("error").as_deref(), Some("access_denied"));

    // prompt=none now needs consent.
    let mut none = params.clone();
    none.push(("prompt", "none"));
    let (_, location, _) = browser.follow(browser.authorize(&none).await).await;
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    assert_eq!(cb.param("error").as_deref(), Some("consent_required"));

    // Allow, then the next login is silent.
    let page = browser.login_page(browser.authorize(&params).await).await;
    let csrf = hidden(&page, "csrf").expect("csrf");
    let tx = tx_path(&page).expect("tx");
    let resp = browser
        .post(
            &broker.url(&format!("{tx}/consent")),
            &[("csrf", &csrf), ("decision", "allow")],
        )
        .await;
    let (_, location, _) = browser.follow(resp).await;
    assert!(location.expect("location").contains("code="));
    let (_, location, _) = browser.follow(browser.authorize(&none).await).await;
    assert!(
        location.expect("location").contains("code="),
        "consent remembered"
    );
}

#[tokio::test]
async fn wrong_passwords_are_counted_and_end_the_login() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let choice = browser.choice_page().await;
    let mut form = browser.choose(&choice, "test-citizens").await;
    for attempt in 1..=5 {
        let resp = browser.submit_password(&form, "an", "wrong").await;
        let (status, location, body) = browser.follow(resp).await;
        if attempt < 5 {
            assert_eq!(status, 303);
            form = browser
                .get(&location.expect("location"))
                .await
                .text()
                .await
                .expect("form");
            assert!(
                form.contains("id=\"problem\""),
                "the form shows the problem"
            );
            assert!(form.contains("The username or password is not correct."));
        } else {
            assert_eq!(status, 429, "{body}");
            assert!(body.contains("Too many wrong answers"));
        }
    }
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_the_same_browser() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let choice = browser.choice_page().await;
    let tx = tx_path(&choice).expect("tx");
    let resp = browser
        .post(
            &broker.url(&format!("{tx}/start")),
            &[("csrf", "forged"), ("connector", "test-citizens")],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp
        .text()
        .await
        .expect("page")
        .contains("The form has expired."));

    // Another browser (no binding cookie) cannot use the transaction, even with its token.
    let other = Browser::new(&broker);
    let csrf = hidden(&choice, "csrf").expect("csrf");
    let resp = other
        .post(
            &broker.url(&format!("{tx}/start")),
            &[("csrf", &csrf), ("connector", "test-citizens")],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.expect("page").contains("another browser"));
}

#[tokio::test]
async fn pages_speak_the_citizens_language_and_show_maintenance() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let (_, challenge) = pkce();
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("ui_locales", "vi-VN en"));
    let html = browser.login_page(browser.authorize(&params).await).await;
    assert!(html.contains("<html lang=\"vi\">"));
    assert!(html.contains("Chọn cách đăng nhập"));
    assert!(
        html.contains("Công dân thử nghiệm"),
        "connector name in Vietnamese"
    );
    assert!(
        html.contains("Đang nâng cấp đến thứ Hai"),
        "maintenance notice in Vietnamese"
    );

    // Accept-Language when the platform sends no ui_locales; Chinese error page.
    let resp = reqwest::Client::new()
        .get(broker.url("/authorize?client_id=nobody"))
        .header("accept-language", "zh-CN,zh;q=0.9")
        .send()
        .await
        .expect("page");
    assert_eq!(resp.status().as_u16(), 400);
    let body = resp.text().await.expect("body");
    assert!(body.contains("未在本认证平台登记"), "{body}");

    // A connector in maintenance cannot be started.
    let csrf = hidden(&html, "csrf").expect("csrf");
    let tx = tx_path(&html).expect("tx");
    let resp = browser
        .post(
            &broker.url(&format!("{tx}/start")),
            &[("csrf", &csrf), ("connector", "closed-bank")],
        )
        .await;
    let (status, location, _) = browser.follow(resp).await;
    assert_eq!(status, 303);
    assert!(
        location.expect("location").ends_with(&tx),
        "back to the choice page"
    );
}

/// A connector's logo follows the citizen's language, is served by the broker itself (the
/// pages' CSP allows no other origin) and an SVG opened alone is sandboxed.
#[tokio::test]
async fn connectors_show_their_logo_in_the_citizens_language() {
    let dir = tempfile::tempdir().expect("temp dir");
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 4 4'><rect width='4' height='4'/></svg>";
    let png = b"\x89PNG\r\n\x1a\nnot-really-pixels";
    std::fs::write(dir.path().join("en.svg"), svg).expect("write");
    std::fs::write(dir.path().join("zh.png"), png).expect("write");
    let broker = Broker::start(Options {
        extra: format!(
            r#"
[[connectors]]
id = "with-logo"
type = "test-citizens"
name = {{ en = "Source with a logo" }}
logo = {{ en = "{en}", zh = "{zh}" }}

[connectors.settings]
citizens = [{{ username = "x", password = "y" }}]
"#,
            en = dir.path().join("en.svg").display(),
            zh = dir.path().join("zh.png").display()
        ),
        ..Options::default()
    });
    let browser = Browser::new(&broker);
    let (_, challenge) = pkce();
    let logo_of = |html: &str| -> String {
        let at = html
            .find("src=\"/connectors/with-logo/logo/")
            .unwrap_or_else(|| panic!("no logo on the choice page:\n{html}"));
        let rest = &html[at + 5..];
        rest[..rest.find('"').expect("end of src")]
            .replace("&#x3d;", "=")
            .replace("&amp;", "&")
    };
    let mut fetched = Vec::new();
    for (locale, lang, content_type, bytes) in [
        ("zh-CN", "zh", "image/png", &png[..]),
        ("vi", "en", "image/svg+xml", &svg[..]),
    ] {
        let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
        params.push(("ui_locales", locale));
        let html = browser.login_page(browser.authorize(&params).await).await;
        let src = logo_of(&html);
        assert!(
            src.starts_with(&format!("/connectors/with-logo/logo/{lang}?v=")),
            "{locale}: {src}"
        );
        assert!(
            !html.contains("src=\"/connectors/test-citizens/logo"),
            "a connector without a logo shows none"
        );
        let resp = reqwest::get(broker.url(&src)).await.expect("logo");
        assert_eq!(resp.status().as_u16(), 200);
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(header("content-type"), content_type);
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert!(header("content-security-policy").contains("sandbox"));
        assert!(
            header("cache-control").contains("immutable"),
            "versioned URL"
        );
        assert_eq!(&resp.bytes().await.expect("body")[..], bytes);
        let head = reqwest::Client::new()
            .head(broker.url(&src))
            .send()
            .await
            .expect("HEAD logo");
        assert_eq!(head.status().as_u16(), 200, "HEAD of a logo");
        assert!(head.bytes().await.expect("body").is_empty());
        fetched.push(src);
    }
    assert_ne!(fetched[0], fetched[1]);
    let unversioned = reqwest::get(broker.url("/connectors/with-logo/logo/en"))
        .await
        .expect("logo");
    assert_eq!(
        unversioned
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-cache"),
        "only the URL with the content's hash is cached long"
    );
    let missing = reqwest::get(broker.url("/connectors/with-logo/logo/es"))
        .await
        .expect("answer");
    assert_eq!(missing.status().as_u16(), 404);
    let no_keys = reqwest::get(broker.url("/connectors/with-logo/jwks"))
        .await
        .expect("answer");
    assert_eq!(no_keys.status().as_u16(), 404, "test citizens sign nothing");
}

#[tokio::test]
async fn cancel_returns_access_denied() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let html = browser.choice_page().await;
    let csrf = hidden(&html, "csrf").expect("csrf");
    let tx = tx_path(&html).expect("tx");
    let (_, location, _) = browser
        .follow(
            browser
                .post(&broker.url(&format!("{tx}/cancel")), &[("csrf", &csrf)])
                .await,
        )
        .await;
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    assert_eq!(cb.param("error").as_deref(), Some("access_denied"));
    assert_eq!(cb.param("state").as_deref(), Some("st-123"));
}

#[tokio::test]
async fn secrets_codes_and_id_numbers_stay_out_of_the_logs() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let t = tokens_for(
        &broker,
        &browser,
        "rp-basic",
        "http://localhost:9/cb",
        "openid citizen_id phone",
    )
    .await;
    let logs = broker.settled_log_text().await;
    assert!(logs.contains("tokens issued"), "logging works: {logs}");
    for secret in [
        "079201001234",
        "+84901234567",
        RP_SECRET,
        t["access_token"].as_str().expect("at"),
        t["refresh_token"].as_str().expect("rt"),
        "st-123",
        "n-456",
    ] {
        assert!(!logs.contains(secret), "`{secret}` leaked into the logs");
    }
    assert!(!logs.contains("code="), "no query strings in logs");
}

#[tokio::test]
async fn the_account_page_without_a_session_says_what_to_do_in_every_language() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    for (lang, hint) in [
        ("en", "Sign in to see your account"),
        ("vi", "Hãy đăng nhập để xem tài khoản"),
        ("zh", "登录后即可查看您的账户"),
        ("es", "Inicie sesión para ver su cuenta"),
    ] {
        let resp = browser
            .http
            .get(broker.url("/account"))
            .header("accept-language", lang)
            .send()
            .await
            .expect("account page");
        assert_eq!(resp.status().as_u16(), 401);
        let page = resp.text().await.expect("page");
        assert!(!page.contains("Unknown localization key"), "{lang}: {page}");
        assert!(page.contains(hint), "{lang}: {page}");
    }
}
