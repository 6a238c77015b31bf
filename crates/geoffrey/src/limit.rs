//! Concurrency limits shared by every worker: at most N requests in flight per key, such as
//! Mailchimp's 10 simultaneous connections per API key.
//!
//! The embedded mode runs every worker in one process, so a semaphore per key is enough. The
//! distributed mode keeps the holders of each key in a Redis sorted set scored by expiry, so
//! that a worker that dies while holding a slot frees it when the expiry passes.

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// A slot under a limit, given back when dropped.
pub struct Permit {
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("concurrency limiter unavailable: {0}")]
pub struct LimitError(String);

#[async_trait]
pub trait ConcurrencyLimiter: Send + Sync + 'static {
    /// Waits until fewer than `limit` permits for `key` are held, then returns one.
    async fn acquire(&self, key: &str, limit: usize) -> Result<Permit, LimitError>;
}

/// Limits within one process.
#[derive(Default)]
pub struct LocalLimiter {
    /// A semaphore per key, with the limit it was last sized for.
    semaphores: Mutex<HashMap<String, (Arc<Semaphore>, usize)>>,
}

#[async_trait]
impl ConcurrencyLimiter for LocalLimiter {
    async fn acquire(&self, key: &str, limit: usize) -> Result<Permit, LimitError> {
        let semaphore = {
            let mut semaphores = self.semaphores.lock().unwrap_or_else(|p| p.into_inner());
            let (semaphore, sized_for) = semaphores
                .entry(key.to_string())
                .or_insert_with(|| (Arc::new(Semaphore::new(limit)), limit));
            // A changed limit (a configuration saved while running) resizes the semaphore.
            // Lowering it takes effect as the permits in use come back.
            if limit > *sized_for {
                semaphore.add_permits(limit - *sized_for);
            } else if limit < *sized_for {
                let forgotten = semaphore.forget_permits(*sized_for - limit);
                if forgotten < *sized_for - limit {
                    let shortfall = *sized_for - limit - forgotten;
                    let semaphore = semaphore.clone();
                    tokio::spawn(async move {
                        if let Ok(permits) = semaphore
                            .acquire_many(u32::try_from(shortfall).unwrap_or(u32::MAX))
                            .await
                        {
                            permits.forget();
                        }
                    });
                }
            }
            *sized_for = limit;
            semaphore.clone()
        };
        let permit = semaphore
            .acquire_owned()
            .await
            .map_err(|err| LimitError(err.to_string()))?;
        Ok(Permit {
            release: Some(Box::new(move || drop(permit))),
        })
    }
}

/// Limits across processes, in Redis.
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    /// How long a slot stays taken if its holder never gives it back.
    hold_timeout: Duration,
    acquire: Script,
}

/// Removes expired holders, then adds this one if there is room. Returns 1 or 0.
const ACQUIRE: &str = r"
local key, now, expires, limit, holder = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, expires, holder)
  redis.call('PEXPIREAT', key, expires)
  return 1
end
return 0
";

/// Pause between attempts to get a slot while the limit is reached.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

impl RedisLimiter {
    pub async fn connect(
        url: &str,
        prefix: &str,
        hold_timeout: Duration,
    ) -> Result<Arc<Self>, LimitError> {
        let client = redis::Client::open(url)
            .map_err(|err| LimitError(format!("invalid queue URL: {err}")))?;
        let conn = ConnectionManager::new(client)
            .await
            .map_err(|err| LimitError(err.to_string()))?;
        Ok(Arc::new(Self {
            conn,
            prefix: prefix.to_string(),
            hold_timeout,
            acquire: Script::new(ACQUIRE),
        }))
    }
}

fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(now).unwrap_or(i64::MAX)
}

#[async_trait]
impl ConcurrencyLimiter for RedisLimiter {
    async fn acquire(&self, key: &str, limit: usize) -> Result<Permit, LimitError> {
        // Keys such as API keys are secrets, so Redis only stores their hash.
        let redis_key = format!(
            "{}:limit:{}",
            self.prefix,
            hex::encode(Sha256::digest(key.as_bytes()))
        );
        let holder = uuid::Uuid::new_v4().to_string();
        let hold_ms = i64::try_from(self.hold_timeout.as_millis()).unwrap_or(i64::MAX);
        loop {
            let now = now_ms();
            let mut conn = self.conn.clone();
            let taken: i64 = self
                .acquire
                .key(&redis_key)
                .arg(now)
                .arg(now + hold_ms)
                .arg(limit)
                .arg(&holder)
                .invoke_async(&mut conn)
                .await
                .map_err(|err| LimitError(err.to_string()))?;
            if taken == 1 {
                let mut conn = self.conn.clone();
                let release = move || {
                    tokio::spawn(async move {
                        let removed: redis::RedisResult<i64> = redis::cmd("ZREM")
                            .arg(&redis_key)
                            .arg(&holder)
                            .query_async(&mut conn)
                            .await;
                        if let Err(err) = removed {
                            tracing::warn!(error = %err, "releasing a concurrency slot failed; it frees itself when it expires");
                        }
                    });
                };
                return Ok(Permit {
                    release: Some(Box::new(release)),
                });
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_limiter_caps_concurrency() {
        let limiter = Arc::new(LocalLimiter::default());
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..30 {
            let (limiter, in_flight, peak) = (limiter.clone(), in_flight.clone(), peak.clone());
            tasks.spawn(async move {
                let _permit = limiter.acquire("key", 3).await.expect("permit");
                let now = in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        while tasks.join_next().await.is_some() {}
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn local_limiter_follows_a_changed_limit() {
        let limiter = LocalLimiter::default();
        let first = limiter.acquire("key", 1).await.expect("permit");
        let second =
            tokio::time::timeout(Duration::from_millis(50), limiter.acquire("key", 1)).await;
        assert!(second.is_err(), "a limit of 1 holds a second caller");
        let raised =
            tokio::time::timeout(Duration::from_millis(50), limiter.acquire("key", 2)).await;
        assert!(raised.is_ok(), "raising the limit admits a second caller");
        drop(first);
    }
}
