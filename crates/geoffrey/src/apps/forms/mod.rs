//! The `forms` app: hosted forms whose submissions become forum activity.
//!
//! Each form in `apps.forms.forms` is served at `/forms/<instance>/<name>` (see
//! [`crate::api::forms`]). A valid submission becomes one event, `form_submitted`, queued
//! like a webhook delivery with one job per feature. The `record` job stores the submission
//! in the instance's database. Each configured action (a topic, a private message, an
//! invitation, a Mailchimp subscription) runs as its own job, so a failing action is retried
//! or replayed on its own, and every outcome is in the log.

pub mod config;
pub mod page;
pub mod submission;
mod template;

use super::{App, Attempt, AttemptError, FeatureContext, FieldError, SecretVisitor, Subscription};
use crate::discourse::{DiscourseClient, DiscourseError, InviteOptions, NewPost};
use async_trait::async_trait;
use config::{Form, FormsConfig};
use serde_json::{Value, json};
use template::Target;

/// Stores the submission in the instance's database.
pub const RECORD: &str = "record";
pub const CREATE_TOPIC: &str = "create_topic";
pub const PRIVATE_MESSAGE: &str = "private_message";
pub const INVITE: &str = "invite";
/// Subscribes the submitter to the Mailchimp audience, with their consent.
pub const SUBSCRIBE: &str = "subscribe";

/// The event a submission becomes, and its payload type.
pub const EVENT: &str = "form_submitted";
pub const EVENT_TYPE: &str = "form_submission";

/// Name of the hidden field that people leave empty and form-filling robots do not.
pub const HONEYPOT: &str = "website";
/// Name of the hidden field that carries the signed time the form was served.
pub const STARTED: &str = "started";

/// Id prefix of stored submissions.
pub const SUBMISSION_PREFIX: &str = "submission:";

pub struct Forms;

/// Checks what a form's actions need from the rest of the configuration: a `mailchimp`
/// action needs the `mailchimp` app. Paths are from the document's root.
pub fn check_dependencies(config: &crate::instance::InstanceConfig) -> Vec<FieldError> {
    let Some(Ok(forms)) = config.apps.get("forms").map(FormsConfig::parse) else {
        return Vec::new();
    };
    let has_mailchimp = config.apps.contains_key("mailchimp");
    forms
        .forms
        .iter()
        .enumerate()
        .filter(|(_, form)| form.actions.mailchimp.is_some() && !has_mailchimp)
        .map(|(index, _)| {
            FieldError::new(
                format!("apps.forms.forms[{index}].actions.mailchimp"),
                "the instance has no mailchimp app; add apps.mailchimp, or remove this action",
            )
        })
        .collect()
}

/// Maximum topic title length Discourse accepts by default (`max_topic_title_length`).
const MAX_TITLE_CHARS: usize = 255;

fn attempt(error: Option<AttemptError>, response: Option<String>) -> Attempt {
    Attempt {
        error,
        response,
        ..Attempt::default()
    }
}

fn permanent(message: impl Into<String>) -> Attempt {
    attempt(Some(AttemptError::Permanent(message.into())), None)
}

fn configuration(message: impl Into<String>) -> Attempt {
    attempt(Some(AttemptError::Configuration(message.into())), None)
}

/// Turns a Discourse API failure into an attempt, waiting as long as a 429 asked.
fn discourse_failure(err: &DiscourseError) -> Attempt {
    let retry_after = match err {
        DiscourseError::RateLimited(wait) => Some(*wait),
        _ => None,
    };
    Attempt {
        retry_after,
        ..attempt(Some(err.attempt_error()), None)
    }
}

/// Describes a created post for the log entry.
fn describe(post: &NewPost) -> String {
    match post {
        NewPost::Created(created) => format!(
            "created topic {} (post {})",
            created.topic_id, created.post_id
        ),
        NewPost::Enqueued { .. } => "queued for review by a moderator".to_string(),
    }
}

/// Returns the template context of a submission: its fields by name, and `form`.
fn template_context(payload: &Value, form: &Form) -> Value {
    let mut context = payload["fields"].clone();
    if let Some(object) = context.as_object_mut() {
        object.insert(
            "form".into(),
            json!({ "name": form.name, "title": form.title }),
        );
        object.insert("submission_id".into(), payload["submission_id"].clone());
    }
    context
}

fn render(source: &str, context: &Value, target: Target, what: &str) -> Result<String, Attempt> {
    template::render(source, context, target)
        .map_err(|err| permanent(format!("the {what} template failed: {err}")))
}

/// Renders a post's title and body.
fn render_post(title: &str, body: &str, context: &Value) -> Result<(String, String), Attempt> {
    let title = render(title, context, Target::Plain, "title")?;
    let title = crate::apps::http::truncate(&title, MAX_TITLE_CHARS - 1);
    let body = render(body, context, Target::Markdown, "body")?;
    Ok((title, body))
}

