//! Fuzz target for the validation of an instance's `CONFIG` document. Each input is read as
//! JSON (inputs that are not valid JSON are skipped) and passed to
//! `geoffrey::instance::validate` with the built-in apps.
//!
//! Checked:
//! - A rejected document gets at least one error, and each error has a message and a path that
//!   leads to a place in the document (see [`check_errors`]).
//! - An accepted document keeps its URL and its app sections, and the configuration
//!   serializes to JSON that validates again to the same configuration.
//! - The masked form hides every secret, and unmasking it against the stored form restores
//!   that form exactly, as `geoffrey config show` followed by `config set` does.

#![no_main]

use geoffrey::apps::{AppRegistry, FieldError};
use geoffrey::instance::{InstanceConfig, InstanceError, masked, unmask, validate};
use geoffrey::secret::MASK;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::LazyLock;

static APPS: LazyLock<AppRegistry> = LazyLock::new(AppRegistry::builtin);

fuzz_target!(|data: &[u8]| {
    let Ok(document) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match validate(&document, &APPS) {
        Ok(config) => check_round_trip(&document, &config),
        Err(InstanceError::Invalid(errors)) => check_errors(&document, &errors),
        Err(other) => panic!("validate returned an error other than Invalid: {other}"),
    }
});

/// Checks that each error has a message and a path that leads to a place in the document:
/// to a value, or to an object that lacks the named field. A path of `.`, or an empty path, is
/// the whole document. It is accepted only for a document that is not an object, or with a
/// message that names the field in backticks, as serde's "missing field `x`" does.
fn check_errors(document: &Value, errors: &[FieldError]) {
    assert!(!errors.is_empty(), "an invalid document got no error");
    for error in errors {
        assert!(
            !error.message.is_empty(),
            "an error has no message: {error:?}"
        );
        if error.path.is_empty() || error.path == "." {
            let names_field = error.message.matches('`').count() >= 2;
            assert!(
                !document.is_object() || names_field,
                "an error of an object names neither a path nor a field: {error:?}"
            );
            continue;
        }
        assert!(
            leads_to(document, &error.path),
            "an error path leads nowhere in the document: {error:?}"
        );
    }
}

/// Tells whether a dotted path such as `apps.relay.rules[0].url` leads to a value inside
/// `value`, or names a field that an existing object lacks (a required field left out).
/// Object keys may contain `.` and `[`, so every key that fits the start of the path is tried,
/// as well as an array index.
fn leads_to(value: &Value, path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    match value {
        Value::Array(items) => leads_through_index(items, path),
        Value::Object(object) => {
            let through_key = object.iter().any(|(key, child)| {
                path.strip_prefix(key.as_str())
                    .is_some_and(|rest| leads_on(child, rest))
            });
            let missing_field = !path.contains(['.', '[']);
            through_key || missing_field
        }
        _ => false,
    }
}

fn leads_through_index(items: &[Value], path: &str) -> bool {
    let Some((index, rest)) = path.strip_prefix('[').and_then(|path| path.split_once(']')) else {
        return false;
    };
    let child = index
        .parse::<usize>()
        .ok()
        .and_then(|index| items.get(index));
    child.is_some_and(|child| leads_on(child, rest))
}

/// Continues [`leads_to`] after one segment: the rest is empty, or starts a new segment.
fn leads_on(child: &Value, rest: &str) -> bool {
    match rest.as_bytes().first() {
        None => true,
        Some(b'.') => leads_to(child, &rest[1..]),
        Some(b'[') => leads_to(child, rest),
        Some(_) => false,
    }
}

fn check_round_trip(document: &Value, config: &InstanceConfig) {
    assert_eq!(
        document.get("discourse_url").and_then(Value::as_str),
        Some(config.discourse_url.as_str()),
        "validation changed the Discourse URL"
    );
    let sections = document.get("apps").cloned().unwrap_or_default();
    let validated_sections = Value::Object(config.apps.clone());
    if !sections.is_null() {
        assert_eq!(
            sections, validated_sections,
            "validation changed the app sections"
        );
    }

    let stored = serde_json::to_value(config).expect("a valid configuration serializes");
    let again = match validate(&stored, &APPS) {
        Ok(again) => again,
        Err(err) => panic!("a serialized valid configuration is invalid: {err}\n{stored}"),
    };
    assert_eq!(
        &again, config,
        "validating the serialized configuration changed it"
    );
    let stored_again = serde_json::to_value(&again).expect("a valid configuration serializes");
    assert_eq!(
        stored_again, stored,
        "the configuration serializes differently the second time"
    );

    check_masking(config, &stored);
}

/// Checks that the masked form hides the secrets and unmasks back to the stored form.
fn check_masking(config: &InstanceConfig, stored: &Value) {
    let mut masked_document = masked(config, &APPS);
    if !config.webhook_secret.is_empty() {
        assert_eq!(
            masked_document["webhook_secret"], MASK,
            "the webhook secret is shown"
        );
    }
    if config.discourse_api_key.is_some() {
        assert_eq!(
            masked_document["discourse_api_key"], MASK,
            "the Discourse API key is shown"
        );
    }
    if let Some(key) = masked_document.pointer("/apps/mailchimp/api_key") {
        assert_eq!(key, MASK, "the Mailchimp API key is shown");
    }
    let rules = masked_document
        .pointer("/apps/relay/rules")
        .and_then(Value::as_array);
    for rule in rules.into_iter().flatten() {
        assert_eq!(rule["url"], MASK, "a relay URL is shown");
    }

    unmask(&mut masked_document, stored);
    assert_eq!(
        &masked_document, stored,
        "unmasking the masked configuration lost a value"
    );
}
