//! The relay app through the whole pipeline: intake, queue, worker, a local chat receiver,
//! and the log entries each attempt leaves.

use geoffrey::clock::ManualClock;
use geoffrey::run::Roles;
use geoffrey::store::{LogEntry, Outcome};
use serde_json::json;
use std::time::Duration;
use testkit::fixtures;
use testkit::geoffrey::{Mode, TestGeoffrey, relay_apps, relay_rule};
use testkit::receiver::{Receiver, Reply};

const TOPIC_TEMPLATE: &str = "New topic {{topic.title}} by {{topic.created_by.username}}";

async fn relay_to(mode: Mode, receiver: &Receiver) -> TestGeoffrey {
    let geoffrey = TestGeoffrey::start(mode).await;
    let rule = relay_rule("topics", &receiver.url, &["topic_created"], TOPIC_TEMPLATE);
    geoffrey
        .create_instance("forum", relay_apps(vec![rule]))
        .await;
    geoffrey
}

fn outcomes(logs: &[LogEntry]) -> Vec<(u32, Outcome)> {
    let mut outcomes: Vec<_> = logs
        .iter()
        .map(|entry| (entry.attempt, entry.outcome))
        .collect();
    outcomes.sort_by_key(|(attempt, _)| *attempt);
    outcomes
}

async fn topic_reaches_the_chat(mode: Mode) {
    let receiver = Receiver::start().await;
    let geoffrey = relay_to(mode, &receiver).await;
    let (status, _) = geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    assert_eq!(status, 200);

    let logs = geoffrey.wait_for_logs("forum", 1).await;
    assert_eq!(
        receiver.texts(),
        ["New topic Spring meetup - who's coming? 🌱 by ada_quill"]
    );
    let entry = &logs[0];
    assert_eq!(entry.outcome, Outcome::Succeeded);
    assert_eq!(entry.status, Some(200));
    assert_eq!(entry.event, "topic_created");
    assert_eq!(entry.event_id.as_deref(), Some("4111"));
    assert_eq!(
        (entry.app.as_str(), entry.feature.as_str()),
        ("relay", "post_message")
    );
    assert_eq!(entry.target.as_deref(), Some("topics"));
    assert_eq!(entry.attempt, 1);
    assert_eq!(
        geoffrey.services.queue.stats(None).await.unwrap(),
        Default::default()
    );
}

async fn unsubscribed_events_make_no_jobs(mode: Mode) {
    let receiver = Receiver::start().await;
    let geoffrey = relay_to(mode, &receiver).await;
    let (status, body) = geoffrey
        .send("forum", &fixtures::signed("post_created"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["jobs"], 0);
}

async fn server_error_is_retried_until_success(mode: Mode) {
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(503), Reply::status(429)]);
    let geoffrey = relay_to(mode, &receiver).await;
    geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;

    let logs = geoffrey.wait_for_logs("forum", 3).await;
    assert_eq!(
        outcomes(&logs),
        [
            (1, Outcome::Retrying),
            (2, Outcome::Retrying),
            (3, Outcome::Succeeded)
        ]
    );
    let statuses: Vec<_> = logs.iter().rev().map(|entry| entry.status).collect();
    assert_eq!(statuses, [Some(503), Some(429), Some(200)]);
    assert_eq!(receiver.received().len(), 3);
}

async fn client_error_fails_permanently_without_retry(mode: Mode) {
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(404));
    let geoffrey = relay_to(mode, &receiver).await;
    geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;

    let logs = geoffrey.wait_for_logs("forum", 1).await;
    assert_eq!(outcomes(&logs), [(1, Outcome::FailedPermanently)]);
    assert_eq!(logs[0].status, Some(404));
    // The log entry is written just before the job is dead-lettered.
    let stats = testkit::eventually(Duration::from_secs(5), "a failed job", || async {
        let stats = geoffrey.services.queue.stats(Some("forum")).await.unwrap();
        (stats.failed == 1).then_some(stats)
    })
    .await;
    assert_eq!(
        (stats.ready, stats.delayed, stats.leased, stats.failed),
        (0, 0, 0, 1)
    );
    let failed = geoffrey
        .services
        .queue
        .failed_jobs("forum", 10)
        .await
        .unwrap();
    assert_eq!(failed[0].reason, "HTTP 404");
}

