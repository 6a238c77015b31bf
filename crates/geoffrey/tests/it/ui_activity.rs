//! The web UI's activity pages over HTTP: dashboard, logs, failed jobs and the backfill,
//! with their JSON endpoints and who may reach them.

use fake_mailchimp::{FakeConfig, FakeMailchimp};
use geoffrey::event::Event;
use geoffrey::queue::{Delivery, NewJob};
use geoffrey::run::Roles;
use geoffrey::store::{LogEntry, Outcome};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use testkit::fixtures;
use testkit::geoffrey::{Mode, TestGeoffrey, relay_apps, relay_rule};
use testkit::in_both_modes;
use testkit::receiver::{Receiver, Reply};
use testkit::ui::{Page, UiClient};
use time::OffsetDateTime;

in_both_modes!(
    activity_pages_render,
    logs_page_through_filters_and_cursors,
    live_rows_are_newer_than_the_cursor,
    log_detail_shows_every_attempt,
    failed_job_replayed_from_the_ui_runs_again,
    discard_removes_a_failed_job,
    replay_all_replays_matching_jobs_only,
    delivery_counters_skip_duplicates,
    dashboard_names_the_slowest_app,
    backfill_from_the_ui_reaches_done,
    backfill_without_mailchimp_says_so,
    backfill_without_api_key_says_so,
);

/// Starts Geoffrey without workers, so that jobs stay where a test puts them.
async fn start_without_workers(mode: Mode) -> TestGeoffrey {
    let roles = Roles {
        server: true,
        worker: false,
    };
    TestGeoffrey::start_with(mode, |_| {}, None, roles).await
}

fn log_entry(at: OffsetDateTime, app: &str, outcome: Outcome, duration_ms: u64) -> LogEntry {
    LogEntry {
        id: geoffrey::store::log_id(at),
        at,
        job_id: uuid::Uuid::now_v7().to_string(),
        event_id: Some("4111".into()),
        event: "topic_created".into(),
        app: app.into(),
        feature: if app == "relay" {
            "post_message"
        } else {
            "subscribe"
        }
        .into(),
        target: None,
        attempt: 1,
        outcome,
        status: Some(200),
        response: Some("ok".into()),
        error: None,
        duration_ms,
        continued: false,
    }
}

/// Writes `count` entries a second apart, ending a minute ago; every third is a mailchimp
/// entry that failed for good. Returns them oldest first.
async fn seed_logs(geoffrey: &TestGeoffrey, instance: &str, count: usize) -> Vec<LogEntry> {
    let end = geoffrey.services.clock.now() - time::Duration::minutes(1);
    let entries: Vec<LogEntry> = (0..count)
        .map(|index| {
            let at = end - time::Duration::seconds((count - index) as i64);
            if index % 3 == 2 {
                log_entry(at, "mailchimp", Outcome::FailedPermanently, 40)
            } else {
                log_entry(at, "relay", Outcome::Succeeded, 10)
            }
        })
        .collect();
    geoffrey
        .services
        .store
        .append_logs(instance, &entries)
        .await
        .unwrap();
    entries
}

