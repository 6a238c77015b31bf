//! Following `_changes` of the databases in use, so every API server and worker drops a
//! cached `CONFIG` as soon as it changes anywhere.
//!
//! One long-poll request per followed database waits for the next change after the last
//! sequence seen (sequences are opaque strings or numbers, passed back as they came). When
//! the feed fails, for example while the server restarts, the follower reports the database
//! as changed, because it may have missed something, and starts again after a pause that
//! grows with repeated errors.

use super::{CouchStore, reason};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Weak;
use std::time::Duration;

const MAX_PAUSE: Duration = Duration::from_secs(30);

/// How long CouchDB keeps a long poll open without changes. PouchDB Server keeps it open
/// until a change comes, which works as well.
const LONG_POLL_MS: u64 = 60_000;

pub(super) fn follow(store: Weak<CouchStore>, db: String) {
    tokio::spawn(async move {
        let mut since: Option<Value> = None;
        let mut pause = Duration::from_millis(200);
        loop {
            let Some(current) = store.upgrade() else {
                return;
            };
            match poll(&current, &db, since.as_ref()).await {
                Ok(PollResult {
                    last_seq,
                    config_changed,
                }) => {
                    pause = Duration::from_millis(200);
                    if config_changed && since.is_some() {
                        current.notify(&db, Some(crate::instance::CONFIG_ID));
                    }
                    since = Some(last_seq);
                }
                Err(message) => {
                    tracing::warn!(db = %db, error = %message, pause = ?pause, "following CouchDB changes failed");
                    current.notify(&db, None);
                    since = None;
                    drop(current);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
    });
}

struct PollResult {
    last_seq: Value,
    config_changed: bool,
}

/// Waits for changes after `since`; with no `since`, returns at once with the current
/// sequence.
async fn poll(store: &CouchStore, db: &str, since: Option<&Value>) -> Result<PollResult, String> {
    let name = store.db_name(db);
    let mut url = store.url(&[&name, "_changes"]);
    {
        let mut pairs = url.query_pairs_mut();
        match since {
            Some(seq) => {
                let seq = seq
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| seq.to_string());
                pairs.append_pair("feed", "longpoll");
                pairs.append_pair("since", &seq);
                pairs.append_pair("timeout", &LONG_POLL_MS.to_string());
            }
            None => {
                pairs.append_pair("descending", "true");
                pairs.append_pair("limit", "1");
            }
        }
    }
    let request = store
        .http
        .request(Method::GET, url)
        .header("Accept-Encoding", "identity")
        .timeout(Duration::from_millis(LONG_POLL_MS * 2));
    let request = match &store.admin {
        Some(admin) => request.basic_auth(&admin.user, Some(admin.password.expose())),
        None => request,
    };
    let response = request
        .send()
        .await
        .map_err(|err| super::unavailable(&err).to_string())?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|err| format!("invalid changes feed: {err}"))?;
    if status != StatusCode::OK {
        return Err(format!(
            "CouchDB responded with {status}: {}",
            reason(&body)
        ));
    }
    let results = body
        .get("results")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let config_changed = results
        .iter()
        .any(|change| change.get("id").and_then(Value::as_str) == Some(crate::instance::CONFIG_ID));
    let last_seq = body.get("last_seq").cloned().unwrap_or(Value::Null);
    Ok(PollResult {
        last_seq,
        config_changed,
    })
}
