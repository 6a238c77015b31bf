//! Geoffrey's own settings: built-in defaults, then a TOML file, then `GEOFFREY_*` environment
//! variables, where a double underscore separates sections (`GEOFFREY_WORKER__CONCURRENCY=8`).
//! `geoffrey.example.toml` at the repository root documents every key.
//!
//! This is the only module that reads the environment. Per-instance configuration (the
//! `CONFIG` document) lives in the store, see [`crate::instance`].

use crate::secret::Secret;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File read from the working directory when no file is named.
pub const DEFAULT_FILE: &str = "geoffrey.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Folder for the embedded store and queue.
    pub data_dir: PathBuf,
    /// Key that encrypts the secrets stored in `CONFIG`: 64 hexadecimal characters, usually
    /// from `GEOFFREY_SECRET_KEY`. See [`crate::keyring`].
    pub secret_key: Option<Secret>,
    /// The key being replaced during a rotation; it only decrypts.
    pub previous_secret_key: Option<Secret>,
    pub server: ServerSettings,
    pub worker: WorkerSettings,
    pub intake: IntakeSettings,
    pub sqlite: SqliteSettings,
    pub store: StoreSettings,
    pub queue: QueueSettings,
    pub outbound: OutboundSettings,
    pub logs: LogSettings,
    pub limits: LimitSettings,
    pub ui: UiSettings,
}

/// Per-instance intake limits: defaults for every instance, and overrides by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Deliveries per second each API server accepts for one instance; 0 means no limit.
    pub deliveries_per_second: u32,
    /// Deliveries accepted at once before the rate applies.
    pub burst: u32,
    /// Jobs one instance may have waiting or running; 0 means no limit.
    pub max_queued_jobs: u64,
    /// Overrides for single instances, by name.
    pub instances: std::collections::BTreeMap<String, InstanceLimitOverrides>,
}

/// Limits of one instance that differ from the defaults in [`LimitSettings`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstanceLimitOverrides {
    pub deliveries_per_second: Option<u32>,
    pub burst: Option<u32>,
    pub max_queued_jobs: Option<u64>,
    /// Largest webhook body of this instance, at most `server.max_body_bytes`.
    pub max_body_bytes: Option<usize>,
}

/// The limits that apply to one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceLimits {
    pub deliveries_per_second: u32,
    pub burst: u32,
    pub max_queued_jobs: u64,
    pub max_body_bytes: Option<usize>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            deliveries_per_second: 100,
            burst: 500,
            max_queued_jobs: 100_000,
            instances: std::collections::BTreeMap::new(),
        }
    }
}

impl LimitSettings {
    /// Returns the limits of `instance`: its overrides, or the defaults.
    pub fn for_instance(&self, instance: &str) -> InstanceLimits {
        let own = self.instances.get(instance).cloned().unwrap_or_default();
        InstanceLimits {
            deliveries_per_second: own
                .deliveries_per_second
                .unwrap_or(self.deliveries_per_second),
            burst: own.burst.unwrap_or(self.burst),
            max_queued_jobs: own.max_queued_jobs.unwrap_or(self.max_queued_jobs),
            max_body_bytes: own.max_body_bytes,
        }
    }
}

/// How long job log entries are kept; see [`crate::retention`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Entries older than this are deleted; 0 keeps them forever.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Time between two rounds of deletion, run by every process that runs workers.
    #[serde(with = "humantime_serde")]
    pub purge_interval: Duration,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(90 * 24 * 3600),
            purge_interval: Duration::from_secs(3600),
        }
    }
}

/// The web UI's accounts and sessions; see [`crate::ui`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSettings {
    /// Name of the administrator the embedded mode creates on first start.
    pub admin_user: String,
    /// Password of that administrator, usually from `GEOFFREY_UI__ADMIN_PASSWORD`. Read only
    /// while no administrator exists; without it, `geoffrey run` prints a one-time setup link.
    pub admin_password: Option<Secret>,
    /// Time a sign-in lasts.
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
    /// Marks the session cookie `Secure`, so that browsers send it over HTTPS only. Unset, it
    /// follows the scheme of `server.public_url`.
    pub secure_cookies: Option<bool>,
}

impl Default for UiSettings {
    fn default() -> Self {
        Self {
            admin_user: "admin".to_string(),
            admin_password: None,
            session_lifetime: Duration::from_secs(12 * 3600),
            secure_cookies: None,
        }
    }
}

/// Networks that requests to third parties may reach; see [`crate::outbound`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    /// Private, loopback and link-local networks that relay targets, Discourse URLs and
    /// Mailchimp base URLs may reach anyway, such as `["10.20.0.0/16"]`. Empty by default,
    /// which refuses every such address.
    pub allowed_networks: Vec<ipnet::IpNet>,
}

