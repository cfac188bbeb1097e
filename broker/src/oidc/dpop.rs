//! DPoP (RFC 9449): proofs of possession of a client key, server nonces, and the binding of
//! codes and tokens to the key's thumbprint (`jkt`).
//!
//! [`check_proof`] is pure (time is a parameter); [`verify_proof`] adds the single use of
//! `jti` through [`Store::put_new`], shared by every broker instance on one Redis. Server
//! nonces ([`DpopNonces`]) need no store at all: a nonce is an HMAC of the current time
//! slot under a key from the configuration, so every instance issues and accepts the same
//! ones, and they rotate by themselves.
//!
//! Errors carry what the web layer sends: the error code, the `DPoP-Nonce` value for
//! `use_dpop_nonce`, and the `WWW-Authenticate: DPoP …` challenge of a protected resource
//! (RFC 9449 7.1, 9). At the token and PAR endpoints the same errors are JSON bodies with
//! status 400 (RFC 9449 5, 8).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};

use super::dpop_proof::{self, JwkMember, Member, ProofClaims, ProofHeader};
use super::jws::{self, alg_names, JwsError};
use super::proof_keys;
use crate::util::{ct_eq, sha256_b64};
use common::hash::pairwise_b64 as hmac_b64;
use store::{Millis, Store, StoreError};

/// The `typ` of a proof (RFC 9449 4.2).
pub const PROOF_TYP: &str = "dpop+jwt";
/// A proof whose `iat` is older than this is refused (FAPI 2.0: refuse beyond 60 s).
pub const PROOF_MAX_AGE_SECS: u64 = 60;
/// A proof whose `iat` is up to this far ahead of our clock is accepted (FAPI 2.0 clock
/// skew: accept up to 10 s in the future).
pub const PROOF_MAX_AHEAD_SECS: u64 = 10;
/// How long a server nonce slot lasts; nonces of the previous and next slot are accepted
/// too (a nonce lives one to two slots; instances whose clocks differ by less than a slot
/// agree).
pub const NONCE_SLOT_SECS: u64 = 60;
/// How long a `jti` is remembered: past it the `iat` window refuses the proof anyway.
pub const JTI_TTL: Duration = Duration::from_secs(PROOF_MAX_AGE_SECS + PROOF_MAX_AHEAD_SECS + 5);
/// Longest accepted `jti` (they are random identifiers; this keeps the replay cache small).
pub const MAX_JTI_LEN: usize = 256;

/// RSA keys below this modulus size are refused.
const MIN_RSA_BITS: usize = 2048;

/// Why a proof or a token's use was refused.
#[derive(Debug, thiserror::Error)]
pub enum DpopError {
    /// `invalid_dpop_proof`: the proof is malformed, signed wrongly, stale, replayed, or
    /// for another request.
    #[error("invalid_dpop_proof: {0}")]
    InvalidProof(String),
    /// `use_dpop_nonce`: the proof lacks the server nonce or has one that is not valid;
    /// `nonce` goes into the `DPoP-Nonce` header.
    #[error("use_dpop_nonce: {why}")]
    UseNonce {
        /// Why (for developers).
        why: &'static str,
        /// The nonce to send.
        nonce: String,
    },
    /// `invalid_token` at a resource: a bound token without its key's proof, with another
    /// key's proof, or an unbound token presented with the DPoP scheme.
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// The replay cache cannot be reached: 503, the client may retry.
    #[error("DPoP replay cache: {0}")]
    Unavailable(#[from] StoreError),
}

impl DpopError {
    /// The OAuth error code.
    pub fn code(&self) -> &'static str {
        match self {
            DpopError::InvalidProof(_) => "invalid_dpop_proof",
            DpopError::UseNonce { .. } => "use_dpop_nonce",
            DpopError::InvalidToken(_) => "invalid_token",
            DpopError::Unavailable(_) => "temporarily_unavailable",
        }
    }

    /// The explanation for developers (`error_description`).
    pub fn description(&self) -> String {
        match self {
            DpopError::InvalidProof(d) | DpopError::InvalidToken(d) => d.clone(),
            DpopError::UseNonce { why, .. } => (*why).to_string(),
            DpopError::Unavailable(_) => {
                "the service is temporarily unavailable, try again shortly".into()
            }
        }
    }

    /// The value of the `DPoP-Nonce` response header, when one must be sent.
    pub fn nonce(&self) -> Option<&str> {
        match self {
            DpopError::UseNonce { nonce, .. } => Some(nonce),
            _ => None,
        }
    }

    /// Status at a protected resource (UserInfo): 401, or 503 for a store failure.
    pub fn resource_status(&self) -> u16 {
        match self {
            DpopError::Unavailable(_) => 503,
            _ => 401,
        }
    }

    /// Status at the token and PAR endpoints: 400 (RFC 9449 5, 8), or 503.
    pub fn endpoint_status(&self) -> u16 {
        match self {
            DpopError::Unavailable(_) => 503,
            _ => 400,
        }
    }

    /// The `WWW-Authenticate` value at a protected resource (RFC 9449 7.1), e.g.
    /// `DPoP error="invalid_dpop_proof", error_description="…", algs="ES256 PS256"`.
    pub fn www_authenticate(&self, algs: &[Algorithm]) -> String {
        format!(
            "DPoP error=\"{}\", error_description=\"{}\", algs=\"{}\"",
            self.code(),
            quoted(&self.description()),
            alg_names(algs).join(" ")
        )
    }
}

/// The challenge of a protected resource to a request without a token (RFC 9449 7.1).
pub fn challenge(algs: &[Algorithm]) -> String {
    format!("DPoP algs=\"{}\"", alg_names(algs).join(" "))
}

