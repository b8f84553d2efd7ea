//! JSON error responses shared by every HTTP-facing module: a machine code
//! and a message in Russian, the language of the people the bot serves.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A JSON error with a code and a message for people.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// A 500 whose cause goes to the log, not to the client.
pub fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("{e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Внутренняя ошибка. Попробуйте ещё раз позже.",
    )
}

/// 503 while the model is still loading.
pub fn starting() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "starting",
        "Сервис запускается. Попробуйте через несколько секунд.",
    )
}

/// A request body that is not the JSON expected (`shape` shows what is).
pub fn bad_json(e: JsonRejection, shape: &str) -> Response {
    match e {
        JsonRejection::BytesRejection(_) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "Сообщение слишком длинное. Сократите его, пожалуйста.",
        ),
        e => error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!(
                "Неверный запрос: ожидается JSON вида {shape} ({})",
                e.body_text()
            ),
        ),
    }
}

pub const RATE_LIMITED: &str =
    "Слишком много сообщений подряд. Подождите немного и отправьте снова.";

pub fn rate_limited() -> Response {
    error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", RATE_LIMITED)
}

/// The error body, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Machine-readable: bad_request, empty_text, too_large, unauthorized, starting…
    code: String,
    /// For people, in Russian.
    message: String,
}
