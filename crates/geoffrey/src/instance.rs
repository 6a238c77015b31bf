//! An instance: one Discourse forum, with its own database and its `CONFIG` document.
//!
//! `CONFIG` contains the Discourse URL, the webhook secret and one section per app under `apps`.
//! Every write goes through [`validate`], which checks the whole document and reports each
//! invalid field, so a bad configuration is rejected before anything is stored. Secrets are
//! stored sealed with the operator's key (see [`crate::keyring`]) and opened when read.

use crate::apps::{AppRegistry, FieldError, SecretVisitor};
use crate::keyring::{Keyring, OpenError};
use crate::secret::{MASK, Secret};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Id of the configuration document in every instance database.
pub const CONFIG_ID: &str = "CONFIG";

/// Shortest webhook secret Discourse itself accepts.
pub const MIN_SECRET_LEN: usize = 12;

const MAX_NAME_LEN: usize = 64;

/// The `CONFIG` document, parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// Base URL of the forum, such as `https://forum.example.com`.
    pub discourse_url: String,
    /// Key of the `X-Discourse-Event-Signature` HMAC; empty only with `accept_unsigned`.
    #[serde(default)]
    pub webhook_secret: Secret,
    /// Accepts deliveries without a signature header. Off by default; a delivery that has
    /// the header is still checked.
    #[serde(default)]
    pub accept_unsigned: bool,
    /// Key for Discourse's API (Admin > API > Keys), for apps that read from the forum, such
    /// as the Mailchimp backfill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discourse_api_key: Option<Secret>,
    /// User the API key acts as; `system` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discourse_api_username: Option<String>,
    /// One section per app, keyed by the app's name.
    #[serde(default)]
    pub apps: Map<String, Value>,
}

/// A configuration as read from the store, with the revision a later save must name.
#[derive(Debug, Clone)]
pub struct StoredConfig {
    pub rev: String,
    pub config: InstanceConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("invalid instance name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("instance {0:?} not found; `geoffrey instance list` shows the instances")]
    NotFound(String),
    #[error("instance {0:?} already exists")]
    Exists(String),
    #[error("invalid configuration:\n{}", format_field_errors(.0))]
    Invalid(Vec<FieldError>),
    #[error("cannot read the secret {path} of instance {instance:?}: {reason}")]
    Sealed {
        instance: String,
        path: String,
        /// Not named `source`, which would make the error chain print it twice.
        reason: OpenError,
    },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for InstanceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::DatabaseNotFound(name) => InstanceError::NotFound(name),
            StoreError::DatabaseExists(name) => InstanceError::Exists(name),
            other => InstanceError::Store(other),
        }
    }
}

fn format_field_errors(errors: &[FieldError]) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| format!("  {}: {}", e.path, e.message))
        .collect();
    lines.join("\n")
}

