//! Citizen-facing pages (askama templates in `broker/templates/`, HTML-escaped), in the
//! citizen's language, with what to do next on every failure.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use askama::Template;
use connectors::Message;

use crate::config::ConnectorEntry;
use crate::i18n::Tr;
use crate::login::{Action, Failure, FailureKind, LoginTx, View};
use crate::web::state::AppState;
use store::StoreError;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Wraps rendered HTML with the headers every page carries.
pub fn html(status: u16, body: String) -> HttpResponse {
    html_with_csp(status, body, CSP.to_string())
}

fn html_with_csp(status: u16, body: String, csp: String) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

fn render<T: Template>(status: u16, page: &T) -> HttpResponse {
    match page.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "page rendering failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("Internal error")
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    t: Tr,
    title: String,
    message: String,
    hint: String,
    action: Option<(String, String)>,
    /// What the citizen tells the help desk (found in the broker's log).
    reference: String,
    /// A short technical note in English for the platform's developers, shown under
    /// "Details for support" only.
    detail: String,
}

impl MessagePage {
    /// The page of message `key` (with `args`): its heading is `<key>-heading` when the
    /// message has one, else "Something went wrong"; its hint `<key>-hint`, if any.
    fn new(t: Tr, key: &str, args: &std::collections::BTreeMap<String, String>) -> Self {
        let optional = |suffix: &str| t.try_with(&format!("{key}{suffix}"), args);
        MessagePage {
            title: optional("-heading").unwrap_or_else(|| t.get("error-title")),
            message: t.with(key, args),
            hint: optional("-hint").unwrap_or_default(),
            action: None,
            reference: String::new(),
            detail: String::new(),
            t,
        }
    }

    /// A technical `detail` for support: logged with a reference shown on the page.
    fn note(&mut self, key: &str, status: u16, detail: &str) {
        if !detail.is_empty() {
            let reference = crate::util::random_token(6);
            tracing::info!(%reference, message = key, status, detail, "error page shown");
            self.reference = reference;
            self.detail = detail.to_string();
        }
    }

    /// The button of a way on.
    fn action_of(&self, a: &Action) -> (String, String) {
        (a.href.clone(), self.t.with(&a.label.key, &a.label.args))
    }
}

/// An error page: `key` names the message (its `-heading` and `-hint` variants are used
/// when they exist); `detail` is a short technical note for the platform's developers,
/// logged with a reference and shown only under "Details for support".
pub fn error_page(lang: &str, status: u16, key: &str, detail: &str) -> HttpResponse {
    error_page_with_languages(lang, status, key, detail, Vec::new())
}

/// [`error_page`] with a language menu (see [`crate::i18n::language_links`]).
pub fn error_page_with_languages(
    lang: &str,
    status: u16,
    key: &str,
    detail: &str,
    languages: Vec<crate::i18n::LanguageLink>,
) -> HttpResponse {
    let mut page = MessagePage::new(
        Tr::new(lang).with_links(languages),
        key,
        &Default::default(),
    );
    page.note(key, status, detail);
    render(status, &page)
}

/// A failure at an identity source, with a way on (back to the choice page, or to the
/// platform).
pub fn failure_page(
    lang: &str,
    status: u16,
    message: &Message,
    action: Option<&Action>,
) -> HttpResponse {
    message_page(Tr::new(lang), status, message, action)
}

/// [`failure_page`] with a language menu (see [`crate::i18n::language_links`]).
pub fn failure_page_with_languages(
    lang: &str,
    status: u16,
    message: &Message,
    action: Option<&Action>,
    languages: Vec<crate::i18n::LanguageLink>,
) -> HttpResponse {
    message_page(Tr::new(lang).with_links(languages), status, message, action)
}

/// The page of `message` in `t`'s language, with its way on and the reference it carries.
fn message_page(t: Tr, status: u16, message: &Message, action: Option<&Action>) -> HttpResponse {
    let mut page = MessagePage::new(t, &message.key, &message.args);
    page.action = action.map(|a| page.action_of(a));
    page.reference = message.args.get("reference").cloned().unwrap_or_default();
    render(status, &page)
}

