//! The list of instances with their health, and creating an instance.

use super::accounts::Access;
use super::session::Viewer;
use super::{ApiFailure, Ui, UiError, render};
use crate::instance::{self, InstanceError};
use crate::secret::Secret;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One app of an instance, as the list shows it.
#[derive(Debug, Serialize)]
pub struct AppHealth {
    pub name: String,
    /// Reason the app is marked misconfigured, if it is.
    pub misconfigured: Option<String>,
}

/// One instance with its health at a glance.
#[derive(Debug, Serialize)]
pub struct InstanceSummary {
    pub name: String,
    /// Deliveries accepted since midnight UTC; `None` when the queue failed.
    pub events_today: Option<u64>,
    /// Failed jobs waiting for a replay or a discard.
    pub failed: u64,
    /// Jobs waiting, delayed for a retry, or running.
    pub waiting: u64,
    pub apps: Vec<AppHealth>,
    /// Reason the instance's state could not be read, if it could not.
    pub error: Option<String>,
}

/// Returns the instances `viewer` may see, in name order.
pub async fn visible(ui: &Arc<Ui>, viewer: &Arc<Viewer>) -> Result<Vec<String>, UiError> {
    let names = ui.services.store.list_databases().await?;
    if viewer.session.admin {
        return Ok(names);
    }
    let mut checks = tokio::task::JoinSet::new();
    for (index, name) in names.iter().enumerate() {
        let (ui, viewer, name) = (ui.clone(), viewer.clone(), name.clone());
        checks.spawn(async move { (index, ui.accounts.access(&viewer, &name).await) });
    }
    let mut allowed = Vec::new();
    while let Some(joined) = checks.join_next().await {
        let (index, access) = joined.map_err(|err| UiError::Internal(err.to_string()))?;
        match access.map_err(UiError::Unavailable)? {
            Access::Allowed => allowed.push(index),
            Access::Denied => {}
            Access::Expired => return Err(UiError::SessionEnded),
        }
    }
    allowed.sort_unstable();
    Ok(allowed
        .into_iter()
        .map(|index| names[index].clone())
        .collect())
}

async fn summary(ui: &Ui, name: &str) -> InstanceSummary {
    let services = &ui.services;
    let mut summary = InstanceSummary {
        name: name.to_string(),
        events_today: None,
        failed: 0,
        waiting: 0,
        apps: Vec::new(),
        error: None,
    };
    let midnight_ms = services
        .clock
        .now_ms()
        .div_euclid(24 * crate::queue::HOUR_MS)
        * 24
        * crate::queue::HOUR_MS;
    match services.queue.delivery_counts(name, midnight_ms).await {
        Ok(counts) => summary.events_today = Some(counts.iter().map(|c| c.count).sum()),
        Err(err) => {
            tracing::warn!(instance = %name, error = %err, "reading the delivery counts for the instance list failed");
        }
    }
    match services.queue.stats(Some(name)).await {
        Ok(stats) => {
            summary.failed = stats.failed;
            summary.waiting = stats.ready + stats.delayed + stats.leased;
        }
        Err(err) => {
            tracing::warn!(instance = %name, error = %err, "reading the queue for the instance list failed");
            summary.error = Some("queue unavailable".to_string());
        }
    }
    let config = match services.store.get(name, instance::CONFIG_ID).await {
        Ok(Some(document)) => document.body,
        Ok(None) => {
            summary.error = Some("no configuration".to_string());
            return summary;
        }
        Err(err) => {
            tracing::warn!(instance = %name, error = %err, "reading a configuration for the instance list failed");
            summary.error = Some("store unavailable".to_string());
            return summary;
        }
    };
    let app_names: Vec<String> = config
        .get("apps")
        .and_then(Value::as_object)
        .map(|apps| apps.keys().cloned().collect())
        .unwrap_or_default();
    for app in app_names {
        let misconfigured =
            crate::app_status::misconfigured_reason(services.store.as_ref(), name, &app).await;
        summary.apps.push(AppHealth {
            name: app,
            misconfigured,
        });
    }
    summary
}

async fn summaries(ui: &Arc<Ui>, viewer: &Arc<Viewer>) -> Result<Vec<InstanceSummary>, UiError> {
    let mut list = Vec::new();
    for name in visible(ui, viewer).await? {
        list.push(summary(ui, &name).await);
    }
    Ok(list)
}

