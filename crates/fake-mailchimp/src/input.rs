//! Parsing of request bodies: JSON syntax and the schema of a member write.

use crate::member::Status;
use crate::problem::{FieldError, Problem};
use serde_json::{Map, Value};

/// Fields a member write may carry that the fake stores and echoes without rules.
const ECHOED_FIELDS: [&str; 9] = [
    "email_type",
    "language",
    "vip",
    "interests",
    "marketing_permissions",
    "ip_signup",
    "timestamp_signup",
    "ip_opt",
    "location",
];

/// Parses a JSON request body. An empty or malformed body gives 400 JSON Parse Error.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(body).map_err(|_| Problem::json_parse_error())
}

/// The body of a member write (POST, PUT, PATCH, or one batch-subscribe item), after schema
/// checks. `None` means the field was not sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberInput {
    pub email_address: Option<String>,
    pub status: Option<Status>,
    pub status_if_new: Option<Status>,
    pub merge_fields: Option<Map<String, Value>>,
    /// Tag names applied when the member is created.
    pub tags: Option<Vec<String>>,
    pub echoed: Map<String, Value>,
}

impl MemberInput {
    /// Checks the schema of `body`. Field names in errors get `prefix` in front, such as
    /// `members.item:3.` for batch items.
    pub(crate) fn parse(body: &Value, prefix: &str) -> Result<Self, Problem> {
        let Some(fields) = body.as_object() else {
            let message = format!("Schema describes object, {} found instead", kind(body));
            return Err(Problem::invalid(vec![FieldError::new(
                prefix.trim_end_matches('.'),
                message,
            )]));
        };

        let mut errors = Vec::new();
        let mut input = MemberInput {
            email_address: optional_string(fields, "email_address", prefix, &mut errors),
            status: optional_status(fields, "status", prefix, &mut errors),
            status_if_new: optional_status(fields, "status_if_new", prefix, &mut errors),
            ..MemberInput::default()
        };

        match fields.get("merge_fields") {
            None => {}
            Some(Value::Object(map)) => input.merge_fields = Some(map.clone()),
            Some(other) => errors.push(FieldError::new(
                format!("{prefix}merge_fields"),
                format!("Schema describes object, {} found instead", kind(other)),
            )),
        }
        match fields.get("tags").map(tag_names) {
            None => {}
            Some(Some(names)) => input.tags = Some(names),
            Some(None) => errors.push(FieldError::new(
                format!("{prefix}tags"),
                "Schema describes array of strings, something else found instead",
            )),
        }
        check_echoed(fields, prefix, &mut errors);
        for name in ECHOED_FIELDS {
            if let Some(value) = fields.get(name) {
                input.echoed.insert(name.to_string(), value.clone());
            }
        }

        if errors.is_empty() {
            Ok(input)
        } else {
            Err(Problem::invalid(errors))
        }
    }
}

/// Returns the JSON type name of a value, as the API's schema errors name it.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn optional_string(
    fields: &Map<String, Value>,
    name: &str,
    prefix: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match fields.get(name)? {
        Value::String(text) if text.trim().is_empty() => {
            errors.push(FieldError::new(
                format!("{prefix}{name}"),
                "This value should not be blank.",
            ));
            None
        }
        Value::String(text) => Some(text.trim().to_string()),
        other => {
            errors.push(FieldError::new(
                format!("{prefix}{name}"),
                format!("Schema describes string, {} found instead", kind(other)),
            ));
            None
        }
    }
}

/// Parses `status` or `status_if_new`. `archived`, an empty string, an unknown value and a
/// non-string are all rejected with the accepted values listed.
fn optional_status(
    fields: &Map<String, Value>,
    name: &str,
    prefix: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Status> {
    let value = fields.get(name)?;
    let status = value.as_str().and_then(Status::parse_writable);
    if status.is_none() {
        errors.push(FieldError::new(
            format!("{prefix}{name}"),
            format!(
                "Data presented is not one of the accepted values: {}.",
                Status::WRITABLE
            ),
        ));
    }
    status
}

fn tag_names(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|item| item.as_str().map(str::to_string))
        .collect()
}

fn check_echoed(fields: &Map<String, Value>, prefix: &str, errors: &mut Vec<FieldError>) {
    if let Some(value) = fields.get("email_type")
        && !matches!(value.as_str(), Some("html" | "text"))
    {
        errors.push(FieldError::new(
            format!("{prefix}email_type"),
            "Data presented is not one of the accepted values: html, text.",
        ));
    }
    if let Some(value) = fields.get("vip")
        && !value.is_boolean()
    {
        errors.push(FieldError::new(
            format!("{prefix}vip"),
            format!("Schema describes boolean, {} found instead", kind(value)),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error_fields(body: Value) -> Vec<String> {
        let problem = MemberInput::parse(&body, "").expect_err("schema check should fail");
        assert_eq!(problem.title, "Invalid Resource");
        problem
            .errors
            .unwrap_or_default()
            .into_iter()
            .map(|error| error.field)
            .collect()
    }

    #[test]
    fn parses_full_write() {
        let body = json!({
            "email_address": " Jane@Forum.dev ", "status": "pending", "status_if_new": "subscribed",
            "merge_fields": {"FNAME": "Jane"}, "tags": ["a", "b"], "vip": true
        });
        let input = MemberInput::parse(&body, "").expect("valid body");
        assert_eq!(input.email_address.as_deref(), Some("Jane@Forum.dev"));
        assert_eq!(input.status, Some(Status::Pending));
        assert_eq!(input.status_if_new, Some(Status::Subscribed));
        assert_eq!(input.tags, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(input.echoed.get("vip"), Some(&json!(true)));
    }

    #[test]
    fn rejects_bad_status_values() {
        for status in [
            json!("archived"),
            json!(""),
            json!("Subscribed"),
            json!(null),
        ] {
            let fields = error_fields(json!({"email_address": "a@b.co", "status": status}));
            assert_eq!(fields, ["status"], "status {status}");
        }
    }

    #[test]
    fn rejects_wrong_shapes() {
        assert_eq!(error_fields(json!([])), [""]);
        assert_eq!(
            error_fields(json!({"email_address": ""})),
            ["email_address"]
        );
        assert_eq!(error_fields(json!({"merge_fields": []})), ["merge_fields"]);
        assert_eq!(error_fields(json!({"tags": [{"name": "x"}]})), ["tags"]);
        assert_eq!(error_fields(json!({"email_type": "pdf"})), ["email_type"]);
    }

    #[test]
    fn prefixes_batch_fields() {
        let problem = MemberInput::parse(&json!({"status": 1}), "members.item:2.")
            .expect_err("schema check should fail");
        let field = problem.first_error().map(|error| error.field.clone());
        assert_eq!(field.as_deref(), Some("members.item:2.status"));
    }
}
