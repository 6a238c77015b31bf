//! Templates of the posts and messages a form creates, over the submitted fields.
//!
//! Templates use Jinja syntax (minijinja), like the relay's. Every value a template prints
//! goes through a formatter that escapes it for where it goes. In a post's body, a
//! submission's text reaches the forum as plain text: it cannot add mentions, links, images or
//! markup that the template did not write (see [`crate::discourse::markdown`]). Invitation
//! messages are escaped the same way. Titles are plain text in Discourse, so values there
//! are only folded onto one line and cleared of control characters.

use minijinja::value::Value as TemplateValue;
use minijinja::{Environment, Error, Output, State, UndefinedBehavior};
use serde_json::Value;

/// Where a rendered template goes, which decides how printed values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A post's markdown body.
    Markdown,
    /// A topic title or another plain-text line.
    Plain,
}

/// Returns the environment: undefined fields print nothing, and printed values are escaped
/// for `target`.
fn environment(target: Target) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(crate::apps::relay::TEMPLATE_FUEL));
    match target {
        Target::Markdown => env.set_formatter(|out, state, value| {
            write_escaped(
                out,
                state,
                value,
                crate::discourse::markdown::escape_markdown,
            )
        }),
        Target::Plain => {
            env.set_formatter(|out, state, value| write_escaped(out, state, value, plain_line))
        }
    }
    env
}

fn write_escaped(
    out: &mut Output<'_>,
    _state: &State<'_, '_>,
    value: &TemplateValue,
    escape: fn(&str) -> String,
) -> Result<(), Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(());
    }
    let text = match value.as_str() {
        Some(text) => text.to_string(),
        None => value.to_string(),
    };
    out.write_str(&escape(&text)).map_err(Error::from)
}

/// Folds whitespace, line breaks included, into single spaces and drops control characters.
pub fn plain_line(text: &str) -> String {
    let visible: String = text
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .collect();
    visible.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks a template's syntax.
pub fn check(source: &str) -> Result<(), Error> {
    environment(Target::Markdown)
        .render_str(source, Value::Null)
        .map(|_| ())
}

/// Renders a template over a submission's fields, escaping values for `target`.
pub fn render(source: &str, context: &Value, target: Target) -> Result<String, Error> {
    environment(target).render_str(source, context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_values_cannot_mention_or_link() {
        let context = json!({ "name": "@admin [x](https://evil.example)" });
        let body = render("From {{ name }}", &context, Target::Markdown).expect("renders");
        assert!(
            body.starts_with("From "),
            "the template's own text is kept: {body}"
        );
        assert!(!body.contains("@admin"), "{body}");
        assert!(!body.contains("[x](https"), "{body}");
    }

    #[test]
    fn titles_stay_on_one_plain_line() {
        let context = json!({ "name": "Ada\n\tQuill\u{7}" });
        let title =
            render("Application from {{ name }}", &context, Target::Plain).expect("renders");
        assert_eq!(title, "Application from Ada Quill");
    }

    #[test]
    fn missing_fields_print_nothing() {
        let text = render(
            "[{{ nothing }}{{ nothing.deeper }}]",
            &json!({}),
            Target::Plain,
        );
        assert_eq!(text.expect("renders"), "[]");
    }
}
