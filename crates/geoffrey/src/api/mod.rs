//! The HTTP API: webhook intake and health checks.
//!
//! Routes:
//! - `POST /hooks/discourse/{instance}`: Discourse webhooks, signed with the instance's secret.
//! - `POST /api/{resource}/{action}?key=user:password@instance`: the original route form,
//!   where the path names the event (`/api/posts/new` is `post_created`) when Discourse's
//!   headers are absent.
//! - `GET|POST /forms/{instance}/{form}`: hosted forms; see [`forms`].
//! - `GET /healthz`: the process is up.
//! - `GET /readyz`: the store and the queue respond; 503 names the one that does not.
//! - `GET /metrics`: Prometheus metrics in the OpenMetrics text format.
//! - `/ui/` and `/api/v1/`: the web UI and its JSON API, when the router is built with
//!   [`router_with_ui`]; see [`crate::ui`].

mod error;
pub mod forms;
mod intake;
pub mod limits;
mod rejections;
pub mod signature;

pub use error::ApiError;

use crate::event::event_from_route;
use crate::services::Services;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use intake::{Credentials, DiscourseHeaders, Incoming, Receipt};
use serde::Deserialize;
use std::sync::Arc;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Instrument;

/// Returns the API without the web UI.
pub fn router(services: Arc<Services>) -> Router {
    routes(services, None)
}

/// Returns the API with the web UI.
pub fn router_with_ui(services: Arc<Services>, ui: Arc<crate::ui::Ui>) -> Router {
    routes(services, Some(ui))
}

fn routes(services: Arc<Services>, ui: Option<Arc<crate::ui::Ui>>) -> Router {
    let api = Router::new()
        .route("/hooks/discourse/{instance}", post(discourse_hook))
        .route("/api/{resource}/{action}", post(original_hook))
        .route(
            "/forms/{instance}/{form}",
            get(forms::show).post(forms::submit),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .route("/metrics", get(metrics))
        .with_state(services);
    let app = match ui {
        Some(ui) => api.merge(crate::ui::router(ui)),
        None => api,
    };
    app.layer(
        TraceLayer::new_for_http()
            .make_span_with(request_span)
            // The handlers log their failures themselves, rate-limited during outages.
            .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
    )
}

/// Checks that the store and the queue respond. The body names what failed, and the log has
/// the cause, which may name internal hosts.
async fn readiness(
    State(services): State<Arc<Services>>,
) -> (axum::http::StatusCode, Json<serde_json::Value>) {
    let store = services.store.ping().await;
    let queue = services.queue.stats(None).await;
    if let Err(err) = &store {
        tracing::warn!(error = %err, "readiness check: the store does not respond");
    }
    if let Err(err) = &queue {
        tracing::warn!(error = %err, "readiness check: the queue does not respond");
    }
    let state = |ok: bool| if ok { "ok" } else { "unavailable" };
    let body = serde_json::json!({ "store": state(store.is_ok()), "queue": state(queue.is_ok()) });
    let status = if store.is_ok() && queue.is_ok() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

async fn metrics(State(services): State<Arc<Services>>) -> impl axum::response::IntoResponse {
    let text = services
        .metrics
        .render(services.store.as_ref(), services.queue.as_ref())
        .await;
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, content_type)], text)
}

/// Names a request by method and path only: the query of the original route carries a
/// password.
fn request_span(request: &axum::http::Request<Body>) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
}

/// Reads the whole body, failing with 413 beyond `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge { limit }),
        Err(err) => Err(ApiError::BadRequest(format!(
            "failed to read the body: {err}"
        ))),
    }
}

