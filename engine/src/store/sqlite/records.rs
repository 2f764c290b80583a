//! Records in SQLite: the `records` table (system fields as columns, the
//! rest as a JSON `body`), queried with filters compiled to SQL, and
//! written through the store's writer so each write and its access event
//! commit together or not at all.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::{Map, Value, json};

use super::filter::{Sql, after, compile, order_by};
use super::{SqliteStore, backend, in_savepoint, json, millis, parse_column, time};
use crate::permissions::Filter;
use crate::sandbox::{ImportReport, OnConflict, WriteReport};
use crate::store::StoreError;
use crate::store::records::{
    AccessEvent, AccessEventType, Actor, Record, RecordDelete, RecordFind, RecordImport, RecordStore,
    RecordUpdate, SYSTEM_FIELDS, change_event, patched, timestamp,
};

/// `body` is stored as SQLite's binary JSON (JSONB): filters read it without
/// parsing text, and it is turned back into text only for returned rows.
const COLUMNS: &str = "id, owner, created_at, updated_at, json(body)";

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<Record> {
    let mut record = Map::new();
    for (i, field) in SYSTEM_FIELDS.iter().enumerate() {
        record.insert(field.to_string(), Value::String(row.get(i)?));
    }
    let body: Map<String, Value> = parse_column(row, 4)?;
    record.extend(body);
    Ok(record)
}

fn text<'a>(record: &'a Record, field: &str) -> &'a str {
    record.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// The record's fields other than the system ones, as JSON.
fn body(record: &Record) -> String {
    let body: Map<String, Value> = record
        .iter()
        .filter(|(k, _)| !SYSTEM_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json(&body)
}

/// `WHERE object = ? AND (filter)`.
fn where_clause(object: &str, filter: &Filter) -> Sql {
    let mut sql = Sql {
        text: "WHERE object = ? AND ".into(),
        params: vec![rusqlite::types::Value::Text(object.into())],
    };
    compile(filter, &mut sql);
    sql
}

fn select(conn: &Connection, object: &str, filter: &Filter, tail: &str) -> Result<Vec<Record>, StoreError> {
    let clause = where_clause(object, filter);
    let sql = format!("SELECT {COLUMNS} FROM records {} {tail}", clause.text);
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt.query_map(params_from_iter(clause.params.iter()), record_from_row).map_err(backend)?;
    rows.collect::<rusqlite::Result<_>>().map_err(backend)
}

fn count(conn: &Connection, object: &str, filter: &Filter) -> Result<u64, StoreError> {
    let clause = where_clause(object, filter);
    let sql = format!("SELECT count(*) FROM records {}", clause.text);
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| stmt.query_row(params_from_iter(clause.params.iter()), |r| r.get::<_, i64>(0)))
        .map(|n| n as u64)
        .map_err(backend)
}

/// Inserts or replaces one record and notes its fields.
fn put(conn: &Connection, object: &str, record: &Record) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO records (object, id, owner, created_at, updated_at, body) VALUES (?1, ?2, ?3, ?4, ?5, jsonb(?6))
         ON CONFLICT (object, id) DO UPDATE SET owner = excluded.owner, created_at = excluded.created_at,
             updated_at = excluded.updated_at, body = excluded.body",
    )?
    .execute(params![
        object,
        text(record, "id"),
        text(record, "owner"),
        text(record, "created_at"),
        text(record, "updated_at"),
        body(record)
    ])?;
    let mut note =
        conn.prepare_cached("INSERT OR IGNORE INTO record_fields (object, field) VALUES (?1, ?2)")?;
    for field in record.keys() {
        note.execute(params![object, field])?;
    }
    Ok(())
}

fn exists(conn: &Connection, object: &str, id: &str) -> Result<Option<Record>, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM records WHERE object = ?1 AND id = ?2"))
        .and_then(|mut stmt| stmt.query_row(params![object, id], record_from_row).optional())
        .map_err(backend)
}

pub(super) fn emit(conn: &Connection, event: Option<AccessEvent>) -> Result<(), StoreError> {
    let Some(event) = event else { return Ok(()) };
    conn.prepare_cached(
        "INSERT INTO access_events (at, type, actor, job_id, resource, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            millis(event.at),
            event.event.as_str(),
            json(&event.actor),
            event.job_id,
            event.resource,
            json(&event.data)
        ])
    })
    .map(drop)
    .map_err(backend)
}

pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<AccessEvent> {
    let kind: String = row.get(2)?;
    Ok(AccessEvent {
        seq: row.get::<_, i64>(0)? as u64,
        at: time(row.get(1)?),
        event: AccessEventType::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, kind.into())
        })?,
        actor: parse_column(row, 3)?,
        job_id: row.get(4)?,
        resource: row.get(5)?,
        data: parse_column(row, 6)?,
    })
}

