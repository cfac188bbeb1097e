//! What the broker publishes about an identity source: its logo per language (shown on the
//! choice page) and the public keys it authenticates to the source with (`private_key_jwt`).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::web::state::AppState;

/// `GET /connectors/{id}/logo/{lang}`.
pub async fn logo(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    let (id, lang) = path.into_inner();
    let settings = state.settings();
    let Some(logo) = settings
        .connector(&id)
        .and_then(|c| c.logos.get(&lang))
        .cloned()
    else {
        return not_found();
    };
    // A URL with the content's hash may be kept long; any other must be checked again.
    let cache = if query.get("v") == Some(&logo.version) {
        "public, max-age=86400, immutable"
    } else {
        "no-cache"
    };
    HttpResponse::Ok()
        .content_type(logo.content_type)
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // An SVG opened on its own must not run scripts on the broker's origin.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        ))
        .body(logo.bytes)
}

/// `GET /connectors/{id}/jwks`: the public keys of a connector's `private_key_jwt`, for the
/// upstream provider's client registration (`jwks_uri`).
pub async fn jwks(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let settings = state.settings();
    let Some(jwks) = settings
        .connector(&path)
        .and_then(|c| c.connector.public_jwks())
    else {
        return not_found();
    };
    HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(jwks)
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("application/json")
        .body(r#"{"error":"not_found","error_description":"no such connector resource"}"#)
}
