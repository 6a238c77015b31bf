//! Apps: what Geoffrey does with an event.
//!
//! An app declares the schema of its section in `CONFIG`, validates it, declares which events its
//! features subscribe to, and runs one feature for one job. The intake routes events to apps
//! and the worker runs them only through the [`App`] trait, so adding an app means adding a
//! module here and a line in [`AppRegistry::builtin`], and nothing in the server or worker.

mod filter;
pub mod forms;
pub mod http;
pub mod mailchimp;
pub mod relay;

pub use filter::EventFilter;

use crate::event::Event;
use crate::instance::InstanceConfig;
use crate::limit::ConcurrencyLimiter;
use crate::outbound::OutboundClient;
use crate::queue::Job;
use crate::store::Store;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// One invalid field of a configuration, with a message that explains how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Dotted path of the field, such as `apps.relay.rules[0].url`.
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Prefixes the path with the section it was found in.
    pub fn within(mut self, prefix: &str) -> Self {
        self.path = match self.path.as_str() {
            "" | "." => prefix.to_string(),
            path if path.starts_with('[') => format!("{prefix}{path}"),
            path => format!("{prefix}.{path}"),
        };
        self
    }
}

/// A feature's interest in events: which names, and which of those pass its filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub feature: String,
    /// The configured item the feature runs for, such as a relay rule's name.
    pub target: Option<String>,
    /// Event names; `*` subscribes to every event except `ping`.
    pub events: Vec<String>,
    pub filter: EventFilter,
}

impl Subscription {
    pub fn matches(&self, event: &Event) -> bool {
        let named = self
            .events
            .iter()
            .any(|name| name == &event.name || (name == "*" && event.name != "ping"));
        named && self.filter.matches(event)
    }
}

/// Callback for each secret of a configuration: its dotted path, its value, and the value of
/// the field naming the server it is sent to (`null` when the secret names it itself or is
/// never sent).
pub type SecretVisitor<'a> = dyn FnMut(&str, &mut Value, &Value) + 'a;

/// Everything a feature may use to run one job.
pub struct FeatureContext<'a> {
    pub job: &'a Job,
    /// The store, for the app's state in the instance's database.
    pub store: &'a dyn Store,
    pub limiter: &'a dyn ConcurrencyLimiter,
    pub config: &'a InstanceConfig,
    /// The app's own section of `CONFIG`.
    pub section: &'a Value,
    pub http: &'a OutboundClient,
    /// Time the attempt may take; long features use it to budget their work.
    pub job_timeout: std::time::Duration,
}

/// Why an attempt failed, which decides whether it is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// Another attempt may succeed: timeouts, connection errors, 429, 5xx.
    Transient(String),
    /// Another attempt would fail the same way: invalid input, rejected by the third party.
    Permanent(String),
    /// The app's configuration is wrong (an invalid API key, an unknown audience). Handled
    /// like a permanent failure, and the app is marked as misconfigured until it works again.
    Configuration(String),
}

impl AttemptError {
    pub fn message(&self) -> &str {
        match self {
            AttemptError::Transient(message)
            | AttemptError::Permanent(message)
            | AttemptError::Configuration(message) => message,
        }
    }
}

/// Result of one run of a feature, for the log entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attempt {
    /// HTTP status of the third party's response, when there was one.
    pub status: Option<u16>,
    /// The start of the third party's response body.
    pub response: Option<String>,
    pub error: Option<AttemptError>,
    /// Set by a long feature (such as a backfill) that made progress and has more to do: the
    /// job goes back to the queue to continue, without counting an attempt.
    pub continue_later: bool,
    /// Minimum delay before a transient failure is retried, when the third party's response
    /// gave a wait time (a 429). The backoff delay applies when it is longer.
    pub retry_after: Option<std::time::Duration>,
}

/// One finding of [`App::check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Name of the check, such as `audience`.
    pub name: String,
    pub ok: bool,
    pub message: String,
}

#[async_trait]
pub trait App: Send + Sync + 'static {
    /// Name of the app and of its section under `apps` in `CONFIG`.
    fn name(&self) -> &'static str;

    /// JSON Schema of the app's section, for documentation and configuration forms.
    fn schema(&self) -> Value;

    /// Checks the app's section and returns every invalid field, with paths relative to the
    /// section.
    fn validate(&self, section: &Value) -> Vec<FieldError>;

    /// Calls `visit` for each secret in a section, with paths relative to the section. Masking
    /// for display and encryption at rest both find the secrets through it.
    fn visit_secrets(&self, section: &mut Value, visit: &mut SecretVisitor<'_>);

    /// Lists (secret field, field of the server it is sent to) pairs of the section. A save
    /// that keeps such a secret masked must not change its server.
    fn secret_destinations(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// Lists the subscriptions of a section that passed [`App::validate`].
    fn subscriptions(&self, section: &Value) -> Vec<Subscription>;

    /// Runs one feature for one job.
    async fn run(&self, feature: &str, context: FeatureContext<'_>) -> Attempt;

    /// Tests the connection and configuration of a valid section against the third party.
    /// Apps without a third party to ask return nothing.
    async fn check(&self, _section: &Value, _http: &OutboundClient) -> Vec<Check> {
        Vec::new()
    }

    /// Tells whether [`App::check`] tests anything, so that forms offer a test button.
    fn has_check(&self) -> bool {
        false
    }
}

/// The apps of this build, by name.
#[derive(Clone)]
pub struct AppRegistry {
    apps: Vec<Arc<dyn App>>,
}

impl AppRegistry {
    /// Returns every app that ships with Geoffrey.
    pub fn builtin() -> Self {
        Self::with(vec![
            Arc::new(relay::Relay),
            Arc::new(mailchimp::Mailchimp),
            Arc::new(forms::Forms),
        ])
    }

    pub fn with(apps: Vec<Arc<dyn App>>) -> Self {
        Self { apps }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn App>> {
        self.apps.iter().find(|app| app.name() == name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.apps.iter().map(|app| app.name()).collect()
    }

    /// Returns the (app, subscription) pairs of `config` that want `event`.
    pub fn route(
        &self,
        config: &InstanceConfig,
        event: &Event,
    ) -> Vec<(&'static str, Subscription)> {
        let mut routes = Vec::new();
        for (name, section) in &config.apps {
            let Some(app) = self.get(name) else { continue };
            for subscription in app.subscriptions(section) {
                if subscription.matches(event) {
                    routes.push((app.name(), subscription));
                }
            }
        }
        routes
    }
}