async fn discourse_hook(
    State(services): State<Arc<Services>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Receipt>, ApiError> {
    let Path(instance) =
        path.map_err(|err| ApiError::BadRequest(format!("invalid path: {err}")))?;
    let discourse = DiscourseHeaders::from_headers(&headers);
    let span = tracing::info_span!(
        "delivery",
        instance = %instance,
        event = discourse.event.as_deref().unwrap_or(""),
        event_id = discourse.event_id.as_deref().unwrap_or(""),
    );
    async {
        let body = read_body(body, services.settings.server.max_body_bytes).await?;
        let incoming = Incoming {
            instance: &instance,
            headers: discourse,
            body: &body,
            credentials: Credentials::Signature,
            route_event: None,
        };
        respond(
            &services,
            &instance,
            intake::accept(&services, incoming).await,
        )
    }
    .instrument(span)
    .await
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

async fn original_hook(
    State(services): State<Arc<Services>>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<KeyQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Receipt>, ApiError> {
    let Path((resource, action)) =
        path.map_err(|err| ApiError::BadRequest(format!("invalid path: {err}")))?;
    let Query(query) =
        query.map_err(|err| ApiError::BadRequest(format!("invalid query: {err}")))?;
    let route_event = event_from_route(&resource, &action).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no event for /api/{resource}/{action}; use for example /api/posts/new, \
             /api/topics/edit or /api/users/destroy"
        ))
    })?;
    let key = query
        .key
        .ok_or_else(|| ApiError::Unauthorized(format!("missing key; {}", intake::KEY_FORMAT)))?;
    let (user, password, instance) = parse_key(&key)
        .ok_or_else(|| ApiError::Unauthorized(format!("malformed key; {}", intake::KEY_FORMAT)))?;
    let discourse = DiscourseHeaders::from_headers(&headers);
    let span = tracing::info_span!(
        "delivery",
        instance = %instance,
        event = discourse.event.as_deref().unwrap_or(&route_event),
        event_id = discourse.event_id.as_deref().unwrap_or(""),
    );
    async {
        let body = read_body(body, services.settings.server.max_body_bytes).await?;
        let incoming = Incoming {
            instance,
            headers: discourse,
            body: &body,
            credentials: Credentials::Key { user, password },
            route_event: Some(route_event.clone()),
        };
        respond(
            &services,
            instance,
            intake::accept(&services, incoming).await,
        )
    }
    .instrument(span)
    .await
}

/// Splits `user:password@instance`. The instance is after the last `@` and the password
/// after the first `:`, so passwords may contain either.
fn parse_key(key: &str) -> Option<(&str, &str, &str)> {
    let (credentials, instance) = key.rsplit_once('@')?;
    let (user, password) = credentials.split_once(':')?;
    Some((user, password, instance))
}

fn respond(
    services: &Services,
    instance: &str,
    result: Result<Receipt, ApiError>,
) -> Result<Json<Receipt>, ApiError> {
    static REJECTIONS: std::sync::LazyLock<rejections::RejectionLog> =
        std::sync::LazyLock::new(rejections::RejectionLog::default);
    match &result {
        Ok(receipt) => {
            services.metrics.delivery(receipt.status, "");
            tracing::debug!(
                status = receipt.status,
                jobs = receipt.jobs,
                "delivery handled"
            );
        }
        Err(ApiError::Unavailable(_)) => services.metrics.delivery("unavailable", ""),
        Err(err) => {
            services.metrics.delivery("rejected", err.kind());
            tracing::debug!(error = %err, "delivery rejected");
            if let Some(count) = REJECTIONS.record(instance, err.kind()) {
                tracing::warn!(error = %err, rejections = count, "deliveries rejected; check the webhook in Discourse");
            }
        }
    }
    result.map(Json)
}

#[cfg(test)]
mod tests {
    use super::parse_key;

    #[test]
    fn key_splits_at_last_at_sign() {
        assert_eq!(
            parse_key("geoffrey:pw@forum"),
            Some(("geoffrey", "pw", "forum"))
        );
        assert_eq!(
            parse_key("u:p@ss:w@rd@forum"),
            Some(("u", "p@ss:w@rd", "forum"))
        );
        assert_eq!(parse_key("nopassword@forum"), None);
        assert_eq!(parse_key("u:p"), None);
    }
}
