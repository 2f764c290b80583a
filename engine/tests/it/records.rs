//! Records under permission, at the engine's boundary: what each principal
//! reads, which writes are refused whole, what is audited, and how the
//! permission sets decide a job's capabilities — on both backends.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use objectos_engine::clock::{Clock, ManualClock};
use objectos_engine::field_path::FieldPath;
use objectos_engine::jobs::{JobStatus, NewJob};
use objectos_engine::permissions::{Filter, PermissionSet, Permissions, PermissionsDir};
use objectos_engine::principal::Principal;
use objectos_engine::queue::{QueueConfig, QueueError};
use objectos_engine::records::RecordsEngine;
use objectos_engine::sandbox::{HostError, OnConflict, Query, RecordsService, Services, SortKey};
use objectos_engine::store::{
    AccessEventType, Actor, MemoryStore, Record, RecordFind, RecordImport, SqliteStore, Store,
    sqlite::Durability,
};
use serde_json::{Value, json};

const CONTACTS: &str = r#"
name: contact-permissions
objectName: contacts
profiles:
  sales:    { allowRead: true, allowCreate: true, allowEdit: true, viewFilters: { owner: "{{ userId }}" } }
  manager:  { allowRead: true, viewFilters: { teamId: "{{ user.teamId }}" } }
  admin:    { allowRead: true, allowCreate: true, allowEdit: true, allowDelete: true }
  viewer:   { allowRead: true }
  pruner:   { allowDelete: true, viewFilters: { owner: "{{ userId }}" } }
  regional: { allowRead: true, allowCreate: true, allowEdit: true, viewFilters: { region: eu } }
fieldPermissions:
  salary: { visibleTo: [admin], editableBy: [admin] }
  status: { editableBy: [admin, manager, regional] }
"#;

const SYSTEM: &str = r#"
name: system
system:
  profiles:
    admin: [records.import, artifacts.write, artifacts.read]
    sales: [records.import, artifacts.write, artifacts.read]
"#;

fn sets() -> Permissions {
    let parse = |name: &str, text: &str| PermissionSet::parse(std::path::Path::new(name), text).unwrap();
    Permissions::new(vec![parse("contacts.yaml", CONTACTS), parse("system.yaml", SYSTEM)])
}

fn actor(user: &str, profiles: &[&str]) -> Actor {
    let mut principal = Principal::new(user, profiles);
    principal.metadata.insert("teamId".into(), json!("t1"));
    Actor::user(principal)
}

fn clock() -> ManualClock {
    ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
}

/// Both backends, each with the sample contacts seeded beneath the engine.
async fn engines() -> Vec<(RecordsEngine, Arc<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("objectos.db"), Durability::Normal).unwrap();
    let stores: Vec<(Arc<dyn Store>, Option<tempfile::TempDir>)> =
        vec![(Arc::new(MemoryStore::new()), None), (Arc::new(sqlite), Some(dir))];
    let mut engines = Vec::new();
    for (store, dir) in stores {
        seed(&*store).await;
        let clock: Arc<dyn Clock> = Arc::new(clock());
        let engine = RecordsEngine::new(store.clone(), Arc::new(PermissionsDir::fixed(sets())), clock);
        engines.push((engine, store, dir));
    }
    engines
}

async fn seed(store: &dyn Store) {
    let rows = [
        ("c1", "u1", "t1", "eu", 100, "open"),
        ("c2", "u1", "t2", "eu", 200, "won"),
        ("c3", "u2", "t1", "us", 300, "open"),
        ("c4", "u2", "t2", "eu", 400, "lost"),
    ];
    let records = rows
        .iter()
        .map(|(id, owner, team, region, salary, status)| {
            let Value::Object(record) = json!({
                "id": id, "owner": owner, "created_at": "2025-06-01T00:00:00.000Z",
                "updated_at": "2025-06-01T00:00:00.000Z", "teamId": team, "region": region,
                "salary": salary, "status": status, "name": format!("contact {id}")
            }) else {
                unreachable!()
            };
            record
        })
        .collect();
    let import = RecordImport { records, on_conflict: OnConflict::Fail, replaceable: Filter::nothing() };
    store.import_records("contacts", import, &actor("seed", &[]), Utc::now()).await.unwrap();
}

fn ids(records: &[Value]) -> Vec<&str> {
    records.iter().map(|r| r["id"].as_str().unwrap()).collect()
}