/// Returns the ids of the log rows of a page or fragment, in page order.
fn row_ids(page: &Page) -> Vec<String> {
    page.body
        .split("name=\"after\" value=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

/// Returns the target of the "Older entries" link, decoded.
fn older_link(page: &Page) -> Option<String> {
    let text = page.text();
    let start = text.find("<a class=\"button\" href=\"")? + "<a class=\"button\" href=\"".len();
    let rest = &text[start..];
    let end = rest.find("\" rel=\"next\"")?;
    Some(rest[..end].to_string())
}

/// Queues one job per (app, feature) pair and dead-letters it, as a worker would after the
/// last failed attempt. Needs a Geoffrey without workers. Returns the job ids in order.
async fn make_failed_jobs(
    geoffrey: &TestGeoffrey,
    instance: &str,
    jobs: &[(&str, &str)],
) -> Vec<String> {
    let queue = &geoffrey.services.queue;
    let mut ids = Vec::new();
    for (index, (app, feature)) in jobs.iter().enumerate() {
        let event = Event {
            id: Some(format!("77{index}")),
            name: "topic_created".into(),
            kind: "topic".into(),
            body: json!({ "topic": { "id": index, "title": "A failed topic" } }),
            body_sha256: format!("failed-{instance}-{index}"),
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
            content_key: format!("failed-{instance}-{index}"),
        };
        queue.admit(&delivery, vec![job]).await.unwrap();
        let lease = queue.take().await.unwrap().expect("the job just queued");
        queue.dead_letter(&lease, "HTTP 410").await.unwrap();
        ids.push(lease.job.id);
    }
    ids
}

async fn activity_pages_render(mode: Mode) {
    let geoffrey = start_without_workers(mode).await;
    geoffrey.create_instance("forum", json!({})).await;
    let entries = seed_logs(&geoffrey, "forum", 3).await;
    let admin = geoffrey.admin_client().await;

    let pages = [
        ("/ui/instances/forum", "Dashboard"),
        ("/ui/instances/forum/logs", "Logs"),
        ("/ui/instances/forum/failed", "Failed jobs"),
        ("/ui/instances/forum/backfill", "Backfill"),
    ];
    for (path, tab) in pages {
        let page = admin.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let current = format!("aria-current=\"page\">{tab}</a>");
        assert!(page.body.contains(&current), "{path} marks its tab");
    }
    let detail = admin
        .get(&format!("/ui/instances/forum/logs/{}", entries[0].id))
        .await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    for path in [
        "/ui/instances/forum/logs/0190a6c2-0000-7000-8000-000000000000",
        "/ui/instances/forum/logs/..%2FCONFIG",
        "/ui/instances/nosuch/logs",
        "/ui/instances/nosuch",
    ] {
        assert_eq!(admin.get(path).await.status, 404, "{path}");
    }

    let bad = admin.get("/ui/instances/forum/logs?outcome=maybe").await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.text().contains("unknown outcome \"maybe\""),
        "{}",
        bad.body
    );
    let bad = admin
        .get("/api/v1/instances/forum/logs?since=yesterday")
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("invalid since")
    );

    // A form without the CSRF token changes nothing.
    let ids = make_failed_jobs(&geoffrey, "forum", &[("relay", "post_message")]).await;
    let forged = admin
        .http
        .post(format!(
            "{}/ui/instances/forum/failed/{}/discard",
            geoffrey.base_url, ids[0]
        ))
        .header("Cookie", &admin.cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let failed = geoffrey.services.queue.failed_jobs("forum", 10).await;
    assert_eq!(failed.unwrap().len(), 1);
}

async fn logs_page_through_filters_and_cursors(mode: Mode) {
    let geoffrey = start_without_workers(mode).await;
    geoffrey.create_instance("forum", json!({})).await;
    let entries = seed_logs(&geoffrey, "forum", 30).await;
    let newest_first: Vec<String> = entries.iter().rev().map(|e| e.id.clone()).collect();
    let admin = geoffrey.admin_client().await;

    // Three pages of ten, newest first, without overlap.
    let first = admin.get("/ui/instances/forum/logs?limit=10").await;
    assert_eq!(first.status, 200);
    assert_eq!(row_ids(&first), newest_first[..10]);
    assert!(
        first.body.contains("hx-trigger=\"every 2s\""),
        "the first page follows"
    );
    let second_url = older_link(&first).expect("an older page");
    assert!(second_url.contains("limit=10"), "{second_url}");
    let second = admin.get(&second_url).await;
    assert_eq!(row_ids(&second), newest_first[10..20]);
    assert!(
        !second.body.contains("hx-trigger"),
        "older pages do not follow"
    );
    assert!(second.body.contains("Newest entries"));
    let third = admin.get(&older_link(&second).expect("a third page")).await;
    assert_eq!(row_ids(&third), newest_first[20..30]);
    assert_eq!(older_link(&third), None);

    // Filters, and the cursor keeps them.
    let mailchimp = admin
        .get("/ui/instances/forum/logs?app=mailchimp&limit=4")
        .await;
    let expected: Vec<String> = entries
        .iter()
        .rev()
        .filter(|e| e.app == "mailchimp")
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(expected.len(), 10);
    assert_eq!(row_ids(&mailchimp), expected[..4]);
    let next = older_link(&mailchimp).expect("more mailchimp entries");
    assert!(next.contains("app=mailchimp"), "{next}");
    assert_eq!(row_ids(&admin.get(&next).await), expected[4..8]);

    let succeeded = admin
        .get("/ui/instances/forum/logs?outcome=succeeded&feature=post_message&limit=100")
        .await;
    assert_eq!(row_ids(&succeeded).len(), 20);
    let none = admin
        .get("/ui/instances/forum/logs?app=relay&outcome=failed_permanently")
        .await;
    assert!(row_ids(&none).is_empty());
    assert!(none.body.contains("No log entries match"), "{}", none.body);

    // A time range: the entries of the 10th to the 19th second, as a datetime-local sends
    // it, in UTC.
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let since = entries[10].at.replace_millisecond(0).unwrap();
    let until = entries[20].at.replace_millisecond(0).unwrap();
    let range = admin
        .get(&format!(
            "/ui/instances/forum/logs?limit=100&since={}&until={}",
            since.format(&format).unwrap(),
            until.format(&format).unwrap()
        ))
        .await;
    let in_range: Vec<String> = entries[10..20].iter().rev().map(|e| e.id.clone()).collect();
    assert_eq!(row_ids(&range), in_range);

    // The JSON API pages the same way.
    let mut seen = Vec::new();
    let mut url = "/api/v1/instances/forum/logs?limit=10".to_string();
    loop {
        let page = admin.get(&url).await.json();
        for entry in page["entries"].as_array().unwrap() {
            seen.push(entry["id"].as_str().unwrap().to_string());
        }
        match page["next_before"].as_str() {
            Some(cursor) => url = format!("/api/v1/instances/forum/logs?limit=10&before={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    let relay = admin
        .get("/api/v1/instances/forum/logs?app=relay&limit=100")
        .await
        .json();
    assert_eq!(relay["entries"].as_array().unwrap().len(), 20);
    assert!(relay["next_before"].is_null());
}

async fn live_rows_are_newer_than_the_cursor(mode: Mode) {
    let geoffrey = start_without_workers(mode).await;
    geoffrey.create_instance("forum", json!({})).await;
    let entries = seed_logs(&geoffrey, "forum", 6).await;
    let admin = geoffrey.admin_client().await;

    let page = admin.get("/ui/instances/forum/logs").await;
    let live = format!("/ui/instances/forum/logs/live?after={}", entries[5].id);
    assert!(
        page.text().contains(&live),
        "the page polls from its newest entry"
    );

    let newer = admin
        .get(&format!(
            "/ui/instances/forum/logs/live?after={}",
            entries[2].id
        ))
        .await;
    assert_eq!(newer.status, 200);
    let expected: Vec<String> = entries[3..].iter().rev().map(|e| e.id.clone()).collect();
    assert_eq!(
        row_ids(&newer),
        expected,
        "newer entries only, newest first"
    );
    assert!(!newer.body.contains("<html"), "a fragment, not a page");

    // htmx adds the newest row's id to the cursor of the URL; the newest of them counts.
    let both = admin
        .get(&format!(
            "/ui/instances/forum/logs/live?after={}&after={}",
            entries[0].id, entries[4].id
        ))
        .await;
    assert_eq!(row_ids(&both), [entries[5].id.clone()]);
    let nothing = admin.get(&live).await;
    assert_eq!(nothing.status, 200);
    assert!(row_ids(&nothing).is_empty());

    // The filters hold for new entries too.
    let filtered = admin
        .get(&format!(
            "/ui/instances/forum/logs/live?app=mailchimp&after={}",
            entries[0].id
        ))
        .await;
    assert_eq!(
        row_ids(&filtered),
        [entries[5].id.clone(), entries[2].id.clone()]
    );

    // An entry written after the page was read appears in the next poll.
    let later = log_entry(
        geoffrey.services.clock.now(),
        "relay",
        Outcome::Succeeded,
        5,
    );
    geoffrey
        .services
        .store
        .append_logs("forum", std::slice::from_ref(&later))
        .await
        .unwrap();
    assert_eq!(
        row_ids(&admin.get(&live).await),
        std::slice::from_ref(&later.id)
    );

    let missing = admin.get("/ui/instances/forum/logs/live").await;
    assert_eq!(missing.status, 400);
    let api = admin
        .get(&format!(
            "/api/v1/instances/forum/logs?after={}",
            entries[3].id
        ))
        .await
        .json();
    let ids: Vec<&str> = api["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [&entries[4].id, &entries[5].id, &later.id],
        "oldest first"
    );
}

const TOPIC_TEMPLATE: &str = "New topic {{topic.title}}";

async fn relay_instance(mode: Mode, receiver: &Receiver) -> TestGeoffrey {
    let geoffrey = TestGeoffrey::start(mode).await;
    let rule = relay_rule("topics", &receiver.url, &["topic_created"], TOPIC_TEMPLATE);
    geoffrey
        .create_instance("forum", relay_apps(vec![rule]))
        .await;
    geoffrey
}

/// Sends a topic and waits until its job failed after three attempts; returns the job id.
async fn failed_topic(geoffrey: &TestGeoffrey) -> String {
    geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    geoffrey.wait_for_logs("forum", 3).await;
    let queue = &geoffrey.services.queue;
    let failed = testkit::eventually(Duration::from_secs(5), "a failed job", || async {
        let failed = queue.failed_jobs("forum", 10).await.unwrap();
        (!failed.is_empty()).then_some(failed)
    })
    .await;
    failed[0].job.id.clone()
}

async fn log_detail_shows_every_attempt(mode: Mode) {
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(500), Reply::status(502), Reply::status(503)]);
    let geoffrey = relay_instance(mode, &receiver).await;
    let job_id = failed_topic(&geoffrey).await;
    let logs = geoffrey.logs("forum").await;
    let admin = geoffrey.admin_client().await;

    let detail = admin
        .get(&format!("/ui/instances/forum/logs/{}", logs[1].id))
        .await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    let text = detail.text();
    for entry in &logs {
        let link = format!("/ui/instances/forum/logs/{}", entry.id);
        assert!(text.contains(&link), "every attempt is listed: {link}");
    }
    for status in ["500", "502", "503"] {
        assert!(
            text.contains(&format!("<td>{status}</td>")),
            "status {status}"
        );
    }
    assert!(text.contains("HTTP 502"), "the error");
    assert!(text.contains(&job_id));
    assert!(text.contains("This job failed"));
    assert!(
        text.contains("Spring meetup"),
        "the failed job's event is shown"
    );
    // The rule's URL is a secret of the configuration and never appears.
    assert!(!text.contains(&receiver.url), "{text}");
    assert!(!text.contains(fixtures::FIXTURE_SECRET));

    let json = admin
        .get(&format!("/api/v1/instances/forum/logs/{}", logs[0].id))
        .await
        .json();
    assert_eq!(json["entry"]["id"], logs[0].id.as_str());
    let attempts: Vec<u64> = json["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(json["failed_job"]["reason"], "HTTP 503");
    assert_eq!(json["failed_job"]["event"]["name"], "topic_created");
    assert!(!json.to_string().contains(&receiver.url));

    let by_job = admin
        .get(&format!("/ui/instances/forum/logs?job_id={job_id}"))
        .await;
    assert_eq!(row_ids(&by_job).len(), 3);
}

async fn failed_job_replayed_from_the_ui_runs_again(mode: Mode) {
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(500), Reply::status(500), Reply::status(500)]);
    let geoffrey = relay_instance(mode, &receiver).await;
    let job_id = failed_topic(&geoffrey).await;
    let admin = geoffrey.admin_client().await;

    let list = admin.get("/ui/instances/forum/failed").await;
    assert_eq!(list.status, 200);
    let text = list.text();
    assert!(text.contains(&format!("job-{job_id}")), "{text}");
    assert!(text.contains("3 of 3"), "the attempt count");
    assert!(text.contains("HTTP 500"), "the reason");
    assert!(!text.contains(&receiver.url));
    let json = admin.get("/api/v1/instances/forum/failed").await.json();
    assert_eq!(json["failed"][0]["job"]["id"], job_id.as_str());
    assert_eq!(json["total"], 1);

    // The receiver returns 200 from now on, so the replay succeeds.
    let replayed = admin
        .post_form(&format!("/ui/instances/forum/failed/{job_id}/replay"), &[])
        .await;
    assert_eq!(replayed.status, 303, "{}", replayed.body);
    assert_eq!(
        replayed.location.as_deref(),
        Some("/ui/instances/forum/failed?replayed=1")
    );
    let logs = geoffrey.wait_for_logs("forum", 4).await;
    assert_eq!(logs[0].job_id, job_id);
    assert_eq!(logs[0].outcome, Outcome::Succeeded);
    assert_eq!(logs[0].attempt, 1);
    assert_eq!(receiver.received().len(), 4);
    assert!(
        geoffrey
            .services
            .queue
            .failed_jobs("forum", 10)
            .await
            .unwrap()
            .is_empty()
    );
    let after = admin.get("/ui/instances/forum/failed?replayed=1").await;
    assert!(
        after
            .text()
            .contains("Replayed 1 failed job. The log shows how it runs."),
        "{}",
        after.body
    );
    assert!(after.text().contains("No failed jobs."), "{}", after.body);
    let again = admin
        .post_form(&format!("/ui/instances/forum/failed/{job_id}/replay"), &[])
        .await;
    assert_eq!(
        again.status, 404,
        "a job replayed already is no longer failed"
    );
}

async fn discard_removes_a_failed_job(mode: Mode) {
    let geoffrey = start_without_workers(mode).await;
    geoffrey.create_instance("forum", json!({})).await;
    let jobs = [("relay", "post_message"); 3];
    let ids = make_failed_jobs(&geoffrey, "forum", &jobs).await;
    let admin = geoffrey.admin_client().await;
    let queue = &geoffrey.services.queue;
    let remaining = || async {
        let failed = queue.failed_jobs("forum", 10).await.unwrap();
        failed
            .into_iter()
            .map(|item| item.job.id)
            .collect::<Vec<_>>()
    };

    let page = admin
        .post_form(
            &format!("/ui/instances/forum/failed/{}/discard", ids[0]),
            &[],
        )
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(remaining().await, ids[1..]);

    let api = admin
        .send_json(
            Method::DELETE,
            &format!("/api/v1/instances/forum/failed/{}", ids[1]),
            &json!({}),
        )
        .await;
    assert_eq!(api.status, 200, "{}", api.body);
    let api = admin
        .send_json(
            Method::POST,
            &format!("/api/v1/instances/forum/failed/{}/discard", ids[2]),
            &json!({}),
        )
        .await;
    assert_eq!(api.status, 200, "{}", api.body);
    assert!(remaining().await.is_empty());
    assert_eq!(queue.stats(Some("forum")).await.unwrap().ready, 0);

    let missing = admin
        .send_json(
            Method::DELETE,
            &format!("/api/v1/instances/forum/failed/{}", ids[0]),
            &json!({}),
        )
        .await;
    assert_eq!(missing.status, 404);
    let unknown = admin
        .post_form(
            &format!("/ui/instances/forum/failed/{}/explode", ids[0]),
            &[],
        )
        .await;
    assert_eq!(unknown.status, 404);
}

async fn replay_all_replays_matching_jobs_only(mode: Mode) {
    let geoffrey = start_without_workers(mode).await;
    geoffrey.create_instance("forum", json!({})).await;
    let jobs = [
        ("relay", "post_message"),
        ("mailchimp", "subscribe"),
        ("relay", "post_message"),
        ("mailchimp", "leave"),
        ("mailchimp", "subscribe"),
    ];
    let ids = make_failed_jobs(&geoffrey, "forum", &jobs).await;
    let admin = geoffrey.admin_client().await;
    let queue = &geoffrey.services.queue;
    let failed_ids = || async {
        let failed = queue.failed_jobs("forum", 10).await.unwrap();
        failed
            .into_iter()
            .map(|item| item.job.id)
            .collect::<Vec<_>>()
    };

    let list = admin.get("/ui/instances/forum/failed?app=mailchimp").await;
    assert!(
        list.text().contains("3 of 5 failed jobs match"),
        "{}",
        list.body
    );

    // The first post renders a confirmation with the count, and replays nothing.
    let fields = [("app", "mailchimp"), ("feature", "subscribe")];
    let confirm = admin
        .post_form("/ui/instances/forum/failed/replay", &fields)
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(
        confirm
            .text()
            .contains("Replay <strong>2</strong> failed jobs"),
        "{}",
        confirm.body
    );
    assert_eq!(failed_ids().await.len(), 5);

    let done = admin
        .post_form(
            "/ui/instances/forum/failed/replay",
            &[
                ("app", "mailchimp"),
                ("feature", "subscribe"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/ui/instances/forum/failed?app=mailchimp&feature=subscribe&replayed=2")
    );
    assert_eq!(
        failed_ids().await,
        [ids[0].clone(), ids[2].clone(), ids[3].clone()]
    );
    assert_eq!(queue.stats(Some("forum")).await.unwrap().ready, 2);

    let api = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/failed/replay",
            &json!({ "app": "relay" }),
        )
        .await;
    assert_eq!(api.status, 200, "{}", api.body);
    assert_eq!(api.json()["replayed"], 2);
    assert_eq!(failed_ids().await, [ids[3].clone()]);

    let everything = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/failed/replay",
            &json!({}),
        )
        .await;
    assert_eq!(everything.json()["replayed"], 1);
    assert!(failed_ids().await.is_empty());
    assert_eq!(queue.stats(Some("forum")).await.unwrap().ready, 5);
}

async fn delivery_counters_skip_duplicates(mode: Mode) {
    let receiver = Receiver::start().await;
    let geoffrey = relay_instance(mode, &receiver).await;
    let topic = fixtures::signed("topic_created");
    let (status, body) = geoffrey.send("forum", &topic).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("accepted")));
    let (_, body) = geoffrey.send("forum", &topic).await;
    assert_eq!(body["status"], "duplicate");
    let (_, body) = geoffrey
        .send("forum", &fixtures::signed("post_created"))
        .await;
    assert_eq!(
        (body["status"].as_str(), body["jobs"].as_u64()),
        (Some("accepted"), Some(0))
    );
    let (_, body) = geoffrey.send("forum", &fixtures::signed("ping")).await;
    assert_eq!(body["status"], "pong", "a ping is not queued");
    geoffrey.wait_for_logs("forum", 1).await;
    let admin = geoffrey.admin_client().await;

    let stats = admin.get("/api/v1/instances/forum/stats").await.json();
    let hours = stats["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    let sum = |field: &str| -> u64 { hours.iter().map(|h| h[field].as_u64().unwrap()).sum() };
    assert_eq!(sum("deliveries"), 2);
    assert_eq!(hours[23]["deliveries"], 2, "the current hour is last");
    assert_eq!(sum("succeeded"), 1);
    assert_eq!(sum("failed"), 0);

    let list = admin.get("/api/v1/instances").await.json();
    assert_eq!(list["instances"][0]["events_today"], 2);
    let dashboard = admin.get("/ui/instances/forum").await;
    assert!(
        dashboard
            .text()
            .contains("2 deliveries received, 1 job succeeded, 0 jobs failed"),
        "{}",
        dashboard.body
    );
    assert!(dashboard.body.contains("<svg"), "the chart");
    assert!(dashboard.body.contains("<table id=\"hours\""), "the table");
}

