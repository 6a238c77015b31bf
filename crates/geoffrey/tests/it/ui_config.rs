//! The configuration page of an instance and its JSON API, over HTTP: the generated forms,
//! inline errors, revision conflicts, connection tests, the webhook secret's rotation, the
//! audit trail, access by CouchDB members, and that no response contains a stored secret.

use fake_mailchimp::{FakeConfig, FakeMailchimp};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use testkit::fixtures::{self, Delivery, FIXTURE_SECRET};
use testkit::geoffrey::{Mode, TestGeoffrey, relay_rule};
use testkit::in_both_modes;
use testkit::ui::{Page, UiClient};

in_both_modes!(
    page_shows_settings_without_secrets,
    form_save_keeps_secrets_and_is_audited,
    invalid_fields_are_shown_inline,
    stale_revision_is_a_conflict,
    json_view_saves_with_the_same_checks,
    mailchimp_connection_test,
    rotated_secret_is_shown_once,
    apps_are_added_and_removed,
);

/// A relay URL carries its token, so it is a secret.
const RELAY_URL: &str = "https://hooks.example.com/services/relay-token-1234";
const DISCOURSE_KEY: &str = "discourse-api-key-5678";

struct Fixture {
    geoffrey: TestGeoffrey,
    fake: FakeMailchimp,
    admin: UiClient,
}

impl Fixture {
    /// Starts Geoffrey and a fake Mailchimp, with the instance `forum` using relay and
    /// Mailchimp, and a Discourse API key.
    async fn start(mode: Mode) -> Self {
        let fake = FakeMailchimp::start(FakeConfig::default()).await;
        let geoffrey = TestGeoffrey::start(mode).await;
        let rule = relay_rule(
            "topics",
            RELAY_URL,
            &["topic_created"],
            "New {{topic.title}}",
        );
        geoffrey
            .create_instance(
                "forum",
                json!({
                    "relay": { "rules": [rule] },
                    "mailchimp": {
                        "api_key": fake.api_key(), "base_url": fake.base_url(), "list_id": "aud1",
                        "consent": { "mode": "everyone" },
                        "merge_fields": { "FNAME": "first_name", "LNAME": "last_name" },
                    },
                }),
            )
            .await;
        geoffrey
            .edit_config("forum", |document| {
                document["discourse_api_key"] = json!(DISCOURSE_KEY);
            })
            .await;
        let admin = geoffrey.admin_client().await;
        Self {
            geoffrey,
            fake,
            admin,
        }
    }

    fn secrets(&self) -> Vec<String> {
        vec![
            FIXTURE_SECRET.to_string(),
            RELAY_URL.to_string(),
            "relay-token-1234".to_string(),
            self.fake.api_key(),
            DISCOURSE_KEY.to_string(),
        ]
    }

    /// Fails when a response contains a stored secret, as sent or as the browser decodes it.
    fn assert_no_secrets(&self, page: &Page, what: &str) {
        for secret in self.secrets() {
            assert!(
                !page.body.contains(&secret) && !page.text().contains(&secret),
                "{what} contains the secret {secret:?}"
            );
        }
    }

    /// Returns the stored `CONFIG` with its secrets opened, and its revision.
    async fn stored(&self) -> (Value, String) {
        let services = &self.geoffrey.services;
        let stored = geoffrey::instance::load(
            services.store.as_ref(),
            &services.apps,
            &services.keyring,
            "forum",
        )
        .await
        .unwrap();
        (serde_json::to_value(&stored.config).unwrap(), stored.rev)
    }

    fn admin_name(&self) -> &'static str {
        match self.geoffrey.mode() {
            Mode::Embedded => "admin",
            Mode::Distributed => testkit::servers::COUCH_ADMIN,
        }
    }

    /// Reads the page form as a browser would submit it.
    async fn page_form(&self) -> FormFields {
        let page = self.admin.get("/ui/instances/forum/config").await;
        assert_eq!(page.status, 200, "{}", page.body);
        FormFields::of(&page.body, "config-form")
    }
}

/// The fields a browser submits for one form of a page, in document order.
#[derive(Debug, Clone)]
struct FormFields(Vec<(String, String)>);

