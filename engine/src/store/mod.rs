//! Durable state behind one trait: jobs, their events (the outbox), attempt
//! logs, handler versions, and schedules with their events.
//!
//! Every backend — in-memory for tests, SQLite embedded, PostgreSQL for
//! several nodes — implements [`Store`] and passes the same conformance
//! suite (`conformance`, behind the `testing` feature). The trait assumes
//! nothing about where the data lives: no caller may rely on the store
//! being in this process or on this process being its only user. Each
//! method is one atomic unit; a status change and its events are always
//! written together.

pub mod artifacts;
pub mod audit;
#[cfg(feature = "testing")]
pub mod conformance;
pub mod memory;
pub mod records;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use thiserror::Error;

use crate::jobs::{Attempt, AttemptLog, Job, JobEvent, JobQuery, JobStatus, StatusCounts};
use crate::principal::Principal;
use crate::sandbox::Progress;
use crate::schedule::{Schedule, ScheduleEvent, ScheduleEventType};

pub use artifacts::{ArtifactRecord, ArtifactStore};
pub use audit::{
    AuditAppend, AuditHead, AuditQuery, AuditRow, AuditSources, AuditStore, Cursors, FiledEntry,
};
pub use memory::MemoryStore;
pub use records::{
    AccessEvent, AccessEventType, Actor, Position, Record, RecordDelete, RecordFind, RecordImport,
    RecordStore, RecordUpdate, SortValue,
};
pub use sqlite::SqliteStore;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// Another active job holds this unique key.
    #[error("an active job already holds unique key `{key}` (job {job_id})")]
    UniqueConflict {
        /// The key.
        key: String,
        /// The job holding it.
        job_id: String,
    },
    /// The caller no longer holds the job's lease (its token is stale).
    #[error("job {0} is no longer leased to this worker")]
    LeaseLost(String),
    /// No such job.
    #[error("job {0} not found")]
    NotFound(String),
    /// A schedule with this id exists already.
    #[error("schedule `{0}` already exists")]
    ScheduleExists(String),
    /// No such schedule.
    #[error("schedule `{0}` not found")]
    ScheduleNotFound(String),
    /// The schedule changed since the caller read it.
    #[error("schedule `{0}` was changed meanwhile; read it again")]
    ScheduleChanged(String),
    /// A record with this id exists already.
    #[error("a record with id `{id}` already exists in `{object}`")]
    RecordExists {
        /// The object.
        object: String,
        /// The id.
        id: String,
    },
    /// A write would leave a record outside the writer's check filter.
    #[error("record `{0}` would fall outside the records the writer may change")]
    RecordCheck(String),
    /// An import would replace a record the importer may not change.
    #[error("record `{0}` exists and may not be replaced by this principal")]
    RecordNotReplaceable(String),
    /// No such artifact.
    #[error("artifact `{0}` not found")]
    ArtifactNotFound(String),
    /// The artifact is sealed and cannot change.
    #[error("artifact `{0}` is sealed")]
    ArtifactSealed(String),
    /// The chunks stored do not add up to the size being sealed.
    #[error("artifact `{id}` holds {stored} bytes, not {expected}")]
    ArtifactIncomplete {
        /// The artifact.
        id: String,
        /// Bytes stored.
        stored: u64,
        /// Bytes the sealer wrote.
        expected: u64,
    },
    /// The audit log grew past the head an append chained onto.
    #[error("the audit log moved on meanwhile; chain onto its new head")]
    AuditMoved,
    /// The database is busy or out of reach; nothing was written, and the
    /// same call may succeed later.
    #[error("storage is unavailable for now: {0}")]
    Unavailable(String),
    /// The database failed.
    #[error("storage failed: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether the call may succeed if made again unchanged (a busy or
    /// lost database), as opposed to an answer or a failure that repeats.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A job ready to be stored: the model plus its first event's details.
#[derive(Debug, Clone)]
pub struct JobInsert {
    /// The job, with status pending or scheduled and no attempts.
    pub job: Job,
}

/// What a worker asks for when it has free slots.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The time of the claim: jobs whose `run_at` is later stay.
    pub now: DateTime<Utc>,
    /// At most this many jobs.
    pub limit: usize,
    /// Handlers at their concurrency limit: skip their jobs.
    pub exclude: Vec<String>,
    /// Who claims (a node and worker id), recorded on the lease.
    pub owner: String,
    /// When the lease lapses unless renewed.
    pub lease_until: DateTime<Utc>,
}

/// A job taken by a worker, with its fencing token.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The job, now running, with `attempts` counting this attempt.
    pub job: Job,
    /// Must accompany every later change this worker makes to the job.
    pub lease_token: u64,
}

