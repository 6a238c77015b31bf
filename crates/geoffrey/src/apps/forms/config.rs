//! The `forms` section of `CONFIG`: the forms an instance hosts, their fields and their
//! actions, and the checks that run before a configuration is saved.

use super::template;
use crate::apps::FieldError;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Maximum length of a form or field name, in characters.
const MAX_NAME_LEN: usize = 40;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FormsConfig {
    pub forms: Vec<Form>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Form {
    /// Part of the form's URL: `/forms/<instance>/<name>`.
    pub name: String,
    pub title: String,
    /// Text shown above the fields.
    #[serde(default)]
    pub description: String,
    pub fields: Vec<Field>,
    /// Text shown after a successful submission.
    #[serde(default = "default_success")]
    pub success_message: String,
    /// Page to send the submitter to after a successful submission, instead of the message.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Seconds a person needs at least to fill the form; faster submissions are rejected as
    /// automated.
    #[serde(default = "default_min_fill_seconds")]
    pub min_fill_seconds: u64,
    /// Submissions accepted from one address per hour.
    #[serde(default = "default_per_address")]
    pub submissions_per_hour_per_address: u32,
    /// Submissions accepted per minute for the whole form.
    #[serde(default = "default_per_form")]
    pub submissions_per_minute: u32,
    /// Enables JSON submissions from other services, which send it as a bearer token.
    #[serde(default)]
    pub json_secret: Option<Secret>,
    /// Names of JSON submission fields, mapped to the form's field names; fields not listed
    /// keep their names.
    #[serde(default)]
    pub json_fields: Map<String, Value>,
    #[serde(default)]
    pub actions: Actions,
}

fn default_success() -> String {
    "Thank you, your submission was received.".to_string()
}

fn default_min_fill_seconds() -> u64 {
    3
}

fn default_per_address() -> u32 {
    5
}

fn default_per_form() -> u32 {
    30
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Email,
    LongText,
    Choice,
    Checkbox,
    Number,
    Date,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Email => "email",
            FieldType::LongText => "long_text",
            FieldType::Choice => "choice",
            FieldType::Checkbox => "checkbox",
            FieldType::Number => "number",
            FieldType::Date => "date",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    pub label: String,
    #[serde(default)]
    pub help: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub min_length: Option<usize>,
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Regular expression the whole value must match (text, email and long text).
    #[serde(default)]
    pub pattern: Option<String>,
    /// Message shown when the pattern does not match.
    #[serde(default)]
    pub pattern_message: Option<String>,
    /// Options of a choice field.
    #[serde(default)]
    pub choices: Vec<String>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

/// Actions of a submission, in any combination.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Actions {
    #[serde(default)]
    pub topic: Option<TopicAction>,
    #[serde(default)]
    pub private_message: Option<MessageAction>,
    #[serde(default)]
    pub invite: Option<InviteAction>,
    #[serde(default)]
    pub mailchimp: Option<MailchimpAction>,
}

/// Creates a topic in a category.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicAction {
    pub category_id: u64,
    /// Templates over the submitted fields, such as `Application from {{ name }}`.
    pub title: String,
    pub body: String,
}

/// Sends a private message to users and groups.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessageAction {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub title: String,
    pub body: String,
}

/// Invites the submitter to the forum by email.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InviteAction {
    /// The email field whose address is invited.
    pub email_field: String,
    /// Message added to the invitation email, a template over the fields.
    #[serde(default)]
    pub message: Option<String>,
}

/// Subscribes the submitter to the Mailchimp audience of the instance's `mailchimp` app,
/// only when they ticked the consent checkbox.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MailchimpAction {
    pub email_field: String,
    /// A checkbox field. Only submissions with it ticked are subscribed.
    pub consent_field: String,
    /// Mailchimp merge tags mapped to form field names, such as `{"FNAME": "name"}`.
    #[serde(default)]
    pub merge_fields: Map<String, Value>,
}

impl FormsConfig {
    pub fn parse(section: &Value) -> Result<Self, FieldError> {
        serde_path_to_error::deserialize(section).map_err(|err| {
            let path = err.path().to_string();
            // serde quotes rejected values, which must not happen for the JSON secret.
            let message = if path.ends_with("json_secret") {
                "invalid value; expected a string".to_string()
            } else {
                err.into_inner().to_string()
            };
            FieldError::new(path, message)
        })
    }

