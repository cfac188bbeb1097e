//! Configuration: the file format ([`file`]), and its validation into the [`Settings`] the
//! running broker uses. Validation collects every problem with the file, the key path and
//! the reason, so `broker check-config` shows them all at once.

pub mod assets;
pub mod file;
mod live;
mod locate;
pub mod records;
pub mod versioned;
mod wording;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use connectors::{catalogue, Assurance, Connector};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};

pub use file::{
    AcrConfig, AuthMethod, ConnectorStatus, FileConfig, LocalizedText, Role, SecretRef,
    SessionConfig, StoreConfig, SubjectType, TokenConfig,
};

pub use live::{Live, LiveConfig};

use crate::keys::{KeySet, SigningAlg, SigningKey};
use crate::protocol::fapi::FapiProfile;
use common::secret::SecretSource;
use common::url_policy::is_loopback;
use connectors::population_registry::PopulationRegistry;

pub use crate::protocol::scopes::SCOPES;

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: String,
    /// The 1-based line of the file, when known.
    pub line: Option<usize>,
    /// The key path (`clients["rp-basic"].redirect_uris[0]`), empty for the whole file.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.reason)
        } else {
            write!(f, ": {}: {}", self.key, self.reason)
        }
    }
}

/// How the configuration will be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `broker serve`: test-only connectors need `allow_test_citizens`.
    Serve,
    /// `broker demo`: everything allowed.
    Demo,
}

/// How a client proves who it is at the token endpoint.
pub enum ClientAuth {
    /// `client_secret_basic` with the SHA-256 of the secret.
    SecretBasic([u8; 32]),
    /// `client_secret_post` with the SHA-256 of the secret.
    SecretPost([u8; 32]),
    /// `private_key_jwt` with the client's public keys (registered, or from its `jwks_uri`).
    PrivateKeyJwt(ClientKeys),
    /// A public client.
    None,
}

pub use crate::client_keys::{ClientKey, ClientKeys};

/// A relying party, validated.
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// Name shown to citizens (in English, or the first language written).
    pub name: String,
    /// Name shown to citizens, per language.
    pub names: LocalizedText,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Its home page (configured, else the origin of its first redirect URI).
    pub home_url: String,
    /// Authentication at the token endpoint.
    pub auth: ClientAuth,
    /// Scopes it may receive.
    pub scopes: HashSet<String>,
    /// Pairwise or public `sub`.
    pub subject_type: SubjectType,
    /// Sector of its pairwise subjects.
    pub sector: String,
    /// ID token algorithm.
    pub id_token_alg: SigningAlg,
    /// Lowest accepted assurance.
    pub min_assurance: Assurance,
    /// Consent needed before the first login.
    pub require_consent: bool,
    /// Authorization requests only through `/par` (RFC 9126).
    pub require_par: bool,
    /// A linked citizen ID number is needed (no "Skip").
    pub require_citizen_id: bool,
    /// Back-channel logout endpoint.
    pub backchannel_logout_uri: Option<String>,
    /// Front-channel logout page.
    pub frontchannel_logout_uri: Option<String>,
    /// Token requests without a DPoP proof are refused (RFC 9449 5.2).
    pub dpop_bound_access_tokens: bool,
    /// DPoP proofs must carry a server nonce (RFC 9449 8, 9).
    pub require_dpop_nonce: bool,
    /// The FAPI 2.0 profile it is held to, if any.
    pub profile: Option<FapiProfile>,
    /// A refresh replaces the refresh token.
    pub rotate_refresh_tokens: bool,
    /// Authorization requests only as signed request objects (RFC 9101 10.5).
    pub require_signed_request_object: bool,
    /// Signed UserInfo answers with this algorithm.
    pub userinfo_alg: Option<SigningAlg>,
    /// Algorithm of signed introspection answers (RFC 9701).
    pub introspection_alg: SigningAlg,
    /// Algorithm of signed authorization responses (JARM).
    pub authorization_alg: SigningAlg,
}

impl Client {
    /// Its name in `lang`, else in English, else in the first language written.
    pub fn display_name(&self, lang: &str) -> &str {
        self.names
            .get(lang)
            .or_else(|| self.names.get("en"))
            .or_else(|| self.names.values().next())
            .map(String::as_str)
            .unwrap_or(&self.id)
    }

    /// Whether this is a public client.
    pub fn is_public(&self) -> bool {
        matches!(self.auth, ClientAuth::None)
    }
}

/// The `client_id` of the broker's own account page: a public relying party of the broker
/// (PKCE, `openid` only), so that "Sign in" on the account page is an ordinary login.
pub const ACCOUNT_CLIENT_ID: &str = "broker-account";

/// The account page's path that receives its logins.
pub const ACCOUNT_CALLBACK_PATH: &str = "/account/callback";

/// The `client_id` of the operators' console: a public relying party of the broker whose
/// logins must reach the console's assurance.
pub const CONSOLE_CLIENT_ID: &str = "broker-console";

/// The console's path that receives its logins.
pub const CONSOLE_CALLBACK_PATH: &str = "/console/callback";

/// The console's client: the account page's, with its own id, callback and floor.
fn console_client(issuer: &str, alg: SigningAlg, floor: Assurance) -> Client {
    let names: LocalizedText = crate::i18n::LANGUAGES
        .iter()
        .map(|l| (l.to_string(), crate::i18n::Tr::new(l).get("console-title")))
        .collect();
    Client {
        id: CONSOLE_CLIENT_ID.to_string(),
        name: names.get("en").cloned().unwrap_or_default(),
        names,
        redirect_uris: vec![format!("{issuer}{CONSOLE_CALLBACK_PATH}")],
        home_url: format!("{issuer}/console"),
        min_assurance: floor,
        ..account_client(issuer, alg)
    }
}

fn account_client(issuer: &str, alg: SigningAlg) -> Client {
    let names: LocalizedText = crate::i18n::LANGUAGES
        .iter()
        .map(|l| (l.to_string(), crate::i18n::Tr::new(l).get("account-title")))
        .collect();
    Client {
        id: ACCOUNT_CLIENT_ID.to_string(),
        name: names.get("en").cloned().unwrap_or_default(),
        names,
        redirect_uris: vec![format!("{issuer}{ACCOUNT_CALLBACK_PATH}")],
        post_logout_redirect_uris: Vec::new(),
        home_url: format!("{issuer}/account"),
        auth: ClientAuth::None,
        scopes: HashSet::from(["openid".to_string()]),
        subject_type: SubjectType::Public,
        sector: String::new(),
        id_token_alg: alg,
        min_assurance: Assurance::Low,
        require_consent: false,
        require_par: false,
        require_citizen_id: false,
        backchannel_logout_uri: None,
        frontchannel_logout_uri: None,
        dpop_bound_access_tokens: false,
        require_dpop_nonce: false,
        profile: None,
        rotate_refresh_tokens: true,
        require_signed_request_object: false,
        userinfo_alg: None,
        introspection_alg: alg,
        authorization_alg: alg,
    }
}

