//! Forms and consent: asking a form's fields in turn (taking values the
//! client already said, «Назад», «Отменить», the operator on every step),
//! checking the values, the choices a field offers (services, offices, free
//! days and times nearest what was asked, page by page, the client's
//! appointments), cancelling, and consent to personal data.

use crate::services::appointments::{day_label, time_id, time_label};
use crate::store::{scrub_text, Consent, Forget, SessionKey};
use anyhow::Result;

use super::graph::{Field, FormAction, Node, SlotType, Source};
use super::session::{ChoiceOut, Session, Wait};
use super::values::{self, parse_phone, TimeWish};
use super::{choice, fill, style, Action, Engine, Input, Out};
use crate::nlu::kb::normalize_text;
use jiff::civil::Date;

/// The day and time a client asked for in words.
#[derive(Debug, Default)]
struct Wish {
    day: Option<Date>,
    time: Option<TimeWish>,
}

/// Page `page` of `items`, `per` a page; and whether more follow.
fn paged<T>(items: Vec<T>, per: usize, page: usize) -> (Vec<T>, bool) {
    let per = per.max(1);
    let pages = items.len().div_ceil(per).max(1);
    let page = page % pages;
    let more = pages > 1;
    (items.into_iter().skip(page * per).take(per).collect(), more)
}

