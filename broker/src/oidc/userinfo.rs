//! UserInfo (OIDC Core 5.3), with the access-token check that introspection shares.

use jsonwebtoken::Validation;

use super::grants::{AccessClaims, FamilyRecord};
use super::OAuthError;
use crate::config::Settings;
use crate::keyspace;
use store::{Store, StoreResult};

/// Checks one of our access tokens: signature, `typ`, issuer, expiry, and that neither it
/// nor its family was revoked. `Ok(None)` means not active.
pub async fn check_access_token(
    settings: &Settings,
    store: &dyn Store,
    token: &str,
    now: u64,
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

/// The UserInfo answer for an access token (OIDC Core 5.3.2), or the bearer error.
pub async fn claims(
    settings: &Settings,
    store: &dyn Store,
    token: &str,
    now: u64,
) -> Result<serde_json::Map<String, serde_json::Value>, OAuthError> {
    let Some((claims, family)) = check_access_token(settings, store, token, now).await? else {
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
    Ok(body)
}
