//! The shared parts a running Geoffrey is made of, handed to the API server and the workers.

use crate::api::limits::IntakeLimits;
use crate::apps::AppRegistry;
use crate::cache::ConfigCache;
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::keyring::Keyring;
use crate::limit::ConcurrencyLimiter;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::store::Store;
use std::sync::Arc;

pub struct Services {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub configs: Arc<ConfigCache>,
    pub apps: AppRegistry,
    /// The keys that seal and open the secrets in `CONFIG`.
    pub keyring: Arc<Keyring>,
    /// Limits on requests in flight to third parties, shared by every worker.
    pub limiter: Arc<dyn ConcurrencyLimiter>,
    pub metrics: Arc<Metrics>,
    /// Per-instance intake limits of this API server.
    pub limits: Arc<IntakeLimits>,
    pub clock: SharedClock,
}
