//! The versioned REST API (`/api/v1`) and its OpenAPI document, health and
//! readiness, and the metrics endpoint. Admin endpoints need
//! `Authorization: Bearer <admin_token>`; reading a conversation needs the
//! admin token or a signed-in operator.

use super::{error, internal, AppState};
use crate::dialog::session::ChoiceOut;
use crate::dialog::{Action, Input, Turn};
use crate::nlu::classifier::InputError;
use crate::nlu::kb::Link;
use crate::operator::console::Operator;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use utoipa::{OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Otklik API",
        description = "Chat bot and voice robot engine for public services («Государство для людей»). Errors are `{\"error\": {\"code\", \"message\"}}` with a message in Russian."
    ),
    paths(healthz, readyz, classify, message, conversation, reload),
    components(schemas(
        ClassifyRequest,
        MessageRequest,
        Turn,
        ChoiceOut,
        Action,
        Link,
        ErrorBody,
        ErrorDetail
    ))
)]
pub struct ApiDoc;

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Machine-readable: bad_request, empty_text, too_large, unauthorized, starting…
    code: String,
    /// For people, in Russian.
    message: String,
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(ApiDoc::openapi()) }),
        )
        .route("/api/v1/classify", post(classify))
        .route("/api/v1/messages", post(message))
        .route("/api/v1/conversations/{session}", get(conversation))
        .route("/api/v1/admin/reload", post(reload))
}

fn bad_json(e: JsonRejection, shape: &str) -> Response {
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

/// The process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// The model, knowledge base and dialogs are loaded and the server is not shutting down.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"), (status = 503, description = "loading or stopping", body = ErrorBody)))]
async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.is_ready() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "Сервис запускается или останавливается.",
        )
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    text: String,
}

/// Top intents with calibrated scores and the decision (answer, confirm, alternatives, out_of_scope).
#[utoipa::path(post, path = "/api/v1/classify", request_body = ClassifyRequest,
    responses((status = 200, description = "the classification"), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, description = "empty text", body = ErrorBody)))]
async fn classify(
    State(st): State<Arc<AppState>>,
    body: Result<Json<ClassifyRequest>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return bad_json(e, "{\"text\": \"…\"}"),
    };
    let engine = match st.engine() {
        Ok(e) => e,
        Err(r) => return r,
    };
    // Classification is CPU-bound: keep it off the async workers.
    match tokio::task::spawn_blocking(move || engine.nlu.classifier.classify(&req.text)).await {
        Ok(Ok(c)) => Json(crate::classification_json(&c)).into_response(),
        Ok(Err(e)) => match e.downcast_ref::<InputError>() {
            Some(ie) => error(StatusCode::UNPROCESSABLE_ENTITY, ie.code(), &ie.to_string()),
            None => internal(format!("classify failed: {e:#}")),
        },
        Err(e) => internal(format!("classify task failed: {e}")),
    }
}

/// One input of a conversation; exactly one of `text`, `choice`, `dtmf`, `start`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// The client's id in your system (the conversation is `channel:user`).
    user: String,
    /// web (default), telegram or voice: whose style applies.
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    text: Option<String>,
    /// A choice id from the previous turn.
    #[serde(default)]
    choice: Option<String>,
    #[serde(default)]
    dtmf: Option<String>,
    /// Start a new conversation.
    #[serde(default)]
    start: bool,
    /// Set the client's segment profile first.
    #[serde(default)]
    segment: Option<String>,
}

