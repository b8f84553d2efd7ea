//! Health and readiness, metrics, the classifier (open to all, limited per
//! client address), reading a conversation (admin token or a signed-in
//! operator), the admin reload, and the OpenAPI document with its security
//! schemes. The messages API itself is the REST channel (`channels::api`).

use crate::channels::pipeline::Pipeline;
use crate::dialog::session::ChoiceOut;
use crate::dialog::{Action, Turn};
use crate::errors::{bad_json, error, internal, rate_limited, starting, ErrorBody, ErrorDetail};
use crate::nlu::classifier::InputError;
use crate::nlu::kb::Link;
use crate::operator::console::Desk;
use crate::store::SessionKey;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Otklik API",
        description = "Chat bot and voice robot engine for public services («Государство для людей»). Errors are `{\"error\": {\"code\", \"message\"}}` with a message in Russian. `/api/v1/messages` needs an integration key (`otklik api-key NAME`); reading conversations and reloading need the admin token."
    ),
    paths(healthz, readyz, classify, crate::channels::api::message, conversation, reload,
        crate::http::notify::status_event, crate::http::notify::list),
    components(schemas(
        ClassifyRequest,
        crate::channels::api::MessageRequest,
        crate::http::notify::StatusEvent,
        Turn,
        ChoiceOut,
        Action,
        Link,
        ErrorBody,
        ErrorDetail
    )),
    modifiers(&Security)
)]
pub struct ApiDoc;

/// Declares the two bearer schemes: integration keys and the admin token.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what))
                    .build(),
            )
        };
        c.add_security_scheme(
            "api_key",
            bearer("An integration's key from `otklik api-key NAME`"),
        );
        c.add_security_scheme("admin_token", bearer("The admin token (`admin_token`)"));
    }
}

/// What these handlers share.
pub struct Admin {
    p: Arc<Pipeline>,
    desk: Arc<Desk>,
    /// Classifications per client address and minute.
    classify_limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl Admin {
    pub fn new(p: Arc<Pipeline>, desk: Arc<Desk>) -> Arc<Self> {
        let per_minute = NonZeroU32::new(p.cfg.http.classify_per_minute.max(1)).unwrap();
        Arc::new(Self {
            p,
            desk,
            classify_limiter: governor::RateLimiter::keyed(Quota::per_minute(per_minute)),
        })
    }
}

pub fn routes(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(ApiDoc::openapi()) }),
        )
        .route("/api/v1/classify", post(classify))
        .route("/api/v1/conversations/{session}", get(conversation))
        .route("/api/v1/admin/reload", post(reload))
        .with_state(admin)
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// The model, knowledge base and dialogs are loaded and the server is not shutting down.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"), (status = 503, description = "loading or stopping", body = ErrorBody)))]
async fn readyz(State(st): State<Arc<Admin>>) -> Response {
    if st.p.is_ready() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "Сервис запускается или останавливается.",
        )
    }
}

async fn metrics(
    State(st): State<Arc<Admin>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !crate::secrets::token_or_loopback(&headers, peer.ip(), &st.p.cfg.http.metrics_token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Метрики доступны по токену (http.metrics_token) или с этой машины.",
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.p.metrics.render(),
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
    State(st): State<Arc<Admin>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<ClassifyRequest>, JsonRejection>,
) -> Response {
    if st.classify_limiter.check_key(&peer.ip()).is_err() {
        return rate_limited();
    }
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return bad_json(e, "{\"text\": \"…\"}"),
    };
    let Some(engine) = st.p.engine() else {
        return starting();
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

fn is_admin(st: &Admin, headers: &HeaderMap) -> bool {
    let token = &st.p.cfg.admin_token;
    !token.is_empty() && crate::secrets::bearer_is(headers, token)
}

/// A conversation: segment, where it is, its handoff and history (admin token or an
/// operator; 403 for an account without the operator's role).
#[utoipa::path(get, path = "/api/v1/conversations/{session}", params(("session" = String, Path, description = "channel:user")),
    security(("admin_token" = [])),
    responses((status = 200, description = "the session"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn conversation(
    State(st): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(session): Path<String>,
) -> Response {
    if !is_admin(&st, &headers) {
        // An analyst's or a trainer's account reads no conversation (403).
        match st
            .desk
            .signed_in_as(&headers, crate::operator::console::Role::Operator)
        {
            Ok(_) => {}
            Err(r) if st.desk.signed_in(&headers).is_some() => return r,
            Err(_) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Нужен токен администратора или вход оператора.",
                )
            }
        }
    }
    let Some(engine) = st.p.engine() else {
        return starting();
    };
    let Some(key) = SessionKey::parse(&session) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_session",
            "Разговор указывается как канал:пользователь, например web:abc.",
        );
    };
    match engine.session(&key) {
        Ok(Some(s)) => Json(s).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "Такого разговора нет."),
        Err(e) => internal(e),
    }
}

/// Reloads the knowledge base and the dialog graph without a restart (admin).
#[utoipa::path(post, path = "/api/v1/admin/reload",
    security(("admin_token" = [])),
    responses((status = 200, description = "reloaded"), (status = 401, body = ErrorBody), (status = 422, description = "the new files have problems; the old ones stay in use", body = ErrorBody)))]
async fn reload(State(st): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if !is_admin(&st, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Нужен токен администратора (заголовок Authorization: Bearer …).",
        );
    }
    if st.p.engine().is_none() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "Сервис ещё запускается.",
        );
    }
    let _one = st.p.reload_lock.lock().await;
    let t0 = Instant::now();
    let p = st.p.clone();
    match tokio::task::spawn_blocking(move || p.load()).await {
        Ok(Ok(e)) => {
            let (intents, nodes) = (e.nlu.kb.intents.len(), e.graph.nodes.len());
            st.p.set_engine(e);
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
