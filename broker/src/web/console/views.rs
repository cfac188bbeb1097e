//! The console's pages. Every page shows what a viewer may see; the forms of what the
//! operator's role does not allow are not shown (and refused by [`super::actions`] anyway).

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use crate::config::Role;
use crate::i18n::Tr;
use crate::web::pages;
use crate::web::state::AppState;

use super::auth::{operator, Operator};

/// What every console page shows around its content.
pub struct Frame {
    /// Messages in the page's language.
    pub t: Tr,
    /// The operator's name.
    pub name: String,
    /// Their role.
    pub role: &'static str,
    /// The CSRF token of the forms.
    pub csrf: String,
    /// Which section is open (`overview`, `config`, …).
    pub section: &'static str,
    /// Whether they may change maintenance and close reviews.
    pub operates: bool,
    /// Whether they may change connectors and clients.
    pub administers: bool,
    /// A message after an action (empty: none).
    pub notice: String,
    /// A problem after an action (empty: none).
    pub problem: String,
}

impl Frame {
    /// The frame of `section` for `op`, its language menu pointing at `path`.
    pub fn new(op: &Operator, section: &'static str, path: &str) -> Frame {
        Frame {
            t: Tr::new(op.lang).with_links(crate::i18n::language_links(op.lang, path)),
            name: op.name.clone(),
            role: op.role.as_str(),
            csrf: op.csrf.clone(),
            section,
            operates: op.may(Role::Operator),
            administers: op.may(Role::Admin),
            notice: String::new(),
            problem: String::new(),
        }
    }
}

/// Renders a console page.
pub fn page<T: Template>(status: u16, page: &T) -> HttpResponse {
    match page.render() {
        Ok(body) => pages::html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "console page rendering failed");
            pages::error_page("en", 500, "error-generic", "console page rendering failed")
        }
    }
}

/// A time in the console: UTC, to the second.
pub fn when(millis: u64) -> String {
    let secs = (millis / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a calendar date (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// One instance on the overview.
pub struct InstanceRow {
    pub name: String,
    pub version: u64,
    pub seen: String,
    pub lagging: bool,
    pub problem: String,
}

/// One minute's bar of a chart (SVG units; the failures stacked on the sign-ins).
pub struct Bar {
    pub x: u32,
    pub y_ok: u32,
    pub h_ok: u32,
    pub y_bad: u32,
    pub h_bad: u32,
}

/// Chart height in SVG units.
const CHART_HEIGHT: u32 = 32;

/// The bars of the last minutes of a source, and their summary in words.
fn chart(t: &Tr, minutes: &[crate::recent_logins::Minute]) -> (Vec<Bar>, String) {
    let total = |m: &crate::recent_logins::Minute| m.succeeded + m.failed + m.unavailable;
    let max = minutes.iter().map(total).max().unwrap_or(0).max(1);
    let bars = minutes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let h_ok = m.succeeded * CHART_HEIGHT / max;
            let h_bad = (m.failed + m.unavailable) * CHART_HEIGHT / max;
            Bar {
                x: i as u32 * 10,
                y_ok: CHART_HEIGHT - h_ok,
                h_ok,
                y_bad: CHART_HEIGHT - h_ok - h_bad,
                h_bad,
            }
        })
        .collect();
    let sum = |f: fn(&crate::recent_logins::Minute) -> u32| minutes.iter().map(f).sum::<u32>();
    let (ok, failed, unavailable) = (
        sum(|m| m.succeeded),
        sum(|m| m.failed),
        sum(|m| m.unavailable),
    );
    let all = ok + failed + unavailable;
    let rate = ((failed + unavailable) * 100).checked_div(all).unwrap_or(0);
    let args = std::collections::BTreeMap::from([
        ("succeeded".to_string(), ok.to_string()),
        ("failed".to_string(), failed.to_string()),
        ("unavailable".to_string(), unavailable.to_string()),
        ("rate".to_string(), rate.to_string()),
    ]);
    (bars, t.with("console-chart", &args))
}

/// One connector on the overview.
pub struct ConnectorRow {
    /// Its last minutes on this instance.
    pub bars: Vec<Bar>,
    /// The same in words (the chart's text alternative, and shown beside it).
    pub summary: String,
    pub id: String,
    pub kind: String,
    pub name: String,
    pub status: String,
    pub assurance: String,
    pub health: String,
    pub message: String,
}

/// One client on the overview.
pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub auth: String,
    pub profile: String,
    pub min_assurance: String,
    pub redirect_uris: String,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    f: Frame,
    version: u64,
    head: u64,
    instances: Vec<InstanceRow>,
    connectors: Vec<ConnectorRow>,
    clients: Vec<ClientRow>,
}