impl FormFields {
    /// Collects the successful controls of the form with `id`: named inputs (checkboxes only
    /// when checked), textareas, and the selected option of each select.
    fn of(html: &str, id: &str) -> Self {
        let start = html
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no form {id}: {html}"));
        let end = start + html[start..].find("</form>").unwrap();
        let form = &html[start..end];
        let mut fields = Vec::new();
        let mut rest = form;
        while let Some(open) = rest.find('<') {
            rest = &rest[open + 1..];
            let tag: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            let close = rest.find('>').unwrap();
            let attributes = attributes(&rest[tag.len()..close]);
            let attribute = |name: &str| {
                attributes
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
            };
            let Some(name) = attribute("name") else {
                continue;
            };
            match tag.as_str() {
                "input" => {
                    let kind = attribute("type").unwrap_or_default();
                    if kind == "checkbox" && attribute("checked").is_none() {
                        continue;
                    }
                    fields.push((name, attribute("value").unwrap_or_default()));
                }
                "textarea" => {
                    let body = &rest[close + 1..];
                    let text = &body[..body.find("</textarea>").unwrap()];
                    fields.push((name, decode(text)));
                }
                "select" => {
                    let body = &rest[close + 1..];
                    let options = &body[..body.find("</select>").unwrap()];
                    let selected = options
                        .split("<option")
                        .skip(1)
                        .find(|option| option.starts_with(" selected"))
                        .map(|option| {
                            let text = &option[option.find('>').unwrap() + 1..];
                            decode(&text[..text.find("</option>").unwrap()])
                        });
                    fields.push((name, selected.unwrap_or_default()));
                }
                _ => {}
            }
        }
        fields.retain(|(name, _)| name != "csrf");
        Self(fields)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn set(&mut self, name: &str, value: &str) {
        match self.0.iter_mut().find(|(key, _)| key == name) {
            Some(field) => field.1 = value.to_string(),
            None => self.0.push((name.to_string(), value.to_string())),
        }
    }

    fn pairs(&self) -> Vec<(&str, &str)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect()
    }
}

/// Parses `name="value"` and bare attributes of one tag.
fn attributes(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_string();
        rest = &rest[name_end..];
        if let Some(quoted) = rest.strip_prefix("=\"") {
            let value_end = quoted.find('"').unwrap();
            found.push((name, decode(&quoted[..value_end])));
            rest = &quoted[value_end + 1..];
        } else {
            found.push((name, String::new()));
        }
        rest = rest.trim_start();
    }
    found
}

fn decode(text: &str) -> String {
    Page {
        status: 200,
        location: None,
        body: text.to_string(),
    }
    .text()
}

/// Returns a delivery of `topic_created` for topic `topic_id`, signed with `secret`. Each topic
/// id makes another event, which the intake does not take for a duplicate.
fn delivery_signed_with(secret: &str, topic_id: u32) -> Delivery {
    let mut delivery = fixtures::signed("topic_created");
    let mut body: Value = serde_json::from_slice(&delivery.body).unwrap();
    body["topic"]["id"] = json!(topic_id);
    delivery.body = serde_json::to_vec(&body).unwrap();
    delivery.set_header("X-Discourse-Event-Id", &topic_id.to_string());
    let signature = geoffrey::api::signature::sign(secret.as_bytes(), &delivery.body);
    delivery.set_header("X-Discourse-Event-Signature", &signature);
    delivery
}

async fn audit_entries(client: &UiClient) -> Vec<Value> {
    let page = client.get("/api/v1/instances/forum/audit").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.json()["entries"].as_array().unwrap().clone()
}

async fn page_shows_settings_without_secrets(mode: Mode) {
    let fixture = Fixture::start(mode).await;
    let page = fixture.admin.get("/ui/instances/forum/config").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let text = page.text();
    let hook = format!(
        "{}/hooks/discourse/forum",
        fixture.geoffrey.services.settings.public_url()
    );
    assert!(text.contains(&hook), "the payload URL is shown");
    assert!(text.contains("application/json"));
    for event in ["topic_created", "user_confirmed_email", "user_destroyed"] {
        assert!(
            text.contains(&format!("<code>{event}</code>")),
            "{event} is listed"
        );
    }
    assert!(text.contains("Generate a new secret"));
    assert!(
        text.contains("aria-current=\"page\">Configuration"),
        "the tab is marked"
    );

    let form = FormFields::of(&page.body, "config-form");
    assert_eq!(form.get("discourse_url"), Some("https://forum.example.com"));
    assert_eq!(form.get("discourse_api_key"), Some("********"));
    assert_eq!(form.get("apps.relay.rules[0].name"), Some("topics"));
    assert_eq!(form.get("apps.relay.rules[0].url"), Some("********"));
    assert_eq!(
        form.get("apps.relay.rules[0].events"),
        Some("topic_created")
    );
    assert_eq!(form.get("apps.mailchimp.api_key"), Some("********"));
    assert_eq!(form.get("apps.mailchimp.consent.mode"), Some("everyone"));
    assert_eq!(
        form.get("apps.mailchimp.merge_fields"),
        Some("FNAME = first_name\nLNAME = last_name")
    );
    assert!(form.get("section:apps.mailchimp").is_some());
    assert!(
        form.get("section:apps.forms").is_none(),
        "forms is not configured"
    );
    assert!(text.contains("Add the forms app"));
    assert!(
        text.contains("Test the connection"),
        "mailchimp has a check"
    );
    fixture.assert_no_secrets(&page, "the page");

    let api = fixture.admin.get("/api/v1/instances/forum/config").await;
    assert_eq!(api.status, 200, "{}", api.body);
    let body = api.json();
    let (_, rev) = fixture.stored().await;
    assert_eq!(body["rev"], rev);
    assert_eq!(body["unreadable"], json!([]));
    assert_eq!(body["config"]["webhook_secret"], "********");
    assert_eq!(
        body["config"]["apps"]["relay"]["rules"][0]["url"],
        "********"
    );
    fixture.assert_no_secrets(&api, "GET …/config");

    let missing = fixture.admin.get("/ui/instances/ghost/config").await;
    assert_eq!(missing.status, 404);
    let missing = fixture.admin.get("/api/v1/instances/ghost/config").await;
    assert_eq!(missing.status, 404);
}

