//! The configuration file as operators write it (TOML). Every key is documented in the
//! README and in `config/broker.example.toml`. Unknown keys are errors, so a typo never
//! silently falls back to a default.

use std::collections::BTreeMap;

use connectors::Assurance;
use serde::Deserialize;

use crate::keys::SigningAlg;

/// Text in several languages: `{ en = "...", vi = "...", zh = "...", es = "..." }`.
pub type LocalizedText = BTreeMap<String, String>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The issuer URL (`https://id.example.gov`); every endpoint hangs below it.
    pub issuer: String,
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where state lives.
    #[serde(default)]
    pub store: StoreConfig,
    /// Where the durable records live.
    #[serde(default)]
    pub records: super::records::RecordsConfig,
    /// Signing keys; the first key of an algorithm signs, all are published.
    pub keys: Vec<KeyConfig>,
    /// Secret for pairwise subject identifiers (at least 32 bytes).
    pub pairwise_secret: SecretRef,
    /// Token lifetimes.
    #[serde(default)]
    pub tokens: TokenConfig,
    /// Browser sessions.
    #[serde(default)]
    pub session: SessionConfig,
    /// Require PKCE from confidential clients too (always required from public ones).
    #[serde(default = "yes")]
    pub require_pkce: bool,
    /// Take the client address from `X-Forwarded-For` / `Forwarded` (only behind a reverse
    /// proxy that overwrites them; otherwise anyone could dodge per-address rate limits).
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Allow the `test-citizens` connector in `serve` (never in production).
    #[serde(default)]
    pub allow_test_citizens: bool,
    /// `acr` values of the assurance levels.
    #[serde(default)]
    pub acr: AcrConfig,
    /// Append-only audit log of security events (JSON lines); without it, audit events go
    /// to the main log with `target = "audit"`.
    #[serde(default)]
    pub audit_log: Option<String>,
    /// The population registry used to link accounts to citizen ID numbers.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    /// The admin API (off unless a token is configured).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// The operators' console.
    #[serde(default)]
    pub console: Option<ConsoleConfig>,
    /// Identity sources.
    #[serde(default)]
    pub connectors: Vec<ConnectorConfig>,
    /// Relying parties.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn yes() -> bool {
    true
}

/// The population registry (HTTP contract in the README).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL.
    pub url: String,
    /// Timeout of one request, in milliseconds.
    #[serde(default = "default_registry_timeout")]
    pub timeout_ms: u64,
}

fn default_registry_timeout() -> u64 {
    3000
}

/// The admin API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token of the admin API (at least 32 bytes), from an environment variable or a
    /// file.
    pub token: SecretRef,
}

/// The operators' console (`/console`). With it, connectors and clients become versioned
/// configuration in the records (seeded from this file on first start).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The assurance an operator's sign-in must reach (`high` unless said otherwise, so a
    /// password alone never opens the console).
    #[serde(default = "default_console_assurance")]
    pub min_assurance: Assurance,
    /// Who may sign in, and with which role.
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
}

fn default_console_assurance() -> Assurance {
    Assurance::High
}

/// One operator of the console, known by their citizen ID number (kept only as its keyed
/// hash once read).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Shown in the console and in audit rows.
    pub name: String,
    /// The operator's citizen ID number.
    pub citizen_id: String,
    /// What they may do.
    pub role: Role,
}

/// What an operator may do in the console and through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees everything except secrets.
    Viewer,
    /// Also maintenance and the review queue.
    Operator,
    /// Also connectors and clients.
    Admin,
}

impl Role {
    /// The name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// The Prometheus endpoint `/metrics`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A bearer token scrapers must send (at least 16 bytes); without it `/metrics` is open
    /// (keep it off the public route at the proxy then).
    #[serde(default)]
    pub token: Option<SecretRef>,
}

