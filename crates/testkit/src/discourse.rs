//! A local fake of the parts of Discourse's API that Geoffrey reads: the admin user list,
//! with Discourse's `Api-Key` and `Api-Username` authentication and its 429 responses with a
//! wait time.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// Users per page, as in Discourse.
pub const PAGE_SIZE: usize = 100;

#[derive(Default)]
struct Shared {
    users: Vec<Value>,
    api_key: String,
    /// Number of coming requests that get 429.
    rate_limited: usize,
    /// Pages requested, in order.
    pages: Vec<usize>,
}

#[derive(Clone)]
pub struct FakeDiscourse {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
}

#[derive(Deserialize)]
struct ListQuery {
    page: Option<usize>,
    show_emails: Option<bool>,
}

impl FakeDiscourse {
    /// Starts the fake on 127.0.0.1 with these users, oldest first, accepting `api_key`.
    pub async fn start(users: Vec<Value>, api_key: &str) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            users,
            api_key: api_key.to_string(),
            ..Shared::default()
        }));
        let app = axum::Router::new()
            .route("/admin/users/list/active.json", get(list_users))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared }
    }

    /// Rejects the next `count` requests with 429 and a one-second wait.
    pub fn rate_limit(&self, count: usize) {
        self.shared.lock().unwrap().rate_limited = count;
    }

    /// Returns the pages requested so far, in order.
    pub fn pages(&self) -> Vec<usize> {
        self.shared.lock().unwrap().pages.clone()
    }
}

async fn list_users(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let mut shared = shared.lock().unwrap();
    let key = headers.get("Api-Key").and_then(|v| v.to_str().ok());
    let username = headers.get("Api-Username").and_then(|v| v.to_str().ok());
    if key != Some(shared.api_key.as_str()) || username.is_none() {
        let body = json!({ "errors": ["You are not permitted to view the requested resource."], "error_type": "invalid_access" });
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    if shared.rate_limited > 0 {
        shared.rate_limited -= 1;
        let body = json!({
            "errors": ["You've performed this action too many times. Please wait 1 second before trying again."],
            "error_type": "rate_limit",
            "extras": { "wait_seconds": 1, "time_left": "1 second" }
        });
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("Retry-After", "1")],
            Json(body),
        )
            .into_response();
    }
    let page = query.page.unwrap_or(1).max(1);
    shared.pages.push(page);
    let start = (page - 1) * PAGE_SIZE;
    let users: Vec<Value> = shared
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
