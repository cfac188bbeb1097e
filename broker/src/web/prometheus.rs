//! `GET /metrics` for Prometheus.

use actix_web::HttpResponse;

/// `GET /metrics`: Prometheus text format; with `metrics.token` configured, only for a
/// request with `Authorization: Bearer <token>`.
pub async fn endpoint(
    req: actix_web::HttpRequest,
    state: actix_web::web::Data<super::state::AppState>,
) -> HttpResponse {
    if let Some(expected) = state.settings().metrics_token.as_ref() {
        use sha2::{Digest, Sha256};
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        let ok = given.is_some_and(|t| crate::util::ct_eq(&Sha256::digest(t.as_bytes()), expected));
        if !ok {
            return HttpResponse::Unauthorized()
                .insert_header((
                    actix_web::http::header::WWW_AUTHENTICATE,
                    "Bearer realm=\"metrics\"",
                ))
                .content_type("text/plain; charset=utf-8")
                .body("a bearer token is required\n");
        }
    }
    match crate::observe::render_metrics() {
        Some(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
            .body(text),
        None => HttpResponse::ServiceUnavailable().body("metrics are not enabled"),
    }
}
