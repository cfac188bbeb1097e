//! Compact JWS sent by clients (DPoP proofs, request objects): cut and parsed once, the
//! algorithm checked against an allow-list of asymmetric algorithms, the signature verified
//! with `jsonwebtoken`'s crypto (aws-lc), or with an aws-lc key parsed beforehand (DPoP's
//! P-256 and Ed25519 keys, [`super::proof_keys`]). DPoP proofs use the parts here with a
//! typed parse of their own ([`super::dpop_proof`]). Plain data in, plain data out: no HTTP.
//!
//! Parsing is done here rather than through `jsonwebtoken::decode` because the callers need
//! the raw header (`typ`, the embedded `jwk`, private key members to refuse, RFC 9864's
//! `Ed25519` name for EdDSA that `jsonwebtoken` does not parse) and claims without the
//! registered-claim checks that do not fit them (a DPoP proof has no `exp`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

/// Longest compact JWS accepted (a 4096-bit RSA key in a DPoP header stays well below).
pub const MAX_JWS_LEN: usize = 16 * 1024;

/// Every algorithm the broker verifies in client JWTs: asymmetric only; `none` and the
/// HMAC algorithms are never accepted (a shared secret proves nothing about a key).
pub const ACCEPTED_ALGS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::PS256,
    Algorithm::RS256,
    Algorithm::EdDSA,
];

pub use crate::protocol::algorithms::{alg_names, algorithm, FAPI_ALGS};

/// Why a JWS was refused. The texts are for developers of clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not a well-formed compact JWS.
    #[error("{0}")]
    Malformed(String),
    /// The algorithm is not one accepted here.
    #[error("{0}")]
    Algorithm(String),
    /// The signature does not verify with the key.
    #[error("the signature does not verify")]
    Signature,
}

/// A parsed compact JWS whose signature is not yet checked.
#[derive(Debug)]
pub struct Jws<'a> {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The payload, a JSON object.
    pub claims: Map<String, Value>,
    signing_input: &'a str,
    signature: &'a str,
}

/// A compact JWS cut into its base64url parts, nothing decoded yet.
#[derive(Debug, Clone, Copy)]
pub struct Compact<'a> {
    /// The protected header.
    pub header: &'a str,
    /// The payload.
    pub payload: &'a str,
    /// The signature.
    pub signature: &'a str,
    /// What the signature is over: `header.payload`.
    pub signing_input: &'a str,
}

/// Cuts a compact JWS into its three parts (refusing one too long, a JWE, anything else).
pub fn split(token: &str) -> Result<Compact<'_>, JwsError> {
    if token.len() > MAX_JWS_LEN {
        return Err(JwsError::Malformed(format!(
            "the JWT is longer than {MAX_JWS_LEN} bytes"
        )));
    }
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next(), parts.next(), parts.next());
    let (Some(header), Some(payload), Some(signature)) = (header, payload, signature) else {
        return Err(JwsError::Malformed("not a compact JWS".into()));
    };
    match parts.count() {
        0 => {}
        2 => {
            return Err(JwsError::Malformed(
                "encrypted JWTs (JWE) are not supported".into(),
            ))
        }
        _ => return Err(JwsError::Malformed("not a compact JWS".into())),
    }
    Ok(Compact {
        header,
        payload,
        signature,
        signing_input: &token[..header.len() + 1 + payload.len()],
    })
}

/// The bytes of a base64url part (`what` names it in the error).
pub fn decode_part(part: &str, what: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwsError::Malformed(format!("the {what} is not base64url")))
}

/// `name` if it is one of `accepted`; `none` and HMAC never are.
pub fn accepted_algorithm(
    name: Option<&str>,
    accepted: &[Algorithm],
) -> Result<Algorithm, JwsError> {
    let name = name.ok_or_else(|| JwsError::Malformed("the JWS header has no alg".into()))?;
    match algorithm(name) {
        Some(a) if accepted.contains(&a) => Ok(a),
        _ => Err(JwsError::Algorithm(format!(
            "alg `{name}` is not accepted (use {})",
            alg_names(accepted).join(", ")
        ))),
    }
}

