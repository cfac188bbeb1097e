//! JWT Secured Authorization Response Mode (JARM): the authorization response as one JWT
//! signed by the broker, with `iss`, `aud` and `exp` inside, delivered in the query, the
//! fragment or an auto-submitted form (FAPI 2.0 Message Signing).
//!
//! Only the code flow is served, so `response_mode=jwt` means `query.jwt` (JARM).
//! The caller picks the key (the client's `authorization_signed_response_alg`, RS256,
//! PS256, ES256 or EdDSA, through `KeySet::signer`) and sends what [`deliver`] gives.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::keys::{KeyError, SigningKey};

/// How long a JARM response is valid (JARM asks for a short lifetime; the code in it
/// lives 60 s under FAPI anyway).
pub const RESPONSE_LIFETIME_SECS: u64 = 60;

/// A JWT response mode for the code flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtResponseMode {
    /// `query.jwt` (and `jwt`, its default for the code flow).
    Query,
    /// `fragment.jwt`.
    Fragment,
    /// `form_post.jwt`.
    FormPost,
}

impl JwtResponseMode {
    /// The mode a `response_mode` value asks for; `None` for the non-JWT modes.
    pub fn parse(response_mode: &str) -> Option<Self> {
        Some(match response_mode {
            "jwt" | "query.jwt" => JwtResponseMode::Query,
            "fragment.jwt" => JwtResponseMode::Fragment,
            "form_post.jwt" => JwtResponseMode::FormPost,
            _ => return None,
        })
    }
}

/// The `response_mode` values the code flow supports with JARM (for discovery's
/// `response_modes_supported`, beside `query`).
pub const JWT_RESPONSE_MODES: &[&str] = &["jwt", "query.jwt", "fragment.jwt", "form_post.jwt"];

/// Signs the authorization response `params` (`code` and `state`, or `error`,
/// `error_description` and `state`) for `client_id`. `now` in Unix seconds.
pub fn response_jwt(
    key: &SigningKey,
    issuer: &str,
    client_id: &str,
    params: &[(&str, &str)],
    now: u64,
) -> Result<String, KeyError> {
    let mut claims = Map::new();
    for (name, value) in params {
        claims.insert((*name).to_string(), Value::String((*value).to_string()));
    }
    // The envelope is set last, so no response parameter can replace it.
    claims.insert("iss".into(), Value::String(issuer.to_string()));
    claims.insert("aud".into(), Value::String(client_id.to_string()));
    claims.insert("exp".into(), Value::from(now + RESPONSE_LIFETIME_SECS));
    key.sign("JWT", &Value::Object(claims))
}

/// What to send back to the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A `303 See Other` to this URL.
    Redirect(String),
    /// A `200` HTML page that posts the response to the client: send `body` with
    /// `Content-Type: text/html; charset=utf-8`, `Cache-Control: no-store` and
    /// `Content-Security-Policy: csp` (it allows exactly the page's own script and a form
    /// to the redirect URI's origin).
    FormPost {
        /// The page.
        body: String,
        /// Its Content-Security-Policy.
        csp: String,
    },
}

/// Delivers the JARM `response` to `redirect_uri` in `mode`.
pub fn deliver(mode: JwtResponseMode, redirect_uri: &str, response: &str) -> Delivery {
    let encoded: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response", response)
        .finish();
    match mode {
        JwtResponseMode::Query => {
            let sep = if redirect_uri.contains('?') { '&' } else { '?' };
            Delivery::Redirect(format!("{redirect_uri}{sep}{encoded}"))
        }
        JwtResponseMode::Fragment => Delivery::Redirect(format!("{redirect_uri}#{encoded}")),
        JwtResponseMode::FormPost => form_post(redirect_uri, &[("response", response)]),
    }
}

/// The auto-submit script: one fixed text, so the CSP allows it by its hash.
const SUBMIT_SCRIPT: &str = "document.forms[0].submit();";

/// An auto-submitted form posting `fields` to `action` (OAuth 2.0 Form Post Response
/// Mode), with a button for browsers without scripts.
pub fn form_post(action: &str, fields: &[(&str, &str)]) -> Delivery {
    let inputs: String = fields
        .iter()
        .map(|(n, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(n),
                escape(v)
            )
        })
        .collect();
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Submit</title></head>\
<body><form method=\"post\" action=\"{}\">{inputs}<noscript><button type=\"submit\">Continue</button></noscript>\
</form><script>{SUBMIT_SCRIPT}</script></body></html>",
        escape(action)
    );
    let origin = url::Url::parse(action)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "'none'".into());
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{}'; form-action {origin}; frame-ancestors 'none'; base-uri 'none'",
        script_hash()
    );
    Delivery::FormPost { body, csp }
}

