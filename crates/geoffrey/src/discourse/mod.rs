//! A client for the parts of Discourse's REST API that apps use: the admin user list, new
//! topics and private messages, invites, and the lists of categories and groups.
//!
//! Requests carry the `Api-Key` and `Api-Username` headers from the instance's `CONFIG` and go
//! through the [`OutboundClient`], so a forum URL on a private address is rejected unless
//! `outbound.allowed_networks` allows it. Every failure becomes a [`DiscourseError`], and its
//! kind decides whether the caller waits, retries, reports a configuration problem or gives up.
//! `docs/discourse-api.md` lists the API behaviour this module relies on, with sources.
//!
//! [`markdown`] escapes user-supplied text for the posts this client creates.

pub mod markdown;

mod types;

pub use types::{Category, CreatedPost, Group, Invite, InviteOptions, NewPost, Rejection};

use crate::apps::AttemptError;
use crate::apps::http::{attempt_from_error, truncate};
use crate::instance::InstanceConfig;
use crate::outbound::{OutboundClient, SendError};
use reqwest::RequestBuilder;
use serde_json::{Value, json};
use std::time::Duration;

/// Users per page of Discourse's admin user list.
pub const USERS_PER_PAGE: usize = 100;

/// Wait assumed when a 429 response names none.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);

/// Top-level categories per page of `/categories.json` when Discourse lazy-loads categories.
/// Otherwise page 1 lists them all. A shorter page is the last one.
const CATEGORIES_PER_PAGE: usize = 20;

/// Maximum number of pages read from `/categories.json`, as a guard against a server that
/// never returns a short page.
const MAX_CATEGORY_PAGES: usize = 50;

/// Maximum number of pages read from `/groups.json` (Discourse sends 36 groups a page).
const MAX_GROUP_PAGES: usize = 100;

/// Maximum characters of a non-JSON error body kept in an error message.
const MAX_BODY_IN_ERROR: usize = 200;

/// Why a request to Discourse failed, which decides what the caller does next.
///
/// - [`RateLimited`](Self::RateLimited): Discourse responded with 429. Wait the given time, then
///   send the same request again.
/// - [`Transient`](Self::Transient): timeouts, connection errors, 408 and 5xx. Retry later.
/// - [`Configuration`](Self::Configuration): the instance's settings are wrong, so every
///   request fails until someone fixes them: a missing key, 401 or 403 (invalid key, unknown
///   `Api-Username`, or a user without permission for the action), 404 (the URL does not
///   lead to Discourse's API) or a forum address that the outbound guard rejects.
/// - [`Rejected`](Self::Rejected): Discourse refused this request (400 or 422, for example a
///   title that is too short or an unknown recipient) or sent a response this client cannot
///   read. The same request would fail again.
#[derive(Debug, thiserror::Error)]
pub enum DiscourseError {
    #[error(
        "the instance has no discourse_api_key; create one in Discourse under Admin > API > Keys"
    )]
    MissingKey,
    #[error("Discourse rate-limited the request; wait {0:?}")]
    RateLimited(Duration),
    #[error("Discourse request failed: {0}")]
    Transient(String),
    #[error("the Discourse connection is misconfigured: {0}")]
    Configuration(String),
    #[error("Discourse rejected the request: {0}")]
    Rejected(Rejection),
}

impl DiscourseError {
    /// Returns the attempt error for a job log entry. A rate limit counts as transient;
    /// `MissingKey` and `Configuration` mark the app as misconfigured.
    pub fn attempt_error(&self) -> AttemptError {
        let message = self.to_string();
        match self {
            DiscourseError::RateLimited(_) | DiscourseError::Transient(_) => {
                AttemptError::Transient(message)
            }
            DiscourseError::MissingKey | DiscourseError::Configuration(_) => {
                AttemptError::Configuration(message)
            }
            DiscourseError::Rejected(_) => AttemptError::Permanent(message),
        }
    }
}

pub struct DiscourseClient<'a> {
    http: &'a OutboundClient,
    base: String,
    key: &'a str,
    username: &'a str,
}