/// How an attempt ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum FinishKind {
    /// The result.
    Complete {
        /// The handler's result.
        result: Value,
    },
    /// Run again at `run_at`.
    Retry {
        /// When.
        run_at: DateTime<Utc>,
    },
    /// Failed for good.
    Fail,
    /// Stopped by a cancel.
    Cancel,
    /// Given back uncharged by a worker shutting down: the job waits again
    /// and the attempt is not counted.
    Release,
}

/// The end of one attempt.
#[derive(Debug, Clone)]
pub struct Finish {
    /// The job.
    pub job_id: String,
    /// The job's handler name (carried so events need no extra read).
    pub job_name: String,
    /// The token from the claim; a stale one is refused.
    pub lease_token: u64,
    /// What happens to the job.
    pub kind: FinishKind,
    /// The attempt's record (its `error` becomes the job's error).
    pub attempt: Attempt,
    /// The attempt's log, if it logged anything.
    pub log: Option<AttemptLog>,
    /// The last progress reported.
    pub progress: Option<Progress>,
    /// Whether the attempt ended by its wall-clock timeout.
    pub timed_out: bool,
}

/// A worker's hold on a running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job_id: String,
    /// The token from the claim.
    pub token: u64,
}

/// What a heartbeat learned about the leases it renewed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Renewal {
    /// Jobs no longer leased to the caller: stop them, record nothing.
    pub lost: Vec<String>,
    /// Jobs still leased whose cancel was requested: stop them as cancelled.
    pub cancel_requested: Vec<String>,
}

/// Which running jobs to take back from workers that stopped.
#[derive(Debug, Clone)]
pub struct RescueRequest {
    /// Leases that expired before this time are lapsed.
    pub now: DateTime<Utc>,
    /// Also take back every job leased to this owner, expired or not: a
    /// node starting up names itself, since its previous run is gone.
    pub owner: Option<String>,
    /// At most this many jobs.
    pub limit: usize,
}

/// A job taken back by a rescue.
#[derive(Debug, Clone, PartialEq)]
pub struct Rescued {
    /// The job.
    pub job_id: String,
    /// `retrying` (runs again now) or `failed` (no attempts were left).
    pub status: JobStatus,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled {
    /// The job was waiting and is now cancelled.
    Now(Job),
    /// The job is running; it is marked and its worker must stop it.
    Requested(Job),
    /// The job had already finished; nothing changed.
    AlreadyFinal(Job),
}

/// A handler name and the version it currently points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerRecord {
    /// The name jobs are enqueued under.
    pub name: String,
    /// The current version's sha256.
    pub sha256: String,
    /// Every version ever registered under this name, oldest first.
    pub versions: Vec<String>,
    /// When the name was first registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed version.
    pub updated_at: DateTime<Utc>,
}

/// A caller's change to a schedule.
#[derive(Debug, Clone)]
pub struct ScheduleChange {
    /// Created, updated, paused, resumed or deleted.
    pub event: ScheduleEventType,
    /// The schedule after the change (for a delete, as last read). Its
    /// `revision` is the one the caller read (0 for a new schedule): if the
    /// stored one differs, the change is refused.
    pub schedule: Schedule,
    /// Who makes it.
    pub actor: Principal,
    /// When.
    pub at: DateTime<Utc>,
}

/// One fire of a schedule, as the scheduler decided it.
#[derive(Debug, Clone)]
pub struct Fire {
    /// The schedule.
    pub schedule_id: String,
    /// The revision the scheduler knows: a schedule changed (or fired by
    /// another node) since is left alone.
    pub revision: u64,
    /// The fire time being handled (the schedule's stored `next_run`).
    pub due: DateTime<Utc>,
    /// The schedule's next fire time after this one.
    pub next_run: Option<DateTime<Utc>>,
    /// Enqueue a job, or record why not.
    pub action: FireAction,
    /// The time of the fire.
    pub now: DateTime<Utc>,
}

/// What a fire does.
#[derive(Debug, Clone)]
pub enum FireAction {
    /// Enqueue this job (emitting `job.scheduled`), unless the overlap
    /// policy is `skip` and the schedule's previous job is still active.
    Run(Box<Job>),
    /// Enqueue nothing; the reason is recorded as `schedule.skipped`.
    Skip(String),
}

/// What a fire did.
#[derive(Debug, Clone, PartialEq)]
pub enum FireOutcome {
    /// The job was enqueued.
    Fired(Box<Job>),
    /// No job; the reason was recorded.
    Skipped(String),
    /// The schedule changed, was removed or paused, or another node fired
    /// it: nothing was done.
    Stale,
}

