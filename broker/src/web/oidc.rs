//! The OpenID Provider's endpoints: discovery, JWKS, authorization, pushed requests, token,
//! UserInfo, revocation and introspection. Each handler extracts what it needs and calls
//! the provider's logic in [`crate::oidc`].

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::{no_store_json, no_store_json_bytes, PageError};
use super::extract::{
    accept_language, BrowserParams, ClientAddress, ClientCredentials, DpopHeader, SessionCookie,
};
use super::state::AppState;
use crate::oidc::authorize::Refusal;
use crate::oidc::dpop::{self, Scheme};
use crate::oidc::{authorize, introspect, jws, par, signed_response, token, userinfo};
use crate::protocol::{parse_params, OAuthError};

/// `GET /.well-known/openid-configuration`
pub async fn configuration(state: web::Data<AppState>) -> HttpResponse {
    let doc = state.live.load().discovery.clone();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .content_type("application/json")
        .body(doc)
}

/// `GET /jwks`
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .content_type("application/jwk-set+json")
        .body(state.settings().keys.jwks_json().to_vec())
}

/// A 303 to `url`, never cached.
pub fn see_other(url: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, url.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Sends an authorization response: a 303, or the auto-submitted form of `form_post.jwt`.
pub fn deliver(delivery: crate::oidc::jarm::Delivery) -> HttpResponse {
    match delivery {
        crate::oidc::jarm::Delivery::Redirect(url) => see_other(&url),
        crate::oidc::jarm::Delivery::FormPost { body, csp } => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::CONTENT_SECURITY_POLICY, csp))
            .content_type("text/html; charset=utf-8")
            .body(body),
    }
}

/// `GET|POST /authorize`: admits the request, then answers from the SSO session or starts
/// a login.
pub async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    browser: BrowserParams,
    cookie: SessionCookie,
) -> Result<HttpResponse, PageError> {
    let settings = &state.settings();
    let BrowserParams {
        mut params,
        mut lang,
    } = browser;
    // A pushed request (RFC 9126): its parameters replace whatever came with the browser.
    let pushed = params.contains_key("request_uri");
    if let Some(request_uri) = params.get("request_uri") {
        let client_id = params.get("client_id").map(String::as_str).unwrap_or("");
        let stored = par::take(state.store.as_ref(), client_id, request_uri, state.now())
            .await
            .map_err(|e| PageError::unavailable(lang, &e))?
            .ok_or_else(|| {
                PageError::new(
                    lang,
                    400,
                    "error-login-expired",
                    "request_uri is unknown, expired, already used or another client's",
                )
            })?;
        lang = crate::i18n::negotiate(
            stored.get("ui_locales").map(String::as_str),
            accept_language(&req),
        );
        params = stored;
    }
    let admitted = authorize::admit(settings, &params, lang, pushed, state.now()).await;
    let (client, request) = match admitted {
        Ok(admitted) => admitted,
        Err(Refusal::Page { key, detail }) => {
            // The menu asks again in another language, without what must not be repeated
            // (a used `request_uri`) or copied into the page (`request`, `login_hint`).
            let kept: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(
                    url::form_urlencoded::parse(req.query_string().as_bytes()).filter(|(k, _)| {
                        !matches!(k.as_ref(), "request_uri" | "request" | "login_hint")
                    }),
                )
                .finish();
            let again = format!("/authorize?{kept}");
            return Err(PageError(
                crate::login::Failure::page(lang, 400, key, detail).with_menu(&again),
            ));
        }
        Err(Refusal::ToClient(url)) => return Ok(see_other(&url)),
    };
    let current = crate::session::current(
        cookie.0.as_deref(),
        settings,
        state.store.as_ref(),
        state.now(),
    )
    .await
    .map_err(|e| PageError::unavailable(lang, &e))?;
    let env = super::login::env_of(&req, &state);
    super::login::respond(
        &state,
        crate::login::begin(&env, client, request, current).await,
    )
}

/// `POST /par`: checks the request as `/authorize` would and keeps it for 60 seconds.
pub async fn push(
    state: web::Data<AppState>,
    credentials: ClientCredentials,
    address: ClientAddress,
    proof: DpopHeader,
) -> Result<HttpResponse, OAuthError> {
    let settings = &state.settings();
    let store = state.store.as_ref();
    let now = state.now();
    let client = credentials.client(settings, store, now).await?;
    let proof = dpop::at_endpoint(
        settings,
        store,
        client,
        proof.0.as_deref(),
        "/par",
        false,
        now,
    )
    .await
    .map_err(|e| e.at_endpoint())?;
    let pushed = par::push(
        settings,
        store,
        client,
        credentials.params,
        proof.as_ref(),
        &address.0,
        now,
    )
    .await?;
    let mut response = HttpResponse::Created();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(nonce) = proof.and_then(|p| p.next_nonce) {
        response.insert_header(("DPoP-Nonce", nonce));
    }
    Ok(response.json(pushed))
}

