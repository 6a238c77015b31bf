//! The Mailchimp app through the whole pipeline, against the local fake Mailchimp server, in
//! both modes.

use fake_mailchimp::{Failure, FakeConfig, FakeMailchimp, Injection, MemberSeed};
use geoffrey::store::{LogEntry, Outcome};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use testkit::fixtures::{self, Delivery};
use testkit::geoffrey::{Mode, TestGeoffrey};

const LIST: &str = "aud1";
const ADA: &str = "ada.quill@example.com";

static NEXT_EVENT_ID: AtomicU64 = AtomicU64::new(900_000);

/// Builds a signed delivery of a user event from the fixture user with `changes` applied.
fn user_event(event: &str, changes: Value) -> Delivery {
    let mut body: Value =
        serde_json::from_slice(&fixtures::signed("user_confirmed_email").body).unwrap();
    for (key, value) in changes.as_object().unwrap() {
        body["user"][key] = value.clone();
    }
    signed(event, "user", &body)
}

fn group_event(event: &str, user_id: i64, group_id: i64) -> Delivery {
    let body = json!({ "group_user": { "id": 1, "user_id": user_id, "group_id": group_id, "notification_level": 3 } });
    signed(event, "group_user", &body)
}

fn signed(event: &str, kind: &str, body: &Value) -> Delivery {
    let bytes = serde_json::to_vec(body).unwrap();
    let mut delivery = Delivery {
        name: event.into(),
        body: bytes,
        headers: vec![],
    };
    delivery.set_header("X-Discourse-Event", event);
    delivery.set_header("X-Discourse-Event-Type", kind);
    let id = NEXT_EVENT_ID.fetch_add(1, Ordering::Relaxed);
    delivery.set_header("X-Discourse-Event-Id", &id.to_string());
    let signature =
        geoffrey::api::signature::sign(fixtures::FIXTURE_SECRET.as_bytes(), &delivery.body);
    delivery.set_header("X-Discourse-Event-Signature", &signature);
    delivery
}

/// Points an instance at the fake Discourse, with the API key it accepts.
async fn connect_discourse(geoffrey: &TestGeoffrey, instance: &str, url: &str) {
    geoffrey
        .edit_config(instance, |document| {
            document["discourse_url"] = json!(url);
            document["discourse_api_key"] = json!("discourse-api-key");
        })
        .await;
}

async fn start(mode: Mode, settings: Value) -> (TestGeoffrey, FakeMailchimp) {
    let fake = FakeMailchimp::start(FakeConfig::default()).await;
    fake.allow_address(ADA);
    let geoffrey = TestGeoffrey::start(mode).await;
    let mut section = json!({
        "api_key": fake.api_key(),
        "base_url": fake.base_url(),
        "list_id": LIST,
        "consent": { "mode": "everyone" },
        "merge_fields": { "FNAME": "first_name", "LNAME": "last_name" },
    });
    for (key, value) in settings.as_object().unwrap() {
        section[key] = value.clone();
    }
    geoffrey
        .create_instance("forum", json!({ "mailchimp": section }))
        .await;
    (geoffrey, fake)
}

/// Sends a delivery and waits until the instance has `logs` log entries in all.
async fn send_and_wait(geoffrey: &TestGeoffrey, delivery: &Delivery, logs: usize) -> Vec<LogEntry> {
    let (status, body) = geoffrey.send("forum", delivery).await;
    assert_eq!(status, 200, "{body}");
    geoffrey.wait_for_logs("forum", logs).await
}

fn put_bodies(fake: &FakeMailchimp) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|request| request.method == "PUT")
        .filter_map(|request| request.body)
        .collect()
}

async fn confirmed_email_subscribes_with_merge_fields(mode: Mode) {
    let (geoffrey, fake) = start(mode, json!({})).await;
    let (_, created) = geoffrey
        .send("forum", &user_event("user_created", json!({})))
        .await;
    assert_eq!(created["jobs"], 0, "account creation does not subscribe");

    let logs = send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 1).await;
    assert_eq!(logs[0].outcome, Outcome::Succeeded, "{:?}", logs[0]);
    assert_eq!(
        (logs[0].app.as_str(), logs[0].feature.as_str()),
        ("mailchimp", "subscribe")
    );
    let member = fake.member(LIST, ADA).expect("member");
    assert_eq!(member.status, "subscribed");
    assert_eq!(member.merge_fields["FNAME"], "Ada");
    assert_eq!(member.merge_fields["LNAME"], "Quill");
    let puts = put_bodies(&fake);
    assert_eq!(puts.len(), 1);
    assert!(
        puts[0].get("status").is_none(),
        "status is never sent: {}",
        puts[0]
    );
    assert_eq!(puts[0]["status_if_new"], "subscribed");
}