    pub fn form(&self, name: &str) -> Option<&Form> {
        self.forms.iter().find(|form| form.name == name)
    }
}

impl Form {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|field| field.name == name)
    }

    /// Lists the features a submission of this form runs, in order.
    pub fn features(&self) -> Vec<&'static str> {
        let actions = &self.actions;
        let mut features = vec![super::RECORD];
        if actions.topic.is_some() {
            features.push(super::CREATE_TOPIC);
        }
        if actions.private_message.is_some() {
            features.push(super::PRIVATE_MESSAGE);
        }
        if actions.invite.is_some() {
            features.push(super::INVITE);
        }
        if actions.mailchimp.is_some() {
            features.push(super::SUBSCRIBE);
        }
        features
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

const NAME_RULE: &str =
    "use 1 to 40 lowercase letters, digits, '_' and '-', starting with a letter";

/// Largest number of forms in one instance.
pub const MAX_FORMS: usize = 50;

/// Largest number of fields in one form.
pub const MAX_FIELDS: usize = 100;

/// Checks a parsed section and returns every invalid field.
pub fn check(config: &FormsConfig) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if config.forms.len() > MAX_FORMS {
        errors.push(FieldError::new(
            "forms",
            format!(
                "{} forms; at most {MAX_FORMS} are allowed, so remove some",
                config.forms.len()
            ),
        ));
        return errors;
    }
    let mut names = Vec::new();
    for (index, form) in config.forms.iter().enumerate() {
        let at = |field: &str| format!("forms[{index}].{field}");
        if !valid_name(&form.name) {
            errors.push(FieldError::new(
                at("name"),
                format!("{:?}: {NAME_RULE}", form.name),
            ));
        } else if names.contains(&form.name) {
            errors.push(FieldError::new(
                at("name"),
                format!("{:?} is used twice", form.name),
            ));
        }
        names.push(form.name.clone());
        if form.title.trim().is_empty() {
            errors.push(FieldError::new(
                at("title"),
                "missing; give the form a title",
            ));
        }
        let rates = [
            ("submissions_per_minute", form.submissions_per_minute),
            (
                "submissions_per_hour_per_address",
                form.submissions_per_hour_per_address,
            ),
        ];
        for (key, rate) in rates {
            if rate == 0 {
                errors.push(FieldError::new(at(key), "0 accepts nothing; use 1 or more"));
            }
        }
        if form.fields.len() > MAX_FIELDS {
            errors.push(FieldError::new(
                at("fields"),
                format!(
                    "{} fields; at most {MAX_FIELDS} are allowed, so remove some",
                    form.fields.len()
                ),
            ));
            continue;
        }
        if form.fields.is_empty() {
            errors.push(FieldError::new(
                at("fields"),
                "empty; add at least one field",
            ));
        }
        let mut field_names: Vec<&str> = Vec::new();
        for (position, field) in form.fields.iter().enumerate() {
            let prefix = at(&format!("fields[{position}]"));
            check_field(field, &prefix, &mut errors);
            if field_names.contains(&field.name.as_str()) {
                errors.push(FieldError::new(
                    format!("{prefix}.name"),
                    format!("{:?} is used twice", field.name),
                ));
            }
            field_names.push(&field.name);
        }
        if let Some(url) = &form.redirect_url {
            match reqwest::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                _ => errors.push(FieldError::new(
                    at("redirect_url"),
                    format!("{url:?} is not an http or https URL"),
                )),
            }
        }
        if let Some(secret) = &form.json_secret {
            if secret.expose().len() < crate::instance::MIN_SECRET_LEN {
                errors.push(FieldError::new(
                    at("json_secret"),
                    "too short; use at least 12 characters, such as a generated secret",
                ));
            }
        }
        for (external, target) in &form.json_fields {
            let known = target
                .as_str()
                .is_some_and(|name| form.field(name).is_some());
            if !known {
                errors.push(FieldError::new(
                    at(&format!("json_fields.{external}")),
                    format!("{target} is not a field of this form; name one of its fields"),
                ));
            }
        }
        check_actions(form, &at, &mut errors);
    }
    errors
}

