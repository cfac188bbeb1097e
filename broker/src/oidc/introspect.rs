//! Revocation (RFC 7009) and introspection (RFC 7662) for relying parties' APIs.

use std::time::Duration;

use super::grants::{refresh_key, FamilyRecord, TOMBSTONE};
use super::userinfo::check_access_token;
use super::{OAuthError, Params};
use crate::config::{Client, Settings};
use crate::keyspace;
use store::Store;

/// Revokes a token of `client` (RFC 7009); unknown and other clients' tokens are ignored.
pub async fn revoke(
    settings: &Settings,
    store: &dyn Store,
    client: &Client,
    params: &Params,
    now: u64,
) -> Result<(), OAuthError> {
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    // A refresh token revokes its whole family (and so every access token of it).
    if let Some((fid, key)) = refresh_key(token) {
        if let Some(bytes) = store.get(&key, now).await? {
            if bytes != TOMBSTONE {
                if let Ok(f) = serde_json::from_slice::<FamilyRecord>(&bytes) {
                    if f.grant.client_id == client.id {
                        store.delete(&keyspace::family(&fid), now).await?;
                        tracing::info!(client = %client.id, "refresh token revoked");
                    }
                }
            }
        }
    } else if let Some((claims, _)) = check_access_token(settings, store, token, now).await? {
        if claims.client_id == client.id {
            let ttl = claims.exp.saturating_sub(now / 1000) + 1;
            store
                .put(
                    &keyspace::revoked_access_token(&claims.jti),
                    b"1",
                    Some(Duration::from_secs(ttl)),
                    now,
                )
                .await?;
            tracing::info!(client = %client.id, "access token revoked");
        }
    }
    // RFC 7009 2.2: unknown and already invalid tokens get 200 too.
    Ok(())
}

/// Introspects a token for `client` (RFC 7662).
pub async fn introspect(
    settings: &Settings,
    store: &dyn Store,
    client: &Client,
    params: &Params,
    now: u64,
) -> Result<serde_json::Value, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::invalid_client(
            "public clients may not introspect tokens",
            false,
        ));
    }
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    let inactive = serde_json::json!({"active": false});
    if let Some((fid, key)) = refresh_key(token) {
        let live = store.get(&key, now).await?.filter(|b| b != TOMBSTONE);
        let family_live = store.get(&keyspace::family(&fid), now).await?.is_some();
        let Some(bytes) = live.filter(|_| family_live) else {
            return Ok(inactive);
        };
        let f = keyspace::decode::<FamilyRecord>(&key, &bytes)?;
        // RFC 7662 4: only the client a token was issued to learns anything of it; another
        // platform would otherwise see its pairwise `sub` and `sid` and correlate citizens.
        if f.grant.client_id != client.id {
            return Ok(inactive);
        }
        let mut answer = serde_json::json!({
            "active": true,
            "token_type": "refresh_token",
            "client_id": f.grant.client_id,
            "sub": f.grant.sub,
            "scope": f.grant.scopes.join(" "),
            "exp": f.expires / 1000,
            "iss": settings.issuer,
            "sid": crate::session::client_sid(settings, &f.grant.sid, &f.grant.client_id),
        });
        if let Some(jkt) = f.jkt {
            answer["cnf"] = serde_json::json!({ "jkt": jkt });
        }
        return Ok(answer);
    }
    match check_access_token(settings, store, token, now).await? {
        // As for refresh tokens: the client it was issued to, or the audience it was for.
        Some((c, _)) if c.client_id != client.id && c.aud != client.id => Ok(inactive),
        Some((c, _)) => {
            let mut answer = serde_json::json!({
            "active": true,
            "token_type": if c.cnf.is_some() { "DPoP" } else { "Bearer" },
            "client_id": c.client_id,
            "sub": c.sub,
            "aud": c.aud,
            "scope": c.scope,
            "exp": c.exp,
            "iat": c.iat,
            "iss": c.iss,
            "jti": c.jti,
            "auth_time": c.auth_time,
            "acr": c.acr,
            "sid": c.sid,
            });
            // RFC 9449 6.2: the binding, for resource servers that introspect.
            if let Some(cnf) = c.cnf {
                answer["cnf"] = serde_json::json!({ "jkt": cnf.jkt });
            }
            Ok(answer)
        }
        None => Ok(inactive),
    }
}
