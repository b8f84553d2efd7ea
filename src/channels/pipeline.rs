//! The turn service: the one way a client's input reaches the engine, on
//! every channel. It checks readiness, the text's length, the
//! conversation's rate limit and whether the input was processed before (its
//! marker), runs the engine off the async runtime (a bounded number of turns
//! at once) with the channel's
//! delivery records committed in the turn's transaction, records metrics,
//! tells the operators' consoles when the queue changed, and hands the
//! committed turns to the channel to deliver. It also holds what every
//! channel shares: the settings, the loaded engine, the speech recogniser,
//! storage, the live hub, metrics, the channel registry and the shutdown
//! signal.

use super::hub::Hub;
use super::{Channel, Delivery, Origin, Registry, Sent};
use crate::config::Config;
use crate::dialog::{Action, Engine, Input, Keep, Turn, TurnOpts};
use crate::metrics::Metrics;
use crate::nlu::encoder::Encoder;
use crate::services::Clock;
use crate::store::{Committed, ConversationLock, SessionKey, Storage};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;
use tokio::sync::watch;

pub struct Pipeline {
    pub cfg: Config,
    /// The engine, once loaded (swapped on a reload).
    engine: RwLock<Option<Arc<Engine>>>,
    encoder: RwLock<Option<Arc<Encoder>>>,
    pub store: Arc<dyn Storage>,
    pub locks: Arc<dyn ConversationLock>,
    pub clock: Arc<dyn Clock>,
    pub hub: Hub,
    pub metrics: Metrics,
    /// The speech recogniser, once loaded (voice calls, Telegram voice
    /// messages, the web chat's voice button).
    pub speech: Arc<crate::speech::Hearing>,
    /// Messages per conversation and minute, on every channel.
    limiter: DefaultKeyedRateLimiter<String>,
    /// Messages per client address and minute (web chat).
    by_address: DefaultKeyedRateLimiter<std::net::IpAddr>,
    /// Turns running on blocking threads at once (`turn_threads`); the
    /// others wait as cheap async tasks.
    running: Arc<tokio::sync::Semaphore>,
    registry: OnceLock<Registry>,
    /// Flips to true when the server is shutting down.
    pub shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
    /// Serialises reloads.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// Test hook (`OTKLIK_FAULT`): `before_commit` or `after_commit` aborts
    /// the process at that point of the turn of a client's message, to test
    /// crash recovery.
    fault: Option<String>,
}

/// Why a client's input was not turned into a reply.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("the model is still loading")]
    Starting,
    #[error("the text is longer than {0} characters")]
    TooLong(usize),
    #[error("too many messages")]
    RateLimited,
    /// The input's marker was committed before: its reply was kept with it.
    #[error("the input was processed before")]
    Duplicate,
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl TurnError {
    /// The message for the client, in Russian.
    pub fn message(&self) -> String {
        match self {
            TurnError::Starting => "Сервис запускается. Попробуйте через несколько секунд.".into(),
            TurnError::TooLong(max) => {
                format!("Сообщение слишком длинное: не больше {max} знаков.")
            }
            TurnError::RateLimited => crate::errors::RATE_LIMITED.into(),
            TurnError::Duplicate => String::new(),
            TurnError::Failed(e) if crate::store::Unavailable::is(e) => {
                "Сервис временно недоступен. Попробуйте ещё раз через минуту.".into()
            }
            TurnError::Failed(_) => "Не получилось ответить. Попробуйте ещё раз.".into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            TurnError::Starting => "starting",
            TurnError::TooLong(_) => "too_long",
            TurnError::RateLimited => "rate_limited",
            TurnError::Duplicate => "duplicate",
            TurnError::Failed(e) if crate::store::Unavailable::is(e) => "unavailable",
            TurnError::Failed(_) => "internal",
        }
    }
}

/// One input of a client on a channel.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub key: SessionKey,
    /// Usually one; a Telegram deep link makes several turns of one update.
    pub inputs: Vec<Input>,
    /// Identifies the input so it is processed exactly once (committed with
    /// its last turn; earlier turns get `marker:0`, `marker:1`…).
    pub marker: Option<String>,
    /// What the channel shows back of the client's message (the web echo).
    pub echo: Option<serde_json::Value>,
    /// Deliver the turns live (false: only commit them, the client replays).
    pub live: bool,
    /// A setting the channel applies (a profile chosen on the page), not a
    /// message: the turn is committed, the channel keeps nothing to deliver.
    pub silent: bool,
    /// Whose style applies, when not the channel's (web, telegram, voice).
    pub style: Option<String>,
    /// The client's address, limited beside the conversation (none where the
    /// channel's server speaks for the clients: Telegram, integrations).
    pub address: Option<std::net::IpAddr>,
    /// The rate limit was taken for this input already (`Pipeline::admit`,
    /// before costly work such as recognising a voice message).
    pub admitted: bool,
}

impl TurnRequest {
    pub fn new(key: SessionKey, input: Input) -> Self {
        Self::several(key, vec![input])
    }

