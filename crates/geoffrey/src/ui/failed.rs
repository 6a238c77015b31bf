//! The failed jobs of an instance: list them by app and feature, replay or discard one, and
//! replay every job that matches a filter after a confirmation page that shows how many.

use super::activity::{display_time_ms, is_plain_id, non_empty, query_string};
use super::session::Viewer;
use super::{ApiFailure, Ui, UiError, render};
use crate::queue::FailedJob;
use crate::queue::failed::{FailedJobFilter, matching, replay_matching};
use crate::ui::Authorized;
use axum::extract::{Path, Query};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Failed jobs read to find the matching ones. With more failed jobs, the page lists and
/// counts the matches among the oldest this many, and states that limit.
const SCAN_LIMIT: usize = 10_000;

/// Failed jobs the page lists at most.
const SHOWN_LIMIT: usize = 200;

/// The filter fields of the page, the forms and the API.
#[derive(Debug, Default, Deserialize)]
pub struct FilterFields {
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    feature: Option<String>,
}

impl FilterFields {
    fn filter(&self) -> FailedJobFilter {
        FailedJobFilter {
            app: non_empty(self.app.clone()),
            feature: non_empty(self.feature.clone()),
        }
    }
}

/// The list page's query: the filter and what the last action did.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    feature: Option<String>,
    /// How many jobs the last action replayed; a number, ignored otherwise.
    #[serde(default)]
    replayed: Option<String>,
    #[serde(default)]
    discarded: Option<String>,
}

/// One failed job as the page shows it.
#[derive(Debug, Serialize)]
struct FailedRow {
    id: String,
    failed_at: String,
    app: String,
    feature: String,
    target: Option<String>,
    event: String,
    event_id: Option<String>,
    attempt: u32,
    max_attempts: u32,
    reason: String,
}

