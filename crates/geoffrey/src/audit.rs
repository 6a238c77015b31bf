//! The audit trail of an instance: one document per change of its `CONFIG`, saying who changed
//! what and when.
//!
//! Entries are documents with the id `audit:<UUIDv7>` in the instance's database, so that they
//! sort by time and [`Store::list_documents`] reads them newest first. The retention purge
//! deletes log entries only and keeps them. A change lists each changed field by its dotted
//! path with the old and new values, except secrets. For those an entry only records that they
//! changed, so an audit entry never contains a secret.

use crate::apps::AppRegistry;
use crate::store::{Store, StoreError, StoreResult, timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// Id prefix of audit entries.
pub const ID_PREFIX: &str = "audit:";

/// The person and tool behind a change: the user name of the web UI's session, or `cli`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user: String,
    /// `ui` (a page), `api` (`/api/v1/`) or `cli`.
    pub source: String,
}

impl Actor {
    pub fn new(user: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            source: source.into(),
        }
    }

    /// Returns the actor of the command line, which has no user of its own.
    pub fn cli() -> Self {
        Self::new("cli", "cli")
    }
}

/// One changed field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Dotted path, such as `apps.mailchimp.list_id` or `apps.relay.rules[0].events`.
    pub path: String,
    /// The value before; `null` when the field was absent. Always absent for a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The value after; `null` when the field was removed. Always absent for a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// Set for a secret, whose values are never recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// One change of an instance's `CONFIG`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The document id, `audit:<UUIDv7>`; filled in when read.
    #[serde(default, skip_serializing)]
    pub id: String,
    #[serde(with = "timestamp")]
    pub at: OffsetDateTime,
    pub actor: Actor,
    /// Kind of change: `instance_created`, `config_saved` or `webhook_secret_rotated`.
    pub action: String,
    /// The revision of `CONFIG` the change made.
    pub rev: String,
    pub changes: Vec<FieldChange>,
}

/// Lists the fields that differ between two `CONFIG` documents, in path order. Secrets (any
/// field that is a secret in either document) are listed without their values.
pub fn diff(before: &Value, after: &Value, apps: &AppRegistry) -> Vec<FieldChange> {
    let mut secrets = crate::instance::secret_paths(before, apps);
    secrets.extend(crate::instance::secret_paths(after, apps));
    let mut changes = Vec::new();
    diff_into("", before, after, &secrets, &mut changes);
    changes
}

fn diff_into(
    path: &str,
    before: &Value,
    after: &Value,
    secrets: &[String],
    changes: &mut Vec<FieldChange>,
) {
    if before == after {
        return;
    }
    let is_object = |value: &Value| value.is_object() || value.is_null();
    if (before.is_object() || after.is_object()) && is_object(before) && is_object(after) {
        let mut keys: Vec<&String> = before
            .as_object()
            .into_iter()
            .chain(after.as_object())
            .flat_map(|object| object.keys())
            .collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let (old, new) = (&before[key.as_str()], &after[key.as_str()]);
            diff_into(&child, old, new, secrets, changes);
        }
        return;
    }
    if holds_items(before) || holds_items(after) {
        let length = array_len(before).max(array_len(after));
        for index in 0..length {
            let (old, new) = (&before[index], &after[index]);
            diff_into(&format!("{path}[{index}]"), old, new, secrets, changes);
        }
        return;
    }
    let secret = secrets.iter().any(|secret| contains_path(path, secret));
    changes.push(FieldChange {
        path: path.to_string(),
        old: (!secret).then(|| before.clone()),
        new: (!secret).then(|| after.clone()),
        secret,
    });
}

/// Tells whether a value is a list (or absent) that contains objects or lists, whose items
/// are then compared one by one. Lists of plain values count as one value.
fn holds_items(value: &Value) -> bool {
    value
        .as_array()
        .is_some_and(|items| items.iter().any(|item| item.is_object() || item.is_array()))
}

fn array_len(value: &Value) -> usize {
    value.as_array().map_or(0, Vec::len)
}

/// Tells whether the field at `path` is `inner` or contains it.
fn contains_path(path: &str, inner: &str) -> bool {
    match inner.strip_prefix(path) {
        Some(rest) => path.is_empty() || rest.is_empty() || rest.starts_with(['.', '[']),
        None => false,
    }
}

/// Writes an audit entry to the instance's database, with a new id.
pub async fn record(store: &dyn Store, instance: &str, entry: &AuditEntry) -> StoreResult<()> {
    let id = format!("{ID_PREFIX}{}", crate::store::log_id(entry.at));
    let mut body =
        serde_json::to_value(entry).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    if let Some(object) = body.as_object_mut() {
        object.insert("type".into(), Value::from("audit"));
    }
    store.put(instance, &id, None, &body).await?;
    Ok(())
}

