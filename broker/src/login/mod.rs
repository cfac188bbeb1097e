//! The login flow: from an authorization request to a code, through the citizen's choice of
//! identity source and that connector's steps.
//!
//! A login transaction (`tx:{id}`) lives in the store, so a login started on one broker
//! instance completes on any other. It is bound to the browser that started it (a random
//! `broker_browser` cookie, SameSite=Lax) and every form carries its CSRF token.

mod answer;
mod complete;
pub mod steps;
mod stored;

pub use answer::{Action, Answer, Env, Failure, FailureKind, Outcome};

use std::time::Duration;

use connectors::{Assurance, Form, Message, StepState};
use serde::{Deserialize, Serialize};

use crate::protocol::{Prompt, Secret};

pub use complete::{consent_needed, issue_code_response, proceed, SessionPerson};

use crate::config::Client;
use crate::keyspace;
use crate::oidc::authorize::AuthRequest;
use crate::oidc::OAuthError;
use crate::session::Session;
use crate::util::{random_token, sha256_b64};

/// Where a login stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    tag = "stage",
    rename_all = "snake_case",
    try_from = "stored::StoredStage"
)]
pub enum Stage {
    /// Choosing an identity source.
    Choose,
    /// In a connector's steps.
    Step {
        /// Connector id.
        connector: String,
        /// The connector's state.
        state: StepState,
        /// What to show.
        view: View,
    },
    /// Authenticated; asking for consent.
    Consent,
    /// A session exists; asking whether to continue with it.
    SelectAccount,
    /// A stronger proof found a number bound to an older account through a weaker source:
    /// is that account the citizen's?
    Claim,
    /// Asking for a citizen ID number to check at the population registry.
    Link {
        /// What was wrong with the last answer.
        problem: Option<Message>,
        /// The name to show again (never the number), sealed ([`seal_value`]).
        name: String,
        /// The birth date to show again, sealed.
        birthdate: String,
        /// No registry check is left in this login: only "Skip" goes on.
        #[serde(default)]
        exhausted: bool,
    },
    /// Telling the citizen something before going on (a suspended binding).
    Notice {
        /// Message key.
        key: String,
    },
}

/// A strong identity waiting for the citizen to prove (or disown) an older account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingClaim {
    /// Connector of the strong identity.
    pub connector: String,
    /// The strong identity.
    pub identity: connectors::Identity,
    /// The older account's binding.
    pub weak: crate::person::Binding,
}

/// What a connector step shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    try_from = "stored::StoredView"
)]
pub enum View {
    /// A form.
    Form {
        /// The form.
        form: Form,
    },
    /// A waiting page.
    Wait {
        /// What to do.
        instruction: Message,
        /// QR code content.
        qr: Option<String>,
        /// App link.
        app_link: Option<String>,
        /// Seconds between polls.
        poll_seconds: u32,
    },
    /// Gone to an upstream page.
    Redirect,
}

/// A login transaction. Its `Debug` shows where the login stands, never the values the
/// citizen typed or the request's hints. Its forms carry a [`crate::csrf`] token.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginTx {
    /// Id (in URLs).
    pub id: String,
    /// Digest of the browser-binding cookie.
    pub browser: Secret,
    /// The authorization request.
    pub request: AuthRequest,
    /// Where the login stands.
    pub stage: Stage,
    /// Wrong answers so far.
    pub attempts: u32,
    /// A claim in progress.
    #[serde(default)]
    pub pending: Option<PendingClaim>,
    /// A notice to show once authenticated.
    #[serde(default)]
    pub notice: Option<String>,
    /// The citizen chose to link a citizen ID number later.
    #[serde(default)]
    pub link_skipped: bool,
}

impl std::fmt::Debug for LoginTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match &self.stage {
            Stage::Choose => "choose",
            Stage::Step { .. } => "step",
            Stage::Consent => "consent",
            Stage::SelectAccount => "select_account",
            Stage::Claim => "claim",
            Stage::Link { .. } => "link",
            Stage::Notice { .. } => "notice",
        };
        f.debug_struct("LoginTx")
            .field("id", &self.id)
            .field("client_id", &self.request.client_id)
            .field("stage", &stage)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// The key that seals what a form shows again (a name, an ID number, a phone typed before