/// Location of the instance databases: CouchDB, or without a URL SQLite files under `data_dir`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// CouchDB server, such as `http://admin:password@127.0.0.1:5984/`.
    pub url: Option<Secret>,
    /// Prefix of every instance's database name on the CouchDB server.
    pub database_prefix: String,
}

/// Location of the job queue: Redis, or without a URL `queue.sqlite` under `data_dir`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Redis server, such as `redis://127.0.0.1:6379/`.
    pub url: Option<Secret>,
    /// Prefix of every key Geoffrey writes in Redis.
    pub key_prefix: String,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: None,
            database_prefix: "geoffrey-".to_string(),
        }
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "geoffrey".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Base URL Discourse reaches this server at, used to print webhook URLs. Defaults to
    /// `http://` and the listen address.
    pub public_url: Option<String>,
    /// Largest accepted webhook body in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Header in which a reverse proxy passes the client's address, such as
    /// `X-Forwarded-For`; the last address in it counts. Unset, the peer address counts.
    pub client_ip_header: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Jobs one process runs at the same time; 0 runs no worker.
    pub concurrency: usize,
    /// Time one attempt may take before it is abandoned and retried.
    #[serde(with = "humantime_serde")]
    pub job_timeout: Duration,
    /// Time a taken job stays with its worker; after that it is handed out again. Must exceed
    /// `job_timeout`, or a slow attempt could run twice at once.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Attempts before a job becomes a failed job.
    pub max_attempts: u32,
    /// First retry delay; each further retry doubles it, with jitter.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Largest retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// On shutdown, time given to running jobs before they are given back to the queue.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Maximum idle wait between checks for due jobs.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeSettings {
    /// A delivery with the same event and body as one accepted this recently is a duplicate.
    /// Discourse's automatic retries come 1, 5, 25 and 125 minutes apart with new event ids,
    /// so the default of 3 hours covers all of them.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// How long accepted event ids are remembered. Discourse keeps events, and so allows
    /// redelivering them, for 30 days by default.
    #[serde(with = "humantime_serde")]
    pub event_id_retention: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteSettings {
    /// How long a write waits for another process's lock before it fails (and the delivery
    /// gets 503).
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("geoffrey-data"),
            secret_key: None,
            previous_secret_key: None,
            server: ServerSettings::default(),
            worker: WorkerSettings::default(),
            intake: IntakeSettings::default(),
            sqlite: SqliteSettings::default(),
            store: StoreSettings::default(),
            queue: QueueSettings::default(),
            outbound: OutboundSettings::default(),
            logs: LogSettings::default(),
            limits: LimitSettings::default(),
            ui: UiSettings::default(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            max_body_bytes: 2 * 1024 * 1024,
            client_ip_header: None,
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            job_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(120),
            max_attempts: 8,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(20),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            duplicate_window: Duration::from_secs(3 * 3600),
            event_id_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl Default for SqliteSettings {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration file {0} not found; create it or leave out --config")]
    FileNotFound(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads defaults, then `file` (or `geoffrey.toml` if it exists), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(SettingsError::FileNotFound(path.to_path_buf()));
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_FILE));
            }
            None => {}
        }
        let env = Env::prefixed("GEOFFREY_")
            .split("__")
            // These variables belong to the command line, not to the settings.
            .ignore(&["config", "log", "log_format", "webhook_secret"]);
        let settings: Settings = figment
            .merge(env)
            .extract()
            .map_err(|err| SettingsError::Invalid(err.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that parse but cannot work together.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let worker = &self.worker;
        if worker.lease <= worker.job_timeout {
            return Err(SettingsError::Invalid(format!(
                "worker.lease ({}) must be longer than worker.job_timeout ({}), or a slow job \
                 could run twice at once; raise worker.lease",
                humantime::format_duration(worker.lease),
                humantime::format_duration(worker.job_timeout),
            )));
        }
        if worker.max_attempts == 0 {
            return Err(SettingsError::Invalid(
                "worker.max_attempts is 0; set it to 1 or more".to_string(),
            ));
        }
        self.validate_backends()?;
        if self.logs.purge_interval.is_zero() {
            return Err(SettingsError::Invalid(
                "logs.purge_interval is 0; set a duration such as \"1h\"".to_string(),
            ));
        }
        if self.server.max_body_bytes == 0 {
            return Err(SettingsError::Invalid(
                "server.max_body_bytes is 0; set it to the largest body to accept, in bytes"
                    .to_string(),
            ));
        }
        if self.ui.session_lifetime.is_zero() {
            return Err(SettingsError::Invalid(
                "ui.session_lifetime is 0; set a duration such as \"12h\"".to_string(),
            ));
        }
        Ok(())
    }

    fn validate_backends(&self) -> Result<(), SettingsError> {
        let scheme_of = |url: &Secret| {
            reqwest::Url::parse(url.expose())
                .map(|u| u.scheme().to_string())
                .ok()
        };
        if let Some(url) = &self.store.url {
            if !matches!(scheme_of(url).as_deref(), Some("http" | "https")) {
                return Err(SettingsError::Invalid(
                    "store.url is not an http or https URL; use http://user:password@host:5984/"
                        .into(),
                ));
            }
        }
        if let Some(url) = &self.queue.url {
            match scheme_of(url).as_deref() {
                Some("redis") => {}
                Some("rediss") => {
                    return Err(SettingsError::Invalid(
                        "queue.url uses rediss://, but this build has no TLS for Redis; use \
                         redis:// on a private network or through a TLS tunnel"
                            .into(),
                    ));
                }
                _ => {
                    return Err(SettingsError::Invalid(
                        "queue.url is not a redis:// URL; use redis://host:6379/".into(),
                    ));
                }
            }
        }
        let prefix = &self.store.database_prefix;
        let valid_prefix = prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_$()+-".contains(c));
        if !valid_prefix {
            return Err(SettingsError::Invalid(format!(
                "store.database_prefix {prefix:?} is not a valid CouchDB name start; use lowercase \
                 letters, digits and _$()+-, starting with a letter"
            )));
        }
        if self.queue.key_prefix.is_empty() {
            return Err(SettingsError::Invalid(
                "queue.key_prefix is empty; set it, for example to \"geoffrey\"".into(),
            ));
        }
        Ok(())
    }

    /// Returns the base URL Discourse should send webhooks to.
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.server.listen),
        }
    }

    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("instances")
    }

    pub fn queue_file(&self) -> PathBuf {
        self.data_dir.join("queue.sqlite")
    }
}

