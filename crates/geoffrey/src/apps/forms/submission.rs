//! Checking a submission against its form: each field's type, requirement and limits, with
//! one message per invalid field, phrased for the person filling the form.

use super::config::{Field, FieldType, Form};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Longest accepted email address, from RFC 5321's limit on a path.
const MAX_EMAIL_LEN: usize = 254;

/// Maximum length of a field without `max_length`, in characters.
const DEFAULT_MAX_LEN: usize = 10_000;

/// A submission's values before checking: text from an HTML form, or JSON values.
pub enum Input<'a> {
    Page(&'a HashMap<String, String>),
    Json(&'a Map<String, Value>),
}

impl Input<'_> {
    fn get(&self, name: &str) -> Option<Value> {
        match self {
            Input::Page(values) => values.get(name).map(|text| Value::from(text.as_str())),
            Input::Json(values) => values.get(name).cloned(),
        }
    }
}

/// Returns the submission's checked values by field name, or a message for each invalid
/// field. Values of unknown names are ignored.
pub fn check(
    form: &Form,
    input: &Input<'_>,
) -> Result<Map<String, Value>, HashMap<String, String>> {
    let mut values = Map::new();
    let mut errors = HashMap::new();
    for field in &form.fields {
        match check_field(field, input.get(&field.name)) {
            Ok(Some(value)) => {
                values.insert(field.name.clone(), value);
            }
            Ok(None) => {}
            Err(message) => {
                errors.insert(field.name.clone(), message);
            }
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

fn check_field(field: &Field, raw: Option<Value>) -> Result<Option<Value>, String> {
    if field.kind == FieldType::Checkbox {
        let checked = match raw {
            None | Some(Value::Null) => false,
            Some(Value::Bool(checked)) => checked,
            Some(Value::String(text)) => !text.is_empty() && text != "false" && text != "0",
            Some(_) => return Err("must be true or false".to_string()),
        };
        if field.required && !checked {
            return Err("Please tick this box to continue.".to_string());
        }
        return Ok(Some(Value::Bool(checked)));
    }
    let text = match raw {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.trim().to_string(),
        Some(Value::Number(number)) if field.kind == FieldType::Number => number.to_string(),
        Some(_) => return Err("must be text".to_string()),
    };
    if text.is_empty() {
        return if field.required {
            Err("Please fill in this field.".to_string())
        } else {
            Ok(None)
        };
    }
    match field.kind {
        FieldType::Number => check_number(field, &text).map(Some),
        FieldType::Date => time::Date::parse(
            &text,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .map(|_| Some(Value::from(text)))
        .map_err(|_| "Please enter a date as YYYY-MM-DD.".to_string()),
        FieldType::Choice => {
            if field.choices.contains(&text) {
                Ok(Some(Value::from(text)))
            } else {
                Err("Please choose one of the options.".to_string())
            }
        }
        FieldType::Email => {
            check_email(&text)?;
            check_text(field, &text)?;
            Ok(Some(Value::from(text)))
        }
        FieldType::Text | FieldType::LongText => {
            let text = if field.kind == FieldType::Text {
                // One line: line breaks in a short field are only in the way.
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            } else {
                text.replace("\r\n", "\n")
            };
            check_text(field, &text)?;
            Ok(Some(Value::from(text)))
        }
        FieldType::Checkbox => unreachable!("checkboxes return above"),
    }
}

fn check_text(field: &Field, text: &str) -> Result<(), String> {
    let length = text.chars().count();
    if let Some(min) = field.min_length.filter(|min| length < *min) {
        return Err(format!("Please enter at least {min} characters."));
    }
    let max = field.max_length.unwrap_or(DEFAULT_MAX_LEN);
    if length > max {
        return Err(format!(
            "Please enter at most {max} characters; this has {length}."
        ));
    }
    if let Some(pattern) = &field.pattern {
        let anchored = format!("^(?:{pattern})$");
        let matches = regex_lite::Regex::new(&anchored).is_ok_and(|regex| regex.is_match(text));
        if !matches {
            let message = field.pattern_message.clone();
            return Err(message.unwrap_or_else(|| "Please use the format asked for.".to_string()));
        }
    }
    Ok(())
}

/// Accepts `local@domain.tld` without spaces or control characters. Delivery is what proves an
/// address; this only catches typing mistakes.
fn check_email(text: &str) -> Result<(), String> {
    let invalid = || Err("Please enter an email address, such as name@example.com.".to_string());
    if text.len() > MAX_EMAIL_LEN || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid();
    }
    let Some((local, domain)) = text.rsplit_once('@') else {
        return invalid();
    };
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    if local.is_empty() || local.contains('@') || !domain_ok {
        return invalid();
    }
    Ok(())
}

fn check_number(field: &Field, text: &str) -> Result<Value, String> {
    let Ok(number) = text.parse::<f64>() else {
        return Err("Please enter a number.".to_string());
    };
    if !number.is_finite() {
        return Err("Please enter a number.".to_string());
    }
    if let Some(min) = field.min.filter(|min| number < *min) {
        return Err(format!("Please enter {min} or more."));
    }
    if let Some(max) = field.max.filter(|max| number > *max) {
        return Err(format!("Please enter {max} or less."));
    }
    Ok(serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::forms::config::FormsConfig;
    use serde_json::json;

    fn form() -> Form {
        let section = json!({ "forms": [{
            "name": "apply", "title": "Apply",
            "fields": [
                { "name": "name", "type": "text", "label": "Name", "required": true, "max_length": 20 },
                { "name": "email", "type": "email", "label": "Email", "required": true },
                { "name": "about", "type": "long_text", "label": "About", "min_length": 5 },
                { "name": "role", "type": "choice", "label": "Role", "choices": ["member", "mentor"] },
                { "name": "age", "type": "number", "label": "Age", "min": 13, "max": 120 },
                { "name": "start", "type": "date", "label": "Start" },
                { "name": "terms", "type": "checkbox", "label": "Terms", "required": true },
                { "name": "code", "type": "text", "label": "Code", "pattern": "[A-Z]{3}",
                  "pattern_message": "Three capital letters." }
            ]
        }]});
        FormsConfig::parse(&section).expect("valid").forms.remove(0)
    }

    fn page(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn valid_page_submission_is_normalized() {
        let input = page(&[
            ("name", "  Ada \n Quill "),
            ("email", "ada@example.com"),
            ("about", "Hello there"),
            ("role", "mentor"),
            ("age", "36"),
            ("start", "2026-12-24"),
            ("terms", "on"),
            ("code", "ABC"),
            ("unknown", "ignored"),
        ]);
        let values = check(&form(), &Input::Page(&input)).expect("valid");
        assert_eq!(values["name"], "Ada Quill");
        assert_eq!(values["age"], 36.0);
        assert_eq!(values["terms"], true);
        assert!(!values.contains_key("unknown"));
    }

    #[test]
    fn each_invalid_field_gets_its_message() {
        let input = page(&[
            ("name", &"x".repeat(21)),
            ("email", "ada@example"),
            ("about", "hi"),
            ("role", "admin"),
            ("age", "9"),
            ("start", "24/12/2026"),
            ("code", "abc"),
        ]);
        let errors = check(&form(), &Input::Page(&input)).expect_err("invalid");
        let mut names: Vec<&str> = errors.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "about", "age", "code", "email", "name", "role", "start", "terms"
            ]
        );
        assert_eq!(errors["code"], "Three capital letters.");
        assert!(errors["name"].contains("at most 20"), "{}", errors["name"]);
    }

    #[test]
    fn missing_required_fields_are_named() {
        let errors = check(&form(), &Input::Page(&page(&[]))).expect_err("missing");
        assert_eq!(errors["name"], "Please fill in this field.");
        assert_eq!(errors["terms"], "Please tick this box to continue.");
        assert!(
            !errors.contains_key("about"),
            "optional fields may stay empty"
        );
    }

    #[test]
    fn json_values_are_checked_by_type() {
        let input = json!({
            "name": "Ada", "email": "ada@example.com", "terms": true, "age": 40,
        });
        let values = check(&form(), &Input::Json(input.as_object().expect("object")));
        assert_eq!(values.expect("valid")["age"], 40.0);
        let input = json!({ "name": ["Ada"], "email": "ada@example.com", "terms": "yes" });
        let errors = check(&form(), &Input::Json(input.as_object().expect("object")));
        assert_eq!(errors.expect_err("array name")["name"], "must be text");
    }

    #[test]
    fn email_checks_catch_typing_mistakes() {
        for good in ["a@b.co", "ada.quill+forum@example.com"] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@.example.com",
            "ada@example..com",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
