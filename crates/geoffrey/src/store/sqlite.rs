//! The embedded document store: one SQLite file per instance database, in one folder.
//!
//! Revisions follow CouchDB's shape, `<generation>-<digest>`, where the digest is the start of
//! the SHA-256 of the previous revision and the new body. Writes from this process notify
//! [`Store::changes`] subscribers at once. Writes from other processes (the CLI changing a
//! configuration while `geoffrey run` serves) are noticed by a poller that compares SQLite's
//! `data_version` counter, which changes only when another connection commits.

use super::{
    Change, Document, LogBucket, LogEntry, LogPage, LogQuery, Outcome, Store, StoreError,
    StoreResult,
};
use crate::sqlite::{BlockingTaskFailed, SharedConnection};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

const FILE_SUFFIX: &str = ".sqlite";
const POLL_INTERVAL: Duration = Duration::from_millis(250);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS docs (
    id   TEXT PRIMARY KEY,
    rev  TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS logs (
    id      TEXT PRIMARY KEY,
    at      TEXT NOT NULL,
    app     TEXT NOT NULL,
    feature TEXT NOT NULL,
    event   TEXT NOT NULL,
    outcome TEXT NOT NULL,
    body    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_app ON logs (app, id);
CREATE INDEX IF NOT EXISTS logs_by_outcome ON logs (outcome, id);
CREATE INDEX IF NOT EXISTS logs_by_event ON logs (event, id);
CREATE INDEX IF NOT EXISTS logs_by_at ON logs (at);
CREATE INDEX IF NOT EXISTS logs_by_feature ON logs (feature, id);
CREATE INDEX IF NOT EXISTS logs_by_job ON logs (json_extract(body, '$.job_id'), id);
";

/// The expression `logs_by_job` indexes; a query must repeat it exactly to use the index.
const JOB_ID: &str = "json_extract(body, '$.job_id')";

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Unavailable(err.to_string())
    }
}

impl From<BlockingTaskFailed> for StoreError {
    fn from(err: BlockingTaskFailed) -> Self {
        StoreError::Unavailable(err.to_string())
    }
}

struct Database {
    conn: SharedConnection,
    /// The last `PRAGMA data_version` the poller saw.
    data_version: Mutex<i64>,
}

pub struct SqliteStore {
    dir: PathBuf,
    busy_timeout: Duration,
    open: Mutex<HashMap<String, Arc<Database>>>,
    changes: broadcast::Sender<Change>,
}

impl SqliteStore {
    /// Opens the store in `dir`, creating the folder if needed, and starts the poller that
    /// reports writes made by other processes. Must be called inside a Tokio runtime.
    pub fn open(dir: &Path, busy_timeout: Duration) -> StoreResult<Arc<Self>> {
        std::fs::create_dir_all(dir).map_err(|err| {
            StoreError::Unavailable(format!("cannot create folder {}: {err}", dir.display()))
        })?;
        let (changes, _) = broadcast::channel(256);
        let store = Arc::new(Self {
            dir: dir.to_path_buf(),
            busy_timeout,
            open: Mutex::new(HashMap::new()),
            changes,
        });
        tokio::spawn(poll_foreign_writes(Arc::downgrade(&store)));
        Ok(store)
    }

    /// Returns the file of a database. Names that are not instance names (such as
    /// `../queue`) get `DatabaseNotFound`, so no path outside the folder is ever opened.
    fn path_of(&self, db: &str) -> StoreResult<PathBuf> {
        if crate::instance::validate_name(db).is_err() {
            return Err(StoreError::DatabaseNotFound(db.to_string()));
        }
        Ok(self.dir.join(format!("{db}{FILE_SUFFIX}")))
    }

    fn database(&self, db: &str) -> StoreResult<Arc<Database>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(database) = open.get(db) {
            return Ok(database.clone());
        }
        let path = self.path_of(db)?;
        if !path.exists() {
            return Err(StoreError::DatabaseNotFound(db.to_string()));
        }
        let database = Arc::new(self.open_file(&path)?);
        // Adds the indexes of newer versions to a database an older version created. The
        // first open after an upgrade builds them, which blocks this thread for a moment on a
        // large log.
        database.conn.execute_batch_now(SCHEMA)?;
        open.insert(db.to_string(), database.clone());
        Ok(database)
    }

    fn open_file(&self, path: &Path) -> StoreResult<Database> {
        let conn = SharedConnection::open(path, self.busy_timeout)?;
        Ok(Database {
            conn,
            data_version: Mutex::new(0),
        })
    }

    fn notify(&self, db: &str, id: Option<&str>) {
        // No receivers is normal (the CLI has none), so a send error is not a failure.
        let _ = self.changes.send(Change {
            db: db.to_string(),
            id: id.map(str::to_string),
        });
    }
}

