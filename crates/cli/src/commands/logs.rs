//! `geoffrey logs`: an instance's job log, with filters and `--follow`.

use crate::args::LogsArgs;
use geoffrey::instance::InstanceError;
use geoffrey::services::Services;
use geoffrey::store::{LogEntry, LogQuery, Outcome};
use std::sync::Arc;
use std::time::Duration;

const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(services: Arc<Services>, args: LogsArgs) -> anyhow::Result<()> {
    let outcome = args
        .outcome
        .as_deref()
        .map(str::parse::<Outcome>)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let since = match args.since {
        Some(age) => {
            let age = time::Duration::try_from(Duration::from(age))?;
            let since = services.clock.now().checked_sub(age);
            Some(since.ok_or_else(|| {
                anyhow::anyhow!("--since reaches before the year -9999; use a shorter age")
            })?)
        }
        None => None,
    };
    let mut query = LogQuery {
        app: args.app.clone(),
        feature: args.feature.clone(),
        outcome,
        event: args.event.clone(),
        job_id: None,
        since,
        until: None,
        before: args.before.clone(),
        after: None,
        limit: args.limit,
    };
    let store = &services.store;
    let page = store
        .query_logs(&args.name, &query)
        .await
        .map_err(InstanceError::from)?;
    let newest = page.entries.first().map(|entry| entry.id.clone());
    for entry in page.entries.iter().rev() {
        print_entry(entry, args.json)?;
    }
    if !args.follow {
        if let Some(cursor) = page.next_before {
            eprintln!(
                "Older entries: geoffrey logs {} --before {cursor}",
                args.name
            );
        }
        return Ok(());
    }

    query.before = None;
    query.after = newest.or_else(|| Some(uuid::Uuid::nil().to_string()));
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let page = store.query_logs(&args.name, &query).await?;
        for entry in &page.entries {
            print_entry(entry, args.json)?;
        }
        if let Some(last) = page.entries.last() {
            query.after = Some(last.id.clone());
        }
    }
}

fn print_entry(entry: &LogEntry, json: bool) -> anyhow::Result<()> {
    if json {
        crate::output::out!("{}", serde_json::to_string(entry)?);
        return Ok(());
    }
    let at = geoffrey::store::timestamp::format(entry.at);
    let target = entry
        .target
        .as_deref()
        .map(|t| format!("[{t}]"))
        .unwrap_or_default();
    let event_id = entry
        .event_id
        .as_deref()
        .map(|id| format!(" #{id}"))
        .unwrap_or_default();
    let status = entry
        .status
        .map(|s| format!(" HTTP {s}"))
        .unwrap_or_default();
    // A skipped job succeeded without doing anything; its reason is in the response.
    let skipped = entry
        .response
        .as_deref()
        .filter(|r| r.starts_with("skipped: "));
    let error = entry
        .error
        .as_deref()
        .map(|e| format!(" error: {e}"))
        .or_else(|| skipped.map(|reason| format!(" {reason}")))
        .unwrap_or_default();
    crate::output::out!(
        "{at} {outcome:<20} {app}.{feature}{target} {event}{event_id} attempt {attempt}{status} \
         {duration}ms{error} job {job}",
        outcome = entry.outcome.as_str(),
        app = entry.app,
        feature = entry.feature,
        event = entry.event,
        attempt = entry.attempt,
        duration = entry.duration_ms,
        job = entry.job_id,
    );
    Ok(())
}
