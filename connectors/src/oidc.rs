//! An upstream OpenID Provider, such as a national identity app (VNeID-like), as an
//! identity source.
//!
//! The broker is the relying party: authorization code flow with PKCE (S256), `state` (the
//! broker's single-use callback state) and `nonce`, then a token exchange over a client
//! that follows no redirects and gives up after `timeout_ms`. The ID token is fully
//! validated with the `openidconnect` crate: signature with an algorithm from a fixed
//! list of asymmetric ones that the provider advertises (never `none`, never a MAC keyed
//! with public material), `iss`, `aud`, `azp`, `exp`, `iat`, `nonce` and `at_hash`.
//! UserInfo, when configured, must be about the same `sub`. The RFC 9207 `iss` response
//! parameter is checked when present, and required when the provider announces it.
//!
//! Discovery metadata and keys are cached, refreshed every hour and once more when a token
//! names a key (`kid`) the cache does not hold. Upstream claims are mapped and normalised
//! by [`claims`]; the upstream `acr` becomes one of the broker's levels through a table in
//! configuration, between a floor and a ceiling.
//!
//! Failures are told apart for citizens: the citizen cancelled (`access_denied`), the
//! provider is unreachable or slow ([`ConnectorError::Unavailable`], and [`health`]
//! reports the source degraded for a while), or the provider answered something that
//! cannot be trusted (a generic failure; operators get a detail that never holds personal
//! data).
//!
//! [`health`]: Connector::health

pub mod claims;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalProviderMetadata, AuthType, AuthenticationContextClass,
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, DiscoveryError,
    IssuerUrl, LanguageTag, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, RequestTokenError, Scope, SignatureVerificationError,
    TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::{
    Assurance, Connector, ConnectorError, Context, Health, Identity, Input, Message, Step,
    StepState,
};
use common::outage::{unix_now, RecentOutage};
use common::secret;
use common::signing_key::{SigningAlg, SigningKey};

pub use claims::ClaimMapping;

/// Message key: the citizen cancelled at the upstream provider.
pub const MSG_CANCELLED: &str = "error-upstream-cancelled";
/// Message key: the upstream provider answered something that cannot be trusted.
pub const MSG_INVALID: &str = "error-upstream-invalid";
/// Message key: the upstream provider refused or could not complete the sign-in.
pub const MSG_REFUSED: &str = "error-upstream-refused";

/// How long discovery metadata and keys are trusted before they are fetched again.
const METADATA_MAX_AGE: u64 = 3600;
/// Least time between two refreshes forced by an unknown `kid` (a forged token must not
/// make the broker hammer the provider).
const FORCED_REFRESH_INTERVAL: u64 = 30;
/// Clock difference tolerated on `exp` and on an `iat` in the future.
const CLOCK_SKEW: u64 = 120;
/// Oldest `iat` accepted: the token endpoint has just issued the token.
const MAX_TOKEN_AGE: u64 = 600;
/// Lifetime of a client assertion: it is sent at once.
const ASSERTION_LIFETIME: u64 = 60;
/// Largest upstream response read.
const MAX_BODY: usize = 256 * 1024;
/// ID token algorithms the broker accepts, when the provider advertises them.
const ACCEPTED_ALGS: [CoreJwsSigningAlgorithm; 4] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::EdDsa,
];

// ---------------------------------------------------------------------------------------
// Configuration

pub use common::secret::SecretSource;

/// How the broker authenticates at the provider's token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    /// HTTP Basic (the default).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A JWT signed with the broker's private key (RFC 7523; no shared secret).
    PrivateKeyJwt,
}

/// The `aud` of the broker's client assertions (`private_key_jwt`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssertionAudience {
    /// The provider's issuer identifier: one value that cannot be replayed at another
    /// endpoint (the default, as the RFC 7523 update recommends).
    #[default]
    Issuer,
    /// The token endpoint URL (OpenID Connect Core's original wording), for providers that
    /// accept nothing else.
    TokenEndpoint,
}

/// Settings of an `oidc` connector (`[connectors.settings]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Issuer URL of the upstream provider; its metadata comes from discovery.
    pub issuer: String,
    /// The broker's client id at the provider.
    pub client_id: String,
    /// The broker's client secret at the provider (`client_secret_basic` and
    /// `client_secret_post`).
    #[serde(default)]
    pub client_secret: Option<SecretSource>,
    /// Client authentication at the token endpoint.
    #[serde(default)]
    pub auth_method: TokenAuthMethod,
    /// The broker's private key for `private_key_jwt` (PKCS#8 PEM).
    #[serde(default)]
    pub private_key: Option<SecretSource>,
    /// Algorithm of `private_key` (default RS256).
    #[serde(default)]
    pub private_key_alg: Option<SigningAlg>,
    /// `kid` of `private_key` (default: its RFC 7638 thumbprint).
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// `aud` of the client assertions (default: the issuer).
    #[serde(default)]
    pub client_assertion_audience: Option<AssertionAudience>,
    /// Scopes to request (`openid` is always sent).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// `acr_values` to request upstream, if any.
    #[serde(default)]
    pub acr_values: Vec<String>,
    /// Timeout of each upstream request, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Fetch UserInfo after the token exchange (its claims win over the ID token's).
    #[serde(default)]
    pub use_userinfo: bool,
    /// Ask for and require a signed UserInfo (`application/jwt`, for a client registered
    /// with `userinfo_signed_response_alg`); a plain JSON answer is then refused. Without
    /// it a signed answer is still verified and accepted.
    #[serde(default)]
    pub userinfo_signed: bool,
    /// Which upstream claims hold what.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Upstream `acr` value → broker level.
    #[serde(default)]
    pub acr_levels: BTreeMap<String, Assurance>,
    /// Level of a login whose `acr` is missing or not in `acr_levels`, and the lowest level
    /// any login through this provider gets.
    #[serde(default = "default_floor")]
    pub assurance_floor: Assurance,
    /// Highest level a login through this provider may get (default: the highest level in
    /// `acr_levels`, or the floor).
    #[serde(default)]
    pub max_assurance: Option<Assurance>,
    /// Pass the upstream `amr` values on to relying parties.
    #[serde(default = "yes")]
    pub amr_passthrough: bool,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into()]
}

fn default_timeout() -> u64 {
    5000
}

fn default_floor() -> Assurance {
    Assurance::Low
}

fn yes() -> bool {
    true
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
}

// ---------------------------------------------------------------------------------------
// Provider metadata

/// Metadata members the `openidconnect` crate does not model.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RFC 9207: the provider sends `iss` in authorization responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// RFC 7636 methods the provider supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// Discovery results, checked.
struct Discovered {
    metadata: Metadata,
    algs: Vec<CoreJwsSigningAlgorithm>,
    fetched: u64,
}

// ---------------------------------------------------------------------------------------
// Upstream HTTP

