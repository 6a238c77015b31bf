//! Editing an instance's `CONFIG` on behalf of a person: the masked view, saving with an audit
//! entry, rotating the webhook secret, and testing an app's connection.
//!
//! The CLI's `config` commands and the web UI both go through these functions, so both show
//! the same masked document and leave the same audit trail (see [`crate::audit`]).

use crate::apps::{Check, FieldError};
use crate::audit::{self, Actor, AuditEntry};
use crate::instance::{self, InstanceError};
use crate::outbound::OutboundClient;
use crate::secret::{MASK, Secret};
use crate::services::Services;
use serde_json::Value;

/// A `CONFIG` document as a person may see it: every secret replaced by [`MASK`].
pub struct MaskedConfig {
    pub rev: String,
    pub document: Value,
    /// One [`InstanceError::Sealed`] per secret that cannot be opened with the current key;
    /// such a secret is `null` in `document`.
    pub unreadable: Vec<InstanceError>,
}

impl MaskedConfig {
    /// Returns the dotted paths of the secrets that cannot be opened.
    pub fn unreadable_paths(&self) -> Vec<String> {
        self.unreadable
            .iter()
            .filter_map(|err| match err {
                InstanceError::Sealed { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Reads an instance's `CONFIG` with its secrets masked.
pub async fn show(services: &Services, name: &str) -> Result<MaskedConfig, InstanceError> {
    let editable = instance::load_for_edit(
        services.store.as_ref(),
        &services.apps,
        &services.keyring,
        name,
    )
    .await?;
    let mut document = editable.document;
    instance::mask(&mut document, &services.apps);
    Ok(MaskedConfig {
        rev: editable.rev,
        document,
        unreadable: editable.unreadable,
    })
}

/// Validates and saves an edited `CONFIG` (see [`instance::save`]), and records what changed
/// in an audit entry. Returns the new revision.
///
/// The entry is written after the save, so a store failure in between leaves a change without
/// an entry. Such a failure is logged as an error.
pub async fn save(
    services: &Services,
    name: &str,
    rev: &str,
    document: Value,
    actor: &Actor,
) -> Result<String, InstanceError> {
    save_as(services, name, rev, document, actor, "config_saved").await
}

async fn save_as(
    services: &Services,
    name: &str,
    rev: &str,
    document: Value,
    actor: &Actor,
    action: &str,
) -> Result<String, InstanceError> {
    let store = services.store.as_ref();
    let saved = instance::save_document(
        store,
        &services.apps,
        &services.keyring,
        name,
        rev,
        document,
    )
    .await?;
    let changes = audit::diff(&saved.before, &saved.after, &services.apps);
    if changes.is_empty() {
        return Ok(saved.rev);
    }
    let entry = AuditEntry {
        id: String::new(),
        at: services.clock.now(),
        actor: actor.clone(),
        action: action.to_string(),
        rev: saved.rev.clone(),
        changes,
    };
    if let Err(err) = audit::record(store, name, &entry).await {
        tracing::error!(
            instance = %name, rev = %saved.rev, user = %actor.user, error = %err,
            "the configuration was saved, but writing its audit entry failed"
        );
    }
    Ok(saved.rev)
}

/// Replaces the webhook secret with a new random one and saves. Returns the new revision and
/// the secret, which the caller shows once. Fails while another secret of the instance
/// cannot be opened, because saving would drop it.
pub async fn rotate_webhook_secret(
    services: &Services,
    name: &str,
    actor: &Actor,
) -> Result<(String, Secret), InstanceError> {
    let shown = show(services, name).await?;
    let other_unreadable = shown
        .unreadable
        .into_iter()
        .find(|err| !matches!(err, InstanceError::Sealed { path, .. } if path == "webhook_secret"));
    if let Some(err) = other_unreadable {
        return Err(err);
    }
    let secret = Secret::generate();
    let mut document = shown.document;
    document["webhook_secret"] = Value::from(secret.expose());
    let rev = save_as(
        services,
        name,
        &shown.rev,
        document,
        actor,
        "webhook_secret_rotated",
    )
    .await?;
    Ok((rev, secret))
}

/// Tests an app's connection with its saved section, or with `submitted` (masked secrets
/// allowed, as in a save) without saving it. Returns the app's findings, in which every
/// secret of the section is replaced by [`MASK`].
///
/// Fails with field errors when the section is missing or invalid, and when a masked secret
/// would be sent to a destination other than the saved one.
pub async fn check_app(
    services: &Services,
    name: &str,
    app_name: &str,
    submitted: Option<Value>,
) -> Result<Vec<Check>, InstanceError> {
    let at = |message: &str| {
        InstanceError::Invalid(vec![FieldError::new(format!("apps.{app_name}"), message)])
    };
    let Some(app) = services.apps.get(app_name) else {
        return Err(at("unknown app"));
    };
    let editable = instance::load_for_edit(
        services.store.as_ref(),
        &services.apps,
        &services.keyring,
        name,
    )
    .await?;
    let stored = editable.document;
    let section = match submitted {
        Some(section) => {
            let mut partial = serde_json::json!({ "apps": { app_name: section } });
            instance::unmask_edited(&mut partial, &stored, &services.apps)?;
            partial["apps"][app_name].take()
        }
        None => {
            let prefix = format!("apps.{app_name}.");
            let unreadable = editable.unreadable.into_iter().find(
                |err| matches!(err, InstanceError::Sealed { path, .. } if path.starts_with(&prefix)),
            );
            if let Some(err) = unreadable {
                return Err(err);
            }
            stored
                .pointer(&format!("/apps/{app_name}"))
                .cloned()
                .ok_or_else(|| at("the app is not configured; add its section and save first"))?
        }
    };
    let errors = app.validate(&section);
    if !errors.is_empty() {
        let prefix = format!("apps.{app_name}");
        let errors = errors.into_iter().map(|e| e.within(&prefix)).collect();
        return Err(InstanceError::Invalid(errors));
    }

    let settings = &services.settings;
    let checks = match OutboundClient::new(&settings.outbound, settings.worker.job_timeout) {
        Ok(http) => app.check(&section, &http).await,
        Err(err) => vec![Check {
            name: "connection".into(),
            ok: false,
            message: format!("cannot create the HTTP client: {err}"),
        }],
    };
    Ok(hide_secrets(checks, app.as_ref(), section))
}

/// Replaces each secret value of `section` that a check's text contains with [`MASK`], in
/// case a third party's message echoes one.
fn hide_secrets(checks: Vec<Check>, app: &dyn crate::apps::App, mut section: Value) -> Vec<Check> {
    let mut secrets = Vec::new();
    app.visit_secrets(&mut section, &mut |_, secret, _| {
        if let Some(text) = secret.as_str().filter(|text| !text.is_empty()) {
            secrets.push(text.to_string());
        }
    });
    let hide = |text: String| {
        secrets
            .iter()
            .fold(text, |text, secret| text.replace(secret.as_str(), MASK))
    };
    checks
        .into_iter()
        .map(|check| Check {
            name: hide(check.name),
            ok: check.ok,
            message: hide(check.message),
        })
        .collect()
}
