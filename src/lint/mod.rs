//! The answer linter (`otklik lint`): every text a citizen reads or hears —
//! the knowledge base's answers and titles, the dialog graph's node texts,
//! cases, questions, buttons, prompts and channel wording — checked against
//! the plain-language rules (`writing-rules.md`): readability
//! (`readability.rs`), sentence and word length, bureaucratic style
//! (канцелярит), special characters, emoji, capitals and unexplained
//! abbreviations, with limits from `[lint]` per segment and channel. Owns the
//! rules, the findings and the report; reads nlu's knowledge base, the dialog
//! graph and the settings.

pub mod readability;

use crate::config::{Config, LintConfig};
use crate::dialog::graph::Graph;
use crate::dialog::style::is_emoji;
use crate::nlu::kb::{find_line, KnowledgeBase};
use anyhow::Result;
use readability::Readability;
use regex::Regex;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One text to check, and where it is.
#[derive(Debug, Clone)]
pub struct Text {
    pub file: PathBuf,
    pub line: usize,
    /// `intent <id> / <segment>`, `node <name> / text`, `prompt <key>`…
    pub place: String,
    /// The segment it is written for (`universal` for the graph's texts).
    pub segment: String,
    /// The one channel that says it (voice wording, voice-only prompts,
    /// Telegram wording); `None`: every channel.
    pub channel: Option<String>,
    pub text: String,
}

/// A rule broken by a text.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub file: PathBuf,
    pub line: usize,
    pub place: String,
    pub severity: Severity,
    pub rule: &'static str,
    pub message: String,
    /// The offending words, or the start of the offending sentence.
    pub fragment: String,
}

/// A text's readability, and the limits it was held to.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub file: PathBuf,
    pub line: usize,
    pub place: String,
    pub segment: String,
    pub channel: Option<String>,
    #[serde(flatten)]
    pub readability: Readability,
    pub limits: Limits,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub scores: Vec<Score>,
    /// Texts at least this long (words) have a FRE verdict and count in the mean.
    pub fre_min_words: usize,
}

/// The limits a text is held to: `[lint]`'s, then its segment's, then its channel's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    pub max_sentence_words: usize,
    pub min_fre: f64,
    pub max_long_word_share: f64,
}

impl Limits {
    pub fn for_text(cfg: &LintConfig, segment: &str, channel: Option<&str>) -> Limits {
        let mut l = Limits {
            max_sentence_words: cfg.max_sentence_words,
            min_fre: cfg.min_fre,
            max_long_word_share: cfg.max_long_word_share,
        };
        let overrides = [
            cfg.segments.get(segment),
            channel.and_then(|c| cfg.channels.get(c)),
        ];
        for o in overrides.into_iter().flatten() {
            l.max_sentence_words = o.max_sentence_words.unwrap_or(l.max_sentence_words);
            l.min_fre = o.min_fre.unwrap_or(l.min_fre);
            l.max_long_word_share = o.max_long_word_share.unwrap_or(l.max_long_word_share);
        }
        l
    }
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.findings.len() - self.errors()
    }

    /// The mean FRE of the texts long enough for a verdict.
    pub fn mean_fre(&self) -> Option<f64> {
        let scored: Vec<f64> = self
            .scores
            .iter()
            .filter(|s| s.readability.words >= self.fre_min_words)
            .map(|s| s.readability.fre)
            .collect();
        (!scored.is_empty()).then(|| scored.iter().sum::<f64>() / scored.len() as f64)
    }

    pub fn summary(&self) -> String {
        let mean = match self.mean_fre() {
            Some(m) => format!(
                "mean FRE {m:.1} ({}) over the {} texts of {}+ words",
                readability::grade(m).0,
                self.scores
                    .iter()
                    .filter(|s| s.readability.words >= self.fre_min_words)
                    .count(),
                self.fre_min_words
            ),
            None => "no text long enough for a FRE verdict".into(),
        };
        format!(
            "lint: {} texts, {} error(s), {} warning(s); {mean}",
            self.scores.len(),
            self.errors(),
            self.warnings()
        )
    }

    /// The readable report: findings by file and line, the hardest texts,
    /// the summary line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut f: Vec<&Finding> = self.findings.iter().collect();
        f.sort_by(|a, b| (&a.file, a.line, a.severity).cmp(&(&b.file, b.line, b.severity)));
        for x in f {
            let _ = writeln!(
                out,
                "{}:{}: {} [{}] {}: {}\n    «{}»",
                x.file.display(),
                x.line,
                x.severity.as_str(),
                x.rule,
                x.place,
                x.message,
                x.fragment
            );
        }
        let mut hard: Vec<&Score> = self
            .scores
            .iter()
            .filter(|s| s.readability.words >= self.fre_min_words)
            .collect();
        hard.sort_by(|a, b| a.readability.fre.total_cmp(&b.readability.fre));
        if !hard.is_empty() {
            let _ = writeln!(out, "\nhardest texts (FRE, band, words per sentence):");
            for s in hard.iter().take(5) {
                let r = &s.readability;
                let _ = writeln!(
                    out,
                    "  {:6.1}  {:<16} {:4.1}  {} ({}:{})",
                    r.fre,
                    r.grade,
                    r.words_per_sentence(),
                    s.place,
                    s.file.display(),
                    s.line
                );
            }
        }
        let _ = writeln!(out, "\n{}", self.summary());
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "summary": {
                "texts": self.scores.len(),
                "errors": self.errors(),
                "warnings": self.warnings(),
                "mean_fre": self.mean_fre().map(|m| (m * 10.0).round() / 10.0),
                "fre_min_words": self.fre_min_words,
            },
            "findings": self.findings,
            "scores": self.scores,
        })
    }
}

