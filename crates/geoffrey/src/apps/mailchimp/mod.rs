//! The `mailchimp` app: keeps a Mailchimp audience in step with the forum's users.
//!
//! Features:
//! - `subscribe`: on the trigger event (a confirmed email by default) and on `user_updated`,
//!   upserts the member with `PUT` and `status_if_new`, never `status`, so an existing
//!   member's choice is kept. A changed address moves the member (`PATCH` to the old hash).
//! - `group_tags`: on `user_added_to_group` and `user_removed_from_group`, sets the tag that
//!   `group_tags` maps the group to.
//! - `leave`: on `user_destroyed`, archives or permanently deletes the member.
//!
//! Every request waits for a slot under the API key's concurrency limit, shared by all
//! workers (see [`crate::limit`]).

pub mod backfill;
mod client;
mod config;
mod features;

pub use client::subscriber_hash;

/// Subscribes an address to the audience of an instance's `mailchimp` section, for other
/// apps' features such as a form's consent checkbox.
pub async fn subscribe_address(
    context: &FeatureContext<'_>,
    section: &Value,
    email: &str,
    merge_fields: serde_json::Map<String, Value>,
) -> Attempt {
    match MailchimpConfig::parse(section) {
        Ok(config) => features::subscribe_address(context, &config, email, merge_fields).await,
        Err(err) => Attempt {
            error: Some(AttemptError::Configuration(format!(
                "apps.mailchimp.{} is invalid: {}",
                err.path, err.message
            ))),
            ..Attempt::default()
        },
    }
}

use crate::apps::{
    App, Attempt, AttemptError, Check, EventFilter, FeatureContext, FieldError, SecretVisitor,
    Subscription,
};
use crate::outbound::OutboundClient;
use async_trait::async_trait;
use config::MailchimpConfig;
use serde_json::{Value, json};

pub const SUBSCRIBE: &str = "subscribe";
pub const GROUP_TAGS: &str = "group_tags";
pub const LEAVE: &str = "leave";
/// Runs on a job queued by `geoffrey backfill start`, never on a forum event.
pub const BACKFILL: &str = "backfill";

pub struct Mailchimp;

