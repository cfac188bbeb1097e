//! OAuth 2.0 errors as data (RFC 6749 5.2, OIDC Core 3.1.2.6, RFC 6750 3.1): the code, a
//! description for developers, the HTTP status and challenge. The web layer turns them
//! into responses.

use serde::Serialize;
use store::StoreError;

/// An OAuth 2.0 error as sent to clients (RFC 6749 5.2, OIDC Core 3.1.2.6).
#[derive(Debug, Clone, Serialize)]
pub struct OAuthError {
    /// The error code.
    pub error: &'static str,
    /// A human-readable explanation for developers.
    pub error_description: String,
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// `WWW-Authenticate` challenge.
    #[serde(skip)]
    pub www_authenticate: Option<String>,
    /// `Retry-After` seconds.
    #[serde(skip)]
    pub retry_after: Option<u64>,
    /// `DPoP-Nonce` (RFC 9449 8, 9): the server nonce the client must put in its next proof.
    #[serde(skip)]
    pub dpop_nonce: Option<String>,
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
            dpop_nonce: None,
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
                header_safe(&d)
            )
        };
        OAuthError {
            error,
            error_description: d,
            status,
            www_authenticate: Some(challenge),
            retry_after: None,
            dpop_nonce: None,
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

/// A text that can stand in a quoted header parameter (RFC 6750 3: `%x20-21 / %x23-5B /
/// %x5D-7E`): anything else, such as a control character echoed from a malformed request,
/// would make the header invalid and the answer a 500.
pub fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            c if c.is_control() => ' ',
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_hold_only_what_a_header_may() {
        let e = OAuthError::bearer(
            "invalid_request",
            "parameter `a\u{1}\u{7f}é\"` is repeated",
            400,
        );
        let challenge = e.www_authenticate.expect("challenge");
        assert!(
            challenge.bytes().all(|b| (0x20..=0x7e).contains(&b)),
            "{challenge}"
        );
        assert!(
            challenge.contains("parameter `a  ?'` is repeated"),
            "{challenge}"
        );
    }
}
