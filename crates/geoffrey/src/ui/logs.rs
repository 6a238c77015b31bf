//! The log pages: an instance's log entries newest first, with filters and cursor paging,
//! new entries fetched by htmx polling, and one entry with every attempt of its job.

use super::activity::{display_time, display_time_ms, is_plain_id, query_string};
use super::{ApiFailure, Ui, UiError, render};
use crate::store::{LogEntry, LogQuery, Outcome, first_log_id_at};
use crate::ui::Authorized;
use axum::Json;
use axum::extract::{Path, RawQuery};
use axum::response::Html;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// Entries on one page, unless the request sets `limit`.
const PAGE_SIZE: usize = 50;

/// Largest `limit` the pages and the API accept.
const MAX_PAGE_SIZE: usize = 1000;

/// Attempts of one job the detail view shows at most.
const MAX_ATTEMPTS_SHOWN: usize = 100;

/// The filters and cursors of a log request, from its query string.
#[derive(Debug, Default)]
pub struct LogFilters {
    pub app: Option<String>,
    pub feature: Option<String>,
    pub outcome: Option<Outcome>,
    pub event: Option<String>,
    pub job_id: Option<String>,
    /// The `since` field as sent, and the time it names.
    pub since: Option<(String, OffsetDateTime)>,
    pub until: Option<(String, OffsetDateTime)>,
    pub before: Option<String>,
    /// The newest of the `after` cursors sent. A request may carry several, because htmx adds
    /// the newest shown entry's id to the cursor in the polling URL.
    pub after: Option<String>,
    pub limit: Option<usize>,
}

impl LogFilters {
    /// Reads the filters from a query string. Empty fields, as a GET form sends them, set
    /// nothing; unknown fields are ignored.
    pub fn parse(raw: Option<&str>) -> Result<Self, UiError> {
        let mut filters = Self::default();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let value = value.trim().to_string();
            if value.is_empty() {
                continue;
            }
            match key.as_ref() {
                "app" => filters.app = Some(value),
                "feature" => filters.feature = Some(value),
                "event" => filters.event = Some(value),
                "outcome" => {
                    let outcome = value.parse::<Outcome>().map_err(UiError::BadRequest)?;
                    filters.outcome = Some(outcome);
                }
                "job_id" => filters.job_id = Some(cursor("job_id", value)?),
                "since" => filters.since = Some(parse_time("since", value)?),
                "until" => filters.until = Some(parse_time("until", value)?),
                "before" => filters.before = Some(cursor("before", value)?),
                "after" => {
                    let after = cursor("after", value)?;
                    if filters.after.as_ref().is_none_or(|newest| after > *newest) {
                        filters.after = Some(after);
                    }
                }
                "limit" => filters.limit = Some(parse_limit(&value)?),
                _ => {}
            }
        }
        Ok(filters)
    }

    /// Returns the store query of these filters, with `limit` unless the request set one.
    fn query(&self, limit: usize) -> LogQuery {
        LogQuery {
            app: self.app.clone(),
            feature: self.feature.clone(),
            outcome: self.outcome,
            event: self.event.clone(),
            job_id: self.job_id.clone(),
            since: self.since.as_ref().map(|(_, at)| *at),
            until: self.until.as_ref().map(|(_, at)| *at),
            before: self.before.clone(),
            after: self.after.clone(),
            limit: self.limit.unwrap_or(limit),
        }
    }

    /// Returns the query string of the filters, without the cursors.
    fn filter_query(&self) -> String {
        let limit = self.limit.map(|limit| limit.to_string());
        query_string(&[
            ("app", self.app.as_deref()),
            ("feature", self.feature.as_deref()),
            ("outcome", self.outcome.map(Outcome::as_str)),
            ("event", self.event.as_deref()),
            ("job_id", self.job_id.as_deref()),
            ("since", self.since.as_ref().map(|(text, _)| text.as_str())),
            ("until", self.until.as_ref().map(|(text, _)| text.as_str())),
            ("limit", limit.as_deref()),
        ])
    }

    /// Returns the filters as the form shows them.
    fn form(&self) -> Value {
        json!({
            "app": self.app,
            "feature": self.feature,
            "outcome": self.outcome.map(Outcome::as_str),
            "event": self.event,
            "job_id": self.job_id,
            "since": self.since.as_ref().map(|(text, _)| text),
            "until": self.until.as_ref().map(|(text, _)| text),
        })
    }
}

