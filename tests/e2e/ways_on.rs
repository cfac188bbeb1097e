//! Issue 14: every page has a way on — back to the choice, back to the platform, sign in —
//! and the holes found by probing stay closed (per-client `sid`, admin token guessing,
//! slow bodies, unknown bank ids).

use crate::harness::*;

/// The `href` of the page's way on (`id="action"`), HTML entities of `&` undone.
fn action_href(html: &str) -> Option<String> {
    let at = html.find("id=\"action\"")?;
    let start = at + html[at..].find("href=\"")? + "href=\"".len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].replace("&amp;", "&").replace("&#38;", "&"))
}

/// A broker with the admin API on (`TEST_ADMIN_TOKEN`).
fn admin_broker() -> Broker {
    Broker::start(Options {
        top: "[admin]\ntoken = { env = \"TEST_ADMIN_TOKEN\" }\n".into(),
        ..Options::default()
    })
}

/// `PUT` of a maintenance message ("Upgrading") at `path` of the admin API.
async fn put_maintenance(broker: &Broker, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .put(broker.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"message": {"en": "Upgrading"}}))
        .send()
        .await
        .expect("admin")
}

async fn silent(browser: &Browser, client: &str, redirect: &str) -> Callback {
    let (_, challenge) = pkce();
    let mut params = auth_params(client, redirect, "openid", &challenge);
    params.push(("prompt", "none"));
    let (_, location, _) = browser.follow(browser.authorize(&params).await).await;
    Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    }
}

#[tokio::test]
async fn staying_signed_in_says_so_and_tells_the_platform_nothing() {
    let broker = Broker::start(Options {
        extra: r#"
[[clients]]
id = "rp-home"
name = "Home platform"
redirect_uris = ["http://localhost:9/home-cb"]
post_logout_redirect_uris = ["http://localhost:9/after-logout"]
home_url = "http://localhost:9/welcome"
secret = { env = "TEST_RP_SECRET" }
"#
        .into(),
        ..Options::default()
    });
    let browser = Browser::new(&broker);
    tokens_for(
        &broker,
        &browser,
        "rp-home",
        "http://localhost:9/home-cb",
        "openid",
    )
    .await;
    let page = browser
        .get(&broker.url(
            "/logout?client_id=rp-home&post_logout_redirect_uri=http://localhost:9/after-logout&state=s1",
        ))
        .await
        .text()
        .await
        .expect("confirmation");
    let csrf = hidden(&page, "csrf").expect("csrf");
    let start = page.find("action=\"/logout/").expect("form") + "action=\"".len();
    let action = page[start..start + page[start..].find('"').expect("end")].to_string();
    let resp = browser
        .post(
            &broker.url(&action),
            &[("csrf", &csrf), ("decision", "stay")],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200, "a page, not a redirect");
    assert!(resp.headers().get("location").is_none());
    let page = resp.text().await.expect("page");
    assert!(page.contains("You are still signed in"), "{page}");
    assert!(!page.contains("logged-out"), "{page}");
    assert_eq!(
        action_href(&page).as_deref(),
        Some("http://localhost:9/welcome"),
        "back to the platform's home, which learns nothing: {page}"
    );
    // Its language menu leads to the same page by GET, in the language chosen, with the
    // same way on; the session is untouched.
    let link = "/logout/kept?client_id=rp-home&#38;ui_locales=vi";
    assert!(page.contains(link), "a language menu: {page}");
    let resp = browser.get(&broker.url(&link.replace("&#38;", "&"))).await;
    assert_eq!(resp.status().as_u16(), 200);
    let page = resp.text().await.expect("page");
    assert!(page.contains("Bạn vẫn đang đăng nhập"), "{page}");
    assert!(page.contains("lang=\"vi\""), "{page}");
    assert_eq!(
        action_href(&page).as_deref(),
        Some("http://localhost:9/welcome"),
        "{page}"
    );
    // An id that is no registered client leads to the account page and is not repeated.
    let page = browser
        .get(&broker.url("/logout/kept?client_id=%3Cnobody%3E"))
        .await
        .text()
        .await
        .expect("page");
    assert_eq!(action_href(&page).as_deref(), Some("/account"), "{page}");
    assert!(!page.contains("nobody"), "{page}");
    assert!(silent(&browser, "rp-home", "http://localhost:9/home-cb")
        .await
        .param("code")
        .is_some());
}

