//! Which store the tracker runs on: the in-memory store of one node, or (with the `redis`
//! feature) Redis shared by several nodes, chosen by `[store] url` / `--store`.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use ppsp_tracker_core::token::TokenKey;
use ppsp_tracker_core::{Authenticator, MemoryStore, Timestamp, Tracker};

use crate::error::ServerError;

/// The store behind the server's tracker.
#[cfg(feature = "redis")]
pub type TrackerStore = ppsp_store_redis::AnyStore;
/// The store behind the server's tracker.
#[cfg(not(feature = "redis"))]
pub type TrackerStore = MemoryStore;

/// The server's tracker.
pub type ServerTracker = Tracker<TrackerStore>;

/// `[store]`: where the tracker keeps its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// `memory`, `redis://HOST:PORT` or `redis-cluster://H:P[,H:P...]`.
    pub url: String,
    /// Longest wait for one call to a Redis store, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            url: "memory".into(),
            timeout_ms: 2000,
        }
    }
}

/// A tracker on the in-memory store, its AuthToken key and sampling seeded by the OS.
pub fn memory_tracker(
    config: ppsp_tracker_core::Config,
    authenticator: Arc<dyn Authenticator>,
) -> ServerTracker {
    let mut rng = StdRng::from_os_rng();
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let store = MemoryStore::new(&config, Timestamp::from_millis(0), &mut rng);
    #[cfg(feature = "redis")]
    let store = ppsp_store_redis::AnyStore::Memory(store);
    Tracker::with_store(config, store, TokenKey::new(&secret), authenticator)
}

/// A tracker on the store `section` names; for Redis, connects (failing within the
/// time-out) and takes the AuthToken key the nodes share.
///
/// # Errors
/// [`ServerError::Store`] naming the store when it is unknown or cannot be reached.
pub async fn open_tracker(
    section: &StoreSection,
    config: ppsp_tracker_core::Config,
    authenticator: Arc<dyn Authenticator>,
) -> Result<ServerTracker, ServerError> {
    if section.url == "memory" {
        return Ok(memory_tracker(config, authenticator));
    }
    open_shared(section, config, authenticator).await
}

#[cfg(feature = "redis")]
async fn open_shared(
    section: &StoreSection,
    config: ppsp_tracker_core::Config,
    authenticator: Arc<dyn Authenticator>,
) -> Result<ServerTracker, ServerError> {
    use ppsp_store_redis::{AnyStore, RedisOptions, RedisStore};
    let failed = |reason: String| ServerError::Store {
        url: section.url.clone(),
        reason,
    };
    let options = RedisOptions {
        timeout: Duration::from_millis(section.timeout_ms.max(1)),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&section.url, &config, &options)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let tokens = store.token_key().await.map_err(|e| failed(e.to_string()))?;
    Ok(Tracker::with_store(
        config,
        AnyStore::Redis(store),
        tokens,
        authenticator,
    ))
}

#[cfg(not(feature = "redis"))]
async fn open_shared(
    section: &StoreSection,
    _config: ppsp_tracker_core::Config,
    _authenticator: Arc<dyn Authenticator>,
) -> Result<ServerTracker, ServerError> {
    let _ = Duration::ZERO;
    Err(ServerError::Store {
        url: section.url.clone(),
        reason: "this build has no Redis support (cargo feature `redis`)".into(),
    })
}

/// Whether the store answers: `Err` with a reason for `/healthz` when it does not.
pub(crate) async fn health(tracker: &ServerTracker) -> Result<(), String> {
    #[cfg(feature = "redis")]
    if let ppsp_store_redis::AnyStore::Redis(store) = tracker.store() {
        return store.ping().await.map_err(|e| e.to_string());
    }
    let _ = tracker;
    Ok(())
}
