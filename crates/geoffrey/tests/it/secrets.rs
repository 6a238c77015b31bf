//! Secrets at rest: what the store contains of an instance's secrets, and what happens when a
//! sealed value is moved, its server changed, or the key is missing.

use geoffrey::instance::{self, CONFIG_ID, InstanceError};
use geoffrey::keyring::Keyring;
use geoffrey::secret::MASK;
use serde_json::{Value, json};
use testkit::fixtures::{self, FIXTURE_SECRET};
use testkit::geoffrey::{Mode, TestGeoffrey, relay_apps, relay_rule};

const DISCOURSE_KEY: &str = "discourse-key-7f3a9c";
const MAILCHIMP_KEY: &str = "0123456789abcdef0123456789abcdef-us6";
const RELAY_TOKEN: &str = "relay-token-51c0de";

/// Starts Geoffrey with one instance whose configuration has a secret in every kind of field.
async fn forum_with_secrets(mode: Mode) -> TestGeoffrey {
    let geoffrey = TestGeoffrey::start(mode).await;
    let rule = relay_rule(
        "topics",
        &format!("http://127.0.0.1:9/hook/{RELAY_TOKEN}"),
        &["topic_created"],
        "{{topic.title}}",
    );
    let mut apps = relay_apps(vec![rule]);
    apps["mailchimp"] = json!({
        "api_key": MAILCHIMP_KEY, "base_url": "http://127.0.0.1:9", "list_id": "aud1",
    });
    geoffrey.create_instance("forum", apps).await;
    geoffrey
        .edit_config("forum", |document| {
            document["discourse_api_key"] = json!(DISCOURSE_KEY);
        })
        .await;
    geoffrey
}

async fn raw_config(geoffrey: &TestGeoffrey) -> (String, Value) {
    let document = geoffrey
        .services
        .store
        .get("forum", CONFIG_ID)
        .await
        .unwrap()
        .unwrap();
    (document.rev, document.body)
}

fn assert_no_secret(text: &str) {
    for secret in [FIXTURE_SECRET, DISCOURSE_KEY, MAILCHIMP_KEY, RELAY_TOKEN] {
        assert!(!text.contains(secret), "{secret} is readable in {text}");
    }
}

async fn stored_config_reveals_no_secret(mode: Mode) {
    let geoffrey = forum_with_secrets(mode).await;
    let (_, body) = raw_config(&geoffrey).await;
    let text = body.to_string();
    assert_no_secret(&text);
    assert_eq!(text.matches("sealed:v1:").count(), 4, "{text}");
    assert_eq!(body["discourse_url"], "https://forum.example.com");

    // The embedded store's files, write-ahead log included, contain no secret either.
    if mode == Mode::Embedded {
        for entry in std::fs::read_dir(geoffrey.services.settings.store_dir()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert_no_secret(&String::from_utf8_lossy(&bytes));
        }
    }

    // Geoffrey itself opens them: the webhook secret still verifies deliveries.
    let (status, body) = geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn moved_server_leaves_key_unreadable(mode: Mode) {
    let geoffrey = forum_with_secrets(mode).await;
    let services = &geoffrey.services;
    let (store, apps, keyring) = (services.store.as_ref(), &services.apps, &services.keyring);

    // Someone with write access to the database points the sealed Mailchimp key elsewhere.
    let (rev, mut body) = raw_config(&geoffrey).await;
    body["apps"]["mailchimp"]["base_url"] = json!("https://collector.example.net");
    store
        .put("forum", CONFIG_ID, Some(&rev), &body)
        .await
        .unwrap();

    let err = instance::load(store, apps, keyring, "forum")
        .await
        .expect_err("the key must not open for another server");
    let InstanceError::Sealed { path, .. } = &err else {
        panic!("expected a sealed-secret error, got {err}");
    };
    assert_eq!(path, "apps.mailchimp.api_key");
    assert!(err.to_string().contains("enter the secret again"), "{err}");
    assert_no_secret(&err.to_string());

    // The configuration can still be edited, and a masked key cannot be saved back.
    let editable = instance::load_for_edit(store, apps, keyring, "forum")
        .await
        .unwrap();
    assert_eq!(editable.unreadable.len(), 1);
    assert_eq!(
        editable.document["apps"]["mailchimp"]["api_key"],
        Value::Null
    );
    let mut document = editable.document.clone();
    document["apps"]["mailchimp"]["api_key"] = json!(MASK);
    let rejected = instance::save(store, apps, keyring, "forum", &editable.rev, document).await;
    assert!(
        matches!(rejected, Err(InstanceError::Invalid(_))),
        "{rejected:?}"
    );

    let mut document = editable.document;
    document["apps"]["mailchimp"]["api_key"] = json!(MAILCHIMP_KEY);
    instance::save(store, apps, keyring, "forum", &editable.rev, document)
        .await
        .unwrap();
    let loaded = instance::load(store, apps, keyring, "forum").await.unwrap();
    assert_eq!(
        loaded.config.apps["mailchimp"]["base_url"],
        "https://collector.example.net"
    );
}

async fn copied_secret_does_not_open_elsewhere(mode: Mode) {
    let geoffrey = forum_with_secrets(mode).await;
    let services = &geoffrey.services;
    let (store, apps, keyring) = (services.store.as_ref(), &services.apps, &services.keyring);

    // The sealed Discourse key, copied into the webhook secret's field, does not open there.
    let (rev, mut body) = raw_config(&geoffrey).await;
    body["webhook_secret"] = body["discourse_api_key"].clone();
    store
        .put("forum", CONFIG_ID, Some(&rev), &body)
        .await
        .unwrap();
    let err = instance::load(store, apps, keyring, "forum")
        .await
        .expect_err("a secret copied to another field must not open");
    assert!(
        matches!(&err, InstanceError::Sealed { path, .. } if path == "webhook_secret"),
        "{err}"
    );
}

async fn other_key_names_the_missing_key(mode: Mode) {
    let geoffrey = forum_with_secrets(mode).await;
    let (_, body) = raw_config(&geoffrey).await;
    let other = Keyring::from_hex(&"3".repeat(64), &[]).unwrap();
    let err = instance::decode(body, "forum", &geoffrey.services.apps, &other)
        .expect_err("another key cannot open the secrets");
    let message = err.to_string();
    assert!(
        message.contains(geoffrey.services.keyring.current_id()),
        "{message}"
    );
    assert!(
        message.contains("GEOFFREY_PREVIOUS_SECRET_KEY"),
        "{message}"
    );
}

testkit::in_both_modes!(
    stored_config_reveals_no_secret,
    moved_server_leaves_key_unreadable,
    copied_secret_does_not_open_elsewhere,
    other_key_names_the_missing_key,
);
