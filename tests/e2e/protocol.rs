//! The OpenID Provider's protocol surface: discovery, JWKS, the code flow with a real
//! relying-party library, authorization errors, subjects, claims and algorithms.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};

use crate::harness::*;

#[tokio::test]
async fn discovery_and_jwks_describe_the_provider() {
    let broker = Broker::start(Options::default());
    let meta: serde_json::Value = reqwest::get(broker.url("/.well-known/openid-configuration"))
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["issuer"], broker.issuer);
    assert_eq!(meta["token_endpoint"], broker.url("/token"));
    assert_eq!(
        meta["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        meta["pushed_authorization_request_endpoint"],
        broker.url("/par")
    );
    let algs = meta["id_token_signing_alg_values_supported"]
        .as_array()
        .expect("algs");
    for alg in ["RS256", "ES256", "EdDSA"] {
        assert!(algs.iter().any(|a| a == alg), "{alg} missing from {algs:?}");
    }
    let jwks: serde_json::Value = reqwest::get(broker.url("/jwks"))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, vec!["rs-1", "es-1", "ed-1"]);
    // Public keys only.
    assert!(jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .all(|k| k.get("d").is_none()));

    // HEAD answers like GET, without the body (RFC 9110 9.3.2).
    let http = reqwest::Client::new();
    for (path, content_type) in [
        ("/.well-known/openid-configuration", "application/json"),
        ("/jwks", "application/jwk-set+json"),
        ("/healthz", "application/json"),
    ] {
        let full = http.get(broker.url(path)).send().await.expect("get");
        let full_len = full.bytes().await.expect("body").len();
        let head = http.head(broker.url(path)).send().await.expect("head");
        assert_eq!(head.status().as_u16(), 200, "HEAD {path}");
        assert_eq!(
            head.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some(content_type),
            "HEAD {path}"
        );
        assert_eq!(
            head.headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok()),
            Some(full_len),
            "HEAD {path} announces the GET body's length"
        );
        assert!(head.bytes().await.expect("body").is_empty(), "HEAD {path}");
    }
}