/// Checks an instance name: 1 to 64 characters, lowercase letters, digits, `_` and `-`,
/// starting with a letter. These names are valid CouchDB database names and file names on
/// every platform, and never contain `/`.
pub fn validate_name(name: &str) -> Result<(), InstanceError> {
    let invalid = |reason| {
        Err(InstanceError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return invalid("use 1 to 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return invalid("start with a lowercase letter");
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if !name.chars().all(allowed) {
        return invalid("use only lowercase letters, digits, '_' and '-'");
    }
    Ok(())
}

/// Parses and checks a whole `CONFIG` document. Returns every invalid field at once, except
/// that a value of the wrong type stops parsing and is reported alone.
pub fn validate(document: &Value, apps: &AppRegistry) -> Result<InstanceConfig, InstanceError> {
    if !document.is_object() {
        return Err(InstanceError::Invalid(vec![FieldError::new(
            "",
            "the configuration must be a JSON object; `geoffrey config show` prints one",
        )]));
    }
    let mut body = document.clone();
    if let Some(object) = body.as_object_mut() {
        object.remove("_id");
        object.remove("_rev");
    }
    let config: InstanceConfig = serde_path_to_error::deserialize(&body).map_err(|err| {
        let path = err.path().to_string();
        // serde quotes the rejected value, which must not happen for a secret.
        let message = if path == "webhook_secret" {
            "invalid value; expected a string".to_string()
        } else {
            err.into_inner().to_string()
        };
        InstanceError::Invalid(vec![FieldError::new(path, message)])
    })?;

    let mut errors = Vec::new();
    check_discourse_url(&config.discourse_url, &mut errors);
    check_secret(&config, &mut errors);
    for (name, section) in &config.apps {
        match apps.get(name) {
            Some(app) => errors.extend(
                app.validate(section)
                    .into_iter()
                    .map(|e| e.within(&format!("apps.{name}"))),
            ),
            None => errors.push(FieldError::new(
                format!("apps.{name}"),
                format!("unknown app; available apps: {}", apps.names().join(", ")),
            )),
        }
    }
    errors.extend(crate::apps::forms::check_dependencies(&config));
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(InstanceError::Invalid(errors))
    }
}

fn check_discourse_url(url: &str, errors: &mut Vec<FieldError>) {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {}
        _ => errors.push(FieldError::new(
            "discourse_url",
            format!("{url:?} is not an http or https URL; use the forum's base URL"),
        )),
    }
}

fn check_secret(config: &InstanceConfig, errors: &mut Vec<FieldError>) {
    let secret = config.webhook_secret.expose();
    if secret.is_empty() && !config.accept_unsigned {
        errors.push(FieldError::new(
            "webhook_secret",
            "missing; set a secret, or set accept_unsigned to true to accept unsigned deliveries",
        ));
    } else if !secret.is_empty() && secret.len() < MIN_SECRET_LEN {
        errors.push(FieldError::new(
            "webhook_secret",
            format!(
                "too short ({} characters); Discourse requires at least 12",
                secret.len()
            ),
        ));
    }
}

/// Returns the configuration as JSON with every secret replaced by [`MASK`].
pub fn masked(config: &InstanceConfig, apps: &AppRegistry) -> Value {
    let mut value = serde_json::to_value(config).unwrap_or(Value::Null);
    mask(&mut value, apps);
    value
}

/// Replaces every non-empty secret of a `CONFIG` document with [`MASK`].
pub fn mask(document: &mut Value, apps: &AppRegistry) {
    visit_secrets(document, apps, &mut |_, secret, _| {
        if secret.as_str().is_some_and(|text| !text.is_empty()) {
            *secret = Value::from(MASK);
        }
    });
}

/// Calls `visit` for every secret of a `CONFIG` document: the webhook secret, the Discourse
/// API key and each app's secrets, with their dotted paths.
fn visit_secrets(document: &mut Value, apps: &AppRegistry, visit: &mut SecretVisitor<'_>) {
    if let Some(secret) = document.get_mut("webhook_secret") {
        visit("webhook_secret", secret, &Value::Null);
    }
    let forum = document
        .get("discourse_url")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(key) = document.get_mut("discourse_api_key") {
        visit("discourse_api_key", key, &forum);
    }
    let Some(sections) = document.get_mut("apps").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, section) in sections.iter_mut() {
        if let Some(app) = apps.get(name) {
            app.visit_secrets(section, &mut |path, secret, server| {
                visit(&format!("apps.{name}.{path}"), secret, server);
            });
        }
    }
}

/// Returns the associated data a secret is sealed with: the instance, the field and the
/// server the secret is sent to.
fn seal_context(instance: &str, path: &str, server: &Value) -> String {
    format!("geoffrey CONFIG\0{instance}\0{path}\0{server}")
}

/// Seals every secret of a `CONFIG` document with the keyring's current key.
fn seal(document: &mut Value, instance: &str, apps: &AppRegistry, keyring: &Keyring) {
    visit_secrets(document, apps, &mut |path, secret, server| {
        if let Some(text) = secret.as_str().filter(|text| !text.is_empty()) {
            *secret = Value::from(keyring.seal(text, &seal_context(instance, path, server)));
        }
    });
}