#[async_trait]
impl App for Forms {
    fn name(&self) -> &'static str {
        "forms"
    }

    fn schema(&self) -> Value {
        let template = json!({ "type": "string", "description": "Jinja template over the fields, such as {{ name }}" });
        let field = json!({
            "type": "object",
            "required": ["name", "type", "label"],
            "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "pattern": "^[a-z][a-z0-9_-]{0,39}$" },
                "type": { "enum": ["text", "email", "long_text", "choice", "checkbox", "number", "date"] },
                "label": { "type": "string" },
                "help": { "type": "string" },
                "required": { "type": "boolean", "default": false },
                "min_length": { "type": "integer", "minimum": 0 },
                "max_length": { "type": "integer", "minimum": 1, "default": 10000 },
                "pattern": { "type": "string", "description": "Regular expression the whole value must match" },
                "pattern_message": { "type": "string" },
                "choices": { "type": "array", "items": { "type": "string" } },
                "min": { "type": "number" },
                "max": { "type": "number" }
            }
        });
        let actions = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "topic": { "type": "object", "required": ["category_id", "title", "body"],
                    "properties": { "category_id": { "type": "integer" }, "title": template, "body": template } },
                "private_message": { "type": "object", "required": ["title", "body"],
                    "properties": { "users": { "type": "array", "items": { "type": "string" } },
                        "groups": { "type": "array", "items": { "type": "string" } },
                        "title": template, "body": template } },
                "invite": { "type": "object", "required": ["email_field"],
                    "properties": { "email_field": { "type": "string" }, "message": template } },
                "mailchimp": { "type": "object", "required": ["email_field", "consent_field"],
                    "properties": { "email_field": { "type": "string" },
                        "consent_field": { "type": "string" },
                        "merge_fields": { "type": "object", "additionalProperties": { "type": "string" } } } }
            }
        });
        let form = json!({
            "type": "object",
            "required": ["name", "title", "fields"],
            "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "pattern": "^[a-z][a-z0-9_-]{0,39}$", "title": "Name in the form's URL" },
                "title": { "type": "string" },
                "description": { "type": "string" },
                "fields": { "type": "array", "items": field },
                "success_message": { "type": "string" },
                "redirect_url": { "type": "string", "format": "uri" },
                "min_fill_seconds": { "type": "integer", "minimum": 0, "default": 3 },
                "submissions_per_hour_per_address": { "type": "integer", "minimum": 1, "default": 5 },
                "submissions_per_minute": { "type": "integer", "minimum": 1, "default": 30 },
                "json_secret": { "type": "string", "secret": true, "minLength": 12 },
                "json_fields": { "type": "object", "additionalProperties": { "type": "string" } },
                "actions": actions
            }
        });
        json!({
            "type": "object",
            "required": ["forms"],
            "additionalProperties": false,
            "properties": { "forms": { "type": "array", "items": form } }
        })
    }

    fn validate(&self, section: &Value) -> Vec<FieldError> {
        match FormsConfig::parse(section) {
            Ok(config) => config::check(&config),
            Err(err) => vec![err],
        }
    }

    fn visit_secrets(&self, section: &mut Value, visit: &mut SecretVisitor<'_>) {
        let Some(forms) = section.get_mut("forms").and_then(Value::as_array_mut) else {
            return;
        };
        for (index, form) in forms.iter_mut().enumerate() {
            if let Some(secret) = form.get_mut("json_secret") {
                visit(&format!("forms[{index}].json_secret"), secret, &Value::Null);
            }
        }
    }

    /// Forms react to submissions, which the forms endpoint queues itself, not to webhooks.
    fn subscriptions(&self, _section: &Value) -> Vec<Subscription> {
        Vec::new()
    }

    async fn run(&self, feature: &str, context: FeatureContext<'_>) -> Attempt {
        let payload = context.job.spec.event.payload();
        let config = match FormsConfig::parse(context.section) {
            Ok(config) => config,
            Err(err) => return configuration(format!("apps.forms is invalid: {}", err.message)),
        };
        let name = payload["form"].as_str().unwrap_or_default();
        let Some(form) = config.form(name) else {
            return configuration(format!("form {name:?} is no longer configured"));
        };
        match feature {
            RECORD => record(&context, payload).await,
            CREATE_TOPIC => create_topic(&context, form, payload).await,
            PRIVATE_MESSAGE => private_message(&context, form, payload).await,
            INVITE => invite(&context, form, payload).await,
            SUBSCRIBE => subscribe(&context, form, payload).await,
            other => permanent(format!("the forms app has no feature {other:?}")),
        }
    }
}

