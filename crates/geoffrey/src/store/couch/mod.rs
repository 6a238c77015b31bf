//! The CouchDB store, for running many API servers and workers against one store.
//!
//! A plain HTTP client on the CouchDB 3.x API (reqwest and serde). Each instance is one
//! database named `<prefix><instance>`. Creating it sets `_security`, so that only admins and
//! users with the role of the same name can read it, and creates the indexes the log queries
//! use. Log entries are documents with the id `log:<UUIDv7>`, written in `_bulk_docs`
//! batches (see `logs.rs`) and read with Mango `_find`. `_changes` feeds of the databases in
//! use report `CONFIG` changes (see `changes.rs`).
//!
//! The client relies only on documented CouchDB behaviour and tolerates PouchDB Server's
//! known differences: 401 where CouchDB sends 403, integer sequence numbers (sequences are
//! treated as opaque), and gzip-buffered feeds (this client never asks for gzip).

mod changes;
mod logs;

use super::{Change, Document, LogEntry, LogPage, LogQuery, Store, StoreError, StoreResult};
use crate::secret::Secret;
use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Timeout of every request except the `_changes` feeds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Basic-auth credentials.
#[derive(Clone, Debug)]
struct Credentials {
    user: String,
    password: Secret,
}

pub struct CouchStore {
    /// This store itself, for the tasks it starts.
    me: std::sync::Weak<CouchStore>,
    http: reqwest::Client,
    base: Url,
    admin: Option<Credentials>,
    prefix: String,
    changes: broadcast::Sender<Change>,
    watched: Mutex<HashSet<String>>,
    log_writer: mpsc::Sender<logs::WriteRequest>,
}

impl CouchStore {
    /// Connects to the server at `url` (`http://user:password@host:5984/`; the credentials
    /// are optional, and without them only [`Store::get_as`] can read anything). Checks that
    /// the server responds. Must be called inside a Tokio runtime.
    pub async fn connect(url: &str, prefix: &str) -> StoreResult<Arc<Self>> {
        let parsed = Url::parse(url).map_err(|err| {
            StoreError::Unavailable(format!(
                "invalid store URL: {err}; expected http://user:password@host:5984/"
            ))
        })?;
        let admin = (!parsed.username().is_empty()).then(|| Credentials {
            user: percent_decode(parsed.username()),
            password: Secret::new(percent_decode(parsed.password().unwrap_or_default())),
        });
        let base = base_url(parsed);
        let http = reqwest::Client::builder()
            .user_agent(concat!("Geoffrey/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| StoreError::Unavailable(err.to_string()))?;
        let (changes, _) = broadcast::channel(256);
        let (log_writer, requests) = mpsc::channel(1024);
        let store = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            http,
            base,
            admin,
            prefix: prefix.to_string(),
            changes,
            watched: Mutex::new(HashSet::new()),
            log_writer,
        });
        tokio::spawn(logs::write_batches(Arc::downgrade(&store), requests));
        store.ping().await?;
        store.check_credentials().await?;
        Ok(store)
    }

    /// Fails when the server rejects the credentials of the store URL, so that a wrong
    /// password shows at start instead of as failed requests later.
    async fn check_credentials(&self) -> StoreResult<()> {
        if self.admin.is_none() {
            return Ok(());
        }
        let (status, _) = self
            .send(self.request(Method::GET, self.url(&["_session"]), None))
            .await?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(StoreError::Unavailable(format!(
                "CouchDB at {} rejected the user and password of the store URL; check them",
                self.base
            )));
        }
        Ok(())
    }

    /// Tells whether the store URL's user is a server admin, which creating databases needs.
    async fn is_admin(&self) -> StoreResult<bool> {
        let (_, body) = self
            .send(self.request(Method::GET, self.url(&["_session"]), None))
            .await?;
        let roles = body
            .pointer("/userCtx/roles")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(roles.iter().any(|role| role == "_admin"))
    }

    fn db_name(&self, db: &str) -> String {
        format!("{}{db}", self.prefix)
    }

    fn url(&self, segments: &[&str]) -> Url {
        url_of(&self.base, segments)
    }

    fn request(
        &self,
        method: Method,
        url: Url,
        credentials: Option<&Credentials>,
    ) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url).timeout(REQUEST_TIMEOUT);
        match credentials.or(self.admin.as_ref()) {
            Some(credentials) => {
                request.basic_auth(&credentials.user, Some(credentials.password.expose()))
            }
            None => request,
        }
    }

    /// Sends a request and returns the status and JSON body; transport errors become
    /// `Unavailable`.
    async fn send(&self, request: reqwest::RequestBuilder) -> StoreResult<(StatusCode, Value)> {
        let response = request.send().await.map_err(|err| unavailable(&err))?;
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        if status.is_server_error() {
            return Err(StoreError::Unavailable(format!(
                "server responded with {status}: {}",
                reason(&body)
            )));
        }
        Ok((status, body))
    }

    async fn get_with(
        &self,
        db: &str,
        id: &str,
        credentials: Option<&Credentials>,
    ) -> StoreResult<Option<Document>> {
        let url = self.url(&[&self.db_name(db), id]);
        let (status, body) = self
            .send(self.request(Method::GET, url, credentials))
            .await?;
        match status {
            StatusCode::OK => Ok(Some(document_from(id, body)?)),
            StatusCode::NOT_FOUND
                if reason(&body) == "no_db_file" || reason(&body).contains("does not exist") =>
            {
                Err(StoreError::DatabaseNotFound(db.to_string()))
            }
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(StoreError::Unauthorized),
            other => Err(unexpected(other, &body)),
        }
    }

    fn notify(&self, db: &str, id: Option<&str>) {
        let _ = self.changes.send(Change {
            db: db.to_string(),
            id: id.map(str::to_string),
        });
    }
}

