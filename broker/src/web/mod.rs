//! The web layer, the only user of actix-web: routes, middleware, the shared state, the
//! pages and the handlers that turn HTTP requests into calls of the flows below.

pub mod account;
pub mod admin;
pub mod admin_config;
pub mod connector_public;
pub mod console;
pub mod error;
pub mod extract;
pub mod limits;
pub mod login;
pub mod logout;
pub mod notify;
pub mod oidc;
pub mod pages;
pub mod prometheus;
pub mod review;
pub mod state;

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, App, HttpResponse, HttpServer};
use tracing::Instrument;

use crate::config::Settings;
use crate::{jobs, util};
use state::AppState;

/// Registers every route of the broker.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/openid-configuration",
        get_or_head().to(oidc::configuration),
    )
    .route("/jwks", get_or_head().to(oidc::jwks))
    .route("/authorize", web::get().to(oidc::authorize))
    .route("/authorize", web::post().to(oidc::authorize))
    .route("/par", web::post().to(oidc::push))
    .route("/token", web::post().to(oidc::token))
    .route("/userinfo", web::get().to(oidc::userinfo))
    .route("/userinfo", web::post().to(oidc::userinfo))
    .route("/revoke", web::post().to(oidc::revoke))
    .route("/introspect", web::post().to(oidc::introspect))
    .route("/login/{tx}", web::get().to(login::show))
    .route("/login/{tx}/start", web::post().to(login::start))
    .route("/login/{tx}/step", web::post().to(login::step))
    .route("/login/{tx}/consent", web::post().to(login::consent))
    .route("/login/{tx}/account", web::post().to(login::account))
    .route("/login/{tx}/cancel", web::post().to(login::cancel))
    .route("/login/{tx}/back", web::post().to(login::back))
    .route("/login/{tx}/claim", web::post().to(login::claim))
    .route("/login/{tx}/link", web::post().to(login::link))
    .route(
        "/login/{tx}/continue",
        web::post().to(login::continue_login),
    )
    .route("/callback/{connector}", web::get().to(login::callback))
    .route("/logout", web::get().to(logout::end_session))
    .route("/logout", web::post().to(logout::end_session))
    .route("/logout/kept", get_or_head().to(logout::kept))
    .route("/logout/{id}", web::post().to(logout::confirm))
    .route("/assets/wait.js", get_or_head().to(pages::wait_script))
    .route("/notify/{connector}", web::post().to(notify::notify))
    .route("/metrics", web::get().to(prometheus::endpoint))
    .configure(admin::routes)
    .configure(console::routes)
    .configure(admin_config::routes)
    .route("/account", web::get().to(account::show))
    .route("/account/link", web::post().to(account::update))
    .route("/account/signin", web::get().to(account::sign_in))
    .route("/account/callback", web::get().to(account::callback))
    .route("/account/logout", web::post().to(account::sign_out))
    .route(
        "/connectors/{id}/logo/{lang}",
        get_or_head().to(connector_public::logo),
    )
    .route(
        "/connectors/{id}/jwks",
        get_or_head().to(connector_public::jwks),
    )
    .route("/healthz", get_or_head().to(healthz))
    .route("/readyz", get_or_head().to(readyz))
    .default_service(web::to(not_found));
}

/// GET, and HEAD for the documents a client or a monitor may probe or revalidate (RFC 9110
/// asks every server for HEAD; actix sends a HEAD answer's headers without its body).
fn get_or_head() -> actix_web::Route {
    web::route().guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "alive"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (store, records) = futures_util::join!(state.store.ping(), state.records.ping());
    let report = |r: Result<(), String>| r.err().unwrap_or_else(|| "ready".into());
    let ready = store.is_ok() && records.is_ok();
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "store": report(store.map_err(|e| e.to_string())),
        "records": report(records.map_err(|e| e.to_string())),
    });
    // With a console: the configuration version this instance runs, and whether it lags.
    let settings = state.settings();
    if settings.console.is_some() {
        let newest = state.records.config_head().await.ok();
        body["config"] = serde_json::json!({
            "version": settings.config_version(),
            "newest": newest,
            "lagging": newest.is_some_and(|n| n > settings.config_version()),
        });
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    let lang = crate::i18n::negotiate(
        None,
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|h| h.to_str().ok()),
    );
    // The menu links back to this address; never to `//host…`, which a browser would
    // take for another site.
    let path = match req.path() {
        p if p.starts_with("//") || p.contains('\\') => "/",
        p => p,
    };
    let again = match req.query_string() {
        "" => path.to_string(),
        q => format!("{path}?{q}"),
    };
    pages::error_page_with_languages(
        lang,
        404,
        "error-bad-request",
        "no such page",
        crate::i18n::language_links(lang, &again),
    )
}