/// The key that makes a fire happen at most once, whatever crashes.
pub(crate) fn fire_key(schedule_id: &str, due: DateTime<Utc>) -> String {
    format!("{schedule_id}@{}", due.timestamp_millis())
}

/// Jobs: their lifecycle under leases, their events (the outbox) and
/// attempt logs.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Stores new jobs and their `job.enqueued` events, all or none. A unique
    /// key held by an active job running as the same user (or twice in the
    /// batch) refuses the batch: keys are unique per user jobs run as, so
    /// one user's keys never block, or reveal, another's.
    async fn enqueue(&self, jobs: Vec<JobInsert>, now: DateTime<Utc>) -> Result<Vec<Job>, StoreError>;

    /// Takes up to `limit` waiting jobs whose time has come, most urgent
    /// first (priority, then `run_at`, then creation), marks them running
    /// under a new lease and emits `job.started` for each.
    async fn claim(&self, request: ClaimRequest) -> Result<Vec<Claimed>, StoreError>;

    /// Ends attempts. Each finish is its own unit: a stale lease refuses
    /// that one only. Results (the status entered) are in the order given.
    async fn finish(
        &self,
        finishes: Arc<[Finish]>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<JobStatus, StoreError>>, StoreError>;

    /// Cancels a job: waiting jobs at once, running ones by request.
    async fn cancel(&self, id: &str, now: DateTime<Utc>) -> Result<Cancelled, StoreError>;

    /// Extends the leases still held until `until`, and reports what the
    /// worker must act on: leases lost (rescued or finished elsewhere) and
    /// cancels requested through any handle on this store — another
    /// process's included, so a cancel reaches the guest within one
    /// heartbeat wherever it runs.
    async fn heartbeat(&self, leases: Vec<Lease>, until: DateTime<Utc>) -> Result<Renewal, StoreError>;

    /// Takes back running jobs whose lease lapsed (see [`RescueRequest`]).
    /// A job with attempts left runs again at once (`job.rescued`), one
    /// without fails (`job.failed`); the lost attempt is recorded as
    /// `lease-expired`.
    async fn rescue(&self, request: RescueRequest) -> Result<Vec<Rescued>, StoreError>;

    /// Deletes up to `limit` jobs in a final status that ended before the
    /// cutoff given for their status, with their logs; their events stay
    /// (the audit log's). Returns how many were deleted.
    async fn prune(&self, cutoffs: &[(JobStatus, DateTime<Utc>)], limit: usize) -> Result<u64, StoreError>;

    /// Records the latest progress of a running job under its lease.
    async fn set_progress(&self, id: &str, lease_token: u64, progress: Progress) -> Result<(), StoreError>;

    /// One job.
    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError>;

    /// A page of jobs (only those `query.owner` owns, if given).
    async fn list(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError>;

    /// How many jobs are in each status.
    async fn counts(&self) -> Result<StatusCounts, StoreError>;

    /// The logs of a job's attempts, oldest first.
    async fn logs(&self, id: &str) -> Result<Vec<AttemptLog>, StoreError>;

    /// The earliest `run_at` of any waiting job.
    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Lifecycle events with a sequence number above `after`, oldest first.
    async fn events(&self, after: u64, limit: usize) -> Result<Vec<JobEvent>, StoreError>;
}

/// Handler versions, by content, and the names pointing at them.
#[async_trait]
pub trait HandlerStore: Send + Sync + 'static {
    /// Stores a handler version (if new) and points `name` at it, with a
    /// `handler.registered` or `handler.uploaded` access event by `by` when
    /// the name is new or moves to another version.
    async fn put_handler(
        &self,
        name: &str,
        sha256: &str,
        bytes: &[u8],
        by: &Principal,
        now: DateTime<Utc>,
    ) -> Result<HandlerRecord, StoreError>;

    /// A handler by name.
    async fn handler(&self, name: &str) -> Result<Option<HandlerRecord>, StoreError>;

    /// Every handler, by name.
    async fn handlers(&self) -> Result<Vec<HandlerRecord>, StoreError>;

    /// The bytes of a handler version.
    async fn handler_bytes(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes a handler name (its versions stay for jobs pinned to them),
    /// with a `handler.deleted` access event by `by`.
    async fn delete_handler(
        &self,
        name: &str,
        by: &Principal,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// Schedules, their fires and their events.
#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Applies a caller's change to a schedule with its event and returns
    /// the stored schedule (revision bumped). Refused with `ScheduleExists`,
    /// `ScheduleNotFound` or `ScheduleChanged`, writing nothing.
    async fn change_schedule(&self, change: ScheduleChange) -> Result<Schedule, StoreError>;

    /// Handles fires. Each is its own unit and happens at most once: it
    /// applies only if the schedule is still at `revision`, unpaused and
    /// due at `due`; then, in one transaction, the job is enqueued with a
    /// fire key unique to (schedule, due) and its `job.scheduled` event, or
    /// a `schedule.skipped` event is written, and the schedule moves on to
    /// `next_run` (revision bumped; `last_run` and `last_job_id` set when a
    /// job was enqueued).
    async fn fire(&self, fires: Vec<Fire>) -> Result<Vec<Result<FireOutcome, StoreError>>, StoreError>;

    /// One schedule.
    async fn schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError>;

    /// Up to `limit` schedules with an id after `after` ("" for the first
    /// page), by id; only those `owner` created, if given.
    async fn schedules(
        &self,
        owner: Option<&str>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Schedule>, StoreError>;

    /// The sequence number of the latest schedule event (0 if none).
    async fn last_schedule_event(&self) -> Result<u64, StoreError>;

    /// Schedule events with a sequence number above `after`, oldest first.
    async fn schedule_events(&self, after: u64, limit: usize) -> Result<Vec<ScheduleEvent>, StoreError>;
}

/// The storage every engine node shares: all of its parts. A consumer
/// takes the narrowest part it needs; a backend implements each part and
/// is a `Store` by the blanket impl.
pub trait Store: JobStore + HandlerStore + ScheduleStore + RecordStore + AuditStore + ArtifactStore {}

impl<T> Store for T where T: JobStore + HandlerStore + ScheduleStore + RecordStore + AuditStore + ArtifactStore
{}

/// The stored form of a change: the schedule as it will be after it, or
/// the refusal. Backends call this with the schedule they hold now.
pub(crate) fn apply_change(
    current: Option<&Schedule>,
    change: &ScheduleChange,
) -> Result<Schedule, StoreError> {
    let id = &change.schedule.id;
    match (change.event, current) {
        (ScheduleEventType::Created, Some(_)) => Err(StoreError::ScheduleExists(id.clone())),
        (ScheduleEventType::Created, None) => Ok(Schedule { revision: 1, ..change.schedule.clone() }),
        (_, None) => Err(StoreError::ScheduleNotFound(id.clone())),
        (_, Some(current)) if current.revision != change.schedule.revision => {
            Err(StoreError::ScheduleChanged(id.clone()))
        }
        (_, Some(current)) => Ok(Schedule { revision: current.revision + 1, ..change.schedule.clone() }),
    }
}

/// The event recording `change`, whose result is `stored`.
pub(crate) fn schedule_change_event(change: &ScheduleChange, stored: &Schedule) -> ScheduleEvent {
    let data = match change.event {
        ScheduleEventType::Deleted => serde_json::json!({ "revision": stored.revision }),
        _ => serde_json::to_value(stored).expect("schedules serialize"),
    };
    ScheduleEvent {
        seq: 0,
        at: change.at,
        event: change.event,
        schedule_id: stored.id.clone(),
        actor: change.actor.clone(),
        data,
    }
}

/// Whether `fire` still applies to `current`.
pub(crate) fn fire_applies(current: Option<&Schedule>, fire: &Fire) -> bool {
    current.is_some_and(|s| s.revision == fire.revision && !s.paused && s.next_run == Some(fire.due))
}

/// The event recording a skipped fire.
pub(crate) fn skipped_event(fire: &Fire, reason: &str) -> ScheduleEvent {
    ScheduleEvent {
        seq: 0,
        at: fire.now,
        event: ScheduleEventType::Skipped,
        schedule_id: fire.schedule_id.clone(),
        actor: Principal::new(crate::schedule::SCHEDULER_ACTOR, &[]),
        data: serde_json::json!({ "due": fire.due, "reason": reason }),
    }
}

/// What a fire that applies does: the job to enqueue, or why none. Only
/// for a fire that would run, `lookups` tells whether the schedule's
/// previous job (`last_job_id`) is still active under an overlap `skip`
/// policy, and which job an earlier fire with the same fire key enqueued.
pub(crate) fn fire_decision<E>(
    fire: &Fire,
    last_job_id: Option<&str>,
    lookups: impl FnOnce() -> Result<(bool, Option<String>), E>,
) -> Result<Result<Job, String>, E> {
    let job = match &fire.action {
        FireAction::Skip(reason) => return Ok(Err(reason.clone())),
        FireAction::Run(job) => job,
    };
    Ok(match lookups()? {
        (true, _) => {
            Err(format!("overlap: the previous run (job {}) is still active", last_job_id.unwrap_or("?")))
        }
        (false, Some(earlier)) => Err(format!("already fired (job {earlier})")),
        (false, None) => Ok(job.as_ref().clone()),
    })
}

/// The `job.scheduled` event of a fired job.
pub(crate) fn fired_event(job: &Job, fire: &Fire) -> JobEvent {
    let late = (fire.now - fire.due).num_milliseconds().max(0);
    let transition = match job.status {
        JobStatus::Scheduled => crate::jobs::Transition::FireAhead,
        _ => crate::jobs::Transition::Fire,
    };
    event_for(
        job,
        transition,
        None,
        fire.now,
        serde_json::json!({ "scheduleId": fire.schedule_id, "due": fire.due, "lateMs": late, "priority": job.priority }),
    )
}

/// The schedule after a fire: moved on, and linked to its job if it ran one.
pub(crate) fn advanced(schedule: &Schedule, fire: &Fire, job: Option<&Job>) -> Schedule {
    let mut next = schedule.clone();
    next.revision += 1;
    next.next_run = fire.next_run;
    if let Some(job) = job {
        next.last_run = Some(fire.now);
        next.last_job_id = Some(job.id.clone());
    }
    next
}

/// How a lost attempt is recorded when its lease is rescued.
pub(crate) fn lost_attempt(job: &Job, now: DateTime<Utc>) -> Attempt {
    Attempt {
        number: job.attempts,
        started_at: job.started_at.unwrap_or(now),
        finished_at: now,
        outcome: "lease-expired".into(),
        error: Some("lease expired: the worker running this attempt stopped or lost contact".into()),
        usage: Default::default(),
    }
}

/// Builds the event for `transition` of `job` from `from`.
pub(crate) fn event_for(
    job: &Job,
    transition: crate::jobs::Transition,
    from: Option<crate::jobs::JobStatus>,
    at: DateTime<Utc>,
    data: Value,
) -> JobEvent {
    JobEvent {
        seq: 0,
        at,
        event: transition.event(),
        job_id: job.id.clone(),
        job_name: job.name.clone(),
        attempt: job.attempts,
        from,
        to: transition.to(),
        data,
    }
}

/// The events that ending an attempt emits: `job.timed_out` first when the
/// attempt timed out, then the transition's own event.
pub(crate) fn finish_events(finish: &Finish, from: JobStatus, at: DateTime<Utc>) -> Vec<JobEvent> {
    use crate::jobs::{EventType, Transition};
    let transition = match finish.kind {
        FinishKind::Complete { .. } => Transition::Complete,
        FinishKind::Retry { .. } => Transition::Retry,
        FinishKind::Fail => Transition::Fail,
        FinishKind::Cancel => Transition::Cancel,
        FinishKind::Release => Transition::Release,
    };
    let mut data = serde_json::json!({
        "outcome": finish.attempt.outcome,
        "error": finish.attempt.error,
        "usage": finish.attempt.usage,
    });
    if let FinishKind::Retry { run_at } = finish.kind {
        data["nextRunAt"] = Value::String(run_at.to_rfc3339());
    }
    let event = |event: EventType, to: JobStatus, data: Value| JobEvent {
        seq: 0,
        at,
        event,
        job_id: finish.job_id.clone(),
        job_name: finish.job_name.clone(),
        attempt: finish.attempt.number,
        from: Some(from),
        to,
        data,
    };
    let mut events = Vec::with_capacity(2);
    if finish.timed_out {
        events.push(event(EventType::TimedOut, from, data.clone()));
    }
    events.push(event(transition.event(), transition.to(), data));
    events
}

/// The access event of a handler change from `previous` (the version the
/// name pointed at, if any) to `current` (none for a removal), or none when
/// nothing changed.
pub(crate) fn handler_event(
    name: &str,
    previous: Option<&str>,
    current: Option<&str>,
    by: &Principal,
    at: DateTime<Utc>,
) -> Option<AccessEvent> {
    let event = match (previous, current) {
        (None, Some(_)) => AccessEventType::HandlerRegistered,
        (Some(old), Some(new)) if old != new => AccessEventType::HandlerUploaded,
        (Some(_), None) => AccessEventType::HandlerDeleted,
        _ => return None,
    };
    let data = serde_json::json!({ "name": name, "sha256": current.or(previous), "previous": previous });
    let actor = Actor { principal: by.clone(), job_id: None };
    Some(AccessEvent::new(event, &actor, format!("handlers/{name}"), data, at))
}
