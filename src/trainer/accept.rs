//! Accepting proposals: accepted examples are written into their intent's
//! file in `intents/`, accepted new intents into `intents/suggested.yaml`.
//! The files are edited as text (a line inserted after the intent's last
//! example), so the trainers' comments and layout stay; every change is
//! checked by loading the edited knowledge base from a copy first, and the
//! files are replaced only when it loads.

use super::suggest::{Kind, Proposal, Status};
use crate::nlu::kb::{normalize_text, KnowledgeBase};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file new intents go to.
pub const NEW_INTENTS_FILE: &str = "suggested.yaml";

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Applied {
    /// Examples added to existing intents.
    pub examples: usize,
    /// New intents.
    pub intents: usize,
    /// Accepted examples already in the knowledge base, skipped.
    pub duplicates: usize,
    pub files: Vec<PathBuf>,
}

/// A YAML scalar for `text`: plain when that is unambiguous, otherwise
/// double-quoted (a JSON string is a valid YAML double-quoted scalar).
fn scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || " ,.?!()«»—-ё".contains(c))
        && !text.starts_with(['-', '?', ' ', '«'])
        && !text.ends_with(' ')
        && !matches!(
            text.to_lowercase().as_str(),
            "да" | "нет" | "yes" | "no" | "true" | "false" | "null" | "on" | "off"
        );
    if plain {
        text.to_string()
    } else {
        serde_json::to_string(text).unwrap()
    }
}

/// Inserts `texts` as examples of the intent declared at `intent_line`
/// (1-based, the `- id:` line) after its last example.
fn insert_examples(lines: &mut Vec<String>, intent_line: usize, texts: &[String]) -> Result<()> {
    let start = intent_line.saturating_sub(1);
    let indent = |l: &str| l.len() - l.trim_start().len();
    let id_indent = indent(&lines[start]);
    let ex = (start + 1..lines.len())
        .take_while(|&i| lines[i].trim().is_empty() || indent(&lines[i]) > id_indent)
        .find(|&i| lines[i].trim() == "examples:")
        .context("the intent has no `examples:` list")?;
    let ex_indent = indent(&lines[ex]);
    // The list's items (at `examples:`'s indentation or deeper) and their
    // continuation lines.
    let mut last = ex;
    let mut items = None;
    for (i, l) in lines.iter().enumerate().skip(ex + 1) {
        if l.trim().is_empty() {
            continue;
        }
        let (d, item) = (indent(l), l.trim_start().starts_with("- "));
        match items {
            None if item && d >= ex_indent => items = Some(d),
            Some(k) if (item && d == k) || d > k => {}
            _ => break,
        }
        last = i;
    }
    let item_indent = items.unwrap_or(ex_indent + 2);
    let pad = " ".repeat(item_indent);
    for (k, t) in texts.iter().enumerate() {
        lines.insert(last + 1 + k, format!("{pad}- {}", scalar(t)));
    }
    Ok(())
}

/// The YAML of a new intent, in the knowledge base's layout.
fn intent_yaml(p: &Proposal) -> String {
    let mut s = format!(
        "  - id: {}\n    title: {}\n    examples:\n",
        p.intent,
        scalar(&p.title)
    );
    for t in &p.texts {
        s += &format!("      - {}\n", scalar(t));
    }
    s += &format!("    answer:\n      universal: {}\n", scalar(&p.answer));
    s
}