#[tokio::test]
async fn every_step_goes_back_to_the_choice_and_keeps_the_login() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let choice = browser.choice_page().await;
    let form = browser.choose(&choice, "test-citizens").await;
    assert!(form.contains("id=\"other-way\""), "{form}");
    assert!(form.contains("id=\"cancel\""), "cancelling stays possible");
    let tx = tx_path(&form).expect("tx");
    let csrf = hidden(&form, "csrf").expect("csrf");
    let resp = browser
        .post(&broker.url(&format!("{tx}/back")), &[("csrf", &csrf)])
        .await;
    assert_eq!(resp.status().as_u16(), 303);
    let page = browser
        .get(&broker.url(&tx))
        .await
        .text()
        .await
        .expect("choice");
    assert!(page.contains("id=\"use-test-citizens\""), "{page}");
    // The same login goes on to a code.
    let form = browser.choose(&page, "test-citizens").await;
    let (status, location, body) = browser
        .follow(browser.submit_password(&form, "an", "demo").await)
        .await;
    assert_eq!(status, 303, "{body}");
    assert!(location.expect("to the platform").contains("code="));
}

#[tokio::test]
async fn a_login_that_ends_offers_the_way_back_to_the_platform() {
    // A source that never locks the account itself: the login's own limit ends it.
    let broker = Broker::start(Options {
        extra: r#"
[[connectors]]
id = "patient"
type = "test-citizens"
name = { en = "Patient citizens" }

[connectors.settings]
failed_logins = { per_id = 1000, per_phone = 0, per_address = 1000 }
citizens = [{ username = "an", password = "demo" }]
"#
        .into(),
        ..Options::default()
    });
    let browser = Browser::new(&broker);
    let choice = browser.choice_page().await;
    let mut form = browser.choose(&choice, "patient").await;
    let mut last = String::new();
    for _ in 0..5 {
        let resp = browser.submit_password(&form, "an", "wrong").await;
        let (status, location, body) = browser.follow(resp).await;
        if status == 303 {
            form = browser
                .get(&location.expect("location"))
                .await
                .text()
                .await
                .expect("form");
        } else {
            assert_eq!(status, 429, "{body}");
            last = body;
        }
    }
    let back = action_href(&last).expect("a way on");
    let back = url::Url::parse(&back).expect("url");
    assert!(
        back.as_str().starts_with("http://localhost:9/cb?"),
        "{back}"
    );
    let param = |n: &str| {
        back.query_pairs()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("error").as_deref(), Some("access_denied"));
    assert_eq!(param("state").as_deref(), Some("st-123"), "{back}");
    assert!(last.contains("Back to Basic platform"), "{last}");

    // A login that is gone still names its platform: back to its home page.
    let tx = tx_path(&choice).expect("tx");
    let resp = browser.get(&broker.url(&tx)).await;
    assert_eq!(resp.status().as_u16(), 400);
    let page = resp.text().await.expect("page");
    assert!(page.contains("This sign-in has ended"), "{page}");
    assert_eq!(action_href(&page).as_deref(), Some("http://localhost:9/"));
    assert!(
        page.contains(&format!("href=\"{tx}?ui_locales=vi\"")),
        "a language menu on the failure page too: {page}"
    );

    // Even the page of an unknown address has one, and never links to another site.
    let page = browser
        .get(&broker.url("//evil.example/x"))
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("href=\"/?ui_locales=vi\""), "{page}");
    assert!(!page.contains("href=\"//evil.example"), "{page}");
}