async fn form_save_keeps_secrets_and_is_audited(mode: Mode) {
    let fixture = Fixture::start(mode).await;
    let (before, _) = fixture.stored().await;
    let mut form = fixture.page_form().await;
    form.set("apps.mailchimp.list_id", "aud2");
    form.set("discourse_api_username", "bot");
    form.set("apps.relay.rules[0].events", "topic_created\npost_created");

    let saved = fixture
        .admin
        .post_form("/ui/instances/forum/config", &form.pairs())
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(
        saved.location.as_deref(),
        Some("/ui/instances/forum/config?saved=1")
    );
    let (after, _) = fixture.stored().await;
    assert_eq!(after["apps"]["mailchimp"]["list_id"], "aud2");
    assert_eq!(after["discourse_api_username"], "bot");
    assert_eq!(
        after["apps"]["relay"]["rules"][0]["events"],
        json!(["topic_created", "post_created"])
    );
    for secret in [
        "/webhook_secret",
        "/discourse_api_key",
        "/apps/mailchimp/api_key",
        "/apps/relay/rules/0/url",
    ] {
        assert_eq!(
            after.pointer(secret),
            before.pointer(secret),
            "{secret} kept"
        );
    }
    assert_eq!(after["accept_unsigned"], false);
    assert_eq!(
        after["apps"]["mailchimp"]["consent"],
        before["apps"]["mailchimp"]["consent"]
    );

    let entries = audit_entries(&fixture.admin).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["actor"]["user"], fixture.admin_name());
    assert_eq!(entry["actor"]["source"], "ui");
    assert_eq!(entry["action"], "config_saved");
    assert!(entry["id"].as_str().unwrap().starts_with("audit:"));
    let changes: Vec<(&str, &Value, &Value)> = entry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| {
            (
                change["path"].as_str().unwrap(),
                &change["old"],
                &change["new"],
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("apps.mailchimp.list_id", &json!("aud1"), &json!("aud2")),
            (
                "apps.relay.rules[0].events",
                &json!(["topic_created"]),
                &json!(["topic_created", "post_created"])
            ),
            ("discourse_api_username", &Value::Null, &json!("bot")),
        ]
    );

    let page = fixture
        .admin
        .get("/ui/instances/forum/config?saved=1")
        .await;
    assert!(page.body.contains("Saved."));
    let text = page.text();
    assert!(
        text.contains("aud1 → aud2"),
        "the audit table lists the change"
    );
    fixture.assert_no_secrets(&page, "the page after a save");

    // A new secret typed into the form is stored, and the audit entry does not show it.
    let mut form = fixture.page_form().await;
    form.set(
        "apps.relay.rules[0].url",
        "https://hooks.example.com/services/new-token-99",
    );
    let saved = fixture
        .admin
        .post_form("/ui/instances/forum/config", &form.pairs())
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let (after, _) = fixture.stored().await;
    assert_eq!(
        after["apps"]["relay"]["rules"][0]["url"],
        "https://hooks.example.com/services/new-token-99"
    );
    let entries = audit_entries(&fixture.admin).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[0]["changes"],
        json!([{ "path": "apps.relay.rules[0].url", "secret": true }])
    );
    let audit_page = fixture.admin.get("/api/v1/instances/forum/audit").await;
    assert!(!audit_page.body.contains("new-token-99"));
    fixture.assert_no_secrets(&audit_page, "the audit entries");
}

