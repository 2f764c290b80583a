//! The HTTP API `objectos serve` speaks: JSON under `/v1`, each request
//! authenticated by a bearer token that maps to a principal, each route
//! gated by one named system permission (denials answered 403 and
//! audited), errors in one shape ([`ApiError`]).
//!
//! Every route is one [`Route`] in one list (see [`route_docs`]): the router and the
//! OpenAPI document (`/v1/openapi.json`) are both built from that list, so
//! the document cannot drift from what is served.
//!
//! Jobs, artifacts and schedules are scoped to their owners
//! ([`crate::ownership`]): each handler asks for the caller's [`Scope`]
//! under the route's `.any` permission, and another owner's thing is
//! answered exactly as a missing one (`conceal`), the attempt audited.

mod artifacts;
mod audit;
pub mod auth;
mod error;
mod extract;
mod handlers;
mod jobs;
mod openapi;
mod records;
mod routes;
mod schedules;
mod serve;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use serde_json::json;

pub use auth::{Caller, Tokens};
pub use error::ApiError;
pub use routes::{Body, Route, RouteDoc};
pub use serve::ConnectionLimits;

use crate::node::Node;
use crate::ownership::Scope;
use crate::store::{AccessEvent, AccessEventType, Actor};

/// What every request handler reaches.
#[derive(Clone)]
pub struct ApiState {
    node: Arc<Node>,
    tokens: Arc<Tokens>,
}

/// The API served in the background until [`Serving::stop`].
pub struct Serving {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Serving {
    /// Serves the API over `node`, accepting `tokens`, on `listener`.
    pub fn spawn(listener: tokio::net::TcpListener, node: Arc<Node>, tokens: Tokens) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let limits = node.config.api.connection_limits();
        let task = tokio::spawn(serve::serve(listener, router(node, tokens), limits, stop.clone()));
        Self { stop, task }
    }

    /// Stops taking requests and waits for those in flight to finish;
    /// returns how the server ended.
    pub async fn stop(self) -> Result<std::io::Result<()>, tokio::task::JoinError> {
        self.stop.cancel();
        self.task.await
    }
}

/// What the OpenAPI document describes: every route served.
pub fn route_docs() -> Vec<RouteDoc> {
    routes::all().into_iter().map(|route| route.doc).collect()
}

/// The API over `node`, accepting `tokens`.
pub fn router(node: Arc<Node>, tokens: Tokens) -> Router {
    let limits = (node.config.api.max_body_bytes, node.config.api.max_upload_bytes);
    let state = ApiState { node, tokens: Arc::new(tokens) };
    let mut router = Router::new();
    for route in routes::all() {
        let gate =
            Gate { state: state.clone(), permission: route.doc.permission, authenticated: route.doc.auth };
        let limit = if route.doc.body == Body::Wasm { limits.1 } else { limits.0 };
        let handler = route
            .handler
            .route_layer(middleware::from_fn_with_state(gate, guard))
            .layer(DefaultBodyLimit::max(limit));
        router = router.route(route.doc.path, handler);
    }
    router.fallback(not_found).method_not_allowed_fallback(method_not_allowed).with_state(state)
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::method_not_allowed(format!(
        "{} is not a method of {} (see /v1/openapi.json)",
        request.method(),
        request.uri().path()
    ))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {} (see /v1/openapi.json)",
        request.method(),
        request.uri().path()
    ))
}

/// What a route's guard checks.
#[derive(Clone)]
struct Gate {
    state: ApiState,
    permission: Option<&'static str>,
    authenticated: bool,
}

/// Authenticates the request (401 without a valid token) and checks the
/// route's system permission (403, audited), then hands the [`Caller`] on.
async fn guard(State(gate): State<Gate>, mut request: Request, next: Next) -> Result<Response, ApiError> {
    if !gate.authenticated {
        return Ok(next.run(request).await);
    }
    let caller = gate.state.tokens.authenticate(request.headers())?;
    if let Some(permission) = gate.permission {
        let decision = gate.state.node.permissions.current().system(&caller.principal, permission);
        if !decision.allowed {
            let path = request.uri().path();
            let route = format!("{} {path}", request.method());
            let reason = &decision.reason;
            deny(&gate.state, &caller, permission, Some(&route), &format!("api{path}"), reason).await;
            return Err(ApiError::forbidden(format!("{route} needs `{permission}`: {}", decision.reason))
                .with_details(json!({"permission": permission})));
        }
    }
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// Whose jobs, artifacts or schedules `caller` reaches under the `.any`
/// permission `any`.
fn scope(state: &ApiState, caller: &Caller, any: &str) -> Scope {
    state.node.permissions.current().scope(&caller.principal, any)
}

/// The answer for another owner's job, artifact or schedule (`resource`,
/// such as `jobs/job_…`): `missing`, exactly what asking for one that does
/// not exist gets, so nothing confirms it exists; the attempt is recorded
/// as a denial of the `.any` permission `any`.
async fn conceal(
    state: &ApiState,
    caller: &Caller,
    any: &str,
    resource: &str,
    missing: ApiError,
) -> ApiError {
    let reason = format!("`{resource}` is not `{}`'s and it lacks `{any}`", caller.principal.user_id);
    deny(state, caller, any, None, resource, &reason).await;
    missing
}

/// Records an API denial in the audit log's outbox.
async fn deny(
    state: &ApiState,
    caller: &Caller,
    permission: &str,
    route: Option<&str>,
    resource: &str,
    reason: &str,
) {
    let actor = Actor::user(caller.principal.clone());
    let data = json!({"action": permission, "route": route, "reason": reason, "token": caller.token});
    let at = state.node.queue.clock().now();
    let event = AccessEvent::new(AccessEventType::PermissionDenied, &actor, resource.to_string(), data, at);
    if let Err(error) = state.node.store.record_access(event).await {
        tracing::error!(%error, route, "could not record an API denial");
    }
}
