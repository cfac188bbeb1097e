//! The token endpoint: `authorization_code` and `refresh_token` grants.

use std::time::Duration;

use super::dpop::{self, check_code_binding, Proof, Unspent};
use super::grants::{
    bound_to, code_is_unbound, family_of_code, mark, mint, new_refresh_token, refresh_key,
    CodeRecord, FamilyRecord, Mark, TokenResponse, TOMBSTONE,
};
use super::{OAuthError, Params};
use crate::config::{Client, Settings};
use crate::keyspace;
use crate::util::{ct_eq, sha256_b64};
use store::{Rotation, SingleUse, Store};

/// Answers a token request of an authenticated client: the `authorization_code` and
/// `refresh_token` grants. `proof` is the request's DPoP proof, checked but not yet used
/// up (a refresh rotation uses it up in its own store operation): the tokens are bound to
/// its key.
pub async fn grant(
    settings: &Settings,
    store: &dyn Store,
    client: &Client,
    params: &Params,
    proof: Option<Unspent>,
    now: u64,
) -> Result<TokenResponse, OAuthError> {
    match params.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let proof = spend(store, proof, now).await?;
            authorization_code(settings, store, client, params, proof.as_ref(), now).await
        }
        Some("refresh_token") => refresh(settings, store, client, params, proof, now).await,
        Some(other) => Err(OAuthError::new(
            "unsupported_grant_type",
            format!("grant_type `{other}` is not supported"),
        )),
        None => Err(OAuthError::invalid_request("grant_type is missing")),
    }
}

/// Uses up a proof's `jti` on its own.
async fn spend(
    store: &dyn Store,
    proof: Option<Unspent>,
    now: u64,
) -> Result<Option<Proof>, OAuthError> {
    match proof {
        Some(unspent) => unspent
            .spend(store, now)
            .await
            .map(Some)
            .map_err(|e| e.at_endpoint()),
        None => Ok(None),
    }
}

async fn authorization_code(
    settings: &Settings,
    store: &dyn Store,
    client: &Client,
    params: &Params,
    proof: Option<&Proof>,
    now: u64,
) -> Result<TokenResponse, OAuthError> {
    let code = params
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let fid = family_of_code(code);
    // A code bound to a DPoP key (RFC 9449 10) is refused with another key before it is
    // used up: a thief's attempt must not burn the rightful client's code. A code marked
    // unbound has nothing to check first.
    if !code_is_unbound(code) {
        if let Some(bytes) = store.get(&keyspace::code(code), now).await? {
            if bytes != TOMBSTONE {
                if let Ok(r) = serde_json::from_slice::<CodeRecord>(&bytes) {
                    check_code_binding(r.dpop_jkt.as_deref(), proof)
                        .map_err(OAuthError::invalid_grant)?;
                }
            }
        }
    }
    let old = store.swap(&keyspace::code(code), TOMBSTONE, now).await?;
    let record: CodeRecord = match old {
        None => return Err(OAuthError::invalid_grant("the code is invalid or expired")),
        Some(v) if v == TOMBSTONE => {
            // RFC 6749 4.1.2: a code used twice revokes what it issued.
            store.delete(&keyspace::family(&fid), now).await?;
            tracing::warn!(target: "audit", event = "code.replayed", client = %client.id, "authorization code replayed; its tokens are revoked");
            return Err(OAuthError::invalid_grant("the code was already used"));
        }
        Some(v) => serde_json::from_slice(&v)
            .map_err(|_| OAuthError::server_error("stored code is unreadable"))?,
    };
    if record.grant.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    check_code_binding(record.dpop_jkt.as_deref(), proof).map_err(OAuthError::invalid_grant)?;
    let jkt = proof.map(|p| p.jkt.clone());
    if params.get("redirect_uri").map(String::as_str) != Some(record.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&record.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            if !valid_verifier(verifier) {
                return Err(OAuthError::invalid_grant("code_verifier is malformed"));
            }
            if !ct_eq(
                sha256_b64(verifier.as_bytes()).as_bytes(),
                challenge.as_bytes(),
            ) {
                return Err(OAuthError::invalid_grant("PKCE verification failed"));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is missing")),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier given but no code_challenge was sent",
            ))
        }
        (None, None) => {}
    }

    let expires = now + settings.tokens.refresh_token_ttl * 1000;
    // RFC 9449 5: the refresh tokens of a code redeemed with a proof are bound to its key,
    // for public and confidential clients alike.
    let family = FamilyRecord {
        grant: record.grant.clone(),
        expires,
        jkt: jkt.clone(),
    };
    let ttl = Duration::from_secs(settings.tokens.refresh_token_ttl);
    let family_key = keyspace::family(&fid);
    let family_bytes = keyspace::encode(&family_key, &family)?;
    let refresh_token = new_refresh_token(settings, &fid, jkt.as_deref());
    let Some((_, token_key)) = refresh_key(&refresh_token) else {
        return Err(OAuthError::server_error("a new refresh token is malformed"));
    };
    // The family and its first token in one write (one hash tag, one slot).
    store
        .put_many(&[&family_key, &token_key], &family_bytes, Some(ttl), now)
        .await?;
    if !record.grant.offline() {
        // Logout of the session revokes this family; `offline_access` outlives the session.
        let lifetime = Duration::from_secs(settings.session.lifetime);
        store
            .add_member(
                &keyspace::session_families(&record.grant.sid),
                &fid,
                lifetime,
                now,
            )
            .await?;
    }
    let response = mint(
        settings,
        client,
        &record.grant,
        &fid,
        record.nonce.as_ref().map(crate::protocol::Secret::expose),
        Some(refresh_token),
        jkt.as_deref(),
        now,
    )
    .map_err(|e| OAuthError::server_error(e.to_string()))?;
    metrics::counter!("broker_tokens_issued_total", "grant" => "authorization_code").increment(1);
    tracing::info!(client = %client.id, grant = "authorization_code", "tokens issued");
    Ok(response)
}