async fn record(context: &FeatureContext<'_>, payload: &Value) -> Attempt {
    let Some(id) = payload["submission_id"].as_str() else {
        return permanent("the submission has no id");
    };
    let instance = &context.job.spec.instance;
    let document_id = format!("{SUBMISSION_PREFIX}{id}");
    match context
        .store
        .put(instance, &document_id, None, payload)
        .await
    {
        Ok(_) => attempt(None, Some(format!("stored as {document_id}"))),
        // An earlier attempt stored it before its outcome was recorded.
        Err(crate::store::StoreError::Conflict { .. }) => {
            attempt(None, Some(format!("already stored as {document_id}")))
        }
        Err(err) => attempt(
            Some(AttemptError::Transient(format!(
                "storing the submission failed: {err}"
            ))),
            None,
        ),
    }
}

fn client<'a>(context: &'a FeatureContext<'_>) -> Result<DiscourseClient<'a>, Attempt> {
    DiscourseClient::new(context.config, context.http).map_err(|err| discourse_failure(&err))
}

async fn create_topic(context: &FeatureContext<'_>, form: &Form, payload: &Value) -> Attempt {
    let Some(action) = &form.actions.topic else {
        return configuration(format!("form {:?} has no topic action", form.name));
    };
    let (discourse, title, body) =
        match prepare_post(context, form, payload, &action.title, &action.body) {
            Ok(prepared) => prepared,
            Err(failed) => return failed,
        };
    let created = discourse
        .create_topic(&title, &body, Some(action.category_id))
        .await;
    post_outcome(created)
}

async fn private_message(context: &FeatureContext<'_>, form: &Form, payload: &Value) -> Attempt {
    let Some(action) = &form.actions.private_message else {
        return configuration(format!(
            "form {:?} has no private_message action",
            form.name
        ));
    };
    let (discourse, title, body) =
        match prepare_post(context, form, payload, &action.title, &action.body) {
            Ok(prepared) => prepared,
            Err(failed) => return failed,
        };
    let users: Vec<&str> = action.users.iter().map(String::as_str).collect();
    let groups: Vec<&str> = action.groups.iter().map(String::as_str).collect();
    let created = discourse
        .create_private_message(&title, &body, &users, &groups)
        .await;
    post_outcome(created)
}

/// Renders a post's title and body over the submission and opens the Discourse client.
fn prepare_post<'a>(
    context: &'a FeatureContext<'_>,
    form: &Form,
    payload: &Value,
    title: &str,
    body: &str,
) -> Result<(DiscourseClient<'a>, String, String), Attempt> {
    let (title, body) = render_post(title, body, &template_context(payload, form))?;
    Ok((client(context)?, title, body))
}

/// Returns the attempt of a request that creates a post.
fn post_outcome(created: Result<NewPost, DiscourseError>) -> Attempt {
    match created {
        Ok(post) => attempt(None, Some(describe(&post))),
        Err(err) => discourse_failure(&err),
    }
}

async fn invite(context: &FeatureContext<'_>, form: &Form, payload: &Value) -> Attempt {
    let Some(action) = &form.actions.invite else {
        return configuration(format!("form {:?} has no invite action", form.name));
    };
    let Some(email) = payload["fields"][&action.email_field].as_str() else {
        return attempt(
            None,
            Some("no email address given; nobody invited".to_string()),
        );
    };
    let message = match &action.message {
        Some(source) => match render(
            source,
            &template_context(payload, form),
            // Discourse may format the message in the invitation email, so values are
            // escaped as for a post.
            Target::Markdown,
            "message",
        ) {
            Ok(message) => Some(message),
            Err(failed) => return failed,
        },
        None => None,
    };
    let discourse = match client(context) {
        Ok(discourse) => discourse,
        Err(failed) => return failed,
    };
    let options = InviteOptions {
        custom_message: message,
        ..InviteOptions::default()
    };
    match discourse.invite(email, &options).await {
        Ok(invite) => attempt(
            None,
            Some(format!("invited {email} (invite {})", invite.id)),
        ),
        Err(err) => discourse_failure(&err),
    }
}

async fn subscribe(context: &FeatureContext<'_>, form: &Form, payload: &Value) -> Attempt {
    let Some(action) = &form.actions.mailchimp else {
        return configuration(format!("form {:?} has no mailchimp action", form.name));
    };
    let fields = &payload["fields"];
    if fields[&action.consent_field] != Value::Bool(true) {
        return attempt(None, Some("no consent given; not subscribed".to_string()));
    }
    let Some(email) = fields[&action.email_field].as_str() else {
        return attempt(
            None,
            Some("no email address given; not subscribed".to_string()),
        );
    };
    let Some(section) = context.config.apps.get("mailchimp") else {
        return configuration(
            "the form subscribes to Mailchimp, but apps.mailchimp is not configured",
        );
    };
    let merge_fields = action
        .merge_fields
        .iter()
        .filter_map(|(tag, name)| {
            let value = fields.get(name.as_str()?)?;
            Some((tag.clone(), value.clone()))
        })
        .collect();
    super::mailchimp::subscribe_address(context, section, email, merge_fields).await
}
