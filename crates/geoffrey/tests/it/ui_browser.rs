//! The web UI in a real headless Chromium, as a community manager uses it.

use std::path::PathBuf;
use std::time::Duration;
use testkit::browser::Browser;
use testkit::geoffrey::{Mode, TestGeoffrey};

const WAIT: Duration = Duration::from_secs(10);

/// Folder of the screenshots the docs show, under target/tmp.
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Signs in through the sign-in form as the embedded administrator.
async fn sign_in(browser: &Browser, geoffrey: &TestGeoffrey) {
    browser
        .open(&format!("{}/ui/instances", geoffrey.base_url))
        .await;
    browser.wait_for_text("Sign in", WAIT).await;
    browser.fill("user", "admin").await;
    browser.fill("password", testkit::ui::ADMIN_PASSWORD).await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("Instances", WAIT).await;
}

#[tokio::test]
async fn administrator_creates_an_instance_in_chromium() {
    let geoffrey = TestGeoffrey::start(Mode::Embedded).await;
    let browser = Browser::start().await;
    sign_in(&browser, &geoffrey).await;
    browser.wait_for_text("No instance yet", WAIT).await;

    browser.fill("name", "Not Valid").await;
    browser
        .fill("discourse_url", "https://forum.example.com")
        .await;
    browser.click_button("Create").await;
    browser
        .wait_for_text("The instance was not created", WAIT)
        .await;
    assert!(browser.page_text().await.contains("lowercase"));

    browser.fill("name", "my-forum").await;
    browser.click_button("Create").await;
    browser
        .wait_for_text("Instance my-forum created", WAIT)
        .await;
    let secret = browser.text("#webhook-secret").await;
    assert_eq!(secret.len(), 64, "{secret}");
    let url = browser.text("#webhook-url").await;
    assert!(url.ends_with("/hooks/discourse/my-forum"), "{url}");

    browser
        .open(&format!("{}/ui/instances", geoffrey.base_url))
        .await;
    browser.wait_for_text("my-forum", WAIT).await;
    assert!(!browser.page_text().await.contains(&secret));
    browser
        .screenshot(screenshots().join("ui-instances.png"))
        .await;

    // A phone's width: the table scrolls inside its box and the page does not.
    browser.client().set_window_size(390, 844).await.unwrap();
    let overflow = browser
        .client()
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        serde_json::Value::Bool(false),
        "the page is wider than a phone"
    );
    browser
        .screenshot(screenshots().join("ui-instances-phone.png"))
        .await;

    browser.click_button("Sign out").await;
    browser.wait_for_text("Sign in", WAIT).await;
    browser
        .open(&format!("{}/ui/instances", geoffrey.base_url))
        .await;
    browser.wait_for_text("Password", WAIT).await;
    assert!(
        browser
            .current_url()
            .await
            .path()
            .starts_with("/ui/sign-in")
    );
}

