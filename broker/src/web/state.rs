//! What every request handler shares: the configuration and the store.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Live, Settings};
use store::SharedStore;

/// Shared state of the running broker.
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force (live reload swaps it atomically; requests in flight keep
    /// the one they started with).
    pub live: Arc<arc_swap::ArcSwap<Live>>,
    /// The store (everything with a lifetime).
    pub store: SharedStore,
    /// The durable records (persons, bindings, consents, maintenance, audit, activity).
    pub records: records::SharedRecords,
    /// Outgoing HTTP (back-channel logout); redirects off.
    pub http: reqwest::Client,
    /// The clock every flow reads.
    pub clock: crate::clock::SharedClock,
    /// The maintenance settings this instance read last (cleared when it changes them).
    pub maintenance: Arc<crate::maintenance::Cache>,
    /// This process among the instances (configuration versions).
    pub instance: Arc<crate::versions::Instance>,
}

impl AppState {
    /// The configuration in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.live.load().settings.clone()
    }

    /// Now, in Unix milliseconds.
    pub fn now(&self) -> u64 {
        self.clock.now_millis()
    }
}

/// The client for calls the broker makes to relying parties: no redirects (SSRF), short
/// timeouts.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}
