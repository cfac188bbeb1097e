//! Token endpoint security: single-use codes, PKCE, refresh rotation and reuse detection,
//! client authentication, UserInfo errors, revocation and introspection.

use crate::harness::*;

async fn code_for(broker: &Broker, client: &str, redirect: &str) -> (String, String) {
    let browser = Browser::new(broker);
    let (verifier, challenge) = pkce();
    let cb = browser
        .login(
            &auth_params(
                client,
                redirect,
                "openid profile offline_access",
                &challenge,
            ),
            "an",
            "demo",
        )
        .await;
    (cb.param("code").expect("code"), verifier)
}

fn redeem<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", "http://localhost:9/cb"),
        ("code_verifier", verifier),
    ]
}

async fn introspect(broker: &Broker, token: &str) -> serde_json::Value {
    let (status, body, _) = token_basic_path(broker, "/introspect", &[("token", token)]).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn token_basic_path(
    broker: &Broker,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value, Option<String>) {
    let resp = reqwest::Client::new()
        .post(broker.url(path))
        .basic_auth("rp-basic", Some(RP_SECRET))
        .form(form)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get("www-authenticate")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        www,
    )
}

#[tokio::test]
async fn a_code_works_once_and_its_replay_revokes_what_it_issued() {
    let broker = Broker::start(Options::default());
    let (code, verifier) = code_for(&broker, "rp-basic", "http://localhost:9/cb").await;
    let (status, first, _) =
        token_basic(&broker, "rp-basic", RP_SECRET, &redeem(&code, &verifier)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["token_type"], "Bearer");
    let access = first["access_token"].as_str().expect("access token");
    let refresh = first["refresh_token"].as_str().expect("refresh token");
    assert_eq!(introspect(&broker, access).await["active"], true);
    assert_eq!(introspect(&broker, refresh).await["active"], true);
    // Another platform learns nothing of them: not active, no pairwise `sub`, no `sid`.
    for token in [access, refresh] {
        let (status, body) = post_form(
            &broker,
            "/introspect",
            &[
                ("token", token),
                ("client_id", "rp-post"),
                ("client_secret", POST_SECRET),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, serde_json::json!({"active": false}), "{body}");
    }

    let (status, second, _) =
        token_basic(&broker, "rp-basic", RP_SECRET, &redeem(&code, &verifier)).await;
    assert_eq!(status, 400);
    assert_eq!(second["error"], "invalid_grant");
    assert_eq!(
        introspect(&broker, access).await["active"],
        false,
        "replay revokes the access token"
    );
    assert_eq!(
        introspect(&broker, refresh).await["active"],
        false,
        "and the refresh token"
    );
    let (status, body, _) = token_basic(
        &broker,
        "rp-basic",
        RP_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn code_checks_pkce_redirect_uri_and_client() {
    let broker = Broker::start(Options::default());
    let (code, _) = code_for(&broker, "rp-basic", "http://localhost:9/cb").await;
    let wrong_verifier = pkce().0;
    let (status, body, _) = token_basic(
        &broker,
        "rp-basic",
        RP_SECRET,
        &redeem(&code, &wrong_verifier),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "wrong verifier"
    );

    let (code, verifier2) = code_for(&broker, "rp-basic", "http://localhost:9/cb").await;
    let mut form = redeem(&code, &verifier2);
    form[2] = ("redirect_uri", "http://localhost:9/other");
    let (status, body, _) = token_basic(&broker, "rp-basic", RP_SECRET, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "redirect mismatch"
    );

    let (code, verifier3) = code_for(&broker, "rp-basic", "http://localhost:9/cb").await;
    let mut form = redeem(&code, &verifier3);
    form.retain(|(k, _)| *k != "code_verifier");
    let (status, body, _) = token_basic(&broker, "rp-basic", RP_SECRET, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "missing verifier"
    );

    // Another client cannot redeem the code.
    let (code, verifier4) = code_for(&broker, "rp-basic", "http://localhost:9/cb").await;
    let (status, body, _) =
        token_basic(&broker, "rp-other", RP_SECRET, &redeem(&code, &verifier4)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "other client"
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let broker = Broker::start(Options::default());
    let (code, verifier) = code_for(&broker, "rp-basic", "http://localhost:9/cb").await;
    let (_, first, _) =
        token_basic(&broker, "rp-basic", RP_SECRET, &redeem(&code, &verifier)).await;
    let r1 = first["refresh_token"].as_str().expect("r1").to_string();
    let id1 = payload(first["id_token"].as_str().expect("id"));

    let (status, second, _) = token_basic(
        &broker,
        "rp-basic",
        RP_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().expect("r2").to_string();
    assert_ne!(r1, r2, "rotated");
    let id2 = payload(second["id_token"].as_str().expect("id"));
    assert_eq!(id1["sub"], id2["sub"]);
    assert_eq!(
        id1["auth_time"], id2["auth_time"],
        "auth_time is the original authentication"
    );
    assert!(id2.get("nonce").is_none());

    // Narrowing the scope on refresh is allowed, widening is not.
    let (status, narrowed, _) = token_basic(
        &broker,
        "rp-basic",
        RP_SECRET,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r2),
            ("scope", "openid"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{narrowed}");
    assert_eq!(narrowed["scope"], "openid");
    let r3 = narrowed["refresh_token"].as_str().expect("r3").to_string();

    // Reusing r1 (already rotated) revokes the whole family, r3 included.
    let (status, body, _) = token_basic(
        &broker,
        "rp-basic",
        RP_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body, _) = token_basic(
        &broker,
        "rp-basic",
        RP_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", &r3)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "family revoked"
    );
    assert_eq!(
        introspect(&broker, narrowed["access_token"].as_str().expect("at")).await["active"],
        false
    );
}

#[tokio::test]
async fn client_authentication_failures_are_invalid_client() {
    let broker = Broker::start(Options::default());
    let (code, verifier) = code_for(&broker, "rp-basic", "http://localhost:9/cb").await;
    let (status, body, www) = token_basic(
        &broker,
        "rp-basic",
        "wrong-secret-0123456789",
        &redeem(&code, &verifier),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(
        www.is_some_and(|w| w.starts_with("Basic")),
        "challenge for Basic"
    );
    // The failed attempt did not consume the code.
    let (status, _, _) =
        token_basic(&broker, "rp-basic", RP_SECRET, &redeem(&code, &verifier)).await;
    assert_eq!(status, 200);

    // A confidential client may not skip authentication.
    let (status, body) = post_form(
        &broker,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "rp-basic"),
            ("code", "x"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Unknown grant type.
    let (status, body, _) = token_basic(
        &broker,
        "rp-basic",
        RP_SECRET,
        &[("grant_type", "password")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
}

fn client_assertion(broker: &Broker, jti: &str) -> String {
    rp_jwt_assertion(broker, &broker.url("/token"), jti)
}

#[tokio::test]
async fn private_key_jwt_authenticates_once_per_jti() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let (verifier, challenge) = pkce();
    let cb = browser
        .login(
            &auth_params("rp-jwt", "http://localhost:9/jwt-cb", "openid", &challenge),
            "an",
            "demo",
        )
        .await;
    let assertion = client_assertion(&broker, "jti-1");
    let code = cb.param("code").expect("code");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://localhost:9/jwt-cb"),
        ("code_verifier", verifier.as_str()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion.as_str()),
    ];
    let (status, body) = post_form(&broker, "/token", &form).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id_token"].as_str().expect("id_token");
    assert_eq!(
        jwt_header(id)["alg"],
        "EdDSA",
        "per-client ID token algorithm"
    );
    verify_with_jwks(&broker, id, "rp-jwt").await;

    // The same assertion again is a replay.
    let (status, body) = post_form(
        &broker,
        "/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().expect("rt")),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "jti replay"
    );

    // An assertion signed by another key is refused.
    let (other, _) =
        broker::keys::SigningKey::generate("client-key-1", broker::keys::SigningAlg::ES256)
            .expect("key");
    let forged = other
        .sign("JWT", &payload(&client_assertion(&broker, "jti-2")))
        .expect("sign");
    let (status, _) = post_form(
        &broker,
        "/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", forged.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn userinfo_bearer_errors_and_revocation() {
    let broker = Broker::start(Options::default());
    let http = reqwest::Client::new();
    let resp = http
        .get(broker.url("/userinfo"))
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp
        .headers()
        .get("www-authenticate")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|w| w.starts_with("Bearer")));

    let resp = http
        .get(broker.url("/userinfo"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status().as_u16(), 401);
    let www = resp
        .headers()
        .get("www-authenticate")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(www.contains("error=\"invalid_token\""), "{www}");

    let (code, verifier) = code_for(&broker, "rp-basic", "http://localhost:9/cb").await;
    let (_, tokens, _) =
        token_basic(&broker, "rp-basic", RP_SECRET, &redeem(&code, &verifier)).await;
    let at = tokens["access_token"].as_str().expect("at");
    let info: serde_json::Value = http
        .get(broker.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .expect("ui")
        .json()
        .await
        .expect("json");
    assert_eq!(info["name"], "Nguyễn Văn An");
    let via_post = http
        .post(broker.url("/userinfo"))
        .form(&[("access_token", at)])
        .send()
        .await
        .expect("ui post");
    assert_eq!(
        via_post.status().as_u16(),
        200,
        "POST with the token in the body"
    );

    let (status, _, _) = token_basic_path(&broker, "/revoke", &[("token", at)]).await;
    assert_eq!(status, 200);
    let resp = http
        .get(broker.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .expect("ui");
    assert_eq!(resp.status().as_u16(), 401, "revoked access token");

    // Revoking the refresh token ends the family.
    let rt = tokens["refresh_token"].as_str().expect("rt");
    let (status, _, _) = token_basic_path(&broker, "/revoke", &[("token", rt)]).await;
    assert_eq!(status, 200);
    assert_eq!(introspect(&broker, rt).await["active"], false);
    // Unknown tokens are fine to revoke (RFC 7009 2.2).
    let (status, _, _) = token_basic_path(&broker, "/revoke", &[("token", "unknown")]).await;
    assert_eq!(status, 200);
    // Introspection needs client authentication.
    let (status, body) = post_form(&broker, "/introspect", &[("token", rt)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

/// Malformed input gets a 400 with the spec's error, never a 500: a control character in a
/// repeated parameter's name is echoed in the description, never into the header.
#[tokio::test]
async fn a_control_character_in_a_repeated_parameter_is_a_400() {
    let broker = Broker::start(Options::default());
    let resp = reqwest::Client::new()
        .post(broker.url("/userinfo"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a%01b=1&a%01b=2")
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status().as_u16(), 400);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        challenge.contains("error=\"invalid_request\""),
        "{challenge}"
    );
}
