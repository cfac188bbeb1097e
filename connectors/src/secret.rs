//! Secrets in connector settings and keyed hashes of personal data.
//!
//! Settings never hold a secret inline: they name an environment variable or a file
//! ([`SecretSource`], the same form as the OIDC connector's `client_secret`). Personal
//! data that must be compared or counted (ID numbers, phone numbers, usernames, one-time
//! codes) is kept only as a [`KeyedHash`], so neither the store nor the logs hold it in
//! clear, and nobody without the key can test guesses against what is stored.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::oidc::SecretSource;

/// Reads a secret; problems are (key, reason) with `key` the settings key.
pub fn resolve(
    source: &SecretSource,
    base_dir: &Path,
    key: &str,
    problems: &mut Vec<(String, String)>,
) -> Option<Vec<u8>> {
    let value = match source {
        SecretSource::Env(name) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Some(v),
            _ => {
                problems.push((
                    key.into(),
                    format!("environment variable `{name}` is not set"),
                ));
                None
            }
        },
        SecretSource::File(file) => match std::fs::read_to_string(resolve_path(base_dir, file)) {
            Ok(v) if !v.trim_end_matches(['\n', '\r']).is_empty() => {
                Some(v.trim_end_matches(['\n', '\r']).to_string())
            }
            Ok(_) => {
                problems.push((key.into(), format!("secret file `{file}` is empty")));
                None
            }
            Err(e) => {
                problems.push((key.into(), format!("cannot read secret file `{file}`: {e}")));
                None
            }
        },
    };
    value.map(String::into_bytes)
}

/// A path relative to the configuration's folder.
pub fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// HMAC-SHA256 under a secret key: stable, not reversible, and useless without the key.
#[derive(Clone)]
pub struct KeyedHash {
    key: Vec<u8>,
}

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash([redacted])")
    }
}

impl KeyedHash {
    /// A hasher with this key.
    pub fn new(key: &[u8]) -> Self {
        KeyedHash { key: key.to_vec() }
    }

    /// The raw MAC of the parts, each length-prefixed so `("ab","c")` differs from
    /// `("a","bc")`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length: new_from_slice cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => return [0; 32],
        };
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// A short hex tag of a labelled value, for store keys and log correlation.
    pub fn tag(&self, label: &str, value: &str) -> String {
        let mac = self.mac(&[label.as_bytes(), value.as_bytes()]);
        mac.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(a.tag("x", "y").len(), 32);
        assert!(!format!("{a:?}").contains("key-a"));
    }
}
