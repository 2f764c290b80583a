//! The queue through its Rust API: enqueue, priorities, retries with
//! backoff, timeouts, cancel, unique keys, and the lifecycle events.
//! Time-dependent tests use a manual clock; none sleeps.

use std::sync::Arc;

use chrono::{Duration, Utc};
use objectos_engine::clock::{Clock, ManualClock};
use objectos_engine::jobs::{Backoff, JobStatus, NewJob, Priority, lifecycle::check_path};
use objectos_engine::ownership::Scope;
use objectos_engine::principal::Principal;
use objectos_engine::queue::{AllowAll, Policy, Queue, QueueConfig, QueueError, Workers};
use objectos_engine::registry::Registry;
use objectos_engine::sandbox::CapabilitySet;
use objectos_engine::store::{Cancelled, JobStore, MemoryStore, SqliteStore, Store, sqlite::Durability};
use serde_json::json;

use crate::harness::{self, shared_sandbox};

struct GrantNothing;

impl Policy for GrantNothing {
    fn grants(&self, _: &Principal) -> CapabilitySet {
        CapabilitySet::empty()
    }
    fn may_impersonate(&self, _: &Principal) -> bool {
        false
    }
    fn scope(&self, principal: &Principal, _: &str) -> Scope {
        Scope::Owner(principal.user_id.clone())
    }
}

struct TestQueue {
    queue: Queue,
    store: Arc<dyn Store>,
    clock: ManualClock,
    workers: Option<Workers>,
}

fn ada() -> Principal {
    Principal::new("ada", &["admin"])
}

async fn queue_with(store: Arc<dyn Store>, config: QueueConfig, policy: Arc<dyn Policy>) -> TestQueue {
    let (queue, clock) = harness::queue(store.clone(), config, policy).await;
    TestQueue { queue, store, clock, workers: None }
}

async fn memory_queue(config: QueueConfig) -> TestQueue {
    queue_with(Arc::new(MemoryStore::new()), config, Arc::new(AllowAll)).await
}

impl TestQueue {
    fn start(&mut self) {
        self.workers = Some(self.queue.start());
    }

    async fn enqueue(&self, job: NewJob) -> String {
        self.queue.enqueue(&ada(), job).await.unwrap().id
    }

    async fn events_of(&self, id: &str) -> Vec<objectos_engine::jobs::JobEvent> {
        let events = self.store.events(0, 10_000).await.unwrap();
        events.into_iter().filter(|e| e.job_id == id).collect()
    }
}

fn hostile(action: &str) -> NewJob {
    NewJob::new("hostile", json!(action))
}

fn no_jitter(initial_ms: u64) -> Backoff {
    Backoff { initial_ms, factor: 2.0, max_ms: 24 * 3_600_000, jitter: 0.0 }
}

#[tokio::test]
async fn priority_order_with_concurrency_one() {
    let mut q = memory_queue(QueueConfig { concurrency: 1, ..Default::default() }).await;
    let mut ids = Vec::new();
    for priority in [Priority::Low, Priority::Normal, Priority::Critical, Priority::High, Priority::Normal] {
        ids.push(q.enqueue(NewJob { priority, ..NewJob::new("noop", json!(priority.as_str())) }).await);
    }
    q.start();
    for id in &ids {
        assert_eq!(q.queue.wait_final(id).await.unwrap().status, JobStatus::Completed);
    }
    let events = q.store.events(0, 1000).await.unwrap();
    let started: Vec<String> = events
        .iter()
        .filter(|e| e.event.as_str() == "job.started")
        .map(|e| ids.iter().position(|id| *id == e.job_id).unwrap().to_string())
        .collect();
    assert_eq!(started, ["2", "3", "1", "4", "0"], "critical, high, normal (oldest first), normal, low");
}

