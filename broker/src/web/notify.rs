//! `POST /notify/{connector}`: notifications an identity source pushes to the broker (the
//! CTID service's signed outcome of an authentication, with `delivery = "notify"`). The
//! connector authenticates each one (a signature of the source) and keeps it in the shared
//! state for the citizen's next poll, so any broker instance can receive it. Answers are
//! JSON and carry nothing about the citizen.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use connectors::ConnectorError;
use serde_json::json;

use crate::connector_kv::StoreKv;
use crate::web::state::AppState;

/// Notifications per sending address and connector in five minutes.
const NOTIFY_LIMIT_PER_ADDRESS: u64 = 1200;

/// `POST /notify/{connector}`
pub async fn notify(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let settings = state.settings();
    let Some(entry) = settings.connector(&path) else {
        return HttpResponse::NotFound().json(json!({"error": "unknown_connector"}));
    };
    let address = super::extract::client_address(&req, settings.trust_forwarded_for);
    match state
        .store
        .hit_rate_limit(
            &crate::keyspace::notify_limit(&settings.pairwise_secret, &entry.id, &address),
            NOTIFY_LIMIT_PER_ADDRESS,
            Duration::from_secs(300),
            state.now(),
        )
        .await
    {
        Ok(d) if !d.allowed => {
            metrics::counter!("broker_rate_limited_total", "scope" => "notify").increment(1);
            return HttpResponse::TooManyRequests()
                .insert_header(("retry-after", d.retry_after.as_secs().max(1).to_string()))
                .json(json!({"error": "rate_limited"}));
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "store failure on a notification");
            return HttpResponse::ServiceUnavailable().json(json!({"error": "unavailable"}));
        }
    }
    let kv = StoreKv(state.store.clone());
    match entry.connector.notify(&kv, &body, state.now()).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(ConnectorError::Unavailable(detail)) => {
            tracing::error!(connector = %entry.id, detail = %detail, "notification not stored");
            HttpResponse::ServiceUnavailable().json(json!({"error": "unavailable"}))
        }
        Err(e) => {
            tracing::warn!(connector = %entry.id, error = %e, "notification refused");
            HttpResponse::BadRequest().json(json!({"error": "invalid_notification"}))
        }
    }
}