/// `POST /token`
pub async fn token(
    state: web::Data<AppState>,
    credentials: ClientCredentials,
    proof: DpopHeader,
) -> Result<HttpResponse, OAuthError> {
    let settings = &state.settings();
    let store = state.store.as_ref();
    let now = state.now();
    let client = credentials.client(settings, store, now).await?;
    // The proof is checked before the code is used up or the refresh token rotated; the
    // grant uses it up.
    let proof = dpop::checked_at_endpoint(
        settings,
        client,
        proof.0.as_deref(),
        "/token",
        client.dpop_bound_access_tokens,
        now,
    )
    .map_err(|e| e.at_endpoint())?;
    let next_nonce = proof.as_ref().and_then(|p| p.proof().next_nonce.clone());
    let response = token::grant(settings, store, client, &credentials.params, proof, now).await?;
    let mut http = no_store_json_bytes(response.to_json());
    if let Some(nonce) = next_nonce {
        if let Ok(value) = header::HeaderValue::from_str(&nonce) {
            http.headers_mut()
                .insert(header::HeaderName::from_static("dpop-nonce"), value);
        }
    }
    Ok(http)
}

/// `POST /revoke`
pub async fn revoke(
    state: web::Data<AppState>,
    credentials: ClientCredentials,
) -> Result<HttpResponse, OAuthError> {
    let settings = &state.settings();
    let store = state.store.as_ref();
    let now = state.now();
    let client = credentials.client(settings, store, now).await?;
    introspect::revoke(settings, store, client, &credentials.params, now).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `POST /introspect`
pub async fn introspect(
    req: HttpRequest,
    state: web::Data<AppState>,
    credentials: ClientCredentials,
) -> Result<HttpResponse, OAuthError> {
    let settings = &state.settings();
    let store = state.store.as_ref();
    let now = state.now();
    let client = credentials.client(settings, store, now).await?;
    let answer = introspect::introspect(settings, store, client, &credentials.params, now).await?;
    // RFC 9701: a signed answer when asked for, always for Message Signing clients.
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok());
    let signed = signed_response::wants_introspection_jwt(accept)
        || client.profile.is_some_and(|p| p.message_signing());
    if !signed {
        return Ok(no_store_json(&answer));
    }
    let key = settings
        .keys
        .signer(client.introspection_alg)
        .ok_or_else(|| OAuthError::server_error("no key for the introspection algorithm"))?;
    let jwt =
        signed_response::introspection_jwt(key, &settings.issuer, &client.id, &answer, now / 1000)
            .map_err(|e| OAuthError::server_error(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type(signed_response::INTROSPECTION_JWT_TYPE)
        .body(jwt))
}

/// The access token of a UserInfo request and how it came: `Authorization: Bearer` or
/// `Authorization: DPoP` (RFC 9449 7.1), or the `access_token` form parameter (RFC 6750
/// 2.2, bearer tokens only), never two of them.
fn presented_token(req: &HttpRequest, body: &[u8]) -> Result<(Scheme, String), OAuthError> {
    let from_header = match req.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(h) => {
            let value = h.to_str().unwrap_or("");
            match dpop::authorization(value) {
                Some((scheme, token)) => Some((scheme, token.to_string())),
                None => {
                    return Err(OAuthError::bearer(
                        "invalid_request",
                        "the Authorization header must be `Bearer <token>` or `DPoP <token>`",
                        400,
                    ))
                }
            }
        }
    };
    let from_body = if body.is_empty() {
        None
    } else {
        parse_params(body)
            .map_err(|e| OAuthError::bearer("invalid_request", e.error_description, 400))?
            .remove("access_token")
    };
    match (from_header, from_body) {
        (Some(_), Some(_)) => Err(OAuthError::bearer(
            "invalid_request",
            "send the access token in one place only",
            400,
        )),
        (Some(t), None) => Ok(t),
        (None, Some(t)) => Ok((Scheme::Bearer, t)),
        (None, None) => {
            // No token at all: both challenges (RFC 9449 7.1), no error code.
            let mut e = OAuthError::bearer("invalid_request", "", 401);
            e.www_authenticate = Some(format!(
                "Bearer realm=\"broker\", {}",
                dpop::challenge(jws::ACCEPTED_ALGS)
            ));
            Err(e)
        }
    }
}

/// `GET|POST /userinfo`
pub async fn userinfo(
    req: HttpRequest,
    state: web::Data<AppState>,
    proof: DpopHeader,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    let (scheme, token) = presented_token(&req, &body)?;
    let presented = userinfo::Presented {
        token: &token,
        scheme,
        proof: proof.0.as_deref(),
        method: req.method().as_str(),
    };
    let settings = state.settings();
    let now = state.now();
    let answer = userinfo::claims(&settings, state.store.as_ref(), &presented, now).await?;
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(nonce) = answer.next_nonce {
        response.insert_header(("DPoP-Nonce", nonce));
    }
    // Signed UserInfo (OIDC Core 5.3.2) for the clients registered for it.
    let signing = settings
        .clients
        .get(&answer.client_id)
        .and_then(|c| c.userinfo_alg)
        .and_then(|alg| settings.keys.signer(alg));
    match signing {
        Some(key) => {
            let jwt = signed_response::userinfo_jwt(
                key,
                &settings.issuer,
                &answer.client_id,
                &answer.claims,
                now / 1000,
            )
            .map_err(|e| OAuthError::server_error(e.to_string()))?;
            Ok(response
                .content_type(signed_response::USERINFO_JWT_TYPE)
                .body(jwt))
        }
        None => Ok(response.json(answer.claims)),
    }
}
