//! The shared queue suite against the Redis queue and a real redis-server, plus what only a
//! Redis queue can go through: losing its consumer group and restarting.

use geoffrey::clock::ManualClock;
use geoffrey::queue::redis::RedisQueue;
use geoffrey::queue::{Delivery, NewJob, Queue, QueueSettings};
use std::sync::Arc;
use std::time::Duration;
use testkit::servers::RedisServer;

fn settings() -> QueueSettings {
    QueueSettings {
        lease: Duration::from_secs(60),
        max_attempts: 3,
        duplicate_window: Duration::from_secs(600),
        event_id_retention: Duration::from_secs(24 * 3600),
    }
}

async fn open_queue(clock: ManualClock) -> (Arc<dyn Queue>, RedisServer) {
    let server = RedisServer::start();
    let queue = RedisQueue::connect(&server.url(), "test", settings(), Arc::new(clock))
        .await
        .unwrap();
    (queue, server)
}

testkit::queue_suite!(open_queue);

fn job(n: u32) -> NewJob {
    NewJob {
        instance: "a".into(),
        app: "relay".into(),
        feature: "post_message".into(),
        target: None,
        config_rev: "1-x".into(),
        event: geoffrey::event::Event {
            id: Some(n.to_string()),
            name: "topic_created".into(),
            kind: "topic".into(),
            body: serde_json::json!({"topic": {"id": n}}),
            body_sha256: format!("{n}"),
        },
    }
}

fn delivery(n: u32) -> Delivery {
    Delivery {
        instance: "a".into(),
        event_id: Some(n.to_string()),
        content_key: n.to_string(),
    }
}

#[tokio::test]
async fn lost_consumer_group_is_recreated() {
    let clock = ManualClock::starting_at(1_800_000_000_000);
    let (queue, server) = open_queue(clock).await;
    queue.admit(&delivery(1), vec![job(1)]).await.unwrap();

    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg("test:jobs")
        .arg("workers")
        .query_async(&mut conn)
        .await
        .unwrap();

    let lease = queue
        .take()
        .await
        .unwrap()
        .expect("the job, read through a new group");
    assert_eq!(lease.job.spec, job(1));
    queue.ack(&lease).await.unwrap();
}

#[tokio::test]
async fn jobs_survive_a_redis_restart() {
    let clock = ManualClock::starting_at(1_800_000_000_000);
    let (queue, mut server) = open_queue(clock.clone()).await;
    queue.admit(&delivery(1), vec![job(1)]).await.unwrap();
    queue.admit(&delivery(2), vec![job(2)]).await.unwrap();
    let taken = queue.take().await.unwrap().expect("job");

    server.restart();
    // The connection manager reconnects on the next command after a failed one.
    let stats = testkit::eventually(Duration::from_secs(10), "Redis to answer", || async {
        queue.stats(Some("a")).await.ok()
    })
    .await;
    assert_eq!((stats.ready, stats.leased), (1, 1));

    let next = queue.take().await.unwrap().expect("the job not yet taken");
    assert_ne!(next.job.id, taken.job.id);
    queue.ack(&taken).await.unwrap();
    queue.ack(&next).await.unwrap();
    let duplicate = queue.admit(&delivery(1), vec![job(1)]).await.unwrap();
    assert_eq!(
        duplicate,
        geoffrey::queue::Admission::Duplicate,
        "seen ids survive too"
    );
}
