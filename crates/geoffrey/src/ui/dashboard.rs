//! The dashboard of one instance: deliveries received and jobs succeeded and failed per hour
//! over the last 24 hours, the queue's depth, and which app is slowest.

use super::{ApiFailure, Ui, UiError, render};
use crate::queue::{HOUR_MS, QueueStats, hour_start_ms};
use crate::store::{LogBucket, Outcome};
use crate::ui::Authorized;
use axum::Json;
use axum::response::Html;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Hours the dashboard covers, the current one included.
const HOURS: i64 = 24;

/// Counts of one hour.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HourStats {
    /// Start of the hour, in Unix seconds.
    pub hour_start: i64,
    /// The hour in UTC, such as `08:00`.
    pub label: String,
    pub deliveries: u64,
    /// Jobs that ended in success.
    pub succeeded: u64,
    /// Jobs that failed for good, permanently or after their last retry.
    pub failed: u64,
    /// Attempts that failed and were scheduled again.
    pub retried: u64,
}

/// Attempts and durations of one app over the dashboard's hours.
#[derive(Debug, Clone, Serialize)]
pub struct AppStats {
    pub app: String,
    pub attempts: u64,
    pub average_ms: u64,
    pub max_ms: u64,
    pub failed: u64,
}

/// Everything the dashboard shows, as the page and `GET /api/v1/instances/{name}/stats` use it.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// The last 24 hours, oldest first.
    pub hours: Vec<HourStats>,
    pub queue: QueueStats,
    /// Apps with attempts in those hours, slowest on average first.
    pub apps: Vec<AppStats>,
    pub slowest_app: Option<String>,
}

/// Reads the dashboard's numbers from the queue's delivery counts and the log.
pub async fn load(ui: &Ui, name: &str) -> Result<Stats, UiError> {
    let services = &ui.services;
    let first_hour_ms = hour_start_ms(services.clock.now_ms()) - (HOURS - 1) * HOUR_MS;
    let first_hour = OffsetDateTime::from_unix_timestamp(first_hour_ms / 1000)
        .map_err(|err| UiError::Internal(err.to_string()))?;

    let mut hours: Vec<HourStats> = (0..HOURS)
        .map(|index| {
            let hour_start = first_hour_ms / 1000 + index * 3600;
            HourStats {
                hour_start,
                label: hour_label(hour_start),
                ..HourStats::default()
            }
        })
        .collect();
    let deliveries = services.queue.delivery_counts(name, first_hour_ms).await?;
    let buckets = services.store.log_buckets(name, first_hour).await?;
    let queue = services.queue.stats(Some(name)).await?;

    let first_hour_s = first_hour_ms / 1000;
    for count in &deliveries {
        if let Some(hour) = slot(first_hour_s, count.hour_start_ms / 1000, &mut hours) {
            hour.deliveries += count.count;
        }
    }
    for bucket in &buckets {
        let Some(hour) = slot(first_hour_s, bucket.hour_start, &mut hours) else {
            continue;
        };
        match bucket.outcome {
            Outcome::Succeeded if !bucket.continued => hour.succeeded += bucket.count,
            Outcome::Succeeded => {}
            Outcome::Retrying => hour.retried += bucket.count,
            Outcome::FailedPermanently | Outcome::FailedAfterRetries => hour.failed += bucket.count,
        }
    }
    let apps = app_stats(&buckets);
    let slowest_app = apps.first().map(|app| app.app.clone());
    Ok(Stats {
        hours,
        queue,
        apps,
        slowest_app,
    })
}

/// Returns the hour that starts at `hour_start` (Unix seconds) among `hours`, which start at
/// `first_hour`.
fn slot(first_hour: i64, hour_start: i64, hours: &mut [HourStats]) -> Option<&mut HourStats> {
    let index = usize::try_from((hour_start - first_hour).div_euclid(3600)).ok()?;
    hours.get_mut(index)
}

fn hour_label(hour_start: i64) -> String {
    let hour = hour_start.rem_euclid(24 * 3600) / 3600;
    format!("{hour:02}:00")
}

/// Sums the buckets per app, slowest average first.
fn app_stats(buckets: &[LogBucket]) -> Vec<AppStats> {
    let mut totals: BTreeMap<&str, (u64, u64, u64, u64)> = BTreeMap::new();
    for bucket in buckets {
        let total = totals.entry(&bucket.app).or_default();
        total.0 += bucket.count;
        total.1 = total.1.saturating_add(bucket.total_duration_ms);
        total.2 = total.2.max(bucket.max_duration_ms);
        if matches!(
            bucket.outcome,
            Outcome::FailedPermanently | Outcome::FailedAfterRetries
        ) {
            total.3 += bucket.count;
        }
    }
    let mut apps: Vec<AppStats> = totals
        .into_iter()
        .filter(|(_, (attempts, ..))| *attempts > 0)
        .map(|(app, (attempts, total_ms, max_ms, failed))| AppStats {
            app: app.to_string(),
            attempts,
            average_ms: total_ms / attempts,
            max_ms,
            failed,
        })
        .collect();
    apps.sort_by(|a, b| b.average_ms.cmp(&a.average_ms).then(a.app.cmp(&b.app)));
    apps
}