/// Loads the knowledge base and the dialog graph the settings name and lints them.
pub fn run(cfg: &Config) -> Result<Report> {
    let kb = crate::nlu::load_kb(cfg)?;
    let ids: Vec<String> = kb.intents.iter().map(|i| i.id.clone()).collect();
    let graph = Graph::load_dir(&cfg.dialog.dialogs_dir, &ids)?;
    let mut dialog_files = Vec::new();
    for e in std::fs::read_dir(&cfg.dialog.dialogs_dir)? {
        let p = e?.path();
        if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            let text = std::fs::read_to_string(&p)?;
            dialog_files.push((p, text));
        }
    }
    dialog_files.sort();
    let texts = collect(&kb, &graph, &dialog_files, &cfg.lint);
    Ok(lint(&texts, &graph, &cfg.lint))
}

/// Lints texts already collected.
pub fn lint(texts: &[Text], graph: &Graph, cfg: &LintConfig) -> Report {
    let mut report = Report {
        fre_min_words: cfg.fre_min_words,
        ..Default::default()
    };
    for t in texts {
        let seg_emoji = graph.segments.get(&t.segment).is_none_or(|s| s.emoji);
        let spoken = t
            .channel
            .as_deref()
            .and_then(|c| graph.channels.get(c))
            .is_some_and(|c| c.spoken);
        let (findings, score) = check(t, cfg, spoken, seg_emoji);
        report.findings.extend(findings);
        report.scores.push(score);
    }
    report
}

/// Every text of the knowledge base and the graph; `dialog_files` are the
/// graph's files (name, content), for line numbers.
pub fn collect(
    kb: &KnowledgeBase,
    graph: &Graph,
    dialog_files: &[(PathBuf, String)],
    cfg: &LintConfig,
) -> Vec<Text> {
    let mut out = Vec::new();
    let mut files: HashMap<PathBuf, String> = HashMap::new();
    for i in &kb.intents {
        let src = files
            .entry(i.file.clone())
            .or_insert_with(|| std::fs::read_to_string(&i.file).unwrap_or_default());
        let lines: Vec<&str> = src.lines().collect();
        let text = |place: String, segment: &str, line: usize, text: &str| Text {
            file: i.file.clone(),
            line,
            place,
            segment: segment.to_string(),
            channel: None,
            text: text.to_string(),
        };
        out.push(text(
            format!("intent {} / title", i.id),
            "universal",
            find_line(&lines, i.line, "title:"),
            &i.title,
        ));
        for (seg, a) in &i.answer {
            let line = find_line(
                &lines,
                find_line(&lines, i.line, "answer:"),
                &format!("{seg}:"),
            );
            out.push(text(format!("intent {} / {seg}", i.id), seg, line, a));
        }
    }
    // where a graph text is written: the file and line holding its first words
    let locate = |text: &str, after: &str| -> (PathBuf, usize) {
        let first = text.lines().next().unwrap_or("");
        let needle: String = first.chars().take(30).collect();
        for (f, src) in dialog_files {
            let lines: Vec<&str> = src.lines().collect();
            let from = if after.is_empty() {
                1
            } else {
                find_line(&lines, 1, after)
            };
            if lines.iter().skip(from - 1).any(|l| l.contains(&needle)) {
                return (f.clone(), find_line(&lines, from, &needle));
            }
        }
        (
            dialog_files
                .first()
                .map(|f| f.0.clone())
                .unwrap_or_default(),
            0,
        )
    };
    let mut names: Vec<&String> = graph.nodes.keys().collect();
    names.sort();
    for name in names {
        let n = &graph.nodes[name];
        let mut add = |what: String, text: &str| {
            let src = dialog_files
                .iter()
                .find(|(f, _)| *f == n.file)
                .map(|(_, s)| s.as_str())
                .unwrap_or("");
            let lines: Vec<&str> = src.lines().collect();
            let first = text.lines().next().unwrap_or("");
            let needle: String = first.chars().take(30).collect();
            out.push(Text {
                file: n.file.clone(),
                line: find_line(&lines, n.line, &needle),
                place: format!("node {name} / {what}"),
                segment: "universal".into(),
                channel: None,
                text: text.to_string(),
            });
        };
        if let Some(t) = &n.text {
            add("text".into(), t);
        }
        for (i, c) in n.cases.iter().enumerate() {
            add(format!("case {}", i + 1), &c.text);
        }
        if let Some(t) = &n.closed_text {
            add("closed_text".into(), t);
        }
        for f in &n.fields {
            add(format!("field {}", f.slot), &f.prompt);
        }
        if let Some(t) = &n.confirm {
            add("confirm".into(), t);
        }
        if let Some(t) = &n.empty {
            add("empty".into(), t);
        }
        for c in &n.choices {
            add(format!("choice {}", c.id), &c.label);
        }
    }
    for (key, p) in &graph.prompts {
        let (file, line) = locate(p, "prompts:");
        let voice = cfg.voice_prompts.contains(key);
        out.push(Text {
            file,
            line,
            place: format!("prompt {key}"),
            segment: "universal".into(),
            channel: voice.then(|| "voice".to_string()),
            text: p.clone(),
        });
    }
    for (ch, style) in &graph.channels {
        // phrases the channel says instead of the graph's own (one-word
        // substitutions are words, not texts)
        for (from, to) in style.words.iter().filter(|(k, _)| k.contains(' ')) {
            let (file, line) = locate(to, "channels:");
            out.push(Text {
                file,
                line,
                place: format!("channel {ch} / words «{}…»", first_words(from, 3)),
                segment: "universal".into(),
                channel: Some(ch.clone()),
                text: to.clone(),
            });
        }
    }
    out
}

