//! `broker demo`: the broker with the embedded store and test citizens, plus a small demo
//! relying party (a real OpenID Connect client built with the `openidconnect` crate) that
//! shows the claims it received, and a simulated VNeID (the `simulators` crate) as an
//! upstream OpenID Provider behind the `oidc` connector.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use actix_web::http::header;
use actix_web::{web, App, HttpResponse, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse,
};

use crate::config::{self, Mode};
use crate::keys::{SigningAlg, SigningKey};

/// The demo configuration, written to the data folder at each start.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// The demo's connector logos, written to `logos/` in the data folder at each start.
const DEMO_LOGOS: &[(&str, &[u8])] = &[
    ("vneid.svg", include_bytes!("../../config/logos/vneid.svg")),
    (
        "bank-card.svg",
        include_bytes!("../../config/logos/bank-card.svg"),
    ),
    (
        "ctid-en.svg",
        include_bytes!("../../config/logos/ctid-en.svg"),
    ),
    (
        "ctid-zh.svg",
        include_bytes!("../../config/logos/ctid-zh.svg"),
    ),
];

/// The demo relying party's client secret (its SHA-256 is in the demo configuration).
pub const DEMO_RP_SECRET: &str = "demo-rp-secret-change-me";

/// Where the simulated VNeID listens, and its issuer (as in the demo configuration).
pub const VNEID_LISTEN: &str = "127.0.0.1:8082";
/// The simulated VNeID's issuer.
pub const VNEID_ISSUER: &str = "http://localhost:8082";
/// The broker's client id at the simulated VNeID.
pub const VNEID_CLIENT_ID: &str = "broker-demo";
/// File (in the data folder) of the broker's client secret at the simulated VNeID.
pub const VNEID_SECRET_FILE: &str = "vneid-client.secret";

/// Where the simulated banks listen (bank verification contract of `bank-card`).
pub const BANKS_LISTEN: &str = "127.0.0.1:8083";
/// Where the simulated SMS gateway listens; its inbox page is `/inbox`.
pub const SMS_LISTEN: &str = "127.0.0.1:8084";
/// Files (in the data folder) of the connectors' hash keys.
pub const HASH_KEY_FILES: &[&str] = &["bank-card.key", "legacy.key"];
/// Where the simulated CTID service listens, and its public URL (the `iss` of its results).
pub const CTID_LISTEN: &str = "127.0.0.1:8085";
/// The simulated CTID service's public URL.
pub const CTID_URL: &str = "http://localhost:8085";
/// Where the simulated old portal's accounts API listens.
pub const LEGACY_LISTEN: &str = "127.0.0.1:8086";
/// Where the simulated population registry listens.
pub const REGISTRY_LISTEN: &str = "127.0.0.1:8087";

