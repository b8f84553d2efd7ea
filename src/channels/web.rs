//! The web chat: the demo page (`/`), the embeddable widget (`/widget.js`)
//! and its WebSocket (`/ws/chat?client=…`). Every message of a conversation
//! (the client's echo, the bot's turns, an operator's replies) is appended to
//! the client's outbox with a sequence number, so a reconnect or a page
//! reload replays exactly what was missed; client messages carry ids and a
//! resent id is not processed twice.

use super::hub::Hub;
use super::From;
use crate::dialog::{Input, Turn};
use crate::http::{error, AppState};
use crate::store::Store;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INDEX: &str = include_str!("../../web/index.html");
const WIDGET: &str = include_str!("../../web/widget.js");

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route(
            "/widget.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        // the widget is embedded on other sites
                        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                    ],
                    WIDGET,
                )
            }),
        )
        .route("/ws/chat", get(chat_socket))
}

/// The JSON a web client receives for a turn.
pub fn turn_message(t: &Turn, from: From, operator: Option<&str>) -> Value {
    json!({
        "type": "msg",
        "from": match from { From::Bot => "bot", From::Operator => "operator" },
        "operator": operator,
        "text": t.text,
        "choices": t.choices.iter().map(|c| json!({"id": c.id, "label": c.label})).collect::<Vec<_>>(),
        "links": t.links,
        "actions": t.actions,
    })
}

/// Appends to the outbox and pushes to the connected sockets.
pub fn push(store: &Store, hub: &Hub, session: &str, msg: Value) -> anyhow::Result<()> {
    let seq = store.outbox_append(session, &msg)?;
    let mut m = msg;
    m["seq"] = seq.into();
    hub.send(session, &m.to_string());
    Ok(())
}

#[derive(Deserialize)]
struct ChatQuery {
    client: String,
}

fn valid_client(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

async fn chat_socket(
    State(st): State<Arc<AppState>>,
    q: Result<Query<ChatQuery>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Нужен параметр client: идентификатор клиента.",
        );
    };
    if !valid_client(&q.client) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_client",
            "Идентификатор клиента: от 8 до 64 латинских букв, цифр, «-» или «_».",
        );
    }
    let Some(guard) = st.open_socket() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "Сейчас слишком много собеседников. Попробуйте через минуту.",
        );
    };
    let max = st.cfg.http.ws_max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let _guard = guard;
            run_chat(st, socket, format!("web:{}", q.client)).await;
        })
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMsg {
    Hello {
        #[serde(default)]
        last_seq: u64,
        #[serde(default)]
        segment: Option<String>,
    },
    Text {
        id: String,
        text: String,
    },
    Choice {
        id: String,
        choice: String,
        #[serde(default)]
        label: Option<String>,
    },
    Start {
        id: String,
    },
}

fn err_msg(code: &str, message: &str, id: Option<&str>) -> String {
    json!({"type": "error", "code": code, "message": message, "id": id}).to_string()
}

/// How long a send to one client may take before it is dropped as stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

async fn send(socket: &mut WebSocket, text: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

async fn run_chat(st: Arc<AppState>, mut socket: WebSocket, session: String) {
    let (conn, mut rx) = st.hub.connect(&session);
    let mut shutdown = st.shutdown.clone();
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(msg)) = incoming else { break };
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Close(_) => break,
                    Message::Binary(_) => {
                        if !send(&mut socket, err_msg("bad_message", "Ожидается текстовое сообщение в JSON.", None)).await { break }
                        continue;
                    }
                    _ => continue,
                };
                match serde_json::from_str::<ClientMsg>(&text) {
                    Ok(m) => {
                        let mut alive = true;
                        for reply in on_message(&st, &session, m).await {
                            if !send(&mut socket, reply).await { alive = false; break }
                        }
                        if !alive { break }
                    }
                    Err(e) => {
                        let m = format!("Неверное сообщение: {e}");
                        if !send(&mut socket, err_msg("bad_message", &m, None)).await { break }
                    }
                }
            }
            out = rx.recv() => {
                // None: this connection fell behind and was dropped from the hub;
                // the client reconnects and replays what it missed.
                let Some(out) = out else { break };
                if !send(&mut socket, out).await { break }
            }
            _ = shutdown.changed() => {
                let _ = socket.send(Message::Close(Some(CloseFrame { code: 1012, reason: Utf8Bytes::from_static("restart") }))).await;
                break;
            }
        }
    }
    st.hub.disconnect(&session, conn);
}

