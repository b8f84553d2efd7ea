//! The step machine: how one input moves a session through the dialog graph
//! (segments, an operator's hold, a fresh or ended conversation, guards on
//! the text, topics, the operator at any step, silence, withdrawal, and what
//! the conversation waits for). Prompts are in `prompt`, understanding free
//! text in `understand`, nodes in `nodes`.

use crate::nlu::kb::normalize_text;
use anyhow::Result;

use super::graph::{Node, NodeKind};
use super::session::{Handoff, SegmentSource, Session, Wait};
use super::{fill, style, Action, Engine, Input, Out};

impl Engine {
    pub(super) fn new_conversation(&self, s: &mut Session) {
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

    /// One input on a session. The checks run in this order, each able to end
    /// the turn: a new conversation, a segment, an operator holding the
    /// conversation, a fresh or ended conversation, empty or too long text, a
    /// topic or finish, the operator at any step, silence and attachments,
    /// segment inference and withdrawal; then what the session waits for.
    pub(super) fn step(&self, s: &mut Session, input: Input, out: &mut Out) -> Result<()> {
        let g = self.graph.clone();
        if input == Input::Start {
            self.new_conversation(s);
            return self.enter(s, &g.start, out);
        }
        if let Input::SetSegment(seg) = &input {
            return self.step_segment(s, seg, out);
        }
        // An operator holds the conversation: the bot stays silent.
        if let Some(h) = &mut s.handoff {
            self.step_handoff_silent(h, &input, out);
            return Ok(());
        }
        if s.wait == Wait::Fresh || s.ended {
            self.step_fresh(s, out)?;
            if matches!(input, Input::Silence) {
                return Ok(());
            }
        }
        if self.step_guards(s, &input, out) {
            return Ok(());
        }
        // A notification's buttons (unsubscribe, cancel or move), at any step.
        if let Some(r) = self.step_notice(s, &input, out) {
            return r;
        }
        if let Some(r) = self.step_topic(s, &input, out) {
            return r;
        }
        // An operator at any step: the word, the choice, or the key 0.
        if self.asks_for_operator(s, &input) {
            out.events.push("operator_requested".into());
            // an application left for a person: what was filled is kept as a draft
            self.keep_draft_on_leave(s, out)?;
            return self.enter(s, &g.operator, out);
        }
        if let Some(r) = self.step_silence(s, &input, out) {
            return r;
        }
        if let Some(r) = self.step_text(s, &input, out) {
            return r;
        }
        self.step_wait(s, &input, out)
    }

    /// The client (or an integration) picks a segment profile: it is kept,
    /// said, and the last prompt repeated.
    pub(super) fn step_segment(&self, s: &mut Session, seg: &String, out: &mut Out) -> Result<()> {
        let g = self.graph.clone();
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
        Ok(())
    }

    /// An operator holds the conversation: a client still waiting for one is
    /// told so once; otherwise the bot says nothing.
    pub(super) fn step_handoff_silent(&self, h: &mut Handoff, input: &Input, out: &mut Out) {
        if h.operator.is_none()
            && !h.notified
            && matches!(input, Input::Text(_) | Input::Attachment(_))
        {
            h.notified = true;
            out.say(self.p("operator_waiting"));
        } else {
            out.actions.push(Action::Silent);
        }
    }

    /// A client who writes first (or again after the end) is greeted and
    /// their message is taken as the question.
    pub(super) fn step_fresh(&self, s: &mut Session, out: &mut Out) -> Result<()> {
        let g = self.graph.clone();
        if s.ended {
            self.new_conversation(s);
            self.enter(s, &g.classify, out)?;
            out.texts.clear();
        } else {
            self.enter(s, &g.start, out)?;
        }
        Ok(())
    }

    /// Empty or too long text is refused: true when the turn ends here.
    pub(super) fn step_guards(&self, s: &Session, input: &Input, out: &mut Out) -> bool {
        if let Input::Text(t) = input {
            if t.trim().is_empty() || t.chars().all(|c| c.is_whitespace() || c.is_control()) {
                out.say(self.p("empty"));
                self.repeat(s, out);
                return true;
            }
            if t.chars().count() > self.cfg.max_text_chars {
                out.say(fill(
                    &self.p("too_long"),
                    &[("max", self.cfg.max_text_chars.to_string())],
                ));
                out.choices = s.choices.clone();
                return true;
            }
        }
        false
    }

    /// A topic (as if understood) or finish, whatever the session waits for.
    pub(super) fn step_topic(
        &self,
        s: &mut Session,
        input: &Input,
        out: &mut Out,
    ) -> Option<Result<()>> {
        let g = self.graph.clone();
        match input {
            Input::Topic(id) if self.nlu.kb.intent(id).is_some() => {
                s.node = g.classify.clone();
                Some(self.route_intent(s, id, out))
            }
            Input::Topic(_) => {
                s.node = g.classify.clone();
                let top = s.candidates.iter().take(3).cloned().collect();
                Some(self.offer_options(s, out, self.p("not_understood"), top))
            }
            Input::Finish => Some(self.enter(s, &g.finish, out)),
            _ => None,
        }
    }

    /// Whether the input asks for an operator: the word, the choice, or the key 0.
    pub(super) fn asks_for_operator(&self, s: &Session, input: &Input) -> bool {
        let g = self.graph.clone();
        match input {
            Input::Dtmf(d) => d.trim() == "0",
            Input::Choice(id) => id == "operator",
            Input::Text(t) => {
                style::wants_operator(&g, t) && !matches!(s.wait, Wait::Field { .. })
                    || normalize_text(t) == "оператор"
            }
            _ => false,
        }
    }

    /// Silence (the node's `on.silence`, or a reminder, or the end after too
    /// many) and attachments end the turn; any other input resets the count.
    pub(super) fn step_silence(
        &self,
        s: &mut Session,
        input: &Input,
        out: &mut Out,
    ) -> Option<Result<()>> {
        match input {
            Input::Silence => {
                if let Some(next) = self
                    .graph
                    .nodes
                    .get(&s.node)
                    .and_then(|n| n.on.get("silence"))
                    .cloned()
                {
                    s.silences = 0;
                    return Some(self.enter(s, &next, out));
                }
                s.silences += 1;
                let limit = self.cfg.silence_limit.max(1);
                if s.silences > limit + 1 {
                    out.say(self.p("silence_end"));
                    out.actions.push(Action::End);
                    out.events.push("silence_end".into());
                    s.ended = true;
                    return Some(Ok(()));
                }
                if s.silences == limit + 1 {
                    // Asked again, offered the keypad: now a person.
                    out.events.push("silence_operator".into());
                    let op = self.graph.operator.clone();
                    return Some(self.enter(s, &op, out));
                }
                if s.silences >= 2 {
                    // The keypad: the node's own options with their keys,
                    // or its menu of topics (`on.keypad`).
                    out.events.push("silence_keypad".into());
                    out.say(self.p("silence_keypad"));
                    let menu = self
                        .graph
                        .nodes
                        .get(&s.node)
                        .and_then(|n| n.on.get("keypad"))
                        .cloned();
                    if let (Some(menu), true) = (menu, s.choices.is_empty()) {
                        let silences = s.silences;
                        let r = self.enter(s, &menu, out);
                        s.silences = silences;
                        return Some(r);
                    }
                    self.repeat(s, out);
                    return Some(Ok(()));
                }
                out.say(self.p("silence"));
                self.repeat(s, out);
                Some(Ok(()))
            }
            Input::Attachment(_) => {
                out.say(self.p("attachment"));
                self.repeat(s, out);
                Some(Ok(()))
            }
            _ => {
                s.silences = 0;
                None
            }
        }
    }

    /// Text outside a form: the segment inferred from it, and a request to
    /// withdraw consent (which ends the turn).
    pub(super) fn step_text(
        &self,
        s: &mut Session,
        input: &Input,
        out: &mut Out,
    ) -> Option<Result<()>> {
        let g = self.graph.clone();
        if let Input::Text(t) = input {
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
            if let Some(city) = self.city_in(t) {
                s.slots.insert("city".into(), city);
            }
            if !matches!(s.wait, Wait::Field { .. }) {
                self.note_facts(s, t);
            }
            // «мой профиль», «удалить данные профиля»: before withdrawal
            if let Some(r) = self.profile_rule(s, input, out) {
                return Some(r);
            }
            if style::wants_withdrawal(&g, t) {
                if let Some(node) = self.withdraw_node() {
                    return Some(self.enter(s, &node, out));
                }
            }
            if let Some(r) = self.continue_draft(s, t, out) {
                return Some(r);
            }
        }
        None
    }

    /// What the session waits for decides what the input means.
    pub(super) fn step_wait(&self, s: &mut Session, input: &Input, out: &mut Out) -> Result<()> {
        let g = self.graph.clone();
        let wait = s.wait.clone();
        let node = g.node(&s.node).clone();
        match wait {
            Wait::Fresh => Ok(()),
            Wait::Confirm { intent } => match self.pick(s, input).as_deref() {
                Some("yes") => {
                    out.events.push("confirm_yes".into());
                    out.confirmed = Some(intent.clone());
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
                _ => self.free_text_or_repeat(s, input, out),
            },
            Wait::Options => match self.pick(s, input) {
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
                Some(id) if self.nlu.kb.intent(&id).is_some() => {
                    out.events.push("option_chosen".into());
                    out.confirmed = Some(id.clone());
                    self.route_intent(s, &id, out)
                }
                _ => self.free_text_or_repeat(s, input, out),
            },
            Wait::OfferOperator => match self.pick(s, input).as_deref() {
                Some("yes") => self.enter(s, &g.operator, out),
                Some("no") | Some("rephrase") => {
                    s.node = g.classify.clone();
                    self.ask(s, out, self.p("rephrase_only"), Vec::new(), Wait::Node);
                    Ok(())
                }
                _ => self.free_text_or_repeat(s, input, out),
            },
            Wait::Consent => self.on_consent(s, &node, input, out),
            Wait::Field { field } => self.on_field(s, &node, field, input, out),
            Wait::FormConfirm
                if node.action == Some(super::graph::FormAction::SubmitApplication) =>
            {
                self.on_application_confirm(s, &node, input, out)
            }
            Wait::FormConfirm => match self.pick(s, input).as_deref() {
                Some("yes") => self.run_action(s, &node, out),
                Some("back") => self.confirm_back(s, &node, out),
                Some("no") | Some("cancel") => {
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
            Wait::Satisfaction { ease } => self.on_satisfaction(s, &node, ease, input, out),
            Wait::Nps { ease, satisfaction } => {
                self.on_nps(s, &node, ease, satisfaction, input, out)
            }
            Wait::Node => self.on_node(s, &node, input, out),
            Wait::Search => self.on_search(s, input, out),
        }
    }

    /// A score from 0 to `max` (a key, a number in digits or words, a
    /// choice), `Some(None)` for a skip, `None` for anything else.
    fn score(&self, input: &Input, min: u8, max: u8) -> Option<Option<u8>> {
        let g = &self.graph;
        let score = match input {
            Input::Dtmf(t) => t.trim().trim_end_matches('#').parse::<u8>().ok(),
            // «8», «восемь», «на десять баллов»
            Input::Text(t) => super::values::number(t).and_then(|n| u8::try_from(n).ok()),
            Input::Choice(id) => id.parse::<u8>().ok(),
            _ => None,
        }
        .filter(|n| (min..=max).contains(n));
        let skip = matches!(input, Input::Choice(id) if id == "skip")
            || matches!(input, Input::Text(t) if style::is_skip(g, t));
        match score {
            Some(n) => Some(Some(n)),
            None if skip => Some(None),
            None => None,
        }
    }

    /// Satisfaction 1–5 after the ease rating (or a skip): then NPS or on.
    pub(super) fn on_satisfaction(
        &self,
        s: &mut Session,
        node: &Node,
        ease: u8,
        input: &Input,
        out: &mut Out,
    ) -> Result<()> {
        let Some(satisfaction) = self.score(input, 1, 5) else {
            out.say(self.p("choose_one"));
            self.repeat(s, out);
            return Ok(());
        };
        self.after_satisfaction(s, node, ease, satisfaction, out)
    }

    /// The 0–10 score after the ease rating (or a skip): saved, then on.
    pub(super) fn on_nps(
        &self,
        s: &mut Session,
        node: &Node,
        ease: u8,
        satisfaction: Option<u8>,
        input: &Input,
        out: &mut Out,
    ) -> Result<()> {
        let Some(score) = self.score(input, 0, 10) else {
            out.say(self.p("choose_one"));
            self.repeat(s, out);
            return Ok(());
        };
        self.save_feedback(s, ease, satisfaction, score, out)?;
        let next = node
            .next
            .clone()
            .unwrap_or_else(|| self.graph.finish.clone());
        self.enter(s, &next, out)
    }

    pub(super) fn withdraw_node(&self) -> Option<String> {
        self.graph
            .nodes
            .iter()
            .find(|(_, n)| n.kind == NodeKind::ConsentWithdraw)
            .map(|(k, _)| k.clone())
    }

    /// Free text where a choice was expected is a new question; anything else repeats the prompt.
    pub(super) fn free_text_or_repeat(
        &self,
        s: &mut Session,
        input: &Input,
        out: &mut Out,
    ) -> Result<()> {
        let g = self.graph.clone();
        match input {
            // a bare «да» or «нет» is no question: the choices again
            Input::Text(t) if !style::is_yes(&g, t) && !style::is_no(&g, t) => {
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
}
