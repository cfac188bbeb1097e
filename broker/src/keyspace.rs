//! Every store key the broker writes, in one place, and the JSON framing of its records.
//!
//! The bytes of these keys are a stored format: sessions, codes and refresh tokens in a
//! running Redis must be found again by the next version, so a key changes only with a
//! migration. Keys derived from a secret (a code, a session cookie, a refresh token, a
//! pushed request's id) hold its SHA-256, never the secret, so a store dump grants nothing.
//! Keys derived from a client address hold a keyed hash of it ([`address`]), so the store
//! holds no address in clear.
//!
//! Redis Cluster puts a key in the slot of the part between its first `{` and `}` (its hash
//! tag). A Lua script may touch only keys of one slot, so the keys one script uses together
//! share a tag: refresh-token rotation ([`store::Store::rotate`]) reads the family and
//! swaps two refresh tokens in one script, hence `fam:{fid}` and `rt:{fid}:…`.
//!
//! Not here yet: the person index (`person:`, `idx:cid:`, `idx:ext:`), consents
//! (`consent:`) and the maintenance notice, which are moving to a database.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use store::{Millis, Store, StoreError, StoreResult};

use crate::util::sha256_b64;
use common::hash::pairwise_b64 as hmac_b64;

/// A login transaction, by its id (random, 24 bytes; it is in the login URLs anyway).
pub fn login_tx(id: &str) -> String {
    format!("tx:{id}")
}

/// The single-use `state` of a redirect to an upstream identity provider; holds the id of
/// the login transaction it belongs to.
pub fn callback_state(state: &str) -> String {
    format!("cb:{state}")
}

/// An authorization code, by its digest.
pub fn code(code: &str) -> String {
    format!("code:{}", sha256_b64(code.as_bytes()))
}

/// A refresh-token family (the grant all its tokens share). Tagged `{fid}` so it sits in
/// the slot of its refresh tokens ([`refresh_token`]): rotation is one script over both.
pub fn family(fid: &str) -> String {
    format!("fam:{{{fid}}}")
}

/// A refresh token of family `fid`, by the digest of its secret part. Tagged `{fid}` like
/// its [`family`].
pub fn refresh_token(fid: &str, secret: &str) -> String {
    format!("rt:{{{fid}}}:{}", sha256_b64(secret.as_bytes()))
}

/// The set of refresh-token families that the logout of session `sid` revokes.
pub fn session_families(sid: &str) -> String {
    format!("sfam:{sid}")
}

/// A browser session, by the digest of its cookie.
pub fn session(cookie_secret: &str) -> String {
    format!("sess:{}", sha256_b64(cookie_secret.as_bytes()))
}

/// The marker of a revoked access token, by its `jti`.
pub fn revoked_access_token(jti: &str) -> String {
    format!("revoked:{jti}")
}

/// A used client assertion (`private_key_jwt`), so its `jti` cannot be replayed.
pub fn assertion_jti(client_id: &str, jti: &str) -> String {
    format!("jti:{client_id}:{}", sha256_b64(jti.as_bytes()))
}

/// A used DPoP proof (RFC 9449 11.1), by the digest of its key's thumbprint and `jti`.
pub fn dpop_jti(jkt: &str, jti: &str) -> String {
    format!("dpop-jti:{}", sha256_b64(format!("{jkt}:{jti}").as_bytes()))
}

/// A logout waiting for the citizen's confirmation, by its id (in the form's URL).
pub fn pending_logout(id: &str) -> String {
    format!("logout:{id}")
}

/// A pushed authorization request (RFC 9126), by the digest of its `request_uri` id, so
/// the store never holds a usable `request_uri`.
pub fn pushed_request(id: &str) -> String {
    format!("par:{}", sha256_b64(id.as_bytes()))
}

/// Shared state of the connectors (one-time codes, attempt counters, their own rate
/// limits): the connectors' keys under a prefix of their own.
pub fn connector(key: &str) -> String {
    format!("cx:{key}")
}

