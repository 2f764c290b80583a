//! Records under permission: every access to the records store, from a
//! wasm handler or from the engine's API, goes through [`RecordsEngine`],
//! which asks the permission engine and hands the store only what the
//! principal may do.
//!
//! - Object permission first: no grant, no access (`denied`).
//! - The record filter of the action is injected into the store's query
//!   (never applied to results afterwards), so limits, cursors and counts
//!   see only permitted records.
//! - Hidden fields are stripped from results; a filter, sort or projection
//!   that names one fails naming it, so a query cannot probe a hidden value.
//! - A write touching a non-editable field is refused whole; an insert or
//!   update whose result would fall outside the principal's record filter
//!   for the action is refused whole (PostgreSQL's `WITH CHECK`); the store
//!   applies each write in one transaction.
//! - An import needs read access to every record of its object, so that
//!   no id it names can collide with a record it cannot see (which would
//!   confirm that record exists).
//! - Every denial is written as a `permission.denied` access event, and
//!   every change as a `records.*` event with its counts.

mod cursor;
pub(crate) mod fields;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::clock::Clock;
use crate::field_path::FieldPath;
use crate::permissions::{Action, Filter, Permissions, PermissionsDir};
use crate::sandbox::{
    HostError, ImportReport, ObjectInfo, OnConflict, Page, Query, RecordsService, WriteReport,
};
use crate::store::records::{SYSTEM_FIELDS, object_resource, timestamp};
use crate::store::{
    AccessEvent, AccessEventType, Actor, Position, Record, RecordDelete, RecordFind, RecordImport,
    RecordStore, RecordUpdate, StoreError,
};

/// The page size when a query names none.
pub const DEFAULT_PAGE: u32 = 100;
/// The largest page a query may ask for.
pub const MAX_PAGE: u32 = 1000;
/// The most records one insert or import may carry.
pub const MAX_WRITE: usize = 10_000;

/// The records store under the permission engine.
pub struct RecordsEngine {
    store: Arc<dyn RecordStore>,
    permissions: Arc<PermissionsDir>,
    clock: Arc<dyn Clock>,
}

fn new_record_id() -> String {
    format!("rec_{:011x}{:013x}", chrono::Utc::now().timestamp_millis(), fastrand::u64(..) >> 12)
}

fn unavailable(error: StoreError) -> HostError {
    HostError::Unavailable(error.to_string())
}

fn parse_filter(json: &Value) -> Result<Filter, HostError> {
    Filter::parse(json).map_err(|e| HostError::Invalid(e.to_string()))
}

fn object_of(value: Value, what: &str) -> Result<Map<String, Value>, HostError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(HostError::Invalid(format!("{what} must be a JSON object, not {other}"))),
    }
}

/// An RFC 3339 timestamp in the engine's form, or why not.
fn normalized_time(value: &Value, what: &str) -> Result<String, HostError> {
    value
        .as_str()
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .map(|at| timestamp(at.to_utc()))
        .ok_or_else(|| HostError::Invalid(format!("{what} must be an RFC 3339 timestamp, not {value}")))
}

/// What a new record (inserted or imported) must satisfy.
struct NewRecordRules<'a> {
    /// The action named in a denial: `create` or `import`.
    action: &'a str,
    /// Fields the principal may not write.
    locked: &'a [FieldPath],
    /// The create record filter.
    creatable: &'a Filter,
}

