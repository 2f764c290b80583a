//! The in-memory store: everything in one mutex-guarded structure. For
//! tests, benchmarks and `objectos run`; it forgets everything on exit.

mod artifacts;
mod audit;
mod log;
mod records;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use self::log::Log;
use crate::jobs::{AttemptLog, Job, JobEvent, JobQuery, JobSort, JobStatus, StatusCounts, Transition};
use crate::principal::Principal;
use crate::sandbox::Progress;
use crate::schedule::{Schedule, ScheduleEvent, ScheduleEventType};
use crate::store::{
    Cancelled, ClaimRequest, Claimed, Finish, FinishKind, Fire, FireOutcome, HandlerRecord, HandlerStore,
    JobInsert, JobStore, Lease, Renewal, RescueRequest, Rescued, ScheduleChange, ScheduleStore, StoreError,
    advanced, apply_change, event_for, finish_events, fire_applies, fire_decision, fire_key, fired_event,
    handler_event, lost_attempt, schedule_change_event, skipped_event,
};

type ReadyKey = (Reverse<i64>, i64, u64);

/// The lease on a running job.
struct Held {
    token: u64,
    owner: String,
    until: DateTime<Utc>,
    cancel_requested: bool,
}

#[derive(Default)]
struct State {
    jobs: BTreeMap<u64, Job>,
    seq_of: HashMap<String, u64>,
    next_seq: u64,
    /// Waiting jobs whose time has come, in claim order.
    ready: BTreeSet<ReadyKey>,
    /// Waiting jobs whose time has not come, by (run_at, seq).
    delayed: BTreeSet<(i64, u64)>,
    leases: HashMap<String, Held>,
    next_token: u64,
    /// Unique keys held, per user jobs run as, with the job holding each.
    unique: HashMap<(String, String), String>,
    /// Shared, so the audit feeder copies them after letting go of the lock.
    events: Log<Arc<JobEvent>>,
    logs: HashMap<String, Vec<AttemptLog>>,
    handlers: BTreeMap<String, HandlerRecord>,
    versions: HashMap<String, Arc<Vec<u8>>>,
    schedules: BTreeMap<String, Schedule>,
    schedule_events: Log<ScheduleEvent>,
    /// Fire keys taken, with the job each enqueued.
    fire_keys: HashMap<String, String>,
    records: self::records::Records,
    audit: self::audit::Audit,
    artifacts: self::artifacts::Artifacts,
}

/// Jobs, events and handlers in process memory.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Up to `limit` events of an outbox after sequence number `after` (event
/// `n` is at index `n - 1`).
fn events_after<T: Clone>(events: &Log<T>, after: u64, limit: usize) -> Vec<T> {
    events.iter_from(after as usize).take(limit).cloned().collect()
}

impl State {
    /// What the audit log records of a job, while the job is kept.
    /// Its result only `with_result` (the entry of a completion is the only
    /// one to summarize it; copying it for every event cost more than the rest).
    fn job_facts(&self, id: &str, with_result: bool) -> Option<crate::store::audit::JobFacts> {
        let job = self.seq_of.get(id).and_then(|seq| self.jobs.get(seq))?;
        Some(crate::store::audit::JobFacts {
            name: job.name.clone(),
            attempts: job.attempts,
            run_as: job.run_as.clone(),
            result: if with_result { job.result.clone() } else { None },
        })
    }

    fn emit(&mut self, mut event: JobEvent) {
        event.seq = self.events.len() as u64 + 1;
        self.events.push(Arc::new(event));
    }

    fn wait(&mut self, seq: u64, rank: i64, run_at: DateTime<Utc>, now: DateTime<Utc>) {
        let at = run_at.timestamp_millis();
        if run_at <= now {
            self.ready.insert((Reverse(rank), at, seq));
        } else {
            self.delayed.insert((at, seq));
        }
    }

    fn unwait(&mut self, seq: u64, job: &Job) {
        let run_at = job.run_at.timestamp_millis();
        self.ready.remove(&(Reverse(job.priority.rank()), run_at, seq));
        self.delayed.remove(&(run_at, seq));
    }

    fn promote_due(&mut self, now: DateTime<Utc>) {
        let now = now.timestamp_millis();
        while let Some(&(run_at, seq)) = self.delayed.first() {
            if run_at > now {
                break;
            }
            self.delayed.pop_first();
            let priority = self.jobs[&seq].priority.rank();
            self.ready.insert((Reverse(priority), run_at, seq));
        }
    }

