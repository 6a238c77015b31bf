//! The forms app through the API and the queue: the page, checks and spam rules, JSON
//! submissions, and the stored submission.

use geoffrey::clock::ManualClock;
use geoffrey::run::Roles;
use geoffrey::store::{LogEntry, Outcome};
use serde_json::{Value, json};
use std::time::Duration;
use testkit::discourse::FakeDiscourse;
use testkit::geoffrey::{Mode, TestGeoffrey};

const JSON_SECRET: &str = "form-json-secret-1234";

fn apply_form(extra: Value) -> Value {
    let mut form = json!({
        "name": "apply", "title": "Apply to join",
        "description": "Tell us about yourself.",
        "fields": [
            { "name": "name", "type": "text", "label": "Your name", "required": true },
            { "name": "email", "type": "email", "label": "Email", "required": true },
            { "name": "about", "type": "long_text", "label": "About you", "max_length": 200 },
            { "name": "news", "type": "checkbox", "label": "Send me the newsletter" }
        ],
        "success_message": "Thanks, we will be in touch.",
        "json_secret": JSON_SECRET,
        "json_fields": { "full_name": "name" },
    });
    if let (Some(form), Some(extra)) = (form.as_object_mut(), extra.as_object()) {
        form.extend(extra.clone());
    }
    json!({ "forms": { "forms": [form] } })
}

struct FormSite {
    geoffrey: TestGeoffrey,
    /// The clock the pages' time fields use; `None` runs on the system clock.
    clock: Option<ManualClock>,
}

impl FormSite {
    async fn start(mode: Mode, apps: Value) -> Self {
        let clock = ManualClock::starting_at(1_800_000_000_000);
        Self::start_with(mode, apps, Some(clock), |_| {}).await
    }

    async fn start_with(
        mode: Mode,
        apps: Value,
        clock: Option<ManualClock>,
        adjust: impl FnOnce(&mut geoffrey::config::Settings),
    ) -> Self {
        let geoffrey = TestGeoffrey::start_with(mode, adjust, clock.clone(), Roles::ALL).await;
        geoffrey.create_instance("forum", apps).await;
        Self { geoffrey, clock }
    }

    /// Moves the manual clock past the minimum fill time.
    fn wait_to_fill(&self) {
        let clock = self
            .clock
            .as_ref()
            .expect("page tests run on the manual clock");
        clock.advance(Duration::from_secs(5));
    }

    /// Points the instance at the fake Discourse, with the key it accepts.
    async fn connect(&self, discourse: &FakeDiscourse) {
        self.geoffrey
            .edit_config("forum", |document| {
                document["discourse_url"] = json!(discourse.url);
                document["discourse_api_key"] = json!(testkit::discourse::API_KEY);
            })
            .await;
    }

    fn url(&self) -> String {
        format!("{}/forms/forum/apply", self.geoffrey.base_url)
    }

