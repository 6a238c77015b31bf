//! The checks every request to the fake passes before its handler runs, in Discourse's order:
//! injected failures, then the API key and username, then the rate limits.

use super::connection::Connection;
use super::{Failure, State};
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The user a request acts as.
pub(super) struct Caller {
    pub username: String,
    pub staff: bool,
}

/// Runs the checks for a request to `path`. Returns the caller, or the response that ends
/// the request.
pub(super) fn check(
    state: &mut State,
    path: &str,
    headers: &HeaderMap,
    connection: &Connection,
) -> Result<Caller, Response> {
    if let Some(index) = state.failures.iter().position(|(p, _)| p == path) {
        let (_, failure) = state.failures.remove(index);
        return Err(inject(failure, connection));
    }

    let Some(key) = header(headers, "Api-Key") else {
        let message = "You need to be logged in to do that.";
        return Err(error(StatusCode::FORBIDDEN, Some("not_logged_in"), message));
    };
    let caller = (key == state.forum.api_key)
        .then(|| header(headers, "Api-Username").and_then(|name| find_user(state, name)))
        .flatten();
    let Some(caller) = caller else {
        let message = "You are not permitted to view the requested resource. The API username or key is invalid.";
        return Err(error(
            StatusCode::FORBIDDEN,
            Some("invalid_access"),
            message,
        ));
    };

    if state.forced_rate_limits > 0 {
        state.forced_rate_limits -= 1;
        return Err(rate_limited(1));
    }
    if let Some((max, window)) = state.limit {
        let now = Instant::now();
        while state
            .counted
            .front()
            .is_some_and(|at| now.duration_since(*at) >= window)
        {
            state.counted.pop_front();
        }
        if state.counted.len() >= max {
            let oldest = state.counted.front().copied().unwrap_or(now);
            let left = window.saturating_sub(now.duration_since(oldest));
            return Err(rate_limited(whole_seconds(left)));
        }
        state.counted.push_back(now);
    }
    Ok(caller)
}

fn inject(failure: Failure, connection: &Connection) -> Response {
    match failure {
        Failure::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, "injected failure").into_response()
        }
        Failure::DropConnection => {
            connection.cut();
            // Never delivered: the connection fails before the response is written.
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Finds an active user by name, ignoring case, as Discourse matches `Api-Username`.
fn find_user(state: &State, name: &str) -> Option<Caller> {
    if name.eq_ignore_ascii_case("system") {
        return Some(Caller {
            username: "system".to_string(),
            staff: true,
        });
    }
    let user = state.forum.users.iter().find(|user| {
        user["username"]
            .as_str()
            .is_some_and(|username| username.eq_ignore_ascii_case(name))
    })?;
    if user["active"] == json!(false) {
        return None;
    }
    Some(Caller {
        username: user["username"].as_str().unwrap_or(name).to_string(),
        staff: user["admin"] == json!(true) || user["moderator"] == json!(true),
    })
}

/// Rounds a wait up to whole seconds, at least one, as Discourse reports it.
fn whole_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

/// Builds a 429 response in Discourse's shape, with the wait in `Retry-After` and in
/// `extras.wait_seconds`.
pub(super) fn rate_limited(seconds: u64) -> Response {
    let unit = if seconds == 1 { "second" } else { "seconds" };
    let body = json!({
        "errors": [format!("You’ve performed this action too many times. Please wait {seconds} {unit} before trying again.")],
        "error_type": "rate_limit",
        "extras": { "wait_seconds": seconds, "time_left": format!("{seconds} {unit}") }
    });
    let headers = [
        ("Retry-After", seconds.to_string()),
        (
            "Discourse-Rate-Limit-Error-Code",
            "admin_api_key_rate_limit".to_string(),
        ),
    ];
    (StatusCode::TOO_MANY_REQUESTS, headers, Json(body)).into_response()
}

/// Builds an error response in Discourse's shape: `{"errors": [...], "error_type": ...}`.
pub(super) fn error(status: StatusCode, error_type: Option<&str>, message: &str) -> Response {
    let mut body = json!({ "errors": [message] });
    if let Some(error_type) = error_type {
        body["error_type"] = Value::from(error_type);
    }
    (status, Json(body)).into_response()
}
