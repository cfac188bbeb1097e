//! Logout (RP-initiated, back-channel, front-channel) and several broker instances that
//! behave as one.

use std::sync::mpsc;

use crate::harness::*;

/// A platform's back-channel logout endpoint: records each POSTed logout token.
fn backchannel_receiver() -> (u16, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let port = http_stub(move |_, _, body| {
        let token = url::form_urlencoded::parse(body)
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(token);
        }
        ("200 OK", String::new())
    });
    (port, rx)
}

fn bc_client(port: u16) -> String {
    format!(
        "\n[[clients]]\nid = \"rp-bc\"\nname = \"Back-channel platform\"\nredirect_uris = [\"http://localhost:9/bc-cb\"]\npost_logout_redirect_uris = [\"http://localhost:9/bye\"]\nsecret = {{ env = \"TEST_RP_SECRET\" }}\nbackchannel_logout_uri = \"http://127.0.0.1:{port}/logout\"\nfrontchannel_logout_uri = \"http://127.0.0.1:{port}/front\"\nscopes = [\"openid\", \"profile\"]\n"
    )
}

async fn refresh(broker: &Broker, client: &str, rt: &str) -> u16 {
    token_basic(
        broker,
        client,
        RP_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await
    .0
}

async fn silent(browser: &Browser, broker: &Broker) -> Callback {
    let (_, challenge) = pkce();
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("prompt", "none"));
    let (_, location, _) = browser.follow(browser.authorize(&params).await).await;
    let _ = broker;
    Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    }
}

#[tokio::test]
async fn rp_initiated_logout_ends_the_session_everywhere_and_tells_the_platforms() {
    let (port, tokens_rx) = backchannel_receiver();
    let broker = Broker::start(Options {
        extra: bc_client(port),
        ..Options::default()
    });
    let browser = Browser::new(&broker);
    let bc = tokens_for(
        &broker,
        &browser,
        "rp-bc",
        "http://localhost:9/bc-cb",
        "openid",
    )
    .await;
    // Same browser, second platform with offline_access, silently through SSO.
    let (verifier, challenge) = pkce();
    let (_, location, _) = browser
        .follow(
            browser
                .authorize(&auth_params(
                    "rp-basic",
                    "http://localhost:9/cb",
                    "openid offline_access",
                    &challenge,
                ))
                .await,
        )
        .await;
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    let (status, offline, _) = token_basic(
        &broker,
        "rp-basic",
        RP_SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", &cb.param("code").expect("silent code")),
            ("redirect_uri", "http://localhost:9/cb"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{offline}");

    let id_token = bc["id_token"].as_str().expect("id_token");
    let id_claims = payload(id_token);
    let mut url = url::Url::parse(&broker.url("/logout")).expect("url");
    url.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", "http://localhost:9/bye")
        .append_pair("state", "bye-1");
    let resp = browser.get(url.as_str()).await;
    let (status, location, body) = browser.follow(resp).await;
    assert_eq!(status, 200, "front-channel page first: {body}");
    assert!(
        body.contains(&format!("http://127.0.0.1:{port}/front?iss=")),
        "front-channel iframe: {body}"
    );
    assert!(
        body.contains("http://localhost:9/bye?state=bye-1"),
        "then back to the platform"
    );
    assert!(location.is_none());

    // The back channel got a signed logout token for this session.
    let token = tokens_rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a logout token was delivered");
    assert_eq!(jwt_header(&token)["typ"], "logout+jwt");
    let claims = verify_with_jwks(&broker, &token, "rp-bc").await;
    assert_eq!(claims["sid"], id_claims["sid"]);
    assert_eq!(claims["sub"], id_claims["sub"]);
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());

    // The session is gone; its refresh tokens too, except offline_access ones.
    assert_eq!(
        silent(&browser, &broker).await.param("error").as_deref(),
        Some("login_required")
    );
    assert_eq!(
        refresh(&broker, "rp-bc", bc["refresh_token"].as_str().expect("rt")).await,
        400
    );
    assert_eq!(
        refresh(
            &broker,
            "rp-basic",
            offline["refresh_token"].as_str().expect("rt")
        )
        .await,
        200
    );
}

#[tokio::test]
async fn a_back_channel_logout_survives_a_broker_crash() {
    // The platform takes the first delivery and does not answer it; it answers the next.
    let (arrived_tx, arrived_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (tokens_tx, tokens_rx) = mpsc::channel::<String>();
    let state = std::sync::Mutex::new((0u32, arrived_tx, release_rx, tokens_tx));
    let port = http_stub(move |_, path, body| {
        let Ok(mut guard) = state.lock() else {
            return ("500 Internal Server Error", String::new());
        };
        let (calls, arrived, release, tokens) = &mut *guard;
        if path != "/logout" {
            return ("404 Not Found", String::new());
        }
        *calls += 1;
        if *calls == 1 {
            let _ = arrived.send(());
            // Held until the broker that sent it is dead.
            let _ = release.recv();
            return ("200 OK", String::new());
        }
        let token = url::form_urlencoded::parse(body)
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let _ = tokens.send(token);
        ("200 OK", String::new())
    });
    let mut broker = Broker::start(Options {
        extra: bc_client(port),
        ..Options::default()
    });
    let browser = Browser::new(&broker);
    let bc = tokens_for(
        &broker,
        &browser,
        "rp-bc",
        "http://localhost:9/bc-cb",
        "openid",
    )
    .await;
    let id_token = bc["id_token"].as_str().expect("id_token");
    let mut url = url::Url::parse(&broker.url("/logout")).expect("url");
    url.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", "http://localhost:9/bye");
    let (status, _, body) = browser.follow(browser.get(url.as_str()).await).await;
    assert_eq!(status, 200, "{body}");

    // The broker is posting the logout token: it dies before the platform answers.
    arrived_rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the first delivery reached the platform");
    broker.kill();
    let _ = release_tx.send(());

    // Another process on the same store takes the delivery over once its lease ends.
    let restarted = broker.twin();
    let token = tokens_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "no logout token after the restart:\n{}",
                restarted.log_text()
            )
        });
    assert_eq!(jwt_header(&token)["typ"], "logout+jwt");
    let claims = verify_with_jwks(&restarted, &token, "rp-bc").await;
    let id_claims = payload(id_token);
    assert_eq!(claims["sid"], id_claims["sid"]);
    assert_eq!(claims["sub"], id_claims["sub"]);
    assert!(
        restarted.wait_for_log("back-channel logout delivered", 1),
        "{}",
        restarted.log_text()
    );
}