/// The page of a login [`Failure`], with its way on.
pub fn failure(f: &Failure) -> HttpResponse {
    let (lang, status, action) = (f.lang.as_str(), f.status, f.action.as_deref());
    let t = || {
        let links = f
            .menu
            .as_deref()
            .map(|path| crate::i18n::language_links(lang, path))
            .unwrap_or_default();
        Tr::new(lang).with_links(links)
    };
    match &f.kind {
        FailureKind::Error { key, detail } => {
            let mut page = MessagePage::new(t(), key, &Default::default());
            page.action = action.map(|a| page.action_of(a));
            page.note(key, status, detail);
            render(status, &page)
        }
        FailureKind::Message { message } => message_page(t(), status, message, action),
        FailureKind::Unavailable => unavailable(lang),
        FailureKind::TooMany { retry_after } => too_many_requests(lang, *retry_after, action),
    }
}

/// The store is unreachable: 503 with "try again shortly".
pub fn unavailable_page(lang: &str, e: &StoreError) -> HttpResponse {
    tracing::error!(error = %e, "store failure during a login");
    unavailable(lang)
}

/// The "try again shortly" page (503 with `Retry-After`); the caller logged the cause.
pub fn unavailable(lang: &str) -> HttpResponse {
    let mut r = error_page(lang, 503, "error-unavailable", "");
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    r
}

/// Too many attempts: 429 with `Retry-After`, and a way on if there is one.
pub fn too_many_requests(lang: &str, retry_after: u64, action: Option<&Action>) -> HttpResponse {
    let msg = Message::new("error-rate-limited").arg("minutes", retry_after.div_ceil(60));
    let mut r = failure_page(lang, 429, &msg, action);
    if let Ok(v) = header::HeaderValue::from_str(&retry_after.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

#[derive(Template)]
#[template(path = "logout_confirm.html")]
struct LogoutConfirmPage {
    t: Tr,
    id: String,
    csrf: String,
    name: String,
    client_name: String,
}

/// "Do you want to log out?" for a logout request that cannot be trusted; its language
/// menu asks again in another language (`again`: the request's path and query).
pub fn logout_confirm(
    lang: &str,
    id: &str,
    csrf: &str,
    name: &str,
    client_name: &str,
    again: &str,
) -> HttpResponse {
    render(
        200,
        &LogoutConfirmPage {
            t: Tr::new(lang).with_links(crate::i18n::language_links(lang, again)),
            id: id.to_string(),
            csrf: csrf.to_string(),
            name: name.to_string(),
            client_name: client_name.to_string(),
        },
    )
}

#[derive(Template)]
#[template(path = "logged_out.html")]
struct LoggedOutPage {
    t: Tr,
    frames: Vec<String>,
    next: String,
}

/// "You are logged out", loading the platforms' front-channel logout pages in iframes.
pub fn logged_out(lang: &str, frames: &[String], next: Option<&str>) -> HttpResponse {
    let origins: Vec<String> = frames
        .iter()
        .filter_map(|f| url::Url::parse(f).ok())
        .map(|u| u.origin().ascii_serialization())
        .collect();
    let csp = if origins.is_empty() {
        CSP.to_string()
    } else {
        format!("{CSP}; frame-src {}", origins.join(" "))
    };
    let page = LoggedOutPage {
        // Its language menu shows this page again (a logout without a session ends here).
        t: Tr::new(lang).with_links(crate::i18n::language_links(lang, "/logout")),
        frames: frames.to_vec(),
        next: next.unwrap_or_default().to_string(),
    };
    match page.render() {
        Ok(body) => html_with_csp(200, body, csp),
        Err(_) => error_page(lang, 500, "error-generic", ""),
    }
}

struct Choice {
    id: String,
    name: String,
    /// "Continue with <name>".
    button: String,
    logo: Option<String>,
    /// The source failed to answer in the last minutes.
    troubled: bool,
    /// This browser used it last time.
    last: bool,
    level: String,
    enabled: bool,
    notice: String,
}

#[derive(Template)]
#[template(path = "choose.html")]
struct ChoosePage {
    t: Tr,
    client_name: String,
    tx: String,
    csrf: String,
    choices: Vec<Choice>,
    /// Some choice has a logo: the others keep its place, so names line up.
    any_logo: bool,
    step_up: bool,
}

struct FieldView {
    name: String,
    label: String,
    input_type: String,
    /// `inputmode` for numbers typed in a text field (phones get theirs from `tel`).
    inputmode: &'static str,
    autocomplete: String,
    value: String,
}

/// The keyboard a phone should offer for a field: digits for codes, card numbers and
/// Vietnamese citizen ID numbers (not Chinese resident ID numbers, which may end in X).
fn input_mode(field: &connectors::Field) -> &'static str {
    let numeric_autocomplete = matches!(
        field.autocomplete.as_str(),
        "one-time-code" | "cc-number" | "cc-csc" | "postal-code"
    );
    let numeric_name = matches!(field.name.as_str(), "code" | "citizen_id" | "card_number");
    match field.input_type.as_str() {
        "number" => "numeric",
        "text" if numeric_autocomplete || numeric_name => "numeric",
        _ => "",
    }
}

/// A message as its lead and the numbered steps it lists (`… 1. Check … 2. Try …`), so
/// that remedies are shown as a list; no steps when it numbers none.
fn numbered_steps(text: &str) -> (String, Vec<String>) {
    let mut cuts = Vec::new();
    let mut from = 0;
    for n in 1.. {
        let marker = format!("{n}. ");
        let found = text[from..].match_indices(&marker).find(|(i, _)| {
            let at = from + i;
            text[..at]
                .chars()
                .next_back()
                .is_none_or(|c| c.is_whitespace() || "。；;:：".contains(c))
        });
        match found {
            Some((i, _)) => {
                cuts.push(from + i);
                from += i + marker.len();
            }
            None => break,
        }
    }
    if cuts.len() < 2 {
        return (text.to_string(), Vec::new());
    }
    let tidy = |s: &str| s.trim().trim_end_matches(['；', ';']).trim().to_string();
    let lead = tidy(&text[..cuts[0]]);
    let items = cuts
        .iter()
        .enumerate()
        .map(|(k, &at)| {
            let end = cuts.get(k + 1).copied().unwrap_or(text.len());
            let body = &text[at..end];
            tidy(body.split_once(". ").map(|(_, rest)| rest).unwrap_or(body))
        })
        .collect();
    (lead, items)
}

#[derive(Template)]
#[template(path = "form.html")]
struct FormPage {
    t: Tr,
    source: String,
    tx: String,
    csrf: String,
    title: String,
    intro: String,
    fields: Vec<FieldView>,
    submit: String,
    problem: String,
    /// The numbered remedies of the problem, shown as a list after `problem`.
    problem_steps: Vec<String>,
    notice: String,
    /// The demo's simulated SMS inbox, linked from the code page.
    inbox: String,
    secondary: Option<(String, String)>,
    /// Seconds before the second button (a new code) may be used, counted down by the
    /// page's script; 0 when it may be used now.
    secondary_wait: u64,
    /// "You can ask for a new code in %s s", `%s` replaced by the script.
    secondary_wait_text: String,
}

#[derive(Template)]
#[template(path = "wait.html")]
struct WaitPage {
    t: Tr,
    source: String,
    tx: String,
    csrf: String,
    instruction: String,
    qr: String,
    qr_svg: String,
    app_link: String,
    poll_seconds: u32,
}

/// A QR code as an SVG `data:` URI (the pages' CSP allows `data:` images), or nothing when
/// the content does not fit in a QR code.
fn qr_data_uri(content: &str) -> String {
    use base64::Engine;
    let Ok(code) = qrcode::QrCode::new(content.as_bytes()) else {
        return String::new();
    };
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    )
}

