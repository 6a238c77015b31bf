//! The `relay` app: posts a message to a chat incoming webhook for the events it is configured
//! for. The body is Slack's incoming-webhook JSON (`{"text": ...}`), which Mattermost,
//! Rocket.Chat and Discord's `/slack` endpoint also accept.
//!
//! Each rule names a webhook URL, the events it wants, a filter and a text template. Templates
//! use Jinja syntax (minijinja) over the event payload under its type key, so
//! `New topic {{topic.title}} by {{topic.created_by.username}}` works for `topic_created`. A
//! missing field renders as an empty string. `event.name` and `event.id` are also available.

use super::http::{attempt_from_error, attempt_from_response};
use super::{
    App, Attempt, AttemptError, EventFilter, FeatureContext, FieldError, SecretVisitor,
    Subscription,
};
use crate::secret::Secret;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The relay's only feature.
pub const POST_MESSAGE: &str = "post_message";

/// Maximum message length, in characters, that Slack shows in full; longer messages are cut.
const MAX_TEXT_CHARS: usize = 4000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RelayConfig {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    name: String,
    /// The incoming webhook URL. Secret, because its path is the credential.
    url: Secret,
    events: Vec<String>,
    template: String,
    /// Overrides the sender name where the chat allows it.
    #[serde(default)]
    username: Option<String>,
    // The filter's fields sit in the rule itself; serde cannot flatten a struct into one
    // that rejects unknown fields, so they are listed here.
    #[serde(default)]
    category_ids: Vec<i64>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    group_ids: Vec<i64>,
    #[serde(default)]
    include_private_messages: bool,
}

impl Rule {
    fn filter(&self) -> EventFilter {
        EventFilter {
            category_ids: self.category_ids.clone(),
            tags: self.tags.clone(),
            group_ids: self.group_ids.clone(),
            include_private_messages: self.include_private_messages,
        }
    }
}

/// Largest number of rules in one instance.
pub const MAX_RULES: usize = 100;

pub struct Relay;

fn parse(section: &Value) -> Result<RelayConfig, FieldError> {
    serde_path_to_error::deserialize(section).map_err(|err| {
        let path = err.path().to_string();
        FieldError::new(path, err.into_inner().to_string())
    })
}

/// Returns the template environment: undefined values, and attributes of undefined values,
/// render as empty strings, because payloads differ between events and versions.
fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env
}

/// Describes a template that failed to render with no data, for a configuration error.
pub fn template_error(err: &minijinja::Error) -> String {
    if err.kind() == minijinja::ErrorKind::OutOfFuel {
        format!("the template runs longer than {TEMPLATE_FUEL} steps; simplify its loops")
    } else {
        format!("invalid template: {err}")
    }
}

/// Template instructions one rendering may run, so that a runaway loop in a template fails
/// in milliseconds instead of occupying a worker. A message template runs a few hundred.
///
/// NOTE: fuel counts instructions, not bytes. A short loop that doubles a string with `~`
/// still builds a large string; nothing bounds a rendering's memory yet.
pub const TEMPLATE_FUEL: u64 = 100_000;

fn render(template: &str, context: &Value) -> Result<String, minijinja::Error> {
    environment().render_str(template, context)
}

fn check_rule(index: usize, rule: &Rule, seen: &mut Vec<String>) -> Vec<FieldError> {
    let at = |field: &str| format!("rules[{index}].{field}");
    let mut errors = Vec::new();
    if rule.name.trim().is_empty() {
        errors.push(FieldError::new(
            at("name"),
            "missing; give the rule a short name",
        ));
    } else if seen.contains(&rule.name) {
        errors.push(FieldError::new(
            at("name"),
            format!("{:?} is used twice", rule.name),
        ));
    }
    seen.push(rule.name.clone());

    match reqwest::Url::parse(rule.url.expose()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
        // The URL is a secret, so the message describes it without quoting it.
        _ => errors.push(FieldError::new(
            at("url"),
            "not an http or https URL; paste the chat's incoming webhook URL",
        )),
    }
    if rule.events.is_empty() {
        errors.push(FieldError::new(
            at("events"),
            "empty; list event names such as \"topic_created\", or \"*\" for every event",
        ));
    }
    for (position, name) in rule.events.iter().enumerate() {
        let snake_case = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if name != "*" && !snake_case {
            errors.push(FieldError::new(
                at(&format!("events[{position}]")),
                format!(
                    "{name:?} is not an event name; use names such as \"topic_created\", or \"*\""
                ),
            ));
        }
    }
    if rule.template.trim().is_empty() {
        errors.push(FieldError::new(
            at("template"),
            "missing; write the message text",
        ));
    } else if let Err(err) = render(&rule.template, &json!({})) {
        // Rendering with no data catches syntax errors and unknown filters or functions.
        errors.push(FieldError::new(at("template"), template_error(&err)));
    }
    errors
}