/// An auth-param value: no quotes or backslashes inside, no control characters.
fn quoted(text: &str) -> String {
    crate::protocol::error::header_safe(text)
}

/// Server-provided nonces (RFC 9449 8, 9), the same on every instance that shares the key.
pub struct DpopNonces {
    key: Vec<u8>,
}

/// How a nonce from a proof compares with the issued ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// The current slot's nonce.
    Current,
    /// The previous or next slot's: accepted, and the response carries the current one.
    Adjacent,
    /// Not a nonce this broker issued recently.
    Unknown,
}

impl DpopNonces {
    /// Nonces keyed by `secret` (a secret of the configuration; it is not used as is but
    /// through HMAC with a label of its own, so sharing it with another purpose is safe).
    pub fn new(secret: &[u8]) -> Self {
        DpopNonces {
            key: hmac_b64(secret, &[b"broker dpop nonce key v1"]).into_bytes(),
        }
    }

    fn for_slot(&self, slot: u64) -> String {
        hmac_b64(&self.key, &[&slot.to_be_bytes()])
    }

    /// The nonce to hand out at `now` (Unix seconds).
    pub fn current(&self, now: u64) -> String {
        self.for_slot(now / NONCE_SLOT_SECS)
    }

    /// Whether `nonce` was issued by a broker sharing the key, recently.
    pub fn check(&self, nonce: &str, now: u64) -> NonceState {
        let slot = now / NONCE_SLOT_SECS;
        if ct_eq(nonce.as_bytes(), self.for_slot(slot).as_bytes()) {
            return NonceState::Current;
        }
        let adjacent = [slot.saturating_sub(1), slot + 1]
            .into_iter()
            .filter(|s| *s != slot)
            .any(|s| ct_eq(nonce.as_bytes(), self.for_slot(s).as_bytes()));
        if adjacent {
            NonceState::Adjacent
        } else {
            NonceState::Unknown
        }
    }
}

/// What the request the proof came with looks like, and what the endpoint requires.
pub struct ProofCheck<'a> {
    /// The HTTP method (`htm`).
    pub method: &'a str,
    /// The endpoint's URL as the broker publishes it (issuer + path); query and fragment
    /// are ignored on both sides (`htu`, RFC 9449 4.3).
    pub url: &'a str,
    /// At a protected resource: the access token, whose hash `ath` must be.
    pub access_token: Option<&'a str>,
    /// Accepted algorithms ([`jws::ACCEPTED_ALGS`], or [`jws::FAPI_ALGS`] for FAPI clients).
    pub algorithms: &'a [Algorithm],
    /// The server nonces.
    pub nonces: &'a DpopNonces,
    /// Whether the proof must carry a server nonce.
    pub require_nonce: bool,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 SHA-256 thumbprint of the proof's key: what codes and tokens are bound to.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// The proof's `iat`.
    pub iat: u64,
    /// A nonce to send in `DPoP-Nonce` with the successful response: the proof's nonce
    /// was the previous (or next) slot's, so the client gets the current one.
    pub next_nonce: Option<String>,
}

fn invalid(d: impl Into<String>) -> DpopError {
    DpopError::InvalidProof(d.into())
}

/// Checks a proof without its replay check (see [`verify_proof`]); `now` in Unix seconds.
pub fn check_proof(proof: &str, c: &ProofCheck<'_>, now: u64) -> Result<Proof, DpopError> {
    let malformed = |e: JwsError| invalid(format!("malformed DPoP proof: {e}"));
    let not_object = |what: &str| {
        malformed(JwsError::Malformed(format!(
            "the {what} is not a JSON object (each member once)"
        )))
    };
    let parts = jws::split(proof).map_err(malformed)?;
    let header_json = jws::decode_part(parts.header, "JWS header").map_err(malformed)?;
    let claims_json = jws::decode_part(parts.payload, "JWT payload").map_err(malformed)?;
    let header: ProofHeader<'_> =
        dpop_proof::object(&header_json).ok_or_else(|| not_object("JWS header"))?;
    let claims: ProofClaims<'_> =
        dpop_proof::object(&claims_json).ok_or_else(|| not_object("JWT payload"))?;
    // RFC 7515 4.1.11: extensions marked critical that we do not understand are refused.
    if header.crit.present() {
        return Err(malformed(JwsError::Malformed(
            "critical header extensions (crit) are not supported".into(),
        )));
    }
    if !jws::media_type_is(header.typ.text(), PROOF_TYP) {
        return Err(invalid("the DPoP proof's typ must be dpop+jwt"));
    }
    let alg = jws::accepted_algorithm(header.alg.text(), c.algorithms)
        .map_err(|e| invalid(e.to_string()))?;
    let (key, jkt) = proof_key(&header.jwk, alg)?;
    match &key {
        ProofKey::Parsed(key) => jws::verify_with_parsed(parts.signing_input, parts.signature, key),
        ProofKey::Decoding(key) => jws::verify_with(parts.signing_input, parts.signature, key, alg),
    }
    .map_err(|_| invalid("the DPoP proof's signature does not verify with its jwk"))?;

    // Claims (RFC 9449 4.2, 4.3).
    let jti = claims
        .jti
        .text()
        .filter(|j| !j.is_empty())
        .ok_or_else(|| invalid("the DPoP proof has no jti"))?;
    if jti.len() > MAX_JTI_LEN {
        return Err(invalid("the DPoP proof's jti is too long"));
    }
    if claims.htm.text() != Some(c.method) {
        return Err(invalid(format!("the DPoP proof's htm is not {}", c.method)));
    }
    let htu = claims
        .htu
        .text()
        .ok_or_else(|| invalid("the DPoP proof has no htu"))?;
    if !same_target(htu, c.url) {
        return Err(invalid(format!(
            "the DPoP proof's htu is not {}",
            without_query(c.url).map(String::from).unwrap_or_default()
        )));
    }
    // A NumericDate in whole seconds (RFC 7519 2: fractions allowed, dropped here).
    let iat = match claims.iat {
        Member::Absent => return Err(invalid("the DPoP proof has no iat")),
        Member::Integer(n) => n,
        Member::Float(f) if f.is_finite() && f >= 0.0 => f as u64,
        _ => return Err(invalid("`iat` is not a NumericDate")),
    };
    if iat > now + PROOF_MAX_AHEAD_SECS {
        return Err(invalid("the DPoP proof's iat is in the future"));
    }
    if iat + PROOF_MAX_AGE_SECS < now {
        return Err(invalid("the DPoP proof is too old (iat)"));
    }
    if let Some(token) = c.access_token {
        match claims.ath.text() {
            None => return Err(invalid("the DPoP proof has no ath for the access token")),
            Some(ath) if !ct_eq(ath.as_bytes(), access_token_hash(token).as_bytes()) => {
                return Err(invalid(
                    "the DPoP proof's ath is not the access token's hash",
                ))
            }
            Some(_) => {}
        }
    }

    // Server nonce (RFC 9449 8, 9): checked last, so that a client told to use a nonce
    // has a proof that is otherwise right.
    let next_nonce = match &claims.nonce {
        Member::Absent if c.require_nonce => {
            return Err(DpopError::UseNonce {
                why: "a DPoP nonce is required: use the one in the DPoP-Nonce header",
                nonce: c.nonces.current(now),
            })
        }
        Member::Absent => None,
        Member::Text(n) => match c.nonces.check(n, now) {
            NonceState::Current => None,
            NonceState::Adjacent => Some(c.nonces.current(now)),
            NonceState::Unknown => {
                return Err(DpopError::UseNonce {
                    why: "the DPoP nonce is not valid (expired or never issued)",
                    nonce: c.nonces.current(now),
                })
            }
        },
        _ => return Err(invalid("the DPoP proof's nonce is not a string")),
    };
    Ok(Proof {
        jkt,
        jti: jti.to_string(),
        iat,
        next_nonce,
    })
}

