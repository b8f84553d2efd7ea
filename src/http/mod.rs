//! The server's own HTTP surface beside the channels and the console:
//! health and readiness, Prometheus metrics, the classifier, the admin API
//! and the OpenAPI document (`api`), and the middleware that counts every
//! request. The application (`app`) merges these routes with the channels'
//! and the console's.

pub mod api;
pub mod notify;
pub mod payments;

use crate::channels::pipeline::Pipeline;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// The pages' Content-Security-Policy: no inline scripts, connections only
/// to this server. The widget's and pages' own styles are inline.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// What the pages may ask the browser for: the chat's page the microphone
/// (its voice button; getUserMedia and Web Audio need nothing from the CSP),
/// the console nothing.
const PERMISSIONS: &str = "microphone=(self), camera=(), geolocation=(), payment=(), usb=()";
const CONSOLE_PERMISSIONS: &str = "microphone=(), camera=(), geolocation=(), payment=(), usb=()";

/// Security headers on every response; a CSP and a Permissions-Policy on
/// the HTML pages, and the operator console and the analysts' dashboard may
/// not be framed at all.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let console = path.starts_with("/operator") || path.starts_with("/analytics");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        let frames = if console { "'none'" } else { "'self'" };
        if let Ok(v) = HeaderValue::from_str(&format!("{CSP}; frame-ancestors {frames}")) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        let permissions = if console {
            CONSOLE_PERMISSIONS
        } else {
            PERMISSIONS
        };
        h.insert("permissions-policy", HeaderValue::from_static(permissions));
        if console {
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
    }
    resp
}

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
