//! The JSON API of an instance's configuration, for scripts and for experts.

use super::{CONFLICT_MESSAGE, Failure, actor, run_check, view};
use crate::audit;
use crate::config_edit;
use crate::ui::Authorized;
use crate::ui::{ApiFailure, UiError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// Most audit entries one request returns.
const MAX_AUDIT_ENTRIES: usize = 500;

/// `GET /api/v1/instances/{name}/config`: the masked `CONFIG`, its revision, and the paths
/// of secrets that cannot be opened with the current key.
pub async fn get_config(
    Authorized { ui, name, .. }: Authorized,
) -> Result<Json<Value>, ApiFailure> {
    let shown = config_edit::show(&ui.services, &name)
        .await
        .map_err(|err| failure(err.into()))?;
    Ok(Json(json!({
        "rev": shown.rev,
        "unreadable": shown.unreadable_paths(),
        "config": shown.document,
    })))
}

fn failure(failure: Failure) -> ApiFailure {
    match failure {
        Failure::Fields(errors) => ApiFailure(UiError::BadRequest(
            errors
                .into_iter()
                .map(|error| format!("{}: {}", error.path, error.message))
                .collect::<Vec<_>>()
                .join("; "),
        )),
        Failure::Conflict(message) => ApiFailure(UiError::Conflict(message)),
        Failure::Other(err) => ApiFailure(err),
    }
}

/// Responds to a failed save or check: 422 with each invalid field, 409 for a stale revision.
fn rejected(failed: Failure) -> Result<Response, ApiFailure> {
    match failed {
        Failure::Fields(errors) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": "the configuration is invalid; nothing was saved",
                "fields": errors,
            })),
        )
            .into_response()),
        other => Err(failure(other)),
    }
}

/// `PUT /api/v1/instances/{name}/config` with `{"rev", "config"}`. Masked secrets keep their
/// stored values. Responds with `{"rev"}`, the new revision.
pub async fn put_config(
    Authorized { ui, viewer, name }: Authorized,
    body: Bytes,
) -> Result<Response, ApiFailure> {
    let request: Value = serde_json::from_slice(&body).map_err(|err| {
        UiError::BadRequest(format!(
            "the body is not valid JSON ({err}); send {{\"rev\": \"…\", \"config\": {{…}}}}"
        ))
    })?;
    let Some(rev) = request.get("rev").and_then(Value::as_str) else {
        return Err(UiError::BadRequest(
            "missing \"rev\": send the revision that GET …/config returned with the \
             configuration you edited"
                .to_string(),
        )
        .into());
    };
    let Some(document) = request.get("config").cloned() else {
        return Err(UiError::BadRequest("missing \"config\"".to_string()).into());
    };
    let saved = config_edit::save(&ui.services, &name, rev, document, &actor(&viewer, "api")).await;
    match saved {
        Ok(rev) => Ok(Json(json!({ "rev": rev })).into_response()),
        Err(err) => match Failure::from(err) {
            Failure::Conflict(_) => {
                let current = config_edit::show(&ui.services, &name)
                    .await
                    .map(|shown| shown.rev)
                    .ok();
                Ok((
                    StatusCode::CONFLICT,
                    Json(json!({ "error": CONFLICT_MESSAGE, "current_rev": current })),
                )
                    .into_response())
            }
            other => rejected(other),
        },
    }
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/v1/instances/{name}/audit?limit=N`: the newest audit entries, newest first.
pub async fn audit(
    Authorized { ui, name, .. }: Authorized,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiFailure> {
    let limit = query
        .limit
        .unwrap_or(super::AUDIT_ON_PAGE)
        .clamp(1, MAX_AUDIT_ENTRIES);
    let entries = audit::list(ui.services.store.as_ref(), &name, limit)
        .await
        .map_err(UiError::from)?;
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|entry| {
            let mut value = serde_json::to_value(&entry).unwrap_or(Value::Null);
            value["id"] = Value::from(entry.id);
            value
        })
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

/// `POST /api/v1/instances/{name}/check/{app}`, optionally with `{"section": {…}}` to test a
/// section before saving it. Responds with `{"app", "ok", "checks"}`, or 422 for an invalid
/// section.
pub async fn check(
    Authorized { ui, name, .. }: Authorized,
    Path((_, app)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiFailure> {
    if ui.services.apps.get(&app).is_none() {
        return Err(UiError::NotFound(format!("no app named {app:?}")).into());
    }
    let submitted = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let request: Value = serde_json::from_slice(&body).map_err(|err| {
            UiError::BadRequest(format!(
                "the body is not valid JSON ({err}); send nothing, or {{\"section\": {{…}}}}"
            ))
        })?;
        request.get("section").cloned()
    };
    let result = run_check(&ui, &name, &app, submitted).await?;
    if !result.errors.is_empty() {
        return rejected(Failure::Fields(result.errors));
    }
    let ok = result.checks.iter().all(|check| check.ok);
    Ok(Json(json!({ "app": app, "ok": ok, "checks": result.checks })).into_response())
}

/// `POST /api/v1/instances/{name}/webhook-secret`: replaces the webhook secret with a new
/// random one. The response is the only place the new secret is shown.
pub async fn rotate(Authorized { ui, viewer, name }: Authorized) -> Result<Response, ApiFailure> {
    let rotated =
        config_edit::rotate_webhook_secret(&ui.services, &name, &actor(&viewer, "api")).await;
    match rotated {
        Ok((rev, secret)) => Ok(Json(json!({
            "rev": rev,
            "webhook_url": view::webhook_url(&ui, &name),
            "webhook_secret": secret.expose(),
        }))
        .into_response()),
        Err(err) => rejected(err.into()),
    }
}
