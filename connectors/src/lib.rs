//! The connector interface of the broker, and its identity sources.
//!
//! A connector turns one identity source (a national identity app, a bank, CTID, an old
//! portal's accounts, or the test citizens of a demo) into a verified [`Identity`]. The
//! broker drives it as a small state machine: [`Connector::start`] returns the first
//! [`Step`], and [`Connector::resume`] takes the citizen's answer to that step (a form, an
//! upstream callback, a poll) and returns the next one, until [`Step::Done`].
//!
//! Connectors know nothing of HTTP frameworks, sessions or tokens: they get plain parameter
//! structs and return plain values, so each can be tested alone and a new source is one
//! file here plus one configuration `type` in the broker. Texts shown to citizens are
//! message keys that the broker translates; a connector never builds HTML.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bank_card;
pub mod catalogue;
pub mod ctid;
pub mod kv;
pub mod legacy;
pub mod oidc;
pub mod otp;
pub mod population_registry;
pub mod sms;
pub mod test_citizens;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// How strongly a source proves who the citizen is (eIDAS levels of assurance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Assurance {
    /// Something the citizen knows, such as a password.
    Low,
    /// A verified attribute plus possession, such as a bank card and an SMS code.
    Substantial,
    /// A state-issued credential with face or chip verification.
    High,
}

impl Assurance {
    /// All levels, weakest first.
    pub const ALL: [Assurance; 3] = [Assurance::Low, Assurance::Substantial, Assurance::High];

    /// The lowercase name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Assurance::Low => "low",
            Assurance::Substantial => "substantial",
            Assurance::High => "high",
        }
    }
}

impl fmt::Display for Assurance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A citizen ID number as a source reported it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitizenId {
    /// The number, normalised (digits and letters only).
    pub value: String,
    /// Whether the source proves that this number belongs to the citizen (a bank or a state
    /// credential does; a self-declared number on an old account does not).
    pub proven: bool,
}

impl fmt::Debug for CitizenId {
    // ID numbers never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CitizenId")
            .field("value", &"[redacted]")
            .field("proven", &self.proven)
            .finish()
    }
}

/// A verified identity, the result of a completed login through a connector.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    /// The citizen's stable identifier at this source.
    pub subject: String,
    /// The citizen ID number, when the source knows one.
    pub citizen_id: Option<CitizenId>,
    /// Standard OpenID Connect claims (`name`, `given_name`, `family_name`, `birthdate`,
    /// `phone_number`, `address`, ...), fresh from the source.
    pub claims: BTreeMap<String, serde_json::Value>,
    /// The assurance this login reached.
    pub assurance: Assurance,
    /// Authentication method references (RFC 8176), e.g. `pwd`, `otp`, `face`.
    pub amr: Vec<String>,
}

impl fmt::Debug for Identity {
    // Claims hold personal data: only their names are printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field("citizen_id", &self.citizen_id)
            .field("claims", &self.claims.keys().collect::<Vec<_>>())
            .field("assurance", &self.assurance)
            .field("amr", &self.amr)
            .finish()
    }
}

/// Opaque state a connector keeps between steps; the broker stores it with the login.
pub type StepState = serde_json::Value;

/// One input field of a form step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Field {
    /// The form field name.
    pub name: String,
    /// Message key of the label.
    pub label: String,
    /// HTML input type (`text`, `password`, `tel`, `date`, ...).
    pub input_type: String,
    /// HTML `autocomplete` hint.
    pub autocomplete: String,
    /// Value to show again (never for secrets).
    pub value: String,
}

impl Field {
    /// A field with an empty value.
    pub fn new(name: &str, label: &str, input_type: &str, autocomplete: &str) -> Self {
        Field {
            name: name.into(),
            label: label.into(),
            input_type: input_type.into(),
            autocomplete: autocomplete.into(),
            value: String::new(),
        }
    }
}

/// A form the broker renders in the citizen's language.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Form {
    /// Message key of the title.
    pub title: String,
    /// Message key of an explanation shown above the fields, if any.
    pub intro: Option<String>,
    /// Fields, in order.
    pub fields: Vec<Field>,
    /// Message key of the submit button.
    pub submit: String,
    /// A problem with the previous answer, to show above the form.
    pub problem: Option<Message>,
    /// Information with arguments, shown above the fields (e.g. where a code was sent).
    #[serde(default)]
    pub notice: Option<Message>,
    /// A second button (e.g. "send a new code"): submits the form without checking the
    /// fields, with `name=1` added to the answer.
    #[serde(default)]
    pub secondary: Option<FormAction>,
}

