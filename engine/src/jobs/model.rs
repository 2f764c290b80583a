//! The job record and the options a job is enqueued with.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::principal::Principal;
use crate::sandbox::{LogLine, Usage};

/// How urgent a job is. Higher runs first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Runs when nothing more urgent waits.
    Low = 0,
    /// The default.
    #[default]
    Normal = 1,
    /// Ahead of normal work.
    High = 2,
    /// Ahead of everything.
    Critical = 3,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 4] = [Priority::Critical, Priority::High, Priority::Normal, Priority::Low];

    /// The stored rank: higher runs first.
    pub fn rank(self) -> i64 {
        self as i64
    }

    /// The priority with `rank`.
    pub fn from_rank(rank: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.rank() == rank)
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown priority `{s}` (low, normal, high, critical)"))
    }
}

/// Where a job is in its life. See `docs/job-lifecycle.md` for the
/// transitions and the event each emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Ready to run.
    Pending,
    /// Enqueued with a `runAt` delay; runs once its time comes.
    Scheduled,
    /// A worker holds it and its handler is running.
    Running,
    /// An attempt failed and it waits for its backoff before running again.
    Retrying,
    /// Its handler returned a result. Final.
    Completed,
    /// It failed permanently or ran out of attempts. Final.
    Failed,
    /// It was cancelled. Final.
    Cancelled,
}

impl JobStatus {
    /// Every status.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Pending,
        JobStatus::Scheduled,
        JobStatus::Running,
        JobStatus::Retrying,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The lowercase name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Retrying => "retrying",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the job will never change again.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled)
    }

    /// Whether the job waits to be claimed by a worker.
    pub fn is_waiting(self) -> bool {
        matches!(self, JobStatus::Pending | JobStatus::Scheduled | JobStatus::Retrying)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| format!("unknown status `{s}`"))
    }
}

/// Exponential backoff between attempts: the n-th retry waits
/// `min(max, initial * factor^(n-1))`, then ±`jitter` of that at random.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Backoff {
    /// The first retry's delay in milliseconds. Default 1,000.
    pub initial_ms: u64,
    /// The growth per retry. Default 2.
    pub factor: f64,
    /// The longest delay in milliseconds. Default 3,600,000 (an hour).
    pub max_ms: u64,
    /// The random spread, 0 to 1. Default 0.2.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial_ms: 1000, factor: 2.0, max_ms: 3_600_000, jitter: 0.2 }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (1 for the first retry), with
    /// `random` in `[0, 1)` choosing the jitter.
    pub fn delay_ms(&self, retry: u32, random: f64) -> u64 {
        let exponent = retry.saturating_sub(1).min(64) as i32;
        let base = (self.initial_ms as f64 * self.factor.powi(exponent)).min(self.max_ms as f64);
        let spread = base * self.jitter * (2.0 * random - 1.0);
        (base + spread).clamp(0.0, self.max_ms as f64).round() as u64
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.factor >= 1.0 && self.factor.is_finite()) {
            return Err(format!("backoff.factor must be at least 1, got {}", self.factor));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!("backoff.jitter must be between 0 and 1, got {}", self.jitter));
        }
        if self.initial_ms > self.max_ms {
            return Err(format!(
                "backoff.initialMs ({}) exceeds backoff.maxMs ({})",
                self.initial_ms, self.max_ms
            ));
        }
        Ok(())
    }
}

/// A job to enqueue: its handler, data and options. Options left `None`
/// take the handler's defaults, then the engine's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewJob {
    /// The handler to run.
    pub name: String,
    /// The input, any JSON.
    #[serde(default)]
    pub data: Value,
    /// How urgent it is.
    #[serde(default)]
    pub priority: Priority,
    /// Retries after the first attempt; `0` means exactly one attempt.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Backoff between attempts.
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// Wall-clock timeout per attempt in milliseconds.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Fuel budget per attempt.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Memory limit in bytes.
    #[serde(default)]
    pub memory: Option<u64>,
    /// Earliest time to run.
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    /// At most one active (not final) job may hold a given key.
    #[serde(default)]
    pub unique_key: Option<String>,
    /// The principal to run as; defaults to the caller.
    #[serde(default)]
    pub run_as: Option<Principal>,
}