#[tokio::test]
async fn retries_follow_the_backoff_and_stop_after_max_retries() {
    let mut q = memory_queue(QueueConfig::default()).await;
    let id = q
        .enqueue(NewJob { max_retries: Some(2), backoff: Some(no_jitter(1000)), ..hostile("retryable:busy") })
        .await;
    q.start();
    let first = q.queue.wait_until(&id, |j| j.status == JobStatus::Retrying).await.unwrap();
    assert_eq!(first.attempts, 1);
    assert_eq!(first.run_at, q.clock.now() + Duration::milliseconds(1000), "first retry waits initialMs");

    q.clock.advance(Duration::milliseconds(1000));
    let second =
        q.queue.wait_until(&id, |j| j.attempts == 2 && j.status == JobStatus::Retrying).await.unwrap();
    assert_eq!(second.run_at, q.clock.now() + Duration::milliseconds(2000), "then initialMs * factor");

    q.clock.advance(Duration::milliseconds(2000));
    let failed = q.queue.wait_final(&id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.attempts, 3, "1 + maxRetries runs");
    assert_eq!(failed.attempt_log.len(), 3);
    assert_eq!(failed.error.as_deref(), Some("retryable error: busy"));
    check_path(&q.events_of(&id).await).unwrap();
}

#[tokio::test]
async fn zero_retries_means_one_attempt() {
    let mut q = memory_queue(QueueConfig::default()).await;
    let id = q.enqueue(NewJob { max_retries: Some(0), ..hostile("retryable:busy") }).await;
    q.start();
    let job = q.queue.wait_final(&id).await.unwrap();
    assert_eq!((job.status, job.attempts, job.max_retries), (JobStatus::Failed, 1, 0));
}

#[tokio::test]
async fn permanent_failures_are_not_retried() {
    let mut q = memory_queue(QueueConfig::default()).await;
    let fatal = q.enqueue(hostile("fatal:bad input")).await;
    let fuel = q.enqueue(NewJob { fuel: Some(1_000_000), ..hostile("spin") }).await;
    q.start();
    for id in [fatal, fuel] {
        let job = q.queue.wait_final(&id).await.unwrap();
        assert_eq!((job.status, job.attempts), (JobStatus::Failed, 1), "{:?}", job.error);
    }
}

#[tokio::test]
async fn a_retry_never_occupies_a_slot() {
    let mut q = memory_queue(QueueConfig { concurrency: 1, ..Default::default() }).await;
    let waiting = q
        .enqueue(NewJob {
            max_retries: Some(5),
            backoff: Some(no_jitter(3_600_000)),
            ..hostile("retryable:later")
        })
        .await;
    q.start();
    q.queue.wait_until(&waiting, |j| j.status == JobStatus::Retrying).await.unwrap();
    // The clock never moves: the retry is an hour away, yet the only slot is free.
    let ready = q.enqueue(NewJob::new("noop", json!("x"))).await;
    assert_eq!(q.queue.wait_final(&ready).await.unwrap().status, JobStatus::Completed);
    assert_eq!(q.queue.get(&Scope::Any, &waiting).await.unwrap().status, JobStatus::Retrying);
}

#[tokio::test]
async fn a_timeout_stops_the_guest_and_is_retried() {
    let mut q = memory_queue(QueueConfig::default()).await;
    let id = q
        .enqueue(NewJob {
            timeout: Some(150),
            max_retries: Some(1),
            backoff: Some(no_jitter(10)),
            ..hostile("sleep:60000")
        })
        .await;
    q.start();
    let first = q.queue.wait_until(&id, |j| j.status == JobStatus::Retrying).await.unwrap();
    assert_eq!(first.attempt_log[0].outcome, "timeout");
    q.clock.advance(Duration::milliseconds(10));
    let job = q.queue.wait_final(&id).await.unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Failed, 2));
    let names: Vec<_> = q.events_of(&id).await.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        [
            "job.enqueued",
            "job.started",
            "job.timed_out",
            "job.retried",
            "job.started",
            "job.timed_out",
            "job.failed"
        ]
    );
}

#[tokio::test]
async fn cancel_stops_a_running_guest() {
    let mut q = memory_queue(QueueConfig::default()).await;
    let id =
        q.enqueue(NewJob { fuel: Some(u64::MAX / 2), timeout: Some(3_600_000), ..hostile("spin") }).await;
    q.start();
    q.queue.wait_until(&id, |j| j.status == JobStatus::Running).await.unwrap();
    q.queue.cancel(&Scope::Any, &id).await.unwrap();
    let job = q.queue.wait_final(&id).await.unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!(job.attempt_log[0].outcome, "cancelled");
    check_path(&q.events_of(&id).await).unwrap();
}

