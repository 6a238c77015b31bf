//! The Mailchimp app's features: subscribe or update, group tags, and leaving.
//!
//! The app remembers, per Discourse user, which address it synced (app state document
//! `mailchimp:user:<id>` in the instance database), because Discourse's `user_updated`
//! carries only the new address and group membership events carry only ids.

use super::client::{Failure, Reply, send, subscriber_hash};
use super::config::{ConsentMode, MailchimpConfig, OnLeave};
use crate::apps::{Attempt, AttemptError, FeatureContext};
use crate::store::StoreError;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Record the app keeps about one Discourse user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SyncedUser {
    email: String,
    list_id: String,
    /// Set when the member was archived or deleted because the user left.
    #[serde(default)]
    left: Option<String>,
}

fn skipped(reason: &str) -> Attempt {
    Attempt {
        status: None,
        response: Some(format!("skipped: {reason}")),
        error: None,
        continue_later: false,
        retry_after: None,
    }
}

fn permanent(message: String) -> Attempt {
    Attempt {
        error: Some(AttemptError::Permanent(message)),
        ..Attempt::default()
    }
}

fn transient(message: String) -> Attempt {
    Attempt {
        error: Some(AttemptError::Transient(message)),
        ..Attempt::default()
    }
}

fn state_id(user_id: i64) -> String {
    format!("mailchimp:user:{user_id}")
}

/// Id of the record that Geoffrey permanently deleted an address, by subscriber hash.
fn tombstone_id(email: &str) -> String {
    format!("mailchimp:forgotten:{}", subscriber_hash(email))
}

/// Adds to a "Forgotten Email Not Subscribed" failure when and why Geoffrey deleted the
/// address, if it did, because Mailchimp's message omits it.
async fn explain_forgotten(
    context: &FeatureContext<'_>,
    email: &str,
    mut attempt: Attempt,
) -> Attempt {
    let Some(AttemptError::Permanent(message)) = &attempt.error else {
        return attempt;
    };
    if !message.contains("Forgotten Email Not Subscribed") {
        return attempt;
    }
    let instance = &context.job.spec.instance;
    if let Ok(Some(tombstone)) = context.store.get(instance, &tombstone_id(email)).await {
        let at = tombstone
            .body
            .get("deleted_at")
            .and_then(Value::as_str)
            .unwrap_or("an unknown time");
        let user = tombstone
            .body
            .get("user_id")
            .and_then(Value::as_i64)
            .unwrap_or_default();
        attempt.error = Some(AttemptError::Permanent(format!(
            "{message} (Geoffrey deleted this address permanently at {at}, when forum user {user} was deleted)"
        )));
    }
    attempt
}

async fn load_state(
    context: &FeatureContext<'_>,
    user_id: i64,
) -> Result<Option<(String, SyncedUser)>, StoreError> {
    let instance = &context.job.spec.instance;
    let Some(document) = context.store.get(instance, &state_id(user_id)).await? else {
        return Ok(None);
    };
    let state = serde_json::from_value(document.body).unwrap_or_default();
    Ok(Some((document.rev, state)))
}

async fn save_state(
    context: &FeatureContext<'_>,
    user_id: i64,
    rev: Option<&str>,
    state: &SyncedUser,
) -> Result<(), StoreError> {
    let instance = &context.job.spec.instance;
    let body = serde_json::to_value(state).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    context
        .store
        .put(instance, &state_id(user_id), rev, &body)
        .await
        .map(|_| ())
}

/// Returns the value of a Discourse field for a merge field source.
fn source_value(user: &Value, source: &str) -> Option<Value> {
    let name = user
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim();
    let (first, last) = name.split_once(' ').unwrap_or((name, ""));
    let text = match source {
        "name" => name.to_string(),
        "first_name" => first.to_string(),
        "last_name" => last.trim().to_string(),
        "username" | "email" => user.get(source).and_then(Value::as_str)?.to_string(),
        other => {
            let id = other.strip_prefix("user_fields.")?;
            return user
                .get("user_fields")
                .and_then(|fields| fields.get(id))
                .cloned()
                .filter(|v| !v.is_null());
        }
    };
    Some(Value::from(text))
}