fn check_field(field: &Field, prefix: &str, errors: &mut Vec<FieldError>) {
    let at = |key: &str| format!("{prefix}.{key}");
    if !valid_name(&field.name) {
        errors.push(FieldError::new(
            at("name"),
            format!("{:?}: {NAME_RULE}", field.name),
        ));
    }
    if field.name == super::HONEYPOT || field.name == super::STARTED {
        errors.push(FieldError::new(
            at("name"),
            format!(
                "{:?} is reserved for spam checks; choose another name",
                field.name
            ),
        ));
    }
    if field.label.trim().is_empty() {
        errors.push(FieldError::new(
            at("label"),
            "missing; write the label people see",
        ));
    }
    if field.kind == FieldType::Choice && field.choices.is_empty() {
        errors.push(FieldError::new(
            at("choices"),
            "empty; list the options to choose from",
        ));
    }
    if field.kind != FieldType::Choice && !field.choices.is_empty() {
        errors.push(FieldError::new(
            at("choices"),
            "only choice fields have choices",
        ));
    }
    if let (Some(min), Some(max)) = (field.min_length, field.max_length) {
        if min > max {
            errors.push(FieldError::new(
                at("min_length"),
                format!("{min} is above max_length {max}"),
            ));
        }
    }
    if let (Some(min), Some(max)) = (field.min, field.max) {
        if min > max {
            errors.push(FieldError::new(
                at("min"),
                format!("{min} is above max {max}"),
            ));
        }
    }
    if let Some(pattern) = &field.pattern {
        if let Err(err) = regex_lite::Regex::new(pattern) {
            errors.push(FieldError::new(
                at("pattern"),
                format!("invalid regular expression: {err}"),
            ));
        }
    }
}

fn check_actions(form: &Form, at: &dyn Fn(&str) -> String, errors: &mut Vec<FieldError>) {
    let actions = &form.actions;
    let mut templates: Vec<(String, &str)> = Vec::new();
    if let Some(topic) = &actions.topic {
        templates.push((at("actions.topic.title"), &topic.title));
        templates.push((at("actions.topic.body"), &topic.body));
    }
    if let Some(message) = &actions.private_message {
        if message.users.is_empty() && message.groups.is_empty() {
            errors.push(FieldError::new(
                at("actions.private_message"),
                "no recipients; list users, groups or both",
            ));
        }
        templates.push((at("actions.private_message.title"), &message.title));
        templates.push((at("actions.private_message.body"), &message.body));
    }
    for (path, source) in templates {
        if source.trim().is_empty() {
            errors.push(FieldError::new(
                path,
                "missing; write the text, with fields such as {{ name }}",
            ));
        } else if let Err(err) = template::check(source) {
            errors.push(FieldError::new(
                path,
                crate::apps::relay::template_error(&err),
            ));
        }
    }
    if let Some(invite) = &actions.invite {
        expect_field(
            form,
            &invite.email_field,
            &[FieldType::Email],
            &at("actions.invite.email_field"),
            errors,
        );
        if let Some(Err(err)) = invite.message.as_deref().map(template::check) {
            errors.push(FieldError::new(
                at("actions.invite.message"),
                crate::apps::relay::template_error(&err),
            ));
        }
    }
    if let Some(mailchimp) = &actions.mailchimp {
        expect_field(
            form,
            &mailchimp.email_field,
            &[FieldType::Email],
            &at("actions.mailchimp.email_field"),
            errors,
        );
        expect_field(
            form,
            &mailchimp.consent_field,
            &[FieldType::Checkbox],
            &at("actions.mailchimp.consent_field"),
            errors,
        );
        for (tag, name) in &mailchimp.merge_fields {
            let known = name.as_str().is_some_and(|name| form.field(name).is_some());
            if !known {
                errors.push(FieldError::new(
                    at(&format!("actions.mailchimp.merge_fields.{tag}")),
                    format!("{name} is not a field of this form"),
                ));
            }
        }
    }
}