async fn dashboard_names_the_slowest_app(mode: Mode) {
    let geoffrey = start_without_workers(mode).await;
    geoffrey.create_instance("forum", json!({})).await;
    let now = geoffrey.services.clock.now();
    let minutes = |m: i64| now - time::Duration::minutes(m);
    let entries = vec![
        log_entry(minutes(5), "relay", Outcome::Succeeded, 20),
        log_entry(minutes(4), "relay", Outcome::Succeeded, 40),
        log_entry(minutes(3), "mailchimp", Outcome::FailedAfterRetries, 900),
        log_entry(minutes(2), "mailchimp", Outcome::Succeeded, 300),
        log_entry(minutes(1), "mailchimp", Outcome::Retrying, 600),
        // Older than a day, so left out.
        log_entry(
            now - time::Duration::hours(30),
            "forms",
            Outcome::Succeeded,
            5000,
        ),
    ];
    geoffrey
        .services
        .store
        .append_logs("forum", &entries)
        .await
        .unwrap();
    make_failed_jobs(&geoffrey, "forum", &[("relay", "post_message")]).await;
    let admin = geoffrey.admin_client().await;

    let stats = admin.get("/api/v1/instances/forum/stats").await.json();
    assert_eq!(stats["slowest_app"], "mailchimp");
    let apps: Vec<(String, u64, u64, u64)> = stats["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["app"].as_str().unwrap().to_string(),
                a["attempts"].as_u64().unwrap(),
                a["average_ms"].as_u64().unwrap(),
                a["max_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        apps,
        [
            ("mailchimp".to_string(), 3, 600, 900),
            ("relay".to_string(), 2, 30, 40)
        ]
    );
    assert_eq!(stats["queue"]["failed"], 1);
    let hours = stats["hours"].as_array().unwrap();
    let sum = |field: &str| -> u64 { hours.iter().map(|h| h[field].as_u64().unwrap()).sum() };
    assert_eq!((sum("succeeded"), sum("failed"), sum("retried")), (3, 1, 1));

    let page = admin.get("/ui/instances/forum").await;
    assert!(
        page.text()
            .contains("Slowest app on average: <strong>mailchimp</strong>")
    );
    assert!(
        page.text().contains("/ui/instances/forum/failed\">1</a>"),
        "{}",
        page.body
    );
}

async fn backfill_from_the_ui_reaches_done(mode: Mode) {
    let users: Vec<Value> = (1..=1_000)
        .map(|id| json!({ "id": id, "username": format!("u{id}"), "email": format!("u{id}@forum-mail.test"), "active": true, "staged": id % 250 == 0 }))
        .collect();
    let discourse = testkit::discourse::FakeDiscourse::start(users, "discourse-api-key").await;
    let fake = FakeMailchimp::start(FakeConfig {
        response_delay: Duration::from_millis(100),
        ..FakeConfig::default()
    })
    .await;
    let geoffrey = TestGeoffrey::start(mode).await;
    let section = json!({
        "api_key": fake.api_key(), "base_url": fake.base_url(), "list_id": "aud1",
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
    let admin = geoffrey.admin_client().await;

    let before = admin.get("/ui/instances/forum/backfill").await;
    assert!(
        before.body.contains("No backfill has run yet"),
        "{}",
        before.body
    );
    assert!(before.body.contains("/backfill/start"));
    assert_eq!(
        admin.get("/api/v1/instances/forum/backfill").await.json(),
        json!({ "configured": true, "progress": null })
    );

    let started = admin
        .post_form("/ui/instances/forum/backfill/start", &[])
        .await;
    assert_eq!(started.status, 303, "{}", started.body);
    assert_eq!(
        started.location.as_deref(),
        Some("/ui/instances/forum/backfill")
    );
    let again = admin
        .post_form("/ui/instances/forum/backfill/start", &[])
        .await;
    assert_eq!(again.status, 409);
    assert!(again.text().contains("already running"), "{}", again.body);
    let running = admin.get("/ui/instances/forum/backfill").await;
    assert!(
        running.body.contains("hx-trigger=\"every 2s\""),
        "a running backfill is followed"
    );
    assert!(running.body.contains("/backfill/pause"));

    let paused = admin
        .post_form("/ui/instances/forum/backfill/pause", &[])
        .await;
    assert_eq!(paused.status, 303, "{}", paused.body);
    let fragment = admin.get("/ui/instances/forum/backfill/progress").await;
    assert_eq!(fragment.status, 200);
    assert!(
        fragment.body.starts_with("<section id=\"backfill\""),
        "{}",
        fragment.body
    );
    assert!(
        fragment.body.contains(">paused</span>"),
        "{}",
        fragment.body
    );
    assert!(
        !fragment.body.contains("hx-trigger"),
        "a paused backfill is not followed"
    );
    assert!(fragment.body.contains("/backfill/resume"));

    let resumed = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/backfill/resume",
            &json!({}),
        )
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    assert_eq!(resumed.json()["progress"]["state"], "running");
    let done = testkit::eventually(
        Duration::from_secs(60),
        "the backfill to finish",
        || async {
            let status = admin.get("/api/v1/instances/forum/backfill").await.json();
            (status["progress"]["state"] == "done").then_some(status["progress"].clone())
        },
    )
    .await;
    assert_eq!(done["read"], 1_000);
    assert_eq!(done["skipped"], 4, "staged users are skipped");
    // A quick pause and resume can leave the old run's page in flight while the new run
    // sends the same page. Mailchimp adds each member once, and the run that records the
    // page first counts it, so some of those members may count as existing.
    let added = done["added"].as_u64().unwrap();
    let existing = done["existing"].as_u64().unwrap();
    assert_eq!(added + existing, 996, "{done}");
    assert_eq!(done["errors"], 0);
    assert_eq!(fake.members("aud1").len(), 996);

    let page = admin.get("/ui/instances/forum/backfill").await;
    assert!(page.body.contains(">done</span>"), "{}", page.body);
    assert!(
        page.body
            .contains(&format!("<dd id=\"added\">{added}</dd>")),
        "{}",
        page.body
    );
    assert!(!page.body.contains("hx-trigger"));
    assert!(page.body.contains("Start over"));
    assert!(page.body.contains(" UTC, updated "), "{}", page.body);
    assert!(
        !page.body.contains("next page"),
        "a finished backfill has no next page"
    );
    let resume_done = admin
        .post_form("/ui/instances/forum/backfill/resume", &[])
        .await;
    assert_eq!(resume_done.status, 409);
}

async fn backfill_without_mailchimp_says_so(mode: Mode) {
    let geoffrey = start_without_workers(mode).await;
    geoffrey.create_instance("forum", json!({})).await;
    let admin = geoffrey.admin_client().await;
    let page = admin.get("/ui/instances/forum/backfill").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"not-configured\""), "{}", page.body);
    assert!(!page.body.contains("/backfill/start"), "no start button");
    let start = admin
        .post_form("/ui/instances/forum/backfill/start", &[])
        .await;
    assert_eq!(start.status, 409);
    assert!(
        start.text().contains("no mailchimp app configured"),
        "{}",
        start.body
    );
    let api = admin
        .send_json(
            Method::POST,
            "/api/v1/instances/forum/backfill/start",
            &json!({}),
        )
        .await;
    assert_eq!(api.status, 409);
    let status = admin.get("/api/v1/instances/forum/backfill").await.json();
    assert_eq!(status, json!({ "configured": false, "progress": null }));
}