async fn invalid_fields_are_shown_inline(mode: Mode) {
    let fixture = Fixture::start(mode).await;
    let (before, rev) = fixture.stored().await;
    let mut form = fixture.page_form().await;
    form.set("discourse_url", "not a url");
    form.set("apps.relay.rules[0].events", "");
    form.set("apps.mailchimp.max_connections", "many");

    // An input that does not parse is reported before anything else, and kept as typed.
    let rejected = fixture
        .admin
        .post_form("/ui/instances/forum/config", &form.pairs())
        .await;
    assert_eq!(rejected.status, 422, "{}", rejected.body);
    assert!(
        rejected
            .body
            .contains("id=\"f-apps-mailchimp-max_connections-error\"")
    );
    assert!(rejected.text().contains("\"many\" is not a whole number"));
    let again = FormFields::of(&rejected.body, "config-form");
    assert_eq!(again.get("apps.mailchimp.max_connections"), Some("many"));

    // A masked API key may not follow a changed forum URL: it must be typed again.
    form.set("apps.mailchimp.max_connections", "");
    let rejected = fixture
        .admin
        .post_form("/ui/instances/forum/config", &form.pairs())
        .await;
    assert_eq!(rejected.status, 422, "{}", rejected.body);
    let key_error =
        "<p class=\"field-error\" id=\"f-discourse_api_key-error\">enter the secret again";
    assert!(rejected.text().contains(key_error), "{}", rejected.body);

    // Invalid fields: each message sits next to its input, and the input is kept.
    form.set("clear:discourse_api_key", "1");
    let rejected = fixture
        .admin
        .post_form("/ui/instances/forum/config", &form.pairs())
        .await;
    assert_eq!(rejected.status, 422, "{}", rejected.body);
    let text = rejected.text();
    assert!(text.contains("Nothing was saved"));
    let url_error = "<p class=\"field-error\" id=\"f-discourse_url-error\">\"not a url\" is not an http or https URL";
    assert!(text.contains(url_error), "{text}");
    assert!(
        text.contains("id=\"f-apps-relay-rules-0--events-error\""),
        "the relay rule's error is next to its events"
    );
    assert!(
        text.contains("href=\"#f-discourse_url\""),
        "the summary links to the input"
    );
    let again = FormFields::of(&rejected.body, "config-form");
    assert_eq!(again.get("discourse_url"), Some("not a url"));
    assert_eq!(again.get("rev"), Some(rev.as_str()));
    fixture.assert_no_secrets(&rejected, "the rejected page");
    let (after, after_rev) = fixture.stored().await;
    assert_eq!(after_rev, rev, "nothing was stored");
    assert_eq!(after, before);

    // A secret typed into a rejected form is not sent back.
    form.set(
        "apps.relay.rules[0].url",
        "https://hooks.example.com/services/typed-77",
    );
    let rejected = fixture
        .admin
        .post_form("/ui/instances/forum/config", &form.pairs())
        .await;
    assert_eq!(rejected.status, 422);
    assert!(!rejected.body.contains("typed-77"));
    assert!(rejected.text().contains("Type the new value again"));

    // The JSON API names the same fields.
    let mut config = fixture
        .admin
        .get("/api/v1/instances/forum/config")
        .await
        .json()["config"]
        .clone();
    config.as_object_mut().unwrap().remove("discourse_api_key");
    config["discourse_url"] = json!("not a url");
    config["apps"]["relay"]["rules"][0]["events"] = json!([]);
    let put = fixture
        .admin
        .send_json(
            Method::PUT,
            "/api/v1/instances/forum/config",
            &json!({ "rev": rev, "config": config }),
        )
        .await;
    assert_eq!(put.status, 422, "{}", put.body);
    let paths: Vec<String> = put.json()["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["discourse_url", "apps.relay.rules[0].events"]);
    fixture.assert_no_secrets(&put, "the rejected PUT");
    assert_eq!(fixture.stored().await.1, rev);

    // A masked Mailchimp key sent to another server is rejected.
    let mut config = fixture
        .admin
        .get("/api/v1/instances/forum/config")
        .await
        .json()["config"]
        .clone();
    config["apps"]["mailchimp"]["base_url"] = json!("https://elsewhere.example.net");
    let put = fixture
        .admin
        .send_json(
            Method::PUT,
            "/api/v1/instances/forum/config",
            &json!({ "rev": rev, "config": config }),
        )
        .await;
    assert_eq!(put.status, 422, "{}", put.body);
    assert_eq!(put.json()["fields"][0]["path"], "apps.mailchimp.api_key");
    assert!(audit_entries(&fixture.admin).await.is_empty());
}

async fn stale_revision_is_a_conflict(mode: Mode) {
    let fixture = Fixture::start(mode).await;
    let mut form = fixture.page_form().await;
    let json_form = FormFields::of(
        &fixture.admin.get("/ui/instances/forum/config").await.body,
        "json",
    );
    let opened = fixture
        .admin
        .get("/api/v1/instances/forum/config")
        .await
        .json();

    // Someone else saves first.
    let mut config = opened["config"].clone();
    config["discourse_api_username"] = json!("someone-else");
    let put = fixture
        .admin
        .send_json(
            Method::PUT,
            "/api/v1/instances/forum/config",
            &json!({ "rev": opened["rev"], "config": config }),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let new_rev = put.json()["rev"].as_str().unwrap().to_string();
    assert_ne!(new_rev, opened["rev"].as_str().unwrap());
    let (stored_before, _) = fixture.stored().await;

    form.set("apps.mailchimp.list_id", "mine");
    let conflict = fixture
        .admin
        .post_form("/ui/instances/forum/config", &form.pairs())
        .await;
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    let text = conflict.text();
    assert!(text.contains("Not saved: this configuration changed since you opened it"));
    assert!(text.contains("Reload the current configuration"));
    let kept = FormFields::of(&conflict.body, "config-form");
    assert_eq!(
        kept.get("apps.mailchimp.list_id"),
        Some("mine"),
        "the input is kept"
    );
    assert_eq!(
        kept.get("rev"),
        opened["rev"].as_str(),
        "the edited revision is kept"
    );
    fixture.assert_no_secrets(&conflict, "the conflict page");

    let stale_json = fixture
        .admin
        .post_form("/ui/instances/forum/config/json", &json_form.pairs())
        .await;
    assert_eq!(stale_json.status, 409, "{}", stale_json.body);

    let stale_put = fixture
        .admin
        .send_json(
            Method::PUT,
            "/api/v1/instances/forum/config",
            &json!({ "rev": opened["rev"], "config": opened["config"] }),
        )
        .await;
    assert_eq!(stale_put.status, 409, "{}", stale_put.body);
    assert_eq!(stale_put.json()["current_rev"], new_rev.as_str());
    let (stored_after, rev_after) = fixture.stored().await;
    assert_eq!(rev_after, new_rev);
    assert_eq!(
        stored_after, stored_before,
        "the stale saves changed nothing"
    );
}

async fn json_view_saves_with_the_same_checks(mode: Mode) {
    let fixture = Fixture::start(mode).await;
    let page = fixture.admin.get("/ui/instances/forum/config").await;
    let json_form = FormFields::of(&page.body, "json");
    let shown: Value = serde_json::from_str(json_form.get("config").unwrap()).unwrap();
    assert_eq!(shown["apps"]["mailchimp"]["api_key"], "********");
    let rev = json_form.get("rev").unwrap().to_string();

    let mut edited = shown.clone();
    edited["apps"]["mailchimp"]["on_leave"] = json!("delete_permanently");
    edited["apps"]["relay"]["rules"][0]["events"] = json!([]);
    let text = serde_json::to_string_pretty(&edited).unwrap();
    let rejected = fixture
        .admin
        .post_form(
            "/ui/instances/forum/config/json",
            &[("rev", &rev), ("config", &text)],
        )
        .await;
    assert_eq!(rejected.status, 422, "{}", rejected.body);
    let page_text = rejected.text();
    assert!(
        page_text.contains("<code>apps.relay.rules[0].events</code>: "),
        "{page_text}"
    );
    let kept = FormFields::of(&rejected.body, "json");
    assert_eq!(kept.get("config"), Some(text.as_str()), "the text is kept");
    assert_eq!(fixture.stored().await.1, rev);

    let broken = fixture
        .admin
        .post_form(
            "/ui/instances/forum/config/json",
            &[("rev", &rev), ("config", "{ \"discourse_url\": ")],
        )
        .await;
    assert_eq!(broken.status, 422);
    assert!(broken.text().contains("not valid JSON"));
    // The JSON's errors sit at the end of a long page, so its top says that nothing was saved.
    assert!(
        broken.text().contains("because the JSON has errors"),
        "{}",
        broken.body
    );
    assert!(!page.text().contains("because the JSON has errors"));

    edited["apps"]["relay"]["rules"][0]["events"] = json!(["topic_created"]);
    let text = serde_json::to_string_pretty(&edited).unwrap();
    let saved = fixture
        .admin
        .post_form(
            "/ui/instances/forum/config/json",
            &[("rev", &rev), ("config", &text)],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let (after, _) = fixture.stored().await;
    assert_eq!(after["apps"]["mailchimp"]["on_leave"], "delete_permanently");
    assert_eq!(
        after["apps"]["mailchimp"]["api_key"],
        fixture.fake.api_key()
    );
    let entries = audit_entries(&fixture.admin).await;
    assert_eq!(entries[0]["changes"][0]["path"], "apps.mailchimp.on_leave");
}

async fn mailchimp_connection_test(mode: Mode) {
    let fixture = Fixture::start(mode).await;
    let admin = &fixture.admin;

    let saved = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/check/mailchimp",
            &json!(null),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let body = saved.json();
    assert_eq!(body["ok"], true, "{body}");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| check["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api_key", "audience", "merge_fields"]);
    fixture.assert_no_secrets(&saved, "the check");

    // A submitted section with a wrong key fails, and the key is not echoed.
    let wrong_key = "ffffffffffffffffffffffffffffffff-us6";
    let section =
        json!({ "api_key": wrong_key, "base_url": fixture.fake.base_url(), "list_id": "aud1" });
    let wrong = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/check/mailchimp",
            &json!({ "section": section }),
        )
        .await;
    assert_eq!(wrong.status, 200, "{}", wrong.body);
    let body = wrong.json();
    assert_eq!(body["ok"], false);
    assert_eq!(body["checks"][0]["ok"], false);
    assert!(
        body["checks"][0]["message"]
            .as_str()
            .unwrap()
            .contains("API Key Invalid"),
        "{body}"
    );
    assert!(!wrong.body.contains(wrong_key));

    // A masked key may not travel to another server, even for a test.
    let moved =
        json!({ "api_key": "********", "base_url": "http://127.0.0.1:9", "list_id": "aud1" });
    let moved = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/check/mailchimp",
            &json!({ "section": moved }),
        )
        .await;
    assert_eq!(moved.status, 422, "{}", moved.body);
    assert_eq!(moved.json()["fields"][0]["path"], "apps.mailchimp.api_key");

    // The page's button, without JavaScript: the whole page with the results and the input,
    // scrolled to the results.
    let config_page = admin.get("/ui/instances/forum/config").await;
    assert!(
        config_page
            .text()
            .contains("formaction=\"/ui/instances/forum/config/check/mailchimp#checks-mailchimp\""),
        "{}",
        config_page.body
    );
    let mut form = fixture.page_form().await;
    form.set("apps.mailchimp.list_id", "nosuchlist");
    let page = admin
        .post_form("/ui/instances/forum/config/check/mailchimp", &form.pairs())
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let text = page.text();
    assert!(text.contains("accepts the API key"), "{text}");
    assert!(text.contains("<span class=\"badge bad\">failed</span> <strong>audience</strong>"));
    let kept = FormFields::of(&page.body, "config-form");
    assert_eq!(kept.get("apps.mailchimp.list_id"), Some("nosuchlist"));
    fixture.assert_no_secrets(&page, "the check page");
    assert_eq!(
        fixture.stored().await.0["apps"]["mailchimp"]["list_id"],
        "aud1"
    );

    // With htmx: only the results.
    let partial = admin
        .http
        .post(format!(
            "{}/ui/instances/forum/config/check/mailchimp",
            admin.base_url
        ))
        .header("Cookie", &admin.cookie)
        .header("X-CSRF-Token", &admin.csrf)
        .header("HX-Request", "true")
        .form(&fixture.page_form().await.pairs())
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), 200);
    let html = partial.text().await.unwrap();
    assert!(!html.contains("<html"), "{html}");
    assert!(
        html.contains("<span class=\"badge good\">ok</span> <strong>merge_fields</strong>"),
        "{html}"
    );

    let relay = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/check/relay",
            &json!(null),
        )
        .await;
    assert_eq!(relay.status, 200);
    assert_eq!(relay.json()["checks"], json!([]));
    let unknown = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/check/nosuchapp",
            &json!(null),
        )
        .await;
    assert_eq!(unknown.status, 404);
}

