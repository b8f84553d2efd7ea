//! The voice robot: Asterisk hands a call to Otklik over AudioSocket, and the
//! call is a conversation `voice:<uuid>` served by the same engine and turn
//! service as every chat. This module owns the channel (`Voice`: the
//! `Channel` impl, the AudioSocket listener, the live calls and their
//! outcomes, `GET /api/v1/voice/calls/{uuid}` for the dialplan's CURL());
//! `call` runs one call; `audiosocket` is the wire protocol; `dtmf`, `tts` and
//! `say` are what a call hears and says (speech recognition is `speech`).
//!
//! AudioSocket-only mode: at a handoff or at the end the robot says its last
//! words, sends a hangup message and closes; the dialplan goes on, reads the
//! outcome and runs `Queue()` or `Hangup()` (Asterisk 20.14, 21.9, 22.4 and
//! later; see `asterisk/README.md`). ARI mode (`ari`) adds call control for
//! any Asterisk 20+: calls come to Stasis, their audio still reaches the
//! same listener, and the keys and the handoff go through ARI.

pub mod ari;
pub mod audiosocket;
pub mod call;
pub mod dtmf;
pub mod say;
pub mod tts;

use super::pipeline::Pipeline;
use super::{BoxFuture, Channel, Delivery, Origin, Sent};
use crate::config::VoiceConfig;
use crate::dialog::{Keep, Turn};
use crate::errors::error;
use crate::store::SessionKey;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const NAME: &str = "voice";

/// How a call ended, for the dialplan that continues after it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Outcome {
    /// "handoff" (run Queue()), "end" (the conversation is over) or
    /// "hangup" (the caller hung up).
    pub outcome: String,
    /// The Asterisk queue for a handoff.
    pub queue: Option<String>,
    /// The last intent the robot understood.
    pub intent: Option<String>,
}

pub struct Voice {
    pub p: Arc<Pipeline>,
    pub cfg: VoiceConfig,
    pub speech: Arc<tts::Cache>,
    /// Live calls by UUID: turns the client did not ask for, and keys
    /// pressed that ARI reports, reach them here.
    live: Mutex<HashMap<String, Live>>,
    /// Told of every finished call (ARI mode acts on the outcome).
    finished: Mutex<Option<mpsc::UnboundedSender<(String, Outcome)>>>,
    /// Finished calls' outcomes, with when they finished.
    outcomes: Mutex<HashMap<String, (Outcome, Instant)>>,
    /// Call tasks running (a hung-up call leaves none behind).
    running: AtomicUsize,
}

/// How a live call is reached from outside its task.
pub(crate) struct Live {
    pub turns: mpsc::Sender<Turn>,
    pub keys: mpsc::Sender<char>,
}

/// Counts a call task while it runs.
pub struct Running(Arc<Voice>);

impl Drop for Running {
    fn drop(&mut self) {
        let n = self.0.running.fetch_sub(1, Ordering::SeqCst) - 1;
        self.0.p.metrics.voice_calls(n);
    }
}

impl Voice {
    pub fn new(p: Arc<Pipeline>) -> anyhow::Result<Arc<Self>> {
        let cfg = p.cfg.voice.clone();
        let engine = tts::engine(&cfg.tts)?;
        Ok(Arc::new(Self {
            speech: Arc::new(
                tts::Cache::new(engine, cfg.tts.cache_mb)
                    .on_disk(p.cfg.in_data_dir(&p.cfg.kb.cache_dir).join("speech")),
            ),
            cfg,
            p,
            live: Mutex::new(HashMap::new()),
            finished: Mutex::new(None),
            outcomes: Mutex::new(HashMap::new()),
            running: AtomicUsize::new(0),
        }))
    }

    /// Call tasks running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Takes a place for a call, if one is free.
    fn admit(self: &Arc<Self>) -> Option<Running> {
        let n = self.running.fetch_add(1, Ordering::SeqCst);
        self.p.metrics.voice_calls(n + 1);
        let r = Running(self.clone());
        (n < self.cfg.max_calls.max(1)).then_some(r)
    }

    pub(crate) fn register(&self, uuid: &str, live: Live) {
        self.live.lock().unwrap().insert(uuid.to_string(), live);
    }

    /// A key the caller pressed, reported by ARI; false when no such call.
    pub fn press(&self, uuid: &str, key: char) -> bool {
        let tx = self.live.lock().unwrap().get(uuid).map(|l| l.keys.clone());
        tx.is_some_and(|tx| tx.try_send(key).is_ok())
    }

