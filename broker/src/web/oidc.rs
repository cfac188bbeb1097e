//! The OpenID Provider's endpoints: discovery, JWKS, authorization, pushed requests, token,
//! UserInfo, revocation and introspection. Each handler extracts what it needs and calls
//! the provider's logic in [`crate::oidc`].

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::{no_store_json, PageError};
use super::extract::{
    accept_language, BrowserParams, ClientAddress, ClientCredentials, SessionCookie,
};
use super::state::AppState;
use crate::oidc::authorize::Refusal;
use crate::oidc::{authorize, client_auth, introspect, par, token, userinfo};
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
    let (client, request) = match authorize::admit(settings, &params, lang, pushed) {
        Ok(admitted) => admitted,
        Err(Refusal::Page { key, detail }) => return Err(PageError::new(lang, 400, key, detail)),
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
) -> Result<HttpResponse, OAuthError> {
    let settings = &state.settings();
    let store = state.store.as_ref();
    let now = state.now();
    let client = client_auth::authenticate(
        settings,
        store,
        credentials.authorization.as_deref(),
        &credentials.params,
        now,
    )
    .await?;
    let pushed = par::push(settings, store, client, credentials.params, &address.0, now).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(pushed))
}

/// `POST /token`
pub async fn token(
    state: web::Data<AppState>,
    credentials: ClientCredentials,
) -> Result<HttpResponse, OAuthError> {
    let settings = &state.settings();
    let store = state.store.as_ref();
    let now = state.now();
    let client = client_auth::authenticate(
        settings,
        store,
        credentials.authorization.as_deref(),
        &credentials.params,
        now,
    )
    .await?;
    let response = token::grant(settings, store, client, &credentials.params, now).await?;
    Ok(no_store_json(&response))
}

/// `POST /revoke`
pub async fn revoke(
    state: web::Data<AppState>,
    credentials: ClientCredentials,
) -> Result<HttpResponse, OAuthError> {
    let settings = &state.settings();
    let store = state.store.as_ref();
    let now = state.now();
    let client = client_auth::authenticate(
        settings,
        store,
        credentials.authorization.as_deref(),
        &credentials.params,
        now,
    )
    .await?;
    introspect::revoke(settings, store, client, &credentials.params, now).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `POST /introspect`
pub async fn introspect(
    state: web::Data<AppState>,
    credentials: ClientCredentials,
) -> Result<HttpResponse, OAuthError> {
    let settings = &state.settings();
    let store = state.store.as_ref();
    let now = state.now();
    let client = client_auth::authenticate(
        settings,
        store,
        credentials.authorization.as_deref(),
        &credentials.params,
        now,
    )
    .await?;
    let answer = introspect::introspect(settings, store, client, &credentials.params, now).await?;
    Ok(no_store_json(&answer))
}

/// The access token of a UserInfo request: the `Authorization: Bearer` header or the
/// `access_token` form parameter (RFC 6750 2.1, 2.2), never both.
fn bearer_token(req: &HttpRequest, body: &[u8]) -> Result<String, OAuthError> {
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
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
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(OAuthError::bearer("invalid_request", "", 401)),
    }
}

/// `GET|POST /userinfo`
pub async fn userinfo(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    let token = bearer_token(&req, &body)?;
    let claims =
        userinfo::claims(&state.settings(), state.store.as_ref(), &token, state.now()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(claims))
}
