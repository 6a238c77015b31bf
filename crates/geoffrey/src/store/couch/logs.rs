//! Log entries in CouchDB: written in `_bulk_docs` batches, read with Mango `_find`.
//!
//! Workers append one entry per attempt. Writing each as its own request would make the
//! store the limit of job throughput. So `append` hands its entries to one writer task. The
//! task sends everything waiting for the same database in one `_bulk_docs` request, and
//! replies to each caller once its entries are stored.

use super::{CouchStore, reason, unexpected};
use crate::store::{LogEntry, LogPage, LogQuery, Outcome, StoreError, StoreResult, timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Weak;
use tokio::sync::{mpsc, oneshot};

/// Id prefix of log documents; `;` sorts right after `:`, so it bounds the range.
const ID_PREFIX: &str = "log:";
const ID_END: &str = "log;";

/// Largest number of append calls combined in one round of writes.
const MAX_BATCH: usize = 256;

/// Fields with an index of their own, each paired with the document id: the filters of the
/// log queries, and the job id that a job run again looks up.
const INDEXED_FIELDS: [&str; 5] = ["app", "outcome", "event", "feature", "job_id"];

pub(super) struct WriteRequest {
    db: String,
    docs: Vec<Value>,
    reply: oneshot::Sender<StoreResult<()>>,
}

pub(super) async fn create_indexes(store: &CouchStore, name: &str) -> StoreResult<()> {
    for field in INDEXED_FIELDS {
        let index = json!({
            "index": { "fields": [field, "_id"] },
            "name": format!("logs-by-{field}"),
            "ddoc": format!("logs-by-{field}"),
            "type": "json",
        });
        let url = store.url(&[name, "_index"]);
        let (status, body) = store
            .send(store.request(Method::POST, url, None).json(&index))
            .await?;
        if !status.is_success() {
            return Err(unexpected(status, &body));
        }
    }
    Ok(())
}

fn to_document(entry: &LogEntry) -> StoreResult<Value> {
    let mut document =
        serde_json::to_value(entry).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    if let Some(object) = document.as_object_mut() {
        object.insert(
            "_id".into(),
            Value::from(format!("{ID_PREFIX}{}", entry.id)),
        );
        object.insert("type".into(), Value::from("log"));
    }
    Ok(document)
}

fn from_document(mut document: Value) -> StoreResult<LogEntry> {
    if let Some(object) = document.as_object_mut() {
        object.remove("_id");
        object.remove("_rev");
        object.remove("type");
    }
    serde_json::from_value(document).map_err(|err| StoreError::Corrupt(format!("log entry: {err}")))
}

pub(super) async fn append(store: &CouchStore, db: &str, entries: &[LogEntry]) -> StoreResult<()> {
    let docs = entries
        .iter()
        .map(to_document)
        .collect::<StoreResult<Vec<_>>>()?;
    let (reply, answer) = oneshot::channel();
    let stopped = || StoreError::Unavailable("the log writer stopped".to_string());
    let request = WriteRequest {
        db: store.db_name(db),
        docs,
        reply,
    };
    store
        .log_writer
        .send(request)
        .await
        .map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

pub(super) async fn write_batches(
    store: Weak<CouchStore>,
    mut requests: mpsc::Receiver<WriteRequest>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let Some(store) = store.upgrade() else { return };
        let mut by_db: HashMap<String, Vec<WriteRequest>> = HashMap::new();
        for request in batch.drain(..) {
            by_db.entry(request.db.clone()).or_default().push(request);
        }
        for (db, requests) in by_db {
            let docs: Vec<&Value> = requests.iter().flat_map(|request| &request.docs).collect();
            let result = bulk_docs(&store, &db, &docs).await;
            for request in requests {
                let _ = request
                    .reply
                    .send(result.as_ref().map(|_| ()).map_err(clone_error));
            }
        }
    }
}

fn clone_error(err: &StoreError) -> StoreError {
    match err {
        StoreError::DatabaseNotFound(db) => StoreError::DatabaseNotFound(db.clone()),
        StoreError::Unauthorized => StoreError::Unauthorized,
        other => StoreError::Unavailable(other.to_string()),
    }
}

async fn bulk_docs(store: &CouchStore, db: &str, docs: &[&Value]) -> StoreResult<()> {
    let url = store.url(&[db, "_bulk_docs"]);
    let body = json!({ "docs": docs });
    let (status, reply) = store
        .send(store.request(Method::POST, url, None).json(&body))
        .await?;
    match status {
        StatusCode::CREATED | StatusCode::ACCEPTED | StatusCode::OK => {}
        StatusCode::NOT_FOUND => {
            let instance = db.strip_prefix(&store.prefix).unwrap_or(db);
            return Err(StoreError::DatabaseNotFound(instance.to_string()));
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(StoreError::Unauthorized),
        other => return Err(unexpected(other, &reply)),
    }
    // A conflict means an entry with this id is already stored: a repeated write of the same
    // attempt, which is what the caller wanted.
    let failures: Vec<String> = reply
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|result| {
            result
                .get("error")
                .and_then(Value::as_str)
                .map(|e| (e, result))
        })
        .filter(|(error, _)| *error != "conflict")
        .map(|(error, result)| format!("{error}: {}", reason(result)))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Unavailable(format!(
            "writing log entries failed: {}",
            failures.join("; ")
        )))
    }
}

