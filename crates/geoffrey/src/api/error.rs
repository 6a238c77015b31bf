//! Errors of the HTTP API and the one place they become responses.
//!
//! 4xx bodies explain what was wrong and how to fix it. 503 bodies state only that the request can
//! be retried; the cause goes to the log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "body is larger than the limit of {limit} bytes; raise server.max_body_bytes, or the \
         instance's limits.instances.<name>.max_body_bytes"
    )]
    PayloadTooLarge { limit: usize },
    /// A per-instance limit was reached; the client should send again after `retry_after`
    /// seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// The store or the queue failed; the text is for the log only.
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    /// Returns a short name of the kind of error, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not found",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::BadRequest(_) => "bad request",
            ApiError::PayloadTooLarge { .. } => "payload too large",
            ApiError::TooManyRequests { .. } => "too many requests",
            ApiError::Unavailable(_) => "unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = match &self {
            ApiError::Unavailable(cause) => {
                // During an outage every request fails alike, so the log gets one line a
                // minute with the number of failed requests it stands for.
                static FAILURES: std::sync::LazyLock<super::rejections::RejectionLog> =
                    std::sync::LazyLock::new(Default::default);
                if let Some(requests) = FAILURES.record("", "unavailable") {
                    tracing::error!(error = %cause, requests, "requests failed because a backend is unavailable");
                }
                "temporarily unavailable; nothing was stored, send the request again".to_string()
            }
            other => other.to_string(),
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        if let ApiError::TooManyRequests { retry_after, .. } = &self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*retry_after),
            );
        }
        response
    }
}
