//! What codes and tokens stand for, and how they are minted.
//!
//! A code and every token issued from it belong to one *family*. The family record
//! (`fam:{id}`) lives as long as the family may be refreshed; deleting it revokes every
//! refresh and access token of the family at once (code replay, refresh-token reuse,
//! revocation). The family id of a code is derived from the code, so a replayed code can
//! revoke what its first redemption issued without any lookup table.
//!
//! Store keys of one family share the Redis hash tag `{family}`, so the rotation script
//! works on a Redis Cluster too.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Client, Settings};
use crate::keys::KeyError;
use crate::keyspace;
use crate::protocol::{ClientId, PersonId, RedirectUri, Secret, Sid};
use crate::util::{random_token, sha256_b64};
use store::{Store, StoreResult};

/// What a citizen granted a client in one login.
#[derive(Clone, Serialize, Deserialize)]
pub struct Grant {
    /// The client.
    pub client_id: ClientId,
    /// The `sub` the client sees.
    pub sub: String,
    /// The person.
    pub person_id: PersonId,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Claims released to the client (snapshot at login).
    pub claims: BTreeMap<String, serde_json::Value>,
    /// Time of authentication (Unix seconds).
    pub auth_time: u64,
    /// `acr` reached.
    pub acr: String,
    /// `amr` values.
    pub amr: Vec<String>,
    /// Browser session id.
    pub sid: Sid,
}

impl std::fmt::Debug for Grant {
    // Claims are personal data: only their names are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("claims", &self.claims.keys().collect::<Vec<_>>())
            .field("acr", &self.acr)
            .finish_non_exhaustive()
    }
}

impl Grant {
    /// Whether the grant includes `offline_access`.
    pub fn offline(&self) -> bool {
        self.scopes.iter().any(|s| s == "offline_access")
    }
}

/// The record behind an authorization code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeRecord {
    /// The grant.
    pub grant: Grant,
    /// The redirect URI the code was sent to.
    pub redirect_uri: RedirectUri,
    /// PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// `nonce` to put in the ID token.
    pub nonce: Option<Secret>,
    /// The DPoP key the code is bound to (`dpop_jkt`, RFC 9449 10): only a proof of that
    /// key redeems it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// The record behind a refresh token (and, as `fam:{id}`, behind a family).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FamilyRecord {
    /// The grant.
    pub grant: Grant,
    /// When the family ends, whatever the rotations (Unix ms).
    pub expires: u64,
    /// The DPoP key thumbprint its refresh tokens are bound to (RFC 9449 5): the code was
    /// redeemed with a proof, so every refresh needs a proof of the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

/// The value a used code or rotated refresh token is replaced with.
pub const TOMBSTONE: &[u8] = b"\"used\"";

/// Family id of a code.
pub fn family_of_code(code: &str) -> String {
    sha256_b64(format!("family:{code}").as_bytes())[..22].to_string()
}

/// The mark at the start of a code bound to no DPoP key: `u.{secret}`. Redeeming it needs
/// no read of its record before using it up (there is no key to check a proof against
/// first). A random code is base64url, without `.`, so no other code looks marked, and the
/// store key is the digest of the whole code, so the mark can be neither added nor removed.
const UNBOUND_CODE_MARK: &str = "u.";

/// Whether a code says it is bound to no DPoP key (see [`UNBOUND_CODE_MARK`]).
pub fn code_is_unbound(code: &str) -> bool {
    code.starts_with(UNBOUND_CODE_MARK)
}

/// Family id and store key of a refresh token `{fid}.{secret}`; `None` when malformed.
pub fn refresh_key(token: &str) -> Option<(String, String)> {
    let (fid, secret) = token.split_once('.')?;
    if fid.len() != 22 || secret.len() < 32 {
        return None;
    }
    Some((fid.to_string(), keyspace::refresh_token(fid, secret)))
}

/// The mark at the start of the secret part of a refresh token whose family is bound to no
/// DPoP key: `{fid}.u.{secret}`. A random secret is base64url, which has no `.`, so no
/// unmarked token (one issued before the marks existed) looks marked. The store key is the
/// digest of the whole secret part, so a mark cannot be changed: the changed token finds no
/// record.
const UNBOUND_MARK: &str = "u.";

