//! The job queue: at-least-once delivery of jobs to workers.
//!
//! Semantics every implementation keeps:
//! - [`Queue::admit`] records a delivery and enqueues its jobs in one durable step, or
//!   recognises the delivery as a duplicate and enqueues nothing. When it returns `Ok`, the
//!   jobs survive a crash of any process.
//! - [`Queue::take`] hands a job to one worker under a lease and counts the attempt. If the
//!   worker neither acknowledges nor reschedules the job before the lease expires (it crashed,
//!   or was killed), the job is handed out again and that lost attempt still counts.
//! - A job ends in [`Queue::ack`] (done) or [`Queue::dead_letter`] (failed for good). Until
//!   then [`Queue::retry_later`] puts it back with a delay, and [`Queue::release`] gives it
//!   back at once without counting the attempt (graceful shutdown).
//! - Dead-lettered jobs are kept per instance, can be listed, replayed or discarded.

pub mod backoff;
pub mod failed;
pub mod redis;
pub mod sqlite;

use crate::event::Event;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A job to enqueue: run one app feature for one event of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    pub instance: String,
    pub app: String,
    pub feature: String,
    /// The configured item the feature runs for, such as a relay rule's name.
    pub target: Option<String>,
    /// Revision of the instance's `CONFIG` that routed this job.
    pub config_rev: String,
    pub event: Event,
}

/// A job as the queue hands it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    #[serde(flatten)]
    pub spec: NewJob,
    /// Attempts started so far, including the current one; 1 on the first take.
    pub attempt: u32,
    pub max_attempts: u32,
}

/// A job taken by one worker until `expires_at_ms`.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job: Job,
    /// Proves that this worker still holds the lease; a worker whose lease expired and was
    /// handed to another cannot acknowledge or reschedule the job.
    pub token: String,
    pub expires_at_ms: i64,
}

/// Identity of a delivery for duplicate detection.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub instance: String,
    /// `X-Discourse-Event-Id`; a redelivery from Discourse's admin page repeats it.
    pub event_id: Option<String>,
    /// Event name and body hash; Discourse's automatic retries repeat it with a new event id.
    pub content_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The delivery is new and its jobs are stored.
    Accepted { jobs: usize },
    /// The delivery was accepted before; nothing was enqueued.
    Duplicate,
}

/// A job that exhausted its attempts or hit a permanent error the operator may want to retry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedJob {
    pub job: Job,
    pub reason: String,
    pub failed_at_ms: i64,
}

/// Accepted deliveries of one instance within one hour (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HourlyCount {
    /// Start of the hour, in Unix milliseconds.
    pub hour_start_ms: i64,
    pub count: u64,
}

/// How long the queue keeps hourly delivery counts.
pub const DELIVERY_COUNT_RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);

/// Length of one delivery count bucket, in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// Job counts, for one instance or all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Ready to run now.
    pub ready: u64,
    /// Waiting for a retry delay to pass.
    pub delayed: u64,
    /// Taken by a worker.
    pub leased: u64,
    /// Dead-lettered.
    pub failed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("the lease on job {0} expired and the job was handed to another worker")]
    LeaseLost(String),
    #[error("no failed job {job_id:?} for instance {instance:?}")]
    FailedJobNotFound { instance: String, job_id: String },
    #[error("stored job is invalid: {0}")]
    Corrupt(String),
}

pub type QueueResult<T> = Result<T, QueueError>;

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Records `delivery` and enqueues `jobs` atomically, unless the same instance accepted a
    /// delivery with the same event id (within the event id retention) or the same content key
    /// (within the duplicate window). In that case it enqueues nothing and returns `Duplicate`.
    async fn admit(&self, delivery: &Delivery, jobs: Vec<NewJob>) -> QueueResult<Admission>;

    /// Takes the next due job under a lease, or `None` when none is due.
    async fn take(&self) -> QueueResult<Option<Lease>>;

    /// Waits until a job may be due, at most `max`. Spurious wake-ups are allowed.
    async fn wait_for_work(&self, max: Duration);

    /// Removes a finished job.
    async fn ack(&self, lease: &Lease) -> QueueResult<()>;

    /// Puts the job back to run again after `delay`.
    async fn retry_later(&self, lease: &Lease, delay: Duration, error: &str) -> QueueResult<()>;

    /// Gives the job back to run at once, without counting the attempt.
    async fn release(&self, lease: &Lease) -> QueueResult<()>;

    /// Moves the job to the instance's failed jobs.
    async fn dead_letter(&self, lease: &Lease, reason: &str) -> QueueResult<()>;

    /// Lists an instance's failed jobs, oldest first.
    async fn failed_jobs(&self, instance: &str, limit: usize) -> QueueResult<Vec<FailedJob>>;

    /// Enqueues a failed job again with a fresh attempt count.
    async fn replay(&self, instance: &str, job_id: &str) -> QueueResult<()>;

    /// Deletes a failed job for good.
    async fn discard(&self, instance: &str, job_id: &str) -> QueueResult<()>;

    /// Counts jobs by state, for one instance or, with `None`, for all.
    async fn stats(&self, instance: Option<&str>) -> QueueResult<QueueStats>;

    /// Returns one failed job of an instance, or `None` when it has no such failed job.
    async fn failed_job(&self, instance: &str, job_id: &str) -> QueueResult<Option<FailedJob>>;

    /// Returns an instance's accepted deliveries per hour, oldest first, for the hours that
    /// start at or after `since_ms` and had any. [`Queue::admit`] counts every delivery it
    /// accepts, in the same atomic step: webhook deliveries, form submissions, and the one
    /// admission that starts or resumes a backfill. Duplicates are not counted. Counts older
    /// than [`DELIVERY_COUNT_RETENTION`] may be gone.
    async fn delivery_counts(&self, instance: &str, since_ms: i64)
    -> QueueResult<Vec<HourlyCount>>;
}

/// Returns the start of the hour that contains `at_ms`, in Unix milliseconds.
pub fn hour_start_ms(at_ms: i64) -> i64 {
    at_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// Lease and retry limits every queue implementation takes.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub lease: Duration,
    pub max_attempts: u32,
    pub duplicate_window: Duration,
    pub event_id_retention: Duration,
}