impl NewJob {
    /// A job for `name` with `data` and every option at its default.
    pub fn new(name: impl Into<String>, data: Value) -> Self {
        Self { name: name.into(), data, ..Self::default() }
    }
}

/// How one attempt ended, kept on the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The attempt's number, from 1.
    pub number: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// The outcome kind, for example `completed` or `timeout`.
    pub outcome: String,
    /// The error, when it did not complete.
    pub error: Option<String>,
    /// What it cost.
    pub usage: Usage,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Its identifier.
    pub id: String,
    /// The handler name.
    pub name: String,
    /// The handler version (sha256) pinned at enqueue.
    pub handler_sha256: String,
    /// The input.
    pub data: Value,
    /// Its priority.
    pub priority: Priority,
    /// Its status.
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// Backoff between attempts.
    pub backoff: Backoff,
    /// Wall-clock timeout per attempt, milliseconds.
    pub timeout: u64,
    /// Fuel per attempt.
    pub fuel: u64,
    /// Memory limit, bytes.
    pub memory: u64,
    /// Who it runs as.
    pub run_as: Principal,
    /// The user who enqueued it: the one it runs as, unless that user was
    /// impersonated or a schedule fired it (then the schedule's creator).
    /// Both own the job.
    #[serde(default)]
    pub enqueued_by: String,
    /// When it may next run (its delay, or its next retry).
    pub run_at: DateTime<Utc>,
    /// Its unique key, if any.
    pub unique_key: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When it failed for good.
    pub failed_at: Option<DateTime<Utc>>,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The latest error.
    pub error: Option<String>,
    /// The result, when completed.
    pub result: Option<Value>,
    /// The latest progress report.
    pub progress: Option<crate::sandbox::Progress>,
    /// Every finished attempt.
    pub attempt_log: Vec<Attempt>,
    /// The schedule whose fire enqueued it.
    #[serde(default)]
    pub schedule_id: Option<String>,
}

impl Job {
    /// The most attempts this job may have.
    pub fn max_attempts(&self) -> u32 {
        self.max_retries.saturating_add(1)
    }

    /// The users who own the job (see [`crate::ownership`]).
    pub fn owners(&self) -> [&str; 2] {
        [&self.run_as.user_id, &self.enqueued_by]
    }

    /// When it completed, failed for good or was cancelled; `None` while active.
    pub fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.completed_at.or(self.failed_at).or(self.cancelled_at)
    }
}

/// The log of one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptLog {
    /// The attempt's number.
    pub attempt: u32,
    /// Its lines.
    pub lines: Vec<LogLine>,
    /// Bytes dropped past the cap.
    pub dropped_bytes: u64,
}

/// How to order a job listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobSort {
    /// Newest first.
    #[default]
    CreatedAtDesc,
    /// Oldest first.
    CreatedAtAsc,
    /// Most urgent first, then oldest.
    PriorityDesc,
    /// Soonest `runAt` first.
    RunAtAsc,
}

/// A job listing's filters and page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobQuery {
    /// Only this handler.
    pub name: Option<String>,
    /// Only these statuses.
    pub status: Vec<JobStatus>,
    /// Only this priority.
    pub priority: Option<Priority>,
    /// Only jobs this user owns (runs as or enqueued).
    pub owner: Option<String>,
    /// Order.
    pub sort: JobSort,
    /// Skip this many.
    pub skip: u64,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u64>,
}

impl JobQuery {
    /// The page size after defaults and the cap.
    pub fn page_size(&self) -> u64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

/// Counts per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCounts {
    /// Every job.
    pub total: u64,
    /// Per status name.
    pub by_status: std::collections::BTreeMap<String, u64>,
}
