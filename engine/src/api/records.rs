//! `/v1/objects`: records through the permission engine, as the caller.
//! Object, field and record-level permissions decide each request exactly
//! as they decide a job's host calls (denials audited by the engine).

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{JsonBody, QueryParams};
use super::{ApiError, ApiState, Caller};
use crate::sandbox::{HostError, ImportReport, OnConflict, Query, RecordsService};
use crate::store::Actor;

impl From<HostError> for ApiError {
    fn from(error: HostError) -> Self {
        match error {
            HostError::Denied(m) => ApiError::forbidden(m),
            HostError::Invalid(m) => ApiError::invalid(m),
            HostError::NotFound(m) => ApiError::not_found(m),
            HostError::LimitExceeded(m) => ApiError::invalid(m),
            HostError::Unavailable(m) => ApiError::internal(m),
        }
    }
}

/// 404 for a record that does not exist or that the caller cannot see
/// (the two are not told apart).
fn unseen(object: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("no record `{id}` of `{object}` that you can see"))
}

fn actor(caller: &Caller) -> Actor {
    Actor::user(caller.principal.clone())
}

/// `GET /v1/objects`: the objects the caller can read, with the fields it sees.
pub(super) async fn objects(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"objects": state.node.records.objects(&actor(&caller)).await?})))
}

/// The query string of a record listing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FindParams {
    /// A FilterCondition as JSON.
    filter: Option<String>,
    /// Comma-separated field names.
    fields: Option<String>,
    /// Comma-separated `field` or `field:desc`.
    sort: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl FindParams {
    fn query(self) -> Result<Query, ApiError> {
        let filter = match self.filter {
            Some(text) => Some(
                serde_json::from_str(&text)
                    .map_err(|e| ApiError::bad_request(format!("filter is not JSON: {e}")))?,
            ),
            None => None,
        };
        let sort = match self.sort {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|key| {
                    let (field, order) = key.split_once(':').unwrap_or((key, "asc"));
                    serde_json::from_value(json!({"field": field, "order": order}))
                        .map_err(|e| ApiError::bad_request(format!("sort `{key}`: {e}")))
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Query {
            filter,
            fields: self.fields.map(|f| f.split(',').map(str::to_string).collect()),
            sort,
            limit: self.limit,
            cursor: self.cursor,
        })
    }
}

/// `GET /v1/objects/{object}/records?filter=&fields=&sort=&limit=&cursor=`:
/// one page and the cursor of the next.
pub(super) async fn find(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(object): Path<String>,
    QueryParams(params): QueryParams<FindParams>,
) -> Result<Json<Value>, ApiError> {
    let page = state.node.records.find(&actor(&caller), &object, params.query()?).await?;
    Ok(Json(json!({"records": page.records, "nextCursor": page.next_cursor})))
}

/// `POST /v1/objects/{object}/query`: the same with the query as a JSON body.
pub(super) async fn query(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(object): Path<String>,
    JsonBody(query): JsonBody<Query>,
) -> Result<Json<Value>, ApiError> {
    let page = state.node.records.find(&actor(&caller), &object, query).await?;
    Ok(Json(json!({"records": page.records, "nextCursor": page.next_cursor})))
}

/// `GET /v1/objects/{object}/records/{id}`.
pub(super) async fn get(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((object, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let query = Query { filter: Some(json!({"id": id})), limit: Some(1), ..Query::default() };
    let page = state.node.records.find(&actor(&caller), &object, query).await?;
    page.records.into_iter().next().map(Json).ok_or_else(|| unseen(&object, &id))
}

/// `POST /v1/objects/{object}/records`: one record (an object) or several
/// (an array), stored all or none; 201 with their ids.
pub(super) async fn insert(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(object): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let records = match body {
        Value::Array(records) => records,
        record @ Value::Object(_) => vec![record],
        other => {
            return Err(ApiError::invalid(format!("expected a record or a list of records, not {other}")));
        }
    };
    let ids = state.node.records.insert(&actor(&caller), &object, records).await?;
    Ok((StatusCode::CREATED, Json(json!({"ids": ids}))))
}

/// The query string of an import.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ImportParams {
    on_conflict: Option<OnConflict>,
}

/// `POST /v1/objects/{object}/import?onConflict=fail|skip|replace`: records
/// with their system fields (ids, owners, timestamps) as given, as a
/// backup or an export holds them; needs `records.import`, create
/// permission and read access to every record of the object; all or none.
pub(super) async fn import(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(object): Path<String>,
    QueryParams(params): QueryParams<ImportParams>,
    JsonBody(records): JsonBody<Vec<Value>>,
) -> Result<Json<ImportReport>, ApiError> {
    let on_conflict = params.on_conflict.unwrap_or(OnConflict::Fail);
    Ok(Json(state.node.records.import(&actor(&caller), &object, records, on_conflict).await?))
}

/// `PATCH /v1/objects/{object}/records/{id}`: a merge patch of the record.
pub(super) async fn update(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((object, id)): Path<(String, String)>,
    JsonBody(patch): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let report = state.node.records.update(&actor(&caller), &object, json!({"id": id}), patch).await?;
    if report.matched == 0 {
        return Err(unseen(&object, &id));
    }
    if report.skipped > 0 {
        return Err(ApiError::forbidden(format!("you may not edit record `{id}` of `{object}`")));
    }
    Ok(Json(json!(report)))
}

/// `DELETE /v1/objects/{object}/records/{id}`.
pub(super) async fn remove(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((object, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let report = state.node.records.delete(&actor(&caller), &object, json!({"id": id})).await?;
    match (report.matched, report.skipped) {
        (0, _) => Err(unseen(&object, &id)),
        (_, 0) => Ok(StatusCode::NO_CONTENT),
        _ => Err(ApiError::forbidden(format!("you may not delete record `{id}` of `{object}`"))),
    }
}
