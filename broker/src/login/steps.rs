//! The steps of a login, one function per form the citizen submits (and the upstream
//! callback): each takes the loaded transaction and the form, and tells the web layer
//! where the browser goes next.

use std::collections::BTreeMap;
use std::time::Duration;

use connectors::{ConnectorError, Context, Input, Message, Step};

use super::complete::{authenticated, issue_code_response, proceed, record_consent, SessionPerson};
use super::error_to_client;
use super::{
    back_to_platform, eligible, login_url, save_tx, see_other, show_stage, Action, Env, Failure,
    LoginTx, Outcome, Stage, View, MAX_ATTEMPTS,
};
use crate::keyspace::{self, StepBudget};
use crate::oidc::OAuthError;
use crate::person::resolve::Claim;
use crate::session;
use crate::util::{random_token, sha256_b64};

/// Form submissions per address and connector in five minutes (password guessing).
const STEP_LIMIT_PER_ADDRESS: u64 = 30;

/// Polls of waiting pages per address and connector in five minutes (one a second).
const POLL_LIMIT_PER_ADDRESS: u64 = 300;

/// Runs a connector call and records its latency (`broker_connector_seconds`).
async fn timed<T>(connector: &str, call: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = call.await;
    metrics::histogram!("broker_connector_seconds", "connector" => connector.to_string())
        .record(started.elapsed().as_secs_f64());
    out
}

/// The fields of a submitted form.
pub type Fields = BTreeMap<String, String>;

/// Loads a transaction and checks that this browser started it; `lang` is the language
/// for the pages shown before the transaction's own is known.
pub async fn load(state: &Env, id: &str, lang: &str) -> Result<LoginTx, Failure> {
    let tx =
        keyspace::get_json::<LoginTx>(state.store.as_ref(), &keyspace::login_tx(id), state.now)
            .await
            .map_err(|e| Failure::unavailable(lang, &e))?;
    let home = || super::platform_home(&state.settings(), id, lang);
    let menu = format!("/login/{id}");
    let Some(tx) = tx else {
        return Err(
            Failure::page(lang, 400, "error-login-expired", "unknown or expired login")
                .with_action(home())
                .with_menu(&menu),
        );
    };
    let bound = state
        .browser_cookie
        .as_deref()
        .is_some_and(|c| tx.browser.matches(&sha256_b64(c.as_bytes())));
    if !bound {
        return Err(Failure::page(
            &tx.request.lang,
            400,
            "error-other-browser",
            "the login was started in another browser",
        )
        .with_action(home())
        .with_menu(&menu));
    }
    Ok(tx)
}

/// Loads the transaction of a form post and checks its CSRF token.
pub async fn load_post(
    state: &Env,
    id: &str,
    fields: &Fields,
    lang: &str,
) -> Result<LoginTx, Failure> {
    let tx = load(state, id, lang).await?;
    let csrf_ok = crate::csrf::check(
        &state.settings().csrf_key,
        crate::csrf::Form::Login(&tx.id),
        state.browser_cookie.as_deref(),
        fields.get("csrf").map(String::as_str),
    );
    if !csrf_ok {
        // The login itself goes on: its current page has a fresh form.
        let again = Action::new(login_url(state, &tx.id), Message::new("button-start-again"));
        return Err(Failure::page(
            &tx.request.lang,
            400,
            "error-form-expired",
            "missing or wrong CSRF token",
        )
        .with_action(Some(again)));
    }
    Ok(tx)
}

fn context(
    state: &Env,
    tx: &LoginTx,
    connector: &str,
    cb_state: &str,
    maintenance: &crate::maintenance::Maintenance,
) -> Context {
    Context {
        callback_url: format!("{}/callback/{connector}", state.settings().issuer),
        state: cb_state.to_string(),
        nonce: random_token(24),
        languages: vec![tx.request.lang.clone()],
        login_hint: tx
            .request
            .login_hint
            .as_ref()
            .map(|h| h.expose().to_string()),
        min_assurance: tx.request.min_level,
        now: state.now / 1000,
        client_address: state.address.clone(),
        kv: std::sync::Arc::new(crate::connector_kv::StoreKv(state.store.clone())),
        maintenance: maintenance.parts_of(connector),
    }
}

/// Longest wait for a source to withdraw a request the citizen left.
const ABANDON_TIMEOUT: Duration = Duration::from_secs(2);