async fn backfill_without_api_key_says_so(mode: Mode) {
    let fake = FakeMailchimp::start(FakeConfig::default()).await;
    let geoffrey = start_without_workers(mode).await;
    let section = json!({
        "api_key": fake.api_key(), "base_url": fake.base_url(), "list_id": "aud1",
    });
    geoffrey
        .create_instance("forum", json!({ "mailchimp": section }))
        .await;
    let admin = geoffrey.admin_client().await;
    let page = admin.get("/ui/instances/forum/backfill").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("id=\"missing-api-key\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("/ui/instances/forum/config"));
    assert!(!page.body.contains("/backfill/start"), "no start button");
    assert!(!page.body.contains("not-configured"));

    geoffrey
        .edit_config("forum", |document| {
            document["discourse_api_key"] = json!("discourse-api-key");
        })
        .await;
    let page = admin.get("/ui/instances/forum/backfill").await;
    assert!(!page.body.contains("missing-api-key"), "{}", page.body);
    assert!(page.body.contains("/backfill/start"));
}

#[tokio::test]
async fn members_reach_their_own_instance_only() {
    let geoffrey = start_without_workers(Mode::Distributed).await;
    geoffrey.create_instance("alpha", json!({})).await;
    geoffrey.create_instance("beta", json!({})).await;
    let beta_logs = seed_logs(&geoffrey, "beta", 2).await;
    let beta_failed = make_failed_jobs(&geoffrey, "beta", &[("relay", "post_message")]).await;
    let couch = geoffrey.couch.as_ref().unwrap();
    couch.create_member("ann", "ann-password", "alpha").await;
    let ann = UiClient::sign_in(&geoffrey.base_url, "ann", "ann-password")
        .await
        .expect("a CouchDB user signs in");

    for path in [
        "/ui/instances/alpha",
        "/ui/instances/alpha/logs",
        "/ui/instances/alpha/failed",
        "/ui/instances/alpha/backfill",
        "/api/v1/instances/alpha/stats",
        "/api/v1/instances/alpha/logs",
    ] {
        assert_eq!(ann.get(path).await.status, 200, "{path}");
    }

    let job = &beta_failed[0];
    let entry = &beta_logs[0].id;
    let reads = [
        "/ui/instances/beta".to_string(),
        "/ui/instances/beta/logs".to_string(),
        format!("/ui/instances/beta/logs/{entry}"),
        format!("/ui/instances/beta/logs/live?after={entry}"),
        "/ui/instances/beta/failed".to_string(),
        "/ui/instances/beta/backfill".to_string(),
        "/ui/instances/beta/backfill/progress".to_string(),
        "/api/v1/instances/beta/stats".to_string(),
        "/api/v1/instances/beta/logs".to_string(),
        format!("/api/v1/instances/beta/logs/{entry}"),
        "/api/v1/instances/beta/failed".to_string(),
        "/api/v1/instances/beta/backfill".to_string(),
    ];
    for path in &reads {
        let page = ann.get(path).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        assert!(!page.body.contains(job), "{path}");
        assert!(!page.body.contains(entry), "{path}");
    }
    let forms = [
        format!("/ui/instances/beta/failed/{job}/replay"),
        format!("/ui/instances/beta/failed/{job}/discard"),
        "/ui/instances/beta/failed/replay".to_string(),
        "/ui/instances/beta/backfill/start".to_string(),
    ];
    for path in &forms {
        let page = ann.post_form(path, &[("confirm", "yes")]).await;
        assert_eq!(page.status, 404, "{path}");
    }
    let calls = [
        (
            Method::POST,
            format!("/api/v1/instances/beta/failed/{job}/replay"),
        ),
        (
            Method::POST,
            format!("/api/v1/instances/beta/failed/{job}/discard"),
        ),
        (
            Method::DELETE,
            format!("/api/v1/instances/beta/failed/{job}"),
        ),
        (
            Method::POST,
            "/api/v1/instances/beta/failed/replay".to_string(),
        ),
        (
            Method::POST,
            "/api/v1/instances/beta/backfill/start".to_string(),
        ),
    ];
    for (method, path) in calls {
        let response = ann.send_json(method.clone(), &path, &json!({})).await;
        assert_eq!(response.status, 404, "{method} {path}");
    }
    let failed = geoffrey
        .services
        .queue
        .failed_jobs("beta", 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1, "beta's failed job stays");
    assert_eq!(&failed[0].job.id, job);
    let stats = geoffrey.services.queue.stats(Some("beta")).await.unwrap();
    assert_eq!(stats.ready, 0, "nothing was replayed");
}

/// The logs page in a real headless Chromium: an entry written while the page is open
/// appears at the top through htmx's polling, and a filtered page shows only matching new
/// entries. Screenshots of the activity pages go to the target folder.
#[tokio::test]
async fn new_log_entries_appear_in_chromium() {
    use testkit::browser::Browser;
    let geoffrey = start_without_workers(Mode::Embedded).await;
    geoffrey.create_instance("forum", json!({})).await;
    seed_logs(&geoffrey, "forum", 12).await;
    make_failed_jobs(
        &geoffrey,
        "forum",
        &[("relay", "post_message"), ("mailchimp", "subscribe")],
    )
    .await;
    let screenshots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();

    let browser = Browser::start().await;
    browser
        .open(&format!("{}/ui/instances/forum/logs", geoffrey.base_url))
        .await;
    browser.fill("user", "admin").await;
    browser.fill("password", testkit::ui::ADMIN_PASSWORD).await;
    browser.click_button("Sign in").await;
    browser
        .wait_for_text("Logs of forum", Duration::from_secs(10))
        .await;

    let mut first = log_entry(
        geoffrey.services.clock.now(),
        "relay",
        Outcome::Succeeded,
        7,
    );
    first.event = "first_live_event".into();
    let store = &geoffrey.services.store;
    store
        .append_logs("forum", std::slice::from_ref(&first))
        .await
        .unwrap();
    browser
        .wait_for_text("first_live_event", Duration::from_secs(10))
        .await;
    // The next poll starts after the new row, so the row is not added twice.
    let mut second = log_entry(geoffrey.services.clock.now(), "relay", Outcome::Retrying, 8);
    second.event = "second_live_event".into();
    store
        .append_logs("forum", std::slice::from_ref(&second))
        .await
        .unwrap();
    browser
        .wait_for_text("second_live_event", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rows = browser.text("#log-rows").await;
    assert_eq!(rows.matches("first_live_event").count(), 1, "{rows}");
    let order = (
        rows.find("second_live_event"),
        rows.find("first_live_event"),
    );
    assert!(
        matches!(order, (Some(a), Some(b)) if a < b),
        "newest first: {rows}"
    );
    browser.screenshot(screenshots.join("logs.png")).await;

    browser
        .open(&format!(
            "{}/ui/instances/forum/logs?app=mailchimp",
            geoffrey.base_url
        ))
        .await;
    browser
        .wait_for_text("Clear the filters", Duration::from_secs(10))
        .await;
    let mut relay = log_entry(
        geoffrey.services.clock.now(),
        "relay",
        Outcome::Succeeded,
        1,
    );
    relay.event = "relay_live_event".into();
    let mut mailchimp = log_entry(
        geoffrey.services.clock.now(),
        "mailchimp",
        Outcome::Succeeded,
        1,
    );
    mailchimp.event = "mailchimp_live_event".into();
    store
        .append_logs("forum", &[relay, mailchimp])
        .await
        .unwrap();
    browser
        .wait_for_text("mailchimp_live_event", Duration::from_secs(10))
        .await;
    assert!(!browser.page_text().await.contains("relay_live_event"));

    for (path, file) in [
        ("/ui/instances/forum", "dashboard.png"),
        ("/ui/instances/forum/failed", "failed.png"),
        (
            "/ui/instances/forum/backfill",
            "backfill-not-configured.png",
        ),
    ] {
        browser.open(&format!("{}{path}", geoffrey.base_url)).await;
        browser
            .wait_for_text("forum", Duration::from_secs(10))
            .await;
        browser.screenshot(screenshots.join(file)).await;
    }
}

/// The logs table fits Chromium's 1280-pixel window, so that the error column shows without
/// scrolling the table sideways, even for the widest outcome, feature and event names.
#[tokio::test]
async fn log_table_fits_a_desktop_window() {
    use testkit::browser::Browser;
    let geoffrey = start_without_workers(Mode::Embedded).await;
    geoffrey.create_instance("forum", json!({})).await;
    let mut entries = Vec::new();
    for app in ["relay", "mailchimp"] {
        let mut entry = log_entry(
            geoffrey.services.clock.now(),
            app,
            Outcome::FailedAfterRetries,
            12_345,
        );
        if app == "relay" {
            entry.target = Some("new-topics".into());
        }
        entry.event = "user_confirmed_email".into();
        entry.status = None;
        entry.error = Some(
            "connection failed: client error (Connect): tcp connect error: Connection \
             refused (os error 111)"
                .into(),
        );
        entries.push(entry);
    }
    geoffrey
        .services
        .store
        .append_logs("forum", &entries)
        .await
        .unwrap();

    let browser = Browser::start().await;
    browser
        .open(&format!("{}/ui/instances/forum/logs", geoffrey.base_url))
        .await;
    browser.fill("user", "admin").await;
    browser.fill("password", testkit::ui::ADMIN_PASSWORD).await;
    browser.click_button("Sign in").await;
    browser
        .wait_for_text("Connection refused", Duration::from_secs(10))
        .await;
    let widths = browser
        .client()
        .execute(
            "const table = document.querySelector('table.log');
             const error = table.querySelector('tbody td:last-child');
             return [table.scrollWidth, table.parentElement.clientWidth,
                     error.getBoundingClientRect().width];",
            vec![],
        )
        .await
        .unwrap();
    let table = widths[0].as_u64().unwrap();
    let container = widths[1].as_u64().unwrap();
    assert!(
        table <= container,
        "the table is {table} px wide in a {container} px container"
    );
    let error = widths[2].as_f64().unwrap();
    assert!(error >= 160.0, "the error column is {error} px wide");
}
