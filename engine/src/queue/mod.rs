//! The queue: the engine's Rust API for enqueueing, cancelling and
//! inspecting jobs, and the worker pool that runs them.
//!
//! The queue validates what callers ask for, turns it into store
//! operations, and runs claimed jobs in the sandbox. It holds no job state
//! of its own beyond what is running in this process: the store is the
//! truth, so several engine nodes can share one.

mod metrics;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, time_ordered_id};
use crate::jobs::{AttemptLog, Backoff, Job, JobQuery, JobSort, JobStatus, NewJob, StatusCounts};
use crate::ownership::Scope;
use crate::principal::Principal;
use crate::registry::{Registry, RegistryError};
use crate::sandbox::{CapabilitySet, Limits, Progress, Sandbox, Services};
use crate::store::{
    AccessEvent, AccessEventType, Actor, Cancelled, JobInsert, RescueRequest, Rescued, Store, StoreError,
};

pub use metrics::{Gauges, RunStats};
pub use worker::{Shutdown, Workers};

/// Decides what principals may do, for the queue. The permission engine
/// implements it; [`AllowAll`] grants everything (tests, local use).
pub trait Policy: Send + Sync + 'static {
    /// The capabilities a job running as `principal` holds.
    fn grants(&self, principal: &Principal) -> CapabilitySet;
    /// Whether `caller` may enqueue jobs that run as someone else
    /// (system permission `jobs.impersonate`).
    fn may_impersonate(&self, caller: &Principal) -> bool;
    /// Whose jobs, artifacts or schedules `principal` reaches: everyone's
    /// if it holds the `.any` permission `any`, otherwise its own.
    fn scope(&self, principal: &Principal, any: &str) -> Scope;
}

/// A policy that allows everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Policy for AllowAll {
    fn grants(&self, _: &Principal) -> CapabilitySet {
        CapabilitySet::all()
    }
    fn may_impersonate(&self, _: &Principal) -> bool {
        true
    }
    fn scope(&self, _: &Principal, _: &str) -> Scope {
        Scope::Any
    }
}

/// Why a queue operation was refused.
#[derive(Debug, Error)]
pub enum QueueError {
    /// A job's options are invalid; nothing was stored.
    #[error("job {index}: `{field}` {message}")]
    Invalid {
        /// The job's position in the batch (0 for a single enqueue).
        index: usize,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The handler does not exist.
    #[error("job {index}: unknown handler `{name}`")]
    UnknownHandler {
        /// The job's position in the batch.
        index: usize,
        /// The name asked for.
        name: String,
    },
    /// The job would need capabilities its principal lacks.
    #[error("job {index}: handler `{name}` imports {missing} which `{user}` is not granted")]
    Forbidden {
        /// The job's position in the batch.
        index: usize,
        /// The handler.
        name: String,
        /// The principal.
        user: String,
        /// The missing capabilities.
        missing: CapabilitySet,
    },
    /// The caller may not run jobs as another principal.
    #[error("job {index}: `runAs` names another user, which needs the permission jobs.impersonate")]
    Impersonation {
        /// The job's position in the batch.
        index: usize,
    },
    /// An active job holds the unique key (named only to its owners).
    #[error("{0}")]
    Conflict(String),
    /// No such job.
    #[error("job {0} not found")]
    NotFound(String),
    /// The job belongs to someone outside the caller's scope. Its message is
    /// [`QueueError::NotFound`]'s, so nothing confirms that it exists; the
    /// API records the attempt as a denial.
    #[error("job {0} not found")]
    Hidden(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl From<StoreError> for QueueError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UniqueConflict { .. } => QueueError::Conflict(error.to_string()),
            StoreError::NotFound(id) => QueueError::NotFound(id),
            other => QueueError::Store(other),
        }
    }
}

