//! The load generator: many tokio tasks, each looping over one kind of request until a
//! deadline, on keep-alive HTTP connections to 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, RequestBuilder, StatusCode};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::instance::{CITIZENS, REDIRECT_URI, SCOPE};
use crate::stats::Stats;

/// The broker limits password submissions to 30 per address and connector in five
/// minutes; simulated browsers change their source address before reaching it.
const LOGINS_PER_ADDRESS: u32 = 25;

/// Where the requests go and how the relying parties authenticate.
#[derive(Clone)]
pub struct Target {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Secret of the benchmark clients.
    pub secret: String,
    /// Source addresses for simulated browsers.
    pub addrs: Arc<SourceAddrs>,
    /// Which of [`CITIZENS`] logged in at least once.
    pub seen: Arc<Vec<AtomicBool>>,
}

impl Target {
    /// A target with no citizen seen yet.
    pub fn new(base: String, secret: String, addrs: Arc<SourceAddrs>) -> Target {
        Target {
            base,
            secret,
            addrs,
            seen: Arc::new(CITIZENS.iter().map(|_| AtomicBool::new(false)).collect()),
        }
    }

    /// How many distinct citizens logged in.
    pub fn citizens_seen(&self) -> usize {
        self.seen
            .iter()
            .filter(|s| s.load(Ordering::Relaxed))
            .count()
    }
}

/// The result of a scenario.
pub struct Outcome {
    /// Wall time from the first request to the end of the last one.
    pub elapsed: Duration,
    /// The scenario's unit (request or flow).
    pub main: Stats,
    /// Token-endpoint part of a login flow.
    pub token: Option<Stats>,
}

/// Loopback source addresses `127.x.y.z` (all of 127/8 reaches the loopback interface),
/// handed out in order from a random start.
pub struct SourceAddrs {
    next: AtomicU32,
    usable: bool,
}

impl SourceAddrs {
    /// Checks that this machine lets sockets bind to other loopback addresses.
    pub fn new() -> SourceAddrs {
        let start = rand::rng().next_u32() % (254 * 256 * 254);
        let usable = std::net::UdpSocket::bind((Self::addr(start), 0)).is_ok();
        SourceAddrs {
            next: AtomicU32::new(start),
            usable,
        }
    }

    /// Whether distinct source addresses are in use.
    pub fn usable(&self) -> bool {
        self.usable
    }

    fn addr(n: u32) -> Ipv4Addr {
        let n = n % (254 * 256 * 254);
        let x = 1 + n / (256 * 254);
        let y = (n / 254) % 256;
        let z = 1 + n % 254;
        Ipv4Addr::new(127, x as u8, y as u8, z as u8)
    }

    fn take(&self) -> Option<IpAddr> {
        self.usable
            .then(|| IpAddr::V4(Self::addr(self.next.fetch_add(1, Ordering::Relaxed))))
    }
}

/// A keep-alive client for the relying party's back-channel calls (`/token`) and the
/// public GET endpoints.
pub fn rp_client() -> Result<Client, String> {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// A simulated browser's connection pool, moved to a new source address every
/// `LOGINS_PER_ADDRESS` logins. Cookies are kept per login ([`Jar`]), so each login is a
/// fresh browser while connections are reused.
struct Browser {
    http: Client,
    used: u32,
    addrs: Arc<SourceAddrs>,
}

impl Browser {
    fn new(addrs: Arc<SourceAddrs>) -> Result<Browser, String> {
        Ok(Browser {
            http: Self::client(&addrs)?,
            used: 0,
            addrs,
        })
    }

    fn client(addrs: &SourceAddrs) -> Result<Client, String> {
        Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(10))
            .local_address(addrs.take())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))
    }

    fn next(&mut self) -> Result<&Client, String> {
        if self.used >= LOGINS_PER_ADDRESS && self.addrs.usable() {
            self.http = Self::client(&self.addrs)?;
            self.used = 0;
        }
        self.used += 1;
        Ok(&self.http)
    }
}

/// The cookies of one browser session.
#[derive(Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn absorb(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            let removed = value.is_empty()
                || text
                    .to_ascii_lowercase()
                    .split(';')
                    .any(|a| a.trim() == "max-age=0");
            self.0.retain(|(n, _)| n != name);
            if !removed {
                self.0.push((name.to_string(), value.to_string()));
            }
        }
    }

    fn apply(&self, rb: RequestBuilder) -> RequestBuilder {
        if self.0.is_empty() {
            return rb;
        }
        let header = self
            .0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        rb.header(COOKIE, header)
    }
}

