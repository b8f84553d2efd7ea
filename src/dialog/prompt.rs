//! What the bot shows and how an answer is matched to it: prompts from the
//! graph, yes/no and operator choices, asking and repeating, picking a
//! remembered choice by id, key, label or synonym, and filling templates.

use crate::nlu::kb::normalize_text;

use super::graph::Node;
use super::session::{ChoiceOut, Session, Wait};
use super::{choice, fill, style, Engine, Input, Out};

impl Engine {
    pub(super) fn p(&self, key: &str) -> String {
        self.graph.prompt(key).to_string()
    }

    pub(super) fn yes_no(&self) -> Vec<ChoiceOut> {
        let mut y = choice("yes", &self.p("choice_yes"), Some("1"));
        y.synonyms = vec!["да".into()];
        let mut n = choice("no", &self.p("choice_no"), Some("2"));
        n.synonyms = vec!["нет".into()];
        vec![y, n]
    }

    pub(super) fn operator_choice(&self) -> ChoiceOut {
        let mut c = choice("operator", &self.p("choice_operator"), Some("0"));
        c.synonyms = vec!["оператор".into()];
        c
    }

    /// Shows a prompt with choices and remembers them (to repeat, and to check the answer).
    pub(super) fn ask(
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

    /// The last question again, after input the bot could not use (a
    /// silence, a wrong key, a value it could not read): the one case where
    /// a turn may say what the turn before said.
    pub(super) fn repeat(&self, s: &Session, out: &mut Out) {
        out.events.push("reprompt".into());
        out.say(s.prompt.clone());
        out.choices = s.choices.clone();
    }

    /// Which remembered choice an input picks: by id, key, label, synonym or yes/no word.
    pub(super) fn pick(&self, s: &Session, input: &Input) -> Option<String> {
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

    pub(super) fn vars(&self, s: &Session) -> Vec<(&'static str, String)> {
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
            ("hotline", self.hours.hotline.clone()),
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

    /// The offices with their addresses, one a line; those in the client's
    /// town (when they named it) first.
    pub(super) fn offices_text(&self, s: &Session) -> String {
        let city = s.slots.get("city").map(String::as_str).unwrap_or_default();
        let mut offices: Vec<_> = self.schedule.cfg.offices.iter().collect();
        offices.sort_by_key(|o| city.is_empty() || o.city != city);
        offices
            .iter()
            .map(|o| {
                let near = if !city.is_empty() && o.city == city {
                    " — ближе всего к Вам"
                } else {
                    ""
                };
                let place = [o.city.as_str(), o.address.as_str()]
                    .iter()
                    .filter(|x| !x.is_empty())
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("— {}, {place}{near}.", o.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The office town a message names, if any (by its stem, so «в Твери»
    /// finds Тверь).
    pub(super) fn city_in(&self, text: &str) -> Option<String> {
        let t = normalize_text(text);
        self.schedule
            .cfg
            .offices
            .iter()
            .map(|o| o.city.as_str())
            .filter(|c| !c.is_empty())
            .find(|c| {
                let stem: String = normalize_text(c)
                    .chars()
                    .take(c.chars().count().saturating_sub(1).max(3))
                    .collect();
                t.split_whitespace().any(|w| w.starts_with(&stem))
            })
            .map(str::to_string)
    }

    pub(super) fn fill_s(&self, s: &Session, t: &str) -> String {
        let mut vars = self.vars(s);
        // the offices' list only for the texts that say it
        if t.contains("{offices}") {
            vars.push(("offices", self.offices_text(s)));
        }
        fill(t, &vars)
    }

    pub(super) fn node_choices(&self, node: &Node) -> Vec<ChoiceOut> {
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
}
