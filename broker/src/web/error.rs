//! Errors as HTTP responses: OAuth errors for clients (JSON, `WWW-Authenticate`,
//! `Retry-After`, never cached).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

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

/// A failure shown to a citizen: a page in their language with what to do next, the right
/// status, and the cause logged (never shown). Handlers return it as their error, so every
/// refusal is built the same way.
#[derive(Debug)]
pub struct PageError {
    lang: String,
    status: u16,
    kind: PageKind,
}

#[derive(Debug)]
enum PageKind {
    /// An error page: message key (its `-hint` too) and a note for developers.
    Error { key: String, detail: String },
    /// A failure with arguments and, when the login goes on, a way back.
    Failure {
        message: connectors::Message,
        back: Option<String>,
    },
    /// The store or the records cannot be reached: "try again shortly".
    Unavailable,
    /// Too many attempts: come back after `retry_after` seconds.
    TooMany { retry_after: u64 },
}

impl PageError {
    /// An error page with message `key` and a technical `detail`.
    pub fn new(lang: &str, status: u16, key: &str, detail: impl Into<String>) -> Self {
        PageError {
            lang: lang.to_string(),
            status,
            kind: PageKind::Error {
                key: key.to_string(),
                detail: detail.into(),
            },
        }
    }

    /// A failure page with a message and, when the login goes on, a link back.
    pub fn failure(
        lang: &str,
        status: u16,
        message: connectors::Message,
        back: Option<String>,
    ) -> Self {
        PageError {
            lang: lang.to_string(),
            status,
            kind: PageKind::Failure { message, back },
        }
    }

    /// The store failed: 503 with "try again shortly"; the cause is logged.
    pub fn unavailable(lang: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "store failure while serving a page");
        PageError {
            lang: lang.to_string(),
            status: 503,
            kind: PageKind::Unavailable,
        }
    }

    /// Too many attempts: 429 with `Retry-After`.
    pub fn too_many(lang: &str, retry_after: u64) -> Self {
        PageError {
            lang: lang.to_string(),
            status: 429,
            kind: PageKind::TooMany { retry_after },
        }
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            PageKind::Error { key, .. } => write!(f, "{}: {key}", self.status),
            PageKind::Failure { message, .. } => write!(f, "{}: {}", self.status, message.key),
            PageKind::Unavailable => write!(f, "{}: unavailable", self.status),
            PageKind::TooMany { .. } => write!(f, "{}: too many attempts", self.status),
        }
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn error_response(&self) -> HttpResponse {
        use super::pages;
        match &self.kind {
            PageKind::Error { key, detail } => {
                pages::error_page(&self.lang, self.status, key, detail)
            }
            PageKind::Failure { message, back } => {
                pages::failure_page(&self.lang, self.status, message, back.as_deref())
            }
            PageKind::Unavailable => pages::unavailable(&self.lang),
            PageKind::TooMany { retry_after } => pages::too_many_requests(&self.lang, *retry_after),
        }
    }
}

impl From<PageError> for HttpResponse {
    fn from(e: PageError) -> HttpResponse {
        e.error_response()
    }
}

/// A JSON response that must not be cached (tokens, introspection).
pub fn no_store_json<T: Serialize>(body: &T) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}
