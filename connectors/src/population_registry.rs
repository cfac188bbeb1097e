//! The population registry: not a login method, but the authority the identity-linking
//! flow asks whether a citizen ID number belongs to a name and birth date, and which
//! current number an old one became (Vietnam's 9-digit CMND to the 12-digit CCCD).
//!
//! The registry's contract tells "the number exists with other details" from "no such
//! number"; this client does not pass that on. Telling them apart would let anyone who can
//! reach the linking form learn which numbers exist and then match names and birth dates
//! to them, so the flow gets one answer, [`RegistryAnswer::NoMatch`], and only operators
//! see which it was (a log line and a metric without the number, name or date).

use std::path::Path;

use common::http::{result_of, CallError, Endpoint, JsonClient};

/// The registry's answer to a check, as the citizen flow may know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryAnswer {
    /// The number belongs to this name and birth date.
    Match,
    /// The registry does not confirm these details (unknown number, or other details).
    NoMatch,
}

/// Why the registry could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Unreachable, slow or overloaded.
    #[error("population registry unavailable: {0}")]
    Unavailable(String),
    /// It answered something that is not the contract.
    #[error("population registry gave an invalid answer: {0}")]
    Invalid(String),
}

impl From<CallError> for RegistryError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Outage(r) => RegistryError::Unavailable(r),
            CallError::Invalid(r) => RegistryError::Invalid(r),
        }
    }
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
    ) -> Result<RegistryAnswer, RegistryError>;

    /// The current number of an old one (`None` when the number is current or unknown).
    async fn current_id(&self, citizen_id: &str) -> Result<Option<String>, RegistryError>;
}

/// A population registry reached over HTTP (the contract is in the README):
/// `POST {base}/check` with `{"citizen_id", "name", "birthdate"}` answers
/// `{"result": "match" | "mismatch" | "not_found"}`; `GET {base}/current/{citizen_id}`
/// answers `{"current": "…"}`, or 404 when the number is current or unknown. Calls go
/// through [`JsonClient`]: https (or loopback), timeouts, no redirects, bounded bodies,
/// and failures remembered as a recent outage.
#[derive(Debug)]
pub struct HttpRegistry {
    client: JsonClient,
}

impl HttpRegistry {
    /// Validates the settings and builds the client; problems are (key below
    /// `registry`, reason).
    pub fn open(url: &str, timeout_ms: u64) -> Result<Self, Vec<(String, String)>> {
        let endpoint = Endpoint {
            url: url.to_string(),
            timeout_ms,
            api_key: None,
        };
        let mut problems = Vec::new();
        match JsonClient::open(&endpoint, Path::new("."), "", &mut problems) {
            Some(client) if problems.is_empty() => Ok(HttpRegistry { client }),
            _ => Err(problems),
        }
    }

    /// Why the registry last failed to answer, if that was in the last few minutes.
    pub fn recent_outage(&self) -> Option<String> {
        self.client.recent_outage()
    }
}

/// Counts one check for operators, by the registry's own answer (no personal data).
fn record(result: &'static str) {
    metrics::counter!("broker_registry_checks_total", "result" => result).increment(1);
    tracing::info!(
        target: "registry",
        result,
        "population registry check"
    );
}

#[async_trait::async_trait]
impl PopulationRegistry for HttpRegistry {
    async fn check(
        &self,
        citizen_id: &str,
        name: &str,
        birthdate: &str,
    ) -> Result<RegistryAnswer, RegistryError> {
        let body =
            serde_json::json!({"citizen_id": citizen_id, "name": name, "birthdate": birthdate});
        let (status, answer) = self.client.post("check", &body).await?;
        let result = match (status, result_of(&answer)) {
            (200, Some("match")) => "match",
            (200, Some("mismatch")) => "mismatch",
            (200, Some("not_found")) => "not_found",
            (200, _) => return Err(RegistryError::Invalid("unknown `result`".into())),
            (s, _) => return Err(RegistryError::Invalid(format!("status {s}"))),
        };
        record(result);
        Ok(if result == "match" {
            RegistryAnswer::Match
        } else {
            RegistryAnswer::NoMatch
        })
    }

    async fn current_id(&self, citizen_id: &str) -> Result<Option<String>, RegistryError> {
        let wanted = crate::normalise_id(citizen_id);
        if wanted.is_empty() {
            return Ok(None);
        }
        let (status, answer) = self.client.get(&format!("current/{wanted}")).await?;
        match status {
            404 => Ok(None),
            200 => {
                let current = answer
                    .get("current")
                    .and_then(serde_json::Value::as_str)
                    .map(crate::normalise_id)
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| RegistryError::Invalid("no `current` number".into()))?;
                Ok(Some(current).filter(|c| *c != wanted))
            }
            s => Err(RegistryError::Invalid(format!("status {s}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_partial_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    async fn registry() -> (MockServer, HttpRegistry) {
        let server = MockServer::start().await;
        for (id, result) in [("1", "match"), ("2", "mismatch"), ("3", "not_found")] {
            Mock::given(method("POST"))
                .and(path("/check"))
                .and(body_partial_json(serde_json::json!({"citizen_id": id})))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(serde_json::json!({"result": result})),
                )
                .mount(&server)
                .await;
        }
        Mock::given(method("GET"))
            .and(path("/current/012345678"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"current": "001195006789"})),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/current/001195006789"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        let r = HttpRegistry::open(&format!("{}/", server.uri()), 2000).expect("opens");
        (server, r)
    }

    #[tokio::test]
    async fn unknown_and_other_details_are_one_answer() {
        let (_server, r) = registry().await;
        assert_eq!(
            r.check("1", "A", "2000-01-01").await.ok(),
            Some(RegistryAnswer::Match)
        );
        assert_eq!(
            r.check("2", "A", "2000-01-01").await.ok(),
            Some(RegistryAnswer::NoMatch)
        );
        assert_eq!(
            r.check("3", "A", "2000-01-01").await.ok(),
            Some(RegistryAnswer::NoMatch)
        );
    }

    #[tokio::test]
    async fn current_numbers_follow_the_contract() {
        let (_server, r) = registry().await;
        assert_eq!(
            r.current_id("012345678").await.ok(),
            Some(Some("001195006789".to_string()))
        );
        assert_eq!(
            r.current_id("001195006789").await.ok(),
            Some(None),
            "empty 404"
        );
    }

    #[tokio::test]
    async fn an_overloaded_registry_is_unavailable_and_remembered() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let r = HttpRegistry::open(&server.uri(), 2000).expect("opens");
        assert!(matches!(
            r.check("1", "A", "2000-01-01").await,
            Err(RegistryError::Unavailable(_))
        ));
        assert!(r.recent_outage().is_some());
    }

    #[test]
    fn plain_http_elsewhere_and_bad_timeouts_are_refused() {
        let problems = HttpRegistry::open("http://registry.example.org", 3000).expect_err("http");
        assert_eq!(problems[0].0, "url");
        assert!(HttpRegistry::open("https://registry.example.org", 0).is_err());
        assert!(HttpRegistry::open("https://registry.example.org", 3000).is_ok());
    }
}
