//! Validation of `merge_fields` in member writes against a list's configured fields.
//!
//! Values are type-checked on every write. Required fields are checked on creation (missing or
//! empty) and on updates (sent as an empty value) unless the request sets
//! `skip_merge_validation=true`. Tags the list does not define are dropped without an error.

use crate::config::MergeField;
use crate::problem::{FieldError, Problem};
use serde_json::{Map, Value};

/// Detail of every merge-field failure.
pub(crate) const INVALID_MERGE_FIELDS: &str = "Your merge fields were invalid.";

const WRONG_TYPE: &str = "Data did not match any of the schemas described in anyOf.";
const MISSING_VALUE: &str = "Please enter a value";
const INCOMPLETE_ADDRESS: &str = "Please enter a complete address";

/// Parts an address value must have, all non-empty strings.
const ADDRESS_PARTS: [&str; 4] = ["addr1", "city", "state", "zip"];

/// Whether a write creates the member or updates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    Create,
    Update,
}

/// Validates `input` and returns the values of known fields only.
pub(crate) fn validate(
    fields: &[MergeField],
    input: Option<&Map<String, Value>>,
    kind: WriteKind,
    skip_required: bool,
) -> Result<Map<String, Value>, Problem> {
    let empty = Map::new();
    let input = input.unwrap_or(&empty);
    let mut accepted = Map::new();
    let mut errors = Vec::new();

    for field in fields {
        let Some(value) = input.get(&field.tag) else {
            if kind == WriteKind::Create && field.required && !skip_required {
                errors.push(FieldError::new(&field.tag, MISSING_VALUE));
            }
            continue;
        };
        if let Err(error) = check_type(field, value) {
            errors.push(error);
            continue;
        }
        if field.required && !skip_required && is_empty(value) {
            errors.push(FieldError::new(&field.tag, MISSING_VALUE));
            continue;
        }
        accepted.insert(field.tag.clone(), value.clone());
    }

    if errors.is_empty() {
        Ok(accepted)
    } else {
        Err(Problem::invalid_with_detail(INVALID_MERGE_FIELDS, errors))
    }
}

/// Returns the value of a field before anything is written to it.
pub(crate) fn blank_value() -> Value {
    Value::String(String::new())
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::String(text) => text.trim().is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

fn check_type(field: &MergeField, value: &Value) -> Result<(), FieldError> {
    let wrong_type = || FieldError::new(format!("merge_fields.{}", field.tag), WRONG_TYPE);
    match field.kind.as_str() {
        "number" => match value {
            Value::Number(_) => Ok(()),
            Value::String(text) if text.is_empty() || text.trim().parse::<f64>().is_ok() => Ok(()),
            _ => Err(wrong_type()),
        },
        "address" => match value {
            Value::String(text) if text.is_empty() => Ok(()),
            Value::Object(parts) if is_complete_address(parts) => Ok(()),
            Value::Object(_) => Err(FieldError::new(&field.tag, INCOMPLETE_ADDRESS)),
            _ => Err(wrong_type()),
        },
        "text" | "phone" | "date" | "birthday" | "url" | "imageurl" | "zip" | "dropdown"
        | "radio" => match value {
            Value::String(_) => Ok(()),
            _ => Err(wrong_type()),
        },
        _ => Ok(()),
    }
}

fn is_complete_address(parts: &Map<String, Value>) -> bool {
    ADDRESS_PARTS.iter().all(|part| {
        parts
            .get(*part)
            .and_then(Value::as_str)
            .is_some_and(|text| !text.trim().is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn fields() -> Vec<MergeField> {
        vec![
            MergeField::text("FNAME"),
            MergeField::required("LNAME", "text"),
            MergeField {
                tag: "AGE".to_string(),
                kind: "number".to_string(),
                required: false,
            },
            MergeField {
                tag: "ADDRESS".to_string(),
                kind: "address".to_string(),
                required: false,
            },
        ]
    }

    fn error_fields(result: Result<Map<String, Value>, Problem>) -> Vec<(String, String)> {
        let problem = result.expect_err("validation should fail");
        assert_eq!(problem.detail, INVALID_MERGE_FIELDS);
        problem
            .errors
            .unwrap_or_default()
            .into_iter()
            .map(|error| (error.field, error.message))
            .collect()
    }

    #[test]
    fn create_requires_required_field() {
        let input = object(json!({"FNAME": "Jane"}));
        let result = validate(&fields(), Some(&input), WriteKind::Create, false);
        assert_eq!(
            error_fields(result),
            [("LNAME".to_string(), MISSING_VALUE.to_string())]
        );
    }

    #[test]
    fn update_allows_missing_required_field() {
        let input = object(json!({"FNAME": "Jane"}));
        let accepted = validate(&fields(), Some(&input), WriteKind::Update, false);
        assert_eq!(accepted, Ok(object(json!({"FNAME": "Jane"}))));
    }

    #[test]
    fn update_rejects_empty_required_field() {
        let input = object(json!({"LNAME": " "}));
        let result = validate(&fields(), Some(&input), WriteKind::Update, false);
        assert_eq!(
            error_fields(result),
            [("LNAME".to_string(), MISSING_VALUE.to_string())]
        );
    }

    #[test]
    fn skip_accepts_missing_required_field() {
        let accepted = validate(&fields(), None, WriteKind::Create, true);
        assert_eq!(accepted, Ok(Map::new()));
    }

    #[test]
    fn wrong_types_are_rejected() {
        let input = object(json!({
            "FNAME": null, "LNAME": "Doe", "AGE": "forty", "ADDRESS": {"addr1": "1 Main St"}
        }));
        let result = validate(&fields(), Some(&input), WriteKind::Create, false);
        assert_eq!(
            error_fields(result),
            [
                ("merge_fields.FNAME".to_string(), WRONG_TYPE.to_string()),
                ("merge_fields.AGE".to_string(), WRONG_TYPE.to_string()),
                ("ADDRESS".to_string(), INCOMPLETE_ADDRESS.to_string()),
            ]
        );
    }

    #[test]
    fn unknown_tags_are_dropped() {
        let input = object(json!({"LNAME": "Doe", "EMAIL": "x@y.z", "AGE": 41}));
        let accepted = validate(&fields(), Some(&input), WriteKind::Create, false);
        assert_eq!(accepted, Ok(object(json!({"LNAME": "Doe", "AGE": 41}))));
    }
}
