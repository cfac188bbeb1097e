//! What the console's forms do. Each checks the CSRF token and the operator's role first,
//! and each change is an audit row with the operator's name (`source = console`).

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::config::{LocalizedText, Role};
use crate::versions::{check_draft, publish, DraftCheck, Published};
use crate::web::pages;
use crate::web::state::AppState;

use super::auth::{csrf_ok, operator, Operator};
use super::views::{self, ConfigPage, Frame, PersonRow};

/// Templates of connectors by type ("Add a connector"): the documented keys, with values
/// to replace.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "oidc",
        r#"
[[connectors]]
id = "new-oidc"
type = "oidc"
name = { en = "New identity provider", vi = "Nhà cung cấp định danh mới", zh = "新的身份提供方", es = "Nuevo proveedor de identidad" }

[connectors.settings]
issuer = "https://idp.example.gov"
client_id = "broker"
client_secret = { env = "NEW_OIDC_CLIENT_SECRET" }
scopes = ["openid", "profile"]
timeout_ms = 5000
assurance_floor = "substantial"
"#,
    ),
    (
        "test-citizens",
        r#"
[[connectors]]
id = "new-test-citizens"
type = "test-citizens"
name = { en = "More test citizens", vi = "Thêm công dân thử nghiệm", zh = "更多测试公民", es = "Más ciudadanos de prueba" }

[connectors.settings]
assurance = "low"

[[connectors.settings.citizens]]
username = "new"
password = "change-me"
claims = { name = "New Citizen" }
"#,
    ),
];

/// The template of a connector type.
pub fn template_of(kind: &str) -> Option<&'static str> {
    TEMPLATES.iter().find(|(k, _)| *k == kind).map(|(_, t)| *t)
}

type Fields = BTreeMap<String, String>;

