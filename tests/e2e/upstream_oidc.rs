//! The `oidc` connector: the broker as a relying party of an upstream OpenID Provider.
//!
//! * adversarial upstream answers from a fake provider (`wiremock`, instructed per case),
//!   each refused with a clear citizen page, an operator log line and nothing stored;
//! * a whole login through the simulated VNeID (the `simulators` crate, in this process),
//!   whose dialect the claim mapping turns into the broker's claims and levels;
//! * panva's `oidc-provider` (npm) as the upstream, driven through real headless Chromium
//!   with `openid-client` as the relying party (tests/js/upstream-idp.mjs and
//!   tests/js/upstream-login.mjs).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use broker::keys::{SigningAlg, SigningKey};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::*;

const UPSTREAM_CLIENT: &str = "broker-at-upstream";
const CCCD: &str = "079201001234";

// English texts of the pages (broker/locales/en/main.ftl).
const INVALID: &str = "could not be verified";
const CANCELLED: &str = "You cancelled the sign-in";
const UNAVAILABLE: &str = "is not available right now";
const EXPIRED: &str = "has expired or was already completed";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether the broker's log shows `needle` within a few seconds (its output reaches this
/// process through a pipe and a reader thread, a little after the HTTP response).
async fn log_shows(broker: &Broker, needle: &str) -> bool {
    for _ in 0..200 {
        if broker.log_text().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// A fake upstream provider: discovery and JWKS always answer; the token endpoint and
/// UserInfo answer what each case mounts.
struct FakeIdp {
    server: MockServer,
    key: SigningKey,
}

impl FakeIdp {
    async fn start() -> FakeIdp {
        let server = MockServer::start().await;
        let (key, _) = SigningKey::generate("up-1", SigningAlg::ES256).expect("key");
        let issuer = server.uri();
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "userinfo_endpoint": format!("{issuer}/userinfo"),
                "jwks_uri": format!("{issuer}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                // HS256 and none are advertised too: the broker must never accept them.
                "id_token_signing_alg_values_supported": ["ES256", "RS256", "HS256", "none"],
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": true
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": [key.jwk()] })))
            .mount(&server)
            .await;
        FakeIdp { server, key }
    }

    fn issuer(&self) -> String {
        self.server.uri()
    }

    /// Valid ID token claims for a login whose upstream `nonce` was `nonce`.
    fn claims(&self, nonce: &str) -> Value {
        let t = now();
        json!({
            "iss": self.issuer(),
            "sub": "up-sub-1",
            "aud": UPSTREAM_CLIENT,
            "azp": UPSTREAM_CLIENT,
            "iat": t,
            "exp": t + 300,
            "nonce": nonce,
            "acr": "urn:up:loa:high",
            "amr": ["pwd", "face"],
            "name": "  Nguyễn   Văn An ",
            "birthdate": "15/03/1990",
            "cccd": "0792 0100 1234"
        })
    }

    fn sign(&self, claims: &Value) -> String {
        self.key.sign("JWT", claims).expect("sign")
    }

    /// The token endpoint answers `response` to the exchange of `code` (once).
    async fn on_token(&self, code: &str, response: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains(format!("code={code}")))
            .respond_with(response)
            .up_to_n_times(1)
            .mount(&self.server)
            .await;
    }

    /// UserInfo answers `claims` for `access_token`.
    async fn on_userinfo(&self, access_token: &str, claims: Value) {
        self.on_userinfo_with(
            access_token,
            ResponseTemplate::new(200).set_body_json(claims),
        )
        .await;
    }

    /// UserInfo answers the signed `jwt` (`application/jwt`) for `access_token`.
    async fn on_userinfo_jwt(&self, access_token: &str, jwt: &str) {
        let body =
            ResponseTemplate::new(200).set_body_raw(jwt.as_bytes().to_vec(), "application/jwt");
        self.on_userinfo_with(access_token, body).await;
    }

    async fn on_userinfo_with(&self, access_token: &str, response: ResponseTemplate) {
        Mock::given(method("GET"))
            .and(path("/userinfo"))
            .and(header("authorization", format!("Bearer {access_token}")))
            .respond_with(response)
            .mount(&self.server)
            .await;
    }
}

fn token_json(id_token: &str, access_token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token
    }))
}

fn connector_config(id: &str, issuer: &str, timeout_ms: u64) -> String {
    format!(
        r#"
[[connectors]]
id = "{id}"
type = "oidc"
name = {{ en = "National identity app ({id})", vi = "Ứng dụng định danh ({id})" }}

[connectors.settings]
issuer = "{issuer}"
client_id = "{UPSTREAM_CLIENT}"
client_secret = {{ env = "TEST_RP_SECRET" }}
scopes = ["openid", "profile", "cccd"]
timeout_ms = {timeout_ms}
use_userinfo = true
assurance_floor = "substantial"

[connectors.settings.claims]
citizen_id = "cccd"
citizen_id_proven = true

[connectors.settings.acr_levels]
"urn:up:loa:high" = "high"
"#
    )
}