/// A query as a guest or an API caller sends it: its JSON is parsed first
/// (which checks its sort paths), then answered.
async fn find(engine: &RecordsEngine, who: &Actor, query: Value) -> Result<Vec<Value>, HostError> {
    let query: Query = serde_json::from_value(query).map_err(|e| HostError::Invalid(e.to_string()))?;
    Ok(engine.find(who, "contacts", query).await?.records)
}

fn denied(result: Result<impl std::fmt::Debug, HostError>) -> String {
    match result {
        Err(HostError::Denied(reason)) => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn each_principal_reads_only_its_records_and_never_a_hidden_field() {
    for (engine, _, _) in engines().await {
        let sales = actor("u1", &["sales"]);
        let mine = find(&engine, &sales, json!({})).await.unwrap();
        assert_eq!(ids(&mine), ["c1", "c2"]);
        assert!(mine.iter().all(|r| r.get("salary").is_none() && r["owner"] == "u1"));
        assert_eq!(engine.count(&sales, "contacts", json!({})).await.unwrap(), 2);
        assert_eq!(engine.count(&sales, "contacts", json!({"status": "open"})).await.unwrap(), 1);

        // The record filter is in the query: a limit sees only permitted records.
        let first =
            find(&engine, &sales, json!({"limit": 1, "sort": [{"field": "name", "order": "desc"}]})).await;
        assert_eq!(ids(&first.unwrap()), ["c2"]);

        let manager = actor("m1", &["manager"]);
        assert_eq!(ids(&find(&engine, &manager, json!({})).await.unwrap()), ["c1", "c3"]);
        let admin = actor("a1", &["admin"]);
        assert_eq!(
            find(&engine, &admin, json!({"filter": {"salary": {"$gt": 150}}})).await.unwrap().len(),
            3
        );

        // A query naming a hidden field fails naming it: no oracle.
        for query in [
            json!({"filter": {"salary": {"$gt": 150}}}),
            json!({"filter": {"$or": [{"status": "open"}, {"salary.base": 1}]}}),
            json!({"sort": [{"field": "salary"}]}),
            json!({"fields": ["name", "salary"]}),
        ] {
            let reason = denied(find(&engine, &sales, query.clone()).await);
            assert!(reason.contains("`salary"), "{query}: {reason}");
        }
        assert!(denied(engine.count(&sales, "contacts", json!({"salary": 100})).await).contains("salary"));

        // Another spelling of the hidden field — an escape SQLite's JSON
        // paths would decode, a quoted or bracketed segment — is not a
        // field path at all: refused naming it, never counted.
        for spelling in ["sal\\u0061ry", "\"salary\"", "salary\\", "sal\u{7f}ary", "sal\u{0}ary"] {
            for result in [
                engine.count(&sales, "contacts", json!({ spelling: {"$gt": 150} })).await.map(|_| ()),
                find(&engine, &sales, json!({"sort": [{"field": spelling}]})).await.map(|_| ()),
            ] {
                match result {
                    Err(HostError::Invalid(message)) => {
                        assert!(message.contains("is not a field path"), "{spelling:?}: {message}")
                    }
                    other => panic!("{spelling:?} was answered: {other:?}"),
                }
            }
        }

        // A projection keeps `id` and what was asked for.
        let projected = find(&engine, &sales, json!({"fields": ["name"]})).await.unwrap();
        assert_eq!(projected[0], json!({"id": "c1", "name": "contact c1"}));

        // Objects list only what the principal reads, without hidden fields.
        let objects = engine.objects(&sales).await.unwrap();
        assert_eq!(objects.len(), 1);
        assert!(objects[0].fields.contains(&"status".to_string()));
        assert!(!objects[0].fields.contains(&"salary".to_string()));
        let nobody = actor("x", &["guest"]);
        assert!(engine.objects(&nobody).await.unwrap().is_empty());
        assert!(denied(find(&engine, &nobody, json!({})).await).contains("none of the profiles"));
        assert!(
            denied(engine.count(&admin, "invoices", json!({})).await).contains("no permission set covers")
        );
    }
}

#[tokio::test]
async fn cursors_page_through_permitted_records_and_belong_to_their_query() {
    for (engine, _, _) in engines().await {
        let viewer = actor("v", &["viewer"]);
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let query = Query {
                sort: vec![SortKey { field: FieldPath::parse("region").unwrap(), order: Default::default() }],
                limit: Some(1),
                cursor: cursor.clone(),
                ..Query::default()
            };
            let page = engine.find(&viewer, "contacts", query).await.unwrap();
            seen.extend(page.records.iter().map(|r| r["id"].as_str().unwrap().to_string()));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["c1", "c2", "c4", "c3"], "eu before us, then by id");
        let first =
            engine.find(&viewer, "contacts", Query { limit: Some(1), ..Query::default() }).await.unwrap();
        let other_query =
            Query { filter: Some(json!({"region": "eu"})), cursor: first.next_cursor, ..Query::default() };
        let error = engine.find(&viewer, "contacts", other_query).await.unwrap_err();
        assert!(matches!(&error, HostError::Invalid(m) if m.contains("different query")), "{error:?}");
        let forged = Query { cursor: Some("not-a-cursor".into()), ..Query::default() };
        assert!(matches!(engine.find(&viewer, "contacts", forged).await, Err(HostError::Invalid(_))));
        let huge = Query { limit: Some(5000), ..Query::default() };
        assert!(matches!(engine.find(&viewer, "contacts", huge).await, Err(HostError::LimitExceeded(_))));
    }
}

/// Every stored contact, as the store holds it.
async fn snapshot(store: &Arc<dyn Store>) -> Vec<Record> {
    let find = RecordFind { filter: Filter::everything(), sort: vec![], after: None, limit: 1000 };
    store.find_records("contacts", find).await.unwrap()
}

#[tokio::test]
async fn writes_are_refused_whole_and_leave_nothing_behind() {
    for (engine, store, _) in engines().await {
        let before = snapshot(&store).await;
        let sales = actor("u1", &["sales"]);

        // A non-editable field anywhere refuses the whole insert.
        let rows = vec![json!({"name": "ok"}), json!({"name": "bad", "status": "won"})];
        assert!(denied(engine.insert(&sales, "contacts", rows).await).contains("`status`"));
        // System fields are the engine's.
        let error = engine.insert(&sales, "contacts", vec![json!({"owner": "u2"})]).await.unwrap_err();
        assert!(
            matches!(&error, HostError::Invalid(m) if m.contains("`owner` is set by the engine")),
            "{error:?}"
        );
        // WITH CHECK: a regional principal cannot create or move records out of its region.
        let regional = actor("r1", &["regional"]);
        let reason = denied(engine.insert(&regional, "contacts", vec![json!({"region": "us"})]).await);
        assert!(reason.contains("outside"), "{reason}");
        let reason = denied(engine.update(&regional, "contacts", json!({}), json!({"region": "us"})).await);
        assert!(reason.contains("outside"), "{reason}");
        // Editing a hidden, non-editable field is refused; deleting without the permission too.
        assert!(
            denied(engine.update(&sales, "contacts", json!({}), json!({"salary": 1})).await)
                .contains("salary")
        );
        assert!(denied(engine.delete(&sales, "contacts", json!({})).await).contains("delete"));
        assert_eq!(snapshot(&store).await, before, "no refused write changed anything");

        // Allowed writes, with the counts callers rely on.
        let new = engine.insert(&sales, "contacts", vec![json!({"name": "new"})]).await.unwrap();
        let mine = find(&engine, &sales, json!({"filter": {"name": "new"}})).await.unwrap();
        assert_eq!(ids(&mine), [new[0].as_str()]);
        assert_eq!(mine[0]["owner"], "u1");
        assert_eq!(mine[0]["created_at"], "2026-01-01T00:00:00.000Z");
        let report = engine.update(&sales, "contacts", json!({}), json!({"note": "seen"})).await.unwrap();
        assert_eq!((report.matched, report.changed, report.skipped), (3, 3, 0));
        let report = engine.update(&regional, "contacts", json!({}), json!({"status": "won"})).await.unwrap();
        assert_eq!((report.matched, report.changed, report.skipped), (3, 3, 0));
        // Read everything, delete only one's own: the rest are skipped.
        let pruner = actor("u2", &["viewer", "pruner"]);
        let report = engine.delete(&pruner, "contacts", json!({})).await.unwrap();
        assert_eq!((report.matched, report.changed, report.skipped), (5, 2, 3));
        assert_eq!(snapshot(&store).await.len(), 3);
    }
}

#[tokio::test]
async fn denials_and_changes_are_access_events() {
    for (engine, store, _) in engines().await {
        let sales = actor("u1", &["sales"]);
        let seeded = store.access_events(0, 100).await.unwrap().len() as u64;
        let _ = find(&engine, &sales, json!({"filter": {"salary": 1}})).await;
        engine.insert(&sales, "contacts", vec![json!({"name": "n"})]).await.unwrap();
        engine.update(&sales, "contacts", json!({"name": "nobody"}), json!({"x": 1})).await.unwrap();
        let events = store.access_events(seeded, 100).await.unwrap();
        let kinds: Vec<AccessEventType> = events.iter().map(|e| e.event).collect();
        // An update that changed nothing is not an event.
        assert_eq!(kinds, [AccessEventType::PermissionDenied, AccessEventType::RecordsInserted]);
        assert_eq!(events[0].actor.user_id, "u1");
        assert_eq!(events[0].resource, "objects/contacts");
        assert_eq!(events[0].data["action"], "read");
        assert!(events[0].data["reason"].as_str().unwrap().contains("salary"));
        assert_eq!(events[1].data, json!({"inserted": 1}));
        assert_eq!(events[1].seq, events[0].seq + 1, "gapless");
    }
}

#[tokio::test]
async fn imports_need_records_import_and_keep_system_fields() {
    for (engine, store, _) in engines().await {
        let old =
            json!({"id": "c9", "owner": "grace", "created_at": "2020-01-01T10:00:00+02:00", "name": "old"});
        let viewer = actor("v", &["viewer"]);
        let reason = denied(engine.import(&viewer, "contacts", vec![old.clone()], OnConflict::Fail).await);
        assert!(reason.contains("records.import"), "{reason}");
        let admin = actor("a1", &["admin"]);
        let report = engine.import(&admin, "contacts", vec![old.clone()], OnConflict::Fail).await.unwrap();
        assert_eq!((report.inserted, report.replaced, report.skipped), (1, 0, 0));
        let stored = find(&engine, &admin, json!({"filter": {"id": "c9"}})).await.unwrap();
        assert_eq!(stored[0]["owner"], "grace");
        assert_eq!(stored[0]["created_at"], "2020-01-01T08:00:00.000Z", "normalized to UTC");
        let newer = json!({"id": "c9", "owner": "grace", "name": "new"});
        let error =
            engine.import(&admin, "contacts", vec![newer.clone()], OnConflict::Fail).await.unwrap_err();
        assert!(matches!(&error, HostError::Invalid(m) if m.contains("already exists")), "{error:?}");
        let skipped = engine.import(&admin, "contacts", vec![newer.clone()], OnConflict::Skip).await.unwrap();
        assert_eq!(skipped.skipped, 1);
        let replaced = engine.import(&admin, "contacts", vec![newer], OnConflict::Replace).await.unwrap();
        assert_eq!(replaced.replaced, 1);
        assert_eq!(find(&engine, &admin, json!({"filter": {"id": "c9"}})).await.unwrap()[0]["name"], "new");
        // Sales holds records.import but sees only its own contacts: an
        // import naming c3 (u2's) would tell whether c3 exists, under any
        // policy, so sales may not import at all — whatever the ids.
        let sales = actor("u1", &["sales"]);
        for (id, policy) in [("c3", OnConflict::Fail), ("c3", OnConflict::Skip), ("c404", OnConflict::Skip)] {
            let probe = json!({"id": id, "owner": "u1", "name": "probe"});
            let reason = denied(engine.import(&sales, "contacts", vec![probe], policy).await);
            assert!(reason.contains("needs read access to all of its records"), "{reason}");
        }
        // Seeing every contact, it may import, but only within what it may
        // create, and not over records it may not edit.
        let clerk = actor("u1", &["viewer", "sales"]);
        let theirs = json!({"id": "c3", "owner": "u1", "name": "hijack"});
        let reason = denied(engine.import(&clerk, "contacts", vec![theirs], OnConflict::Replace).await);
        assert!(reason.contains("may not edit"), "{reason}");
        let foreign = json!({"id": "c10", "owner": "u2"});
        assert!(
            denied(engine.import(&clerk, "contacts", vec![foreign], OnConflict::Fail).await)
                .contains("outside")
        );
        let bad_time = json!({"id": "c11", "created_at": "yesterday"});
        let error = engine.import(&admin, "contacts", vec![bad_time], OnConflict::Fail).await.unwrap_err();
        assert!(matches!(&error, HostError::Invalid(m) if m.contains("records[0].created_at")), "{error:?}");
        assert_eq!(snapshot(&store).await.len(), 5);
    }
}

/// A queue whose jobs run under the test sets, with their records in `store`.
async fn queue_under_sets(
    store: Arc<dyn Store>,
    permissions: Arc<PermissionsDir>,
) -> objectos_engine::queue::Queue {
    let clock: Arc<dyn Clock> = Arc::new(clock());
    let records = RecordsEngine::new(store.clone(), permissions.clone(), clock);
    let services = Services { records: Arc::new(records), ..Services::in_memory() };
    let (queue, _) = crate::harness::queue_with(store, QueueConfig::default(), permissions, services).await;
    queue.registry().register("roundtrip", objectos_test_guests::SDK_ROUNDTRIP.to_vec()).await.unwrap();
    queue
}

#[tokio::test]
async fn a_handler_running_as_sales_sees_only_its_contacts_and_never_salary() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    seed(&*store).await;
    let queue = queue_under_sets(store, Arc::new(PermissionsDir::fixed(sets()))).await;
    let workers = queue.start();
    let sales = actor("u1", &["sales"]).principal;
    let input = json!({"action": "iterate", "object": "contacts", "page": 1, "sort": "name"});
    let job = queue.enqueue(&sales, NewJob::new("roundtrip", input)).await.unwrap();
    let job = queue.wait_final(&job.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let seen = job.result.unwrap();
    assert_eq!(ids(seen.as_array().unwrap()), ["c1", "c2"]);
    assert!(seen.as_array().unwrap().iter().all(|r| r.get("salary").is_none()));
    workers.shutdown(None).await;
}

#[tokio::test]
async fn a_handler_cannot_count_a_hidden_field_by_another_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("objectos.db"), Durability::Normal).unwrap());
    seed(&*store).await;
    let queue = queue_under_sets(store.clone(), Arc::new(PermissionsDir::fixed(sets()))).await;
    let workers = queue.start();
    let sales = actor("u1", &["sales"]).principal;
    for (filter, refusal) in [
        (json!({"salary": {"$gt": 150}}), "denied: field `salary` of `contacts` is not visible"),
        (json!({"sal\\u0061ry": {"$gt": 150}}), "is not a field path"),
    ] {
        let input = json!({"action": "count", "object": "contacts", "filter": filter});
        let job = queue.enqueue(&sales, NewJob::new("roundtrip", input)).await.unwrap();
        let job = queue.wait_final(&job.id).await.unwrap();
        assert_eq!(job.status, JobStatus::Failed, "{filter} was answered: {:?}", job.result);
        let error = job.error.unwrap();
        assert!(error.contains(refusal), "{filter}: {error}");
    }
    workers.shutdown(None).await;
}

