//! The audit log end to end on SQLite: what each lifecycle path records,
//! and that verification catches any change to the stored entries.

use std::sync::Arc;

use chrono::Duration;
use objectos_engine::audit::feed::Auditor;
use objectos_engine::audit::{AuditEntry, AuditOutcome, Checkpoint, Verification, log};
use objectos_engine::clock::{Clock, SystemClock};
use objectos_engine::examples;
use objectos_engine::jobs::{Backoff, JobStatus, NewJob};
use objectos_engine::ownership::Scope;
use objectos_engine::principal::Principal;
use objectos_engine::queue::{AllowAll, QueueConfig};
use objectos_engine::records::RecordsEngine;
use objectos_engine::sandbox::{MemoryArtifacts, Services};
use objectos_engine::schedule::{OverlapPolicy, ScheduleSpec, Scheduler, SchedulerConfig};
use objectos_engine::store::{
    AccessEvent, AccessEventType, Actor, AuditHead, AuditQuery, AuditStore, SqliteStore, Store,
    sqlite::{Durability, audit_path},
};
use rusqlite::{Connection, params};
use serde_json::json;

use crate::harness;

fn ada() -> Principal {
    Principal::new("ada", &["admin"])
}

fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("objectos.db"), Durability::Normal).unwrap();
    (Arc::new(store), dir)
}

fn no_jitter(initial_ms: u64) -> Backoff {
    Backoff { initial_ms, factor: 2.0, max_ms: 60_000, jitter: 0.0 }
}

/// The entries about one job, parsed.
async fn entries_of(store: &dyn Store, job_id: &str) -> Vec<AuditEntry> {
    let query = AuditQuery { job_id: Some(job_id.into()), ..AuditQuery::page(0, 1000) };
    let stored = store.audit_entries(query).await.unwrap();
    stored.iter().map(|e| serde_json::from_slice(&e.bytes).unwrap()).collect()
}

fn events(entries: &[AuditEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.event.as_str()).collect()
}

fn assert_valid(verdict: Verification, count: u64) {
    match verdict {
        Verification::Valid { count: n, .. } => assert_eq!(n, count),
        broken => panic!("expected a valid log: {broken:?}"),
    }
}

fn broken_at(verdict: Verification) -> u64 {
    match verdict {
        Verification::Broken { seq, .. } => seq,
        valid => panic!("expected a broken log: {valid:?}"),
    }
}

