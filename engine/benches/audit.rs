//! The audit log: appends per second and the time to verify a long log,
//! on SQLite (WAL, synchronous=FULL) as a node stores it.
//!
//! Run with `cargo bench -p objectos-engine --bench audit`. `ENTRIES`
//! (default 1000000) is the log verified; `FEED` (default 200000) the job
//! events turned into entries by the feeder; `ROUNDS` (default 3). Prints
//! medians of:
//! - append: entries chained and stored per second, in the feeder's batches;
//! - feed: outbox events read, turned into entries, chained and stored per
//!   second (the whole path a node runs);
//! - verify: seconds to recompute the chain of `ENTRIES` entries from their
//!   stored bytes, reading them page by page from the database (opened
//!   afresh, as `objectos audit verify` does).

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use objectos_engine::audit::feed::{Auditor, BATCH};
use objectos_engine::audit::{AuditActor, AuditEntry, AuditJob, AuditOutcome, Checkpoint, Verification, log};
use objectos_engine::jobs::NewJob;
use objectos_engine::principal::Principal;
use objectos_engine::queue::{AllowAll, Queue};
use objectos_engine::sandbox::{Sandbox, SandboxConfig};
use objectos_engine::store::sqlite::{Durability, audit_path};
use objectos_engine::store::{AuditAppend, AuditRow, SqliteStore, Store};
use serde_json::json;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(dir.path().join("objectos.db"), Durability::Full).unwrap())
}

/// A typical entry: a completed job.
fn entry(n: usize) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at: Utc::now(),
        event: "job.completed".into(),
        actor: AuditActor { user_id: "ada".into(), profiles: vec!["admin".into()] },
        resource: format!("jobs/job_{n:020}"),
        action: "complete".into(),
        outcome: AuditOutcome::Success,
        job: Some(AuditJob {
            job_id: format!("job_{n:020}"),
            job_name: "report-generation".into(),
            attempt: 1,
            error: None,
            result_summary: Some("{\"rows\":1200,\"bytes\":48213}".into()),
        }),
        metadata: json!({"from": "running", "to": "completed", "outcome": "completed", "usage": {"fuel": 120000, "memory": 1048576}}),
        node_id: "node-1".into(),
    }
}

/// Appends `count` entries in batches; returns entries per second.
async fn append(store: &dyn Store, count: usize) -> f64 {
    let started = Instant::now();
    let mut head = Checkpoint { seq: 0, hash: objectos_engine::audit::GENESIS.into() };
    let mut cursors = store.audit_head().await.unwrap().cursors;
    let mut n = 0;
    while n < count {
        let entries = (n..(n + BATCH).min(count)).map(entry).collect();
        let rows = AuditRow::chain(&head, entries);
        let last = rows.last().unwrap().stored.clone();
        n += rows.len();
        cursors.jobs += rows.len() as u64;
        store.append_audit(AuditAppend { head: head.clone(), rows, cursors }).await.unwrap();
        head = Checkpoint { seq: last.seq, hash: last.hash };
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Enqueues `count` jobs (one `job.enqueued` event each), then times the
/// feeder turning them into entries; returns entries per second.
async fn feed(sandbox: Arc<Sandbox>, store: Arc<dyn Store>, count: usize) -> f64 {
    let queue = Queue::builder(store.clone(), sandbox, Arc::new(AllowAll)).build();
    queue.registry().register("noop", objectos_test_guests::NOOP.to_vec()).await.unwrap();
    let caller = Principal::new("bench", &["admin"]);
    for chunk in 0..count.div_ceil(1000) {
        let jobs =
            (0..1000.min(count - chunk * 1000)).map(|i| NewJob::new("noop", json!({"i": i}))).collect();
        queue.enqueue_batch(&caller, jobs).await.unwrap();
    }
    let auditor = Auditor::new(store, "bench");
    let started = Instant::now();
    let appended = auditor.catch_up().await.unwrap();
    appended as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    objectos_alloc::keep_freed_memory();
    let entries = env("ENTRIES", 1_000_000);
    let fed = env("FEED", 200_000);
    let rounds = env("ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sandbox = Arc::new(Sandbox::new(&SandboxConfig::new()).unwrap());
    runtime.block_on(async {
        let (mut appends, mut feeds, mut verifies) = (Vec::new(), Vec::new(), Vec::new());
        let mut size = 0;
        for _ in 0..rounds {
            let dir = tempfile::tempdir().unwrap();
            let store = sqlite(&dir);
            appends.push(append(&*store, entries).await);
            // Verified as `objectos audit verify` does: a fresh process
            // opening the database.
            drop(store);
            let store = sqlite(&dir);
            let started = Instant::now();
            match log::verify(&*store, &[], false).await.unwrap() {
                Verification::Valid { count, .. } => assert_eq!(count as usize, entries),
                broken => panic!("{broken:?}"),
            }
            verifies.push(started.elapsed().as_secs_f64());
            let log = audit_path(&dir.path().join("objectos.db"));
            size = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
            let dir = tempfile::tempdir().unwrap();
            feeds.push(feed(sandbox.clone(), sqlite(&dir), fed).await);
        }
        println!(
            "audit on SQLite (WAL, synchronous=FULL), medians of {rounds}: append {:.0} entries/s; \
             feed from the outbox {:.0} entries/s ({fed} job events); verify {entries} entries in {:.2} s \
             ({:.0} entries/s); {:.0} bytes per entry on disk",
            median(appends),
            median(feeds),
            median(verifies.clone()),
            entries as f64 / median(verifies),
            size as f64 / entries as f64
        );
    });
}
