//! The embedded queue: jobs, failed jobs and the duplicate-detection record in one SQLite
//! file, so that recording a delivery and enqueueing its jobs is a single transaction.
//!
//! A job row moves between three states: `ready` (due at `run_at`), `leased` (held until
//! `lease_until`) and `failed`. A leased row whose lease has passed counts as due again, which
//! is how the jobs of a killed worker come back. The attempt counter is incremented in the
//! same statement that takes the job, so it survives any crash after the take.

use super::{
    Admission, Delivery, FailedJob, HourlyCount, Job, Lease, NewJob, Queue, QueueError,
    QueueResult, QueueSettings, QueueStats,
};
mod admission;

use crate::clock::SharedClock;
use crate::sqlite::{BlockingTaskFailed, SharedConnection};
use admission::{PreparedJob, Request};
use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id           TEXT PRIMARY KEY,
    instance     TEXT NOT NULL,
    spec         TEXT NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    state        TEXT NOT NULL,
    run_at       INTEGER NOT NULL,
    lease_token  TEXT,
    lease_until  INTEGER,
    last_error   TEXT,
    failed_at    INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, run_at);
CREATE INDEX IF NOT EXISTS jobs_leased ON jobs (state, lease_until);
CREATE INDEX IF NOT EXISTS jobs_by_instance ON jobs (instance, state);
CREATE TABLE IF NOT EXISTS deliveries (
    instance    TEXT NOT NULL,
    event_id    TEXT,
    content_key TEXT NOT NULL,
    accepted_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_by_event_id
    ON deliveries (instance, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_by_content ON deliveries (instance, content_key, accepted_at);
CREATE INDEX IF NOT EXISTS deliveries_by_age ON deliveries (accepted_at);
CREATE TABLE IF NOT EXISTS delivery_counts (
    instance   TEXT NOT NULL,
    hour_start INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (instance, hour_start)
);
";

impl From<rusqlite::Error> for QueueError {
    fn from(err: rusqlite::Error) -> Self {
        QueueError::Unavailable(err.to_string())
    }
}

impl From<BlockingTaskFailed> for QueueError {
    fn from(err: BlockingTaskFailed) -> Self {
        QueueError::Unavailable(err.to_string())
    }
}

pub struct SqliteQueue {
    conn: SharedConnection,
    settings: QueueSettings,
    clock: SharedClock,
    work: Arc<Notify>,
    admissions: mpsc::Sender<Request>,
}

impl SqliteQueue {
    /// Opens (or creates) the queue file and starts its admission writer. Must be called
    /// inside a Tokio runtime.
    pub fn open(
        path: &Path,
        busy_timeout: Duration,
        settings: QueueSettings,
        clock: SharedClock,
    ) -> QueueResult<Arc<Self>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| {
                QueueError::Unavailable(format!("cannot create folder {}: {err}", dir.display()))
            })?;
        }
        let conn = SharedConnection::open(path, busy_timeout)?;
        let work = Arc::new(Notify::new());
        let admissions =
            admission::spawn_writer(conn.clone(), settings.clone(), clock.clone(), work.clone());
        let queue = Self {
            conn,
            settings,
            clock,
            work,
            admissions,
        };
        Ok(Arc::new(queue))
    }

    /// Creates the tables if they are missing.
    pub async fn migrate(&self) -> QueueResult<()> {
        self.conn
            .call(|conn| conn.execute_batch(SCHEMA).map_err(QueueError::from))
            .await
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Runs an update that must hit the row still leased with this lease's token.
    /// `sql` binds the job id as `?1`, the lease token as `?2` and `extra` from `?3` on.
    async fn update_leased(
        &self,
        lease: &Lease,
        sql: &'static str,
        extra: Vec<SqlValue>,
    ) -> QueueResult<()> {
        let mut args = vec![
            SqlValue::from(lease.job.id.clone()),
            SqlValue::from(lease.token.clone()),
        ];
        args.extend(extra);
        let changed = self
            .conn
            .call(move |conn| {
                let changed = conn.execute(sql, rusqlite::params_from_iter(args))?;
                Ok::<_, QueueError>(changed)
            })
            .await?;
        if changed == 0 {
            return Err(QueueError::LeaseLost(lease.job.id.clone()));
        }
        self.work.notify_waiters();
        Ok(())
    }
}

fn as_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn is_duplicate(
    conn: &Connection,
    delivery: &Delivery,
    window_start_ms: i64,
) -> rusqlite::Result<bool> {
    if let Some(event_id) = &delivery.event_id {
        let seen: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM deliveries WHERE instance = ?1 AND event_id = ?2",
                params![delivery.instance, event_id],
                |row| row.get(0),
            )
            .optional()?;
        if seen.is_some() {
            return Ok(true);
        }
    }
    let seen: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM deliveries
             WHERE instance = ?1 AND content_key = ?2 AND accepted_at >= ?3 LIMIT 1",
            params![delivery.instance, delivery.content_key, window_start_ms],
            |row| row.get(0),
        )
        .optional()?;
    Ok(seen.is_some())
}

