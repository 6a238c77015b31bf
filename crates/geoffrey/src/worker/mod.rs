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

use crate::app_status;
use crate::apps::{Attempt, AttemptError, FeatureContext};
use crate::instance::InstanceError;
use crate::outbound::OutboundClient;
use crate::queue::backoff::Backoff;
use crate::queue::{Lease, QueueError};
use crate::services::Services;
use crate::store::{LogEntry, Outcome};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// First pause after a failed log write or queue update; later pauses double up to
/// [`MAX_STORE_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Maximum pause between attempts to reach the store.
const MAX_STORE_PAUSE: Duration = Duration::from_secs(5);

/// Time before a lease expires when a worker stops trying to record the job's outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// Maximum pause after a queue error before trying again.
const MAX_QUEUE_ERROR_PAUSE: Duration = Duration::from_secs(30);

pub struct Worker {
    services: Arc<Services>,
    http: OutboundClient,
    backoff: Backoff,
    /// Set while log entries cannot be written. The loops then take no new jobs, because
    /// each would call its third party and then fail to record the outcome, only to run
    /// again later.
    store_down: AtomicBool,
    /// Instances and apps this process marked as misconfigured, so that a later success
    /// can clear the mark without reading it first.
    misconfigured: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// Instances and apps whose stored mark this process has read once since it started.
    checked: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

enum Decision {
    Ack,
    /// Back to the queue to continue; see [`Attempt::continue_later`].
    Continue,
    Retry(Duration),
    DeadLetter,
}

impl Worker {
    pub fn new(services: Arc<Services>) -> Result<Arc<Self>, reqwest::Error> {
        let settings = &services.settings.worker;
        let http = OutboundClient::new(&services.settings.outbound, settings.job_timeout)?;
        let backoff = Backoff {
            base: settings.backoff_base,
            max: settings.backoff_max,
        };
        Ok(Arc::new(Self {
            services,
            http,
            backoff,
            store_down: AtomicBool::new(false),
            misconfigured: std::sync::Mutex::default(),
            checked: std::sync::Mutex::default(),
        }))
    }

    /// Returns the attempt limit. The workers' own setting decides, not the one of the API
    /// server that queued the job, so that operators change it where jobs run.
    fn max_attempts(&self) -> u32 {
        self.services.settings.worker.max_attempts
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
            if self.store_down.load(Ordering::Relaxed) {
                self.wait_for_store(&shutdown).await;
                continue;
            }
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
            if let Some((decision, error)) = self.recorded_outcome(job).await {
                tracing::info!("the job's outcome was recorded by an earlier attempt; it is not run again");
                self.update_queue(&lease, &decision, &error).await;
                return;
            }
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

    /// Returns the queue decision for a job handed out again whose final outcome an earlier
    /// attempt already recorded: its worker stopped, or lost the queue, between writing the
    /// log entry and updating the job. Such a job must not run twice. A job on its first
    /// attempt, or a failed look-up, runs as usual.
    async fn recorded_outcome(&self, job: &crate::queue::Job) -> Option<(Decision, String)> {
        if job.attempt <= 1 {
            return None;
        }
        let store = &self.services.store;
        let entry = match store.final_log_of_job(&job.spec.instance, &job.id).await {
            Ok(entry) => entry?,
            Err(err) => {
                tracing::warn!(error = %err, "looking up earlier outcomes of the job failed; running it");
                return None;
            }
        };
        let error = entry.error.unwrap_or_default();
        match entry.outcome {
            Outcome::Succeeded => Some((Decision::Ack, error)),
            Outcome::Retrying => None,
            Outcome::FailedPermanently | Outcome::FailedAfterRetries => {
                Some((Decision::DeadLetter, error))
            }
        }
    }

    /// Runs the feature once, within the job timeout.
    async fn attempt(&self, lease: &Lease) -> Attempt {
        let job = &lease.job;
        let permanent = |message: String| Attempt {
            error: Some(AttemptError::Permanent(message)),
            ..Attempt::default()
        };
        if job.attempt > self.max_attempts() {
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
            job_timeout: self.services.settings.worker.job_timeout,
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
            None if attempt.continue_later => (Outcome::Succeeded, Decision::Continue),
            None => (Outcome::Succeeded, Decision::Ack),
            Some(AttemptError::Permanent(_) | AttemptError::Configuration(_)) => {
                (Outcome::FailedPermanently, Decision::DeadLetter)
            }
            Some(AttemptError::Transient(_)) if job.attempt >= self.max_attempts() => {
                (Outcome::FailedAfterRetries, Decision::DeadLetter)
            }
            Some(AttemptError::Transient(_)) => {
                let delay = self.backoff.delay(job.attempt, &mut rand::rng());
                let delay = delay.max(attempt.retry_after.unwrap_or_default());
                (Outcome::Retrying, Decision::Retry(delay))
            }
        };
        let error = attempt
            .error
            .as_ref()
            .map(|error| error.message().to_string());
        self.record_app_health(job, attempt.error.as_ref()).await;
        let metrics = &self.services.metrics;
        metrics.attempt(
            &job.spec.app,
            &job.spec.feature,
            outcome.as_str(),
            duration,
            attempt.status,
        );
        let at = self.services.clock.now();
        let entry = LogEntry {
            id: crate::store::log_id(at),
            at,
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
            continued: matches!(decision, Decision::Continue),
        };
        if !self.write_log(lease, &entry).await {
            return;
        }

        let error = error.as_deref().unwrap_or("");
        match decision {
            Decision::Retry(delay) => {
                tracing::warn!(error, retry_in = ?delay, "attempt failed; retry scheduled");
            }
            Decision::DeadLetter => tracing::warn!(error, outcome = %outcome, "job failed"),
            Decision::Ack | Decision::Continue => {}
        }
        if self.update_queue(lease, &decision, error).await {
            tracing::debug!(outcome = %outcome, "job attempt recorded");
        }
    }

    /// Applies the decision to the job in the queue, retrying with growing pauses until
    /// shortly before the lease expires, like [`Worker::write_log`]. A job whose update
    /// fails runs again when its lease expires, although its outcome is recorded, so a short
    /// queue outage must not end the attempt. Returns whether the update was applied.
    async fn update_queue(&self, lease: &Lease, decision: &Decision, error: &str) -> bool {
        let queue = &self.services.queue;
        let mut pause = FIRST_RETRY_PAUSE;
        loop {
            let result = match decision {
                Decision::Ack => queue.ack(lease).await,
                Decision::Continue => queue.release(lease).await,
                Decision::Retry(delay) => queue.retry_later(lease, *delay, error).await,
                Decision::DeadLetter => queue.dead_letter(lease, error).await,
            };
            let err = match result {
                Ok(()) => return true,
                Err(QueueError::LeaseLost(_)) => {
                    tracing::warn!(
                        "the lease expired before the job finished; another worker runs it again"
                    );
                    return false;
                }
                Err(err) => err,
            };
            let give_up_at = lease.expires_at_ms - as_millis(LEASE_MARGIN);
            if self.services.clock.now_ms() + as_millis(pause) >= give_up_at {
                tracing::error!(error = %err, "updating the job failed until the lease ran out; it runs again");
                return false;
            }
            tracing::warn!(error = %err, retry_in = ?pause, "updating the job failed");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_STORE_PAUSE);
        }
    }

