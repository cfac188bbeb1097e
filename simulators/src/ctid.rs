//! A simulated CTID service (network identity credential with face verification), speaking
//! the contract of the broker's `ctid` connector, with a page that stands for the phone
//! app.
//!
//! * `POST /auth/start` with `{"client_id", "request_id"}` → `{"auth_id", "qr_content",
//!   "app_link", "expires_in"}`;
//! * `GET /auth/{auth_id}` → `{"status": "pending" | "scanned" | "approved" | "rejected" |
//!   "expired" | "cancelled"}`, with `"result"` (a JWS signed with the service's key, published at
//!   `GET /jwks`) once approved;
//! * `POST /auth/{auth_id}/cancel` → `{"status": "cancelled"}`: the broker withdraws a
//!   request the citizen left (`409` once finished, `404` unknown);
//! * `GET /app/{auth_id}` — "the phone app": opening it (scanning the QR code or following
//!   the app link) marks the request scanned; it lets a test citizen approve with "face
//!   verification" or reject;
//! * `POST /control/expire` with `{"auth_id"}` — ends a request's validity now (tests);
//! * when the start request gave a `notify_url`, every change (scanned, approved, rejected,
//!   expired) is also pushed there as `{"notification": "<JWS>"}`, the JWS carrying `iss`,
//!   `aud`, `auth_id`, `status`, `iat`, `exp` (and the result claims once approved).
//!
//! Results: `iss` (the public URL), `aud` (the client id), `auth_id`, `sub`,
//! `citizen_id`, `name`, `birthdate`, `face_verified`, `iat`, `exp` (5 minutes).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::people::{people, person};

/// Seconds a request stays valid.
pub const REQUEST_TTL: u64 = 300;
const MAX_REQUESTS: usize = 10_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Scanned,
    Approved,
    Rejected,
    Cancelled,
}

struct Request {
    client_id: String,
    notify_url: Option<String>,
    status: Status,
    citizen: Option<&'static str>,
    forged: bool,
    expires: u64,
}

struct Service {
    public: String,
    api_key: Option<String>,
    kid: String,
    key: EncodingKey,
    jwks: Value,
    requests: Mutex<HashMap<String, Request>>,
    http: reqwest::Client,
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn new_key() -> Result<(EncodingKey, Jwk), String> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|e| format!("key generation: {e}"))?;
    let der = pair
        .to_pkcs8v1()
        .map_err(|e| format!("key encoding: {e}"))?;
    let key = EncodingKey::from_ec_der(der.as_ref());
    let jwk =
        Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(|e| format!("public key: {e}"))?;
    Ok((key, jwk))
}

impl Service {
    fn new(public: &str, api_key: Option<String>) -> Result<Self, String> {
        let (key, mut jwk) = new_key()?;
        let kid = format!("ctid-sim-{}", random_token(6));
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
        Ok(Service {
            public: public.trim_end_matches('/').to_string(),
            api_key,
            kid,
            key,
            jwks: json!({ "keys": [jwk] }),
            requests: Mutex::new(HashMap::new()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .map_err(|e| format!("HTTP client: {e}"))?,
        })
    }

    fn authorised(&self, req: &HttpRequest) -> bool {
        let Some(key) = &self.api_key else {
            return true;
        };
        req.headers()
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(key.as_bytes())))
    }

    fn result(&self, auth_id: &str, r: &Request) -> Option<String> {
        let p = person(r.citizen?)?;
        let t = now();
        let claims = json!({
            "iss": self.public,
            "aud": r.client_id,
            "auth_id": auth_id,
            "status": "approved",
            "sub": format!("ctid-{}", &URL_SAFE_NO_PAD.encode(p.key.as_bytes())),
            "citizen_id": p.citizen_id,
            "name": p.name,
            "birthdate": p.birthdate,
            "face_verified": true,
            "iat": t,
            "exp": t + 300,
        });
        self.sign(&claims, r.forged)
    }

    /// Pushes the request's new status to its `notify_url`, if it gave one.
    fn push(&self, auth_id: &str, r: &Request, status: &str) {
        let Some(url) = r.notify_url.clone() else {
            return;
        };
        let token = if status == "approved" {
            self.result(auth_id, r)
        } else {
            let t = now();
            self.sign(
                &json!({
                    "iss": self.public,
                    "aud": r.client_id,
                    "auth_id": auth_id,
                    "status": status,
                    "iat": t,
                    "exp": t + 300,
                }),
                r.forged,
            )
        };
        let Some(token) = token else { return };
        let http = self.http.clone();
        actix_web::rt::spawn(async move {
            let _ = http
                .post(url)
                .json(&json!({ "notification": token }))
                .send()
                .await;
        });
    }

    fn sign(&self, claims: &Value, forged: bool) -> Option<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        if forged {
            // Signed with a key nobody published, under the real key id.
            let (other, _) = new_key().ok()?;
            return jsonwebtoken::encode(&header, claims, &other).ok();
        }
        jsonwebtoken::encode(&header, claims, &self.key).ok()
    }
}

