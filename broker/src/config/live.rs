//! The configuration in force and what is derived from it, swapped whole on reload
//! (requests in flight keep the one they started with).

use std::sync::Arc;

use super::Settings;

/// A validated configuration and the documents serialised from it once.
pub struct Live {
    /// The validated configuration.
    pub settings: Arc<Settings>,
    /// The discovery document, serialised once per configuration.
    pub discovery: bytes::Bytes,
}

/// The configuration in force, swapped whole on reload or on a new version.
pub type LiveConfig = Arc<arc_swap::ArcSwap<Live>>;
