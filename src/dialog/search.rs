//! The service search («Что мне положено?») and the client's profile, an
//! engine rule on every channel. This module owns: the `search` node's
//! interview (only the facts that decide the remaining candidate measures,
//! the most discriminating first, at most five questions; answers as text,
//! numbers in words, buttons and keys, «не знаю»); the facts a client says
//! in the conversation («мне 67 лет, у меня двое детей»), which are not
//! asked; the list of measures that fit, with a way to read each one's
//! answer, book, or keep the answers in the profile (with consent); and the
//! profile's view and deletion («мой профиль», «удалить данные профиля»).

use crate::nlu::eligibility::{next_question, norm_value, Eligibility, Fact, Tri, MAX_QUESTIONS};
use crate::nlu::kb::normalize_text;
use crate::services::profile::Profile;
use crate::store::Consent;
use anyhow::Result;
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use super::graph::{FormAction, Node, NodeKind};
use super::session::{ChoiceOut, Phase, SearchState, Session, Wait};
use super::values::words_to_digits;
use super::{choice, consent_version, fill, style, Engine, Input, Out};

static DELETE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(удал|очист|стер|сотр)\w*\b.*\bпрофил|\bпрофил\w*\b.*\b(удал|очист|стер|сотр)")
        .unwrap()
});
static MINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(мо[йиеё]\w*|сво[йиеё]\w*|данн\w*|сведени\w*|ответ\w*)\b").unwrap()
});
static VIEW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(мой|мои|моя) (профиль|данные профиля)$|\bмой профиль\b|\b(покаж|посмотр|открой|открыть)\w* (мой |свой )?профил|\bчто (хранится|сохранено|есть|записано) в (моем |мо[её]м )?профиле",
    )
    .unwrap()
});

/// The facts a message states, read from its words (numbers in words as
/// digits): «мне 67 лет» (age), «у меня двое детей» (children), «младшему
/// 5» (the youngest child's age), «инвалид второй группы», «меня
/// сократили», «я на пенсии», «малоимущая семья».
pub fn facts_in(text: &str) -> Vec<(Fact, String)> {
    static RULES: LazyLock<Vec<(Fact, Regex, &'static str)>> = LazyLock::new(|| {
        let r = |f: Fact, p: &str, v: &'static str| (f, Regex::new(p).unwrap(), v);
        vec![
            r(
                Fact::Age,
                r"\bмне (?:уже |скоро |почти |ровно )?(\d{1,3}) (?:лет|год|года)\b",
                "$1",
            ),
            r(Fact::Age, r"\b(\d{1,3}) (?:лет|год|года) мне\b", "$1"),
            r(
                Fact::Children,
                r"\b(?:нет детей|детей нет|без детей|детей у (?:меня|нас) нет)\b",
                "0",
            ),
            r(
                Fact::Children,
                r"\b(\d{1,2}) (?:детей|ребенка|ребенок|ребят|ребятишек)\b",
                "$1",
            ),
            r(Fact::Children, r"\bдвое\b", "2"),
            r(Fact::Children, r"\bтрое\b", "3"),
            r(Fact::Children, r"\bчетверо\b", "4"),
            r(Fact::Children, r"\bпятеро\b", "5"),
            r(
                Fact::YoungestChildAge,
                r"\bмладш\w* (?:ребенку |сыну |дочери |дочке )?(\d{1,2})\b",
                "$1",
            ),
            r(
                Fact::YoungestChildAge,
                r"\b(?:ребенку|сыну|дочке|дочери|малышу) (\d{1,2}) (?:лет|год|года)\b",
                "$1",
            ),
            r(
                Fact::YoungestChildAge,
                r"\b(?:ребенку|сыну|дочке|дочери|малышу) \d{1,2} (?:месяц|месяца|месяцев|недел)",
                "0",
            ),
            r(
                Fact::OldestChildAge,
                r"\bстарш\w* (?:ребенку |сыну |дочери |дочке )?(\d{1,2})\b",
                "$1",
            ),
            r(
                Fact::Disability,
                r"\b(?:нет инвалидности|не инвалид|без инвалидности)\b",
                "none",
            ),
            r(
                Fact::Disability,
                r"\b(?:перв\w* групп|1 групп|групп\w* 1\b)",
                "1",
            ),
            r(
                Fact::Disability,
                r"\b(?:втор\w* групп|2 групп|групп\w* 2\b)",
                "2",
            ),
            r(
                Fact::Disability,
                r"\b(?:трет\w* групп|3 групп|групп\w* 3\b)",
                "3",
            ),
            r(
                Fact::Employment,
                r"\b(?:безработн\w*|ищу работу|потерял\w* работу|сократили|уволили|без работы|не работаю)\b",
                "unemployed",
            ),
            r(
                Fact::Employment,
                r"\b(?:пенсионер\w*|на пенсии)\b",
                "retired",
            ),
            r(Fact::Employment, r"\b(?:студент\w*|учусь)\b", "student"),
            r(Fact::Employment, r"\bсамозанят\w*", "self_employed"),
            r(
                Fact::Employment,
                r"\b(?:я работаю|работаю официально)\b",
                "employed",
            ),
            r(
                Fact::Income,
                r"\b(?:малоимущ\w*|низк\w* доход\w*|маленьк\w* (?:доход|зарплат)\w*|ниже прожиточного)",
                "low",
            ),
        ]
    });
    let t = words_to_digits(&normalize_text(text));
    let mut out: Vec<(Fact, String)> = Vec::new();
    for (f, re, v) in RULES.iter() {
        if out.iter().any(|(g, _)| g == f) {
            continue;
        }
        if let Some(c) = re.captures(&t) {
            let mut value = String::new();
            c.expand(v, &mut value);
            if plausible(*f, &value) {
                out.push((*f, value));
            }
        }
    }
    out
}

