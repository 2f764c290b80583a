//! The one list of routes, from which both the router and the OpenAPI
//! document are built.

use axum::routing::{MethodRouter, delete, get, patch, post, put};

use super::{ApiState, artifacts, audit, handlers, jobs, openapi, records, schedules};

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
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
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

    /// A records route: a token is needed, and object permissions decide.
    const fn by_object(mut self) -> Self {
        self.permission = None;
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
            doc(
                "POST",
                "/v1/jobs/{id}/retry",
                "jobs.enqueue",
                "Run a failed or cancelled job again, as a new job",
            )
            .tag("jobs")
            .body(Body::None, 201),
            post(jobs::retry),
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
            doc("POST", "/v1/schedules", "schedules.write", "Add a schedule (its id made up)")
                .tag("schedules")
                .body(Body::Json, 201),
            post(schedules::create),
        ),
        route(
            doc("PUT", "/v1/schedules/{id}", "schedules.write", "Add the schedule `id`")
                .tag("schedules")
                .body(Body::Json, 201),
            put(schedules::create_named),
        ),
        route(
            doc("PATCH", "/v1/schedules/{id}", "schedules.write", "Change a schedule (a JSON merge patch)")
                .tag("schedules")
                .body(Body::Json, 200),
            patch(schedules::update),
        ),
        route(
            doc("GET", "/v1/schedules", "schedules.read", "List schedules").tag("schedules"),
            get(schedules::list),
        ),
        route(
            doc("GET", "/v1/schedules/{id}", "schedules.read", "A schedule").tag("schedules"),
            get(schedules::show),
        ),
        route(
            doc("POST", "/v1/schedules/{id}/pause", "schedules.write", "Pause a schedule").tag("schedules"),
            post(schedules::pause),
        ),
        route(
            doc("POST", "/v1/schedules/{id}/resume", "schedules.write", "Resume a schedule").tag("schedules"),
            post(schedules::resume),
        ),
        route(
            doc("DELETE", "/v1/schedules/{id}", "schedules.write", "Remove a schedule").tag("schedules"),
            delete(schedules::remove),
        ),
        route(
            doc("GET", "/v1/objects", "", "Objects the caller can read, with the fields it sees")
                .by_object()
                .tag("records"),
            get(records::objects),
        ),
        route(
            doc("GET", "/v1/objects/{object}/records", "", "Find records (filter, fields, sort, paging)")
                .by_object()
                .tag("records"),
            get(records::find),
        ),
        route(
            doc("POST", "/v1/objects/{object}/query", "", "Find records, the query as a JSON body")
                .by_object()
                .tag("records")
                .body(Body::Json, 200),
            post(records::query),
        ),
        route(
            doc("POST", "/v1/objects/{object}/records", "", "Insert a record or a list of records")
                .by_object()
                .tag("records")
                .body(Body::Json, 201),
            post(records::insert),
        ),
        route(
            doc(
                "POST",
                "/v1/objects/{object}/import",
                "",
                "Import records with their ids and system fields (records.import; onConflict=fail|skip|replace)",
            )
            .by_object()
            .tag("records")
            .body(Body::Json, 200),
            post(records::import),
        ),
        route(
            doc("GET", "/v1/objects/{object}/records/{id}", "", "A record").by_object().tag("records"),
            get(records::get),
        ),
        route(
            doc("PATCH", "/v1/objects/{object}/records/{id}", "", "Change a record (a merge patch)")
                .by_object()
                .tag("records")
                .body(Body::Json, 200),
            patch(records::update),
        ),
        route(
            doc("DELETE", "/v1/objects/{object}/records/{id}", "", "Delete a record")
                .by_object()
                .tag("records"),
            delete(records::remove),
        ),
        route(
            doc("GET", "/v1/artifacts", "artifacts.read", "List artifacts").tag("artifacts"),
            get(artifacts::list),
        ),
        route(
            doc(
                "GET",
                "/v1/artifacts/{id}",
                "artifacts.read",
                "An artifact: name, size, sha256, producing job",
            )
            .tag("artifacts"),
            get(artifacts::show),
        ),
        route(
            doc("GET", "/v1/artifacts/{id}/content", "artifacts.read", "Download an artifact (streamed)")
                .tag("artifacts"),
            get(artifacts::download),
        ),
        route(doc("GET", "/v1/audit", "audit.read", "Query the audit log").tag("audit"), get(audit::list)),
        route(
            doc("GET", "/v1/audit/verify", "audit.read", "Recompute the audit chain").tag("audit"),
            get(audit::verify),
        ),
        route(
            doc("GET", "/v1/audit/export", "audit.read", "Export entries as JSON Lines (streamed)")
                .tag("audit"),
            get(audit::export),
        ),
        route(
            doc("POST", "/v1/audit/checkpoint", "audit.read", "The chain's current end, to check later")
                .tag("audit"),
            post(audit::checkpoint),
        ),
        route(
            doc("GET", "/v1/stats", "stats.read", "Counts per status and run times").tag("stats"),
            get(jobs::stats),
        ),
        route(
            doc("GET", "/metrics", "stats.read", "Prometheus metrics: jobs, attempts, run times, fuel, lag")
                .tag("stats"),
            get(jobs::metrics),
        ),
    ]
}