#[async_trait]
impl App for Mailchimp {
    fn name(&self) -> &'static str {
        "mailchimp"
    }

    fn schema(&self) -> Value {
        json!({
            "type": "object",
            "required": ["api_key", "list_id"],
            "additionalProperties": false,
            "properties": {
                "api_key": { "type": "string", "secret": true, "title": "API key",
                             "description": "32 letters or digits, a hyphen and the data centre, such as -us6" },
                "base_url": { "type": "string", "format": "uri", "title": "API base URL override" },
                "list_id": { "type": "string", "title": "Audience id" },
                "consent": {
                    "type": "object",
                    "properties": {
                        "mode": { "enum": ["double_opt_in", "user_field", "everyone"], "default": "double_opt_in" },
                        "user_field": { "type": "string", "title": "Consent user field id" }
                    }
                },
                "trigger": { "enum": config::TRIGGERS, "default": "user_confirmed_email" },
                "merge_fields": { "type": "object", "additionalProperties": {
                    "type": "string", "description": "name, first_name, last_name, username, email or user_fields.<id>" } },
                "static_tags": { "type": "array", "items": { "type": "string" } },
                "group_tags": { "type": "object", "additionalProperties": { "type": "string" },
                                "description": "Discourse group id to Mailchimp tag" },
                "on_leave": { "enum": ["archive", "delete_permanently"], "default": "archive" },
                "max_connections": { "type": "integer", "minimum": 1, "maximum": config::MAX_CONNECTIONS, "default": config::MAX_CONNECTIONS }
            }
        })
    }

    fn validate(&self, section: &Value) -> Vec<FieldError> {
        match MailchimpConfig::parse(section) {
            Ok(config) => config.validate(),
            Err(err) => vec![err],
        }
    }

    fn visit_secrets(&self, section: &mut Value, visit: &mut SecretVisitor<'_>) {
        let server = section.get("base_url").cloned().unwrap_or(Value::Null);
        if let Some(key) = section.get_mut("api_key") {
            visit("api_key", key, &server);
        }
    }

    fn secret_destinations(&self) -> &'static [(&'static str, &'static str)] {
        &[("api_key", "base_url")]
    }

    fn subscriptions(&self, section: &Value) -> Vec<Subscription> {
        let Ok(config) = MailchimpConfig::parse(section) else {
            return Vec::new();
        };
        let group_ids = config
            .group_tags
            .keys()
            .filter_map(|id| id.parse().ok())
            .collect();
        let subscription = |feature: &str, events: Vec<String>, filter: EventFilter| Subscription {
            feature: feature.to_string(),
            target: None,
            events,
            filter,
        };
        let mut subscriptions = vec![
            subscription(
                SUBSCRIBE,
                vec![config.trigger.clone(), "user_updated".into()],
                EventFilter::default(),
            ),
            subscription(LEAVE, vec!["user_destroyed".into()], EventFilter::default()),
        ];
        if !config.group_tags.is_empty() {
            let events = vec![
                "user_added_to_group".into(),
                "user_removed_from_group".into(),
            ];
            subscriptions.push(subscription(
                GROUP_TAGS,
                events,
                EventFilter {
                    group_ids,
                    ..EventFilter::default()
                },
            ));
        }
        subscriptions
    }

    async fn run(&self, feature: &str, context: FeatureContext<'_>) -> Attempt {
        let config = match MailchimpConfig::parse(context.section) {
            Ok(config) => config,
            Err(err) => {
                let message = format!(
                    "invalid mailchimp configuration: {}: {}",
                    err.path, err.message
                );
                return Attempt {
                    error: Some(AttemptError::Permanent(message)),
                    ..Attempt::default()
                };
            }
        };
        match feature {
            SUBSCRIBE => features::subscribe(&context, &config).await,
            GROUP_TAGS => features::group_tag(&context, &config).await,
            LEAVE => features::leave(&context, &config).await,
            BACKFILL => backfill::run(&context, &config, context.job_timeout).await,
            other => Attempt {
                error: Some(AttemptError::Permanent(format!(
                    "unknown mailchimp feature {other:?}"
                ))),
                ..Attempt::default()
            },
        }
    }

    fn has_check(&self) -> bool {
        true
    }

    async fn check(&self, section: &Value, http: &OutboundClient) -> Vec<Check> {
        match MailchimpConfig::parse(section) {
            Ok(config) => client::check(&config, http).await,
            Err(err) => vec![Check {
                name: "configuration".into(),
                ok: false,
                message: err.message,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> Value {
        json!({
            "api_key": "0123456789abcdef0123456789abcdef-us6",
            "list_id": "aud1",
            "merge_fields": { "FNAME": "first_name", "LNAME": "last_name", "NICK": "username" },
            "group_tags": { "41": "Volunteers" },
        })
    }

    #[test]
    fn valid_section_passes() {
        assert_eq!(Mailchimp.validate(&section()), vec![]);
    }

    #[test]
    fn invalid_fields_are_reported_without_the_key() {
        let mut bad = section();
        bad["api_key"] = json!("secret-key-value");
        bad["consent"] = json!({ "mode": "user_field" });
        bad["trigger"] = json!("user_logged_in");
        bad["merge_fields"] = json!({ "fname": "first_name", "LNAME": "surname" });
        bad["group_tags"] = json!({ "staff": "Staff" });
        bad["max_connections"] = json!(11);
        let errors = Mailchimp.validate(&bad);
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "api_key",
                "consent.user_field",
                "trigger",
                "merge_fields.LNAME",
                "merge_fields.fname",
                "group_tags.staff",
                "max_connections"
            ]
        );
        assert!(
            errors
                .iter()
                .all(|e| !e.message.contains("secret-key-value"))
        );
    }

    #[test]
    fn subscriptions_follow_the_config() {
        let subscriptions = Mailchimp.subscriptions(&section());
        let features: Vec<_> = subscriptions.iter().map(|s| s.feature.as_str()).collect();
        assert_eq!(features, [SUBSCRIBE, LEAVE, GROUP_TAGS]);
        assert_eq!(
            subscriptions[0].events,
            ["user_confirmed_email", "user_updated"]
        );
        assert_eq!(subscriptions[2].filter.group_ids, [41]);
    }

    #[test]
    fn api_root_follows_the_data_centre() {
        let config = MailchimpConfig::parse(&section()).expect("valid");
        assert_eq!(config.api_root(), "https://us6.api.mailchimp.com/3.0");
    }
}