fn cursor(field: &str, value: String) -> Result<String, UiError> {
    if is_plain_id(&value) {
        Ok(value)
    } else {
        Err(UiError::BadRequest(format!(
            "invalid {field} {value:?}: expected an id such as 0190a6c2-7b1e-7000-8000-0123456789ab"
        )))
    }
}

fn parse_limit(value: &str) -> Result<usize, UiError> {
    match value.parse::<usize>() {
        Ok(limit) if (1..=MAX_PAGE_SIZE).contains(&limit) => Ok(limit),
        _ => Err(UiError::BadRequest(format!(
            "invalid limit {value:?}: expected a number from 1 to {MAX_PAGE_SIZE}"
        ))),
    }
}

/// Parses a time filter: RFC 3339, or a UTC date and time as a `datetime-local` field sends
/// it (`2026-12-04T17:30`, seconds optional), or a UTC date alone for its midnight.
pub fn parse_time(field: &str, text: String) -> Result<(String, OffsetDateTime), UiError> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let day = format_description!("[year]-[month]-[day]");
    let at = OffsetDateTime::parse(&text, &Rfc3339)
        .ok()
        .or_else(|| {
            time::PrimitiveDateTime::parse(&text, &minutes)
                .ok()
                .map(|t| t.assume_utc())
        })
        .or_else(|| {
            time::PrimitiveDateTime::parse(&text, &seconds)
                .ok()
                .map(|t| t.assume_utc())
        })
        .or_else(|| {
            time::Date::parse(&text, &day)
                .ok()
                .map(|date| date.midnight().assume_utc())
        })
        // The stores format times in UTC and bound `until` by the next millisecond, so both
        // must stay within the years 0000 to 9999 that `time` represents.
        .and_then(|at| at.checked_to_offset(time::UtcOffset::UTC))
        .filter(|at| at.checked_add(time::Duration::milliseconds(1)).is_some());
    match at {
        Some(at) => Ok((text, at)),
        None => Err(UiError::BadRequest(format!(
            "invalid {field} {text:?}: expected a UTC time such as 2026-12-04T17:30, a date \
             such as 2026-12-04, or an RFC 3339 time, before the year 10000"
        ))),
    }
}

/// One log entry as the pages show it.
#[derive(Debug, Serialize)]
struct LogRow {
    id: String,
    at: String,
    app: String,
    feature: String,
    target: Option<String>,
    event: String,
    event_id: Option<String>,
    job_id: String,
    attempt: u32,
    outcome: &'static str,
    outcome_label: &'static str,
    /// `good`, `warn` or `bad`, for the outcome's badge.
    tone: &'static str,
    status: Option<u16>,
    duration_ms: u64,
    /// The error, or why a job that succeeded did nothing.
    summary: Option<String>,
    continued: bool,
}

impl LogRow {
    fn new(entry: &LogEntry) -> Self {
        let skipped = entry
            .response
            .as_deref()
            .filter(|response| response.starts_with("skipped: "))
            .map(str::to_string);
        Self {
            id: entry.id.clone(),
            at: display_time(entry.at),
            app: entry.app.clone(),
            feature: entry.feature.clone(),
            target: entry.target.clone(),
            event: entry.event.clone(),
            event_id: entry.event_id.clone(),
            job_id: entry.job_id.clone(),
            attempt: entry.attempt,
            outcome: entry.outcome.as_str(),
            outcome_label: outcome_label(entry.outcome),
            tone: tone(entry.outcome),
            status: entry.status,
            duration_ms: entry.duration_ms,
            summary: entry.error.clone().or(skipped),
            continued: entry.continued,
        }
    }
}

pub fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Retrying => "retrying",
        Outcome::FailedPermanently => "failed permanently",
        Outcome::FailedAfterRetries => "failed after retries",
    }
}

fn tone(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "good",
        Outcome::Retrying => "warn",
        Outcome::FailedPermanently | Outcome::FailedAfterRetries => "bad",
    }
}

fn rows(entries: &[LogEntry]) -> Vec<LogRow> {
    entries.iter().map(LogRow::new).collect()
}

