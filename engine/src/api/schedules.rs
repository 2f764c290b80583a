//! `/v1/schedules`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::extract::JsonBody;
use super::{ApiError, ApiState, Caller};
use crate::schedule::{Schedule, ScheduleError, ScheduleSpec};

impl From<ScheduleError> for ApiError {
    fn from(error: ScheduleError) -> Self {
        let message = error.to_string();
        match error {
            ScheduleError::Cron(_) | ScheduleError::Invalid { .. } | ScheduleError::UnknownHandler(_) => {
                ApiError::invalid(message)
            }
            ScheduleError::Job(error) => error.into(),
            ScheduleError::NotFound(_) => ApiError::not_found(message),
            ScheduleError::Exists(_) => ApiError::conflict(message),
            ScheduleError::Store(error) => error.into(),
        }
    }
}

type Created = Result<(StatusCode, Json<Schedule>), ApiError>;

/// `POST /v1/schedules`: a [`ScheduleSpec`]; the id is made up.
pub(super) async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    JsonBody(spec): JsonBody<ScheduleSpec>,
) -> Created {
    let schedule = state.node.scheduler.add(&caller.principal, None, spec).await?;
    Ok((StatusCode::CREATED, Json(schedule)))
}

/// `PUT /v1/schedules/{id}`: creates the schedule `id` (409 if it exists).
pub(super) async fn create_named(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(spec): JsonBody<ScheduleSpec>,
) -> Created {
    let schedule = state.node.scheduler.add(&caller.principal, Some(id), spec).await?;
    Ok((StatusCode::CREATED, Json(schedule)))
}

/// `PATCH /v1/schedules/{id}`: a JSON merge patch of its spec.
pub(super) async fn update(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<Value>,
) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(state.node.scheduler.update(&caller.principal, &id, &patch).await?))
}

/// `GET /v1/schedules`.
pub(super) async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"schedules": state.node.scheduler.list().await?})))
}

/// `GET /v1/schedules/{id}`.
pub(super) async fn show(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(state.node.scheduler.get(&id).await?))
}

/// `POST /v1/schedules/{id}/pause`.
pub(super) async fn pause(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(state.node.scheduler.pause(&caller.principal, &id).await?))
}

/// `POST /v1/schedules/{id}/resume`.
pub(super) async fn resume(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(state.node.scheduler.resume(&caller.principal, &id).await?))
}

/// `DELETE /v1/schedules/{id}`: the schedule as it was.
pub(super) async fn remove(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(state.node.scheduler.remove(&caller.principal, &id).await?))
}