async fn rotated_secret_is_shown_once(mode: Mode) {
    let fixture = Fixture::start(mode).await;
    let geoffrey = &fixture.geoffrey;
    let (status, body) = geoffrey
        .send("forum", &delivery_signed_with(FIXTURE_SECRET, 9001))
        .await;
    assert_eq!(status, 200, "{body}");

    let unconfirmed = fixture
        .admin
        .post_form("/ui/instances/forum/config/webhook-secret", &[])
        .await;
    assert_eq!(unconfirmed.status, 400);
    assert_eq!(fixture.stored().await.0["webhook_secret"], FIXTURE_SECRET);

    let page = fixture
        .admin
        .post_form(
            "/ui/instances/forum/config/webhook-secret",
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let marker = "<code id=\"webhook-secret\">";
    let start = page.body.find(marker).unwrap() + marker.len();
    let secret = page.body[start..start + page.body[start..].find("</code>").unwrap()].to_string();
    assert_eq!(secret.len(), 64, "{secret}");
    assert!(page.text().contains("The old secret no longer works"));
    let (stored, _) = fixture.stored().await;
    assert_eq!(stored["webhook_secret"], secret.as_str());

    // The server's configuration cache drops the old secret when the store reports the save.
    let attempts = std::sync::atomic::AtomicU32::new(2);
    testkit::eventually(
        Duration::from_secs(5),
        "the old secret to be rejected",
        || async {
            let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let delivery = delivery_signed_with(FIXTURE_SECRET, 9100 + attempt);
            let (status, _) = geoffrey.send("forum", &delivery).await;
            (status == 401).then_some(())
        },
    )
    .await;
    let (status, body) = geoffrey
        .send("forum", &delivery_signed_with(&secret, 9002))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");

    for path in [
        "/ui/instances/forum/config",
        "/api/v1/instances/forum/config",
    ] {
        let later = fixture.admin.get(path).await;
        assert!(
            !later.body.contains(&secret),
            "{path} shows the secret again"
        );
    }
    let entries = audit_entries(&fixture.admin).await;
    assert_eq!(entries[0]["action"], "webhook_secret_rotated");
    assert_eq!(
        entries[0]["changes"],
        json!([{ "path": "webhook_secret", "secret": true }])
    );
    let audit = fixture.admin.get("/api/v1/instances/forum/audit").await;
    assert!(!audit.body.contains(&secret));

    let api = fixture
        .admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/webhook-secret",
            &json!({}),
        )
        .await;
    assert_eq!(api.status, 200, "{}", api.body);
    let rotated = api.json()["webhook_secret"].as_str().unwrap().to_string();
    assert_ne!(rotated, secret);
    assert_eq!(fixture.stored().await.0["webhook_secret"], rotated.as_str());
    assert_eq!(
        audit_entries(&fixture.admin).await[0]["actor"]["source"],
        "api"
    );
}