/// Tells the connector of the step a login is at that the citizen leaves it, so a source
/// holding a request (a prompt in the CTID app) withdraws it. Waits at most
/// [`ABANDON_TIMEOUT`]: the citizen goes on either way.
async fn abandon_step(state: &Env, tx: &LoginTx) {
    let Stage::Step {
        connector,
        state: step_state,
        ..
    } = &tx.stage
    else {
        return;
    };
    let settings = state.settings();
    let Some(entry) = settings.connector(connector) else {
        return;
    };
    // No maintenance parts: withdrawing concerns no part of the source.
    let ctx = context(
        state,
        tx,
        connector,
        "",
        &crate::maintenance::Maintenance::default(),
    );
    let call = entry.connector.abandon(&ctx, step_state);
    if tokio::time::timeout(ABANDON_TIMEOUT, call).await.is_err() {
        tracing::warn!(connector = %connector, "withdrawing a left step timed out");
    }
}

/// `POST /login/{tx}/start`: the citizen chose an identity source.
pub async fn start(state: &Env, mut tx: LoginTx, fields: Fields) -> Outcome {
    let chosen = fields.get("connector").map(String::as_str).unwrap_or("");
    let settings = state.settings();
    let allowed = eligible(&settings, tx.request.min_level);
    let Some(entry) = allowed.iter().find(|c| c.id == chosen) else {
        return Err(Failure::page(
            &tx.request.lang,
            400,
            "error-bad-request",
            "unknown connector",
        ));
    };
    let maintenance = match state.maintenance().await {
        Ok(m) => m,
        Err(e) => return Err(Failure::unavailable(&tx.request.lang, &e)),
    };
    if maintenance.effective(entry).0 != crate::config::ConnectorStatus::Enabled {
        return see_other(&login_url(state, &tx.id));
    }
    // Back from a source's step to the choice (the browser's back button): that source's
    // pending request is withdrawn first.
    abandon_step(state, &tx).await;
    let cb_state = random_token(24);
    let ctx = context(state, &tx, &entry.id, &cb_state, &maintenance);
    let result = timed(&entry.id, entry.connector.start(&ctx)).await;
    let connector_id = entry.id.clone();
    tx.attempts = 0;
    advance(state, tx, &connector_id, &cb_state, result).await
}

