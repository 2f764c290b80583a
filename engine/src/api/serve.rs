//! The connection loop under the router: hyper's HTTP/1 server with the
//! limits a hostile client needs and `axum::serve` does not offer — a
//! bound on open connections, a deadline for a request's headers, and a
//! deadline for the whole request (a slow body included). A request past
//! a limit gets the API's one error shape.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::ApiError;

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Time to send a request's headers (and, between requests on a kept
    /// connection, to start the next).
    pub header_timeout: Duration,
    /// Time from a request's headers to its answer, its body read included.
    pub request_timeout: Duration,
    /// The most bytes of request headers.
    pub max_header_bytes: usize,
}

/// hyper's own limit on header bytes, above the API's, so that the API
/// answers an oversize request itself (in its error shape, with a 431).
const HYPER_BUFFER: usize = 1 << 20;
/// hyper's own limit on the number of headers, for the same reason.
const HYPER_HEADERS: usize = 1000;

/// Serves `router` on `listener` until `stop`, then lets requests in flight finish.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let router = router.layer(axum::middleware::from_fn(move |request, next| bounded(limits, request, next)));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(HYPER_BUFFER)
        .max_headers(HYPER_HEADERS);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = stop.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A full file table or a reset before accept: go on serving.
                Err(error) => {
                    tracing::warn!(%error, "could not accept a connection");
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that goes away mid-request is its own business.
            let _ = connection.await;
            drop(permit);
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Refuses oversize headers (431) and answers 408 to a request that takes
/// longer than `request_timeout`, both in the error shape.
async fn bounded(limits: ConnectionLimits, request: Request, next: Next) -> Response {
    use axum::response::IntoResponse;
    let header_bytes: usize =
        request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if header_bytes > limits.max_header_bytes {
        return ApiError::headers_too_large(limits.max_header_bytes).into_response();
    }
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timed_out(limits.request_timeout).into_response(),
    }
}
