//! `geoffrey-bench logs`: fills a store with log entries and times the queries the web UI's
//! log pages and dashboard make.
//!
//! The entries spread evenly over the 7 days before the run. Of them, 60% are relay, 30%
//! mailchimp and 10% forms entries. Independently of the app, 90% succeeded, 6% are retrying,
//! 3% failed permanently and 1% failed after retries. A third are `user_updated` events.
//! Each query runs `--repeats` times after one warm-up run, and the report gives the median
//! and the slowest run. The queries go to the store directly, without HTTP or rendering.

use geoffrey::store::couch::CouchStore;
use geoffrey::store::sqlite::SqliteStore;
use geoffrey::store::{LogEntry, LogQuery, Outcome, Store, log_id};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::servers::PouchServer;
use time::OffsetDateTime;

const DB: &str = "bench";

/// Entries written per `append_logs` call while filling.
const FILL_BATCH: usize = 10_000;

/// Entries on a page, as the log page shows them.
const PAGE: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// The embedded SQLite store, in a temporary folder.
    Sqlite,
    /// PouchDB Server in memory, through the CouchDB store. Filling it is slow; use fewer
    /// entries.
    Couch,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Log entries to write before measuring.
    #[arg(long, default_value_t = 1_000_000)]
    entries: usize,
    /// Timed runs of each query, after one warm-up run.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    #[arg(long, value_enum, default_value = "sqlite")]
    store: StoreKind,
}

