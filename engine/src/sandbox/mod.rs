//! The sandbox: runs one job in a fresh instance of a handler component,
//! under a fuel budget, a wall-clock timeout, a memory limit and a stack
//! limit, with only the capabilities the job was granted.
//!
//! The sandbox owns the wasmtime engine and linker and nothing else: it
//! never touches the database, never decides permissions (the services it
//! is handed do), and never retries (it reports an [`Outcome`] whose
//! [`Disposition`] the queue acts on).

mod capability;
mod component;
mod config;
mod host;
mod log;
mod memory;
mod outcome;
mod services;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;

pub use capability::{
    CONTRACT_PACKAGE, CONTRACT_VERSION, Capability, CapabilitySet, ImportKind, classify_import,
};
pub use component::{CompiledHandler, ComponentError};
use config::capped;
pub use config::{Limits, SandboxConfig};
pub use host::ProgressObserver;
pub use log::{JobLog, Level, LogLine, LogRecord, Source};
pub use memory::MemoryArtifacts;
pub use outcome::{Disposition, Outcome, OutcomeKind, Progress, Usage};
pub use services::{
    ArtifactInfo, ArtifactSink, ArtifactSource, ArtifactsService, HostError, ImportReport, ObjectInfo,
    OnConflict, Page, Query, RecordsService, Services, SortKey, SortOrder, WriteReport,
};

use crate::principal::Principal;
use config::MemoryLimiter;
use host::{JobState, objectos::jobs::types as wit};

/// What the sandbox needs to know about one run of a job.
#[derive(Clone)]
pub struct JobRun {
    /// The job's identifier.
    pub job_id: String,
    /// The handler name it was enqueued for.
    pub handler: String,
    /// This run's number, from 1.
    pub attempt: u32,
    /// `1 + maxRetries`.
    pub max_attempts: u32,
    /// Who the job runs as.
    pub principal: Principal,
    /// The schedule that produced it, if any.
    pub schedule_id: Option<String>,
    /// When it was enqueued.
    pub enqueued_at: chrono::DateTime<chrono::Utc>,
    /// The job's input, JSON text.
    pub input: String,
    /// The limits of this run.
    pub limits: Limits,
    /// The capabilities the job holds.
    pub grants: CapabilitySet,
    /// The records and artifacts the job may use.
    pub services: Services,
    /// Cancelling this token stops the guest at its next yield.
    pub cancel: CancellationToken,
    /// Told about progress reports as they happen.
    pub observer: Option<Arc<dyn ProgressObserver>>,
}

impl JobRun {
    /// A first attempt of job `job_id` for `handler` with `input`, as
    /// `principal`, with default limits, no grants and in-memory services.
    pub fn new(
        job_id: impl Into<String>,
        handler: impl Into<String>,
        principal: Principal,
        input: impl Into<String>,
    ) -> Self {
        Self {
            job_id: job_id.into(),
            handler: handler.into(),
            attempt: 1,
            max_attempts: 1,
            principal,
            schedule_id: None,
            enqueued_at: chrono::Utc::now(),
            input: input.into(),
            limits: Limits::default(),
            grants: CapabilitySet::empty(),
            services: Services::in_memory(),
            cancel: CancellationToken::new(),
            observer: None,
        }
    }
}

/// Runs job handlers in isolated, limited instances. Cheap to share: clone
/// the `Arc` it usually lives in.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<JobState>,
    config: SandboxConfig,
    slots: Semaphore,
}

impl Sandbox {
    /// The most memory one job may be given (`max_job_memory`).
    pub fn max_job_memory(&self) -> u64 {
        self.config.max_job_memory
    }