/// Checks a proof and uses up its `jti` (per key, so two clients' identifiers never
/// collide). The replay cache is the store's: one atomic `put_new`, on Redis shared by
/// every instance. `now` in Unix milliseconds.
pub async fn verify_proof(
    store: &dyn Store,
    proof: &str,
    c: &ProofCheck<'_>,
    now: Millis,
) -> Result<Proof, DpopError> {
    Unspent(check_proof(proof, c, now / 1000)?)
        .spend(store, now)
        .await
}

/// A proof that passed every check but its single use: it is used up by [`Unspent::spend`],
/// or by a store operation that writes [`Unspent::marker`] atomically with its own work
/// (the refresh grant's rotation: one round trip instead of two).
#[must_use = "a proof counts only once its jti is used up"]
#[derive(Debug)]
pub struct Unspent(Proof);

impl Unspent {
    /// The proof (not yet used up).
    pub fn proof(&self) -> &Proof {
        &self.0
    }

    /// The replay cache's key of the proof (per key, so two clients' identifiers never
    /// collide) and how long it is kept.
    pub fn marker(&self) -> (String, Duration) {
        (crate::keyspace::dpop_jti(&self.0.jkt, &self.0.jti), JTI_TTL)
    }

    /// Uses up the proof's `jti` (one atomic `put_new`, on Redis shared by every instance).
    pub async fn spend(self, store: &dyn Store, now: Millis) -> Result<Proof, DpopError> {
        let (key, ttl) = self.marker();
        if !store.put_new(&key, b"1", Some(ttl), now).await? {
            return Err(replayed());
        }
        Ok(self.0)
    }

    /// A proof as if checked (unit tests of what comes after the check).
    #[cfg(test)]
    pub fn for_tests(proof: Proof) -> Unspent {
        Unspent(proof)
    }
}

/// The refusal of a proof whose `jti` was used before.
pub fn replayed() -> DpopError {
    invalid("the DPoP proof was already used (jti replay)")
}

/// A proof's public key, ready to verify with.
enum ProofKey {
    /// P-256 or Ed25519, from [`proof_keys`] (parsed once per key).
    Parsed(std::sync::Arc<aws_lc_rs::signature::ParsedPublicKey>),
    /// RSA, through `jsonwebtoken`.
    Decoding(DecodingKey),
}