#[derive(Deserialize)]
struct Start {
    client_id: String,
    #[serde(default)]
    notify_url: Option<String>,
    #[allow(dead_code)]
    #[serde(default)]
    request_id: String,
}

async fn start(req: HttpRequest, s: web::Data<Service>, body: web::Bytes) -> HttpResponse {
    if !s.authorised(&req) {
        return HttpResponse::Unauthorized().json(json!({"error": "unauthorized"}));
    }
    let Ok(b) = serde_json::from_slice::<Start>(&body) else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_request"}));
    };
    let id = random_token(18);
    let Ok(mut all) = s.requests.lock() else {
        return HttpResponse::ServiceUnavailable().json(json!({"error": "busy"}));
    };
    let t = now();
    all.retain(|_, r| r.expires + 600 > t);
    if all.len() >= MAX_REQUESTS {
        return HttpResponse::ServiceUnavailable().json(json!({"error": "busy"}));
    }
    all.insert(
        id.clone(),
        Request {
            client_id: b.client_id,
            notify_url: b.notify_url,
            status: Status::Pending,
            citizen: None,
            forged: false,
            expires: t + REQUEST_TTL,
        },
    );
    HttpResponse::Ok().json(json!({
        "auth_id": id,
        "qr_content": format!("{}/app/{id}", s.public),
        "app_link": format!("{}/app/{id}?via=link", s.public),
        "expires_in": REQUEST_TTL,
    }))
}

async fn status(req: HttpRequest, s: web::Data<Service>, path: web::Path<String>) -> HttpResponse {
    if !s.authorised(&req) {
        return HttpResponse::Unauthorized().json(json!({"error": "unauthorized"}));
    }
    let Ok(all) = s.requests.lock() else {
        return HttpResponse::ServiceUnavailable().json(json!({"error": "busy"}));
    };
    let Some(r) = all.get(path.as_str()) else {
        return HttpResponse::NotFound().json(json!({"error": "unknown_auth_id"}));
    };
    let body = match r.status {
        _ if r.expires <= now() && r.status != Status::Approved => json!({"status": "expired"}),
        Status::Pending => json!({"status": "pending"}),
        Status::Scanned => json!({"status": "scanned"}),
        Status::Rejected => json!({"status": "rejected"}),
        Status::Cancelled => json!({"status": "cancelled"}),
        Status::Approved => match s.result(&path, r) {
            Some(jws) => json!({"status": "approved", "result": jws}),
            None => return HttpResponse::InternalServerError().json(json!({"error": "signing"})),
        },
    };
    HttpResponse::Ok().json(body)
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!(
            "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\">\
             <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:1rem auto;padding:1rem;border:8px solid #222;border-radius:24px}}\
             button{{padding:.6rem 1rem;margin:.3rem 0;font-size:1rem}}.ok{{background:#1a7f37;color:#fff;border:0;border-radius:6px}}</style></head>\
             <body><h1>{title}</h1>{body}</body></html>"
        ))
}

async fn app(s: web::Data<Service>, path: web::Path<String>) -> HttpResponse {
    let id = path.into_inner();
    let Ok(mut all) = s.requests.lock() else {
        return page("CTID (simulated app)", "<p>Busy, try again.</p>");
    };
    let Some(r) = all.get_mut(&id) else {
        return page(
            "CTID (simulated app)",
            "<p id=unknown>Unknown or finished request.</p>",
        );
    };
    if r.expires <= now() {
        return page(
            "CTID (simulated app)",
            "<p id=expired>This request has expired.</p>",
        );
    }
    if r.status == Status::Cancelled {
        return page(
            "CTID (simulated app)",
            "<p id=cancelled>The sign-in was cancelled on the other device.</p>",
        );
    }
    if r.status != Status::Pending && r.status != Status::Scanned {
        return page(
            "CTID (simulated app)",
            "<p id=finished>This request is finished.</p>",
        );
    }
    if r.status == Status::Pending {
        r.status = Status::Scanned;
        s.push(&id, r, "scanned");
    }
    let options: String = people()
        .iter()
        .map(|p| {
            format!(
                "<option value=\"{}\">{} ({})</option>",
                p.key,
                escape(p.name),
                p.key
            )
        })
        .collect();
    page(
        "CTID (simulated app)",
        &format!(
            "<p>This page stands for the CTID app on the citizen's phone. <strong>{}</strong> asks to confirm your identity.</p>\
             <form method=post action=\"/app/{id}/approve\"><label>Citizen <select name=citizen id=citizen>{options}</select></label><br>\
             <button class=ok id=approve>Verify my face and approve</button></form>\
             <form method=post action=\"/app/{id}/reject\"><button id=reject>Reject</button></form>",
            escape(&r.client_id)
        ),
    )
}

