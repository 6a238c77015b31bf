//! The soak's deliveries compared with what happened to them: the posts at the receiver and
//! the `succeeded` log entries of each delivery.
//!
//! Every delivery with a 2xx response must have exactly one post at the receiver and exactly
//! one `succeeded` log entry. Deliveries with a 503 response or none at all are counted apart,
//! because a sender delivers them again. For those, Geoffrey only promises that it did not
//! acknowledge them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Ids listed in the report for each kind of mismatch.
const LISTED_IDS: usize = 10;

/// Geoffrey's response to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// 2xx with `"status": "accepted"`.
    Accepted,
    /// 2xx with `"status": "duplicate"`: the event id was accepted before.
    Duplicate,
    /// 503: the store or queue did not respond, and the sender should deliver again.
    Unavailable,
    /// Any other status.
    Rejected(u16),
    /// No complete response within the request timeout, or a transport error.
    Missing,
}

impl Response {
    fn is_success(self) -> bool {
        matches!(self, Response::Accepted | Response::Duplicate)
    }
}

/// One delivery sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// The event id, which is also the topic id the relay template posts.
    pub event_id: u64,
    /// When the request was sent, from the start of the load.
    pub at: Duration,
    pub latency: Duration,
    pub response: Response,
}

/// One log entry, as stored.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub event_id: Option<String>,
    pub outcome: String,
}

/// Deliveries with a 2xx response, by how often one kind of outcome happened for each.
#[derive(Debug, Default)]
pub struct Counts {
    pub once: u64,
    pub lost: u64,
    pub repeated: u64,
    /// The first lost event ids, in order.
    pub lost_ids: Vec<u64>,
    /// The first repeated event ids with their counts, in order.
    pub repeated_ids: Vec<(u64, u32)>,
}

