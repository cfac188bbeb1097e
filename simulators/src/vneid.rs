//! A simulated VNeID: an OpenID Provider like Viet Nam's national identity app, for the
//! broker's demo and tests.
//!
//! It serves discovery, its JWKS (a fresh ES256 key at each start), `/authorize` with a
//! real login page (choose a test citizen, password `demo`, or cancel, which returns
//! `error=access_denied`), `/token` (single-use codes, PKCE S256 required,
//! `client_secret_basic`) and `/userinfo`. Authorization responses carry `iss` (RFC 9207).
//!
//! Like the real app it speaks its own dialect, which the broker's claim mapping has to
//! handle: the citizen ID number is the `cccd` claim (scope `cccd`), birth dates are
//! `DD/MM/YYYY`, phone numbers are in national format, and the level of the account is an
//! `acr` of its own ([`ACR_LEVEL1`], [`ACR_LEVEL2`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `acr` of a level-1 account (registered online, no chip check): the broker maps it to
/// `substantial` in the demo.
pub const ACR_LEVEL1: &str = "urn:vneid:sim:loa:level1";
/// `acr` of a level-2 account (chip-based CCCD and face verified): `high` in the demo.
pub const ACR_LEVEL2: &str = "urn:vneid:sim:loa:level2";
/// The password of every test citizen.
pub const PASSWORD: &str = "demo";

const CODE_TTL: u64 = 60;
const LOGIN_TTL: u64 = 900;
const TOKEN_TTL: u64 = 300;
/// Most pending logins, codes or tokens kept at once (a simulator must not grow forever).
const MAX_ENTRIES: usize = 10_000;

/// A relying party registered at the simulator (the broker).
#[derive(Debug, Clone)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// Its secret, for `client_secret_basic`.
    pub secret: String,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
}

/// A test citizen of the simulator.
#[derive(Debug, Clone)]
pub struct Citizen {
    /// Login name on the simulator's page.
    pub username: &'static str,
    /// The `sub` the simulator gives this citizen.
    pub sub: &'static str,
    /// 12-digit CCCD number.
    pub cccd: &'static str,
    /// Full name.
    pub name: &'static str,
    /// Family name.
    pub family_name: &'static str,
    /// Given name.
    pub given_name: &'static str,
    /// Birth date as VNeID writes it (`DD/MM/YYYY`).
    pub birth_date: &'static str,
    /// Phone number in national format.
    pub phone: &'static str,
    /// Permanent address, as text.
    pub address: &'static str,
    /// Account level: 1 or 2.
    pub level: u8,
}

/// The simulator's test citizens (the same people as the demo's test citizens `an` and
/// `lan`, plus a level-1 account).
pub fn citizens() -> Vec<Citizen> {
    vec![
        Citizen {
            username: "an",
            sub: "vneid-sim-5f1c2a9e-an",
            cccd: "079201001234",
            name: "Nguyễn Văn An",
            family_name: "Nguyễn",
            given_name: "An",
            birth_date: "15/03/1990",
            phone: "0901234567",
            address: "12 Lê Lợi, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh",
            level: 2,
        },
        Citizen {
            username: "lan",
            sub: "vneid-sim-8b3d7e10-lan",
            cccd: "001195006789",
            name: "Trần Thị Lan",
            family_name: "Trần",
            given_name: "Lan",
            birth_date: "02/11/1995",
            phone: "0912345678",
            address: "45 Hàng Bạc, Phường Hàng Bạc, Quận Hoàn Kiếm, Hà Nội",
            level: 2,
        },
        Citizen {
            username: "binh",
            sub: "vneid-sim-c4e9a2f7-binh",
            cccd: "036089004321",
            name: "Lê Văn Bình",
            family_name: "Lê",
            given_name: "Bình",
            birth_date: "20/07/1989",
            phone: "0987654321",
            address: "8 Trần Phú, Phường Lộc Thọ, TP. Nha Trang, Khánh Hòa",
            level: 1,
        },
    ]
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// An authorization request waiting for the citizen.
#[derive(Clone)]
struct PendingLogin {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    scopes: Vec<String>,
    expires: u64,
}

/// An issued code.
#[derive(Clone)]
struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    code_challenge: String,
    scopes: Vec<String>,
    citizen: usize,
    auth_time: u64,
    expires: u64,
}

/// An issued access token.
#[derive(Clone)]
struct TokenGrant {
    scopes: Vec<String>,
    citizen: usize,
    expires: u64,
}

