//! UserInfo (OIDC Core 5.3), with the access-token check that introspection shares.

use jsonwebtoken::Validation;

use super::dpop::{self, DpopError, ProofCheck, Scheme};
use super::grants::{AccessClaims, FamilyRecord};
use super::jws;
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

/// How an access token came to a protected resource.
pub struct Presented<'a> {
    /// The token.
    pub token: &'a str,
    /// `Bearer` (header or form) or `DPoP` (header, RFC 9449 7.1).
    pub scheme: Scheme,
    /// The request's `DPoP` header.
    pub proof: Option<&'a str>,
    /// The request's method (`htm`).
    pub method: &'a str,
}

/// A UserInfo answer.
pub struct Answer {
    /// The claims (OIDC Core 5.3.2).
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The client the token was issued to.
    pub client_id: String,
    /// The `DPoP-Nonce` to send with it.
    pub next_nonce: Option<String>,
}

/// The UserInfo answer for an access token (OIDC Core 5.3.2), or the bearer or DPoP error.
pub async fn claims(
    settings: &Settings,
    store: &dyn Store,
    presented: &Presented<'_>,
    now: u64,
) -> Result<Answer, OAuthError> {
    let Some((claims, family)) = check_access_token(settings, store, presented.token, now).await?
    else {
        let why = "the access token is invalid, expired or revoked";
        return Err(match presented.scheme {
            Scheme::Bearer => OAuthError::bearer("invalid_token", why, 401),
            Scheme::Dpop => DpopError::InvalidToken(why.into()).at_resource(jws::ACCEPTED_ALGS),
        });
    };
    let client = settings.clients.get(&claims.client_id);
    let algs = client.map_or(jws::ACCEPTED_ALGS, dpop::algorithms_for);
    let proof = match (presented.scheme, presented.proof) {
        (Scheme::Dpop, Some(proof)) => {
            let url = format!("{}/userinfo", settings.issuer);
            let check = ProofCheck {
                method: presented.method,
                url: &url,
                access_token: Some(presented.token),
                algorithms: algs,
                nonces: &dpop::server_nonces(settings),
                require_nonce: client.is_some_and(|c| c.require_dpop_nonce),
            };
            Some(
                dpop::verify_proof(store, proof, &check, now)
                    .await
                    .map_err(|e| e.at_resource(algs))?,
            )
        }
        _ => None,
    };
    dpop::check_token_binding(
        claims.cnf.as_ref().map(|c| c.jkt.as_str()),
        presented.scheme,
        proof.as_ref(),
    )
    .map_err(|e| e.at_resource(algs))?;
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
    Ok(Answer {
        claims: body,
        client_id: claims.client_id,
        next_nonce: proof.and_then(|p| p.next_nonce),
    })
}