/// A number a fact can hold.
fn plausible(f: Fact, v: &str) -> bool {
    let max = match f {
        Fact::Age => 120,
        Fact::Children => 20,
        Fact::YoungestChildAge | Fact::OldestChildAge => 80,
        _ => return true,
    };
    v.parse::<u32>().is_ok_and(|n| n <= max)
}

/// How an answer to the question about `fact` reads: a value, «детей нет»,
/// or nothing usable.
enum Answer {
    Value(String),
    NoChildren,
    Skip,
}

/// The answer to the question about `f` in free text.
fn answer_in(f: Fact, text: &str) -> Option<Answer> {
    let t = words_to_digits(&normalize_text(text));
    let has = |p: &str| Regex::new(p).unwrap().is_match(&t);
    if let Some((_, v)) = facts_in(text).into_iter().find(|(g, _)| *g == f) {
        return Some(Answer::Value(v));
    }
    if f.numeric() {
        if f.of_child() && has(r"^(нет|нету|детей нет|нет детей|у меня нет детей|без детей)$")
        {
            return Some(Answer::NoChildren);
        }
        if f == Fact::Children && has(r"^(нет|нету|ни одного)$") {
            return Some(Answer::Value("0".into()));
        }
        let n = Regex::new(r"\b(\d{1,3})\b").unwrap();
        let v = n.captures(&t)?.get(1)?.as_str().to_string();
        // «5 месяцев», «полгода»: under a year is 0
        let v = if has(r"\b\d{1,2} (месяц|месяца|месяцев|недел)") {
            "0".into()
        } else {
            v
        };
        return plausible(f, &v).then_some(Answer::Value(v));
    }
    let v = match f {
        Fact::Disability => {
            if has(r"\b(1|перв\w*)\b") {
                "1"
            } else if has(r"\b(2|втор\w*)\b") {
                "2"
            } else if has(r"\b(3|трет\w*)\b") {
                "3"
            } else if has(r"^(нет|нету|никакой|нет инвалидности|не инвалид\w*)\b")
            {
                "none"
            } else {
                return None;
            }
        }
        Fact::Employment => {
            if has(r"\b(не работаю|безработ|ищу|без работы|сократ|уволи|потерял)")
            {
                "unemployed"
            } else if has(r"\bпенси") {
                "retired"
            } else if has(r"\b(уч(усь|еба|усь)|студент|школ)") {
                "student"
            } else if has(r"\b(самозанят|ип|предпринимат|свое дело|бизнес)")
            {
                "self_employed"
            } else if has(r"\b(работаю|да|тружусь|официально)\b") {
                "employed"
            } else if has(r"^нет\b") {
                "unemployed"
            } else {
                return None;
            }
        }
        Fact::Income => {
            if has(r"\b(не хватает|малоимущ)") {
                "low"
            } else if has(r"\b(не ниже|выше|хватает|нормальн|достаточн)") || has(r"^нет\b")
            {
                "normal"
            } else if has(r"\b(ниже|мало|маленьк|низк)") || has(r"^да\b") {
                "low"
            } else {
                return None;
            }
        }
        Fact::Region => {
            let r = norm_value(text);
            if r.is_empty() || r.chars().count() > 60 {
                return None;
            }
            return Some(Answer::Value(r));
        }
        _ => return None,
    };
    Some(Answer::Value(v.to_string()))
}