async fn apps_are_added_and_removed(mode: Mode) {
    let geoffrey = TestGeoffrey::start(mode).await;
    geoffrey.create_instance("forum", json!({})).await;
    let admin = geoffrey.admin_client().await;
    let page = admin.get("/ui/instances/forum/config").await;
    for app in ["relay", "mailchimp", "forms"] {
        assert!(page.body.contains(&format!("Add the {app} app")), "{app}");
    }
    assert!(page.text().contains("No app subscribes to events yet"));

    let mut form = FormFields::of(&page.body, "config-form");
    form.set(
        "apps.mailchimp.api_key",
        "0123456789abcdef0123456789abcdef-us6",
    );
    form.set("apps.mailchimp.list_id", "aud9");
    form.set("apps.relay.rules[0].name", "topics");
    form.set(
        "apps.relay.rules[0].url",
        "https://hooks.example.com/services/added-1",
    );
    form.set("apps.relay.rules[0].events", "topic_created");
    form.set("apps.relay.rules[0].template", "New topic");
    let saved = admin
        .post_form("/ui/instances/forum/config", &form.pairs())
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let config = admin.get("/api/v1/instances/forum/config").await.json()["config"].clone();
    assert_eq!(
        config["apps"]["mailchimp"],
        json!({ "api_key": "********", "list_id": "aud9" })
    );
    assert_eq!(config["apps"]["relay"]["rules"][0]["name"], "topics");
    assert!(
        config["apps"].get("forms").is_none(),
        "a blank app is not added"
    );

    // A second rule through the blank item, and the first one removed.
    let page = admin.get("/ui/instances/forum/config").await;
    assert!(page.text().contains("Add to rules"));
    let mut form = FormFields::of(&page.body, "config-form");
    form.set("remove:apps.relay.rules[0]", "1");
    form.set("apps.relay.rules[1].name", "posts");
    form.set(
        "apps.relay.rules[1].url",
        "https://hooks.example.com/services/added-2",
    );
    form.set("apps.relay.rules[1].events", "post_created");
    form.set("apps.relay.rules[1].template", "New post");
    let saved = admin
        .post_form("/ui/instances/forum/config", &form.pairs())
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let config = admin.get("/api/v1/instances/forum/config").await.json()["config"].clone();
    let rules = config["apps"]["relay"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["name"], "posts");

    let mut form = FormFields::of(
        &admin.get("/ui/instances/forum/config").await.body,
        "config-form",
    );
    form.set("remove:apps.mailchimp", "1");
    let saved = admin
        .post_form("/ui/instances/forum/config", &form.pairs())
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let config = admin.get("/api/v1/instances/forum/config").await.json()["config"].clone();
    assert!(config["apps"].get("mailchimp").is_none(), "{config}");
    assert!(config["apps"].get("relay").is_some());

    let entries = audit_entries(&admin).await;
    assert_eq!(entries.len(), 3);
    let removed: Vec<&str> = entries[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        removed,
        ["apps.mailchimp.api_key", "apps.mailchimp.list_id"]
    );
    let text = admin.get("/api/v1/instances/forum/audit").await.body;
    for secret in ["0123456789abcdef0123456789abcdef-us6", "added-1", "added-2"] {
        assert!(!text.contains(secret), "the audit contains {secret}");
    }
}