    /// Several turns of one input (a deep link, a segment set first).
    pub fn several(key: SessionKey, inputs: Vec<Input>) -> Self {
        Self {
            key,
            inputs,
            marker: None,
            echo: None,
            live: true,
            silent: false,
            style: None,
            address: None,
            admitted: false,
        }
    }
}

impl Pipeline {
    pub fn new(
        cfg: Config,
        store: Arc<dyn Storage>,
        locks: Arc<dyn ConversationLock>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let per_minute = NonZeroU32::new(cfg.http.messages_per_minute.max(1)).unwrap();
        let per_address = NonZeroU32::new(cfg.http.messages_per_address_per_minute.max(1)).unwrap();
        let hub = Hub::shared(store.clone());
        Arc::new(Self {
            limiter: governor::RateLimiter::keyed(Quota::per_minute(per_minute)),
            by_address: governor::RateLimiter::keyed(Quota::per_minute(per_address)),
            cfg,
            engine: RwLock::new(None),
            encoder: RwLock::new(None),
            store,
            locks,
            clock,
            hub,
            metrics: Metrics::default(),
            running: Arc::new(tokio::sync::Semaphore::new(turn_threads())),
            speech: Arc::default(),
            registry: OnceLock::new(),
            shutdown,
            shutdown_tx,
            reload_lock: tokio::sync::Mutex::new(()),
            fault: std::env::var("OTKLIK_FAULT").ok().filter(|f| !f.is_empty()),
        })
    }

    /// The engine, once loaded.
    pub fn engine(&self) -> Option<Arc<Engine>> {
        self.engine.read().unwrap().clone()
    }

    pub fn set_engine(&self, e: Engine) {
        *self.engine.write().unwrap() = Some(Arc::new(e));
    }

    pub fn is_ready(&self) -> bool {
        self.engine().is_some() && !*self.shutdown.borrow()
    }

    /// Loads the speech recogniser the settings name, off the async runtime
    /// (until it is loaded, speech is not understood and the keypad serves).
    pub async fn load_speech(self: Arc<Self>) {
        let cfg = self.cfg.speech.clone();
        match tokio::task::spawn_blocking(move || crate::speech::engine(&cfg)).await {
            Ok(Ok(a)) => {
                tracing::info!("speech recognition by {}", a.name());
                self.speech.set(a);
                self.metrics.speech_ready();
            }
            Ok(Err(e)) => tracing::error!("no speech recognition: {e:#}"),
            Err(e) => tracing::error!("loading speech recognition: {e}"),
        }
    }

    /// What the client of `key` is likely to say next (the options their
    /// conversation offers now), to bias speech recognition.
    pub fn expected(&self, key: &SessionKey) -> crate::speech::Hints {
        let choices = self
            .engine()
            .and_then(|e| e.session(key).ok().flatten())
            .map(|s| s.choices)
            .unwrap_or_default();
        super::expected(&choices)
    }

    /// Tells everything waiting on `shutdown` that the server stops.
    pub fn stop(&self) {
        let _ = self.shutdown_tx.send(true);
    }

    /// Sets the channels, once, at start-up.
    pub fn set_registry(&self, r: Registry) {
        if self.registry.set(r).is_err() {
            tracing::error!("the channel registry was set twice");
        }
    }

