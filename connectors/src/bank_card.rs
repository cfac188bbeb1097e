//! Bank-card real-name verification with an SMS one-time code ("four elements").
//!
//! The citizen enters name, citizen ID number, bank card number and the phone number
//! reserved at the bank. The card's BIN prefix chooses the bank; the bank's verification
//! service (one per bank, or one aggregator) says whether the four belong together; then a
//! one-time code goes by SMS to that phone and the citizen types it. Modelled on the
//! Shenzhen social-insurance platform (12 partner banks, one still being upgraded), with
//! its failures and remedies.
//!
//! The card number is never stored or logged: it goes to the bank and is forgotten (the
//! pages show at most its last four digits). The identity records only which bank
//! confirmed it. Codes, attempt counters and rate limits live in the shared state
//! ([`crate::kv`]) under keyed hashes.
//!
//! Verification contract (`POST {url}/verify`, JSON, optional bearer token):
//! request `{"bank", "name", "id_number", "card_number", "phone", "request_id"}`, answer
//! `{"result": "match" | "mismatch" | "card_not_found" | "not_debit" | "card_inactive"}`.
//! 429, 5xx, timeouts: the bank is unavailable.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::otp::{minutes, random_id, CodeCheck, CodePolicy, Codes, Guard, PerDimension};
use crate::sms::{mask_phone, normalise_phone, SmsConfig, SmsSender};
use crate::{
    normalise_id, Assurance, CitizenId, ConnectorError, Context, Field, Form, FormAction, Health,
    Identity, Input, Message, Step, TypedConnector,
};
use common::hash::KeyedHash;
use common::http::{result_of, CallError, Endpoint, JsonClient};
use common::localized::pick;
use common::outage::RecentOutage;
use common::seal::Sealer;
use common::secret::{self, SecretSource};

/// Prefix of this connector's shared-state keys.
const KV: &str = "bank";

/// Configuration of the bank-card connector.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Key of the keyed hashes of codes, ID numbers, phones and addresses (at least 32
    /// bytes; every broker instance needs the same one).
    pub hash_key: SecretSource,
    /// One aggregator for every bank without its own `verification`.
    #[serde(default)]
    pub verification: Option<Endpoint>,
    /// Partner banks.
    pub banks: Vec<Bank>,
    /// How codes are sent.
    pub sms: SmsConfig,
    /// Lifetime of a code, in seconds.
    #[serde(default = "default_code_ttl")]
    pub code_ttl_seconds: u64,
    /// Attempts per code.
    #[serde(default = "default_attempts")]
    pub max_code_attempts: u64,
    /// Seconds before a new code may be sent.
    #[serde(default = "default_cooldown")]
    pub resend_cooldown_seconds: u64,
    /// Rate limits.
    #[serde(default)]
    pub limits: Limits,
    /// The help line citizens are told to call.
    #[serde(default = "default_hotline")]
    pub hotline: String,
    /// Country calling code of national phone numbers.
    #[serde(default = "default_country")]
    pub phone_country_code: String,
}

fn default_code_ttl() -> u64 {
    300
}
fn default_attempts() -> u64 {
    3
}
fn default_cooldown() -> u64 {
    60
}
fn default_hotline() -> String {
    "12333".into()
}
fn default_country() -> String {
    "86".into()
}

/// Rate limits, per citizen ID number, phone number and client address, in one window.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Length of the window, in seconds.
    pub window_seconds: u64,
    /// Verifications asked of the banks.
    pub verifications: PerDimension,
    /// Codes sent.
    pub sms: PerDimension,
    /// Wrong codes typed.
    pub wrong_codes: PerDimension,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window_seconds: 3600,
            verifications: PerDimension {
                per_id: 5,
                per_phone: 5,
                per_address: 20,
            },
            sms: PerDimension {
                per_id: 5,
                per_phone: 5,
                per_address: 20,
            },
            wrong_codes: PerDimension {
                per_id: 10,
                per_phone: 10,
                per_address: 30,
            },
        }
    }
}

/// Whether a bank can be used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BankStatus {
    /// Connected.
    #[default]
    Enabled,
    /// Not offered (its cards count as unsupported).
    Disabled,
    /// Being upgraded: its cards get the bank's message and the list of the others.
    Upgrading,
}

