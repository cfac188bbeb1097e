//! Accounts of an old portal during a transition period (the Shenzhen platform kept its old
//! ID-number login until an end date; Vietnam's portal moves its old accounts to VNeID).
//!
//! Passwords are checked either against hashes imported from the old system — PHC strings
//! of Argon2 (`$argon2id$…`) or bcrypt (`$2b$…`) — on a bounded pool of blocking threads,
//! never on the async executor, or through the old system's HTTP API. Logins are allowed
//! until `available_until`; after that the citizen is told which other way to use. Failed
//! logins are throttled per account and per client address. The assurance is `low`, and
//! the citizen ID number the old account recorded (what the citizen typed years ago) is
//! carried as *unproven*.
//!
//! Accounts API contract: `POST {url}/login` with `{"username", "password"}` answers
//! `200 {"result": "ok", "account": {"id", "name", "birthdate"?, "phone_number"?,
//! "citizen_id"?}}`, `200 {"result": "invalid"}` (unknown user or wrong password, never
//! told apart) or `200 {"result": "disabled"}`; 429, 5xx or a timeout: unavailable.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::otp::{minutes, Guard, PerDimension};
use crate::{
    normalise_id, Assurance, CitizenId, ConnectorError, Context, Field, Form, Health, Identity,
    Input, Message, Step, TypedConnector,
};
use common::hash::KeyedHash;
use common::http::{result_of, CallError, Endpoint, JsonClient};
use common::localized::pick;
use common::secret::{self, SecretSource};

const KV: &str = "legacy";

/// Configuration of the legacy-accounts connector.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Key of the keyed hashes of usernames and addresses in throttling counters.
    pub hash_key: SecretSource,
    /// Last day (UTC, `YYYY-MM-DD`) the old accounts can be used.
    pub available_until: String,
    /// What citizens should use instead, per language (e.g. "VNeID or a bank card").
    pub alternatives: BTreeMap<String, String>,
    /// Imported accounts (inline).
    #[serde(default)]
    pub accounts: Vec<Account>,
    /// Imported accounts in a JSON Lines file, one [`Account`] per line.
    #[serde(default)]
    pub accounts_file: Option<String>,
    /// The old system's accounts API, instead of imported hashes.
    #[serde(default)]
    pub api: Option<Endpoint>,
    /// Failed logins allowed per account and per address in `window_seconds`.
    #[serde(default = "default_throttle")]
    pub failed_logins: PerDimension,
    /// Throttling window, in seconds.
    #[serde(default = "default_window")]
    pub window_seconds: u64,
    /// Password checks run at once (each takes a blocking thread).
    #[serde(default = "default_parallel")]
    pub max_parallel_checks: usize,
}

fn default_throttle() -> PerDimension {
    PerDimension {
        per_id: 5,
        per_phone: 0,
        per_address: 20,
    }
}
fn default_window() -> u64 {
    900
}
fn default_parallel() -> usize {
    4
}

/// An imported account.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Login name (compared case-insensitively).
    pub username: String,
    /// PHC string: `$argon2id$…`, `$argon2i$…`, `$argon2d$…`, or bcrypt `$2a$`/`$2b$`/`$2y$`.
    pub password_hash: String,
    /// The citizen ID number the old account recorded, if any (not proven).
    #[serde(default)]
    pub citizen_id: Option<String>,
    /// Claims (`name`, `birthdate`, `phone_number`, …).
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

enum Backend {
    Hashes(Arc<BTreeMap<String, Account>>),
    Api(JsonClient),
}

/// The connector.
pub struct LegacyAccounts {
    config: Config,
    until: NaiveDate,
    backend: Backend,
    hasher: KeyedHash,
    pool: Arc<Semaphore>,
}

/// A hash that costs as much to check as a real one, for unknown usernames (so the time
/// taken does not tell which usernames exist). Argon2id of a random password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3xn0h1MJJxUp6gW7aBKnOJpTNq1c0M7E5k5vFAmxo2k";

