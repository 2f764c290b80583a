//! `/v1/audit`: query, verify, export and checkpoint. Each first appends
//! what the outboxes hold, so an answer includes every change made before
//! the request.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::QueryParams;
use super::{ApiError, ApiState};
use crate::audit::{AuditEntry, Checkpoint, log};
use crate::store::AuditQuery;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Filters {
    event: Option<String>,
    job: Option<String>,
    actor: Option<String>,
    resource: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// Only entries after this sequence number (paging).
    after: Option<u64>,
    limit: Option<usize>,
}

impl Filters {
    fn query(self, default_limit: usize) -> AuditQuery {
        AuditQuery {
            after: self.after.unwrap_or(0),
            limit: self.limit.unwrap_or(default_limit).clamp(1, 1000),
            event: self.event,
            job_id: self.job,
            user_id: self.actor,
            resource: self.resource,
            since: self.since,
            until: self.until,
        }
    }
}

async fn caught_up(state: &ApiState) -> Result<(), ApiError> {
    state.node.auditor.catch_up().await.map(drop).map_err(|e| ApiError::internal(e.to_string()))
}

/// `GET /v1/audit?event=&job=&actor=&resource=&since=&until=&after=&limit=`:
/// entries oldest first, each with its sequence number and hash.
pub(super) async fn list(
    State(state): State<ApiState>,
    QueryParams(filters): QueryParams<Filters>,
) -> Result<Json<Value>, ApiError> {
    caught_up(&state).await?;
    let stored = state.node.store.audit_entries(filters.query(100)).await?;
    let mut entries = Vec::with_capacity(stored.len());
    for entry in &stored {
        let parsed: AuditEntry =
            serde_json::from_slice(&entry.bytes).map_err(|e| ApiError::internal(e.to_string()))?;
        entries.push(json!({"seq": entry.seq, "hash": entry.hash, "entry": parsed}));
    }
    Ok(Json(json!({"entries": entries})))
}

/// The query string of `GET /v1/audit/verify`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifyParams {
    /// Checkpoints written earlier, `seq:hash` separated by commas.
    checkpoints: Option<String>,
}

/// `GET /v1/audit/verify?checkpoints=seq:hash,…`: the chain recomputed from
/// the stored bytes; each checkpoint must still be reached with its hash.
pub(super) async fn verify(
    State(state): State<ApiState>,
    QueryParams(params): QueryParams<VerifyParams>,
) -> Result<Json<Value>, ApiError> {
    let expect = params
        .checkpoints
        .iter()
        .flat_map(|list| list.split(','))
        .map(|text| {
            let (seq, hash) = text.split_once(':').unwrap_or((text, ""));
            match seq.parse() {
                Ok(seq) if !hash.is_empty() => Ok(Checkpoint { seq, hash: hash.to_string() }),
                _ => Err(ApiError::bad_request(format!("checkpoints: `{text}` is not `seq:hash`"))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    caught_up(&state).await?;
    let retention_on = state.node.config.audit.retention.is_some();
    Ok(Json(log::verify(&*state.node.store, &expect, retention_on).await?.to_json()))
}

/// `POST /v1/audit/checkpoint`: the current end of the chain, to keep and
/// check later.
pub(super) async fn checkpoint(State(state): State<ApiState>) -> Result<Json<Checkpoint>, ApiError> {
    caught_up(&state).await?;
    Ok(Json(log::checkpoint(&*state.node.store).await?))
}

/// `GET /v1/audit/export?…`: the selected entries as JSON Lines
/// (`{"seq","hash","entry"}`, the entry as stored), streamed page by page.
pub(super) async fn export(
    State(state): State<ApiState>,
    QueryParams(filters): QueryParams<Filters>,
) -> Result<Response, ApiError> {
    caught_up(&state).await?;
    let store = state.node.store.clone();
    let first = filters.query(1000);
    let pages = futures_util::stream::try_unfold(Some(first), move |query| {
        let store = store.clone();
        async move {
            let Some(mut query) = query else { return Ok(None) };
            let page = store.audit_entries(query.clone()).await.map_err(std::io::Error::other)?;
            let Some(last) = page.last() else { return Ok(None) };
            query.after = last.seq;
            let mut lines = Vec::new();
            for stored in &page {
                log::export_line(stored, &mut lines)?;
            }
            Ok::<_, std::io::Error>(Some((lines, Some(query))))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(pages))
        .map_err(|e| ApiError::internal(e.to_string()))
}
