//! The application: opens storage once, builds the turn service, registers
//! the channels, the operators' desk and the admin API, merges their routes
//! into one axum server, and runs it until SIGTERM (the model loads after
//! the socket is bound; `/readyz` says when it is ready). It also runs the
//! retention sweep. Nothing below imports this module.

use crate::channels::api::{Api, Keys};
use crate::channels::pipeline::Pipeline;
use crate::channels::telegram::Telegram;
use crate::channels::voice::Voice;
use crate::channels::web::{Sockets, Web};
use crate::channels::{Channel, Registry};
use crate::config::Config;
use crate::http::api::Admin;
use crate::operator::console::Desk;
use crate::services::SystemClock;
use crate::store::Storage;
use axum::extract::DefaultBodyLimit;
use std::sync::Arc;
use std::time::Duration;

pub struct App {
    pub p: Arc<Pipeline>,
    pub desk: Arc<Desk>,
    pub admin: Arc<Admin>,
    channels: Vec<Arc<dyn Channel>>,
}

impl App {
    /// Everything but the model (loaded by `serve` in the background).
    pub fn new(cfg: Config) -> anyhow::Result<Self> {
        let store: Arc<dyn Storage> = cfg.storage.open(&cfg.data_dir)?;
        let keys = Keys::load(&cfg.api.keys_file)?;
        let locks = store.clone().conversation_locks();
        let p = Pipeline::new(cfg, store, locks, Arc::new(SystemClock));
        let sockets = Sockets::new(&p.cfg.http);
        let mut channels: Vec<Arc<dyn Channel>> = vec![
            Web::new(p.clone(), sockets.clone()),
            Api::new(p.clone(), keys),
        ];
        if !p.cfg.telegram.token.is_empty() {
            channels.push(Telegram::new(p.clone())?);
        }
        if !p.cfg.voice.audiosocket_addr.is_empty() {
            channels.push(Voice::new(p.clone())?);
        }
        let mut registry = Registry::default();
        for c in &channels {
            registry.add(c.clone());
        }
        p.set_registry(registry);
        let desk = Desk::new(p.clone(), sockets)?;
        let admin = Admin::new(p.clone(), desk.clone());
        Ok(Self {
            p,
            desk,
            admin,
            channels,
        })
    }

    pub fn router(&self) -> axum::Router {
        let mut r = crate::http::api::routes(self.admin.clone())
            .merge(crate::operator::console::routes(self.desk.clone()))
            .merge(crate::operator::review::routes(self.desk.clone()))
            .merge(crate::operator::analytics::routes(self.desk.clone()))
            .merge(crate::http::notify::routes(
                self.p.clone(),
                self.desk.clone(),
            ))
            .merge(crate::http::payments::routes(self.p.clone()));
        for c in &self.channels {
            r = r.merge(c.clone().routes());
        }
        r.layer(DefaultBodyLimit::max(self.p.cfg.http.max_body_bytes))
            .layer(axum::middleware::from_fn(crate::http::security_headers))
            .layer(axum::middleware::from_fn_with_state(
                self.p.clone(),
                crate::http::track,
            ))
    }
}

/// Removes delivery bookkeeping past its retention, now and then periodically.
async fn sweep(p: Arc<Pipeline>) {
    let keep = p.cfg.retention.retention();
    let every = Duration::from_secs(p.cfg.retention.sweep_minutes.max(1) as u64 * 60);
    let mut shutdown = p.shutdown.clone();
    loop {
        let (st, now) = (p.store.clone(), p.clock.now().as_second());
        let engine = p.engine();
        let silent_s = p.cfg.retention.silent_hours as i64 * 3600;
        let draft_days = p.cfg.applications.draft_days;
        let swept = tokio::task::spawn_blocking(move || {
            let n = st.sweep(now, &keep)?;
            // application drafts past `[applications] draft_days`
            crate::services::applications::sweep_drafts(st.as_ref(), now, draft_days)?;
            let silent = match engine {
                Some(e) => e.expire_silent(now, silent_s)?,
                None => 0,
            };
            Ok::<_, anyhow::Error>((n, silent))
        });
        match swept.await {
            Ok(Ok(n)) => tracing::debug!("retention sweep: {n:?}"),
            Ok(Err(e)) => tracing::error!("retention sweep: {e:#}"),
            Err(e) => tracing::error!("retention sweep: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The accept loop: every connection gets its peer address (`ConnectInfo`)
/// and must send a request's headers within `header_timeout`, so a client
/// that opens connections and sends half a request holds nothing for long.
/// On `shutdown`, connections finish what they are doing, then it returns.
/// Written here because `axum::serve` has no header-read timeout; it is
/// hyper's own HTTP/1 connection builder with a timer.
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use axum::extract::ConnectInfo;
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::error!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // A chat's echo and reply are two small writes back to back: with
        // Nagle's algorithm the second waited for the client's delayed ACK
        // (~40 ms) whenever the line was quiet.
        let _ = stream.set_nodelay(true);
        let svc =
            router
                .clone()
                .map_request(move |req: axum::http::Request<hyper::body::Incoming>| {
                    let mut req = req.map(axum::body::Body::new);
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
        let svc = TowerToHyperService::new(svc);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    drop(stop_rx);
    // Connections finish their requests (upgraded sockets close on the
    // pipeline's shutdown signal); wait for them, but not for ever.
    let _ = tokio::time::timeout(Duration::from_secs(10), stop_tx.closed()).await;
    Ok(())
}

/// Serves until SIGTERM or Ctrl-C. The model loads after the socket is bound;
/// on shutdown, turns in flight finish, sockets close, and storage is flushed.
pub async fn serve(app: App) -> anyhow::Result<()> {
    let p = app.p.clone();
    let addr = p.cfg.http.addr.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let st = p.clone();
    let loader = tokio::task::spawn_blocking(move || {
        let t = std::time::Instant::now();
        let e = st.load()?;
        let n = e.nlu.kb.intents.len();
        st.set_engine(e);
        tracing::info!(
            "ready: {n} intents loaded in {:.2} s",
            t.elapsed().as_secs_f64()
        );
        Ok::<_, anyhow::Error>(())
    });
    for c in &app.channels {
        c.clone().start().await?;
    }
    if p.cfg.speech.engine != "none" {
        tokio::spawn(p.clone().load_speech());
    }
    tokio::spawn(sweep(p.clone()));
    let relay = p.clone();
    tokio::spawn(async move {
        crate::channels::hub::relay(&relay.hub, relay.shutdown.clone()).await;
    });
    if p.cfg.notify.enabled {
        tokio::spawn(crate::channels::notify::run(p.clone()));
    }
    let st = p.clone();
    let server = serve_http(
        listener,
        app.router(),
        Duration::from_secs(p.cfg.http.header_read_timeout_s.max(1)),
        async move {
            shutdown_signal().await;
            st.stop();
        },
    );
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
    p.store.flush()?;
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