#[derive(Deserialize)]
struct Approve {
    citizen: String,
    /// Tests only: sign the result with an unpublished key.
    #[serde(default)]
    forge: Option<String>,
}

async fn approve(
    s: web::Data<Service>,
    path: web::Path<String>,
    form: web::Form<Approve>,
) -> HttpResponse {
    let Some(p) = person(&form.citizen) else {
        return page("CTID (simulated app)", "<p>Unknown citizen.</p>");
    };
    decide(
        &s,
        &path,
        Status::Approved,
        Some(p.key),
        form.forge.is_some(),
    )
}

async fn reject(s: web::Data<Service>, path: web::Path<String>) -> HttpResponse {
    decide(&s, &path, Status::Rejected, None, false)
}

fn decide(
    s: &Service,
    id: &str,
    status: Status,
    citizen: Option<&'static str>,
    forged: bool,
) -> HttpResponse {
    let Ok(mut all) = s.requests.lock() else {
        return page("CTID (simulated app)", "<p>Busy, try again.</p>");
    };
    match all.get_mut(id) {
        Some(r) if r.expires > now() && matches!(r.status, Status::Pending | Status::Scanned) => {
            r.status = status;
            r.citizen = citizen;
            r.forged = forged;
            let name = if status == Status::Approved {
                "approved"
            } else {
                "rejected"
            };
            s.push(id, r, name);
            let text = if status == Status::Approved {
                "<p id=done>Face verified. You can go back to your computer: the sign-in continues there.</p>"
            } else {
                "<p id=done>You rejected the request. Nothing was shared.</p>"
            };
            page("CTID (simulated app)", text)
        }
        _ => page(
            "CTID (simulated app)",
            "<p id=finished>This request is finished or expired.</p>",
        ),
    }
}

/// `POST /auth/{auth_id}/cancel`: the relying party withdraws a request the citizen left.
async fn cancel(req: HttpRequest, s: web::Data<Service>, path: web::Path<String>) -> HttpResponse {
    if !s.authorised(&req) {
        return HttpResponse::Unauthorized().json(json!({"error": "unauthorized"}));
    }
    let Ok(mut all) = s.requests.lock() else {
        return HttpResponse::ServiceUnavailable().json(json!({"error": "busy"}));
    };
    let Some(r) = all.get_mut(path.as_str()) else {
        return HttpResponse::NotFound().json(json!({"error": "unknown_auth_id"}));
    };
    if r.expires > now() && matches!(r.status, Status::Pending | Status::Scanned) {
        r.status = Status::Cancelled;
        s.push(&path, r, "cancelled");
        return HttpResponse::Ok().json(json!({"status": "cancelled"}));
    }
    HttpResponse::Conflict().json(json!({"error": "finished"}))
}

#[derive(Deserialize)]
struct Expire {
    auth_id: String,
}

async fn expire(s: web::Data<Service>, body: web::Json<Expire>) -> HttpResponse {
    if let Ok(mut all) = s.requests.lock() {
        if let Some(r) = all.get_mut(&body.auth_id) {
            r.expires = now().saturating_sub(1);
            s.push(&body.auth_id, r, "expired");
        }
    }
    HttpResponse::NoContent().finish()
}

async fn jwks(s: web::Data<Service>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .json(&s.jwks)
}

/// Serves the simulated CTID service on `addr`, reachable at `public_url` (its `iss`).
pub fn serve(
    addr: &str,
    public_url: &str,
    api_key: Option<String>,
) -> std::io::Result<actix_web::dev::Server> {
    let service = web::Data::new(Service::new(public_url, api_key).map_err(std::io::Error::other)?);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(service.clone())
            .app_data(web::PayloadConfig::new(16 * 1024))
            .route("/auth/start", web::post().to(start))
            .route("/auth/{id}", web::get().to(status))
            .route("/auth/{id}/cancel", web::post().to(cancel))
            .route("/app/{id}", web::get().to(app))
            .route("/app/{id}/approve", web::post().to(approve))
            .route("/app/{id}/reject", web::post().to(reject))
            .route("/control/expire", web::post().to(expire))
            .route("/jwks", web::get().to(jwks))
    })
    .workers(1)
    .bind(addr)?
    .run())
}