/// an error) inside the stored login transaction: the store never holds them in clear.
/// Seals the values of `form`'s fields, bound to the transaction and the field.
pub fn seal_form_values(settings: &crate::config::Settings, tx_id: &str, form: &mut Form) {
    for f in form.fields.iter_mut() {
        f.value = seal_value(settings, tx_id, &f.name, &f.value);
    }
}

/// Seals one value to show again, bound to the transaction and the field; empty stays
/// empty, and a value that cannot be sealed is not shown again (the citizen types it anew).
pub fn seal_value(
    settings: &crate::config::Settings,
    tx_id: &str,
    field: &str,
    value: &str,
) -> String {
    if value.is_empty() {
        return String::new();
    }
    settings
        .form_sealer
        .seal(&format!("{tx_id}/{field}"), value.as_bytes())
        .unwrap_or_default()
}

/// The value a form shows again, opened; empty when it was not sealed for this field.
pub fn open_form_value(
    settings: &crate::config::Settings,
    tx_id: &str,
    field: &str,
    sealed: &str,
) -> String {
    if sealed.is_empty() {
        return String::new();
    }
    settings
        .form_sealer
        .open(&format!("{tx_id}/{field}"), sealed)
        .and_then(|v| String::from_utf8(v).ok())
        .unwrap_or_default()
}

/// Registry checks per hour from one address, of one account, and of one citizen ID
/// number: each check tells whether a number goes with a name and a birth date, so the
/// registry must not become an oracle.
const REGISTRY_CHECKS_PER_ADDRESS: u64 = 10;
const REGISTRY_CHECKS_PER_ACCOUNT: u64 = 5;
const REGISTRY_CHECKS_PER_NUMBER: u64 = 5;

/// Counts one registry check against every budget it is part of (atomically, before the
/// check); `Some(seconds)` when one of them is spent.
pub async fn registry_check_budget(
    store: &dyn store::Store,
    secret: &[u8],
    address: &str,
    person_id: &str,
    citizen_id: &str,
    now: u64,
) -> Result<Option<u64>, store::StoreError> {
    let number = connectors::normalise_id(citizen_id);
    // In this order, stopping at the first refusal: a caller over its own budgets spends
    // nothing of the number's, which someone else may own.
    for (scope, value, budget) in [
        ("addr", address, REGISTRY_CHECKS_PER_ADDRESS),
        ("person", person_id, REGISTRY_CHECKS_PER_ACCOUNT),
        ("number", number.as_str(), REGISTRY_CHECKS_PER_NUMBER),
    ] {
        let d = store
            .hit_rate_limit(
                &keyspace::registry_check_limit(secret, scope, value),
                budget,
                Duration::from_secs(3600),
                now,
            )
            .await?;
        if !d.allowed {
            metrics::counter!("broker_rate_limited_total", "scope" => "registry_check")
                .increment(1);
            return Ok(Some(d.retry_after.as_secs().max(1)));
        }
    }
    Ok(None)
}

/// Most wrong answers in one login before it must start again.
pub const MAX_ATTEMPTS: u32 = 5;

/// Saves a transaction; it lives `session.login_timeout` from now.
pub async fn save_tx(state: &Env, tx: &LoginTx) -> Result<(), store::StoreError> {
    keyspace::put_json(
        state.store.as_ref(),
        &keyspace::login_tx(&tx.id),
        tx,
        Some(Duration::from_secs(state.settings().session.login_timeout)),
        state.now,
    )
    .await
}

/// Saves a transaction and shows its current stage (the "post, redirect, get" of every
/// login form).
pub async fn show_stage(state: &Env, tx: &LoginTx) -> Outcome {
    match save_tx(state, tx).await {
        Ok(()) => Ok(Answer::see_other(login_url(state, &tx.id))),
        Err(e) => Err(Failure::unavailable(&tx.request.lang, &e)),
    }
}

/// The URL of a login page.
pub fn login_url(state: &Env, tx: &str) -> String {
    format!("{}/login/{tx}", state.settings().issuer)
}

