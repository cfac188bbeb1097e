//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic`, `client_secret_post`, `private_key_jwt` (RFC 7523, with `jti`
//! replay protection) and `none` for public clients.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};

use super::{jws, OAuthError, Params};
use crate::config::{Client, ClientAuth, ClientKeys, Settings};
use crate::util::ct_eq;
use store::Store;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest accepted lifetime of a client assertion, so the replay cache stays small.
const MAX_ASSERTION_LIFETIME: u64 = 600;

/// Clock skew accepted on a client assertion's `exp`, `nbf` and `iat` for ordinary clients.
const LEEWAY: u64 = 30;
/// FAPI 2.0 Security Profile 5.3.2.1: `iat`/`nbf` up to 10 s in the future are accepted,
/// beyond that refused.
const FAPI_FUTURE_SKEW: u64 = 10;

struct AssertionClaims {
    exp: u64,
    jti: String,
}

/// Verifies a `private_key_jwt` assertion (RFC 7523 3) against the client's keys
/// (registered, or fetched from its `jwks_uri`): the header parsed by [`jws::parse`]
/// so that RFC 9864's `Ed25519` label is read as EdDSA; `now` in Unix seconds. The error
/// is for `invalid_client`.
async fn verify_assertion(
    settings: &Settings,
    client: &Client,
    keys: &ClientKeys,
    assertion: &str,
    now: u64,
) -> Result<AssertionClaims, String> {
    let token = jws::parse(assertion).map_err(|e| format!("malformed client assertion: {e}"))?;
    let name = token.header_str("alg").unwrap_or_default();
    let alg = jws::algorithm(name)
        .or_else(|| name.parse::<Algorithm>().ok())
        .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        .ok_or_else(|| format!("client assertion alg `{name}` is not accepted"))?;
    if let Some(profile) = client.profile {
        if !profile.algorithms().contains(&alg) {
            return Err(format!(
                "a {} client signs with {} only",
                profile.as_str(),
                jws::alg_names(profile.algorithms()).join(", ")
            ));
        }
    }
    let kid = token.header_str("kid");
    // A client whose jwks_uri cannot be read cannot be authenticated (`invalid_client`).
    let keys = keys
        .for_signature(alg, kid, now * 1000)
        .await
        .map_err(|e| e.to_string())?;
    let verified = keys
        .iter()
        .filter(|k| k.fits(alg, kid))
        .any(|k| token.verify(&k.key, alg).is_ok());
    if !verified {
        return Err("client assertion is not signed by a registered key".into());
    }
    if token.str_claim("iss") != Some(client.id.as_str())
        || token.str_claim("sub") != Some(client.id.as_str())
    {
        return Err("client assertion iss and sub must be the client_id".into());
    }
    // RFC 7523 3: the authorization server's issuer, or one of its endpoints (RFC 9126 2:
    // the PAR endpoint's URL is a valid audience there).
    let audiences = [
        settings.issuer.clone(),
        format!("{}/token", settings.issuer),
        format!("{}/revoke", settings.issuer),
        format!("{}/introspect", settings.issuer),
        format!("{}/par", settings.issuer),
    ];
    let aud_ok = match token.claims.get("aud") {
        Some(serde_json::Value::String(a)) => audiences.contains(a),
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(serde_json::Value::as_str)
            .any(|a| audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err("client assertion aud must be the issuer".into());
    }
    let time = |name: &str| token.time_claim(name).map_err(|e| e.to_string());
    let exp = time("exp")?.ok_or("client assertion has no exp")?;
    if exp + LEEWAY < now {
        return Err("client assertion is expired".into());
    }
    let future = if client.profile.is_some() {
        FAPI_FUTURE_SKEW
    } else {
        LEEWAY
    };
    for name in ["nbf", "iat"] {
        if time(name)?.is_some_and(|t| t > now + future) {
            return Err(format!("client assertion {name} is in the future"));
        }
    }
    let jti = token
        .str_claim("jti")
        .filter(|j| !j.is_empty())
        .ok_or("client assertion has no jti")?;
    Ok(AssertionClaims {
        exp,
        jti: jti.to_string(),
    })
}

fn basic_credentials(authorization: Option<&str>) -> Option<Result<(String, String), OAuthError>> {
    let value = authorization?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let bad = || OAuthError::invalid_client("malformed Basic credentials", true);
    let parse = || -> Option<(String, String)> {
        let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        // RFC 6749 2.3.1: both parts are form-urlencoded.
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        Some((dec(id)?, dec(secret)?))
    };
    Some(parse().ok_or_else(bad))
}

/// Authenticates the client of a request, as its registration requires: `authorization`
/// is the request's `Authorization` header (for `client_secret_basic`), `params` its form.
pub async fn authenticate<'a>(
    settings: &'a Settings,
    store: &dyn Store,
    authorization: Option<&str>,
    params: &Params,
    now: u64,
) -> Result<&'a Client, OAuthError> {
    let basic = basic_credentials(authorization).transpose()?;
    let assertion = params.get("client_assertion");
    let methods_used = usize::from(basic.is_some())
        + usize::from(params.contains_key("client_secret"))
        + usize::from(assertion.is_some());
    if methods_used > 1 {
        return Err(OAuthError::invalid_request(
            "use exactly one client authentication method",
        ));
    }
    let client_id = match (&basic, assertion) {
        (Some((id, _)), _) => id.clone(),
        (None, Some(a)) => match params.get("client_id") {
            Some(id) => id.clone(),
            None => assertion_issuer(a)?,
        },
        (None, None) => params
            .get("client_id")
            .cloned()
            .ok_or_else(|| OAuthError::invalid_client("client authentication is missing", false))?,
    };
    if let (Some((id, _)), Some(body_id)) = (&basic, params.get("client_id")) {
        if id != body_id {
            return Err(OAuthError::invalid_request(
                "client_id does not match the credentials",
            ));
        }
    }
    let Some(client) = settings.clients.get(&client_id) else {
        return Err(OAuthError::invalid_client(
            "unknown client",
            basic.is_some(),
        ));
    };
    let fail = |why: &str| Err(OAuthError::invalid_client(why.to_string(), basic.is_some()));
    match &client.auth {
        ClientAuth::SecretBasic(digest) => match &basic {
            Some((_, secret)) if ct_eq(&Sha256::digest(secret.as_bytes()), digest) => Ok(client),
            Some(_) => fail("client authentication failed"),
            None => fail("this client must authenticate with client_secret_basic"),
        },
        ClientAuth::SecretPost(digest) => match params.get("client_secret") {
            Some(secret) if ct_eq(&Sha256::digest(secret.as_bytes()), digest) => Ok(client),
            Some(_) => fail("client authentication failed"),
            None => fail("this client must authenticate with client_secret_post"),
        },
        ClientAuth::None => {
            if basic.is_some() || assertion.is_some() || params.contains_key("client_secret") {
                fail("this public client has no credentials")
            } else {
                Ok(client)
            }
        }
        ClientAuth::PrivateKeyJwt(keys) => {
            let Some(assertion) = assertion else {
                return fail("this client must authenticate with private_key_jwt");
            };
            if params.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
                return Err(OAuthError::invalid_request(
                    "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
            }
            let claims = verify_assertion(settings, client, keys, assertion, now / 1000)
                .await
                .map_err(|why| OAuthError::invalid_client(why, false))?;
            let now_s = now / 1000;
            if claims.exp > now_s + MAX_ASSERTION_LIFETIME {
                return fail("client assertion lives too long (at most 10 minutes)");
            }
            let ttl = Duration::from_secs(claims.exp.saturating_sub(now_s) + 60);
            let jti_key = crate::keyspace::assertion_jti(&client.id, &claims.jti);
            if !store.put_new(&jti_key, b"1", Some(ttl), now).await? {
                return fail("client assertion was already used (jti replay)");
            }
            Ok(client)
        }
    }
}

fn assertion_issuer(assertion: &str) -> Result<String, OAuthError> {
    jws::parse(assertion)
        .ok()
        .and_then(|t| t.str_claim("iss").map(str::to_string))
        .ok_or_else(|| OAuthError::invalid_client("malformed client assertion", false))
}