impl Engine {
    pub(super) fn check_slot(
        &self,
        t: SlotType,
        value: &str,
    ) -> std::result::Result<String, &'static str> {
        match t {
            // typed, or said in words («восемь девятьсот двенадцать …»)
            SlotType::Phone => parse_phone(value)
                .or_else(|| values::phone_in(&in_digits(value)))
                .ok_or("invalid_phone"),
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
            // applications: SNILS, INN, BIK, account, dates, codes
            _ => self.check_field(t, value),
        }
    }

    pub(super) fn clear_form(&self, s: &mut Session) {
        let city = s.slots.remove("city");
        s.slots.clear();
        s.labels.clear();
        s.personal.clear();
        s.form_text = None;
        s.page = 0;
        if let Some(c) = city {
            s.slots.insert("city".into(), c);
        }
    }

    fn consent_active(&self, s: &Session) -> Result<bool> {
        Ok(self.store.consent(&s.key())?.is_some_and(|c| c.active()))
    }

    pub(super) fn start_form(&self, s: &mut Session, node: &Node, out: &mut Out) -> Result<()> {
        self.clear_form(s);
        // the message that started the form may already hold its values
        s.form_text = out.input.clone();
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

    fn field_choices(&self, s: &Session, f: &Field, wish: &Wish) -> Result<Vec<ChoiceOut>> {
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
                // free days nearest the asked one first, else from the first on
                let mut days = Vec::new();
                for d in self.schedule.days_from(&now) {
                    let ds = d.to_string();
                    for t in self.schedule.times() {
                        if free(&ds, &time_id(t))? {
                            days.push(d);
                            break;
                        }
                    }
                }
                if let Some(want) = wish.day {
                    days.sort_by_key(|d| (want.until(*d).map_or(0, |x| x.get_days().abs()), *d));
                }
                let (mut page, more) = paged(days, cfg.days_offered, s.page);
                page.sort();
                let mut cs = numbered(
                    page.into_iter()
                        .map(|d| (d.to_string(), day_label(d)))
                        .collect(),
                );
                if more {
                    cs.push(choice("more", &self.p("choice_more_days"), None));
                }
                cs
            }
            Some(Source::Times) => {
                let day = s.slots.get("day").cloned().unwrap_or_default();
                let mut ts = Vec::new();
                for t in self.schedule.times() {
                    if free(&day, &time_id(t))? {
                        ts.push(t);
                    }
                }
                if let Some(w) = wish.time {
                    ts.sort_by_key(|t| (w.distance(*t), *t));
                }
                let (mut page, more) = paged(ts, cfg.times_offered, s.page);
                page.sort();
                let mut cs = numbered(
                    page.into_iter()
                        .map(|t| (time_id(t), time_label(t)))
                        .collect(),
                );
                if more {
                    cs.push(choice("more", &self.p("choice_more_times"), None));
                }
                cs
            }
            Some(Source::MyAppointments) => numbered(
                self.store
                    .appointments_of(&s.key())?
                    .into_iter()
                    .map(|a| (a.id.to_string(), self.describe_appointment(&a)))
                    .collect(),
            ),
            Some(Source::Fees) => numbered(self.fee_choices()),
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
        loop {
            // Fields already filled (when a taken time is chosen again) are not asked twice.
            while node
                .fields
                .get(i)
                .is_some_and(|f| s.slots.contains_key(&f.slot))
            {
                i += 1;
            }
            let Some(f) = node.fields.get(i) else {
                if node.action == Some(FormAction::SubmitApplication) {
                    return self.application_summary(s, node, out);
                }
                if node.action == Some(FormAction::ApplicationStatus) || node.confirm.is_none() {
                    return self.run_action(s, node, out);
                }
                let text = self.fill_s(s, node.confirm.as_deref().unwrap_or_default());
                let mut cs = self.yes_no();
                cs.extend(self.form_steps(node, i));
                self.ask(s, out, text, cs, Wait::FormConfirm);
                return Ok(());
            };
            // What the client said may hold this field's value already.
            let wish = self.wish(s);
            let mut cs = if f.kind == SlotType::Choice {
                self.field_choices(s, f, &wish)?
            } else {
                Vec::new()
            };
            // an application's field known from the client's profile
            if self.take_known(s, node, f)? || self.take_said(s, f, &wish, &cs, out) {
                continue;
            }
            if f.kind == SlotType::Choice {
                if cs.is_empty() {
                    // Nothing to choose (no appointments, no free days): say so and move on.
                    out.say(node.empty.clone().unwrap_or_else(|| self.p("slot_taken")));
                    self.clear_form(s);
                    let next = node.next.clone().unwrap();
                    return self.enter(s, &next, out);
                }
                if let Some(t) = self.missed_wish(s, f, &wish) {
                    out.say(t);
                }
            }
            if f.optional {
                cs.push(choice("skip", &self.p("choice_skip"), None));
            }
            cs.extend(self.draft_choice(node));
            cs.extend(self.form_steps(node, i));
            if f.kind == SlotType::Phone {
                out.actions.push(Action::RequestContact);
            }
            let text = if s.page > 0 {
                self.p("more_options")
            } else {
                self.fill_s(s, &f.prompt)
            };
            self.ask(s, out, text, cs, Wait::Field { field: i });
            return Ok(());
        }
    }

    /// «Назад» (not on the first field), «Отменить» and «Оператор»: on every
    /// step of a form.
    pub(super) fn form_steps(&self, node: &Node, i: usize) -> Vec<ChoiceOut> {
        let mut cs = Vec::new();
        if i > 0 && node.fields.len() > 1 {
            let mut b = choice("back", &self.p("choice_back"), Some("*"));
            b.synonyms = vec!["назад".into(), "вернуться".into()];
            cs.push(b);
        }
        let mut c = choice("cancel", &self.p("choice_cancel"), None);
        c.synonyms = vec!["отменить".into(), "отмена".into(), "отмени".into()];
        cs.push(c);
        cs.push(self.operator_choice());
        cs
    }

    /// The day and time the client's last message in the form asks for.
    fn wish(&self, s: &Session) -> Wish {
        let Some(t) = s.form_text.as_deref() else {
            return Wish::default();
        };
        let today = self.hours.local(self.clock.now()).date();
        Wish {
            day: values::day_in(t, today),
            time: values::time_in(t),
        }
    }

    /// Takes field `f`'s value from what the client said in the form, when
    /// it is there and valid (a free day or time, one service or office by
    /// name, a number, a phone): true when the field is filled.
    /// `cs`: the choices the field offers for this wish.
    fn take_said(
        &self,
        s: &mut Session,
        f: &Field,
        wish: &Wish,
        cs: &[ChoiceOut],
        out: &mut Out,
    ) -> bool {
        let Some(text) = s.form_text.clone() else {
            return false;
        };
        let value: Option<(String, Option<String>)> = match (f.kind, f.source) {
            // written or said in words («один два три четыре»)
            (SlotType::Digits, _) => values::digits_in(&text)
                .or_else(|| values::digits_in(&in_digits(&text)))
                .map(|d| (d, None)),
            (SlotType::Phone, _) => values::phone_in(&text)
                .or_else(|| values::phone_in(&in_digits(&text)))
                .map(|p| (p, None)),
            (k, _) if super::fields::is_field_kind(k) => {
                self.said_field(s, k, &text).map(|v| (v, None))
            }
            (SlotType::Choice, Some(Source::Services | Source::Offices | Source::Fees)) => {
                let t = normalize_text(&text);
                let words: Vec<&str> = t.split_whitespace().collect();
                let named = |label: &str| {
                    normalize_text(label)
                        .split_whitespace()
                        .filter(|w| w.chars().count() >= 5)
                        .any(|w| {
                            let stem: String = w.chars().take(5).collect();
                            words.iter().any(|x| x.starts_with(&stem))
                        })
                };
                // an office by its name or address, or by the town named
                let city = s.slots.get("city").cloned().unwrap_or_default();
                let in_town = |id: &str| {
                    f.source == Some(Source::Offices)
                        && !city.is_empty()
                        && self.schedule.office(id).is_some_and(|o| o.city == city)
                };
                let hits: Vec<&ChoiceOut> = cs
                    .iter()
                    .filter(|c| named(&c.label) || in_town(&c.id))
                    .collect();
                match hits.as_slice() {
                    [one] => Some((one.id.clone(), Some(one.label.clone()))),
                    _ => None,
                }
            }
            (SlotType::Choice, Some(Source::Days)) if wish.day.is_some() => {
                let want = wish.day.unwrap().to_string();
                cs.iter()
                    .find(|c| c.id == want)
                    .map(|c| (c.id.clone(), Some(c.label.clone())))
            }
            (SlotType::Choice, Some(Source::Times)) if wish.time.is_some_and(|w| w.exact) => {
                let w = wish.time.unwrap();
                let want = time_id(w.from);
                cs.iter()
                    .find(|c| c.id == want)
                    .map(|c| (c.id.clone(), Some(c.label.clone())))
            }
            _ => None,
        };
        let Some((v, label)) = value else {
            return false;
        };
        if let Some(l) = label {
            s.labels.insert(f.slot.clone(), l);
        }
        Self::fill_field(s, f, v, out);
        true
    }

    /// Keeps a field's value (a personal one marked as such, to scrub it
    /// from the log and delete it on withdrawal).
    fn fill_field(s: &mut Session, f: &Field, value: String, out: &mut Out) {
        if f.personal {
            s.personal.insert(f.slot.clone());
            s.pii.push(value.clone());
            out.personal_input = true;
        }
        s.slots.insert(f.slot.clone(), value);
        s.page = 0;
    }

    /// When the day or time asked for is not free: says so before the
    /// nearest free ones.
    fn missed_wish(&self, s: &Session, f: &Field, wish: &Wish) -> Option<String> {
        match f.source {
            Some(Source::Days) if s.page == 0 => wish
                .day
                .map(|d| fill(&self.p("day_taken"), &[("day", day_label(d))])),
            Some(Source::Times) if s.page == 0 => match wish.time {
                Some(w) if w.exact => {
                    Some(fill(&self.p("time_taken"), &[("time", time_label(w.from))]))
                }
                _ => None,
            },
            _ => None,
        }
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
        if let Some(r) = self.application_field_input(s, node, i, input, out) {
            return r;
        }
        match self.pick(s, input).as_deref() {
            Some("cancel") => return self.cancel_form(s, out),
            Some("back") => return self.form_back(s, node, i, out),
            Some("more") => {
                s.page += 1;
                return self.ask_field(s, node, i, out);
            }
            _ => {}
        }
        if let Input::Text(t) = input {
            s.form_text = Some(t.clone());
        }
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
                        // a day or a time in words: taken, or the nearest offered
                        let wish = self.wish(s);
                        let cs = self.field_choices(s, &f, &wish)?;
                        if self.take_said(s, &f, &wish, &cs, out) {
                            return self.ask_field(s, node, i + 1, out);
                        }
                        // a day or time not free: the nearest ones (a day or
                        // time said at another field waits for its own field)
                        let asked = match f.source {
                            Some(Source::Days) => wish.day.is_some(),
                            Some(Source::Times) => wish.time.is_some(),
                            _ => false,
                        };
                        if asked {
                            return self.ask_field(s, node, i, out);
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
                // another question instead of the value: the form is left
                // (an application keeps its fields: it has its own rules)
                Err(_)
                    if node.action != Some(FormAction::SubmitApplication)
                        && self.is_new_question(s, &raw) =>
                {
                    out.events.push("form_left".into());
                    self.clear_form(s);
                    return self.free_text_or_repeat(s, input, out);
                }
                Err(prompt) => {
                    out.personal_input = f.personal;
                    out.say(self.p(prompt));
                    self.repeat(s, out);
                    return Ok(());
                }
            }
        };
        Self::fill_field(s, &f, value, out);
        self.ask_field(s, node, i + 1, out)
    }

    /// «Назад»: the field before this one is asked again.
    fn form_back(&self, s: &mut Session, node: &Node, i: usize, out: &mut Out) -> Result<()> {
        s.form_text = None;
        s.page = 0;
        let j = i.saturating_sub(1);
        for f in &node.fields[j..] {
            s.slots.remove(&f.slot);
            s.labels.remove(&f.slot);
        }
        self.ask_field(s, node, j, out)
    }

    /// The form's confirmation: «Назад» goes back to the last field.
    pub(super) fn confirm_back(&self, s: &mut Session, node: &Node, out: &mut Out) -> Result<()> {
        self.form_back(s, node, node.fields.len(), out)
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
        self.forget_drafts(s, out)?;
        // the profile's facts go with the consent, in the same commit
        out.writes
            .records
            .push(crate::services::profile::Profile::remove(&key));
        s.facts.clear();
        s.search = None;
        out.writes.forget = Some(Forget {
            key: SessionKey::new(s.channel.clone(), s.user.clone()),
            values,
            pseudonym: crate::analytics::client_pseudonym(&self.secret, &s.key()),
        });
        out.events.push("consent_withdrawn".into());
        Ok(())
    }
}

/// The version of a consent text: the first 12 hex digits of its sha256.
pub fn consent_version(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

/// The text with its number words as digits.
fn in_digits(text: &str) -> String {
    values::words_to_digits(&crate::nlu::kb::normalize_text(text))
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
