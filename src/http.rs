//! The HTTP server of `otklik serve` (axum): health and readiness, and the
//! versioned JSON API (`/api/v1/classify`). Errors are JSON with a code and a
//! message in Russian, the language of the people the bot serves.

use crate::nlu::classifier::InputError;
use crate::nlu::Nlu;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub struct AppState {
    pub nlu: Nlu,
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/api/v1/classify", post(classify))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyRequest {
    text: String,
}

async fn classify(
    State(state): State<Arc<AppState>>,
    body: Result<Json<ClassifyRequest>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(r)) => r,
        Err(JsonRejection::BytesRejection(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "Сообщение слишком длинное. Сократите его, пожалуйста.",
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!(
                    "Неверный запрос: ожидается JSON вида {{\"text\": \"…\"}} ({})",
                    e.body_text()
                ),
            );
        }
    };
    let st = state.clone();
    // Classification is CPU-bound: keep it off the async workers.
    match tokio::task::spawn_blocking(move || st.nlu.classifier.classify(&req.text)).await {
        Ok(Ok(c)) => Json(crate::classification_json(&c)).into_response(),
        Ok(Err(e)) => match e.downcast_ref::<InputError>() {
            Some(ie) => error(StatusCode::UNPROCESSABLE_ENTITY, ie.code(), &ie.to_string()),
            None => {
                tracing::error!("classify failed: {e:#}");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Внутренняя ошибка. Попробуйте ещё раз позже.",
                )
            }
        },
        Err(e) => {
            tracing::error!("classify task failed: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Внутренняя ошибка. Попробуйте ещё раз позже.",
            )
        }
    }
}

/// Serves until SIGTERM or Ctrl-C; requests in flight are finished first.
pub async fn serve(state: Arc<AppState>, addr: &str, max_body_bytes: usize) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router(state, max_body_bytes))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