#[tokio::test]
async fn a_cancel_through_another_process_stops_the_guest_within_a_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Arc::new(SqliteStore::open(dir.path().join("q.db"), Durability::Normal).unwrap());
    let config = QueueConfig::default();
    let lease = config.lease;
    let mut q = queue_with(open(), config, Arc::new(AllowAll)).await;
    let id =
        q.enqueue(NewJob { fuel: Some(u64::MAX / 2), timeout: Some(3_600_000), ..hostile("spin") }).await;
    q.start();
    q.queue.wait_until(&id, |j| j.status == JobStatus::Running).await.unwrap();
    // Another process's store on the same file: it can only ask.
    let other = open();
    assert!(matches!(other.cancel(&id, Utc::now()).await.unwrap(), Cancelled::Requested(_)));
    q.clock.advance(Duration::from_std(lease / 3).unwrap());
    let job = q.queue.wait_final(&id).await.unwrap();
    assert_eq!((job.status, job.attempt_log[0].outcome.as_str()), (JobStatus::Cancelled, "cancelled"));
    check_path(&q.events_of(&id).await).unwrap();
}

#[tokio::test]
async fn cancel_waiting_and_retrying_jobs() {
    let mut q = memory_queue(QueueConfig::default()).await;
    let delayed =
        q.enqueue(NewJob { run_at: Some(q.clock.now() + Duration::hours(1)), ..hostile("runs") }).await;
    let retrying = q.enqueue(NewJob { backoff: Some(no_jitter(3_600_000)), ..hostile("retryable:x") }).await;
    q.start();
    q.queue.wait_until(&retrying, |j| j.status == JobStatus::Retrying).await.unwrap();
    for id in [&delayed, &retrying] {
        assert_eq!(q.queue.cancel(&Scope::Any, id).await.unwrap().status, JobStatus::Cancelled);
    }
    q.clock.advance(Duration::hours(2));
    let noop = q.enqueue(NewJob::new("noop", json!(1))).await;
    q.queue.wait_final(&noop).await.unwrap();
    assert_eq!(q.queue.get(&Scope::Any, &delayed).await.unwrap().attempts, 0, "a cancelled job never runs");
}

#[tokio::test]
async fn delayed_jobs_run_when_their_time_comes() {
    let mut q = memory_queue(QueueConfig::default()).await;
    let id =
        q.enqueue(NewJob { run_at: Some(q.clock.now() + Duration::seconds(30)), ..hostile("runs") }).await;
    assert_eq!(q.queue.get(&Scope::Any, &id).await.unwrap().status, JobStatus::Scheduled);
    q.start();
    q.clock.advance(Duration::seconds(30));
    assert_eq!(q.queue.wait_final(&id).await.unwrap().status, JobStatus::Completed);
}

#[tokio::test]
async fn unique_keys_refuse_a_second_active_job() {
    let q = memory_queue(QueueConfig::default()).await;
    let keyed = || NewJob { unique_key: Some("daily-report".into()), ..NewJob::new("noop", json!(1)) };
    let first = q.enqueue(keyed()).await;
    let error = q.queue.enqueue(&ada(), keyed()).await.unwrap_err();
    assert!(matches!(error, QueueError::Conflict(_)), "{error:?}");
    assert!(error.to_string().contains(&first), "{error}");
    q.queue.cancel(&Scope::Any, &first).await.unwrap();
    q.queue.enqueue(&ada(), keyed()).await.expect("a cancelled job frees its key");
}

