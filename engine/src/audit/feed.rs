//! Feeding the log from the outboxes. Every state change is written with
//! its event in one transaction (job, schedule and access events); the
//! feeder turns those events into entries, chains them onto the head and
//! appends them together with the outbox positions they reach. So every
//! change reaches the log exactly once and no entry exists without its
//! change, however many nodes feed and whenever one of them dies.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::{AuditActor, AuditEntry, AuditJob, AuditOutcome};
use crate::jobs::{EventType, JobEvent};
use crate::principal::Principal;
use crate::schedule::{ScheduleEvent, ScheduleEventType};
use crate::store::audit::JobFacts;
use crate::store::{
    AccessEvent, AccessEventType, AuditAppend, AuditRow, AuditSources, AuditStore, Cursors, StoreError,
};

/// Events read from each outbox per append. A busy node's quarter second
/// holds tens of thousands: batches of 4,096 took four appends where this
/// takes one, and cost about 2 % more CPU per job with auditing on
/// (alternating runs of the queue benchmark).
pub const BATCH: usize = 16384;
/// The longest result summary kept in an entry, in bytes.
const SUMMARY_BYTES: usize = 200;
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Appends the outboxes' new events to the audit log.
#[derive(Clone)]
pub struct Auditor {
    store: Arc<dyn AuditStore>,
    node_id: String,
}

impl Auditor {
    /// A feeder writing as node `node_id`.
    pub fn new(store: Arc<dyn AuditStore>, node_id: impl Into<String>) -> Self {
        Self { store, node_id: node_id.into() }
    }

