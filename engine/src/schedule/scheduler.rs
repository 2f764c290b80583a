//! The scheduler: the schedule API, and the loop that fires schedules on
//! time.
//!
//! Every schedule's next fire time is kept in one ordered set in memory;
//! the loop sleeps until the earliest (or until a change wakes it) and
//! fires what is due in one batch, so 100,000 schedules cost nothing while
//! none is due: there is no periodic scan. Each fire is one store
//! operation that enqueues the job and moves the schedule on together, on
//! the condition that the schedule is still at the revision this node
//! knows, so a fire happens once however many nodes race for it.
//! Changes made by other processes reach the index through the store's
//! schedule events, read from where this node last stopped.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cron::{CronError, CronSchedule};
use super::{MisfirePolicy, Schedule, ScheduleEventType, ScheduleSpec};
use crate::jobs::Job;
use crate::ownership::Scope;
use crate::principal::Principal;
use crate::queue::{Queue, QueueError};
use crate::store::{Fire, FireAction, FireOutcome, ScheduleChange, ScheduleStore, StoreError};

/// Why a schedule operation was refused. Nothing was stored.
#[derive(Debug, Error)]
pub enum ScheduleError {
    /// The cron expression or time zone is invalid.
    #[error(transparent)]
    Cron(#[from] CronError),
    /// A field is invalid.
    #[error("`{field}` {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The handler does not exist.
    #[error("unknown handler `{0}`")]
    UnknownHandler(String),
    /// The job the schedule would enqueue is refused (capabilities,
    /// impersonation).
    #[error(transparent)]
    Job(QueueError),
    /// No such schedule.
    #[error("schedule `{0}` not found")]
    NotFound(String),
    /// The schedule belongs to someone outside the caller's scope. Its
    /// message is [`ScheduleError::NotFound`]'s, so nothing confirms that it
    /// exists; the API records the attempt as a denial.
    #[error("schedule `{0}` not found")]
    Hidden(String),
    /// The id is taken.
    #[error("schedule `{0}` already exists")]
    Exists(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ScheduleError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::ScheduleExists(id) => ScheduleError::Exists(id),
            StoreError::ScheduleNotFound(id) => ScheduleError::NotFound(id),
            other => ScheduleError::Store(other),
        }
    }
}

impl From<QueueError> for ScheduleError {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::Invalid { field, message, .. } => ScheduleError::Invalid { field, message },
            QueueError::UnknownHandler { name, .. } => ScheduleError::UnknownHandler(name),
            QueueError::Store(error) => error.into(),
            other => ScheduleError::Job(other),
        }
    }
}

/// The scheduler's settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// A fire handled later than this after its time is a misfire (the
    /// engine was down or overloaded) and follows the schedule's misfire
    /// policy; a fire less late simply runs. Default 60 s.
    pub misfire_threshold: Duration,
    /// How often changes made by other processes are picked up. Default 1 s.
    pub poll_interval: Duration,
    /// How long before its time a fire is handled: its job is stored ahead
    /// and waits (`scheduled`) until the fire time, so a burst of fires
    /// due at the same moment is runnable at that moment rather than after
    /// it has been written. A pause or removal within this window does not
    /// stop the fire already handled. Default 200 ms; zero fires at the time.
    pub lead: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            misfire_threshold: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            lead: Duration::from_millis(200),
        }
    }
}

/// One fire that enqueued a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    /// The schedule.
    pub schedule_id: String,
    /// The job.
    pub job: Job,
    /// The fire time.
    pub due: DateTime<Utc>,
    /// How late the job was stored (committed) after its fire time;
    /// negative when it was stored ahead of it (see [`SchedulerConfig::lead`]).
    pub late: chrono::Duration,
}

/// What one pass over the due schedules did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// Fires that enqueued a job.
    pub fired: Vec<Fired>,
    /// Fires that did not, with the reason (overlap, misfire, …).
    pub skipped: Vec<(String, String)>,
    /// Fires found stale (changed or fired elsewhere) and re-read.
    pub stale: usize,
}

