//! `/v1/schedules`. A caller reads and changes the schedules it created,
//! or anyone's with `schedules.read.any` and `schedules.write.any`.
//! Choosing a schedule's id (`PUT`) needs `schedules.write.any` too: ids
//! are shared by every principal, so a chosen id that another holds would
//! be refused and tell that it exists. `POST` makes an unguessable one up.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::extract::JsonBody;
use super::{ApiError, ApiState, Caller, conceal, deny, scope};
use crate::ownership::{SCHEDULES_READ_ANY, SCHEDULES_WRITE_ANY, Scope};
use crate::schedule::{Schedule, ScheduleError, ScheduleSpec};

/// `result`, with a schedule of another owner answered as a missing one.
async fn concealed<T>(
    state: &ApiState,
    caller: &Caller,
    any: &str,
    result: Result<T, ScheduleError>,
) -> Result<T, ApiError> {
    match result {
        Err(ScheduleError::Hidden(id)) => {
            let missing = ScheduleError::NotFound(id.clone()).into();
            Err(conceal(state, caller, any, &format!("schedules/{id}"), missing).await)
        }
        other => Ok(other?),
    }
}

fn writer(state: &ApiState, caller: &Caller) -> Scope {
    scope(state, caller, SCHEDULES_WRITE_ANY)
}

impl From<ScheduleError> for ApiError {
    fn from(error: ScheduleError) -> Self {
        let message = error.to_string();
        match error {
            ScheduleError::Cron(_) | ScheduleError::Invalid { .. } | ScheduleError::UnknownHandler(_) => {
                ApiError::invalid(message)
            }
            ScheduleError::Job(error) => error.into(),
            ScheduleError::NotFound(_) | ScheduleError::Hidden(_) => ApiError::not_found(message),
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

/// `PUT /v1/schedules/{id}`: creates the schedule `id` (409 if it exists);
/// needs `schedules.write.any`.
pub(super) async fn create_named(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(spec): JsonBody<ScheduleSpec>,
) -> Created {
    if writer(&state, &caller) != Scope::Any {
        let reason = format!(
            "choosing a schedule's id needs `{SCHEDULES_WRITE_ANY}` (ids are shared by every principal); \
             POST /v1/schedules makes one up"
        );
        let route = format!("PUT /v1/schedules/{id}");
        deny(&state, &caller, SCHEDULES_WRITE_ANY, Some(&route), &format!("schedules/{id}"), &reason).await;
        return Err(ApiError::forbidden(reason).with_details(json!({"permission": SCHEDULES_WRITE_ANY})));
    }
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
    let updated = state.node.scheduler.update(&caller.principal, &writer(&state, &caller), &id, &patch).await;
    Ok(Json(concealed(&state, &caller, SCHEDULES_WRITE_ANY, updated).await?))
}

/// `GET /v1/schedules`.
pub(super) async fn list(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let schedules = state.node.scheduler.list(&scope(&state, &caller, SCHEDULES_READ_ANY)).await?;
    Ok(Json(json!({"schedules": schedules})))
}

/// `GET /v1/schedules/{id}`.
pub(super) async fn show(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    let schedule = state.node.scheduler.get(&scope(&state, &caller, SCHEDULES_READ_ANY), &id).await;
    Ok(Json(concealed(&state, &caller, SCHEDULES_READ_ANY, schedule).await?))
}

/// `POST /v1/schedules/{id}/pause`.
pub(super) async fn pause(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    let changed = state.node.scheduler.pause(&caller.principal, &writer(&state, &caller), &id).await;
    Ok(Json(concealed(&state, &caller, SCHEDULES_WRITE_ANY, changed).await?))
}

/// `POST /v1/schedules/{id}/resume`.
pub(super) async fn resume(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    let changed = state.node.scheduler.resume(&caller.principal, &writer(&state, &caller), &id).await;
    Ok(Json(concealed(&state, &caller, SCHEDULES_WRITE_ANY, changed).await?))
}

/// `DELETE /v1/schedules/{id}`: the schedule as it was.
pub(super) async fn remove(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    let changed = state.node.scheduler.remove(&caller.principal, &writer(&state, &caller), &id).await;
    Ok(Json(concealed(&state, &caller, SCHEDULES_WRITE_ANY, changed).await?))
}
