//! Records that tests read back from the fake: the request log, and the events the real
//! service would have caused outside the API, such as confirmation emails.

use serde::Serialize;

/// One API request as the fake received it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    /// Path without the query string, such as `/3.0/lists/aud1/members/<hash>`.
    pub path: String,
    /// Query string without the `?`, or empty when there is none.
    pub query: String,
    /// The parsed JSON body, or `None` for an empty body. A body that is not JSON is kept as a
    /// JSON string.
    pub body: Option<serde_json::Value>,
    /// Response status. 0 while the request is in flight, and when the fake closed the
    /// connection without a response.
    pub status: u16,
}

/// Something the real service would do outside the API because of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FakeEvent {
    /// A double-opt-in confirmation email went out, because a write set `pending`.
    ConfirmationEmailSent { list_id: String, email: String },
    /// A tag was added through the tags endpoint without `is_syncing: true`, so tag-based
    /// automations would start.
    TagAutomationTriggered {
        list_id: String,
        email: String,
        tag: String,
    },
}