/// The queue's settings.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Jobs running at once in this process. Default 16.
    pub concurrency: usize,
    /// Jobs claimed beyond the free slots, each started the moment a slot
    /// frees rather than after the next claim commits. Default 0. On a
    /// database whose commits wait for the disk this multiplies throughput;
    /// the price: a job claimed ahead is `running` (and its `job.started`
    /// event written) before it starts, and a more urgent job enqueued
    /// meanwhile runs after the ones already claimed.
    pub prefetch: usize,
    /// Per-handler caps on jobs running at once.
    pub handler_concurrency: HashMap<String, usize>,
    /// Retries when a job does not say. Default 3.
    pub max_retries: u32,
    /// Per-handler defaults, between a job's own options and the ones
    /// below. Default: the built-ins' ([`crate::builtins`]).
    pub handler_defaults: HashMap<String, HandlerDefaults>,
    /// Backoff when a job does not say.
    pub backoff: Backoff,
    /// Timeout, fuel and memory when a job does not say, and the log,
    /// result and input caps.
    pub limits: Limits,
    /// The largest input (job data as JSON) accepted. Default 1 MiB.
    pub max_input_bytes: usize,
    /// The longest timeout a job may ask for. Default 24 hours.
    pub max_timeout: Duration,
    /// How long a claim's lease lasts unless renewed; workers renew their
    /// leases every third of it. Default 30 s.
    pub lease: Duration,
    /// This node's name, recorded on leases. A node starting up takes back
    /// the jobs still leased to its name (its previous run is gone), so
    /// every node sharing a database needs its own.
    pub node_id: String,
    /// How often an idle dispatcher looks for jobs enqueued by other
    /// processes (this process's own enqueues wake it at once). Default 1 s.
    pub poll_interval: Duration,
    /// How often lapsed leases are rescued and finished jobs pruned. Default 10 s.
    pub maintenance_interval: Duration,
    /// How long finished jobs are kept.
    pub retention: Retention,
}

/// How long finished jobs are kept, per final status; `None` keeps them
/// forever. Their events stay either way (they belong to the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Default 24 hours.
    pub completed: Option<Duration>,
    /// Default 24 hours.
    pub cancelled: Option<Duration>,
    /// Default 7 days.
    pub failed: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        const HOUR: u64 = 3600;
        Self {
            completed: Some(Duration::from_secs(24 * HOUR)),
            cancelled: Some(Duration::from_secs(24 * HOUR)),
            failed: Some(Duration::from_secs(7 * 24 * HOUR)),
        }
    }
}

impl QueueConfig {
    /// How many jobs the pool may hold claimed at once.
    fn claimable(&self) -> usize {
        self.concurrency.max(1) + self.prefetch
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            prefetch: 0,
            handler_concurrency: HashMap::new(),
            max_retries: 3,
            handler_defaults: crate::builtins::defaults(),
            backoff: Backoff::default(),
            limits: Limits::default(),
            max_input_bytes: 1 << 20,
            max_timeout: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(30),
            node_id: "node-1".into(),
            poll_interval: Duration::from_secs(1),
            maintenance_interval: Duration::from_secs(10),
            retention: Retention::default(),
        }
    }
}

/// A handler's defaults for the options a job leaves out; what is unset
/// here falls to the queue's own defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HandlerDefaults {
    /// Retries after the first attempt.
    pub max_retries: Option<u32>,
    /// Wall-clock timeout per attempt.
    #[serde(deserialize_with = "crate::config::optional_span")]
    pub timeout: Option<Duration>,
    /// Fuel budget per attempt.
    pub fuel: Option<u64>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
}

impl HandlerDefaults {
    /// These defaults with every option `over` sets taking its place.
    pub fn overridden_by(self, over: HandlerDefaults) -> Self {
        Self {
            max_retries: over.max_retries.or(self.max_retries),
            timeout: over.timeout.or(self.timeout),
            fuel: over.fuel.or(self.fuel),
            memory: over.memory.or(self.memory),
        }
    }
}

/// Builds a [`Queue`] from its store, sandbox and policy (who may do
/// what); the rest defaults to the system clock, the in-memory services,
/// the default settings, and a registry over the store without a disk
/// cache for compiled code.
pub struct QueueBuilder {
    store: Arc<dyn Store>,
    sandbox: Arc<Sandbox>,
    policy: Arc<dyn Policy>,
    registry: Option<Arc<Registry>>,
    clock: Arc<dyn Clock>,
    services: Services,
    config: QueueConfig,
}

