//! The member tags endpoint (`…/members/{x}/tags`).
//!
//! The body is `{"tags": [{"name": "...", "status": "active" | "inactive"}], "is_syncing": bool}`.
//! `active` adds a tag, `inactive` removes it, and tags not named stay. The real API returns
//! 204 and changes nothing when the `tags` wrapper is missing or is not an array, so the fake
//! does the same for every malformed body unless
//! [`Behaviour::strict_tags`](crate::Behaviour::strict_tags) asks for a 400.

use crate::input::kind;
use crate::observe::FakeEvent;
use crate::problem::{FieldError, Problem};
use crate::rules::add_tags;
use crate::state::State;
use serde_json::{Value, json};

/// One requested tag change.
struct TagChange {
    name: String,
    active: bool,
}

/// Applies a tags body to the member at `segment`. A malformed body changes nothing and is an
/// error only in strict mode.
pub(crate) fn update(
    state: &mut State,
    list_id: &str,
    segment: &str,
    body: &Value,
) -> Result<(), Problem> {
    let list = state
        .lists
        .get_mut(list_id)
        .ok_or_else(Problem::not_found)?;
    let hash = list.resolve(segment).ok_or_else(Problem::not_found)?;
    let (changes, is_syncing) = match parse(body) {
        Ok(parsed) => parsed,
        Err(error) if state.behaviour.strict_tags => return Err(Problem::invalid(vec![error])),
        Err(_) => return Ok(()),
    };

    let mut added = Vec::new();
    for change in changes {
        if change.active {
            added.extend(add_tags(list, &hash, &[change.name]));
        } else if let Some(record) = list.members.get_mut(&hash) {
            record.tags.retain(|tag| tag.name != change.name);
        }
    }
    let email = list
        .members
        .get(&hash)
        .map(|record| record.email.clone())
        .unwrap_or_default();

    if !is_syncing {
        for tag in added {
            state.events.push(FakeEvent::TagAutomationTriggered {
                list_id: list_id.to_string(),
                email: email.clone(),
                tag,
            });
        }
    }
    Ok(())
}

/// Renders the tags of the member at `segment` as `GET …/tags` returns them.
pub(crate) fn list(state: &State, list_id: &str, segment: &str) -> Result<Value, Problem> {
    let list = state.lists.get(list_id).ok_or_else(Problem::not_found)?;
    let hash = list.resolve(segment).ok_or_else(Problem::not_found)?;
    let tags: Vec<Value> = list
        .members
        .get(&hash)
        .map(|record| record.tags.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|tag| json!({"id": tag.id, "name": tag.name, "date_added": tag.date_added}))
        .collect();
    Ok(json!({"tags": tags, "total_items": tags.len(), "_links": []}))
}

fn parse(body: &Value) -> Result<(Vec<TagChange>, bool), FieldError> {
    let tags = match body.get("tags") {
        Some(Value::Array(tags)) => tags,
        Some(other) => {
            return Err(FieldError::new(
                "tags",
                format!("Schema describes array, {} found instead", kind(other)),
            ));
        }
        None => {
            return Err(FieldError::new(
                "",
                "Required fields were not provided: tags",
            ));
        }
    };
    let is_syncing = match body.get("is_syncing") {
        None => false,
        Some(Value::Bool(value)) => *value,
        Some(other) => {
            return Err(FieldError::new(
                "is_syncing",
                format!("Schema describes boolean, {} found instead", kind(other)),
            ));
        }
    };

    let mut changes = Vec::new();
    for (index, tag) in tags.iter().enumerate() {
        let name = tag.get("name").and_then(Value::as_str);
        let Some(name) = name.filter(|name| !name.trim().is_empty()) else {
            return Err(FieldError::new(
                format!("tags.item:{index}.name"),
                "This value should not be blank.",
            ));
        };
        let active = match tag.get("status").and_then(Value::as_str) {
            Some("active") => true,
            Some("inactive") => false,
            _ => {
                return Err(FieldError::new(
                    format!("tags.item:{index}.status"),
                    "Data presented is not one of the accepted values: active, inactive.",
                ));
            }
        };
        changes.push(TagChange {
            name: name.to_string(),
            active,
        });
    }
    Ok((changes, is_syncing))
}
