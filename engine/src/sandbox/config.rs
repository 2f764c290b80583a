//! Every knob of the sandbox in one place: the wasmtime engine (component
//! model, pooling allocator, fuel, stack), per-job limits, and the memory
//! limiter that enforces and measures a job's memory.
//!
//! Nothing else in the engine configures wasmtime. This module never runs
//! guest code.

use std::time::Duration;

use wasmtime::{Enabled, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter};

/// The sandbox's fixed configuration, set when it is built.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub(crate) max_concurrent_jobs: u32,
    pub(crate) max_job_memory: u64,
    pub(crate) max_wasm_stack: usize,
    pub(crate) fuel_yield_interval: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            max_concurrent_jobs: 128,
            max_job_memory: 1 << 30,
            max_wasm_stack: 1 << 20,
            fuel_yield_interval: 100_000,
        }
    }
}

impl SandboxConfig {
    /// The default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many jobs may run at once; this many instance slots are
    /// reserved up front in the pooling allocator. A run beyond it waits for
    /// a free slot. Default: 128.
    pub fn max_concurrent_jobs(&mut self, jobs: u32) -> &mut Self {
        self.max_concurrent_jobs = jobs.max(1);
        self
    }

    /// The most linear memory any job may ever be given, whatever its own
    /// limit says. Default: 1 GiB.
    pub fn max_job_memory(&mut self, bytes: u64) -> &mut Self {
        self.max_job_memory = bytes;
        self
    }

    /// The wasm stack limit: deeper recursion traps as a stack overflow.
    /// Default: 1 MiB.
    pub fn max_wasm_stack(&mut self, bytes: usize) -> &mut Self {
        self.max_wasm_stack = bytes;
        self
    }

    /// How much fuel a guest burns between yields to the async runtime. A
    /// smaller interval stops a cancelled or timed-out guest sooner and costs
    /// a little throughput. Default: 100,000.
    pub fn fuel_yield_interval(&mut self, fuel: u64) -> &mut Self {
        self.fuel_yield_interval = fuel.max(1);
        self
    }

    /// The wasmtime configuration these settings describe.
    pub(crate) fn wasmtime(&self) -> wasmtime::Config {
        let jobs = self.max_concurrent_jobs;
        let mut pool = PoolingAllocationConfig::new();
        // A Rust component holds a handful of core instances (the program and
        // the canonical-ABI shims), one memory and a few tables.
        pool.total_component_instances(jobs)
            .total_core_instances(jobs * 8)
            .total_memories(jobs * 2)
            .total_tables(jobs * 4)
            .total_stacks(jobs)
            .max_memory_size(self.max_job_memory as usize)
            // Keeping a little of each slot resident and resetting it with
            // pagemap scans instead of fresh mappings avoids kernel mapping
            // contention: untuned, two concurrent jobs were slower than one.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(128 << 10);

        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .max_wasm_stack(self.max_wasm_stack)
            // Host frames (WASI, our host functions) run on the same fiber
            // stack; leave them room above the wasm limit.
            .async_stack_size(self.max_wasm_stack + (1 << 20))
            // Deep enough to tell a guest's own stack running out (a deep
            // recursion at an out-of-bounds access) from another fault.
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(BACKTRACE_FRAMES))
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        config
    }
}

/// Frames kept of a trap's wasm backtrace.
pub(crate) const BACKTRACE_FRAMES: usize = 128;

/// The limits of one job run. Durations are wall clock; sizes are bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel budget: deterministic CPU, roughly one unit per wasm instruction.
    pub fuel: u64,
    /// Wall-clock timeout, enforced even when fuel remains.
    pub timeout: Duration,
    /// Linear memory limit across all of the instance's memories.
    pub memory: u64,
    /// Log cap: past it lines are dropped with one marker.
    pub log_bytes: usize,
    /// Result cap: a larger result fails the run.
    pub result_bytes: usize,
    /// Artifact writers open (created, not yet finished or dropped) at
    /// once; another `create` is refused. Each holds up to a chunk of
    /// buffered bytes on the host.
    pub artifact_writers: usize,
    /// Bytes written to artifacts in all by one attempt; a write past it is
    /// refused.
    pub artifact_bytes: u64,
    /// Error message cap: a longer one is cut, with a marker.
    pub error_bytes: usize,
    /// Progress message cap: a longer one is cut, with a marker.
    pub progress_bytes: usize,
}

impl Default for Limits {
    /// 10 billion fuel, 60 s, 128 MiB of memory, 1 MiB of log and of
    /// result, 16 artifact writers open and 8 GiB written to artifacts,
    /// 64 KiB of error message and 4 KiB of progress message.
    fn default() -> Self {
        Self {
            fuel: 10_000_000_000,
            timeout: Duration::from_secs(60),
            memory: 128 << 20,
            log_bytes: 1 << 20,
            result_bytes: 1 << 20,
            artifact_writers: 16,
            artifact_bytes: 8 << 30,
            error_bytes: 64 << 10,
            progress_bytes: 4 << 10,
        }
    }
}

/// `text` cut to at most `limit` bytes (at a character boundary), ending
/// with a marker naming how much was cut and the config key `key` that
/// sets the limit.
pub(crate) fn capped(mut text: String, limit: usize, key: &str) -> String {
    if text.len() <= limit {
        return text;
    }
    let cut = text.len();
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!(" … [{} bytes cut at {key}]", cut - end));
    text
}

/// Enforces a job's memory limit and records its peak memory.
///
/// A refused grow is remembered, so a guest that aborts because its
/// allocation failed is reported as hitting the memory limit rather than as
/// a trap of its own making.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: u64,
    current: u64,
    pub(crate) peak: u64,
    pub(crate) refused: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self { limit, current: 0, peak: 0, refused: false }
    }
}

/// Tables are small; this many elements is far beyond any real program.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // `current` and `desired` are per memory; the limit is for the total.
        let total = self.current.saturating_sub(current as u64) + desired as u64;
        if total > self.limit {
            self.refused = true;
            return Ok(false);
        }
        self.current = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
