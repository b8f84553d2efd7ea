//! The engine core: a conversation's turn under its lock, committed with
//! everything it wrote (`TurnWrites`: the session, its log entry, the
//! channel's delivery records, the input's marker) in one storage commit,
//! run again when a condition checked during the turn lost a race; the
//! client's turn (history, log entry); what channels may ask of a session;
//! resuming; and rendering a turn for its channel.

use crate::analytics::{anonymise, client_pseudonym, pseudonym, LogEntry};
use crate::nlu::kb::Link;
use crate::store::{Committed, ConversationLock, Keep, SessionKey, TurnWrites};
use anyhow::Result;
use std::sync::Arc;

use super::graph::SlotType;
use super::session::{ChoiceOut, Entry, Session, Wait};
use super::{graph, style, Action, Engine, Image, Input, Out, PendingReply, Turn};

/// How often a turn runs again when its commit lost a race.
const ATTEMPTS: usize = 3;

/// Options of a client's turn.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurnOpts<'a> {
    /// Identifies the input: committed with the turn, and an input whose
    /// marker was committed before is not run again.
    pub marker: Option<&'a str>,
    /// Whose style applies when it is not the session's channel's (web,
    /// telegram, voice; the REST API lets an integration choose).
    pub style: Option<&'a str>,
}

impl Engine {
    /// Serialises the turns of a conversation with `locks` (in-process by
    /// default; a shared lock for several instances).
    pub fn with_locks(mut self, locks: Arc<dyn ConversationLock>) -> Self {
        self.locks = locks;
        self
    }

    /// Runs `f` on the session of `key` under its lock and commits it with
    /// what `f` wrote and `marker`: an input whose marker was committed
    /// before is not run again (None). Returns what the commit assigned too
    /// (the web outbox's sequence numbers).
    pub(crate) fn with_session_committed<T>(
        &self,
        key: &SessionKey,
        marker: Option<&str>,
        mut f: impl FnMut(&Self, &mut Session, &mut TurnWrites) -> Result<T>,
    ) -> Result<Option<(T, Committed)>> {
        let _held = self.locks.lock(&key.to_string());
        if let Some(m) = marker {
            if self.store.marked(m)? {
                return Ok(None);
            }
        }
        for _ in 0..ATTEMPTS {
            let mut s: Session = self.store.session(key)?.unwrap_or_default();
            if s.channel.is_empty() {
                s.channel = key.channel.clone();
                s.user = key.user.clone();
                s.segment = "universal".into();
            }
            let mut w = TurnWrites::default();
            let v = f(self, &mut s, &mut w)?;
            let over = s.history.len().saturating_sub(self.cfg.history_limit);
            s.history.drain(..over);
            w.session = Some((key.clone(), serde_json::to_vec(&s)?));
            w.marker = marker.map(str::to_string);
            match self.store.commit(&w)? {
                Ok(c) => return Ok(Some((v, c))),
                Err(conflict) => tracing::info!("{key}: {conflict}; the turn runs again"),
            }
        }
        anyhow::bail!("{key}: the turn lost {ATTEMPTS} races in a row; try again")
    }

