//! Secrets in configuration: never written inline, always named by where they are.
//!
//! `{ env = "NAME" }` reads an environment variable, `{ file = "path" }` a file (relative
//! to the configuration's folder; trailing line breaks are dropped). An unset variable or
//! an empty value is refused, the same way for the broker's own secrets and for every
//! connector's: an empty key would make every keyed hash guessable.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a secret comes from: `{ env = "NAME" }` or `{ file = "path" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file.
    File(String),
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SecretSource;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("{ env = \"NAME\" } or { file = \"path\" }")
            }
            // The value is a secret: the error never repeats it.
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretSource, E> {
                Err(E::custom(INLINE))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SecretSource, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    let source = match key.as_str() {
                        "env" => SecretSource::Env(value),
                        "file" => SecretSource::File(value),
                        other => {
                            return Err(serde::de::Error::unknown_field(other, &["env", "file"]))
                        }
                    };
                    if found.replace(source).is_some() {
                        return Err(serde::de::Error::custom(
                            "give either `env` or `file`, not both",
                        ));
                    }
                }
                found.ok_or_else(|| serde::de::Error::custom("needs `env` or `file`"))
            }
        }
        d.deserialize_any(V)
    }
}

/// What operators are told when a secret is written inline.
pub const INLINE: &str =
    "secrets are never written inline: use { env = \"NAME\" } or { file = \"path\" }";

impl SecretSource {
    /// Reads the secret; relative file paths are relative to `base_dir`. The error is an
    /// operator-readable reason that never holds the secret.
    pub fn read(&self, base_dir: &Path) -> Result<Vec<u8>, String> {
        match self {
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(v.into_bytes()),
                Ok(_) => Err(format!("environment variable `{name}` is empty")),
                Err(_) => Err(format!("environment variable `{name}` is not set")),
            },
            SecretSource::File(file) => match std::fs::read(resolve_path(base_dir, file)) {
                Ok(mut v) => {
                    while v.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                        v.pop();
                    }
                    if v.is_empty() {
                        Err(format!("secret file `{file}` is empty"))
                    } else {
                        Ok(v)
                    }
                }
                Err(e) => Err(format!("cannot read secret file `{file}`: {e}")),
            },
        }
    }
}

/// Reads a secret; a problem is pushed as (`key`, reason), the connectors' convention.
pub fn resolve(
    source: &SecretSource,
    base_dir: &Path,
    key: &str,
    problems: &mut Vec<(String, String)>,
) -> Option<Vec<u8>> {
    source
        .read(base_dir)
        .map_err(|reason| problems.push((key.into(), reason)))
        .ok()
}

/// A path relative to the configuration's folder (absolute paths are kept).
pub fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<SecretSource, String> {
        serde_json::from_str::<SecretSource>(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn only_env_or_file_is_accepted_and_inline_values_are_not_repeated() {
        assert_eq!(
            parse(r#"{"env": "X"}"#).ok(),
            Some(SecretSource::Env("X".into()))
        );
        assert_eq!(
            parse(r#"{"file": "k"}"#).ok(),
            Some(SecretSource::File("k".into()))
        );
        let inline = parse(r#""hunter2""#).expect_err("inline");
        assert!(inline.contains("never written inline"), "{inline}");
        assert!(!inline.contains("hunter2"));
        assert!(parse(r#"{"env": "X", "file": "k"}"#).is_err());
        assert!(parse(r#"{}"#).is_err());
    }

    #[test]
    fn an_empty_secret_file_is_refused_and_line_breaks_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("empty"), "\n").expect("write");
        std::fs::write(dir.path().join("key"), "s3cret\r\n").expect("write");
        let empty = SecretSource::File("empty".into()).read(dir.path());
        assert_eq!(empty, Err("secret file `empty` is empty".into()));
        let key = SecretSource::File("key".into()).read(dir.path());
        assert_eq!(key, Ok(b"s3cret".to_vec()));
        let missing = SecretSource::File("nope".into()).read(dir.path());
        assert!(missing.is_err_and(|e| e.starts_with("cannot read secret file `nope`")));
    }

    #[test]
    fn an_unset_variable_is_refused() {
        let mut problems = Vec::new();
        let got = resolve(
            &SecretSource::Env("COMMON_TEST_SURELY_UNSET_VARIABLE".into()),
            Path::new("."),
            "hash_key",
            &mut problems,
        );
        assert!(got.is_none());
        assert_eq!(problems[0].0, "hash_key");
        assert!(problems[0].1.contains("is not set"));
    }
}
