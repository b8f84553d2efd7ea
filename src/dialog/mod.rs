//! The dialog engine: one conversation graph for every channel. It takes a
//! channel-neutral input (text, choice, DTMF digit, silence, start,
//! attachment), loads the client's session, classifies with the NLU, steps the
//! graph with the standard's rules built in (confirm / three options / honest
//! "not found", «Ваш вопрос решён?», segment wording, an operator at any step,
//! consent before personal data, working hours, bookings, callbacks,
//! application status, the ease rating), saves the turn, and returns what the
//! channel renders: text, choices, links and actions.

pub mod graph;
pub mod session;
pub mod style;

use crate::analytics::{anonymise, pseudonym, LogEntry};
use crate::config::{Config, DialogConfig};
use crate::nlu::classifier::Decision;
use crate::nlu::kb::{normalize_text, Link};
use crate::nlu::Nlu;
use crate::services::appointments::{day_label, time_id, time_label, Schedule};
use crate::services::hours::Hours;
use crate::services::status::{self, StatusProvider};
use crate::services::{Clock, SystemClock};
use crate::store::{Appointment, BookingError, Callback, Consent, Feedback, QueueItem, Store};
use anyhow::{Context, Result};
use graph::{Field, FormAction, Graph, Node, NodeKind, SlotType, Source};
use serde::{Deserialize, Serialize};
use session::{ChoiceOut, Entry, Handoff, SegmentSource, Session, Wait};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a channel feeds the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A new conversation (/start, a call picked up, a chat opened).
    Start,
    Text(String),
    /// A choice by its id (a button).
    Choice(String),
    /// Keypad digits (one key, or several for a number).
    Dtmf(String),
    /// The client said nothing before the channel's timeout.
    Silence,
    /// A file, photo, sticker or voice message the engine cannot read (its kind).
    Attachment(String),
    /// The client (or an integration) picks a segment profile.
    SetSegment(String),
    /// Go straight to an intent (a deep link, a menu), as if it were understood.
    Topic(String),
    /// The client closes the conversation (/stop): the graph's `finish`.
    Finish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The conversation waits for (or is with) a person.
    Handoff,
    /// The conversation is over (the voice robot hangs up).
    End,
    /// The next answer is a phone number: a channel may offer contact sharing.
    RequestContact,
    /// The engine refused to pass the conversation a third time.
    TransferRefused,
    /// Nothing to say: an operator holds the conversation.
    Silent,
}

/// What the channel renders.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Turn {
    pub text: String,
    pub choices: Vec<ChoiceOut>,
    pub actions: Vec<Action>,
    pub intent: Option<String>,
    pub decision: Option<String>,
    pub segment: String,
    pub links: Vec<Link>,
    pub node: String,
    /// The client's turn count after this turn (a channel can tell a stale button by it).
    #[serde(skip_serializing, default)]
    pub seq: u64,
    /// What happened in this turn (decision:…, handoff, intent:…), for metrics.
    #[serde(skip_serializing, default)]
    pub events: Vec<String>,
}

/// A reply saved with a marked turn until its channel confirms delivery
/// (`Store::undelivered`), so that a crash or a failed send does not lose it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingReply {
    /// When the turn was committed (Unix seconds).
    pub at: i64,
    pub user: String,
    pub seq: u64,
    pub turn: Turn,
    /// Commit order across all clients (sled's monotonic id), so replies
    /// left undelivered go out in the order they were written.
    #[serde(default)]
    pub order: u64,
    /// The operator's display name when the message is an operator's.
    #[serde(default)]
    pub operator: Option<String>,
}

/// A turn the client did not ask for (an operator's message, the bot taking
/// the conversation back) on a channel whose sending can fail: it is saved as
/// undelivered under `marker`, with the turn, until the channel confirms it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub marker: String,
    /// The operator's display name, for an operator's message.
    pub operator: Option<String>,
}

#[derive(Default)]
struct Out {
    texts: Vec<String>,
    choices: Vec<ChoiceOut>,
    actions: Vec<Action>,
    links: Vec<Link>,
    events: Vec<String>,
    /// The client's input was personal data: logged as such.
    personal_input: bool,
}

