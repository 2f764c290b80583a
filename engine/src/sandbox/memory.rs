//! In-memory services, for tests and local runs: artifacts kept in process
//! memory, and records in an in-memory store with no permission sets.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::services::{ArtifactInfo, ArtifactSink, ArtifactSource, ArtifactsService, HostError, Services};
use crate::digest::sha256_hex;
use crate::principal::Principal;

type StoredArtifact = (ArtifactInfo, Arc<Vec<u8>>);

/// Artifacts held in memory.
#[derive(Clone, Default)]
pub struct MemoryArtifacts {
    stored: Arc<Mutex<BTreeMap<String, StoredArtifact>>>,
}

impl MemoryArtifacts {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every artifact and its bytes.
    pub fn all(&self) -> Vec<StoredArtifact> {
        self.stored.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    fn get(&self, id: &str) -> Result<StoredArtifact, HostError> {
        self.stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| HostError::NotFound(format!("artifact {id}")))
    }
}

struct MemorySink {
    store: MemoryArtifacts,
    name: String,
    content_type: String,
    bytes: Vec<u8>,
    finished: bool,
}

#[async_trait]
impl ArtifactSink for MemorySink {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), HostError> {
        if self.finished {
            return Err(HostError::Invalid("the artifact is already finished".into()));
        }
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    async fn finish(&mut self) -> Result<ArtifactInfo, HostError> {
        if self.finished {
            return Err(HostError::Invalid("the artifact is already finished".into()));
        }
        self.finished = true;
        let mut stored = self.store.stored.lock().unwrap_or_else(|e| e.into_inner());
        let info = ArtifactInfo {
            id: format!("art_{:06}", stored.len() + 1),
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            size: self.bytes.len() as u64,
            sha256: sha256_hex(&self.bytes),
        };
        stored.insert(info.id.clone(), (info.clone(), Arc::new(std::mem::take(&mut self.bytes))));
        Ok(info)
    }
}

struct MemorySource {
    bytes: Arc<Vec<u8>>,
    position: usize,
}

#[async_trait]
impl ArtifactSource for MemorySource {
    async fn read(&mut self, max: usize) -> Result<Vec<u8>, HostError> {
        let end = (self.position + max).min(self.bytes.len());
        let chunk = self.bytes[self.position..end].to_vec();
        self.position = end;
        Ok(chunk)
    }
}

#[async_trait]
impl ArtifactsService for MemoryArtifacts {
    async fn create(
        &self,
        _: &Principal,
        _job_id: &str,
        name: &str,
        content_type: &str,
    ) -> Result<Box<dyn ArtifactSink>, HostError> {
        Ok(Box::new(MemorySink {
            store: self.clone(),
            name: name.to_string(),
            content_type: content_type.to_string(),
            bytes: Vec::new(),
            finished: false,
        }))
    }

    async fn info(&self, _: &Principal, id: &str) -> Result<ArtifactInfo, HostError> {
        self.get(id).map(|(info, _)| info)
    }

    async fn open(&self, _: &Principal, id: &str) -> Result<Box<dyn ArtifactSource>, HostError> {
        let (_, bytes) = self.get(id)?;
        Ok(Box::new(MemorySource { bytes, position: 0 }))
    }
}

impl Services {
    /// Fresh, empty in-memory services with no permission sets.
    pub fn in_memory() -> Self {
        let store = Arc::new(crate::store::MemoryStore::new());
        let records = crate::records::RecordsEngine::unrestricted(store, Arc::new(crate::clock::SystemClock));
        Self { records: Arc::new(records), artifacts: Arc::new(MemoryArtifacts::new()) }
    }
}
