//! Batch subscribe (`POST /3.0/lists/{id}`): up to 500 members in one synchronous call.
//!
//! Each item runs through the same rules as a single PUT. A failed item never fails the call,
//! which returns 200 and lists the item in `errors` with the single-call message. Its
//! `error_code` is `ERROR_CONTACT_EXISTS` for an existing member sent without
//! `update_existing`, and `ERROR_GENERIC` otherwise.

use crate::address;
use crate::config::FakeConfig;
use crate::ids::subscriber_hash;
use crate::input::{MemberInput, kind};
use crate::problem::{FieldError, Problem};
use crate::rules::{CreateStatus, TagUpdate, Writer};
use crate::state::State;
use serde_json::{Value, json};
use std::collections::HashSet;

/// Maximum members per call, as documented for the real API.
pub(crate) const MAX_MEMBERS: usize = 500;

/// Query flags of a batch-subscribe call.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BatchFlags {
    pub skip_merge_validation: bool,
    /// Process only the first of several items with the same address, without an error.
    pub skip_duplicate_check: bool,
}

/// The body flags of a batch-subscribe call.
struct BodyFlags {
    update_existing: bool,
    sync_tags: bool,
}

/// Runs a batch subscribe and returns the response body. Only a malformed body, more than
/// 500 members or an unknown list fail the whole call.
pub(crate) fn subscribe(
    config: &FakeConfig,
    state: &mut State,
    list_id: &str,
    body: &Value,
    flags: BatchFlags,
) -> Result<Value, Problem> {
    if !state.lists.contains_key(list_id) {
        return Err(Problem::not_found());
    }
    let (members, body_flags) = parse_body(body)?;

    let mut seen = HashSet::new();
    let mut new_members = Vec::new();
    let mut updated_members = Vec::new();
    let mut errors = Vec::new();
    for (index, item) in members.iter().enumerate() {
        let item_email = item
            .get("email_address")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string();
        let input = match MemberInput::parse(item, &format!("members.item:{index}.")) {
            Ok(input) => input,
            Err(problem) => {
                errors.push(item_error(&item_email, &problem));
                continue;
            }
        };

        let hash = input
            .email_address
            .as_deref()
            .filter(|email| address::is_valid(email))
            .map(subscriber_hash);
        if let Some(hash) = &hash
            && !seen.insert(hash.clone())
        {
            if !flags.skip_duplicate_check {
                errors.push(duplicate_error(&item_email));
            }
            continue;
        }

        let mut writer = Writer {
            config,
            state: &mut *state,
            list_id,
            skip_merge_validation: flags.skip_merge_validation,
        };
        let existing = hash.filter(|hash| {
            writer
                .state
                .lists
                .get(list_id)
                .is_some_and(|list| list.members.contains_key(hash))
        });
        let result = match existing {
            Some(_) if !body_flags.update_existing => {
                errors.push(contact_exists_error(&item_email));
                continue;
            }
            Some(hash) => {
                let tags = if body_flags.sync_tags {
                    TagUpdate::Replace
                } else {
                    TagUpdate::Add
                };
                writer.update(&hash, &input, tags).map(|hash| (hash, false))
            }
            None => writer
                .create(&input, CreateStatus::StatusIfNew)
                .map(|hash| (hash, true)),
        };

        match result {
            Ok((hash, created)) => {
                let member = member_json(state, list_id, &hash);
                if created {
                    new_members.push(member);
                } else {
                    updated_members.push(member);
                }
            }
            Err(problem) => errors.push(item_error(&item_email, &problem)),
        }
    }

    Ok(json!({
        "total_created": new_members.len(),
        "total_updated": updated_members.len(),
        "error_count": errors.len(),
        "new_members": new_members,
        "updated_members": updated_members,
        "errors": errors,
        "_links": [],
    }))
}

fn parse_body(body: &Value) -> Result<(&Vec<Value>, BodyFlags), Problem> {
    let Some(fields) = body.as_object() else {
        return Err(Problem::invalid(vec![FieldError::new(
            "",
            format!("Schema describes object, {} found instead", kind(body)),
        )]));
    };
    let members = match fields.get("members") {
        Some(Value::Array(members)) => members,
        Some(other) => {
            return Err(Problem::invalid(vec![FieldError::new(
                "members",
                format!("Schema describes array, {} found instead", kind(other)),
            )]));
        }
        None => {
            return Err(Problem::invalid(vec![FieldError::new(
                "",
                "Required fields were not provided: members",
            )]));
        }
    };
    // NOTE: the real API's message for this case is not known, so this text is the fake's own.
    if members.len() > MAX_MEMBERS {
        return Err(Problem::invalid(vec![FieldError::new(
            "members",
            format!(
                "A batch subscribe can add or update at most {MAX_MEMBERS} members; \
                 this request has {}.",
                members.len()
            ),
        )]));
    }
    let flags = BodyFlags {
        update_existing: bool_field(fields, "update_existing")?,
        sync_tags: bool_field(fields, "sync_tags")?,
    };
    Ok((members, flags))
}

fn bool_field(fields: &serde_json::Map<String, Value>, name: &str) -> Result<bool, Problem> {
    match fields.get(name) {
        None => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(other) => Err(Problem::invalid(vec![FieldError::new(
            name,
            format!("Schema describes boolean, {} found instead", kind(other)),
        )])),
    }
}

fn member_json(state: &State, list_id: &str, hash: &str) -> Value {
    state
        .lists
        .get(list_id)
        .and_then(|list| list.members.get(hash))
        .map_or(Value::Null, |record| record.to_json(hash, list_id))
}

fn item_error(email: &str, problem: &Problem) -> Value {
    let (field, field_message) = problem
        .first_error()
        .map(|error| (error.field.clone(), error.message.clone()))
        .unwrap_or_default();
    json!({
        "email_address": email,
        "error": problem.item_message(),
        "error_code": "ERROR_GENERIC",
        "field": field,
        "field_message": field_message,
    })
}

fn contact_exists_error(email: &str) -> Value {
    json!({
        "email_address": email,
        "error": format!(
            "{email} is already a list member, do you want to update? \
             please provide update_existing:true in the request body"
        ),
        "error_code": "ERROR_CONTACT_EXISTS",
        "field": "",
        "field_message": "",
    })
}

// NOTE: the real API's message for duplicates is not known, so this text is the fake's own.
fn duplicate_error(email: &str) -> Value {
    json!({
        "email_address": email,
        "error": format!(
            "{email} appears more than once in this request; only the first occurrence was \
             processed. Set skip_duplicate_check=true to accept duplicates."
        ),
        "error_code": "ERROR_GENERIC",
        "field": "email_address",
        "field_message": "Duplicate email address in the request.",
    })
}
