//! What running a job once produced, and what it cost.
//!
//! Every way a run can end is one [`OutcomeKind`]; the retry meaning of each
//! kind is decided here, once, so the queue never re-derives it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::capability::CapabilitySet;
use super::log::LogRecord;

/// How one run of a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OutcomeKind {
    /// The handler returned a result (JSON text).
    Completed {
        /// The result as JSON.
        result: String,
    },
    /// The handler returned an error.
    HandlerError {
        /// Whether the handler asked for a retry.
        retryable: bool,
        /// The handler's message.
        message: String,
    },
    /// The job used its whole fuel budget.
    OutOfFuel {
        /// The budget it had.
        budget: u64,
    },
    /// The job ran past its wall-clock timeout and was stopped.
    Timeout {
        /// The timeout in milliseconds.
        after_ms: u64,
    },
    /// The job tried to grow its memory past its limit.
    MemoryLimit {
        /// The limit in bytes.
        limit: u64,
    },
    /// The guest ran out of stack (for example unbounded recursion): the
    /// wasm stack limit, or its own stack in linear memory, which running
    /// off shows as a deep recursion ending in an out-of-bounds access.
    StackOverflow,
    /// The guest trapped: a panic, an abort, an invalid operation.
    Trap {
        /// The guest's last words on stderr when it gave any (a panic
        /// message), otherwise the trap itself.
        message: String,
    },
    /// The guest exited its process (WASI `exit`) instead of returning from
    /// `run`: there is no result, and the same code would exit again.
    Exited {
        /// The exit status WASI reported (0 or 1: WASI 0.2 tells only
        /// success from failure).
        status: i32,
    },
    /// The job was cancelled while it ran.
    Cancelled,
    /// The component imports capabilities the job was not granted; it never ran.
    CapabilityDenied {
        /// The interfaces it lacks, for example `records-write`.
        missing: Vec<String>,
    },
    /// The component could not be instantiated or called as a `job`.
    InvalidComponent {
        /// What is wrong.
        message: String,
    },
    /// The handler's result is larger than the result cap.
    ResultTooLarge {
        /// The result's size.
        size: u64,
        /// The cap.
        limit: u64,
    },
}

/// What a failed run means for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The job succeeded.
    Done,
    /// Run it again if attempts remain.
    Retry,
    /// Fail it now; another attempt cannot help.
    Fail,
    /// It was cancelled.
    Cancelled,
}

impl OutcomeKind {
    /// What this outcome means for the job (SPEC section 4): a handler's
    /// retryable error, a trap and a timeout are retried; a fatal error, out
    /// of fuel, the memory limit, an invalid component and a missing grant
    /// are permanent.
    pub fn disposition(&self) -> Disposition {
        match self {
            OutcomeKind::Completed { .. } => Disposition::Done,
            OutcomeKind::HandlerError { retryable: true, .. }
            | OutcomeKind::Timeout { .. }
            | OutcomeKind::StackOverflow
            | OutcomeKind::Trap { .. } => Disposition::Retry,
            OutcomeKind::HandlerError { retryable: false, .. }
            | OutcomeKind::OutOfFuel { .. }
            | OutcomeKind::MemoryLimit { .. }
            | OutcomeKind::CapabilityDenied { .. }
            | OutcomeKind::InvalidComponent { .. }
            | OutcomeKind::Exited { .. }
            | OutcomeKind::ResultTooLarge { .. } => Disposition::Fail,
            OutcomeKind::Cancelled => Disposition::Cancelled,
        }
    }

    /// A short machine name, for example `out-of-fuel`.
    pub fn name(&self) -> &'static str {
        match self {
            OutcomeKind::Completed { .. } => "completed",
            OutcomeKind::HandlerError { .. } => "handler-error",
            OutcomeKind::OutOfFuel { .. } => "out-of-fuel",
            OutcomeKind::Timeout { .. } => "timeout",
            OutcomeKind::MemoryLimit { .. } => "memory-limit",
            OutcomeKind::StackOverflow => "stack-overflow",
            OutcomeKind::Trap { .. } => "trap",
            OutcomeKind::Exited { .. } => "exited",
            OutcomeKind::Cancelled => "cancelled",
            OutcomeKind::CapabilityDenied { .. } => "capability-denied",
            OutcomeKind::InvalidComponent { .. } => "invalid-component",
            OutcomeKind::ResultTooLarge { .. } => "result-too-large",
        }
    }

    pub(crate) fn capability_denied(missing: CapabilitySet) -> Self {
        OutcomeKind::CapabilityDenied { missing: missing.iter().map(|c| c.interface().to_string()).collect() }
    }
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutcomeKind::Completed { .. } => write!(f, "completed"),
            OutcomeKind::HandlerError { retryable: true, message } => write!(f, "retryable error: {message}"),
            OutcomeKind::HandlerError { retryable: false, message } => write!(f, "fatal error: {message}"),
            OutcomeKind::OutOfFuel { budget } => write!(f, "out of fuel: used its whole budget of {budget}"),
            OutcomeKind::Timeout { after_ms } => write!(f, "timed out after {after_ms} ms"),
            OutcomeKind::MemoryLimit { limit } => write!(f, "memory limit: tried to grow past {limit} bytes"),
            OutcomeKind::StackOverflow => write!(f, "stack overflow: the guest's recursion ran out of stack"),
            OutcomeKind::Trap { message } => write!(f, "trap: {message}"),
            OutcomeKind::Exited { status } => {
                write!(f, "exited with status {status} instead of returning a result from `run`")
            }
            OutcomeKind::Cancelled => write!(f, "cancelled"),
            OutcomeKind::CapabilityDenied { missing } => {
                write!(
                    f,
                    "capability denied: the handler imports {} which the job is not granted",
                    missing.join(", ")
                )
            }
            OutcomeKind::InvalidComponent { message } => write!(f, "invalid component: {message}"),
            OutcomeKind::ResultTooLarge { size, limit } => {
                write!(f, "result too large: {size} bytes, the cap is {limit}")
            }
        }
    }
}

/// What a run cost. In JSON: `{"fuel", "wall" (milliseconds), "peakMemory" (bytes)}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Fuel consumed (roughly, wasm instructions executed).
    pub fuel: u64,
    /// Wall-clock time from instantiation to the end of the call.
    #[serde(with = "millis")]
    pub wall: Duration,
    /// The largest total linear memory the instance had, in bytes.
    /// (Attempts stored before the API spelled it `peak_memory`.)
    #[serde(alias = "peak_memory")]
    pub peak_memory: u64,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        f64::deserialize(d).map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0))
    }
}

/// The last progress a handler reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// 0 to 100.
    pub percent: u8,
    /// What the handler is doing.
    pub message: String,
}

/// Everything one run produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// How it ended.
    #[serde(flatten)]
    pub kind: OutcomeKind,
    /// What it cost.
    pub usage: Usage,
    /// What it logged.
    pub log: LogRecord,
    /// The last progress it reported.
    pub progress: Option<Progress>,
}