/// Takes the system fields out of an imported record: `id` required,
/// `owner` defaulting to the importer, timestamps to `now` (normalized to UTC).
fn imported_system_fields(
    fields: &mut Map<String, Value>,
    what: &str,
    importer: &str,
    now: &str,
) -> Result<Record, HostError> {
    let mut system = Record::new();
    match fields.remove("id") {
        Some(Value::String(id)) => match fields::check_name(&id) {
            Ok(_) => {
                system.insert("id".into(), Value::String(id));
            }
            Err(error) => return Err(HostError::Invalid(format!("{what}: `id` {error}"))),
        },
        other => {
            return Err(HostError::Invalid(format!(
                "{what}: `id` must be a string, not {}",
                other.map_or("missing".to_string(), |v| v.to_string())
            )));
        }
    }
    let owner = match fields.remove("owner") {
        None => importer.to_string(),
        Some(Value::String(owner)) => owner,
        Some(other) => {
            return Err(HostError::Invalid(format!("{what}: `owner` must be a string, not {other}")));
        }
    };
    system.insert("owner".into(), Value::String(owner));
    for field in ["created_at", "updated_at"] {
        let at = match fields.remove(field) {
            None => now.to_string(),
            Some(value) => normalized_time(&value, &format!("{what}.{field}"))?,
        };
        system.insert(field.into(), Value::String(at));
    }
    Ok(system)
}

impl RecordsEngine {
    /// Records in `store`, under the sets in `permissions`.
    pub fn new(store: Arc<dyn RecordStore>, permissions: Arc<PermissionsDir>, clock: Arc<dyn Clock>) -> Self {
        Self { store, permissions, clock }
    }

    /// Records in `store` with no restriction (local runs and tests).
    pub fn unrestricted(store: Arc<dyn RecordStore>, clock: Arc<dyn Clock>) -> Self {
        Self::new(store, Arc::new(PermissionsDir::fixed(Permissions::unrestricted())), clock)
    }

    /// Records the denial and returns the error the caller sees.
    async fn deny(&self, actor: &Actor, object: &str, action: &str, reason: String) -> HostError {
        let data = json!({"action": action, "reason": reason});
        let event = AccessEvent::new(
            AccessEventType::PermissionDenied,
            actor,
            object_resource(object),
            data,
            self.clock.now(),
        );
        if let Err(error) = self.store.record_access(event).await {
            tracing::error!(%error, object, action, "could not record a permission denial");
        }
        HostError::Denied(reason)
    }

    /// The record filter for `action`, or the denial.
    async fn scope(
        &self,
        permissions: &Permissions,
        actor: &Actor,
        object: &str,
        action: Action,
    ) -> Result<Filter, HostError> {
        let decision = permissions.object(&actor.principal, object, action);
        match permissions.record_filter(&actor.principal, object, action) {
            Some(filter) if decision.allowed => Ok(filter),
            _ => Err(self.deny(actor, object, action.as_str(), decision.reason).await),
        }
    }