/// «1 год», «3 года», «67 лет».
fn years(n: &str) -> String {
    let Ok(v) = n.parse::<u32>() else {
        return n.to_string();
    };
    let word = match (v % 10, v % 100) {
        (_, 11..=14) => "лет",
        (1, _) => "год",
        (2..=4, _) => "года",
        _ => "лет",
    };
    format!("{v} {word}")
}

/// The profile's facts in plain words, one a line (for the dialog and the
/// Telegram `/profile`); empty when nothing is kept.
pub fn describe_facts(facts: &BTreeMap<String, String>) -> String {
    let mut lines = Vec::new();
    let mut other = 0;
    for f in Fact::ALL {
        let Some(v) = facts.get(f.name()) else {
            continue;
        };
        let line = match (f, v.as_str()) {
            (Fact::Age, v) => format!("возраст: {}", years(v)),
            (Fact::Children, "0") => "детей нет".into(),
            (Fact::Children, v) => format!("детей: {v}"),
            (Fact::YoungestChildAge, v) => format!("младшему ребёнку: {}", years(v)),
            (Fact::OldestChildAge, v) => format!("старшему ребёнку: {}", years(v)),
            (Fact::Disability, "none") => "инвалидности нет".into(),
            (Fact::Disability, v) => format!("инвалидность: {v} группа"),
            (Fact::Employment, v) => format!(
                "работа: {}",
                match v {
                    "employed" => "работаю",
                    "unemployed" => "не работаю, ищу работу",
                    "retired" => "на пенсии",
                    "student" => "учусь",
                    _ => "самозанятый или ИП",
                }
            ),
            (Fact::Income, "low") => "доход на человека ниже прожиточного минимума".into(),
            (Fact::Income, _) => "доход на человека не ниже прожиточного минимума".into(),
            (Fact::Region, v) => format!("регион: {}", v.replace('_', " ")),
        };
        lines.push(format!("— {line}"));
    }
    for k in facts.keys() {
        if Fact::from_name(k).is_none() {
            other += 1;
        }
    }
    if other > 0 {
        lines.push(format!("— сведения для заявлений: {other}"));
    }
    lines.join("\n")
}

