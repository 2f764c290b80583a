//! `StoredArtifacts`: the artifacts jobs write, kept in the engine's
//! database. A job's writes are buffered into chunks of [`CHUNK_BYTES`] and
//! stored as they fill, so memory stays bounded however large the
//! artifact; `finish` stores the rest and seals the artifact with its size
//! and sha256. It implements the sandbox's `ArtifactsService` and is the
//! engine's Rust API for listing and reading artifacts.
//!
//! An artifact is owned as the job that wrote it (the user it ran as, and
//! the one who enqueued it); a guest reads only artifacts its principal
//! owns unless the principal holds `artifacts.read.any`, so a restore reads
//! only a backup its principal may read. Another's artifact is answered as
//! a missing one, and the attempt is recorded as a denial.

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::clock::{Clock, time_ordered_id};
use crate::digest::hex;
use crate::ownership::{ARTIFACTS_READ_ANY, Scope};
use crate::principal::Principal;
use crate::queue::Policy;
use crate::sandbox::{ArtifactInfo, ArtifactSink, ArtifactSource, ArtifactsService, HostError};
use crate::store::{AccessEvent, AccessEventType, Actor, ArtifactRecord, Store, StoreError};

/// Bytes per stored chunk.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Artifacts in the engine's store.
#[derive(Clone)]
pub struct StoredArtifacts {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: Arc<dyn Policy>,
}

fn host_error(error: StoreError) -> HostError {
    match error {
        StoreError::ArtifactNotFound(id) => HostError::NotFound(format!("artifact {id}")),
        StoreError::ArtifactSealed(_) | StoreError::ArtifactIncomplete { .. } => {
            HostError::Invalid(error.to_string())
        }
        other => HostError::Unavailable(other.to_string()),
    }
}

fn info(record: &ArtifactRecord) -> ArtifactInfo {
    ArtifactInfo {
        id: record.id.clone(),
        name: record.name.clone(),
        content_type: record.content_type.clone(),
        size: record.size,
        sha256: record.sha256.clone(),
    }
}

impl StoredArtifacts {
    /// Artifacts in `store`, timestamped by `clock`, read by guests as
    /// `policy` scopes them.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: Arc<dyn Policy>) -> Self {
        Self { store, clock, policy }
    }

    /// Sealed artifacts within `scope` with an id after `after`, by id (ids
    /// grow with time).
    pub async fn list(
        &self,
        scope: &Scope,
        after: &str,
        limit: usize,
    ) -> Result<Vec<ArtifactRecord>, StoreError> {
        self.store.artifacts(scope.owner(), after, limit).await
    }

    /// One artifact's record, sealed or not, whoever owns it: the engine's
    /// own view (a caller on behalf of a principal checks
    /// [`ArtifactRecord::owners`] against its scope).
    pub async fn get(&self, id: &str) -> Result<Option<ArtifactRecord>, StoreError> {
        self.store.artifact(id).await
    }

    /// A sealed artifact's record that `principal` may read; one still being
    /// written is not readable, and another's is answered as missing (and
    /// recorded as a denial).
    async fn sealed(&self, principal: &Principal, id: &str) -> Result<ArtifactRecord, HostError> {
        let missing = || HostError::NotFound(format!("artifact {id}"));
        let record = self.store.artifact(id).await.map_err(host_error)?.ok_or_else(missing)?;
        if !self.policy.scope(principal, ARTIFACTS_READ_ANY).admits(record.owners()) {
            self.deny(principal, id).await;
            return Err(missing());
        }
        match record.sealed_at {
            Some(_) => Ok(record),
            None => Err(HostError::Invalid(format!("artifact {id} is still being written"))),
        }
    }

    async fn deny(&self, principal: &Principal, id: &str) {
        let reason =
            format!("artifact {id} is not `{}`'s and it lacks {ARTIFACTS_READ_ANY}", principal.user_id);
        let data = serde_json::json!({"action": "read", "reason": reason});
        let actor = Actor::user(principal.clone());
        let resource = format!("artifacts/{id}");
        let event =
            AccessEvent::new(AccessEventType::PermissionDenied, &actor, resource, data, self.clock.now());
        if let Err(error) = self.store.record_access(event).await {
            tracing::error!(%error, id, "could not record an artifact denial");
        }
    }

    /// The bytes of a sealed artifact, chunk by chunk, whoever owns it.
    pub async fn reader(&self, id: &str) -> Result<ChunkReader, HostError> {
        let missing = || HostError::NotFound(format!("artifact {id}"));
        let record = self.store.artifact(id).await.map_err(host_error)?.ok_or_else(missing)?;
        if record.sealed_at.is_none() {
            return Err(HostError::Invalid(format!("artifact {id} is still being written")));
        }
        Ok(self.reader_of(&record))
    }

    /// The bytes of the artifact `record` describes, already known to be
    /// sealed, chunk by chunk.
    pub fn reader_of(&self, record: &ArtifactRecord) -> ChunkReader {
        ChunkReader { store: self.store.clone(), id: record.id.clone(), next: 0, buffered: Vec::new(), at: 0 }
    }

    /// The whole of a sealed artifact, in memory: for small ones; stream
    /// large ones with [`reader`](Self::reader).
    pub async fn read_to_end(&self, id: &str) -> Result<Vec<u8>, HostError> {
        let mut reader = self.reader(id).await?;
        let mut bytes = Vec::new();
        loop {
            let chunk = reader.read(CHUNK_BYTES).await?;
            if chunk.is_empty() {
                return Ok(bytes);
            }
            bytes.extend(chunk);
        }
    }
}

