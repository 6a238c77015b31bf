//! Shared plumbing for the embedded SQLite store and queue.
//!
//! rusqlite is synchronous, so every call runs on Tokio's blocking pool while it holds the
//! connection's mutex. One connection per file is enough for the embedded mode: SQLite
//! serializes writers anyway, and WAL mode lets other processes (the CLI next to a running
//! `geoffrey run`) read and write the same files.

use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One SQLite connection shared between tasks.
#[derive(Clone)]
pub struct SharedConnection(Arc<Mutex<Connection>>);

impl SharedConnection {
    /// Opens (or creates) the file with WAL journaling and `synchronous=FULL`, so a committed
    /// transaction is on disk before the call returns. `busy_timeout` is how long a write
    /// waits for another process's lock before it fails.
    pub fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Self(Arc::new(Mutex::new(conn))))
    }

    /// Runs SQL statements on the calling thread, for set-up steps outside the async calls.
    pub fn execute_batch_now(&self, sql: &str) -> rusqlite::Result<()> {
        let conn = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        conn.execute_batch(sql)
    }

    /// Runs `f` with the connection on the blocking thread pool.
    pub async fn call<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<rusqlite::Error> + From<BlockingTaskFailed> + Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || {
            // A panic in another call poisons the mutex but leaves the connection usable,
            // because every write runs inside a transaction that rolls back on drop.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|err| E::from(BlockingTaskFailed(err.to_string())))?
    }
}

/// A blocking task panicked or was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("database task failed: {0}")]
pub struct BlockingTaskFailed(pub String);
