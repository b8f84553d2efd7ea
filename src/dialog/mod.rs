//! The dialog engine: one conversation graph for every channel. It takes a
//! channel-neutral input (text, choice, DTMF digit, silence, start,
//! attachment), loads the client's session, classifies with the NLU, steps the
//! graph with the standard's rules built in (confirm / three options / honest
//! "not found", «Ваш вопрос решён?», segment wording, an operator at any step,
//! consent before personal data, working hours, bookings, callbacks,
//! application status, the ease rating), saves the turn, and returns what the
//! channel renders: text, choices, links and actions.
//!
//! Layout: `turn` (wire types), `core` (sessions, locks, commits, the
//! client's turn, rendering), `step` (the step machine), `nodes` (entering
//! nodes and what waiting nodes take), `understand` (the classifier's
//! decision), `prompt` (prompts and matching answers to choices), `forms`
//! (forms and consent), `actions` (bookings, callbacks, application status,
//! feedback), `payments` (a fee's amount, details and QR code: the
//! `pay_fee` action), `handoff` (the operators' actions on a conversation), `values`
//! (numbers, days and times read from free text), `graph`, `session`, `style`.

pub mod graph;
pub mod handoff;
pub mod session;
pub mod style;

mod actions;
mod application;
mod core;
mod fields;
mod forms;
mod nodes;
mod notify;
mod payments;
mod prompt;
pub mod search;
mod step;
mod turn;
mod understand;
mod values;

pub use self::core::TurnOpts;
pub use crate::store::Keep;
pub use forms::consent_version;
pub use search::describe_facts;
pub use turn::{Action, Image, Input, PendingReply, Turn};
pub use values::parse_phone;

use crate::config::{Config, DialogConfig};
use crate::nlu::kb::Link;
use crate::nlu::Nlu;
use crate::services::appointments::Schedule;
use crate::services::hours::Hours;
use crate::services::status::{self, StatusProvider};
use crate::services::{Clock, SystemClock};
use crate::store::{ConversationLock, Storage, TurnWrites};
use anyhow::Result;
use graph::Graph;
use session::ChoiceOut;
use std::sync::Arc;

#[derive(Default)]
struct Out {
    texts: Vec<String>,
    /// The client's text in this turn (a `say` node's cases read it).
    input: Option<String>,
    /// Which of `texts` is the knowledge base's answer (its links follow it,
    /// and the channel's wording rules leave it as written).
    answer: Option<usize>,
    choices: Vec<ChoiceOut>,
    actions: Vec<Action>,
    links: Vec<Link>,
    events: Vec<String>,
    /// The client's input was personal data: logged as such.
    personal_input: bool,
    /// The classifier's candidates for the client's text in this turn.
    scores: Vec<crate::analytics::Candidate>,
    /// The intent the client confirmed in this turn (a guess accepted, an option chosen).
    confirmed: Option<String>,
    /// The client's rating, when this turn completed it.
    rating: Option<crate::analytics::Rating>,
    /// What the turn writes besides the session, committed with it.
    writes: TurnWrites,
    /// A picture (a payment's QR code) and how many of `texts` come before it.
    image: Option<(turn::Image, usize)>,
}

impl Out {
    /// The knowledge base's answer: said, and remembered as the answer.
    fn answer(&mut self, t: impl Into<String>) {
        self.answer = Some(self.texts.len());
        self.say(t);
    }

    /// Shows a picture after what was said so far (before what follows).
    fn show(&mut self, image: turn::Image) {
        self.image = Some((image, self.texts.len()));
    }

    fn say(&mut self, t: impl Into<String>) {
        let t = t.into();
        if !t.trim().is_empty() {
            self.texts.push(t);
        }
    }
}

/// The rating scale of the standard, in its order.
pub const EASE: [(&str, &str); 4] = [
    ("easy", "Легко"),
    ("rather_easy", "Скорее легко"),
    ("rather_hard", "Скорее сложно"),
    ("hard", "Сложно"),
];

/// Guards against a graph that jumps between non-waiting nodes for ever.
const MAX_HOPS: usize = 32;