fn fields(body: &[u8]) -> Fields {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The operator, if the form's token is good and their role allows `needed`.
async fn allowed(
    req: &HttpRequest,
    state: &AppState,
    fields: &Fields,
    needed: Role,
) -> Result<Operator, HttpResponse> {
    let op = operator(req, state).await?;
    if !csrf_ok(
        req,
        &state.settings(),
        fields.get("csrf").map(String::as_str),
    ) {
        return Err(pages::error_page(
            op.lang,
            400,
            "error-form-expired",
            "missing or wrong CSRF token",
        ));
    }
    if !op.may(needed) {
        audit(
            state,
            &op,
            "console.refused",
            req.path(),
            serde_json::json!({ "role": op.role.as_str(), "needed": needed.as_str() }),
        )
        .await;
        return Err(pages::error_page(
            op.lang,
            403,
            "console-not-allowed",
            "the operator's role does not allow this",
        ));
    }
    Ok(op)
}

/// The configuration page again, with why `outcome` published nothing: the problems by
/// key (422), or the version published meanwhile (409).
fn not_published(mut page: ConfigPage, outcome: Published) -> HttpResponse {
    match outcome {
        Published::Refused(problems) => {
            page.problems = by_key(&problems);
            page.f.problem = page.f.t.get("console-draft-refused");
            views::page(422, &page)
        }
        Published::Conflict { head } => {
            page.f.problem = page.f.t.with(
                "console-conflict",
                &BTreeMap::from([("version".into(), head.to_string())]),
            );
            views::page(409, &page)
        }
        Published::Live(_) => views::page(200, &page),
    }
}

/// Problems as (key, reason), as the page shows them.
fn by_key(problems: &[crate::config::Problem]) -> Vec<(String, String)> {
    problems
        .iter()
        .map(|p| (p.key.clone(), p.reason.clone()))
        .collect()
}

fn config_page(op: &Operator, version: u64, document: String) -> ConfigPage {
    ConfigPage {
        f: Frame::new(op, "config", "/console/config"),
        version,
        document,
        problems: Vec::new(),
        diff: Vec::new(),
        kinds: TEMPLATES.iter().map(|(k, _)| k.to_string()).collect(),
    }
}

/// `POST /console/config/check`: the draft's problems beside their keys, or what it
/// changes against the version it was edited from, with "Apply".
pub async fn check(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let fields = fields(&body);
    let op = match allowed(&req, &state, &fields, Role::Admin).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let document = fields
        .get("document")
        .cloned()
        .unwrap_or_default()
        .replace("\r\n", "\n");
    let expected: u64 = fields
        .get("version")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let checked = check_draft(&state.settings(), &state.records, &document, Some(expected)).await;
    let mut page = config_page(&op, expected, document);
    match checked {
        Ok(DraftCheck::Refused(problems)) => {
            page.problems = by_key(&problems);
            page.f.problem = page.f.t.get("console-draft-refused");
            views::page(422, &page)
        }
        Ok(DraftCheck::Changes(diff)) => {
            page.diff = diff;
            page.f.notice = page.f.t.get("console-draft-ok");
            views::page(200, &page)
        }
        Err(e) => pages::unavailable_page(op.lang, &e.into()),
    }
}

/// `POST /console/config/apply`: publishes the checked draft as the next version (only if
/// nobody published since it was opened).
pub async fn apply(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let fields = fields(&body);
    let op = match allowed(&req, &state, &fields, Role::Admin).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let document = fields
        .get("document")
        .cloned()
        .unwrap_or_default()
        .replace("\r\n", "\n");
    let expected: u64 = fields
        .get("version")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let note: String = fields
        .get("note")
        .map(|n| n.trim().chars().take(200).collect())
        .unwrap_or_default();
    let outcome = publish(
        &state.live,
        &state.records,
        &state.instance,
        expected,
        &document,
        &op.name,
        "console",
        &note,
        state.now(),
    )
    .await;
    let page = config_page(&op, expected, document);
    match outcome {
        Ok(Published::Live(v)) => {
            let mut f = Frame::new(&op, "overview", "/console");
            f.notice = page.f.t.with(
                "console-applied",
                &BTreeMap::from([("version".into(), v.to_string())]),
            );
            views::render_overview(&state, f).await
        }
        Ok(other) => not_published(page, other),
        Err(e) => pages::unavailable_page(op.lang, &e),
    }
}

/// `POST /console/history/{version}/rollback`: publishes an earlier version's document
/// again, as the next version.
pub async fn rollback(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let fields = fields(&body);
    let op = match allowed(&req, &state, &fields, Role::Admin).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let mut f = Frame::new(&op, "history", "/console/history");
    let Ok(target) = path.parse::<u64>() else {
        return pages::error_page(op.lang, 404, "error-bad-request", "no such version");
    };
    let (earlier, head) = match (
        state.records.config_version(Some(target)).await,
        state.records.config_head().await,
    ) {
        (Ok(Some(v)), Ok(h)) => (v, h),
        (Ok(None), _) => {
            return pages::error_page(op.lang, 404, "error-bad-request", "no such version")
        }
        (Err(e), _) | (_, Err(e)) => return pages::unavailable_page(op.lang, &e.into()),
    };
    let note = format!("rollback to version {target}");
    let outcome = publish(
        &state.live,
        &state.records,
        &state.instance,
        head,
        &earlier.document,
        &op.name,
        "console",
        &note,
        state.now(),
    )
    .await;
    let status = match outcome {
        Ok(Published::Live(v)) => {
            f.notice = f.t.with(
                "console-rolled-back",
                &BTreeMap::from([
                    ("version".into(), v.to_string()),
                    ("target".into(), target.to_string()),
                ]),
            );
            200
        }
        Ok(Published::Refused(problems)) => {
            f.problem = format!(
                "{} {}",
                f.t.get("console-draft-refused"),
                crate::versions::told(&problems)
            );
            422
        }
        Ok(Published::Conflict { head }) => {
            f.problem = f.t.with(
                "console-conflict",
                &BTreeMap::from([("version".into(), head.to_string())]),
            );
            409
        }
        Err(e) => return pages::unavailable_page(op.lang, &e),
    };
    views::render_history(&state, f, true, status).await
}

/// `POST /console/maintenance`: `key` (a connector, or `connector/part`), `action`
/// (`on` with `message_<lang>`, or `off`).
pub async fn maintenance(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let fields = fields(&body);
    let op = match allowed(&req, &state, &fields, Role::Operator).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let mut f = Frame::new(&op, "maintenance", "/console/maintenance");
    let key = fields.get("key").cloned().unwrap_or_default();
    let settings = state.settings();
    let mut parts = key.splitn(2, '/');
    let known = settings
        .connector(parts.next().unwrap_or_default())
        .is_some_and(|c| {
            parts
                .next()
                .is_none_or(|p| c.connector.parts().iter().any(|x| x == p))
        });
    if !known {
        f.problem = f.t.get("console-unknown-connector");
        return views::render_maintenance(&state, f, 404).await;
    }
    let on = fields.get("action").map(String::as_str) == Some("on");
    let message: LocalizedText = crate::i18n::LANGUAGES
        .iter()
        .filter_map(|l| {
            let text = fields.get(&format!("message_{l}"))?.trim().to_string();
            (!text.is_empty()).then(|| (l.to_string(), text))
        })
        .collect();
    if on && !message.contains_key("en") {
        f.problem = f.t.get("console-maintenance-needs-en");
        return views::render_maintenance(&state, f, 422).await;
    }
    let by = crate::maintenance::By {
        actor: &op.name,
        source: "console",
    };
    let result = crate::maintenance::set(
        state.records.as_ref(),
        &key,
        on.then_some(message),
        by,
        state.now(),
    )
    .await;
    if let Err(e) = result {
        return pages::unavailable_page(op.lang, &e);
    }
    state.maintenance.clear();
    f.notice = f.t.get(if on {
        "console-maintenance-on"
    } else {
        "console-maintenance-off"
    });
    views::render_maintenance(&state, f, 200).await
}

/// An audit row of a console action (in the records and on the audit log stream).
async fn audit(
    state: &AppState,
    op: &Operator,
    event: &str,
    reference: &str,
    detail: serde_json::Value,
) {
    tracing::info!(target: "audit", event, operator = %op.name, reference, "console action");
    let row = records::AuditRow::new(state.now(), &op.name, event, "console", reference, detail);
    if let Err(e) = state.records.audit(&[row]).await {
        tracing::error!(error = %e, event, "console audit row not written");
    }
}

/// `POST /console/reviews/lookup`: a person by citizen ID number (hashed at once; never
/// logged or shown back).
pub async fn lookup(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let fields = fields(&body);
    let op = match allowed(&req, &state, &fields, Role::Viewer).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let settings = state.settings();
    let number = fields.get("citizen_id").cloned().unwrap_or_default();
    let f = Frame::new(&op, "reviews", "/console/reviews");
    let found =
        match crate::person::review::lookup(&settings, state.records.as_ref(), &number).await {
            Ok(p) => p,
            Err(e) => return pages::unavailable_page(op.lang, &e),
        };
    let person = match found {
        Some(id) => match crate::person::review::view(state.records.as_ref(), &id).await {
            Ok(v) => v,
            Err(e) => return pages::unavailable_page(op.lang, &e),
        },
        None => None,
    };
    audit(
        &state,
        &op,
        "console.person_looked_up",
        person.as_ref().map_or("", |p| p.id.as_str()),
        serde_json::json!({ "found": person.is_some() }),
    )
    .await;
    let person = person.map(|p| PersonRow {
        bindings: p
            .bindings
            .iter()
            .map(|b| {
                format!(
                    "{:?} · {} · {:?} · {}",
                    b.level,
                    b.source,
                    b.status,
                    views::when(b.at)
                )
                .to_lowercase()
            })
            .collect(),
        ways_in: p
            .ways_in
            .iter()
            .map(|w| format!("{} · {}", w.connector, views::when(w.at)))
            .collect(),
        id: p.id,
    });
    views::render_reviews(&state, f, person, true, 200).await
}

/// `POST /console/reviews/{id}/close`: `action` = `keep`, `merge` or `release`.
pub async fn close_review(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let fields = fields(&body);
    let op = match allowed(&req, &state, &fields, Role::Operator).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let mut f = Frame::new(&op, "reviews", "/console/reviews");
    let action = match fields.get("action").map(String::as_str) {
        Some("keep") => records::ReviewAction::Keep,
        Some("merge") => records::ReviewAction::Merge,
        Some("release") => records::ReviewAction::Release,
        _ => {
            f.problem = f.t.get("console-review-action");
            return views::render_reviews(&state, f, None, false, 422).await;
        }
    };
    use crate::person::review::{close, Resolved};
    let by = crate::maintenance::By {
        actor: &op.name,
        source: "console",
    };
    let status = match close(
        state.records.as_ref(),
        &path,
        action,
        &op.name,
        by,
        state.now(),
    )
    .await
    {
        Ok(Resolved::Done(_)) => {
            f.notice = f.t.get("console-review-closed");
            200
        }
        Ok(Resolved::AlreadyClosed(_)) => {
            f.problem = f.t.get("console-review-already-closed");
            409
        }
        Ok(Resolved::NotFound) => {
            f.problem = f.t.get("console-review-unknown");
            404
        }
        Err(e) => return pages::unavailable_page(op.lang, &e),
    };
    views::render_reviews(&state, f, None, false, status).await
}

#[derive(askama::Template)]
#[template(path = "console/registered.html")]
struct RegisteredPage {
    f: Frame,
    client_id: String,
    secret: String,
    version: u64,
}

/// The `[[clients]]` entry of a platform registered in the console: its secret kept only
/// as its SHA-256.
fn client_entry(id: &str, name: &str, redirect_uri: &str, secret: &str) -> String {
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut client = toml::Table::new();
    client.insert("id".into(), id.into());
    client.insert("name".into(), name.into());
    client.insert(
        "redirect_uris".into(),
        toml::Value::Array(vec![redirect_uri.into()]),
    );
    let mut reference = toml::Table::new();
    reference.insert("sha256".into(), digest.into());
    client.insert("secret".into(), toml::Value::Table(reference));
    client.insert(
        "scopes".into(),
        toml::Value::Array(vec!["openid".into(), "profile".into()]),
    );
    let mut wrapper = toml::Table::new();
    wrapper.insert(
        "clients".into(),
        toml::Value::Array(vec![toml::Value::Table(client)]),
    );
    toml::to_string(&wrapper).unwrap_or_default()
}

/// `POST /console/clients/register`: a new platform (`client_id`, `name`, `redirect_uri`)
/// with a generated secret, published as the next version; the secret is shown this once
/// and kept only as its digest.
pub async fn register_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let fields = fields(&body);
    let op = match allowed(&req, &state, &fields, Role::Admin).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let get = |k: &str| {
        fields
            .get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let (id, name, redirect) = (get("client_id"), get("name"), get("redirect_uri"));
    let live = match state.records.config_version(None).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return pages::error_page(op.lang, 409, "error-generic", "no configuration version")
        }
        Err(e) => return pages::unavailable_page(op.lang, &e.into()),
    };
    let mut page = config_page(&op, live.version, live.document.clone());
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok || name.is_empty() {
        page.problems = vec![(
            "clients[].id".into(),
            page.f.t.get("console-register-bad-id"),
        )];
        page.f.problem = page.f.t.get("console-draft-refused");
        return views::page(422, &page);
    }
    let secret = crate::util::random_token(32);
    let document = format!(
        "{}\n{}",
        live.document.trim_end(),
        client_entry(&id, &name, &redirect, &secret)
    );
    let outcome = publish(
        &state.live,
        &state.records,
        &state.instance,
        live.version,
        &document,
        &op.name,
        "console",
        &format!("platform {id} registered"),
        state.now(),
    )
    .await;
    match outcome {
        Ok(Published::Live(version)) => views::page(
            200,
            &RegisteredPage {
                f: Frame::new(&op, "config", "/console/config"),
                client_id: id,
                secret,
                version,
            },
        ),
        Ok(other) => not_published(page, other),
        Err(e) => pages::unavailable_page(op.lang, &e),
    }
}