    /// Loads the page and returns its status, HTML and hidden time field.
    async fn open(&self) -> (u16, String, String) {
        let response = self.geoffrey.http.get(self.url()).send().await.unwrap();
        let status = response.status().as_u16();
        let html = response.text().await.unwrap();
        let started = html
            .split(r#"name="started" value=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_string();
        (status, html, started)
    }

    /// Posts the page's fields and returns the status and HTML.
    async fn post(&self, fields: &[(&str, &str)]) -> (u16, String) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = self
            .geoffrey
            .http
            .post(self.url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Opens the page, waits the minimum fill time and sends `fields`.
    async fn fill(&self, fields: &[(&str, &str)]) -> (u16, String) {
        let (_, _, started) = self.open().await;
        self.wait_to_fill();
        let mut all = vec![("started", started.as_str()), ("website", "")];
        all.extend_from_slice(fields);
        self.post(&all).await
    }

    async fn post_json(&self, token: &str, body: &Value) -> (u16, Value) {
        let response = self
            .geoffrey
            .http
            .post(self.url())
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn queued(&self) -> u64 {
        let stats = self
            .geoffrey
            .services
            .queue
            .stats(Some("forum"))
            .await
            .unwrap();
        stats.ready + stats.delayed + stats.leased
    }
}

/// Waits until each of `features` has log entries of `jobs` different jobs, and returns every
/// entry. A job may log twice when a busy machine lets its lease expire, so entries are not
/// counted directly.
async fn wait_for_features(site: &FormSite, features: &[&str], jobs: usize) -> Vec<LogEntry> {
    let what = format!("{features:?} for {jobs} job(s)");
    testkit::eventually(Duration::from_secs(20), &what, || async {
        let logs = site.geoffrey.logs("forum").await;
        let done = features.iter().all(|feature| {
            let ids: std::collections::HashSet<&str> = logs
                .iter()
                .filter(|e| e.feature == *feature)
                .map(|e| e.job_id.as_str())
                .collect();
            ids.len() >= jobs
        });
        done.then_some(logs)
    })
    .await
}

const ADA: [(&str, &str); 3] = [
    ("name", "Ada Quill"),
    ("email", "ada@example.com"),
    ("news", "on"),
];

async fn page_submission_is_recorded(mode: Mode) {
    let site = FormSite::start(mode, apply_form(json!({}))).await;
    let (status, html, started) = site.open().await;
    assert_eq!(status, 200);
    assert!(html.contains("<h1>Apply to join</h1>"), "{html}");
    assert!(html.contains(r#"<label for="f-email">Email"#), "{html}");
    assert!(!started.is_empty());

    let (status, html) = site.fill(&ADA).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Thanks, we will be in touch."), "{html}");

    let logs = site.geoffrey.wait_for_logs("forum", 1).await;
    assert_eq!(
        (logs[0].feature.as_str(), logs[0].outcome),
        ("record", Outcome::Succeeded)
    );
    let response = logs[0].response.clone().unwrap_or_default();
    let id = response.trim_start_matches("stored as ");
    let stored = site
        .geoffrey
        .services
        .store
        .get("forum", id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.body["fields"]["name"], "Ada Quill");
    assert_eq!(stored.body["fields"]["news"], true);
    assert_eq!(stored.body["source"], "page");
}

async fn invalid_fields_keep_the_input(mode: Mode) {
    let site = FormSite::start(mode, apply_form(json!({}))).await;
    let (status, html) = site
        .fill(&[
            ("name", "Ada <b>Quill</b>"),
            ("email", "ada@example"),
            ("about", &"x".repeat(201)),
        ])
        .await;
    assert_eq!(status, 422);
    assert!(html.contains("Please enter an email address"), "{html}");
    assert!(
        html.contains("Please enter at most 200 characters"),
        "{html}"
    );
    assert!(
        html.contains("Ada &lt;b&gt;Quill&lt;&#x2f;b&gt;"),
        "the input is kept, escaped"
    );
    assert!(html.contains(r#"value="ada@example""#), "{html}");
    assert_eq!(site.queued().await, 0);
}

async fn honeypot_submission_is_not_stored(mode: Mode) {
    let site = FormSite::start(mode, apply_form(json!({}))).await;
    let (_, _, started) = site.open().await;
    site.wait_to_fill();
    let mut fields = vec![
        ("started", started.as_str()),
        ("website", "https://spam.example"),
    ];
    fields.extend_from_slice(&ADA);
    let (status, html) = site.post(&fields).await;
    assert_eq!(status, 200, "a robot sees the usual thanks");
    assert!(html.contains("Thanks, we will be in touch."));
    assert_eq!(site.queued().await, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(site.geoffrey.logs("forum").await.is_empty());
    let metrics = site
        .geoffrey
        .http
        .get(format!("{}/metrics", site.geoffrey.base_url))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(r#"geoffrey_form_submissions_total{outcome="spam"} 1"#),
        "{text}"
    );
}

async fn quick_or_forged_submission_is_shown_again(mode: Mode) {
    let site = FormSite::start(mode, apply_form(json!({}))).await;
    let (_, _, started) = site.open().await;
    let mut fields = vec![("started", started.as_str())];
    fields.extend_from_slice(&ADA);
    let (status, html) = site.post(&fields).await;
    assert_eq!(status, 200);
    assert!(html.contains("That was very quick"), "{html}");
    assert!(html.contains(r#"value="Ada Quill""#), "the input is kept");

    let forged = format!("{}.{}", 1_700_000_000_000_i64, "0".repeat(64));
    let mut fields = vec![("started", forged.as_str())];
    fields.extend_from_slice(&ADA);
    let (_, html) = site.post(&fields).await;
    assert!(
        html.contains("This page was changed or has expired"),
        "{html}"
    );
    assert_eq!(site.queued().await, 0);
}

async fn submissions_per_address_are_limited(mode: Mode) {
    let site = FormSite::start(
        mode,
        apply_form(json!({ "submissions_per_hour_per_address": 2 })),
    )
    .await;
    let mut statuses = Vec::new();
    for name in ["Ada", "Grace", "Alan"] {
        let fields = [("name", name), ("email", "x@example.com")];
        statuses.push(site.fill(&fields).await.0);
    }
    assert_eq!(statuses, [200, 200, 429]);
}

async fn double_submission_is_queued_once(mode: Mode) {
    let site = FormSite::start(mode, apply_form(json!({}))).await;
    let (_, _, started) = site.open().await;
    site.wait_to_fill();
    let mut fields = vec![("started", started.as_str())];
    fields.extend_from_slice(&ADA);
    assert_eq!(site.post(&fields).await.0, 200);
    assert_eq!(site.post(&fields).await.0, 200);
    site.geoffrey.wait_for_logs("forum", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(site.geoffrey.logs("forum").await.len(), 1);
}

async fn json_submission_needs_the_secret(mode: Mode) {
    let site = FormSite::start(mode, apply_form(json!({}))).await;
    let body = json!({ "full_name": "Ada Quill", "email": "ada@example.com" });
    let (status, reply) = site.post_json("wrong-secret-value", &body).await;
    assert_eq!(status, 401, "{reply}");
    // The scheme is case-insensitive.
    let response = site
        .geoffrey
        .http
        .post(site.url())
        .header("authorization", format!("bearer {JSON_SECRET}"))
        .json(&json!({ "full_name": "Grace", "email": "grace@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!reply.to_string().contains(JSON_SECRET));

    let (status, reply) = site
        .post_json(JSON_SECRET, &json!({ "email": "nope" }))
        .await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["fields"]["name"], "Please fill in this field.");

    let (status, reply) = site.post_json(JSON_SECRET, &body).await;
    assert_eq!(
        (status, reply["status"].as_str()),
        (200, Some("accepted")),
        "{reply}"
    );
    let logs = site.geoffrey.wait_for_logs("forum", 1).await;
    assert_eq!(logs[0].outcome, Outcome::Succeeded);
}

async fn unknown_form_and_large_body_are_rejected(mode: Mode) {
    let site = FormSite::start(mode, apply_form(json!({}))).await;
    let missing = format!("{}/forms/forum/nosuchform", site.geoffrey.base_url);
    let response = site.geoffrey.http.get(missing).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("There is no form at this address")
    );

    let large = "x".repeat(geoffrey::api::forms::MAX_BODY_BYTES + 1);
    let (status, html) = site.post(&[("about", large.as_str())]).await;
    assert_eq!(status, 413);
    assert!(html.contains("Your answers are too long"), "{html}");

    // 7,500 characters of a non-Latin script, under the default field limit, fit the body
    // limit and reach the field's own check.
    let (_, _, started) = site.open().await;
    site.wait_to_fill();
    let long = "漢".repeat(7_500);
    let mut fields = vec![("started", started.as_str()), ("about", long.as_str())];
    fields.extend_from_slice(&ADA[..2]);
    let (status, html) = site.post(&fields).await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("at most 200 characters"), "{html}");
}

async fn success_can_redirect(mode: Mode) {
    let apps = apply_form(json!({ "redirect_url": "https://club.example.org/thanks" }));
    let site = FormSite::start(mode, apps).await;
    let (_, _, started) = site.open().await;
    site.wait_to_fill();
    let mut fields = vec![("started", started.as_str())];
    fields.extend_from_slice(&ADA);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&fields)
        .finish();
    // Not followed: the test sends nothing beyond 127.0.0.1.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(site.url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "https://club.example.org/thanks"
    );
    site.geoffrey.wait_for_logs("forum", 1).await;
}

/// Returns the apply form with a topic, a message to the volunteers and an invitation.
fn with_discourse_actions() -> Value {
    apply_form(json!({ "actions": {
        "topic": {
            "category_id": 4,
            "title": "Application from {{ name }}",
            "body": "{{ name }} wrote:\n\n{{ about }}"
        },
        "private_message": {
            "groups": ["volunteers"],
            "title": "New application",
            "body": "{{ name }} ({{ email }}) applied."
        },
        "invite": { "email_field": "email", "message": "Welcome, {{ name }}!" }
    }}))
}

async fn actions_reach_discourse(mode: Mode) {
    let discourse = FakeDiscourse::start(Vec::new(), testkit::discourse::API_KEY).await;
    let site = FormSite::start(mode, with_discourse_actions()).await;
    site.connect(&discourse).await;
    let about = "Hi @admin and #staff, see [this](https://evil.example) <img src=x>";
    let (status, html) = site
        .fill(&[
            ("name", "Ada Quill"),
            ("email", "ada@example.com"),
            ("about", about),
        ])
        .await;
    assert_eq!(status, 200, "{html}");

    let all = ["create_topic", "invite", "private_message", "record"];
    let logs = wait_for_features(&site, &all, 1).await;
    let mut features: Vec<(&str, Outcome)> = logs
        .iter()
        .map(|e| (e.feature.as_str(), e.outcome))
        .collect();
    features.sort_by_key(|(feature, _)| *feature);
    features.dedup();
    assert_eq!(
        features,
        [
            ("create_topic", Outcome::Succeeded),
            ("invite", Outcome::Succeeded),
            ("private_message", Outcome::Succeeded),
            ("record", Outcome::Succeeded),
        ],
        "{logs:?}"
    );

    let topics = discourse.topics();
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].title, "Application from Ada Quill");
    assert_eq!(topics[0].category_id, Some(4));
    let raw = &topics[0].raw;
    assert!(raw.starts_with("Ada Quill wrote:\n\n"), "{raw}");
    for injected in ["@admin", "#staff", "[this](", " <img"] {
        assert!(
            !raw.contains(injected),
            "{injected} reached the post: {raw}"
        );
    }
    let messages = discourse.private_messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].group_names, ["volunteers"]);
    let invites = discourse.invites();
    assert_eq!(invites.len(), 1);
    assert_eq!(invites[0].email, "ada@example.com");
    assert_eq!(
        invites[0].custom_message.as_deref(),
        Some("Welcome, Ada Quill!")
    );
}

async fn rejected_topic_fails_alone(mode: Mode) {
    let discourse = FakeDiscourse::start(Vec::new(), testkit::discourse::API_KEY).await;
    let mut apps = with_discourse_actions();
    // Discourse wants titles of 15 characters or more.
    apps["forms"]["forms"][0]["actions"]["topic"]["title"] = json!("{{ name }}");
    let site = FormSite::start(mode, apps).await;
    site.connect(&discourse).await;
    assert_eq!(site.fill(&ADA).await.0, 200);

    let all = ["create_topic", "invite", "private_message", "record"];
    let logs = wait_for_features(&site, &all, 1).await;
    let topic = logs.iter().find(|e| e.feature == "create_topic").unwrap();
    assert_eq!(topic.outcome, Outcome::FailedPermanently);
    let error = topic.error.clone().unwrap_or_default();
    assert!(error.contains("Title"), "{error}");
    let others = logs.iter().filter(|e| e.feature != "create_topic");
    assert!(
        others.into_iter().all(|e| e.outcome == Outcome::Succeeded),
        "{logs:?}"
    );
    assert_eq!(discourse.private_messages().len(), 1);
}

async fn burst_respects_the_discourse_rate_limit(mode: Mode) {
    let discourse = FakeDiscourse::start(Vec::new(), testkit::discourse::API_KEY).await;
    discourse.limit_requests(3, Duration::from_secs(1));
    let apps = apply_form(json!({ "actions": { "topic": {
        "category_id": 4, "title": "Application from {{ name }}", "body": "{{ name }} would like to join."
    }}}));
    // The system clock, so that retries become due as the rate limit's wait passes.
    let site = FormSite::start_with(mode, apps, None, |settings| {
        settings.worker.max_attempts = 20;
        settings.worker.concurrency = 4;
    })
    .await;
    site.connect(&discourse).await;
    let names: Vec<String> = (1..=8).map(|n| format!("Applicant number {n}")).collect();
    for name in &names {
        let body = json!({ "full_name": name, "email": "x@example.com" });
        let (status, reply) = site.post_json(JSON_SECRET, &body).await;
        assert_eq!(status, 200, "{reply}");
    }

    let topics = testkit::eventually(Duration::from_secs(30), "8 topics", || async {
        let topics = discourse.topics();
        (topics.len() >= 8).then_some(topics)
    })
    .await;
    let mut titles: Vec<String> = topics.iter().map(|t| t.title.clone()).collect();
    titles.sort();
    let mut expected: Vec<String> = names
        .iter()
        .map(|n| format!("Application from {n}"))
        .collect();
    expected.sort();
    assert_eq!(titles, expected, "each applicant's topic exactly once");
    let logs = site.geoffrey.logs("forum").await;
    let limited = logs
        .iter()
        .filter(|e| e.outcome == Outcome::Retrying)
        .filter(|e| {
            e.error
                .as_deref()
                .unwrap_or_default()
                .contains("rate-limited")
        });
    assert!(
        limited.count() > 0,
        "the limit was reached and waited for: {logs:?}"
    );
}

async fn mailchimp_needs_the_consent_box(mode: Mode) {
    use fake_mailchimp::{FakeConfig, FakeMailchimp};
    let mailchimp = FakeMailchimp::start(FakeConfig::default()).await;
    for address in ["ada@example.com", "grace@example.com"] {
        mailchimp.allow_address(address);
    }
    let mut apps = apply_form(json!({ "actions": { "mailchimp": {
        "email_field": "email", "consent_field": "news", "merge_fields": { "FNAME": "name" }
    }}}));
    apps["mailchimp"] = json!({
        "api_key": mailchimp.api_key(), "base_url": mailchimp.base_url(), "list_id": "aud1",
        "consent": { "mode": "everyone" },
    });
    let site = FormSite::start(mode, apps).await;
    let (status, _) = site
        .fill(&[("name", "Grace"), ("email", "grace@example.com")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(site.fill(&ADA).await.0, 200);

    let logs = wait_for_features(&site, &["record", "subscribe"], 2).await;
    assert!(
        logs.iter().all(|e| e.outcome == Outcome::Succeeded),
        "{logs:?}"
    );
    assert!(
        mailchimp.member("aud1", "grace@example.com").is_none(),
        "no consent, no member"
    );
    let member = mailchimp
        .member("aud1", "ada@example.com")
        .unwrap_or_else(|| panic!("not subscribed: {logs:?}"));
    assert_eq!(member.status, "subscribed");
    assert_eq!(member.merge_fields["FNAME"], "Ada Quill");
}

/// The form as a person uses it, in a real headless Chromium: the page, the messages next to
/// the fields, the thanks, and the topic in the fake Discourse.
#[tokio::test]
async fn form_is_filled_in_chromium() {
    use testkit::browser::Browser;
    let discourse = FakeDiscourse::start(Vec::new(), testkit::discourse::API_KEY).await;
    let mut apps = with_discourse_actions();
    apps["forms"]["forms"][0]["min_fill_seconds"] = json!(1);
    let site = FormSite::start_with(Mode::Embedded, apps, None, |_| {}).await;
    site.connect(&discourse).await;

    let browser = Browser::start().await;
    browser.open(&site.url()).await;
    browser
        .wait_for_text("Apply to join", Duration::from_secs(10))
        .await;
    // The form checks nothing in the browser, so the server's messages show.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    browser.click_button("Send").await;
    browser
        .wait_for_text(
            "Please correct the fields marked below.",
            Duration::from_secs(10),
        )
        .await;
    let page = browser.page_text().await;
    assert!(page.contains("Please fill in this field."), "{page}");
    // Kept under target/tmp for the pictures in the docs.
    let screenshots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    browser
        .screenshot(screenshots.join("form-errors.png"))
        .await;

    browser.fill("name", "Ada Quill").await;
    browser.fill("email", "ada@example.com").await;
    browser
        .fill("about", "I run the robotics club @ school.")
        .await;
    browser.check("news").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    browser.click_button("Send").await;
    browser
        .wait_for_text("Thanks, we will be in touch.", Duration::from_secs(10))
        .await;
    browser.screenshot(screenshots.join("form-sent.png")).await;

    let topics = testkit::eventually(Duration::from_secs(10), "the topic", || async {
        let topics = discourse.topics();
        (!topics.is_empty()).then_some(topics)
    })
    .await;
    assert_eq!(topics[0].title, "Application from Ada Quill");
    let all = ["create_topic", "invite", "private_message", "record"];
    let logs = wait_for_features(&site, &all, 1).await;
    assert!(
        logs.iter().all(|e| e.outcome == Outcome::Succeeded),
        "{logs:?}"
    );
    let stored = logs.iter().find(|e| e.feature == "record").unwrap();
    let id = stored.response.as_deref().unwrap_or_default();
    let document = site
        .geoffrey
        .services
        .store
        .get("forum", id.trim_start_matches("stored as "))
        .await
        .unwrap()
        .expect("the stored submission");
    assert_eq!(document.body["fields"]["news"], true);
}

testkit::in_both_modes!(
    page_submission_is_recorded,
    invalid_fields_keep_the_input,
    honeypot_submission_is_not_stored,
    quick_or_forged_submission_is_shown_again,
    submissions_per_address_are_limited,
    double_submission_is_queued_once,
    json_submission_needs_the_secret,
    unknown_form_and_large_body_are_rejected,
    success_can_redirect,
    actions_reach_discourse,
    rejected_topic_fails_alone,
    burst_respects_the_discourse_rate_limit,
    mailchimp_needs_the_consent_box,
);
