//! Webhook intake over HTTP: signatures, errors, duplicates, the original route, and 503 when
//! the queue cannot store the jobs.

use geoffrey::clock::ManualClock;
use geoffrey::run::Roles;
use serde_json::json;
use std::time::Duration;
use testkit::fixtures::{self, Delivery};
use testkit::geoffrey::{Mode, TestGeoffrey, relay_apps, relay_rule};

/// Returns an `apps` section with a relay rule for every event, so each accepted delivery
/// becomes one job.
fn catch_all() -> serde_json::Value {
    let mut rule = relay_rule("all", "http://127.0.0.1:9/hook", &["*"], "{{event.name}}");
    rule["include_private_messages"] = json!(true);
    relay_apps(vec![rule])
}

/// Server only, so jobs stay in the queue where the test can count them.
async fn server(mode: Mode) -> TestGeoffrey {
    let geoffrey = TestGeoffrey::start_with(
        mode,
        |_| {},
        None,
        Roles {
            server: true,
            worker: false,
        },
    )
    .await;
    geoffrey.create_instance("forum", catch_all()).await;
    geoffrey
}

async fn ready_jobs(geoffrey: &TestGeoffrey) -> u64 {
    geoffrey
        .services
        .queue
        .stats(Some("forum"))
        .await
        .unwrap()
        .ready
}

async fn all_signed_fixtures_are_accepted(mode: Mode) {
    let geoffrey = server(mode).await;
    let deliveries = fixtures::all_signed();
    assert_eq!(deliveries.len(), 12);
    for delivery in &deliveries {
        let (status, body) = geoffrey.send("forum", delivery).await;
        assert_eq!(status, 200, "{}: {body}", delivery.name);
        let expected = if delivery.event() == "ping" {
            "pong"
        } else {
            "accepted"
        };
        assert_eq!(body["status"], expected, "{}: {body}", delivery.name);
        assert_eq!(body["event"], delivery.event(), "{}", delivery.name);
    }
    // Ten events become jobs; the two pings do not.
    assert_eq!(ready_jobs(&geoffrey).await, 10);
}

async fn changed_byte_is_rejected(mode: Mode) {
    let geoffrey = server(mode).await;
    let mut delivery = fixtures::signed("post_created");
    let last = delivery.body.len() - 2;
    delivery.body[last] ^= 0x01;
    let (status, body) = geoffrey.send("forum", &delivery).await;
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("does not match"),
        "{body}"
    );
    assert_eq!(ready_jobs(&geoffrey).await, 0);
}

async fn wrong_secret_is_rejected(mode: Mode) {
    let geoffrey = server(mode).await;
    let mut delivery = fixtures::signed("user_created");
    let signature = geoffrey::api::signature::sign(b"another-secret-value", &delivery.body);
    delivery.set_header("X-Discourse-Event-Signature", &signature);
    let (status, _) = geoffrey.send("forum", &delivery).await;
    assert_eq!(status, 401);
    assert_eq!(ready_jobs(&geoffrey).await, 0);
}

async fn missing_signature_is_rejected_unless_opted_in(mode: Mode) {
    let geoffrey = server(mode).await;
    let mut delivery = fixtures::signed("user_created");
    delivery.remove_header("X-Discourse-Event-Signature");
    let (status, body) = geoffrey.send("forum", &delivery).await;
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("missing"),
        "{body}"
    );

    geoffrey
        .edit_config("forum", |document| {
            document["accept_unsigned"] = json!(true)
        })
        .await;
    let (status, body) = geoffrey.send("forum", &delivery).await;
    assert_eq!(status, 200, "{body}");

    // Opting in to unsigned deliveries still rejects a wrong signature.
    let mut forged = fixtures::signed("post_created");
    forged.set_header(
        "X-Discourse-Event-Signature",
        &format!("sha256={}", "0".repeat(64)),
    );
    let (status, _) = geoffrey.send("forum", &forged).await;
    assert_eq!(status, 401);
}

