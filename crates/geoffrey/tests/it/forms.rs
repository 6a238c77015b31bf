//! The forms app through the API and the queue: the page, checks and spam rules, JSON
//! submissions, and the stored submission.

use geoffrey::clock::ManualClock;
use geoffrey::run::Roles;
use geoffrey::store::Outcome;
use serde_json::{Value, json};
use std::time::Duration;
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
    clock: ManualClock,
}

impl FormSite {
    async fn start(mode: Mode, form: Value) -> Self {
        let clock = ManualClock::starting_at(1_800_000_000_000);
        let geoffrey =
            TestGeoffrey::start_with(mode, |_| {}, Some(clock.clone()), Roles::ALL).await;
        geoffrey.create_instance("forum", form).await;
        Self { geoffrey, clock }
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
        self.clock.advance(Duration::from_secs(5));
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
    site.clock.advance(Duration::from_secs(5));
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
    site.clock.advance(Duration::from_secs(5));
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
    let (status, _) = site.post(&[("about", large.as_str())]).await;
    assert_eq!(status, 413);
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
);