/// The buttons of the question about `f` (the keys 1–5, «Пропустить» on 9).
fn fact_choices(f: Fact, skip: &str) -> Vec<ChoiceOut> {
    let opts: &[(&str, &str, &[&str])] = match f {
        Fact::Disability => &[
            ("1", "Первая группа", &["первая", "1 группа"]),
            ("2", "Вторая группа", &["вторая", "2 группа"]),
            ("3", "Третья группа", &["третья", "3 группа"]),
            ("none", "Нет инвалидности", &["нет", "нету"]),
        ],
        Fact::Employment => &[
            ("employed", "Работаю", &["работаю", "да"]),
            (
                "unemployed",
                "Не работаю, ищу работу",
                &["не работаю", "безработный", "безработная"],
            ),
            ("retired", "На пенсии", &["пенсионер", "пенсионерка"]),
            ("student", "Учусь", &["студент", "студентка"]),
            (
                "self_employed",
                "Самозанятый или ИП",
                &["самозанятый", "самозанятая", "ип"],
            ),
        ],
        Fact::Income => &[
            ("low", "Да, ниже", &["да", "ниже"]),
            ("normal", "Нет, не ниже", &["нет", "не ниже", "выше"]),
        ],
        Fact::YoungestChildAge | Fact::OldestChildAge => &[(
            "no_children",
            "Детей нет",
            &["нет детей", "детей нет", "нет"],
        )],
        Fact::Children => &[("0", "Детей нет", &["нет детей", "детей нет", "нет"])],
        _ => &[],
    };
    // a number is typed or keyed in: only list answers have keys
    let keyed = !f.numeric();
    let mut cs: Vec<ChoiceOut> = opts
        .iter()
        .enumerate()
        .map(|(i, (id, label, syn))| {
            let key = (i + 1).to_string();
            let mut c = choice(id, label, keyed.then_some(key.as_str()));
            c.synonyms = syn.iter().map(|s| s.to_string()).collect();
            c
        })
        .collect();
    let mut s = choice("skip", skip, keyed.then_some("9"));
    s.synonyms = vec!["не знаю".into(), "пропустить".into()];
    cs.push(s);
    cs
}

impl Engine {
    /// The first node of `kind` (and, for a form, `action`) in the graph.
    fn node_of(&self, kind: NodeKind, action: Option<FormAction>) -> Option<String> {
        let mut names: Vec<&String> = self
            .graph
            .nodes
            .iter()
            .filter(|(_, n)| n.kind == kind && (action.is_none() || n.action == action))
            .map(|(k, _)| k)
            .collect();
        names.sort();
        names.first().map(|s| s.to_string())
    }

    /// Keeps the facts a message states, for this conversation (not the
    /// profile: that needs consent).
    pub(super) fn note_facts(&self, s: &mut Session, text: &str) {
        for (f, v) in facts_in(text) {
            s.facts.insert(f.name().to_string(), v);
        }
    }

    /// What the interview knows: the kept profile, then what was said now.
    fn known_facts(&self, s: &Session) -> Result<BTreeMap<String, String>> {
        let mut f = Profile::load(&*self.store, &s.key())?.facts;
        f.extend(s.facts.clone());
        Ok(f)
    }

    fn next_fact(&self, s: &Session, known: &BTreeMap<String, String>) -> Option<Fact> {
        let st = s.search.as_ref()?;
        if st.asked >= MAX_QUESTIONS {
            return None;
        }
        let cands: Vec<&Eligibility> = self.nlu.kb.measures().into_iter().map(|(_, e)| e).collect();
        let skipped: BTreeSet<Fact> = st
            .skipped
            .iter()
            .filter_map(|n| Fact::from_name(n))
            .collect();
        next_question(&cands, known, &skipped)
    }

    /// Entering the `search` node: its text when questions follow, then the
    /// first question or straight the results.
    pub(super) fn enter_search(&self, s: &mut Session, node: &Node, out: &mut Out) -> Result<()> {
        s.search = Some(SearchState::default());
        out.events.push("search_started".into());
        if self.nlu.kb.measures().is_empty() {
            s.search = None;
            let next = node
                .next
                .clone()
                .unwrap_or_else(|| self.graph.classify.clone());
            return self.enter(s, &next, out);
        }
        let known = self.known_facts(s)?;
        if self.next_fact(s, &known).is_some() {
            out.say(self.fill_s(s, node.text.as_deref().unwrap_or_default()));
        }
        self.search_next(s, out)
    }

