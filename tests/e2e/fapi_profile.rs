//! The per-client FAPI 2.0 profile through the real binary: `check-config` refuses a
//! registration that contradicts it, and a running broker holds a FAPI client to
//! `private_key_jwt` (the `Ed25519` label too), PAR, PKCE S256, DPoP with server nonces,
//! short nonces, the clock-skew rule, and refresh tokens that are not rotated but still
//! die on revocation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use broker::keys::{SigningAlg, SigningKey};
use serde_json::json;

use crate::dpop::{answer, Answer, DpopKey};
use crate::harness::*;

const CB: &str = "http://localhost:9/fapi-cb";

/// The FAPI client's signing keys: ES256 and Ed25519.
struct ClientKeys {
    es: jsonwebtoken::EncodingKey,
    ed: jsonwebtoken::EncodingKey,
    jwks: String,
}

impl ClientKeys {
    fn new() -> ClientKeys {
        let (es_key, es_pem) = SigningKey::generate("fapi-es", SigningAlg::ES256).expect("key");
        let (ed_key, ed_pem) = SigningKey::generate("fapi-ed", SigningAlg::EdDSA).expect("key");
        ClientKeys {
            es: jsonwebtoken::EncodingKey::from_ec_pem(es_pem.as_bytes()).expect("pem"),
            ed: jsonwebtoken::EncodingKey::from_ed_pem(ed_pem.as_bytes()).expect("pem"),
            jwks: json!({"keys": [es_key.jwk(), ed_key.jwk()]}).to_string(),
        }
    }

    /// A client assertion with header `alg` (`ES256`, or `Ed25519` as openid-client writes
    /// EdDSA) and `iat` shifted by `skew` seconds.
    fn assertion(&self, broker: &Broker, alg: &str, skew: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let (kid, key, jose) = match alg {
            "ES256" => ("fapi-es", &self.es, jsonwebtoken::Algorithm::ES256),
            _ => ("fapi-ed", &self.ed, jsonwebtoken::Algorithm::EdDSA),
        };
        let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
        let claims = json!({
            "iss": "rp-fapi", "sub": "rp-fapi", "aud": broker.issuer,
            "jti": format!("{:x}", rand::random::<u128>()),
            "iat": now + skew, "exp": now + skew + 60,
        });
        let mut input = URL_SAFE_NO_PAD.encode(header.to_string());
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, jose).expect("sign");
        format!("{input}.{sig}")
    }
}

fn fapi_client(jwks: &str) -> String {
    fapi_client_with(jwks, "")
}

fn fapi_client_with(jwks: &str, more: &str) -> String {
    format!(
        r#"
[[clients]]
id = "rp-fapi"
name = "Signature platform"
redirect_uris = ["{CB}"]
auth_method = "private_key_jwt"
jwks = '{jwks}'
profile = "fapi2-security"
id_token_signed_response_alg = "ES256"
{more}
"#
    )
}

/// Signs `claims` as a compact JWS with `header`, with the ES256 key of `keys`.
fn sign_es(keys: &ClientKeys, header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let mut input = URL_SAFE_NO_PAD.encode(header.to_string());
    input.push('.');
    input.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &keys.es, jsonwebtoken::Algorithm::ES256)
            .expect("sign");
    format!("{input}.{sig}")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// POSTs a form to `path` as the FAPI client, with a DPoP proof that carries the server
/// nonce (asked for first, as a client does).
async fn post_with_dpop(
    broker: &Broker,
    keys: &ClientKeys,
    key: &DpopKey,
    path: &str,
    form: &[(&str, &str)],
) -> Answer {
    let url = format!("{}{path}", broker.issuer);
    let send = |proof: String| {
        let assertion = keys.assertion(broker, "ES256", 0);
        let mut form: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        form.push((
            "client_assertion_type".into(),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
        ));
        form.push(("client_assertion".into(), assertion));
        let req = reqwest::Client::new()
            .post(broker.url(path))
            .header("DPoP", proof)
            .form(&form);
        async move { answer(req.send().await.expect("request")).await }
    };
    let first = send(key.proof("POST", &url)).await;
    assert_eq!(
        first.body["error"], "use_dpop_nonce",
        "{path}: {}",
        first.body
    );
    let nonce = first.nonce.expect("DPoP-Nonce");
    send(key.proof_at("POST", &url, None, Some(&nonce), 0)).await
}

