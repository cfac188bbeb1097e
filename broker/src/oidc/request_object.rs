//! Signed request objects (JAR, RFC 9101) in the `request` parameter of `/par` and
//! `/authorize`, with the limits of FAPI 2.0 Message Signing.
//!
//! The object is verified against the client's public keys ([`ClientKey`]: the `jwks` of
//! its configuration, or the set its `jwks_uri` serves, through
//! [`crate::config::ClientKeys`]); only the parameters inside it count (RFC 9101 5), and
//! they come back as [`Params`] for the usual checks of an authorization request. Time is
//! a parameter.

use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::jws::{self, Jws};
use super::Params;
use crate::config::ClientKey;

/// The `typ` RFC 9101 10.8 defines; `JWT` and no `typ` are accepted too (RFC 9101 4).
pub const REQUEST_OBJECT_TYP: &str = "oauth-authz-req+jwt";
/// `nbf` may be at most this old (FAPI 2.0 Message Signing: 60 minutes).
pub const MAX_NBF_AGE_SECS: u64 = 3600;
/// `exp` may be at most this long after `nbf` (FAPI 2.0 Message Signing: 60 minutes).
pub const MAX_LIFETIME_SECS: u64 = 3600;
/// `nbf` and `iat` may be this far ahead of our clock (FAPI 2.0 clock skew: 10 s).
pub const MAX_AHEAD_SECS: u64 = 10;

/// JWT claims that describe the object itself, not the authorization request.
const ENVELOPE_CLAIMS: &[&str] = &["iss", "aud", "exp", "nbf", "iat", "jti"];

/// What the object must satisfy.
pub struct RequestObjectCheck<'a> {
    /// The broker's issuer: the only accepted `aud`.
    pub issuer: &'a str,
    /// The `client_id` of the outer request: the object's `iss` (and `client_id`, if any).
    pub client_id: &'a str,
    /// The client's registered public keys.
    pub keys: &'a [ClientKey],
    /// Accepted algorithms ([`jws::ACCEPTED_ALGS`], or [`jws::FAPI_ALGS`] for FAPI clients).
    pub algorithms: &'a [Algorithm],
    /// Whether `exp` and `nbf` are required (FAPI 2.0 Message Signing); when present they
    /// are always checked.
    pub require_exp_nbf: bool,
}

/// Why a request object was refused: `invalid_request_object` (RFC 9101 7) with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestObjectError(pub String);

impl RequestObjectError {
    /// The OAuth error code.
    pub const CODE: &'static str = "invalid_request_object";
}

fn refuse(d: impl Into<String>) -> RequestObjectError {
    RequestObjectError(d.into())
}

/// Verifies a request object and returns the authorization parameters inside it, with
/// `client_id` set to the outer one. `now` in Unix seconds.
pub fn verify_request_object(
    jwt: &str,
    c: &RequestObjectCheck<'_>,
    now: u64,
) -> Result<Params, RequestObjectError> {
    let jws = jws::parse(jwt).map_err(|e| refuse(format!("malformed request object: {e}")))?;
    if jws.header.contains_key("typ") && !jws.typ_is(REQUEST_OBJECT_TYP) && !jws.typ_is("jwt") {
        return Err(refuse(
            "the request object's typ must be oauth-authz-req+jwt",
        ));
    }
    let alg = jws
        .algorithm(c.algorithms)
        .map_err(|e| refuse(format!("request object: {e}")))?;
    check_signature(&jws, alg, c.keys)?;

    if jws.str_claim("iss") != Some(c.client_id) {
        return Err(refuse("the request object's iss must be the client_id"));
    }
    let aud_ok = match jws.claims.get("aud") {
        Some(Value::String(a)) => a == c.issuer,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(c.issuer)),
        _ => false,
    };
    if !aud_ok {
        return Err(refuse(format!(
            "the request object's aud must be the issuer {}",
            c.issuer
        )));
    }
    if let Some(inner) = jws.claims.get("client_id") {
        if inner.as_str() != Some(c.client_id) {
            return Err(refuse(
                "the request object's client_id differs from the request's",
            ));
        }
    }
    check_times(&jws, c.require_exp_nbf, now)?;

    let mut params = Params::new();
    for (name, value) in &jws.claims {
        if ENVELOPE_CLAIMS.contains(&name.as_str()) {
            continue;
        }
        if name == "request" || name == "request_uri" {
            return Err(refuse(format!(
                "a request object must not contain `{name}` (RFC 9101 4)"
            )));
        }
        let text = match value {
            Value::String(s) if s.is_empty() => continue,
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            // `claims` and `authorization_details` are JSON in the plain request too.
            Value::Object(_) | Value::Array(_) => value.to_string(),
            Value::Null => continue,
        };
        params.insert(name.clone(), text);
    }
    params.insert("client_id".into(), c.client_id.to_string());
    Ok(params)
}