/// The whole way from an empty Geoffrey to a delivered chat message, in the browser only:
/// create an instance, configure a relay rule, watch a delivery's failures appear in the log,
/// replay the failed job once the chat service is back, and watch the success appear.
#[tokio::test]
async fn delivery_is_configured_followed_and_replayed_in_chromium() {
    use testkit::receiver::{Receiver, Reply};
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(503));
    let geoffrey = TestGeoffrey::start(Mode::Embedded).await;
    let base_url = geoffrey.base_url.clone();
    let browser = Browser::start().await;
    sign_in(&browser, &geoffrey).await;

    browser.fill("name", "forum").await;
    browser
        .fill("discourse_url", "https://forum.example.com")
        .await;
    browser.click_button("Create").await;
    browser.wait_for_text("Instance forum created", WAIT).await;
    let secret = browser.text("#webhook-secret").await;

    browser
        .open(&format!("{base_url}/ui/instances/forum/config"))
        .await;
    browser.wait_for_text("Add the relay app", WAIT).await;
    // As a person would, open the relay section and its new rule, both collapsed.
    let open_relay =
        "document.querySelectorAll('#app-relay details').forEach((part) => part.open = true);";
    browser.client().execute(open_relay, vec![]).await.unwrap();
    browser.fill("apps.relay.rules[0].name", "new-topics").await;
    browser.fill("apps.relay.rules[0].url", &receiver.url).await;
    browser
        .fill("apps.relay.rules[0].events", "topic_created")
        .await;
    browser
        .fill("apps.relay.rules[0].template", "New topic {{topic.title}}")
        .await;
    browser.click_button("Save").await;
    browser.wait_for_text("Saved.", WAIT).await;
    assert!(
        !browser.page_text().await.contains(&receiver.url),
        "the relay URL is a secret and is not shown again"
    );

    // The log page is open before the delivery and shows its attempts without a reload.
    browser
        .open(&format!("{base_url}/ui/instances/forum/logs"))
        .await;
    browser.wait_for_text("Logs", WAIT).await;
    let mut delivery = testkit::fixtures::signed("topic_created");
    let signature = geoffrey::api::signature::sign(secret.as_bytes(), &delivery.body);
    delivery.set_header("X-Discourse-Event-Signature", &signature);
    let (status, body) = geoffrey.send("forum", &delivery).await;
    assert_eq!(status, 200, "{body}");
    browser
        .wait_for_text_in("#log-rows", "failed after retries", Duration::from_secs(20))
        .await;
    let rows = browser.text("#log-rows").await;
    assert_eq!(rows.matches("retrying").count(), 2, "{rows}");
    let page = browser.page_text().await;
    assert!(!page.contains("No log entries"), "{page}");
    browser
        .screenshot(screenshots().join("ui-logs-live.png"))
        .await;

    receiver.always(Reply::status(200));
    browser
        .open(&format!("{base_url}/ui/instances/forum/failed"))
        .await;
    browser.wait_for_text("503", WAIT).await;
    browser
        .screenshot(screenshots().join("ui-failed.png"))
        .await;
    browser.click_button("Replay").await;
    browser.wait_for_text("Replayed 1 failed job", WAIT).await;

    browser
        .open(&format!(
            "{base_url}/ui/instances/forum/logs?outcome=succeeded"
        ))
        .await;
    browser
        .wait_for_text_in("#log-rows", "succeeded", Duration::from_secs(20))
        .await;
    let texts = receiver.texts();
    assert_eq!(
        texts
            .iter()
            .filter(|text| text.starts_with("New topic"))
            .count(),
        4,
        "three failed attempts and the replay reached the receiver: {texts:?}"
    );

    browser
        .open(&format!("{base_url}/ui/instances/forum"))
        .await;
    browser.wait_for_text("Dashboard", WAIT).await;
    browser
        .screenshot(screenshots().join("ui-dashboard.png"))
        .await;
}

/// A backfill started and followed in the browser: the progress section refreshes itself
/// until the backfill is done.
#[tokio::test]
async fn backfill_is_followed_to_done_in_chromium() {
    use fake_mailchimp::{FakeConfig, FakeMailchimp};
    use serde_json::{Value, json};
    let users: Vec<Value> = (1..=300)
        .map(|id| json!({ "id": id, "username": format!("u{id}"), "email": format!("u{id}@forum-mail.test"), "active": true }))
        .collect();
    let discourse = testkit::discourse::FakeDiscourse::start(users, "discourse-api-key").await;
    let mailchimp = FakeMailchimp::start(FakeConfig {
        response_delay: Duration::from_millis(300),
        ..FakeConfig::default()
    })
    .await;
    let geoffrey = TestGeoffrey::start(Mode::Embedded).await;
    let section = json!({
        "api_key": mailchimp.api_key(), "base_url": mailchimp.base_url(), "list_id": "aud1",
        "consent": { "mode": "everyone" },
    });
    geoffrey
        .create_instance("forum", json!({ "mailchimp": section }))
        .await;
    geoffrey
        .edit_config("forum", |document| {
            document["discourse_url"] = json!(discourse.url);
            document["discourse_api_key"] = json!("discourse-api-key");
        })
        .await;

    let browser = Browser::start().await;
    sign_in(&browser, &geoffrey).await;
    browser
        .open(&format!(
            "{}/ui/instances/forum/backfill",
            geoffrey.base_url
        ))
        .await;
    browser.wait_for_text("No backfill has run yet", WAIT).await;
    browser.click_button("Start the backfill").await;
    browser.wait_for_text_in("#state", "running", WAIT).await;
    browser
        .screenshot(screenshots().join("ui-backfill-running.png"))
        .await;
    let page_url = browser.current_url().await;
    browser
        .wait_for_text_in("#state", "done", Duration::from_secs(60))
        .await;
    assert_eq!(
        browser.current_url().await,
        page_url,
        "the progress refreshed without leaving the page"
    );
    assert_eq!(browser.text("#read").await, "300");
    assert_eq!(browser.text("#added").await, "300");
    assert_eq!(mailchimp.members("aud1").len(), 300);
    browser
        .screenshot(screenshots().join("ui-backfill-done.png"))
        .await;
}