async fn double_opt_in_never_demotes_a_subscriber(mode: Mode) {
    let (geoffrey, fake) = start(mode, json!({ "consent": { "mode": "double_opt_in" } })).await;
    fake.allow_address("new.member@forum-mail.test");
    let newcomer = user_event(
        "user_confirmed_email",
        json!({ "id": 7, "email": "new.member@forum-mail.test" }),
    );
    send_and_wait(&geoffrey, &newcomer, 1).await;
    assert_eq!(
        fake.member(LIST, "new.member@forum-mail.test")
            .expect("member")
            .status,
        "pending"
    );

    fake.seed_member(LIST, MemberSeed::new(ADA, "subscribed"));
    let logs = send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 2).await;
    assert_eq!(logs[0].outcome, Outcome::Succeeded);
    assert_eq!(fake.member(LIST, ADA).expect("member").status, "subscribed");
    let confirmations = fake
        .events()
        .iter()
        .filter(|event| format!("{event:?}").contains(ADA))
        .count();
    assert_eq!(
        confirmations, 0,
        "no confirmation email to an existing subscriber"
    );
}

async fn self_unsubscribed_member_stays_unsubscribed(mode: Mode) {
    let (geoffrey, fake) = start(mode, json!({})).await;
    let mut seed = MemberSeed::new(ADA, "unsubscribed");
    seed.unsubscribed_by = Some("self".into());
    fake.seed_member(LIST, seed);
    let logs = send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 1).await;
    assert_eq!(logs[0].outcome, Outcome::Succeeded);
    assert_eq!(
        fake.member(LIST, ADA).expect("member").status,
        "unsubscribed"
    );
}

async fn mixed_case_and_plus_addresses_hash_alike(mode: Mode) {
    let (geoffrey, fake) = start(mode, json!({})).await;
    fake.allow_address("ada.quill+forum@example.com");
    let shouting = user_event(
        "user_confirmed_email",
        json!({ "email": "  Ada.Quill+Forum@Example.COM " }),
    );
    send_and_wait(&geoffrey, &shouting, 1).await;
    let member = fake
        .member(LIST, "ada.quill+forum@example.com")
        .expect("member under the lower-case hash");
    assert_eq!(member.status, "subscribed");
    let hash = geoffrey::apps::mailchimp::subscriber_hash("ada.quill+forum@example.com");
    let paths: Vec<String> = fake
        .requests()
        .into_iter()
        .map(|request| request.path)
        .collect();
    assert!(paths.iter().any(|path| path.ends_with(&hash)), "{paths:?}");
    assert!(
        fake.member(LIST, ADA).is_none(),
        "a plus address is a separate member"
    );
}

async fn email_change_moves_the_member(mode: Mode) {
    let (geoffrey, fake) = start(mode, json!({})).await;
    fake.allow_address("ada@newmail.test");
    send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 1).await;
    let logs = send_and_wait(
        &geoffrey,
        &user_event("user_updated", json!({ "email": "ada@newmail.test" })),
        2,
    )
    .await;
    assert_eq!(logs[0].outcome, Outcome::Succeeded, "{:?}", logs[0]);
    assert_eq!(
        fake.member(LIST, "ada@newmail.test")
            .expect("moved member")
            .status,
        "subscribed"
    );
    assert!(fake.member(LIST, ADA).is_none(), "no second member");
    assert_eq!(fake.members(LIST).len(), 1);
}