/// Sends an OAuth error back to the client.
pub fn error_to_client(
    settings: &crate::config::Settings,
    req: &AuthRequest,
    e: &OAuthError,
    now: u64,
) -> Outcome {
    match crate::oidc::authorize::error_url(settings, req, e, now) {
        Some(url) => Ok(Answer::see_other(url)),
        None => Err(Failure::page(
            &req.lang,
            400,
            "error-bad-redirect",
            "redirect_uri is not a URL",
        )),
    }
}

/// A new login transaction id: random, then the client's id (base64url), so that the page
/// of an expired or unknown login can still name its platform and offer the way back.
fn new_tx_id(client_id: &str) -> String {
    use base64::Engine;
    let client = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(client_id);
    format!("{}.{client}", random_token(24))
}

/// The client a login transaction id names, if it is one of ours.
fn client_of_tx_id<'a>(settings: &'a crate::config::Settings, id: &str) -> Option<&'a Client> {
    use base64::Engine;
    let (_, client) = id.split_once('.')?;
    let client = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(client)
        .ok()?;
    settings.clients.get(std::str::from_utf8(&client).ok()?)
}

/// "Back to <platform>": its home page, for a login that is gone (expired, unknown, or in
/// another browser), when the transaction id still names the platform.
pub fn platform_home(
    settings: &crate::config::Settings,
    tx_id: &str,
    lang: &str,
) -> Option<Action> {
    let client = client_of_tx_id(settings, tx_id)?;
    if client.home_url.is_empty() {
        return None;
    }
    Some(Action::new(
        client.home_url.clone(),
        Message::new("button-back-to-platform").arg("platform", client.display_name(lang)),
    ))
}

/// "Back to <platform>" for a login that ends here: the authorization error response, so
/// the platform learns the login ended and can start a new one.
pub fn back_to_platform(
    settings: &crate::config::Settings,
    req: &AuthRequest,
    error: &OAuthError,
    now: u64,
) -> Option<Action> {
    let url = crate::oidc::authorize::error_url(settings, req, error, now)?;
    let name = settings
        .clients
        .get(req.client_id.as_str())
        .map(|c| c.display_name(&req.lang).to_string())
        .unwrap_or_default();
    Some(Action::new(
        url,
        Message::new("button-back-to-platform").arg("platform", name),
    ))
}

fn see_other(location: &str) -> Outcome {
    Ok(Answer::see_other(location))
}

/// Whether a session satisfies the request without a new authentication.
pub fn session_satisfies(request: &AuthRequest, session: &Session, now_s: u64) -> bool {
    if request.prompts(Prompt::Login) || session.level < request.min_level {
        return false;
    }
    match request.max_age {
        // max_age=0 asks for an authentication now, as prompt=login does: a session
        // authenticated earlier in the same second must not count (auth_time has seconds).
        Some(0) => false,
        Some(max) => now_s.saturating_sub(session.auth_time) <= max,
        None => true,
    }
}

