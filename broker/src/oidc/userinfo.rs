//! UserInfo (OIDC Core 5.3), with the access-token check that introspection shares.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use jsonwebtoken::Validation;

use super::grants::{AccessClaims, FamilyRecord};
use super::{parse_params, OAuthError};
use crate::config::Settings;
use crate::keyspace;
use crate::util::now_millis;
use crate::web::state::AppState;
use store::{Store, StoreResult};

/// Checks one of our access tokens: signature, `typ`, issuer, expiry, and that neither it
/// nor its family was revoked. `Ok(None)` means not active.
pub async fn check_access_token(
    settings: &Settings,
    store: &dyn Store,
    token: &str,
) -> StoreResult<Option<(AccessClaims, FamilyRecord)>> {
    let Ok(header) = jsonwebtoken::decode_header(token) else {
        return Ok(None);
    };
    if header.typ.as_deref() != Some("at+jwt") {
        return Ok(None);
    }
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[&settings.issuer]);
    v.validate_aud = false;
    v.leeway = 0;
    let Some(claims) = settings.keys.verify::<AccessClaims>(token, &v) else {
        return Ok(None);
    };
    let now = now_millis();
    if store
        .get(&keyspace::revoked_access_token(&claims.jti), now)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let Some(family) =
        keyspace::get_json::<FamilyRecord>(store, &keyspace::family(&claims.fam), now).await?
    else {
        return Ok(None);
    };
    Ok(Some((claims, family)))
}

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
    let Some((claims, family)) =
        check_access_token(&state.settings(), state.store.as_ref(), &token).await?
    else {
        return Err(OAuthError::bearer(
            "invalid_token",
            "the access token is invalid, expired or revoked",
            401,
        ));
    };
    if !claims.scope.split(' ').any(|s| s == "openid") {
        return Err(OAuthError::bearer(
            "insufficient_scope",
            "the openid scope is required",
            403,
        ));
    }
    let mut body = serde_json::Map::new();
    for (k, v) in family.grant.claims {
        body.insert(k, v);
    }
    body.insert("sub".into(), claims.sub.into());
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}
