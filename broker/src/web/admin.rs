//! The admin API (off unless `admin.token` is configured): connectors and clients with
//! their health, and maintenance switches. Bearer-token protected; every change is written
//! to the audit log; responses never hold secrets.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{ClientAuth, LocalizedText};
use crate::maintenance;
use std::time::Duration;

use crate::keyspace;
use crate::util::ct_eq;
use crate::web::extract::client_address;
use crate::web::state::AppState;

/// Registers the admin routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/connectors", web::get().to(connectors))
        .route("/admin/clients", web::get().to(clients))
        .route(
            "/admin/connectors/{id}/maintenance",
            web::put().to(put_maintenance),
        )
        .route(
            "/admin/connectors/{id}/maintenance",
            web::delete().to(end_maintenance),
        )
        .route(
            "/admin/connectors/{id}/parts/{part}/maintenance",
            web::put().to(put_part_maintenance),
        )
        .route(
            "/admin/connectors/{id}/parts/{part}/maintenance",
            web::delete().to(end_part_maintenance),
        )
        .configure(crate::web::review::routes);
}

/// Why an admin call is refused.
#[derive(Debug)]
pub(crate) enum Refused {
    /// No admin token is configured: there is no admin API.
    Off,
    /// A wrong or missing token.
    Token,
    /// Too many calls, or too many wrong tokens, from this address: wait this many seconds.
    TooMany(u64),
    /// The store that counts attempts cannot be reached.
    Unavailable,
}

impl From<Refused> for HttpResponse {
    fn from(r: Refused) -> HttpResponse {
        match r {
            Refused::Off => HttpResponse::NotFound().json(serde_json::json!({"error": "not_found", "error_description": "the admin API is not configured"})),
            Refused::Token => HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"broker-admin\""))
                .json(serde_json::json!({"error": "invalid_token"})),
            Refused::TooMany(secs) => HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, secs.to_string()))
                .json(serde_json::json!({"error": "too_many_requests", "error_description": "too many admin calls or wrong tokens from this address"})),
            Refused::Unavailable => HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "5"))
                .json(serde_json::json!({"error": "temporarily_unavailable"})),
        }
    }
}

/// Admin calls per address and minute, counted before the token is checked: parallel
/// guesses that all pass the block below before any is counted are bounded by this.
const CALLS_PER_MINUTE: u64 = 120;
/// Wrong tokens per address in 15 minutes; then the address is refused until the window
/// ends, whatever token it sends.
const WRONG_TOKENS: u64 = 10;
const WRONG_TOKEN_WINDOW: Duration = Duration::from_secs(900);

/// Checks the bearer token; a broker without an admin token has no admin API at all.
/// Calls and wrong tokens are counted per address (keyed-hashed in the store).
pub(crate) async fn check(req: &HttpRequest, state: &AppState) -> Result<(), Refused> {
    let settings = state.settings();
    let Some(expected) = settings.admin_token else {
        return Err(Refused::Off);
    };
    let address = keyspace::address(
        &settings.pairwise_secret,
        &client_address(req, settings.trust_forwarded_for),
    );
    let store = state.store.as_ref();
    let now = state.now();
    let unavailable = |e: store::StoreError| {
        tracing::error!(error = %e, "store failure while checking an admin token");
        Refused::Unavailable
    };
    let calls = store
        .hit_rate_limit(
            &keyspace::admin_calls_limit(&address),
            CALLS_PER_MINUTE,
            Duration::from_secs(60),
            now,
        )
        .await
        .map_err(unavailable)?;
    if !calls.allowed {
        return Err(Refused::TooMany(calls.retry_after.as_secs().max(1)));
    }
    let blocked = keyspace::admin_blocked(&address);
    if store
        .get(&blocked, now)
        .await
        .map_err(unavailable)?
        .is_some()
    {
        return Err(Refused::TooMany(WRONG_TOKEN_WINDOW.as_secs()));
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    match presented {
        Some(t) if ct_eq(&Sha256::digest(t.as_bytes()), &expected) => Ok(()),
        _ => {
            tracing::warn!(target: "audit", event = "admin.denied", "admin API call with a wrong or missing token");
            let wrong = store
                .hit_rate_limit(
                    &keyspace::admin_wrong_token_limit(&address),
                    WRONG_TOKENS,
                    WRONG_TOKEN_WINDOW,
                    now,
                )
                .await
                .map_err(unavailable)?;
            if !wrong.allowed {
                let wait = wrong.retry_after.max(Duration::from_secs(1));
                store
                    .put(&blocked, b"1", Some(wait), now)
                    .await
                    .map_err(unavailable)?;
                metrics::counter!("broker_rate_limited_total", "scope" => "admin_token")
                    .increment(1);
                return Err(Refused::TooMany(wait.as_secs()));
            }
            Err(Refused::Token)
        }
    }
}

async fn connectors(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(r) = check(&req, &state).await {
        return r.into();
    }
    let settings = state.settings();
    let m = match maintenance::load(state.records.as_ref()).await {
        Ok(m) => m,
        Err(e) => {
            return HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"error": e.to_string()}))
        }
    };
    let mut out = Vec::new();
    for c in &settings.connectors {
        let (status, message) = m.effective(c);
        out.push(serde_json::json!({
            "id": c.id,
            "type": c.kind,
            "name": c.name,
            "status": status,
            "maintenance_message": message,
            "assurance": c.connector.assurance(),
            "health": c.connector.health().await,
        }));
    }
    HttpResponse::Ok().json(out)
}

