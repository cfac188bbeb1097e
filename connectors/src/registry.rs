//! The population registry: not a login method, but the authority the identity-linking
//! flow asks whether a citizen ID number belongs to a name and birth date, and which
//! current number an old one became (Vietnam's 9-digit CMND to the 12-digit CCCD).

use serde::{Deserialize, Serialize};

/// The registry's answer to a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryMatch {
    /// The number belongs to this name and birth date.
    Match,
    /// The number exists but the name or birth date differ.
    Mismatch,
    /// No such number.
    NotFound,
}

/// Why the registry could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Unreachable, slow or overloaded.
    #[error("population registry unavailable: {0}")]
    Unavailable(String),
    /// It answered something unreadable.
    #[error("population registry gave an invalid answer: {0}")]
    Invalid(String),
}

/// A population registry.
#[async_trait::async_trait]
pub trait PopulationRegistry: Send + Sync {
    /// Checks a citizen ID number against a full name and a birth date (`YYYY-MM-DD`).
    async fn check(
        &self,
        citizen_id: &str,
        name: &str,
        birthdate: &str,
    ) -> Result<RegistryMatch, RegistryError>;

    /// The current number of an old one (`None` when the number is current or unknown).
    async fn current_id(&self, citizen_id: &str) -> Result<Option<String>, RegistryError>;
}

/// A population registry reached over HTTP (the contract is in the README):
/// `POST {base}/check` with `{"citizen_id", "name", "birthdate"}` answers
/// `{"result": "match" | "mismatch" | "not_found"}`; `GET {base}/current/{citizen_id}`
/// answers `{"current": "…"}`, or 404 when the number is current or unknown.
pub struct HttpRegistry {
    base: String,
    http: reqwest::Client,
}

impl HttpRegistry {
    /// A client of the registry at `base` with a per-request timeout.
    pub fn new(base: &str, timeout: std::time::Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpRegistry {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }
}

fn unavailable(e: reqwest::Error) -> RegistryError {
    // Without the URL: it may name the number looked up.
    RegistryError::Unavailable(e.without_url().to_string())
}

#[async_trait::async_trait]
impl PopulationRegistry for HttpRegistry {
    async fn check(
        &self,
        citizen_id: &str,
        name: &str,
        birthdate: &str,
    ) -> Result<RegistryMatch, RegistryError> {
        #[derive(Deserialize)]
        struct Answer {
            result: RegistryMatch,
        }
        let resp = self
            .http
            .post(format!("{}/check", self.base))
            .json(&serde_json::json!({"citizen_id": citizen_id, "name": name, "birthdate": birthdate}))
            .send()
            .await
            .map_err(unavailable)?;
        if resp.status().is_server_error() {
            return Err(RegistryError::Unavailable(format!(
                "status {}",
                resp.status()
            )));
        }
        if !resp.status().is_success() {
            return Err(RegistryError::Invalid(format!("status {}", resp.status())));
        }
        let answer: Answer = resp
            .json()
            .await
            .map_err(|e| RegistryError::Invalid(e.without_url().to_string()))?;
        Ok(answer.result)
    }

    async fn current_id(&self, citizen_id: &str) -> Result<Option<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Answer {
            current: String,
        }
        let resp = self
            .http
            .get(format!("{}/current/{citizen_id}", self.base))
            .send()
            .await
            .map_err(unavailable)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(RegistryError::Unavailable(format!(
                "status {}",
                resp.status()
            )));
        }
        let answer: Answer = resp
            .json()
            .await
            .map_err(|e| RegistryError::Invalid(e.without_url().to_string()))?;
        Ok(Some(crate::normalise_id(&answer.current)).filter(|c| c != citizen_id))
    }
}