impl Out {
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
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub hours: Hours,
    pub schedule: Schedule,
    status: Box<dyn StatusProvider>,
    cfg: DialogConfig,
    salt: String,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

fn choice(id: &str, label: &str, dtmf: Option<&str>) -> ChoiceOut {
    ChoiceOut {
        id: id.into(),
        label: label.into(),
        dtmf: dtmf.map(String::from),
        synonyms: Vec::new(),
    }
}

/// Russian phone number → +7XXXXXXXXXX.
pub fn parse_phone(text: &str) -> Option<String> {
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    let ok_chars = text
        .chars()
        .all(|c| c.is_ascii_digit() || " +-()".contains(c));
    match digits.len() {
        11 if ok_chars && (digits.starts_with('7') || digits.starts_with('8')) => {
            Some(format!("+7{}", &digits[1..]))
        }
        10 if ok_chars && digits.starts_with('9') => Some(format!("+7{digits}")),
        _ => None,
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
    /// Builds the engine over a loaded NLU: reads the graph, opens the store.
    pub fn new(cfg: &Config, nlu: Arc<Nlu>, clock: Arc<dyn Clock>) -> Result<Self> {
        let ids: Vec<String> = nlu.kb.intents.iter().map(|i| i.id.clone()).collect();
        let graph = Graph::load_dir(&cfg.dialog.dialogs_dir, &ids)?;
        let store = Store::open(&cfg.data_dir)?;
        let status = status::provider(&cfg.status, &store)?;
        Self::with_parts(cfg, nlu, graph, store, status, clock)
    }

    pub fn with_parts(
        cfg: &Config,
        nlu: Arc<Nlu>,
        graph: Graph,
        store: Store,
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
        Ok(Self {
            nlu,
            graph: Arc::new(graph),
            salt: store.salt()?,
            store,
            clock,
            hours: Hours::from_config(&cfg.hours)?,
            schedule: Schedule::from_config(&cfg.appointments)?,
            status,
            cfg: cfg.dialog.clone(),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// The engine with the system clock, from the configuration.
    pub fn from_config(cfg: &Config, nlu: Arc<Nlu>) -> Result<Self> {
        Self::new(cfg, nlu, Arc::new(SystemClock))
    }

    fn now(&self) -> i64 {
        self.clock.now().as_second()
    }

    /// Runs `f` on the session of `channel:user` under its lock and saves it.
    pub(crate) fn with_session<T>(
        &self,
        channel: &str,
        user: &str,
        f: impl FnOnce(&Self, &mut Session) -> Result<(T, Option<LogEntry>)>,
    ) -> Result<T> {
        Ok(self
            .with_session_marked(channel, user, None, None, f, |_| Ok(None))?
            .expect("no marker, always runs"))
    }

    /// As `with_session`, but with `marker` committed together with the turn:
    /// an input carrying a marker already committed is not run again (None).
    /// What `reply` returns is saved as undelivered under `keep`.
    pub(crate) fn with_session_marked<T>(
        &self,
        channel: &str,
        user: &str,
        marker: Option<&str>,
        keep: Option<&str>,
        f: impl FnOnce(&Self, &mut Session) -> Result<(T, Option<LogEntry>)>,
        reply: impl FnOnce(&T) -> Result<Option<Vec<u8>>>,
    ) -> Result<Option<T>> {
        let key = format!("{channel}:{user}");
        let lock = {
            let mut m = self.locks.lock().unwrap();
            m.entry(key.clone()).or_default().clone()
        };
        let r = {
            let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = marker {
                if self.store.marked(m)? {
                    return Ok(None);
                }
            }
            let mut s: Session = self.store.session(&key)?.unwrap_or_default();
            if s.channel.is_empty() {
                s.channel = channel.into();
                s.user = user.into();
                s.segment = "universal".into();
            }
            let (v, log) = f(self, &mut s)?;
            let over = s.history.len().saturating_sub(self.cfg.history_limit);
            s.history.drain(..over);
            let pending = match keep {
                Some(k) => reply(&v)?.map(|r| (k, r)),
                None => None,
            };
            let pending = pending.as_ref().map(|(k, r)| (*k, r.as_slice()));
            self.store
                .commit_turn(&key, &s, log.as_ref(), marker, pending)?;
            Some(v)
        };
        drop(lock);
        let mut m = self.locks.lock().unwrap();
        if m.get(&key).is_some_and(|l| Arc::strong_count(l) == 1) {
            m.remove(&key);
        }
        Ok(r)
    }

    /// The stored conversation of a client.
    pub fn session(&self, channel: &str, user: &str) -> Result<Option<Session>> {
        self.store.session(&format!("{channel}:{user}"))
    }

    /// One turn: the client's input in, the bot's reply out (saved before it returns).
    pub fn handle(&self, channel: &str, user: &str, input: Input) -> Result<Turn> {
        Ok(self
            .handle_once(channel, user, input, None)?
            .expect("no marker, always runs"))
    }

    /// A turn for an input identified by `marker` (a Telegram update id…):
    /// the marker is saved with the turn, and an input whose marker was saved
    /// before is not processed again (None) — exactly once across restarts.
    /// The reply is also saved as undelivered (`PendingReply`) until the
    /// channel calls `Store::delivered` for the marker.
    pub fn handle_once(
        &self,
        channel: &str,
        user: &str,
        input: Input,
        marker: Option<&str>,
    ) -> Result<Option<Turn>> {
        if !graph::CHANNELS.contains(&channel) {
            anyhow::bail!("unknown channel {channel:?} (web, telegram or voice)");
        }
        // With a marker the reply is kept until the channel confirms delivery.
        let reply = |t: &Turn| self.pending_reply(user, t, None);
        self.with_session_marked(
            channel,
            user,
            marker,
            marker,
            |e, s| {
                let mut out = Out::default();
                let client_text = match &input {
                    Input::Text(t) => t.clone(),
                    Input::Choice(id) => s
                        .choices
                        .iter()
                        .find(|c| &c.id == id)
                        .map(|c| c.label.clone())
                        .unwrap_or_default(),
                    Input::Dtmf(d) => format!("[DTMF {d}]"),
                    _ => String::new(),
                };
                e.step(s, input.clone(), &mut out)?;
                let now = e.now();
                if !client_text.is_empty() {
                    s.history.push(Entry {
                        who: "client".into(),
                        text: client_text.clone(),
                        at: now,
                    });
                }
                s.turns += 1;
                let mut turn = e.render(
                    s,
                    out.texts.join("\n\n"),
                    out.choices.clone(),
                    out.actions.clone(),
                    out.links.clone(),
                );
                turn.events = out.events.clone();
                if !turn.text.is_empty() {
                    s.history.push(Entry {
                        who: "bot".into(),
                        text: turn.text.clone(),
                        at: now,
                    });
                }
                let personal = s.personal_values();
                let log = LogEntry {
                    ts: now,
                    conversation: pseudonym(&e.salt, &s.key(), s.conversation),
                    channel: s.channel.clone(),
                    segment: s.segment.clone(),
                    node: s.node.clone(),
                    text: if out.personal_input || !matches!(input, Input::Text(_)) {
                        if out.personal_input {
                            "[данные]".into()
                        } else {
                            String::new()
                        }
                    } else {
                        anonymise(
                            &client_text,
                            &personal.iter().map(String::as_str).collect::<Vec<_>>(),
                        )
                    },
                    intent: s.intent.clone(),
                    decision: s.decision.clone(),
                    events: out.events,
                };
                Ok((turn, Some(log)))
            },
            reply,
        )
    }

    /// The undelivered record of `t` for `user` (none for a silent turn).
    pub(crate) fn pending_reply(
        &self,
        user: &str,
        t: &Turn,
        operator: Option<&str>,
    ) -> Result<Option<Vec<u8>>> {
        if t.text.is_empty() {
            return Ok(None);
        }
        let p = PendingReply {
            at: self.now(),
            user: user.to_string(),
            seq: t.seq,
            turn: t.clone(),
            order: self.store.next_id()?,
            operator: operator.map(str::to_string),
        };
        Ok(Some(serde_json::to_vec(&p)?))
    }

    /// The bot's turn when an operator gives the conversation back: it says
    /// so and enters `node` (called inside the operator's commit).
    pub(crate) fn returned_turn(&self, s: &mut Session, node: &str) -> Result<Turn> {
        let mut out = Out::default();
        out.say(self.p("operator_returned"));
        self.enter(s, node, &mut out)?;
        let turn = self.render(
            s,
            out.texts.join("\n\n"),
            out.choices,
            out.actions,
            out.links,
        );
        s.history.push(Entry {
            who: "bot".into(),
            text: turn.text.clone(),
            at: self.now(),
        });
        Ok(turn)
    }

    /// The last prompt again, for a client coming back (page reload, restart).
    pub fn resume(&self, channel: &str, user: &str) -> Result<Option<Turn>> {
        let Some(s) = self.session(channel, user)? else {
            return Ok(None);
        };
        if s.ended || s.wait == Wait::Fresh {
            return Ok(None);
        }
        let text = s.prompt.clone();
        Ok(Some(self.render(
            &s,
            text,
            s.choices.clone(),
            Vec::new(),
            Vec::new(),
        )))
    }

    pub(crate) fn render(
        &self,
        s: &Session,
        text: String,
        choices: Vec<ChoiceOut>,
        actions: Vec<Action>,
        links: Vec<Link>,
    ) -> Turn {
        let g = &self.graph;
        let ch = g.channel(&s.channel);
        let choices = choices
            .into_iter()
            .map(|mut c| {
                c.label = style::adapt(&c.label, g, &s.channel, &s.segment);
                c
            })
            .collect();
        Turn {
            text: style::adapt(&text, g, &s.channel, &s.segment),
            choices,
            actions,
            intent: s.intent.clone(),
            decision: s.decision.clone(),
            segment: s.segment.clone(),
            links: if ch.links { links } else { Vec::new() },
            node: s.node.clone(),
            seq: s.turns,
            events: Vec::new(),
        }
    }

    fn p(&self, key: &str) -> String {
        self.graph.prompt(key).to_string()
    }

    fn yes_no(&self) -> Vec<ChoiceOut> {
        let mut y = choice("yes", &self.p("choice_yes"), Some("1"));
        y.synonyms = vec!["да".into()];
        let mut n = choice("no", &self.p("choice_no"), Some("2"));
        n.synonyms = vec!["нет".into()];
        vec![y, n]
    }

    fn operator_choice(&self) -> ChoiceOut {
        let mut c = choice("operator", &self.p("choice_operator"), Some("0"));
        c.synonyms = vec!["оператор".into()];
        c
    }

    /// Shows a prompt with choices and remembers them (to repeat, and to check the answer).
    fn ask(
        &self,
        s: &mut Session,
        out: &mut Out,
        text: String,
        choices: Vec<ChoiceOut>,
        wait: Wait,
    ) {
        out.say(text.clone());
        s.prompt = text;
        s.choices = choices.clone();
        out.choices = choices;
        s.wait = wait;
    }

    fn repeat(&self, s: &Session, out: &mut Out) {
        out.say(s.prompt.clone());
        out.choices = s.choices.clone();
    }

    /// Which remembered choice an input picks: by id, key, label, synonym or yes/no word.
    fn pick(&self, s: &Session, input: &Input) -> Option<String> {
        let cs = &s.choices;
        match input {
            Input::Choice(id) => cs.iter().find(|c| &c.id == id).map(|c| c.id.clone()),
            Input::Dtmf(d) => cs
                .iter()
                .find(|c| c.dtmf.as_deref() == Some(d.trim()))
                .map(|c| c.id.clone()),
            Input::Text(t) => {
                let n = normalize_text(t);
                if n.is_empty() {
                    return None;
                }
                if let Some(c) = cs.iter().find(|c| {
                    normalize_text(&c.label) == n
                        || c.id == n
                        || c.dtmf.as_deref() == Some(n.as_str())
                        || c.synonyms.iter().any(|y| normalize_text(y) == n)
                }) {
                    return Some(c.id.clone());
                }
                let has = |id: &str| cs.iter().any(|c| c.id == id);
                if has("yes") && style::is_yes(&self.graph, t) {
                    return Some("yes".into());
                }
                if has("no") && style::is_no(&self.graph, t) {
                    return Some("no".into());
                }
                None
            }
            _ => None,
        }
    }

    fn new_conversation(&self, s: &mut Session) {
        let keep = Session {
            channel: s.channel.clone(),
            user: s.user.clone(),
            conversation: s.conversation + 1,
            segment: s.segment.clone(),
            segment_source: s.segment_source,
            turns: s.turns,
            ..Default::default()
        };
        *s = keep;
    }

    fn step(&self, s: &mut Session, input: Input, out: &mut Out) -> Result<()> {
        let g = self.graph.clone();
        if input == Input::Start {
            self.new_conversation(s);
            return self.enter(s, &g.start, out);
        }
        if let Input::SetSegment(seg) = &input {
            if !g.segments.contains_key(seg) {
                anyhow::bail!("unknown segment {seg:?}");
            }
            s.segment = seg.clone();
            s.segment_source = SegmentSource::Explicit;
            out.events.push(format!("segment:{seg}"));
            let label = g.segments[seg].label.clone().unwrap_or_else(|| seg.clone());
            out.say(fill(&self.p("segment_set"), &[("segment", label)]));
            if s.wait != Wait::Fresh && !s.ended {
                self.repeat(s, out);
            }
            return Ok(());
        }
        // An operator holds the conversation: the bot stays silent.
        if let Some(h) = &mut s.handoff {
            if h.operator.is_none()
                && !h.notified
                && matches!(input, Input::Text(_) | Input::Attachment(_))
            {
                h.notified = true;
                out.say(self.p("operator_waiting"));
            } else {
                out.actions.push(Action::Silent);
            }
            return Ok(());
        }
        if s.wait == Wait::Fresh || s.ended {
            // A client who writes first (or again after the end) is greeted and
            // their message is taken as the question.
            if s.ended {
                self.new_conversation(s);
                self.enter(s, &g.classify, out)?;
                out.texts.clear();
            } else {
                self.enter(s, &g.start, out)?;
            }
            if matches!(input, Input::Silence) {
                return Ok(());
            }
        }
        if let Input::Text(t) = &input {
            if t.trim().is_empty() || t.chars().all(|c| c.is_whitespace() || c.is_control()) {
                out.say(self.p("empty"));
                self.repeat(s, out);
                return Ok(());
            }
            if t.chars().count() > self.cfg.max_text_chars {
                out.say(fill(
                    &self.p("too_long"),
                    &[("max", self.cfg.max_text_chars.to_string())],
                ));
                out.choices = s.choices.clone();
                return Ok(());
            }
        }
        match &input {
            Input::Topic(id) if self.nlu.kb.intent(id).is_some() => {
                s.node = g.classify.clone();
                return self.route_intent(s, id, out);
            }
            Input::Topic(_) => {
                s.node = g.classify.clone();
                let top = s.candidates.iter().take(3).cloned().collect();
                return self.offer_options(s, out, self.p("not_understood"), top);
            }
            Input::Finish => return self.enter(s, &g.finish, out),
            _ => {}
        }
        // An operator at any step: the word, the choice, or the key 0.
        let wants_operator = match &input {
            Input::Dtmf(d) => d.trim() == "0",
            Input::Choice(id) => id == "operator",
            Input::Text(t) => {
                style::wants_operator(&g, t) && !matches!(s.wait, Wait::Field { .. })
                    || normalize_text(t) == "оператор"
            }
            _ => false,
        };
        if wants_operator {
            out.events.push("operator_requested".into());
            return self.enter(s, &g.operator, out);
        }
        match &input {
            Input::Silence => {
                if let Some(next) = self
                    .graph
                    .nodes
                    .get(&s.node)
                    .and_then(|n| n.on.get("silence"))
                    .cloned()
                {
                    s.silences = 0;
                    return self.enter(s, &next, out);
                }
                s.silences += 1;
                if s.silences > self.cfg.silence_limit {
                    out.say(self.p("silence_end"));
                    out.actions.push(Action::End);
                    out.events.push("silence_end".into());
                    s.ended = true;
                    return Ok(());
                }
                out.say(self.p("silence"));
                self.repeat(s, out);
                return Ok(());
            }
            Input::Attachment(_) => {
                out.say(self.p("attachment"));
                self.repeat(s, out);
                return Ok(());
            }
            _ => s.silences = 0,
        }
        if let Input::Text(t) = &input {
            if s.segment_source != SegmentSource::Explicit && !matches!(s.wait, Wait::Field { .. })
            {
                if let Some(seg) = style::infer_segment(&g, t) {
                    if seg != s.segment {
                        out.events.push(format!("segment_inferred:{seg}"));
                    }
                    s.segment = seg;
                    s.segment_source = SegmentSource::Inferred;
                }
            }
            if style::wants_withdrawal(&g, t) {
                if let Some(node) = self.withdraw_node() {
                    return self.enter(s, &node, out);
                }
            }
        }
        let wait = s.wait.clone();
        let node = g.node(&s.node).clone();
        match wait {
            Wait::Fresh => Ok(()),
            Wait::Confirm { intent } => match self.pick(s, &input).as_deref() {
                Some("yes") => {
                    out.events.push("confirm_yes".into());
                    self.route_intent(s, &intent, out)
                }
                Some("no") => {
                    out.events.push("confirm_no".into());
                    let others: Vec<String> = s
                        .candidates
                        .iter()
                        .filter(|c| **c != intent)
                        .take(3)
                        .cloned()
                        .collect();
                    self.offer_options(s, out, self.p("alternatives"), others)
                }
                _ => self.free_text_or_repeat(s, &input, out),
            },
            Wait::Options => match self.pick(s, &input) {
                Some(id) if id == "other" => {
                    let text = self.p("rephrase_only");
                    let text = if text.is_empty() {
                        self.p("rephrase")
                    } else {
                        text
                    };
                    s.node = g.classify.clone();
                    self.ask(s, out, text, Vec::new(), Wait::Node);
                    Ok(())
                }
                Some(id) if self.nlu.kb.intent(&id).is_some() => self.route_intent(s, &id, out),
                _ => self.free_text_or_repeat(s, &input, out),
            },
            Wait::OfferOperator => match self.pick(s, &input).as_deref() {
                Some("yes") => self.enter(s, &g.operator, out),
                Some("no") | Some("rephrase") => {
                    s.node = g.classify.clone();
                    self.ask(s, out, self.p("rephrase_only"), Vec::new(), Wait::Node);
                    Ok(())
                }
                _ => self.free_text_or_repeat(s, &input, out),
            },
            Wait::Consent => match self.pick(s, &input).as_deref() {
                Some("yes") => {
                    let text = self.p("consent");
                    self.store.set_consent(
                        &s.key(),
                        &Consent {
                            given_at: self.now(),
                            version: consent_version(&text),
                            text,
                            withdrawn_at: None,
                        },
                    )?;
                    out.events.push("consent_given".into());
                    self.ask_field(s, &node, 0, out)
                }
                Some("no") => {
                    out.events.push("consent_declined".into());
                    s.node = g.classify.clone();
                    self.ask(
                        s,
                        out,
                        self.p("consent_declined"),
                        vec![self.operator_choice()],
                        Wait::Node,
                    );
                    Ok(())
                }
                _ => {
                    out.say(self.p("choose_one"));
                    self.repeat(s, out);
                    Ok(())
                }
            },
            Wait::Field { field } => self.on_field(s, &node, field, &input, out),
            Wait::FormConfirm => match self.pick(s, &input).as_deref() {
                Some("yes") => self.run_action(s, &node, out),
                Some("no") => {
                    out.events.push("form_cancelled".into());
                    self.clear_form(s);
                    s.node = g.classify.clone();
                    self.ask(s, out, self.p("form_cancelled"), Vec::new(), Wait::Node);
                    Ok(())
                }
                _ => {
                    out.say(self.p("choose_one"));
                    self.repeat(s, out);
                    Ok(())
                }
            },
            Wait::Nps { ease } => {
                let score = match &input {
                    Input::Text(t) | Input::Dtmf(t) => t
                        .trim()
                        .trim_end_matches('#')
                        .parse::<u8>()
                        .ok()
                        .filter(|n| *n <= 10),
                    Input::Choice(id) => id.parse::<u8>().ok().filter(|n| *n <= 10),
                    _ => None,
                };
                let skip = matches!(&input, Input::Choice(id) if id == "skip")
                    || matches!(&input, Input::Text(t) if style::is_skip(&g, t));
                if score.is_none() && !skip {
                    out.say(self.p("choose_one"));
                    self.repeat(s, out);
                    return Ok(());
                }
                self.save_feedback(s, ease, score, out)?;
                let next = node.next.clone().unwrap_or_else(|| g.finish.clone());
                self.enter(s, &next, out)
            }
            Wait::Node => self.on_node(s, &node, &input, out),
        }
    }

    fn withdraw_node(&self) -> Option<String> {
        self.graph
            .nodes
            .iter()
            .find(|(_, n)| n.kind == NodeKind::ConsentWithdraw)
            .map(|(k, _)| k.clone())
    }

    /// Free text where a choice was expected is a new question; anything else repeats the prompt.
    fn free_text_or_repeat(&self, s: &mut Session, input: &Input, out: &mut Out) -> Result<()> {
        match input {
            Input::Text(t) => {
                s.node = self.graph.classify.clone();
                self.classify_text(s, t, out)
            }
            _ => {
                out.say(self.p("choose_one"));
                self.repeat(s, out);
                Ok(())
            }
        }
    }

    fn on_node(&self, s: &mut Session, node: &Node, input: &Input, out: &mut Out) -> Result<()> {
        let g = self.graph.clone();
        match node.kind {
            NodeKind::Classify => match input {
                Input::Text(t) => self.classify_text(s, t, out),
                _ => match self.pick(s, input) {
                    Some(id) if self.nlu.kb.intent(&id).is_some() => self.route_intent(s, &id, out),
                    _ => {
                        out.say(self.p("choose_one"));
                        self.repeat(s, out);
                        Ok(())
                    }
                },
            },
            NodeKind::Choice | NodeKind::Handoff => {
                if let Some(id) = self.pick(s, input) {
                    if let Some(c) = node.choices.iter().find(|c| c.id == id) {
                        return self.enter(s, &c.next, out);
                    }
                }
                // on.yes / on.no for recognised yes and no, on.digits for keys
                let generic = match input {
                    Input::Text(t) if style::is_yes(&g, t) => node.on.get("yes"),
                    Input::Text(t) if style::is_no(&g, t) => node.on.get("no"),
                    Input::Dtmf(d) => node.on.get("digits").inspect(|_| {
                        s.slots.insert("digits".into(), d.trim().to_string());
                    }),
                    _ => None,
                };
                if let Some(next) = generic.cloned() {
                    return self.enter(s, &next, out);
                }
                if let (Input::Text(t), Some(next)) = (input, node.on.get("text")) {
                    let target = g.node(next);
                    if target.kind == NodeKind::Classify {
                        s.node = next.clone();
                        return self.classify_text(s, t, out);
                    }
                    return self.enter(s, next, out);
                }
                if let (Input::Text(t), true) = (input, node.kind == NodeKind::Handoff) {
                    s.node = g.classify.clone();
                    return self.classify_text(s, t, out);
                }
                out.say(self.p("choose_one"));
                self.repeat(s, out);
                Ok(())
            }
            NodeKind::Ask => {
                let value = match input {
                    Input::Text(t) | Input::Dtmf(t) => t.trim().to_string(),
                    _ => {
                        out.say(self.p("choose_one"));
                        self.repeat(s, out);
                        return Ok(());
                    }
                };
                let value = match self.check_slot(node.slot_type, &value) {
                    Ok(v) => v,
                    Err(prompt) => {
                        out.say(self.p(prompt));
                        self.repeat(s, out);
                        return Ok(());
                    }
                };
                if let Some(slot) = &node.slot {
                    s.slots.insert(slot.clone(), value);
                }
                let next = node.next.clone().unwrap();
                self.enter(s, &next, out)
            }
            NodeKind::Solved => match self.pick(s, input).as_deref() {
                Some("yes") => {
                    out.events.push("solved_yes".into());
                    s.unsolved = 0;
                    let next = node.on["yes"].clone();
                    self.enter(s, &next, out)
                }
                Some("no") => {
                    out.events.push("solved_no".into());
                    s.unsolved += 1;
                    if s.unsolved >= 2 {
                        let mut r = choice("rephrase", &self.p("choice_rephrase"), Some("2"));
                        r.synonyms = vec!["нет".into()];
                        let mut o = self.operator_choice();
                        o.id = "yes".into();
                        o.dtmf = Some("1".into());
                        o.synonyms = vec!["да".into(), "оператор".into()];
                        s.node = g.classify.clone();
                        self.ask(
                            s,
                            out,
                            self.p("offer_operator"),
                            vec![o, r],
                            Wait::OfferOperator,
                        );
                        return Ok(());
                    }
                    let answered = s.intent.clone();
                    let others: Vec<String> = s
                        .candidates
                        .iter()
                        .filter(|c| Some(*c) != answered.as_ref())
                        .take(3)
                        .cloned()
                        .collect();
                    s.node = g.classify.clone();
                    self.offer_options(s, out, self.p("rephrase"), others)
                }
                _ => self.free_text_or_repeat(s, input, out),
            },
            NodeKind::Rating => {
                let ease = match self.pick(s, input) {
                    Some(id) => EASE.iter().position(|(e, _)| *e == id).map(|i| i as u8 + 1),
                    None => None,
                };
                let Some(ease) = ease else {
                    if let Input::Text(t) = input {
                        if style::is_skip(&g, t) {
                            let next = node.next.clone().unwrap();
                            return self.enter(s, &next, out);
                        }
                    }
                    out.say(self.p("choose_one"));
                    self.repeat(s, out);
                    return Ok(());
                };
                if node.nps {
                    let mut cs: Vec<ChoiceOut> = (0..=10)
                        .map(|n| choice(&n.to_string(), &n.to_string(), None))
                        .collect();
                    cs.push(choice("skip", &self.p("choice_skip"), None));
                    self.ask(s, out, self.p("nps"), cs, Wait::Nps { ease });
                    return Ok(());
                }
                self.save_feedback(s, ease, None, out)?;
                let next = node.next.clone().unwrap();
                self.enter(s, &next, out)
            }
            // Forms wait in Field/FormConfirm; End restarts in step(); the rest never wait.
            _ => {
                self.repeat(s, out);
                Ok(())
            }
        }
    }

    fn save_feedback(
        &self,
        s: &mut Session,
        ease: u8,
        nps: Option<u8>,
        out: &mut Out,
    ) -> Result<()> {
        self.store.add_feedback(&Feedback {
            user: s.key(),
            conversation: s.conversation,
            channel: s.channel.clone(),
            segment: s.segment.clone(),
            ease,
            nps,
            at: self.now(),
        })?;
        out.events.push(format!("rating:{ease}"));
        out.say(self.p("rating_thanks"));
        Ok(())
    }

    fn check_slot(&self, t: SlotType, value: &str) -> std::result::Result<String, &'static str> {
        match t {
            SlotType::Phone => parse_phone(value).ok_or("invalid_phone"),
            SlotType::Digits => {
                let d: String = value
                    .chars()
                    .filter(|c| !matches!(c, ' ' | '-' | '#' | '№'))
                    .collect();
                if (4..=20).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()) {
                    Ok(d)
                } else {
                    Err("invalid_digits")
                }
            }
            SlotType::Text | SlotType::Choice => Ok(value.to_string()),
        }
    }

    fn classify_text(&self, s: &mut Session, text: &str, out: &mut Out) -> Result<()> {
        let c = match self.nlu.classifier.classify(text) {
            Ok(c) => c,
            Err(e)
                if e.downcast_ref::<crate::nlu::classifier::InputError>()
                    .is_some() =>
            {
                out.say(self.p("empty"));
                self.repeat(s, out);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        s.candidates = c.top.iter().map(|t| t.intent.clone()).collect();
        s.decision = Some(c.decision.as_str().to_string());
        out.events.push(format!("decision:{}", c.decision.as_str()));
        let best = c.top.first().map(|t| t.intent.clone());
        match c.decision {
            Decision::Answer => self.route_intent(s, &best.unwrap(), out),
            Decision::Confirm => {
                let intent = best.unwrap();
                let title = self
                    .nlu
                    .kb
                    .intent(&intent)
                    .map(|i| i.title.clone())
                    .unwrap_or_default();
                s.intent = Some(intent.clone());
                self.ask(
                    s,
                    out,
                    fill(&self.p("confirm"), &[("title", title)]),
                    self.yes_no(),
                    Wait::Confirm { intent },
                );
                Ok(())
            }
            Decision::Alternatives => {
                let top: Vec<String> = s.candidates.iter().take(3).cloned().collect();
                self.offer_options(s, out, self.p("alternatives"), top)
            }
            Decision::OutOfScope => {
                s.intent = None;
                let top: Vec<String> = s.candidates.iter().take(3).cloned().collect();
                self.offer_options(s, out, self.p("not_understood"), top)
            }
        }
    }

    /// Intents as choices (ordered for the segment), plus «Другое» and the operator.
    fn offer_options(
        &self,
        s: &mut Session,
        out: &mut Out,
        text: String,
        mut intents: Vec<String>,
    ) -> Result<()> {
        style::order_for_segment(&mut intents, &self.nlu.kb, &self.graph, &s.segment);
        let mut cs: Vec<ChoiceOut> = intents
            .iter()
            .filter_map(|id| self.nlu.kb.intent(id))
            .enumerate()
            .map(|(i, it)| choice(&it.id, &it.title, Some(&(i + 1).to_string())))
            .collect();
        let n = cs.len();
        cs.push(choice(
            "other",
            &self.p("choice_other"),
            Some(&(n + 1).to_string()),
        ));
        cs.push(self.operator_choice());
        s.node = self.graph.classify.clone();
        self.ask(s, out, text, cs, Wait::Options);
        Ok(())
    }

    fn route_intent(&self, s: &mut Session, intent: &str, out: &mut Out) -> Result<()> {
        let g = self.graph.clone();
        s.intent = Some(intent.to_string());
        out.events.push(format!("intent:{intent}"));
        let cl = g.node(&g.classify);
        let target = cl
            .routes
            .get(intent)
            .or(cl.next.as_ref())
            .cloned()
            .context("classify node without next")?;
        self.enter(s, &target, out)
    }

    fn vars(&self, s: &Session) -> Vec<(&'static str, String)> {
        let now = self.clock.now();
        let title = s
            .intent
            .as_ref()
            .and_then(|i| self.nlu.kb.intent(i))
            .map(|i| i.title.clone())
            .unwrap_or_default();
        let mut v = vec![
            ("hours", self.hours.describe()),
            ("next_open", self.hours.next_open(now).unwrap_or_default()),
            ("title", title),
        ];
        for k in [
            "service",
            "office",
            "day",
            "time",
            "appointment",
            "phone",
            "name",
            "preferred_time",
            "topic",
            "number",
            "status",
            "details",
            "digits",
        ] {
            let val = s
                .labels
                .get(k)
                .or_else(|| s.slots.get(k))
                .cloned()
                .unwrap_or_default();
            v.push((k, val));
        }
        v
    }

    fn fill_s(&self, s: &Session, t: &str) -> String {
        fill(t, &self.vars(s))
    }

    /// Enters a node: says what it says and either waits or moves on.
    fn enter(&self, s: &mut Session, name: &str, out: &mut Out) -> Result<()> {
        let g = self.graph.clone();
        let mut name = name.to_string();
        for _ in 0..MAX_HOPS {
            let node = g.node(&name).clone();
            s.node = name.clone();
            let text = node
                .text
                .as_deref()
                .map(|t| self.fill_s(s, t))
                .unwrap_or_default();
            let next = node.next.clone();
            match node.kind {
                NodeKind::Say => {
                    out.say(text);
                    name = next.unwrap();
                }
                NodeKind::Answer => {
                    match s.intent.as_ref().and_then(|i| self.nlu.kb.intent(i)) {
                        Some(it) => {
                            out.say(it.answer_for(&s.segment).to_string());
                            out.links.extend(it.links.iter().cloned());
                            out.events.push("answered".into());
                        }
                        None => out.say(self.p("not_understood")),
                    }
                    name = next.unwrap();
                }
                NodeKind::ConsentWithdraw => {
                    self.withdraw_consent(s, out)?;
                    out.say(text);
                    name = next.unwrap();
                }
                NodeKind::Ask | NodeKind::Classify => {
                    let mut cs = Vec::new();
                    if node.slot_type == SlotType::Phone {
                        out.actions.push(Action::RequestContact);
                    }
                    if node.kind == NodeKind::Ask && !node.choices.is_empty() {
                        cs = self.node_choices(&node);
                    }
                    if text.is_empty() {
                        s.wait = Wait::Node;
                        s.choices = cs;
                    } else {
                        self.ask(s, out, text, cs, Wait::Node);
                    }
                    return Ok(());
                }
                NodeKind::Choice => {
                    let cs = self.node_choices(&node);
                    self.ask(s, out, text, cs, Wait::Node);
                    return Ok(());
                }
                NodeKind::Solved => {
                    self.ask(s, out, text, self.yes_no(), Wait::Node);
                    return Ok(());
                }
                NodeKind::Rating => {
                    let cs = EASE
                        .iter()
                        .enumerate()
                        .map(|(i, (id, l))| choice(id, l, Some(&(i + 1).to_string())))
                        .collect();
                    self.ask(s, out, text, cs, Wait::Node);
                    return Ok(());
                }
                NodeKind::End => {
                    out.say(text);
                    out.actions.push(Action::End);
                    s.ended = true;
                    s.prompt.clear();
                    s.choices.clear();
                    return Ok(());
                }
                NodeKind::Handoff => {
                    if self.hours.is_open(self.clock.now()) {
                        let now = self.now();
                        s.handoff = Some(Handoff {
                            since: now,
                            operator: None,
                            notified: false,
                        });
                        self.store.queue_put(&QueueItem {
                            session: s.key(),
                            channel: s.channel.clone(),
                            segment: s.segment.clone(),
                            intent: s.intent.clone(),
                            since: now,
                            operator: None,
                        })?;
                        out.say(text);
                        out.actions.push(Action::Handoff);
                        out.events.push("handoff".into());
                        s.prompt.clear();
                        s.choices.clear();
                        s.wait = Wait::Node;
                    } else {
                        out.events.push("handoff_closed".into());
                        let t = self.fill_s(s, node.closed_text.as_deref().unwrap_or_default());
                        let cs = self.node_choices(&node);
                        self.ask(s, out, t, cs, Wait::Node);
                    }
                    return Ok(());
                }
                NodeKind::Form => {
                    return self.start_form(s, &node, out);
                }
            }
        }
        anyhow::bail!("the dialog graph loops without waiting at node `{name}`")
    }

    fn node_choices(&self, node: &Node) -> Vec<ChoiceOut> {
        node.choices
            .iter()
            .map(|c| ChoiceOut {
                id: c.id.clone(),
                label: c.label.clone(),
                dtmf: c.dtmf.clone(),
                synonyms: c.synonyms.clone(),
            })
            .collect()
    }

    fn clear_form(&self, s: &mut Session) {
        s.slots.clear();
        s.labels.clear();
        s.personal.clear();
    }

    fn consent_active(&self, s: &Session) -> Result<bool> {
        Ok(self.store.consent(&s.key())?.is_some_and(|c| c.active()))
    }

    fn start_form(&self, s: &mut Session, node: &Node, out: &mut Out) -> Result<()> {
        self.clear_form(s);
        if node.action == Some(FormAction::ListAppointments) {
            return self.run_action(s, node, out);
        }
        if node.has_personal_fields() && !self.consent_active(s)? {
            out.events.push("consent_asked".into());
            self.ask(s, out, self.p("consent"), self.yes_no(), Wait::Consent);
            return Ok(());
        }
        self.ask_field(s, node, 0, out)
    }

    fn field_choices(&self, s: &Session, f: &Field) -> Result<Vec<ChoiceOut>> {
        let cfg = &self.schedule.cfg;
        let now = self.hours.local(self.clock.now());
        let numbered = |items: Vec<(String, String)>| -> Vec<ChoiceOut> {
            items
                .into_iter()
                .enumerate()
                .map(|(i, (id, l))| {
                    choice(&id, &l, (i < 9).then(|| (i + 1).to_string()).as_deref())
                })
                .collect()
        };
        let (service, office) = match s
            .slots
            .get("appointment")
            .and_then(|id| id.parse::<u64>().ok())
        {
            Some(id) => match self.store.appointment(id)? {
                Some(a) => (a.service, a.office),
                None => (String::new(), String::new()),
            },
            None => (
                s.slots.get("service").cloned().unwrap_or_default(),
                s.slots.get("office").cloned().unwrap_or_default(),
            ),
        };
        let free = |date: &str, t: &str| -> Result<bool> {
            Ok(self.store.booked(&service, &office, date, t)? < cfg.capacity)
        };
        Ok(match f.source {
            Some(Source::Services) => numbered(
                cfg.services
                    .iter()
                    .map(|x| (x.id.clone(), x.name.clone()))
                    .collect(),
            ),
            Some(Source::Offices) => numbered(
                cfg.offices
                    .iter()
                    .map(|x| {
                        (
                            x.id.clone(),
                            if x.address.is_empty() {
                                x.name.clone()
                            } else {
                                format!("{}, {}", x.name, x.address)
                            },
                        )
                    })
                    .collect(),
            ),
            Some(Source::Days) => {
                let mut days = Vec::new();
                for d in self.schedule.days_from(&now) {
                    let ds = d.to_string();
                    let mut any = false;
                    for t in self.schedule.times() {
                        if free(&ds, &time_id(t))? {
                            any = true;
                            break;
                        }
                    }
                    if any {
                        days.push((ds, day_label(d)));
                    }
                    if days.len() >= cfg.days_offered {
                        break;
                    }
                }
                numbered(days)
            }
            Some(Source::Times) => {
                let day = s.slots.get("day").cloned().unwrap_or_default();
                let mut ts = Vec::new();
                for t in self.schedule.times() {
                    if free(&day, &time_id(t))? {
                        ts.push((time_id(t), time_label(t)));
                    }
                    if ts.len() >= cfg.times_offered {
                        break;
                    }
                }
                numbered(ts)
            }
            Some(Source::MyAppointments) => numbered(
                self.store
                    .appointments_of(&s.key())?
                    .into_iter()
                    .map(|a| (a.id.to_string(), self.describe_appointment(&a)))
                    .collect(),
            ),
            None => Vec::new(),
        })
    }

    fn describe_appointment(&self, a: &Appointment) -> String {
        let service = self
            .schedule
            .service(&a.service)
            .map(|x| x.name.clone())
            .unwrap_or_else(|| a.service.clone());
        let office = self
            .schedule
            .office(&a.office)
            .map(|x| x.name.clone())
            .unwrap_or_else(|| a.office.clone());
        let day = a
            .date
            .parse::<jiff::civil::Date>()
            .map(day_label)
            .unwrap_or_else(|_| a.date.clone());
        let time = a
            .time
            .parse::<jiff::civil::Time>()
            .map(time_label)
            .unwrap_or_else(|_| a.time.clone());
        format!("{service}, {office}, {day} в {time}")
    }

    fn ask_field(&self, s: &mut Session, node: &Node, mut i: usize, out: &mut Out) -> Result<()> {
        // Fields already filled (when a taken time is chosen again) are not asked twice.
        while node
            .fields
            .get(i)
            .is_some_and(|f| s.slots.contains_key(&f.slot))
        {
            i += 1;
        }
        let Some(f) = node.fields.get(i) else {
            if node.action == Some(FormAction::ApplicationStatus) || node.confirm.is_none() {
                return self.run_action(s, node, out);
            }
            let text = self.fill_s(s, node.confirm.as_deref().unwrap_or_default());
            self.ask(s, out, text, self.yes_no(), Wait::FormConfirm);
            return Ok(());
        };
        let mut cs = Vec::new();
        if f.kind == SlotType::Choice {
            cs = self.field_choices(s, f)?;
            if cs.is_empty() {
                // Nothing to choose (no appointments, no free days): say so and move on.
                out.say(node.empty.clone().unwrap_or_else(|| self.p("slot_taken")));
                self.clear_form(s);
                let next = node.next.clone().unwrap();
                return self.enter(s, &next, out);
            }
        }
        if f.optional {
            cs.push(choice("skip", &self.p("choice_skip"), None));
        }
        if f.kind == SlotType::Phone {
            out.actions.push(Action::RequestContact);
        }
        let text = self.fill_s(s, &f.prompt);
        self.ask(s, out, text, cs, Wait::Field { field: i });
        Ok(())
    }

    fn on_field(
        &self,
        s: &mut Session,
        node: &Node,
        i: usize,
        input: &Input,
        out: &mut Out,
    ) -> Result<()> {
        let Some(f) = node.fields.get(i).cloned() else {
            return self.ask_field(s, node, i, out);
        };
        if f.optional
            && (matches!(input, Input::Choice(id) if id == "skip")
                || matches!(input, Input::Text(t) if style::is_skip(&self.graph, t)))
        {
            s.slots.insert(f.slot.clone(), String::new());
            return self.ask_field(s, node, i + 1, out);
        }
        let value = if f.kind == SlotType::Choice {
            match self.pick(s, input) {
                Some(id) if id != "skip" => {
                    let label = s
                        .choices
                        .iter()
                        .find(|c| c.id == id)
                        .map(|c| c.label.clone())
                        .unwrap_or_default();
                    s.labels.insert(f.slot.clone(), label);
                    id
                }
                _ => {
                    if let Input::Text(t) = input {
                        if style::is_no(&self.graph, t) {
                            return self.cancel_form(s, out);
                        }
                    }
                    out.say(self.p("choose_one"));
                    self.repeat(s, out);
                    return Ok(());
                }
            }
        } else {
            let raw = match input {
                Input::Text(t) | Input::Dtmf(t) => t.trim().to_string(),
                _ => {
                    self.repeat(s, out);
                    return Ok(());
                }
            };
            // «нет» instead of a value: the client does not want to go on.
            if style::is_no(&self.graph, &raw) {
                return self.cancel_form(s, out);
            }
            match self.check_slot(f.kind, &raw) {
                Ok(v) => v,
                Err(prompt) => {
                    out.personal_input = f.personal;
                    out.say(self.p(prompt));
                    self.repeat(s, out);
                    return Ok(());
                }
            }
        };
        if f.personal {
            s.personal.insert(f.slot.clone());
            s.pii.push(value.clone());
            out.personal_input = true;
        }
        s.slots.insert(f.slot.clone(), value);
        self.ask_field(s, node, i + 1, out)
    }

    fn cancel_form(&self, s: &mut Session, out: &mut Out) -> Result<()> {
        out.events.push("form_cancelled".into());
        self.clear_form(s);
        s.node = self.graph.classify.clone();
        self.ask(s, out, self.p("form_cancelled"), Vec::new(), Wait::Node);
        Ok(())
    }

    fn run_action(&self, s: &mut Session, node: &Node, out: &mut Out) -> Result<()> {
        let action = node.action.context("form without action")?;
        let next = node.next.clone().context("form without next")?;
        let done = node.text.clone().unwrap_or_default();
        let user = s.key();
        let cap = self.schedule.cfg.capacity;
        let slots = s.slots.clone();
        let slot = |k: &str| slots.get(k).cloned().unwrap_or_default();
        match action {
            FormAction::BookAppointment => {
                let a = Appointment {
                    id: 0,
                    user: user.clone(),
                    service: slot("service"),
                    office: slot("office"),
                    date: slot("day"),
                    time: slot("time"),
                    name: s.slots.get("name").filter(|n| !n.is_empty()).cloned(),
                    created: self.now(),
                };
                if !self.valid_slot(&a.date, &a.time) {
                    return self.retry_times(s, node, out);
                }
                match self.store.book(a, cap)? {
                    Ok(_) => out.events.push("appointment_booked".into()),
                    Err(_) => return self.retry_times(s, node, out),
                }
            }
            FormAction::CancelAppointment => {
                let id = slot("appointment").parse::<u64>().unwrap_or(0);
                match self.store.cancel(id, &user)? {
                    Ok(_) => out.events.push("appointment_cancelled".into()),
                    Err(BookingError::NotFound | BookingError::SlotTaken) => {
                        out.say(node.empty.clone().unwrap_or_default());
                        self.clear_form(s);
                        return self.enter(s, &next, out);
                    }
                }
            }
            FormAction::MoveAppointment => {
                let id = slot("appointment").parse::<u64>().unwrap_or(0);
                let (d, t) = (slot("day"), slot("time"));
                if !self.valid_slot(&d, &t) {
                    return self.retry_times(s, node, out);
                }
                match self.store.reschedule(id, &user, &d, &t, cap)? {
                    Ok(_) => out.events.push("appointment_moved".into()),
                    Err(BookingError::SlotTaken) => return self.retry_times(s, node, out),
                    Err(BookingError::NotFound) => {
                        out.say(node.empty.clone().unwrap_or_default());
                        self.clear_form(s);
                        return self.enter(s, &next, out);
                    }
                }
            }
            FormAction::RequestCallback => {
                let topic = match slot("topic") {
                    t if t.is_empty() => s
                        .intent
                        .as_ref()
                        .and_then(|i| self.nlu.kb.intent(i))
                        .map(|i| i.title.clone())
                        .unwrap_or_default(),
                    t => t,
                };
                s.slots.insert("topic".into(), topic.clone());
                self.store.add_callback(Callback {
                    id: 0,
                    user: user.clone(),
                    phone: slot("phone"),
                    preferred_time: slot("preferred_time"),
                    topic,
                    created: self.now(),
                })?;
                out.events.push("callback_requested".into());
            }
            FormAction::ApplicationStatus => {
                let number = slot("number");
                match self.status.lookup(&number) {
                    Ok(Some(st)) => {
                        s.slots.insert("status".into(), st.status);
                        s.slots.insert("details".into(), st.details);
                        out.events.push("status_found".into());
                    }
                    Ok(None) => {
                        out.say(self.fill_s(s, &self.p("status_unknown")));
                        self.clear_form(s);
                        return self.enter(s, &next, out);
                    }
                    Err(e) => {
                        tracing::warn!("application status: {e}");
                        out.events.push("status_unavailable".into());
                        out.say(self.p("status_unavailable"));
                        self.clear_form(s);
                        return self.enter(s, &next, out);
                    }
                }
            }
            FormAction::ListAppointments => {
                let list = self.store.appointments_of(&user)?;
                if list.is_empty() {
                    out.say(node.empty.clone().unwrap_or_default());
                    return self.enter(s, &next, out);
                }
                let lines: Vec<String> = list
                    .iter()
                    .map(|a| format!("— {}", self.describe_appointment(a)))
                    .collect();
                s.labels.insert("appointment".into(), lines.join("\n"));
            }
        }
        out.say(self.fill_s(s, &done));
        self.clear_form(s);
        self.enter(s, &next, out)
    }

    /// The chosen time was taken meanwhile: say so and offer the free times again.
    fn retry_times(&self, s: &mut Session, node: &Node, out: &mut Out) -> Result<()> {
        out.say(self.p("slot_taken"));
        match node
            .fields
            .iter()
            .position(|f| f.source == Some(Source::Times))
        {
            Some(i) => {
                s.slots.remove(&node.fields[i].slot);
                s.labels.remove(&node.fields[i].slot);
                self.ask_field(s, node, i, out)
            }
            None => self.enter(
                s,
                node.next.as_deref().unwrap_or(&self.graph.classify.clone()),
                out,
            ),
        }
    }

    fn valid_slot(&self, date: &str, time: &str) -> bool {
        let (Ok(d), Ok(t)) = (
            date.parse::<jiff::civil::Date>(),
            time.parse::<jiff::civil::Time>(),
        ) else {
            return false;
        };
        self.schedule
            .is_slot(d, t, self.clock.now(), &self.hours.tz)
    }

    /// Withdraws consent: records it, deletes the client's personal data
    /// (form values, callback requests, names on appointments, their traces
    /// in the history); it is not asked for again without new consent.
    fn withdraw_consent(&self, s: &mut Session, out: &mut Out) -> Result<()> {
        let key = s.key();
        if let Some(mut c) = self.store.consent(&key)? {
            if c.withdrawn_at.is_none() {
                c.withdrawn_at = Some(self.now());
                self.store.set_consent(&key, &c)?;
            }
        }
        let values = s.personal_values();
        for e in &mut s.history {
            for v in &values {
                e.text = e.text.replace(v.as_str(), "[удалено]");
            }
            e.text = anonymise(&e.text, &[]);
        }
        self.clear_form(s);
        s.pii.clear();
        self.store.forget_personal(&key)?;
        out.events.push("consent_withdrawn".into());
        Ok(())
    }
}

/// The version of a consent text: the first 12 hex digits of its sha256.
pub fn consent_version(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_normalised_or_rejected() {
        assert_eq!(
            parse_phone("+7 (912) 345-67-89").as_deref(),
            Some("+79123456789")
        );
        assert_eq!(parse_phone("89123456789").as_deref(), Some("+79123456789"));
        assert_eq!(parse_phone("9123456789").as_deref(), Some("+79123456789"));
        assert_eq!(parse_phone("12345").as_deref(), None);
        assert_eq!(parse_phone("позвоните мне 89123456789").as_deref(), None);
    }
}
