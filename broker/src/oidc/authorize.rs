//! The authorization endpoint (OIDC Core 3.1.2, RFC 9700): validates the request, then
//! either answers from the citizen's SSO session or starts a login.
//!
//! An unknown client or an unregistered `redirect_uri` gets an error page and is never
//! redirected to; every later error goes back to the client with `error`, `state` and `iss`.

use connectors::Assurance;
use serde::{Deserialize, Serialize};

use super::jarm::{Delivery, JwtResponseMode};
use super::{OAuthError, Params};
use crate::config::{Client, Settings};
use crate::protocol::{ClientId, Prompt, RedirectUri, Secret};

/// A validated authorization request, kept with the login transaction. Its `Debug` shows
/// no `state`, `nonce` or `login_hint`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    /// The client.
    pub client_id: ClientId,
    /// Exact registered redirect URI.
    pub redirect_uri: RedirectUri,
    /// Scopes granted (requested ∩ allowed).
    pub scopes: Vec<String>,
    /// Client `state`.
    pub state: Option<Secret>,
    /// Client `nonce`.
    pub nonce: Option<Secret>,
    /// PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// `prompt` values.
    pub prompt: Vec<Prompt>,
    /// `max_age` in seconds.
    pub max_age: Option<u64>,
    /// `login_hint`.
    pub login_hint: Option<Secret>,
    /// Citizen's language.
    pub lang: String,
    /// Lowest assurance accepted.
    pub min_level: Assurance,
    /// The DPoP key the code will be bound to (`dpop_jkt`, RFC 9449 10).
    #[serde(default)]
    pub dpop_jkt: Option<String>,
    /// A JARM `response_mode` (`jwt`, `query.jwt`, `fragment.jwt`, `form_post.jwt`);
    /// `None` for `query`.
    #[serde(default)]
    pub response_mode: Option<String>,
    /// `idp_hint`: the identity source the platform suggests (as FranceConnect's
    /// `idp_hint` and Keycloak's `kc_idp_hint`); an unknown one is ignored.
    #[serde(default)]
    pub idp_hint: Option<String>,
}

impl AuthRequest {
    /// Whether `prompt` has a value.
    pub fn prompts(&self, value: Prompt) -> bool {
        self.prompt.contains(&value)
    }
}

/// The URL back to the client with response parameters, `state` and `iss` (RFC 9207);
/// `None` if the registered URI does not parse (never for a validated client).
pub fn response_url(
    settings: &Settings,
    redirect_uri: &str,
    state: Option<&str>,
    params: &[(&str, &str)],
) -> Option<String> {
    let mut url = url::Url::parse(redirect_uri).ok()?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", &settings.issuer);
    }
    Some(url.to_string())
}

/// The URL that sends an OAuth error back to the client: a JARM response when the request
/// asked for one (`form_post.jwt` errors go in the query, as `query.jwt`, since this is a
/// redirect).
pub fn error_url(
    settings: &Settings,
    req: &AuthRequest,
    e: &OAuthError,
    now: u64,
) -> Option<String> {
    let params = [
        ("error", e.error),
        ("error_description", e.error_description.as_str()),
    ];
    if req.response_mode.is_some() {
        let mut error_req = req.clone();
        if error_req.response_mode.as_deref() == Some("form_post.jwt") {
            error_req.response_mode = Some("query.jwt".into());
        }
        return match authorization_response(settings, &error_req, &params, now) {
            Some(Delivery::Redirect(url)) => Some(url),
            _ => None,
        };
    }
    response_url(
        settings,
        &req.redirect_uri,
        req.state.as_ref().map(Secret::expose),
        &params,
    )
}

/// The authorization response to `req` with `params` (`code`, or `error` and
/// `error_description`), plus `state` and `iss`: a redirect with them in the query, or,
/// when the request asked for JARM, one JWT signed with the client's
/// `authorization_signed_response_alg` in the query, the fragment or a posted form.
/// `None` if the redirect URI does not parse or no key signs (never for a validated
/// client). `now` in Unix milliseconds.
pub fn authorization_response(
    settings: &Settings,
    req: &AuthRequest,
    params: &[(&str, &str)],
    now: u64,
) -> Option<Delivery> {
    let state = req.state.as_ref().map(Secret::expose);
    let Some(mode) = req
        .response_mode
        .as_deref()
        .and_then(JwtResponseMode::parse)
    else {
        return response_url(settings, &req.redirect_uri, state, params).map(Delivery::Redirect);
    };
    let client = settings.clients.get(req.client_id.as_str())?;
    let key = settings.keys.signer(client.authorization_alg)?;
    let mut all: Vec<(&str, &str)> = params.to_vec();
    if let Some(s) = state {
        all.push(("state", s));
    }
    // RFC 9207: `iss` is inside the JWT (JARM's own `iss`).
    let jwt =
        super::jarm::response_jwt(key, &settings.issuer, &client.id, &all, now / 1000).ok()?;
    Some(super::jarm::deliver(mode, &req.redirect_uri, &jwt))
}

