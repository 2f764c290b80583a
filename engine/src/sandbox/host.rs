//! The host side of the contract: the generated bindings, the per-job store
//! state, and one implementation per interface.
//!
//! Each capability interface is linked once, and every call checks the job's
//! grant again before handing the request, with the job's principal, to a
//! service. The host never decides record or field permissions itself: that
//! is the services' job.

use std::sync::Arc;

use serde_json::Value;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::capability::{Capability, CapabilitySet};
use super::config::{Limits, MemoryLimiter, capped};
use super::log::{JobLog, Level};
use super::outcome::Progress;
use super::services::{self, ArtifactSink, ArtifactSource, Services};
use crate::store::Actor;

wasmtime::component::bindgen!({
    path: "../guest-sdk/wit",
    world: "objectos:jobs/job",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "objectos:jobs/artifacts.writer": ArtifactWriter,
        "objectos:jobs/artifacts-read.reader": ArtifactReader,
    },
});

use objectos::jobs::types::HostError as WitHostError;
use objectos::jobs::{
    artifact_types, artifacts, artifacts_read, log, progress, records, records_import, records_write,
};

/// Receives progress reports while a job runs.
pub trait ProgressObserver: Send + Sync {
    /// Called on every `progress.report`.
    fn progress(&self, progress: &Progress);
}

/// A guest's artifact writer, and whether it is finished (no longer
/// counted against the job's open writers).
pub struct ArtifactWriter {
    sink: Box<dyn ArtifactSink>,
    finished: bool,
}
/// A guest's open artifact reader.
pub struct ArtifactReader(Box<dyn ArtifactSource>);

/// The largest read a guest may ask for at once.
const MAX_READ: u32 = 1 << 20;

/// Everything one job's store holds.
pub(crate) struct JobState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) log: JobLog,
    /// The job's principal and id.
    pub(crate) actor: Actor,
    pub(crate) grants: CapabilitySet,
    pub(crate) services: Services,
    pub(crate) progress: Option<Progress>,
    pub(crate) observer: Option<Arc<dyn ProgressObserver>>,
    /// What the job may make the host hold or store.
    pub(crate) limits: Limits,
    /// The handles of artifact writers created and neither finished nor
    /// dropped: counted against the limit, abandoned when the job ends.
    pub(crate) writers_open: std::collections::HashSet<u32>,
    /// Bytes written to artifacts so far.
    pub(crate) artifact_bytes: u64,
}