fn first_words(s: &str, n: usize) -> String {
    s.split_whitespace().take(n).collect::<Vec<_>>().join(" ")
}

/// Template slots (`{hours}`) are filled by the engine: not the author's words.
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\{[a-z_]+\}").unwrap());
static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?:https?://|www\.)\S+").unwrap());

/// Characters a citizen should not meet in a text (markup, code, symbols).
const SPECIAL: &[char] = &[
    '\\', '&', '<', '>', '#', '*', '_', '|', '^', '~', '`', '{', '}', '[', ']', '@', '$',
];

/// Checks one text: its findings and its score.
pub fn check(
    t: &Text,
    cfg: &LintConfig,
    spoken: bool,
    segment_emoji: bool,
) -> (Vec<Finding>, Score) {
    let limits = Limits::for_text(cfg, &t.segment, t.channel.as_deref());
    let raw = t.text.trim();
    let text = PLACEHOLDER.replace_all(raw, "").to_string();
    let r = readability::score(&text, cfg.long_word_syllables);
    let mut out = Vec::new();
    let mut add = |severity: Severity, rule: &'static str, message: String, fragment: &str| {
        out.push(Finding {
            file: t.file.clone(),
            line: t.line,
            place: t.place.clone(),
            severity,
            rule,
            message,
            fragment: fragment.trim().to_string(),
        })
    };
    for s in readability::sentences(&text) {
        let n = readability::words(&s).len();
        if n > limits.max_sentence_words {
            add(
                Severity::Error,
                "sentence_length",
                format!(
                    "a sentence of {n} words (at most {}): split it, one idea a sentence",
                    limits.max_sentence_words
                ),
                &clip(&s, 90),
            );
        }
    }
    if r.words >= cfg.fre_min_words && r.fre < limits.min_fre {
        add(
            Severity::Error,
            "readability",
            format!(
                "FRE {:.1} ({}, {}) is below {:.0}: shorter sentences and shorter, everyday words",
                r.fre, r.grade, r.readers, limits.min_fre
            ),
            &clip(&text, 90),
        );
    }
    if r.words >= cfg.fre_min_words && r.long_word_share > limits.max_long_word_share {
        let long: Vec<&str> = readability::words(&text)
            .into_iter()
            .filter(|w| readability::syllables(w) >= cfg.long_word_syllables)
            .collect();
        add(
            Severity::Warning,
            "long_words",
            format!(
                "{:.0}% of the words have {}+ syllables (at most {:.0}%): use shorter, everyday words",
                r.long_word_share * 100.0,
                cfg.long_word_syllables,
                limits.max_long_word_share * 100.0
            ),
            &long.join(", "),
        );
    }
    for (sev, rule, msg, frag) in bureaucratic(&text) {
        add(sev, rule, msg, &frag);
    }
    // special characters, outside links
    let no_urls = URL.replace_all(&text, " ");
    let mut seen = BTreeSet::new();
    for (i, c) in no_urls.char_indices() {
        if SPECIAL.contains(&c) && seen.insert(c) {
            add(
                Severity::Error,
                "special_characters",
                format!("the character `{c}`: write it in words or leave it out"),
                &around(&no_urls, i),
            );
        }
    }
    if let Some((i, _)) = raw.char_indices().find(|(_, c)| is_emoji(*c)) {
        if spoken {
            add(
                Severity::Error,
                "emoji",
                "an emoji in a text the voice robot says: emoji are never used in voice".into(),
                &around(raw, i),
            );
        } else if !segment_emoji {
            add(
                Severity::Warning,
                "emoji",
                format!(
                    "an emoji in an answer for `{}`, whose style has no emoji",
                    t.segment
                ),
                &around(raw, i),
            );
        }
    }
    for (sev, rule, msg, frag) in capitals(&text, &cfg.known_abbreviations) {
        add(sev, rule, msg, &frag);
    }
    for m in POLITE.find_iter(&text) {
        add(
            Severity::Warning,
            "polite_you",
            format!(
                "«{}» in lower case: address the citizen with a capital «Вы»",
                m.as_str()
            ),
            &around(&text, m.start()),
        );
    }
    let score = Score {
        file: t.file.clone(),
        line: t.line,
        place: t.place.clone(),
        segment: t.segment.clone(),
        channel: t.channel.clone(),
        readability: r,
        limits,
    };
    (out, score)
}

static POLITE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(?:вы|вас|вам|вами|ваш|ваша|ваше|ваши|вашего|вашей|вашему|вашим|вашими|ваших|вашу)\b",
    )
    .unwrap()
});

/// The start of `s`, at most `n` characters.
fn clip(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n).collect();
    t.push('…');
    t
}

/// The sentence around byte `at` (at most 90 characters of it).
fn around(s: &str, at: usize) -> String {
    let start = s[..at]
        .rfind(['.', '!', '?', '\n'])
        .map(|i| i + 1)
        .unwrap_or(0);
    let end = s[at..]
        .find(['.', '!', '?', '\n'])
        .map(|i| at + i + 1)
        .unwrap_or(s.len());
    let t = s[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    clip(&t, 90)
}

/// A word of a text with its byte span.
struct Word<'a> {
    start: usize,
    end: usize,
    text: &'a str,
    /// Lower case, ё as е.
    norm: String,
}