async fn email_change_conflict_is_recorded_once(mode: Mode) {
    let (geoffrey, fake) = start(mode, json!({})).await;
    fake.allow_address("taken@newmail.test");
    fake.seed_member(LIST, MemberSeed::new("taken@newmail.test", "subscribed"));
    send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 1).await;
    let moved = user_event("user_updated", json!({ "email": "taken@newmail.test" }));
    let logs = send_and_wait(&geoffrey, &moved, 2).await;
    assert_eq!(logs[0].outcome, Outcome::FailedPermanently);
    assert!(
        logs[0]
            .error
            .as_deref()
            .unwrap()
            .contains("already in this list"),
        "{:?}",
        logs[0].error
    );
    assert_eq!(fake.members(LIST).len(), 2, "no duplicate was created");
    assert_eq!(
        fake.member(LIST, ADA).expect("old member").status,
        "subscribed"
    );
}

async fn group_membership_sets_tags(mode: Mode) {
    let (geoffrey, fake) = start(mode, json!({ "group_tags": { "45": "Volunteers" } })).await;
    send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 1).await;
    send_and_wait(&geoffrey, &group_event("user_added_to_group", 142, 45), 2).await;
    assert_eq!(fake.member(LIST, ADA).expect("member").tags, ["Volunteers"]);

    let (_, other_group) = geoffrey
        .send("forum", &group_event("user_added_to_group", 142, 46))
        .await;
    assert_eq!(other_group["jobs"], 0, "unmapped groups make no job");

    send_and_wait(
        &geoffrey,
        &group_event("user_removed_from_group", 142, 45),
        3,
    )
    .await;
    assert!(fake.member(LIST, ADA).expect("member").tags.is_empty());
    let tag_bodies: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|request| request.path.ends_with("/tags"))
        .filter_map(|request| request.body)
        .collect();
    assert_eq!(
        tag_bodies[0],
        json!({ "tags": [{ "name": "Volunteers", "status": "active" }] })
    );
}

async fn leaving_archives_the_member(mode: Mode) {
    let (geoffrey, fake) = start(mode, json!({})).await;
    send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 1).await;
    let logs = send_and_wait(&geoffrey, &user_event("user_destroyed", json!({})), 2).await;
    assert_eq!(logs[0].outcome, Outcome::Succeeded, "{:?}", logs[0]);
    assert_eq!(
        fake.member(LIST, ADA).expect("archived member").status,
        "archived"
    );
}

async fn permanent_delete_makes_the_address_forgotten(mode: Mode) {
    let (geoffrey, fake) = start(mode, json!({ "on_leave": "delete_permanently" })).await;
    send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 1).await;
    send_and_wait(&geoffrey, &user_event("user_destroyed", json!({})), 2).await;
    assert!(fake.member(LIST, ADA).is_none());

    // The same address signs up again as a new forum user.
    let again = user_event("user_confirmed_email", json!({ "id": 143 }));
    let logs = send_and_wait(&geoffrey, &again, 3).await;
    assert_eq!(logs[0].outcome, Outcome::FailedPermanently);
    let error = logs[0].error.as_deref().unwrap();
    assert!(error.contains("Forgotten Email Not Subscribed"), "{error}");
    assert!(
        error.contains("Geoffrey deleted this address permanently"),
        "{error}"
    );
    assert!(error.contains("forum user 142"), "{error}");
}

async fn email_change_of_cleaned_member_is_refused(mode: Mode) {
    let (geoffrey, fake) = start(mode, json!({})).await;
    fake.allow_address("ada@newmail.test");
    send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 1).await;
    fake.bounce(LIST, ADA);
    let moved = user_event("user_updated", json!({ "email": "ada@newmail.test" }));
    let logs = send_and_wait(&geoffrey, &moved, 2).await;
    assert_eq!(logs[0].outcome, Outcome::FailedPermanently);
    assert!(
        logs[0].error.as_deref().unwrap().contains("cleaned"),
        "{:?}",
        logs[0].error
    );
    assert!(
        fake.member(LIST, "ada@newmail.test").is_none(),
        "no new member was created"
    );
    assert_eq!(
        fake.member(LIST, ADA).expect("old member").status,
        "cleaned"
    );
}