    pub fn channel(&self, name: &str) -> Option<Arc<dyn Channel>> {
        self.registry.get()?.get(name)
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
        )?
        .with_locks(self.locks.clone());
        crate::nlu::release_freed_memory();
        Ok(e)
    }

    /// Takes one message of the conversation's (and the address's) rate
    /// limit. `turn` does it; a channel calls it first when an input costs
    /// work before it is a turn (a voice message to recognise), and then
    /// sets `TurnRequest::admitted`.
    pub fn admit(
        &self,
        key: &SessionKey,
        address: Option<std::net::IpAddr>,
    ) -> Result<(), TurnError> {
        if self.limiter.check_key(&key.to_string()).is_err()
            || address.is_some_and(|a| self.by_address.check_key(&a).is_err())
        {
            return Err(TurnError::RateLimited);
        }
        Ok(())
    }

    /// Runs a client's input through the engine and delivers the replies.
    /// Returns the turns in order (the REST API answers with the last).
    pub async fn turn(
        &self,
        ch: Arc<dyn Channel>,
        req: TurnRequest,
    ) -> Result<Vec<(Turn, Sent)>, TurnError> {
        let engine = self.engine().ok_or(TurnError::Starting)?;
        let max = self.cfg.dialog.max_text_chars;
        if req
            .inputs
            .iter()
            .any(|i| matches!(i, Input::Text(t) if t.chars().count() > max))
        {
            return Err(TurnError::TooLong(max));
        }
        if let Some(m) = &req.marker {
            if self.store.marked(m)? {
                return Err(TurnError::Duplicate);
            }
        }
        if !req.admitted {
            self.admit(&req.key, req.address)?;
        }
        let t0 = Instant::now();
        let (c2, r2, f2) = (ch.clone(), req.clone(), self.fault.clone());
        // Held by the blocking task itself: a client that leaves meanwhile
        // does not free its place before the turn's work is done.
        let place = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| anyhow::anyhow!("turn places closed: {e}"))?;
        let turns = tokio::task::spawn_blocking(move || {
            let _place = place;
            run_inputs(&engine, c2.as_ref(), &r2, f2.as_deref())
        })
        .await
        .map_err(|e| anyhow::anyhow!("turn task failed: {e}"))??;
        if turns.is_empty() {
            // Committed by a concurrent delivery of the same input meanwhile.
            return Err(TurnError::Duplicate);
        }
        let mut out = Vec::with_capacity(turns.len());
        for (turn, sent) in turns {
            self.turn_done(ch.name(), &turn, t0);
            if req.live {
                ch.deliver(&req.key, &turn, &sent).await?;
            }
            out.push((turn, sent));
        }
        Ok(out)
    }

    /// Metrics, and the operators' consoles told when a turn touched the
    /// queue (a handoff, or a message in a conversation a person holds).
    fn turn_done(&self, channel: &str, turn: &Turn, started: Instant) {
        self.metrics
            .turn(channel, turn, started.elapsed().as_secs_f64());
        if turn.actions.contains(&Action::Handoff) || turn.actions.contains(&Action::Silent) {
            self.hub.queue_changed();
        }
    }

    /// The channel's records for a turn that the client did not ask for
    /// (an operator's message, the bot taking the conversation back), to be
    /// committed with it.
    pub fn keeper(
        &self,
        key: &SessionKey,
        operator: Option<String>,
    ) -> anyhow::Result<impl Fn(&Turn) -> anyhow::Result<Keep> + Send + 'static> {
        let ch = self
            .channel(&key.channel)
            .ok_or_else(|| anyhow::anyhow!("no channel {:?} runs here", key.channel))?;
        let key = key.clone();
        Ok(move |t: &Turn| {
            ch.keep(
                &key,
                t,
                &Origin {
                    operator: operator.as_deref(),
                    ..Default::default()
                },
            )
        })
    }

    /// Delivers a committed turn the client did not ask for on its channel.
    pub async fn deliver(
        &self,
        key: &SessionKey,
        turn: &Turn,
        operator: Option<&str>,
        committed: Committed,
        keep: &Keep,
    ) -> anyhow::Result<Delivery> {
        let ch = self
            .channel(&key.channel)
            .ok_or_else(|| anyhow::anyhow!("no channel {:?} runs here", key.channel))?;
        let sent = Sent {
            operator: operator.map(str::to_string),
            committed,
            marker: keep.marker.clone(),
        };
        ch.deliver(key, turn, &sent).await
    }
}

/// Turns that run at once. Each runs on a blocking thread, and a thread
/// keeps what it allocated after its turn: its stack, the encoder's scratch
/// and a cache for each regular expression it ran (the regex crate keeps one
/// per thread using an expression at once). With tokio's default of up to
/// 512 blocking threads, 300 chats writing at once left ~300 threads and
/// ~140 MB behind. The work is mostly CPU (the encoder, the scrubber) plus
/// the store's flush to disk: 16 per core keep the cores busy while some
/// wait on the disk (open-loop load with unique texts: 8 places doubled the
/// median latency at 60 turns/s, 32 and 128 were close); the turns beyond
/// wait as async tasks.
fn turn_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 16).max(32)
}

/// The engine's turns for a request (blocking), each committed with what
/// the channel keeps for it; none when the input was processed before.
fn run_inputs(
    engine: &Engine,
    ch: &dyn Channel,
    req: &TurnRequest,
    fault: Option<&str>,
) -> anyhow::Result<Vec<(Turn, Sent)>> {
    // Only a client's message (it carries a marker) crashes: the greeting
    // and settings go through, so a test can set the scene first.
    let crash = |at: &str| {
        if fault == Some(at) && req.marker.is_some() {
            tracing::error!("OTKLIK_FAULT={at}: aborting");
            std::process::abort();
        }
    };
    let n = req.inputs.len();
    let mut out = Vec::with_capacity(n);
    for (i, input) in req.inputs.iter().enumerate() {
        let marker = req.marker.as_ref().map(|m| {
            if i + 1 == n {
                m.clone()
            } else {
                format!("{m}:{i}")
            }
        });
        let echo = if i + 1 == n { req.echo.as_ref() } else { None };
        let kept = std::cell::RefCell::new(None);
        let keep = |t: &Turn| -> anyhow::Result<Keep> {
            crash("before_commit");
            if req.silent {
                return Ok(Keep::default());
            }
            let k = ch.keep(
                &req.key,
                t,
                &Origin {
                    operator: None,
                    marker: marker.as_deref(),
                    echo,
                },
            )?;
            *kept.borrow_mut() = k.marker.clone();
            Ok(k)
        };
        let opts = TurnOpts {
            marker: marker.as_deref(),
            style: req.style.as_deref(),
        };
        let Some((turn, committed)) = engine.turn(&req.key, input.clone(), opts, &keep)? else {
            continue;
        };
        crash("after_commit");
        out.push((
            turn,
            Sent {
                operator: None,
                committed,
                marker: kept.into_inner(),
            },
        ));
    }
    Ok(out)
}
