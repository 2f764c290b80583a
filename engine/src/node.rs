//! One engine process on the embedded database, assembled from an
//! [`EngineConfig`]: the data directory and its lock, the SQLite store, the
//! sandbox, the handler registry, the permission sets and the records
//! under them, the artifacts in the database, the queue, the scheduler
//! and the audit log's feeder. `objectos serve` and `objectos demo` are
//! both a node; local commands such as `objectos schedule` open the same
//! parts beside it without the lock.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::artifacts::StoredArtifacts;
use crate::audit::feed::{Auditor, Feeding};
use crate::clock::{Clock, SystemClock};
use crate::config::EngineConfig;
use crate::digest::sha256_hex;
use crate::permissions::PermissionsDir;
use crate::queue::Queue;
use crate::records::RecordsEngine;
use crate::registry::{Registry, RegistryError};
use crate::sandbox::{Sandbox, SandboxConfig, Services};
use crate::schedule::Scheduler;
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
    /// A permission set is invalid.
    #[error("permission sets: {0}")]
    Permissions(#[from] crate::permissions::LoadError),
}

/// A running engine's parts. The data directory stays locked while it lives.
pub struct Node {
    /// The database every part below keeps its state in.
    pub store: Arc<dyn Store>,
    /// The queue (start its workers with [`Queue::start`]).
    pub queue: Queue,
    /// The scheduler (start its loop with [`Scheduler::start`]).
    pub scheduler: Scheduler,
    /// The permission sets in force (reload with [`PermissionsDir::reload`]).
    pub permissions: Arc<PermissionsDir>,
    /// The records, under those sets.
    pub records: Arc<RecordsEngine>,
    /// The artifacts jobs wrote.
    pub artifacts: StoredArtifacts,
    /// The audit log's feeder (start it with [`Node::start_audit`]).
    pub auditor: Auditor,
    /// The settings it was built from.
    pub config: EngineConfig,
    _lock: Option<File>,
}

/// The guest SDK's examples, compiled into this binary, which every data
/// directory starts with.
const EXAMPLE_HANDLERS: [(&str, &[u8]); 4] = [
    ("template", crate::examples::TEMPLATE),
    ("tasks", crate::examples::TASKS),
    ("contacts-summary", crate::examples::CONTACTS_SUMMARY),
    ("csv-export", crate::examples::CSV_EXPORT),
];

impl Node {
    /// Prepares the data directory, takes its lock and opens everything.
    pub fn open(config: EngineConfig) -> Result<Self, NodeError> {
        let lock = File::create(Self::prepare_dir(&config)?.join("objectos.lock"))
            .map_err(|e| NodeError::DataDir { path: config.data_dir.clone(), message: e.to_string() })?;
        // The kernel drops the lock when the process dies, even by kill -9,
        // so a crashed node never blocks its own restart.
        lock.try_lock().map_err(|_| NodeError::Locked(config.data_dir.clone()))?;
        Self::assemble(config, Some(lock))
    }

    /// Opens the data directory beside a node that may be serving it, for a
    /// local command: the database takes several processes, and the
    /// serving node picks up schedule changes within its poll interval.
    /// Run no workers on it.
    pub fn open_beside(config: EngineConfig) -> Result<Self, NodeError> {
        Self::prepare_dir(&config)?;
        Self::assemble(config, None)
    }

    fn prepare_dir(config: &EngineConfig) -> Result<&std::path::Path, NodeError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| NodeError::DataDir { path: config.data_dir.clone(), message: e.to_string() })?;
        Ok(&config.data_dir)
    }

    fn assemble(config: EngineConfig, lock: Option<File>) -> Result<Self, NodeError> {
        let data_dir = &config.data_dir;

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
        let permissions = Arc::new(Self::load_permissions(&config)?);
        let records = Arc::new(RecordsEngine::new(store.clone(), permissions.clone(), clock.clone()));
        let artifacts = StoredArtifacts::new(store.clone(), clock.clone(), permissions.clone());
        let services = Services { records: records.clone(), artifacts: Arc::new(artifacts.clone()) };
        let auditor = Auditor::new(store.clone(), config.node_id.clone());
        let queue = Queue::builder(store.clone(), sandbox, permissions.clone())
            .registry(registry)
            .clock(clock)
            .services(services)
            .config(config.queue_config())
            .build();
        let scheduler = Scheduler::new(queue.clone(), store.clone(), config.scheduler_config());
        Ok(Self { store, queue, scheduler, permissions, records, artifacts, auditor, config, _lock: lock })
    }

    /// The sets in the configured directory. A missing default directory
    /// means no sets (every record access and capability is denied); a
    /// missing configured one is an error.
    fn load_permissions(config: &EngineConfig) -> Result<PermissionsDir, NodeError> {
        let (dir, configured) = config.permissions_dir();
        if !configured && !dir.exists() {
            tracing::warn!(
                dir = %dir.display(),
                "no permission sets: every record access and capability is denied until the directory exists"
            );
            return Ok(PermissionsDir::watching_missing(dir));
        }
        Ok(PermissionsDir::open(dir)?)
    }

    /// Starts appending this database's events to its audit log, as the
    /// config's `audit` section says.
    pub fn start_audit(&self) -> Feeding {
        self.auditor.clone().start(self.config.audit.interval, self.config.audit.retention)
    }

    /// Registers this binary's built-in handlers where the stored version
    /// differs (so an upgrade brings its built-ins), and the example
    /// handlers this data directory does not have yet.
    pub async fn install_handlers(&self) -> Result<(), RegistryError> {
        let registry = self.queue.registry();
        for builtin in crate::builtins::ALL {
            let current = match registry.get(builtin.name).await {
                Ok(record) => Some(record.sha256),
                Err(RegistryError::Unknown(_)) => None,
                Err(error) => return Err(error),
            };
            if current.as_deref() != Some(sha256_hex(builtin.wasm).as_str()) {
                registry.register(builtin.name, builtin.wasm.to_vec()).await?;
            }
        }
        for (name, wasm) in EXAMPLE_HANDLERS {
            if matches!(registry.get(name).await, Err(RegistryError::Unknown(_))) {
                registry.register(name, wasm.to_vec()).await?;
            }
        }
        Ok(())
    }
}
