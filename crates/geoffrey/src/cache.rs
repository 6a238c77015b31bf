//! A cache of parsed `CONFIG` documents, emptied for an instance as soon as the store reports
//! a change to its database.

use crate::apps::AppRegistry;
use crate::instance::{self, InstanceError, StoredConfig};
use crate::keyring::Keyring;
use crate::store::{Store, instance_changed};
use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use tokio::sync::broadcast::error::RecvError;

pub struct ConfigCache {
    store: Arc<dyn Store>,
    apps: AppRegistry,
    keyring: Arc<Keyring>,
    entries: RwLock<HashMap<String, Arc<StoredConfig>>>,
}

impl ConfigCache {
    /// Creates the cache and starts the task that evicts changed entries. Must be called
    /// inside a Tokio runtime.
    pub fn new(store: Arc<dyn Store>, apps: AppRegistry, keyring: Arc<Keyring>) -> Arc<Self> {
        let changes = store.changes();
        let cache = Arc::new(Self {
            store,
            apps,
            keyring,
            entries: RwLock::new(HashMap::new()),
        });
        tokio::spawn(evict_on_change(Arc::downgrade(&cache), changes));
        cache
    }

    /// Returns an instance's configuration, from the cache or the store.
    pub async fn get(&self, name: &str) -> Result<Arc<StoredConfig>, InstanceError> {
        if let Some(config) = self.read().get(name) {
            return Ok(config.clone());
        }
        self.store.watch(name);
        let config = instance::load(self.store.as_ref(), &self.apps, &self.keyring, name).await?;
        let config = Arc::new(config);
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), config.clone());
        Ok(config)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<StoredConfig>>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn evict(&self, name: Option<&str>) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        match name {
            Some(name) => entries.remove(name),
            None => {
                entries.clear();
                None
            }
        };
    }
}

async fn evict_on_change(
    cache: Weak<ConfigCache>,
    mut changes: tokio::sync::broadcast::Receiver<crate::store::Change>,
) {
    loop {
        let change = changes.recv().await;
        let Some(cache) = cache.upgrade() else { return };
        match change {
            Ok(change) if instance_changed(&change) => cache.evict(Some(&change.db)),
            Ok(_) => {}
            // Missed notifications could hide a configuration change, so drop everything.
            Err(RecvError::Lagged(_)) => cache.evict(None),
            Err(RecvError::Closed) => return,
        }
    }
}