impl WasiView for JobState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Links WASI and every interface of the contract into `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<JobState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    log::add_to_linker::<_, HasSelf<_>>(linker, get)?;
    progress::add_to_linker::<_, HasSelf<_>>(linker, get)?;
    records::add_to_linker::<_, HasSelf<_>>(linker, get)?;
    records_write::add_to_linker::<_, HasSelf<_>>(linker, get)?;
    records_import::add_to_linker::<_, HasSelf<_>>(linker, get)?;
    artifacts::add_to_linker::<_, HasSelf<_>>(linker, get)?;
    artifacts_read::add_to_linker::<_, HasSelf<_>>(linker, get)?;
    Ok(())
}

fn get(state: &mut JobState) -> &mut JobState {
    state
}

impl From<services::HostError> for WitHostError {
    fn from(error: services::HostError) -> Self {
        use services::HostError as E;
        match error {
            E::Denied(m) => WitHostError::Denied(m),
            E::Invalid(m) => WitHostError::Invalid(m),
            E::NotFound(m) => WitHostError::NotFound(m),
            E::LimitExceeded(m) => WitHostError::LimitExceeded(m),
            E::Unavailable(m) => WitHostError::Unavailable(m),
        }
    }
}

type HostResult<T> = wasmtime::Result<Result<T, WitHostError>>;

impl JobState {
    /// Abandons the writers the guest left open, removing what they stored:
    /// called when the job ends, however it ended.
    pub(crate) async fn abandon_writers(&mut self) {
        for rep in std::mem::take(&mut self.writers_open) {
            if let Ok(mut writer) = self.table.delete(Resource::<ArtifactWriter>::new_own(rep)) {
                writer.sink.abandon().await;
            }
        }
    }

    /// Refuses a call to `capability` unless the job holds it. Gating at
    /// start makes this unreachable for an honest run; it stays as the
    /// second line of defence the contract promises.
    fn check(&self, capability: Capability) -> Result<(), WitHostError> {
        if self.grants.contains(capability) {
            Ok(())
        } else {
            Err(WitHostError::Denied(format!("capability `{capability}` is not granted to this job")))
        }
    }
}

fn parse_json(what: &str, text: &str) -> Result<Value, WitHostError> {
    serde_json::from_str(text).map_err(|e| WitHostError::Invalid(format!("{what} is not valid JSON: {e}")))
}

fn parse_records(text: &str) -> Result<Vec<Value>, WitHostError> {
    match parse_json("records", text)? {
        Value::Array(records) => Ok(records),
        _ => Err(WitHostError::Invalid("records must be a JSON array of objects".into())),
    }
}

/// Runs `call` after the capability check, flattening both kinds of error.
macro_rules! checked {
    ($state:ident, $capability:expr, $call:expr) => {{
        Ok(match $state.check($capability) {
            Err(denied) => Err(denied),
            Ok(()) => async { $call }.await,
        })
    }};
}

impl objectos::jobs::types::Host for JobState {}
impl artifact_types::Host for JobState {}

impl log::Host for JobState {
    async fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.log.line(level, &message);
        Ok(())
    }
}

impl progress::Host for JobState {
    async fn report(&mut self, percent: u8, message: String) -> wasmtime::Result<()> {
        let message = capped(message, self.limits.progress_bytes, "jobs.maxProgressBytes");
        let progress = Progress { percent: percent.min(100), message };
        if let Some(observer) = &self.observer {
            observer.progress(&progress);
        }
        self.progress = Some(progress);
        Ok(())
    }
}

impl records::Host for JobState {
    async fn objects(&mut self) -> HostResult<Vec<records::ObjectInfo>> {
        checked!(self, Capability::Records, {
            let objects = self.services.records.objects(&self.actor).await?;
            Ok(objects.into_iter().map(|o| records::ObjectInfo { name: o.name, fields: o.fields }).collect())
        })
    }

    async fn find(&mut self, object: String, query: String) -> HostResult<records::Page> {
        checked!(self, Capability::Records, {
            let query = serde_json::from_str(&query)
                .map_err(|e| WitHostError::Invalid(format!("query is not a valid query object: {e}")))?;
            let page = self.services.records.find(&self.actor, &object, query).await?;
            Ok(records::Page {
                records: Value::Array(page.records).to_string(),
                next_cursor: page.next_cursor,
            })
        })
    }

    async fn count(&mut self, object: String, filter: String) -> HostResult<u64> {
        checked!(self, Capability::Records, {
            let filter = parse_json("filter", &filter)?;
            Ok(self.services.records.count(&self.actor, &object, filter).await?)
        })
    }
}

fn write_report(report: services::WriteReport) -> records_write::WriteReport {
    records_write::WriteReport { matched: report.matched, changed: report.changed, skipped: report.skipped }
}

impl records_write::Host for JobState {
    async fn insert(&mut self, object: String, records: String) -> HostResult<Vec<String>> {
        checked!(self, Capability::RecordsWrite, {
            let records = parse_records(&records)?;
            Ok(self.services.records.insert(&self.actor, &object, records).await?)
        })
    }

    async fn update(
        &mut self,
        object: String,
        filter: String,
        patch: String,
    ) -> HostResult<records_write::WriteReport> {
        checked!(self, Capability::RecordsWrite, {
            let filter = parse_json("filter", &filter)?;
            let patch = parse_json("patch", &patch)?;
            Ok(write_report(self.services.records.update(&self.actor, &object, filter, patch).await?))
        })
    }

    async fn delete(&mut self, object: String, filter: String) -> HostResult<records_write::WriteReport> {
        checked!(self, Capability::RecordsWrite, {
            let filter = parse_json("filter", &filter)?;
            Ok(write_report(self.services.records.delete(&self.actor, &object, filter).await?))
        })
    }
}

impl records_import::Host for JobState {
    async fn import(
        &mut self,
        object: String,
        records: String,
        on_conflict: records_import::OnConflict,
    ) -> HostResult<records_import::ImportReport> {
        checked!(self, Capability::RecordsImport, {
            let records = parse_records(&records)?;
            let on_conflict = match on_conflict {
                records_import::OnConflict::Skip => services::OnConflict::Skip,
                records_import::OnConflict::Replace => services::OnConflict::Replace,
                records_import::OnConflict::Fail => services::OnConflict::Fail,
            };
            let report = self.services.records.import(&self.actor, &object, records, on_conflict).await?;
            Ok(records_import::ImportReport {
                inserted: report.inserted,
                replaced: report.replaced,
                skipped: report.skipped,
            })
        })
    }
}

fn stale_handle(error: wasmtime::component::ResourceTableError) -> WitHostError {
    WitHostError::Invalid(format!("artifact handle is no longer open: {error}"))
}

fn artifact_info(info: services::ArtifactInfo) -> artifact_types::ArtifactInfo {
    artifact_types::ArtifactInfo {
        id: info.id,
        name: info.name,
        content_type: info.content_type,
        size: info.size,
        sha256: info.sha256,
    }
}

impl artifacts::Host for JobState {
    async fn create(&mut self, name: String, content_type: String) -> HostResult<Resource<ArtifactWriter>> {
        checked!(self, Capability::Artifacts, {
            if self.writers_open.len() >= self.limits.artifact_writers {
                return Err(WitHostError::LimitExceeded(format!(
                    "a job may hold at most {} artifact writers open at once (jobs.maxArtifactWriters); \
                     finish or drop one first",
                    self.limits.artifact_writers
                )));
            }
            let sink = self
                .services
                .artifacts
                .create(
                    &self.actor.principal,
                    self.actor.job_id.as_deref().unwrap_or_default(),
                    &name,
                    &content_type,
                )
                .await?;
            let writer = self
                .table
                .push(ArtifactWriter { sink, finished: false })
                .map_err(|e| WitHostError::LimitExceeded(format!("too many open artifacts: {e}")))?;
            self.writers_open.insert(writer.rep());
            Ok(writer)
        })
    }
}

impl artifacts::HostWriter for JobState {
    async fn write(&mut self, writer: Resource<ArtifactWriter>, bytes: Vec<u8>) -> HostResult<()> {
        checked!(self, Capability::Artifacts, {
            let limit = self.limits.artifact_bytes;
            if self.artifact_bytes.saturating_add(bytes.len() as u64) > limit {
                return Err(WitHostError::LimitExceeded(format!(
                    "a job may write at most {limit} bytes to artifacts (jobs.maxArtifactBytes); {} are written",
                    self.artifact_bytes
                )));
            }
            let writer = self.table.get_mut(&writer).map_err(stale_handle)?;
            writer.sink.write(&bytes).await?;
            self.artifact_bytes += bytes.len() as u64;
            Ok(())
        })
    }

    async fn finish(&mut self, writer: Resource<ArtifactWriter>) -> HostResult<artifact_types::ArtifactInfo> {
        checked!(self, Capability::Artifacts, {
            self.writers_open.remove(&writer.rep());
            let writer = self.table.get_mut(&writer).map_err(stale_handle)?;
            writer.finished = true;
            Ok(artifact_info(writer.sink.finish().await?))
        })
    }

    async fn drop(&mut self, writer: Resource<ArtifactWriter>) -> wasmtime::Result<()> {
        self.writers_open.remove(&writer.rep());
        let mut writer = self.table.delete(writer)?;
        if !writer.finished {
            writer.sink.abandon().await;
        }
        Ok(())
    }
}

impl artifacts_read::Host for JobState {
    async fn info(&mut self, id: String) -> HostResult<artifact_types::ArtifactInfo> {
        checked!(self, Capability::ArtifactsRead, {
            Ok(artifact_info(self.services.artifacts.info(&self.actor.principal, &id).await?))
        })
    }

    async fn open(&mut self, id: String) -> HostResult<Resource<ArtifactReader>> {
        checked!(self, Capability::ArtifactsRead, {
            let source = self.services.artifacts.open(&self.actor.principal, &id).await?;
            self.table
                .push(ArtifactReader(source))
                .map_err(|e| WitHostError::LimitExceeded(format!("too many open artifacts: {e}")))
        })
    }
}

impl artifacts_read::HostReader for JobState {
    async fn read(&mut self, reader: Resource<ArtifactReader>, max: u32) -> HostResult<Vec<u8>> {
        checked!(self, Capability::ArtifactsRead, {
            let reader = self.table.get_mut(&reader).map_err(stale_handle)?;
            Ok(reader.0.read(max.min(MAX_READ) as usize).await?)
        })
    }

    async fn drop(&mut self, reader: Resource<ArtifactReader>) -> wasmtime::Result<()> {
        self.table.delete(reader)?;
        Ok(())
    }
}
