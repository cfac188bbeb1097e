//! A signing key loaded from a PKCS#8 PEM file: signs compact JWS and gives its public JWK.
//!
//! Used by the broker for its own tokens and by connectors that authenticate to a source
//! with a signed assertion (`private_key_jwt`). Every key carries its own `kid`, set in the
//! header of what it signs and in its JWK. Keys are parsed once and kept as aws-lc key
//! pairs (the same library `jsonwebtoken` verifies with here), so signing an ES256 token
//! costs one ECDSA operation, not a key parse; verification goes through `jsonwebtoken`.

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::KeyPair;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse, RSAKeyParameters, RSAKeyType,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};

/// A signing algorithm the broker supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (mandatory for OpenID Connect).
    RS256,
    /// RSASSA-PSS with SHA-256 (FAPI 2.0 accepts PS256 and ES256, not RS256).
    PS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlg {
    /// Every algorithm, in the order they are offered.
    pub const ALL: [SigningAlg; 4] = [
        SigningAlg::RS256,
        SigningAlg::PS256,
        SigningAlg::ES256,
        SigningAlg::EdDSA,
    ];

    /// The algorithm of a JOSE name.
    pub fn from_name(name: &str) -> Option<SigningAlg> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Whether keys of this algorithm are RSA keys.
    pub fn is_rsa(self) -> bool {
        matches!(self, SigningAlg::RS256 | SigningAlg::PS256)
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::RS256 => "RS256",
            SigningAlg::PS256 => "PS256",
            SigningAlg::ES256 => "ES256",
            SigningAlg::EdDSA => "EdDSA",
        }
    }

    /// The algorithm as `jsonwebtoken` names it.
    pub fn jwt_alg(self) -> Algorithm {
        match self {
            SigningAlg::RS256 => Algorithm::RS256,
            SigningAlg::PS256 => Algorithm::PS256,
            SigningAlg::ES256 => Algorithm::ES256,
            SigningAlg::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// Why a key could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not a PKCS#8 private key of the configured algorithm.
    #[error("{path} is not a PKCS#8 PEM private key for {alg}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// The configured algorithm.
        alg: &'static str,
        /// Why.
        reason: String,
    },
    /// Signing failed (should not happen with a valid key).
    #[error("signing failed")]
    Sign,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One signing key. `kid` and `alg` are read, never written after loading: the encoded
/// headers are made from them once.
pub struct SigningKey {
    /// Key id published in the JWKS and set in token headers.
    pub kid: String,
    /// Algorithm.
    pub alg: SigningAlg,
    signer: Signer,
    decoding: DecodingKey,
    jwk: Jwk,
    /// The encoded header for each of [`COMMON_TYPS`], made once: a token's header
    /// differs only in `typ`.
    headers: [String; COMMON_TYPS.len()],
}

/// The `typ` values the broker signs (ID tokens, JARM responses and signed UserInfo as
/// `JWT`; access tokens; logout tokens; signed introspection), whose encoded headers are
/// made when the key is loaded. Another `typ` gets its header made per token.
const COMMON_TYPS: [&str; 4] = ["JWT", "at+jwt", "logout+jwt", "token-introspection+jwt"];

/// The base64url encoding of `{"alg":…,"kid":…,"typ":…}`.
fn encoded_header(alg: SigningAlg, kid: &str, typ: &str) -> String {
    let header = serde_json::json!({"alg": alg.as_str(), "kid": kid, "typ": typ});
    URL_SAFE_NO_PAD.encode(header.to_string())
}

/// An operator-readable reason for a key aws-lc refused (its own names are terse).
fn rejected(e: aws_lc_rs::error::KeyRejected) -> String {
    match e.to_string().as_str() {
        "WrongAlgorithm" => "the file holds a key of another algorithm".into(),
        "InvalidEncoding" => "the key's contents are not valid for this algorithm".into(),
        "TooSmall" => "the key is too small".into(),
        "TooLarge" => "the key is too large".into(),
        other => format!("the key was refused ({other})"),
    }
}

impl SigningKey {
    /// Loads a PKCS#8 PEM private key.
    pub fn from_pem_file(kid: &str, alg: SigningAlg, path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read(path).map_err(|e| KeyError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_pem(kid, alg, &text).map_err(|reason| KeyError::Parse {
            path: path.display().to_string(),
            alg: alg.as_str(),
            reason,
        })
    }

    /// Parses a PKCS#8 PEM private key.
    pub fn from_pem(kid: &str, alg: SigningAlg, pem_text: &[u8]) -> Result<Self, String> {
        let block = pem::parse(pem_text).map_err(|e| e.to_string())?;
        if block.tag() != "PRIVATE KEY" {
            return Err(format!(
                "found a `{}` block, expected `PRIVATE KEY` (PKCS#8)",
                block.tag()
            ));
        }
        Self::from_pkcs8(kid, alg, block.contents())
    }

    /// Builds a key from PKCS#8 DER.
    pub fn from_pkcs8(kid: &str, alg: SigningAlg, der: &[u8]) -> Result<Self, String> {
        let (signer, encoding) = match alg {
            SigningAlg::RS256 | SigningAlg::PS256 => {
                let kp = RsaKeyPair::from_pkcs8(der).map_err(rejected)?;
                if kp.public_modulus_len() < 256 {
                    return Err("RSA keys must have at least 2048 bits".into());
                }
                (Signer::Rsa(kp), EncodingKey::from_rsa_der(der))
            }
            SigningAlg::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(rejected)?;
                (Signer::Ec(kp), EncodingKey::from_ec_der(der))
            }
            SigningAlg::EdDSA => {
                let kp = Ed25519KeyPair::from_pkcs8(der).map_err(rejected)?;
                (Signer::Ed(kp), EncodingKey::from_ed_der(der))
            }
        };
        let mut jwk = match &signer {
            // jsonwebtoken reads RSA components from PKCS#1 only; take them from aws-lc.
            Signer::Rsa(kp) => {
                let public = kp.public_key();
                Jwk {
                    common: Default::default(),
                    algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
                        key_type: RSAKeyType::RSA,
                        n: URL_SAFE_NO_PAD
                            .encode(public.modulus().big_endian_without_leading_zero()),
                        e: URL_SAFE_NO_PAD
                            .encode(public.exponent().big_endian_without_leading_zero()),
                    }),
                }
            }
            _ => Jwk::from_encoding_key(&encoding, alg.jwt_alg()).map_err(|e| e.to_string())?,
        };
        jwk.common.key_id = Some(kid.to_string());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match alg {
            SigningAlg::RS256 => KeyAlgorithm::RS256,
            SigningAlg::PS256 => KeyAlgorithm::PS256,
            SigningAlg::ES256 => KeyAlgorithm::ES256,
            SigningAlg::EdDSA => KeyAlgorithm::EdDSA,
        });
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        Ok(SigningKey {
            kid: kid.to_string(),
            alg,
            signer,
            decoding,
            jwk,
            headers: COMMON_TYPS.map(|typ| encoded_header(alg, kid, typ)),
        })
    }

    /// Generates a new key and returns it with its PKCS#8 PEM encoding (demo and tests).
    pub fn generate(kid: &str, alg: SigningAlg) -> Result<(Self, String), String> {
        let der: Vec<u8> = match alg {
            SigningAlg::RS256 | SigningAlg::PS256 => {
                let kp = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|e| e.to_string())?;
                kp.as_der().map_err(|e| e.to_string())?.as_ref().to_vec()
            }
            SigningAlg::ES256 => {
                let kp = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|e| e.to_string())?;
                kp.to_pkcs8v1()
                    .map_err(|e| e.to_string())?
                    .as_ref()
                    .to_vec()
            }
            SigningAlg::EdDSA => {
                let kp = Ed25519KeyPair::generate().map_err(|e| e.to_string())?;
                kp.to_pkcs8v1()
                    .map_err(|e| e.to_string())?
                    .as_ref()
                    .to_vec()
            }
        };
        let pem_text = pem::encode(&pem::Pem::new("PRIVATE KEY", der.clone()));
        Ok((Self::from_pkcs8(kid, alg, &der)?, pem_text))
    }

    fn sign_bytes(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.signer {
            Signer::Rsa(kp) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    SigningAlg::PS256 => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(padding, &SystemRandom::new(), msg, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
            Signer::Ec(kp) => kp
                .sign(&SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            Signer::Ed(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
        }
    }

    /// Signs `claims` as a compact JWS with header `typ` (`JWT`, `at+jwt`, `logout+jwt`).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, KeyError> {
        let mut out = String::with_capacity(1024);
        match COMMON_TYPS.iter().position(|t| *t == typ) {
            Some(i) => out.push_str(&self.headers[i]),
            None => out.push_str(&encoded_header(self.alg, &self.kid, typ)),
        }
        out.push('.');
        // Serialised into a buffer sized for an ID token, then encoded in one pass (a base64
        // writer under serde_json's many small writes costs more than the copy).
        let mut body = Vec::with_capacity(512);
        serde_json::to_writer(&mut body, claims).map_err(|_| KeyError::Sign)?;
        URL_SAFE_NO_PAD.encode_string(body, &mut out);
        let sig = self.sign_bytes(out.as_bytes())?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut out);
        Ok(out)
    }

    /// The public key for verification.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The algorithm as `jsonwebtoken` names it.
    pub fn jwt_alg(&self) -> Algorithm {
        self.alg.jwt_alg()
    }

    /// The public JWK.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_algorithm_for_key_is_rejected() {
        let (_, pem_text) = SigningKey::generate("k", SigningAlg::ES256).expect("generate");
        let err = SigningKey::from_pem("k", SigningAlg::RS256, pem_text.as_bytes())
            .err()
            .expect("an ES256 key is not an RS256 key");
        assert_eq!(err, "the file holds a key of another algorithm");
    }

    #[test]
    fn every_algorithm_signs_with_its_own_kid_and_verifies_through_jsonwebtoken() {
        for alg in SigningAlg::ALL {
            let kid = format!("kid-{}", alg.as_str());
            let (key, pem_text) = SigningKey::generate(&kid, alg).expect("generate");
            let reloaded = SigningKey::from_pem(&kid, alg, pem_text.as_bytes()).expect("reload");
            assert_eq!(reloaded.jwk().common.key_id.as_deref(), Some(kid.as_str()));
            let token = key
                .sign(
                    "JWT",
                    &serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}),
                )
                .expect("sign");
            let header = jsonwebtoken::decode_header(&token).expect("header");
            assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
            assert_eq!(header.alg, alg.jwt_alg());
            let mut v = jsonwebtoken::Validation::new(alg.jwt_alg());
            v.validate_aud = false;
            // Verified with the key rebuilt from the published JWK, as a relying party does.
            let public = DecodingKey::from_jwk(reloaded.jwk()).expect("jwk");
            let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &public, &v)
                .expect("verifies")
                .claims;
            assert_eq!(claims["sub"], "x");
            assert_eq!(SigningAlg::from_name(alg.as_str()), Some(alg));
        }
    }

    #[test]
    fn ps256_and_rs256_signatures_are_not_interchangeable() {
        let (key, pem_text) = SigningKey::generate("k", SigningAlg::PS256).expect("generate");
        let as_rs = SigningKey::from_pem("k", SigningAlg::RS256, pem_text.as_bytes()).expect("rsa");
        let token = key
            .sign("JWT", &serde_json::json!({"exp": 4_000_000_000u64}))
            .expect("sign");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.validate_aud = false;
        v.required_spec_claims.clear();
        // A PSS signature under an RS256 header would not verify as PKCS#1 v1.5.
        let parts: Vec<&str> = token.split('.').collect();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k","typ":"JWT"}"#);
        let relabelled = format!("{header}.{}.{}", parts[1], parts[2]);
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&relabelled, as_rs.decoding_key(), &v)
                .is_err()
        );
    }

    #[test]
    fn headers_made_once_equal_headers_made_per_token() {
        // A kid that needs JSON escaping, a common typ and an uncommon one.
        let (key, _) = SigningKey::generate("k\"1", SigningAlg::ES256).expect("generate");
        for typ in ["JWT", "at+jwt", "secevent+jwt"] {
            let token = key.sign(typ, &serde_json::json!({"n": 1})).expect("sign");
            let header = token.split('.').next().expect("header");
            let decoded: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64"))
                    .expect("json");
            assert_eq!(
                decoded,
                serde_json::json!({"alg": "ES256", "kid": "k\"1", "typ": typ})
            );
            let body = token.split('.').nth(1).expect("body");
            assert_eq!(URL_SAFE_NO_PAD.decode(body).expect("b64"), br#"{"n":1}"#);
        }
    }
}
