//! Browser sessions: a secure, HttpOnly, SameSite cookie holding a random secret, bound to a
//! server-side record in the store (keyed by the secret's digest, so the store never holds
//! a usable cookie). A session is what makes a second platform's login silent (SSO).

use std::time::Duration;

use connectors::Assurance;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::keyspace;
use crate::protocol::{PersonId, Sid};
use crate::util::random_token;
use store::{Store, StoreResult};

/// A citizen's SSO session. Its `Debug` leaves out the citizen's name.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// Public session id (`sid` claim); not the cookie secret.
    pub sid: Sid,
    /// The person logged in.
    pub person_id: PersonId,
    /// Name to show on "continue as" pages.
    pub display_name: String,
    /// When the citizen last authenticated (Unix seconds).
    pub auth_time: u64,
    /// Assurance reached.
    pub level: Assurance,
    /// Methods used.
    pub amr: Vec<String>,
    /// Connector used last.
    pub connector: String,
    /// Created (Unix ms).
    pub created: u64,
    /// Last use (Unix ms).
    pub last_seen: u64,
    /// Relying parties logged in to during this session.
    pub clients: Vec<String>,
    /// The citizen chose "Skip" when asked to link a citizen ID number.
    #[serde(default)]
    pub link_skipped: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sid", &self.sid)
            .field("level", &self.level)
            .field("connector", &self.connector)
            .field("clients", &self.clients)
            .finish_non_exhaustive()
    }
}

/// Name of the session cookie.
pub fn cookie_name(settings: &Settings) -> &'static str {
    if settings.secure_cookies {
        "__Host-broker_session"
    } else {
        "broker_session"
    }
}

/// The session id one platform sees (`sid` in its ID tokens, access tokens, introspection
/// and logout messages): derived per client under a key of its own, so that two platforms
/// of one SSO session cannot correlate the citizen through it, as pairwise `sub`s promise
/// (OIDC Front-/Back-Channel Logout only need `sid` unique per issuer and session).
pub fn client_sid(settings: &Settings, sid: &str, client_id: &str) -> String {
    use base64::Engine;
    let mac = settings
        .client_sid_key
        .mac(&[client_id.as_bytes(), sid.as_bytes()]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac[..18])
}

/// The name of the cookie that remembers the identity source this browser used last (an
/// id of the configuration, nothing about the citizen), shown first on the choice.
pub fn last_source_cookie_name(settings: &Settings) -> &'static str {
    if settings.secure_cookies {
        "__Host-broker_last_source"
    } else {
        "broker_last_source"
    }
}

/// Name of the cookie that binds login transactions to one browser.
pub fn browser_cookie_name(settings: &Settings) -> &'static str {
    if settings.secure_cookies {
        "__Host-broker_browser"
    } else {
        "broker_browser"
    }
}

/// Loads the live session of the cookie secret `cookie`, if any. A store failure is an
/// error, never "no session": a new login would otherwise open a second session with a
/// new `sid`, and the next logout would miss the platforms of the first.
pub async fn current(
    cookie: Option<&str>,
    settings: &Settings,
    store: &dyn Store,
    now: u64,
) -> StoreResult<Option<(String, Session)>> {
    let Some(secret) = cookie.map(str::to_string) else {
        return Ok(None);
    };
    let key = keyspace::session(&secret);
    let Some(session) = keyspace::get_json::<Session>(store, &key, now).await? else {
        return Ok(None);
    };
    let idle_end = session.last_seen + settings.session.idle_timeout * 1000;
    let life_end = session.created + settings.session.lifetime * 1000;
    if now >= idle_end || now >= life_end {
        store.delete(&key, now).await?;
        return Ok(None);
    }
    Ok(Some((secret, session)))
}

/// Writes a session (new or updated) and returns the cookie secret to set.
pub async fn save(
    settings: &Settings,
    store: &dyn Store,
    secret: Option<String>,
    mut session: Session,
    now: u64,
) -> StoreResult<String> {
    session.last_seen = now;
    let secret = secret.unwrap_or_else(|| random_token(32));
    let remaining = (session.created + settings.session.lifetime * 1000).saturating_sub(now);
    keyspace::put_json(
        store,
        &keyspace::session(&secret),
        &session,
        Some(Duration::from_millis(remaining.max(1))),
        now,
    )
    .await?;
    Ok(secret)
}

/// Ends a session.
pub async fn end(store: &dyn Store, secret: &str, now: u64) -> StoreResult<()> {
    store
        .delete(&keyspace::session(secret), now)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_sid_key_made_once_gives_the_sids_made_before() {
        use base64::Engine;
        let secret = b"0123456789abcdef0123456789abcdef";
        // What each call derived before the key was kept in the configuration.
        let key = common::hash::KeyedHash::new(secret).mac(&[b"client sid key"]);
        let before = common::hash::KeyedHash::new(&key).mac(&[b"rp", b"sid-1"]);
        let now = crate::config::client_sid_key(secret).mac(&[b"rp", b"sid-1"]);
        assert_eq!(now, before);
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(&now[..18])
                .len(),
            24
        );
    }

    const T0: u64 = 1_800_000_000_000;

    fn session(created: u64) -> Session {
        Session {
            sid: "sid-1".into(),
            person_id: "p-1".into(),
            display_name: "An".into(),
            auth_time: created / 1000,
            level: Assurance::Substantial,
            amr: vec!["pwd".into()],
            connector: "tc".into(),
            created,
            last_seen: created,
            clients: vec![],
            link_skipped: false,
        }
    }

    #[tokio::test]
    async fn a_session_ends_when_idle_and_at_its_absolute_lifetime() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = crate::config::for_tests(dir.path(), "");
        let store =
            store::embedded::EmbeddedStore::open(&dir.path().join("t.redb")).expect("store");
        let (idle, life) = (
            settings.session.idle_timeout * 1000,
            settings.session.lifetime * 1000,
        );
        assert!(
            idle < life,
            "the test needs an idle timeout shorter than the lifetime"
        );

        // Used just before the idle timeout: alive, and each use moves the idle end.
        let secret = save(&settings, &store, None, session(T0), T0)
            .await
            .expect("save");
        let (_, s) = current(Some(&secret), &settings, &store, T0 + idle - 1)
            .await
            .expect("read")
            .expect("alive before the idle timeout");
        save(&settings, &store, Some(secret.clone()), s, T0 + idle - 1)
            .await
            .expect("touch");
        assert!(current(Some(&secret), &settings, &store, T0 + idle + 1)
            .await
            .expect("read")
            .is_some());
        // Not used for the idle timeout: gone.
        assert!(current(Some(&secret), &settings, &store, T0 + 2 * idle)
            .await
            .expect("read")
            .is_none());

        // Used all the time, but older than its lifetime: gone however recent the use.
        let secret = save(&settings, &store, None, session(T0), T0)
            .await
            .expect("save");
        let mut at = T0;
        while at + idle / 2 < T0 + life {
            at += idle / 2;
            let (_, s) = current(Some(&secret), &settings, &store, at)
                .await
                .expect("read")
                .expect("kept alive by use");
            save(&settings, &store, Some(secret.clone()), s, at)
                .await
                .expect("touch");
        }
        assert!(current(Some(&secret), &settings, &store, T0 + life)
            .await
            .expect("read")
            .is_none());
        // An unknown cookie is no session, never an error.
        assert!(current(Some("nope"), &settings, &store, T0)
            .await
            .expect("read")
            .is_none());
    }
}
