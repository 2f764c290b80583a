//! Handlers by name: registering versions, pinning, and compiled code.
//!
//! A version is the sha256 of the component's bytes; the store keeps every
//! version and which one a name currently points at. Compiled code is kept
//! in memory per version and, when a cache directory is set, on disk keyed
//! by the version and the engine's compatibility hash, so a restart loads
//! instead of recompiling. A cached file is loaded only if its digest
//! matches the one recorded when this engine wrote it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::clock::Clock;
use crate::digest::{hex, sha256_hex};
use crate::principal::Principal;
use crate::sandbox::{CompiledHandler, ComponentError, Sandbox};
use crate::store::{HandlerRecord, HandlerStore, StoreError};

/// Why a handler could not be registered or loaded.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The bytes are not a valid handler.
    #[error("handler `{name}`: {source}")]
    Invalid {
        /// The handler's name.
        name: String,
        /// What is wrong.
        source: ComponentError,
    },
    /// The name is not allowed.
    #[error(
        "`{0}` is not a valid handler name (letters, digits, `-`, `_`, `.`, starting with a letter or digit; at most 64)"
    )]
    BadName(String),
    /// No handler has this name.
    #[error("unknown handler `{0}`")]
    Unknown(String),
    /// The store lost a version (it should keep every one).
    #[error("handler version {0} is missing from the store")]
    MissingVersion(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Compiled-code counters, for tests and metrics.
#[derive(Debug, Default)]
pub struct RegistryStats {
    /// Components compiled from wasm.
    pub compiled: AtomicU64,
    /// Components loaded from the disk cache.
    pub loaded_from_cache: AtomicU64,
}

/// Handlers by name, compiled once per version.
pub struct Registry {
    store: Arc<dyn HandlerStore>,
    sandbox: Arc<Sandbox>,
    clock: Arc<dyn Clock>,
    cache_dir: Option<PathBuf>,
    engine_hash: String,
    compiled: Mutex<HashMap<String, Arc<CompiledHandler>>>,
    stats: RegistryStats,
}

/// Hashes anything `Hash` into sha256, for a stable on-disk cache key.
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// A name starts with a letter or digit (so never `.`, `..` or a hidden
/// file's name: it names a cache file and a URL path segment).
fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Registry {
    /// A registry over `store`, compiling with `sandbox`, caching compiled
    /// code in `cache_dir` when given.
    pub fn new(
        store: Arc<dyn HandlerStore>,
        sandbox: Arc<Sandbox>,
        clock: Arc<dyn Clock>,
        cache_dir: Option<PathBuf>,
    ) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&sandbox.engine().precompile_compatibility_hash(), &mut hasher);
        let engine_hash = hex(&hasher.0.finalize())[..16].to_string();
        Self {
            store,
            sandbox,
            clock,
            cache_dir,
            engine_hash,
            compiled: Mutex::new(HashMap::new()),
            stats: RegistryStats::default(),
        }
    }

    /// Compiled-code counters.
    pub fn stats(&self) -> &RegistryStats {
        &self.stats
    }

    /// Registers `bytes` as `name` on the engine's own behalf (built-ins,
    /// local commands); see [`Registry::register_as`].
    pub async fn register(
        &self,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(HandlerRecord, Arc<CompiledHandler>), RegistryError> {
        self.register_as(&engine_actor(), name, bytes).await
    }

    /// Validates and compiles `bytes`, stores them as a version of `name`
    /// and points `name` at it, recording `by` in the audit log. Nothing is
    /// stored if the bytes are invalid.
    pub async fn register_as(
        &self,
        by: &Principal,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(HandlerRecord, Arc<CompiledHandler>), RegistryError> {
        if !valid_name(name) {
            return Err(RegistryError::BadName(name.to_string()));
        }
        let sha256 = sha256_hex(&bytes);
        let compiled = match self.cached(&sha256) {
            Some(compiled) => compiled,
            None => {
                let compiled = self
                    .compile(&bytes)
                    .await
                    .map_err(|source| RegistryError::Invalid { name: name.to_string(), source })?;
                self.remember(compiled)
            }
        };
        let record = self.store.put_handler(name, &sha256, &bytes, by, self.clock.now()).await?;
        Ok((record, compiled))
    }

    /// The handler named `name`.
    pub async fn get(&self, name: &str) -> Result<HandlerRecord, RegistryError> {
        self.store.handler(name).await?.ok_or_else(|| RegistryError::Unknown(name.to_string()))
    }

    /// Every handler.
    pub async fn list(&self) -> Result<Vec<HandlerRecord>, RegistryError> {
        Ok(self.store.handlers().await?)
    }

    /// Removes a name on behalf of `by`; jobs pinned to its versions still run.
    pub async fn remove(&self, by: &Principal, name: &str) -> Result<bool, RegistryError> {
        Ok(self.store.delete_handler(name, by, self.clock.now()).await?)
    }

    /// The compiled version `sha256`: from memory, else the disk cache, else
    /// compiled from the stored bytes (and cached).
    pub async fn compiled(&self, sha256: &str) -> Result<Arc<CompiledHandler>, RegistryError> {
        if let Some(compiled) = self.cached(sha256) {
            return Ok(compiled);
        }
        if let Some(compiled) = self.load_from_disk(sha256).await {
            return Ok(self.remember(compiled));
        }
        let bytes = self
            .store
            .handler_bytes(sha256)
            .await?
            .ok_or_else(|| RegistryError::MissingVersion(sha256.into()))?;
        let compiled = self
            .compile(&bytes)
            .await
            .map_err(|source| RegistryError::Invalid { name: sha256.to_string(), source })?;
        Ok(self.remember(compiled))
    }

    fn cached(&self, sha256: &str) -> Option<Arc<CompiledHandler>> {
        self.compiled.lock().unwrap_or_else(|e| e.into_inner()).get(sha256).cloned()
    }

    fn remember(&self, compiled: CompiledHandler) -> Arc<CompiledHandler> {
        let compiled = Arc::new(compiled);
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(compiled.sha256().to_string())
            .or_insert(compiled)
            .clone()
    }

    /// Compiles on a blocking thread (Cranelift is CPU heavy) and writes the
    /// result to the disk cache.
    async fn compile(&self, bytes: &[u8]) -> Result<CompiledHandler, ComponentError> {
        let sandbox = self.sandbox.clone();
        let bytes = bytes.to_vec();
        let compiled = tokio::task::spawn_blocking(move || sandbox.compile(&bytes))
            .await
            .map_err(|e| ComponentError::Invalid(format!("compilation panicked: {e}")))??;
        self.stats.compiled.fetch_add(1, Ordering::Relaxed);
        self.save_to_disk(&compiled);
        Ok(compiled)
    }

    fn cache_paths(&self, sha256: &str) -> Option<(PathBuf, PathBuf)> {
        let dir = self.cache_dir.as_ref()?;
        let stem = format!("{sha256}-{}", self.engine_hash);
        Some((dir.join(format!("{stem}.cwasm")), dir.join(format!("{stem}.cwasm.sha256"))))
    }

    fn save_to_disk(&self, compiled: &CompiledHandler) {
        let Some((code, digest)) = self.cache_paths(compiled.sha256()) else { return };
        let saved = (|| -> std::io::Result<()> {
            let serialized = self.sandbox.serialize(compiled).map_err(std::io::Error::other)?;
            std::fs::create_dir_all(code.parent().expect("cache files live in a directory"))?;
            let partial = code.with_extension("partial");
            std::fs::write(&partial, &serialized)?;
            std::fs::rename(&partial, &code)?;
            std::fs::write(&digest, sha256_hex(&serialized))
        })();
        if let Err(error) = saved {
            tracing::warn!(%error, path = %code.display(), "cannot cache compiled handler");
        }
    }

    async fn load_from_disk(&self, sha256: &str) -> Option<CompiledHandler> {
        let (code, digest) = self.cache_paths(sha256)?;
        let serialized = std::fs::read(&code).ok()?;
        let recorded = std::fs::read_to_string(&digest).ok()?;
        if sha256_hex(&serialized) != recorded.trim() {
            tracing::warn!(path = %code.display(), "compiled handler cache entry does not match its digest; recompiling");
            return None;
        }
        let size = self.store.handler_bytes(sha256).await.ok().flatten().map_or(0, |b| b.len());
        // SAFETY: the file was written by `save_to_disk` of an engine with the
        // same compatibility hash (it is in the file name) and its digest
        // matches the one recorded when it was written.
        let loaded = unsafe { self.sandbox.deserialize(&serialized, sha256, size) };
        match loaded {
            Ok(compiled) => {
                self.stats.loaded_from_cache.fetch_add(1, Ordering::Relaxed);
                Some(compiled)
            }
            Err(error) => {
                tracing::warn!(%error, path = %code.display(), "cannot load compiled handler; recompiling");
                None
            }
        }
    }
}

/// Who the audit log names for what the engine does on its own behalf.
pub const ENGINE_ACTOR: &str = "objectos:engine";

fn engine_actor() -> Principal {
    Principal::new(ENGINE_ACTOR, &[])
}
