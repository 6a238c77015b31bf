//! Log retention through a running Geoffrey: entries older than `logs.retention` go, newer
//! ones stay, and deliveries are accepted throughout.

use geoffrey::clock::ManualClock;
use geoffrey::run::Roles;
use std::time::Duration;
use testkit::fixtures;
use testkit::geoffrey::{Mode, TestGeoffrey, relay_apps, relay_rule};
use testkit::receiver::Receiver;

async fn expired_entries_are_purged(mode: Mode) {
    let receiver = Receiver::start().await;
    let clock = ManualClock::starting_at(1_800_000_000_000);
    let geoffrey = TestGeoffrey::start_with(
        mode,
        |settings| {
            settings.logs.retention = Duration::from_secs(3600);
            settings.logs.purge_interval = Duration::from_millis(50);
        },
        Some(clock.clone()),
        Roles::ALL,
    )
    .await;
    let rule = relay_rule(
        "topics",
        &receiver.url,
        &["topic_created"],
        "{{topic.title}}",
    );
    geoffrey
        .create_instance("forum", relay_apps(vec![rule]))
        .await;

    let (status, _) = geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    assert_eq!(status, 200);
    let old = geoffrey.wait_for_logs("forum", 1).await;

    // Four hours later, past the duplicate window too, the first entry has expired and a new
    // delivery's entry has not.
    clock.advance(Duration::from_secs(4 * 3600));
    let mut later = fixtures::signed("topic_created");
    later.set_header("X-Discourse-Event-Id", "4112");
    let (status, body) = geoffrey.send("forum", &later).await;
    assert_eq!(status, 200, "{body}");

    let remaining =
        testkit::eventually(Duration::from_secs(10), "the old entry purged", || async {
            let logs = geoffrey.logs("forum").await;
            let only_new = logs.len() == 1 && logs[0].id != old[0].id;
            only_new.then_some(logs)
        })
        .await;
    assert_eq!(remaining[0].event_id.as_deref(), Some("4112"));
}

testkit::in_both_modes!(expired_entries_are_purged);