fn tokens(text: &str) -> Vec<Word<'_>> {
    static W: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\p{L}+(?:-\p{L}+)*").unwrap());
    W.find_iter(text)
        .map(|m| Word {
            start: m.start(),
            end: m.end(),
            text: m.as_str(),
            norm: m.as_str().to_lowercase().replace('ё', "е"),
        })
        .collect()
}

type Hit = (Severity, &'static str, String, String);

/// Compound prepositions of the official style: (pattern, plain word, error?).
const PREPOSITIONS: &[(&str, &str, bool)] = &[
    (r"в целях", "чтобы, для", true),
    (r"в связи со?", "из-за, потому что", true),
    (r"в соответствии со?", "по, как сказано в", true),
    (r"на основании", "по", true),
    (r"в рамках", "в, по", false),
    (r"в отношении", "о, для", false),
    (r"посредством", "через, с помощью", false),
    (r"в случае если", "если", false),
    (r"по истечении", "после", false),
];

/// Reflexive-passive verbs of the official style that are errors wherever
/// they stand («осуществляется», «производится»).
static PASSIVE_CORE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:осуществля(?:ет|ют)ся|производ(?:ит|ят)ся|осуществлят(?:ь)ся|производиться)$")
        .unwrap()
});
/// Other reflexive-passive verbs typical of the official style: a list…
static PASSIVE_LIST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:предоставля|выплачива|назнача|оформля|рассматрива|выда|принима|направля|начисля|устанавлива|определя|взима|оказыва|предусматрива|учитыва|засчитыва|рассчитыва|подтвержда|продлева|пересматрива|подписыва|заполня|подае|проверя|утвержда|возмеща|уплачива|осуществля|производ)(?:ет|ют|ит|ят)ся$").unwrap()
});
/// …and a pattern: derived imperfectives (-ива-/-ыва-) and -ировать verbs
/// in the passive. Not «нравится», «остаётся», «называется».
static PASSIVE_PATTERN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\p{L}{3,}(?:ива|ыва|иру)(?:ет|ют)ся$").unwrap());
const PASSIVE_EXCEPTIONS: &[&str] = &[
    "называется",
    "называются",
    "отказывается",
    "отказываются",
    "открывается",
    "открываются",
    "закрывается",
    "закрываются",
    "оказывается",
];

/// Words of the official style with a plainer equivalent.
const OFFICIAL_WORDS: &[(&str, &str)] = &[
    (
        r"являет(?:ся)?|являются|являлся|являлась|являлись",
        "это, есть",
    ),
    (
        r"осуществ\p{L}*",
        "делать, проводить — скажите, что именно делают",
    ),
    (
        r"вышеуказанн\p{L}*|вышеперечисленн\p{L}*|нижеследующ\p{L}*",
        "этот, эти",
    ),
    (r"надлежащ\p{L}*", "нужный, правильный"),
];

static PREPOSITION_RES: LazyLock<Vec<(Regex, &str, bool)>> = LazyLock::new(|| {
    PREPOSITIONS
        .iter()
        .map(|(p, plain, error)| (Regex::new(&format!(r"\b{p}\b")).unwrap(), *plain, *error))
        .collect()
});
static OFFICIAL_RES: LazyLock<Vec<(Regex, &str)>> = LazyLock::new(|| {
    OFFICIAL_WORDS
        .iter()
        .map(|(p, plain)| (Regex::new(&format!("^(?:{p})$")).unwrap(), *plain))
        .collect()
});

/// Split predicates: a light verb and a verbal noun instead of one verb.
static SPLIT_VERB: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:оказ\p{L}*|окаж\p{L}*|произв[ео]\p{L}*|осуществ\p{L}*|провест\p{L}*|провед\p{L}*|провод(?:ить|ит|ят|ите|им)|приня(?:ть|л|ла|ли)|принима\p{L}*|прим(?:ет|ут|ем|ите)|име(?:ть|ет|ют|ете|ем)|соверш\p{L}*|да(?:ть|ет|ют|йте))$").unwrap()
});
static SPLIT_NOUN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:содейств\p{L}*|помощ\p{L}*|поддержк\p{L}*|оплат\p{L}*|выплат\p{L}*|расчет\p{L}*|замен\p{L}*|проверк\p{L}*|регистрац\p{L}*|участи\p{L}*|решени\p{L}*|возможност\p{L}*|звон(?:ок|ка)|покупк\p{L}*|контрол\p{L}*|оценк\p{L}*|обследовани\p{L}*|разъяснени\p{L}*|консультаци\p{L}*)$").unwrap()
});

/// Verbal and abstract nouns: -ние/-ание/-ение, -ция, -ость in any case.
static VERBAL_NOUN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\p{L}{2,}(?:[аяе]ни(?:е|я|ю|ем|и|й|ям|ями|ях)|ци(?:я|и|ю|ей|й|ям|ями|ях)|ост(?:ь|и|ью|ей|ям|ями|ях))$").unwrap()
});
/// Nouns of that shape that are neither verbal nor abstract.
const NOT_VERBAL: &[&str] = &[
    "область",
    "области",
    "областью",
    "здание",
    "здания",
    "зданию",
    "зданием",
    "зданий",
    "гость",
    "гости",
    "кость",
    "кости",
    "новость",
    "новости",
    "полиция",
    "полиции",
    "станция",
    "станции",
    "трость",
    "трости",
    "пропорции",
    "радость",
    "радости",
    "сколько",
    "мелочь",
];
/// Chains that are the names of things (a document, a service).
const NAMED_CHAINS: &[(&str, &str)] = &[
    ("удостоверени", "личност"),
    ("занятост", "населени"),
    ("свидетельств", "рождени"),
];