    /// Refuses a query that names a hidden field.
    async fn check_visible<'a>(
        &self,
        actor: &Actor,
        object: &str,
        hidden: &[FieldPath],
        paths: impl IntoIterator<Item = &'a FieldPath>,
        role: &str,
    ) -> Result<(), HostError> {
        match fields::first_touching(paths, hidden) {
            None => Ok(()),
            Some(path) => {
                let reason =
                    format!("field `{path}` of `{object}` is not visible to `{}`", actor.principal.user_id);
                Err(self.deny(actor, object, role, reason).await)
            }
        }
    }

    /// Refuses a write that touches a field the principal may not write.
    async fn check_editable(
        &self,
        actor: &Actor,
        object: &str,
        locked: &[FieldPath],
        names: &[FieldPath],
        action: Action,
    ) -> Result<(), HostError> {
        match fields::first_touching(names, locked) {
            None => Ok(()),
            Some(name) => {
                let reason = format!(
                    "field `{name}` of `{object}` may not be written by `{}` ({}); nothing was stored",
                    actor.principal.user_id,
                    action.as_str()
                );
                Err(self.deny(actor, object, action.as_str(), reason).await)
            }
        }
    }

    /// The user's filter, parsed and checked against hidden fields.
    async fn visible_filter(
        &self,
        actor: &Actor,
        object: &str,
        hidden: &[FieldPath],
        filter: &Value,
    ) -> Result<Filter, HostError> {
        let filter = parse_filter(filter)?;
        self.check_visible(actor, object, hidden, &filter.fields(), "read").await?;
        Ok(filter)
    }

    /// The records a write's `filter` reaches: those it matches among the
    /// ones the principal can read (none, if it cannot read the object).
    async fn matching(
        &self,
        permissions: &Permissions,
        actor: &Actor,
        object: &str,
        filter: &Value,
    ) -> Result<Filter, HostError> {
        let hidden = permissions.hidden_fields(&actor.principal, object);
        let filter = self.visible_filter(actor, object, &hidden, filter).await?;
        let visible =
            permissions.record_filter(&actor.principal, object, Action::Read).unwrap_or_else(Filter::nothing);
        Ok(Filter::And(vec![filter, visible]))
    }

    /// Checks the names a write supplies (no system fields, valid names)
    /// and returns them parsed.
    fn check_names(record: &Map<String, Value>, what: &str) -> Result<Vec<FieldPath>, HostError> {
        record
            .keys()
            .map(|name| {
                if fields::is_system(name) {
                    return Err(HostError::Invalid(format!(
                        "{what}: `{name}` is set by the engine (records-import may supply system fields)"
                    )));
                }
                fields::check_nested_keys(&record[name])
                    .map_err(|e| HostError::Invalid(format!("{what}.{name}: {e}")))?;
                fields::check_name(name).map_err(|e| HostError::Invalid(format!("{what}: {e}")))
            })
            .collect()
    }

    /// The complete record — `system` fields, then the caller's `fields` —
    /// once every name is valid and writable and the record lies within
    /// the create record filter (`WITH CHECK`).
    async fn admit(
        &self,
        actor: &Actor,
        object: &str,
        what: &str,
        rules: &NewRecordRules<'_>,
        mut system: Record,
        fields: Map<String, Value>,
    ) -> Result<Record, HostError> {
        let names = Self::check_names(&fields, what)?;
        self.check_editable(actor, object, rules.locked, &names, Action::Create).await?;
        system.extend(fields);
        let record = Value::Object(system);
        if !rules.creatable.matches(&record) {
            let reason = format!(
                "{what} would fall outside the records of `{object}` that `{}` may create; nothing was stored",
                actor.principal.user_id
            );
            return Err(self.deny(actor, object, rules.action, reason).await);
        }
        let Value::Object(record) = record else { unreachable!("built as an object") };
        Ok(record)
    }

    fn too_many(records: usize) -> Result<(), HostError> {
        if records > MAX_WRITE {
            return Err(HostError::LimitExceeded(format!(
                "{records} records in one call; at most {MAX_WRITE}"
            )));
        }
        Ok(())
    }
}

fn from_store(error: StoreError) -> HostError {
    match error {
        StoreError::RecordExists { .. } => HostError::Invalid(error.to_string()),
        other => unavailable(other),
    }
}

#[async_trait]
impl RecordsService for RecordsEngine {
    async fn objects(&self, actor: &Actor) -> Result<Vec<ObjectInfo>, HostError> {
        let permissions = self.permissions.current();
        let catalog = self.store.record_fields().await.map_err(unavailable)?;
        let names: Vec<String> = if permissions.is_unrestricted() {
            catalog.keys().cloned().collect()
        } else {
            permissions.objects_allowing(&actor.principal, Action::Read)
        };
        Ok(names
            .into_iter()
            .map(|name| {
                let hidden = permissions.hidden_fields(&actor.principal, &name);
                let mut fields: Vec<String> = SYSTEM_FIELDS.iter().map(|f| f.to_string()).collect();
                let seen = catalog.get(&name).into_iter().flatten().filter(|f| !fields::is_system(f));
                fields.extend(seen.cloned());
                fields.retain(|f| !hidden.iter().any(|h| h.as_str() == f));
                ObjectInfo { name, fields }
            })
            .collect())
    }

