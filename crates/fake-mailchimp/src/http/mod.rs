//! The HTTP side: routes of the Marketing API under `/3.0`, the test control API under
//! `/_fake`, and the gate middleware around both.

mod auth;
pub(crate) mod connection;
mod control;
mod gate;
mod lists;
mod members;

use crate::problem::Problem;
use crate::state::Shared;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::Arc;

/// Builds the router of one fake server.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/3.0/ping", get(lists::ping))
        .route(
            "/3.0/lists/{list_id}",
            get(lists::get_list).post(lists::batch_subscribe),
        )
        .route(
            "/3.0/lists/{list_id}/merge-fields",
            get(lists::merge_fields),
        )
        .route(
            "/3.0/lists/{list_id}/members",
            get(members::list).post(members::create),
        )
        .route(
            "/3.0/lists/{list_id}/members/{member}",
            get(members::get)
                .put(members::upsert)
                .patch(members::update)
                .delete(members::archive),
        )
        .route(
            "/3.0/lists/{list_id}/members/{member}/tags",
            get(members::get_tags).post(members::post_tags),
        )
        .route(
            "/3.0/lists/{list_id}/members/{member}/actions/delete-permanent",
            post(members::delete_permanent),
        )
        .merge(control::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(gate::MAX_BODY_BYTES))
        .layer(from_fn_with_state(shared.clone(), gate::gate))
        .with_state(shared)
}

async fn not_found() -> Problem {
    Problem::not_found()
}

async fn method_not_allowed() -> Problem {
    Problem::method_not_allowed()
}

/// Returns whether a query parameter is `true` (case-insensitive).
fn query_flag(query: &HashMap<String, String>, name: &str) -> bool {
    query
        .get(name)
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}