impl<'a> DiscourseClient<'a> {
    /// Builds a client for the instance's forum, acting as `discourse_api_username`
    /// (`system` when unset). Fails with `MissingKey` when the instance has no API key.
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
        let body = self.send(self.http.get(url)).await?;
        body.as_array()
            .cloned()
            .ok_or_else(|| invalid_response("the user list is not a JSON array"))
    }

    /// Creates a topic with `title` and markdown `raw` in the category `category_id`, or
    /// uncategorized when `None`.
    ///
    /// Discourse rejects a title or body shorter than the site's minimum (15 and 20
    /// characters by default), an unknown category and, unless the site allows duplicate
    /// titles, a title already in use, each with 400 or 422 (`Rejected`). It responds to an
    /// identical request from the same user within 120 seconds with the first response, so
    /// a retry soon after a lost response does not create a second topic.
    pub async fn create_topic(
        &self,
        title: &str,
        raw: &str,
        category_id: Option<u64>,
    ) -> Result<NewPost, DiscourseError> {
        let mut body = json!({ "title": title, "raw": raw });
        if let Some(category_id) = category_id {
            body["category"] = json!(category_id);
        }
        self.create_post(body).await
    }

    /// Sends a private message to the users `usernames` and the members of `group_names`.
    ///
    /// Discourse takes all recipients in one comma-separated `target_recipients` field and
    /// treats a name as a group when the API user may message a group of that name, so a
    /// username that equals such a group's name reaches the group. An unknown user or group,
    /// or none at all, is rejected with 422.
    pub async fn create_private_message(
        &self,
        title: &str,
        raw: &str,
        usernames: &[&str],
        group_names: &[&str],
    ) -> Result<NewPost, DiscourseError> {
        let recipients: Vec<&str> = usernames.iter().chain(group_names).copied().collect();
        let body = json!({
            "title": title,
            "raw": raw,
            "archetype": "private_message",
            "target_recipients": recipients.join(","),
        });
        self.create_post(body).await
    }

    /// Invites `email` to the forum, which sends the invitation by email unless
    /// `options.skip_email` is set.
    ///
    /// An address that already belongs to a user is rejected with 422 (`Rejected`). Only the
    /// message, which depends on the site's locale and settings, identifies that case. Inviting an
    /// address again while its invite from the same user is still valid renews and resends
    /// that invite.
    pub async fn invite(
        &self,
        email: &str,
        options: &InviteOptions,
    ) -> Result<Invite, DiscourseError> {
        let mut body = json!({ "email": email, "skip_email": options.skip_email });
        if !options.group_names.is_empty() {
            body["group_names"] = json!(options.group_names.join(","));
        }
        if let Some(topic_id) = options.topic_id {
            body["topic_id"] = json!(topic_id);
        }
        if let Some(message) = &options.custom_message {
            body["custom_message"] = json!(message);
        }
        let url = format!("{}/invites.json", self.base);
        let response = self.send(self.http.post(url).json(&body)).await?;
        serde_json::from_value(response)
            .map_err(|err| invalid_response(&format!("the invite response is invalid: {err}")))
    }

    /// Returns every category the API user can see, subcategories included, in the order
    /// Discourse lists them, each parent before its subcategories.
    pub async fn categories(&self) -> Result<Vec<Category>, DiscourseError> {
        let mut categories: Vec<Category> = Vec::new();
        for page in 1..=MAX_CATEGORY_PAGES {
            let url = format!(
                "{}/categories.json?include_subcategories=true&page={page}",
                self.base
            );
            let body = self.send(self.http.get(url)).await?;
            let listed = body
                .pointer("/category_list/categories")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid_response("the category list has no categories array"))?;
            for value in listed {
                types::flatten_category(value, &mut categories)?;
            }
            if listed.len() < CATEGORIES_PER_PAGE {
                break;
            }
        }
        Ok(categories)
    }

    /// Returns every group the API user can see. Discourse hides automatic groups (such as
    /// `trust_level_0`) from users who are not staff, and responds with 403 when the group
    /// directory is disabled and the API user is not staff.
    pub async fn groups(&self) -> Result<Vec<Group>, DiscourseError> {
        let mut groups: Vec<Group> = Vec::new();
        for page in 0..MAX_GROUP_PAGES {
            let url = format!("{}/groups.json?page={page}", self.base);
            let body = self.send(self.http.get(url)).await?;
            let listed = body
                .get("groups")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid_response("the group list has no groups array"))?;
            for value in listed {
                let group: Group = serde_json::from_value(value.clone()).map_err(|err| {
                    invalid_response(&format!("a group in the list is invalid: {err}"))
                })?;
                groups.push(group);
            }
            let total = body.get("total_rows_groups").and_then(Value::as_u64);
            let complete = total.is_some_and(|total| groups.len() as u64 >= total);
            if listed.is_empty() || complete {
                break;
            }
        }
        Ok(groups)
    }

    /// Sends `POST /posts.json` and reads the created post, or the notice that Discourse
    /// queued it for review.
    async fn create_post(&self, body: Value) -> Result<NewPost, DiscourseError> {
        let url = format!("{}/posts.json", self.base);
        let response = self.send(self.http.post(url).json(&body)).await?;
        types::parse_new_post(&response)
    }

    /// Sends a request with the API headers and returns the JSON body of a 2xx response.
    async fn send(&self, request: RequestBuilder) -> Result<Value, DiscourseError> {
        let request = request
            .header("Api-Key", self.key)
            .header("Api-Username", self.username)
            .header("Accept", "application/json");
        let response = self.http.send(request).await.map_err(from_send_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        let text = response.text().await.map_err(|err| {
            DiscourseError::Transient(format!(
                "reading the response failed: {}",
                err.without_url()
            ))
        })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(classify(status, retry_after, &body, &text))
    }
}