/// A held schedule. 100,000 of them must fit in little memory, so the
/// spec stays serialized until a fire needs it.
struct Entry {
    spec: Box<str>,
    times: CronSchedule,
    revision: u64,
    paused: bool,
    next_run: Option<DateTime<Utc>>,
    last_run: Option<DateTime<Utc>>,
    last_job_id: Option<Box<str>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    owner: Box<str>,
}

impl Entry {
    fn new(schedule: Schedule, times: CronSchedule) -> Self {
        Entry {
            spec: serde_json::to_string(&schedule.spec).expect("specs serialize").into(),
            times,
            revision: schedule.revision,
            paused: schedule.paused,
            next_run: schedule.next_run,
            last_run: schedule.last_run,
            last_job_id: schedule.last_job_id.map(Into::into),
            created_at: schedule.created_at,
            updated_at: schedule.updated_at,
            owner: schedule.owner.into(),
        }
    }

    fn schedule(&self, id: &str) -> Schedule {
        Schedule {
            id: id.to_string(),
            spec: serde_json::from_str(&self.spec).expect("a spec this process serialized"),
            paused: self.paused,
            next_run: self.next_run,
            last_run: self.last_run,
            last_job_id: self.last_job_id.as_deref().map(Into::into),
            revision: self.revision,
            created_at: self.created_at,
            updated_at: self.updated_at,
            owner: self.owner.to_string(),
        }
    }
}

/// Every unpaused schedule's next fire time, in order.
#[derive(Default)]
struct Index {
    entries: HashMap<String, Entry>,
    due: BTreeSet<(DateTime<Utc>, String)>,
    /// The last schedule event this index has seen.
    cursor: u64,
}

impl Index {
    /// Holds `schedule` (unless a newer revision is held already).
    fn put(&mut self, schedule: Schedule) {
        if let Some(held) = self.entries.get(&schedule.id)
            && held.revision > schedule.revision
        {
            return;
        }
        self.remove(&schedule.id);
        let times = match CronSchedule::new(&schedule.spec.cron, &schedule.spec.timezone) {
            Ok(times) => times,
            Err(error) => {
                tracing::error!(schedule = %schedule.id, %error, "stored schedule cannot be read; not scheduling it");
                return;
            }
        };
        if let Some(at) = schedule.next_run.filter(|_| !schedule.paused) {
            self.due.insert((at, schedule.id.clone()));
        }
        self.entries.insert(schedule.id.clone(), Entry::new(schedule, times));
    }

    /// Moves a held schedule on after a fire, as the store did (see
    /// [`crate::store::Store::fire`]). Its spec and fire times are unchanged,
    /// so nothing is serialized or parsed again on this hot path.
    fn advance(&mut self, fire: &Fire, job: Option<&Job>) {
        let Index { entries, due, .. } = self;
        let Some(entry) = entries.get_mut(&fire.schedule_id) else { return };
        // A newer revision read meanwhile wins, as in `put`.
        if entry.revision > fire.revision + 1 {
            return;
        }
        if let Some(at) = entry.next_run {
            due.remove(&(at, fire.schedule_id.clone()));
        }
        entry.revision = fire.revision + 1;
        entry.next_run = fire.next_run;
        if let Some(job) = job {
            entry.last_run = Some(fire.now);
            entry.last_job_id = Some(job.id.as_str().into());
        }
        if let Some(at) = entry.next_run.filter(|_| !entry.paused) {
            due.insert((at, fire.schedule_id.clone()));
        }
    }

