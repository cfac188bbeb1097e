//! What a connector remembers of its source failing to answer (down, slow, overloaded):
//! for a few minutes after the last failure the choice page tells citizens and `health()`
//! tells operators, without probing the source.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds a failure is remembered.
pub const REMEMBERED_FOR: u64 = 300;

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The last failure of one source; clones share it.
#[derive(Clone, Default)]
pub struct RecentOutage(Arc<Mutex<Option<(u64, String)>>>);

impl RecentOutage {
    /// Records a failure now (`reason` for operators: no personal data).
    pub fn note(&self, reason: &str) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((unix_now(), reason.to_string()));
    }

    /// The reason of the last failure, if it is less than [`REMEMBERED_FOR`] old.
    pub fn reason(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|(at, _)| unix_now().saturating_sub(*at) < REMEMBERED_FOR)
            .map(|(_, reason)| reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_remembered_by_every_clone_until_it_is_old() {
        let outage = RecentOutage::default();
        let clone = outage.clone();
        assert_eq!(clone.reason(), None);
        outage.note("timeout");
        assert_eq!(clone.reason().as_deref(), Some("timeout"));
        if let Ok(mut last) = outage.0.lock() {
            *last = Some((unix_now() - REMEMBERED_FOR, "old".into()));
        }
        assert_eq!(clone.reason(), None, "forgotten after {REMEMBERED_FOR} s");
    }
}
