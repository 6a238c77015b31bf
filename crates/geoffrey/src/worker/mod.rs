//! Workers: take jobs from the queue, run the app feature, record the outcome.
//!
//! Each worker process runs `concurrency` loops, each running one job at a time. For every
//! attempt a log entry goes to the instance's database before the job is acknowledged or
//! rescheduled, so an outcome is never acknowledged without a record of it.
//!
//! Failures decide what happens next:
//! - transient (timeouts, 429, 5xx, connection errors): retried with exponential backoff and
//!   jitter until `max_attempts`, then dead-lettered as failed after retries;
//! - permanent (other 4xx, invalid input): dead-lettered at once, so the operator can fix the
//!   cause and replay the job.
//!
//! Shutdown: when `shutdown` is cancelled the loops stop taking jobs. Running jobs get
//! `shutdown_grace` to finish; those still running after that are stopped and released back
//! to the queue without counting the attempt.

use crate::apps::{Attempt, AttemptError, FeatureContext};
use crate::instance::InstanceError;
use crate::queue::backoff::Backoff;
use crate::queue::{Lease, QueueError};
use crate::services::Services;
use crate::store::{LogEntry, Outcome};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Delays between attempts to write a log entry before the job is left for a later retry.
const LOG_WRITE_DELAYS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// Maximum pause after a queue error before trying again.
const MAX_QUEUE_ERROR_PAUSE: Duration = Duration::from_secs(30);

pub struct Worker {
    services: Arc<Services>,
    http: reqwest::Client,
    backoff: Backoff,
}

enum Decision {
    Ack,
    Retry(Duration),
    DeadLetter,
}

