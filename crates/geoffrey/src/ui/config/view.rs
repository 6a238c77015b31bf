//! The configuration page's content, and the document a submitted page form describes.

use super::form::{self, Node, Reader, SECTION};
use super::{AUDIT_ON_PAGE, CheckResult};
use crate::apps::{AppRegistry, FieldError};
use crate::audit::{self, AuditEntry, FieldChange};
use crate::config_edit::{self, MaskedConfig};
use crate::secret::MASK;
use crate::ui::session::Viewer;
use crate::ui::{Ui, UiError, render};
use axum::response::Html;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Maximum length of a value in an audit row, in characters; longer ones are cut.
const MAX_SHOWN_VALUE: usize = 200;

/// Returns the fields of the Discourse section: key, schema and whether it is required. The
/// webhook secret is not among them, because it is only generated, never typed in the form.
fn discourse_fields() -> Vec<(&'static str, Value, bool)> {
    vec![
        (
            "discourse_url",
            json!({ "type": "string", "title": "Discourse URL",
                    "description": "The forum's base address, such as https://forum.example.com" }),
            true,
        ),
        (
            "discourse_api_key",
            json!({ "type": "string", "secret": true, "title": "Discourse API key",
                    "description": "Created in Discourse under Admin › API › Keys. Apps that call \
                        the forum's API need it, such as the Mailchimp backfill and forms that \
                        create topics or messages" }),
            false,
        ),
        (
            "discourse_api_username",
            json!({ "type": "string", "title": "API username",
                    "description": "The user the API key acts as", "default": "system" }),
            false,
        ),
        (
            "accept_unsigned",
            json!({ "type": "boolean", "title": "Accept unsigned deliveries",
                    "description": "Accepts deliveries that have no signature. Leave it off \
                        unless Discourse has no secret; a signed delivery is still checked" }),
            false,
        ),
    ]
}

/// Reads the document a submitted page form describes. The webhook secret stays masked, so
/// it keeps its stored value. An app is kept when it was configured and not removed, or when
/// any of its fields was filled in.
pub fn read_config(reader: &mut Reader, apps: &AppRegistry) -> Value {
    let mut document = Map::new();
    for (key, schema, _) in discourse_fields() {
        if let Some(value) = reader.read(&schema, key, key, 1) {
            document.insert(key.to_string(), value);
        }
    }
    document.insert("webhook_secret".into(), Value::from(MASK));
    let mut sections = Map::new();
    for name in apps.names() {
        let Some(app) = apps.get(name) else { continue };
        let path = format!("apps.{name}");
        if reader.has(&format!("{}{path}", form::REMOVE)) {
            continue;
        }
        let configured = reader.has(&format!("{SECTION}{path}"));
        match reader.read_fields(&app.schema(), &path, &path, 1) {
            Some(section) => {
                sections.insert(name.to_string(), section);
            }
            None if configured => {
                sections.insert(name.to_string(), json!({}));
            }
            None => {}
        }
    }
    document.insert("apps".into(), Value::Object(sections));
    Value::Object(document)
}

/// Everything the page shows besides the stored configuration.
pub struct PageState {
    /// The revision the forms send back.
    pub rev: String,
    /// The document the forms show: the stored one, masked, or the one the person submitted.
    pub document: Value,
    /// Text of inputs that did not parse, by path, shown as typed.
    pub raw: HashMap<String, String>,
    /// Errors of the page form, shown next to their fields.
    pub errors: Vec<FieldError>,
    /// A message above the forms: its kind (`good` or `conflict`) and text.
    pub notice: Option<(&'static str, String)>,
    /// The JSON view's text after a rejected JSON save; otherwise the stored document.
    pub json_text: Option<String>,
    pub json_errors: Vec<FieldError>,
    /// The result of a connection test, by app.
    pub checks: Option<(String, CheckResult)>,
    stored: MaskedConfig,
}

impl PageState {
    /// Shows the stored configuration.
    pub async fn stored(ui: &Ui, name: &str) -> Result<Self, UiError> {
        let stored = config_edit::show(&ui.services, name)
            .await
            .map_err(instance_error)?;
        Ok(Self {
            rev: stored.rev.clone(),
            document: stored.document.clone(),
            raw: HashMap::new(),
            errors: Vec::new(),
            notice: None,
            json_text: None,
            json_errors: Vec::new(),
            checks: None,
            stored,
        })
    }