/// Writes one artifact in chunks.
struct ChunkWriter {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    id: String,
    buffer: Vec<u8>,
    next: u32,
    size: u64,
    digest: Sha256,
    finished: bool,
    /// Sealed, or abandoned and removed: nothing is left to clean up.
    settled: bool,
}

impl ChunkWriter {
    async fn flush(&mut self) -> Result<(), HostError> {
        // The next buffer grows as it is written: a writer that is opened
        // and never written holds no chunk of host memory.
        let chunk = std::mem::take(&mut self.buffer);
        self.store.put_artifact_chunk(&self.id, self.next, chunk).await.map_err(host_error)?;
        self.next += 1;
        Ok(())
    }
}

#[async_trait]
impl ArtifactSink for ChunkWriter {
    async fn write(&mut self, mut bytes: &[u8]) -> Result<(), HostError> {
        if self.finished {
            return Err(HostError::Invalid("the artifact is already finished".into()));
        }
        self.digest.update(bytes);
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = (CHUNK_BYTES - self.buffer.len()).min(bytes.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buffer.len() == CHUNK_BYTES {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<ArtifactInfo, HostError> {
        if self.finished {
            return Err(HostError::Invalid("the artifact is already finished".into()));
        }
        self.finished = true;
        if !self.buffer.is_empty() {
            self.flush().await?;
        }
        self.buffer = Vec::new();
        let sha256 = hex(&self.digest.clone().finalize());
        let record = self
            .store
            .seal_artifact(&self.id, self.size, &sha256, self.clock.now())
            .await
            .map_err(host_error)?;
        self.settled = true;
        Ok(info(&record))
    }

    async fn abandon(&mut self) {
        if !self.settled {
            // Here rather than on drop, so it is done before the attempt is recorded.
            self.settled = true;
            if let Err(error) = self.store.discard_artifact(&self.id).await {
                tracing::warn!(%error, id = self.id, "could not remove an abandoned artifact");
            }
        }
    }
}

/// A writer dropped unsealed without being abandoned (its sealing failed)
/// leaves nothing behind either: its artifact and chunks are removed.
impl Drop for ChunkWriter {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (store, id) = (self.store.clone(), std::mem::take(&mut self.id));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = store.discard_artifact(&id).await {
                    tracing::warn!(%error, id, "could not remove an abandoned artifact");
                }
            });
        }
    }
}

/// Reads a sealed artifact chunk by chunk.
pub struct ChunkReader {
    store: Arc<dyn Store>,
    id: String,
    next: u32,
    buffered: Vec<u8>,
    at: usize,
}

#[async_trait]
impl ArtifactSource for ChunkReader {
    async fn read(&mut self, max: usize) -> Result<Vec<u8>, HostError> {
        if self.at == self.buffered.len() {
            match self.store.artifact_chunk(&self.id, self.next).await.map_err(host_error)? {
                Some(chunk) => {
                    self.buffered = chunk;
                    self.at = 0;
                    self.next += 1;
                }
                None => return Ok(Vec::new()),
            }
        }
        let end = (self.at + max).min(self.buffered.len());
        let bytes = self.buffered[self.at..end].to_vec();
        self.at = end;
        Ok(bytes)
    }
}

#[async_trait]
impl ArtifactsService for StoredArtifacts {
    async fn create(
        &self,
        principal: &Principal,
        job_id: &str,
        name: &str,
        content_type: &str,
    ) -> Result<Box<dyn ArtifactSink>, HostError> {
        // Owned as its job: a job's enqueuer owns what it writes, too.
        let job = self.store.get(job_id).await.map_err(host_error)?;
        let enqueued_by = job.map_or_else(|| principal.user_id.clone(), |job| job.enqueued_by);
        let owners = [principal.user_id.as_str(), enqueued_by.as_str()];
        let record =
            ArtifactRecord::new(time_ordered_id("art"), name, content_type, job_id, owners, self.clock.now());
        let id = record.id.clone();
        self.store.create_artifact(record).await.map_err(host_error)?;
        Ok(Box::new(ChunkWriter {
            store: self.store.clone(),
            clock: self.clock.clone(),
            id,
            buffer: Vec::new(),
            next: 0,
            size: 0,
            digest: Sha256::new(),
            finished: false,
            settled: false,
        }))
    }

    async fn info(&self, principal: &Principal, id: &str) -> Result<ArtifactInfo, HostError> {
        self.sealed(principal, id).await.map(|record| info(&record))
    }

    async fn open(&self, principal: &Principal, id: &str) -> Result<Box<dyn ArtifactSource>, HostError> {
        Ok(Box::new(self.reader_of(&self.sealed(principal, id).await?)))
    }
}