/// A login waiting at the upstream provider.
struct Pending {
    tx: String,
    state: String,
    nonce: String,
    verifier: String,
}

/// Starts a login at `rp-basic` and chooses `connector`; returns what the broker sent to
/// the upstream provider.
async fn begin(broker: &Broker, browser: &Browser, connector: &str, upstream: &str) -> Pending {
    let (verifier, challenge) = pkce();
    let resp = browser
        .authorize(&auth_params(
            "rp-basic",
            "http://localhost:9/cb",
            "openid profile phone citizen_id",
            &challenge,
        ))
        .await;
    let choice = browser.login_page(resp).await;
    assert!(
        choice.contains(&format!("id=\"use-{connector}\"")),
        "the choice page offers {connector}: {choice}"
    );
    choose(broker, browser, &choice, connector, upstream, verifier).await
}

async fn choose(
    broker: &Broker,
    browser: &Browser,
    choice: &str,
    connector: &str,
    upstream: &str,
    verifier: String,
) -> Pending {
    let csrf = hidden(choice, "csrf").expect("csrf");
    let tx = tx_path(choice).expect("tx");
    let resp = browser
        .post(
            &broker.url(&format!("{tx}/start")),
            &[("csrf", &csrf), ("connector", connector)],
        )
        .await;
    let (status, location, body) = browser.follow(resp).await;
    assert_eq!(status, 303, "start redirects upstream: {body}");
    let location = location.expect("location");
    assert!(
        location.starts_with(&format!("{upstream}/authorize?")),
        "redirected to the upstream provider: {location}"
    );
    let url = url::Url::parse(&location).expect("url");
    let q = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("{k} missing from {location}"))
    };
    assert_eq!(q("code_challenge_method"), "S256");
    assert_eq!(q("response_type"), "code");
    assert!(q("scope").split(' ').any(|s| s == "openid"));
    Pending {
        tx,
        state: q("state"),
        nonce: q("nonce"),
        verifier,
    }
}

/// The upstream provider sends the browser back to the broker.
async fn callback(
    broker: &Broker,
    browser: &Browser,
    connector: &str,
    params: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let mut url = url::Url::parse(&broker.url(&format!("/callback/{connector}"))).expect("url");
    url.query_pairs_mut().extend_pairs(params);
    browser.follow(browser.get(url.as_str()).await).await
}

fn random_code() -> String {
    format!("code-{}", rand::random::<u64>())
}

/// The callback of `p` with `code` through `connector` ends on the "could not be verified"
/// page, and the operator log says `detail`.
async fn assert_refused(
    (broker, browser): (&Broker, &Browser),
    connector: &str,
    issuer: &str,
    p: &Pending,
    code: &str,
    case: &str,
    detail: &str,
) {
    let got = callback(
        broker,
        browser,
        connector,
        &[("code", code), ("state", &p.state), ("iss", issuer)],
    )
    .await;
    assert_failure_page(broker, browser, case, got, p, INVALID).await;
    assert!(
        log_shows(broker, detail).await,
        "{case}: the operator log says `{detail}`:\n{}",
        broker.log_text()
    );
}

/// A failure page that sends the citizen back to the choice, with the login still usable.
async fn assert_failure_page(
    broker: &Broker,
    browser: &Browser,
    case: &str,
    got: (u16, Option<String>, String),
    pending: &Pending,
    text: &str,
) {
    let (status, location, body) = got;
    // The citizen's own cancel is a 4xx; an upstream that fails is a 502.
    let expected = if text == CANCELLED { 403 } else { 502 };
    assert_eq!(status, expected, "{case}: status; page: {body}");
    assert!(location.is_none(), "{case}: no redirect to the platform");
    assert!(body.contains(text), "{case}: page says `{text}`: {body}");
    assert!(
        body.contains(&format!("href=\"{}", broker.url(&pending.tx)))
            || body.contains(&format!("href=\"{}\"", pending.tx)),
        "{case}: a link back to the choice page: {body}"
    );
    assert!(
        body.contains("Choose another way to sign in"),
        "{case}: says what to do next: {body}"
    );
    // Nothing was kept: the login is back at the choice of identity sources.
    let page = browser
        .get(&broker.url(&pending.tx))
        .await
        .text()
        .await
        .expect("page");
    assert!(
        page.contains("id=\"use-upstream\""),
        "{case}: the login can be retried: {page}"
    );
}