/// Sends a message (or a choice, digits, a start) and returns the bot's turn.
#[utoipa::path(post, path = "/api/v1/messages", request_body = MessageRequest,
    responses((status = 200, body = Turn), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn message(
    State(st): State<Arc<AppState>>,
    body: Result<Json<MessageRequest>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return bad_json(e, "{\"user\": \"…\", \"text\": \"…\"}"),
    };
    let channel = req.channel.clone().unwrap_or_else(|| "web".into());
    if !crate::dialog::graph::CHANNELS.contains(&channel.as_str()) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_channel",
            "Канал: web, telegram или voice.",
        );
    }
    if req.user.is_empty() || req.user.len() > 64 || req.user.contains(':') {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_user",
            "user: от 1 до 64 знаков, без двоеточия.",
        );
    }
    let inputs = [
        req.text.is_some(),
        req.choice.is_some(),
        req.dtmf.is_some(),
        req.start,
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if inputs != 1 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_input",
            "Укажите ровно одно из полей: text, choice, dtmf или start.",
        );
    }
    if st.limiter.check_key(&req.user).is_err() {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Слишком много сообщений подряд. Подождите немного и отправьте снова.",
        );
    }
    let engine = match st.engine() {
        Ok(e) => e,
        Err(r) => return r,
    };
    if let Some(seg) = &req.segment {
        if !engine.graph.segments.contains_key(seg) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_segment",
                "Неизвестный профиль: universal, senior, family, disability или jobseeker.",
            );
        }
    }
    let input = if req.start {
        Input::Start
    } else if let Some(t) = req.text {
        Input::Text(t)
    } else if let Some(c) = req.choice {
        Input::Choice(c)
    } else {
        Input::Dtmf(req.dtmf.unwrap_or_default())
    };
    let t0 = Instant::now();
    let (user, seg, ch) = (req.user.clone(), req.segment.clone(), channel.clone());
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<Turn> {
        if let Some(seg) = seg {
            engine.handle(&ch, &user, Input::SetSegment(seg))?;
        }
        engine.handle(&ch, &user, input)
    })
    .await;
    match r {
        Ok(Ok(turn)) => {
            st.turn_done(&channel, &turn, t0);
            Json(turn).into_response()
        }
        Ok(Err(e)) => internal(format!("turn failed: {e:#}")),
        Err(e) => internal(format!("turn task failed: {e}")),
    }
}

fn is_admin(st: &AppState, headers: &HeaderMap) -> bool {
    let token = &st.cfg.admin_token;
    !token.is_empty()
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
}

/// Compares secrets without leaking where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A conversation: segment, where it is, its handoff and history (admin token or operator).
#[utoipa::path(get, path = "/api/v1/conversations/{session}", params(("session" = String, Path, description = "channel:user")),
    responses((status = 200, description = "the session"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn conversation(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    op: Result<Operator, Response>,
    Path(session): Path<String>,
) -> Response {
    if op.is_err() && !is_admin(&st, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Нужен токен администратора или вход оператора.",
        );
    }
    let engine = match st.engine() {
        Ok(e) => e,
        Err(r) => return r,
    };
    let Some((ch, user)) = session.split_once(':') else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_session",
            "Разговор указывается как канал:пользователь, например web:abc.",
        );
    };
    match engine.session(ch, user) {
        Ok(Some(s)) => Json(s).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "Такого разговора нет."),
        Err(e) => internal(e),
    }
}

/// Reloads the knowledge base and the dialog graph without a restart (admin).
#[utoipa::path(post, path = "/api/v1/admin/reload",
    responses((status = 200, description = "reloaded"), (status = 401, body = ErrorBody), (status = 422, description = "the new files have problems; the old ones stay in use", body = ErrorBody)))]
async fn reload(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !is_admin(&st, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Нужен токен администратора (заголовок Authorization: Bearer …).",
        );
    }
    if st.engine().is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "Сервис ещё запускается.",
        );
    }
    let _one = st.reload_lock.lock().await;
    let t0 = Instant::now();
    let st2 = st.clone();
    match tokio::task::spawn_blocking(move || st2.load()).await {
        Ok(Ok(e)) => {
            let (intents, nodes) = (e.nlu.kb.intents.len(), e.graph.nodes.len());
            st.set_engine(e);
            tracing::info!("reloaded: {intents} intents, {nodes} dialog nodes");
            Json(json!({"intents": intents, "nodes": nodes, "seconds": t0.elapsed().as_secs_f64()}))
                .into_response()
        }
        Ok(Err(e)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            &format!("Новые файлы не загружены, работают прежние: {e:#}"),
        ),
        Err(e) => internal(e),
    }
}
