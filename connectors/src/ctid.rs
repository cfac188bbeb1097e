//! CTID: China's network identity credential, confirmed by the citizen in the CTID app
//! with face verification.
//!
//! The broker starts an authentication at the CTID service (or an adapter in front of
//! it) and shows a QR code (desktop) and an app link (mobile); the page polls, showing
//! progress ("scanned, finish the face check in the app"); the result counts only when it
//! is a JWS signed by the service with a key of its published set (`jwks_url` or
//! `jwks_file`), for this broker (`aud`), for this very request (`auth_id`), unexpired,
//! with `face_verified`. Assurance: high.
//!
//! Contract (JSON, optional bearer token):
//! * `POST {url}/auth/start` `{"client_id", "request_id"}` → `{"auth_id", "qr_content",
//!   "app_link", "expires_in"}`;
//! * `GET {url}/auth/{auth_id}` → `{"status": "pending" | "scanned" | "approved" |
//!   "rejected" | "expired" | "cancelled", "result": "<JWS>" (when approved)}`;
//! * `POST {url}/auth/{auth_id}/cancel` `{}` → `{"status": "cancelled"}` (404 unknown,
//!   409 finished): sent when the citizen leaves the waiting page (cancel, another source);
//! * result claims: `iss`, `aud`, `auth_id`, `sub`, `citizen_id`, `name`, `birthdate`?,
//!   `face_verified`, `iat`, `exp`; signed with ES256, RS256, PS256 or EdDSA;
//! * with `delivery = "notify"`, the start request carries `notify_url` and the service
//!   pushes `{"notification": "<JWS>"}` (claims `iss`, `aud`, `auth_id`, `status`, `exp`,
//!   and the result claims once approved) to the broker's `POST /notify/{connector}`;
//!   checks of the waiting page then only read the latest notification.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::kv::KeyValue;
use crate::otp::{minutes, random_id};
use crate::{
    normalise_id, Assurance, CitizenId, Connector, ConnectorError, Context, Health, Identity,
    Input, Message, Step, StepState,
};
use common::http::{CallError, Endpoint, JsonClient};

/// Algorithms a CTID result may be signed with (never `none` or a shared secret).
const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::ES256,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// How long fetched keys are trusted before they are fetched again.
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// Least time between two fetches caused by an unknown key id.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);

/// Configuration of the CTID connector.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The CTID service (or the adapter in front of it).
    pub service: Endpoint,
    /// The broker's id at the service (the `aud` of results).
    pub client_id: String,
    /// `iss` of results.
    pub issuer: String,
    /// Where the service publishes its signing keys (JWKS).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Or a JWKS file.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// Seconds between two checks of the waiting page.
    #[serde(default = "default_poll")]
    pub poll_seconds: u32,
    /// How the outcome arrives: `poll` (each check of the page asks the service) or
    /// `notify` (the service pushes signed notifications to `notify_url`, and checks of the
    /// page only read what arrived).
    #[serde(default)]
    pub delivery: Delivery,
    /// The broker's notification endpoint given to the service (`{issuer}/notify/{id}`),
    /// required with `delivery = "notify"`.
    #[serde(default)]
    pub notify_url: Option<String>,
}

fn default_poll() -> u32 {
    2
}

/// How the outcome of an authentication reaches the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// The broker asks the service at each check of the waiting page.
    #[default]
    Poll,
    /// The service pushes signed notifications.
    Notify,
}

/// Lifetime of a notification kept for the next poll.
const NOTE_TTL: Duration = Duration::from_secs(900);

enum Keys {
    Url {
        url: url::Url,
        cache: RwLock<Option<(JwkSet, Instant)>>,
    },
    Fixed(JwkSet),
}

/// The connector.
pub struct Ctid {
    config: Config,
    client: JsonClient,
    keys: Keys,
}

#[derive(Serialize, Deserialize)]
struct State {
    auth_id: String,
    qr: String,
    app_link: String,
    expires_at: u64,
}

#[derive(Deserialize)]
struct ResultClaims {
    auth_id: String,
    sub: String,
    citizen_id: String,
    name: String,
    #[serde(default)]
    birthdate: Option<String>,
    #[serde(default)]
    face_verified: bool,
}

fn invalid(detail: impl Into<String>) -> ConnectorError {
    ConnectorError::Failed {
        message: Message::new("error-ctid-invalid"),
        detail: detail.into(),
    }
}

