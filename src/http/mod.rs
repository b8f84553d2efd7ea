//! The server's own HTTP surface beside the channels and the console:
//! health and readiness, Prometheus metrics, the classifier, the admin API
//! and the OpenAPI document (`api`), and the middleware that counts every
//! request. The application (`app`) merges these routes with the channels'
//! and the console's.

pub mod api;

use crate::channels::pipeline::Pipeline;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Middleware counting requests by matched route and status.
pub async fn track(State(p): State<Arc<Pipeline>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    p.metrics.request(route, resp.status().as_u16());
    resp
}
