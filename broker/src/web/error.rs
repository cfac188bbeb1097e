//! Errors as HTTP responses: OAuth errors for clients (JSON, `WWW-Authenticate`,
//! `Retry-After`, never cached).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::login::Failure;
use crate::protocol::OAuthError;

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        r.insert_header((header::CACHE_CONTROL, "no-store"));
        match (self.status, self.retry_after) {
            (_, Some(secs)) => {
                r.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            (503, None) => {
                r.insert_header((header::RETRY_AFTER, "5"));
            }
            _ => {}
        }
        if let Some(c) = &self.www_authenticate {
            r.insert_header((header::WWW_AUTHENTICATE, c.clone()));
        }
        if let Some(n) = &self.dpop_nonce {
            r.insert_header(("DPoP-Nonce", n.clone()));
        }
        if self
            .www_authenticate
            .as_deref()
            .is_some_and(|c| c.starts_with("Bearer"))
            && self.error == "invalid_request"
            && self.error_description.is_empty()
        {
            // No token at all: RFC 6750 says no error code in the body either.
            return r.finish();
        }
        r.json(self)
    }
}

/// A failure shown to a citizen as a page in their language with what to do next, the
/// right status, and the cause logged (never shown). Handlers return it as their error.
#[derive(Debug)]
pub struct PageError(pub Failure);

impl PageError {
    /// An error page with message `key` and a technical `detail`.
    pub fn new(lang: &str, status: u16, key: &str, detail: impl Into<String>) -> Self {
        PageError(Failure::page(lang, status, key, detail))
    }

    /// The store failed: 503 with "try again shortly"; the cause is logged.
    pub fn unavailable(lang: &str, cause: &dyn std::fmt::Display) -> Self {
        PageError(Failure::unavailable(lang, cause))
    }

    /// Too many attempts: 429 with `Retry-After`.
    pub fn too_many(lang: &str, retry_after: u64) -> Self {
        PageError(Failure::too_many(lang, retry_after))
    }
}

impl From<Failure> for PageError {
    fn from(f: Failure) -> Self {
        PageError(f)
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn error_response(&self) -> HttpResponse {
        super::pages::failure(&self.0)
    }
}

impl From<PageError> for HttpResponse {
    fn from(e: PageError) -> HttpResponse {
        e.error_response()
    }
}

/// A JSON response that must not be cached (introspection; the token response is written by
/// [`crate::oidc::grants::TokenResponse::to_json`] and sent with [`no_store_json_bytes`]).
pub fn no_store_json<T: Serialize>(body: &T) -> HttpResponse {
    let mut json = Vec::with_capacity(1024);
    if serde_json::to_writer(&mut json, body).is_err() {
        return HttpResponse::InternalServerError().finish();
    }
    no_store_json_bytes(json)
}

/// [`no_store_json`] of a body already written as JSON (the token response).
pub fn no_store_json_bytes(json: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .content_type("application/json")
        .body(json)
}