/// Whether a `typ` is `expected` (a media type: case-insensitive, the `application/`
/// prefix optional, RFC 7515 4.1.9).
pub fn media_type_is(typ: Option<&str>, expected: &str) -> bool {
    typ.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t.strip_prefix("application/").unwrap_or(&t) == expected
    })
}

/// Verifies the base64url `signature` over `signing_input` with `key` under `alg`. A key of
/// another type than the algorithm needs does not verify.
pub fn verify_with(
    signing_input: &str,
    signature: &str,
    key: &DecodingKey,
    alg: Algorithm,
) -> Result<(), JwsError> {
    if signature.is_empty() {
        return Err(JwsError::Signature);
    }
    match jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), key, alg) {
        Ok(true) => Ok(()),
        _ => Err(JwsError::Signature),
    }
}

fn decode_object(part: &str, what: &str) -> Result<Map<String, Value>, JwsError> {
    let bytes = decode_part(part, what)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwsError::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
    }
}

/// Verifies the base64url `signature` of a compact JWS's `signing_input` with an already
/// parsed key (its algorithm is the key's: the caller has checked that it is the header's).
/// Signatures longer than 512 bytes (RSA 4096) are refused unread. Public so that the
/// benchmark times exactly this.
pub fn verify_with_parsed(
    signing_input: &str,
    signature: &str,
    key: &aws_lc_rs::signature::ParsedPublicKey,
) -> Result<(), JwsError> {
    let mut bytes = [0u8; 516];
    match URL_SAFE_NO_PAD.decode_slice(signature, &mut bytes) {
        Ok(n) if n > 0 && n <= 512 => key
            .verify_sig(signing_input.as_bytes(), &bytes[..n])
            .map_err(|_| JwsError::Signature),
        _ => Err(JwsError::Signature),
    }
}

/// Parses a compact JWS (three base64url parts, header and payload JSON objects).
pub fn parse(token: &str) -> Result<Jws<'_>, JwsError> {
    let parts = split(token)?;
    let header = decode_object(parts.header, "JWS header")?;
    let claims = decode_object(parts.payload, "JWT payload")?;
    // RFC 7515 4.1.11: extensions marked critical that we do not understand are refused.
    if header.contains_key("crit") {
        return Err(JwsError::Malformed(
            "critical header extensions (crit) are not supported".into(),
        ));
    }
    Ok(Jws {
        header,
        claims,
        signing_input: parts.signing_input,
        signature: parts.signature,
    })
}

