//! The JSON-over-HTTP client of the services that speak a documented contract (bank
//! verification, SMS gateway, CTID, an old portal's accounts API, the population registry).
//!
//! Every call has a timeout, follows no redirects (an upstream must not send the broker
//! elsewhere), reads a bounded body, and turns "down, slow or overloaded" (connection
//! errors, timeouts, 429 and 5xx) into [`CallError::Outage`], which connectors show as
//! "try later or another way". Request and response bodies are never logged: they carry
//! personal data.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::outage::RecentOutage;
use crate::secret::{self, SecretSource};

/// Largest response body read.
const MAX_BODY: usize = 64 * 1024;

/// Where a service is and how to reach it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Base URL (`https://…`; plain `http` only on localhost).
    pub url: String,
    /// Timeout of one call, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Bearer token sent as `Authorization: Bearer …` (`{ env }` or `{ file }`).
    #[serde(default)]
    pub api_key: Option<SecretSource>,
}

fn default_timeout() -> u64 {
    5000
}

/// Why a call gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Unreachable, slow or overloaded (timeout, connection refused, 429, 5xx).
    #[error("service unavailable: {0}")]
    Outage(String),
    /// It answered something that is not the contract.
    #[error("invalid answer: {0}")]
    Invalid(String),
}

/// A JSON client for one [`Endpoint`].
#[derive(Clone)]
pub struct JsonClient {
    http: reqwest::Client,
    base: url::Url,
    bearer: Option<String>,
    /// Shared by the clones, so the connector sees every failure of its service.
    outage: RecentOutage,
}

impl std::fmt::Debug for JsonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

pub use crate::url_policy::check_url;

impl JsonClient {
    /// Validates an endpoint (problems get `key` as prefix) and builds its client.
    pub fn open(
        endpoint: &Endpoint,
        base_dir: &Path,
        key: &str,
        problems: &mut Vec<(String, String)>,
    ) -> Option<JsonClient> {
        let join = |k: &str| {
            if key.is_empty() {
                k.to_string()
            } else {
                format!("{key}.{k}")
            }
        };
        let base = match check_url(&endpoint.url) {
            Ok(u) => Some(u),
            Err(e) => {
                problems.push((join("url"), e));
                None
            }
        };
        let timeout_ok = (1..=60_000).contains(&endpoint.timeout_ms);
        if !timeout_ok {
            problems.push((
                join("timeout_ms"),
                "must be between 1 and 60000 milliseconds".into(),
            ));
        }
        let bearer = match &endpoint.api_key {
            Some(s) => Some(
                secret::resolve(s, base_dir, &join("api_key"), problems)
                    .and_then(|b| String::from_utf8(b).ok())?,
            ),
            None => None,
        };
        let timeout = Duration::from_millis(endpoint.timeout_ms.clamp(1, 60_000));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!(
                "national-identity-broker/",
                env!("CARGO_PKG_VERSION")
            ))
            .build();
        let http = match http {
            Ok(h) => h,
            Err(e) => {
                problems.push((join("url"), format!("cannot build the HTTP client: {e}")));
                return None;
            }
        };
        if !timeout_ok {
            return None;
        }
        Some(JsonClient {
            http,
            base: base?,
            bearer,
            outage: RecentOutage::default(),
        })
    }

    /// The URL of `path` below the base URL (`path` without a leading slash; empty for the
    /// base URL itself).
    pub fn url(&self, path: &str) -> Result<url::Url, CallError> {
        if path.is_empty() {
            return Ok(self.base.clone());
        }
        let mut base = self.base.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        base.join(path)
            .map_err(|e| CallError::Invalid(format!("bad path: {e}")))
    }

    /// POSTs JSON to `path` and reads a JSON answer of status 2xx or 4xx (a 4xx with an
    /// empty body reads as `null`).
    pub async fn post<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(u16, serde_json::Value), CallError> {
        self.post_tracked(path, body, true).await
    }

    /// Like [`JsonClient::post`], for a best-effort call (withdrawing a request): its
    /// failure is not remembered as an outage, since logins do not depend on it.
    pub async fn post_best_effort<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(u16, serde_json::Value), CallError> {
        self.post_tracked(path, body, false).await
    }

    async fn post_tracked<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
        track: bool,
    ) -> Result<(u16, serde_json::Value), CallError> {
        let url = self.url(path)?;
        let req = self.http.post(url.clone()).json(body);
        self.send(req, &url, track).await
    }

    /// GETs `path` and reads a JSON answer of status 2xx or 4xx.
    pub async fn get(&self, path: &str) -> Result<(u16, serde_json::Value), CallError> {
        let url = self.url(path)?;
        self.send(self.http.get(url.clone()), &url, true).await
    }

    /// GETs an absolute URL (not below the base), e.g. a JWKS.
    pub async fn get_absolute(
        &self,
        url: &url::Url,
    ) -> Result<(u16, serde_json::Value), CallError> {
        self.send(self.http.get(url.clone()), url, true).await
    }

    /// Why the service last failed to answer, if that was in the last few minutes.
    pub fn recent_outage(&self) -> Option<String> {
        self.outage.reason()
    }

    /// One exchange with `target`; an outage is remembered when `track`.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        target: &url::Url,
        track: bool,
    ) -> Result<(u16, serde_json::Value), CallError> {
        let result = self.exchange(req).await;
        if let (true, Err(CallError::Outage(reason))) = (track, &result) {
            // The origin alone: a URL may carry credentials.
            self.outage.note(&format!(
                "{}: {reason}",
                target.origin().ascii_serialization()
            ));
        }
        result
    }

    async fn exchange(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> Result<(u16, serde_json::Value), CallError> {
        if let Some(b) = &self.bearer {
            req = req.bearer_auth(b);
        }
        let mut resp = req
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    CallError::Outage("timeout".into())
                } else {
                    CallError::Outage(e.without_url().to_string())
                }
            })?;
        let status = resp.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(CallError::Outage(format!("status {status}")));
        }
        if !(200..500).contains(&status) || (300..400).contains(&status) {
            return Err(CallError::Invalid(format!("status {status}")));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| CallError::Outage(e.without_url().to_string()))?
        {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(CallError::Invalid("answer too large".into()));
            }
            bytes.extend_from_slice(&chunk);
        }
        let value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            // A refusal need not explain itself: its status is the answer.
            Err(_) if status >= 400 && bytes.iter().all(u8::is_ascii_whitespace) => {
                serde_json::Value::Null
            }
            Err(e) => {
                return Err(CallError::Invalid(format!(
                    "not JSON (status {status}): {e}"
                )))
            }
        };
        Ok((status, value))
    }
}

