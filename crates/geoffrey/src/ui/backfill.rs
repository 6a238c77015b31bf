//! The Mailchimp backfill of one instance: start, pause and resume it, and follow its
//! progress, which htmx refreshes while it runs.

use super::activity::{display_time, instance_error};
use super::session::Viewer;
use super::{ApiFailure, Ui, UiError, render};
use crate::apps::mailchimp::backfill::{self, Progress};
use crate::ui::Authorized;
use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::{Value, json};

/// The backfill page's view of the instance: whether Mailchimp is configured, and the progress.
struct Status {
    /// The instance has the Mailchimp app.
    configured: bool,
    /// The instance has a Discourse API key, which the backfill reads the forum's users with.
    has_api_key: bool,
    /// The backfill's progress, if one started.
    progress: Option<Progress>,
}

async fn read_status(ui: &Ui, name: &str) -> Result<Status, UiError> {
    let config = ui
        .services
        .configs
        .get(name)
        .await
        .map_err(instance_error)?;
    let configured = config.config.apps.contains_key("mailchimp");
    let has_api_key = config
        .config
        .discourse_api_key
        .as_ref()
        .is_some_and(|key| !key.is_empty());
    let progress = backfill::progress(&ui.services, name).await?;
    Ok(Status {
        configured,
        has_api_key,
        progress,
    })
}

/// Formats a stored RFC 3339 time as the other pages show times, or returns it unchanged
/// when it does not parse.
fn display_stored_time(text: &str) -> String {
    let format = time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(text, &format) {
        Ok(at) => display_time(at),
        Err(_) => text.to_string(),
    }
}

/// Returns `part` as a percentage of `whole`, to one decimal.
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

/// Returns what the progress section shows: the numbers, the shares of the read users for
/// the bar, and which buttons apply. Starting and resuming need the Mailchimp app and a
/// Discourse API key.
fn view(name: &str, status: &Status) -> Value {
    let progress = status.progress.as_ref();
    let ready = status.configured && status.has_api_key;
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
            "started_at": display_stored_time(&p.started_at),
            "updated_at": display_stored_time(&p.updated_at),
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
        "configured": status.configured,
        "missing_api_key": status.configured && !status.has_api_key,
        "progress": progress,
        "running": running,
        "can_start": ready && !running,
        "start_label": if state.is_some() { "Start over" } else { "Start the backfill" },
        "can_pause": running,
        "can_resume": ready && matches!(state, Some("paused" | "failed")),
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
pub async fn page(Authorized { ui, viewer, name }: Authorized) -> Result<Html<String>, UiError> {
    let status = read_status(&ui, &name).await?;
    let section = view(&name, &status);
    render::page(
        "backfill.html",
        &viewer,
        page_context(&viewer, &name, section, None),
    )
}

/// `GET /ui/instances/{name}/backfill/progress`: the progress section alone, which htmx
/// swaps in every two seconds while the backfill runs.
pub async fn progress_fragment(
    Authorized { ui, viewer, name }: Authorized,
) -> Result<Html<String>, UiError> {
    let status = read_status(&ui, &name).await?;
    let section = view(&name, &status);
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
    Authorized { ui, viewer, name }: Authorized,
    Path((_, action)): Path<(String, String)>,
) -> Result<Response, UiError> {
    match act(&ui, &viewer, &name, &action).await {
        Ok(_) => Ok(Redirect::to(&format!("/ui/instances/{name}/backfill")).into_response()),
        Err(UiError::Conflict(message)) => {
            let status = read_status(&ui, &name).await?;
            let section = view(&name, &status);
            let context = page_context(&viewer, &name, section, Some(message));
            let page = render::page("backfill.html", &viewer, context)?;
            Ok((StatusCode::CONFLICT, page).into_response())
        }
        Err(other) => Err(other),
    }
}

/// `GET /api/v1/instances/{name}/backfill`: `{"configured", "progress"}`, where `progress`
/// is null until a backfill starts.
pub async fn json(Authorized { ui, name, .. }: Authorized) -> Result<Json<Value>, ApiFailure> {
    let status = read_status(&ui, &name).await?;
    Ok(Json(
        json!({ "configured": status.configured, "progress": status.progress }),
    ))
}

/// `POST /api/v1/instances/{name}/backfill/{start|pause|resume}`: the progress after the
/// action, or 409 with the reason when the backfill's state does not allow it.
pub async fn action_json(
    Authorized { ui, viewer, name }: Authorized,
    Path((_, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiFailure> {
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
        let mut status = Status {
            configured: true,
            has_api_key: true,
            progress: Some(progress.clone()),
        };
        let running = view("forum", &status);
        assert_eq!(running["can_pause"], true);
        assert_eq!(running["can_start"], false);
        assert_eq!(running["can_resume"], false);
        assert_eq!(running["progress"]["shares"]["added"], 75.0);

        progress.state = "paused".into();
        status.progress = Some(progress.clone());
        let paused = view("forum", &status);
        assert_eq!(paused["can_resume"], true);
        assert_eq!(paused["can_start"], true);
        assert_eq!(paused["start_label"], "Start over");

        status.has_api_key = false;
        let without_key = view("forum", &status);
        assert_eq!(without_key["missing_api_key"], true);
        assert_eq!(without_key["can_start"], false);
        assert_eq!(without_key["can_resume"], false);

        let unconfigured = view(
            "forum",
            &Status {
                configured: false,
                has_api_key: false,
                progress: None,
            },
        );
        assert_eq!(unconfigured["can_start"], false);
        assert_eq!(unconfigured["missing_api_key"], false);
        assert_eq!(unconfigured["progress"], Value::Null);
    }

    #[test]
    fn stored_times_read_like_the_logs() {
        assert_eq!(
            display_stored_time("2026-12-04T23:22:55.965Z"),
            "2026-12-04 23:22:55 UTC"
        );
        assert_eq!(display_stored_time("not a time"), "not a time");
    }
}