#[tokio::test]
async fn adversarial_upstream_answers_are_refused_with_a_clear_page() {
    let idp = FakeIdp::start().await;
    let issuer = idp.issuer();
    // `signed`: the same provider, registered for signed UserInfo answers only.
    let broker = Broker::start(Options {
        extra: connector_config("upstream", &issuer, 5000)
            + &connector_config("signed", &issuer, 5000).replace(
                "use_userinfo = true",
                "use_userinfo = true\nuserinfo_signed = true",
            ),
        ..Options::default()
    });
    let browser = Browser::new(&broker);

    // Another key, published nowhere, that claims the provider's `kid`.
    let (forger, _) = SigningKey::generate("up-1", SigningAlg::ES256).expect("key");
    type Tamper = Box<dyn Fn(&FakeIdp, &str) -> String>;
    let id_token_cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "unsigned token (alg none)",
            Box::new(|idp, nonce| {
                let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
                let p = URL_SAFE_NO_PAD.encode(idp.claims(nonce).to_string());
                format!("{h}.{p}.")
            }),
            "No signature found",
        ),
        (
            "wrong signature",
            Box::new(move |idp, nonce| forger.sign("JWT", &idp.claims(nonce)).expect("sign")),
            "ID token signature: Crypto error",
        ),
        (
            "HS256 keyed with the provider's public key",
            Box::new(|idp, nonce| {
                let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"up-1","typ":"JWT"}"#);
                let p = URL_SAFE_NO_PAD.encode(idp.claims(nonce).to_string());
                let input = format!("{h}.{p}");
                let public = serde_json::to_vec(idp.key.jwk()).expect("jwk");
                let mut mac = Hmac::<Sha256>::new_from_slice(&public).expect("hmac");
                mac.update(input.as_bytes());
                let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
                format!("{input}.{sig}")
            }),
            "Disallowed signature algorithm: algorithm `HS256`",
        ),
        (
            "wrong iss",
            Box::new(|idp, nonce| {
                let mut c = idp.claims(nonce);
                c["iss"] = json!("https://evil.example");
                idp.sign(&c)
            }),
            "ID token issuer",
        ),
        (
            "wrong aud",
            Box::new(|idp, nonce| {
                let mut c = idp.claims(nonce);
                c["aud"] = json!("another-client");
                c["azp"] = json!("another-client");
                idp.sign(&c)
            }),
            "ID token audience",
        ),
        (
            "another audience besides the broker",
            Box::new(|idp, nonce| {
                let mut c = idp.claims(nonce);
                c["aud"] = json!([UPSTREAM_CLIENT, "another-client"]);
                idp.sign(&c)
            }),
            "is not a trusted audience",
        ),
        (
            "wrong azp",
            Box::new(|idp, nonce| {
                let mut c = idp.claims(nonce);
                c["azp"] = json!("another-client");
                idp.sign(&c)
            }),
            "ID token `azp` is `another-client`",
        ),
        (
            "expired",
            Box::new(|idp, nonce| {
                let mut c = idp.claims(nonce);
                c["iat"] = json!(now() - 900);
                c["exp"] = json!(now() - 600);
                idp.sign(&c)
            }),
            "ID token expired at",
        ),
        (
            "issued in the future",
            Box::new(|idp, nonce| {
                let mut c = idp.claims(nonce);
                c["iat"] = json!(now() + 3600);
                c["exp"] = json!(now() + 3900);
                idp.sign(&c)
            }),
            "issued in the future",
        ),
        (
            "nonce mismatch",
            Box::new(|idp, _| idp.sign(&idp.claims("a-nonce-from-another-login"))),
            "ID token nonce does not match",
        ),
    ];

    for (case, tamper, detail) in &id_token_cases {
        let p = begin(&broker, &browser, "upstream", &issuer).await;
        let code = random_code();
        idp.on_token(&code, token_json(&tamper(&idp, &p.nonce), "at-unused"))
            .await;
        assert_refused(
            (&broker, &browser),
            "upstream",
            &issuer,
            &p,
            &code,
            case,
            detail,
        )
        .await;
        // The state was single use: the same callback again is an expired login.
        let (status, _, body) = callback(
            &broker,
            &browser,
            "upstream",
            &[("code", &code), ("state", &p.state), ("iss", &issuer)],
        )
        .await;
        assert_eq!(status, 400, "{case}: replayed state: {body}");
        assert!(body.contains(EXPIRED), "{case}: replayed state: {body}");
    }

    // UserInfo about somebody else (token substitution).
    let p = begin(&broker, &browser, "upstream", &issuer).await;
    let code = random_code();
    let at = format!("at-{}", rand::random::<u64>());
    idp.on_token(&code, token_json(&idp.sign(&idp.claims(&p.nonce)), &at))
        .await;
    idp.on_userinfo(&at, json!({"sub": "someone-else", "cccd": "001195006789"}))
        .await;
    assert_refused(
        (&broker, &browser),
        "upstream",
        &issuer,
        &p,
        &code,
        "userinfo sub mismatch",
        "UserInfo `sub` differs",
    )
    .await;

    // Signed UserInfo answers that must not be believed.
    let userinfo = |idp: &FakeIdp| json!({"iss": idp.issuer(), "aud": UPSTREAM_CLIENT, "sub": "up-sub-1", "cccd": "001195006789"});
    let (forger, _) = SigningKey::generate("up-1", SigningAlg::ES256).expect("key");
    let signed_cases: Vec<(&str, String, &str)> = vec![
        (
            "signed UserInfo with a forged signature",
            forger.sign("JWT", &userinfo(&idp)).expect("sign"),
            "userinfo: signed answer refused: InvalidSignature",
        ),
        (
            "signed UserInfo for another client",
            idp.sign(&{
                let mut c = userinfo(&idp);
                c["aud"] = json!("another-client");
                c
            }),
            "userinfo: signed answer refused: InvalidAudience",
        ),
        (
            "signed UserInfo from another issuer",
            idp.sign(&{
                let mut c = userinfo(&idp);
                c["iss"] = json!("https://evil.example");
                c
            }),
            "userinfo: signed answer refused: InvalidIssuer",
        ),
        (
            "signed UserInfo without an audience",
            idp.sign(&{
                let mut c = userinfo(&idp);
                c.as_object_mut().map(|m| m.remove("aud"));
                c
            }),
            "userinfo: signed answer refused: Missing required claim: aud",
        ),
        (
            "encrypted UserInfo",
            "h.k.iv.ct.tag".to_string(),
            "userinfo: encrypted answers are not supported",
        ),
        (
            "signed UserInfo that has expired",
            idp.sign(&{
                let mut c = userinfo(&idp);
                c["exp"] = json!(now() - 600);
                c
            }),
            "userinfo: signed answer refused: ExpiredSignature",
        ),
        (
            "UserInfo signed with HS256",
            {
                let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"up-1","typ":"JWT"}"#);
                let p = URL_SAFE_NO_PAD.encode(userinfo(&idp).to_string());
                format!("{h}.{p}.c2ln")
            },
            "not an accepted algorithm",
        ),
    ];
    for (case, jwt, detail) in &signed_cases {
        let p = begin(&broker, &browser, "upstream", &issuer).await;
        let code = random_code();
        let at = format!("at-{}", rand::random::<u64>());
        idp.on_token(&code, token_json(&idp.sign(&idp.claims(&p.nonce)), &at))
            .await;
        idp.on_userinfo_jwt(&at, jwt).await;
        assert_refused(
            (&broker, &browser),
            "upstream",
            &issuer,
            &p,
            &code,
            case,
            detail,
        )
        .await;
    }

    // A plain JSON answer where a signed one is required (a downgrade).
    let p = begin(&broker, &browser, "signed", &issuer).await;
    let code = random_code();
    let at = format!("at-{}", rand::random::<u64>());
    idp.on_token(&code, token_json(&idp.sign(&idp.claims(&p.nonce)), &at))
        .await;
    idp.on_userinfo(&at, json!({"sub": "up-sub-1", "cccd": "001195006789"}))
        .await;
    assert_refused(
        (&broker, &browser),
        "signed",
        &issuer,
        &p,
        &code,
        "plain UserInfo where signed is required",
        "a signed one is required (userinfo_signed)",
    )
    .await;

    // HTML, garbage, and a token response without a usable ID token.
    for (case, response, detail) in [
        (
            "HTML from the token endpoint",
            ResponseTemplate::new(200).set_body_raw(
                "<html><body>Maintenance</body></html>".as_bytes().to_vec(),
                "text/html",
            ),
            "Content-Type: \"text/html\"",
        ),
        (
            "garbage from the token endpoint",
            ResponseTemplate::new(200).set_body_raw(
                "{\"access_token\": tru".as_bytes().to_vec(),
                "application/json",
            ),
            "token response does not parse",
        ),
        (
            "an ID token that is not a JWT",
            token_json("not-a-jwt", "at-unused"),
            "token response does not parse",
        ),
        (
            "no ID token",
            ResponseTemplate::new(200).set_body_json(json!({
                "access_token": "at-unused", "token_type": "Bearer"
            })),
            "token response without an ID token",
        ),
        (
            "an OAuth error from the token endpoint",
            ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})),
            "token endpoint answered `invalid_grant`",
        ),
    ] {
        let p = begin(&broker, &browser, "upstream", &issuer).await;
        let code = random_code();
        idp.on_token(&code, response).await;
        assert_refused(
            (&broker, &browser),
            "upstream",
            &issuer,
            &p,
            &code,
            case,
            detail,
        )
        .await;
    }

    // Mix-up: the response claims to come from another provider.
    let p = begin(&broker, &browser, "upstream", &issuer).await;
    let got = callback(
        &broker,
        &browser,
        "upstream",
        &[
            ("code", "whatever"),
            ("state", &p.state),
            ("iss", "https://other-idp.example"),
        ],
    )
    .await;
    assert_failure_page(&broker, &browser, "iss mix-up", got, &p, INVALID).await;

    // The citizen cancelled upstream.
    let p = begin(&broker, &browser, "upstream", &issuer).await;
    let got = callback(
        &broker,
        &browser,
        "upstream",
        &[
            ("error", "access_denied"),
            ("state", &p.state),
            ("iss", &issuer),
        ],
    )
    .await;
    assert_failure_page(&broker, &browser, "access_denied", got, &p, CANCELLED).await;

    // Nothing above opened a session.
    let (_, challenge) = pkce();
    let mut params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    params.push(("prompt", "none"));
    let (_, location, _) = browser.follow(browser.authorize(&params).await).await;
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    assert_eq!(cb.param("error").as_deref(), Some("login_required"));

    // A retry in the same login, after a failure, goes through; the provider has rotated
    // its key meanwhile, and the broker fetches the new one when it meets its `kid`.
    let p = begin(&broker, &browser, "upstream", &issuer).await;
    let code = random_code();
    idp.on_token(
        &code,
        token_json(&idp.sign(&idp.claims("stale")), "at-unused"),
    )
    .await;
    let got = callback(
        &broker,
        &browser,
        "upstream",
        &[("code", &code), ("state", &p.state), ("iss", &issuer)],
    )
    .await;
    assert_failure_page(&broker, &browser, "before the retry", got, &p, INVALID).await;
    let choice = browser
        .get(&broker.url(&p.tx))
        .await
        .text()
        .await
        .expect("choice");
    let p = choose(&broker, &browser, &choice, "upstream", &issuer, p.verifier).await;
    let (rotated, _) = SigningKey::generate("up-2", SigningAlg::ES256).expect("key");
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "keys": [idp.key.jwk(), rotated.jwk()] })),
        )
        .with_priority(1)
        .mount(&idp.server)
        .await;
    let code = random_code();
    let at = format!("at-{}", rand::random::<u64>());
    let id_token = rotated.sign("JWT", &idp.claims(&p.nonce)).expect("sign");
    idp.on_token(&code, token_json(&id_token, &at)).await;
    idp.on_userinfo(
        &at,
        json!({"sub": "up-sub-1", "phone_number": "+84 90 123 4567"}),
    )
    .await;
    let (status, location, body) = callback(
        &broker,
        &browser,
        "upstream",
        &[("code", &code), ("state", &p.state), ("iss", &issuer)],
    )
    .await;
    assert_eq!(status, 303, "the retry succeeds: {body}");
    let cb = Callback {
        url: url::Url::parse(&location.expect("location")).expect("url"),
    };
    let code = cb.param("code").expect("a code for the platform");
    let (status, tokens, _) = token_basic(
        &broker,
        "rp-basic",
        RP_SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:9/cb"),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let claims = verify_with_jwks(
        &broker,
        tokens["id_token"].as_str().expect("id"),
        "rp-basic",
    )
    .await;
    assert_eq!(claims["name"], "Nguyễn Văn An");
    assert_eq!(claims["birthdate"], "1990-03-15");
    assert_eq!(claims["citizen_id"], CCCD);
    assert_eq!(claims["phone_number"], "+84901234567");
    assert_eq!(claims["acr"], "http://eidas.europa.eu/LoA/high");
    assert_eq!(claims["amr"], json!(["pwd", "face"]));

    // The state of a completed login cannot be replayed either.
    let (status, _, body) = callback(
        &broker,
        &browser,
        "upstream",
        &[("code", &code), ("state", &p.state), ("iss", &issuer)],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(EXPIRED), "{body}");

    // Operators read what went wrong; personal data never reaches the logs.
    let logs = broker.settled_log_text().await;
    for private in [
        CCCD,
        "0792 0100 1234",
        "001195006789",
        "Nguyễn",
        "90 123 4567",
    ] {
        assert!(
            !logs.contains(private),
            "`{private}` leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test]
async fn an_upstream_that_hangs_is_unavailable_not_a_hang() {
    let idp = FakeIdp::start().await;
    let issuer = idp.issuer();
    let broker = Broker::start(Options {
        extra: connector_config("upstream", &issuer, 400),
        ..Options::default()
    });
    let browser = Browser::new(&broker);
    let p = begin(&broker, &browser, "upstream", &issuer).await;
    let code = random_code();
    // The token endpoint answers long after the connector's timeout.
    idp.on_token(
        &code,
        token_json(&idp.sign(&idp.claims(&p.nonce)), "at-unused")
            .set_delay(Duration::from_secs(20)),
    )
    .await;
    let got = callback(
        &broker,
        &browser,
        "upstream",
        &[("code", &code), ("state", &p.state), ("iss", &issuer)],
    )
    .await;
    assert_failure_page(
        &broker,
        &browser,
        "hanging token endpoint",
        got,
        &p,
        UNAVAILABLE,
    )
    .await;
    assert!(
        log_shows(&broker, "timed out").await,
        "operators see the timeout:\n{}",
        broker.log_text()
    );
    // The next citizen is warned on the choice page, and may still try it.
    let choice = browser.choice_page().await;
    assert!(
        choice.contains("id=\"trouble-upstream\"")
            && choice.contains("Did not answer a few minutes ago")
            && choice.contains("id=\"use-upstream\""),
        "{choice}"
    );
    assert!(
        !choice.contains("id=\"trouble-test-citizens\""),
        "only the source that failed"
    );
    // An overloaded provider (503) is an outage too, not an invalid answer.
    let p = begin(&broker, &browser, "upstream", &issuer).await;
    let code = random_code();
    idp.on_token(&code, ResponseTemplate::new(503).set_body_string("busy"))
        .await;
    let got = callback(
        &broker,
        &browser,
        "upstream",
        &[("code", &code), ("state", &p.state), ("iss", &issuer)],
    )
    .await;
    assert_failure_page(
        &broker,
        &browser,
        "503 from the token endpoint",
        got,
        &p,
        UNAVAILABLE,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// The simulated VNeID

/// The simulated VNeID behind an `oidc` connector (`ISSUER` is replaced by its URL).
pub const VNEID_CONNECTOR: &str = r#"
[[connectors]]
id = "vneid"
type = "oidc"
name = { en = "VNeID (simulated)", vi = "VNeID (mô phỏng)" }

[connectors.settings]
issuer = "ISSUER"
client_id = "broker-e2e"
client_secret = { env = "TEST_RP_SECRET" }
scopes = ["openid", "profile", "phone", "cccd"]
use_userinfo = true
assurance_floor = "substantial"
max_assurance = "high"

[connectors.settings.claims]
citizen_id = "cccd"
citizen_id_proven = true
phone_country_code = "84"

[connectors.settings.acr_levels]
"urn:vneid:sim:loa:level1" = "substantial"
"urn:vneid:sim:loa:level2" = "high"
"#;

/// Logs `username` in at the simulator's page (or cancels); returns the redirect back to
/// the broker.
pub async fn at_simulator(authorize_url: &str, username: &str, action: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = http
        .get(authorize_url)
        .send()
        .await
        .expect("simulator page")
        .text()
        .await
        .expect("html");
    assert!(page.contains(&format!("id=citizen-{username}")), "{page}");
    let marker = "name=login value=\"";
    let start = page.find(marker).expect("login field") + marker.len();
    let login = &page[start..start + page[start..].find('"').expect("end")];
    let issuer = url::Url::parse(authorize_url).expect("url");
    let resp = http
        .post(format!(
            "{}authorize/login",
            issuer.join("/").expect("base")
        ))
        .form(&[
            ("login", login),
            ("username", username),
            ("password", simulators::vneid::PASSWORD),
            ("action", action),
        ])
        .send()
        .await
        .expect("login post");
    assert_eq!(resp.status().as_u16(), 303);
    resp.headers()
        .get("location")
        .and_then(|h| h.to_str().ok())
        .expect("location")
        .to_string()
}

#[tokio::test]
async fn a_citizen_logs_in_through_the_simulated_vneid() {
    let sim_port = free_port();
    let broker_port = free_port();
    let sim_issuer = format!("http://127.0.0.1:{sim_port}");
    let server = simulators::vneid::serve(
        &format!("127.0.0.1:{sim_port}"),
        &sim_issuer,
        vec![simulators::vneid::Client {
            id: "broker-e2e".into(),
            secret: RP_SECRET.into(),
            redirect_uris: vec![format!("http://127.0.0.1:{broker_port}/callback/vneid")],
        }],
    )
    .expect("simulator binds");
    let handle = server.handle();
    tokio::spawn(server);
    let broker = Broker::start(Options {
        port: Some(broker_port),
        extra: VNEID_CONNECTOR.replace("ISSUER", &sim_issuer),
        ..Options::default()
    });

    let mut an_sub = String::new();
    for (username, acr, amr_has) in [
        ("an", "http://eidas.europa.eu/LoA/high", "face"),
        ("binh", "http://eidas.europa.eu/LoA/substantial", "pwd"),
    ] {
        let browser = Browser::new(&broker);
        let (verifier, challenge) = pkce();
        let choice = browser
            .login_page(
                browser
                    .authorize(&auth_params(
                        "rp-basic",
                        "http://localhost:9/cb",
                        "openid profile phone citizen_id",
                        &challenge,
                    ))
                    .await,
            )
            .await;
        let resp = browser
            .post(
                &broker.url(&format!("{}/start", tx_path(&choice).expect("tx"))),
                &[
                    ("csrf", &hidden(&choice, "csrf").expect("csrf")),
                    ("connector", "vneid"),
                ],
            )
            .await;
        let (status, location, _) = browser.follow(resp).await;
        assert_eq!(status, 303);
        let back = at_simulator(&location.expect("to the simulator"), username, "login").await;
        assert!(back.starts_with(&broker.url("/callback/vneid?")), "{back}");
        let (status, location, body) = browser.follow(browser.get(&back).await).await;
        assert_eq!(status, 303, "{username}: back at the platform: {body}");
        let cb = Callback {
            url: url::Url::parse(&location.expect("location")).expect("url"),
        };
        let code = cb.param("code").expect("code");
        let (status, tokens, _) = token_basic(
            &broker,
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
        assert_eq!(status, 200, "{tokens}");
        let claims = verify_with_jwks(
            &broker,
            tokens["id_token"].as_str().expect("id"),
            "rp-basic",
        )
        .await;
        assert_eq!(claims["acr"], acr, "{username}");
        assert!(
            claims["amr"]
                .as_array()
                .is_some_and(|a| a.iter().any(|m| m == amr_has)),
            "{username}: amr {}",
            claims["amr"]
        );
        if username == "an" {
            an_sub = claims["sub"].as_str().unwrap_or_default().to_string();
            assert_eq!(claims["name"], "Nguyễn Văn An");
            assert_eq!(claims["citizen_id"], CCCD);
            assert_eq!(
                claims["birthdate"], "1990-03-15",
                "DD/MM/YYYY became ISO 8601"
            );
            assert_eq!(claims["phone_number"], "+84901234567");
            assert_eq!(claims["family_name"], "Nguyễn");
        } else {
            assert_eq!(claims["name"], "Lê Văn Bình");
            assert_eq!(claims["citizen_id"], "036089004321");
            assert_eq!(claims["birthdate"], "1989-07-20");
        }
    }

    // The same person as the test-citizens source with the same proven CCCD: the platform
    // sees one `sub`.
    let browser = Browser::new(&broker);
    let tokens = tokens_for(
        &broker,
        &browser,
        "rp-basic",
        "http://localhost:9/cb",
        "openid profile citizen_id",
    )
    .await;
    let via_test_citizens = verify_with_jwks(
        &broker,
        tokens["id_token"].as_str().expect("id"),
        "rp-basic",
    )
    .await;
    assert_eq!(via_test_citizens["citizen_id"], CCCD);
    assert_eq!(via_test_citizens["sub"], an_sub.as_str());

    // Cancel at the simulator: the broker says so and offers the other ways.
    let browser = Browser::new(&broker);
    let choice = browser.choice_page().await;
    let tx = tx_path(&choice).expect("tx");
    let resp = browser
        .post(
            &broker.url(&format!("{tx}/start")),
            &[
                ("csrf", &hidden(&choice, "csrf").expect("csrf")),
                ("connector", "vneid"),
            ],
        )
        .await;
    let (_, location, _) = browser.follow(resp).await;
    let back = at_simulator(&location.expect("to the simulator"), "lan", "cancel").await;
    assert!(back.contains("error=access_denied"), "{back}");
    let (status, _, body) = browser.follow(browser.get(&back).await).await;
    assert_eq!(
        status, 403,
        "the citizen's own cancel is no server error: {body}"
    );
    assert!(body.contains(CANCELLED), "{body}");
    assert!(body.contains("Choose another way to sign in"), "{body}");

    handle.stop(false).await;
}

// ---------------------------------------------------------------------------------------
// panva's oidc-provider as the upstream, in headless Chromium

/// A child process killed on drop.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn oidc_provider_upstream_in_headless_chromium() {
    oidc_provider_upstream(UpstreamAuth::ClientSecret).await;
}

/// The broker authenticates to oidc-provider with a client assertion signed by its own key,
/// which oidc-provider fetches from the broker's `/connectors/idp/jwks`: no shared secret.
/// The client is registered for signed UserInfo too, which the broker requires: the
/// citizen's name and ID number come only from that signed answer.
#[tokio::test]
async fn oidc_provider_upstream_with_private_key_jwt() {
    oidc_provider_upstream(UpstreamAuth::PrivateKeyJwt).await;
}

#[derive(Clone, Copy, PartialEq)]
enum UpstreamAuth {
    ClientSecret,
    PrivateKeyJwt,
}

async fn oidc_provider_upstream(auth: UpstreamAuth) {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/js");
    for package in ["oidc-provider", "openid-client", "playwright-core"] {
        assert!(
            js.join("node_modules").join(package).exists(),
            "tests/js/node_modules/{package} is missing: run `PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci` in tests/js (scripts/test does it)"
        );
    }
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "install Debian's chromium (scripts/test does it)"
    );
    let idp_port = free_port();
    let broker_port = free_port();
    let rp_port = free_port();
    let idp_issuer = format!("http://127.0.0.1:{idp_port}");

    let key_dir = tempfile::tempdir().expect("temp dir");
    let key_file = key_dir.path().join("broker-at-idp.pem");
    let (_, pem_text) = broker::keys::SigningKey::generate("k", broker::keys::SigningAlg::ES256)
        .expect("generate a key");
    std::fs::write(&key_file, pem_text).expect("write the key");
    let mut idp_command = Command::new("node");
    idp_command
        .arg(js.join("upstream-idp.mjs"))
        .env("IDP_PORT", idp_port.to_string())
        .env("CLIENT_ID", UPSTREAM_CLIENT)
        .env(
            "REDIRECT_URI",
            format!("http://127.0.0.1:{broker_port}/callback/idp"),
        );
    let client_auth = match auth {
        UpstreamAuth::ClientSecret => {
            idp_command.env("CLIENT_SECRET", RP_SECRET);
            "client_secret = { env = \"TEST_RP_SECRET\" }".to_string()
        }
        UpstreamAuth::PrivateKeyJwt => {
            idp_command
                .env(
                    "CLIENT_JWKS_URI",
                    format!("http://127.0.0.1:{broker_port}/connectors/idp/jwks"),
                )
                .env("USERINFO_SIGNED_ALG", "RS256");
            format!(
                "auth_method = \"private_key_jwt\"\nprivate_key = {{ file = \"{}\" }}\nprivate_key_alg = \"ES256\"\nuserinfo_signed = true",
                key_file.display()
            )
        }
    };
    let mut child = idp_command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let idp = Node(child);
    let idp_log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    {
        let log = idp_log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("upstream-idp listening") {
                    let _ = ready_tx.send(());
                }
                if let Ok(mut l) = log.lock() {
                    l.push(line);
                }
            }
        });
        let log = idp_log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = log.lock() {
                    l.push(line);
                }
            }
        });
    }
    let idp_text = || idp_log.lock().map(|l| l.join("\n")).unwrap_or_default();
    assert!(
        ready_rx.recv_timeout(Duration::from_secs(30)).is_ok(),
        "oidc-provider did not start within 30 s:\n{}",
        idp_text()
    );

    let extra = format!(
        r#"
[[connectors]]
id = "idp"
type = "oidc"
name = {{ en = "oidc-provider identity app" }}

[connectors.settings]
issuer = "{idp_issuer}"
client_id = "{UPSTREAM_CLIENT}"
{client_auth}
scopes = ["openid", "profile", "cccd"]
acr_values = ["urn:idp:loa:substantial", "urn:idp:loa:high"]
use_userinfo = true
assurance_floor = "low"

[connectors.settings.claims]
citizen_id = "national_id"
citizen_id_proven = true
birthdate = "birth_date"

[connectors.settings.acr_levels]
"urn:idp:loa:substantial" = "substantial"
"urn:idp:loa:high" = "high"

[[clients]]
id = "js-rp"
name = "openid-client platform"
redirect_uris = ["http://127.0.0.1:{rp_port}/callback"]
secret = {{ env = "TEST_RP_SECRET" }}
scopes = ["openid", "profile", "citizen_id"]
"#
    );
    let broker = Broker::start(Options {
        port: Some(broker_port),
        extra,
        ..Options::default()
    });
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let out = tokio::task::spawn_blocking({
        let issuer = broker.issuer.clone();
        let idp_issuer = idp_issuer.clone();
        move || {
            Command::new("node")
                .arg(js.join("upstream-login.mjs"))
                .env("ISSUER", issuer)
                .env("CLIENT_ID", "js-rp")
                .env("CLIENT_SECRET", RP_SECRET)
                .env("RP_PORT", rp_port.to_string())
                .env("CONNECTOR", "idp")
                .env("UPSTREAM_ISSUER", idp_issuer)
                .env("USERNAME", "an")
                .env("PASSWORD", "demo")
                .env("EXPECT_NAME", "Nguyễn Văn An")
                .env("EXPECT_CITIZEN_ID", CCCD)
                .env("EXPECT_BIRTHDATE", "1990-03-15")
                .env("EXPECT_ACR", "http://eidas.europa.eu/LoA/high")
                .env("SCREENSHOT_DIR", shots)
                .output()
                .expect("node must be installed")
        }
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("passed, 0 failed"),
        "oidc-provider/Chromium test failed:\n{stdout}\n{stderr}\nbroker log:\n{}\noidc-provider log:\n{}",
        broker.log_text(),
        idp_text()
    );
    if auth == UpstreamAuth::PrivateKeyJwt {
        // oidc-provider had the broker's public key from the broker itself.
        let log = broker.settled_log_text().await;
        assert!(
            log.lines()
                .any(|l| l.contains("route=/connectors/{id}/jwks") && l.contains("status=200")),
            "oidc-provider never fetched the broker's JWKS:\n{log}"
        );
    }
    drop(idp);
}