    fn search_next(&self, s: &mut Session, out: &mut Out) -> Result<()> {
        let known = self.known_facts(s)?;
        match self.next_fact(s, &known) {
            Some(f) => {
                if let Some(st) = s.search.as_mut() {
                    st.asked += 1;
                    st.phase = Phase::Asking {
                        fact: f.name().to_string(),
                    };
                }
                out.events.push(format!("search_asked:{}", f.name()));
                let text = self.p(&format!("search_{}", f.name()));
                let cs = fact_choices(f, &self.p("choice_skip"));
                self.ask(s, out, text, cs, Wait::Search);
                Ok(())
            }
            None => self.search_results(s, &known, out),
        }
    }

    /// What the search (or the profile view) waits for.
    pub(super) fn on_search(&self, s: &mut Session, input: &Input, out: &mut Out) -> Result<()> {
        let Some(st) = s.search.clone() else {
            return self.free_text_or_repeat(s, input, out);
        };
        match st.phase {
            Phase::Asking { fact } => match Fact::from_name(&fact) {
                Some(f) => self.on_answer(s, f, input, out),
                None => self.search_next(s, out),
            },
            Phase::Results => self.on_results(s, input, out),
            Phase::Consent => self.on_save_consent(s, input, out),
            Phase::Profile => match self.pick(s, input).as_deref() {
                Some("profile_delete") => self.delete_profile(s, out),
                Some("search") => match self.node_of(NodeKind::Search, None) {
                    Some(n) => self.enter(s, &n, out),
                    None => self.free_text_or_repeat(s, input, out),
                },
                _ => self.leave_search(s, input, out),
            },
        }
    }

    /// Free text where the search offered choices: a new question.
    fn leave_search(&self, s: &mut Session, input: &Input, out: &mut Out) -> Result<()> {
        if matches!(input, Input::Text(t) if !style::is_yes(&self.graph, t) && !style::is_no(&self.graph, t))
        {
            s.search = None;
        }
        self.free_text_or_repeat(s, input, out)
    }

    fn on_answer(&self, s: &mut Session, f: Fact, input: &Input, out: &mut Out) -> Result<()> {
        let answer = match self.pick(s, input).as_deref() {
            Some("skip") => Some(Answer::Skip),
            Some("no_children") => Some(Answer::NoChildren),
            Some(id) => Some(Answer::Value(id.to_string())),
            None => match input {
                Input::Text(t) if style::is_skip(&self.graph, t) => Some(Answer::Skip),
                Input::Text(t) => answer_in(f, t),
                Input::Dtmf(d) if f.numeric() => {
                    let d = d.trim().trim_end_matches('#');
                    d.parse::<u32>()
                        .ok()
                        .map(|n| n.to_string())
                        .filter(|v| plausible(f, v))
                        .map(Answer::Value)
                }
                _ => None,
            },
        };
        // what a client tells about themselves stays out of the log
        out.personal_input = true;
        let Some(answer) = answer else {
            // a longer message that answers nothing is a new question
            if matches!(input, Input::Text(t) if normalize_text(t).split_whitespace().count() >= 4
                || self.is_new_question(s, t))
            {
                return self.leave_search(s, input, out);
            }
            out.say(self.p("search_not_understood"));
            self.repeat(s, out);
            return Ok(());
        };
        match answer {
            Answer::Value(v) => {
                s.facts.insert(f.name().to_string(), v);
            }
            Answer::NoChildren => {
                s.facts
                    .insert(Fact::Children.name().to_string(), "0".into());
            }
            Answer::Skip => {
                if let Some(st) = s.search.as_mut() {
                    st.skipped.insert(f.name().to_string());
                }
            }
        }
        out.events.push("search_answered".into());
        self.search_next(s, out)
    }

