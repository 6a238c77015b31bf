//! Event filters by category, tag, group and private-message status.
//!
//! Payloads carry these attributes in different places: `post.category_id`,
//! `topic.category_id`, `like.post.category_id`, `topic.tags`, `group_user.group_id`. An event
//! that lacks an attribute a filter requires does not pass that filter.

use crate::event::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventFilter {
    /// Passes only events in one of these categories.
    pub category_ids: Vec<i64>,
    /// Passes only events with at least one of these tags.
    pub tags: Vec<String>,
    /// Passes only group membership events of one of these groups.
    pub group_ids: Vec<i64>,
    /// Also passes topics and posts in private messages, which are skipped by default.
    pub include_private_messages: bool,
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        let payload = event.payload();
        if !self.include_private_messages && is_private_message(payload) {
            return false;
        }
        if !self.category_ids.is_empty() {
            match category_id(payload) {
                Some(id) if self.category_ids.contains(&id) => {}
                _ => return false,
            }
        }
        if !self.tags.is_empty() && !tags(payload).iter().any(|tag| self.tags.contains(tag)) {
            return false;
        }
        if !self.group_ids.is_empty() {
            match payload.get("group_id").and_then(Value::as_i64) {
                Some(id) if self.group_ids.contains(&id) => {}
                _ => return false,
            }
        }
        true
    }
}

/// Returns the post inside a `like` payload, or the payload itself.
fn post_or_self(payload: &Value) -> &Value {
    payload.get("post").unwrap_or(payload)
}

fn is_private_message(payload: &Value) -> bool {
    let payload = post_or_self(payload);
    ["archetype", "topic_archetype"]
        .iter()
        .any(|key| payload.get(key).and_then(Value::as_str) == Some("private_message"))
}

fn category_id(payload: &Value) -> Option<i64> {
    post_or_self(payload)
        .get("category_id")
        .and_then(Value::as_i64)
}

/// Tags appear as names in most versions and as objects with a `name` in some.
fn tags(payload: &Value) -> Vec<String> {
    let Some(tags) = payload.get("tags").and_then(Value::as_array) else {
        return Vec::new();
    };
    tags.iter()
        .filter_map(|tag| {
            tag.as_str()
                .or_else(|| tag.get("name").and_then(Value::as_str))
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, payload: Value) -> Event {
        Event {
            id: None,
            name: format!("{kind}_created"),
            kind: kind.to_string(),
            body: json!({ kind: payload }),
            body_sha256: String::new(),
        }
    }

    #[test]
    fn empty_filter_passes_public_events() {
        let filter = EventFilter::default();
        assert!(filter.matches(&event("topic", json!({"category_id": 4}))));
        assert!(filter.matches(&event("user", json!({"id": 1}))));
    }

    #[test]
    fn private_messages_are_skipped_unless_included() {
        let pm = event("post", json!({"topic_archetype": "private_message"}));
        assert!(!EventFilter::default().matches(&pm));
        let filter = EventFilter {
            include_private_messages: true,
            ..Default::default()
        };
        assert!(filter.matches(&pm));
    }

    #[test]
    fn category_filter_reads_nested_like_post() {
        let filter = EventFilter {
            category_ids: vec![7],
            ..Default::default()
        };
        assert!(filter.matches(&event("like", json!({"post": {"category_id": 7}}))));
        assert!(!filter.matches(&event("like", json!({"post": {"category_id": 8}}))));
        assert!(!filter.matches(&event("user", json!({"id": 1}))));
    }

    #[test]
    fn tag_filter_accepts_names_and_objects() {
        let filter = EventFilter {
            tags: vec!["help".into()],
            ..Default::default()
        };
        assert!(filter.matches(&event("topic", json!({"tags": ["help", "x"]}))));
        assert!(filter.matches(&event("topic", json!({"tags": [{"name": "help"}]}))));
        assert!(!filter.matches(&event("topic", json!({"tags": []}))));
    }

    #[test]
    fn group_filter_reads_group_id() {
        let filter = EventFilter {
            group_ids: vec![41],
            ..Default::default()
        };
        assert!(filter.matches(&event("group_user", json!({"group_id": 41}))));
        assert!(!filter.matches(&event("group_user", json!({"group_id": 42}))));
    }
}