fn snippet(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// Sends a browser request with the jar's cookies; expects `expect` and returns the
/// `Location` header and the body.
async fn browse(
    rb: RequestBuilder,
    jar: &mut Jar,
    step: &str,
    expect: StatusCode,
) -> Result<(Option<String>, String), String> {
    let resp = jar
        .apply(rb)
        .send()
        .await
        .map_err(|e| format!("{step}: {e}"))?;
    jar.absorb(resp.headers());
    let status = resp.status();
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let body = resp.text().await.map_err(|e| format!("{step}: {e}"))?;
    if status != expect {
        return Err(format!("{step}: HTTP {status}: {}", snippet(&body)));
    }
    Ok((location, body))
}

/// Extracts the value of a hidden form field.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

/// The login transaction path (`/login/{tx}`) in a form's action.
fn tx_path(html: &str) -> Option<String> {
    let start = html.find("action=\"/login/")? + "action=\"".len();
    let rest = &html[start..];
    let action = &rest[..rest.find('"')?];
    let tx = action.split('/').nth(2)?;
    Some(format!("/login/{tx}"))
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_string()
    }
}

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    let verifier = URL_SAFE_NO_PAD.encode(b);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// One interactive login with a fresh cookie jar: authorize, choice page, connector
/// start, form page, password step. Returns the code and the PKCE verifier.
async fn login(
    http: &Client,
    target: &Target,
    client_id: &str,
) -> Result<(String, String), String> {
    let base = target.base.as_str();
    let (verifier, challenge) = pkce();
    let who = (rand::rng().next_u32() as usize) % CITIZENS.len();
    let (user, password) = CITIZENS[who];
    let mut jar = Jar::default();
    let mut authorize =
        url::Url::parse(&format!("{base}/authorize")).map_err(|e| format!("url: {e}"))?;
    authorize.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT_URI),
        ("scope", SCOPE),
        ("state", "bench-state"),
        ("nonce", "bench-nonce"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let see_other = StatusCode::SEE_OTHER;
    let (location, _) = browse(http.get(authorize), &mut jar, "authorize", see_other).await?;
    let location = location.ok_or("authorize: 303 without Location")?;
    let (_, choice) = browse(
        http.get(absolute(base, &location)),
        &mut jar,
        "choice page",
        StatusCode::OK,
    )
    .await?;
    let csrf = hidden(&choice, "csrf").ok_or("choice page: no csrf field")?;
    let tx = tx_path(&choice).ok_or("choice page: no login form")?;
    let start = http
        .post(format!("{base}{tx}/start"))
        .form(&[("csrf", csrf.as_str()), ("connector", "test-citizens")]);
    browse(start, &mut jar, "start", see_other).await?;
    let (_, form) = browse(
        http.get(format!("{base}{tx}")),
        &mut jar,
        "form page",
        StatusCode::OK,
    )
    .await?;
    let csrf = hidden(&form, "csrf").ok_or("form page: no csrf field")?;
    let tx = tx_path(&form).ok_or("form page: no login form")?;
    let step = http.post(format!("{base}{tx}/step")).form(&[
        ("csrf", csrf.as_str()),
        ("username", user),
        ("password", password),
    ]);
    let (location, _) = browse(step, &mut jar, "step", see_other).await?;
    let location = location.ok_or("step: 303 without Location")?;
    let callback = url::Url::parse(&location).map_err(|e| format!("callback {location}: {e}"))?;
    let param = |name: &str| {
        callback
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match param("code") {
        Some(code) => {
            if let Some(seen) = target.seen.get(who) {
                seen.store(true, Ordering::Relaxed);
            }
            Ok((code, verifier))
        }
        None => Err(format!(
            "step: redirect without code: {}",
            param("error_description")
                .or_else(|| param("error"))
                .unwrap_or(location)
        )),
    }
}

/// A client's DPoP key (ES256): one per load task; each grant gets a fresh proof.
pub struct DpopKey {
    jwk: serde_json::Value,
    encoding: jsonwebtoken::EncodingKey,
}

impl DpopKey {
    /// A fresh key.
    pub fn new() -> Result<DpopKey, String> {
        let (key, pem) =
            broker::keys::SigningKey::generate("dpop", broker::keys::SigningAlg::ES256)
                .map_err(|e| format!("DPoP key: {e}"))?;
        let mut jwk = serde_json::to_value(key.jwk()).map_err(|e| e.to_string())?;
        if let Some(o) = jwk.as_object_mut() {
            for member in ["kid", "alg", "use"] {
                o.remove(member);
            }
        }
        let encoding = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| format!("DPoP key: {e}"))?;
        Ok(DpopKey { jwk, encoding })
    }

    /// A proof for `POST url` (RFC 9449 4.2).
    fn proof(&self, url: &str) -> Result<String, String> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let claims = serde_json::json!({
            "jti": format!("{:x}", rand::random::<u128>()), "htm": "POST", "htu": url, "iat": iat,
        });
        let mut input = b64.encode(header.to_string());
        input.push('.');
        input.push_str(&b64.encode(claims.to_string()));
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &self.encoding,
            jsonwebtoken::Algorithm::ES256,
        )
        .map_err(|e| format!("DPoP proof: {e}"))?;
        Ok(format!("{input}.{sig}"))
    }
}