async fn form_content_type_still_parses_json(mode: Mode) {
    let geoffrey = server(mode).await;
    let (status, body) = geoffrey
        .send("forum", &fixtures::signed("ping_form_urlencoded"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "pong");
}

async fn unknown_instance_is_not_found(mode: Mode) {
    let geoffrey = server(mode).await;
    for name in ["nosuchforum", "Bad%20Name"] {
        let (status, body) = geoffrey.send(name, &fixtures::signed("ping")).await;
        assert_eq!(status, 404, "{name}");
        assert!(
            body["error"].as_str().unwrap().contains("unknown instance"),
            "{body}"
        );
    }
}

fn signed_body(event: &str, kind: &str, body: &[u8]) -> Delivery {
    let mut delivery = Delivery {
        name: event.into(),
        body: body.to_vec(),
        headers: vec![],
    };
    delivery.set_header("X-Discourse-Event", event);
    delivery.set_header("X-Discourse-Event-Type", kind);
    let signature = geoffrey::api::signature::sign(fixtures::FIXTURE_SECRET.as_bytes(), body);
    delivery.set_header("X-Discourse-Event-Signature", &signature);
    delivery
}

async fn malformed_json_is_a_bad_request(mode: Mode) {
    let geoffrey = server(mode).await;
    let (status, body) = geoffrey
        .send("forum", &signed_body("user_created", "user", b"{\"user\":"))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );
    assert_eq!(ready_jobs(&geoffrey).await, 0);
}