/// `GET /console`
pub async fn overview(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let op = match operator(&req, &state).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    render_overview(&state, Frame::new(&op, "overview", "/console")).await
}

/// The overview, with `f`'s notice or problem.
pub async fn render_overview(state: &AppState, f: Frame) -> HttpResponse {
    let settings = state.settings();
    let records = state.records.as_ref();
    let now = state.now();
    let (head, instances, m) = match (
        records.config_head().await,
        records.instances().await,
        crate::maintenance::load(records).await,
    ) {
        (Ok(h), Ok(i), Ok(m)) => (h, i, m),
        (Err(e), _, _) | (_, Err(e), _) => return pages::unavailable_page(f.t.lang, &e.into()),
        (_, _, Err(e)) => return pages::unavailable_page(f.t.lang, &e),
    };
    let instances = instances
        .into_iter()
        .filter(|i| now.saturating_sub(i.seen) < crate::versions::GONE_AFTER_MS)
        .map(|i| InstanceRow {
            lagging: i.version < head,
            seen: when(i.seen),
            name: i.instance,
            version: i.version,
            problem: i.problem,
        })
        .collect();
    let mut connectors = Vec::new();
    for c in &settings.connectors {
        let (status, message) = m.effective(c);
        let health = serde_json::to_value(c.connector.health().await)
            .ok()
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                // `{"status": "degraded", "detail": …}`: the status, then what else it says.
                serde_json::Value::Object(mut o) => {
                    let status = o
                        .remove("status")
                        .and_then(|s| s.as_str().map(str::to_string))
                        .unwrap_or_default();
                    let rest: Vec<String> = o
                        .into_iter()
                        .map(|(k, v)| match v {
                            serde_json::Value::String(s) => format!("{k}: {s}"),
                            other => format!("{k}: {other}"),
                        })
                        .collect();
                    if rest.is_empty() {
                        status
                    } else {
                        format!("{status} ({})", rest.join(", "))
                    }
                }
                other => other.to_string(),
            })
            .unwrap_or_default();
        let (bars, summary) = chart(&f.t, &crate::recent_logins::of(&c.id, now));
        connectors.push(ConnectorRow {
            bars,
            summary,
            id: c.id.clone(),
            kind: c.kind.clone(),
            name: f.t.pick(&c.name).to_string(),
            status: serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            assurance: c.connector.assurance().as_str().to_string(),
            health,
            message: f.t.pick(message).to_string(),
        });
    }
    let mut clients: Vec<ClientRow> = settings
        .clients
        .values()
        .filter(|c| {
            ![
                crate::config::ACCOUNT_CLIENT_ID,
                crate::config::CONSOLE_CLIENT_ID,
            ]
            .contains(&c.id.as_str())
        })
        .map(|c| ClientRow {
            id: c.id.clone(),
            name: c.display_name(f.t.lang).to_string(),
            auth: match &c.auth {
                crate::config::ClientAuth::SecretBasic(_) => "client_secret_basic",
                crate::config::ClientAuth::SecretPost(_) => "client_secret_post",
                crate::config::ClientAuth::PrivateKeyJwt(_) => "private_key_jwt",
                crate::config::ClientAuth::None => "none",
            }
            .to_string(),
            profile: c
                .profile
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            min_assurance: c.min_assurance.as_str().to_string(),
            redirect_uris: c.redirect_uris.join(" "),
        })
        .collect();
    clients.sort_by(|a, b| a.id.cmp(&b.id));
    page(
        200,
        &OverviewPage {
            version: settings.config_version(),
            head,
            instances,
            connectors,
            clients,
            f,
        },
    )
}

#[derive(Template)]
#[template(path = "console/config.html")]
pub struct ConfigPage {
    pub f: Frame,
    pub version: u64,
    pub document: String,
    pub problems: Vec<(String, String)>,
    pub diff: Vec<(char, String)>,
    /// The types an "Add a connector" link appends a template of.
    pub kinds: Vec<String>,
}

/// Keys whose values a viewer never sees (test citizens' and old accounts' passwords, their
/// hashes and ID numbers); under `claims`, every value (names, phones, birth dates).
const HIDDEN_KEYS: [&str; 4] = ["password", "password_hash", "citizen_id", "claims"];