/// Posts a grant to `/token` with HTTP Basic (and a DPoP proof of `dpop`); returns the
/// next refresh token.
async fn token(
    rp: &Client,
    target: &Target,
    client_id: &str,
    form: &[(&str, &str)],
    dpop: Option<&DpopKey>,
) -> Result<String, String> {
    let grant = form.first().map(|(_, g)| *g).unwrap_or("token");
    let url = format!("{}/token", target.base);
    let mut req = rp
        .post(&url)
        .basic_auth(client_id, Some(&target.secret))
        .form(form);
    if let Some(key) = dpop {
        req = req.header("DPoP", key.proof(&url)?);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("token ({grant}): {e}"))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("token ({grant}): {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "token ({grant}): HTTP {status}: {}",
            snippet(&String::from_utf8_lossy(&body))
        ));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("token ({grant}): bad JSON: {e}"))?;
    json["refresh_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("token ({grant}): no refresh_token"))
}

async fn redeem(
    rp: &Client,
    target: &Target,
    client_id: &str,
    code: &str,
    verifier: &str,
    dpop: Option<&DpopKey>,
) -> Result<String, String> {
    token(
        rp,
        target,
        client_id,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ],
        dpop,
    )
    .await
}

/// Runs `concurrency` tasks made by `task(i)` and merges what they measured.
async fn run<F, Fut>(concurrency: usize, mut task: F) -> Result<Outcome, String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = (Stats, Option<Stats>)> + Send + 'static,
{
    let started = Instant::now();
    let mut set = JoinSet::new();
    for i in 0..concurrency {
        set.spawn(task(i));
    }
    let mut main = Stats::default();
    let mut token: Option<Stats> = None;
    while let Some(done) = set.join_next().await {
        let (m, t) = done.map_err(|e| format!("a load task failed: {e}"))?;
        main.merge(m);
        if let Some(t) = t {
            token.get_or_insert_with(Stats::default).merge(t);
        }
    }
    Ok(Outcome {
        elapsed: started.elapsed(),
        main,
        token,
    })
}

/// GETs `path` in a loop until `deadline`, on raw keep-alive connections
/// ([`crate::raw_get`]).
pub async fn get(
    target: &Target,
    path: &str,
    concurrency: usize,
    duration: Duration,
) -> Result<Outcome, String> {
    let addr = target
        .base
        .strip_prefix("http://")
        .ok_or("the broker is not on plain http")?;
    get_at(addr, path, concurrency, duration).await
}

/// GETs `path` from the server at `addr` (`ip:port`) in `concurrency` keep-alive loops
/// ([`crate::raw_get`]), as [`get`] does from the broker.
pub async fn get_at(
    addr: &str,
    path: &str,
    concurrency: usize,
    duration: Duration,
) -> Result<Outcome, String> {
    let addr = addr.to_string();
    let deadline = Instant::now() + duration;
    run(concurrency, |_| {
        let (addr, path) = (addr.clone(), path.to_string());
        async move { (crate::raw_get::get_loop(&addr, &path, deadline).await, None) }
    })
    .await
}

/// A login and code redemption: the first refresh token of a chain.
async fn new_chain(
    browser: &mut Browser,
    rp: &Client,
    target: &Target,
    client_id: &str,
    dpop: Option<&DpopKey>,
) -> Result<String, String> {
    let (code, verifier) = login(browser.next()?, target, client_id).await?;
    redeem(rp, target, client_id, &code, &verifier, dpop).await
}

