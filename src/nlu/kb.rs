//! The knowledge base: intents with examples, answers by segment, links and
//! life situations, read from `intents/*.yaml`, plus `out_of_scope` examples
//! of messages the bot must not answer. Loading validates everything and
//! reports every problem with file, line and what to fix.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

pub use super::source::{find_line, normalize_text, Problem};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Link {
    pub title: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Intent {
    pub id: String,
    /// Short label for an option button.
    pub title: String,
    /// Life situation the intent belongs to.
    pub situation: Option<String>,
    pub examples: Vec<String>,
    /// Segment → answer text; always has `universal`.
    pub answer: BTreeMap<String, String>,
    pub links: Vec<Link>,
    /// Who the measure is for, over the profile's facts (`eligibility`).
    #[serde(skip)]
    pub eligibility: Option<super::eligibility::Eligibility>,
    pub file: PathBuf,
    pub line: usize,
}

impl Intent {
    /// The answer for a segment, the universal one when it has no variant.
    pub fn answer_for(&self, segment: &str) -> &str {
        self.answer
            .get(segment)
            .or_else(|| self.answer.get("universal"))
            .map(String::as_str)
            .unwrap_or("")
    }

    /// How the knowledge base itself words the topic: the title and the first
    /// sentence of every answer variant. With `classifier.derived_examples`
    /// they train the classifier beside the examples (never tested on in eval).
    pub fn derived_examples(&self) -> Vec<String> {
        let mut out = vec![self.title.clone()];
        for a in self.answer.values() {
            let a = a.trim();
            let end = a.find(['.', '!', '?']).map(|i| i + 1).unwrap_or(a.len());
            let first = a[..end].trim();
            if !first.is_empty() && !out.iter().any(|o| o == first) {
                out.push(first.to_string());
            }
        }
        out
    }
}

#[derive(Debug, Clone, Default)]
pub struct KnowledgeBase {
    pub intents: Vec<Intent>,
    /// Examples of messages that are not any intent.
    pub out_of_scope: Vec<String>,
    /// sha256 over every file's name and bytes, in name order.
    pub hash: String,
}

/// Every problem of a knowledge base that failed to load.
#[derive(Debug)]
pub struct KbErrors(pub Vec<Problem>);

impl fmt::Display for KbErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the knowledge base has {} problem(s):", self.0.len())?;
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

impl std::error::Error for KbErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    intents: Vec<RawIntent>,
    #[serde(default)]
    out_of_scope: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntent {
    id: String,
    title: Option<String>,
    situation: Option<String>,
    #[serde(default)]
    examples: Vec<String>,
    #[serde(default)]
    answer: BTreeMap<String, String>,
    #[serde(default)]
    links: Vec<Link>,
    #[serde(default)]
    eligibility: Option<serde_yaml::Value>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && id.starts_with(|c: char| c.is_ascii_lowercase())
}

impl KnowledgeBase {
    /// Loads every `*.yaml` / `*.yml` file of `dir`.
    pub fn load_dir(dir: &Path, min_examples: usize, segments: &[String]) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the knowledge base folder {}: {e}",
                    dir.display()
                )
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let mut sources = Vec::new();
        for f in files {
            let bytes = std::fs::read(&f)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
            sources.push((f, bytes));
        }
        Ok(Self::from_sources(&sources, min_examples, segments)?)
    }

    /// Parses and validates (file name, content) pairs.
    pub fn from_sources(
        sources: &[(PathBuf, Vec<u8>)],
        min_examples: usize,
        segments: &[String],
    ) -> Result<Self, KbErrors> {
        let mut problems = Vec::new();
        let mut hasher = Sha256::new();
        let mut kb = KnowledgeBase::default();
        // normalised example → (intent id, file, line)
        let mut seen: HashMap<String, (String, PathBuf, usize)> = HashMap::new();
        let mut ids: HashMap<String, (PathBuf, usize)> = HashMap::new();
        if sources.is_empty() {
            problems.push(Problem {
                file: "intents".into(),
                line: 0,
                message: "no *.yaml files: add intent files to the knowledge base folder".into(),
            });
        }
        for (file, bytes) in sources {
            hasher.update(
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
                    .as_bytes(),
            );
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
            let problem = |line: usize, message: String| Problem {
                file: file.clone(),
                line,
                message,
            };
            let text = match std::str::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(problem(
                        0,
                        format!(
                            "not valid UTF-8 (byte {}): save the file as UTF-8",
                            e.valid_up_to()
                        ),
                    ));
                    continue;
                }
            };
            let lines: Vec<&str> = text.lines().collect();
            if crate::yaml::check_expansion(text).is_err() {
                problems.push(problem(0, "the file expands beyond its limit: its aliases (*name) repeat too much; write the values out".into()));
                continue;
            }
            let doc: FileDoc = match serde_yaml::from_str(text) {
                Ok(d) => d,
                Err(e) => {
                    let line = e.location().map(|l| l.line()).unwrap_or(0);
                    problems.push(problem(line, format!("cannot parse: {e}; expected top-level keys `intents:` (list of intents) and/or `out_of_scope:` (list of texts)")));
                    continue;
                }
            };
            for raw in doc.intents {
                let line = find_line(&lines, 1, &format!("id: {}", raw.id));
                if !valid_id(&raw.id) {
                    problems.push(problem(
                        line,
                        format!("intent id `{}` must be snake_case (a-z, 0-9, _)", raw.id),
                    ));
                }
                if let Some((f0, l0)) = ids.get(&raw.id) {
                    problems.push(problem(
                        line,
                        format!(
                            "intent `{}` is defined twice (also at {}:{}): keep one",
                            raw.id,
                            f0.display(),
                            l0
                        ),
                    ));
                    continue;
                }
                ids.insert(raw.id.clone(), (file.clone(), line));
                let title = match raw.title {
                    Some(t) if !t.trim().is_empty() => t.trim().to_string(),
                    _ => {
                        problems.push(problem(line, format!("intent `{}` has no `title`: add a short label for the option button", raw.id)));
                        raw.id.clone()
                    }
                };
                if raw
                    .answer
                    .get("universal")
                    .is_none_or(|a| a.trim().is_empty())
                {
                    problems.push(problem(line, format!("intent `{}` has no `answer.universal`: every intent needs the universal answer", raw.id)));
                }
                for (seg, a) in &raw.answer {
                    if !segments.contains(seg) {
                        problems.push(problem(find_line(&lines, line, &format!("{seg}:")), format!("intent `{}`: unknown segment `{seg}` in `answer`; known segments: {}", raw.id, segments.join(", "))));
                    } else if a.trim().is_empty() {
                        problems.push(problem(
                            find_line(&lines, line, &format!("{seg}:")),
                            format!("intent `{}`: answer for `{seg}` is empty", raw.id),
                        ));
                    }
                }
                let mut examples = Vec::new();
                for ex in raw.examples {
                    let ex_line = find_line(&lines, line, ex.trim());
                    let norm = normalize_text(&ex);
                    if norm.is_empty() {
                        problems.push(problem(
                            ex_line,
                            format!("intent `{}`: an example has no words", raw.id),
                        ));
                        continue;
                    }
                    if let Some((other, f0, l0)) = seen.get(&norm) {
                        let where_ = if *other == raw.id {
                            "this intent".to_string()
                        } else {
                            format!("intent `{other}`")
                        };
                        problems.push(problem(ex_line, format!("duplicate example {:?} (already in {where_} at {}:{}): remove or rephrase it", ex.trim(), f0.display(), l0)));
                        continue;
                    }
                    seen.insert(norm, (raw.id.clone(), file.clone(), ex_line));
                    examples.push(ex.trim().to_string());
                }
                if examples.len() < min_examples {
                    problems.push(problem(
                        line,
                        format!(
                            "intent `{}` has {} example(s); add at least {} (kb.min_examples)",
                            raw.id,
                            examples.len(),
                            min_examples
                        ),
                    ));
                }
                for l in &raw.links {
                    if !(l.url.starts_with("https://") || l.url.starts_with("http://")) {
                        problems.push(problem(
                            find_line(&lines, line, &l.url),
                            format!(
                                "intent `{}`: link {:?} must start with https://",
                                raw.id, l.url
                            ),
                        ));
                    }
                }
                let eligibility = raw.eligibility.as_ref().and_then(|v| {
                    super::eligibility::Eligibility::parse(
                        v,
                        &raw.id,
                        file,
                        &lines,
                        line,
                        &mut problems,
                    )
                });
                kb.intents.push(Intent {
                    eligibility,
                    id: raw.id,
                    title,
                    situation: raw.situation,
                    examples,
                    answer: raw.answer,
                    links: raw.links,
                    file: file.clone(),
                    line,
                });
            }
            for ex in doc.out_of_scope {
                let ex_line = find_line(&lines, 1, ex.trim());
                let norm = normalize_text(&ex);
                if norm.is_empty() {
                    continue;
                }
                if let Some((other, f0, l0)) = seen.get(&norm) {
                    problems.push(problem(ex_line, format!("out-of-scope text {:?} is also an example of `{other}` at {}:{}: keep it in one place", ex.trim(), f0.display(), l0)));
                    continue;
                }
                seen.insert(norm, ("out_of_scope".into(), file.clone(), ex_line));
                kb.out_of_scope.push(ex.trim().to_string());
            }
        }
        if !sources.is_empty() && kb.intents.is_empty() && problems.is_empty() {
            problems.push(Problem {
                file: sources[0].0.clone(),
                line: 1,
                message: "no intents defined: add a list under `intents:`".into(),
            });
        }
        if !problems.is_empty() {
            return Err(KbErrors(problems));
        }
        kb.hash = hex::encode(hasher.finalize());
        Ok(kb)
    }

    /// Builds a knowledge base from labelled texts only (for `eval --train/--data`);
    /// the label `out_of_scope` marks negative examples.
    pub fn from_labelled(items: &[(String, String)]) -> Self {
        let mut kb = KnowledgeBase::default();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut hasher = Sha256::new();
        for (label, text) in items {
            hasher.update(label.as_bytes());
            hasher.update([0]);
            hasher.update(text.as_bytes());
            hasher.update([1]);
            if label == "out_of_scope" {
                kb.out_of_scope.push(text.clone());
                continue;
            }
            let i = *index.entry(label.clone()).or_insert_with(|| {
                kb.intents.push(Intent {
                    id: label.clone(),
                    title: label.clone(),
                    situation: None,
                    examples: Vec::new(),
                    answer: BTreeMap::new(),
                    links: Vec::new(),
                    eligibility: None,
                    file: PathBuf::new(),
                    line: 0,
                });
                kb.intents.len() - 1
            });
            kb.intents[i].examples.push(text.clone());
        }
        kb.hash = hex::encode(hasher.finalize());
        kb
    }

    /// Every intent's derived examples, labelled.
    pub fn derived_items(&self) -> Vec<(String, String)> {
        self.intents
            .iter()
            .flat_map(|i| i.derived_examples().into_iter().map(|t| (i.id.clone(), t)))
            .collect()
    }

    pub fn intent(&self, id: &str) -> Option<&Intent> {
        self.intents.iter().find(|i| i.id == id)
    }

    /// Every intent's examples, normalised: what a new example must not repeat.
    pub fn normalized_examples(&self) -> std::collections::HashSet<String> {
        self.intents
            .iter()
            .flat_map(|i| i.examples.iter().map(|e| normalize_text(e)))
            .collect()
    }
}