/// Opens every sealed secret of a stored `CONFIG` document in place. A secret that does not
/// open becomes `null`, and its error is returned.
fn open_secrets(
    document: &mut Value,
    instance: &str,
    apps: &AppRegistry,
    keyring: &Keyring,
) -> Vec<InstanceError> {
    let mut failures = Vec::new();
    visit_secrets(document, apps, &mut |path, secret, server| {
        let Some(text) = secret.as_str() else { return };
        match keyring.open(text, &seal_context(instance, path, server)) {
            Ok(plain) => *secret = Value::from(plain),
            Err(source) => {
                *secret = Value::Null;
                failures.push(InstanceError::Sealed {
                    instance: instance.to_string(),
                    path: path.to_string(),
                    reason: source,
                });
            }
        }
    });
    failures
}

/// Opens every sealed secret of a stored `CONFIG` document, and parses it.
pub fn decode(
    mut document: Value,
    instance: &str,
    apps: &AppRegistry,
    keyring: &Keyring,
) -> Result<InstanceConfig, InstanceError> {
    if let Some(err) = open_secrets(&mut document, instance, apps, keyring)
        .into_iter()
        .next()
    {
        return Err(err);
    }
    serde_json::from_value(document).map_err(|err| {
        InstanceError::Store(StoreError::Corrupt(format!(
            "CONFIG of {instance:?}: {err}"
        )))
    })
}

/// Returns the document to store for a valid configuration, with its secrets sealed.
fn encode(
    config: &InstanceConfig,
    instance: &str,
    apps: &AppRegistry,
    keyring: &Keyring,
) -> Result<Value, InstanceError> {
    let mut body = serde_json::to_value(config).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    seal(&mut body, instance, apps, keyring);
    Ok(body)
}

/// Replaces every [`MASK`] string in `new` with the value at the same place in `old`, so a
/// configuration shown masked can be edited and saved back without retyping its secrets.
/// List items that have a `name` (such as relay rules) are matched by name, so reordering
/// them keeps each secret with its item. Other items are matched by position. A mask with
/// no stored value left stays a mask, and validation then rejects it.
pub fn unmask(new: &mut Value, old: &Value) {
    match new {
        Value::String(text) if text == MASK && !old.is_null() => *new = old.clone(),
        Value::Object(fields) => {
            for (key, value) in fields.iter_mut() {
                unmask(value, old.get(key).unwrap_or(&Value::Null));
            }
        }
        Value::Array(items) => {
            for (index, value) in items.iter_mut().enumerate() {
                let counterpart = match value.get("name") {
                    Some(name) => old
                        .as_array()
                        .and_then(|olds| olds.iter().find(|item| item.get("name") == Some(name))),
                    None => old.get(index),
                };
                unmask(value, counterpart.unwrap_or(&Value::Null));
            }
        }
        _ => {}
    }
}

