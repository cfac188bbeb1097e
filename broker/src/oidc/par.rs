//! Pushed authorization requests (RFC 9126): a client sends its authorization request
//! server to server, authenticated, and gets a `request_uri` to send the browser with.
//! The parameters (`login_hint`, `claims`, ...) never pass through the browser, cannot be
//! altered there, and are checked before the citizen arrives.

use std::time::Duration;

use super::authorize::validate;
use super::dpop::{authorization_binding, Proof};
use super::{OAuthError, Params};
use crate::config::{Client, Settings};
use crate::keyspace;
use crate::util::random_token;
use store::{Store, StoreError};

/// What every `request_uri` starts with (RFC 9126 2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// How long a pushed request waits for the browser.
const LIFETIME: Duration = Duration::from_secs(60);
/// Pushes a public client may make per address and minute.
const PUBLIC_PUSHES_PER_MINUTE: u64 = 30;
/// The authorization parameters kept; anything else pushed (client authentication
/// included) is dropped, so a push stores no more than a request needs.
const KEPT: [&str; 16] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "ui_locales",
    "acr_values",
    "claims",
    "response_mode",
    "dpop_jkt",
];

/// The answer to a pushed request (RFC 9126 2.2).
#[derive(serde::Serialize)]
pub struct Pushed {
    /// Where the browser is sent with.
    pub request_uri: String,
    /// Seconds it stays usable.
    pub expires_in: u64,
}

/// Checks a pushed request of `client` (from `address`) as `/authorize` would and keeps it
/// for 60 seconds. With a DPoP `proof` (already verified), the code will be bound to its
/// key (RFC 9449 10.1).
pub async fn push(
    settings: &Settings,
    store: &dyn Store,
    client: &Client,
    params: Params,
    proof: Option<&Proof>,
    address: &str,
    now: u64,
) -> Result<Pushed, OAuthError> {
    if client.is_public() {
        // Anyone can push as a public client: a budget per address keeps the store small.
        let decision = store
            .hit_rate_limit(
                &keyspace::pushed_request_limit(&settings.pairwise_secret, &client.id, address),
                PUBLIC_PUSHES_PER_MINUTE,
                Duration::from_secs(60),
                now,
            )
            .await?;
        if !decision.allowed {
            metrics::counter!("broker_rate_limited_total", "scope" => "par").increment(1);
            return Err(OAuthError::too_many_requests(
                "too many pushed requests from this address",
                decision.retry_after.as_secs(),
            ));
        }
    }
    let mut params = super::request_object::effective_params(settings, client, params, now).await?;
    if params.contains_key("request_uri") {
        return Err(OAuthError::invalid_request(
            "request_uri cannot be pushed (RFC 9126 2.1)",
        ));
    }
    match authorization_binding(params.get("dpop_jkt").map(String::as_str), proof) {
        Ok(Some(jkt)) => {
            params.insert("dpop_jkt".into(), jkt);
        }
        Ok(None) => {}
        Err(why) if proof.is_some() => return Err(OAuthError::new("invalid_dpop_proof", why)),
        Err(why) => return Err(OAuthError::invalid_request(why)),
    }
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is missing"))?;
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(OAuthError::invalid_request(
            "redirect_uri is not registered for this client",
        ));
    }
    // The checks of /authorize, now: the client learns of a bad request before the citizen
    // is sent anywhere. The language is the browser's, settled at /authorize.
    validate(settings, client, &params, redirect_uri, "en", true)?;
    params.retain(|k, _| KEPT.contains(&k.as_str()));
    params.insert("client_id".into(), client.id.clone());
    let id = random_token(32);
    keyspace::put_json(
        store,
        &keyspace::pushed_request(&id),
        &params,
        Some(LIFETIME),
        now,
    )
    .await?;
    Ok(Pushed {
        request_uri: format!("{REQUEST_URI_PREFIX}{id}"),
        expires_in: LIFETIME.as_secs(),
    })
}

/// The parameters pushed as `request_uri` by `client_id`, once: `None` when unknown,
/// expired, already used or pushed by another client.
pub async fn take(
    store: &dyn Store,
    client_id: &str,
    request_uri: &str,
    now: u64,
) -> Result<Option<Params>, StoreError> {
    let Some(id) = request_uri.strip_prefix(REQUEST_URI_PREFIX) else {
        return Ok(None);
    };
    let key = keyspace::pushed_request(id);
    // Checked before it is consumed: another client's guess must not burn it.
    let Some(bytes) = store.get(&key, now).await? else {
        return Ok(None);
    };
    let ours = keyspace::decode::<Params>(&key, &bytes)?
        .get("client_id")
        .is_some_and(|c| c == client_id);
    if !ours {
        return Ok(None);
    }
    // Single use: of two concurrent uses, only the one that takes it goes on.
    keyspace::take_json::<Params>(store, &key, now).await
}
