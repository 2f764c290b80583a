//! `/v1/handlers` (uploads, listing, removal) and `/healthz`.

use std::time::Instant;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::extract::RawBody;
use super::{ApiError, ApiState, Caller, deny};
use crate::sandbox::CompiledHandler;
use crate::store::HandlerRecord;

/// `GET /healthz`: 200 while the server runs.
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

fn capabilities(compiled: &CompiledHandler) -> Vec<&'static str> {
    compiled.requested().iter().map(|c| c.interface()).collect()
}

fn describe(record: &HandlerRecord, compiled: Option<&CompiledHandler>) -> Value {
    json!({
        "name": record.name,
        "sha256": record.sha256,
        "versions": record.versions,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "size": compiled.map(CompiledHandler::size),
        "capabilities": compiled.map(capabilities),
    })
}

/// Refuses (403, audited) to replace or remove a built-in handler: the
/// binary installs its own version at every start, so a replacement would
/// be undone silently, and a removal would break the jobs that use it.
async fn refuse_builtin(state: &ApiState, caller: &Caller, method: &str, name: &str) -> Result<(), ApiError> {
    if !crate::builtins::ALL.iter().any(|builtin| builtin.name == name) {
        return Ok(());
    }
    let reason = format!(
        "`{name}` is a built-in handler: this binary provides it, and it is neither replaced nor removed \
         through the API (upload your own under another name)"
    );
    let route = format!("{method} /v1/handlers/{name}");
    deny(state, caller, "handlers.upload", Some(&route), &format!("handlers/{name}"), &reason).await;
    Err(ApiError::forbidden(reason))
}

/// `PUT /v1/handlers/{name}`: the body is a component's bytes. It is
/// validated and compiled before it is accepted; the name then points at
/// its version (201), or already did (200).
pub(super) async fn upload(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawBody(bytes): RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    refuse_builtin(&state, &caller, "PUT", &name).await?;
    let registry = state.node.queue.registry();
    let before = registry.get(&name).await.ok().map(|record| record.sha256);
    let started = Instant::now();
    let (record, compiled) = registry.register_as(&caller.principal, &name, bytes.to_vec()).await?;
    let mut body = describe(&record, Some(&compiled));
    body["readyMs"] = json!(started.elapsed().as_secs_f64() * 1000.0);
    let status =
        if before.as_deref() == Some(record.sha256.as_str()) { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(body)))
}

/// `GET /v1/handlers`.
pub(super) async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let records = state.node.queue.registry().list().await?;
    let handlers: Vec<Value> = records.iter().map(|record| describe(record, None)).collect();
    Ok(Json(json!({"handlers": handlers})))
}

/// `GET /v1/handlers/{name}`: with the current version's size and the
/// capabilities it imports.
pub(super) async fn show(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let registry = state.node.queue.registry();
    let record = registry.get(&name).await?;
    let compiled = registry.compiled(&record.sha256).await?;
    Ok(Json(describe(&record, Some(&compiled))))
}

/// `DELETE /v1/handlers/{name}`: jobs already pinned to its versions still run.
pub(super) async fn remove(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    refuse_builtin(&state, &caller, "DELETE", &name).await?;
    if state.node.queue.registry().remove(&caller.principal, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("unknown handler `{name}`")))
    }
}
