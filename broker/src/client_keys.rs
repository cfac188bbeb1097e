//! The public keys of a `private_key_jwt` client: the `jwks` written in its registration,
//! or the key set its `jwks_uri` serves, fetched with the bounded JSON client and cached
//! per client in this process.
//!
//! A fetched key set is used for [`MAX_AGE_MS`]. A signature whose `alg` and `kid` match no
//! cached key makes the broker fetch the set again (the platform rotated its keys), but at
//! most once per [`UNKNOWN_KID_INTERVAL_MS`], so a flood of made-up `kid`s cannot make the
//! broker hammer the platform; a failed fetch is not retried for [`FAILURE_BACKOFF_MS`]
//! either. Concurrent requests share one fetch. Time is a parameter (Unix milliseconds).

use std::sync::{Arc, Mutex, MutexGuard};

use common::http::{CallError, Endpoint, JsonClient};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// How long a fetched key set is used before it is fetched again: 5 minutes.
pub const MAX_AGE_MS: u64 = 5 * 60 * 1000;
/// At most one fetch per this interval because of an unknown `kid`: 10 seconds.
pub const UNKNOWN_KID_INTERVAL_MS: u64 = 10 * 1000;
/// After a failed fetch, none again for this long (the last reason is answered): 10 seconds.
pub const FAILURE_BACKOFF_MS: u64 = 10 * 1000;
/// Timeout of one fetch.
const FETCH_TIMEOUT_MS: u64 = 3000;

/// A public key of a client.
pub struct ClientKey {
    /// Its `kid`, if the JWKS names one.
    pub kid: Option<String>,
    /// The key.
    pub key: DecodingKey,
    /// The algorithm it is used with.
    pub alg: Algorithm,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// Whether this key may have signed a JWS with `alg` and `kid` (a key or a header
    /// without `kid` matches any).
    pub fn fits(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        self.alg == alg && (kid.is_none() || self.kid.is_none() || self.kid.as_deref() == kid)
    }
}

/// The client key of one JWK: its `alg`, or the usual one of its key type (RS256 for RSA,
/// ES256 for P-256, EdDSA for OKP). Symmetric keys are refused. The error is for an
/// operator (or, for a fetched set, the log).
pub fn key_of_jwk(jwk: &Jwk) -> Result<ClientKey, String> {
    let symmetric = || "symmetric keys are not accepted".to_string();
    let alg = jwk
        .common
        .key_algorithm
        .and_then(|a| a.to_string().parse::<Algorithm>().ok());
    let alg = match (alg, &jwk.algorithm) {
        (Some(a), _) => a,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::EllipticCurve(_)) => Algorithm::ES256,
        (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
        (None, _) => return Err(symmetric()),
    };
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(symmetric());
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(ClientKey {
        kid: jwk.common.key_id.clone(),
        key,
        alg,
    })
}

/// Why a client's keys are not available: the text is for the client's developers (it
/// names what its `jwks_uri` answered, never more than the origin of the URL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the client's keys could not be fetched from its jwks_uri: {0}")]
pub struct KeysUnavailable(pub String);

/// Where a client's keys come from.
pub enum ClientKeys {
    /// The `jwks` of its registration.
    Inline(Arc<[ClientKey]>),
    /// Its `jwks_uri`.
    Remote(Box<RemoteJwks>),
}

impl ClientKeys {
    /// The keys to verify a signature with `alg` and `kid` against: the registered ones,
    /// or the cached key set of the `jwks_uri`, fetched when missing, too old, or without a
    /// key for `alg` and `kid` (see the module's rules). `now` in Unix milliseconds.
    pub async fn for_signature(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        now: u64,
    ) -> Result<Arc<[ClientKey]>, KeysUnavailable> {
        match self {
            ClientKeys::Inline(keys) => Ok(keys.clone()),
            ClientKeys::Remote(remote) => remote.for_signature(alg, kid, now).await,
        }
    }
}

/// What to do for one lookup, given the cache.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Use these keys (they may still have no key for the `kid`: then the signature fails).
    Use,
    /// Fetch the set; `unknown_kid` when only because no cached key fits.
    Fetch { unknown_kid: bool },
    /// Answer this reason without fetching (a fetch failed moments ago).
    Refuse(String),
}

/// The cached key set of one `jwks_uri`, and when it was fetched.
#[derive(Default)]
struct Cache {
    keys: Option<Arc<[ClientKey]>>,
    /// When `keys` were fetched.
    fetched_at: u64,
    /// When the last fetch attempt for an unknown `kid` was made.
    last_unknown_kid_fetch: Option<u64>,
    /// The last failed attempt: when, and why.
    failure: Option<(u64, String)>,
}

