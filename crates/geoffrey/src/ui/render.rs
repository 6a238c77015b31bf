//! Page rendering: minijinja templates compiled into the binary, escaped as HTML.
//!
//! minijinja already renders the hosted forms, so the UI uses it too instead of a second
//! template engine. Every template is parsed at first use; a route test of each page finds
//! a broken one.

use super::UiError;
use super::session::Viewer;
use axum::response::Html;
use serde_json::{Value, json};
use std::sync::LazyLock;

/// Every template of the UI, by name. Names end in `.html`, which turns on escaping.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("error.html", include_str!("templates/error.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("setup.html", include_str!("templates/setup.html")),
    ("instances.html", include_str!("templates/instances.html")),
    ("created.html", include_str!("templates/created.html")),
    ("config.html", include_str!("templates/config.html")),
    (
        "config_fields.html",
        include_str!("templates/config_fields.html"),
    ),
    (
        "config_checks.html",
        include_str!("templates/config_checks.html"),
    ),
    ("dashboard.html", include_str!("templates/dashboard.html")),
    ("logs.html", include_str!("templates/logs.html")),
    ("log_rows.html", include_str!("templates/log_rows.html")),
    ("log_entry.html", include_str!("templates/log_entry.html")),
    ("failed.html", include_str!("templates/failed.html")),
    (
        "failed_confirm.html",
        include_str!("templates/failed_confirm.html"),
    ),
    ("backfill.html", include_str!("templates/backfill.html")),
    (
        "backfill_progress.html",
        include_str!("templates/backfill_progress.html"),
    ),
];

static ENVIRONMENT: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    env.add_global("asset_version", super::asset_version());
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .unwrap_or_else(|err| panic!("the UI template {name} is invalid: {err:#}"));
    }
    env
});

/// Renders a page for a signed-in person: `context` plus `viewer` (name, administrator flag
/// and CSRF token).
pub fn page(template: &str, viewer: &Viewer, mut context: Value) -> Result<Html<String>, UiError> {
    if let Some(fields) = context.as_object_mut() {
        fields.insert(
            "viewer".to_string(),
            json!({
                "user": viewer.session.user,
                "admin": viewer.session.admin,
                "csrf": viewer.session.csrf,
            }),
        );
    }
    render(template, &context).map(Html)
}

/// Renders a template with `context` alone.
pub fn render(template: &str, context: &Value) -> Result<String, UiError> {
    ENVIRONMENT
        .get_template(template)
        .and_then(|template| template.render(context))
        .map_err(|err| UiError::Internal(format!("rendering {template} failed: {err:#}")))
}
