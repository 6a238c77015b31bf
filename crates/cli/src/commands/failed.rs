//! `geoffrey failed list|replay|discard`.

use crate::args::FailedCommand;
use geoffrey::queue::failed::{FailedJobFilter, replay_matching};
use geoffrey::services::Services;
use std::sync::Arc;

pub async fn run(services: Arc<Services>, command: FailedCommand) -> anyhow::Result<()> {
    let queue = &services.queue;
    match command {
        FailedCommand::List { name, limit } => {
            ensure_instance(&services, &name).await?;
            let failed = queue.failed_jobs(&name, limit).await?;
            if failed.is_empty() {
                eprintln!("No failed jobs for {name:?}.");
            }
            for item in failed {
                let job = &item.job;
                let target = job
                    .spec
                    .target
                    .as_deref()
                    .map(|t| format!("[{t}]"))
                    .unwrap_or_default();
                crate::output::out!(
                    "{id} {app}.{feature}{target} {event} attempts {attempts}: {reason}",
                    id = job.id,
                    app = job.spec.app,
                    feature = job.spec.feature,
                    event = job.spec.event.name,
                    attempts = job.attempt,
                    reason = item.reason,
                );
            }
        }
        FailedCommand::Replay { name, job_ids, all } => {
            ensure_instance(&services, &name).await?;
            let mut replayed = 0;
            if all {
                let every = FailedJobFilter::default();
                replayed = replay_matching(queue.as_ref(), &name, &every).await?;
            } else {
                for id in &job_ids {
                    queue.replay(&name, id).await?;
                    replayed += 1;
                }
            }
            eprintln!("Replayed {replayed} failed job(s) of {name:?}.");
        }
        FailedCommand::Discard { name, job_ids } => {
            ensure_instance(&services, &name).await?;
            for id in &job_ids {
                queue.discard(&name, id).await?;
            }
            eprintln!("Discarded {} failed job(s) of {name:?}.", job_ids.len());
        }
    }
    Ok(())
}

async fn ensure_instance(services: &Services, name: &str) -> anyhow::Result<()> {
    services.configs.get(name).await?;
    Ok(())
}