/// Returns a server URL without its credentials and with a trailing slash, as the base that
/// [`url_of`] appends paths to.
pub(crate) fn base_url(mut url: Url) -> Url {
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// Returns the URL of `segments` under `base`, each percent-encoded as one path segment.
pub(crate) fn url_of(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Describes a transport error without its URL.
fn unavailable(err: &reqwest::Error) -> StoreError {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let cause = std::error::Error::source(err)
        .map(|source| format!(": {source}"))
        .unwrap_or_default();
    let host = err
        .url()
        .map(|url| {
            format!(
                " at {}:{}",
                url.host_str().unwrap_or_default(),
                url.port_or_known_default().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    StoreError::Unavailable(format!("CouchDB{host} {kind}{cause}"))
}

fn reason(body: &Value) -> String {
    body.get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Tells whether `rev` has the form of a CouchDB revision: a generation number, a dash and
/// a hexadecimal digest, such as `2-7051cbe5c8faecd085a3fa619e6e6337`.
fn is_revision(rev: &str) -> bool {
    rev.split_once('-').is_some_and(|(generation, digest)| {
        generation.parse::<u64>().is_ok()
            && !digest.is_empty()
            && digest.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn unexpected(status: StatusCode, body: &Value) -> StoreError {
    StoreError::Unavailable(format!("CouchDB responded with {status}: {}", reason(body)))
}

fn document_from(id: &str, mut body: Value) -> StoreResult<Document> {
    let object = body
        .as_object_mut()
        .ok_or_else(|| StoreError::Corrupt(format!("document {id:?} is not an object")))?;
    object.remove("_id");
    let rev = object
        .remove("_rev")
        .and_then(|rev| rev.as_str().map(str::to_string))
        .unwrap_or_default();
    Ok(Document {
        id: id.to_string(),
        rev,
        body,
    })
}

/// Reads documents by id prefix with `_all_docs`, walking the ids downwards from the end of
/// the prefix's range.
async fn list_documents(
    store: &CouchStore,
    db: &str,
    id_prefix: &str,
    limit: usize,
) -> StoreResult<Vec<Document>> {
    let mut url = store.url(&[&store.db_name(db), "_all_docs"]);
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("descending", "true")
            .append_pair("include_docs", "true")
            .append_pair("endkey", &Value::from(id_prefix).to_string())
            // The range starts at the end key itself, which may exist and is dropped below.
            .append_pair("limit", &limit.saturating_add(1).to_string());
        if let Some(end) = super::prefix_end(id_prefix) {
            query.append_pair("startkey", &Value::from(end).to_string());
        }
    }
    let (status, body) = store.send(store.request(Method::GET, url, None)).await?;
    match status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Err(StoreError::DatabaseNotFound(db.to_string())),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(StoreError::Unauthorized),
        other => return Err(unexpected(other, &body)),
    }
    let rows = body["rows"].as_array().cloned().unwrap_or_default();
    let mut documents = Vec::new();
    for row in rows {
        let Some(id) = row["id"].as_str() else {
            continue;
        };
        let is_design = id.starts_with("_design/") && !id_prefix.starts_with("_design/");
        if !id.starts_with(id_prefix) || is_design || !row["doc"].is_object() {
            continue;
        }
        documents.push(document_from(id, row["doc"].clone())?);
        if documents.len() == limit {
            break;
        }
    }
    Ok(documents)
}

#[async_trait]
impl Store for CouchStore {
    async fn create_database(&self, db: &str) -> StoreResult<()> {
        // PouchDB Server crashes on a database creation by a non-admin, and CouchDB refuses
        // it, so the check comes first.
        if !self.is_admin().await? {
            return Err(StoreError::Unavailable(
                "creating an instance needs a CouchDB admin in the store URL".to_string(),
            ));
        }
        let name = self.db_name(db);
        let (status, body) = self
            .send(self.request(Method::PUT, self.url(&[&name]), None))
            .await?;
        match status {
            StatusCode::CREATED | StatusCode::ACCEPTED => {}
            StatusCode::PRECONDITION_FAILED => {
                return Err(StoreError::DatabaseExists(db.to_string()));
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(StoreError::Unauthorized);
            }
            other => return Err(unexpected(other, &body)),
        }
        let security = json!({
            "admins": { "names": [], "roles": [] },
            "members": { "names": [], "roles": [name] },
        });
        let url = self.url(&[&name, "_security"]);
        let (status, body) = self
            .send(self.request(Method::PUT, url, None).json(&security))
            .await?;
        if !status.is_success() {
            return Err(unexpected(status, &body));
        }
        logs::create_indexes(self, &name).await
    }

    async fn list_databases(&self) -> StoreResult<Vec<String>> {
        let (status, body) = self
            .send(self.request(Method::GET, self.url(&["_all_dbs"]), None))
            .await?;
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(StoreError::Unauthorized);
            }
            other => return Err(unexpected(other, &body)),
        }
        let names = body.as_array().cloned().unwrap_or_default();
        let mut instances: Vec<String> = names
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|name| name.strip_prefix(&self.prefix))
            .map(str::to_string)
            .collect();
        instances.sort();
        Ok(instances)
    }

    async fn get(&self, db: &str, id: &str) -> StoreResult<Option<Document>> {
        self.get_with(db, id, None).await
    }

    async fn put(
        &self,
        db: &str,
        id: &str,
        rev: Option<&str>,
        body: &Value,
    ) -> StoreResult<String> {
        // CouchDB rejects a revision it cannot parse with 400. No document has such a
        // revision, so it is reported as stale (`Conflict`), as the embedded store does.
        if let Some(rev) = rev.filter(|rev| !is_revision(rev)) {
            return Err(StoreError::Conflict {
                db: db.to_string(),
                id: id.to_string(),
                rev: rev.to_string(),
            });
        }
        let mut document = body.clone();
        if let (Some(object), Some(rev)) = (document.as_object_mut(), rev) {
            object.insert("_rev".into(), Value::from(rev));
        }
        let url = self.url(&[&self.db_name(db), id]);
        let (status, reply) = self
            .send(self.request(Method::PUT, url, None).json(&document))
            .await?;
        match status {
            StatusCode::CREATED | StatusCode::ACCEPTED => {
                self.notify(db, Some(id));
                Ok(reply
                    .get("rev")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string())
            }
            StatusCode::CONFLICT => Err(StoreError::Conflict {
                db: db.to_string(),
                id: id.to_string(),
                rev: rev.unwrap_or_default().to_string(),
            }),
            StatusCode::NOT_FOUND => Err(StoreError::DatabaseNotFound(db.to_string())),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(StoreError::Unauthorized),
            other => Err(unexpected(other, &reply)),
        }
    }

    async fn append_logs(&self, db: &str, entries: &[LogEntry]) -> StoreResult<()> {
        logs::append(self, db, entries).await
    }

    async fn query_logs(&self, db: &str, query: &LogQuery) -> StoreResult<LogPage> {
        logs::query(self, db, query).await
    }

    async fn final_log_of_job(&self, db: &str, job_id: &str) -> StoreResult<Option<LogEntry>> {
        logs::final_of_job(self, db, job_id).await
    }

    async fn get_log(&self, db: &str, id: &str) -> StoreResult<Option<LogEntry>> {
        logs::get(self, db, id).await
    }

    async fn purge_logs(
        &self,
        db: &str,
        before: time::OffsetDateTime,
        limit: usize,
    ) -> StoreResult<usize> {
        logs::purge(self, db, before, limit).await
    }

    async fn list_documents(
        &self,
        db: &str,
        id_prefix: &str,
        limit: usize,
    ) -> StoreResult<Vec<Document>> {
        list_documents(self, db, id_prefix, limit).await
    }

    fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn watch(&self, db: &str) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if watched.insert(db.to_string()) {
            changes::follow(self.me.clone(), db.to_string());
        }
    }

    fn has_accounts(&self) -> bool {
        true
    }

    async fn get_as(
        &self,
        db: &str,
        id: &str,
        user: &str,
        password: &str,
    ) -> StoreResult<Option<Document>> {
        let credentials = Credentials {
            user: user.to_string(),
            password: Secret::new(password),
        };
        self.get_with(db, id, Some(&credentials)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        let (status, body) = self
            .send(self.request(Method::GET, self.base.clone(), None))
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(unexpected(status, &body))
        }
    }
}
