//! Understanding a free-text question: the classifier's decision becomes an
//! answer, «Вы имели в виду …?», three likely options, or an honest "not
//! understood" with options; and routing an intent to its node.

use crate::nlu::classifier::Decision;
use anyhow::{Context, Result};

use super::session::{ChoiceOut, Session, Wait};
use super::{choice, fill, style, Engine, Out};

impl Engine {
    /// Whether a text given where a value was asked for (a number, an
    /// interview's answer) is a question on another topic instead: at least
    /// two words, and understood with certainty as an intent other than the
    /// one being served. Then the client is answered, not told the value is
    /// wrong: «настроить уведомления» at an application number's field.
    pub(super) fn is_new_question(&self, s: &Session, text: &str) -> bool {
        let words = text
            .split_whitespace()
            .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
            .count();
        if words < 2 {
            return false;
        }
        let Ok(c) = self.nlu.classifier.classify(text) else {
            return false;
        };
        c.decision == Decision::Answer
            && c.top
                .first()
                .is_some_and(|t| s.intent.as_deref() != Some(t.intent.as_str()))
    }

    pub(super) fn classify_text(&self, s: &mut Session, text: &str, out: &mut Out) -> Result<()> {
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
        out.scores = c
            .top
            .iter()
            .take(3)
            .map(|t| crate::analytics::Candidate {
                intent: t.intent.clone(),
                score: t.score,
            })
            .collect();
        let direct = &self.graph.node(&self.graph.classify).direct;
        let best = c.top.first().map(|t| t.intent.clone());
        // A conversational intent understood well enough is acted on at once.
        if let (Some(b), Decision::Answer | Decision::Confirm) = (&best, c.decision) {
            if direct.contains(b) {
                s.decision = Some(Decision::Answer.as_str().to_string());
                out.events.push("decision:answer".into());
                return self.route_intent(s, b, out);
            }
        }
        // Options and guesses are questions the client can have: never a
        // conversational intent, never an answer the client already rejected.
        s.candidates = c
            .top
            .iter()
            .map(|t| t.intent.clone())
            .filter(|i| !direct.contains(i) && !s.rejected.contains(i))
            .collect();
        let mut decision = c.decision;
        if best.as_ref().is_some_and(|b| s.rejected.contains(b))
            && matches!(decision, Decision::Answer | Decision::Confirm)
        {
            out.events.push("rejected_again".into());
            decision = Decision::Alternatives;
        }
        let best = s.candidates.first().cloned();
        if best.is_none() && matches!(decision, Decision::Answer | Decision::Confirm) {
            decision = Decision::OutOfScope;
        }
        s.decision = Some(decision.as_str().to_string());
        out.events.push(format!("decision:{}", decision.as_str()));
        match decision {
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
                // options again straight after options: said another way
                let again = self.p("alternatives_again");
                let text = if s.wait == Wait::Options && s.prompt != again {
                    again
                } else {
                    self.p("alternatives")
                };
                self.offer_options(s, out, text, top)
            }
            Decision::OutOfScope => {
                s.intent = None;
                let top: Vec<String> = s.candidates.iter().take(3).cloned().collect();
                self.offer_options(s, out, self.p("not_understood"), top)
            }
        }
    }

    /// Intents as choices (ordered for the segment), plus «Другое» and the operator.
    pub(super) fn offer_options(
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

    pub(super) fn route_intent(&self, s: &mut Session, intent: &str, out: &mut Out) -> Result<()> {
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
}
