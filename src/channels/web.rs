//! The web chat: the demo page (`/`), the embeddable widget (`/widget.js`)
//! and its WebSocket (`/ws/chat`). The server issues each client's identity
//! (128 random bits) in the welcome to its first hello; the widget keeps it
//! and names it in later hellos, never in the URL, and an identity the
//! server does not know gets a new one. Every message of a conversation
//! (the client's echo, the bot's turns, an operator's replies) is appended to
//! the client's outbox with a sequence number in the same commit as its
//! turn, so a reconnect or a page reload replays exactly what was missed,
//! even after a crash; a client message's id is committed with its turn, so
//! a resend is not processed twice and is never swallowed.
//!
//! The voice button: a `voice` message names the id and the sample rate,
//! and the next binary message is the audio (16-bit mono PCM). Its size and
//! length are checked before anything is decoded; it is counted in the rate
//! limits, recognised by the shared recogniser (a few at once server-wide,
//! one at a time per socket), and the words run as a typed message, echoed
//! back so the citizen sees what was understood.

use super::pipeline::{Pipeline, TurnError, TurnRequest};
pub use super::sockets::Sockets;
use super::sockets::{Full, Kind};
use super::{BoxFuture, Channel, Delivery, Origin, Sent};
use crate::dialog::{Input, Keep, Turn};
use crate::errors::error;
use crate::speech::audio::Pcm;
use crate::speech::Unheard;
use crate::store::SessionKey;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, Response};
use axum::routing::get;
use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

const INDEX: &str = include_str!("../../web/index.html");
const WIDGET: &str = include_str!("../../web/widget.js");

pub const NAME: &str = "web";

pub struct Web {
    p: Arc<Pipeline>,
    /// Open WebSocket connections (chat and operator consoles).
    sockets: Arc<Sockets>,
    /// Hellos (each replays the conversation) per conversation and per address.
    hellos: DefaultKeyedRateLimiter<String>,
    hellos_by_address: DefaultKeyedRateLimiter<IpAddr>,
    /// Voice messages being recognised, server-wide.
    recognitions: Arc<tokio::sync::Semaphore>,
}

/// Bytes a second of the voice button's audio: 16 kHz, 16-bit, mono.
const VOICE_BYTES_PER_SECOND: usize = 16_000 * 2;

/// Sample rates a voice message may declare (the widget sends 16 kHz; at a
/// higher rate the byte limit leaves fewer seconds).
const VOICE_RATES: std::ops::RangeInclusive<u32> = 8_000..=48_000;

impl Web {
    pub fn new(p: Arc<Pipeline>, sockets: Arc<Sockets>) -> Arc<Self> {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap());
        let h = &p.cfg.http;
        Arc::new(Self {
            hellos: governor::RateLimiter::keyed(per_minute(h.hellos_per_minute)),
            hellos_by_address: governor::RateLimiter::keyed(per_minute(
                h.hellos_per_address_per_minute,
            )),
            recognitions: Arc::new(tokio::sync::Semaphore::new(h.voice_max_concurrent.max(1))),
            p,
            sockets,
        })
    }

    /// Whether the chat takes voice messages (the welcome tells the widget).
    fn voice_on(&self) -> bool {
        self.p.cfg.speech.engine != "none" && self.p.cfg.http.voice_max_seconds > 0
    }

    /// The largest voice message, bytes (0 when voice is off).
    fn voice_max_bytes(&self) -> usize {
        if self.voice_on() {
            self.p.cfg.http.voice_max_seconds as usize * VOICE_BYTES_PER_SECOND
        } else {
            0
        }
    }
}

/// The JSON a web client receives for a turn (`operator`: whose message it is).
pub fn turn_message(t: &Turn, operator: Option<&str>) -> Value {
    json!({
        "type": "msg",
        "from": if operator.is_some() { "operator" } else { "bot" },
        "operator": operator,
        "text": t.text,
        "choices": t.choices.iter().map(|c| json!({"id": c.id, "label": c.label})).collect::<Vec<_>>(),
        "links": t.links,
        "links_at": t.links_at,
        "actions": t.actions,
        "image": t.image,
    })
}

impl Channel for Web {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The echo and the reply go to the outbox in the turn's commit.
    fn keep(&self, _key: &SessionKey, turn: &Turn, origin: &Origin) -> anyhow::Result<Keep> {
        let mut outbox: Vec<Value> = origin.echo.cloned().into_iter().collect();
        if !turn.text.is_empty() {
            outbox.push(turn_message(turn, origin.operator));
        }
        Ok(Keep {
            outbox,
            ..Default::default()
        })
    }

