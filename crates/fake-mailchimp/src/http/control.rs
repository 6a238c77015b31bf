//! The test control API under `/_fake`, without authentication. It offers over HTTP what
//! [`FakeMailchimp`](crate::FakeMailchimp) offers in Rust, for the binary and for clients in
//! other processes. Bodies are JSON and need `Content-Type: application/json`.
//!
//! | route | effect |
//! |---|---|
//! | `POST /_fake/reset` | back to the configured state |
//! | `GET /_fake/requests` | the request log |
//! | `GET /_fake/events` | confirmation emails and tag automations |
//! | `GET /_fake/max-in-flight` | `{"max_in_flight": n}` |
//! | `POST`, `DELETE /_fake/injections` | add an [`Injection`](crate::Injection), or remove all |
//! | `GET`, `PUT /_fake/behaviour` | read or replace the [`Behaviour`](crate::Behaviour) switches |
//! | `POST /_fake/allowed-addresses` | `{"email"}` exempt from the fake-address denylist |
//! | `POST /_fake/throttled-addresses` | `{"email"}` put on the signup throttle |
//! | `GET`, `POST /_fake/lists/{id}/members` | all members, or seed a [`MemberSeed`](crate::MemberSeed) |
//! | `GET /_fake/lists/{id}/members/{email}` | one member with its hidden state |
//! | `POST /_fake/lists/{id}/members/{email}/{action}` | simulate an event, see [`action`] |

use crate::config::Behaviour;
use crate::control::{ControlError, Simulation};
use crate::inject::{self, Injection};
use crate::member::{Member, MemberSeed};
use crate::observe::{FakeEvent, LoggedRequest};
use crate::state::Shared;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

type SharedState = State<Arc<Shared>>;

pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_fake/reset", post(reset))
        .route("/_fake/requests", get(requests))
        .route("/_fake/events", get(events))
        .route("/_fake/max-in-flight", get(max_in_flight))
        .route(
            "/_fake/injections",
            post(add_injection).delete(clear_injections),
        )
        .route("/_fake/behaviour", get(behaviour).put(set_behaviour))
        .route("/_fake/allowed-addresses", post(allow_address))
        .route("/_fake/throttled-addresses", post(throttle_address))
        .route(
            "/_fake/lists/{list_id}/members",
            get(members).post(seed_member),
        )
        .route("/_fake/lists/{list_id}/members/{email}", get(member))
        .route(
            "/_fake/lists/{list_id}/members/{email}/{action}",
            post(action),
        )
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::UnknownList(_) | Self::UnknownMember { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

#[derive(Deserialize)]
struct AddressBody {
    email: String,
}

async fn reset(State(shared): SharedState) -> StatusCode {
    shared.reset();
    StatusCode::NO_CONTENT
}

async fn requests(State(shared): SharedState) -> Json<Vec<LoggedRequest>> {
    let state = shared.lock();
    Json(
        state
            .requests
            .iter()
            .map(|(_, request)| request.clone())
            .collect(),
    )
}

async fn events(State(shared): SharedState) -> Json<Vec<FakeEvent>> {
    Json(shared.lock().events.clone())
}

async fn max_in_flight(State(shared): SharedState) -> Json<Value> {
    Json(json!({"max_in_flight": shared.lock().max_in_flight}))
}

async fn add_injection(State(shared): SharedState, Json(injection): Json<Injection>) -> StatusCode {
    shared.lock().injections.push(inject::arm(injection));
    StatusCode::NO_CONTENT
}

async fn clear_injections(State(shared): SharedState) -> StatusCode {
    shared.lock().injections.clear();
    StatusCode::NO_CONTENT
}

async fn behaviour(State(shared): SharedState) -> Json<Behaviour> {
    Json(shared.lock().behaviour)
}

async fn set_behaviour(State(shared): SharedState, Json(behaviour): Json<Behaviour>) -> StatusCode {
    shared.lock().behaviour = behaviour;
    StatusCode::NO_CONTENT
}

async fn allow_address(State(shared): SharedState, Json(body): Json<AddressBody>) -> StatusCode {
    shared.lock().allow_address(&body.email);
    StatusCode::NO_CONTENT
}

async fn throttle_address(State(shared): SharedState, Json(body): Json<AddressBody>) -> StatusCode {
    shared.lock().throttle_address(&body.email);
    StatusCode::NO_CONTENT
}

async fn members(
    State(shared): SharedState,
    Path(list_id): Path<String>,
) -> Result<Json<Vec<Member>>, ControlError> {
    let state = shared.lock();
    if !state.lists.contains_key(&list_id) {
        return Err(ControlError::UnknownList(list_id));
    }
    Ok(Json(state.members(&list_id)))
}

async fn seed_member(
    State(shared): SharedState,
    Path(list_id): Path<String>,
    Json(seed): Json<MemberSeed>,
) -> Result<StatusCode, ControlError> {
    shared.lock().seed(&list_id, &seed)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn member(
    State(shared): SharedState,
    Path((list_id, email)): Path<(String, String)>,
) -> Result<Json<Member>, ControlError> {
    shared
        .lock()
        .member(&list_id, &email)
        .map(Json)
        .ok_or(ControlError::UnknownMember { list_id, email })
}

/// Simulates an event for one member. Actions: `unsubscribe-by-contact`,
/// `unsubscribe-by-admin`, `bounce`, `confirm`, `archive`, `block-compliance`,
/// `unblock-compliance` and `delete-permanent` (an admin's permanent delete).
async fn action(
    State(shared): SharedState,
    Path((list_id, email, action)): Path<(String, String, String)>,
) -> Result<StatusCode, Response> {
    let simulation = match action.as_str() {
        "unsubscribe-by-contact" => Simulation::UnsubscribeByContact,
        "unsubscribe-by-admin" => Simulation::UnsubscribeByAdmin,
        "bounce" => Simulation::Bounce,
        "confirm" => Simulation::Confirm,
        "archive" => Simulation::Archive,
        "block-compliance" => Simulation::BlockCompliance,
        "unblock-compliance" => Simulation::UnblockCompliance,
        "delete-permanent" => {
            let mut state = shared.lock();
            state
                .admin_delete_permanent(&list_id, &email)
                .map_err(IntoResponse::into_response)?;
            return Ok(StatusCode::NO_CONTENT);
        }
        _ => {
            let error = format!("unknown action {action:?}");
            return Err((StatusCode::NOT_FOUND, Json(json!({"error": error}))).into_response());
        }
    };
    shared
        .lock()
        .simulate(&list_id, &email, simulation)
        .map_err(IntoResponse::into_response)?;
    Ok(StatusCode::NO_CONTENT)
}
