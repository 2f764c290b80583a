//! Artifacts in the database: a record per artifact (name, content type,
//! producing job, owner, size, sha256) and its bytes in numbered chunks,
//! written while the job streams them and sealed once complete. Only
//! sealed artifacts are listed; a sealed artifact never changes.

use std::borrow::Borrow;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// An artifact as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRecord {
    /// Identifier, `art_…`.
    pub id: String,
    /// Name, for example `report.csv`.
    pub name: String,
    /// Media type.
    pub content_type: String,
    /// The job that produced it.
    pub job_id: String,
    /// The user the job ran as.
    pub owner: String,
    /// The user who enqueued the job; with `owner`, the artifact's owners
    /// (see [`crate::ownership`]).
    #[serde(default)]
    pub enqueued_by: String,
    /// Length in bytes (0 until sealed).
    pub size: u64,
    /// Lowercase hex sha256 (empty until sealed).
    pub sha256: String,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When it was sealed; `None` while being written.
    pub sealed_at: Option<DateTime<Utc>>,
}

impl ArtifactRecord {
    /// A new, unsealed artifact of the job `job_id` owned by `owners` (the
    /// user it runs as, and the one who enqueued it).
    pub fn new(
        id: String,
        name: &str,
        content_type: &str,
        job_id: &str,
        owners: [&str; 2],
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            name: name.into(),
            content_type: content_type.into(),
            job_id: job_id.into(),
            owner: owners[0].into(),
            enqueued_by: owners[1].into(),
            size: 0,
            sha256: String::new(),
            created_at: at,
            sealed_at: None,
        }
    }
}

impl ArtifactRecord {
    /// The users who own the artifact.
    pub fn owners(&self) -> [&str; 2] {
        [&self.owner, &self.enqueued_by]
    }
}

/// `record` (owned or borrowed) if it exists and may still be written;
/// otherwise why not.
pub(crate) fn writable<R: Borrow<ArtifactRecord>>(id: &str, record: Option<R>) -> Result<R, StoreError> {
    match record {
        None => Err(StoreError::ArtifactNotFound(id.into())),
        Some(record) if record.borrow().sealed_at.is_some() => Err(StoreError::ArtifactSealed(id.into())),
        Some(record) => Ok(record),
    }
}

/// The artifacts' half of the storage trait.
#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    /// Stores a new, unsealed artifact.
    async fn create_artifact(&self, artifact: ArtifactRecord) -> Result<(), StoreError>;

    /// Stores chunk `index` (from 0) of an unsealed artifact; refused once
    /// it is sealed.
    async fn put_artifact_chunk(&self, id: &str, index: u32, bytes: Vec<u8>) -> Result<(), StoreError>;

    /// Seals an artifact whose chunks total `size` bytes with digest
    /// `sha256`; refused if the stored chunks do not add up to `size`.
    async fn seal_artifact(
        &self,
        id: &str,
        size: u64,
        sha256: &str,
        at: DateTime<Utc>,
    ) -> Result<ArtifactRecord, StoreError>;

    /// Removes an unsealed artifact and its chunks (a writer abandoned
    /// before it finished); a sealed one is refused and stays.
    async fn discard_artifact(&self, id: &str) -> Result<(), StoreError>;

    /// Up to `limit` unsealed artifacts with an id after `after`, by id:
    /// those being written, and those a node that died left behind.
    async fn unsealed_artifacts(&self, after: &str, limit: usize) -> Result<Vec<ArtifactRecord>, StoreError>;

    /// An artifact, sealed or not.
    async fn artifact(&self, id: &str) -> Result<Option<ArtifactRecord>, StoreError>;

    /// Sealed artifacts with an id after `after`, by id; only those `owner`
    /// owns, if given.
    async fn artifacts(
        &self,
        owner: Option<&str>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<ArtifactRecord>, StoreError>;

    /// Chunk `index` of an artifact, if stored.
    async fn artifact_chunk(&self, id: &str, index: u32) -> Result<Option<Vec<u8>>, StoreError>;
}