    fn emit_schedule(&mut self, mut event: ScheduleEvent) {
        event.seq = self.schedule_events.len() as u64 + 1;
        self.schedule_events.push(event);
    }

    /// Stores a new job (its unique key already checked) with its first event.
    fn insert(&mut self, job: Job, event: JobEvent, now: DateTime<Utc>) {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.emit(event);
        if let Some(slot) = unique_slot(&job) {
            self.unique.insert(slot, job.id.clone());
        }
        self.wait(seq, job.priority.rank(), job.run_at, now);
        self.seq_of.insert(job.id.clone(), seq);
        self.jobs.insert(seq, job);
    }

    fn is_active(&self, job_id: &str) -> bool {
        self.seq_of.get(job_id).is_some_and(|seq| !self.jobs[seq].status.is_final())
    }

    fn fire(&mut self, fire: Fire) -> FireOutcome {
        let Some(schedule) = self.schedules.get(&fire.schedule_id).filter(|s| fire_applies(Some(s), &fire))
        else {
            return FireOutcome::Stale;
        };
        let schedule = schedule.clone();
        let key = fire_key(&schedule.id, fire.due);
        let decided = fire_decision(&fire, schedule.last_job_id.as_deref(), || {
            let overlapping = schedule.spec.overlap == crate::schedule::OverlapPolicy::Skip
                && schedule.last_job_id.as_deref().is_some_and(|id| self.is_active(id));
            Ok::<_, std::convert::Infallible>((overlapping, self.fire_keys.get(&key).cloned()))
        });
        let Ok(job) = decided;
        match job {
            Err(reason) => {
                self.emit_schedule(skipped_event(&fire, &reason));
                self.schedules.insert(schedule.id.clone(), advanced(&schedule, &fire, None));
                FireOutcome::Skipped(reason)
            }
            Ok(job) => {
                self.fire_keys.insert(key, job.id.clone());
                self.insert(job.clone(), fired_event(&job, &fire), fire.now);
                self.schedules.insert(schedule.id.clone(), advanced(&schedule, &fire, Some(&job)));
                FireOutcome::Fired(Box::new(job))
            }
        }
    }

    fn release_unique(&mut self, slot: Option<(String, String)>, id: &str) {
        if let Some(slot) = slot
            && self.unique.get(&slot).is_some_and(|holder| holder == id)
        {
            self.unique.remove(&slot);
        }
    }
}

/// Where a job's unique key is held: keys are unique per user jobs run as.
fn unique_slot(job: &Job) -> Option<(String, String)> {
    job.unique_key.as_ref().map(|key| (job.run_as.user_id.clone(), key.clone()))
}

