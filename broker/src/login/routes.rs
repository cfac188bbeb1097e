//! HTTP handlers of the login pages and of upstream callbacks.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use connectors::{ConnectorError, Context, Input, Message, Step};

use super::complete::{authenticated, issue_code_response, proceed, record_consent};
use super::{
    eligible, login_url, save_tx, see_other, show_stage, tx_key, LoginTx, Stage, View, MAX_ATTEMPTS,
};
use crate::oidc::authorize::error_to_client;
use crate::oidc::OAuthError;
use crate::pages::{self, Page};
use crate::person::resolve::Claim;
use crate::session;
use crate::state::AppState;
use crate::util::{ct_eq, now_millis, random_token, sha256_b64};

/// Form submissions per address and connector in five minutes (password guessing).
const STEP_LIMIT_PER_ADDRESS: u64 = 30;

/// Polls of waiting pages per address and connector in five minutes (one a second).
const POLL_LIMIT_PER_ADDRESS: u64 = 300;

fn lang_of(req: &HttpRequest) -> &'static str {
    crate::i18n::negotiate(
        None,
        req.headers()
            .get(actix_web::http::header::ACCEPT_LANGUAGE)
            .and_then(|h| h.to_str().ok()),
    )
}

/// The client's address for rate limits: the peer, or the forwarding headers when the
/// operator says a proxy sets them.
pub fn client_address(req: &HttpRequest, settings: &crate::config::Settings) -> String {
    let forwarded = settings
        .trust_forwarded_for
        .then(|| {
            req.connection_info()
                .realip_remote_addr()
                .map(str::to_string)
        })
        .flatten();
    forwarded
        .or_else(|| req.peer_addr().map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// Runs a connector call and records its latency (`broker_connector_seconds`).
async fn timed<T>(connector: &str, call: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = call.await;
    metrics::histogram!("broker_connector_seconds", "connector" => connector.to_string())
        .record(started.elapsed().as_secs_f64());
    out
}

/// Loads a transaction and checks that this browser started it.
async fn load(req: &HttpRequest, state: &AppState, id: &str) -> Result<LoginTx, HttpResponse> {
    let lang = lang_of(req);
    let bytes = state
        .store
        .get(&tx_key(id), now_millis())
        .await
        .map_err(|e| pages::unavailable_page(lang, &e))?;
    let Some(tx) = bytes.and_then(|b| serde_json::from_slice::<LoginTx>(&b).ok()) else {
        return Err(pages::error_page(
            lang,
            400,
            "error-login-expired",
            "unknown or expired login",
        ));
    };
    let bound = req
        .cookie(session::browser_cookie_name(&state.settings()))
        .is_some_and(|c| {
            ct_eq(
                sha256_b64(c.value().as_bytes()).as_bytes(),
                tx.browser.as_bytes(),
            )
        });
    if !bound {
        return Err(pages::error_page(
            &tx.request.lang,
            400,
            "error-other-browser",
            "the login was started in another browser",
        ));
    }
    Ok(tx)
}

fn form_fields(body: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Loads the transaction of a form post and checks its CSRF token.
async fn load_post(
    req: &HttpRequest,
    state: &AppState,
    id: &str,
    fields: &BTreeMap<String, String>,
) -> Result<LoginTx, HttpResponse> {
    let tx = load(req, state, id).await?;
    let csrf_ok = fields
        .get("csrf")
        .is_some_and(|c| ct_eq(c.as_bytes(), tx.csrf.as_bytes()));
    if !csrf_ok {
        return Err(pages::error_page(
            &tx.request.lang,
            400,
            "error-form-expired",
            "missing or wrong CSRF token",
        ));
    }
    Ok(tx)
}

/// `GET /login/{tx}`: the page of the current stage.
pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let tx = match load(&req, &state, &path).await {
        Ok(tx) => tx,
        Err(page) => return page,
    };
    let page = Page::new(&state, &tx);
    match &tx.stage {
        Stage::Choose => match crate::maintenance::load(state.records.as_ref()).await {
            Ok(m) => page.choose(&eligible(&state.settings(), tx.request.min_level), &m),
            Err(e) => pages::unavailable_page(&tx.request.lang, &e),
        },
        Stage::Step {
            connector, view, ..
        } => page.step(connector, view),
        Stage::Consent => page.consent(),
        Stage::Claim => {
            let source = match &tx.pending {
                Some(p) => weak_connector(&state, &p.weak).await,
                None => None,
            };
            let name = source
                .and_then(|id| {
                    state.settings().connector(&id).map(|c| {
                        crate::i18n::Tr::new(&tx.request.lang)
                            .pick(&c.name)
                            .to_string()
                    })
                })
                .unwrap_or_default();
            page.claim(&name, tx.notice.as_deref())
        }
        Stage::Link {
            problem,
            name,
            birthdate,
        } => {
            let settings = state.settings();
            let required = settings
                .clients
                .get(&tx.request.client_id)
                .is_some_and(|c| c.require_citizen_id);
            page.link(problem.as_ref(), name, birthdate, !required)
        }
        Stage::Notice { key } => page.notice(key),
        Stage::SelectAccount => {
            let name = session::current(&req, &state.settings(), state.store.as_ref())
                .await
                .ok()
                .flatten()
                .map(|(_, s)| s.display_name)
                .unwrap_or_default();
            page.select_account(&name)
        }
    }
}

fn context(
    req: &HttpRequest,
    state: &AppState,
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
        login_hint: tx.request.login_hint.clone(),
        min_assurance: tx.request.min_level,
        now: now_millis() / 1000,
        client_address: client_address(req, &state.settings()),
        kv: std::sync::Arc::new(crate::store::kv::StoreKv(state.store.clone())),
        maintenance: maintenance.parts_of(connector),
    }
}

/// Longest wait for a source to withdraw a request the citizen left.
const ABANDON_TIMEOUT: Duration = Duration::from_secs(2);

/// Tells the connector of the step a login is at that the citizen leaves it, so a source
/// holding a request (a prompt in the CTID app) withdraws it. Waits at most
/// [`ABANDON_TIMEOUT`]: the citizen goes on either way.
async fn abandon_step(req: &HttpRequest, state: &AppState, tx: &LoginTx) {
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
        req,
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
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let fields = form_fields(&body);
    let mut tx = match load_post(&req, &state, &path, &fields).await {
        Ok(tx) => tx,
        Err(page) => return page,
    };
    let chosen = fields.get("connector").map(String::as_str).unwrap_or("");
    let settings = state.settings();
    let allowed = eligible(&settings, tx.request.min_level);
    let Some(entry) = allowed.iter().find(|c| c.id == chosen) else {
        return pages::error_page(
            &tx.request.lang,
            400,
            "error-bad-request",
            "unknown connector",
        );
    };
    let maintenance = match crate::maintenance::load(state.records.as_ref()).await {
        Ok(m) => m,
        Err(e) => return pages::unavailable_page(&tx.request.lang, &e),
    };
    if maintenance.effective(entry).0 != crate::config::ConnectorStatus::Enabled {
        return see_other(&login_url(&state, &tx.id));
    }
    // Back from a source's step to the choice (the browser's back button): that source's
    // pending request is withdrawn first.
    abandon_step(&req, &state, &tx).await;
    let cb_state = random_token(24);
    let ctx = context(&req, &state, &tx, &entry.id, &cb_state, &maintenance);
    let result = timed(&entry.id, entry.connector.start(&ctx)).await;
    let connector_id = entry.id.clone();
    tx.attempts = 0;
    advance(&req, &state, tx, &connector_id, &cb_state, result).await
}

/// `POST /login/{tx}/step`: the answer to a connector's form (or a poll of a wait step).
pub async fn step(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let mut fields = form_fields(&body);
    let tx = match load_post(&req, &state, &path, &fields).await {
        Ok(tx) => tx,
        Err(page) => return page,
    };
    fields.remove("csrf");
    let Stage::Step {
        connector,
        state: step_state,
        view,
    } = tx.stage.clone()
    else {
        return see_other(&login_url(&state, &tx.id));
    };
    let settings = state.settings();
    let Some(entry) = settings.connector(&connector) else {
        return pages::error_page(
            &tx.request.lang,
            400,
            "error-bad-request",
            "unknown connector",
        );
    };
    let address = client_address(&req, &settings);
    // Polls of a waiting page (every few seconds) have a budget of their own.
    let (scope, budget) = match view {
        View::Wait { .. } => ("poll", POLL_LIMIT_PER_ADDRESS),
        _ => ("step", STEP_LIMIT_PER_ADDRESS),
    };
    let limit = state
        .store
        .hit_rate_limit(
            &format!("rl:{scope}:{connector}:{address}"),
            budget,
            Duration::from_secs(300),
            now_millis(),
        )
        .await;
    match limit {
        Ok(d) if !d.allowed => {
            metrics::counter!("broker_rate_limited_total", "scope" => "login_step").increment(1);
            return pages::too_many_requests(&tx.request.lang, d.retry_after.as_secs().max(1));
        }
        Ok(_) => {}
        Err(e) => return pages::unavailable_page(&tx.request.lang, &e),
    }
    let input = match view {
        View::Wait { .. } => Input::Poll,
        _ => Input::Form(fields),
    };
    let cb_state = random_token(24);
    let maintenance = crate::maintenance::load_or_none(state.records.as_ref()).await;
    let ctx = context(&req, &state, &tx, &connector, &cb_state, &maintenance);
    let result = timed(&entry.id, entry.connector.resume(&ctx, step_state, input)).await;
    advance(&req, &state, tx, &connector, &cb_state, result).await
}

/// `GET /callback/{connector}`: an upstream identity provider sends the citizen back.
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let lang = lang_of(&req);
    let params = form_fields(req.query_string().as_bytes());
    let Some(cb_state) = params.get("state") else {
        return pages::error_page(lang, 400, "error-bad-request", "callback without state");
    };
    // Single use: a replayed callback finds nothing.
    let tx_id = match state
        .store
        .take(&format!("cb:{cb_state}"), now_millis())
        .await
    {
        Ok(Some(id)) => String::from_utf8_lossy(&id).into_owned(),
        Ok(None) => {
            return pages::error_page(
                lang,
                400,
                "error-login-expired",
                "unknown or used callback state",
            )
        }
        Err(e) => return pages::unavailable_page(lang, &e),
    };
    let tx = match load(&req, &state, &tx_id).await {
        Ok(tx) => tx,
        Err(page) => return page,
    };
    let Stage::Step {
        connector,
        state: step_state,
        ..
    } = tx.stage.clone()
    else {
        return pages::error_page(
            &tx.request.lang,
            400,
            "error-login-expired",
            "login not waiting for a callback",
        );
    };
    if connector != *path {
        return pages::error_page(
            &tx.request.lang,
            400,
            "error-bad-request",
            "callback for another connector",
        );
    }
    let settings = state.settings();
    let Some(entry) = settings.connector(&connector) else {
        return pages::error_page(
            &tx.request.lang,
            400,
            "error-bad-request",
            "unknown connector",
        );
    };
    let next_state = random_token(24);
    let maintenance = crate::maintenance::load_or_none(state.records.as_ref()).await;
    let ctx = context(&req, &state, &tx, &connector, cb_state, &maintenance);
    let result = timed(
        &entry.id,
        entry
            .connector
            .resume(&ctx, step_state, Input::Callback(params.clone())),
    )
    .await;
    advance(&req, &state, tx, &connector, &next_state, result).await
}