#[tokio::test]
async fn check_reports_unmapped_required_fields() {
    use fake_mailchimp::{ListConfig, MergeField};
    use geoffrey::apps::AppRegistry;
    let mut list = ListConfig::new(LIST, "Forum members");
    list.merge_fields
        .push(MergeField::required("BIRTHDAY", "text"));
    let fake = FakeMailchimp::start(FakeConfig {
        lists: vec![list],
        ..FakeConfig::default()
    })
    .await;
    let section = json!({
        "api_key": fake.api_key(), "base_url": fake.base_url(), "list_id": LIST,
        "merge_fields": { "FNAME": "first_name" },
    });
    let apps = AppRegistry::builtin();
    let app = apps.get("mailchimp").unwrap();
    let http = testkit::geoffrey::outbound_client();
    let checks = app.check(&section, &http).await;
    let results: Vec<(&str, bool)> = checks.iter().map(|c| (c.name.as_str(), c.ok)).collect();
    assert_eq!(
        results,
        [
            ("api_key", true),
            ("audience", true),
            ("merge_fields", false)
        ]
    );
    assert!(
        checks[2].message.contains("BIRTHDAY"),
        "{}",
        checks[2].message
    );

    let mut wrong_list = section.clone();
    wrong_list["list_id"] = json!("nosuchlist");
    let checks = app.check(&wrong_list, &http).await;
    assert_eq!(checks.len(), 2);
    assert!(!checks[1].ok, "{checks:?}");

    let mut wrong_key = section;
    wrong_key["api_key"] = json!("ffffffffffffffffffffffffffffffff-us6");
    let checks = app.check(&wrong_key, &http).await;
    assert_eq!(checks.len(), 1);
    assert!(checks[0].message.contains("API Key Invalid"), "{checks:?}");
}

async fn server_errors_are_retried(mode: Mode) {
    let (geoffrey, fake) = start(mode, json!({})).await;
    fake.inject(Injection {
        method: "PUT".into(),
        path_contains: "/members/".into(),
        nth: 1,
        failure: Failure::Status(503),
    });
    fake.inject(Injection {
        method: "PUT".into(),
        path_contains: "/members/".into(),
        nth: 2,
        failure: Failure::BareForbidden,
    });
    let logs = send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 3).await;
    let outcomes: Vec<_> = logs.iter().rev().map(|entry| entry.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Retrying, Outcome::Retrying, Outcome::Succeeded]
    );
    assert_eq!(fake.member(LIST, ADA).expect("member").status, "subscribed");
}

async fn invalid_key_is_a_replayable_configuration_error(mode: Mode) {
    let (geoffrey, fake) = start(
        mode,
        json!({ "api_key": "ffffffffffffffffffffffffffffffff-us6" }),
    )
    .await;
    let logs = send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 1).await;
    assert_eq!(logs[0].outcome, Outcome::FailedPermanently);
    let error = logs[0].error.as_deref().unwrap();
    assert!(
        error.contains("configuration") && error.contains("API Key Invalid"),
        "{error}"
    );
    assert!(
        !error.contains("ffffffff"),
        "the key must not be logged: {error}"
    );
    let failed = testkit::eventually(Duration::from_secs(5), "a failed job", || async {
        let failed = geoffrey
            .services
            .queue
            .failed_jobs("forum", 10)
            .await
            .unwrap();
        (!failed.is_empty()).then_some(failed)
    })
    .await;
    assert_eq!(failed.len(), 1);
    assert!(fake.member(LIST, ADA).is_none());
    let store = geoffrey.services.store.as_ref();
    let status = geoffrey::app_status::read(store, "forum", "mailchimp")
        .await
        .unwrap()
        .expect("a status");
    assert!(
        status
            .misconfigured
            .as_deref()
            .unwrap()
            .contains("API Key Invalid"),
        "{status:?}"
    );

    // The operator fixes the key and replays the job: it succeeds and the mark is gone.
    geoffrey
        .edit_config("forum", |document| {
            document["apps"]["mailchimp"]["api_key"] = json!(fake.api_key());
        })
        .await;
    geoffrey
        .services
        .queue
        .replay("forum", &failed[0].job.id)
        .await
        .unwrap();
    let logs = geoffrey.wait_for_logs("forum", 2).await;
    assert_eq!(logs[0].outcome, Outcome::Succeeded, "{:?}", logs[0]);
    assert_eq!(fake.member(LIST, ADA).expect("member").status, "subscribed");
    let status = testkit::eventually(Duration::from_secs(5), "the mark to clear", || async {
        let status = geoffrey::app_status::read(store, "forum", "mailchimp")
            .await
            .unwrap()?;
        status.misconfigured.is_none().then_some(status)
    })
    .await;
    assert_eq!(status.job_id, None);
}

