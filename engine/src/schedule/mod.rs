//! Recurring jobs: schedules, their events, and the scheduler that fires
//! them.
//!
//! A schedule is a cron expression in a time zone plus the job to enqueue
//! at each fire ([`ScheduleSpec`]). The store keeps schedules and writes
//! every change with its event; the [`Scheduler`] keeps the due times of
//! this node's schedules in order and fires each one when its time comes.

pub mod cron;
mod scheduler;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jobs::{Backoff, NewJob, Priority};
use crate::principal::Principal;

pub use scheduler::{ScheduleError, Scheduler, SchedulerConfig, SchedulerHandle, TickReport};

/// What happens when a fire comes while the previous fire's job is active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverlapPolicy {
    /// No new run while the previous one is pending, running or retrying.
    #[default]
    Skip,
    /// Runs overlap.
    Allow,
}

/// What happens to fires missed while no scheduler ran (downtime).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MisfirePolicy {
    /// Drop them; the next run is the next fire time after now.
    Skip,
    /// Run once now for all of them, then continue on time.
    #[default]
    RunOnce,
}

fn utc() -> String {
    "UTC".into()
}

/// What a schedule runs and when: everything a caller sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleSpec {
    /// A cron expression: 5 fields, or 6 with seconds first.
    pub cron: String,
    /// An IANA time zone the expression is read in. Default `UTC`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The handler each fire enqueues a job for.
    pub handler: String,
    /// The job's input.
    #[serde(default)]
    pub data: Value,
    /// The job's priority.
    #[serde(default)]
    pub priority: Priority,
    /// Retries after the first attempt (`0`: one attempt only); default the engine's.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Backoff between attempts.
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// Wall-clock timeout per attempt, milliseconds.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Fuel per attempt.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Memory limit, bytes.
    #[serde(default)]
    pub memory: Option<u64>,
    /// Whom the jobs run as: the schedule's owner unless set (which needs
    /// `jobs.impersonate`). Always set on a stored schedule.
    #[serde(default)]
    pub run_as: Option<Principal>,
    /// Overlap policy. Default `skip`.
    #[serde(default)]
    pub overlap: OverlapPolicy,
    /// Misfire policy. Default `run-once`.
    #[serde(default)]
    pub misfire: MisfirePolicy,
}

impl ScheduleSpec {
    /// A spec firing `handler` with `data` on `cron` (UTC), options at their defaults.
    pub fn new(cron: impl Into<String>, handler: impl Into<String>, data: Value) -> Self {
        Self {
            cron: cron.into(),
            timezone: utc(),
            handler: handler.into(),
            data,
            priority: Priority::Normal,
            max_retries: None,
            backoff: None,
            timeout: None,
            fuel: None,
            memory: None,
            run_as: None,
            overlap: OverlapPolicy::default(),
            misfire: MisfirePolicy::default(),
        }
    }

    /// The job one fire enqueues.
    pub(crate) fn new_job(&self) -> NewJob {
        NewJob {
            name: self.handler.clone(),
            data: self.data.clone(),
            priority: self.priority,
            max_retries: self.max_retries,
            backoff: self.backoff,
            timeout: self.timeout,
            fuel: self.fuel,
            memory: self.memory,
            run_at: None,
            unique_key: None,
            run_as: self.run_as.clone(),
        }
    }
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Its identifier, chosen by the caller or generated.
    pub id: String,
    /// The user who created it, its owner (see [`crate::ownership`]); the
    /// jobs it fires are enqueued by this user.
    #[serde(default)]
    pub owner: String,
    /// What it runs and when.
    #[serde(flatten)]
    pub spec: ScheduleSpec,
    /// Paused schedules do not fire (and have no next run).
    pub paused: bool,
    /// When it fires next.
    pub next_run: Option<DateTime<Utc>>,
    /// When it last fired (enqueued a job).
    pub last_run: Option<DateTime<Utc>>,
    /// The job its last fire enqueued.
    pub last_job_id: Option<String>,
    /// Bumped by every change and fire; a change made from a stale copy is refused.
    pub revision: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When a caller last changed it.
    pub updated_at: DateTime<Utc>,
}

/// The kinds of schedule event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScheduleEventType {
    /// Added.
    #[serde(rename = "schedule.created")]
    Created,
    /// Its expression, zone, job or policies changed.
    #[serde(rename = "schedule.updated")]
    Updated,
    /// Paused.
    #[serde(rename = "schedule.paused")]
    Paused,
    /// Resumed.
    #[serde(rename = "schedule.resumed")]
    Resumed,
    /// Removed.
    #[serde(rename = "schedule.deleted")]
    Deleted,
    /// A fire time passed without a job: the overlap or misfire policy, or
    /// a job that could no longer be enqueued (its handler was removed).
    #[serde(rename = "schedule.skipped")]
    Skipped,
}

impl ScheduleEventType {
    const ALL: [ScheduleEventType; 6] = [
        ScheduleEventType::Created,
        ScheduleEventType::Updated,
        ScheduleEventType::Paused,
        ScheduleEventType::Resumed,
        ScheduleEventType::Deleted,
        ScheduleEventType::Skipped,
    ];

    /// The event's name, for example `schedule.paused`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleEventType::Created => "schedule.created",
            ScheduleEventType::Updated => "schedule.updated",
            ScheduleEventType::Paused => "schedule.paused",
            ScheduleEventType::Resumed => "schedule.resumed",
            ScheduleEventType::Deleted => "schedule.deleted",
            ScheduleEventType::Skipped => "schedule.skipped",
        }
    }

    /// The event named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// The actor of events the scheduler causes by itself (skipped fires).
pub const SCHEDULER_ACTOR: &str = "objectos:scheduler";

/// One schedule event, written in the same transaction as its change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleEvent {
    /// The store's sequence number for schedule events, gapless from 1.
    pub seq: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(rename = "type")]
    pub event: ScheduleEventType,
    /// The schedule.
    pub schedule_id: String,
    /// Who did it ([`SCHEDULER_ACTOR`] for a skip).
    pub actor: Principal,
    /// Details: the schedule after the change, or the skipped fire and why.
    pub data: Value,
}