/// The mark of a refresh token whose family is bound to a DPoP key (RFC 9449 5):
/// `{fid}.b.{secret}.{tag}`, the tag a keyed hash of the family, the secret and the key's
/// thumbprint. A grant learns from the token alone whether its proof is of the right key,
/// so it refuses a stolen token before touching the store (the family is not burnt) and
/// rotates a good one in one store operation.
const BOUND_MARK: &str = "b.";

/// What a refresh token says of its family's DPoP key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The family has no key.
    Unbound,
    /// The family is bound to a key; [`bound_to`] tells which.
    Bound,
    /// A token issued before the marks: its record says.
    Unmarked,
}

/// A new refresh token of a family, marked with the family's DPoP key (`jkt`) or its lack.
pub fn new_refresh_token(settings: &Settings, fid: &str, jkt: Option<&str>) -> String {
    let secret = random_token(32);
    match jkt {
        None => format!("{fid}.{UNBOUND_MARK}{secret}"),
        Some(jkt) => format!(
            "{fid}.{BOUND_MARK}{secret}.{}",
            binding_tag(settings, fid, &secret, jkt)
        ),
    }
}

/// The tag of a bound family's token: only the broker can make one (its key is derived
/// from the pairwise secret for this purpose alone; the parts are length-prefixed).
fn binding_tag(settings: &Settings, fid: &str, secret: &str, jkt: &str) -> String {
    use base64::Engine;
    let mac =
        settings
            .refresh_binding_key
            .mac(&[fid.as_bytes(), secret.as_bytes(), jkt.as_bytes()]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
}

/// The mark of a refresh token.
pub fn mark(token: &str) -> Mark {
    match token.split_once('.') {
        Some((_, rest)) if rest.starts_with(UNBOUND_MARK) => Mark::Unbound,
        Some((_, rest)) if rest.starts_with(BOUND_MARK) => Mark::Bound,
        _ => Mark::Unmarked,
    }
}

/// Whether a bound family's token is bound to the key with thumbprint `jkt`.
pub fn bound_to(settings: &Settings, token: &str, jkt: &str) -> bool {
    let Some((fid, rest)) = token.split_once('.') else {
        return false;
    };
    let Some((secret, tag)) = rest
        .strip_prefix(BOUND_MARK)
        .and_then(|r| r.split_once('.'))
    else {
        return false;
    };
    crate::util::ct_eq(
        tag.as_bytes(),
        binding_tag(settings, fid, secret, jkt).as_bytes(),
    )
}

/// Stores a code record and returns the code.
pub async fn issue_code(
    settings: &Settings,
    store: &dyn Store,
    record: &CodeRecord,
    now: u64,
) -> StoreResult<String> {
    let code = match record.dpop_jkt {
        None => format!("{UNBOUND_CODE_MARK}{}", random_token(32)),
        Some(_) => random_token(32),
    };
    // FAPI 2.0: a code lives at most 60 seconds.
    let ttl = match settings
        .clients
        .get(record.grant.client_id.as_str())
        .and_then(|c| c.profile)
    {
        Some(profile) => profile.code_ttl(settings.tokens.code_ttl),
        None => settings.tokens.code_ttl,
    };
    keyspace::put_json(
        store,
        &keyspace::code(&code),
        record,
        Some(Duration::from_secs(ttl)),
        now,
    )
    .await?;
    Ok(code)
}

/// The JSON body of a successful token response (no `Debug`: it holds the tokens).
#[derive(Serialize)]
pub struct TokenResponse {
    /// RFC 9068 access token.
    pub access_token: String,
    /// `Bearer`, or `DPoP` for a DPoP-bound access token (RFC 9449 5).
    pub token_type: &'static str,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
    /// OpenID Connect ID token.
    pub id_token: String,
    /// Refresh token, rotated at each use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Granted scopes.
    pub scope: String,
}

impl TokenResponse {
    /// The response as JSON, in the order of the fields above. The tokens are compact JWS
    /// and base64url made here (or, for a client that does not rotate, its own refresh token
    /// echoed back, which the store found byte for byte), characters JSON never escapes, so
    /// they are copied as they are rather than scanned by serde_json's escaping (13,700
    /// instructions of a refresh grant, 8 % of its work beside the signatures); the scope is
    /// escaped as any string.
    pub fn to_json(&self) -> Vec<u8> {
        let refresh = self.refresh_token.as_deref();
        let mut out = Vec::with_capacity(
            160 + self.access_token.len()
                + self.id_token.len()
                + refresh.map_or(0, str::len)
                + self.scope.len(),
        );
        out.extend_from_slice(b"{\"access_token\":\"");
        push_token(&mut out, &self.access_token);
        out.extend_from_slice(b"\",\"token_type\":\"");
        push_token(&mut out, self.token_type);
        out.extend_from_slice(b"\",\"expires_in\":");
        // Writing a number or a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &self.expires_in);
        out.extend_from_slice(b",\"id_token\":\"");
        push_token(&mut out, &self.id_token);
        out.push(b'"');
        if let Some(refresh) = refresh {
            out.extend_from_slice(b",\"refresh_token\":\"");
            push_token(&mut out, refresh);
            out.push(b'"');
        }
        out.extend_from_slice(b",\"scope\":");
        let _ = serde_json::to_writer(&mut out, &self.scope);
        out.push(b'}');
        out
    }
}

/// Appends a token that needs no JSON escaping (base64url, dots, letters).
fn push_token(out: &mut Vec<u8>, token: &str) {
    debug_assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'),
        "a token with characters JSON escapes"
    );
    out.extend_from_slice(token.as_bytes());
}

