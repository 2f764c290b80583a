//! `/v1/artifacts`: listing, describing and downloading, streamed chunk by
//! chunk so an artifact of any size passes through bounded memory. A
//! caller reaches the artifacts it owns (those of its jobs), or anyone's
//! with `artifacts.read.any`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::header;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::QueryParams;
use super::{ApiError, ApiState, Caller, conceal, scope};
use crate::ownership::ARTIFACTS_READ_ANY;
use crate::sandbox::{ArtifactSource, HostError};
use crate::store::ArtifactRecord;

/// Bytes sent per body chunk.
const SEND: usize = 256 << 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    /// Only artifacts with an id after this (paging).
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/artifacts?after=&limit=`: sealed artifacts by id, with their
/// producing job and sha256.
pub(super) async fn list(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let after = params.after.as_deref().unwrap_or("");
    let artifacts =
        state.node.artifacts.list(&scope(&state, &caller, ARTIFACTS_READ_ANY), after, limit).await?;
    Ok(Json(json!({"artifacts": artifacts})))
}

/// A sealed artifact the caller may read; another's is answered as missing.
async fn sealed(state: &ApiState, caller: &Caller, id: &str) -> Result<ArtifactRecord, ApiError> {
    let missing = || ApiError::not_found(format!("artifact `{id}` not found"));
    let record = state.node.artifacts.get(id).await?.ok_or_else(missing)?;
    if !scope(state, caller, ARTIFACTS_READ_ANY).admits(record.owners()) {
        return Err(conceal(state, caller, ARTIFACTS_READ_ANY, &format!("artifacts/{id}"), missing()).await);
    }
    match record.sealed_at {
        Some(_) => Ok(record),
        None => Err(ApiError::conflict(format!("artifact `{id}` is still being written"))),
    }
}

/// `GET /v1/artifacts/{id}`.
pub(super) async fn show(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ArtifactRecord>, ApiError> {
    Ok(Json(sealed(&state, &caller, &id).await?))
}

/// `GET /v1/artifacts/{id}/content`: the bytes, streamed, with their
/// length, media type, file name and digest in the headers.
pub(super) async fn download(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = sealed(&state, &caller, &id).await?;
    let reader = state.node.artifacts.reader_of(&record);
    let chunks = futures_util::stream::try_unfold(reader, |mut reader| async move {
        let bytes = reader.read(SEND).await.map_err(|e: HostError| std::io::Error::other(e.to_string()))?;
        Ok::<_, std::io::Error>((!bytes.is_empty()).then_some((bytes, reader)))
    });
    let disposition =
        format!("attachment; filename=\"{}\"", record.name.replace(['"', '\\', '\r', '\n'], "_"));
    Response::builder()
        .header(header::CONTENT_TYPE, &record.content_type)
        .header(header::CONTENT_LENGTH, record.size)
        .header(header::CONTENT_DISPOSITION, disposition)
        .header("x-sha256", &record.sha256)
        .body(Body::from_stream(chunks))
        .map_err(|e| ApiError::internal(e.to_string()))
}