impl Jws<'_> {
    /// A string member of the header.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// The `alg` of the header if it is one of `accepted`; `none` and HMAC never are.
    pub fn algorithm(&self, accepted: &[Algorithm]) -> Result<Algorithm, JwsError> {
        accepted_algorithm(self.header_str("alg"), accepted)
    }

    /// Whether the header's `typ` is `expected` (a media type: case-insensitive, the
    /// `application/` prefix optional, RFC 7515 4.1.9).
    pub fn typ_is(&self, expected: &str) -> bool {
        media_type_is(self.header_str("typ"), expected)
    }

    /// Verifies the signature with `key` under `alg`. A key of another type than the
    /// algorithm needs does not verify.
    pub fn verify(&self, key: &DecodingKey, alg: Algorithm) -> Result<(), JwsError> {
        verify_with(self.signing_input, self.signature, key, alg)
    }

    /// A NumericDate claim in whole seconds (RFC 7519 2: fractions allowed, dropped here).
    pub fn time_claim(&self, name: &str) -> Result<Option<u64>, JwsError> {
        match self.claims.get(name) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) => Ok(Some(n)),
                None => match v.as_f64() {
                    Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
                    _ => Err(JwsError::Malformed(format!(
                        "`{name}` is not a NumericDate"
                    ))),
                },
            },
        }
    }

    /// A string claim.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Client-side signing for the tests of the modules that verify client JWTs.

    use super::*;
    use crate::keys::{SigningAlg, SigningKey};

    /// A client's key pair: the public half as the broker holds it, the private half to sign.
    pub struct TestKey {
        /// The public key and its JWK.
        pub key: SigningKey,
        encoding: jsonwebtoken::EncodingKey,
    }

    impl TestKey {
        /// A fresh key (an RSA key signs RS256 or PS256, as the header says).
        pub fn generate(kid: &str, alg: SigningAlg) -> TestKey {
            let (key, pem_text) = SigningKey::generate(kid, alg).expect("generate");
            let pem_bytes = pem_text.as_bytes();
            let encoding = match alg {
                SigningAlg::RS256 | SigningAlg::PS256 => {
                    jsonwebtoken::EncodingKey::from_rsa_pem(pem_bytes)
                }
                SigningAlg::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(pem_bytes),
                SigningAlg::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(pem_bytes),
            }
            .expect("encoding key");
            TestKey { key, encoding }
        }

        /// The public JWK as JSON.
        pub fn public_jwk(&self) -> Value {
            serde_json::to_value(self.key.jwk()).expect("jwk")
        }

        /// Signs `header` (its `alg` says how) and `claims` as a compact JWS.
        pub fn sign(&self, header: &Value, claims: &Value) -> String {
            let alg = header["alg"]
                .as_str()
                .and_then(algorithm)
                .expect("test headers name an algorithm this key signs with");
            let mut input = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("header"));
            input.push('.');
            input.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims")));
            let sig =
                jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, alg).expect("sign");
            format!("{input}.{sig}")
        }
    }

    /// An unsigned token with `header` (for `alg: none` and HMAC cases).
    pub fn unsigned(header: &Value, claims: &Value, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("header")),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims"))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::keys::SigningAlg;
    use serde_json::json;

    #[test]
    fn a_signed_token_verifies_and_a_changed_one_does_not() {
        let key = TestKey::generate("k", SigningAlg::ES256);
        let token = key.sign(&json!({"alg": "ES256"}), &json!({"a": 1}));
        let jws = parse(&token).expect("parse");
        let alg = jws.algorithm(ACCEPTED_ALGS).expect("alg");
        assert_eq!(jws.verify(key.key.decoding_key(), alg), Ok(()));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"a":2}"#);
        parts[1] = &forged;
        let forged = parts.join(".");
        let jws = parse(&forged).expect("parse");
        assert_eq!(
            jws.verify(key.key.decoding_key(), alg),
            Err(JwsError::Signature)
        );
    }

    #[test]
    fn none_hmac_and_unknown_algorithms_are_refused() {
        for alg in ["none", "HS256", "HS512", "RS384", "ES512", "nonsense"] {
            let token = unsigned(&json!({ "alg": alg }), &json!({}), "");
            let jws = parse(&token).expect("parse");
            assert!(
                matches!(jws.algorithm(ACCEPTED_ALGS), Err(JwsError::Algorithm(_))),
                "{alg}"
            );
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let obj = URL_SAFE_NO_PAD.encode("{}");
        let arr = URL_SAFE_NO_PAD.encode("[]");
        let crit = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","crit":["b64"],"b64":false}"#);
        for token in [
            "".to_string(),
            "a.b".to_string(),
            format!("{obj}.{obj}.x.y.z"),
            format!("{arr}.{obj}.sig"),
            format!("{obj}.{arr}.sig"),
            format!("!!.{obj}.sig"),
            format!("{crit}.{obj}.sig"),
            "x".repeat(MAX_JWS_LEN + 1),
        ] {
            assert!(
                matches!(parse(&token), Err(JwsError::Malformed(_))),
                "{token:.40}"
            );
        }
    }

    #[test]
    fn typ_is_a_media_type() {
        let key = TestKey::generate("k2", SigningAlg::EdDSA);
        for (typ, ok) in [
            ("dpop+jwt", true),
            ("DPoP+JWT", true),
            ("application/dpop+jwt", true),
            ("jwt", false),
            ("at+jwt", false),
        ] {
            let token = key.sign(&json!({"alg": "EdDSA", "typ": typ}), &json!({}));
            assert_eq!(
                parse(&token).expect("parse").typ_is("dpop+jwt"),
                ok,
                "{typ}"
            );
        }
    }
}