/// An identity source, opened.
pub struct ConnectorEntry {
    /// Its id.
    pub id: String,
    /// Its type.
    pub kind: String,
    /// Name per language.
    pub name: LocalizedText,
    /// Enabled, disabled, maintenance.
    pub status: ConnectorStatus,
    /// Maintenance message per language.
    pub maintenance_message: LocalizedText,
    /// Logo per language.
    pub logos: BTreeMap<String, assets::Logo>,
    /// The connector.
    pub connector: Arc<dyn Connector>,
}

/// The keyed hash of `session::client_sid` under a pairwise secret (made once per
/// configuration).
pub fn client_sid_key(pairwise_secret: &[u8]) -> common::hash::KeyedHash {
    derived_key(pairwise_secret, b"client sid key")
}

/// A keyed hash with a key of its own for one purpose (`label`), derived from the pairwise
/// secret: what one purpose's MACs show says nothing of another's.
pub fn derived_key(pairwise_secret: &[u8], label: &[u8]) -> common::hash::KeyedHash {
    let key = common::hash::KeyedHash::new(pairwise_secret).mac(&[label]);
    common::hash::KeyedHash::new(&key)
}

/// The validated configuration the broker runs with.
pub struct Settings {
    /// Where it came from.
    pub source: PathBuf,
    /// Issuer URL without a trailing slash.
    pub issuer: String,
    /// Where this process listens (the command line's `--listen` holds over the file).
    pub listen: String,
    /// The file's `listen`, which a reload compares (a `--listen` is not a change).
    pub file_listen: String,
    /// Store selection (opened by the server).
    pub store: StoreConfig,
    /// Where the durable records live (opened by the server).
    pub records: records::RecordsSettings,
    /// Resolved Redis URL, when the store is Redis (`mode = "single"`).
    pub redis_url: Option<String>,
    /// Resolved password of the Redis nodes (`mode = "sentinel"` or `"cluster"`).
    pub redis_password: Option<String>,
    /// Resolved password of the sentinels (`mode = "sentinel"`).
    pub redis_sentinel_password: Option<String>,
    /// Signing keys.
    pub keys: KeySet,
    /// Secret of pairwise subjects.
    pub pairwise_secret: Vec<u8>,
    /// The keyed hash of per-client `sid`s, derived from `pairwise_secret` once per
    /// configuration (see `session::client_sid` and [`client_sid_key`]).
    pub client_sid_key: common::hash::KeyedHash,
    /// The keyed hash that ties a DPoP-bound family's refresh tokens to its key (see
    /// `oidc::grants::Mark`), made once per configuration.
    pub refresh_binding_key: common::hash::KeyedHash,
    /// The key of the forms' CSRF tokens (see `csrf`), made once per configuration.
    pub csrf_key: common::hash::KeyedHash,
    /// The key that seals citizen-ID numbers and subjects in the records (see
    /// `person::seal`), made once per configuration.
    pub seal_key: common::records_seal::SealKey,
    /// The sealer of values a login's form shows again (see `login::seal_value`), made
    /// once per configuration.
    pub form_sealer: common::seal::Sealer,
    /// Token lifetimes.
    pub tokens: TokenConfig,
    /// Session settings.
    pub session: SessionConfig,
    /// PKCE for confidential clients too.
    pub require_pkce: bool,
    /// Client addresses come from forwarding headers.
    pub trust_forwarded_for: bool,
    /// `acr` values.
    pub acr: AcrConfig,
    /// Identity sources, in the order of the choice page.
    pub connectors: Vec<ConnectorEntry>,
    /// Relying parties by `client_id`.
    pub clients: HashMap<String, Client>,
    /// Cookies get `Secure` and the `__Host-` prefix (issuer on https).
    pub secure_cookies: bool,
    /// How the configuration was loaded (kept for reloads).
    pub mode: Mode,
    /// Audit log file.
    pub audit_log: Option<PathBuf>,
    /// The population registry, when configured.
    pub registry: Option<Arc<dyn PopulationRegistry>>,
    /// SHA-256 of the admin API token; `None` keeps the admin API off.
    pub admin_token: Option<[u8; 32]>,
    /// SHA-256 of the bearer token `/metrics` asks for; `None` leaves it open.
    pub metrics_token: Option<[u8; 32]>,
    /// The operators' console; with it, connectors and clients are versioned in the records.
    pub console: Option<Console>,
    /// The configuration version of the records these connectors and clients come from
    /// (`None`: from the file alone).
    pub versioned: Option<Arc<::records::ConfigVersion>>,
}

/// The console's bootstrap settings.
pub struct Console {
    /// The assurance an operator's sign-in must reach.
    pub min_assurance: Assurance,
    /// Operators by the keyed hash of their citizen ID number.
    pub operators: Vec<Operator>,
}

/// One operator.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Their name (audit rows, the console's header).
    pub name: String,
    /// Keyed hash of their citizen ID number.
    pub id_hash: String,
    /// What they may do.
    pub role: Role,
}

impl Settings {
    /// The `acr` value of a level.
    pub fn acr_of(&self, level: Assurance) -> &str {
        match level {
            Assurance::Low => &self.acr.low,
            Assurance::Substantial => &self.acr.substantial,
            Assurance::High => &self.acr.high,
        }
    }

    /// The level of an `acr` value (the configured URI or the bare level name).
    pub fn level_of(&self, acr: &str) -> Option<Assurance> {
        Assurance::ALL
            .into_iter()
            .find(|l| self.acr_of(*l) == acr || l.as_str() == acr)
    }

    /// The connector with this id.
    pub fn connector(&self, id: &str) -> Option<&ConnectorEntry> {
        self.connectors.iter().find(|c| c.id == id)
    }

    /// The configuration version in force (0: the file's own connectors and clients).
    pub fn config_version(&self) -> u64 {
        self.versioned.as_ref().map_or(0, |v| v.version)
    }

