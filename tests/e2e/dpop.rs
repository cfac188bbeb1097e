//! DPoP (RFC 9449) through the real binary: proofs at `/par`, `/token` and `/userinfo`,
//! codes bound to `dpop_jkt`, bound access and refresh tokens, server nonces shared by two
//! instances on one Redis, and the refusals the RFC names, each leaving nothing issued.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use broker::keys::{SigningAlg, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::*;

/// A client's DPoP key.
pub struct DpopKey {
    jwk: Value,
    encoding: jsonwebtoken::EncodingKey,
}

impl DpopKey {
    pub fn new() -> DpopKey {
        let (key, pem) = SigningKey::generate("dpop", SigningAlg::ES256).expect("key");
        let mut jwk = serde_json::to_value(key.jwk()).expect("jwk");
        if let Some(o) = jwk.as_object_mut() {
            for member in ["kid", "alg", "use"] {
                o.remove(member);
            }
        }
        DpopKey {
            jwk,
            encoding: jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).expect("pem"),
        }
    }

    /// RFC 7638 thumbprint, computed here independently of the broker.
    pub fn jkt(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["crv"].as_str().expect("crv"),
            self.jwk["x"].as_str().expect("x"),
            self.jwk["y"].as_str().expect("y")
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    fn sign_claims(&self, claims: &Value) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let mut input = URL_SAFE_NO_PAD.encode(header.to_string());
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &self.encoding,
            jsonwebtoken::Algorithm::ES256,
        )
        .expect("sign");
        format!("{input}.{sig}")
    }

    /// A fresh proof for `method` at `url`, with `iat` shifted by `skew` seconds.
    pub fn proof_at(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        skew: i64,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let mut claims = json!({
            "jti": format!("{:x}", rand::random::<u128>()),
            "htm": method,
            "htu": url,
            "iat": now + skew,
        });
        if let Some(t) = access_token {
            claims["ath"] = URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())).into();
        }
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        self.sign_claims(&claims)
    }

    pub fn proof(&self, method: &str, url: &str) -> String {
        self.proof_at(method, url, None, None, 0)
    }
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub www: Option<String>,
    pub nonce: Option<String>,
}

pub async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    };
    let www = header("www-authenticate");
    let nonce = header("dpop-nonce");
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        body,
        www,
        nonce,
    }
}

/// A token request of `rp-basic` (or of the public client when `client` is `rp-public`).
async fn token(base: &str, client: &str, proof: Option<&str>, form: &[(&str, &str)]) -> Answer {
    let mut req = reqwest::Client::new().post(format!("{base}/token"));
    let mut form: Vec<(&str, &str)> = form.to_vec();
    match client {
        "rp-public" => form.push(("client_id", "rp-public")),
        other => req = req.basic_auth(other, Some(RP_SECRET)),
    }
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    answer(req.form(&form).send().await.expect("token request")).await
}

async fn userinfo(base: &str, authorization: &str, proof: Option<&str>) -> Answer {
    let mut req = reqwest::Client::new()
        .get(format!("{base}/userinfo"))
        .header("Authorization", authorization);
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    answer(req.send().await.expect("userinfo")).await
}