    /// The measures that fit, most particular first (more conditions
    /// matched, then the segment's life situations), each with the first
    /// sentence of its answer; those that depend on a skipped fact after
    /// them. Nothing fits: said, and the operator offered.
    fn search_results(
        &self,
        s: &mut Session,
        known: &BTreeMap<String, String>,
        out: &mut Out,
    ) -> Result<()> {
        let kb = &self.nlu.kb;
        let mut sure: Vec<String> = Vec::new();
        let mut maybe: Vec<String> = Vec::new();
        let mut matched: BTreeMap<String, usize> = BTreeMap::new();
        for (id, e) in kb.measures() {
            match e.eval(known) {
                Tri::Yes => {
                    matched.insert(id.to_string(), e.matched_conditions(known));
                    sure.push(id.to_string());
                }
                Tri::Unknown => maybe.push(id.to_string()),
                Tri::No => {}
            }
        }
        style::order_for_segment(&mut sure, kb, &self.graph, &s.segment);
        sure.sort_by_key(|id| std::cmp::Reverse(matched.get(id).copied().unwrap_or(0)));
        style::order_for_segment(&mut maybe, kb, &self.graph, &s.segment);
        out.events.push(format!("search_results:{}", sure.len()));
        let g = self.graph.clone();
        if sure.is_empty() && maybe.is_empty() {
            s.search = None;
            s.node = g.classify.clone();
            let mut o = self.operator_choice();
            o.id = "yes".into();
            o.dtmf = Some("1".into());
            o.synonyms = vec!["да".into(), "оператор".into()];
            let mut r = choice("no", &self.p("choice_other"), Some("2"));
            r.synonyms = vec!["нет".into()];
            self.ask(
                s,
                out,
                self.p("search_none"),
                vec![o, r],
                Wait::OfferOperator,
            );
            return Ok(());
        }
        let title = |id: &str| kb.intent(id).map(|i| i.title.clone()).unwrap_or_default();
        let mut text = Vec::new();
        if !sure.is_empty() {
            let mut lines = vec![self.p("search_found")];
            for id in &sure {
                let Some(it) = kb.intent(id) else { continue };
                let a = it.answer_for(&s.segment).trim();
                let end = a.find(['.', '!', '?']).map(|i| i + 1).unwrap_or(a.len());
                lines.push(format!("— {}. {}", it.title, a[..end].trim()));
            }
            text.push(lines.join("\n"));
        }
        if !maybe.is_empty() {
            let titles: Vec<String> = maybe.iter().map(|id| format!("«{}»", title(id))).collect();
            let key = if sure.is_empty() {
                "search_maybe_only"
            } else {
                "search_maybe"
            };
            text.push(fill(&self.p(key), &[("titles", titles.join(", "))]));
        }
        out.say(text.join("\n\n"));
        let mut cs: Vec<ChoiceOut> = sure
            .iter()
            .chain(maybe.iter())
            .take(6)
            .enumerate()
            .map(|(i, id)| choice(id, &title(id), Some(&(i + 1).to_string())))
            .collect();
        if self
            .node_of(NodeKind::Form, Some(FormAction::BookAppointment))
            .is_some()
        {
            let n = (cs.len() + 1).to_string();
            let mut b = choice("book", &self.p("search_book"), Some(&n));
            b.synonyms = vec!["записаться".into(), "запись".into()];
            cs.push(b);
        }
        let kept = Profile::load(&*self.store, &s.key())?.facts;
        if s.facts.iter().any(|(k, v)| kept.get(k) != Some(v)) {
            let n = (cs.len() + 1).to_string();
            let mut k = choice("save", &self.p("search_save"), Some(&n));
            k.synonyms = vec!["сохранить".into(), "сохраните".into()];
            cs.push(k);
        }
        cs.push(self.operator_choice());
        if let Some(st) = s.search.as_mut() {
            st.phase = Phase::Results;
            st.offered = cs.clone();
        }
        self.ask(s, out, self.p("search_choose"), cs, Wait::Search);
        Ok(())
    }