/// The public key in the proof's header, checked against the algorithm, and its
/// thumbprint.
fn proof_key(jwk: &JwkMember<'_>, alg: Algorithm) -> Result<(ProofKey, String), DpopError> {
    let JwkMember::Key(jwk) = jwk else {
        return Err(invalid("the DPoP proof has no jwk in its header"));
    };
    if let Some(m) = jwk.private_member() {
        return Err(invalid(format!(
            "the DPoP proof's jwk holds a private or symmetric key member ({m})"
        )));
    }
    let kty = jwk.kty.text();
    let crv = jwk.crv.text();
    let fits = match alg {
        Algorithm::ES256 => kty == Some("EC") && crv == Some("P-256"),
        Algorithm::PS256 | Algorithm::RS256 => kty == Some("RSA"),
        Algorithm::EdDSA => kty == Some("OKP") && crv == Some("Ed25519"),
        _ => false,
    };
    if !fits {
        return Err(invalid("the DPoP proof's jwk is not a key for its alg"));
    }
    let (x, y, n, e) = (jwk.x.text(), jwk.y.text(), jwk.n.text(), jwk.e.text());
    if kty == Some("RSA") {
        let n = n
            .and_then(|n| URL_SAFE_NO_PAD.decode(n).ok())
            .ok_or_else(|| invalid("the DPoP proof's RSA jwk has no valid n"))?;
        let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
        if bits < MIN_RSA_BITS {
            return Err(invalid(
                "the DPoP proof's RSA key is smaller than 2048 bits",
            ));
        }
    }
    // The thumbprint's members (RFC 7638 3.2), in lexicographic order.
    let required: &[(&str, Option<&str>)] = match kty {
        Some("EC") => &[("crv", crv), ("kty", kty), ("x", x), ("y", y)],
        Some("RSA") => &[("e", e), ("kty", kty), ("n", n)],
        _ => &[("crv", crv), ("kty", kty), ("x", x)],
    };
    let thumbprint =
        thumbprint_of(required).ok_or_else(|| invalid("the DPoP proof's jwk is incomplete"))?;
    // The key straight from its members (kty and crv are checked above).
    let not_a_key = || invalid("the DPoP proof's jwk is not a valid public key");
    let members = match (kty, x, y, n, e) {
        (Some("EC"), Some(x), Some(y), _, _) => proof_keys::Members::P256 { x, y },
        (Some("OKP"), Some(x), _, _, _) => proof_keys::Members::Ed25519 { x },
        (Some("RSA"), _, _, Some(n), Some(e)) => {
            let key = DecodingKey::from_rsa_components(n, e).map_err(|_| not_a_key())?;
            return Ok((ProofKey::Decoding(key), thumbprint));
        }
        _ => return Err(invalid("the DPoP proof's jwk is not a valid JWK")),
    };
    let key = proof_keys::parsed(members).ok_or_else(not_a_key)?;
    Ok((ProofKey::Parsed(key), thumbprint))
}

/// RFC 7638 SHA-256 thumbprint of a public JWK from its required `members`, given in
/// lexicographic order (written without whitespace); `None` when one is missing (or not a
/// string).
fn thumbprint_of(members: &[(&str, Option<&str>)]) -> Option<String> {
    // Each value is written as a JSON string (escaped by serde_json), so the text is the
    // canonical form.
    let mut canonical = Vec::with_capacity(192);
    canonical.push(b'{');
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            canonical.push(b',');
        }
        canonical.push(b'"');
        canonical.extend_from_slice(name.as_bytes());
        canonical.extend_from_slice(b"\":");
        serde_json::to_writer(&mut canonical, (*value)?).ok()?;
    }
    canonical.push(b'}');
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(&canonical)))
}

/// `ath`: base64url SHA-256 of the access token (RFC 9449 4.2).
pub fn access_token_hash(access_token: &str) -> String {
    sha256_b64(access_token.as_bytes())
}

fn without_query(u: &str) -> Option<url::Url> {
    let mut u = url::Url::parse(u).ok()?;
    u.set_query(None);
    u.set_fragment(None);
    Some(u)
}

/// Whether two URLs name the same target once query and fragment are dropped (the URL
/// parser normalises scheme and host case, default ports and dot segments).
fn same_target(htu: &str, expected: &str) -> bool {
    // The common case, the very URL the broker publishes, needs no parsing.
    if htu == expected {
        return true;
    }
    match (without_query(htu), without_query(expected)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Whether a `dpop_jkt` value is well formed (a base64url SHA-256: 43 characters).
pub fn valid_jkt(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The key a pushed or direct authorization request binds its code to (RFC 9449 10):
/// `dpop_jkt` and, at PAR, the proof's key; when both are given they must agree. Returns
/// the `jkt` to keep with the request, if any; the error text is for `invalid_request`.
pub fn authorization_binding(
    dpop_jkt: Option<&str>,
    proof: Option<&Proof>,
) -> Result<Option<String>, String> {
    if let Some(j) = dpop_jkt {
        if !valid_jkt(j) {
            return Err("dpop_jkt is not a JWK SHA-256 thumbprint".into());
        }
    }
    match (dpop_jkt, proof) {
        (Some(j), Some(p)) if j != p.jkt => {
            Err("dpop_jkt does not match the key of the DPoP proof".into())
        }
        (Some(j), _) => Ok(Some(j.to_string())),
        (None, Some(p)) => Ok(Some(p.jkt.clone())),
        (None, None) => Ok(None),
    }
}

/// At the token endpoint: a code bound to `bound` is redeemed only with a proof of that
/// key (RFC 9449 10). The error text is for `invalid_grant`.
pub fn check_code_binding(bound: Option<&str>, proof: Option<&Proof>) -> Result<(), String> {
    match (bound, proof) {
        (None, _) => Ok(()),
        (Some(_), None) => Err("this code is bound to a DPoP key: send a DPoP proof".into()),
        (Some(j), Some(p)) if ct_eq(j.as_bytes(), p.jkt.as_bytes()) => Ok(()),
        (Some(_), Some(_)) => {
            Err("the DPoP proof's key is not the one this code is bound to".into())
        }
    }
}

/// How the access token came (`Authorization: Bearer …` or `Authorization: DPoP …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RFC 6750.
    Bearer,
    /// RFC 9449 7.1.
    Dpop,
}

/// Splits an `Authorization` header value into its scheme and token (schemes are
/// case-insensitive). `None` for other schemes or an empty token.
pub fn authorization(value: &str) -> Option<(Scheme, &str)> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return None;
    }
    if scheme.eq_ignore_ascii_case("Bearer") {
        Some((Scheme::Bearer, token))
    } else if scheme.eq_ignore_ascii_case("DPoP") {
        Some((Scheme::Dpop, token))
    } else {
        None
    }
}

