//! Backfill: adds every existing forum user to the audience, through Discourse's admin user
//! list and Mailchimp's batch subscribe.
//!
//! One job works through the user list a page at a time and saves its progress in the
//! instance database (document [`PROGRESS_ID`]) after each page. After a time budget it goes
//! back to the queue to continue ([`Attempt::continue_later`]), so a large forum never keeps
//! a worker beyond its job timeout. A crash repeats at most the page in flight, and
//! repeating a page is harmless: batch subscribe runs with `update_existing: false`, so
//! members already in the audience, whatever their status, are reported as existing and
//! left untouched. That also means the backfill never re-subscribes anyone.
//!
//! The job sends one request at a time, so it holds at most one of the API key's connection
//! slots and live events of other instances keep the rest.
//!
//! NOTE: the backfill writes no per-user app state. A backfilled user is recorded at their
//! next `user_updated`, so their group tags and email changes apply only from then on.

use super::client::{Failure, send};
use super::config::{ConsentMode, MailchimpConfig};
use crate::apps::{Attempt, AttemptError, FeatureContext};
use crate::discourse::{DiscourseClient, DiscourseError};
use crate::event::Event;
use crate::queue::{Delivery, NewJob};
use crate::services::Services;
use crate::store::{StoreError, timestamp};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Id of the progress document in the instance database.
pub const PROGRESS_ID: &str = "mailchimp:backfill";

/// Error messages kept in the progress document; older ones are dropped.
const MAX_ERROR_SAMPLES: usize = 20;

/// Share of the job timeout one run of the job may use before continuing later.
const BUDGET_SHARE: u32 = 2;

/// Progress of a backfill, as stored and as shown by the CLI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// `running`, `paused`, `failed` or `done`.
    pub state: String,
    /// Id of the current run. Only the job of this run works on the backfill, so a job of an
    /// earlier run (a replayed failed job, a job still queued when the backfill was resumed)
    /// stops at once.
    pub run_id: String,
    /// Reason of the failure, for state `failed`.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Next page of Discourse's user list to read (1-based).
    pub next_page: usize,
    /// Users read from Discourse.
    pub read: u64,
    /// Users added to the audience.
    pub added: u64,
    /// Users already in the audience, left as they were.
    pub existing: u64,
    /// Users not sent: staged, without an email, or without consent.
    pub skipped: u64,
    /// Users Mailchimp rejected.
    pub errors: u64,
    /// The latest rejections, "address: reason".
    pub error_samples: Vec<String>,
    pub started_at: String,
    pub updated_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("instance {0:?} has no mailchimp app configured")]
    NotConfigured(String),
    #[error("a backfill of {0:?} is already running; pause it first to start over")]
    AlreadyRunning(String),
    #[error("no backfill of {0:?} to resume; start one")]
    NothingToResume(String),
    #[error(transparent)]
    Instance(#[from] crate::instance::InstanceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
}

fn now() -> String {
    timestamp::format(time::OffsetDateTime::now_utc())
}

/// Reads a backfill's progress, if one was ever started.
pub async fn progress(
    services: &Services,
    instance: &str,
) -> Result<Option<Progress>, BackfillError> {
    services.configs.get(instance).await?;
    Ok(read(services.store.as_ref(), instance)
        .await?
        .map(|(_, progress)| progress))
}

async fn read(
    store: &dyn crate::store::Store,
    instance: &str,
) -> Result<Option<(String, Progress)>, StoreError> {
    let Some(document) = store.get(instance, PROGRESS_ID).await? else {
        return Ok(None);
    };
    let progress = serde_json::from_value(document.body)
        .map_err(|err| StoreError::Corrupt(err.to_string()))?;
    Ok(Some((document.rev, progress)))
}

async fn write(
    store: &dyn crate::store::Store,
    instance: &str,
    rev: Option<&str>,
    progress: &Progress,
) -> Result<String, StoreError> {
    let body =
        serde_json::to_value(progress).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    store.put(instance, PROGRESS_ID, rev, &body).await
}

/// Starts a backfill from the first page, unless one is running.
pub async fn start(services: &Services, instance: &str) -> Result<Progress, BackfillError> {
    let config = services.configs.get(instance).await?;
    if !config.config.apps.contains_key("mailchimp") {
        return Err(BackfillError::NotConfigured(instance.to_string()));
    }
    let current = read(services.store.as_ref(), instance).await?;
    if matches!(&current, Some((_, progress)) if progress.state == "running") {
        return Err(BackfillError::AlreadyRunning(instance.to_string()));
    }
    let progress = Progress {
        state: "running".into(),
        run_id: uuid::Uuid::now_v7().to_string(),
        next_page: 1,
        started_at: now(),
        updated_at: now(),
        ..Progress::default()
    };
    let rev = current.as_ref().map(|(rev, _)| rev.as_str());
    write(services.store.as_ref(), instance, rev, &progress).await?;
    enqueue(services, instance, &progress.run_id).await?;
    Ok(progress)
}

