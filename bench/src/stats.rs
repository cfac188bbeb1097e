//! Latencies and errors of a scenario, shared by the HTTP client scenarios (`load`) and
//! the raw-socket one (`raw_get`), which import it and not each other.

use std::time::Instant;

/// Error bodies kept per task (the report prints the first few of a scenario).
const SAMPLES_PER_TASK: usize = 2;

/// Latencies and errors of one scenario.
#[derive(Default)]
pub struct Stats {
    /// Latency of each successful request (or flow), in microseconds.
    pub lat_us: Vec<u32>,
    /// Failed requests (non-2xx where 2xx was expected, unexpected status, transport error).
    pub errors: u64,
    /// First error descriptions.
    pub samples: Vec<String>,
}

impl Stats {
    pub(crate) fn ok(&mut self, started: Instant) {
        let us = started.elapsed().as_micros();
        self.lat_us.push(u32::try_from(us).unwrap_or(u32::MAX));
    }

    pub(crate) fn err(&mut self, what: String) {
        self.errors += 1;
        if self.samples.len() < SAMPLES_PER_TASK {
            self.samples.push(what);
        }
    }

    pub(crate) fn merge(&mut self, other: Stats) {
        self.lat_us.extend(other.lat_us);
        self.errors += other.errors;
        self.samples.extend(other.samples);
    }

    /// The `p`-th percentile in milliseconds (sorts the latencies).
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return 0.0;
        }
        self.lat_us.sort_unstable();
        let rank = ((p / 100.0) * (self.lat_us.len() - 1) as f64).round() as usize;
        f64::from(self.lat_us[rank.min(self.lat_us.len() - 1)]) / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut s = Stats {
            lat_us: (1..=100).rev().map(|ms| ms * 1000).collect(),
            ..Stats::default()
        };
        assert_eq!(s.percentile_ms(50.0), 51.0);
        assert_eq!(s.percentile_ms(99.0), 99.0);
        assert_eq!(s.percentile_ms(100.0), 100.0);
    }
}