#[tokio::test]
async fn bad_enqueues_are_refused_and_store_nothing() {
    let q = memory_queue(QueueConfig::default()).await;
    let cases: Vec<(NewJob, &str)> = vec![
        (NewJob::new("no-such-handler", json!(1)), "unknown handler `no-such-handler`"),
        (NewJob { timeout: Some(0), ..NewJob::new("noop", json!(1)) }, "`timeout` must be between"),
        (NewJob { fuel: Some(0), ..NewJob::new("noop", json!(1)) }, "`fuel` must be positive"),
        (NewJob { memory: Some(1024), ..NewJob::new("noop", json!(1)) }, "`memory` must be at least 1 MiB"),
        (
            NewJob { memory: Some(10 << 40), ..NewJob::new("noop", json!(1)) },
            "`memory` must be at most 268435456 bytes (the sandbox's cap)",
        ),
        (
            NewJob {
                backoff: Some(Backoff { factor: 0.5, ..Backoff::default() }),
                ..NewJob::new("noop", json!(1))
            },
            "backoff.factor",
        ),
        (NewJob { unique_key: Some(String::new()), ..NewJob::new("noop", json!(1)) }, "`uniqueKey`"),
        (NewJob::new("noop", json!("x".repeat(2 << 20))), "`data` is"),
    ];
    for (job, message) in cases {
        let error = q.queue.enqueue(&ada(), job).await.unwrap_err();
        assert!(error.to_string().contains(message), "{error} lacks {message}");
    }
    let batch = vec![NewJob::new("noop", json!(1)), NewJob::new("missing", json!(2))];
    let error = q.queue.enqueue_batch(&ada(), batch).await.unwrap_err();
    assert!(error.to_string().starts_with("job 1:"), "{error}");
    assert_eq!(q.queue.stats().await.unwrap().0.total, 0);
}

#[tokio::test]
async fn capabilities_are_checked_at_enqueue_and_impersonation_needs_permission() {
    let q = queue_with(Arc::new(MemoryStore::new()), QueueConfig::default(), Arc::new(GrantNothing)).await;
    let error = q.queue.enqueue(&ada(), hostile("runs")).await.unwrap_err();
    let QueueError::Forbidden { missing, .. } = &error else { panic!("{error:?}") };
    assert_eq!(*missing, CapabilitySet::all());
    assert!(error.to_string().contains("records, records-write"), "{error}");
    q.queue.enqueue(&ada(), NewJob::new("noop", json!(1))).await.expect("noop needs nothing");
    let other = NewJob { run_as: Some(Principal::new("grace", &[])), ..NewJob::new("noop", json!(1)) };
    assert!(matches!(q.queue.enqueue(&ada(), other).await.unwrap_err(), QueueError::Impersonation { .. }));
}

#[tokio::test]
async fn results_logs_progress_and_stats_are_kept() {
    let mut q = memory_queue(QueueConfig::default()).await;
    let id = q.enqueue(hostile("log")).await;
    q.start();
    let job = q.queue.wait_final(&id).await.unwrap();
    assert_eq!(job.result, Some(json!(null)));
    assert_eq!(job.progress.unwrap().percent, 50);
    let logs = q.queue.logs(&Scope::Any, &id).await.unwrap();
    assert_eq!(logs[0].lines[0].message, format!("hello from {id}"));
    let (counts, runs) = q.queue.stats().await.unwrap();
    assert_eq!(counts.by_status["completed"], 1);
    assert_eq!(runs.attempts, 1);
    assert!(runs.p50_ms > 0.0);
}

