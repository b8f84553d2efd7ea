//! Filling an application (a form with `action: submit_application`): the
//! fields already known are taken from the client's profile, the summary is
//! read back (values said as words on voice), any field can be corrected by
//! name («исправить телефон»), the application is filed through the
//! `ApplicationProvider` and its number told; a draft is saved on «сохранить
//! черновик» (or when filing fails) and continued on any channel by its
//! code («продолжить заявление»), with a limit of wrong codes per
//! conversation. Values are read and said by `fields`.

use crate::nlu::kb::normalize_text;
use crate::services::applications::{self as apps, Application, Draft};
use crate::services::profile::Profile;
use anyhow::Result;
use regex::Regex;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::fields;
use super::graph::{Field, FormAction, Node, NodeKind, SlotType};
use super::session::{ChoiceOut, Session, Wait};
use super::{choice, fill, Engine, Input, Out};

/// The slot that marks the field being corrected (not taken from the
/// profile again); slots starting with `_` are the form's own, never filed.
const FIXING: &str = "_fixing";

/// «сохранить черновик», «продолжу позже», «дозаполню потом».
static SAVE_DRAFT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"сохран\w*( как| в)? черновик|черновик|(продолж|дозаполн|заполн|законч|допиш)\w* (потом|позже|завтра)|(потом|позже|завтра) (продолж|дозаполн|заполн|законч|допиш)\w*").unwrap()
});

/// «продолжить заявление», «вернуться к черновику», «код черновика».
static CONTINUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(продолж|вернут|вернуть|дозаполн|доделат|законч)\w*\s+(\w+\s+){0,3}(заявлени|черновик|анкет)|код\w* черновик|^черновик\w*$").unwrap()
});

/// «исправить телефон», «измените СНИЛС», «неправильный ИНН».
static FIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(исправ|измен|поменя|замен|неправильн|неверн|ошибк|ошиблась|ошибся)\w*").unwrap()
});

/// Words a client uses for a name field.
fn canonical(w: &str) -> &str {
    match w {
        "имя" | "имени" | "фамилия" | "фамилию" | "фамилии" | "отчество" | "фио" => {
            "фио"
        }
        _ => w,
    }
}

/// Two words are the same word in another case: a common beginning of all
/// but one letter of the shorter one (at least three letters).
fn same_word(a: &str, b: &str) -> bool {
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let shorter = a.chars().count().min(b.chars().count());
    common >= 3 && common + 1 >= shorter.min(6)
}

impl Engine {
    fn today(&self) -> jiff::civil::Date {
        self.hours.local(self.clock.now()).date()
    }

    /// Whether the client hears the turn (values are said as words).
    fn spoken_for(&self, s: &Session) -> bool {
        self.graph
            .channel(s.style.as_deref().unwrap_or(&s.channel))
            .spoken
    }

    /// The BIK given in the form in progress (an account's key needs it).
    fn form_bik(&self, s: &Session) -> Option<String> {
        let node = self.graph.nodes.get(&s.node)?;
        node.fields
            .iter()
            .find(|f| f.kind == SlotType::Bik)
            .and_then(|f| s.slots.get(&f.slot))
            .filter(|v| !v.is_empty())
            .cloned()
    }