    async fn find(&self, actor: &Actor, object: &str, query: Query) -> Result<Page, HostError> {
        let permissions = self.permissions.current();
        let scope = self.scope(&permissions, actor, object, Action::Read).await?;
        let hidden = permissions.hidden_fields(&actor.principal, object);
        let filter_json = query.filter.unwrap_or_else(|| json!({}));
        let filter = self.visible_filter(actor, object, &hidden, &filter_json).await?;
        self.check_visible(actor, object, &hidden, query.sort.iter().map(|k| &k.field), "read").await?;
        let projection = match &query.fields {
            None => None,
            Some(names) => {
                let names = names
                    .iter()
                    .map(|name| fields::check_name(name))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| HostError::Invalid(format!("fields: {e}")))?;
                self.check_visible(actor, object, &hidden, &names, "read").await?;
                Some(names)
            }
        };
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 {
            return Err(HostError::Invalid("limit must be at least 1".into()));
        }
        if limit > MAX_PAGE {
            return Err(HostError::LimitExceeded(format!(
                "limit {limit} is above the page maximum of {MAX_PAGE}"
            )));
        }
        let fingerprint = cursor::fingerprint(object, &filter_json, &query.sort);
        let after = match &query.cursor {
            Some(text) => Some(cursor::decode(text, &fingerprint, query.sort.len())?),
            None => None,
        };
        let find = RecordFind {
            filter: Filter::And(vec![filter, scope]),
            sort: query.sort.clone(),
            after,
            limit: limit as usize + 1,
        };
        let mut records = self.store.find_records(object, find).await.map_err(unavailable)?;
        let next_cursor = (records.len() > limit as usize).then(|| {
            records.truncate(limit as usize);
            let last = Value::Object(records.last().cloned().unwrap_or_default());
            cursor::encode(&fingerprint, Position::of(&last, &query.sort))
        });
        let records = records
            .into_iter()
            .map(|mut record| {
                fields::strip(&mut record, &hidden);
                let record = match &projection {
                    Some(keep) => fields::project(record, keep),
                    None => record,
                };
                Value::Object(record)
            })
            .collect();
        Ok(Page { records, next_cursor })
    }

    async fn count(&self, actor: &Actor, object: &str, filter: Value) -> Result<u64, HostError> {
        let permissions = self.permissions.current();
        let scope = self.scope(&permissions, actor, object, Action::Read).await?;
        let hidden = permissions.hidden_fields(&actor.principal, object);
        let filter = self.visible_filter(actor, object, &hidden, &filter).await?;
        self.store.count_records(object, &Filter::And(vec![filter, scope])).await.map_err(unavailable)
    }

    async fn insert(
        &self,
        actor: &Actor,
        object: &str,
        records: Vec<Value>,
    ) -> Result<Vec<String>, HostError> {
        Self::too_many(records.len())?;
        let permissions = self.permissions.current();
        let scope = self.scope(&permissions, actor, object, Action::Create).await?;
        let locked = permissions.locked_fields(&actor.principal, object, Action::Create);
        let now = self.clock.now();
        let stamp = timestamp(now);
        let rules = NewRecordRules { action: "create", locked: &locked, creatable: &scope };
        let mut complete = Vec::with_capacity(records.len());
        for (index, record) in records.into_iter().enumerate() {
            let what = format!("records[{index}]");
            let mut system = Record::new();
            system.insert("id".into(), Value::String(new_record_id()));
            system.insert("owner".into(), Value::String(actor.principal.user_id.clone()));
            system.insert("created_at".into(), Value::String(stamp.clone()));
            system.insert("updated_at".into(), Value::String(stamp.clone()));
            let fields = object_of(record, &what)?;
            complete.push(self.admit(actor, object, &what, &rules, system, fields).await?);
        }
        let ids = complete.iter().map(|r| r["id"].as_str().unwrap_or_default().to_string()).collect();
        self.store.insert_records(object, complete, actor, now).await.map_err(from_store)?;
        Ok(ids)
    }

    async fn update(
        &self,
        actor: &Actor,
        object: &str,
        filter: Value,
        patch: Value,
    ) -> Result<WriteReport, HostError> {
        let permissions = self.permissions.current();
        let allowed = self.scope(&permissions, actor, object, Action::Edit).await?;
        let patch = object_of(patch, "patch")?;
        let names = Self::check_names(&patch, "patch")?;
        let locked = permissions.locked_fields(&actor.principal, object, Action::Edit);
        self.check_editable(actor, object, &locked, &names, Action::Edit).await?;
        let update = RecordUpdate {
            matching: self.matching(&permissions, actor, object, &filter).await?,
            check: allowed.clone(),
            allowed,
            patch,
        };
        match self.store.update_records(object, update, actor, self.clock.now()).await {
            Err(StoreError::RecordCheck(id)) => {
                let reason = format!(
                    "record `{id}` would fall outside the records of `{object}` that `{}` may edit; nothing was stored",
                    actor.principal.user_id
                );
                Err(self.deny(actor, object, "edit", reason).await)
            }
            other => other.map_err(from_store),
        }
    }

    async fn delete(&self, actor: &Actor, object: &str, filter: Value) -> Result<WriteReport, HostError> {
        let permissions = self.permissions.current();
        let allowed = self.scope(&permissions, actor, object, Action::Delete).await?;
        let delete =
            RecordDelete { matching: self.matching(&permissions, actor, object, &filter).await?, allowed };
        self.store.delete_records(object, delete, actor, self.clock.now()).await.map_err(from_store)
    }

    async fn import(
        &self,
        actor: &Actor,
        object: &str,
        records: Vec<Value>,
        on_conflict: OnConflict,
    ) -> Result<ImportReport, HostError> {
        Self::too_many(records.len())?;
        let permissions = self.permissions.current();
        let system = permissions.system(&actor.principal, "records.import");
        if !system.allowed {
            return Err(self.deny(actor, object, "import", system.reason).await);
        }
        // An import names its ids, and an id held by a record the importer
        // cannot see would refuse it (or be skipped, or replaced): that
        // would tell that the record exists. So an importer must see every
        // record of the object; no conflict is then one it may not know of.
        if permissions.record_filter(&actor.principal, object, Action::Read) != Some(Filter::everything()) {
            let reason = format!(
                "importing into `{object}` needs read access to all of its records, which `{}` lacks \
                 (an id held by a record it cannot see would tell that the record exists)",
                actor.principal.user_id
            );
            return Err(self.deny(actor, object, "import", reason).await);
        }
        let creatable = self.scope(&permissions, actor, object, Action::Create).await?;
        let mut locked = permissions.locked_fields(&actor.principal, object, Action::Create);
        let replaceable = if on_conflict == OnConflict::Replace {
            locked.extend(permissions.locked_fields(&actor.principal, object, Action::Edit));
            self.scope(&permissions, actor, object, Action::Edit).await?
        } else {
            Filter::nothing()
        };
        let now = timestamp(self.clock.now());
        let rules = NewRecordRules { action: "import", locked: &locked, creatable: &creatable };
        let mut complete = Vec::with_capacity(records.len());
        for (index, record) in records.into_iter().enumerate() {
            let what = format!("records[{index}]");
            let mut fields = object_of(record, &what)?;
            let system = imported_system_fields(&mut fields, &what, &actor.principal.user_id, &now)?;
            complete.push(self.admit(actor, object, &what, &rules, system, fields).await?);
        }
        let import = RecordImport { records: complete, on_conflict, replaceable };
        match self.store.import_records(object, import, actor, self.clock.now()).await {
            Err(StoreError::RecordNotReplaceable(id)) => {
                let reason = format!(
                    "record `{id}` exists and `{}` may not edit it, so it cannot be replaced; nothing was stored",
                    actor.principal.user_id
                );
                Err(self.deny(actor, object, "import", reason).await)
            }
            other => other.map_err(from_store),
        }
    }
}
