//! Attacks on the web UI and its JSON API: another instance's routes and ids, requests
//! without the session's CSRF token, markup in stored values, open redirects, secrets in
//! responses and logs, forged sessions, sign-in limits and malformed input.

use geoffrey::event::Event;
use geoffrey::queue::{Delivery, NewJob};
use geoffrey::run::Roles;
use geoffrey::store::{LogEntry, Outcome};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use testkit::fixtures::{self, FIXTURE_SECRET};
use testkit::geoffrey::{Mode, TestGeoffrey};
use testkit::in_both_modes;
use testkit::ui::{ADMIN_PASSWORD, Page, UiClient, http_client};

in_both_modes!(
    ids_of_another_instance_are_not_found,
    requests_without_the_token_change_nothing,
    stored_markup_is_escaped,
    third_party_markup_is_escaped,
    sign_in_redirects_stay_on_the_site,
    secrets_stay_out_of_responses_and_logs,
    forged_sessions_are_rejected,
    sign_in_limits_are_not_bypassed,
    malformed_input_is_a_client_error,
);

/// Markup that runs script if a page prints it unescaped, in element content, in a
/// double-quoted attribute or in a single-quoted one (such as `hx-headers`).
const MARKUP: &str =
    "<script>alert(1)</script>\"><img src=x onerror=alert(2)>' autofocus onfocus='alert(3)";

const DISCOURSE_KEY: &str = "discourse-key-attack-7f3a9c";
const RELAY_TOKEN: &str = "relay-token-attack-51c0de";
const FORM_SECRET: &str = "form-json-secret-attack-9e1d";

/// Starts Geoffrey without workers, so that jobs stay where a test puts them.
async fn start_without_workers(mode: Mode) -> TestGeoffrey {
    let roles = Roles {
        server: true,
        worker: false,
    };
    TestGeoffrey::start_with(mode, |_| {}, None, roles).await
}

fn log_entry(app: &str, job_id: &str) -> LogEntry {
    let at = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    LogEntry {
        id: geoffrey::store::log_id(at),
        at,
        job_id: job_id.to_string(),
        event_id: Some("4111".into()),
        event: "topic_created".into(),
        app: app.into(),
        feature: "post_message".into(),
        target: None,
        attempt: 1,
        outcome: Outcome::Succeeded,
        status: Some(200),
        response: Some("ok".into()),
        error: None,
        duration_ms: 10,
        continued: false,
    }
}

/// Queues one job per (app, feature) pair and dead-letters it with `reason`, as a worker
/// would after the last failed attempt. Needs a Geoffrey without workers. Returns the job
/// ids in order.
async fn make_failed_jobs(
    geoffrey: &TestGeoffrey,
    instance: &str,
    jobs: &[(&str, &str)],
    reason: &str,
) -> Vec<String> {
    let queue = &geoffrey.services.queue;
    let mut ids = Vec::new();
    for (index, (app, feature)) in jobs.iter().enumerate() {
        let event = Event {
            id: Some(format!("88{index}")),
            name: "topic_created".into(),
            kind: "topic".into(),
            body: json!({ "topic": { "id": index, "title": format!("topic {MARKUP}") } }),
            body_sha256: format!("attack-{instance}-{index}"),
        };
        let job = NewJob {
            instance: instance.into(),
            app: app.to_string(),
            feature: feature.to_string(),
            target: None,
            config_rev: "1-x".into(),
            event,
        };
        let delivery = Delivery {
            instance: instance.into(),
            event_id: None,
            content_key: format!("attack-{instance}-{index}"),
        };
        queue.admit(&delivery, vec![job]).await.unwrap();
        let lease = queue.take().await.unwrap().expect("the job just queued");
        queue.dead_letter(&lease, reason).await.unwrap();
        ids.push(lease.job.id);
    }
    ids
}

/// Every route of the UI and its API that names an instance, with the methods it takes.
const INSTANCE_ROUTES: &[(&str, &str)] = &[
    ("GET", "/ui/instances/{name}"),
    ("GET", "/ui/instances/{name}/logs"),
    ("GET", "/ui/instances/{name}/logs/live"),
    ("GET", "/ui/instances/{name}/logs/{id}"),
    ("GET", "/ui/instances/{name}/failed"),
    ("POST", "/ui/instances/{name}/failed/replay"),
    ("POST", "/ui/instances/{name}/failed/{job_id}/{action}"),
    ("GET", "/ui/instances/{name}/backfill"),
    ("GET", "/ui/instances/{name}/backfill/progress"),
    ("POST", "/ui/instances/{name}/backfill/{action}"),
    ("GET", "/ui/instances/{name}/config"),
    ("POST", "/ui/instances/{name}/config"),
    ("POST", "/ui/instances/{name}/config/json"),
    ("POST", "/ui/instances/{name}/config/check/{app}"),
    ("POST", "/ui/instances/{name}/config/webhook-secret"),
    ("GET", "/api/v1/instances/{name}/stats"),
    ("GET", "/api/v1/instances/{name}/logs"),
    ("GET", "/api/v1/instances/{name}/logs/{id}"),
    ("GET", "/api/v1/instances/{name}/failed"),
    ("POST", "/api/v1/instances/{name}/failed/replay"),
    ("DELETE", "/api/v1/instances/{name}/failed/{job_id}"),
    ("POST", "/api/v1/instances/{name}/failed/{job_id}/{action}"),
    ("GET", "/api/v1/instances/{name}/backfill"),
    ("POST", "/api/v1/instances/{name}/backfill/{action}"),
    ("GET", "/api/v1/instances/{name}/config"),
    ("PUT", "/api/v1/instances/{name}/config"),
    ("GET", "/api/v1/instances/{name}/audit"),
    ("POST", "/api/v1/instances/{name}/check/{app}"),
    ("POST", "/api/v1/instances/{name}/webhook-secret"),
];

/// Returns the route patterns with an instance that the UI's source declares, so that a new
/// route cannot escape these attacks by being missing from [`INSTANCE_ROUTES`].
fn declared_instance_routes() -> BTreeSet<String> {
    let sources = [
        include_str!("../../src/ui/activity.rs"),
        include_str!("../../src/ui/config/mod.rs"),
        include_str!("../../src/ui/mod.rs"),
    ];
    sources
        .iter()
        .flat_map(|source| source.split('"'))
        .filter(|part| {
            (part.starts_with("/ui/instances/{name}")
                || part.starts_with("/api/v1/instances/{name}"))
                && !part.contains(['?', ' '])
        })
        .map(str::to_string)
        .collect()
}

/// One request of an attack: method and path.
#[derive(Debug, Clone)]
struct Target {
    method: Method,
    path: String,
}