    /// Builds a sandbox with `config`.
    pub fn new(config: &SandboxConfig) -> Result<Self, SandboxError> {
        let engine = Engine::new(&config.wasmtime()).map_err(|e| SandboxError(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| SandboxError(format!("{e:#}")))?;
        Ok(Self {
            engine,
            linker,
            config: config.clone(),
            slots: Semaphore::new(config.max_concurrent_jobs as usize),
        })
    }

    /// The wasmtime engine, for compiling and caching components.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles and validates `bytes` as a handler and pre-instantiates it.
    /// Compilation is CPU heavy: call it from a blocking task in async code.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledHandler, ComponentError> {
        component::compile(&self.engine, &self.linker, bytes)
    }

    /// The compiled code of `handler`, for a cache on disk.
    pub fn serialize(&self, handler: &CompiledHandler) -> Result<Vec<u8>, SandboxError> {
        handler.component.serialize().map_err(|e| SandboxError(format!("{e:#}")))
    }

    /// Loads compiled code produced by [`Sandbox::serialize`].
    ///
    /// # Safety
    ///
    /// `bytes` must be exactly what `serialize` returned on an engine with
    /// the same configuration and version: wasmtime trusts compiled code.
    pub unsafe fn deserialize(
        &self,
        bytes: &[u8],
        sha256: &str,
        size: usize,
    ) -> Result<CompiledHandler, ComponentError> {
        // SAFETY: forwarded to the caller.
        let component = unsafe { wasmtime::component::Component::deserialize(&self.engine, bytes) }
            .map_err(|e| ComponentError::Invalid(format!("{e:#}")))?;
        component::prepare(&self.engine, &self.linker, component, sha256.to_string(), size)
    }

    /// Runs one attempt of a job in a fresh instance and reports how it ended.
    pub async fn run(&self, handler: &CompiledHandler, job: JobRun) -> Outcome {
        let log = JobLog::new(job.limits.log_bytes);
        let missing = handler.requested().difference(job.grants);
        if !missing.is_empty() {
            return finished(OutcomeKind::capability_denied(missing), Usage::default(), &log, None);
        }
        if job.cancel.is_cancelled() {
            return finished(OutcomeKind::Cancelled, Usage::default(), &log, None);
        }
        // The pool has a fixed number of instance slots; wait for one rather
        // than fail. The semaphore is never closed.
        let _slot = self.slots.acquire().await.expect("sandbox slots are never closed");

        let started = Instant::now();
        let limits = job.limits;
        let context = job_context(&job);
        let wasi = WasiCtxBuilder::new()
            .stdout(log.stream(Source::Stdout))
            .stderr(log.stream(Source::Stderr))
            .build();
        let state = JobState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory),
            log: log.clone(),
            actor: crate::store::Actor { principal: job.principal, job_id: Some(job.job_id) },
            grants: job.grants,
            services: job.services,
            progress: None,
            observer: job.observer,
            limits,
            writers_open: Default::default(),
            artifact_bytes: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Neither call fails with fuel enabled in the engine configuration.
        store.set_fuel(limits.fuel).expect("fuel is enabled");
        store.fuel_async_yield_interval(Some(self.config.fuel_yield_interval)).expect("fuel is enabled");

        let ended = {
            let call = async {
                let instance = handler.pre.instantiate_async(&mut store).await?;
                instance.call_run(&mut store, &context, &job.input).await
            };
            tokio::select! {
                result = tokio::time::timeout(limits.timeout, call) => match result {
                    Ok(result) => Ended::Returned(result),
                    Err(_) => Ended::TimedOut,
                },
                () = job.cancel.cancelled() => Ended::Cancelled,
            }
        };

