//! The public keys of DPoP proofs, parsed once per key and remembered by the key's bytes.
//!
//! A client sends the same key in every proof (at `/token`, `/userinfo`, each refresh), and
//! turning its JWK into a key the cryptography can use (checking that the point is on the
//! curve, building aws-lc's key) cost about 16,000 instructions a proof, 1 % of a DPoP
//! refresh grant. The memo is keyed by the decoded public key itself, so what it returns is
//! always the key it was asked for: it holds no state that could go stale, which is why it
//! is process-wide rather than carried through every caller. It is bounded; when full it
//! starts over, so a flood of fresh keys costs what no memo would, never memory.
//!
//! P-256 and Ed25519 keys only: RSA proofs are rare and verify cheaply, and go through
//! `jsonwebtoken` as before.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// How many keys are remembered before the memo starts over.
const MAX_KEYS: usize = 4096;

static KEYS: LazyLock<Mutex<HashMap<KeyBytes, Arc<ParsedPublicKey>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A public key as aws-lc reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyBytes {
    /// SEC 1 uncompressed point: 0x04, then x and y, 32 bytes each.
    P256([u8; 65]),
    /// The Ed25519 public key.
    Ed25519([u8; 32]),
}

/// The members of a proof's public key that the memo can parse.
#[derive(Debug, Clone, Copy)]
pub enum Members<'a> {
    /// An EC P-256 key (`x`, `y`, base64url).
    P256 {
        /// The `x` coordinate.
        x: &'a str,
        /// The `y` coordinate.
        y: &'a str,
    },
    /// An OKP Ed25519 key (`x`, base64url).
    Ed25519 {
        /// The public key.
        x: &'a str,
    },
}

/// The parsed key of `members`: from the memo, or parsed and remembered. `None` when the
/// members are not a valid public key.
pub fn parsed(members: Members<'_>) -> Option<Arc<ParsedPublicKey>> {
    let bytes = decode(members)?;
    let keys = KEYS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(key) = keys.get(&bytes) {
        return Some(Arc::clone(key));
    }
    drop(keys);
    let key = Arc::new(match &bytes {
        KeyBytes::P256(point) => ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).ok()?,
        KeyBytes::Ed25519(key) => ParsedPublicKey::new(&ED25519, key).ok()?,
    });
    let mut keys = KEYS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if keys.len() >= MAX_KEYS {
        keys.clear();
    }
    keys.insert(bytes, Arc::clone(&key));
    Some(key)
}

fn decode(members: Members<'_>) -> Option<KeyBytes> {
    match members {
        Members::P256 { x, y } => {
            let mut point = [0u8; 65];
            point[0] = 4;
            (decode_exact(x, &mut point[1..33]) && decode_exact(y, &mut point[33..]))
                .then_some(KeyBytes::P256(point))
        }
        Members::Ed25519 { x } => {
            let mut key = [0u8; 32];
            decode_exact(x, &mut key).then_some(KeyBytes::Ed25519(key))
        }
    }
}

/// Decodes base64url `text` into exactly `out.len()` bytes.
fn decode_exact(text: &str, out: &mut [u8]) -> bool {
    // Decoding into a slice needs room for the padding bits' worth: a little more.
    let mut buf = [0u8; 48];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut buf) {
        Ok(n) if n == out.len() => {
            out.copy_from_slice(&buf[..n]);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningAlg;
    use crate::oidc::jws::test_support::TestKey;

    fn member(key: &TestKey, name: &str) -> String {
        key.public_jwk()[name].as_str().expect("member").to_string()
    }

    #[test]
    fn a_key_is_parsed_once_and_bad_members_are_refused() {
        let ec = TestKey::generate("ec", SigningAlg::ES256);
        let (x, y) = (member(&ec, "x"), member(&ec, "y"));
        let p256 = Members::P256 { x: &x, y: &y };
        let first = parsed(p256).expect("valid key");
        let again = parsed(p256).expect("remembered");
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second lookup parsed again"
        );
        let other = TestKey::generate("other", SigningAlg::ES256);
        let (other_x, other_y) = (member(&other, "x"), member(&other, "y"));
        let second = parsed(Members::P256 {
            x: &other_x,
            y: &other_y,
        })
        .expect("valid key");
        assert!(
            !Arc::ptr_eq(&first, &second),
            "another key is another entry"
        );

        let ed = TestKey::generate("ed", SigningAlg::EdDSA);
        let ed_x = member(&ed, "x");
        assert!(parsed(Members::Ed25519 { x: &ed_x }).is_some());

        // y of another point: not on the curve with this x.
        assert!(parsed(Members::P256 { x: &x, y: &other_y }).is_none());
        // Too short, too long, not base64url.
        assert!(parsed(Members::P256 { x: "AAAA", y: &y }).is_none());
        let long = format!("{x}AAAA");
        assert!(parsed(Members::P256 { x: &long, y: &y }).is_none());
        assert!(parsed(Members::Ed25519 { x: "!!!!" }).is_none());
    }
}