/// Maps a failed send (no response) onto the error kinds.
fn from_send_error(err: SendError) -> DiscourseError {
    let err = match err {
        SendError::Http(http) if http.is_builder() => {
            let message = format!("the request could not be built: {}", http.without_url());
            return DiscourseError::Configuration(message);
        }
        other => other,
    };
    match attempt_from_error(&err).error {
        Some(AttemptError::Configuration(message)) => DiscourseError::Configuration(message),
        Some(error) => DiscourseError::Transient(error.message().to_string()),
        None => DiscourseError::Transient("request failed".to_string()),
    }
}

/// Maps a non-2xx response onto the error kinds, as described on [`DiscourseError`].
fn classify(status: u16, retry_after: Option<u64>, body: &Value, text: &str) -> DiscourseError {
    if status == 429 {
        let wait = retry_after
            .or_else(|| body.pointer("/extras/wait_seconds").and_then(Value::as_u64))
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_RATE_LIMIT_WAIT);
        return DiscourseError::RateLimited(wait);
    }
    let rejection = Rejection::from_body(status, body, &truncate(text, MAX_BODY_IN_ERROR));
    match status {
        401 | 403 => DiscourseError::Configuration(format!(
            "{rejection}; check discourse_api_key and discourse_api_username, and that this \
             user may perform the action"
        )),
        404 => DiscourseError::Configuration(format!(
            "{rejection}; check that discourse_url is the forum's base URL"
        )),
        408 | 500..=599 => DiscourseError::Transient(rejection.to_string()),
        _ => DiscourseError::Rejected(rejection),
    }
}

/// Builds the error for a 2xx response whose body is not what the endpoint returns.
fn invalid_response(message: &str) -> DiscourseError {
    DiscourseError::Rejected(Rejection {
        status: 200,
        error_type: None,
        errors: vec![message.to_string()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_json(status: u16, retry_after: Option<u64>, body: Value) -> DiscourseError {
        classify(status, retry_after, &body, &body.to_string())
    }

    #[test]
    fn rate_limit_prefers_retry_after() {
        let body = json!({ "errors": ["slow down"], "extras": { "wait_seconds": 7 } });
        let error = classify_json(429, Some(3), body.clone());
        assert!(matches!(error, DiscourseError::RateLimited(wait) if wait.as_secs() == 3));
        let error = classify_json(429, None, body);
        assert!(matches!(error, DiscourseError::RateLimited(wait) if wait.as_secs() == 7));
        let error = classify_json(429, None, Value::Null);
        assert!(
            matches!(error, DiscourseError::RateLimited(wait) if wait == DEFAULT_RATE_LIMIT_WAIT)
        );
    }

    #[test]
    fn access_errors_are_configuration() {
        let body = json!({
            "errors": ["You are not permitted to view the requested resource. The API username or key is invalid."],
            "error_type": "invalid_access"
        });
        for status in [401, 403, 404] {
            let error = classify_json(status, None, body.clone());
            let DiscourseError::Configuration(message) = error else {
                panic!("{status} is not a configuration error");
            };
            assert!(message.contains("invalid_access"), "{message}");
        }
    }

    #[test]
    fn validation_errors_are_rejected() {
        let body = json!({ "action": "create_post", "errors": ["Title is too short (minimum is 15 characters)"] });
        let DiscourseError::Rejected(rejection) = classify_json(422, None, body) else {
            panic!("422 is not rejected");
        };
        assert_eq!(rejection.status, 422);
        assert_eq!(
            rejection.errors,
            ["Title is too short (minimum is 15 characters)"]
        );
        let body = json!({ "errors": ["You supplied invalid parameters to the request: category"], "error_type": "invalid_parameters" });
        let DiscourseError::Rejected(rejection) = classify_json(400, None, body) else {
            panic!("400 is not rejected");
        };
        assert_eq!(rejection.error_type.as_deref(), Some("invalid_parameters"));
    }

    #[test]
    fn server_errors_are_transient() {
        for status in [408, 500, 502, 503] {
            let error = classify_json(status, None, Value::Null);
            assert!(
                matches!(error, DiscourseError::Transient(_)),
                "{status}: {error}"
            );
        }
    }

    #[test]
    fn html_error_body_is_kept_short() {
        let page = format!("<html>{}</html>", "x".repeat(1000));
        let DiscourseError::Rejected(rejection) = classify(418, None, &Value::Null, &page) else {
            panic!("418 is not rejected");
        };
        assert!(rejection.errors[0].chars().count() <= MAX_BODY_IN_ERROR + 1);
    }

    #[test]
    fn attempt_errors_follow_the_kinds() {
        let cases = [
            (DiscourseError::MissingKey, "configuration"),
            (
                DiscourseError::RateLimited(Duration::from_secs(1)),
                "transient",
            ),
            (DiscourseError::Transient("HTTP 502".into()), "transient"),
            (
                DiscourseError::Configuration("HTTP 403".into()),
                "configuration",
            ),
            (invalid_response("bad"), "permanent"),
        ];
        for (error, expected) in cases {
            let kind = match error.attempt_error() {
                AttemptError::Transient(_) => "transient",
                AttemptError::Permanent(_) => "permanent",
                AttemptError::Configuration(_) => "configuration",
            };
            assert_eq!(kind, expected, "{error}");
        }
    }
}
