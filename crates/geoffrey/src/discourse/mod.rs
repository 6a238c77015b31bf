//! A client for the parts of Discourse's API that apps read: the admin user list.
//!
//! Requests carry the `Api-Key` and `Api-Username` headers from the instance's `CONFIG`.
//! Discourse rejects a rate-limited request with 429 and the wait in seconds, in the
//! `Retry-After` header or in `extras.wait_seconds`. The client reports that wait, so callers
//! can pause instead of failing.

pub mod markdown;

use crate::apps::AttemptError;
use crate::apps::http::attempt_from_error;
use crate::instance::InstanceConfig;
use crate::outbound::OutboundClient;
use serde_json::Value;
use std::time::Duration;

/// Users per page of Discourse's admin user list.
pub const USERS_PER_PAGE: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum DiscourseError {
    #[error(
        "the instance has no discourse_api_key; create one in Discourse under Admin > API > Keys"
    )]
    MissingKey,
    #[error("Discourse rate-limited the request; wait {0:?}")]
    RateLimited(Duration),
    /// Worth another try later: timeouts, connection errors, 5xx.
    #[error("Discourse request failed: {0}")]
    Transient(String),
    /// Another try would fail the same way: 401, 403, 404, invalid responses.
    #[error("Discourse rejected the request: {0}")]
    Rejected(String),
}

pub struct DiscourseClient<'a> {
    http: &'a OutboundClient,
    base: String,
    key: &'a str,
    username: &'a str,
}

impl<'a> DiscourseClient<'a> {
    pub fn new(
        config: &'a InstanceConfig,
        http: &'a OutboundClient,
    ) -> Result<Self, DiscourseError> {
        let key = config
            .discourse_api_key
            .as_ref()
            .ok_or(DiscourseError::MissingKey)?;
        Ok(Self {
            http,
            base: config.discourse_url.trim_end_matches('/').to_string(),
            key: key.expose(),
            username: config.discourse_api_username.as_deref().unwrap_or("system"),
        })
    }

    /// Returns one page (1-based) of active users with their email addresses, oldest first.
    /// An empty page means the list has ended.
    pub async fn active_users(&self, page: usize) -> Result<Vec<Value>, DiscourseError> {
        let url = format!(
            "{}/admin/users/list/active.json?page={page}&show_emails=true&order=created&asc=true",
            self.base
        );
        let request = self
            .http
            .get(url)
            .header("Api-Key", self.key)
            .header("Api-Username", self.username);
        let response =
            self.http
                .send(request)
                .await
                .map_err(|err| match attempt_from_error(&err).error {
                    Some(AttemptError::Configuration(message)) => DiscourseError::Rejected(message),
                    Some(error) => DiscourseError::Transient(error.message().to_string()),
                    None => DiscourseError::Transient("request failed".to_string()),
                })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            200 => body.as_array().cloned().ok_or_else(|| {
                DiscourseError::Rejected("the user list is not a JSON array".to_string())
            }),
            429 => {
                let wait = retry_after
                    .or_else(|| body.pointer("/extras/wait_seconds").and_then(Value::as_u64))
                    .unwrap_or(10);
                Err(DiscourseError::RateLimited(Duration::from_secs(wait)))
            }
            500..=599 => Err(DiscourseError::Transient(format!("HTTP {status}"))),
            _ => {
                let detail = body.get("errors").map(Value::to_string).unwrap_or_default();
                Err(DiscourseError::Rejected(format!("HTTP {status} {detail}")))
            }
        }
    }
}
