//! Behaviour every store and queue implementation must show, as macros that expand to one
//! test per behaviour for a given constructor. The embedded SQLite implementations run them
//! now; other implementations run the same suites against their real servers.

/// Expands to the store tests. `$open` is an async expression returning
/// `(Arc<dyn Store>, guard)`, where the guard keeps the store's resources alive.
#[macro_export]
macro_rules! store_suite {
    ($open:expr) => {
        mod store_suite {
            use super::*;
            use geoffrey::store::{LogEntry, LogQuery, Outcome, StoreError};
            use serde_json::json;

            fn entry(id_seq: u32, app: &str, outcome: Outcome, event: &str) -> LogEntry {
                LogEntry {
                    id: format!("0190000-{id_seq:06}"),
                    at: time::OffsetDateTime::from_unix_timestamp(1_700_000_000 + i64::from(id_seq)).unwrap(),
                    job_id: format!("job-{id_seq}"),
                    event_id: Some(id_seq.to_string()),
                    event: event.to_string(),
                    app: app.to_string(),
                    feature: "post_message".to_string(),
                    target: None,
                    attempt: 1,
                    outcome,
                    status: Some(200),
                    response: None,
                    error: None,
                    duration_ms: 5,
                    continued: false,
                }
            }

            #[tokio::test]
            async fn create_and_list_databases() {
                let (store, _guard) = $open.await;
                store.create_database("beta").await.unwrap();
                store.create_database("alpha").await.unwrap();
                let names = store.list_databases().await.unwrap();
                assert!(names.contains(&"alpha".to_string()));
                assert!(names.contains(&"beta".to_string()));
                let again = store.create_database("alpha").await;
                assert!(matches!(again, Err(StoreError::DatabaseExists(_))), "{again:?}");
            }

            #[tokio::test]
            async fn missing_database_is_reported() {
                let (store, _guard) = $open.await;
                let result = store.get("nosuchdb", "CONFIG").await;
                assert!(matches!(result, Err(StoreError::DatabaseNotFound(_))), "{result:?}");
            }

            #[tokio::test]
            async fn revisions_advance_and_conflicts_are_rejected() {
                let (store, _guard) = $open.await;
                store.create_database("docs").await.unwrap();
                assert!(store.get("docs", "a").await.unwrap().is_none());

                let first = store.put("docs", "a", None, &json!({"n": 1})).await.unwrap();
                assert!(first.starts_with("1-"), "{first}");
                let second = store.put("docs", "a", Some(&first), &json!({"n": 2})).await.unwrap();
                assert!(second.starts_with("2-"), "{second}");

                let stale = store.put("docs", "a", Some(&first), &json!({"n": 3})).await;
                assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{stale:?}");
                let recreate = store.put("docs", "a", None, &json!({"n": 4})).await;
                assert!(matches!(recreate, Err(StoreError::Conflict { .. })), "{recreate:?}");

                let document = store.get("docs", "a").await.unwrap().unwrap();
                assert_eq!(document.rev, second);
                assert_eq!(document.body["n"], 2);
            }

            #[tokio::test]
            async fn writes_are_announced() {
                let (store, _guard) = $open.await;
                store.create_database("watched").await.unwrap();
                let mut changes = store.changes();
                store.put("watched", "CONFIG", None, &json!({})).await.unwrap();
                let change = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                    loop {
                        let change = changes.recv().await.unwrap();
                        if change.db == "watched" {
                            return change;
                        }
                    }
                })
                .await
                .expect("a change notification");
                assert!(change.id.is_none() || change.id.as_deref() == Some("CONFIG"));
            }

            #[tokio::test]
            async fn logs_page_newest_first() {
                let (store, _guard) = $open.await;
                store.create_database("logs").await.unwrap();
                let entries: Vec<_> =
                    (1..=5).map(|i| entry(i, "relay", Outcome::Succeeded, "topic_created")).collect();
                store.append_logs("logs", &entries).await.unwrap();

                let query = LogQuery { limit: 2, ..LogQuery::default() };
                let page = store.query_logs("logs", &query).await.unwrap();
                let ids: Vec<_> = page.entries.iter().map(|e| e.job_id.as_str()).collect();
                assert_eq!(ids, ["job-5", "job-4"]);

                let query = LogQuery { limit: 2, before: page.next_before.clone(), ..LogQuery::default() };
                let page = store.query_logs("logs", &query).await.unwrap();
                let ids: Vec<_> = page.entries.iter().map(|e| e.job_id.as_str()).collect();
                assert_eq!(ids, ["job-3", "job-2"]);

                let query = LogQuery { limit: 2, before: page.next_before.clone(), ..LogQuery::default() };
                let page = store.query_logs("logs", &query).await.unwrap();
                let ids: Vec<_> = page.entries.iter().map(|e| e.job_id.as_str()).collect();
                assert_eq!(ids, ["job-1"]);
                assert_eq!(page.next_before, None);
            }

            #[tokio::test]
            async fn old_logs_are_purged_in_batches() {
                let (store, _guard) = $open.await;
                store.create_database("aging").await.unwrap();
                let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
                let hours_ago = [5_i64, 4, 3, 2, 0];
                let entries: Vec<_> = hours_ago
                    .iter()
                    .zip(1..)
                    .map(|(hours, seq)| {
                        let mut entry = entry(seq, "relay", Outcome::Succeeded, "topic_created");
                        entry.at = now - time::Duration::hours(*hours);
                        entry.id = geoffrey::store::log_id(entry.at);
                        entry
                    })
                    .collect();
                store.append_logs("aging", &entries).await.unwrap();

                let cutoff = now - time::Duration::hours(1);
                assert_eq!(store.purge_logs("aging", cutoff, 2).await.unwrap(), 2);
                assert_eq!(store.purge_logs("aging", cutoff, 2).await.unwrap(), 2);
                assert_eq!(store.purge_logs("aging", cutoff, 2).await.unwrap(), 0);
                let page = store.query_logs("aging", &LogQuery::default()).await.unwrap();
                let ids: Vec<_> = page.entries.iter().map(|e| e.job_id.as_str()).collect();
                assert_eq!(ids, ["job-5"]);

                let missing = store.purge_logs("nosuchdb", cutoff, 2).await;
                assert!(matches!(missing, Err(StoreError::DatabaseNotFound(_))), "{missing:?}");
            }

            #[tokio::test]
            async fn final_outcome_of_a_job_is_found() {
                let (store, _guard) = $open.await;
                store.create_database("jobs").await.unwrap();
                let queued = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
                let job_id = geoffrey::store::log_id(queued);
                let other_id = geoffrey::store::log_id(queued);
                let mut entries = Vec::new();
                for (seconds, job, outcome) in [
                    (1, &job_id, Outcome::Retrying),
                    (2, &other_id, Outcome::Retrying),
                    (3, &job_id, Outcome::Succeeded),
                ] {
                    let mut entry = entry(seconds, "relay", outcome, "topic_created");
                    entry.at = queued + time::Duration::seconds(i64::from(seconds));
                    entry.id = geoffrey::store::log_id(entry.at);
                    entry.job_id = job.clone();
                    entries.push(entry);
                }
                store.append_logs("jobs", &entries).await.unwrap();

                let found = store.final_log_of_job("jobs", &job_id).await.unwrap();
                assert_eq!(found.map(|e| e.outcome), Some(Outcome::Succeeded));
                let retrying_only = store.final_log_of_job("jobs", &other_id).await.unwrap();
                assert_eq!(retrying_only, None);

                // A success that goes on, such as a backfill's page, is not final.
                let long_id = geoffrey::store::log_id(queued);
                let mut page = entry(9, "mailchimp", Outcome::Succeeded, "mailchimp_backfill");
                page.at = queued + time::Duration::seconds(9);
                page.id = geoffrey::store::log_id(page.at);
                page.job_id = long_id.clone();
                page.continued = true;
                store.append_logs("jobs", &[page]).await.unwrap();
                assert_eq!(store.final_log_of_job("jobs", &long_id).await.unwrap(), None);
                let unknown = store.final_log_of_job("jobs", &geoffrey::store::log_id(queued)).await;
                assert_eq!(unknown.unwrap(), None);
            }

            #[tokio::test]
            async fn documents_list_by_prefix_newest_first() {
                let (store, _guard) = $open.await;
                store.create_database("listed").await.unwrap();
                let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
                let mut ids = Vec::new();
                for seconds in 0..4 {
                    let id = geoffrey::store::log_id(at + time::Duration::seconds(seconds));
                    let id = format!("audit:{id}");
                    store.put("listed", &id, None, &json!({ "n": seconds })).await.unwrap();
                    ids.push(id);
                }
                // Ids just outside the prefix's range, on both sides, and a log entry.
                for other in ["CONFIG", "audit", "audit;", "auditx:1", "app_status:relay"] {
                    store.put("listed", other, None, &json!({ "n": -1 })).await.unwrap();
                }
                let mut log = entry(1, "relay", Outcome::Succeeded, "topic_created");
                log.id = geoffrey::store::log_id(at);
                store.append_logs("listed", &[log]).await.unwrap();

                let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
                let listed = store.list_documents("listed", "audit:", 10).await.unwrap();
                let listed_ids: Vec<&str> = listed.iter().map(|d| d.id.as_str()).collect();
                assert_eq!(listed_ids, newest_first);
                assert_eq!(listed[0].body["n"], 3);
                assert!(!listed[0].rev.is_empty());

                let two = store.list_documents("listed", "audit:", 2).await.unwrap();
                let two_ids: Vec<&str> = two.iter().map(|d| d.id.as_str()).collect();
                assert_eq!(two_ids, newest_first[..2]);

                let far_future = at + time::Duration::days(3650);
                store.purge_logs("listed", far_future, 100).await.unwrap();
                let kept = store.list_documents("listed", "audit:", 10).await.unwrap();
                assert_eq!(kept.len(), 4, "purging log entries must keep audit documents");

                let missing = store.list_documents("nosuchdb", "audit:", 10).await;
                assert!(matches!(missing, Err(StoreError::DatabaseNotFound(_))), "{missing:?}");
            }

            #[tokio::test]
            async fn logs_filter_by_fields_and_time() {
                let (store, _guard) = $open.await;
                store.create_database("filtered").await.unwrap();
                let entries = vec![
                    entry(1, "relay", Outcome::Succeeded, "topic_created"),
                    entry(2, "relay", Outcome::Retrying, "post_created"),
                    entry(3, "mailchimp", Outcome::FailedPermanently, "user_created"),
                    entry(4, "relay", Outcome::Succeeded, "post_created"),
                ];
                store.append_logs("filtered", &entries).await.unwrap();
                let job_ids = |page: geoffrey::store::LogPage| -> Vec<String> {
                    page.entries.into_iter().map(|e| e.job_id).collect()
                };

                let query = LogQuery { app: Some("relay".into()), limit: 10, ..LogQuery::default() };
                assert_eq!(job_ids(store.query_logs("filtered", &query).await.unwrap()), ["job-4", "job-2", "job-1"]);

                let query = LogQuery { outcome: Some(Outcome::Succeeded), event: Some("post_created".into()), limit: 10, ..LogQuery::default() };
                assert_eq!(job_ids(store.query_logs("filtered", &query).await.unwrap()), ["job-4"]);

                let since = time::OffsetDateTime::from_unix_timestamp(1_700_000_003).unwrap();
                let query = LogQuery { since: Some(since), limit: 10, ..LogQuery::default() };
                assert_eq!(job_ids(store.query_logs("filtered", &query).await.unwrap()), ["job-4", "job-3"]);

                let query = LogQuery { after: Some(entries[1].id.clone()), limit: 10, ..LogQuery::default() };
                assert_eq!(job_ids(store.query_logs("filtered", &query).await.unwrap()), ["job-3", "job-4"]);
            }

            #[tokio::test]
            async fn log_entries_are_read_by_id_and_job() {
                let (store, _guard) = $open.await;
                store.create_database("jobs").await.unwrap();
                let mut entries: Vec<_> =
                    (1..=4).map(|i| entry(i, "relay", Outcome::Retrying, "topic_created")).collect();
                entries[1].job_id = "job-1".to_string();
                entries[1].attempt = 2;
                entries[3].job_id = "job-1".to_string();
                entries[3].attempt = 3;
                entries[3].outcome = Outcome::Succeeded;
                store.append_logs("jobs", &entries).await.unwrap();

                let found = store.get_log("jobs", &entries[2].id).await.unwrap();
                assert_eq!(found.as_ref(), Some(&entries[2]));
                assert!(store.get_log("jobs", "0190000-999999").await.unwrap().is_none());
                let missing = store.get_log("nosuchdb", &entries[2].id).await;
                assert!(matches!(missing, Err(StoreError::DatabaseNotFound(_))), "{missing:?}");

                let query = LogQuery { job_id: Some("job-1".into()), limit: 10, ..LogQuery::default() };
                let page = store.query_logs("jobs", &query).await.unwrap();
                let attempts: Vec<_> = page.entries.iter().map(|e| e.attempt).collect();
                assert_eq!(attempts, [3, 2, 1]);
                let query = LogQuery { job_id: Some("job-1".into()), outcome: Some(Outcome::Retrying), limit: 10, ..LogQuery::default() };
                assert_eq!(store.query_logs("jobs", &query).await.unwrap().entries.len(), 2);
            }

            #[tokio::test]
            async fn log_buckets_group_by_hour_app_and_outcome() {
                let (store, _guard) = $open.await;
                store.create_database("hours").await.unwrap();
                // 1_800_000_000 is 08:00:00 UTC.
                let eight = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
                let rows = [
                    (eight - time::Duration::minutes(1), "relay", Outcome::Succeeded, false, 10),
                    (eight + time::Duration::minutes(5), "relay", Outcome::Succeeded, false, 20),
                    (eight + time::Duration::minutes(59), "relay", Outcome::Succeeded, false, 60),
                    (eight + time::Duration::minutes(30), "relay", Outcome::FailedPermanently, false, 5),
                    (eight + time::Duration::minutes(30), "mailchimp", Outcome::Succeeded, true, 700),
                    (eight + time::Duration::minutes(61), "relay", Outcome::Succeeded, false, 30),
                ];
                let entries: Vec<_> = rows
                    .iter()
                    .zip(1..)
                    .map(|((at, app, outcome, continued, duration), seq)| {
                        let mut entry = entry(seq, app, *outcome, "topic_created");
                        entry.at = *at;
                        entry.id = geoffrey::store::log_id(*at);
                        entry.continued = *continued;
                        entry.duration_ms = *duration;
                        entry
                    })
                    .collect();
                store.append_logs("hours", &entries).await.unwrap();

                let mut buckets = store.log_buckets("hours", eight).await.unwrap();
                buckets.sort_by(|a, b| (a.hour_start, &a.app, a.outcome.as_str()).cmp(&(b.hour_start, &b.app, b.outcome.as_str())));
                let summary: Vec<_> = buckets
                    .iter()
                    .map(|b| (b.hour_start, b.app.as_str(), b.outcome, b.continued, b.count, b.total_duration_ms, b.max_duration_ms))
                    .collect();
                assert_eq!(
                    summary,
                    [
                        (1_800_000_000, "mailchimp", Outcome::Succeeded, true, 1, 700, 700),
                        (1_800_000_000, "relay", Outcome::FailedPermanently, false, 1, 5, 5),
                        (1_800_000_000, "relay", Outcome::Succeeded, false, 2, 80, 60),
                        (1_800_003_600, "relay", Outcome::Succeeded, false, 1, 30, 30),
                    ]
                );
                assert!(store.log_buckets("hours", eight + time::Duration::hours(2)).await.unwrap().is_empty());
            }
        }
    };
}

