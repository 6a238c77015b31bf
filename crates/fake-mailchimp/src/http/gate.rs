//! The middleware every request passes: it logs API requests, authenticates them, enforces
//! the per-account concurrency limit, applies the response delay and injected failures, and
//! renders problem responses with their request id.
//!
//! Order for a request under `/3.0`: log, authenticate, count as in flight (429 when over the
//! limit), wait `response_delay`, apply an injected failure, run the handler. The request
//! stays counted until its response is returned or the client goes away.

use crate::config::OverLimitResponse;
use crate::http::auth;
use crate::http::connection::ConnectionHandle;
use crate::inject::{self, Failure};
use crate::observe::LoggedRequest;
use crate::problem::{self, Problem};
use crate::state::Shared;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Largest request body the fake reads: room for a batch of 500 members with merge fields.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Marker on a response that replaces a connection closed without a response.
#[derive(Debug, Clone, Copy)]
struct ConnectionDropped;

pub(crate) async fn gate(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path != "/3.0" && !path.starts_with("/3.0/") {
        let response = next.run(request).await;
        return finish(&shared, response, false).0;
    }

    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY_BYTES).await else {
        let problem = Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request Entity Too Large",
            format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
        );
        return finish(&shared, problem.into_response(), true).0;
    };
    let logged = LoggedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        body: logged_body(&bytes),
        status: 0,
    };
    let seq = shared.lock().log_request(logged);

    let response = serve_api(&shared, parts, bytes, next).await;
    let (response, status) = finish(&shared, response, true);
    shared.lock().set_request_status(seq, status);
    response
}

async fn serve_api(shared: &Arc<Shared>, parts: Parts, bytes: Bytes, next: Next) -> Response {
    let account = match auth::authenticate(&parts.headers, &shared.config) {
        Ok(account) => account,
        Err(problem) => return problem.into_response(),
    };
    let Some(_in_flight) = InFlight::enter(shared, account) else {
        return over_limit(shared);
    };
    if !shared.config.response_delay.is_zero() {
        tokio::time::sleep(shared.config.response_delay).await;
    }

    let failure = {
        let mut state = shared.lock();
        inject::take_failure(
            &mut state.injections,
            parts.method.as_str(),
            parts.uri.path(),
        )
    };
    match failure {
        None => {}
        Some(Failure::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Failure::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let problem = Problem::for_status(status, shared.config.concurrency_limit);
            return problem.into_response();
        }
        Some(Failure::BadGatewayWithoutJson) => return problem::bad_gateway_html(),
        Some(Failure::BareForbidden) => return problem::bare(StatusCode::FORBIDDEN),
        Some(Failure::DropConnection) => {
            if let Some(ConnectInfo(connection)) =
                parts.extensions.get::<ConnectInfo<ConnectionHandle>>()
            {
                tracing::debug!(peer = %connection.peer, "closing a connection for an injected failure");
                connection.close();
            }
            let mut response = problem::bare(StatusCode::INTERNAL_SERVER_ERROR);
            response.extensions_mut().insert(ConnectionDropped);
            return response;
        }
    }

    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn over_limit(shared: &Shared) -> Response {
    let over_limit = shared.lock().behaviour.over_limit;
    match over_limit {
        OverLimitResponse::Problem => {
            Problem::too_many_requests(shared.config.concurrency_limit).into_response()
        }
        OverLimitResponse::Bare429 => problem::bare(StatusCode::TOO_MANY_REQUESTS),
        OverLimitResponse::Bare403 => problem::bare(StatusCode::FORBIDDEN),
    }
}

/// Renders a pending problem and, for API requests, adds `X-Request-Id`. Returns the response
/// and the status to log, which is 0 for a dropped connection.
fn finish(shared: &Shared, response: Response, is_api: bool) -> (Response, u16) {
    if response.extensions().get::<ConnectionDropped>().is_some() {
        return (response, 0);
    }
    let problem = response.extensions().get::<Problem>().cloned();
    if problem.is_none() && !is_api {
        let status = response.status().as_u16();
        return (response, status);
    }

    let request_id = shared.lock().ids.next_request();
    let mut response = match problem {
        Some(problem) => problem.render(&request_id, &shared.config.dc),
        None => response,
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let status = response.status().as_u16();
    (response, status)
}

fn logged_body(bytes: &Bytes) -> Option<serde_json::Value> {
    if bytes.is_empty() {
        return None;
    }
    let parsed = serde_json::from_slice(bytes).ok();
    Some(
        parsed.unwrap_or_else(|| {
            serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
        }),
    )
}

/// Counts one request as in flight for an account until dropped.
struct InFlight {
    shared: Arc<Shared>,
    account: String,
}

impl InFlight {
    /// Counts the request and returns `None` when that puts the account over the limit. The
    /// rejected request still counts towards the recorded maximum, so a client that went over
    /// the limit shows a maximum above it.
    fn enter(shared: &Arc<Shared>, account: String) -> Option<Self> {
        let mut state = shared.lock();
        let count = state.in_flight.entry(account.clone()).or_insert(0);
        *count += 1;
        let now = *count;
        state.max_in_flight = state.max_in_flight.max(now);
        if now > shared.config.concurrency_limit {
            leave(&mut state.in_flight, &account);
            return None;
        }
        Some(Self {
            shared: shared.clone(),
            account,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        leave(&mut self.shared.lock().in_flight, &self.account);
    }
}

fn leave(in_flight: &mut std::collections::HashMap<String, usize>, account: &str) {
    if let Some(count) = in_flight.get_mut(account) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            in_flight.remove(account);
        }
    }
}
