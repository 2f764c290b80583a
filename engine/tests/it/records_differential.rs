//! Differential test: SQLite (filters compiled to SQL) and the in-memory
//! store (the reference evaluator) give identical answers — the same
//! records, in the same order, page by page, and the same counts — for
//! random records and random filters and orders over mixed JSON types,
//! missing fields, nested objects, lists and timestamps in any offset.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use chrono::Utc;
use objectos_engine::field_path::FieldPath;
use objectos_engine::permissions::Filter;
use objectos_engine::principal::Principal;
use objectos_engine::sandbox::{SortKey, SortOrder};
use objectos_engine::store::{
    Actor, MemoryStore, Position, Record, RecordFind, SqliteStore, Store, sqlite::Durability,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const FIELDS: [&str; 5] = ["a", "n", "s", "tags", "obj"];
const PATHS: [&str; 9] = ["a", "n", "s", "tags", "obj", "obj.k", "owner", "created_at", "id"];
const STRINGS: [&str; 11] = [
    "",
    "x",
    "xy",
    "Ab",
    "b",
    "é",
    "2026-01-01T00:00:00Z",
    "2026-01-01T02:00:00+02:00",
    "2026-01-01T00:00:00.5Z",
    "2025-12-31T23:59:59.000Z",
    "r1",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(|n| json!(n)),
        prop::sample::select(vec![1.5, -0.5, 2.0, 0.0]).prop_map(|f| json!(f)),
        prop::sample::select(STRINGS.to_vec()).prop_map(|s| json!(s)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => scalar(),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
        1 => scalar().prop_map(|v| json!({"k": v})),
    ]
}

fn record_body() -> impl Strategy<Value = Vec<(usize, Value)>> {
    prop::collection::vec((0..FIELDS.len(), value()), 0..5)
}

fn condition() -> impl Strategy<Value = Value> {
    let list = || prop::collection::vec(scalar(), 0..3).prop_map(Value::Array);
    let leaf = prop_oneof![
        scalar(),
        value().prop_map(|v| json!({"$eq": v})),
        value().prop_map(|v| json!({"$ne": v})),
        scalar().prop_map(|v| json!({"$gt": v})),
        scalar().prop_map(|v| json!({"$gte": v})),
        scalar().prop_map(|v| json!({"$lt": v})),
        scalar().prop_map(|v| json!({"$lte": v})),
        list().prop_map(|v| json!({"$in": v})),
        list().prop_map(|v| json!({"$nin": v})),
        (scalar(), scalar()).prop_map(|(a, b)| json!({"$between": [a, b]})),
        scalar().prop_map(|v| json!({"$contains": v})),
        prop::sample::select(vec!["", "x", "2026", "b", "Z"]).prop_map(|s| json!({"$startsWith": s})),
        prop::sample::select(vec!["", "y", "Z", "00", "é"]).prop_map(|s| json!({"$endsWith": s})),
        any::<bool>().prop_map(|b| json!({"$null": b})),
        any::<bool>().prop_map(|b| json!({"$exists": b})),
    ];
    leaf.prop_recursive(2, 4, 2, |inner| inner.prop_map(|c| json!({"$not": c})))
}

fn filter() -> impl Strategy<Value = Value> {
    let field = (prop::sample::select(PATHS.to_vec()), condition()).prop_map(|(p, c)| json!({ p: c }));
    field.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|fs| json!({"$and": fs})),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|fs| json!({"$or": fs})),
            inner.prop_map(|f| json!({"$not": f})),
        ]
    })
}

fn sort() -> impl Strategy<Value = Vec<SortKey>> {
    prop::collection::vec(
        (prop::sample::select(PATHS.to_vec()), any::<bool>()).prop_map(|(field, desc)| SortKey {
            field: FieldPath::parse(field).unwrap(),
            order: if desc { SortOrder::Desc } else { SortOrder::Asc },
        }),
        0..3,
    )
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap())
}

/// The two stores under test, shared by every case (each case uses its own object).
struct Stores {
    memory: Arc<dyn Store>,
    sqlite: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

fn stores() -> &'static Stores {
    static STORES: OnceLock<Stores> = OnceLock::new();
    STORES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(dir.path().join("objectos.db"), Durability::Normal).unwrap();
        Stores { memory: Arc::new(MemoryStore::new()), sqlite: Arc::new(sqlite), _dir: dir }
    })
}