/// Claims of an access token (RFC 9068). `S` is `String` when a token is read and `&str`
/// when one is minted, which then borrows from the grant instead of copying it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims<S = String> {
    /// Issuer.
    pub iss: S,
    /// Subject.
    pub sub: S,
    /// Audience: the client.
    pub aud: S,
    /// The client.
    pub client_id: S,
    /// Expiry.
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Token id.
    pub jti: String,
    /// Scopes, space separated.
    pub scope: S,
    /// Authentication time.
    pub auth_time: u64,
    /// `acr`.
    pub acr: S,
    /// Session id.
    pub sid: S,
    /// Family id, for revocation checks.
    pub fam: S,
    /// Confirmation (RFC 9449 6.1): the thumbprint of the DPoP key the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation<S>>,
}

/// The `cnf` claim of a DPoP-bound token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation<S = String> {
    /// RFC 7638 SHA-256 thumbprint of the key.
    pub jkt: S,
}

/// Claims an ID token carries beside the released ones; a released claim of the same name
/// is left out (the protocol's value wins).
const ID_TOKEN_CLAIMS: [&str; 11] = [
    "iss",
    "sub",
    "aud",
    "azp",
    "exp",
    "iat",
    "auth_time",
    "acr",
    "amr",
    "sid",
    "nonce",
];

/// The claims of an ID token, serialised straight from the grant.
struct IdClaims<'a> {
    released: &'a BTreeMap<String, serde_json::Value>,
    iss: &'a str,
    sub: &'a str,
    client_id: &'a str,
    exp: u64,
    iat: u64,
    auth_time: u64,
    acr: &'a str,
    amr: &'a [String],
    sid: &'a str,
    nonce: Option<&'a str>,
}

impl Serialize for IdClaims<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in self.released {
            if !ID_TOKEN_CLAIMS.contains(&name.as_str()) {
                map.serialize_entry(name, value)?;
            }
        }
        map.serialize_entry("iss", self.iss)?;
        map.serialize_entry("sub", self.sub)?;
        map.serialize_entry("aud", self.client_id)?;
        map.serialize_entry("azp", self.client_id)?;
        map.serialize_entry("exp", &self.exp)?;
        map.serialize_entry("iat", &self.iat)?;
        map.serialize_entry("auth_time", &self.auth_time)?;
        map.serialize_entry("acr", self.acr)?;
        map.serialize_entry("amr", self.amr)?;
        map.serialize_entry("sid", self.sid)?;
        if let Some(nonce) = self.nonce {
            map.serialize_entry("nonce", nonce)?;
        }
        map.end()
    }
}

