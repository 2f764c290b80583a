//! Every status change a job can make, and the event each one emits,
//! defined once. Stores apply transitions; they never invent their own.
//!
//! | transition | from | to | event |
//! |---|---|---|---|
//! | enqueue | — | pending | `job.enqueued` |
//! | enqueue-delayed | — | scheduled | `job.enqueued` |
//! | fire | — (a schedule fired) | pending | `job.scheduled` |
//! | fire-ahead | — (a schedule fired just before its time) | scheduled | `job.scheduled` |
//! | claim | pending, scheduled, retrying | running | `job.started` |
//! | complete | running | completed | `job.completed` |
//! | retry | running | retrying | `job.retried` |
//! | fail | running | failed | `job.failed` |
//! | cancel | pending, scheduled, retrying, running | cancelled | `job.cancelled` |
//! | rescue | running (lease expired) | retrying | `job.rescued` |
//! | release | running (engine shutting down) | pending | `job.released` |
//!
//! An attempt that ends by its wall-clock timeout also emits `job.timed_out`
//! just before its `job.retried` or `job.failed`, in the same transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::JobStatus;

/// The kinds of lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// The job was stored.
    #[serde(rename = "job.enqueued")]
    Enqueued,
    /// A schedule fired and stored the job.
    #[serde(rename = "job.scheduled")]
    Scheduled,
    /// An attempt started.
    #[serde(rename = "job.started")]
    Started,
    /// The job completed.
    #[serde(rename = "job.completed")]
    Completed,
    /// An attempt failed and the job will run again.
    #[serde(rename = "job.retried")]
    Retried,
    /// The job failed for good.
    #[serde(rename = "job.failed")]
    Failed,
    /// The job was cancelled.
    #[serde(rename = "job.cancelled")]
    Cancelled,
    /// An attempt ran past its wall-clock timeout.
    #[serde(rename = "job.timed_out")]
    TimedOut,
    /// A running job's lease expired (its worker stopped) and it will run again.
    #[serde(rename = "job.rescued")]
    Rescued,
    /// A shutting-down worker gave a running job back uncharged.
    #[serde(rename = "job.released")]
    Released,
}

impl EventType {
    /// The event's name, for example `job.started`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Enqueued => "job.enqueued",
            EventType::Scheduled => "job.scheduled",
            EventType::Started => "job.started",
            EventType::Completed => "job.completed",
            EventType::Retried => "job.retried",
            EventType::Failed => "job.failed",
            EventType::Cancelled => "job.cancelled",
            EventType::TimedOut => "job.timed_out",
            EventType::Rescued => "job.rescued",
            EventType::Released => "job.released",
        }
    }

    /// The event named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [
            EventType::Enqueued,
            EventType::Scheduled,
            EventType::Started,
            EventType::Completed,
            EventType::Retried,
            EventType::Failed,
            EventType::Cancelled,
            EventType::TimedOut,
            EventType::Rescued,
            EventType::Released,
        ]
        .into_iter()
        .find(|e| e.as_str() == name)
    }
}

/// A status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// A new job, ready now.
    Enqueue,
    /// A new job with a `runAt` in the future.
    EnqueueDelayed,
    /// A new job enqueued by a schedule's fire.
    Fire,
    /// A new job enqueued by a schedule's fire a moment before its time
    /// (the scheduler's lead), waiting for it.
    FireAhead,
    /// A worker takes the job and starts an attempt.
    Claim,
    /// The attempt returned a result.
    Complete,
    /// The attempt failed and attempts remain.
    Retry,
    /// The attempt failed for good, or none remain.
    Fail,
    /// Cancelled by a caller.
    Cancel,
    /// The lease lapsed: the worker died or hung. Runs again (a lost lease
    /// is retryable); with no attempts left the job fails instead.
    Rescue,
    /// Given back by a worker that is shutting down; the attempt is not
    /// counted.
    Release,
}

use JobStatus::*;

/// The one table of transitions: (transition, allowed from, to, event).
pub const TRANSITIONS: &[(Transition, &[JobStatus], JobStatus, EventType)] = &[
    (Transition::Enqueue, &[], Pending, EventType::Enqueued),
    (Transition::EnqueueDelayed, &[], Scheduled, EventType::Enqueued),
    (Transition::Fire, &[], Pending, EventType::Scheduled),
    (Transition::FireAhead, &[], Scheduled, EventType::Scheduled),
    (Transition::Claim, &[Pending, Scheduled, Retrying], Running, EventType::Started),
    (Transition::Complete, &[Running], Completed, EventType::Completed),
    (Transition::Retry, &[Running], Retrying, EventType::Retried),
    (Transition::Fail, &[Running], Failed, EventType::Failed),
    (Transition::Cancel, &[Pending, Scheduled, Retrying, Running], Cancelled, EventType::Cancelled),
    (Transition::Rescue, &[Running], Retrying, EventType::Rescued),
    (Transition::Release, &[Running], Pending, EventType::Released),
];

impl Transition {
    /// The transition that stores a new `job` a caller enqueued.
    pub fn enqueue(job: &super::model::Job) -> Self {
        if job.status == Scheduled { Transition::EnqueueDelayed } else { Transition::Enqueue }
    }

    fn row(self) -> &'static (Transition, &'static [JobStatus], JobStatus, EventType) {
        TRANSITIONS.iter().find(|row| row.0 == self).expect("every transition is in the table")
    }

    /// The statuses this transition may leave (none: it creates the job).
    pub fn from(self) -> &'static [JobStatus] {
        self.row().1
    }

    /// The status it enters.
    pub fn to(self) -> JobStatus {
        self.row().2
    }

    /// The event it emits.
    pub fn event(self) -> EventType {
        self.row().3
    }

    /// Whether a job in `status` (none for a new job) may take it.
    pub fn allowed_from(self, status: Option<JobStatus>) -> bool {
        match status {
            None => self.from().is_empty(),
            Some(status) => self.from().contains(&status),
        }
    }
}

/// One lifecycle event, written in the same transaction as its status
/// change (the outbox the audit log reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobEvent {
    /// The store's sequence number, gapless from 1.
    pub seq: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(rename = "type")]
    pub event: EventType,
    /// The job.
    pub job_id: String,
    /// The job's handler name.
    pub job_name: String,
    /// The attempt it concerns (0 before the first).
    pub attempt: u32,
    /// The status left (none for a new job).
    pub from: Option<JobStatus>,
    /// The status entered.
    pub to: JobStatus,
    /// Details: error, outcome, next run, result summary.
    pub data: Value,
}

/// Checks that `events` (one job's, in order) follow the table: each event
/// leaves the status the previous one entered. Returns the first violation.
pub fn check_path(events: &[JobEvent]) -> Result<(), String> {
    let mut status: Option<JobStatus> = None;
    for event in events {
        if event.event == EventType::TimedOut {
            // Informational: it precedes the retry or failure that follows.
            if status != Some(Running) {
                return Err(format!("job.timed_out while {status:?}"));
            }
            continue;
        }
        let legal = TRANSITIONS.iter().any(|(t, _, to, e)| {
            *e == event.event && *to == event.to && t.allowed_from(status) && event.from == status
        });
        if !legal {
            return Err(format!(
                "{} from {:?} to {} is not a transition",
                event.event.as_str(),
                status,
                event.to
            ));
        }
        status = Some(event.to);
    }
    Ok(())
}
