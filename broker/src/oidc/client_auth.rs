//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic`, `client_secret_post`, `private_key_jwt` (RFC 7523, with `jti`
//! replay protection) and `none` for public clients.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::Validation;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{OAuthError, Params};
use crate::config::{Client, ClientAuth, Settings};
use crate::util::ct_eq;
use store::Store;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest accepted lifetime of a client assertion, so the replay cache stays small.
const MAX_ASSERTION_LIFETIME: u64 = 600;

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: u64,
    jti: String,
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
            let header = jsonwebtoken::decode_header(assertion)
                .map_err(|_| OAuthError::invalid_client("malformed client assertion", false))?;
            let candidates = keys.iter().filter(|k| {
                k.alg == header.alg
                    && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
            });
            let token_endpoint = format!("{}/token", settings.issuer);
            let mut claims = None;
            for key in candidates {
                let mut v = Validation::new(key.alg);
                v.set_audience(&[
                    token_endpoint.as_str(),
                    settings.issuer.as_str(),
                    &format!("{}/revoke", settings.issuer),
                    &format!("{}/introspect", settings.issuer),
                    // RFC 9126 2: the PAR endpoint's URL is a valid audience there.
                    &format!("{}/par", settings.issuer),
                ]);
                v.set_issuer(&[&client.id]);
                v.sub = Some(client.id.clone());
                v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
                v.leeway = 30;
                if let Ok(data) = jsonwebtoken::decode::<AssertionClaims>(assertion, &key.key, &v) {
                    claims = Some(data.claims);
                    break;
                }
            }
            let Some(claims) = claims else {
                return fail(
                    "client assertion is invalid, expired or not signed by a registered key",
                );
            };
            debug_assert!(claims.iss == claims.sub);
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
    #[derive(Deserialize)]
    struct Iss {
        iss: String,
    }
    jsonwebtoken::dangerous::insecure_decode::<Iss>(assertion)
        .map(|d| d.claims.iss)
        .map_err(|_| OAuthError::invalid_client("malformed client assertion", false))
}