/// The signature must verify with one of the client's keys registered for `alg` (and the
/// header's `kid`, when both name one).
fn check_signature(
    jws: &Jws<'_>,
    alg: Algorithm,
    keys: &[ClientKey],
) -> Result<(), RequestObjectError> {
    let kid = jws.header_str("kid");
    let mut candidates = keys.iter().filter(|k| k.fits(alg, kid)).peekable();
    if candidates.peek().is_none() {
        return Err(refuse(
            "no key of this client is registered for the request object's alg and kid",
        ));
    }
    if candidates.any(|k| jws.verify(&k.key, alg).is_ok()) {
        Ok(())
    } else {
        Err(refuse(
            "the request object's signature does not verify with the client's keys",
        ))
    }
}

fn check_times(jws: &Jws<'_>, required: bool, now: u64) -> Result<(), RequestObjectError> {
    let time = |name: &str| {
        jws.time_claim(name)
            .map_err(|e| refuse(format!("request object: {e}")))
    };
    let (exp, nbf, iat) = (time("exp")?, time("nbf")?, time("iat")?);
    if required && (exp.is_none() || nbf.is_none()) {
        return Err(refuse("the request object must have exp and nbf"));
    }
    if let Some(exp) = exp {
        if exp <= now {
            return Err(refuse("the request object has expired"));
        }
    }
    if let Some(nbf) = nbf {
        if nbf > now + MAX_AHEAD_SECS {
            return Err(refuse("the request object is not valid yet (nbf)"));
        }
        if nbf + MAX_NBF_AGE_SECS < now {
            return Err(refuse(
                "the request object's nbf is more than 60 minutes old",
            ));
        }
        if let Some(exp) = exp {
            if exp <= nbf || exp - nbf > MAX_LIFETIME_SECS {
                return Err(refuse(
                    "the request object's exp must be within 60 minutes after its nbf",
                ));
            }
        }
    }
    if let Some(iat) = iat {
        if iat > now + MAX_AHEAD_SECS {
            return Err(refuse("the request object's iat is in the future"));
        }
    }
    Ok(())
}