async fn burst_stays_under_the_connection_limit(mode: Mode) {
    let fake = FakeMailchimp::start(FakeConfig {
        response_delay: Duration::from_millis(30),
        ..FakeConfig::default()
    })
    .await;
    let geoffrey = TestGeoffrey::start_with(
        mode,
        |settings| settings.worker.concurrency = 16,
        None,
        geoffrey::run::Roles::ALL,
    )
    .await;
    let section = json!({
        "api_key": fake.api_key(), "base_url": fake.base_url(), "list_id": LIST,
        "consent": { "mode": "everyone" }, "max_connections": 4,
    });
    geoffrey
        .create_instance("forum", json!({ "mailchimp": section }))
        .await;
    let users = 40;
    for id in 0..users {
        let email = format!("member{id}@forum-mail.test");
        fake.allow_address(&email);
        let delivery = user_event(
            "user_confirmed_email",
            json!({ "id": 1000 + id, "email": email }),
        );
        let (status, _) = geoffrey.send("forum", &delivery).await;
        assert_eq!(status, 200);
    }
    let logs = geoffrey.wait_for_logs("forum", users as usize).await;
    assert!(logs.iter().all(|entry| entry.outcome == Outcome::Succeeded));
    assert_eq!(fake.members(LIST).len(), users as usize);
    assert!(
        fake.max_in_flight() <= 4,
        "max in flight {}",
        fake.max_in_flight()
    );
    assert!(fake.max_in_flight() >= 2, "the burst ran in parallel");
    assert!(fake.requests().iter().all(|request| request.status != 429));
}

/// Checks that a backfill of 10,000 users, paused and resumed and interrupted by a dropped
/// connection, adds every eligible user once and leaves existing members as they were.
async fn backfill_resumes_without_duplicates(mode: Mode) {
    let users: Vec<Value> = (1..=10_000)
        .map(|id| {
            json!({
                "id": id,
                "username": format!("user{id}"),
                "name": format!("User {id}"),
                // One address looks fake to Mailchimp and is rejected.
                "email": if id == 5_001 {
                    "john.doe@example.com".to_string()
                } else {
                    format!("user{id}@forum-mail.test")
                },
                "active": true,
                "staged": id % 100 == 0,
            })
        })
        .collect();
    let discourse = testkit::discourse::FakeDiscourse::start(users, "discourse-api-key").await;
    discourse.rate_limit(1);
    let fake = FakeMailchimp::start(FakeConfig::default()).await;
    // Members who are already in the audience, one of them unsubscribed by themselves.
    fake.seed_member(LIST, MemberSeed::self_unsubscribed("user7@forum-mail.test"));
    fake.seed_member(LIST, MemberSeed::new("user8@forum-mail.test", "subscribed"));
    // The 30th page's batch call loses its connection, as in a network failure.
    fake.inject(Injection {
        method: "POST".into(),
        path_contains: "/lists/aud1".into(),
        nth: 30,
        failure: Failure::DropConnection,
    });

    let geoffrey = TestGeoffrey::start_with(
        mode,
        |settings| settings.worker.job_timeout = Duration::from_secs(4),
        None,
        geoffrey::run::Roles::ALL,
    )
    .await;
    let section = json!({
        "api_key": fake.api_key(), "base_url": fake.base_url(), "list_id": LIST,
        "consent": { "mode": "everyone" }, "merge_fields": { "FNAME": "first_name" },
    });
    geoffrey
        .create_instance("forum", json!({ "mailchimp": section }))
        .await;
    connect_discourse(&geoffrey, "forum", &discourse.url).await;

    use geoffrey::apps::mailchimp::backfill;
    backfill::start(&geoffrey.services, "forum").await.unwrap();
    let again = backfill::start(&geoffrey.services, "forum").await;
    assert!(again.is_err(), "a second start while running is refused");

    testkit::eventually(Duration::from_secs(30), "3,000 users read", || async {
        let progress = backfill::progress(&geoffrey.services, "forum")
            .await
            .unwrap()?;
        (progress.read >= 3_000).then_some(())
    })
    .await;
    backfill::pause(&geoffrey.services, "forum").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused = backfill::progress(&geoffrey.services, "forum")
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = backfill::progress(&geoffrey.services, "forum")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.state, "paused");
    assert_eq!(
        still.read, paused.read,
        "a paused backfill reads no more pages"
    );
    assert!(still.read < 10_000);

    backfill::resume(&geoffrey.services, "forum").await.unwrap();
    let done = testkit::eventually(
        Duration::from_secs(120),
        "the backfill to finish",
        || async {
            let progress = backfill::progress(&geoffrey.services, "forum")
                .await
                .unwrap()?;
            (progress.state == "done").then_some(progress)
        },
    )
    .await;

    assert_eq!(done.read, 10_000);
    assert_eq!(done.skipped, 100, "staged users are not added");
    assert_eq!(done.errors, 1, "{:?}", done.error_samples);
    assert!(
        done.error_samples[0].starts_with("john.doe@example.com: "),
        "{:?}",
        done.error_samples
    );
    assert_eq!(done.added + done.existing, 9_899);
    assert_eq!(
        done.existing, 2,
        "only the seeded members count as existing"
    );
    let members = fake.members(LIST);
    assert_eq!(
        members.len(),
        9_899,
        "every accepted user once, no duplicates"
    );
    assert_eq!(
        fake.member(LIST, "user7@forum-mail.test").unwrap().status,
        "unsubscribed"
    );
    assert_eq!(
        fake.member(LIST, "user8@forum-mail.test").unwrap().status,
        "subscribed"
    );
    assert_eq!(
        fake.member(LIST, "user42@forum-mail.test")
            .unwrap()
            .merge_fields["FNAME"],
        "User"
    );
    let batch_calls = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/lists/aud1"))
        .count();
    assert!(
        (100..=102).contains(&batch_calls),
        "{batch_calls} batch calls for 100 pages"
    );
    let logs = geoffrey.logs("forum").await;
    assert!(
        logs.iter().any(|entry| entry.outcome == Outcome::Retrying),
        "the dropped connection was retried"
    );
}