/// Store selection. `kind = "redis"` has a `mode`: `single` (default, one `url`),
/// `sentinel` or `cluster`; each mode is its own variant here.
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawStoreConfig")]
pub enum StoreConfig {
    /// Embedded single-node store in a file.
    Embedded {
        /// Database file.
        path: String,
    },
    /// Redis, shared by several broker instances (`mode = "single"`).
    Redis {
        /// `redis://host:port/db` (or `rediss://`); may come from an environment variable.
        url: SecretRef,
        /// Prefix of every key.
        prefix: String,
        /// Timeout of one store operation, in milliseconds.
        timeout_ms: u64,
    },
    /// Redis behind Sentinel (`mode = "sentinel"`): the master is looked up through the
    /// sentinels, again after every failover.
    RedisSentinel {
        /// `redis://host:port` of each sentinel (addresses only; passwords go below).
        sentinels: Vec<String>,
        /// The name the sentinels monitor the master under.
        master_name: String,
        /// ACL user of the master and replicas.
        username: Option<String>,
        /// Password of the master and replicas, from an environment variable or a file.
        password: Option<SecretRef>,
        /// Password of the sentinels, from an environment variable or a file.
        sentinel_password: Option<SecretRef>,
        /// Database number.
        db: i64,
        /// Prefix of every key.
        prefix: String,
        /// Timeout of one store operation, in milliseconds.
        timeout_ms: u64,
    },
    /// Redis Cluster (`mode = "cluster"`).
    RedisCluster {
        /// `redis://host:port` of some nodes (addresses only; the password goes below).
        nodes: Vec<String>,
        /// ACL user of the nodes.
        username: Option<String>,
        /// Password of the nodes, from an environment variable or a file.
        password: Option<SecretRef>,
        /// Prefix of every key.
        prefix: String,
        /// Timeout of one store operation, in milliseconds.
        timeout_ms: u64,
    },
}

/// How the Redis store is deployed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One server at `url`.
    #[default]
    Single,
    /// A master found through `sentinels`.
    Sentinel,
    /// Redis Cluster through `nodes`.
    Cluster,
}

impl RedisMode {
    fn as_str(self) -> &'static str {
        match self {
            RedisMode::Single => "single",
            RedisMode::Sentinel => "sentinel",
            RedisMode::Cluster => "cluster",
        }
    }
}

/// `[store]` as written; [`StoreConfig`] is made from it, refusing keys of another mode.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
enum RawStoreConfig {
    Embedded { path: String },
    Redis(Box<RawRedisConfig>),
}

/// `[store]` with `kind = "redis"`, every mode's keys together.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedisConfig {
    #[serde(default)]
    mode: RedisMode,
    url: Option<SecretRef>,
    sentinels: Option<Vec<String>>,
    master_name: Option<String>,
    nodes: Option<Vec<String>>,
    username: Option<String>,
    password: Option<SecretRef>,
    sentinel_password: Option<SecretRef>,
    db: Option<i64>,
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default = "default_op_timeout")]
    timeout_ms: u64,
}

impl TryFrom<RawStoreConfig> for StoreConfig {
    type Error = String;

    fn try_from(raw: RawStoreConfig) -> Result<Self, String> {
        match raw {
            RawStoreConfig::Embedded { path } => Ok(StoreConfig::Embedded { path }),
            RawStoreConfig::Redis(redis) => (*redis).try_into(),
        }
    }
}

impl TryFrom<RawRedisConfig> for StoreConfig {
    type Error = String;

    fn try_from(raw: RawRedisConfig) -> Result<Self, String> {
        use RedisMode::{Cluster, Sentinel, Single};
        let mode = raw.mode;
        let only = |key: &str, present: bool, modes: &[RedisMode]| {
            if !present || modes.contains(&mode) {
                return Ok(());
            }
            let modes: Vec<String> = modes
                .iter()
                .map(|m| format!("`mode = \"{}\"`", m.as_str()))
                .collect();
            Err(format!(
                "`{key}` is only used with {}, not with `mode = \"{}\"`",
                modes.join(" or "),
                mode.as_str()
            ))
        };
        only("url", raw.url.is_some(), &[Single])?;
        only("sentinels", raw.sentinels.is_some(), &[Sentinel])?;
        only("master_name", raw.master_name.is_some(), &[Sentinel])?;
        only(
            "sentinel_password",
            raw.sentinel_password.is_some(),
            &[Sentinel],
        )?;
        only("db", raw.db.is_some(), &[Sentinel])?;
        only("nodes", raw.nodes.is_some(), &[Cluster])?;
        only("username", raw.username.is_some(), &[Sentinel, Cluster])?;
        only("password", raw.password.is_some(), &[Sentinel, Cluster])?;
        // Empty lists and names are reported by the validation, with their key.
        Ok(match mode {
            Single => StoreConfig::Redis {
                url: raw
                    .url
                    .ok_or("needs `url` (or set `mode = \"sentinel\"` or `\"cluster\"`)")?,
                prefix: raw.prefix,
                timeout_ms: raw.timeout_ms,
            },
            Sentinel => StoreConfig::RedisSentinel {
                sentinels: raw.sentinels.unwrap_or_default(),
                master_name: raw.master_name.unwrap_or_default(),
                username: raw.username,
                password: raw.password,
                sentinel_password: raw.sentinel_password,
                db: raw.db.unwrap_or(0),
                prefix: raw.prefix,
                timeout_ms: raw.timeout_ms,
            },
            Cluster => StoreConfig::RedisCluster {
                nodes: raw.nodes.unwrap_or_default(),
                username: raw.username,
                password: raw.password,
                prefix: raw.prefix,
                timeout_ms: raw.timeout_ms,
            },
        })
    }
}

