//! Starting Geoffrey: the store and queue, the API server and the workers, in one process. Tests call [`start`] with a listener on port 0; the binary calls it with the
//! configured address and waits for a signal.

use crate::api;
use crate::api::limits::IntakeLimits;
use crate::apps::AppRegistry;
use crate::cache::ConfigCache;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::keyring::Keyring;
use crate::limit::{ConcurrencyLimiter, LocalLimiter, RedisLimiter};
use crate::queue::redis::RedisQueue;
use crate::queue::sqlite::SqliteQueue;
use crate::queue::{Queue, QueueSettings};
use crate::services::Services;
use crate::store::Store;
use crate::store::couch::CouchStore;
use crate::store::sqlite::SqliteStore;
use crate::worker::Worker;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The parts of Geoffrey that a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub server: bool,
    pub worker: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        server: true,
        worker: true,
    };
}

/// A running Geoffrey.
pub struct Running {
    /// Address the API server listens on, when it runs.
    pub addr: Option<SocketAddr>,
    pub services: Arc<Services>,
    /// The one-time link that creates the web UI's administrator, while none exists.
    pub setup_link: Option<String>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Returns a token that stops everything when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops taking requests and jobs, lets running jobs finish or releases them, and waits.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until everything has stopped after the shutdown token was cancelled.
    pub async fn wait(self) {
        for task in self.tasks {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "a task of the process failed");
            }
        }
    }
}

/// Opens the store and queue the settings name: CouchDB and Redis when their URLs are set,
/// otherwise the embedded SQLite files under `settings.data_dir`.
pub async fn open_services(
    settings: &Settings,
    clock: SharedClock,
) -> anyhow::Result<Arc<Services>> {
    let store: Arc<dyn Store> = match &settings.store.url {
        Some(url) => {
            let store = CouchStore::connect(url.expose(), &settings.store.database_prefix).await?;
            tracing::info!(server = %crate::secret::server_of(url.expose()), "using the CouchDB store");
            store
        }
        None => SqliteStore::open(&settings.store_dir(), settings.sqlite.busy_timeout)?,
    };
    let queue_settings = QueueSettings {
        lease: settings.worker.lease,
        max_attempts: settings.worker.max_attempts,
        duplicate_window: settings.intake.duplicate_window,
        event_id_retention: settings.intake.event_id_retention,
    };
    let queue: Arc<dyn Queue> = match &settings.queue.url {
        Some(url) => {
            let queue = RedisQueue::connect(
                url.expose(),
                &settings.queue.key_prefix,
                queue_settings,
                clock.clone(),
            )
            .await?;
            tracing::info!(server = %crate::secret::server_of(url.expose()), "using the Redis queue");
            queue
        }
        None => {
            let path = settings.queue_file();
            let queue = SqliteQueue::open(
                &path,
                settings.sqlite.busy_timeout,
                queue_settings,
                clock.clone(),
            )?;
            queue.migrate().await?;
            queue
        }
    };
    let limiter: Arc<dyn ConcurrencyLimiter> = match &settings.queue.url {
        // A slot of a worker that died frees itself once no attempt could still be running.
        Some(url) => {
            let hold_timeout = settings.worker.job_timeout + std::time::Duration::from_secs(5);
            RedisLimiter::connect(url.expose(), &settings.queue.key_prefix, hold_timeout).await?
        }
        None => Arc::new(LocalLimiter::default()),
    };
    let apps = AppRegistry::builtin();
    let keyring = Arc::new(Keyring::from_settings(settings)?);
    let configs = ConfigCache::new(store.clone(), apps.clone(), keyring.clone());
    Ok(Arc::new(Services {
        settings: settings.clone(),
        store,
        queue,
        configs,
        apps,
        keyring,
        limiter,
        metrics: Arc::default(),
        limits: Arc::new(IntakeLimits::new(
            settings.limits.clone(),
            settings.server.max_body_bytes,
        )),
        clock,
    }))
}

/// Starts the server (on `listener`, or on `settings.server.listen` when `None`) and the
/// workers, on the store and queue the settings name.
pub async fn start(
    settings: Settings,
    listener: Option<TcpListener>,
    roles: Roles,
) -> anyhow::Result<Running> {
    let services = open_services(&settings, Arc::new(SystemClock)).await?;
    start_with(services, listener, roles).await
}

/// Starts the server and workers on services opened by the caller.
pub async fn start_with(
    services: Arc<Services>,
    listener: Option<TcpListener>,
    roles: Roles,
) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut addr = None;
    let mut setup_link = None;

    if roles.server {
        let listener = match listener {
            Some(listener) => listener,
            None => TcpListener::bind(services.settings.server.listen)
                .await
                .map_err(|err| {
                    anyhow::anyhow!(
                        "cannot listen on {}: {err}; set server.listen to a free address",
                        services.settings.server.listen
                    )
                })?,
        };
        let local = listener.local_addr()?;
        addr = Some(local);
        let ui = crate::ui::Ui::new(services.clone()).await?;
        setup_link = ui.setup_link();
        let app = api::router_with_ui(services.clone(), ui);
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "the API server failed");
            }
        }));
        tracing::info!(address = %local, "API server listening");
    }

    if roles.worker && services.settings.worker.concurrency > 0 {
        let worker = Worker::new(services.clone())?;
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move { worker.run(stop).await }));
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(crate::retention::run(services.clone(), stop)));
    }

    Ok(Running {
        addr,
        services,
        setup_link,
        shutdown,
        tasks,
    })
}