#[derive(Default)]
struct Records {
    logins: HashMap<String, PendingLogin>,
    codes: HashMap<String, CodeGrant>,
    tokens: HashMap<String, TokenGrant>,
}

impl Records {
    fn sweep(&mut self, now: u64) {
        self.logins.retain(|_, v| v.expires > now);
        self.codes.retain(|_, v| v.expires > now);
        self.tokens.retain(|_, v| v.expires > now);
    }

    fn full(&self) -> bool {
        self.logins.len() >= MAX_ENTRIES
            || self.codes.len() >= MAX_ENTRIES
            || self.tokens.len() >= MAX_ENTRIES
    }
}

struct Provider {
    issuer: String,
    clients: Vec<Client>,
    citizens: Vec<Citizen>,
    kid: String,
    key: EncodingKey,
    jwks: Value,
    records: Mutex<Records>,
}

impl Provider {
    fn new(issuer: &str, clients: Vec<Client>) -> Result<Self, String> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|e| format!("key generation: {e}"))?;
        let der = pair
            .to_pkcs8v1()
            .map_err(|e| format!("key encoding: {e}"))?;
        let key = EncodingKey::from_ec_der(der.as_ref());
        let kid = format!("vneid-sim-{}", &random_token(6));
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)
            .map_err(|e| format!("public key: {e}"))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
        let jwks = json!({ "keys": [jwk] });
        Ok(Provider {
            issuer: issuer.trim_end_matches('/').to_string(),
            clients,
            citizens: citizens(),
            kid,
            key,
            jwks,
            records: Mutex::new(Records::default()),
        })
    }

    fn client(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == id)
    }

    fn metadata(&self) -> Value {
        let i = &self.issuer;
        json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/authorize"),
            "token_endpoint": format!("{i}/token"),
            "userinfo_endpoint": format!("{i}/userinfo"),
            "jwks_uri": format!("{i}/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "phone", "address", "cccd"],
            "claims_supported": ["sub", "name", "family_name", "given_name", "birthdate",
                                 "phone_number", "address", "cccd", "acr", "amr"],
            "acr_values_supported": [ACR_LEVEL1, ACR_LEVEL2],
            "ui_locales_supported": ["vi", "en"],
            "authorization_response_iss_parameter_supported": true
        })
    }

    /// Claims of `citizen` for the granted scopes.
    fn claims(&self, citizen: &Citizen, scopes: &[String]) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        out.insert("sub".into(), citizen.sub.into());
        let has = |s: &str| scopes.iter().any(|x| x == s);
        if has("profile") {
            out.insert("name".into(), citizen.name.into());
            out.insert("family_name".into(), citizen.family_name.into());
            out.insert("given_name".into(), citizen.given_name.into());
            out.insert("birthdate".into(), citizen.birth_date.into());
        }
        if has("phone") {
            out.insert("phone_number".into(), citizen.phone.into());
        }
        if has("address") {
            out.insert("address".into(), citizen.address.into());
        }
        if has("cccd") {
            out.insert("cccd".into(), citizen.cccd.into());
        }
        out
    }
}

/// Parses a query or form body; a repeated parameter is an error.
fn params(text: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(text) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!("parameter `{k}` is repeated"));
        }
    }
    Ok(out)
}

fn page(status: u16, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .content_type("text/html; charset=utf-8")
    .insert_header((header::CACHE_CONTROL, "no-store"))
    .insert_header((
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; frame-ancestors 'none'",
    ))
    .insert_header((header::X_FRAME_OPTIONS, "DENY"))
    .insert_header((header::REFERRER_POLICY, "no-referrer"))
    .body(format!(
        "<!doctype html><html lang=vi><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>\
         body{{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}}\
         header{{background:#c8102e;color:#fff;padding:1rem 1.5rem;font-weight:600}}\
         main{{max-width:28rem;margin:2rem auto;background:#fff;padding:1.5rem 2rem;border-radius:10px;box-shadow:0 1px 4px #0002}}\
         label{{display:block;margin:.4rem 0}}input[type=password]{{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}}\
         button{{padding:.6rem 1.2rem;font-size:1rem;border-radius:6px;border:0;margin:.8rem .5rem 0 0;cursor:pointer}}\
         #login{{background:#c8102e;color:#fff}}#cancel{{background:#e3e5e8}}\
         .problem{{color:#a00;font-weight:600}}small{{color:#555}}</style></head>\
         <body><header>VNeID (mô phỏng / simulated)</header><main><h1>{title}</h1>{body}</main></body></html>"
    ))
}