/// What a viewer sees of a document: its TOML with [`HIDDEN_KEYS`] masked at any depth,
/// however they are written (inline tables, quoted keys, multi-line strings); nothing at all
/// if it does not parse.
pub fn masked(document: &str) -> String {
    fn hide(v: &mut toml::Value) {
        match v {
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| hide(v)),
            toml::Value::Array(a) => a.iter_mut().for_each(hide),
            other => *other = toml::Value::String("••••••".into()),
        }
    }
    fn walk(v: &mut toml::Value) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t.iter_mut() {
                    if HIDDEN_KEYS.contains(&k.as_str()) {
                        hide(v);
                    } else {
                        walk(v);
                    }
                }
            }
            toml::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(table) = toml::from_str::<toml::Table>(document) else {
        return String::new();
    };
    let mut value = toml::Value::Table(table);
    walk(&mut value);
    toml::to_string(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::masked;

    #[test]
    fn a_viewer_sees_no_password_hash_id_number_or_claim_however_written() {
        let doc = r#"
[[connectors]]
id = "tc"
citizens = [{ username = "an", password = "demo", citizen_id = "079201001234" }]
[connectors.settings]
"password" = """
multi
line"""
[[connectors.settings.accounts]]
password_hash = "$argon2id$v=19$secret"
claims = { name = "Nguyễn Văn An", phone_number = "+84901234567" }
"#;
        let shown = masked(doc);
        for secret in [
            "demo",
            "079201001234",
            "argon2id",
            "multi",
            "Nguyễn",
            "+8490",
        ] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        assert!(shown.contains("username = \"an\""), "{shown}");
        assert_eq!(
            masked("[[connectors]\n"),
            "",
            "nothing when it does not parse"
        );
    }
}

/// `GET /console/config` (`?add=TYPE` appends a template of that connector type).
pub async fn config(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let op = match operator(&req, &state).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let f = Frame::new(&op, "config", "/console/config");
    let live = match state.records.config_version(None).await {
        Ok(v) => v,
        Err(e) => return pages::unavailable_page(op.lang, &e.into()),
    };
    let (version, mut document) = live.map(|v| (v.version, v.document)).unwrap_or_default();
    if !op.may(Role::Admin) {
        document = masked(&document);
    }
    let add = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "add")
        .map(|(_, v)| v.into_owned());
    if let Some(template) = add.as_deref().and_then(super::actions::template_of) {
        document.push_str(template);
    }
    page(
        200,
        &ConfigPage {
            f,
            version,
            document,
            problems: Vec::new(),
            diff: Vec::new(),
            kinds: super::actions::TEMPLATES
                .iter()
                .map(|(k, _)| k.to_string())
                .collect(),
        },
    )
}

/// One version in the history.
pub struct VersionRow {
    pub version: u64,
    pub author: String,
    pub note: String,
    pub at: String,
    pub diff: Vec<(char, String)>,
    pub live: bool,
}

#[derive(Template)]
#[template(path = "console/history.html")]
struct HistoryPage {
    f: Frame,
    versions: Vec<VersionRow>,
}

/// `GET /console/history`: the newest 20 versions, each with what it changed.
pub async fn history(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let op = match operator(&req, &state).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    render_history(
        &state,
        Frame::new(&op, "history", "/console/history"),
        op.may(Role::Admin),
        200,
    )
    .await
}

/// The history page with `f`'s notice or problem.
pub async fn render_history(state: &AppState, f: Frame, admin: bool, status: u16) -> HttpResponse {
    let list = match state.records.config_history(21).await {
        Ok(l) => l,
        Err(e) => return pages::unavailable_page(f.t.lang, &e.into()),
    };
    let shown = |d: &str| if admin { d.to_string() } else { masked(d) };
    let head = list.first().map_or(0, |v| v.version);
    let versions = list
        .iter()
        .take(20)
        .enumerate()
        .map(|(i, v)| {
            let before = list
                .get(i + 1)
                .map(|p| shown(&p.document))
                .unwrap_or_default();
            VersionRow {
                version: v.version,
                author: v.author.clone(),
                note: v.note.clone(),
                at: when(v.at),
                diff: crate::config::versioned::diff(&before, &shown(&v.document))
                    .into_iter()
                    .filter(|(c, _)| *c != ' ')
                    .collect(),
                live: v.version == head,
            }
        })
        .collect();
    page(status, &HistoryPage { f, versions })
}

/// One connector or part on the maintenance page.
pub struct MaintenanceRow {
    /// `connector` or `connector/part`.
    pub key: String,
    pub name: String,
    /// The message per language now (empty: not in maintenance).
    pub messages: Vec<(String, String)>,
    pub on: bool,
}

