//! In-memory records and artifacts services, for tests and local runs.
//!
//! They store everything in process memory and apply no permissions beyond
//! the rules every store shares (system fields are the engine's). Filters
//! are top-level field equality only (`{"status": "open"}`); an operator is
//! refused with an error rather than guessed at.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::services::{
    ArtifactInfo, ArtifactSink, ArtifactSource, ArtifactsService, HostError, ImportReport, ObjectInfo,
    OnConflict, Page, Query, RecordsService, Services, SortOrder, WriteReport,
};
use crate::digest::sha256_hex;
use crate::principal::Principal;

/// The fields the engine sets on every record.
pub const SYSTEM_FIELDS: [&str; 4] = ["id", "owner", "created_at", "updated_at"];
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// One record: a JSON object.
pub type Record = Map<String, Value>;
/// Object name → records in insertion order.
pub type Objects = BTreeMap<String, Vec<Record>>;

/// Records held in memory, object name → records in insertion order.
#[derive(Clone, Default)]
pub struct MemoryRecords {
    objects: Arc<Mutex<Objects>>,
    next_id: Arc<Mutex<u64>>,
}

impl MemoryRecords {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `objects` (object name → records, each with an `id`).
    pub fn from_objects(objects: Objects) -> Self {
        Self { objects: Arc::new(Mutex::new(objects)), next_id: Arc::default() }
    }