fn error_page(message: &str) -> HttpResponse {
    page(
        400,
        "Yêu cầu không hợp lệ",
        &format!(
            "<p id=error>{}</p><p><small>Invalid request: the simulator does not redirect to an unknown client.</small></p>",
            html_escape(message)
        ),
    )
}

/// Builds `redirect_uri` with the response parameters, `state` and `iss`.
fn redirect(
    issuer: &str,
    redirect_uri: &str,
    state: Option<&str>,
    params: &[(&str, &str)],
) -> HttpResponse {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page("redirect_uri is not a URL");
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, url.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn login_page(p: &Provider, login: &str, problem: Option<&str>) -> HttpResponse {
    let mut choices = String::new();
    for (i, c) in p.citizens.iter().enumerate() {
        choices.push_str(&format!(
            "<label><input type=radio name=username id=citizen-{u} value={u}{checked}> \
             {name} <small>· CCCD {cccd} · mức {level}</small></label>",
            u = html_escape(c.username),
            checked = if i == 0 { " checked" } else { "" },
            name = html_escape(c.name),
            cccd = html_escape(c.cccd),
            level = c.level,
        ));
    }
    let problem = problem
        .map(|m| format!("<p class=problem id=problem>{}</p>", html_escape(m)))
        .unwrap_or_default();
    page(
        200,
        "Đăng nhập bằng tài khoản định danh điện tử",
        &format!(
            "<p><small>Test citizens only · password / mật khẩu: <code>{PASSWORD}</code></small></p>{problem}\
             <form method=post action=\"{issuer}/authorize/login\">\
             <input type=hidden name=login value=\"{login}\">\
             <fieldset><legend>Công dân thử nghiệm / test citizen</legend>{choices}</fieldset>\
             <label for=password>Mật khẩu / password</label>\
             <input type=password id=password name=password autocomplete=current-password>\
             <button type=submit id=login name=action value=login>Đăng nhập</button>\
             <button type=submit id=cancel name=action value=cancel formnovalidate>Hủy / Cancel</button>\
             </form>",
            issuer = html_escape(&p.issuer),
            login = html_escape(login),
        ),
    )
}

async fn discovery(p: web::Data<Provider>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .json(p.metadata())
}

async fn jwks(p: web::Data<Provider>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .json(&p.jwks)
}

/// `GET /authorize`
async fn authorize(req: HttpRequest, p: web::Data<Provider>) -> HttpResponse {
    let q = match params(req.query_string().as_bytes()) {
        Ok(q) => q,
        Err(e) => return error_page(&e),
    };
    let get = |k: &str| q.get(k).map(String::as_str);
    let Some(client) = get("client_id").and_then(|id| p.client(id)) else {
        return error_page("unknown client_id");
    };
    let Some(redirect_uri) =
        get("redirect_uri").filter(|r| client.redirect_uris.iter().any(|u| u == r))
    else {
        return error_page("redirect_uri is not registered for this client");
    };
    let state = get("state");
    let fail = |error: &str, description: &str| {
        redirect(
            &p.issuer,
            redirect_uri,
            state,
            &[("error", error), ("error_description", description)],
        )
    };
    if get("response_type") != Some("code") {
        return fail("unsupported_response_type", "only response_type=code");
    }
    let scopes: Vec<String> = get("scope")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if !scopes.iter().any(|s| s == "openid") {
        return fail("invalid_scope", "scope must contain openid");
    }
    let challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (Some(c), Some("S256")) if (43..=128).contains(&c.len()) => c.to_string(),
        _ => return fail("invalid_request", "PKCE with S256 is required"),
    };
    let login = random_token(18);
    let t = now();
    {
        let Ok(mut records) = p.records.lock() else {
            return fail("server_error", "state unavailable");
        };
        records.sweep(t);
        if records.full() {
            return fail("temporarily_unavailable", "too many pending logins");
        }
        records.logins.insert(
            login.clone(),
            PendingLogin {
                client_id: client.id.clone(),
                redirect_uri: redirect_uri.to_string(),
                state: state.map(str::to_string),
                nonce: get("nonce").map(str::to_string),
                code_challenge: challenge,
                scopes,
                expires: t + LOGIN_TTL,
            },
        );
    }
    login_page(&p, &login, None)
}