/// The script of the pages that wait (same origin, so the CSP allows it; every page works
/// without it):
/// - a waiting page checks again after the step's poll interval by submitting its "check"
///   form (the button does the same);
/// - a button with `data-wait` (a new SMS code) stays disabled until its cooldown ends, and
///   the countdown is shown in the element named by `data-wait-text` (the server refuses an
///   early press anyway).
const WAIT_SCRIPT: &str = r#"(function () {
  var b = document.getElementById('check');
  if (b && b.form) {
    var s = parseInt(b.getAttribute('data-poll'), 10);
    if (!(s > 0)) s = 3;
    window.setTimeout(function () { b.form.submit(); }, s * 1000);
  }
  var buttons = document.querySelectorAll('button[data-wait]');
  Array.prototype.forEach.call(buttons, function (button) {
    var left = parseInt(button.getAttribute('data-wait'), 10);
    var shown = document.getElementById(button.getAttribute('data-wait-text') || '');
    if (!(left > 0)) return;
    var template = shown ? shown.getAttribute('data-template') || '' : '';
    var end = Date.now() + left * 1000;
    function tick() {
      var s = Math.ceil((end - Date.now()) / 1000);
      if (s <= 0) {
        button.disabled = false;
        if (shown) shown.hidden = true;
        return;
      }
      button.disabled = true;
      if (shown) { shown.textContent = template.replace('%s', String(s)); shown.hidden = false; }
      window.setTimeout(tick, 1000);
    }
    tick();
  });
})();
"#;

