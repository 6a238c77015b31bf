//! The Redis queue, for running many API servers and workers against one queue.
//!
//! Layout, under a configurable key prefix `P`:
//! - `P:jobs`: a stream read through the consumer group `workers`; each entry names a job.
//! - `P:job:<id>`: the job's hash: spec, instance, attempt count, state, stream entry.
//! - `P:leases`: a sorted set of taken jobs by lease expiry. A job whose worker died stays
//!   here until its expiry passes. The next `take` then claims its stream entry (`XCLAIM`)
//!   and hands it out again with the attempt counted.
//! - `P:delayed`: a sorted set of jobs waiting for a retry, by due time. `take` moves due
//!   jobs back into the stream, at most [`MOVE_BATCH`] at a time.
//! - `P:failed:<instance>`: dead-lettered jobs by time of failure.
//! - `P:stats` and `P:stats:<instance>`: counts of jobs per state.
//! - `P:seen:<instance>:...`: accepted event ids and content keys, for duplicate detection.
//! - `P:deliveries:<instance>:<day>`: accepted deliveries per hour of one UTC day (counted in
//!   days since the Unix epoch), keyed by the hour's start in Unix milliseconds. Each such
//!   hash expires as a whole.
//!
//! Every state change is one Lua script, so it is atomic and a crash between two commands
//! cannot lose or duplicate a job. Times come from Geoffrey's clock, not from Redis, which
//! keeps leases, retry delays and duplicate windows consistent with the embedded queue.
//!
//! Lease expiry, not Redis's idle time, decides when a job is taken again, so the
//! visibility timeout is `worker.lease`, which the settings require to exceed the job
//! timeout. If Redis loses the consumer group (a restart without persistence), the next
//! call recreates it. Durability is Redis's: run it with `appendonly yes` (see the operator
//! warnings that [`RedisQueue::connect`] logs).

use super::{
    Admission, Delivery, FailedJob, HOUR_MS, HourlyCount, Job, Lease, NewJob, Queue, QueueError,
    QueueResult, QueueSettings, QueueStats,
};
use crate::clock::SharedClock;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Script, Value};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Consumer group shared by every worker.
const GROUP: &str = "workers";

/// Largest number of due delayed jobs one `take` moves back into the stream.
const MOVE_BATCH: usize = 100;

/// Maximum pause of the new-entry watcher after a Redis error.
const MAX_WATCH_PAUSE: Duration = Duration::from_secs(10);

const PRELUDE: &str = include_str!("prelude.lua");

struct Scripts {
    admit: Script,
    take: Script,
    finish: Script,
    failed: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Self {
            admit: with_prelude(include_str!("admit.lua")),
            take: with_prelude(include_str!("take.lua")),
            finish: with_prelude(include_str!("finish.lua")),
            failed: with_prelude(include_str!("failed.lua")),
        }
    }
}

pub struct RedisQueue {
    conn: ConnectionManager,
    prefix: String,
    consumer: String,
    settings: QueueSettings,
    clock: SharedClock,
    scripts: Scripts,
    new_entries: Arc<Notify>,
}

impl From<redis::RedisError> for QueueError {
    fn from(err: redis::RedisError) -> Self {
        QueueError::Unavailable(format!("redis: {err}"))
    }
}