#[tokio::test]
async fn a_read_only_principal_cannot_enqueue_a_writing_handler_and_revocation_fails_the_job() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("contacts.yaml"), CONTACTS).unwrap();
    std::fs::write(dir.path().join("system.yaml"), SYSTEM).unwrap();
    let permissions = Arc::new(PermissionsDir::open(dir.path()).unwrap());
    let queue = queue_under_sets(store.clone(), permissions.clone()).await;

    let viewer = actor("v", &["viewer"]).principal;
    let error =
        queue.enqueue(&viewer, NewJob::new("roundtrip", json!({"action": "objects"}))).await.unwrap_err();
    let QueueError::Forbidden { missing, .. } = &error else { panic!("{error:?}") };
    let missing = missing.to_string();
    for capability in ["records-write", "records-import", "artifacts", "artifacts-read"] {
        assert!(missing.contains(capability), "{missing}");
    }
    assert!(
        !missing.contains("records,") && !missing.starts_with("records "),
        "reading is granted: {missing}"
    );
    let events: Vec<_> = store
        .access_events(0, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == AccessEventType::PermissionDenied)
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].event, events[0].resource.as_str()),
        (AccessEventType::PermissionDenied, "handlers/roundtrip")
    );

    // Granted at enqueue, revoked before it runs: the job fails for good, naming what is missing.
    let sales = actor("u1", &["sales"]).principal;
    let job = queue.enqueue(&sales, NewJob::new("roundtrip", json!({"action": "objects"}))).await.unwrap();
    std::fs::write(
        dir.path().join("system.yaml"),
        SYSTEM.replace("    sales: [records.import, artifacts.write, artifacts.read]\n", ""),
    )
    .unwrap();
    assert_eq!(permissions.reload().unwrap(), 2);
    let workers = queue.start();
    let job = queue.wait_final(&job.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.attempts, 1, "not retried");
    let error = job.error.unwrap();
    assert!(error.contains("records-import"), "{error}");
    workers.shutdown(None).await;
}
