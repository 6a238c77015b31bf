//! The fake's routes: the admin user list, invites, and the category and group lists. Post
//! creation is in `posts.rs`.

use super::connection::Connection;
use super::gate::{self, Caller, error};
use super::{FakeInvite, PAGE_SIZE, Shared, State, posts};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub(super) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/admin/users/list/active.json", get(list_users))
        .route("/posts.json", post(create_post))
        .route("/invites.json", post(create_invite))
        .route("/categories.json", get(list_categories))
        .route("/groups.json", get(list_groups))
        .route("/_fake/created", get(list_created))
        .fallback(not_found)
        .with_state(shared)
}

/// Lists what the fake created, for people trying Geoffrey out: not part of Discourse's API.
async fn list_created(Extract(shared): Extract<Shared>) -> Json<Value> {
    let state = shared.lock().unwrap();
    Json(json!({
        "topics": state.topics,
        "private_messages": state.private_messages,
        "invites": state.invites,
    }))
}

async fn not_found() -> Response {
    let message = "The requested URL or resource could not be found.";
    error(StatusCode::NOT_FOUND, Some("not_found"), message)
}

/// Parses a JSON object body, or returns Discourse's 400 for invalid parameters.
pub(super) fn json_object(body: &Bytes) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            Some("invalid_parameters"),
            "You supplied invalid parameters to the request: the body is not a JSON object",
        )),
    }
}

#[derive(Deserialize)]
struct UsersQuery {
    page: Option<usize>,
    show_emails: Option<bool>,
}

async fn list_users(
    Extract(shared): Extract<Shared>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    Query(query): Query<UsersQuery>,
) -> Response {
    let mut state = shared.lock().unwrap();
    if let Err(response) = gate::check(
        &mut state,
        "/admin/users/list/active.json",
        &headers,
        &connection,
    ) {
        return response;
    }
    let page = query.page.unwrap_or(1).max(1);
    state.pages.push(page);
    let start = (page - 1) * PAGE_SIZE;
    let users: Vec<Value> = state
        .forum
        .users
        .iter()
        .skip(start)
        .take(PAGE_SIZE)
        .map(|user| {
            let mut user = user.clone();
            if query.show_emails != Some(true) {
                if let Some(object) = user.as_object_mut() {
                    object.remove("email");
                }
            }
            user
        })
        .collect();
    Json(Value::Array(users)).into_response()
}

async fn create_post(
    Extract(shared): Extract<Shared>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = shared.lock().unwrap();
    let caller = match gate::check(&mut state, "/posts.json", &headers, &connection) {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    match json_object(&body) {
        Ok(params) => posts::create(&mut state, &caller, &params),
        Err(response) => response,
    }
}

async fn create_invite(
    Extract(shared): Extract<Shared>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = shared.lock().unwrap();
    let caller = match gate::check(&mut state, "/invites.json", &headers, &connection) {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    match json_object(&body) {
        Ok(params) => invite(&mut state, &caller, &params),
        Err(response) => response,
    }
}

/// Creates or renews an email invite.
///
/// NOTE: Invites without an email (invite links) are not supported, and the message for an
/// invalid address is a guess, since the source read for the fake does not show it.
fn invite(state: &mut State, caller: &Caller, params: &Map<String, Value>) -> Response {
    let email = params
        .get("email")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    if email.is_empty() {
        let message = "param is missing or the value is empty: email";
        return error(StatusCode::BAD_REQUEST, None, message);
    }
    if !looks_like_email(&email) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, None, "Email is invalid");
    }
    let existing_user = state.forum.users.iter().any(|user| {
        user["email"]
            .as_str()
            .is_some_and(|known| known.eq_ignore_ascii_case(&email))
            && user["staged"] != json!(true)
    });
    if existing_user {
        let message =
            format!("There's no need to invite <b>{email}</b>, they already have an account!");
        return error(StatusCode::UNPROCESSABLE_ENTITY, None, &message);
    }

    let send_email = params.get("skip_email") != Some(&json!(true));
    let pending = state
        .invites
        .iter()
        .position(|invite| invite.email == email && invite.invited_by == caller.username);
    let index = match pending {
        Some(index) => index,
        None => {
            let id = state.new_id();
            let invite = FakeInvite {
                id,
                email: email.clone(),
                group_names: known_groups(state, params.get("group_names")),
                topic_id: params.get("topic_id").and_then(Value::as_u64),
                custom_message: params
                    .get("custom_message")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                emails_sent: 0,
                invited_by: caller.username.clone(),
            };
            state.invites.push(invite);
            state.invites.len() - 1
        }
    };
    let url = state.url.clone();
    let invite = &mut state.invites[index];
    if send_email {
        invite.emails_sent += 1;
    }
    let body = json!({
        "id": invite.id,
        "invite_key": format!("key{}", invite.id),
        "link": format!("{url}/invites/key{}", invite.id),
        "email": invite.email,
        "emailed": invite.emails_sent > 0,
        "custom_message": invite.custom_message,
        "topics": [],
        "groups": invite.group_names.iter().map(|name| json!({ "name": name })).collect::<Vec<_>>(),
    });
    Json(body).into_response()
}

