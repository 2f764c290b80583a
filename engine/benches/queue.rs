//! Queue throughput: enqueue rate and enqueue-then-drain of no-op wasm jobs,
//! on the in-memory and SQLite stores, with lifecycle events (the audit
//! outbox) written for every state change.
//!
//! Run with `cargo bench -p objectos-engine --bench queue`. Set `JOBS`
//! (default 100000), `ROUNDS` (default 3), `CONCURRENCY` (default 64) and
//! `BACKEND` (`in-memory` or `sqlite`, a prefix of the names printed; default
//! all) to change the run.
//! Prints the median of the rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use objectos_engine::clock::SystemClock;
use objectos_engine::jobs::NewJob;
use objectos_engine::principal::Principal;
use objectos_engine::queue::{AllowAll, Queue, QueueConfig, QueueParts};
use objectos_engine::registry::Registry;
use objectos_engine::sandbox::{Sandbox, SandboxConfig, Services};
use objectos_engine::store::{MemoryStore, SqliteStore, Store, sqlite::Durability};
use serde_json::json;

const BATCH: usize = 1000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Enqueues `jobs` no-op jobs in batches, then starts the workers and waits
/// until every job has finished. Returns (enqueue/s, enqueue-then-drain/s).
async fn round(sandbox: Arc<Sandbox>, store: Arc<dyn Store>, jobs: usize, concurrency: usize) -> (f64, f64) {
    let clock = Arc::new(SystemClock);
    let registry = Arc::new(Registry::new(store.clone(), sandbox.clone(), clock.clone(), None));
    registry.register("noop", objectos_test_guests::NOOP.to_vec()).await.unwrap();
    let queue = Queue::new(QueueParts {
        store,
        registry,
        sandbox,
        clock,
        policy: Arc::new(AllowAll),
        services: Services::in_memory(),
        config: QueueConfig { concurrency, ..Default::default() },
    });
    let caller = Principal::new("bench", &["admin"]);

    let started = Instant::now();
    for chunk in 0..jobs.div_ceil(BATCH) {
        let batch =
            (0..BATCH.min(jobs - chunk * BATCH)).map(|i| NewJob::new("noop", json!({"i": i}))).collect();
        queue.enqueue_batch(&caller, batch).await.unwrap();
    }
    let enqueued = started.elapsed();

    let workers = queue.start();
    while (queue.attempts_finished() as usize) < jobs {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let total = started.elapsed();
    workers.stop().await;
    let (counts, _) = queue.stats().await.unwrap();
    assert_eq!(counts.by_status.get("completed").copied().unwrap_or(0) as usize, jobs);
    (jobs as f64 / enqueued.as_secs_f64(), jobs as f64 / total.as_secs_f64())
}

fn main() {
    let jobs = env("JOBS", 100_000);
    let rounds = env("ROUNDS", 3);
    let concurrency = env("CONCURRENCY", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut config = SandboxConfig::new();
    config.max_concurrent_jobs(concurrency as u32);
    let sandbox = Arc::new(Sandbox::new(&config).unwrap());

    runtime.block_on(async {
        type MakeStore<'a> = &'a dyn Fn(&tempfile::TempDir) -> Arc<dyn Store>;
        let backends: [(&str, MakeStore<'_>); 3] = [
            ("in-memory", &|_| Arc::new(MemoryStore::new())),
            ("sqlite (WAL, synchronous=FULL)", &|dir| {
                Arc::new(SqliteStore::open(dir.path().join("bench.db"), Durability::Full).unwrap())
            }),
            ("sqlite (WAL, synchronous=NORMAL)", &|dir| {
                Arc::new(SqliteStore::open(dir.path().join("bench.db"), Durability::Normal).unwrap())
            }),
        ];
        let only = std::env::var("BACKEND").unwrap_or_default();
        for (name, make) in backends.into_iter().filter(|(name, _)| name.starts_with(only.as_str())) {
            let mut enqueue = Vec::new();
            let mut drain = Vec::new();
            for _ in 0..rounds {
                let dir = tempfile::tempdir().unwrap();
                let (e, d) = round(sandbox.clone(), make(&dir), jobs, concurrency).await;
                enqueue.push(e);
                drain.push(d);
            }
            println!(
                "{name}: {jobs} no-op jobs, concurrency {concurrency}: enqueue median {:.0} jobs/s; \
                 enqueue-then-drain median {:.0} jobs/s",
                median(enqueue),
                median(drain)
            );
        }
    });
}