#[tokio::test]
async fn a_platform_that_keeps_failing_gets_five_attempts_then_none() {
    let (tx, attempts) = mpsc::channel::<()>();
    let tx = std::sync::Mutex::new(tx);
    let port = http_stub(move |_, _, _| {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(());
        }
        ("503 Service Unavailable", String::new())
    });
    let broker = Broker::start(Options {
        extra: bc_client(port),
        ..Options::default()
    });
    let browser = Browser::new(&broker);
    let bc = tokens_for(
        &broker,
        &browser,
        "rp-bc",
        "http://localhost:9/bc-cb",
        "openid",
    )
    .await;
    let mut url = url::Url::parse(&broker.url("/logout")).expect("url");
    url.query_pairs_mut()
        .append_pair("id_token_hint", bc["id_token"].as_str().expect("id_token"));
    let (status, _, body) = browser.follow(browser.get(url.as_str()).await).await;
    assert_eq!(status, 200, "{body}");
    // Retried with doubling delays (1, 2, 4, 8 s).
    for n in 1..=5 {
        attempts
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("attempt {n} did not come:\n{}", broker.log_text()));
    }
    let given_up = (0..4).any(|_| broker.wait_for_log("given up", 1));
    assert!(given_up, "{}", broker.log_text());
    assert!(
        broker.log_text().contains("attempts=5"),
        "{}",
        broker.log_text()
    );
    assert_eq!(
        broker
            .log_text()
            .matches("back-channel logout refused")
            .count(),
        5
    );
}