#[derive(Template)]
#[template(path = "console/maintenance.html")]
struct MaintenancePage {
    f: Frame,
    rows: Vec<MaintenanceRow>,
}

/// `GET /console/maintenance`
pub async fn maintenance(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let op = match operator(&req, &state).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    render_maintenance(
        &state,
        Frame::new(&op, "maintenance", "/console/maintenance"),
        200,
    )
    .await
}

/// The maintenance page with `f`'s notice or problem.
pub async fn render_maintenance(state: &AppState, f: Frame, status: u16) -> HttpResponse {
    let settings = state.settings();
    let m = match crate::maintenance::load(state.records.as_ref()).await {
        Ok(m) => m,
        Err(e) => return pages::unavailable_page(f.t.lang, &e),
    };
    let row = |key: String, name: String| {
        let now = m.connectors.get(&key);
        MaintenanceRow {
            messages: crate::i18n::LANGUAGES
                .iter()
                .map(|l| {
                    (
                        l.to_string(),
                        now.and_then(|t| t.get(*l)).cloned().unwrap_or_default(),
                    )
                })
                .collect(),
            on: now.is_some(),
            key,
            name,
        }
    };
    let mut rows = Vec::new();
    for c in &settings.connectors {
        let name = f.t.pick(&c.name).to_string();
        rows.push(row(c.id.clone(), name.clone()));
        for part in c.connector.parts() {
            rows.push(row(format!("{}/{part}", c.id), format!("{name} · {part}")));
        }
    }
    page(status, &MaintenancePage { f, rows })
}

/// One review item.
pub struct ReviewRow {
    pub id: String,
    pub kind: String,
    pub holder: String,
    pub other: String,
    pub created: String,
}

/// A person found by number.
pub struct PersonRow {
    pub id: String,
    pub bindings: Vec<String>,
    pub ways_in: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/reviews.html")]
pub struct ReviewsPage {
    pub f: Frame,
    pub items: Vec<ReviewRow>,
    pub person: Option<PersonRow>,
    pub searched: bool,
}

/// `GET /console/reviews`
pub async fn reviews(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let op = match operator(&req, &state).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    render_reviews(
        &state,
        Frame::new(&op, "reviews", "/console/reviews"),
        None,
        false,
        200,
    )
    .await
}

/// The review queue, with a person found (or searched for and not found).
pub async fn render_reviews(
    state: &AppState,
    f: Frame,
    person: Option<PersonRow>,
    searched: bool,
    status: u16,
) -> HttpResponse {
    let items = match state.records.reviews(false).await {
        Ok(i) => i,
        Err(e) => return pages::unavailable_page(f.t.lang, &e.into()),
    };
    let items = items
        .into_iter()
        .map(|i| ReviewRow {
            kind: format!("{:?}", i.kind).to_lowercase(),
            created: when(i.created),
            id: i.id,
            holder: i.holder,
            other: i.other,
        })
        .collect();
    page(
        status,
        &ReviewsPage {
            f,
            items,
            person,
            searched,
        },
    )
}

/// One audit row.
pub struct AuditLine {
    pub at: String,
    pub actor: String,
    pub event: String,
    pub source: String,
    pub reference: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    f: Frame,
    actor: String,
    event: String,
    rows: Vec<AuditLine>,
}

/// `GET /console/audit?actor=…&event=…`: the newest 200 rows that pass the filters.
pub async fn audit(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let op = match operator(&req, &state).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let query: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(req.query_string().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.trim().to_string()))
            .collect();
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    let (actor, event) = (get("actor"), get("event"));
    let filter = records::AuditQuery {
        actor: Some(actor.clone()).filter(|a| !a.is_empty()),
        event_prefix: Some(event.clone()).filter(|e| !e.is_empty()),
        reference: None,
        limit: 200,
    };
    let rows = match state.records.recent_audit(&filter).await {
        Ok(r) => r,
        Err(e) => return pages::unavailable_page(op.lang, &e.into()),
    };
    let rows = rows
        .into_iter()
        .map(|r| AuditLine {
            at: when(r.at),
            actor: r.actor,
            event: r.event,
            source: r.source,
            reference: r.reference,
            detail: r.detail.to_string(),
        })
        .collect();
    page(
        200,
        &AuditPage {
            f: Frame::new(&op, "audit", "/console/audit"),
            actor,
            event,
            rows,
        },
    )
}
