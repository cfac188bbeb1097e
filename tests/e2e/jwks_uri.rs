//! A platform registered by `jwks_uri`: the broker fetches its keys from a small HTTP server
//! of the test, uses them for `private_key_jwt` and for signed request objects, follows a key
//! rotation without a restart, does not fetch again for every made-up `kid`, and answers an
//! unreachable `jwks_uri` with an OAuth error. The platform's ID tokens are PS256, checked
//! with `jsonwebtoken` against the broker's published JWKS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use broker::keys::{SigningAlg, SigningKey};
use serde_json::json;

use crate::harness::*;

const CB: &str = "http://localhost:9/uri-cb";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The platform's JWKS endpoint: serves whatever `jwks` holds at `/jwks`, counts fetches.
struct Platform {
    port: u16,
    jwks: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl Platform {
    fn start(keys: &[&SigningKey]) -> Platform {
        let jwks = Arc::new(Mutex::new(String::new()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (jwks.clone(), fetches.clone());
        let port = http_stub(move |method, path, _| {
            if method != "GET" || path != "/jwks" {
                return ("404 Not Found", "{}".into());
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let body = served.lock().map(|j| j.clone()).unwrap_or_default();
            ("200 OK", body)
        });
        let platform = Platform {
            port,
            jwks,
            fetches,
        };
        platform.publish(keys);
        platform
    }

    /// Replaces the published key set.
    fn publish(&self, keys: &[&SigningKey]) {
        let set = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
        if let Ok(mut j) = self.jwks.lock() {
            *j = set.to_string();
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A client assertion of `client` signed by `key` (its `kid` in the header).
fn assertion(key: &SigningKey, client: &str, broker: &Broker) -> String {
    let now = unix_now();
    key.sign(
        "JWT",
        &json!({
            "iss": client, "sub": client, "aud": broker.issuer,
            "jti": format!("{:x}", rand::random::<u128>()),
            "iat": now, "exp": now + 60,
        }),
    )
    .expect("sign")
}

/// A signed request object of `client` holding the authorization parameters.
fn request_object(key: &SigningKey, client: &str, broker: &Broker, challenge: &str) -> String {
    let now = unix_now();
    key.sign(
        "oauth-authz-req+jwt",
        &json!({
            "iss": client, "aud": broker.issuer, "client_id": client,
            "nbf": now - 5, "exp": now + 300,
            "response_type": "code", "redirect_uri": CB, "scope": "openid profile",
            "state": "st-uri", "nonce": "n-uri",
            "code_challenge": challenge, "code_challenge_method": "S256",
        }),
    )
    .expect("sign")
}

async fn post(broker: &Broker, path: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    post_form(broker, path, form).await
}

/// One login of `rp-uri` with `key`: PAR authenticated by `private_key_jwt` and carrying a
/// signed request object, the browser's login, the code redeemed with `private_key_jwt`.
/// Returns the verified claims of the ID token.
async fn login_with(broker: &Broker, key: &SigningKey) -> serde_json::Value {
    let (verifier, challenge) = pkce();
    let object = request_object(key, "rp-uri", broker, &challenge);
    let par_assertion = assertion(key, "rp-uri", broker);
    let (status, pushed) = post(
        broker,
        "/par",
        &[
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &par_assertion),
            ("request", &object),
            // Outside the object: ignored (RFC 9101 5).
            ("scope", "openid phone"),
        ],
    )
    .await;
    assert_eq!(status, 201, "PAR with key {}: {pushed}", key.kid);
    let request_uri = pushed["request_uri"].as_str().expect("request_uri");
    let cb = Browser::new(broker)
        .login(
            &[("client_id", "rp-uri"), ("request_uri", request_uri)],
            "an",
            "demo",
        )
        .await;
    assert_eq!(cb.param("state").as_deref(), Some("st-uri"));
    let code = cb.param("code").expect("code");
    let token_assertion = assertion(key, "rp-uri", broker);
    let (status, tokens) = post(
        broker,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", &verifier),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &token_assertion),
        ],
    )
    .await;
    assert_eq!(status, 200, "token with key {}: {tokens}", key.kid);
    assert_eq!(tokens["scope"], "openid profile", "only the object counts");
    let id_token = tokens["id_token"].as_str().expect("id_token");
    let header = jwt_header(id_token);
    assert_eq!(header["alg"], "PS256", "{header}");
    assert_eq!(header["kid"], "ps-1", "{header}");
    // jsonwebtoken, with the key the broker publishes under that kid.
    let claims = verify_with_jwks(broker, id_token, "rp-uri").await;
    assert_eq!(claims["nonce"], "n-uri");
    claims
}

#[tokio::test]
async fn a_platform_registered_by_jwks_uri_authenticates_signs_requests_and_rotates_its_keys() {
    let (first, _) = SigningKey::generate("uri-1", SigningAlg::ES256).expect("key");
    let (second, _) = SigningKey::generate("uri-2", SigningAlg::ES256).expect("key");
    let platform = Platform::start(&[&first]);
    let keys_dir = tempfile::tempdir().expect("dir");
    let (_, ps_pem) = SigningKey::generate("ps-1", SigningAlg::PS256).expect("PS256 key");
    let ps_file = keys_dir.path().join("ps.pem");
    std::fs::write(&ps_file, ps_pem).expect("write key");
    let unreachable = free_port();
    let extra = format!(
        r#"
[[clients]]
id = "rp-uri"
name = "Seal platform"
redirect_uris = ["{CB}"]
auth_method = "private_key_jwt"
jwks_uri = "http://127.0.0.1:{}/jwks"
require_signed_request_object = true
require_pushed_authorization_requests = true
id_token_signed_response_alg = "PS256"

[[clients]]
id = "rp-uri-down"
name = "Platform whose keys are unreachable"
redirect_uris = ["{CB}"]
auth_method = "private_key_jwt"
jwks_uri = "http://127.0.0.1:{unreachable}/jwks"

[[keys]]
kid = "ps-1"
alg = "PS256"
file = "{}"
"#,
        platform.port,
        ps_file.display()
    );
    let broker = Broker::start(Options {
        extra,
        ..Options::default()
    });

    // /jwks publishes the PS256 key with its own kid and alg, beside the others.
    let published: serde_json::Value = reqwest::get(broker.url("/jwks"))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let ps: Vec<&serde_json::Value> = published["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["kid"] == "ps-1")
        .collect();
    assert_eq!(ps.len(), 1, "{published}");
    assert_eq!(ps[0]["alg"], "PS256");
    assert_eq!(ps[0]["kty"], "RSA");
    assert!(ps[0].get("d").is_none(), "public members only");
    assert!(
        published["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["kid"] == "rs-1" && k["alg"] == "RS256"),
        "the RS256 key has a kid of its own: {published}"
    );

    assert_eq!(platform.fetches(), 0, "nothing fetched before it is needed");
    login_with(&broker, &first).await;
    assert_eq!(
        platform.fetches(),
        1,
        "the key set is fetched once and cached for PAR, the request object and /token"
    );

    // The platform rotates to a new key: the next request, signed with it, still works,
    // without restarting the broker, after one more fetch.
    platform.publish(&[&second]);
    login_with(&broker, &second).await;
    assert_eq!(platform.fetches(), 2, "one refetch for the new kid");

    // The old key is gone from the platform's set: refused.
    let old = assertion(&first, "rp-uri", &broker);
    let (status, body) = post(
        &broker,
        "/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &old),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // Made-up kids do not make the broker hammer the platform: at most one fetch per 10 s.
    let started = std::time::Instant::now();
    let before = platform.fetches();
    for i in 0..20 {
        let (made_up, _) =
            SigningKey::generate(&format!("made-up-{i}"), SigningAlg::ES256).expect("key");
        let forged = assertion(&made_up, "rp-uri", &broker);
        let (status, body) = post(
            &broker,
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &forged),
            ],
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
    }
    let allowed = 1 + (started.elapsed().as_secs() / 10) as usize;
    let fetched = platform.fetches() - before;
    assert!(
        fetched <= allowed,
        "{fetched} fetches for 20 unknown kids in {:?}",
        started.elapsed()
    );

    // An unreachable jwks_uri: an OAuth error for the client, never a 500.
    let (status, body) = post(
        &broker,
        "/par",
        &[
            ("client_assertion_type", ASSERTION_TYPE),
            (
                "client_assertion",
                &assertion(&first, "rp-uri-down", &broker),
            ),
            ("response_type", "code"),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    let why = body["error_description"].as_str().unwrap_or_default();
    assert!(why.contains("jwks_uri"), "{why}");
    // A request object of that client at /authorize goes back as invalid_request_object.
    let (_, challenge) = pkce();
    let object = request_object(&first, "rp-uri-down", &broker, &challenge);
    let resp = Browser::new(&broker)
        .authorize(&[
            ("client_id", "rp-uri-down"),
            ("redirect_uri", CB),
            ("request", &object),
        ])
        .await;
    let location = resp
        .headers()
        .get("location")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        location.starts_with(CB) && location.contains("error=invalid_request_object"),
        "{} {location}",
        resp.status()
    );
    // Operators count the fetches per client and outcome.
    let metrics = reqwest::get(broker.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for (client, outcome) in [("rp-uri", "fetched"), ("rp-uri-down", "failed")] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("broker_client_jwks_fetches_total{")
                    && l.contains(&format!("client=\"{client}\""))
                    && l.contains(&format!("outcome=\"{outcome}\""))),
            "{client} {outcome}:\n{metrics}"
        );
    }
    let logs = broker.settled_log_text().await;
    assert!(
        logs.contains("cannot fetch the client's jwks_uri"),
        "the operator sees why"
    );
    assert!(!logs.contains("panicked"), "{logs}");
}