    /// Pushes what the commit put in the outbox to the connected sockets.
    fn deliver<'a>(
        &'a self,
        key: &'a SessionKey,
        _turn: &'a Turn,
        sent: &'a Sent,
    ) -> BoxFuture<'a, anyhow::Result<Delivery>> {
        Box::pin(async move {
            for m in &sent.committed.outbox {
                self.p.hub.outbox(key, m);
            }
            Ok(Delivery::Sent)
        })
    }

    fn routes(self: Arc<Self>) -> Router {
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
            .with_state(self)
    }
}

/// Whether a WebSocket's `Origin` is this server itself (`Host`), or one of
/// `allowed` (`*` allows any). A client without `Origin` is not a browser
/// page, which is what the check protects against, and passes.
pub fn origin_allowed(headers: &axum::http::HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let own = origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest == host);
    own || allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/') == origin)
}

/// A web chat identity the server issued: 128 random bits as 32 hex digits.
fn issued_format(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn chat_socket(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &web.p.cfg.http.allowed_origins) {
        return error(
            StatusCode::FORBIDDEN,
            "bad_origin",
            "Чат нельзя открыть с этого сайта: его адрес не указан в настройках сервера (http.allowed_origins).",
        );
    }
    let guard = match web.sockets.open(Some(peer.ip()), Kind::Chat) {
        Ok(g) => g,
        Err(Full::Server) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "Сейчас слишком много собеседников. Попробуйте через минуту.",
            )
        }
        Err(Full::Address) => return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "С Вашего адреса открыто слишком много окон чата. Закройте лишние и попробуйте снова.",
        ),
    };
    // The socket takes a voice message's audio (when voice is on) plus four
    // times the text limit, so that a message over its limit (text: the
    // text limit; binary: the audio's) is read whole and gets a clear error
    // and close code 1009 (`run_chat`) rather than a dropped line.
    let max = web
        .p
        .cfg
        .http
        .ws_max_message_bytes
        .saturating_mul(4)
        .saturating_add(web.voice_max_bytes());
    super::sockets::bounded(ws, max).on_upgrade(move |socket| async move {
        let _guard = guard;
        run_chat(web, socket, peer.ip()).await;
    })
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMsg {
    Hello {
        /// The identity the server issued before (none on a first visit).
        #[serde(default)]
        client: Option<String>,
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
    /// A voice message: its audio is the next (binary) message.
    Voice {
        id: String,
        /// Samples a second of the audio.
        rate: u32,
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

/// Pings a quiet socket every half idle timeout; a client that answers
/// nothing (not even the browser's automatic pong) for the whole timeout is
/// closed with 1001, so idle sockets do not hold places.
pub struct IdleWatch {
    every: tokio::time::Interval,
    timeout: Duration,
    last: tokio::time::Instant,
}

impl IdleWatch {
    pub fn new(timeout_s: u64) -> Self {
        let timeout = Duration::from_secs(timeout_s.max(1));
        let mut every = tokio::time::interval(timeout / 2);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            every,
            timeout,
            last: tokio::time::Instant::now(),
        }
    }

    pub async fn tick(&mut self) {
        self.every.tick().await;
    }

    /// Something came from the client.
    pub fn heard(&mut self) {
        self.last = tokio::time::Instant::now();
    }

    /// Pings, or closes the socket when the client has been silent too
    /// long; false when the socket is done.
    pub async fn ping(&mut self, socket: &mut WebSocket) -> bool {
        if self.last.elapsed() >= self.timeout {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 1001,
                    reason: Utf8Bytes::from_static("idle"),
                })))
                .await;
            return false;
        }
        matches!(
            tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Ping(Default::default())))
                .await,
            Ok(Ok(()))
        )
    }
}

/// The error a client gets for a message over `max` bytes (or, with voice
/// on, a voice message over `voice_s` seconds), then close code 1009
/// (message too big).
async fn close_too_big(socket: &mut WebSocket, max: usize, voice_s: Option<u32>) {
    let m = match voice_s {
        Some(s) => format!(
            "Сообщение слишком большое: текст не больше {} КБ, голосовое сообщение не больше {s} секунд.",
            max / 1024
        ),
        None => format!(
            "Сообщение слишком большое: не больше {} КБ. Сократите его, пожалуйста.",
            max / 1024
        ),
    };
    let _ = send(socket, err_msg("too_large", &m, None)).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1009,
            reason: Utf8Bytes::from_static("message too big"),
        })))
        .await;
}

