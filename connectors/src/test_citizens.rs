//! Test citizens listed in the configuration, for demos and tests.
//!
//! It goes through the same code path as every real source (a form step, then an
//! [`Identity`]), so the whole login works end to end before any real source is connected.
//! The broker refuses it in `serve` unless the operator enables it explicitly.

use std::collections::BTreeMap;
use std::time::Duration;

use common::hash::KeyedHash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::otp::{Guard, PerDimension};
use crate::{
    normalise_id, Assurance, CitizenId, ConnectorError, Context, Field, Form, Identity, Input,
    Message, Step, TypedConnector,
};

/// Configuration of the test-citizens connector.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The citizens who can log in.
    pub citizens: Vec<Citizen>,
    /// The assurance a login through this source reaches.
    #[serde(default = "default_assurance")]
    pub assurance: Assurance,
    /// Whether this source proves the citizen ID numbers it reports (an old portal that
    /// only stored what citizens typed does not).
    #[serde(default = "proven_by_default")]
    pub citizen_id_proven: bool,
    /// Authentication method reference of a login (`pwd`, `otp`, `face`, ...).
    #[serde(default = "default_amr")]
    pub amr: String,
    /// Most wrong passwords per account (`per_id`) and per address in a window; each is
    /// counted before its check, so parallel guesses get no more.
    #[serde(default = "default_throttle")]
    pub failed_logins: PerDimension,
    /// Throttling window, in seconds.
    #[serde(default = "default_window")]
    pub window_seconds: u64,
}

fn default_throttle() -> PerDimension {
    PerDimension {
        per_id: 5,
        per_phone: 0,
        per_address: 30,
    }
}

fn default_window() -> u64 {
    300
}

/// Prefix of this connector's counters in the shared state.
const KV: &str = "test-citizens";

fn proven_by_default() -> bool {
    true
}

fn default_amr() -> String {
    "pwd".into()
}

fn default_assurance() -> Assurance {
    Assurance::Substantial
}

/// One test citizen.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Citizen {
    /// Login name.
    pub username: String,
    /// Password (test data only, kept in clear in the configuration).
    pub password: String,
    /// Citizen ID number, if the citizen has one.
    #[serde(default)]
    pub citizen_id: Option<String>,
    /// OpenID Connect claims (`name`, `given_name`, `family_name`, `birthdate`, ...).
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for Citizen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Citizen")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The connector.
pub struct TestCitizens {
    config: Config,
    /// Keys the counters: derived from the configuration, so every broker instance with
    /// the same citizens counts in the same place (test data: no secret of its own).
    hasher: KeyedHash,
}