#[tokio::test]
async fn code_flow_with_the_openidconnect_crate() {
    let broker = Broker::start(Options::default());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(broker.issuer.clone()).expect("issuer"),
        &http,
    )
    .await
    .expect("the openidconnect crate accepts our discovery document");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("rp-basic".into()),
        Some(ClientSecret::new(RP_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new("http://localhost:9/cb".into()).expect("redirect"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("citizen_id".into()))
        .set_pkce_challenge(challenge)
        .url();

    let browser = Browser::new(&broker);
    let choice = browser
        .login_page(browser.get(auth_url.as_str()).await)
        .await;
    assert!(
        choice.contains("Basic platform"),
        "choice page names the platform"
    );
    let form = browser.choose(&choice, "test-citizens").await;
    let (status, location, _) = browser
        .follow(browser.submit_password(&form, "an", "demo").await)
        .await;
    assert_eq!(status, 303);
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    assert_eq!(cb.param("state").as_deref(), Some(state.secret().as_str()));
    assert_eq!(
        cb.param("iss").as_deref(),
        Some(broker.issuer.as_str()),
        "RFC 9207 iss"
    );

    let tokens = client
        .exchange_code(AuthorizationCode::new(cb.param("code").expect("code")))
        .expect("token endpoint known")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("id token");
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("ID token verifies (signature, iss, aud, nonce, exp)");
    assert!(claims.auth_time().is_some());
    let raw = payload(&id_token.to_string());
    assert_eq!(raw["acr"], "http://eidas.europa.eu/LoA/substantial");
    assert_eq!(raw["amr"], serde_json::json!(["pwd"]));
    assert!(raw["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(raw["name"], "Nguyễn Văn An");
    assert_eq!(raw["citizen_id"], "079201001234");
    assert!(
        raw.get("phone_number").is_none(),
        "phone scope was not requested"
    );
    assert!(tokens.refresh_token().is_some());

    let userinfo: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .expect("userinfo endpoint known")
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(userinfo.subject(), claims.subject());

    // The access token is an RFC 9068 JWT that an API can verify with the JWKS.
    let at = tokens.access_token().secret();
    assert_eq!(jwt_header(at)["typ"], "at+jwt");
    let at_claims = verify_with_jwks(&broker, at, "rp-basic").await;
    assert_eq!(at_claims["client_id"], "rp-basic");
    assert_eq!(at_claims["sub"].as_str(), Some(claims.subject().as_str()));
}

#[tokio::test]
async fn unknown_client_or_redirect_gets_a_page_never_a_redirect() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let (_, challenge) = pkce();
    for (client, redirect) in [
        ("nobody", "http://localhost:9/cb"),
        ("rp-basic", "http://localhost:9/evil"),
        ("rp-basic", "http://localhost:9/cb/"),
    ] {
        let resp = browser
            .authorize(&auth_params(client, redirect, "openid", &challenge))
            .await;
        assert_eq!(resp.status().as_u16(), 400, "{client} {redirect}");
        assert!(resp.headers().get("location").is_none(), "never redirected");
        let body = resp.text().await.expect("body");
        assert!(body.contains("<html"), "a citizen page");
    }
}

#[tokio::test]
async fn authorization_errors_go_back_with_state_and_iss() {
    let broker = Broker::start(Options::default());
    let browser = Browser::new(&broker);
    let (_, challenge) = pkce();
    let base = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    let with = |k: &'static str, v: &'static str| {
        let mut p: Vec<(&str, &str)> = base.iter().filter(|(n, _)| *n != k).cloned().collect();
        if !v.is_empty() {
            p.push((k, v));
        }
        p
    };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (with("response_type", "token"), "unsupported_response_type"),
        (with("scope", "profile"), "invalid_scope"),
        (with("code_challenge_method", "plain"), "invalid_request"),
        (with("prompt", "none login"), "invalid_request"),
        (with("max_age", "soon"), "invalid_request"),
        (with("request", "eyJ.x.y"), "invalid_request_object"),
        (
            with("acr_values", "http://eidas.europa.eu/LoA/high"),
            "unmet_authentication_requirements",
        ),
        (with("prompt", "none"), "login_required"),
    ];
    for (params, expected) in cases {
        let (status, location, _) = browser.follow(browser.authorize(&params).await).await;
        assert_eq!(status, 303, "{expected}");
        let cb = Callback {
            url: url::Url::parse(&location.expect("location")).expect("url"),
        };
        assert!(cb.url.as_str().starts_with("http://localhost:9/cb?"));
        assert_eq!(cb.param("error").as_deref(), Some(expected));
        assert!(cb.param("error_description").is_some());
        assert_eq!(cb.param("state").as_deref(), Some("st-123"));
        assert_eq!(cb.param("iss").as_deref(), Some(broker.issuer.as_str()));
    }
    // Repeated parameters are refused (RFC 6749 3.1).
    let mut twice = base.clone();
    twice.push(("scope", "openid"));
    let resp = browser.authorize(&twice).await;
    assert_eq!(
        resp.status().as_u16(),
        400,
        "a repeated parameter is refused"
    );
    assert!(
        resp.headers().get("location").is_none(),
        "and never redirected"
    );

    // A public client must use PKCE.
    let no_pkce = [
        ("response_type", "code"),
        ("client_id", "rp-public"),
        ("redirect_uri", "http://localhost:9/public-cb"),
        ("scope", "openid"),
        ("state", "s"),
    ];
    let (_, location, _) = browser.follow(browser.authorize(&no_pkce).await).await;
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    assert_eq!(cb.param("error").as_deref(), Some("invalid_request"));
}

#[tokio::test]
async fn subjects_are_pairwise_per_sector_and_stable() {
    let broker = Broker::start(Options::default());
    let a = tokens_for(
        &broker,
        &Browser::new(&broker),
        "rp-basic",
        "http://localhost:9/cb",
        "openid",
    )
    .await;
    let a2 = tokens_for(
        &broker,
        &Browser::new(&broker),
        "rp-basic",
        "http://localhost:9/cb",
        "openid",
    )
    .await;
    let b = tokens_for(
        &broker,
        &Browser::new(&broker),
        "rp-other",
        "http://127.0.0.1:9/cb",
        "openid",
    )
    .await;
    let sub =
        |t: &serde_json::Value| payload(t["id_token"].as_str().expect("id_token"))["sub"].clone();
    assert_eq!(sub(&a), sub(&a2), "same person, same platform, same sub");
    assert_ne!(sub(&a), sub(&b), "two platforms cannot correlate a citizen");

    // A public-subject client sees the same sub in every session.
    let browser = Browser::new(&broker);
    let (verifier, challenge) = pkce();
    let cb = browser
        .login(
            &auth_params(
                "rp-public",
                "http://localhost:9/public-cb",
                "openid",
                &challenge,
            ),
            "an",
            "demo",
        )
        .await;
    let (status, body) = post_form(
        &broker,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "rp-public"),
            ("code", &cb.param("code").expect("code")),
            ("redirect_uri", "http://localhost:9/public-cb"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "public client with PKCE: {body}");
    let public_sub = sub(&body);
    assert_ne!(public_sub, sub(&a));
    assert_ne!(public_sub, sub(&b));
}

#[tokio::test]
async fn claims_follow_the_clients_scopes() {
    let broker = Broker::start(Options::default());
    // rp-other may only get openid and profile: asking for phone gives nothing more.
    let t = tokens_for(
        &broker,
        &Browser::new(&broker),
        "rp-other",
        "http://127.0.0.1:9/cb",
        "openid profile phone citizen_id",
    )
    .await;
    let claims = payload(t["id_token"].as_str().expect("id_token"));
    assert_eq!(claims["name"], "Nguyễn Văn An");
    assert!(claims.get("phone_number").is_none());
    assert!(claims.get("citizen_id").is_none());
    assert_eq!(t["scope"], "openid profile");
    // rp-basic may.
    let t = tokens_for(
        &broker,
        &Browser::new(&broker),
        "rp-basic",
        "http://localhost:9/cb",
        "openid phone citizen_id",
    )
    .await;
    let claims = payload(t["id_token"].as_str().expect("id_token"));
    assert_eq!(claims["phone_number"], "+84901234567");
    assert_eq!(claims["citizen_id"], "079201001234");
    assert!(claims.get("name").is_none(), "profile not requested");
}

#[tokio::test]
async fn id_token_algorithm_per_client() {
    let broker = Broker::start(Options::default());
    // rp-post: ES256 with client_secret_post.
    let browser = Browser::new(&broker);
    let (verifier, challenge) = pkce();
    let cb = browser
        .login(
            &auth_params(
                "rp-post",
                "http://localhost:9/post-cb",
                "openid",
                &challenge,
            ),
            "an",
            "demo",
        )
        .await;
    let (status, body) = post_form(
        &broker,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "rp-post"),
            ("client_secret", POST_SECRET),
            ("code", &cb.param("code").expect("code")),
            ("redirect_uri", "http://localhost:9/post-cb"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id_token"].as_str().expect("id_token");
    assert_eq!(jwt_header(id)["alg"], "ES256");
    assert_eq!(jwt_header(id)["kid"], "es-1");
    let claims = verify_with_jwks(&broker, id, "rp-post").await;
    assert_eq!(claims["nonce"], "n-456");

    // rp-basic: RS256 by default.
    let t = tokens_for(
        &broker,
        &Browser::new(&broker),
        "rp-basic",
        "http://localhost:9/cb",
        "openid",
    )
    .await;
    let id = t["id_token"].as_str().expect("id_token");
    assert_eq!(jwt_header(id)["alg"], "RS256");
    verify_with_jwks(&broker, id, "rp-basic").await;
}

/// RFC 9126: the request is pushed server to server and the browser carries only
/// `client_id` and `request_uri`, once; a client that must push cannot skip it.
#[tokio::test]
async fn pushed_authorization_requests() {
    let broker = Broker::start(Options {
        extra: "\n[[clients]]\nid = \"rp-par\"\nname = \"PAR platform\"\nredirect_uris = [\"http://localhost:9/par-cb\"]\nsecret = { env = \"TEST_RP_SECRET\" }\nrequire_pushed_authorization_requests = true\n".into(),
        ..Options::default()
    });
    let http = reqwest::Client::new();
    let push = |client: &'static str, form: Vec<(&'static str, String)>| {
        let req = http
            .post(broker.url("/par"))
            .basic_auth(client, Some(RP_SECRET))
            .form(&form);
        async move {
            let resp = req.send().await.expect("PAR");
            let status = resp.status().as_u16();
            let no_store = resp
                .headers()
                .get("cache-control")
                .is_some_and(|v| v == "no-store");
            (
                status,
                no_store,
                resp.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let (verifier, challenge) = pkce();
    let form = |redirect: &str| -> Vec<(&'static str, String)> {
        vec![
            ("response_type", "code".into()),
            ("client_id", "rp-par".into()),
            ("redirect_uri", redirect.into()),
            ("scope", "openid profile".into()),
            ("state", "st-123".into()),
            ("nonce", "n-456".into()),
            ("code_challenge", challenge.clone()),
            ("code_challenge_method", "S256".into()),
            ("ui_locales", "vi".into()),
        ]
    };

    let (status, no_store, body) = push("rp-par", form("http://localhost:9/par-cb")).await;
    assert_eq!(status, 201, "{body}");
    assert!(no_store);
    assert_eq!(body["expires_in"], 60);
    let request_uri = body["request_uri"]
        .as_str()
        .expect("request_uri")
        .to_string();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));

    // The browser carries only client_id and request_uri; the pushed parameters rule
    // (the login page is in the pushed ui_locales, the code goes to the pushed redirect).
    let browser = Browser::new(&broker);
    let by_reference = [
        ("client_id", "rp-par"),
        ("request_uri", request_uri.as_str()),
    ];
    let choice = browser
        .login_page(browser.authorize(&by_reference).await)
        .await;
    assert!(choice.contains("lang=\"vi\""), "{choice}");
    let form_page = browser.choose(&choice, "test-citizens").await;
    let (status, location, body) = browser
        .follow(browser.submit_password(&form_page, "an", "demo").await)
        .await;
    assert_eq!(status, 303, "{body}");
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    assert!(cb.url.as_str().starts_with("http://localhost:9/par-cb?"));
    assert_eq!(cb.param("state").as_deref(), Some("st-123"));
    let code = cb.param("code").expect("code");
    let (status, tokens, _) = token_basic(
        &broker,
        "rp-par",
        RP_SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:9/par-cb"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        payload(tokens["id_token"].as_str().expect("id_token"))["nonce"],
        "n-456"
    );

    // Used once: the same request_uri again is refused, on the broker's own page.
    let (status, location, body) = browser.follow(browser.authorize(&by_reference).await).await;
    assert_eq!((status, location), (400, None), "{body}");
    // Another client's request_uri is refused, without burning it for its own client.
    let (_, _, pushed) = push("rp-par", form("http://localhost:9/par-cb")).await;
    let stolen = pushed["request_uri"].as_str().expect("request_uri");
    let (status, location, _) = browser
        .follow(
            browser
                .authorize(&[("client_id", "rp-basic"), ("request_uri", stolen)])
                .await,
        )
        .await;
    assert_eq!((status, location), (400, None));
    let own = Browser::new(&broker);
    own.login_page(
        own.authorize(&[("client_id", "rp-par"), ("request_uri", stolen)])
            .await,
    )
    .await;

    // private_key_jwt at /par, with the PAR endpoint as the assertion's audience (RFC 9126 2).
    let assertion = rp_jwt_assertion(&broker, &broker.url("/par"), "par-jti-1");
    let mut jwt_form: Vec<(&str, String)> = form("http://localhost:9/jwt-cb")
        .into_iter()
        .filter(|(k, _)| *k != "client_id")
        .collect();
    jwt_form.extend([
        ("client_id", "rp-jwt".to_string()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
        ),
        ("client_assertion", assertion),
    ]);
    let resp = http
        .post(broker.url("/par"))
        .form(&jwt_form)
        .send()
        .await
        .expect("PAR");
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);

    // Bad pushes get a JSON error at once, never a redirect.
    let (status, _, body) = push("rp-par", form("http://evil.example/cb")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let mut with_uri = form("http://localhost:9/par-cb");
    with_uri.push(("request_uri", request_uri.clone()));
    let (status, _, body) = push("rp-par", with_uri).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let mut token_flow = form("http://localhost:9/par-cb");
    token_flow.retain(|(k, _)| *k != "response_type");
    token_flow.push(("response_type", "token".into()));
    let (status, _, body) = push("rp-par", token_flow).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_response_type")),
        "{body}"
    );
    let unauthenticated = http
        .post(broker.url("/par"))
        .form(&form("http://localhost:9/par-cb"))
        .send()
        .await
        .expect("PAR");
    assert_eq!(unauthenticated.status().as_u16(), 401);

    // A public client needs no credentials to push, so each address has a budget (30 a
    // minute); beyond it, 429 with Retry-After.
    let public_push = || {
        http.post(broker.url("/par"))
            .form(&[
                ("client_id", "rp-public"),
                ("response_type", "code"),
                ("redirect_uri", "http://localhost:9/public-cb"),
                ("scope", "openid"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ])
            .send()
    };
    for n in 1..=30 {
        let status = public_push().await.expect("PAR").status().as_u16();
        assert_eq!(status, 201, "push {n} of a public client");
    }
    let over = public_push().await.expect("PAR");
    assert_eq!(over.status().as_u16(), 429);
    assert!(over.headers().contains_key("retry-after"));

    // A client that must push cannot send its request through the browser.
    let (status, location, _) = browser
        .follow(
            browser
                .authorize(&auth_params(
                    "rp-par",
                    "http://localhost:9/par-cb",
                    "openid",
                    &challenge,
                ))
                .await,
        )
        .await;
    assert_eq!(status, 303);
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    assert_eq!(cb.param("error").as_deref(), Some("invalid_request"));
    assert!(cb
        .param("error_description")
        .is_some_and(|d| d.contains("RFC 9126")));
}
