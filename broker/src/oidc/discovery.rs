//! OpenID Provider metadata (Discovery 1.0, RFC 8414) and the JWKS.

use crate::config::{Settings, SCOPES};

/// A configuration with its discovery document serialised once.
pub fn live(settings: std::sync::Arc<Settings>) -> crate::config::Live {
    // Serialising a `serde_json::Value` cannot fail.
    let discovery = serde_json::to_vec(&metadata(&settings))
        .unwrap_or_default()
        .into();
    crate::config::Live {
        settings,
        discovery,
    }
}

/// Builds the metadata document once per configuration.
pub fn metadata(s: &Settings) -> serde_json::Value {
    let iss = &s.issuer;
    let algs: Vec<&str> = s.keys.algorithms().iter().map(|a| a.as_str()).collect();
    let claims: Vec<&str> = [
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "sid",
    ]
    .into_iter()
    .chain(SCOPES.iter().flat_map(|(_, c)| c.iter().copied()))
    .collect();
    let acrs: Vec<&str> = connectors::Assurance::ALL
        .iter()
        .map(|l| s.acr_of(*l))
        .collect();
    serde_json::json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "jwks_uri": format!("{iss}/jwks"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "pushed_authorization_request_endpoint": format!("{iss}/par"),
        "require_pushed_authorization_requests": false,
        "introspection_endpoint": format!("{iss}/introspect"),
        "end_session_endpoint": format!("{iss}/logout"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": true,
        "frontchannel_logout_session_supported": true,
        "scopes_supported": SCOPES.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "response_types_supported": ["code"],
        "response_modes_supported": std::iter::once("query").chain(super::jarm::JWT_RESPONSE_MODES.iter().copied()).collect::<Vec<_>>(),
        "authorization_signing_alg_values_supported": algs,
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["pairwise", "public"],
        "id_token_signing_alg_values_supported": algs,
        "userinfo_signing_alg_values_supported": algs,
        "introspection_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "EdDSA", "PS256"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": claims,
        "acr_values_supported": acrs,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "ui_locales_supported": crate::i18n::LANGUAGES,
        "claims_parameter_supported": true,
        "request_parameter_supported": true,
        "request_object_signing_alg_values_supported": super::jws::alg_names(super::jws::ACCEPTED_ALGS),
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        // RFC 9449 5.1: proofs accepted from any client (FAPI clients: PS256, ES256, EdDSA).
        "dpop_signing_alg_values_supported": super::jws::alg_names(super::jws::ACCEPTED_ALGS),
    })
}