/// Expands [`INSTANCE_ROUTES`] for `instance`, with a log entry id and a failed job id, into
/// one request per method and action.
fn targets(instance: &str, log_id: &str, job_id: &str) -> Vec<Target> {
    let mut found = Vec::new();
    for (method, pattern) in INSTANCE_ROUTES {
        let path = pattern
            .replace("{name}", instance)
            .replace("{id}", log_id)
            .replace("{job_id}", job_id)
            .replace("{app}", "mailchimp");
        let actions: &[&str] = if !path.contains("{action}") {
            &[""]
        } else if path.contains("/failed/") {
            &["replay", "discard"]
        } else {
            &["start", "pause", "resume"]
        };
        for action in actions {
            let mut path = path.replace("{action}", action);
            if path.ends_with("/logs/live") {
                path.push_str(&format!("?after={log_id}"));
            }
            found.push(Target {
                method: method.parse().unwrap(),
                path,
            });
        }
    }
    found
}

/// Sends `target` as `client`: GETs plain, forms to `/ui/` with the CSRF field, JSON to
/// `/api/` with the CSRF header. `rev` goes into the bodies that take one.
async fn send(client: &UiClient, target: &Target, rev: &str) -> Page {
    if target.method == Method::GET {
        return client.get(&target.path).await;
    }
    if target.path.starts_with("/ui/") {
        let fields = [
            ("rev", rev),
            ("confirm", "yes"),
            ("config", "{}"),
            ("discourse_url", "https://evil.example.net"),
        ];
        return client.post_form(&target.path, &fields).await;
    }
    let config =
        json!({ "discourse_url": "https://evil.example.net", "webhook_secret": "********" });
    let body = json!({ "rev": rev, "config": config, "section": {} });
    client
        .send_json(target.method.clone(), &target.path, &body)
        .await
}

/// What an attack must leave as it was: an instance's stored configuration, its failed
/// jobs, its queue, its audit trail and its backfill.
#[derive(Debug, PartialEq)]
struct Snapshot {
    config: Value,
    rev: String,
    failed: Vec<String>,
    ready: u64,
    audit: usize,
    backfill: bool,
}

async fn snapshot(geoffrey: &TestGeoffrey, instance: &str) -> Snapshot {
    let services = &geoffrey.services;
    let document = services
        .store
        .get(instance, geoffrey::instance::CONFIG_ID)
        .await
        .unwrap()
        .unwrap();
    let failed = services.queue.failed_jobs(instance, 100).await.unwrap();
    let stats = services.queue.stats(Some(instance)).await.unwrap();
    let audit = services
        .store
        .list_documents(instance, "audit:", 100)
        .await
        .unwrap();
    let backfill = geoffrey::apps::mailchimp::backfill::progress(services, instance)
        .await
        .unwrap();
    Snapshot {
        config: document.body,
        rev: document.rev,
        failed: failed.into_iter().map(|item| item.job.id).collect(),
        ready: stats.ready,
        audit: audit.len(),
        backfill: backfill.is_some(),
    }
}

/// Mailchimp settings that pass validation, pointed at a closed local port.
fn mailchimp_section() -> Value {
    json!({
        "api_key": "0123456789abcdef0123456789abcdef-us6",
        "base_url": "http://127.0.0.1:9",
        "list_id": "aud1",
    })
}

#[test]
fn every_declared_route_is_attacked() {
    let listed: BTreeSet<String> = INSTANCE_ROUTES
        .iter()
        .map(|(_, pattern)| pattern.to_string())
        .collect();
    let declared = declared_instance_routes();
    assert!(
        declared.len() >= 20,
        "the routes were not found: {declared:?}"
    );
    let missing: Vec<_> = declared.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "routes missing from INSTANCE_ROUTES: {missing:?}"
    );
}

/// Ids in the URL are looked up in the instance the URL names, even for an administrator
/// who may see both instances.
async fn ids_of_another_instance_are_not_found(mode: Mode) {
    let geoffrey = start_without_workers(mode).await;
    geoffrey.create_instance("alpha", json!({})).await;
    geoffrey.create_instance("beta", json!({})).await;
    let beta_job = make_failed_jobs(&geoffrey, "beta", &[("relay", "post_message")], "HTTP 410")
        .await
        .remove(0);
    let beta_log = log_entry("relay", &beta_job);
    let store = &geoffrey.services.store;
    store
        .append_logs("beta", std::slice::from_ref(&beta_log))
        .await
        .unwrap();
    let before = snapshot(&geoffrey, "beta").await;
    let admin = geoffrey.admin_client().await;

    for path in [
        format!("/ui/instances/alpha/logs/{}", beta_log.id),
        format!("/api/v1/instances/alpha/logs/{}", beta_log.id),
    ] {
        let page = admin.get(&path).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
    }
    for path in [
        format!("/api/v1/instances/alpha/logs?job_id={beta_job}"),
        format!(
            "/api/v1/instances/alpha/logs?after={}",
            geoffrey::store::first_log_id_at(time::OffsetDateTime::UNIX_EPOCH)
        ),
    ] {
        let page = admin.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert_eq!(page.json()["entries"], json!([]), "{path}");
    }
    let live = admin
        .get(&format!(
            "/ui/instances/alpha/logs/live?after={}",
            geoffrey::store::first_log_id_at(time::OffsetDateTime::UNIX_EPOCH)
        ))
        .await;
    assert_eq!(live.status, 200, "{}", live.body);
    assert!(!live.body.contains(&beta_log.id), "{}", live.body);

    for action in ["replay", "discard"] {
        let path = format!("/ui/instances/alpha/failed/{beta_job}/{action}");
        let page = admin.post_form(&path, &[]).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        let path = format!("/api/v1/instances/alpha/failed/{beta_job}/{action}");
        let page = admin.send_json(Method::POST, &path, &json!({})).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
    }
    let path = format!("/api/v1/instances/alpha/failed/{beta_job}");
    let page = admin.send_json(Method::DELETE, &path, &json!({})).await;
    assert_eq!(page.status, 404, "{path}: {}", page.body);

    assert_eq!(
        snapshot(&geoffrey, "beta").await,
        before,
        "beta is unchanged"
    );
}