/// Prepares the data folder (keys, pairwise secret, configuration) and returns the
/// configuration path. Existing keys and secrets are kept, so tokens survive restarts.
pub fn prepare(dir: &Path) -> Result<PathBuf, String> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| format!("{}: {e}", keys.display()))?;
    for (file, alg) in [
        ("rs256.pem", SigningAlg::RS256),
        ("es256.pem", SigningAlg::ES256),
        ("eddsa.pem", SigningAlg::EdDSA),
    ] {
        let path = keys.join(file);
        if !path.exists() {
            let (_, pem) = SigningKey::generate("demo", alg)?;
            write_private(&path, pem.as_bytes())?;
        }
    }
    let secret = dir.join("pairwise.secret");
    if !secret.exists() {
        write_private(&secret, crate::util::random_token(32).as_bytes())?;
    }
    let vneid_secret = dir.join(VNEID_SECRET_FILE);
    if !vneid_secret.exists() {
        write_private(&vneid_secret, crate::util::random_token(32).as_bytes())?;
    }
    for file in HASH_KEY_FILES {
        let path = dir.join(file);
        if !path.exists() {
            write_private(&path, crate::util::random_token(32).as_bytes())?;
        }
    }
    let logos = dir.join("logos");
    std::fs::create_dir_all(&logos).map_err(|e| format!("{}: {e}", logos.display()))?;
    for (file, bytes) in DEMO_LOGOS {
        let path = logos.join(file);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let config = dir.join("broker.toml");
    std::fs::write(&config, DEMO_CONFIG).map_err(|e| format!("{}: {e}", config.display()))?;
    Ok(config)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// Runs the broker and the demo relying party until interrupted.
pub async fn run(dir: &Path, rp_port: u16) -> std::io::Result<()> {
    let config_path = prepare(dir).map_err(std::io::Error::other)?;
    let settings = config::load(&config_path, Mode::Demo).map_err(|problems| {
        std::io::Error::other(
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let issuer = settings.issuer.clone();
    let vneid_secret = std::fs::read_to_string(dir.join(VNEID_SECRET_FILE))
        .map_err(|e| std::io::Error::other(format!("{VNEID_SECRET_FILE}: {e}")))?;
    let vneid = simulators::vneid::serve(
        VNEID_LISTEN,
        VNEID_ISSUER,
        vec![simulators::vneid::Client {
            id: VNEID_CLIENT_ID.into(),
            secret: vneid_secret.trim_end_matches(['\n', '\r']).to_string(),
            redirect_uris: vec![format!("{issuer}/callback/vneid")],
        }],
    )?;
    println!();
    println!("  Broker:                {issuer}");
    println!("  Demo relying party:    http://localhost:{rp_port}/");
    println!("  Test citizens:         an / demo, lan / demo, wei / demo");
    println!("  VNeID (simulated):     {VNEID_ISSUER}  (an / demo, lan / demo: level 2; binh / demo: level 1)");
    let services = vec![
        simulators::bank::serve(BANKS_LISTEN, None)?,
        simulators::sms::serve(SMS_LISTEN, None)?,
        simulators::ctid::serve(CTID_LISTEN, CTID_URL, None)?,
        simulators::legacy::serve(LEGACY_LISTEN, None)?,
        simulators::registry::serve(REGISTRY_LISTEN)?,
    ];
    println!("  Bank card + SMS:       wei: 王伟, 110101199003074517, card 6222020200112345679, phone 13800138000");
    println!("                         an: Nguyễn Văn An, 079201001234, card 6217000010012345677, phone +84901234567");
    println!("  SMS inbox (simulated): http://localhost:8084/inbox");
    println!("  CTID (simulated):      scan the QR code or open the app link, then choose a citizen and approve");
    println!("  Old portal accounts:   nguyenvanan, tranthilan, levanbinh / matkhau-cu (until 2027-06-30)");
    println!("  Population registry:   http://localhost:8087 (lan's old CMND 012345678 became 001195006789)");
    println!("  Operators' console:    {issuer}/console  (sign in through VNeID: an / demo is admin, lan / demo is viewer)");
    println!();
    let rp = RelyingParty {
        issuer: issuer.clone(),
        home: format!("http://localhost:{rp_port}/"),
        redirect: format!("http://localhost:{rp_port}/callback"),
        pending: Mutex::new(HashMap::new()),
        http: openidconnect::reqwest::Client::builder()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?,
    };
    let rp = web::Data::new(rp);
    let rp_server = HttpServer::new(move || App::new().configure(rp_routes(rp.clone())))
        .workers(1)
        .bind(("127.0.0.1", rp_port))?
        .run();
    let broker = crate::web::run(settings, None);
    let services = futures_util::future::try_join_all(services);
    tokio::try_join!(broker, rp_server, vneid, services).map(|_| ())
}

/// The demo relying party's pages.
fn rp_routes(rp: web::Data<RelyingParty>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(rp)
            .route("/", web::get().to(home))
            .route("/login", web::get().to(login))
            .route("/callback", web::get().to(callback))
            .route("/logged-out", web::get().to(logged_out));
    }
}

struct RelyingParty {
    issuer: String,
    /// Its home page (also where the broker sends the citizen back after a logout).
    home: String,
    redirect: String,
    pending: Mutex<HashMap<String, (String, String)>>,
    http: openidconnect::reqwest::Client,
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!(
            "<!doctype html><html lang=en><head><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width, initial-scale=1\"><title>{title}</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}}\
             pre{{background:#f6f8fa;padding:1rem;overflow:auto}}.links{{display:flex;flex-wrap:wrap;gap:.5rem}}\
             a.b,button.b{{background:#1f6feb;color:#fff;padding:.5rem 1rem;border:0;border-radius:6px;text-decoration:none;font:inherit;cursor:pointer}}</style>\
             </head><body><h1>{title}</h1>{body}</body></html>"
        ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn home() -> HttpResponse {
    page(
        "Demo regional platform",
        "<p>This platform is an ordinary OpenID Connect relying party of the broker.</p>\
         <p class=links><a class=b id=login href=/login>Log in with the national identity broker</a>\
         <a class=b id=login-vi href=\"/login?lang=vi\" lang=vi>Đăng nhập (tiếng Việt)</a>\
         <a class=b id=login-zh href=\"/login?lang=zh\" lang=zh>登录（中文）</a>\
         <a class=b id=login-es href=\"/login?lang=es\" lang=es>Iniciar sesión (español)</a></p>",
    )
}

async fn client(
    rp: &RelyingParty,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    String,
> {
    let issuer = IssuerUrl::new(rp.issuer.clone()).map_err(|e| e.to_string())?;
    let metadata = CoreProviderMetadata::discover_async(issuer, &rp.http)
        .await
        .map_err(|e| format!("discovery failed: {e}"))?;
    let redirect = RedirectUrl::new(rp.redirect.clone()).map_err(|e| e.to_string())?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("demo-rp".into()),
        Some(ClientSecret::new(DEMO_RP_SECRET.into())),
    )
    .set_redirect_uri(redirect))
}

async fn login(
    rp: web::Data<RelyingParty>,
    q: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let client = match client(&rp).await {
        Ok(c) => c,
        Err(e) => return page("Demo error", &format!("<p>{}</p>", escape(&e))),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("phone".into()))
        .add_scope(Scope::new("citizen_id".into()))
        .set_pkce_challenge(challenge);
    if let Some(lang) = q.get("lang") {
        req = req.add_extra_param("ui_locales", lang.clone());
    }
    if let Some(acr) = q.get("acr") {
        req = req.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
    }
    let (url, state, nonce) = req.url();
    if let Ok(mut pending) = rp.pending.lock() {
        pending.insert(
            state.secret().clone(),
            (verifier.secret().clone(), nonce.secret().clone()),
        );
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, url.to_string()))
        .finish()
}

async fn callback(
    rp: web::Data<RelyingParty>,
    q: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if let Some(err) = q.get("error") {
        let desc = q.get("error_description").cloned().unwrap_or_default();
        return page(
            "Login not completed",
            &format!(
                "<p id=error>{}: {}</p><p><a class=b href=/>Back</a></p>",
                escape(err),
                escape(&desc)
            ),
        );
    }
    let (Some(code), Some(state)) = (q.get("code"), q.get("state")) else {
        return page("Demo error", "<p>code or state missing</p>");
    };
    let pending = rp.pending.lock().ok().and_then(|mut p| p.remove(state));
    let Some((verifier, nonce)) = pending else {
        return page("Demo error", "<p>unknown state (already used?)</p>");
    };
    let client = match client(&rp).await {
        Ok(c) => c,
        Err(e) => return page("Demo error", &format!("<p>{}</p>", escape(&e))),
    };
    let exchange = match client.exchange_code(AuthorizationCode::new(code.clone())) {
        Ok(x) => x,
        Err(e) => return page("Demo error", &format!("<p>{}</p>", escape(&e.to_string()))),
    };
    let tokens = match exchange
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(&rp.http)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            return page(
                "Demo error",
                &format!("<p>token request failed: {}</p>", escape(&e.to_string())),
            )
        }
    };
    let Some(id_token) = tokens.id_token() else {
        return page("Demo error", "<p>no ID token</p>");
    };
    if let Err(e) = id_token.claims(&client.id_token_verifier(), &Nonce::new(nonce)) {
        return page(
            "Demo error",
            &format!("<p>ID token rejected: {}</p>", escape(&e.to_string())),
        );
    }
    let payload = id_token
        .to_string()
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_default();
    let userinfo = rp
        .http
        .get(format!("{}/userinfo", rp.issuer))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await;
    let userinfo = match userinfo {
        Ok(r) => r.json::<serde_json::Value>().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let pretty =
        |v: &serde_json::Value| escape(&serde_json::to_string_pretty(v).unwrap_or_default());
    page(
        "Logged in",
        &format!(
            "<p>The broker's ID token was verified with its published keys.</p>\
             <h2>ID token claims</h2><pre id=claims>{}</pre>\
             <h2>UserInfo</h2><pre id=userinfo>{}</pre>\
             <form method=post action=\"{}/logout\" class=links>\
             <input type=hidden name=id_token_hint value=\"{}\">\
             <input type=hidden name=post_logout_redirect_uri value=\"{}logged-out\">\
             <input type=hidden name=state value=\"{}\">\
             <button class=b id=logout>Log out</button><a class=b href=/>Back</a></form>",
            pretty(&payload),
            pretty(&userinfo),
            escape(&rp.issuer),
            escape(&id_token.to_string()),
            escape(&rp.home),
            crate::util::random_token(12),
        ),
    )
}

/// Where the broker sends the citizen after an RP-initiated logout.
async fn logged_out() -> HttpResponse {
    page(
        "Logged out",
        "<p id=logged-out>You are logged out of the demo platform and of the national identity sign-in.</p>\
         <p class=links><a class=b id=home href=/>Back to the demo platform</a></p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test;

    fn demo_rp() -> web::Data<RelyingParty> {
        web::Data::new(RelyingParty {
            issuer: "http://localhost:8080".into(),
            home: "http://localhost:8081/".into(),
            redirect: "http://localhost:8081/callback".into(),
            pending: Mutex::new(HashMap::new()),
            http: openidconnect::reqwest::Client::new(),
        })
    }

    async fn get(path: &str) -> String {
        let app = test::init_service(App::new().configure(rp_routes(demo_rp()))).await;
        let resp = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        String::from_utf8(test::read_body(resp).await.to_vec()).expect("utf-8")
    }

    #[actix_web::test]
    async fn the_home_page_fits_phones_and_offers_every_language() {
        let html = get("/").await;
        assert!(
            html.contains("<meta name=viewport content=\"width=device-width, initial-scale=1\">")
        );
        for lang in ["vi", "zh", "es"] {
            assert!(
                html.contains(&format!("href=\"/login?lang={lang}\"")),
                "{lang}"
            );
        }
    }

    #[actix_web::test]
    async fn the_logged_out_page_links_back_to_the_platform() {
        let html = get("/logged-out").await;
        assert!(html.contains("id=home href=/>"), "{html}");
    }

    #[actix_web::test]
    async fn the_logout_address_is_registered_for_the_demo_platform() {
        let config: toml::Table = DEMO_CONFIG.parse().expect("demo.toml");
        let rp = config["clients"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"].as_str() == Some("demo-rp")))
            .expect("demo-rp");
        let uris = rp["post_logout_redirect_uris"].as_array().expect("uris");
        assert!(uris
            .iter()
            .any(|u| u.as_str() == Some("http://localhost:8081/logged-out")));
    }
}
