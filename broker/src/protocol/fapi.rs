//! The per-client FAPI 2.0 profile (`profile = "fapi2-security"` or
//! `"fapi2-message-signing"`): what it demands of a client's registration and of its
//! requests, as plain data and checks: `config` reports [`registration_problems`],
//! `authorize::validate` applies [`request_problem`].

use jsonwebtoken::Algorithm;

use super::algorithms::{alg_names, algorithm, FAPI_ALGS};

/// A FAPI 2.0 profile a client is registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FapiProfile {
    /// FAPI 2.0 Security Profile.
    Security,
    /// FAPI 2.0 Message Signing (the Security Profile plus signed requests and responses).
    MessageSigning,
}

/// The longest code lifetime under a profile (FAPI 2.0 Security Profile: 60 seconds).
pub const MAX_CODE_TTL_SECS: u64 = 60;
/// The longest `nonce` a FAPI client's request may carry.
pub const MAX_NONCE_LEN: usize = 64;

impl FapiProfile {
    /// The profile a configuration value names.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "fapi2-security" => Some(FapiProfile::Security),
            "fapi2-message-signing" => Some(FapiProfile::MessageSigning),
            _ => None,
        }
    }

    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            FapiProfile::Security => "fapi2-security",
            FapiProfile::MessageSigning => "fapi2-message-signing",
        }
    }

    /// Whether requests must be signed objects and responses (authorization, introspection)
    /// JWTs.
    pub fn message_signing(self) -> bool {
        self == FapiProfile::MessageSigning
    }

    /// The algorithms accepted from and used for such a client.
    pub fn algorithms(self) -> &'static [Algorithm] {
        FAPI_ALGS
    }

    /// The code lifetime for such a client, given the broker's `tokens.code_ttl`.
    pub fn code_ttl(self, configured_secs: u64) -> u64 {
        configured_secs.min(MAX_CODE_TTL_SECS)
    }
}

/// What a client's registration says, as far as the profile cares.
pub struct Registration<'a> {
    /// `auth_method` (`private_key_jwt`, `client_secret_basic`, …).
    pub auth_method: &'a str,
    /// Whether a `secret` is configured.
    pub has_secret: bool,
    /// The `alg` of each registered public key, in `jwks` order (`None`: an algorithm
    /// the broker does not know).
    pub key_algs: &'a [Option<Algorithm>],
    /// Whether the keys are published at a `jwks_uri` (their algorithms are then checked
    /// when they are used: a key for another algorithm never verifies anything).
    pub keys_by_uri: bool,
    /// Signing algorithms the client registered for answers, with their configuration key
    /// (`id_token_signed_response_alg`, `authorization_signed_response_alg`, …).
    pub response_algs: &'a [(&'a str, &'a str)],
    /// `require_pushed_authorization_requests`, if written in the file.
    pub require_par: Option<bool>,
    /// `require_signed_request_object`, if written in the file.
    pub require_signed_request_object: Option<bool>,
}

/// One contradiction between a registration and its profile: the configuration key below
/// `clients[i]` and the reason, for `check-config` to report with the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileProblem {
    /// Key below the client (`secret`, `jwks.keys[0]`, `redirect_uris[1]`, …).
    pub key: String,
    /// What is wrong and what to do.
    pub reason: String,
}