/// `GET /assets/wait.js`
pub async fn wait_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(WAIT_SCRIPT)
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage {
    t: Tr,
    client_name: String,
    tx: String,
    csrf: String,
    scopes: Vec<String>,
}

#[derive(Template)]
#[template(path = "select_account.html")]
struct SelectAccountPage {
    t: Tr,
    client_name: String,
    tx: String,
    csrf: String,
    name: String,
}

#[derive(Template)]
#[template(path = "claim.html")]
struct ClaimPage {
    t: Tr,
    intro: String,
    problem: String,
    tx: String,
    csrf: String,
}

#[derive(Template)]
#[template(path = "link.html")]
struct LinkPage {
    t: Tr,
    problem: String,
    name: String,
    birthdate: String,
    can_skip: bool,
    /// No check left: the form is gone, "Skip" remains.
    exhausted: bool,
    client_name: String,
    tx: String,
    csrf: String,
}

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticePage {
    t: Tr,
    message: String,
    tx: String,
    csrf: String,
}

/// The pages of one login transaction.
pub struct Page<'a> {
    settings: std::sync::Arc<crate::config::Settings>,
    tx: &'a LoginTx,
    t: Tr,
    /// The CSRF token of this login's forms in this browser.
    csrf: String,
}

impl<'a> Page<'a> {
    /// Pages for a transaction, in its language, for the browser holding `browser` (its
    /// binding cookie).
    pub fn new(state: &'a AppState, tx: &'a LoginTx, browser: &str) -> Self {
        let lang = tx.request.lang.as_str();
        let settings = state.settings();
        Page {
            csrf: crate::csrf::token(
                &settings.csrf_key,
                crate::csrf::Form::Login(&tx.id),
                browser,
            ),
            settings,
            tx,
            // The language menu reloads this login's page in another language.
            t: Tr::new(lang).with_links(crate::i18n::language_links(
                lang,
                &format!("/login/{}", tx.id),
            )),
        }
    }

    fn client_name(&self) -> String {
        self.settings
            .clients
            .get(self.tx.request.client_id.as_str())
            .map(|c| c.display_name(self.t.lang).to_string())
            .unwrap_or_default()
    }

    /// The choice of identity sources.
    pub fn choose(
        &self,
        entries: &[&ConnectorEntry],
        maintenance: &crate::maintenance::Maintenance,
        last_source: Option<&str>,
    ) -> HttpResponse {
        // The source this browser used last comes first.
        let mut entries = entries.to_vec();
        if let Some(i) = entries
            .iter()
            .position(|c| Some(c.id.as_str()) == last_source)
        {
            let last = entries.remove(i);
            entries.insert(0, last);
        }
        let choices: Vec<Choice> = entries
            .iter()
            .map(|c| (c, maintenance.effective(c)))
            .map(|(c, (status, message))| Choice {
                id: c.id.clone(),
                name: self.t.pick(&c.name).to_string(),
                button: self.t.with(
                    "button-use-source",
                    &std::collections::BTreeMap::from([(
                        "source".to_string(),
                        self.t.pick(&c.name).to_string(),
                    )]),
                ),
                logo: crate::config::assets::logo_url(&c.id, &c.logos, &self.tx.request.lang),
                troubled: c.connector.recently_unavailable(),
                last: Some(c.id.as_str()) == last_source,
                level: self
                    .t
                    .get(&format!("level-{}", c.connector.assurance().as_str())),
                enabled: status == crate::config::ConnectorStatus::Enabled,
                notice: self.t.pick(message).to_string(),
            })
            .collect();
        render(
            200,
            &ChoosePage {
                t: self.t.clone(),
                client_name: self.client_name(),
                tx: self.tx.id.clone(),
                csrf: self.csrf.clone(),
                any_logo: choices.iter().any(|c| c.logo.is_some()),
                choices,
                step_up: self.tx.request.min_level > connectors::Assurance::Low,
            },
        )
    }

