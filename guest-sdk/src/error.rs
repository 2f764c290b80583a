//! Errors: how a handler fails a job, and why a host call failed.

use std::fmt;

use crate::bindings::objectos::jobs::types as wit;

/// How a handler fails an attempt. The kind decides whether the engine
/// retries the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    retryable: bool,
    message: String,
}

impl Error {
    /// A transient failure: the engine runs the job again after a backoff
    /// while attempts remain.
    pub fn retryable(message: impl fmt::Display) -> Self {
        Self { retryable: true, message: message.to_string() }
    }

    /// A failure another attempt cannot fix: the job fails at once.
    pub fn fatal(message: impl fmt::Display) -> Self {
        Self { retryable: false, message: message.to_string() }
    }

    /// Whether the engine will retry after this error.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.retryable { "retryable" } else { "fatal" };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for wit::JobError {
    fn from(error: Error) -> Self {
        if error.retryable {
            wit::JobError::Retryable(error.message)
        } else {
            wit::JobError::Fatal(error.message)
        }
    }
}

/// A host call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The job's principal may not do this; the denial is audited.
    Denied(String),
    /// The request was malformed (bad JSON, unknown operator, bad cursor).
    Invalid(String),
    /// The object, record or artifact does not exist.
    NotFound(String),
    /// A size or count limit was reached.
    LimitExceeded(String),
    /// The engine could not answer now; a retry may succeed.
    Unavailable(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Denied(m) => write!(f, "denied: {m}"),
            HostError::Invalid(m) => write!(f, "invalid request: {m}"),
            HostError::NotFound(m) => write!(f, "not found: {m}"),
            HostError::LimitExceeded(m) => write!(f, "limit exceeded: {m}"),
            HostError::Unavailable(m) => write!(f, "unavailable: {m}"),
        }
    }
}

impl std::error::Error for HostError {}

impl From<wit::HostError> for HostError {
    fn from(error: wit::HostError) -> Self {
        match error {
            wit::HostError::Denied(m) => HostError::Denied(m),
            wit::HostError::Invalid(m) => HostError::Invalid(m),
            wit::HostError::NotFound(m) => HostError::NotFound(m),
            wit::HostError::LimitExceeded(m) => HostError::LimitExceeded(m),
            wit::HostError::Unavailable(m) => HostError::Unavailable(m),
        }
    }
}

/// `?` on a host call in a handler: only `unavailable` is worth a retry.
impl From<HostError> for Error {
    fn from(error: HostError) -> Self {
        match error {
            HostError::Unavailable(_) => Error::retryable(error),
            _ => Error::fatal(error),
        }
    }
}

/// `?` on JSON handling in a handler: bad data does not fix itself.
impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::fatal(format!("JSON: {error}"))
    }
}

/// `?` on artifact streams: the io error wraps the host's answer.
impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        match error.get_ref().and_then(|inner| inner.downcast_ref::<HostError>()) {
            Some(host) => Error::from(host.clone()),
            None => Error::fatal(format!("I/O: {error}")),
        }
    }
}