/// Checks that a subscribe job still retrying when the user is deleted does not add them.
async fn late_subscribe_after_leaving_is_skipped(mode: Mode) {
    let clock = geoffrey::clock::ManualClock::starting_at(1_800_000_000_000);
    let fake = FakeMailchimp::start(FakeConfig::default()).await;
    fake.allow_address(ADA);
    let geoffrey =
        TestGeoffrey::start_with(mode, |_| {}, Some(clock.clone()), geoffrey::run::Roles::ALL)
            .await;
    let section = json!({
        "api_key": fake.api_key(), "base_url": fake.base_url(), "list_id": LIST,
        "consent": { "mode": "everyone" }, "on_leave": "delete_permanently",
    });
    geoffrey
        .create_instance("forum", json!({ "mailchimp": section }))
        .await;
    fake.inject(Injection {
        method: "PUT".into(),
        path_contains: "/members/".into(),
        nth: 1,
        failure: Failure::Status(500),
    });

    let logs = send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 1).await;
    assert_eq!(logs[0].outcome, Outcome::Retrying);
    let logs = send_and_wait(&geoffrey, &user_event("user_destroyed", json!({})), 2).await;
    assert_eq!(
        (logs[0].feature.as_str(), logs[0].outcome),
        ("leave", Outcome::Succeeded)
    );

    clock.advance(Duration::from_secs(3600));
    let logs = geoffrey.wait_for_logs("forum", 3).await;
    assert_eq!(logs[0].outcome, Outcome::Succeeded);
    assert!(
        logs[0]
            .response
            .as_deref()
            .unwrap()
            .contains("the user left"),
        "{:?}",
        logs[0]
    );
    assert!(
        fake.member(LIST, ADA).is_none(),
        "the deleted user was not added"
    );
}