/// Who is on a socket: the conversation and the address it comes from.
struct Client {
    key: SessionKey,
    ip: IpAddr,
}

/// The conversation a hello names: the identity the server issued, if it
/// has that conversation; otherwise a new identity (128 random bits).
/// Whether it is new is returned too (then the whole conversation replays).
fn identify(web: &Web, claimed: Option<&str>) -> (SessionKey, bool) {
    if let Some(id) = claimed.filter(|c| issued_format(c)) {
        let key = SessionKey::new(NAME, id);
        if web.p.store.session_raw(&key).ok().flatten().is_some() {
            return (key, false);
        }
    }
    let id = format!("{:032x}", rand::random::<u128>());
    (SessionKey::new(NAME, id), true)
}

async fn run_chat(web: Arc<Web>, mut socket: WebSocket, ip: IpAddr) {
    let max = web.p.cfg.http.ws_max_message_bytes;
    let voice_s = web.voice_on().then_some(web.p.cfg.http.voice_max_seconds);
    // Known after the first hello: who, and this socket's place in the hub.
    let mut client: Option<Client> = None;
    let mut live: Option<(u64, tokio::sync::mpsc::Receiver<String>)> = None;
    // A voice message's id and rate, until its audio (the next binary message).
    let mut voice_next: Option<(String, u32)> = None;
    let mut shutdown = web.p.shutdown.clone();
    let mut idle = IdleWatch::new(web.p.cfg.http.ws_idle_timeout_s);
    loop {
        let pushed = async {
            match live.as_mut() {
                Some((_, rx)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = idle.tick() => {
                if !idle.ping(&mut socket).await { break }
            }
            incoming = socket.recv() => {
                idle.heard();
                let Some(msg) = incoming else { break };
                let Ok(msg) = msg else {
                    // Over the frame limit (or a broken connection): say why.
                    close_too_big(&mut socket, max, voice_s).await;
                    break;
                };
                // Each message is handled to the end before the next is read:
                // one turn, and one recognition, at a time per socket.
                let replies = match msg {
                    Message::Text(t) if t.len() > max => {
                        close_too_big(&mut socket, max, voice_s).await;
                        break;
                    }
                    Message::Text(t) => {
                        // A voice message's audio comes right after it, or not at all.
                        let mut replies: Vec<String> = voice_next
                            .take()
                            .map(|(id, _)| err_msg("bad_message", VOICE_MISSING, Some(&id)))
                            .into_iter()
                            .collect();
                        replies.extend(match serde_json::from_str::<ClientMsg>(&t) {
                            Err(e) => {
                                vec![err_msg("bad_message", &format!("Неверное сообщение: {e}"), None)]
                            }
                            Ok(ClientMsg::Voice { id, rate }) if client.is_some() => {
                                voice_next = Some((id, rate));
                                Vec::new()
                            }
                            Ok(m) => match (&m, &client) {
                                (ClientMsg::Hello { client: claimed, last_seq, segment }, None) => {
                                    let (key, new) = identify(&web, claimed.as_deref());
                                    live = Some(web.p.hub.connect(&key.to_string()));
                                    let c = client.insert(Client { key, ip });
                                    let from = if new { 0 } else { *last_seq };
                                    hello(&web, c, from, segment.clone()).await
                                }
                                (ClientMsg::Hello { last_seq, segment, .. }, Some(c)) => {
                                    hello(&web, c, *last_seq, segment.clone()).await
                                }
                                (_, Some(c)) => on_message(&web, c, m).await,
                                (_, None) => vec![err_msg(
                                    "hello_first",
                                    "Сначала нужно поздороваться: сообщение hello.",
                                    None,
                                )],
                            },
                        });
                        replies
                    }
                    Message::Binary(b) if b.len() > web.voice_max_bytes().max(max) => {
                        close_too_big(&mut socket, max, voice_s).await;
                        break;
                    }
                    Message::Binary(audio) => match (voice_next.take(), &client) {
                        (Some((id, rate)), Some(c)) => voice(&web, c, &id, rate, &audio).await,
                        _ => vec![err_msg(
                            "bad_message",
                            "Двоичное сообщение принимается только сразу после сообщения voice.",
                            None,
                        )],
                    },
                    Message::Close(_) => break,
                    _ => continue,
                };
                let mut alive = true;
                for reply in replies {
                    if !send(&mut socket, reply).await { alive = false; break }
                }
                if !alive { break }
            }
            out = pushed => {
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
    if let (Some(c), Some((conn, _))) = (client, live) {
        web.p.hub.disconnect(&c.key.to_string(), conn);
    }
}

/// The welcome and the replay after a hello: the segment the page chose
/// (applied silently), the greeting of a new conversation (committed to the
/// outbox, not pushed: the replay carries it), then what the client missed.
async fn hello(
    web: &Arc<Web>,
    client: &Client,
    last_seq: u64,
    segment: Option<String>,
) -> Vec<String> {
    let key = &client.key;
    if web.hellos.check_key(&key.to_string()).is_err()
        || web.hellos_by_address.check_key(&client.ip).is_err()
    {
        return vec![err_msg(
            "rate_limited",
            "Слишком много подключений подряд. Подождите минуту и обновите страницу.",
            None,
        )];
    }
    let Some(engine) = web.p.engine() else {
        return vec![err_msg("starting", &TurnError::Starting.message(), None)];
    };
    let ch: Arc<dyn Channel> = web.clone();
    let current = engine.session(key).ok().flatten().map(|s| s.segment);
    if let Some(seg) = segment.filter(|s| engine.graph.segments.contains_key(s)) {
        if current.as_deref() != Some(seg.as_str()) {
            let mut r = TurnRequest::new(key.clone(), Input::SetSegment(seg));
            r.silent = true;
            r.live = false;
            if let Err(e) = web.p.turn(ch.clone(), r).await {
                tracing::warn!("web: segment for {key}: {e}");
            }
        }
    }
    let segment = engine
        .session(key)
        .ok()
        .flatten()
        .map(|s| s.segment)
        .unwrap_or_else(|| "universal".into());
    let mut out = vec![json!({
        "type": "welcome",
        "client": key.user,
        "segment": segment,
        "voice": web.voice_on(),
        "voice_max_seconds": web.p.cfg.http.voice_max_seconds,
        "max_chars": web.p.cfg.dialog.max_text_chars,
    })
    .to_string()];
    let fresh = web
        .p
        .store
        .outbox_since(key, 0)
        .map(|v| v.is_empty())
        .unwrap_or(false);
    if fresh {
        let mut r = TurnRequest::new(key.clone(), Input::Start);
        r.live = false;
        if let Err(e) = web.p.turn(ch, r).await {
            tracing::error!("web: greeting {key}: {e}");
        }
    }
    out.extend(
        web.p
            .store
            .outbox_since(key, last_seq)
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.to_string()),
    );
    out
}

/// Handles one client message; returns what goes to this socket only
/// (errors, the welcome and the replay after a hello).
async fn on_message(web: &Arc<Web>, client: &Client, m: ClientMsg) -> Vec<String> {
    let (id, input, echo) = match m {
        ClientMsg::Hello {
            last_seq, segment, ..
        } => return hello(web, client, last_seq, segment).await,
        ClientMsg::Text { id, text } => (id, Input::Text(text.clone()), text),
        ClientMsg::Choice { id, choice, label } => {
            let l = label.unwrap_or_else(|| choice.clone());
            (id, Input::Choice(choice), l)
        }
        ClientMsg::Start { id } => (id, Input::Start, String::new()),
        // Taken by `run_chat` (its audio follows); here only before the hello.
        ClientMsg::Voice { .. } => return Vec::new(),
    };
    if !valid_id(&id) {
        return vec![bad_id()];
    }
    if web.p.engine().is_none() {
        return vec![err_msg("starting", &TurnError::Starting.message(), None)];
    }
    let echo = (!echo.is_empty())
        .then(|| json!({"type": "msg", "from": "client", "id": id, "text": echo}));
    let mut req = TurnRequest::new(client.key.clone(), input);
    req.address = Some(client.ip);
    req.marker = Some(marker(&client.key, &id));
    req.echo = echo;
    run_turn(web, req, &id).await
}

/// A client message's id: its own, up to 64 characters.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64
}

fn bad_id() -> String {
    err_msg(
        "bad_message",
        "У сообщения должен быть id (до 64 знаков).",
        None,
    )
}

/// What marks a client message as processed (committed with its turn).
fn marker(key: &SessionKey, id: &str) -> String {
    format!("{key}:msg:{id}")
}

/// Runs a client message's turn; the echo and the replies reach the
/// client through the hub, so only an error is returned for this socket.
async fn run_turn(web: &Arc<Web>, req: TurnRequest, id: &str) -> Vec<String> {
    let key = req.key.clone();
    match web.p.turn(web.clone(), req).await {
        Ok(_) => Vec::new(),
        // A resend: it was processed, and its reply is in the replay.
        Err(TurnError::Duplicate) => Vec::new(),
        Err(e) => {
            if let TurnError::Failed(x) = &e {
                tracing::error!("turn failed for {key}: {x:#}");
            }
            vec![err_msg(e.code(), &e.message(), Some(id))]
        }
    }
}

/// A voice message: `audio` is 16-bit little-endian mono samples at `rate`,
/// no larger than `voice_max_bytes`. Its length is checked before anything
/// is decoded, it counts in the rate limits before it is recognised, and at
/// most `http.voice_max_concurrent` are recognised at once server-wide (one
/// more is told the service is busy, not queued). The words then run as a
/// typed message, echoed with `"voice": true`.
async fn voice(web: &Arc<Web>, client: &Client, id: &str, rate: u32, audio: &[u8]) -> Vec<String> {
    if !valid_id(id) {
        return vec![bad_id()];
    }
    let fail = |code: &str, m: &str| vec![err_msg(code, m, Some(id))];
    if !web.voice_on() {
        return fail("voice_unavailable", VOICE_OFF);
    }
    let max_s = web.p.cfg.http.voice_max_seconds;
    if !VOICE_RATES.contains(&rate) || !audio.len().is_multiple_of(2) {
        return fail(
            "bad_message",
            "Голосовое сообщение должно быть 16-битным звуком с частотой от 8000 до 48000 Гц.",
        );
    }
    // The bytes were checked against voice_max_bytes in `run_chat`.
    if (audio.len() / 2) as u64 > u64::from(max_s) * u64::from(rate) {
        return fail(
            "too_large",
            &format!("Голосовое сообщение слишком длинное: не больше {max_s} секунд. Запишите его короче или напишите сообщение."),
        );
    }
    if web.p.engine().is_none() {
        return vec![err_msg(
            "starting",
            &TurnError::Starting.message(),
            Some(id),
        )];
    }
    let key = &client.key;
    let marker = marker(key, id);
    if web.p.store.marked(&marker).unwrap_or(false) {
        return Vec::new(); // a resend: its reply is in the replay
    }
    if let Err(e) = web.p.admit(key, Some(client.ip)) {
        return fail(e.code(), &e.message());
    }
    let Ok(permit) = web.recognitions.clone().try_acquire_owned() else {
        return fail(
            "busy",
            "Сейчас много голосовых сообщений. Попробуйте через минуту или напишите сообщение.",
        );
    };
    let pcm = Pcm {
        rate,
        samples: audio
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
    };
    let heard = web.p.speech.recognise(pcm, web.p.expected(key)).await;
    drop(permit);
    let text = match heard {
        Ok(Some(t)) if !t.trim().is_empty() => t.trim().to_string(),
        Ok(_) => {
            return fail(
                "not_heard",
                "Не удалось разобрать слова. Повторите, пожалуйста, или напишите сообщение.",
            )
        }
        Err(Unheard::NoRecogniser) => return fail("voice_unavailable", VOICE_OFF),
        Err(Unheard::Failed(e)) => {
            tracing::error!("web: recognition for {key}: {e:#}");
            return fail(
                "internal",
                "Не получилось распознать речь. Попробуйте ещё раз или напишите сообщение.",
            );
        }
    };
    let mut req = TurnRequest::new(key.clone(), Input::Text(text.clone()));
    req.address = Some(client.ip);
    req.admitted = true;
    req.marker = Some(marker);
    req.echo =
        Some(json!({"type": "msg", "from": "client", "id": id, "text": text, "voice": true}));
    run_turn(web, req, id).await
}

const VOICE_MISSING: &str = "Голосовое сообщение не пришло. Запишите его ещё раз.";
const VOICE_OFF: &str = "Голосовой ввод сейчас недоступен. Напишите, пожалуйста, сообщение.";