impl Worker {
    pub fn new(services: Arc<Services>) -> Result<Arc<Self>, reqwest::Error> {
        let settings = &services.settings.worker;
        let http = reqwest::Client::builder()
            .user_agent(concat!("Geoffrey/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.job_timeout)
            .build()?;
        let backoff = Backoff {
            base: settings.backoff_base,
            max: settings.backoff_max,
        };
        Ok(Arc::new(Self {
            services,
            http,
            backoff,
        }))
    }

    /// Runs the worker loops until `shutdown` is cancelled and running jobs are finished or
    /// released.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let settings = &self.services.settings.worker;
        let hard_stop = CancellationToken::new();
        let mut loops = tokio::task::JoinSet::new();
        for index in 0..settings.concurrency {
            let worker = self.clone();
            let (shutdown, hard_stop) = (shutdown.clone(), hard_stop.clone());
            loops.spawn(async move { worker.take_loop(index, shutdown, hard_stop).await });
        }
        tracing::info!(concurrency = settings.concurrency, "workers started");

        shutdown.cancelled().await;
        tracing::info!(grace = ?settings.shutdown_grace, "workers stopping");
        let grace = settings.shutdown_grace;
        let all_done = async { while loops.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            tracing::warn!("jobs still running after the shutdown grace period; releasing them");
            hard_stop.cancel();
            while loops.join_next().await.is_some() {}
        }
        tracing::info!("workers stopped");
    }

    async fn take_loop(
        &self,
        index: usize,
        shutdown: CancellationToken,
        hard_stop: CancellationToken,
    ) {
        let queue = &self.services.queue;
        let poll = self.services.settings.worker.poll_interval;
        let mut error_pause = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            match queue.take().await {
                Ok(Some(lease)) => {
                    error_pause = Duration::from_millis(100);
                    self.run_job(lease, &hard_stop).await;
                }
                Ok(None) => {
                    tokio::select! {
                        () = queue.wait_for_work(poll) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(worker = index, error = %err, pause = ?error_pause, "taking a job failed");
                    tokio::select! {
                        () = tokio::time::sleep(error_pause) => {}
                        () = shutdown.cancelled() => {}
                    }
                    error_pause = (error_pause * 2).min(MAX_QUEUE_ERROR_PAUSE);
                }
            }
        }
    }

    async fn run_job(&self, lease: Lease, hard_stop: &CancellationToken) {
        let job = &lease.job;
        let span = tracing::info_span!(
            "job",
            job_id = %job.id,
            instance = %job.spec.instance,
            event = %job.spec.event.name,
            event_id = job.spec.event.id.as_deref().unwrap_or(""),
            feature = %format!("{}.{}", job.spec.app, job.spec.feature),
            attempt = job.attempt,
        );
        async {
            let started = Instant::now();
            let attempt = tokio::select! {
                attempt = self.attempt(&lease) => attempt,
                () = hard_stop.cancelled() => {
                    if let Err(err) = self.services.queue.release(&lease).await {
                        tracing::warn!(error = %err, "releasing a stopped job failed; it returns when its lease expires");
                    }
                    return;
                }
            };
            self.finish(&lease, attempt, started.elapsed()).await;
        }
        .instrument(span)
        .await
    }

    /// Runs the feature once, within the job timeout.
    async fn attempt(&self, lease: &Lease) -> Attempt {
        let job = &lease.job;
        let permanent = |message: String| Attempt {
            error: Some(AttemptError::Permanent(message)),
            ..Attempt::default()
        };
        if job.attempt > job.max_attempts {
            return Attempt {
                error: Some(AttemptError::Transient(
                    "the worker running the last attempt stopped before it finished".into(),
                )),
                ..Attempt::default()
            };
        }
        let config = match self.services.configs.get(&job.spec.instance).await {
            Ok(config) => config,
            Err(InstanceError::NotFound(name)) => {
                return permanent(format!("instance {name:?} no longer exists"));
            }
            Err(err) => {
                return Attempt {
                    error: Some(AttemptError::Transient(format!(
                        "reading CONFIG failed: {err}"
                    ))),
                    ..Attempt::default()
                };
            }
        };
        let Some(app) = self.services.apps.get(&job.spec.app) else {
            return permanent(format!("app {:?} is not part of this build", job.spec.app));
        };
        let Some(section) = config.config.apps.get(&job.spec.app) else {
            return permanent(format!("app {:?} is no longer configured", job.spec.app));
        };

        let context = FeatureContext {
            store: self.services.store.as_ref(),
            limiter: self.services.limiter.as_ref(),
            job,
            config: &config.config,
            section,
            http: &self.http,
        };
        let timeout = self.services.settings.worker.job_timeout;
        match tokio::time::timeout(timeout, app.run(&job.spec.feature, context)).await {
            Ok(attempt) => attempt,
            Err(_) => Attempt {
                error: Some(AttemptError::Transient(format!(
                    "timed out after {}",
                    humantime::format_duration(timeout)
                ))),
                ..Attempt::default()
            },
        }
    }

    /// Records the attempt, then acknowledges, reschedules or dead-letters the job.
    async fn finish(&self, lease: &Lease, attempt: Attempt, duration: Duration) {
        let job = &lease.job;
        let (outcome, decision) = match &attempt.error {
            None => (Outcome::Succeeded, Decision::Ack),
            Some(AttemptError::Permanent(_)) => (Outcome::FailedPermanently, Decision::DeadLetter),
            Some(AttemptError::Transient(_)) if job.attempt >= job.max_attempts => {
                (Outcome::FailedAfterRetries, Decision::DeadLetter)
            }
            Some(AttemptError::Transient(_)) => {
                let delay = self.backoff.delay(job.attempt, &mut rand::rng());
                (Outcome::Retrying, Decision::Retry(delay))
            }
        };
        let error = attempt.error.as_ref().map(|error| match error {
            AttemptError::Transient(message) | AttemptError::Permanent(message) => message.clone(),
        });
        let entry = LogEntry {
            id: uuid::Uuid::now_v7().to_string(),
            at: self.services.clock.now(),
            job_id: job.id.clone(),
            event_id: job.spec.event.id.clone(),
            event: job.spec.event.name.clone(),
            app: job.spec.app.clone(),
            feature: job.spec.feature.clone(),
            target: job.spec.target.clone(),
            attempt: job.attempt,
            outcome,
            status: attempt.status,
            response: attempt.response,
            error: error.clone(),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        };
        if !self.write_log(&job.spec.instance, &entry).await {
            return;
        }

        let queue = &self.services.queue;
        let result = match decision {
            Decision::Ack => queue.ack(lease).await,
            Decision::Retry(delay) => {
                tracing::warn!(error = error.as_deref().unwrap_or(""), retry_in = ?delay, "attempt failed; retry scheduled");
                queue
                    .retry_later(lease, delay, error.as_deref().unwrap_or(""))
                    .await
            }
            Decision::DeadLetter => {
                tracing::warn!(error = error.as_deref().unwrap_or(""), outcome = %outcome, "job failed");
                queue
                    .dead_letter(lease, error.as_deref().unwrap_or(""))
                    .await
            }
        };
        match result {
            Ok(()) => tracing::debug!(outcome = %outcome, "job attempt recorded"),
            Err(QueueError::LeaseLost(_)) => {
                tracing::warn!(
                    "the lease expired before the job finished; another worker runs it again"
                );
            }
            Err(err) => {
                tracing::error!(error = %err, "updating the job failed; it runs again when its lease expires");
            }
        }
    }

    /// Writes a log entry, retrying briefly. Returns false if it could not be written; the job
    /// then stays leased and runs again when the lease expires, because an outcome must not
    /// be acknowledged without its record.
    async fn write_log(&self, instance: &str, entry: &LogEntry) -> bool {
        for delay in LOG_WRITE_DELAYS {
            match self
                .services
                .store
                .append_logs(instance, std::slice::from_ref(entry))
                .await
            {
                Ok(()) => return true,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?delay, "writing the log entry failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        tracing::error!("writing the log entry failed repeatedly; leaving the job to run again");
        false
    }
}
