//! The admin API of versioned configuration, instances and the audit trail (the console's
//! actions, for automation): the same code as the console's forms, so the two never
//! diverge. Served with the OpenAPI description of the whole admin API.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::versions::{check_draft, publish, DraftCheck, Published};
use crate::web::state::AppState;

/// The OpenAPI 3 description of the admin API.
const OPENAPI: &str = include_str!("../../openapi/admin.json");

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/openapi.json", web::get().to(openapi))
        .route("/admin/config", web::get().to(live))
        .route("/admin/config", web::post().to(publish_version))
        .route("/admin/config/check", web::post().to(check))
        .route("/admin/config/history", web::get().to(history))
        .route("/admin/config/versions/{version}", web::get().to(one))
        .route("/admin/config/rollback", web::post().to(rollback))
        .route("/admin/instances", web::get().to(instances))
        .route("/admin/audit", web::get().to(audit));
}

fn unavailable(e: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((actix_web::http::header::RETRY_AFTER, "5"))
        .json(json!({"error": "temporarily_unavailable", "error_description": e.to_string()}))
}

fn bad_request(e: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::BadRequest()
        .json(json!({"error": "invalid_request", "error_description": e.to_string()}))
}

fn no_console() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": "not_found", "error_description": "no [console]: connectors and clients are the configuration file's"}))
}

fn problems(list: &[crate::config::Problem]) -> HttpResponse {
    HttpResponse::UnprocessableEntity().json(json!({
        "error": "invalid_configuration",
        "problems": list.iter().map(|p| json!({"file": p.file, "key": p.key, "reason": p.reason})).collect::<Vec<_>>(),
    }))
}

/// The token check of the admin API, and that there is a console.
async fn guard(
    req: &HttpRequest,
    state: &AppState,
    versioned_only: bool,
) -> Result<(), HttpResponse> {
    crate::web::admin::check(req, state)
        .await
        .map_err(HttpResponse::from)?;
    if versioned_only && state.settings().console.is_none() {
        return Err(no_console());
    }
    Ok(())
}

/// `GET /admin/openapi.json` (needs the token like the rest: it says what the API can do).
async fn openapi(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(r) = guard(&req, &state, false).await {
        return r;
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

async fn live(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(r) = guard(&req, &state, true).await {
        return r;
    }
    match state.records.config_version(None).await {
        Ok(Some(v)) => HttpResponse::Ok().json(v),
        Ok(None) => no_console(),
        Err(e) => unavailable(e),
    }
}

async fn one(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    if let Err(r) = guard(&req, &state, true).await {
        return r;
    }
    let Ok(n) = path.parse::<u64>() else {
        return HttpResponse::NotFound().json(json!({"error": "not_found"}));
    };
    match state.records.config_version(Some(n)).await {
        Ok(Some(v)) => HttpResponse::Ok().json(v),
        Ok(None) => HttpResponse::NotFound().json(json!({"error": "not_found"})),
        Err(e) => unavailable(e),
    }
}

fn query(req: &HttpRequest) -> std::collections::BTreeMap<String, String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn history(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(r) = guard(&req, &state, true).await {
        return r;
    }
    let limit = query(&req)
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(20usize)
        .min(1000);
    match state.records.config_history(limit).await {
        Ok(list) => HttpResponse::Ok().json(
            list.into_iter()
                .map(|v| json!({"version": v.version, "author": v.author, "note": v.note, "at": v.at}))
                .collect::<Vec<_>>(),
        ),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    document: String,
    #[serde(default)]
    expected: Option<u64>,
}

async fn check(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    if let Err(r) = guard(&req, &state, true).await {
        return r;
    }
    let body: CheckBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(e),
    };
    let checked = check_draft(
        &state.settings(),
        &state.records,
        &body.document,
        body.expected,
    )
    .await;
    match checked {
        Ok(DraftCheck::Refused(list)) => problems(&list),
        Ok(DraftCheck::Changes(lines)) => {
            let diff: Vec<String> = lines
                .into_iter()
                .filter(|(c, _)| *c != ' ')
                .map(|(c, l)| format!("{c} {l}"))
                .collect();
            HttpResponse::Ok().json(json!({"ok": true, "diff": diff}))
        }
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    expected: u64,
    document: String,
    operator: String,
    #[serde(default)]
    note: String,
}

fn published(outcome: store::StoreResult<Published>) -> HttpResponse {
    match outcome {
        Ok(Published::Live(v)) => HttpResponse::Ok().json(json!({"version": v})),
        Ok(Published::Refused(list)) => problems(&list),
        Ok(Published::Conflict { head }) => HttpResponse::Conflict().json(json!({
            "error": "conflict",
            "error_description": format!("version {head} was published since; read it and apply the change again"),
            "head": head,
        })),
        Err(e) => unavailable(e),
    }
}

/// Who an automation call says it is, bounded (the audit row names them).
fn operator_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    (!name.is_empty() && name.chars().count() <= 100).then(|| format!("{name} (admin API)"))
}

fn unnamed() -> HttpResponse {
    bad_request("`operator` must name who makes the change (1 to 100 characters)")
}

async fn publish_version(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(r) = guard(&req, &state, true).await {
        return r;
    }
    let body: PublishBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(e),
    };
    let Some(author) = operator_name(&body.operator) else {
        return unnamed();
    };
    published(
        publish(
            &state.live,
            &state.records,
            &state.instance,
            body.expected,
            &body.document,
            &author,
            "admin-api",
            &body.note,
            state.now(),
        )
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    to: u64,
    operator: String,
}

async fn rollback(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    if let Err(r) = guard(&req, &state, true).await {
        return r;
    }
    let body: RollbackBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(e),
    };
    let Some(author) = operator_name(&body.operator) else {
        return unnamed();
    };
    let (earlier, head) = match (
        state.records.config_version(Some(body.to)).await,
        state.records.config_head().await,
    ) {
        (Ok(Some(v)), Ok(h)) => (v, h),
        (Ok(None), _) => return HttpResponse::NotFound().json(json!({"error": "not_found"})),
        (Err(e), _) | (_, Err(e)) => return unavailable(e),
    };
    published(
        publish(
            &state.live,
            &state.records,
            &state.instance,
            head,
            &earlier.document,
            &author,
            "admin-api",
            &format!("rollback to version {}", body.to),
            state.now(),
        )
        .await,
    )
}

async fn instances(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(r) = guard(&req, &state, true).await {
        return r;
    }
    let now = state.now();
    match (
        state.records.config_head().await,
        state.records.instances().await,
    ) {
        (Ok(head), Ok(list)) => HttpResponse::Ok().json(json!({
            "head": head,
            "instances": list
                .into_iter()
                .filter(|i| now.saturating_sub(i.seen) < crate::versions::GONE_AFTER_MS)
                .collect::<Vec<_>>(),
        })),
        (Err(e), _) | (_, Err(e)) => unavailable(e),
    }
}

async fn audit(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(r) = guard(&req, &state, false).await {
        return r;
    }
    let q = query(&req);
    let filter = records::AuditQuery {
        actor: q.get("actor").cloned().filter(|a| !a.is_empty()),
        event_prefix: q.get("event").cloned().filter(|e| !e.is_empty()),
        reference: None,
        limit: q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(200usize)
            .min(1000),
    };
    match state.records.recent_audit(&filter).await {
        Ok(rows) => HttpResponse::Ok().json(rows),
        Err(e) => unavailable(e),
    }
}