/// `GET /ui/instances/{name}/logs`: one page of entries, newest first.
pub async fn page(
    Authorized { ui, viewer, name }: Authorized,
    RawQuery(raw): RawQuery,
) -> Result<Html<String>, UiError> {
    let mut filters = LogFilters::parse(raw.as_deref())?;
    // A page reads backwards from `before`; only the polling fragment reads forwards.
    filters.after = None;
    let page = ui
        .services
        .store
        .query_logs(&name, &filters.query(PAGE_SIZE))
        .await?;

    let base = format!("/ui/instances/{name}/logs");
    let filter_query = filters.filter_query();
    let with_filters = |extra: &str| {
        let joined: Vec<&str> = [filter_query.as_str(), extra]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect();
        match joined.is_empty() {
            true => base.clone(),
            false => format!("{base}?{}", joined.join("&")),
        }
    };
    let older_url = page
        .next_before
        .as_ref()
        .map(|cursor| with_filters(&query_string(&[("before", Some(cursor))])));
    let newest_url = filters.before.is_some().then(|| with_filters(""));
    // Only the newest page follows new entries. Without entries it follows from now.
    let live_url = filters.before.is_none().then(|| {
        let start = page.entries.first().map_or_else(
            || first_log_id_at(ui.services.clock.now()),
            |entry| entry.id.clone(),
        );
        let live = format!("{base}/live");
        let cursor = query_string(&[("after", Some(&start))]);
        match filter_query.is_empty() {
            true => format!("{live}?{cursor}"),
            false => format!("{live}?{filter_query}&{cursor}"),
        }
    });

    render::page(
        "logs.html",
        &viewer,
        json!({
            "title": format!("Logs of {name}"),
            "instance": name,
            "tab": "logs",
            "filters": filters.form(),
            "filtered": !filter_query.is_empty(),
            "apps": ui.services.apps.names(),
            "outcomes": Outcome::ALL.iter().map(|o| json!({ "value": o.as_str(), "label": outcome_label(*o) })).collect::<Vec<_>>(),
            "rows": rows(&page.entries),
            "older_url": older_url,
            "newest_url": newest_url,
            "live_url": live_url,
        }),
    )
}

/// `GET /ui/instances/{name}/logs/live?after=…`: the table rows of the entries newer than
/// `after` that match the filters, newest first, for htmx to put above the rows shown.
pub async fn live_rows(
    Authorized { ui, name, .. }: Authorized,
    RawQuery(raw): RawQuery,
) -> Result<Html<String>, UiError> {
    let mut filters = LogFilters::parse(raw.as_deref())?;
    if filters.after.is_none() {
        return Err(UiError::BadRequest(
            "missing after: name the newest entry shown, such as after=0190a6c2-7b1e-7000-8000-0123456789ab"
                .to_string(),
        ));
    }
    filters.before = None;
    let page = ui
        .services
        .store
        .query_logs(&name, &filters.query(PAGE_SIZE))
        .await?;
    let mut entries = page.entries;
    entries.reverse();
    let html = render::render(
        "log_rows.html",
        &json!({ "instance": name, "rows": rows(&entries) }),
    )?;
    Ok(Html(html))
}

/// One entry with the other attempts of its job and, while the job is failed, its event.
struct Detail {
    entry: LogEntry,
    /// Every attempt of the job, oldest first, this entry included.
    attempts: Vec<LogEntry>,
    failed: Option<crate::queue::FailedJob>,
}

async fn load_detail(ui: &Ui, name: &str, id: &str) -> Result<Detail, UiError> {
    let not_found = || UiError::NotFound(format!("no log entry {id:?} in instance {name:?}"));
    if !is_plain_id(id) {
        return Err(not_found());
    }
    let services = &ui.services;
    let entry = services
        .store
        .get_log(name, id)
        .await?
        .ok_or_else(not_found)?;
    let query = LogQuery {
        job_id: Some(entry.job_id.clone()),
        limit: MAX_ATTEMPTS_SHOWN,
        ..LogQuery::default()
    };
    let mut attempts = services.store.query_logs(name, &query).await?.entries;
    attempts.reverse();
    let failed = services.queue.failed_job(name, &entry.job_id).await?;
    Ok(Detail {
        entry,
        attempts,
        failed,
    })
}