#[tokio::test]
async fn a_fapi_client_is_held_to_its_profile() {
    let keys = ClientKeys::new();
    let broker = Broker::start(Options {
        redis_prefix: Some(format!("fapi-{}:", rand::random::<u64>())),
        extra: fapi_client(&keys.jwks),
        ..Options::default()
    });
    let key = DpopKey::new();
    let (verifier, challenge) = pkce();
    let form = [
        ("response_type", "code"),
        ("redirect_uri", CB),
        ("scope", "openid profile"),
        ("state", "st"),
        ("nonce", "n-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];

    // client_secret_basic is refused, whatever the secret.
    let basic = answer(
        reqwest::Client::new()
            .post(broker.url("/par"))
            .basic_auth("rp-fapi", Some(RP_SECRET))
            .form(&form)
            .send()
            .await
            .expect("par"),
    )
    .await;
    assert_eq!(basic.status, 401);
    assert_eq!(basic.body["error"], "invalid_client");

    // Without PAR: refused, back to the client.
    let mut direct = form.to_vec();
    direct.push(("client_id", "rp-fapi"));
    let resp = Browser::new(&broker).authorize(&direct).await;
    let location = resp
        .headers()
        .get("location")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        location.starts_with(CB) && location.contains("error=invalid_request"),
        "{location}"
    );

    // PKCE is required; a nonce longer than 64 characters is refused.
    let no_pkce: Vec<(&str, &str)> = form
        .iter()
        .copied()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .collect();
    let r = post_with_dpop(&broker, &keys, &key, "/par", &no_pkce).await;
    assert_eq!(r.body["error"], "invalid_request", "{}", r.body);
    let long = "n".repeat(65);
    let mut long_nonce = form.to_vec();
    long_nonce.retain(|(k, _)| *k != "nonce");
    long_nonce.push(("nonce", &long));
    let r = post_with_dpop(&broker, &keys, &key, "/par", &long_nonce).await;
    assert_eq!(r.body["error"], "invalid_request", "{}", r.body);

    // An assertion from 30 s in the future is refused (FAPI: at most 10 s ahead).
    let future = answer(
        reqwest::Client::new()
            .post(broker.url("/par"))
            .form(&[
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                (
                    "client_assertion",
                    keys.assertion(&broker, "ES256", 30).as_str(),
                ),
                ("redirect_uri", CB),
            ])
            .send()
            .await
            .expect("par"),
    )
    .await;
    assert_eq!(future.body["error"], "invalid_client", "{}", future.body);

    // The full flow; the assertion at /par is signed with Ed25519, labelled as
    // openid-client labels it.
    let ed = answer(
        reqwest::Client::new()
            .post(broker.url("/par"))
            .form(
                &[
                    form.to_vec(),
                    vec![
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        (
                            "client_assertion",
                            keys.assertion(&broker, "Ed25519", 0).as_str(),
                        ),
                    ],
                ]
                .concat(),
            )
            .send()
            .await
            .expect("par"),
    )
    .await;
    assert_eq!(ed.status, 201, "Ed25519 assertion: {}", ed.body);
    let request_uri = ed.body["request_uri"].as_str().expect("request_uri");
    let cb = Browser::new(&broker)
        .login(
            &[("client_id", "rp-fapi"), ("request_uri", request_uri)],
            "an",
            "demo",
        )
        .await;
    let code = cb.param("code").expect("code");
    assert_eq!(cb.param("iss").as_deref(), Some(broker.issuer.as_str()));
    let redeem = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("code_verifier", verifier.as_str()),
    ];
    // Without DPoP: refused, and the code stays usable.
    let bare = answer(
        reqwest::Client::new()
            .post(broker.url("/token"))
            .form(
                &[
                    redeem.to_vec(),
                    vec![
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        (
                            "client_assertion",
                            keys.assertion(&broker, "ES256", 0).as_str(),
                        ),
                    ],
                ]
                .concat(),
            )
            .send()
            .await
            .expect("token"),
    )
    .await;
    assert_eq!(bare.body["error"], "invalid_dpop_proof", "{}", bare.body);
    let tokens = post_with_dpop(&broker, &keys, &key, "/token", &redeem).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(tokens.body["token_type"], "DPoP");
    assert_eq!(
        payload(tokens.body["access_token"].as_str().expect("at"))["cnf"]["jkt"],
        key.jkt()
    );
    let id = verify_with_jwks(
        &broker,
        tokens.body["id_token"].as_str().expect("id"),
        "rp-fapi",
    )
    .await;
    assert_eq!(id["nonce"], "n-1");

    // Refresh: the same refresh token comes back and keeps working.
    let rt = tokens.body["refresh_token"]
        .as_str()
        .expect("rt")
        .to_string();
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
    ];
    for _ in 0..2 {
        let r = post_with_dpop(&broker, &keys, &key, "/token", &refresh).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body["refresh_token"].as_str(),
            Some(rt.as_str()),
            "not rotated"
        );
    }
    // Revocation still ends the family.
    let revoke = answer(
        reqwest::Client::new()
            .post(broker.url("/revoke"))
            .form(&[
                ("token", rt.as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                (
                    "client_assertion",
                    keys.assertion(&broker, "ES256", 0).as_str(),
                ),
            ])
            .send()
            .await
            .expect("revoke"),
    )
    .await;
    assert_eq!(revoke.status, 200);
    let after = post_with_dpop(&broker, &keys, &key, "/token", &refresh).await;
    assert_eq!(after.body["error"], "invalid_grant", "{}", after.body);
}

