//! Requests to Mailchimp, under the account's concurrency limit, and their classification.
//!
//! Mailchimp reports errors as RFC 7807 problem documents. The class of a failure follows from
//! the status and the `title`, never from the `type` URL, which has changed over the years.
//! - Transient, so retried with backoff: 429, 5xx, timeouts, connection errors, a 403 or 429
//!   without a problem body (what Mailchimp's limiter sends under load), and the address
//!   throttle "signed up to a lot of lists very recently".
//! - Permanent for one member, recorded and not retried: Member In Compliance State,
//!   Forgotten Email Not Subscribed, Invalid Resource (fake-looking addresses, merge fields,
//!   refused email changes), Member Exists.
//! - Configuration, recorded with the job kept replayable: 401 (key invalid or missing), 403
//!   with a body, 404 for the audience.

use super::config::MailchimpConfig;
use crate::apps::http::{MAX_LOGGED_BODY, attempt_from_error, truncate};
use crate::apps::{Attempt, AttemptError, Check, FeatureContext};
use crate::outbound::OutboundClient;
use md5::{Digest, Md5};
use reqwest::Method;
use serde_json::Value;

/// Returns Mailchimp's member id for an address: MD5 of the trimmed, lower-cased address.
pub fn subscriber_hash(email: &str) -> String {
    hex::encode(Md5::digest(email.trim().to_lowercase().as_bytes()))
}

/// A Mailchimp response, or the failure that stands for it.
pub struct Reply {
    pub status: Option<u16>,
    pub text: String,
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Transient(String),
    Member(String),
    Configuration(String),
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// Turns the reply into the attempt record of a feature.
    pub fn into_attempt(self) -> Attempt {
        let error = self.failure.map(|failure| match failure {
            Failure::Transient(message) => AttemptError::Transient(message),
            Failure::Member(message) => AttemptError::Permanent(message),
            Failure::Configuration(message) => {
                AttemptError::Configuration(format!("Mailchimp configuration: {message}"))
            }
        });
        Attempt {
            status: self.status,
            response: Some(truncate(&self.text, MAX_LOGGED_BODY)),
            error,
            continue_later: false,
            retry_after: None,
        }
    }
}

/// Describes a problem document as "title: detail", with the field errors.
fn describe(body: &Value, status: u16) -> String {
    let title = body
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("HTTP error");
    let detail = body
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut message = format!("{status} {title}: {detail}");
    if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        for error in errors {
            let field = error
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let text = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            message.push_str(&format!(" [{field}: {text}]"));
        }
    }
    message
}

/// Classifies a Mailchimp response.
pub fn classify(status: u16, body: &Value) -> Option<Failure> {
    let has_problem = body.get("title").is_some();
    let detail = body
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let message = describe(body, status);
    match status {
        200..=299 => None,
        429 | 500..=599 if !(status == 503 && detail.contains("method has been disabled")) => {
            Some(Failure::Transient(message))
        }
        403 | 429 if !has_problem => Some(Failure::Transient(format!(
            "{status} without a body (rate limited)"
        ))),
        400 if detail.contains("signed up to a lot of lists") => Some(Failure::Transient(message)),
        401 | 403 | 503 => Some(Failure::Configuration(message)),
        _ => Some(Failure::Member(message)),
    }
}

/// Sends one request under the API key's concurrency limit.
pub async fn send(
    context: &FeatureContext<'_>,
    config: &MailchimpConfig,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let limit_key = format!("mailchimp:{}", config.api_key.expose());
    let _permit = match context
        .limiter
        .acquire(&limit_key, config.max_connections)
        .await
    {
        Ok(permit) => permit,
        Err(err) => {
            let failure = Some(Failure::Transient(err.to_string()));
            return Reply {
                status: None,
                text: String::new(),
                failure,
            };
        }
    };
    let url = format!("{}{path}", config.api_root());
    let mut request = context
        .http
        .request(method, url)
        .basic_auth("geoffrey", Some(config.api_key.expose()));
    if let Some(body) = body {
        request = request.json(body);
    }
    match context.http.send(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let failure = classify(status, &body);
            Reply {
                status: Some(status),
                text,
                failure,
            }
        }
        Err(err) => {
            let failure = match attempt_from_error(&err).error {
                Some(AttemptError::Configuration(message)) => Failure::Configuration(message),
                Some(error) => Failure::Transient(error.message().to_string()),
                None => Failure::Transient("request failed".to_string()),
            };
            Reply {
                status: None,
                text: String::new(),
                failure: Some(failure),
            }
        }
    }
}