/// The durable queue of back-channel logouts to deliver ([`store::Store::enqueue`]; the
/// store keeps a queue under one hash tag of its own).
pub const BACKCHANNEL_LOGOUT_QUEUE: &str = "backchannel-logout";

/// A client address as it appears in keys: a keyed hash under the pairwise secret, with a
/// label of its own so it can never equal a subject or an index key.
pub fn address(secret: &[u8], address: &str) -> String {
    hmac_b64(secret, &[b"addr", address.as_bytes()])
}

/// Which budget of a login step a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepBudget {
    /// A form the citizen submits.
    Step,
    /// A waiting page polling for an outcome.
    Poll,
}

/// Rate limit of login steps of `connector` from one address.
pub fn login_step_limit(
    secret: &[u8],
    budget: StepBudget,
    connector: &str,
    client_address: &str,
) -> String {
    let scope = match budget {
        StepBudget::Step => "step",
        StepBudget::Poll => "poll",
    };
    format!("rl:{scope}:{connector}:{}", address(secret, client_address))
}

/// Rate limit of pushed requests of a public client from one address.
pub fn pushed_request_limit(secret: &[u8], client_id: &str, client_address: &str) -> String {
    format!("rl:par:{client_id}:{}", address(secret, client_address))
}

/// Rate limit of notifications to `connector` from one address.
pub fn notify_limit(secret: &[u8], connector: &str, client_address: &str) -> String {
    format!("rl:notify:{connector}:{}", address(secret, client_address))
}

/// Admin API calls from one address (its keyed hash, [`address`]).
pub fn admin_calls_limit(address_tag: &str) -> String {
    format!("rl:admin:calls:{address_tag}")
}

/// Wrong admin tokens from one address.
pub fn admin_wrong_token_limit(address_tag: &str) -> String {
    format!("rl:admin:wrong:{address_tag}")
}

/// An address refused by the admin API after too many wrong tokens.
pub fn admin_blocked(address_tag: &str) -> String {
    format!("rl:admin:blocked:{address_tag}")
}

/// Rate limit of population-registry checks by `scope` (`addr`, `person`, `number`); the
/// value (an address, a person id, a citizen ID number) only as a keyed hash.
pub fn registry_check_limit(secret: &[u8], scope: &str, value: &str) -> String {
    let tag = hmac_b64(secret, &[b"registry", scope.as_bytes(), value.as_bytes()]);
    format!("rl:registry:{scope}:{tag}")
}

/// Encodes a record; a failure is [`StoreError::Corrupt`], never an empty record.
pub fn encode<T: Serialize>(key: &str, value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(format!("cannot encode {key}: {e}")))
}

/// Decodes a stored record; a failure is [`StoreError::Corrupt`].
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("cannot decode {}: {e}", kind(key))))
}

/// The prefix of a key, for error messages: a key may carry an id that must not be logged.
fn kind(key: &str) -> &str {
    key.split(':').next().unwrap_or_default()
}