/// `GET /ui/instances/{name}/logs/{id}`.
pub async fn detail_page(
    Authorized { ui, viewer, name }: Authorized,
    Path((_, id)): Path<(String, String)>,
) -> Result<Html<String>, UiError> {
    let detail = load_detail(&ui, &name, &id).await?;
    let entry = &detail.entry;
    let failed = detail.failed.as_ref().map(|failed| {
        let event = &failed.job.spec.event;
        json!({
            "reason": failed.reason,
            "failed_at": display_time_ms(failed.failed_at_ms),
            "event_kind": event.kind,
            "event_body": serde_json::to_string_pretty(&event.body).unwrap_or_default(),
        })
    });
    render::page(
        "log_entry.html",
        &viewer,
        json!({
            "title": format!("Log entry {}", entry.id),
            "instance": name,
            "tab": "logs",
            "row": LogRow::new(entry),
            "response": entry.response,
            "error": entry.error,
            "attempts": rows(&detail.attempts),
            "failed": failed,
            "job_logs_url": format!("/ui/instances/{name}/logs?{}", query_string(&[("job_id", Some(&entry.job_id))])),
        }),
    )
}

/// `GET /api/v1/instances/{name}/logs`: the same filters and cursors as the page, with
/// `after` for entries newer than a cursor (oldest first).
pub async fn list_json(
    Authorized { ui, name, .. }: Authorized,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiFailure> {
    let filters = LogFilters::parse(raw.as_deref())?;
    if filters.before.is_some() && filters.after.is_some() {
        return Err(UiError::BadRequest(
            "send before or after, not both: before pages back, after follows new entries"
                .to_string(),
        )
        .into());
    }
    let page = ui
        .services
        .store
        .query_logs(&name, &filters.query(PAGE_SIZE))
        .await
        .map_err(UiError::from)?;
    Ok(Json(json!({
        "entries": page.entries,
        "next_before": page.next_before,
    })))
}

/// `GET /api/v1/instances/{name}/logs/{id}`: the entry, every attempt of its job (oldest
/// first), and the failed job with its event while the job is failed.
pub async fn detail_json(
    Authorized { ui, name, .. }: Authorized,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiFailure> {
    let detail = load_detail(&ui, &name, &id).await?;
    let failed = detail.failed.map(|failed| {
        json!({
            "reason": failed.reason,
            "failed_at_ms": failed.failed_at_ms,
            "attempt": failed.job.attempt,
            "event": failed.job.spec.event,
        })
    });
    Ok(Json(json!({
        "entry": detail.entry,
        "attempts": detail.attempts,
        "failed_job": failed,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_keep_newest_cursor() {
        let raw = "app=relay&feature=&outcome=retrying&after=0190-a&after=0190-c&after=0190-b";
        let filters = LogFilters::parse(Some(raw)).expect("valid filters");
        assert_eq!(filters.app.as_deref(), Some("relay"));
        assert_eq!(filters.feature, None);
        assert_eq!(filters.outcome, Some(Outcome::Retrying));
        assert_eq!(filters.after.as_deref(), Some("0190-c"));
        assert_eq!(filters.filter_query(), "app=relay&outcome=retrying");
    }

    #[test]
    fn invalid_filters_are_rejected() {
        for raw in [
            "outcome=maybe",
            "before=..%2FCONFIG",
            "since=yesterday",
            "limit=0",
            "limit=5000",
        ] {
            assert!(LogFilters::parse(Some(raw)).is_err(), "{raw}");
        }
    }

    #[test]
    fn times_are_read_as_utc() {
        let expected = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid time");
        for text in [
            "2027-01-15T08:00",
            "2027-01-15T08:00:00",
            "2027-01-15T09:00:00+01:00",
        ] {
            let (_, at) = parse_time("since", text.to_string()).expect(text);
            assert_eq!(at, expected, "{text}");
        }
        let (_, midnight) = parse_time("since", "2027-01-15".to_string()).expect("a date");
        assert_eq!(midnight, expected - time::Duration::hours(8));
        for text in ["9999-12-31T23:59:59.9999Z", "9999-12-31T23:30:00-01:00"] {
            assert!(parse_time("until", text.to_string()).is_err(), "{text}");
        }
    }
}
