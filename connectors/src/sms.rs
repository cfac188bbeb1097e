//! Sending one-time codes by SMS: through an HTTP SMS gateway (the contract is in the
//! README), or, in demos only, to the broker's console.
//!
//! Gateway contract: `POST {url}` with `{"to": "+8613800138000", "text": "…",
//! "reference": "<random id>"}` (and `Authorization: Bearer <api_key>` when configured);
//! any 2xx means accepted. 429 and 5xx mean the gateway is congested or down.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use common::http::{CallError, Endpoint, JsonClient};
use common::secret::SecretSource;

/// How codes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsKind {
    /// An HTTP SMS gateway.
    Http,
    /// The broker's console (demos only: the code is printed).
    Log,
}

/// SMS settings of a connector.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// `http` or `log`.
    pub kind: SmsKind,
    /// The gateway's URL (`http`).
    #[serde(default)]
    pub url: Option<String>,
    /// Timeout of one call, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Bearer token of the gateway.
    #[serde(default)]
    pub api_key: Option<SecretSource>,
    /// Text of the message per language, with `{code}` and `{minutes}`.
    #[serde(default)]
    pub text: BTreeMap<String, String>,
    /// Demos with a simulated gateway: where citizens can read the messages (shown beside
    /// the code field).
    #[serde(default)]
    pub demo_inbox_url: Option<String>,
}

fn default_timeout() -> u64 {
    5000
}

/// The built-in texts.
fn default_text(lang: &str) -> &'static str {
    match lang {
        "vi" => "{code} là mã xác thực đăng nhập dịch vụ định danh quốc gia, có hiệu lực {minutes} phút. Không cung cấp mã này cho bất kỳ ai.",
        "zh" => "您的国家身份认证登录验证码为{code}，{minutes}分钟内有效。请勿将验证码告诉他人。",
        "es" => "{code} es su código de acceso al servicio nacional de identidad. Caduca en {minutes} minutos. No lo comparta con nadie.",
        _ => "{code} is your sign-in code for the national identity service. It expires in {minutes} minutes. Never give it to anyone.",
    }
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The gateway is down, slow or congested.
    #[error("SMS gateway unavailable: {0}")]
    Unavailable(String),
    /// The gateway refused the message.
    #[error("SMS gateway refused the message: {0}")]
    Refused(String),
}

/// A configured sender.
#[derive(Debug, Clone)]
pub struct SmsSender {
    kind: SmsKind,
    client: Option<JsonClient>,
    text: BTreeMap<String, String>,
    /// Where demo citizens read their messages.
    pub demo_inbox_url: Option<String>,
}

impl SmsSender {
    /// Validates the settings (problems under `key`).
    pub fn open(
        config: &SmsConfig,
        base_dir: &Path,
        key: &str,
        problems: &mut Vec<(String, String)>,
    ) -> Option<SmsSender> {
        let client = match (config.kind, &config.url) {
            (SmsKind::Http, Some(url)) => Some(JsonClient::open(
                &Endpoint {
                    url: url.clone(),
                    timeout_ms: config.timeout_ms,
                    api_key: config.api_key.clone(),
                },
                base_dir,
                key,
                problems,
            )?),
            (SmsKind::Http, None) => {
                problems.push((format!("{key}.url"), "the `http` sender needs a URL".into()));
                return None;
            }
            (SmsKind::Log, _) => None,
        };
        for (lang, text) in &config.text {
            if !text.contains("{code}") {
                problems.push((format!("{key}.text.{lang}"), "must contain `{code}`".into()));
            }
        }
        if let Some(u) = &config.demo_inbox_url {
            if let Err(e) = common::url_policy::check_url(u) {
                problems.push((format!("{key}.demo_inbox_url"), e));
            }
        }
        Some(SmsSender {
            kind: config.kind,
            client,
            text: config.text.clone(),
            demo_inbox_url: config.demo_inbox_url.clone(),
        })
    }

    /// Whether this sender prints codes to the console (allowed in demos only).
    pub fn is_console(&self) -> bool {
        self.kind == SmsKind::Log
    }