async fn exhausted_retries_become_a_replayable_failed_job(mode: Mode) {
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(500), Reply::status(502), Reply::status(500)]);
    let geoffrey = relay_to(mode, &receiver).await;
    geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;

    let logs = geoffrey.wait_for_logs("forum", 3).await;
    assert_eq!(
        outcomes(&logs),
        [
            (1, Outcome::Retrying),
            (2, Outcome::Retrying),
            (3, Outcome::FailedAfterRetries)
        ]
    );
    let queue = &geoffrey.services.queue;
    // The log entry is written just before the job is dead-lettered.
    let failed = testkit::eventually(Duration::from_secs(5), "a failed job", || async {
        let failed = queue.failed_jobs("forum", 10).await.unwrap();
        (!failed.is_empty()).then_some(failed)
    })
    .await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].job.attempt, 3);

    queue.replay("forum", &failed[0].job.id).await.unwrap();
    let logs = geoffrey.wait_for_logs("forum", 4).await;
    assert_eq!(logs[0].outcome, Outcome::Succeeded);
    assert_eq!(logs[0].attempt, 1);
    assert_eq!(logs[0].job_id, failed[0].job.id);
    assert!(queue.failed_jobs("forum", 10).await.unwrap().is_empty());
}

async fn unreachable_chat_is_a_transient_failure(mode: Mode) {
    // A port that was just free has no listener, so the connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let geoffrey = TestGeoffrey::start(mode).await;
    let rule = relay_rule("topics", &url, &["topic_created"], TOPIC_TEMPLATE);
    geoffrey
        .create_instance("forum", relay_apps(vec![rule]))
        .await;
    geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;

    let logs = geoffrey.wait_for_logs("forum", 3).await;
    assert_eq!(outcomes(&logs)[2], (3, Outcome::FailedAfterRetries));
    for entry in &logs {
        assert_eq!(entry.status, None);
        let error = entry.error.as_deref().unwrap();
        assert!(error.starts_with("connection failed"), "{error}");
        assert!(!error.contains(&url), "the URL is a secret: {error}");
    }
}

async fn slow_chat_times_out_and_is_retried(mode: Mode) {
    let receiver = Receiver::start().await;
    receiver.script([Reply::after(Duration::from_secs(3), 200)]);
    let geoffrey = TestGeoffrey::start_with(
        mode,
        |settings| settings.worker.job_timeout = Duration::from_millis(300),
        None,
        Roles::ALL,
    )
    .await;
    let rule = relay_rule("topics", &receiver.url, &["topic_created"], TOPIC_TEMPLATE);
    geoffrey
        .create_instance("forum", relay_apps(vec![rule]))
        .await;
    geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;

    let logs = geoffrey.wait_for_logs("forum", 2).await;
    assert_eq!(
        outcomes(&logs),
        [(1, Outcome::Retrying), (2, Outcome::Succeeded)]
    );
    let error = logs[1].error.as_deref().unwrap();
    assert!(error.contains("timed out"), "{error}");
}

async fn retry_waits_for_the_backoff_delay(mode: Mode) {
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(503)]);
    let clock = ManualClock::starting_at(1_800_000_000_000);
    let geoffrey = TestGeoffrey::start_with(
        mode,
        |settings| {
            settings.worker.backoff_base = Duration::from_secs(60);
            settings.worker.backoff_max = Duration::from_secs(60);
        },
        Some(clock.clone()),
        Roles::ALL,
    )
    .await;
    let rule = relay_rule("topics", &receiver.url, &["topic_created"], TOPIC_TEMPLATE);
    geoffrey
        .create_instance("forum", relay_apps(vec![rule]))
        .await;
    geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    geoffrey.wait_for_logs("forum", 1).await;

    // Workers poll every 20 ms; in half a second of real time the delay has not passed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(
        geoffrey.services.queue.stats(None).await.unwrap().delayed,
        1
    );

    clock.advance(Duration::from_secs(60));
    let logs = geoffrey.wait_for_logs("forum", 2).await;
    assert_eq!(
        outcomes(&logs),
        [(1, Outcome::Retrying), (2, Outcome::Succeeded)]
    );
}

