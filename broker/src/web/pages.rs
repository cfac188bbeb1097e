//! Citizen-facing pages (askama templates in `broker/templates/`, HTML-escaped), in the
//! citizen's language, with what to do next on every failure.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use askama::Template;
use connectors::Message;

use crate::config::ConnectorEntry;
use crate::i18n::Tr;
use crate::login::{LoginTx, View};
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
    detail: String,
}

/// An error page: `key` names the message (its `-title` and `-hint` variants are used
/// too); `detail` is a short technical note for the platform's developers.
pub fn error_page(lang: &str, status: u16, key: &str, detail: &str) -> HttpResponse {
    let t = Tr::new(lang);
    let page = MessagePage {
        title: t.get("error-title"),
        message: t.get(key),
        hint: t.get(&format!("{key}-hint")),
        action: None,
        detail: detail.to_string(),
        t,
    };
    render(status, &page)
}

/// A failure at an identity source, with a link back to the choice page.
pub fn failure_page(
    lang: &str,
    status: u16,
    message: &Message,
    back: Option<&str>,
) -> HttpResponse {
    let t = Tr::new(lang);
    let page = MessagePage {
        title: t.get("error-title"),
        message: t.with(&message.key, &message.args),
        hint: t.with(&format!("{}-hint", message.key), &message.args),
        action: back.map(|b| (b.to_string(), t.get("button-other-way"))),
        detail: message
            .args
            .get("reference")
            .map(|r| format!("{}: {r}", t.get("label-reference")))
            .unwrap_or_default(),
        t,
    };
    render(status, &page)
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

/// Too many attempts: 429 with `Retry-After`.
pub fn too_many_requests(lang: &str, retry_after: u64) -> HttpResponse {
    let msg = Message::new("error-rate-limited").arg("minutes", retry_after.div_ceil(60));
    let mut r = failure_page(lang, 429, &msg, None);
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

/// "Do you want to log out?" for a logout request that cannot be trusted.
pub fn logout_confirm(
    lang: &str,
    id: &str,
    csrf: &str,
    name: &str,
    client_name: &str,
) -> HttpResponse {
    render(
        200,
        &LogoutConfirmPage {
            t: Tr::new(lang),
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
        t: Tr::new(lang),
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
    logo: Option<String>,
    /// The source failed to answer in the last minutes.
    troubled: bool,
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
    autocomplete: String,
    value: String,
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
    notice: String,
    secondary: Option<(String, String)>,
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

/// The script of waiting pages: checks again after the step's poll interval by submitting
/// the page's "check" form (the page works without it: the button does the same).
const WAIT_SCRIPT: &str = "(function () {\n  var b = document.getElementById('check');\n  if (!b || !b.form) return;\n  var s = parseInt(b.getAttribute('data-poll'), 10);\n  if (!(s > 0)) s = 3;\n  window.setTimeout(function () { b.form.submit(); }, s * 1000);\n})();\n";

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
}

impl<'a> Page<'a> {
    /// Pages for a transaction, in its language.
    pub fn new(state: &'a AppState, tx: &'a LoginTx) -> Self {
        Page {
            settings: state.settings(),
            tx,
            t: Tr::new(&tx.request.lang),
        }
    }

    fn client_name(&self) -> String {
        self.settings
            .clients
            .get(self.tx.request.client_id.as_str())
            .map(|c| c.name.clone())
            .unwrap_or_default()
    }

    /// The choice of identity sources.
    pub fn choose(
        &self,
        entries: &[&ConnectorEntry],
        maintenance: &crate::maintenance::Maintenance,
    ) -> HttpResponse {
        let choices: Vec<Choice> = entries
            .iter()
            .map(|c| (c, maintenance.effective(c)))
            .map(|(c, (status, message))| Choice {
                id: c.id.clone(),
                name: self.t.pick(&c.name).to_string(),
                logo: crate::config::assets::logo_url(&c.id, &c.logos, &self.tx.request.lang),
                troubled: c.connector.recently_unavailable(),
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
                csrf: self.tx.csrf.expose().to_string(),
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
            View::Form { form } => render(
                200,
                &FormPage {
                    source,
                    tx: self.tx.id.clone(),
                    csrf: self.tx.csrf.expose().to_string(),
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
                            autocomplete: f.autocomplete.clone(),
                            value: f.value.clone(),
                        })
                        .collect(),
                    submit: self.t.get(&form.submit),
                    problem: form
                        .problem
                        .as_ref()
                        .map(|m| self.t.with(&m.key, &m.args))
                        .unwrap_or_default(),
                    notice: form
                        .notice
                        .as_ref()
                        .map(|m| self.t.with(&m.key, &m.args))
                        .unwrap_or_default(),
                    secondary: form
                        .secondary
                        .as_ref()
                        .map(|a| (a.name.clone(), self.t.get(&a.label))),
                    t: self.t.clone(),
                },
            ),
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
                    csrf: self.tx.csrf.expose().to_string(),
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
                csrf: self.tx.csrf.expose().to_string(),
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
                csrf: self.tx.csrf.expose().to_string(),
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
                client_name: self.client_name(),
                tx: self.tx.id.clone(),
                csrf: self.tx.csrf.expose().to_string(),
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
                csrf: self.tx.csrf.expose().to_string(),
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
                csrf: self.tx.csrf.expose().to_string(),
                name: name.to_string(),
            },
        )
    }
}