/// Every record `find` returns over `store`, page by page.
async fn pages(
    store: &dyn Store,
    object: &str,
    filter: &Filter,
    sort: &[SortKey],
    size: usize,
) -> Vec<Record> {
    let mut all: Vec<Record> = Vec::new();
    loop {
        let after = all.last().map(|r| Position::of(&Value::Object(r.clone()), sort));
        let find = RecordFind { filter: filter.clone(), sort: sort.to_vec(), after, limit: size };
        let page = store.find_records(object, find).await.unwrap();
        let done = page.len() < size;
        all.extend(page);
        assert!(all.len() <= 64, "paging does not terminate");
        if done {
            return all;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_and_memory_agree(
        bodies in prop::collection::vec(record_body(), 0..10),
        filters in prop::collection::vec(filter(), 1..4),
        sort in sort(),
        page in 1usize..5,
    ) {
        static CASE: AtomicU64 = AtomicU64::new(0);
        let object = format!("o{}", CASE.fetch_add(1, Ordering::Relaxed));
        let records: Vec<Record> = bodies.iter().enumerate().map(|(i, fields)| {
            let mut record = Record::new();
            record.insert("id".into(), json!(format!("r{i}")));
            record.insert("owner".into(), json!(if i % 2 == 0 { "u1" } else { "u2" }));
            record.insert("created_at".into(), json!(format!("2026-01-01T00:00:0{}.000Z", i % 3)));
            record.insert("updated_at".into(), json!("2026-01-01T00:00:00.000Z"));
            for (field, value) in fields {
                record.insert(FIELDS[*field].into(), value.clone());
            }
            record
        }).collect();
        let Stores { memory, sqlite, .. } = stores();
        runtime().block_on(async {
            let actor = Actor::user(Principal::new("test", &[]));
            for store in [memory, sqlite] {
                if !records.is_empty() {
                    store.insert_records(&object, records.clone(), &actor, Utc::now()).await.unwrap();
                }
            }
            for json in &filters {
                let filter = Filter::parse(json).unwrap();
                let expected = pages(&**memory, &object, &filter, &sort, page).await;
                let reference: Vec<&Record> =
                    records.iter().filter(|r| filter.matches(&Value::Object((*r).clone()))).collect();
                prop_assert_eq!(expected.len(), reference.len(), "memory store vs evaluator for {}", json);
                let got = pages(&**sqlite, &object, &filter, &sort, page).await;
                prop_assert_eq!(&got, &expected, "filter {} sort {:?}", json, sort);
                let counted = sqlite.count_records(&object, &filter).await.unwrap();
                prop_assert_eq!(counted, expected.len() as u64, "count of {}", json);
            }
            Ok(())
        })?;
    }
}

/// The largest filters the parser accepts still run on SQLite (whose
/// expression trees are limited in depth), with the reference's answer.
#[test]
fn the_largest_accepted_filters_run_on_sqlite() {
    let Stores { memory, sqlite, .. } = stores();
    let records: Vec<Record> = (0..50)
        .map(|i| {
            let mut record = Record::new();
            record.insert("id".into(), json!(format!("r{i:02}")));
            record.insert("owner".into(), json!("u1"));
            record.insert("created_at".into(), json!("2026-01-01T00:00:00.000Z"));
            record.insert("updated_at".into(), json!("2026-01-01T00:00:00.000Z"));
            record.insert("n".into(), json!(i));
            record
        })
        .collect();
    let wide_or: Vec<Value> = (0..990).map(|i| json!({"n": i % 25})).collect();
    // Even numbers below 30 (0 and 1 need a type test, so no single CASE).
    let mixed_in: Vec<Value> =
        (0..1990).map(|i| if i % 2 == 0 { json!(i % 30) } else { json!(true) }).collect();
    let mut deep = json!({"n": {"$gte": 10}});
    for _ in 0..15 {
        deep = json!({"$not": {"$not": deep}});
    }
    runtime().block_on(async {
        let actor = Actor::user(Principal::new("test", &[]));
        for store in [memory, sqlite] {
            store.insert_records("large", records.clone(), &actor, Utc::now()).await.unwrap();
        }
        for (json, expected) in
            [(json!({"$or": wide_or}), 25), (json!({"n": {"$in": mixed_in}}), 15), (deep, 40)]
        {
            let filter = Filter::parse(&json).unwrap();
            for store in [memory, sqlite] {
                assert_eq!(store.count_records("large", &filter).await.unwrap(), expected);
            }
        }
    });
}

/// Characters field names are made of here: ordinary ones, and every one
/// that means something to a JSON path, to SQL or to JSON text.
const NAME_CHARS: &[char] = &[
    'a', 'b', 'u', '0', '6', '1', '.', '"', '\\', '$', '\'', '[', ']', '*', '#', ' ', 'é', '名', '\t', '\0',
    '\u{7f}', '\u{202e}',
];

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(NAME_CHARS.to_vec()), 1..5).prop_map(String::from_iter)
}