/// Answers a validated authorization request: silently from the SSO session when it is
/// enough, with `prompt=none` errors, or by starting a login.
pub async fn begin(
    state: &Env,
    client: &Client,
    request: AuthRequest,
    current: Option<(String, Session)>,
) -> Outcome {
    let settings = &state.settings();
    let now_s = state.now / 1000;
    let usable = current
        .as_ref()
        .filter(|(_, s)| session_satisfies(&request, s, now_s));
    // What a usable session still needs before a code: consent, or a linked number.
    let mut known = complete::SessionPerson::default();
    let (consent, link) = match usable {
        Some((_, s)) => {
            let needs = async {
                let consent = consent_needed(state, client, &request, &s.person_id).await?;
                let link = client.require_citizen_id
                    && complete::link_needed(state, client, s, false, &mut known).await?;
                Ok::<_, store::StoreError>((consent, link))
            };
            match needs.await {
                Ok(c) => c,
                Err(e) => return Err(Failure::unavailable(&request.lang, &e)),
            }
        }
        None => (false, false),
    };

    if request.prompts(Prompt::None) {
        let error = match usable {
            None => OAuthError::new("login_required", "the citizen must log in"),
            Some(_) if link => OAuthError::new(
                "interaction_required",
                "the citizen must link a citizen ID number",
            ),
            Some(_) if consent => OAuthError::new("consent_required", "the citizen must consent"),
            Some((secret, s)) => {
                return issue_code_response(state, client, &request, secret, s.clone(), known).await
            }
        };
        return error_to_client(settings, &request, &error, state.now);
    }
    if let Some((secret, s)) = usable {
        if !consent && !link && !request.prompts(Prompt::SelectAccount) {
            return issue_code_response(state, client, &request, secret, s.clone(), known).await;
        }
    }

    let stage = match usable {
        Some(_) if request.prompts(Prompt::SelectAccount) => Stage::SelectAccount,
        _ => Stage::Choose,
    };
    let (browser_secret, new_cookie) = match state.browser_cookie.as_deref() {
        Some(c) if c.len() >= 32 => (c.to_string(), false),
        _ => (random_token(32), true),
    };
    let tx = LoginTx {
        id: new_tx_id(&client.id),
        browser: Secret::new(sha256_b64(browser_secret.as_bytes())),
        request,
        stage,
        attempts: 0,
        pending: None,
        notice: None,
        link_skipped: false,
    };
    metrics::counter!("broker_logins_started_total", "client" => client.id.clone()).increment(1);
    let mut answer = match usable {
        // Signed in, but consent or a linked number is missing: straight to that step.
        Some((secret, s)) if !request_prompts_select(&tx) => {
            proceed(state, tx, secret, s.clone(), known).await
        }
        _ => match direct_source(settings, &tx, &state.maintenance_or_none().await) {
            // One source to offer, or the one the platform hinted: straight to it. If it
            // fails to start, the choice is shown (choosing it again says what is wrong).
            Some(id) => {
                let fields = steps::Fields::from([("connector".to_string(), id)]);
                let fallback = tx.clone();
                match steps::start(state, tx, fields).await {
                    Ok(answer) => Ok(answer),
                    Err(_) => show_stage(state, &fallback).await,
                }
            }
            None => show_stage(state, &tx).await,
        },
    }?;
    if new_cookie {
        answer.browser_cookie = Some(browser_secret);
    }
    Ok(answer)
}

/// The source a new login goes straight to, skipping the choice: the one the platform's
/// `idp_hint` names, if offered and enabled, or the only one offered.
fn direct_source(
    settings: &crate::config::Settings,
    tx: &LoginTx,
    maintenance: &crate::maintenance::Maintenance,
) -> Option<String> {
    if !matches!(tx.stage, Stage::Choose) {
        return None;
    }
    let offered = eligible(settings, tx.request.min_level);
    // Enabled now: neither configured otherwise nor put into maintenance by an operator.
    let enabled = |c: &&&crate::config::ConnectorEntry| {
        maintenance.effective(c).0 == crate::config::ConnectorStatus::Enabled
    };
    if let Some(hint) = tx.request.idp_hint.as_deref() {
        if let Some(c) = offered.iter().filter(enabled).find(|c| c.id == hint) {
            return Some(c.id.clone());
        }
    }
    match offered.as_slice() {
        [only] if enabled(&only) => Some(only.id.clone()),
        _ => None,
    }
}

fn request_prompts_select(tx: &LoginTx) -> bool {
    tx.request.prompts(Prompt::SelectAccount)
}

