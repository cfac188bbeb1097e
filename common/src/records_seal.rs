//! Sealing what the records must keep but never hold in clear: the citizen-ID numbers a
//! person's `citizen_id` claim is released from, and the subjects of ways in.
//!
//! AES-256-GCM (aws-lc) with a fresh random nonce per value; the key is derived by HKDF-SHA256
//! from `pairwise_secret` with its own label, so it is no other key of the broker. The kind
//! of value is the associated data: a sealed subject never opens as a number.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// What a sealed value is.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A citizen-ID number.
    CitizenId,
    /// A subject at a connector.
    Subject,
}

impl Kind {
    fn aad(self) -> &'static [u8] {
        match self {
            Kind::CitizenId => b"broker-records/citizen-id",
            Kind::Subject => b"broker-records/subject",
        }
    }
}

const PREFIX: &str = "v1.";

/// The sealing key, derived once per configuration (the broker's `Settings::seal_key`):
/// HKDF and the AES-GCM key schedule cost more than sealing or opening one value.
pub struct SealKey(Option<LessSafeKey>);

impl SealKey {
    /// The key of `pairwise_secret`.
    pub fn new(secret: &[u8]) -> SealKey {
        SealKey(key(secret))
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

fn key(secret: &[u8]) -> Option<LessSafeKey> {
    let prk = Salt::new(HKDF_SHA256, b"broker records sealing").extract(secret);
    let okm = prk.expand(&[b"records-seal-v1"], &AES_256_GCM).ok()?;
    let mut bytes = [0u8; 32];
    okm.fill(&mut bytes).ok()?;
    Some(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &bytes).ok()?,
    ))
}

/// Seals a value: `v1.` and base64url of nonce, ciphertext and tag.
pub fn seal(key: &SealKey, kind: Kind, value: &str) -> Option<String> {
    let key = key.0.as_ref()?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).ok()?;
    let mut data = value.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(kind.aad()),
        &mut data,
    )
    .ok()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Some(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
}

/// Opens a sealed value; `None` if it was sealed with another key or as another kind, or
/// was altered.
pub fn open(key: &SealKey, kind: Kind, sealed: &str) -> Option<String> {
    let key = key.0.as_ref()?;
    let raw = URL_SAFE_NO_PAD.decode(sealed.strip_prefix(PREFIX)?).ok()?;
    let (nonce, data) = raw.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(kind.aad()), &mut data)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_kind() {
        let secret = &SealKey::new(b"0123456789abcdef0123456789abcdef");
        let sealed = seal(secret, Kind::CitizenId, "079201001234").expect("sealed");
        assert!(!sealed.contains("079201001234"));
        assert_ne!(
            Some(sealed.clone()),
            seal(secret, Kind::CitizenId, "079201001234"),
            "a fresh nonce each time"
        );
        assert_eq!(
            open(secret, Kind::CitizenId, &sealed).as_deref(),
            Some("079201001234")
        );
        assert_eq!(open(secret, Kind::Subject, &sealed), None);
        assert_eq!(
            open(
                &SealKey::new(b"another secret of 32 bytes......."),
                Kind::CitizenId,
                &sealed
            ),
            None
        );
        let mut altered = sealed.clone();
        altered.pop();
        altered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(open(secret, Kind::CitizenId, &altered), None);
    }

    #[test]
    fn values_sealed_before_still_open() {
        // Sealed under this secret when the key was derived per value: every number and
        // subject already in the records must keep opening.
        let key = SealKey::new(b"0123456789abcdef0123456789abcdef");
        assert_eq!(
            open(
                &key,
                Kind::CitizenId,
                "v1.aPLO26LjURBM476ltvAZcmKa2AkkZx83gjqUMAFDzar6iWQFBDZuPQ"
            )
            .as_deref(),
            Some("079201001234")
        );
        assert_eq!(
            open(
                &key,
                Kind::Subject,
                "v1.h_sWMsHCOVbNROkEp8xC7R61N3qZGPN58ogm3rOzjbeUmwblqShIitHW_A"
            )
            .as_deref(),
            Some("vneid-subject-1")
        );
    }
}