impl QueueBuilder {
    /// The handler registry (default: over the store, no disk cache).
    pub fn registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The time (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The records and artifacts jobs reach (default: in memory).
    pub fn services(mut self, services: Services) -> Self {
        self.services = services;
        self
    }

    /// Settings (default: [`QueueConfig::default`]).
    pub fn config(mut self, config: QueueConfig) -> Self {
        self.config = config;
        self
    }

    /// The queue; its workers start with [`Queue::start`].
    pub fn build(self) -> Queue {
        let registry = self.registry.unwrap_or_else(|| {
            Arc::new(Registry::new(self.store.clone(), self.sandbox.clone(), self.clock.clone(), None))
        });
        let slots = Arc::new(Semaphore::new(self.config.claimable()));
        let runners = Semaphore::new(self.config.concurrency.max(1));
        Queue {
            inner: Arc::new(Inner {
                store: self.store,
                registry,
                sandbox: self.sandbox,
                clock: self.clock,
                policy: self.policy,
                services: self.services,
                config: self.config,
                wake: Notify::new(),
                changed: watch::channel(0).0,
                slots,
                runners,
                running: Mutex::new(HashMap::new()),
                per_handler: Mutex::new(HashMap::new()),
                releasing: Default::default(),
                stats: metrics::Metrics::default(),
            }),
        }
    }
}

/// The job queue. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    sandbox: Arc<Sandbox>,
    clock: Arc<dyn Clock>,
    policy: Arc<dyn Policy>,
    services: Services,
    config: QueueConfig,
    /// Woken when a job is enqueued or a slot frees up.
    wake: Notify,
    /// Bumped after every change this process makes, for waiters.
    changed: watch::Sender<u64>,
    /// Jobs this process may hold claimed: `concurrency + prefetch`. A job
    /// holds one from its claim until its sandbox run ends.
    slots: Arc<Semaphore>,
    /// Jobs running their sandbox at once: `concurrency`.
    runners: Semaphore,
    /// Jobs running in this process: their cancel tokens and live progress.
    running: Mutex<HashMap<String, Running>>,
    per_handler: Mutex<HashMap<String, usize>>,
    /// Set when a shutdown's grace ran out: every job still running, or
    /// about to, is given back rather than run.
    releasing: std::sync::atomic::AtomicBool,
    stats: metrics::Metrics,
}

struct Running {
    cancel: CancellationToken,
    lease_token: u64,
    progress: Option<Progress>,
    /// Stopped by a shutdown rather than a cancel: given back, not cancelled.
    released: bool,
}

impl Queue {
    /// A queue over `store`, running jobs in `sandbox`, deciding who may
    /// do what by `policy`; see [`QueueBuilder`] for the rest.
    pub fn builder(store: Arc<dyn Store>, sandbox: Arc<Sandbox>, policy: Arc<dyn Policy>) -> QueueBuilder {
        QueueBuilder {
            store,
            sandbox,
            policy,
            registry: None,
            clock: Arc::new(crate::clock::SystemClock),
            services: Services::in_memory(),
            config: QueueConfig::default(),
        }
    }

    /// The handler registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// Starts the worker pool; jobs run until the returned handle is stopped.
    pub fn start(&self) -> Workers {
        worker::start(self.inner.clone())
    }

    /// Enqueues one job as `caller`.
    pub async fn enqueue(&self, caller: &Principal, job: NewJob) -> Result<Job, QueueError> {
        let mut jobs = self.enqueue_batch(caller, vec![job]).await?;
        Ok(jobs.remove(0))
    }

    /// Enqueues jobs as `caller`, all or none: one invalid job or unique-key
    /// conflict refuses the batch and stores nothing.
    pub async fn enqueue_batch(&self, caller: &Principal, jobs: Vec<NewJob>) -> Result<Vec<Job>, QueueError> {
        let now = self.inner.clock.now();
        let inserts = self
            .prepare_jobs(caller, jobs, now)
            .await
            .into_iter()
            .map(|job| job.map(|job| JobInsert { job }))
            .collect::<Result<Vec<_>, _>>();
        let inserts = match inserts {
            Ok(inserts) => inserts,
            Err(error) => {
                self.audit_denial(caller, &error, now).await;
                return Err(error);
            }
        };
        let jobs = match self.inner.store.enqueue(inserts, now).await {
            Err(StoreError::UniqueConflict { key, job_id }) => {
                return Err(self.unique_conflict(caller, &key, &job_id).await);
            }
            other => other?,
        };
        self.jobs_added();
        Ok(jobs)
    }

    /// The refusal of a unique key held by job `holder`. Keys are unique
    /// per user a job runs as, so the holder runs as the same user as the
    /// refused job; it is named only if `caller` owns it, so an
    /// impersonator learns no id it could not read.
    async fn unique_conflict(&self, caller: &Principal, key: &str, holder: &str) -> QueueError {
        let scope = Scope::Owner(caller.user_id.clone());
        let named = match self.get(&scope, holder).await {
            Ok(job) => format!(" (job {})", job.id),
            Err(_) => String::new(),
        };
        QueueError::Conflict(format!("an active job already holds unique key `{key}`{named}"))
    }