fn parse_job(id: String, spec: &str, attempt: i64, max_attempts: i64) -> QueueResult<Job> {
    let spec: NewJob = serde_json::from_str(spec)
        .map_err(|err| QueueError::Corrupt(format!("job {id}: {err}")))?;
    let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
    let max_attempts = u32::try_from(max_attempts).unwrap_or(u32::MAX);
    Ok(Job {
        id,
        spec,
        attempt,
        max_attempts,
    })
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn admit(&self, delivery: &Delivery, jobs: Vec<NewJob>) -> QueueResult<Admission> {
        let mut prepared = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let spec =
                serde_json::to_string(job).map_err(|err| QueueError::Corrupt(err.to_string()))?;
            let id = uuid::Uuid::now_v7().to_string();
            prepared.push(PreparedJob {
                id,
                instance: job.instance.clone(),
                spec,
            });
        }
        let (reply, answer) = oneshot::channel();
        let request = Request {
            delivery: delivery.clone(),
            jobs: prepared,
            reply,
        };
        let stopped = || QueueError::Unavailable("the queue writer stopped".to_string());
        self.admissions.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn take(&self) -> QueueResult<Option<Lease>> {
        let now = self.now_ms();
        let expires_at_ms = now + as_millis(self.settings.lease);
        let token = uuid::Uuid::new_v4().to_string();
        let lease_token = token.clone();
        let row = self
            .conn
            .call(move |conn| {
                let row = conn
                    .query_row(
                        "UPDATE jobs
                         SET state = 'leased', attempt = attempt + 1,
                             lease_token = ?1, lease_until = ?2
                         WHERE id = (
                             SELECT id FROM (
                                 SELECT id, run_at AS due FROM jobs
                                 WHERE state = 'ready' AND run_at <= ?3
                                 UNION ALL
                                 SELECT id, lease_until AS due FROM jobs
                                 WHERE state = 'leased' AND lease_until <= ?3
                             ) ORDER BY due, id LIMIT 1
                         )
                         RETURNING id, spec, attempt, max_attempts",
                        params![lease_token, expires_at_ms, now],
                        |row| {
                            Ok((
                                row.get(0)?,
                                row.get::<_, String>(1)?,
                                row.get(2)?,
                                row.get(3)?,
                            ))
                        },
                    )
                    .optional()?;
                Ok::<_, QueueError>(row)
            })
            .await?;
        let Some((id, spec, attempt, max_attempts)) = row else {
            return Ok(None);
        };
        let job = parse_job(id, &spec, attempt, max_attempts)?;
        Ok(Some(Lease {
            job,
            token,
            expires_at_ms,
        }))
    }

    async fn wait_for_work(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.work.notified()).await;
    }

    async fn ack(&self, lease: &Lease) -> QueueResult<()> {
        let sql = "DELETE FROM jobs WHERE id = ?1 AND lease_token = ?2 AND state = 'leased'";
        self.update_leased(lease, sql, vec![]).await
    }

    async fn retry_later(&self, lease: &Lease, delay: Duration, error: &str) -> QueueResult<()> {
        let run_at = self.now_ms() + as_millis(delay);
        let sql = "UPDATE jobs SET state = 'ready', run_at = ?3, last_error = ?4,
                   lease_token = NULL, lease_until = NULL
                   WHERE id = ?1 AND lease_token = ?2 AND state = 'leased'";
        self.update_leased(lease, sql, vec![run_at.into(), error.to_string().into()])
            .await
    }

    async fn release(&self, lease: &Lease) -> QueueResult<()> {
        let sql = "UPDATE jobs SET state = 'ready', run_at = ?3, attempt = attempt - 1,
                   lease_token = NULL, lease_until = NULL
                   WHERE id = ?1 AND lease_token = ?2 AND state = 'leased'";
        self.update_leased(lease, sql, vec![self.now_ms().into()])
            .await
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> QueueResult<()> {
        let sql = "UPDATE jobs SET state = 'failed', failed_at = ?3, last_error = ?4,
                   lease_token = NULL, lease_until = NULL
                   WHERE id = ?1 AND lease_token = ?2 AND state = 'leased'";
        let extra = vec![self.now_ms().into(), reason.to_string().into()];
        self.update_leased(lease, sql, extra).await
    }

    async fn failed_jobs(&self, instance: &str, limit: usize) -> QueueResult<Vec<FailedJob>> {
        let instance = instance.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.conn
            .call(move |conn| {
                let sql = format!(
                    "{FAILED_COLUMNS} WHERE instance = ?1 AND state = 'failed'
                     ORDER BY failed_at, id LIMIT ?2"
                );
                let mut statement = conn.prepare(&sql)?;
                let rows = statement.query_map(params![instance, limit], failed_row)?;
                let mut failed = Vec::new();
                for row in rows {
                    failed.push(row?.into_failed_job()?);
                }
                Ok(failed)
            })
            .await
    }

    async fn failed_job(&self, instance: &str, job_id: &str) -> QueueResult<Option<FailedJob>> {
        let (instance, job_id) = (instance.to_string(), job_id.to_string());
        self.conn
            .call(move |conn| {
                let sql = format!(
                    "{FAILED_COLUMNS} WHERE instance = ?1 AND id = ?2 AND state = 'failed'"
                );
                let row = conn
                    .query_row(&sql, params![instance, job_id], failed_row)
                    .optional()?;
                row.map(FailedRow::into_failed_job).transpose()
            })
            .await
    }

    async fn replay(&self, instance: &str, job_id: &str) -> QueueResult<()> {
        let now = self.now_ms();
        let sql = "UPDATE jobs SET state = 'ready', attempt = 0, run_at = ?3, failed_at = NULL
                   WHERE instance = ?1 AND id = ?2 AND state = 'failed'";
        self.change_failed(instance, job_id, sql, vec![now.into()])
            .await?;
        self.work.notify_waiters();
        Ok(())
    }

    async fn discard(&self, instance: &str, job_id: &str) -> QueueResult<()> {
        let sql = "DELETE FROM jobs WHERE instance = ?1 AND id = ?2 AND state = 'failed'";
        self.change_failed(instance, job_id, sql, vec![]).await
    }

    async fn stats(&self, instance: Option<&str>) -> QueueResult<QueueStats> {
        let now = self.now_ms();
        let instance = instance.map(str::to_string);
        self.conn
            .call(move |conn| {
                let mut statement = conn.prepare(
                    "SELECT
                        COALESCE(SUM(state = 'ready' AND run_at <= ?1), 0),
                        COALESCE(SUM(state = 'ready' AND run_at > ?1), 0),
                        COALESCE(SUM(state = 'leased'), 0),
                        COALESCE(SUM(state = 'failed'), 0)
                     FROM jobs WHERE ?2 IS NULL OR instance = ?2",
                )?;
                let stats = statement.query_row(params![now, instance], |row| {
                    Ok(QueueStats {
                        ready: row.get(0)?,
                        delayed: row.get(1)?,
                        leased: row.get(2)?,
                        failed: row.get(3)?,
                    })
                })?;
                Ok(stats)
            })
            .await
    }

    async fn delivery_counts(
        &self,
        instance: &str,
        since_ms: i64,
    ) -> QueueResult<Vec<HourlyCount>> {
        let instance = instance.to_string();
        let since = super::hour_start_ms(since_ms);
        self.conn
            .call(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT hour_start, count FROM delivery_counts
                     WHERE instance = ?1 AND hour_start >= ?2 ORDER BY hour_start",
                )?;
                let rows = statement.query_map(params![instance, since], |row| {
                    Ok(HourlyCount {
                        hour_start_ms: row.get(0)?,
                        count: row.get(1)?,
                    })
                })?;
                let counts = rows.collect::<Result<Vec<_>, _>>()?;
                Ok(counts)
            })
            .await
    }
}

