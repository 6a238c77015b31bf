//! `POST /posts.json` in the fake: new topics and private messages, with Discourse's order of
//! checks. Topic errors (the title) come first, then post errors (the body), then the
//! recipients of a private message, and each stage stops at its first failure.

use super::gate::{Caller, error};
use super::{FakePrivateMessage, FakeTopic, Replay, State};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

/// How long Discourse replays the response to an identical post request.
const REPLAY_WINDOW: Duration = Duration::from_secs(120);

/// Handles one post request for `caller`, replaying an identical recent request.
pub(super) fn create(state: &mut State, caller: &Caller, params: &Map<String, Value>) -> Response {
    let signature = signature(caller, params);
    state
        .replays
        .retain(|replay| replay.at.elapsed() < REPLAY_WINDOW);
    if let Some(replay) = state.replays.iter().find(|r| r.signature == signature) {
        let status = StatusCode::from_u16(replay.status).unwrap_or(StatusCode::OK);
        return (status, Json(replay.body.clone())).into_response();
    }
    let (status, body) = match build(state, caller, params) {
        Ok(outcome) => outcome,
        // An invalid parameter raises an exception in Discourse, which is not replayed.
        Err(response) => return response,
    };
    state.replays.push(Replay {
        signature,
        at: Instant::now(),
        status: status.as_u16(),
        body: body.clone(),
    });
    (status, Json(body)).into_response()
}

/// Returns the request's identity for replays: the user and every parameter, in key order.
fn signature(caller: &Caller, params: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = params.keys().collect();
    keys.sort();
    let mut signature = caller.username.clone();
    for key in keys {
        signature.push_str(&format!("|{key}={}", params[key]));
    }
    signature
}

/// A post request, read from its parameters.
struct Request<'p> {
    private: bool,
    title: &'p str,
    raw: &'p str,
}

/// Validates and creates the topic or private message. Returns the status and body to
/// replay, or a response that must not be replayed.
fn build(
    state: &mut State,
    caller: &Caller,
    params: &Map<String, Value>,
) -> Result<(StatusCode, Value), Response> {
    let text = |key: &str| params.get(key).and_then(Value::as_str).unwrap_or_default();
    let request = Request {
        private: text("archetype") == "private_message",
        title: text("title").trim(),
        raw: text("raw"),
    };
    let category_id = if request.private {
        None
    } else {
        category(state, params.get("category"))?
    };

    if let Some(message) = title_error(state, &request) {
        return Ok(unprocessable(message));
    }
    if let Some(message) = body_error(state, caller, &request) {
        return Ok(unprocessable(message));
    }
    let (usernames, group_names) = if request.private {
        match recipients(state, text("target_recipients")) {
            Ok(recipients) => recipients,
            Err(message) => return Ok(unprocessable(message.to_string())),
        }
    } else {
        (Vec::new(), Vec::new())
    };

    let topic_id = state.new_id();
    let post_id = state.new_id();
    if !caller.staff {
        let entry = (
            caller.username.clone(),
            request.raw.to_string(),
            Instant::now(),
        );
        state.recent_bodies.push(entry);
    }
    if request.private {
        state.private_messages.push(FakePrivateMessage {
            topic_id,
            post_id,
            title: request.title.to_string(),
            raw: request.raw.to_string(),
            usernames,
            group_names,
            username: caller.username.clone(),
        });
    } else {
        state.topics.push(FakeTopic {
            topic_id,
            post_id,
            title: request.title.to_string(),
            raw: request.raw.to_string(),
            category_id,
            username: caller.username.clone(),
        });
    }
    let body = json!({
        "id": post_id,
        "topic_id": topic_id,
        "post_number": 1,
        "topic_slug": slug(request.title),
        "username": caller.username,
        "raw": request.raw,
        "category_id": category_id,
        "archetype": if request.private { "private_message" } else { "regular" },
    });
    Ok((StatusCode::OK, body))
}

/// Reads the `category` parameter: an id as a number or a string of digits. A category that
/// does not exist is invalid, as in Discourse, which responds with 400.
fn category(state: &State, value: Option<&Value>) -> Result<Option<u64>, Response> {
    let id = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if text.is_empty() => return Ok(None),
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.parse::<u64>().ok(),
        Some(_) => None,
    };
    match id {
        Some(id) if state.forum.categories.iter().any(|c| c.id == id) => Ok(Some(id)),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            Some("invalid_parameters"),
            "You supplied invalid parameters to the request: category",
        )),
    }
}

