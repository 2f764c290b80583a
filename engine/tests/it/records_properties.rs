//! Non-interference: with random permission sets, principals, records and
//! queries, changing any field the principal cannot see, or any record
//! outside its record filter (keeping which records the filter admits),
//! never changes the answer to a query it may ask — records, order, page
//! boundaries and counts included. A refused query stays refused.

use std::sync::{Arc, OnceLock};

use chrono::Utc;
use objectos_engine::clock::SystemClock;
use objectos_engine::field_path::FieldPath;
use objectos_engine::permissions::{Action, Filter, PermissionSet, Permissions, PermissionsDir};
use objectos_engine::principal::Principal;
use objectos_engine::records::RecordsEngine;
use objectos_engine::sandbox::{HostError, OnConflict, Query, RecordsService, SortKey, SortOrder};
use objectos_engine::store::{Actor, MemoryStore, Record, RecordImport, RecordStore, Store};
use proptest::prelude::*;
use serde_json::{Value, json};

const PROFILES: [&str; 3] = ["p0", "p1", "p2"];
const FIELDS: [&str; 7] = ["status", "region", "level", "team", "salary", "notes", "owner"];
const RESTRICTABLE: [&str; 3] = ["salary", "notes", "level"];

fn view_filter() -> impl Strategy<Value = Option<Value>> {
    prop::sample::select(vec![
        None,
        Some(json!({"owner": "{{ userId }}"})),
        Some(json!({"team": "{{ user.team }}"})),
        Some(json!({"level": {"$lte": "{{ user.level }}"}})),
        Some(json!({"region": "eu"})),
        Some(json!({"$or": [{"owner": "{{ userId }}"}, {"status": "open"}]})),
        Some(json!({"missing": "{{ user.nothing }}"})),
    ])
}

/// A permission set for `contacts` as JSON (which is YAML).
fn set() -> impl Strategy<Value = Value> {
    let profile = (any::<bool>(), view_filter()).prop_map(|(read, filter)| {
        let mut rules = json!({"allowRead": read});
        if let Some(filter) = filter {
            rules["viewFilters"] = filter;
        }
        rules
    });
    let visible_to = prop::sample::subsequence(PROFILES.to_vec(), 0..=3);
    (
        prop::collection::vec(profile, 3),
        prop::collection::vec((any::<bool>(), visible_to), RESTRICTABLE.len()),
    )
        .prop_map(|(profiles, fields)| {
            let profiles: serde_json::Map<String, Value> =
                PROFILES.iter().map(|p| p.to_string()).zip(profiles).collect();
            let fields: serde_json::Map<String, Value> = RESTRICTABLE
                .iter()
                .zip(fields)
                .filter(|(_, (listed, _))| *listed)
                .map(|(field, (_, visible))| (field.to_string(), json!({"visibleTo": visible})))
                .collect();
            json!({"name": "contacts", "objectName": "contacts", "profiles": profiles, "fieldPermissions": fields})
        })
}

fn principal() -> impl Strategy<Value = Principal> {
    (
        prop::sample::select(vec!["u1", "u2"]),
        prop::sample::subsequence(PROFILES.to_vec(), 0..=3),
        prop::sample::select(vec!["t1", "t2"]),
        1i64..4,
    )
        .prop_map(|(user, profiles, team, level)| {
            let mut principal = Principal::new(user, &profiles);
            principal.metadata.insert("team".into(), json!(team));
            principal.metadata.insert("level".into(), json!(level));
            principal
        })
}

fn field_value(field: &str) -> BoxedStrategy<Value> {
    match field {
        "status" => prop::sample::select(vec!["open", "won", "lost"]).prop_map(|s| json!(s)).boxed(),
        "region" => prop::sample::select(vec!["eu", "us"]).prop_map(|s| json!(s)).boxed(),
        "level" => (1i64..5).prop_map(|n| json!(n)).boxed(),
        "team" => prop::sample::select(vec!["t1", "t2"]).prop_map(|s| json!(s)).boxed(),
        "salary" => (0i64..1000).prop_map(|n| json!(n)).boxed(),
        "notes" => "[a-c]{0,3}".prop_map(|s| json!(s)).boxed(),
        _ => prop::sample::select(vec!["u1", "u2", "u3"]).prop_map(|s| json!(s)).boxed(),
    }
}

/// A record's fields: each present or missing.
fn record() -> impl Strategy<Value = Vec<Option<Value>>> {
    FIELDS.iter().map(|f| prop::option::of(field_value(f))).collect::<Vec<_>>()
}