/// The columns [`failed_row`] reads, as the start of a query.
const FAILED_COLUMNS: &str =
    "SELECT id, spec, attempt, max_attempts, last_error, failed_at FROM jobs";

/// One row of a failed job, as read from the jobs table.
struct FailedRow {
    id: String,
    spec: String,
    attempt: i64,
    max_attempts: i64,
    reason: Option<String>,
    failed_at: Option<i64>,
}

impl FailedRow {
    fn into_failed_job(self) -> QueueResult<FailedJob> {
        Ok(FailedJob {
            job: parse_job(self.id, &self.spec, self.attempt, self.max_attempts)?,
            reason: self.reason.unwrap_or_default(),
            failed_at_ms: self.failed_at.unwrap_or_default(),
        })
    }
}

fn failed_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FailedRow> {
    Ok(FailedRow {
        id: row.get(0)?,
        spec: row.get(1)?,
        attempt: row.get(2)?,
        max_attempts: row.get(3)?,
        reason: row.get(4)?,
        failed_at: row.get(5)?,
    })
}

impl SqliteQueue {
    async fn change_failed(
        &self,
        instance: &str,
        job_id: &str,
        sql: &'static str,
        extra: Vec<SqlValue>,
    ) -> QueueResult<()> {
        let (instance, job_id) = (instance.to_string(), job_id.to_string());
        let mut args = vec![
            SqlValue::from(instance.clone()),
            SqlValue::from(job_id.clone()),
        ];
        args.extend(extra);
        self.conn
            .call(move |conn| {
                if conn.execute(sql, rusqlite::params_from_iter(args))? == 0 {
                    return Err(QueueError::FailedJobNotFound { instance, job_id });
                }
                Ok(())
            })
            .await
    }
}