    /// The finished calls from now on, with their outcomes (one listener).
    pub(crate) fn on_finish(&self) -> mpsc::UnboundedReceiver<(String, Outcome)> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.finished.lock().unwrap() = Some(tx);
        rx
    }

    /// The call is over: it leaves its outcome and nothing else.
    pub(crate) fn finish(&self, uuid: &str, outcome: Outcome) {
        self.live.lock().unwrap().remove(uuid);
        if let Some(tx) = &*self.finished.lock().unwrap() {
            let _ = tx.send((uuid.to_string(), outcome.clone()));
        }
        let ttl = Duration::from_secs(self.cfg.outcome_ttl_s.max(1));
        let mut o = self.outcomes.lock().unwrap();
        o.retain(|_, (_, at)| at.elapsed() < ttl);
        o.insert(uuid.to_string(), (outcome, Instant::now()));
    }

    pub fn outcome(&self, uuid: &str) -> Option<Outcome> {
        let ttl = Duration::from_secs(self.cfg.outcome_ttl_s.max(1));
        let o = self.outcomes.lock().unwrap();
        o.get(uuid)
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(x, _)| x.clone())
    }

    /// Listens for Asterisk's AudioSocket connections until shutdown.
    pub async fn listen(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let mut shutdown = self.p.shutdown.clone();
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!("voice accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let _ = stream.set_nodelay(true);
            let Some(place) = self.admit() else {
                tracing::warn!(
                    "voice: {peer} refused, {} calls already",
                    self.cfg.max_calls
                );
                tokio::spawn(call::refuse(stream));
                continue;
            };
            let v = self.clone();
            tokio::spawn(async move {
                if let Err(e) = call::run(v, stream, place).await {
                    tracing::warn!("voice call from {peer}: {e:#}");
                }
            });
        }
    }

    /// Synthesises the graph's fixed prompts, so a call hears them at once.
    pub async fn warm_up(self: Arc<Self>) {
        // Wait for the engine (it loads in the background).
        let engine = loop {
            if let Some(e) = self.p.engine() {
                break e;
            }
            if *self.p.shutdown.borrow() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let texts = engine.fixed_texts(NAME);
        let speech = self.speech.clone();
        let n = tokio::task::spawn_blocking(move || {
            let mut n = 0;
            for t in texts {
                let turn = Turn {
                    text: t,
                    ..Turn::default()
                };
                for s in say::sentences(&turn) {
                    match speech.say_fixed(&s, 8000) {
                        Ok(_) => n += 1,
                        Err(e) => {
                            tracing::warn!("voice: cannot synthesise prompts: {e:#}");
                            return n;
                        }
                    }
                }
            }
            n
        })
        .await
        .unwrap_or(0);
        tracing::info!("voice: {n} prompt sentences synthesised");
        self.p.metrics.prompts_ready();
    }
}

impl Channel for Voice {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Nothing: a call's turns are spoken while it lasts; a call that drops
    /// takes them with it (its history keeps them).
    fn keep(&self, _key: &SessionKey, _turn: &Turn, _origin: &Origin) -> anyhow::Result<Keep> {
        Ok(Keep::default())
    }

    fn deliver<'a>(
        &'a self,
        key: &'a SessionKey,
        turn: &'a Turn,
        _sent: &'a Sent,
    ) -> BoxFuture<'a, anyhow::Result<Delivery>> {
        Box::pin(async move {
            let tx = self
                .live
                .lock()
                .unwrap()
                .get(&key.user)
                .map(|l| l.turns.clone());
            if let Some(tx) = tx {
                let _ = tx.try_send(turn.clone());
            }
            Ok(Delivery::Sent)
        })
    }

    fn start(self: Arc<Self>) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            let addr = self.cfg.audiosocket_addr.clone();
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|e| anyhow::anyhow!("voice: cannot listen on {addr}: {e}"))?;
            let listener_addr = listener.local_addr()?;
            tracing::info!("voice: AudioSocket on {listener_addr}");
            tokio::spawn(self.clone().listen(listener));
            if !self.cfg.ari_url.is_empty() {
                let ari = ari::Ari::new(self.clone(), listener_addr)?;
                tokio::spawn(ari.run());
            }
            tokio::spawn(self.warm_up());
            Ok(())
        })
    }

    fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/api/v1/voice/calls/{uuid}", get(outcome))
            .with_state(self)
    }
}

#[derive(serde::Deserialize)]
struct OutcomeQuery {
    /// One field as plain text (`outcome`, `queue` or `intent`), for a
    /// dialplan without JSON_DECODE().
    field: Option<String>,
}

/// `GET /api/v1/voice/calls/{uuid}`: how the call ended, for the dialplan.
async fn outcome(
    State(v): State<Arc<Voice>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(uuid): Path<String>,
    Query(q): Query<OutcomeQuery>,
) -> Response {
    if !crate::secrets::token_or_loopback(&headers, peer.ip(), &v.cfg.outcome_token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Итог звонка доступен по токену (voice.outcome_token) или с этой машины.",
        );
    }
    let Some(id) = audiosocket::parse_uuid(&uuid) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_uuid",
            "Идентификатор звонка: UUID вида 2f3a1c9e-0b4d-4e6f-8a1b-9c0d1e2f3a4b.",
        );
    };
    match v.outcome(&audiosocket::uuid_string(&id)) {
        Some(o) => match q.field.as_deref() {
            None => Json(o).into_response(),
            Some("outcome") => o.outcome.into_response(),
            Some("queue") => o.queue.unwrap_or_default().into_response(),
            Some("intent") => o.intent.unwrap_or_default().into_response(),
            Some(_) => error(
                StatusCode::BAD_REQUEST,
                "bad_field",
                "Поле: outcome, queue или intent.",
            ),
        },
        None => error(
            StatusCode::NOT_FOUND,
            "no_call",
            "Такого звонка нет, он ещё идёт, или его итог уже удалён.",
        ),
    }
}
