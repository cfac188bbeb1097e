//! What the login flow hands back to the web layer: where the browser goes next and which
//! cookies to set ([`Answer`]), or a failure page to show ([`Failure`]); and what it needs
//! from the request ([`Env`]). The flow never builds an HTTP response.

use std::sync::Arc;

use connectors::Message;
use store::SharedStore;

use crate::config::Settings;
use crate::oidc::jarm::Delivery;

/// What the flow needs of one request: the configuration in force, the store, the time,
/// the citizen's address (for rate limits) and the browser's cookies.
pub struct Env {
    settings: Arc<Settings>,
    /// The store of what has a lifetime.
    pub store: SharedStore,
    /// The durable records (persons, bindings, consents, maintenance).
    pub records: records::SharedRecords,
    /// Now, in Unix milliseconds.
    pub now: u64,
    /// The citizen's network address (never logged; keyed-hashed in store keys).
    pub address: String,
    /// The session cookie's secret, if sent.
    pub session_cookie: Option<String>,
    /// The browser-binding cookie's secret, if sent.
    pub browser_cookie: Option<String>,
    /// The identity source this browser used last, if it says.
    pub last_source: Option<String>,
    /// The instance's maintenance settings, reused for a second.
    pub maintenance: Arc<crate::maintenance::Cache>,
}

impl Env {
    /// An environment for one request.
    pub fn new(
        settings: Arc<Settings>,
        store: SharedStore,
        records: records::SharedRecords,
        now: u64,
        address: String,
    ) -> Self {
        Env {
            settings,
            store,
            records,
            now,
            address,
            session_cookie: None,
            browser_cookie: None,
            last_source: None,
            maintenance: Arc::default(),
        }
    }

    /// The maintenance settings in force (read at most a second ago).
    pub async fn maintenance(&self) -> store::StoreResult<crate::maintenance::Maintenance> {
        self.maintenance.load(self.records.as_ref(), self.now).await
    }

    /// [`Env::maintenance`], or none when the records cannot be read (logged).
    pub async fn maintenance_or_none(&self) -> crate::maintenance::Maintenance {
        self.maintenance
            .load_or_none(self.records.as_ref(), self.now)
            .await
    }

    /// The configuration in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.clone()
    }

    /// The citizen's live session, if any. A store failure is an error, never "no session".
    pub async fn session(
        &self,
    ) -> Result<Option<(String, crate::session::Session)>, store::StoreError> {
        crate::session::current(
            self.session_cookie.as_deref(),
            &self.settings,
            self.store.as_ref(),
            self.now,
        )
        .await
    }
}

/// Where the browser goes next, and the cookies to set on the way.
#[derive(Debug)]
pub struct Answer {
    /// A 303 to the login page (after a save), an upstream page or the client, or the page
    /// that posts a signed response to the client (JARM `form_post.jwt`).
    pub to: Delivery,
    /// A session cookie secret to set (a new or stepped-up session).
    pub session_cookie: Option<String>,
    /// A browser-binding cookie secret to set (a browser seen for the first time).
    pub browser_cookie: Option<String>,
    /// The identity source to remember as this browser's last.
    pub last_source: Option<String>,
}

impl Answer {
    /// A 303 to `location`.
    pub fn see_other(location: impl Into<String>) -> Self {
        Answer::deliver(Delivery::Redirect(location.into()))
    }

    /// The authorization response, however the client asked for it.
    pub fn deliver(to: Delivery) -> Self {
        Answer {
            to,
            session_cookie: None,
            browser_cookie: None,
            last_source: None,
        }
    }
}

/// A failure shown to the citizen: a page in their language that says what to do next.
#[derive(Debug)]
pub struct Failure {
    /// The citizen's language.
    pub lang: String,
    /// HTTP status: 4xx for the citizen's own actions, 502/503 for failed sources.
    pub status: u16,
    /// What to show.
    pub kind: FailureKind,
    /// The button that goes on from the page, so no failure is a dead end.
    pub action: Option<Box<Action>>,
    /// The address its language menu links to, in each language (`ui_locales` set).
    pub menu: Option<Box<str>>,
}

/// A way on from a failure page: a link and its label (a message key with arguments).
#[derive(Debug, Clone)]
pub struct Action {
    /// Where it goes.
    pub href: String,
    /// The label's message key (`button-other-way`, `button-back-to-platform`, …).
    pub label: Message,
}

impl Action {
    /// A link labelled with message `key`.
    pub fn new(href: impl Into<String>, label: Message) -> Self {
        Action {
            href: href.into(),
            label,
        }
    }
}

/// The kinds of failure pages.
#[derive(Debug)]
pub enum FailureKind {
    /// An error page: message key (its `-hint` too) and a note for developers.
    Error {
        /// Message key.
        key: String,
        /// Technical note for the platform's developers.
        detail: String,
    },
    /// A failure with arguments.
    Message {
        /// What to tell the citizen.
        message: Message,
    },
    /// The store or the records cannot be reached: "try again shortly".
    Unavailable,
    /// Too many attempts: come back after `retry_after` seconds.
    TooMany {
        /// Seconds.
        retry_after: u64,
    },
}

impl Failure {
    /// An error page with message `key` and a technical `detail`.
    pub fn page(lang: &str, status: u16, key: &str, detail: impl Into<String>) -> Self {
        Failure {
            lang: lang.to_string(),
            status,
            kind: FailureKind::Error {
                key: key.to_string(),
                detail: detail.into(),
            },
            action: None,
            menu: None,
        }
    }

    /// A failure with a message and, when the login goes on, a link back to the choice
    /// of identity sources.
    pub fn message(lang: &str, status: u16, message: Message, back: Option<String>) -> Self {
        Failure {
            lang: lang.to_string(),
            status,
            kind: FailureKind::Message { message },
            action: back.map(|b| Box::new(Action::new(b, Message::new("button-other-way")))),
            menu: None,
        }
    }

    /// The same failure with a language menu that links to `path` in each language.
    pub fn with_menu(mut self, path: &str) -> Self {
        self.menu = Some(path.into());
        self
    }

    /// The same failure with `action` as its way on.
    pub fn with_action(mut self, action: Option<Action>) -> Self {
        if let Some(a) = action {
            self.action = Some(Box::new(a));
        }
        self
    }

    /// The store failed: 503 "try again shortly"; the cause is logged here.
    pub fn unavailable(lang: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "store failure while serving a citizen");
        Failure {
            lang: lang.to_string(),
            status: 503,
            kind: FailureKind::Unavailable,
            action: None,
            menu: None,
        }
    }

    /// Too many attempts: 429 with `Retry-After`.
    pub fn too_many(lang: &str, retry_after: u64) -> Self {
        Failure {
            lang: lang.to_string(),
            status: 429,
            kind: FailureKind::TooMany { retry_after },
            action: None,
            menu: None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            FailureKind::Error { key, .. } => write!(f, "{}: {key}", self.status),
            FailureKind::Message { message, .. } => write!(f, "{}: {}", self.status, message.key),
            FailureKind::Unavailable => write!(f, "{}: unavailable", self.status),
            FailureKind::TooMany { .. } => write!(f, "{}: too many attempts", self.status),
        }
    }
}

/// The outcome of a step of the flow.
pub type Outcome = Result<Answer, Failure>;