/// Mints the access token and ID token of a grant; with `jkt`, the access token is bound
/// to that DPoP key.
#[allow(clippy::too_many_arguments)]
pub fn mint(
    settings: &Settings,
    client: &Client,
    grant: &Grant,
    fid: &str,
    nonce: Option<&str>,
    refresh_token: Option<String>,
    jkt: Option<&str>,
    now_ms: u64,
) -> Result<TokenResponse, KeyError> {
    let now = now_ms / 1000;
    let scope = grant.scopes.join(" ");
    // One keyed hash for both tokens.
    let sid = crate::session::client_sid(settings, &grant.sid, &client.id);
    let at_key = settings
        .keys
        .signer(settings.tokens.access_token_alg)
        .ok_or(KeyError::Sign)?;
    let access = AccessClaims::<&str> {
        iss: &settings.issuer,
        sub: &grant.sub,
        aud: &client.id,
        client_id: &client.id,
        exp: now + settings.tokens.access_token_ttl,
        iat: now,
        jti: random_token(16),
        scope: &scope,
        auth_time: grant.auth_time,
        acr: &grant.acr,
        sid: &sid,
        fam: fid,
        cnf: jkt.map(|jkt| Confirmation { jkt }),
    };
    let access_token = at_key.sign("at+jwt", &access)?;

    let id = IdClaims {
        released: &grant.claims,
        iss: &settings.issuer,
        sub: &grant.sub,
        client_id: &client.id,
        exp: now + settings.tokens.id_token_ttl,
        iat: now,
        auth_time: grant.auth_time,
        acr: &grant.acr,
        amr: &grant.amr,
        sid: &sid,
        nonce,
    };
    let id_key = settings
        .keys
        .signer(client.id_token_alg)
        .ok_or(KeyError::Sign)?;
    let id_token = id_key.sign("JWT", &id)?;

    Ok(TokenResponse {
        access_token,
        token_type: if jkt.is_some() { "DPoP" } else { "Bearer" },
        expires_in: settings.tokens.access_token_ttl,
        id_token,
        refresh_token,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_token_claims_carry_released_claims_and_the_protocol_wins_a_clash() {
        let released = BTreeMap::from([
            ("name".to_string(), serde_json::json!("Citizen An")),
            ("sub".to_string(), serde_json::json!("forged")),
            ("nonce".to_string(), serde_json::json!("forged")),
        ]);
        let amr = vec!["pwd".to_string()];
        let claims = |nonce| IdClaims {
            released: &released,
            iss: "https://id.example",
            sub: "s1",
            client_id: "rp",
            exp: 20,
            iat: 10,
            auth_time: 5,
            acr: "substantial",
            amr: &amr,
            sid: "sid1",
            nonce,
        };
        let json = serde_json::to_value(claims(Some("n1"))).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "name": "Citizen An", "iss": "https://id.example", "sub": "s1", "aud": "rp",
                "azp": "rp", "exp": 20, "iat": 10, "auth_time": 5, "acr": "substantial",
                "amr": ["pwd"], "sid": "sid1", "nonce": "n1",
            })
        );
        // Without a nonce of its own (a refresh), a released `nonce` is still not sent.
        let json = serde_json::to_value(claims(None)).expect("serialises");
        assert!(json.get("nonce").is_none());
        assert_eq!(json["sub"], "s1");
    }

    #[test]
    fn the_token_response_json_is_what_serde_writes() {
        let mut response = TokenResponse {
            access_token: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzMSJ9.c2ln-_".into(),
            token_type: "DPoP",
            expires_in: 300,
            id_token: "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJycCJ9.c2ln".into(),
            refresh_token: Some("fam.b.c2VjcmV0.dGFn".into()),
            scope: "openid \"odd\" \\ scope\u{1}".into(),
        };
        for _ in 0..2 {
            let ours: serde_json::Value =
                serde_json::from_slice(&response.to_json()).expect("valid JSON");
            assert_eq!(ours, serde_json::to_value(&response).expect("serde"));
            assert_eq!(ours["scope"], response.scope.as_str());
            response.refresh_token = None;
        }
        assert!(!String::from_utf8(response.to_json())
            .expect("utf-8")
            .contains("refresh_token"));
    }
}
