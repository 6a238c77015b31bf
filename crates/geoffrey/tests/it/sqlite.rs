//! The shared store and queue suites against the embedded SQLite implementations.

use geoffrey::clock::ManualClock;
use geoffrey::queue::sqlite::SqliteQueue;
use geoffrey::queue::{Queue, QueueSettings};
use geoffrey::store::Store;
use geoffrey::store::sqlite::SqliteStore;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

async fn open_store() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Duration::from_secs(1)).unwrap();
    (store, dir)
}

async fn open_queue(clock: ManualClock) -> (Arc<dyn Queue>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let settings = QueueSettings {
        lease: Duration::from_secs(60),
        max_attempts: 3,
        duplicate_window: Duration::from_secs(600),
        event_id_retention: Duration::from_secs(24 * 3600),
    };
    let path = dir.path().join("queue.sqlite");
    let queue =
        SqliteQueue::open(&path, Duration::from_secs(1), settings, Arc::new(clock)).unwrap();
    queue.migrate().await.unwrap();
    (queue, dir)
}

testkit::store_suite!(open_store());
testkit::queue_suite!(open_queue);

#[tokio::test]
async fn attempt_count_survives_reopening() {
    let clock = ManualClock::starting_at(1_800_000_000_000);
    let (queue, dir) = open_queue(clock.clone()).await;
    let delivery = geoffrey::queue::Delivery {
        instance: "a".into(),
        event_id: None,
        content_key: "k".into(),
    };
    let job = geoffrey::queue::NewJob {
        instance: "a".into(),
        app: "relay".into(),
        feature: "post_message".into(),
        target: None,
        config_rev: "1-x".into(),
        event: geoffrey::event::Event {
            id: None,
            name: "ping".into(),
            kind: "ping".into(),
            body: serde_json::json!({"ping": "OK"}),
            body_sha256: String::new(),
        },
    };
    queue.admit(&delivery, vec![job]).await.unwrap();
    let _lost = queue.take().await.unwrap().expect("job");
    drop(queue);

    let settings = QueueSettings {
        lease: Duration::from_secs(60),
        max_attempts: 3,
        duplicate_window: Duration::from_secs(600),
        event_id_retention: Duration::from_secs(24 * 3600),
    };
    let path = dir.path().join("queue.sqlite");
    let reopened = SqliteQueue::open(
        &path,
        Duration::from_secs(1),
        settings,
        Arc::new(clock.clone()),
    )
    .unwrap();
    clock.advance(Duration::from_secs(61));
    let again = reopened.take().await.unwrap().expect("job after reopening");
    assert_eq!(again.job.attempt, 2);
}
