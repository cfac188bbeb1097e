//! Keyed hashes: personal data that must be compared or counted (ID numbers, phone
//! numbers, usernames, one-time codes, client addresses) is kept only as a keyed hash, so
//! neither the store nor the logs hold it in clear, and nobody without the key can test
//! guesses against what is stored.
//!
//! Two framings exist and both are frozen, because stored keys and issued subjects depend
//! on their exact bytes:
//!
//! * [`KeyedHash`]: the connectors' hashes, each part length-prefixed;
//! * [`pairwise_b64`]: the broker's identifiers under its pairwise secret (pairwise `sub`
//!   values, person index keys), parts joined by `\x1f`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail; the fallback key is never used.
    Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| Hmac::<Sha256>::new_from_slice(&[0]).expect("a one-byte key"))
}

/// HMAC-SHA256 under a secret key: stable, not reversible, and useless without the key.
/// The keyed state (the key's inner and outer blocks) is made once, so each MAC hashes only
/// its parts.
#[derive(Clone)]
pub struct KeyedHash {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash([redacted])")
    }
}

impl KeyedHash {
    /// A hasher with this key.
    pub fn new(key: &[u8]) -> Self {
        KeyedHash { keyed: hmac(key) }
    }

    /// The raw MAC of the parts, each prefixed with its length (8 bytes, big-endian) so
    /// `("ab","c")` differs from `("a","bc")`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// A short hex tag (128 bits) of a labelled value, for store keys and log correlation.
    pub fn tag(&self, label: &str, value: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mac = self.mac(&[label.as_bytes(), value.as_bytes()]);
        let mut hex = String::with_capacity(32);
        for b in &mac[..16] {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        hex
    }
}

/// The broker's identifiers under its pairwise secret: base64url (unpadded) of
/// HMAC-SHA256 over the parts joined by one `\x1f` byte.
///
/// This framing owns the bytes of every pairwise `sub` (`["sub", sector, person id]`) and
/// of the person index keys (`["cid", number]`, `["ext", connector, subject]`): changing
/// it would change every subject platforms know and orphan every stored index. Parts must
/// not contain `\x1f` for the framing to be unambiguous; the ones above never do (sector
/// hosts, ids, normalised numbers). New uses should take a [`KeyedHash`] with a key of
/// their own instead.
pub fn pairwise_b64(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = hmac(secret);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(b"\x1f");
        }
        mac.update(p);
    }
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn tags_depend_on_key_label_and_value() {
        let a = KeyedHash::new(b"key-a");
        let b = KeyedHash::new(b"key-b");
        assert_eq!(
            a.tag("phone", "+84901234567"),
            a.tag("phone", "+84901234567")
        );
        assert_ne!(
            a.tag("phone", "+84901234567"),
            b.tag("phone", "+84901234567")
        );
        assert_ne!(a.tag("phone", "1"), a.tag("id", "1"));
        assert!(!format!("{a:?}").contains("key-a"));
    }

    #[test]
    fn keyed_hash_framing_is_frozen() {
        // Computed independently (Python's hmac): stored rate-limit and code keys use it.
        assert_eq!(
            KeyedHash::new(b"key-a").tag("phone", "+84901234567"),
            "e361d63b4e6b8b65f1dc968bd075b8e0"
        );
    }

    #[test]
    fn pairwise_framing_is_frozen() {
        // Computed independently (Python's hmac over the parts joined by 0x1f): if these
        // change, every pairwise `sub` and every person index key changes with them.
        assert_eq!(
            pairwise_b64(SECRET, &[b"sub", b"rp.example.org", b"p-1"]),
            "SAUjYTfWKFGhtny2s-zgmJXMBFJseuDtDavaVRujhCU"
        );
        assert_eq!(
            pairwise_b64(SECRET, &[b"cid", b"079201001234"]),
            "3PmDxZjK5p2tB5l60ynie8tDqudxPdoFisdI0UvY7mU"
        );
    }

    #[test]
    fn pairwise_separates_parts() {
        assert_ne!(
            pairwise_b64(b"k", &[b"ab", b"c"]),
            pairwise_b64(b"k", &[b"a", b"bc"])
        );
    }
}