/// Keeps the store's folder or server until the run ends.
enum Keep {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Couch(#[allow(dead_code)] PouchServer),
}

async fn open(kind: StoreKind) -> anyhow::Result<(Arc<dyn Store>, Keep)> {
    Ok(match kind {
        StoreKind::Sqlite => {
            let dir = tempfile::tempdir()?;
            let store = SqliteStore::open(dir.path(), Duration::from_secs(5))?;
            (store as Arc<dyn Store>, Keep::Dir(dir))
        }
        StoreKind::Couch => {
            let server = PouchServer::start();
            let store = CouchStore::connect(&server.admin_url(), "geoffrey-").await?;
            (store as Arc<dyn Store>, Keep::Couch(server))
        }
    })
}

/// Returns the entry at `index` of `count` spread over `span` before `end`.
fn entry(index: usize, count: usize, end: OffsetDateTime, span: Duration) -> LogEntry {
    let step = span.as_secs_f64() / count as f64;
    let at = end - time::Duration::seconds_f64(step * (count - index) as f64);
    let (app, feature) = match index % 10 {
        0..=5 => ("relay", "post_message"),
        6..=8 => ("mailchimp", "subscribe"),
        _ => ("forms", "record"),
    };
    // A different digit than the app's, so that app and outcome are independent.
    let outcome = match (index / 10) % 100 {
        0..=89 => Outcome::Succeeded,
        90..=95 => Outcome::Retrying,
        96..=98 => Outcome::FailedPermanently,
        _ => Outcome::FailedAfterRetries,
    };
    let failed = outcome != Outcome::Succeeded;
    LogEntry {
        id: log_id(at),
        at,
        job_id: log_id(at - time::Duration::milliseconds(200)),
        event_id: Some((1_000_000 + index).to_string()),
        event: if index % 3 == 0 {
            "user_updated"
        } else {
            "post_created"
        }
        .to_string(),
        app: app.to_string(),
        feature: feature.to_string(),
        target: (app == "relay").then(|| "announcements".to_string()),
        attempt: 1,
        outcome,
        status: Some(if failed { 503 } else { 200 }),
        response: Some(r#"{"ok":true,"id":"c2ff2d1e-5b0e-4a4e-9d43-8a0a1f3b7e21"}"#.to_string()),
        error: failed.then(|| "HTTP 503".to_string()),
        duration_ms: 20 + (index % 7) as u64 * 15,
        continued: false,
    }
}

async fn fill(store: &dyn Store, count: usize, end: OffsetDateTime) -> anyhow::Result<Vec<String>> {
    let span = Duration::from_secs(7 * 24 * 3600);
    let mut ids = Vec::with_capacity(count);
    let started = Instant::now();
    for start in (0..count).step_by(FILL_BATCH) {
        let batch: Vec<LogEntry> = (start..(start + FILL_BATCH).min(count))
            .map(|index| entry(index, count, end, span))
            .collect();
        ids.extend(batch.iter().map(|entry| entry.id.clone()));
        store.append_logs(DB, &batch).await?;
        if (start / FILL_BATCH) % 10 == 9 {
            eprintln!("{} entries written", start + FILL_BATCH);
        }
    }
    eprintln!(
        "wrote {count} entries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(ids)
}

/// Runs `query` once to warm up, then `repeats` times; returns the median and the slowest
/// run and the entries the last run returned.
async fn time<F, Fut>(repeats: usize, mut query: F) -> anyhow::Result<(Duration, Duration, usize)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    query().await?;
    let mut runs = Vec::with_capacity(repeats);
    let mut returned = 0;
    for _ in 0..repeats.max(1) {
        let started = Instant::now();
        returned = query().await?;
        runs.push(started.elapsed());
    }
    runs.sort();
    Ok((runs[runs.len() / 2], runs[runs.len() - 1], returned))
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let (store, _keep) = open(args.store).await?;
    store.create_database(DB).await?;
    let end = OffsetDateTime::now_utc();
    let ids = fill(store.as_ref(), args.entries, end).await?;
    let store = store.as_ref();

    // The cursor of a page 90% of the way back to the oldest entry.
    let deep = ids[ids.len() / 10].clone();
    let deep_entry = store
        .get_log(DB, &deep)
        .await?
        .ok_or_else(|| anyhow::anyhow!("entry {deep} not found"))?;
    let three_days_ago = end - time::Duration::days(3);
    let page =
        |query: LogQuery| async move { Ok(store.query_logs(DB, &query).await?.entries.len()) };
    let base = LogQuery {
        limit: PAGE,
        ..LogQuery::default()
    };
    let cases: Vec<(&str, LogQuery)> = vec![
        ("first page", base.clone()),
        (
            "deep page (90% back)",
            LogQuery {
                before: Some(deep.clone()),
                ..base.clone()
            },
        ),
        (
            "app=mailchimp, first page",
            LogQuery {
                app: Some("mailchimp".into()),
                ..base.clone()
            },
        ),
        (
            "app=mailchimp, deep page",
            LogQuery {
                app: Some("mailchimp".into()),
                before: Some(deep.clone()),
                ..base.clone()
            },
        ),
        (
            "feature=record (10%)",
            LogQuery {
                feature: Some("record".into()),
                ..base.clone()
            },
        ),
        (
            "outcome=failed_after_retries (1%)",
            LogQuery {
                outcome: Some(Outcome::FailedAfterRetries),
                ..base.clone()
            },
        ),
        (
            "app=forms and outcome=failed_after_retries (0.1%)",
            LogQuery {
                app: Some("forms".into()),
                outcome: Some(Outcome::FailedAfterRetries),
                ..base.clone()
            },
        ),
        (
            "app=relay and feature=record (no match)",
            LogQuery {
                app: Some("relay".into()),
                feature: Some("record".into()),
                ..base.clone()
            },
        ),
        (
            "event=user_updated",
            LogQuery {
                event: Some("user_updated".into()),
                ..base.clone()
            },
        ),
        (
            "one hour, 3 days ago",
            LogQuery {
                since: Some(three_days_ago),
                until: Some(three_days_ago + time::Duration::hours(1)),
                ..base.clone()
            },
        ),
        (
            "attempts of one old job",
            LogQuery {
                job_id: Some(deep_entry.job_id.clone()),
                limit: 100,
                ..LogQuery::default()
            },
        ),
        (
            "live rows after the newest",
            LogQuery {
                after: ids.last().cloned(),
                ..base.clone()
            },
        ),
    ];

    println!(
        "{} entries in {:?}; median and slowest of {} runs",
        args.entries, args.store, args.repeats
    );
    println!(
        "{:<52} {:>10} {:>10} {:>8}",
        "query", "median ms", "max ms", "entries"
    );
    for (name, query) in cases {
        let (median, max, returned) = time(args.repeats, || page(query.clone())).await?;
        report(name, median, max, returned);
    }
    let day_ago = end - time::Duration::hours(24);
    let (median, max, returned) = time(args.repeats.min(5), || async {
        Ok(store.log_buckets(DB, day_ago).await?.len())
    })
    .await?;
    report(
        "dashboard: buckets of the last 24 hours",
        median,
        max,
        returned,
    );
    let (median, max, returned) = time(args.repeats, || async {
        Ok(usize::from(store.get_log(DB, &deep).await?.is_some()))
    })
    .await?;
    report("one entry by id", median, max, returned);
    Ok(())
}

fn report(name: &str, median: Duration, max: Duration, returned: usize) {
    println!(
        "{name:<52} {:>10.2} {:>10.2} {returned:>8}",
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
}
