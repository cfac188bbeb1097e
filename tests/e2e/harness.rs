//! Starts the real `broker` binary on a free port with a configuration made for one test,
//! and plays the citizen's browser with a cookie-keeping HTTP client.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use broker::keys::{SigningAlg, SigningKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const RP_SECRET: &str = "rp-basic-secret-0123456789";
pub const POST_SECRET: &str = "rp-post-secret-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789abcdef";
pub const PAIRWISE: &str = "pairwise-secret-for-tests-0123456789abcdef";

/// A running broker; killed on drop.
pub struct Broker {
    child: Child,
    pub issuer: String,
    /// Where this process listens (differs from the issuer for a twin instance).
    pub base: String,
    config: PathBuf,
    redis: String,
    _dir: Option<tempfile::TempDir>,
    /// Private key (PEM) of the `rp-jwt` client, for `private_key_jwt`.
    pub client_key_pem: String,
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The PostgreSQL database of its records, dropped with the broker that created it.
    records_db: Option<records::testing::TestDb>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // After the broker: the database is dropped with the last connection gone.
        drop(self.records_db.take());
    }
}

/// Runs a future to its end on a runtime of its own (from sync code inside a test's runtime).
pub fn blocking<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
    .join()
    .expect("blocking task")
}

thread_local! {
    static POSTGRES_RECORDS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a test with every broker it starts keeping its records in PostgreSQL (a database of
/// its own at 127.0.0.1:5432): the same scenario, the other backend.
pub fn on_postgres_records(test: fn()) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            POSTGRES_RECORDS.with(|c| c.set(false));
        }
    }
    POSTGRES_RECORDS.with(|c| c.set(true));
    let _reset = Reset;
    test();
}

/// How to start a broker.
#[derive(Default, Clone)]
pub struct Options {
    /// Use Redis with this key prefix instead of the embedded store.
    pub redis_prefix: Option<String>,
    /// TOML inserted among the top-level keys.
    pub top: String,
    /// Redis URL when not the default one.
    pub redis_url: Option<String>,
    /// Extra TOML appended to the configuration.
    pub extra: String,
    /// Listen on this port instead of a free one (when the port must be known before the
    /// broker starts, e.g. for an upstream provider's redirect URI).
    pub port: Option<u16>,
    /// Keep the records in a new PostgreSQL database instead of the embedded file (also
    /// the default with a Redis store and inside [`on_postgres_records`]).
    pub postgres_records: bool,
    /// Keep the records in this PostgreSQL database URL (created by the test).
    pub records_url: Option<String>,
}

/// A port nothing listens on now, never one handed out before in this process: the kernel
/// may give a just-released port again, and two servers of one test would then collide.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn write_key(dir: &std::path::Path, name: &str, alg: SigningAlg) -> PathBuf {
    let (_, pem) = SigningKey::generate("k", alg).expect("key generation");
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write key");
    path
}

/// `[records]` in a PostgreSQL database.
pub fn postgres_records_toml(url: &str) -> String {
    format!("[records]\nkind = \"postgres\"\nurl = \"{url}\"\nuser = \"postgres\"\ntls = \"disable\"\npool_size = 4\n")
}

/// The configuration every test starts from.
pub fn base_config(port: u16, store: &str, client_jwks: &str, extra: &str) -> String {
    format!(
        r#"
issuer = "http://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"
pairwise_secret = {{ env = "TEST_PAIRWISE" }}
allow_test_citizens = true
{store}

[[keys]]
kid = "rs-1"
alg = "RS256"
file = "rs.pem"

[[keys]]
kid = "es-1"
alg = "ES256"
file = "es.pem"

[[keys]]
kid = "ed-1"
alg = "EdDSA"
file = "ed.pem"

[[connectors]]
id = "test-citizens"
type = "test-citizens"
name = {{ en = "Test citizens", vi = "Công dân thử nghiệm" }}

[connectors.settings]
assurance = "substantial"

[[connectors.settings.citizens]]
username = "an"
password = "demo"
citizen_id = "079201001234"
claims = {{ name = "Nguyễn Văn An", birthdate = "1990-03-15", phone_number = "+84901234567" }}

[[connectors.settings.citizens]]
username = "lan"
password = "demo"
claims = {{ name = "Trần Thị Lan" }}

[[connectors]]
id = "closed-bank"
type = "test-citizens"
name = {{ en = "Closed bank" }}
status = "maintenance"
maintenance_message = {{ en = "Being upgraded until Monday", vi = "Đang nâng cấp đến thứ Hai" }}

[connectors.settings]
citizens = [{{ username = "x", password = "y" }}]

[[clients]]
id = "rp-basic"
name = "Basic platform"
redirect_uris = ["http://localhost:9/cb"]
secret = {{ env = "TEST_RP_SECRET" }}
scopes = ["openid", "profile", "phone", "citizen_id", "offline_access"]

[[clients]]
id = "rp-other"
name = "Other platform"
redirect_uris = ["http://127.0.0.1:9/cb"]
secret = {{ env = "TEST_RP_SECRET" }}
scopes = ["openid", "profile"]

[[clients]]
id = "rp-public"
name = "Public app"
redirect_uris = ["http://localhost:9/public-cb"]
auth_method = "none"
subject_type = "public"
scopes = ["openid", "profile"]

[[clients]]
id = "rp-post"
name = "Post platform"
redirect_uris = ["http://localhost:9/post-cb"]
auth_method = "client_secret_post"
secret = {{ env = "TEST_POST_SECRET" }}
id_token_signed_response_alg = "ES256"

[[clients]]
id = "rp-jwt"
name = "JWT platform"
redirect_uris = ["http://localhost:9/jwt-cb"]
auth_method = "private_key_jwt"
jwks = '{client_jwks}'
id_token_signed_response_alg = "EdDSA"

[[clients]]
id = "rp-consent"
name = "Consent platform"
redirect_uris = ["http://localhost:9/consent-cb"]
secret = {{ env = "TEST_RP_SECRET" }}
require_consent = true
scopes = ["openid", "profile", "phone"]
{extra}
"#
    )
}

