//! Ending a session (RP-Initiated, Back-Channel and Front-Channel Logout 1.0): the session
//! is deleted from the store (so every instance sees it gone at once), the refresh-token
//! families it issued without `offline_access` are revoked, one back-channel delivery per
//! platform is queued (delivered by a job, surviving restarts), and the front-channel
//! pages of the others are listed for the browser to load.

use crate::config::Settings;
use crate::keyspace;
use crate::session::{self, Session};
use store::{Store, StoreResult};

use super::backchannel;

/// Ends `session` (cookie secret `secret`) and returns the platforms' front-channel logout
/// URLs to load in the browser.
pub async fn end(
    settings: &Settings,
    store: &dyn Store,
    secret: &str,
    session: &Session,
    now: u64,
) -> StoreResult<Vec<String>> {
    session::end(store, secret, now).await?;
    // Refresh tokens of the session die with it, except those granted offline_access.
    let families_key = keyspace::session_families(&session.sid);
    match store.members(&families_key, now).await {
        Ok(families) => {
            for fid in families {
                if let Err(e) = store.delete(&keyspace::family(&fid), now).await {
                    tracing::error!(error = %e, "could not revoke a token family at logout");
                }
            }
            let _ = store.delete(&families_key, now).await;
        }
        Err(e) => tracing::error!(error = %e, "could not list the token families of a session"),
    }
    tracing::info!(target: "audit", event = "logout", sid = %session.sid, clients = session.clients.len(), "session ended");

    let mut front = Vec::new();
    for client in session
        .clients
        .iter()
        .filter_map(|id| settings.clients.get(id))
    {
        if client.backchannel_logout_uri.is_some() {
            if let Err(e) = backchannel::enqueue(
                store,
                &client.id,
                &session::client_sid(settings, &session.sid, &client.id),
                &session.person_id,
                now,
            )
            .await
            {
                // The session is gone already; the platform's session may outlive it.
                tracing::error!(client = %client.id, error = %e, "back-channel logout not enqueued");
            }
        }
        if let Some(uri) = &client.frontchannel_logout_uri {
            if let Ok(mut u) = url::Url::parse(uri) {
                u.query_pairs_mut()
                    .append_pair("iss", &settings.issuer)
                    .append_pair(
                        "sid",
                        &session::client_sid(settings, &session.sid, &client.id),
                    );
                front.push(u.to_string());
            }
        }
    }
    Ok(front)
}
