//! Request parameters (`application/x-www-form-urlencoded`), each at most once.

use super::OAuthError;

/// Request parameters; each may appear once (RFC 6749 3.1).
pub type Params = std::collections::BTreeMap<String, String>;

/// Parses `application/x-www-form-urlencoded` text, refusing repeated parameters. Empty
/// values count as absent (RFC 6749 3.1).
pub fn parse_params(text: &[u8]) -> Result<Params, OAuthError> {
    let mut out = Params::new();
    for (k, v) in url::form_urlencoded::parse(text) {
        if v.is_empty() {
            continue;
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{k}` is repeated"
            )));
        }
    }
    Ok(out)
}