#[tokio::test]
async fn request_objects_are_verified_and_answers_signed_for_the_clients_that_ask() {
    let keys = ClientKeys::new();
    let broker = Broker::start(Options {
        redis_prefix: Some(format!("fapi-jar-{}:", rand::random::<u64>())),
        extra: fapi_client_with(
            &keys.jwks,
            "require_signed_request_object = true\nuserinfo_signed_response_alg = \"ES256\"\nintrospection_signed_response_alg = \"ES256\"",
        ),
        ..Options::default()
    });
    let key = DpopKey::new();
    let (verifier, challenge) = pkce();
    let params = json!({
        "client_id": "rp-fapi", "response_type": "code", "redirect_uri": CB,
        "scope": "openid profile", "state": "st", "nonce": "n-2",
        "code_challenge": challenge, "code_challenge_method": "S256",
    });
    let object = |header: serde_json::Value, aud: &str, exp_in: i64| {
        let mut claims = params.clone();
        claims["iss"] = "rp-fapi".into();
        claims["aud"] = aud.into();
        claims["nbf"] = (unix_now() - 5).into();
        claims["exp"] = (unix_now() + exp_in).into();
        sign_es(&keys, &header, &claims)
    };
    let typ = json!({"alg": "ES256", "kid": "fapi-es", "typ": "oauth-authz-req+jwt"});

    // Without a request object: refused.
    let plain = [
        ("response_type", "code"),
        ("redirect_uri", CB),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let r = post_with_dpop(&broker, &keys, &key, "/par", &plain).await;
    assert_eq!(r.body["error"], "invalid_request", "{}", r.body);

    // Bad objects: another key's signature, wrong aud, expired, alg none.
    let other = ClientKeys::new();
    let good = object(typ.clone(), &broker.issuer, 300);
    let mut claims = params.clone();
    claims["iss"] = "rp-fapi".into();
    claims["aud"] = broker.issuer.clone().into();
    claims["exp"] = (unix_now() + 300).into();
    claims["nbf"] = (unix_now() - 5).into();
    let forged = sign_es(&other, &typ, &claims);
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    for (why, jwt) in [
        ("another key", forged),
        (
            "wrong aud",
            object(typ.clone(), "https://elsewhere.example", 300),
        ),
        ("expired", object(typ.clone(), &broker.issuer, -120)),
        ("alg none", none),
    ] {
        let r = post_with_dpop(&broker, &keys, &key, "/par", &[("request", jwt.as_str())]).await;
        assert_eq!(r.status, 400, "{why}");
        assert_eq!(
            r.body["error"], "invalid_request_object",
            "{why}: {}",
            r.body
        );
        assert!(r.body.get("request_uri").is_none(), "{why}");
    }

    // A good one: only its parameters count (the outer scope is ignored).
    let pushed = post_with_dpop(
        &broker,
        &keys,
        &key,
        "/par",
        &[("request", good.as_str()), ("scope", "openid phone")],
    )
    .await;
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let cb = Browser::new(&broker)
        .login(
            &[
                ("client_id", "rp-fapi"),
                (
                    "request_uri",
                    pushed.body["request_uri"].as_str().expect("uri"),
                ),
            ],
            "an",
            "demo",
        )
        .await;
    let code = cb.param("code").expect("code");
    assert_eq!(cb.param("state").as_deref(), Some("st"));
    let tokens = post_with_dpop(
        &broker,
        &keys,
        &key,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(tokens.body["scope"], "openid profile");
    let at = tokens.body["access_token"].as_str().expect("at");

    // Signed UserInfo.
    let userinfo_url = format!("{}/userinfo", broker.issuer);
    let ask = |nonce: Option<String>| {
        let proof = key.proof_at("GET", &userinfo_url, Some(at), nonce.as_deref(), 0);
        reqwest::Client::new()
            .get(broker.url("/userinfo"))
            .header("Authorization", format!("DPoP {at}"))
            .header("DPoP", proof)
            .send()
    };
    let first = ask(None).await.expect("userinfo");
    let nonce = first
        .headers()
        .get("dpop-nonce")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let resp = ask(nonce).await.expect("userinfo");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|h| h.to_str().ok()),
        Some("application/jwt")
    );
    let jwt = resp.text().await.expect("body");
    let info = signed_answer(&broker, &jwt).await;
    assert!(info["sub"].is_string());

    // Signed introspection (RFC 9701).
    let resp = reqwest::Client::new()
        .post(broker.url("/introspect"))
        .header("Accept", "application/token-introspection+jwt")
        .form(&[
            ("token", at),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            (
                "client_assertion",
                keys.assertion(&broker, "ES256", 0).as_str(),
            ),
        ])
        .send()
        .await
        .expect("introspect");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|h| h.to_str().ok()),
        Some("application/token-introspection+jwt")
    );
    let jwt = resp.text().await.expect("body");
    assert_eq!(jwt_header(&jwt)["typ"], "token-introspection+jwt");
    let answer = signed_answer(&broker, &jwt).await;
    assert_eq!(answer["token_introspection"]["active"], true);
    assert_eq!(answer["token_introspection"]["cnf"]["jkt"], key.jkt());
}