/// Why an authorization request is refused.
#[derive(Debug)]
pub enum Refusal {
    /// The client or its redirect URI is not known good: our own error page, never a
    /// redirect (message key and a note for the platform's developers).
    Page {
        /// Message key.
        key: &'static str,
        /// Technical note.
        detail: &'static str,
    },
    /// A bad request of a known client: the error goes back to it at this URL.
    ToClient(String),
}

/// Admits an authorization request: the client and its exact redirect URI first (errors
/// on our own page), then every other parameter (errors back to the client).
pub async fn admit<'a>(
    settings: &'a Settings,
    params: &Params,
    lang: &str,
    pushed: bool,
    now: u64,
) -> Result<(&'a Client, AuthRequest), Refusal> {
    let page = |key, detail| Refusal::Page { key, detail };
    let client = params
        .get("client_id")
        .and_then(|id| settings.clients.get(id))
        .ok_or(page("error-unknown-client", "unknown client_id"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or(page("error-bad-redirect", "redirect_uri is missing"))?;
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(page(
            "error-bad-redirect",
            "redirect_uri is not registered for this client",
        ));
    }
    // A request object (RFC 9101): only its parameters count, and its redirect URI must be
    // registered too. A pushed request was unpacked at /par.
    let unpacked = if pushed {
        Ok(params.clone())
    } else {
        super::request_object::effective_params(settings, client, params.clone(), now).await
    };
    if let Ok(inner) = &unpacked {
        if inner.get("redirect_uri") != Some(redirect_uri) {
            return Err(page(
                "error-bad-redirect",
                "the request object's redirect_uri is not the request's",
            ));
        }
    }
    match unpacked.and_then(|inner| validate(settings, client, &inner, redirect_uri, lang, pushed))
    {
        Ok(request) => Ok((client, request)),
        Err(e) => {
            let partial = AuthRequest {
                client_id: ClientId::new(client.id.clone()),
                redirect_uri: RedirectUri::new(redirect_uri.clone()),
                scopes: vec![],
                state: params.get("state").map(Secret::new),
                nonce: None,
                code_challenge: None,
                prompt: vec![],
                max_age: None,
                login_hint: None,
                lang: lang.to_string(),
                min_level: Assurance::Low,
                dpop_jkt: None,
                response_mode: None,
                idp_hint: None,
            };
            Err(error_url(settings, &partial, &e, now)
                .map(Refusal::ToClient)
                .unwrap_or(page("error-bad-redirect", "redirect_uri is not a URL")))
        }
    }
}

/// Checks an authorization request of `client` for `redirect_uri` (already known to be
/// registered); `pushed` when it came through `/par`.
pub fn validate(
    settings: &Settings,
    client: &Client,
    params: &Params,
    redirect_uri: &str,
    lang: &str,
    pushed: bool,
) -> Result<AuthRequest, OAuthError> {
    let get = |k: &str| params.get(k).map(String::as_str);
    if get("request").is_some() {
        return Err(OAuthError::new(
            "invalid_request_object",
            "a request object cannot hold another one",
        ));
    }
    if client.require_par && !pushed {
        return Err(OAuthError::invalid_request(
            "this client must push its authorization requests to the pushed_authorization_request_endpoint (RFC 9126)",
        ));
    }
    match get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(OAuthError::new(
                "unsupported_response_type",
                "only response_type=code is supported",
            ))
        }
        None => return Err(OAuthError::invalid_request("response_type is missing")),
    }
    let response_mode = match get("response_mode") {
        None | Some("query") => None,
        Some(mode) if JwtResponseMode::parse(mode).is_some() => Some(mode.to_string()),
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "response_mode must be query, jwt, query.jwt, fragment.jwt or form_post.jwt",
            ))
        }
    };
    let requested: Vec<&str> = get("scope").unwrap_or("").split_whitespace().collect();
    if !requested.contains(&"openid") {
        return Err(OAuthError::new(
            "invalid_scope",
            "the openid scope is required",
        ));
    }
    let mut scopes: Vec<String> = Vec::new();
    for s in requested {
        if client.scopes.contains(s) && !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_string());
        }
    }

    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (Some(c), Some("S256")) => {
            let ok = c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(OAuthError::invalid_request(
                    "code_challenge must be a base64url SHA-256 digest",
                ));
            }
            Some(c.to_string())
        }
        (Some(_), None) | (Some(_), Some(_)) | (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256 and sent with code_challenge",
            ))
        }
        (None, None) => None,
    };
    if code_challenge.is_none() && (client.is_public() || settings.require_pkce) {
        return Err(OAuthError::invalid_request(
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        ));
    }

    if let Some(profile) = client.profile {
        if let Some(why) = crate::protocol::fapi::request_problem(
            profile,
            pushed,
            code_challenge.is_some(),
            get("nonce"),
            response_mode.is_some(),
        ) {
            return Err(OAuthError::invalid_request(why));
        }
    }
    // Pushed requests carry the binding PAR settled (with its proof); a direct one may name
    // the key itself.
    let dpop_jkt = super::dpop::authorization_binding(get("dpop_jkt"), None)
        .map_err(OAuthError::invalid_request)?;

    let prompt =
        Prompt::parse_list(get("prompt").unwrap_or("")).map_err(OAuthError::invalid_request)?;
    let max_age = match get("max_age") {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| OAuthError::invalid_request("max_age must be a number of seconds"))?,
        ),
        None => None,
    };

    // acr_values, or an `acr` claim in the `claims` parameter (OIDC Core 5.5.1.1), list
    // acceptable levels: the weakest known one is the minimum.
    let mut acrs: Vec<String> = get("acr_values")
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if let Some(claims) = get("claims") {
        let parsed: serde_json::Value = serde_json::from_str(claims)
            .map_err(|_| OAuthError::invalid_request("claims is not a JSON object"))?;
        if !parsed.is_object() {
            return Err(OAuthError::invalid_request("claims is not a JSON object"));
        }
        for member in ["id_token", "userinfo"] {
            let acr = &parsed[member]["acr"];
            if let Some(v) = acr["value"].as_str() {
                acrs.push(v.to_string());
            }
            if let Some(values) = acr["values"].as_array() {
                acrs.extend(values.iter().filter_map(|v| v.as_str()).map(str::to_string));
            }
        }
    }
    let asked = acrs.iter().filter_map(|a| settings.level_of(a)).min();
    let min_level = asked.map_or(client.min_assurance, |a| a.max(client.min_assurance));
    if settings
        .best_assurance()
        .is_none_or(|best| best < min_level)
    {
        return Err(OAuthError::new(
            "unmet_authentication_requirements",
            format!("no available identity source reaches the `{min_level}` level"),
        ));
    }

    Ok(AuthRequest {
        client_id: ClientId::new(client.id.clone()),
        redirect_uri: RedirectUri::new(redirect_uri),
        scopes,
        state: get("state").map(Secret::new),
        nonce: get("nonce").map(Secret::new),
        code_challenge,
        prompt,
        max_age,
        login_hint: get("login_hint").map(Secret::new),
        lang: lang.to_string(),
        min_level,
        dpop_jkt,
        response_mode,
        idp_hint: get("idp_hint")
            .or_else(|| get("kc_idp_hint"))
            .filter(|h| h.len() <= 64)
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    /// Changes to a good request, and the error expected (`None`: still valid).
    type Case = (
        &'static [(&'static str, &'static str)],
        Option<&'static str>,
    );

    /// The parameters of a good request of `rp`, with `changes` applied (an empty value
    /// removes the parameter).
    fn request(changes: &[(&str, &str)]) -> Params {
        let mut p = params(&[
            ("response_type", "code"),
            ("client_id", "rp"),
            ("redirect_uri", "https://rp.example/cb"),
            ("scope", "openid profile email"),
            ("state", "s"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]);
        for (k, v) in changes {
            if v.is_empty() {
                p.remove(*k);
            } else {
                p.insert(k.to_string(), v.to_string());
            }
        }
        p
    }

    #[test]
    fn requests_are_validated_parameter_by_parameter() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = crate::config::for_tests(dir.path(), "");
        let rp = settings.clients.get("rp").expect("rp");
        // (changes to a good request, the error expected, or None for a valid request)
        let table: &[Case] = &[
            (&[], None),
            (&[("response_type", "")], Some("invalid_request")),
            (
                &[("response_type", "token")],
                Some("unsupported_response_type"),
            ),
            (&[("response_mode", "fragment")], Some("invalid_request")),
            (&[("scope", "profile")], Some("invalid_scope")),
            (&[("prompt", "login consent")], None),
            (&[("prompt", "none login")], Some("invalid_request")),
            (&[("prompt", "create")], Some("invalid_request")),
            (&[("max_age", "0")], None),
            (&[("max_age", "soon")], Some("invalid_request")),
            (&[("code_challenge", "")], Some("invalid_request")),
            (&[("code_challenge", "short")], Some("invalid_request")),
            (
                &[("code_challenge_method", "plain")],
                Some("invalid_request"),
            ),
            (&[("acr_values", "substantial")], None),
            (
                &[("acr_values", "high")],
                Some("unmet_authentication_requirements"),
            ),
            (&[("claims", "[1]")], Some("invalid_request")),
            (
                &[("claims", r#"{"id_token":{"acr":{"values":["high"]}}}"#)],
                Some("unmet_authentication_requirements"),
            ),
        ];
        for (changes, expected) in table {
            let p = request(changes);
            let got = validate(&settings, rp, &p, "https://rp.example/cb", "en", false);
            match (expected, got) {
                (None, Ok(_)) => {}
                (Some(code), Err(e)) => assert_eq!(e.error, *code, "{changes:?}: {e}"),
                (None, Err(e)) => panic!("{changes:?} should be valid: {e}"),
                (Some(code), Ok(_)) => panic!("{changes:?} should be refused with {code}"),
            }
        }
    }

    #[test]
    fn a_valid_request_keeps_only_the_allowed_scopes_and_its_typed_values() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = crate::config::for_tests(dir.path(), "");
        let rp = settings.clients.get("rp").expect("rp");
        let p = request(&[("prompt", "login"), ("max_age", "60"), ("nonce", "n-1")]);
        let r = validate(&settings, rp, &p, "https://rp.example/cb", "vi", false)
            .unwrap_or_else(|e| panic!("valid: {e}"));
        // `email` is not among the client's scopes: narrowed away, not refused.
        assert_eq!(r.scopes, vec!["openid".to_string(), "profile".to_string()]);
        assert!(r.prompts(Prompt::Login) && !r.prompts(Prompt::Consent));
        assert_eq!(r.max_age, Some(60));
        assert_eq!(r.min_level, Assurance::Low);
        assert_eq!(r.lang, "vi");
        // Hints and state never print.
        assert!(!format!("{r:?}").contains("n-1"));
    }

    #[tokio::test]
    async fn a_public_client_always_needs_pkce_and_unknown_clients_stay_on_our_page() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = crate::config::for_tests(dir.path(), "require_pkce = false\n");
        let spa = settings.clients.get("spa").expect("spa");
        let p = request(&[
            ("client_id", "spa"),
            ("redirect_uri", "https://spa.example/cb"),
            ("code_challenge", ""),
            ("code_challenge_method", ""),
        ]);
        let e = validate(&settings, spa, &p, "https://spa.example/cb", "en", false)
            .expect_err("public clients need PKCE");
        assert_eq!(e.error, "invalid_request");
        for changes in [
            &[("client_id", "nobody")][..],
            &[("redirect_uri", "https://rp.example/other")][..],
        ] {
            match admit(&settings, &request(changes), "en", false, 0).await {
                Err(Refusal::Page { .. }) => {}
                other => panic!("{changes:?}: never a redirect, got {:?}", other.map(|_| ())),
            }
        }
        match admit(&settings, &request(&[("scope", "profile")]), "en", false, 0).await {
            Err(Refusal::ToClient(url)) => {
                assert!(
                    url.starts_with("https://rp.example/cb?error=invalid_scope"),
                    "{url}"
                );
                assert!(url.contains("state=s") && url.contains("iss="), "{url}");
            }
            other => panic!(
                "a bad request of a known client goes back: {:?}",
                other.map(|_| ())
            ),
        }
    }
}