    /// Appends one batch of new events; returns how many entries it added
    /// (0 when the log is up to date).
    pub async fn feed_once(&self) -> Result<usize, StoreError> {
        loop {
            let head = self.store.audit_head().await?;
            let sources = self.store.audit_sources(head.cursors, BATCH).await?;
            if sources.is_empty() {
                return Ok(0);
            }
            let (entries, cursors) = entries(sources, head.cursors, &self.node_id);
            let head = head.end();
            let rows = AuditRow::chain(&head, entries);
            let count = rows.len();
            let append = AuditAppend { head, rows, cursors };
            match self.store.append_audit(append).await {
                Ok(()) => return Ok(count),
                // Another feeder appended first: chain onto its head.
                Err(StoreError::AuditMoved) => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// Appends everything the outboxes hold now; returns how many entries.
    pub async fn catch_up(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            match self.feed_once().await? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    }

    /// Starts feeding every `every` (and, with a `retention`, removing
    /// entries older than it about once a minute) until stopped.
    pub fn start(self, every: Duration, retention: Option<Duration>) -> Feeding {
        let stop = CancellationToken::new();
        let task = tokio::spawn(self.run(every, retention, stop.clone()));
        Feeding { stop, task }
    }

    async fn run(self, every: Duration, retention: Option<Duration>, stop: CancellationToken) {
        let mut pruned_at: Option<tokio::time::Instant> = None;
        loop {
            if let Err(error) = self.catch_up().await {
                tracing::error!(%error, "feeding the audit log failed; retrying");
            }
            if let Some(retention) = retention
                && pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
            {
                pruned_at = Some(tokio::time::Instant::now());
                let before = chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
                match super::log::prune(&*self.store, before).await {
                    Ok(0) => {}
                    Ok(removed) => {
                        // The operator's proof that this start was retention's.
                        let start = self.store.audit_head().await.ok().and_then(|head| head.pruned);
                        let checkpoint = start.map(|c| format!("{}:{}", c.seq, c.hash)).unwrap_or_default();
                        tracing::info!(
                            entries = removed,
                            checkpoint,
                            "pruned audit entries past their retention; keep the checkpoint to verify older ones"
                        )
                    }
                    Err(error) => tracing::error!(%error, "pruning the audit log failed"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => break,
            }
        }
        if let Err(error) = self.catch_up().await {
            tracing::error!(%error, "the audit log could not catch up before stopping");
        }
    }
}

/// A running feeder.
pub struct Feeding {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Feeding {
    /// Stops feeding after appending everything the outboxes hold now.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The entries for `sources` (in time order; each outbox keeps its own
/// order) and the cursors they reach.
fn entries(sources: AuditSources, mut cursors: Cursors, node_id: &str) -> (Vec<AuditEntry>, Cursors) {
    // The events are moved into their entries, not copied: the feeder's
    // cost is part of every job's when auditing is on.
    let AuditSources { jobs, schedules, access } = sources;
    let mut entries = Vec::with_capacity(jobs.len() + schedules.len() + access.len());
    for (event, facts) in jobs {
        cursors.jobs = event.seq;
        entries.push(job_entry(event, facts, node_id));
    }
    for event in schedules {
        cursors.schedules = event.seq;
        entries.push(schedule_entry(event, node_id));
    }
    for (event, facts) in access {
        cursors.access = event.seq;
        entries.push(access_entry(event, facts, node_id));
    }
    entries.sort_by_key(|e| e.at); // stable: each outbox's order is kept
    (entries, cursors)
}

fn actor(principal: Principal) -> AuditActor {
    AuditActor { user_id: principal.user_id, profiles: principal.profiles }
}

fn text(data: &Value, key: &str) -> Option<String> {
    data.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The first [`SUMMARY_BYTES`] of a result's JSON, cut at a character.
fn summary(result: &Value) -> String {
    let mut text = result.to_string();
    if text.len() > SUMMARY_BYTES {
        let cut = (0..=SUMMARY_BYTES).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

fn job_entry(event: JobEvent, facts: Option<JobFacts>, node_id: &str) -> AuditEntry {
    let JobEvent { at, event, job_id, job_name, attempt, from, to, data, .. } = event;
    let (action, outcome) = match event {
        EventType::Enqueued => ("enqueue", AuditOutcome::Success),
        EventType::Scheduled => ("fire", AuditOutcome::Success),
        EventType::Started => ("start", AuditOutcome::Success),
        EventType::Completed => ("complete", AuditOutcome::Success),
        EventType::Retried => ("retry", AuditOutcome::Failure),
        EventType::Failed => ("fail", AuditOutcome::Failure),
        EventType::Cancelled => ("cancel", AuditOutcome::Success),
        EventType::TimedOut => ("time-out", AuditOutcome::Failure),
        EventType::Rescued => ("rescue", AuditOutcome::Failure),
        EventType::Released => ("release", AuditOutcome::Success),
    };
    let mut metadata = match data {
        Value::Object(data) => data,
        _ => Map::new(),
    };
    let error = metadata.remove("error").and_then(|e| match e {
        Value::String(error) => Some(error),
        _ => None,
    });
    metadata.insert("from".into(), json!(from));
    metadata.insert("to".into(), json!(to));
    let result_summary = match (event, &facts) {
        (EventType::Completed, Some(facts)) => facts.result.as_ref().map(summary),
        _ => None,
    };
    AuditEntry {
        seq: 0,
        at,
        event: event.as_str().into(),
        actor: facts.map_or_else(unknown_actor, |f| actor(f.run_as)),
        resource: ["jobs/", &job_id].concat(),
        action: action.into(),
        outcome,
        job: Some(AuditJob { job_id, job_name, attempt, error, result_summary }),
        metadata: Value::Object(metadata),
        node_id: node_id.into(),
    }
}

/// The actor of a job event whose job was pruned before it was audited.
fn unknown_actor() -> AuditActor {
    AuditActor { user_id: "unknown".into(), profiles: Vec::new() }
}

fn schedule_entry(event: ScheduleEvent, node_id: &str) -> AuditEntry {
    let (action, outcome) = match event.event {
        ScheduleEventType::Created => ("create", AuditOutcome::Success),
        ScheduleEventType::Updated => ("update", AuditOutcome::Success),
        ScheduleEventType::Paused => ("pause", AuditOutcome::Success),
        ScheduleEventType::Resumed => ("resume", AuditOutcome::Success),
        ScheduleEventType::Deleted => ("delete", AuditOutcome::Success),
        ScheduleEventType::Skipped => ("skip", AuditOutcome::Failure),
    };
    AuditEntry {
        seq: 0,
        at: event.at,
        event: event.event.as_str().into(),
        actor: actor(event.actor),
        resource: ["schedules/", &event.schedule_id].concat(),
        action: action.into(),
        outcome,
        job: None,
        metadata: event.data,
        node_id: node_id.into(),
    }
}

fn access_entry(event: AccessEvent, facts: Option<JobFacts>, node_id: &str) -> AuditEntry {
    let (action, outcome) = match event.event {
        AccessEventType::PermissionDenied => {
            (text(&event.data, "action").unwrap_or_else(|| "access".into()), AuditOutcome::Denied)
        }
        AccessEventType::RecordsInserted => ("insert".into(), AuditOutcome::Success),
        AccessEventType::RecordsUpdated => ("update".into(), AuditOutcome::Success),
        AccessEventType::RecordsDeleted => ("delete".into(), AuditOutcome::Success),
        AccessEventType::RecordsImported => ("import".into(), AuditOutcome::Success),
        AccessEventType::HandlerRegistered => ("register".into(), AuditOutcome::Success),
        AccessEventType::HandlerUploaded => ("upload".into(), AuditOutcome::Success),
        AccessEventType::HandlerDeleted => ("delete".into(), AuditOutcome::Success),
    };
    let job = event.job_id.map(|job_id| AuditJob {
        job_id,
        job_name: facts.as_ref().map(|f| f.name.clone()).unwrap_or_default(),
        attempt: facts.as_ref().map_or(0, |f| f.attempts),
        error: match event.event {
            AccessEventType::PermissionDenied => text(&event.data, "reason"),
            _ => None,
        },
        result_summary: None,
    });
    AuditEntry {
        seq: 0,
        at: event.at,
        event: event.event.as_str().into(),
        actor: actor(event.actor),
        resource: event.resource,
        action,
        outcome,
        job,
        metadata: event.data,
        node_id: node_id.into(),
    }
}
