//! The login pages and upstream callbacks: each POST handler takes a [`LoginForm`] (the
//! transaction loaded, bound to this browser, its CSRF token checked) and calls the step of
//! [`crate::login::steps`]; `GET /login/{tx}` renders the stage the login is at.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};

use super::error::PageError;
use super::extract::{client_address, lang_of, session_cookie};
use super::pages::Page;
use super::state::AppState;
use crate::login::steps::{self, Fields};
use crate::login::{eligible, Answer, Env, LoginTx, Outcome, Stage};
use crate::session;

/// What the login flow needs of a request.
pub fn env_of(req: &HttpRequest, state: &AppState) -> Env {
    let settings = state.settings();
    let address = client_address(req, settings.trust_forwarded_for);
    let mut env = Env::new(
        settings.clone(),
        state.store.clone(),
        state.records.clone(),
        state.now(),
        address,
    );
    env.session_cookie = session_cookie(req, &settings);
    env.browser_cookie = req
        .cookie(session::browser_cookie_name(&settings))
        .map(|c| c.value().to_string());
    env.last_source = req
        .cookie(session::last_source_cookie_name(&settings))
        .map(|c| c.value().to_string());
    env.maintenance = state.maintenance.clone();
    env
}

/// Turns the flow's answer into a 303 with its cookies.
pub fn respond(state: &AppState, outcome: Outcome) -> Result<HttpResponse, PageError> {
    let Answer {
        to,
        session_cookie,
        browser_cookie,
        last_source,
    } = outcome?;
    let settings = state.settings();
    let mut resp = super::oidc::deliver(to);
    for (name, value) in [
        (session::cookie_name(&settings), session_cookie),
        (session::browser_cookie_name(&settings), browser_cookie),
    ] {
        if let Some(value) = value {
            // Adding a cookie fails only on a malformed name, and ours are constants.
            let _ = resp.add_cookie(&secure_cookie(&settings, name, value));
        }
    }
    if let Some(source) = last_source {
        let mut cookie = secure_cookie(
            &settings,
            session::last_source_cookie_name(&settings),
            source,
        );
        cookie.set_max_age(actix_web::cookie::time::Duration::days(365));
        let _ = resp.add_cookie(&cookie);
    }
    Ok(resp)
}

/// A submitted login form: the transaction of `/login/{tx}/…`, loaded and bound to this
/// browser, with its CSRF token checked, and the form's fields.
pub struct LoginForm {
    /// What the flow needs of the request.
    pub env: Env,
    /// The transaction.
    pub tx: LoginTx,
    /// The form's fields.
    pub fields: Fields,
}

impl FromRequest for LoginForm {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, PageError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let lang = lang_of(&req);
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| PageError::new(lang, 500, "error-generic", "no state"))?;
            let body = body
                .await
                .map_err(|_| PageError::new(lang, 400, "error-bad-request", "unreadable form"))?;
            let fields: Fields = url::form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let id = req.match_info().get("tx").unwrap_or_default().to_string();
            let env = env_of(&req, state);
            let tx = steps::load_post(&env, &id, &fields, lang).await?;
            Ok(LoginForm { env, tx, fields })
        })
    }
}

macro_rules! form_handler {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub async fn $name(
            state: web::Data<AppState>,
            form: LoginForm,
        ) -> Result<HttpResponse, PageError> {
            let LoginForm { env, tx, fields } = form;
            respond(&state, steps::$name(&env, tx, fields).await)
        }
    };
}

form_handler!(
    /// `POST /login/{tx}/start`: the citizen chose an identity source.
    start
);
form_handler!(
    /// `POST /login/{tx}/step`: the answer to a connector's form, or a poll.
    step
);
form_handler!(
    /// `POST /login/{tx}/consent`
    consent
);
form_handler!(
    /// `POST /login/{tx}/account`: continue with the session, or another account.
    account
);
form_handler!(
    /// `POST /login/{tx}/back`: "Choose another way", keeping the login.
    back
);
form_handler!(
    /// `POST /login/{tx}/cancel`: the citizen gives up; the platform gets `access_denied`.
    cancel
);
form_handler!(
    /// `POST /login/{tx}/claim`: prove the older account, or disown it.
    claim
);
form_handler!(
    /// `POST /login/{tx}/link`: a citizen ID number to check, or "Skip".
    link
);
form_handler!(
    /// `POST /login/{tx}/continue`: go on after a notice.
    continue_login
);

/// `GET /callback/{connector}`: an upstream identity provider sends the citizen back.
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let params: Fields = url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let env = env_of(&req, &state);
    respond(
        &state,
        steps::callback(&env, &path, params, lang_of(&req)).await,
    )
}

/// `GET /login/{tx}`: the page of the current stage.
pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let env = env_of(&req, &state);
    let mut tx = steps::load(&env, &path, lang_of(&req)).await?;
    // The language menu: `?ui_locales=` switches this login's language and keeps it.
    let asked = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "ui_locales")
        .and_then(|(_, v)| crate::i18n::supported(&v));
    if let Some(lang) = asked.filter(|l| *l != tx.request.lang) {
        tx.request.lang = lang.to_string();
        crate::login::save_tx(&env, &tx)
            .await
            .map_err(|e| PageError::unavailable(lang, &e))?;
    }
    // `load` checked that this browser holds the binding cookie.
    let page = Page::new(
        &state,
        &tx,
        env.browser_cookie.as_deref().unwrap_or_default(),
    );
    let lang = tx.request.lang.as_str();
    Ok(match &tx.stage {
        // Back from an upstream page (the browser's back button) shows the choice too:
        // starting a source there withdraws the upstream request.
        Stage::Choose
        | Stage::Step {
            view: crate::login::View::Redirect,
            ..
        } => {
            let m = env
                .maintenance()
                .await
                .map_err(|e| PageError::unavailable(lang, &e))?;
            page.choose(
                &eligible(&state.settings(), tx.request.min_level),
                &m,
                env.last_source.as_deref(),
            )
        }
        Stage::Step {
            connector, view, ..
        } => page.step(connector, view),
        Stage::Consent => page.consent(),
        Stage::Claim => {
            let source = match &tx.pending {
                Some(p) => steps::weak_connector(&env, &p.weak).await,
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
            exhausted,
        } => {
            let settings = state.settings();
            let required = settings
                .clients
                .get(tx.request.client_id.as_str())
                .is_some_and(|c| c.require_citizen_id);
            let open = |field: &str, sealed: &str| {
                crate::login::open_form_value(&settings, &tx.id, field, sealed)
            };
            page.link(
                problem.as_ref(),
                &open("name", name),
                &open("birthdate", birthdate),
                !required,
                *exhausted,
            )
        }
        Stage::Notice { key } => page.notice(key),
        Stage::SelectAccount => {
            let name = env
                .session()
                .await
                .map_err(|e| PageError::unavailable(lang, &e))?
                .map(|(_, s)| s.display_name)
                .unwrap_or_default();
            page.select_account(&name)
        }
    })
}

/// A cookie with the broker's security attributes.
pub fn secure_cookie<'a>(
    settings: &crate::config::Settings,
    name: &'a str,
    value: String,
) -> Cookie<'a> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .secure(settings.secure_cookies)
        .same_site(SameSite::Lax)
        .finish()
}
