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
