//! The one list of routes, from which both the router and the OpenAPI
//! document are built.

use axum::routing::{MethodRouter, delete, get, post, put};

use super::{ApiState, handlers, jobs, openapi};

/// What a route's request body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    None,
    /// A JSON document.
    Json,
    /// A wasm component's bytes (`application/wasm`), up to the upload limit.
    Wasm,
}

/// What the OpenAPI document says of a route, and what guards it.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// The path, with `{name}` parameters (axum's and OpenAPI's syntax alike).
    pub path: &'static str,
    /// Whether a token is needed.
    pub auth: bool,
    /// The system permission needed, if any beyond a valid token.
    pub permission: Option<&'static str>,
    /// A group of routes.
    pub tag: &'static str,
    /// One line for the document.
    pub summary: &'static str,
    /// The request body.
    pub body: Body,
    /// The status of a success.
    pub success: u16,
}

/// One route: its description and its handler.
pub struct Route {
    /// What the document says.
    pub doc: RouteDoc,
    /// What serves it.
    pub handler: MethodRouter<ApiState>,
}

const fn doc(
    method: &'static str,
    path: &'static str,
    permission: &'static str,
    summary: &'static str,
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        auth: true,
        permission: Some(permission),
        tag: "",
        summary,
        body: Body::None,
        success: 200,
    }
}

impl RouteDoc {
    const fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }

    const fn body(mut self, body: Body, success: u16) -> Self {
        self.body = body;
        self.success = success;
        self
    }

    const fn public(mut self) -> Self {
        self.auth = false;
        self.permission = None;
        self
    }
}

/// Every route the API serves.
pub fn all() -> Vec<Route> {
    let route = |doc: RouteDoc, handler| Route { doc, handler };
    vec![
        route(
            doc("GET", "/healthz", "", "Whether the server is up").public().tag("meta"),
            get(handlers::healthz),
        ),
        route(
            doc("GET", "/v1/openapi.json", "", "This document").public().tag("meta"),
            get(openapi::document),
        ),
        route(
            doc("POST", "/v1/jobs", "jobs.enqueue", "Enqueue a job").tag("jobs").body(Body::Json, 201),
            post(jobs::enqueue),
        ),
        route(
            doc("POST", "/v1/jobs/batch", "jobs.enqueue", "Enqueue jobs, all or none")
                .tag("jobs")
                .body(Body::Json, 201),
            post(jobs::enqueue_batch),
        ),
        route(
            doc("GET", "/v1/jobs", "jobs.read", "List jobs (filters, paging, order)").tag("jobs"),
            get(jobs::list),
        ),
        route(doc("GET", "/v1/jobs/{id}", "jobs.read", "A job").tag("jobs"), get(jobs::show)),
        route(
            doc("POST", "/v1/jobs/{id}/cancel", "jobs.cancel", "Cancel a job").tag("jobs"),
            post(jobs::cancel),
        ),
        route(
            doc("GET", "/v1/jobs/{id}/logs", "jobs.read", "A job's attempts and logs").tag("jobs"),
            get(jobs::logs),
        ),
        route(
            doc("PUT", "/v1/handlers/{name}", "handlers.upload", "Upload a handler version (the wasm bytes)")
                .tag("handlers")
                .body(Body::Wasm, 201),
            put(handlers::upload),
        ),
        route(
            doc("GET", "/v1/handlers", "handlers.read", "List handlers").tag("handlers"),
            get(handlers::list),
        ),
        route(
            doc("GET", "/v1/handlers/{name}", "handlers.read", "A handler, its versions and capabilities")
                .tag("handlers"),
            get(handlers::show),
        ),
        route(
            doc("DELETE", "/v1/handlers/{name}", "handlers.upload", "Remove a handler name").tag("handlers"),
            delete(handlers::remove),
        ),
        route(
            doc("GET", "/v1/stats", "stats.read", "Counts per status and run times").tag("stats"),
            get(jobs::stats),
        ),
    ]
}