#[tokio::test]
async fn per_handler_concurrency_is_respected() {
    let config = QueueConfig {
        concurrency: 4,
        handler_concurrency: [("hostile".to_string(), 1)].into_iter().collect(),
        ..Default::default()
    };
    let mut q = memory_queue(config).await;
    let spinners: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(
                q.enqueue(NewJob { fuel: Some(u64::MAX / 2), timeout: Some(3_600_000), ..hostile("spin") })
                    .await,
            );
        }
        ids
    };
    q.start();
    q.queue.wait_until(&spinners[0], |j| j.status == JobStatus::Running).await.unwrap();
    // Other handlers still get the free slots.
    let noop = q.enqueue(NewJob::new("noop", json!(1))).await;
    q.queue.wait_final(&noop).await.unwrap();
    let running = q
        .queue
        .list(
            &Scope::Any,
            &objectos_engine::jobs::JobQuery { status: vec![JobStatus::Running], ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(running.len(), 1, "hostile is capped at 1");
    for id in &spinners {
        q.queue.cancel(&Scope::Any, id).await.unwrap();
    }
    q.workers.take().unwrap().stop().await;
}

#[tokio::test]
async fn a_job_pins_the_handler_version_current_at_enqueue() {
    let mut q = memory_queue(QueueConfig::default()).await;
    let old = q.enqueue(NewJob::new("hostile", json!("runs"))).await;
    let (record, _) =
        q.queue.registry().register("hostile", objectos_test_guests::NOOP.to_vec()).await.unwrap();
    assert_eq!(record.versions.len(), 2);
    let new = q.enqueue(NewJob::new("hostile", json!("echo me"))).await;
    q.start();
    // The old version counts runs; the new one (noop) echoes its input.
    assert_eq!(q.queue.wait_final(&old).await.unwrap().result, Some(json!(1)));
    assert_eq!(q.queue.wait_final(&new).await.unwrap().result, Some(json!("echo me")));
}

#[tokio::test]
async fn sqlite_queue_runs_jobs_to_completion() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("q.db"), Durability::Full).unwrap());
    let mut q = queue_with(store, QueueConfig::default(), Arc::new(AllowAll)).await;
    let batch: Vec<NewJob> = (0..50).map(|i| NewJob::new("noop", json!(i))).collect();
    let jobs = q.queue.enqueue_batch(&ada(), batch).await.unwrap();
    let retry = q
        .enqueue(NewJob { max_retries: Some(1), backoff: Some(no_jitter(5)), ..hostile("retryable:x") })
        .await;
    q.start();
    for job in &jobs {
        assert_eq!(q.queue.wait_final(&job.id).await.unwrap().status, JobStatus::Completed);
    }
    q.queue.wait_until(&retry, |j| j.status == JobStatus::Retrying).await.unwrap();
    q.clock.advance(Duration::milliseconds(5));
    assert_eq!(q.queue.wait_final(&retry).await.unwrap().attempts, 2);
    for job in jobs.iter().take(5) {
        check_path(&q.events_of(&job.id).await).unwrap();
    }
}

#[tokio::test]
async fn compiled_code_is_cached_on_disk_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Utc::now()));
    let first = Registry::new(store.clone(), shared_sandbox(), clock.clone(), Some(cache.clone()));
    let (record, _) = first.register("noop", objectos_test_guests::NOOP.to_vec()).await.unwrap();
    assert_eq!(first.stats().compiled.load(std::sync::atomic::Ordering::Relaxed), 1);

    // A restart: a new registry over the same store and cache loads, not compiles.
    let second = Registry::new(store.clone(), shared_sandbox(), clock.clone(), Some(cache.clone()));
    let handler = second.compiled(&record.sha256).await.unwrap();
    assert_eq!(handler.sha256(), record.sha256);
    assert_eq!(second.stats().compiled.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(second.stats().loaded_from_cache.load(std::sync::atomic::Ordering::Relaxed), 1);

    // A tampered cache entry is refused and recompiled.
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, bytes).unwrap();
    let third = Registry::new(store, shared_sandbox(), clock, Some(cache));
    third.compiled(&record.sha256).await.unwrap();
    assert_eq!(third.stats().compiled.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(third.stats().loaded_from_cache.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn invalid_uploads_are_refused_and_nothing_is_stored() {
    let q = memory_queue(QueueConfig::default()).await;
    let error = q.queue.registry().register("broken", b"not wasm".to_vec()).await.unwrap_err();
    assert!(error.to_string().contains("handler `broken`: not a WebAssembly binary"), "{error}");
    let error =
        q.queue.registry().register("bad name!", objectos_test_guests::NOOP.to_vec()).await.unwrap_err();
    assert!(error.to_string().contains("not a valid handler name"), "{error}");
    assert!(q.queue.registry().get("broken").await.is_err());
}

fn event_kinds(events: &[objectos_engine::jobs::JobEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

#[tokio::test]
async fn a_job_whose_worker_died_is_rescued_and_run_again() {
    let mut q = memory_queue(QueueConfig::default()).await;
    let id = q.enqueue(NewJob::new("noop", json!(1))).await;
    // A worker on another node claims the job and dies without a trace.
    let now = q.clock.now();
    let request = objectos_engine::store::ClaimRequest {
        now,
        limit: 1,
        exclude: vec![],
        owner: "node-that-died".into(),
        lease_until: now + Duration::seconds(30),
    };
    assert_eq!(q.store.claim(request).await.unwrap().len(), 1);
    q.start();
    assert!(q.queue.rescue_lapsed().await.unwrap().is_empty(), "the lease has not lapsed yet");
    q.clock.advance(Duration::seconds(31));
    assert_eq!(q.queue.rescue_lapsed().await.unwrap().len(), 1);
    let job = q.queue.wait_final(&id).await.unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Completed, 2));
    assert_eq!(job.attempt_log[0].outcome, "lease-expired");
    let events = q.events_of(&id).await;
    assert_eq!(
        event_kinds(&events),
        ["job.enqueued", "job.started", "job.rescued", "job.started", "job.completed"]
    );
    check_path(&events).unwrap();
}

#[tokio::test]
async fn a_starting_pool_takes_back_jobs_its_node_left_running() {
    let q = memory_queue(QueueConfig { node_id: "node-7".into(), ..Default::default() }).await;
    let id = q.enqueue(NewJob::new("noop", json!(1))).await;
    let now = q.clock.now();
    let request = objectos_engine::store::ClaimRequest {
        now,
        limit: 1,
        exclude: vec![],
        owner: "node-7".into(),
        lease_until: now + Duration::hours(1),
    };
    q.store.claim(request).await.unwrap();
    // The previous run of node-7 is gone: no need to wait out the lease.
    let workers = q.queue.start();
    let job = q.queue.wait_final(&id).await.unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Completed, 2));
    workers.stop().await;
}