/// At a protected resource: a token bound to `cnf_jkt` is accepted only with the DPoP
/// scheme and a proof of that key (checked with the token as `ath`); an unbound token
/// only as a bearer token. `proof` is the result of [`verify_proof`] for the request's
/// `DPoP` header, `None` when it had none.
pub fn check_token_binding(
    cnf_jkt: Option<&str>,
    scheme: Scheme,
    proof: Option<&Proof>,
) -> Result<(), DpopError> {
    match (cnf_jkt, scheme, proof) {
        (None, Scheme::Bearer, _) => Ok(()),
        (None, Scheme::Dpop, _) => Err(DpopError::InvalidToken(
            "this access token is not DPoP-bound: send it as a Bearer token".into(),
        )),
        (Some(_), Scheme::Bearer, _) => Err(DpopError::InvalidToken(
            "this access token is DPoP-bound: send it with the DPoP scheme and a proof".into(),
        )),
        (Some(_), Scheme::Dpop, None) => Err(invalid("a DPoP proof is required")),
        (Some(j), Scheme::Dpop, Some(p)) if ct_eq(j.as_bytes(), p.jkt.as_bytes()) => Ok(()),
        (Some(_), Scheme::Dpop, Some(_)) => Err(DpopError::InvalidToken(
            "the DPoP proof's key is not the one this access token is bound to".into(),
        )),
    }
}

/// The server nonces of a broker: keyed by its pairwise secret, so every instance of one
/// configuration issues and accepts the same ones.
pub fn server_nonces(settings: &crate::config::Settings) -> DpopNonces {
    DpopNonces::new(&settings.pairwise_secret)
}

/// The algorithms a client's proofs may use.
pub fn algorithms_for(client: &crate::config::Client) -> &'static [Algorithm] {
    client
        .profile
        .map_or(jws::ACCEPTED_ALGS, |p| p.algorithms())
}

/// Checks the `DPoP` header of a request of `client` to the broker's endpoint `path`
/// (`/token`, `/par`): `Ok(None)` without one unless `required`. Nothing single-use is
/// touched before this passes, so a client told `use_dpop_nonce` retries the same request.
pub async fn at_endpoint(
    settings: &crate::config::Settings,
    store: &dyn Store,
    client: &crate::config::Client,
    header: Option<&str>,
    path: &str,
    required: bool,
    now: Millis,
) -> Result<Option<Proof>, DpopError> {
    match checked_at_endpoint(settings, client, header, path, required, now)? {
        Some(unspent) => unspent.spend(store, now).await.map(Some),
        None => Ok(None),
    }
}

/// [`at_endpoint`] without the single use: the caller spends the proof (see [`Unspent`]).
pub fn checked_at_endpoint(
    settings: &crate::config::Settings,
    client: &crate::config::Client,
    header: Option<&str>,
    path: &str,
    required: bool,
    now: Millis,
) -> Result<Option<Unspent>, DpopError> {
    let Some(proof) = header else {
        return if required {
            Err(invalid("this client must send a DPoP proof (RFC 9449)"))
        } else {
            Ok(None)
        };
    };
    let url = format!("{}{path}", settings.issuer);
    let check = ProofCheck {
        method: "POST",
        url: &url,
        access_token: None,
        algorithms: algorithms_for(client),
        nonces: &server_nonces(settings),
        require_nonce: client.require_dpop_nonce,
    };
    check_proof(proof, &check, now / 1000).map(|p| Some(Unspent(p)))
}

impl DpopError {
    /// The error at the token and PAR endpoints: a JSON body, 400 (or 503), with the
    /// nonce to use when there is one.
    pub fn at_endpoint(&self) -> crate::protocol::OAuthError {
        let mut e = match self {
            DpopError::Unavailable(s) => crate::protocol::OAuthError::unavailable(s),
            _ => crate::protocol::OAuthError::new(self.code(), self.description()),
        };
        e.status = self.endpoint_status();
        e.dpop_nonce = self.nonce().map(str::to_string);
        e
    }