#[tokio::test]
async fn couch_members_reach_their_instance_only() {
    let geoffrey = TestGeoffrey::start(Mode::Distributed).await;
    geoffrey.create_instance("alpha", json!({})).await;
    geoffrey.create_instance("beta", json!({})).await;
    let couch = geoffrey.couch.as_ref().unwrap();
    couch.create_member("ann", "ann-password", "alpha").await;
    let ann = UiClient::sign_in(&geoffrey.base_url, "ann", "ann-password")
        .await
        .expect("a CouchDB member signs in");
    let beta_before = geoffrey
        .services
        .store
        .get("beta", "CONFIG")
        .await
        .unwrap()
        .unwrap();

    for path in [
        "/ui/instances/beta/config",
        "/api/v1/instances/beta/config",
        "/api/v1/instances/beta/audit",
    ] {
        let page = ann.get(path).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
    }
    let config =
        json!({ "discourse_url": "https://evil.example.net", "webhook_secret": "********" });
    let put = ann
        .send_json(
            Method::PUT,
            "/api/v1/instances/beta/config",
            &json!({ "rev": beta_before.rev, "config": config }),
        )
        .await;
    assert_eq!(put.status, 404, "{}", put.body);
    let posts = [
        (
            "/ui/instances/beta/config",
            vec![
                ("rev", beta_before.rev.as_str()),
                ("discourse_url", "https://evil.example.net"),
            ],
        ),
        (
            "/ui/instances/beta/config/json",
            vec![("rev", beta_before.rev.as_str()), ("config", "{}")],
        ),
        ("/ui/instances/beta/config/check/mailchimp", vec![]),
        (
            "/ui/instances/beta/config/webhook-secret",
            vec![("confirm", "yes")],
        ),
    ];
    for (path, fields) in posts {
        let page = ann.post_form(path, &fields).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
    }
    for path in [
        "/api/v1/instances/beta/webhook-secret",
        "/api/v1/instances/beta/check/mailchimp",
    ] {
        let page = ann.send_json(Method::POST, path, &json!({})).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
    }
    let beta_after = geoffrey
        .services
        .store
        .get("beta", "CONFIG")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(beta_after, beta_before, "beta is unchanged");
    let beta_audit = geoffrey
        .services
        .store
        .list_documents("beta", "audit:", 10)
        .await
        .unwrap();
    assert!(beta_audit.is_empty());

    // Her own instance works, and the audit names her.
    let page = ann.get("/ui/instances/alpha/config").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let opened = ann.get("/api/v1/instances/alpha/config").await.json();
    let mut config = opened["config"].clone();
    config["discourse_api_username"] = json!("ann-bot");
    let put = ann
        .send_json(
            Method::PUT,
            "/api/v1/instances/alpha/config",
            &json!({ "rev": opened["rev"], "config": config }),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let entries = ann.get("/api/v1/instances/alpha/audit").await.json();
    assert_eq!(
        entries["entries"][0]["actor"],
        json!({ "user": "ann", "source": "api" })
    );
}

/// The page as a person uses it, in a real headless Chromium: htmx swaps the connection test's
/// results into the page without leaving it, and a save shows the page again with a notice.
#[tokio::test]
async fn config_page_in_chromium() {
    use testkit::browser::Browser;
    let fixture = Fixture::start(Mode::Embedded).await;
    let base_url = &fixture.geoffrey.base_url;
    let browser = Browser::start().await;
    browser
        .open(&format!(
            "{base_url}/ui/sign-in?next=/ui/instances/forum/config"
        ))
        .await;
    browser.fill("user", "admin").await;
    browser.fill("password", testkit::ui::ADMIN_PASSWORD).await;
    browser.click_button("Sign in").await;
    browser
        .wait_for_text("Webhook in Discourse", Duration::from_secs(10))
        .await;
    let config_url = browser.current_url().await;
    assert_eq!(config_url.path(), "/ui/instances/forum/config");

    browser.click_button("Test the connection").await;
    browser
        .wait_for_text("accepts the API key", Duration::from_secs(10))
        .await;
    assert_eq!(
        browser.current_url().await,
        config_url,
        "htmx swapped the results in without loading another page"
    );
    let results = browser.text("#checks-mailchimp").await;
    assert!(results.contains("merge_fields"), "{results}");
    let scroll = "document.getElementById('app-mailchimp').scrollIntoView({ block: 'end' })";
    browser.client().execute(scroll, Vec::new()).await.unwrap();
    let screenshots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    browser
        .screenshot(screenshots.join("config-check.png"))
        .await;

    browser.fill("apps.mailchimp.list_id", "aud7").await;
    browser.click_button("Save").await;
    browser
        .wait_for_text("Saved.", Duration::from_secs(10))
        .await;
    assert_eq!(
        fixture.stored().await.0["apps"]["mailchimp"]["list_id"],
        "aud7"
    );
    let page = browser.page_text().await;
    assert!(page.contains("aud1 → aud7"), "the change is listed: {page}");
    browser
        .screenshot(screenshots.join("config-saved.png"))
        .await;
}