fn query() -> impl Strategy<Value = (Value, Vec<SortKey>, u32)> {
    let condition = (prop::sample::select(FIELDS.to_vec()), prop::sample::select(FIELDS.to_vec()))
        .prop_flat_map(|(field, _)| {
            let f = field.to_string();
            field_value(field).prop_flat_map(move |v| {
                let f = f.clone();
                prop::sample::select(vec!["$eq", "$ne", "$gt", "$lte", "$exists"]).prop_map(move |op| {
                    let operand = if op == "$exists" { json!(true) } else { v.clone() };
                    json!({ f.clone(): { op: operand } })
                })
            })
        });
    let filter = prop::collection::vec(condition, 0..3).prop_map(|cs| json!({"$and": cs}));
    let sort = prop::collection::vec(
        (prop::sample::select(FIELDS.to_vec()), any::<bool>()).prop_map(|(f, desc)| SortKey {
            field: FieldPath::parse(f).unwrap(),
            order: if desc { SortOrder::Desc } else { SortOrder::Asc },
        }),
        0..3,
    );
    (filter, sort, 1u32..4)
}

/// Every page a principal gets, and its count.
type Answer = Result<(Vec<Vec<Value>>, u64), HostError>;

async fn answer(
    engine: &RecordsEngine,
    actor: &Actor,
    filter: &Value,
    sort: &[SortKey],
    limit: u32,
) -> Answer {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let query = Query {
            filter: Some(filter.clone()),
            sort: sort.to_vec(),
            limit: Some(limit),
            cursor: cursor.take(),
            ..Query::default()
        };
        let page = engine.find(actor, "contacts", query).await?;
        pages.push(page.records);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok((pages, engine.count(actor, "contacts", filter.clone()).await?))
}

async fn engine_over(records: &[Record], permissions: Permissions) -> RecordsEngine {
    let store = Arc::new(MemoryStore::new());
    if !records.is_empty() {
        let import = RecordImport {
            records: records.to_vec(),
            on_conflict: OnConflict::Fail,
            replaceable: Filter::nothing(),
        };
        let loader = Actor::user(Principal::new("seed", &[]));
        store.import_records("contacts", import, &loader, Utc::now()).await.unwrap();
    }
    let store: Arc<dyn Store> = store;
    RecordsEngine::new(store, Arc::new(PermissionsDir::fixed(permissions)), Arc::new(SystemClock))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().unwrap())
}

fn build(i: usize, fields: &[Option<Value>]) -> Record {
    let mut record = Record::new();
    record.insert("id".into(), json!(format!("r{i}")));
    record.insert("created_at".into(), json!("2026-01-01T00:00:00.000Z"));
    record.insert("updated_at".into(), json!("2026-01-01T00:00:00.000Z"));
    record.insert("owner".into(), json!("u3"));
    for (field, value) in FIELDS.iter().zip(fields) {
        if let Some(value) = value {
            record.insert(field.to_string(), value.clone());
        }
    }
    record
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn hidden_fields_and_unseen_records_never_change_an_answer(
        set in set(),
        principal in principal(),
        records in prop::collection::vec(record(), 0..8),
        changes in prop::collection::vec(record(), 8),
        queries in prop::collection::vec(query(), 1..4),
    ) {
        let parsed = PermissionSet::parse(std::path::Path::new("contacts.yaml"), &set.to_string()).unwrap();
        let permissions = Permissions::new(vec![parsed.clone()]);
        let scope = permissions.record_filter(&principal, "contacts", Action::Read).unwrap_or_else(Filter::nothing);
        let hidden = permissions.hidden_fields(&principal, "contacts");
        let inside = |r: &Record| scope.matches(&Value::Object(r.clone()));

        let before: Vec<Record> = records.iter().enumerate().map(|(i, f)| build(i, f)).collect();
        // The changed world: records outside the filter take any other
        // values that keep them outside; records inside change only their
        // hidden fields, and stay inside.
        let after: Vec<Record> = before.iter().zip(&changes).enumerate().map(|(i, (old, new))| {
            let candidate = if inside(old) {
                let mut changed = old.clone();
                for (field, value) in FIELDS.iter().zip(new) {
                    if hidden.iter().any(|h| h.as_str() == *field) {
                        match value {
                            Some(v) => { changed.insert(field.to_string(), v.clone()); }
                            None => { changed.remove(*field); }
                        }
                    }
                }
                changed
            } else {
                build(i, new)
            };
            if inside(&candidate) == inside(old) { candidate } else { old.clone() }
        }).collect();

        runtime().block_on(async {
            let first = engine_over(&before, Permissions::new(vec![parsed.clone()])).await;
            let second = engine_over(&after, Permissions::new(vec![parsed.clone()])).await;
            let actor = Actor::user(principal.clone());
            for (filter, sort, limit) in &queries {
                let a = answer(&first, &actor, filter, sort, *limit).await;
                let b = answer(&second, &actor, filter, sort, *limit).await;
                prop_assert_eq!(&a, &b, "filter {} sort {:?} hidden {:?}", filter, sort, hidden);
                if let Ok((pages, _)) = &a {
                    for record in pages.iter().flatten() {
                        for field in &hidden {
                            prop_assert!(record.get(field.as_str()).is_none(), "{} leaked in {}", field, record);
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
}