    /// Shows a submitted form again, with the errors of the inputs that did not parse.
    pub async fn submitted(
        ui: &Ui,
        name: &str,
        rev: String,
        document: Value,
        reader: Reader,
    ) -> Result<Self, UiError> {
        let mut state = Self::stored(ui, name).await?;
        state.rev = rev;
        state.document = document;
        state.raw = reader.raw;
        state.errors = reader.errors;
        Ok(state)
    }
}

fn instance_error(err: crate::instance::InstanceError) -> UiError {
    use crate::instance::InstanceError;
    match err {
        InstanceError::NotFound(_) | InstanceError::InvalidName { .. } => {
            UiError::NotFound(err.to_string())
        }
        InstanceError::Store(store) => store.into(),
        other => UiError::Internal(other.to_string()),
    }
}

/// Returns the URL Discourse sends an instance's deliveries to.
pub fn webhook_url(ui: &Ui, name: &str) -> String {
    format!(
        "{}/hooks/discourse/{name}",
        ui.services.settings.public_url()
    )
}

/// One app's part of the page.
#[derive(Serialize)]
struct AppSection {
    name: &'static str,
    configured: bool,
    /// Reason a job marked the app misconfigured, until a job of it works again.
    misconfigured: Option<String>,
    has_check: bool,
    node: Node,
    checks: Option<CheckResult>,
}

/// An error in the summary above the form, with the id of the input that shows it.
#[derive(Serialize)]
struct ErrorLink {
    path: String,
    message: String,
    target: Option<String>,
}

/// Events of one payload type, as Discourse groups them in its webhook settings.
#[derive(Serialize)]
struct EventGroup {
    kind: String,
    names: Vec<String>,
}

/// Renders the page for `state`.
pub async fn render(
    ui: &Ui,
    viewer: &Viewer,
    name: &str,
    state: PageState,
) -> Result<Html<String>, UiError> {
    let apps = &ui.services.apps;
    let audit = audit::list(ui.services.store.as_ref(), name, AUDIT_ON_PAGE).await?;

    let mut discourse: Vec<Node> = discourse_fields()
        .into_iter()
        .map(|(key, schema, required)| {
            let mut node = form::build(key, &schema, &state.document[key], key, &state.raw, 1);
            node.required = required;
            node
        })
        .collect();
    let mut sections = app_sections(apps, &state);
    for section in sections.iter_mut().filter(|section| section.configured) {
        let store = ui.services.store.as_ref();
        section.misconfigured =
            crate::app_status::misconfigured_reason(store, name, section.name).await;
    }
    let links = attach_errors(&mut discourse, &mut sections, &state.errors);

    let stored = &state.stored.document;
    let (all_events, event_groups) = webhook_events(apps, stored);
    let json_text = state
        .json_text
        .clone()
        .unwrap_or_else(|| serde_json::to_string_pretty(stored).unwrap_or_default());
    let (notice_kind, notice) = state.notice.clone().unzip();
    render::page(
        "config.html",
        viewer,
        json!({
            "title": format!("Configuration of {name}"),
            "instance": name,
            "tab": "config",
            "rev": state.rev,
            "notice_kind": notice_kind,
            "notice": notice,
            "errors": links,
            "discourse": discourse,
            "apps": sections,
            "webhook": {
                "url": webhook_url(ui, name),
                "discourse_url": stored["discourse_url"],
                "secret_set": stored["webhook_secret"] == MASK,
                "accept_unsigned": stored["accept_unsigned"] == true,
                "all_events": all_events,
                "event_groups": event_groups,
            },
            "unreadable": state.stored.unreadable_paths(),
            "json_text": json_text,
            "json_errors": state.json_errors,
            "json_open": state.json_text.is_some(),
            "audit": audit.iter().map(audit_row).collect::<Vec<_>>(),
            "audit_limit": AUDIT_ON_PAGE,
        }),
    )
}

fn app_sections(apps: &AppRegistry, state: &PageState) -> Vec<AppSection> {
    let mut sections = Vec::new();
    for name in apps.names() {
        let Some(app) = apps.get(name) else { continue };
        let path = format!("apps.{name}");
        let value = &state.document["apps"][name];
        let node = form::build(name, &app.schema(), value, &path, &state.raw, 0);
        let checks = match &state.checks {
            Some((checked, result)) if checked == name => Some(CheckResult {
                checks: result.checks.clone(),
                errors: result.errors.clone(),
            }),
            _ => None,
        };
        sections.push(AppSection {
            name,
            configured: value.is_object(),
            misconfigured: None,
            has_check: app.has_check(),
            node,
            checks,
        });
    }
    sections
}

/// Attaches each error to the input that shows it, and returns the summary of all errors.
fn attach_errors(
    discourse: &mut [Node],
    sections: &mut [AppSection],
    errors: &[FieldError],
) -> Vec<ErrorLink> {
    let mut links = Vec::new();
    for error in errors {
        let nodes = discourse
            .iter_mut()
            .chain(sections.iter_mut().map(|section| &mut section.node));
        let mut target = None;
        for node in nodes {
            if node.attach(error) {
                target = node.id_of(&error.path);
                break;
            }
        }
        links.push(ErrorLink {
            path: error.path.clone(),
            message: error.message.clone(),
            target,
        });
    }
    links
}

/// Returns whether an app subscribes to every event, and the events the configured apps
/// subscribe to, grouped by payload type.
fn webhook_events(apps: &AppRegistry, document: &Value) -> (bool, Vec<EventGroup>) {
    let mut all = false;
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let sections = document["apps"].as_object().into_iter().flatten();
    for (name, section) in sections {
        let Some(app) = apps.get(name) else { continue };
        for subscription in app.subscriptions(section) {
            for event in subscription.events {
                if event == "*" {
                    all = true;
                    continue;
                }
                let kind = crate::event::payload_type_of(&event).unwrap_or("other");
                groups.entry(kind.to_string()).or_default().insert(event);
            }
        }
    }
    let groups = groups
        .into_iter()
        .map(|(kind, names)| EventGroup {
            kind,
            names: names.into_iter().collect(),
        })
        .collect();
    (all, groups)
}

/// One audit entry as the page lists it.
#[derive(Serialize)]
struct AuditRow {
    at: String,
    user: String,
    source: String,
    action: String,
    changes: Vec<ChangeRow>,
}

#[derive(Serialize)]
struct ChangeRow {
    path: String,
    secret: bool,
    old: String,
    new: String,
}

fn audit_row(entry: &AuditEntry) -> AuditRow {
    let at = entry
        .at
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_default();
    let action = match entry.action.as_str() {
        "webhook_secret_rotated" => "generated a new webhook secret",
        "config_saved" => "saved the configuration",
        other => other,
    };
    AuditRow {
        at,
        user: entry.actor.user.clone(),
        source: entry.actor.source.clone(),
        action: action.to_string(),
        changes: entry.changes.iter().map(change_row).collect(),
    }
}

fn change_row(change: &FieldChange) -> ChangeRow {
    let shown = |value: &Option<Value>| match value {
        None | Some(Value::Null) => "(not set)".to_string(),
        Some(Value::String(text)) => shorten(text),
        Some(other) => shorten(&other.to_string()),
    };
    ChangeRow {
        path: change.path.clone(),
        secret: change.secret,
        old: shown(&change.old),
        new: shown(&change.new),
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_SHOWN_VALUE {
        return text.to_string();
    }
    let start: String = text.chars().take(MAX_SHOWN_VALUE).collect();
    format!("{start}…")
}