/// The `result` string of a contract answer, if any.
pub fn result_of(v: &serde_json::Value) -> Option<&str> {
    v.get("result").and_then(serde_json::Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn client(url: &str, timeout_ms: u64) -> Result<JsonClient, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let endpoint = Endpoint {
            url: url.into(),
            timeout_ms,
            api_key: None,
        };
        JsonClient::open(&endpoint, Path::new("."), "bank", &mut problems).ok_or(problems)
    }

    #[test]
    fn plain_http_is_refused_off_this_machine() {
        let problems = client("http://bank.example.org/api", 1000).expect_err("refused");
        assert_eq!(problems[0].0, "bank.url");
        assert!(problems[0].1.contains("must use https"), "{problems:?}");
        let problems = client("https://bank.example.org/", 0).expect_err("refused");
        assert_eq!(problems[0].0, "bank.timeout_ms");
    }

    #[tokio::test]
    async fn a_large_body_a_redirect_and_an_overload_are_told_apart() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/big"))
            .respond_with(
                ResponseTemplate::new(200).set_body_string(format!("\"{}\"", "x".repeat(MAX_BODY))),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/moved"))
            .respond_with(
                ResponseTemplate::new(302).insert_header("location", "https://elsewhere.example/"),
            )
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/busy"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/ok"))
            .respond_with(ResponseTemplate::new(404).set_body_json(serde_json::json!({"a": 1})))
            .mount(&server)
            .await;
        let c = client(&server.uri(), 2000).expect("opens");
        assert!(
            matches!(c.get("big").await, Err(CallError::Invalid(m)) if m == "answer too large")
        );
        assert!(matches!(c.get("moved").await, Err(CallError::Invalid(_))));
        assert_eq!(c.recent_outage(), None, "invalid answers are no outage");
        let (status, body) = c.get("ok").await.expect("a 4xx JSON answer is an answer");
        assert_eq!((status, body["a"].as_i64()), (404, Some(1)));
        assert!(matches!(
            c.post_best_effort("busy", &()).await,
            Err(CallError::Outage(_))
        ));
        assert_eq!(
            c.recent_outage(),
            None,
            "best-effort calls are not remembered"
        );
        assert!(matches!(
            c.post("busy", &()).await,
            Err(CallError::Outage(_))
        ));
        let reason = c.recent_outage().expect("remembered");
        assert!(
            reason.contains("status 503") && !reason.contains("/busy"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn a_slow_service_is_an_outage() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({}))
                    .set_delay(Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        let c = client(&server.uri(), 50).expect("opens");
        assert!(matches!(c.get("slow").await, Err(CallError::Outage(m)) if m == "timeout"));
    }
}