async fn poll_foreign_writes(store: Weak<SqliteStore>) {
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    loop {
        interval.tick().await;
        let Some(store) = store.upgrade() else { return };
        let databases: Vec<_> = {
            let open = store.open.lock().unwrap_or_else(|p| p.into_inner());
            open.iter()
                .map(|(name, db)| (name.clone(), db.clone()))
                .collect()
        };
        for (name, database) in databases {
            let version = database
                .conn
                .call(|conn| {
                    let version = conn.query_row("PRAGMA data_version", [], |row| row.get(0))?;
                    Ok::<i64, StoreError>(version)
                })
                .await;
            let Ok(version) = version else { continue };
            let changed = {
                let mut seen = database
                    .data_version
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let changed = *seen != 0 && *seen != version;
                *seen = version;
                changed
            };
            if changed {
                store.notify(&name, None);
            }
        }
    }
}

fn next_rev(previous: Option<&str>, body: &str) -> String {
    let generation = previous
        .and_then(|rev| rev.split_once('-'))
        .and_then(|(generation, _)| generation.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let mut hasher = Sha256::new();
    hasher.update(previous.unwrap_or("").as_bytes());
    hasher.update(body.as_bytes());
    let digest = hex::encode(hasher.finalize());
    format!("{generation}-{}", &digest[..32])
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_database(&self, db: &str) -> StoreResult<()> {
        let path = self.path_of(db)?;
        if path.exists() {
            return Err(StoreError::DatabaseExists(db.to_string()));
        }
        let database = Arc::new(self.open_file(&path)?);
        database
            .conn
            .call(|conn| conn.execute_batch(SCHEMA).map_err(StoreError::from))
            .await?;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.insert(db.to_string(), database);
        Ok(())
    }

    async fn list_databases(&self) -> StoreResult<Vec<String>> {
        let entries = std::fs::read_dir(&self.dir).map_err(|err| {
            StoreError::Unavailable(format!("cannot read folder {}: {err}", self.dir.display()))
        })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                name.strip_suffix(FILE_SUFFIX).map(str::to_string)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    async fn get(&self, db: &str, id: &str) -> StoreResult<Option<Document>> {
        let database = self.database(db)?;
        let id = id.to_string();
        database
            .conn
            .call(move |conn| {
                let row = conn
                    .query_row("SELECT rev, body FROM docs WHERE id = ?1", [&id], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .optional()?;
                let Some((rev, body)) = row else {
                    return Ok(None);
                };
                let body = serde_json::from_str(&body)
                    .map_err(|err| StoreError::Corrupt(format!("document {id:?}: {err}")))?;
                Ok(Some(Document { id, rev, body }))
            })
            .await
    }

    async fn put(
        &self,
        db: &str,
        id: &str,
        rev: Option<&str>,
        body: &Value,
    ) -> StoreResult<String> {
        let database = self.database(db)?;
        let (db_name, doc_id, rev) = (db.to_string(), id.to_string(), rev.map(str::to_string));
        let body = body.to_string();
        let new_rev = database
            .conn
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let current: Option<String> = tx
                    .query_row("SELECT rev FROM docs WHERE id = ?1", [&doc_id], |row| {
                        row.get(0)
                    })
                    .optional()?;
                if current != rev {
                    let rev = rev.unwrap_or_default();
                    return Err(StoreError::Conflict {
                        db: db_name,
                        id: doc_id,
                        rev,
                    });
                }
                let new_rev = next_rev(current.as_deref(), &body);
                tx.execute(
                    "INSERT INTO docs (id, rev, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET rev = excluded.rev, body = excluded.body",
                    params![doc_id, new_rev, body],
                )?;
                tx.commit()?;
                Ok(new_rev)
            })
            .await?;
        self.notify(db, Some(id));
        Ok(new_rev)
    }

    async fn append_logs(&self, db: &str, entries: &[LogEntry]) -> StoreResult<()> {
        let database = self.database(db)?;
        let entries = entries.to_vec();
        database
            .conn
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT OR IGNORE INTO logs (id, at, app, feature, event, outcome, body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?;
                    for entry in &entries {
                        let body = serde_json::to_string(entry)
                            .map_err(|err| StoreError::Corrupt(err.to_string()))?;
                        insert.execute(params![
                            entry.id,
                            format_time(entry.at),
                            entry.app,
                            entry.feature,
                            entry.event,
                            entry.outcome.as_str(),
                            body
                        ])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn final_log_of_job(&self, db: &str, job_id: &str) -> StoreResult<Option<LogEntry>> {
        let database = self.database(db)?;
        let job_id = job_id.to_string();
        database
            .conn
            .call(move |conn| {
                let mut select = conn.prepare_cached(
                    "SELECT body FROM logs
                     WHERE id > ?1 AND outcome IN (?2, ?3, ?4)
                       AND json_extract(body, '$.job_id') = ?1
                       AND json_extract(body, '$.continued') IS NOT 1
                     ORDER BY id DESC LIMIT 1",
                )?;
                let finals = [
                    Outcome::Succeeded,
                    Outcome::FailedPermanently,
                    Outcome::FailedAfterRetries,
                ];
                let mut rows = select.query(params![
                    job_id,
                    finals[0].as_str(),
                    finals[1].as_str(),
                    finals[2].as_str()
                ])?;
                let Some(row) = rows.next()? else {
                    return Ok(None);
                };
                let body: String = row.get(0)?;
                serde_json::from_str(&body)
                    .map(Some)
                    .map_err(|err| StoreError::Corrupt(format!("log entry: {err}")))
            })
            .await
    }

    async fn purge_logs(
        &self,
        db: &str,
        before: time::OffsetDateTime,
        limit: usize,
    ) -> StoreResult<usize> {
        let database = self.database(db)?;
        let first_kept = crate::store::first_log_id_at(before);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        database
            .conn
            .call(move |conn| {
                let deleted = conn.execute(
                    "DELETE FROM logs WHERE id IN
                     (SELECT id FROM logs WHERE id < ?1 ORDER BY id LIMIT ?2)",
                    params![first_kept, limit],
                )?;
                Ok(deleted)
            })
            .await
    }

    async fn query_logs(&self, db: &str, query: &LogQuery) -> StoreResult<LogPage> {
        let database = self.database(db)?;
        let query = query.clone();
        database
            .conn
            .call(move |conn| select_logs(conn, &query))
            .await
    }

    async fn list_documents(
        &self,
        db: &str,
        id_prefix: &str,
        limit: usize,
    ) -> StoreResult<Vec<Document>> {
        let database = self.database(db)?;
        let start = id_prefix.to_string();
        let end = super::prefix_end(id_prefix);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        database
            .conn
            .call(move |conn| {
                // SQLite compares TEXT with memcmp, and UTF-8 bytes sort in code point order.
                let mut select = conn.prepare_cached(
                    "SELECT id, rev, body FROM docs
                     WHERE id >= ?1 AND (?2 IS NULL OR id < ?2)
                     ORDER BY id DESC LIMIT ?3",
                )?;
                let rows = select.query_map(params![start, end, limit], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })?;
                let mut documents = Vec::new();
                for row in rows {
                    let (id, rev, body) = row?;
                    let body = serde_json::from_str(&body)
                        .map_err(|err| StoreError::Corrupt(format!("document {id:?}: {err}")))?;
                    documents.push(Document { id, rev, body });
                }
                Ok(documents)
            })
            .await
    }

    async fn get_log(&self, db: &str, id: &str) -> StoreResult<Option<LogEntry>> {
        let database = self.database(db)?;
        let id = id.to_string();
        database
            .conn
            .call(move |conn| {
                let body: Option<String> = conn
                    .query_row("SELECT body FROM logs WHERE id = ?1", [&id], |row| {
                        row.get(0)
                    })
                    .optional()?;
                body.map(|body| parse_entry(&body)).transpose()
            })
            .await
    }

    async fn log_buckets(
        &self,
        db: &str,
        since: time::OffsetDateTime,
    ) -> StoreResult<Vec<LogBucket>> {
        let database = self.database(db)?;
        let since = format_time(since);
        database
            .conn
            .call(move |conn| select_buckets(conn, &since))
            .await
    }

    fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    async fn ping(&self) -> StoreResult<()> {
        std::fs::metadata(&self.dir).map(|_| ()).map_err(|err| {
            StoreError::Unavailable(format!("cannot read folder {}: {err}", self.dir.display()))
        })
    }
}

/// Formats the `at` column and the time filters alike, in UTC with exactly three fraction
/// digits, so that SQLite compares them correctly as strings. Rows written by earlier versions
/// carry RFC 3339 with a varying number of digits; against this format they still compare
/// correctly to the millisecond.
fn format_time(at: time::OffsetDateTime) -> String {
    super::timestamp::format(at)
}

fn select_logs(conn: &mut rusqlite::Connection, query: &LogQuery) -> StoreResult<LogPage> {
    let mut sql = String::from("SELECT body FROM logs WHERE 1 = 1");
    let mut args: Vec<String> = Vec::new();
    let mut filter = |column: &str, op: &str, value: Option<String>| {
        if let Some(value) = value {
            args.push(value);
            sql.push_str(&format!(" AND {column} {op} ?{}", args.len()));
        }
    };
    filter("app", "=", query.app.clone());
    filter("feature", "=", query.feature.clone());
    filter(
        "outcome",
        "=",
        query.outcome.map(|o| o.as_str().to_string()),
    );
    filter("event", "=", query.event.clone());
    filter(JOB_ID, "=", query.job_id.clone());
    filter("at", ">=", query.since.map(format_time));
    filter("at", "<", query.until.map(format_time));
    let (first_id, end_id) = super::id_range_of_times(query.since, query.until);
    filter("id", ">=", first_id);
    filter("id", "<", end_id);
    filter("id", "<", query.before.clone());
    filter("id", ">", query.after.clone());
    let ascending = query.after.is_some();
    let limit = query.limit.clamp(1, 1000);
    sql.push_str(if ascending {
        " ORDER BY id ASC"
    } else {
        " ORDER BY id DESC"
    });
    sql.push_str(&format!(" LIMIT {}", limit + 1));

    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(args.iter()), |row| {
        row.get::<_, String>(0)
    })?;
    let mut entries = Vec::new();
    for row in rows {
        entries.push(parse_entry(&row?)?);
    }
    Ok(LogPage::cut(entries, limit, ascending))
}

fn parse_entry(body: &str) -> StoreResult<LogEntry> {
    serde_json::from_str(body).map_err(|err| StoreError::Corrupt(format!("log entry: {err}")))
}

fn select_buckets(conn: &mut rusqlite::Connection, since: &str) -> StoreResult<Vec<LogBucket>> {
    let mut statement = conn.prepare_cached(
        "SELECT CAST(strftime('%s', at) AS INTEGER) / 3600 * 3600 AS hour_start, app, outcome,
                json_extract(body, '$.continued') IS 1 AS continued, COUNT(*),
                SUM(json_extract(body, '$.duration_ms')), MAX(json_extract(body, '$.duration_ms'))
         FROM logs WHERE at >= ?1
         GROUP BY hour_start, app, outcome, continued ORDER BY hour_start, app, outcome",
    )?;
    let rows = statement.query_map([since], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, bool>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, Option<i64>>(5)?,
            row.get::<_, Option<i64>>(6)?,
        ))
    })?;
    let mut buckets = Vec::new();
    for row in rows {
        let (hour_start, app, outcome, continued, count, total, max) = row?;
        let outcome = outcome
            .parse::<Outcome>()
            .map_err(|err| StoreError::Corrupt(format!("log entry: {err}")))?;
        let unsigned = |value: Option<i64>| u64::try_from(value.unwrap_or(0)).unwrap_or(0);
        buckets.push(LogBucket {
            hour_start,
            app,
            outcome,
            continued,
            count: unsigned(Some(count)),
            total_duration_ms: unsigned(total),
            max_duration_ms: unsigned(max),
        });
    }
    Ok(buckets)
}
