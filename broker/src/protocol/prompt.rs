//! The `prompt` parameter (OIDC Core 3.1.2.1).

use serde::{Deserialize, Serialize};

/// One `prompt` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// No page may be shown: answer from the session or fail.
    None,
    /// Authenticate again even with a session.
    Login,
    /// Ask for consent again.
    Consent,
    /// Let the citizen choose the account.
    SelectAccount,
}

impl Prompt {
    /// Parses one value; `None` for an unknown one.
    pub fn parse(value: &str) -> Option<Prompt> {
        match value {
            "none" => Some(Prompt::None),
            "login" => Some(Prompt::Login),
            "consent" => Some(Prompt::Consent),
            "select_account" => Some(Prompt::SelectAccount),
            _ => None,
        }
    }

    /// Parses a space-separated list: unknown values and `none` with others are refused
    /// (the message names the problem for `error_description`).
    pub fn parse_list(value: &str) -> Result<Vec<Prompt>, String> {
        let mut out = Vec::new();
        for v in value.split_whitespace() {
            let p = Prompt::parse(v).ok_or_else(|| format!("unknown prompt value `{v}`"))?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        if out.contains(&Prompt::None) && out.len() > 1 {
            return Err("prompt=none cannot be combined with other values".into());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_refuse() {
        assert_eq!(
            Prompt::parse_list("login consent"),
            Ok(vec![Prompt::Login, Prompt::Consent])
        );
        assert_eq!(Prompt::parse_list(""), Ok(vec![]));
        assert!(Prompt::parse_list("none login").is_err());
        assert!(Prompt::parse_list("create")
            .unwrap_err()
            .contains("`create`"));
        assert_eq!(
            serde_json::to_string(&Prompt::SelectAccount)
                .ok()
                .as_deref(),
            Some("\"select_account\"")
        );
    }
}