/// A partner bank.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bank {
    /// Stable id (sent to the verification service, recorded in the identity).
    pub id: String,
    /// Name per language (`en` required).
    pub name: BTreeMap<String, String>,
    /// BIN prefixes of its debit cards (the longest matching prefix wins).
    pub bins: Vec<String>,
    /// Enabled, disabled or upgrading.
    #[serde(default)]
    pub status: BankStatus,
    /// Shown for its cards while upgrading or disabled, per language.
    #[serde(default)]
    pub message: BTreeMap<String, String>,
    /// Its own verification service (else the aggregator's).
    #[serde(default)]
    pub verification: Option<Endpoint>,
}

struct OpenBank {
    bank: Bank,
    client: Option<JsonClient>,
    /// This bank's failures: an aggregator serving several banks may fail for one only.
    outage: RecentOutage,
}

/// The connector.
pub struct BankCard {
    config: Config,
    banks: Vec<OpenBank>,
    hasher: KeyedHash,
    sealer: Sealer,
    codes: Codes,
    sms: SmsSender,
}

/// Step state, kept by the broker with the login: only what the next step needs. Never
/// the card number; the ID number, name and phone only sealed (AES-256-GCM under a key
/// derived from `hash_key`, bound to the flow), since the identity at the end needs them.
#[derive(Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum State {
    /// The four-elements form.
    Details,
    /// The code form.
    Code(CodeState),
}

/// What the code step needs.
#[derive(Serialize, Deserialize)]
pub struct CodeState {
    /// The random id of this code flow (keys of the code in the shared state).
    flow: String,
    /// The bank that confirmed the four elements.
    bank: String,
    /// [`Confirmed`], sealed.
    sealed: String,
}

/// The details the bank confirmed, for the identity and for sending codes.
#[derive(Serialize, Deserialize, Default)]
struct Confirmed {
    name: String,
    id_number: String,
    /// E.164.
    phone: String,
}

/// What the citizen typed, shown again in the form after a problem (never the card).
#[derive(Default)]
struct Entered {
    name: String,
    id_number: String,
    phone: String,
}

/// Purpose of the key that seals [`Confirmed`].
const SEAL_PURPOSE: &str = "bank-card-step-state";

