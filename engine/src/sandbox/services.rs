//! The host services behind the capability interfaces: records and
//! artifacts. The sandbox calls these with the job's principal; the engine
//! provides the real implementations (the records store under the permission
//! engine, artifacts in the database), tests and `objectos run` provide
//! in-memory ones.
//!
//! Implementations decide what the principal may do and report a denial as
//! [`HostError::Denied`]; the sandbox never makes that decision itself.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::field_path::FieldPath;
use crate::principal::Principal;
use crate::store::Actor;

/// Why a host call failed, as the guest sees it (`host-error` in the WIT).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HostError {
    /// The principal may not do this.
    #[error("denied: {0}")]
    Denied(String),
    /// The request is malformed.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A size or count limit was reached.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The service could not answer now.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// An object the principal can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// The object's name.
    pub name: String,
    /// Fields visible to the principal.
    pub fields: Vec<String>,
}

/// A parsed `find` query; see the `records` interface for its JSON form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// A FilterCondition; none matches every record.
    #[serde(default)]
    pub filter: Option<Value>,
    /// A projection; none returns every visible field.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Sort keys, first one most significant.
    #[serde(default)]
    pub sort: Vec<SortKey>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<u32>,
    /// An opaque cursor from a previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SortKey {
    /// The field to sort by.
    pub field: FieldPath,
    /// `asc` (default) or `desc`.
    #[serde(default)]
    pub order: SortOrder,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Smallest first.
    #[default]
    Asc,
    /// Largest first.
    Desc,
}

/// One page of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// The records, each a JSON object.
    pub records: Vec<Value>,
    /// The cursor for the next page, none at the end.
    pub next_cursor: Option<String>,
}

/// What an update or delete did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReport {
    /// Records matched among those visible.
    pub matched: u64,
    /// Records changed.
    pub changed: u64,
    /// Records matched but not permitted to change.
    pub skipped: u64,
}

impl WriteReport {
    /// `matched` records, of which `changed` were changed and the rest skipped.
    pub fn new(matched: u64, changed: u64) -> Self {
        Self { matched, changed, skipped: matched - changed }
    }
}

/// What to do with an imported record whose id exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Keep the existing record.
    Skip,
    /// Replace it.
    Replace,
    /// Fail the whole import.
    Fail,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// New records.
    pub inserted: u64,
    /// Replaced records.
    pub replaced: u64,
    /// Kept records.
    pub skipped: u64,
}

/// The records a job works on, always accessed as an actor (a principal,
/// and the job if the call comes from one).
#[async_trait]
pub trait RecordsService: Send + Sync {
    /// Objects the principal can read, with their visible fields.
    async fn objects(&self, actor: &Actor) -> Result<Vec<ObjectInfo>, HostError>;
    /// One page of records of `object` matching `query`.
    async fn find(&self, actor: &Actor, object: &str, query: Query) -> Result<Page, HostError>;
    /// How many records of `object` match `filter`.
    async fn count(&self, actor: &Actor, object: &str, filter: Value) -> Result<u64, HostError>;
    /// Inserts records, returning their ids.
    async fn insert(
        &self,
        actor: &Actor,
        object: &str,
        records: Vec<Value>,
    ) -> Result<Vec<String>, HostError>;
    /// Patches the records matching `filter`.
    async fn update(
        &self,
        actor: &Actor,
        object: &str,
        filter: Value,
        patch: Value,
    ) -> Result<WriteReport, HostError>;
    /// Deletes the records matching `filter`.
    async fn delete(&self, actor: &Actor, object: &str, filter: Value) -> Result<WriteReport, HostError>;
    /// Inserts records with caller-given system fields.
    async fn import(
        &self,
        actor: &Actor,
        object: &str,
        records: Vec<Value>,
        on_conflict: OnConflict,
    ) -> Result<ImportReport, HostError>;
}

/// A stored artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// Identifier.
    pub id: String,
    /// Name, for example `report.csv`.
    pub name: String,
    /// Media type.
    pub content_type: String,
    /// Length in bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
}

/// Where the bytes of a new artifact go.
#[async_trait]
pub trait ArtifactSink: Send + Sync {
    /// Appends bytes.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), HostError>;
    /// Seals the artifact.
    async fn finish(&mut self) -> Result<ArtifactInfo, HostError>;
    /// Called when the guest drops the writer, or the job ends, before the
    /// artifact was sealed: removes whatever was stored of it.
    async fn abandon(&mut self) {}
}

/// Where the bytes of an existing artifact come from.
#[async_trait]
pub trait ArtifactSource: Send + Sync {
    /// Up to `max` next bytes; empty at the end.
    async fn read(&mut self, max: usize) -> Result<Vec<u8>, HostError>;
}

/// Artifacts jobs write and read, always accessed as a principal.
#[async_trait]
pub trait ArtifactsService: Send + Sync {
    /// Starts a new artifact produced by `job_id`.
    async fn create(
        &self,
        principal: &Principal,
        job_id: &str,
        name: &str,
        content_type: &str,
    ) -> Result<Box<dyn ArtifactSink>, HostError>;
    /// Describes an artifact.
    async fn info(&self, principal: &Principal, id: &str) -> Result<ArtifactInfo, HostError>;
    /// Opens an artifact for reading.
    async fn open(&self, principal: &Principal, id: &str) -> Result<Box<dyn ArtifactSource>, HostError>;
}

/// The services one run uses.
#[derive(Clone)]
pub struct Services {
    /// Records.
    pub records: Arc<dyn RecordsService>,
    /// Artifacts.
    pub artifacts: Arc<dyn ArtifactsService>,
}
