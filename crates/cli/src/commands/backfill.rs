//! `geoffrey backfill start|status|pause|resume`: the Mailchimp backfill.

use crate::args::BackfillCommand;
use crate::output::out;
use geoffrey::apps::mailchimp::backfill::{self, Progress};
use geoffrey::services::Services;
use std::sync::Arc;

pub async fn run(services: Arc<Services>, command: BackfillCommand) -> anyhow::Result<()> {
    let progress = match command {
        BackfillCommand::Start { name } => backfill::start(&services, &name).await?,
        BackfillCommand::Pause { name } => backfill::pause(&services, &name).await?,
        BackfillCommand::Resume { name } => backfill::resume(&services, &name).await?,
        BackfillCommand::Status { name } => match backfill::progress(&services, &name).await? {
            Some(progress) => progress,
            None => anyhow::bail!(
                "no backfill of {name:?} was started; start one with `geoffrey backfill start {name}`"
            ),
        },
    };
    print(&progress);
    Ok(())
}

fn print(progress: &Progress) {
    out!("state:     {}", progress.state);
    out!(
        "read:      {} users (next page {})",
        progress.read,
        progress.next_page
    );
    out!("added:     {}", progress.added);
    out!("existing:  {} (left as they were)", progress.existing);
    out!(
        "skipped:   {} (staged, no email or no consent)",
        progress.skipped
    );
    out!("errors:    {}", progress.errors);
    for sample in &progress.error_samples {
        out!("  {sample}");
    }
    out!("started:   {}", progress.started_at);
    out!("updated:   {}", progress.updated_at);
}