fn expect_field(
    form: &Form,
    name: &str,
    kinds: &[FieldType],
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    match form.field(name) {
        Some(field) if kinds.contains(&field.kind) => {}
        Some(field) => errors.push(FieldError::new(
            path,
            format!(
                "{name:?} is a {} field; name a field of type {}",
                field.kind.as_str(),
                kinds[0].as_str()
            ),
        )),
        None => errors.push(FieldError::new(
            path,
            format!("{name:?} is not a field of this form"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(section: Value) -> Vec<String> {
        let config = FormsConfig::parse(&section).expect("parses");
        check(&config).into_iter().map(|error| error.path).collect()
    }

    fn valid() -> Value {
        json!({ "forms": [{
            "name": "apply", "title": "Apply",
            "fields": [
                { "name": "email", "type": "email", "label": "Email", "required": true },
                { "name": "news", "type": "checkbox", "label": "Newsletter" }
            ],
            "actions": {
                "topic": { "category_id": 4, "title": "From {{ email }}", "body": "{{ email }}" },
                "invite": { "email_field": "email" },
                "mailchimp": { "email_field": "email", "consent_field": "news" }
            }
        }]})
    }

    #[test]
    fn forms_and_fields_are_limited() {
        let mut many_fields = valid();
        let fields: Vec<Value> = (0..=MAX_FIELDS)
            .map(|index| json!({ "name": format!("f{index}"), "type": "text", "label": "F" }))
            .collect();
        many_fields["forms"][0]["fields"] = json!(fields);
        assert_eq!(errors_of(many_fields), ["forms[0].fields"]);

        let form = valid()["forms"][0].clone();
        let forms: Vec<Value> = (0..=MAX_FORMS)
            .map(|index| {
                let mut copy = form.clone();
                copy["name"] = json!(format!("form{index}"));
                copy
            })
            .collect();
        assert_eq!(errors_of(json!({ "forms": forms })), ["forms"]);
    }

    #[test]
    fn valid_form_passes() {
        assert_eq!(errors_of(valid()), Vec::<String>::new());
        let config = FormsConfig::parse(&valid()).expect("parses");
        let form = config.form("apply").expect("form");
        assert_eq!(
            form.features(),
            ["record", "create_topic", "invite", "subscribe"]
        );
        assert_eq!(form.min_fill_seconds, 3);
    }

    #[test]
    fn every_invalid_field_is_reported() {
        let section = json!({ "forms": [
            {
                "name": "Apply Now", "title": " ",
                "fields": [
                    { "name": "email", "type": "text", "label": "Email" },
                    { "name": "email", "type": "choice", "label": "" },
                    { "name": "website", "type": "text", "label": "Site", "pattern": "(" },
                    { "name": "age", "type": "number", "label": "Age", "min": 9, "max": 1 }
                ],
                "redirect_url": "javascript:alert(1)",
                "json_secret": "short",
                "json_fields": { "mail": "nosuchfield" },
                "actions": {
                    "topic": { "category_id": 4, "title": "{{ email", "body": "" },
                    "private_message": { "title": "t", "body": "b" },
                    "invite": { "email_field": "email" },
                    "mailchimp": { "email_field": "nope", "consent_field": "email",
                        "merge_fields": { "FNAME": "nope" } }
                }
            },
            { "name": "apply-now", "title": "Second", "fields": [] }
        ]});
        assert_eq!(
            errors_of(section),
            [
                "forms[0].name",
                "forms[0].title",
                "forms[0].fields[1].label",
                "forms[0].fields[1].choices",
                "forms[0].fields[1].name",
                "forms[0].fields[2].name",
                "forms[0].fields[2].pattern",
                "forms[0].fields[3].min",
                "forms[0].redirect_url",
                "forms[0].json_secret",
                "forms[0].json_fields.mail",
                "forms[0].actions.private_message",
                "forms[0].actions.topic.title",
                "forms[0].actions.topic.body",
                "forms[0].actions.invite.email_field",
                "forms[0].actions.mailchimp.email_field",
                "forms[0].actions.mailchimp.consent_field",
                "forms[0].actions.mailchimp.merge_fields.FNAME",
                "forms[1].fields",
            ]
        );
    }

    #[test]
    fn zero_rates_are_rejected() {
        let mut section = valid();
        section["forms"][0]["submissions_per_minute"] = json!(0);
        section["forms"][0]["submissions_per_hour_per_address"] = json!(0);
        assert_eq!(
            errors_of(section),
            [
                "forms[0].submissions_per_minute",
                "forms[0].submissions_per_hour_per_address"
            ]
        );
    }

    #[test]
    fn secret_value_is_not_quoted_in_type_errors() {
        let section = json!({ "forms": [{ "name": "a", "title": "A", "fields": [],
            "json_secret": 123456789012345_u64 }]});
        let error = FormsConfig::parse(&section).expect_err("a number is no secret");
        assert!(
            !error.message.contains("123456789012345"),
            "{}",
            error.message
        );
    }
}