#[tokio::test]
async fn every_lifecycle_path_reaches_the_log_with_its_job_fields() {
    let (store, _dir) = sqlite();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let services = Services {
        records: Arc::new(RecordsEngine::unrestricted(store.clone(), clock)),
        artifacts: Arc::new(MemoryArtifacts::new()),
    };
    let (queue, manual) =
        harness::queue_with(store.clone(), QueueConfig::default(), Arc::new(AllowAll), services).await;
    queue.registry().register("tasks", examples::TASKS.to_vec()).await.unwrap();
    let enqueue = |job: NewJob| {
        let queue = queue.clone();
        async move { queue.enqueue(&ada(), job).await.unwrap().id }
    };
    let success = enqueue(NewJob::new("noop", json!("x"))).await;
    let flaky = enqueue(NewJob {
        backoff: Some(no_jitter(10)),
        ..NewJob::new("tasks", json!({"task": "flaky", "succeedOnAttempt": 2}))
    })
    .await;
    let fatal = enqueue(NewJob::new("hostile", json!("fatal:bad input"))).await;
    let timeout = enqueue(NewJob {
        timeout: Some(150),
        max_retries: Some(0),
        ..NewJob::new("hostile", json!("sleep:60000"))
    })
    .await;
    let writer = enqueue(NewJob::new("hostile", json!("insert:contacts"))).await;
    let cancelled =
        enqueue(NewJob { run_at: Some(manual.now() + Duration::hours(1)), ..NewJob::new("noop", json!(1)) })
            .await;
    queue.cancel(&Scope::Any, &cancelled).await.unwrap();
    let scheduler = Scheduler::new(queue.clone(), store.clone(), SchedulerConfig::default());
    let spec =
        ScheduleSpec { overlap: OverlapPolicy::Allow, ..ScheduleSpec::new("* * * * * *", "noop", json!(1)) };
    scheduler.add(&ada(), Some("every-second".into()), spec).await.unwrap();

    let workers = queue.start();
    queue.wait_until(&flaky, |j| j.status == JobStatus::Retrying).await.unwrap();
    manual.advance(Duration::seconds(1));
    scheduler.run_due().await.unwrap();
    for id in [&success, &flaky, &fatal, &timeout, &writer] {
        queue.wait_final(id).await.unwrap();
    }
    let fired = loop {
        let jobs = queue.list(&Scope::Any, &Default::default()).await.unwrap();
        if let Some(job) = jobs.into_iter().find(|j| j.schedule_id.is_some() && j.status.is_final()) {
            break job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    workers.shutdown(None).await;
    Auditor::new(store.clone(), "node-1").catch_up().await.unwrap();

    let ok = entries_of(&*store, &success).await;
    assert_eq!(events(&ok), ["job.enqueued", "job.started", "job.completed"]);
    let done = ok[2].job.as_ref().unwrap();
    assert_eq!((ok[2].outcome, done.job_name.as_str(), done.attempt), (AuditOutcome::Success, "noop", 1));
    assert!(done.result_summary.is_some(), "a completed job's result is summarised");
    assert!(ok.iter().all(|e| e.actor.user_id == "ada" && e.resource == format!("jobs/{success}")));
    assert!(ok.iter().all(|e| e.node_id == "node-1"));

    let retried = entries_of(&*store, &flaky).await;
    assert_eq!(
        events(&retried),
        ["job.enqueued", "job.started", "job.retried", "job.started", "job.completed"]
    );
    let retry = retried[2].job.as_ref().unwrap();
    assert_eq!((retried[2].outcome, retry.attempt), (AuditOutcome::Failure, 1));
    assert!(retry.error.is_some(), "the retried attempt's error");
    assert_eq!(retried[4].job.as_ref().unwrap().attempt, 2);

    let failed = entries_of(&*store, &fatal).await;
    assert_eq!(events(&failed), ["job.enqueued", "job.started", "job.failed"]);
    assert!(failed[2].job.as_ref().unwrap().error.as_deref().unwrap().contains("bad input"));

    let timed_out = entries_of(&*store, &timeout).await;
    assert_eq!(events(&timed_out), ["job.enqueued", "job.started", "job.timed_out", "job.failed"]);

    assert_eq!(events(&entries_of(&*store, &cancelled).await), ["job.enqueued", "job.cancelled"]);

    let fire = entries_of(&*store, &fired.id).await;
    assert_eq!(events(&fire), ["job.scheduled", "job.started", "job.completed"]);
    assert_eq!((fire[0].action.as_str(), &fire[0].metadata["scheduleId"]), ("fire", &json!("every-second")));
    let created = AuditQuery { resource: Some("schedules/every-second".into()), ..AuditQuery::page(0, 10) };
    assert_eq!(store.audit_entries(created).await.unwrap().len(), 1, "schedule.created");

    // The records the job changed, per object, with the job. (Its time is
    // the records engine's clock, here not the queue's manual one.)
    let mut changes = entries_of(&*store, &writer).await;
    changes.sort_by_key(|e| e.event != "records.inserted");
    assert_eq!(events(&changes)[0], "records.inserted");
    assert_eq!(changes.len(), 4, "enqueued, started, completed and the change");
    assert_eq!(changes[0].metadata["inserted"], json!(1));
    assert_eq!(changes[0].resource, "objects/contacts");
    assert_eq!(changes[0].job.as_ref().unwrap().job_name, "hostile");

    let handlers = AuditQuery { event: Some("handler.registered".into()), ..AuditQuery::page(0, 10) };
    assert_eq!(store.audit_entries(handlers).await.unwrap().len(), 3, "hostile, noop, tasks");
    let head = store.audit_head().await.unwrap();
    assert_valid(log::verify(&*store, &[], false).await.unwrap(), head.seq);
}

/// A small log on SQLite, and a second connection to its file to tamper with it.
async fn small_log() -> (Arc<dyn Store>, tempfile::TempDir, Connection) {
    let (store, dir) = sqlite();
    for n in 0..3 {
        let actor = Actor { principal: Principal::new("eve", &["sales"]), job_id: None };
        let data = json!({"action": "read", "reason": format!("refusal {n}")});
        let event = AccessEvent::new(
            AccessEventType::PermissionDenied,
            &actor,
            "objects/contacts".into(),
            data,
            chrono::Utc::now(),
        );
        store.record_access(event).await.unwrap();
    }
    Auditor::new(store.clone(), "node-1").catch_up().await.unwrap();
    let conn = Connection::open(audit_path(&dir.path().join("objectos.db"))).unwrap();
    (store, dir, conn)
}

#[tokio::test]
async fn a_new_log_file_is_created_with_large_pages() {
    let (_store, _dir, conn) = small_log().await;
    let page_size: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    assert_eq!(page_size, 16384, "set before the file is created, or it stays at SQLite's 4096");
}

fn row(conn: &Connection, seq: u64) -> (String, String) {
    conn.query_row("SELECT bytes, hash FROM audit_log WHERE seq = ?1", [seq as i64], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
}

fn set_row(conn: &Connection, seq: u64, bytes: &str, hash: &str) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE audit_log SET bytes = ?2, hash = ?3 WHERE seq = ?1",
        params![seq as i64, bytes, hash],
    )
}

#[tokio::test]
async fn any_single_byte_change_to_a_stored_entry_is_detected() {
    let (store, _dir, conn) = small_log().await;
    assert_valid(log::verify(&*store, &[], false).await.unwrap(), 3);
    let (mut detected, mut refused) = (0, 0);
    for seq in 1..=3 {
        let (bytes, hash) = row(&conn, seq);
        // Every byte of the entry, changed to every other printable byte
        // that keeps it text (the database refuses some as broken JSON).
        for at in 0..bytes.len() {
            for replacement in [b' ', b'"', b'0', b'9', b'a', b'Z', b'{', b'}', b',', b':', b'\\'] {
                let mut changed = bytes.clone().into_bytes();
                if changed[at] == replacement {
                    continue;
                }
                changed[at] = replacement;
                let changed = String::from_utf8(changed).unwrap();
                if set_row(&conn, seq, &changed, &hash).is_err() {
                    refused += 1;
                    continue;
                }
                assert_eq!(
                    broken_at(log::verify(&*store, &[], false).await.unwrap()),
                    seq,
                    "byte {at} of entry {seq}"
                );
                detected += 1;
            }
        }
        for at in 0..hash.len() {
            let mut changed = hash.clone().into_bytes();
            changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
            set_row(&conn, seq, &bytes, std::str::from_utf8(&changed).unwrap()).unwrap();
            assert!(
                broken_at(log::verify(&*store, &[], false).await.unwrap()) <= seq + 1,
                "hash char {at} of entry {seq}"
            );
            detected += 1;
        }
        set_row(&conn, seq, &bytes, &hash).unwrap();
    }
    assert!(detected > 1000, "{detected} changes detected, {refused} refused by the database");
    assert_valid(log::verify(&*store, &[], false).await.unwrap(), 3);
}

#[tokio::test]
async fn deletion_reordering_and_truncation_are_detected() {
    let (store, _dir, conn) = small_log().await;
    let checkpoint = log::checkpoint(&*store).await.unwrap();
    assert_eq!(checkpoint.seq, 3);
    let rows: Vec<(String, String)> = (1..=3).map(|seq| row(&conn, seq)).collect();
    let restore = |conn: &Connection| {
        conn.execute("DELETE FROM audit_log", []).unwrap();
        for (i, (bytes, hash)) in rows.iter().enumerate() {
            conn.execute(
                "INSERT INTO audit_log (seq, bytes, hash, at, event, user_id, resource, job_id)
                 VALUES (?1, ?2, ?3, json_extract(?2, '$.at'), json_extract(?2, '$.event'),
                 json_extract(?2, '$.actor.userId'), json_extract(?2, '$.resource'),
                 json_extract(?2, '$.job.jobId'))",
                params![i as i64 + 1, bytes, hash],
            )
            .unwrap();
        }
        conn.execute("UPDATE audit_head SET seq = 3, hash = ?1", [&rows[2].1]).unwrap();
    };

    conn.execute("DELETE FROM audit_log WHERE seq = 2", []).unwrap();
    assert_eq!(broken_at(log::verify(&*store, &[], false).await.unwrap()), 2, "a deleted entry");
    restore(&conn);

    set_row(&conn, 1, &rows[1].0, &rows[1].1).unwrap();
    set_row(&conn, 2, &rows[0].0, &rows[0].1).unwrap();
    assert_eq!(broken_at(log::verify(&*store, &[], false).await.unwrap()), 1, "two entries swapped");
    restore(&conn);

    conn.execute("DELETE FROM audit_log WHERE seq = 3", []).unwrap();
    assert_eq!(
        broken_at(log::verify(&*store, &[], false).await.unwrap()),
        3,
        "the head still names the removed end"
    );
    // A forger who also rewinds the head leaves a shorter valid chain:
    // only a checkpoint kept elsewhere tells.
    conn.execute("UPDATE audit_head SET seq = 2, hash = ?1", [&rows[1].1]).unwrap();
    assert_valid(log::verify(&*store, &[], false).await.unwrap(), 2);
    assert_eq!(
        broken_at(log::verify(&*store, std::slice::from_ref(&checkpoint), false).await.unwrap()),
        3,
        "truncated"
    );
    restore(&conn);

    let forged = Checkpoint { seq: 2, hash: rows[2].1.clone() };
    assert_eq!(
        broken_at(log::verify(&*store, &[forged], false).await.unwrap()),
        2,
        "a checkpoint with another hash"
    );
    assert_valid(log::verify(&*store, &[checkpoint], false).await.unwrap(), 3);
}

/// The log's table as the first releases kept it, named `table`: an entry's
/// bytes and hash, the query columns generated from the bytes.
fn first_log_table(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (
            seq INTEGER PRIMARY KEY,
            bytes TEXT NOT NULL,
            hash TEXT NOT NULL,
            at TEXT GENERATED ALWAYS AS (json_extract(bytes, '$.at')) VIRTUAL,
            event TEXT GENERATED ALWAYS AS (json_extract(bytes, '$.event')) VIRTUAL,
            user_id TEXT GENERATED ALWAYS AS (json_extract(bytes, '$.actor.userId')) VIRTUAL,
            resource TEXT GENERATED ALWAYS AS (json_extract(bytes, '$.resource')) VIRTUAL,
            job_id TEXT GENERATED ALWAYS AS (json_extract(bytes, '$.job.jobId')) VIRTUAL
        );"
    )
}

