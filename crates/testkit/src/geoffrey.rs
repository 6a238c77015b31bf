//! Geoffrey started in-process for a test, on port 0 with a fresh data folder.

use crate::fixtures::Delivery;
use crate::servers::{PouchServer, RedisServer};
use geoffrey::clock::{ManualClock, SharedClock, SystemClock};
use geoffrey::config::Settings;
use geoffrey::instance;
use geoffrey::run::{Roles, Running, open_services, start_with};
use geoffrey::secret::Secret;
use geoffrey::services::Services;
use geoffrey::store::{LogEntry, LogQuery};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The store and queue a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// SQLite files in a temporary folder.
    Embedded,
    /// A redis-server and a PouchDB Server (keeping its data on disk) started for the test.
    Distributed,
}

pub struct TestGeoffrey {
    pub base_url: String,
    pub services: Arc<Services>,
    pub http: reqwest::Client,
    running: Option<Running>,
    /// Keeps the data folder until the test ends.
    pub dir: tempfile::TempDir,
    pub redis: Option<RedisServer>,
    pub couch: Option<PouchServer>,
}

/// Settings for tests: quick polling and retries, short timeouts.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut settings = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    settings.worker.concurrency = 2;
    settings.worker.poll_interval = Duration::from_millis(20);
    settings.worker.backoff_base = Duration::from_millis(20);
    settings.worker.backoff_max = Duration::from_millis(100);
    settings.worker.job_timeout = Duration::from_secs(2);
    settings.worker.lease = Duration::from_secs(5);
    settings.worker.max_attempts = 3;
    settings.worker.shutdown_grace = Duration::from_secs(2);
    settings.sqlite.busy_timeout = Duration::from_millis(200);
    // The receivers and fakes the tests start listen on loopback.
    settings.outbound.allowed_networks = vec![LOOPBACK.parse().unwrap()];
    settings.secret_key = Some(Secret::generate());
    settings.ui.admin_password = Some(Secret::new(crate::ui::ADMIN_PASSWORD));
    settings
}

/// The network the test servers listen on, as `outbound.allowed_networks` takes it.
pub const LOOPBACK: &str = "127.0.0.1/32";

/// Returns an outbound client that may reach the test servers.
pub fn outbound_client() -> geoffrey::outbound::OutboundClient {
    let settings = test_settings(std::path::Path::new("."));
    geoffrey::outbound::OutboundClient::new(&settings.outbound, settings.worker.job_timeout)
        .unwrap()
}

impl TestGeoffrey {
    /// Starts server and workers with [`test_settings`].
    pub async fn start(mode: Mode) -> Self {
        Self::start_with(mode, |_| {}, None, Roles::ALL).await
    }

    /// Starts with adjusted settings, an optional manual clock and chosen roles.
    pub async fn start_with(
        mode: Mode,
        adjust: impl FnOnce(&mut Settings),
        clock: Option<ManualClock>,
        roles: Roles,
    ) -> Self {
        crate::init_logging();
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(dir.path());
        let (redis, couch) = match mode {
            Mode::Embedded => (None, None),
            Mode::Distributed => {
                // On disk, so that tests can stop and restart the store without losing it.
                let (redis, couch) = (RedisServer::start(), PouchServer::start_on_disk());
                settings.queue.url = Some(Secret::new(redis.url()));
                settings.store.url = Some(Secret::new(couch.admin_url()));
                (Some(redis), Some(couch))
            }
        };
        adjust(&mut settings);
        let clock: SharedClock = match clock {
            Some(clock) => Arc::new(clock),
            None => Arc::new(SystemClock),
        };
        let services = open_services(&settings, clock).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = start_with(services.clone(), Some(listener), roles)
            .await
            .unwrap();
        let base_url = format!("http://{}", running.addr.unwrap());
        Self {
            base_url,
            services,
            http: reqwest::Client::new(),
            running: Some(running),
            dir,
            redis,
            couch,
        }
    }

    /// Returns the one-time link that creates the embedded administrator, while none exists.
    pub fn setup_link(&self) -> Option<String> {
        self.running.as_ref()?.setup_link.clone()
    }

    /// Stops the server and workers gracefully.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Creates an instance with the fixture secret and the given `apps` section.
    pub async fn create_instance(&self, name: &str, apps: Value) {
        let store = self.services.store.as_ref();
        let secret = Some(Secret::new(crate::fixtures::FIXTURE_SECRET));
        instance::create(
            store,
            &self.services.apps,
            &self.services.keyring,
            name,
            "https://forum.example.com",
            secret,
        )
        .await
        .unwrap();
        self.set_apps(name, apps).await;
    }

    /// Replaces an instance's `apps` section.
    pub async fn set_apps(&self, name: &str, apps: Value) {
        self.edit_config(name, |document| document["apps"] = apps)
            .await;
    }

    /// Loads an instance's `CONFIG`, lets `change` edit it, and saves it.
    pub async fn edit_config(&self, name: &str, change: impl FnOnce(&mut Value)) {
        let services = &self.services;
        let (store, apps, keyring) = (services.store.as_ref(), &services.apps, &services.keyring);
        let current = instance::load(store, apps, keyring, name).await.unwrap();
        let mut document = serde_json::to_value(&current.config).unwrap();
        change(&mut document);
        instance::save(store, apps, keyring, name, &current.rev, document)
            .await
            .unwrap();
    }

    /// Posts a delivery to the instance's hook URL; returns the status and JSON body.
    pub async fn send(&self, instance: &str, delivery: &Delivery) -> (u16, Value) {
        let url = format!("{}/hooks/discourse/{instance}", self.base_url);
        self.post(&url, delivery).await
    }

    /// Posts a delivery's body and headers to any URL of the server.
    pub async fn post(&self, url: &str, delivery: &Delivery) -> (u16, Value) {
        let mut request = self.http.post(url).body(delivery.body.clone());
        for (name, value) in &delivery.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Returns up to 1000 log entries of an instance, newest first.
    pub async fn logs(&self, instance: &str) -> Vec<LogEntry> {
        let query = LogQuery {
            limit: 1000,
            ..LogQuery::default()
        };
        self.services
            .store
            .query_logs(instance, &query)
            .await
            .unwrap()
            .entries
    }

    /// Waits until an instance has at least `count` log entries; returns them newest first.
    pub async fn wait_for_logs(&self, instance: &str, count: usize) -> Vec<LogEntry> {
        let what = format!("{count} log entries in {instance}");
        crate::eventually(Duration::from_secs(10), &what, || async {
            let logs = self.logs(instance).await;
            (logs.len() >= count).then_some(logs)
        })
        .await
    }
}

/// Returns one relay rule, for [`relay_apps`].
pub fn relay_rule(name: &str, url: &str, events: &[&str], template: &str) -> Value {
    json!({ "name": name, "url": url, "events": events, "template": template })
}

pub fn relay_apps(rules: Vec<Value>) -> Value {
    json!({ "relay": { "rules": rules } })
}

/// Expands each named `async fn name(mode: Mode)` into a module `name` with two tests,
/// `embedded` and `distributed`, that run it in each mode.
#[macro_export]
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn embedded() {
                    super::$name($crate::geoffrey::Mode::Embedded).await
                }

                #[tokio::test]
                async fn distributed() {
                    super::$name($crate::geoffrey::Mode::Distributed).await
                }
            }
        )*
    };
}