/// Verifies a signed answer (no `exp`: UserInfo and introspection JWTs) with the broker's
/// JWKS, for the FAPI client.
async fn signed_answer(broker: &Broker, jwt: &str) -> serde_json::Value {
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(broker.url("/jwks"))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let header = jsonwebtoken::decode_header(jwt).expect("header");
    let jwk = jwks
        .find(&header.kid.clone().expect("kid"))
        .expect("published kid");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key");
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&["rp-fapi"]);
    v.set_issuer(&[&broker.issuer]);
    v.set_required_spec_claims(&["iss", "aud"]);
    jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &v)
        .expect("the answer verifies with the published JWKS")
        .claims
}

#[tokio::test]
async fn jarm_responses_are_signed_jwts_with_iss_aud_and_exp() {
    let keys = ClientKeys::new();
    let broker = Broker::start(Options {
        redis_prefix: Some(format!("fapi-jarm-{}:", rand::random::<u64>())),
        extra: fapi_client(&keys.jwks),
        ..Options::default()
    });
    let key = DpopKey::new();
    let (verifier, challenge) = pkce();
    let form = [
        ("response_type", "code"),
        ("redirect_uri", CB),
        ("scope", "openid"),
        ("state", "st-jarm"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("response_mode", "jwt"),
    ];
    let pushed = post_with_dpop(&broker, &keys, &key, "/par", &form).await;
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let cb = Browser::new(&broker)
        .login(
            &[
                ("client_id", "rp-fapi"),
                (
                    "request_uri",
                    pushed.body["request_uri"].as_str().expect("uri"),
                ),
            ],
            "an",
            "demo",
        )
        .await;
    assert!(
        cb.param("code").is_none() && cb.param("state").is_none(),
        "{}",
        cb.url
    );
    let response = cb.param("response").expect("JARM response");
    let claims = verify_with_jwks(&broker, &response, "rp-fapi").await;
    assert_eq!(claims["state"], "st-jarm");
    assert!(claims["exp"].as_u64().is_some());
    let code = claims["code"]
        .as_str()
        .expect("code in the JWT")
        .to_string();
    let tokens = post_with_dpop(
        &broker,
        &keys,
        &key,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);

    // An error after admission is a JARM response too (prompt=none without a session).
    let mut none = form.to_vec();
    none.push(("prompt", "none"));
    let pushed = post_with_dpop(&broker, &keys, &key, "/par", &none).await;
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let resp = Browser::new(&broker)
        .authorize(&[
            ("client_id", "rp-fapi"),
            (
                "request_uri",
                pushed.body["request_uri"].as_str().expect("uri"),
            ),
        ])
        .await;
    let location = resp
        .headers()
        .get("location")
        .and_then(|h| h.to_str().ok())
        .expect("redirect")
        .to_string();
    let url = url::Url::parse(&location).expect("url");
    let response = url
        .query_pairs()
        .find(|(k, _)| k == "response")
        .map(|(_, v)| v.into_owned())
        .expect("JARM error response");
    assert!(!location.contains("error="), "{location}");
    let claims = verify_with_jwks(&broker, &response, "rp-fapi").await;
    assert_eq!(claims["error"], "login_required");
    assert_eq!(claims["state"], "st-jarm");
}

#[tokio::test]
async fn form_post_jwt_posts_the_signed_response_to_the_client() {
    let keys = ClientKeys::new();
    let broker = Broker::start(Options {
        extra: fapi_client(&keys.jwks),
        ..Options::default()
    });
    let key = DpopKey::new();
    let (_, challenge) = pkce();
    let form = [
        ("response_type", "code"),
        ("redirect_uri", CB),
        ("scope", "openid"),
        ("state", "st-post"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("response_mode", "form_post.jwt"),
    ];
    let pushed = post_with_dpop(&broker, &keys, &key, "/par", &form).await;
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let browser = Browser::new(&broker);
    let resp = browser
        .authorize(&[
            ("client_id", "rp-fapi"),
            (
                "request_uri",
                pushed.body["request_uri"].as_str().expect("uri"),
            ),
        ])
        .await;
    let choice = browser.login_page(resp).await;
    let login = browser.choose(&choice, "test-citizens").await;
    let resp = browser.submit_password(&login, "an", "demo").await;
    let (status, location, body) = browser.follow(resp).await;
    assert_eq!(
        status, 200,
        "a page that posts, not a redirect: {location:?}"
    );
    assert!(body.contains(&format!("action=\"{CB}\"")), "{body}");
    let response = hidden(&body, "response").expect("the response field");
    let claims = verify_with_jwks(&broker, &response, "rp-fapi").await;
    assert_eq!(claims["state"], "st-post");
    assert!(claims["code"].is_string());
}