    /// The highest level any enabled connector reaches.
    pub fn best_assurance(&self) -> Option<Assurance> {
        self.connectors
            .iter()
            .filter(|c| c.status == ConnectorStatus::Enabled)
            .map(|c| c.connector.assurance())
            .max()
    }
}

/// Reads and validates a configuration file.
pub fn load(path: &Path, mode: Mode) -> Result<Settings, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            file: path.display().to_string(),
            line: None,
            key: String::new(),
            reason: format!("cannot read: {e}"),
        }]
    })?;
    load_str(&text, path, mode)
}

/// Validates configuration text; `path` names the file in problems and anchors relative
/// paths.
pub fn load_str(text: &str, path: &Path, mode: Mode) -> Result<Settings, Vec<Problem>> {
    let mut v = Validator {
        file: path.display().to_string(),
        base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        problems: Vec::new(),
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        // A syntax error stops the parser: one problem, on one line, where it is.
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let mut p = v.problem("", format!("is not valid TOML: {}", e.message()));
        p.line = line;
        vec![p]
    })?;
    let raw: FileConfig = match serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
    {
        Ok(raw) => raw,
        // serde stops at the first problem: look at each section alone to report them all.
        Err(_) => return Err(located(shape_problems(&v, &table), &table, text)),
    };
    let settings = v.validate(raw, mode);
    match settings {
        Some(s) if v.problems.is_empty() => Ok(s),
        _ => Err(located(v.problems, &table, text)),
    }
}

/// Problems told in words, with their entries named by id and their line; one per key and
/// reason.
fn located(problems: Vec<Problem>, table: &toml::Table, text: &str) -> Vec<Problem> {
    let mut seen = HashSet::new();
    problems
        .into_iter()
        .map(|p| Problem {
            line: p.line.or_else(|| locate::line(text, &p.key)),
            reason: wording::in_words(&p.key, &p.reason),
            key: locate::named(&p.key, table),
            file: p.file,
        })
        .filter(|p| seen.insert((p.key.clone(), p.reason.clone())))
        .collect()
}

/// The top-level keys of a configuration file.
const TOP_LEVEL_KEYS: [&str; 19] = [
    "records",
    "console",
    "issuer",
    "listen",
    "audit_log",
    "require_pkce",
    "allow_test_citizens",
    "trust_forwarded_for",
    "pairwise_secret",
    "store",
    "tokens",
    "session",
    "acr",
    "admin",
    "metrics",
    "registry",
    "keys",
    "connectors",
    "clients",
];

/// Every problem of shape (unknown key, wrong type, missing key), section by section, so
/// one mistake does not hide the next.
fn shape_problems(v: &Validator, table: &toml::Table) -> Vec<Problem> {
    fn check<T: serde::de::DeserializeOwned>(
        v: &Validator,
        key: &str,
        value: &toml::Value,
        out: &mut Vec<Problem>,
    ) {
        // serde stops at the first problem of a value: take the faulty key out and try
        // again, so every problem of the entry is reported.
        let mut value = value.clone();
        let mut removed: Vec<String> = Vec::new();
        for _ in 0..32 {
            let Err(e) = serde_path_to_error::deserialize::<_, T>(value.clone()) else {
                return;
            };
            let segments: Vec<serde_path_to_error::Segment> = e.path().iter().cloned().collect();
            let inner = e.path().to_string();
            let path = if inner == "." || inner.is_empty() {
                key.to_string()
            } else if inner.starts_with('[') {
                format!("{key}{inner}")
            } else {
                format!("{key}.{inner}")
            };
            let reason = e.into_inner().to_string();
            // A key taken out because it was wrong is not also "missing".
            let missing_removed = reason
                .strip_prefix("missing field `")
                .and_then(|r| r.strip_suffix('`'))
                .is_some_and(|f| removed.iter().any(|r| r == &format!("{path}.{f}")));
            if missing_removed {
                return;
            }
            out.push(v.problem(&path, reason));
            if !remove_at(&mut value, &segments) {
                return;
            }
            removed.push(path);
        }
    }

    /// Takes the key at `segments` out of `value`; false when it cannot (a list element,
    /// or nothing there).
    fn remove_at(value: &mut toml::Value, segments: &[serde_path_to_error::Segment]) -> bool {
        use serde_path_to_error::Segment;
        let Some((last, parents)) = segments.split_last() else {
            return false;
        };
        let mut here = value;
        for s in parents {
            here = match s {
                Segment::Map { key } => match here.get_mut(key.as_str()) {
                    Some(v) => v,
                    None => return false,
                },
                Segment::Seq { index } => match here.get_mut(*index) {
                    Some(v) => v,
                    None => return false,
                },
                _ => return false,
            };
        }
        match (last, here.as_table_mut()) {
            (Segment::Map { key }, Some(t)) => t.remove(key.as_str()).is_some(),
            _ => false,
        }
    }
    fn each<T: serde::de::DeserializeOwned>(
        v: &Validator,
        key: &str,
        value: &toml::Value,
        out: &mut Vec<Problem>,
    ) {
        match value.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check::<T>(v, &format!("{key}[{i}]"), item, out);
                }
            }
            None => out.push(v.problem(key, "must be a list of tables ([[...]])")),
        }
    }
    let mut out = Vec::new();
    for (key, value) in table {
        match key.as_str() {
            "issuer" | "listen" | "audit_log" => check::<String>(v, key, value, &mut out),
            "require_pkce" | "allow_test_citizens" | "trust_forwarded_for" => {
                check::<bool>(v, key, value, &mut out)
            }
            "pairwise_secret" => check::<SecretRef>(v, key, value, &mut out),
            "store" => check::<StoreConfig>(v, key, value, &mut out),
            "records" => check::<records::RecordsConfig>(v, key, value, &mut out),
            "tokens" => check::<TokenConfig>(v, key, value, &mut out),
            "session" => check::<SessionConfig>(v, key, value, &mut out),
            "acr" => check::<AcrConfig>(v, key, value, &mut out),
            "admin" => check::<file::AdminConfig>(v, key, value, &mut out),
            "metrics" => check::<file::MetricsConfig>(v, key, value, &mut out),
            "console" => check::<file::ConsoleConfig>(v, key, value, &mut out),
            "registry" => check::<file::RegistryConfig>(v, key, value, &mut out),
            "keys" => each::<file::KeyConfig>(v, key, value, &mut out),
            "connectors" => each::<file::ConnectorConfig>(v, key, value, &mut out),
            "clients" => each::<file::ClientConfig>(v, key, value, &mut out),
            other => {
                let known: Vec<String> = TOP_LEVEL_KEYS.map(String::from).into();
                let reason = match wording::suggest(other, &known) {
                    Some(best) => format!("unknown key `{other}` (did you mean `{best}`?)"),
                    None => format!("unknown key `{other}`"),
                };
                out.push(v.problem(other, reason))
            }
        }
    }
    for required in ["issuer", "keys", "pairwise_secret"] {
        if !table.contains_key(required) {
            out.push(v.problem(required, "is missing"));
        }
    }
    if out.is_empty() {
        out.push(v.problem("", "the configuration does not have the expected shape"));
    }
    out
}

