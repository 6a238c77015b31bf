//! The `mailchimp` section of `CONFIG` and its validation.

use crate::apps::FieldError;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Mailchimp allows 10 simultaneous connections per account, shared with every other
/// integration of that account.
pub const MAX_CONNECTIONS: usize = 10;

/// Events that may start a subscription.
pub const TRIGGERS: [&str; 3] = ["user_confirmed_email", "user_approved", "user_created"];

/// Discourse fields a merge field can take its value from, besides `user_fields.<id>`.
pub const SOURCES: [&str; 5] = ["name", "first_name", "last_name", "username", "email"];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MailchimpConfig {
    /// API key, `<32 hex digits>-<data centre>`, such as `...-us6`.
    pub api_key: Secret,
    /// Overrides `https://<data centre>.api.mailchimp.com`, for proxies and tests.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Audience (list) id.
    pub list_id: String,
    #[serde(default)]
    pub consent: Consent,
    /// Event that subscribes a user. A confirmed email by default, so that unconfirmed and
    /// staged users are not added.
    #[serde(default = "default_trigger")]
    pub trigger: String,
    /// Merge tag to Discourse field, such as `{"FNAME": "first_name"}`.
    #[serde(default)]
    pub merge_fields: BTreeMap<String, String>,
    /// Tags every synced member gets.
    #[serde(default)]
    pub static_tags: Vec<String>,
    /// Discourse group id to Mailchimp tag.
    #[serde(default)]
    pub group_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub on_leave: OnLeave,
    /// Requests in flight at once for this API key, across all workers.
    #[serde(default = "default_connections")]
    pub max_connections: usize,
}

/// Consent rule: which users may be added to the audience.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    pub mode: ConsentMode,
    /// Id of the Discourse user field that must be true, for mode `user_field`.
    #[serde(default)]
    pub user_field: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    /// New members start `pending` and Mailchimp emails them to confirm.
    #[default]
    DoubleOptIn,
    /// Only users whose consent user field is true; they start `subscribed`.
    UserField,
    /// Every user with a confirmed email starts `subscribed`.
    Everyone,
}

/// Action in Mailchimp when a Discourse user is deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLeave {
    /// The member is archived and can come back.
    #[default]
    Archive,
    /// The member's data is erased; Mailchimp then refuses the address for good.
    DeletePermanently,
}

fn default_trigger() -> String {
    TRIGGERS[0].to_string()
}

fn default_connections() -> usize {
    MAX_CONNECTIONS
}

impl MailchimpConfig {
    pub fn parse(section: &serde_json::Value) -> Result<Self, FieldError> {
        serde_path_to_error::deserialize(section).map_err(|err| {
            let path = err.path().to_string();
            let message = if path == "api_key" {
                "invalid value; expected a string".to_string()
            } else {
                err.into_inner().to_string()
            };
            FieldError::new(path, message)
        })
    }

    /// Returns the data centre, the part of the API key after the hyphen.
    pub fn data_centre(&self) -> Option<&str> {
        let (key, dc) = self.api_key.expose().split_once('-')?;
        let valid = key.len() == 32
            && key.chars().all(|c| c.is_ascii_alphanumeric())
            && !dc.is_empty()
            && dc.chars().all(|c| c.is_ascii_alphanumeric());
        valid.then_some(dc)
    }

    /// Returns the API root, ending in `/3.0`.
    pub fn api_root(&self) -> String {
        match &self.base_url {
            Some(url) => format!("{}/3.0", url.trim_end_matches('/')),
            None => format!(
                "https://{}.api.mailchimp.com/3.0",
                self.data_centre().unwrap_or("invalid")
            ),
        }
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.data_centre().is_none() {
            // The key is a secret: describe it, never quote it.
            errors.push(FieldError::new(
                "api_key",
                "not a Mailchimp API key; expected 32 letters or digits, a hyphen and the data centre, such as -us6",
            ));
        }
        if let Some(url) = &self.base_url {
            let valid =
                reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !valid {
                errors.push(FieldError::new(
                    "base_url",
                    format!("{url:?} is not an http or https URL"),
                ));
            } else if url.trim_end_matches('/').ends_with("/3.0") {
                errors.push(FieldError::new(
                    "base_url",
                    format!("{url:?} ends in /3.0, which Geoffrey adds itself; leave it out"),
                ));
            }
        }
        if self.list_id.trim().is_empty() {
            errors.push(FieldError::new(
                "list_id",
                "missing; copy the audience id from Mailchimp's audience settings",
            ));
        }
        match (self.consent.mode, &self.consent.user_field) {
            (ConsentMode::UserField, None) => errors.push(FieldError::new(
                "consent.user_field",
                "missing; name the id of the Discourse user field that records consent",
            )),
            (ConsentMode::DoubleOptIn | ConsentMode::Everyone, Some(_)) => {
                errors.push(FieldError::new(
                    "consent.user_field",
                    "only used with mode \"user_field\"; remove it or change the mode",
                ))
            }
            _ => {}
        }
        if !TRIGGERS.contains(&self.trigger.as_str()) {
            errors.push(FieldError::new(
                "trigger",
                format!(
                    "{:?} cannot start a subscription; use one of {}",
                    self.trigger,
                    TRIGGERS.join(", ")
                ),
            ));
        }
        for (tag, source) in &self.merge_fields {
            let tag_valid = !tag.is_empty()
                && tag.len() <= 10
                && tag
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !tag_valid {
                errors.push(FieldError::new(
                    format!("merge_fields.{tag}"),
                    "not a merge tag; use the tag from Mailchimp, up to 10 capital letters or digits",
                ));
            }
            let user_field = source
                .strip_prefix("user_fields.")
                .is_some_and(|id| !id.is_empty());
            if !SOURCES.contains(&source.as_str()) && !user_field {
                errors.push(FieldError::new(
                    format!("merge_fields.{tag}"),
                    format!(
                        "unknown source {source:?}; use one of {} or user_fields.<id>",
                        SOURCES.join(", ")
                    ),
                ));
            }
        }
        for group in self.group_tags.keys() {
            if group.parse::<i64>().is_err() {
                errors.push(FieldError::new(
                    format!("group_tags.{group}"),
                    "not a group id; use the numeric id of the Discourse group",
                ));
            }
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            errors.push(FieldError::new(
                "max_connections",
                format!(
                    "{} is out of range; use 1 to {MAX_CONNECTIONS}",
                    self.max_connections
                ),
            ));
        }
        errors
    }
}
