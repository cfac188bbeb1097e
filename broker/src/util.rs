//! Small helpers shared by the flows: random tokens, digests, time. Keyed hashes are in
//! `common::hash` (the pairwise framing of subjects and index keys is `pairwise_b64`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A random URL-safe token with `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Base64url SHA-256 of a value (store keys of secrets, PKCE).
pub fn sha256_b64(value: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value))
}

/// Constant-time comparison of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Unix time in milliseconds.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix time in seconds.
pub fn now_secs() -> u64 {
    now_millis() / 1000
}

/// How many times a change of durable records is decided again after losing a race (to a
/// concurrent change of the same person or setting) before the caller gives up.
pub const ATTEMPTS: usize = 8;

/// A short random pause before deciding again after a lost race (up to a few tens of
/// milliseconds, growing with the attempt), so the contenders do not collide again in step.
pub async fn backoff(attempt: usize) {
    let most = 1u64 << attempt.min(6);
    let ms = rand::random_range(1..=most);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_long() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
    }
}