/// Why an upstream HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// No connection.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The provider answered with a server error (5xx).
    #[error("HTTP status {0}")]
    Status(u16),
    /// The answer was too large.
    #[error("response larger than {MAX_BODY} bytes")]
    TooLarge,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl HttpError {
    fn from_reqwest(e: openidconnect::reqwest::Error) -> Self {
        if e.is_timeout() {
            HttpError::Timeout
        } else if e.is_connect() {
            HttpError::Connect(e.without_url().to_string())
        } else {
            HttpError::Other(e.without_url().to_string())
        }
    }

    /// Whether the provider is down or slow (rather than answering wrongly).
    fn is_outage(&self) -> bool {
        matches!(
            self,
            HttpError::Timeout | HttpError::Connect(_) | HttpError::Status(_)
        )
    }
}

/// Sends one request with the connector's client (no redirects, timeout) and reads a
/// bounded body. Server errors are errors, so an overloaded provider is an outage.
async fn execute(
    http: openidconnect::reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let mut response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(HttpError::from_reqwest)?;
    let status = response.status();
    if status.is_server_error() {
        return Err(HttpError::Status(status.as_u16()));
    }
    let headers = response.headers().clone();
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(HttpError::from_reqwest)? {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    let mut out = openidconnect::http::Response::builder().status(status);
    if let Some(h) = out.headers_mut() {
        *h = headers;
    }
    out.body(bytes).map_err(|e| HttpError::Other(e.to_string()))
}

// ---------------------------------------------------------------------------------------
// Failures

/// A failure, before it becomes a [`ConnectorError`].
enum Fail {
    /// Unreachable or slow: "try later or another way", and the source is degraded.
    Outage(String),
    /// An answer that cannot be trusted.
    Invalid(String),
    /// The citizen cancelled.
    Cancelled(String),
    /// The provider refused or could not complete the sign-in.
    Refused(String),
}

fn invalid(detail: impl Into<String>) -> Fail {
    Fail::Invalid(detail.into())
}

/// Keeps an upstream `error` code printable and short (it is logged).
fn error_code(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

fn claims_error(e: &ClaimsVerificationError) -> String {
    // Messages of these variants name only issuers, audiences, algorithms and times.
    match e {
        ClaimsVerificationError::Expired(m) => format!("ID token expired or too old: {m}"),
        ClaimsVerificationError::InvalidAudience(m) => format!("ID token audience: {m}"),
        ClaimsVerificationError::InvalidIssuer(m) => format!("ID token issuer: {m}"),
        ClaimsVerificationError::InvalidNonce(_) => "ID token nonce does not match".into(),
        ClaimsVerificationError::SignatureVerification(s) => {
            format!("ID token signature: {s}")
        }
        ClaimsVerificationError::Unsupported(m) => format!("ID token unsupported: {m}"),
        _ => "ID token claims are invalid".into(),
    }
}

// ---------------------------------------------------------------------------------------
// Step state

/// What the connector keeps between the redirect and the callback.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    pkce_verifier: String,
    redirect_uri: String,
}

// ---------------------------------------------------------------------------------------
// The connector

/// The connector.
pub struct OidcConnector {
    config: Config,
    issuer: IssuerUrl,
    auth: ClientAuth,
    /// The public half of `private_key`, as a JWK set the provider can fetch.
    public_jwks: Option<Value>,
    max_assurance: Assurance,
    http: openidconnect::reqwest::Client,
    cache: RwLock<Option<Arc<Discovered>>>,
    last_forced_refresh: Mutex<u64>,
    outage: RecentOutage,
}

impl std::fmt::Debug for OidcConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConnector")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

/// Reads a secret setting that must be there; a missing or unreadable one is a problem
/// under `key`.
fn read_required(
    source: Option<&SecretSource>,
    key: &str,
    missing: &str,
    base_dir: &Path,
    problems: &mut Vec<(String, String)>,
) -> Option<Vec<u8>> {
    let Some(source) = source else {
        problems.push((key.into(), missing.into()));
        return None;
    };
    secret::resolve(source, base_dir, key, problems)
}

/// How the broker proves itself at the token endpoint.
enum ClientAuth {
    Secret(ClientSecret),
    Assertion(Box<SigningKey>),
}

impl OidcConnector {
    /// Checks the settings, reads the client secret (environment variables and files are
    /// resolved here; relative paths against `base_dir`, the configuration's folder) and
    /// builds the connector. Nothing is fetched yet: discovery happens at the first login.
    /// Problems are (key path below `settings`, reason).
    pub fn open(config: Config, base_dir: &Path) -> Result<Self, Vec<(String, String)>> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let auth = Self::open_auth(&config, base_dir, &mut problems);
        let mut problem = |k: &str, r: String| problems.push((k.to_string(), r));

        let issuer = match url::Url::parse(&config.issuer) {
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                problem("issuer", "must not have a query or a fragment".into());
                None
            }
            Ok(u) if common::url_policy::is_allowed(&u) => {
                IssuerUrl::new(config.issuer.clone()).ok()
            }
            Ok(_) => {
                problem(
                    "issuer",
                    "must be an https URL (plain http only on localhost)".into(),
                );
                None
            }
            Err(e) => {
                problem("issuer", format!("is not a URL: {e}"));
                None
            }
        };
        if config.client_id.trim().is_empty() {
            problem("client_id", "is empty".into());
        }
        if config.userinfo_signed && !config.use_userinfo {
            problem(
                "userinfo_signed",
                "needs use_userinfo = true (it is about the UserInfo answer)".into(),
            );
        }
        for (i, s) in config.scopes.iter().enumerate() {
            if !is_token(s) {
                problem(
                    &format!("scopes[{i}]"),
                    "must be one scope, without spaces".into(),
                );
            }
        }
        for (i, s) in config.acr_values.iter().enumerate() {
            if !is_token(s) {
                problem(
                    &format!("acr_values[{i}]"),
                    "must be one value, without spaces".into(),
                );
            }
        }
        if !(100..=60_000).contains(&config.timeout_ms) {
            problem(
                "timeout_ms",
                "must be between 100 and 60000 milliseconds".into(),
            );
        }
        for (k, r) in config.claims.problems() {
            problem(&format!("claims.{k}"), r);
        }
        let max_assurance = config.max_assurance.unwrap_or_else(|| {
            config
                .acr_levels
                .values()
                .copied()
                .max()
                .unwrap_or(config.assurance_floor)
                .max(config.assurance_floor)
        });
        if max_assurance < config.assurance_floor {
            problem(
                "max_assurance",
                format!(
                    "`{max_assurance}` is below `assurance_floor` (`{}`)",
                    config.assurance_floor
                ),
            );
        }
        for (acr, level) in &config.acr_levels {
            let key = format!("acr_levels.\"{acr}\"");
            if acr.trim().is_empty() {
                problem(&key, "an empty acr value".into());
            } else if *level < config.assurance_floor {
                problem(
                    &key,
                    format!(
                        "`{level}` is below `assurance_floor` (`{}`): the floor would win",
                        config.assurance_floor
                    ),
                );
            } else if *level > max_assurance {
                problem(
                    &key,
                    format!("`{level}` is above `max_assurance` (`{max_assurance}`)"),
                );
            }
        }
        let http = openidconnect::reqwest::Client::builder()
            // Never follow redirects: a provider must not send the broker elsewhere (SSRF).
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            .user_agent(concat!(
                "national-identity-broker/",
                env!("CARGO_PKG_VERSION")
            ))
            .build();
        let http = match http {
            Ok(h) => Some(h),
            Err(e) => {
                problem("", format!("cannot build the HTTP client: {e}"));
                None
            }
        };
        match (issuer, auth, http) {
            (Some(issuer), Some(auth), Some(http)) if problems.is_empty() => Ok(OidcConnector {
                issuer,
                public_jwks: match &auth {
                    ClientAuth::Assertion(key) => Some(serde_json::json!({ "keys": [key.jwk()] })),
                    ClientAuth::Secret(_) => None,
                },
                auth,
                max_assurance,
                http,
                cache: RwLock::new(None),
                last_forced_refresh: Mutex::new(0),
                outage: RecentOutage::default(),
                config,
            }),
            _ => Err(problems),
        }
    }

    /// Reads the client secret or the private key that `auth_method` needs.
    fn open_auth(
        config: &Config,
        base_dir: &Path,
        problems: &mut Vec<(String, String)>,
    ) -> Option<ClientAuth> {
        let mut problem = |k: &str, r: &str| problems.push((k.to_string(), r.to_string()));
        let uses_key = config.auth_method == TokenAuthMethod::PrivateKeyJwt;
        if !uses_key {
            for (key, set) in [
                ("private_key", config.private_key.is_some()),
                ("private_key_alg", config.private_key_alg.is_some()),
                ("private_key_id", config.private_key_id.is_some()),
                (
                    "client_assertion_audience",
                    config.client_assertion_audience.is_some(),
                ),
            ] {
                if set {
                    problem(key, "is only used with auth_method = \"private_key_jwt\"");
                }
            }
            let secret = read_required(
                config.client_secret.as_ref(),
                "client_secret",
                "is required by this auth_method (or set auth_method = \"private_key_jwt\" and private_key)",
                base_dir,
                problems,
            )?;
            let secret = String::from_utf8(secret).ok()?;
            return Some(ClientAuth::Secret(ClientSecret::new(secret)));
        }
        if config.client_secret.is_some() {
            problem(
                "client_secret",
                "is not used with auth_method = \"private_key_jwt\": remove it, the provider must not hold a shared secret",
            );
        }
        let pem_text = read_required(
            config.private_key.as_ref(),
            "private_key",
            "is required by auth_method = \"private_key_jwt\" ({ file = \"key.pem\" }, PKCS#8 PEM)",
            base_dir,
            problems,
        )?;
        let alg = config.private_key_alg.unwrap_or(SigningAlg::RS256);
        // A placeholder kid until the thumbprint is known.
        let key = match SigningKey::from_pem("", alg, &pem_text) {
            Ok(k) => k,
            Err(reason) => {
                problems.push((
                    "private_key".into(),
                    format!(
                        "is not a PKCS#8 PEM private key for {} (private_key_alg): {reason}",
                        alg.as_str()
                    ),
                ));
                return None;
            }
        };
        let kid = match &config.private_key_id {
            Some(kid) if kid.trim().is_empty() => {
                problems.push(("private_key_id".into(), "is empty".into()));
                return None;
            }
            Some(kid) => kid.clone(),
            None => match key
                .jwk()
                .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            {
                Ok(t) => t,
                Err(e) => {
                    problems.push(("private_key".into(), format!("no thumbprint: {e}")));
                    return None;
                }
            },
        };
        match SigningKey::from_pem(&kid, alg, &pem_text) {
            Ok(key) => Some(ClientAuth::Assertion(Box::new(key))),
            Err(reason) => {
                problems.push(("private_key".into(), reason));
                None
            }
        }
    }

    /// A fresh client assertion for the token endpoint (RFC 7523 section 2.2).
    fn client_assertion(&self, key: &SigningKey, d: &Discovered, now: u64) -> Result<String, Fail> {
        let aud = match self.config.client_assertion_audience.unwrap_or_default() {
            AssertionAudience::Issuer => d.metadata.issuer().as_str().to_string(),
            AssertionAudience::TokenEndpoint => d
                .metadata
                .token_endpoint()
                .map(|u| u.as_str().to_string())
                .ok_or_else(|| invalid("the provider announces no token endpoint"))?,
        };
        let claims = serde_json::json!({
            "iss": self.config.client_id,
            "sub": self.config.client_id,
            "aud": aud,
            "jti": Nonce::new_random().secret(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        key.sign("JWT", &claims)
            .map_err(|e| invalid(format!("cannot sign the client assertion: {e}")))
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn to_error(&self, fail: Fail) -> ConnectorError {
        match fail {
            Fail::Outage(detail) => {
                self.outage.note(&detail);
                ConnectorError::Unavailable(detail)
            }
            Fail::Invalid(detail) => ConnectorError::Failed {
                message: Message::new(MSG_INVALID),
                detail,
            },
            Fail::Cancelled(detail) => ConnectorError::Failed {
                message: Message::new(MSG_CANCELLED),
                detail,
            },
            Fail::Refused(detail) => ConnectorError::Failed {
                message: Message::new(MSG_REFUSED),
                detail,
            },
        }
    }

    async fn discover(&self) -> Result<Arc<Discovered>, Fail> {
        let http = self.http.clone();
        let client = move |req| execute(http.clone(), req);
        let metadata = Metadata::discover_async(self.issuer.clone(), &client)
            .await
            .map_err(|e| match e {
                // Whatever went wrong, the source cannot be used until discovery works.
                DiscoveryError::Request(h) => Fail::Outage(format!("discovery: {h}")),
                DiscoveryError::Parse(p) => Fail::Outage(format!(
                    "discovery: the metadata or the JWKS does not parse at `{}`",
                    p.path()
                )),
                DiscoveryError::Response(status, _, _) => {
                    Fail::Outage(format!("discovery: HTTP status {status}"))
                }
                DiscoveryError::Validation(m) => Fail::Outage(format!("discovery: {m}")),
                other => Fail::Outage(format!("discovery: {other}")),
            })?;
        let advertised = metadata.id_token_signing_alg_values_supported();
        let algs: Vec<CoreJwsSigningAlgorithm> = ACCEPTED_ALGS
            .iter()
            .filter(|a| advertised.contains(a))
            .cloned()
            .collect();
        if algs.is_empty() {
            return Err(Fail::Outage(
                "discovery: the provider signs ID tokens with none of RS256, ES256, PS256, EdDSA"
                    .into(),
            ));
        }
        if metadata.token_endpoint().is_none() {
            return Err(Fail::Outage("discovery: no token_endpoint".into()));
        }
        let method = match self.config.auth_method {
            TokenAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenAuthMethod::ClientSecretPost => "client_secret_post",
            TokenAuthMethod::PrivateKeyJwt => "private_key_jwt",
        };
        if let Some(methods) = metadata.token_endpoint_auth_methods_supported() {
            if !methods.iter().any(|m| m.as_ref() == method) {
                return Err(Fail::Outage(format!(
                    "discovery: the provider's token endpoint does not accept `{method}` (auth_method)"
                )));
            }
        }
        if self.config.use_userinfo && metadata.userinfo_endpoint().is_none() {
            return Err(Fail::Outage(
                "discovery: use_userinfo is set but the provider has no userinfo_endpoint".into(),
            ));
        }
        if let Some(methods) = &metadata
            .additional_metadata()
            .code_challenge_methods_supported
        {
            if !methods.iter().any(|m| m == "S256") {
                return Err(Fail::Outage(
                    "discovery: the provider does not support PKCE S256".into(),
                ));
            }
        }
        Ok(Arc::new(Discovered {
            metadata,
            algs,
            fetched: unix_now(),
        }))
    }

    /// The cached metadata, fetched again when older than an hour (a stale copy is kept if
    /// the provider cannot be reached, until it answers again).
    async fn metadata(&self) -> Result<Arc<Discovered>, Fail> {
        let cached = self.cache.read().ok().and_then(|c| c.clone());
        if let Some(d) = &cached {
            if unix_now().saturating_sub(d.fetched) < METADATA_MAX_AGE {
                return Ok(d.clone());
            }
        }
        match self.discover().await {
            Ok(d) => {
                if let Ok(mut c) = self.cache.write() {
                    *c = Some(d.clone());
                }
                Ok(d)
            }
            Err(Fail::Outage(detail)) if cached.is_some() => {
                self.outage.note(&detail);
                tracing::warn!(issuer = %self.config.issuer, detail = %detail, "metadata refresh failed; keeping the cached copy");
                cached.ok_or(Fail::Outage(detail))
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches metadata and keys again after a token named an unknown key, at most once per
    /// [`FORCED_REFRESH_INTERVAL`]. Returns the fresh copy, or `None` when it is too soon.
    async fn refresh_for_unknown_key(&self) -> Result<Option<Arc<Discovered>>, Fail> {
        let now = unix_now();
        {
            let Ok(mut last) = self.last_forced_refresh.lock() else {
                return Ok(None);
            };
            if now.saturating_sub(*last) < FORCED_REFRESH_INTERVAL && *last != 0 {
                return Ok(None);
            }
            *last = now;
        }
        let d = self.discover().await?;
        if let Ok(mut c) = self.cache.write() {
            *c = Some(d.clone());
        }
        Ok(Some(d))
    }

    fn client(
        &self,
        d: &Discovered,
        redirect_uri: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        Fail,
    > {
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| invalid(format!("callback URL: {e}")))?;
        let auth_type = match self.config.auth_method {
            TokenAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
            // With no secret the crate sends only `client_id` in the body; the assertion
            // is added to the request.
            TokenAuthMethod::ClientSecretPost | TokenAuthMethod::PrivateKeyJwt => {
                AuthType::RequestBody
            }
        };
        let secret = match &self.auth {
            ClientAuth::Secret(s) => Some(s.clone()),
            ClientAuth::Assertion(_) => None,
        };
        Ok(CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            secret,
        )
        .set_redirect_uri(redirect)
        .set_auth_type(auth_type))
    }

    fn verifier(&self, d: &Discovered, now: u64) -> CoreIdTokenVerifier<'static> {
        let exp_now = now.saturating_sub(CLOCK_SKEW);
        // A public-client verifier never accepts a MAC (HS*) signature, whatever the header
        // says, and only the listed asymmetric algorithms are allowed.
        CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.config.client_id.clone()),
            d.metadata.issuer().clone(),
            d.metadata.jwks().clone(),
        )
        .set_allowed_algs(d.algs.clone())
        .set_time_fn(move || {
            chrono::DateTime::from_timestamp(exp_now as i64, 0).unwrap_or_default()
        })
        .set_issue_time_verifier_fn(move |iat| {
            let iat = iat.timestamp();
            if iat > (now + CLOCK_SKEW) as i64 {
                Err("issued in the future".into())
            } else if iat < now.saturating_sub(MAX_TOKEN_AGE) as i64 {
                Err("issued too long ago".into())
            } else {
                Ok(())
            }
        })
    }

    async fn begin(&self, ctx: &Context) -> Result<Step, Fail> {
        let d = self.metadata().await?;
        let client = self.client(&d, &ctx.callback_url)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = if ctx.nonce.len() >= 16 {
            ctx.nonce.clone()
        } else {
            Nonce::new_random().secret().clone()
        };
        let state = ctx.state.clone();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                {
                    let state = state.clone();
                    move || CsrfToken::new(state)
                },
                {
                    let nonce = nonce.clone();
                    move || Nonce::new(nonce)
                },
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for acr in &self.config.acr_values {
            request = request.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
        }
        for lang in &ctx.languages {
            request = request.add_ui_locale(LanguageTag::new(lang.clone()));
        }
        let (url, _, _) = request.url();
        let pending = Pending {
            state,
            nonce,
            pkce_verifier: verifier.secret().clone(),
            redirect_uri: ctx.callback_url.clone(),
        };
        let state = serde_json::to_value(&pending)
            .map_err(|e| invalid(format!("cannot keep the step state: {e}")))?;
        Ok(Step::Redirect {
            url: url.to_string(),
            state,
        })
    }

    async fn finish(
        &self,
        ctx: &Context,
        pending: Pending,
        params: BTreeMap<String, String>,
    ) -> Result<Identity, Fail> {
        let d = self.metadata().await?;

        // The broker has consumed its single-use record of this state; check it is ours.
        let state_ok: bool = params
            .get("state")
            .map(|s| s.as_bytes().ct_eq(pending.state.as_bytes()).into())
            .unwrap_or(false);
        if !state_ok {
            return Err(invalid("callback state does not match the login"));
        }
        // RFC 9207: a response from another provider (mix-up) is refused.
        let issuer = d.metadata.issuer().as_str();
        match params.get("iss") {
            Some(iss) if iss != issuer => {
                return Err(invalid(format!(
                    "authorization response `iss` is not the provider's issuer `{issuer}`"
                )))
            }
            None if d
                .metadata
                .additional_metadata()
                .authorization_response_iss_parameter_supported
                == Some(true) =>
            {
                return Err(invalid(
                    "authorization response without `iss` although the provider announces it",
                ))
            }
            _ => {}
        }
        if let Some(error) = params.get("error") {
            let code = error_code(error);
            return Err(match code.as_str() {
                "access_denied" => Fail::Cancelled("the citizen cancelled upstream".into()),
                "temporarily_unavailable" | "server_error" => {
                    Fail::Outage(format!("the provider answered `{code}`"))
                }
                _ => Fail::Refused(format!("the provider answered `{code}`")),
            });
        }
        let Some(code) = params.get("code").filter(|c| !c.is_empty()) else {
            return Err(invalid("callback without `code` or `error`"));
        };

        let client = self.client(&d, &pending.redirect_uri)?;
        let http = self.http.clone();
        let http_client = move |req| execute(http.clone(), req);
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .map_err(|e| invalid(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()));
        if let ClientAuth::Assertion(key) = &self.auth {
            request = request
                .add_extra_param(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .add_extra_param("client_assertion", self.client_assertion(key, &d, ctx.now)?);
        }
        let tokens = request
            .request_async(&http_client)
            .await
            .map_err(|e| match e {
                RequestTokenError::Request(h) if h.is_outage() => {
                    Fail::Outage(format!("token endpoint: {h}"))
                }
                RequestTokenError::Request(h) => invalid(format!("token endpoint: {h}")),
                RequestTokenError::ServerResponse(r) => invalid(format!(
                    "token endpoint answered `{}`",
                    error_code(r.error().as_ref())
                )),
                RequestTokenError::Parse(p, _) => invalid(format!(
                    "token response does not parse at `{}` ({:?})",
                    p.path(),
                    p.inner().classify()
                )),
                RequestTokenError::Other(m) => invalid(format!("token endpoint: {m}")),
            })?;
        let Some(id_token) = tokens.id_token() else {
            return Err(invalid("token response without an ID token"));
        };

        let nonce = Nonce::new(pending.nonce.clone());
        let mut d = d;
        let mut verifier = self.verifier(&d, ctx.now);
        let mut verified = id_token.claims(&verifier, &nonce).map(|_| ());
        if let Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) = verified
        {
            // Perhaps the provider rotated its keys: fetch them again, once.
            if let Some(fresh) = self.refresh_for_unknown_key().await? {
                d = fresh;
                verifier = self.verifier(&d, ctx.now);
                verified = id_token.claims(&verifier, &nonce).map(|_| ());
            }
        }
        verified.map_err(|e| invalid(claims_error(&e)))?;
        let raw = raw_claims(id_token)?;
        self.check_azp(&raw)?;
        check_at_hash(id_token, &verifier, tokens.access_token(), &raw)?;
        let sub = raw
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("ID token without `sub`"))?
            .to_string();

        let mut merged = raw.clone();
        if self.config.use_userinfo {
            let info = self.userinfo(&d, tokens.access_token()).await?;
            let info_sub = info.get("sub").and_then(Value::as_str).unwrap_or("");
            if info_sub != sub {
                return Err(invalid(
                    "UserInfo `sub` differs from the ID token's (token substitution)",
                ));
            }
            for (k, v) in info {
                if !matches!(
                    k.as_str(),
                    "iss" | "aud" | "exp" | "iat" | "nonce" | "acr" | "amr" | "azp"
                ) {
                    merged.insert(k, v);
                }
            }
        }
        self.identity(sub, &raw, &merged)
    }

    fn check_azp(&self, raw: &Map<String, Value>) -> Result<(), Fail> {
        let several_audiences = raw
            .get("aud")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 1);
        match raw.get("azp").and_then(Value::as_str) {
            Some(azp) if azp != self.config.client_id => Err(invalid(format!(
                "ID token `azp` is `{azp}`, not the broker's client id"
            ))),
            None if several_audiences => {
                Err(invalid("ID token has several audiences but no `azp`"))
            }
            _ => Ok(()),
        }
    }

    async fn userinfo(
        &self,
        d: &Discovered,
        access_token: &AccessToken,
    ) -> Result<Map<String, Value>, Fail> {
        let Some(endpoint) = d.metadata.userinfo_endpoint() else {
            return Err(invalid("the provider has no userinfo_endpoint"));
        };
        let request = openidconnect::http::Request::builder()
            .method(openidconnect::http::Method::GET)
            .uri(endpoint.url().as_str())
            .header(
                openidconnect::http::header::AUTHORIZATION,
                format!("Bearer {}", access_token.secret()),
            )
            .header(
                openidconnect::http::header::ACCEPT,
                if self.config.userinfo_signed {
                    "application/jwt"
                } else {
                    "application/json, application/jwt"
                },
            )
            .body(Vec::new())
            .map_err(|e| invalid(format!("userinfo request: {e}")))?;
        let response = execute(self.http.clone(), request).await.map_err(|h| {
            if h.is_outage() {
                Fail::Outage(format!("userinfo: {h}"))
            } else {
                invalid(format!("userinfo: {h}"))
            }
        })?;
        if response.status() != openidconnect::http::StatusCode::OK {
            return Err(invalid(format!(
                "userinfo: HTTP status {}",
                response.status().as_u16()
            )));
        }
        let content_type = response
            .headers()
            .get(openidconnect::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim_start()
            .to_ascii_lowercase();
        if content_type.starts_with("application/jwt") {
            let jwt = std::str::from_utf8(response.body())
                .map_err(|_| invalid("userinfo: the JWT is not text"))?;
            return self.verify_signed_userinfo(d, jwt.trim()).await;
        }
        if self.config.userinfo_signed {
            return Err(invalid(
                "userinfo: a plain answer although a signed one is required (userinfo_signed)",
            ));
        }
        if !content_type.starts_with("application/json") {
            return Err(invalid(
                "userinfo: neither `application/json` nor `application/jwt`",
            ));
        }
        match serde_json::from_slice::<Value>(response.body()) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(invalid("userinfo: not a JSON object")),
        }
    }

    /// A signed UserInfo answer (OpenID Connect Core 5.3.2): signed by a key of the
    /// provider's JWKS with one of the algorithms accepted for its ID tokens, and naming the
    /// provider (`iss`) and the broker (`aud`), so another client's answer cannot be
    /// substituted. Encrypted answers are refused.
    async fn verify_signed_userinfo(
        &self,
        d: &Discovered,
        jwt: &str,
    ) -> Result<Map<String, Value>, Fail> {
        if jwt.split('.').count() == 5 {
            return Err(invalid("userinfo: encrypted answers are not supported"));
        }
        let header = jsonwebtoken::decode_header(jwt)
            .map_err(|e| invalid(format!("userinfo: JWT header: {e}")))?;
        let alg_name = serde_json::to_value(header.alg).unwrap_or_default();
        let allowed = d
            .algs
            .iter()
            .any(|a| serde_json::to_value(a).ok().as_ref() == Some(&alg_name));
        if !allowed || alg_name.as_str().is_some_and(|n| n.starts_with("HS")) {
            return Err(invalid(format!(
                "userinfo: signed with {alg_name}, not an accepted algorithm"
            )));
        }
        let find = |d: &Discovered| -> Option<jsonwebtoken::jwk::Jwk> {
            let set: jsonwebtoken::jwk::JwkSet =
                serde_json::from_value(serde_json::to_value(d.metadata.jwks()).ok()?).ok()?;
            // Signing keys for this algorithm only (as for ID tokens): never an `enc` key.
            let usable: Vec<&jsonwebtoken::jwk::Jwk> = set
                .keys
                .iter()
                .filter(|k| {
                    !matches!(
                        k.common.public_key_use,
                        Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                            | Some(jsonwebtoken::jwk::PublicKeyUse::Other(_))
                    )
                })
                .filter(|k| {
                    k.common
                        .key_algorithm
                        .is_none_or(|a| serde_json::to_value(a).ok().as_ref() == Some(&alg_name))
                })
                .collect();
            match &header.kid {
                Some(kid) => usable
                    .into_iter()
                    .find(|k| k.common.key_id.as_deref() == Some(kid.as_str()))
                    .cloned(),
                // Without a kid, only one usable key leaves no doubt.
                None if usable.len() == 1 => usable.first().map(|k| (*k).clone()),
                None => None,
            }
        };
        let jwk = match find(d) {
            Some(k) => k,
            // Perhaps the provider rotated its keys: fetch them again, once.
            None => match self.refresh_for_unknown_key().await? {
                Some(fresh) => find(&fresh),
                None => None,
            }
            .ok_or_else(|| invalid("userinfo: signed with a key the provider does not publish"))?,
        };
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)
            .map_err(|e| invalid(format!("userinfo: provider key: {e}")))?;
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_issuer(&[d.metadata.issuer().as_str()]);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_required_spec_claims(&["iss", "aud"]);
        validation.leeway = CLOCK_SKEW;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(jwt, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| invalid(format!("userinfo: signed answer refused: {e}")))?;
        // As for ID tokens: several audiences need an `azp` naming the broker.
        let several = claims
            .get("aud")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 1);
        match claims.get("azp").and_then(Value::as_str) {
            Some(azp) if azp != self.config.client_id => Err(invalid(format!(
                "userinfo: signed answer for `{azp}` (azp), not the broker"
            ))),
            None if several => Err(invalid(
                "userinfo: signed answer with several audiences but no `azp`",
            )),
            _ => Ok(claims),
        }
    }

    fn identity(
        &self,
        sub: String,
        id_token: &Map<String, Value>,
        merged: &Map<String, Value>,
    ) -> Result<Identity, Fail> {
        let mapped =
            claims::map_claims(&self.config.claims, merged).map_err(|e| invalid(e.to_string()))?;
        if !mapped.dropped.is_empty() {
            tracing::warn!(
                issuer = %self.config.issuer,
                claims = ?mapped.dropped,
                "upstream claims not understood were left out"
            );
        }
        let acr = id_token.get("acr").and_then(Value::as_str);
        let assurance = self.level_of(acr);
        let amr = if self.config.amr_passthrough {
            id_token
                .get("amr")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .filter(|s| is_token(s) && s.len() <= 32)
                        .take(10)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(Identity {
            subject: sub,
            citizen_id: mapped.citizen_id,
            claims: mapped.claims,
            assurance,
            amr,
        })
    }

    /// The broker level of an upstream `acr`: its entry in `acr_levels`, or the floor; never
    /// below the floor nor above `max_assurance`.
    pub fn level_of(&self, acr: Option<&str>) -> Assurance {
        acr.and_then(|a| self.config.acr_levels.get(a).copied())
            .unwrap_or(self.config.assurance_floor)
            .max(self.config.assurance_floor)
            .min(self.max_assurance)
    }
}

