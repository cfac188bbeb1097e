//! The OpenID Provider: discovery, authorization, token, UserInfo, revocation and
//! introspection endpoints, and the records behind codes and tokens.

pub mod authorize;
pub mod client_auth;
pub mod discovery;
pub mod grants;
pub mod introspect;
pub mod logout;
pub mod par;
pub mod token;
pub mod userinfo;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

pub use crate::protocol::{parse_params, OAuthError, Params};

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

/// A JSON response that must not be cached (tokens, introspection).
pub fn no_store_json<T: Serialize>(body: &T) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

/// The parameters of a browser request sent by GET (query) or POST (form), with the
/// citizen's language (`ui_locales`, then `Accept-Language`); malformed parameters get an
/// error page in that language.
// The error is the page to send; it is built once per refused request.
#[allow(clippy::result_large_err)]
pub fn browser_params(
    req: &actix_web::HttpRequest,
    body: &[u8],
) -> Result<(Params, &'static str), HttpResponse> {
    let accept = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|h| h.to_str().ok());
    let raw = if req.method() == actix_web::http::Method::POST {
        body
    } else {
        req.query_string().as_bytes()
    };
    match parse_params(raw) {
        Ok(params) => {
            let lang = crate::i18n::negotiate(params.get("ui_locales").map(String::as_str), accept);
            Ok((params, lang))
        }
        Err(e) => Err(crate::web::pages::error_page(
            crate::i18n::negotiate(None, accept),
            400,
            "error-bad-request",
            &e.error_description,
        )),
    }
}