impl FailedRow {
    fn new(item: &FailedJob) -> Self {
        let job = &item.job;
        Self {
            id: job.id.clone(),
            failed_at: display_time_ms(item.failed_at_ms),
            app: job.spec.app.clone(),
            feature: job.spec.feature.clone(),
            target: job.spec.target.clone(),
            event: job.spec.event.name.clone(),
            event_id: job.spec.event.id.clone(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            reason: item.reason.clone(),
        }
    }
}

fn filter_query(filter: &FailedJobFilter) -> String {
    query_string(&[
        ("app", filter.app.as_deref()),
        ("feature", filter.feature.as_deref()),
    ])
}

fn list_url(name: &str, filter: &FailedJobFilter, notice: (&str, usize)) -> String {
    let count = notice.1.to_string();
    let filters = filter_query(filter);
    let notice = query_string(&[(notice.0, Some(&count))]);
    match filters.is_empty() {
        true => format!("/ui/instances/{name}/failed?{notice}"),
        false => format!("/ui/instances/{name}/failed?{filters}&{notice}"),
    }
}

/// `GET /ui/instances/{name}/failed`.
pub async fn page(
    Authorized { ui, viewer, name }: Authorized,
    Query(query): Query<PageQuery>,
) -> Result<Html<String>, UiError> {
    let fields = FilterFields {
        app: query.app,
        feature: query.feature,
    };
    let filter = fields.filter();
    let count = |value: Option<String>| value.and_then(|value| value.parse::<usize>().ok());
    let queue = ui.services.queue.as_ref();
    let (found, cut) = matching(queue, &name, &filter, SCAN_LIMIT).await?;
    let total = queue.stats(Some(&name)).await?.failed;
    let rows: Vec<FailedRow> = found.iter().take(SHOWN_LIMIT).map(FailedRow::new).collect();
    render::page(
        "failed.html",
        &viewer,
        json!({
            "title": format!("Failed jobs of {name}"),
            "instance": name,
            "tab": "failed",
            "apps": ui.services.apps.names(),
            "filter": { "app": filter.app, "feature": filter.feature },
            "filtered": filter != FailedJobFilter::default(),
            "rows": rows,
            "matching": found.len(),
            "total": total,
            "scan_limit": SCAN_LIMIT,
            "cut": cut,
            "replayed": count(query.replayed),
            "discarded": count(query.discarded),
        }),
    )
}

/// The replay-all form: the filter, and `confirm=yes` once the person saw the count.
#[derive(Debug, Deserialize)]
pub struct ReplayAllForm {
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    feature: Option<String>,
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /ui/instances/{name}/failed/replay`. Without `confirm=yes` it renders a confirmation
/// page with the number of matching jobs. With it, it replays them and redirects to the list.
pub async fn replay_all_page(
    Authorized { ui, viewer, name }: Authorized,
    Form(form): Form<ReplayAllForm>,
) -> Result<Response, UiError> {
    let fields = FilterFields {
        app: form.app,
        feature: form.feature,
    };
    let filter = fields.filter();
    let queue = ui.services.queue.as_ref();
    if form.confirm.as_deref() != Some("yes") {
        let (found, cut) = matching(queue, &name, &filter, SCAN_LIMIT).await?;
        let page = render::page(
            "failed_confirm.html",
            &viewer,
            json!({
                "title": "Replay failed jobs",
                "instance": name,
                "tab": "failed",
                "filter": { "app": filter.app, "feature": filter.feature },
                "count": found.len(),
                "cut": cut,
                "back_url": format!("/ui/instances/{name}/failed?{}", filter_query(&filter)),
            }),
        )?;
        return Ok(page.into_response());
    }
    let replayed = replay_matching(queue, &name, &filter).await?;
    tracing::info!(instance = %name, user = %viewer.session.user, replayed, "failed jobs replayed in the web UI");
    Ok(Redirect::to(&list_url(&name, &filter, ("replayed", replayed))).into_response())
}

/// Replays or discards one failed job; `action` is `replay` or `discard`.
async fn change(
    ui: &Ui,
    viewer: &Viewer,
    name: &str,
    job_id: &str,
    action: &str,
) -> Result<(), UiError> {
    let not_found = || UiError::NotFound(format!("no failed job {job_id:?} in instance {name:?}"));
    if !is_plain_id(job_id) {
        return Err(not_found());
    }
    let queue = &ui.services.queue;
    match action {
        "replay" => queue.replay(name, job_id).await?,
        "discard" => queue.discard(name, job_id).await?,
        _ => {
            return Err(UiError::NotFound(format!(
                "no action {action:?} on failed jobs; use replay or discard"
            )));
        }
    }
    tracing::info!(instance = %name, job_id, action, user = %viewer.session.user, "failed job changed in the web UI");
    Ok(())
}

/// `POST /ui/instances/{name}/failed/{job_id}/{replay|discard}`.
pub async fn change_page(
    Authorized { ui, viewer, name }: Authorized,
    Path((_, job_id, action)): Path<(String, String, String)>,
) -> Result<Redirect, UiError> {
    change(&ui, &viewer, &name, &job_id, &action).await?;
    let notice = if action == "replay" {
        "replayed"
    } else {
        "discarded"
    };
    Ok(Redirect::to(&list_url(
        &name,
        &FailedJobFilter::default(),
        (notice, 1),
    )))
}

/// `GET /api/v1/instances/{name}/failed?app=&feature=&limit=`: matching failed jobs, oldest
/// first, with their events.
pub async fn list_json(
    Authorized { ui, name, .. }: Authorized,
    Query(fields): Query<FilterFields>,
) -> Result<Json<Value>, ApiFailure> {
    let queue = ui.services.queue.as_ref();
    let (found, cut) = matching(queue, &name, &fields.filter(), SCAN_LIMIT)
        .await
        .map_err(UiError::from)?;
    let total = queue
        .stats(Some(&name))
        .await
        .map_err(UiError::from)?
        .failed;
    Ok(Json(json!({
        "failed": found,
        "matching": found.len(),
        "total": total,
        "scanned_all": !cut,
    })))
}

/// `POST /api/v1/instances/{name}/failed/replay` with `{"app", "feature"}` (both optional):
/// replays every matching failed job and returns how many.
pub async fn replay_all_json(
    Authorized { ui, viewer, name }: Authorized,
    Json(fields): Json<FilterFields>,
) -> Result<Json<Value>, ApiFailure> {
    let queue = ui.services.queue.as_ref();
    let replayed = replay_matching(queue, &name, &fields.filter())
        .await
        .map_err(UiError::from)?;
    tracing::info!(instance = %name, user = %viewer.session.user, replayed, "failed jobs replayed through the API");
    Ok(Json(json!({ "replayed": replayed })))
}

/// `POST /api/v1/instances/{name}/failed/{job_id}/{replay|discard}`.
pub async fn change_json(
    Authorized { ui, viewer, name }: Authorized,
    Path((_, job_id, action)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiFailure> {
    change(&ui, &viewer, &name, &job_id, &action).await?;
    Ok(Json(json!({ "job_id": job_id, "action": action })))
}

/// `DELETE /api/v1/instances/{name}/failed/{job_id}`: discards the failed job.
pub async fn discard_json(
    Authorized { ui, viewer, name }: Authorized,
    Path((_, job_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiFailure> {
    change(&ui, &viewer, &name, &job_id, "discard").await?;
    Ok(Json(json!({ "job_id": job_id, "action": "discard" })))
}