fn default_prefix() -> String {
    "broker:".into()
}

fn default_op_timeout() -> u64 {
    2000
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Embedded {
            path: "data/broker.redb".into(),
        }
    }
}

/// A signing key file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Key id.
    pub kid: String,
    /// `RS256`, `ES256` or `EdDSA`.
    pub alg: SigningAlg,
    /// PKCS#8 PEM private key file (relative to the configuration file).
    pub file: String,
}

/// A secret value, never written inline: from an environment variable or a file. Client
/// secrets may instead be given as their SHA-256 digest (hex).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, untagged)]
pub enum SecretRef {
    /// `{ env = "NAME" }`
    Env {
        /// Variable name.
        env: String,
    },
    /// `{ file = "path" }` (trailing newline trimmed)
    File {
        /// File path, relative to the configuration file.
        file: String,
    },
    /// `{ sha256 = "hex" }` (client secrets only)
    Sha256 {
        /// Hex digest of the secret.
        sha256: String,
    },
}

/// Token lifetimes in seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Authorization code lifetime.
    pub code_ttl: u64,
    /// Access token lifetime.
    pub access_token_ttl: u64,
    /// ID token lifetime.
    pub id_token_ttl: u64,
    /// Longest life of a refresh-token family, counted from the code exchange; rotations do
    /// not extend it.
    pub refresh_token_ttl: u64,
    /// Algorithm of access tokens (RFC 9068 JWTs).
    pub access_token_alg: SigningAlg,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            code_ttl: 60,
            access_token_ttl: 300,
            id_token_ttl: 300,
            refresh_token_ttl: 8 * 3600,
            access_token_alg: SigningAlg::ES256,
        }
    }
}

/// Browser session settings in seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Longest life of an SSO session.
    pub lifetime: u64,
    /// A session unused for this long ends.
    pub idle_timeout: u64,
    /// How long a citizen may take to complete a login.
    pub login_timeout: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            lifetime: 8 * 3600,
            idle_timeout: 30 * 60,
            login_timeout: 15 * 60,
        }
    }
}

/// `acr` values per assurance level (eIDAS by default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcrConfig {
    /// `acr` of `low`.
    pub low: String,
    /// `acr` of `substantial`.
    pub substantial: String,
    /// `acr` of `high`.
    pub high: String,
}

impl Default for AcrConfig {
    fn default() -> Self {
        AcrConfig {
            low: "http://eidas.europa.eu/LoA/low".into(),
            substantial: "http://eidas.europa.eu/LoA/substantial".into(),
            high: "http://eidas.europa.eu/LoA/high".into(),
        }
    }
}

/// Whether an identity source is offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorStatus {
    /// Offered.
    #[default]
    Enabled,
    /// Not offered.
    Disabled,
    /// Shown with its maintenance message, not usable.
    Maintenance,
}

/// One identity source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Stable id (used in URLs and in the `amr`/audit records).
    pub id: String,
    /// Connector type (`test-citizens`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Name on the choice page, per language.
    pub name: LocalizedText,
    /// Enabled, disabled or in maintenance.
    #[serde(default)]
    pub status: ConnectorStatus,
    /// Shown while in maintenance, per language.
    #[serde(default)]
    pub maintenance_message: LocalizedText,
    /// Logo file on the choice page, per language (relative to the configuration file).
    #[serde(default)]
    pub logo: LocalizedText,
    /// Type-specific settings.
    #[serde(default)]
    pub settings: toml::Table,
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with id and secret.
    #[default]
    ClientSecretBasic,
    /// Id and secret in the form body.
    ClientSecretPost,
    /// A JWT signed with the client's key (RFC 7523).
    PrivateKeyJwt,
    /// A public client (PKCE required).
    None,
}

impl AuthMethod {
    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }
}