    /// Validates and builds jobs as `caller` enqueueing them at `now`,
    /// pinning each handler's current version (looked up once per name).
    /// Each job succeeds or fails on its own; nothing is stored.
    pub(crate) async fn prepare_jobs(
        &self,
        caller: &Principal,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Vec<Result<Job, QueueError>> {
        let mut pinned: HashMap<String, Result<(String, CapabilitySet), String>> = HashMap::new();
        let mut prepared = Vec::with_capacity(jobs.len());
        for (index, new) in jobs.into_iter().enumerate() {
            if !pinned.contains_key(&new.name) {
                let version = match self.inner.registry.get(&new.name).await {
                    Ok(record) => match self.inner.registry.compiled(&record.sha256).await {
                        Ok(compiled) => Ok((record.sha256, compiled.requested())),
                        Err(error) => {
                            prepared.push(Err(error.into()));
                            continue;
                        }
                    },
                    Err(RegistryError::Unknown(name)) => Err(name),
                    Err(error) => {
                        prepared.push(Err(error.into()));
                        continue;
                    }
                };
                pinned.insert(new.name.clone(), version);
            }
            prepared.push(match pinned[&new.name].clone() {
                Ok((sha256, requested)) => self.prepare(index, caller, new, sha256, requested, now),
                Err(name) => Err(QueueError::UnknownHandler { index, name }),
            });
        }
        prepared
    }

    /// Records a refusal on permission grounds as a `permission.denied`
    /// access event (the audit log's); other errors are not denials.
    async fn audit_denial(&self, caller: &Principal, error: &QueueError, now: DateTime<Utc>) {
        let (resource, action) = match error {
            QueueError::Forbidden { name, .. } => (format!("handlers/{name}"), "enqueue"),
            QueueError::Impersonation { .. } => ("jobs".to_string(), "impersonate"),
            _ => return,
        };
        let data = serde_json::json!({"action": action, "reason": error.to_string()});
        let event = AccessEvent::new(
            AccessEventType::PermissionDenied,
            &Actor::user(caller.clone()),
            resource,
            data,
            now,
        );
        if let Err(error) = self.inner.store.record_access(event).await {
            tracing::error!(%error, "could not record a permission denial");
        }
    }

    /// Wakes the workers for jobs just stored by this process.
    pub(crate) fn jobs_added(&self) {
        self.inner.wake.notify_one();
        self.inner.bump();
    }

    /// The clock the queue runs on.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    fn prepare(
        &self,
        index: usize,
        caller: &Principal,
        new: NewJob,
        sha256: String,
        requested: CapabilitySet,
        now: DateTime<Utc>,
    ) -> Result<Job, QueueError> {
        let config = &self.inner.config;
        let defaults = config.handler_defaults.get(&new.name).copied().unwrap_or_default();
        let invalid = |field, message: String| QueueError::Invalid { index, field, message };
        let input_size = serde_json::to_vec(&new.data).map_or(0, |v| v.len());
        if input_size > config.max_input_bytes {
            return Err(invalid(
                "data",
                format!("is {input_size} bytes, more than the cap of {}", config.max_input_bytes),
            ));
        }
        let timeout = new
            .timeout
            .or(defaults.timeout.map(|t| t.as_millis() as u64))
            .unwrap_or(config.limits.timeout.as_millis() as u64);
        if timeout == 0 || timeout > config.max_timeout.as_millis() as u64 {
            return Err(invalid(
                "timeout",
                format!("must be between 1 and {} ms, got {timeout}", config.max_timeout.as_millis()),
            ));
        }
        let fuel = new.fuel.or(defaults.fuel).unwrap_or(config.limits.fuel);
        if fuel == 0 {
            return Err(invalid("fuel", "must be positive".into()));
        }
        let memory = new.memory.or(defaults.memory).unwrap_or(config.limits.memory);
        if memory < (1 << 20) {
            return Err(invalid("memory", format!("must be at least 1 MiB (1048576 bytes), got {memory}")));
        }
        // Above the sandbox's cap the job could only fail when it ran.
        let most = self.inner.sandbox.max_job_memory();
        if memory > most {
            return Err(invalid(
                "memory",
                format!("must be at most {most} bytes (the sandbox's cap), got {memory}"),
            ));
        }
        let backoff = new.backoff.unwrap_or(config.backoff);
        backoff.validate().map_err(|m| invalid("backoff", m))?;
        if let Some(key) = &new.unique_key
            && (key.is_empty() || key.len() > 256)
        {
            return Err(invalid("uniqueKey", "must be 1 to 256 characters".into()));
        }
        let run_as = match new.run_as {
            Some(principal) if principal != *caller => {
                if !self.inner.policy.may_impersonate(caller) {
                    return Err(QueueError::Impersonation { index });
                }
                principal
            }
            _ => caller.clone(),
        };
        let missing = requested.difference(self.inner.policy.grants(&run_as));
        if !missing.is_empty() {
            return Err(QueueError::Forbidden { index, name: new.name, user: run_as.user_id, missing });
        }
        let run_at = new.run_at.unwrap_or(now).max(now);
        Ok(Job {
            id: time_ordered_id("job"),
            name: new.name,
            handler_sha256: sha256,
            data: new.data,
            priority: new.priority,
            status: if run_at > now { JobStatus::Scheduled } else { JobStatus::Pending },
            attempts: 0,
            max_retries: new.max_retries.or(defaults.max_retries).unwrap_or(config.max_retries),
            backoff,
            timeout,
            fuel,
            memory,
            run_as,
            enqueued_by: caller.user_id.clone(),
            run_at,
            unique_key: new.unique_key,
            created_at: now,
            started_at: None,
            completed_at: None,
            failed_at: None,
            cancelled_at: None,
            error: None,
            result: None,
            progress: None,
            attempt_log: Vec::new(),
            schedule_id: None,
        })
    }

