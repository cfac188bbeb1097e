//! The logout endpoint (RP-Initiated Logout 1.0, `end_session_endpoint`): who asked, the
//! confirmation page, and the way back; ending the session is [`crate::oidc::logout::end`].
//!
//! Ending a session deletes it from the store (so every instance sees it gone at once),
//! revokes the refresh-token families it issued without `offline_access`, enqueues a signed
//! logout token for each platform of the session that has a back channel (delivered by a
//! background job with retries, after a restart too: [`super::backchannel`]), and loads the
//! front-channel pages of the others in iframes.

use std::time::Duration;

use actix_web::cookie::Cookie;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::csrf;
use crate::i18n;
use crate::keyspace;
use crate::login::Action;
use crate::session::{self, Session};
use crate::util::{ct_eq, random_token};
use crate::web::pages;
use crate::web::state::AppState;
use connectors::Message;

/// A logout waiting for the citizen's confirmation (its form's token is bound to the
/// session cookie: [`crate::csrf`]).
#[derive(Debug, Serialize, Deserialize)]
struct PendingLogout {
    client_id: Option<String>,
    redirect: Option<String>,
    state: Option<String>,
    lang: String,
}

#[derive(Deserialize)]
struct HintClaims {
    aud: serde_json::Value,
    sid: Option<String>,
}

/// `GET|POST /logout`
pub async fn end_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    browser: crate::web::extract::BrowserParams,
) -> HttpResponse {
    let settings = &state.settings();
    let crate::web::extract::BrowserParams { params, lang } = browser;

    // The hint is ours if it verifies, even expired (OIDC RP-Initiated Logout 2).
    let hint = match params.get("id_token_hint") {
        Some(token) => {
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            v.validate_exp = false;
            v.validate_aud = false;
            v.set_required_spec_claims(&["iss", "aud"]);
            v.set_issuer(&[&settings.issuer]);
            match settings.keys.verify::<HintClaims>(token, &v) {
                Some(h) => Some(h),
                None => {
                    return pages::error_page(
                        lang,
                        400,
                        "error-bad-request",
                        "id_token_hint is not an ID token of this issuer",
                    )
                }
            }
        }
        None => None,
    };
    let hint_client = hint.as_ref().and_then(|h| match &h.aud {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => a.first().and_then(|v| v.as_str()).map(str::to_string),
        _ => None,
    });
    let client_id = match (params.get("client_id"), &hint_client) {
        (Some(a), Some(b)) if a != b => {
            return pages::error_page(
                lang,
                400,
                "error-bad-request",
                "client_id does not match id_token_hint",
            )
        }
        (Some(a), _) => Some(a.clone()),
        (None, b) => b.clone(),
    };
    let client = match &client_id {
        Some(id) => match settings.clients.get(id) {
            Some(c) => Some(c),
            None => {
                return pages::error_page(lang, 400, "error-unknown-client", "unknown client_id")
            }
        },
        None => None,
    };
    // Never redirect anywhere not registered for the identified client.
    let redirect = match (params.get("post_logout_redirect_uri"), client) {
        (Some(uri), Some(c)) if c.post_logout_redirect_uris.iter().any(|u| u == uri) => {
            Some(uri.clone())
        }
        (Some(_), _) => {
            return pages::error_page(
                lang,
                400,
                "error-bad-redirect",
                "post_logout_redirect_uri is not registered for this client",
            )
        }
        (None, _) => None,
    };
    let logout_state = params.get("state").cloned();

    let current = match session::current(
        crate::web::extract::session_cookie(&req, settings).as_deref(),
        settings,
        state.store.as_ref(),
        state.now(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return pages::unavailable_page(lang, &e),
    };
    let Some((secret, session)) = current else {
        return finish(
            settings,
            lang,
            redirect.as_deref(),
            logout_state.as_deref(),
            &[],
        );
    };
    let trusted = hint
        .as_ref()
        .and_then(|h| h.sid.as_deref())
        .zip(hint_client.as_deref())
        .is_some_and(|(sid, client)| {
            let expected = session::client_sid(settings, &session.sid, client);
            ct_eq(sid.as_bytes(), expected.as_bytes())
        });
    if trusted {
        return log_out(
            &state,
            lang,
            &secret,
            session,
            redirect.as_deref(),
            logout_state.as_deref(),
        )
        .await;
    }

    // Not provably asked by a platform of this session: ask the citizen.
    let id = random_token(24);
    let csrf = csrf::token(&settings.csrf_key, csrf::Form::Logout(&id), &secret);
    let pending = PendingLogout {
        client_id,
        redirect,
        state: logout_state,
        lang: lang.to_string(),
    };
    if let Err(e) = keyspace::put_json(
        state.store.as_ref(),
        &keyspace::pending_logout(&id),
        &pending,
        Some(Duration::from_secs(600)),
        state.now(),
    )
    .await
    {
        return pages::unavailable_page(lang, &e);
    }
    let client_name = pending
        .client_id
        .as_ref()
        .and_then(|c| settings.clients.get(c))
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let again = match req.query_string() {
        "" => "/logout".to_string(),
        q => format!("/logout?{q}"),
    };
    pages::logout_confirm(
        lang,
        &id,
        &csrf,
        &session.display_name,
        &client_name,
        &again,
    )
}

/// `POST /logout/{id}`: the citizen confirmed (or declined) the logout.
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let settings = &state.settings();
    let fields: std::collections::BTreeMap<String, String> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let lang = i18n::negotiate(
        None,
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|h| h.to_str().ok()),
    );
    let key = keyspace::pending_logout(&path);
    let pending =
        match keyspace::take_json::<PendingLogout>(state.store.as_ref(), &key, state.now()).await {
            Ok(p) => p,
            Err(e) => return pages::unavailable_page(lang, &e),
        };
    let Some(pending) = pending else {
        return pages::error_page(
            lang,
            400,
            "error-form-expired",
            "unknown or used logout request",
        );
    };
    let lang = pending.lang.as_str();
    let current = match session::current(
        crate::web::extract::session_cookie(&req, settings).as_deref(),
        settings,
        state.store.as_ref(),
        state.now(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return pages::unavailable_page(lang, &e),
    };
    // The session is gone already: nothing is left to log out or to keep.
    let Some((secret, session)) = current else {
        return finish(
            settings,
            lang,
            pending.redirect.as_deref(),
            pending.state.as_deref(),
            &[],
        );
    };
    let csrf_ok = csrf::check(
        &settings.csrf_key,
        csrf::Form::Logout(&path),
        Some(&secret),
        fields.get("csrf").map(String::as_str),
    );
    if !csrf_ok {
        return pages::error_page(
            lang,
            400,
            "error-form-expired",
            "missing or wrong CSRF token",
        );
    }
    if fields.get("decision").map(String::as_str) != Some("logout") {
        return still_signed_in(settings, lang, pending.client_id.as_deref());
    }
    log_out(
        &state,
        lang,
        &secret,
        session,
        pending.redirect.as_deref(),
        pending.state.as_deref(),
    )
    .await
}