/// Width of one hour's group of bars in the chart, in SVG units.
const GROUP_WIDTH: f64 = 30.0;
/// Height of the chart's plot area, in SVG units.
const PLOT_HEIGHT: f64 = 150.0;
const BAR_WIDTH: f64 = 8.0;

/// Returns the chart's bars: for each hour, one bar per series, scaled to the largest
/// value.
fn chart(hours: &[HourStats]) -> Value {
    let series = |hour: &HourStats| {
        [
            ("deliveries", "deliveries received", hour.deliveries),
            ("succeeded", "jobs succeeded", hour.succeeded),
            ("failed", "jobs failed", hour.failed),
        ]
    };
    let max = hours
        .iter()
        .flat_map(|hour| series(hour).map(|(_, _, value)| value))
        .max()
        .unwrap_or(0)
        .max(1);
    let groups: Vec<Value> = hours
        .iter()
        .enumerate()
        .map(|(index, hour)| {
            let x = index as f64 * GROUP_WIDTH;
            let bars: Vec<Value> = series(hour)
                .iter()
                .enumerate()
                .map(|(position, (class, label, value))| {
                    let height = (*value as f64 * PLOT_HEIGHT / max as f64 * 10.0).round() / 10.0;
                    json!({
                        "class": class,
                        "x": x + 3.0 + position as f64 * BAR_WIDTH,
                        "y": PLOT_HEIGHT - height,
                        "height": height,
                        "title": format!("{}: {value} {label}", hour.label),
                    })
                })
                .collect();
            json!({ "label": hour.label, "x": x + GROUP_WIDTH / 2.0, "tick": index % 3 == 0, "bars": bars })
        })
        .collect();
    json!({
        "width": GROUP_WIDTH * hours.len() as f64,
        "plot_height": PLOT_HEIGHT,
        "height": PLOT_HEIGHT + 18.0,
        "bar_width": BAR_WIDTH,
        "max": max,
        "groups": groups,
    })
}

/// `GET /ui/instances/{name}`.
pub async fn page(Authorized { ui, viewer, name }: Authorized) -> Result<Html<String>, UiError> {
    let stats = load(&ui, &name).await?;
    let totals = stats.hours.iter().fold((0, 0, 0), |sum, hour| {
        (
            sum.0 + hour.deliveries,
            sum.1 + hour.succeeded,
            sum.2 + hour.failed,
        )
    });
    render::page(
        "dashboard.html",
        &viewer,
        json!({
            "title": format!("Dashboard of {name}"),
            "instance": name,
            "tab": "dashboard",
            "stats": stats,
            "chart": chart(&stats.hours),
            "totals": { "deliveries": totals.0, "succeeded": totals.1, "failed": totals.2 },
        }),
    )
}

/// `GET /api/v1/instances/{name}/stats`: the dashboard's numbers.
pub async fn json(Authorized { ui, name, .. }: Authorized) -> Result<Json<Stats>, ApiFailure> {
    Ok(Json(load(&ui, &name).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(app: &str, outcome: Outcome, count: u64, total: u64, max: u64) -> LogBucket {
        LogBucket {
            hour_start: 0,
            app: app.to_string(),
            outcome,
            continued: false,
            count,
            total_duration_ms: total,
            max_duration_ms: max,
        }
    }

    #[test]
    fn slowest_app_comes_first() {
        let buckets = [
            bucket("relay", Outcome::Succeeded, 4, 400, 150),
            bucket("mailchimp", Outcome::Succeeded, 1, 900, 900),
            bucket("mailchimp", Outcome::FailedPermanently, 1, 100, 100),
        ];
        let apps = app_stats(&buckets);
        let summary: Vec<_> = apps
            .iter()
            .map(|a| (a.app.as_str(), a.attempts, a.average_ms, a.max_ms, a.failed))
            .collect();
        assert_eq!(
            summary,
            [("mailchimp", 2, 500, 900, 1), ("relay", 4, 100, 150, 0)]
        );
    }

    #[test]
    fn bars_scale_to_the_largest_value() {
        let hours = [
            HourStats {
                deliveries: 10,
                succeeded: 5,
                ..HourStats::default()
            },
            HourStats {
                failed: 1,
                ..HourStats::default()
            },
        ];
        let chart = chart(&hours);
        let first = &chart["groups"][0]["bars"];
        assert_eq!(first[0]["height"], PLOT_HEIGHT);
        assert_eq!(first[1]["height"], PLOT_HEIGHT / 2.0);
        assert_eq!(chart["groups"][1]["bars"][2]["height"], 15.0);
        assert_eq!(chart["groups"][1]["bars"][0]["height"], 0.0);
    }

    #[test]
    fn hour_labels_are_utc() {
        assert_eq!(hour_label(1_800_000_000), "08:00");
        assert_eq!(hour_label(1_800_000_000 + 16 * 3600), "00:00");
    }
}