pub(super) fn merge_fields(config: &MailchimpConfig, user: &Value) -> Map<String, Value> {
    config
        .merge_fields
        .iter()
        .filter_map(|(tag, source)| source_value(user, source).map(|value| (tag.clone(), value)))
        .collect()
}

/// Tells whether the user's consent field is set; values from Discourse are strings.
pub(super) fn has_consent(config: &MailchimpConfig, user: &Value) -> bool {
    match config.consent.mode {
        ConsentMode::DoubleOptIn | ConsentMode::Everyone => true,
        ConsentMode::UserField => {
            let field = config.consent.user_field.as_deref().unwrap_or_default();
            let value = user.get("user_fields").and_then(|fields| fields.get(field));
            match value {
                Some(Value::Bool(flag)) => *flag,
                Some(Value::String(text)) => matches!(text.as_str(), "true" | "t" | "1" | "yes"),
                _ => false,
            }
        }
    }
}

fn member_path(config: &MailchimpConfig, email: &str) -> String {
    format!(
        "/lists/{}/members/{}",
        config.list_id,
        subscriber_hash(email)
    )
}

/// Turns a 404 on the audience into a configuration error.
fn audience_missing(mut reply: Reply, config: &MailchimpConfig) -> Reply {
    if reply.is_not_found() {
        reply.failure = Some(Failure::Configuration(format!(
            "audience {:?} not found; check list_id",
            config.list_id
        )));
    }
    reply
}

/// Subscribes a user, or updates the member, without ever sending `status`: a new member gets
/// `status_if_new`, an existing member keeps the status it has, so an unsubscribe in
/// Mailchimp is never undone from here.
pub async fn subscribe(context: &FeatureContext<'_>, config: &MailchimpConfig) -> Attempt {
    let event = &context.job.spec.event;
    let user = event.payload();
    let Some(user_id) = user.get("id").and_then(Value::as_i64) else {
        return permanent("the user payload has no id".into());
    };
    if user.get("staged").and_then(Value::as_bool) == Some(true) {
        return skipped("staged user");
    }
    let Some(email) = user
        .get("email")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|e| !e.is_empty())
    else {
        return permanent(format!("user {user_id} has no email in the payload"));
    };
    let state = match load_state(context, user_id).await {
        Ok(state) => state,
        Err(err) => return transient(format!("reading the app state failed: {err}")),
    };
    let consent = has_consent(config, user);

    match &state {
        // A deleted user stays deleted, even when an older subscribe job runs late.
        Some((_, synced)) if synced.left.is_some() => {
            return skipped("the user left and was removed");
        }
        // Any event with another address than the synced one moves the member, so that a
        // refused move never turns into a second member.
        Some((rev, synced)) if !synced.email.eq_ignore_ascii_case(email) => {
            return change_email(context, config, user_id, rev, synced, email, user).await;
        }
        Some(_) => {}
        None if event.name != "user_updated" => {}
        None if config.consent.mode == ConsentMode::UserField && consent => {}
        None => return update_unsynced(context, config, user_id, email, user).await,
    }
    if !consent {
        return skipped("the consent user field is not true");
    }

    let reply = match put_member(context, config, email, merge_fields(config, user)).await {
        Ok(reply) => reply,
        Err(attempt) => return attempt,
    };
    let synced = SyncedUser {
        email: email.to_string(),
        list_id: config.list_id.clone(),
        left: None,
    };
    let rev = state.as_ref().map(|(rev, _)| rev.as_str());
    if let Err(err) = save_state(context, user_id, rev, &synced).await {
        return transient(format!("saving the app state failed: {err}"));
    }
    reply.into_attempt()
}

/// Subscribes an address that is not a forum user's, such as a form submitter who ticked
/// the consent box. Like [`subscribe`], it never sends `status`.
pub async fn subscribe_address(
    context: &FeatureContext<'_>,
    config: &MailchimpConfig,
    email: &str,
    merge_fields: Map<String, Value>,
) -> Attempt {
    match put_member(context, config, email, merge_fields).await {
        Ok(reply) => reply.into_attempt(),
        Err(attempt) => attempt,
    }
}

