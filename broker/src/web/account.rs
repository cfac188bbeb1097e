//! The citizen's small account page: which citizen ID number is linked and how the citizen
//! has signed in, and "Update from the population registry" for an account that skipped
//! linking (the `003_…` document's profile page).

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use connectors::Message;

use crate::config::{ACCOUNT_CALLBACK_PATH, ACCOUNT_CLIENT_ID};
use crate::i18n::Tr;
use crate::login::Action;
use crate::person::link::{link, LinkOutcome};
use crate::session;
use crate::util::{ct_eq, random_token, sha256_b64};
use crate::web::pages;
use crate::web::state::AppState;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    t: Tr,
    name: String,
    id_status: String,
    ways: Vec<String>,
    /// The platforms signed in to in this session.
    platforms: Vec<String>,
    activity: Vec<String>,
    linked: bool,
    csrf: String,
    message: String,
    problem: String,
    birthdate: String,
}

/// The account page's CSRF token, bound to the session cookie ([`crate::csrf`]).
fn csrf_for(state: &AppState, secret: &str) -> String {
    crate::csrf::token(
        &state.settings().csrf_key,
        crate::csrf::Form::Account,
        secret,
    )
}

async fn render(req: &HttpRequest, state: &AppState, message: &str, problem: &str) -> HttpResponse {
    let lang = super::extract::lang_of(req);
    let t = Tr::new(lang).with_links(crate::i18n::language_links(lang, "/account"));
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
        Ok(None) => return not_signed_in(lang),
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
    let platforms = session
        .clients
        .iter()
        .filter(|c| c.as_str() != ACCOUNT_CLIENT_ID)
        .map(|c| {
            settings
                .clients
                .get(c)
                .map(|c| c.display_name(lang).to_string())
                .unwrap_or_else(|| c.clone())
        })
        .collect();
    let page = AccountPage {
        name: session.display_name.clone(),
        id_status,
        ways,
        platforms,
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

/// The citizen's session, or the page to show instead ("not signed in", "try again").
async fn signed_in(
    req: &HttpRequest,
    state: &AppState,
    lang: &str,
) -> Result<(String, crate::session::Session), HttpResponse> {
    let settings = state.settings();
    match session::current(
        crate::web::extract::session_cookie(req, &settings).as_deref(),
        &settings,
        state.store.as_ref(),
        state.now(),
    )
    .await
    {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(not_signed_in(lang)),
        Err(e) => Err(pages::unavailable_page(lang, &e)),
    }
}

/// "You are not signed in", with "Sign in" (an ordinary login of the account page).
fn not_signed_in(lang: &str) -> HttpResponse {
    let action = Action::new(
        format!("/account/signin?ui_locales={lang}"),
        Message::new("button-sign-in"),
    );
    pages::failure_page(
        lang,
        401,
        &Message::new("account-no-session"),
        Some(&action),
    )
}

/// `GET /account/signin`: the account page signs the citizen in like any relying party,
/// through `/authorize` (PKCE; the code comes back to [`callback`], which needs nothing of
/// it: the login itself set the session).
pub async fn sign_in(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let lang = super::extract::lang_of(&req);
    let issuer = state.settings().issuer.clone();
    let verifier = random_token(32);
    let mut url = match url::Url::parse(&format!("{issuer}/authorize")) {
        Ok(u) => u,
        Err(_) => return pages::error_page(lang, 500, "error-generic", "issuer is not a URL"),
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", ACCOUNT_CLIENT_ID)
        .append_pair("redirect_uri", &format!("{issuer}{ACCOUNT_CALLBACK_PATH}"))
        .append_pair("scope", "openid")
        .append_pair("state", &random_token(16))
        .append_pair("code_challenge", &sha256_b64(verifier.as_bytes()))
        .append_pair("code_challenge_method", "S256")
        .append_pair("ui_locales", lang);
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, url.to_string()))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// `GET /account/callback`: back from signing in (the login set the session). The code is
/// left alone: it is bound to a PKCE verifier nobody kept, so it cannot be redeemed, and
/// expires within a minute; taking it here would let any page burn other platforms' codes.
pub async fn callback() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, "/account"))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// `POST /account/logout`: "Sign out" on the account page ends the session everywhere,
/// as a logout confirmed by the citizen does.
pub async fn sign_out(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let lang = super::extract::lang_of(&req);
    let (secret, session) = match signed_in(&req, &state, lang).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let csrf_ok = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "csrf")
        .is_some_and(|(_, c)| ct_eq(c.as_bytes(), csrf_for(&state, &secret).as_bytes()));
    if !csrf_ok {
        let again = Action::new("/account", Message::new("button-account"));
        return pages::failure(
            &crate::login::Failure::page(
                lang,
                400,
                "error-form-expired",
                "missing or wrong CSRF token",
            )
            .with_action(Some(again)),
        );
    }
    super::logout::log_out(&state, lang, &secret, session, None, None).await
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
    let (secret, session) = match signed_in(&req, &state, lang).await {
        Ok(s) => s,
        Err(page) => return page,
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
    let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
    if !connectors::plausible_id(&get("citizen_id")) {
        return render(&req, &state, "", "link-bad-format").await;
    }
    // The same budgets as in a login: registry checks are guessable.
    let address = super::extract::client_address(&req, settings.trust_forwarded_for);
    match crate::login::registry_check_budget(
        state.store.as_ref(),
        &settings.pairwise_secret,
        &address,
        &session.person_id,
        &get("citizen_id"),
        state.now(),
    )
    .await
    {
        Ok(Some(retry_after)) => {
            let back = Action::new("/account", Message::new("button-account"));
            return pages::too_many_requests(lang, retry_after, Some(&back));
        }
        Ok(None) => {}
        Err(e) => return pages::unavailable_page(lang, &e),
    }
    let outcome = link(
        &settings,
        state.records.as_ref(),
        &session.person_id,
        &get("citizen_id"),
        &get("name"),
        &get("birthdate"),
        state.now(),
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
