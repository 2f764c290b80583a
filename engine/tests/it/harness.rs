//! Shared set-up: one sandbox per test binary and compiled fixtures.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use objectos_engine::clock::ManualClock;
use objectos_engine::principal::Principal;
use objectos_engine::queue::{Policy, Queue, QueueConfig};
use objectos_engine::sandbox::{
    CapabilitySet, CompiledHandler, JobRun, Outcome, Sandbox, SandboxConfig, Services,
};
use objectos_engine::store::Store;

/// The sandbox every test shares, as the engine shares one.
pub fn shared_sandbox() -> Arc<Sandbox> {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            let mut config = SandboxConfig::new();
            config.max_concurrent_jobs(32).max_job_memory(256 << 20);
            Arc::new(Sandbox::new(&config).expect("sandbox builds"))
        })
        .clone()
}

/// The shared sandbox, borrowed.
pub fn sandbox() -> &'static Sandbox {
    static BORROWED: OnceLock<Arc<Sandbox>> = OnceLock::new();
    BORROWED.get_or_init(shared_sandbox)
}

/// The hostile fixture, compiled once.
pub fn hostile() -> Arc<CompiledHandler> {
    static HANDLER: OnceLock<Arc<CompiledHandler>> = OnceLock::new();
    HANDLER
        .get_or_init(|| Arc::new(sandbox().compile(objectos_test_guests::HOSTILE).expect("hostile compiles")))
        .clone()
}

/// The no-op fixture, compiled once.
pub fn noop() -> Arc<CompiledHandler> {
    static HANDLER: OnceLock<Arc<CompiledHandler>> = OnceLock::new();
    HANDLER
        .get_or_init(|| Arc::new(sandbox().compile(objectos_test_guests::NOOP).expect("noop compiles")))
        .clone()
}

/// A job for `action` on the hostile fixture with every capability granted
/// and limits small enough to hit quickly.
pub fn job(action: &str) -> JobRun {
    let mut job = JobRun::new("job-1", "hostile", Principal::new("ada", &["admin"]), format!("{action:?}"));
    job.grants = CapabilitySet::all();
    job.limits.fuel = 500_000_000;
    job.limits.timeout = Duration::from_secs(20);
    job.limits.memory = 32 << 20;
    job
}

/// Runs `action` on the hostile fixture.
pub async fn run(action: &str) -> Outcome {
    sandbox().run(&hostile(), job(action)).await
}

/// A queue over `store` on a manual clock stopped at 2026-01-01T00:00:00Z
/// (a Thursday), with the `hostile` and `noop` fixtures registered.
pub async fn queue(
    store: Arc<dyn Store>,
    config: QueueConfig,
    policy: Arc<dyn Policy>,
) -> (Queue, ManualClock) {
    queue_with(store, config, policy, Services::in_memory()).await
}

/// [`queue`] with the records and artifacts jobs reach given.
pub async fn queue_with(
    store: Arc<dyn Store>,
    config: QueueConfig,
    policy: Arc<dyn Policy>,
    services: Services,
) -> (Queue, ManualClock) {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let queue = Queue::builder(store, shared_sandbox(), policy)
        .clock(Arc::new(clock.clone()))
        .services(services)
        .config(config)
        .build();
    queue.registry().register("hostile", objectos_test_guests::HOSTILE.to_vec()).await.unwrap();
    queue.registry().register("noop", objectos_test_guests::NOOP.to_vec()).await.unwrap();
    (queue, clock)
}
