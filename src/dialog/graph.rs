//! The dialog graph: `dialogs/*.yaml` parsed into nodes, the prompts of the
//! engine's built-in rules, the lexicon (yes / no / operator / withdrawal
//! words), segment and channel style rules — and the validation that reports
//! every problem (unknown or unreachable node, dead end, missing prompt, a loop
//! that never waits for the citizen) with file and line.

use crate::nlu::kb::{find_line, Problem};
use anyhow::Result;
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Says `text`, goes on to `next` without waiting.
    Say,
    /// Asks `text` and waits for free text (or a typed `slot`), then `next`.
    Ask,
    /// Offers `choices`; each leads to its own node.
    Choice,
    /// Waits for a question and routes it through the classifier: intents in
    /// `routes` go to their node, any other answered intent to `next`.
    Classify,
    /// Says the knowledge-base answer of the current intent, then `next`.
    Answer,
    /// Collects `fields` (consent first when one is personal), confirms, runs `action`.
    Form,
    /// «Ваш вопрос решён?»: yes → `on.yes`; no → rephrase and options (built in).
    Solved,
    /// The 4-point ease scale, then satisfaction 1–5 when `satisfaction:
    /// true`, then NPS 0–10 when `nps: true`; then `next`.
    Rating,
    /// Passes the conversation to a person (in working hours), else offers a callback.
    Handoff,
    /// Withdraws consent and deletes the client's personal data, then `next`.
    ConsentWithdraw,
    /// Says `text` and ends the conversation.
    End,
    /// The client's notification settings (`dialog/notify.rs`): `text`, the
    /// state of each category, one choice per switch; «Готово» goes to `next`.
    Notifications,
    /// Switches every notification off, says `text`, then `next`.
    NotificationsOff,
    /// The service search («Что мне положено?»): says `text`, asks the facts
    /// that decide the measures with eligibility rules (at most five), lists
    /// those that fit; `next` when no measure has rules.
    Search,
}

