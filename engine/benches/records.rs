//! Records on SQLite under permission: 100,000 contacts (100 owners,
//! three statuses, two regions).
//!
//! 1. The cost of record-level security: the same find and count as an
//!    unrestricted `admin` and as a `regional` principal whose record
//!    filter (`region ∈ {eu, us}`) admits every record, so the difference
//!    is the injected filter alone; and as `sales` (`owner = userId`, 1 %
//!    of the records, answered from the owner index).
//! 2. A wasm handler (the SDK's `contacts-summary` example) paging through
//!    all 100,000 records as `admin`, 500 per page: records/s.
//!
//! Prints medians of RUNS repetitions. Run with
//! `cargo bench -p objectos-engine --bench records`
//! (`RECORDS=…`, `RUNS=…` to change the size).

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use objectos_engine::clock::SystemClock;
use objectos_engine::permissions::{PermissionSet, Permissions, PermissionsDir};
use objectos_engine::principal::Principal;
use objectos_engine::records::RecordsEngine;
use objectos_engine::sandbox::{JobRun, Query, RecordsService, Sandbox, SandboxConfig, Services};
use objectos_engine::store::{Actor, Record, SqliteStore, Store, sqlite::Durability};
use serde_json::{Value, json};

const STATUSES: [&str; 3] = ["open", "won", "lost"];

const SETS: &str = r#"
name: contacts
objectName: contacts
profiles:
  admin:    { allowRead: true, allowEdit: true }
  regional: { allowRead: true, viewFilters: { region: { $in: [eu, us] } } }
  sales:    { allowRead: true, viewFilters: { owner: "{{ userId }}" } }
"#;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

async fn seed(store: &dyn Store, count: usize) {
    let actor = Actor::user(Principal::new("seed", &[]));
    let now = objectos_engine::store::records::timestamp(Utc::now());
    for start in (0..count).step_by(10_000) {
        let batch: Vec<Record> = (start..(start + 10_000).min(count))
            .map(|i| {
                let Value::Object(record) = json!({
                    "id": format!("c{i:07}"), "owner": format!("u{}", i % 100),
                    "created_at": now, "updated_at": now,
                    "name": format!("contact {i}"), "status": STATUSES[i % 3],
                    "region": if i % 2 == 0 { "eu" } else { "us" }, "amount": (i * 7919) % 10_000,
                }) else {
                    unreachable!()
                };
                record
            })
            .collect();
        store.insert_records("contacts", batch, &actor, Utc::now()).await.expect("seed");
    }
}

fn principal(user: &str, profile: &str) -> Actor {
    Actor::user(Principal::new(user, &[profile]))
}

/// Milliseconds of `f`, median of `runs`.
async fn timed<F, Fut>(runs: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    median(samples)
}

#[tokio::main]
async fn main() {
    let count = env("RECORDS", 100_000);
    let runs = env("RUNS", 9);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("objectos.db"), Durability::Normal).unwrap());
    let started = Instant::now();
    seed(&*store, count).await;
    println!("seeded {count} records in {:.2} s", started.elapsed().as_secs_f64());

    let set = PermissionSet::parse(std::path::Path::new("contacts.yaml"), SETS).unwrap();
    let permissions = Arc::new(PermissionsDir::fixed(Permissions::new(vec![set])));
    let engine = Arc::new(RecordsEngine::new(store.clone(), permissions, Arc::new(SystemClock)));

    let queries: [(&str, Value); 3] = [
        ("count status=open", json!(null)),
        ("find status=open, 100", json!({"filter": {"status": "open"}, "limit": 100})),
        ("find by amount desc, 100", json!({"sort": [{"field": "amount", "order": "desc"}], "limit": 100})),
    ];
    println!(
        "{:<28} {:>12} {:>12} {:>9} {:>12}",
        "query (median ms)", "unrestricted", "regional", "overhead", "sales (1 %)"
    );
    for (label, query) in queries {
        let mut medians = Vec::new();
        for who in [principal("a", "admin"), principal("r", "regional"), principal("u7", "sales")] {
            let engine = engine.clone();
            let query = query.clone();
            medians.push(
                timed(runs, || {
                    let (engine, who, query) = (engine.clone(), who.clone(), query.clone());
                    async move {
                        if query.is_null() {
                            engine.count(&who, "contacts", json!({"status": "open"})).await.unwrap();
                        } else {
                            let query: Query = serde_json::from_value(query).unwrap();
                            engine.find(&who, "contacts", query).await.unwrap();
                        }
                    }
                })
                .await,
            );
        }
        let overhead = (medians[1] / medians[0] - 1.0) * 100.0;
        println!(
            "{label:<28} {:>12.2} {:>12.2} {:>8.1}% {:>12.2}",
            medians[0], medians[1], overhead, medians[2]
        );
    }

    let sandbox = Sandbox::new(SandboxConfig::new().max_concurrent_jobs(1)).unwrap();
    let handler = sandbox.compile(objectos_engine::examples::CONTACTS_SUMMARY).unwrap();
    let mut rates = Vec::new();
    let mut memory = Vec::new();
    for _ in 0..runs.min(5) {
        let mut job = JobRun::new(
            "bench",
            "contacts-summary",
            Principal::new("a", &["admin"]),
            r#"{"object":"contacts"}"#,
        );
        job.grants = objectos_engine::sandbox::CapabilitySet::all();
        job.limits.fuel = u64::MAX / 2;
        job.limits.timeout = std::time::Duration::from_secs(600);
        job.services = Services { records: engine.clone(), ..Services::in_memory() };
        let started = Instant::now();
        let outcome = sandbox.run(&handler, job).await;
        let seconds = started.elapsed().as_secs_f64();
        assert!(
            matches!(outcome.kind, objectos_engine::sandbox::OutcomeKind::Completed { .. }),
            "{:?}",
            outcome.kind
        );
        rates.push(count as f64 / seconds);
        memory.push(outcome.usage.peak_memory as f64 / (1 << 20) as f64);
    }
    println!(
        "wasm handler paging {count} records (500/page): {:.0} records/s, guest peak memory {:.1} MiB (medians)",
        median(rates),
        median(memory)
    );
}
