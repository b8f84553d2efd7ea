//! Forms and consent: asking a form's fields in turn, checking the values,
//! the choices a field offers (services, offices, free days and times, the
//! client's appointments), cancelling, and consent to personal data.

use crate::services::appointments::{day_label, time_id, time_label};
use crate::store::{scrub_text, Consent, Forget, SessionKey};
use anyhow::Result;

use super::graph::{Field, FormAction, Node, SlotType, Source};
use super::session::{ChoiceOut, Session, Wait};
use super::{choice, style, Action, Engine, Input, Out};

impl Engine {
    pub(super) fn check_slot(
        &self,
        t: SlotType,
        value: &str,
    ) -> std::result::Result<String, &'static str> {
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

    pub(super) fn clear_form(&self, s: &mut Session) {
        s.slots.clear();
        s.labels.clear();
        s.personal.clear();
    }

    fn consent_active(&self, s: &Session) -> Result<bool> {
        Ok(self.store.consent(&s.key())?.is_some_and(|c| c.active()))
    }

    pub(super) fn start_form(&self, s: &mut Session, node: &Node, out: &mut Out) -> Result<()> {
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

    pub(super) fn ask_field(
        &self,
        s: &mut Session,
        node: &Node,
        mut i: usize,
        out: &mut Out,
    ) -> Result<()> {
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

    pub(super) fn on_field(
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

    /// The answer to the consent question before a form's personal fields:
    /// recorded and the form goes on, or declined with the operator offered.
    pub(super) fn on_consent(
        &self,
        s: &mut Session,
        node: &Node,
        input: &Input,
        out: &mut Out,
    ) -> Result<()> {
        let g = self.graph.clone();
        match self.pick(s, input).as_deref() {
            Some("yes") => {
                let text = self.p("consent");
                out.writes.consent = Some((
                    s.key(),
                    Consent {
                        given_at: self.now(),
                        version: consent_version(&text),
                        text,
                        withdrawn_at: None,
                    },
                ));
                out.events.push("consent_given".into());
                self.ask_field(s, node, 0, out)
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
        }
    }

    fn cancel_form(&self, s: &mut Session, out: &mut Out) -> Result<()> {
        out.events.push("form_cancelled".into());
        self.clear_form(s);
        s.node = self.graph.classify.clone();
        self.ask(s, out, self.p("form_cancelled"), Vec::new(), Wait::Node);
        Ok(())
    }

    /// Withdraws consent: records it, deletes the client's personal data
    /// (form values, callback requests, names on appointments, their traces
    /// in the history, the channel's replay and replies not yet delivered),
    /// all in the turn's commit; it is not asked for again without new
    /// consent.
    pub(super) fn withdraw_consent(&self, s: &mut Session, out: &mut Out) -> Result<()> {
        let key = s.key();
        if let Some(mut c) = self.store.consent(&key)? {
            if c.withdrawn_at.is_none() {
                c.withdrawn_at = Some(self.now());
                out.writes.consent = Some((key.clone(), c));
            }
        }
        let mut values = s.personal_values();
        values.extend(s.pii.iter().filter(|v| !v.is_empty()).cloned());
        values.sort();
        values.dedup();
        for e in &mut s.history {
            e.text = scrub_text(&e.text, &values);
        }
        self.clear_form(s);
        s.pii.clear();
        out.writes.forget = Some(Forget {
            key: SessionKey::new(s.channel.clone(), s.user.clone()),
            values,
        });
        out.events.push("consent_withdrawn".into());
        Ok(())
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
