//! ObjectOS Jobs: a background-job engine whose handlers are sandboxed
//! WebAssembly components.
//!
//! The engine takes a job handler — a component targeting the
//! `objectos:jobs/job@0.1.0` world of `guest-sdk/wit` — and runs jobs in it,
//! each in a fresh instance with a fuel budget, a wall-clock timeout, a
//! memory limit and only the capabilities its principal holds.
//!
//! ```no_run
//! use objectos_engine::principal::Principal;
//! use objectos_engine::sandbox::{JobRun, Sandbox, SandboxConfig};
//!
//! # async fn example(wasm: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let sandbox = Sandbox::new(&SandboxConfig::new())?;
//! let handler = sandbox.compile(wasm)?;
//! let job = JobRun::new("job-1", "hello", Principal::new("ada", &["admin"]), r#"{"name":"Ada"}"#);
//! let outcome = sandbox.run(&handler, job).await;
//! println!("{} after {:?}", outcome.kind, outcome.usage.wall);
//! # Ok(()) }
//! ```
//!
//! Core concepts:
//! - [`sandbox::Sandbox`] compiles handlers and runs one job attempt at a time
//!   in isolation, reporting an [`sandbox::Outcome`].
//! - [`sandbox::Capability`]: the interfaces a component imports are its
//!   request for authority; a job runs only if all are granted.
//! - [`sandbox::Services`]: the records and artifacts host calls reach,
//!   always as the job's [`principal::Principal`].
//! - [`queue::Queue`]: enqueue, cancel and inspect jobs; its workers claim
//!   ready jobs from a [`store::Store`] and run them in the sandbox.
//! - [`jobs::lifecycle`]: every status change and the event it emits.
//! - [`builtins`]: the built-in handlers, `data-cleanup` and
//!   `report-generation`, embedded as components.
//! - [`registry::Registry`]: handlers by name, versions by sha256, compiled
//!   code cached on disk.
//! - [`node::Node`]: one engine process on the embedded database, built
//!   from a [`config::EngineConfig`] (`objectos serve`).

pub mod api;
pub mod artifacts;
pub mod audit;
pub mod builtins;
pub mod clock;
pub mod config;
pub mod digest;
pub mod examples;
pub mod field_path;
pub mod jobs;
pub mod local;
pub mod node;
pub mod ownership;
pub mod permissions;
pub mod principal;
pub mod queue;
pub mod records;
pub mod registry;
pub mod sandbox;
pub mod schedule;
pub mod store;
