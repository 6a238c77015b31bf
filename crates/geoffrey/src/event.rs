//! Discourse events as Geoffrey models them: the event name, its payload type and the payload.
//!
//! Discourse sends the event name in `X-Discourse-Event` (`user_created`) and the payload type in
//! `X-Discourse-Event-Type` (`user`); the body is `{"<type>": <payload>}`. Neither header is
//! covered by the signature, so the intake checks them against each other and against the body.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One accepted Discourse event, as it travels inside a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `X-Discourse-Event-Id`: the id of one delivery attempt, absent on the original route.
    pub id: Option<String>,
    /// Event name, for example `user_created`.
    pub name: String,
    /// Payload type and top-level body key, for example `user`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The whole parsed body, `{"<type>": {...}}`.
    pub body: Value,
    /// Lowercase hex SHA-256 of the exact body bytes.
    pub body_sha256: String,
}

impl Event {
    /// Returns the payload object under the body's type key.
    pub fn payload(&self) -> &Value {
        self.body.get(&self.kind).unwrap_or(&Value::Null)
    }
}

/// Returns the payload type Discourse uses for a known event name, or `None` for names from
/// plugins this table does not know. Source: Discourse's `WebHookEventType` seed and the
/// emit job, as of 2026.
pub fn payload_type_of(name: &str) -> Option<&'static str> {
    let exact = match name {
        "ping" => Some("ping"),
        "post_liked" => Some("like"),
        "user_promoted" => Some("user_promoted"),
        "user_added_to_group" | "user_removed_from_group" => Some("group_user"),
        "user_badge_granted" | "user_badge_revoked" => Some("user_badge"),
        "notification_created" => Some("notification"),
        "accepted_solution" | "unaccepted_solution" => Some("solved"),
        "assigned" | "unassigned" => Some("assign"),
        "topic_upvote" | "topic_unvote" => Some("topic_voting"),
        _ => None,
    };
    if exact.is_some() {
        return exact;
    }
    const PREFIXES: [(&str, &str); 9] = [
        ("calendar_event_", "calendar_event"),
        ("chat_message_", "chat_message"),
        ("reviewable_", "reviewable"),
        ("category_", "category"),
        ("group_", "group"),
        ("topic_", "topic"),
        ("post_", "post"),
        ("user_", "user"),
        ("tag_", "tag"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, kind)| *kind)
}

/// Maps the original route's `/api/{resource}/{action}` to an event name, for example
/// `posts/new` to `post_created`. Returns `None` for a pair with no Discourse event.
pub fn event_from_route(resource: &str, action: &str) -> Option<String> {
    let kind = match resource {
        "posts" | "post" => "post",
        "topics" | "topic" => "topic",
        "users" | "user" => "user",
        "groups" | "group" => "group",
        "categories" | "category" => "category",
        "tags" | "tag" => "tag",
        _ => return None,
    };
    let past = match action {
        "new" | "create" | "created" => "created",
        "edit" | "edited" => "edited",
        "update" | "updated" => "updated",
        "destroy" | "delete" | "destroyed" => "destroyed",
        "recover" | "recovered" => "recovered",
        "confirm_email" | "confirmed_email" => "confirmed_email",
        _ => return None,
    };
    let allowed = match kind {
        "post" | "topic" => ["created", "edited", "destroyed", "recovered"].contains(&past),
        "user" => ["created", "updated", "destroyed", "confirmed_email"].contains(&past),
        _ => ["created", "updated", "destroyed"].contains(&past),
    };
    allowed.then(|| format!("{kind}_{past}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_types_of_core_events() {
        let cases = [
            ("ping", "ping"),
            ("user_created", "user"),
            ("user_confirmed_email", "user"),
            ("user_added_to_group", "group_user"),
            ("user_removed_from_group", "group_user"),
            ("user_badge_granted", "user_badge"),
            ("user_promoted", "user_promoted"),
            ("post_liked", "like"),
            ("post_edited", "post"),
            ("topic_created", "topic"),
            ("topic_pinned_globally_status_updated", "topic"),
            ("topic_upvote", "topic_voting"),
            ("reviewable_transitioned_to", "reviewable"),
            ("accepted_solution", "solved"),
            ("calendar_event_created", "calendar_event"),
            ("notification_created", "notification"),
            ("category_destroyed", "category"),
            ("tag_updated", "tag"),
        ];
        for (name, kind) in cases {
            assert_eq!(payload_type_of(name), Some(kind), "{name}");
        }
    }

    #[test]
    fn unknown_event_has_no_type() {
        assert_eq!(payload_type_of("something_from_a_plugin"), None);
    }

    #[test]
    fn original_routes_map_to_events() {
        assert_eq!(
            event_from_route("posts", "new").as_deref(),
            Some("post_created")
        );
        assert_eq!(
            event_from_route("topics", "edit").as_deref(),
            Some("topic_edited")
        );
        assert_eq!(
            event_from_route("users", "new").as_deref(),
            Some("user_created")
        );
        assert_eq!(
            event_from_route("users", "destroy").as_deref(),
            Some("user_destroyed")
        );
        assert_eq!(
            event_from_route("groups", "update").as_deref(),
            Some("group_updated")
        );
        assert_eq!(event_from_route("users", "edit"), None);
        assert_eq!(event_from_route("widgets", "new"), None);
    }
}