/// A second button of a form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FormAction {
    /// The field name the button sends (with value `1`).
    pub name: String,
    /// Message key of its label.
    pub label: String,
}

/// A translatable message: a key and its arguments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Message {
    /// Message key.
    pub key: String,
    /// Named arguments.
    pub args: BTreeMap<String, String>,
}

impl Message {
    /// A message without arguments.
    pub fn new(key: &str) -> Self {
        Message {
            key: key.into(),
            args: BTreeMap::new(),
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, name: &str, value: impl fmt::Display) -> Self {
        self.args.insert(name.into(), value.to_string());
        self
    }
}

/// What the broker does next for the citizen. `S` is the state kept for the answer: raw
/// JSON for the broker ([`StepState`]), a connector's own type inside a [`TypedConnector`].
#[derive(Debug, Clone)]
pub enum Step<S = StepState> {
    /// Send the browser to an upstream page; the upstream returns to the callback URL.
    Redirect {
        /// The upstream URL.
        url: String,
        /// State to keep for the callback.
        state: S,
    },
    /// Show a form; its answer comes back as [`Input::Form`].
    Form {
        /// The form.
        form: Form,
        /// State to keep for the answer.
        state: S,
    },
    /// Show a waiting page (QR code, app link) and poll with [`Input::Poll`].
    Wait {
        /// Message key of what the citizen should do.
        instruction: Message,
        /// Content of the QR code to show, if any.
        qr: Option<String>,
        /// Link that opens the app on a phone, if any.
        app_link: Option<String>,
        /// Seconds between polls.
        poll_seconds: u32,
        /// State to keep for the poll.
        state: S,
    },
    /// The login is complete.
    Done(Identity),
}

impl<S: Serialize> Step<S> {
    /// The step with its state encoded as JSON for the broker to keep.
    pub fn encode(self) -> Result<Step, ConnectorError> {
        let enc = |s: S| {
            serde_json::to_value(s)
                .map_err(|e| ConnectorError::InvalidState(format!("state not encodable: {e}")))
        };
        Ok(match self {
            Step::Redirect { url, state } => Step::Redirect {
                url,
                state: enc(state)?,
            },
            Step::Form { form, state } => Step::Form {
                form,
                state: enc(state)?,
            },
            Step::Wait {
                instruction,
                qr,
                app_link,
                poll_seconds,
                state,
            } => Step::Wait {
                instruction,
                qr,
                app_link,
                poll_seconds,
                state: enc(state)?,
            },
            Step::Done(identity) => Step::Done(identity),
        })
    }
}

/// The citizen's answer to a step.
#[derive(Debug, Clone)]
pub enum Input {
    /// Fields of a submitted form.
    Form(BTreeMap<String, String>),
    /// Query parameters of an upstream callback (the broker has already checked `state`).
    Callback(BTreeMap<String, String>),
    /// A poll of a waiting step.
    Poll,
}

/// Facts about the login a connector may use.
#[derive(Clone)]
pub struct Context {
    /// The broker's callback URL for this connector (for redirect steps).
    pub callback_url: String,
    /// The `state` value the broker bound to this login, for upstream redirects.
    pub state: String,
    /// A fresh random value for upstream `nonce`s and PKCE verifiers.
    pub nonce: String,
    /// The citizen's languages, preferred first.
    pub languages: Vec<String>,
    /// `login_hint` from the relying party, if any.
    pub login_hint: Option<String>,
    /// The lowest assurance the relying party accepts.
    pub min_assurance: Assurance,
    /// Unix time in seconds.
    pub now: u64,
    /// The citizen's network address, for per-address rate limits (never logged).
    pub client_address: String,
    /// Shared short-lived state (one-time codes, counters, rate limits), the same for every
    /// broker instance.
    pub kv: std::sync::Arc<dyn kv::KeyValue>,
    /// Parts of this connector that operators put into maintenance at run time (for
    /// instance a bank id of the bank-card connector), with a message per language.
    pub maintenance: BTreeMap<String, BTreeMap<String, String>>,
}

impl Context {
    /// The citizen's preferred language (`en` when none is known).
    pub fn language(&self) -> &str {
        self.languages.first().map(String::as_str).unwrap_or("en")
    }
}

impl fmt::Debug for Context {
    // The hint, the upstream `state` and `nonce` and the address never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("callback_url", &self.callback_url)
            .field("state", &"[redacted]")
            .field("nonce", &"[redacted]")
            .field("languages", &self.languages)
            .field(
                "login_hint",
                &self.login_hint.as_ref().map(|_| "[redacted]"),
            )
            .field("min_assurance", &self.min_assurance)
            .field("now", &self.now)
            .field("client_address", &"[redacted]")
            .field("maintenance", &self.maintenance.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a step failed. The broker shows citizens the message in their language; operators
/// see the detail in the logs (which must hold no personal data).
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The citizen's answer was wrong; show the message with the same step again.
    #[error("rejected input: {}", .message.key)]
    Retry {
        /// What to tell the citizen.
        message: Message,
        /// The step to show again.
        step: Box<Step>,
    },
    /// The login through this source cannot go on; the citizen may choose another way.
    #[error("login failed: {} ({detail})", .message.key)]
    Failed {
        /// What to tell the citizen.
        message: Message,
        /// What operators need to know.
        detail: String,
    },
    /// The source cannot be reached or is overloaded.
    #[error("identity source unavailable: {0}")]
    Unavailable(String),
    /// The stored step state does not fit this connector (a bug or a stale login).
    #[error("invalid step state: {0}")]
    InvalidState(String),
}

impl ConnectorError {
    /// A [`ConnectorError::Retry`] showing `step` again (its state encoded for the broker).
    pub fn retry<S: Serialize>(message: Message, step: Step<S>) -> ConnectorError {
        match step.encode() {
            Ok(step) => ConnectorError::Retry {
                message,
                step: Box::new(step),
            },
            Err(e) => e,
        }
    }
}

/// Whether a source can be used right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Health {
    /// Working.
    Up,
    /// Working, but slow or failing sometimes.
    Degraded {
        /// Why, for operators.
        reason: String,
    },
    /// Not working.
    Down {
        /// Why, for operators.
        reason: String,
    },
}

/// An identity source.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    /// The highest assurance this connector can reach.
    fn assurance(&self) -> Assurance;