/// `POST /authorize/login`: the login form.
async fn login(p: web::Data<Provider>, body: web::Bytes) -> HttpResponse {
    let form = match params(&body) {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let login_id = form.get("login").cloned().unwrap_or_default();
    let t = now();
    let pending = p.records.lock().ok().and_then(|mut r| {
        r.sweep(t);
        r.logins.get(&login_id).cloned()
    });
    let Some(pending) = pending else {
        return error_page("this login has expired; start again from the service");
    };
    let finish = |r: &mut Records| {
        r.logins.remove(&login_id);
    };
    if form.get("action").map(String::as_str) == Some("cancel") {
        if let Ok(mut r) = p.records.lock() {
            finish(&mut r);
        }
        return redirect(
            &p.issuer,
            &pending.redirect_uri,
            pending.state.as_deref(),
            &[
                ("error", "access_denied"),
                ("error_description", "the citizen cancelled"),
            ],
        );
    }
    let username = form.get("username").map(String::as_str).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    let found = p.citizens.iter().position(|c| c.username == username);
    let password_ok: bool = password.as_bytes().ct_eq(PASSWORD.as_bytes()).into();
    let Some(citizen) = found.filter(|_| password_ok) else {
        return login_page(
            &p,
            &login_id,
            Some("Mật khẩu không đúng. / Wrong password."),
        );
    };
    let code = random_token(24);
    {
        let Ok(mut r) = p.records.lock() else {
            return error_page("state unavailable");
        };
        finish(&mut r);
        r.codes.insert(
            code.clone(),
            CodeGrant {
                client_id: pending.client_id.clone(),
                redirect_uri: pending.redirect_uri.clone(),
                nonce: pending.nonce.clone(),
                code_challenge: pending.code_challenge.clone(),
                scopes: pending.scopes.clone(),
                citizen,
                auth_time: t,
                expires: t + CODE_TTL,
            },
        );
    }
    redirect(
        &p.issuer,
        &pending.redirect_uri,
        pending.state.as_deref(),
        &[("code", &code)],
    )
}

fn oauth_error(status: u16, error: &str, description: &str) -> HttpResponse {
    let mut r = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    );
    r.insert_header((header::CACHE_CONTROL, "no-store"));
    if status == 401 {
        r.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"vneid-sim\""));
    }
    r.json(json!({ "error": error, "error_description": description }))
}

/// `client_secret_basic` (RFC 6749 2.3.1: both parts form-urlencoded, then Base64).
fn basic_auth(req: &HttpRequest) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// `POST /token`
async fn token(req: HttpRequest, p: web::Data<Provider>, body: web::Bytes) -> HttpResponse {
    let form = match params(&body) {
        Ok(f) => f,
        Err(e) => return oauth_error(400, "invalid_request", &e),
    };
    let Some((client_id, secret)) = basic_auth(&req) else {
        return oauth_error(401, "invalid_client", "client_secret_basic is required");
    };
    let Some(client) = p.client(&client_id) else {
        return oauth_error(401, "invalid_client", "unknown client");
    };
    let secret_ok: bool = client.secret.as_bytes().ct_eq(secret.as_bytes()).into();
    if !secret_ok {
        return oauth_error(401, "invalid_client", "wrong client secret");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error(400, "unsupported_grant_type", "authorization_code only");
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let t = now();
    // Single use: the code is removed whatever happens next.
    let grant = p.records.lock().ok().and_then(|mut r| {
        r.sweep(t);
        r.codes.remove(&code)
    });
    let Some(grant) = grant else {
        return oauth_error(400, "invalid_grant", "unknown, expired or used code");
    };
    if grant.client_id != client.id {
        return oauth_error(400, "invalid_grant", "code issued to another client");
    }
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return oauth_error(400, "invalid_grant", "redirect_uri differs");
    }
    let verifier = form.get("code_verifier").map(String::as_str).unwrap_or("");
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let pkce_ok: bool = challenge
        .as_bytes()
        .ct_eq(grant.code_challenge.as_bytes())
        .into();
    if !(43..=128).contains(&verifier.len()) || !pkce_ok {
        return oauth_error(400, "invalid_grant", "PKCE verification failed");
    }
    let Some(citizen) = p.citizens.get(grant.citizen) else {
        return oauth_error(400, "invalid_grant", "unknown account");
    };
    let access_token = random_token(32);
    let at_hash = {
        let digest = Sha256::digest(access_token.as_bytes());
        URL_SAFE_NO_PAD.encode(&digest[..16])
    };
    let mut claims = p.claims(citizen, &grant.scopes);
    let (acr, amr) = if citizen.level >= 2 {
        (ACR_LEVEL2, json!(["pwd", "face", "hwk"]))
    } else {
        (ACR_LEVEL1, json!(["pwd"]))
    };
    for (k, v) in [
        ("iss", json!(p.issuer)),
        ("aud", json!(client.id)),
        ("azp", json!(client.id)),
        ("iat", json!(t)),
        ("exp", json!(t + TOKEN_TTL)),
        ("auth_time", json!(grant.auth_time)),
        ("acr", json!(acr)),
        ("amr", amr),
        ("at_hash", json!(at_hash)),
    ] {
        claims.insert(k.into(), v);
    }
    if let Some(n) = &grant.nonce {
        claims.insert("nonce".into(), json!(n));
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(p.kid.clone());
    header.typ = Some("JWT".into());
    let id_token = match jsonwebtoken::encode(&header, &claims, &p.key) {
        Ok(t) => t,
        Err(_) => return oauth_error(500, "server_error", "signing failed"),
    };
    if let Ok(mut r) = p.records.lock() {
        r.tokens.insert(
            access_token.clone(),
            TokenGrant {
                scopes: grant.scopes.clone(),
                citizen: grant.citizen,
                expires: t + TOKEN_TTL,
            },
        );
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL,
            "id_token": id_token,
            "scope": grant.scopes.join(" "),
        }))
}