        let usage = Usage {
            fuel: limits.fuel - store.get_fuel().unwrap_or(0),
            wall: started.elapsed(),
            peak_memory: store.data().limiter.peak,
        };
        let kind = match ended {
            Ended::Returned(Ok(Ok(result))) if result.len() > limits.result_bytes => {
                OutcomeKind::ResultTooLarge { size: result.len() as u64, limit: limits.result_bytes as u64 }
            }
            Ended::Returned(Ok(Ok(result))) => OutcomeKind::Completed { result },
            Ended::Returned(Ok(Err(wit::JobError::Retryable(message)))) => OutcomeKind::HandlerError {
                retryable: true,
                message: capped(message, limits.error_bytes, "jobs.maxErrorBytes"),
            },
            Ended::Returned(Ok(Err(wit::JobError::Fatal(message)))) => OutcomeKind::HandlerError {
                retryable: false,
                message: capped(message, limits.error_bytes, "jobs.maxErrorBytes"),
            },
            Ended::Returned(Err(error)) => classify_error(&error, store.data(), &limits),
            Ended::TimedOut => OutcomeKind::Timeout { after_ms: limits.timeout.as_millis() as u64 },
            Ended::Cancelled => OutcomeKind::Cancelled,
        };
        let progress = store.data().progress.clone();
        store.data_mut().abandon_writers().await;
        drop(store);
        finished(kind, usage, &log, progress)
    }
}

enum Ended {
    Returned(wasmtime::Result<Result<String, wit::JobError>>),
    TimedOut,
    Cancelled,
}

fn finished(kind: OutcomeKind, usage: Usage, log: &JobLog, progress: Option<Progress>) -> Outcome {
    Outcome { kind, usage, log: log.finish(), progress }
}

fn job_context(job: &JobRun) -> wit::JobContext {
    let deadline_in = chrono::Duration::from_std(job.limits.timeout).unwrap_or(chrono::Duration::MAX);
    let now = chrono::Utc::now();
    wit::JobContext {
        job_id: job.job_id.clone(),
        handler: job.handler.clone(),
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        principal: wit::Principal {
            user_id: job.principal.user_id.clone(),
            profiles: job.principal.profiles.clone(),
            metadata: serde_json::Value::Object(job.principal.metadata.clone()).to_string(),
        },
        schedule_id: job.schedule_id.clone(),
        enqueued_at: job.enqueued_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        deadline: (now + deadline_in).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// Works out why a call into the guest failed.
fn classify_error(error: &wasmtime::Error, state: &JobState, limits: &Limits) -> OutcomeKind {
    // A refused memory grow explains whatever trap followed it (a Rust guest
    // aborts when an allocation fails).
    if state.limiter.refused {
        return OutcomeKind::MemoryLimit { limit: limits.memory };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => OutcomeKind::OutOfFuel { budget: limits.fuel },
        Some(Trap::StackOverflow) => OutcomeKind::StackOverflow,
        // A guest's own stack lives in its linear memory (Rust and C keep
        // their frames there), and running off its end is an out-of-bounds
        // access, not a wasm stack overflow: told apart by what it looks
        // like, a deep recursion of a few functions at the fault.
        Some(Trap::MemoryOutOfBounds) if deep_recursion(error) => OutcomeKind::StackOverflow,
        Some(trap) => {
            OutcomeKind::Trap { message: state.log.stderr_tail().unwrap_or_else(|| trap.to_string()) }
        }
        None => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => OutcomeKind::Exited { status: exit.0 },
            // Not a trap: instantiation failed (for example a grant revoked
            // between compile and run) or a host function failed.
            None => OutcomeKind::InvalidComponent { message: format!("{error:#}") },
        },
    }
}

/// Whether the trap's backtrace is a recursion as deep as it is kept
/// (`BACKTRACE_FRAMES`) through at most four functions.
fn deep_recursion(error: &wasmtime::Error) -> bool {
    const DEEP: usize = config::BACKTRACE_FRAMES;
    let Some(trace) = error.downcast_ref::<wasmtime::WasmBacktrace>() else { return false };
    let frames = trace.frames();
    if frames.len() < DEEP {
        return false;
    }
    let mut functions: Vec<u32> = frames[..DEEP].iter().map(|frame| frame.func_index()).collect();
    functions.sort_unstable();
    functions.dedup();
    functions.len() <= 4
}

/// The sandbox could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the sandbox: {0}")]
pub struct SandboxError(String);
