//! Per-instance intake limits: deliveries per second, body size and jobs in the queue, so
//! that one noisy forum cannot fill the queue or take the API server from the others.
//!
//! The delivery rate is a token bucket per instance, counted by each API server on its own.
//! It is written here rather than taken from a crate because each instance may have its own
//! quota, which the usual keyed limiters (one quota for every key) do not allow, and the
//! bucket itself is a few lines. Queue depth is read from the queue about once a second per
//! instance and counted up locally between reads.
//!
//! NOTE: each API server counts only its own admissions between reads, so with several
//! servers an instance can pass `max_queued_jobs` by what the others admit in that second.

use super::error::ApiError;
#[cfg(test)]
use crate::config::InstanceLimitOverrides;
use crate::config::{InstanceLimits, LimitSettings};
use crate::queue::Queue;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a queue depth read from the queue is trusted.
const DEPTH_TTL: Duration = Duration::from_secs(1);

/// Retry-After sent when the instance's queue is full, in seconds.
const QUEUE_FULL_RETRY: u64 = 60;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by key, such as an instance or a submitter's address.
#[derive(Default)]
pub struct Buckets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Buckets kept before full ones are dropped, so that many addresses cannot grow the map
/// without bound.
const MAX_BUCKETS: usize = 10_000;

impl Buckets {
    /// Takes one token from `key`'s bucket of `capacity` tokens refilled at `rate` per
    /// second, or returns the time until one is available.
    pub fn take(&self, key: &str, rate: f64, capacity: f64, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets.retain(|_, bucket| {
                let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
                bucket.tokens + elapsed * rate < capacity
            });
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
    }
}

struct Depth {
    jobs: u64,
    read_at: Instant,
}

pub struct IntakeLimits {
    settings: LimitSettings,
    /// The server-wide body limit, which an instance's own limit cannot raise.
    max_body_bytes: usize,
    deliveries: Buckets,
    /// Form submissions, by form and by form and address.
    pub submissions: Buckets,
    depths: Mutex<HashMap<String, Depth>>,
}

impl IntakeLimits {
    pub fn new(settings: LimitSettings, max_body_bytes: usize) -> Self {
        Self {
            settings,
            max_body_bytes,
            deliveries: Buckets::default(),
            submissions: Buckets::default(),
            depths: Mutex::default(),
        }
    }

    fn of(&self, instance: &str) -> InstanceLimits {
        self.settings.for_instance(instance)
    }

    /// Rejects a body larger than the instance's limit.
    pub fn check_body(&self, instance: &str, len: usize) -> Result<(), ApiError> {
        let limit = self
            .of(instance)
            .max_body_bytes
            .unwrap_or(self.max_body_bytes)
            .min(self.max_body_bytes);
        if len > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        Ok(())
    }

    /// Takes one delivery from the instance's bucket, or returns 429 with the wait for one.
    pub fn take_delivery(&self, instance: &str, now: Instant) -> Result<(), ApiError> {
        let limits = self.of(instance);
        if limits.deliveries_per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(limits.deliveries_per_second);
        let capacity = f64::from(limits.burst.max(1));
        let Err(wait) = self.deliveries.take(instance, rate, capacity, now) else {
            return Ok(());
        };
        let wait = wait.as_secs_f64().ceil().max(1.0);
        Err(ApiError::TooManyRequests {
            message: format!(
                "instance {instance:?} sent more than {} deliveries per second; \
                 limits.deliveries_per_second sets the rate",
                limits.deliveries_per_second
            ),
            retry_after: wait as u64,
        })
    }

    /// Rejects deliveries while the instance has `max_queued_jobs` jobs waiting or running.
    pub async fn check_queue(&self, instance: &str, queue: &dyn Queue) -> Result<(), ApiError> {
        let max = self.of(instance).max_queued_jobs;
        if max == 0 {
            return Ok(());
        }
        let cached = {
            let depths = self.depths.lock().unwrap_or_else(|p| p.into_inner());
            depths
                .get(instance)
                .filter(|depth| depth.read_at.elapsed() < DEPTH_TTL)
                .map(|depth| depth.jobs)
        };
        let jobs = match cached {
            Some(jobs) => jobs,
            None => {
                let stats = queue
                    .stats(Some(instance))
                    .await
                    .map_err(|err| ApiError::Unavailable(err.to_string()))?;
                let jobs = stats.ready + stats.delayed + stats.leased;
                let mut depths = self.depths.lock().unwrap_or_else(|p| p.into_inner());
                let read_at = Instant::now();
                depths.insert(instance.to_string(), Depth { jobs, read_at });
                jobs
            }
        };
        if jobs >= max {
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "instance {instance:?} has {jobs} jobs waiting, the limit of \
                     limits.max_queued_jobs; send the delivery again later"
                ),
                retry_after: QUEUE_FULL_RETRY,
            });
        }
        Ok(())
    }

    /// Counts jobs just admitted, until the next read from the queue.
    pub fn admitted(&self, instance: &str, jobs: usize) {
        let mut depths = self.depths.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(depth) = depths.get_mut(instance) {
            depth.jobs += jobs as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: u32, burst: u32) -> IntakeLimits {
        let settings = LimitSettings {
            deliveries_per_second: per_second,
            burst,
            ..LimitSettings::default()
        };
        IntakeLimits::new(settings, 1000)
    }

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let limits = limits(2, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limits.take_delivery("forum", start).is_ok());
        }
        let Err(ApiError::TooManyRequests { retry_after, .. }) =
            limits.take_delivery("forum", start)
        else {
            panic!("the fourth delivery must wait");
        };
        assert_eq!(retry_after, 1);
        // Half a second refills one delivery at two per second.
        let later = start + Duration::from_millis(500);
        assert!(limits.take_delivery("forum", later).is_ok());
        assert!(limits.take_delivery("forum", later).is_err());
    }

    #[test]
    fn instances_have_separate_buckets() {
        let limits = limits(1, 1);
        let now = Instant::now();
        assert!(limits.take_delivery("noisy", now).is_ok());
        assert!(limits.take_delivery("noisy", now).is_err());
        assert!(limits.take_delivery("quiet", now).is_ok());
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let limits = limits(0, 0);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(limits.take_delivery("forum", now).is_ok());
        }
    }

    #[test]
    fn instance_body_limit_cannot_exceed_the_server_limit() {
        let mut settings = LimitSettings::default();
        for (name, bytes) in [("small", 100), ("large", 5000)] {
            let own = InstanceLimitOverrides {
                max_body_bytes: Some(bytes),
                ..InstanceLimitOverrides::default()
            };
            settings.instances.insert(name.into(), own);
        }
        let limits = IntakeLimits::new(settings, 1000);
        assert!(limits.check_body("small", 100).is_ok());
        assert!(limits.check_body("small", 101).is_err());
        assert!(limits.check_body("large", 1001).is_err());
        assert!(limits.check_body("other", 1000).is_ok());
    }
}
