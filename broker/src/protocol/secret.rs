//! Values that must never reach a log: CSRF tokens, `state`, `nonce`, login hints, cookie
//! secrets. `Debug` prints `[redacted]`; comparison is in constant time.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// A string that redacts itself in `Debug` and compares in constant time.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send or hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented value.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(v: String) -> Self {
        Secret(v)
    }
}

impl From<&str> for Secret {
    fn from(v: &str) -> Self {
        Secret(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("csrf-token-value");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert!(s.matches("csrf-token-value"));
        assert!(!s.matches("csrf-token-valuf"));
        assert_eq!(
            serde_json::to_string(&s).ok().as_deref(),
            Some("\"csrf-token-value\"")
        );
    }
}