#[cfg(test)]
// figment's Jail fixes the closure's error type, which clippy finds large.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn lease_shorter_than_timeout_is_rejected() {
        let mut settings = Settings::default();
        settings.worker.lease = Duration::from_secs(10);
        let err = settings
            .validate()
            .expect_err("lease below timeout must fail");
        assert!(err.to_string().contains("worker.lease"), "{err}");
    }

    #[test]
    fn file_and_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "data_dir = \"/tmp/g\"\n[worker]\nconcurrency = 9\njob_timeout = \"5s\"\n",
            )?;
            jail.set_env("GEOFFREY_WORKER__CONCURRENCY", "3");
            let settings = Settings::load(Some(Path::new("custom.toml"))).expect("loads");
            assert_eq!(settings.data_dir, PathBuf::from("/tmp/g"));
            assert_eq!(settings.worker.concurrency, 3);
            assert_eq!(settings.worker.job_timeout, Duration::from_secs(5));
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[worker]\nconcurency = 9\n")?;
            let err = Settings::load(Some(Path::new("bad.toml"))).expect_err("typo must fail");
            assert!(err.to_string().contains("concurency"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn backend_urls_are_checked() {
        let mut settings = Settings::default();
        settings.store.url = Some(Secret::new("redis://127.0.0.1:6379/"));
        let err = settings
            .validate()
            .expect_err("a Redis URL is no store URL");
        assert!(err.to_string().contains("store.url"), "{err}");

        let mut settings = Settings::default();
        settings.queue.url = Some(Secret::new("http://admin:hunter2@127.0.0.1:5984/"));
        let err = settings
            .validate()
            .expect_err("a CouchDB URL is no queue URL");
        assert!(err.to_string().contains("queue.url"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn allowed_networks_come_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "GEOFFREY_OUTBOUND__ALLOWED_NETWORKS",
                r#"["10.20.0.0/16", "127.0.0.1/32"]"#,
            );
            let settings = Settings::load(None).expect("loads");
            let networks: Vec<String> = (settings.outbound.allowed_networks.iter())
                .map(ToString::to_string)
                .collect();
            assert_eq!(networks, ["10.20.0.0/16", "127.0.0.1/32"]);

            jail.set_env("GEOFFREY_OUTBOUND__ALLOWED_NETWORKS", r#"["10.20.0.0/33"]"#);
            let err = Settings::load(None).expect_err("a prefix over 32 must fail");
            let message = err.to_string().to_lowercase();
            assert!(message.contains("outbound.allowed_networks"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_named_file_is_an_error() {
        let err = Settings::load(Some(Path::new("/nonexistent/geoffrey.toml")))
            .expect_err("missing file must fail");
        assert!(matches!(err, SettingsError::FileNotFound(_)));
    }
}
