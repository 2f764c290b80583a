//! `/v1/artifacts`: listing, describing and downloading, streamed chunk by
//! chunk so an artifact of any size passes through bounded memory.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::QueryParams;
use super::{ApiError, ApiState};
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
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let artifacts = state.node.artifacts.list(params.after.as_deref().unwrap_or(""), limit).await?;
    Ok(Json(json!({"artifacts": artifacts})))
}

async fn sealed(state: &ApiState, id: &str) -> Result<ArtifactRecord, ApiError> {
    match state.node.artifacts.get(id).await? {
        Some(record) if record.sealed_at.is_some() => Ok(record),
        Some(_) => Err(ApiError::conflict(format!("artifact `{id}` is still being written"))),
        None => Err(ApiError::not_found(format!("artifact `{id}` not found"))),
    }
}

/// `GET /v1/artifacts/{id}`.
pub(super) async fn show(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ArtifactRecord>, ApiError> {
    Ok(Json(sealed(&state, &id).await?))
}

/// `GET /v1/artifacts/{id}/content`: the bytes, streamed, with their
/// length, media type, file name and digest in the headers.
pub(super) async fn download(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = sealed(&state, &id).await?;
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