impl Broker {
    pub fn start(opts: Options) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        write_key(dir.path(), "rs.pem", SigningAlg::RS256);
        write_key(dir.path(), "es.pem", SigningAlg::ES256);
        write_key(dir.path(), "ed.pem", SigningAlg::EdDSA);
        let (client_key, client_key_pem) =
            SigningKey::generate("client-key-1", SigningAlg::ES256).expect("client key");
        let jwks = serde_json::json!({ "keys": [client_key.jwk()] }).to_string();
        let port = opts.port.unwrap_or_else(free_port);
        let store = match &opts.redis_prefix {
            Some(prefix) => format!(
                "[store]\nkind = \"redis\"\nurl = {{ env = \"TEST_REDIS_URL\" }}\nprefix = \"{prefix}\"\n"
            ),
            None => "[store]\nkind = \"embedded\"\npath = \"broker.redb\"\n".to_string(),
        };
        // A Redis store means several instances, as in deployments: their records are shared
        // in PostgreSQL (embedded records are one process's file).
        let postgres = opts.postgres_records
            || opts.redis_prefix.is_some()
            || POSTGRES_RECORDS.with(|c| c.get());
        let records_db = (postgres && opts.records_url.is_none())
            .then(|| blocking(records::testing::TestDb::create()));
        let records = match (&opts.records_url, &records_db) {
            (Some(url), _) => postgres_records_toml(url),
            (None, Some(db)) => postgres_records_toml(&db.url()),
            (None, None) => String::new(),
        };
        let config = base_config(
            port,
            &format!("{}\n{store}\n{records}", opts.top),
            &jwks,
            &opts.extra,
        );
        let config_path = dir.path().join("broker.toml");
        std::fs::write(&config_path, config).expect("write config");
        let redis = opts.redis_url.clone().unwrap_or_else(redis_url);
        let mut broker = Self::spawn(Some(dir), &config_path, port, port, client_key_pem, &redis);
        broker.records_db = records_db;
        broker
    }

    /// A second broker process with the same configuration, keys and store, on another
    /// port: together they must behave as one broker.
    pub fn twin(&self) -> Broker {
        let issuer_port = self
            .issuer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("issuer port");
        Self::spawn(
            None,
            &self.config,
            issuer_port,
            free_port(),
            self.client_key_pem.clone(),
            &self.redis,
        )
    }

    fn spawn(
        dir: Option<tempfile::TempDir>,
        config: &std::path::Path,
        issuer_port: u16,
        listen_port: u16,
        client_key_pem: String,
        redis: &str,
    ) -> Broker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{listen_port}"))
            .env("TEST_PAIRWISE", PAIRWISE)
            .env("TEST_RP_SECRET", RP_SECRET)
            .env("TEST_POST_SECRET", POST_SECRET)
            .env("TEST_REDIS_URL", redis)
            .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("BROKER_LOG", "info")
            .env("BROKER_WORKERS", "2")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the broker binary");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("broker listening") {
                    let _ = tx.send(());
                }
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let logs = logs.lock().map(|l| l.join("\n")).unwrap_or_default();
            panic!("the broker did not start within 60 s; its output:\n{logs}");
        }
        Broker {
            child,
            issuer: format!("http://127.0.0.1:{issuer_port}"),
            base: format!("http://127.0.0.1:{listen_port}"),
            config: config.to_path_buf(),
            redis: redis.to_string(),
            _dir: dir,
            client_key_pem,
            logs,
            records_db: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The PostgreSQL database of the records, when this broker created one.
    pub fn records_options(&self) -> Option<records::postgres::PgOptions> {
        self.records_db.as_ref().map(|db| db.options())
    }

    /// The configuration file.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// Process id (to send signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGHUP: "reload the configuration file".
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -HUP {}", self.pid());
    }

    /// Waits (bounded) until a log line contains `needle`; returns whether it did.
    pub fn wait_for_log(&self, needle: &str, occurrences: usize) -> bool {
        for _ in 0..300 {
            let n = self
                .logs
                .lock()
                .map(|l| l.iter().filter(|line| line.contains(needle)).count())
                .unwrap_or(0);
            if n >= occurrences {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Stops this process (as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The log once every line of the requests made so far has been written: the broker
    /// writes log lines in order through a writer thread, so the line of a new `/healthz`
    /// request comes after all of them. For checks that something is *not* in the log.
    pub async fn settled_log_text(&self) -> String {
        let before = self
            .logs
            .lock()
            .map(|l| l.iter().filter(|line| line.contains("/healthz")).count())
            .unwrap_or(0);
        let status = reqwest::get(self.url("/healthz"))
            .await
            .map(|r| r.status().as_u16());
        assert_eq!(status.ok(), Some(200), "the broker answers /healthz");
        assert!(
            self.wait_for_log("/healthz", before + 1),
            "the broker's log did not catch up:\n{}",
            self.log_text()
        );
        self.log_text()
    }
}

/// A connector's health in the admin API (`[admin]` with `TEST_ADMIN_TOKEN`): its status
/// and reason.
pub async fn connector_health(broker: &Broker, id: &str) -> (String, String) {
    let list: serde_json::Value = reqwest::Client::new()
        .get(broker.url("/admin/connectors"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin API")
        .json()
        .await
        .expect("json");
    let entry = list
        .as_array()
        .and_then(|l| l.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no connector {id} in {list}"));
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    (
        text(&entry["health"]["status"]),
        text(&entry["health"]["reason"]),
    )
}

/// A `private_key_jwt` client assertion of `rp-jwt` for `aud`, with `jti`.
pub fn rp_jwt_assertion(broker: &Broker, aud: &str, jti: &str) -> String {
    let key = broker::keys::SigningKey::from_pem(
        "client-key-1",
        broker::keys::SigningAlg::ES256,
        broker.client_key_pem.as_bytes(),
    )
    .expect("client key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    key.sign(
        "JWT",
        &serde_json::json!({
            "iss": "rp-jwt", "sub": "rp-jwt", "aud": aud,
            "jti": jti, "iat": now, "exp": now + 60
        }),
    )
    .expect("sign")
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    let verifier = URL_SAFE_NO_PAD.encode(b);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The citizen's browser: keeps cookies, does not follow redirects.
pub struct Browser {
    pub http: reqwest::Client,
    pub issuer: String,
}

/// What came back to the relying party.
#[derive(Debug)]
pub struct Callback {
    pub url: url::Url,
}

impl Callback {
    pub fn param(&self, name: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// Extracts the value of a hidden form field.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

/// The login transaction path in a form's action.
pub fn tx_path(html: &str) -> Option<String> {
    let start = html.find("action=\"/login/")? + "action=\"".len();
    let rest = &html[start..];
    let end = rest.find('"')?;
    let action = &rest[..end];
    let parts: Vec<&str> = action.split('/').collect();
    Some(format!("/login/{}", parts.get(2)?))
}

impl Browser {
    pub fn new(broker: &Broker) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            issuer: broker.base.clone(),
        }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.expect("GET")
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(url).form(form).send().await.expect("POST")
    }

    /// Sends an authorization request and returns the response.
    pub async fn authorize(&self, params: &[(&str, &str)]) -> reqwest::Response {
        let mut url = url::Url::parse(&format!("{}/authorize", self.issuer)).expect("url");
        url.query_pairs_mut().extend_pairs(params);
        self.get(url.as_str()).await
    }

    /// Follows one redirect and returns (status, location, body).
    pub async fn follow(&self, resp: reqwest::Response) -> (u16, Option<String>, String) {
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.unwrap_or_default();
        (status, location, body)
    }

    /// The choice page of a new login at `rp-basic` (scope `openid`, PKCE).
    pub async fn choice_page(&self) -> String {
        let (_, challenge) = pkce();
        let params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
        self.login_page(self.authorize(&params).await).await
    }

    /// From a response that should be the redirect to the login page, to the page's HTML.
    pub async fn login_page(&self, resp: reqwest::Response) -> String {
        let (status, location, body) = self.follow(resp).await;
        assert_eq!(
            status, 303,
            "expected a redirect to the login page, got {status}: {body}"
        );
        let location = location.expect("location");
        assert!(
            location.contains("/login/"),
            "unexpected redirect to {location}"
        );
        self.get(&location).await.text().await.expect("page")
    }

    /// Chooses the test-citizens connector on the choice page; returns the form page.
    pub async fn choose(&self, choice_html: &str, connector: &str) -> String {
        let csrf = hidden(choice_html, "csrf").expect("csrf on choice page");
        let tx = tx_path(choice_html).expect("tx in form");
        let resp = self
            .post(
                &format!("{}{tx}/start", self.issuer),
                &[("csrf", &csrf), ("connector", connector)],
            )
            .await;
        assert_eq!(resp.status().as_u16(), 303, "start must redirect");
        self.get(&format!("{}{tx}", self.issuer))
            .await
            .text()
            .await
            .expect("form page")
    }

    /// Submits the username/password form; returns the response.
    pub async fn submit_password(
        &self,
        form_html: &str,
        user: &str,
        password: &str,
    ) -> reqwest::Response {
        let csrf = hidden(form_html, "csrf").expect("csrf on form page");
        let tx = tx_path(form_html).expect("tx in form");
        self.post(
            &format!("{}{tx}/step", self.issuer),
            &[("csrf", &csrf), ("username", user), ("password", password)],
        )
        .await
    }

    /// A whole interactive login; returns the redirect back to the client.
    pub async fn login(&self, params: &[(&str, &str)], user: &str, password: &str) -> Callback {
        let resp = self.authorize(params).await;
        let choice = self.login_page(resp).await;
        let form = self.choose(&choice, "test-citizens").await;
        let resp = self.submit_password(&form, user, password).await;
        let (status, location, body) = self.follow(resp).await;
        assert_eq!(status, 303, "login must redirect to the client: {body}");
        Callback {
            url: url::Url::parse(&location.expect("location")).expect("callback url"),
        }
    }
}

/// Standard authorization parameters for a client with PKCE.
pub fn auth_params<'a>(
    client_id: &'a str,
    redirect_uri: &'a str,
    scope: &'a str,
    challenge: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", scope),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// Posts to the token endpoint with HTTP Basic; returns (status, body, www-authenticate).
pub async fn token_basic(
    broker: &Broker,
    client: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value, Option<String>) {
    let resp = reqwest::Client::new()
        .post(broker.url("/token"))
        .basic_auth(client, Some(secret))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get("www-authenticate")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body, www)
}

/// Posts a form to an endpoint without client authentication headers.
pub async fn post_form(
    broker: &Broker,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(broker.url(path))
        .form(form)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Decodes a JWT's payload without checking it (tests verify signatures separately).
pub fn payload(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').nth(1).expect("jwt payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("json")
}

/// Decodes a JWT's header.
pub fn jwt_header(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').next().expect("jwt header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("json")
}

/// Verifies a JWT with the broker's published JWKS; returns its claims.
pub async fn verify_with_jwks(broker: &Broker, jwt: &str, audience: &str) -> serde_json::Value {
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(broker.url("/jwks"))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let header = jsonwebtoken::decode_header(jwt).expect("header");
    let kid = header.kid.clone().expect("kid");
    let jwk = jwks.find(&kid).expect("kid published in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("decoding key");
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[audience]);
    v.set_issuer(&[&broker.issuer]);
    jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &v)
        .expect("signature and claims verify with the published JWKS")
        .claims
}

/// Logs `an` in at a client and redeems the code; returns the token response.
pub async fn tokens_for(
    broker: &Broker,
    browser: &Browser,
    client: &str,
    redirect: &str,
    scope: &str,
) -> serde_json::Value {
    let (verifier, challenge) = pkce();
    let cb = browser
        .login(
            &auth_params(client, redirect, scope, &challenge),
            "an",
            "demo",
        )
        .await;
    let code = cb.param("code").expect("code");
    let (status, body, _) = token_basic(
        broker,
        client,
        RP_SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "token response: {body}");
    body
}

/// A tiny HTTP/1.1 server on a free port, for the external services of a test (a
/// platform's back-channel endpoint, a population registry). `handler` gets the method,
/// the path and the body, and returns the status line (`"200 OK"`) and a JSON body.
pub fn http_stub<F>(handler: F) -> u16
where
    F: Fn(&str, &str, &[u8]) -> (&'static str, String) + Send + 'static,
{
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut parts = request_line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let (status, reply) = handler(&method, &path, &body);
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    port
}