    /// Starts a login.
    async fn start(&self, ctx: &Context) -> Result<Step, ConnectorError>;

    /// Takes the answer to the step that produced `state` and returns the next step.
    async fn resume(
        &self,
        ctx: &Context,
        state: StepState,
        input: Input,
    ) -> Result<Step, ConnectorError>;

    /// The citizen left the step that produced `state`: cancelled the login, or chose
    /// another source. A source holding a request for it (a prompt in the citizen's app)
    /// withdraws it here, so it does not stay on the phone. Best effort: the login ends
    /// either way, so failures are only logged. The default does nothing.
    async fn abandon(&self, _ctx: &Context, _state: &StepState) {}

    /// Probes the source. The default says it is up.
    async fn health(&self) -> Health {
        Health::Up
    }

    /// Whether the source failed to answer in the last few minutes, from what the connector
    /// already knows (no request is made): the choice page warns citizens. The default
    /// knows of no trouble.
    fn recently_unavailable(&self) -> bool {
        false
    }

    /// The ids of the parts operators may put into maintenance one by one (the banks of
    /// the bank-card connector); the default has none.
    fn parts(&self) -> Vec<String> {
        Vec::new()
    }

    /// The public keys the source knows the broker by (a JWK set, for `private_key_jwt`),
    /// served at `/connectors/{id}/jwks` so the source can fetch them. The default has none.
    fn public_jwks(&self) -> Option<serde_json::Value> {
        None
    }

    /// A notification the source pushed to the broker (`POST /notify/{connector}`), such as
    /// the signed outcome of a waiting step. The connector authenticates it (a signature)
    /// and keeps what its next poll needs in `kv`. The default refuses notifications.
    async fn notify(
        &self,
        _kv: &dyn kv::KeyValue,
        _body: &[u8],
        _now: u64,
    ) -> Result<(), ConnectorError> {
        Err(ConnectorError::InvalidState(
            "this identity source sends no notifications".into(),
        ))
    }
}

/// An identity source with its own type of step state, encoded and decoded in one place
/// ([`Typed`]) instead of in every `resume`. A new source implements this trait; [`Typed`]
/// makes it a [`Connector`] the broker can drive.
#[async_trait::async_trait]
pub trait TypedConnector: Send + Sync {
    /// What the connector keeps between steps. A stored state that does not decode into
    /// it (a stale login, another connector's) is [`ConnectorError::InvalidState`].
    type State: Serialize + serde::de::DeserializeOwned + Send + Sync;

    /// The highest assurance this connector can reach.
    fn assurance(&self) -> Assurance;

    /// Starts a login.
    async fn start(&self, ctx: &Context) -> Result<Step<Self::State>, ConnectorError>;