/// Gives each request an id (the caller's `X-Request-Id` when it is sane) carried by every
/// log line of the request and returned in the response, logs the request with its route
/// pattern only (query strings carry codes, states and hints that must not reach logs),
/// and counts it.
async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|h| h.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| util::random_token(9));
    let span = tracing::info_span!("request", id = %request_id);
    let mut res = next.call(req).instrument(span.clone()).await?;
    // After routing the matched resource is known; before it, finding the pattern would
    // run every route's matcher a second time.
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "<unmatched>".to_string());
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    if let Ok(v) = header::HeaderValue::from_str(&request_id) {
        res.headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), v);
    }
    crate::observe::record_request(&route, status, elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            route = %route,
            status,
            ms = elapsed.as_millis() as u64,
            "request"
        )
    });
    Ok(res)
}

/// Starts the broker's HTTP server and background jobs; returns when it stops.
pub async fn run(settings: Settings, workers: Option<usize>) -> std::io::Result<()> {
    let settings = Arc::new(settings);
    let (store, embedded) = match crate::stores::open_store(&settings).await {
        Ok(s) => s,
        Err(e) => {
            return Err(std::io::Error::other(format!(
                "{}: store: {e}",
                settings.source.display()
            )))
        }
    };
    let mut background = jobs::Jobs::default();
    if let Some(db) = embedded {
        background.spawn(jobs::sweep(db, background.token()));
    }
    let records = match crate::person::records::open(&settings).await {
        Ok(r) => r,
        Err(e) => {
            return Err(std::io::Error::other(format!(
                "{}: records: {e}",
                settings.source.display()
            )))
        }
    };
    let redis_store = !matches!(settings.store, crate::config::StoreConfig::Embedded { .. });
    let embedded_records = matches!(
        settings.records.backend,
        crate::config::records::RecordsBackend::Embedded(_)
    );
    if redis_store && embedded_records {
        tracing::warn!("the store is Redis but the records are embedded: every instance keeps persons of its own; set [records] kind = \"postgres\" for several instances");
    }
    tokio::spawn(crate::person::records::purge_activity(
        records.clone(),
        settings.records.activity_retention,
    ));
    crate::observe::install_metrics();
    let instance = Arc::new(crate::versions::Instance::new(&settings.listen));
    let settings =
        match crate::versions::start(settings, &records, &instance, util::now_millis()).await {
            Ok(s) => s,
            Err(e) => {
                return Err(std::io::Error::other(format!(
                    "configuration versions: {e}"
                )))
            }
        };
    let store: store::SharedStore = Arc::new(store::metered::MeteredStore::new(store));
    let listen = settings.listen.clone();
    let issuer = settings.issuer.clone();
    let state = web::Data::new(AppState {
        live: Arc::new(arc_swap::ArcSwap::from_pointee(
            crate::oidc::discovery::live(settings),
        )),
        store,
        records,
        http: state::http_client(),
        clock: std::sync::Arc::new(crate::clock::SystemClock),
        maintenance: Arc::default(),
        instance: instance.clone(),
    });
    background.spawn(crate::versions::follow(
        state.live.clone(),
        state.records.clone(),
        instance,
        state.clock.clone(),
        background.token(),
    ));
    background.spawn(jobs::reload(
        state.live.clone(),
        jobs::hangup_handler(),
        background.token(),
    ));
    background.spawn(jobs::backchannel_logout(
        state.live.clone(),
        state.store.clone(),
        state.http.clone(),
        state.clock.clone(),
        background.token(),
    ));
    let inflight = web::Data::new(Arc::new(limits::InFlight::default()));
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(inflight.clone())
            .app_data(web::PayloadConfig::new(64 * 1024))
            .wrap(actix_web::middleware::from_fn(limits::guard))
            .wrap(actix_web::middleware::from_fn(log_requests))
            .configure(routes)
    })
    // A request head must arrive within 5 s; the body has its own deadline (limits.rs).
    .client_request_timeout(std::time::Duration::from_secs(5))
    .shutdown_timeout(5);
    if let Some(n) = workers {
        server = server.workers(n);
    }
    let server = match server.bind(&listen) {
        Ok(s) => s,
        Err(e) => {
            background.stop().await;
            return Err(e);
        }
    };
    // Tests and operators wait for this line: the port is bound when it is printed.
    tracing::info!(issuer = %issuer, listen = %listen, "broker listening");
    let outcome = server.run().await;
    background.stop().await;
    outcome
}
