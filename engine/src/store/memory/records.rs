//! Records in the in-memory store: the reference the SQL backends are
//! tested against, since it evaluates filters with [`Filter::matches`]
//! itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{MemoryStore, StoreError};
use crate::permissions::Filter;
use crate::sandbox::{ImportReport, OnConflict, WriteReport};
use crate::store::records::{
    AccessEvent, AccessEventType, Actor, Position, Record, RecordDelete, RecordFind, RecordImport,
    RecordStore, RecordUpdate, change_event, patched, timestamp,
};

/// Every object's records by id (each a JSON object), the fields seen, and
/// the access events.
#[derive(Default)]
pub(super) struct Records {
    objects: HashMap<String, BTreeMap<String, Value>>,
    fields: BTreeMap<String, BTreeSet<String>>,
    pub(super) events: super::log::Log<AccessEvent>,
}

impl Records {
    pub(super) fn emit(&mut self, event: Option<AccessEvent>) {
        if let Some(mut event) = event {
            event.seq = self.events.len() as u64 + 1;
            self.events.push(event);
        }
    }

    fn store(&mut self, object: &str, record: Record) {
        self.fields.entry(object.to_string()).or_default().extend(record.keys().cloned());
        let id = record["id"].as_str().unwrap_or_default().to_string();
        self.objects.entry(object.to_string()).or_default().insert(id, Value::Object(record));
    }

    fn matching<'a>(&'a self, object: &str, filter: &'a Filter) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .get(object)
            .into_iter()
            .flat_map(|records| records.values())
            .filter(|r| filter.matches(r))
    }
}

fn record(value: &Value) -> Record {
    value.as_object().cloned().unwrap_or_default()
}

#[async_trait]
impl RecordStore for MemoryStore {
    async fn find_records(&self, object: &str, find: RecordFind) -> Result<Vec<Record>, StoreError> {
        let state = self.lock();
        let Some(records) = state.records.objects.get(object) else { return Ok(Vec::new()) };
        if find.sort.is_empty() {
            // By id alone: the map's own order.
            let start =
                find.after.as_ref().map_or(Bound::Unbounded, |after| Bound::Excluded(after.id.clone()));
            return Ok(records
                .range((start, Bound::Unbounded))
                .map(|(_, r)| r)
                .filter(|r| find.filter.matches(r))
                .take(find.limit)
                .map(record)
                .collect());
        }
        let mut found: Vec<(Position, &Value)> = records
            .values()
            .filter(|r| find.filter.matches(r))
            .map(|r| (Position::of(r, &find.sort), r))
            .filter(|(at, _)| find.after.as_ref().is_none_or(|after| at.cmp_under(after, &find.sort).is_gt()))
            .collect();
        found.sort_by(|a, b| a.0.cmp_under(&b.0, &find.sort));
        Ok(found.into_iter().take(find.limit).map(|(_, r)| record(r)).collect())
    }

    async fn count_records(&self, object: &str, filter: &Filter) -> Result<u64, StoreError> {
        Ok(self.lock().records.matching(object, filter).count() as u64)
    }

    async fn insert_records(
        &self,
        object: &str,
        records: Vec<Record>,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let state = &mut state.records;
        let existing = state.objects.get(object);
        let mut ids = BTreeSet::new();
        for record in &records {
            let id = record["id"].as_str().unwrap_or_default();
            if !ids.insert(id) || existing.is_some_and(|e| e.contains_key(id)) {
                return Err(StoreError::RecordExists { object: object.into(), id: id.into() });
            }
        }
        let count = records.len() as u64;
        for record in records {
            state.store(object, record);
        }
        let counts = json!({"inserted": count});
        state.emit(change_event(AccessEventType::RecordsInserted, object, &counts, count, actor, at));
        Ok(())
    }

    async fn update_records(
        &self,
        object: &str,
        update: RecordUpdate,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<WriteReport, StoreError> {
        let mut state = self.lock();
        let state = &mut state.records;
        let stamp = timestamp(at);
        let mut matched = 0;
        let mut changes = Vec::new();
        for value in state.matching(object, &update.matching) {
            matched += 1;
            if update.allowed.matches(value) {
                let after = patched(&record(value), &update.patch, &stamp);
                if !update.check.matches(&Value::Object(after.clone())) {
                    return Err(StoreError::RecordCheck(after["id"].as_str().unwrap_or_default().into()));
                }
                changes.push(after);
            }
        }
        let report = WriteReport::new(matched, changes.len() as u64);
        for after in changes {
            state.store(object, after);
        }
        state.emit(change_event(AccessEventType::RecordsUpdated, object, &report, report.changed, actor, at));
        Ok(report)
    }

    async fn delete_records(
        &self,
        object: &str,
        delete: RecordDelete,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<WriteReport, StoreError> {
        let mut state = self.lock();
        let state = &mut state.records;
        let (mut matched, mut doomed) = (0, Vec::new());
        for value in state.matching(object, &delete.matching) {
            matched += 1;
            if delete.allowed.matches(value) {
                doomed.push(value["id"].as_str().unwrap_or_default().to_string());
            }
        }
        if let Some(records) = state.objects.get_mut(object) {
            for id in &doomed {
                records.remove(id);
            }
        }
        let changed = doomed.len() as u64;
        let report = WriteReport::new(matched, changed);
        state.emit(change_event(AccessEventType::RecordsDeleted, object, &report, changed, actor, at));
        Ok(report)
    }

    async fn import_records(
        &self,
        object: &str,
        import: RecordImport,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<ImportReport, StoreError> {
        let mut state = self.lock();
        let state = &mut state.records;
        // Decide everything first: a refusal must leave nothing behind.
        let mut report = ImportReport::default();
        let mut writes = Vec::with_capacity(import.records.len());
        let mut seen = BTreeSet::new();
        for record in import.records {
            let id = record["id"].as_str().unwrap_or_default().to_string();
            let existing = state.objects.get(object).and_then(|records| records.get(&id));
            let exists = existing.is_some() || seen.contains(&id);
            match (exists, import.on_conflict) {
                (false, _) => report.inserted += 1,
                (true, OnConflict::Skip) => {
                    report.skipped += 1;
                    continue;
                }
                (true, OnConflict::Fail) => {
                    return Err(StoreError::RecordExists { object: object.into(), id });
                }
                (true, OnConflict::Replace) => {
                    if existing.is_some_and(|e| !import.replaceable.matches(e)) {
                        return Err(StoreError::RecordNotReplaceable(id));
                    }
                    report.replaced += 1;
                }
            }
            seen.insert(id);
            writes.push(record);
        }
        for record in writes {
            state.store(object, record);
        }
        let changed = report.inserted + report.replaced;
        state.emit(change_event(AccessEventType::RecordsImported, object, &report, changed, actor, at));
        Ok(report)
    }

    async fn record_fields(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError> {
        Ok(self.lock().records.fields.clone())
    }

    async fn record_access(&self, event: AccessEvent) -> Result<(), StoreError> {
        self.lock().records.emit(Some(event));
        Ok(())
    }

    async fn access_events(&self, after: u64, limit: usize) -> Result<Vec<AccessEvent>, StoreError> {
        Ok(super::events_after(&self.lock().records.events, after, limit))
    }
}