#[tokio::test]
async fn shutdown_lets_running_jobs_finish_within_the_grace() {
    let q = memory_queue(QueueConfig::default()).await;
    let id = q.enqueue(hostile("sleep:200")).await;
    let workers = q.queue.start();
    q.queue.wait_until(&id, |j| j.status == JobStatus::Running).await.unwrap();
    // The manual clock never reaches the deadline: only finishing ends the wait.
    let report = workers.shutdown(Some(std::time::Duration::from_secs(60))).await;
    assert_eq!((report.in_flight, report.released), (1, 0));
    assert_eq!(q.queue.get(&Scope::Any, &id).await.unwrap().status, JobStatus::Completed);
}

#[tokio::test]
async fn shutdown_past_the_grace_releases_running_jobs_to_run_again() {
    let q = memory_queue(QueueConfig::default()).await;
    let id =
        q.enqueue(NewJob { fuel: Some(u64::MAX / 2), timeout: Some(3_600_000), ..hostile("spin") }).await;
    let workers = q.queue.start();
    q.queue.wait_until(&id, |j| j.status == JobStatus::Running).await.unwrap();
    let report = workers.shutdown(Some(std::time::Duration::ZERO)).await;
    assert_eq!((report.in_flight, report.released), (1, 1));
    let job = q.queue.get(&Scope::Any, &id).await.unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Pending, 0), "given back uncharged");
    assert_eq!(event_kinds(&q.events_of(&id).await), ["job.enqueued", "job.started", "job.released"]);
    // The next start runs it again.
    let workers = q.queue.start();
    q.queue.wait_until(&id, |j| j.status == JobStatus::Running).await.unwrap();
    q.queue.cancel(&Scope::Any, &id).await.unwrap();
    assert_eq!(q.queue.wait_final(&id).await.unwrap().attempts, 1);
    workers.stop().await;
    check_path(&q.events_of(&id).await).unwrap();
}

