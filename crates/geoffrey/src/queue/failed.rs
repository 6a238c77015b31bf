//! Operations on many failed jobs at once, shared by the CLI and the web UI.

use super::{FailedJob, Job, Queue, QueueError, QueueResult};
use std::collections::HashSet;

/// Failed jobs read per call while replaying; the replay repeats until none is left.
const REPLAY_BATCH: usize = 500;

/// Selects failed jobs by app and feature. An empty filter selects every failed job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedJobFilter {
    pub app: Option<String>,
    pub feature: Option<String>,
}

impl FailedJobFilter {
    pub fn matches(&self, job: &Job) -> bool {
        let app_matches = self.app.as_deref().is_none_or(|app| app == job.spec.app);
        let feature_matches = self
            .feature
            .as_deref()
            .is_none_or(|feature| feature == job.spec.feature);
        app_matches && feature_matches
    }
}

/// Lists the failed jobs of `instance` that match `filter`, oldest first, reading at most
/// `scan` failed jobs. Returns the matching jobs and whether `scan` cut the list short.
pub async fn matching(
    queue: &dyn Queue,
    instance: &str,
    filter: &FailedJobFilter,
    scan: usize,
) -> QueueResult<(Vec<FailedJob>, bool)> {
    // One more than `scan` shows whether the list goes on.
    let mut failed = queue.failed_jobs(instance, scan.saturating_add(1)).await?;
    let cut = failed.len() > scan;
    failed.truncate(scan);
    failed.retain(|item| filter.matches(&item.job));
    Ok((failed, cut))
}

/// Replays every failed job of `instance` that matches `filter` and returns how many it
/// replayed. Each job is replayed at most once per call, so a replayed job that fails again
/// at once does not keep the call going. Jobs discarded or replayed by someone else
/// meanwhile are skipped.
pub async fn replay_matching(
    queue: &dyn Queue,
    instance: &str,
    filter: &FailedJobFilter,
) -> QueueResult<usize> {
    let mut replayed = HashSet::new();
    // Failed jobs are listed oldest first and a replayed job leaves the list. So the jobs at
    // the front are those this call skipped, and each round reads past them.
    let mut kept = 0;
    loop {
        let limit = kept + REPLAY_BATCH;
        let batch = queue.failed_jobs(instance, limit).await?;
        let mut kept_now = 0;
        let mut progressed = false;
        for item in &batch {
            let id = &item.job.id;
            if !filter.matches(&item.job) || replayed.contains(id) {
                kept_now += 1;
                continue;
            }
            match queue.replay(instance, id).await {
                Ok(()) => {
                    replayed.insert(id.clone());
                    progressed = true;
                }
                Err(QueueError::FailedJobNotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        if !progressed || batch.len() < limit {
            return Ok(replayed.len());
        }
        kept = kept_now;
    }
}