fn bureaucratic(text: &str) -> Vec<Hit> {
    let mut out = Vec::new();
    let norm = text.to_lowercase().replace('ё', "е");
    let mut seen = BTreeSet::new();
    for (re, plain, error) in PREPOSITION_RES.iter() {
        if let Some(m) = re.find(&norm) {
            if seen.insert(m.as_str().to_string()) {
                out.push((
                    if *error {
                        Severity::Error
                    } else {
                        Severity::Warning
                    },
                    "bureaucratic_preposition",
                    format!("«{}» is official style: say «{plain}»", m.as_str()),
                    // lower case keeps the offsets of Russian text
                    around(
                        if norm.len() == text.len() {
                            text
                        } else {
                            &norm
                        },
                        m.start(),
                    ),
                ));
            }
        }
    }
    let words = tokens(text);
    for w in &words {
        if PASSIVE_CORE.is_match(&w.norm) {
            out.push((
                Severity::Error,
                "passive",
                format!(
                    "«{}»: say who does what («мы оформим», «Вам выплатят»)",
                    w.text
                ),
                around(text, w.start),
            ));
        } else if PASSIVE_LIST.is_match(&w.norm)
            || (PASSIVE_PATTERN.is_match(&w.norm) && !PASSIVE_EXCEPTIONS.contains(&w.norm.as_str()))
        {
            out.push((
                Severity::Warning,
                "passive",
                format!(
                    "«{}» is a reflexive passive of the official style: say who does it (active voice)",
                    w.text
                ),
                around(text, w.start),
            ));
        } else if let Some((_, plain)) = OFFICIAL_RES.iter().find(|(r, _)| r.is_match(&w.norm)) {
            out.push((
                Severity::Warning,
                "official_word",
                format!("«{}» is official style: {plain}", w.text),
                around(text, w.start),
            ));
        }
    }
    // split predicates: a light verb, at most two words, the noun
    for (i, w) in words.iter().enumerate() {
        if !SPLIT_VERB.is_match(&w.norm) {
            continue;
        }
        if let Some(n) = words[i + 1..(i + 4).min(words.len())]
            .iter()
            .find(|n| SPLIT_NOUN.is_match(&n.norm))
        {
            if text[w.end..n.start].contains(['.', '!', '?', ';']) {
                continue;
            }
            out.push((
                Severity::Warning,
                "split_predicate",
                format!(
                    "«{}»: a verb with a verbal noun; say it with one verb («помочь», «оплатить», «проверить»)",
                    &text[w.start..n.end]
                ),
                text[w.start..n.end].to_string(),
            ));
        }
    }
    // chains of verbal nouns: two or more in a row
    let is_vn = |w: &Word| VERBAL_NOUN.is_match(&w.norm) && !NOT_VERBAL.contains(&w.norm.as_str());
    let mut i = 0;
    while i < words.len() {
        let mut j = i;
        while j + 1 < words.len()
            && is_vn(&words[j])
            && is_vn(&words[j + 1])
            && text[words[j].end..words[j + 1].start].trim().is_empty()
            && !NAMED_CHAINS
                .iter()
                .any(|(a, b)| words[j].norm.starts_with(a) && words[j + 1].norm.starts_with(b))
        {
            j += 1;
        }
        if j > i {
            let n = j - i + 1;
            let chain = &text[words[i].start..words[j].end];
            out.push((
                if n >= 3 {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                "verbal_nouns",
                format!(
                    "a chain of {n} verbal nouns: use a verb («оформление пособия» → «оформить пособие»)"
                ),
                chain.to_string(),
            ));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Roman numerals (a disability group «II группа») are not abbreviations.
fn roman(s: &str) -> bool {
    s.chars().all(|c| matches!(c, 'I' | 'V' | 'X' | 'L' | 'C'))
}

/// The capital letters of a word that starts with two or more of them and
/// ends with at most three small ones («ЗАГСе» → «ЗАГС»).
fn caps_core(w: &str) -> Option<&str> {
    let upper = w.find(|c: char| !c.is_uppercase()).unwrap_or(w.len());
    let core = &w[..upper];
    let rest = &w[upper..];
    (core.chars().count() >= 2
        && rest.chars().count() <= 3
        && rest.chars().all(char::is_lowercase)
        && !roman(core))
    .then_some(core)
}

/// Whether the abbreviation at `start..end` is explained where it stands:
/// «СНИЛС (страховой номер…)», «МФЦ — многофункциональный центр»,
/// «Социальный фонд России (СФР)», «СФР, то есть …».
fn explained(text: &str, start: usize, end: usize) -> bool {
    let after = text[end..].trim_start();
    if after.starts_with('(')
        || after.starts_with('—')
        || after.starts_with('–')
        || after.starts_with(", то есть")
        || after.starts_with(", это")
    {
        return true;
    }
    // inside short brackets after the expansion: «… (СФР)», «(далее — СФР)»
    let before = &text[..start];
    if let Some(open) = before.rfind('(') {
        let inside = &text[open + 1..];
        if let Some(close) = inside.find(')') {
            let inner = &inside[..close];
            return open + 1 + close >= end && inner.split_whitespace().count() <= 3;
        }
    }
    false
}

fn capitals(text: &str, known: &[String]) -> Vec<Hit> {
    let mut out = Vec::new();
    let words = tokens(text);
    // the parts of hyphenated words («МСЭ-экспертиза»)
    let mut parts: Vec<(usize, usize, &str)> = Vec::new();
    for w in &words {
        let mut at = w.start;
        for p in w.text.split('-') {
            parts.push((at, at + p.len(), p));
            at += p.len() + 1;
        }
    }
    let upper = |p: &str| p.chars().count() >= 2 && p.chars().all(char::is_uppercase) && !roman(p);
    // runs of words in capitals: shouting
    let mut shouted = BTreeSet::new();
    let mut i = 0;
    while i < parts.len() {
        let mut j = i;
        while j < parts.len()
            && upper(parts[j].2)
            && (j == i || text[parts[j - 1].1..parts[j].0].trim().is_empty())
        {
            j += 1;
        }
        let run = &parts[i..j];
        let all_known = run.iter().all(|p| known.iter().any(|k| k == p.2));
        if run.len() >= 2 && !all_known {
            out.push((
                Severity::Error,
                "capitals",
                "words in capitals: write them in ordinary letters (emphasis is shouting)".into(),
                text[run[0].0..run[run.len() - 1].1].to_string(),
            ));
            shouted.extend(i..j);
        }
        i = j.max(i + 1);
    }
    let mut first = BTreeSet::new();
    for (k, (s, e, p)) in parts.iter().enumerate() {
        if shouted.contains(&k) {
            continue;
        }
        let Some(core) = caps_core(p) else { continue };
        if !first.insert(core.to_string()) || known.iter().any(|k| k == core) {
            continue;
        }
        if explained(text, *s, *e) {
            continue;
        }
        if core.chars().count() >= 6 && p.chars().all(char::is_uppercase) {
            out.push((
                Severity::Error,
                "capitals",
                format!("«{p}» in capitals: write the word in ordinary letters"),
                around(text, *s),
            ));
        } else {
            out.push((
                Severity::Error,
                "abbreviation",
                format!(
                    "«{core}» is not explained at its first use: say what it stands for in brackets or after a dash («{core} (…)», «… ({core})»); lint.known_abbreviations lists those every reader knows"
                ),
                around(text, *s),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Text {
        Text {
            file: "t.yaml".into(),
            line: 1,
            place: "intent t / universal".into(),
            segment: "universal".into(),
            channel: None,
            text: s.into(),
        }
    }

    fn run_on(t: &Text) -> Vec<Finding> {
        check(t, &LintConfig::default(), false, true).0
    }

    /// The rules `s` breaks, with their severity.
    fn rules(s: &str) -> Vec<(&'static str, Severity)> {
        run_on(&text(s))
            .into_iter()
            .map(|f| (f.rule, f.severity))
            .collect()
    }

    fn has(s: &str, rule: &str, sev: Severity) -> bool {
        rules(s).contains(&(rule_static(rule), sev))
    }

    fn rule_static(r: &str) -> &'static str {
        [
            "sentence_length",
            "readability",
            "long_words",
            "verbal_nouns",
            "bureaucratic_preposition",
            "passive",
            "official_word",
            "split_predicate",
            "special_characters",
            "emoji",
            "capitals",
            "abbreviation",
            "polite_you",
        ]
        .into_iter()
        .find(|x| *x == r)
        .unwrap()
    }

    #[test]
    fn plain_text_passes() {
        let s = "Пенсию назначает Социальный фонд России (СФР). Подайте заявление на Госуслугах. \
                 Возьмите паспорт. Мы позвоним Вам, когда всё будет готово.";
        assert_eq!(rules(s), vec![]);
    }

    #[test]
    fn long_sentences_are_errors() {
        let long = "Вы можете подать заявление на пособие в любой день недели в отделении рядом с домом или на портале вместе с документами семьи.";
        assert!(has(long, "sentence_length", Severity::Error));
        assert!(!has(
            "Подайте заявление. Возьмите паспорт.",
            "sentence_length",
            Severity::Error
        ));
        // a senior's answer is held to 15 words, a universal one to 20
        let sixteen = "Приходите в отделение рядом с домом, возьмите паспорт и справку о доходах за три последних месяца.";
        assert_eq!(readability::words(sixteen).len(), 16);
        assert!(!has(sixteen, "sentence_length", Severity::Error));
        let mut t = text(sixteen);
        t.segment = "senior".into();
        assert!(run_on(&t).iter().any(|f| f.rule == "sentence_length"));
    }

    #[test]
    fn hard_text_is_a_readability_error_and_long_words_a_warning() {
        let hard = "Предоставление государственной услуги осуществляется многофункциональными центрами. \
                    Государственная регистрация производится территориальными органами. \
                    Ежемесячная компенсационная выплата устанавливается уполномоченными организациями.";
        let r = rules(hard);
        assert!(r.contains(&("readability", Severity::Error)), "{r:?}");
        assert!(r.contains(&("long_words", Severity::Warning)), "{r:?}");
        let easy = "Мы поможем Вам. Позвоните нам в любой день. Мы ответим на вопрос и скажем, что делать дальше. Это бесплатно.";
        let r = rules(easy);
        assert!(
            !r.iter()
                .any(|x| x.0 == "readability" || x.0 == "long_words"),
            "{r:?}"
        );
        // short texts get a score but no verdict
        assert!(!has("Выберите отделение.", "readability", Severity::Error));
    }

    #[test]
    fn chains_of_verbal_nouns() {
        assert!(has(
            "Ждём осуществление предоставления.",
            "verbal_nouns",
            Severity::Warning
        ));
        assert!(has(
            "Срок рассмотрения заявления организации составит месяц.",
            "verbal_nouns",
            Severity::Error
        ));
        for ok in [
            "Возьмите удостоверение личности.",
            "Встаньте на учёт в центре занятости населения.",
            "Последние новости на сайте.",
            "Подайте заявление на пособие.",
            "Оформление займёт месяц.",
        ] {
            assert!(!rules(ok).iter().any(|r| r.0 == "verbal_nouns"), "{ok}");
        }
        // punctuation breaks a chain
        assert!(!has(
            "Назначение, оформление.",
            "verbal_nouns",
            Severity::Warning
        ));
    }

    #[test]
    fn compound_prepositions() {
        for s in [
            "В связи с ремонтом приём закрыт.",
            "Пособие платят в соответствии с законом.",
            "В целях защиты данных мы просим согласие.",
            "Выплату назначат на основании справки.",
        ] {
            assert!(has(s, "bureaucratic_preposition", Severity::Error), "{s}");
        }
        assert!(has(
            "Помощь в рамках программы.",
            "bureaucratic_preposition",
            Severity::Warning
        ));
        for s in [
            "Мы на связи с утра.",
            "Ставьте цели.",
            "Это основа заявления.",
        ] {
            assert!(
                !rules(s).iter().any(|r| r.0 == "bureaucratic_preposition"),
                "{s}"
            );
        }
    }

    #[test]
    fn reflexive_passive() {
        assert!(has(
            "Приём осуществляется по записи.",
            "passive",
            Severity::Error
        ));
        assert!(has(
            "Оплата производится картой.",
            "passive",
            Severity::Error
        ));
        // the list
        assert!(has(
            "Пособие выплачивается ежемесячно.",
            "passive",
            Severity::Warning
        ));
        assert!(has(
            "Справка выдаётся в МФЦ — многофункциональном центре.",
            "passive",
            Severity::Warning
        ));
        // the pattern
        assert!(has(
            "Расходы компенсируются частично.",
            "passive",
            Severity::Warning
        ));
        assert!(has(
            "Стаж подсчитывается по трудовой книжке.",
            "passive",
            Severity::Warning
        ));
        for s in [
            "Мне нравится.",
            "Остаётся один шаг.",
            "Документ называется паспортом.",
            "Ребёнок учится в школе.",
            "Сайт открывается долго.",
            "Ребёнку исполнится год.",
        ] {
            assert!(!rules(s).iter().any(|r| r.0 == "passive"), "{s}");
        }
        assert!(has(
            "Он является заявителем.",
            "official_word",
            Severity::Warning
        ));
    }

    #[test]
    fn split_predicates() {
        assert!(has(
            "Мы окажем Вам содействие.",
            "split_predicate",
            Severity::Warning
        ));
        assert!(has(
            "Нужно произвести оплату.",
            "split_predicate",
            Severity::Warning
        ));
        assert!(has(
            "Вы можете принять участие.",
            "split_predicate",
            Severity::Warning
        ));
        for s in [
            "Мы поможем.",
            "Оплатите пошлину.",
            "Решение придёт по почте.",
            "Примите это. Решение за Вами.",
        ] {
            assert!(!rules(s).iter().any(|r| r.0 == "split_predicate"), "{s}");
        }
    }

    #[test]
    fn special_characters() {
        assert!(has(
            "Паспорт & справка.",
            "special_characters",
            Severity::Error
        ));
        assert!(has("Запись #1.", "special_characters", Severity::Error));
        assert!(has(
            "Доход < минимума.",
            "special_characters",
            Severity::Error
        ));
        assert!(has("Путь C:\\docs.", "special_characters", Severity::Error));
        // links and template slots are not the author's characters
        for s in [
            "Откройте https://www.gosuslugi.ru/help?a=1&b=2#top и войдите.",
            "Операторы работают: {hours}.",
            "Номер: 8 800 000-00-00 (бесплатно), 15%.",
        ] {
            assert!(!rules(s).iter().any(|r| r.0 == "special_characters"), "{s}");
        }
        // one finding per character
        let r = rules("А & Б & В.");
        assert_eq!(r.iter().filter(|x| x.0 == "special_characters").count(), 1);
    }

    #[test]
    fn emoji_never_in_voice() {
        let t = text("Здравствуйте! 🙂");
        let cfg = LintConfig::default();
        let voice = check(&t, &cfg, true, true).0;
        assert!(voice
            .iter()
            .any(|f| f.rule == "emoji" && f.severity == Severity::Error));
        let senior = check(&t, &cfg, false, false).0;
        assert!(senior
            .iter()
            .any(|f| f.rule == "emoji" && f.severity == Severity::Warning));
        // a text for every channel: the engine strips emoji where they are not allowed
        assert!(check(&t, &cfg, false, true).0.is_empty());
    }

    #[test]
    fn capitals_and_abbreviations() {
        assert!(has("ВНИМАНИЕ: приём закрыт.", "capitals", Severity::Error));
        assert!(has("НЕ ЗАБУДЬТЕ паспорт.", "capitals", Severity::Error));
        assert!(has(
            "Подайте заявление в МФЦ.",
            "abbreviation",
            Severity::Error
        ));
        assert!(has("Нужен ИНН и паспорт.", "abbreviation", Severity::Error));
        for s in [
            "Подайте заявление в МФЦ (многофункциональный центр). Адрес МФЦ есть на сайте.",
            "МФЦ — многофункциональный центр — примет заявление.",
            "Пенсию назначает Социальный фонд России (СФР). СФР работает по будням.",
            "Пенсию назначает Социальный фонд (далее — СФР).",
            "Обратитесь в ЗАГС. Справку дают в ЗАГСе. Законы РФ.",
            "Инвалидность II группы.",
            "Нужен СНИЛС (страховой номер лицевого счёта). Номер СНИЛСа есть в Госуслугах.",
        ] {
            let r = rules(s);
            assert!(
                !r.iter().any(|x| x.0 == "abbreviation" || x.0 == "capitals"),
                "{s}: {r:?}"
            );
        }
        // only the first use must be explained, and it is reported once
        let f = run_on(&text("Обратитесь в МФЦ. Адрес МФЦ — на сайте."));
        assert_eq!(f.iter().filter(|f| f.rule == "abbreviation").count(), 1);
        // an explanation later does not help the first use
        assert!(has(
            "Обратитесь в СФР. Это Социальный фонд России (СФР).",
            "abbreviation",
            Severity::Error
        ));
        // a remark in brackets is not an explanation
        assert!(has(
            "Подайте заявление (лучше всего лично в МФЦ рядом с домом).",
            "abbreviation",
            Severity::Error
        ));
        // known abbreviations are configurable
        let mut cfg = LintConfig::default();
        cfg.known_abbreviations.push("МФЦ".into());
        assert!(check(&text("Подайте заявление в МФЦ."), &cfg, false, true)
            .0
            .is_empty());
    }

    #[test]
    fn polite_you() {
        assert!(has(
            "Мы перезвоним вам завтра.",
            "polite_you",
            Severity::Warning
        ));
        assert!(!has(
            "Мы перезвоним Вам завтра. Ваш номер есть.",
            "polite_you",
            Severity::Warning
        ));
        assert!(!has("Выход там.", "polite_you", Severity::Warning));
    }

    #[test]
    fn limits_by_segment_then_channel() {
        let cfg = LintConfig::default();
        let u = Limits::for_text(&cfg, "universal", None);
        assert_eq!(u.max_sentence_words, cfg.max_sentence_words);
        let s = Limits::for_text(&cfg, "senior", None);
        assert!(s.max_sentence_words < u.max_sentence_words && s.min_fre > u.min_fre);
        let v = Limits::for_text(&cfg, "universal", Some("voice"));
        assert!(v.max_sentence_words < u.max_sentence_words);
        assert_eq!(Limits::for_text(&cfg, "universal", Some("web")), u);
        // a channel override leaves the other limits as the segment set them
        let mut cfg = cfg;
        cfg.channels.insert(
            "telegram".into(),
            crate::config::LintLimits {
                max_sentence_words: Some(30),
                ..Default::default()
            },
        );
        let t = Limits::for_text(&cfg, "senior", Some("telegram"));
        assert_eq!((t.max_sentence_words, t.min_fre), (30, s.min_fre));
    }

    #[test]
    fn findings_say_where_and_what() {
        let f = run_on(&text("Подайте заявление в МФЦ."));
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].file.to_str(), f[0].line, f[0].place.as_str()),
            (Some("t.yaml"), 1, "intent t / universal")
        );
        assert_eq!(f[0].fragment, "Подайте заявление в МФЦ.");
        assert!(f[0].message.contains("МФЦ"));
    }

    fn demo() -> (Report, Vec<Text>) {
        let cfg = Config::load(std::path::Path::new("otklik.toml")).unwrap();
        let kb = crate::nlu::load_kb(&cfg).unwrap();
        let ids: Vec<String> = kb.intents.iter().map(|i| i.id.clone()).collect();
        let graph = Graph::load_dir(&cfg.dialog.dialogs_dir, &ids).unwrap();
        let files = vec![(
            PathBuf::from("dialogs/main.yaml"),
            std::fs::read_to_string("dialogs/main.yaml").unwrap(),
        )];
        let texts = collect(&kb, &graph, &files, &cfg.lint);
        (lint(&texts, &graph, &cfg.lint), texts)
    }

    #[test]
    fn collects_every_answer_and_prompt_with_its_place() {
        let (_, texts) = demo();
        let find = |place: &str| texts.iter().find(|t| t.place == place);
        let senior = find("intent pension_application / senior").unwrap();
        assert_eq!(senior.segment, "senior");
        assert!(senior.line > 1 && senior.file.ends_with("old_age.yaml"));
        let keypad = find("prompt silence_keypad").unwrap();
        assert_eq!(keypad.channel.as_deref(), Some("voice"));
        assert!(keypad.line > 1);
        assert_eq!(find("prompt confirm").unwrap().channel, None);
        assert!(find("node book / field name").is_some());
        assert!(find("node start / text").is_some());
        let voice = texts
            .iter()
            .find(|t| t.place.starts_with("channel voice / words"))
            .unwrap();
        assert!(voice.text.contains("оставайтесь на линии"), "{voice:?}");
    }

    #[test]
    fn the_demo_knowledge_base_and_graph_pass() {
        let (report, _) = demo();
        let errors: Vec<String> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| {
                format!(
                    "{}:{} {} {} «{}»",
                    f.file.display(),
                    f.line,
                    f.place,
                    f.message,
                    f.fragment
                )
            })
            .collect();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        let mean = report.mean_fre().unwrap();
        assert!(mean > 40.0, "{mean}");
        let json = report.to_json();
        assert_eq!(json["summary"]["errors"], 0);
        assert_eq!(
            json["scores"].as_array().unwrap().len(),
            report.scores.len()
        );
        assert!(report.to_text().contains("lint: "));
    }
}