/// Connectors a request may use: enabled (or in maintenance, shown greyed) and strong
/// enough.
pub fn eligible(
    settings: &crate::config::Settings,
    min: Assurance,
) -> Vec<&crate::config::ConnectorEntry> {
    settings
        .connectors
        .iter()
        .filter(|c| c.status != crate::config::ConnectorStatus::Disabled)
        .filter(|c| c.connector.assurance() >= min)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const T0: u64 = 1_800_000_000_000;

    fn request(prompt: Vec<Prompt>, max_age: Option<u64>, min_level: Assurance) -> AuthRequest {
        AuthRequest {
            client_id: "rp".into(),
            redirect_uri: "https://rp.example/cb".into(),
            scopes: vec!["openid".into(), "profile".into()],
            state: None,
            nonce: None,
            code_challenge: None,
            prompt,
            max_age,
            login_hint: None,
            lang: "en".into(),
            min_level,
            dpop_jkt: None,
            response_mode: None,
            idp_hint: None,
        }
    }

    fn session(auth_time: u64, level: Assurance) -> Session {
        Session {
            sid: "sid-1".into(),
            person_id: "p-1".into(),
            display_name: String::new(),
            auth_time,
            level,
            amr: vec![],
            connector: "tc".into(),
            created: auth_time * 1000,
            last_seen: auth_time * 1000,
            clients: vec![],
            link_skipped: false,
        }
    }

    #[test]
    fn values_a_form_shows_again_are_sealed_to_their_login_and_field() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = crate::config::for_tests(dir.path(), "");
        let mut field = connectors::Field::new("id_number", "l", "text", "off");
        field.value = "110101199003074517".into();
        let mut form = Form {
            title: "t".into(),
            intro: None,
            fields: vec![field],
            submit: "s".into(),
            problem: None,
            notice: None,
            secondary: None,
        };
        seal_form_values(&settings, "tx-1", &mut form);
        let sealed = form.fields[0].value.clone();
        assert!(!sealed.is_empty() && !sealed.contains("110101199003074517"));
        assert_eq!(
            open_form_value(&settings, "tx-1", "id_number", &sealed),
            "110101199003074517"
        );
        // Sealed as every earlier version did (the key derived for each use) it opens too:
        // logins under way across an upgrade keep their values.
        let per_use = common::seal::Sealer::derive(
            &common::hash::KeyedHash::new(&settings.pairwise_secret),
            "login form values",
        );
        let earlier = per_use
            .seal("tx-1/id_number", b"110101199003074517")
            .expect("sealed");
        assert_eq!(
            open_form_value(&settings, "tx-1", "id_number", &earlier),
            "110101199003074517"
        );
        // Another login, another field, or a value changed in the store: nothing shown.
        assert_eq!(open_form_value(&settings, "tx-2", "id_number", &sealed), "");
        assert_eq!(open_form_value(&settings, "tx-1", "name", &sealed), "");
        assert_eq!(open_form_value(&settings, "tx-1", "id_number", "x"), "");
    }

    #[test]
    fn a_session_is_reused_only_within_max_age_at_the_level_and_without_prompt_login() {
        let now = T0 / 1000;
        let s = session(now - 100, Assurance::Substantial);
        let sub = Assurance::Substantial;
        assert!(session_satisfies(&request(vec![], None, sub), &s, now));
        assert!(session_satisfies(&request(vec![], Some(100), sub), &s, now));
        assert!(!session_satisfies(&request(vec![], Some(99), sub), &s, now));
        assert!(!session_satisfies(
            &request(vec![Prompt::Login], None, sub),
            &s,
            now
        ));
        assert!(!session_satisfies(
            &request(vec![], None, Assurance::High),
            &s,
            now
        ));
        // max_age=0 is "authenticate now", even in the second of the last authentication.
        let fresh = session(now, Assurance::Substantial);
        assert!(!session_satisfies(
            &request(vec![], Some(0), sub),
            &fresh,
            now
        ));
    }

    fn env(dir: &std::path::Path, settings: Arc<crate::config::Settings>, now: u64) -> Env {
        let store: store::SharedStore =
            Arc::new(store::embedded::EmbeddedStore::open(&dir.join("t.redb")).expect("store"));
        let records: records::SharedRecords = Arc::new(
            records::embedded::EmbeddedRecords::open(&dir.join("r.redb")).expect("records"),
        );
        let mut env = Env::new(settings, store, records, now, "127.0.0.1".into());
        env.browser_cookie = Some("b".repeat(32));
        env
    }

    #[tokio::test]
    async fn a_login_lives_login_timeout_and_consent_is_asked_until_given() {
        let dir = tempfile::tempdir().expect("dir");
        let mut settings = crate::config::for_tests(dir.path(), "");
        if let Some(rp) = settings.clients.get_mut("rp") {
            rp.require_consent = true;
        }
        let settings = Arc::new(settings);
        let mut state = env(dir.path(), settings.clone(), T0);
        let tx = LoginTx {
            id: "tx-1".into(),
            browser: Secret::new(sha256_b64("b".repeat(32).as_bytes())),
            request: request(vec![], None, Assurance::Low),
            stage: Stage::Choose,
            attempts: 0,
            pending: None,
            notice: None,
            link_skipped: false,
        };
        save_tx(&state, &tx).await.expect("saved");
        let timeout = settings.session.login_timeout * 1000;
        state.now = T0 + timeout - 1;
        steps::load(&state, "tx-1", "en")
            .await
            .expect("alive before the timeout");
        state.now = T0 + timeout + 1;
        match steps::load(&state, "tx-1", "en").await {
            Err(f) => assert!(format!("{f}").contains("error-login-expired"), "{f}"),
            Ok(_) => panic!("a login past login_timeout must be gone"),
        }
        // Another browser never gets the transaction.
        state.now = T0 + 1;
        state.browser_cookie = Some("x".repeat(32));
        assert!(steps::load(&state, "tx-1", "en").await.is_err());

        let rp = settings.clients.get("rp").expect("rp");
        let asked = request(vec![], None, Assurance::Low);
        assert!(consent_needed(&state, rp, &asked, "p-1")
            .await
            .expect("read"));
        complete::record_consent(&state, rp, &asked, "p-1")
            .await
            .expect("recorded");
        assert!(!consent_needed(&state, rp, &asked, "p-1")
            .await
            .expect("read"));
        // A wider request, or prompt=consent, asks again.
        let mut wider = asked.clone();
        wider.scopes.push("offline_access".into());
        assert!(consent_needed(&state, rp, &wider, "p-1")
            .await
            .expect("read"));
        let again = request(vec![Prompt::Consent], None, Assurance::Low);
        assert!(consent_needed(&state, rp, &again, "p-1")
            .await
            .expect("read"));
    }

    #[tokio::test]
    async fn a_citizen_id_is_asked_for_only_where_it_can_be_checked_or_is_required() {
        let dir = tempfile::tempdir().expect("dir");
        let mut settings = crate::config::for_tests(dir.path(), "");
        let s = session(T0 / 1000, Assurance::Low);
        let state = env(
            dir.path(),
            Arc::new(crate::config::for_tests(dir.path(), "")),
            T0,
        );
        // No registry to check a number, and the platform does not require one: no question.
        let rp = settings.clients.get("rp").expect("rp");
        assert!(!complete::link_needed(
            &state,
            rp,
            &s,
            false,
            &mut complete::SessionPerson::default()
        )
        .await
        .expect("read"));
        // A platform that requires one asks, and "Skip" does not count for it.
        if let Some(rp) = settings.clients.get_mut("rp") {
            rp.require_citizen_id = true;
        }
        let rp = settings.clients.get("rp").expect("rp");
        assert!(complete::link_needed(
            &state,
            rp,
            &s,
            false,
            &mut complete::SessionPerson::default()
        )
        .await
        .expect("read"));
        assert!(complete::link_needed(
            &state,
            rp,
            &s,
            true,
            &mut complete::SessionPerson::default()
        )
        .await
        .expect("read"));
    }
}

