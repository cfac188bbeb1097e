//! Sealing small records that must travel with a login but hold personal data (the ID
//! number, name and phone between two steps of a bank-card login): AES-256-GCM from
//! aws-lc, a random 96-bit nonce per record, and a context bound as associated data so a
//! sealed record only opens where it was sealed.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::hash::KeyedHash;

/// Seals and opens records under one key.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    /// A sealer whose key is derived from a connector's secret for one `purpose` (a
    /// keyed hash of the purpose: distinct purposes get unrelated keys).
    pub fn derive(secret: &KeyedHash, purpose: &str) -> Sealer {
        let key = secret.mac(&[b"seal", purpose.as_bytes()]);
        // A 32-byte key is exactly what AES-256-GCM takes.
        let unbound = UnboundKey::new(&AES_256_GCM, &key)
            .unwrap_or_else(|_| unreachable!("AES-256-GCM accepts a 32-byte key"));
        Sealer {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Seals `plain` bound to `context`: base64url of nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no randomness".to_string())?;
        let mut out = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut out,
            )
            .map_err(|_| "sealing failed".to_string())?;
        let mut all = nonce.to_vec();
        all.extend_from_slice(&out);
        Ok(URL_SAFE_NO_PAD.encode(all))
    }

    /// Opens a record sealed for `context`; `None` if it was changed, sealed elsewhere or
    /// under another key.
    pub fn open(&self, context: &str, sealed: &str) -> Option<Vec<u8>> {
        let all = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if all.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = all.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_record_opens_only_with_its_key_and_context() {
        let key = KeyedHash::new(b"0123456789abcdef0123456789abcdef");
        let s = Sealer::derive(&key, "bank-card-state");
        let sealed = s.seal("flow-1", b"079201001234").expect("seal");
        assert!(!sealed.contains("079201001234"));
        assert_eq!(
            s.open("flow-1", &sealed).as_deref(),
            Some(&b"079201001234"[..])
        );
        assert_eq!(s.open("flow-2", &sealed), None, "another context");
        let other = Sealer::derive(&key, "another-purpose");
        assert_eq!(other.open("flow-1", &sealed), None, "another key");
        let mut tampered = URL_SAFE_NO_PAD.decode(&sealed).expect("b64");
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(s.open("flow-1", &URL_SAFE_NO_PAD.encode(tampered)), None);
        assert_ne!(
            sealed,
            s.seal("flow-1", b"079201001234").expect("seal"),
            "fresh nonce"
        );
    }
}