    /// An application field's value typed or said, checked: the value as
    /// kept, or the prompt that says what is wrong.
    pub(super) fn check_field(&self, t: SlotType, value: &str) -> Result<String, &'static str> {
        fields::check(t, value, self.today(), None)
    }

    /// A field's value inside the client's message (`take_said`), unless it
    /// is a value another field already holds (the same date said for the
    /// client and then asked for the child).
    pub(super) fn said_field(&self, s: &Session, t: SlotType, text: &str) -> Option<String> {
        let bik = self.form_bik(s);
        fields::said_in(t, text, self.today(), bik.as_deref())
            .filter(|v| !s.slots.values().any(|x| x == v))
    }

    fn is_application(node: &Node) -> bool {
        node.action == Some(FormAction::SubmitApplication)
    }

    /// Fills field `f` of an application from the client's profile, when a
    /// valid value is kept there: true when filled.
    pub(super) fn take_known(&self, s: &mut Session, node: &Node, f: &Field) -> Result<bool> {
        if !Self::is_application(node) || !f.profile || s.slots.get(FIXING) == Some(&f.slot) {
            return Ok(false);
        }
        let p = Profile::load(&*self.store, &s.key())?;
        let Some(v) = p
            .facts
            .get(&f.slot)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        else {
            return Ok(false);
        };
        let bik = self.form_bik(s);
        let value = match f.kind {
            SlotType::Phone => super::parse_phone(v),
            SlotType::Text => Some(v.to_string()),
            k if fields::is_field_kind(k) => fields::check(k, v, self.today(), bik.as_deref()).ok(),
            _ => None,
        };
        let Some(value) = value else { return Ok(false) };
        if f.personal {
            s.personal.insert(f.slot.clone());
            s.pii.push(value.clone());
        }
        s.slots.insert(f.slot.clone(), value);
        Ok(true)
    }

    /// The «Сохранить черновик» choice of an application's steps.
    pub(super) fn draft_choice(&self, node: &Node) -> Option<ChoiceOut> {
        Self::is_application(node).then(|| {
            let mut c = choice("draft", &self.p("choice_draft"), None);
            c.synonyms = vec!["черновик".into(), "сохранить".into()];
            c
        })
    }

    /// The summary of a filled application, read back before it is filed.
    pub(super) fn application_summary(
        &self,
        s: &mut Session,
        node: &Node,
        out: &mut Out,
    ) -> Result<()> {
        s.slots.remove(FIXING);
        // a corrected BIK may no longer fit the account
        if let (Some(bik), Some(i)) = (
            self.form_bik(s),
            node.fields.iter().position(|f| f.kind == SlotType::Account),
        ) {
            let f = &node.fields[i];
            if let Some(a) = s.slots.get(&f.slot).filter(|a| !a.is_empty()) {
                if let Err(p) = fields::check(f.kind, a, self.today(), Some(&bik)) {
                    s.slots.remove(&f.slot);
                    out.say(self.p(p));
                    s.slots.insert(FIXING.into(), f.slot.clone());
                    return self.ask_field(s, node, i, out);
                }
            }
        }
        let spoken = self.spoken_for(s);
        let lines: Vec<String> = node
            .fields
            .iter()
            .filter_map(|f| {
                let v = s.slots.get(&f.slot).filter(|v| !v.is_empty())?;
                let shown = if spoken {
                    fields::say_value(f.kind, v)
                } else {
                    s.labels.get(&f.slot).cloned().unwrap_or_else(|| v.clone())
                };
                Some(format!(
                    "{}: {shown}.",
                    capitalised(f.label.as_deref().unwrap_or(&f.slot))
                ))
            })
            .collect();
        let text = fill(
            &self.fill_s(s, node.confirm.as_deref().unwrap_or("{summary}")),
            &[("summary", lines.join("\n"))],
        );
        let mut send = choice("yes", &self.p("choice_send"), Some("1"));
        send.synonyms = vec!["да".into(), "отправить".into(), "отправляйте".into()];
        let mut fix = choice("fix", &self.p("choice_fix"), Some("2"));
        fix.synonyms = vec!["нет".into(), "исправить".into()];
        let mut cs = vec![send, fix];
        cs.extend(self.draft_choice(node));
        cs.extend(self.form_steps(node, node.fields.len()));
        self.ask(s, out, text, cs, Wait::FormConfirm);
        Ok(())
    }

    /// The field a message names («дату рождения ребёнка»): the one whose
    /// label it says most fully.
    fn field_named(&self, node: &Node, text: &str) -> Option<usize> {
        let t = normalize_text(text);
        let words: Vec<&str> = t.split_whitespace().map(canonical).collect();
        node.fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let label = normalize_text(f.label.as_deref()?);
                let lw: Vec<&str> = label.split_whitespace().map(canonical).collect();
                let hit = lw
                    .iter()
                    .filter(|l| words.iter().any(|w| same_word(w, l)))
                    .count();
                (hit > 0).then_some((hit == lw.len(), hit, usize::MAX - lw.len(), i))
            })
            .max()
            .map(|x| x.3)
    }

    /// Asks field `i` again (a correction), then the summary again.
    fn fix_field(
        &self,
        s: &mut Session,
        node: &Node,
        i: usize,
        text: Option<&str>,
        out: &mut Out,
    ) -> Result<()> {
        let f = &node.fields[i];
        s.slots.remove(&f.slot);
        s.labels.remove(&f.slot);
        s.slots.insert(FIXING.into(), f.slot.clone());
        // «исправить телефон на 8 912 …» holds the new value already
        s.form_text = text.map(str::to_string);
        out.events.push(format!("application_fix:{}", f.slot));
        self.ask_field(s, node, i, out)
    }

    /// A correction asked for by name in an application (at the summary or
    /// at any field): «исправить телефон».
    fn correction(&self, node: &Node, input: &Input) -> Option<usize> {
        let Input::Text(t) = input else { return None };
        if !FIX.is_match(&normalize_text(t)) {
            return None;
        }
        self.field_named(node, t)
    }

    /// The answer to an application's summary: file it, correct a field
    /// (by name, or chosen from the list), save a draft, go back, cancel.
    pub(super) fn on_application_confirm(
        &self,
        s: &mut Session,
        node: &Node,
        input: &Input,
        out: &mut Out,
    ) -> Result<()> {
        if let Some(i) = self.correction(node, input) {
            let t = match input {
                Input::Text(t) => Some(t.as_str()),
                _ => None,
            };
            return self.fix_field(s, node, i, t, out);
        }
        let picked = self.pick(s, input);
        if let Some(slot) = picked.as_deref().and_then(|p| p.strip_prefix("fix:")) {
            if let Some(i) = node.fields.iter().position(|f| f.slot == slot) {
                return self.fix_field(s, node, i, None, out);
            }
        }
        match picked.as_deref() {
            Some("yes") => self.run_action(s, node, out),
            Some("fix") | Some("no") => {
                // which field: the filled ones, by name or key
                let mut cs: Vec<ChoiceOut> = node
                    .fields
                    .iter()
                    .filter(|f| s.slots.get(&f.slot).is_some_and(|v| !v.is_empty()))
                    .enumerate()
                    .map(|(k, f)| {
                        let label = f.label.clone().unwrap_or_else(|| f.slot.clone());
                        let mut c = choice(
                            &format!("fix:{}", f.slot),
                            &capitalised(&label),
                            (k < 9).then(|| (k + 1).to_string()).as_deref(),
                        );
                        c.synonyms = vec![label];
                        c
                    })
                    .collect();
                cs.extend(self.form_steps(node, node.fields.len()));
                self.ask(
                    s,
                    out,
                    self.p("application_fix_what"),
                    cs,
                    Wait::FormConfirm,
                );
                Ok(())
            }
            Some("draft") => self.save_draft(s, node, out),
            Some("back") => self.confirm_back(s, node, out),
            Some("cancel") => {
                out.events.push("form_cancelled".into());
                self.clear_form(s);
                s.node = self.graph.classify.clone();
                self.ask(s, out, self.p("form_cancelled"), Vec::new(), Wait::Node);
                Ok(())
            }
            _ => match input {
                Input::Text(t) if SAVE_DRAFT.is_match(&normalize_text(t)) => {
                    self.save_draft(s, node, out)
                }
                // a field named without «исправить»: that field
                Input::Text(t) if s.choices.iter().any(|c| c.id.starts_with("fix:")) => {
                    match self.field_named(node, t) {
                        Some(i) => self.fix_field(s, node, i, Some(t), out),
                        None => {
                            out.say(self.p("application_fix_unknown"));
                            self.repeat(s, out);
                            Ok(())
                        }
                    }
                }
                _ => {
                    out.say(self.p("choose_one"));
                    self.repeat(s, out);
                    Ok(())
                }
            },
        }
    }

    /// What an application's field takes before the form's own rules: a
    /// draft saved, a correction by name, an account whose key does not
    /// fit the BIK. None: the form goes on as usual.
    pub(super) fn application_field_input(
        &self,
        s: &mut Session,
        node: &Node,
        i: usize,
        input: &Input,
        out: &mut Out,
    ) -> Option<Result<()>> {
        if !Self::is_application(node) {
            return None;
        }
        let text = match input {
            Input::Text(t) => Some(normalize_text(t)),
            _ => None,
        };
        if self.pick(s, input).as_deref() == Some("draft")
            || text.as_deref().is_some_and(|t| SAVE_DRAFT.is_match(t))
        {
            return Some(self.save_draft(s, node, out));
        }
        if let Some(j) = self.correction(node, input) {
            if s.slots
                .get(&node.fields[j].slot)
                .is_some_and(|v| !v.is_empty())
            {
                let t = match input {
                    Input::Text(t) => Some(t.as_str()),
                    _ => None,
                };
                return Some(self.fix_field(s, node, j, t, out));
            }
        }
        let f = node.fields.get(i)?;
        if f.kind == SlotType::Account {
            let raw = match input {
                Input::Text(t) | Input::Dtmf(t) => t.trim(),
                _ => return None,
            };
            let bik = self.form_bik(s)?;
            if fields::check(f.kind, raw, self.today(), None).is_ok() {
                if let Err(p) = fields::check(f.kind, raw, self.today(), Some(&bik)) {
                    out.personal_input = f.personal;
                    out.say(self.p(p));
                    self.repeat(s, out);
                    return Some(Ok(()));
                }
            }
        }
        None
    }

    /// Saves what the client filled as a draft and tells its code.
    fn save_draft(&self, s: &mut Session, node: &Node, out: &mut Out) -> Result<()> {
        let filled = self.filled(s, node);
        if filled.is_empty() {
            out.events.push("form_cancelled".into());
            self.clear_form(s);
            s.node = self.graph.classify.clone();
            self.ask(s, out, self.p("form_cancelled"), Vec::new(), Wait::Node);
            return Ok(());
        }
        let d = Draft {
            code: apps::draft_code(),
            user: s.key(),
            node: s.node.clone(),
            service: node.application.clone().unwrap_or_default(),
            labels: s
                .labels
                .iter()
                .filter(|(k, _)| filled.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            fields: filled,
            created: self.now(),
        };
        out.writes
            .records
            .extend(apps::save_draft(&*self.store, &d)?);
        out.events.push("draft_saved".into());
        let code = if self.spoken_for(s) {
            fields::say_value(SlotType::Code, &d.code)
        } else {
            fields::show_value(SlotType::Code, &d.code)
        };
        let text = fill(
            &self.p("application_draft_saved"),
            &[
                ("code", code),
                ("days", self.apps_cfg.draft_days.to_string()),
            ],
        );
        self.clear_form(s);
        s.node = self.graph.classify.clone();
        self.ask(s, out, text, Vec::new(), Wait::Node);
        Ok(())
    }

    /// The client leaves an application half-filled (for an operator):
    /// what was filled is saved as a draft and its code told.
    pub(super) fn keep_draft_on_leave(&self, s: &mut Session, out: &mut Out) -> Result<()> {
        if !matches!(s.wait, Wait::Field { .. } | Wait::FormConfirm) {
            return Ok(());
        }
        let Some(node) = self.graph.nodes.get(&s.node).cloned() else {
            return Ok(());
        };
        if !Self::is_application(&node) || self.filled(s, &node).is_empty() {
            return Ok(());
        }
        self.save_draft(s, &node, out)
    }

    /// The form's filled values, by field.
    fn filled(&self, s: &Session, node: &Node) -> BTreeMap<String, String> {
        node.fields
            .iter()
            .filter_map(|f| {
                s.slots
                    .get(&f.slot)
                    .filter(|v| !v.is_empty())
                    .map(|v| (f.slot.clone(), v.clone()))
            })
            .collect()
    }

    /// Files the application: its records (and the profile's facts, and the
    /// end of its draft) committed with the turn, its number told. When the
    /// service fails, what was filled is kept as a draft (false: the turn
    /// is said).
    pub(super) fn submit_application(
        &self,
        s: &mut Session,
        node: &Node,
        out: &mut Out,
    ) -> Result<bool> {
        let key = s.key();
        let app = Application {
            number: String::new(),
            user: key.clone(),
            service: node.application.clone().unwrap_or_default(),
            fields: self.filled(s, node),
            created: self.now(),
            paid_at: None,
        };
        // the same for a turn run again after a lost race; no identity in it
        let request_id = {
            use sha2::{Digest, Sha256};
            let h = Sha256::digest(format!("{key}:{}:{}", s.conversation, s.turns).as_bytes());
            hex::encode(&h[..12])
        };
        let filed = match self.applications.file(&app, &request_id) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("applications: {e}");
                out.events.push("application_unavailable".into());
                out.say(self.p("application_failed"));
                self.save_draft(s, node, out)?;
                return Ok(false);
            }
        };
        out.writes.records.extend(filed.ops);
        // the applicant's details are kept for the next application
        let mut p = Profile::load(&*self.store, &key)?;
        let before = p.clone();
        for f in node.fields.iter().filter(|f| f.profile) {
            if let Some(v) = app.fields.get(&f.slot) {
                p.facts.insert(f.slot.clone(), v.clone());
            }
        }
        if p != before {
            p.updated = self.now();
            out.writes.records.push(p.save(&key)?);
        }
        out.writes
            .records
            .extend(apps::forget_drafts(&*self.store, &key)?);
        out.events.push("application_filed".into());
        let shown = if self.spoken_for(s) {
            fields::say_value(SlotType::Digits, &filed.number)
        } else {
            filed.number.clone()
        };
        s.slots.insert("number".into(), filed.number);
        s.labels.insert("number".into(), shown);
        Ok(true)
    }

    /// The form that continues drafts.
    fn draft_node(&self) -> Option<String> {
        let mut v: Vec<&String> = self
            .graph
            .nodes
            .iter()
            .filter(|(_, n)| n.action == Some(FormAction::ResumeDraft))
            .map(|(k, _)| k)
            .collect();
        v.sort();
        v.first().map(|k| k.to_string())
    }

    /// «продолжить заявление» outside a form: the draft's code is asked
    /// (or taken from the message), unless too many wrong codes were given.
    pub(super) fn continue_draft(
        &self,
        s: &mut Session,
        text: &str,
        out: &mut Out,
    ) -> Option<Result<()>> {
        if matches!(
            s.wait,
            Wait::Field { .. } | Wait::FormConfirm | Wait::Consent
        ) || !CONTINUE.is_match(&normalize_text(text))
        {
            return None;
        }
        let node = self.draft_node()?;
        if s.draft_tries >= self.apps_cfg.draft_tries {
            // the refusal again: the one answer there is
            out.events.push("draft_locked".into());
            out.events.push("reprompt".into());
            s.node = self.graph.classify.clone();
            let text = self.p("draft_too_many");
            self.ask(s, out, text, vec![self.operator_choice()], Wait::Node);
            return Some(Ok(()));
        }
        Some(self.enter(s, &node, out))
    }

    /// The draft's code is known: the draft is taken (once) and its form
    /// goes on where it stopped, after consent on a channel that has none.
    pub(super) fn resume_draft(&self, s: &mut Session, node: &Node, out: &mut Out) -> Result<()> {
        let code = s.slots.get("code").cloned().unwrap_or_default();
        let next = node
            .next
            .clone()
            .unwrap_or_else(|| self.graph.classify.clone());
        let taken = apps::take_draft(&*self.store, &code)?;
        let form = taken
            .as_ref()
            .and_then(|(d, _)| self.graph.nodes.get(&d.node))
            .filter(|n| n.kind == NodeKind::Form && Self::is_application(n))
            .cloned();
        let (Some((d, ops)), Some(form)) = (taken, form) else {
            s.draft_tries += 1;
            out.events.push("draft_wrong_code".into());
            if s.draft_tries >= self.apps_cfg.draft_tries {
                out.say(self.p("draft_too_many"));
                self.clear_form(s);
                return self.enter(s, &next, out);
            }
            out.say(self.p("draft_wrong_code"));
            s.slots.remove("code");
            s.form_text = None;
            // the code asked again after one that did not fit
            out.events.push("reprompt".into());
            return self.ask_field(s, node, 0, out);
        };
        out.writes.records.extend(ops);
        let max_age = i64::from(self.apps_cfg.draft_days) * 86_400;
        if self.now() - d.created > max_age {
            out.events.push("draft_expired".into());
            out.say(self.p("draft_expired"));
            self.clear_form(s);
            return self.enter(s, &next, out);
        }
        out.events.push("draft_resumed".into());
        self.clear_form(s);
        s.draft_tries = 0;
        s.node = d.node.clone();
        for f in &form.fields {
            let Some(v) = d.fields.get(&f.slot) else {
                continue;
            };
            if f.personal {
                s.personal.insert(f.slot.clone());
                s.pii.push(v.clone());
            }
            s.slots.insert(f.slot.clone(), v.clone());
            if let Some(l) = d.labels.get(&f.slot) {
                s.labels.insert(f.slot.clone(), l.clone());
            }
        }
        out.say(self.p("draft_resumed"));
        let consent = self.store.consent(&s.key())?.is_some_and(|c| c.active());
        if form.has_personal_fields() && !consent {
            out.events.push("consent_asked".into());
            self.ask(s, out, self.p("consent"), self.yes_no(), Wait::Consent);
            return Ok(());
        }
        self.ask_field(s, &form, 0, out)
    }

    /// A consent withdrawal deletes the client's draft too.
    pub(super) fn forget_drafts(&self, s: &Session, out: &mut Out) -> Result<()> {
        out.writes
            .records
            .extend(apps::forget_drafts(&*self.store, &s.key())?);
        Ok(())
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