impl RedisQueue {
    /// Connects to Redis at `url` (`redis://[:password@]host:port[/db]`), creates the
    /// consumer group if needed, warns about settings that can lose jobs, and starts the
    /// watcher that wakes idle workers when jobs arrive. Must be called inside a Tokio
    /// runtime.
    pub async fn connect(
        url: &str,
        prefix: &str,
        settings: QueueSettings,
        clock: SharedClock,
    ) -> QueueResult<Arc<Self>> {
        let client = Client::open(url)
            .map_err(|err| QueueError::Unavailable(format!("invalid queue URL: {err}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|err| {
                let server = crate::secret::server_of(url);
                QueueError::Unavailable(format!("cannot connect to Redis at {server}: {err}"))
            })?;
        let consumer = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let queue = Arc::new(Self {
            conn,
            prefix: prefix.to_string(),
            consumer,
            settings,
            clock,
            scripts: Scripts::new(),
            new_entries: Arc::new(Notify::new()),
        });
        queue.create_group().await?;
        queue.warn_about_durability().await;
        tokio::spawn(watch_new_entries(client, Arc::downgrade(&queue)));
        Ok(queue)
    }

    fn stream(&self) -> String {
        format!("{}:jobs", self.prefix)
    }

    async fn create_group(&self) -> QueueResult<()> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Logs a warning when Redis keeps nothing on disk or may evict keys, because either
    /// loses acknowledged deliveries. Servers that forbid CONFIG GET are skipped.
    async fn warn_about_durability(&self) {
        let mut conn = self.conn.clone();
        let config: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async(&mut conn)
            .await;
        if let Ok(pair) = config {
            if pair.get(1).map(String::as_str) != Some("yes") {
                tracing::warn!(
                    "Redis runs without appendonly persistence; a Redis restart loses queued jobs. \
                     Set appendonly yes"
                );
            }
        }
        let policy: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await;
        if let Ok(pair) = policy {
            if let Some(policy) = pair.get(1).filter(|policy| *policy != "noeviction") {
                tracing::warn!(
                    policy = %policy,
                    "Redis may evict keys under memory pressure, which loses jobs. \
                     Set maxmemory-policy noeviction"
                );
            }
        }
    }

    /// Runs a script, recreating the consumer group once if Redis lost it.
    async fn invoke(&self, script: &Script, args: &[String]) -> QueueResult<Value> {
        let mut recreated_group = false;
        let mut reconnected = false;
        loop {
            let mut invocation = script.prepare_invoke();
            invocation.arg(&self.prefix);
            for arg in args {
                invocation.arg(arg);
            }
            let mut conn = self.conn.clone();
            match invocation.invoke_async::<Value>(&mut conn).await {
                Ok(value) => return Ok(value),
                Err(err) if !recreated_group && err.to_string().contains("NOGROUP") => {
                    tracing::warn!("the Redis consumer group is missing; creating it again");
                    self.create_group().await?;
                    recreated_group = true;
                }
                // The connection manager reports a connection that died while idle (a Redis
                // restart, an idle timeout) to the first caller and reconnects only then, so
                // that caller tries once more. A script that did run before the connection
                // dropped is safe to repeat: a second admit finds the delivery recorded, and
                // a second state change finds the lease already ended.
                Err(err) if !reconnected && (err.is_connection_dropped() || err.is_io_error()) => {
                    tracing::debug!(error = %err, "the Redis connection dropped; trying again");
                    reconnected = true;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    async fn finish(
        &self,
        lease: &Lease,
        action: &str,
        run_at_ms: i64,
        text: &str,
    ) -> QueueResult<()> {
        let args = [
            GROUP.to_string(),
            lease.job.id.clone(),
            lease.token.clone(),
            action.to_string(),
            self.clock.now_ms().to_string(),
            run_at_ms.to_string(),
            text.to_string(),
        ];
        match self.invoke(&self.scripts.finish, &args).await? {
            Value::Int(1) => Ok(()),
            _ => Err(QueueError::LeaseLost(lease.job.id.clone())),
        }
    }

    async fn change_failed(&self, instance: &str, job_id: &str, action: &str) -> QueueResult<()> {
        let args = [instance.to_string(), job_id.to_string(), action.to_string()];
        match self.invoke(&self.scripts.failed, &args).await? {
            Value::Int(1) => Ok(()),
            _ => Err(QueueError::FailedJobNotFound {
                instance: instance.to_string(),
                job_id: job_id.to_string(),
            }),
        }
    }
}

/// The fields of a failed job's hash: spec, attempt, max_attempts, reason and failed_at.
type FailedFields = (
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

impl RedisQueue {
    /// Reads the job hashes of failed jobs; ids whose hash is gone are left out.
    async fn read_failed(&self, ids: Vec<String>) -> QueueResult<Vec<FailedJob>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(format!("{}:job:{id}", self.prefix))
                .arg(&["spec", "attempt", "max_attempts", "reason", "failed_at"]);
        }
        let rows: Vec<FailedFields> = pipe.query_async(&mut conn).await?;
        let mut failed = Vec::with_capacity(ids.len());
        for (id, (spec, attempt, max_attempts, reason, failed_at)) in ids.into_iter().zip(rows) {
            let Some(spec) = spec else { continue };
            failed.push(FailedJob {
                job: parse_job(id, &spec, attempt.unwrap_or(0), max_attempts.unwrap_or(0))?,
                reason: reason.unwrap_or_default(),
                failed_at_ms: failed_at.unwrap_or(0),
            });
        }
        Ok(failed)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "geoffrey".to_string())
}

fn as_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Blocks on `XREAD` for new stream entries on a connection of its own without a response
/// timeout (a blocking read outlasts any short timeout), and wakes waiting workers.
async fn watch_new_entries(client: Client, queue: Weak<RedisQueue>) {
    let config = AsyncConnectionConfig::new().set_response_timeout(None);
    let mut pause = Duration::from_millis(100);
    let mut conn: Option<MultiplexedConnection> = None;
    let mut last_id = "$".to_string();
    loop {
        let Some((stream, notify)) = queue
            .upgrade()
            .map(|queue| (queue.stream(), queue.new_entries.clone()))
        else {
            return;
        };
        if conn.is_none() {
            match client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(connected) => conn = Some(connected),
                Err(err) => {
                    tracing::warn!(error = %err, pause = ?pause, "connecting to Redis failed");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_WATCH_PAUSE);
                    continue;
                }
            }
        }
        let Some(connection) = conn.as_mut() else {
            continue;
        };
        let read: redis::RedisResult<Value> = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&stream)
            .arg(&last_id)
            .query_async(connection)
            .await;
        match read {
            Ok(value) => {
                pause = Duration::from_millis(100);
                if let Some(id) = last_entry_id(&value) {
                    last_id = id;
                    notify.notify_waiters();
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, pause = ?pause, "waiting for new jobs on Redis failed");
                conn = None;
                last_id = "$".to_string();
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_WATCH_PAUSE);
            }
        }
    }
}

