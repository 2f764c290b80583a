//! Queue throughput: enqueue rate and enqueue-then-drain of no-op wasm jobs,
//! on the in-memory and SQLite stores, with lifecycle events (the audit
//! outbox) written for every state change.
//!
//! Run with `cargo bench -p objectos-engine --bench queue`. Set `JOBS`
//! (default 100000), `ROUNDS` (default 3), `CONCURRENCY` (default 64),
//! `PREFETCH` (jobs claimed ahead of a free slot, default 0) and
//! `BACKEND` (`in-memory` or `sqlite`, a prefix of the names printed; default
//! all) to change the run. `PRUNE_EVERY_MS=N` keeps completed jobs for no
//! time and runs the maintenance task (rescue and retention pruning) every
//! N ms during the drain, to measure the queue with retention at work.
//! `AUDIT` is `on` (the audit log fed every 250 ms during the round, as a
//! node does), `off`, or `both` (default: each backend twice, to compare).
//! Prints the median of the rounds: the enqueue rate, the drain rate (from
//! starting the workers on the full queue until the last job is recorded),
//! and the two phases end to end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use objectos_engine::audit::feed::Auditor;
use objectos_engine::jobs::NewJob;
use objectos_engine::principal::Principal;
use objectos_engine::queue::{AllowAll, Queue, QueueConfig, Retention};
use objectos_engine::sandbox::{Sandbox, SandboxConfig};
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

/// Jobs per second in each phase of one round.
struct Rates {
    enqueue: f64,
    drain: f64,
    end_to_end: f64,
}

/// Enqueues `jobs` no-op jobs in batches, then starts the workers and waits
/// until every job has finished.
async fn round(
    sandbox: Arc<Sandbox>,
    store: Arc<dyn Store>,
    jobs: usize,
    concurrency: usize,
    prune_every: Option<Duration>,
    audit: bool,
) -> Rates {
    let feeding = audit.then(|| Auditor::new(store.clone(), "bench").start(Duration::from_millis(250), None));
    let config = match prune_every {
        None => QueueConfig { concurrency, prefetch: env("PREFETCH", 0), ..Default::default() },
        Some(every) => QueueConfig {
            concurrency,
            maintenance_interval: every,
            retention: Retention { completed: Some(Duration::ZERO), ..Default::default() },
            ..Default::default()
        },
    };
    let queue = Queue::builder(store, sandbox, Arc::new(AllowAll)).config(config).build();
    queue.registry().register("noop", objectos_test_guests::NOOP.to_vec()).await.unwrap();
    let caller = Principal::new("bench", &["admin"]);

    let started = Instant::now();
    for chunk in 0..jobs.div_ceil(BATCH) {
        let batch =
            (0..BATCH.min(jobs - chunk * BATCH)).map(|i| NewJob::new("noop", json!({"i": i}))).collect();
        queue.enqueue_batch(&caller, batch).await.unwrap();
    }
    let enqueued = started.elapsed();

    let draining = Instant::now();
    let workers = queue.start();
    while (queue.attempts_finished() as usize) < jobs {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drained = draining.elapsed();
    let total = started.elapsed();
    workers.stop().await;
    if let Some(feeding) = feeding {
        let catching_up = Instant::now();
        feeding.stop().await;
        println!("  audit log caught up {} ms after the drain", catching_up.elapsed().as_millis());
    }
    let (counts, _) = queue.stats().await.unwrap();
    let completed = counts.by_status.get("completed").copied().unwrap_or(0) as usize;
    if prune_every.is_none() {
        assert_eq!(completed, jobs);
    } else {
        println!("  pruned during the drain: {} of {jobs} jobs", jobs - completed);
    }
    let rate = |took: Duration| jobs as f64 / took.as_secs_f64();
    Rates { enqueue: rate(enqueued), drain: rate(drained), end_to_end: rate(total) }
}

fn main() {
    objectos_alloc::keep_freed_memory();
    let jobs = env("JOBS", 100_000);
    let rounds = env("ROUNDS", 3);
    let concurrency = env("CONCURRENCY", 64);
    let prune_every =
        std::env::var("PRUNE_EVERY_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
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
        let audit_modes: &[bool] = match std::env::var("AUDIT").as_deref() {
            Ok("on") => &[true],
            Ok("off") => &[false],
            _ => &[false, true],
        };
        for (name, make) in backends.into_iter().filter(|(name, _)| name.starts_with(only.as_str())) {
            for &audit in audit_modes {
                let mut results = Vec::new();
                for _ in 0..rounds {
                    let dir = tempfile::tempdir().unwrap();
                    results.push(round(sandbox.clone(), make(&dir), jobs, concurrency, prune_every, audit).await);
                }
                let median_of = |f: fn(&Rates) -> f64| median(results.iter().map(f).collect());
                println!(
                    "{name}, audit {}: {jobs} no-op jobs, concurrency {concurrency}, prefetch {}, medians: enqueue {:.0} jobs/s; \
                     drain {:.0} jobs/s; enqueue-then-drain end to end {:.0} jobs/s",
                    if audit { "on" } else { "off" },
                    env("PREFETCH", 0),
                    median_of(|r| r.enqueue),
                    median_of(|r| r.drain),
                    median_of(|r| r.end_to_end)
                );
            }
        }
    });
}