async fn event_and_body_key_must_agree(mode: Mode) {
    let geoffrey = server(mode).await;
    let cases = [
        // The body key is not the announced type.
        signed_body("user_created", "user", br#"{"post":{"id":1}}"#),
        // The event name belongs to another type than the header names.
        signed_body("post_created", "user", br#"{"user":{"id":1}}"#),
        // Not an object at all.
        signed_body("user_created", "user", br#"[1,2]"#),
    ];
    for delivery in cases {
        let (status, body) = geoffrey.send("forum", &delivery).await;
        assert_eq!(status, 400, "{body}");
    }
    assert_eq!(ready_jobs(&geoffrey).await, 0);
}

async fn unknown_plugin_event_is_accepted(mode: Mode) {
    let geoffrey = server(mode).await;
    let delivery = signed_body(
        "chat_reaction_added",
        "chat_reaction",
        br#"{"chat_reaction":{"id":3}}"#,
    );
    let (status, body) = geoffrey.send("forum", &delivery).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jobs"], 1);
}

async fn oversized_body_is_rejected(mode: Mode) {
    let geoffrey = TestGeoffrey::start_with(
        mode,
        |settings| settings.server.max_body_bytes = 1024,
        None,
        Roles {
            server: true,
            worker: false,
        },
    )
    .await;
    geoffrey.create_instance("forum", catch_all()).await;
    let padding = "x".repeat(2000);
    let body = format!(r#"{{"user":{{"id":1,"bio":"{padding}"}}}}"#);
    let (status, reply) = geoffrey
        .send(
            "forum",
            &signed_body("user_updated", "user", body.as_bytes()),
        )
        .await;
    assert_eq!(status, 413);
    assert!(reply["error"].as_str().unwrap().contains("1024"), "{reply}");
    // A body within the limit still passes.
    let (status, _) = geoffrey
        .send("forum", &fixtures::signed("user_added_to_group"))
        .await;
    assert_eq!(status, 200);
}

async fn redelivery_with_same_event_id_is_acknowledged_once(mode: Mode) {
    let geoffrey = server(mode).await;
    let delivery = fixtures::signed("topic_created");
    let (status, first) = geoffrey.send("forum", &delivery).await;
    assert_eq!((status, first["status"].as_str()), (200, Some("accepted")));
    let (status, second) = geoffrey.send("forum", &delivery).await;
    assert_eq!(
        (status, second["status"].as_str()),
        (200, Some("duplicate"))
    );
    assert_eq!(ready_jobs(&geoffrey).await, 1);
}

async fn retry_with_new_event_id_is_a_duplicate_within_the_window(mode: Mode) {
    let clock = ManualClock::starting_at(1_800_000_000_000);
    let geoffrey = TestGeoffrey::start_with(
        mode,
        |settings| settings.intake.duplicate_window = Duration::from_secs(600),
        Some(clock.clone()),
        Roles {
            server: true,
            worker: false,
        },
    )
    .await;
    geoffrey.create_instance("forum", catch_all()).await;

    let mut delivery = fixtures::signed("post_created");
    geoffrey.send("forum", &delivery).await;
    delivery.set_header("X-Discourse-Event-Id", "999001");
    let (_, retry) = geoffrey.send("forum", &delivery).await;
    assert_eq!(retry["status"], "duplicate");

    clock.advance(Duration::from_secs(601));
    delivery.set_header("X-Discourse-Event-Id", "999002");
    let (_, later) = geoffrey.send("forum", &delivery).await;
    assert_eq!(later["status"], "accepted");
    assert_eq!(ready_jobs(&geoffrey).await, 2);
}

#[tokio::test]
async fn locked_queue_answers_503_and_stores_nothing() {
    let geoffrey = server(Mode::Embedded).await;
    let queue_file = geoffrey.dir.path().join("queue.sqlite");
    let blocker = rusqlite_lock(&queue_file);

    let delivery = fixtures::signed("user_created");
    let (status, body) = geoffrey.send("forum", &delivery).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("send the request again"),
        "{body}"
    );

    drop(blocker);
    assert_eq!(ready_jobs(&geoffrey).await, 0);
    let (status, body) = geoffrey.send("forum", &delivery).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["status"], "accepted",
        "the rejected delivery must not count as seen"
    );
    assert_eq!(ready_jobs(&geoffrey).await, 1);
}

/// Holds an exclusive lock on a SQLite file from a separate connection, as another process
/// would, until dropped.
fn rusqlite_lock(path: &std::path::Path) -> LockGuard {
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let path = path.to_path_buf();
    let thread = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    LockGuard {
        release: Some(release_tx),
        thread: Some(thread),
    }
}

struct LockGuard {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Returns the original route's key for the instance `forum`: in the embedded mode the
/// password is the webhook secret, in the distributed mode a CouchDB member's password.
async fn forum_key(geoffrey: &TestGeoffrey) -> String {
    match &geoffrey.couch {
        Some(couch) => {
            couch
                .create_member("forum-hooks", "member-password", "forum")
                .await;
            "forum-hooks:member-password@forum".to_string()
        }
        None => format!("geoffrey:{}@forum", fixtures::FIXTURE_SECRET),
    }
}

async fn original_route_maps_path_to_event(mode: Mode) {
    let geoffrey = server(mode).await;
    let key = forum_key(&geoffrey).await;
    let url = format!("{}/api/posts/new?key={key}", geoffrey.base_url);
    let bare = Delivery {
        name: "bare".into(),
        body: br#"{"post_id":1234,"author":"ben"}"#.to_vec(),
        headers: vec![],
    };
    let (status, body) = geoffrey.post(&url, &bare).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"], "post_created");
    assert_eq!(body["jobs"], 1);

    // With Discourse's headers, the headers name the event.
    let (status, body) = geoffrey.post(&url, &fixtures::signed("user_created")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"], "user_created");

    let lease = geoffrey.services.queue.take().await.unwrap().expect("job");
    assert_eq!(lease.job.spec.event.body["post"]["post_id"], 1234);
}

async fn original_route_rejects_bad_keys_and_paths(mode: Mode) {
    let geoffrey = server(mode).await;
    let key = forum_key(&geoffrey).await;
    let (user_password, _) = key.rsplit_once('@').unwrap();
    // The distributed mode never reveals whether a database exists.
    let unknown_instance = if mode == Mode::Embedded { 404 } else { 401 };
    let bare = Delivery {
        name: "bare".into(),
        body: br#"{"id":1}"#.to_vec(),
        headers: vec![],
    };
    let cases = [
        (
            "/api/posts/new?key=geoffrey:wrong-secret-x@forum".to_string(),
            401,
        ),
        ("/api/posts/new".to_string(), 401),
        ("/api/posts/new?key=nocolon@forum".to_string(), 401),
        (
            format!("/api/posts/new?key={user_password}@nosuchforum"),
            unknown_instance,
        ),
        (format!("/api/widgets/new?key={key}"), 404),
    ];
    for (path, expected) in cases {
        let (status, body) = geoffrey
            .post(&format!("{}{path}", geoffrey.base_url), &bare)
            .await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    assert_eq!(ready_jobs(&geoffrey).await, 0);
}

/// Sends a delivery until the response has `status`, because the server notices an outage
/// or a recovery only on its next request to the backend.
async fn send_until(
    geoffrey: &TestGeoffrey,
    delivery: &Delivery,
    status: u16,
) -> serde_json::Value {
    let what = format!("status {status}");
    testkit::eventually(Duration::from_secs(20), &what, || async {
        let (got, body) = geoffrey.send("forum", delivery).await;
        (got == status).then_some(body)
    })
    .await
}

#[tokio::test]
async fn redis_outage_answers_503_until_it_returns() {
    let mut geoffrey = server(Mode::Distributed).await;
    let delivery = fixtures::signed("user_created");
    geoffrey.redis.as_mut().unwrap().kill();
    let body = send_until(&geoffrey, &delivery, 503).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("send the request again"),
        "{body}"
    );

    geoffrey.redis.as_mut().unwrap().restart();
    let body = send_until(&geoffrey, &delivery, 200).await;
    assert_eq!(body["status"], "accepted");
    assert_eq!(ready_jobs(&geoffrey).await, 1);
}

#[tokio::test]
async fn couch_outage_answers_503_until_it_returns() {
    let mut geoffrey = server(Mode::Distributed).await;
    let delivery = fixtures::signed("user_created");
    geoffrey.couch.as_mut().unwrap().kill();
    send_until(&geoffrey, &delivery, 503).await;
    assert_eq!(
        ready_jobs(&geoffrey).await,
        0,
        "nothing was queued while the store was down"
    );

    geoffrey.couch.as_mut().unwrap().restart();
    let body = send_until(&geoffrey, &delivery, 200).await;
    assert_eq!(body["status"], "accepted");
    assert_eq!(ready_jobs(&geoffrey).await, 1);
}

testkit::in_both_modes!(
    all_signed_fixtures_are_accepted,
    changed_byte_is_rejected,
    wrong_secret_is_rejected,
    missing_signature_is_rejected_unless_opted_in,
    form_content_type_still_parses_json,
    unknown_instance_is_not_found,
    malformed_json_is_a_bad_request,
    event_and_body_key_must_agree,
    unknown_plugin_event_is_accepted,
    oversized_body_is_rejected,
    redelivery_with_same_event_id_is_acknowledged_once,
    retry_with_new_event_id_is_a_duplicate_within_the_window,
    original_route_maps_path_to_event,
    original_route_rejects_bad_keys_and_paths,
);

async fn readiness_reports_backends(mode: Mode) {
    let mut geoffrey = server(mode).await;
    let url = format!("{}/readyz", geoffrey.base_url);
    let response = geoffrey.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "store": "ok", "queue": "ok" }));

    if let Some(redis) = geoffrey.redis.as_mut() {
        redis.kill();
        let body = testkit::eventually(Duration::from_secs(20), "a 503 from /readyz", || async {
            let response = geoffrey.http.get(&url).send().await.ok()?;
            (response.status() == 503).then_some(response.json::<serde_json::Value>().await.ok()?)
        })
        .await;
        assert_eq!(body, json!({ "store": "ok", "queue": "unavailable" }));
    }
}

testkit::in_both_modes!(readiness_reports_backends);

#[tokio::test]
async fn non_ascii_event_header_is_rejected() {
    let geoffrey = server(Mode::Embedded).await;
    let delivery = fixtures::signed("topic_created");
    let mut request = geoffrey
        .http
        .post(format!("{}/hooks/discourse/forum", geoffrey.base_url))
        .body(delivery.body.clone());
    for (name, value) in &delivery.headers {
        if !name.eq_ignore_ascii_case("X-Discourse-Event") {
            request = request.header(name, value);
        }
    }
    let value = reqwest::header::HeaderValue::from_bytes(b"topic_cr\xe9ated").unwrap();
    let response = request
        .header("X-Discourse-Event", value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("X-Discourse-Event"),
        "{body}"
    );
    assert_eq!(ready_jobs(&geoffrey).await, 0);
}