/// Returns the id of the last entry in an `XREAD` reply.
fn last_entry_id(value: &Value) -> Option<String> {
    let streams = as_items(value)?;
    let stream = as_items(streams.first()?)?;
    let entries = as_items(stream.get(1)?)?;
    let entry = as_items(entries.last()?)?;
    string_of(entry.first()?)
}

/// Returns the items of an array reply; RESP3 replies to XREAD are maps of stream to entries.
fn as_items(value: &Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) => Some(items.clone()),
        Value::Map(pairs) => Some(
            pairs
                .iter()
                .map(|(key, value)| Value::Array(vec![key.clone(), value.clone()]))
                .collect(),
        ),
        _ => None,
    }
}

fn string_of(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(number) => Some(number.to_string()),
        _ => None,
    }
}

fn int_of(value: &Value) -> Option<i64> {
    match value {
        Value::Int(number) => Some(*number),
        other => string_of(other)?.parse().ok(),
    }
}

fn parse_job(id: String, spec: &str, attempt: i64, max_attempts: i64) -> QueueResult<Job> {
    let spec: NewJob = serde_json::from_str(spec)
        .map_err(|err| QueueError::Corrupt(format!("job {id}: {err}")))?;
    Ok(Job {
        id,
        spec,
        attempt: u32::try_from(attempt).unwrap_or(0),
        max_attempts: u32::try_from(max_attempts).unwrap_or(0),
    })
}

#[async_trait]
impl Queue for RedisQueue {
    async fn admit(&self, delivery: &Delivery, jobs: Vec<NewJob>) -> QueueResult<Admission> {
        let mut args = vec![
            delivery.instance.clone(),
            self.clock.now_ms().to_string(),
            as_millis(self.settings.duplicate_window).to_string(),
            as_millis(self.settings.event_id_retention).to_string(),
            delivery.event_id.clone().unwrap_or_default(),
            delivery.content_key.clone(),
            self.settings.max_attempts.to_string(),
            as_millis(super::DELIVERY_COUNT_RETENTION).to_string(),
        ];
        for job in &jobs {
            args.push(uuid::Uuid::now_v7().to_string());
            args.push(
                serde_json::to_string(job).map_err(|err| QueueError::Corrupt(err.to_string()))?,
            );
        }
        let value = self.invoke(&self.scripts.admit, &args).await?;
        match int_of(&value) {
            Some(-1) => Ok(Admission::Duplicate),
            Some(count) => Ok(Admission::Accepted {
                jobs: usize::try_from(count).unwrap_or(0),
            }),
            None => Err(QueueError::Corrupt(format!(
                "unexpected admit reply {value:?}"
            ))),
        }
    }