impl Cache {
    fn fresh(&self, now: u64) -> Option<&Arc<[ClientKey]>> {
        self.keys
            .as_ref()
            .filter(|_| now < self.fetched_at.saturating_add(MAX_AGE_MS))
    }

    fn step(&self, alg: Algorithm, kid: Option<&str>, now: u64) -> Step {
        if let Some(keys) = self.fresh(now) {
            if keys.iter().any(|k| k.fits(alg, kid)) {
                return Step::Use;
            }
            let recently = self
                .last_unknown_kid_fetch
                .is_some_and(|t| now < t.saturating_add(UNKNOWN_KID_INTERVAL_MS));
            return if recently {
                Step::Use
            } else {
                Step::Fetch { unknown_kid: true }
            };
        }
        match &self.failure {
            Some((at, why)) if now < at.saturating_add(FAILURE_BACKOFF_MS) => {
                Step::Refuse(why.clone())
            }
            _ => Step::Fetch { unknown_kid: false },
        }
    }

    /// Records a fetch made at `now`.
    fn record(&mut self, now: u64, unknown_kid: bool, result: Result<Vec<ClientKey>, String>) {
        if unknown_kid {
            self.last_unknown_kid_fetch = Some(now);
        }
        match result {
            Ok(keys) => {
                self.keys = Some(keys.into());
                self.fetched_at = now;
                self.failure = None;
            }
            // Fresh keys stay usable: a failed refresh for an unknown kid changes nothing
            // for the kids that were known.
            Err(why) => self.failure = Some((now, why)),
        }
    }

    /// The keys after a fetch (or another request's fetch): the fresh set, else the reason.
    fn settled(&self, now: u64) -> Result<Arc<[ClientKey]>, KeysUnavailable> {
        match (self.fresh(now), &self.failure) {
            (Some(keys), _) => Ok(keys.clone()),
            (None, Some((_, why))) => Err(KeysUnavailable(why.clone())),
            (None, None) => Err(KeysUnavailable("no key set was fetched".into())),
        }
    }
}

/// A client's `jwks_uri`, its HTTP client and its cached key set.
pub struct RemoteJwks {
    client_id: String,
    http: JsonClient,
    cache: Mutex<Cache>,
    /// Held during a fetch, so concurrent lookups wait for it instead of fetching too.
    fetching: tokio::sync::Mutex<()>,
}

