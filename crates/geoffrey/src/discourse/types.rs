//! The values the Discourse client sends and returns, and the parsing of Discourse's JSON.

use super::{DiscourseError, invalid_response};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// A response in which Discourse refused a request: its status, the `error_type` it names
/// (such as `invalid_parameters` or `invalid_access`) and its messages. For a response that
/// is not JSON, `errors` contains the start of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub error_type: Option<String>,
    pub errors: Vec<String>,
}

impl Rejection {
    /// Reads Discourse's error shape, `{"errors": [...], "error_type": ...}`, from `body`,
    /// using `fallback` as the message when the body has no `errors` array.
    pub(super) fn from_body(status: u16, body: &Value, fallback: &str) -> Self {
        let errors: Vec<String> = body
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| errors.iter().map(message_of).collect())
            .unwrap_or_default();
        let errors = if errors.is_empty() && !fallback.is_empty() {
            vec![fallback.to_string()]
        } else {
            errors
        };
        Self {
            status,
            error_type: body
                .get("error_type")
                .and_then(Value::as_str)
                .map(str::to_string),
            errors,
        }
    }
}

/// Returns an error entry as text: Discourse sends strings, but a JSON value of another kind
/// is kept as JSON rather than dropped.
fn message_of(value: &Value) -> String {
    match value {
        Value::String(message) => message.clone(),
        other => other.to_string(),
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(error_type) = &self.error_type {
            write!(f, " ({error_type})")?;
        }
        if !self.errors.is_empty() {
            write!(f, ": {}", self.errors.join("; "))?;
        }
        Ok(())
    }
}

/// A post that Discourse created: the first post of a new topic or private message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CreatedPost {
    /// The post's `id`.
    #[serde(rename = "id")]
    pub post_id: u64,
    pub topic_id: u64,
    /// Position of the post in its topic, 1 for the first post.
    pub post_number: u64,
    /// The topic's URL slug; the topic's path is `/t/{topic_slug}/{topic_id}`.
    #[serde(default)]
    pub topic_slug: String,
}

/// The result of a request that creates a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewPost {
    Created(CreatedPost),
    /// Discourse put the post in its review queue (`"action": "enqueued"`), for example
    /// because the category requires approval. It appears only after a moderator approves it.
    Enqueued {
        pending_count: Option<u64>,
    },
}

/// Reads the response of `POST /posts.json`.
pub(super) fn parse_new_post(body: &Value) -> Result<NewPost, DiscourseError> {
    if body.get("action").and_then(Value::as_str) == Some("enqueued") {
        let pending_count = body.get("pending_count").and_then(Value::as_u64);
        return Ok(NewPost::Enqueued { pending_count });
    }
    serde_json::from_value(body.clone())
        .map(NewPost::Created)
        .map_err(|err| invalid_response(&format!("the created post is invalid: {err}")))
}

/// Options of an invite, besides the address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InviteOptions {
    /// Groups the user joins when accepting the invite.
    pub group_names: Vec<String>,
    /// Topic the invite leads to.
    pub topic_id: Option<u64>,
    /// Text added to the invitation email.
    pub custom_message: Option<String>,
    /// Creates the invite without sending the email; its `link` can be sent another way.
    pub skip_email: bool,
}

/// An invite that Discourse created or renewed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Invite {
    pub id: u64,
    /// URL that redeems the invite.
    pub link: String,
    #[serde(default)]
    pub email: Option<String>,
    /// Whether Discourse has sent the invitation email.
    #[serde(default)]
    pub emailed: bool,
}

/// A category, with the fields a form needs to pick one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Category {
    pub id: u64,
    pub name: String,
    pub slug: String,
    #[serde(default)]
    pub parent_category_id: Option<u64>,
    /// Whether only some groups can see the category.
    #[serde(default)]
    pub read_restricted: bool,
}

/// Appends a category of `/categories.json` and the subcategories listed inside it to
/// `categories`, skipping any already present.
pub(super) fn flatten_category(
    value: &Value,
    categories: &mut Vec<Category>,
) -> Result<(), DiscourseError> {
    let category: Category = serde_json::from_value(value.clone())
        .map_err(|err| invalid_response(&format!("a category in the list is invalid: {err}")))?;
    if !categories.iter().any(|known| known.id == category.id) {
        categories.push(category);
    }
    let subcategories = value.get("subcategory_list").and_then(Value::as_array);
    for subcategory in subcategories.into_iter().flatten() {
        flatten_category(subcategory, categories)?;
    }
    Ok(())
}

/// A group, with the fields a form needs to pick message recipients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Group {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub full_name: Option<String>,
    /// Whether Discourse manages the membership itself, as for `staff` or `trust_level_1`.
    #[serde(default)]
    pub automatic: bool,
    #[serde(default)]
    pub user_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejection_reads_errors_and_type() {
        let body = json!({ "errors": ["a", 5], "error_type": "invalid_parameters" });
        let rejection = Rejection::from_body(400, &body, "ignored");
        assert_eq!(rejection.errors, ["a", "5"]);
        assert_eq!(rejection.to_string(), "HTTP 400 (invalid_parameters): a; 5");
    }

    #[test]
    fn rejection_falls_back_to_the_body() {
        let rejection = Rejection::from_body(502, &Value::Null, "<html>Bad gateway</html>");
        assert_eq!(rejection.errors, ["<html>Bad gateway</html>"]);
        let rejection = Rejection::from_body(422, &json!({ "failed": "FAILED" }), "");
        assert!(rejection.errors.is_empty());
        assert_eq!(rejection.to_string(), "HTTP 422");
    }

    #[test]
    fn created_post_is_parsed() {
        let body =
            json!({ "id": 10, "topic_id": 3, "post_number": 1, "topic_slug": "hello", "raw": "x" });
        let expected = CreatedPost {
            post_id: 10,
            topic_id: 3,
            post_number: 1,
            topic_slug: "hello".into(),
        };
        assert_eq!(
            parse_new_post(&body).expect("created post"),
            NewPost::Created(expected)
        );
    }

    #[test]
    fn enqueued_post_is_parsed() {
        let body = json!({ "action": "enqueued", "success": true, "pending_count": 2 });
        assert_eq!(
            parse_new_post(&body).expect("enqueued post"),
            NewPost::Enqueued {
                pending_count: Some(2)
            }
        );
    }

    #[test]
    fn post_without_ids_is_invalid() {
        let error = parse_new_post(&json!({ "success": true })).expect_err("no ids");
        assert!(matches!(error, DiscourseError::Rejected(_)), "{error}");
    }

    #[test]
    fn subcategories_are_flattened_once() {
        let listed = json!({
            "id": 1, "name": "Support", "slug": "support",
            "subcategory_list": [
                { "id": 2, "name": "Bugs", "slug": "bugs", "parent_category_id": 1, "read_restricted": true }
            ]
        });
        let mut categories = Vec::new();
        flatten_category(&listed, &mut categories).expect("category");
        flatten_category(&listed["subcategory_list"][0], &mut categories).expect("subcategory");
        let ids: Vec<u64> = categories.iter().map(|c| c.id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(categories[1].parent_category_id, Some(1));
        assert!(categories[1].read_restricted);
    }
}
