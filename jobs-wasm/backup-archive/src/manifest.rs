//! `manifest.json`: what a backup holds and how to check it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest's `format`.
pub const FORMAT: &str = "objectos-backup";

/// The version of the layout described in the crate docs. A reader refuses
/// a later version rather than guess at it.
pub const FORMAT_VERSION: u32 = 1;

/// The last entry of every backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The engine that wrote it, for example `objectos-jobs 0.1.0`.
    pub engine: String,
    /// When the backup started (RFC 3339, UTC).
    pub created_at: String,
    /// `gzip` or `none`.
    pub compression: String,
    /// Whose view of the data this is.
    pub scope: Scope,
    /// The objects backed up, in the order their chunks appear.
    pub objects: Vec<ObjectSummary>,
    /// Records in all.
    pub records: u64,
    /// Present when the backup was asked to include metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// A backup holds what its principal could see, and says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// The principal the backup ran as.
    pub user_id: String,
    /// Its profiles.
    pub profiles: Vec<String>,
    /// In words, for a person reading the manifest.
    pub note: String,
}

/// One object in the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSummary {
    /// The object's name.
    pub name: String,
    /// The directory of its chunks ([`crate::object_dir`]).
    pub path: String,
    /// Its records.
    pub records: u64,
    /// Its chunks, numbered from 1.
    pub chunks: u32,
    /// The bytes of its lines, newlines included.
    pub bytes: u64,
    /// The sha256 of those bytes, chunk after chunk.
    pub sha256: String,
    /// Every top-level field its records have, sorted.
    pub fields: Vec<String>,
}

/// What `includeMetadata` adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// The backup job.
    pub job_id: String,
    /// The schedule that fired it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// Each object's fields visible to the principal when the backup ran,
    /// which tells a field no record had from a field that was hidden.
    pub visible_fields: BTreeMap<String, Vec<String>>,
}

impl Manifest {
    /// The summary of the object named `name`.
    pub fn object(&self, name: &str) -> Option<&ObjectSummary> {
        self.objects.iter().find(|o| o.name == name)
    }
}