impl TestCitizens {
    /// Checks the configuration and builds the connector. Errors name the key at fault.
    pub fn open(config: Config) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        if config.citizens.is_empty() {
            problems.push(("citizens".into(), "lists no citizen".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in config.citizens.iter().enumerate() {
            if c.username.trim().is_empty() {
                problems.push((format!("citizens[{i}].username"), "is empty".into()));
            }
            if !seen.insert(c.username.as_str()) {
                problems.push((
                    format!("citizens[{i}].username"),
                    format!("`{}` is listed twice", c.username),
                ));
            }
            if c.password.is_empty() {
                problems.push((format!("citizens[{i}].password"), "is empty".into()));
            }
        }
        if config.failed_logins.per_phone != 0 {
            problems.push((
                "failed_logins.per_phone".into(),
                "test citizens have no phone: leave it 0".into(),
            ));
        }
        if config.window_seconds == 0 {
            problems.push(("window_seconds".into(), "must be more than 0".into()));
        }
        if problems.is_empty() {
            let mut key = Sha256::new();
            for c in &config.citizens {
                key.update((c.username.len() as u64).to_be_bytes());
                key.update(c.username.as_bytes());
                key.update((c.password.len() as u64).to_be_bytes());
                key.update(c.password.as_bytes());
            }
            let hasher = KeyedHash::new(&key.finalize());
            Ok(TestCitizens { config, hasher })
        } else {
            Err(problems)
        }
    }

    fn form(&self, username: &str, problem: Option<Message>) -> Step<()> {
        let mut user = Field::new("username", "field-username", "text", "username");
        user.value = username.to_string();
        Step::Form {
            form: Form {
                title: "test-citizens-title".into(),
                intro: Some("test-citizens-intro".into()),
                fields: vec![
                    user,
                    Field::new("password", "field-password", "password", "current-password"),
                ],
                submit: "button-log-in".into(),
                problem,
                notice: None,
                secondary: None,
            },
            state: (),
        }
    }

    fn find(&self, username: &str, password: &str) -> Option<&Citizen> {
        // Compare every password so the time taken does not tell which usernames exist.
        let mut found = None;
        for c in &self.config.citizens {
            let pw_ok: bool = c.password.as_bytes().ct_eq(password.as_bytes()).into();
            if pw_ok && c.username == username {
                found = Some(c);
            }
        }
        found
    }
}

#[async_trait::async_trait]
impl TypedConnector for TestCitizens {
    type State = ();

    fn assurance(&self) -> Assurance {
        self.config.assurance
    }

    async fn start(&self, ctx: &Context) -> Result<Step<()>, ConnectorError> {
        Ok(self.form(ctx.login_hint.as_deref().unwrap_or(""), None))
    }

    async fn resume(
        &self,
        ctx: &Context,
        _state: (),
        input: Input,
    ) -> Result<Step<()>, ConnectorError> {
        let Input::Form(fields) = input else {
            return Err(ConnectorError::InvalidState("expected a form".into()));
        };
        let username = fields.get("username").map(|s| s.trim()).unwrap_or("");
        let password = fields.get("password").map(String::as_str).unwrap_or("");
        let kv = ctx.kv.as_ref();
        let now = ctx.now.saturating_mul(1000);
        let kv_err = |e: crate::kv::KvError| ConnectorError::Unavailable(e.to_string());
        let guard = Guard::new(
            &self.hasher,
            KV,
            &[
                ("id", &username.to_lowercase()),
                ("address", &ctx.client_address),
            ],
        );
        let locked = || ConnectorError::Failed {
            message: Message::new("error-too-many-attempts"),
            detail: "failed-login throttling for this test citizen or address".into(),
        };
        if guard.locked(kv, now).await.map_err(kv_err)?.is_some() {
            return Err(locked());
        }
        // Counted before the check, atomically: parallel guesses get no more checks.
        let window = Duration::from_secs(self.config.window_seconds);
        let Ok(attempt) = guard
            .attempt(kv, "failed", self.config.failed_logins, window, now)
            .await
            .map_err(kv_err)?
        else {
            return Err(locked());
        };
        match self.find(username, password) {
            Some(c) => {
                attempt.succeeded(kv).await.map_err(kv_err)?;
                Ok(Step::Done(Identity {
                    subject: c.username.clone(),
                    citizen_id: c.citizen_id.as_deref().map(|v| CitizenId {
                        value: normalise_id(v),
                        proven: self.config.citizen_id_proven,
                    }),
                    claims: c.claims.clone(),
                    assurance: self.config.assurance,
                    amr: vec![self.config.amr.clone()],
                }))
            }
            None => Err(ConnectorError::retry(
                Message::new("error-wrong-password"),
                self.form(username, None),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector() -> TestCitizens {
        TestCitizens::open(Config {
            citizens: vec![Citizen {
                username: "an".into(),
                password: "pw".into(),
                citizen_id: Some("0792 0100 1234".into()),
                claims: BTreeMap::from([("name".into(), "Nguyễn Văn An".into())]),
            }],
            assurance: Assurance::Substantial,
            citizen_id_proven: true,
            amr: "pwd".into(),
            failed_logins: default_throttle(),
            window_seconds: 300,
        })
        .expect("valid config")
    }

    fn ctx() -> Context {
        Context {
            maintenance: Default::default(),
            callback_url: String::new(),
            state: String::new(),
            nonce: String::new(),
            languages: vec![],
            login_hint: None,
            min_assurance: Assurance::Low,
            now: 0,
            client_address: "127.0.0.1".into(),
            kv: std::sync::Arc::new(crate::kv::MemoryKv::default()),
        }
    }

    fn answer(u: &str, p: &str) -> Input {
        Input::Form(BTreeMap::from([
            ("username".into(), u.into()),
            ("password".into(), p.into()),
        ]))
    }

    #[tokio::test]
    async fn right_password_gives_identity() {
        let c = connector();
        let step = c
            .resume(&ctx(), (), answer("an", "pw"))
            .await
            .expect("login");
        let Step::Done(id) = step else {
            panic!("expected done")
        };
        assert_eq!(id.subject, "an");
        assert_eq!(
            id.citizen_id.map(|c| c.value).as_deref(),
            Some("079201001234")
        );
    }

    #[tokio::test]
    async fn wrong_password_asks_again() {
        let c = connector();
        let err = c
            .resume(&ctx(), (), answer("an", "nope"))
            .await
            .expect_err("must fail");
        assert!(
            matches!(err, ConnectorError::Retry { ref message, .. } if message.key == "error-wrong-password")
        );
    }

    #[test]
    fn duplicate_usernames_are_rejected_with_their_key() {
        let c = Citizen {
            username: "x".into(),
            password: "p".into(),
            citizen_id: None,
            claims: BTreeMap::new(),
        };
        let Err(problems) = TestCitizens::open(Config {
            citizens: vec![c.clone(), c],
            assurance: Assurance::Low,
            citizen_id_proven: true,
            amr: "pwd".into(),
            failed_logins: default_throttle(),
            window_seconds: 300,
        }) else {
            panic!("expected problems")
        };
        assert_eq!(problems[0].0, "citizens[1].username");
    }

    #[tokio::test]
    async fn parallel_wrong_passwords_get_no_more_checks_than_the_limit() {
        let c = std::sync::Arc::new(connector());
        let ctx = ctx();
        let attempts = (0..16).map(|i| {
            let c = c.clone();
            let mut ctx = ctx.clone();
            // Every guess from its own address: only the account limit (5) applies.
            ctx.client_address = format!("198.51.100.{i}");
            tokio::spawn(async move { c.resume(&ctx, (), answer("an", "guess")).await })
        });
        let mut checked = 0;
        let mut locked = 0;
        for a in attempts {
            match a.await.expect("task") {
                Err(ConnectorError::Retry { .. }) => checked += 1,
                Err(ConnectorError::Failed { message, .. })
                    if message.key == "error-too-many-attempts" =>
                {
                    locked += 1
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((checked, locked), (5, 11));
        // Locked: the right password does not get in either.
        let right = c.resume(&ctx, (), answer("an", "pw")).await;
        assert!(matches!(right, Err(ConnectorError::Failed { .. })));
    }

    #[tokio::test]
    async fn right_passwords_do_not_use_up_the_limit() {
        let c = connector();
        let ctx = ctx();
        for _ in 0..12 {
            let step = c.resume(&ctx, (), answer("an", "pw")).await;
            assert!(matches!(step, Ok(Step::Done(_))));
        }
        for _ in 0..4 {
            let wrong = c.resume(&ctx, (), answer("an", "x")).await;
            assert!(matches!(wrong, Err(ConnectorError::Retry { .. })));
        }
        let step = c.resume(&ctx, (), answer("an", "pw")).await;
        assert!(matches!(step, Ok(Step::Done(_))), "4 failures of 5 allowed");
    }
}