fn looks_like_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !domain.contains('@'),
        None => false,
    }
}

/// Returns the names in a comma-separated `group_names` that name a group.
///
/// NOTE: Whether Discourse ignores or rejects an unknown group name was not checked; the fake
/// ignores it.
fn known_groups(state: &State, names: Option<&Value>) -> Vec<String> {
    let names = names.and_then(Value::as_str).unwrap_or_default();
    names
        .split(',')
        .filter(|name| state.forum.groups.iter().any(|group| group.name == *name))
        .map(str::to_string)
        .collect()
}

#[derive(Deserialize)]
struct CategoriesQuery {
    include_subcategories: Option<String>,
    page: Option<usize>,
}

/// Lists the top-level categories, each with `subcategory_ids` and, when asked for, its
/// `subcategory_list`. Like Discourse without lazy loading, all categories are on page 1.
async fn list_categories(
    Extract(shared): Extract<Shared>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    Query(query): Query<CategoriesQuery>,
) -> Response {
    let mut state = shared.lock().unwrap();
    let caller = match gate::check(&mut state, "/categories.json", &headers, &connection) {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let with_subcategories = query.include_subcategories.as_deref() == Some("true");
    let visible: Vec<_> = state
        .forum
        .categories
        .iter()
        .filter(|category| caller.staff || !category.read_restricted)
        .collect();
    let mut listed = Vec::new();
    if query.page.unwrap_or(1) <= 1 {
        for parent in visible.iter().filter(|c| c.parent_category_id.is_none()) {
            let children: Vec<_> = visible
                .iter()
                .filter(|c| c.parent_category_id == Some(parent.id))
                .collect();
            let mut value = category_json(parent);
            value["subcategory_ids"] = json!(children.iter().map(|c| c.id).collect::<Vec<_>>());
            if with_subcategories {
                value["subcategory_list"] =
                    Value::Array(children.iter().map(|c| category_json(c)).collect());
            }
            listed.push(value);
        }
    }
    let body = json!({
        "category_list": {
            "can_create_category": caller.staff,
            "can_create_topic": true,
            "categories": listed,
        }
    });
    Json(body).into_response()
}

fn category_json(category: &super::FakeCategory) -> Value {
    json!({
        "id": category.id,
        "name": category.name,
        "slug": category.slug,
        "parent_category_id": category.parent_category_id,
        "read_restricted": category.read_restricted,
    })
}

#[derive(Deserialize)]
struct GroupsQuery {
    page: Option<usize>,
}

/// Lists groups by name, a page at a time (0-based). Users who are not staff do not see
/// automatic groups other than `moderators`, as in Discourse.
async fn list_groups(
    Extract(shared): Extract<Shared>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    Query(query): Query<GroupsQuery>,
) -> Response {
    let mut state = shared.lock().unwrap();
    let caller = match gate::check(&mut state, "/groups.json", &headers, &connection) {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let mut visible: Vec<_> = state
        .forum
        .groups
        .iter()
        .filter(|group| caller.staff || !group.automatic || group.name == "moderators")
        .collect();
    visible.sort_by(|a, b| a.name.cmp(&b.name));
    let page = query.page.unwrap_or(0);
    let per_page = state.forum.settings.groups_per_page;
    let groups: Vec<Value> = visible
        .iter()
        .skip(page * per_page)
        .take(per_page)
        .map(|group| {
            json!({
                "id": group.id,
                "name": group.name,
                "full_name": null,
                "automatic": group.automatic,
                "user_count": group.user_count,
                "mentionable_level": 0,
                "messageable_level": 0,
                "visibility_level": 0,
            })
        })
        .collect();
    let body = json!({
        "groups": groups,
        "extras": { "type_filters": ["my", "owner", "public", "close"] },
        "total_rows_groups": visible.len(),
        "load_more_groups": format!("/groups?page={}", page + 1),
    });
    Json(body).into_response()
}