    /// A connector's step.
    pub fn step(&self, connector: &str, view: &View) -> HttpResponse {
        let source = self
            .settings
            .connector(connector)
            .map(|c| self.t.pick(&c.name).to_string())
            .unwrap_or_default();
        match view {
            View::Form { form } => {
                let problem = form
                    .problem
                    .as_ref()
                    .map(|m| self.t.with(&m.key, &m.args))
                    .unwrap_or_default();
                let (problem, problem_steps) = numbered_steps(&problem);
                // The connector tells how long the resend waits: the seconds left when
                // it refused, else the cooldown it started when it sent the code.
                let secondary_wait = [form.problem.as_ref(), form.notice.as_ref()]
                    .into_iter()
                    .flatten()
                    .find_map(|m| {
                        let key = if m.key == "error-otp-cooldown" {
                            "seconds"
                        } else {
                            "resend_seconds"
                        };
                        m.args.get(key).and_then(|v| v.parse::<u64>().ok())
                    })
                    .unwrap_or(0);
                render(
                    200,
                    &FormPage {
                        source,
                        tx: self.tx.id.clone(),
                        csrf: self.csrf.clone(),
                        title: self.t.get(&form.title),
                        intro: form
                            .intro
                            .as_deref()
                            .map(|k| self.t.get(k))
                            .unwrap_or_default(),
                        fields: form
                            .fields
                            .iter()
                            .map(|f| FieldView {
                                name: f.name.clone(),
                                label: self.t.get(&f.label),
                                input_type: f.input_type.clone(),
                                inputmode: input_mode(f),
                                autocomplete: f.autocomplete.clone(),
                                value: crate::login::open_form_value(
                                    &self.settings,
                                    &self.tx.id,
                                    &f.name,
                                    &f.value,
                                ),
                            })
                            .collect(),
                        submit: self.t.get(&form.submit),
                        problem,
                        problem_steps,
                        notice: form
                            .notice
                            .as_ref()
                            .map(|m| self.t.with(&m.key, &m.args))
                            .unwrap_or_default(),
                        secondary: form
                            .secondary
                            .as_ref()
                            .map(|a| (a.name.clone(), self.t.get(&a.label))),
                        inbox: form
                            .notice
                            .as_ref()
                            .and_then(|m| m.args.get("inbox"))
                            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
                            .cloned()
                            .unwrap_or_default(),
                        secondary_wait,
                        secondary_wait_text: self.t.with(
                            "resend-wait",
                            &std::collections::BTreeMap::from([(
                                "seconds".to_string(),
                                "%s".to_string(),
                            )]),
                        ),
                        t: self.t.clone(),
                    },
                )
            }
            View::Wait {
                instruction,
                qr,
                app_link,
                poll_seconds,
            } => render(
                200,
                &WaitPage {
                    source,
                    tx: self.tx.id.clone(),
                    csrf: self.csrf.clone(),
                    instruction: self.t.with(&instruction.key, &instruction.args),
                    qr: qr.clone().unwrap_or_default(),
                    qr_svg: qr.as_deref().map(qr_data_uri).unwrap_or_default(),
                    app_link: app_link.clone().unwrap_or_default(),
                    poll_seconds: *poll_seconds,
                    t: self.t.clone(),
                },
            ),
            View::Redirect => error_page(
                &self.tx.request.lang,
                400,
                "error-login-expired",
                "the login is waiting for the identity source",
            ),
        }
    }

    /// The consent page.
    pub fn consent(&self) -> HttpResponse {
        let scopes = self
            .tx
            .request
            .scopes
            .iter()
            .filter(|s| *s != "openid")
            .map(|s| self.t.get(&format!("scope-{}", s.replace('_', "-"))))
            .collect();
        render(
            200,
            &ConsentPage {
                t: self.t.clone(),
                client_name: self.client_name(),
                tx: self.tx.id.clone(),
                csrf: self.csrf.clone(),
                scopes,
            },
        )
    }

    /// "Is this older account yours?"
    pub fn claim(&self, source: &str, problem: Option<&str>) -> HttpResponse {
        let args = std::collections::BTreeMap::from([("source".to_string(), source.to_string())]);
        render(
            200,
            &ClaimPage {
                intro: self.t.with("claim-intro", &args),
                problem: problem.map(|k| self.t.get(k)).unwrap_or_default(),
                tx: self.tx.id.clone(),
                csrf: self.csrf.clone(),
                t: self.t.clone(),
            },
        )
    }