/// The CSP source hash of [`SUBMIT_SCRIPT`] (standard base64 of its SHA-256).
fn script_hash() -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    STANDARD.encode(Sha256::digest(SUBMIT_SCRIPT.as_bytes()))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeySet, SigningAlg};

    const NOW: u64 = 1_800_000_000;

    fn decode(jwt: &str, key: SigningKey) -> Value {
        let set = KeySet::new(vec![key]);
        let mut v = jsonwebtoken::Validation::new(set.algorithms()[0].jwt_alg());
        v.set_audience(&["client-1"]);
        v.set_issuer(&["https://broker.example"]);
        v.validate_exp = false; // NOW is a fixed time in the future of the test run
        set.verify(jwt, &v)
            .expect("the response verifies with the broker's JWKS")
    }

    #[test]
    fn the_response_jwt_has_the_envelope_and_the_parameters() {
        let (key, pem_text) = SigningKey::generate("jarm", SigningAlg::ES256).expect("key");
        let jwt = response_jwt(
            &key,
            "https://broker.example",
            "client-1",
            &[
                ("code", "c0de"),
                ("state", "s1"),
                ("iss", "https://evil.example"),
            ],
            NOW,
        )
        .expect("sign");
        let again =
            SigningKey::from_pem("jarm", SigningAlg::ES256, pem_text.as_bytes()).expect("pem");
        let claims = decode(&jwt, again);
        assert_eq!(claims["code"], "c0de");
        assert_eq!(claims["state"], "s1");
        assert_eq!(
            claims["iss"], "https://broker.example",
            "parameters cannot replace iss"
        );
        assert_eq!(claims["aud"], "client-1");
        assert_eq!(claims["exp"], NOW + RESPONSE_LIFETIME_SECS);
    }

    #[test]
    fn modes_and_deliveries() {
        assert_eq!(JwtResponseMode::parse("jwt"), Some(JwtResponseMode::Query));
        assert_eq!(
            JwtResponseMode::parse("query.jwt"),
            Some(JwtResponseMode::Query)
        );
        assert_eq!(
            JwtResponseMode::parse("fragment.jwt"),
            Some(JwtResponseMode::Fragment)
        );
        assert_eq!(
            JwtResponseMode::parse("form_post.jwt"),
            Some(JwtResponseMode::FormPost)
        );
        assert_eq!(JwtResponseMode::parse("query"), None);
        assert_eq!(
            deliver(JwtResponseMode::Query, "https://p.example/cb", "a.b.c"),
            Delivery::Redirect("https://p.example/cb?response=a.b.c".into())
        );
        assert_eq!(
            deliver(JwtResponseMode::Query, "https://p.example/cb?x=1", "a.b.c"),
            Delivery::Redirect("https://p.example/cb?x=1&response=a.b.c".into())
        );
        assert_eq!(
            deliver(JwtResponseMode::Fragment, "https://p.example/cb", "a.b.c"),
            Delivery::Redirect("https://p.example/cb#response=a.b.c".into())
        );
        let Delivery::FormPost { body, csp } = deliver(
            JwtResponseMode::FormPost,
            "https://p.example/cb?a=\"x\"",
            "a.b.c",
        ) else {
            panic!("form post")
        };
        assert!(
            body.contains(r#"<input type="hidden" name="response" value="a.b.c">"#),
            "{body}"
        );
        assert!(
            body.contains(r#"action="https://p.example/cb?a=&quot;x&quot;""#),
            "{body}"
        );
        assert!(body.contains(&format!("<script>{SUBMIT_SCRIPT}</script>")));
        assert!(csp.contains("form-action https://p.example;"), "{csp}");
        // The hash in the CSP is the script's, as browsers compute it.
        assert!(
            csp.contains("script-src 'sha256-8lDeP0UDwCO6/RhblgeH/ctdBzjVpJxrXizsnIk3cEQ=';"),
            "{csp}"
        );
    }
}