    /// Cancels a job within `scope`. Waiting jobs are cancelled at once; a
    /// running job is stopped at its guest's next yield and then recorded
    /// as cancelled.
    pub async fn cancel(&self, scope: &Scope, id: &str) -> Result<Job, QueueError> {
        self.get(scope, id).await?;
        let job = match self.inner.store.cancel(id, self.inner.clock.now()).await? {
            Cancelled::Now(job) | Cancelled::AlreadyFinal(job) => job,
            Cancelled::Requested(job) => {
                // Running here: stop it now. Running in another process, or
                // claimed here but not yet registered: the next heartbeat
                // of whoever holds the lease reads the request.
                if let Some(running) = self.inner.running.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
                    running.cancel.cancel();
                }
                job
            }
        };
        self.inner.bump();
        Ok(job)
    }

    /// One job within `scope`, with live progress if it runs in this
    /// process. A job outside the scope is [`QueueError::Hidden`].
    pub async fn get(&self, scope: &Scope, id: &str) -> Result<Job, QueueError> {
        let mut job = self.inner.store.get(id).await?.ok_or_else(|| QueueError::NotFound(id.to_string()))?;
        if !scope.admits(job.owners()) {
            return Err(QueueError::Hidden(id.to_string()));
        }
        if let Some(running) = self.inner.running.lock().unwrap_or_else(|e| e.into_inner()).get(id)
            && running.progress.is_some()
        {
            job.progress = running.progress.clone();
        }
        Ok(job)
    }

    /// A page of the jobs within `scope`.
    pub async fn list(&self, scope: &Scope, query: &JobQuery) -> Result<Vec<Job>, QueueError> {
        let query = JobQuery { owner: scope.owner().map(str::to_string), ..query.clone() };
        Ok(self.inner.store.list(&query).await?)
    }

    /// The logs of the attempts of a job within `scope`.
    pub async fn logs(&self, scope: &Scope, id: &str) -> Result<Vec<AttemptLog>, QueueError> {
        self.get(scope, id).await?;
        Ok(self.inner.store.logs(id).await?)
    }

    /// Counts per status, and this process's throughput and run times.
    pub async fn stats(&self) -> Result<(StatusCounts, RunStats), QueueError> {
        Ok((self.inner.store.counts().await?, self.inner.stats.snapshot()))
    }

    /// This process's counters and the queue's gauges in the Prometheus
    /// text format.
    pub async fn prometheus(&self) -> Result<String, QueueError> {
        let counts = self.inner.store.counts().await?;
        let oldest = JobQuery {
            status: vec![JobStatus::Pending],
            sort: JobSort::RunAtAsc,
            limit: Some(1),
            ..JobQuery::default()
        };
        let now = self.inner.clock.now();
        let lag_seconds = self
            .inner
            .store
            .list(&oldest)
            .await?
            .first()
            .map_or(0.0, |job| (now - job.run_at).num_milliseconds().max(0) as f64 / 1000.0);
        let gauges = Gauges { counts, running: self.running_count(), lag_seconds };
        Ok(self.inner.stats.prometheus(&gauges))
    }

    /// Jobs running in this process now, with those claimed ahead of a
    /// slot (`prefetch`): all are `running` in the store.
    pub fn running_count(&self) -> usize {
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Attempts finished in this process since it started (cheap: no store access).
    pub fn attempts_finished(&self) -> u64 {
        self.inner.stats.attempts()
    }

    /// Takes back running jobs whose lease has lapsed (their worker died or
    /// hung) so they run again. The worker pool does this every
    /// `maintenance_interval`; it is public for operators and tests.
    pub async fn rescue_lapsed(&self) -> Result<Vec<Rescued>, QueueError> {
        self.rescue(None).await
    }

    /// Rescues lapsed leases and, with `owner`, every job leased to it.
    async fn rescue(&self, owner: Option<String>) -> Result<Vec<Rescued>, QueueError> {
        const BATCH: usize = 500;
        let mut all = Vec::new();
        loop {
            let request = RescueRequest { now: self.inner.clock.now(), owner: owner.clone(), limit: BATCH };
            let rescued = self.inner.store.rescue(request).await?;
            let done = rescued.len() < BATCH;
            all.extend(rescued);
            if done {
                break;
            }
        }
        if !all.is_empty() {
            self.inner.wake.notify_one();
            self.inner.bump();
        }
        Ok(all)
    }

    /// Removes the unsealed artifacts whose job no longer runs: a writer
    /// abandoned in this process removes its own, but one whose node was
    /// killed mid-write leaves its chunks for this sweep (the worker pool
    /// runs it every `maintenance_interval`). Returns how many it removed.
    pub async fn discard_abandoned_artifacts(&self) -> Result<u64, QueueError> {
        const PAGE: usize = 500;
        let store = &self.inner.store;
        let (mut after, mut discarded) = (String::new(), 0);
        loop {
            let page = store.unsealed_artifacts(&after, PAGE).await?;
            for artifact in &page {
                let running =
                    store.get(&artifact.job_id).await?.is_some_and(|j| j.status == JobStatus::Running);
                // Sealed meanwhile, or already gone: either way not abandoned.
                if !running && store.discard_artifact(&artifact.id).await.is_ok() {
                    discarded += 1;
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.id.clone(),
                _ => return Ok(discarded),
            }
        }
    }

    /// Deletes finished jobs older than the retention allows, in batches
    /// (each its own short write, so the queue never waits long behind it).
    /// Returns how many were deleted.
    pub async fn prune_finished(&self) -> Result<u64, QueueError> {
        const BATCH: usize = 1000;
        let now = self.inner.clock.now();
        let retention = self.inner.config.retention;
        let cutoffs: Vec<(JobStatus, DateTime<Utc>)> = [
            (JobStatus::Completed, retention.completed),
            (JobStatus::Cancelled, retention.cancelled),
            (JobStatus::Failed, retention.failed),
        ]
        .into_iter()
        .filter_map(|(status, keep)| Some((status, now - chrono::Duration::from_std(keep?).ok()?)))
        .collect();
        if cutoffs.is_empty() {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let deleted = self.inner.store.prune(&cutoffs, BATCH).await?;
            total += deleted;
            if (deleted as usize) < BATCH {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Waits until job `id` is in a final status and returns it.
    pub async fn wait_final(&self, id: &str) -> Result<Job, QueueError> {
        self.wait_until(id, |job| job.status.is_final()).await
    }

    /// Waits until job `id` satisfies `done` and returns it. Wakes on every
    /// change this process makes, never by polling on a timer. This is the
    /// engine's own view: callers on behalf of a principal check its scope
    /// first ([`Queue::get`]).
    pub async fn wait_until(&self, id: &str, done: impl Fn(&Job) -> bool) -> Result<Job, QueueError> {
        let mut changes = self.inner.changed.subscribe();
        loop {
            let job = self.get(&Scope::Any, id).await?;
            if done(&job) {
                return Ok(job);
            }
            changes.changed().await.map_err(|_| QueueError::NotFound(id.to_string()))?;
        }
    }
}

impl Inner {
    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The result of a completed attempt as JSON; a result that is not JSON is
/// kept as a string.
pub(crate) fn result_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}