pub(super) async fn query(store: &CouchStore, db: &str, query: &LogQuery) -> StoreResult<LogPage> {
    let ascending = query.after.is_some();
    let direction = if ascending { "asc" } else { "desc" };
    let limit = query.limit.clamp(1, 1000);

    let mut id_range = Map::new();
    let lower = query
        .after
        .as_ref()
        .map(|after| format!("{ID_PREFIX}{after}"));
    id_range.insert(
        "$gt".into(),
        Value::from(lower.unwrap_or_else(|| ID_PREFIX.to_string())),
    );
    let upper = query
        .before
        .as_ref()
        .map(|before| format!("{ID_PREFIX}{before}"));
    id_range.insert(
        "$lt".into(),
        Value::from(upper.unwrap_or_else(|| ID_END.to_string())),
    );
    // A time filter also bounds the ids, which lets CouchDB read only that range.
    let (first_id, end_id) = crate::store::id_range_of_times(query.since, query.until);
    if let Some(first_id) = first_id {
        id_range.insert("$gte".into(), Value::from(format!("{ID_PREFIX}{first_id}")));
    }
    if let Some(end_id) = end_id {
        let end = format!("{ID_PREFIX}{end_id}");
        let current = id_range
            .get("$lt")
            .and_then(Value::as_str)
            .unwrap_or(ID_END);
        if end.as_str() < current {
            id_range.insert("$lt".into(), Value::from(end));
        }
    }
    let mut selector = Map::new();
    selector.insert("_id".into(), Value::Object(id_range));

    let filters = [
        ("app", query.app.clone()),
        ("outcome", query.outcome.map(|o| o.as_str().to_string())),
        ("event", query.event.clone()),
        ("feature", query.feature.clone()),
        ("job_id", query.job_id.clone()),
    ];
    let mut sort = vec![json!({ "_id": direction })];
    let mut use_index = None;
    for (field, value) in filters {
        let Some(value) = value else { continue };
        selector.insert(field.into(), Value::from(value));
        if use_index.is_none() {
            sort = vec![json!({ field: direction }), json!({ "_id": direction })];
            use_index = Some(format!("logs-by-{field}"));
        }
    }
    let mut at = Map::new();
    if let Some(since) = query.since {
        at.insert("$gte".into(), Value::from(timestamp::format(since)));
    }
    if let Some(until) = query.until {
        at.insert("$lt".into(), Value::from(timestamp::format(until)));
    }
    if !at.is_empty() {
        selector.insert("at".into(), Value::Object(at));
    }

    // One row more than the page shows whether there is a next page. One more again because
    // PouchDB Server 4.2 counts the exclusive bound row of a descending range against the
    // limit before dropping it; CouchDB just returns one spare row, which is cut below.
    let mut body = json!({ "selector": selector, "sort": sort, "limit": limit + 2 });
    if let Some(index) = use_index {
        body["use_index"] = Value::from(index);
    }
    let url = store.url(&[&store.db_name(db), "_find"]);
    let (status, reply) = store
        .send(store.request(Method::POST, url, None).json(&body))
        .await?;
    match status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Err(StoreError::DatabaseNotFound(db.to_string())),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(StoreError::Unauthorized),
        other => return Err(unexpected(other, &reply)),
    }
    let docs = reply
        .get("docs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let entries = docs
        .into_iter()
        .map(from_document)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(LogPage::cut(entries, limit, ascending))
}