async fn introspect(broker: &Broker, token: &str) -> Value {
    let resp = reqwest::Client::new()
        .post(broker.url("/introspect"))
        .basic_auth("rp-basic", Some(RP_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.expect("introspection json")
}

const CB: &str = "http://localhost:9/cb";

fn start_pair() -> (Broker, Broker) {
    let prefix = format!("dpop-{}:", rand::random::<u64>());
    let extra = r#"
[[clients]]
id = "rp-nonce"
name = "Nonce platform"
redirect_uris = ["http://localhost:9/nonce-cb"]
secret = { env = "TEST_RP_SECRET" }
dpop_bound_access_tokens = true
require_dpop_nonce = true
"#;
    let a = Broker::start(Options {
        redis_prefix: Some(prefix),
        extra: extra.into(),
        ..Options::default()
    });
    let b = a.twin();
    (a, b)
}

#[tokio::test]
async fn dpop_binds_the_code_the_tokens_and_userinfo_to_the_key() {
    let (a, b) = start_pair();
    let key = DpopKey::new();
    let other = DpopKey::new();
    let token_url = format!("{}/token", a.issuer);
    let userinfo_url = format!("{}/userinfo", a.issuer);

    // PAR with a proof: the code will be bound to its key.
    let (verifier, challenge) = pkce();
    let mut form = auth_params("rp-basic", CB, "openid profile", &challenge);
    form.retain(|(k, _)| *k != "client_id");
    let par = answer(
        reqwest::Client::new()
            .post(a.url("/par"))
            .basic_auth("rp-basic", Some(RP_SECRET))
            .header("DPoP", key.proof("POST", &format!("{}/par", a.issuer)))
            .form(&form)
            .send()
            .await
            .expect("par"),
    )
    .await;
    assert_eq!(par.status, 201, "{}", par.body);
    // A proof for another endpoint is refused at PAR.
    let wrong_htu = answer(
        reqwest::Client::new()
            .post(a.url("/par"))
            .basic_auth("rp-basic", Some(RP_SECRET))
            .header("DPoP", key.proof("POST", &token_url))
            .form(&form)
            .send()
            .await
            .expect("par"),
    )
    .await;
    assert_eq!(wrong_htu.status, 400);
    assert_eq!(wrong_htu.body["error"], "invalid_dpop_proof");
    assert!(wrong_htu.body.get("request_uri").is_none());

    let request_uri = par.body["request_uri"].as_str().expect("request_uri");
    let browser = Browser::new(&a);
    let cb = browser
        .login(
            &[("client_id", "rp-basic"), ("request_uri", request_uri)],
            "an",
            "demo",
        )
        .await;
    let code = cb.param("code").expect("code");
    let redeem = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("code_verifier", verifier.as_str()),
    ];

    // Refusals that leave the code usable: another key, no proof, a proof that is wrong.
    let another = token(
        &a.base,
        "rp-basic",
        Some(&other.proof("POST", &token_url)),
        &redeem,
    )
    .await;
    assert_eq!(another.status, 400);
    assert_eq!(another.body["error"], "invalid_grant", "{}", another.body);
    let none = token(&a.base, "rp-basic", None, &redeem).await;
    assert_eq!(none.body["error"], "invalid_grant", "{}", none.body);
    for (why, proof) in [
        ("wrong htm", key.proof("GET", &token_url)),
        ("wrong htu", key.proof("POST", &userinfo_url)),
        (
            "stale iat",
            key.proof_at("POST", &token_url, None, None, -120),
        ),
        (
            "future iat",
            key.proof_at("POST", &token_url, None, None, 60),
        ),
        ("not a JWT", "not-a-proof".to_string()),
    ] {
        let r = token(&a.base, "rp-basic", Some(&proof), &redeem).await;
        assert_eq!(r.status, 400, "{why}");
        assert_eq!(r.body["error"], "invalid_dpop_proof", "{why}: {}", r.body);
        assert!(r.body.get("access_token").is_none(), "{why}");
    }

    // The right key redeems it; the same proof replayed at the twin instance is refused.
    let proof = key.proof("POST", &token_url);
    let tokens = token(&a.base, "rp-basic", Some(&proof), &redeem).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(tokens.body["token_type"], "DPoP");
    let replayed = token(&b.base, "rp-basic", Some(&proof), &redeem).await;
    assert_eq!(replayed.body["error"], "invalid_dpop_proof");
    assert!(
        replayed.body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("already used")),
        "{}",
        replayed.body
    );

    let at = tokens.body["access_token"].as_str().expect("access token");
    let rt = tokens.body["refresh_token"]
        .as_str()
        .expect("refresh token");
    let claims = verify_with_jwks(&a, at, "rp-basic").await;
    assert_eq!(
        claims["cnf"]["jkt"],
        key.jkt(),
        "cnf.jkt is the key's thumbprint"
    );

    // UserInfo: the DPoP scheme with a proof carrying `ath`.
    let ok = userinfo(
        &b.base,
        &format!("DPoP {at}"),
        Some(&key.proof_at("GET", &userinfo_url, Some(at), None, 0)),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body["sub"].is_string());
    let as_bearer = userinfo(&a.base, &format!("Bearer {at}"), None).await;
    assert_eq!(as_bearer.status, 401);
    let www = as_bearer.www.expect("challenge");
    assert!(
        www.starts_with("DPoP ") && www.contains("error=\"invalid_token\""),
        "{www}"
    );
    for (why, proof, expected) in [
        (
            "no ath",
            Some(key.proof("GET", &userinfo_url)),
            "invalid_dpop_proof",
        ),
        (
            "wrong ath",
            Some(key.proof_at("GET", &userinfo_url, Some("another token"), None, 0)),
            "invalid_dpop_proof",
        ),
        ("no proof", None, "invalid_dpop_proof"),
        (
            "another key",
            Some(other.proof_at("GET", &userinfo_url, Some(at), None, 0)),
            "invalid_token",
        ),
    ] {
        let r = userinfo(&a.base, &format!("DPoP {at}"), proof.as_deref()).await;
        assert_eq!(r.status, 401, "{why}");
        assert_eq!(r.body["error"], expected, "{why}");
        let www = r.www.expect("challenge");
        assert!(
            www.starts_with("DPoP ") && www.contains(&format!("error=\"{expected}\"")),
            "{why}: {www}"
        );
        assert!(r.body.get("sub").is_none(), "{why}");
    }
    let anonymous = answer(
        reqwest::get(a.url("/userinfo"))
            .await
            .expect("userinfo without token"),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    let www = anonymous.www.expect("challenge");
    assert!(
        www.contains("Bearer") && www.contains("DPoP algs="),
        "{www}"
    );

    // Introspection reports the binding of both tokens.
    let info = introspect(&a, at).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["token_type"], "DPoP");
    assert_eq!(info["cnf"]["jkt"], key.jkt());
    let info = introspect(&a, rt).await;
    assert_eq!(info["cnf"]["jkt"], key.jkt());

    // The refresh token is bound: without the key it is refused and not rotated.
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", rt)];
    let unbound = token(&a.base, "rp-basic", None, &refresh).await;
    assert_eq!(unbound.body["error"], "invalid_grant", "{}", unbound.body);
    let stolen = token(
        &a.base,
        "rp-basic",
        Some(&other.proof("POST", &token_url)),
        &refresh,
    )
    .await;
    assert_eq!(stolen.body["error"], "invalid_grant", "{}", stolen.body);
    let refreshed = token(
        &b.base,
        "rp-basic",
        Some(&key.proof("POST", &token_url)),
        &refresh,
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(refreshed.body["token_type"], "DPoP");
    let at2 = refreshed.body["access_token"]
        .as_str()
        .expect("access token");
    assert_eq!(payload(at2)["cnf"]["jkt"], key.jkt());
}

#[tokio::test]
async fn a_direct_request_binds_with_dpop_jkt_and_nonces_hold_across_instances() {
    let (a, b) = start_pair();
    let key = DpopKey::new();
    let token_url = format!("{}/token", a.issuer);
    let redirect = "http://localhost:9/nonce-cb";

    let (verifier, challenge) = pkce();
    let jkt = key.jkt();
    let mut params = auth_params("rp-nonce", redirect, "openid", &challenge);
    params.push(("dpop_jkt", &jkt));
    let browser = Browser::new(&a);
    let cb = browser.login(&params, "an", "demo").await;
    let code = cb.param("code").expect("code");
    let redeem = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", verifier.as_str()),
    ];

    // This client must send proofs, with a server nonce.
    let unauth = answer(
        reqwest::Client::new()
            .post(a.url("/token"))
            .basic_auth("rp-nonce", Some(RP_SECRET))
            .form(&redeem)
            .send()
            .await
            .expect("token"),
    )
    .await;
    assert_eq!(unauth.body["error"], "invalid_dpop_proof");
    let post = |proof: String| {
        let base = a.base.clone();
        let form = redeem;
        async move {
            answer(
                reqwest::Client::new()
                    .post(format!("{base}/token"))
                    .basic_auth("rp-nonce", Some(RP_SECRET))
                    .header("DPoP", proof)
                    .form(&form)
                    .send()
                    .await
                    .expect("token"),
            )
            .await
        }
    };
    let first = post(key.proof("POST", &token_url)).await;
    assert_eq!(first.status, 400);
    assert_eq!(first.body["error"], "use_dpop_nonce", "{}", first.body);
    let nonce = first.nonce.expect("DPoP-Nonce header");
    let made_up = post(key.proof_at("POST", &token_url, None, Some("made-up-nonce"), 0)).await;
    assert_eq!(made_up.body["error"], "use_dpop_nonce");
    assert_eq!(made_up.nonce.as_deref(), Some(nonce.as_str()));

    // The nonce one instance issued is good at the other.
    let tokens = answer(
        reqwest::Client::new()
            .post(b.url("/token"))
            .basic_auth("rp-nonce", Some(RP_SECRET))
            .header(
                "DPoP",
                key.proof_at("POST", &token_url, None, Some(&nonce), 0),
            )
            .form(&redeem)
            .send()
            .await
            .expect("token"),
    )
    .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(tokens.body["token_type"], "DPoP");
    let at = tokens.body["access_token"].as_str().expect("at");
    assert_eq!(payload(at)["cnf"]["jkt"], jkt);

    // UserInfo asks for the nonce too, then answers.
    let userinfo_url = format!("{}/userinfo", a.issuer);
    let asked = userinfo(
        &a.base,
        &format!("DPoP {at}"),
        Some(&key.proof_at("GET", &userinfo_url, Some(at), None, 0)),
    )
    .await;
    assert_eq!(asked.status, 401);
    assert!(asked
        .www
        .as_deref()
        .is_some_and(|w| w.contains("error=\"use_dpop_nonce\"")));
    let nonce = asked.nonce.expect("DPoP-Nonce");
    let ok = userinfo(
        &a.base,
        &format!("DPoP {at}"),
        Some(&key.proof_at("GET", &userinfo_url, Some(at), Some(&nonce), 0)),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // A malformed dpop_jkt is refused at /authorize, back to the client.
    let mut bad = auth_params("rp-nonce", redirect, "openid", &challenge);
    bad.push(("dpop_jkt", "not-a-thumbprint"));
    let resp = Browser::new(&a).authorize(&bad).await;
    let location = resp
        .headers()
        .get("location")
        .and_then(|h| h.to_str().ok())
        .expect("redirect to the client")
        .to_string();
    assert!(location.starts_with(redirect) && location.contains("error=invalid_request"));
}

#[tokio::test]
async fn a_public_client_that_uses_dpop_gets_bound_refresh_tokens() {
    let (a, _b) = start_pair();
    let key = DpopKey::new();
    let token_url = format!("{}/token", a.issuer);
    let redirect = "http://localhost:9/public-cb";
    let (verifier, challenge) = pkce();
    let cb = Browser::new(&a)
        .login(
            &auth_params("rp-public", redirect, "openid", &challenge),
            "an",
            "demo",
        )
        .await;
    let code = cb.param("code").expect("code");
    let tokens = token(
        &a.base,
        "rp-public",
        Some(&key.proof("POST", &token_url)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(tokens.body["token_type"], "DPoP");
    let rt = tokens.body["refresh_token"]
        .as_str()
        .expect("refresh token");
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", rt)];
    let stolen = token(&a.base, "rp-public", None, &refresh).await;
    assert_eq!(stolen.body["error"], "invalid_grant", "{}", stolen.body);
    let ok = token(
        &a.base,
        "rp-public",
        Some(&key.proof("POST", &token_url)),
        &refresh,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        payload(ok.body["access_token"].as_str().expect("at"))["cnf"]["jkt"],
        key.jkt()
    );
}

#[tokio::test]
async fn one_proof_sent_concurrently_to_two_instances_is_accepted_once() {
    let (a, b) = start_pair();
    let key = DpopKey::new();
    let token_url = format!("{}/token", a.issuer);
    let (verifier, challenge) = pkce();
    let cb = Browser::new(&a)
        .login(
            &auth_params("rp-basic", CB, "openid", &challenge),
            "an",
            "demo",
        )
        .await;
    let code = cb.param("code").expect("code");
    let tokens = token(
        &a.base,
        "rp-basic",
        Some(&key.proof("POST", &token_url)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let rt = tokens.body["refresh_token"]
        .as_str()
        .expect("rt")
        .to_string();

    // Eight copies of one proof, half to each instance, at once: the replay cache lets one
    // through.
    let proof = key.proof("POST", &token_url);
    let attempts = (0..8).map(|i| {
        let base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let proof = proof.clone();
        let rt = rt.clone();
        async move {
            token(
                &base,
                "rp-basic",
                Some(&proof),
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let accepted = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(accepted, 1, "exactly one use of the proof");
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_eq!(r.body["error"], "invalid_dpop_proof", "{}", r.body);
    }
}
