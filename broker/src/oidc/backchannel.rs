//! Back-Channel Logout 1.0 deliveries that survive a restart.
//!
//! A logout does not post to the platforms itself: it enqueues one delivery per platform in
//! the store ([`enqueue`]), and a background job of every broker instance claims the due
//! ones ([`deliver_due`]). A claim is a lease: an instance that stops mid-delivery (a crash,
//! a deploy) leaves the delivery to whichever instance claims it after the lease, and two
//! instances never post the same one at the same time. A failed post is retried with a
//! doubling delay, up to [`MAX_ATTEMPTS`], then given up and logged.
//!
//! The logout token is signed at each attempt, so a retry after a restart is not stale, and
//! for the configuration then in force (a platform removed meanwhile gets nothing).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Client, Settings};
use crate::keyspace;
use crate::person;
use crate::util::random_token;
use store::{Claimed, Millis, Store, StoreResult};

/// How many times a logout token is offered to a platform.
pub const MAX_ATTEMPTS: u32 = 5;

/// Delay before the second attempt; it doubles with each further one (1, 2, 4, 8 s).
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// How long a claimed delivery is an instance's alone: longer than one post may take (the
/// outgoing client's timeout is 5 s), so a live instance never sees it taken over.
pub const LEASE: Duration = Duration::from_secs(10);

/// Deliveries claimed at once by one instance.
const BATCH: usize = 32;

/// One logout to tell one platform.
#[derive(Serialize, Deserialize)]
struct Delivery {
    client_id: String,
    sid: String,
    person_id: String,
    /// Attempts made so far.
    attempts: u32,
}

/// Enqueues the back-channel logout of session `sid` for platform `client_id`, due now.
pub async fn enqueue(
    store: &dyn Store,
    client_id: &str,
    sid: &str,
    person_id: &str,
    now: Millis,
) -> StoreResult<()> {
    let delivery = Delivery {
        client_id: client_id.to_string(),
        sid: sid.to_string(),
        person_id: person_id.to_string(),
        attempts: 0,
    };
    let value = keyspace::encode(keyspace::BACKCHANNEL_LOGOUT_QUEUE, &delivery)?;
    store
        .enqueue(
            keyspace::BACKCHANNEL_LOGOUT_QUEUE,
            &random_token(16),
            &value,
            now,
        )
        .await
}

/// A Back-Channel Logout 1.0 logout token for one platform.
pub fn logout_token(
    settings: &Settings,
    client: &Client,
    sid: &str,
    person_id: &str,
    now: Millis,
) -> Option<String> {
    let key = settings.keys.signer(client.id_token_alg)?;
    let now = now / 1000;
    let claims = serde_json::json!({
        "iss": settings.issuer,
        "aud": client.id,
        "iat": now,
        "exp": now + 120,
        "jti": random_token(16),
        "sub": person::subject(settings, client, person_id),
        "sid": sid,
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    key.sign("logout+jwt", &claims).ok()
}

/// What became of one attempt.
enum Outcome {
    Delivered,
    /// Worth another attempt.
    Failed,
    /// Never deliverable (the platform or its back channel is gone, the record is bad).
    Dropped,
}

/// Claims the due deliveries and attempts each once, concurrently (a platform that does
/// not answer never delays the others). Returns how many were attempted.
pub async fn deliver_due(
    settings: &Settings,
    store: &dyn Store,
    http: &reqwest::Client,
    now: Millis,
) -> StoreResult<usize> {
    let claimed = store
        .claim_due(keyspace::BACKCHANNEL_LOGOUT_QUEUE, BATCH, LEASE, now)
        .await?;
    let count = claimed.len();
    futures_util::future::join_all(
        claimed
            .into_iter()
            .map(|c| attempt(settings, store, http, c, now)),
    )
    .await;
    Ok(count)
}

async fn attempt(
    settings: &Settings,
    store: &dyn Store,
    http: &reqwest::Client,
    claimed: Claimed,
    now: Millis,
) {
    let queue = keyspace::BACKCHANNEL_LOGOUT_QUEUE;
    let mut delivery = match keyspace::decode::<Delivery>(queue, &claimed.value) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "unreadable back-channel logout dropped");
            settle(store, &claimed, None).await;
            return;
        }
    };
    delivery.attempts += 1;
    let attempt = delivery.attempts;
    let client_id = delivery.client_id.clone();
    let outcome = post(settings, http, &delivery, now).await;
    let next = match outcome {
        Outcome::Delivered => {
            tracing::info!(client = %client_id, attempt, "back-channel logout delivered");
            None
        }
        Outcome::Dropped => None,
        Outcome::Failed if attempt >= MAX_ATTEMPTS => {
            tracing::error!(client = %client_id, attempts = attempt, "back-channel logout not delivered; given up, the platform may keep a stale session");
            None
        }
        Outcome::Failed => {
            let delay = FIRST_RETRY.saturating_mul(1 << (attempt - 1).min(16));
            let due = now.saturating_add(delay.as_millis() as u64);
            match keyspace::encode(queue, &delivery) {
                Ok(value) => Some((value, due)),
                Err(e) => {
                    tracing::error!(error = %e, "back-channel logout retry dropped");
                    None
                }
            }
        }
    };
    settle(
        store,
        &claimed,
        next.as_ref().map(|(v, due)| (v.as_slice(), *due)),
    )
    .await;
}

async fn post(
    settings: &Settings,
    http: &reqwest::Client,
    delivery: &Delivery,
    now: Millis,
) -> Outcome {
    let client_id = &delivery.client_id;
    let Some(client) = settings.clients.get(client_id) else {
        tracing::warn!(client = %client_id, "back-channel logout dropped: the platform is no longer configured");
        return Outcome::Dropped;
    };
    let Some(uri) = &client.backchannel_logout_uri else {
        tracing::warn!(client = %client_id, "back-channel logout dropped: the platform has no back channel any more");
        return Outcome::Dropped;
    };
    let Some(token) = logout_token(settings, client, &delivery.sid, &delivery.person_id, now)
    else {
        tracing::error!(client = %client_id, "cannot sign a logout token");
        return Outcome::Failed;
    };
    let attempt = delivery.attempts;
    match http
        .post(uri)
        .form(&[("logout_token", token.as_str())])
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r) => {
            tracing::warn!(client = %client_id, attempt, status = r.status().as_u16(), "back-channel logout refused");
            Outcome::Failed
        }
        Err(e) => {
            tracing::warn!(client = %client_id, attempt, error = %e.without_url(), "back-channel logout failed");
            Outcome::Failed
        }
    }
}

async fn settle(store: &dyn Store, claimed: &Claimed, next: Option<(&[u8], Millis)>) {
    let queue = keyspace::BACKCHANNEL_LOGOUT_QUEUE;
    match store
        .settle(queue, &claimed.id, claimed.lease_until, next)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "a back-channel logout outlived its lease; another instance may deliver it again"
        ),
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout not settled; it is retried after its lease")
        }
    }
}