/// Handles one client message; returns what goes to this socket only
/// (errors, the welcome and the replay after a hello).
async fn on_message(st: &Arc<AppState>, session: &str, m: ClientMsg) -> Vec<String> {
    let engine = match st.engine() {
        Ok(e) => e,
        Err(_) => {
            return vec![err_msg(
                "starting",
                "Сервис запускается. Попробуйте через несколько секунд.",
                None,
            )]
        }
    };
    let user = session.trim_start_matches("web:").to_string();
    let (id, input, echo) = match m {
        ClientMsg::Hello { last_seq, segment } => {
            let e = engine.clone();
            let u = user.clone();
            let seg = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
                if let Some(seg) = segment.filter(|s| e.graph.segments.contains_key(s)) {
                    if e.session("web", &u)?.is_none_or(|s| s.segment != seg) {
                        e.handle("web", &u, Input::SetSegment(seg))?;
                    }
                }
                Ok(e.session("web", &u)?
                    .map(|s| s.segment)
                    .unwrap_or_else(|| "universal".into()))
            })
            .await;
            let segment = match seg {
                Ok(Ok(s)) => s,
                _ => "universal".into(),
            };
            let mut out = vec![json!({
                "type": "welcome",
                "segment": segment,
                "voice": false,
                "max_chars": st.cfg.dialog.max_text_chars,
            })
            .to_string()];
            let fresh = st
                .store
                .outbox_since(session, 0)
                .map(|v| v.is_empty())
                .unwrap_or(false);
            if fresh {
                // A new client: the conversation starts; the greeting comes with the replay below.
                run_turn(st, &engine, session, &user, Input::Start, false).await;
            }
            out.extend(
                st.store
                    .outbox_since(session, last_seq)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| m.to_string()),
            );
            return out;
        }
        ClientMsg::Text { id, text } => (id, Input::Text(text.clone()), text),
        ClientMsg::Choice { id, choice, label } => {
            let l = label.unwrap_or_else(|| choice.clone());
            (id, Input::Choice(choice), l)
        }
        ClientMsg::Start { id } => (id, Input::Start, String::new()),
    };
    if id.is_empty() || id.len() > 64 {
        return vec![err_msg(
            "bad_message",
            "У сообщения должен быть id (до 64 знаков).",
            None,
        )];
    }
    if let Input::Text(t) = &input {
        let max = st.cfg.dialog.max_text_chars;
        if t.chars().count() > max {
            return vec![err_msg(
                "too_long",
                &format!("Сообщение слишком длинное: не больше {max} знаков."),
                Some(&id),
            )];
        }
    }
    if st.limiter.check_key(&user).is_err() {
        return vec![err_msg(
            "rate_limited",
            "Слишком много сообщений подряд. Подождите немного и отправьте снова.",
            Some(&id),
        )];
    }
    match st.store.first_sight(session, &id) {
        Ok(true) => {}
        Ok(false) => return Vec::new(), // a resend: it was processed, the replay has its reply
        Err(e) => {
            tracing::error!("dedup: {e:#}");
            return vec![err_msg(
                "internal",
                "Внутренняя ошибка. Попробуйте ещё раз позже.",
                Some(&id),
            )];
        }
    }
    if !echo.is_empty() {
        let m = json!({"type": "msg", "from": "client", "id": id, "text": echo});
        if let Err(e) = push(&st.store, &st.hub, session, m) {
            tracing::error!("outbox: {e:#}");
        }
    }
    run_turn(st, &engine, session, &user, input, true).await;
    Vec::new()
}

/// Runs one turn on the engine and stores the bot's reply in the outbox,
/// pushing it to the connected sockets when `live`.
async fn run_turn(
    st: &Arc<AppState>,
    engine: &Arc<crate::dialog::Engine>,
    session: &str,
    user: &str,
    input: Input,
    live: bool,
) {
    let e = engine.clone();
    let u = user.to_string();
    let t0 = Instant::now();
    let r = tokio::task::spawn_blocking(move || e.handle("web", &u, input)).await;
    match r {
        Ok(Ok(turn)) => {
            st.turn_done("web", &turn, t0);
            if !turn.text.is_empty() {
                let m = turn_message(&turn, From::Bot, None);
                let r = if live {
                    push(&st.store, &st.hub, session, m)
                } else {
                    st.store.outbox_append(session, &m).map(|_| ())
                };
                if let Err(e) = r {
                    tracing::error!("outbox: {e:#}");
                }
            }
        }
        Ok(Err(e)) => {
            tracing::error!("turn failed for {session}: {e:#}");
            st.hub.send(
                session,
                &err_msg(
                    "internal",
                    "Не получилось ответить. Попробуйте ещё раз.",
                    None,
                ),
            );
        }
        Err(e) => tracing::error!("turn task failed: {e}"),
    }
}