/// Reads the log entry with id `id`.
pub(super) async fn get(store: &CouchStore, db: &str, id: &str) -> StoreResult<Option<LogEntry>> {
    let document = store
        .get_with(db, &format!("{ID_PREFIX}{id}"), None)
        .await?;
    document
        .filter(|document| document.body.get("type").and_then(Value::as_str) == Some("log"))
        .map(|document| from_document(document.body))
        .transpose()
}

/// Deletes the oldest log documents written before `before`. Log ids are UUIDv7, so
/// `_all_docs` over the id range finds them without an index. CouchDB keeps a small
/// tombstone for each, which compaction does not remove.
pub(super) async fn purge(
    store: &CouchStore,
    db: &str,
    before: time::OffsetDateTime,
    limit: usize,
) -> StoreResult<usize> {
    let name = store.db_name(db);
    let mut url = store.url(&[&name, "_all_docs"]);
    let end = format!("{ID_PREFIX}{}", crate::store::first_log_id_at(before));
    url.query_pairs_mut()
        .append_pair("startkey", &Value::from(ID_PREFIX).to_string())
        .append_pair("endkey", &Value::from(end).to_string())
        .append_pair("inclusive_end", "false")
        .append_pair("limit", &limit.to_string());
    let (status, body) = store.send(store.request(Method::GET, url, None)).await?;

    match status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Err(StoreError::DatabaseNotFound(db.to_string())),
        _ => return Err(unexpected(status, &body)),
    }
    let deletions: Vec<Value> = body["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| {
            let rev = row.pointer("/value/rev")?;
            Some(json!({ "_id": row["id"], "_rev": rev, "_deleted": true }))
        })
        .collect();
    if deletions.is_empty() {
        return Ok(0);
    }

    let url = store.url(&[&name, "_bulk_docs"]);
    let request = store
        .request(Method::POST, url, None)
        .json(&json!({ "docs": deletions }));
    let (status, body) = store.send(request).await?;
    if !status.is_success() {
        return Err(unexpected(status, &body));
    }
    let deleted = body
        .as_array()
        .into_iter()
        .flatten()
        .filter(|result| result.get("ok") == Some(&Value::Bool(true)))
        .count();
    Ok(deleted)
}

/// Finds the newest entry of a job with a final outcome, searching the ids after the job's
/// own (see [`crate::store::Store::final_log_of_job`]).
pub(super) async fn final_of_job(
    store: &CouchStore,
    db: &str,
    job_id: &str,
) -> StoreResult<Option<LogEntry>> {
    let finals: Vec<&str> = [
        Outcome::Succeeded,
        Outcome::FailedPermanently,
        Outcome::FailedAfterRetries,
    ]
    .iter()
    .map(|outcome| outcome.as_str())
    .collect();
    let selector = json!({
        "_id": { "$gt": format!("{ID_PREFIX}{job_id}"), "$lt": ID_END },
        "job_id": job_id,
        "outcome": { "$in": finals },
        "continued": { "$exists": false },
    });
    let body = json!({ "selector": selector, "limit": 100 });
    let url = store.url(&[&store.db_name(db), "_find"]);
    let (status, reply) = store
        .send(store.request(Method::POST, url, None).json(&body))
        .await?;

    match status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Err(StoreError::DatabaseNotFound(db.to_string())),
        other => return Err(unexpected(other, &reply)),
    }
    let docs = reply["docs"].as_array().cloned().unwrap_or_default();
    let mut entries = docs
        .into_iter()
        .map(from_document)
        .collect::<StoreResult<Vec<_>>>()?;
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(entries.pop())
}