fn sort_key(sort: JobSort, job: &Job, seq: u64) -> (i64, i64, i64) {
    let seq = seq as i64;
    match sort {
        JobSort::CreatedAtDesc => (-seq, 0, 0),
        JobSort::CreatedAtAsc => (seq, 0, 0),
        JobSort::PriorityDesc => (-job.priority.rank(), seq, 0),
        JobSort::RunAtAsc => (job.run_at.timestamp_millis(), seq, 0),
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn enqueue(&self, jobs: Vec<JobInsert>, now: DateTime<Utc>) -> Result<Vec<Job>, StoreError> {
        let mut state = self.lock();
        let mut keys = HashMap::new();
        for insert in &jobs {
            if let Some(slot) = unique_slot(&insert.job) {
                let holder = state.unique.get(&slot).or_else(|| keys.get(&slot));
                if let Some(holder) = holder {
                    return Err(StoreError::UniqueConflict { key: slot.1, job_id: holder.clone() });
                }
                keys.insert(slot, insert.job.id.clone());
            }
        }
        let mut stored = Vec::with_capacity(jobs.len());
        for JobInsert { job } in jobs {
            let event = event_for(
                &job,
                Transition::enqueue(&job),
                None,
                now,
                serde_json::json!({"priority": job.priority}),
            );
            state.insert(job.clone(), event, now);
            stored.push(job);
        }
        Ok(stored)
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        let mut state = self.lock();
        state.promote_due(request.now);
        let chosen: Vec<ReadyKey> = state
            .ready
            .iter()
            .filter(|(_, _, seq)| !request.exclude.contains(&state.jobs[seq].name))
            .take(request.limit)
            .copied()
            .collect();
        let mut claimed = Vec::with_capacity(chosen.len());
        for key in chosen {
            state.ready.remove(&key);
            state.next_token += 1;
            let token = state.next_token;
            let job = state.jobs.get_mut(&key.2).expect("ready jobs exist");
            let from = job.status;
            job.status = JobStatus::Running;
            job.attempts += 1;
            job.started_at = Some(request.now);
            let job = job.clone();
            state.leases.insert(
                job.id.clone(),
                Held {
                    token,
                    owner: request.owner.clone(),
                    until: request.lease_until,
                    cancel_requested: false,
                },
            );
            state.emit(event_for(
                &job,
                Transition::Claim,
                Some(from),
                request.now,
                serde_json::json!({"owner": request.owner}),
            ));
            claimed.push(Claimed { job, lease_token: token });
        }
        Ok(claimed)
    }

    async fn finish(
        &self,
        finishes: Arc<[Finish]>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<JobStatus, StoreError>>, StoreError> {
        // A finish applies only to a running job: its events are built
        // before the lock is taken, so workers are not held up by them.
        let events: Vec<_> = finishes.iter().map(|f| finish_events(f, JobStatus::Running, now)).collect();
        let mut state = self.lock();
        let mut results = Vec::with_capacity(finishes.len());
        for (finish, events) in finishes.iter().zip(events) {
            let Some(&seq) = state.seq_of.get(&finish.job_id) else {
                results.push(Err(StoreError::NotFound(finish.job_id.clone())));
                continue;
            };
            let holds_lease = state.leases.get(&finish.job_id).is_some_and(|h| h.token == finish.lease_token);
            if !holds_lease || state.jobs[&seq].status != JobStatus::Running {
                results.push(Err(StoreError::LeaseLost(finish.job_id.clone())));
                continue;
            }
            state.leases.remove(&finish.job_id);
            let job = state.jobs.get_mut(&seq).expect("exists");
            if finish.kind != FinishKind::Release {
                job.attempt_log.push(finish.attempt.clone());
                job.error = finish.attempt.error.clone();
            }
            if finish.progress.is_some() {
                job.progress = finish.progress.clone();
            }
            match &finish.kind {
                FinishKind::Complete { result } => {
                    job.status = JobStatus::Completed;
                    job.result = Some(result.clone());
                    job.completed_at = Some(now);
                }
                FinishKind::Retry { run_at } => {
                    job.status = JobStatus::Retrying;
                    job.run_at = *run_at;
                }
                FinishKind::Fail => {
                    job.status = JobStatus::Failed;
                    job.failed_at = Some(now);
                }
                FinishKind::Cancel => {
                    job.status = JobStatus::Cancelled;
                    job.cancelled_at = Some(now);
                }
                FinishKind::Release => {
                    job.status = JobStatus::Pending;
                    job.attempts -= 1;
                }
            }
            let status = job.status;
            let (rank, run_at, slot) = (job.priority.rank(), job.run_at, unique_slot(job));
            for event in events {
                state.emit(event);
            }
            if status.is_final() {
                state.release_unique(slot, &finish.job_id);
            } else {
                state.wait(seq, rank, run_at, now);
            }
            if let Some(log) = &finish.log {
                state.logs.entry(finish.job_id.clone()).or_default().push(log.clone());
            }
            results.push(Ok(status));
        }
        Ok(results)
    }

    async fn cancel(&self, id: &str, now: DateTime<Utc>) -> Result<Cancelled, StoreError> {
        let mut state = self.lock();
        let seq = *state.seq_of.get(id).ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let job = state.jobs[&seq].clone();
        if job.status.is_final() {
            return Ok(Cancelled::AlreadyFinal(job));
        }
        if job.status == JobStatus::Running {
            if let Some(held) = state.leases.get_mut(id) {
                held.cancel_requested = true;
            }
            return Ok(Cancelled::Requested(job));
        }
        state.unwait(seq, &job);
        let from = job.status;
        let job = {
            let stored = state.jobs.get_mut(&seq).expect("exists");
            stored.status = JobStatus::Cancelled;
            stored.cancelled_at = Some(now);
            stored.clone()
        };
        state.release_unique(unique_slot(&job), &job.id);
        state.emit(event_for(&job, Transition::Cancel, Some(from), now, serde_json::json!({})));
        Ok(Cancelled::Now(job))
    }

    async fn set_progress(&self, id: &str, lease_token: u64, progress: Progress) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.leases.get(id).is_none_or(|h| h.token != lease_token) {
            return Err(StoreError::LeaseLost(id.to_string()));
        }
        let seq = state.seq_of[id];
        state.jobs.get_mut(&seq).expect("exists").progress = Some(progress);
        Ok(())
    }

    async fn heartbeat(&self, leases: Vec<Lease>, until: DateTime<Utc>) -> Result<Renewal, StoreError> {
        let mut state = self.lock();
        let mut renewal = Renewal::default();
        for lease in leases {
            match state.leases.get_mut(&lease.job_id) {
                Some(held) if held.token == lease.token => {
                    held.until = held.until.max(until);
                    if held.cancel_requested {
                        renewal.cancel_requested.push(lease.job_id);
                    }
                }
                _ => renewal.lost.push(lease.job_id),
            }
        }
        Ok(renewal)
    }

    async fn rescue(&self, request: RescueRequest) -> Result<Vec<Rescued>, StoreError> {
        let mut state = self.lock();
        let lapsed: Vec<String> = state
            .leases
            .iter()
            .filter(|(_, held)| held.until < request.now || request.owner.as_ref() == Some(&held.owner))
            .map(|(id, _)| id.clone())
            .take(request.limit)
            .collect();
        let now = request.now;
        let mut rescued = Vec::with_capacity(lapsed.len());
        for id in lapsed {
            let held = state.leases.remove(&id).expect("listed");
            let seq = state.seq_of[&id];
            let job = state.jobs.get_mut(&seq).expect("exists");
            let attempt = lost_attempt(job, now);
            job.error = attempt.error.clone();
            job.attempt_log.push(attempt.clone());
            // It keeps its `run_at`: back to the front of its priority.
            let transition = if job.attempts < job.max_attempts() {
                job.status = JobStatus::Retrying;
                Transition::Rescue
            } else {
                job.status = JobStatus::Failed;
                job.failed_at = Some(now);
                Transition::Fail
            };
            let job = job.clone();
            let data =
                serde_json::json!({"outcome": attempt.outcome, "error": attempt.error, "owner": held.owner});
            state.emit(event_for(&job, transition, Some(JobStatus::Running), now, data));
            if job.status.is_final() {
                state.release_unique(unique_slot(&job), &id);
            } else {
                state.wait(seq, job.priority.rank(), job.run_at, now);
            }
            rescued.push(Rescued { job_id: id, status: job.status });
        }
        Ok(rescued)
    }

    async fn prune(&self, cutoffs: &[(JobStatus, DateTime<Utc>)], limit: usize) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let doomed: Vec<u64> = state
            .jobs
            .iter()
            .filter(|(_, job)| {
                let ended = job.ended_at();
                cutoffs
                    .iter()
                    .any(|(status, before)| job.status == *status && ended.is_some_and(|at| at < *before))
            })
            .map(|(seq, _)| *seq)
            .take(limit)
            .collect();
        for seq in &doomed {
            let job = state.jobs.remove(seq).expect("listed");
            state.seq_of.remove(&job.id);
            state.logs.remove(&job.id);
        }
        Ok(doomed.len() as u64)
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let state = self.lock();
        Ok(state.seq_of.get(id).map(|seq| state.jobs[seq].clone()))
    }

    async fn list(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        let state = self.lock();
        let mut matching: Vec<(u64, &Job)> = state
            .jobs
            .iter()
            .filter(|(_, job)| query.name.as_ref().is_none_or(|n| &job.name == n))
            .filter(|(_, job)| query.status.is_empty() || query.status.contains(&job.status))
            .filter(|(_, job)| query.priority.is_none_or(|p| job.priority == p))
            .filter(|(_, job)| query.owner.as_deref().is_none_or(|owner| job.owners().contains(&owner)))
            .map(|(seq, job)| (*seq, job))
            .collect();
        matching.sort_by_key(|(seq, job)| sort_key(query.sort, job, *seq));
        Ok(matching
            .into_iter()
            .skip(query.skip as usize)
            .take(query.page_size() as usize)
            .map(|(_, job)| job.clone())
            .collect())
    }

    async fn counts(&self) -> Result<StatusCounts, StoreError> {
        let state = self.lock();
        let mut counts = StatusCounts::default();
        for job in state.jobs.values() {
            counts.total += 1;
            *counts.by_status.entry(job.status.to_string()).or_insert(0) += 1;
        }
        Ok(counts)
    }

    async fn logs(&self, id: &str) -> Result<Vec<AttemptLog>, StoreError> {
        Ok(self.lock().logs.get(id).cloned().unwrap_or_default())
    }

    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let state = self.lock();
        let ready = state.ready.first().map(|(_, run_at, _)| *run_at);
        let delayed = state.delayed.first().map(|(run_at, _)| *run_at);
        Ok([ready, delayed].into_iter().flatten().min().and_then(DateTime::from_timestamp_millis))
    }

    async fn events(&self, after: u64, limit: usize) -> Result<Vec<JobEvent>, StoreError> {
        let shared = events_after(&self.lock().events, after, limit);
        Ok(shared.into_iter().map(Arc::unwrap_or_clone).collect())
    }
}