    /// Removes the conversations in which the client never said anything
    /// and nothing happened for `older_than_s` seconds (a page opened and
    /// left); returns how many.
    pub fn expire_silent(&self, now: i64, older_than_s: i64) -> Result<usize> {
        let mut n = 0;
        for key in self.store.session_keys()? {
            let _held = self.locks.lock(&key.to_string());
            let Some(s) = self.session(&key)? else {
                continue;
            };
            let said = s.history.iter().any(|e| e.who == "client");
            let last = s.history.last().map_or(0, |e| e.at);
            if !said && s.handoff.is_none() && now - last > older_than_s {
                self.store.remove_conversation(&key)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The stored conversation of a client.
    pub fn session(&self, key: &SessionKey) -> Result<Option<Session>> {
        self.store.session(key)
    }

    /// Whether the conversation waits for a phone number (a channel may
    /// accept a shared contact then, and only then).
    pub fn expects_phone(&self, key: &SessionKey) -> bool {
        let Ok(Some(s)) = self.session(key) else {
            return false;
        };
        let Wait::Field { field } = s.wait else {
            return false;
        };
        self.graph
            .nodes
            .get(&s.node)
            .and_then(|n| n.fields.get(field))
            .is_some_and(|f| f.kind == SlotType::Phone)
    }

    /// Whether a choice offered in turn `seq` is out of date (a button of
    /// an older message).
    pub fn is_stale(&self, key: &SessionKey, seq: u64) -> bool {
        let current = self
            .session(key)
            .ok()
            .flatten()
            .map(|s| s.turns)
            .unwrap_or(0);
        seq != current
    }

    fn known_channel(channel: &str) -> Result<()> {
        if !graph::CHANNELS.contains(&channel) {
            anyhow::bail!("unknown channel {channel:?} (web, telegram or voice)");
        }
        Ok(())
    }

    /// One turn: the client's input in, the bot's reply out (saved before it returns).
    pub fn handle(&self, channel: &str, user: &str, input: Input) -> Result<Turn> {
        Self::known_channel(channel)?;
        let key = SessionKey::new(channel, user);
        Ok(self
            .turn(&key, input, TurnOpts::default(), &|_| Ok(Keep::default()))?
            .expect("no marker, always runs")
            .0)
    }

    /// A turn for an input identified by `marker` (a Telegram update id…):
    /// the marker is saved with the turn, and an input whose marker was saved
    /// before is not processed again (None) — exactly once across restarts.
    /// The reply is also saved as undelivered (`PendingReply`) until the
    /// channel calls `Storage::delivered` for the marker.
    pub fn handle_once(
        &self,
        channel: &str,
        user: &str,
        input: Input,
        marker: Option<&str>,
    ) -> Result<Option<Turn>> {
        Self::known_channel(channel)?;
        let key = SessionKey::new(channel, user);
        let keep = |t: &Turn| -> Result<Keep> {
            let (Some(m), Some(r)) = (marker, self.pending_reply(user, t, None)?) else {
                return Ok(Keep::default());
            };
            Ok(Keep {
                undelivered: vec![(m.to_string(), r)],
                marker: Some(m.to_string()),
                ..Default::default()
            })
        };
        let opts = TurnOpts {
            marker,
            style: None,
        };
        Ok(self.turn(&key, input, opts, &keep)?.map(|(t, _)| t))
    }

    /// A client's turn on a channel: committed with what `keep` returns for
    /// it (the channel's delivery records) and the input's marker; None when
    /// the marker was committed before.
    pub fn turn(
        &self,
        key: &SessionKey,
        input: Input,
        opts: TurnOpts,
        keep: &dyn Fn(&Turn) -> Result<Keep>,
    ) -> Result<Option<(Turn, Committed)>> {
        self.with_session_committed(key, opts.marker, |e, s, w| {
            if let Some(style) = opts.style {
                s.style = Some(style.to_string()).filter(|x| *x != s.channel);
            }
            let turn = e.client_turn(s, &input, w)?;
            w.keep(&keep(&turn)?);
            Ok(turn)
        })
    }

    /// Steps the graph for `input` and records the turn in the history and
    /// the log entry.
    fn client_turn(&self, s: &mut Session, input: &Input, w: &mut TurnWrites) -> Result<Turn> {
        let started = std::time::Instant::now();
        let mut out = Out::default();
        let client_text = match input {
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
        if let Input::Text(t) = input {
            out.input = Some(t.clone());
        }
        // What the bot said in the turn before: not said again straight away
        // (unless this turn answers anew or asks again, see `render`).
        let before = s
            .history
            .iter()
            .rev()
            .find(|e| e.who == "bot")
            .map(|e| e.text.clone());
        self.step(s, input.clone(), &mut out)?;
        let before =
            before.filter(|_| out.answer.is_none() && !out.events.iter().any(|e| e == "reprompt"));
        let now = self.now();
        if !client_text.is_empty() {
            s.history.push(Entry {
                who: "client".into(),
                text: client_text.clone(),
                at: now,
            });
        }
        s.turns += 1;
        let mut turn = self.render(
            s,
            &Said {
                texts: &out.texts,
                answer: out.answer,
                before: before.as_deref(),
                image: out.image.as_ref().map(|(i, n)| (i, *n)),
            },
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
        let text = if out.personal_input {
            "[данные]".into()
        } else if !matches!(input, Input::Text(_)) {
            String::new()
        } else {
            anonymise(
                &client_text,
                &personal.iter().map(String::as_str).collect::<Vec<_>>(),
            )
        };
        let mut writes = std::mem::take(&mut out.writes);
        let situation = self.situation_of(s.intent.as_deref());
        writes.log = Some(LogEntry {
            ts: now,
            conversation: pseudonym(&self.secret, &s.key(), s.conversation),
            client: client_pseudonym(&self.secret, &s.key()),
            channel: s.channel.clone(),
            segment: s.segment.clone(),
            node: s.node.clone(),
            text,
            intent: s.intent.clone(),
            decision: s.decision.clone(),
            scores: out.scores,
            confirmed: out.confirmed,
            situation,
            answer_ms: Some(started.elapsed().as_millis() as u64),
            rating: out.rating,
            events: out.events,
        });
        *w = writes;
        Ok(turn)
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
            &Said {
                texts: &out.texts,
                answer: out.answer,
                before: None,
                image: out.image.as_ref().map(|(i, n)| (i, *n)),
            },
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
    /// The graph's fixed texts (prompts and node texts without
    /// placeholders) as `channel` says them to the universal profile: what
    /// a voice robot synthesises ahead of its calls.
    pub fn fixed_texts(&self, channel: &str) -> Vec<String> {
        let g = &self.graph;
        let ch = g.channel(channel);
        let mut texts: Vec<&String> = g.prompts.values().collect();
        let mut nodes: Vec<_> = g.nodes.iter().collect();
        nodes.sort_by(|a, b| a.0.cmp(b.0));
        texts.extend(nodes.iter().filter_map(|(_, n)| n.text.as_ref()));
        let mut out: Vec<String> = texts
            .into_iter()
            .filter(|t| !t.contains('{'))
            .map(|t| style::adapt(&style::channel_words(t, ch), g, channel, "universal"))
            .collect();
        out.dedup();
        out
    }

    pub fn resume(&self, channel: &str, user: &str) -> Result<Option<Turn>> {
        let Some(s) = self.session(&SessionKey::new(channel, user))? else {
            return Ok(None);
        };
        if s.ended || s.wait == Wait::Fresh {
            return Ok(None);
        }
        let texts = [s.prompt.clone()];
        Ok(Some(self.render(
            &s,
            &Said::plain(&texts),
            s.choices.clone(),
            Vec::new(),
            Vec::new(),
        )))
    }

    /// What the client sees or hears of a turn: each text styled for the
    /// channel and the segment (the engine's own wording also put in the
    /// channel's words: «скажите» on voice), sentences said earlier in the
    /// same turn left out, and the links placed right after the answer.
    pub(crate) fn render(
        &self,
        s: &Session,
        said: &Said,
        choices: Vec<ChoiceOut>,
        actions: Vec<Action>,
        links: Vec<Link>,
    ) -> Turn {
        let g = &self.graph;
        let style_of = s.style.as_deref().unwrap_or(&s.channel);
        let ch = g.channel(style_of);
        let choices = choices
            .into_iter()
            .map(|mut c| {
                c.label = style::adapt(&c.label, g, style_of, &s.segment);
                c
            })
            .collect();
        let mut paragraphs: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // The engine's own sentences said in the turn before are not
        // repeated: a turn with a new answer (and its «Ваш вопрос решён?»)
        // and one asking again after unusable input pass no `before`; a
        // turn that would say nothing else keeps its words.
        let before: std::collections::HashSet<String> = said
            .before
            .map(|b| {
                style::sentences(b)
                    .iter()
                    .map(|x| style::sentence_key(x))
                    .collect()
            })
            .unwrap_or_default();
        let mut links_at = None;
        let mut image_at = None;
        for (i, t) in said.texts.iter().enumerate() {
            let answer = said.answer == Some(i);
            let t = if answer {
                t.clone()
            } else {
                style::channel_words(t, ch)
            };
            let t = style::adapt(&t, g, style_of, &s.segment);
            let t = if answer {
                t
            } else {
                let fresh = style::keep_sentences(&t, |k| !before.contains(k));
                if fresh.is_empty() && paragraphs.is_empty() && i + 1 == said.texts.len() {
                    t
                } else {
                    fresh
                }
            };
            let t = style::without_sentences(&t, &mut seen);
            if !t.is_empty() {
                paragraphs.push(t);
            }
            let count = || paragraphs.iter().map(|p| p.split("\n\n").count()).sum();
            if answer {
                links_at = Some(count());
            }
            if said.image.is_some_and(|(_, n)| n == i + 1) {
                image_at = Some(count());
            }
        }
        let text = paragraphs.join(if ch.spoken { " " } else { "\n\n" });
        let links = if ch.links { links } else { Vec::new() };
        Turn {
            text,
            choices,
            actions,
            intent: s.intent.clone(),
            decision: s.decision.clone(),
            segment: s.segment.clone(),
            links_at: links_at.filter(|_| !links.is_empty()),
            links,
            node: s.node.clone(),
            seq: s.turns,
            events: Vec::new(),
            image: said.image.map(|(img, _)| Image {
                at: image_at,
                ..img.clone()
            }),
        }
    }
}

/// The texts of a turn in the order they are said, and which one is the
/// knowledge base's answer.
pub(crate) struct Said<'a> {
    pub texts: &'a [String],
    pub answer: Option<usize>,
    /// What the bot said in the turn before.
    pub before: Option<&'a str>,
    /// A picture, shown after the first `n` of `texts` (`Out::show`).
    pub image: Option<(&'a Image, usize)>,
}

impl<'a> Said<'a> {
    /// Texts of the engine's (or an operator's) own, no answer among them.
    pub fn plain(texts: &'a [String]) -> Self {
        Self {
            texts,
            answer: None,
            before: None,
            image: None,
        }
    }
}