/// Whether a card number passes the Luhn check.
pub fn luhn_ok(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// A name as banks compare it: NFC, trimmed, single spaces.
pub fn normalise_name(raw: &str) -> String {
    raw.nfc()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn kv_err(e: crate::kv::KvError) -> ConnectorError {
    ConnectorError::Unavailable(e.to_string())
}

impl BankCard {
    /// Checks the configuration, reads the hash key and builds the connector. Problems are
    /// (key path below `settings`, reason).
    pub fn open(config: Config, base_dir: &Path) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let key = secret::resolve(&config.hash_key, base_dir, "hash_key", &mut problems);
        if key.as_ref().is_some_and(|k| k.len() < 32) {
            problems.push(("hash_key".into(), "must be at least 32 bytes long".into()));
        }
        let aggregator = config
            .verification
            .as_ref()
            .and_then(|e| JsonClient::open(e, base_dir, "verification", &mut problems));
        if config.banks.is_empty() {
            problems.push(("banks".into(), "lists no bank".into()));
        }
        let mut ids = std::collections::HashSet::new();
        let mut bins: BTreeMap<&str, usize> = BTreeMap::new();
        let mut banks = Vec::new();
        for (i, b) in config.banks.iter().enumerate() {
            let k = format!("banks[{i}]");
            if b.id.is_empty()
                || !b
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                problems.push((
                    format!("{k}.id"),
                    "use letters, digits, `-` and `_` only".into(),
                ));
            }
            if !ids.insert(b.id.as_str()) {
                problems.push((format!("{k}.id"), format!("`{}` is used twice", b.id)));
            }
            if !b.name.contains_key("en") {
                problems.push((
                    format!("{k}.name"),
                    "needs at least an English (`en`) name".into(),
                ));
            }
            if b.bins.is_empty() && b.status == BankStatus::Enabled {
                problems.push((format!("{k}.bins"), "lists no BIN prefix".into()));
            }
            for (j, bin) in b.bins.iter().enumerate() {
                if !(4..=8).contains(&bin.len()) || !bin.bytes().all(|c| c.is_ascii_digit()) {
                    problems.push((format!("{k}.bins[{j}]"), "must be 4 to 8 digits".into()));
                } else if let Some(other) = bins.insert(bin.as_str(), i) {
                    problems.push((
                        format!("{k}.bins[{j}]"),
                        format!("`{bin}` is also a prefix of banks[{other}]"),
                    ));
                }
            }
            if b.status == BankStatus::Upgrading && b.message.is_empty() {
                problems.push((
                    format!("{k}.message"),
                    "a bank being upgraded needs a message for citizens".into(),
                ));
            }
            let client = match &b.verification {
                Some(e) => {
                    JsonClient::open(e, base_dir, &format!("{k}.verification"), &mut problems)
                }
                None => aggregator.clone(),
            };
            if client.is_none() && b.status == BankStatus::Enabled && config.verification.is_none()
            {
                problems.push((
                    format!("{k}.verification"),
                    "an enabled bank needs its own `verification` or the connector's".into(),
                ));
            }
            banks.push(OpenBank {
                bank: b.clone(),
                client,
                outage: RecentOutage::default(),
            });
        }
        if !banks.iter().any(|b| b.bank.status == BankStatus::Enabled) && !config.banks.is_empty() {
            problems.push(("banks".into(), "no bank is enabled".into()));
        }
        if config.code_ttl_seconds < 30 || config.code_ttl_seconds > 900 {
            problems.push((
                "code_ttl_seconds".into(),
                "must be between 30 and 900".into(),
            ));
        }
        if !(1..=10).contains(&config.max_code_attempts) {
            problems.push((
                "max_code_attempts".into(),
                "must be between 1 and 10".into(),
            ));
        }
        if config.resend_cooldown_seconds > 600 {
            problems.push((
                "resend_cooldown_seconds".into(),
                "must be at most 600".into(),
            ));
        }
        if config.limits.window_seconds == 0 {
            problems.push(("limits.window_seconds".into(), "must be more than 0".into()));
        }
        if config.phone_country_code.is_empty()
            || config.phone_country_code.len() > 3
            || !config
                .phone_country_code
                .bytes()
                .all(|c| c.is_ascii_digit())
        {
            problems.push(("phone_country_code".into(), "must be 1 to 3 digits".into()));
        }
        let sms = SmsSender::open(&config.sms, base_dir, "sms", &mut problems);
        match (key, sms) {
            (Some(key), Some(sms)) if problems.is_empty() => {
                let hasher = KeyedHash::new(&key);
                let codes = Codes::new(
                    hasher.clone(),
                    KV,
                    CodePolicy {
                        ttl: Duration::from_secs(config.code_ttl_seconds),
                        max_attempts: config.max_code_attempts,
                        resend_cooldown: Duration::from_secs(config.resend_cooldown_seconds),
                    },
                );
                Ok(BankCard {
                    config,
                    banks,
                    sealer: Sealer::derive(&hasher, SEAL_PURPOSE),
                    hasher,
                    codes,
                    sms,
                })
            }
            _ => Err(problems),
        }
    }

    /// Whether codes go to the console (demo only).
    pub fn uses_console_sms(&self) -> bool {
        self.sms.is_console()
    }

    fn bank_list(&self, lang: &str) -> String {
        let sep = if lang == "zh" { "、" } else { ", " };
        self.banks
            .iter()
            .filter(|b| b.bank.status == BankStatus::Enabled)
            .map(|b| pick(&b.bank.name, lang))
            .collect::<Vec<_>>()
            .join(sep)
    }

    fn bank_of(&self, card: &str) -> Option<&OpenBank> {
        self.banks
            .iter()
            .filter_map(|b| {
                b.bank
                    .bins
                    .iter()
                    .filter(|bin| card.starts_with(bin.as_str()))
                    .map(|bin| bin.len())
                    .max()
                    .map(|len| (len, b))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, b)| b)
    }

    fn details_form(
        &self,
        ctx: &Context,
        values: &Entered,
        problem: Option<Message>,
    ) -> Step<State> {
        let mut name = Field::new("name", "field-full-name", "text", "name");
        name.value = values.name.clone();
        let mut id = Field::new("id_number", "field-citizen-id", "text", "off");
        id.value = values.id_number.clone();
        // The card number is never filled in again: it would be kept with the login.
        let card = Field::new("card_number", "field-card-number", "text", "cc-number");
        let mut phone = Field::new("phone", "field-reserved-phone", "tel", "tel");
        phone.value = values.phone.clone();
        Step::Form {
            form: Form {
                title: "bank-card-title".into(),
                intro: Some("bank-card-intro".into()),
                fields: vec![name, id, card, phone],
                submit: "button-send-code".into(),
                problem,
                notice: Some(
                    Message::new("bank-card-banks").arg("banks", self.bank_list(ctx.language())),
                ),
                secondary: None,
            },
            state: State::Details,
        }
    }

    fn seal(&self, flow: &str, who: &Confirmed) -> Result<String, ConnectorError> {
        let plain = serde_json::to_vec(who)
            .map_err(|e| ConnectorError::InvalidState(format!("bank-card details: {e}")))?;
        self.sealer
            .seal(flow, &plain)
            .map_err(|e| ConnectorError::Unavailable(format!("bank-card state: {e}")))
    }

    fn unseal(&self, state: &CodeState) -> Result<Confirmed, ConnectorError> {
        self.sealer
            .open(&state.flow, &state.sealed)
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .ok_or_else(|| {
                ConnectorError::InvalidState(
                    "bank-card state does not open (changed, or another hash_key)".into(),
                )
            })
    }

    fn code_form(
        &self,
        state: &CodeState,
        notice: Message,
        problem: Option<Message>,
    ) -> Step<State> {
        Step::Form {
            form: Form {
                title: "bank-card-code-title".into(),
                intro: None,
                fields: vec![Field::new(
                    "code",
                    "field-sms-code",
                    "text",
                    "one-time-code",
                )],
                submit: "button-verify".into(),
                problem,
                notice: Some(notice),
                secondary: Some(FormAction {
                    name: "resend".into(),
                    label: "button-resend-code".into(),
                }),
            },
            state: State::Code(CodeState {
                flow: state.flow.clone(),
                bank: state.bank.clone(),
                sealed: state.sealed.clone(),
            }),
        }
    }

    fn sent_notice(&self, who: &Confirmed) -> Message {
        let key = if self.sms.demo_inbox_url.is_some() {
            "bank-card-code-sent-demo"
        } else {
            "bank-card-code-sent"
        };
        Message::new(key)
            .arg("phone", mask_phone(&who.phone))
            .arg(
                "minutes",
                minutes(Duration::from_secs(self.config.code_ttl_seconds)),
            )
            .arg("inbox", self.sms.demo_inbox_url.as_deref().unwrap_or(""))
            // For the page's countdown: the cooldown starts when a code is sent.
            .arg("resend_seconds", self.config.resend_cooldown_seconds)
    }

    fn guard(&self, ctx: &Context, id: &str, phone: &str) -> Guard {
        Guard::new(
            &self.hasher,
            KV,
            &[
                ("id", id),
                ("phone", phone),
                ("address", &ctx.client_address),
            ],
        )
    }

    fn locked(&self, wait: Duration) -> ConnectorError {
        ConnectorError::Failed {
            message: Message::new("error-bank-locked").arg("minutes", minutes(wait)),
            detail: "rate limit: verification paused for this ID number, phone or address".into(),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.config.limits.window_seconds)
    }

    /// Sends a new code for the flow of `state`, after the rate limits.
    async fn send_code(
        &self,
        ctx: &Context,
        state: &CodeState,
        who: &Confirmed,
    ) -> Result<(), ConnectorError> {
        let now = ctx.now.saturating_mul(1000);
        let kv = ctx.kv.as_ref();
        let guard = self.guard(ctx, &who.id_number, &who.phone);
        if let Some(wait) = guard
            .count(kv, "sms", self.config.limits.sms, self.window(), now)
            .await
            .map_err(kv_err)?
        {
            return Err(self.locked(wait));
        }
        let code = self
            .codes
            .issue(kv, &state.flow, now)
            .await
            .map_err(kv_err)?;
        let text = self.sms.text(
            ctx.language(),
            &code,
            minutes(Duration::from_secs(self.config.code_ttl_seconds)),
        );
        self.sms
            .send(&who.phone, &text, &random_id())
            .await
            .map_err(|e| ConnectorError::Unavailable(e.to_string()))
    }

    async fn details(
        &self,
        ctx: &Context,
        fields: &BTreeMap<String, String>,
    ) -> Result<Step<State>, ConnectorError> {
        let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
        let name = normalise_name(get("name"));
        let id_number = normalise_id(get("id_number"));
        let card: String = get("card_number")
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        let phone = normalise_phone(get("phone"), &self.config.phone_country_code);
        let mut values = Entered {
            name: name.clone(),
            id_number: id_number.clone(),
            phone: get("phone").trim().to_string(),
        };
        let retry = |values: &Entered, m: Message| {
            ConnectorError::retry(m, self.details_form(ctx, values, None))
        };
        if name.is_empty() || name.chars().count() > 100 {
            return Err(retry(&values, Message::new("error-bank-input-name")));
        }
        if !(6..=20).contains(&id_number.len()) {
            return Err(retry(&values, Message::new("error-bank-input-id")));
        }
        if !(12..=19).contains(&card.len())
            || !card.bytes().all(|b| b.is_ascii_digit())
            || !luhn_ok(&card)
        {
            return Err(retry(&values, Message::new("error-bank-input-card")));
        }
        let Some(phone) = phone else {
            return Err(retry(&values, Message::new("error-bank-input-phone")));
        };
        values.phone = phone.clone();
        let lang = ctx.language();
        let list = self.bank_list(lang);
        let Some(bank) = self
            .bank_of(&card)
            .filter(|b| b.bank.status != BankStatus::Disabled)
        else {
            return Err(retry(
                &values,
                Message::new("error-bank-unsupported").arg("banks", list),
            ));
        };
        let bank_name = pick(&bank.bank.name, lang).to_string();
        // Operators may put one bank into maintenance at run time (admin API).
        let operator_message = ctx.maintenance.get(&bank.bank.id);
        if bank.bank.status == BankStatus::Upgrading || operator_message.is_some() {
            let message = operator_message.unwrap_or(&bank.bank.message);
            return Err(retry(
                &values,
                Message::new("error-bank-upgrading")
                    .arg("bank", &bank_name)
                    .arg("message", pick(message, lang))
                    .arg("banks", list),
            ));
        }
        let Some(client) = &bank.client else {
            return Err(retry(
                &values,
                Message::new("error-bank-unavailable").arg("bank", &bank_name),
            ));
        };

        let now = ctx.now.saturating_mul(1000);
        let kv = ctx.kv.as_ref();
        let guard = self.guard(ctx, &id_number, &phone);
        if let Some(wait) = guard.locked(kv, now).await.map_err(kv_err)? {
            return Err(self.locked(wait));
        }
        if let Some(wait) = guard
            .count(
                kv,
                "verify",
                self.config.limits.verifications,
                self.window(),
                now,
            )
            .await
            .map_err(kv_err)?
        {
            return Err(self.locked(wait));
        }
        let body = serde_json::json!({
            "bank": bank.bank.id,
            "name": name,
            "id_number": id_number,
            "card_number": card,
            "phone": phone,
            "request_id": random_id(),
        });
        drop(card);
        let answer = client.post("verify", &body).await;
        drop(body);
        let correlation = self.hasher.tag("id", &id_number);
        let result = match answer {
            Ok((200, v)) => result_of(&v).unwrap_or("").to_string(),
            Ok((status, _)) => {
                tracing::warn!(bank = %bank.bank.id, status, "bank verification refused the request");
                return Err(retry(
                    &values,
                    Message::new("error-bank-unavailable").arg("bank", &bank_name),
                ));
            }
            Err(e) => {
                if let CallError::Outage(reason) = &e {
                    bank.outage.note(reason);
                }
                tracing::warn!(bank = %bank.bank.id, error = %e, "bank verification unavailable");
                return Err(retry(
                    &values,
                    Message::new("error-bank-unavailable").arg("bank", &bank_name),
                ));
            }
        };
        tracing::info!(bank = %bank.bank.id, result = %result, citizen = %correlation, "bank verification answered");
        let problem = match result.as_str() {
            "match" => None,
            "mismatch" => Some(
                Message::new("error-bank-mismatch")
                    .arg("bank", &bank_name)
                    .arg("hotline", &self.config.hotline),
            ),
            "card_not_found" => {
                Some(Message::new("error-bank-card-unknown").arg("bank", &bank_name))
            }
            "not_debit" => {
                Some(Message::new("error-bank-not-debit").arg("banks", self.bank_list(lang)))
            }
            "card_inactive" => {
                Some(Message::new("error-bank-card-inactive").arg("bank", &bank_name))
            }
            other => {
                tracing::warn!(bank = %bank.bank.id, result = %other, "bank verification gave an unknown result");
                Some(Message::new("error-bank-unavailable").arg("bank", &bank_name))
            }
        };
        if let Some(m) = problem {
            return Err(retry(&values, m));
        }
        let flow = random_id();
        let who = Confirmed {
            name,
            id_number,
            phone,
        };
        let state = CodeState {
            sealed: self.seal(&flow, &who)?,
            flow,
            bank: bank.bank.id.clone(),
        };
        self.codes
            .start_cooldown(kv, &state.flow, now)
            .await
            .map_err(kv_err)?;
        self.send_code(ctx, &state, &who).await?;
        Ok(self.code_form(&state, self.sent_notice(&who), None))
    }

    async fn code(
        &self,
        ctx: &Context,
        state: CodeState,
        fields: &BTreeMap<String, String>,
    ) -> Result<Step<State>, ConnectorError> {
        let now = ctx.now.saturating_mul(1000);
        let kv = ctx.kv.as_ref();
        let who = self.unseal(&state)?;
        let guard = self.guard(ctx, &who.id_number, &who.phone);
        if let Some(wait) = guard.locked(kv, now).await.map_err(kv_err)? {
            return Err(self.locked(wait));
        }
        if fields.get("resend").map(String::as_str) == Some("1") {
            if let Some(left) = self
                .codes
                .start_cooldown(kv, &state.flow, now)
                .await
                .map_err(kv_err)?
            {
                let problem =
                    Message::new("error-otp-cooldown").arg("seconds", left.as_secs().max(1));
                return Ok(self.code_form(&state, self.sent_notice(&who), Some(problem)));
            }
            self.send_code(ctx, &state, &who).await?;
            let notice = self.sent_notice(&who);
            return Ok(self.code_form(&state, notice, Some(Message::new("bank-card-code-resent"))));
        }
        let code: String = fields
            .get("code")
            .map(|c| c.chars().filter(|c| !c.is_whitespace()).collect())
            .unwrap_or_default();
        let again = |m: Message| {
            ConnectorError::retry(m, self.code_form(&state, self.sent_notice(&who), None))
        };
        if code.len() != crate::otp::CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(again(Message::new("error-otp-format")));
        }
        match self
            .codes
            .check(kv, &state.flow, &code, now)
            .await
            .map_err(kv_err)?
        {
            CodeCheck::Right => {
                tracing::info!(bank = %state.bank, citizen = %self.hasher.tag("id", &who.id_number), "bank-card verification completed");
                let mut claims = BTreeMap::new();
                claims.insert("name".into(), serde_json::Value::String(who.name.clone()));
                claims.insert(
                    "phone_number".into(),
                    serde_json::Value::String(who.phone.clone()),
                );
                claims.insert(
                    "phone_number_verified".into(),
                    serde_json::Value::Bool(true),
                );
                claims.insert(
                    "verified_by_bank".into(),
                    serde_json::Value::String(state.bank.clone()),
                );
                Ok(Step::Done(Identity {
                    subject: self.hasher.tag("subject", &who.id_number),
                    citizen_id: Some(CitizenId {
                        value: who.id_number.clone(),
                        proven: true,
                    }),
                    claims,
                    assurance: Assurance::Substantial,
                    amr: vec!["sms".into(), "otp".into()],
                }))
            }
            CodeCheck::Wrong { remaining } => {
                if let Some(wait) = guard
                    .count(
                        kv,
                        "wrong",
                        self.config.limits.wrong_codes,
                        self.window(),
                        now,
                    )
                    .await
                    .map_err(kv_err)?
                {
                    return Err(self.locked(wait));
                }
                if remaining > 0 {
                    Err(again(
                        Message::new("error-otp-wrong").arg("remaining", remaining),
                    ))
                } else {
                    Err(again(Message::new("error-otp-exhausted")))
                }
            }
            CodeCheck::Exhausted | CodeCheck::Expired => {
                Err(again(Message::new("error-otp-expired")))
            }
        }
    }

    /// What failed to answer in the last few minutes: the SMS gateway, and the enabled
    /// banks whose verification service did (with the reason), and whether that is every
    /// enabled bank.
    fn outages(&self) -> (Option<String>, Vec<(String, String)>, bool) {
        let enabled: Vec<&OpenBank> = self
            .banks
            .iter()
            .filter(|b| b.bank.status == BankStatus::Enabled && b.client.is_some())
            .collect();
        let failing: Vec<(String, String)> = enabled
            .iter()
            .filter_map(|b| Some((b.bank.id.clone(), b.outage.reason()?)))
            .collect();
        let all = !enabled.is_empty() && failing.len() == enabled.len();
        (self.sms.recent_outage(), failing, all)
    }
}

