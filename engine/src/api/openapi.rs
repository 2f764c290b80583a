//! `/v1/openapi.json`, built from the route list the router is built from.

use axum::Json;
use serde_json::{Map, Value, json};

use super::routes::{self, Body, RouteDoc};

/// `GET /v1/openapi.json`.
pub(super) async fn document() -> Json<Value> {
    Json(build(&routes::all().iter().map(|r| r.doc).collect::<Vec<_>>()))
}

/// The OpenAPI 3.1 document of `docs`.
pub fn build(docs: &[RouteDoc]) -> Value {
    let mut paths = Map::new();
    for doc in docs {
        let entry = paths.entry(doc.path).or_insert_with(|| json!({}));
        entry[doc.method.to_ascii_lowercase()] = operation(doc);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ObjectOS Jobs",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Background jobs whose handlers are sandboxed WebAssembly components. \
                            Every route but /healthz and this document needs `Authorization: Bearer <token>`; \
                            `x-permission` names the system permission a route needs.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message", "details"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "details": {},
                        },
                    }},
                },
            },
        },
    })
}

fn operation(doc: &RouteDoc) -> Value {
    let parameters: Vec<Value> = doc
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let error = json!({"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut responses = Map::new();
    responses.insert(doc.success.to_string(), json!({"description": "Success"}));
    responses.insert("4XX".into(), error);
    let mut op = json!({
        "summary": doc.summary,
        "operationId": format!("{} {}", doc.method, doc.path),
        "tags": [doc.tag],
        "parameters": parameters,
        "responses": responses,
    });
    match doc.body {
        Body::None => {}
        Body::Json => op["requestBody"] = json!({"required": true, "content": {"application/json": {}}}),
        Body::Wasm => op["requestBody"] = json!({"required": true, "content": {"application/wasm": {}}}),
    }
    if doc.auth {
        op["security"] = json!([{"bearer": []}]);
    }
    if let Some(permission) = doc.permission {
        op["x-permission"] = json!(permission);
    }
    op
}
