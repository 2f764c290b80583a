//! The records jobs work on, as every backend stores them: objects of JSON
//! records with engine-set system fields, found by a [`Filter`] the caller
//! has already narrowed to what its principal may see, and changed only in
//! whole, checked units.
//!
//! The store does not know about principals' permissions: the records
//! engine (`crate::records`) turns them into filters (which records a
//! principal may read, change, or end up with) and hands them down, so a
//! backend can inject them into its own query. What the store guarantees is
//! atomicity: a write's scope and check are evaluated in the same
//! transaction that writes, and a refused write leaves nothing behind.
//!
//! Ordering is defined here once, for every backend: a sort key's values
//! order first by kind — missing or null, numbers, strings, objects, lists,
//! booleans (MongoDB's order) — then within the kind (numbers by value,
//! strings by bytes, false before true; objects and lists all tie), and
//! every sort ends with `id` ascending so the order is total.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::StoreError;
use crate::field_path::FieldPath;
use crate::permissions::Filter;
use crate::permissions::filter::compare_numbers;
use crate::principal::Principal;
use crate::sandbox::{ImportReport, OnConflict, SortKey, SortOrder, WriteReport};

/// The fields the engine sets on every record.
pub const SYSTEM_FIELDS: [&str; 4] = ["id", "owner", "created_at", "updated_at"];

/// One record: a JSON object holding its system fields.
pub type Record = Map<String, Value>;

/// Who does something to records: a principal, and the job it runs, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    /// The principal whose permissions apply.
    pub principal: Principal,
    /// The job making the call (none for API callers).
    pub job_id: Option<String>,
}

impl Actor {
    /// An actor outside any job.
    pub fn user(principal: Principal) -> Self {
        Self { principal, job_id: None }
    }
}

/// One sort key's value in a record, as the order defined above sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", content = "v", rename_all = "lowercase")]
pub enum SortValue {
    /// Missing or null.
    Null,
    /// A number.
    Number(serde_json::Number),
    /// A string.
    Text(String),
    /// An object (all tie).
    Object,
    /// A list (all tie).
    List,
    /// A boolean.
    Bool(bool),
}

impl SortValue {
    /// The value at `path` of `record`.
    pub fn of(record: &Value, path: &FieldPath) -> Self {
        match path.lookup(record) {
            None | Some(Value::Null) => SortValue::Null,
            Some(Value::Number(n)) => SortValue::Number(n.clone()),
            Some(Value::String(s)) => SortValue::Text(s.clone()),
            Some(Value::Object(_)) => SortValue::Object,
            Some(Value::Array(_)) => SortValue::List,
            Some(Value::Bool(b)) => SortValue::Bool(*b),
        }
    }

    /// The kind's place in the order.
    pub fn rank(&self) -> u8 {
        match self {
            SortValue::Null => 0,
            SortValue::Number(_) => 1,
            SortValue::Text(_) => 2,
            SortValue::Object => 3,
            SortValue::List => 4,
            SortValue::Bool(_) => 5,
        }
    }
}

impl Eq for SortValue {}

impl PartialOrd for SortValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortValue {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (SortValue::Number(a), SortValue::Number(b)) => compare_numbers(a, b),
            (SortValue::Text(a), SortValue::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (SortValue::Bool(a), SortValue::Bool(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// Where a page ends: the last record's sort values and id. The next page
/// starts strictly after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// One value per sort key.
    pub keys: Vec<SortValue>,
    /// The record's id (the final, ascending key).
    pub id: String,
}

impl Position {
    /// The position of `record` under `sort`.
    pub fn of(record: &Value, sort: &[SortKey]) -> Self {
        Self {
            keys: sort.iter().map(|key| SortValue::of(record, &key.field)).collect(),
            id: record.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
        }
    }

    /// How `self` orders against `other` under `sort`.
    pub fn cmp_under(&self, other: &Position, sort: &[SortKey]) -> Ordering {
        for ((a, b), key) in self.keys.iter().zip(&other.keys).zip(sort) {
            let ordering = a.cmp(b);
            let ordering = if key.order == SortOrder::Desc { ordering.reverse() } else { ordering };
            if ordering.is_ne() {
                return ordering;
            }
        }
        self.id.as_bytes().cmp(other.id.as_bytes())
    }
}

/// A page request, with the principal's scope already in `filter`.
#[derive(Debug, Clone)]
pub struct RecordFind {
    /// Which records.
    pub filter: Filter,
    /// The order; `id` ascending is always the last key.
    pub sort: Vec<SortKey>,
    /// Start after this position.
    pub after: Option<Position>,
    /// At most this many.
    pub limit: usize,
}

/// An update: every record matching `matching` is counted; those also
/// matching `allowed` get `patch` (a JSON merge patch), and each result
/// must match `check` or nothing at all is written.
#[derive(Debug, Clone)]
pub struct RecordUpdate {
    /// The records the caller asked for, among those it may see.
    pub matching: Filter,
    /// Those it may change.
    pub allowed: Filter,
    /// What every changed record must still match.
    pub check: Filter,
    /// The merge patch (system fields excluded).
    pub patch: Map<String, Value>,
}

/// A delete: records matching `matching` are counted, those also matching
/// `allowed` are deleted.
#[derive(Debug, Clone)]
pub struct RecordDelete {
    /// The records the caller asked for, among those it may see.
    pub matching: Filter,
    /// Those it may delete.
    pub allowed: Filter,
}

/// An import of records with their own system fields.
#[derive(Debug, Clone)]
pub struct RecordImport {
    /// Complete records, system fields included.
    pub records: Vec<Record>,
    /// What to do when an id exists.
    pub on_conflict: OnConflict,
    /// Which existing records the caller may replace; replacing another is
    /// refused whole.
    pub replaceable: Filter,
}

/// What an access event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessEventType {
    /// A principal was refused something (a record operation, a host call,
    /// a capability at enqueue).
    #[serde(rename = "permission.denied")]
    PermissionDenied,
    /// Records were inserted.
    #[serde(rename = "records.inserted")]
    RecordsInserted,
    /// Records were updated.
    #[serde(rename = "records.updated")]
    RecordsUpdated,
    /// Records were deleted.
    #[serde(rename = "records.deleted")]
    RecordsDeleted,
    /// Records were imported with their own system fields.
    #[serde(rename = "records.imported")]
    RecordsImported,
    /// A handler name was registered (first version).
    #[serde(rename = "handler.registered")]
    HandlerRegistered,
    /// A registered handler name was pointed at a new version.
    #[serde(rename = "handler.uploaded")]
    HandlerUploaded,
    /// A handler name was removed.
    #[serde(rename = "handler.deleted")]
    HandlerDeleted,
}

impl AccessEventType {
    /// The dotted name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessEventType::PermissionDenied => "permission.denied",
            AccessEventType::RecordsInserted => "records.inserted",
            AccessEventType::RecordsUpdated => "records.updated",
            AccessEventType::RecordsDeleted => "records.deleted",
            AccessEventType::RecordsImported => "records.imported",
            AccessEventType::HandlerRegistered => "handler.registered",
            AccessEventType::HandlerUploaded => "handler.uploaded",
            AccessEventType::HandlerDeleted => "handler.deleted",
        }
    }