/// Puts `rows` and `head` back inside the database at `db`, as the release
/// before the log had its own file kept them, the move not yet applied.
fn keep_log_inside(db: &std::path::Path, rows: &[(i64, String, String)], head: &AuditHead) {
    let old = Connection::open(db).unwrap();
    old.execute_batch(&format!(
        "{}
         CREATE TABLE audit_head (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL,
             jobs INTEGER NOT NULL, schedules INTEGER NOT NULL, access INTEGER NOT NULL,
             pruned_seq INTEGER, pruned_hash TEXT);
         DELETE FROM schema_migrations WHERE version = 7;",
        first_log_table("audit_log")
    ))
    .unwrap();
    for (seq, bytes, hash) in rows {
        old.execute(
            "INSERT INTO audit_log (seq, bytes, hash) VALUES (?1, ?2, ?3)",
            params![seq, bytes, hash],
        )
        .unwrap();
    }
    let cursors = head.cursors;
    old.execute(
        "INSERT INTO audit_head VALUES (1, ?1, ?2, ?3, ?4, ?5, NULL, NULL)",
        params![
            head.seq as i64,
            head.hash,
            cursors.jobs as i64,
            cursors.schedules as i64,
            cursors.access as i64
        ],
    )
    .unwrap();
}

/// Opens the store at `db`, checking the database holds no log any more.
fn reopen(db: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(db, Durability::Normal).unwrap();
    let inside: i64 = Connection::open(db)
        .unwrap()
        .query_row("SELECT count(*) FROM sqlite_master WHERE name LIKE 'audit%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(inside, 0, "the database still holds a log");
    store
}

#[tokio::test]
async fn a_log_kept_inside_an_older_database_moves_to_its_own_file_intact() {
    let (store, dir, conn) = small_log().await;
    let head = store.audit_head().await.unwrap();
    let entries = store.audit_entries(AuditQuery::page(0, 100)).await.unwrap();
    let rows: Vec<(i64, String, String)> = (1..=head.seq)
        .map(|seq| {
            let (bytes, hash) = row(&conn, seq);
            (seq as i64, bytes, hash)
        })
        .collect();
    drop((store, conn));
    let db = dir.path().join("objectos.db");

    // A crash after the copy committed, before the database's migration
    // did: the log's file already holds it, and it is not copied twice.
    keep_log_inside(&db, &rows, &head);
    let store = reopen(&db);
    assert_eq!(store.audit_head().await.unwrap(), head);
    drop(store);

    // The first open after an upgrade: the log's file is new, the log is
    // copied into it with its head and outbox cursors, and still verifies.
    keep_log_inside(&db, &rows, &head);
    for suffix in ["", "-wal", "-shm"] {
        std::fs::remove_file(format!("{}{suffix}", audit_path(&db).display())).ok();
    }
    let store = reopen(&db);
    assert_eq!(store.audit_head().await.unwrap(), head);
    assert_eq!(store.audit_entries(AuditQuery::page(0, 100)).await.unwrap(), entries);
    assert_valid(log::verify(&store, &[], false).await.unwrap(), head.seq);
    assert_eq!(Auditor::new(Arc::new(store), "node-1").catch_up().await.unwrap(), 0, "nothing audited twice");
}

#[tokio::test]
async fn a_log_file_whose_query_columns_were_generated_keeps_its_entries_and_queries() {
    let (store, dir, conn) = small_log().await;
    let head = store.audit_head().await.unwrap();
    let entries = store.audit_entries(AuditQuery::page(0, 100)).await.unwrap();
    drop(store);
    // The log file as its first release wrote it: the query columns
    // generated from each entry's bytes.
    conn.execute_batch(&format!(
        "{}
        INSERT INTO generated (seq, bytes, hash) SELECT seq, bytes, hash FROM audit_log;
        DROP TABLE audit_log;
        ALTER TABLE generated RENAME TO audit_log;
        DELETE FROM schema_migrations WHERE version > 1;",
        first_log_table("generated")
    ))
    .unwrap();
    drop(conn);

    let store = SqliteStore::open(dir.path().join("objectos.db"), Durability::Normal).unwrap();
    assert_eq!(store.audit_head().await.unwrap(), head);
    assert_eq!(store.audit_entries(AuditQuery::page(0, 100)).await.unwrap(), entries);
    let denied = AuditQuery { event: Some("permission.denied".into()), ..AuditQuery::page(0, 100) };
    assert_eq!(store.audit_entries(denied).await.unwrap().len(), 3, "queried by a stored column");
    let eve = AuditQuery { user_id: Some("eve".into()), ..AuditQuery::page(1, 100) };
    assert_eq!(store.audit_entries(eve).await.unwrap(), entries[1..], "and by another, paged");
    assert_valid(log::verify(&store, &[], false).await.unwrap(), head.seq);
}
