//! The graph's nodes: entering one (saying, answering, asking, handing off,
//! starting a form, ending) and the input a waiting node takes (choices,
//! asked values, «Ваш вопрос решён?», the ease rating).

use crate::store::{QueueItem, QueueOp};
use anyhow::Result;

use super::graph::{Node, NodeKind, SlotType};
use super::handoff::MAX_TRANSFERS;
use super::session::{ChoiceOut, Handoff, Session, Wait};
use super::{choice, style, Action, Engine, Input, Out, EASE, MAX_HOPS};

impl Engine {
    pub(super) fn on_node(
        &self,
        s: &mut Session,
        node: &Node,
        input: &Input,
        out: &mut Out,
    ) -> Result<()> {
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
            NodeKind::Choice | NodeKind::Handoff => self.on_choice(s, node, input, out),
            NodeKind::Ask => self.on_ask(s, node, input, out),
            NodeKind::Solved => self.on_solved(s, node, input, out),
            NodeKind::Rating => self.on_rating(s, node, input, out),
            NodeKind::Notifications => self.on_notifications(s, node, input, out),
            // Forms wait in Field/FormConfirm; End restarts in step(); the rest never wait.
            _ => {
                self.repeat(s, out);
                Ok(())
            }
        }
    }

    /// A choice (or a handoff node's choices): the picked choice, `on.yes`,
    /// `on.no`, `on.digits`, `on.text`, or free text as a new question.
    pub(super) fn on_choice(
        &self,
        s: &mut Session,
        node: &Node,
        input: &Input,
        out: &mut Out,
    ) -> Result<()> {
        let g = self.graph.clone();
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

    /// The value an ask node waits for: checked, kept in its slot, then on.
    pub(super) fn on_ask(
        &self,
        s: &mut Session,
        node: &Node,
        input: &Input,
        out: &mut Out,
    ) -> Result<()> {
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

    /// «Ваш вопрос решён?»: yes moves on; a second no offers the operator,
    /// a first one the other candidates.
    pub(super) fn on_solved(
        &self,
        s: &mut Session,
        node: &Node,
        input: &Input,
        out: &mut Out,
    ) -> Result<()> {
        let g = self.graph.clone();
        match self.pick(s, input).as_deref() {
            Some("yes") => {
                out.events.push("solved_yes".into());
                s.unsolved = 0;
                let next = node.on["yes"].clone();
                self.enter(s, &next, out)
            }
            Some("no") => {
                out.events.push("solved_no".into());
                s.unsolved += 1;
                // a knowledge-base answer that did not help is not given again
                // (an action, like a status or a booking, may be asked again)
                let routes = &g.node(&g.classify).routes;
                if let Some(i) = s.intent.as_ref().filter(|i| !routes.contains_key(*i)) {
                    if !s.rejected.contains(i) {
                        s.rejected.push(i.clone());
                    }
                }
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
        }
    }

    /// The ease rating: saved (or the 0–10 score asked next), or skipped.
    pub(super) fn on_rating(
        &self,
        s: &mut Session,
        node: &Node,
        input: &Input,
        out: &mut Out,
    ) -> Result<()> {
        let g = self.graph.clone();
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
        if node.satisfaction {
            let mut cs: Vec<ChoiceOut> = (1..=5)
                .map(|n| {
                    let n = n.to_string();
                    choice(&n, &n, Some(&n))
                })
                .collect();
            cs.push(choice("skip", &self.p("choice_skip"), None));
            self.ask(
                s,
                out,
                self.p("satisfaction"),
                cs,
                Wait::Satisfaction { ease },
            );
            return Ok(());
        }
        self.after_satisfaction(s, node, ease, None, out)
    }

    /// NPS 0–10 when the node asks it; otherwise the rating is saved and
    /// the conversation goes on.
    pub(super) fn after_satisfaction(
        &self,
        s: &mut Session,
        node: &Node,
        ease: u8,
        satisfaction: Option<u8>,
        out: &mut Out,
    ) -> Result<()> {
        if node.nps {
            let mut cs: Vec<ChoiceOut> = (0..=10)
                .map(|n| choice(&n.to_string(), &n.to_string(), None))
                .collect();
            cs.push(choice("skip", &self.p("choice_skip"), None));
            self.ask(s, out, self.p("nps"), cs, Wait::Nps { ease, satisfaction });
            return Ok(());
        }
        self.save_feedback(s, ease, satisfaction, None, out)?;
        let next = node
            .next
            .clone()
            .unwrap_or_else(|| self.graph.finish.clone());
        self.enter(s, &next, out)
    }

    /// The text of the first of a `say` node's cases that holds, if any.
    fn say_case(&self, s: &Session, node: &Node, out: &Out) -> Option<String> {
        let said = out
            .input
            .as_deref()
            .map(crate::nlu::kb::normalize_text)
            .unwrap_or_default();
        let greeted = s.greeted_at.is_some_and(|t| s.turns <= t + 1);
        node.cases
            .iter()
            .find(|c| {
                (!c.after_greeting || greeted)
                    && c.re.as_ref().is_none_or(|r| r.is_match(&said))
                    && (c.re.is_some() || c.after_greeting)
            })
            .map(|c| c.text.clone())
    }

    /// Enters a node: says what it says and either waits or moves on.
    pub(super) fn enter(&self, s: &mut Session, name: &str, out: &mut Out) -> Result<()> {
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
                    let text = match self.say_case(s, &node, out) {
                        Some(t) => self.fill_s(s, &t),
                        None => text,
                    };
                    if name == g.start {
                        s.greeted_at = Some(s.turns);
                    }
                    out.say(text);
                    name = next.unwrap();
                }
                NodeKind::Answer => {
                    match s.intent.as_ref().and_then(|i| self.nlu.kb.intent(i)) {
                        Some(it) => {
                            out.answer(it.answer_for(&s.segment).to_string());
                            out.links.extend(it.links.iter().cloned());
                            out.events.push("answered".into());
                        }
                        None => out.say(self.p("not_understood")),
                    }
                    name = next.unwrap();
                }
                NodeKind::ConsentWithdraw => {
                    self.withdraw_consent(s, out)?;
                    self.forget_notices(s, out)?;
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
                        if self.graph.channel(&s.channel).line_queue {
                            // The channel's own line takes the caller
                            // (Asterisk's Queue()): nothing waits in the
                            // console, and the pass to a person counts.
                            s.transfers = (s.transfers + 1).min(MAX_TRANSFERS);
                        } else {
                            let now = self.now();
                            s.handoff = Some(Handoff {
                                since: now,
                                operator: None,
                                notified: false,
                            });
                            out.writes.queue.push(QueueOp::Put(QueueItem {
                                session: s.key(),
                                channel: s.channel.clone(),
                                segment: s.segment.clone(),
                                intent: s.intent.clone(),
                                since: now,
                                operator: None,
                            }));
                        }
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
                NodeKind::Notifications => return self.enter_notifications(s, text, out),
                NodeKind::NotificationsOff => {
                    self.enter_notifications_off(s, &text, out)?;
                    name = next.unwrap();
                }
                NodeKind::Search => {
                    return self.enter_search(s, &node, out);
                }
            }
        }
        anyhow::bail!("the dialog graph loops without waiting at node `{name}`")
    }
}