/// Writes the accepted proposals into the knowledge base in `dir` (loaded
/// as `kb`). Fails, changing nothing, when the result does not load.
pub fn apply(
    dir: &Path,
    kb: &KnowledgeBase,
    proposals: &[Proposal],
    min_examples: usize,
    segments: &[String],
) -> Result<Applied> {
    let mut applied = Applied::default();
    let mut files: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut known = kb.normalized_examples();
    // Insertions per intent, applied bottom-up so line numbers hold.
    let mut inserts: BTreeMap<PathBuf, Vec<(usize, Vec<String>)>> = BTreeMap::new();
    let mut new_intents = String::new();
    for p in proposals.iter().filter(|p| p.status == Status::Accept) {
        let texts: Vec<String> = p
            .texts
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .filter(|t| {
                let fresh = known.insert(normalize_text(t));
                if !fresh {
                    applied.duplicates += 1;
                }
                fresh
            })
            .collect();
        match p.kind {
            Kind::Example => {
                let Some(intent) = kb.intent(&p.intent) else {
                    bail!(
                        "proposal {}: no intent `{}` in the knowledge base",
                        p.id,
                        p.intent
                    );
                };
                if texts.is_empty() {
                    continue;
                }
                applied.examples += texts.len();
                inserts
                    .entry(intent.file.clone())
                    .or_default()
                    .push((intent.line, texts));
            }
            Kind::Intent => {
                if kb.intent(&p.intent).is_some() {
                    bail!("proposal {}: intent `{}` already exists", p.id, p.intent);
                }
                if p.intent.starts_with("new_") || p.title.trim().is_empty() {
                    bail!(
                        "proposal {}: give the new intent an id, a title and an answer first",
                        p.id
                    );
                }
                if p.answer.trim().is_empty() {
                    bail!(
                        "proposal {}: the new intent `{}` has no answer",
                        p.id,
                        p.intent
                    );
                }
                let q = Proposal { texts, ..p.clone() };
                new_intents += &intent_yaml(&q);
                applied.intents += 1;
            }
        }
    }
    for (file, mut ins) in inserts {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        ins.sort_by_key(|x| std::cmp::Reverse(x.0));
        for (line, texts) in ins {
            insert_examples(&mut lines, line, &texts)
                .with_context(|| format!("{}:{line}", file.display()))?;
        }
        files.insert(file, lines);
    }
    if !new_intents.is_empty() {
        let file = dir.join(NEW_INTENTS_FILE);
        let mut lines: Vec<String> = match std::fs::read_to_string(&file) {
            Ok(t) => t.lines().map(str::to_string).collect(),
            Err(_) => vec![
                "# Intents accepted from `otklik suggest` (the trainers' review).".into(),
                "intents:".into(),
            ],
        };
        lines.extend(new_intents.lines().map(str::to_string));
        files.insert(file, lines);
    }
    if files.is_empty() {
        return Ok(applied);
    }
    // Check on a copy: every file of the knowledge base, the edited ones
    // edited.
    let check = tempfile::tempdir().context("no temporary folder")?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::copy(&path, check.path().join(path.file_name().unwrap()))?;
        }
    }
    for (file, lines) in &files {
        std::fs::write(
            check.path().join(file.file_name().unwrap()),
            lines.join("\n") + "\n",
        )?;
    }
    KnowledgeBase::load_dir(check.path(), min_examples, segments)
        .context("the knowledge base would not load with these changes; nothing was written")?;
    for (file, lines) in files {
        let tmp = file.with_extension("yaml.tmp");
        std::fs::write(&tmp, lines.join("\n") + "\n")?;
        std::fs::rename(&tmp, &file)?;
        applied.files.push(file);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_stay_plain_or_get_quoted() {
        assert_eq!(scalar("как получить пособие"), "как получить пособие");
        assert_eq!(scalar("нет"), "\"нет\"");
        assert_eq!(scalar("вопрос: сколько?"), "\"вопрос: сколько?\"");
        assert_eq!(scalar("[ФИО] просит справку"), "\"[ФИО] просит справку\"");
        assert_eq!(scalar("- минус"), "\"- минус\"");
    }

    #[test]
    fn examples_go_after_the_intents_last_example() {
        let mut lines: Vec<String> = "intents:\n  - id: a\n    title: A\n    examples:\n      - один\n      - два\n    answer:\n      universal: ответ\n  - id: b\n    examples:\n      - три\n"
            .lines()
            .map(str::to_string)
            .collect();
        insert_examples(&mut lines, 9, &["четыре".into()]).unwrap();
        insert_examples(&mut lines, 2, &["пять".into(), "шесть: да".into()]).unwrap();
        let text = lines.join("\n");
        assert_eq!(
            text,
            "intents:\n  - id: a\n    title: A\n    examples:\n      - один\n      - два\n      - пять\n      - \"шесть: да\"\n    answer:\n      universal: ответ\n  - id: b\n    examples:\n      - три\n      - четыре"
        );
    }
}