impl Counts {
    fn add(&mut self, event_id: u64, count: u32) {
        match count {
            0 => {
                self.lost += 1;
                if self.lost_ids.len() < LISTED_IDS {
                    self.lost_ids.push(event_id);
                }
            }
            1 => self.once += 1,
            _ => {
                self.repeated += 1;
                if self.repeated_ids.len() < LISTED_IDS {
                    self.repeated_ids.push((event_id, count));
                }
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct Tally {
    pub sent: u64,
    pub accepted: u64,
    /// 2xx responses with `"status": "duplicate"`, although every delivery has a new event id.
    pub duplicate_responses: u64,
    pub unavailable: u64,
    /// First and last send time of a delivery with a 503 response.
    pub unavailable_between: Option<(Duration, Duration)>,
    /// Maximum latency of a 503 response.
    pub unavailable_latency_max: Duration,
    pub rejected: BTreeMap<u16, u64>,
    pub no_response: u64,
    /// Latencies of the 2xx responses, in microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// Receiver posts of each delivery with a 2xx response.
    pub posts: Counts,
    /// `succeeded` log entries of each delivery with a 2xx response.
    pub successes: Counts,
    /// Send times of the deliveries with a 2xx response that reached the receiver or the log
    /// more than once, in order.
    pub repeated_at: Vec<Duration>,
    /// Log entries by outcome, over all deliveries.
    pub outcomes: BTreeMap<String, u64>,
    /// Deliveries with a 503 response or none, whose job ran anyway.
    pub unacknowledged_with_success: u64,
    /// Receiver posts and log entries that name no delivery the soak sent.
    pub unknown: u64,
}

impl Tally {
    /// Returns the latency at `percentile` (0 to 100) of the 2xx responses, in milliseconds.
    pub fn latency_ms(&self, percentile: f64) -> Option<f64> {
        let last = self.latencies_us.len().checked_sub(1)?;
        let rank = (percentile / 100.0 * last as f64).round() as usize;
        Some(self.latencies_us[rank] as f64 / 1000.0)
    }

    /// Returns the failed checks, each as a sentence; empty when the outcomes are right.
    ///
    /// A chat webhook takes no idempotency key, so a job whose worker is killed between its
    /// post and its log entry posts again when it runs again. Up to `allowed_repeated_posts`
    /// such repeats pass; repeated log entries never do.
    pub fn failures(&self, allowed_repeated_posts: u64) -> Vec<String> {
        let mut failures = Vec::new();
        let mut fail_if = |failed: bool, message: String| {
            if failed {
                failures.push(message);
            }
        };

        fail_if(
            self.posts.lost > 0,
            format!(
                "{} deliveries answered 2xx never reached the receiver, first ids {:?}",
                self.posts.lost, self.posts.lost_ids
            ),
        );
        fail_if(
            self.posts.repeated > allowed_repeated_posts,
            format!(
                "{} deliveries answered 2xx reached the receiver more than once, more than the \
                 {allowed_repeated_posts} that killed workers can explain, first (id, posts) {:?}",
                self.posts.repeated, self.posts.repeated_ids
            ),
        );

        fail_if(
            self.successes.lost > 0,
            format!(
                "{} deliveries answered 2xx have no succeeded log entry, first ids {:?}",
                self.successes.lost, self.successes.lost_ids
            ),
        );
        fail_if(
            self.successes.repeated > 0,
            format!(
                "{} deliveries answered 2xx have more than one succeeded log entry, first (id, entries) {:?}",
                self.successes.repeated, self.successes.repeated_ids
            ),
        );

        let failed_jobs: u64 = self
            .outcomes
            .iter()
            .filter(|(outcome, _)| outcome.starts_with("failed"))
            .map(|(_, count)| count)
            .sum();
        fail_if(failed_jobs > 0, format!("{failed_jobs} jobs ended failed"));

        fail_if(
            !self.rejected.is_empty(),
            format!("unexpected statuses (status: count) {:?}", self.rejected),
        );
        fail_if(
            self.no_response > 0,
            format!("{} deliveries got no response", self.no_response),
        );
        fail_if(
            self.unknown > 0,
            format!(
                "{} posts or log entries name no delivery sent",
                self.unknown
            ),
        );
        failures
    }
}

/// Sets the responses in `sent` against the receiver's `posts` (the text of each message,
/// which the relay template makes the event id) and the store's `logs`.
pub fn count(sent: &[Sent], posts: &[String], logs: &[LogRecord]) -> Tally {
    let mut tally = Tally {
        sent: sent.len() as u64,
        ..Tally::default()
    };
    let mut responses: HashMap<u64, Response> = HashMap::with_capacity(sent.len());
    for delivery in sent {
        responses.insert(delivery.event_id, delivery.response);
        tally.add_response(delivery);
    }
    tally.latencies_us.sort_unstable();

    let mut post_counts: HashMap<u64, u32> = HashMap::new();
    for text in posts {
        match text.trim().parse::<u64>() {
            Ok(event_id) if responses.contains_key(&event_id) => {
                *post_counts.entry(event_id).or_default() += 1;
            }
            _ => tally.unknown += 1,
        }
    }
    let mut success_counts: HashMap<u64, u32> = HashMap::new();
    for record in logs {
        *tally.outcomes.entry(record.outcome.clone()).or_default() += 1;
        let event_id = record.event_id.as_deref().and_then(|id| id.parse().ok());
        match event_id {
            Some(event_id) if responses.contains_key(&event_id) => {
                if record.outcome == "succeeded" {
                    *success_counts.entry(event_id).or_default() += 1;
                }
            }
            _ => tally.unknown += 1,
        }
    }

    for delivery in sent {
        let posts = post_counts.get(&delivery.event_id).copied().unwrap_or(0);
        let successes = success_counts.get(&delivery.event_id).copied().unwrap_or(0);
        if delivery.response.is_success() {
            tally.posts.add(delivery.event_id, posts);
            tally.successes.add(delivery.event_id, successes);
            if posts > 1 || successes > 1 {
                tally.repeated_at.push(delivery.at);
            }
        } else if successes > 0 {
            tally.unacknowledged_with_success += 1;
        }
    }
    tally
}

impl Tally {
    fn add_response(&mut self, delivery: &Sent) {
        match delivery.response {
            Response::Accepted => self.accepted += 1,
            Response::Duplicate => self.duplicate_responses += 1,
            Response::Unavailable => {
                self.unavailable += 1;
                let (first, last) = self
                    .unavailable_between
                    .unwrap_or((delivery.at, delivery.at));
                self.unavailable_between = Some((first.min(delivery.at), last.max(delivery.at)));
                self.unavailable_latency_max = self.unavailable_latency_max.max(delivery.latency);
            }
            Response::Rejected(status) => *self.rejected.entry(status).or_default() += 1,
            Response::Missing => self.no_response += 1,
        }
        if delivery.response.is_success() {
            let micros = u64::try_from(delivery.latency.as_micros()).unwrap_or(u64::MAX);
            self.latencies_us.push(micros);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(event_id: u64, response: Response) -> Sent {
        Sent {
            event_id,
            at: Duration::from_secs(event_id),
            latency: Duration::from_millis(2),
            response,
        }
    }

    fn success(event_id: u64) -> LogRecord {
        LogRecord {
            event_id: Some(event_id.to_string()),
            outcome: "succeeded".into(),
        }
    }

    fn texts(ids: &[u64]) -> Vec<String> {
        ids.iter().map(u64::to_string).collect()
    }

    #[test]
    fn one_outcome_each_passes() {
        let sent = [sent(1, Response::Accepted), sent(2, Response::Accepted)];
        let tally = count(&sent, &texts(&[2, 1]), &[success(1), success(2)]);
        assert_eq!(tally.accepted, 2);
        assert_eq!(tally.posts.once, 2);
        assert_eq!(tally.successes.once, 2);
        assert!(tally.failures(0).is_empty(), "{:?}", tally.failures(0));
    }

    #[test]
    fn lost_and_repeated_are_caught() {
        let sent = [
            sent(1, Response::Accepted),
            sent(2, Response::Accepted),
            sent(3, Response::Accepted),
        ];
        let logs = [success(1), success(1), success(3)];
        let tally = count(&sent, &texts(&[1, 3, 3]), &logs);
        assert_eq!(tally.posts.lost_ids, vec![2]);
        assert_eq!(tally.posts.repeated_ids, vec![(3, 2)]);
        assert_eq!(tally.successes.lost_ids, vec![2]);
        assert_eq!(tally.successes.repeated_ids, vec![(1, 2)]);
        assert_eq!(
            tally.repeated_at,
            vec![Duration::from_secs(1), Duration::from_secs(3)]
        );
        assert_eq!(tally.failures(0).len(), 4);
    }

    #[test]
    fn unavailable_responses_are_counted_apart() {
        let sent = [
            sent(1, Response::Accepted),
            sent(2, Response::Unavailable),
            sent(3, Response::Unavailable),
            sent(4, Response::Unavailable),
        ];
        // Delivery 3 got a 503 response although its job was queued: allowed, and counted.
        let tally = count(&sent, &texts(&[1, 3]), &[success(1), success(3)]);
        assert_eq!(tally.unavailable, 3);
        assert_eq!(
            tally.unavailable_between,
            Some((Duration::from_secs(2), Duration::from_secs(4)))
        );
        assert_eq!(tally.unacknowledged_with_success, 1);
        assert!(tally.failures(0).is_empty(), "{:?}", tally.failures(0));
    }

    #[test]
    fn retries_before_success_are_not_repeats() {
        let sent = [sent(1, Response::Accepted)];
        let retrying = LogRecord {
            event_id: Some("1".into()),
            outcome: "retrying".into(),
        };
        let tally = count(&sent, &texts(&[1, 1]), &[retrying, success(1)]);
        assert_eq!(tally.successes.once, 1);
        assert_eq!(tally.outcomes.get("retrying"), Some(&1));
        // The receiver did get two posts, which the check reports.
        assert_eq!(tally.posts.repeated, 1);
    }

    #[test]
    fn failed_jobs_and_odd_statuses_fail() {
        let sent = [
            sent(1, Response::Accepted),
            sent(2, Response::Rejected(401)),
            sent(3, Response::Missing),
        ];
        let failed = LogRecord {
            event_id: Some("1".into()),
            outcome: "failed_permanently".into(),
        };
        let tally = count(&sent, &texts(&[1]), &[failed, success(1)]);
        let failures = tally.failures(0);
        assert!(
            failures.iter().any(|f| f.contains("jobs ended failed")),
            "{failures:?}"
        );
        assert!(failures.iter().any(|f| f.contains("401")), "{failures:?}");
        assert!(
            failures.iter().any(|f| f.contains("no response")),
            "{failures:?}"
        );
    }

    #[test]
    fn unknown_posts_fail() {
        let sent = [sent(1, Response::Accepted)];
        let tally = count(&sent, &texts(&[1, 99]), &[success(1)]);
        assert_eq!(tally.unknown, 1);
        assert_eq!(tally.failures(0).len(), 1);
    }

    #[test]
    fn latency_percentiles() {
        let sent: Vec<Sent> = (1..=100)
            .map(|id| Sent {
                latency: Duration::from_millis(id),
                ..sent(id, Response::Accepted)
            })
            .collect();
        let tally = count(&sent, &[], &[]);
        assert_eq!(tally.latency_ms(0.0), Some(1.0));
        assert_eq!(tally.latency_ms(50.0), Some(51.0));
        assert_eq!(tally.latency_ms(100.0), Some(100.0));
    }
}