#[async_trait]
impl HandlerStore for MemoryStore {
    async fn put_handler(
        &self,
        name: &str,
        sha256: &str,
        bytes: &[u8],
        by: &Principal,
        now: DateTime<Utc>,
    ) -> Result<HandlerRecord, StoreError> {
        let mut state = self.lock();
        state.versions.entry(sha256.to_string()).or_insert_with(|| Arc::new(bytes.to_vec()));
        let previous = state.handlers.get(name).map(|h| h.sha256.clone());
        state.records.emit(handler_event(name, previous.as_deref(), Some(sha256), by, now));
        let record = state.handlers.entry(name.to_string()).or_insert_with(|| HandlerRecord {
            name: name.to_string(),
            sha256: sha256.to_string(),
            versions: Vec::new(),
            created_at: now,
            updated_at: now,
        });
        if record.sha256 != sha256 {
            record.sha256 = sha256.to_string();
            record.updated_at = now;
        }
        if !record.versions.iter().any(|v| v == sha256) {
            record.versions.push(sha256.to_string());
        }
        Ok(record.clone())
    }

    async fn handler(&self, name: &str) -> Result<Option<HandlerRecord>, StoreError> {
        Ok(self.lock().handlers.get(name).cloned())
    }

    async fn handlers(&self) -> Result<Vec<HandlerRecord>, StoreError> {
        Ok(self.lock().handlers.values().cloned().collect())
    }