pub async fn list_page(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Arc<Viewer>>,
) -> Result<Html<String>, UiError> {
    let instances = summaries(&ui, &viewer).await?;
    render::page(
        "instances.html",
        &viewer,
        json!({ "title": "Instances", "instances": instances, "form": {}, "errors": {} }),
    )
}

pub async fn list_json(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Arc<Viewer>>,
) -> Result<Json<Value>, ApiFailure> {
    let instances = summaries(&ui, &viewer).await?;
    Ok(Json(json!({ "instances": instances })))
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    discourse_url: String,
}

/// A created instance, with the webhook settings to paste into Discourse.
struct Created {
    name: String,
    discourse_url: String,
    webhook_url: String,
    secret: Secret,
}

/// Creates an instance with a generated webhook secret, or returns a message per field.
async fn create(
    ui: &Ui,
    viewer: &Viewer,
    form: &CreateForm,
    source: &str,
) -> Result<Result<Created, BTreeMap<String, String>>, UiError> {
    if !viewer.session.admin {
        return Err(UiError::Forbidden(
            "only administrators create instances; with CouchDB, a server admin".to_string(),
        ));
    }
    let services = &ui.services;
    let secret = Secret::generate();
    let name = form.name.trim();
    let created = instance::create(
        services.store.as_ref(),
        &services.apps,
        &services.keyring,
        name,
        form.discourse_url.trim(),
        Some(secret.clone()),
    )
    .await;
    let mut errors = BTreeMap::new();
    match created {
        Ok(config) => {
            tracing::info!(instance = %name, user = %viewer.session.user, "instance created in the web UI");
            let actor = crate::audit::Actor::new(&viewer.session.user, source);
            let audited = crate::audit::record_creation(
                services.store.as_ref(),
                &services.apps,
                name,
                &actor,
            )
            .await;
            if let Err(err) = audited {
                // The instance exists; the missing entry is logged rather than failing the request.
                tracing::error!(instance = %name, error = %err, "recording the creation in the audit log failed");
            }
            return Ok(Ok(Created {
                name: name.to_string(),
                discourse_url: config.discourse_url,
                webhook_url: format!("{}/hooks/discourse/{name}", services.settings.public_url()),
                secret,
            }));
        }
        Err(InstanceError::InvalidName { name, reason }) => {
            errors.insert(
                "name".to_string(),
                format!("{name:?} is not valid: {reason}"),
            );
        }
        Err(InstanceError::Exists(name)) => {
            errors.insert(
                "name".to_string(),
                format!("an instance named {name:?} exists already; choose another name"),
            );
        }
        Err(InstanceError::Invalid(fields)) => {
            for field in fields {
                errors.insert(field.path, field.message);
            }
        }
        Err(InstanceError::Store(err)) => return Err(err.into()),
        Err(other) => return Err(UiError::Internal(other.to_string())),
    }
    Ok(Err(errors))
}

pub async fn create_page(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Arc<Viewer>>,
    Form(form): Form<CreateForm>,
) -> Result<Response, UiError> {
    match create(&ui, &viewer, &form, "ui").await? {
        Ok(created) => {
            let page = render::page(
                "created.html",
                &viewer,
                json!({
                    "title": format!("Instance {} created", created.name),
                    "heading": format!("Instance {} created", created.name),
                    "reason": "",
                    "instance": created.name,
                    "discourse_url": created.discourse_url,
                    "webhook_url": created.webhook_url,
                    "secret": created.secret.expose(),
                }),
            )?;
            Ok((StatusCode::CREATED, page).into_response())
        }
        Err(errors) => {
            let instances = summaries(&ui, &viewer).await?;
            let page = render::page(
                "instances.html",
                &viewer,
                json!({
                    "title": "Instances", "instances": instances, "errors": errors,
                    "form": { "name": form.name, "discourse_url": form.discourse_url },
                }),
            )?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// `POST /api/v1/instances` with `{"name", "discourse_url"}`. The response is the only
/// place the generated webhook secret is shown.
pub async fn create_json(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Arc<Viewer>>,
    Json(form): Json<CreateForm>,
) -> Result<Response, ApiFailure> {
    match create(&ui, &viewer, &form, "api").await? {
        Ok(created) => Ok((
            StatusCode::CREATED,
            Json(json!({
                "name": created.name,
                "webhook_url": created.webhook_url,
                "webhook_secret": created.secret.expose(),
            })),
        )
            .into_response()),
        Err(errors) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "the instance was not created", "fields": errors })),
        )
            .into_response()),
    }
}
