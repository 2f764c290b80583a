//! Services for running a handler on a developer's machine (`objectos
//! run`): records loaded from a JSON file, artifacts kept in a folder.
//!
//! Loading and saving the records file apply no permissions (it is the
//! author's own data); the run itself reads and writes them through the
//! records engine, under `--permissions` if given.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::digest::{hex, sha256_hex};
use crate::permissions::Filter;
use crate::principal::Principal;
use crate::sandbox::{ArtifactInfo, ArtifactSink, ArtifactSource, ArtifactsService, HostError, OnConflict};
use crate::store::records::timestamp;
use crate::store::{Actor, Position, Record, RecordFind, RecordImport, RecordStore, StoreError};

/// A records file could not be used.
#[derive(Debug, Error)]
pub enum RecordsFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a JSON object of object name → list of records.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The actor a records file is loaded and saved as.
fn loader() -> Actor {
    Actor::user(Principal::new("objectos:records-file", &[]))
}

/// Loads a records file (a JSON object mapping object names to lists of
/// records) into `store`, as it is: no permission applies to the author's
/// own data. Records without system fields get them (`id` numbered per
/// object, `owner` the given user, timestamps now).
pub async fn load_records(path: &Path, owner: &str, store: &dyn RecordStore) -> Result<(), RecordsFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| RecordsFileError::Io { path: path.into(), source })?;
    let format = |message: String| RecordsFileError::Format { path: path.into(), message };
    let parsed: Value = serde_json::from_str(&text).map_err(|e| format(format!("not valid JSON: {e}")))?;
    let Value::Object(objects) = parsed else {
        return Err(format("expected a JSON object of object name → list of records".into()));
    };
    let now = timestamp(chrono::Utc::now());
    for (object, records) in objects {
        let Value::Array(records) = records else {
            return Err(format(format!("`{object}` must be a list of records")));
        };
        let mut rows = Vec::with_capacity(records.len());
        for (index, record) in records.into_iter().enumerate() {
            let Value::Object(mut record) = record else {
                return Err(format(format!("`{object}`[{index}] is not a JSON object")));
            };
            let defaults = [
                ("id", Value::String(format!("{object}-{}", index + 1))),
                ("owner", Value::String(owner.to_string())),
                ("created_at", Value::String(now.clone())),
                ("updated_at", Value::String(now.clone())),
            ];
            for (field, default) in defaults {
                if !record.get(field).is_some_and(Value::is_string) {
                    record.insert(field.into(), default);
                }
            }
            rows.push(record);
        }
        let import =
            RecordImport { records: rows, on_conflict: OnConflict::Fail, replaceable: Filter::nothing() };
        store
            .import_records(&object, import, &loader(), chrono::Utc::now())
            .await
            .map_err(|e| format(e.to_string()))?;
    }
    Ok(())
}

/// Every record in `store`, by object.
async fn dump(store: &dyn RecordStore) -> Result<BTreeMap<String, Vec<Record>>, StoreError> {
    let mut objects = BTreeMap::new();
    for object in store.record_fields().await?.into_keys() {
        let mut records: Vec<Record> = Vec::new();
        loop {
            let after = records.last().map(|r| Position::of(&Value::Object(r.clone()), &[]));
            let find = RecordFind { filter: Filter::everything(), sort: Vec::new(), after, limit: 1000 };
            let page = store.find_records(&object, find).await?;
            let done = page.len() < 1000;
            records.extend(page);
            if done {
                break;
            }
        }
        objects.insert(object, records);
    }
    Ok(objects)
}

/// Writes the records in `store` back to `path`, replacing it atomically.
pub async fn save_records(path: &Path, store: &dyn RecordStore) -> Result<(), RecordsFileError> {
    let io = |source| RecordsFileError::Io { path: path.into(), source };
    let objects = dump(store)
        .await
        .map_err(|e| RecordsFileError::Format { path: path.into(), message: e.to_string() })?;
    let text = serde_json::to_string_pretty(&objects).expect("records are JSON");
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text + "\n").map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)
}

/// Artifacts stored as files in a folder; an artifact's id is its file name.
#[derive(Debug, Clone)]
pub struct DirArtifacts {
    dir: PathBuf,
}

impl DirArtifacts {
    /// Artifacts in `dir`, which is created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path_of(&self, id: &str) -> Result<PathBuf, HostError> {
        let plain = !id.is_empty() && !id.starts_with('.') && !id.contains(['/', '\\']);
        if !plain {
            return Err(HostError::Invalid(format!("`{id}` is not an artifact id")));
        }
        Ok(self.dir.join(id))
    }
}

fn unavailable(error: std::io::Error) -> HostError {
    HostError::Unavailable(error.to_string())
}

fn content_type_of(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("jsonl") => "application/x-ndjson",
        Some("html") => "text/html",
        Some("md") => "text/markdown",
        Some("txt") => "text/plain",
        Some("gz") => "application/gzip",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// Describes the artifact file at `path`.
fn describe(path: &Path) -> Result<ArtifactInfo, HostError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => HostError::NotFound(format!("artifact {}", path.display())),
        _ => unavailable(e),
    })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(ArtifactInfo {
        id: name.clone(),
        content_type: content_type_of(&name).to_string(),
        name,
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    })
}

struct FileSink {
    partial: PathBuf,
    target: PathBuf,
    file: Option<std::fs::File>,
    hasher: Sha256,
    size: u64,
    name: String,
    content_type: String,
}

#[async_trait]
impl ArtifactSink for FileSink {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), HostError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| HostError::Invalid("the artifact is already finished".into()))?;
        file.write_all(bytes).map_err(unavailable)?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    async fn finish(&mut self) -> Result<ArtifactInfo, HostError> {
        let file =
            self.file.take().ok_or_else(|| HostError::Invalid("the artifact is already finished".into()))?;
        file.sync_all().map_err(unavailable)?;
        std::fs::rename(&self.partial, &self.target).map_err(unavailable)?;
        Ok(ArtifactInfo {
            id: self.name.clone(),
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
            sha256: hex(&self.hasher.clone().finalize()),
        })
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        // An unfinished artifact is discarded, as the contract says.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

struct FileSource(std::fs::File);

#[async_trait]
impl ArtifactSource for FileSource {
    async fn read(&mut self, max: usize) -> Result<Vec<u8>, HostError> {
        use std::io::Read;
        let mut chunk = vec![0; max];
        let n = self.0.read(&mut chunk).map_err(unavailable)?;
        chunk.truncate(n);
        Ok(chunk)
    }
}

#[async_trait]
impl ArtifactsService for DirArtifacts {
    async fn create(
        &self,
        _: &Principal,
        _job_id: &str,
        name: &str,
        content_type: &str,
    ) -> Result<Box<dyn ArtifactSink>, HostError> {
        let target = self.path_of(name)?;
        let partial = self.dir.join(format!(".{name}.partial"));
        let file = std::fs::File::create(&partial).map_err(unavailable)?;
        Ok(Box::new(FileSink {
            partial,
            target,
            file: Some(file),
            hasher: Sha256::new(),
            size: 0,
            name: name.to_string(),
            content_type: content_type.to_string(),
        }))
    }

    async fn info(&self, _: &Principal, id: &str) -> Result<ArtifactInfo, HostError> {
        describe(&self.path_of(id)?)
    }

    async fn open(&self, _: &Principal, id: &str) -> Result<Box<dyn ArtifactSource>, HostError> {
        let path = self.path_of(id)?;
        let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => HostError::NotFound(format!("artifact {id}")),
            _ => unavailable(e),
        })?;
        Ok(Box::new(FileSource(file)))
    }
}
