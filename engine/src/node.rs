//! One engine process on the embedded database, assembled from an
//! [`EngineConfig`]: the data directory and its lock, the SQLite store, the
//! sandbox, the handler registry and the queue. `objectos serve` and
//! `objectos demo` are both a node.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::clock::{Clock, SystemClock};
use crate::config::EngineConfig;
use crate::queue::{AllowAll, Queue, QueueParts};
use crate::registry::Registry;
use crate::sandbox::{Sandbox, SandboxConfig, Services};
use crate::store::{SqliteStore, Store};

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    /// Another process already serves this data directory.
    #[error("{0} is in use by another objectos process (only one may serve a data directory)")]
    Locked(PathBuf),
    /// The data directory could not be prepared.
    #[error("{path}: {message}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The database could not be opened.
    #[error("opening the database: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The sandbox could not be built.
    #[error("{0}")]
    Sandbox(#[from] crate::sandbox::SandboxError),
}

/// A running engine's parts. The data directory stays locked while it lives.
pub struct Node {
    /// The queue (start its workers with [`Queue::start`]).
    pub queue: Queue,
    /// The settings it was built from.
    pub config: EngineConfig,
    _lock: File,
}

impl Node {
    /// Prepares the data directory, takes its lock and opens everything.
    pub fn open(config: EngineConfig) -> Result<Self, NodeError> {
        let data_dir = &config.data_dir;
        let dir_error =
            |e: std::io::Error| NodeError::DataDir { path: data_dir.clone(), message: e.to_string() };
        std::fs::create_dir_all(data_dir).map_err(dir_error)?;
        let lock_path = data_dir.join("objectos.lock");
        let lock = File::create(&lock_path).map_err(dir_error)?;
        // The kernel drops the lock when the process dies, even by kill -9,
        // so a crashed node never blocks its own restart.
        lock.try_lock().map_err(|_| NodeError::Locked(data_dir.clone()))?;

        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(config.database_path(), config.durability())?);
        let mut sandbox_config = SandboxConfig::new();
        sandbox_config.max_concurrent_jobs(config.workers.concurrency as u32);
        let sandbox = Arc::new(Sandbox::new(&sandbox_config)?);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let registry = Arc::new(Registry::new(
            store.clone(),
            sandbox.clone(),
            clock.clone(),
            Some(data_dir.join("cache")),
        ));
        let queue = Queue::new(QueueParts {
            store,
            registry,
            sandbox,
            clock,
            // Until the permission engine lands every principal may do everything.
            policy: Arc::new(AllowAll),
            services: Services::in_memory(),
            config: config.queue_config(),
        });
        Ok(Self { queue, config, _lock: lock })
    }
}
