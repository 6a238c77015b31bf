//! Warnings about rejected deliveries, at most one per instance and kind a minute.
//!
//! A rejected delivery usually means a misconfigured webhook (a wrong secret, a wrong URL),
//! which the operator should see. Anyone can send rejected requests, though, so the log
//! gets one line per instance and kind of rejection a minute, with the number of rejections
//! it stands for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(60);

/// Largest number of (instance, kind) pairs remembered; beyond it the oldest are dropped,
/// so requests for random instance names cannot grow memory without bound.
const MAX_KEYS: usize = 10_000;

/// Per (instance, kind of rejection): when the last warning was logged and how many
/// rejections came since.
type Seen = HashMap<(String, &'static str), (Instant, u64)>;

#[derive(Default)]
pub struct RejectionLog {
    seen: Mutex<Seen>,
}

impl RejectionLog {
    /// Counts a rejection and returns how many it stands for when a warning is due now.
    pub fn record(&self, instance: &str, kind: &'static str) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_KEYS && !seen.contains_key(&(instance.to_string(), kind)) {
            let oldest = seen
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                seen.remove(&oldest);
            }
        }
        let entry = seen
            .entry((instance.to_string(), kind))
            .or_insert((now - INTERVAL, 0));
        entry.1 += 1;
        if now.duration_since(entry.0) < INTERVAL {
            return None;
        }
        let count = entry.1;
        *entry = (now, 0);
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_per_interval_per_key() {
        let log = RejectionLog::default();
        assert_eq!(log.record("forum", "unauthorized"), Some(1));
        assert_eq!(log.record("forum", "unauthorized"), None);
        assert_eq!(log.record("forum", "unauthorized"), None);
        assert_eq!(log.record("forum", "bad request"), Some(1));
        assert_eq!(log.record("other", "unauthorized"), Some(1));
    }
}
