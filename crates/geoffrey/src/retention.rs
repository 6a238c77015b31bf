//! Deletion of job log entries older than `logs.retention`, in every instance database.
//!
//! Each round deletes in batches of [`BATCH`] entries with a pause between batches, so the
//! store keeps serving intake and workers while a large backlog goes. Every process that runs
//! workers runs the rounds. Two processes deleting at once only repeat some work, because
//! an entry deleted twice is gone either way.

use crate::services::Services;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Entries deleted per store request.
pub const BATCH: usize = 500;

/// Pause between two batches, which lets other writers take the database.
const PAUSE: Duration = Duration::from_millis(20);

/// Runs a round every `logs.purge_interval` until `shutdown` is cancelled. Returns at once
/// when `logs.retention` is 0.
pub async fn run(services: Arc<Services>, shutdown: CancellationToken) {
    let settings = services.settings.logs.clone();
    if settings.retention.is_zero() {
        return;
    }
    let mut ticks = tokio::time::interval(settings.purge_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let purge = purge_all(&services, settings.retention);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = purge => {}
        }
    }
}

/// Deletes the expired entries of every instance, and logs how many it deleted.
async fn purge_all(services: &Services, retention: Duration) {
    let cutoff = services.clock.now() - retention;
    let instances = match services.store.list_databases().await {
        Ok(instances) => instances,
        Err(err) => {
            tracing::warn!(error = %err, "cannot list the instances to delete old log entries");
            return;
        }
    };
    for instance in instances {
        match purge_instance(services, &instance, cutoff).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(%instance, deleted, "deleted old log entries"),
            Err(err) => {
                tracing::warn!(%instance, error = %err, "deleting old log entries failed");
            }
        }
    }
}

async fn purge_instance(
    services: &Services,
    instance: &str,
    cutoff: time::OffsetDateTime,
) -> Result<usize, crate::store::StoreError> {
    let mut total = 0;
    loop {
        let deleted = services.store.purge_logs(instance, cutoff, BATCH).await?;
        total += deleted;
        if deleted < BATCH {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}