/// A CouchDB member of `alpha` gets 404 from every route of `beta`, reads nothing of it and
/// changes nothing in it.
#[tokio::test]
async fn member_reaches_no_route_of_another_instance() {
    let geoffrey = start_without_workers(Mode::Distributed).await;
    geoffrey.create_instance("alpha", json!({})).await;
    let mut apps = json!({ "mailchimp": mailchimp_section() });
    apps["relay"] = json!({ "rules": [testkit::geoffrey::relay_rule(
        "topics",
        &format!("https://hooks.example.com/{RELAY_TOKEN}"),
        &["topic_created"],
        "{{topic.title}}",
    )] });
    geoffrey.create_instance("beta", apps).await;
    let beta_job = make_failed_jobs(&geoffrey, "beta", &[("relay", "post_message")], "HTTP 410")
        .await
        .remove(0);
    let beta_log = log_entry("relay", &beta_job);
    geoffrey
        .services
        .store
        .append_logs("beta", std::slice::from_ref(&beta_log))
        .await
        .unwrap();
    let before = snapshot(&geoffrey, "beta").await;
    let couch = geoffrey.couch.as_ref().unwrap();
    couch.create_member("ann", "ann-password", "alpha").await;
    let ann = UiClient::sign_in(&geoffrey.base_url, "ann", "ann-password")
        .await
        .expect("a CouchDB member signs in");

    for target in targets("beta", &beta_log.id, &beta_job) {
        let page = send(&ann, &target, &before.rev).await;
        assert_eq!(page.status, 404, "{target:?}: {}", page.body);
        for secret in [RELAY_TOKEN, &beta_job, &beta_log.id, &before.rev] {
            assert!(!page.body.contains(secret), "{target:?} shows {secret}");
        }
    }
    // The same ids through her own instance's routes.
    for target in targets("alpha", &beta_log.id, &beta_job) {
        let names_beta = target.path.contains(&beta_log.id) || target.path.contains(&beta_job);
        if !names_beta || target.path.contains("/live") {
            continue;
        }
        let page = send(&ann, &target, &before.rev).await;
        assert_eq!(page.status, 404, "{target:?}: {}", page.body);
    }
    let created = ann
        .post_form(
            "/ui/instances",
            &[
                ("name", "gamma"),
                ("discourse_url", "https://g.example.com"),
            ],
        )
        .await;
    assert_eq!(created.status, 403, "{}", created.body);

    assert_eq!(
        snapshot(&geoffrey, "beta").await,
        before,
        "beta is unchanged"
    );
    let names = geoffrey.services.store.list_databases().await.unwrap();
    assert_eq!(names, ["alpha", "beta"]);
}

