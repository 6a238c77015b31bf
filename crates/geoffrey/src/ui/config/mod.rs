//! The configuration page of one instance, `/ui/instances/{name}/config`, and its JSON API
//! under `/api/v1/instances/{name}/`.
//!
//! The page shows the Discourse settings, the webhook settings to paste into Discourse, one
//! form per app generated from the app's JSON Schema (see [`form`]), a JSON view of the whole
//! masked `CONFIG`, and the audit trail. Both the form and the JSON view send the revision
//! they were made from. A save after someone else's returns 409 and shows the person's input
//! again, and a save with invalid fields returns 422 with each message next to its field.
//! Nothing is stored in either case. The page form shows inputs again as typed, except new
//! secrets, which the person types again. A rejected JSON text is shown again whole, new
//! secrets included, so that nothing typed is lost.
//!
//! Saving, rotating the webhook secret and testing a connection go through
//! [`crate::config_edit`], which the CLI uses too, so every change leaves an audit entry.
//! Stored secrets reach the browser only as [`crate::secret::MASK`], except a newly generated
//! webhook secret, which the response to its rotation shows once.

mod api;
pub mod form;
mod view;

use super::session::Viewer;
use super::{Ui, UiError, render};
use crate::apps::{Check, FieldError};
use crate::audit::Actor;
use crate::config_edit;
use crate::instance::InstanceError;
use crate::ui::Authorized;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use form::Reader;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use view::PageState;

/// Number of audit entries the page lists.
pub const AUDIT_ON_PAGE: usize = 50;

/// Returns the routes of the configuration page and its API.
pub fn routes() -> Router<Arc<Ui>> {
    Router::new()
        .route(
            "/ui/instances/{name}/config",
            get(config_page).post(save_form),
        )
        .route("/ui/instances/{name}/config/json", post(save_json_text))
        .route("/ui/instances/{name}/config/check/{app}", post(check_page))
        .route(
            "/ui/instances/{name}/config/webhook-secret",
            post(rotate_page),
        )
        .route(
            "/api/v1/instances/{name}/config",
            get(api::get_config).put(api::put_config),
        )
        .route("/api/v1/instances/{name}/audit", get(api::audit))
        .route("/api/v1/instances/{name}/check/{app}", post(api::check))
        .route("/api/v1/instances/{name}/webhook-secret", post(api::rotate))
}

/// The failure of a save or a check, by what the person can do about it.
enum Failure {
    /// Invalid fields: fix them and send again (422).
    Fields(Vec<FieldError>),
    /// Someone else saved first: reload (409).
    Conflict(String),
    Other(UiError),
}

impl From<InstanceError> for Failure {
    fn from(err: InstanceError) -> Self {
        match err {
            InstanceError::Invalid(errors) => Failure::Fields(errors),
            InstanceError::Sealed { ref path, .. } => Failure::Fields(vec![FieldError::new(
                path.clone(),
                format!("{err}; enter this secret again and save"),
            )]),
            InstanceError::Store(crate::store::StoreError::Conflict { .. }) => {
                Failure::Conflict(CONFLICT_MESSAGE.to_string())
            }
            InstanceError::NotFound(_) | InstanceError::InvalidName { .. } => {
                Failure::Other(UiError::NotFound(err.to_string()))
            }
            InstanceError::Store(store) => Failure::Other(store.into()),
            InstanceError::Exists(_) => Failure::Other(UiError::Internal(err.to_string())),
        }
    }
}

const CONFLICT_MESSAGE: &str = "someone else saved this configuration after you opened it, so \
    your changes were not saved; reload the configuration and apply your changes again";

fn actor(viewer: &Viewer, source: &str) -> Actor {
    Actor::new(viewer.session.user.clone(), source)
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    saved: Option<String>,
}

async fn config_page(
    Authorized { ui, viewer, name }: Authorized,
    axum::extract::Query(query): axum::extract::Query<PageQuery>,
) -> Result<Html<String>, UiError> {
    let mut state = PageState::stored(&ui, &name).await?;
    if query.saved.is_some() {
        state.notice = Some(("good", "Saved.".to_string()));
    }
    view::render(&ui, &viewer, &name, state).await
}

/// Reads the submitted form: the revision and the document it describes.
fn read_form(ui: &Ui, fields: Vec<(String, String)>) -> (String, Value, Reader) {
    let mut reader = Reader::new(fields);
    let rev = reader.text("rev").unwrap_or_default().to_string();
    let document = view::read_config(&mut reader, &ui.services.apps);
    (rev, document, reader)
}