async fn refresh(
    settings: &Settings,
    store: &dyn Store,
    client: &Client,
    params: &Params,
    proof: Option<Unspent>,
    now: u64,
) -> Result<TokenResponse, OAuthError> {
    let token = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let Some((fid, old_key)) = refresh_key(token) else {
        return Err(OAuthError::invalid_grant("the refresh token is invalid"));
    };
    // A bound refresh token without its key's proof is refused before it is rotated, so a
    // stolen one can neither be used nor burn the family. A marked token says whether its
    // family is bound, and to which key (see `grants::Mark`), so that needs no read; an
    // unmarked one's record is read first. `family_key`: the family's DPoP key, once known.
    let proof_jkt = proof.as_ref().map(|p| p.proof().jkt.as_str());
    let mut family_key: Option<Option<String>> = match (mark(token), proof_jkt) {
        (Mark::Unbound, _) => Some(None),
        (Mark::Bound, Some(jkt)) if bound_to(settings, token, jkt) => Some(Some(jkt.to_string())),
        (Mark::Bound, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "the refresh token is bound to another DPoP key",
            ))
        }
        (Mark::Bound, None) => {
            return Err(OAuthError::invalid_grant(
                "this refresh token is bound to a DPoP key: send a DPoP proof",
            ))
        }
        (Mark::Unmarked, _) => None,
    };
    // A rotation of a marked token uses the proof up in its own store operation; otherwise
    // it is used up now, before anything else is read or written.
    let (spent, unspent) = if family_key.is_some() && client.rotate_refresh_tokens {
        (None, proof)
    } else {
        (spend(store, proof, now).await?, None)
    };
    let proof = spent.as_ref().or(unspent.as_ref().map(Unspent::proof));
    let asked: Option<Vec<String>> = params
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_string).collect());
    // A scope the grant does not hold is refused before a rotation, which would otherwise
    // leave the client with a used-up token and no new one (a rare request: one read more).
    if family_key.is_none() || (asked.is_some() && client.rotate_refresh_tokens) {
        if let Some(bytes) = store.get(&old_key, now).await? {
            if bytes != TOMBSTONE {
                if let Ok(f) = serde_json::from_slice::<FamilyRecord>(&bytes) {
                    check_refresh_binding(&f, proof)?;
                    // Another client's token goes on to the rotation, which revokes it.
                    if let (Some(asked), true) = (&asked, f.grant.client_id == client.id) {
                        check_narrowing(&f.grant.scopes, asked)?;
                    }
                    family_key = Some(f.jkt);
                }
            }
        }
    }
    let (family, next_token) = if client.rotate_refresh_tokens {
        let new_jkt = family_key.flatten();
        rotate(
            settings,
            store,
            client,
            (&fid, &old_key),
            new_jkt.as_deref(),
            unspent.as_ref(),
            now,
        )
        .await?
    } else {
        // No rotation (FAPI 2.0 Security Profile): the same token is used again; the
        // family still dies on revocation, code replay and logout.
        let live = store.get(&keyspace::family(&fid), now).await?.is_some();
        let record = store.get(&old_key, now).await?.filter(|_| live);
        match record {
            Some(bytes) if bytes != TOMBSTONE => (
                keyspace::decode::<FamilyRecord>(&old_key, &bytes)?,
                token.clone(),
            ),
            _ => {
                return Err(OAuthError::invalid_grant(
                    "the refresh token is invalid or revoked",
                ))
            }
        }
    };
    if family.grant.client_id != client.id {
        store.delete(&keyspace::family(&fid), now).await?;
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    check_refresh_binding(&family, proof)?;
    let jkt = proof.map(|p| p.jkt.clone());
    let mut grant = family.grant;
    if let Some(asked) = asked {
        check_narrowing(&grant.scopes, &asked)?;
        grant.claims.retain(|name, _| {
            crate::config::SCOPES
                .iter()
                .any(|(s, names)| asked.contains(&s.to_string()) && names.contains(&name.as_str()))
        });
        grant.scopes = asked;
    }
    let response = mint(
        settings,
        client,
        &grant,
        &fid,
        None,
        Some(next_token),
        jkt.as_deref(),
        now,
    )
    .map_err(|e| OAuthError::server_error(e.to_string()))?;
    metrics::counter!("broker_tokens_issued_total", "grant" => "refresh_token").increment(1);
    tracing::debug!(client = %client.id, grant = "refresh_token", "tokens issued");
    Ok(response)
}