/// Checks a password against a PHC (Argon2) or bcrypt hash. Blocking: call it on a
/// blocking thread.
pub fn verify_password(hash: &str, password: &str) -> bool {
    if hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

fn hash_format_ok(hash: &str) -> bool {
    if hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$") {
        return hash.len() == 60;
    }
    argon2::password_hash::PasswordHash::new(hash)
        .is_ok_and(|h| matches!(h.algorithm.as_str(), "argon2id" | "argon2i" | "argon2d"))
}

enum Checked {
    Ok(Identity),
    Invalid,
    Disabled,
}

impl LegacyAccounts {
    /// Checks the configuration, reads the accounts and builds the connector.
    pub fn open(config: Config, base_dir: &Path) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let key = secret::resolve(&config.hash_key, base_dir, "hash_key", &mut problems);
        if key.as_ref().is_some_and(|k| k.len() < 32) {
            problems.push(("hash_key".into(), "must be at least 32 bytes long".into()));
        }
        let until = match NaiveDate::parse_from_str(&config.available_until, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(e) => {
                problems.push((
                    "available_until".into(),
                    format!("must be a date YYYY-MM-DD: {e}"),
                ));
                None
            }
        };
        if !config.alternatives.contains_key("en") {
            problems.push((
                "alternatives".into(),
                "needs at least an English (`en`) text".into(),
            ));
        }
        if config.max_parallel_checks == 0 || config.max_parallel_checks > 64 {
            problems.push((
                "max_parallel_checks".into(),
                "must be between 1 and 64".into(),
            ));
        }
        if config.window_seconds == 0 {
            problems.push(("window_seconds".into(), "must be more than 0".into()));
        }
        if config.failed_logins.per_phone != 0 {
            problems.push((
                "failed_logins.per_phone".into(),
                "accounts have no phone: leave it 0".into(),
            ));
        }
        let has_hashes = !config.accounts.is_empty() || config.accounts_file.is_some();
        let backend = match (&config.api, has_hashes) {
            (Some(_), true) => {
                problems.push((
                    "api".into(),
                    "give either imported accounts (`accounts`, `accounts_file`) or `api`, not both".into(),
                ));
                None
            }
            (None, false) => {
                problems.push((
                    "accounts".into(),
                    "give imported accounts (`accounts`, `accounts_file`) or the old system's `api`".into(),
                ));
                None
            }
            (Some(api), false) => {
                JsonClient::open(api, base_dir, "api", &mut problems).map(Backend::Api)
            }
            (None, true) => {
                let mut all: Vec<(String, Account)> = config
                    .accounts
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (format!("accounts[{i}]"), a.clone()))
                    .collect();
                if let Some(file) = &config.accounts_file {
                    match std::fs::read_to_string(common::secret::resolve_path(base_dir, file)) {
                        Ok(text) => {
                            for (n, line) in text.lines().enumerate() {
                                if line.trim().is_empty() {
                                    continue;
                                }
                                match serde_json::from_str::<Account>(line) {
                                    Ok(a) => all.push((format!("accounts_file line {}", n + 1), a)),
                                    // The line holds a hash: only the position is reported.
                                    Err(e) => problems.push((
                                        "accounts_file".into(),
                                        format!(
                                            "line {}: not an account (column {})",
                                            n + 1,
                                            e.column()
                                        ),
                                    )),
                                }
                            }
                        }
                        Err(e) => problems
                            .push(("accounts_file".into(), format!("cannot read `{file}`: {e}"))),
                    }
                }
                let mut map = BTreeMap::new();
                for (at, a) in all {
                    let name = a.username.trim().to_lowercase();
                    if name.is_empty() {
                        problems.push((at.clone(), "has an empty username".into()));
                    }
                    if !hash_format_ok(&a.password_hash) {
                        problems.push((
                            at.clone(),
                            "password_hash must be an Argon2 PHC string or a bcrypt hash".into(),
                        ));
                    }
                    if map.insert(name.clone(), a).is_some() {
                        problems.push((at, format!("username `{name}` is listed twice")));
                    }
                }
                Some(Backend::Hashes(Arc::new(map)))
            }
        };
        match (key, until, backend) {
            (Some(key), Some(until), Some(backend)) if problems.is_empty() => Ok(LegacyAccounts {
                pool: Arc::new(Semaphore::new(config.max_parallel_checks)),
                config,
                until,
                backend,
                hasher: KeyedHash::new(&key),
            }),
            _ => Err(problems),
        }
    }

    fn ended(&self, ctx: &Context) -> bool {
        let today = chrono::DateTime::from_timestamp(i64::try_from(ctx.now).unwrap_or(i64::MAX), 0)
            .map(|t| t.date_naive());
        today.is_none_or(|d| d > self.until)
    }

    fn alternatives(&self, ctx: &Context) -> String {
        pick(&self.config.alternatives, ctx.language()).to_string()
    }

    fn form(&self, ctx: &Context, username: &str) -> Step<()> {
        let mut user = Field::new("username", "field-username", "text", "username");
        user.value = username.to_string();
        Step::Form {
            form: Form {
                title: "legacy-title".into(),
                intro: Some("legacy-intro".into()),
                fields: vec![
                    user,
                    Field::new("password", "field-password", "password", "current-password"),
                ],
                submit: "button-log-in".into(),
                problem: None,
                notice: Some(
                    Message::new("legacy-until")
                        .arg("date", &self.config.available_until)
                        .arg("alternatives", self.alternatives(ctx)),
                ),
                secondary: None,
            },
            state: (),
        }
    }

    fn ended_error(&self, ctx: &Context) -> ConnectorError {
        ConnectorError::Failed {
            message: Message::new("error-legacy-ended")
                .arg("date", &self.config.available_until)
                .arg("alternatives", self.alternatives(ctx)),
            detail: "the transition period of old portal accounts is over".into(),
        }
    }

    fn identity(
        &self,
        subject: &str,
        citizen_id: Option<&str>,
        claims: BTreeMap<String, serde_json::Value>,
    ) -> Identity {
        Identity {
            subject: subject.to_string(),
            citizen_id: citizen_id
                .map(normalise_id)
                .filter(|v| !v.is_empty())
                .map(|value| CitizenId {
                    value,
                    proven: false,
                }),
            claims,
            assurance: Assurance::Low,
            amr: vec!["pwd".into()],
        }
    }

    async fn check(&self, username: &str, password: &str) -> Result<Checked, ConnectorError> {
        match &self.backend {
            Backend::Hashes(accounts) => {
                let key = username.trim().to_lowercase();
                let account = accounts.get(&key).cloned();
                let hash = account
                    .as_ref()
                    .map(|a| a.password_hash.clone())
                    .unwrap_or_else(|| DUMMY_HASH.to_string());
                let password = password.to_string();
                // At most `max_parallel_checks` hashes at once, each on a blocking thread:
                // a burst of logins waits here instead of starving the executor.
                let permit = self.pool.clone().acquire_owned().await.map_err(|e| {
                    ConnectorError::Unavailable(format!("password pool closed: {e}"))
                })?;
                let ok = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    verify_password(&hash, &password)
                })
                .await
                .map_err(|e| ConnectorError::Unavailable(format!("password check failed: {e}")))?;
                Ok(match (ok, account) {
                    (true, Some(a)) => Checked::Ok(self.identity(
                        &format!("legacy:{key}"),
                        a.citizen_id.as_deref(),
                        a.claims.clone(),
                    )),
                    _ => Checked::Invalid,
                })
            }
            Backend::Api(client) => {
                let body = serde_json::json!({ "username": username.trim(), "password": password });
                let (status, v) = client.post("login", &body).await.map_err(|e| match e {
                    CallError::Outage(d) | CallError::Invalid(d) => {
                        ConnectorError::Unavailable(format!("old accounts API: {d}"))
                    }
                })?;
                match (status, result_of(&v)) {
                    (200, Some("ok")) => {
                        let account = &v["account"];
                        let Some(id) = account["id"].as_str().filter(|s| !s.is_empty()) else {
                            return Err(ConnectorError::Unavailable(
                                "old accounts API: account without id".into(),
                            ));
                        };
                        let mut claims = BTreeMap::new();
                        for k in ["name", "birthdate", "phone_number", "email"] {
                            if let Some(s) = account[k].as_str().filter(|s| !s.is_empty()) {
                                claims.insert(
                                    k.to_string(),
                                    serde_json::Value::String(s.to_string()),
                                );
                            }
                        }
                        Ok(Checked::Ok(self.identity(
                            &format!("legacy:{id}"),
                            account["citizen_id"].as_str(),
                            claims,
                        )))
                    }
                    (200, Some("invalid")) => Ok(Checked::Invalid),
                    (200, Some("disabled")) => Ok(Checked::Disabled),
                    (s, r) => Err(ConnectorError::Unavailable(format!(
                        "old accounts API: unexpected answer (status {s}, result {r:?})"
                    ))),
                }
            }
        }
    }
}