#[tokio::test]
async fn logout_without_a_hint_asks_the_citizen() {
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

    // An unregistered post-logout URI is never redirected to.
    let resp = browser
        .get(
            &broker.url("/logout?client_id=rp-basic&post_logout_redirect_uri=http://evil.example/"),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.headers().get("location").is_none());

    let page = browser
        .get(&broker.url("/logout?ui_locales=es"))
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("¿Cerrar la sesión?"), "{page}");
    let csrf = hidden(&page, "csrf").expect("csrf");
    let start = page.find("action=\"/logout/").expect("form") + "action=\"".len();
    let action = &page[start..start + page[start..].find('"').expect("end")];

    // A forged confirmation (wrong token) does nothing.
    let resp = browser
        .post(
            &broker.url(action),
            &[("csrf", "forged"), ("decision", "logout")],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    assert!(
        silent(&browser, &broker).await.param("code").is_some(),
        "still signed in"
    );

    // The form was single-use; ask again and confirm.
    let page = browser
        .get(&broker.url("/logout"))
        .await
        .text()
        .await
        .expect("page");
    let csrf2 = hidden(&page, "csrf").expect("csrf");
    assert_ne!(csrf, csrf2);
    let start = page.find("action=\"/logout/").expect("form") + "action=\"".len();
    let action = page[start..start + page[start..].find('"').expect("end")].to_string();
    let resp = browser
        .post(
            &broker.url(&action),
            &[("csrf", &csrf2), ("decision", "logout")],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp
        .text()
        .await
        .expect("page")
        .contains("id=\"logged-out\""));
    assert_eq!(
        silent(&browser, &broker).await.param("error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn two_instances_on_one_redis_behave_as_one_broker() {
    let prefix = format!("twins-{}:", rand::random::<u64>());
    let mut a = Broker::start(Options {
        redis_prefix: Some(prefix),
        ..Options::default()
    });
    let b = a.twin();
    let on = |broker: &Broker, url: &str| url.replace(&a.issuer, &broker.base);

    // One login, its requests alternating between the two processes.
    let browser = Browser::new(&a);
    let (verifier, challenge) = pkce();
    let resp = browser
        .authorize(&auth_params(
            "rp-basic",
            "http://localhost:9/cb",
            "openid",
            &challenge,
        ))
        .await;
    let (_, location, _) = browser.follow(resp).await;
    let login_page = on(&b, &location.expect("login page"));
    let choice = browser
        .get(&login_page)
        .await
        .text()
        .await
        .expect("choice page from B");
    let tx = tx_path(&choice).expect("tx");
    let csrf = hidden(&choice, "csrf").expect("csrf");
    let resp = browser
        .post(
            &a.url(&format!("{tx}/start")),
            &[("csrf", &csrf), ("connector", "test-citizens")],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 303, "start on A");
    let form = browser
        .get(&b.url(&tx))
        .await
        .text()
        .await
        .expect("form from B");
    let resp = browser
        .post(
            &a.url(&format!("{tx}/step")),
            &[("csrf", &csrf), ("username", "an"), ("password", "demo")],
        )
        .await;
    let (_, location, _) = browser.follow(resp).await;
    let cb = Callback {
        url: url::Url::parse(&location.expect("callback")).expect("url"),
    };
    let (status, tokens, _) = token_basic(
        &b,
        "rp-basic",
        RP_SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", &cb.param("code").expect("code")),
            ("redirect_uri", "http://localhost:9/cb"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "code from A redeemed at B: {tokens}");
    assert!(form.contains("f-password"));
    // Same keys everywhere: B's JWKS verifies A's tokens.
    verify_with_jwks(&b, tokens["id_token"].as_str().expect("id"), "rp-basic").await;

    // SSO seen by B, logout at B ends it at A.
    let browser_b = Browser {
        http: browser.http.clone(),
        issuer: b.base.clone(),
    };
    assert!(
        silent(&browser_b, &b).await.param("code").is_some(),
        "session visible on B"
    );
    let id_token = tokens["id_token"].as_str().expect("id");
    let resp = browser
        .get(&b.url(&format!("/logout?id_token_hint={id_token}")))
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        silent(&browser, &a).await.param("error").as_deref(),
        Some("login_required"),
        "logged out on A too"
    );

    // A dies in the middle of a login; B completes it.
    let resp = browser
        .authorize(&auth_params(
            "rp-basic",
            "http://localhost:9/cb",
            "openid",
            &challenge,
        ))
        .await;
    let (_, location, _) = browser.follow(resp).await;
    let choice = browser
        .get(&location.expect("login page"))
        .await
        .text()
        .await
        .expect("choice from A");
    a.kill();
    let form = browser_b.choose(&choice, "test-citizens").await;
    let resp = browser_b.submit_password(&form, "an", "demo").await;
    let (status, location, _) = browser_b.follow(resp).await;
    assert_eq!(status, 303);
    assert!(location
        .expect("callback")
        .starts_with("http://localhost:9/cb?code="));
}