/// `POST /login/{tx}/step`: the answer to a connector's form (or a poll of a wait step).
pub async fn step(state: &Env, tx: LoginTx, mut fields: Fields) -> Outcome {
    fields.remove("csrf");
    let Stage::Step {
        connector,
        state: step_state,
        view,
    } = tx.stage.clone()
    else {
        return see_other(&login_url(state, &tx.id));
    };
    let settings = state.settings();
    let Some(entry) = settings.connector(&connector) else {
        return Err(Failure::page(
            &tx.request.lang,
            400,
            "error-bad-request",
            "unknown connector",
        ));
    };
    let address = state.address.clone();
    // Polls of a waiting page (every few seconds) have a budget of their own.
    let (scope, budget) = match view {
        View::Wait { .. } => (StepBudget::Poll, POLL_LIMIT_PER_ADDRESS),
        _ => (StepBudget::Step, STEP_LIMIT_PER_ADDRESS),
    };
    let limit = state
        .store
        .hit_rate_limit(
            &keyspace::login_step_limit(&settings.pairwise_secret, scope, &connector, &address),
            budget,
            Duration::from_secs(300),
            state.now,
        )
        .await;
    match limit {
        Ok(d) if !d.allowed => {
            metrics::counter!("broker_rate_limited_total", "scope" => "login_step").increment(1);
            return Err(Failure::too_many(
                &tx.request.lang,
                d.retry_after.as_secs().max(1),
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(Failure::unavailable(&tx.request.lang, &e)),
    }
    let input = match view {
        View::Wait { .. } => Input::Poll,
        _ => Input::Form(fields),
    };
    let cb_state = random_token(24);
    let maintenance = state.maintenance_or_none().await;
    let ctx = context(state, &tx, &connector, &cb_state, &maintenance);
    let result = timed(&entry.id, entry.connector.resume(&ctx, step_state, input)).await;
    advance(state, tx, &connector, &cb_state, result).await
}

/// `GET /callback/{connector}`: an upstream identity provider sends the citizen back.
pub async fn callback(state: &Env, path: &str, params: Fields, lang: &str) -> Outcome {
    let Some(cb_state) = params.get("state") else {
        return Err(Failure::page(
            lang,
            400,
            "error-bad-request",
            "callback without state",
        ));
    };
    // Single use: a replayed callback finds nothing.
    let tx_id = match state
        .store
        .take(&keyspace::callback_state(cb_state), state.now)
        .await
    {
        Ok(Some(id)) => String::from_utf8_lossy(&id).into_owned(),
        Ok(None) => {
            return Err(Failure::page(
                lang,
                400,
                "error-login-expired",
                "unknown or used callback state",
            ))
        }
        Err(e) => return Err(Failure::unavailable(lang, &e)),
    };
    let tx = load(state, &tx_id, lang).await?;
    let Stage::Step {
        connector,
        state: step_state,
        ..
    } = tx.stage.clone()
    else {
        return Err(Failure::page(
            &tx.request.lang,
            400,
            "error-login-expired",
            "login not waiting for a callback",
        ));
    };
    if connector != path {
        return Err(Failure::page(
            &tx.request.lang,
            400,
            "error-bad-request",
            "callback for another connector",
        ));
    }
    let settings = state.settings();
    let Some(entry) = settings.connector(&connector) else {
        return Err(Failure::page(
            &tx.request.lang,
            400,
            "error-bad-request",
            "unknown connector",
        ));
    };
    let next_state = random_token(24);
    let maintenance = state.maintenance_or_none().await;
    let ctx = context(state, &tx, &connector, cb_state, &maintenance);
    let result = timed(
        &entry.id,
        entry
            .connector
            .resume(&ctx, step_state, Input::Callback(params.clone())),
    )
    .await;
    advance(state, tx, &connector, &next_state, result).await
}

/// Moves the login on after a connector answered.
async fn advance(
    state: &Env,
    mut tx: LoginTx,
    connector: &str,
    cb_state: &str,
    result: Result<Step, ConnectorError>,
) -> Outcome {
    let lang = tx.request.lang.clone();
    let (step, problem) = match result {
        Ok(step) => (step, None),
        Err(ConnectorError::Retry { message, step }) => {
            tx.attempts += 1;
            if tx.attempts >= MAX_ATTEMPTS {
                let _ = state
                    .store
                    .delete(&keyspace::login_tx(&tx.id), state.now)
                    .await;
                metrics::counter!("broker_logins_total", "connector" => connector.to_string(), "outcome" => "too_many_attempts").increment(1);
                crate::recent_logins::record(connector, "too_many_attempts", state.now);
                tracing::warn!(target: "audit", event = "login.failed", connector, client = %tx.request.client_id, reason = "too_many_attempts", "login abandoned after too many wrong answers");
                let ended = OAuthError::new("access_denied", "too many wrong answers");
                return Err(Failure::message(
                    &lang,
                    429,
                    Message::new("error-too-many-attempts"),
                    None,
                )
                .with_action(back_to_platform(
                    &state.settings(),
                    &tx.request,
                    &ended,
                    state.now,
                )));
            }
            (*step, Some(message))
        }
        Err(ConnectorError::Failed { message, detail }) => {
            let reference = random_token(6);
            metrics::counter!("broker_logins_total", "connector" => connector.to_string(), "outcome" => "failed").increment(1);
            crate::recent_logins::record(connector, "failed", state.now);
            tracing::warn!(target: "audit", event = "login.failed", connector, client = %tx.request.client_id, reason = %message.key, reference = %reference, detail = %detail, "login failed at the identity source");
            let status = failed_status(&message.key);
            return back_to_choice(state, tx, message, &reference, status).await;
        }
        Err(ConnectorError::Unavailable(detail)) => {
            let reference = random_token(6);
            metrics::counter!("broker_logins_total", "connector" => connector.to_string(), "outcome" => "unavailable").increment(1);
            crate::recent_logins::record(connector, "unavailable", state.now);
            metrics::counter!("broker_connector_errors_total", "connector" => connector.to_string()).increment(1);
            tracing::error!(target: "audit", event = "login.failed", connector, client = %tx.request.client_id, reason = "source_unavailable", reference = %reference, detail = %detail, "identity source unavailable");
            return back_to_choice(
                state,
                tx,
                Message::new("error-source-unavailable"),
                &reference,
                502,
            )
            .await;
        }
        Err(ConnectorError::InvalidState(detail)) => {
            let reference = random_token(6);
            metrics::counter!("broker_logins_total", "connector" => connector.to_string(), "outcome" => "error").increment(1);
            crate::recent_logins::record(connector, "error", state.now);
            tracing::error!(connector, reference = %reference, detail = %detail, "connector state invalid");
            return back_to_choice(state, tx, Message::new("error-generic"), &reference, 502).await;
        }
    };
    match step {
        Step::Done(identity) => {
            let current = state
                .session()
                .await
                .map_err(|e| Failure::unavailable(&tx.request.lang, &e))?;
            authenticated(state, tx, connector, identity, current, Claim::Ask).await
        }
        Step::Redirect { url, state: s } => {
            tx.stage = Stage::Step {
                connector: connector.into(),
                state: s,
                view: View::Redirect,
            };
            let now = state.now;
            let ttl = Some(Duration::from_secs(state.settings().session.login_timeout));
            if let Err(e) = state
                .store
                .put(
                    &keyspace::callback_state(cb_state),
                    tx.id.as_bytes(),
                    ttl,
                    now,
                )
                .await
            {
                return Err(Failure::unavailable(&lang, &e));
            }
            if let Err(e) = save_tx(state, &tx).await {
                return Err(Failure::unavailable(&lang, &e));
            }
            see_other(&url)
        }
        Step::Form { mut form, state: s } => {
            if problem.is_some() {
                form.problem = problem;
            }
            super::seal_form_values(&state.settings(), &tx.id, &mut form);
            tx.stage = Stage::Step {
                connector: connector.into(),
                state: s,
                view: View::Form { form },
            };
            show_stage(state, &tx).await
        }
        Step::Wait {
            instruction,
            qr,
            app_link,
            poll_seconds,
            state: s,
        } => {
            tx.stage = Stage::Step {
                connector: connector.into(),
                state: s,
                view: View::Wait {
                    instruction,
                    qr,
                    app_link,
                    poll_seconds,
                },
            };
            show_stage(state, &tx).await
        }
    }
}

/// The status of a login the source ended: 4xx when it ended by the citizen's own doing
/// (cancelled or refused in the app, too slow, too many tries, an account closed), 502
/// only when the source failed (an answer that does not verify, a refused request), so
/// that monitoring counts only those as server errors.
fn failed_status(key: &str) -> u16 {
    if key.ends_with("-invalid") || key.ends_with("-refused") {
        502
    } else if key.contains("locked") {
        429
    } else {
        403
    }
}

/// Shows a failure with a way back to the choice of identity sources.
async fn back_to_choice(
    state: &Env,
    mut tx: LoginTx,
    message: Message,
    reference: &str,
    status: u16,
) -> Outcome {
    tx.stage = Stage::Choose;
    if let Err(e) = save_tx(state, &tx).await {
        return Err(Failure::unavailable(&tx.request.lang, &e));
    }
    let message = message.arg("reference", reference);
    Err(Failure::message(
        &tx.request.lang,
        status,
        message,
        Some(login_url(state, &tx.id)),
    )
    .with_menu(&format!("/login/{}", tx.id)))
}

/// `POST /login/{tx}/consent`
pub async fn consent(state: &Env, tx: LoginTx, fields: Fields) -> Outcome {
    if !matches!(tx.stage, Stage::Consent) {
        return see_other(&login_url(state, &tx.id));
    }
    let settings = &state.settings();
    let Some(client) = settings.clients.get(tx.request.client_id.as_str()) else {
        return Err(Failure::page(
            &tx.request.lang,
            400,
            "error-unknown-client",
            "client gone",
        ));
    };
    let _ = state
        .store
        .delete(&keyspace::login_tx(&tx.id), state.now)
        .await;
    if fields.get("decision").map(String::as_str) != Some("allow") {
        let e = OAuthError::new("access_denied", "the citizen declined");
        return error_to_client(settings, &tx.request, &e, state.now);
    }
    let Some((secret, s)) = state
        .session()
        .await
        .map_err(|e| Failure::unavailable(&tx.request.lang, &e))?
    else {
        return Err(Failure::page(
            &tx.request.lang,
            400,
            "error-login-expired",
            "session ended",
        ));
    };
    if let Err(e) = record_consent(state, client, &tx.request, &s.person_id).await {
        return Err(Failure::unavailable(&tx.request.lang, &e));
    }
    issue_code_response(
        state,
        client,
        &tx.request,
        &secret,
        s,
        SessionPerson::default(),
    )
    .await
}

/// `POST /login/{tx}/account`: continue with the current session, or use another account.
pub async fn account(state: &Env, mut tx: LoginTx, fields: Fields) -> Outcome {
    if !matches!(tx.stage, Stage::SelectAccount) {
        return see_other(&login_url(state, &tx.id));
    }
    let settings = &state.settings();
    let Some(client) = settings.clients.get(tx.request.client_id.as_str()) else {
        return Err(Failure::page(
            &tx.request.lang,
            400,
            "error-unknown-client",
            "client gone",
        ));
    };
    let current = state
        .session()
        .await
        .map_err(|e| Failure::unavailable(&tx.request.lang, &e))?;
    match (fields.get("choice").map(String::as_str), current) {
        (Some("continue"), Some((secret, s))) => {
            let _ = client;
            proceed(state, tx, &secret, s, SessionPerson::default()).await
        }
        _ => {
            tx.stage = Stage::Choose;
            show_stage(state, &tx).await
        }
    }
}

/// `POST /login/{tx}/back`: "Choose another way" from a source's step: the source
/// withdraws what it holds for the citizen, and the login goes back to the choice.
pub async fn back(state: &Env, mut tx: LoginTx, _fields: Fields) -> Outcome {
    abandon_step(state, &tx).await;
    if matches!(tx.stage, Stage::Step { .. }) {
        tx.stage = Stage::Choose;
        tx.attempts = 0;
    }
    show_stage(state, &tx).await
}

/// `POST /login/{tx}/cancel`: the citizen gives up; the platform gets `access_denied`.
pub async fn cancel(state: &Env, tx: LoginTx, _fields: Fields) -> Outcome {
    let _ = state
        .store
        .delete(&keyspace::login_tx(&tx.id), state.now)
        .await;
    abandon_step(state, &tx).await;
    let e = OAuthError::new("access_denied", "the citizen cancelled the login");
    error_to_client(&state.settings(), &tx.request, &e, state.now)
}

/// The connector through which the older account of a weak binding can prove itself.
pub async fn weak_connector(state: &Env, weak: &crate::person::Binding) -> Option<String> {
    let settings = state.settings();
    if settings.connector(&weak.source).is_some() {
        return Some(weak.source.clone());
    }
    let person = crate::person::load(&settings, state.records.as_ref(), &weak.person)
        .await
        .ok()
        .flatten()?;
    person
        .links
        .iter()
        .map(|l| l.connector.clone())
        .find(|c| settings.connector(c).is_some())
}

/// The current session of a login's browser, or the "expired" page.
async fn session_of(state: &Env, lang: &str) -> Result<(String, crate::session::Session), Failure> {
    match state.session().await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Failure::page(
            lang,
            400,
            "error-login-expired",
            "session ended",
        )),
        Err(e) => Err(Failure::unavailable(lang, &e)),
    }
}

/// `POST /login/{tx}/claim`: the citizen proves the older account (`prove`) or disowns it
/// (`not_mine`).
pub async fn claim(state: &Env, mut tx: LoginTx, fields: Fields) -> Outcome {
    let (Stage::Claim, Some(pending)) = (&tx.stage, tx.pending.clone()) else {
        return see_other(&login_url(state, &tx.id));
    };
    tx.notice = None;
    if fields.get("choice").map(String::as_str) == Some("not_mine") {
        tx.pending = None;
        let current = state
            .session()
            .await
            .map_err(|e| Failure::unavailable(&tx.request.lang, &e))?;
        return authenticated(
            state,
            tx,
            &pending.connector,
            pending.identity,
            current,
            Claim::TakeOver,
        )
        .await;
    }
    let Some(connector) = weak_connector(state, &pending.weak).await else {
        return Err(Failure::message(
            &tx.request.lang,
            409,
            Message::new("claim-no-way"),
            None,
        ));
    };
    let settings = state.settings();
    let Some(entry) = settings.connector(&connector) else {
        return Err(Failure::message(
            &tx.request.lang,
            409,
            Message::new("claim-no-way"),
            None,
        ));
    };
    let cb_state = random_token(24);
    let maintenance = state.maintenance_or_none().await;
    let ctx = context(state, &tx, &entry.id, &cb_state, &maintenance);
    let result = timed(&entry.id, entry.connector.start(&ctx)).await;
    tx.attempts = 0;
    advance(state, tx, &connector, &cb_state, result).await
}

/// Most registry checks in one login.
const MAX_LINK_ATTEMPTS: u32 = 3;

/// `POST /login/{tx}/link`: a citizen ID number to check at the registry, or "Skip".
pub async fn link(state: &Env, mut tx: LoginTx, fields: Fields) -> Outcome {
    let Stage::Link { exhausted, .. } = tx.stage else {
        return see_other(&login_url(state, &tx.id));
    };
    let lang = tx.request.lang.clone();
    let (secret, mut session) = session_of(state, &lang).await?;
    let settings = state.settings();
    let required = settings
        .clients
        .get(tx.request.client_id.as_str())
        .is_some_and(|c| c.require_citizen_id);
    if fields.get("action").map(String::as_str) == Some("skip") {
        if required {
            return see_other(&login_url(state, &tx.id));
        }
        tx.link_skipped = true;
        session.link_skipped = true;
        if let Err(e) = session::save(
            &settings,
            state.store.as_ref(),
            Some(secret.clone()),
            session.clone(),
            state.now,
        )
        .await
        {
            return Err(Failure::unavailable(&lang, &e));
        }
        tracing::info!(target: "audit", event = "link.skipped", sid = %session.sid, "citizen chose to link a citizen ID number later");
        return proceed(state, tx, &secret, session, SessionPerson::default()).await;
    }
    if exhausted {
        return see_other(&login_url(state, &tx.id));
    }
    let field = |k: &str| {
        fields
            .get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let (citizen_id, name, birthdate) = (field("citizen_id"), field("name"), field("birthdate"));
    // A typo is not an attempt: it never reaches the registry.
    if !connectors::plausible_id(&citizen_id) {
        tx.stage = Stage::Link {
            problem: Some(Message::new("link-bad-format")),
            name: super::seal_value(&settings, &tx.id, "name", &name),
            birthdate: super::seal_value(&settings, &tx.id, "birthdate", &birthdate),
            exhausted: false,
        };
        return show_stage(state, &tx).await;
    }
    match super::registry_check_budget(
        state.store.as_ref(),
        &settings.pairwise_secret,
        &state.address,
        &session.person_id,
        &citizen_id,
        state.now,
    )
    .await
    {
        Ok(None) => {}
        Ok(Some(retry_after)) => {
            let skip = (!required).then(|| {
                Action::new(
                    login_url(state, &tx.id),
                    Message::new("button-back-to-form"),
                )
            });
            return Err(Failure::too_many(&lang, retry_after).with_action(skip));
        }
        Err(e) => return Err(Failure::unavailable(&lang, &e)),
    }
    let outcome = crate::person::link::link(
        &settings,
        state.records.as_ref(),
        &session.person_id,
        &citizen_id,
        &name,
        &birthdate,
        state.now,
    )
    .await;
    use crate::person::link::LinkOutcome;
    let problem = match outcome {
        Ok(LinkOutcome::Linked) => {
            return proceed(state, tx, &secret, session, SessionPerson::default()).await
        }
        Ok(LinkOutcome::Mismatch) => "link-mismatch",
        Ok(LinkOutcome::TakenByAnother) => "link-taken",
        Ok(LinkOutcome::Unavailable) => "link-unavailable",
        Err(e) => return Err(Failure::unavailable(&lang, &e)),
    };
    // A registry that cannot answer is not the citizen's try.
    if problem != "link-unavailable" {
        tx.attempts += 1;
    }
    let exhausted = tx.attempts >= MAX_LINK_ATTEMPTS && problem != "link-unavailable";
    if exhausted {
        tracing::warn!(target: "audit", event = "link.failed", sid = %session.sid, reason = problem, "registry link abandoned after too many attempts");
        if required {
            // The platform needs a linked number: this login cannot go on.
            let _ = state
                .store
                .delete(&keyspace::login_tx(&tx.id), state.now)
                .await;
            let ended =
                OAuthError::new("access_denied", "the citizen ID number could not be linked");
            return Err(
                Failure::message(&lang, 429, Message::new("link-too-many"), None)
                    .with_action(back_to_platform(&settings, &tx.request, &ended, state.now)),
            );
        }
    }
    tx.stage = Stage::Link {
        problem: Some(Message::new(if exhausted {
            "link-too-many-skip"
        } else {
            problem
        })),
        name: super::seal_value(&settings, &tx.id, "name", &name),
        birthdate: super::seal_value(&settings, &tx.id, "birthdate", &birthdate),
        exhausted,
    };
    show_stage(state, &tx).await
}

/// `POST /login/{tx}/continue`: go on after a notice.
pub async fn continue_login(state: &Env, tx: LoginTx, _fields: Fields) -> Outcome {
    if !matches!(tx.stage, Stage::Notice { .. }) {
        return see_other(&login_url(state, &tx.id));
    }
    let (secret, session) = session_of(state, &tx.request.lang).await?;
    proceed(state, tx, &secret, session, SessionPerson::default()).await
}