/// Moves the login on after a connector answered.
async fn advance(
    req: &HttpRequest,
    state: &AppState,
    mut tx: LoginTx,
    connector: &str,
    cb_state: &str,
    result: Result<Step, ConnectorError>,
) -> HttpResponse {
    let lang = tx.request.lang.clone();
    let (step, problem) = match result {
        Ok(step) => (step, None),
        Err(ConnectorError::Retry { message, step }) => {
            tx.attempts += 1;
            if tx.attempts >= MAX_ATTEMPTS {
                let _ = state.store.delete(&tx_key(&tx.id), now_millis()).await;
                metrics::counter!("broker_logins_total", "connector" => connector.to_string(), "outcome" => "too_many_attempts").increment(1);
                tracing::warn!(target: "audit", event = "login.failed", connector, client = %tx.request.client_id, reason = "too_many_attempts", "login abandoned after too many wrong answers");
                return pages::failure_page(
                    &lang,
                    429,
                    &Message::new("error-too-many-attempts"),
                    None,
                );
            }
            (*step, Some(message))
        }
        Err(ConnectorError::Failed { message, detail }) => {
            let reference = random_token(6);
            metrics::counter!("broker_logins_total", "connector" => connector.to_string(), "outcome" => "failed").increment(1);
            tracing::warn!(target: "audit", event = "login.failed", connector, client = %tx.request.client_id, reason = %message.key, reference = %reference, detail = %detail, "login failed at the identity source");
            return back_to_choice(state, tx, &message, &reference).await;
        }
        Err(ConnectorError::Unavailable(detail)) => {
            let reference = random_token(6);
            metrics::counter!("broker_logins_total", "connector" => connector.to_string(), "outcome" => "unavailable").increment(1);
            metrics::counter!("broker_connector_errors_total", "connector" => connector.to_string()).increment(1);
            tracing::error!(target: "audit", event = "login.failed", connector, client = %tx.request.client_id, reason = "source_unavailable", reference = %reference, detail = %detail, "identity source unavailable");
            return back_to_choice(
                state,
                tx,
                &Message::new("error-source-unavailable"),
                &reference,
            )
            .await;
        }
        Err(ConnectorError::InvalidState(detail)) => {
            let reference = random_token(6);
            metrics::counter!("broker_logins_total", "connector" => connector.to_string(), "outcome" => "error").increment(1);
            tracing::error!(connector, reference = %reference, detail = %detail, "connector state invalid");
            return back_to_choice(state, tx, &Message::new("error-generic"), &reference).await;
        }
    };
    match step {
        Step::Done(identity) => {
            let current = session::current(req, &state.settings(), state.store.as_ref())
                .await
                .ok()
                .flatten();
            authenticated(state, tx, connector, identity, current, Claim::Ask).await
        }
        Step::Redirect { url, state: s } => {
            tx.stage = Stage::Step {
                connector: connector.into(),
                state: s,
                view: View::Redirect,
            };
            let now = now_millis();
            let ttl = Some(Duration::from_secs(state.settings().session.login_timeout));
            if let Err(e) = state
                .store
                .put(&format!("cb:{cb_state}"), tx.id.as_bytes(), ttl, now)
                .await
            {
                return pages::unavailable_page(&lang, &e);
            }
            if let Err(e) = save_tx(state, &tx).await {
                return pages::unavailable_page(&lang, &e);
            }
            see_other(&url)
        }
        Step::Form { mut form, state: s } => {
            if problem.is_some() {
                form.problem = problem;
            }
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

/// Shows a failure with a way back to the choice of identity sources.
async fn back_to_choice(
    state: &AppState,
    mut tx: LoginTx,
    message: &Message,
    reference: &str,
) -> HttpResponse {
    tx.stage = Stage::Choose;
    if let Err(e) = save_tx(state, &tx).await {
        return pages::unavailable_page(&tx.request.lang, &e);
    }
    let message = message.clone().arg("reference", reference);
    pages::failure_page(
        &tx.request.lang,
        502,
        &message,
        Some(&login_url(state, &tx.id)),
    )
}

/// `POST /login/{tx}/consent`
pub async fn consent(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let fields = form_fields(&body);
    let tx = match load_post(&req, &state, &path, &fields).await {
        Ok(tx) => tx,
        Err(page) => return page,
    };
    if !matches!(tx.stage, Stage::Consent) {
        return see_other(&login_url(&state, &tx.id));
    }
    let settings = &state.settings();
    let Some(client) = settings.clients.get(&tx.request.client_id) else {
        return pages::error_page(&tx.request.lang, 400, "error-unknown-client", "client gone");
    };
    let _ = state.store.delete(&tx_key(&tx.id), now_millis()).await;
    if fields.get("decision").map(String::as_str) != Some("allow") {
        let e = OAuthError::new("access_denied", "the citizen declined");
        return error_to_client(settings, &tx.request, &e);
    }
    let Some((secret, s)) = session::current(&req, settings, state.store.as_ref())
        .await
        .ok()
        .flatten()
    else {
        return pages::error_page(
            &tx.request.lang,
            400,
            "error-login-expired",
            "session ended",
        );
    };
    if let Err(e) = record_consent(&state, client, &tx.request, &s.person_id).await {
        return pages::unavailable_page(&tx.request.lang, &e);
    }
    issue_code_response(&state, client, &tx.request, &secret, s).await
}

/// `POST /login/{tx}/account`: continue with the current session, or use another account.
pub async fn account(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let fields = form_fields(&body);
    let mut tx = match load_post(&req, &state, &path, &fields).await {
        Ok(tx) => tx,
        Err(page) => return page,
    };
    if !matches!(tx.stage, Stage::SelectAccount) {
        return see_other(&login_url(&state, &tx.id));
    }
    let settings = &state.settings();
    let Some(client) = settings.clients.get(&tx.request.client_id) else {
        return pages::error_page(&tx.request.lang, 400, "error-unknown-client", "client gone");
    };
    let current = session::current(&req, settings, state.store.as_ref())
        .await
        .ok()
        .flatten();
    match (fields.get("choice").map(String::as_str), current) {
        (Some("continue"), Some((secret, s))) => {
            let _ = client;
            proceed(&state, tx, &secret, s).await
        }
        _ => {
            tx.stage = Stage::Choose;
            show_stage(&state, &tx).await
        }
    }
}

/// `POST /login/{tx}/cancel`: the citizen gives up; the platform gets `access_denied`.
pub async fn cancel(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let fields = form_fields(&body);
    let tx = match load_post(&req, &state, &path, &fields).await {
        Ok(tx) => tx,
        Err(page) => return page,
    };
    let _ = state.store.delete(&tx_key(&tx.id), now_millis()).await;
    abandon_step(&req, &state, &tx).await;
    let e = OAuthError::new("access_denied", "the citizen cancelled the login");
    error_to_client(&state.settings(), &tx.request, &e)
}

/// The connector through which the older account of a weak binding can prove itself.
async fn weak_connector(state: &AppState, weak: &crate::person::Binding) -> Option<String> {
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
async fn session_of(
    req: &HttpRequest,
    state: &AppState,
    lang: &str,
) -> Result<(String, crate::session::Session), HttpResponse> {
    match session::current(req, &state.settings(), state.store.as_ref()).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(pages::error_page(
            lang,
            400,
            "error-login-expired",
            "session ended",
        )),
        Err(e) => Err(pages::unavailable_page(lang, &e)),
    }
}

/// `POST /login/{tx}/claim`: the citizen proves the older account (`prove`) or disowns it
/// (`not_mine`).
pub async fn claim(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let fields = form_fields(&body);
    let mut tx = match load_post(&req, &state, &path, &fields).await {
        Ok(tx) => tx,
        Err(page) => return page,
    };
    let (Stage::Claim, Some(pending)) = (&tx.stage, tx.pending.clone()) else {
        return see_other(&login_url(&state, &tx.id));
    };
    tx.notice = None;
    if fields.get("choice").map(String::as_str) == Some("not_mine") {
        tx.pending = None;
        let current = session::current(&req, &state.settings(), state.store.as_ref())
            .await
            .ok()
            .flatten();
        return authenticated(
            &state,
            tx,
            &pending.connector,
            pending.identity,
            current,
            Claim::TakeOver,
        )
        .await;
    }
    let Some(connector) = weak_connector(&state, &pending.weak).await else {
        return pages::failure_page(&tx.request.lang, 409, &Message::new("claim-no-way"), None);
    };
    let settings = state.settings();
    let Some(entry) = settings.connector(&connector) else {
        return pages::failure_page(&tx.request.lang, 409, &Message::new("claim-no-way"), None);
    };
    let cb_state = random_token(24);
    let maintenance = crate::maintenance::load_or_none(state.records.as_ref()).await;
    let ctx = context(&req, &state, &tx, &entry.id, &cb_state, &maintenance);
    let result = timed(&entry.id, entry.connector.start(&ctx)).await;
    tx.attempts = 0;
    advance(&req, &state, tx, &connector, &cb_state, result).await
}

/// Most registry checks in one login.
const MAX_LINK_ATTEMPTS: u32 = 3;

/// `POST /login/{tx}/link`: a citizen ID number to check at the registry, or "Skip".
pub async fn link(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let fields = form_fields(&body);
    let mut tx = match load_post(&req, &state, &path, &fields).await {
        Ok(tx) => tx,
        Err(page) => return page,
    };
    if !matches!(tx.stage, Stage::Link { .. }) {
        return see_other(&login_url(&state, &tx.id));
    }
    let lang = tx.request.lang.clone();
    let (secret, mut session) = match session_of(&req, &state, &lang).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let settings = state.settings();
    let required = settings
        .clients
        .get(&tx.request.client_id)
        .is_some_and(|c| c.require_citizen_id);
    if fields.get("action").map(String::as_str) == Some("skip") {
        if required {
            return see_other(&login_url(&state, &tx.id));
        }
        tx.link_skipped = true;
        session.link_skipped = true;
        if let Err(e) = session::save(
            &settings,
            state.store.as_ref(),
            Some(secret.clone()),
            session.clone(),
        )
        .await
        {
            return pages::unavailable_page(&lang, &e);
        }
        tracing::info!(target: "audit", event = "link.skipped", sid = %session.sid, "citizen chose to link a citizen ID number later");
        return proceed(&state, tx, &secret, session).await;
    }
    let field = |k: &str| {
        fields
            .get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let (citizen_id, name, birthdate) = (field("citizen_id"), field("name"), field("birthdate"));
    let outcome = crate::person::link::link(
        &settings,
        state.records.as_ref(),
        &session.person_id,
        &citizen_id,
        &name,
        &birthdate,
    )
    .await;
    use crate::person::link::LinkOutcome;
    let problem = match outcome {
        Ok(LinkOutcome::Linked) => return proceed(&state, tx, &secret, session).await,
        Ok(LinkOutcome::Mismatch) => "link-mismatch",
        Ok(LinkOutcome::NotFound) => "link-not-found",
        Ok(LinkOutcome::TakenByAnother) => "link-taken",
        Ok(LinkOutcome::Unavailable) => "link-unavailable",
        Err(e) => return pages::unavailable_page(&lang, &e),
    };
    tx.attempts += 1;
    if tx.attempts >= MAX_LINK_ATTEMPTS && problem != "link-unavailable" {
        let _ = state.store.delete(&tx_key(&tx.id), now_millis()).await;
        tracing::warn!(target: "audit", event = "link.failed", sid = %session.sid, reason = problem, "registry link abandoned after too many attempts");
        return pages::failure_page(&lang, 429, &Message::new("link-too-many"), None);
    }
    tx.stage = Stage::Link {
        problem: Some(Message::new(problem)),
        name,
        birthdate,
    };
    show_stage(&state, &tx).await
}

/// `POST /login/{tx}/continue`: go on after a notice.
pub async fn continue_login(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let fields = form_fields(&body);
    let tx = match load_post(&req, &state, &path, &fields).await {
        Ok(tx) => tx,
        Err(page) => return page,
    };
    if !matches!(tx.stage, Stage::Notice { .. }) {
        return see_other(&login_url(&state, &tx.id));
    }
    let (secret, session) = match session_of(&req, &state, &tx.request.lang).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    proceed(&state, tx, &secret, session).await
}
