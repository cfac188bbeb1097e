//! The citizen's small account page: which citizen ID number is linked and how the citizen
//! has signed in, and "Update from the population registry" for an account that skipped
//! linking (the `003_…` document's profile page).

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use crate::i18n::Tr;
use crate::person::link::{link, LinkOutcome};
use crate::session;
use crate::util::ct_eq;
use crate::web::pages;
use crate::web::state::AppState;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    t: Tr,
    name: String,
    id_status: String,
    ways: Vec<String>,
    activity: Vec<String>,
    linked: bool,
    csrf: String,
    message: String,
    problem: String,
    birthdate: String,
}

/// The account page's CSRF token: a keyed hash of the session cookie under a key of its
/// own, derived from the pairwise secret once per token, so the framing of pairwise
/// subjects and index keys (`pairwise_b64`) is never reused for it.
fn csrf_for(state: &AppState, secret: &str) -> String {
    let key = common::hash::KeyedHash::new(&state.settings().pairwise_secret)
        .mac(&[b"account-page csrf key"]);
    common::hash::KeyedHash::new(&key).tag("account-csrf", secret)
}

async fn render(req: &HttpRequest, state: &AppState, message: &str, problem: &str) -> HttpResponse {
    let lang = super::extract::lang_of(req);
    let t = Tr::new(lang);
    let settings = state.settings();
    let store = state.store.as_ref();
    let (secret, session) = match session::current(
        crate::web::extract::session_cookie(req, &settings).as_deref(),
        &settings,
        store,
        state.now(),
    )
    .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return pages::error_page(lang, 401, "account-no-session", ""),
        Err(e) => return pages::unavailable_page(lang, &e),
    };
    let person =
        match crate::person::load(&settings, state.records.as_ref(), &session.person_id).await {
            Ok(p) => p,
            Err(e) => return pages::unavailable_page(lang, &e),
        };
    let (id_status, linked) = match person.as_ref().and_then(|p| p.citizen_id()) {
        Some(id) => {
            let last: String = id
                .chars()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let args = std::collections::BTreeMap::from([("last".to_string(), last)]);
            (t.with("account-id-linked", &args), true)
        }
        None => (t.get("account-id-missing"), false),
    };
    let ways = person
        .as_ref()
        .map(|p| {
            p.links
                .iter()
                .map(|l| {
                    settings
                        .connector(&l.connector)
                        .map(|c| t.pick(&c.name).to_string())
                        .unwrap_or_else(|| l.connector.clone())
                })
                .collect()
        })
        .unwrap_or_default();
    let activity = match crate::person::activity::shown(
        &settings,
        &t,
        state.records.as_ref(),
        &session.person_id,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => return pages::unavailable_page(lang, &e),
    };
    let birthdate = person
        .as_ref()
        .and_then(|p| p.claims.get("birthdate"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let page = AccountPage {
        name: session.display_name.clone(),
        id_status,
        ways,
        activity,
        linked,
        csrf: csrf_for(state, &secret),
        message: if message.is_empty() {
            String::new()
        } else {
            t.get(message)
        },
        problem: if problem.is_empty() {
            String::new()
        } else {
            t.get(problem)
        },
        birthdate,
        t,
    };
    match page.render() {
        Ok(body) => pages::html(200, body),
        Err(_) => pages::error_page(lang, 500, "error-generic", ""),
    }
}

/// `GET /account`
pub async fn show(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    render(&req, &state, "", "").await
}

/// `POST /account/link`: "Update from the population registry".
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let lang = super::extract::lang_of(&req);
    let fields: std::collections::BTreeMap<String, String> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.trim().to_string()))
        .collect();
    let settings = state.settings();
    let (secret, session) = match session::current(
        crate::web::extract::session_cookie(&req, &settings).as_deref(),
        &settings,
        state.store.as_ref(),
        state.now(),
    )
    .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return pages::error_page(lang, 401, "account-no-session", ""),
        Err(e) => return pages::unavailable_page(lang, &e),
    };
    let csrf_ok = fields
        .get("csrf")
        .is_some_and(|c| ct_eq(c.as_bytes(), csrf_for(&state, &secret).as_bytes()));
    if !csrf_ok {
        return pages::error_page(
            lang,
            400,
            "error-form-expired",
            "missing or wrong CSRF token",
        );
    }
    // Same limit as in a login: registry checks are guessable.
    let key = crate::keyspace::account_link_limit(&session.sid);
    match state
        .store
        .hit_rate_limit(&key, 5, std::time::Duration::from_secs(3600), state.now())
        .await
    {
        Ok(d) if !d.allowed => {
            return pages::too_many_requests(lang, d.retry_after.as_secs().max(1))
        }
        Ok(_) => {}
        Err(e) => return pages::unavailable_page(lang, &e),
    }
    let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
    let outcome = link(
        &settings,
        state.records.as_ref(),
        &session.person_id,
        &get("citizen_id"),
        &get("name"),
        &get("birthdate"),
    )
    .await;
    match outcome {
        Ok(LinkOutcome::Linked) => render(&req, &state, "account-linked", "").await,
        Ok(LinkOutcome::Mismatch) => render(&req, &state, "", "link-mismatch").await,
        Ok(LinkOutcome::TakenByAnother) => render(&req, &state, "", "link-taken").await,
        Ok(LinkOutcome::Unavailable) => render(&req, &state, "", "link-unavailable").await,
        Err(e) => pages::unavailable_page(lang, &e),
    }
}
