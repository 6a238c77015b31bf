//! Error responses in the RFC 7807 problem+json format that the Marketing API uses.
//!
//! Handlers return a [`Problem`] as a response whose body is still empty. The request gate
//! renders it, because the gate assigns the request id that goes into `instance` and the
//! `X-Request-Id` header.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

/// `type` of every problem the fake returns.
const PROBLEM_TYPE: &str = "https://mailchimp.com/developer/marketing/docs/errors/";

/// Detail of a validation failure whose specifics are in `errors`.
pub(crate) const VALIDATION_DETAIL: &str = "The resource submitted could not be validated. For field-specific details, see the 'errors' array.";

/// One entry of the `errors` array of an Invalid Resource problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A problem+json error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub status: StatusCode,
    pub title: String,
    pub detail: String,
    /// Present only on validation failures (Invalid Resource).
    pub errors: Option<Vec<FieldError>>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title: title.to_string(),
            detail: detail.into(),
            errors: None,
        }
    }

    /// Creates a 400 Invalid Resource with the generic detail and these field errors.
    pub(crate) fn invalid(errors: Vec<FieldError>) -> Self {
        Self::invalid_with_detail(VALIDATION_DETAIL, errors)
    }

    pub(crate) fn invalid_with_detail(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self {
            errors: Some(errors),
            ..Self::new(StatusCode::BAD_REQUEST, "Invalid Resource", detail)
        }
    }

    /// Creates a 400 Invalid Resource whose detail and single field error carry one message.
    pub(crate) fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::invalid_with_detail(message.clone(), vec![FieldError::new(field, message)])
    }

    pub(crate) fn member_exists(email: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Member Exists",
            format!("{email} is already a list member. Use PUT to insert or update list members."),
        )
    }

    pub(crate) fn forgotten(email: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Forgotten Email Not Subscribed",
            format!(
                "{email} was permanently deleted and cannot be re-imported. \
                 The contact must re-subscribe to get back on the list."
            ),
        )
    }

    pub(crate) fn compliance_state(email: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Member In Compliance State",
            format!(
                "{email} is in a compliance state due to unsubscribe, bounce, or compliance \
                 review and cannot be subscribed."
            ),
        )
    }

    pub(crate) fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Resource Not Found",
            "The requested resource could not be found.",
        )
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
            "The requested method and resource are not compatible. See the Allow header for \
             this resource's available methods.",
        )
    }

    pub(crate) fn json_parse_error() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "JSON Parse Error",
            "We encountered an unspecified JSON parsing error.",
        )
    }

    pub(crate) fn api_key_missing() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "API Key Missing",
            "Your request did not include an API key.",
        )
    }

    pub(crate) fn api_key_invalid() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "API Key Invalid",
            "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
        )
    }

    pub(crate) fn user_disabled() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "User Disabled",
            "This account has been disabled.",
        )
    }

    pub(crate) fn too_many_requests(limit: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            format!("You have exceeded the limit of {limit} simultaneous connections."),
        )
    }

    /// Creates the problem returned for an injected failure with this status. A 429 names the
    /// configured concurrency limit.
    pub(crate) fn for_status(status: StatusCode, concurrency_limit: usize) -> Self {
        let (title, detail) = match status.as_u16() {
            400 => ("Bad Request", "Your request could not be processed."),
            401 => return Self::api_key_invalid(),
            403 => (
                "Forbidden",
                "You are not permitted to access this resource.",
            ),
            404 => return Self::not_found(),
            405 => return Self::method_not_allowed(),
            429 => return Self::too_many_requests(concurrency_limit),
            500 => (
                "Internal Server Error",
                "An unexpected internal error has occurred. Please contact Support for more \
                 information.",
            ),
            503 => (
                "Service Unavailable",
                "The service is temporarily unavailable.",
            ),
            _ => (
                status.canonical_reason().unwrap_or("Error"),
                "The fake server injected this failure.",
            ),
        };
        Self::new(status, title, detail)
    }

    /// Returns the text a batch-subscribe item error shows for this problem: the first field
    /// message when the detail is only the generic validation text, else the detail.
    pub(crate) fn item_message(&self) -> String {
        match self.first_error() {
            Some(error) if self.detail == VALIDATION_DETAIL => error.message.clone(),
            _ => self.detail.clone(),
        }
    }

    pub(crate) fn first_error(&self) -> Option<&FieldError> {
        self.errors.as_ref().and_then(|errors| errors.first())
    }

    /// Renders the final response with this request id as `instance` and `X-Request-Id`.
    pub(crate) fn render(&self, request_id: &str, dc: &str) -> Response {
        let mut body = json!({
            "type": PROBLEM_TYPE,
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "instance": request_id,
        });
        if let Some(errors) = &self.errors {
            body["errors"] = json!(errors);
        }

        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json; charset=utf-8"),
        );
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert("x-request-id", value);
        }
        let link = format!(
            "<https://{dc}.api.mailchimp.com/schema/3.0/ProblemDetailDocument.json>; \
             rel=\"describedBy\""
        );
        if let Ok(value) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, value);
        }
        response
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self.status;
        response.extensions_mut().insert(self);
        response
    }
}

/// Creates a response with this status and an empty body, as the rate limiter and gateways
/// send under load.
pub(crate) fn bare(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// Creates a 502 with an HTML body, as a gateway in front of the API sends.
pub(crate) fn bad_gateway_html() -> Response {
    let mut response = Response::new(Body::from(
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
    ));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}