    async fn take(&self) -> QueueResult<Option<Lease>> {
        loop {
            let now = self.clock.now_ms();
            let token = uuid::Uuid::new_v4().to_string();
            let args = [
                GROUP.to_string(),
                self.consumer.clone(),
                now.to_string(),
                as_millis(self.settings.lease).to_string(),
                token.clone(),
                MOVE_BATCH.to_string(),
            ];
            let value = self.invoke(&self.scripts.take, &args).await?;
            let items = match value {
                Value::Nil => return Ok(None),
                Value::Array(items) => items,
                // An entry whose job hash is gone was dropped; look for the next one.
                _ => continue,
            };
            let field = |index: usize| items.get(index);
            let (Some(id), Some(spec), Some(attempt), Some(max_attempts)) = (
                field(0).and_then(string_of),
                field(1).and_then(string_of),
                field(2).and_then(int_of),
                field(3).and_then(int_of),
            ) else {
                return Err(QueueError::Corrupt(format!(
                    "unexpected take reply {items:?}"
                )));
            };
            let job = parse_job(id, &spec, attempt, max_attempts)?;
            let expires_at_ms = now + as_millis(self.settings.lease);
            return Ok(Some(Lease {
                job,
                token,
                expires_at_ms,
            }));
        }
    }

    async fn wait_for_work(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.new_entries.notified()).await;
    }

    async fn ack(&self, lease: &Lease) -> QueueResult<()> {
        self.finish(lease, "ack", 0, "").await
    }

    async fn retry_later(&self, lease: &Lease, delay: Duration, error: &str) -> QueueResult<()> {
        let run_at = self.clock.now_ms() + as_millis(delay);
        self.finish(lease, "retry", run_at, error).await
    }

    async fn release(&self, lease: &Lease) -> QueueResult<()> {
        self.finish(lease, "release", 0, "").await
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> QueueResult<()> {
        self.finish(lease, "dead", 0, reason).await
    }

    async fn failed_jobs(&self, instance: &str, limit: usize) -> QueueResult<Vec<FailedJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let key = format!("{}:failed:{instance}", self.prefix);
        let stop = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(stop)
            .query_async(&mut conn)
            .await?;
        self.read_failed(ids).await
    }

    async fn failed_job(&self, instance: &str, job_id: &str) -> QueueResult<Option<FailedJob>> {
        let mut conn = self.conn.clone();
        let key = format!("{}:failed:{instance}", self.prefix);
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(&key)
            .arg(job_id)
            .query_async(&mut conn)
            .await?;
        if score.is_none() {
            return Ok(None);
        }
        let mut failed = self.read_failed(vec![job_id.to_string()]).await?;
        Ok(failed.pop())
    }

    async fn replay(&self, instance: &str, job_id: &str) -> QueueResult<()> {
        self.change_failed(instance, job_id, "replay").await?;
        self.new_entries.notify_waiters();
        Ok(())
    }

    async fn discard(&self, instance: &str, job_id: &str) -> QueueResult<()> {
        self.change_failed(instance, job_id, "discard").await
    }

    async fn stats(&self, instance: Option<&str>) -> QueueResult<QueueStats> {
        let key = match instance {
            Some(instance) => format!("{}:stats:{instance}", self.prefix),
            None => format!("{}:stats", self.prefix),
        };
        let mut conn = self.conn.clone();
        let counts: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(&key)
            .arg(&["ready", "delayed", "leased", "failed"])
            .query_async(&mut conn)
            .await?;
        let count = |index: usize| {
            let value = counts.get(index).copied().flatten().unwrap_or(0);
            u64::try_from(value).unwrap_or(0)
        };
        Ok(QueueStats {
            ready: count(0),
            delayed: count(1),
            leased: count(2),
            failed: count(3),
        })
    }

    async fn delivery_counts(
        &self,
        instance: &str,
        since_ms: i64,
    ) -> QueueResult<Vec<HourlyCount>> {
        const DAY_MS: i64 = 24 * HOUR_MS;
        let since = super::hour_start_ms(since_ms);
        let now = self.clock.now_ms();
        let oldest_kept = now - as_millis(super::DELIVERY_COUNT_RETENTION) - DAY_MS;
        let first_day = since.max(oldest_kept).div_euclid(DAY_MS);
        let last_day = now.div_euclid(DAY_MS);
        let mut pipe = redis::pipe();
        for day in first_day..=last_day {
            pipe.cmd("HGETALL")
                .arg(format!("{}:deliveries:{instance}:{day}", self.prefix));
        }
        let mut conn = self.conn.clone();
        let days: Vec<Vec<(i64, u64)>> = pipe.query_async(&mut conn).await?;
        let mut counts: Vec<HourlyCount> = days
            .into_iter()
            .flatten()
            .filter(|(hour_start_ms, _)| *hour_start_ms >= since)
            .map(|(hour_start_ms, count)| HourlyCount {
                hour_start_ms,
                count,
            })
            .collect();
        counts.sort_by_key(|count| count.hour_start_ms);
        Ok(counts)
    }
}