impl Ctid {
    /// Checks the configuration (reading a JWKS file if given) and builds the connector.
    pub fn open(config: Config, base_dir: &Path) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let client = JsonClient::open(&config.service, base_dir, "service", &mut problems);
        if config.client_id.trim().is_empty() {
            problems.push(("client_id".into(), "is empty".into()));
        }
        if config.issuer.trim().is_empty() {
            problems.push(("issuer".into(), "is empty".into()));
        }
        match (&config.delivery, &config.notify_url) {
            (Delivery::Notify, None) => problems.push((
                "notify_url".into(),
                "`delivery = \"notify\"` needs the broker's notification URL".into(),
            )),
            (_, Some(u)) => {
                if let Err(e) = common::url_policy::check_url(u) {
                    problems.push(("notify_url".into(), e));
                }
            }
            (Delivery::Poll, None) => {}
        }
        if !(1..=30).contains(&config.poll_seconds) {
            problems.push(("poll_seconds".into(), "must be between 1 and 30".into()));
        }
        let keys = match (&config.jwks_url, &config.jwks_file) {
            (Some(u), None) => match common::url_policy::check_url(u) {
                Ok(url) => Some(Keys::Url {
                    url,
                    cache: RwLock::new(None),
                }),
                Err(e) => {
                    problems.push(("jwks_url".into(), e));
                    None
                }
            },
            (None, Some(f)) => {
                match std::fs::read_to_string(common::secret::resolve_path(base_dir, f))
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str::<JwkSet>(&t).map_err(|e| e.to_string()))
                {
                    Ok(set) if !set.keys.is_empty() => Some(Keys::Fixed(set)),
                    Ok(_) => {
                        problems.push(("jwks_file".into(), "holds no key".into()));
                        None
                    }
                    Err(e) => {
                        problems.push((
                            "jwks_file".into(),
                            format!("cannot read a JWKS from `{f}`: {e}"),
                        ));
                        None
                    }
                }
            }
            _ => {
                problems.push((
                    "jwks_url".into(),
                    "give the service's keys as `jwks_url` or `jwks_file` (one of them)".into(),
                ));
                None
            }
        };
        match (client, keys) {
            (Some(client), Some(keys)) if problems.is_empty() => Ok(Ctid {
                config,
                client,
                keys,
            }),
            _ => Err(problems),
        }
    }

    async fn key_set(&self, refresh: bool) -> Result<JwkSet, ConnectorError> {
        let (url, cache) = match &self.keys {
            Keys::Fixed(set) => return Ok(set.clone()),
            Keys::Url { url, cache } => (url, cache),
        };
        if let Some((set, at)) = cache.read().await.as_ref() {
            let fresh = at.elapsed() < JWKS_MAX_AGE;
            let may_refetch = at.elapsed() >= JWKS_MIN_REFETCH;
            if fresh && !(refresh && may_refetch) {
                return Ok(set.clone());
            }
        }
        let (status, v) = self
            .client
            .get_absolute(url)
            .await
            .map_err(|e| ConnectorError::Unavailable(format!("CTID keys: {e}")))?;
        if status != 200 {
            return Err(ConnectorError::Unavailable(format!(
                "CTID keys: status {status}"
            )));
        }
        let set: JwkSet = serde_json::from_value(v)
            .map_err(|e| ConnectorError::Unavailable(format!("CTID keys: not a JWKS: {e}")))?;
        *cache.write().await = Some((set.clone(), Instant::now()));
        Ok(set)
    }

    /// Checks the signature (a published key, an allowed algorithm), issuer, audience and
    /// expiry of a token of the service, and returns its claims.
    async fn verify_token(&self, jws: &str) -> Result<serde_json::Value, ConnectorError> {
        let header =
            jsonwebtoken::decode_header(jws).map_err(|e| invalid(format!("result header: {e}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(invalid(format!("result signed with {:?}", header.alg)));
        }
        let kid = header
            .kid
            .clone()
            .ok_or_else(|| invalid("result without kid"))?;
        let mut set = self.key_set(false).await?;
        if set.find(&kid).is_none() {
            set = self.key_set(true).await?;
        }
        let jwk = set
            .find(&kid)
            .ok_or_else(|| invalid("result signed with an unknown key"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(format!("key {kid}: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<serde_json::Value>(jws, &key, &validation)
            .map_err(|e| invalid(format!("result rejected: {e}")))?;
        Ok(data.claims)
    }

    /// Verifies a signed result for `auth_id`.
    async fn verify(&self, jws: &str, auth_id: &str) -> Result<ResultClaims, ConnectorError> {
        let claims: ResultClaims = serde_json::from_value(self.verify_token(jws).await?)
            .map_err(|e| invalid(format!("result claims: {e}")))?;
        if claims.auth_id != auth_id {
            return Err(invalid("result for another authentication"));
        }
        if !claims.face_verified {
            return Err(invalid("result without face verification"));
        }
        if normalise_id(&claims.citizen_id).is_empty() || claims.sub.is_empty() {
            return Err(invalid("result without citizen"));
        }
        Ok(claims)
    }

    /// The identity of a verified result.
    async fn done(&self, jws: &str, state: &State) -> Result<Step, ConnectorError> {
        let claims = self.verify(jws, &state.auth_id).await?;
        let mut out = BTreeMap::new();
        out.insert("name".to_string(), serde_json::Value::String(claims.name));
        if let Some(b) = claims.birthdate.filter(|b| !b.is_empty()) {
            out.insert("birthdate".to_string(), serde_json::Value::String(b));
        }
        tracing::info!("CTID authentication verified");
        Ok(Step::Done(Identity {
            subject: format!("ctid:{}", claims.sub),
            citizen_id: Some(CitizenId {
                value: normalise_id(&claims.citizen_id),
                proven: true,
            }),
            claims: out,
            assurance: Assurance::High,
            amr: vec!["face".into(), "mfa".into()],
        }))
    }

    /// What a status means for the citizen.
    async fn outcome(
        &self,
        ctx: &Context,
        state: &State,
        status: &str,
        result: Option<&str>,
    ) -> Result<Step, ConnectorError> {
        match status {
            "pending" => Ok(self.wait(state, ctx, false)),
            "scanned" => Ok(self.wait(state, ctx, true)),
            "rejected" => Err(ConnectorError::Failed {
                message: Message::new("error-ctid-rejected"),
                detail: "the citizen rejected the request in the CTID app".into(),
            }),
            "expired" => Err(expired()),
            // Withdrawn (by this broker when the citizen left; seen only from another tab).
            "cancelled" => Err(ConnectorError::Failed {
                message: Message::new("error-ctid-cancelled"),
                detail: "the CTID request was cancelled".into(),
            }),
            "approved" => {
                let jws = result.ok_or_else(|| invalid("approved without a result"))?;
                self.done(jws, state).await
            }
            other => Err(invalid(format!("unknown status `{other}`"))),
        }
    }

    /// With `delivery = "notify"`: the latest signed notification the service pushed.
    async fn outcome_from_notification(
        &self,
        ctx: &Context,
        state: &State,
    ) -> Result<Step, ConnectorError> {
        let now = ctx.now.saturating_mul(1000);
        let note = ctx
            .kv
            .get(&note_key(&state.auth_id), now)
            .await
            .map_err(|e| ConnectorError::Unavailable(e.to_string()))?;
        let Some(jws) = note.and_then(|b| String::from_utf8(b).ok()) else {
            return Ok(self.wait(state, ctx, false));
        };
        let claims = self.verify_token(&jws).await?;
        if claims["auth_id"].as_str() != Some(state.auth_id.as_str()) {
            return Err(invalid("notification for another authentication"));
        }
        let status = claims["status"].as_str().unwrap_or("");
        if status != "pending" && status != "scanned" {
            // A final outcome is used once.
            let _ = ctx.kv.delete(&note_key(&state.auth_id), now).await;
        }
        self.outcome(ctx, state, status, Some(&jws)).await
    }

    fn wait(&self, state: &State, ctx: &Context, scanned: bool) -> Step {
        let left = std::time::Duration::from_secs(state.expires_at.saturating_sub(ctx.now));
        let instruction = if scanned {
            Message::new("ctid-scanned")
        } else {
            Message::new("ctid-scan").arg("minutes", minutes(left))
        };
        Step::Wait {
            instruction,
            qr: Some(state.qr.clone()),
            app_link: Some(state.app_link.clone()),
            poll_seconds: self.config.poll_seconds,
            state: serde_json::to_value(state).unwrap_or_default(),
        }
    }
}

/// `auth/{auth_id}{rest}`, the id escaped.
fn auth_path(auth_id: &str, rest: &str) -> String {
    format!(
        "auth/{}{rest}",
        url::form_urlencoded::byte_serialize(auth_id.as_bytes()).collect::<String>()
    )
}

fn note_key(auth_id: &str) -> String {
    format!("ctid:note:{auth_id}")
}

fn expired() -> ConnectorError {
    ConnectorError::Failed {
        message: Message::new("error-ctid-expired"),
        detail: "the CTID request expired".into(),
    }
}

#[async_trait::async_trait]
impl Connector for Ctid {
    fn assurance(&self) -> Assurance {
        Assurance::High
    }

    async fn start(&self, ctx: &Context) -> Result<Step, ConnectorError> {
        let mut body =
            serde_json::json!({ "client_id": self.config.client_id, "request_id": random_id() });
        if let (Delivery::Notify, Some(u)) = (self.config.delivery, &self.config.notify_url) {
            body["notify_url"] = serde_json::Value::String(u.clone());
        }
        let (status, v) = self
            .client
            .post("auth/start", &body)
            .await
            .map_err(|e| match e {
                CallError::Outage(d) | CallError::Invalid(d) => {
                    ConnectorError::Unavailable(format!("CTID start: {d}"))
                }
            })?;
        let text = |k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let (Some(auth_id), Some(qr), Some(app_link), 200) = (
            text("auth_id"),
            text("qr_content"),
            text("app_link"),
            status,
        ) else {
            return Err(ConnectorError::Unavailable(format!(
                "CTID start: unexpected answer (status {status})"
            )));
        };
        // The link goes into the page: only web or app schemes, never script.
        let scheme = app_link
            .split(':')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if matches!(scheme.as_str(), "javascript" | "data" | "vbscript" | "file")
            || scheme == app_link.to_ascii_lowercase()
        {
            return Err(ConnectorError::Unavailable(
                "CTID start: unusable app link".into(),
            ));
        }
        let expires_in = v["expires_in"].as_u64().unwrap_or(300).clamp(30, 900);
        let state = State {
            auth_id,
            qr,
            app_link,
            expires_at: ctx.now.saturating_add(expires_in),
        };
        Ok(self.wait(&state, ctx, false))
    }

    async fn resume(
        &self,
        ctx: &Context,
        state: StepState,
        input: Input,
    ) -> Result<Step, ConnectorError> {
        if !matches!(input, Input::Poll) {
            return Err(ConnectorError::InvalidState("expected a poll".into()));
        }
        let state: State = serde_json::from_value(state)
            .map_err(|e| ConnectorError::InvalidState(format!("ctid state: {e}")))?;
        if ctx.now > state.expires_at {
            return Err(expired());
        }
        if self.config.delivery == Delivery::Notify {
            return self.outcome_from_notification(ctx, &state).await;
        }
        let (status, v) = match self.client.get(&auth_path(&state.auth_id, "")).await {
            Ok(a) => a,
            Err(e) => {
                // A poll that fails keeps the citizen waiting; the request's expiry ends it.
                tracing::warn!(error = %e, "CTID status unavailable");
                return Ok(self.wait(&state, ctx, false));
            }
        };
        if status == 404 {
            return Err(expired());
        }
        let result = v["result"].as_str();
        self.outcome(ctx, &state, v["status"].as_str().unwrap_or(""), result)
            .await
    }

    fn recently_unavailable(&self) -> bool {
        self.client.recent_outage().is_some()
    }

    /// Degraded for a few minutes after the service failed to answer (the contract has no
    /// probe of its own).
    async fn health(&self) -> Health {
        match self.client.recent_outage() {
            Some(reason) => Health::Degraded { reason },
            None => Health::Up,
        }
    }

    /// `POST auth/{auth_id}/cancel`: the prompt leaves the citizen's app.
    async fn abandon(&self, ctx: &Context, state: &StepState) {
        let Ok(state) = serde_json::from_value::<State>(state.clone()) else {
            return;
        };
        if ctx.now > state.expires_at {
            return;
        }
        let body = serde_json::json!({});
        match self
            .client
            .post_best_effort(&auth_path(&state.auth_id, "/cancel"), &body)
            .await
        {
            // 404 forgotten, 409 already finished: nothing to withdraw.
            Ok((status, _)) if (200..300).contains(&status) || matches!(status, 404 | 409) => {}
            Ok((status, _)) => tracing::warn!(status, "CTID refused to cancel a request"),
            // Not an outage of logins: the choice page does not warn about it.
            Err(e) => tracing::warn!(error = %e, "CTID cancel failed"),
        }
    }

    async fn notify(&self, kv: &dyn KeyValue, body: &[u8], now: u64) -> Result<(), ConnectorError> {
        if self.config.delivery != Delivery::Notify {
            return Err(ConnectorError::InvalidState(
                "notifications are off (delivery = \"poll\")".into(),
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ConnectorError::InvalidState(format!("notification is not JSON: {e}")))?;
        let jws = v["notification"]
            .as_str()
            .ok_or_else(|| ConnectorError::InvalidState("notification without a token".into()))?;
        // Only notifications signed by the service count: nobody else can approve, reject
        // or end a request.
        let claims = self.verify_token(jws).await?;
        let auth_id = claims["auth_id"]
            .as_str()
            .filter(|a| !a.is_empty() && a.len() <= 200)
            .ok_or_else(|| invalid("notification without auth_id"))?;
        kv.put(&note_key(auth_id), jws.as_bytes(), NOTE_TTL, now)
            .await
            .map_err(|e| ConnectorError::Unavailable(e.to_string()))
    }
}