    fn on_results(&self, s: &mut Session, input: &Input, out: &mut Out) -> Result<()> {
        match self.pick(s, input) {
            Some(id) if id == "book" => {
                s.search = None;
                match self.node_of(NodeKind::Form, Some(FormAction::BookAppointment)) {
                    Some(n) => self.enter(s, &n, out),
                    None => self.free_text_or_repeat(s, input, out),
                }
            }
            Some(id) if id == "save" => {
                if self.store.consent(&s.key())?.is_some_and(|c| c.active()) {
                    self.save_facts(s, out)?;
                    self.offer_again(s, out);
                    return Ok(());
                }
                if let Some(st) = s.search.as_mut() {
                    st.phase = Phase::Consent;
                }
                out.events.push("consent_asked".into());
                self.ask(
                    s,
                    out,
                    self.p("search_consent"),
                    self.yes_no(),
                    Wait::Search,
                );
                Ok(())
            }
            Some(id) if self.nlu.kb.intent(&id).is_some() => {
                s.search = None;
                out.events.push("search_chosen".into());
                self.route_intent(s, &id, out)
            }
            _ => self.leave_search(s, input, out),
        }
    }

    /// The answer to «Сохранить ответы в профиле?»'s consent question.
    fn on_save_consent(&self, s: &mut Session, input: &Input, out: &mut Out) -> Result<()> {
        match self.pick(s, input).as_deref() {
            Some("yes") => {
                let text = self.p("search_consent");
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
                self.save_facts(s, out)?;
                self.offer_again(s, out);
                Ok(())
            }
            Some("no") => {
                out.events.push("consent_declined".into());
                out.say(self.p("search_not_saved"));
                self.offer_again(s, out);
                Ok(())
            }
            _ => self.leave_search(s, input, out),
        }
    }

    /// The facts of this conversation join the kept profile, in the turn's commit.
    fn save_facts(&self, s: &mut Session, out: &mut Out) -> Result<()> {
        let key = s.key();
        let mut p = Profile::load(&*self.store, &key)?;
        p.facts.extend(s.facts.clone());
        p.updated = self.now();
        out.writes.records.push(p.save(&key)?);
        out.events.push("profile_saved".into());
        out.say(self.p("search_saved"));
        Ok(())
    }