    /// The message text in a language.
    pub fn text(&self, lang: &str, code: &str, minutes: u64) -> String {
        let template = self
            .text
            .get(lang)
            .or_else(|| self.text.get("en"))
            .map(String::as_str)
            .unwrap_or_else(|| default_text(lang));
        template
            .replace("{code}", code)
            .replace("{minutes}", &minutes.to_string())
    }

    /// Why the gateway last failed to answer, if that was in the last few minutes.
    pub fn recent_outage(&self) -> Option<String> {
        self.client.as_ref().and_then(JsonClient::recent_outage)
    }

    /// Sends a message to a phone number in E.164 form.
    pub async fn send(&self, to: &str, text: &str, reference: &str) -> Result<(), SmsError> {
        let result = self.deliver(to, text, reference).await;
        let outcome = match &result {
            Ok(()) => "sent",
            Err(SmsError::Refused(_)) => "refused",
            Err(_) => "unavailable",
        };
        metrics::counter!("broker_sms_total", "outcome" => outcome).increment(1);
        result
    }

    async fn deliver(&self, to: &str, text: &str, reference: &str) -> Result<(), SmsError> {
        match &self.client {
            Some(client) => {
                let body = serde_json::json!({ "to": to, "text": text, "reference": reference });
                match client.post("", &body).await {
                    Ok((status, _)) if (200..300).contains(&status) => Ok(()),
                    Ok((status, v)) => Err(SmsError::Refused(format!(
                        "status {status}, error {}",
                        v.get("error").and_then(|e| e.as_str()).unwrap_or("?")
                    ))),
                    Err(CallError::Outage(e)) => Err(SmsError::Unavailable(e)),
                    Err(CallError::Invalid(e)) => Err(SmsError::Unavailable(e)),
                }
            }
            None => {
                // Demo only (the configuration refuses it in `serve`): the console stands
                // for the citizen's phone. The number is masked.
                println!("[demo SMS to {}] {text}", mask_phone(to));
                Ok(())
            }
        }
    }
}

/// A phone number with all but its last 4 digits hidden.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("•••• {tail}")
}

/// Normalises a phone number to E.164 (`+` and digits). National numbers (leading `0` or
/// no prefix) get `country_code`; `00` becomes `+`.
pub fn normalise_phone(raw: &str, country_code: &str) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty()
        || !trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        return None;
    }
    let plus = trimmed.starts_with('+');
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let full = if plus {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else if let Some(rest) = digits.strip_prefix('0') {
        format!("{country_code}{rest}")
    } else if digits.starts_with(country_code) && digits.len() >= 11 {
        digits
    } else {
        format!("{country_code}{digits}")
    };
    (8..=15).contains(&full.len()).then(|| format!("+{full}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_become_e164() {
        assert_eq!(
            normalise_phone("0901 234 567", "84").as_deref(),
            Some("+84901234567")
        );
        assert_eq!(
            normalise_phone("+84 90 123 4567", "84").as_deref(),
            Some("+84901234567")
        );
        assert_eq!(
            normalise_phone("13800138000", "86").as_deref(),
            Some("+8613800138000")
        );
        assert_eq!(
            normalise_phone("8613800138000", "86").as_deref(),
            Some("+8613800138000")
        );
        assert_eq!(
            normalise_phone("0086 138 0013 8000", "86").as_deref(),
            Some("+8613800138000")
        );
        assert_eq!(
            normalise_phone("84901234567", "84").as_deref(),
            Some("+84901234567")
        );
        assert_eq!(
            normalise_phone("901234567", "84").as_deref(),
            Some("+84901234567")
        );
        assert_eq!(normalise_phone("call me", "86"), None);
        assert_eq!(normalise_phone("12", "86"), None);
    }

    #[test]
    fn masks_keep_four_digits() {
        assert_eq!(mask_phone("+8613800138000"), "•••• 8000");
    }

    #[test]
    fn texts_have_the_code_in_every_language() {
        let s = SmsSender {
            kind: SmsKind::Log,
            client: None,
            text: BTreeMap::new(),
            demo_inbox_url: None,
        };
        for lang in ["vi", "zh", "es", "en", "fr"] {
            let t = s.text(lang, "123456", 5);
            assert!(t.contains("123456") && t.contains('5'), "{lang}: {t}");
        }
    }
}