struct Validator {
    file: String,
    base: PathBuf,
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&self, key: &str, reason: impl Into<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            line: None,
            key: key.to_string(),
            reason: reason.into().trim_end().to_string(),
        }
    }

    fn report(&mut self, key: &str, reason: impl Into<String>) {
        let p = self.problem(key, reason);
        self.problems.push(p);
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        common::secret::resolve_path(&self.base, p)
    }

    fn secret(&mut self, key: &str, r: &SecretRef) -> Option<Vec<u8>> {
        let source = match r {
            SecretRef::Env { env } => SecretSource::Env(env.clone()),
            SecretRef::File { file } => SecretSource::File(file.clone()),
            SecretRef::Sha256 { .. } => {
                self.report(key, "a digest is only accepted for client secrets");
                return None;
            }
        };
        source
            .read(&self.base)
            .map_err(|reason| self.report(key, reason))
            .ok()
    }

    fn validate(&mut self, raw: FileConfig, mode: Mode) -> Option<Settings> {
        let issuer = raw.issuer.trim_end_matches('/').to_string();
        let secure_cookies = match url::Url::parse(&issuer) {
            Ok(u) if u.scheme() == "https" => u.query().is_none() && u.fragment().is_none(),
            Ok(u) if u.scheme() == "http" && is_loopback(&u) => false,
            Ok(_) => {
                self.report(
                    "issuer",
                    "must be an https URL (plain http only on localhost)",
                );
                false
            }
            Err(e) => {
                self.report("issuer", format!("is not a URL: {e}"));
                false
            }
        };

        // Keys.
        let mut keys = Vec::new();
        let mut kids = HashSet::new();
        for (i, k) in raw.keys.iter().enumerate() {
            if !kids.insert(k.kid.clone()) {
                self.report(
                    &format!("keys[{i}].kid"),
                    format!("`{}` is used twice", k.kid),
                );
            }
            match SigningKey::from_pem_file(&k.kid, k.alg, &self.resolve_path(&k.file)) {
                Ok(key) => keys.push(key),
                Err(e) => self.report(&format!("keys[{i}].file"), e.to_string()),
            }
        }
        let keys = KeySet::new(keys);
        let algs = keys.algorithms();
        if !raw.keys.iter().any(|k| k.alg == SigningAlg::RS256) {
            self.report("keys", "needs an RS256 key (mandatory for OpenID Connect)");
        }
        if !raw
            .keys
            .iter()
            .any(|k| k.alg == raw.tokens.access_token_alg)
        {
            self.report(
                "tokens.access_token_alg",
                format!(
                    "no key in `keys` has algorithm {}",
                    raw.tokens.access_token_alg.as_str()
                ),
            );
        }

        let pairwise_secret = self.secret("pairwise_secret", &raw.pairwise_secret);
        if let Some(s) = &pairwise_secret {
            if s.len() < 32 {
                self.report("pairwise_secret", "must be at least 32 bytes long");
            }
        }

        let redis_url = match &raw.store {
            StoreConfig::Redis { url, .. } => self
                .secret("store.url", url)
                .and_then(|u| String::from_utf8(u).ok()),
            _ => None,
        };
        let (redis_password, redis_sentinel_password) = self.redis_topology(&raw.store);
        let records = self.records(&raw.records);

        for (key, value) in [
            ("tokens.code_ttl", raw.tokens.code_ttl),
            ("tokens.access_token_ttl", raw.tokens.access_token_ttl),
            ("tokens.id_token_ttl", raw.tokens.id_token_ttl),
            ("tokens.refresh_token_ttl", raw.tokens.refresh_token_ttl),
            ("session.lifetime", raw.session.lifetime),
            ("session.idle_timeout", raw.session.idle_timeout),
            ("session.login_timeout", raw.session.login_timeout),
        ] {
            if value == 0 {
                self.report(key, "must be more than 0 seconds");
            }
        }
        if raw.tokens.code_ttl > 600 {
            self.report(
                "tokens.code_ttl",
                "must be at most 600 seconds (RFC 6749 4.1.2)",
            );
        }

        let admin_token = raw.admin.as_ref().and_then(|a| {
            let token = self.secret("admin.token", &a.token)?;
            if token.len() < 32 {
                self.report("admin.token", "must be at least 32 bytes long");
            }
            Some(Sha256::digest(&token).into())
        });
        let metrics_token = raw
            .metrics
            .as_ref()
            .and_then(|m| m.token.as_ref())
            .and_then(|t| {
                let token = self.secret("metrics.token", t)?;
                if token.len() < 16 {
                    self.report("metrics.token", "must be at least 16 bytes long");
                }
                Some(Sha256::digest(&token).into())
            });
        let audit_log = raw.audit_log.as_deref().map(|p| self.resolve_path(p));
        let registry = raw.registry.as_ref().and_then(|r| {
            match connectors::population_registry::HttpRegistry::open(&r.url, r.timeout_ms) {
                Ok(h) => Some(Arc::new(h) as Arc<dyn PopulationRegistry>),
                Err(problems) => {
                    for (k, reason) in problems {
                        self.report(&format!("registry.{k}"), reason);
                    }
                    None
                }
            }
        });

        let connectors = self.connectors(&raw, mode);
        let mut clients = self.clients(&raw, &algs, &connectors);
        if let Some(i) = raw.clients.iter().position(|c| c.id == ACCOUNT_CLIENT_ID) {
            self.report(
                &format!("clients[{i}].id"),
                format!(
                    "`{ACCOUNT_CLIENT_ID}` is the broker's own account page: choose another id"
                ),
            );
        }
        let own_alg = algs
            .iter()
            .find(|a| **a == SigningAlg::ES256)
            .or(algs.first());
        if let Some(alg) = own_alg {
            clients.insert(ACCOUNT_CLIENT_ID.to_string(), account_client(&issuer, *alg));
        }
        if let Some(i) = raw.clients.iter().position(|c| c.id == CONSOLE_CLIENT_ID) {
            self.report(
                &format!("clients[{i}].id"),
                format!("`{CONSOLE_CLIENT_ID}` is the broker's own console: choose another id"),
            );
        }
        let console = raw
            .console
            .as_ref()
            .map(|c| self.console(c, pairwise_secret.as_deref()));
        if let (Some(c), Some(alg)) = (&console, own_alg) {
            clients.insert(
                CONSOLE_CLIENT_ID.to_string(),
                console_client(&issuer, *alg, c.min_assurance),
            );
        }

        Some(Settings {
            source: self
                .base
                .join(Path::new(&self.file).file_name().unwrap_or_default()),
            issuer,
            file_listen: raw.listen.clone(),
            listen: raw.listen,
            store: raw.store,
            records,
            redis_url,
            redis_password,
            redis_sentinel_password,
            keys,
            client_sid_key: client_sid_key(pairwise_secret.as_deref().unwrap_or_default()),
            refresh_binding_key: derived_key(
                pairwise_secret.as_deref().unwrap_or_default(),
                b"refresh token binding key",
            ),
            csrf_key: derived_key(pairwise_secret.as_deref().unwrap_or_default(), b"csrf key"),
            seal_key: common::records_seal::SealKey::new(
                pairwise_secret.as_deref().unwrap_or_default(),
            ),
            form_sealer: common::seal::Sealer::derive(
                &common::hash::KeyedHash::new(pairwise_secret.as_deref().unwrap_or_default()),
                "login form values",
            ),
            pairwise_secret: pairwise_secret.unwrap_or_default(),
            tokens: raw.tokens,
            session: raw.session,
            require_pkce: raw.require_pkce,
            trust_forwarded_for: raw.trust_forwarded_for,
            acr: raw.acr,
            connectors,
            clients,
            secure_cookies,
            mode,
            audit_log,
            registry,
            admin_token,
            metrics_token,
            console,
            versioned: None,
        })
    }

    /// The console's settings; operators' numbers are hashed at once.
    fn console(&mut self, raw: &file::ConsoleConfig, secret: Option<&[u8]>) -> Console {
        let mut operators = Vec::new();
        for (i, o) in raw.operators.iter().enumerate() {
            if o.name.trim().is_empty() {
                self.report(&format!("console.operators[{i}].name"), "must not be empty");
            }
            if !connectors::plausible_id(o.citizen_id.trim()) {
                self.report(
                    &format!("console.operators[{i}].citizen_id"),
                    "is not a citizen ID number (9 to 18 digits, the last may be X)",
                );
                continue;
            }
            if let Some(secret) = secret {
                operators.push(Operator {
                    name: o.name.trim().to_string(),
                    // The key of the number's binding (`person::id_hash`), so a sign-in is
                    // matched against it without the number.
                    id_hash: common::hash::pairwise_b64(
                        secret,
                        &[b"cid", connectors::normalise_id(&o.citizen_id).as_bytes()],
                    ),
                    role: o.role,
                });
            }
        }
        if raw.min_assurance < Assurance::Substantial {
            self.report(
                "console.min_assurance",
                "must be `substantial` or `high`: a console reached with a password alone is one stolen password away from every platform",
            );
        }
        Console {
            min_assurance: raw.min_assurance,
            operators,
        }
    }

    /// Checks the addresses of Redis Sentinel and Cluster stores and resolves their
    /// passwords: (nodes, sentinels).
    fn redis_topology(&mut self, store: &StoreConfig) -> (Option<String>, Option<String>) {
        let (nodes_key, nodes, password, sentinel_password) = match store {
            StoreConfig::RedisSentinel {
                sentinels,
                master_name,
                username,
                password,
                sentinel_password,
                db,
                ..
            } => {
                if master_name.trim().is_empty() {
                    self.report(
                        "store.master_name",
                        "is required with `mode = \"sentinel\"` (the name the sentinels monitor)",
                    );
                }
                if *db < 0 {
                    self.report("store.db", "must be 0 or more");
                }
                if username.as_deref() == Some("") {
                    self.report("store.username", "must not be empty");
                }
                ("sentinels", sentinels, password, sentinel_password.as_ref())
            }
            StoreConfig::RedisCluster {
                nodes,
                username,
                password,
                prefix,
                ..
            } => {
                if prefix.contains(['{', '}']) {
                    self.report(
                        "store.prefix",
                        "must not contain `{` or `}` with `mode = \"cluster\"`: keys used together must share the `{hash-tag}` the broker gives them",
                    );
                }
                if username.as_deref() == Some("") {
                    self.report("store.username", "must not be empty");
                }
                ("nodes", nodes, password, None)
            }
            StoreConfig::Embedded { .. } | StoreConfig::Redis { .. } => return (None, None),
        };
        let sentinel = nodes_key == "sentinels";
        if nodes.is_empty() {
            let example = if sentinel {
                "redis://host:26379"
            } else {
                "redis://host:6379"
            };
            self.report(
                &format!("store.{nodes_key}"),
                format!("needs at least one address (`{example}`)"),
            );
        }
        for (i, address) in nodes.iter().enumerate() {
            if let Err(reason) = check_redis_address(address, sentinel) {
                self.report(&format!("store.{nodes_key}[{i}]"), reason);
            }
        }
        let text_secret = |v: &mut Validator, key: &str, r: Option<&SecretRef>| {
            let bytes = v.secret(key, r?)?;
            match String::from_utf8(bytes) {
                Ok(s) => Some(s),
                Err(_) => {
                    v.report(key, "must be UTF-8 text");
                    None
                }
            }
        };
        let password = text_secret(self, "store.password", password.as_ref());
        let sentinel_password = text_secret(self, "store.sentinel_password", sentinel_password);
        (password, sentinel_password)
    }

    fn connectors(&mut self, raw: &FileConfig, mode: Mode) -> Vec<ConnectorEntry> {
        let mut out = Vec::new();
        let mut ids = HashSet::new();
        for (i, c) in raw.connectors.iter().enumerate() {
            let key = format!("connectors[{i}]");
            if !ids.insert(c.id.clone()) {
                self.report(&format!("{key}.id"), format!("`{}` is used twice", c.id));
            }
            if c.id.is_empty()
                || !c
                    .id
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                self.report(
                    &format!("{key}.id"),
                    "use letters, digits, `-` and `_` only",
                );
            }
            if !c.name.contains_key("en") {
                self.report(
                    &format!("{key}.name"),
                    "needs at least an English (`en`) name",
                );
            }
            if c.status == ConnectorStatus::Maintenance && c.maintenance_message.is_empty() {
                self.report(
                    &format!("{key}.maintenance_message"),
                    "a connector in maintenance needs a message for citizens",
                );
            }
            if catalogue::demo_only_type(&c.kind)
                && mode == Mode::Serve
                && !raw.allow_test_citizens
                && c.status != ConnectorStatus::Disabled
            {
                self.report(
                    &format!("{key}.type"),
                    "`test-citizens` is for demos and tests; set `allow_test_citizens = true` to use it in `serve`",
                );
            }
            if let Some((k, reason)) = catalogue::demo_only(&c.kind, &c.settings) {
                if mode == Mode::Serve
                    && !raw.allow_test_citizens
                    && c.status != ConnectorStatus::Disabled
                {
                    self.report(&format!("{key}.settings.{k}"), reason);
                }
            }
            let mut logos = BTreeMap::new();
            for (lang, file) in &c.logo {
                let logo_key = format!("{key}.logo.{lang}");
                if !crate::i18n::LANGUAGES.contains(&lang.as_str()) {
                    self.report(
                        &logo_key,
                        format!(
                            "unknown language (known: {})",
                            crate::i18n::LANGUAGES.join(", ")
                        ),
                    );
                    continue;
                }
                match assets::load_logo(&self.resolve_path(file)) {
                    Ok(logo) => {
                        logos.insert(lang.clone(), logo);
                    }
                    Err(reason) => self.report(&logo_key, reason),
                }
            }
            match catalogue::open(&c.kind, &c.settings, &self.base) {
                Ok(connector) => out.push(ConnectorEntry {
                    id: c.id.clone(),
                    kind: c.kind.clone(),
                    name: c.name.clone(),
                    status: c.status,
                    maintenance_message: c.maintenance_message.clone(),
                    logos,
                    connector,
                }),
                Err(catalogue::OpenError::UnknownType) => self.report(
                    &format!("{key}.type"),
                    format!(
                        "unknown connector type `{}` (known: {})",
                        c.kind,
                        catalogue::TYPES.join(", ")
                    ),
                ),
                Err(catalogue::OpenError::Settings(problems)) => {
                    for (k, reason) in problems {
                        let path = if k.is_empty() || k == "." {
                            format!("{key}.settings")
                        } else {
                            format!("{key}.settings.{k}")
                        };
                        self.report(&path, reason);
                    }
                }
            }
        }
        out
    }

    fn clients(
        &mut self,
        raw: &FileConfig,
        algs: &[SigningAlg],
        connectors: &[ConnectorEntry],
    ) -> HashMap<String, Client> {
        let best = connectors
            .iter()
            .filter(|c| c.status != ConnectorStatus::Disabled)
            .map(|c| c.connector.assurance())
            .max();
        let mut out = HashMap::new();
        for (i, c) in raw.clients.iter().enumerate() {
            let key = format!("clients[{i}]");
            if c.id.is_empty() {
                self.report(&format!("{key}.id"), "is empty");
            }
            if out.contains_key(&c.id) {
                self.report(&format!("{key}.id"), format!("`{}` is used twice", c.id));
            }
            if c.redirect_uris.is_empty() {
                self.report(&format!("{key}.redirect_uris"), "lists no redirect URI");
            }
            let mut hosts = HashSet::new();
            for (j, uri) in c.redirect_uris.iter().enumerate() {
                match check_redirect_uri(uri) {
                    Ok(host) => {
                        hosts.insert(host);
                    }
                    Err(reason) => self.report(&format!("{key}.redirect_uris[{j}]"), reason),
                }
            }
            for (name, uri) in [
                ("backchannel_logout_uri", &c.backchannel_logout_uri),
                ("frontchannel_logout_uri", &c.frontchannel_logout_uri),
                ("home_url", &c.home_url),
            ] {
                if let Some(Err(reason)) = uri.as_deref().map(check_redirect_uri) {
                    self.report(&format!("{key}.{name}"), reason);
                }
            }
            for (j, uri) in c.post_logout_redirect_uris.iter().enumerate() {
                if let Err(reason) = check_redirect_uri(uri) {
                    self.report(&format!("{key}.post_logout_redirect_uris[{j}]"), reason);
                }
            }
            for (j, s) in c.scopes.iter().enumerate() {
                if !SCOPES.iter().any(|(name, _)| name == s) {
                    self.report(
                        &format!("{key}.scopes[{j}]"),
                        format!("unknown scope `{s}`"),
                    );
                }
            }
            if !c.scopes.iter().any(|s| s == "openid") {
                self.report(&format!("{key}.scopes"), "must include `openid`");
            }
            // A key that could not be read is reported once, at its file, not again here.
            let unreadable = raw
                .keys
                .iter()
                .any(|k| k.alg == c.id_token_signed_response_alg);
            if !algs.contains(&c.id_token_signed_response_alg) && !unreadable {
                self.report(
                    &format!("{key}.id_token_signed_response_alg"),
                    format!(
                        "no key in `keys` has algorithm {}",
                        c.id_token_signed_response_alg.as_str()
                    ),
                );
            }
            for (name, alg) in [
                (
                    "userinfo_signed_response_alg",
                    c.userinfo_signed_response_alg,
                ),
                (
                    "introspection_signed_response_alg",
                    c.introspection_signed_response_alg,
                ),
            ] {
                if let Some(alg) = alg.filter(|a| !algs.contains(a)) {
                    self.report(
                        &format!("{key}.{name}"),
                        format!("no key in `keys` has algorithm {}", alg.as_str()),
                    );
                }
            }
            match best {
                Some(best) if c.min_assurance > best => self.report(
                    &format!("{key}.min_assurance"),
                    format!(
                        "no enabled connector reaches `{}` (the best is `{best}`)",
                        c.min_assurance
                    ),
                ),
                Some(_) => {}
                // Enabled connectors that failed their own checks are reported there.
                None if raw.connectors.iter().any(|c| c.status != ConnectorStatus::Disabled) => {}
                None => self.report(
                    &format!("{key}.min_assurance"),
                    format!(
                        "no enabled connector reaches `{}`: no connector is enabled, so no citizen can sign in",
                        c.min_assurance
                    ),
                ),
            }
            let profile = self.client_profile(&key, c);
            let auth = self.client_auth(&key, c);
            let sector = match &c.sector_identifier {
                Some(s) => s.clone(),
                None if hosts.len() <= 1 => hosts.into_iter().next().unwrap_or_default(),
                None => {
                    self.report(
                        &format!("{key}.sector_identifier"),
                        "redirect URIs are on several hosts: name the sector of pairwise subjects",
                    );
                    String::new()
                }
            };
            let Some(auth) = auth else { continue };
            out.insert(
                c.id.clone(),
                Client {
                    id: c.id.clone(),
                    names: c.name.texts(),
                    name: {
                        let names = c.name.texts();
                        names
                            .get("en")
                            .or_else(|| names.values().next())
                            .cloned()
                            .unwrap_or_default()
                    },
                    redirect_uris: c.redirect_uris.clone(),
                    post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
                    home_url: c.home_url.clone().unwrap_or_else(|| {
                        c.redirect_uris
                            .first()
                            .and_then(|u| url::Url::parse(u).ok())
                            .map(|u| format!("{}/", u.origin().ascii_serialization()))
                            .unwrap_or_default()
                    }),
                    auth,
                    scopes: c.scopes.iter().cloned().collect(),
                    subject_type: c.subject_type,
                    sector,
                    id_token_alg: c.id_token_signed_response_alg,
                    min_assurance: c.min_assurance,
                    require_consent: c.require_consent,
                    require_par: c
                        .require_pushed_authorization_requests
                        .unwrap_or(profile.is_some()),
                    require_citizen_id: c.require_citizen_id,
                    backchannel_logout_uri: c.backchannel_logout_uri.clone(),
                    frontchannel_logout_uri: c.frontchannel_logout_uri.clone(),
                    dpop_bound_access_tokens: c.dpop_bound_access_tokens || profile.is_some(),
                    require_dpop_nonce: c.require_dpop_nonce || profile.is_some(),
                    profile,
                    rotate_refresh_tokens: c.rotate_refresh_tokens.unwrap_or(profile.is_none()),
                    require_signed_request_object: c
                        .require_signed_request_object
                        .unwrap_or(profile.is_some_and(FapiProfile::message_signing)),
                    userinfo_alg: c.userinfo_signed_response_alg,
                    introspection_alg: c
                        .introspection_signed_response_alg
                        .unwrap_or(c.id_token_signed_response_alg),
                    authorization_alg: c
                        .authorization_signed_response_alg
                        .unwrap_or(c.id_token_signed_response_alg),
                },
            );
        }
        out
    }

    /// The client's FAPI profile, with every contradiction of its registration reported.
    fn client_profile(&mut self, key: &str, c: &file::ClientConfig) -> Option<FapiProfile> {
        let name = c.profile.as_deref()?;
        let Some(profile) = FapiProfile::parse(name) else {
            self.report(
                &format!("{key}.profile"),
                format!("unknown profile `{name}` (use fapi2-security or fapi2-message-signing)"),
            );
            return None;
        };
        let key_algs: Vec<Option<Algorithm>> = c
            .jwks
            .as_deref()
            .and_then(|text| serde_json::from_str::<JwkSet>(text).ok())
            .map(|set| {
                set.keys
                    .iter()
                    .map(|jwk| {
                        jwk.common
                            .key_algorithm
                            .and_then(|a| a.to_string().parse::<Algorithm>().ok())
                            .or(match &jwk.algorithm {
                                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => {
                                    Some(Algorithm::ES256)
                                }
                                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => {
                                    Some(Algorithm::EdDSA)
                                }
                                // An RSA key without `alg` would be used with RS256.
                                _ => None,
                            })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let registration = crate::protocol::fapi::Registration {
            auth_method: c.auth_method.as_str(),
            has_secret: c.secret.is_some(),
            key_algs: &key_algs,
            keys_by_uri: c.jwks_uri.is_some(),
            response_algs: &[
                (
                    "id_token_signed_response_alg",
                    c.id_token_signed_response_alg.as_str(),
                ),
                (
                    "userinfo_signed_response_alg",
                    c.userinfo_signed_response_alg
                        .unwrap_or(c.id_token_signed_response_alg)
                        .as_str(),
                ),
                (
                    "introspection_signed_response_alg",
                    c.introspection_signed_response_alg
                        .unwrap_or(c.id_token_signed_response_alg)
                        .as_str(),
                ),
                (
                    "authorization_signed_response_alg",
                    c.authorization_signed_response_alg
                        .unwrap_or(c.id_token_signed_response_alg)
                        .as_str(),
                ),
            ],
            require_par: c.require_pushed_authorization_requests,
            require_signed_request_object: c.require_signed_request_object,
        };
        for p in crate::protocol::fapi::registration_problems(profile, &registration) {
            self.report(&format!("{key}.{}", p.key), p.reason);
        }
        Some(profile)
    }

    fn client_auth(&mut self, key: &str, c: &file::ClientConfig) -> Option<ClientAuth> {
        if c.jwks_uri.is_some() && c.auth_method != AuthMethod::PrivateKeyJwt {
            self.report(
                &format!("{key}.jwks_uri"),
                format!(
                    "only a `private_key_jwt` client uses public keys, not `{}`: remove jwks_uri or change auth_method",
                    c.auth_method.as_str()
                ),
            );
        }
        let digest = |v: &mut Validator| -> Option<[u8; 32]> {
            match &c.secret {
                None => {
                    v.report(
                        &format!("{key}.secret"),
                        format!("`{}` needs a secret", c.auth_method.as_str()),
                    );
                    None
                }
                Some(SecretRef::Sha256 { sha256 }) => {
                    let bytes = hex_decode(sha256);
                    match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                        Some(d) => Some(d),
                        None => {
                            v.report(
                                &format!("{key}.secret.sha256"),
                                "must be 64 hexadecimal digits",
                            );
                            None
                        }
                    }
                }
                Some(r) => {
                    let s = v.secret(&format!("{key}.secret"), r)?;
                    if s.len() < 16 {
                        v.report(&format!("{key}.secret"), "must be at least 16 bytes long");
                    }
                    Some(Sha256::digest(&s).into())
                }
            }
        };
        match c.auth_method {
            AuthMethod::ClientSecretBasic => digest(self).map(ClientAuth::SecretBasic),
            AuthMethod::ClientSecretPost => digest(self).map(ClientAuth::SecretPost),
            AuthMethod::None => {
                if c.secret.is_some() {
                    self.report(
                        &format!("{key}.secret"),
                        "a public client (`none`) has no secret",
                    );
                }
                Some(ClientAuth::None)
            }
            AuthMethod::PrivateKeyJwt => {
                let keys = match (&c.jwks, &c.jwks_uri) {
                    (Some(_), Some(_)) => {
                        self.report(
                            &format!("{key}.jwks_uri"),
                            "give the client's keys once: either jwks or jwks_uri, not both",
                        );
                        return None;
                    }
                    (None, None) => {
                        self.report(
                            &format!("{key}.jwks"),
                            "`private_key_jwt` needs the client's JWKS (jwks) or where it publishes it (jwks_uri)",
                        );
                        return None;
                    }
                    (None, Some(uri)) => {
                        let mut problems = Vec::new();
                        let remote = crate::client_keys::RemoteJwks::open(
                            &c.id,
                            uri,
                            &format!("{key}.jwks_uri"),
                            &mut problems,
                        );
                        for (k, reason) in problems {
                            self.report(&k, reason);
                        }
                        ClientKeys::Remote(Box::new(remote?))
                    }
                    (Some(text), None) => ClientKeys::Inline(self.inline_jwks(key, text)?.into()),
                };
                Some(ClientAuth::PrivateKeyJwt(keys))
            }
        }
    }

    /// The keys of a client's `jwks`, each problem reported.
    fn inline_jwks(&mut self, key: &str, text: &str) -> Option<Vec<ClientKey>> {
        let set: JwkSet = match serde_json::from_str(text) {
            Ok(s) => s,
            Err(e) => {
                self.report(&format!("{key}.jwks"), format!("is not a JWKS: {e}"));
                return None;
            }
        };
        let mut keys = Vec::new();
        for (j, jwk) in set.keys.iter().enumerate() {
            match crate::client_keys::key_of_jwk(jwk) {
                Ok(k) => keys.push(k),
                Err(e) => self.report(&format!("{key}.jwks.keys[{j}]"), e),
            }
        }
        if keys.is_empty() {
            self.report(&format!("{key}.jwks"), "holds no usable public key");
            return None;
        }
        Some(keys)
    }
}

/// Checks a redirect URI (absolute, no fragment, https except on loopback) and returns its
/// host.
fn check_redirect_uri(uri: &str) -> Result<String, String> {
    let u = common::url_policy::check_url(uri)?;
    Ok(u.host_str().unwrap_or_default().to_string())
}

/// Checks the address of a Redis Cluster node or of a sentinel: `redis://host:port`,
/// without credentials (they come from `store.password`, from the environment or a file).
fn check_redis_address(address: &str, sentinel: bool) -> Result<(), String> {
    let example = if sentinel {
        "redis://host:26379"
    } else {
        "redis://host:6379"
    };
    let u = url::Url::parse(address)
        .map_err(|e| format!("`{address}` is not a URL like `{example}`: {e}"))?;
    // Checked first, and the address not quoted: it may hold a password.
    if !u.username().is_empty() || u.password().is_some() {
        let keys = if sentinel {
            "`store.username`, `store.password` (of the master) and `store.sentinel_password`"
        } else {
            "`store.username` and `store.password`"
        };
        return Err(format!(
            "must not carry credentials; use {keys} (from an environment variable or a file)"
        ));
    }
    match u.scheme() {
        "redis" => {}
        "rediss" => {
            return Err(format!(
                "`{address}`: TLS (`rediss://`) is not supported by this build"
            ))
        }
        s => return Err(format!("`{address}` has scheme `{s}`; use `{example}`")),
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{address}` names no host"));
    }
    if sentinel && u.port().is_none() {
        return Err(format!(
            "`{address}` needs the sentinel's port (usually 26379)"
        ));
    }
    if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
        let db = if sentinel {
            "the database is `store.db`"
        } else {
            "Redis Cluster has database 0 only"
        };
        return Err(format!("`{address}` must be `{example}` alone ({db})"));
    }
    Ok(())
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A small configuration for unit tests: an RS256 key, a pairwise secret, one test-citizens
/// connector at `substantial`, the confidential client `rp` (secret `rp-secret-0123456789`,
/// redirect URI `https://rp.example/cb`) and the public client `spa`; `extra` (top-level
/// keys) comes first.
#[cfg(test)]
pub fn for_tests(dir: &Path, extra: &str) -> Settings {
    let (_, pem) = SigningKey::generate("k", SigningAlg::RS256).expect("key");
    std::fs::write(dir.join("rs256.pem"), pem).expect("key file");
    std::fs::write(dir.join("pairwise.secret"), "p".repeat(48)).expect("secret file");
    std::fs::write(dir.join("rp.secret"), "rp-secret-0123456789").expect("client secret");
    let text = format!(
        "{extra}issuer = \"http://localhost:8080\"\n\
         pairwise_secret = {{ file = \"pairwise.secret\" }}\n\
         [[keys]]\nkid = \"k\"\nalg = \"RS256\"\nfile = \"rs256.pem\"\n\
         [tokens]\naccess_token_alg = \"RS256\"\n\
         [store]\nkind = \"embedded\"\npath = \"s.redb\"\n\
         [[connectors]]\nid = \"tc\"\ntype = \"test-citizens\"\nname = {{ en = \"Test\" }}\n\
         [connectors.settings]\nassurance = \"substantial\"\n\
         [[connectors.settings.citizens]]\nusername = \"an\"\npassword = \"demo\"\n\
         [[clients]]\nid = \"rp\"\nname = \"RP\"\nredirect_uris = [\"https://rp.example/cb\"]\n\
         secret = {{ file = \"rp.secret\" }}\nscopes = [\"openid\", \"profile\", \"offline_access\"]\n\
         [[clients]]\nid = \"spa\"\nname = \"SPA\"\nredirect_uris = [\"https://spa.example/cb\"]\n\
         auth_method = \"none\"\nscopes = [\"openid\"]\n"
    );
    load_str(&text, &dir.join("broker.toml"), Mode::Demo)
        .unwrap_or_else(|p| panic!("test configuration loads: {p:#?}"))
}