impl RemoteJwks {
    /// Checks `url` (https, or http on loopback; the URL policy of every outgoing call) and
    /// builds the client for it; problems are reported under `key`.
    pub fn open(
        client_id: &str,
        url: &str,
        key: &str,
        problems: &mut Vec<(String, String)>,
    ) -> Option<RemoteJwks> {
        if let Err(reason) = common::url_policy::check_url(url) {
            problems.push((key.to_string(), reason));
            return None;
        }
        let endpoint = Endpoint {
            url: url.to_string(),
            timeout_ms: FETCH_TIMEOUT_MS,
            api_key: None,
        };
        let mut found = Vec::new();
        let http = JsonClient::open(&endpoint, std::path::Path::new("."), "", &mut found);
        problems.extend(
            found
                .into_iter()
                .map(|(_, reason)| (key.to_string(), reason)),
        );
        Some(RemoteJwks {
            client_id: client_id.to_string(),
            http: http?,
            cache: Mutex::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // A panic elsewhere while holding the lock leaves plain data behind: still usable.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn for_signature(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        now: u64,
    ) -> Result<Arc<[ClientKey]>, KeysUnavailable> {
        if self.cache().step(alg, kid, now) == Step::Use {
            return self.cache().settled(now);
        }
        let _one_fetch = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let step = self.cache().step(alg, kid, now);
        match step {
            Step::Use => self.cache().settled(now),
            Step::Refuse(why) => Err(KeysUnavailable(why)),
            Step::Fetch { unknown_kid } => {
                let result = self.fetch().await;
                let outcome = if let Err(why) = &result {
                    tracing::warn!(client = %self.client_id, reason = %why, "cannot fetch the client's jwks_uri");
                    "failed"
                } else {
                    tracing::info!(client = %self.client_id, unknown_kid, "fetched the client's jwks_uri");
                    "fetched"
                };
                metrics::counter!(
                    "broker_client_jwks_fetches_total",
                    "client" => self.client_id.clone(),
                    "outcome" => outcome
                )
                .increment(1);
                let mut cache = self.cache();
                cache.record(now, unknown_kid, result);
                cache.settled(now)
            }
        }
    }

    /// One fetch: a 200 answer holding a JWKS with at least one usable signing key.
    async fn fetch(&self) -> Result<Vec<ClientKey>, String> {
        let (status, body) = self.http.get("").await.map_err(|e| match e {
            CallError::Outage(why) => format!("unreachable ({why})"),
            CallError::Invalid(why) => why,
        })?;
        if status != 200 {
            return Err(format!("it answered status {status}"));
        }
        keys_of_fetched_set(body)
    }
}

/// The usable signing keys of a fetched JWKS: encryption keys (`use: enc`), symmetric keys
/// and keys that do not parse are left out.
fn keys_of_fetched_set(body: serde_json::Value) -> Result<Vec<ClientKey>, String> {
    let set: JwkSet = serde_json::from_value(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let keys: Vec<ClientKey> = set
        .keys
        .iter()
        .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter_map(|jwk| key_of_jwk(jwk).ok())
        .collect();
    if keys.is_empty() {
        return Err("the JWKS holds no usable public signing key".into());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{SigningAlg, SigningKey};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    fn key(kid: &str) -> ClientKey {
        let (k, _) = SigningKey::generate(kid, SigningAlg::ES256).expect("key");
        key_of_jwk(k.jwk()).expect("client key")
    }

    const T0: u64 = 1_800_000_000_000;

    #[test]
    fn a_fresh_set_is_used_until_its_max_age() {
        let mut cache = Cache::default();
        assert_eq!(
            cache.step(Algorithm::ES256, Some("a"), T0),
            Step::Fetch { unknown_kid: false },
            "nothing cached yet"
        );
        cache.record(T0, false, Ok(vec![key("a")]));
        assert_eq!(cache.step(Algorithm::ES256, Some("a"), T0 + 1), Step::Use);
        assert_eq!(cache.step(Algorithm::ES256, None, T0 + 1), Step::Use);
        assert_eq!(
            cache.step(Algorithm::ES256, Some("a"), T0 + MAX_AGE_MS - 1),
            Step::Use
        );
        assert_eq!(
            cache.step(Algorithm::ES256, Some("a"), T0 + MAX_AGE_MS),
            Step::Fetch { unknown_kid: false },
            "too old"
        );
        assert!(
            cache.settled(T0 + MAX_AGE_MS).is_err(),
            "stale keys are never used"
        );
    }

    #[test]
    fn an_unknown_kid_refetches_at_most_once_per_interval() {
        let mut cache = Cache::default();
        cache.record(T0, false, Ok(vec![key("a")]));
        // The platform rotated: a new kid (or another alg) fetches at once.
        assert_eq!(
            cache.step(Algorithm::ES256, Some("b"), T0 + 1000),
            Step::Fetch { unknown_kid: true }
        );
        assert_eq!(
            cache.step(Algorithm::PS256, Some("a"), T0 + 1000),
            Step::Fetch { unknown_kid: true }
        );
        cache.record(T0 + 1000, true, Ok(vec![key("a"), key("b")]));
        assert_eq!(
            cache.step(Algorithm::ES256, Some("b"), T0 + 1001),
            Step::Use
        );
        // Made-up kids right after: no fetch until the interval has passed.
        for at in [
            T0 + 1001,
            T0 + 5000,
            T0 + 1000 + UNKNOWN_KID_INTERVAL_MS - 1,
        ] {
            assert_eq!(cache.step(Algorithm::ES256, Some("zzz"), at), Step::Use);
        }
        assert_eq!(
            cache.step(
                Algorithm::ES256,
                Some("zzz"),
                T0 + 1000 + UNKNOWN_KID_INTERVAL_MS
            ),
            Step::Fetch { unknown_kid: true }
        );
        // A failed refetch for an unknown kid keeps the fresh keys usable, and counts.
        let at = T0 + 1000 + UNKNOWN_KID_INTERVAL_MS;
        cache.record(at, true, Err("it answered status 503".into()));
        let keys = cache.settled(at).expect("the fresh keys stay");
        assert_eq!(keys.len(), 2);
        assert_eq!(cache.step(Algorithm::ES256, Some("zzz"), at + 1), Step::Use);
    }

    #[test]
    fn a_failed_fetch_is_answered_without_fetching_for_a_while() {
        let mut cache = Cache::default();
        cache.record(T0, false, Err("unreachable (timeout)".into()));
        let err = cache.settled(T0).expect_err("no keys");
        assert!(err.to_string().contains("timeout"), "{err}");
        assert_eq!(
            cache.step(Algorithm::ES256, Some("a"), T0 + FAILURE_BACKOFF_MS - 1),
            Step::Refuse("unreachable (timeout)".into())
        );
        assert_eq!(
            cache.step(Algorithm::ES256, Some("a"), T0 + FAILURE_BACKOFF_MS),
            Step::Fetch { unknown_kid: false }
        );
        cache.record(T0 + FAILURE_BACKOFF_MS, false, Ok(vec![key("a")]));
        assert!(cache.settled(T0 + FAILURE_BACKOFF_MS).is_ok());
        assert_eq!(cache.failure, None);
    }

    #[test]
    fn jwks_uri_follows_the_url_policy() {
        let mut problems = Vec::new();
        assert!(
            RemoteJwks::open("c", "http://platform.example/jwks", "k", &mut problems).is_none()
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "k");
        assert!(problems[0].1.contains("https"), "{problems:?}");
        let mut problems = Vec::new();
        assert!(
            RemoteJwks::open("c", "https://platform.example/jwks", "k", &mut problems).is_some()
        );
        assert!(RemoteJwks::open("c", "http://127.0.0.1:9/jwks", "k", &mut problems).is_some());
        assert!(problems.is_empty(), "{problems:?}");
    }

    /// Serves the current JWKS and counts the fetches.
    struct Served {
        jwks: Arc<Mutex<serde_json::Value>>,
        fetches: Arc<AtomicUsize>,
    }

    impl Respond for Served {
        fn respond(&self, _: &Request) -> ResponseTemplate {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let body = self.jwks.lock().map(|j| j.clone()).unwrap_or_default();
            ResponseTemplate::new(200).set_body_json(body)
        }
    }

    #[tokio::test]
    async fn a_rotation_is_followed_and_fetches_are_shared_and_bounded() {
        let (a, _) = SigningKey::generate("a", SigningAlg::ES256).expect("key");
        let (b, _) = SigningKey::generate("b", SigningAlg::ES256).expect("key");
        let jwks = Arc::new(Mutex::new(json!({"keys": [a.jwk()]})));
        let fetches = Arc::new(AtomicUsize::new(0));
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(Served {
                jwks: jwks.clone(),
                fetches: fetches.clone(),
            })
            .mount(&server)
            .await;
        let mut problems = Vec::new();
        let remote = RemoteJwks::open("c", &format!("{}/jwks", server.uri()), "k", &mut problems)
            .expect("opens");
        let keys = ClientKeys::Remote(Box::new(remote));

        // Eight concurrent first requests: one fetch.
        let lookups = (0..8).map(|_| keys.for_signature(Algorithm::ES256, Some("a"), T0));
        for got in futures_util::future::join_all(lookups).await {
            assert_eq!(got.expect("keys").len(), 1);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        // The platform rotates to `b`: the first request signed by `b` refetches.
        if let Ok(mut j) = jwks.lock() {
            *j = json!({"keys": [b.jwk(), {"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]});
        }
        let got = keys
            .for_signature(Algorithm::ES256, Some("b"), T0 + 1000)
            .await
            .expect("keys");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert_eq!(got.len(), 1, "the symmetric key is left out");
        assert_eq!(got[0].kid.as_deref(), Some("b"));

        // A hundred made-up kids within the interval: no fetch at all.
        for i in 0..100 {
            let kid = format!("made-up-{i}");
            let got = keys
                .for_signature(Algorithm::ES256, Some(&kid), T0 + 2000 + i)
                .await
                .expect("the cached keys");
            assert!(!got.iter().any(|k| k.fits(Algorithm::ES256, Some(&kid))));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 2);

        // Garbage from the platform after the max age: a reason, then no fetch for a while.
        if let Ok(mut j) = jwks.lock() {
            *j = json!({"keys": "none"});
        }
        let late = T0 + 1000 + MAX_AGE_MS;
        let err = keys
            .for_signature(Algorithm::ES256, Some("b"), late)
            .await
            .expect_err("not a JWKS");
        assert!(err.0.contains("not a JWKS"), "{err}");
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
        assert!(keys
            .for_signature(Algorithm::ES256, Some("b"), late + 1)
            .await
            .is_err());
        assert_eq!(fetches.load(Ordering::SeqCst), 3, "backed off");
    }

    #[tokio::test]
    async fn an_unreachable_or_refusing_jwks_uri_is_a_reason_not_a_panic() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({})))
            .mount(&server)
            .await;
        let mut problems = Vec::new();
        let remote = RemoteJwks::open("c", &server.uri(), "k", &mut problems).expect("opens");
        let err = remote
            .for_signature(Algorithm::ES256, None, T0)
            .await
            .expect_err("404");
        assert!(err.0.contains("status 404"), "{err}");
        let closed = format!("http://127.0.0.1:{}/jwks", crate_free_port());
        let remote = RemoteJwks::open("c", &closed, "k", &mut problems).expect("opens");
        let err = remote
            .for_signature(Algorithm::ES256, None, T0)
            .await
            .expect_err("refused");
        assert!(err.0.contains("unreachable"), "{err}");
        assert!(problems.is_empty());
    }

    /// A port nobody listens on (bound, then released).
    fn crate_free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9)
    }
}