/// Subject identifier type (OpenID Connect Core 8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectType {
    /// Different per sector: platforms cannot correlate citizens.
    #[default]
    Pairwise,
    /// The same for every platform.
    Public,
}

/// One relying party.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `client_id`.
    pub id: String,
    /// Name shown to citizens: one text, or one per language (`{ en = …, vi = … }`).
    pub name: ClientName,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// The platform's home page: where "Back to the platform" goes when a login cannot
    /// go on (default: the origin of the first redirect URI).
    #[serde(default)]
    pub home_url: Option<String>,
    /// Token endpoint authentication.
    #[serde(default)]
    pub auth_method: AuthMethod,
    /// Client secret (for the `client_secret_*` methods).
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// JWKS (JSON text) with the client's public keys, for `private_key_jwt`.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Where the client publishes its JWKS instead (https; http only on loopback): fetched
    /// when needed, cached, fetched again on an unknown `kid`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Scopes this client may receive.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// `pairwise` (default) or `public`.
    #[serde(default)]
    pub subject_type: SubjectType,
    /// Sector of pairwise subjects; defaults to the host of the redirect URIs.
    #[serde(default)]
    pub sector_identifier: Option<String>,
    /// ID token signing algorithm.
    #[serde(default = "default_id_alg")]
    pub id_token_signed_response_alg: SigningAlg,
    /// Lowest assurance this platform accepts.
    #[serde(default = "default_min_assurance")]
    pub min_assurance: Assurance,
    /// Ask the citizen's consent before the first login to this platform.
    #[serde(default)]
    pub require_consent: bool,
    /// RFC 9126: its authorization requests must be pushed to `/par` first (implied by a
    /// FAPI profile).
    #[serde(default)]
    pub require_pushed_authorization_requests: Option<bool>,
    /// The platform needs a linked citizen ID number: a citizen without one must link it
    /// (no "Skip") before the platform gets a login.
    #[serde(default)]
    pub require_citizen_id: bool,
    /// Back-Channel Logout 1.0: where logout tokens are POSTed when a session ends.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// Front-Channel Logout 1.0: loaded in an iframe (with `iss` and `sid`) when a session
    /// ends, for platforms without a back channel.
    #[serde(default)]
    pub frontchannel_logout_uri: Option<String>,
    /// RFC 9449 5.2: every token request must carry a DPoP proof (any client that sends one
    /// gets bound tokens anyway).
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// RFC 9449 8, 9: DPoP proofs of this client must carry a server nonce (`DPoP-Nonce`).
    #[serde(default)]
    pub require_dpop_nonce: bool,
    /// FAPI 2.0: `"fapi2-security"` or `"fapi2-message-signing"`; absent for an ordinary
    /// platform.
    #[serde(default)]
    pub profile: Option<String>,
    /// Whether a refresh replaces the refresh token (default: yes, except under a FAPI
    /// profile, which allows rotation only in extraordinary circumstances).
    #[serde(default)]
    pub rotate_refresh_tokens: Option<bool>,
    /// RFC 9101 10.5: authorization requests only as signed request objects (implied by
    /// `fapi2-message-signing`).
    #[serde(default)]
    pub require_signed_request_object: Option<bool>,
    /// Signed UserInfo answers (OpenID Connect Core 5.3.2) with this algorithm.
    #[serde(default)]
    pub userinfo_signed_response_alg: Option<SigningAlg>,
    /// Signed introspection answers (RFC 9701) with this algorithm (otherwise the ID token's
    /// when a signed answer is asked for).
    #[serde(default)]
    pub introspection_signed_response_alg: Option<SigningAlg>,
    /// JARM: algorithm of signed authorization responses (otherwise the ID token's).
    #[serde(default)]
    pub authorization_signed_response_alg: Option<SigningAlg>,
}

/// A client's name: the same in every language, or per language.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ClientName {
    /// One name for every language.
    Plain(String),
    /// A name per language (English, or the first, for the others).
    PerLanguage(LocalizedText),
}

impl ClientName {
    /// The names per language; a plain name is under `en`.
    pub fn texts(&self) -> LocalizedText {
        match self {
            ClientName::Plain(name) => BTreeMap::from([("en".to_string(), name.clone())]),
            ClientName::PerLanguage(names) => names.clone(),
        }
    }
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into()]
}

fn default_id_alg() -> SigningAlg {
    SigningAlg::RS256
}

fn default_min_assurance() -> Assurance {
    Assurance::Low
}