fn title_error(state: &State, request: &Request<'_>) -> Option<String> {
    let settings = &state.forum.settings;
    let length = request.title.chars().count();
    let min = if request.private {
        settings.min_personal_message_title_length
    } else {
        settings.min_topic_title_length
    };
    if length == 0 {
        return Some("Title can't be blank".to_string());
    }
    if length < min {
        return Some(format!(
            "Title is too short (minimum is {min} {})",
            characters(min)
        ));
    }
    let max = settings.max_topic_title_length;
    if length > max {
        return Some(format!(
            "Title is too long (maximum is {max} {})",
            characters(max)
        ));
    }
    let duplicate = !request.private
        && !settings.allow_duplicate_topic_titles
        && state
            .topics
            .iter()
            .any(|topic| topic.title.to_lowercase() == request.title.to_lowercase());
    duplicate.then(|| "Title has already been used".to_string())
}

fn body_error(state: &State, caller: &Caller, request: &Request<'_>) -> Option<String> {
    let settings = &state.forum.settings;
    let length = request.raw.trim().chars().count();
    let min = if request.private {
        settings.min_personal_message_post_length
    } else {
        settings.min_first_post_length
    };
    if length == 0 {
        return Some("Body can't be blank".to_string());
    }
    if length < min {
        return Some(format!(
            "Body is too short (minimum is {min} {})",
            characters(min)
        ));
    }
    let max = settings.max_post_length;
    if length > max {
        return Some(format!(
            "Body is limited to {max} {}; you entered {length}.",
            characters(max)
        ));
    }
    let window = Duration::from_secs(settings.unique_posts_mins * 60);
    let repeated = !caller.staff
        && state.recent_bodies.iter().any(|(username, raw, at)| {
            *username == caller.username && raw == request.raw && at.elapsed() < window
        });
    repeated.then(|| "Body is too similar to what you recently posted".to_string())
}

/// Splits `target_recipients` into usernames and group names as Discourse does. A name is a
/// group when the API user may message a group of that name. A name with `@` is an email
/// address, which the fake does not accept. Any other name must be a user.
fn recipients(
    state: &State,
    target_recipients: &str,
) -> Result<(Vec<String>, Vec<String>), &'static str> {
    let names: Vec<String> = target_recipients
        .split(',')
        .filter(|name| !name.is_empty())
        .map(str::to_lowercase)
        .collect();
    if names.is_empty() {
        return Err("You must select a valid user.");
    }
    let mut usernames = Vec::new();
    let mut group_names = Vec::new();
    for name in names {
        let group = state
            .forum
            .groups
            .iter()
            .find(|group| group.messageable && group.name.to_lowercase() == name);
        if let Some(group) = group {
            group_names.push(group.name.clone());
        } else if name.contains('@') {
            return Err("Sorry, you cannot send personal messages to email.");
        } else if let Some(username) = username_of(state, &name) {
            usernames.push(username);
        } else {
            return Err("One of the users you are sending this message to could not be found.");
        }
    }
    Ok((usernames, group_names))
}

fn username_of(state: &State, lowercase: &str) -> Option<String> {
    if lowercase == "system" {
        return Some("system".to_string());
    }
    state
        .forum
        .users
        .iter()
        .filter_map(|user| user["username"].as_str())
        .find(|username| username.to_lowercase() == lowercase)
        .map(str::to_string)
}

fn unprocessable(message: String) -> (StatusCode, Value) {
    let body = json!({ "action": "create_post", "errors": [message] });
    (StatusCode::UNPROCESSABLE_ENTITY, body)
}

fn characters(count: usize) -> &'static str {
    if count == 1 {
        "character"
    } else {
        "characters"
    }
}

/// Builds a URL slug like Discourse's for ASCII titles: lowercase words joined by hyphens.
fn slug(title: &str) -> String {
    let words: Vec<String> = title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() {
        "topic".to_string()
    } else {
        words.join("-")
    }
}