    fn retry_at(&mut self, id: &str, at: DateTime<Utc>) {
        if self.entries.contains_key(id) {
            self.due.insert((at, id.to_string()));
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(entry) = self.entries.remove(id)
            && let Some(at) = entry.next_run
        {
            self.due.remove(&(at, id.to_string()));
        }
    }

    /// Takes up to `limit` schedules due by `now` out of the due set.
    fn take_due(&mut self, now: DateTime<Utc>, limit: usize) -> Vec<(Schedule, CronSchedule)> {
        let mut taken = Vec::new();
        while taken.len() < limit {
            match self.due.first() {
                Some((at, _)) if *at <= now => {}
                _ => break,
            }
            let Some((_, id)) = self.due.pop_first() else { break };
            // A retry's key can outlive a change of the schedule: take only
            // what is really due.
            if let Some(entry) =
                self.entries.get(&id).filter(|e| !e.paused && e.next_run.is_some_and(|n| n <= now))
            {
                taken.push((entry.schedule(&id), entry.times.clone()));
            }
        }
        taken
    }
}

/// Creates, changes and fires schedules. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Queue,
    store: Arc<dyn ScheduleStore>,
    config: SchedulerConfig,
    index: Mutex<Index>,
    /// Woken when a change may have moved the earliest fire time.
    wake: Notify,
}

/// The running scheduler loop.
pub struct SchedulerHandle {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl SchedulerHandle {
    /// Stops the loop (a fire in progress completes first).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn new_schedule_id() -> String {
    format!("sch_{:011x}{:013x}", Utc::now().timestamp_millis(), fastrand::u64(..) >> 12)
}

fn check_id(id: &str) -> Result<(), ScheduleError> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if valid {
        Ok(())
    } else {
        Err(ScheduleError::Invalid {
            field: "id",
            message: format!("`{id}` must be 1 to 128 letters, digits, `-`, `_`, `.` or `:`"),
        })
    }
}

/// Applies a JSON merge patch (RFC 7396): objects merge, `null` removes.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Changes are retried this often when a fire or another caller changed
/// the schedule in between.
const CHANGE_ATTEMPTS: usize = 8;
/// Fires handled in one store operation.
const FIRE_BATCH: usize = 256;
/// Schedules read from the store at a time.
const LOAD_PAGE: usize = 1000;
/// Batches planned and written at once.
const PIPELINE: usize = 16;

