//! Typed extractors: what handlers take from a request instead of the raw `HttpRequest`.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use super::error::PageError;
use super::state::AppState;
use crate::protocol::{parse_params, OAuthError, Params};

/// The citizen's language from `Accept-Language` (pages that also take `ui_locales` read
/// it from their parameters).
pub struct Lang(pub &'static str);

/// The `Accept-Language` header, if readable.
pub fn accept_language(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|h| h.to_str().ok())
}

/// The language of a request: `ui_locales` in its query, then `Accept-Language`.
pub fn lang_of(req: &HttpRequest) -> &'static str {
    let ui = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "ui_locales")
        .map(|(_, v)| v.into_owned());
    crate::i18n::negotiate(ui.as_deref(), accept_language(req))
}

impl FromRequest for Lang {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Lang(lang_of(req))))
    }
}

/// The client's network address for rate limits: the peer, or the forwarding headers when
/// the operator says a proxy sets them. Never logged, and keyed-hashed in store keys.
pub struct ClientAddress(pub String);

impl FromRequest for ClientAddress {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trust = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|s| s.settings().trust_forwarded_for);
        std::future::ready(Ok(ClientAddress(client_address(req, trust))))
    }
}

/// The peer address, or the forwarded one when `trust_forwarded_for`.
pub fn client_address(req: &HttpRequest, trust_forwarded_for: bool) -> String {
    let forwarded = trust_forwarded_for
        .then(|| {
            req.connection_info()
                .realip_remote_addr()
                .map(str::to_string)
        })
        .flatten();
    forwarded
        .map(|a| per_subscriber(&a))
        .or_else(|| req.peer_addr().map(|a| subscriber_ip(a.ip())))
        .unwrap_or_else(|| "unknown".into())
}

/// The address per-address limits count, from its text (a forwarding header): see
/// [`subscriber_ip`]; an address given with a port without it; anything else as it is.
pub fn per_subscriber(address: &str) -> String {
    use std::net::{IpAddr, SocketAddr};
    address
        .parse::<IpAddr>()
        .ok()
        .or_else(|| address.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(subscriber_ip)
        .unwrap_or_else(|| address.to_string())
}

/// The address per-address limits count: an IPv6 address by its /64 (one subscriber's
/// network, where any of 2^64 addresses is theirs to pick), an IPv4-mapped one as IPv4.
fn subscriber_ip(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => ipv4_text(v4),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ipv4_text(v4),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
    }
}

/// An IPv4 address as `Display` writes it (every request's peer behind most proxies),
/// without the formatting machinery, which costs more than the rest of a static answer's
/// bookkeeping.
fn ipv4_text(v4: std::net::Ipv4Addr) -> String {
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// The session cookie's secret, if the browser sent one.
pub struct SessionCookie(pub Option<String>);

impl FromRequest for SessionCookie {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let secret = req.app_data::<web::Data<AppState>>().and_then(|s| {
            req.cookie(crate::session::cookie_name(&s.settings()))
                .map(|c| c.value().to_string())
        });
        std::future::ready(Ok(SessionCookie(secret)))
    }
}

/// The parameters of a browser request sent by GET (query) or POST (form), with the
/// citizen's language (`ui_locales`, then `Accept-Language`); malformed parameters get an
/// error page in that language.
pub struct BrowserParams {
    /// The parameters, each at most once.
    pub params: Params,
    /// The citizen's language.
    pub lang: &'static str,
}

impl FromRequest for BrowserParams {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, PageError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let accept = accept_language(&req).map(str::to_string);
            let fallback = crate::i18n::negotiate(None, accept.as_deref());
            let raw = if req.method() == actix_web::http::Method::POST {
                body.await.map_err(|_| {
                    PageError::new(fallback, 400, "error-bad-request", "unreadable body")
                })?
            } else {
                web::Bytes::copy_from_slice(req.query_string().as_bytes())
            };
            let params = parse_params(&raw).map_err(|e| {
                PageError::new(fallback, 400, "error-bad-request", e.error_description)
            })?;
            let lang = crate::i18n::negotiate(
                params.get("ui_locales").map(String::as_str),
                accept.as_deref(),
            );
            Ok(BrowserParams { params, lang })
        })
    }
}

/// What a client sends to `/token`, `/revoke`, `/introspect` and `/par`: its form
/// parameters and its `Authorization` header (for `client_secret_basic`).
pub struct ClientCredentials {
    /// The form parameters, each at most once.
    pub params: Params,
    /// The `Authorization` header.
    pub authorization: Option<String>,
}

impl ClientCredentials {
    /// The client these credentials authenticate, as its registration requires.
    pub async fn client<'a>(
        &self,
        settings: &'a crate::config::Settings,
        store: &dyn store::Store,
        now: u64,
    ) -> Result<&'a crate::config::Client, OAuthError> {
        crate::oidc::client_auth::authenticate(
            settings,
            store,
            self.authorization.as_deref(),
            &self.params,
            now,
        )
        .await
    }
}

impl FromRequest for ClientCredentials {
    type Error = OAuthError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, OAuthError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let body = body
                .await
                .map_err(|_| OAuthError::invalid_request("the request body cannot be read"))?;
            Ok(ClientCredentials {
                params: parse_params(&body)?,
                authorization,
            })
        })
    }
}

/// The session cookie's secret of a request.
pub fn session_cookie(req: &HttpRequest, settings: &crate::config::Settings) -> Option<String> {
    req.cookie(crate::session::cookie_name(settings))
        .map(|c| c.value().to_string())
}

/// The `DPoP` header of a request (RFC 9449 4.1): `None` without one. Two or more, or one
/// that is not ASCII, are refused with `invalid_dpop_proof`.
pub struct DpopHeader(pub Option<String>);

impl FromRequest for DpopHeader {
    type Error = OAuthError;
    type Future = std::future::Ready<Result<Self, OAuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let mut values = req.headers().get_all("dpop");
        let first = values.next();
        let result = match (first, values.next()) {
            (None, _) => Ok(DpopHeader(None)),
            (Some(_), Some(_)) => Err(OAuthError::new(
                "invalid_dpop_proof",
                "send one DPoP header only",
            )),
            (Some(v), None) => v
                .to_str()
                .map(|v| DpopHeader(Some(v.to_string())))
                .map_err(|_| OAuthError::new("invalid_dpop_proof", "the DPoP header is not ASCII")),
        };
        std::future::ready(result)
    }
}

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_by_their_64_and_ports_are_dropped() {
        assert_eq!(per_subscriber("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            per_subscriber("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(per_subscriber("[2001:db8:1:3::9]:443"), "2001:db8:1:3::/64");
        assert_eq!(per_subscriber("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(per_subscriber("192.0.2.7:5000"), "192.0.2.7");
        assert_eq!(per_subscriber("192.0.2.7"), "192.0.2.7");
        assert_eq!(per_subscriber("unknown"), "unknown");
    }

    #[test]
    fn ipv4_addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "192.168.100.255",
            "255.255.255.255",
        ] {
            let ip: std::net::Ipv4Addr = text.parse().expect("an address");
            assert_eq!(ipv4_text(ip), ip.to_string());
            assert_eq!(ipv4_text(ip), text);
            assert_eq!(subscriber_ip(std::net::IpAddr::V4(ip)), text);
        }
    }
}