/// Adds or updates a member with `status_if_new` and the static tags, returning the PUT's
/// reply, or the failed attempt.
async fn put_member(
    context: &FeatureContext<'_>,
    config: &MailchimpConfig,
    email: &str,
    merge_fields: Map<String, Value>,
) -> Result<Reply, Attempt> {
    let status_if_new = match config.consent.mode {
        ConsentMode::DoubleOptIn => "pending",
        ConsentMode::UserField | ConsentMode::Everyone => "subscribed",
    };
    let mut body = json!({
        "email_address": email,
        "status_if_new": status_if_new,
        "merge_fields": merge_fields,
    });
    if !config.static_tags.is_empty() {
        body["tags"] = json!(config.static_tags);
    }
    let reply = audience_missing(
        send(
            context,
            config,
            Method::PUT,
            &member_path(config, email),
            Some(&body),
        )
        .await,
        config,
    );
    if !reply.is_success() {
        return Err(explain_forgotten(context, email, reply.into_attempt()).await);
    }
    if !config.static_tags.is_empty() {
        // Tags in a PUT apply only to new members, so existing members get them here.
        let tags: Vec<Value> = config
            .static_tags
            .iter()
            .map(|name| json!({ "name": name, "status": "active" }))
            .collect();
        let path = format!("{}/tags", member_path(config, email));
        let tagged = send(
            context,
            config,
            Method::POST,
            &path,
            Some(&json!({ "tags": tags })),
        )
        .await;
        if !tagged.is_success() {
            return Err(tagged.into_attempt());
        }
    }
    Ok(reply)
}

/// Updates the member of a user Geoffrey has no record of, such as one added by a backfill,
/// if the address is in the audience, and otherwise does nothing. `PATCH` never creates a
/// member and leaves the status alone.
async fn update_unsynced(
    context: &FeatureContext<'_>,
    config: &MailchimpConfig,
    user_id: i64,
    email: &str,
    user: &Value,
) -> Attempt {
    let body = json!({ "merge_fields": merge_fields(config, user) });
    let reply = send(
        context,
        config,
        Method::PATCH,
        &member_path(config, email),
        Some(&body),
    )
    .await;
    if reply.is_not_found() {
        return skipped("the user is not in the audience; the subscription event adds them");
    }
    if !reply.is_success() {
        return reply.into_attempt();
    }
    let synced = SyncedUser {
        email: email.to_string(),
        list_id: config.list_id.clone(),
        left: None,
    };
    if let Err(err) = save_state(context, user_id, None, &synced).await {
        return transient(format!("saving the app state failed: {err}"));
    }
    reply.into_attempt()
}

/// Moves a member to a new address. Refusals (the member is not subscribed, the new address
/// is already in the audience) are recorded and not retried, and no second member is created.
async fn change_email(
    context: &FeatureContext<'_>,
    config: &MailchimpConfig,
    user_id: i64,
    rev: &str,
    synced: &SyncedUser,
    email: &str,
    user: &Value,
) -> Attempt {
    let body = json!({ "email_address": email, "merge_fields": merge_fields(config, user) });
    let old_path = member_path(config, &synced.email);
    let reply = send(context, config, Method::PATCH, &old_path, Some(&body)).await;
    if reply.is_not_found() {
        return permanent(format!(
            "the member of the old address is not in audience {:?}; the new address was not added",
            config.list_id
        ));
    }
    if !reply.is_success() {
        return reply.into_attempt();
    }
    let moved = SyncedUser {
        email: email.to_string(),
        list_id: config.list_id.clone(),
        left: None,
    };
    if let Err(err) = save_state(context, user_id, Some(rev), &moved).await {
        return transient(format!("saving the app state failed: {err}"));
    }
    reply.into_attempt()
}

