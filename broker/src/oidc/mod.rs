//! The OpenID Provider: discovery, authorization, token, UserInfo, revocation and
//! introspection endpoints, and the records behind codes and tokens.

pub mod authorize;
pub mod backchannel;
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

use store::StoreError;

/// An OAuth 2.0 error as sent to clients (RFC 6749 5.2, OIDC Core 3.1.2.6).
#[derive(Debug, Clone, Serialize)]
pub struct OAuthError {
    /// The error code.
    pub error: &'static str,
    /// A human-readable explanation for developers.
    pub error_description: String,
    #[serde(skip)]
    status: u16,
    #[serde(skip)]
    www_authenticate: Option<String>,
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl OAuthError {
    /// An error with status 400.
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            error,
            error_description: description.into(),
            status: 400,
            www_authenticate: None,
            retry_after: None,
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", d)
    }

    /// `invalid_grant`.
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", d)
    }

    /// `invalid_client` with status 401 and a challenge for the scheme the client used.
    pub fn invalid_client(d: impl Into<String>, basic: bool) -> Self {
        let mut e = Self::new("invalid_client", d);
        e.status = 401;
        if basic {
            e.www_authenticate = Some("Basic realm=\"broker\"".into());
        }
        e
    }

    /// A bearer-token error for UserInfo (RFC 6750 3.1).
    pub fn bearer(error: &'static str, d: impl Into<String>, status: u16) -> Self {
        let d = d.into();
        let challenge = if error == "invalid_request" && d.is_empty() {
            "Bearer realm=\"broker\"".to_string()
        } else {
            format!(
                "Bearer realm=\"broker\", error=\"{error}\", error_description=\"{}\"",
                d.replace('"', "'")
            )
        };
        OAuthError {
            error,
            error_description: d,
            status,
            www_authenticate: Some(challenge),
            retry_after: None,
        }
    }

    /// A store failure: 503, the client may retry.
    pub fn unavailable(e: &StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        let mut err = Self::new(
            "temporarily_unavailable",
            "the service is temporarily unavailable, try again shortly",
        );
        err.status = 503;
        err
    }

    /// Too many requests (429, RFC 9126 2.3) with `Retry-After`.
    pub fn too_many_requests(d: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut err = Self::invalid_request(d);
        err.status = 429;
        err.retry_after = Some(retry_after_secs.max(1));
        err
    }

    /// `server_error` (500).
    pub fn server_error(d: impl Into<String>) -> Self {
        let mut err = Self::new("server_error", d);
        err.status = 500;
        err
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        OAuthError::unavailable(&e)
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.error_description)
    }
}

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

/// Request parameters; each may appear once (RFC 6749 3.1).
pub type Params = std::collections::BTreeMap<String, String>;

/// Parses `application/x-www-form-urlencoded` text, refusing repeated parameters. Empty
/// values count as absent (RFC 6749 3.1).
pub fn parse_params(text: &[u8]) -> Result<Params, OAuthError> {
    let mut out = Params::new();
    for (k, v) in url::form_urlencoded::parse(text) {
        if v.is_empty() {
            continue;
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{k}` is repeated"
            )));
        }
    }
    Ok(out)
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
        Err(e) => Err(crate::pages::error_page(
            crate::i18n::negotiate(None, accept),
            400,
            "error-bad-request",
            &e.error_description,
        )),
    }
}