/// Reads and decodes a live record. `Ok(None)` when there is none; a record that does not
/// decode is [`StoreError::Corrupt`].
pub async fn get_json<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
    now: Millis,
) -> StoreResult<Option<T>> {
    match store.get(key, now).await? {
        Some(bytes) => decode(key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Takes (reads and deletes, atomically) and decodes a single-use record.
pub async fn take_json<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
    now: Millis,
) -> StoreResult<Option<T>> {
    match store.take(key, now).await? {
        Some(bytes) => decode(key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Encodes and writes a record.
pub async fn put_json<T: Serialize>(
    store: &dyn Store,
    key: &str,
    value: &T,
    ttl: Option<Duration>,
    now: Millis,
) -> StoreResult<()> {
    let bytes = encode(key, value)?;
    store.put(key, &bytes, ttl, now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::embedded::EmbeddedStore;

    /// The stored format: these exact bytes are what a running store holds.
    #[test]
    fn keys_keep_their_bytes() {
        assert_eq!(login_tx("abc"), "tx:abc");
        assert_eq!(callback_state("s"), "cb:s");
        assert_eq!(family("F"), "fam:{F}");
        assert_eq!(session_families("sid"), "sfam:sid");
        assert_eq!(pending_logout("i"), "logout:i");
        assert_eq!(revoked_access_token("j"), "revoked:j");
        assert_eq!(connector("otp:x"), "cx:otp:x");
        assert_eq!(admin_blocked("t"), "rl:admin:blocked:t");
        // Registry budgets name the number only by its keyed hash.
        let key = registry_check_limit(b"k", "number", "079201001234");
        assert!(key.starts_with("rl:registry:number:") && !key.contains("079201001234"));
        let d = sha256_b64(b"secret");
        assert_eq!(code("secret"), format!("code:{d}"));
        assert_eq!(refresh_token("F", "secret"), format!("rt:{{F}}:{d}"));
        assert_eq!(session("secret"), format!("sess:{d}"));
        assert_eq!(pushed_request("secret"), format!("par:{d}"));
        assert_eq!(assertion_jti("rp", "secret"), format!("jti:rp:{d}"));
    }

    #[test]
    fn rotation_keys_share_a_hash_tag() {
        let tag = |k: &str| {
            let open = k.find('{').map(|i| i + 1);
            let close = k.find('}');
            open.zip(close).map(|(a, b)| k[a..b].to_string())
        };
        assert_eq!(tag(&family("F1")), Some("F1".into()));
        assert_eq!(tag(&refresh_token("F1", "s")), Some("F1".into()));
    }

    #[test]
    fn rate_limit_keys_hold_no_address() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let address = "127.51.70.17";
        for key in [
            login_step_limit(secret, StepBudget::Step, "test-citizens", address),
            login_step_limit(secret, StepBudget::Poll, "test-citizens", address),
            pushed_request_limit(secret, "rp", address),
            notify_limit(secret, "ctid", address),
        ] {
            assert!(!key.contains(address), "{key}");
            assert!(!key.contains("127.51"), "{key}");
        }
        assert!(login_step_limit(secret, StepBudget::Step, "c", address).starts_with("rl:step:c:"));
        assert!(login_step_limit(secret, StepBudget::Poll, "c", address).starts_with("rl:poll:c:"));
        // One address, one bucket; another address, another bucket; another secret, other keys.
        assert_eq!(
            notify_limit(secret, "c", address),
            notify_limit(secret, "c", address)
        );
        assert_ne!(
            notify_limit(secret, "c", address),
            notify_limit(secret, "c", "127.51.70.18")
        );
        assert_ne!(
            notify_limit(secret, "c", address),
            notify_limit(b"another secret of thirty-two byt", "c", address)
        );
        // Its own label: never the keyed hash a subject or an index key would use.
        assert_ne!(
            super::address(secret, address),
            hmac_b64(secret, &[b"cid", address.as_bytes()])
        );
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Record {
        n: u32,
    }

    #[tokio::test]
    async fn json_records_round_trip_and_garbage_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
        let now = 1_000;
        put_json(&store, "tx:a", &Record { n: 7 }, None, now)
            .await
            .unwrap();
        assert_eq!(
            get_json::<Record>(&store, "tx:a", now).await.unwrap(),
            Some(Record { n: 7 })
        );
        assert_eq!(get_json::<Record>(&store, "tx:b", now).await.unwrap(), None);
        store.put("tx:c", b"not json", None, now).await.unwrap();
        let err = get_json::<Record>(&store, "tx:c", now).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt(ref m) if m.contains("tx") && !m.contains("tx:c"))
        );
        assert!(matches!(
            take_json::<Record>(&store, "tx:c", now).await,
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(
            take_json::<Record>(&store, "tx:a", now).await.unwrap(),
            Some(Record { n: 7 })
        );
        assert_eq!(get_json::<Record>(&store, "tx:a", now).await.unwrap(), None);
    }

    #[test]
    fn an_unencodable_record_is_corrupt() {
        // A map with non-string keys cannot be JSON.
        let mut m = std::collections::HashMap::new();
        m.insert((1, 2), 3);
        assert!(matches!(encode("tx:a", &m), Err(StoreError::Corrupt(_))));
    }
}