    async fn handler_bytes(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().versions.get(sha256).map(|bytes| bytes.to_vec()))
    }

    async fn delete_handler(
        &self,
        name: &str,
        by: &Principal,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(removed) = state.handlers.remove(name) else { return Ok(false) };
        state.records.emit(handler_event(name, Some(&removed.sha256), None, by, now));
        Ok(true)
    }
}

#[async_trait]
impl ScheduleStore for MemoryStore {
    async fn change_schedule(&self, change: ScheduleChange) -> Result<Schedule, StoreError> {
        let mut state = self.lock();
        let stored = apply_change(state.schedules.get(&change.schedule.id), &change)?;
        state.emit_schedule(schedule_change_event(&change, &stored));
        if change.event == ScheduleEventType::Deleted {
            state.schedules.remove(&stored.id);
        } else {
            state.schedules.insert(stored.id.clone(), stored.clone());
        }
        Ok(stored)
    }

    async fn fire(&self, fires: Vec<Fire>) -> Result<Vec<Result<FireOutcome, StoreError>>, StoreError> {
        let mut state = self.lock();
        Ok(fires.into_iter().map(|fire| Ok(state.fire(fire))).collect())
    }

    async fn schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        Ok(self.lock().schedules.get(id).cloned())
    }

    async fn schedules(
        &self,
        owner: Option<&str>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Schedule>, StoreError> {
        let state = self.lock();
        let later = (std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded);
        let owned = |s: &&Schedule| owner.is_none_or(|owner| s.owner == owner);
        Ok(state
            .schedules
            .range::<str, _>(later)
            .map(|(_, s)| s)
            .filter(owned)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn last_schedule_event(&self) -> Result<u64, StoreError> {
        Ok(self.lock().schedule_events.len() as u64)
    }

    async fn schedule_events(&self, after: u64, limit: usize) -> Result<Vec<ScheduleEvent>, StoreError> {
        Ok(events_after(&self.lock().schedule_events, after, limit))
    }
}
