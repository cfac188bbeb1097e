//! Admin API for the records (admin token as for the rest of the admin API): a person looked
//! up by citizen ID number (sent in the body, hashed at once, never logged) or by id, the
//! review queue of suspended bindings and conflicts, and closing an item. Every call that
//! reads a person or changes anything is an audit row.

use actix_web::{web, HttpRequest, HttpResponse};
use records::{AuditRow, ReviewAction};
use serde::Deserialize;
use serde_json::json;

use crate::person::review::{self, Resolved};
use crate::web::state::AppState;

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/persons/lookup", web::post().to(lookup))
        .route("/admin/persons/{id}", web::get().to(person))
        .route("/admin/reviews", web::get().to(reviews))
        .route("/admin/reviews/{id}", web::post().to(close));
}

fn unavailable(e: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .json(json!({"error": "temporarily_unavailable", "error_description": e.to_string()}))
}

fn bad_request(e: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::BadRequest()
        .json(json!({"error": "invalid_request", "error_description": e.to_string()}))
}

async fn audited_view(state: &AppState, id: &str, how: &str) -> HttpResponse {
    let row = AuditRow::new(
        state.now(),
        "admin",
        "admin.person_viewed",
        "admin-api",
        id,
        json!({"by": how}),
    );
    if let Err(e) = state.records.audit(&[row]).await {
        return unavailable(e);
    }
    tracing::info!(target: "audit", event = "admin.person_viewed", person = %id, by = how, "an operator viewed a person's records");
    match review::view(state.records.as_ref(), id).await {
        Ok(Some(v)) => HttpResponse::Ok().json(v),
        Ok(None) => HttpResponse::NotFound().json(json!({"error": "not_found"})),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupBody {
    citizen_id: String,
}

/// `POST /admin/persons/lookup` with `{"citizen_id": "…"}`.
async fn lookup(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    if let Err(r) = crate::web::admin::check(&req, &state).await {
        return r.into();
    }
    let body: LookupBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        // The error would quote the body, which holds the number.
        Err(_) => return bad_request("expected {\"citizen_id\": \"…\"}"),
    };
    let settings = state.settings();
    match review::lookup(&settings, state.records.as_ref(), &body.citizen_id).await {
        Ok(Some(id)) => audited_view(&state, &id, "citizen_id").await,
        Ok(None) => {
            tracing::info!(target: "audit", event = "admin.person_lookup", found = false, "an operator looked up a citizen ID number bound to nobody");
            HttpResponse::NotFound().json(json!({"error": "not_found"}))
        }
        Err(e) => unavailable(e),
    }
}

/// `GET /admin/persons/{id}`
async fn person(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    if let Err(r) = crate::web::admin::check(&req, &state).await {
        return r.into();
    }
    audited_view(&state, &id, "id").await
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

/// `GET /admin/reviews` (`?all=true` for closed items too).
async fn reviews(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(r) = crate::web::admin::check(&req, &state).await {
        return r.into();
    }
    let query = match web::Query::<ListQuery>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(e) => return bad_request(e),
    };
    match state.records.reviews(query.all).await {
        Ok(items) => HttpResponse::Ok().json(items),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    action: ReviewAction,
    operator: String,
}

/// `POST /admin/reviews/{id}` with `{"action": "keep" | "merge" | "release", "operator": "…"}`.
async fn close(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(r) = crate::web::admin::check(&req, &state).await {
        return r.into();
    }
    let body: CloseBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(e),
    };
    let operator = body.operator.trim();
    if operator.is_empty() || operator.len() > 100 {
        return bad_request("operator must name who acts (1 to 100 characters)");
    }
    match review::close(
        state.records.as_ref(),
        &id,
        body.action,
        operator,
        crate::maintenance::By::ADMIN_API,
        state.now(),
    )
    .await
    {
        Ok(Resolved::Done(item)) => HttpResponse::Ok().json(item),
        Ok(Resolved::NotFound) => HttpResponse::NotFound().json(json!({"error": "not_found"})),
        Ok(Resolved::AlreadyClosed(item)) => {
            HttpResponse::Conflict().json(json!({"error": "already_closed", "item": item}))
        }
        Err(e) => unavailable(e),
    }
}