/// Rotates a refresh token in one atomic store operation: the new token inherits the old
/// one's record and the family's absolute expiry; reuse of a rotated one revokes the family.
/// `jkt`: the family's DPoP key (the new token is marked with it). `unspent`: a proof whose
/// `jti` the same store operation uses up (a replay then changes nothing).
async fn rotate(
    settings: &Settings,
    store: &dyn Store,
    client: &Client,
    (fid, old_key): (&str, &str),
    jkt: Option<&str>,
    unspent: Option<&Unspent>,
    now: u64,
) -> Result<(FamilyRecord, String), OAuthError> {
    let new_token = new_refresh_token(settings, fid, jkt);
    let Some((_, new_key)) = refresh_key(&new_token) else {
        return Err(OAuthError::server_error("cannot make a refresh token"));
    };
    let family_key = keyspace::family(fid);
    let outcome = match unspent {
        Some(proof) => {
            let (key, ttl) = proof.marker();
            let marker = SingleUse { key: &key, ttl };
            store
                .rotate_single_use(&family_key, old_key, TOMBSTONE, &new_key, marker, now)
                .await?
        }
        None => {
            store
                .rotate(&family_key, old_key, TOMBSTONE, &new_key, now)
                .await?
        }
    };
    let family: FamilyRecord = match outcome {
        Rotation::Rotated(bytes) => serde_json::from_slice(&bytes)
            .map_err(|_| OAuthError::server_error("stored token is unreadable"))?,
        Rotation::Replayed => return Err(dpop::replayed().at_endpoint()),
        Rotation::Reused(_) => {
            // RFC 9700 4.14.2: reuse of a rotated token revokes the whole family.
            store.delete(&family_key, now).await?;
            tracing::warn!(target: "audit", event = "refresh.reused", client = %client.id, "refresh token reused; its family is revoked");
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used",
            ));
        }
        Rotation::Missing => {
            return Err(OAuthError::invalid_grant(
                "the refresh token is invalid or revoked",
            ))
        }
    };
    Ok((family, new_token))
}

/// A refresh may narrow the granted scopes, never widen them (RFC 6749 section 6).
fn check_narrowing(granted: &[String], asked: &[String]) -> Result<(), OAuthError> {
    if asked.iter().any(|s| !granted.contains(s)) {
        return Err(OAuthError::new(
            "invalid_scope",
            "a refresh may only narrow the granted scopes",
        ));
    }
    Ok(())
}

