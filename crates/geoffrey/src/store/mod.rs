//! The document store: one database per instance, holding its `CONFIG`, app state and the log
//! of every job attempt.
//!
//! The model is CouchDB's, so that the embedded SQLite store and a CouchDB server fit the same
//! trait: documents have an id and a revision, and a write that names a stale revision fails
//! with [`StoreError::Conflict`] instead of overwriting. Log entries are append-only and are
//! read newest first with cursor paging.

pub mod couch;
mod logs;
pub mod sqlite;

pub use logs::{
    LogBucket, LogBuckets, LogEntry, LogPage, LogQuery, Outcome, first_log_id_at,
    id_range_of_times, log_id, timestamp,
};

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// A stored document and the revision it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub rev: String,
    pub body: Value,
}

/// A change notification: `id` is `None` when the store only detects that something in the
/// database changed, for example after a write by another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub db: String,
    pub id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {0:?} not found")]
    DatabaseNotFound(String),
    #[error("database {0:?} already exists")]
    DatabaseExists(String),
    #[error(
        "document {id:?} in database {db:?} was changed since revision {rev:?} was read; \
         read it again and reapply the change"
    )]
    Conflict { db: String, id: String, rev: String },
    #[error("the store rejected the credentials")]
    Unauthorized,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates an empty database. Fails with `DatabaseExists` if it is already there.
    async fn create_database(&self, db: &str) -> StoreResult<()>;

    /// Lists database names in lexical order.
    async fn list_databases(&self) -> StoreResult<Vec<String>>;

    /// Reads one document; `Ok(None)` when the database has no such document.
    async fn get(&self, db: &str, id: &str) -> StoreResult<Option<Document>>;

    /// Writes a document and returns its new revision. `rev` must be the revision the caller
    /// read, or `None` to create a new document; anything else fails with `Conflict`.
    async fn put(&self, db: &str, id: &str, rev: Option<&str>, body: &Value)
    -> StoreResult<String>;

    /// Appends log entries in one write.
    async fn append_logs(&self, db: &str, entries: &[LogEntry]) -> StoreResult<()>;

    /// Returns the newest log entry of job `job_id` with a final outcome (succeeded or failed
    /// for good, and not `continued`), if one was written. Job ids are UUIDv7 of the time the job was queued, and
    /// its entries are written later, so only entries with larger ids are searched.
    async fn final_log_of_job(&self, db: &str, job_id: &str) -> StoreResult<Option<LogEntry>>;

    /// Deletes at most `limit` log entries written before `before`, oldest first, and
    /// returns how many it deleted.
    async fn purge_logs(
        &self,
        db: &str,
        before: OffsetDateTime,
        limit: usize,
    ) -> StoreResult<usize>;

    /// Reads log entries matching `query`, newest first (oldest first with `after`).
    async fn query_logs(&self, db: &str, query: &LogQuery) -> StoreResult<LogPage>;

    /// Reads at most `limit` documents whose id starts with `id_prefix`, in descending id
    /// order: newest first for ids that sort by time, such as `audit:<UUIDv7>`. It lists
    /// documents written with [`Store::put`]. Log entries are stored apart in SQLite, so a
    /// prefix that matches their ids (`log:`) gives different results per store.
    async fn list_documents(
        &self,
        db: &str,
        id_prefix: &str,
        limit: usize,
    ) -> StoreResult<Vec<Document>>;

    /// Reads one log entry by id; `Ok(None)` when the database has no such entry.
    async fn get_log(&self, db: &str, id: &str) -> StoreResult<Option<LogEntry>>;

    /// Groups the log entries written at or after `since` by hour, app, outcome and
    /// `continued`, with counts and durations. This default reads every such entry through
    /// [`Store::query_logs`], a page of 1000 at a time.
    async fn log_buckets(&self, db: &str, since: OffsetDateTime) -> StoreResult<Vec<LogBucket>> {
        let mut buckets = LogBuckets::default();
        let mut query = LogQuery {
            since: Some(since),
            limit: 1000,
            ..LogQuery::default()
        };
        loop {
            let page = self.query_logs(db, &query).await?;
            for entry in &page.entries {
                buckets.add(entry);
            }
            match page.next_before {
                Some(cursor) => query.before = Some(cursor),
                None => return Ok(buckets.into_vec()),
            }
        }
    }

    /// Subscribes to change notifications for every database.
    fn changes(&self) -> broadcast::Receiver<Change>;

    /// Asks for change notifications of `db`, for stores that follow databases one by one.
    /// Calling it again for the same database does nothing.
    fn watch(&self, _db: &str) {}

    /// Tells whether the store has its own user accounts, so that credentials from a request
    /// can be checked with [`Store::get_as`].
    fn has_accounts(&self) -> bool {
        false
    }

    /// Reads a document with a user's credentials instead of the store's own. Fails with
    /// `Unauthorized` when the credentials are wrong or may not read the database.
    async fn get_as(
        &self,
        db: &str,
        id: &str,
        _user: &str,
        _password: &str,
    ) -> StoreResult<Option<Document>> {
        let _ = (db, id);
        Err(StoreError::Unauthorized)
    }

    /// Checks that the store responds.
    async fn ping(&self) -> StoreResult<()>;
}

/// Returns the smallest string greater than every string that starts with `prefix`, or
/// `None` when no such string exists (an empty prefix, or one of `char::MAX` only). For ids
/// compared by code point, `id >= prefix AND id < end` selects exactly the prefix.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{d7ff}' => Some('\u{e000}'),
            other => char::from_u32(u32::from(other) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Tells whether a change may have touched an instance's `CONFIG`.
pub fn instance_changed(change: &Change) -> bool {
    change
        .id
        .as_deref()
        .is_none_or(|id| id == crate::instance::CONFIG_ID)
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end("audit:").as_deref(), Some("audit;"));
        assert_eq!(prefix_end("a\u{d7ff}").as_deref(), Some("a\u{e000}"));
        assert_eq!(prefix_end("a\u{10ffff}").as_deref(), Some("b"));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("\u{10ffff}"), None);
    }
}