fn kv_err(e: crate::kv::KvError) -> ConnectorError {
    ConnectorError::Unavailable(e.to_string())
}

impl LegacyAccounts {
    /// Why the old system's API last failed to answer, recently (imported hashes never do).
    fn api_outage(&self) -> Option<String> {
        match &self.backend {
            Backend::Api(client) => client.recent_outage(),
            Backend::Hashes(_) => None,
        }
    }
}

#[async_trait::async_trait]
impl TypedConnector for LegacyAccounts {
    type State = ();

    fn assurance(&self) -> Assurance {
        Assurance::Low
    }

    fn recently_unavailable(&self) -> bool {
        self.api_outage().is_some()
    }

    /// Degraded for a few minutes after the old system's API failed to answer.
    async fn health(&self) -> Health {
        match self.api_outage() {
            Some(reason) => Health::Degraded { reason },
            None => Health::Up,
        }
    }

    async fn start(&self, ctx: &Context) -> Result<Step<()>, ConnectorError> {
        if self.ended(ctx) {
            return Err(self.ended_error(ctx));
        }
        Ok(self.form(ctx, ctx.login_hint.as_deref().unwrap_or("")))
    }

    async fn resume(
        &self,
        ctx: &Context,
        _state: (),
        input: Input,
    ) -> Result<Step<()>, ConnectorError> {
        if self.ended(ctx) {
            return Err(self.ended_error(ctx));
        }
        let Input::Form(fields) = input else {
            return Err(ConnectorError::InvalidState("expected a form".into()));
        };
        let username = fields.get("username").map(|s| s.trim()).unwrap_or("");
        let password = fields.get("password").map(String::as_str).unwrap_or("");
        let now = ctx.now.saturating_mul(1000);
        let kv = ctx.kv.as_ref();
        let account = username.to_lowercase();
        // The account is the "id" dimension of the guard.
        let guard = Guard::new(
            &self.hasher,
            KV,
            &[("id", &account), ("address", &ctx.client_address)],
        );
        let locked = |wait: Duration| ConnectorError::Failed {
            message: Message::new("error-legacy-locked")
                .arg("minutes", minutes(wait))
                .arg("alternatives", self.alternatives(ctx)),
            detail: "failed-login throttling for this account or address".into(),
        };
        if let Some(wait) = guard.locked(kv, now).await.map_err(kv_err)? {
            return Err(locked(wait));
        }
        if username.is_empty() || password.is_empty() {
            return Err(ConnectorError::retry(
                Message::new("error-wrong-password"),
                self.form(ctx, username),
            ));
        }
        // Counted before the check, atomically: parallel guesses never get more checks
        // than the limit.
        let window = Duration::from_secs(self.config.window_seconds);
        let attempt = match guard
            .attempt(kv, "failed", self.config.failed_logins, window, now)
            .await
            .map_err(kv_err)?
        {
            Ok(attempt) => attempt,
            Err(wait) => return Err(locked(wait)),
        };
        match self.check(username, password).await? {
            Checked::Ok(identity) => {
                attempt.succeeded(kv).await.map_err(kv_err)?;
                tracing::info!(account = %self.hasher.tag("id", &account), "old portal account signed in");
                Ok(Step::Done(identity))
            }
            // Still counted: the contract does not say the password was checked.
            Checked::Disabled => Err(ConnectorError::Failed {
                message: Message::new("error-legacy-disabled")
                    .arg("alternatives", self.alternatives(ctx)),
                detail: "the old portal account is disabled".into(),
            }),
            Checked::Invalid => Err(ConnectorError::retry(
                Message::new("error-wrong-password"),
                self.form(ctx, username),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_and_bcrypt_hashes_verify() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"a-fixed-test-salt").expect("salt");
        let argon = argon2::Argon2::default()
            .hash_password(b"secret-1", &salt)
            .expect("hash")
            .to_string();
        assert!(hash_format_ok(&argon));
        assert!(verify_password(&argon, "secret-1"));
        assert!(!verify_password(&argon, "secret-2"));
        let bc = bcrypt::hash("secret-1", 4).expect("bcrypt");
        assert!(hash_format_ok(&bc));
        assert!(verify_password(&bc, "secret-1"));
        assert!(!verify_password(&bc, "nope"));
        assert!(!hash_format_ok("plaintext"));
        assert!(hash_format_ok(DUMMY_HASH));
    }

    #[tokio::test]
    async fn parallel_wrong_passwords_get_no_more_checks_than_the_limit() {
        std::env::set_var(
            "LEGACY_UNIT_TEST_HASH_KEY",
            "hash-key-for-legacy-unit-tests-0123456789",
        );
        let hash = bcrypt::hash("right", 4).expect("bcrypt");
        let config: Config = toml::from_str(&format!(
            r#"
            hash_key = {{ env = "LEGACY_UNIT_TEST_HASH_KEY" }}
            available_until = "2099-12-31"
            alternatives = {{ en = "VNeID" }}
            failed_logins = {{ per_id = 5, per_phone = 0, per_address = 0 }}
            [[accounts]]
            username = "an"
            password_hash = "{hash}"
            "#
        ))
        .expect("config");
        let c = std::sync::Arc::new(LegacyAccounts::open(config, Path::new(".")).expect("opens"));
        let ctx = Context {
            callback_url: String::new(),
            state: String::new(),
            nonce: String::new(),
            languages: vec!["en".into()],
            login_hint: None,
            min_assurance: Assurance::Low,
            now: 1_000,
            client_address: "198.51.100.1".into(),
            kv: std::sync::Arc::new(crate::kv::MemoryKv::default()),
            maintenance: BTreeMap::new(),
        };
        let form = |p: &str| {
            Input::Form(BTreeMap::from([
                ("username".to_string(), "an".to_string()),
                ("password".to_string(), p.to_string()),
            ]))
        };
        let guesses: Vec<_> = (0..16)
            .map(|_| {
                let (c, ctx, input) = (c.clone(), ctx.clone(), form("guess"));
                tokio::spawn(async move { c.resume(&ctx, (), input).await })
            })
            .collect();
        let mut checked = 0;
        for g in guesses {
            match g.await.expect("task") {
                Err(ConnectorError::Retry { .. }) => checked += 1,
                Err(ConnectorError::Failed { message, .. }) => {
                    assert_eq!(message.key, "error-legacy-locked")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(checked, 5, "16 parallel guesses, a limit of 5 checks");
        let right = c.resume(&ctx, (), form("right")).await;
        assert!(
            matches!(right, Err(ConnectorError::Failed { .. })),
            "locked"
        );
    }
}