fn problem(key: impl Into<String>, reason: impl Into<String>) -> ProfileProblem {
    ProfileProblem {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Every way `r` contradicts `profile`; empty when the registration fits. Redirect URIs are
/// not checked here: every client's must already be https or loopback (`config`), which is
/// the profile's rule too.
pub fn registration_problems(profile: FapiProfile, r: &Registration<'_>) -> Vec<ProfileProblem> {
    let name = profile.as_str();
    let allowed = alg_names(profile.algorithms()).join(", ");
    let mut out = Vec::new();
    if r.auth_method != "private_key_jwt" {
        out.push(problem(
            "auth_method",
            format!(
                "a {name} client authenticates with private_key_jwt only, not {}",
                r.auth_method
            ),
        ));
    }
    if r.has_secret {
        out.push(problem(
            "secret",
            format!(
                "a {name} client has no shared secret: remove it and register public keys (jwks)"
            ),
        ));
    }
    if r.key_algs.is_empty() && !r.keys_by_uri {
        out.push(problem(
            "jwks",
            format!("a {name} client needs its public keys (jwks or jwks_uri) for private_key_jwt"),
        ));
    }
    for (i, alg) in r.key_algs.iter().enumerate() {
        if !alg.is_some_and(|a| profile.algorithms().contains(&a)) {
            out.push(problem(
                format!("jwks.keys[{i}]"),
                format!("a {name} client's keys are for {allowed} only"),
            ));
        }
    }
    for (key, alg) in r.response_algs {
        if !algorithm(alg).is_some_and(|a| profile.algorithms().contains(&a)) {
            out.push(problem(
                *key,
                format!("a {name} client's answers are signed with {allowed}, not {alg}"),
            ));
        }
    }
    if r.require_par == Some(false) {
        out.push(problem(
            "require_pushed_authorization_requests",
            format!("a {name} client must push its requests: remove this line or set it to true"),
        ));
    }
    if profile.message_signing() && r.require_signed_request_object == Some(false) {
        out.push(problem(
            "require_signed_request_object",
            format!("a {name} client signs its requests: remove this line or set it to true"),
        ));
    }
    out
}

/// The request-level rules of the profile that `validate` of `/authorize` adds, given what
/// the request carries; each error text is for `invalid_request`.
pub fn request_problem(
    profile: FapiProfile,
    pushed: bool,
    pkce_s256: bool,
    nonce: Option<&str>,
    jwt_response_mode: bool,
) -> Option<String> {
    let name = profile.as_str();
    if !pushed {
        return Some(format!(
            "a {name} client must push its authorization requests (PAR)"
        ));
    }
    if !pkce_s256 {
        return Some(format!("a {name} client must use PKCE with S256"));
    }
    if nonce.is_some_and(|n| n.chars().count() > MAX_NONCE_LEN) {
        return Some(format!("nonce is longer than {MAX_NONCE_LEN} characters"));
    }
    if profile.message_signing() && !jwt_response_mode {
        return Some(format!(
            "a {name} client asks for a signed response: response_mode jwt, query.jwt, fragment.jwt or form_post.jwt"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fitting<'a>(
        key_algs: &'a [Option<Algorithm>],
        response_algs: &'a [(&'a str, &'a str)],
    ) -> Registration<'a> {
        Registration {
            auth_method: "private_key_jwt",
            has_secret: false,
            key_algs,
            keys_by_uri: false,
            response_algs,
            require_par: None,
            require_signed_request_object: None,
        }
    }

    #[test]
    fn names_round_trip() {
        for p in [FapiProfile::Security, FapiProfile::MessageSigning] {
            assert_eq!(FapiProfile::parse(p.as_str()), Some(p));
        }
        assert_eq!(FapiProfile::parse("fapi1-advanced"), None);
        assert_eq!(FapiProfile::Security.code_ttl(600), 60);
        assert_eq!(FapiProfile::Security.code_ttl(30), 30);
    }

    #[test]
    fn a_fitting_registration_has_no_problem() {
        let algs = [
            Some(Algorithm::ES256),
            Some(Algorithm::PS256),
            Some(Algorithm::EdDSA),
        ];
        let responses = [("id_token_signed_response_alg", "PS256")];
        let r = fitting(&algs, &responses);
        assert_eq!(
            registration_problems(FapiProfile::MessageSigning, &r),
            vec![]
        );
    }

    #[test]
    fn each_contradiction_names_its_key() {
        let algs = [Some(Algorithm::ES256), Some(Algorithm::RS256), None];
        let responses = [
            ("id_token_signed_response_alg", "RS256"),
            ("authorization_signed_response_alg", "ES256"),
        ];
        let r = Registration {
            auth_method: "client_secret_basic",
            has_secret: true,
            require_par: Some(false),
            require_signed_request_object: Some(false),
            ..fitting(&algs, &responses)
        };
        let keys: Vec<String> = registration_problems(FapiProfile::MessageSigning, &r)
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            [
                "auth_method",
                "secret",
                "jwks.keys[1]",
                "jwks.keys[2]",
                "id_token_signed_response_alg",
                "require_pushed_authorization_requests",
                "require_signed_request_object",
            ]
        );
        // Without keys at all, and under the Security Profile (no signed requests).
        let none: [Option<Algorithm>; 0] = [];
        let r = Registration {
            require_signed_request_object: Some(false),
            ..fitting(&none, &[])
        };
        let problems = registration_problems(FapiProfile::Security, &r);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "jwks");
    }

    #[test]
    fn request_rules() {
        let ms = FapiProfile::MessageSigning;
        let sp = FapiProfile::Security;
        assert_eq!(request_problem(ms, true, true, Some("n"), true), None);
        assert_eq!(
            request_problem(sp, true, true, Some(&"n".repeat(64)), false),
            None
        );
        assert!(request_problem(sp, false, true, None, false).is_some_and(|e| e.contains("PAR")));
        assert!(request_problem(sp, true, false, None, false).is_some_and(|e| e.contains("S256")));
        assert!(
            request_problem(sp, true, true, Some(&"n".repeat(65)), false)
                .is_some_and(|e| e.contains("64"))
        );
        assert!(request_problem(ms, true, true, None, false).is_some_and(|e| e.contains("jwt")));
    }
}