    /// Writes a log entry, retrying with growing pauses until shortly before the lease
    /// expires. Returns false if it could not be written. The job then stays leased and runs
    /// again when the lease expires, because an outcome must not be acknowledged without its
    /// record.
    async fn write_log(&self, lease: &Lease, entry: &LogEntry) -> bool {
        let instance = &lease.job.spec.instance;
        let mut pause = FIRST_RETRY_PAUSE;
        loop {
            let written = self
                .services
                .store
                .append_logs(instance, std::slice::from_ref(entry))
                .await;
            let err = match written {
                Ok(()) => {
                    self.store_down.store(false, Ordering::Relaxed);
                    return true;
                }
                Err(err) => err,
            };
            self.store_down.store(true, Ordering::Relaxed);
            let give_up_at = lease.expires_at_ms - as_millis(LEASE_MARGIN);
            if self.services.clock.now_ms() + as_millis(pause) >= give_up_at {
                tracing::error!(error = %err, "writing the log entry failed until the lease ran out; the job runs again");
                return false;
            }
            tracing::warn!(error = %err, retry_in = ?pause, "writing the log entry failed");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_STORE_PAUSE);
        }
    }

    /// Returns whether the app of `key` may carry a misconfigured mark: one this process set,
    /// or one found in the store, which another process or an earlier run may have set. The
    /// store is read at the app's first success in this process.
    async fn marked_elsewhere(&self, key: &(String, String)) -> bool {
        let lock = |set: &'_ std::sync::Mutex<std::collections::HashSet<(String, String)>>| {
            set.lock().unwrap_or_else(|p| p.into_inner()).contains(key)
        };
        if lock(&self.misconfigured) {
            return true;
        }
        if lock(&self.checked) {
            return false;
        }
        let store = self.services.store.as_ref();
        let stored = app_status::read(store, &key.0, &key.1).await;
        let marked = matches!(&stored, Ok(Some(status)) if status.misconfigured.is_some());
        if stored.is_ok() {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            checked.insert(key.clone());
        }
        marked
    }

    /// Marks the job's app as misconfigured after a configuration error, and clears the mark
    /// once an attempt succeeds. A failure to write is logged and otherwise
    /// ignored, because the mark only informs the operator.
    async fn record_app_health(&self, job: &crate::queue::Job, error: Option<&AttemptError>) {
        let key = (job.spec.instance.clone(), job.spec.app.clone());
        let status = match error {
            Some(AttemptError::Configuration(message)) => {
                app_status::misconfigured(message, &job.id)
            }
            None if self.marked_elsewhere(&key).await => app_status::working(),
            _ => return,
        };
        let store = self.services.store.as_ref();
        match app_status::write(store, &key.0, &key.1, &status).await {
            Ok(()) => {
                let mut marked = self.misconfigured.lock().unwrap_or_else(|p| p.into_inner());
                if status.misconfigured.is_some() {
                    marked.insert(key);
                } else {
                    marked.remove(&key);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "recording whether the app is misconfigured failed")
            }
        }
    }

    /// Waits until the store responds again, or until shutdown.
    async fn wait_for_store(&self, shutdown: &CancellationToken) {
        let mut pause = FIRST_RETRY_PAUSE;
        while !shutdown.is_cancelled() {
            if self.services.store.ping().await.is_ok() {
                tracing::info!("the store responds again; taking jobs");
                self.store_down.store(false, Ordering::Relaxed);
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => {}
            }
            pause = (pause * 2).min(MAX_STORE_PAUSE);
        }
    }
}

fn as_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