    /// The error at a protected resource (UserInfo): 401 with a `WWW-Authenticate: DPoP`
    /// challenge (or 503), with the nonce to use when there is one.
    pub fn at_resource(&self, algs: &[Algorithm]) -> crate::protocol::OAuthError {
        let mut e = match self {
            DpopError::Unavailable(s) => crate::protocol::OAuthError::unavailable(s),
            _ => crate::protocol::OAuthError::new(self.code(), self.description()),
        };
        e.status = self.resource_status();
        if !matches!(self, DpopError::Unavailable(_)) {
            e.www_authenticate = Some(self.www_authenticate(algs));
        }
        e.dpop_nonce = self.nonce().map(str::to_string);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningAlg;
    use crate::oidc::jws::test_support::{unsigned, TestKey};
    use crate::oidc::jws::{ACCEPTED_ALGS, FAPI_ALGS};
    use serde_json::{json, Value};

    const NOW: u64 = 1_800_000_000;
    const URL: &str = "https://broker.example/token";
    const AT: &str = "an-access-token";

    fn nonces() -> DpopNonces {
        DpopNonces::new(b"test secret of the configuration")
    }

    fn check<'a>(n: &'a DpopNonces) -> ProofCheck<'a> {
        ProofCheck {
            method: "POST",
            url: URL,
            access_token: None,
            algorithms: ACCEPTED_ALGS,
            nonces: n,
            require_nonce: false,
        }
    }

    fn claims(iat: u64) -> Value {
        json!({"jti": format!("jti-{iat}-{}", rand::random::<u64>()), "htm": "POST", "htu": URL, "iat": iat})
    }

    fn header(key: &TestKey, alg: &str) -> Value {
        json!({"typ": "dpop+jwt", "alg": alg, "jwk": key.public_jwk()})
    }

    fn proof(key: &TestKey, alg: &str, claims: &Value) -> String {
        key.sign(&header(key, alg), claims)
    }

    fn refused(result: Result<Proof, DpopError>) -> (String, String) {
        match result {
            Ok(p) => panic!("accepted: {p:?}"),
            Err(e) => (e.code().to_string(), e.description()),
        }
    }

    #[test]
    fn a_good_proof_gives_the_rfc7638_thumbprint() {
        let n = nonces();
        for (alg, jose) in [
            (SigningAlg::ES256, "ES256"),
            (SigningAlg::EdDSA, "EdDSA"),
            (SigningAlg::EdDSA, "Ed25519"),
            (SigningAlg::RS256, "PS256"),
            (SigningAlg::RS256, "RS256"),
        ] {
            let key = TestKey::generate("dpop", alg);
            let p = check_proof(&proof(&key, jose, &claims(NOW)), &check(&n), NOW)
                .unwrap_or_else(|e| panic!("{jose}: {}", e.description()));
            let expected = key
                .key
                .jwk()
                .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .expect("thumbprint");
            assert_eq!(p.jkt, expected, "{jose}");
            assert_eq!(p.next_nonce, None);
            // The key is remembered now: a proof naming it but signed by another key is
            // still refused.
            let other = TestKey::generate("other", alg);
            let forged = other.sign(&header(&key, jose), &claims(NOW));
            let (code, why) = refused(check_proof(&forged, &check(&n), NOW));
            assert_eq!(code, "invalid_dpop_proof", "{jose}");
            assert!(why.contains("signature"), "{jose}: {why}");
        }
    }

    #[test]
    fn optional_jwk_members_do_not_change_the_key_or_its_thumbprint() {
        let n = nonces();
        let key = TestKey::generate("dpop", SigningAlg::ES256);
        let plain =
            check_proof(&proof(&key, "ES256", &claims(NOW)), &check(&n), NOW).expect("plain");
        let mut jwk = key.public_jwk();
        jwk["kid"] = json!("k-1");
        jwk["use"] = json!("sig");
        jwk["key_ops"] = json!(["verify"]);
        jwk["ext"] = json!(true);
        let decorated = key.sign(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
            &claims(NOW),
        );
        let p = check_proof(&decorated, &check(&n), NOW).expect("decorated jwk");
        assert_eq!(p.jkt, plain.jkt);
    }

    #[test]
    fn the_rfc7638_example_thumbprint() {
        // RFC 7638 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        // Members other than the required ones (alg, kid) do not count.
        assert_eq!(
            thumbprint_of(&[("e", Some("AQAB")), ("kty", Some("RSA")), ("n", Some(n))]).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    /// Every refusal the issue names, each with the error the RFC names and for its reason.
    #[test]
    fn refusals() {
        let n = nonces();
        let key = TestKey::generate("dpop", SigningAlg::ES256);
        let other = TestKey::generate("other", SigningAlg::ES256);
        let rsa = TestKey::generate("rsa", SigningAlg::RS256);
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims(NOW);
            f(&mut c);
            proof(&key, "ES256", &c)
        };
        let good = proof(&key, "ES256", &claims(NOW));
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        parts[2] = {
            let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).expect("sig");
            sig[0] ^= 1;
            URL_SAFE_NO_PAD.encode(sig)
        };
        let bad_signature = parts.join(".");
        let mut private = key.public_jwk();
        private["d"] = json!("AAAA");
        let cases: Vec<(&str, &str, String, ProofCheck<'_>)> = vec![
            (
                "wrong htm",
                "htm",
                with(&|c| c["htm"] = json!("GET")),
                check(&n),
            ),
            (
                "wrong htu",
                "htu",
                with(&|c| c["htu"] = json!("https://broker.example/userinfo")),
                check(&n),
            ),
            (
                "htu of another host",
                "htu",
                with(&|c| c["htu"] = json!("https://evil.example/token")),
                check(&n),
            ),
            (
                "no htu",
                "no htu",
                with(&|c| {
                    c.as_object_mut().map(|o| o.remove("htu"));
                }),
                check(&n),
            ),
            (
                "stale iat",
                "too old",
                proof(&key, "ES256", &claims(NOW - PROOF_MAX_AGE_SECS - 1)),
                check(&n),
            ),
            (
                "future iat",
                "future",
                proof(&key, "ES256", &claims(NOW + PROOF_MAX_AHEAD_SECS + 1)),
                check(&n),
            ),
            (
                "iat not a number",
                "NumericDate",
                with(&|c| c["iat"] = json!("now")),
                check(&n),
            ),
            (
                "no jti",
                "no jti",
                with(&|c| c["jti"] = json!("")),
                check(&n),
            ),
            ("bad signature", "signature", bad_signature, check(&n)),
            (
                "claims as an array (the members in order)",
                "not a JSON object",
                key.sign(
                    &header(&key, "ES256"),
                    &json!(["jti-array", "POST", URL, NOW]),
                ),
                check(&n),
            ),
            (
                "signed by another key than its jwk",
                "signature",
                other.sign(&header(&key, "ES256"), &claims(NOW)),
                check(&n),
            ),
            (
                "typ JWT",
                "typ",
                key.sign(
                    &json!({"typ": "JWT", "alg": "ES256", "jwk": key.public_jwk()}),
                    &claims(NOW),
                ),
                check(&n),
            ),
            (
                "no jwk",
                "no jwk",
                key.sign(&json!({"typ": "dpop+jwt", "alg": "ES256"}), &claims(NOW)),
                check(&n),
            ),
            (
                "private key in jwk",
                "private",
                key.sign(
                    &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}),
                    &claims(NOW),
                ),
                check(&n),
            ),
            (
                "alg none",
                "`none`",
                unsigned(
                    &json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.public_jwk()}),
                    &claims(NOW),
                    "",
                ),
                check(&n),
            ),
            (
                "alg HS256 with an oct jwk",
                "`HS256`",
                unsigned(
                    &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}),
                    &claims(NOW),
                    "c2ln",
                ),
                check(&n),
            ),
            (
                "alg that does not fit the key",
                "not a key for its alg",
                rsa.sign(
                    &json!({"typ": "dpop+jwt", "alg": "PS256", "jwk": key.public_jwk()}),
                    &claims(NOW),
                ),
                check(&n),
            ),
            (
                "RS256 from a FAPI client",
                "`RS256`",
                proof(&rsa, "RS256", &claims(NOW)),
                ProofCheck {
                    algorithms: FAPI_ALGS,
                    ..check(&n)
                },
            ),
            (
                "missing ath at a resource",
                "no ath",
                proof(&key, "ES256", &claims(NOW)),
                ProofCheck {
                    access_token: Some(AT),
                    ..check(&n)
                },
            ),
            (
                "wrong ath at a resource",
                "ath is not",
                with(&|c| c["ath"] = json!(access_token_hash("another token"))),
                ProofCheck {
                    access_token: Some(AT),
                    ..check(&n)
                },
            ),
            (
                "nonce not a string",
                "nonce is not a string",
                with(&|c| c["nonce"] = json!(7)),
                check(&n),
            ),
        ];
        for (name, reason, token, c) in cases {
            let (code, why) = refused(check_proof(&token, &c, NOW));
            assert_eq!(code, "invalid_dpop_proof", "{name}: {why}");
            assert!(
                why.contains(reason),
                "{name}: refused for another reason: {why}"
            );
        }
        // The right ath is accepted.
        let ok = with(&|c| c["ath"] = json!(access_token_hash(AT)));
        assert!(check_proof(
            &ok,
            &ProofCheck {
                access_token: Some(AT),
                ..check(&n)
            },
            NOW
        )
        .is_ok());
        // The window's edges are inside it.
        for iat in [NOW - PROOF_MAX_AGE_SECS, NOW + PROOF_MAX_AHEAD_SECS] {
            assert!(check_proof(&proof(&key, "ES256", &claims(iat)), &check(&n), NOW).is_ok());
        }
        // htu is compared without query and fragment.
        let q = with(&|c| c["htu"] = json!("https://broker.example/token?x=1#f"));
        assert!(check_proof(&q, &check(&n), NOW).is_ok());
    }

    #[test]
    fn nonces_are_required_rotated_and_shared() {
        let n = nonces();
        let key = TestKey::generate("dpop", SigningAlg::ES256);
        let required = ProofCheck {
            require_nonce: true,
            ..check(&n)
        };
        // None: use_dpop_nonce with the current nonce.
        let err = check_proof(&proof(&key, "ES256", &claims(NOW)), &required, NOW)
            .expect_err("needs a nonce");
        assert_eq!(err.code(), "use_dpop_nonce");
        let issued = err.nonce().expect("a DPoP-Nonce").to_string();
        assert_eq!(issued, n.current(NOW));
        let mut c = claims(NOW);
        c["nonce"] = json!(issued);
        let p = check_proof(&proof(&key, "ES256", &c), &required, NOW).expect("with the nonce");
        assert_eq!(p.next_nonce, None);
        // Another instance with the same configuration accepts it: nothing is stored.
        let elsewhere = nonces();
        assert_eq!(elsewhere.check(&issued, NOW), NonceState::Current);
        // One slot later it is still accepted, and the current one is handed out.
        let later = NOW + NONCE_SLOT_SECS;
        let mut c = claims(later);
        c["nonce"] = json!(issued);
        let p = check_proof(&proof(&key, "ES256", &c), &required, later).expect("previous slot");
        assert_eq!(p.next_nonce, Some(n.current(later)));
        assert_ne!(n.current(later), issued, "nonces rotate");
        // Two slots later it is refused with a fresh nonce.
        let much_later = NOW + 2 * NONCE_SLOT_SECS;
        let mut c = claims(much_later);
        c["nonce"] = json!(issued);
        let err =
            check_proof(&proof(&key, "ES256", &c), &required, much_later).expect_err("expired");
        assert_eq!(err.code(), "use_dpop_nonce");
        assert_eq!(err.nonce(), Some(n.current(much_later).as_str()));
        // A nonce that was never issued, or one of another configuration.
        for fake in [
            "made-up".to_string(),
            DpopNonces::new(b"another secret").current(NOW),
        ] {
            let mut c = claims(NOW);
            c["nonce"] = json!(fake);
            let err =
                check_proof(&proof(&key, "ES256", &c), &check(&n), NOW).expect_err("not issued");
            assert_eq!(err.code(), "use_dpop_nonce", "{fake}");
        }
    }

    #[tokio::test]
    async fn a_jti_is_used_once_even_under_concurrency() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            store::embedded::EmbeddedStore::open(&dir.path().join("s.redb")).expect("store");
        let n = nonces();
        let key = TestKey::generate("dpop", SigningAlg::ES256);
        let token = proof(&key, "ES256", &claims(NOW));
        let c = check(&n);
        let now_ms = NOW * 1000;
        let results = futures_util::future::join_all(
            (0..8).map(|_| verify_proof(&store, &token, &c, now_ms)),
        )
        .await;
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(accepted, 1, "exactly one use of a proof");
        for r in results.into_iter().filter_map(Result::err) {
            assert_eq!(r.code(), "invalid_dpop_proof");
            assert!(r.description().contains("replay"), "{}", r.description());
        }
        // The same jti under another key is another proof; under the same key, a replay.
        let mut fixed = claims(NOW);
        fixed["jti"] = json!("chosen-by-the-client");
        let other = TestKey::generate("other", SigningAlg::ES256);
        assert!(
            verify_proof(&store, &proof(&key, "ES256", &fixed), &c, now_ms)
                .await
                .is_ok()
        );
        assert!(
            verify_proof(&store, &proof(&other, "ES256", &fixed), &c, now_ms)
                .await
                .is_ok()
        );
        let again = verify_proof(&store, &proof(&key, "ES256", &fixed), &c, now_ms).await;
        assert_eq!(again.expect_err("replay").code(), "invalid_dpop_proof");
    }

    /// Two broker instances on one Redis share the replay cache: a proof accepted by one
    /// is refused by the other. Fails (never skips) when Redis is not reachable.
    #[tokio::test]
    async fn a_proof_replayed_at_another_instance_on_the_same_redis_is_refused() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        // A prefix of this test's own; its keys expire with the replay window.
        let prefix = format!("dpop-test-{}:", rand::random::<u64>());
        let connect = || store::redis::RedisStore::connect(&url, &prefix, Duration::from_secs(2));
        let (first, second) = (connect().await, connect().await);
        let (Ok(first), Ok(second)) = (first, second) else {
            panic!("Redis is needed at {url}: start redis-server or set REDIS_URL");
        };
        let n = nonces();
        let key = TestKey::generate("dpop", SigningAlg::ES256);
        // Real time here: Redis expires the keys by its own clock.
        let now_ms = crate::util::now_millis();
        let token = proof(&key, "ES256", &claims(now_ms / 1000));
        let c = check(&n);
        let (a, b) = futures_util::join!(
            verify_proof(&first, &token, &c, now_ms),
            verify_proof(&second, &token, &c, now_ms)
        );
        assert_eq!(
            usize::from(a.is_ok()) + usize::from(b.is_ok()),
            1,
            "exactly one instance accepts the proof"
        );
        let refused = a.err().or(b.err()).expect("one refusal");
        assert!(
            refused.description().contains("replay"),
            "{}",
            refused.description()
        );
    }

    #[test]
    fn bindings_of_codes_and_tokens() {
        let p = Proof {
            jkt: "a".repeat(43),
            jti: "j".into(),
            iat: NOW,
            next_nonce: None,
        };
        let other = "b".repeat(43);
        // Authorization requests.
        assert_eq!(authorization_binding(None, None), Ok(None));
        assert_eq!(
            authorization_binding(None, Some(&p)),
            Ok(Some(p.jkt.clone()))
        );
        assert_eq!(
            authorization_binding(Some(&p.jkt), Some(&p)),
            Ok(Some(p.jkt.clone()))
        );
        assert!(authorization_binding(Some(&other), Some(&p)).is_err());
        assert!(authorization_binding(Some("short"), None).is_err());
        // Codes.
        assert!(check_code_binding(None, None).is_ok());
        assert!(check_code_binding(Some(&p.jkt), Some(&p)).is_ok());
        assert!(check_code_binding(Some(&p.jkt), None).is_err());
        assert!(check_code_binding(Some(&other), Some(&p)).is_err());
        // Tokens at a resource.
        assert!(check_token_binding(None, Scheme::Bearer, None).is_ok());
        assert!(check_token_binding(Some(&p.jkt), Scheme::Dpop, Some(&p)).is_ok());
        for (cnf, scheme, proof, code) in [
            (Some(p.jkt.as_str()), Scheme::Bearer, None, "invalid_token"),
            (
                Some(p.jkt.as_str()),
                Scheme::Bearer,
                Some(&p),
                "invalid_token",
            ),
            (
                Some(other.as_str()),
                Scheme::Dpop,
                Some(&p),
                "invalid_token",
            ),
            (
                Some(p.jkt.as_str()),
                Scheme::Dpop,
                None,
                "invalid_dpop_proof",
            ),
            (None, Scheme::Dpop, Some(&p), "invalid_token"),
        ] {
            let err = check_token_binding(cnf, scheme, proof).expect_err("refused");
            assert_eq!(err.code(), code);
            assert_eq!(err.resource_status(), 401);
        }
    }

    #[test]
    fn challenges_are_those_of_the_rfc() {
        assert_eq!(challenge(FAPI_ALGS), "DPoP algs=\"PS256 ES256 EdDSA\"");
        let err = DpopError::InvalidProof("bad \"quote\"\nline".into());
        assert_eq!(
            err.www_authenticate(&[Algorithm::ES256]),
            "DPoP error=\"invalid_dpop_proof\", error_description=\"bad 'quote' line\", algs=\"ES256\""
        );
        assert_eq!(err.endpoint_status(), 400);
        assert_eq!(authorization("DPoP abc"), Some((Scheme::Dpop, "abc")));
        assert_eq!(authorization("dpop abc"), Some((Scheme::Dpop, "abc")));
        assert_eq!(authorization("Bearer abc"), Some((Scheme::Bearer, "abc")));
        assert_eq!(authorization("Basic abc"), None);
        assert_eq!(authorization("DPoP "), None);
    }
}