/// The payload of an ID token whose signature has been verified, as JSON.
fn raw_claims(id_token: &CoreIdToken) -> Result<Map<String, Value>, Fail> {
    use base64::Engine;
    let compact = id_token.to_string();
    let payload = compact
        .split('.')
        .nth(1)
        .ok_or_else(|| invalid("ID token is not a compact JWS"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| invalid("ID token payload is not base64url"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(invalid("ID token payload is not a JSON object")),
    }
}

fn check_at_hash(
    id_token: &CoreIdToken,
    verifier: &CoreIdTokenVerifier<'static>,
    access_token: &AccessToken,
    raw: &Map<String, Value>,
) -> Result<(), Fail> {
    let Some(expected) = raw.get("at_hash").and_then(Value::as_str) else {
        return Ok(());
    };
    let alg = id_token
        .signing_alg()
        .map_err(|e| invalid(format!("ID token: {e}")))?;
    let key = id_token
        .signing_key(verifier)
        .map_err(|e| invalid(format!("ID token: {e}")))?;
    let actual = AccessTokenHash::from_token(access_token, alg, key)
        .map_err(|e| invalid(format!("at_hash: {e}")))?;
    if actual.as_str().as_bytes().ct_eq(expected.as_bytes()).into() {
        Ok(())
    } else {
        Err(invalid(
            "ID token `at_hash` does not match the access token",
        ))
    }
}

#[async_trait::async_trait]
impl Connector for OidcConnector {
    fn assurance(&self) -> Assurance {
        self.max_assurance
    }

    async fn start(&self, ctx: &Context) -> Result<Step, ConnectorError> {
        self.begin(ctx).await.map_err(|f| self.to_error(f))
    }

    async fn resume(
        &self,
        ctx: &Context,
        state: StepState,
        input: Input,
    ) -> Result<Step, ConnectorError> {
        let Input::Callback(params) = input else {
            return Err(ConnectorError::InvalidState(
                "expected an upstream callback".into(),
            ));
        };
        let pending: Pending = serde_json::from_value(state)
            .map_err(|_| ConnectorError::InvalidState("not an oidc step state".into()))?;
        self.finish(ctx, pending, params)
            .await
            .map(Step::Done)
            .map_err(|f| self.to_error(f))
    }

    fn public_jwks(&self) -> Option<Value> {
        self.public_jwks.clone()
    }

    fn recently_unavailable(&self) -> bool {
        self.outage.reason().is_some()
    }

    async fn health(&self) -> Health {
        if let Some(reason) = self.outage.reason() {
            return Health::Degraded { reason };
        }
        match self.metadata().await {
            Ok(_) => Health::Up,
            Err(Fail::Outage(reason)) | Err(Fail::Invalid(reason)) => Health::Down { reason },
            Err(Fail::Cancelled(reason)) | Err(Fail::Refused(reason)) => Health::Down { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "issuer = \"https://id.example.vn\"\nclient_id = \"broker\"\nclient_secret = {{ env = \"OIDC_TEST_SECRET\" }}\n{extra}"
        );
        toml::from_str(&text).expect("config parses")
    }

    fn open(extra: &str) -> Result<OidcConnector, Vec<(String, String)>> {
        std::env::set_var("OIDC_TEST_SECRET", "s3cret-for-tests");
        OidcConnector::open(config(extra), Path::new("."))
    }

    fn keys(r: Result<OidcConnector, Vec<(String, String)>>) -> Vec<String> {
        match r {
            Ok(_) => vec![],
            Err(p) => p.into_iter().map(|(k, _)| k).collect(),
        }
    }

    #[test]
    fn defaults_are_sensible() {
        let c = open("").expect("opens");
        assert_eq!(c.config.scopes, vec!["openid", "profile"]);
        assert_eq!(c.config.timeout_ms, 5000);
        assert_eq!(c.assurance(), Assurance::Low);
        assert!(c.config.amr_passthrough);
        assert!(!c.config.use_userinfo);
    }

    #[test]
    fn inline_secrets_are_refused_without_being_repeated() {
        let text = "issuer = \"https://id.example.vn\"\nclient_id = \"b\"\nclient_secret = \"hunter2-secret\"\n";
        // As the broker reads settings: the file is parsed first, then the settings table.
        let table: toml::Table = toml::from_str(text).expect("toml");
        let err = Config::deserialize(toml::Value::Table(table)).expect_err("inline secret");
        let msg = err.to_string();
        assert!(msg.contains("never written inline"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn secrets_come_from_files_relative_to_the_configuration() {
        let dir = std::env::temp_dir().join(format!("oidc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("up.secret"), "from-a-file\n").expect("write");
        let text = "issuer = \"https://id.example.vn\"\nclient_id = \"b\"\nclient_secret = { file = \"up.secret\" }\n";
        let c = OidcConnector::open(toml::from_str(text).expect("parses"), &dir).expect("opens");
        assert!(matches!(&c.auth, ClientAuth::Secret(s) if s.secret() == "from-a-file"));
        let missing = "issuer = \"https://id.example.vn\"\nclient_id = \"b\"\nclient_secret = { file = \"nope.secret\" }\n";
        let problems = keys(OidcConnector::open(
            toml::from_str(missing).expect("parses"),
            &dir,
        ));
        assert_eq!(problems, vec!["client_secret"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn problems_name_their_keys() {
        let problems = keys(open(
            "timeout_ms = 5\nscopes = [\"openid\", \"two words\"]\nassurance_floor = \"substantial\"\nmax_assurance = \"high\"\n[acr_levels]\n\"urn:l1\" = \"low\"\n[claims]\nname = \"\"\n",
        ));
        assert_eq!(
            problems,
            vec![
                "scopes[1]",
                "timeout_ms",
                "claims.name",
                "acr_levels.\"urn:l1\""
            ]
        );
        let http_issuer = keys(OidcConnector::open(
            toml::from_str(
                "issuer = \"http://id.example.vn\"\nclient_id = \"b\"\nclient_secret = { env = \"OIDC_TEST_SECRET\" }\n",
            )
            .expect("parses"),
            Path::new("."),
        ));
        assert_eq!(http_issuer, vec!["issuer"]);
        assert_eq!(
            keys(open("userinfo_signed = true")),
            vec!["userinfo_signed"]
        );
        assert!(open("use_userinfo = true\nuserinfo_signed = true").is_ok());
    }

    #[test]
    fn acr_maps_between_floor_and_ceiling() {
        let c = open(
            "assurance_floor = \"substantial\"\n[acr_levels]\n\"urn:vneid:level1\" = \"substantial\"\n\"urn:vneid:level2\" = \"high\"\n",
        )
        .expect("opens");
        assert_eq!(c.assurance(), Assurance::High, "ceiling from the table");
        assert_eq!(c.level_of(Some("urn:vneid:level2")), Assurance::High);
        assert_eq!(c.level_of(Some("urn:vneid:level1")), Assurance::Substantial);
        assert_eq!(c.level_of(Some("urn:other")), Assurance::Substantial);
        assert_eq!(c.level_of(None), Assurance::Substantial);

        let capped =
            open("max_assurance = \"substantial\"\n[acr_levels]\n\"urn:x\" = \"substantial\"\n")
                .expect("opens");
        assert_eq!(capped.assurance(), Assurance::Substantial);
        let too_high = keys(open(
            "max_assurance = \"substantial\"\n[acr_levels]\n\"urn:x\" = \"high\"\n",
        ));
        assert_eq!(too_high, vec!["acr_levels.\"urn:x\""]);
    }

    fn key_file(dir: &Path, alg: SigningAlg) -> String {
        let (_, pem_text) = SigningKey::generate("k", alg).expect("generate");
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join("client.pem"), pem_text).expect("write");
        "client.pem".into()
    }

    #[test]
    fn auth_settings_must_match_the_method() {
        let dir = std::env::temp_dir().join(format!("oidc-pkjwt-{}", std::process::id()));
        let file = key_file(&dir, SigningAlg::ES256);
        let open_in = |text: &str| {
            keys(OidcConnector::open(
                toml::from_str(&format!(
                    "issuer = \"https://id.example.vn\"\nclient_id = \"b\"\n{text}"
                ))
                .expect("parses"),
                &dir,
            ))
        };
        assert_eq!(
            open_in(""),
            vec!["client_secret"],
            "a secret method needs a secret"
        );
        assert_eq!(
            open_in("auth_method = \"private_key_jwt\"\n"),
            vec!["private_key"]
        );
        std::env::set_var("OIDC_TEST_SECRET", "s3cret-for-tests");
        assert_eq!(
            open_in(&format!(
                "auth_method = \"private_key_jwt\"\nprivate_key = {{ file = \"{file}\" }}\nprivate_key_alg = \"ES256\"\nclient_secret = {{ env = \"OIDC_TEST_SECRET\" }}\n"
            )),
            vec!["client_secret"],
            "no shared secret beside a key"
        );
        assert_eq!(
            open_in(&format!(
                "client_secret = {{ env = \"OIDC_TEST_SECRET\" }}\nprivate_key = {{ file = \"{file}\" }}\n"
            )),
            vec!["private_key"],
            "a key without private_key_jwt is a mistake"
        );
        assert_eq!(
            open_in(
                "client_secret = { env = \"OIDC_TEST_SECRET\" }\nprivate_key_alg = \"ES256\"\nclient_assertion_audience = \"issuer\"\n"
            ),
            vec!["private_key_alg", "client_assertion_audience"],
            "so are the key's other settings"
        );
        // An EC key declared as RSA.
        assert_eq!(
            open_in(&format!(
                "auth_method = \"private_key_jwt\"\nprivate_key = {{ file = \"{file}\" }}\n"
            )),
            vec!["private_key"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn client_assertions_verify_with_the_published_key() {
        let dir = std::env::temp_dir().join(format!("oidc-assert-{}", std::process::id()));
        let file = key_file(&dir, SigningAlg::EdDSA);
        let server = mock_provider().await;
        let text = format!(
            "issuer = \"{}\"\nclient_id = \"broker\"\nauth_method = \"private_key_jwt\"\nprivate_key = {{ file = \"{file}\" }}\nprivate_key_alg = \"EdDSA\"\n",
            server.uri()
        );
        let c = OidcConnector::open(toml::from_str(&text).expect("parses"), &dir).expect("opens");
        let jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_value(Connector::public_jwks(&c).expect("published")).expect("jwks");
        assert_eq!(jwks.keys.len(), 1);
        let jwk = &jwks.keys[0];
        let kid = jwk.common.key_id.clone().expect("kid");
        assert_eq!(
            kid,
            jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .expect("thumbprint"),
            "the default kid is the thumbprint"
        );
        let ClientAuth::Assertion(key) = &c.auth else {
            panic!("a key")
        };
        let d = c.metadata().await.ok().expect("metadata");
        let now = unix_now();
        let first = c.client_assertion(key, &d, now).ok().expect("signs");
        let second = c.client_assertion(key, &d, now).ok().expect("signs");
        let header = jsonwebtoken::decode_header(&first).expect("header");
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        v.set_audience(&[server.uri()]);
        v.set_issuer(&["broker"]);
        let decoding = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key");
        let claims = jsonwebtoken::decode::<Value>(&first, &decoding, &v)
            .expect("verifies with the published key")
            .claims;
        assert_eq!(claims["sub"], "broker");
        assert!(claims["exp"].as_u64().expect("exp") <= now + 60);
        let jti = |t: &str| {
            jsonwebtoken::decode::<Value>(t, &decoding, &v)
                .expect("verifies")
                .claims["jti"]
                .clone()
        };
        assert_ne!(jti(&first), jti(&second), "every assertion has its own jti");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_provider_that_refuses_the_method_is_reported_at_discovery() {
        let dir = std::env::temp_dir().join(format!("oidc-methods-{}", std::process::id()));
        let file = key_file(&dir, SigningAlg::RS256);
        let server = mock_provider_with(|doc| {
            doc["token_endpoint_auth_methods_supported"] =
                serde_json::json!(["client_secret_basic"]);
        })
        .await;
        let text = format!(
            "issuer = \"{}\"\nclient_id = \"broker\"\nauth_method = \"private_key_jwt\"\nprivate_key = {{ file = \"{file}\" }}\n",
            server.uri()
        );
        let c = OidcConnector::open(toml::from_str(&text).expect("parses"), &dir).expect("opens");
        match c.start(&ctx()).await {
            Err(ConnectorError::Unavailable(detail)) => assert!(
                detail.contains("does not accept `private_key_jwt`"),
                "{detail}"
            ),
            other => panic!("expected unavailable, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn upstream_error_codes_are_kept_printable() {
        assert_eq!(error_code("access_denied"), "access_denied");
        assert_eq!(error_code("<script>x</script>"), "scriptxscript");
    }

    fn ctx() -> Context {
        Context {
            maintenance: Default::default(),
            callback_url: "http://127.0.0.1:8080/callback/up".into(),
            state: "state-0123456789abcdef".into(),
            nonce: "nonce-0123456789abcdef".into(),
            languages: vec!["vi".into()],
            login_hint: None,
            min_assurance: Assurance::Low,
            now: unix_now(),
            client_address: "127.0.0.1".into(),
            kv: std::sync::Arc::new(crate::kv::MemoryKv::default()),
        }
    }

    fn local(issuer: &str, timeout_ms: u64) -> OidcConnector {
        std::env::set_var("OIDC_TEST_SECRET", "s3cret-for-tests");
        let text = format!(
            "issuer = \"{issuer}\"\nclient_id = \"broker\"\nclient_secret = {{ env = \"OIDC_TEST_SECRET\" }}\ntimeout_ms = {timeout_ms}\nscopes = [\"openid\", \"profile\", \"cccd\"]\nacr_values = [\"urn:vneid:level2\"]\n"
        );
        OidcConnector::open(toml::from_str(&text).expect("parses"), Path::new(".")).expect("opens")
    }

    fn metadata(issuer: &str) -> Value {
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256", "HS256", "none"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true
        })
    }

    async fn mock_provider() -> wiremock::MockServer {
        mock_provider_with(|_| {}).await
    }

    /// A provider whose discovery document is [`metadata`] changed by `edit`.
    async fn mock_provider_with(edit: impl FnOnce(&mut Value)) -> wiremock::MockServer {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, ResponseTemplate};
        let server = wiremock::MockServer::start().await;
        let mut doc = metadata(&server.uri());
        edit(&mut doc);
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(doc))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"keys": []})))
            .mount(&server)
            .await;
        server
    }

    #[tokio::test]
    async fn start_redirects_with_pkce_state_nonce_and_acr() {
        let server = mock_provider().await;
        let c = local(&server.uri(), 5000);
        let step = c.start(&ctx()).await.expect("redirect");
        let Step::Redirect { url, state } = step else {
            panic!("expected a redirect")
        };
        let url = url::Url::parse(&url).expect("url");
        let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        assert!(url
            .as_str()
            .starts_with(&format!("{}/authorize?", server.uri())));
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "broker");
        assert_eq!(q["state"], "state-0123456789abcdef");
        assert_eq!(q["nonce"], "nonce-0123456789abcdef");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["scope"], "openid profile cccd");
        assert_eq!(q["acr_values"], "urn:vneid:level2");
        assert_eq!(q["ui_locales"], "vi");
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:8080/callback/up");
        // The verifier stays in the step state; only its S256 challenge leaves.
        let verifier = state["pkce_verifier"].as_str().expect("verifier");
        assert!(!url.as_str().contains(verifier));
        assert_eq!(
            q["code_challenge"],
            PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
                verifier.to_string()
            ))
            .as_str()
        );
        // Only asymmetric algorithms are kept from what the provider advertises.
        let d = c.metadata().await.ok().expect("cached");
        assert_eq!(d.algs, vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
        assert_eq!(c.health().await, Health::Up);
    }

    #[tokio::test]
    async fn callback_errors_are_told_apart() {
        let server = mock_provider().await;
        let c = local(&server.uri(), 5000);
        let Step::Redirect { state, .. } = c.start(&ctx()).await.expect("redirect") else {
            panic!("expected a redirect")
        };
        let cx = ctx();
        let call = |params: &[(&str, &str)]| {
            let params: BTreeMap<String, String> = params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            c.resume(&cx, state.clone(), Input::Callback(params))
        };
        let iss = server.uri();
        let key = |e: ConnectorError| match e {
            ConnectorError::Failed { message, .. } => message.key,
            ConnectorError::Unavailable(_) => "unavailable".into(),
            other => format!("{other}"),
        };
        let cancelled = call(&[
            ("state", "state-0123456789abcdef"),
            ("iss", &iss),
            ("error", "access_denied"),
        ])
        .await
        .expect_err("cancelled");
        assert_eq!(key(cancelled), MSG_CANCELLED);
        let refused = call(&[
            ("state", "state-0123456789abcdef"),
            ("iss", &iss),
            ("error", "login_required"),
        ])
        .await
        .expect_err("refused");
        assert_eq!(key(refused), MSG_REFUSED);
        let mixup = call(&[
            ("state", "state-0123456789abcdef"),
            ("iss", "https://evil.example"),
            ("code", "c"),
        ])
        .await
        .expect_err("mix-up");
        assert_eq!(key(mixup), MSG_INVALID);
        let no_iss = call(&[("state", "state-0123456789abcdef"), ("code", "c")])
            .await
            .expect_err("iss required");
        assert_eq!(key(no_iss), MSG_INVALID);
        let other_state = call(&[("state", "another"), ("iss", &iss), ("code", "c")])
            .await
            .expect_err("state");
        assert_eq!(key(other_state), MSG_INVALID);
        let busy = call(&[
            ("state", "state-0123456789abcdef"),
            ("iss", &iss),
            ("error", "temporarily_unavailable"),
        ])
        .await
        .expect_err("busy");
        assert_eq!(key(busy), "unavailable");
        assert!(matches!(c.health().await, Health::Degraded { .. }));
    }

    #[tokio::test]
    async fn a_slow_provider_is_unavailable_and_degraded() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, ResponseTemplate};
        let server = wiremock::MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(metadata(&server.uri()))
                    .set_delay(Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        let c = local(&server.uri(), 200);
        let err = c.start(&ctx()).await.expect_err("times out");
        assert!(
            matches!(&err, ConnectorError::Unavailable(d) if d.contains("timed out")),
            "{err}"
        );
        assert!(matches!(c.health().await, Health::Degraded { .. }));
    }

    #[tokio::test]
    async fn a_wrong_step_state_or_input_is_invalid_state() {
        let c = open("").expect("opens");
        let err = c
            .resume(&ctx(), Value::Null, Input::Callback(BTreeMap::new()))
            .await
            .expect_err("bad state");
        assert!(matches!(err, ConnectorError::InvalidState(_)));
        let err = c
            .resume(&ctx(), Value::Null, Input::Poll)
            .await
            .expect_err("bad input");
        assert!(matches!(err, ConnectorError::InvalidState(_)));
    }
}