/// Expands to the queue tests. `$open` is an async closure-like expression taking a
/// `ManualClock` and returning `(Arc<dyn Queue>, guard)`, configured with a 60 s lease,
/// 3 attempts, a 10 minute duplicate window and a 1 day event id retention.
#[macro_export]
macro_rules! queue_suite {
    ($open:expr) => {
        mod queue_suite {
            use super::*;
            use geoffrey::clock::ManualClock;
            use geoffrey::event::Event;
            use geoffrey::queue::{Admission, Delivery, NewJob, QueueError};
            use std::time::Duration;

            fn job(instance: &str, n: u32) -> NewJob {
                NewJob {
                    instance: instance.to_string(),
                    app: "relay".to_string(),
                    feature: "post_message".to_string(),
                    target: Some(format!("rule-{n}")),
                    config_rev: "1-abc".to_string(),
                    event: Event {
                        id: Some(n.to_string()),
                        name: "topic_created".to_string(),
                        kind: "topic".to_string(),
                        body: serde_json::json!({"topic": {"id": n}}),
                        body_sha256: format!("hash-{n}"),
                    },
                }
            }

            fn delivery(instance: &str, event_id: Option<&str>, content: &str) -> Delivery {
                Delivery {
                    instance: instance.to_string(),
                    event_id: event_id.map(str::to_string),
                    content_key: content.to_string(),
                }
            }

            fn clock() -> ManualClock {
                ManualClock::starting_at(1_800_000_000_000)
            }

            #[tokio::test]
            async fn admitted_jobs_are_taken_once_and_acked() {
                let clock = clock();
                let (queue, _guard) = $open(clock.clone()).await;
                let admission = queue.admit(&delivery("a", Some("1"), "k1"), vec![job("a", 1), job("a", 2)]).await.unwrap();
                assert_eq!(admission, Admission::Accepted { jobs: 2 });

                let first = queue.take().await.unwrap().expect("first job");
                let second = queue.take().await.unwrap().expect("second job");
                assert_ne!(first.job.id, second.job.id);
                assert_eq!(first.job.attempt, 1);
                assert!(queue.take().await.unwrap().is_none());

                queue.ack(&first).await.unwrap();
                queue.ack(&second).await.unwrap();
                clock.advance(Duration::from_secs(3600));
                assert!(queue.take().await.unwrap().is_none());
                assert_eq!(queue.stats(Some("a")).await.unwrap(), Default::default());
            }

            #[tokio::test]
            async fn duplicates_by_event_id_and_content() {
                let clock = clock();
                let (queue, _guard) = $open(clock.clone()).await;
                let accepted = queue.admit(&delivery("a", Some("7"), "k"), vec![job("a", 1)]).await.unwrap();
                assert_eq!(accepted, Admission::Accepted { jobs: 1 });

                let same_id = queue.admit(&delivery("a", Some("7"), "other"), vec![job("a", 1)]).await.unwrap();
                assert_eq!(same_id, Admission::Duplicate);
                let same_body = queue.admit(&delivery("a", Some("8"), "k"), vec![job("a", 1)]).await.unwrap();
                assert_eq!(same_body, Admission::Duplicate);
                let other_instance = queue.admit(&delivery("b", Some("7"), "k"), vec![job("b", 1)]).await.unwrap();
                assert_eq!(other_instance, Admission::Accepted { jobs: 1 });

                // After the window the same body is new again, but the event id is still known.
                clock.advance(Duration::from_secs(11 * 60));
                let late_body = queue.admit(&delivery("a", Some("9"), "k"), vec![job("a", 1)]).await.unwrap();
                assert_eq!(late_body, Admission::Accepted { jobs: 1 });
                let late_id = queue.admit(&delivery("a", Some("7"), "new"), vec![]).await.unwrap();
                assert_eq!(late_id, Admission::Duplicate);

                // After the retention the event id is forgotten too.
                clock.advance(Duration::from_secs(25 * 3600));
                let forgotten = queue.admit(&delivery("a", Some("7"), "newer"), vec![]).await.unwrap();
                assert_eq!(forgotten, Admission::Accepted { jobs: 0 });
                assert_eq!(queue.stats(Some("a")).await.unwrap().ready, 2);
            }

            #[tokio::test]
            async fn expired_lease_hands_job_out_again() {
                let clock = clock();
                let (queue, _guard) = $open(clock.clone()).await;
                queue.admit(&delivery("a", None, "k"), vec![job("a", 1)]).await.unwrap();
                let lost = queue.take().await.unwrap().expect("job");
                assert!(queue.take().await.unwrap().is_none(), "leased job must not be taken twice");

                clock.advance(Duration::from_secs(61));
                let again = queue.take().await.unwrap().expect("job after lease expiry");
                assert_eq!(again.job.id, lost.job.id);
                assert_eq!(again.job.attempt, 2, "the lost attempt counts");

                let stale = queue.ack(&lost).await;
                assert!(matches!(stale, Err(QueueError::LeaseLost(_))), "{stale:?}");
                queue.ack(&again).await.unwrap();
            }

            #[tokio::test]
            async fn retry_waits_for_its_delay() {
                let clock = clock();
                let (queue, _guard) = $open(clock.clone()).await;
                queue.admit(&delivery("a", None, "k"), vec![job("a", 1)]).await.unwrap();
                let lease = queue.take().await.unwrap().expect("job");
                queue.retry_later(&lease, Duration::from_secs(30), "HTTP 503").await.unwrap();

                assert!(queue.take().await.unwrap().is_none());
                assert_eq!(queue.stats(None).await.unwrap().delayed, 1);
                clock.advance(Duration::from_secs(31));
                let retried = queue.take().await.unwrap().expect("retried job");
                assert_eq!(retried.job.attempt, 2);
            }

            #[tokio::test]
            async fn release_does_not_count_the_attempt() {
                let clock = clock();
                let (queue, _guard) = $open(clock.clone()).await;
                queue.admit(&delivery("a", None, "k"), vec![job("a", 1)]).await.unwrap();
                let lease = queue.take().await.unwrap().expect("job");
                queue.release(&lease).await.unwrap();
                let again = queue.take().await.unwrap().expect("released job");
                assert_eq!(again.job.attempt, 1);
            }

            #[tokio::test]
            async fn dead_letters_can_be_listed_replayed_and_discarded() {
                let clock = clock();
                let (queue, _guard) = $open(clock.clone()).await;
                queue.admit(&delivery("a", None, "k"), vec![job("a", 1), job("a", 2)]).await.unwrap();
                for _ in 0..2 {
                    let lease = queue.take().await.unwrap().expect("job");
                    queue.dead_letter(&lease, "HTTP 400").await.unwrap();
                }
                assert!(queue.take().await.unwrap().is_none());
                let failed = queue.failed_jobs("a", 10).await.unwrap();
                assert_eq!(failed.len(), 2);
                assert_eq!(failed[0].reason, "HTTP 400");
                assert!(queue.failed_jobs("b", 10).await.unwrap().is_empty());

                queue.replay("a", &failed[0].job.id).await.unwrap();
                let replayed = queue.take().await.unwrap().expect("replayed job");
                assert_eq!(replayed.job.id, failed[0].job.id);
                assert_eq!(replayed.job.attempt, 1, "a replay starts a fresh attempt count");

                queue.discard("a", &failed[1].job.id).await.unwrap();
                assert!(queue.failed_jobs("a", 10).await.unwrap().is_empty());
                let missing = queue.replay("a", &failed[1].job.id).await;
                assert!(matches!(missing, Err(QueueError::FailedJobNotFound { .. })), "{missing:?}");
                let wrong_instance = queue.discard("b", &failed[0].job.id).await;
                assert!(matches!(wrong_instance, Err(QueueError::FailedJobNotFound { .. })));
            }

            #[tokio::test]
            async fn accepted_deliveries_are_counted_per_hour() {
                use geoffrey::queue::HourlyCount;
                let clock = clock();
                let (queue, _guard) = $open(clock.clone()).await;
                // 1_800_000_000_000 ms is 08:00 UTC, so these admissions fall into 08:00.
                let first_hour = 1_800_000_000_000;
                queue.admit(&delivery("a", Some("1"), "k1"), vec![job("a", 1)]).await.unwrap();
                queue.admit(&delivery("a", Some("2"), "k2"), vec![]).await.unwrap();
                let duplicate = queue.admit(&delivery("a", Some("1"), "k3"), vec![job("a", 1)]).await.unwrap();
                assert_eq!(duplicate, Admission::Duplicate);
                queue.admit(&delivery("b", Some("1"), "k1"), vec![]).await.unwrap();

                clock.advance(Duration::from_secs(3600 + 59));
                queue.admit(&delivery("a", Some("3"), "k3"), vec![]).await.unwrap();
                let duplicate = queue.admit(&delivery("a", Some("4"), "k3"), vec![]).await.unwrap();
                assert_eq!(duplicate, Admission::Duplicate);

                let counts = queue.delivery_counts("a", first_hour).await.unwrap();
                assert_eq!(
                    counts,
                    [
                        HourlyCount { hour_start_ms: first_hour, count: 2 },
                        HourlyCount { hour_start_ms: first_hour + 3_600_000, count: 1 },
                    ]
                );
                let other = queue.delivery_counts("b", first_hour).await.unwrap();
                assert_eq!(other, [HourlyCount { hour_start_ms: first_hour, count: 1 }]);

                // A start inside an hour includes that whole hour; later hours only after it.
                let later = queue.delivery_counts("a", first_hour + 1_800_000).await.unwrap();
                assert_eq!(later, counts);
                let last = queue.delivery_counts("a", first_hour + 3_600_000).await.unwrap();
                assert_eq!(last, counts[1..]);
                assert!(queue.delivery_counts("c", first_hour).await.unwrap().is_empty());

                // A day boundary: 16 hours later is the next UTC day.
                clock.advance(Duration::from_secs(16 * 3600));
                queue.admit(&delivery("a", Some("5"), "k5"), vec![]).await.unwrap();
                let counts = queue.delivery_counts("a", first_hour).await.unwrap();
                assert_eq!(counts.len(), 3, "{counts:?}");
                assert_eq!(counts[2], HourlyCount { hour_start_ms: first_hour + 17 * 3_600_000, count: 1 });
            }

            #[tokio::test]
            async fn failed_job_is_found_by_id() {
                let clock = clock();
                let (queue, _guard) = $open(clock.clone()).await;
                queue.admit(&delivery("a", None, "k"), vec![job("a", 1), job("a", 2)]).await.unwrap();
                let failing = queue.take().await.unwrap().expect("job");
                queue.dead_letter(&failing, "HTTP 410").await.unwrap();
                let pending = queue.take().await.unwrap().expect("job");

                let found = queue.failed_job("a", &failing.job.id).await.unwrap().expect("failed job");
                assert_eq!(found.job.id, failing.job.id);
                assert_eq!(found.job.spec, failing.job.spec);
                assert_eq!(found.reason, "HTTP 410");
                assert!(queue.failed_job("b", &failing.job.id).await.unwrap().is_none());
                assert!(queue.failed_job("a", &pending.job.id).await.unwrap().is_none());
                assert!(queue.failed_job("a", "no-such-job").await.unwrap().is_none());
            }

            #[tokio::test]
            async fn job_content_survives_the_queue() {
                let clock = clock();
                let (queue, _guard) = $open(clock.clone()).await;
                queue.admit(&delivery("a", None, "k"), vec![job("a", 5)]).await.unwrap();
                let lease = queue.take().await.unwrap().expect("job");
                assert_eq!(lease.job.spec, job("a", 5));
                assert_eq!(lease.job.max_attempts, 3);
            }
        }
    };
}
