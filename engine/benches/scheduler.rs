//! Scheduler: 100,000 active schedules on the embedded SQLite store (full
//! durability), their fires spread uniformly over each minute (schedule `i`
//! is `i % 60 * * * * *`: about 1,667 fires at every second), with workers
//! running the no-op jobs they enqueue.
//!
//! Run with `cargo bench -p objectos-engine --bench scheduler`. Set
//! `SCHEDULES` (default 100000) and `MINUTES` (default 2) to change the run;
//! `RUN_JOBS=0` leaves the fired jobs waiting (the scheduler alone).
//! The bench wakes the scheduler exactly as `objectos serve` does (sleep
//! until the earliest fire time less the lead, then fire everything due)
//! and prints the fire lateness as p50/p99/max: until each job is stored
//! and runnable (per minute and overall) and until a worker started it;
//! the resident memory after loading and at its peak; and the time to add
//! and to load the schedules.

use std::sync::Arc;
use std::time::Instant;

use objectos_engine::clock::{Clock, SystemClock};
use objectos_engine::ownership::Scope;
use objectos_engine::principal::Principal;
use objectos_engine::queue::{AllowAll, Queue, QueueConfig};
use objectos_engine::sandbox::{Sandbox, SandboxConfig};
use objectos_engine::schedule::{ScheduleSpec, Scheduler, SchedulerConfig};
use objectos_engine::store::{SqliteStore, Store, sqlite::Durability};
use serde_json::json;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A line of /proc/self/status, in MiB.
fn memory(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(label: &str, mut late_ms: Vec<i64>) {
    late_ms.sort_unstable();
    println!(
        "{label:<10} fires {:>7}  lateness p50 {:>4} ms  p99 {:>4} ms  max {:>4} ms",
        late_ms.len(),
        percentile(&late_ms, 0.5),
        percentile(&late_ms, 0.99),
        late_ms.last().copied().unwrap_or(0)
    );
}

/// The engine's parts over the database at `path`.
async fn engine(path: &std::path::Path) -> (Queue, Arc<dyn Store>, Arc<dyn Clock>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path, Durability::Full).unwrap());
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::new().max_concurrent_jobs(64)).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let queue = Queue::builder(store.clone(), sandbox, Arc::new(AllowAll))
        .clock(clock.clone())
        .config(QueueConfig { concurrency: 64, ..Default::default() })
        .build();
    queue.registry().register("noop", objectos_test_guests::NOOP.to_vec()).await.unwrap();
    (queue, store, clock)
}

/// Adds the schedules, then runs the measurement in a fresh process (so
/// its memory is that of a node started on 100,000 schedules).
fn main() {
    objectos_alloc::keep_freed_memory();
    const DATABASE: &str = "OBJECTOS_BENCH_DATABASE";
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if let Ok(path) = std::env::var(DATABASE) {
        runtime.block_on(measure(path.as_ref()));
        return;
    }
    let schedules = env("SCHEDULES", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("objectos.db");
    runtime.block_on(async {
        let (queue, store, _) = engine(&path).await;
        let scheduler = Scheduler::new(queue, store, SchedulerConfig::default());
        let started = Instant::now();
        let owner = Principal::new("bench", &["admin"]);
        let mut adding = tokio::task::JoinSet::new();
        for worker in 0..64 {
            let (scheduler, owner) = (scheduler.clone(), owner.clone());
            adding.spawn(async move {
                for i in (worker..schedules).step_by(64) {
                    let spec = ScheduleSpec::new(format!("{} * * * * *", i % 60), "noop", json!({"i": i}));
                    scheduler.add(&owner, Some(format!("s{i:06}")), spec).await.unwrap();
                }
            });
        }
        adding.join_all().await;
        println!("{schedules} schedules added in {:.1} s", started.elapsed().as_secs_f64());
    });
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .env(DATABASE, &path)
        .status()
        .unwrap();
    assert!(status.success());
}

async fn measure(path: &std::path::Path) {
    let minutes = env("MINUTES", 2);
    let baseline = memory("VmRSS:");
    let (queue, store, clock) = engine(path).await;
    let opened = memory("VmRSS:");
    let scheduler = Scheduler::new(queue.clone(), store, SchedulerConfig::default());
    let started = Instant::now();
    let count = scheduler.load().await.unwrap();
    println!(
        "a fresh node loaded {count} schedules in {:.2} s; resident memory {:.0} MiB \
         ({baseline:.0} MiB before opening the engine, {opened:.0} MiB before loading)",
        started.elapsed().as_secs_f64(),
        memory("VmRSS:"),
    );

    let workers = (env("RUN_JOBS", 1) == 1).then(|| queue.start());
    // Start measuring at the next whole minute, so each minute is one full cycle.
    let now = clock.now();
    let begin = now + chrono::Duration::seconds(60 - i64::from(chrono::Timelike::second(&now)));
    let mut per_minute = vec![Vec::new(); minutes];
    let mut fired_jobs = Vec::new();
    let end = begin + chrono::Duration::minutes(minutes as i64);
    while let Some(wake) = scheduler.next_wake().filter(|_| scheduler.next_due() < Some(end)) {
        clock.sleep_until(wake).await;
        let report = scheduler.run_due().await.unwrap();
        for fired in report.fired.into_iter().filter(|f| f.due >= begin && f.due < end) {
            let minute = ((fired.due - begin).num_seconds() / 60) as usize;
            per_minute[minute].push(fired.late.num_milliseconds().max(0));
            fired_jobs.push((fired.job.id, fired.due));
        }
    }
    println!("stored: from a fire's time until its job is committed and runnable (0: stored ahead, waiting)");
    for (minute, late) in per_minute.iter().enumerate() {
        summary(&format!("minute {}", minute + 1), late.clone());
    }
    summary("overall", per_minute.concat());
    if let Some(workers) = workers {
        // Let the last fires run, then see when each job started.
        clock.sleep_until(clock.now() + chrono::Duration::seconds(2)).await;
        workers.stop().await;
        let mut started = Vec::with_capacity(fired_jobs.len());
        for (id, due) in &fired_jobs {
            let job = queue.get(&Scope::Any, id).await.unwrap();
            let first = job.attempt_log.first().map(|a| a.started_at).or(job.started_at);
            started.push(first.map_or(i64::MAX, |at| (at - *due).num_milliseconds().max(0)));
        }
        println!("started: from a fire's time until a worker started its job");
        summary("overall", started);
    }
    println!("peak resident memory {:.0} MiB", memory("VmHWM:"));
}