/// Ends a session everywhere and tells its platforms.
pub async fn log_out(
    state: &AppState,
    lang: &str,
    secret: &str,
    session: Session,
    redirect: Option<&str>,
    logout_state: Option<&str>,
) -> HttpResponse {
    let settings = &state.settings();
    let front = match crate::oidc::logout::end(
        settings,
        state.store.as_ref(),
        secret,
        &session,
        state.now(),
    )
    .await
    {
        Ok(front) => front,
        Err(e) => return pages::unavailable_page(lang, &e),
    };
    let mut resp = finish(settings, lang, redirect, logout_state, &front);
    let mut gone = Cookie::build(session::cookie_name(settings), "")
        .path("/")
        .http_only(true)
        .secure(settings.secure_cookies)
        .finish();
    gone.make_removal();
    let _ = resp.add_cookie(&gone);
    resp
}

/// After logout: straight back to the platform, or a page that first loads the
/// front-channel logout pages.
fn finish(
    settings: &Settings,
    lang: &str,
    redirect: Option<&str>,
    logout_state: Option<&str>,
    front: &[String],
) -> HttpResponse {
    let target = redirect.map(|r| with_state(r, logout_state));
    match (&target, front.is_empty()) {
        (Some(t), true) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, t.clone()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        _ => {
            let _ = settings;
            pages::logged_out(lang, front, target.as_deref())
        }
    }
}

/// The citizen chose to stay signed in. Nothing was logged out, so nothing goes to the
/// `post_logout_redirect_uri` (RP-Initiated Logout 1.0 sends there only "after a logout
/// has been performed"): a page says so, with a way back to the platform's home page,
/// which learns nothing, or else to the account page. Its language menu leads to
/// [`kept`], the same page by `GET` (this one answers the confirmation's `POST`).
fn still_signed_in(settings: &Settings, lang: &str, client_id: Option<&str>) -> HttpResponse {
    let client = client_id.and_then(|id| settings.clients.get(id));
    let action = match client {
        Some(c) if !c.home_url.is_empty() => Action::new(
            c.home_url.clone(),
            Message::new("button-back-to-platform").arg("platform", c.display_name(lang)),
        ),
        _ => Action::new("/account", Message::new("button-account")),
    };
    // Only a registered client's id goes into the menu's links.
    let again = match client {
        Some(c) => {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("client_id", c.id.as_str());
            format!("/logout/kept?{}", q.finish())
        }
        None => "/logout/kept".to_string(),
    };
    pages::failure_page_with_languages(
        lang,
        200,
        &Message::new("logout-kept"),
        Some(&action),
        crate::i18n::language_links(lang, &again),
    )
}

/// `GET /logout/kept`: the page of a citizen who stayed signed in, in the language the
/// menu chose. It changes nothing and says nothing about any session.
pub async fn kept(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let client_id = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned());
    still_signed_in(
        &state.settings(),
        super::extract::lang_of(&req),
        client_id.as_deref(),
    )
}

fn with_state(uri: &str, logout_state: Option<&str>) -> String {
    match (url::Url::parse(uri), logout_state) {
        (Ok(mut u), Some(s)) => {
            u.query_pairs_mut().append_pair("state", s);
            u.to_string()
        }
        _ => uri.to_string(),
    }
}
