//! What a handler is told about the run it is part of.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bindings::objectos::jobs::types as wit;

/// The principal a job runs as: every host call is checked against it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    /// The user the job acts for.
    pub user_id: String,
    /// The permission profiles the user holds.
    pub profiles: Vec<String>,
    /// Further attributes, such as `teamId`.
    pub metadata: Map<String, Value>,
}

/// The job and attempt being run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// The job's identifier, stable across retries.
    pub job_id: String,
    /// The handler name the job was enqueued for.
    pub handler: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// The most attempts the job may have.
    pub max_attempts: u32,
    /// Who the job runs as.
    pub principal: Principal,
    /// The schedule that produced the job, if any.
    pub schedule_id: Option<String>,
    /// When the job was enqueued (RFC 3339, UTC).
    pub enqueued_at: String,
    /// When this attempt's wall-clock deadline falls (RFC 3339, UTC).
    pub deadline: String,
}

impl Context {
    /// Whether a retryable error from this attempt would end the job.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// A context for unit tests run natively: job `test-job`, attempt 1 of
    /// 1, as user `test` with profile `admin`.
    pub fn for_tests() -> Self {
        Self {
            job_id: "test-job".into(),
            handler: "test".into(),
            attempt: 1,
            max_attempts: 1,
            principal: Principal {
                user_id: "test".into(),
                profiles: vec!["admin".into()],
                metadata: Map::new(),
            },
            schedule_id: None,
            enqueued_at: "1970-01-01T00:00:00Z".into(),
            deadline: "1970-01-01T00:01:00Z".into(),
        }
    }
}

impl From<wit::JobContext> for Context {
    fn from(ctx: wit::JobContext) -> Self {
        let metadata = match serde_json::from_str(&ctx.principal.metadata) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        Self {
            job_id: ctx.job_id,
            handler: ctx.handler,
            attempt: ctx.attempt,
            max_attempts: ctx.max_attempts,
            principal: Principal {
                user_id: ctx.principal.user_id,
                profiles: ctx.principal.profiles,
                metadata,
            },
            schedule_id: ctx.schedule_id,
            enqueued_at: ctx.enqueued_at,
            deadline: ctx.deadline,
        }
    }
}
