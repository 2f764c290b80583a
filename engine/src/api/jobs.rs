//! `/v1/jobs` and `/v1/stats`. A caller reads (and retries) its own jobs,
//! or anyone's with `jobs.read.any`, and cancels its own, or anyone's with
//! `jobs.cancel.any`; `/v1/stats` and `/metrics` are counts without ids.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{JsonBody, QueryParams};
use super::{ApiError, ApiState, Caller, conceal, scope};
use crate::jobs::{Job, JobQuery, JobSort, JobStatus, NewJob, Priority};
use crate::ownership::{JOBS_CANCEL_ANY, JOBS_READ_ANY};
use crate::queue::QueueError;

/// `result`, with a job of another owner answered as a missing one.
async fn concealed<T>(
    state: &ApiState,
    caller: &Caller,
    any: &str,
    result: Result<T, QueueError>,
) -> Result<T, ApiError> {
    match result {
        Err(QueueError::Hidden(id)) => {
            Err(conceal(state, caller, any, &format!("jobs/{id}"), QueueError::NotFound(id).into()).await)
        }
        other => Ok(other?),
    }
}

/// `POST /v1/jobs`: a [`NewJob`]; answers 201 with the stored job.
pub(super) async fn enqueue(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    JsonBody(job): JsonBody<NewJob>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let job = state.node.queue.enqueue(&caller.principal, job).await?;
    Ok((StatusCode::CREATED, Json(job)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Batch {
    jobs: Vec<NewJob>,
}

/// `POST /v1/jobs/batch`: `{"jobs": [...]}`, stored all or none.
pub(super) async fn enqueue_batch(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    JsonBody(batch): JsonBody<Batch>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let jobs = state.node.queue.enqueue_batch(&caller.principal, batch.jobs).await?;
    Ok((StatusCode::CREATED, Json(json!({"jobs": jobs}))))
}

/// The query string of `GET /v1/jobs`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ListParams {
    name: Option<String>,
    /// Comma-separated statuses.
    status: Option<String>,
    priority: Option<Priority>,
    sort: Option<JobSort>,
    skip: Option<u64>,
    limit: Option<u64>,
}

/// `GET /v1/jobs?name=&status=pending,running&priority=&sort=&skip=&limit=`:
/// a page of jobs, and `nextSkip` (the `skip` of the next page) while
/// more may follow.
pub(super) async fn list(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let status = match &params.status {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|s| {
                serde_json::from_value::<JobStatus>(Value::String(s.trim().to_string()))
                    .map_err(|_| ApiError::bad_request(format!("status: unknown status `{s}`")))
            })
            .collect::<Result<_, _>>()?,
    };
    let query = JobQuery {
        name: params.name,
        status,
        priority: params.priority,
        owner: None,
        sort: params.sort.unwrap_or_default(),
        skip: params.skip.unwrap_or(0),
        limit: params.limit,
    };
    let jobs = state.node.queue.list(&scope(&state, &caller, JOBS_READ_ANY), &query).await?;
    // More may follow a full page, or one cut short by its bytes.
    let mut more = jobs.len() as u64 == query.page_size();
    // A page is bounded in bytes as well as rows (data, results and errors
    // are each capped, but a thousand of them are not small): it stops
    // before the job that would pass the bound, keeping at least one.
    let mut page = Vec::with_capacity(jobs.len());
    let mut bytes = 0;
    for job in jobs {
        let job = serde_json::to_value(job).map_err(|e| ApiError::internal(e.to_string()))?;
        bytes += job.to_string().len();
        if bytes > state.node.config.api.max_page_bytes && !page.is_empty() {
            more = true;
            break;
        }
        page.push(job);
    }
    let next = more.then(|| query.skip + page.len() as u64);
    Ok(Json(json!({"jobs": page, "skip": query.skip, "limit": query.page_size(), "nextSkip": next})))
}

/// `GET /v1/jobs/{id}`.
pub(super) async fn show(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = state.node.queue.get(&scope(&state, &caller, JOBS_READ_ANY), &id).await;
    Ok(Json(concealed(&state, &caller, JOBS_READ_ANY, job).await?))
}

/// `POST /v1/jobs/{id}/cancel`: the job, cancelled (or stopping, if it runs).
pub(super) async fn cancel(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = state.node.queue.cancel(&scope(&state, &caller, JOBS_CANCEL_ANY), &id).await;
    Ok(Json(concealed(&state, &caller, JOBS_CANCEL_ANY, job).await?))
}

/// `POST /v1/jobs/{id}/retry`: a failed or cancelled job enqueued again
/// as a new job — the same handler, data and options, as the same
/// principal (which needs `jobs.impersonate` if that is not the caller),
/// on the handler's current version; 201 with the new job. Only a job the
/// caller may read can be retried.
pub(super) async fn retry(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let job = state.node.queue.get(&scope(&state, &caller, JOBS_READ_ANY), &id).await;
    let job = concealed(&state, &caller, JOBS_READ_ANY, job).await?;
    if !matches!(job.status, JobStatus::Failed | JobStatus::Cancelled) {
        return Err(ApiError::conflict(format!(
            "job {id} is {}: only a failed or cancelled job can be retried",
            job.status.as_str()
        )));
    }
    let again = NewJob {
        name: job.name,
        data: job.data,
        priority: job.priority,
        max_retries: Some(job.max_retries),
        backoff: Some(job.backoff),
        timeout: Some(job.timeout),
        fuel: Some(job.fuel),
        memory: Some(job.memory),
        run_at: None,
        unique_key: job.unique_key,
        run_as: (job.run_as != caller.principal).then_some(job.run_as),
    };
    let again = state.node.queue.enqueue(&caller.principal, again).await?;
    Ok((StatusCode::CREATED, Json(again)))
}

/// `GET /v1/jobs/{id}/logs`: each attempt with its log lines.
pub(super) async fn logs(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let attempts = state.node.queue.logs(&scope(&state, &caller, JOBS_READ_ANY), &id).await;
    let attempts = concealed(&state, &caller, JOBS_READ_ANY, attempts).await?;
    Ok(Json(json!({"jobId": id, "attempts": attempts})))
}

/// `GET /v1/stats`.
pub(super) async fn stats(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let (counts, run) = state.node.queue.stats().await?;
    Ok(Json(json!({"jobs": counts, "runs": run})))
}

/// `GET /metrics`: Prometheus text format.
pub(super) async fn metrics(
    State(state): State<ApiState>,
) -> Result<([(header::HeaderName, &'static str); 1], String), ApiError> {
    let text = state.node.queue.prometheus().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
