//! The HTML of a form: the form itself, with the submitter's input and a message next to each
//! invalid field, and the page shown after a submission. One template, escaped as HTML by
//! minijinja, with its CSS inline so that the page needs nothing else to load.

use super::config::{FieldType, Form};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::LazyLock;

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    // The name's .html turns on HTML escaping of every printed value.
    env.add_template("form.html", include_str!("templates/form.html"))
        .unwrap_or_else(|err| panic!("the form template is invalid: {err}"));
    env
});

/// Input and messages the form page shows besides the form's definition.
#[derive(Default)]
pub struct FormState<'a> {
    /// The submitter's input, by field name, shown again after a failed check.
    pub values: Option<&'a HashMap<String, String>>,
    /// A message per invalid field.
    pub errors: Option<&'a HashMap<String, String>>,
    /// A message about the whole submission, such as one sent too quickly.
    pub notice: Option<&'a str>,
}

/// Renders the form, posting to `action`, with `started` in its hidden time field.
pub fn form(form: &Form, action: &str, started: &str, state: &FormState<'_>) -> String {
    let no_values = HashMap::new();
    let values = state.values.unwrap_or(&no_values);
    let errors = state.errors.unwrap_or(&no_values);
    let fields: Vec<Value> = form
        .fields
        .iter()
        .map(|field| {
            let raw = values.get(&field.name).cloned().unwrap_or_default();
            let value = if field.kind == FieldType::Checkbox {
                Value::Bool(!raw.is_empty())
            } else {
                Value::from(raw)
            };
            json!({
                "name": field.name,
                "type": field.kind.as_str(),
                "label": field.label,
                "help": field.help,
                "required": field.required,
                "max_length": field.max_length,
                "choices": field.choices,
                "value": value,
                "error": errors.get(&field.name),
            })
        })
        .collect();
    let context = json!({
        "title": form.title,
        "description": form.description,
        "action": action,
        "started": started,
        "fields": fields,
        "errors": !errors.is_empty(),
        "notice": state.notice,
    });
    render(&context)
}

/// Renders a page with a title and one message, such as the thanks after a submission.
pub fn message(title: &str, message: &str) -> String {
    render(&json!({ "title": title, "message": message }))
}

fn render(context: &Value) -> String {
    TEMPLATES
        .get_template("form.html")
        .and_then(|template| template.render(context))
        .unwrap_or_else(|err| {
            tracing::error!(error = %err, "rendering a form page failed");
            "<!doctype html><title>Error</title><p>This page cannot be shown.</p>".to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::forms::config::FormsConfig;

    fn sample() -> Form {
        let section = json!({ "forms": [{
            "name": "apply", "title": "Apply <now>",
            "fields": [
                { "name": "name", "type": "text", "label": "Name", "required": true },
                { "name": "terms", "type": "checkbox", "label": "Terms" },
                { "name": "role", "type": "choice", "label": "Role", "choices": ["a", "b"] }
            ]
        }]});
        FormsConfig::parse(&section).expect("valid").forms.remove(0)
    }

    #[test]
    fn input_is_kept_and_escaped() {
        let values: HashMap<String, String> = [
            ("name".to_string(), "<script>x</script>".to_string()),
            ("role".to_string(), "b".to_string()),
        ]
        .into();
        let errors: HashMap<String, String> =
            [("name".to_string(), "Please fill in this field.".to_string())].into();
        let state = FormState {
            values: Some(&values),
            errors: Some(&errors),
            notice: None,
        };
        let html = form(&sample(), "/forms/forum/apply", "123.abc", &state);
        assert!(html.contains("Apply &lt;now&gt;"), "the title is escaped");
        assert!(
            html.contains("&lt;script&gt;x&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains(r#"aria-invalid="true""#));
        assert!(html.contains("Please fill in this field."));
        assert!(html.contains("<option selected>b</option>"));
        assert!(html.contains(r#"name="started" value="123.abc""#));
        assert!(
            html.contains(r#"name="website""#),
            "the honeypot field is there"
        );
    }

    #[test]
    fn message_page_has_no_form() {
        let html = message("Apply", "Thanks & see you");
        assert!(html.contains("Thanks &amp; see you"));
        assert!(!html.contains("<form"));
    }
}