/// Tests the key (`/ping`), the audience, and whether every merge field the audience requires
/// is mapped.
pub async fn check(config: &MailchimpConfig, http: &OutboundClient) -> Vec<Check> {
    let mut checks = Vec::new();
    let ping = fetch(config, http, "/ping")
        .await
        .map(|_| format!("{} accepts the API key", config.api_root()))
        .map_err(|err| format!("{}: {err}", config.api_root()));
    let ping_ok = ping.is_ok();
    checks.push(finding("api_key", ping));
    if !ping_ok {
        return checks;
    }

    let audience = fetch(config, http, &format!("/lists/{}", config.list_id)).await;
    let audience = audience.map_err(|err| format!("audience {:?}: {err}", config.list_id));
    let audience = audience.map(|list| {
        let name = list.get("name").and_then(Value::as_str).unwrap_or_default();
        format!("audience {:?} ({name}) exists", config.list_id)
    });
    let audience_ok = audience.is_ok();
    checks.push(finding("audience", audience));
    if !audience_ok {
        return checks;
    }

    let path = format!("/lists/{}/merge-fields?count=1000", config.list_id);
    let fields = fetch(config, http, &path).await.and_then(|body| {
        let unmapped: Vec<String> = body
            .get("merge_fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|field| field.get("required").and_then(Value::as_bool) == Some(true))
            .filter_map(|field| field.get("tag").and_then(Value::as_str).map(str::to_string))
            .filter(|tag| !config.merge_fields.contains_key(tag))
            .collect();
        if unmapped.is_empty() {
            Ok("every required merge field is mapped".to_string())
        } else {
            Err(format!(
                "required merge fields not mapped: {}; map them in merge_fields or make them \
                 optional in Mailchimp",
                unmapped.join(", ")
            ))
        }
    });
    checks.push(finding("merge_fields", fields));
    checks
}

fn finding(name: &str, outcome: Result<String, String>) -> Check {
    match outcome {
        Ok(message) => Check {
            name: name.into(),
            ok: true,
            message,
        },
        Err(message) => Check {
            name: name.into(),
            ok: false,
            message,
        },
    }
}

/// Sends a GET outside the concurrency limit (checks are rare and run one at a time) and
/// returns the body or the failure's description.
async fn fetch(
    config: &MailchimpConfig,
    http: &OutboundClient,
    path: &str,
) -> Result<Value, String> {
    let url = format!("{}{path}", config.api_root());
    let request = http
        .get(url)
        .basic_auth("geoffrey", Some(config.api_key.expose()));
    let response = http.send(request).await.map_err(|err| {
        let error = attempt_from_error(&err).error;
        error.map_or_else(|| "request failed".to_string(), |e| e.message().to_string())
    })?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match classify(status, &body) {
        None => Ok(body),
        Some(
            Failure::Transient(message)
            | Failure::Member(message)
            | Failure::Configuration(message),
        ) => Err(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_trims_and_lowercases() {
        // Vectors from Mailchimp's member guide and computed with md5sum.
        assert_eq!(
            subscriber_hash("urist.mcvankab@freddiesjokes.com"),
            "62eeb292278cc15f5817cb78f7790b08"
        );
        assert_eq!(
            subscriber_hash("  Urist.McVankab@freddiesjokes.com "),
            "62eeb292278cc15f5817cb78f7790b08"
        );
        assert_eq!(
            subscriber_hash("urist.mcvankab+3@freddiesjokes.com"),
            "852aaa9532cb36adfb5e9fef7a4206a9"
        );
    }

    #[test]
    fn failures_are_classified() {
        let problem = |status: u16, title: &str, detail: &str| json!({ "status": status, "title": title, "detail": detail });
        let transient = [
            (
                429,
                problem(
                    429,
                    "Too Many Requests",
                    "You have exceeded the limit of 10 simultaneous connections.",
                ),
            ),
            (500, problem(500, "Internal Server Error", "")),
            (502, Value::Null),
            (403, Value::Null),
            (
                400,
                problem(
                    400,
                    "Invalid Resource",
                    "a@b.com has signed up to a lot of lists very recently",
                ),
            ),
        ];
        for (status, body) in transient {
            assert!(
                matches!(classify(status, &body), Some(Failure::Transient(_))),
                "{status} {body}"
            );
        }
        let member = [
            (
                400,
                problem(
                    400,
                    "Member In Compliance State",
                    "x is in a compliance state",
                ),
            ),
            (
                400,
                problem(
                    400,
                    "Forgotten Email Not Subscribed",
                    "x was permanently deleted",
                ),
            ),
            (
                400,
                problem(400, "Invalid Resource", "x looks fake or invalid"),
            ),
        ];
        for (status, body) in member {
            assert!(
                matches!(classify(status, &body), Some(Failure::Member(_))),
                "{status} {body}"
            );
        }
        let configuration = [
            (
                401,
                problem(401, "API Key Invalid", "Your API key may be invalid"),
            ),
            (
                403,
                problem(403, "User Disabled", "This account has been disabled."),
            ),
            (
                503,
                problem(503, "Compliance Related", "This method has been disabled."),
            ),
        ];
        for (status, body) in configuration {
            assert!(
                matches!(classify(status, &body), Some(Failure::Configuration(_))),
                "{status} {body}"
            );
        }
        assert_eq!(classify(204, &Value::Null), None);
    }
}