/// A refresh token of a bound family is used only with a proof of the family's key.
fn check_refresh_binding(family: &FamilyRecord, proof: Option<&Proof>) -> Result<(), OAuthError> {
    match (&family.jkt, proof) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(OAuthError::invalid_grant(
            "this refresh token is bound to a DPoP key: send a DPoP proof",
        )),
        (Some(j), Some(p)) if crate::util::ct_eq(j.as_bytes(), p.jkt.as_bytes()) => Ok(()),
        (Some(_), Some(_)) => Err(OAuthError::invalid_grant(
            "the refresh token is bound to another DPoP key",
        )),
    }
}

/// RFC 7636 4.1: 43 to 128 unreserved characters.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::grants::{issue_code, Grant};
    use crate::protocol::RedirectUri;

    const T0: u64 = 1_800_000_000_000;
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn record() -> CodeRecord {
        CodeRecord {
            grant: Grant {
                client_id: "rp".into(),
                sub: "sub-1".into(),
                person_id: "p-1".into(),
                scopes: vec!["openid".into()],
                claims: Default::default(),
                auth_time: T0 / 1000,
                acr: "substantial".into(),
                amr: vec!["pwd".into()],
                sid: "sid-1".into(),
            },
            redirect_uri: RedirectUri::new("https://rp.example/cb"),
            code_challenge: Some(sha256_b64(VERIFIER.as_bytes())),
            nonce: None,
            dpop_jkt: None,
        }
    }

    /// Test settings and an embedded store in a directory of their own (kept while the
    /// first value lives).
    fn fixture() -> (tempfile::TempDir, Settings, store::embedded::EmbeddedStore) {
        let dir = tempfile::tempdir().expect("dir");
        let settings = crate::config::for_tests(dir.path(), "");
        let store =
            store::embedded::EmbeddedStore::open(&dir.path().join("t.redb")).expect("store");
        (dir, settings, store)
    }

    fn redeem(code: &str) -> Params {
        [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "https://rp.example/cb"),
            ("code_verifier", VERIFIER),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn refresh(token: &str) -> Params {
        [("grant_type", "refresh_token"), ("refresh_token", token)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn a_code_lives_code_ttl_and_a_family_refresh_token_ttl_whatever_the_rotations() {
        let (_dir, settings, store) = fixture();
        let rp = settings.clients.get("rp").expect("rp");
        let code_ttl = settings.tokens.code_ttl * 1000;

        // A code redeemed after its lifetime is refused, and so never issues anything.
        let late = issue_code(&settings, &store, &record(), T0)
            .await
            .expect("code");
        let e = grant(
            &settings,
            &store,
            rp,
            &redeem(&late),
            None,
            T0 + code_ttl + 1,
        )
        .await
        .err()
        .expect("expired code refused");
        assert_eq!(e.error, "invalid_grant");

        // One redeemed in time gives tokens; the refresh family then lives
        // refresh_token_ttl from that redemption, however often it rotates.
        let code = issue_code(&settings, &store, &record(), T0)
            .await
            .expect("code");
        assert!(code_is_unbound(&code), "a code without dpop_jkt says so");
        // Without its mark it is another code, which does not exist.
        let stripped = code.strip_prefix("u.").expect("marked");
        let e = grant(&settings, &store, rp, &redeem(stripped), None, T0 + 1)
            .await
            .err()
            .expect("an unmarked copy finds no code");
        assert_eq!(e.error, "invalid_grant");
        let tokens = grant(
            &settings,
            &store,
            rp,
            &redeem(&code),
            None,
            T0 + code_ttl - 1,
        )
        .await
        .unwrap_or_else(|e| panic!("redeemed in time: {e}"));
        let family_end = T0 + code_ttl - 1 + settings.tokens.refresh_token_ttl * 1000;
        let mut rt = tokens.refresh_token.expect("refresh token");
        let mut at = T0 + code_ttl;
        let step = settings.tokens.refresh_token_ttl * 1000 / 4;
        while at + step < family_end {
            at += step;
            let next = grant(&settings, &store, rp, &refresh(&rt), None, at)
                .await
                .unwrap_or_else(|e| panic!("refresh within the family's life: {e}"));
            rt = next.refresh_token.expect("rotated");
        }
        let e = grant(&settings, &store, rp, &refresh(&rt), None, family_end + 1)
            .await
            .err()
            .expect("the family's absolute end holds");
        assert_eq!(e.error, "invalid_grant");
    }

    #[tokio::test]
    async fn a_refresh_asking_for_more_scopes_is_refused_and_leaves_the_token_usable() {
        let (_dir, settings, store) = fixture();
        let rp = settings.clients.get("rp").expect("rp");
        assert!(rp.rotate_refresh_tokens, "the test client rotates");
        let code = issue_code(&settings, &store, &record(), T0)
            .await
            .expect("code");
        let tokens = grant(&settings, &store, rp, &redeem(&code), None, T0 + 1)
            .await
            .unwrap_or_else(|e| panic!("redeemed: {e}"));
        let rt = tokens.refresh_token.expect("refresh token");

        let mut wider = refresh(&rt);
        wider.insert("scope".into(), "openid profile".into());
        let e = grant(&settings, &store, rp, &wider, None, T0 + 2)
            .await
            .err()
            .expect("a wider scope is refused");
        assert_eq!(e.error, "invalid_scope");
        // Nothing was rotated: the same token still refreshes, narrowed to what was granted.
        let mut same = refresh(&rt);
        same.insert("scope".into(), "openid".into());
        let next = grant(&settings, &store, rp, &same, None, T0 + 3)
            .await
            .unwrap_or_else(|e| panic!("the token survived the refused refresh: {e}"));
        assert!(next.refresh_token.is_some_and(|t| t != rt), "rotated now");
    }

    /// A checked proof of key `jkt`, with a jti of its own unless one is given.
    fn proof(jkt: &str, jti: Option<&str>) -> Option<Unspent> {
        Some(Unspent::for_tests(Proof {
            jkt: jkt.into(),
            jti: jti.map_or_else(|| crate::util::random_token(8), str::to_string),
            iat: T0 / 1000,
            next_nonce: None,
        }))
    }

    #[tokio::test]
    async fn a_refresh_token_says_whether_and_to_which_key_its_family_is_bound() {
        let (_dir, settings, store) = fixture();
        let rp = settings.clients.get("rp").expect("rp");

        // Unbound: every token of the family says so, through the rotations.
        let code = issue_code(&settings, &store, &record(), T0)
            .await
            .expect("code");
        let tokens = grant(&settings, &store, rp, &redeem(&code), None, T0 + 1)
            .await
            .unwrap_or_else(|e| panic!("redeemed: {e}"));
        let rt = tokens.refresh_token.expect("refresh token");
        assert_eq!(
            mark(&rt),
            Mark::Unbound,
            "an unbound family's token is marked"
        );
        let next = grant(&settings, &store, rp, &refresh(&rt), None, T0 + 2)
            .await
            .unwrap_or_else(|e| panic!("refreshed: {e}"));
        let rt2 = next.refresh_token.expect("rotated");
        assert_eq!(mark(&rt2), Mark::Unbound, "and so is its rotation");
        // Reuse of the rotated one still revokes the family.
        let e = grant(&settings, &store, rp, &refresh(&rt), None, T0 + 3)
            .await
            .err()
            .expect("reuse refused");
        assert_eq!(e.error, "invalid_grant");
        let e = grant(&settings, &store, rp, &refresh(&rt2), None, T0 + 4)
            .await
            .err()
            .expect("the family is revoked");
        assert_eq!(e.error, "invalid_grant");

        // Bound to a DPoP key: the token is marked with it.
        let mut bound = record();
        bound.dpop_jkt = Some("key-1".into());
        let code = issue_code(&settings, &store, &bound, T0)
            .await
            .expect("code");
        assert!(
            !code_is_unbound(&code),
            "a bound code is not marked unbound"
        );
        // With another key, or none, the code is refused and not used up.
        for other in [None, proof("key-2", None)] {
            let e = grant(&settings, &store, rp, &redeem(&code), other, T0 + 1)
                .await
                .err()
                .expect("a bound code needs its key");
            assert_eq!(e.error, "invalid_grant");
        }
        // Marked unbound by a thief, it finds nothing.
        let forged = format!("u.{code}");
        assert!(code_is_unbound(&forged));
        let e = grant(&settings, &store, rp, &redeem(&forged), None, T0 + 1)
            .await
            .err()
            .expect("a forged mark finds no code");
        assert_eq!(e.error, "invalid_grant");
        let tokens = grant(
            &settings,
            &store,
            rp,
            &redeem(&code),
            proof("key-1", None),
            T0 + 1,
        )
        .await
        .unwrap_or_else(|e| panic!("redeemed with the key: {e}"));
        let rt = tokens.refresh_token.expect("refresh token");
        assert_eq!(mark(&rt), Mark::Bound);
        assert!(bound_to(&settings, &rt, "key-1"));
        assert!(!bound_to(&settings, &rt, "key-2"));
        // A mark changed by a thief finds nothing, and burns nothing.
        let (fid, rest) = rt.split_once('.').expect("fid.secret");
        let secret = rest.strip_prefix("b.").expect("bound mark");
        let forged = format!("{fid}.u.{secret}");
        assert_eq!(mark(&forged), Mark::Unbound);
        let e = grant(&settings, &store, rp, &refresh(&forged), None, T0 + 2)
            .await
            .err()
            .expect("a forged mark is refused");
        assert_eq!(e.error, "invalid_grant");
        // Without a proof, or with another key: refused before rotating.
        for other in [None, proof("key-2", None)] {
            let e = grant(&settings, &store, rp, &refresh(&rt), other, T0 + 3)
                .await
                .err()
                .expect("refused without the family's key");
            assert_eq!(e.error, "invalid_grant");
        }
        let next = grant(
            &settings,
            &store,
            rp,
            &refresh(&rt),
            proof("key-1", Some("once")),
            T0 + 4,
        )
        .await
        .unwrap_or_else(|e| panic!("the rightful client still refreshes: {e}"));
        let rt2 = next.refresh_token.expect("rotated");
        assert!(
            bound_to(&settings, &rt2, "key-1"),
            "the rotation keeps the key"
        );
        // The same proof again (its jti used up by the rotation) changes nothing.
        let e = grant(
            &settings,
            &store,
            rp,
            &refresh(&rt2),
            proof("key-1", Some("once")),
            T0 + 5,
        )
        .await
        .err()
        .expect("a replayed proof is refused");
        assert_eq!(e.error, "invalid_dpop_proof");
        let next = grant(
            &settings,
            &store,
            rp,
            &refresh(&rt2),
            proof("key-1", None),
            T0 + 6,
        )
        .await
        .unwrap_or_else(|e| panic!("the replay burnt nothing: {e}"));
        assert!(next.refresh_token.is_some());

        // A token issued before the marks (`{fid}.{secret}`) is read first, and its
        // rotation is marked.
        let fid = "f".repeat(22);
        let old = format!("{fid}.{}", crate::util::random_token(32));
        let (_, old_key) = refresh_key(&old).expect("key");
        let family = FamilyRecord {
            grant: record().grant,
            expires: T0 + 3_600_000,
            jkt: Some("key-1".into()),
        };
        let bytes = serde_json::to_vec(&family).expect("json");
        store
            .put(&keyspace::family(&fid), &bytes, None, T0)
            .await
            .expect("family");
        store.put(&old_key, &bytes, None, T0).await.expect("token");
        assert_eq!(mark(&old), Mark::Unmarked);
        let e = grant(
            &settings,
            &store,
            rp,
            &refresh(&old),
            proof("key-2", None),
            T0 + 7,
        )
        .await
        .err()
        .expect("another key is refused");
        assert_eq!(e.error, "invalid_grant");
        let next = grant(
            &settings,
            &store,
            rp,
            &refresh(&old),
            proof("key-1", None),
            T0 + 8,
        )
        .await
        .unwrap_or_else(|e| panic!("an older token refreshes: {e}"));
        assert!(bound_to(
            &settings,
            &next.refresh_token.expect("rotated"),
            "key-1"
        ));
    }

    #[tokio::test]
    async fn a_code_replayed_in_time_revokes_what_it_issued() {
        let (_dir, settings, store) = fixture();
        let rp = settings.clients.get("rp").expect("rp");
        let code = issue_code(&settings, &store, &record(), T0)
            .await
            .expect("code");
        let first = grant(&settings, &store, rp, &redeem(&code), None, T0 + 1)
            .await
            .unwrap_or_else(|e| panic!("first redemption: {e}"));
        let e = grant(&settings, &store, rp, &redeem(&code), None, T0 + 2)
            .await
            .err()
            .expect("second redemption refused");
        assert_eq!(e.error, "invalid_grant");
        let rt = first.refresh_token.expect("refresh token");
        let e = grant(&settings, &store, rp, &refresh(&rt), None, T0 + 3)
            .await
            .err()
            .expect("the first redemption's family is revoked");
        assert_eq!(e.error, "invalid_grant");
    }
}