impl KnowledgeBase {
    /// The measures (intent ids) whose eligibility rules the facts fit, in
    /// the knowledge base's order. `facts` are a `services::profile::Profile`'s
    /// (`&profile.facts`): fact name → value as in `Fact`. A fact that is not
    /// there fits no condition on it, so a measure with a rule on an unknown
    /// fact is not listed; intents without rules never are. Pure: the
    /// notifications call it to find new measures for a consenting profile.
    pub fn eligible(&self, facts: &BTreeMap<String, String>) -> Vec<&str> {
        self.intents
            .iter()
            .filter(|i| i.eligibility.as_ref().is_some_and(|e| e.matches(facts)))
            .map(|i| i.id.as_str())
            .collect()
    }

    /// The intents that have eligibility rules: the interview's candidates.
    pub fn measures(&self) -> Vec<(&str, &super::eligibility::Eligibility)> {
        self.intents
            .iter()
            .filter_map(|i| i.eligibility.as_ref().map(|e| (i.id.as_str(), e)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs() -> Vec<String> {
        ["universal", "senior"].map(String::from).to_vec()
    }

    fn load(files: &[(&str, &str)], min: usize) -> Result<KnowledgeBase, KbErrors> {
        let src: Vec<(PathBuf, Vec<u8>)> = files
            .iter()
            .map(|(n, t)| (PathBuf::from(n), t.as_bytes().to_vec()))
            .collect();
        KnowledgeBase::from_sources(&src, min, &segs())
    }

    const GOOD: &str = "intents:\n  - id: pension\n    title: Пенсия\n    examples:\n      - как оформить пенсию\n      - пенсия по старости\n    answer:\n      universal: Пенсию оформляет СФР.\n      senior: Вам поможет МФЦ.\n";

    #[test]
    fn loads_a_valid_file() {
        let kb = load(&[("a.yaml", GOOD)], 2).unwrap();
        assert_eq!(kb.intents.len(), 1);
        assert_eq!(kb.intents[0].answer_for("senior"), "Вам поможет МФЦ.");
        assert_eq!(kb.intents[0].answer_for("family"), "Пенсию оформляет СФР.");
        assert_eq!(kb.hash.len(), 64);
    }

    #[test]
    fn reports_every_problem_with_file_and_line() {
        let bad = "intents:\n  - id: pension\n    title: Пенсия\n    examples:\n      - как оформить пенсию\n      - Как оформить пенсию?\n    answer:\n      senior: Вам поможет МФЦ.\n      alien: x\n";
        let err = load(&[("b.yaml", bad)], 3).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("b.yaml:6: duplicate example"), "{text}");
        assert!(
            text.contains("b.yaml:2: intent `pension` has no `answer.universal`"),
            "{text}"
        );
        assert!(
            text.contains("b.yaml:2: intent `pension` has 1 example(s); add at least 3"),
            "{text}"
        );
        assert!(
            text.contains("b.yaml:9: intent `pension`: unknown segment `alien`"),
            "{text}"
        );
        assert_eq!(err.0.len(), 4, "{text}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = load(&[("c.yaml", "intents:\n  - id: x\n   title: [\n")], 1).unwrap_err();
        assert!(err.0[0].line >= 2, "{}", err);
        assert!(err.to_string().contains("c.yaml:"), "{err}");
    }

    #[test]
    fn duplicates_across_intents_and_files_are_errors() {
        let other = GOOD.replace("id: pension", "id: pension2");
        let err = load(&[("a.yaml", GOOD), ("b.yaml", &other)], 1).unwrap_err();
        assert!(
            err.to_string()
                .contains("already in intent `pension` at a.yaml:5"),
            "{err}"
        );
    }

    #[test]
    fn eligibility_rules_are_checked_with_file_and_line() {
        let good = GOOD.replace(
            "    answer:\n",
            "    eligibility:\n      age: {min: 60}\n    answer:\n",
        );
        let kb = load(&[("a.yaml", &good)], 1).unwrap();
        let facts = BTreeMap::from([("age".to_string(), "67".to_string())]);
        assert_eq!(kb.eligible(&facts), vec!["pension"]);
        assert!(kb.eligible(&BTreeMap::new()).is_empty());
        let bad = GOOD.replace(
            "    answer:\n",
            "    eligibility:\n      age: {min: sixty}\n      employment: [retired, astronaut]\n    answer:\n",
        );
        let err = load(&[("e.yaml", &bad)], 1).unwrap_err().to_string();
        assert!(
            err.contains("e.yaml:8: intent `pension`: eligibility: `age` is a number"),
            "{err}"
        );
        assert!(
            err.contains(
                "e.yaml:9: intent `pension`: eligibility: `employment`: unknown value `astronaut`"
            ),
            "{err}"
        );
    }

    #[test]
    fn hash_changes_with_content() {
        let a = load(&[("a.yaml", GOOD)], 1).unwrap();
        let b = load(&[("a.yaml", &GOOD.replace("СФР", "СФР России"))], 1).unwrap();
        assert_ne!(a.hash, b.hash);
    }
}