/// Resuming a running backfill replaces its run, and the old job stops, so every page is
/// sent and counted once.
async fn backfill_resumed_while_running_counts_once(mode: Mode) {
    let users: Vec<Value> = (1..=250)
        .map(|id| json!({ "id": id, "username": format!("u{id}"), "email": format!("u{id}@forum-mail.test"), "active": true }))
        .collect();
    let discourse = testkit::discourse::FakeDiscourse::start(users, "discourse-api-key").await;
    let fake = FakeMailchimp::start(FakeConfig {
        response_delay: Duration::from_millis(100),
        ..FakeConfig::default()
    })
    .await;
    let geoffrey = TestGeoffrey::start(mode).await;
    let section = json!({
        "api_key": fake.api_key(), "base_url": fake.base_url(), "list_id": LIST,
        "consent": { "mode": "everyone" }, "static_tags": ["forum"],
    });
    geoffrey
        .create_instance("forum", json!({ "mailchimp": section }))
        .await;
    connect_discourse(&geoffrey, "forum", &discourse.url).await;

    use geoffrey::apps::mailchimp::backfill;
    backfill::start(&geoffrey.services, "forum").await.unwrap();
    backfill::resume(&geoffrey.services, "forum").await.unwrap();
    let done = testkit::eventually(
        Duration::from_secs(30),
        "the backfill to finish",
        || async {
            let progress = backfill::progress(&geoffrey.services, "forum")
                .await
                .unwrap()?;
            (progress.state == "done").then_some(progress)
        },
    )
    .await;
    assert_eq!(
        (done.read, done.added, done.existing, done.errors),
        (250, 250, 0, 0)
    );
    assert_eq!(fake.members(LIST).len(), 250);
    assert_eq!(
        fake.member(LIST, "u1@forum-mail.test").unwrap().tags,
        ["forum"]
    );
    let batch_calls = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/lists/aud1"))
        .count();
    // The page in flight when the new run took over may go out twice; no later page does.
    assert!(
        (3..=4).contains(&batch_calls),
        "{batch_calls} calls for 3 pages"
    );
}

/// Checks that a live event of one instance is handled while another instance runs a
/// backfill on the same API key.
async fn backfill_does_not_starve_live_events(mode: Mode) {
    let users: Vec<Value> = (1..=3_000)
        .map(|id| json!({ "id": id, "username": format!("u{id}"), "email": format!("u{id}@forum-mail.test"), "active": true }))
        .collect();
    let discourse = testkit::discourse::FakeDiscourse::start(users, "discourse-api-key").await;
    let fake = FakeMailchimp::start(FakeConfig {
        response_delay: Duration::from_millis(150),
        ..FakeConfig::default()
    })
    .await;
    fake.allow_address(ADA);
    let geoffrey = TestGeoffrey::start(mode).await;
    let section = json!({
        "api_key": fake.api_key(), "base_url": fake.base_url(), "list_id": LIST,
        "consent": { "mode": "everyone" },
    });
    geoffrey
        .create_instance("big", json!({ "mailchimp": section }))
        .await;
    geoffrey
        .create_instance("forum", json!({ "mailchimp": section }))
        .await;
    connect_discourse(&geoffrey, "big", &discourse.url).await;

    use geoffrey::apps::mailchimp::backfill;
    backfill::start(&geoffrey.services, "big").await.unwrap();
    testkit::eventually(Duration::from_secs(10), "the backfill to start", || async {
        let progress = backfill::progress(&geoffrey.services, "big")
            .await
            .unwrap()?;
        (progress.read > 0).then_some(())
    })
    .await;

    let started = std::time::Instant::now();
    let logs = send_and_wait(&geoffrey, &user_event("user_confirmed_email", json!({})), 1).await;
    assert_eq!(logs[0].outcome, Outcome::Succeeded);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the live event waited {:?}",
        started.elapsed()
    );
    let progress = backfill::progress(&geoffrey.services, "big")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        progress.state, "running",
        "the backfill was still running meanwhile"
    );
    assert_eq!(fake.member(LIST, ADA).expect("member").status, "subscribed");
}

testkit::in_both_modes!(
    backfill_does_not_starve_live_events,
    late_subscribe_after_leaving_is_skipped,
    backfill_resumed_while_running_counts_once,
    backfill_resumes_without_duplicates,
    confirmed_email_subscribes_with_merge_fields,
    double_opt_in_never_demotes_a_subscriber,
    self_unsubscribed_member_stays_unsubscribed,
    mixed_case_and_plus_addresses_hash_alike,
    email_change_moves_the_member,
    email_change_conflict_is_recorded_once,
    group_membership_sets_tags,
    leaving_archives_the_member,
    permanent_delete_makes_the_address_forgotten,
    email_change_of_cleaned_member_is_refused,
    server_errors_are_retried,
    invalid_key_is_a_replayable_configuration_error,
    burst_stays_under_the_connection_limit,
);
