//! The HTTP server of `otklik serve` (axum, tokio): one process serves the web
//! chat (widget, demo page, WebSocket), the operator console, the versioned
//! JSON API with its OpenAPI document, health and readiness, and Prometheus
//! metrics. It listens at once and loads the model in the background
//! (`/readyz` says when it is ready). Errors are JSON with a code and a
//! message in Russian, the language of the people the bot serves.

pub mod api;
pub mod metrics;

use crate::channels::hub::Hub;
use crate::config::Config;
use crate::dialog::Engine;
use crate::nlu::encoder::Encoder;
use crate::operator::console::Console;
use crate::services::{Clock, SystemClock};
use crate::store::Store;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::{DefaultKeyedRateLimiter, Quota};
use serde_json::json;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

pub struct AppState {
    pub cfg: Config,
    /// The engine, once loaded (swapped on a reload).
    engine: RwLock<Option<Arc<Engine>>>,
    pub encoder: RwLock<Option<Arc<Encoder>>>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub hub: Hub,
    pub metrics: metrics::Metrics,
    pub console: Console,
    /// Messages per client and minute.
    pub limiter: DefaultKeyedRateLimiter<String>,
    /// Open WebSocket connections.
    pub sockets: AtomicUsize,
    /// Flips to true when the server is shutting down.
    pub shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
    /// Serialises reloads.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// The Telegram bot, when a token is configured.
    pub telegram: std::sync::OnceLock<Arc<crate::channels::telegram::Telegram>>,
}

/// A JSON error with a code and a message for people.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

pub fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("{e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Внутренняя ошибка. Попробуйте ещё раз позже.",
    )
}

impl AppState {
    pub fn new(cfg: Config) -> anyhow::Result<Arc<Self>> {
        let store = Store::open(&cfg.data_dir)?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        let per_minute = NonZeroU32::new(cfg.http.messages_per_minute.max(1)).unwrap();
        Ok(Arc::new(Self {
            console: Console::load(&cfg)?,
            limiter: governor::RateLimiter::keyed(Quota::per_minute(per_minute)),
            cfg,
            engine: RwLock::new(None),
            encoder: RwLock::new(None),
            store,
            clock: Arc::new(SystemClock),
            hub: Hub::default(),
            metrics: metrics::Metrics::default(),
            sockets: AtomicUsize::new(0),
            shutdown,
            shutdown_tx,
            reload_lock: tokio::sync::Mutex::new(()),
            telegram: std::sync::OnceLock::new(),
        }))
    }

    /// The engine, or a 503 while the model is still loading (a ready
    /// response for handlers to return as is, hence the large error type).
    #[allow(clippy::result_large_err)]
    pub fn engine(&self) -> Result<Arc<Engine>, Response> {
        self.engine.read().unwrap().clone().ok_or_else(|| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting",
                "Сервис запускается. Попробуйте через несколько секунд.",
            )
        })
    }

    pub fn set_engine(&self, e: Engine) {
        *self.engine.write().unwrap() = Some(Arc::new(e));
    }

    pub fn is_ready(&self) -> bool {
        self.engine.read().unwrap().is_some() && !*self.shutdown.borrow()
    }

    /// Loads (or reloads) the knowledge base and the dialog graph with the
    /// already loaded encoder (the first time, the encoder too).
    pub fn load(&self) -> anyhow::Result<Engine> {
        let loaded = self.encoder.read().unwrap().clone();
        let encoder = match loaded {
            Some(e) => e,
            None => {
                let e = crate::nlu::load_encoder(&self.cfg)?;
                *self.encoder.write().unwrap() = Some(e.clone());
                e
            }
        };
        let nlu = Arc::new(crate::nlu::Nlu::load(&self.cfg, encoder)?);
        let ids: Vec<String> = nlu.kb.intents.iter().map(|i| i.id.clone()).collect();
        let graph = crate::dialog::graph::Graph::load_dir(&self.cfg.dialog.dialogs_dir, &ids)?;
        let status = crate::services::status::provider(&self.cfg.status, &self.store)?;
        let e = Engine::with_parts(
            &self.cfg,
            nlu,
            graph,
            self.store.clone(),
            status,
            self.clock.clone(),
        )?;
        crate::nlu::release_freed_memory();
        Ok(e)
    }

    /// After a client's turn on any channel: metrics, and the operators'
    /// consoles told when the turn touched the queue (a handoff, or a
    /// message in a conversation a person holds).
    pub fn turn_done(
        &self,
        channel: &str,
        turn: &crate::dialog::Turn,
        started: std::time::Instant,
    ) {
        use crate::dialog::Action;
        self.metrics
            .turn(channel, turn, started.elapsed().as_secs_f64());
        if turn.actions.contains(&Action::Handoff) || turn.actions.contains(&Action::Silent) {
            self.hub.queue_changed();
        }
    }

    /// Counts a WebSocket in; `None` when the limit is reached.
    pub fn open_socket(self: &Arc<Self>) -> Option<SocketGuard> {
        let n = self.sockets.fetch_add(1, Ordering::SeqCst);
        if n >= self.cfg.http.max_connections {
            self.sockets.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(SocketGuard(self.clone()))
    }
}

/// Counts an open WebSocket until dropped.
pub struct SocketGuard(Arc<AppState>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn router(state: Arc<AppState>) -> axum::Router {
    let max = state.cfg.http.max_body_bytes;
    api::routes()
        .merge(crate::channels::web::routes())
        .merge(crate::operator::console::routes())
        .merge(crate::channels::telegram::routes())
        .layer(DefaultBodyLimit::max(max))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Serves until SIGTERM or Ctrl-C. The model loads after the socket is bound;
/// on shutdown, turns in flight finish, sockets close, and storage is flushed.
pub async fn serve(state: Arc<AppState>) -> anyhow::Result<()> {
    let addr = state.cfg.http.addr.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let st = state.clone();
    let loader = tokio::task::spawn_blocking(move || {
        let t = std::time::Instant::now();
        match st.load() {
            Ok(e) => {
                let n = e.nlu.kb.intents.len();
                st.set_engine(e);
                tracing::info!(
                    "ready: {n} intents loaded in {:.2} s",
                    t.elapsed().as_secs_f64()
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    });
    crate::channels::telegram::start(state.clone()).await?;
    let st = state.clone();
    let server = axum::serve(listener, router(state.clone())).with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = st.shutdown_tx.send(true);
    });
    let load_failed = tokio::spawn(async move {
        match loader.await {
            Ok(Ok(())) => std::future::pending::<anyhow::Error>().await,
            Ok(Err(e)) => e,
            Err(e) => anyhow::anyhow!("loading panicked: {e}"),
        }
    });
    tokio::select! {
        r = server => r?,
        e = load_failed => {
            let e = e.unwrap_or_else(|j| anyhow::anyhow!("{j}"));
            return Err(e.context("cannot load the model, knowledge base or dialogs"));
        }
    }
    state.store.flush()?;
    tracing::info!("stopped; storage flushed");
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