/// Checks that every request that changes something needs the token of its own session. No
/// token, another session's token, or a `text/plain` body as a cross-site form can send it
/// without a preflight, gets 403 and changes nothing.
async fn requests_without_the_token_change_nothing(mode: Mode) {
    let geoffrey = start_without_workers(mode).await;
    geoffrey
        .create_instance("forum", json!({ "mailchimp": mailchimp_section() }))
        .await;
    let job = make_failed_jobs(&geoffrey, "forum", &[("relay", "post_message")], "HTTP 410")
        .await
        .remove(0);
    let entry = log_entry("relay", &job);
    geoffrey
        .services
        .store
        .append_logs("forum", std::slice::from_ref(&entry))
        .await
        .unwrap();
    let before = snapshot(&geoffrey, "forum").await;
    let admin = geoffrey.admin_client().await;
    let other = geoffrey.admin_client().await;
    assert_ne!(admin.csrf, other.csrf, "each session has its own token");

    let mut changing: Vec<Target> = targets("forum", &entry.id, &job)
        .into_iter()
        .filter(|target| target.method != Method::GET)
        .collect();
    for path in ["/ui/instances", "/api/v1/instances", "/ui/sign-out"] {
        changing.push(Target {
            method: Method::POST,
            path: path.to_string(),
        });
    }
    let json_body = json!({
        "rev": before.rev, "confirm": "yes", "name": "evil",
        "discourse_url": "https://evil.example.net",
        "config": { "discourse_url": "https://evil.example.net", "webhook_secret": "********" },
    })
    .to_string();
    let form_body = format!(
        "rev={}&confirm=yes&name=evil&discourse_url=https%3A%2F%2Fevil.example.net&config=%7B%7D",
        before.rev
    );
    for target in &changing {
        let url = format!("{}{}", geoffrey.base_url, target.path);
        let request = |token: Option<&str>, content_type: &str, body: &str| {
            let mut request = admin
                .http
                .request(target.method.clone(), &url)
                .header("Cookie", &admin.cookie)
                .header("Content-Type", content_type)
                .body(body.to_string());
            if let Some(token) = token {
                request = request.header("X-CSRF-Token", token);
            }
            request.send()
        };
        let form = "application/x-www-form-urlencoded";
        let attempts = [
            ("no token", request(None, form, &form_body).await.unwrap()),
            (
                "another session's token in the form",
                request(None, form, &format!("{form_body}&csrf={}", other.csrf))
                    .await
                    .unwrap(),
            ),
            (
                "another session's token in the header",
                request(Some(&other.csrf), "application/json", &json_body)
                    .await
                    .unwrap(),
            ),
            (
                "JSON as text/plain",
                request(None, "text/plain", &json_body).await.unwrap(),
            ),
            (
                "JSON as text/plain with a csrf field",
                request(
                    None,
                    "text/plain",
                    &format!("csrf={}&{json_body}", admin.csrf),
                )
                .await
                .unwrap(),
            ),
        ];
        for (how, response) in attempts {
            assert_eq!(response.status(), 403, "{how}: {target:?}");
        }
    }

    assert_eq!(
        snapshot(&geoffrey, "forum").await,
        before,
        "nothing changed"
    );
    let names = geoffrey.services.store.list_databases().await.unwrap();
    assert_eq!(names, ["forum"], "no instance was created");
    let still = admin.get("/api/v1/instances").await;
    assert_eq!(still.status, 200, "the session was not signed out");

    // The JSON sign-in takes JSON only, so a cross-site form cannot sign a browser in.
    let plain = http_client()
        .post(format!("{}/api/v1/session", geoffrey.base_url))
        .header("Content-Type", "text/plain")
        .body(json!({ "user": "admin", "password": ADMIN_PASSWORD }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    assert!(plain.headers().get("set-cookie").is_none());
}

/// Fails when the raw HTML shows markup that escaped its context, or a `javascript:` URL in
/// an attribute that navigates or loads.
fn assert_escaped(page: &Page, case: &str) {
    for marker in ["<script>alert", "<img src=x", "' autofocus onfocus='"] {
        assert!(
            !page.body.contains(marker),
            "{case} prints {marker:?} unescaped: {}",
            page.body
        );
    }
    let lower = page.body.to_lowercase();
    for attribute in ["href", "src", "action", "formaction", "hx-get", "hx-post"] {
        for quote in ["\"", "'"] {
            let opening = format!("{attribute}={quote}javascript:");
            assert!(!lower.contains(&opening), "{case} has {opening}");
        }
    }
}

/// Fails unless the page shows `MARKUP` as text, so that the check above saw the value.
fn assert_shows_markup(page: &Page, case: &str) {
    assert!(
        page.text().contains(MARKUP),
        "{case} does not show the markup: {}",
        page.body
    );
    assert_escaped(page, case);
}

fn url_encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Checks that every value a person or a third party can store, and every parameter a page
/// echoes, is printed escaped: in text, in attributes and in htmx attributes.
async fn stored_markup_is_escaped(mode: Mode) {
    let geoffrey = start_without_workers(mode).await;
    geoffrey.create_instance("forum", json!({})).await;
    let admin = geoffrey.admin_client().await;
    let encoded = url_encoded(MARKUP);

    // Configuration fields, relay rules, Mailchimp settings and a form.
    let opened = admin.get("/api/v1/instances/forum/config").await.json();
    let mut config = opened["config"].clone();
    config["discourse_api_username"] = json!(MARKUP);
    config["apps"] = json!({
        "relay": { "rules": [{
            "name": MARKUP, "url": "https://hooks.example.com/x", "events": ["topic_created"],
            "template": MARKUP, "username": MARKUP,
        }] },
        "mailchimp": {
            "api_key": "0123456789abcdef0123456789abcdef-us6", "base_url": "http://127.0.0.1:9",
            "list_id": MARKUP, "static_tags": [MARKUP],
        },
        "forms": { "forms": [{
            "name": "apply", "title": MARKUP, "description": MARKUP,
            "fields": [{ "name": "about", "type": "text", "label": MARKUP }],
            "success_message": MARKUP,
        }] },
    });
    let saved = admin
        .send_json(
            Method::PUT,
            "/api/v1/instances/forum/config",
            &json!({ "rev": opened["rev"], "config": config }),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    // A second save puts the markup into the audit trail as an old value.
    let opened = admin.get("/api/v1/instances/forum/config").await.json();
    let mut config = opened["config"].clone();
    config["discourse_api_username"] = json!("bot");
    let saved = admin
        .send_json(
            Method::PUT,
            "/api/v1/instances/forum/config",
            &json!({ "rev": opened["rev"], "config": config }),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let page = admin.get("/ui/instances/forum/config").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_shows_markup(&page, "the configuration page");
    let hosted = admin.get("/forms/forum/apply").await;
    assert_shows_markup(&hosted, "the hosted form");

    // Inputs that fail validation are shown again as typed, with messages that quote them.
    let rev = opened["rev"].as_str().unwrap().to_string();
    let rev = admin.get("/api/v1/instances/forum/config").await.json()["rev"]
        .as_str()
        .map_or(rev, str::to_string);
    let form = admin
        .post_form(
            "/ui/instances/forum/config",
            &[
                ("rev", &rev),
                ("discourse_url", "https://forum.example.com"),
                ("section:apps.mailchimp", "1"),
                ("stored:apps.mailchimp.api_key", "1"),
                ("apps.mailchimp.api_key", "********"),
                ("apps.mailchimp.list_id", "aud1"),
                ("apps.mailchimp.max_connections", MARKUP),
            ],
        )
        .await;
    assert_eq!(form.status, 422, "{}", form.body);
    assert_shows_markup(&form, "the form with an invalid number");
    let text = format!("</textarea>{MARKUP}");
    let json_view = admin
        .post_form(
            "/ui/instances/forum/config/json",
            &[("rev", &rev), ("config", &text)],
        )
        .await;
    assert_eq!(json_view.status, 422, "{}", json_view.body);
    assert_shows_markup(&json_view, "the JSON view with invalid JSON");
    assert!(!json_view.body.contains("</textarea><script>"));
    let mut config = admin.get("/api/v1/instances/forum/config").await.json()["config"].clone();
    config["discourse_url"] = json!("javascript:alert(1)");
    config["apps"]["relay"]["rules"][0]["events"] = json!([MARKUP]);
    let invalid = admin
        .post_form(
            "/ui/instances/forum/config/json",
            &[("rev", &rev), ("config", &config.to_string())],
        )
        .await;
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    assert_shows_markup(&invalid, "the JSON view with invalid values");

    // Log entries, as apps store third parties' responses and errors.
    let job_id = format!("job{MARKUP}");
    let mut entry = log_entry(MARKUP, &job_id);
    entry.feature = MARKUP.into();
    entry.target = Some(MARKUP.into());
    entry.event = MARKUP.into();
    entry.event_id = Some(MARKUP.into());
    entry.response = Some(MARKUP.into());
    entry.error = Some(MARKUP.into());
    entry.outcome = Outcome::FailedPermanently;
    geoffrey
        .services
        .store
        .append_logs("forum", std::slice::from_ref(&entry))
        .await
        .unwrap();
    let start = geoffrey::store::first_log_id_at(time::OffsetDateTime::UNIX_EPOCH);
    for path in [
        "/ui/instances/forum/logs".to_string(),
        format!("/ui/instances/forum/logs/{}", entry.id),
        format!("/ui/instances/forum/logs/live?after={start}"),
        format!("/ui/instances/forum/logs?feature={encoded}&event={encoded}&app={encoded}"),
        "/ui/instances/forum".to_string(),
    ] {
        let page = admin.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert_shows_markup(&page, &path);
    }

    // Failed jobs: their app, feature, reason and event, and the echoed filter.
    make_failed_jobs(&geoffrey, "forum", &[(MARKUP, MARKUP)], MARKUP).await;
    let failed = admin.get("/ui/instances/forum/failed").await;
    assert_shows_markup(&failed, "the failed jobs");
    let path = format!("/ui/instances/forum/failed?app={encoded}&feature={encoded}");
    let filtered = admin.get(&path).await;
    assert_eq!(filtered.status, 200, "{}", filtered.body);
    assert_shows_markup(&filtered, "the filtered failed jobs");
    let confirm = admin
        .post_form(
            "/ui/instances/forum/failed/replay",
            &[("app", MARKUP), ("feature", MARKUP)],
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert_shows_markup(&confirm, "the replay confirmation");
    let failed_entry = admin
        .get(&format!("/ui/instances/forum/logs/{}", entry.id))
        .await;
    assert_escaped(&failed_entry, "the log entry of a failed job");

    // Values in the path that error pages quote.
    for path in [
        format!("/ui/instances/forum/config/check/{encoded}"),
        format!("/ui/instances/forum/backfill/{encoded}"),
    ] {
        let page = admin.post_form(&path, &[]).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        assert_escaped(&page, &path);
    }

    // The sign-in form echoes the return address, which has no spaces, and the name.
    let http = http_client();
    let next = "/ui/\"><script>alert(1)</script>'onfocus='alert(3)";
    let sign_in = http
        .get(format!(
            "{}/ui/sign-in?next={}",
            geoffrey.base_url,
            url_encoded(next)
        ))
        .send()
        .await
        .unwrap();
    let page = Page {
        status: sign_in.status().as_u16(),
        location: None,
        body: sign_in.text().await.unwrap(),
    };
    assert!(page.text().contains(next), "{}", page.body);
    assert_escaped(&page, "the sign-in form's return address");
    assert!(!page.body.contains("'onfocus='"), "{}", page.body);
    let (cookie, token) = sign_in_form(&http, &geoffrey.base_url).await;
    let rejected = http
        .post(format!("{}/ui/sign-in", geoffrey.base_url))
        .header("Cookie", &cookie)
        .form(&[
            ("user", MARKUP),
            ("password", "wrong"),
            ("csrf", &token),
            ("next", next),
        ])
        .send()
        .await
        .unwrap();
    let page = Page {
        status: rejected.status().as_u16(),
        location: None,
        body: rejected.text().await.unwrap(),
    };
    assert_eq!(page.status, 401, "{}", page.body);
    assert_shows_markup(&page, "the sign-in form with a wrong password");
}

/// Starts a local third party that returns an HTML error page to every request.
async fn html_answering_server() -> String {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::BAD_REQUEST,
            [("content-type", "text/html")],
            format!("<html><body>{MARKUP}</body></html>"),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Checks that a relay target's HTML response and the rule's name are printed escaped on
/// the log pages.
async fn third_party_markup_is_escaped(mode: Mode) {
    let url = html_answering_server().await;
    let geoffrey = TestGeoffrey::start(mode).await;
    let rule = testkit::geoffrey::relay_rule(MARKUP, &url, &["topic_created"], "hello");
    geoffrey
        .create_instance("forum", testkit::geoffrey::relay_apps(vec![rule]))
        .await;
    let (status, body) = geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    assert_eq!(status, 200, "{body}");
    let logs = geoffrey.wait_for_logs("forum", 1).await;
    let entry = &logs[0];
    assert!(
        entry
            .response
            .as_deref()
            .unwrap_or_default()
            .contains(MARKUP),
        "{entry:?}"
    );
    let admin = geoffrey.admin_client().await;
    for path in [
        "/ui/instances/forum/logs".to_string(),
        format!("/ui/instances/forum/logs/{}", entry.id),
    ] {
        let page = admin.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert_shows_markup(&page, &path);
    }
}

/// Fetches the sign-in form and returns its cookie and CSRF token.
async fn sign_in_form(http: &reqwest::Client, base_url: &str) -> (String, String) {
    let form = http
        .get(format!("{base_url}/ui/sign-in"))
        .send()
        .await
        .unwrap();
    let cookie = form.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = cookie.trim_start_matches("geoffrey_sign_in=").to_string();
    (cookie, token)
}

/// After signing in, the browser goes back into the UI only: never to another site, and
/// never with a header the `next` field smuggles in.
async fn sign_in_redirects_stay_on_the_site(mode: Mode) {
    let geoffrey = TestGeoffrey::start_with(
        mode,
        |settings| settings.server.client_ip_header = Some("x-forwarded-for".to_string()),
        None,
        Roles::ALL,
    )
    .await;
    let (user, password) = match mode {
        Mode::Embedded => ("admin", ADMIN_PASSWORD),
        Mode::Distributed => (
            testkit::servers::COUCH_ADMIN,
            testkit::servers::COUCH_PASSWORD,
        ),
    };
    let http = http_client();
    let cases = [
        ("//evil.example", Some("/ui/instances")),
        ("https://evil.example/ui/", Some("/ui/instances")),
        ("/ui/\\evil.example", Some("/ui/instances")),
        ("/\\evil.example", Some("/ui/instances")),
        ("javascript:alert(1)", Some("/ui/instances")),
        ("/ui/../..", None),
        ("/ui/%2e%2e/%2e%2e//evil.example", None),
        ("/ui/\r\nSet-Cookie: planted=1", Some("/ui/instances")),
        (
            "/ui/\nLocation: https://evil.example",
            Some("/ui/instances"),
        ),
        ("/ui/instances/caf\u{e9}", Some("/ui/instances")),
        ("/ui/instances?x=1", Some("/ui/instances?x=1")),
    ];
    for (index, (next, expected)) in cases.iter().enumerate() {
        let page = http
            .get(format!(
                "{}/ui/sign-in?next={}",
                geoffrey.base_url,
                url_encoded(next)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{next:?}");
        let (cookie, token) = sign_in_form(&http, &geoffrey.base_url).await;
        let response = http
            .post(format!("{}/ui/sign-in", geoffrey.base_url))
            .header("Cookie", &cookie)
            .header("X-Forwarded-For", format!("192.0.2.{index}"))
            .form(&[
                ("user", user),
                ("password", password),
                ("csrf", &token),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{next:?}");
        let location = response.headers()["location"].to_str().unwrap().to_string();
        if let Some(expected) = expected {
            assert_eq!(location, *expected, "{next:?}");
        }
        assert!(location.starts_with('/'), "{next:?} → {location}");
        assert!(!location.starts_with("//"), "{next:?} → {location}");
        assert!(!location.contains('\\'), "{next:?} → {location}");
        let planted = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|value| value.to_str().unwrap().starts_with("planted"));
        assert!(!planted, "{next:?} set a cookie");
    }
}

/// A `tracing` writer that keeps everything written, for searching the log of a test.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Checks that no page, fragment, JSON response, error or log line shows a stored secret,
/// such as the webhook secret, an API key, a relay URL or a form's JSON secret, also
/// after a failed save and in the audit trail, the JSON view and check results.
async fn secrets_stay_out_of_responses_and_logs(mode: Mode) {
    let log = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = fake_mailchimp::FakeMailchimp::start(fake_mailchimp::FakeConfig::default()).await;
    let geoffrey = TestGeoffrey::start(mode).await;
    // Nothing listens on port 9, so every relay attempt fails and the job ends up failed.
    let relay_url = format!("http://127.0.0.1:9/hook/{RELAY_TOKEN}");
    let rule = testkit::geoffrey::relay_rule("topics", &relay_url, &["topic_created"], "hi");
    let mailchimp_key = fake.api_key();
    let apps = json!({
        "relay": { "rules": [rule] },
        "mailchimp": {
            "api_key": mailchimp_key, "base_url": fake.base_url(), "list_id": "aud1",
            "consent": { "mode": "everyone" },
        },
        "forms": { "forms": [{
            "name": "apply", "title": "Apply",
            "fields": [{ "name": "about", "type": "text", "label": "About" }],
            "json_secret": FORM_SECRET,
        }] },
    });
    geoffrey.create_instance("forum", apps).await;
    geoffrey
        .edit_config("forum", |document| {
            document["discourse_api_key"] = json!(DISCOURSE_KEY);
        })
        .await;
    let (status, body) = geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    assert_eq!(status, 200, "{body}");
    geoffrey.wait_for_logs("forum", 3).await;

    let admin = geoffrey.admin_client().await;
    let mut secrets = vec![
        FIXTURE_SECRET.to_string(),
        DISCOURSE_KEY.to_string(),
        RELAY_TOKEN.to_string(),
        relay_url.clone(),
        FORM_SECRET.to_string(),
        mailchimp_key.clone(),
        ADMIN_PASSWORD.to_string(),
        testkit::servers::COUCH_PASSWORD.to_string(),
    ];
    let mut pages: Vec<(String, Page)> = Vec::new();

    let stored = admin.get("/api/v1/instances/forum/config").await.json();
    let rev = stored["rev"].as_str().unwrap().to_string();
    let logs = geoffrey.logs("forum").await;
    let job = geoffrey
        .services
        .queue
        .failed_jobs("forum", 10)
        .await
        .unwrap();
    let job_id = job
        .first()
        .map(|item| item.job.id.clone())
        .unwrap_or_default();
    for path in [
        "/ui/instances".to_string(),
        "/api/v1/instances".to_string(),
        "/ui/instances/forum".to_string(),
        "/ui/instances/forum/config".to_string(),
        "/ui/instances/forum/logs".to_string(),
        format!("/ui/instances/forum/logs/{}", logs[0].id),
        "/ui/instances/forum/failed".to_string(),
        "/ui/instances/forum/backfill".to_string(),
        "/api/v1/instances/forum/stats".to_string(),
        "/api/v1/instances/forum/config".to_string(),
        "/api/v1/instances/forum/audit".to_string(),
        "/api/v1/instances/forum/logs".to_string(),
        format!("/api/v1/instances/forum/logs/{}", logs[0].id),
        "/api/v1/instances/forum/failed".to_string(),
        "/api/v1/instances/forum/backfill".to_string(),
        "/forms/forum/apply".to_string(),
    ] {
        let page = admin.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        pages.push((path, page));
    }
    assert!(!job_id.is_empty(), "the relay job failed");

    // Failed saves: an invalid field in the form, invalid JSON, an invalid PUT, and a masked
    // key sent to another server.
    let form = admin
        .post_form(
            "/ui/instances/forum/config",
            &[
                ("rev", &rev),
                ("discourse_url", "https://forum.example.com"),
                ("stored:discourse_api_key", "1"),
                ("discourse_api_key", "********"),
                ("section:apps.mailchimp", "1"),
                ("stored:apps.mailchimp.api_key", "1"),
                ("apps.mailchimp.api_key", "********"),
                ("apps.mailchimp.list_id", "aud1"),
                ("apps.mailchimp.max_connections", "many"),
            ],
        )
        .await;
    assert_eq!(form.status, 422, "{}", form.body);
    pages.push(("the form with an invalid field".into(), form));
    let mut config = stored["config"].clone();
    config["apps"]["relay"]["rules"][0]["events"] = json!(["Not An Event"]);
    let json_view = admin
        .post_form(
            "/ui/instances/forum/config/json",
            &[("rev", &rev), ("config", &config.to_string())],
        )
        .await;
    assert_eq!(json_view.status, 422, "{}", json_view.body);
    pages.push(("the JSON view with an invalid event".into(), json_view));
    let put = admin
        .send_json(
            Method::PUT,
            "/api/v1/instances/forum/config",
            &json!({ "rev": rev, "config": config }),
        )
        .await;
    assert_eq!(put.status, 422, "{}", put.body);
    pages.push(("an invalid PUT".into(), put));
    let mut moved = stored["config"].clone();
    moved["discourse_url"] = json!("https://evil.example.net");
    let put = admin
        .send_json(
            Method::PUT,
            "/api/v1/instances/forum/config",
            &json!({ "rev": rev, "config": moved }),
        )
        .await;
    assert_eq!(put.status, 422, "{}", put.body);
    pages.push(("a PUT that moves a masked key".into(), put));

    // Connection tests: the stored section, a wrong key, and the page's htmx fragment.
    let check = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/check/mailchimp",
            &json!(null),
        )
        .await;
    assert_eq!(check.status, 200, "{}", check.body);
    pages.push(("the stored check".into(), check));
    let wrong_key = "ffffffffffffffffffffffffffffffff-us6";
    secrets.push(wrong_key.to_string());
    let section = json!({ "api_key": wrong_key, "base_url": fake.base_url(), "list_id": "aud1" });
    let check = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/check/mailchimp",
            &json!({ "section": section }),
        )
        .await;
    assert_eq!(check.status, 200, "{}", check.body);
    pages.push(("a check with a wrong key".into(), check));
    let fragment = admin
        .http
        .post(format!(
            "{}/ui/instances/forum/config/check/mailchimp",
            geoffrey.base_url
        ))
        .header("Cookie", &admin.cookie)
        .header("X-CSRF-Token", &admin.csrf)
        .header("HX-Request", "true")
        .form(&[
            ("section:apps.mailchimp", "1"),
            ("apps.mailchimp.api_key", wrong_key),
        ])
        .send()
        .await
        .unwrap();
    let body = fragment.text().await.unwrap();
    pages.push((
        "the check fragment".into(),
        Page {
            status: 200,
            location: None,
            body,
        },
    ));

    // A save with new secrets: the audit trail records that a secret changed, never its value.
    let new_token = "relay-token-attack-new-77aa";
    let new_key = "discourse-key-attack-new-88bb";
    secrets.push(new_token.to_string());
    secrets.push(new_key.to_string());
    let mut changed = stored["config"].clone();
    changed["discourse_api_key"] = json!(new_key);
    changed["apps"]["relay"]["rules"][0]["url"] = json!(format!("http://127.0.0.1:9/{new_token}"));
    let saved = admin
        .send_json(
            Method::PUT,
            "/api/v1/instances/forum/config",
            &json!({ "rev": rev, "config": changed }),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    pages.push(("the save".into(), saved));
    for path in [
        "/api/v1/instances/forum/audit",
        "/ui/instances/forum/config",
    ] {
        let page = admin.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        pages.push((format!("{path} after the save"), page));
    }

    // A wrong password typed at sign-in stays out of the log.
    let typed = "typed-wrong-password-3c4d";
    secrets.push(typed.to_string());
    let rejected = UiClient::sign_in(&geoffrey.base_url, "admin", typed).await;
    let rejected = rejected.err().expect("a wrong password must not sign in");
    pages.push(("a rejected sign-in".into(), rejected));

    // The rotated secret is shown once, in the rotation's response, and nowhere after.
    let rotated = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/webhook-secret",
            &json!({}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_secret = rotated.json()["webhook_secret"]
        .as_str()
        .unwrap()
        .to_string();
    secrets.push(new_secret);
    for path in [
        "/ui/instances/forum/config",
        "/api/v1/instances/forum/config",
        "/api/v1/instances/forum/audit",
    ] {
        let page = admin.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        pages.push((format!("{path} after the rotation"), page));
    }
    secrets.push(
        admin
            .cookie
            .trim_start_matches("geoffrey_session=")
            .to_string(),
    );

    for (case, page) in &pages {
        for secret in &secrets {
            assert!(
                !page.body.contains(secret.as_str()),
                "{case} shows {secret}: {}",
                page.body
            );
        }
    }
    let text = log.text();
    assert!(
        text.contains("signed in to the web UI"),
        "the log was captured: {text}"
    );
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "the log shows {secret}: {text}"
        );
    }
}

/// A name typed at sign-in is logged as one quoted value, so that a line break in it cannot
/// write a line of its own into the log.
#[tokio::test]
async fn sign_in_names_forge_no_log_lines() {
    let log = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let geoffrey = TestGeoffrey::start(Mode::Embedded).await;

    let forged = "guess\n2030-01-01T00:00:00Z  INFO signed in to the web UI user=admin";
    let rejected = UiClient::sign_in(&geoffrey.base_url, forged, "guess").await;
    assert_eq!(rejected.err().expect("a guess must fail").status, 400);

    let text = log.text();
    assert!(text.contains("a sign-in to the web UI failed"), "{text}");
    let forged_lines: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("2030-01-01"))
        .collect();
    assert!(forged_lines.is_empty(), "{forged_lines:?}");
}

/// Damaged, forged and foreign session cookies count as none. Signing out removes the cookie
/// from the browser, and a copy taken earlier stays valid until the session ends, as
/// documented.
async fn forged_sessions_are_rejected(mode: Mode) {
    let geoffrey = TestGeoffrey::start(mode).await;
    geoffrey
        .create_instance("forum", json!({ "mailchimp": mailchimp_section() }))
        .await;
    let admin = geoffrey.admin_client().await;
    let sealed = admin
        .cookie
        .trim_start_matches("geoffrey_session=")
        .to_string();
    let other = TestGeoffrey::start(mode).await;
    let foreign = other.admin_client().await;
    let stored = geoffrey
        .services
        .store
        .get("forum", geoffrey::instance::CONFIG_ID)
        .await
        .unwrap()
        .unwrap();
    let sealed_secret = stored.body["webhook_secret"].as_str().unwrap().to_string();
    assert!(sealed_secret.starts_with("sealed:"), "{sealed_secret}");

    let mut flipped = sealed.clone().into_bytes();
    let middle = flipped.len() / 2;
    flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cookies = [
        ("a flipped character", format!("geoffrey_session={flipped}")),
        (
            "a cut value",
            format!("geoffrey_session={}", &sealed[..sealed.len() - 4]),
        ),
        (
            "an extended value",
            format!("geoffrey_session={sealed}AAAA"),
        ),
        ("another deployment's session", foreign.cookie.clone()),
        (
            "a sealed configuration secret",
            format!("geoffrey_session={sealed_secret}"),
        ),
        ("an empty value", "geoffrey_session=".to_string()),
        (
            "plain JSON",
            format!(
                "geoffrey_session={}",
                json!({ "user": "admin", "admin": true, "csrf": "x", "expires": 4_000_000_000i64, "generation": "" })
            ),
        ),
    ];
    for (case, cookie) in &cookies {
        let page = admin
            .http
            .get(format!("{}/ui/instances/forum/config", geoffrey.base_url))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 303, "{case}");
        let api = admin
            .http
            .get(format!(
                "{}/api/v1/instances/forum/config",
                geoffrey.base_url
            ))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 401, "{case}");
        let body = api.text().await.unwrap();
        assert!(!body.contains("webhook_secret"), "{case}: {body}");
    }

    let signed_out = admin.post_form("/ui/sign-out", &[]).await;
    assert_eq!(signed_out.status, 303, "{}", signed_out.body);
    let copy = admin.get("/api/v1/instances/forum/config").await;
    assert_eq!(
        copy.status, 200,
        "a copy of the cookie stays valid until the session ends"
    );
}

/// Checks that the sign-in limits count every attempt. A name in another case is another
/// name that never signs in, and `X-Forwarded-For` is not the client's address unless
/// `server.client_ip_header` names it.
async fn sign_in_limits_are_not_bypassed(mode: Mode) {
    let geoffrey = TestGeoffrey::start(mode).await;
    let (user, password) = match mode {
        Mode::Embedded => ("admin", ADMIN_PASSWORD),
        Mode::Distributed => (
            testkit::servers::COUCH_ADMIN,
            testkit::servers::COUCH_PASSWORD,
        ),
    };
    let uppercase = user.to_uppercase();
    let capitalized = format!("{}{}", user[..1].to_uppercase(), &user[1..]);
    for name in [
        uppercase.as_str(),
        capitalized.as_str(),
        &format!(" {user}"),
        &format!("{user} "),
    ] {
        let attempt = UiClient::sign_in(&geoffrey.base_url, name, password).await;
        let page = attempt
            .err()
            .unwrap_or_else(|| panic!("{name:?} signed in"));
        assert_eq!(page.status, 400, "{name:?}: {}", page.body);
    }

    let http = http_client();
    let mut statuses = Vec::new();
    for index in 0..8 {
        let response = http
            .post(format!("{}/api/v1/session", geoffrey.base_url))
            .header("X-Forwarded-For", format!("198.51.100.{index}"))
            .header("X-Real-IP", format!("198.51.100.{index}"))
            .json(&json!({ "user": format!("guess{index}"), "password": "guess" }))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..6], [400; 6], "{statuses:?}");
    assert_eq!(&statuses[6..], [429, 429], "{statuses:?}");
}

/// Checks that malformed requests get a 4xx with the reason, never a 5xx or a dropped
/// connection, and change nothing.
async fn malformed_input_is_a_client_error(mode: Mode) {
    let geoffrey = start_without_workers(mode).await;
    geoffrey
        .create_instance("forum", json!({ "mailchimp": mailchimp_section() }))
        .await;
    make_failed_jobs(&geoffrey, "forum", &[("relay", "post_message")], "HTTP 410").await;
    let before = snapshot(&geoffrey, "forum").await;
    let admin = geoffrey.admin_client().await;
    let base = &geoffrey.base_url;
    let mut failures = Vec::new();
    let mut expect_client_error = |case: String, status: u16, body: &str| {
        if !(400..500).contains(&status) {
            failures.push(format!("{case}: {status} {body}"));
        }
    };

    for query in [
        "limit=-1",
        "limit=0",
        "limit=1001",
        "limit=99999999999999999999999",
        "limit=ten",
        "before=..%2FCONFIG",
        "after=%27%20OR%201%3D1",
        "job_id=%3Cscript%3E",
        "outcome=maybe",
        "since=yesterday",
        "until=9999-12-31T23%3A59%3A59.9999Z",
        "since=9999-12-31T23%3A59%3A59.9999Z",
        "until=0000-01-01T00%3A00%3A00Z",
        "until=9999-12-31T23%3A59%3A59.999-01%3A00",
    ] {
        for path in [
            format!("/ui/instances/forum/logs?{query}"),
            format!("/api/v1/instances/forum/logs?{query}"),
            format!(
                "/ui/instances/forum/logs/live?after=0190a6c2-0000-7000-8000-000000000000&{query}"
            ),
        ] {
            let response = admin
                .http
                .get(format!("{base}{path}"))
                .header("Cookie", &admin.cookie)
                .send()
                .await;
            match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    // Valid bounds at the ends of the time range may also return a page.
                    if status != 200
                        || !query.contains("0000-01-01") && !query.contains("since=9999")
                    {
                        expect_client_error(path, status, &body);
                    }
                }
                Err(err) => expect_client_error(path, 0, &format!("no response: {err}")),
            }
        }
    }
    for path in [
        "/api/v1/instances/forum/audit?limit=-5",
        "/api/v1/instances/forum/audit?limit=abc",
        "/api/v1/instances/forum/failed?app=a&app=b",
        "/ui/instances/forum/failed?feature=a&feature=b",
        "/ui/instances/%FF/logs",
        "/ui/instances/forum/logs/..%2F..%2FCONFIG",
        "/ui/instances/forum/logs/live",
    ] {
        let page = admin.get(path).await;
        expect_client_error(path.to_string(), page.status, &page.body);
    }
    let unknown = admin.get("/ui/instances/forum/logs?colour=blue&app=").await;
    assert_eq!(
        unknown.status, 200,
        "unknown filters are ignored: {}",
        unknown.body
    );

    let rev = before.rev.clone();
    let big = "x".repeat(3 * 1024 * 1024);
    let form = admin
        .http
        .post(format!("{base}/ui/instances/forum/config"))
        .header("Cookie", &admin.cookie)
        .form(&[
            ("rev", rev.as_str()),
            ("discourse_url", &big),
            ("csrf", &admin.csrf),
        ])
        .send()
        .await
        .unwrap();
    let status = form.status().as_u16();
    expect_client_error("a 3 MiB form".into(), status, &form.text().await.unwrap());
    let form = admin
        .http
        .post(format!("{base}/ui/instances/forum/config"))
        .header("Cookie", &admin.cookie)
        .header("X-CSRF-Token", &admin.csrf)
        .form(&[("rev", rev.as_str()), ("discourse_url", &big)])
        .send()
        .await
        .unwrap();
    let status = form.status().as_u16();
    expect_client_error(
        "a 3 MiB form with the token in the header".into(),
        status,
        &form.text().await.unwrap(),
    );
    let body = json!({ "rev": rev, "config": { "discourse_url": big } });
    let put = admin
        .send_json(Method::PUT, "/api/v1/instances/forum/config", &body)
        .await;
    expect_client_error("a 3 MiB PUT".into(), put.status, &put.body);

    let mut invalid_utf8 = format!("csrf={}&rev=", admin.csrf).into_bytes();
    invalid_utf8.extend_from_slice(b"\xff\xfe&discourse_url=https://f.example.com/\xc3\x28");
    let form = admin
        .http
        .post(format!("{base}/ui/instances/forum/config"))
        .header("Cookie", &admin.cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(invalid_utf8)
        .send()
        .await
        .unwrap();
    let status = form.status().as_u16();
    expect_client_error(
        "a form with invalid UTF-8".into(),
        status,
        &form.text().await.unwrap(),
    );
    for (method, path, body) in [
        (
            Method::PUT,
            "/api/v1/instances/forum/config",
            &b"{\"rev\": \"\xff\xfe\", \"config\": {}}"[..],
        ),
        (
            Method::POST,
            "/api/v1/instances/forum/check/mailchimp",
            &b"{\"section\": {\"list_id\": \"\xff\"}}"[..],
        ),
        (
            Method::POST,
            "/api/v1/instances/forum/failed/replay",
            &b"{\"app\": \"\xff\xfe\"}"[..],
        ),
    ] {
        let response = admin
            .http
            .request(method, format!("{base}{path}"))
            .header("Cookie", &admin.cookie)
            .header("X-CSRF-Token", &admin.csrf)
            .header("Content-Type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        expect_client_error(
            format!("invalid UTF-8 JSON to {path}"),
            status,
            &response.text().await.unwrap(),
        );
    }

    // Nesting deeper than the JSON parser allows, and nesting it allows in a field that
    // does not exist.
    let too_deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let json_view = admin
        .post_form(
            "/ui/instances/forum/config/json",
            &[("rev", &rev), ("config", &too_deep)],
        )
        .await;
    expect_client_error(
        "10000 nested arrays in the JSON view".into(),
        json_view.status,
        &json_view.body,
    );
    let mut nested = json!("bottom");
    for _ in 0..120 {
        nested = json!({ "a": nested });
    }
    let mut config = admin.get("/api/v1/instances/forum/config").await.json()["config"].clone();
    config["extra"] = nested.clone();
    config["apps"]["mailchimp"]["merge_fields"] = nested;
    let json_view = admin
        .post_form(
            "/ui/instances/forum/config/json",
            &[("rev", &rev), ("config", &config.to_string())],
        )
        .await;
    expect_client_error(
        "120 nested objects in the JSON view".into(),
        json_view.status,
        &json_view.body,
    );
    let put = admin
        .send_json(
            Method::PUT,
            "/api/v1/instances/forum/config",
            &json!({ "rev": rev, "config": config }),
        )
        .await;
    expect_client_error("120 nested objects in a PUT".into(), put.status, &put.body);
    let check = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/check/mailchimp",
            &json!({ "section": config["apps"]["mailchimp"] }),
        )
        .await;
    expect_client_error(
        "120 nested objects in a check".into(),
        check.status,
        &check.body,
    );
    let raw = admin
        .http
        .put(format!("{base}/api/v1/instances/forum/config"))
        .header("Cookie", &admin.cookie)
        .header("X-CSRF-Token", &admin.csrf)
        .body(format!("{{\"rev\": \"{rev}\", \"config\": {too_deep}}}"))
        .send()
        .await
        .unwrap();
    let status = raw.status().as_u16();
    expect_client_error(
        "10000 nested arrays in a PUT".into(),
        status,
        &raw.text().await.unwrap(),
    );

    for (method, path) in [
        (Method::POST, "/ui/instances/forum/failed/x/explode"),
        (Method::POST, "/ui/instances/forum/backfill/explode"),
        (Method::POST, "/api/v1/instances/forum/backfill/explode"),
        (
            Method::POST,
            "/api/v1/instances/forum/failed/..%2F..%2Fx/replay",
        ),
        (Method::POST, "/api/v1/instances/forum/check/nosuchapp"),
        (Method::GET, "/ui/instances/forum/failed/replay"),
    ] {
        let page = admin.send_json(method.clone(), path, &json!({})).await;
        expect_client_error(format!("{method} {path}"), page.status, &page.body);
    }

    // A revision that the store never wrote is a conflict in both stores.
    let config = admin.get("/api/v1/instances/forum/config").await.json()["config"].clone();
    for rev in [
        "garbage",
        "",
        "1-",
        "\u{fffd}",
        "99-ffffffffffffffffffffffffffffffff",
    ] {
        let put = admin
            .send_json(
                Method::PUT,
                "/api/v1/instances/forum/config",
                &json!({ "rev": rev, "config": config }),
            )
            .await;
        if put.status != 409 {
            failures.push(format!(
                "a PUT with revision {rev:?}: {} {}",
                put.status, put.body
            ));
        }
        let form = admin
            .post_form(
                "/ui/instances/forum/config/json",
                &[("rev", rev), ("config", &config.to_string())],
            )
            .await;
        if form.status != 409 {
            failures.push(format!(
                "the JSON view with revision {rev:?}: {} {}",
                form.status, form.body
            ));
        }
    }

    assert!(
        failures.is_empty(),
        "not a client error:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        snapshot(&geoffrey, "forum").await,
        before,
        "nothing changed"
    );
}