#[tokio::test]
async fn finished_jobs_are_pruned_after_their_retention() {
    let retention = objectos_engine::queue::Retention {
        completed: Some(std::time::Duration::from_secs(3600)),
        cancelled: None,
        failed: Some(std::time::Duration::from_secs(7200)),
    };
    let mut q = memory_queue(QueueConfig { max_retries: 0, retention, ..Default::default() }).await;
    let done = q.enqueue(NewJob::new("noop", json!(1))).await;
    let failed = q.enqueue(hostile("fatal:no")).await;
    let cancelled =
        q.enqueue(NewJob { run_at: Some(q.clock.now() + Duration::hours(9)), ..hostile("runs") }).await;
    q.queue.cancel(&Scope::Any, &cancelled).await.unwrap();
    q.start();
    q.queue.wait_final(&done).await.unwrap();
    q.queue.wait_final(&failed).await.unwrap();
    assert_eq!(q.queue.prune_finished().await.unwrap(), 0, "nothing is old enough yet");
    q.clock.advance(Duration::minutes(61));
    assert_eq!(q.queue.prune_finished().await.unwrap(), 1);
    assert!(matches!(q.queue.get(&Scope::Any, &done).await, Err(QueueError::NotFound(_))));
    q.clock.advance(Duration::hours(2));
    assert_eq!(q.queue.prune_finished().await.unwrap(), 1);
    assert!(q.queue.get(&Scope::Any, &cancelled).await.is_ok(), "cancelled jobs are kept for ever here");
}

#[tokio::test]
async fn prefetched_jobs_wait_for_a_slot_and_can_be_cancelled_while_they_wait() {
    let mut q = memory_queue(QueueConfig { concurrency: 1, prefetch: 2, ..Default::default() }).await;
    let mut spinners = Vec::new();
    for _ in 0..3 {
        spinners.push(
            q.enqueue(NewJob { fuel: Some(u64::MAX / 2), timeout: Some(3_600_000), ..hostile("spin") }).await,
        );
    }
    q.start();
    for id in &spinners {
        q.queue.wait_until(id, |j| j.status == JobStatus::Running).await.unwrap();
    }
    // One slot and two claimed ahead: a fourth job is not claimed.
    let noop = q.enqueue(NewJob::new("noop", json!(1))).await;
    assert_eq!(q.queue.get(&Scope::Any, &noop).await.unwrap().status, JobStatus::Pending);

    // A job claimed ahead is cancelled while the first still runs: it ends
    // at once, without ever running.
    let waiting = q.queue.wait_final(&spinners[2]);
    q.queue.cancel(&Scope::Any, &spinners[2]).await.unwrap();
    let job = waiting.await.unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!((job.attempt_log[0].outcome.as_str(), job.attempt_log[0].usage.fuel), ("cancelled", 0));
    assert_eq!(q.queue.get(&Scope::Any, &spinners[0]).await.unwrap().status, JobStatus::Running);

    // The slot passes on, and the freed claim takes the fourth job.
    for id in &spinners[..2] {
        q.queue.cancel(&Scope::Any, id).await.unwrap();
        assert_eq!(q.queue.wait_final(id).await.unwrap().status, JobStatus::Cancelled);
    }
    assert_eq!(q.queue.wait_final(&noop).await.unwrap().status, JobStatus::Completed);
    q.workers.take().unwrap().stop().await;
    for id in &spinners {
        check_path(&q.events_of(id).await).unwrap();
    }
}

#[tokio::test]
async fn shutdown_past_the_grace_gives_back_prefetched_jobs_unrun() {
    let q = memory_queue(QueueConfig { concurrency: 1, prefetch: 1, ..Default::default() }).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(
            q.enqueue(NewJob { fuel: Some(u64::MAX / 2), timeout: Some(3_600_000), ..hostile("spin") }).await,
        );
    }
    let workers = q.queue.start();
    for id in &ids {
        q.queue.wait_until(id, |j| j.status == JobStatus::Running).await.unwrap();
    }
    let report = workers.shutdown(Some(std::time::Duration::ZERO)).await;
    assert_eq!((report.in_flight, report.released), (2, 2), "the running job and the one claimed ahead");
    for id in &ids {
        let job = q.queue.get(&Scope::Any, id).await.unwrap();
        assert_eq!((job.status, job.attempts), (JobStatus::Pending, 0), "given back uncharged");
        check_path(&q.events_of(id).await).unwrap();
    }
}
