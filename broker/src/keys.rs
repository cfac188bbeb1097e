//! The broker's signing keys: several published at once, the first of each algorithm signs.
//!
//! Several keys may be published at once (`kid`), so a new key can be announced before it
//! is used and an old one kept until the tokens it signed have expired. Verification of
//! our own tokens goes through `jsonwebtoken` with the public keys.

pub use common::signing_key::{KeyError, SigningAlg, SigningKey};
use jsonwebtoken::jwk::JwkSet;

/// All keys: the first key of each algorithm signs; all are published.
pub struct KeySet {
    keys: Vec<SigningKey>,
    jwks_json: Vec<u8>,
}

impl KeySet {
    /// Builds a key set. The first key listed for an algorithm is the one that signs.
    pub fn new(keys: Vec<SigningKey>) -> Self {
        let set = JwkSet {
            keys: keys.iter().map(|k| k.jwk().clone()).collect(),
        };
        let jwks_json = serde_json::to_vec(&set).unwrap_or_else(|_| b"{\"keys\":[]}".to_vec());
        KeySet { keys, jwks_json }
    }

    /// The key that signs with `alg`, if one is configured.
    pub fn signer(&self, alg: SigningAlg) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.alg == alg)
    }

    /// The key with this `kid`.
    pub fn by_kid(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Algorithms that have a key.
    pub fn algorithms(&self) -> Vec<SigningAlg> {
        let mut algs: Vec<SigningAlg> = Vec::new();
        for k in &self.keys {
            if !algs.contains(&k.alg) {
                algs.push(k.alg);
            }
        }
        algs
    }

    /// The serialised JWKS document.
    pub fn jwks_json(&self) -> &[u8] {
        &self.jwks_json
    }

    /// Verifies a token signed by one of our keys and decodes its claims.
    pub fn verify<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        validation: &jsonwebtoken::Validation,
    ) -> Option<T> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = self.by_kid(header.kid.as_deref()?)?;
        if header.alg != key.jwt_alg() {
            return None;
        }
        let mut v = validation.clone();
        v.algorithms = vec![key.jwt_alg()];
        jsonwebtoken::decode::<T>(token, key.decoding_key(), &v)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    #[test]
    fn every_algorithm_signs_and_verifies() {
        for alg in SigningAlg::ALL {
            let (key, pem_text) = SigningKey::generate("k1", alg).expect("generate");
            let reloaded = SigningKey::from_pem("k1", alg, pem_text.as_bytes()).expect("reload");
            let set = KeySet::new(vec![reloaded]);
            let token = key
                .sign(
                    "JWT",
                    &serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}),
                )
                .expect("sign");
            let mut v = jsonwebtoken::Validation::new(key.jwt_alg());
            v.validate_aud = false;
            let claims: serde_json::Value = set.verify(&token, &v).expect("verifies");
            assert_eq!(claims["sub"], "x");
            // A changed payload no longer verifies.
            let parts: Vec<&str> = token.split('.').collect();
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(br#"{"sub":"y","exp":4000000000}"#),
                parts[2]
            );
            assert!(set.verify::<serde_json::Value>(&forged, &v).is_none());
        }
    }
}