/// A name a record may hold: the records engine refuses a key with a
/// control character at any depth (SQLite would compare `a\0b` as `a`).
fn stored_name() -> impl Strategy<Value = String> {
    name().prop_filter("no control character", |n| !n.chars().any(char::is_control))
}

/// `name` with one character spelled as a JSON escape (`\u0061` for `a`),
/// the spelling a path language with escapes would read as `name` itself.
fn escaped(name: &str, at: usize) -> String {
    name.chars()
        .enumerate()
        .map(
            |(i, c)| {
                if i == at % name.chars().count() { format!("\\u{:04x}", c as u32) } else { c.to_string() }
            },
        )
        .collect()
}

/// A filter key: a name records hold, an escaped spelling of one, a path
/// into a nested object, or a name nobody holds.
fn key(names: Vec<String>) -> impl Strategy<Value = String> {
    let pick = prop::sample::select(names);
    prop_oneof![
        pick.clone(),
        (pick.clone(), any::<usize>()).prop_map(|(n, at)| escaped(&n, at)),
        (pick.clone(), pick).prop_map(|(a, b)| format!("{a}.{b}")),
        name(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whatever a field is called and however a query spells it, a filter
    /// or sort either is refused by the field-path grammar or gets the same
    /// answer from SQLite as from the reference evaluator: no spelling
    /// reaches a field on one backend that it misses on the other.
    #[test]
    fn every_spelling_of_a_field_gets_one_answer(
        (names, bodies, keys) in prop::collection::vec(stored_name(), 1..4).prop_flat_map(|names| {
            let bodies = prop::collection::vec(
                prop::collection::vec((prop::sample::select(names.clone()), scalar(), any::<bool>()), 0..4),
                1..6,
            );
            (Just(names.clone()), bodies, prop::collection::vec(key(names), 1..6))
        }),
    ) {
        static CASE: AtomicU64 = AtomicU64::new(0);
        let object = format!("names{}", CASE.fetch_add(1, Ordering::Relaxed));
        let records: Vec<Record> = bodies.iter().enumerate().map(|(i, fields)| {
            let mut record = Record::new();
            record.insert("id".into(), json!(format!("r{i}")));
            record.insert("owner".into(), json!("u1"));
            record.insert("created_at".into(), json!("2026-01-01T00:00:00.000Z"));
            record.insert("updated_at".into(), json!("2026-01-01T00:00:00.000Z"));
            for (field, value, nested) in fields {
                // Nested under another generated name, so dotted paths reach it.
                let value = if *nested { json!({ names[0].clone(): value }) } else { value.clone() };
                record.insert(field.clone(), value);
            }
            record
        }).collect();
        let Stores { memory, sqlite, .. } = stores();
        runtime().block_on(async {
            let actor = Actor::user(Principal::new("test", &[]));
            for store in [memory, sqlite] {
                store.insert_records(&object, records.clone(), &actor, Utc::now()).await.unwrap();
            }
            for key in &keys {
                for condition in [json!({"$exists": true}), json!({"$ne": null}), json!({"$gte": 0})] {
                    let json = json!({ key.clone(): condition });
                    let Ok(filter) = Filter::parse(&json) else {
                        prop_assert!(FieldPath::parse(key).is_err(), "{:?} refused in a filter only", key);
                        continue;
                    };
                    let expected = memory.count_records(&object, &filter).await.unwrap();
                    let got = sqlite.count_records(&object, &filter).await.unwrap();
                    prop_assert_eq!(got, expected, "count of {}", json);
                }
                if let Ok(field) = FieldPath::parse(key) {
                    let sort = [SortKey { field, order: SortOrder::Desc }];
                    let expected = pages(&**memory, &object, &Filter::everything(), &sort, 2).await;
                    let got = pages(&**sqlite, &object, &Filter::everything(), &sort, 2).await;
                    prop_assert_eq!(got, expected, "sorted by {:?}", key);
                }
            }
            Ok(())
        })?;
    }
}