/// Stops a running backfill after the page in flight.
pub async fn pause(services: &Services, instance: &str) -> Result<Progress, BackfillError> {
    set_state(services, instance, "paused").await
}

/// Continues a paused or failed backfill where it stopped. On a running backfill it starts a
/// new run from where that one is, for a backfill whose job failed for good. The job of the
/// old run stops when it finds the new one.
pub async fn resume(services: &Services, instance: &str) -> Result<Progress, BackfillError> {
    let progress = set_state(services, instance, "running").await?;
    enqueue(services, instance, &progress.run_id).await?;
    Ok(progress)
}

async fn set_state(
    services: &Services,
    instance: &str,
    state: &str,
) -> Result<Progress, BackfillError> {
    let store = services.store.as_ref();
    // The running job saves progress after every page, so a write may meet a newer revision;
    // reading again and reapplying the state change resolves that.
    loop {
        let Some((rev, mut progress)) = read(store, instance).await? else {
            return Err(BackfillError::NothingToResume(instance.to_string()));
        };
        if progress.state == "done" {
            return Err(BackfillError::NothingToResume(instance.to_string()));
        }
        if state == "running" {
            progress.run_id = uuid::Uuid::now_v7().to_string();
            progress.last_error = None;
        }
        progress.state = state.to_string();
        progress.updated_at = now();
        match write(store, instance, Some(&rev), &progress).await {
            Ok(_) => return Ok(progress),
            Err(StoreError::Conflict { .. }) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

async fn enqueue(services: &Services, instance: &str, run_id: &str) -> Result<(), BackfillError> {
    let config = services.configs.get(instance).await?;
    let request_id = run_id.to_string();
    let event = Event {
        id: None,
        name: "mailchimp_backfill".to_string(),
        kind: "geoffrey".to_string(),
        body: json!({ "geoffrey": { "run_id": run_id } }),
        body_sha256: request_id.clone(),
    };
    let job = NewJob {
        instance: instance.to_string(),
        app: "mailchimp".to_string(),
        feature: super::BACKFILL.to_string(),
        target: None,
        config_rev: config.rev.clone(),
        event,
    };
    let delivery = Delivery {
        instance: instance.to_string(),
        event_id: None,
        content_key: format!("mailchimp_backfill:{request_id}"),
    };
    services.queue.admit(&delivery, vec![job]).await?;
    Ok(())
}

fn failed(message: String, transient: bool) -> Attempt {
    let error = if transient {
        AttemptError::Transient(message)
    } else {
        AttemptError::Permanent(message)
    };
    Attempt {
        error: Some(error),
        ..Attempt::default()
    }
}

/// Turns one Discourse user into a batch subscribe member, or `None` to skip them.
fn member(config: &MailchimpConfig, user: &Value) -> Option<Value> {
    if user.get("staged").and_then(Value::as_bool) == Some(true)
        || user.get("active").and_then(Value::as_bool) == Some(false)
    {
        return None;
    }
    let email = user
        .get("email")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|e| !e.is_empty())?;
    if !super::features::has_consent(config, user) {
        return None;
    }
    let status = match config.consent.mode {
        ConsentMode::DoubleOptIn => "pending",
        ConsentMode::UserField | ConsentMode::Everyone => "subscribed",
    };
    let mut member = json!({
        "email_address": email,
        "status": status,
        "merge_fields": super::features::merge_fields(config, user),
    });
    if !config.static_tags.is_empty() {
        member["tags"] = json!(config.static_tags);
    }
    Some(member)
}

/// Runs the backfill for one time budget.
pub async fn run(
    context: &FeatureContext<'_>,
    config: &MailchimpConfig,
    job_timeout: Duration,
) -> Attempt {
    let instance = &context.job.spec.instance;
    let store = context.store;
    let run_id = context.job.spec.event.payload()["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let discourse = match DiscourseClient::new(context.config, context.http) {
        Ok(client) => client,
        Err(err) => return fail(store, instance, &run_id, err.to_string()).await,
    };
    let deadline = Instant::now() + job_timeout / BUDGET_SHARE;
    loop {
        let progress = match read(store, instance).await {
            Ok(Some((_, progress))) => progress,
            Ok(None) => return skipped("no backfill was started"),
            Err(err) => {
                return failed(format!("reading the backfill progress failed: {err}"), true);
            }
        };
        if progress.run_id != run_id {
            return skipped("a newer run of the backfill took over");
        }
        if progress.state != "running" {
            return skipped(&format!("the backfill is {}", progress.state));
        }
        if Instant::now() >= deadline {
            return Attempt {
                response: Some(summary(&progress)),
                continue_later: true,
                ..Attempt::default()
            };
        }

        let page = progress.next_page;
        let users = match discourse.active_users(page).await {
            Ok(users) => users,
            Err(DiscourseError::RateLimited(wait)) if Instant::now() + wait < deadline => {
                tokio::time::sleep(wait).await;
                continue;
            }
            Err(err @ (DiscourseError::RateLimited(_) | DiscourseError::Transient(_))) => {
                return failed(err.to_string(), true);
            }
            Err(err) => return fail(store, instance, &run_id, err.to_string()).await,
        };
        let mut counts = Progress::default();
        if !users.is_empty() {
            if let Err(attempt) = subscribe_page(context, config, &users, &mut counts).await {
                if let Some(
                    AttemptError::Permanent(message) | AttemptError::Configuration(message),
                ) = &attempt.error
                {
                    fail(store, instance, &run_id, message.clone()).await;
                }
                return attempt;
            }
        }
        let saved = match record_page(store, instance, page, users.is_empty(), &counts).await {
            Ok(saved) => saved,
            Err(err) => return failed(format!("saving the backfill progress failed: {err}"), true),
        };
        if saved.state == "done" {
            return Attempt {
                response: Some(summary(&saved)),
                ..Attempt::default()
            };
        }
    }
}

/// Adds one page's counts to the progress and moves to the next page. The state may have
/// changed meanwhile (a pause, a new run), so this reads, applies and writes until the write
/// goes through, keeping the new state. The first run to record a page counts it; a page
/// another run already recorded is not counted again.
async fn record_page(
    store: &dyn crate::store::Store,
    instance: &str,
    page: usize,
    last: bool,
    counts: &Progress,
) -> Result<Progress, StoreError> {
    loop {
        let Some((rev, mut progress)) = read(store, instance).await? else {
            return Err(StoreError::Corrupt(
                "the backfill progress disappeared".into(),
            ));
        };
        if progress.next_page != page {
            return Ok(progress);
        }
        progress.next_page += 1;
        progress.read += counts.read;
        progress.added += counts.added;
        progress.existing += counts.existing;
        progress.skipped += counts.skipped;
        progress.errors += counts.errors;
        progress
            .error_samples
            .extend(counts.error_samples.iter().cloned());
        let excess = progress
            .error_samples
            .len()
            .saturating_sub(MAX_ERROR_SAMPLES);
        progress.error_samples.drain(..excess);
        if last && progress.state == "running" {
            progress.state = "done".into();
        }
        progress.updated_at = now();
        match write(store, instance, Some(&rev), &progress).await {
            Ok(_) => return Ok(progress),
            Err(StoreError::Conflict { .. }) => continue,
            Err(err) => return Err(err),
        }
    }
}

/// Marks the backfill as failed with `message`, if this run still owns it, and returns the
/// permanent failure for the log.
async fn fail(
    store: &dyn crate::store::Store,
    instance: &str,
    run_id: &str,
    message: String,
) -> Attempt {
    for _ in 0..3 {
        let Ok(Some((rev, mut progress))) = read(store, instance).await else {
            break;
        };
        if progress.run_id != run_id {
            break;
        }
        progress.state = "failed".into();
        progress.last_error = Some(message.clone());
        progress.updated_at = now();
        match write(store, instance, Some(&rev), &progress).await {
            Err(StoreError::Conflict { .. }) => continue,
            _ => break,
        }
    }
    failed(message, false)
}

fn skipped(reason: &str) -> Attempt {
    Attempt {
        response: Some(format!("skipped: {reason}")),
        ..Attempt::default()
    }
}

fn summary(progress: &Progress) -> String {
    format!(
        "{}: {} read, {} added, {} existing, {} skipped, {} errors, next page {}",
        progress.state,
        progress.read,
        progress.added,
        progress.existing,
        progress.skipped,
        progress.errors,
        progress.next_page
    )
}

/// Sends one page of users in one batch subscribe call (a page of 100 is under Mailchimp's
/// 500) and counts the result.
async fn subscribe_page(
    context: &FeatureContext<'_>,
    config: &MailchimpConfig,
    users: &[Value],
    progress: &mut Progress,
) -> Result<(), Attempt> {
    let members: Vec<Value> = users
        .iter()
        .filter_map(|user| member(config, user))
        .collect();
    progress.read += users.len() as u64;
    progress.skipped += (users.len() - members.len()) as u64;
    if members.is_empty() {
        return Ok(());
    }
    let body = json!({ "members": members, "update_existing": false });
    let path = format!("/lists/{}", config.list_id);
    let reply = send(context, config, Method::POST, &path, Some(&body)).await;
    if !reply.is_success() {
        let mut reply = reply;
        if reply.is_not_found() {
            reply.failure = Some(Failure::Configuration(format!(
                "audience {:?} not found; check list_id",
                config.list_id
            )));
        }
        return Err(reply.into_attempt());
    }
    let result: Value = serde_json::from_str(&reply.text).unwrap_or(Value::Null);
    let created = result
        .get("new_members")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    progress.added += created as u64;
    for error in result
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if error.get("error_code").and_then(Value::as_str) == Some("ERROR_CONTACT_EXISTS") {
            progress.existing += 1;
            continue;
        }
        progress.errors += 1;
        let email = error
            .get("email_address")
            .and_then(Value::as_str)
            .unwrap_or("unknown address");
        let reason = error
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("rejected");
        progress.error_samples.push(format!("{email}: {reason}"));
    }
    Ok(())
}