/// Rejects a masked secret whose destination changed in the same save, such as a masked
/// Mailchimp key with a new `base_url`. Otherwise anyone allowed to edit the configuration
/// could send a stored key to a server of their choice without ever seeing it.
fn check_masked_destinations(
    new: &Value,
    old: &Value,
    apps: &AppRegistry,
) -> Result<(), InstanceError> {
    let mut errors = Vec::new();
    let mut check = |new: &Value, old: &Value, prefix: &str, secret: &str, destination: &str| {
        let masked = new.get(secret).and_then(Value::as_str) == Some(MASK);
        if masked && new.get(destination) != old.get(destination) {
            errors.push(FieldError::new(
                format!("{prefix}{secret}"),
                format!("enter the secret again: a masked one is kept only while {destination} stays the same"),
            ));
        }
    };
    check(new, old, "", "discourse_api_key", "discourse_url");
    let sections = new
        .get("apps")
        .and_then(Value::as_object)
        .into_iter()
        .flatten();
    for (name, section) in sections {
        let Some(app) = apps.get(name) else { continue };
        let old_section = old
            .pointer(&format!("/apps/{name}"))
            .unwrap_or(&Value::Null);
        for (secret, destination) in app.secret_destinations() {
            check(
                section,
                old_section,
                &format!("apps.{name}."),
                secret,
                destination,
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(InstanceError::Invalid(errors))
    }
}

/// Reads and parses an instance's `CONFIG`.
pub async fn load(
    store: &dyn Store,
    apps: &AppRegistry,
    keyring: &Keyring,
    name: &str,
) -> Result<StoredConfig, InstanceError> {
    validate_name(name)?;
    let document = store
        .get(name, CONFIG_ID)
        .await?
        .ok_or_else(|| InstanceError::NotFound(name.into()))?;
    let config = decode(document.body, name, apps, keyring)?;
    Ok(StoredConfig {
        rev: document.rev,
        config,
    })
}

/// A `CONFIG` document opened for editing, even when some of its secrets cannot be read.
pub struct Editable {
    pub rev: String,
    /// The document with its secrets opened; an unreadable secret is `null`.
    pub document: Value,
    /// One [`InstanceError::Sealed`] for each secret that cannot be read. Saving the document
    /// requires entering those secrets again.
    pub unreadable: Vec<InstanceError>,
}

/// Reads an instance's `CONFIG` for editing. Unlike [`load`], it succeeds when a secret
/// cannot be opened, so that the secret can be entered again.
pub async fn load_for_edit(
    store: &dyn Store,
    apps: &AppRegistry,
    keyring: &Keyring,
    name: &str,
) -> Result<Editable, InstanceError> {
    validate_name(name)?;
    let stored = store
        .get(name, CONFIG_ID)
        .await?
        .ok_or_else(|| InstanceError::NotFound(name.into()))?;
    let mut document = stored.body;
    let unreadable = open_secrets(&mut document, name, apps, keyring);
    Ok(Editable {
        rev: stored.rev,
        document,
        unreadable,
    })
}

/// Seals again with the current key every secret of an instance that is stored in plain
/// text or sealed with a previous key. Returns how many secrets it sealed again.
pub async fn reseal(
    store: &dyn Store,
    apps: &AppRegistry,
    keyring: &Keyring,
    name: &str,
) -> Result<usize, InstanceError> {
    let document = store
        .get(name, CONFIG_ID)
        .await?
        .ok_or_else(|| InstanceError::NotFound(name.into()))?;
    let mut stale = 0;
    let mut body = document.body.clone();
    visit_secrets(&mut body, apps, &mut |_, secret, _| {
        let text = secret.as_str().unwrap_or_default();
        stale += usize::from(!text.is_empty() && !keyring.is_current(text));
    });
    if stale == 0 {
        return Ok(0);
    }
    let config = decode(document.body, name, apps, keyring)?;
    let body = encode(&config, name, apps, keyring)?;
    store
        .put(name, CONFIG_ID, Some(&document.rev), &body)
        .await?;
    Ok(stale)
}

/// Creates the instance's database and its first `CONFIG`, with `webhook_secret` or a
/// generated one. Nothing is created if the name or the configuration is invalid.
pub async fn create(
    store: &dyn Store,
    apps: &AppRegistry,
    keyring: &Keyring,
    name: &str,
    discourse_url: &str,
    webhook_secret: Option<Secret>,
) -> Result<InstanceConfig, InstanceError> {
    validate_name(name)?;
    let config = InstanceConfig {
        discourse_url: discourse_url.trim_end_matches('/').to_string(),
        webhook_secret: webhook_secret.unwrap_or_else(Secret::generate),
        accept_unsigned: false,
        discourse_api_key: None,
        discourse_api_username: None,
        apps: Map::new(),
    };
    let body = serde_json::to_value(&config).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    validate(&body, apps)?;
    let sealed = encode(&config, name, apps, keyring)?;
    store.create_database(name).await?;
    store.put(name, CONFIG_ID, None, &sealed).await?;
    Ok(config)
}

/// Puts the stored secrets back in place of the masks of an edited (part of a) `CONFIG`
/// document. `stored` is the stored document with its secrets opened. Fails with the paths of
/// masks that have no stored value, and of masked secrets whose destination changed (see
/// [`unmask`]).
pub fn unmask_edited(
    document: &mut Value,
    stored: &Value,
    apps: &AppRegistry,
) -> Result<(), InstanceError> {
    check_masked_destinations(document, stored, apps)?;
    unmask(document, stored);
    let mut masks_left = Vec::new();
    visit_secrets(document, apps, &mut |path, secret, _| {
        if secret.as_str() == Some(MASK) {
            masks_left.push(FieldError::new(
                path,
                "enter the secret again: there is no stored value to keep, because it was \
                 never set or cannot be read with the current key",
            ));
        }
    });
    if masks_left.is_empty() {
        Ok(())
    } else {
        Err(InstanceError::Invalid(masks_left))
    }
}

/// Replaces each secret value of `document` that a field error's message contains with
/// [`MASK`]. Messages describe secrets without quoting them, and this keeps it so for any
/// message that quotes a value.
fn hide_secret_values(err: InstanceError, document: &Value, apps: &AppRegistry) -> InstanceError {
    let InstanceError::Invalid(errors) = err else {
        return err;
    };
    let mut secrets = Vec::new();
    visit_secrets(&mut document.clone(), apps, &mut |_, secret, _| {
        if let Some(text) = secret.as_str().filter(|text| !text.is_empty()) {
            secrets.push(text.to_string());
        }
    });
    let errors = errors
        .into_iter()
        .map(|error| {
            let message = secrets.iter().fold(error.message, |message, secret| {
                message.replace(secret.as_str(), MASK)
            });
            FieldError::new(error.path, message)
        })
        .collect();
    InstanceError::Invalid(errors)
}

/// Returns the dotted paths of the secrets of a `CONFIG` document, such as
/// `apps.relay.rules[0].url`, whether they are set or not.
pub fn secret_paths(document: &Value, apps: &AppRegistry) -> Vec<String> {
    let mut copy = document.clone();
    let mut paths = Vec::new();
    visit_secrets(&mut copy, apps, &mut |path, _, _| {
        paths.push(path.to_string())
    });
    paths
}

/// A saved `CONFIG`, with the documents before and after the save. Both contain opened
/// secrets: compare them, never show them.
pub struct Saved {
    pub rev: String,
    /// The stored document the save replaced; a secret that could not be opened is `null`.
    pub before: Value,
    pub after: Value,
}

/// Validates and saves a new `CONFIG`. `rev` is the revision the edit started from; masked
/// secrets in `document` keep their stored values. Returns the new revision.
pub async fn save(
    store: &dyn Store,
    apps: &AppRegistry,
    keyring: &Keyring,
    name: &str,
    rev: &str,
    document: Value,
) -> Result<String, InstanceError> {
    let saved = save_document(store, apps, keyring, name, rev, document).await?;
    Ok(saved.rev)
}

/// Works as [`save`], and returns the documents before and after, for an audit entry.
pub async fn save_document(
    store: &dyn Store,
    apps: &AppRegistry,
    keyring: &Keyring,
    name: &str,
    rev: &str,
    mut document: Value,
) -> Result<Saved, InstanceError> {
    let before = load_for_edit(store, apps, keyring, name).await?.document;
    unmask_edited(&mut document, &before, apps)?;
    let config =
        validate(&document, apps).map_err(|err| hide_secret_values(err, &document, apps))?;
    let body = encode(&config, name, apps, keyring)?;
    let rev = store.put(name, CONFIG_ID, Some(rev), &body).await?;
    let after = serde_json::to_value(&config).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Saved { rev, before, after })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry() -> AppRegistry {
        AppRegistry::builtin()
    }

    #[test]
    fn names_follow_database_rules() {
        for good in ["forum", "my-forum_2", "a"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Forum",
            "2forum",
            "my/forum",
            "my forum",
            &"a".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn valid_config_passes() {
        let document = json!({
            "discourse_url": "https://forum.example.com",
            "webhook_secret": "fixture-secret",
        });
        let config = validate(&document, &registry()).expect("valid");
        assert_eq!(config.webhook_secret.expose(), "fixture-secret");
    }

    #[test]
    fn every_invalid_field_is_reported() {
        let document = json!({
            "discourse_url": "forum.example.com",
            "webhook_secret": "short",
            "apps": { "nosuchapp": {} },
        });
        let Err(InstanceError::Invalid(errors)) = validate(&document, &registry()) else {
            panic!("expected field errors");
        };
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["discourse_url", "webhook_secret", "apps.nosuchapp"]);
    }

    #[test]
    fn form_subscription_needs_the_mailchimp_app() {
        let document = json!({
            "discourse_url": "https://forum.example.com",
            "webhook_secret": "fixture-secret",
            "apps": { "forms": { "forms": [{
                "name": "apply", "title": "Apply",
                "fields": [
                    { "name": "email", "type": "email", "label": "Email" },
                    { "name": "news", "type": "checkbox", "label": "News" }
                ],
                "actions": { "mailchimp": { "email_field": "email", "consent_field": "news" } }
            }]}}
        });
        let Err(InstanceError::Invalid(errors)) = validate(&document, &registry()) else {
            panic!("a mailchimp action without the app must fail");
        };
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["apps.forms.forms[0].actions.mailchimp"]);
    }

    #[test]
    fn unsigned_needs_opt_in() {
        let document = json!({ "discourse_url": "https://forum.example.com" });
        assert!(validate(&document, &registry()).is_err());
        let document = json!({ "discourse_url": "https://f.example.com", "accept_unsigned": true });
        assert!(validate(&document, &registry()).is_ok());
    }

    #[test]
    fn unknown_top_level_field_names_the_field() {
        let document = json!({ "discourse_url": "https://f.example.com", "secret": "x" });
        let err = validate(&document, &registry()).expect_err("unknown field");
        assert!(err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn masked_secret_keeps_its_destination() {
        let old = json!({ "discourse_url": "https://f.example.com", "discourse_api_key": "key-1234",
            "apps": { "mailchimp": { "api_key": "k", "base_url": "https://proxy.example.com" } } });
        let moved = json!({ "discourse_url": "https://evil.example.net", "discourse_api_key": MASK,
            "apps": { "mailchimp": { "api_key": MASK, "base_url": "https://evil.example.net" } } });
        let Err(InstanceError::Invalid(errors)) =
            check_masked_destinations(&moved, &old, &registry())
        else {
            panic!("moving a masked secret must fail");
        };
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["discourse_api_key", "apps.mailchimp.api_key"]);
        let kept = json!({ "discourse_url": "https://f.example.com", "discourse_api_key": MASK,
            "apps": { "mailchimp": { "api_key": MASK, "base_url": "https://proxy.example.com" } } });
        assert!(check_masked_destinations(&kept, &old, &registry()).is_ok());
    }

    #[test]
    fn non_object_config_is_rejected() {
        let err = validate(
            &json!(["https://f.example.com", "fixture-secret"]),
            &registry(),
        );
        assert!(err.is_err());
    }

    #[test]
    fn reordered_items_keep_their_secrets() {
        let old = json!({ "rules": [
            { "name": "a", "url": "https://a.example.com/token-a" },
            { "name": "b", "url": "https://b.example.com/token-b" },
        ]});
        let mut new = json!({ "rules": [
            { "name": "b", "url": MASK },
            { "name": "a", "url": MASK },
            { "name": "c", "url": MASK },
        ]});
        unmask(&mut new, &old);
        assert_eq!(new["rules"][0]["url"], "https://b.example.com/token-b");
        assert_eq!(new["rules"][1]["url"], "https://a.example.com/token-a");
        assert_eq!(
            new["rules"][2]["url"], MASK,
            "a new item has no stored secret"
        );
    }

    #[test]
    fn masked_then_unmasked_round_trips() {
        let document = json!({
            "discourse_url": "https://forum.example.com",
            "webhook_secret": "fixture-secret",
        });
        let config = validate(&document, &registry()).expect("valid");
        let mut shown = masked(&config, &registry());
        assert_eq!(shown["webhook_secret"], MASK);
        unmask(&mut shown, &document);
        assert_eq!(shown["webhook_secret"], "fixture-secret");
    }
}