#[tokio::test]
async fn the_account_page_signs_in_lists_the_platforms_and_signs_out() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let resp = browser.get(&broker.url("/account")).await;
    assert_eq!(resp.status().as_u16(), 401);
    let page = resp.text().await.expect("page");
    let sign_in = action_href(&page).expect("Sign in");
    // Signing in is an ordinary login of the account page at /authorize.
    let (status, location, _) = browser
        .follow(browser.get(&broker.url(&sign_in)).await)
        .await;
    assert_eq!(status, 303);
    let to = location.expect("to /authorize");
    assert!(
        to.contains("/authorize?") && to.contains("client_id=broker-account"),
        "{to}"
    );
    let choice = browser.login_page(browser.get(&to).await).await;
    let form = browser.choose(&choice, "test-citizens").await;
    let (status, location, _) = browser
        .follow(browser.submit_password(&form, "an", "demo").await)
        .await;
    assert_eq!(status, 303);
    let back = location.expect("back to the account page");
    assert!(back.contains("/account/callback?"), "{back}");
    let (status, location, _) = browser.follow(browser.get(&back).await).await;
    assert_eq!((status, location.as_deref()), (303, Some("/account")));

    // A platform signed in to in this session is listed.
    assert!(silent(&browser, "rp-basic", "http://localhost:9/cb")
        .await
        .param("code")
        .is_some());
    let page = browser
        .get(&broker.url("/account"))
        .await
        .text()
        .await
        .expect("account");
    assert!(page.contains("Nguyễn Văn An"), "{page}");
    let platforms = &page[page.find("id=\"platforms\"").expect("platforms")..];
    assert!(platforms.contains("Basic platform"), "{page}");
    assert!(
        page.contains("<nav class=\"languages\""),
        "language menu: {page}"
    );

    // Sign out ends the session everywhere.
    let csrf = hidden(&page, "csrf").expect("csrf");
    let resp = browser
        .post(&broker.url("/account/logout"), &[("csrf", "forged")])
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    let resp = browser
        .post(&broker.url("/account/logout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp
        .text()
        .await
        .expect("page")
        .contains("id=\"logged-out\""));
    assert_eq!(
        silent(&browser, "rp-basic", "http://localhost:9/cb")
            .await
            .param("error")
            .as_deref(),
        Some("login_required")
    );
    assert_eq!(
        browser.get(&broker.url("/account")).await.status().as_u16(),
        401
    );
}

#[tokio::test]
async fn idp_hint_goes_straight_to_the_source_and_the_last_one_comes_first() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let (_, challenge) = pkce();
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("idp_hint", "test-citizens"));
    let page = browser.login_page(browser.authorize(&params).await).await;
    assert!(
        page.contains("name=\"password\""),
        "straight to the form: {page}"
    );
    let (status, _, body) = browser
        .follow(browser.submit_password(&page, "an", "demo").await)
        .await;
    assert_eq!(status, 303, "{body}");

    // An unknown or unavailable hint shows the choice, with the source used last first.
    let other = Browser::new(&broker);
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("idp_hint", "closed-bank"));
    let choice = other.login_page(other.authorize(&params).await).await;
    assert!(choice.contains("id=\"use-test-citizens\""), "{choice}");
    assert!(
        !choice.contains("id=\"last-used\""),
        "a new browser has no last source"
    );
    let (_, challenge) = pkce();
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("prompt", "login"));
    let choice = browser.login_page(browser.authorize(&params).await).await;
    let last = choice
        .find("id=\"last-used\"")
        .expect("marked as used last");
    let first = choice.find("name=\"connector\"").expect("a choice");
    assert!(
        choice[first..last].contains("value=\"test-citizens\""),
        "the source used last is the first choice: {choice}"
    );
}

#[tokio::test]
async fn each_platform_sees_its_own_session_id() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let basic = tokens_for(
        &broker,
        &browser,
        "rp-basic",
        "http://localhost:9/cb",
        "openid",
    )
    .await;
    let (verifier, challenge) = pkce();
    let mut params = auth_params("rp-other", "http://127.0.0.1:9/cb", "openid", &challenge);
    params.push(("prompt", "none"));
    let (_, location, _) = browser.follow(browser.authorize(&params).await).await;
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    let code = cb.param("code").expect("SSO code");
    let (status, other, _) = token_basic(
        &broker,
        "rp-other",
        RP_SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{other}");
    let sid = |t: &serde_json::Value, k: &str| {
        payload(t[k].as_str().expect("token"))["sid"]
            .as_str()
            .expect("sid")
            .to_string()
    };
    assert_eq!(sid(&basic, "id_token"), sid(&basic, "access_token"));
    assert_ne!(
        sid(&basic, "id_token"),
        sid(&other, "id_token"),
        "two platforms must not correlate the citizen through sid"
    );
}

