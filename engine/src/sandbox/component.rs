//! Turning bytes into a handler the sandbox can run: recognising what the
//! bytes are, compiling them, checking the component targets the `job`
//! world and imports nothing the engine cannot provide, and working out the
//! capabilities it requests.
//!
//! Everything a bad upload can be wrong about is decided here, before any
//! guest code runs.

use thiserror::Error;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::capability::{CONTRACT_VERSION, CapabilitySet, ImportKind, classify_import};
use super::host::{JobPre, JobState};
use crate::digest::sha256_hex;

/// Why bytes cannot be run as a job handler.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ComponentError {
    /// Zero bytes.
    #[error("the file is empty")]
    Empty,
    /// The bytes do not start with the wasm magic number.
    #[error("not a WebAssembly binary (it does not start with `\\0asm`)")]
    NotWasm,
    /// A core module rather than a component.
    #[error(
        "this is a core WebAssembly module, not a component: build for `wasm32-wasip2` \
         (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// The bytes are wasm but malformed or use unsupported features.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component does not export `run` with the contract's signature.
    #[error("the component does not target the objectos:jobs/job@{CONTRACT_VERSION} world: {0}")]
    WrongWorld(String),
    /// Imports the engine cannot satisfy.
    #[error("the component imports what the engine does not provide: {}", .0.join(", "))]
    UnknownImports(Vec<String>),
}

/// A compiled, validated, pre-instantiated handler version.
pub struct CompiledHandler {
    pub(crate) component: Component,
    pub(crate) pre: JobPre<JobState>,
    sha256: String,
    requested: CapabilitySet,
    size: usize,
}

impl CompiledHandler {
    /// The lowercase hex sha256 of the component's bytes: its version.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The capabilities the component imports, which a job must be granted.
    pub fn requested(&self) -> CapabilitySet {
        self.requested
    }

    /// The component's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl std::fmt::Debug for CompiledHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledHandler")
            .field("sha256", &self.sha256)
            .field("requested", &self.requested)
            .finish_non_exhaustive()
    }
}

/// The wasm header: magic number, then a version whose last two bytes are
/// the layer (0 for core modules, 1 for components).
fn check_header(bytes: &[u8]) -> Result<(), ComponentError> {
    if bytes.is_empty() {
        return Err(ComponentError::Empty);
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(ComponentError::NotWasm);
    }
    match bytes.get(6..8) {
        Some([0, 0]) => Err(ComponentError::CoreModule),
        Some(_) => Ok(()),
        None => Err(ComponentError::Invalid("the file ends inside the wasm header".into())),
    }
}

/// Compiles and validates `bytes` as a job handler.
pub(crate) fn compile(
    engine: &Engine,
    linker: &Linker<JobState>,
    bytes: &[u8],
) -> Result<CompiledHandler, ComponentError> {
    check_header(bytes)?;
    let component = Component::new(engine, bytes).map_err(|e| ComponentError::Invalid(format!("{e:#}")))?;
    prepare(engine, linker, component, sha256_hex(bytes), bytes.len())
}

/// Validates an already compiled component and pre-instantiates it.
pub(crate) fn prepare(
    engine: &Engine,
    linker: &Linker<JobState>,
    component: Component,
    sha256: String,
    size: usize,
) -> Result<CompiledHandler, ComponentError> {
    let requested = requested_capabilities(engine, &component)?;
    let pre = linker.instantiate_pre(&component).map_err(|e| ComponentError::Invalid(format!("{e:#}")))?;
    let pre = JobPre::new(pre).map_err(|e| ComponentError::WrongWorld(format!("{e:#}")))?;
    Ok(CompiledHandler { component, pre, sha256, requested, size })
}

/// The capabilities `component` imports; any import the engine cannot
/// provide is an error naming it.
fn requested_capabilities(engine: &Engine, component: &Component) -> Result<CapabilitySet, ComponentError> {
    let mut requested = CapabilitySet::empty();
    let mut unknown = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        match classify_import(name) {
            ImportKind::Capability(capability) => requested.insert(capability),
            ImportKind::Always | ImportKind::Wasi => {}
            ImportKind::WrongVersion => {
                unknown.push(format!("{name} (this engine implements objectos:jobs@{CONTRACT_VERSION})"))
            }
            ImportKind::Unknown => unknown.push(format!("`{name}`")),
        }
    }
    if unknown.is_empty() { Ok(requested) } else { Err(ComponentError::UnknownImports(unknown)) }
}
