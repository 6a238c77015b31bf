//! The Mailchimp backfill of one instance: start, pause and resume it, and follow its
//! progress, which htmx refreshes while it runs.

use super::activity::instance_error;
use super::session::Viewer;
use super::{ApiFailure, Ui, UiError, render};
use crate::apps::mailchimp::backfill::{self, Progress};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};
use std::sync::Arc;

/// Reads whether the instance has the Mailchimp app, and its backfill's progress if one
/// started.
async fn status(ui: &Ui, name: &str) -> Result<(bool, Option<Progress>), UiError> {
    let config = ui
        .services
        .configs
        .get(name)
        .await
        .map_err(instance_error)?;
    let configured = config.config.apps.contains_key("mailchimp");
    let progress = backfill::progress(&ui.services, name).await?;
    Ok((configured, progress))
}

/// Returns `part` as a percentage of `whole`, to one decimal.
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

/// Returns what the progress section shows: the numbers, the shares of the read users for
/// the bar, and which buttons apply.
fn view(name: &str, configured: bool, progress: Option<&Progress>) -> Value {
    let state = progress.map(|p| p.state.as_str());
    let running = state == Some("running");
    let progress = progress.map(|p| {
        json!({
            "state": p.state,
            "read": p.read,
            "added": p.added,
            "existing": p.existing,
            "skipped": p.skipped,
            "errors": p.errors,
            "next_page": p.next_page,
            "error_samples": p.error_samples,
            "last_error": p.last_error,
            "started_at": p.started_at,
            "updated_at": p.updated_at,
            "shares": {
                "added": share(p.added, p.read),
                "existing": share(p.existing, p.read),
                "skipped": share(p.skipped, p.read),
                "errors": share(p.errors, p.read),
            },
        })
    });
    json!({
        "instance": name,
        "configured": configured,
        "progress": progress,
        "running": running,
        "can_start": configured && !running,
        "start_label": if state.is_some() { "Start over" } else { "Start the backfill" },
        "can_pause": running,
        "can_resume": configured && matches!(state, Some("paused" | "failed")),
    })
}

fn page_context(viewer: &Viewer, name: &str, section: Value, error: Option<String>) -> Value {
    json!({
        "title": format!("Backfill of {name}"),
        "instance": name,
        "tab": "backfill",
        "section": section,
        "error": error,
        "csrf": viewer.session.csrf,
    })
}

/// `GET /ui/instances/{name}/backfill`.
pub async fn page(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Arc<Viewer>>,
    Path(name): Path<String>,
) -> Result<Html<String>, UiError> {
    ui.authorize(&viewer, &name).await?;
    let (configured, progress) = status(&ui, &name).await?;
    let section = view(&name, configured, progress.as_ref());
    render::page(
        "backfill.html",
        &viewer,
        page_context(&viewer, &name, section, None),
    )
}

/// `GET /ui/instances/{name}/backfill/progress`: the progress section alone, which htmx
/// swaps in every two seconds while the backfill runs.
pub async fn progress_fragment(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Arc<Viewer>>,
    Path(name): Path<String>,
) -> Result<Html<String>, UiError> {
    ui.authorize(&viewer, &name).await?;
    let (configured, progress) = status(&ui, &name).await?;
    let section = view(&name, configured, progress.as_ref());
    let context = json!({ "section": section, "csrf": viewer.session.csrf });
    Ok(Html(render::render("backfill_progress.html", &context)?))
}

/// Runs `start`, `pause` or `resume`.
async fn act(ui: &Ui, viewer: &Viewer, name: &str, action: &str) -> Result<Progress, UiError> {
    let services = &ui.services;
    let progress = match action {
        "start" => backfill::start(services, name).await?,
        "pause" => backfill::pause(services, name).await?,
        "resume" => backfill::resume(services, name).await?,
        _ => {
            return Err(UiError::NotFound(format!(
                "no backfill action {action:?}; use start, pause or resume"
            )));
        }
    };
    tracing::info!(instance = %name, action, user = %viewer.session.user, "backfill changed in the web UI");
    Ok(progress)
}

/// `POST /ui/instances/{name}/backfill/{start|pause|resume}`: acts, then shows the page
/// again; a refused action shows the page with the reason.
pub async fn action_page(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Arc<Viewer>>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Response, UiError> {
    ui.authorize(&viewer, &name).await?;
    match act(&ui, &viewer, &name, &action).await {
        Ok(_) => Ok(Redirect::to(&format!("/ui/instances/{name}/backfill")).into_response()),
        Err(UiError::Conflict(message)) => {
            let (configured, progress) = status(&ui, &name).await?;
            let section = view(&name, configured, progress.as_ref());
            let context = page_context(&viewer, &name, section, Some(message));
            let page = render::page("backfill.html", &viewer, context)?;
            Ok((StatusCode::CONFLICT, page).into_response())
        }
        Err(other) => Err(other),
    }
}

/// `GET /api/v1/instances/{name}/backfill`: `{"configured", "progress"}`, where `progress`
/// is null until a backfill starts.
pub async fn json(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Arc<Viewer>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiFailure> {
    ui.authorize(&viewer, &name).await?;
    let (configured, progress) = status(&ui, &name).await?;
    Ok(Json(
        json!({ "configured": configured, "progress": progress }),
    ))
}

/// `POST /api/v1/instances/{name}/backfill/{start|pause|resume}`: the progress after the
/// action, or 409 with the reason when the backfill's state does not allow it.
pub async fn action_json(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Arc<Viewer>>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiFailure> {
    ui.authorize(&viewer, &name).await?;
    let progress = act(&ui, &viewer, &name, &action).await?;
    Ok(Json(json!({ "progress": progress })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_follow_the_state() {
        let mut progress = Progress {
            state: "running".into(),
            read: 200,
            added: 150,
            existing: 50,
            ..Progress::default()
        };
        let running = view("forum", true, Some(&progress));
        assert_eq!(running["can_pause"], true);
        assert_eq!(running["can_start"], false);
        assert_eq!(running["can_resume"], false);
        assert_eq!(running["progress"]["shares"]["added"], 75.0);

        progress.state = "paused".into();
        let paused = view("forum", true, Some(&progress));
        assert_eq!(paused["can_resume"], true);
        assert_eq!(paused["can_start"], true);
        assert_eq!(paused["start_label"], "Start over");

        let unconfigured = view("forum", false, None);
        assert_eq!(unconfigured["can_start"], false);
        assert_eq!(unconfigured["progress"], Value::Null);
    }
}