    /// The type named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(Value::String(name.to_string())).ok()
    }
}

/// A denial or a change to records: the outbox entry the audit log reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessEvent {
    /// Gapless sequence number, assigned by the store.
    pub seq: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub event: AccessEventType,
    /// Who.
    pub actor: Principal,
    /// The job acting, if any.
    pub job_id: Option<String>,
    /// What it concerns, for example `objects/contacts`.
    pub resource: String,
    /// Details: counts for a change; the action and reason for a denial.
    pub data: Value,
}

impl AccessEvent {
    /// An event about `object` by `actor`, not yet numbered.
    pub fn new(
        event: AccessEventType,
        actor: &Actor,
        resource: String,
        data: Value,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            seq: 0,
            at,
            event,
            actor: actor.principal.clone(),
            job_id: actor.job_id.clone(),
            resource,
            data,
        }
    }
}

/// The resource name of an object.
pub fn object_resource(object: &str) -> String {
    format!("objects/{object}")
}

/// Records, stored with the queue in every backend. Every write is one
/// transaction with its [`AccessEvent`].
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// One page of `object`'s records matching the request, in order.
    async fn find_records(&self, object: &str, find: RecordFind) -> Result<Vec<Record>, StoreError>;

    /// How many of `object`'s records match `filter`.
    async fn count_records(&self, object: &str, filter: &Filter) -> Result<u64, StoreError>;

    /// Stores new records (system fields set); an id taken refuses all.
    async fn insert_records(
        &self,
        object: &str,
        records: Vec<Record>,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Applies an update (see [`RecordUpdate`]); `updated_at` becomes `at`.
    /// A changed record that would not match `check` refuses all with
    /// [`StoreError::RecordCheck`].
    async fn update_records(
        &self,
        object: &str,
        update: RecordUpdate,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<WriteReport, StoreError>;

    /// Applies a delete (see [`RecordDelete`]).
    async fn delete_records(
        &self,
        object: &str,
        delete: RecordDelete,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<WriteReport, StoreError>;

    /// Imports records as given (see [`RecordImport`]).
    async fn import_records(
        &self,
        object: &str,
        import: RecordImport,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<ImportReport, StoreError>;

    /// Every object that has held records, with every top-level field its
    /// records have had (system fields included).
    async fn record_fields(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError>;

    /// Records a denial (or any access event that changes nothing).
    async fn record_access(&self, event: AccessEvent) -> Result<(), StoreError>;

    /// Access events with a sequence number above `after`, oldest first.
    async fn access_events(&self, after: u64, limit: usize) -> Result<Vec<AccessEvent>, StoreError>;
}

/// Applies a JSON merge patch (RFC 7386): `null` removes, objects merge.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let fields = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            fields.remove(key);
        } else {
            merge_patch(fields.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The record after an update: patched, `updated_at` moved to `at`.
pub(crate) fn patched(record: &Record, patch: &Map<String, Value>, at: &str) -> Record {
    let mut value = Value::Object(record.clone());
    merge_patch(&mut value, &Value::Object(patch.clone()));
    let Value::Object(mut record) = value else { unreachable!("a patched object stays an object") };
    record.insert("updated_at".into(), Value::String(at.to_string()));
    record
}

/// How the engine writes a timestamp: RFC 3339 in UTC with milliseconds,
/// so that text order is time order.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The event of a change, or none when nothing changed.
pub(crate) fn change_event(
    event: AccessEventType,
    object: &str,
    counts: &impl Serialize,
    changed: u64,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Option<AccessEvent> {
    (changed > 0).then(|| {
        let counts = serde_json::to_value(counts).expect("counts serialize");
        AccessEvent::new(event, actor, object_resource(object), counts, at)
    })
}
