//! Handlers for `/3.0/lists/{list_id}/members` and the routes below it.
//!
//! The `{member}` segment may be the subscriber hash, the address itself or the `contact_id`
//! (see [`ListState::resolve`](crate::state::ListState::resolve)).

use crate::http::query_flag;
use crate::ids::subscriber_hash;
use crate::input::{MemberInput, parse_json};
use crate::member::Status;
use crate::problem::Problem;
use crate::rules::{CreateStatus, TagUpdate, Writer};
use crate::state::{Shared, State as FakeState};
use crate::{removal, tags};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Page size of the member collection when `count` is not given, and its maximum.
const DEFAULT_PAGE_SIZE: usize = 10;
const MAX_PAGE_SIZE: usize = 1000;

type SharedState = State<Arc<Shared>>;
type MemberPath = Path<(String, String)>;
type QueryMap = Query<HashMap<String, String>>;

fn member_json(state: &FakeState, list_id: &str, hash: &str) -> Result<Json<Value>, Problem> {
    let list = state.lists.get(list_id).ok_or_else(Problem::not_found)?;
    let record = list.members.get(hash).ok_or_else(Problem::not_found)?;
    Ok(Json(record.to_json(hash, list_id)))
}

/// `GET …/members/{member}`: any stored member, archived ones included.
pub(super) async fn get(
    State(shared): SharedState,
    Path((list_id, member)): MemberPath,
) -> Result<Json<Value>, Problem> {
    let state = shared.lock();
    let list = state.lists.get(&list_id).ok_or_else(Problem::not_found)?;
    let hash = list.resolve(&member).ok_or_else(Problem::not_found)?;
    member_json(&state, &list_id, &hash)
}

/// `GET …/members`: the members in creation order, paged by `count` and `offset` and
/// optionally filtered by `status`. Archived members are listed like the others.
pub(super) async fn list(
    State(shared): SharedState,
    Path(list_id): Path<String>,
    Query(query): QueryMap,
) -> Result<Json<Value>, Problem> {
    let state = shared.lock();
    let list = state.lists.get(&list_id).ok_or_else(Problem::not_found)?;
    let count = query
        .get("count")
        .and_then(|count| count.parse().ok())
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .min(MAX_PAGE_SIZE);
    let offset = query
        .get("offset")
        .and_then(|offset| offset.parse().ok())
        .unwrap_or(0);
    let status = query.get("status").and_then(|status| Status::parse(status));

    let matching: Vec<_> = list
        .members_in_order()
        .into_iter()
        .filter(|(_, record)| status.is_none_or(|status| record.status == status))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(count)
        .map(|(hash, record)| record.to_json(hash, &list_id))
        .collect();
    Ok(Json(json!({
        "members": page,
        "list_id": list_id,
        "total_items": matching.len(),
        "_links": [],
    })))
}

/// `POST …/members`: creates a member. Any existing record gives Member Exists.
pub(super) async fn create(
    State(shared): SharedState,
    Path(list_id): Path<String>,
    Query(query): QueryMap,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let input = MemberInput::parse(&parse_json(&body)?, "")?;
    let mut state = shared.lock();
    let mut writer = Writer {
        config: &shared.config,
        state: &mut state,
        list_id: &list_id,
        skip_merge_validation: query_flag(&query, "skip_merge_validation"),
    };
    let hash = writer.create(&input, CreateStatus::Status)?;
    member_json(&state, &list_id, &hash)
}

/// `PUT …/members/{member}`: updates the member at the path, or creates one.
///
/// Creation uses `status_if_new`, falling back to `status`. When the path matches no member
/// but the body address is already a member under its own hash, the result is Member Exists,
/// as on the real API for a hash of an address that was not lower-cased.
pub(super) async fn upsert(
    State(shared): SharedState,
    Path((list_id, member)): MemberPath,
    Query(query): QueryMap,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let input = MemberInput::parse(&parse_json(&body)?, "")?;
    let mut state = shared.lock();
    let list = state.lists.get(&list_id).ok_or_else(Problem::not_found)?;
    let existing = list.resolve(&member);
    if existing.is_none()
        && let Some(email) = &input.email_address
        && list.members.contains_key(&subscriber_hash(email))
    {
        return Err(Problem::member_exists(email));
    }

    let mut writer = Writer {
        config: &shared.config,
        state: &mut state,
        list_id: &list_id,
        skip_merge_validation: query_flag(&query, "skip_merge_validation"),
    };
    let hash = match existing {
        Some(hash) => writer.update(&hash, &input, TagUpdate::Ignore)?,
        None => writer.create(&input, CreateStatus::StatusIfNew)?,
    };
    member_json(&state, &list_id, &hash)
}

/// `PATCH …/members/{member}`: updates an existing member. A missing one gives 404.
pub(super) async fn update(
    State(shared): SharedState,
    Path((list_id, member)): MemberPath,
    Query(query): QueryMap,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let input = MemberInput::parse(&parse_json(&body)?, "")?;
    let mut state = shared.lock();
    let list = state.lists.get(&list_id).ok_or_else(Problem::not_found)?;
    let hash = list.resolve(&member).ok_or_else(Problem::not_found)?;
    let mut writer = Writer {
        config: &shared.config,
        state: &mut state,
        list_id: &list_id,
        skip_merge_validation: query_flag(&query, "skip_merge_validation"),
    };
    let hash = writer.update(&hash, &input, TagUpdate::Ignore)?;
    member_json(&state, &list_id, &hash)
}

/// `DELETE …/members/{member}`: archives the member.
pub(super) async fn archive(
    State(shared): SharedState,
    Path((list_id, member)): MemberPath,
) -> Result<StatusCode, Problem> {
    removal::archive(&mut shared.lock(), &list_id, &member)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/members/{member}/actions/delete-permanent`.
pub(super) async fn delete_permanent(
    State(shared): SharedState,
    Path((list_id, member)): MemberPath,
) -> Result<StatusCode, Problem> {
    removal::delete_permanent(&mut shared.lock(), &list_id, &member)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET …/members/{member}/tags`.
pub(super) async fn get_tags(
    State(shared): SharedState,
    Path((list_id, member)): MemberPath,
) -> Result<Json<Value>, Problem> {
    tags::list(&shared.lock(), &list_id, &member).map(Json)
}

/// `POST …/members/{member}/tags`: 204 whether or not the body was understood.
pub(super) async fn post_tags(
    State(shared): SharedState,
    Path((list_id, member)): MemberPath,
    body: Bytes,
) -> Result<StatusCode, Problem> {
    let body = parse_json(&body)?;
    tags::update(&mut shared.lock(), &list_id, &member, &body)?;
    Ok(StatusCode::NO_CONTENT)
}