#[async_trait::async_trait]
impl TypedConnector for BankCard {
    type State = State;

    fn assurance(&self) -> Assurance {
        Assurance::Substantial
    }

    /// Citizens are warned when no code can be sent or no bank can be asked; one bank's
    /// service failing concerns only its cards.
    fn recently_unavailable(&self) -> bool {
        let (sms, _, every_bank) = self.outages();
        sms.is_some() || every_bank
    }

    /// Degraded for a few minutes after the SMS gateway or a bank's verification failed to
    /// answer, naming which (the contracts have no probe of their own).
    fn parts(&self) -> Vec<String> {
        self.banks.iter().map(|b| b.bank.id.clone()).collect()
    }

    async fn health(&self) -> Health {
        let (sms, banks, _) = self.outages();
        let mut reasons: Vec<String> = sms
            .map(|r| format!("SMS gateway: {r}"))
            .into_iter()
            .collect();
        reasons.extend(
            banks
                .into_iter()
                .map(|(id, r)| format!("verification of bank {id}: {r}")),
        );
        if reasons.is_empty() {
            Health::Up
        } else {
            Health::Degraded {
                reason: reasons.join("; "),
            }
        }
    }

    async fn start(&self, ctx: &Context) -> Result<Step<State>, ConnectorError> {
        Ok(self.details_form(ctx, &Entered::default(), None))
    }