/// Refresh-token grants: each task logs in once, then rotates its own token chain until
/// `deadline` (each response carries the next refresh token). With `dpop`, each task has
/// its own ES256 DPoP key: the family is bound to it and every grant carries a fresh proof.
pub async fn refresh(
    target: &Target,
    client_id: &'static str,
    dpop: bool,
    concurrency: usize,
    duration: Duration,
) -> Result<Outcome, String> {
    let rp = rp_client()?;
    // First one chain per task, untimed.
    let mut set = JoinSet::new();
    for _ in 0..concurrency {
        let (rp, target) = (rp.clone(), target.clone());
        set.spawn(async move {
            let mut browser = Browser::new(target.addrs.clone())?;
            let key = if dpop { Some(DpopKey::new()?) } else { None };
            let chain = new_chain(&mut browser, &rp, &target, client_id, key.as_ref()).await?;
            Ok::<_, String>((browser, chain, key))
        });
    }
    let mut chains = Vec::with_capacity(concurrency);
    while let Some(done) = set.join_next().await {
        let chain = done.map_err(|e| format!("a login task failed: {e}"))?;
        chains.push(chain.map_err(|e| format!("cannot obtain refresh tokens: {e}"))?);
    }
    let deadline = Instant::now() + duration;
    run(concurrency, |_| {
        let (rp, target) = (rp.clone(), target.clone());
        let chain = chains.pop();
        async move {
            let mut stats = Stats::default();
            let Some((mut browser, mut current, key)) = chain else {
                return (stats, None);
            };
            while Instant::now() < deadline {
                let t = Instant::now();
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", current.as_str()),
                ];
                match token(&rp, &target, client_id, &form, key.as_ref()).await {
                    Ok(next) => {
                        stats.ok(t);
                        current = next;
                    }
                    Err(e) => {
                        // The chain may be broken: start a new one (untimed).
                        stats.err(e);
                        match new_chain(&mut browser, &rp, &target, client_id, key.as_ref()).await {
                            Ok(next) => current = next,
                            Err(e) => {
                                stats.err(e);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                }
            }
            (stats, None)
        }
    })
    .await
}

/// Whole logins with a fresh cookie jar each (authorize, choice, start, form, step, token);
/// the token-endpoint part (code redemption) is also measured on its own.
pub async fn logins(
    target: &Target,
    client_id: &'static str,
    concurrency: usize,
    duration: Duration,
) -> Result<Outcome, String> {
    let rp = rp_client()?;
    let deadline = Instant::now() + duration;
    run(concurrency, |_| {
        let (rp, target) = (rp.clone(), target.clone());
        async move {
            let mut flows = Stats::default();
            let mut tokens = Stats::default();
            let mut browser = match Browser::new(target.addrs.clone()) {
                Ok(b) => b,
                Err(e) => {
                    flows.err(e);
                    return (flows, Some(tokens));
                }
            };
            while Instant::now() < deadline {
                let t = Instant::now();
                let http = match browser.next() {
                    Ok(h) => h,
                    Err(e) => {
                        flows.err(e);
                        break;
                    }
                };
                let (code, verifier) = match login(http, &target, client_id).await {
                    Ok(c) => c,
                    Err(e) => {
                        flows.err(e);
                        continue;
                    }
                };
                let tt = Instant::now();
                match redeem(&rp, &target, client_id, &code, &verifier, None).await {
                    Ok(_) => {
                        tokens.ok(tt);
                        flows.ok(t);
                    }
                    Err(e) => {
                        tokens.err(e.clone());
                        flows.err(e);
                    }
                }
            }
            (flows, Some(tokens))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_stay_in_loopback() {
        for n in [0, 1, 253, 254, 255, 65_000, 254 * 256 * 254 - 1, u32::MAX] {
            let a = SourceAddrs::addr(n);
            assert_eq!(a.octets()[0], 127);
            assert_ne!(a.octets()[1], 0);
            assert!((1..=254).contains(&a.octets()[3]), "{a}");
        }
    }

    #[test]
    fn cookies() {
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, "a=1; Path=/; HttpOnly".parse().unwrap());
        headers.append(SET_COOKIE, "b=2; Path=/".parse().unwrap());
        let mut jar = Jar::default();
        jar.absorb(&headers);
        let mut gone = HeaderMap::new();
        gone.append(SET_COOKIE, "a=x; Max-Age=0".parse().unwrap());
        jar.absorb(&gone);
        assert_eq!(jar.0, vec![("b".to_string(), "2".to_string())]);
    }

    #[test]
    fn forms() {
        let html = r#"<form action="/login/abc123/step" method="post"><input type="hidden" name="csrf" value="xyz">"#;
        assert_eq!(hidden(html, "csrf").as_deref(), Some("xyz"));
        assert_eq!(tx_path(html).as_deref(), Some("/login/abc123"));
    }
}
