//! Signed answers of the token introspection (RFC 9701) and UserInfo (OpenID Connect Core
//! 5.3.2) endpoints, for clients that ask for them. The caller picks the key (the client's
//! registered algorithm, PS256 included, through `KeySet::signer`) and sends the JWT with
//! the content type named here.

use serde_json::{Map, Value};

use crate::keys::{KeyError, SigningKey};

/// Content type of a signed introspection answer, also what the client puts in `Accept`.
pub const INTROSPECTION_JWT_TYPE: &str = "application/token-introspection+jwt";
/// The JWS `typ` of a signed introspection answer (RFC 9701 5).
pub const INTROSPECTION_JWT_TYP: &str = "token-introspection+jwt";
/// Content type of a signed UserInfo answer.
pub const USERINFO_JWT_TYPE: &str = "application/jwt";

/// Whether an `Accept` header asks for a signed introspection answer (RFC 9701 4): the
/// media type is listed without `q=0`.
pub fn wants_introspection_jwt(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            media.eq_ignore_ascii_case(INTROSPECTION_JWT_TYPE) && !refused
        })
    })
}

/// Signs an introspection answer (`{"active": …, …}`, the JSON of RFC 7662) for the
/// client `audience` that asked: `iss`, `aud`, `iat` and the answer in
/// `token_introspection` (RFC 9701 5). `now` in Unix seconds.
pub fn introspection_jwt(
    key: &SigningKey,
    issuer: &str,
    audience: &str,
    introspection: &Value,
    now: u64,
) -> Result<String, KeyError> {
    let claims = serde_json::json!({
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "token_introspection": introspection,
    });
    key.sign(INTROSPECTION_JWT_TYP, &claims)
}

/// Signs a UserInfo answer for `client_id`: its claims plus `iss` and `aud` (OpenID
/// Connect Core 5.3.2), with `typ` JWT. `now` in Unix seconds.
pub fn userinfo_jwt(
    key: &SigningKey,
    issuer: &str,
    client_id: &str,
    userinfo: &Map<String, Value>,
    now: u64,
) -> Result<String, KeyError> {
    let mut claims = userinfo.clone();
    claims.insert("iss".into(), Value::String(issuer.to_string()));
    claims.insert("aud".into(), Value::String(client_id.to_string()));
    claims.insert("iat".into(), Value::from(now));
    key.sign("JWT", &Value::Object(claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeySet, SigningAlg};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const ISSUER: &str = "https://broker.example";

    fn verified(jwt: &str, key: SigningKey, aud: &str) -> (jsonwebtoken::Header, Value) {
        let header = jsonwebtoken::decode_header(jwt).expect("header");
        let set = KeySet::new(vec![key]);
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_audience(&[aud]);
        v.set_issuer(&[ISSUER]);
        v.set_required_spec_claims(&["iss", "aud"]);
        let claims = set
            .verify(jwt, &v)
            .expect("verifies with the broker's JWKS");
        (header, claims)
    }

    fn key_pair(alg: SigningAlg) -> (SigningKey, SigningKey) {
        let (key, pem_text) = SigningKey::generate("k1", alg).expect("key");
        let public = SigningKey::from_pem("k1", alg, pem_text.as_bytes()).expect("pem");
        (key, public)
    }

    #[test]
    fn introspection_answers_are_rfc9701_jwts() {
        let (key, public) = key_pair(SigningAlg::ES256);
        let answer = json!({"active": true, "sub": "s", "cnf": {"jkt": "abc"}, "exp": NOW + 60});
        let jwt = introspection_jwt(&key, ISSUER, "rs-1", &answer, NOW).expect("sign");
        let (header, claims) = verified(&jwt, public, "rs-1");
        assert_eq!(header.typ.as_deref(), Some("token-introspection+jwt"));
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(claims["iat"], NOW);
        assert_eq!(claims["token_introspection"], answer);
        // The token's own claims stay inside: no top-level sub or exp to misread.
        assert!(claims.get("sub").is_none() && claims.get("exp").is_none());
    }

    #[test]
    fn userinfo_answers_are_signed_for_the_client() {
        let (key, public) = key_pair(SigningAlg::EdDSA);
        let mut info = Map::new();
        info.insert("sub".into(), json!("s"));
        info.insert("name".into(), json!("Nguyễn Văn An"));
        info.insert("aud".into(), json!("someone-else"));
        let jwt = userinfo_jwt(&key, ISSUER, "client-1", &info, NOW).expect("sign");
        let (header, claims) = verified(&jwt, public, "client-1");
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(claims["sub"], "s");
        assert_eq!(claims["name"], "Nguyễn Văn An");
        assert_eq!(claims["aud"], "client-1");
    }

    #[test]
    fn accept_headers() {
        for (accept, wants) in [
            (Some("application/token-introspection+jwt"), true),
            (
                Some("application/json, application/token-introspection+jwt;q=0.9"),
                true,
            ),
            (Some("APPLICATION/TOKEN-INTROSPECTION+JWT"), true),
            (Some("application/token-introspection+jwt;q=0"), false),
            (Some("application/json"), false),
            (Some("*/*"), false),
            (None, false),
        ] {
            assert_eq!(wants_introspection_jwt(accept), wants, "{accept:?}");
        }
    }
}
