//! Log entries: one document per job attempt, ordered by time.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use time::OffsetDateTime;

/// Result of one attempt of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// Failed transiently; another attempt is scheduled.
    Retrying,
    /// Failed in a way that another attempt cannot fix; not retried.
    FailedPermanently,
    /// Failed on the last allowed attempt; the job is now a failed job that can be replayed.
    FailedAfterRetries,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Succeeded,
        Outcome::Retrying,
        Outcome::FailedPermanently,
        Outcome::FailedAfterRetries,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Retrying => "retrying",
            Outcome::FailedPermanently => "failed_permanently",
            Outcome::FailedAfterRetries => "failed_after_retries",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == value)
            .ok_or_else(|| {
                let names: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
                format!(
                    "unknown outcome {value:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// One attempt of one job, as written to the instance's database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// UUIDv7, so that ids sort by creation time; also the paging cursor.
    pub id: String,
    #[serde(with = "timestamp")]
    pub at: OffsetDateTime,
    pub job_id: String,
    /// `X-Discourse-Event-Id` of the delivery, when it had one.
    pub event_id: Option<String>,
    pub event: String,
    pub app: String,
    pub feature: String,
    /// The configured item the feature ran for, such as a relay rule's name.
    pub target: Option<String>,
    pub attempt: u32,
    pub outcome: Outcome,
    /// HTTP status of the third party's response, when there was one.
    pub status: Option<u16>,
    /// The start of the third party's response body.
    pub response: Option<String>,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// Set when the attempt made progress and the job goes on (a backfill's page): such a
    /// success is not the job's final outcome.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continued: bool,
}

/// Filters for reading log entries. Every filter that is set must match.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub app: Option<String>,
    pub feature: Option<String>,
    pub outcome: Option<Outcome>,
    pub event: Option<String>,
    /// Selects the attempts of one job.
    pub job_id: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Returns entries older than this id, newest first (the next page).
    pub before: Option<String>,
    /// Returns entries newer than this id, oldest first (for following new entries).
    pub after: Option<String>,
    pub limit: usize,
}

/// One page of log entries and the cursor for the next, older page.
#[derive(Debug, Clone, Default)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    pub next_before: Option<String>,
}

impl LogPage {
    /// Builds a page from up to `limit + 1` entries in query order. An entry beyond `limit`
    /// shows that an older page exists, and the last entry shown becomes its cursor. Pages
    /// read oldest first (following new entries) have no such cursor.
    pub fn cut(mut entries: Vec<LogEntry>, limit: usize, ascending: bool) -> Self {
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next_before = entries
            .last()
            .filter(|_| more && !ascending)
            .map(|entry| entry.id.clone());
        Self {
            entries,
            next_before,
        }
    }
}

/// Log entries of one app with one outcome within one hour, for the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogBucket {
    /// Start of the hour (UTC), in Unix seconds.
    pub hour_start: i64,
    pub app: String,
    pub outcome: Outcome,
    /// Whether the entries are successes that were not the job's final outcome (see
    /// [`LogEntry::continued`]).
    pub continued: bool,
    pub count: u64,
    /// Sum of the entries' durations, in milliseconds.
    pub total_duration_ms: u64,
    /// Maximum duration among the entries, in milliseconds.
    pub max_duration_ms: u64,
}

/// Sorts log entries into [`LogBucket`]s, for stores that cannot group entries themselves.
#[derive(Debug, Default)]
pub struct LogBuckets {
    buckets: std::collections::BTreeMap<(i64, String, &'static str, bool), LogBucket>,
}

impl LogBuckets {
    pub fn add(&mut self, entry: &LogEntry) {
        let hour_start = entry.at.unix_timestamp().div_euclid(3600) * 3600;
        let key = (
            hour_start,
            entry.app.clone(),
            entry.outcome.as_str(),
            entry.continued,
        );
        let bucket = self.buckets.entry(key).or_insert_with(|| LogBucket {
            hour_start,
            app: entry.app.clone(),
            outcome: entry.outcome,
            continued: entry.continued,
            count: 0,
            total_duration_ms: 0,
            max_duration_ms: 0,
        });
        bucket.count += 1;
        bucket.total_duration_ms = bucket.total_duration_ms.saturating_add(entry.duration_ms);
        bucket.max_duration_ms = bucket.max_duration_ms.max(entry.duration_ms);
    }

    /// Returns the buckets by hour, app, outcome and `continued`.
    pub fn into_vec(self) -> Vec<LogBucket> {
        self.buckets.into_values().collect()
    }
}

/// Returns a new log entry id for an entry written at `at`: a UUIDv7 of that millisecond,
/// so that ids sort by time and a time bounds a range of ids. A 12-bit counter in the field
/// after the timestamp (`rand_a`) keeps up to 4096 entries that one process writes within a
/// millisecond in order.
pub fn log_id(at: OffsetDateTime) -> String {
    static SEQUENCE: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let millis = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let sequence = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0x0fff;
    let mut bits: [u8; 10] = rand::random();
    // The builder keeps the low four bits of the first byte and all of the second as rand_a.
    bits[..2].copy_from_slice(&sequence.to_be_bytes());
    uuid::Builder::from_unix_timestamp_millis(millis, &bits)
        .into_uuid()
        .to_string()
}

/// Returns the range of ids, `[lower, upper)`, that entries written within `since..until`
/// can have, because an entry's id is [`log_id`] of its time. Stores add it to time filters
/// so that their id index narrows the search; the time filter itself still decides.
pub fn id_range_of_times(
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
) -> (Option<String>, Option<String>) {
    let lower = since.map(first_log_id_at);
    // An entry of the millisecond `until` falls into it, so the bound is the next one.
    let upper = until.map(|until| first_log_id_at(until + time::Duration::milliseconds(1)));
    (lower, upper)
}

/// Returns the smallest log entry id of the millisecond `at`: every entry written before
/// `at` has a smaller id.
pub fn first_log_id_at(at: OffsetDateTime) -> String {
    let millis = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10])
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn ids_of_one_millisecond_keep_their_order() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid time");
        let ids: Vec<String> = (0..5000).map(|_| log_id(at)).collect();
        let first = first_log_id_at(at);
        assert!(ids.iter().all(|id| *id >= first));
        let in_order = ids.windows(2).filter(|pair| pair[0] < pair[1]).count();
        // One pair at most crosses the counter's wrap at 4096.
        assert!(in_order >= ids.len() - 2, "{in_order} ordered pairs");
        let later = first_log_id_at(at + time::Duration::milliseconds(1));
        assert!(ids.iter().all(|id| *id < later));
    }
}

pub mod timestamp {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;

    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

    /// Formats a time in UTC with millisecond precision.
    pub fn format(at: OffsetDateTime) -> String {
        let utc = at.to_offset(time::UtcOffset::UTC);
        utc.format(FORMAT).unwrap_or_default()
    }

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
    }
}
