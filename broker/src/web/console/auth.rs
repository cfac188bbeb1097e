//! Who is at the console: a broker session at the console's assurance whose person's
//! citizen ID number is an operator's (compared by keyed hash).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use connectors::Message;

use crate::config::{Role, Settings, CONSOLE_CALLBACK_PATH, CONSOLE_CLIENT_ID};
use crate::login::Action;
use crate::session;
use crate::util::{random_token, sha256_b64};
use crate::web::pages;
use crate::web::state::AppState;

/// The operator signed in to the console.
pub struct Operator {
    /// Their name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The CSRF token of the console's forms (bound to the session cookie).
    pub csrf: String,
    /// The page's language.
    pub lang: &'static str,
}

impl Operator {
    /// Whether they may do what `needed` may.
    pub fn may(&self, needed: Role) -> bool {
        self.role >= needed
    }
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The operator at this request, or the page to show instead: 404 without a console, the
/// sign-in without a session, a refusal for a session too weak or of someone else.
pub async fn operator(req: &HttpRequest, state: &AppState) -> Result<Operator, HttpResponse> {
    let lang = crate::web::extract::lang_of(req);
    let settings = state.settings();
    let Some(console) = settings.console.as_ref() else {
        return Err(pages::error_page(
            lang,
            404,
            "error-bad-request",
            "no console is configured",
        ));
    };
    let (secret, session) = match session::current(
        crate::web::extract::session_cookie(req, &settings).as_deref(),
        &settings,
        state.store.as_ref(),
        state.now(),
    )
    .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return Err(redirect(&format!("/console/signin?ui_locales={lang}"))),
        Err(e) => return Err(pages::unavailable_page(lang, &e)),
    };
    let again = Action::new(
        format!("/console/signin?ui_locales={lang}"),
        Message::new("console-sign-in-stronger"),
    );
    if session.level < console.min_assurance {
        return Err(pages::failure_page(
            lang,
            403,
            &Message::new("console-too-weak"),
            Some(&again),
        ));
    }
    let person =
        match crate::person::load(&settings, state.records.as_ref(), &session.person_id).await {
            Ok(p) => p,
            Err(e) => return Err(pages::unavailable_page(lang, &e)),
        };
    // An operator's number, actively bound to this person at the console's level at least
    // (a number bound only through a weak source does not make an operator).
    let found = person.as_ref().and_then(|p| {
        p.citizen_ids
            .iter()
            .filter(|c| {
                c.status == crate::person::IdStatus::Active && c.level >= console.min_assurance
            })
            .find_map(|c| {
                let hash = crate::person::id_hash(&settings, &c.value);
                console.operators.iter().find(|o| o.id_hash == hash)
            })
    });
    let Some(found) = found else {
        let account = Action::new(
            format!("/account?ui_locales={lang}"),
            Message::new("button-account"),
        );
        return Err(pages::failure_page(
            lang,
            403,
            &Message::new("console-not-operator"),
            Some(&account),
        ));
    };
    Ok(Operator {
        name: found.name.clone(),
        role: found.role,
        csrf: csrf_for(&settings, &secret),
        lang,
    })
}

/// The console's CSRF token for a session.
pub fn csrf_for(settings: &Settings, session_secret: &str) -> String {
    crate::csrf::token(
        &settings.csrf_key,
        crate::csrf::Form::Console,
        session_secret,
    )
}

/// Whether a form's token is the console's for this request's session.
pub fn csrf_ok(req: &HttpRequest, settings: &Settings, presented: Option<&str>) -> bool {
    crate::csrf::check(
        &settings.csrf_key,
        crate::csrf::Form::Console,
        crate::web::extract::session_cookie(req, settings).as_deref(),
        presented,
    )
}

/// `GET /console/signin`: an ordinary login of the console's client (PKCE), whose floor
/// makes a weaker session step up.
pub async fn sign_in(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let lang = crate::web::extract::lang_of(&req);
    let settings = state.settings();
    if settings.console.is_none() {
        return pages::error_page(lang, 404, "error-bad-request", "no console is configured");
    }
    let issuer = &settings.issuer;
    let Ok(mut url) = url::Url::parse(&format!("{issuer}/authorize")) else {
        return pages::error_page(lang, 500, "error-generic", "issuer is not a URL");
    };
    let level = settings
        .console
        .as_ref()
        .map(|c| settings.acr_of(c.min_assurance).to_string())
        .unwrap_or_default();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CONSOLE_CLIENT_ID)
        .append_pair("redirect_uri", &format!("{issuer}{CONSOLE_CALLBACK_PATH}"))
        .append_pair("scope", "openid")
        .append_pair("state", &random_token(16))
        .append_pair("code_challenge", &sha256_b64(random_token(32).as_bytes()))
        .append_pair("code_challenge_method", "S256")
        .append_pair("acr_values", &level)
        .append_pair("ui_locales", lang);
    redirect(url.as_str())
}

/// `GET /console/callback`: back from signing in. As on the account page, the code is left
/// to expire (nobody kept its verifier): the login set the session.
pub async fn callback() -> HttpResponse {
    redirect("/console")
}
