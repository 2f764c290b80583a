//! The API's one error shape: `{"error": {"code", "message", "details"}}`
//! with the status the spec assigns to each kind of failure.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::queue::QueueError;
use crate::registry::RegistryError;
use crate::store::StoreError;

/// A failed request: its status, a stable code for programs and a message
/// for people.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code such as `not_found`.
    pub code: &'static str,
    /// What went wrong and, where it helps, what to do.
    pub message: String,
    /// More, as JSON (for example the field at fault); `null` if nothing.
    pub details: Value,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Value::Null }
    }

    /// 400: the request is malformed (bad JSON, a bad parameter).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no valid bearer token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: the caller may not do this (the denial is audited).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: no such resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: a conflict with the current state (a unique key, a job's status).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413: the body is larger than the route accepts.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than this server accepts (api.maxBodyBytes, or api.maxUploadBytes \
             for handler uploads)",
        )
    }

    /// 405: the route exists, but not with this method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message)
    }

    /// 408: the request took longer than the server waits (a slow body).
    pub fn timed_out(after: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request was not complete within {} s (api.requestTimeout)", after.as_secs()),
        )
    }

    /// 431: the request's headers are larger than the server accepts.
    pub fn headers_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request's headers are larger than {limit} bytes (api.maxHeaderBytes)"),
        )
    }

    /// 422: well-formed, but not acceptable (an unknown handler, an invalid option).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// 500: the engine failed; the message is logged, not hidden.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        (self.status, Json(body)).into_response()
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        let message = error.to_string();
        match error {
            QueueError::Invalid { .. } | QueueError::UnknownHandler { .. } => ApiError::invalid(message),
            QueueError::Forbidden { .. } | QueueError::Impersonation { .. } => ApiError::forbidden(message),
            QueueError::Conflict(_) => ApiError::conflict(message),
            QueueError::NotFound(_) | QueueError::Hidden(_) => ApiError::not_found(message),
            QueueError::Registry(error) => error.into(),
            QueueError::Store(error) => error.into(),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Store(error) => error.into(),
            RegistryError::Unknown(_) => ApiError::not_found(error.to_string()),
            RegistryError::MissingVersion(_) => ApiError::internal(error.to_string()),
            RegistryError::Invalid { .. } | RegistryError::BadName(_) => ApiError::invalid(error.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_retryable() {
            // Nothing was written: the client may send the same request again.
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", error.to_string())
        } else {
            ApiError::internal(error.to_string())
        }
    }
}