    /// Every object and its records, as stored.
    pub fn snapshot(&self) -> Objects {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_id(&self) -> String {
        let mut next = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
        *next += 1;
        format!("rec_{:06}", *next)
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn equality_filter(filter: &Value) -> Result<&Map<String, Value>, HostError> {
    let conditions =
        filter.as_object().ok_or_else(|| HostError::Invalid("a filter must be a JSON object".into()))?;
    let uses_operator = |v: &Value| v.as_object().is_some_and(|o| o.keys().any(|k| k.starts_with('$')));
    if let Some((key, _)) = conditions.iter().find(|(k, v)| k.starts_with('$') || uses_operator(v)) {
        return Err(HostError::Invalid(format!(
            "filter on `{key}`: operators are not supported by the in-memory records service"
        )));
    }
    Ok(conditions)
}

fn matches(record: &Map<String, Value>, conditions: &Map<String, Value>) -> bool {
    conditions.iter().all(|(field, wanted)| record.get(field) == Some(wanted))
}

fn as_object(value: Value) -> Result<Map<String, Value>, HostError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(HostError::Invalid(format!("a record must be a JSON object, got {other}"))),
    }
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

#[async_trait]
impl RecordsService for MemoryRecords {
    async fn objects(&self, _: &Principal) -> Result<Vec<ObjectInfo>, HostError> {
        Ok(self
            .lock()
            .iter()
            .map(|(name, records)| {
                let mut fields: Vec<String> = SYSTEM_FIELDS.iter().map(|f| f.to_string()).collect();
                for key in records.iter().flat_map(|r| r.keys()) {
                    if !fields.contains(key) {
                        fields.push(key.clone());
                    }
                }
                ObjectInfo { name: name.clone(), fields }
            })
            .collect())
    }

    async fn find(&self, _: &Principal, object: &str, query: Query) -> Result<Page, HostError> {
        let filter = query.filter.unwrap_or_else(|| Value::Object(Map::new()));
        let conditions = equality_filter(&filter)?;
        let limit = query.limit.map_or(DEFAULT_PAGE, |l| l as usize).min(MAX_PAGE);
        let offset: usize = match &query.cursor {
            None => 0,
            Some(cursor) => cursor
                .parse()
                .map_err(|_| HostError::Invalid(format!("cursor `{cursor}` was not issued by this store")))?,
        };
        let objects = self.lock();
        let mut found: Vec<&Map<String, Value>> = objects
            .get(object)
            .map(|records| records.iter().filter(|r| matches(r, conditions)).collect())
            .unwrap_or_default();
        for key in query.sort.iter().rev() {
            found.sort_by(|a, b| {
                let ordering = compare(
                    a.get(&key.field).unwrap_or(&Value::Null),
                    b.get(&key.field).unwrap_or(&Value::Null),
                );
                if key.order == SortOrder::Desc { ordering.reverse() } else { ordering }
            });
        }
        let end = (offset + limit).min(found.len());
        let records = found
            .get(offset..end)
            .unwrap_or_default()
            .iter()
            .map(|record| match &query.fields {
                None => Value::Object((*record).clone()),
                Some(fields) => Value::Object(
                    record
                        .iter()
                        .filter(|(k, _)| fields.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
            })
            .collect();
        let next_cursor = (end < found.len()).then(|| end.to_string());
        Ok(Page { records, next_cursor })
    }

    async fn count(&self, _: &Principal, object: &str, filter: Value) -> Result<u64, HostError> {
        let conditions = equality_filter(&filter)?;
        Ok(self
            .lock()
            .get(object)
            .map_or(0, |records| records.iter().filter(|r| matches(r, conditions)).count()) as u64)
    }

    async fn insert(
        &self,
        principal: &Principal,
        object: &str,
        records: Vec<Value>,
    ) -> Result<Vec<String>, HostError> {
        let mut prepared = Vec::with_capacity(records.len());
        for record in records {
            let mut record = as_object(record)?;
            if let Some(field) = SYSTEM_FIELDS.iter().find(|f| record.contains_key(**f)) {
                return Err(HostError::Invalid(format!("`{field}` is a system field set by the engine")));
            }
            let now = now();
            record.insert("id".into(), Value::String(self.new_id()));
            record.insert("owner".into(), Value::String(principal.user_id.clone()));
            record.insert("created_at".into(), Value::String(now.clone()));
            record.insert("updated_at".into(), Value::String(now));
            prepared.push(record);
        }
        let ids = prepared.iter().map(|r| r["id"].as_str().unwrap_or_default().to_string()).collect();
        self.lock().entry(object.to_string()).or_default().extend(prepared);
        Ok(ids)
    }

    async fn update(
        &self,
        _: &Principal,
        object: &str,
        filter: Value,
        patch: Value,
    ) -> Result<WriteReport, HostError> {
        let conditions = equality_filter(&filter)?;
        let patch = as_object(patch)?;
        if let Some(field) = SYSTEM_FIELDS.iter().find(|f| patch.contains_key(**f)) {
            return Err(HostError::Invalid(format!("`{field}` is a system field set by the engine")));
        }
        let mut report = WriteReport::default();
        let now = now();
        for record in self.lock().get_mut(object).into_iter().flatten().filter(|r| matches(r, conditions)) {
            report.matched += 1;
            report.changed += 1;
            for (field, value) in &patch {
                if value.is_null() {
                    record.remove(field);
                } else {
                    record.insert(field.clone(), value.clone());
                }
            }
            record.insert("updated_at".into(), Value::String(now.clone()));
        }
        Ok(report)
    }

    async fn delete(&self, _: &Principal, object: &str, filter: Value) -> Result<WriteReport, HostError> {
        let conditions = equality_filter(&filter)?;
        let mut objects = self.lock();
        let Some(records) = objects.get_mut(object) else { return Ok(WriteReport::default()) };
        let before = records.len();
        records.retain(|r| !matches(r, conditions));
        let removed = (before - records.len()) as u64;
        Ok(WriteReport { matched: removed, changed: removed, skipped: 0 })
    }

    async fn import(
        &self,
        principal: &Principal,
        object: &str,
        records: Vec<Value>,
        on_conflict: OnConflict,
    ) -> Result<ImportReport, HostError> {
        let mut incoming = Vec::with_capacity(records.len());
        for record in records {
            let mut record = as_object(record)?;
            if !record.get("id").is_some_and(Value::is_string) {
                return Err(HostError::Invalid("every imported record needs a string `id`".into()));
            }
            record.entry("owner").or_insert_with(|| Value::String(principal.user_id.clone()));
            let now = now();
            record.entry("created_at").or_insert_with(|| Value::String(now.clone()));
            record.entry("updated_at").or_insert_with(|| Value::String(now));
            incoming.push(record);
        }
        let mut objects = self.lock();
        let existing = objects.entry(object.to_string()).or_default();
        let position =
            |records: &Vec<Record>, id: &Value| records.iter().position(|r| r.get("id") == Some(id));
        if on_conflict == OnConflict::Fail
            && let Some(clash) = incoming.iter().find(|r| position(existing, &r["id"]).is_some())
        {
            return Err(HostError::Invalid(format!("record {} already exists", clash["id"])));
        }
        let mut report = ImportReport::default();
        for record in incoming {
            match position(existing, &record["id"]) {
                None => {
                    existing.push(record);
                    report.inserted += 1;
                }
                Some(at) if on_conflict == OnConflict::Replace => {
                    existing[at] = record;
                    report.replaced += 1;
                }
                Some(_) => report.skipped += 1,
            }
        }
        Ok(report)
    }
}

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
    /// Fresh, empty in-memory services.
    pub fn in_memory() -> Self {
        Self { records: Arc::new(MemoryRecords::new()), artifacts: Arc::new(MemoryArtifacts::new()) }
    }
}