async fn save_form(
    Authorized { ui, viewer, name }: Authorized,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let (rev, document, reader) = read_form(&ui, fields);
    let mut state = PageState::submitted(&ui, &name, rev.clone(), document.clone(), reader).await?;
    if !state.errors.is_empty() {
        let page = view::render(&ui, &viewer, &name, state).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let saved = config_edit::save(&ui.services, &name, &rev, document, &actor(&viewer, "ui")).await;
    let status = match saved {
        Ok(_) => return Ok(saved_redirect(&name)),
        Err(err) => explain_failure(err.into(), &mut state, false)?,
    };
    let page = view::render(&ui, &viewer, &name, state).await?;
    Ok((status, page).into_response())
}

/// Puts the reason a save failed into the page shown again: field errors next to the form's
/// fields, or next to the JSON view with `json_view`, and a conflict as the notice. Returns
/// the page's status, or the error for anything else.
fn explain_failure(
    failure: Failure,
    state: &mut PageState,
    json_view: bool,
) -> Result<StatusCode, UiError> {
    match failure {
        Failure::Fields(errors) if json_view => state.json_errors = errors,
        Failure::Fields(errors) => state.errors = errors,
        Failure::Conflict(message) => {
            state.notice = Some(("conflict", message));
            return Ok(StatusCode::CONFLICT);
        }
        Failure::Other(err) => return Err(err),
    }
    Ok(StatusCode::UNPROCESSABLE_ENTITY)
}

fn saved_redirect(name: &str) -> Response {
    Redirect::to(&format!("/ui/instances/{name}/config?saved=1")).into_response()
}

#[derive(Debug, Deserialize)]
pub struct JsonForm {
    #[serde(default)]
    rev: String,
    #[serde(default)]
    config: String,
}

async fn save_json_text(
    Authorized { ui, viewer, name }: Authorized,
    Form(submitted): Form<JsonForm>,
) -> Result<Response, UiError> {
    let mut state = PageState::stored(&ui, &name).await?;
    state.rev = submitted.rev.clone();
    state.json_text = Some(submitted.config.clone());
    let status = match serde_json::from_str::<Value>(&submitted.config) {
        Err(err) => {
            let message = format!("not valid JSON: {err}");
            state.json_errors = vec![FieldError::new("", message)];
            StatusCode::UNPROCESSABLE_ENTITY
        }
        Ok(document) => {
            let actor = actor(&viewer, "ui");
            let saved =
                config_edit::save(&ui.services, &name, &submitted.rev, document, &actor).await;
            match saved {
                Ok(_) => return Ok(saved_redirect(&name)),
                Err(err) => explain_failure(err.into(), &mut state, true)?,
            }
        }
    };
    let page = view::render(&ui, &viewer, &name, state).await?;
    Ok((status, page).into_response())
}

/// The findings of a connection test, or the fields to fix before one can run.
#[derive(Debug, Default, serde::Serialize)]
pub struct CheckResult {
    pub checks: Vec<Check>,
    pub errors: Vec<FieldError>,
}

/// Runs an app's check with the submitted section when the request has the app's fields, and
/// with the saved one otherwise.
async fn run_check(
    ui: &Ui,
    name: &str,
    app: &str,
    submitted: Option<Value>,
) -> Result<CheckResult, UiError> {
    match config_edit::check_app(&ui.services, name, app, submitted).await {
        Ok(checks) => Ok(CheckResult {
            checks,
            errors: Vec::new(),
        }),
        Err(err) => match Failure::from(err) {
            Failure::Fields(errors) => Ok(CheckResult {
                checks: Vec::new(),
                errors,
            }),
            Failure::Conflict(message) => Err(UiError::Conflict(message)),
            Failure::Other(err) => Err(err),
        },
    }
}

async fn check_page(
    Authorized { ui, viewer, name }: Authorized,
    Path((_, app)): Path<(String, String)>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    if ui.services.apps.get(&app).is_none() {
        return Err(UiError::NotFound(format!("no app named {app:?}")));
    }
    let prefix = format!("apps.{app}");
    let has_section = fields
        .iter()
        .any(|(field, _)| form::contains_path(&prefix, form::strip_marker(field)));
    let (rev, document, reader) = read_form(&ui, fields);
    let own_errors: Vec<FieldError> = reader
        .errors
        .iter()
        .filter(|error| form::contains_path(&prefix, &error.path))
        .cloned()
        .collect();
    let result = if !own_errors.is_empty() {
        CheckResult {
            checks: Vec::new(),
            errors: own_errors,
        }
    } else {
        let submitted = has_section.then(|| {
            let section = document.pointer(&format!("/apps/{app}"));
            section.cloned().unwrap_or_else(|| json!({}))
        });
        run_check(&ui, &name, &app, submitted).await?
    };

    if headers.contains_key("hx-request") {
        let context = json!({ "app": app, "result": result });
        let html = render::render("config_checks.html", &context)?;
        return Ok(Html(html).into_response());
    }
    let status = if result.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut state = if has_section {
        PageState::submitted(&ui, &name, rev, document, reader).await?
    } else {
        PageState::stored(&ui, &name).await?
    };
    state.checks = Some((app, result));
    let page = view::render(&ui, &viewer, &name, state).await?;
    Ok((status, page).into_response())
}

#[derive(Debug, Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    confirm: Option<String>,
}

async fn rotate_page(
    Authorized { ui, viewer, name }: Authorized,
    Form(form): Form<RotateForm>,
) -> Result<Response, UiError> {
    if form.confirm.as_deref() != Some("yes") {
        return Err(UiError::BadRequest(
            "tick the box that confirms the old secret may stop working, then generate again"
                .to_string(),
        ));
    }
    let rotated =
        config_edit::rotate_webhook_secret(&ui.services, &name, &actor(&viewer, "ui")).await;
    let (_, secret) = match rotated.map_err(Failure::from) {
        Ok(rotated) => rotated,
        Err(Failure::Fields(errors)) => {
            let mut state = PageState::stored(&ui, &name).await?;
            state.errors = errors;
            let page = view::render(&ui, &viewer, &name, state).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
        Err(Failure::Conflict(message)) => return Err(UiError::Conflict(message)),
        Err(Failure::Other(err)) => return Err(err),
    };
    let discourse_url = PageState::stored(&ui, &name).await?.document["discourse_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let heading = format!("New webhook secret for {name}");
    let page = render::page(
        "created.html",
        &viewer,
        json!({
            "title": heading,
            "heading": heading,
            "reason": "The old secret no longer works: deliveries signed with it are rejected \
                       until Discourse has the new one.",
            "instance": name,
            "tab": "config",
            "discourse_url": discourse_url,
            "webhook_url": view::webhook_url(&ui, &name),
            "secret": secret.expose(),
        }),
    )?;
    Ok(page.into_response())
}