#[async_trait]
impl App for Relay {
    fn name(&self) -> &'static str {
        "relay"
    }

    fn schema(&self) -> Value {
        json!({
            "type": "object",
            "required": ["rules"],
            "additionalProperties": false,
            "properties": {
                "rules": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "url", "events", "template"],
                        "additionalProperties": false,
                        "properties": {
                            "name": { "type": "string", "title": "Rule name" },
                            "url": {
                                "type": "string", "format": "uri", "secret": true,
                                "title": "Incoming webhook URL"
                            },
                            "events": {
                                "type": "array", "items": { "type": "string" },
                                "title": "Events", "description": "Event names, or * for all"
                            },
                            "template": {
                                "type": "string", "title": "Message template",
                                "examples": ["New topic {{topic.title}} by {{topic.created_by.username}}"]
                            },
                            "username": { "type": "string", "title": "Sender name" },
                            "category_ids": { "type": "array", "items": { "type": "integer" } },
                            "tags": { "type": "array", "items": { "type": "string" } },
                            "group_ids": { "type": "array", "items": { "type": "integer" } },
                            "include_private_messages": { "type": "boolean", "default": false }
                        }
                    }
                }
            }
        })
    }

    /// Checks the section. Every delivery is matched against every rule, and the
    /// configuration page shows each, so the number of rules is limited to [`MAX_RULES`].
    fn validate(&self, section: &Value) -> Vec<FieldError> {
        let config = match parse(section) {
            Ok(config) => config,
            Err(err) => return vec![err],
        };
        if config.rules.len() > MAX_RULES {
            return vec![FieldError::new(
                "rules",
                format!(
                    "{} rules; at most {MAX_RULES} are allowed, so remove some or merge rules that post to the same URL",
                    config.rules.len()
                ),
            )];
        }
        let mut seen = Vec::new();
        config
            .rules
            .iter()
            .enumerate()
            .flat_map(|(index, rule)| check_rule(index, rule, &mut seen))
            .collect()
    }

    fn visit_secrets(&self, section: &mut Value, visit: &mut SecretVisitor<'_>) {
        let Some(rules) = section.get_mut("rules").and_then(Value::as_array_mut) else {
            return;
        };
        for (index, rule) in rules.iter_mut().enumerate() {
            // The URL carries its token and names its server, so it has no separate server.
            if let Some(url) = rule.get_mut("url") {
                visit(&format!("rules[{index}].url"), url, &Value::Null);
            }
        }
    }

    fn subscriptions(&self, section: &Value) -> Vec<Subscription> {
        let Ok(config) = parse(section) else {
            return Vec::new();
        };
        config
            .rules
            .into_iter()
            .map(|rule| Subscription {
                feature: POST_MESSAGE.to_string(),
                filter: rule.filter(),
                target: Some(rule.name),
                events: rule.events,
            })
            .collect()
    }

    async fn run(&self, feature: &str, context: FeatureContext<'_>) -> Attempt {
        let permanent = |message: String| Attempt {
            error: Some(AttemptError::Permanent(message)),
            ..Attempt::default()
        };
        if feature != POST_MESSAGE {
            return permanent(format!("unknown relay feature {feature:?}"));
        }
        let config = match parse(context.section) {
            Ok(config) => config,
            Err(err) => return permanent(format!("invalid relay configuration: {}", err.message)),
        };
        let target = context.job.spec.target.as_deref().unwrap_or_default();
        let Some(rule) = config.rules.iter().find(|rule| rule.name == target) else {
            return permanent(format!("relay rule {target:?} no longer exists in CONFIG"));
        };

        let event = &context.job.spec.event;
        let mut template_context =
            json!({ "event": { "name": event.name, "id": event.id.clone().unwrap_or_default() } });
        template_context[&event.kind] = event.payload().clone();
        let text = match render(&rule.template, &template_context) {
            Ok(text) => super::http::truncate(&text, MAX_TEXT_CHARS),
            Err(err) => return permanent(format!("template of rule {target:?} failed: {err}")),
        };

        let mut message = json!({ "text": text });
        if let Some(username) = &rule.username {
            message["username"] = Value::from(username.as_str());
        }
        let request = context.http.post(rule.url.expose()).json(&message);
        let response = context.http.send(request).await;
        match response {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                attempt_from_response(status, &body)
            }
            Err(err) => attempt_from_error(&err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::MASK;

    fn section(rule: Value) -> Value {
        json!({ "rules": [rule] })
    }

    #[test]
    fn too_many_rules_are_one_error() {
        let rules: Vec<Value> = (0..=MAX_RULES)
            .map(|index| {
                json!({ "name": format!("r{index}"), "url": "https://chat.example.com/h",
                "events": ["topic_created"], "template": "x" })
            })
            .collect();
        let errors = Relay.validate(&json!({ "rules": rules }));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "rules");
        assert!(errors[0].message.contains("at most 100"), "{errors:?}");
        let allowed = json!({ "rules": rules[..MAX_RULES].to_vec() });
        assert_eq!(Relay.validate(&allowed), vec![]);
    }

    #[test]
    fn valid_rule_passes() {
        let rule = json!({
            "name": "topics",
            "url": "https://chat.example.com/hooks/abc",
            "events": ["topic_created"],
            "template": "New topic {{topic.title}}",
            "category_ids": [4],
        });
        assert_eq!(Relay.validate(&section(rule)), vec![]);
    }

    #[test]
    fn invalid_rule_reports_each_field() {
        let rule = json!({ "name": "", "url": "ftp://x", "events": [], "template": "{{ oops" });
        let paths: Vec<_> = Relay
            .validate(&section(rule))
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "rules[0].name",
                "rules[0].url",
                "rules[0].events",
                "rules[0].template"
            ]
        );
    }

    #[test]
    fn invalid_url_message_hides_the_url() {
        let rule =
            json!({ "name": "a", "url": "nota-url-token123", "events": ["*"], "template": "x" });
        let errors = Relay.validate(&section(rule));
        assert_eq!(errors.len(), 1);
        assert!(!errors[0].message.contains("token123"));
    }

    #[test]
    fn unknown_field_is_named() {
        let rule = json!({ "name": "a", "url": "https://c.example.com", "events": ["*"],
                           "template": "x", "colour": "red" });
        let errors = Relay.validate(&section(rule));
        assert!(errors[0].message.contains("colour"), "{errors:?}");
    }

    #[test]
    fn template_renders_nested_fields_and_blanks_missing_ones() {
        let context = json!({ "topic": { "title": "Hello", "created_by": { "username": "ann" } } });
        let text = render(
            "New topic {{topic.title}} by {{topic.created_by.username}}{{topic.nope}}",
            &context,
        );
        assert_eq!(text.expect("renders"), "New topic Hello by ann");
    }

    #[test]
    fn missing_objects_render_empty() {
        let text = render(
            "[{{topic.title}}][{{post.topic.title | upper}}]",
            &json!({ "user": {} }),
        );
        assert_eq!(text.expect("renders"), "[][]");
    }

    #[test]
    fn unknown_filter_and_bad_event_names_are_rejected() {
        let rule = json!({ "name": "a", "url": "https://c.example.com", "events": ["topic_created", "Topic Created"],
                           "template": "{{ topic.title | shout }}" });
        let paths: Vec<_> = Relay
            .validate(&section(rule))
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(paths, ["rules[0].events[1]", "rules[0].template"]);
    }

    #[test]
    fn runaway_template_is_rejected() {
        let template =
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}";
        let rule = json!({ "name": "a", "url": "https://c.example.com", "events": ["*"],
                           "template": template });
        let errors = Relay.validate(&section(rule));
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["rules[0].template"]);
        assert!(
            errors[0].message.contains("runs longer than"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn urls_are_masked() {
        let mut value = section(json!({ "name": "a", "url": "https://c.example.com/secret" }));
        let mut paths = Vec::new();
        Relay.visit_secrets(&mut value, &mut |path, url, _| {
            paths.push(path.to_string());
            *url = Value::from(MASK);
        });
        assert_eq!(paths, ["rules[0].url"]);
        assert_eq!(value["rules"][0]["url"], MASK);
    }
}