/// Records the creation of an instance: its first `CONFIG`, with every field as a change.
pub async fn record_creation(
    store: &dyn Store,
    apps: &AppRegistry,
    instance: &str,
    actor: &Actor,
) -> StoreResult<()> {
    let Some(config) = store.get(instance, crate::instance::CONFIG_ID).await? else {
        return Err(StoreError::Corrupt(format!(
            "instance {instance:?} has no CONFIG right after it was created"
        )));
    };
    let entry = AuditEntry {
        id: String::new(),
        at: OffsetDateTime::now_utc(),
        actor: actor.clone(),
        action: "instance_created".to_string(),
        rev: config.rev,
        changes: diff(&Value::Object(Default::default()), &config.body, apps),
    };
    record(store, instance, &entry).await
}

/// Reads the newest `limit` audit entries of an instance, newest first.
pub async fn list(store: &dyn Store, instance: &str, limit: usize) -> StoreResult<Vec<AuditEntry>> {
    let documents = store.list_documents(instance, ID_PREFIX, limit).await?;
    documents
        .into_iter()
        .map(|document| {
            let mut entry: AuditEntry = serde_json::from_value(document.body).map_err(|err| {
                StoreError::Corrupt(format!("audit entry {:?}: {err}", document.id))
            })?;
            entry.id = document.id;
            Ok(entry)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry() -> AppRegistry {
        AppRegistry::builtin()
    }

    fn paths(changes: &[FieldChange]) -> Vec<&str> {
        changes.iter().map(|change| change.path.as_str()).collect()
    }

    #[test]
    fn changed_fields_are_listed_by_path() {
        let before = json!({ "discourse_url": "https://a.example.com", "accept_unsigned": false,
            "apps": { "relay": { "rules": [{ "name": "a", "url": "https://hooks.example.com/t1",
                "events": ["topic_created"], "template": "x" }] } } });
        let after = json!({ "discourse_url": "https://b.example.com", "accept_unsigned": false,
            "apps": { "relay": { "rules": [{ "name": "a", "url": "https://hooks.example.com/t2",
                "events": ["topic_created", "post_created"], "template": "x" }] } } });
        let changes = diff(&before, &after, &registry());
        assert_eq!(
            paths(&changes),
            [
                "apps.relay.rules[0].events",
                "apps.relay.rules[0].url",
                "discourse_url"
            ]
        );
        assert_eq!(
            changes[0].new,
            Some(json!(["topic_created", "post_created"]))
        );
        assert_eq!(changes[2].old, Some(json!("https://a.example.com")));
        assert!(changes[1].secret);
        assert_eq!(changes[1].old, None);
        assert_eq!(changes[1].new, None);
    }

    #[test]
    fn added_app_lists_fields_and_hides_secrets() {
        let before = json!({ "discourse_url": "https://a.example.com", "webhook_secret": "s1-secret-value" });
        let after = json!({ "discourse_url": "https://a.example.com", "webhook_secret": "s2-secret-value",
            "apps": { "mailchimp": { "api_key": "k-secret-us6", "list_id": "aud1" } } });
        let changes = diff(&before, &after, &registry());
        assert_eq!(
            paths(&changes),
            [
                "apps.mailchimp.api_key",
                "apps.mailchimp.list_id",
                "webhook_secret"
            ]
        );
        let text = serde_json::to_string(&changes).expect("serializes");
        for secret in ["s1-secret-value", "s2-secret-value", "k-secret-us6"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(changes[0].secret);
        assert!(changes[2].secret);
        assert_eq!(changes[1].old, Some(Value::Null));
    }

    #[test]
    fn removed_rule_with_a_secret_is_masked() {
        let before = json!({ "apps": { "relay": { "rules": [
            { "name": "a", "url": "https://hooks.example.com/token-a" },
            { "name": "b", "url": "https://hooks.example.com/token-b" }
        ] } } });
        let after = json!({ "apps": { "relay": { "rules": [
            { "name": "a", "url": "https://hooks.example.com/token-a" }
        ] } } });
        let changes = diff(&before, &after, &registry());
        let text = serde_json::to_string(&changes).expect("serializes");
        assert!(!text.contains("token-b"), "{text}");
        assert_eq!(
            paths(&changes),
            ["apps.relay.rules[1].name", "apps.relay.rules[1].url"]
        );
        assert_eq!(changes[0].new, Some(Value::Null));
    }

    #[test]
    fn a_field_contains_its_children_only() {
        assert!(contains_path("apps.relay", "apps.relay.rules[0].url"));
        assert!(contains_path("apps.relay.rules", "apps.relay.rules[0].url"));
        assert!(contains_path("webhook_secret", "webhook_secret"));
        assert!(!contains_path("apps.rel", "apps.relay.rules[0].url"));
        assert!(!contains_path("apps.relay.rules[0].url", "apps.relay"));
    }
}