impl Scheduler {
    /// A scheduler keeping its schedules in `store` and enqueueing through
    /// `queue` (whose store it must be). Call [`Scheduler::start`] to fire schedules.
    pub fn new(queue: Queue, store: Arc<dyn ScheduleStore>, config: SchedulerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                queue,
                store,
                config,
                index: Mutex::new(Index::default()),
                wake: Notify::new(),
            }),
        }
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.inner.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.queue.clock().now()
    }

    fn hold(&self, schedule: Schedule) {
        self.index().put(schedule);
        self.inner.wake.notify_one();
    }

    /// Checks `spec` as `caller` would enqueue its job and fixes whom it runs as.
    async fn validate(
        &self,
        caller: &Principal,
        mut spec: ScheduleSpec,
    ) -> Result<(ScheduleSpec, CronSchedule), ScheduleError> {
        let times = CronSchedule::new(&spec.cron, &spec.timezone)?;
        let job = self.inner.queue.prepare_jobs(caller, vec![spec.new_job()], self.now()).await.remove(0)?;
        spec.run_as = Some(job.run_as);
        Ok((spec, times))
    }

    /// Adds a schedule with `id` (generated if `None`), owned by `caller`:
    /// its jobs run as `caller` unless `spec.run_as` says otherwise.
    pub async fn add(
        &self,
        caller: &Principal,
        id: Option<String>,
        spec: ScheduleSpec,
    ) -> Result<Schedule, ScheduleError> {
        let id = id.unwrap_or_else(new_schedule_id);
        check_id(&id)?;
        let (spec, times) = self.validate(caller, spec).await?;
        let now = self.now();
        let schedule = Schedule {
            id,
            owner: caller.user_id.clone(),
            spec,
            paused: false,
            next_run: times.next_after(now),
            last_run: None,
            last_job_id: None,
            revision: 0,
            created_at: now,
            updated_at: now,
        };
        let change =
            ScheduleChange { event: ScheduleEventType::Created, schedule, actor: caller.clone(), at: now };
        let stored = self.inner.store.change_schedule(change).await?;
        self.hold(stored.clone());
        Ok(stored)
    }

    /// Changes a schedule by a JSON merge patch over its spec (for example
    /// `{"cron": "0 3 * * *", "maxRetries": 0}`; `null` restores a default).
    /// A new expression or time zone recomputes the next run from now.
    pub async fn update(
        &self,
        caller: &Principal,
        scope: &Scope,
        id: &str,
        patch: &Value,
    ) -> Result<Schedule, ScheduleError> {
        if !patch.is_object() {
            return Err(ScheduleError::Invalid { field: "patch", message: "must be a JSON object".into() });
        }
        for _ in 0..CHANGE_ATTEMPTS {
            let current = self.get(scope, id).await?;
            let mut document = serde_json::to_value(&current.spec).expect("specs serialize");
            merge_patch(&mut document, patch);
            let spec: ScheduleSpec = serde_json::from_value(document)
                .map_err(|e| ScheduleError::Invalid { field: "patch", message: e.to_string() })?;
            let (spec, times) = self.validate(caller, spec).await?;
            let now = self.now();
            let retimed = spec.cron != current.spec.cron || spec.timezone != current.spec.timezone;
            let next_run = match current.paused {
                true => None,
                false if retimed => times.next_after(now),
                false => current.next_run,
            };
            let schedule = Schedule { spec, next_run, updated_at: now, ..current };
            match self.commit(ScheduleEventType::Updated, schedule, caller, now).await {
                Err(ScheduleError::Store(StoreError::ScheduleChanged(_))) => continue,
                result => return result,
            }
        }
        Err(StoreError::ScheduleChanged(id.to_string()).into())
    }

    /// Pauses a schedule: it does not fire until resumed. Pausing a paused
    /// schedule changes nothing.
    pub async fn pause(
        &self,
        caller: &Principal,
        scope: &Scope,
        id: &str,
    ) -> Result<Schedule, ScheduleError> {
        self.change(caller, scope, id, ScheduleEventType::Paused, |schedule, _| {
            (!schedule.paused).then(|| Schedule { paused: true, next_run: None, ..schedule.clone() })
        })
        .await
    }

    /// Resumes a paused schedule from now on: fire times that passed while
    /// it was paused are not made up.
    pub async fn resume(
        &self,
        caller: &Principal,
        scope: &Scope,
        id: &str,
    ) -> Result<Schedule, ScheduleError> {
        self.change(caller, scope, id, ScheduleEventType::Resumed, |schedule, now| {
            let times = CronSchedule::new(&schedule.spec.cron, &schedule.spec.timezone).ok()?;
            schedule.paused.then(|| Schedule {
                paused: false,
                next_run: times.next_after(now),
                ..schedule.clone()
            })
        })
        .await
    }

    /// Removes a schedule. Jobs it already enqueued are not touched.
    pub async fn remove(
        &self,
        caller: &Principal,
        scope: &Scope,
        id: &str,
    ) -> Result<Schedule, ScheduleError> {
        let removed = self
            .change(caller, scope, id, ScheduleEventType::Deleted, |schedule, _| Some(schedule.clone()))
            .await?;
        self.index().remove(id);
        Ok(removed)
    }

    /// Reads, changes by `modify` (`None`: nothing to do) and writes,
    /// again if a fire came in between.
    async fn change(
        &self,
        caller: &Principal,
        scope: &Scope,
        id: &str,
        event: ScheduleEventType,
        modify: impl Fn(&Schedule, DateTime<Utc>) -> Option<Schedule>,
    ) -> Result<Schedule, ScheduleError> {
        for _ in 0..CHANGE_ATTEMPTS {
            let current = self.get(scope, id).await?;
            let now = self.now();
            let Some(changed) = modify(&current, now) else { return Ok(current) };
            match self.commit(event, Schedule { updated_at: now, ..changed }, caller, now).await {
                Err(ScheduleError::Store(StoreError::ScheduleChanged(_))) => continue,
                result => return result,
            }
        }
        Err(StoreError::ScheduleChanged(id.to_string()).into())
    }

    async fn commit(
        &self,
        event: ScheduleEventType,
        schedule: Schedule,
        caller: &Principal,
        at: DateTime<Utc>,
    ) -> Result<Schedule, ScheduleError> {
        let change = ScheduleChange { event, schedule, actor: caller.clone(), at };
        let stored = self.inner.store.change_schedule(change).await?;
        if event != ScheduleEventType::Deleted {
            self.hold(stored.clone());
        }
        Ok(stored)
    }

    /// One schedule within `scope`; another's is [`ScheduleError::Hidden`].
    pub async fn get(&self, scope: &Scope, id: &str) -> Result<Schedule, ScheduleError> {
        let schedule =
            self.inner.store.schedule(id).await?.ok_or_else(|| ScheduleError::NotFound(id.to_string()))?;
        match scope.admits([schedule.owner.as_str()]) {
            true => Ok(schedule),
            false => Err(ScheduleError::Hidden(id.to_string())),
        }
    }

    /// A page of the schedules within `scope` by id: up to `limit` after
    /// `after` ("" first).
    pub async fn page(
        &self,
        scope: &Scope,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Schedule>, ScheduleError> {
        Ok(self.inner.store.schedules(scope.owner(), after, limit).await?)
    }

    /// Every schedule within `scope`, by id.
    pub async fn list(&self, scope: &Scope) -> Result<Vec<Schedule>, ScheduleError> {
        let mut all = Vec::new();
        loop {
            let after = all.last().map_or("", |s: &Schedule| s.id.as_str());
            let page = self.page(scope, after, LOAD_PAGE).await?;
            let done = page.len() < LOAD_PAGE;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// Reads every schedule from the store into the index (done by
    /// [`Scheduler::start`]), a page at a time so loading 100,000 needs
    /// little more memory than holding them. Returns how many there are.
    pub async fn load(&self) -> Result<usize, ScheduleError> {
        let store = &self.inner.store;
        // Changes made while the pages are read come again from the events
        // after this point; applying one twice is harmless.
        let cursor = store.last_schedule_event().await?;
        *self.index() = Index { cursor, ..Index::default() };
        let (mut after, mut count) = (String::new(), 0);
        loop {
            let page = store.schedules(None, &after, LOAD_PAGE).await?;
            count += page.len();
            let done = page.len() < LOAD_PAGE;
            if let Some(last) = page.last() {
                after = last.id.clone();
            }
            let mut index = self.index();
            for schedule in page {
                index.put(schedule);
            }
            if done {
                return Ok(count);
            }
        }
    }

    /// Follows changes other processes made since the last look, from the
    /// store's schedule events.
    pub async fn sync(&self) -> Result<(), ScheduleError> {
        let store = &self.inner.store;
        loop {
            let cursor = self.index().cursor;
            let events = store.schedule_events(cursor, 1000).await?;
            let Some(last) = events.last().map(|e| e.seq) else { return Ok(()) };
            let ids: HashSet<String> = events.into_iter().map(|e| e.schedule_id).collect();
            for id in ids {
                self.reload(&id).await?;
            }
            self.index().cursor = last;
        }
    }

    async fn reload(&self, id: &str) -> Result<(), ScheduleError> {
        match self.inner.store.schedule(id).await? {
            Some(schedule) => self.index().put(schedule),
            None => self.index().remove(id),
        }
        Ok(())
    }

    /// The earliest fire time held.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.index().due.first().map(|(at, _)| *at)
    }

    /// When the loop next has work: the earliest fire time less the lead.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        let lead = chrono::Duration::from_std(self.inner.config.lead).unwrap_or_default();
        self.next_due().map(|due| due - lead)
    }

    /// Fires every schedule due by now (and within the lead): what the loop
    /// does when it wakes.
    pub async fn run_due(&self) -> Result<TickReport, ScheduleError> {
        let mut report = TickReport::default();
        let lead = chrono::Duration::from_std(self.inner.config.lead).unwrap_or_default();
        loop {
            let now = self.now();
            let taken = self.index().take_due(now + lead, FIRE_BATCH * PIPELINE);
            if taken.is_empty() {
                return Ok(report);
            }
            // Each batch's write starts as soon as it is planned: planning the
            // next overlaps it, and the store commits waiting writes together.
            let mut writes = Vec::new();
            for batch in taken.chunks(FIRE_BATCH) {
                let fires = self.plan(batch, now).await;
                let (store, sent) = (self.inner.store.clone(), fires.clone());
                writes.push((batch, fires, tokio::spawn(async move { store.fire(sent).await })));
            }
            let mut failure = None;
            for (batch, fires, write) in writes {
                let outcomes = write.await.unwrap_or_else(|e| Err(StoreError::Backend(e.to_string())));
                if let Err(error) = self.settle(batch, &fires, outcomes, now, &mut report).await {
                    failure = Some(error);
                }
            }
            if let Some(error) = failure {
                return Err(error);
            }
            if taken.len() < FIRE_BATCH * PIPELINE {
                return Ok(report);
            }
        }
    }

    /// Decides each due schedule's fire: its next run, and the job to
    /// enqueue or why none.
    async fn plan(&self, taken: &[(Schedule, CronSchedule)], now: DateTime<Utc>) -> Vec<Fire> {
        let threshold = chrono::Duration::from_std(self.inner.config.misfire_threshold).unwrap_or_default();
        let mut fires = Vec::with_capacity(taken.len());
        let mut to_prepare = Vec::new();
        for (schedule, times) in taken {
            let due = schedule.next_run.unwrap_or(now);
            // Fires missed beyond the next collapse into this one.
            let next_run = times.next_after(due.max(now));
            let action = if now - due > threshold && schedule.spec.misfire == MisfirePolicy::Skip {
                FireAction::Skip(format!("misfire: {}s late (policy skip)", (now - due).num_seconds()))
            } else {
                // A fire handled ahead of its time waits for it.
                let job = crate::jobs::NewJob { run_at: Some(due), ..schedule.spec.new_job() };
                to_prepare.push((fires.len(), job));
                FireAction::Skip(String::new()) // replaced by `prepare_fired_jobs`
            };
            fires.push(Fire {
                schedule_id: schedule.id.clone(),
                revision: schedule.revision,
                due,
                next_run,
                action,
                now,
            });
        }
        self.prepare_fired_jobs(taken, &mut fires, to_prepare, now).await;
        fires
    }

    /// Takes the outcomes of a batch of fires into the index and the report.
    async fn settle(
        &self,
        taken: &[(Schedule, CronSchedule)],
        fires: &[Fire],
        outcomes: Result<Vec<Result<FireOutcome, StoreError>>, StoreError>,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), ScheduleError> {
        let outcomes = match outcomes {
            Ok(outcomes) => outcomes,
            Err(error) => {
                self.retry_later(fires.iter().map(|f| f.schedule_id.as_str()), now);
                return Err(error.into());
            }
        };
        let committed = self.now();
        let mut any_fired = false;
        for (((schedule, _), fire), outcome) in taken.iter().zip(fires).zip(outcomes) {
            match outcome {
                Ok(FireOutcome::Fired(job)) => {
                    any_fired = true;
                    self.index().advance(fire, Some(&job));
                    report.fired.push(Fired {
                        schedule_id: schedule.id.clone(),
                        job: *job,
                        due: fire.due,
                        late: committed - fire.due,
                    });
                }
                Ok(FireOutcome::Skipped(reason)) => {
                    self.index().advance(fire, None);
                    report.skipped.push((schedule.id.clone(), reason));
                }
                Ok(FireOutcome::Stale) => {
                    report.stale += 1;
                    self.reload(&schedule.id).await?;
                }
                Err(error) => {
                    tracing::error!(schedule = %schedule.id, %error, "fire failed; trying again in a second");
                    self.retry_later([schedule.id.as_str()], now);
                }
            }
        }
        if any_fired {
            self.inner.queue.jobs_added();
        }
        Ok(())
    }

    /// Builds the jobs of the fires that run; one that can no longer be
    /// enqueued (handler removed, grant revoked) becomes a recorded skip.
    async fn prepare_fired_jobs(
        &self,
        taken: &[(Schedule, CronSchedule)],
        fires: &mut [Fire],
        to_prepare: Vec<(usize, crate::jobs::NewJob)>,
        now: DateTime<Utc>,
    ) {
        // Jobs are prepared per owner, each as its owner enqueueing it.
        let mut by_owner: HashMap<String, (Principal, Vec<(usize, crate::jobs::NewJob)>)> = HashMap::new();
        for (position, job) in to_prepare {
            let owner = taken[position].0.spec.run_as.clone().unwrap_or_default();
            let key = serde_json::to_string(&owner).unwrap_or_default();
            by_owner.entry(key).or_insert_with(|| (owner, Vec::new())).1.push((position, job));
        }
        for (owner, jobs) in by_owner.into_values() {
            let (positions, jobs): (Vec<usize>, Vec<_>) = jobs.into_iter().unzip();
            let prepared = self.inner.queue.prepare_jobs(&owner, jobs, now).await;
            for (position, job) in positions.into_iter().zip(prepared) {
                fires[position].action = match job {
                    // Enqueued by the schedule's creator, who owns the job too.
                    Ok(job) => FireAction::Run(Box::new(Job {
                        schedule_id: Some(taken[position].0.id.clone()),
                        enqueued_by: taken[position].0.owner.clone(),
                        ..job
                    })),
                    Err(error) => FireAction::Skip(format!("cannot enqueue: {}", ScheduleError::from(error))),
                };
            }
        }
    }

    fn retry_later<'a>(&self, ids: impl IntoIterator<Item = &'a str>, now: DateTime<Utc>) {
        let mut index = self.index();
        for id in ids {
            index.retry_at(id, now + chrono::Duration::seconds(1));
        }
    }

    /// Loads the schedules and fires them on time until stopped.
    pub async fn start(&self) -> Result<SchedulerHandle, ScheduleError> {
        self.load().await?;
        let stop = CancellationToken::new();
        let scheduler = self.clone();
        let task = tokio::spawn(scheduler.run(stop.clone()));
        Ok(SchedulerHandle { stop, task })
    }

    async fn run(self, stop: CancellationToken) {
        let clock = self.inner.queue.clock().clone();
        let poll = chrono::Duration::from_std(self.inner.config.poll_interval).unwrap_or_default();
        let mut next_sync = clock.now() + poll;
        loop {
            if let Err(error) = self.run_due().await {
                tracing::error!(%error, "firing schedules failed");
            }
            if clock.now() >= next_sync {
                if let Err(error) = self.sync().await {
                    tracing::error!(%error, "reading schedule changes failed");
                }
                next_sync = clock.now() + poll;
            }
            let wake_at = self.next_wake().map_or(next_sync, |at| at.min(next_sync));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = clock.sleep_until(wake_at) => {}
                _ = self.inner.wake.notified() => {}
            }
        }
    }
}