/// `GET, POST /userinfo`
async fn userinfo(req: HttpRequest, p: web::Data<Provider>) -> HttpResponse {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim()
        .to_string();
    let t = now();
    let grant = p.records.lock().ok().and_then(|mut r| {
        r.sweep(t);
        r.tokens.get(&token).cloned()
    });
    let Some(grant) = grant.filter(|_| !token.is_empty()) else {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""))
            .finish();
    };
    let Some(citizen) = p.citizens.get(grant.citizen) else {
        return HttpResponse::Unauthorized().finish();
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Value::Object(p.claims(citizen, &grant.scopes)))
}

/// Binds the simulator to `addr` (such as `127.0.0.1:8082`) with `public_base_url` as its
/// issuer, and returns the server, which runs when awaited or spawned. Each start has a
/// fresh signing key.
pub fn serve(
    addr: &str,
    public_base_url: &str,
    clients: Vec<Client>,
) -> std::io::Result<actix_web::dev::Server> {
    let provider = Provider::new(public_base_url, clients).map_err(std::io::Error::other)?;
    let provider = web::Data::new(provider);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(provider.clone())
            .app_data(web::PayloadConfig::new(16 * 1024))
            .route(
                "/.well-known/openid-configuration",
                web::get().to(discovery),
            )
            .route("/jwks", web::get().to(jwks))
            .route("/authorize", web::get().to(authorize))
            .route("/authorize/login", web::post().to(login))
            .route("/token", web::post().to(token))
            .route("/userinfo", web::get().to(userinfo))
            .route("/userinfo", web::post().to(userinfo))
    })
    .workers(1)
    .bind(addr)?
    .run();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citizens_have_12_digit_cccd_numbers_and_distinct_names() {
        let all = citizens();
        assert!(all.len() >= 3);
        for c in &all {
            assert_eq!(c.cccd.len(), 12, "{}", c.username);
            assert!(c.cccd.chars().all(|d| d.is_ascii_digit()));
        }
        assert!(all
            .iter()
            .any(|c| c.username == "an" && c.cccd == "079201001234"));
        assert!(all
            .iter()
            .any(|c| c.username == "lan" && c.cccd == "001195006789"));
    }

    #[test]
    fn basic_auth_is_form_urlencoded_then_base64() {
        let req = actix_web::test::TestRequest::default()
            .insert_header((
                header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode("broker%3Ademo:s%2Bcret")),
            ))
            .to_http_request();
        assert_eq!(
            basic_auth(&req),
            Some(("broker:demo".to_string(), "s+cret".to_string()))
        );
    }

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(params(b"a=1&a=2").is_err());
        assert_eq!(
            params(b"a=1&b=x+y").ok().and_then(|m| m.get("b").cloned()),
            Some("x y".to_string())
        );
    }
}