    /// Takes the answer to the step that produced `state` and returns the next step.
    async fn resume(
        &self,
        ctx: &Context,
        state: Self::State,
        input: Input,
    ) -> Result<Step<Self::State>, ConnectorError>;

    /// See [`Connector::abandon`].
    async fn abandon(&self, _ctx: &Context, _state: &Self::State) {}

    /// See [`Connector::health`].
    async fn health(&self) -> Health {
        Health::Up
    }

    /// See [`Connector::recently_unavailable`].
    fn recently_unavailable(&self) -> bool {
        false
    }

    /// See [`Connector::parts`].
    fn parts(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The [`Connector`] of a [`TypedConnector`]: encodes its state on the way out and
/// decodes it on the way in.
pub struct Typed<C>(pub C);

impl<C: TypedConnector> Typed<C> {
    fn decode(state: StepState) -> Result<C::State, ConnectorError> {
        serde_json::from_value(state)
            .map_err(|e| ConnectorError::InvalidState(format!("step state does not decode: {e}")))
    }
}

#[async_trait::async_trait]
impl<C: TypedConnector> Connector for Typed<C> {
    fn assurance(&self) -> Assurance {
        self.0.assurance()
    }

    async fn start(&self, ctx: &Context) -> Result<Step, ConnectorError> {
        self.0.start(ctx).await?.encode()
    }

    async fn resume(
        &self,
        ctx: &Context,
        state: StepState,
        input: Input,
    ) -> Result<Step, ConnectorError> {
        let state = Self::decode(state)?;
        self.0.resume(ctx, state, input).await?.encode()
    }

    async fn abandon(&self, ctx: &Context, state: &StepState) {
        if let Ok(state) = Self::decode(state.clone()) {
            self.0.abandon(ctx, &state).await;
        }
    }

    async fn health(&self) -> Health {
        self.0.health().await
    }

    fn recently_unavailable(&self) -> bool {
        self.0.recently_unavailable()
    }

    fn parts(&self) -> Vec<String> {
        self.0.parts()
    }
}

/// Keeps only the digits and ASCII letters of an identifier, upper-cased.
pub fn normalise_id(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Whether `raw` has the shape of a citizen ID number the broker knows, once normalised: a
/// Vietnamese citizen ID card number (12 digits) or an old ID card number (9 digits), or a
/// Chinese resident ID number (18 characters: 17 digits and a check digit or `X`; or 15
/// digits on first-generation cards). A typo is caught here, before a registry check.
pub fn plausible_id(raw: &str) -> bool {
    let id = normalise_id(raw);
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match id.len() {
        9 | 12 | 15 => digits(&id),
        18 => digits(&id[..17]) && (digits(&id[17..]) || &id[17..] == "X"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citizen_id_numbers_of_known_shapes_are_plausible() {
        for ok in [
            "079201001234",
            "079 201 001 234",
            "123456789",
            "11010519491231002X",
        ] {
            assert!(plausible_id(ok), "{ok}");
        }
        for bad in [
            "abc",
            "",
            "07920100123",
            "1101051949123100Y2",
            "0792010012345",
        ] {
            assert!(!plausible_id(bad), "{bad}");
        }
    }

    #[test]
    fn assurance_orders_weakest_first() {
        assert!(Assurance::Low < Assurance::Substantial);
        assert!(Assurance::Substantial < Assurance::High);
    }

    #[test]
    fn id_numbers_are_redacted_in_debug() {
        let id = CitizenId {
            value: "079201001234".into(),
            proven: true,
        };
        assert!(!format!("{id:?}").contains("0792"));
    }

    #[test]
    fn context_debug_hides_the_hint_state_nonce_and_address() {
        let ctx = Context {
            callback_url: "https://broker.example/callback/x".into(),
            state: "state-secret".into(),
            nonce: "nonce-secret".into(),
            languages: vec!["vi".into()],
            login_hint: Some("079201001234".into()),
            min_assurance: Assurance::Low,
            now: 0,
            client_address: "203.0.113.9".into(),
            kv: std::sync::Arc::new(kv::MemoryKv::default()),
            maintenance: BTreeMap::new(),
        };
        let shown = format!("{ctx:?}");
        for secret in [
            "state-secret",
            "nonce-secret",
            "079201001234",
            "203.0.113.9",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("callback/x"));
        assert_eq!(ctx.language(), "vi");
    }

    #[test]
    fn normalise_keeps_digits_and_letters() {
        assert_eq!(normalise_id(" 079 201-001.234 "), "079201001234");
        assert_eq!(normalise_id("ab12"), "AB12");
    }
}