async fn filters_select_events(mode: Mode) {
    let receiver = Receiver::start().await;
    let geoffrey = TestGeoffrey::start(mode).await;
    let mut other_category = relay_rule("elsewhere", &receiver.url, &["post_created"], "x");
    other_category["category_ids"] = json!([999_999]);
    let everything = relay_rule("all", &receiver.url, &["*"], "{{event.name}}");
    geoffrey
        .create_instance("forum", relay_apps(vec![other_category, everything]))
        .await;

    let (_, body) = geoffrey
        .send("forum", &fixtures::signed("post_created"))
        .await;
    assert_eq!(body["jobs"], 1, "only the catch-all rule matches");
    let (_, body) = geoffrey.send("forum", &fixtures::signed("ping")).await;
    assert_eq!(body["status"], "pong", "a ping reaches no rule");
    geoffrey.wait_for_logs("forum", 1).await;
    assert_eq!(receiver.texts(), ["post_created"]);
}

async fn shutdown_lets_running_jobs_finish(mode: Mode) {
    let receiver = Receiver::start().await;
    receiver.script([Reply::after(Duration::from_millis(500), 200)]);
    let mut geoffrey = relay_to(mode, &receiver).await;
    geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    testkit::eventually(Duration::from_secs(5), "the chat request", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;

    geoffrey.stop().await;
    let logs = geoffrey.logs("forum").await;
    assert_eq!(outcomes(&logs), [(1, Outcome::Succeeded)]);
    assert_eq!(
        geoffrey.services.queue.stats(None).await.unwrap(),
        Default::default()
    );
}

async fn shutdown_releases_jobs_that_outlast_the_grace_period(mode: Mode) {
    let receiver = Receiver::start().await;
    receiver.script([Reply::after(Duration::from_secs(5), 200)]);
    let mut geoffrey = TestGeoffrey::start_with(
        mode,
        |settings| {
            settings.worker.shutdown_grace = Duration::from_millis(200);
            settings.worker.job_timeout = Duration::from_secs(10);
            settings.worker.lease = Duration::from_secs(20);
        },
        None,
        Roles::ALL,
    )
    .await;
    let rule = relay_rule("topics", &receiver.url, &["topic_created"], TOPIC_TEMPLATE);
    geoffrey
        .create_instance("forum", relay_apps(vec![rule]))
        .await;
    geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    testkit::eventually(Duration::from_secs(5), "the chat request", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;

    let started = std::time::Instant::now();
    geoffrey.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "stop waited for the slow job"
    );
    assert!(geoffrey.logs("forum").await.is_empty());
    let queue = &geoffrey.services.queue;
    assert_eq!(
        queue.stats(None).await.unwrap().ready,
        1,
        "the job is back in the queue"
    );
    let lease = queue.take().await.unwrap().expect("released job");
    assert_eq!(
        lease.job.attempt, 1,
        "the interrupted attempt does not count"
    );
}

testkit::in_both_modes!(
    topic_reaches_the_chat,
    unsubscribed_events_make_no_jobs,
    server_error_is_retried_until_success,
    client_error_fails_permanently_without_retry,
    exhausted_retries_become_a_replayable_failed_job,
    unreachable_chat_is_a_transient_failure,
    slow_chat_times_out_and_is_retried,
    retry_waits_for_the_backoff_delay,
    filters_select_events,
    shutdown_lets_running_jobs_finish,
    shutdown_releases_jobs_that_outlast_the_grace_period,
);

/// A worker whose outcome cannot be recorded because the store is down keeps the job and
/// records it when the store returns, so no chat message is posted twice.
#[tokio::test]
async fn store_outage_posts_each_message_once() {
    let receiver = Receiver::start().await;
    receiver.always(Reply::after(Duration::from_millis(400), 200));
    let mut geoffrey = TestGeoffrey::start_with(
        Mode::Distributed,
        |settings| {
            settings.worker.concurrency = 2;
            settings.worker.lease = Duration::from_secs(20);
        },
        None,
        Roles::ALL,
    )
    .await;
    let rule = relay_rule("all", &receiver.url, &["*"], "{{event.id}}");
    geoffrey
        .create_instance("forum", relay_apps(vec![rule]))
        .await;
    for name in [
        "topic_created",
        "post_created",
        "user_created",
        "user_updated",
    ] {
        let (status, _) = geoffrey.send("forum", &fixtures::signed(name)).await;
        assert_eq!(status, 200);
    }
    // Both workers are in the middle of a chat request when the store goes down.
    testkit::eventually(Duration::from_secs(5), "two chat requests", || async {
        (receiver.received().len() == 2).then_some(())
    })
    .await;
    geoffrey.couch.as_mut().unwrap().kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.received().len(),
        2,
        "no job was taken while the store was down"
    );
    geoffrey.couch.as_mut().unwrap().restart();

    let logs = testkit::eventually(Duration::from_secs(30), "four outcomes", || async {
        let logs = geoffrey
            .services
            .store
            .query_logs(
                "forum",
                &geoffrey::store::LogQuery {
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .ok()?;
        (logs.entries.len() == 4).then_some(logs.entries)
    })
    .await;
    assert!(
        logs.iter()
            .all(|entry| entry.outcome == Outcome::Succeeded && entry.attempt == 1)
    );
    let mut texts = receiver.texts();
    texts.sort();
    assert_eq!(
        texts,
        ["4103", "4109", "4111", "4112"],
        "each delivery posted once"
    );
}

/// A worker that cannot acknowledge a finished job because Redis is down keeps trying until
/// Redis returns, so the job does not run again when its lease expires.
#[tokio::test]
async fn queue_outage_after_a_job_runs_it_once() {
    let receiver = Receiver::start().await;
    receiver.always(Reply::after(Duration::from_millis(600), 200));
    let mut geoffrey = TestGeoffrey::start_with(
        Mode::Distributed,
        |settings| settings.worker.lease = Duration::from_secs(10),
        None,
        Roles::ALL,
    )
    .await;
    let rule = relay_rule("topics", &receiver.url, &["topic_created"], TOPIC_TEMPLATE);
    geoffrey
        .create_instance("forum", relay_apps(vec![rule]))
        .await;
    let (status, _) = geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    assert_eq!(status, 200);
    testkit::eventually(Duration::from_secs(5), "the chat request", || async {
        (receiver.received().len() == 1).then_some(())
    })
    .await;
    // Redis goes down while the chat responds, so the acknowledgement meets the outage.
    geoffrey.redis.as_mut().unwrap().kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    geoffrey.redis.as_mut().unwrap().restart();

    // Past the lease of 10 s, a job still leased would have run again.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(receiver.received().len(), 1, "posted once");
    let logs = geoffrey.logs("forum").await;
    assert_eq!(outcomes(&logs), [(1, Outcome::Succeeded)]);
    let stats = geoffrey.services.queue.stats(None).await.unwrap();
    assert_eq!(stats, Default::default(), "the job was acknowledged");
}

/// Checks that a job whose worker recorded its success but died before acknowledging it is
/// acknowledged without posting again when its lease expires.
async fn recorded_success_is_not_run_again(mode: Mode) {
    let receiver = Receiver::start().await;
    let server_only = Roles {
        server: true,
        worker: false,
    };
    let short_lease = |settings: &mut geoffrey::config::Settings| {
        settings.worker.job_timeout = Duration::from_millis(500);
        settings.worker.lease = Duration::from_secs(1);
    };
    let geoffrey = TestGeoffrey::start_with(mode, short_lease, None, server_only).await;
    let rule = relay_rule("topics", &receiver.url, &["topic_created"], TOPIC_TEMPLATE);
    geoffrey
        .create_instance("forum", relay_apps(vec![rule]))
        .await;
    let (status, _) = geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    assert_eq!(status, 200);

    // A worker takes the job, posts, records the success, and dies before the acknowledgement.
    let services = &geoffrey.services;
    let lease = services
        .queue
        .take()
        .await
        .unwrap()
        .expect("the queued job");
    let at = services.clock.now();
    let entry = LogEntry {
        id: geoffrey::store::log_id(at),
        at,
        job_id: lease.job.id.clone(),
        event_id: lease.job.spec.event.id.clone(),
        event: lease.job.spec.event.name.clone(),
        app: "relay".into(),
        feature: "post_message".into(),
        target: Some("topics".into()),
        attempt: lease.job.attempt,
        outcome: Outcome::Succeeded,
        status: Some(200),
        response: None,
        error: None,
        duration_ms: 5,
        continued: false,
    };
    services.store.append_logs("forum", &[entry]).await.unwrap();

    let workers = Roles {
        server: false,
        worker: true,
    };
    let running = geoffrey::run::start_with(services.clone(), None, workers)
        .await
        .unwrap();
    testkit::eventually(Duration::from_secs(10), "the job acknowledged", || async {
        let stats = services.queue.stats(None).await.ok()?;
        (stats == Default::default()).then_some(())
    })
    .await;
    running.stop().await;
    assert!(receiver.received().is_empty(), "the chat got nothing more");
    assert_eq!(geoffrey.logs("forum").await.len(), 1);
}

/// Checks that a success clears a misconfigured mark that another process, or an earlier run,
/// left in the store.
async fn success_clears_a_mark_set_elsewhere(mode: Mode) {
    let receiver = Receiver::start().await;
    let geoffrey = relay_to(mode, &receiver).await;
    let store = geoffrey.services.store.as_ref();
    let mark = geoffrey::app_status::misconfigured("an earlier failure", "job-0");
    geoffrey::app_status::write(store, "forum", "relay", &mark)
        .await
        .unwrap();
    geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    geoffrey.wait_for_logs("forum", 1).await;
    let status = testkit::eventually(Duration::from_secs(5), "the mark cleared", || async {
        let status = geoffrey::app_status::read(store, "forum", "relay")
            .await
            .ok()??;
        status.misconfigured.is_none().then_some(status)
    })
    .await;
    assert_eq!(status.misconfigured, None);
}

async fn metrics_count_deliveries_and_attempts(mode: Mode) {
    let receiver = Receiver::start().await;
    let geoffrey = relay_to(mode, &receiver).await;
    let delivery = fixtures::signed("topic_created");
    geoffrey.send("forum", &delivery).await;
    geoffrey.send("forum", &delivery).await;
    let mut forged = fixtures::signed("post_created");
    forged.body[10] ^= 1;
    let (status, _) = geoffrey.send("forum", &forged).await;
    assert_eq!(status, 401);
    geoffrey.wait_for_logs("forum", 1).await;
    testkit::eventually(Duration::from_secs(5), "an empty queue", || async {
        let stats = geoffrey.services.queue.stats(None).await.unwrap();
        (stats == Default::default()).then_some(())
    })
    .await;

    let response = geoffrey
        .http
        .get(format!("{}/metrics", geoffrey.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let expected = [
        r#"geoffrey_deliveries_total{outcome="accepted",reason=""} 1"#,
        r#"geoffrey_deliveries_total{outcome="duplicate",reason=""} 1"#,
        r#"geoffrey_deliveries_total{outcome="rejected",reason="unauthorized"} 1"#,
        r#"geoffrey_job_attempts_total{app="relay",feature="post_message",outcome="succeeded"} 1"#,
        r#"geoffrey_job_attempt_duration_seconds_count{app="relay",feature="post_message"} 1"#,
        r#"geoffrey_third_party_responses_total{app="relay",class="2xx"} 1"#,
        r#"geoffrey_queue_jobs{instance="forum",state="ready"} 0"#,
        r#"geoffrey_queue_jobs{instance="forum",state="failed"} 0"#,
    ];
    for line in expected {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line} in:\n{text}"
        );
    }
}

testkit::in_both_modes!(
    metrics_count_deliveries_and_attempts,
    recorded_success_is_not_run_again,
    success_clears_a_mark_set_elsewhere,
);