    async fn resume(
        &self,
        ctx: &Context,
        state: State,
        input: Input,
    ) -> Result<Step<State>, ConnectorError> {
        let Input::Form(fields) = input else {
            return Err(ConnectorError::InvalidState("expected a form".into()));
        };
        match state {
            State::Details => self.details(ctx, &fields).await,
            State::Code(state) => self.code(ctx, state, &fields).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(text: &str) -> Result<BankCard, Vec<(String, String)>> {
        std::env::set_var(
            "BANK_TEST_HASH_KEY",
            "hash-key-for-unit-tests-0123456789abcdef",
        );
        let config: Config = toml::from_str(text).expect("parses");
        BankCard::open(config, Path::new("."))
    }

    const BASE: &str = "hash_key = { env = \"BANK_TEST_HASH_KEY\" }\nverification = { url = \"https://banks.example\" }\nsms = { kind = \"http\", url = \"https://sms.example/send\" }\n";

    #[test]
    fn settings_problems_name_their_key() {
        let text = format!(
            "{BASE}[[banks]]\nid = \"a\"\nname = {{ en = \"A\" }}\nbins = [\"622202\"]\n\n[[banks]]\nid = \"b\"\nname = {{ zh = \"B\" }}\nbins = [\"622202\", \"12\"]\nstatus = \"upgrading\"\n"
        );
        let Err(problems) = open(&text) else {
            panic!("must fail")
        };
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "banks[1].name",
                "banks[1].bins[0]",
                "banks[1].bins[1]",
                "banks[1].message"
            ]
        );
        let plain_http = BASE.replace("https://banks.example", "http://banks.example");
        let Err(problems) = open(&format!(
            "{plain_http}[[banks]]\nid = \"a\"\nname = {{ en = \"A\" }}\nbins = [\"622202\"]\n"
        )) else {
            panic!("must fail")
        };
        assert_eq!(problems[0].0, "verification.url");
    }