#[tokio::test]
async fn guessing_the_admin_token_is_stopped_and_unknown_banks_are_refused() {
    let broker = admin_broker();
    let http = reqwest::Client::new();
    let call = |token: &'static str| {
        let http = http.clone();
        let url = broker.url("/admin/connectors");
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("admin")
                .status()
                .as_u16()
        }
    };
    assert_eq!(call(ADMIN_TOKEN).await, 200);
    // Parallel guesses: the wrong-token budget (10) holds however they arrive.
    let guesses: Vec<u16> = futures_util::future::join_all((0..16).map(|_| call("guess"))).await;
    let refused = guesses.iter().filter(|s| **s == 429).count();
    assert!(
        refused >= 6,
        "at most 10 wrong tokens are checked: {guesses:?}"
    );
    assert!(
        guesses.iter().all(|s| *s == 401 || *s == 429),
        "{guesses:?}"
    );
    assert_eq!(
        call(ADMIN_TOKEN).await,
        429,
        "the address waits out the window, even with the right token"
    );
}

#[tokio::test]
async fn a_hint_to_a_source_in_maintenance_shows_the_choice() {
    let broker = admin_broker();
    let resp = put_maintenance(&broker, "/admin/connectors/test-citizens/maintenance").await;
    assert_eq!(resp.status().as_u16(), 204);
    let browser = Browser::new(&broker);
    let (_, challenge) = pkce();
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("idp_hint", "test-citizens"));
    let page = browser.login_page(browser.authorize(&params).await).await;
    assert!(
        page.contains("Upgrading"),
        "the choice, with the notice: {page}"
    );
    assert!(
        !page.contains("name=\"password\""),
        "not the source's form: {page}"
    );
}

#[tokio::test]
async fn maintenance_of_an_unknown_part_is_refused() {
    let broker = admin_broker();
    let resp = put_maintenance(
        &broker,
        "/admin/connectors/test-citizens/parts/no-such-bank/maintenance",
    )
    .await;
    assert_eq!(resp.status().as_u16(), 404);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "unknown part", "{body}");
}

#[tokio::test]
async fn slow_bodies_end_and_one_address_cannot_hold_every_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = Broker::start(Options::default());
    let addr = broker.url("").trim_start_matches("http://").to_string();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type"
    );
    // A body shorter than its Content-Length is answered once the body deadline has
    // passed, instead of holding the connection for as long as the client likes.
    let mut short = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    short.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        // A hang guard only: the deadline is 10 s.
        let read = tokio::time::timeout(std::time::Duration::from_secs(120), short.read(&mut buf))
            .await
            .expect("the connection must not be held forever")
            .expect("read");
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..read]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 4"),
        "a client error for the unfinished body: {answer}"
    );

    // 64 unfinished requests from one address are held; then even a bodiless request of
    // that address is refused at once, until some finish. The held requests reach the
    // server in their own time, and each is answered once the body deadline (10 s) passes:
    // ask until all are counted, within 8 s of holding them, on a loaded machine holding a
    // fresh set again (at most three times).
    let http = reqwest::Client::new();
    let mut refused = None;
    for _ in 0..3 {
        let mut held = Vec::new();
        for _ in 0..64 {
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            s.write_all(head.as_bytes()).await.expect("write");
            held.push(s);
        }
        let since = std::time::Instant::now();
        while since.elapsed() < std::time::Duration::from_secs(8) {
            let resp = http
                .get(broker.url("/healthz"))
                .send()
                .await
                .expect("healthz");
            if resp.status().as_u16() == 429 {
                refused = Some(resp);
                break;
            }
        }
        drop(held);
        if refused.is_some() {
            break;
        }
    }
    let refused = refused.expect("a request beyond 64 unfinished ones is refused");
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
}
