//! Webhook intake over HTTP: signatures, errors, duplicates, the original route, and 503 when
//! the queue cannot store the jobs.

use geoffrey::clock::ManualClock;
use geoffrey::run::Roles;
use serde_json::json;
use std::time::Duration;
use testkit::fixtures::{self, Delivery};
use testkit::geoffrey::{TestGeoffrey, relay_apps, relay_rule};

/// A relay rule for every event, so each accepted delivery becomes one job.
fn catch_all() -> serde_json::Value {
    let mut rule = relay_rule("all", "http://127.0.0.1:9/hook", &["*"], "{{event.name}}");
    rule["include_private_messages"] = json!(true);
    relay_apps(vec![rule])
}

/// Server only, so jobs stay in the queue where the test can count them.
async fn server() -> TestGeoffrey {
    let geoffrey = TestGeoffrey::start_with(
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

#[tokio::test]
async fn all_signed_fixtures_are_accepted() {
    let geoffrey = server().await;
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

#[tokio::test]
async fn changed_byte_is_rejected() {
    let geoffrey = server().await;
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

#[tokio::test]
async fn wrong_secret_is_rejected() {
    let geoffrey = server().await;
    let mut delivery = fixtures::signed("user_created");
    let signature = geoffrey::api::signature::sign(b"another-secret-value", &delivery.body);
    delivery.set_header("X-Discourse-Event-Signature", &signature);
    let (status, _) = geoffrey.send("forum", &delivery).await;
    assert_eq!(status, 401);
    assert_eq!(ready_jobs(&geoffrey).await, 0);
}

#[tokio::test]
async fn missing_signature_is_rejected_unless_opted_in() {
    let geoffrey = server().await;
    let mut delivery = fixtures::signed("user_created");
    delivery.remove_header("X-Discourse-Event-Signature");
    let (status, body) = geoffrey.send("forum", &delivery).await;
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("missing"),
        "{body}"
    );

    let store = geoffrey.services.store.as_ref();
    let current = geoffrey::instance::load(store, "forum").await.unwrap();
    let mut document = serde_json::to_value(&current.config).unwrap();
    document["accept_unsigned"] = json!(true);
    geoffrey::instance::save(
        store,
        &geoffrey.services.apps,
        "forum",
        &current.rev,
        document,
    )
    .await
    .unwrap();
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

#[tokio::test]
async fn form_content_type_still_parses_json() {
    let geoffrey = server().await;
    let (status, body) = geoffrey
        .send("forum", &fixtures::signed("ping_form_urlencoded"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "pong");
}

#[tokio::test]
async fn unknown_instance_is_not_found() {
    let geoffrey = server().await;
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

#[tokio::test]
async fn malformed_json_is_a_bad_request() {
    let geoffrey = server().await;
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

#[tokio::test]
async fn event_and_body_key_must_agree() {
    let geoffrey = server().await;
    let cases = [
        // The body key is not the announced type.
        signed_body("user_created", "user", br#"{"post":{"id":1}}"#),
        // The event name belongs to another type than the header says.
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

#[tokio::test]
async fn unknown_plugin_event_is_accepted() {
    let geoffrey = server().await;
    let delivery = signed_body(
        "chat_reaction_added",
        "chat_reaction",
        br#"{"chat_reaction":{"id":3}}"#,
    );
    let (status, body) = geoffrey.send("forum", &delivery).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jobs"], 1);
}

#[tokio::test]
async fn oversized_body_is_rejected() {
    let geoffrey = TestGeoffrey::start_with(
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

#[tokio::test]
async fn redelivery_with_same_event_id_is_acknowledged_once() {
    let geoffrey = server().await;
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

#[tokio::test]
async fn retry_with_new_event_id_is_a_duplicate_within_the_window() {
    let clock = ManualClock::starting_at(1_800_000_000_000);
    let geoffrey = TestGeoffrey::start_with(
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
    let geoffrey = server().await;
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

#[tokio::test]
async fn original_route_maps_path_to_event() {
    let geoffrey = server().await;
    let key = format!("geoffrey:{}@forum", fixtures::FIXTURE_SECRET);
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
    let url = format!("{}/api/posts/new?key={key}", geoffrey.base_url);
    let (status, body) = geoffrey.post(&url, &fixtures::signed("user_created")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"], "user_created");

    let lease = geoffrey.services.queue.take().await.unwrap().expect("job");
    assert_eq!(lease.job.spec.event.body["post"]["post_id"], 1234);
}

#[tokio::test]
async fn original_route_rejects_bad_keys_and_paths() {
    let geoffrey = server().await;
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
            format!(
                "/api/posts/new?key=g:{}@nosuchforum",
                fixtures::FIXTURE_SECRET
            ),
            404,
        ),
        (
            format!("/api/widgets/new?key=g:{}@forum", fixtures::FIXTURE_SECRET),
            404,
        ),
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