async fn clients(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(r) = check(&req, &state).await {
        return r.into();
    }
    let settings = state.settings();
    let mut out: Vec<_> = settings
        .clients
        .values()
        .map(|c| {
            serde_json::json!({
                "id": c.id,
                "name": c.name,
                "auth_method": match c.auth {
                    ClientAuth::SecretBasic(_) => "client_secret_basic",
                    ClientAuth::SecretPost(_) => "client_secret_post",
                    ClientAuth::PrivateKeyJwt(_) => "private_key_jwt",
                    ClientAuth::None => "none",
                },
                "redirect_uris": c.redirect_uris,
                "scopes": c.scopes,
                "min_assurance": c.min_assurance,
                "id_token_signed_response_alg": c.id_token_alg.as_str(),
                "backchannel_logout": c.backchannel_logout_uri.is_some(),
            })
        })
        .collect();
    out.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    HttpResponse::Ok().json(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    message: LocalizedText,
}

async fn put_maintenance(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(r) = check(&req, &state).await {
        return r.into();
    }
    let mut names = path.splitn(2, '/');
    let connector = names.next().unwrap_or_default();
    let settings = state.settings();
    let Some(entry) = settings.connector(connector) else {
        return HttpResponse::NotFound().json(serde_json::json!({"error": "unknown connector"}));
    };
    if let Some(part) = names.next() {
        let parts = entry.connector.parts();
        if !parts.iter().any(|p| p == part) {
            return HttpResponse::NotFound().json(serde_json::json!({
                "error": "unknown part",
                "error_description": format!("connector `{connector}` has no part `{part}`; its parts: {}", if parts.is_empty() { "none".to_string() } else { parts.join(", ") }),
            }));
        }
    }
    let body: MaintenanceBody =
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return HttpResponse::BadRequest().json(
                serde_json::json!({"error": "invalid_request", "error_description": e.to_string()}),
            ),
        };
    if !body.message.contains_key("en") {
        return HttpResponse::BadRequest().json(serde_json::json!({
            "error": "invalid_request",
            "error_description": "message needs at least an English (`en`) text"
        }));
    }
    match maintenance::set(
        state.records.as_ref(),
        &path,
        Some(body.message),
        maintenance::By::ADMIN_API,
        state.now(),
    )
    .await
    {
        Ok(()) => {
            state.maintenance.clear();
            tracing::info!(target: "audit", event = "admin.maintenance_on", connector = %path, "connector put into maintenance");
            HttpResponse::NoContent().finish()
        }
        Err(e) => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"error": e.to_string()}))
        }
    }
}

/// `PUT /admin/connectors/{id}/parts/{part}/maintenance`: one part of a connector, such as
/// one bank of the bank-card connector.
async fn put_part_maintenance(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (id, part) = path.into_inner();
    put_maintenance(req, state, web::Path::from(format!("{id}/{part}")), body).await
}

/// `DELETE /admin/connectors/{id}/parts/{part}/maintenance`
async fn end_part_maintenance(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (id, part) = path.into_inner();
    end_maintenance(req, state, web::Path::from(format!("{id}/{part}"))).await
}

async fn end_maintenance(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    if let Err(r) = check(&req, &state).await {
        return r.into();
    }
    match maintenance::set(
        state.records.as_ref(),
        &path,
        None,
        maintenance::By::ADMIN_API,
        state.now(),
    )
    .await
    {
        Ok(()) => {
            state.maintenance.clear();
            tracing::info!(target: "audit", event = "admin.maintenance_off", connector = %path, "connector taken out of maintenance");
            HttpResponse::NoContent().finish()
        }
        Err(e) => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"error": e.to_string()}))
        }
    }
}