    #[test]
    fn the_longest_bin_prefix_picks_the_bank() {
        let c = open(&format!(
            "{BASE}[[banks]]\nid = \"short\"\nname = {{ en = \"S\" }}\nbins = [\"6222\"]\n[[banks]]\nid = \"long\"\nname = {{ en = \"L\" }}\nbins = [\"622202\"]\n"
        ))
        .expect("opens");
        assert_eq!(
            c.bank_of("6222020200112345679").map(|b| b.bank.id.as_str()),
            Some("long")
        );
        assert_eq!(
            c.bank_of("6222990200112345679").map(|b| b.bank.id.as_str()),
            Some("short")
        );
        assert!(c.bank_of("4111111111111111").is_none());
    }

    #[test]
    fn luhn_and_names() {
        assert!(luhn_ok("4539578763621486"));
        assert!(!luhn_ok("4539578763621487"));
        assert_eq!(normalise_name("  Nguyễn   Văn An "), "Nguyễn Văn An");
    }

    fn ctx() -> Context {
        Context {
            callback_url: String::new(),
            state: String::new(),
            nonce: String::new(),
            languages: vec!["zh".into()],
            login_hint: None,
            min_assurance: Assurance::Low,
            now: 1_000,
            client_address: "198.51.100.7".into(),
            kv: std::sync::Arc::new(crate::kv::MemoryKv::default()),
            maintenance: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn the_code_step_state_holds_no_personal_data_in_clear() {
        use crate::Connector;
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let bank = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/verify"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"result": "match"})),
            )
            .mount(&bank)
            .await;
        let c = crate::Typed(
            open(&format!(
                "hash_key = {{ env = \"BANK_TEST_HASH_KEY\" }}\nverification = {{ url = \"{}\" }}\nsms = {{ kind = \"log\" }}\n[[banks]]\nid = \"icbc\"\nname = {{ en = \"ICBC\" }}\nbins = [\"622202\"]\n",
                bank.uri()
            ))
            .expect("opens"),
        );
        let ctx = ctx();
        let Step::Form { state, .. } = c.start(&ctx).await.expect("start") else {
            panic!("a form")
        };
        let answer = Input::Form(BTreeMap::from([
            ("name".to_string(), "王伟".to_string()),
            ("id_number".to_string(), "110101199003074517".to_string()),
            ("card_number".to_string(), "6222020200112345679".to_string()),
            ("phone".to_string(), "13800138000".to_string()),
        ]));
        let Step::Form { state, .. } = c.resume(&ctx, state, answer).await.expect("code step")
        else {
            panic!("the code form")
        };
        let stored = state.to_string();
        for clear in [
            "王伟",
            "110101199003074517",
            "6222020200112345679",
            "13800138000",
        ] {
            assert!(!stored.contains(clear), "{clear} in {stored}");
        }
        assert_eq!(state["stage"], "code");
        // The sealed part opens only unchanged.
        let mut tampered = state.clone();
        tampered["flow"] = serde_json::Value::String("another-flow".into());
        let code = Input::Form(BTreeMap::from([("code".to_string(), "000000".to_string())]));
        assert!(matches!(
            c.resume(&ctx, tampered, code.clone()).await,
            Err(ConnectorError::InvalidState(_))
        ));
        assert!(matches!(
            c.resume(&ctx, serde_json::json!({"stage": "nonsense"}), code.clone())
                .await,
            Err(ConnectorError::InvalidState(_))
        ));
        // A wrong code is checked against the real flow.
        assert!(matches!(
            c.resume(&ctx, state, code).await,
            Err(ConnectorError::Retry { .. })
        ));
    }
}