impl NodeKind {
    /// Nodes that stop and wait for the citizen.
    pub fn waits(self) -> bool {
        matches!(
            self,
            NodeKind::Ask
                | NodeKind::Choice
                | NodeKind::Classify
                | NodeKind::Form
                | NodeKind::Solved
                | NodeKind::Rating
                | NodeKind::Handoff
                | NodeKind::End
                | NodeKind::Notifications
                | NodeKind::Search
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotType {
    #[default]
    Text,
    /// A Russian phone number (+7 / 8 and ten digits).
    Phone,
    /// Digits only (an application number, a code).
    Digits,
    /// A choice among `options` or a dynamic `source`.
    Choice,
    /// SNILS: 11 digits with its checksum (applications: `dialog/fields.rs`).
    Snils,
    /// A person's INN: 12 digits with its check digits.
    Inn,
    /// A Russian bank's BIK: 9 digits starting with 04.
    Bik,
    /// A bank account: 20 digits, its key checked with the form's `bik`.
    Account,
    /// A date (dd.mm.yyyy or «5 мая 1980»).
    Date,
    /// A birth date: a date in the past, at most 120 years ago.
    BirthDate,
    /// A draft's code: 8 digits, typed or said.
    Code,
}

/// Where the options of a choice field come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Services,
    Offices,
    /// Days with free slots for the chosen service and office.
    Days,
    /// Free times on the chosen day.
    Times,
    /// The client's own appointments.
    MyAppointments,
    /// The services with a fee (`[[fees.service]]`).
    Fees,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormAction {
    BookAppointment,
    CancelAppointment,
    MoveAppointment,
    RequestCallback,
    ApplicationStatus,
    /// Says the client's appointments (no confirmation, no personal data asked).
    ListAppointments,
    /// Files the form as an application of the node's `application` kind
    /// (`dialog/application.rs`): the summary read back, corrections by
    /// name, drafts.
    SubmitApplication,
    /// Continues a saved draft by its `code` field.
    ResumeDraft,
    /// Says the fee of the chosen service for the client's segment, its
    /// recipient's details and the payment's QR code (no confirmation).
    PayFee,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceDef {
    pub id: String,
    pub label: String,
    #[serde(default)]
    pub dtmf: Option<String>,
    /// Words a caller may say (or type) for this choice.
    #[serde(default)]
    pub synonyms: Vec<String>,
    pub next: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub slot: String,
    #[serde(default, rename = "type")]
    pub kind: SlotType,
    pub prompt: String,
    /// Personal data: the form asks for consent before collecting it.
    #[serde(default)]
    pub personal: bool,
    #[serde(default)]
    pub source: Option<Source>,
    /// Skipped (and left empty) when the client has nothing to say here.
    #[serde(default)]
    pub optional: bool,
    /// applications: what the summary calls the field and the client says
    /// to correct it («телефон» in «исправить телефон»).
    #[serde(default)]
    pub label: Option<String>,
    /// applications: the value is taken from the client's profile (a fact
    /// of the slot's name) and kept there when the application is filed.
    #[serde(default)]
    pub profile: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub kind: NodeKind,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub choices: Vec<ChoiceDef>,
    /// Transitions on `yes`, `no`, `text`, `silence`, `digits`.
    #[serde(default)]
    pub on: BTreeMap<String, String>,
    /// classify: intent id → node.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// classify: conversational intents (greeting, thanks, operator…) that
    /// are answered or routed directly: never offered as options or confirmed.
    #[serde(default)]
    pub direct: Vec<String>,
    /// ask: the slot the answer is stored in, and its type.
    #[serde(default)]
    pub slot: Option<String>,
    #[serde(default)]
    pub slot_type: SlotType,
    /// form
    #[serde(default)]
    pub fields: Vec<Field>,
    #[serde(default)]
    pub action: Option<FormAction>,
    /// form: the question before the action (a template over the slots).
    #[serde(default)]
    pub confirm: Option<String>,
    /// form: what to say when the client has nothing to act on (no appointments…).
    #[serde(default)]
    pub empty: Option<String>,
    /// form with `submit_application`: which application (`single_allowance`…).
    #[serde(default)]
    pub application: Option<String>,
    /// rating: also ask NPS 0–10.
    #[serde(default)]
    pub nps: bool,
    /// rating: also ask satisfaction 1–5 (prompt `satisfaction`), after ease.
    #[serde(default)]
    pub satisfaction: bool,
    /// handoff: said outside the operators' hours, with the offers in `choices`.
    #[serde(default)]
    pub closed_text: Option<String>,
    /// say: other texts for particular cases, the first that holds wins
    /// over `text`.
    #[serde(default)]
    pub cases: Vec<Case>,
    #[serde(skip)]
    pub file: PathBuf,
    #[serde(skip)]
    pub line: usize,
}

/// A case of a `say` node: its text is said instead of the node's when the
/// client's message matches `when` (a regular expression over the
/// normalised message), or when the bot greeted the client in this turn or
/// the one before (`after_greeting`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub after_greeting: bool,
    pub text: String,
    #[serde(skip)]
    pub re: Option<Regex>,
}

impl Node {
    pub fn has_personal_fields(&self) -> bool {
        self.fields.iter().any(|f| f.personal)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentStyle {
    /// Life situations (the knowledge base's `situation`) this segment asks about most, first first.
    #[serde(default)]
    pub situations: Vec<String>,
    /// Emoji allowed (where the channel allows them too).
    #[serde(default = "yes")]
    pub emoji: bool,
    /// Patterns (regular expressions, case-insensitive) that reveal the segment in a message.
    #[serde(default)]
    pub detect: Vec<String>,
    /// The label of the segment when the client picks a profile.
    #[serde(default)]
    pub label: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelStyle {
    #[serde(default)]
    pub emoji: bool,
    #[serde(default = "yes")]
    pub links: bool,
    /// Sentences longer than this are split at safe points (0 = no limit).
    #[serde(default)]
    pub max_sentence_words: usize,
    /// Spoken output: no URLs, symbols read as words.
    #[serde(default)]
    pub spoken: bool,
    /// Words of the engine's own texts put the channel's way (on voice,
    /// «напишите» → «скажите»); knowledge-base answers stay as written.
    #[serde(default)]
    pub words: BTreeMap<String, String>,
    /// Handoffs are answered on the channel's own line (the voice robot's
    /// Asterisk queue), not in the operators' console: the conversation is
    /// not put in the console's queue, and the handoff counts as a
    /// transfer between people.
    #[serde(default)]
    pub line_queue: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLexicon {
    #[serde(default)]
    yes: Vec<String>,
    #[serde(default)]
    no: Vec<String>,
    #[serde(default)]
    operator: Vec<String>,
    #[serde(default)]
    withdraw: Vec<String>,
    #[serde(default)]
    skip: Vec<String>,
}

/// Compiled word lists; each pattern must match the whole normalised message
/// (`yes`, `no`, `skip`) or a part of it (`operator`, `withdraw`).
#[derive(Debug, Clone)]
pub struct Lexicon {
    pub yes: Vec<Regex>,
    pub no: Vec<Regex>,
    pub operator: Vec<Regex>,
    pub withdraw: Vec<Regex>,
    pub skip: Vec<Regex>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphFile {
    start: Option<String>,
    classify: Option<String>,
    operator: Option<String>,
    finish: Option<String>,
    #[serde(default)]
    prompts: BTreeMap<String, String>,
    lexicon: Option<RawLexicon>,
    #[serde(default)]
    segments: BTreeMap<String, SegmentStyle>,
    #[serde(default)]
    channels: BTreeMap<String, ChannelStyle>,
    #[serde(default)]
    nodes: BTreeMap<String, Node>,
}

/// The prompts of the built-in rules; the graph must define every one.
pub const REQUIRED_PROMPTS: &[&str] = &[
    "confirm",
    "alternatives",
    "not_understood",
    "rephrase",
    "rephrase_only",
    "offer_operator",
    "choose_one",
    "silence",
    "silence_end",
    "empty",
    "too_long",
    "attachment",
    "consent",
    "consent_declined",
    "operator_waiting",
    "operator_returned",
    "operator_joined",
    "operator_joined_named",
    "operator_transferred",
    "operator_transferred_named",
    "invalid_phone",
    "invalid_digits",
    "form_cancelled",
    "slot_taken",
    "status_unavailable",
    "status_unknown",
    "segment_set",
    "nps",
    "rating_thanks",
    "choice_yes",
    "choice_no",
    "choice_operator",
    "choice_other",
    "choice_rephrase",
    "choice_skip",
    "choice_back",
    "choice_cancel",
    "choice_more_days",
    "choice_more_times",
    "day_taken",
    "more_options",
    "alternatives_again",
    "time_taken",
];

pub const CHANNELS: &[&str] = &["web", "telegram", "voice"];

#[derive(Debug, Clone)]
pub struct Graph {
    pub start: String,
    pub classify: String,
    pub operator: String,
    pub finish: String,
    pub prompts: BTreeMap<String, String>,
    pub lexicon: Lexicon,
    pub segments: BTreeMap<String, SegmentStyle>,
    pub detectors: Vec<(String, Regex)>,
    pub channels: BTreeMap<String, ChannelStyle>,
    pub nodes: HashMap<String, Node>,
}

/// Every problem of a graph that failed to load.
#[derive(Debug)]
pub struct GraphErrors(pub Vec<Problem>);

impl fmt::Display for GraphErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the dialog graph has {} problem(s):", self.0.len())?;
        for p in self.0.iter().take(crate::yaml::MAX_PROBLEMS) {
            writeln!(f, "  {p}")?;
        }
        if self.0.len() > crate::yaml::MAX_PROBLEMS {
            writeln!(
                f,
                "  … and {} more",
                self.0.len() - crate::yaml::MAX_PROBLEMS
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for GraphErrors {}

fn compile(pats: &[String], whole: bool) -> std::result::Result<Vec<Regex>, String> {
    pats.iter()
        .map(|p| {
            let src = if whole {
                format!("^(?:{p})$")
            } else {
                format!(r"(?:^|\b)(?:{p})(?:\b|$)")
            };
            RegexBuilder::new(&src)
                .case_insensitive(true)
                .build()
                .map_err(|e| format!("bad pattern {p:?}: {e}"))
        })
        .collect()
}

impl Graph {
    /// Loads every `*.yaml` of `dir`; `intents` are the knowledge base's ids
    /// (routes to unknown intents are errors).
    pub fn load_dir(dir: &Path, intents: &[String]) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot read the dialogs folder {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        if files.is_empty() {
            anyhow::bail!("{} holds no dialog files (*.yaml)", dir.display());
        }
        let mut sources = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
            sources.push((f, text));
        }
        Ok(Self::from_sources(&sources, intents)?)
    }

    pub fn from_sources(
        sources: &[(PathBuf, String)],
        intents: &[String],
    ) -> std::result::Result<Self, GraphErrors> {
        let mut problems = Vec::new();
        let mut merged = GraphFile::default();
        // where each header key / node / prompt was defined
        let mut at: HashMap<String, (PathBuf, usize)> = HashMap::new();
        let mut lexicon: Option<RawLexicon> = None;
        for (file, text) in sources {
            let lines: Vec<&str> = text.lines().collect();
            let p = |line: usize, message: String| Problem {
                file: file.clone(),
                line,
                message,
            };
            if crate::yaml::check_expansion(text).is_err() {
                problems.push(p(0, "the file expands beyond its limit: its aliases (*name) repeat too much; write the values out".into()));
                continue;
            }
            let doc: GraphFile = match serde_yaml::from_str(text) {
                Ok(d) => d,
                Err(e) => {
                    let line = e.location().map(|l| l.line()).unwrap_or(0);
                    problems.push(p(line, format!("cannot parse: {e}")));
                    continue;
                }
            };
            for (key, val, slot) in [
                ("start", doc.start, &mut merged.start),
                ("classify", doc.classify, &mut merged.classify),
                ("operator", doc.operator, &mut merged.operator),
                ("finish", doc.finish, &mut merged.finish),
            ] {
                if let Some(v) = val {
                    let line = find_line(&lines, 1, &format!("{key}:"));
                    if slot.is_some() {
                        problems.push(p(line, format!("`{key}` is set in more than one file")));
                    }
                    at.insert(format!("header:{key}"), (file.clone(), line));
                    *slot = Some(v);
                }
            }
            for (k, v) in doc.prompts {
                let line = find_line(&lines, 1, &format!("{k}:"));
                if merged.prompts.insert(k.clone(), v).is_some() {
                    problems.push(p(line, format!("prompt `{k}` is defined twice")));
                }
                at.insert(format!("prompt:{k}"), (file.clone(), line));
            }
            if let Some(l) = doc.lexicon {
                if lexicon.is_some() {
                    problems.push(p(
                        find_line(&lines, 1, "lexicon:"),
                        "`lexicon` is defined twice".into(),
                    ));
                }
                at.insert(
                    "lexicon".into(),
                    (file.clone(), find_line(&lines, 1, "lexicon:")),
                );
                lexicon = Some(l);
            }
            for (k, v) in doc.segments {
                let line = find_line(&lines, find_line(&lines, 1, "segments:"), &format!("{k}:"));
                at.insert(format!("segment:{k}"), (file.clone(), line));
                merged.segments.insert(k, v);
            }
            for (k, v) in doc.channels {
                merged.channels.insert(k, v);
            }
            let nodes_line = find_line(&lines, 1, "nodes:");
            for (name, mut node) in doc.nodes {
                node.file = file.clone();
                node.line = find_line(&lines, nodes_line, &format!("{name}:"));
                for c in &mut node.cases {
                    let Some(w) = &c.when else { continue };
                    match compile(std::slice::from_ref(w), false) {
                        Ok(mut r) => c.re = r.pop(),
                        Err(e) => problems.push(p(node.line, format!("node `{name}`: case {e}"))),
                    }
                }
                if let Some(prev) = merged.nodes.get(&name) {
                    problems.push(p(
                        node.line,
                        format!(
                            "node `{name}` is already defined at {}:{}",
                            prev.file.display(),
                            prev.line
                        ),
                    ));
                    continue;
                }
                merged.nodes.insert(name, node);
            }
        }
        let first = sources.first().map(|s| s.0.clone()).unwrap_or_default();
        let header_problem = |problems: &mut Vec<Problem>, msg: String| {
            problems.push(Problem {
                file: first.clone(),
                line: 1,
                message: msg,
            })
        };
        let header = |key: &str, v: &Option<String>, problems: &mut Vec<Problem>| match v {
            None => {
                header_problem(
                    problems,
                    format!("the graph needs `{key}: <node>` at the top of one file"),
                );
                String::new()
            }
            Some(n) => {
                if !merged.nodes.contains_key(n) {
                    let (f, l) = at
                        .get(&format!("header:{key}"))
                        .cloned()
                        .unwrap_or((first.clone(), 1));
                    problems.push(Problem {
                        file: f,
                        line: l,
                        message: format!("`{key}` names unknown node `{n}`"),
                    });
                }
                n.clone()
            }
        };
        let start = header("start", &merged.start, &mut problems);
        let classify = header("classify", &merged.classify, &mut problems);
        let operator = header("operator", &merged.operator, &mut problems);
        let finish = header("finish", &merged.finish, &mut problems);
        if merged
            .nodes
            .get(&classify)
            .is_some_and(|n| n.kind != NodeKind::Classify)
        {
            header_problem(
                &mut problems,
                format!("`classify` must name a node of kind classify, `{classify}` is not"),
            );
        }
        if merged
            .nodes
            .get(&operator)
            .is_some_and(|n| n.kind != NodeKind::Handoff)
        {
            header_problem(
                &mut problems,
                format!("`operator` must name a node of kind handoff, `{operator}` is not"),
            );
        }
        for k in REQUIRED_PROMPTS {
            if !merged.prompts.contains_key(*k) {
                header_problem(
                    &mut problems,
                    format!("missing prompt `prompts.{k}` (a text of the built-in rules)"),
                );
            }
        }
        // the messages of the application fields' checks, where a form has them
        for k in prompts_needed(merged.nodes.values()) {
            if !merged.prompts.contains_key(k) {
                header_problem(
                    &mut problems,
                    format!("missing prompt `prompts.{k}` (an application form needs it)"),
                );
            }
        }
        if merged.nodes.values().any(|n| n.satisfaction)
            && !merged.prompts.contains_key("satisfaction")
        {
            header_problem(
                &mut problems,
                "missing prompt `prompts.satisfaction` (a rating node asks satisfaction)".into(),
            );
        }
        if merged
            .nodes
            .values()
            .any(|n| n.action == Some(FormAction::PayFee))
        {
            for k in PAY_PROMPTS {
                if !merged.prompts.contains_key(*k) {
                    header_problem(
                        &mut problems,
                        format!("missing prompt `prompts.{k}` (a pay_fee form says it)"),
                    );
                }
            }
        }
        if merged.nodes.values().any(|n| n.kind == NodeKind::Search) {
            for k in SEARCH_PROMPTS {
                if !merged.prompts.contains_key(*k) {
                    header_problem(
                        &mut problems,
                        format!("missing prompt `prompts.{k}` (a search node asks it)"),
                    );
                }
            }
        }
        for c in CHANNELS {
            if !merged.channels.contains_key(*c) {
                header_problem(&mut problems, format!("missing style `channels.{c}`"));
            }
        }
        if !merged.segments.contains_key("universal") {
            header_problem(&mut problems, "missing `segments.universal`".into());
        }
        let lex = lexicon.unwrap_or_default();
        let lex_at = at.get("lexicon").cloned().unwrap_or((first.clone(), 1));
        let mut lexp = |name: &str, pats: &[String], whole: bool| -> Vec<Regex> {
            if pats.is_empty() {
                problems.push(Problem {
                    file: lex_at.0.clone(),
                    line: lex_at.1,
                    message: format!("`lexicon.{name}` needs at least one pattern"),
                });
            }
            compile(pats, whole).unwrap_or_else(|e| {
                problems.push(Problem {
                    file: lex_at.0.clone(),
                    line: lex_at.1,
                    message: format!("lexicon.{name}: {e}"),
                });
                Vec::new()
            })
        };
        let lexicon = Lexicon {
            yes: lexp("yes", &lex.yes, true),
            no: lexp("no", &lex.no, true),
            operator: lexp("operator", &lex.operator, false),
            withdraw: lexp("withdraw", &lex.withdraw, false),
            skip: lexp("skip", &lex.skip, true),
        };
        let mut detectors = Vec::new();
        for (seg, style) in &merged.segments {
            let (f, l) = at
                .get(&format!("segment:{seg}"))
                .cloned()
                .unwrap_or((first.clone(), 1));
            match compile(&style.detect, false) {
                Ok(rs) => detectors.extend(rs.into_iter().map(|r| (seg.clone(), r))),
                Err(e) => problems.push(Problem {
                    file: f,
                    line: l,
                    message: format!("segments.{seg}.detect: {e}"),
                }),
            }
        }
        validate_nodes(&merged.nodes, intents, &mut problems);
        // Reachability from the start and the nodes the engine jumps to itself.
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = vec![
            start.clone(),
            classify.clone(),
            operator.clone(),
            finish.clone(),
        ];
        // «продолжить заявление» leads to the form that resumes drafts
        todo.extend(
            merged
                .nodes
                .iter()
                .filter(|(_, n)| n.action == Some(FormAction::ResumeDraft))
                .map(|(k, _)| k.clone()),
        );
        while let Some(n) = todo.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            if let Some(node) = merged.nodes.get(&n) {
                todo.extend(targets(node).into_iter().map(|(_, t)| t));
            }
        }
        let mut names: Vec<&String> = merged.nodes.keys().collect();
        names.sort();
        for n in names {
            if !seen.contains(n) {
                let node = &merged.nodes[n];
                problems.push(Problem {
                    file: node.file.clone(),
                    line: node.line,
                    message: format!("node `{n}` is unreachable: no node leads to it"),
                });
            }
        }
        // A loop of nodes that never wait would spin forever.
        for (name, node) in &merged.nodes {
            let mut cur;
            let mut steps = 0;
            let mut n = node;
            while !n.kind.waits() {
                let Some(next) = n.next.clone() else { break };
                let Some(nn) = merged.nodes.get(&next) else {
                    break;
                };
                cur = next;
                n = nn;
                steps += 1;
                if cur == *name || steps > merged.nodes.len() {
                    problems.push(Problem {
                        file: node.file.clone(),
                        line: node.line,
                        message: format!(
                            "node `{name}` starts a loop that never waits for the citizen"
                        ),
                    });
                    break;
                }
            }
        }
        if !problems.is_empty() {
            // a file that cannot be read explains everything missing after it:
            // its own problems come first
            problems.sort_by(|a, b| {
                let unread = |p: &Problem| {
                    !(p.message.starts_with("cannot parse")
                        || p.message.starts_with("the file expands"))
                };
                (unread(a), &a.file, a.line).cmp(&(unread(b), &b.file, b.line))
            });
            return Err(GraphErrors(problems));
        }
        Ok(Graph {
            start,
            classify,
            operator,
            finish,
            prompts: merged.prompts,
            lexicon,
            segments: merged.segments,
            detectors,
            channels: merged.channels,
            nodes: merged.nodes.into_iter().collect(),
        })
    }

    pub fn node(&self, name: &str) -> &Node {
        &self.nodes[name]
    }

    pub fn prompt(&self, key: &str) -> &str {
        self.prompts.get(key).map(String::as_str).unwrap_or("")
    }

    pub fn channel(&self, ch: &str) -> &ChannelStyle {
        self.channels.get(ch).unwrap_or(&self.channels["web"])
    }
}

/// Every (what, target) a node can go to.
fn targets(n: &Node) -> Vec<(String, String)> {
    let mut t = Vec::new();
    if let Some(x) = &n.next {
        t.push(("next".to_string(), x.clone()));
    }
    for c in &n.choices {
        t.push((format!("choice `{}`", c.id), c.next.clone()));
    }
    for (k, v) in &n.on {
        t.push((format!("on.{k}"), v.clone()));
    }
    for (k, v) in &n.routes {
        t.push((format!("route `{k}`"), v.clone()));
    }
    t
}

fn validate_nodes(nodes: &BTreeMap<String, Node>, intents: &[String], problems: &mut Vec<Problem>) {
    const ON_KEYS: &[&str] = &["yes", "no", "text", "silence", "digits", "keypad"];
    for (name, n) in nodes {
        let mut err = |m: String| {
            problems.push(Problem {
                file: n.file.clone(),
                line: n.line,
                message: format!("node `{name}`: {m}"),
            })
        };
        for (what, t) in targets(n) {
            if !nodes.contains_key(&t) {
                err(format!("{what} leads to unknown node `{t}`"));
            }
        }
        for k in n.on.keys() {
            if !ON_KEYS.contains(&k.as_str()) {
                err(format!(
                    "unknown transition `on.{k}` (use {})",
                    ON_KEYS.join(", ")
                ));
            }
        }
        for k in n.routes.keys() {
            if !intents.is_empty() && !intents.contains(k) {
                err(format!("route for unknown intent `{k}`"));
            }
        }
        for k in &n.direct {
            if !intents.is_empty() && !intents.contains(k) {
                err(format!("`direct` lists unknown intent `{k}`"));
            }
        }
        let needs_text = !matches!(
            n.kind,
            NodeKind::Classify | NodeKind::Answer | NodeKind::Form
        );
        if needs_text && n.text.as_deref().is_none_or(|t| t.trim().is_empty()) {
            err("missing prompt: add `text`".into());
        }
        let needs_next = match n.kind {
            NodeKind::End | NodeKind::Choice => false,
            NodeKind::Solved => {
                if !n.on.contains_key("yes") {
                    err("dead end: a solved check needs `on.yes`".into());
                }
                false
            }
            _ => true,
        };
        if needs_next && n.next.is_none() {
            err("dead end: add `next`".into());
        }
        match n.kind {
            NodeKind::Choice => {
                if n.choices.is_empty() {
                    err("a choice node needs `choices`".into());
                }
                let mut ids = BTreeSet::new();
                let mut digits = BTreeSet::new();
                for c in &n.choices {
                    if !ids.insert(&c.id) {
                        err(format!("choice id `{}` appears twice", c.id));
                    }
                    if let Some(d) = &c.dtmf {
                        if d.len() != 1
                            || !d
                                .chars()
                                .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
                        {
                            err(format!(
                                "choice `{}`: dtmf must be one key (0-9, *, #)",
                                c.id
                            ));
                        } else if d == "0" {
                            err(format!(
                                "choice `{}`: dtmf 0 is reserved for the operator",
                                c.id
                            ));
                        } else if !digits.insert(d) {
                            err(format!("dtmf `{d}` is used twice"));
                        }
                    }
                }
            }
            NodeKind::Form => {
                if n.action.is_none() {
                    err("a form needs `action`".into());
                }
                let mut slots = BTreeSet::new();
                for f in &n.fields {
                    if f.prompt.trim().is_empty() {
                        err(format!("field `{}`: missing prompt", f.slot));
                    }
                    if !slots.insert(&f.slot) {
                        err(format!("field `{}` appears twice", f.slot));
                    }
                    if (f.kind == SlotType::Choice) != f.source.is_some() {
                        err(format!("field `{}`: a choice field needs `source`, and only a choice field has one", f.slot));
                    }
                }
                validate_form(n, &mut err);
                if n.action != Some(FormAction::ListAppointments)
                    && n.action != Some(FormAction::ResumeDraft)
                    && n.confirm.is_none()
                    && n.action.is_some()
                    && n.action != Some(FormAction::ApplicationStatus)
                    && n.action != Some(FormAction::PayFee)
                {
                    err("missing prompt: add `confirm` (the question before acting)".into());
                }
            }
            NodeKind::Ask if n.slot_type == SlotType::Phone => {
                err("an `ask` cannot collect a phone: use a `form` field with `personal: true`, so consent is asked first".into());
            }
            NodeKind::Handoff => {
                if n.closed_text.is_none() {
                    err("missing prompt: add `closed_text` (said outside operators' hours)".into());
                }
                if n.choices.is_empty() {
                    err("a handoff needs `choices` to offer outside operators' hours (callback, appointment)".into());
                }
            }
            _ => {}
        }
    }
}

// What the node kinds and form actions of the routine operations need of
// a graph: the prompts they say, and the checks of an application form.

/// The prompts a graph with a `search` node needs.
pub const SEARCH_PROMPTS: &[&str] = &[
    "search_age",
    "search_children",
    "search_youngest_child_age",
    "search_oldest_child_age",
    "search_disability",
    "search_employment",
    "search_income",
    "search_region",
    "search_not_understood",
    "search_found",
    "search_maybe",
    "search_maybe_only",
    "search_none",
    "search_choose",
    "search_book",
    "search_save",
    "search_consent",
    "search_saved",
    "search_not_saved",
    "search_profile",
    "search_profile_empty",
    "search_profile_delete",
    "search_profile_deleted",
    "search_start",
];

/// The prompts a graph with a `pay_fee` form must define.
pub const PAY_PROMPTS: &[&str] = &[
    "fee_free",
    "fee_amount",
    "fee_details",
    "fee_details_spoken",
    "fee_link",
    "fee_qr",
    "fee_paid_later",
];

/// The prompts the application forms of a graph need.
pub fn prompts_needed<'a>(nodes: impl Iterator<Item = &'a Node>) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for n in nodes {
        for f in &n.fields {
            v.extend(prompts_of(f.kind));
        }
        if n.action == Some(FormAction::SubmitApplication) {
            v.extend(APPLICATION_PROMPTS);
        }
        if n.action == Some(FormAction::ResumeDraft) {
            v.extend(DRAFT_PROMPTS);
        }
    }
    v.sort();
    v.dedup();
    v
}

/// The prompts of the application rules (`dialog/application.rs`).
pub const APPLICATION_PROMPTS: &[&str] = &[
    "application_fix_what",
    "application_fix_unknown",
    "application_failed",
    "application_draft_saved",
    "choice_draft",
    "choice_send",
    "choice_fix",
];

/// The prompts of continuing a draft.
pub const DRAFT_PROMPTS: &[&str] = &[
    "draft_wrong_code",
    "draft_too_many",
    "draft_expired",
    "draft_resumed",
];

/// What the graph checks of an application form: its kind, labels to
/// correct fields by, and a BIK before an account.
pub fn validate_form(n: &Node, err: &mut impl FnMut(String)) {
    if n.action == Some(FormAction::SubmitApplication) {
        if n.application.as_deref().is_none_or(|a| a.trim().is_empty()) {
            err("an application form needs `application` (which application it files)".into());
        }
        for f in &n.fields {
            if f.label.as_deref().is_none_or(|l| l.trim().is_empty()) {
                err(format!(
                    "field `{}`: an application's field needs `label` (the summary says it, the client corrects it by it)",
                    f.slot
                ));
            }
        }
    } else if n.application.is_some() {
        err("`application` belongs to a form with `action: submit_application`".into());
    }
    if n.action == Some(FormAction::ResumeDraft)
        && !(n.fields.len() == 1 && n.fields[0].kind == SlotType::Code)
    {
        err("a form with `action: resume_draft` has one field, of type code".into());
    }
    for (i, f) in n.fields.iter().enumerate() {
        if f.kind == SlotType::Account && !n.fields[..i].iter().any(|b| b.kind == SlotType::Bik) {
            err(format!(
                "field `{}`: an account's key is checked with the bank's BIK: put a field of type bik before it",
                f.slot
            ));
        }
    }
}

/// The prompts of a type's refusals: (too short or not digits, checksum or
/// other rule).
pub(super) fn prompts_of(t: SlotType) -> &'static [&'static str] {
    match t {
        SlotType::Snils => &["invalid_snils", "snils_checksum"],
        SlotType::Inn => &["invalid_inn", "inn_checksum"],
        SlotType::Bik => &["invalid_bik", "bik_not_russian"],
        SlotType::Account => &["invalid_account", "account_key"],
        SlotType::Date => &["invalid_date"],
        SlotType::BirthDate => &["invalid_date", "birth_date_future", "birth_date_old"],
        SlotType::Code => &["invalid_code"],
        _ => &[],
    }
}
