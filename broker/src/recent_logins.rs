//! The last minutes of logins on this instance, per identity source and outcome, for the
//! console's overview charts (Prometheus has the same counts as `broker_logins_total`, for
//! every instance and for as long as it keeps them).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Minutes kept.
pub const MINUTES: usize = 15;

/// One minute of one source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    /// Logins that succeeded.
    pub succeeded: u32,
    /// Logins that failed (wrong answers, too many attempts, errors).
    pub failed: u32,
    /// Logins the source could not serve (unreachable, timing out).
    pub unavailable: u32,
}

static RECENT: Mutex<BTreeMap<String, VecDeque<Minute>>> = Mutex::new(BTreeMap::new());

/// Counts one login's outcome (`success`, `unavailable`, anything else is a failure).
pub fn record(connector: &str, outcome: &str, now_millis: u64) {
    let minute = now_millis / 60_000;
    let Ok(mut all) = RECENT.lock() else {
        return;
    };
    let list = all.entry(connector.to_string()).or_default();
    if list.back().is_none_or(|m| m.minute != minute) {
        list.push_back(Minute {
            minute,
            ..Minute::default()
        });
    }
    while list
        .front()
        .is_some_and(|m| m.minute + MINUTES as u64 <= minute)
    {
        list.pop_front();
    }
    if let Some(m) = list.back_mut() {
        match outcome {
            "success" => m.succeeded += 1,
            "unavailable" => m.unavailable += 1,
            _ => m.failed += 1,
        }
    }
}

/// The last [`MINUTES`] minutes of `connector`, oldest first, one entry per minute (zeros
/// where nothing happened).
pub fn of(connector: &str, now_millis: u64) -> Vec<Minute> {
    let now = now_millis / 60_000;
    let first = (now + 1).saturating_sub(MINUTES as u64);
    let seen: Vec<Minute> = RECENT
        .lock()
        .ok()
        .and_then(|all| all.get(connector).map(|l| l.iter().copied().collect()))
        .unwrap_or_default();
    (first..=now)
        .map(|minute| {
            seen.iter()
                .find(|m| m.minute == minute)
                .copied()
                .unwrap_or(Minute {
                    minute,
                    ..Minute::default()
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_counted_and_forgotten_after_the_window() {
        // A minute's start.
        let t0 = 1_800_000_040_000 - 1_800_000_040_000 % 60_000;
        record("test-recent", "success", t0);
        record("test-recent", "success", t0 + 1_000);
        record("test-recent", "failed", t0 + 2_000);
        record("test-recent", "unavailable", t0 + 61_000);
        let w = of("test-recent", t0 + 61_000);
        assert_eq!(w.len(), MINUTES);
        let last_two = &w[MINUTES - 2..];
        assert_eq!((last_two[0].succeeded, last_two[0].failed), (2, 1));
        assert_eq!(last_two[1].unavailable, 1);
        // Fifteen minutes on, the first minute is gone.
        record("test-recent", "success", t0 + 15 * 60_000);
        let w = of("test-recent", t0 + 15 * 60_000);
        assert_eq!(w.iter().map(|m| m.succeeded).sum::<u32>(), 1);
        assert_eq!(w.iter().map(|m| m.unavailable).sum::<u32>(), 1);
    }
}
