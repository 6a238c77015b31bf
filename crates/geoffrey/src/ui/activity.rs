//! The pages of one instance that show what happened: dashboard, logs, failed jobs and the
//! backfill, with their JSON endpoints. Every handler first checks with [`Ui::authorize`]
//! that the person may read the instance.

use super::{Ui, UiError, backfill, dashboard, failed, logs};
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;
use time::OffsetDateTime;

/// Returns the routes of this module, for the signed-in part of [`super::router`].
pub fn routes() -> Router<Arc<Ui>> {
    Router::new()
        .route("/ui/instances/{name}", get(dashboard::page))
        .route("/ui/instances/{name}/logs", get(logs::page))
        .route("/ui/instances/{name}/logs/live", get(logs::live_rows))
        .route("/ui/instances/{name}/logs/{id}", get(logs::detail_page))
        .route("/ui/instances/{name}/failed", get(failed::page))
        .route(
            "/ui/instances/{name}/failed/replay",
            post(failed::replay_all_page),
        )
        .route(
            "/ui/instances/{name}/failed/{job_id}/{action}",
            post(failed::change_page),
        )
        .route("/ui/instances/{name}/backfill", get(backfill::page))
        .route(
            "/ui/instances/{name}/backfill/progress",
            get(backfill::progress_fragment),
        )
        .route(
            "/ui/instances/{name}/backfill/{action}",
            post(backfill::action_page),
        )
        .route("/api/v1/instances/{name}/stats", get(dashboard::json))
        .route("/api/v1/instances/{name}/logs", get(logs::list_json))
        .route("/api/v1/instances/{name}/logs/{id}", get(logs::detail_json))
        .route("/api/v1/instances/{name}/failed", get(failed::list_json))
        .route(
            "/api/v1/instances/{name}/failed/replay",
            post(failed::replay_all_json),
        )
        .route(
            "/api/v1/instances/{name}/failed/{job_id}",
            axum::routing::delete(failed::discard_json),
        )
        .route(
            "/api/v1/instances/{name}/failed/{job_id}/{action}",
            post(failed::change_json),
        )
        .route("/api/v1/instances/{name}/backfill", get(backfill::json))
        .route(
            "/api/v1/instances/{name}/backfill/{action}",
            post(backfill::action_json),
        )
}

/// Formats a time for people: UTC, to the second, such as `2026-12-04 17:57:03 UTC`.
pub fn display_time(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    utc.format(&format).unwrap_or_default()
}

/// Formats a time given in Unix milliseconds, as [`display_time`] does.
pub fn display_time_ms(at_ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    display_time(at)
}

/// Checks that `id` can be a log entry or job id (a UUID): letters, digits and dashes,
/// at most 64 characters. Anything else cannot name a stored entry or job.
pub fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Returns `value` trimmed, or `None` when it is empty: an empty field of a GET form means
/// no filter.
pub fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Builds a query string from the pairs whose value is set, percent-encoded.
pub fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if let Some(value) = value {
            serializer.append_pair(name, value);
        }
    }
    serializer.finish()
}

/// Turns an error of the Mailchimp backfill into a UI error.
impl From<crate::apps::mailchimp::backfill::BackfillError> for UiError {
    fn from(err: crate::apps::mailchimp::backfill::BackfillError) -> Self {
        use crate::apps::mailchimp::backfill::BackfillError;
        match err {
            BackfillError::NotConfigured(_)
            | BackfillError::AlreadyRunning(_)
            | BackfillError::NothingToResume(_) => UiError::Conflict(err.to_string()),
            BackfillError::Instance(err) => instance_error(err),
            BackfillError::Store(err) => err.into(),
            BackfillError::Queue(err) => err.into(),
        }
    }
}

/// Turns an error of loading an instance's configuration into a UI error.
pub fn instance_error(err: crate::instance::InstanceError) -> UiError {
    use crate::instance::InstanceError;
    match err {
        InstanceError::NotFound(name) => {
            UiError::NotFound(format!("no instance {name:?} that your account can read"))
        }
        InstanceError::Store(err) => err.into(),
        other => UiError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid time");
        assert_eq!(display_time(at), "2027-01-15 08:00:00 UTC");
        assert_eq!(
            display_time_ms(1_800_000_000_123),
            "2027-01-15 08:00:00 UTC"
        );
    }

    #[test]
    fn plain_ids_are_uuids() {
        assert!(is_plain_id("0190a6c2-7b1e-7000-8000-0123456789ab"));
        assert!(!is_plain_id(""));
        assert!(!is_plain_id("../CONFIG"));
        assert!(!is_plain_id("log:1"));
        assert!(!is_plain_id(&"a".repeat(65)));
    }

    #[test]
    fn query_strings_skip_unset_values() {
        let query = query_string(&[
            ("app", Some("relay")),
            ("feature", None),
            ("event", Some("a b&c")),
        ]);
        assert_eq!(query, "app=relay&event=a+b%26c");
    }
}
