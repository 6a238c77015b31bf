//! Prometheus metrics of one process, served at `GET /metrics` in the OpenMetrics text format.
//!
//! Counters and histograms count what this process did since it started: deliveries by
//! outcome, job attempts by app, feature and outcome, attempt durations, and third-party
//! responses by status class. Queue gauges are read from the queue at each scrape, so every
//! process reports the same, shared numbers for them.

use crate::queue::Queue;
use crate::store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    /// accepted, duplicate, pong, unavailable or rejected.
    outcome: String,
    /// Kind of rejection, such as unauthorized; empty for the other outcomes.
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubmissionLabels {
    /// accepted, duplicate, invalid, or the reason it was rejected: spam, too_fast,
    /// stale_form, rate_limited, unauthorized, too_large, unavailable.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    app: String,
    feature: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeatureLabels {
    app: String,
    feature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    app: String,
    /// 2xx, 3xx, 4xx, 5xx, or none when no response came.
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    instance: String,
    /// ready, delayed, leased or failed.
    state: String,
}

pub struct Metrics {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    submissions: Family<SubmissionLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    durations: Family<FeatureLabels, Histogram>,
    responses: Family<ResponseLabels, Counter>,
    queue: Family<QueueLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("geoffrey");
        let deliveries = Family::default();
        registry.register(
            "deliveries",
            "Webhook deliveries by outcome",
            deliveries.clone(),
        );

        let submissions = Family::default();
        registry.register(
            "form_submissions",
            "Form submissions by outcome",
            submissions.clone(),
        );

        let attempts = Family::default();
        registry.register(
            "job_attempts",
            "Job attempts by app, feature and outcome",
            attempts.clone(),
        );

        // Buckets from 5 ms to about 20 s.
        let durations = Family::<FeatureLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 13))
        });
        registry.register(
            "job_attempt_duration_seconds",
            "Duration of job attempts",
            durations.clone(),
        );

        let responses = Family::default();
        registry.register(
            "third_party_responses",
            "Responses of third parties to job attempts, by status class",
            responses.clone(),
        );

        let queue = Family::default();
        registry.register(
            "queue_jobs",
            "Jobs in the queue by instance and state",
            queue.clone(),
        );
        Self {
            registry,
            deliveries,
            submissions,
            attempts,
            durations,
            responses,
            queue,
        }
    }
}

impl Metrics {
    /// Counts a delivery; `reason` is empty unless the outcome is `rejected`.
    pub fn delivery(&self, outcome: &str, reason: &str) {
        let labels = DeliveryLabels {
            outcome: outcome.to_string(),
            reason: reason.to_string(),
        };
        self.deliveries.get_or_create(&labels).inc();
    }

    /// Counts a form submission by outcome.
    pub fn submission(&self, outcome: &str) {
        let labels = SubmissionLabels {
            outcome: outcome.to_string(),
        };
        self.submissions.get_or_create(&labels).inc();
    }

    /// Counts one job attempt, its duration and the third party's response status.
    pub fn attempt(
        &self,
        app: &str,
        feature: &str,
        outcome: &str,
        duration: Duration,
        status: Option<u16>,
    ) {
        let labels = AttemptLabels {
            app: app.into(),
            feature: feature.into(),
            outcome: outcome.into(),
        };
        self.attempts.get_or_create(&labels).inc();
        let feature_labels = FeatureLabels {
            app: app.into(),
            feature: feature.into(),
        };
        self.durations
            .get_or_create(&feature_labels)
            .observe(duration.as_secs_f64());
        let class = status.map_or_else(
            || "none".to_string(),
            |status| format!("{}xx", status / 100),
        );
        self.responses
            .get_or_create(&ResponseLabels {
                app: app.into(),
                class,
            })
            .inc();
    }

    /// Reads the queue counts of every instance, then encodes all metrics.
    pub async fn render(&self, store: &dyn Store, queue: &dyn Queue) -> String {
        if let Ok(instances) = store.list_databases().await {
            for instance in instances {
                let Ok(stats) = queue.stats(Some(&instance)).await else {
                    continue;
                };
                let states = [
                    ("ready", stats.ready),
                    ("delayed", stats.delayed),
                    ("leased", stats.leased),
                    ("failed", stats.failed),
                ];
                for (state, count) in states {
                    let labels = QueueLabels {
                        instance: instance.clone(),
                        state: state.to_string(),
                    };
                    self.queue
                        .get_or_create(&labels)
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                }
            }
        }
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %err, "encoding the metrics failed");
        }
        text
    }
}