#[async_trait]
impl RecordStore for SqliteStore {
    async fn find_records(&self, object: &str, find: RecordFind) -> Result<Vec<Record>, StoreError> {
        let object = object.to_string();
        self.read(move |conn| {
            let mut clause = where_clause(&object, &find.filter);
            if let Some(position) = &find.after {
                clause.text.push_str(" AND ");
                after(&find.sort, position, &mut clause);
            }
            let sql = format!(
                "SELECT {COLUMNS} FROM records {} {} LIMIT {}",
                clause.text,
                order_by(&find.sort),
                find.limit
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let rows =
                stmt.query_map(params_from_iter(clause.params.iter()), record_from_row).map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
        .await
    }

    async fn count_records(&self, object: &str, filter: &Filter) -> Result<u64, StoreError> {
        let (object, filter) = (object.to_string(), filter.clone());
        self.read(move |conn| count(conn, &object, &filter)).await
    }

    async fn insert_records(
        &self,
        object: &str,
        records: Vec<Record>,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (object, actor) = (object.to_string(), actor.clone());
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                for record in &records {
                    if exists(conn, &object, text(record, "id"))?.is_some() {
                        return Err(StoreError::RecordExists {
                            object: object.clone(),
                            id: text(record, "id").into(),
                        });
                    }
                    put(conn, &object, record).map_err(backend)?;
                }
                let count = records.len() as u64;
                let counts = json!({"inserted": count});
                emit(
                    conn,
                    change_event(AccessEventType::RecordsInserted, &object, &counts, count, &actor, at),
                )
            })
        })
        .await
    }

    async fn update_records(
        &self,
        object: &str,
        update: RecordUpdate,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<WriteReport, StoreError> {
        let (object, actor) = (object.to_string(), actor.clone());
        self.write(move |conn| {
            let matched = count(conn, &object, &update.matching)?;
            let changeable = Filter::And(vec![update.matching.clone(), update.allowed.clone()]);
            let stamp = timestamp(at);
            // Every change is computed and checked before the first write.
            let mut changes = Vec::new();
            for before in select(conn, &object, &changeable, "")? {
                let after = patched(&before, &update.patch, &stamp);
                if !update.check.matches(&Value::Object(after.clone())) {
                    return Err(StoreError::RecordCheck(text(&after, "id").into()));
                }
                changes.push(after);
            }
            for after in &changes {
                put(conn, &object, after).map_err(backend)?;
            }
            let changed = changes.len() as u64;
            let report = WriteReport::new(matched, changed);
            emit(conn, change_event(AccessEventType::RecordsUpdated, &object, &report, changed, &actor, at))?;
            Ok(report)
        })
        .await
    }

    async fn delete_records(
        &self,
        object: &str,
        delete: RecordDelete,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<WriteReport, StoreError> {
        let (object, actor) = (object.to_string(), actor.clone());
        self.write(move |conn| {
            let matched = count(conn, &object, &delete.matching)?;
            let doomed = where_clause(&object, &Filter::And(vec![delete.matching, delete.allowed]));
            let changed = conn
                .prepare_cached(&format!("DELETE FROM records {}", doomed.text))
                .and_then(|mut stmt| stmt.execute(params_from_iter(doomed.params.iter())))
                .map_err(backend)? as u64;
            let report = WriteReport::new(matched, changed);
            emit(conn, change_event(AccessEventType::RecordsDeleted, &object, &report, changed, &actor, at))?;
            Ok(report)
        })
        .await
    }

    async fn import_records(
        &self,
        object: &str,
        import: RecordImport,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<ImportReport, StoreError> {
        let (object, actor) = (object.to_string(), actor.clone());
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                let mut report = ImportReport::default();
                for record in &import.records {
                    let id = text(record, "id");
                    match (exists(conn, &object, id)?, import.on_conflict) {
                        (None, _) => report.inserted += 1,
                        (Some(_), OnConflict::Skip) => {
                            report.skipped += 1;
                            continue;
                        }
                        (Some(_), OnConflict::Fail) => {
                            return Err(StoreError::RecordExists { object: object.clone(), id: id.into() });
                        }
                        (Some(existing), OnConflict::Replace) => {
                            if !import.replaceable.matches(&Value::Object(existing)) {
                                return Err(StoreError::RecordNotReplaceable(id.into()));
                            }
                            report.replaced += 1;
                        }
                    }
                    put(conn, &object, record).map_err(backend)?;
                }
                let changed = report.inserted + report.replaced;
                emit(
                    conn,
                    change_event(AccessEventType::RecordsImported, &object, &report, changed, &actor, at),
                )?;
                Ok(report)
            })
        })
        .await
    }

    async fn record_fields(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT object, field FROM record_fields").map_err(backend)?;
            let rows = stmt
                .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                .map_err(backend)?;
            let mut fields: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for row in rows {
                let (object, field) = row.map_err(backend)?;
                fields.entry(object).or_default().insert(field);
            }
            Ok(fields)
        })
        .await
    }

    async fn record_access(&self, event: AccessEvent) -> Result<(), StoreError> {
        self.write(move |conn| emit(conn, Some(event))).await
    }

    async fn access_events(&self, after: u64, limit: usize) -> Result<Vec<AccessEvent>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, at, type, actor, job_id, resource, data FROM access_events
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(backend)?;
            let rows =
                stmt.query_map(params![after as i64, limit as i64], event_from_row).map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
        .await
    }
}