/// The authorization parameters of a request of `client` (at `/par` or `/authorize`):
/// those inside its request object when it sent one (RFC 9101 5: the outer ones other
/// than `client_id` are ignored), else the given ones; a client that must sign its
/// requests is refused without one. The client's keys come from its registration or its
/// `jwks_uri` (a fetch that fails is `invalid_request_object`). `now` in Unix milliseconds.
pub async fn effective_params(
    settings: &crate::config::Settings,
    client: &crate::config::Client,
    params: Params,
    now: u64,
) -> Result<Params, crate::protocol::OAuthError> {
    use crate::protocol::OAuthError;
    let Some(jwt) = params.get("request") else {
        if client.require_signed_request_object {
            return Err(OAuthError::invalid_request(
                "this client must send its authorization request as a signed request object (request)",
            ));
        }
        return Ok(params);
    };
    let crate::config::ClientAuth::PrivateKeyJwt(registered) = &client.auth else {
        return Err(OAuthError::new(
            RequestObjectError::CODE,
            "register public keys (jwks or jwks_uri) to sign request objects",
        ));
    };
    let algorithms = super::dpop::algorithms_for(client);
    // The keys for the object's alg and kid; a header that names none accepted is refused
    // by the verification below, without a fetch.
    let wanted = jws::parse(jwt).ok().and_then(|j| {
        let alg = j.algorithm(algorithms).ok()?;
        Some((alg, j.header_str("kid").map(str::to_string)))
    });
    let keys: std::sync::Arc<[ClientKey]> = match wanted {
        Some((alg, kid)) => registered
            .for_signature(alg, kid.as_deref(), now)
            .await
            .map_err(|e| OAuthError::new(RequestObjectError::CODE, e.to_string()))?,
        None => Vec::new().into(),
    };
    let check = RequestObjectCheck {
        issuer: &settings.issuer,
        client_id: &client.id,
        keys: &keys,
        algorithms,
        require_exp_nbf: client.profile.is_some_and(|p| p.message_signing()),
    };
    verify_request_object(jwt, &check, now / 1000)
        .map_err(|e| OAuthError::new(RequestObjectError::CODE, e.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningAlg;
    use crate::oidc::jws::test_support::{unsigned, TestKey};
    use crate::oidc::jws::{ACCEPTED_ALGS, FAPI_ALGS};
    use jsonwebtoken::DecodingKey;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const ISSUER: &str = "https://broker.example";
    const CLIENT: &str = "fapi-platform";

    fn registered(key: &TestKey, alg: Algorithm, kid: Option<&str>) -> ClientKey {
        ClientKey {
            kid: kid.map(String::from),
            key: DecodingKey::from_jwk(key.key.jwk()).expect("decoding key"),
            alg,
        }
    }

    fn claims() -> Value {
        json!({
            "iss": CLIENT,
            "aud": ISSUER,
            "client_id": CLIENT,
            "exp": NOW + 60,
            "nbf": NOW,
            "iat": NOW,
            "jti": "j1",
            "response_type": "code",
            "redirect_uri": "https://platform.example/cb",
            "scope": "openid",
            "code_challenge": "x".repeat(43),
            "code_challenge_method": "S256",
            "max_age": 300,
            "claims": {"id_token": {"acr": {"essential": true}}}
        })
    }

    fn header(alg: &str, kid: &str) -> Value {
        json!({"alg": alg, "kid": kid, "typ": "oauth-authz-req+jwt"})
    }

    fn check(keys: &[ClientKey]) -> RequestObjectCheck<'_> {
        RequestObjectCheck {
            issuer: ISSUER,
            client_id: CLIENT,
            keys,
            algorithms: FAPI_ALGS,
            require_exp_nbf: true,
        }
    }

    #[test]
    fn a_good_object_gives_its_parameters_only() {
        let key = TestKey::generate("c1", SigningAlg::ES256);
        let keys = [registered(&key, Algorithm::ES256, Some("c1"))];
        let jwt = key.sign(&header("ES256", "c1"), &claims());
        let params = verify_request_object(&jwt, &check(&keys), NOW).expect("valid");
        assert_eq!(
            params.get("response_type").map(String::as_str),
            Some("code")
        );
        assert_eq!(params.get("max_age").map(String::as_str), Some("300"));
        assert_eq!(params.get("client_id").map(String::as_str), Some(CLIENT));
        assert_eq!(
            params.get("claims").map(String::as_str),
            Some(r#"{"id_token":{"acr":{"essential":true}}}"#)
        );
        for envelope in ENVELOPE_CLAIMS {
            assert!(!params.contains_key(*envelope), "{envelope}");
        }
        // PS256 with an RSA key, and no typ at all, are fine too.
        let rsa = TestKey::generate("c2", SigningAlg::RS256);
        let keys = [registered(&rsa, Algorithm::PS256, None)];
        let jwt = rsa.sign(&json!({"alg": "PS256"}), &claims());
        assert!(verify_request_object(&jwt, &check(&keys), NOW).is_ok());
    }

    /// Each refusal the issue names, for the reason it names.
    #[test]
    fn refusals() {
        let key = TestKey::generate("c1", SigningAlg::ES256);
        let other = TestKey::generate("c9", SigningAlg::ES256);
        let rsa = TestKey::generate("r1", SigningAlg::RS256);
        let keys = [
            registered(&key, Algorithm::ES256, Some("c1")),
            registered(&rsa, Algorithm::RS256, Some("r1")),
        ];
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims();
            f(&mut c);
            key.sign(&header("ES256", "c1"), &c)
        };
        let good = key.sign(&header("ES256", "c1"), &claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let other_sig = other.sign(&header("ES256", "c1"), &claims());
        parts[2] = other_sig.split('.').nth(2).expect("signature");
        let bad_signature = parts.join(".");
        let cases: Vec<(&str, String, RequestObjectCheck<'_>, &str)> = vec![
            ("bad signature", bad_signature, check(&keys), "signature"),
            (
                "signed by an unregistered key",
                other.sign(&header("ES256", "c1"), &claims()),
                check(&keys),
                "signature",
            ),
            (
                "wrong aud",
                with(&|c| c["aud"] = json!("https://other.example")),
                check(&keys),
                "aud",
            ),
            (
                "aud of the token endpoint",
                with(&|c| c["aud"] = json!(format!("{ISSUER}/token"))),
                check(&keys),
                "aud",
            ),
            (
                "wrong iss",
                with(&|c| c["iss"] = json!("someone-else")),
                check(&keys),
                "iss",
            ),
            (
                "another client_id inside",
                with(&|c| c["client_id"] = json!("someone-else")),
                check(&keys),
                "client_id",
            ),
            (
                "expired",
                with(&|c| c["exp"] = json!(NOW)),
                check(&keys),
                "expired",
            ),
            (
                "nbf more than 60 minutes old",
                with(&|c| {
                    c["nbf"] = json!(NOW - MAX_NBF_AGE_SECS - 1);
                    c["exp"] = json!(NOW + 10);
                }),
                check(&keys),
                "60 minutes old",
            ),
            (
                "exp more than 60 minutes after nbf",
                with(&|c| c["exp"] = json!(NOW + MAX_LIFETIME_SECS + 1)),
                check(&keys),
                "within 60 minutes",
            ),
            (
                "nbf in the future",
                with(&|c| c["nbf"] = json!(NOW + MAX_AHEAD_SECS + 1)),
                check(&keys),
                "not valid yet",
            ),
            (
                "no exp under Message Signing",
                with(&|c| {
                    c.as_object_mut().map(|o| o.remove("exp"));
                }),
                check(&keys),
                "exp and nbf",
            ),
            (
                "alg none",
                unsigned(&json!({"alg": "none"}), &claims(), ""),
                check(&keys),
                "`none`",
            ),
            (
                "alg HS256",
                unsigned(&json!({"alg": "HS256"}), &claims(), "c2ln"),
                check(&keys),
                "`HS256`",
            ),
            (
                "RS256 from a FAPI client",
                rsa.sign(&header("RS256", "r1"), &claims()),
                check(&keys),
                "`RS256`",
            ),
            (
                "typ of another kind of JWT",
                key.sign(
                    &json!({"alg": "ES256", "kid": "c1", "typ": "dpop+jwt"}),
                    &claims(),
                ),
                check(&keys),
                "typ",
            ),
            (
                "request_uri inside",
                with(&|c| c["request_uri"] = json!("urn:x")),
                check(&keys),
                "request_uri",
            ),
            (
                "encrypted",
                "a.b.c.d.e".to_string(),
                check(&keys),
                "encrypted",
            ),
        ];
        for (name, jwt, c, reason) in cases {
            let err = verify_request_object(&jwt, &c, NOW).expect_err(name);
            assert!(
                err.0.contains(reason),
                "{name}: refused for another reason: {}",
                err.0
            );
        }
        // RS256 is fine for a client outside FAPI.
        let lax = RequestObjectCheck {
            algorithms: ACCEPTED_ALGS,
            require_exp_nbf: false,
            ..check(&keys)
        };
        let mut plain = claims();
        plain.as_object_mut().map(|o| {
            o.remove("exp");
            o.remove("nbf")
        });
        assert!(
            verify_request_object(&rsa.sign(&header("RS256", "r1"), &plain), &lax, NOW).is_ok()
        );
    }
}