/// A store that watches sessions: their reads can fail (a blip of Redis) while everything
/// else works, and their writes are counted.
#[cfg(test)]
mod blip {
    use std::time::Duration;

    use store::{Claimed, Millis, RateDecision, Rotation, Store, StoreError, StoreResult};

    pub struct WatchedSessions(pub store::embedded::EmbeddedStore, pub Watch);

    /// What the store does with sessions besides storing them.
    #[derive(Default)]
    pub struct Watch {
        /// Reads of sessions fail.
        pub reads_fail: bool,
        /// Writes of sessions, counted.
        pub writes: std::sync::atomic::AtomicUsize,
    }

    impl WatchedSessions {
        pub fn new(inner: store::embedded::EmbeddedStore) -> Self {
            let watch = Watch {
                reads_fail: true,
                ..Watch::default()
            };
            WatchedSessions(inner, watch)
        }

        /// A store that only counts the writes of sessions.
        pub fn counting(inner: store::embedded::EmbeddedStore) -> Self {
            WatchedSessions(inner, Watch::default())
        }

        pub fn session_writes(&self) -> usize {
            self.1.writes.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[async_trait::async_trait]
    impl Store for WatchedSessions {
        async fn put(
            &self,
            k: &str,
            v: &[u8],
            ttl: Option<Duration>,
            now: Millis,
        ) -> StoreResult<()> {
            if k.starts_with("sess:") {
                self.1
                    .writes
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            self.0.put(k, v, ttl, now).await
        }
        async fn put_many(
            &self,
            keys: &[&str],
            v: &[u8],
            ttl: Option<Duration>,
            now: Millis,
        ) -> StoreResult<()> {
            let sessions = keys.iter().filter(|k| k.starts_with("sess:")).count();
            self.1
                .writes
                .fetch_add(sessions, std::sync::atomic::Ordering::SeqCst);
            self.0.put_many(keys, v, ttl, now).await
        }
        async fn put_new(
            &self,
            k: &str,
            v: &[u8],
            ttl: Option<Duration>,
            now: Millis,
        ) -> StoreResult<bool> {
            self.0.put_new(k, v, ttl, now).await
        }
        async fn get(&self, k: &str, now: Millis) -> StoreResult<Option<Vec<u8>>> {
            if self.1.reads_fail && k.starts_with("sess:") {
                return Err(StoreError::Unavailable("blip".into()));
            }
            self.0.get(k, now).await
        }
        async fn get_many(&self, keys: &[&str], now: Millis) -> StoreResult<Vec<Option<Vec<u8>>>> {
            if self.1.reads_fail && keys.iter().any(|k| k.starts_with("sess:")) {
                return Err(StoreError::Unavailable("blip".into()));
            }
            self.0.get_many(keys, now).await
        }
        async fn take(&self, k: &str, now: Millis) -> StoreResult<Option<Vec<u8>>> {
            self.0.take(k, now).await
        }
        async fn swap(&self, k: &str, t: &[u8], now: Millis) -> StoreResult<Option<Vec<u8>>> {
            self.0.swap(k, t, now).await
        }
        async fn delete(&self, k: &str, now: Millis) -> StoreResult<bool> {
            self.0.delete(k, now).await
        }
        async fn rotate(
            &self,
            guard: &str,
            old: &str,
            tombstone: &[u8],
            new: &str,
            now: Millis,
        ) -> StoreResult<Rotation> {
            self.0.rotate(guard, old, tombstone, new, now).await
        }
        async fn hit_rate_limit(
            &self,
            k: &str,
            limit: u64,
            window: Duration,
            now: Millis,
        ) -> StoreResult<RateDecision> {
            self.0.hit_rate_limit(k, limit, window, now).await
        }
        async fn rate_count(&self, k: &str, window: Duration, now: Millis) -> StoreResult<u64> {
            self.0.rate_count(k, window, now).await
        }
        async fn add_member(
            &self,
            k: &str,
            m: &str,
            ttl: Duration,
            now: Millis,
        ) -> StoreResult<()> {
            self.0.add_member(k, m, ttl, now).await
        }
        async fn members(&self, k: &str, now: Millis) -> StoreResult<Vec<String>> {
            self.0.members(k, now).await
        }
        async fn enqueue(&self, q: &str, id: &str, v: &[u8], due: Millis) -> StoreResult<()> {
            self.0.enqueue(q, id, v, due).await
        }
        async fn claim_due(
            &self,
            q: &str,
            max: usize,
            lease: Duration,
            now: Millis,
        ) -> StoreResult<Vec<Claimed>> {
            self.0.claim_due(q, max, lease, now).await
        }
        async fn settle(
            &self,
            q: &str,
            id: &str,
            lease_until: Millis,
            next: Option<(&[u8], Millis)>,
        ) -> StoreResult<bool> {
            self.0.settle(q, id, lease_until, next).await
        }
        async fn ping(&self) -> StoreResult<()> {
            self.0.ping().await
        }
        async fn keys_with_prefix(&self, p: &str, now: Millis) -> StoreResult<Vec<String>> {
            self.0.keys_with_prefix(p, now).await
        }
    }
}

#[cfg(test)]
mod blip_tests {
    use std::sync::Arc;

    use store::Store as _;

    use super::*;

    /// A login of `rp` at its connector's form, on `store`, and the password step's answer.
    async fn at_the_password_step(
        settings: crate::config::Settings,
        store: store::SharedStore,
        dir: &std::path::Path,
        now: u64,
    ) -> (Env, LoginTx, steps::Fields) {
        let records: records::SharedRecords = Arc::new(
            records::embedded::EmbeddedRecords::open(&dir.join("r.redb")).expect("records"),
        );
        let mut state = Env::new(Arc::new(settings), store, records, now, "127.0.0.1".into());
        state.browser_cookie = Some("b".repeat(32));
        let request = crate::oidc::authorize::AuthRequest {
            client_id: "rp".into(),
            redirect_uri: "https://rp.example/cb".into(),
            scopes: vec!["openid".into()],
            state: None,
            nonce: None,
            code_challenge: None,
            prompt: vec![],
            max_age: None,
            login_hint: None,
            lang: "en".into(),
            min_level: Assurance::Low,
            dpop_jkt: None,
            response_mode: None,
            idp_hint: None,
        };
        let tx = LoginTx {
            id: "tx-1".into(),
            browser: Secret::new(sha256_b64("b".repeat(32).as_bytes())),
            request,
            stage: Stage::Choose,
            attempts: 0,
            pending: None,
            notice: None,
            link_skipped: false,
        };
        let chose = steps::Fields::from([("connector".to_string(), "tc".to_string())]);
        steps::start(&state, tx, chose)
            .await
            .expect("the connector's form");
        let tx = steps::load(&state, "tx-1", "en")
            .await
            .expect("saved with its step");
        let answer = steps::Fields::from([
            ("username".to_string(), "an".to_string()),
            ("password".to_string(), "demo".to_string()),
        ]);
        state.now += 1;
        (state, tx, answer)
    }

    fn watched(
        dir: &std::path::Path,
        watched: fn(store::embedded::EmbeddedStore) -> blip::WatchedSessions,
    ) -> Arc<blip::WatchedSessions> {
        let inner = store::embedded::EmbeddedStore::open(&dir.join("t.redb")).expect("store");
        Arc::new(watched(inner))
    }

    /// After a store blip while the session is read, a successful login shows "try again
    /// later" instead of opening a second session with a new `sid` (whose logout would
    /// never reach the platforms of the first).
    #[tokio::test]
    async fn a_store_error_reading_the_session_is_never_taken_as_no_session() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = crate::config::for_tests(dir.path(), "");
        let store = watched(dir.path(), blip::WatchedSessions::new);
        let now = crate::util::now_millis();
        let (mut state, tx, answer) =
            at_the_password_step(settings, store.clone(), dir.path(), now).await;
        state.session_cookie = Some("an-existing-session-cookie".into());
        match steps::step(&state, tx, answer).await {
            Err(f) => assert_eq!(f.status, 503, "{f}"),
            Ok(a) => panic!("a new session must not be opened: {a:?}"),
        }
        let sessions = store
            .keys_with_prefix("sess:", now + 1)
            .await
            .expect("keys");
        assert!(sessions.is_empty(), "no second session: {sessions:?}");
    }

    /// A login straight to the code writes its new session once (with the platform in it);
    /// one that stops at a page first (consent) has its session saved before that page.
    #[tokio::test]
    async fn a_new_session_is_written_once_and_before_any_page() {
        for consent in [false, true] {
            let dir = tempfile::tempdir().expect("dir");
            let mut settings = crate::config::for_tests(dir.path(), "");
            if let Some(rp) = settings.clients.get_mut("rp") {
                rp.require_consent = consent;
            }
            let store = watched(dir.path(), blip::WatchedSessions::counting);
            let now = crate::util::now_millis();
            let (state, tx, answer) =
                at_the_password_step(settings, store.clone(), dir.path(), now).await;
            let answer = steps::step(&state, tx, answer).await.expect("signed in");
            let secret = answer.session_cookie.clone().expect("a session cookie");
            assert_eq!(store.session_writes(), 1, "consent {consent}: {answer:?}");
            let saved = crate::session::current(
                Some(&secret),
                &state.settings(),
                store.as_ref(),
                state.now,
            )
            .await
            .expect("read")
            .expect("the session is saved");
            let platforms: Vec<&str> = saved.1.clients.iter().map(|c| c.as_str()).collect();
            let expected: &[&str] = if consent { &[] } else { &["rp"] };
            assert_eq!(platforms, expected, "consent {consent}");
        }
    }
}