/// Adds or removes the tag mapped to a Discourse group.
pub async fn group_tag(context: &FeatureContext<'_>, config: &MailchimpConfig) -> Attempt {
    let event = &context.job.spec.event;
    let payload = event.payload();
    let (Some(user_id), Some(group_id)) = (
        payload.get("user_id").and_then(Value::as_i64),
        payload.get("group_id").and_then(Value::as_i64),
    ) else {
        return permanent("the group membership payload has no user_id or group_id".into());
    };
    let Some(tag) = config.group_tags.get(&group_id.to_string()) else {
        return skipped("no tag is mapped to this group");
    };
    let synced = match load_state(context, user_id).await {
        Ok(Some((_, synced))) if synced.left.is_none() => synced,
        Ok(_) => {
            return permanent(format!(
                "user {user_id} is not synced to Mailchimp; replay this job after the user is subscribed"
            ));
        }
        Err(err) => return transient(format!("reading the app state failed: {err}")),
    };
    let status = if event.name == "user_removed_from_group" {
        "inactive"
    } else {
        "active"
    };
    let body = json!({ "tags": [{ "name": tag, "status": status }] });
    let path = format!("{}/tags", member_path(config, &synced.email));
    send(context, config, Method::POST, &path, Some(&body))
        .await
        .into_attempt()
}

/// Archives or permanently deletes the member of a deleted Discourse user.
pub async fn leave(context: &FeatureContext<'_>, config: &MailchimpConfig) -> Attempt {
    let user = context.job.spec.event.payload();
    let Some(user_id) = user.get("id").and_then(Value::as_i64) else {
        return permanent("the user payload has no id".into());
    };
    let state = match load_state(context, user_id).await {
        Ok(state) => state,
        Err(err) => return transient(format!("reading the app state failed: {err}")),
    };
    let email = match (&state, user.get("email").and_then(Value::as_str)) {
        (Some((_, synced)), _) => synced.email.clone(),
        (None, Some(email)) => email.trim().to_string(),
        (None, None) => return skipped("the user was never synced and the payload has no email"),
    };
    let path = member_path(config, &email);
    let (reply, left) = match config.on_leave {
        OnLeave::Archive => (
            send(context, config, Method::DELETE, &path, None).await,
            "archived",
        ),
        OnLeave::DeletePermanently => {
            let path = format!("{path}/actions/delete-permanent");
            (
                send(context, config, Method::POST, &path, None).await,
                "deleted permanently",
            )
        }
    };
    // A member that is already gone is what leaving wanted.
    if !reply.is_success() && !reply.is_not_found() {
        return reply.into_attempt();
    }
    if config.on_leave == OnLeave::DeletePermanently {
        let at = crate::store::timestamp::format(time::OffsetDateTime::now_utc());
        let tombstone = json!({ "user_id": user_id, "deleted_at": at, "list_id": config.list_id });
        let instance = &context.job.spec.instance;
        // A tombstone written by an earlier attempt of this job is as good as a new one.
        match context
            .store
            .put(instance, &tombstone_id(&email), None, &tombstone)
            .await
        {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(err) => return transient(format!("recording the permanent delete failed: {err}")),
        }
    }
    let synced = SyncedUser {
        email,
        list_id: config.list_id.clone(),
        left: Some(left.to_string()),
    };
    let rev = state.as_ref().map(|(rev, _)| rev.as_str());
    if let Err(err) = save_state(context, user_id, rev, &synced).await {
        return transient(format!("saving the app state failed: {err}"));
    }
    let mut attempt = reply.into_attempt();
    attempt.error = None;
    attempt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_first_and_last() {
        let user = json!({ "name": "Ada Lovelace King", "username": "ada" });
        assert_eq!(source_value(&user, "first_name"), Some(json!("Ada")));
        assert_eq!(
            source_value(&user, "last_name"),
            Some(json!("Lovelace King"))
        );
        assert_eq!(
            source_value(&json!({ "name": null }), "last_name"),
            Some(json!(""))
        );
        assert_eq!(source_value(&user, "username"), Some(json!("ada")));
        assert_eq!(
            source_value(&json!({ "user_fields": { "3": "yes" } }), "user_fields.3"),
            Some(json!("yes"))
        );
        assert_eq!(source_value(&json!({}), "user_fields.3"), None);
    }
}