    /// The citizen ID number form (checked at the population registry).
    pub fn link(
        &self,
        problem: Option<&Message>,
        name: &str,
        birthdate: &str,
        can_skip: bool,
        exhausted: bool,
    ) -> HttpResponse {
        render(
            200,
            &LinkPage {
                problem: problem
                    .map(|m| self.t.with(&m.key, &m.args))
                    .unwrap_or_default(),
                name: name.to_string(),
                birthdate: birthdate.to_string(),
                can_skip,
                exhausted,
                client_name: self.client_name(),
                tx: self.tx.id.clone(),
                csrf: self.csrf.clone(),
                t: self.t.clone(),
            },
        )
    }

    /// A notice before going on.
    pub fn notice(&self, key: &str) -> HttpResponse {
        render(
            200,
            &NoticePage {
                message: self.t.get(key),
                tx: self.tx.id.clone(),
                csrf: self.csrf.clone(),
                t: self.t.clone(),
            },
        )
    }

    /// "Continue as ..." page.
    pub fn select_account(&self, name: &str) -> HttpResponse {
        render(
            200,
            &SelectAccountPage {
                t: self.t.clone(),
                client_name: self.client_name(),
                tx: self.tx.id.clone(),
                csrf: self.csrf.clone(),
                name: name.to_string(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_remedies_become_steps_in_every_script() {
        let (lead, steps) =
            numbered_steps("No match at X. 1. Check it. 2. Try another card. 3. Call 12333.");
        assert_eq!(lead, "No match at X.");
        assert_eq!(steps, ["Check it.", "Try another card.", "Call 12333."]);
        let (lead, steps) =
            numbered_steps("不匹配。1. 请核对；2. 更换银行卡；3. 拨打 12333 客服电话。");
        assert_eq!(lead, "不匹配。");
        assert_eq!(steps, ["请核对", "更换银行卡", "拨打 12333 客服电话。"]);
        // One number is not a list, and digits inside words are not steps.
        let (lead, steps) = numbered_steps("Wait 1. Then go.");
        assert_eq!((lead.as_str(), steps.len()), ("Wait 1. Then go.", 0));
        let (_, steps) = numbered_steps("Card 621. 2. x");
        assert!(steps.is_empty());
    }

    #[test]
    fn error_pages_have_their_heading_a_folded_detail_and_a_language_menu() {
        let links = crate::i18n::language_links("es", "/logout?ui_locales=es");
        let mut page = MessagePage::new(
            Tr::new("es").with_links(links),
            "error-unknown-client",
            &Default::default(),
        );
        page.reference = "REF123".into();
        page.detail = "unknown client_id".into();
        let html = page.render().expect("renders");
        assert!(html.contains("<title>Servicio no registrado · "), "{html}");
        assert!(html.contains("<h1>Servicio no registrado</h1>"), "{html}");
        assert!(html.contains("<summary>Datos para el servicio de ayuda</summary>"));
        assert!(html.contains("<code lang=\"en\" id=\"detail\">unknown client_id</code>"));
        assert!(
            html.contains("href=\"/logout?ui_locales=vi\" lang=\"vi\""),
            "{html}"
        );
        assert!(html.contains("aria-current=\"page\">Español"), "{html}");
        // A message without a heading of its own, and without a hint.
        let page = MessagePage::new(Tr::new("en"), "account-linked", &Default::default());
        assert_eq!(page.title, "Something went wrong");
        assert_eq!(page.hint, "");
        // A hint with arguments is found too.
        let args =
            std::collections::BTreeMap::from([("alternatives".to_string(), "VNeID".to_string())]);
        let page = MessagePage::new(Tr::new("vi"), "error-legacy-disabled", &args);
        assert!(page.hint.contains("VNeID"), "{}", page.hint);
    }

    #[test]
    fn number_fields_get_a_numeric_keyboard() {
        let field =
            |name: &str, kind: &str, auto: &str| connectors::Field::new(name, "l", kind, auto);
        assert_eq!(
            input_mode(&field("code", "text", "one-time-code")),
            "numeric"
        );
        assert_eq!(
            input_mode(&field("card_number", "text", "cc-number")),
            "numeric"
        );
        assert_eq!(input_mode(&field("citizen_id", "text", "off")), "numeric");
        // A Chinese resident ID number may end in X.
        assert_eq!(input_mode(&field("id_number", "text", "off")), "");
        assert_eq!(input_mode(&field("username", "text", "username")), "");
        assert_eq!(
            input_mode(&field("password", "password", "current-password")),
            ""
        );
        // `tel` brings its own keyboard.
        assert_eq!(input_mode(&field("phone", "tel", "tel")), "");
    }
}