    /// The results' choices again, without «Сохранить».
    fn offer_again(&self, s: &mut Session, out: &mut Out) {
        let cs: Vec<ChoiceOut> = s
            .search
            .as_ref()
            .map(|st| {
                st.offered
                    .iter()
                    .filter(|c| c.id != "save")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if let Some(st) = s.search.as_mut() {
            st.phase = Phase::Results;
            st.offered = cs.clone();
        }
        self.ask(s, out, self.p("search_choose"), cs, Wait::Search);
    }

    /// «Мой профиль» / «удалить данные профиля» in any step but a form's
    /// field: shown or deleted. True when the turn is done.
    pub(super) fn profile_rule(
        &self,
        s: &mut Session,
        input: &Input,
        out: &mut Out,
    ) -> Option<Result<()>> {
        let Input::Text(t) = input else {
            return None;
        };
        if matches!(s.wait, Wait::Field { .. }) {
            return None;
        }
        let n = normalize_text(t);
        // «удалить профиль на госуслугах» is about another site's profile:
        // deleting ours takes words about the client's own data
        if DELETE.is_match(&n) && MINE.is_match(&n) && !n.contains("госуслуг") {
            return Some(self.delete_profile(s, out));
        }
        if VIEW.is_match(&n) {
            return Some(self.show_profile(s, out));
        }
        None
    }

    fn show_profile(&self, s: &mut Session, out: &mut Out) -> Result<()> {
        let p = Profile::load(&*self.store, &s.key())?;
        out.events.push("profile_shown".into());
        let mut cs = Vec::new();
        let text = if p.facts.is_empty() {
            self.p("search_profile_empty")
        } else {
            let mut d = choice(
                "profile_delete",
                &self.p("search_profile_delete"),
                Some("1"),
            );
            d.synonyms = vec!["удалить".into()];
            cs.push(d);
            format!("{}\n{}", self.p("search_profile"), describe_facts(&p.facts))
        };
        if self.node_of(NodeKind::Search, None).is_some() {
            let n = (cs.len() + 1).to_string();
            let mut c = choice("search", &self.p("search_start"), Some(&n));
            c.synonyms = vec!["подобрать".into(), "что мне положено".into()];
            cs.push(c);
        }
        cs.push(self.operator_choice());
        s.search = Some(SearchState {
            phase: Phase::Profile,
            ..Default::default()
        });
        s.node = self.graph.classify.clone();
        self.ask(s, out, text, cs, Wait::Search);
        Ok(())
    }

    /// Deletes the kept profile (and the facts said in this conversation),
    /// in the turn's commit.
    fn delete_profile(&self, s: &mut Session, out: &mut Out) -> Result<()> {
        out.writes.records.push(Profile::remove(&s.key()));
        s.facts.clear();
        s.search = None;
        out.events.push("profile_deleted".into());
        s.node = self.graph.classify.clone();
        self.ask(
            s,
            out,
            self.p("search_profile_deleted"),
            Vec::new(),
            Wait::Node,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(t: &str) -> BTreeMap<&'static str, String> {
        facts_in(t)
            .into_iter()
            .map(|(f, v)| (f.name(), v))
            .collect()
    }

    #[test]
    fn facts_are_read_from_what_the_client_says() {
        let f = said("мне шестьдесят семь лет, у меня двое детей");
        assert_eq!(f["age"], "67");
        assert_eq!(f["children"], "2");
        let f = said("Я инвалид второй группы, меня сократили");
        assert_eq!(f["disability"], "2");
        assert_eq!(f["employment"], "unemployed");
        let f = said("у нас 3 ребенка, младшему 4 года, семья малоимущая");
        assert_eq!(f["children"], "3");
        assert_eq!(f["youngest_child_age"], "4");
        assert_eq!(f["income"], "low");
        assert_eq!(said("детей нет, я на пенсии")["children"], "0");
        assert!(!said("ребенку 5 лет").contains_key("age"));
        assert!(said("какие льготы мне положены").is_empty());
    }

    #[test]
    fn answers_are_read_for_their_question() {
        let v = |f, t| match answer_in(f, t) {
            Some(Answer::Value(v)) => v,
            Some(Answer::NoChildren) => "no_children".into(),
            Some(Answer::Skip) => "skip".into(),
            None => "?".into(),
        };
        assert_eq!(v(Fact::Age, "шестьдесят семь"), "67");
        assert_eq!(v(Fact::Age, "67"), "67");
        assert_eq!(v(Fact::Age, "двести"), "?");
        assert_eq!(v(Fact::YoungestChildAge, "детей нет"), "no_children");
        assert_eq!(v(Fact::YoungestChildAge, "8 месяцев"), "0");
        assert_eq!(v(Fact::Disability, "вторая"), "2");
        assert_eq!(v(Fact::Disability, "нет"), "none");
        assert_eq!(v(Fact::Disability, "не поняла"), "?");
        assert_eq!(v(Fact::Employment, "не работаю"), "unemployed");
        assert_eq!(v(Fact::Employment, "на пенсии уже"), "retired");
        assert_eq!(v(Fact::Income, "да, ниже"), "low");
        assert_eq!(v(Fact::Income, "нет, хватает"), "normal");
        assert_eq!(v(Fact::Income, "не знаю что сказать"), "?");
    }

    #[test]
    fn profile_words() {
        let f: BTreeMap<String, String> = [
            ("age", "67"),
            ("children", "0"),
            ("disability", "2"),
            ("snils", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let d = describe_facts(&f);
        assert_eq!(
            d,
            "— возраст: 67 лет\n— детей нет\n— инвалидность: 2 группа\n— сведения для заявлений: 1"
        );
        assert_eq!(years("1"), "1 год");
        assert_eq!(years("22"), "22 года");
        assert_eq!(years("12"), "12 лет");
        assert!(DELETE.is_match("удалить мои данные из профиля"));
        assert!(VIEW.is_match("мой профиль"));
        assert!(MINE.is_match("удалить мои данные из профиля"));
        assert!(!MINE.is_match("как удалить профиль"));
        assert!(VIEW.is_match("покажите мой профиль"));
        assert!(!VIEW.is_match("удалить мои данные"));
    }
}