pub struct Engine {
    pub nlu: Arc<Nlu>,
    pub graph: Arc<Graph>,
    pub store: Arc<dyn Storage>,
    pub clock: Arc<dyn Clock>,
    pub hours: Hours,
    pub schedule: Schedule,
    status: Box<dyn StatusProvider>,
    /// Where filled applications go, and how drafts are kept.
    applications: Box<dyn crate::services::applications::ApplicationProvider>,
    apps_cfg: crate::config::ApplicationsConfig,
    /// State fees and the payment provider.
    pay: crate::services::payments::Payments,
    cfg: DialogConfig,
    /// Notifications' settings (quiet hours, the daily limit; `notify.rs`).
    notify: crate::config::NotifyConfig,
    /// The key of the analytics log's pseudonyms.
    secret: String,
    locks: Arc<dyn ConversationLock>,
}

fn choice(id: &str, label: &str, dtmf: Option<&str>) -> ChoiceOut {
    ChoiceOut {
        id: id.into(),
        label: label.into(),
        dtmf: dtmf.map(String::from),
        synonyms: Vec::new(),
    }
}

fn fill(template: &str, vars: &[(&str, String)]) -> String {
    let mut t = template.to_string();
    for (k, v) in vars {
        t = t.replace(&format!("{{{k}}}"), v);
    }
    t
}

impl Engine {
    /// Builds the engine over a loaded NLU: reads the graph, opens the
    /// embedded store (for the command line and tests; the server opens its
    /// store once and uses `with_parts`).
    pub fn new(cfg: &Config, nlu: Arc<Nlu>, clock: Arc<dyn Clock>) -> Result<Self> {
        let ids: Vec<String> = nlu.kb.intents.iter().map(|i| i.id.clone()).collect();
        let graph = Graph::load_dir(&cfg.dialog.dialogs_dir, &ids)?;
        let store: Arc<dyn Storage> = cfg.storage.open(&cfg.data_dir)?;
        let status = status::provider(&cfg.status, &store)?;
        Self::with_parts(cfg, nlu, graph, store, status, clock)
    }

    pub fn with_parts(
        cfg: &Config,
        nlu: Arc<Nlu>,
        graph: Graph,
        store: Arc<dyn Storage>,
        status: Box<dyn StatusProvider>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let situations: std::collections::BTreeSet<&str> = nlu
            .kb
            .intents
            .iter()
            .filter_map(|i| i.situation.as_deref())
            .collect();
        for (seg, st) in &graph.segments {
            if let Some(bad) = st
                .situations
                .iter()
                .find(|x| !situations.contains(x.as_str()))
            {
                anyhow::bail!(
                    "dialogs: segment `{seg}` lists situation `{bad}`, which no intent has (known: {})",
                    situations.iter().copied().collect::<Vec<_>>().join(", ")
                );
            }
            if !cfg.kb.segments.contains(seg) {
                anyhow::bail!(
                    "dialogs: segment `{seg}` is not in kb.segments ({})",
                    cfg.kb.segments.join(", ")
                );
            }
        }
        let applications = crate::services::applications::provider(&cfg.applications, &store)?;
        let locks = store.clone().conversation_locks();
        Ok(Self {
            nlu,
            graph: Arc::new(graph),
            secret: if cfg.analytics.secret.is_empty() {
                store.salt()?
            } else {
                cfg.analytics.secret.clone()
            },
            store,
            clock,
            hours: Hours::from_config(&cfg.hours)?,
            schedule: Schedule::from_config(&cfg.appointments)?,
            status,
            applications,
            apps_cfg: cfg.applications.clone(),
            pay: crate::services::payments::Payments::new(&cfg.fees, &cfg.payments)?,
            cfg: cfg.dialog.clone(),
            notify: cfg.notify.clone(),
            locks,
        })
    }

    /// The engine with another applications provider (tests, integrations).
    pub fn with_applications(
        mut self,
        p: Box<dyn crate::services::applications::ApplicationProvider>,
    ) -> Self {
        self.applications = p;
        self
    }

    /// The engine with the system clock, from the configuration.
    pub fn from_config(cfg: &Config, nlu: Arc<Nlu>) -> Result<Self> {
        Self::new(cfg, nlu, Arc::new(SystemClock))
    }

    /// The life situation of an intent, for the analytics log.
    fn situation_of(&self, intent: Option<&str>) -> Option<String> {
        intent
            .and_then(|i| self.nlu.kb.intent(i))
            .and_then(|i| i.situation.clone())
    }

    fn now(&self) -> i64 {
        self.clock.now().as_second()
    }
}
