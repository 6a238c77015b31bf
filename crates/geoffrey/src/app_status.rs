//! Whether each app of an instance works: a document `app-status:<app>` in the instance
//! database, written by the workers when an attempt fails because of the app's configuration
//! and cleared by the next attempt that succeeds.

use crate::store::{Store, StoreError, timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn document_id(app: &str) -> String {
    format!("app-status:{app}")
}

/// The last known state of one app.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    /// Reason the app is misconfigured, or `None` when it works.
    pub misconfigured: Option<String>,
    /// The job whose failure showed it.
    pub job_id: Option<String>,
    pub updated_at: String,
}

/// Reads an app's status; `None` when no failure was ever recorded.
pub async fn read(
    store: &dyn Store,
    instance: &str,
    app: &str,
) -> Result<Option<AppStatus>, StoreError> {
    let Some(document) = store.get(instance, &document_id(app)).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_value(document.body).ok())
}

/// Reads why an app is marked misconfigured; `None` when it is not, or when its status
/// cannot be read, because the status only adds detail to the page that shows it.
pub async fn misconfigured_reason(store: &dyn Store, instance: &str, app: &str) -> Option<String> {
    read(store, instance, app)
        .await
        .ok()
        .flatten()?
        .misconfigured
}

/// Writes an app's status, reading the current revision first and trying again if another
/// process wrote in between.
pub async fn write(
    store: &dyn Store,
    instance: &str,
    app: &str,
    status: &AppStatus,
) -> Result<(), StoreError> {
    let id = document_id(app);
    let body = serde_json::to_value(status).unwrap_or(Value::Null);
    for _ in 0..3 {
        let rev = store.get(instance, &id).await?.map(|document| document.rev);
        match store.put(instance, &id, rev.as_deref(), &body).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(err) => return Err(err),
        }
    }
    Err(StoreError::Unavailable(format!(
        "writing {id} kept conflicting with other writers"
    )))
}

/// Returns a status saying the app is misconfigured.
pub fn misconfigured(message: &str, job_id: &str) -> AppStatus {
    AppStatus {
        misconfigured: Some(message.to_string()),
        job_id: Some(job_id.to_string()),
        updated_at: timestamp::format(time::OffsetDateTime::now_utc()),
    }
}

/// Returns a status saying the app works.
pub fn working() -> AppStatus {
    AppStatus {
        updated_at: timestamp::format(time::OffsetDateTime::now_utc()),
        ..AppStatus::default()
    }
}
